//! The automatic default path graph: the demotion targets the running kernel derives from
//! the topology, computed in userspace so that tierd can start from exactly what the kernel
//! would do (and explain it) before a user edits anything.
//!
//! # Why mirror the kernel
//! Users asked upstream for a per-node migration path with a sane default. The kernel has had
//! one since 5.15: demotion targets derived from memory tiers. tierd's default is that same
//! answer, byte for byte where the kernel prints it (`dump_demotion_targets`), so that
//! switching from kernel demotion to tierd changes *who* moves pages, not *where* they go.
//!
//! # Where the tiers come from
//! [`derive_tiers`] tries, in order:
//!
//! 1. **HMAT** ([`TierSource::Hmat`]), when every online memory node has all four HMAT
//!    figures. The abstract distance of each node is computed as Linux 6.12 does it
//!    (`hmat_set_default_dram_perf` and `hmat_calculate_adistance` in
//!    `drivers/acpi/numa/hmat.c`, `mt_set_default_dram_perf` and `mt_perf_to_adistance` in
//!    `mm/memory-tiers.c`): the reference is the first memory node with CPUs
//!    (`default_dram_nodes` = `N_MEMORY & N_CPU`, ascending), every other memory node with
//!    CPUs must be within 10% of it on each of the four figures, and
//!
//!    ```text
//!    adist = MEMTIER_ADISTANCE_DRAM * (rl + wl) / (ref_rl + ref_wl)
//!                                   * (ref_rb + ref_wb) / (rb + wb)
//!    ```
//!
//!    evaluated left to right in 64-bit signed integers (the `long` arithmetic of stable
//!    6.12.y, after the upstream fix "mm/memory-tier: fix abstract distance calculation
//!    overflow"; sums of two figures stay 32-bit unsigned as in `struct access_coordinate`),
//!    then stored in an `int`. A node's tier is `memory_tier{adist >> 7}`
//!    ([`MEMTIER_CHUNK_BITS`]), DRAM's [`MEMTIER_ADISTANCE_DRAM`] = 576 lands in
//!    `memory_tier4`. When the kernel gives up (a reference node whose figures sum to zero,
//!    a DRAM node more than 10% off, no memory node with CPUs) it leaves every node at the
//!    DRAM distance: one tier. We do the same and say why in [`Tiers::notes`].
//! 2. **The kernel's own tier files** ([`TierSource::Kernel`],
//!    `/sys/devices/virtual/memory_tiering/memory_tierN`, 6.1+), ascending `N` = fastest
//!    first. They also carry distances that drivers such as dax/kmem assign, which no
//!    firmware table shows.
//! 3. **The 5.15–6.0 rule** ([`TierSource::CpuRule`]): memory nodes with CPUs on top,
//!    CPU-less memory nodes below.
//!
//! Where HMAT and the kernel's files both exist they agree on kernels that use HMAT at boot
//! (6.10+). When they don't (6.1–6.9 ignore HMAT for memory present at boot; drivers set
//! their own distances), the running kernel's files win, because they are what its demotion
//! follows, and a note gives the HMAT answer.
//!
//! # From tiers to targets
//! [`demotion_targets`] follows `establish_demotion_targets`: a node's preferred targets are
//! the nodes of the *next* lower tier at the smallest distance, found with the zonelist
//! builder's `find_next_best_node` (`mm/page_alloc.c`), whose penalties (+1 for a node
//! numbered below the source, +1 for a node with CPUs, then `* MAX_NUMNODES + node_load`)
//! decide which node is met first; all further nodes at *that first node's* distance join
//! it. The fallback is the tier's `lower_tier_mask`: every memory node in a lower tier.
//!
//! When two candidates tie on that penalised distance, `node_load[]` decides, then the lower
//! number, and since the first node's distance decides who joins, the tie can make the
//! kernel demote to a *farther* node. `node_load[]` is what the last `__build_all_zonelists`
//! left; `establish_demotion_targets` only reads it. On a machine whose memory was all
//! present at boot that is the build in `mm_core_init`, which runs before any CPU is in its
//! node's `cpumask_of_node`, so it orders the zonelists, and counts their distance groups,
//! with no CPU penalty at all ([`boot_zonelists`]; the kernel logs the result as
//! `Fallback order for Node N: ...`). Mirroring that build with the CPUs already counted
//! gave a different load, and a different target, on a four-node machine of the test bed.
//! A later rebuild (memory hotplug) counts the CPUs: tierd then takes the kernel's own lists
//! from its log, see below.
//!
//! # What is approximated
//! - The kernel reads HMAT `access1` (best CPU initiator, `ACCESS_COORDINATE_CPU`), and so
//!   does `tierd-linux`; on kernels that print only `access0` (best initiator of any kind),
//!   that is used. They differ only when a non-CPU initiator (a GPU, an accelerator) is the
//!   nearest to some memory.
//! - `node_load[]` comes from the kernel's log when tierd can read it (`/dev/kmsg`, root):
//!   the last build's `Fallback order` lines give every list, and the load is counted off
//!   them as `build_zonelists` counted it ([`crate::topology::KernelZonelists`]). That covers
//!   rebuilds after boot, which sysfs does not show: `online_pages` rebuilds when it populates
//!   a zone for the first time (memory that dax/kmem or ACPI hotplug onlines),
//!   `offline_pages` when it empties one, each with every CPU counted. Without the log
//!   (another user, or a log that wrapped) the boot-time build is replayed over the online
//!   nodes: right for memory present at boot, possibly not after a hotplug; and the kernel's
//!   build also walks possible-but-offline nodes, whose distances tierd cannot see.
//! - Memory that dax/kmem onlines gets the driver's distance when HMAT has none; only the
//!   kernel's tier files show that.
//! - The CPU rule is the *tiers* of 5.15–6.0 fed to the 6.1+ target selection above, not
//!   their `__set_migration_target_nodes` (`mm/migrate.c`), which differs in three ways: it
//!   works in passes from the CPU nodes, each pass's targets being the next pass's sources,
//!   so CPU-less nodes chain (the test bed without HMAT gave `0 -> 1 -> 2`, here `0 -> 1`
//!   with fallback `1-2`); within a pass a target taken by one source is no longer free for
//!   the next (two sockets sharing one CXL node: only socket 0 demoted); and it kept adding
//!   targets while they were not *farther* than the first, where 6.1+ stops at any other
//!   distance. Those kernels also had no fallback nodes.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::graph::{Entry, PathGraph};
use crate::node::{MAX_NUMNODES, NodeId, NodeMask};
use crate::topology::{Hmat, KernelZonelists, Topology};

/// `MEMTIER_CHUNK_BITS`: a memory tier covers `1 << 7` = 128 units of abstract distance.
pub const MEMTIER_CHUNK_BITS: u32 = 7;

/// `MEMTIER_CHUNK_SIZE`.
pub const MEMTIER_CHUNK_SIZE: i32 = 1 << MEMTIER_CHUNK_BITS;

/// `MEMTIER_ADISTANCE_DRAM`: the abstract distance of default DRAM, `4 * 128 + 64` = 576,
/// in the middle of `memory_tier4` so that slightly faster or slower DRAM shares its tier.
pub const MEMTIER_ADISTANCE_DRAM: i32 = 4 * MEMTIER_CHUNK_SIZE + (MEMTIER_CHUNK_SIZE >> 1);

/// `PENALTY_FOR_NODE_WITH_CPUS` in `find_next_best_node`.
const PENALTY_FOR_NODE_WITH_CPUS: i64 = 1;

/// The kernel's `node_distance` without a SLIT: `LOCAL_DISTANCE` and `REMOTE_DISTANCE`.
const LOCAL_DISTANCE: u32 = 10;
const REMOTE_DISTANCE: u32 = 20;

