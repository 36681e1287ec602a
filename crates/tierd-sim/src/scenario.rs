//! Scenario files: the machine, its paths, its workload and what to compare, in TOML.
//!
//! Every table denies unknown fields, so a typo is an error and not a silently ignored
//! setting. Sizes carry their unit in the field name. See `scenarios/default.toml` for a
//! complete, commented example; every example in `scenarios/` is parsed by a test.

use serde::{Deserialize, Serialize};
use tierd_core::NodeMask;
use tierd_core::policy::PolicyConfig;

/// The embedded default scenario (`tierd simulate` with no arguments).
pub const DEFAULT_SCENARIO: &str = include_str!("../../../scenarios/default.toml");

/// A whole scenario.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// A short name for reports. Default "scenario".
    #[serde(default = "default_name")]
    pub name: String,
    /// Seed of the workload's random generator. Default 1.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Accesses to simulate, all processes together (the prefault touches included).
    pub accesses: u64,
    /// Bytes per page. Default 4096.
    #[serde(default = "default_page_size")]
    pub page_size: u64,
    /// Policies to compare, in report order. Default all three.
    #[serde(default = "default_policies")]
    pub policies: Vec<PolicyName>,
    /// The nodes, ids `0..n` in order. Leave out when `machine` is given.
    #[serde(default)]
    pub node: Vec<NodeSpec>,
    /// A sysfs tree to take the nodes from instead (a fixture such as
    /// `fixtures/dram-cxl-pmem`, relative to the scenario file, or `/` for the host running
    /// the simulation). `tierd simulate` reads it (the library never touches sysfs); paths
    /// then default to `"auto"`.
    pub machine: Option<std::path::PathBuf>,
    /// Migration paths: `"auto"`, a chain such as `"0 -> 1 -> 2"`, or a path graph table in
    /// the `tierd path` TOML form (`[paths.node.0] target = 1`). Default `"auto"`.
    #[serde(default)]
    pub paths: Paths,
    /// Watermark derivation. Default: the kernel's.
    #[serde(default)]
    pub watermarks: Watermarks,
    /// The swap device.
    #[serde(default)]
    pub swap: Swap,
    /// Costs of faults and migrations.
    #[serde(default)]
    pub costs: Costs,
    /// The disk behind file-backed memory (`memory = "file"` processes).
    #[serde(default)]
    pub disk: Disk,
    /// Reclaim tunables (`vm.swappiness`).
    #[serde(default)]
    pub reclaim: ReclaimTunables,
    /// Parameters of the `tierd` policy.
    #[serde(default)]
    pub policy: PolicyConfig,
    /// The simulated access tracker the `tierd` policy reads heat from.
    #[serde(default)]
    pub tracker: Tracker,
    /// The processes, each with its own pages and workload.
    pub process: Vec<ProcessSpec>,
}

fn default_name() -> String {
    "scenario".into()
}
fn default_seed() -> u64 {
    1
}
fn default_page_size() -> u64 {
    4096
}
fn default_policies() -> Vec<PolicyName> {
    vec![PolicyName::LinuxSwap, PolicyName::LinuxDemote, PolicyName::Tierd]
}

/// A policy to compare.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyName {
    /// Reclaim swaps (Linux without demotion).
    LinuxSwap,
    /// Reclaim demotes along the path, swaps when no destination has room (Linux 5.15+).
    LinuxDemote,
    /// The `tierd` policy, with kernel reclaim as `costs.kernel_demotion_under_tierd` says.
    Tierd,
}

impl PolicyName {
    /// The name as in scenario files.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyName::LinuxSwap => "linux-swap",
            PolicyName::LinuxDemote => "linux-demote",
            PolicyName::Tierd => "tierd",
        }
    }
}

