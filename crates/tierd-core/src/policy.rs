//! The `tierd` policy: proactive demotion that keeps headroom, and rate-limited promotion
//! with a ping-pong guard. Pure logic over a [`Backend`]; the simulator and the daemon run
//! this same code.
//!
//! Every [`Tierd::tick`] (one per `interval_ms`) does two things.
//!
//! 1. **Demotion keeps headroom.** Every node with a migration target keeps
//!    `headroom_pct` of its size free *above* its `high` watermark. Below that, the policy
//!    asks the backend for the node's coldest pages and moves them one step down the path
//!    (the target, then the fallbacks in order, each only while it stays above its own `low`
//!    watermark). Nodes below their goal that allocations drain fast enough to reach their
//!    `low` watermark within [`URGENT_TICKS`] ticks (at the last interval's rate) are
//!    urgent and come first, the least time left first: a slow tick spent on a lower tier's
//!    housekeeping must not leave the node that programs allocate on waiting. The others
//!    (housekeeping) are served deepest first, so a lower tier makes room before an upper
//!    one spills into it, in batches of [`HOUSEKEEPING_BATCH`] pages while
//!    [`Backend::out_of_time`] allows: the rest waits for the next tick, which observes the
//!    draining nodes again. The point is that allocations on a fast node never find it
//!    below `low`: kswapd is never woken there and never gets the chance to swap while lower
//!    tiers have room (the RFC's "gobs of space in slower memory"). Against allocation
//!    bursts the headroom grows to `burst_factor` times what was allocated on the node during
//!    the last interval (at most a quarter of the node): a fixed percentage that suits the
//!    steady state is too small for a program filling its heap between two ticks.
//! 2. **Promotion brings hot pages back.** Pages the backend saw accessed repeatedly on a
//!    lower node (at least `promote_min_heat`) move to its promotion node (the nearest CPU
//!    node above it in the path graph), at most `promote_mib_per_s`. When the upper node has
//!    no room above its headroom, as many of its coldest pages are demoted first (an
//!    exchange), in rounds of [`HOUSEKEEPING_BATCH`] against victims found by one look, so
//!    that the lower node the hot pages leave takes the victims round by round. With `fill`,
//!    pages seen accessed less than that go up only into room already free above the goal
//!    (on the promotion node, else the nearest node above), never by an exchange.
//!    With `quiet_ms`, a node nothing allocated on for that long keeps no fixed headroom
//!    (its goal is `high` plus the burst term, which returns with the first allocation): free
//!    memory nobody allocates into serves no access.
//!
//! The ping-pong guard: a page moved (either way) less than `pingpong_ms` ago is not moved
//! again, so a page that is hot for one window does not bounce between tiers.
//!
//! 3. **Placement repair.** Nodes that no migration path reaches but the kernel's own
//!    demotion (tierd's synchronous backstop, [`crate::backstop`]) can fill are drained onto
//!    the user's destinations ([`Tierd::set_repair`]), coldest first, in housekeeping batches
//!    within the demotion budget, after the headroom demotions and before promotion.

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::backend::{Backend, MoveError, PageHeat};
use crate::graph::PathGraph;
use crate::node::{NodeId, NodeMask};
use crate::topology::Topology;

/// The policy's parameters, as in a scenario's or the daemon's `[policy]` table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// How often the policy runs, milliseconds. Default 10.
    pub interval_ms: u64,
    /// Free memory kept above the `high` watermark on each node with a target, percent of
    /// the node's size. Default 1 (the burst term covers a program filling its heap).
    pub headroom_pct: f64,
    /// Per-node overrides of `headroom_pct`, keyed by node id (`[policy.node_headroom_pct]`
    /// with `0 = 10.0`). Default none.
    #[serde(with = "crate::node::keys")]
    pub node_headroom_pct: std::collections::BTreeMap<NodeId, f64>,
    /// Extra headroom against allocation bursts: a node keeps free at least this many times
    /// what was allocated on it during the last interval (up to a quarter of the node), when
    /// that is more than `headroom_pct`. 0 turns it off. Default 2.
    pub burst_factor: f64,
    /// Most memory demoted per second to keep headroom, MiB/s. Default 4096.
    pub demote_mib_per_s: u64,
    /// Whether hot pages of lower tiers are promoted. Default true.
    pub promote: bool,
    /// Most memory promoted per second, MiB/s. Default 4096, as fast as demotion: a hot set
    /// that moved comes back within a second.
    pub promote_mib_per_s: u64,
    /// Least heat (accesses seen in the tracker's window) that makes a page worth promoting.
    /// Default 2.
    pub promote_min_heat: u32,
    /// A page moved less than this long ago is not moved again, milliseconds. Default 200.
    pub pingpong_ms: u64,
    /// Whether pages the backend saw accessed but below `promote_min_heat` are promoted
    /// into room the upper node already has free above its goal (never by an exchange).
    /// Default true.
    pub fill: bool,
    /// A node on which nothing was allocated for this long keeps no `headroom_pct` (its goal
    /// is its `high` watermark plus the burst term, which returns with the first
    /// allocation): free memory nobody allocates into is memory no page is served from.
    /// 0 keeps the headroom always. Default 100.
    pub quiet_ms: u64,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            interval_ms: 10,
            headroom_pct: 1.0,
            node_headroom_pct: std::collections::BTreeMap::new(),
            burst_factor: 2.0,
            demote_mib_per_s: 4096,
            promote: true,
            promote_mib_per_s: 4096,
            promote_min_heat: 2,
            pingpong_ms: 200,
            fill: true,
            quiet_ms: 100,
        }
    }
}

impl PolicyConfig {
    /// The headroom of `node`, percent: its override, else `headroom_pct`.
    pub fn headroom_pct_of(&self, node: NodeId) -> f64 {
        self.node_headroom_pct.get(&node).copied().unwrap_or(self.headroom_pct)
    }

    /// Checks values a type cannot: headrooms ([`check_headroom`]), the burst factor, the
    /// interval.
    pub fn check(&self) -> Result<(), String> {
        check_headroom(
            "headroom_pct",
            self.headroom_pct,
            "node_headroom_pct",
            &self.node_headroom_pct,
        )?;
        if !(0.0..=100.0).contains(&self.burst_factor) {
            return Err(format!("burst_factor = {} is not in 0 to 100", self.burst_factor));
        }
        if self.interval_ms == 0 {
            return Err("interval_ms must be at least 1".into());
        }
        Ok(())
    }
}

/// The one check of a headroom setting, for the policy's `[policy]` table and the daemon's
/// `[headroom]` alike: a percentage from 0 to below 100 (a node kept entirely free holds
/// nothing), and per-node keys that are node ids written as sysfs writes them (`"0"`, not
/// `"+0"`, `" 0"` or `"00"`, which would parse and then never match a node).
pub fn check_headroom(
    default_name: &str,
    default_pct: f64,
    node_name: &str,
    per_node: &std::collections::BTreeMap<NodeId, f64>,
) -> Result<(), String> {
    let pct = |what: &str, v: f64| {
        if (0.0..100.0).contains(&v) {
            Ok(())
        } else {
            Err(format!("{what} = {v}: a percentage from 0 to below 100"))
        }
    };
    pct(default_name, default_pct)?;
    for (node, v) in per_node {
        pct(&format!("{node_name}.{node}"), *v)?;
    }
    Ok(())
}

/// What one tick did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TickStats {
    /// Pages demoted (to keep headroom or to make room for promotions).
    pub demoted: u64,
    /// Pages promoted.
    pub promoted: u64,
    /// Moves the backend refused (any per-page error).
    pub failed: u64,
    /// Candidates skipped by the ping-pong guard.
    pub guarded: u64,
    /// Demotions left to the next tick because the backend was out of time (housekeeping
    /// and repair past [`Backend::out_of_time`], any demotion past [`Backend::tick_over`]).
    pub deferred: u64,
    /// Pages moved off stranded nodes onto the paths (placement repair).
    pub repaired: u64,
    /// The nodes whose demotion was urgent this tick.
    pub urgent: NodeMask,
}

