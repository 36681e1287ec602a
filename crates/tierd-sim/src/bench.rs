//! The simulator's own speed and memory, next to a bare loop (issue 4 §7).
//!
//! Targets, for the default scenario on one core: at least 30 M simulated accesses per second
//! per policy, and at most 32 bytes of state per simulated page. The bare loop draws the same
//! workload and increments one byte per access in a flat page array: it is the floor any
//! simulator of this workload pays, so `policy / bare` says how much the model itself costs.
//! Policies are timed two ways: replaying the shared trace only, and replay plus a full draw
//! of the trace (as if each policy drew its own). The parts (draw, each policy, the bounds)
//! are timed one at a time on one core; the whole run is timed as `tierd simulate` runs it
//! (the draw, the policies replaying it as it is drawn and the bounds, on every core), as
//! accesses times policies over its wall-clock time: the figure the user waits for, to hold
//! against the 30 M/s target.

use std::time::Instant;

use serde::Serialize;

use crate::machine::Machine;
use crate::run::{RunOptions, Setup, SimError, compute_bounds, run_policy, simulate};
use crate::scenario::Scenario;
use crate::workload;

/// One policy's speed.
#[derive(Clone, Debug, Serialize)]
pub struct PolicySpeed {
    /// The policy.
    pub policy: &'static str,
    /// Accesses per second replaying the trace.
    pub replay_per_s: f64,
    /// Accesses per second drawing the trace and replaying it.
    pub draw_and_replay_per_s: f64,
}

/// The benchmark's figures.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    /// Accesses per run.
    pub accesses: u64,
    /// Simulated pages.
    pub pages: u64,
    /// Accesses per second of the bare loop (draw + touch a flat byte array).
    pub bare_per_s: f64,
    /// Accesses per second drawing the trace into its buffer.
    pub draw_per_s: f64,
    /// Per policy.
    pub policies: Vec<PolicySpeed>,
    /// Seconds the two bounds take over the drawn trace, alone.
    pub bounds_s: f64,
    /// The whole run as `tierd simulate` does it, bounds included: wall-clock seconds.
    pub whole_s: f64,
    /// Accesses times policies per second of the whole run.
    pub whole_per_policy_per_s: f64,
    /// Worker threads of the whole run.
    pub threads: usize,
    /// Bytes of simulator state per page.
    pub state_bytes_per_page: usize,
    /// Bytes of trace per access.
    pub trace_bytes_per_access: usize,
}

#[allow(clippy::cast_precision_loss)]
fn rate(n: u64, secs: f64) -> f64 {
    n as f64 / secs.max(1e-9)
}

/// Runs the benchmark on `s`: the parts one at a time, then the whole run.
pub fn bench(s: &Scenario) -> Result<BenchReport, SimError> {
    let setup = Setup::new(s)?;
    // The bare loop.
    let pages = workload::ranges(s)?.last().map_or(0, |r| r.1);
    let mut flat = vec![0u8; pages as usize];
    let t = Instant::now();
    workload::generate(s, |p| {
        let b = &mut flat[p as usize];
        *b = b.wrapping_add(1);
    })?;
    let bare = t.elapsed().as_secs_f64();
    std::hint::black_box(&flat);
    drop(flat);
    let t = Instant::now();
    let trace = workload::draw(s)?;
    let draw = t.elapsed().as_secs_f64();
    let opts = RunOptions { no_bounds: true, ..RunOptions::default() };
    let mut policies = Vec::new();
    for &p in &s.policies {
        let t = Instant::now();
        run_policy(s, &setup, &trace, p, &opts, &mut |_| {})?;
        let replay = t.elapsed().as_secs_f64();
        policies.push(PolicySpeed {
            policy: p.as_str(),
            replay_per_s: rate(s.accesses, replay),
            draw_and_replay_per_s: rate(s.accesses, replay + draw),
        });
    }
    let t = Instant::now();
    compute_bounds(s, &setup, Some(&[&trace.accesses]))?;
    let bounds_s = t.elapsed().as_secs_f64();
    drop(trace);
    let whole = simulate(s, &RunOptions::default(), &mut |_, _| {})?;
    Ok(BenchReport {
        accesses: s.accesses,
        pages: u64::from(pages),
        bare_per_s: rate(s.accesses, bare),
        draw_per_s: rate(s.accesses, draw),
        policies,
        bounds_s,
        whole_s: whole.wall_s,
        whole_per_policy_per_s: rate(s.accesses * s.policies.len() as u64, whole.wall_s),
        threads: whole.threads,
        state_bytes_per_page: Machine::BYTES_PER_PAGE,
        trace_bytes_per_access: std::mem::size_of::<u32>(),
    })
}
