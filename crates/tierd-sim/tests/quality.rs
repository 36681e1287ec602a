//! Policy quality across workloads: the README's "Policy quality" table, kept. Each scenario
//! of `scenarios/quality/` runs linux-demote and tierd on the default machine with 20 M
//! accesses, and tierd's figures must not fall below what the table says:
//! - its fast-tier hit ratio as a share of the workload's bound (below), at least the
//!   table's share, rounded down to the whole percent;
//! - its average access time against linux-demote's, at most the table's ratio (at most 1
//!   where tierd is not worse than Linux).
//!
//! The bound is the best an online policy can be argued to reach:
//! - **i.i.d. workloads** (Zipf, GUPS): under the independent reference model the optimal
//!   policy without knowledge of the future keeps the most probable pages (Aho, Denning and
//!   Ullman's A0). For Zipf that is static top-k (the trace's most accessed pages, which its
//!   counts estimate well); for GUPS every page is equally probable, so it is the share of
//!   the footprint that fits on the fast node. Belady with bypass reads the future and is
//!   out of reach for any online policy there.
//! - **The others** (hot-set shift, scan, two processes): Belady with bypass.

use tierd_sim::{RunOptions, Scenario, simulate};

#[derive(Clone, Copy, Debug)]
enum Bound {
    StaticTopK,
    /// Fast node pages over footprint pages.
    CapacityShare,
    Belady,
}

/// One row of the README table: the workload, its bound, tierd's share of it (percent,
/// rounded down) and tierd's AMAT over linux-demote's (the most allowed).
struct Row {
    file: &'static str,
    bound: Bound,
    min_share_pct: u32,
    max_amat_ratio: f64,
}

/// Measured on 2026-12-01 (the figures in the README table).
const ROWS: [Row; 7] = [
    row("zipf-0.8.toml", Bound::StaticTopK, 91, 1.0),
    row("zipf-0.99.toml", Bound::StaticTopK, 93, 1.0),
    row("zipf-1.2.toml", Bound::StaticTopK, 95, 1.0),
    row("hotset-shift.toml", Bound::Belady, 87, 1.0),
    row("gups.toml", Bound::CapacityShare, 95, 1.0015),
    row("scan.toml", Bound::Belady, 98, 1.0015),
    row("two-process.toml", Bound::Belady, 90, 1.0),
];

/// A row: the scenario file, its bound, the least share of it and the worst AMAT ratio.
const fn row(file: &'static str, bound: Bound, min_share_pct: u32, max_amat_ratio: f64) -> Row {
    Row { file, bound, min_share_pct, max_amat_ratio }
}

fn check(row: &Row) -> Result<String, String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../scenarios/quality")
        .join(row.file);
    let text = std::fs::read_to_string(&path).unwrap();
    let s = Scenario::from_toml(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let r = simulate(&s, &RunOptions::default(), &mut |_, _| {}).unwrap();
    let by = |name: &str| r.policies.iter().find(|p| p.policy == name).unwrap();
    let (tierd, linux) = (by("tierd"), by("linux-demote"));
    let bounds = r.bounds.as_ref().expect("bounds are on");
    #[allow(clippy::cast_precision_loss)] // page counts far below 2^52
    let bound = match row.bound {
        Bound::StaticTopK => bounds.static_fast_hit_ratio,
        Bound::CapacityShare => {
            let fast: u64 = s.node.iter().filter(|n| n.cpu).map(|n| n.capacity_mib << 20).sum();
            (fast / s.page_size) as f64 / r.pages as f64
        }
        Bound::Belady => bounds.belady_fast_hit_ratio.expect("the trace is held in memory"),
    };
    let share = 100.0 * tierd.fast_hit_ratio / bound;
    let amat = tierd.amat_ns / linux.amat_ns;
    let line = format!(
        "{}: tierd {:.3} of {bound:.3} ({share:.1}%, want >= {}%), AMAT {:.1} ns vs linux-demote \
         {:.1} ns (x{amat:.4}, want <= {})",
        row.file,
        tierd.fast_hit_ratio,
        row.min_share_pct,
        tierd.amat_ns,
        linux.amat_ns,
        row.max_amat_ratio
    );
    if share < f64::from(row.min_share_pct) || amat > row.max_amat_ratio || tierd.swap_outs > 0 {
        Err(format!("{line}, swap-outs {}", tierd.swap_outs))
    } else {
        Ok(line)
    }
}

#[test]
fn no_workload_falls_below_the_readme_table() {
    let results: Vec<Result<String, String>> = ROWS.iter().map(check).collect();
    for r in &results {
        match r {
            Ok(line) => eprintln!("ok   {line}"),
            Err(line) => eprintln!("FAIL {line}"),
        }
    }
    let failed: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(failed.is_empty(), "regressed: {failed:#?}");
}