/// A node below its goal is urgent when, drained as in the last interval, it would reach its
/// `low` watermark within this many ticks.
pub const URGENT_TICKS: u64 = 8;

/// Pages per batch of housekeeping demotion (4 MiB of 4 KiB pages): between two batches the
/// policy asks [`Backend::out_of_time`].
pub const HOUSEKEEPING_BATCH: u64 = 1024;

/// Pages one demotion moves between two looks at [`Backend::tick_over`].
const CHUNK: usize = 1024;

/// Pages per batch of placement repair (32 MiB of 4 KiB pages): every page of a stranded
/// node has to go, and a backend's cost per batch is mostly finding the node's pages, so
/// repair takes larger batches than housekeeping.
pub const REPAIR_BATCH: u64 = 8 * HOUSEKEEPING_BATCH;

/// One node's place in the path graph, computed once.
#[derive(Clone, Debug)]
struct NodePlan {
    node: NodeId,
    /// Target, then fallbacks: where this node's cold pages go.
    destinations: Vec<NodeId>,
    /// Where this node's hot pages go, if anywhere.
    promote_to: Option<NodeId>,
    /// The other nodes above this one, nearest first: where its warm pages fill free room
    /// when `promote_to` has none.
    fill_to: Vec<NodeId>,
}

/// The policy state. See the module documentation.
#[derive(Debug)]
pub struct Tierd<P> {
    config: PolicyConfig,
    /// Deepest nodes first.
    plans: Vec<NodePlan>,
    /// When each recently moved page moved, nanoseconds.
    moved_at: HashMap<P, u64>,
    /// The same pages in the order they moved, to expire them in O(moves).
    moved_order: VecDeque<(u64, P)>,
    /// Promotion budget carried between ticks, pages.
    promote_tokens: u64,
    /// When the previous tick ran, nanoseconds; `None` before the first.
    last_tick_ns: Option<u64>,
    /// Free pages of each node at the end of the previous tick.
    last_free: std::collections::BTreeMap<NodeId, u64>,
    /// When allocations were last seen on each node, nanoseconds.
    last_alloc_ns: std::collections::BTreeMap<NodeId, u64>,
    /// The nodes quiet this tick (see [`PolicyConfig::quiet_ms`]).
    quiet: NodeMask,
    /// Pages this tick's demotions placed on each node so far.
    placed: std::collections::BTreeMap<NodeId, u64>,
    /// Pages the previous tick's demotions placed on each node: a destination's drain as
    /// much as its own allocations are, since the next tick places there again.
    inflow: std::collections::BTreeMap<NodeId, u64>,
    /// Stranded nodes and where they drain to (placement repair).
    repair: std::collections::BTreeMap<NodeId, Vec<NodeId>>,
    /// The stranded nodes whose last pass found pages, or that were woken since.
    repair_awake: NodeMask,
    /// Scratch buffers reused across ticks.
    heat: Vec<PageHeat<P>>,
    pages: Vec<P>,
    status: Vec<crate::backend::MoveStatus>,
}

/// The nodes from which `node` can be reached along target and fallback edges.
fn ancestors(graph: &PathGraph, node: NodeId) -> NodeMask {
    let mut found = NodeMask::EMPTY;
    let mut changed = true;
    while changed {
        changed = false;
        for (n, e) in graph.iter() {
            if !found.contains(n) && e.destinations().any(|d| d == node || found.contains(d)) {
                found.insert(n);
                changed = true;
            }
        }
    }
    found
}

impl<P: Copy + Eq + std::hash::Hash + std::fmt::Debug> Tierd<P> {
    /// A policy for `topology` with demotion along `graph` (which must be acyclic, as every
    /// [`PathGraph`] accepted by [`crate::PathTable::apply`] is). The promotion node of a node
    /// is the nearest CPU node among the nodes that demote into it (directly or not), or the
    /// nearest such node when none has a CPU.
    pub fn new(config: PolicyConfig, topology: &Topology, graph: &PathGraph) -> Tierd<P> {
        let memory = topology.memory_nodes();
        let mut plans: Vec<(usize, NodePlan)> = memory
            .iter()
            .map(|node| {
                let above = ancestors(graph, node).and(&memory);
                let dist = |a: &NodeId| topology.distance(node, *a).unwrap_or(u32::MAX);
                let cpu = above.and(&topology.cpu_nodes());
                let pool = if cpu.is_empty() { above } else { cpu };
                let promote_to = pool.iter().min_by_key(|a| (dist(a), *a));
                let mut fill_to: Vec<NodeId> =
                    above.iter().filter(|a| Some(*a) != promote_to).collect();
                fill_to.sort_by_key(|a| (dist(a), *a));
                let destinations =
                    graph.entry(node).destinations().filter(|d| memory.contains(*d)).collect();
                (above.len(), NodePlan { node, destinations, promote_to, fill_to })
            })
            .collect();
        plans.sort_by_key(|(depth, plan)| (std::cmp::Reverse(*depth), plan.node));
        Tierd {
            config,
            plans: plans.into_iter().map(|(_, p)| p).collect(),
            moved_at: HashMap::new(),
            moved_order: VecDeque::new(),
            promote_tokens: 0,
            last_tick_ns: None,
            last_free: std::collections::BTreeMap::new(),
            last_alloc_ns: std::collections::BTreeMap::new(),
            quiet: NodeMask::EMPTY,
            placed: std::collections::BTreeMap::new(),
            inflow: std::collections::BTreeMap::new(),
            repair: std::collections::BTreeMap::new(),
            repair_awake: NodeMask::EMPTY,
            heat: Vec::new(),
            pages: Vec::new(),
            status: Vec::new(),
        }
    }

    /// Takes a new configuration, topology or path graph (a path changed, the config was
    /// reloaded) while keeping what the policy remembers: when each page last moved (so the
    /// ping-pong guard holds across the change), the promotion budget and the free memory
    /// of the last tick.
    pub fn replan(&mut self, config: PolicyConfig, topology: &Topology, graph: &PathGraph) {
        let fresh = Tierd::<P>::new(config, topology, graph);
        self.config = fresh.config;
        self.plans = fresh.plans;
    }

    /// Sets the stranded nodes to drain and their destinations, in order (see
    /// [`crate::backstop::plan`]); an empty map turns placement repair off. A destination
    /// that is not a memory node of the topology is skipped when the tick runs.
    pub fn set_repair(&mut self, repair: std::collections::BTreeMap<NodeId, Vec<NodeId>>) {
        self.repair_awake = repair.keys().copied().collect();
        self.repair = repair;
    }

    /// Wakes every stranded node: the caller saw the kernel move pages (its demotion ran).
    /// A node whose pass finds nothing to move sleeps until then, so that an empty stranded
    /// node costs no scan every tick.
    pub fn wake_repair(&mut self) {
        self.repair_awake = self.repair.keys().copied().collect();
    }

    /// The configuration.
    pub fn config(&self) -> &PolicyConfig {
        &self.config
    }

    /// The node `node`'s hot pages are promoted to, if any.
    pub fn promotion_target(&self, node: NodeId) -> Option<NodeId> {
        self.plans.iter().find(|p| p.node == node).and_then(|p| p.promote_to)
    }

    /// Pages per tick allowed by a rate in MiB/s.
    fn per_tick(mib_per_s: u64, page_size: u64, elapsed_ms: u64) -> u64 {
        let bytes = u128::from(mib_per_s) * (1 << 20) * u128::from(elapsed_ms) / 1000;
        u64::try_from(bytes / u128::from(page_size.max(1))).unwrap_or(u64::MAX)
    }