/// One node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    /// Node id; nodes are listed as 0, 1, 2, ...
    pub id: u32,
    /// Memory size, MiB.
    pub capacity_mib: u64,
    /// Whether the node has CPUs (processes run there). Default false.
    #[serde(default)]
    pub cpu: bool,
    /// Load latency, ns.
    pub latency_ns: u64,
    /// Bandwidth, MB/s (migration cost). Default 10000.
    #[serde(default = "default_bandwidth")]
    pub bandwidth_mbps: u64,
    /// SLIT row: distance to every node, in id order. Default: 10 to itself and
    /// `10 * max(latency) / min(latency)` to others.
    pub distance: Option<Vec<u32>>,
    /// `[min, low, high]` watermarks in pages, overriding the derived ones.
    pub watermarks_pages: Option<[u64; 3]>,
}

fn default_bandwidth() -> u64 {
    10_000
}

/// Migration paths.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Paths {
    /// `"auto"` or a chain `"0 -> 1 -> 2"`.
    Text(String),
    /// A path graph in `tierd path` form.
    Graph(toml::Table),
}

impl Default for Paths {
    fn default() -> Self {
        Paths::Text("auto".into())
    }
}

/// Watermark derivation, as `vm.min_free_kbytes` and `vm.watermark_scale_factor`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Watermarks {
    /// `vm.min_free_kbytes`; default: the kernel's `calculate_min_free_kbytes`.
    pub min_free_kbytes: Option<u64>,
    /// `vm.watermark_scale_factor`, in 1/10000 of a node. Default 10.
    #[serde(default = "default_wsf")]
    pub watermark_scale_factor: u64,
}

fn default_wsf() -> u64 {
    10
}

impl Default for Watermarks {
    fn default() -> Self {
        Watermarks { min_free_kbytes: None, watermark_scale_factor: default_wsf() }
    }
}

/// The swap device.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Swap {
    /// Size, MiB. Default 8192.
    #[serde(default = "default_swap")]
    pub size_mib: u64,
    /// Cost of a swap-in fault, µs. Default 20.
    #[serde(default = "default_fault_us")]
    pub fault_us: u64,
}

fn default_swap() -> u64 {
    8192
}
fn default_fault_us() -> u64 {
    20
}

impl Default for Swap {
    fn default() -> Self {
        Swap { size_mib: default_swap(), fault_us: default_fault_us() }
    }
}

/// The disk that file-backed pages are read from and written back to. Every page is one
/// I/O of fixed latency: no queueing, no bandwidth limit, no readahead (a database reading
/// 8 KiB blocks at random defeats readahead anyway).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Disk {
    /// Latency of one page read (a page-cache miss: first read or refault), µs, charged to
    /// the workload as a stall. Default 100 (an NVMe SSD's random 4 KiB read).
    #[serde(default = "default_disk_us")]
    pub read_us: u64,
    /// Time of one page written back (a dirty file page that reclaim evicts), µs. Background
    /// time (the flusher's), except in direct reclaim, which is throttled on writeback and
    /// charged for it. Default 100.
    #[serde(default = "default_disk_us")]
    pub write_us: u64,
}

fn default_disk_us() -> u64 {
    100
}

impl Default for Disk {
    fn default() -> Self {
        Disk { read_us: default_disk_us(), write_us: default_disk_us() }
    }
}

/// Reclaim tunables.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReclaimTunables {
    /// `vm.swappiness`, 0 to 200: the relative weight of anonymous against file pages when
    /// reclaim has both (`get_scan_count`: anon `swappiness`, file `200 - swappiness`).
    /// Default 60. No effect on a scenario without file-backed processes.
    #[serde(default = "default_swappiness")]
    pub swappiness: u64,
}

fn default_swappiness() -> u64 {
    60
}

impl Default for ReclaimTunables {
    fn default() -> Self {
        ReclaimTunables { swappiness: default_swappiness() }
    }
}

