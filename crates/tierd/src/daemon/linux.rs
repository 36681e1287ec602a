//! The Linux host of `tierd run`: the processes in scope, the access tracker, the
//! `move_pages(2)` backend, the kernel's counters, and the backstop's plan.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Result;
use tierd_core::policy::{PolicyConfig, Tierd};
use tierd_core::{NodeId, PathGraph, Topology};
use tierd_linux::SysRoot;
use tierd_linux::backend::LinuxBackend;
use tierd_linux::mover::PageMover;
use tierd_linux::scope::{self, Selection};
use tierd_linux::tracker::{PageRef, Pid, Tracker};

use super::step::{Advance, Host, Moves};
use super::{
    BackstopState, CpuCost, KERNEL_MOVES, KERNEL_MOVING_LOOPS, MIN_PROCESS_AGE, Once, RunOptions,
    Status, left_scope, policy_config, seed_paths, selection_or_old,
};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::paths::Paths;

/// The host: what one loop reads from Linux and moves there. Built whole by `run` (and
/// the loop's tests); what it learns loop by loop is in [`LoopState`].
pub(crate) struct LinuxHost<M: PageMover> {
    pub(super) root: SysRoot,
    pub(super) backend: LinuxBackend<M>,
    pub(super) tracker: Box<dyn Tracker>,
    pub(super) topology: Topology,
    pub(super) selection: Selection,
    pub(super) backstop: BackstopState,
    /// When the daemon started, by the backend's clock ([`LinuxBackend::now`]).
    pub(super) started: Instant,
    pub(super) seen: LoopState,
}

/// What a [`LinuxHost`] keeps from one loop to the next.
pub(crate) struct LoopState {
    /// Warnings said once, and the last for `tierd status`.
    once: Once,
    /// The processes the tracker watches.
    pids: Vec<Pid>,
    first_seen: BTreeMap<Pid, Instant>,
    /// Processes whose exit the tracker reported and that are still in `pids`.
    said_gone: BTreeSet<Pid>,
    cpu: CpuCost,
    tracked_bytes: u64,
    last_kernel_moves: Option<u64>,
    kernel_moved_loops_ago: u32,
    loops: u64,
}

impl Default for LoopState {
    fn default() -> LoopState {
        LoopState {
            once: Once::default(),
            pids: Vec::new(),
            first_seen: BTreeMap::new(),
            said_gone: BTreeSet::new(),
            cpu: CpuCost::default(),
            tracked_bytes: 0,
            last_kernel_moves: None,
            kernel_moved_loops_ago: u32::MAX,
            loops: 0,
        }
    }
}

impl<M: PageMover> LinuxHost<M> {
    /// The tracker, to stop it when the daemon ends.
    pub fn tracker(&mut self) -> &mut dyn Tracker {
        self.tracker.as_mut()
    }

    /// Who is in scope: a process joins the tracker once it has lived a second.
    fn scope(&mut self, t0: Instant) {
        match scope::processes(&self.root, &self.selection) {
            Ok(procs) => {
                // Short-lived commands (a shell loop, a health check) have nothing worth
                // moving, and each change of the set re-commits DAMON's targets, which
                // resets what it learned about the long-lived ones.
                let listed: BTreeSet<Pid> = procs.iter().map(|p| Pid(p.pid)).collect();
                self.seen.first_seen.retain(|p, _| listed.contains(p));
                for p in &listed {
                    self.seen.first_seen.entry(*p).or_insert(t0);
                }
                let now: Vec<Pid> = listed
                    .iter()
                    .copied()
                    .filter(|p| {
                        t0.duration_since(self.seen.first_seen[p]) >= MIN_PROCESS_AGE
                            || self.seen.pids.contains(p)
                    })
                    .collect();
                if now != self.seen.pids {
                    // A process gone from the listing before the tracker saw it exit: the
                    // tracker will not report it, so say it here, unless the tracker did.
                    for p in left_scope(&self.seen.pids, &now) {
                        if !self.seen.said_gone.remove(&p) {
                            tracing::info!(pid = p.0, "process left scope (exited)");
                        }
                    }
                    if let Err(e) = self.tracker.set_pids(&now) {
                        self.seen.once.warn(format!("set_pids:{e}"), &format!("tracker: {e}"));
                    }
                    self.seen.pids = now;
                }
            }
            Err(e) => self.seen.once.warn(format!("scope:{e}"), &format!("listing processes: {e}")),
        }
    }
}

impl<M: PageMover> Host for LinuxHost<M> {
    type Page = PageRef;
    type Backend = LinuxBackend<M>;

    fn backend(&mut self) -> &mut LinuxBackend<M> {
        &mut self.backend
    }

    fn backend_ref(&self) -> &LinuxBackend<M> {
        &self.backend
    }

