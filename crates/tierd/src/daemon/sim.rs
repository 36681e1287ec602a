//! The simulated machine of `tierd run --sim`: the scenario's trace replayed one simulated
//! interval a loop, the machine's own `move_pages`, its swap counters as the kernel's.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Result;
use tierd_core::PathGraph;
use tierd_core::policy::{PolicyConfig, Tierd};
use tierd_sim::machine::Machine;

use super::step::{Advance, Host, Moves};
use super::{RunOptions, Status, reload_for_sim, sim_policy};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::paths::Paths;

/// The host: the simulated machine and the trace it replays.
pub(crate) struct SimHost {
    machine: Machine,
    trace: Vec<u32>,
    /// Where the replay goes on (it wraps around).
    at: usize,
    /// The scenario's own policy, which a config overrides in part ([`sim_policy`]).
    scenario_policy: PolicyConfig,
    /// Moves per slot pair as last counted.
    seen: Vec<Vec<u64>>,
    processes: usize,
    tracked_bytes: u64,
    /// Whether a config file was read: without one the scenario's policy runs whole.
    config_file: bool,
}

impl SimHost {
    /// A host over `machine` replaying `trace`, whose scenario has `processes` processes
    /// and the policy `scenario_policy`; `config_file`: whether the config came from a file.
    pub fn new(
        machine: Machine,
        trace: Vec<u32>,
        scenario_policy: PolicyConfig,
        processes: usize,
        tracked_bytes: u64,
        config_file: bool,
    ) -> SimHost {
        let n = machine.node_count();
        SimHost {
            machine,
            trace,
            at: 0,
            scenario_policy,
            seen: vec![vec![0; n]; n],
            processes,
            tracked_bytes,
            config_file,
        }
    }
}

impl Host for SimHost {
    type Page = u32;
    type Backend = Machine;

    fn backend(&mut self) -> &mut Machine {
        &mut self.machine
    }

    fn backend_ref(&self) -> &Machine {
        &self.machine
    }

    /// Replays one simulated interval of the trace.
    fn advance(&mut self, _policy: &mut Tierd<u32>) -> Result<Option<Advance>> {
        let m = &mut self.machine;
        let until = m.now_ns() + self.scenario_policy.interval_ms.max(1) * 1_000_000;
        while m.now_ns() < until && !m.all_killed() {
            let end = (self.at + 1024).min(self.trace.len());
            m.run(&self.trace[self.at..end]);
            self.at = if end == self.trace.len() { 0 } else { end };
        }
        if m.all_killed() {
            tracing::error!(
                "every simulated process was OOM-killed (no free memory and the swap device \
                 full); stopping: give the scenario more memory or a larger [swap] size_mib"
            );
            return Ok(None);
        }
        Ok(Some(Advance::default()))
    }

    fn before_tick(&mut self, _housekeeping: Duration, _whole: Duration) {}

    fn now_ns(&self) -> u64 {
        self.machine.now_ns()
    }

    fn take_moves(&mut self) -> Moves {
        let m = &mut self.machine;
        m.end_window();
        let mut moves = Moves::default();
        for (from, row) in self.seen.iter_mut().enumerate() {
            for (to, last) in row.iter_mut().enumerate() {
                let now = m.counters.moves[from][to];
                if now > *last {
                    moves.moved.insert((m.node_id(from), m.node_id(to)), now - *last);
                    *last = now;
                }
            }
        }
        moves
    }

    /// The machine's reclaim counters, under the kernel's names.
    fn vmstat(&mut self) -> Option<BTreeMap<String, u64>> {
        let c = &self.machine.counters;
        Some(
            [
                ("pswpout".to_string(), c.swap_out),
                ("pswpin".to_string(), c.swap_in),
                ("pgdemote_kswapd".to_string(), c.kernel_demoted),
            ]
            .into(),
        )
    }

    fn replanned(
        &mut self,
        _graph: &PathGraph,
        _policy: &mut Tierd<u32>,
        _metrics: &Metrics,
        _status: &Mutex<Status>,
    ) {
    }

    fn publish(&mut self, s: &mut Status, metrics: &Metrics) {
        s.processes = self.processes;
        s.tracked_mib = self.tracked_bytes >> 20;
        metrics.tracked_bytes.set(self.tracked_bytes);
    }

    fn policy_config(&self, config: &Config) -> PolicyConfig {
        sim_policy(&self.scenario_policy, self.config_file.then_some(config))
    }

    fn reload(&mut self, opts: &RunOptions, old: Config, _paths: &Paths) -> Config {
        let (config, read) = reload_for_sim(opts, old);
        self.config_file |= read;
        config
    }
}
