//! One loop for both machines. [`Daemon`] runs the shared policy over a [`Host`], the
//! Linux host of `tierd run` ([`super::linux::LinuxHost`]) or the simulated machine of
//! `tierd run --sim` ([`super::sim::SimHost`]), and does the same on both: the promotion heat
//! threshold tuned to the tracker, a re-plan when the paths change, the policy tick, the
//! moves counted once per edge (metrics and `tierd status`), the kernel's counters beside
//! them, per-node status, and between loops the signals (SIGHUP reloads, the others stop).
//!
//! What differs between the machines is the [`Host`]: how the view is brought up to date
//! before a tick (processes in scope and the tracker's window on a host, an interval of
//! simulated accesses on the simulated machine), what the moves were, what a reload may
//! change.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use tierd_core::backend::Backend;
use tierd_core::policy::{PolicyConfig, Tierd};
use tierd_core::{NodeId, PathGraph, Topology};

use super::{NodeStatus, RunOptions, Status};
use crate::config::Config;
use crate::metrics::{Metrics, MoveKind, NodeLabel};
use crate::paths::Paths;

/// The longest a tick may demote while the kernel's demotion backs tierd up: five intervals,
/// and at least two seconds (a loop under emulation on a busy host takes most of a second to
/// sample alone). Without it a slow host turned a fill's shortfall into ticks of 12-16 s of
/// moving, and a hot part that appeared meanwhile waited that long to be seen.
pub(crate) fn tick_limit(interval: Duration) -> Duration {
    (interval * 5).max(Duration::from_secs(2))
}

/// What a host reports before a tick.
#[derive(Debug, Default)]
pub(crate) struct Advance {
    /// The most accesses the tracker can count in a window, when it took a sample (`None`:
    /// no sample, or a machine without a tracker): the promotion heat threshold is kept at
    /// or below it.
    pub max_accesses: Option<u32>,
    /// How long the tracker's sample took (`tierd_tracker_scan_seconds`, the debug log).
    pub scan: Duration,
}

/// What the moves of one tick were, as the host's mover reports them.
#[derive(Debug, Default)]
pub(crate) struct Moves {
    /// Pages moved per edge.
    pub moved: BTreeMap<(NodeId, NodeId), u64>,
    /// Pages that did not move, by errno name (`EBUSY`).
    pub failures: BTreeMap<String, u64>,
    /// Pages left in place because every target was full.
    pub no_room: u64,
}

/// The machine a [`Daemon`] runs on.
pub(crate) trait Host {
    /// A page, as the backend hands it out.
    type Page: Copy + Eq + std::hash::Hash + std::fmt::Debug;
    /// The backend the policy ticks over.
    type Backend: Backend<Page = Self::Page>;

    /// The backend, for the tick.
    fn backend(&mut self) -> &mut Self::Backend;
    /// The backend, for the status.
    fn backend_ref(&self) -> &Self::Backend;
    /// Brings the backend's view up to the next tick. `Ok(None)` stops the daemon (the
    /// host said why).
    fn advance(&mut self, policy: &mut Tierd<Self::Page>) -> Result<Option<Advance>>;
    /// Right before the tick, which may spend `housekeeping` of the host's clock on
    /// housekeeping and, where the host can afford to leave the rest for later, `whole` on
    /// all its demotion.
    fn before_tick(&mut self, housekeeping: Duration, whole: Duration);
    /// The policy's clock, ns.
    fn now_ns(&self) -> u64;
    /// What the tick moved.
    fn take_moves(&mut self) -> Moves;
    /// Whether a move off a path edge is placement repair (off a node the backstop can fill
    /// that no path reaches); none on a host without a backstop.
    fn is_repair(&self, _from: NodeId, _to: NodeId) -> bool {
        false
    }
    /// The kernel's counters after the tick (the metrics mirror them), if the host has them.
    fn vmstat(&mut self) -> Option<BTreeMap<String, u64>>;
    /// The paths changed and the policy was re-planned for `graph`.
    fn replanned(
        &mut self,
        graph: &PathGraph,
        policy: &mut Tierd<Self::Page>,
        metrics: &Metrics,
        status: &Mutex<Status>,
    );
    /// The host's own status fields, once a loop.
    fn publish(&mut self, status: &mut Status, metrics: &Metrics);
    /// The policy a config gives on this host.
    fn policy_config(&self, config: &Config) -> PolicyConfig;
    /// SIGHUP: the config to run from now on (the old one when the new cannot be used).
    fn reload(&mut self, opts: &RunOptions, old: Config, paths: &Paths) -> Config;
}