/// How the tiers were found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TierSource {
    /// Abstract distances computed from HMAT as Linux 6.12 does.
    Hmat,
    /// The kernel's `memory_tiering` files.
    Kernel,
    /// CPU-less memory nodes one tier below memory nodes with CPUs (Linux 5.15–6.0).
    CpuRule,
}

impl fmt::Display for TierSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TierSource::Hmat => "hmat",
            TierSource::Kernel => "kernel memory_tiering",
            TierSource::CpuRule => "cpu-less nodes below cpu nodes",
        })
    }
}

/// One memory tier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tier {
    /// The `N` of `memory_tierN`, when known (kernel files) or computed (HMAT).
    pub id: Option<u32>,
    /// The first abstract distance of the tier's chunk (`adistance_start`, `id * 128`);
    /// the nodes in it have abstract distances up to 127 above it.
    pub adistance: Option<u32>,
    /// The online memory nodes of the tier.
    pub nodes: NodeMask,
}

/// The memory tiers of a machine, fastest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tiers {
    /// Where they come from.
    pub source: TierSource,
    /// Fastest first; never an empty tier.
    pub tiers: Vec<Tier>,
    /// Why a source was skipped or gave up, for `tierd status` and `--dry-run`.
    pub notes: Vec<String>,
}

impl Tiers {
    /// The node masks, fastest first, as [`demotion_targets`] takes them.
    pub fn masks(&self) -> Vec<NodeMask> {
        self.tiers.iter().map(|t| t.nodes).collect()
    }
}

/// Where a node demotes to, exactly as the kernel keeps it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DemotionTargets {
    /// `node_demotion[n].preferred`: the nearest nodes of the next lower tier; empty for a
    /// terminal node.
    pub preferred: NodeMask,
    /// The `lower_tier_mask` of the node's tier: every memory node in a lower tier.
    pub fallback: NodeMask,
}

/// The automatic default: the tiers and every online memory node's targets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutoPaths {
    /// The tiers and how they were found.
    pub tiers: Tiers,
    /// One entry per online memory node; an empty `preferred` is a terminal node.
    pub targets: BTreeMap<NodeId, DemotionTargets>,
    /// Every node's zonelist as the kernel's last build made it: the `node_load[]` it leaves
    /// decides ties between equally distant targets.
    pub zonelists: BTreeMap<NodeId, Vec<NodeId>>,
    /// Where [`AutoPaths::zonelists`] come from.
    pub zonelist_source: ZonelistSource,
}

impl AutoPaths {
    /// The path graph tierd applies: each node's target is its lowest preferred node, its
    /// fallbacks the other preferred nodes and every lower-tier node. Nodes without a
    /// preferred node are terminal.
    pub fn to_graph(&self) -> PathGraph {
        let mut graph = PathGraph::default();
        for (&node, t) in &self.targets {
            if let Some(target) = t.preferred.first_node() {
                let mut fallback = t.preferred.or(&t.fallback);
                fallback.remove(target);
                graph.set(node, Entry { target: Some(target), fallback });
            }
        }
        graph
    }

    /// The lines `dump_demotion_targets` prints to the kernel log (without the log's
    /// timestamp), one per memory node that is in a tier, ascending.
    pub fn kernel_lines(&self) -> Vec<String> {
        let tiered = self.tiers.tiers.iter().fold(NodeMask::EMPTY, |m, t| m.or(&t.nodes));
        self.targets
            .iter()
            .filter(|(node, _)| tiered.contains(**node))
            .map(|(node, t)| {
                if t.preferred.is_empty() {
                    format!("Demotion targets for Node {node}: null")
                } else {
                    format!(
                        "Demotion targets for Node {node}: preferred: {}, fallback: {}",
                        t.preferred, t.fallback
                    )
                }
            })
            .collect()
    }

    /// The lines `build_zonelists` prints to the kernel log, one per node of the last build,
    /// ascending, without the trailing space the kernel leaves after the last node.
    pub fn zonelist_lines(&self) -> Vec<String> {
        self.zonelists
            .iter()
            .map(|(node, order)| {
                let order: Vec<String> = order.iter().map(ToString::to_string).collect();
                format!("Fallback order for Node {node}: {}", order.join(" "))
            })
            .collect()
    }
}

/// The tiers, then every memory node's targets.
pub fn auto(topo: &Topology) -> AutoPaths {
    let tiers = derive_tiers(topo);
    let targets = demotion_targets(topo, &tiers.masks());
    let (z, zonelist_source) = Zonelists::of(topo);
    AutoPaths { tiers, targets, zonelists: z.order, zonelist_source }
}

/// One node's HMAT figures as the kernel holds them (`struct access_coordinate`): 32-bit
/// unsigned, nanoseconds and MB/s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Perf {
    /// `read_latency`, ns.
    pub read_latency: u32,
    /// `write_latency`, ns.
    pub write_latency: u32,
    /// `read_bandwidth`, MB/s.
    pub read_bandwidth: u32,
    /// `write_bandwidth`, MB/s.
    pub write_bandwidth: u32,
}

impl Perf {
    /// The figures of `hmat`, when all four are present and fit the kernel's `u32`.
    pub fn from_hmat(hmat: &Hmat) -> Option<Perf> {
        let fig = |v: Option<u64>| v.and_then(|v| u32::try_from(v).ok());
        Some(Perf {
            read_latency: fig(hmat.read_latency_ns)?,
            write_latency: fig(hmat.write_latency_ns)?,
            read_bandwidth: fig(hmat.read_bandwidth_mbps)?,
            write_bandwidth: fig(hmat.write_bandwidth_mbps)?,
        })
    }

    /// Read + write latency and read + write bandwidth, wrapping as `unsigned int` does.
    fn sums(&self) -> (u32, u32) {
        (
            self.read_latency.wrapping_add(self.write_latency),
            self.read_bandwidth.wrapping_add(self.write_bandwidth),
        )
    }

    /// Whether either sum is zero, which makes the kernel refuse the figures (`-EINVAL`).
    fn has_zero_sum(&self) -> bool {
        let (lat, bw) = self.sums();
        lat == 0 || bw == 0
    }

    /// `mt_set_default_dram_perf`'s mismatch test: whether any figure differs from the
    /// reference's by more than a tenth of the reference.
    fn mismatches(&self, reference: &Perf) -> bool {
        // abs() of the unsigned difference reinterpreted as int, times 10 in int, then
        // compared as unsigned: the kernel's exact arithmetic, wrap-arounds included.
        let off = |v: u32, r: u32| {
            let diff = v.wrapping_sub(r).cast_signed().wrapping_abs();
            diff.wrapping_mul(10).cast_unsigned() > r
        };
        off(self.read_latency, reference.read_latency)
            || off(self.write_latency, reference.write_latency)
            || off(self.read_bandwidth, reference.read_bandwidth)
            || off(self.write_bandwidth, reference.write_bandwidth)
    }
}

/// `mt_perf_to_adistance`: the abstract distance of memory with figures `perf` against the
/// DRAM `reference`, or `None` when a sum of figures is zero (the kernel then leaves the
/// node at [`MEMTIER_ADISTANCE_DRAM`]).
pub fn perf_to_adistance(perf: &Perf, reference: &Perf) -> Option<i32> {
    if perf.has_zero_sum() || reference.has_zero_sum() {
        return None;
    }
    let (lat, bw) = perf.sums();
    let (ref_lat, ref_bw) = reference.sums();
    // `long` arithmetic, left to right; the kernel builds with -fno-strict-overflow.
    let a = i64::from(MEMTIER_ADISTANCE_DRAM).wrapping_mul(i64::from(lat)) / i64::from(ref_lat);
    let a = a.wrapping_mul(i64::from(ref_bw)) / i64::from(bw);
    // Stored into an `int`: keep the low 32 bits.
    let low = u32::try_from(a & 0xffff_ffff).expect("masked to 32 bits");
    Some(low.cast_signed())
}

