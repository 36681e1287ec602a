//! Turning a scenario into machines, replaying the trace under each policy, and the report.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, OnceLock, mpsc};
use std::time::Instant;

use serde::Serialize;
use tierd_core::graph::Entry;
use tierd_core::policy::Tierd;
use tierd_core::topology::Hmat;
use tierd_core::{NodeId, NodeMask, PathGraph, Topology};

use crate::bounds;
use crate::machine::{Machine, MachineConfig, NodeConfig, ProcessConfig, Reclaim, dirty_threshold};
use crate::scenario::{MemoryKind, Paths, PolicyName, ProcessSpec, Scenario};
use crate::workload::{self, Trace};

/// Accesses replayed between two looks at the clock (policy ticks, samples, checks).
const CHUNK: usize = 1024;

/// Why a simulation could not run.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The scenario's paths are not a valid graph.
    #[error("paths: {0}")]
    Paths(String),
    /// The scenario could not be completed (a trace file header).
    #[error("{0}")]
    Scenario(String),
    /// The trace could not be drawn.
    #[error(transparent)]
    Trace(#[from] workload::TraceError),
    /// The run does not fit in memory; the message says what to change.
    #[error("{0}")]
    TooBig(String),
    /// An invariant broke (a bug; reported by checked runs).
    #[error("invariant broken under {policy} after {accesses} accesses: {what}")]
    Invariant {
        /// The policy.
        policy: &'static str,
        /// Accesses replayed.
        accesses: u64,
        /// What broke.
        what: String,
    },
}

/// The machine a scenario describes, ready to simulate.
#[derive(Clone, Debug)]
pub struct Setup {
    /// The topology (for the policy).
    pub topology: Topology,
    /// The migration paths.
    pub graph: PathGraph,
    /// The machine configuration, reclaim mode still to choose.
    pub machine: MachineConfig,
    /// Node slots that count as the fast tier (CPU nodes).
    pub fast: Vec<bool>,
}

/// `[min, low, high]` watermarks per node, in pages, as `__setup_per_zone_wmarks` derives
/// them (one zone per node): `min_free_kbytes` (by default `calculate_min_free_kbytes`:
/// `int_sqrt(lowmem_kbytes * 16)` clamped to 128..=262144) is split across nodes in
/// proportion to their size; `low = min + max(min / 4, size * watermark_scale_factor / 10000)`
/// and `high = min + 2 * that`.
pub fn watermarks(
    node_pages: &[u64],
    page_size: u64,
    min_free_kbytes: Option<u64>,
    scale_factor: u64,
) -> Vec<[u64; 3]> {
    let total: u64 = node_pages.iter().sum();
    let lowmem_kbytes = total * (page_size / 1024).max(1);
    let min_free =
        min_free_kbytes.unwrap_or_else(|| (lowmem_kbytes * 16).isqrt().clamp(128, 262_144));
    let pages_min = min_free * 1024 / page_size;
    node_pages
        .iter()
        .map(|&n| {
            let min =
                u64::try_from(u128::from(pages_min) * u128::from(n) / u128::from(total.max(1)))
                    .unwrap_or(u64::MAX);
            let tmp = (min / 4).max(n * scale_factor / 10_000);
            [min, min + tmp, min + 2 * tmp]
        })
        .collect()
}

fn id(n: usize) -> NodeId {
    NodeId::new(n).expect("simulated nodes are few")
}

/// The automatic paths: `tierd_core::auto`, the kernel's memory tiers (here from the HMAT
/// figures the scenario's latencies and bandwidths fill in) and its preferred and fallback
/// demotion targets.
pub fn auto_paths(topology: &Topology) -> PathGraph {
    tierd_core::auto::auto(topology).to_graph()
}

fn parse_chain(text: &str, nodes: usize) -> Result<PathGraph, String> {
    let mut graph = PathGraph::default();
    let parts: Vec<&str> = text.split("->").map(str::trim).collect();
    let ids: Vec<NodeId> = parts
        .iter()
        .map(|p| {
            p.parse::<usize>()
                .ok()
                .filter(|n| *n < nodes)
                .map(id)
                .ok_or_else(|| format!("`{p}` is not a node of this scenario (in `{text}`)"))
        })
        .collect::<Result<_, _>>()?;
    for w in ids.windows(2) {
        graph.set(w[0], Entry { target: Some(w[1]), fallback: NodeMask::EMPTY });
    }
    Ok(graph)
}

/// The machine's view of process `p`, on pages `first..end`.
fn process_config(p: &ProcessSpec, first: u32, end: u32, zonelist: Vec<u8>) -> ProcessConfig {
    let file = p.memory == MemoryKind::File;
    let dirty_below = dirty_threshold(p.dirty_fraction.unwrap_or(0.0));
    ProcessConfig { first, end, zonelist, file, dirty_below }
}

