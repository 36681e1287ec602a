//! The simulator's speed on the default scenario, next to a bare loop.
//!
//! Figures to reach (issue 4 §7), on one core: every policy replays at least 30 M accesses/s
//! (compare `replay` with `bare_loop`, which only draws the same workload and increments a
//! byte per access in a flat page array: the floor any simulator of this workload pays).
//! `whole_run` is the run as `tierd simulate` does it (draw, the three policies replaying the
//! trace as it is drawn, both bounds, on every core), counted as accesses times policies:
//! the figure to reach is 30 M/s per policy. On the 2-core build machine `tierd simulate
//! --bench` measured the whole run at 0.5-0.6x the bare loop's time per policy access (one
//! core draws while the other replays; 2026-12-01, loaded machine).
//! State per page is `Machine::BYTES_PER_PAGE` (9 bytes, the target is at most 32).
//! `tierd simulate --bench` prints the same comparison for a whole scenario, with peak RSS.

#![allow(missing_docs)]

use divan::Bencher;
use divan::counter::ItemsCount;
use tierd_sim::run::{RunOptions, Setup, run_policy};
use tierd_sim::{PolicyName, Scenario, simulate, workload};

/// Shorter than the default run, long enough to pass the 786 432-access prefault.
const ACCESSES: u64 = 8_000_000;

fn scenario() -> Scenario {
    let mut s = Scenario::default_scenario();
    s.accesses = ACCESSES;
    s
}

fn main() {
    const { assert!(tierd_sim::machine::Machine::BYTES_PER_PAGE <= 32) };
    divan::main();
}

#[divan::bench(sample_count = 3, sample_size = 1)]
fn bare_loop(b: Bencher) {
    let s = scenario();
    let pages = workload::ranges(&s).unwrap().last().unwrap().1 as usize;
    let mut flat = vec![0u8; pages];
    b.counter(ItemsCount::new(ACCESSES)).bench_local(|| {
        workload::generate(&s, |p| {
            let b = &mut flat[p as usize];
            *b = b.wrapping_add(1);
        })
        .unwrap();
    });
}

#[divan::bench(sample_count = 3, sample_size = 1)]
fn draw(b: Bencher) {
    let s = scenario();
    b.counter(ItemsCount::new(ACCESSES)).bench_local(|| workload::draw(&s).unwrap());
}

#[divan::bench(args = ["linux-swap", "linux-demote", "tierd"], sample_count = 3, sample_size = 1)]
fn replay(b: Bencher, policy: &str) {
    let s = scenario();
    let policy = match policy {
        "linux-swap" => PolicyName::LinuxSwap,
        "linux-demote" => PolicyName::LinuxDemote,
        _ => PolicyName::Tierd,
    };
    let setup = Setup::new(&s).unwrap();
    let trace = workload::draw(&s).unwrap();
    let opts = RunOptions { no_bounds: true, ..RunOptions::default() };
    b.counter(ItemsCount::new(ACCESSES))
        .bench_local(|| run_policy(&s, &setup, &trace, policy, &opts, &mut |_| {}).unwrap());
}

#[divan::bench(sample_count = 3, sample_size = 1)]
fn whole_run(b: Bencher) {
    let s = scenario();
    let opts = RunOptions::default();
    b.counter(ItemsCount::new(ACCESSES * s.policies.len() as u64))
        .bench_local(|| simulate(&s, &opts, &mut |_, _| {}).unwrap());
}
