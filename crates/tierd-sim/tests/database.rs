//! `scenarios/database.toml`, the page-cache case of the demotion RFC: without demotion
//! reclaim drops the table's pages and they are read from disk again; with it they are
//! demoted and stay in memory. The orderings the README's table shows must hold.

use tierd_sim::{RunOptions, Scenario, simulate};

#[test]
fn demotion_saves_the_databases_disk_reads() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/database.toml");
    let s = Scenario::from_toml(&std::fs::read_to_string(&path).unwrap()).unwrap();
    // Fewer accesses than the scenario's 12 M (a debug build): the prefault pass and 2.3 M
    // steady-state accesses.
    let opts = RunOptions { accesses: Some(3_000_000), no_bounds: true, ..RunOptions::default() };
    let r = simulate(&s, &opts, &mut |_, _| {}).unwrap();
    let by = |name: &str| r.policies.iter().find(|p| p.policy == name).unwrap();
    let (swap, demote, tierd) = (by("linux-swap"), by("linux-demote"), by("tierd"));
    // Every policy reads the 2.5 GiB table once (655360 pages).
    for p in [swap, demote, tierd] {
        assert!(p.disk_reads >= 655_360, "{}: {}", p.policy, p.disk_reads);
    }
    // linux-swap reads dropped pages again, many times over.
    assert!(swap.refaults_file > 100_000, "linux-swap refaults {}", swap.refaults_file);
    assert!(
        swap.disk_reads > 3 * demote.disk_reads / 2,
        "{} vs {}",
        swap.disk_reads,
        demote.disk_reads
    );
    assert!(swap.disk_writes > 0, "the table's dirty pages are written back");
    // Demotion keeps the table in memory; tierd at least as well (within 10%).
    assert!(demote.kernel_demotions > 0);
    assert!(
        10 * tierd.disk_reads <= 11 * demote.disk_reads,
        "{} vs {}",
        tierd.disk_reads,
        demote.disk_reads
    );
    // And the AMAT follows: the disk reads are its largest part.
    assert!(swap.amat_ns > demote.amat_ns && swap.amat_ns > tierd.amat_ns);
}