impl Setup {
    /// Builds the machine of `s`.
    pub fn new(s: &Scenario) -> Result<Setup, SimError> {
        if s.node.is_empty() {
            return Err(SimError::Scenario(
                "the scenario has no [[node]] tables: a `machine` tree must be read into them \
                 first (tierd simulate does)"
                    .into(),
            ));
        }
        let n = s.node.len();
        let lat: Vec<u64> = s.node.iter().map(|x| x.latency_ns).collect();
        let min_lat = lat.iter().copied().min().unwrap_or(1).max(1);
        let mut dist = Vec::with_capacity(n * n);
        for (i, a) in s.node.iter().enumerate() {
            for (j, b) in s.node.iter().enumerate() {
                let d = a.distance.as_ref().map_or_else(
                    || {
                        let far = a.latency_ns.max(b.latency_ns);
                        if i == j { 10 } else { u32::try_from(10 * far / min_lat).unwrap_or(255) }
                    },
                    |row| row[j],
                );
                dist.push(d);
            }
        }
        let pages: Vec<u64> = s.node.iter().map(|x| (x.capacity_mib << 20) / s.page_size).collect();
        let cpu: Vec<bool> = s.node.iter().map(|x| x.cpu).collect();
        let bytes: Vec<u64> = s.node.iter().map(|x| x.capacity_mib << 20).collect();
        let mut topology = Topology::synthetic(&dist, &cpu, &bytes);
        for (info, spec) in topology.nodes.iter_mut().zip(&s.node) {
            info.hmat = Some(Hmat {
                read_latency_ns: Some(spec.latency_ns),
                write_latency_ns: Some(spec.latency_ns),
                read_bandwidth_mbps: Some(spec.bandwidth_mbps),
                write_bandwidth_mbps: Some(spec.bandwidth_mbps),
            });
        }
        let graph = match &s.paths {
            Paths::Text(t) if t.trim() == "auto" => auto_paths(&topology),
            Paths::Text(t) => parse_chain(t, n).map_err(SimError::Paths)?,
            Paths::Graph(table) => {
                let text = toml::to_string(table).map_err(|e| SimError::Paths(e.to_string()))?;
                PathGraph::from_toml(&text).map_err(|e| SimError::Paths(e.to_string()))?
            }
        };
        graph.validate(topology.online, n).map_err(|errs| {
            SimError::Paths(errs.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))
        })?;
        let wm = watermarks(
            &pages,
            s.page_size,
            s.watermarks.min_free_kbytes,
            s.watermarks.watermark_scale_factor,
        );
        let nodes: Vec<NodeConfig> = s
            .node
            .iter()
            .enumerate()
            .map(|(i, spec)| NodeConfig {
                id: id(i),
                total: pages[i],
                wmarks: spec.watermarks_pages.unwrap_or(wm[i]),
                latency_ns: spec.latency_ns,
                bandwidth_mbps: spec.bandwidth_mbps,
            })
            .collect();
        #[allow(clippy::cast_possible_truncation)] // at most 7 nodes
        let destinations: Vec<Vec<u8>> = (0..n)
            .map(|i| graph.entry(id(i)).destinations().map(|d| d.index() as u8).collect())
            .collect();
        let first_cpu = cpu.iter().position(|c| *c).expect("checked: a CPU node exists");
        let mut processes = Vec::new();
        let mut first = 0u32;
        for p in &s.process {
            let len = workload::footprint_pages(&p.workload, s.page_size);
            let end = u32::try_from(u64::from(first) + len)
                .map_err(|_| workload::TraceError::TooManyPages(u64::from(first) + len))?;
            let home = p.cpu_node.map_or(first_cpu, |c| c as usize);
            let allowed = p.bind.unwrap_or(NodeMask::first(n));
            let mut zonelist: Vec<usize> = (0..n).filter(|m| allowed.contains(id(*m))).collect();
            zonelist.sort_by_key(|m| (dist[home * n + m], *m));
            #[allow(clippy::cast_possible_truncation)]
            let zonelist = zonelist.into_iter().map(|m| m as u8).collect();
            processes.push(process_config(p, first, end, zonelist));
            first = end;
        }
        let machine = MachineConfig {
            nodes,
            destinations,
            promotable: vec![false; n],
            processes,
            page_size: s.page_size,
            swap_pages: (s.swap.size_mib << 20) / s.page_size,
            swap_fault_ns: s.swap.fault_us * 1000,
            first_touch_ns: s.costs.first_touch_ns,
            migrate_overhead_ns: s.costs.migrate_overhead_ns,
            reclaim: Reclaim::Swap,
            disk_read_ns: s.disk.read_us * 1000,
            disk_write_ns: s.disk.write_us * 1000,
            swappiness: s.reclaim.swappiness,
        };
        Ok(Setup { topology, graph, machine, fast: cpu })
    }
}

/// One sample of a run over time (for plots).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Sample {
    /// Accesses replayed so far.
    pub accesses: u64,
    /// Pages in use per node, by node id.
    pub used_pages: Vec<u64>,
    /// Fast-tier hit ratio over the accesses since the previous sample.
    pub fast_hit_ratio: f64,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if signature
fn is_zero(v: &u64) -> bool {
    *v == 0
}

#[allow(clippy::ptr_arg)] // serde's skip_serializing_if signature
fn all_zero(v: &Vec<u64>) -> bool {
    v.iter().all(|x| *x == 0)
}