/// Costs besides memory latency.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Costs {
    /// A first-touch fault (allocate and zero a page), ns. Default 1000.
    #[serde(default = "default_first_touch")]
    pub first_touch_ns: u64,
    /// Per-page migration cost besides the copy (unmap, TLB flush, remap), ns. Default 1000.
    #[serde(default = "default_first_touch")]
    pub migrate_overhead_ns: u64,
    /// Whether kernel reclaim demotes while `tierd` runs, as the daemon sets it up by default
    /// (the kernel's demotion is its backstop, `[daemon] backstop = "kernel-demotion"`); false
    /// models `backstop = "off"`, where reclaim swaps when tierd falls behind. Default true.
    #[serde(default = "yes")]
    pub kernel_demotion_under_tierd: bool,
}

fn yes() -> bool {
    true
}

fn default_first_touch() -> u64 {
    1000
}

impl Default for Costs {
    fn default() -> Self {
        Costs {
            first_touch_ns: default_first_touch(),
            migrate_overhead_ns: default_first_touch(),
            kernel_demotion_under_tierd: true,
        }
    }
}

/// The simulated access tracker (a NUMA-hinting-fault-like bit per page).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tracker {
    /// How long a window is, milliseconds: a page accessed twice within one window is a
    /// promotion candidate (heat 2), once is heat 1. The window ends at the first policy
    /// tick at or after this long, so it is at least `policy.interval_ms`. A longer window
    /// finds pages with a lower access rate; too long, and a scan whose pages come round
    /// within it looks hot. Default 30, the best of 10 to 50 ms over the quality scenarios
    /// (`scenarios/quality/`): at 50 ms a 1.5 GiB scan looks hot.
    #[serde(default = "default_window_ms")]
    pub window_ms: u64,
}

fn default_window_ms() -> u64 {
    30
}

impl Default for Tracker {
    fn default() -> Self {
        Tracker { window_ms: default_window_ms() }
    }
}

/// One process.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessSpec {
    /// Name for reports. Default "process".
    #[serde(default = "default_process")]
    pub name: String,
    /// Nodes it may allocate on (`numactl --membind`); default: any node.
    pub bind: Option<NodeMask>,
    /// The node its CPU is on; default: the first CPU node.
    pub cpu_node: Option<u32>,
    /// Relative share of the accesses. Default 1.
    #[serde(default = "default_share")]
    pub share: u32,
    /// What backs its pages: `"anon"` (anonymous memory, swapped out under pressure) or
    /// `"file"` (the page cache of a file: a first access or a refault reads the page from
    /// `[disk]`, reclaim drops clean pages and writes dirty ones back). Default `"anon"`.
    #[serde(default)]
    pub memory: MemoryKind,
    /// For `memory = "file"`: the share of the file's pages that the process writes, 0 to 1.
    /// Which pages are written is a fixed hash of the page's index in the file; such a page is
    /// dirtied when it is read in and must be written back before reclaim can drop it.
    /// Default 0.
    pub dirty_fraction: Option<f64>,
    /// What it accesses.
    pub workload: WorkloadSpec,
}

/// What backs a process's memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemoryKind {
    /// Anonymous memory.
    #[default]
    Anon,
    /// A file's pages in the page cache.
    File,
}

fn default_process() -> String {
    "process".into()
}
fn default_share() -> u32 {
    1
}

/// A workload: which pages a process touches, in what order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum WorkloadSpec {
    /// Zipf-distributed accesses over a footprint; rank order is a fixed pseudo-random
    /// permutation of the pages (hotness is not address order).
    Zipf(ZipfSpec),
    /// A hot set that moves every `shift_every` accesses.
    HotsetShift(HotsetSpec),
    /// Sequential sweeps over the footprint, again and again.
    Scan(ScanSpec),
    /// Uniform random accesses (GUPS).
    Gups(GupsSpec),
    /// A list of workloads over the same pages, one after another or interleaved.
    Phases(PhasesSpec),
    /// A recorded trace in the binary format (`tracefile`), streamed from disk; it repeats
    /// when the scenario asks for more accesses than it holds.
    Trace(TraceSpec),
}