/// The `adistance_start` of the tier holding abstract distance `adist`
/// (`round_down(adist, MEMTIER_CHUNK_SIZE)` in `find_create_memory_tier`).
pub fn tier_start(adist: i32) -> i32 {
    adist & !(MEMTIER_CHUNK_SIZE - 1)
}

/// The `N` of `memory_tierN` for a tier starting at `start` (`dev.id`).
pub fn tier_id(start: i32) -> u32 {
    (start >> MEMTIER_CHUNK_BITS).cast_unsigned()
}

/// Online memory nodes (`N_MEMORY`).
fn memory_nodes(topo: &Topology) -> NodeMask {
    topo.nodes.iter().filter(|i| i.online && i.has_memory).map(|i| i.id).collect()
}

/// Online nodes with CPUs (`N_CPU`, and a non-empty `cpumask_of_node`).
fn cpu_nodes(topo: &Topology) -> NodeMask {
    topo.nodes.iter().filter(|i| i.online && i.has_cpu).map(|i| i.id).collect()
}

/// The memory tiers of `topo`, fastest first: see the module documentation for the order
/// of sources.
pub fn derive_tiers(topo: &Topology) -> Tiers {
    let memory = memory_nodes(topo);
    let mut notes = Vec::new();
    if memory.is_empty() {
        notes.push("no online memory node".to_string());
        return Tiers { source: TierSource::CpuRule, tiers: Vec::new(), notes };
    }

    let perfs: BTreeMap<NodeId, Perf> = memory
        .iter()
        .filter_map(|n| Some((n, Perf::from_hmat(topo.node(n)?.hmat.as_ref()?)?)))
        .collect();
    if perfs.len() == memory.len() {
        let tiers = hmat_tiers(topo, memory, &perfs, &mut notes);
        let mut kernel_notes = Vec::new();
        if let Some(kernel) = kernel_tiers(topo, memory, &mut kernel_notes)
            && kernel != tiers
        {
            // The running kernel's tiers are what its demotion uses: follow them, and say
            // what HMAT alone would have given.
            notes.push(format!(
                "the kernel's memory_tiering files ({}) differ from the HMAT computation \
                 ({}); following the kernel: kernels before 6.10 ignore HMAT for memory \
                 present at boot, and drivers such as dax/kmem set their own distances",
                describe(&kernel),
                describe(&tiers)
            ));
            notes.extend(kernel_notes);
            return Tiers { source: TierSource::Kernel, tiers: kernel, notes };
        }
        return Tiers { source: TierSource::Hmat, tiers, notes };
    }
    if !perfs.is_empty() {
        let missing = memory.minus(&perfs.keys().copied().collect());
        notes.push(format!("HMAT figures incomplete for node(s) {missing}: HMAT not used"));
    }

    if let Some(tiers) = kernel_tiers(topo, memory, &mut notes) {
        return Tiers { source: TierSource::Kernel, tiers, notes };
    }

    let cpus = cpu_nodes(topo);
    let tiers = [memory.and(&cpus), memory.minus(&cpus)]
        .into_iter()
        .filter(|m| !m.is_empty())
        .map(|nodes| Tier { id: None, adistance: None, nodes })
        .collect();
    Tiers { source: TierSource::CpuRule, tiers, notes }
}

/// Tiers as text for notes: `memory_tier4: 0 | memory_tier25: 1`.
fn describe(tiers: &[Tier]) -> String {
    tiers
        .iter()
        .map(|t| match t.id {
            Some(id) => format!("memory_tier{id}: {}", t.nodes),
            None => t.nodes.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" | ")
}

/// The tiers the kernel builds from HMAT figures (`hmat_set_default_dram_perf`, then
/// `hmat_calculate_adistance` for every memory node in `memory_tier_late_init`).
fn hmat_tiers(
    topo: &Topology,
    memory: NodeMask,
    perfs: &BTreeMap<NodeId, Perf>,
    notes: &mut Vec<String>,
) -> Vec<Tier> {
    let one_tier = |notes: &mut Vec<String>, why: String| {
        notes.push(format!("{why}: the kernel puts every node in one tier"));
        let start = tier_start(MEMTIER_ADISTANCE_DRAM);
        vec![Tier {
            id: Some(tier_id(start)),
            adistance: Some(start.cast_unsigned()),
            nodes: memory,
        }]
    };

    // hmat_set_default_dram_perf: memory nodes with CPUs, ascending; the first is the
    // reference, each later one must match it; any refusal keeps the HMAT algorithm from
    // being registered at all.
    let mut reference: Option<(NodeId, Perf)> = None;
    for node in memory.and(&cpu_nodes(topo)).iter() {
        let perf = perfs[&node];
        if perf.has_zero_sum() {
            return one_tier(
                notes,
                format!("HMAT latency or bandwidth of DRAM node {node} sums to zero"),
            );
        }
        match reference {
            None => reference = Some((node, perf)),
            Some((ref_node, ref_perf)) if perf.mismatches(&ref_perf) => {
                return one_tier(
                    notes,
                    format!(
                        "HMAT figures of DRAM node {node} differ >10% from reference node \
                         {ref_node}"
                    ),
                );
            }
            Some(_) => {}
        }
    }
    let Some((_, ref_perf)) = reference else {
        return one_tier(notes, "no memory node with CPUs to serve as DRAM reference".into());
    };

    // set_node_memory_tier for each memory node, ascending; find_create_memory_tier keeps
    // the tiers sorted by adistance_start.
    let mut by_start: BTreeMap<i32, NodeMask> = BTreeMap::new();
    for (&node, perf) in perfs {
        let adist = perf_to_adistance(perf, &ref_perf).unwrap_or_else(|| {
            notes.push(format!(
                "HMAT latency or bandwidth of node {node} sums to zero: the kernel leaves it \
                 at the DRAM distance"
            ));
            MEMTIER_ADISTANCE_DRAM
        });
        by_start.entry(tier_start(adist)).or_default().insert(node);
    }
    by_start
        .into_iter()
        .map(|(start, nodes)| Tier {
            id: Some(tier_id(start)),
            adistance: Some(start.cast_unsigned()),
            nodes,
        })
        .collect()
}

/// The kernel's tier files, ascending id, reduced to online memory nodes; `None` when there
/// are none (kernels before 6.1) or none names an online memory node.
fn kernel_tiers(topo: &Topology, memory: NodeMask, notes: &mut Vec<String>) -> Option<Vec<Tier>> {
    let Some(files) = &topo.kernel_tiers else {
        notes.push("no memory_tiering files (kernel before 6.1)".into());
        return None;
    };
    let mut files = files.clone();
    files.sort_by_key(|t| t.id);
    let mut seen = NodeMask::EMPTY;
    let mut tiers = Vec::new();
    for file in files {
        let nodes = file.nodes.and(&memory).minus(&seen);
        let ignored = file.nodes.minus(&nodes);
        if !ignored.is_empty() {
            notes.push(format!(
                "memory_tier{} lists node(s) {ignored} that are offline, without memory or in \
                 a faster tier: ignored",
                file.id
            ));
        }
        seen = seen.or(&nodes);
        if !nodes.is_empty() {
            let adistance = file.id.checked_mul(MEMTIER_CHUNK_SIZE.cast_unsigned());
            tiers.push(Tier { id: Some(file.id), adistance, nodes });
        }
    }
    if tiers.is_empty() {
        notes.push("the memory_tiering files name no online memory node".into());
        return None;
    }
    let untiered = memory.minus(&seen);
    if !untiered.is_empty() {
        notes.push(format!(
            "node(s) {untiered} are in no memory_tier: the kernel gives them no demotion \
             targets"
        ));
    }
    Some(tiers)
}

/// The machine as `find_next_best_node` sees it, with the `node_load[]` the last zonelist
/// build left behind.
struct Zonelists<'a> {
    topo: &'a Topology,
    memory: NodeMask,
    /// `node_load[]`, indexed by node number.
    load: Vec<i64>,
    /// Each node's fallback order as that build made it (the `Fallback order for Node N`
    /// lines of the boot log).
    order: BTreeMap<NodeId, Vec<NodeId>>,
}