/// One policy's results. Field names are stable (they are the `--json` schema).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct PolicyResult {
    /// `linux-swap`, `linux-demote` or `tierd`.
    pub policy: &'static str,
    /// Average memory access time, ns: latency of the serving node, plus fault (disk reads of
    /// file pages included) and direct reclaim stalls, over all accesses.
    pub amat_ns: f64,
    /// Accesses served by a fast (CPU) node without a fault, over all accesses.
    pub fast_hit_ratio: f64,
    /// Accesses served per node without a fault, by node id.
    pub accesses_per_node: Vec<u64>,
    /// First-touch faults.
    pub first_touches: u64,
    /// Swap-in faults.
    pub swap_ins: u64,
    /// Pages swapped out.
    pub swap_outs: u64,
    /// Pages demoted (by kernel reclaim or the policy).
    pub demotions: u64,
    /// Of which by kernel reclaim.
    pub kernel_demotions: u64,
    /// Pages promoted.
    pub promotions: u64,
    /// MiB moved between nodes.
    pub migrated_mib: f64,
    /// Page moves between node pairs: `moves[from][to]`, by node id.
    pub moves: Vec<Vec<u64>>,
    /// kswapd runs.
    pub kswapd_runs: u64,
    /// Direct reclaim runs.
    pub direct_reclaims: u64,
    /// Accesses that found no memory anywhere (each OOM-killed its process).
    pub oom: u64,
    /// Processes the OOM killer ended (no free memory and the swap device full).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub oom_killed: Vec<String>,
    /// Accesses replayed when the first process was OOM-killed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_oom_kill_at: Option<u64>,
    /// Accesses of killed processes, never simulated.
    #[serde(skip_serializing_if = "is_zero")]
    pub killed_accesses: u64,
    /// File pages read from disk: first reads and refaults (absent when zero, as in every
    /// run without file-backed memory).
    #[serde(skip_serializing_if = "is_zero")]
    pub disk_reads: u64,
    /// Dirty file pages written back by reclaim (absent when zero).
    #[serde(skip_serializing_if = "is_zero")]
    pub disk_writes: u64,
    /// File pages read again after reclaim had dropped them (absent when zero).
    #[serde(skip_serializing_if = "is_zero")]
    pub refaults_file: u64,
    /// Of the refaults, those within the workingset, activated at once (absent when zero).
    #[serde(skip_serializing_if = "is_zero")]
    pub workingset_activations: u64,
    /// File pages reclaim dropped from the page cache (absent when zero).
    #[serde(skip_serializing_if = "is_zero")]
    pub file_drops: u64,
    /// File pages resident per node at the end, by node id (absent when all zero).
    #[serde(skip_serializing_if = "all_zero")]
    pub file_pages: Vec<u64>,
    /// Simulated time of the workload, seconds.
    pub simulated_s: f64,
    /// Simulated background time (kswapd, migrations), seconds.
    pub background_s: f64,
    /// Samples over time (only with sampling on).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<Sample>,
    /// Wall-clock seconds this policy took to simulate (not in `--json`: not deterministic).
    #[serde(skip)]
    pub wall_s: f64,
}

/// The bounds.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Bounds {
    /// Static top-k fast-tier hit ratio.
    pub static_fast_hit_ratio: f64,
    /// Static top-k average access time, ns.
    pub static_amat_ns: f64,
    /// Belady-with-bypass fast-tier hit ratio; `None` for a streamed trace (it needs the
    /// whole trace in memory, 8 bytes an access).
    pub belady_fast_hit_ratio: Option<f64>,
}

/// The whole report.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Report {
    /// Schema version of this JSON.
    pub version: u32,
    /// The scenario's name.
    pub scenario: String,
    /// Its seed.
    pub seed: u64,
    /// Accesses replayed.
    pub accesses: u64,
    /// Pages of all processes.
    pub pages: u64,
    /// Bytes per page.
    pub page_size: u64,
    /// The migration paths used, `node -> target` (fallbacks in brackets).
    pub paths: String,
    /// Size of each node, pages, by node id.
    pub node_pages: Vec<u64>,
    /// `[min, low, high]` watermarks per node, pages.
    pub watermarks: Vec<[u64; 3]>,
    /// One entry per policy, in scenario order.
    pub policies: Vec<PolicyResult>,
    /// The bounds, unless disabled.
    pub bounds: Option<Bounds>,
    /// Wall-clock seconds spent drawing the trace (not in `--json`).
    #[serde(skip)]
    pub draw_wall_s: f64,
    /// Wall-clock seconds spent on the bounds (not in `--json`).
    #[serde(skip)]
    pub bounds_wall_s: f64,
    /// Worker threads the policies and bounds ran on (not in `--json`).
    #[serde(skip)]
    pub threads: usize,
    /// Wall-clock seconds of the whole run: draw, policies and bounds (not in `--json`).
    #[serde(skip)]
    pub wall_s: f64,
}

/// Knobs of a run that are not part of the scenario.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Skip the bounds (they cost a pass over the trace and 4 bytes per access).
    pub no_bounds: bool,
    /// Check every invariant after each chunk (tests; slow).
    pub check: bool,
    /// Record a sample every this many accesses (0 = none).
    pub sample_every: u64,
    /// Override the scenario's access count.
    pub accesses: Option<u64>,
    /// Do not hold the trace in memory: draw (or read) it again for every policy. Always on
    /// when a process replays a trace file. The Belady bound is skipped.
    pub stream: bool,
    /// Memory the run may use, bytes (`tierd simulate` passes what the host has available):
    /// a run that needs more is refused before anything is allocated ([`memory_needed`]).
    pub memory_budget: Option<u64>,
}

/// What a run holds in memory, bytes, by part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryNeed {
    /// The drawn trace, 4 bytes an access (0 when streamed).
    pub trace: u64,
    /// The machine's state, [`Machine::BYTES_PER_PAGE`] a page (two copies: the replay and
    /// its setup).
    pub machine: u64,
    /// The bounds: a counter per page, and for the Belady bound 8 bytes an access.
    pub bounds: u64,
}

impl MemoryNeed {
    /// All parts.
    pub fn total(&self) -> u64 {
        self.trace.saturating_add(self.machine).saturating_add(self.bounds)
    }
}

