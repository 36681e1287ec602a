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
    /// Parameters of the `tierd` policy.
    #[serde(default)]
    pub policy: PolicyConfig,
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
    /// Whether kernel reclaim demotes while `tierd` runs (else it swaps, the documented
    /// setting: `demotion_enabled=false` so that the two do not fight). Default false.
    #[serde(default)]
    pub kernel_demotion_under_tierd: bool,
}

fn default_first_touch() -> u64 {
    1000
}

impl Default for Costs {
    fn default() -> Self {
        Costs {
            first_touch_ns: default_first_touch(),
            migrate_overhead_ns: default_first_touch(),
            kernel_demotion_under_tierd: false,
        }
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
    /// What it accesses.
    pub workload: WorkloadSpec,
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
        }
        if !self.node.iter().any(|n| n.cpu) {
            return Err("no node has `cpu = true`: processes need a CPU node".into());
        }
        if self.process.is_empty() {
            return Err("a scenario needs at least one [[process]]".into());
        }
        if !self.page_size.is_power_of_two() || self.page_size < 512 {
            return Err(format!("page_size {} is not a power of two >= 512", self.page_size));
        }
        self.policy.check().map_err(|e| format!("[policy]: {e}"))?;
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
        }
        Ok(())
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

    #[test]
    fn unknown_fields_are_errors() {
        let text = DEFAULT_SCENARIO.replace("seed = ", "colour = 3\nseed = ");
        let err = Scenario::from_toml(&text).unwrap_err().to_string();
        assert!(err.contains("colour"), "{err}");
        let text = DEFAULT_SCENARIO.replace("exponent = ", "exponant = ");
        assert!(Scenario::from_toml(&text).is_err());
    }
}