/// `kind = "trace"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceSpec {
    /// The binary trace file; a relative path is relative to the scenario file.
    pub path: std::path::PathBuf,
    /// Pages the trace touches, from its header ([`Scenario::open_traces`] fills it in).
    #[serde(skip)]
    pub pages: Option<u64>,
}

/// `kind = "zipf"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZipfSpec {
    /// Pages touched, MiB.
    pub footprint_mib: u64,
    /// Zipf exponent. Default 0.99.
    #[serde(default = "default_exponent")]
    pub exponent: f64,
    /// Touch every page once, in address order, before the first random access (a program
    /// filling its heap). Default false.
    #[serde(default)]
    pub prefault: bool,
}

fn default_exponent() -> f64 {
    0.99
}

/// `kind = "hotset-shift"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HotsetSpec {
    /// Pages touched, MiB.
    pub footprint_mib: u64,
    /// Size of the hot set, MiB.
    pub hot_mib: u64,
    /// Fraction of accesses that go to the hot set. Default 0.9.
    #[serde(default = "default_hot_fraction")]
    pub hot_fraction: f64,
    /// The hot set moves by its own size every this many of this workload's accesses.
    pub shift_every: u64,
    /// As for zipf. Default false.
    #[serde(default)]
    pub prefault: bool,
}

fn default_hot_fraction() -> f64 {
    0.9
}

/// `kind = "scan"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScanSpec {
    /// Pages swept, MiB.
    pub footprint_mib: u64,
}

/// `kind = "gups"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GupsSpec {
    /// Pages touched, MiB.
    pub footprint_mib: u64,
    /// As for zipf. Default false.
    #[serde(default)]
    pub prefault: bool,
}

/// `kind = "phases"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhasesSpec {
    /// `false`: each phase runs for its `accesses`, in order, then the list repeats.
    /// `true`: every access picks a phase in proportion to its `accesses`. Default false.
    #[serde(default)]
    pub interleave: bool,
    /// The phases; the process's footprint is the largest of theirs.
    pub phase: Vec<PhaseSpec>,
}

/// One phase.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhaseSpec {
    /// Accesses in this phase (or its weight when interleaved).
    pub accesses: u64,
    /// What it accesses (not itself `phases`).
    pub workload: WorkloadSpec,
}

/// Why a scenario is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// Not valid TOML or not the schema; the message has the line.
    #[error("{0}")]
    Toml(#[from] toml::de::Error),
    /// Parsed, but inconsistent.
    #[error("{0}")]
    Invalid(String),
    /// A trace file of a `trace` workload could not be read.
    #[error("trace {path}: {err}")]
    Trace {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        err: crate::tracefile::TraceFileError,
    },
}

impl Scenario {
    /// Parses and checks a scenario.
    pub fn from_toml(text: &str) -> Result<Scenario, ScenarioError> {
        let s: Scenario = toml::from_str(text)?;
        s.check().map_err(ScenarioError::Invalid)?;
        Ok(s)
    }

    /// Resolves the paths of `trace` workloads against `base` (the scenario file's folder)
    /// and reads their headers. Idempotent; the only file access a scenario needs.
    pub fn open_traces(&mut self, base: Option<&std::path::Path>) -> Result<(), ScenarioError> {
        fn visit(
            w: &mut WorkloadSpec,
            base: Option<&std::path::Path>,
        ) -> Result<(), ScenarioError> {
            match w {
                WorkloadSpec::Trace(t) => {
                    if let Some(b) = base
                        && t.path.is_relative()
                    {
                        t.path = b.join(&t.path);
                    }
                    if t.pages.is_none() {
                        let header = crate::tracefile::open(&t.path)
                            .map_err(|err| ScenarioError::Trace { path: t.path.clone(), err })?
                            .header();
                        t.pages = Some(header.pages.max(1));
                    }
                }
                WorkloadSpec::Phases(p) => {
                    for ph in &mut p.phase {
                        visit(&mut ph.workload, base)?;
                    }
                }
                _ => {}
            }
            Ok(())
        }
        for p in &mut self.process {
            visit(&mut p.workload, base)?;
        }
        Ok(())
    }