/// What running `s` needs in memory, before anything is allocated.
pub fn memory_needed(s: &Scenario, stream: bool, bounds: bool) -> MemoryNeed {
    let pages = s
        .process
        .iter()
        .fold(0u64, |t, p| t.saturating_add(workload::footprint_pages(&p.workload, s.page_size)));
    let per_page = Machine::BYTES_PER_PAGE as u64;
    // The dirty bits, one per page, when some process is file-backed.
    let dirty =
        if s.process.iter().any(|p| p.memory == MemoryKind::File) { pages.div_ceil(8) } else { 0 };
    MemoryNeed {
        trace: if stream { 0 } else { s.accesses.saturating_mul(4) },
        machine: pages.saturating_mul(per_page).saturating_add(dirty).saturating_mul(2),
        bounds: if bounds {
            pages.saturating_mul(4).saturating_add(if stream {
                0
            } else {
                s.accesses.saturating_mul(8)
            })
        } else {
            0
        },
    }
}

/// Refuses a run that cannot fit in `budget` bytes, saying what to change.
pub fn check_memory(
    s: &Scenario,
    stream: bool,
    bounds: bool,
    budget: Option<u64>,
) -> Result<(), SimError> {
    let Some(budget) = budget else {
        return Ok(());
    };
    let need = memory_needed(s, stream, bounds);
    if need.total() <= budget {
        return Ok(());
    }
    let mib = |b: u64| b >> 20;
    let streamed = memory_needed(s, true, false);
    let advice = if memory_needed(s, true, bounds).total() <= budget {
        "use --stream (the trace is drawn again for each policy instead of held), or fewer \
         accesses"
            .to_string()
    } else if streamed.total() <= budget {
        "use --stream and --no-bounds, or fewer accesses".to_string()
    } else {
        format!(
            "even streamed, the machine's state needs {} MiB: simulate smaller footprints \
             (or a larger page_size)",
            mib(streamed.total())
        )
    };
    Err(SimError::TooBig(format!(
        "this run needs about {} MiB of memory ({} MiB of trace for {} accesses, {} MiB of \
         machine state, {} MiB for the bounds) but {} MiB are available; {advice}",
        mib(need.total()),
        mib(need.trace),
        s.accesses,
        mib(need.machine),
        mib(need.bounds),
        mib(budget)
    )))
}

fn describe(graph: &PathGraph) -> String {
    let parts: Vec<String> = graph
        .iter()
        .map(|(n, e)| {
            let t = e.target.map_or(-1, NodeId::as_i32);
            let fb = e.fallback;
            if fb.is_empty() { format!("{n} -> {t}") } else { format!("{n} -> {t} [{fb}]") }
        })
        .collect();
    if parts.is_empty() { "all terminal".into() } else { parts.join(", ") }
}

/// Runs one policy over `trace`; `progress` is called with accesses done.
pub fn run_policy(
    s: &Scenario,
    setup: &Setup,
    trace: &Trace,
    policy: PolicyName,
    opts: &RunOptions,
    progress: &mut dyn FnMut(u64),
) -> Result<PolicyResult, SimError> {
    let mut observe = |_: &Machine, done: u64| {
        if done % (1 << 20) < CHUNK as u64 {
            progress(done);
        }
    };
    replay(s, setup, trace, policy, opts, &mut observe).map(|(r, _)| r)
}

/// One policy's replay in progress.
struct Replayer<'a, O> {
    m: Machine,
    tierd: Option<Tierd<u32>>,
    policy: PolicyName,
    interval_ns: u64,
    next_tick: u64,
    /// The tracker's window, and when the current one ends (simulated ns).
    window_ns: u64,
    window_end: u64,
    samples: Vec<Sample>,
    next_sample: u64,
    last_fast: u64,
    last_at: u64,
    done: u64,
    /// Wall-clock seconds spent replaying so far.
    busy_s: f64,
    fast: &'a [bool],
    opts: &'a RunOptions,
    observe: O,
}

impl<'a, O: FnMut(&Machine, u64)> Replayer<'a, O> {
    /// A fresh machine for `policy`, with the policy itself when it is tierd.
    fn new(
        s: &Scenario,
        setup: &'a Setup,
        policy: PolicyName,
        opts: &'a RunOptions,
        observe: O,
    ) -> Self {
        let mut cfg = setup.machine.clone();
        cfg.reclaim = match policy {
            PolicyName::LinuxDemote => Reclaim::Demote,
            PolicyName::Tierd if s.costs.kernel_demotion_under_tierd => Reclaim::Demote,
            PolicyName::LinuxSwap | PolicyName::Tierd => Reclaim::Swap,
        };
        let tierd = (policy == PolicyName::Tierd)
            .then(|| Tierd::<u32>::new(s.policy.clone(), &setup.topology, &setup.graph));
        if let Some(t) = &tierd
            && t.config().promote
        {
            for (slot, p) in cfg.promotable.iter_mut().enumerate() {
                *p = t.promotion_target(id(slot)).is_some();
            }
        }
        Replayer {
            m: Machine::new(cfg),
            tierd,
            policy,
            interval_ns: s.policy.interval_ms.max(1) * 1_000_000,
            next_tick: s.policy.interval_ms.max(1) * 1_000_000,
            window_ns: s.tracker.window_ms.max(1) * 1_000_000,
            window_end: s.tracker.window_ms.max(1) * 1_000_000,
            samples: Vec::new(),
            next_sample: opts.sample_every,
            last_fast: 0,
            last_at: 0,
            done: 0,
            busy_s: 0.0,
            fast: &setup.fast,
            opts,
            observe,
        }
    }

    fn fast_served(&self) -> u64 {
        (0..self.m.node_count()).filter(|i| self.fast[*i]).map(|i| self.m.counters.served[i]).sum()
    }

    /// Replays `accesses` in chunks, timing the work.
    fn replay(&mut self, accesses: &[u32]) -> Result<(), SimError> {
        let t = Instant::now();
        let fed = accesses.chunks(CHUNK).try_for_each(|chunk| self.feed(chunk));
        self.busy_s += t.elapsed().as_secs_f64();
        fed
    }

