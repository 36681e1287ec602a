//! `--plot FILE.svg`: per-node occupancy and fast-tier hit ratio over time, one line per
//! policy. Plain SVG written by hand: one panel per node plus one for the hit ratio, a shared
//! x axis in accesses. (The plotters crate would do, but this needs forty lines, no
//! dependency and no font handling.)

use std::fmt::Write as _;

use crate::run::Report;

const W: f64 = 760.0;
const H: f64 = 150.0;
const LEFT: f64 = 60.0;
const TOP: f64 = 30.0;
const GAP: f64 = 40.0;
const COLOURS: [&str; 6] = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"];

/// The SVG text for `report`'s samples; `totals` are the nodes' sizes in pages (by node id).
/// Empty panels when the report has no samples.
pub fn svg(report: &Report, totals: &[u64]) -> String {
    let panels = totals.len() + 1;
    #[allow(clippy::cast_precision_loss)]
    let height = TOP + panels as f64 * (H + GAP) + 20.0;
    let width = LEFT + W + 160.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="18" font-size="14">{}</text>"#,
        escape(&report.scenario)
    );
    #[allow(clippy::cast_precision_loss)]
    let max_x = report.accesses.max(1) as f64;
    for panel in 0..panels {
        #[allow(clippy::cast_precision_loss)]
        let y0 = TOP + panel as f64 * (H + GAP);
        let title = if panel == 0 {
            "fast-tier hit ratio".to_string()
        } else {
            format!("node {} occupancy", panel - 1)
        };
        let _ = writeln!(
            out,
            r##"<rect x="{LEFT}" y="{y0}" width="{W}" height="{H}" fill="none" stroke="#888"/><text x="{LEFT}" y="{}">{title}</text><text x="{}" y="{}" text-anchor="end">1</text><text x="{}" y="{}" text-anchor="end">0</text>"##,
            y0 - 4.0,
            LEFT - 4.0,
            y0 + 10.0,
            LEFT - 4.0,
            y0 + H
        );
        for (i, p) in report.policies.iter().enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            let mut points = String::new();
            for s in &p.samples {
                let v = if panel == 0 {
                    s.fast_hit_ratio
                } else {
                    #[allow(clippy::cast_precision_loss)]
                    let v = s.used_pages[panel - 1] as f64 / totals[panel - 1].max(1) as f64;
                    v
                };
                #[allow(clippy::cast_precision_loss)]
                let x = LEFT + W * s.accesses as f64 / max_x;
                let y = y0 + H * (1.0 - v.clamp(0.0, 1.0));
                let _ = write!(points, "{x:.1},{y:.1} ");
            }
            let _ = writeln!(
                out,
                r#"<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{}"/>"#,
                points.trim_end()
            );
        }
    }
    for (i, p) in report.policies.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        #[allow(clippy::cast_precision_loss)]
        let y = TOP + 10.0 + 18.0 * i as f64;
        let x = LEFT + W + 15.0;
        let _ = writeln!(
            out,
            r#"<line x1="{x}" y1="{y}" x2="{}" y2="{y}" stroke="{colour}" stroke-width="3"/><text x="{}" y="{}">{}</text>"#,
            x + 20.0,
            x + 26.0,
            y + 4.0,
            p.policy
        );
    }
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle">accesses (0 to {})</text>"#,
        LEFT + W / 2.0,
        height - 6.0,
        report.accesses
    );
    out.push_str("</svg>\n");
    out
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}