/// The shared parts of a daemon, around its host.
pub(crate) struct Parts {
    /// The topology the policy plans for.
    pub topology: Topology,
    /// The path table (shared with the control socket and the FUSE tree).
    pub paths: Arc<Paths>,
    /// The config as it runs.
    pub config: Config,
    /// The metric families.
    pub metrics: Arc<Metrics>,
    /// What `tierd status` shows.
    pub status: Arc<Mutex<Status>>,
}

/// The daemon loop over `H`.
pub(crate) struct Daemon<H: Host> {
    /// The machine.
    pub host: H,
    /// The shared parts.
    pub parts: Parts,
    policy: Tierd<H::Page>,
    policy_cfg: PolicyConfig,
    graph: PathGraph,
    /// Moves since start, per edge: counted here once, from the host's report.
    moved: BTreeMap<(NodeId, NodeId), u64>,
    failures: BTreeMap<String, u64>,
    no_room: u64,
    loops: u64,
}

impl<H: Host> Daemon<H> {
    /// A daemon over `host`, planned for the paths as they stand.
    pub fn new(mut host: H, parts: Parts) -> Daemon<H> {
        let graph = parts.paths.table().snapshot();
        let policy_cfg = host.policy_config(&parts.config);
        let mut policy = Tierd::new(policy_cfg.clone(), &parts.topology, &graph);
        host.replanned(&graph, &mut policy, &parts.metrics, &parts.status);
        Daemon {
            host,
            parts,
            policy,
            policy_cfg,
            graph,
            moved: BTreeMap::new(),
            failures: BTreeMap::new(),
            no_room: 0,
            loops: 0,
        }
    }

    /// The policy as it runs (a test looks at its parameters).
    #[cfg(test)]
    pub fn policy_config(&self) -> &PolicyConfig {
        &self.policy_cfg
    }

    /// Loops run.
    pub fn loops(&self) -> u64 {
        self.loops
    }

    /// Pages moved per edge since start.
    #[cfg(test)]
    pub fn moved(&self) -> &BTreeMap<(NodeId, NodeId), u64> {
        &self.moved
    }

    /// One loop: the host's view brought up to date, the policy's tick, the moves, the
    /// kernel's counters and the status. `Ok(false)`: the host stopped the daemon.
    pub fn step(&mut self) -> Result<bool> {
        let t0 = Instant::now();
        self.loops += 1;
        let Some(advance) = self.host.advance(&mut self.policy)? else { return Ok(false) };
        let interval = Duration::from_millis(self.parts.config.daemon.interval_ms);
        if let Some(max) = advance.max_accesses {
            self.parts.metrics.tracker_scan_seconds.observe(advance.scan.as_secs_f64());
            let min_heat = self.parts.config.promotion.min_heat.min(max.max(1));
            if min_heat != self.policy_cfg.promote_min_heat {
                tracing::info!(
                    "tracker counts at most {max} accesses per window: promotion heat threshold {} -> {min_heat}",
                    self.policy_cfg.promote_min_heat
                );
                self.policy_cfg.promote_min_heat = min_heat;
                self.replan();
            }
        }
        // Paths changed through the socket or the FUSE tree: re-plan.
        let now_graph = self.parts.paths.table().snapshot();
        if now_graph != self.graph {
            tracing::info!("migration paths changed: re-planning");
            self.graph = now_graph;
            self.replan();
            let p = &self.parts;
            self.host.replanned(&self.graph, &mut self.policy, &p.metrics, &p.status);
        }
        let tick_start = Instant::now();
        // Housekeeping gets half an interval a loop: a node that programs allocate on is
        // observed again soon, however much a lower tier has to pass on. Any demotion gets a
        // few intervals: on a slow host a node's shortfall can take many seconds of moving,
        // and heat is sampled again only between ticks.
        self.host.before_tick(interval / 2, tick_limit(interval));
        let now_ns = self.host.now_ns();
        let tick = self.policy.tick(now_ns, self.host.backend());
        self.parts.metrics.housekeeping_backlog_pages.set(tick.deferred);
        let tick_took = tick_start.elapsed();
        let moves = self.host.take_moves();
        self.record(moves);
        // The kernel's counters after this loop's moves are in the metrics: one snapshot of
        // `/metrics` has tierd's moves and the kernel's `pgmigrate_success`/`pgdemote_*` as
        // of the same moment, so the two can be compared exactly.
        if let Some(vm) = self.host.vmstat() {
            let page = self.host.backend_ref().page_size();
            self.parts.metrics.record_vmstat(&vm, page);
        }
        let elapsed = t0.elapsed();
        if tick.demoted + tick.promoted + tick.failed > 0 || elapsed > interval {
            tracing::debug!(
                demoted = tick.demoted,
                promoted = tick.promoted,
                failed = tick.failed,
                guarded = tick.guarded,
                deferred = tick.deferred,
                repaired = tick.repaired,
                urgent = %tick.urgent,
                scan_ms = advance.scan.as_millis(),
                policy_ms = tick_took.as_millis(),
                loop_ms = elapsed.as_millis(),
                "tick"
            );
        }
        self.parts.metrics.loop_seconds.observe(elapsed.as_secs_f64());
        self.publish(elapsed);
        Ok(true)
    }