    /// Replays one chunk, then runs what happens between chunks: policy ticks, checks,
    /// samples.
    fn feed(&mut self, chunk: &[u32]) -> Result<(), SimError> {
        let m = &mut self.m;
        if m.all_killed() {
            // Nothing runs any more: the rest of the trace belongs to dead processes.
            m.counters.killed_accesses += chunk.len() as u64;
            self.done += chunk.len() as u64;
            return Ok(());
        }
        m.run(chunk);
        self.done += chunk.len() as u64;
        if let Some(t) = self.tierd.as_mut() {
            let now = m.now_ns();
            if now >= self.next_tick {
                t.tick(now, m);
                if now >= self.window_end {
                    m.end_window();
                    self.window_end = now + self.window_ns;
                }
                self.next_tick = now + self.interval_ns;
            }
        }
        if self.opts.check {
            m.check().map_err(|what| SimError::Invariant {
                policy: self.policy.as_str(),
                accesses: self.done,
                what,
            })?;
        }
        if self.opts.sample_every > 0 && self.done >= self.next_sample {
            let fast = self.fast_served();
            #[allow(clippy::cast_precision_loss)]
            let ratio = (fast - self.last_fast) as f64 / (self.done - self.last_at).max(1) as f64;
            self.samples.push(Sample {
                accesses: self.done,
                used_pages: (0..self.m.node_count()).map(|i| self.m.used(i)).collect(),
                fast_hit_ratio: ratio,
            });
            self.last_fast = fast;
            self.last_at = self.done;
            self.next_sample += self.opts.sample_every;
        }
        (self.observe)(&self.m, self.done);
        Ok(())
    }

    /// The results, and the machine in its final state.
    fn finish(self, s: &Scenario) -> (PolicyResult, Machine) {
        let fast = self.fast_served();
        let Replayer { m, samples, done, policy, busy_s, .. } = self;
        let c = &m.counters;
        let n = m.node_count();
        let moved: u64 = c.moves.iter().flatten().sum();
        #[allow(clippy::cast_precision_loss)]
        let total = done.max(1) as f64;
        #[allow(clippy::cast_precision_loss)]
        let result = PolicyResult {
            policy: policy.as_str(),
            amat_ns: m.now_ns() as f64 / total,
            fast_hit_ratio: fast as f64 / total,
            accesses_per_node: c.served[..n].to_vec(),
            first_touches: c.first_touch,
            swap_ins: c.swap_in,
            swap_outs: c.swap_out,
            demotions: c.kernel_demoted + c.policy_demoted,
            kernel_demotions: c.kernel_demoted,
            promotions: c.promoted,
            migrated_mib: (moved * s.page_size) as f64 / f64::from(1 << 20),
            moves: c.moves[..n].iter().map(|row| row[..n].to_vec()).collect(),
            kswapd_runs: c.kswapd_runs,
            direct_reclaims: c.direct_reclaims,
            oom: c.oom,
            oom_killed: m
                .killed_processes()
                .into_iter()
                .map(|i| {
                    s.process.get(i).map_or_else(|| format!("process {i}"), |p| p.name.clone())
                })
                .collect(),
            first_oom_kill_at: c.first_oom_kill_at,
            killed_accesses: c.killed_accesses,
            disk_reads: c.disk_reads,
            disk_writes: c.disk_writes,
            refaults_file: c.refaults_file,
            workingset_activations: c.workingset_activations,
            file_drops: c.file_dropped,
            file_pages: (0..n).map(|i| m.file_pages(i)).collect(),
            simulated_s: m.now_ns() as f64 / 1e9,
            background_s: c.background_ns as f64 / 1e9,
            samples,
            wall_s: busy_s,
        };
        (result, m)
    }
}

/// [`run_policy`], calling `observe` with the machine after every chunk of accesses and
/// returning the machine in its final state (for tests and tools).
pub fn replay(
    s: &Scenario,
    setup: &Setup,
    trace: &Trace,
    policy: PolicyName,
    opts: &RunOptions,
    observe: &mut dyn FnMut(&Machine, u64),
) -> Result<(PolicyResult, Machine), SimError> {
    let started = Instant::now();
    let mut r = Replayer::new(s, setup, policy, opts, observe);
    if trace.streamed {
        // Stream the workload again instead of holding it: trace files of any length.
        let mut block = Vec::with_capacity(CHUNK);
        let mut failed = None;
        workload::generate(s, |p| {
            block.push(p);
            if block.len() == CHUNK {
                if failed.is_none() {
                    failed = r.feed(&block).err();
                }
                block.clear();
            }
        })?;
        if let Some(e) = failed {
            return Err(e);
        }
        r.feed(&block)?;
    } else {
        r.replay(&trace.accesses)?;
    }
    let (mut result, m) = r.finish(s);
    result.wall_s = started.elapsed().as_secs_f64();
    Ok((result, m))
}

/// The bounds over the trace's `chunks` in order, or over the workload drawn again when
/// the trace is streamed (`None`: the static bound only).
pub fn compute_bounds(
    s: &Scenario,
    setup: &Setup,
    chunks: Option<&[&[u32]]>,
) -> Result<Bounds, SimError> {
    let nodes: Vec<(u64, u64, bool)> = setup
        .machine
        .nodes
        .iter()
        .zip(&setup.fast)
        .map(|(nc, f)| (nc.total, nc.latency_ns, *f))
        .collect();
    let pages = workload::ranges(s)?.last().map_or(0, |r| r.1) as usize;
    let counts = if let Some(chunks) = chunks {
        bounds::page_counts_of(chunks, pages)
    } else {
        let mut counts = vec![0u32; pages];
        workload::generate(s, |p| {
            counts[p as usize] = counts[p as usize].saturating_add(1);
        })?;
        counts
    };
    let st = bounds::static_from_counts(
        counts,
        s.accesses,
        &nodes,
        s.costs.first_touch_ns,
        s.swap.fault_us * 1000,
    );
    let fast_cap = nodes.iter().filter(|n| n.2).map(|n| n.0).sum();
    Ok(Bounds {
        static_fast_hit_ratio: st.fast_hit_ratio,
        static_amat_ns: st.amat_ns,
        belady_fast_hit_ratio: chunks.map(|c| bounds::belady_bypass_of(c, pages, fast_cap)),
    })
}