    /// Whether any process replays a trace file.
    pub fn uses_trace_files(&self) -> bool {
        fn has(w: &WorkloadSpec) -> bool {
            match w {
                WorkloadSpec::Trace(_) => true,
                WorkloadSpec::Phases(p) => p.phase.iter().any(|ph| has(&ph.workload)),
                _ => false,
            }
        }
        self.process.iter().any(|p| has(&p.workload))
    }

    /// The embedded default.
    pub fn default_scenario() -> Scenario {
        Scenario::from_toml(DEFAULT_SCENARIO).expect("the embedded default scenario is valid")
    }

    /// Checks the scenario's consistency (done by [`Scenario::from_toml`]; call it again after
    /// changing a parsed scenario).
    pub fn check(&self) -> Result<(), String> {
        if self.node.is_empty() && self.machine.is_some() {
            // `tierd simulate` fills the nodes in from the tree; nothing else to check yet.
            return Ok(());
        }
        if !self.node.is_empty() && self.machine.is_some() {
            return Err("give either [[node]] tables or `machine`, not both".into());
        }
        if self.node.is_empty() || self.node.len() > crate::machine::MAX_SIM_NODES {
            return Err(format!(
                "a scenario needs 1 to {} nodes, not {}",
                crate::machine::MAX_SIM_NODES,
                self.node.len()
            ));
        }
        for (i, n) in self.node.iter().enumerate() {
            if n.id as usize != i {
                return Err(format!("node ids must be 0, 1, 2, ... in order; found {}", n.id));
            }
            if let Some(d) = &n.distance
                && d.len() != self.node.len()
            {
                return Err(format!("node {i}: distance needs {} entries", self.node.len()));
            }
            self.check_node(i, n)?;
        }
        if !self.node.iter().any(|n| n.cpu) {
            return Err("no node has `cpu = true`: processes need a CPU node".into());
        }
        if self.process.is_empty() {
            return Err("a scenario needs at least one [[process]]".into());
        }
        if !self.page_size.is_power_of_two() || !(512..=MAX_PAGE_SIZE).contains(&self.page_size) {
            return Err(format!(
                "page_size = {}: a power of two from 512 to {MAX_PAGE_SIZE} (1 GiB)",
                self.page_size
            ));
        }
        self.policy.check().map_err(|e| format!("[policy]: {e}"))?;
        in_range("policy.interval_ms", self.policy.interval_ms, 1, MAX_INTERVAL_MS)?;
        in_range("tracker.window_ms", self.tracker.window_ms, 1, MAX_INTERVAL_MS)?;
        self.check_costs()?;
        if self.policies.is_empty() {
            return Err("`policies` is empty".into());
        }
        for p in &self.process {
            if let Some(b) = p.bind
                && (b.is_empty() || b.iter().any(|n| n.index() >= self.node.len()))
            {
                return Err(format!("process {}: bind `{b}` names no or unknown nodes", p.name));
            }
            if let Some(c) = p.cpu_node
                && !self.node.get(c as usize).is_some_and(|n| n.cpu)
            {
                return Err(format!("process {}: cpu_node {c} is not a CPU node", p.name));
            }
            if p.share == 0 {
                return Err(format!("process {}: share must be at least 1", p.name));
            }
            if let Some(d) = p.dirty_fraction {
                if p.memory != MemoryKind::File {
                    return Err(format!(
                        "process {}: dirty_fraction needs memory = \"file\" (anonymous pages \
                         are never written back)",
                        p.name
                    ));
                }
                in_range_f64(&format!("process {}: dirty_fraction", p.name), d, 0.0, false, 1.0)?;
            }
            check_workload(&p.workload, false)
                .map_err(|e| format!("process {}: workload.{e}", p.name))?;
        }
        Ok(())
    }