    /// The time this tick's budgets cover: since the previous tick, so that the rate limits
    /// hold in real time when ticks come late (a daemon loop slower than `interval_ms`),
    /// at least one interval and at most four (a long stall is not paid back at once).
    fn elapsed_ms(&self, now_ns: u64) -> u64 {
        let interval = self.config.interval_ms.max(1);
        self.last_tick_ns.map_or(interval, |last| {
            (now_ns.saturating_sub(last) / 1_000_000).clamp(interval, interval * 4)
        })
    }

    /// Pages `node` keeps free: its `high` watermark plus the headroom.
    fn goal<B: Backend<Page = P>>(&self, b: &B, node: NodeId) -> Option<(u64, u64)> {
        let m = b.node_memory(node)?;
        #[allow(
            clippy::cast_precision_loss,
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss
        )]
        let headroom = (m.total as f64 * self.headroom_pct_now(node) / 100.0) as u64;
        // What allocations took since the last tick (the policy's own moves are included in
        // `last_free`), scaled: a burst needs room for more than one interval.
        let consumed = self.last_free.get(&node).map_or(0, |last| last.saturating_sub(m.free));
        #[allow(
            clippy::cast_precision_loss,
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss
        )]
        let burst = ((consumed as f64 * self.config.burst_factor) as u64).min(m.total / 4);
        Some((m.free, m.wmark_high + headroom.max(burst)))
    }

    /// The headroom `node` keeps this tick, percent: none while it is quiet.
    fn headroom_pct_now(&self, node: NodeId) -> f64 {
        if self.quiet.contains(node) {
            0.0
        } else {
            self.config.headroom_pct_of(node).clamp(0.0, 100.0)
        }
    }

    /// Notes which nodes saw allocations since the last tick, and which are quiet.
    fn observe_allocations<B: Backend<Page = P>>(&mut self, b: &B, now_ns: u64) {
        self.quiet = NodeMask::EMPTY;
        let quiet_ns = self.config.quiet_ms.saturating_mul(1_000_000);
        for plan in &self.plans {
            let Some(m) = b.node_memory(plan.node) else { continue };
            let consumed = self.last_free.get(&plan.node).is_some_and(|last| *last > m.free);
            // A node counts as allocated on when the policy first sees it: quiet only after
            // `quiet_ms` of watching it.
            let last = self.last_alloc_ns.entry(plan.node).or_insert(now_ns);
            if consumed {
                *last = now_ns;
            }
            if quiet_ns > 0 && now_ns.saturating_sub(*last) >= quiet_ns {
                self.quiet.insert(plan.node);
            }
        }
    }

    fn recently_moved(&self, page: P, now_ns: u64) -> bool {
        let window = self.config.pingpong_ms.saturating_mul(1_000_000);
        self.moved_at.get(&page).is_some_and(|t| now_ns.saturating_sub(*t) < window)
    }

    fn record_move(&mut self, page: P, now_ns: u64) {
        self.moved_at.insert(page, now_ns);
        self.moved_order.push_back((now_ns, page));
    }

    fn expire(&mut self, now_ns: u64) {
        let window = self.config.pingpong_ms.saturating_mul(1_000_000);
        while let Some(&(t, page)) = self.moved_order.front() {
            if now_ns.saturating_sub(t) < window {
                break;
            }
            self.moved_order.pop_front();
            if self.moved_at.get(&page) == Some(&t) {
                self.moved_at.remove(&page);
            }
        }
    }

    /// The nodes with destinations in the order they demote this tick, each with whether it
    /// is urgent: first the urgent ones (below their goal, and drained since the last tick
    /// fast enough to reach `low` within [`URGENT_TICKS`] ticks, or at their `high`
    /// watermark), least time left first (free above `low` over what the last interval
    /// took); then the others (housekeeping), deepest first (the order of `plans`).
    fn demotion_order<B: Backend<Page = P>>(&self, b: &B) -> Vec<(NodePlan, bool)> {
        let mut urgent: Vec<(u64, u64, &NodePlan)> = Vec::new();
        let mut rest: Vec<&NodePlan> = Vec::new();
        for plan in self.plans.iter().filter(|p| !p.destinations.is_empty()) {
            let drained = b.node_memory(plan.node).zip(self.goal(b, plan.node)).and_then(
                |(m, (free, goal))| {
                    // What allocations took since the last tick, plus what the last tick's
                    // demotions placed here: a destination of an urgent node is filled
                    // again this tick, and its own demotion must not wait for time the
                    // urgent one has used (daemon-cascade: the middle tier's housekeeping
                    // deferred tick after tick while its source spilled past it).
                    let consumed = self
                        .last_free
                        .get(&plan.node)
                        .map_or(0, |l| l.saturating_sub(free))
                        .saturating_add(self.inflow.get(&plan.node).copied().unwrap_or(0));
                    // At or below `high`, kswapd may be running: urgent whatever drained it.
                    // Above, only a drain that would reach `low` within URGENT_TICKS ticks
                    // counts: the kernel's own trickle (slab, page tables, per-CPU page lists
                    // that make the free count lag a migration) on a node that receives
                    // demotions is not a program filling it.
                    let slack = m.free.saturating_sub(m.wmark_low);
                    let soon = consumed > 0 && slack < consumed.saturating_mul(URGENT_TICKS);
                    (free < goal && (soon || free <= m.wmark_high))
                        .then_some((slack, consumed.max(1)))
                },
            );
            match drained {
                Some((slack, consumed)) => urgent.push((slack, consumed, plan)),
                None => rest.push(plan),
            }
        }
        // slack_a / consumed_a < slack_b / consumed_b, without division; stable, so ties
        // keep the deepest-first order.
        urgent.sort_by(|a, b| {
            (u128::from(a.0) * u128::from(b.1)).cmp(&(u128::from(b.0) * u128::from(a.1)))
        });
        let urgent = urgent.into_iter().map(|(_, _, p)| (p.clone(), true));
        urgent.chain(rest.into_iter().map(|p| (p.clone(), false))).collect()
    }

    /// Moves up to `want` of `node`'s coldest pages down its destinations. Returns the number
    /// moved; the caller counts them as demoted or repaired.
    fn demote<B: Backend<Page = P>>(
        &mut self,
        b: &mut B,
        plan: &NodePlan,
        want: u64,
        now_ns: u64,
        stats: &mut TickStats,
    ) -> u64 {
        if plan.destinations.is_empty() {
            return 0;
        }
        let mut pending = self.coldest_unguarded(b, plan.node, want, now_ns, stats);
        let mut moved = 0;
        // In chunks, so that a tick past its time stops between two and leaves the rest
        // to the next tick (which finds the coldest pages afresh).
        while !pending.is_empty() {
            if b.tick_over() {
                stats.deferred += pending.len() as u64;
                break;
            }
            let rest = pending.split_off(pending.len().min(CHUNK));
            let (m, left) = self.place(b, plan, pending, now_ns, stats);
            moved += m;
            stats.failed += left.len() as u64;
            pending = rest;
        }
        moved
    }

    /// Up to `want` of `node`'s coldest pages, less those the ping-pong guard holds.
    fn coldest_unguarded<B: Backend<Page = P>>(
        &mut self,
        b: &mut B,
        node: NodeId,
        want: u64,
        now_ns: u64,
        stats: &mut TickStats,
    ) -> Vec<P> {
        if want == 0 {
            return Vec::new();
        }
        let want_usize = usize::try_from(want).unwrap_or(usize::MAX);
        self.heat.clear();
        b.coldest(node, want_usize, &mut self.heat);
        let mut pending: Vec<P> = Vec::with_capacity(self.heat.len());
        for h in std::mem::take(&mut self.heat) {
            if self.recently_moved(h.page, now_ns) {
                stats.guarded += 1;
            } else {
                pending.push(h.page);
            }
        }
        pending
    }

    /// Moves `pending` (pages of `plan.node`) down its destinations, each filled only to its
    /// floor. Returns the number moved and the pages no destination had room for; other
    /// per-page errors are counted as failed (the page cannot move now).
    fn place<B: Backend<Page = P>>(
        &mut self,
        b: &mut B,
        plan: &NodePlan,
        mut pending: Vec<P>,
        now_ns: u64,
        stats: &mut TickStats,
    ) -> (u64, Vec<P>) {
        let mut moved = 0;
        for &dest in &plan.destinations {
            if pending.is_empty() {
                break;
            }
            let Some(m) = b.node_memory(dest) else {
                continue;
            };
            // A destination that passes its own cold pages on is filled only to the middle
            // of its headroom: its own demotion (next tick) makes room again long before
            // kswapd would wake there. A terminal one may be filled to its low watermark, and
            // so may a quiet one: nothing allocates there, and its own demotion brings it
            // back to `high` next tick.
            let managed = self.plans.iter().any(|p| p.node == dest && !p.destinations.is_empty());
            let floor = if managed && !self.quiet.contains(dest) {
                #[allow(
                    clippy::cast_precision_loss,
                    clippy::cast_possible_truncation,
                    clippy::cast_sign_loss
                )]
                let half = (m.total as f64 * self.headroom_pct_now(dest) / 200.0) as u64;
                m.wmark_high + half
            } else {
                m.wmark_low + 1
            };
            let room = usize::try_from(m.free.saturating_sub(floor)).unwrap_or(0);
            if room == 0 {
                continue;
            }
            let n = room.min(pending.len());
            self.pages.clear();
            self.pages.extend(pending.drain(..n));
            let mut status = std::mem::take(&mut self.status);
            b.move_pages(&self.pages, dest, &mut status);
            let mut refused = Vec::new();
            for (i, s) in status.iter().enumerate() {
                let page = self.pages[i];
                match s {
                    Ok(_) => {
                        moved += 1;
                        *self.placed.entry(dest).or_insert(0) += 1;
                        self.record_move(page, now_ns);
                    }
                    // Full: the next destination may take it.
                    Err(MoveError::NoMem) => refused.push(page),
                    Err(_) => stats.failed += 1,
                }
            }
            self.status = status;
            refused.append(&mut pending);
            pending = refused;
        }
        (moved, pending)
    }

    /// Runs one interval of the policy at simulated or real time `now_ns`.
    pub fn tick<B: Backend<Page = P>>(&mut self, now_ns: u64, b: &mut B) -> TickStats {
        let mut stats = TickStats::default();
        self.expire(now_ns);
        let page_size = b.page_size();
        let elapsed_ms = self.elapsed_ms(now_ns);
        self.last_tick_ns = Some(now_ns);
        self.inflow = std::mem::take(&mut self.placed);
        self.observe_allocations(b, now_ns);
        let mut demote_budget = Self::per_tick(self.config.demote_mib_per_s, page_size, elapsed_ms);
        let plans = self.plans.clone();
        for (plan, urgent) in &self.demotion_order(b) {
            let Some((free, goal)) = self.goal(b, plan.node) else {
                continue;
            };
            let mut want = goal.saturating_sub(free).min(demote_budget);
            if *urgent {
                stats.urgent.insert(plan.node);
                let moved = self.demote(b, plan, want, now_ns, &mut stats);
                stats.demoted += moved;
                demote_budget -= moved;
                continue;
            }
            // Housekeeping: in batches, while the backend says the tick has time.
            while want > 0 {
                if b.out_of_time() {
                    stats.deferred += want;
                    break;
                }
                let batch = want.min(HOUSEKEEPING_BATCH);
                let moved = self.demote(b, plan, batch, now_ns, &mut stats);
                stats.demoted += moved;
                demote_budget -= moved;
                want -= batch;
                if moved == 0 {
                    break;
                }
            }
        }
        self.repair_stranded(b, now_ns, &mut demote_budget, &mut stats);
        if !self.config.promote {
            self.remember_free(b);
            return stats;
        }
        let per_tick = Self::per_tick(self.config.promote_mib_per_s, page_size, elapsed_ms);
        self.promote_tokens = (self.promote_tokens + per_tick).min(per_tick.saturating_mul(2));
        // Promote into the fastest nodes first: deepest-first order reversed.
        for plan in plans.iter().rev() {
            let Some(to) = plan.promote_to else { continue };
            if self.promote_tokens == 0 {
                break;
            }
            self.heat.clear();
            let max = usize::try_from(self.promote_tokens).unwrap_or(usize::MAX);
            b.hottest(plan.node, max, &mut self.heat);
            let mut hot: Vec<P> = Vec::with_capacity(self.heat.len());
            let mut warm: Vec<P> = Vec::new();
            for h in std::mem::take(&mut self.heat) {
                let fills = self.config.fill && h.heat > 0;
                if h.heat >= self.config.promote_min_heat {
                    if self.recently_moved(h.page, now_ns) {
                        stats.guarded += 1;
                    } else {
                        hot.push(h.page);
                    }
                } else if fills {
                    // Not guarded: a fill takes free room only, so it never pushes a page
                    // down that could come back up by the same rule.
                    warm.push(h.page);
                }
            }
            let up = plans.iter().find(|p| p.node == to).cloned();
            if !hot.is_empty() {
                self.promote_in_rounds(b, up.as_ref(), to, &hot, now_ns, &mut stats);
            }
            // Fill: warm pages take only room that is already free (no exchange), so a fast
            // node that allocations left below its goal's worth of use does not sit idle.
            if !warm.is_empty() {
                let mut at = self.promote_in_rounds(b, None, to, &warm, now_ns, &mut stats);
                // What `to` had no room for fills the nearer tiers above, nearest first.
                for &up in &plan.fill_to {
                    if at == warm.len() || self.promote_tokens == 0 {
                        break;
                    }
                    at += self.promote_in_rounds(b, None, up, &warm[at..], now_ns, &mut stats);
                }
            }
        }
        self.remember_free(b);
        stats
    }

    /// Promotes `hot` to `to` in rounds of at most [`HOUSEKEEPING_BATCH`] pages while the
    /// promotion budget lasts. When `to` has no room above its goal for a round, as many of
    /// its coldest pages are demoted first (an exchange, along `up`, the plan of `to`).
    /// Rounds matter because the exchange's demotions usually land on the very node the hot
    /// pages leave: one large exchange would need that node's room for all of them before
    /// any has left it, and stop at that room; each small round frees on the lower node what
    /// the next one demotes into it. Returns how many of `hot`, from the front, it took
    /// (moved or refused); the rest found no room.
    fn promote_in_rounds<B: Backend<Page = P>>(
        &mut self,
        b: &mut B,
        up: Option<&NodePlan>,
        to: NodeId,
        hot: &[P],
        now_ns: u64,
        stats: &mut TickStats,
    ) -> usize {
        let Some((free, goal)) = self.goal(b, to) else { return 0 };
        let tokens = usize::try_from(self.promote_tokens).unwrap_or(usize::MAX);
        let need = hot.len().min(tokens) as u64;
        // The victims, found by one look at `to`'s coldest: several looks in one tick, with
        // no access between them, would find the pages the first look aged as idle.
        let mut victims = match up {
            Some(up) if free.saturating_sub(goal) < need && !up.destinations.is_empty() => {
                let want = need - free.saturating_sub(goal);
                self.coldest_unguarded(b, up.node, want, now_ns, stats)
            }
            _ => Vec::new(),
        };
        let mut at = 0;
        while at < hot.len() && self.promote_tokens > 0 {
            let tokens = usize::try_from(self.promote_tokens).unwrap_or(usize::MAX);
            let batch = usize::try_from(HOUSEKEEPING_BATCH).unwrap_or(usize::MAX);
            let round = (hot.len() - at).min(tokens).min(batch);
            let Some((free, goal)) = self.goal(b, to) else { return at };
            let room = free.saturating_sub(goal);
            if room < round as u64
                && let Some(up) = up
            {
                let n = usize::try_from(round as u64 - room).unwrap_or(0).min(victims.len());
                let batch: Vec<P> = victims.drain(..n).collect();
                let (moved, left) = self.place(b, up, batch, now_ns, stats);
                stats.demoted += moved;
                // No room below for these yet: this round's promotions make some.
                victims.splice(0..0, left);
            }
            let Some((free, goal)) = self.goal(b, to) else { return at };
            // Never below the goal: promotions take only the room above the headroom, which
            // the exchange above made when there was none.
            let room = usize::try_from(free.saturating_sub(goal)).unwrap_or(0).min(round);
            if room == 0 {
                return at;
            }
            let batch = &hot[at..at + room];
            at += room;
            let mut status = std::mem::take(&mut self.status);
            b.move_pages(batch, to, &mut status);
            for (page, s) in batch.iter().zip(&status) {
                match s {
                    Ok(_) => {
                        stats.promoted += 1;
                        self.promote_tokens = self.promote_tokens.saturating_sub(1);
                        self.record_move(*page, now_ns);
                    }
                    Err(_) => stats.failed += 1,
                }
            }
            self.status = status;
        }
        at
    }

    /// Placement repair: drains each stranded node onto its destinations, coldest first, in
    /// batches of [`REPAIR_BATCH`] while the backend has time and `budget` lasts.
    fn repair_stranded<B: Backend<Page = P>>(
        &mut self,
        b: &mut B,
        now_ns: u64,
        budget: &mut u64,
        stats: &mut TickStats,
    ) {
        let memory = b.memory_nodes();
        let stranded: Vec<NodePlan> = self
            .repair
            .iter()
            .filter(|(node, _)| memory.contains(**node))
            .map(|(&node, dests)| NodePlan {
                node,
                destinations: dests.iter().copied().filter(|d| memory.contains(*d)).collect(),
                promote_to: None,
                fill_to: Vec::new(),
            })
            .collect();
        for plan in &stranded {
            if !self.repair_awake.contains(plan.node) {
                continue;
            }
            let Some(m) = b.node_memory(plan.node) else { continue };
            let mut want = m.total.saturating_sub(m.free).min(*budget);
            let mut found = false;
            while want > 0 {
                if b.out_of_time() || b.tick_over() {
                    stats.deferred += want;
                    found = true; // not looked at all: stay awake
                    break;
                }
                let batch = want.min(REPAIR_BATCH);
                let moved = self.demote(b, plan, batch, now_ns, stats);
                stats.repaired += moved;
                found |= moved > 0;
                *budget -= moved;
                want -= batch;
                // Fewer than asked: nothing more of the node is in reach this tick.
                if moved < batch {
                    break;
                }
            }
            if !found {
                self.repair_awake.remove(plan.node);
            }
        }
    }

    fn remember_free<B: Backend<Page = P>>(&mut self, b: &B) {
        for plan in &self.plans {
            if let Some(m) = b.node_memory(plan.node) {
                self.last_free.insert(plan.node, m.free);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{MoveStatus, NodeMemory};

    /// A backend of numbered pages on three nodes, with scripted heat.
    struct Fake {
        on: Vec<NodeId>,
        hot: Vec<bool>,
        total: u64,
        moves: Vec<(u32, NodeId, NodeId)>,
        /// `move_pages` calls before the fake says it is out of time; `None`: never.
        calls_left: Option<usize>,
        /// `move_pages` calls before the fake says the tick is over; `None`: never.
        tick_calls_left: Option<usize>,
    }

    fn id(n: usize) -> NodeId {
        NodeId::new(n).unwrap()
    }

    /// A policy that only demotes, keeping `headroom_pct`.
    fn demoting(headroom_pct: f64) -> PolicyConfig {
        PolicyConfig { headroom_pct, promote: false, ..PolicyConfig::default() }
    }

    /// A fake of `total` pages a node holding, in page order, `count` pages on `node`, hot
    /// or not, for each `(node, count, hot)`.
    fn fake(total: u64, parts: &[(usize, usize, bool)]) -> Fake {
        let (mut on, mut hot) = (Vec::new(), Vec::new());
        for &(node, count, is_hot) in parts {
            on.extend(vec![id(node); count]);
            hot.extend(vec![is_hot; count]);
        }
        Fake { on, hot, total, moves: Vec::new(), calls_left: None, tick_calls_left: None }
    }

    #[allow(clippy::cast_possible_truncation)] // a handful of pages
    impl Backend for Fake {
        type Page = u32;
        fn page_size(&self) -> u64 {
            4096
        }
        fn memory_nodes(&self) -> NodeMask {
            NodeMask::first(3)
        }
        fn node_memory(&self, node: NodeId) -> Option<NodeMemory> {
            if node.index() >= 3 {
                return None;
            }
            let used = self.on.iter().filter(|n| **n == node).count() as u64;
            Some(NodeMemory {
                total: self.total,
                free: self.total - used,
                wmark_min: 1,
                wmark_low: 2,
                wmark_high: 3,
            })
        }
        fn coldest(&mut self, node: NodeId, max: usize, out: &mut Vec<PageHeat<u32>>) {
            let pages = (0..self.on.len()).filter(|&p| self.on[p] == node && !self.hot[p]);
            out.extend(pages.take(max).map(|p| PageHeat { page: p as u32, heat: 0 }));
        }
        fn hottest(&mut self, node: NodeId, max: usize, out: &mut Vec<PageHeat<u32>>) {
            let pages = (0..self.on.len()).filter(|&p| self.on[p] == node && self.hot[p]);
            out.extend(pages.take(max).map(|p| PageHeat { page: p as u32, heat: 5 }));
        }
        fn move_pages(&mut self, pages: &[u32], to: NodeId, status: &mut Vec<MoveStatus>) {
            status.clear();
            for &p in pages {
                let from = self.on[p as usize];
                self.moves.push((p, from, to));
                self.on[p as usize] = to;
                status.push(Ok(to));
            }
            for n in [&mut self.calls_left, &mut self.tick_calls_left].into_iter().flatten() {
                *n = n.saturating_sub(1);
            }
        }
        fn out_of_time(&self) -> bool {
            self.calls_left == Some(0)
        }
        fn tick_over(&self) -> bool {
            self.tick_calls_left == Some(0)
        }
    }

    /// A backend whose hot pages are seen once per window (heat 1): what fill is for.
    struct Warm(Fake);

    impl Backend for Warm {
        type Page = u32;
        fn page_size(&self) -> u64 {
            self.0.page_size()
        }
        fn memory_nodes(&self) -> NodeMask {
            self.0.memory_nodes()
        }
        fn node_memory(&self, node: NodeId) -> Option<NodeMemory> {
            self.0.node_memory(node)
        }
        fn coldest(&mut self, node: NodeId, max: usize, out: &mut Vec<PageHeat<u32>>) {
            self.0.coldest(node, max, out);
        }
        fn hottest(&mut self, node: NodeId, max: usize, out: &mut Vec<PageHeat<u32>>) {
            self.0.hottest(node, max, out);
            for h in out.iter_mut() {
                h.heat = 1;
            }
        }
        fn move_pages(&mut self, pages: &[u32], to: NodeId, status: &mut Vec<MoveStatus>) {
            self.0.move_pages(pages, to, status);
        }
    }

    #[test]
    fn a_tick_past_its_time_leaves_urgent_demotion_to_the_next_not_promotion() {
        // Node 0 full of cold pages (urgent: at its `high`), 60% headroom: 2403 pages to
        // demote, in chunks of 1024. The tick is over after one move call: one chunk moves,
        // the rest is deferred, and the next tick goes on.
        let mut b = Fake { tick_calls_left: Some(1), ..fake(4000, &[(0, 4000, false)]) };
        let mut p = on_chain(PolicyConfig { headroom_pct: 60.0, quiet_ms: 0, ..demoting(0.0) });
        let s = p.tick(0, &mut b);
        assert_eq!((s.demoted, s.deferred), (1024, 2403 - 1024), "{s:?}");
        b.tick_calls_left = None;
        let s = p.tick(10_000_000, &mut b);
        assert_eq!(s.demoted, 2403 - 1024, "{s:?}");
        // Promotion is bounded by its rate, not by the tick's time: the pages it found hot
        // at the tick's start are hot now, and a second look would cost a new scan. 2000 hot
        // pages on node 1, room on node 0, in rounds of 1024: all of them in the one tick.
        let mut b = Fake { tick_calls_left: Some(1), ..fake(4000, &[(1, 2000, true)]) };
        let mut p = on_chain(PolicyConfig::default());
        assert_eq!(p.tick(0, &mut b).promoted, 2000);
    }

    #[test]
    fn an_exchange_larger_than_the_lower_nodes_room_goes_in_rounds() {
        // 4000 pages a node: node 0 full of cold pages, node 1 holding 3000 hot ones. Node 1
        // has room for a few hundred of node 0's victims at a time; each round's promotions
        // make room for the next round's victims.
        let mut b = fake(4000, &[(0, 4000, false), (1, 3000, true)]);
        let s = on_chain(PolicyConfig { headroom_pct: 10.0, ..PolicyConfig::default() })
            .tick(0, &mut b);
        assert_eq!(s.promoted, 3000, "{s:?}");
        assert_eq!(s.failed, 0, "{s:?}");
        let m = b.node_memory(id(0)).unwrap();
        assert!(m.free >= 3 + 400, "headroom kept: {m:?}");
        let below = b.node_memory(id(1)).unwrap();
        assert!(below.free >= 3, "node 1 above its high watermark: {below:?}");
    }

    #[test]
    fn fill_takes_only_free_room_and_never_exchanges() {
        let (topo, graph) = chain();
        // Node 0: 50 cold pages of 100 (room 50 - goal 13 = 37); node 1: 60 warm pages.
        for fill in [true, false] {
            let mut b = Warm(fake(100, &[(0, 50, false), (1, 60, true)]));
            let config = PolicyConfig { headroom_pct: 10.0, fill, ..PolicyConfig::default() };
            let mut p = Tierd::new(config, &topo, &graph);
            let s = p.tick(0, &mut b);
            assert_eq!(s.demoted, 0, "fill {fill}: no exchange for heat 1: {s:?}");
            assert_eq!(s.promoted, if fill { 37 } else { 0 }, "fill {fill}: {s:?}");
        }
    }

    fn chain() -> (Topology, PathGraph) {
        let topo = Topology::synthetic(
            &[10, 20, 30, 20, 10, 20, 30, 20, 10],
            &[true, false, false],
            &[1 << 20; 3],
        );
        let graph = PathGraph::from_toml("[node.0]\ntarget = 1\n[node.1]\ntarget = 2\n").unwrap();
        (topo, graph)
    }

    /// A policy over [`chain`].
    fn on_chain(config: PolicyConfig) -> Tierd<u32> {
        let (topo, graph) = chain();
        Tierd::new(config, &topo, &graph)
    }

    /// The chain's machine with the user's path `0 -> 2`: node 1 terminal, reached by no
    /// path (stranded when the kernel's backstop demotes node 0 to it).
    fn skip_node_1() -> (Topology, PathGraph) {
        (chain().0, PathGraph::from_toml("[node.0]\ntarget = 2\n").unwrap())
    }

    #[test]
    fn stranded_pages_move_on_to_the_user_path_and_are_counted_as_repaired() {
        // The user's path is 0 -> 2 (node 1 terminal); the kernel's backstop demoted 30 pages
        // of node 0 onto node 1. Repair drains node 1 onto node 2, hot pages included (a hot
        // page is promoted from the path, not from the stranded node).
        let (topo, graph) = skip_node_1();
        let mut b = fake(100, &[(0, 50, false), (1, 29, false), (1, 1, true)]);
        let config = PolicyConfig { promote: false, ..PolicyConfig::default() };
        let mut p = Tierd::new(config, &topo, &graph);
        let s = p.tick(0, &mut b);
        assert_eq!(s.repaired, 0, "no repair until the backstop asks for it");
        p.set_repair(std::collections::BTreeMap::from([(id(1), vec![id(2)])]));
        let s = p.tick(10_000_000, &mut b);
        assert_eq!(s.repaired, 29, "every cold page of node 1");
        assert_eq!(s.demoted, 0, "node 0 keeps its headroom: repairs are not demotions");
        assert!(b.moves.iter().all(|&(_, from, to)| from == id(1) && to == id(2)), "{:?}", b.moves);
        assert_eq!(
            b.on.iter().filter(|n| **n == id(1)).count(),
            1,
            "the hot page is the coldest left"
        );
    }

    #[test]
    fn an_empty_stranded_node_sleeps_until_woken() {
        let (topo, graph) = skip_node_1();
        let mut b = fake(100, &[(0, 10, false)]);
        let mut p =
            Tierd::new(PolicyConfig { promote: false, ..PolicyConfig::default() }, &topo, &graph);
        p.set_repair(std::collections::BTreeMap::from([(id(1), vec![id(2)])]));
        assert_eq!(p.tick(0, &mut b).repaired, 0, "nothing on node 1 yet: the node sleeps");
        // The kernel demotes 5 pages to node 1: asleep, nobody looks ...
        for page in 0..5 {
            b.on[page] = id(1);
        }
        assert_eq!(p.tick(10_000_000, &mut b).repaired, 0);
        // ... until the caller saw the kernel move pages.
        p.wake_repair();
        assert_eq!(p.tick(20_000_000, &mut b).repaired, 5);
    }

    #[test]
    fn repair_waits_for_time_and_leaves_a_backlog() {
        let (topo, graph) = skip_node_1();
        let mut b = Fake { calls_left: Some(0), ..fake(100, &[(1, 40, false)]) };
        let mut p = Tierd::new(PolicyConfig::default(), &topo, &graph);
        p.set_repair(std::collections::BTreeMap::from([(id(1), vec![id(2)])]));
        let s = p.tick(0, &mut b);
        assert_eq!((s.repaired, s.deferred), (0, 40), "out of time: all of it deferred");
        b.calls_left = None;
        let s = p.tick(10_000_000, &mut b);
        assert_eq!(s.repaired, 40);
    }

    #[test]
    fn headroom_grows_with_an_allocation_burst() {
        let mut b = fake(100, &[(0, 100, false)]);
        let config = demoting(10.0);
        let mut p = on_chain(config);
        p.tick(0, &mut b);
        assert_eq!(b.node_memory(id(0)).unwrap().free, 13, "high 3 + 10% of 100");
        // 12 new pages allocated on node 0 in the interval: keep twice that free (at most a
        // quarter of the node) from now on.
        b.on.extend([id(0); 12]);
        b.hot.extend([false; 12]);
        assert_eq!(b.node_memory(id(0)).unwrap().free, 1);
        p.tick(10_000_000, &mut b);
        assert_eq!(b.node_memory(id(0)).unwrap().free, 3 + 24, "high 3 + 2 x 12");
    }

    #[test]
    fn a_destination_that_demotes_itself_is_filled_only_to_the_middle_of_its_headroom() {
        // Node 0 full, node 1 with 20 free pages (above its goal of high 3 + 10), node 2
        // empty. Node 1 passes its cold pages on to node 2, so node 0 may fill it only down
        // to high 3 + half its headroom (5) = 8 free, not to its low watermark (2): filled
        // that far in one tick, kswapd would wake there before node 1's own demotion makes
        // room the next tick.
        let mut b = fake(100, &[(0, 100, false), (1, 80, false)]);
        // The headroom kept always, as the daemon keeps it.
        let mut p = on_chain(PolicyConfig { quiet_ms: 0, ..demoting(10.0) });
        p.tick(0, &mut b);
        assert_eq!(b.node_memory(id(1)).unwrap().free, 8, "{:?}", b.moves);
        // A later tick (past the ping-pong guard of the pages that just came in), node 1,
        // short of its goal, passes pages on to node 2.
        p.tick(1_000_000_000, &mut b);
        assert!(b.moves.iter().any(|(_, f, t)| *f == id(1) && *t == id(2)));
        assert!(b.node_memory(id(1)).unwrap().free >= 8);
    }

    #[test]
    fn a_quiet_node_gives_up_its_headroom_until_the_next_allocation() {
        // Node 0: 85 of 100 pages used (free 15, goal high 3 + 10% = 13); 5 warm pages on
        // node 1 would fill room above the goal.
        let mut b = Warm(fake(100, &[(0, 85, false), (1, 5, true)]));
        let config = PolicyConfig { headroom_pct: 10.0, quiet_ms: 100, ..PolicyConfig::default() };
        let mut p = on_chain(config);
        // Watched for less than 100 ms: the headroom holds, 2 pages fill the room above it.
        assert_eq!(p.tick(0, &mut b).promoted, 2);
        assert_eq!(p.tick(50_000_000, &mut b).promoted, 0);
        // 100 ms with nothing allocated: the goal is the high watermark, the rest comes up.
        assert_eq!(p.tick(100_000_000, &mut b).promoted, 3);
        assert_eq!(b.node_memory(id(0)).unwrap().free, 10);
        // An allocation (6 pages) brings the headroom back: node 0 demotes to its goal.
        b.0.on.extend(vec![id(0); 6]);
        b.0.hot.extend(vec![false; 6]);
        let s = p.tick(110_000_000, &mut b);
        assert!(s.demoted > 0, "{s:?}");
        assert!(b.node_memory(id(0)).unwrap().free >= 13, "{:?}", b.node_memory(id(0)));
    }

    #[test]
    fn a_node_that_allocations_drain_demotes_before_a_deeper_one() {
        // A budget of 2 pages a tick. Node 1's goal is high 3 + 20% = 23 free, node 0's high
        // 3 + 10% = 13. Node 1 starts at 18 free: the first tick moves 2 of its pages to
        // node 2 and leaves it below its goal, with nothing allocating on it.
        let mut b = fake(100, &[(0, 80, false), (1, 82, false)]);
        let config = PolicyConfig {
            quiet_ms: 0,
            node_headroom_pct: [(id(1), 20.0)].into_iter().collect(),
            demote_mib_per_s: 1,
            ..demoting(10.0)
        };
        let mut p = on_chain(config);
        p.tick(0, &mut b);
        assert_eq!(b.moves.iter().map(|m| (m.1, m.2)).collect::<Vec<_>>(), [(id(1), id(2)); 2]);
        assert_eq!(b.node_memory(id(1)).unwrap().free, 20);
        // A program allocates 10 pages on node 0: 10 free, below its goal, draining. Deepest
        // first, node 1 would spend the tick's budget; node 0 goes first instead (into node
        // 1, which has room above its floor of high 3 + half its headroom = 13).
        b.on.extend([id(0); 10]);
        b.hot.extend([false; 10]);
        b.moves.clear();
        p.tick(10_000_000, &mut b);
        assert_eq!(b.moves.iter().map(|m| (m.1, m.2)).collect::<Vec<_>>(), [(id(0), id(1)); 2]);
        // Nothing drains node 0 any more: deepest first again, node 1 before node 0 (a
        // second later, past the ping-pong guard of the two pages that just came in).
        b.moves.clear();
        p.tick(1_010_000_000, &mut b);
        assert_eq!(b.moves.first().map(|m| (m.1, m.2)), Some((id(1), id(2))), "{:?}", b.moves);
    }

    #[test]
    fn housekeeping_goes_in_batches_while_the_backend_has_time() {
        let (topo, graph) = chain();
        // Node 1 is 100 pages free of 4000, its goal high 3 + 80% = 3203: 3103 to demote,
        // with nothing allocating on it (housekeeping). Time for two calls: two batches of
        // 1024 pages move, the rest waits for the next tick.
        let mut b = Fake { calls_left: Some(2), ..fake(4000, &[(1, 3900, false)]) };
        let config = PolicyConfig {
            node_headroom_pct: [(id(1), 80.0)].into_iter().collect(),
            promote: false,
            ..PolicyConfig::default()
        };
        let mut p = Tierd::new(config, &topo, &graph);
        let stats = p.tick(0, &mut b);
        assert_eq!(stats.demoted, 2 * HOUSEKEEPING_BATCH);
        assert_eq!(stats.deferred, 3103 - 2 * HOUSEKEEPING_BATCH);
        // With time, the next tick finishes the job.
        b.calls_left = None;
        let stats = p.tick(10_000_000, &mut b);
        assert_eq!((stats.demoted, stats.deferred), (3103 - 2 * HOUSEKEEPING_BATCH, 0));
        assert_eq!(b.node_memory(id(1)).unwrap().free, 3203);
    }

    /// Nodes 0 and 1 (100 pages each, `used0` and `used1` in use) both demoting straight to
    /// node 2 with 10% headroom (goal: high 3 + 10 = 13 free), after a first tick.
    fn side_by_side(used0: usize, used1: usize) -> (Fake, Tierd<u32>) {
        let mut b = fake(100, &[(0, used0, false), (1, used1, false)]);
        let config = demoting(10.0);
        let (topo, graph) = side_by_side_paths();
        let mut p = Tierd::new(config, &topo, &graph);
        assert_eq!(p.tick(0, &mut b), TickStats::default(), "nothing to do at first");
        (b, p)
    }

    fn side_by_side_paths() -> (Topology, PathGraph) {
        let graph = PathGraph::from_toml("[node.0]\ntarget = 2\n[node.1]\ntarget = 2\n").unwrap();
        (chain().0, graph)
    }

    /// Allocates `n` pages on `node` and raises node 1's headroom to `pct`; from then on the
    /// fake is out of time.
    fn drain_and_raise(b: &mut Fake, p: &mut Tierd<u32>, node: usize, n: usize, pct: f64) {
        b.on.extend(vec![id(node); n]);
        b.hot.extend(vec![false; n]);
        let config = PolicyConfig {
            node_headroom_pct: [(id(1), pct)].into_iter().collect(),
            ..p.config().clone()
        };
        let (topo, graph) = side_by_side_paths();
        p.replan(config, &topo, &graph);
        b.calls_left = Some(0);
    }

    #[test]
    fn urgent_demotion_does_not_wait_for_time() {
        let (mut b, mut p) = side_by_side(80, 80);
        // Node 0 drained by 15 pages: urgent, its goal now high 3 + 2 x 15, at most a quarter
        // of the node (3 + 25). Node 1's goal raised to high 3 + 30: housekeeping.
        drain_and_raise(&mut b, &mut p, 0, 15, 30.0);
        let stats = p.tick(10_000_000, &mut b);
        assert_eq!(stats.demoted, 28 - 5, "node 0 up to its goal");
        assert!(b.moves.iter().all(|m| m.1 == id(0)), "{:?}", b.moves);
        assert_eq!(stats.deferred, 33 - 20, "node 1 waits");
        assert_eq!(stats.urgent.to_string(), "0");
    }

    #[test]
    fn a_destination_an_urgent_node_fills_demotes_without_waiting_for_time() {
        // The kernel's default paths on the chain: node 0 falls back to node 2.
        let topo = chain().0;
        let graph =
            PathGraph::from_toml("[node.0]\ntarget = 1\nfallback = \"2\"\n[node.1]\ntarget = 2\n")
                .unwrap();
        // 100-page nodes, 10% headroom: goal high 3 + 10 = 13 free; node 1, a destination
        // that demotes itself, takes node 0's pages only down to high 3 + 5 = 8 free. Node 1
        // starts at its goal (87 used, its pages first in the fake's cold order), node 0 at 80.
        let mut b = fake(100, &[(1, 87, false), (0, 80, false)]);
        let mut p = Tierd::new(PolicyConfig { quiet_ms: 0, ..demoting(10.0) }, &topo, &graph);
        assert_eq!(p.tick(0, &mut b), TickStats::default(), "nothing to do at first");
        // A program takes 15 pages of node 0 and the backend has no time left in any tick:
        // node 0 is urgent (goal high 3 + 2 x 15, at most a quarter: 28) and spills past
        // node 1's floor to node 2.
        b.on.extend([id(0); 15]);
        b.hot.extend([false; 15]);
        b.calls_left = Some(0);
        let s = p.tick(10_000_000, &mut b);
        assert_eq!((s.demoted, s.urgent.to_string()), (28 - 5, "0".to_string()), "{s:?}");
        assert_eq!(b.node_memory(id(1)).unwrap().free, 8);
        // Nothing allocates on node 1, but the last tick placed 5 pages there and node 0
        // places again: node 1 is urgent too and gets back to its goal with no time left.
        b.moves.clear();
        let s = p.tick(20_000_000, &mut b);
        assert!(s.urgent.contains(id(1)), "{s:?}");
        assert_eq!(b.moves.iter().filter(|m| (m.1, m.2) == (id(1), id(2))).count(), 5);
        assert_eq!(b.node_memory(id(1)).unwrap().free, 13);
    }

    #[test]
    fn a_trickle_on_a_node_is_not_urgent() {
        let (mut b, mut p) = side_by_side(50, 50);
        // Node 1 loses one page (47 above low: 47 ticks at that pace) with its goal raised
        // above its free memory (3 + 60): housekeeping, which waits.
        drain_and_raise(&mut b, &mut p, 1, 1, 60.0);
        let stats = p.tick(10_000_000, &mut b);
        assert_eq!((stats.demoted, stats.deferred), (0, 63 - 49));
        assert!(stats.urgent.is_empty());
        // Six pages a tick would reach low within URGENT_TICKS (8): urgent, moved at once.
        b.on.extend([id(1); 6]);
        b.hot.extend([false; 6]);
        let stats = p.tick(20_000_000, &mut b);
        assert_eq!((stats.demoted, stats.deferred), (63 - 43, 0));
        assert_eq!(stats.urgent.to_string(), "1");
    }

    #[test]
    fn budgets_cover_the_time_since_the_last_tick() {
        let config = PolicyConfig { interval_ms: 10, ..PolicyConfig::default() };
        let mut p = on_chain(config);
        assert_eq!(p.elapsed_ms(5_000_000), 10, "the first tick covers one interval");
        p.last_tick_ns = Some(0);
        assert_eq!(p.elapsed_ms(5_000_000), 10, "at least one interval");
        assert_eq!(p.elapsed_ms(30_000_000), 30, "a late tick covers the time since the last");
        assert_eq!(p.elapsed_ms(500_000_000), 40, "at most four intervals");
        // 64 MiB/s over 30 ms of 4 KiB pages.
        assert_eq!(Tierd::<u32>::per_tick(64, 4096, 30), 491);
    }

    #[test]
    fn replanning_keeps_the_ping_pong_guard() {
        let (topo, graph) = chain();
        let mut b = fake(100, &[(0, 100, false), (1, 20, false)]);
        let config = demoting(10.0);
        let mut p = Tierd::new(config.clone(), &topo, &graph);
        p.tick(0, &mut b);
        let moved: Vec<u32> = b.moves.iter().map(|(page, _, _)| *page).collect();
        assert!(!moved.is_empty());
        // Node 1 now demotes too (a new path, a reloaded config): the pages that just came
        // in are still within their residence time and stay.
        let later = PathGraph::from_toml("[node.0]\ntarget = 1\n[node.1]\ntarget = 2\n").unwrap();
        p.replan(PolicyConfig { headroom_pct: 90.0, ..config }, &topo, &later);
        b.moves.clear();
        p.tick(1_000_000, &mut b);
        assert!(
            b.moves.iter().all(|(page, _, _)| !moved.contains(page)),
            "a page moved again within its residence time after a replan: {:?}",
            b.moves
        );
    }

    #[test]
    fn per_node_headroom_overrides() {
        let text = "headroom_pct = 4.0\n[node_headroom_pct]\n1 = 20.0\n";
        let c: PolicyConfig = toml::from_str(text).unwrap();
        c.check().unwrap();
        assert!((c.headroom_pct_of(id(0)) - 4.0).abs() < 1e-12);
        assert!((c.headroom_pct_of(id(1)) - 20.0).abs() < 1e-12);
        // Keys are node ids as sysfs writes them, refused when read, not when checked.
        let err = toml::from_str::<PolicyConfig>("[node_headroom_pct]\nx = 1.0\n").unwrap_err();
        assert!(err.to_string().contains("node key \"x\": `x` is not a node number"), "{err}");
        for key in ["\"01\"", "\"+1\"", "\" 1\""] {
            let text = format!("[node_headroom_pct]\n{key} = 1.0\n");
            let err = toml::from_str::<PolicyConfig>(&text).unwrap_err().to_string();
            assert!(err.contains("write the node id as \"1\""), "{key}: {err}");
        }
        let bad: PolicyConfig = toml::from_str("[node_headroom_pct]\n1 = 100.0\n").unwrap();
        assert!(
            bad.check().unwrap_err().starts_with("node_headroom_pct.1 = 100: "),
            "{:?}",
            bad.check()
        );
        for v in ["120.0", "100.0", "-1.0"] {
            let bad: PolicyConfig = toml::from_str(&format!("headroom_pct = {v}\n")).unwrap();
            assert!(bad.check().unwrap_err().contains("a percentage from 0 to below 100"), "{v}");
        }
        assert!(toml::from_str::<PolicyConfig>("headroom = 1.0\n").is_err(), "unknown field");
    }

    #[test]
    fn promotion_targets_follow_the_graph() {
        let p = on_chain(PolicyConfig::default());
        assert_eq!(p.promotion_target(id(0)), None);
        assert_eq!(p.promotion_target(id(1)), Some(id(0)));
        assert_eq!(p.promotion_target(id(2)), Some(id(0)));
    }

    #[test]
    fn keeps_headroom_and_promotes_hot_pages_once() {
        // 100 pages per node, node 0 full of cold pages, node 2 holding 10 hot ones.
        let mut b = fake(100, &[(0, 100, false), (2, 10, true)]);
        let mut p = on_chain(PolicyConfig { headroom_pct: 10.0, ..PolicyConfig::default() });
        let s = p.tick(0, &mut b);
        assert_eq!(s.promoted, 10);
        // Every demotion went 0 -> 1, every promotion 2 -> 0.
        for (_, from, to) in &b.moves {
            assert!(
                (*from == id(0) && *to == id(1)) || (*from == id(2) && *to == id(0)),
                "{from} -> {to}"
            );
        }
        let m = b.node_memory(id(0)).unwrap();
        assert!(m.free >= 3 + 10, "headroom kept: {m:?}");
        // The promoted pages are now cold: the guard keeps them in place for a while.
        b.hot.iter_mut().for_each(|h| *h = false);
        let before = b.moves.len();
        let s = p.tick(1_000_000, &mut b);
        assert_eq!(s.demoted, 0, "{s:?}");
        assert_eq!(b.moves.len(), before);
    }
}
