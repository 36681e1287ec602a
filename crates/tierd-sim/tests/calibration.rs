//! The model's Linux baselines against the real kernel: the two calibration scenarios replay
//! the test bed's loads, and their swap-outs and demotions must stay within 25% of what the
//! Linux 6.12 kernel did with the same loads in the test bed (the README's calibration
//! table). A change to the reclaim model that drifts from the kernel fails here.

use tierd_sim::{RunOptions, Scenario, simulate};

/// Medians of six test-bed runs on 2026-12-01 (`kernel-reference`: `pswpout` with
/// demotion off, `pgdemote_kswapd + pgdemote_direct` with it on; `daemon-pressure`: its
/// kernel-alone reference `pswpout`).
const KERNEL_REFERENCE_SWAP_OUTS: u64 = 51_249;
const KERNEL_REFERENCE_DEMOTIONS: u64 = 46_411;
const DAEMON_PRESSURE_SWAP_OUTS: u64 = 46_288;

fn run(file: &str) -> (u64, u64) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios").join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    let s = Scenario::from_toml(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let r = simulate(&s, &RunOptions::default(), &mut |_, _| {}).unwrap();
    let by = |name: &str| r.policies.iter().find(|p| p.policy == name).unwrap();
    (by("linux-swap").swap_outs, by("linux-demote").demotions)
}

fn within_25_percent(model: u64, kernel: u64, what: &str) {
    let (lo, hi) = (kernel * 3 / 4, kernel * 5 / 4);
    assert!(
        (lo..=hi).contains(&model),
        "{what}: the model {model}, the kernel {kernel}: beyond 25%"
    );
}

#[test]
fn the_kernel_reference_load_swaps_and_demotes_as_the_kernel_did() {
    let (swapped, demoted) = run("calibration-kernel-reference.toml");
    within_25_percent(swapped, KERNEL_REFERENCE_SWAP_OUTS, "kernel-reference swap-outs");
    within_25_percent(demoted, KERNEL_REFERENCE_DEMOTIONS, "kernel-reference demotions");
}

#[test]
fn the_daemon_pressure_reference_swaps_as_the_kernel_did() {
    let (swapped, _) = run("calibration-daemon-pressure.toml");
    within_25_percent(swapped, DAEMON_PRESSURE_SWAP_OUTS, "daemon-pressure reference swap-outs");
}