    fn check_node(&self, i: usize, n: &NodeSpec) -> Result<(), String> {
        let at = |f: &str| format!("node {i}: {f}");
        in_range(&at("capacity_mib"), n.capacity_mib, 1, MAX_MIB)?;
        in_range(&at("latency_ns"), n.latency_ns, 1, MAX_COST_NS)?;
        in_range(&at("bandwidth_mbps"), n.bandwidth_mbps, 1, MAX_BANDWIDTH_MBPS)?;
        for (j, d) in n.distance.iter().flatten().enumerate() {
            in_range(&at(&format!("distance[{j}]")), u64::from(*d), 10, 255)?;
        }
        if let Some([min, low, high]) = n.watermarks_pages {
            let pages = (n.capacity_mib << 20) / self.page_size.max(1);
            if !(min <= low && low <= high && high <= pages) {
                return Err(format!(
                    "node {i}: watermarks_pages = [{min}, {low}, {high}]: needs min <= low <= \
                     high <= the node's {pages} pages"
                ));
            }
        }
        Ok(())
    }

    /// Costs and sizes whose products make the simulated clock: each bounded so that no
    /// sum or product of them can overflow (which would silently give a wrong AMAT).
    fn check_costs(&self) -> Result<(), String> {
        if let Some(k) = self.watermarks.min_free_kbytes {
            in_range("watermarks.min_free_kbytes", k, 0, MAX_MIB << 10)?;
        }
        in_range(
            "watermarks.watermark_scale_factor",
            self.watermarks.watermark_scale_factor,
            1,
            3000,
        )?;
        in_range("swap.size_mib", self.swap.size_mib, 0, MAX_MIB)?;
        in_range("swap.fault_us", self.swap.fault_us, 0, MAX_COST_NS / 1000)?;
        in_range("costs.first_touch_ns", self.costs.first_touch_ns, 0, MAX_COST_NS)?;
        in_range("costs.migrate_overhead_ns", self.costs.migrate_overhead_ns, 0, MAX_COST_NS)?;
        in_range("disk.read_us", self.disk.read_us, 0, MAX_COST_NS / 1000)?;
        in_range("disk.write_us", self.disk.write_us, 0, MAX_COST_NS / 1000)?;
        in_range("reclaim.swappiness", self.reclaim.swappiness, 0, 200)?;
        // The clock counts every access at up to its dearest cost (a disk read, and a
        // writeback in direct reclaim, only when some memory is file-backed).
        let (read_ns, write_ns) = if self.process.iter().any(|p| p.memory == MemoryKind::File) {
            (self.disk.read_us * 1000, self.disk.write_us * 1000)
        } else {
            (0, 0)
        };
        let dearest = self.node.iter().map(|n| n.latency_ns).max().unwrap_or(0)
            + (self.swap.fault_us * 1000).max(self.costs.first_touch_ns).max(read_ns)
            + self.costs.migrate_overhead_ns
            + write_ns;
        if self.accesses.checked_mul(dearest.max(1)).is_none() {
            return Err(format!(
                "accesses = {}: at up to {dearest} ns each, the simulated time would pass 2^64 \
                 ns (584 years); at most {}",
                self.accesses,
                u64::MAX / dearest.max(1)
            ));
        }
        Ok(())
    }
}

/// The largest size in MiB a scenario may give (16 TiB): every MiB count is turned into
/// bytes and pages, which must not overflow.
pub const MAX_MIB: u64 = 1 << 24;
/// The largest per-event cost, ns (1 s).
pub const MAX_COST_NS: u64 = 1_000_000_000;
/// The largest bandwidth, MB/s.
pub const MAX_BANDWIDTH_MBPS: u64 = 1_000_000_000;
/// The largest page size, bytes.
pub const MAX_PAGE_SIZE: u64 = 1 << 30;
/// The largest policy interval, ms (an hour).
pub const MAX_INTERVAL_MS: u64 = 3_600_000;
/// The largest Zipf exponent: beyond it every draw is rank 1 anyway, and the sampler's
/// integrals lose their precision.
pub const MAX_ZIPF_EXPONENT: f64 = 20.0;