/// Accesses per chunk of a trace that is replayed while it is drawn.
const DRAW_CHUNK: usize = 1 << 20;

/// How far the draw has got.
#[derive(Default)]
struct Drawn {
    /// Chunks drawn (the first ones of `Pipeline::chunks`).
    chunks: usize,
    /// The whole trace is drawn (or the draw failed).
    done: bool,
}

type Progress<'a> = Box<dyn FnMut(&Machine, u64) + Send + 'a>;

/// One part of a pipelined run: a policy fed chunk by chunk as they are drawn, or the
/// bounds, which need the whole trace.
#[allow(clippy::large_enum_variant)] // one per policy and one for the bounds, made once a run
enum Task<'a> {
    Bounds(Option<(Result<Bounds, SimError>, f64)>),
    Policy(Option<Box<Replayer<'a, Progress<'a>>>>, usize, Option<Result<PolicyResult, SimError>>),
}

/// What a worker found a task ready for.
enum Step {
    /// It did some work.
    Worked,
    /// It needs chunks not drawn yet.
    Waiting,
    /// It has its result.
    Finished,
}

/// A run whose trace is replayed while it is drawn: the calling thread draws and
/// publishes chunks, the other workers feed every chunk to every policy in turn as it
/// appears; once the trace is complete the drawing thread joins them and the bounds run.
struct Pipeline<'a> {
    s: &'a Scenario,
    chunks: Vec<OnceLock<Vec<u32>>>,
    drawn: Mutex<Drawn>,
    more: Condvar,
}

impl<'a> Pipeline<'a> {
    fn drawn(&self) -> std::sync::MutexGuard<'_, Drawn> {
        self.drawn.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn publish(&self, k: usize, chunk: Vec<u32>) {
        let _ = self.chunks[k].set(chunk);
        self.drawn().chunks = k + 1;
        self.more.notify_all();
    }

    /// Draws the trace into the chunks, calling `between` after each.
    fn draw(&self, between: &mut dyn FnMut()) -> Result<(), SimError> {
        let mut chunk = Vec::with_capacity(DRAW_CHUNK);
        let mut k = 0;
        let drawn = workload::generate(self.s, |p| {
            chunk.push(p);
            if chunk.len() == DRAW_CHUNK {
                self.publish(k, std::mem::replace(&mut chunk, Vec::with_capacity(DRAW_CHUNK)));
                k += 1;
                between();
            }
        });
        if !chunk.is_empty() {
            self.publish(k, chunk);
        }
        self.drawn().done = true;
        self.more.notify_all();
        drawn.map(drop).map_err(SimError::from)
    }

    fn chunk(&self, k: usize) -> &[u32] {
        self.chunks[k].get().expect("only drawn chunks are read")
    }

    /// Works on `task` if it can: one chunk of a policy, or the whole bounds.
    fn step(&self, task: &mut Task<'a>, setup: &Setup, drawn: &Drawn) -> Step {
        match task {
            Task::Bounds(Some(_)) | Task::Policy(None, ..) => Step::Finished,
            Task::Bounds(done) => {
                if !drawn.done {
                    return Step::Waiting;
                }
                let t = Instant::now();
                let chunks: Vec<&[u32]> = (0..drawn.chunks).map(|k| self.chunk(k)).collect();
                let b = compute_bounds(self.s, setup, Some(&chunks));
                *done = Some((b, t.elapsed().as_secs_f64()));
                Step::Worked
            }
            Task::Policy(replayer, next, outcome) => {
                if *next < drawn.chunks {
                    let r = replayer.as_mut().expect("matched above");
                    if let Err(e) = r.replay(self.chunk(*next)) {
                        *outcome = Some(Err(e));
                        *replayer = None;
                    }
                    *next += 1;
                    Step::Worked
                } else if drawn.done {
                    let (result, _) = replayer.take().expect("matched above").finish(self.s);
                    *outcome = Some(Ok(result));
                    Step::Worked
                } else {
                    Step::Waiting
                }
            }
        }
    }

    /// Works on the tasks, the first ready one first, until none is left that this thread
    /// could take; `between` is called after every step.
    fn work(&self, tasks: &[Mutex<Task<'a>>], setup: &Setup, between: &mut dyn FnMut()) {
        loop {
            let (chunks, done) = {
                let d = self.drawn();
                (d.chunks, d.done)
            };
            let drawn = Drawn { chunks, done };
            let mut worked = false;
            let mut left = false;
            for task in tasks {
                // A task another worker holds is being worked on (all are, once drawn).
                let Ok(mut task) = task.try_lock() else {
                    left = true;
                    continue;
                };
                match self.step(&mut task, setup, &drawn) {
                    Step::Worked => {
                        worked = true;
                        break;
                    }
                    Step::Waiting => left = true,
                    Step::Finished => {}
                }
            }
            between();
            if worked {
                continue;
            }
            if !left || done {
                return;
            }
            let d = self.drawn();
            if d.chunks == chunks && !d.done {
                let _ = self.more.wait_timeout(d, std::time::Duration::from_millis(50));
            }
        }
    }
}

/// One independent part of a run whose trace is streamed.
#[derive(Clone, Copy)]
enum Part {
    /// The bounds (a pass over the workload).
    Bounds,
    /// The policy at this index of the scenario's list.
    Policy(usize),
}

/// What a part produced.
#[allow(clippy::large_enum_variant)] // one per part of a run, moved once
enum Outcome {
    Bounds(Result<Bounds, SimError>, f64),
    Policy(Result<PolicyResult, SimError>),
}

/// Worker threads a run uses: one per core, at most one per part.
fn worker_threads(parts: usize) -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get).min(parts).max(1)
}