impl<'a> Zonelists<'a> {
    /// The state after boot, mirroring `__build_all_zonelists` as `mm_core_init` calls it:
    /// `node_load` zeroed, then `build_zonelists` for every node in ascending order, each
    /// bumping the load of the first node of every new distance group in its list.
    ///
    /// That build runs before any CPU is in its node's `cpumask_of_node` (x86 adds the
    /// boot CPU in `numa_add_cpu`, from `identify_boot_cpu` in `arch_cpu_finalize_init`,
    /// later in `start_kernel`; arm64 in `smp_prepare_cpus`), so the penalty for nodes with
    /// CPUs does not apply to it: the boot zonelists and their `node_load` ignore CPUs,
    /// while `establish_demotion_targets`, a `late_initcall`, sees them all.
    fn after_boot(topo: &'a Topology) -> Zonelists<'a> {
        let mut z = Zonelists::empty(topo);
        let online: NodeMask = topo.nodes.iter().filter(|i| i.online).map(|i| i.id).collect();
        for local in online.iter() {
            let order = z.build_zonelist(local, &NodeMask::EMPTY);
            z.order.insert(local, order);
        }
        z
    }

    /// The state the kernel's last logged build left: its lists as printed, and the
    /// `node_load` that `build_zonelists` bumped while making them (the first node of each
    /// new distance group in every list; the build started from zero). This covers what a
    /// replay cannot know: rebuilds after boot, which count CPUs, and partial builds.
    fn logged(topo: &'a Topology, logged: &KernelZonelists) -> Zonelists<'a> {
        let mut z = Zonelists::empty(topo);
        for (&local, order) in &logged.last {
            let mut prev = local;
            for &node in order {
                if z.distance(local, node) != z.distance(local, prev) {
                    z.load[node.index()] += 1;
                }
                prev = node;
            }
        }
        z.order.clone_from(&logged.last);
        z
    }

    /// The zonelists tierd works with: the kernel's logged ones when it has them, else the
    /// boot-time replay.
    fn of(topo: &'a Topology) -> (Zonelists<'a>, ZonelistSource) {
        match &topo.kernel_zonelists {
            Some(logged) if !logged.last.is_empty() => (
                Zonelists::logged(topo, logged),
                ZonelistSource::KernelLog { builds: logged.builds },
            ),
            _ => (Zonelists::after_boot(topo), ZonelistSource::BootReplay),
        }
    }

    fn empty(topo: &'a Topology) -> Zonelists<'a> {
        Zonelists {
            topo,
            memory: memory_nodes(topo),
            load: vec![0; MAX_NUMNODES],
            order: BTreeMap::new(),
        }
    }

    /// `build_zonelists`: `local`'s fallback order with CPU penalties for the nodes in
    /// `cpus`, adding one to the load of each node that opens a new distance group.
    fn build_zonelist(&mut self, local: NodeId, cpus: &NodeMask) -> Vec<NodeId> {
        let mut used = NodeMask::EMPTY;
        let mut prev = local;
        let mut order = Vec::new();
        while let Some(node) = self.find_next_best_node(local, &mut used, cpus) {
            if self.distance(local, node) != self.distance(local, prev) {
                self.load[node.index()] += 1;
            }
            order.push(node);
            prev = node;
        }
        order
    }

    /// `node_distance`: the SLIT entry, or 10/20 without one.
    fn distance(&self, a: NodeId, b: NodeId) -> i64 {
        let fallback = if a == b { LOCAL_DISTANCE } else { REMOTE_DISTANCE };
        i64::from(self.topo.distance(a, b).unwrap_or(fallback))
    }

    /// `find_next_best_node`: the local node first when it has memory, then the memory node
    /// not in `used` with the smallest penalised distance (+1 below `node`, +1 with CPUs,
    /// then `* MAX_NUMNODES + node_load`), lowest number on ties; marks it used. `cpus` are
    /// the nodes whose `cpumask_of_node` is not empty at the time of the call.
    fn find_next_best_node(
        &self,
        node: NodeId,
        used: &mut NodeMask,
        cpus: &NodeMask,
    ) -> Option<NodeId> {
        if !used.contains(node) && self.memory.contains(node) {
            used.insert(node);
            return Some(node);
        }
        let mut best: Option<(i64, NodeId)> = None;
        for n in self.memory.minus(used).iter() {
            let mut val = self.distance(node, n);
            if n < node {
                val += 1;
            }
            if cpus.contains(n) {
                val += PENALTY_FOR_NODE_WITH_CPUS;
            }
            let val = val * i64::try_from(MAX_NUMNODES).expect("small") + self.load[n.index()];
            if best.is_none_or(|(min, _)| val < min) {
                best = Some((val, n));
            }
        }
        let (_, n) = best?;
        used.insert(n);
        Some(n)
    }
}

/// Every online node's zonelist fallback order as the kernel builds it at boot (see
/// [`demotion_targets`] for why it matters): the nodes of the `Fallback order for Node N:`
/// lines that `build_zonelists` prints.
pub fn boot_zonelists(topo: &Topology) -> BTreeMap<NodeId, Vec<NodeId>> {
    Zonelists::after_boot(topo).order
}

/// Where the zonelists (and so `node_load[]`) that break ties come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ZonelistSource {
    /// The last build in the kernel log, which had seen `builds` builds in all.
    KernelLog {
        /// Whole builds in the log; more than one means a rebuild after boot.
        builds: u32,
    },
    /// Replayed from the topology as the kernel builds them at boot ([`boot_zonelists`]).
    BootReplay,
}

impl fmt::Display for ZonelistSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ZonelistSource::KernelLog { builds: 1 } => f.write_str("kernel log, the boot build"),
            ZonelistSource::KernelLog { builds } => {
                write!(f, "kernel log, the last of {builds} builds")
            }
            ZonelistSource::BootReplay => f.write_str("replayed as built at boot"),
        }
    }
}