fn in_range(what: &str, v: u64, lo: u64, hi: u64) -> Result<(), String> {
    if (lo..=hi).contains(&v) { Ok(()) } else { Err(format!("{what} = {v}: allowed {lo} to {hi}")) }
}

fn in_range_f64(what: &str, v: f64, lo: f64, lo_open: bool, hi: f64) -> Result<(), String> {
    let low_ok = if lo_open { v > lo } else { v >= lo };
    if v.is_finite() && low_ok && v <= hi {
        Ok(())
    } else {
        let bracket = if lo_open { "above" } else { "from" };
        Err(format!("{what} = {v}: allowed {bracket} {lo} to {hi}"))
    }
}

/// Checks one workload's fields (`nested`: inside a `phases` list).
fn check_workload(w: &WorkloadSpec, nested: bool) -> Result<(), String> {
    let footprint = |v: u64| in_range("footprint_mib", v, 1, MAX_MIB);
    match w {
        WorkloadSpec::Zipf(z) => {
            footprint(z.footprint_mib)?;
            in_range_f64("exponent", z.exponent, 0.0, true, MAX_ZIPF_EXPONENT)
        }
        WorkloadSpec::HotsetShift(h) => {
            footprint(h.footprint_mib)?;
            in_range("hot_mib", h.hot_mib, 1, h.footprint_mib)?;
            in_range_f64("hot_fraction", h.hot_fraction, 0.0, false, 1.0)?;
            in_range("shift_every", h.shift_every, 1, u64::MAX)
        }
        WorkloadSpec::Scan(x) => footprint(x.footprint_mib),
        WorkloadSpec::Gups(g) => footprint(g.footprint_mib),
        WorkloadSpec::Trace(t) => {
            if t.path.as_os_str().is_empty() {
                return Err("path: empty".into());
            }
            Ok(())
        }
        WorkloadSpec::Phases(p) => {
            if nested {
                return Err("phase: a phase may not itself be `phases`".into());
            }
            if p.phase.is_empty() {
                return Err("phase: at least one [[process.workload.phase]]".into());
            }
            let mut total = 0u64;
            for (i, ph) in p.phase.iter().enumerate() {
                in_range(&format!("phase[{i}].accesses"), ph.accesses, 1, u64::MAX)?;
                total = total
                    .checked_add(ph.accesses)
                    .ok_or_else(|| "phase: the accesses add up to more than 2^64".to_string())?;
                check_workload(&ph.workload, true).map_err(|e| format!("phase[{i}].{e}"))?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_example_parses() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scenarios");
        let mut n = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let text = std::fs::read_to_string(&path).unwrap();
                Scenario::from_toml(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                n += 1;
            }
        }
        assert!(n >= 3, "examples found: {n}");
    }

    fn with(from: &str, to: &str) -> Result<Scenario, String> {
        assert!(DEFAULT_SCENARIO.contains(from), "{from}");
        Scenario::from_toml(&DEFAULT_SCENARIO.replacen(from, to, 1)).map_err(|e| e.to_string())
    }

    #[test]
    fn every_field_out_of_range_says_the_range() {
        for (from, to, want) in [
            ("exponent = 0.99", "exponent = 0", "exponent = 0: allowed above 0 to 20"),
            ("exponent = 0.99", "exponent = -1", "exponent = -1: allowed above 0"),
            ("exponent = 0.99", "exponent = nan", "exponent = NaN: allowed above 0"),
            ("exponent = 0.99", "exponent = inf", "exponent = inf"),
            ("footprint_mib = 3072", "footprint_mib = 0", "footprint_mib = 0: allowed 1 to"),
            ("capacity_mib = 1024", "capacity_mib = 0", "node 0: capacity_mib = 0: allowed 1"),
            (
                "latency_ns = 80",
                "latency_ns = 18446744073709551615",
                "node 0: latency_ns = 18446744073709551615: allowed 1 to 1000000000",
            ),
            ("fault_us = 20", "fault_us = 18446744073709551615", "swap.fault_us"),
            ("first_touch_ns = 1000", "first_touch_ns = 18446744073709551615", "first_touch_ns"),
            ("size_mib = 8192", "size_mib = 18446744073709551615", "swap.size_mib"),
            ("page_size = 4096", "page_size = 4611686018427387904", "page_size = "),
            ("distance = [10, 20, 30]", "distance = [10, 2, 30]", "distance[1] = 2"),
            ("interval_ms = 10", "interval_ms = 18446744073709551615", "interval_ms"),
            ("accesses = 40_000_000", "accesses = 18446744073709551615", "584 years"),
        ] {
            let err = with(from, to).unwrap_err();
            assert!(err.contains(want), "{to}: {err}");
        }
    }

    #[test]
    fn hotset_and_phases_fields_are_checked() {
        let hot = "kind = \"hotset-shift\"\nfootprint_mib = 64\nhot_mib = 8\nshift_every = 10";
        let zipf = "kind = \"zipf\"\nfootprint_mib = 3072\nexponent = 0.99";
        assert!(with(zipf, hot).is_ok());
        for (from, to, want) in [
            ("hot_mib = 8", "hot_mib = 80", "hot_mib = 80: allowed 1 to 64"),
            ("shift_every = 10", "shift_every = 0", "shift_every = 0"),
            ("hot_mib = 8", "hot_mib = 8\nhot_fraction = 1.5", "hot_fraction = 1.5"),
        ] {
            let err = with(zipf, &hot.replace(from, to)).unwrap_err();
            assert!(err.contains(want), "{err}");
        }
        let err =
            with(&format!("{zipf}\nprefault = true"), "kind = \"phases\"\nphase = []").unwrap_err();
        assert!(err.contains("at least one"), "{err}");
    }

    #[test]
    fn page_cache_fields_are_checked() {
        let file = "[[process]]\nname = \"service\"\nbind = \"0\"\nmemory = \"file\"";
        assert!(with("[[process]]\nname = \"service\"\nbind = \"0\"", file).is_ok());
        for (from, to, want) in [
            (
                "memory = \"file\"",
                "memory = \"file\"\ndirty_fraction = 1.5",
                "dirty_fraction = 1.5",
            ),
            (
                "memory = \"file\"",
                "memory = \"anon\"\ndirty_fraction = 0.5",
                "needs memory = \"file\"",
            ),
            ("memory = \"file\"", "memory = \"shm\"", "unknown variant `shm`"),
        ] {
            let err =
                with("[[process]]\nname = \"service\"\nbind = \"0\"", &file.replace(from, to))
                    .unwrap_err();
            assert!(err.contains(want), "{to}: {err}");
        }
        for (table, want) in [
            ("[reclaim]\nswappiness = 201", "reclaim.swappiness = 201: allowed 0 to 200"),
            ("[disk]\nread_us = 2000000", "disk.read_us = 2000000: allowed 0 to 1000000"),
            ("[disk]\nwrite_us = 2000000", "disk.write_us"),
            ("[disk]\nread_ms = 1", "read_ms"),
            ("[reclaim]\nswapiness = 1", "swapiness"),
        ] {
            let err = with("[costs]", &format!("{table}\n[costs]")).unwrap_err();
            assert!(err.contains(want), "{table}: {err}");
        }
    }

    #[test]
    fn unknown_fields_are_errors() {
        let text = DEFAULT_SCENARIO.replace("seed = ", "colour = 3\nseed = ");
        let err = Scenario::from_toml(&text).unwrap_err().to_string();
        assert!(err.contains("colour"), "{err}");
        let text = DEFAULT_SCENARIO.replace("exponent = ", "exponant = ");
        assert!(Scenario::from_toml(&text).is_err());
    }
}
