//! The human-readable table of a [`Report`].

use std::fmt::Write as _;

use crate::run::Report;

#[allow(clippy::cast_precision_loss)]
fn pct(part: u64, whole: u64) -> f64 {
    100.0 * part as f64 / whole.max(1) as f64
}

/// Formats the comparison table: one row per policy, then the bounds.
pub fn table(r: &Report) -> String {
    let nodes = r.policies.first().map_or(0, |p| p.accesses_per_node.len());
    // The page cache's columns, only when some policy read from disk (file-backed memory).
    let disk = r.policies.iter().any(|p| p.disk_reads > 0 || p.disk_writes > 0);
    let mut out = String::new();
    let _ = writeln!(out, "scenario: {} (seed {}, {} accesses)", r.scenario, r.seed, r.accesses);
    let mib = (r.pages * r.page_size) >> 20;
    let _ = writeln!(out, "footprint: {} pages ({mib} MiB), paths: {}", r.pages, r.paths);
    let _ = writeln!(out);
    let mut head = format!("{:<14} {:>9} {:>8}", "policy", "AMAT ns", "fast %");
    for n in 0..nodes {
        let _ = write!(head, " {:>7}", format!("node{n} %"));
    }
    let _ = write!(
        head,
        " {:>10} {:>10} {:>10} {:>10} {:>10} {:>8}",
        "swap-ins", "swap-outs", "demoted", "promoted", "MiB moved", "sim s"
    );
    if disk {
        let _ = write!(head, " {:>10} {:>10} {:>10}", "disk reads", "refaults", "disk writes");
    }
    let _ = writeln!(out, "{head}");
    for p in &r.policies {
        let mut row =
            format!("{:<14} {:>9.1} {:>8.2}", p.policy, p.amat_ns, 100.0 * p.fast_hit_ratio);
        for a in &p.accesses_per_node {
            let _ = write!(row, " {:>7.2}", pct(*a, r.accesses));
        }
        let _ = write!(
            row,
            " {:>10} {:>10} {:>10} {:>10} {:>10.0} {:>8.3}",
            p.swap_ins, p.swap_outs, p.demotions, p.promotions, p.migrated_mib, p.simulated_s
        );
        if disk {
            let _ =
                write!(row, " {:>10} {:>10} {:>10}", p.disk_reads, p.refaults_file, p.disk_writes);
        }
        let _ = writeln!(out, "{row}");
    }
    for p in r.policies.iter().filter(|p| !p.oom_killed.is_empty()) {
        let _ = writeln!(
            out,
            "{:<14} OOM-killed {} after {} accesses: no free memory and the swap device full \
             ({} later accesses of killed processes not simulated)",
            p.policy,
            p.oom_killed.join(", "),
            p.first_oom_kill_at.unwrap_or(0),
            p.killed_accesses
        );
    }
    if let Some(b) = &r.bounds {
        let _ = writeln!(
            out,
            "{:<14} {:>9.1} {:>8.2}   (hottest pages pinned, fastest nodes first)",
            "static top-k",
            b.static_amat_ns,
            100.0 * b.static_fast_hit_ratio
        );
        let belady =
            b.belady_fast_hit_ratio.map_or("-".to_string(), |r| format!("{:.2}", 100.0 * r));
        let _ = writeln!(
            out,
            "{:<14} {:>9} {:>8}   (best fast-tier hit ratio with free migrations)",
            "belady+bypass", "-", belady
        );
    }
    out
}