/// Every online memory node's demotion targets for the given tiers (fastest first), as
/// `establish_demotion_targets` computes them. Nodes of `tiers` that are not online memory
/// nodes are ignored, as is a node's second appearance; a memory node in no tier gets no
/// targets (and, as in the kernel, appears in the fallback of every tier).
pub fn demotion_targets(topo: &Topology, tiers: &[NodeMask]) -> BTreeMap<NodeId, DemotionTargets> {
    let (z, _) = Zonelists::of(topo);
    let cpus = cpu_nodes(topo);
    let mut seen = NodeMask::EMPTY;
    let tiers: Vec<NodeMask> = tiers
        .iter()
        .filter_map(|t| {
            let nodes = t.and(&z.memory).minus(&seen);
            seen = seen.or(&nodes);
            (!nodes.is_empty()).then_some(nodes)
        })
        .collect();

    // lower_tier_mask: memory nodes minus this tier and every tier above it.
    let mut lower = z.memory;
    let lower_masks: Vec<NodeMask> = tiers
        .iter()
        .map(|t| {
            lower = lower.minus(t);
            lower
        })
        .collect();

    let mut targets = BTreeMap::new();
    for node in z.memory.iter() {
        let mut t = DemotionTargets::default();
        if let Some(i) = tiers.iter().position(|tier| tier.contains(node)) {
            t.fallback = lower_masks[i];
            if let Some(next) = tiers.get(i + 1) {
                let mut used = z.memory.minus(next);
                let mut best_distance = None;
                while let Some(target) = z.find_next_best_node(node, &mut used, &cpus) {
                    let d = z.distance(node, target);
                    if best_distance.is_some_and(|b| b != d) {
                        break;
                    }
                    best_distance = Some(d);
                    t.preferred.insert(target);
                }
            }
        }
        targets.insert(node, t);
    }
    targets
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::KernelTier;
    use proptest::prelude::*;

    const GIB: u64 = 1 << 30;

    fn id(n: usize) -> NodeId {
        NodeId::new(n).unwrap()
    }

    fn mask(s: &str) -> NodeMask {
        s.parse().unwrap()
    }

    fn machine(distances: &[u32], cpus: &[bool]) -> Topology {
        Topology::synthetic(distances, cpus, &vec![GIB; cpus.len()])
    }

    /// Sets HMAT figures with read = write, as `-numa hmat-lb` without a read/write split.
    fn with_hmat(mut topo: Topology, figures: &[(u64, u64)]) -> Topology {
        for (info, &(latency, bandwidth)) in topo.nodes.iter_mut().zip(figures) {
            info.hmat = Some(Hmat {
                read_latency_ns: Some(latency),
                write_latency_ns: Some(latency),
                read_bandwidth_mbps: Some(bandwidth),
                write_bandwidth_mbps: Some(bandwidth),
            });
        }
        topo
    }

    fn kernel_files(tiers: &[(u32, &str)]) -> Vec<KernelTier> {
        tiers.iter().map(|&(id, nodes)| KernelTier { id, nodes: mask(nodes) }).collect()
    }

    /// Takes node `n` offline the way sysfs shows it: gone from `online`, from the node
    /// list and from every distance row.
    fn take_offline(topo: &mut Topology, n: usize) {
        let col = topo.nodes.iter().position(|i| i.id == id(n)).unwrap();
        topo.nodes.remove(col);
        for info in &mut topo.nodes {
            info.distance.remove(col);
        }
        topo.online.remove(id(n));
    }

    /// The test bed (tests/vm/README.md): CPUs on node 0, SLIT 0-1:20 0-2:30 1-2:20, HMAT 80/180/350 ns and
    /// 20000/8000/4000 MB/s.
    fn test_bed() -> Topology {
        let topo = machine(&[10, 20, 30, 20, 10, 20, 30, 20, 10], &[true, false, false]);
        with_hmat(topo, &[(80, 20000), (180, 8000), (350, 4000)])
    }

    fn test_bed_tiers() -> Vec<Tier> {
        // adist = 576 * (r+w latency) / 160 * 40000 / (r+w bandwidth), then >> 7:
        // node 0: 576 -> start 512, memory_tier4
        // node 1: 576 * 360 / 160 = 1296, * 40000 / 16000 = 3240 -> start 3200, memory_tier25
        // node 2: 576 * 700 / 160 = 2520, * 40000 / 8000 = 12600 -> start 12544, memory_tier98
        [(4, 512, "0"), (25, 3200, "1"), (98, 12544, "2")]
            .into_iter()
            .map(|(id, start, nodes)| Tier {
                id: Some(id),
                adistance: Some(start),
                nodes: mask(nodes),
            })
            .collect()
    }

    fn preferred(targets: &BTreeMap<NodeId, DemotionTargets>) -> Vec<String> {
        targets.values().map(|t| t.preferred.to_string()).collect()
    }

    #[test]
    fn kernel_comment_examples_give_the_documented_preferred_targets() {
        // The node_demotion[] examples in the comment of mm/memory-tiers.c.
        struct Row {
            name: &'static str,
            distances: &'static [u32],
            cpus: &'static [bool],
            tiers: &'static [&'static str],
            preferred: &'static [&'static str],
        }
        let rows = [
            Row {
                name: "example 1: two CPU+DRAM nodes, two PMEM nodes",
                distances: &[10, 20, 30, 40, 20, 10, 40, 30, 30, 40, 10, 40, 40, 30, 40, 10],
                cpus: &[true, true, false, false],
                tiers: &["0-1", "2-3"],
                preferred: &["2", "3", "", ""],
            },
            Row {
                name: "example 2: two CPU+DRAM nodes, one memory-only DRAM node",
                distances: &[10, 20, 30, 20, 10, 30, 30, 30, 10],
                cpus: &[true, true, false],
                tiers: &["0-2"],
                preferred: &["", "", ""],
            },
            Row {
                name: "example 3: CPU+DRAM node 0, HBM node 1, PMEM node 2",
                distances: &[10, 20, 30, 20, 10, 40, 30, 40, 10],
                cpus: &[true, false, false],
                tiers: &["1", "0", "2"],
                preferred: &["2", "0", ""],
            },
        ];
        for row in rows {
            let topo = machine(row.distances, row.cpus);
            let tiers: Vec<NodeMask> = row.tiers.iter().map(|t| mask(t)).collect();
            let targets = demotion_targets(&topo, &tiers);
            assert_eq!(preferred(&targets), row.preferred, "{}", row.name);
        }
    }

    #[test]
    fn test_bed_hmat_gives_three_tiers_with_kernel_ids() {
        let tiers = derive_tiers(&test_bed());
        assert_eq!(tiers.source, TierSource::Hmat);
        assert_eq!(tiers.tiers, test_bed_tiers());
        assert_eq!(tiers.notes, Vec::<String>::new());
    }

    #[test]
    fn test_bed_targets_dmesg_lines_and_graph() {
        let auto = auto(&test_bed());
        let t = |n: usize| auto.targets[&id(n)];
        assert_eq!(t(0), DemotionTargets { preferred: mask("1"), fallback: mask("1-2") });
        assert_eq!(t(1), DemotionTargets { preferred: mask("2"), fallback: mask("2") });
        assert_eq!(t(2), DemotionTargets::default());
        assert_eq!(
            auto.kernel_lines(),
            [
                "Demotion targets for Node 0: preferred: 1, fallback: 1-2",
                "Demotion targets for Node 1: preferred: 2, fallback: 2",
                "Demotion targets for Node 2: null",
            ]
        );
        assert_eq!(
            auto.zonelist_lines(),
            [
                "Fallback order for Node 0: 0 1 2",
                "Fallback order for Node 1: 1 2 0",
                "Fallback order for Node 2: 2 1 0",
            ]
        );
        let graph =
            PathGraph::from_toml("[node.0]\ntarget = 1\nfallback = \"2\"\n[node.1]\ntarget = 2\n")
                .unwrap();
        assert_eq!(auto.to_graph(), graph);
    }

    #[test]
    fn test_bed_hmat_and_kernel_tier_files_agree() {
        let files = Some(kernel_files(&[(4, "0"), (25, "1"), (98, "2")]));
        let mut files_only = test_bed();
        for info in &mut files_only.nodes {
            info.hmat = None;
        }
        files_only.kernel_tiers.clone_from(&files);
        let from_files = derive_tiers(&files_only);
        assert_eq!(from_files.source, TierSource::Kernel);

        let mut both = test_bed();
        both.kernel_tiers = files;
        let from_hmat = derive_tiers(&both);
        assert_eq!(from_hmat.source, TierSource::Hmat);
        assert_eq!(from_hmat.tiers, from_files.tiers);
        assert_eq!(from_hmat.notes, Vec::<String>::new(), "no disagreement to report");
        assert_eq!(auto(&both).targets, auto(&files_only).targets);
    }

    #[test]
    fn kernel_files_that_differ_from_hmat_win_and_are_reported() {
        let mut topo = test_bed();
        // What 6.1 prints for the same machine: one tier. Its demotion follows that, so
        // `path auto` must too, and say what HMAT alone would give.
        topo.kernel_tiers = Some(kernel_files(&[(4, "0-2")]));
        let tiers = derive_tiers(&topo);
        assert_eq!(tiers.source, TierSource::Kernel);
        assert_eq!(tiers.masks(), [mask("0-2")]);
        assert_eq!(tiers.notes.len(), 1);
        assert!(tiers.notes[0].contains("memory_tier4: 0-2"), "{:?}", tiers.notes);
        assert!(auto(&topo).kernel_lines().iter().all(|l| l.ends_with(": null")));
    }

    #[test]
    fn two_sockets_with_local_cxl_demote_to_the_local_cxl_node() {
        // SLIT of a two-socket machine with one CXL memory expander behind each socket:
        // local CXL 14, remote socket 21, remote CXL 24, CXL to CXL 26.
        let topo = machine(
            &[10, 21, 14, 24, 21, 10, 24, 14, 14, 24, 10, 26, 24, 14, 26, 10],
            &[true, true, false, false],
        );
        let auto = auto(&topo);
        assert_eq!(auto.tiers.source, TierSource::CpuRule);
        assert_eq!(auto.tiers.masks(), [mask("0-1"), mask("2-3")]);
        assert_eq!(auto.tiers.tiers[0].id, None);
        assert_eq!(preferred(&auto.targets), ["2", "3", "", ""]);
        assert_eq!(
            auto.kernel_lines(),
            [
                "Demotion targets for Node 0: preferred: 2, fallback: 2-3",
                "Demotion targets for Node 1: preferred: 3, fallback: 2-3",
                "Demotion targets for Node 2: null",
                "Demotion targets for Node 3: null",
            ]
        );
        let graph = auto.to_graph();
        assert_eq!(graph.entry(id(0)), Entry { target: Some(id(2)), fallback: mask("3") });
        assert_eq!(graph.entry(id(1)), Entry { target: Some(id(3)), fallback: mask("2") });
        assert_eq!(graph.entry(id(2)), Entry::TERMINAL);
    }

    #[test]
    fn one_tier_machines_have_only_terminal_nodes() {
        let rows: [(&str, Topology, &[&str]); 3] = [
            ("one-node laptop", machine(&[10], &[true]), &["Demotion targets for Node 0: null"]),
            (
                "two sockets, no CPU-less node",
                machine(&[10, 21, 21, 10], &[true, true]),
                &["Demotion targets for Node 0: null", "Demotion targets for Node 1: null"],
            ),
            (
                "one-node laptop with HMAT",
                with_hmat(machine(&[10], &[true]), &[(90, 30000)]),
                &["Demotion targets for Node 0: null"],
            ),
        ];
        for (name, topo, lines) in rows {
            let auto = auto(&topo);
            assert_eq!(auto.tiers.tiers.len(), 1, "{name}");
            assert_eq!(auto.tiers.tiers[0].nodes, topo.online, "{name}");
            assert!(auto.targets.values().all(|t| *t == DemotionTargets::default()), "{name}");
            assert_eq!(auto.kernel_lines(), lines, "{name}");
            assert_eq!(auto.to_graph(), PathGraph::default(), "{name}");
        }
    }

    #[test]
    fn hmat_give_ups_put_every_node_in_the_dram_tier() {
        let two_sockets_cxl =
            || machine(&[10, 21, 14, 21, 10, 24, 14, 24, 10], &[true, true, false]);
        let rows = [
            (
                "DRAM node 1 is 12.5% slower than node 0",
                with_hmat(two_sockets_cxl(), &[(80, 20000), (90, 20000), (250, 6000)]),
                "HMAT figures of DRAM node 1 differ >10% from reference node 0: the kernel \
                 puts every node in one tier",
            ),
            (
                "DRAM node 0 has zero bandwidth",
                with_hmat(two_sockets_cxl(), &[(80, 0), (80, 20000), (250, 6000)]),
                "HMAT latency or bandwidth of DRAM node 0 sums to zero: the kernel puts every \
                 node in one tier",
            ),
            (
                "no memory node has CPUs",
                with_hmat(machine(&[10, 20, 20, 10], &[false, false]), &[(80, 20000), (250, 6000)]),
                "no memory node with CPUs to serve as DRAM reference: the kernel puts every \
                 node in one tier",
            ),
        ];
        for (name, topo, note) in rows {
            let auto = auto(&topo);
            assert_eq!(auto.tiers.source, TierSource::Hmat, "{name}");
            let all = Tier { id: Some(4), adistance: Some(512), nodes: topo.online };
            assert_eq!(auto.tiers.tiers, [all], "{name}");
            assert_eq!(auto.tiers.notes, [note], "{name}");
            assert_eq!(auto.to_graph(), PathGraph::default(), "{name}");
        }
    }

    #[test]
    fn hmat_within_ten_percent_is_accepted_exactly_at_the_boundary() {
        let topo = |dram1: (u64, u64)| {
            with_hmat(
                machine(&[10, 21, 14, 21, 10, 24, 14, 24, 10], &[true, true, false]),
                &[(80, 20000), dram1, (250, 6000)],
            )
        };
        // 88 - 80 = 8, 8 * 10 = 80, not > 80: accepted. 89 is refused.
        let ok = derive_tiers(&topo((88, 22000)));
        assert_eq!(ok.notes, Vec::<String>::new());
        assert_eq!(ok.tiers.len(), 2);
        assert_eq!(ok.tiers[0].nodes, mask("0-1"));
        let refused = derive_tiers(&topo((89, 20000)));
        assert_eq!(refused.tiers.len(), 1);
        let refused = derive_tiers(&topo((80, 22001)));
        assert_eq!(refused.tiers.len(), 1);
    }

    #[test]
    fn dram_nodes_within_ten_percent_can_still_land_in_different_tiers() {
        // Node 1 passes the 10% test (8 ns * 10 <= 80 ns, 1800 MB/s * 10 <= 20000 MB/s) but
        // its distance is 576 * 176 / 160 = 633, * 40000 / 36400 = 695: memory_tier5. The
        // kernel then demotes socket 0's DRAM to socket 1's DRAM, not to the CXL node.
        let topo = with_hmat(
            machine(&[10, 21, 14, 21, 10, 24, 14, 24, 10], &[true, true, false]),
            &[(80, 20000), (88, 18200), (250, 6000)],
        );
        let auto = auto(&topo);
        assert_eq!(auto.tiers.notes, Vec::<String>::new());
        let ids: Vec<_> = auto.tiers.tiers.iter().map(|t| (t.id, t.nodes)).collect();
        assert_eq!(ids, [(Some(4), mask("0")), (Some(5), mask("1")), (Some(46), mask("2"))]);
        assert_eq!(
            auto.kernel_lines()[0],
            "Demotion targets for Node 0: preferred: 1, fallback: 1-2"
        );
    }

    #[test]
    fn hmat_zero_figures_of_a_cpuless_node_leave_it_at_the_dram_distance() {
        let topo = with_hmat(
            machine(&[10, 20, 30, 20, 10, 20, 30, 20, 10], &[true, false, false]),
            &[(80, 20000), (180, 8000), (0, 4000)],
        );
        let tiers = derive_tiers(&topo);
        assert_eq!(tiers.masks(), [mask("0,2"), mask("1")]);
        assert_eq!(tiers.tiers[0].id, Some(4));
        assert!(tiers.notes[0].starts_with("HMAT latency or bandwidth of node 2 sums to zero"));
    }

    #[test]
    fn abstract_distance_arithmetic_matches_the_kernel() {
        let perf = |rl, wl, rb, wb| Perf {
            read_latency: rl,
            write_latency: wl,
            read_bandwidth: rb,
            write_bandwidth: wb,
        };
        let dram = perf(80, 80, 20000, 20000);
        let rows = [
            ("the reference itself", perf(80, 80, 20000, 20000), Some(576)),
            ("test-bed node 1", perf(180, 180, 8000, 8000), Some(3240)),
            ("test-bed node 2", perf(350, 350, 4000, 4000), Some(12600)),
            // Integer division, left to right: 576 * 170 / 160 = 612, * 40000 / 39999 = 612.
            ("truncates at each step", perf(85, 85, 20000, 19999), Some(612)),
            ("zero latency", perf(0, 0, 20000, 20000), None),
            ("zero bandwidth", perf(80, 80, 0, 0), None),
        ];
        for (name, p, want) in rows {
            assert_eq!(perf_to_adistance(&p, &dram), want, "{name}");
        }
        // 576 * 600 / 200 * 4_000_000 overflows 32 bits; 6.12.y computes it in `long`.
        let hbm = perf(100, 100, 2_000_000, 2_000_000);
        let slow = perf(300, 300, 500_000, 500_000);
        assert_eq!(perf_to_adistance(&slow, &hbm), Some(6912));
        assert_eq!(tier_id(tier_start(6912)), 54);
        assert_eq!(tier_id(tier_start(MEMTIER_ADISTANCE_DRAM)), 4);
        assert_eq!(tier_start(639), 512);
        assert_eq!(tier_start(640), 640);
    }

    #[test]
    fn find_next_best_node_penalties_can_prefer_a_farther_node() {
        // Tiers {1,2} above {0,3}; CPUs on 0 and 2. From node 2, node 0 is nearer (20) but
        // pays +1 for being below 2 and +1 for its CPUs (22), so node 3 (21) is met first
        // and node 0, at another distance, is left out. From node 1, node 3 (20) is met
        // first and node 0 (also 20) joins it.
        let topo = machine(
            &[10, 20, 20, 30, 20, 10, 20, 20, 20, 20, 10, 21, 30, 20, 21, 10],
            &[true, false, true, false],
        );
        let targets = demotion_targets(&topo, &[mask("1-2"), mask("0,3")]);
        assert_eq!(preferred(&targets), ["", "0,3", "3", ""]);
    }

    /// The `topo-tie` machine of the test bed: CPUs and DRAM on node 0, memory-only DRAM on
    /// node 2, slow CPU-less nodes 1 and 3. From node 2, node 1 (distance 20, +1 for a
    /// number below 2) and node 3 (21) tie at 21. The boot-time zonelist build, which saw no
    /// CPUs, leaves both at load 2 and node 1 wins on its number. Built with CPU penalties
    /// (as tierd did), node 1's load is 3 against node 3's 2, and node 3 won.
    fn four_node_tie() -> Topology {
        machine(
            &[10, 20, 20, 20, 20, 10, 20, 21, 20, 20, 10, 21, 20, 21, 21, 10],
            &[true, false, false, false],
        )
    }

    /// The `topo-tie3` machine: CPUs and DRAM on node 0, memory-only DRAM on nodes 1 and 3,
    /// a CPU-less node 2 faster than DRAM. From node 2, nodes 0 (20, +1 below, +1 CPUs), 1
    /// (21, +1 below) and 3 (22) all tie at 22: the boot-time load (3, 2, -, 2) picks node 1,
    /// neither the lowest number (0) nor what a build with CPU penalties leaves (node 3).
    fn three_way_tie() -> Topology {
        machine(
            &[10, 20, 20, 21, 20, 10, 21, 21, 20, 21, 10, 22, 21, 21, 22, 10],
            &[true, false, false, false],
        )
    }

    #[test]
    fn ties_in_the_next_tier_are_broken_by_the_boot_node_load() {
        let rows: [(&str, Topology, [&str; 2], [&str; 4]); 2] = [
            ("two-way tie", four_node_tie(), ["0,2", "1,3"], ["1,3", "", "1", ""]),
            ("three-way tie", three_way_tie(), ["2", "0-1,3"], ["", "", "1", ""]),
        ];
        for (name, topo, tiers, want) in rows {
            let targets = demotion_targets(&topo, &tiers.map(mask));
            assert_eq!(preferred(&targets), want, "{name}");
        }
    }

    /// The `topo-hotplug` machine: CPUs and DRAM on node 0, a CPU-less node 1 faster than
    /// DRAM, memory-only DRAM on node 2, and node 3's DRAM added by ACPI memory hotplug after
    /// the CPUs came up. From node 1, nodes 0 (20, +1 below, +1 CPUs), 2 (22) and 3 (22) tie.
    fn hotplug_machine() -> Topology {
        machine(
            &[10, 20, 20, 20, 20, 10, 22, 22, 20, 22, 10, 20, 20, 22, 20, 10],
            &[true, false, false, false],
        )
    }

    #[test]
    fn a_rebuild_after_boot_in_the_kernel_log_decides_the_tie() {
        let tiers = [mask("1"), mask("0,2-3")];
        // Replayed as at boot (no CPUs counted): loads 2, -, 1, 1 pick node 2, and node 3
        // at the same distance joins it.
        let replayed = hotplug_machine();
        assert_eq!(preferred(&demotion_targets(&replayed, &tiers)), ["", "2-3", "", ""]);
        // The kernel rebuilt the zonelists when node 3's memory came online, with node 0's
        // CPUs counted (its log, as topo-hotplug printed it): node 3's list is 3 2 0 1, the
        // loads 1, -, 2, 1, and node 0 wins the tie on its number.
        let mut logged = hotplug_machine();
        let list = |v: &[usize]| v.iter().map(|&n| id(n)).collect::<Vec<_>>();
        logged.kernel_zonelists = Some(KernelZonelists {
            builds: 3,
            last: [
                (id(0), list(&[0, 1, 2, 3])),
                (id(1), list(&[1, 0, 2, 3])),
                (id(2), list(&[2, 3, 0, 1])),
                (id(3), list(&[3, 2, 0, 1])),
            ]
            .into_iter()
            .collect(),
        });
        assert_eq!(preferred(&demotion_targets(&logged, &tiers)), ["", "0", "", ""]);
        let auto = auto(&logged);
        assert_eq!(auto.zonelist_source, ZonelistSource::KernelLog { builds: 3 });
        assert_eq!(auto.zonelist_lines()[3], "Fallback order for Node 3: 3 2 0 1");
        assert_eq!(auto.zonelist_source.to_string(), "kernel log, the last of 3 builds");
        assert_eq!(super::auto(&replayed).zonelist_source, ZonelistSource::BootReplay);
        // A log without a whole build is no log.
        logged.kernel_zonelists = Some(KernelZonelists::default());
        assert_eq!(preferred(&demotion_targets(&logged, &tiers)), ["", "2-3", "", ""]);
    }

    #[test]
    fn boot_zonelists_ignore_cpus_and_round_robin_the_distance_groups() {
        // Every row is a kernel's `Fallback order for Node N` lines (the test bed's, and
        // topo-tie's and topo-tie3's, as read in the guests' logs). In the two-way tie, node
        // 1's list puts node 0 (20, +1 below) before node 3 (21) only because the CPU penalty
        // is not there yet; with it node 0 would come last.
        let rows: [(&str, Topology, &[&[usize]]); 4] = [
            (
                "two-way tie",
                four_node_tie(),
                &[&[0, 1, 2, 3], &[1, 2, 0, 3], &[2, 0, 1, 3], &[3, 0, 1, 2]],
            ),
            (
                "three-way tie",
                three_way_tie(),
                &[&[0, 1, 2, 3], &[1, 0, 2, 3], &[2, 0, 1, 3], &[3, 0, 1, 2]],
            ),
            ("test bed", test_bed(), &[&[0, 1, 2], &[1, 2, 0], &[2, 1, 0]]),
            (
                "a memoryless CPU node is not in any list, its own included",
                {
                    let mut t =
                        machine(&[10, 20, 30, 20, 10, 20, 30, 20, 10], &[true, true, false]);
                    t.nodes[1].has_memory = false;
                    t
                },
                &[&[0, 2], &[2, 0], &[2, 0]],
            ),
        ];
        for (name, topo, want) in rows {
            let got: Vec<Vec<usize>> = boot_zonelists(&topo)
                .into_values()
                .map(|o| o.iter().map(|n| n.index()).collect())
                .collect();
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn kernel_tier_files_with_an_offline_node() {
        let mut topo = machine(
            &[10, 21, 14, 24, 21, 10, 24, 14, 14, 24, 10, 26, 24, 14, 26, 10],
            &[true, true, false, false],
        );
        topo.kernel_tiers = Some(kernel_files(&[(22, "2-3"), (4, "0-1")]));
        take_offline(&mut topo, 3);
        let auto = auto(&topo);
        assert_eq!(auto.tiers.source, TierSource::Kernel);
        assert_eq!(
            auto.tiers.tiers,
            [
                Tier { id: Some(4), adistance: Some(512), nodes: mask("0-1") },
                Tier { id: Some(22), adistance: Some(2816), nodes: mask("2") },
            ]
        );
        assert_eq!(
            auto.tiers.notes,
            ["memory_tier22 lists node(s) 3 that are offline, without memory or in a faster \
              tier: ignored"]
        );
        assert_eq!(auto.targets.keys().copied().collect::<NodeMask>(), mask("0-2"));
        assert_eq!(
            auto.kernel_lines(),
            [
                "Demotion targets for Node 0: preferred: 2, fallback: 2",
                "Demotion targets for Node 1: preferred: 2, fallback: 2",
                "Demotion targets for Node 2: null",
            ]
        );
        assert!(auto.to_graph().validate(topo.online, MAX_NUMNODES).is_ok());
    }

    #[test]
    fn incomplete_hmat_falls_back_to_the_cpu_rule_and_says_why() {
        let mut topo = test_bed();
        topo.nodes[2].hmat.as_mut().unwrap().write_bandwidth_mbps = None;
        let tiers = derive_tiers(&topo);
        assert_eq!(tiers.source, TierSource::CpuRule);
        assert_eq!(tiers.masks(), [mask("0"), mask("1-2")]);
        assert_eq!(
            tiers.notes,
            [
                "HMAT figures incomplete for node(s) 2: HMAT not used",
                "no memory_tiering files (kernel before 6.1)",
            ]
        );
    }

    #[test]
    fn auto_paths_round_trip_through_json() {
        let auto = auto(&test_bed());
        let json = serde_json::to_string(&auto).unwrap();
        assert!(json.contains(r#""source":"Hmat""#), "{json}");
        assert!(json.contains(r#""0":{"preferred":"1","fallback":"1-2"}"#), "{json}");
        assert!(json.contains(r#""zonelists":{"0":[0,1,2],"1":[1,2,0],"2":[2,1,0]}"#), "{json}");
        let back: AutoPaths = serde_json::from_str(&json).unwrap();
        assert_eq!(back, auto);
    }

    #[test]
    fn source_names_are_stable() {
        let names =
            [TierSource::Hmat, TierSource::Kernel, TierSource::CpuRule].map(|s| s.to_string());
        assert_eq!(names, ["hmat", "kernel memory_tiering", "cpu-less nodes below cpu nodes"]);
    }

    /// A random machine: 1 to 6 nodes, some offline or memoryless, random CPUs and SLIT,
    /// HMAT on all, some or no nodes, and maybe kernel tier files that also name nodes
    /// that are offline or have no memory.
    fn arb_topology() -> impl Strategy<Value = Topology> {
        (1usize..=6).prop_flat_map(|n| {
            (
                proptest::collection::vec(11u32..=40, n * n),
                proptest::collection::vec(any::<bool>(), n),
                proptest::collection::vec(0u8..6, n),
                any::<bool>(),
                proptest::collection::vec(proptest::option::of((50u64..600, 0u64..40000)), n),
                proptest::option::of(proptest::collection::vec(0u32..4, n)),
            )
                .prop_map(move |(dist, cpus, state, all_hmat, hmat, tier_of)| {
                    let d: Vec<u32> = (0..n * n)
                        .map(|k| {
                            let (i, j) = (k / n, k % n);
                            if i == j { 10 } else { dist[i.min(j) * n + i.max(j)] }
                        })
                        .collect();
                    let mut topo = machine(&d, &cpus);
                    for (i, info) in topo.nodes.iter_mut().enumerate() {
                        info.has_memory = state[i] != 1;
                        let figures = hmat[i].or(all_hmat.then_some((80, 20000)));
                        info.hmat = figures.map(|(lat, bw)| Hmat {
                            read_latency_ns: Some(lat),
                            write_latency_ns: Some(lat + 7),
                            read_bandwidth_mbps: Some(bw),
                            write_bandwidth_mbps: Some(bw / 2),
                        });
                    }
                    topo.kernel_tiers = tier_of.map(|tier_of| {
                        (0..4u32)
                            .map(|t| KernelTier {
                                id: 3 + 5 * t,
                                nodes: (0..n).filter(|&i| tier_of[i] == t).map(id).collect(),
                            })
                            .collect()
                    });
                    for i in (0..n).rev() {
                        if state[i] == 0 {
                            take_offline(&mut topo, i);
                        }
                    }
                    topo
                })
        })
    }

    proptest! {
        /// Counting `node_load` off logged lists gives what building them gave: the kernel
        /// log of a machine booted with this topology leads to the replay's targets.
        #[test]
        fn a_logged_boot_build_gives_the_replayed_targets(topo in arb_topology()) {
            let tiers = derive_tiers(&topo).masks();
            let replayed = demotion_targets(&topo, &tiers);
            let mut logged = topo.clone();
            logged.kernel_zonelists =
                Some(KernelZonelists { builds: 1, last: boot_zonelists(&topo) });
            prop_assert_eq!(demotion_targets(&logged, &tiers), replayed);
            prop_assert_eq!(Zonelists::of(&logged).0.load, Zonelists::after_boot(&topo).load);
        }

        #[test]
        fn auto_graph_is_acyclic_and_only_descends_tiers(topo in arb_topology()) {
            let auto = auto(&topo);
            let memory = memory_nodes(&topo);
            prop_assert_eq!(auto.targets.keys().copied().collect::<NodeMask>(), memory);
            let graph = auto.to_graph();
            prop_assert!(graph.validate(topo.online, MAX_NUMNODES).is_ok(), "{:?}", graph);
            let tier_of = |n: NodeId| auto.tiers.tiers.iter().position(|t| t.nodes.contains(n));
            for (node, entry) in graph.iter() {
                let from = tier_of(node).expect("a node with targets is in a tier");
                for dest in entry.destinations() {
                    prop_assert!(tier_of(dest).is_some_and(|to| to > from),
                        "{} -> {} in {:?}", node, dest, auto.tiers);
                }
            }
            // Preferred nodes all come from the next tier down.
            for (node, t) in &auto.targets {
                if let Some(i) = tier_of(*node) && !t.preferred.is_empty() {
                    let next = auto.tiers.tiers[i + 1].nodes;
                    prop_assert_eq!(t.preferred.minus(&next), NodeMask::EMPTY);
                }
            }
        }
    }
}