/// The parts of a run, in the order they are handed out (the bounds first: the longest).
fn parts(s: &Scenario, opts: &RunOptions) -> Vec<Part> {
    let mut parts = Vec::new();
    if !opts.no_bounds {
        parts.push(Part::Bounds);
    }
    parts.extend((0..s.policies.len()).map(Part::Policy));
    parts
}

/// What a run produced, in scenario order.
struct Parts {
    policies: Vec<Result<PolicyResult, SimError>>,
    bounds: Option<(Result<Bounds, SimError>, f64)>,
    threads: usize,
}

/// A streamed run: every part draws (or reads) the workload itself, one part per worker.
fn run_streamed(
    s: &Scenario,
    setup: &Setup,
    opts: &RunOptions,
    progress: &mut dyn FnMut(PolicyName, u64),
) -> Result<Parts, SimError> {
    let trace = workload::streamed(s)?;
    let parts = parts(s, opts);
    let threads = worker_threads(parts.len());
    let taken = AtomicUsize::new(0);
    let (tx, rx) = mpsc::channel::<(PolicyName, u64)>();
    let mut outcomes: Vec<(usize, Outcome)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let tx = tx.clone();
                let (trace, parts, taken) = (&trace, &parts, &taken);
                scope.spawn(move || {
                    let mut done = Vec::new();
                    loop {
                        let k = taken.fetch_add(1, Ordering::Relaxed);
                        let Some(&part) = parts.get(k) else {
                            return done;
                        };
                        let outcome = match part {
                            Part::Bounds => {
                                let t = Instant::now();
                                let b = compute_bounds(s, setup, None);
                                Outcome::Bounds(b, t.elapsed().as_secs_f64())
                            }
                            Part::Policy(i) => {
                                let p = s.policies[i];
                                // A closed channel only means nobody shows progress any more.
                                let mut report = |d| {
                                    let _ = tx.send((p, d));
                                };
                                Outcome::Policy(run_policy(s, setup, trace, p, opts, &mut report))
                            }
                        };
                        done.push((k, outcome));
                    }
                })
            })
            .collect();
        drop(tx);
        for (p, d) in rx {
            progress(p, d);
        }
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    outcomes.sort_by_key(|(k, _)| *k);
    let mut out = Parts { policies: Vec::new(), bounds: None, threads };
    for (_, outcome) in outcomes {
        match outcome {
            Outcome::Bounds(b, wall) => out.bounds = Some((b, wall)),
            Outcome::Policy(r) => out.policies.push(r),
        }
    }
    Ok(out)
}

/// A run on a trace held in memory, replayed while it is drawn (see [`Pipeline`]).
fn run_pipelined(
    s: &Scenario,
    setup: &Setup,
    opts: &RunOptions,
    progress: &mut dyn FnMut(PolicyName, u64),
) -> Result<(Parts, f64), SimError> {
    let n_chunks = usize::try_from(s.accesses.div_ceil(DRAW_CHUNK as u64))
        .expect("a trace held in memory has fewer chunks than a usize counts");
    let pipeline = Pipeline {
        s,
        chunks: (0..n_chunks).map(|_| OnceLock::new()).collect(),
        drawn: Mutex::new(Drawn::default()),
        more: Condvar::new(),
    };
    let (tx, rx) = mpsc::channel::<(PolicyName, u64)>();
    let mut tasks = Vec::new();
    if !opts.no_bounds {
        tasks.push(Mutex::new(Task::Bounds(None)));
    }
    for &p in &s.policies {
        let tx = tx.clone();
        let observe: Progress<'_> = Box::new(move |_: &Machine, done: u64| {
            if done % (1 << 20) < CHUNK as u64 {
                // A closed channel only means nobody shows progress any more.
                let _ = tx.send((p, done));
            }
        });
        tasks.push(Mutex::new(Task::Policy(
            Some(Box::new(Replayer::new(s, setup, p, opts, observe))),
            0,
            None,
        )));
    }
    drop(tx);
    let threads = worker_threads(tasks.len() + 1);
    let mut show = || {
        for (p, d) in rx.try_iter() {
            progress(p, d);
        }
    };
    let mut draw_wall_s = 0.0;
    let drawn = std::thread::scope(|scope| {
        let (pipeline, tasks) = (&pipeline, &tasks);
        for _ in 1..threads {
            scope.spawn(move || pipeline.work(tasks, setup, &mut || {}));
        }
        let t = Instant::now();
        let drawn = pipeline.draw(&mut show);
        draw_wall_s = t.elapsed().as_secs_f64();
        pipeline.work(tasks, setup, &mut show);
        drawn
    });
    show();
    drawn?;
    let mut out = Parts { policies: Vec::new(), bounds: None, threads };
    for task in tasks {
        match task.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner) {
            Task::Bounds(b) => out.bounds = b,
            Task::Policy(_, _, r) => out.policies.push(r.expect("every policy finishes")),
        }
    }
    Ok((out, draw_wall_s))
}