    fn replan(&mut self) {
        self.policy.replan(self.policy_cfg.clone(), &self.parts.topology, &self.graph);
    }

    /// Counts the tick's moves, once: metrics per edge and kind, totals for the status.
    fn record(&mut self, moves: Moves) {
        let page = self.host.backend_ref().page_size();
        for (&(from, to), &pages) in &moves.moved {
            // A path edge is a demotion, off a stranded node a repair, any other a promotion.
            let kind = if self.graph.entry(from).destinations().any(|d| d == to) {
                MoveKind::Demotion
            } else if self.host.is_repair(from, to) {
                MoveKind::Repair
            } else {
                MoveKind::Promotion
            };
            self.parts.metrics.record_move(kind, u32::from(from), u32::from(to), pages, page);
            *self.moved.entry((from, to)).or_default() += pages;
        }
        for (errno, pages) in moves.failures {
            self.parts
                .metrics
                .move_failures
                .get_or_create(&crate::metrics::ErrnoLabel { errno: errno.clone() })
                .inc_by(pages);
            *self.failures.entry(errno).or_default() += pages;
        }
        self.no_room += moves.no_room;
    }

    /// Per-node memory and headroom, the moves since start, the loop, and the host's own
    /// fields. The backend read every node's memory this loop (and follows its own moves):
    /// no second read here.
    fn publish(&mut self, elapsed: Duration) {
        let backend = self.host.backend_ref();
        let page = backend.page_size();
        let metrics = &self.parts.metrics;
        let mut nodes = Vec::new();
        for n in backend.memory_nodes().iter() {
            let (total, free) = backend
                .node_memory(n)
                .map_or((0, 0), |m| (m.total.saturating_mul(page), m.free.saturating_mul(page)));
            let label = NodeLabel { node: u32::from(n) };
            metrics
                .node_total_bytes
                .get_or_create(&label)
                .set(i64::try_from(total).unwrap_or(i64::MAX));
            metrics
                .node_free_bytes
                .get_or_create(&label)
                .set(i64::try_from(free).unwrap_or(i64::MAX));
            let target = self.parts.paths.table().next_migration_node(n);
            nodes.push(NodeStatus {
                node: u32::from(n),
                total_mib: total >> 20,
                free_mib: free >> 20,
                headroom_pct: target.map(|_| self.policy_cfg.headroom_pct_of(n)),
                target: target.map(u32::from),
            });
        }
        let status = Arc::clone(&self.parts.status);
        let mut s = status.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        s.nodes = nodes;
        s.loops = self.loops;
        s.last_loop_ms = elapsed.as_secs_f64() * 1e3;
        s.moved_pages = self.moved.iter().map(|((f, t), v)| (format!("{f}->{t}"), *v)).collect();
        s.failures.clone_from(&self.failures);
        s.no_room_pages = self.no_room;
        self.host.publish(&mut s, &self.parts.metrics);
    }

    /// SIGHUP: the host's reload, and the policy re-planned for what it gives.
    pub fn reload(&mut self, opts: &RunOptions) {
        let old = std::mem::take(&mut self.parts.config);
        self.parts.config = self.host.reload(opts, old, &self.parts.paths);
        let new = self.host.policy_config(&self.parts.config);
        if new != self.policy_cfg {
            self.policy_cfg = new;
            self.replan();
        }
    }

    /// Loops every `[daemon] interval_ms` until a signal other than SIGHUP (or the host)
    /// stops it; SIGHUP reloads between loops.
    pub fn run(
        &mut self,
        opts: &RunOptions,
        signals: &mut signal_hook::iterator::Signals,
    ) -> Result<()> {
        loop {
            let t0 = Instant::now();
            if !self.step()? {
                return Ok(());
            }
            // Wait for the next interval, answering signals meanwhile.
            let deadline = t0 + Duration::from_millis(self.parts.config.daemon.interval_ms);
            loop {
                for sig in signals.pending() {
                    if sig != signal_hook::consts::SIGHUP {
                        tracing::info!("signal {sig}: stopping");
                        return Ok(());
                    }
                    self.reload(opts);
                }
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                std::thread::sleep((deadline - now).min(Duration::from_millis(50)));
            }
        }
    }
}