    fn advance(&mut self, policy: &mut Tierd<PageRef>) -> Result<Option<Advance>> {
        self.seen.loops += 1;
        self.scope(Instant::now());
        // The last window of accesses.
        let mut advance = Advance::default();
        match self.tracker.sample() {
            Ok(sample) => {
                advance.scan = sample.took;
                advance.max_accesses = Some(sample.max_accesses);
                self.seen.tracked_bytes = sample.covered_bytes;
                // Processes the tracker saw exit: said here, once; the listing that no
                // longer has them does not say it again.
                for p in &sample.dropped {
                    if !self.seen.said_gone.contains(p) {
                        tracing::info!(pid = p.0, "process left scope (exited)");
                    }
                    if self.seen.pids.contains(p) {
                        self.seen.said_gone.insert(*p);
                    }
                }
                self.backend.set_sample(sample);
            }
            Err(e) => self.seen.once.warn(format!("sample:{e}"), &format!("tracker sample: {e}")),
        }
        if let Err(e) = self.backend.refresh() {
            self.seen.once.warn(format!("refresh:{e}"), &format!("reading node memory: {e}"));
        }
        // Whether the kernel's own demotion (the backstop) or promotion moved pages lately,
        // from the counters read at the end of the last loop. Reclaim comes in bursts:
        // moves keep checking placement for a few loops after the kernel's last one, not
        // only in the loop that saw it, and stranded nodes are looked at until the
        // backend's placement cache has been emptied once since (its scans may not see the
        // kernel's latest moves before that), and once per cache lifetime anyway.
        // With the backstop on, the kernel may start demoting in the middle of a long tick
        // (a starved loop's tick took 17-25 s under the hog), long after the last counters:
        // then every move checks placement first.
        self.backend.set_kernel_moving(
            self.backstop.active || self.seen.kernel_moved_loops_ago < KERNEL_MOVING_LOOPS,
        );
        if self.seen.kernel_moved_loops_ago < 2 * tierd_linux::backend::PLACEMENT_WINDOWS
            || self.seen.loops.is_multiple_of(u64::from(tierd_linux::backend::PLACEMENT_WINDOWS))
        {
            policy.wake_repair();
        }
        Ok(Some(advance))
    }

    /// The tick limit holds only while the kernel's demotion backs tierd up: it keeps reclaim
    /// from swapping while the loop samples. Without the backstop nothing would, so a tick
    /// demotes all it must (with `backstop = "off"` a 2 s limit let the test bed's load swap).
    fn before_tick(&mut self, housekeeping: Duration, whole: Duration) {
        let now = self.backend.now();
        self.backend.set_housekeeping_until(Some(now + housekeeping));
        self.backend.set_tick_until(self.backstop.active.then(|| now + whole));
    }

    /// Time since start by the mover's clock (a fake mover's virtual one in tests).
    fn now_ns(&self) -> u64 {
        let since = self.backend.now().saturating_duration_since(self.started);
        u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
    }

    fn take_moves(&mut self) -> Moves {
        let log = self.backend.take_moves();
        for pid in &log.denied_pids {
            self.seen.once.warn(
                format!("denied:{pid}"),
                &format!(
                    "may not move pages of pid {pid}: run tierd as root with CAP_SYS_NICE, or narrow [scope]"
                ),
            );
        }
        let mut failures: BTreeMap<String, u64> = BTreeMap::new();
        for (errno, pages) in &log.failures {
            let name = tierd_linux::sys::failure_name(*errno).to_string();
            *failures.entry(name).or_default() += pages;
        }
        Moves { moved: log.moved, failures, no_room: log.no_room }
    }

    fn is_repair(&self, from: NodeId, to: NodeId) -> bool {
        self.backstop.is_repair(from, to)
    }

    fn vmstat(&mut self) -> Option<BTreeMap<String, u64>> {
        let vm = tierd_linux::read_vmstat(&self.root).ok()?;
        let kernel_moves: u64 = KERNEL_MOVES.iter().filter_map(|k| vm.get(*k)).sum();
        if self.seen.last_kernel_moves.is_some_and(|last| last != kernel_moves) {
            self.seen.kernel_moved_loops_ago = 0;
        } else {
            self.seen.kernel_moved_loops_ago = self.seen.kernel_moved_loops_ago.saturating_add(1);
        }
        self.seen.last_kernel_moves = Some(kernel_moves);
        Some(vm)
    }

    fn replanned(
        &mut self,
        graph: &PathGraph,
        policy: &mut Tierd<PageRef>,
        metrics: &Metrics,
        status: &Mutex<Status>,
    ) {
        self.backstop.update(graph, policy, metrics, status);
    }

    fn publish(&mut self, s: &mut Status, metrics: &Metrics) {
        let cost = self.seen.cpu.add(self.seen.tracked_bytes);
        if let Some(ms) = cost {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // a gauge in µs
            metrics.cpu_us_per_gib_minute.set((ms * 1e3) as u64);
        }
        metrics.tracked_bytes.set(self.seen.tracked_bytes);
        s.processes = self.seen.pids.len();
        s.tracked_mib = self.seen.tracked_bytes >> 20;
        s.cpu_ms_per_gib_minute = cost;
        s.last_error.clone_from(&self.seen.once.last);
    }

    fn policy_config(&self, config: &Config) -> PolicyConfig {
        policy_config(config)
    }

    fn reload(&mut self, opts: &RunOptions, old: Config, paths: &Paths) -> Config {
        match opts.config(Some(&opts.config)) {
            Ok(new) => {
                tracing::info!("config reloaded from {}", opts.config.display());
                let restart = Config::restart_needed(&old, &new);
                if !restart.is_empty() {
                    tracing::warn!(
                        "config reload: {} changed but only take effect after a restart",
                        restart.join(", ")
                    );
                }
                if let Err(e) = seed_paths(&new, &self.topology, paths, false) {
                    tracing::warn!("config reload: {e}; keeping the old paths");
                }
                let old_selection = std::mem::replace(&mut self.selection, Selection::All);
                self.selection = selection_or_old(&new, old_selection);
                new
            }
            Err(e) => {
                tracing::error!("config reload failed, keeping the old configuration: {e}");
                old
            }
        }
    }
}