/// Runs the whole scenario.
///
/// A trace held in memory is drawn once, in chunks, and the policies replay each chunk as
/// soon as it is drawn, on the other cores; the bounds, which need the whole trace, run
/// when it is complete. A streamed trace is drawn again by every policy, one policy (or the
/// bounds) per core. Either way each part runs in order on its own state and the report
/// lists them in scenario order whatever finished first, so the output is the sequential
/// one (the first error in that order is returned). `progress` is called on the calling
/// thread.
pub fn simulate(
    s: &Scenario,
    opts: &RunOptions,
    progress: &mut dyn FnMut(PolicyName, u64),
) -> Result<Report, SimError> {
    let started = Instant::now();
    let mut s = s.clone();
    if let Some(a) = opts.accesses {
        s.accesses = a;
    }
    s.open_traces(None).map_err(|e| SimError::Scenario(e.to_string()))?;
    let setup = Setup::new(&s)?;
    let stream = opts.stream || s.uses_trace_files();
    check_memory(&s, stream, !opts.no_bounds, opts.memory_budget)?;
    let (parts, draw_wall_s) = if stream {
        (run_streamed(&s, &setup, opts, progress)?, 0.0)
    } else {
        run_pipelined(&s, &setup, opts, progress)?
    };
    let policies = parts.policies.into_iter().collect::<Result<Vec<_>, _>>()?;
    let (bounds, bounds_wall_s) = match parts.bounds {
        Some((b, wall)) => (Some(b?), wall),
        None => (None, 0.0),
    };
    let pages = workload::ranges(&s)?.last().map_or(0, |r| r.1);
    Ok(Report {
        version: 1,
        scenario: s.name.clone(),
        seed: s.seed,
        accesses: s.accesses,
        pages: u64::from(pages),
        page_size: s.page_size,
        paths: describe(&setup.graph),
        node_pages: setup.machine.nodes.iter().map(|n| n.total).collect(),
        watermarks: setup.machine.nodes.iter().map(|n| n.wmarks).collect(),
        policies,
        bounds,
        draw_wall_s,
        bounds_wall_s,
        threads: parts.threads,
        wall_s: started.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 64 MiB swept on a 16 MiB node with 4 MiB of swap: once the swap is full nothing can
    /// be reclaimed. This used to rescan the full lists at every fault, without end.
    #[test]
    fn a_full_swap_device_oom_kills_the_process_instead_of_hanging() {
        let s = Scenario::from_toml(
            "accesses = 2000000\npolicies = [\"linux-swap\", \"tierd\"]\n\
             [[node]]\nid = 0\ncapacity_mib = 16\ncpu = true\nlatency_ns = 80\n\
             [swap]\nsize_mib = 4\n\
             [[process]]\nname = \"big\"\n[process.workload]\nkind = \"scan\"\nfootprint_mib = 64\n",
        )
        .unwrap();
        let opts = RunOptions { check: true, no_bounds: true, ..RunOptions::default() };
        let started = Instant::now();
        let r = simulate(&s, &opts, &mut |_, _| {}).unwrap();
        assert!(started.elapsed().as_secs() < 60, "took {:?}", started.elapsed());
        for p in &r.policies {
            assert_eq!(p.oom_killed, ["big"], "{}", p.policy);
            let at = p.first_oom_kill_at.expect("killed");
            // 16 MiB of RAM and 4 MiB of swap hold about 5120 pages: killed soon after.
            assert!((4000..6000).contains(&at), "{}: killed at {at}", p.policy);
            assert_eq!(p.oom, 1);
            assert_eq!(
                p.first_touches + p.swap_ins + p.oom + p.killed_accesses + p.accesses_per_node[0],
                2_000_000
            );
        }
    }

    #[test]
    fn a_run_that_cannot_fit_is_refused_before_allocating() {
        let mut s = Scenario::default_scenario();
        s.accesses = 1 << 40;
        let opts = RunOptions { memory_budget: Some(1 << 30), ..RunOptions::default() };
        let err = simulate(&s, &opts, &mut |_, _| {}).unwrap_err().to_string();
        assert!(err.contains("use --stream") && err.contains("1024 MiB are available"), "{err}");
        // Without a budget, reserving the trace fails instead of aborting in the allocator.
        let err = workload::draw(&s).unwrap_err().to_string();
        assert!(err.contains("use --stream"), "{err}");
    }

    /// The default machine (1 + 2 + 4 GiB of 4 KiB pages), worked by hand from
    /// `calculate_min_free_kbytes` and `__setup_per_zone_wmarks`: lowmem 7340032 kB,
    /// min_free_kbytes = int_sqrt(7340032 * 16) = 10836, pages_min = 2709, split by size;
    /// low = min + max(min / 4, size * 10 / 10000), high = min + 2 * that.
    #[test]
    fn watermarks_as_the_kernel_derives_them() {
        let wm = watermarks(&[262_144, 524_288, 1_048_576], 4096, None, 10);
        assert_eq!(wm, [[387, 649, 911], [774, 1298, 1822], [1548, 2596, 3644]]);
        // min_free_kbytes is clamped to 128..=262144 kB.
        let tiny = watermarks(&[256], 4096, None, 10);
        assert_eq!(tiny[0][0], 32, "128 kB = 32 pages");
        let huge = watermarks(&[1 << 30], 4096, None, 10);
        assert_eq!(huge[0][0], 65_536, "262144 kB = 65536 pages");
        // An explicit min_free_kbytes and a larger scale factor.
        let set = watermarks(&[262_144], 4096, Some(65_536), 100);
        assert_eq!(set, [[16_384, 16_384 + 4096, 16_384 + 8192]]);
    }
}
