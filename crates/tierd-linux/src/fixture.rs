//! Fixture builders: whole sysfs/procfs trees for a described machine.
//!
//! [`FixtureMachine`] describes a machine (nodes with CPU/memory/online flags, sizes, the
//! distance matrix, HMAT per node, kernel tiers, the kernel's demotion and NUMA-balancing
//! knobs, vmstat counters) and writes exactly the files tierd reads, in the kernel's own
//! formats, under a directory that holds `sys/` and `proc/` side by side. Tests build one in a
//! temporary directory with [`FixtureMachine::build`] and poke at it with [`Fixture::write`]
//! and [`Fixture::remove`] (a node that goes offline, a kernel that prints something odd),
//! the way below's `TestProcfs` does for procfs.
//!
//! [`FIXTURES`] names the machines behind the trees committed under `fixtures/` at the
//! repository root, which other crates' tests and the CLI read through
//! [`SysRoot::under`]. A test in this module regenerates every tree into a temporary
//! directory and fails when a committed file differs, so the trees never drift from the
//! builder. To rewrite them after changing a machine here:
//!
//! ```text
//! TIERD_BLESS_FIXTURES=1 cargo test -p tierd-linux committed_fixtures
//! ```
//!
//! This module is compiled for the crate's own tests and, for other crates, behind the
//! `fixture` feature.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};

use tempfile::TempDir;
use tierd_core::topology::{Hmat, KernelTier};
use tierd_core::{NodeId, NodeInfo, NodeMask, Topology};

use crate::SysRoot;

/// The kernel's default SLIT distance from a node to itself (`LOCAL_DISTANCE`).
pub const LOCAL_DISTANCE: u32 = 10;
/// The kernel's default distance between two nodes when firmware gives no SLIT
/// (`REMOTE_DISTANCE`); the builder's default for every pair not set.
pub const REMOTE_DISTANCE: u32 = 20;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// One node of a [`FixtureMachine`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FixtureNode {
    id: NodeId,
    online: bool,
    has_cpu: bool,
    has_memory: bool,
    mem_total_bytes: u64,
    mem_free_bytes: u64,
    hmat: BTreeMap<u8, Hmat>,
    vmstat: Option<Vec<(String, u64)>>,
}

impl FixtureNode {
    /// An online node with neither CPUs nor memory. Panics when `id >= MAX_NUMNODES`.
    pub fn new(id: usize) -> FixtureNode {
        FixtureNode {
            id: NodeId::new(id).expect("fixture node id below MAX_NUMNODES"),
            online: true,
            has_cpu: false,
            has_memory: false,
            mem_total_bytes: 0,
            mem_free_bytes: 0,
            hmat: BTreeMap::new(),
            vmstat: None,
        }
    }

    /// The node has CPUs (it is in `has_cpu`).
    #[must_use]
    pub fn cpu(mut self) -> FixtureNode {
        self.has_cpu = true;
        self
    }

    /// The node has memory (it is in `has_memory`): `MemTotal` and `MemFree` in bytes, each a
    /// multiple of 1 KiB since `meminfo` prints kB.
    #[must_use]
    pub fn memory(mut self, total_bytes: u64, free_bytes: u64) -> FixtureNode {
        assert!(
            total_bytes.is_multiple_of(1024) && free_bytes.is_multiple_of(1024),
            "meminfo prints whole kB"
        );
        assert!(free_bytes <= total_bytes, "MemFree above MemTotal");
        self.has_memory = true;
        self.mem_total_bytes = total_bytes;
        self.mem_free_bytes = free_bytes;
        self
    }

    /// The node is possible but offline: no `nodeN` directory, in no mask but `possible`.
    #[must_use]
    pub fn offline(mut self) -> FixtureNode {
        self.online = false;
        self
    }

    /// HMAT figures in both access classes (`access0` and `access1`), as a kernel with
    /// CPU-only initiators prints them. Figures that are `None` are not written.
    #[must_use]
    pub fn hmat(self, hmat: Hmat) -> FixtureNode {
        self.hmat_access(0, hmat).hmat_access(1, hmat)
    }

    /// HMAT figures in one access class only (`accessC/initiators/*`).
    #[must_use]
    pub fn hmat_access(mut self, class: u8, hmat: Hmat) -> FixtureNode {
        self.hmat.insert(class, hmat);
        self
    }

    /// Writes `nodeN/vmstat` with these counters, in this order.
    #[must_use]
    pub fn vmstat(mut self, counters: &[(&str, u64)]) -> FixtureNode {
        self.vmstat = Some(counters.iter().map(|&(k, v)| (k.to_string(), v)).collect());
        self
    }
}

/// A machine to write as a sysfs/procfs tree. See the module documentation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FixtureMachine {
    nodes: BTreeMap<NodeId, FixtureNode>,
    possible: Option<NodeMask>,
    distances: BTreeMap<(NodeId, NodeId), u32>,
    kernel_tiers: Option<BTreeMap<u32, NodeMask>>,
    demotion_enabled: Option<bool>,
    numa_balancing: Option<u32>,
    vmstat: Option<Vec<(String, u64)>>,
    legacy_has_normal_memory: bool,
}

/// HMAT figures with equal read and write values.
pub fn symmetric_hmat(latency_ns: u64, bandwidth_mbps: u64) -> Hmat {
    Hmat {
        read_latency_ns: Some(latency_ns),
        write_latency_ns: Some(latency_ns),
        read_bandwidth_mbps: Some(bandwidth_mbps),
        write_bandwidth_mbps: Some(bandwidth_mbps),
    }
}

fn mask(list: &str) -> NodeMask {
    list.parse().unwrap_or_else(|e| panic!("fixture nodelist {list:?}: {e}"))
}

fn node_id(n: usize) -> NodeId {
    NodeId::new(n).expect("fixture node id below MAX_NUMNODES")
}

impl FixtureMachine {
    /// A machine with no nodes, no optional files, and the default distances.
    pub fn new() -> FixtureMachine {
        FixtureMachine::default()
    }

    /// Adds a node, replacing any node with the same id.
    #[must_use]
    pub fn node(mut self, node: FixtureNode) -> FixtureMachine {
        self.nodes.insert(node.id, node);
        self
    }

    /// The `possible` mask, a nodelist such as `"0-7"`; by default the ids of all nodes
    /// described. Panics on a bad nodelist.
    #[must_use]
    pub fn possible(mut self, nodelist: &str) -> FixtureMachine {
        self.possible = Some(mask(nodelist));
        self
    }

    /// Sets the distance between `a` and `b` both ways. Unset pairs are
    /// [`LOCAL_DISTANCE`] on the diagonal and [`REMOTE_DISTANCE`] elsewhere.
    #[must_use]
    pub fn distance(mut self, a: usize, b: usize, distance: u32) -> FixtureMachine {
        let (a, b) = (node_id(a), node_id(b));
        self.distances.insert((a, b), distance);
        self.distances.insert((b, a), distance);
        self
    }

    /// Adds the kernel memory tier `memory_tier<id>` holding `nodelist`; any tier makes the
    /// `memory_tiering` directory exist. Panics on a bad nodelist.
    #[must_use]
    pub fn kernel_tier(mut self, id: u32, nodelist: &str) -> FixtureMachine {
        self.kernel_tiers.get_or_insert_with(BTreeMap::new).insert(id, mask(nodelist));
        self
    }

    /// Writes `demotion_enabled` (`true`/`false`).
    #[must_use]
    pub fn demotion_enabled(mut self, enabled: bool) -> FixtureMachine {
        self.demotion_enabled = Some(enabled);
        self
    }

    /// Writes `numa_balancing`.
    #[must_use]
    pub fn numa_balancing(mut self, mode: u32) -> FixtureMachine {
        self.numa_balancing = Some(mode);
        self
    }

    /// Writes `proc/vmstat` with these counters, in this order.
    #[must_use]
    pub fn vmstat(mut self, counters: &[(&str, u64)]) -> FixtureMachine {
        self.vmstat = Some(counters.iter().map(|&(k, v)| (k.to_string(), v)).collect());
        self
    }

    /// Writes `has_normal_memory` instead of `has_memory`, as a kernel without the latter.
    #[must_use]
    pub fn legacy_has_normal_memory(mut self) -> FixtureMachine {
        self.legacy_has_normal_memory = true;
        self
    }

    fn online(&self) -> NodeMask {
        self.nodes.values().filter(|n| n.online).map(|n| n.id).collect()
    }

    fn possible_mask(&self) -> NodeMask {
        self.possible.unwrap_or_else(|| self.nodes.keys().copied().collect())
    }

    fn distance_of(&self, a: NodeId, b: NodeId) -> u32 {
        self.distances.get(&(a, b)).copied().unwrap_or(if a == b {
            LOCAL_DISTANCE
        } else {
            REMOTE_DISTANCE
        })
    }

    fn online_nodes(&self) -> impl Iterator<Item = &FixtureNode> {
        self.nodes.values().filter(|n| n.online)
    }

    /// The files of the tree, as (path relative to the fixture directory, contents), in the
    /// kernel's formats.
    pub fn files(&self) -> Vec<(PathBuf, String)> {
        let rel = SysRoot::new("sys", "proc");
        let mut files = Vec::new();
        let mut put = |path: PathBuf, text: String| files.push((path, text));
        let line = |m: NodeMask| format!("{m}\n");
        let online = self.online();
        let with = |f: fn(&FixtureNode) -> bool| -> NodeMask {
            self.online_nodes().filter(|n| f(n)).map(|n| n.id).collect()
        };

        let root = rel.node_root();
        put(root.join("possible"), line(self.possible_mask()));
        put(root.join("online"), line(online));
        put(root.join("has_cpu"), line(with(|n| n.has_cpu)));
        let has_memory =
            if self.legacy_has_normal_memory { "has_normal_memory" } else { "has_memory" };
        put(root.join(has_memory), line(with(|n| n.has_memory)));

        for node in self.online_nodes() {
            let dir = rel.node_dir(node.id);
            let row: Vec<String> =
                online.iter().map(|b| self.distance_of(node.id, b).to_string()).collect();
            put(dir.join("distance"), format!("{}\n", row.join(" ")));
            put(dir.join("meminfo"), meminfo_text(node));
            if let Some(counters) = &node.vmstat {
                put(dir.join("vmstat"), vmstat_text(counters));
            }
            for (&class, hmat) in &node.hmat {
                let hdir = rel.hmat_dir(node.id, class);
                for (name, value) in [
                    ("read_bandwidth", hmat.read_bandwidth_mbps),
                    ("read_latency", hmat.read_latency_ns),
                    ("write_bandwidth", hmat.write_bandwidth_mbps),
                    ("write_latency", hmat.write_latency_ns),
                ] {
                    if let Some(v) = value {
                        put(hdir.join(name), format!("{v}\n"));
                    }
                }
            }
        }

        if let Some(tiers) = &self.kernel_tiers {
            for (id, nodes) in tiers {
                let dir = rel.memory_tiering_dir().join(format!("memory_tier{id}"));
                put(dir.join("nodelist"), line(*nodes));
            }
        }
        if let Some(on) = self.demotion_enabled {
            put(rel.demotion_enabled_file(), format!("{on}\n"));
        }
        if let Some(mode) = self.numa_balancing {
            put(rel.numa_balancing_file(), format!("{mode}\n"));
        }
        if let Some(counters) = &self.vmstat {
            put(rel.vmstat_file(), vmstat_text(counters));
        }
        files.sort();
        files
    }

    /// Writes the tree under `dir` (creating `dir/sys` and `dir/proc`) and returns its root.
    /// Existing files are overwritten; files the machine does not have are left alone.
    pub fn write_to(&self, dir: &Path) -> io::Result<SysRoot> {
        std::fs::create_dir_all(dir.join("sys"))?;
        std::fs::create_dir_all(dir.join("proc"))?;
        for (path, text) in self.files() {
            let path = dir.join(path);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(path, text)?;
        }
        Ok(SysRoot::under(dir))
    }

    /// Writes the tree into a fresh temporary directory, removed when the [`Fixture`] drops.
    pub fn build(&self) -> io::Result<Fixture> {
        let dir = tempfile::Builder::new().prefix("tierd-fixture-").tempdir()?;
        let root = self.write_to(dir.path())?;
        Ok(Fixture { dir, root })
    }

    /// The [`Topology`] that reading this machine's tree must give.
    pub fn expected_topology(&self) -> Topology {
        let online = self.online();
        let nodes = self
            .online_nodes()
            .map(|n| NodeInfo {
                id: n.id,
                online: true,
                has_cpu: n.has_cpu,
                has_memory: n.has_memory,
                distance: online.iter().map(|b| self.distance_of(n.id, b)).collect(),
                mem_total_bytes: Some(n.mem_total_bytes),
                mem_free_bytes: Some(n.mem_free_bytes),
                hmat: crate::topology::HMAT_ACCESS_CLASSES
                    .iter()
                    .filter_map(|c| n.hmat.get(c))
                    .find(|h| **h != Hmat::default())
                    .copied(),
            })
            .collect();
        Topology {
            possible: self.possible_mask(),
            online,
            nodes,
            kernel_tiers: self
                .kernel_tiers
                .as_ref()
                .map(|tiers| tiers.iter().map(|(&id, &nodes)| KernelTier { id, nodes }).collect()),
            demotion_enabled: self.demotion_enabled,
            numa_balancing: self.numa_balancing,
            kernel_zonelists: None,
        }
    }
}

/// `nodeN/meminfo` in the layout of the kernel's `node_read_meminfo()`: the field name and
/// colon padded to 16 columns, then a kB figure right-aligned in 8 (`%8lu kB`) or, for the
/// `HugePages_*` counts, a space and a count right-aligned in 5 (`%5u`).
fn meminfo_text(node: &FixtureNode) -> String {
    let id = node.id;
    let mut s = String::new();
    for (key, bytes) in [
        ("MemTotal", node.mem_total_bytes),
        ("MemFree", node.mem_free_bytes),
        ("MemUsed", node.mem_total_bytes - node.mem_free_bytes),
    ] {
        let _ = writeln!(s, "Node {id} {:<16}{:>8} kB", format!("{key}:"), bytes / 1024);
    }
    for key in ["HugePages_Total", "HugePages_Free", "HugePages_Surp"] {
        let _ = writeln!(s, "Node {id} {:<16} {:>5}", format!("{key}:"), 0);
    }
    s
}

fn vmstat_text(counters: &[(String, u64)]) -> String {
    counters.iter().fold(String::new(), |mut s, (k, v)| {
        let _ = writeln!(s, "{k} {v}");
        s
    })
}

/// A fixture tree in a temporary directory. Removed when dropped.
#[derive(Debug)]
pub struct Fixture {
    dir: TempDir,
    root: SysRoot,
}

impl Fixture {
    /// The root to hand to the readers.
    pub fn root(&self) -> &SysRoot {
        &self.root
    }

    /// The directory holding `sys/` and `proc/`.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `contents` to `rel` (relative to [`Fixture::path`]), creating parents.
    pub fn write(&self, rel: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> io::Result<()> {
        let path = self.dir.path().join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, contents)
    }

    /// Removes the file or directory tree `rel` (relative to [`Fixture::path`]), as a node
    /// going offline removes its files.
    pub fn remove(&self, rel: impl AsRef<Path>) -> io::Result<()> {
        let path = self.dir.path().join(rel);
        if path.is_dir() { std::fs::remove_dir_all(path) } else { std::fs::remove_file(path) }
    }
}

/// A named machine behind a committed fixture tree.
#[derive(Clone, Copy, Debug)]
pub struct NamedFixture {
    /// The directory name under `fixtures/`.
    pub name: &'static str,
    /// What machine it models (one line, copied into `fixtures/README.md`).
    pub description: &'static str,
    /// Builds the machine.
    pub machine: fn() -> FixtureMachine,
}

/// Every committed fixture, in the order of `fixtures/README.md`.
pub const FIXTURES: &[NamedFixture] = &[
    NamedFixture {
        name: "laptop",
        description: "a 1-node laptop on a 6.x kernel: CPUs and 16 GiB on node 0, one kernel \
                      tier, no HMAT, kernel demotion off, NUMA balancing off",
        machine: laptop,
    },
    NamedFixture {
        name: "two-socket",
        description: "a 2-socket server: nodes 0 and 1 each with CPUs and 64 GiB, SLIT 10/21, \
                      one kernel tier 0-1, no HMAT, NUMA balancing on",
        machine: two_socket,
    },
    NamedFixture {
        name: "dram-cxl-pmem",
        description: "the QEMU test bed (tests/vm) on Linux 6.12: 3 nodes x 512 MiB, CPUs \
                      on node 0, SLIT 0-1:20 0-2:30 1-2:20, HMAT 80/180/350 ns and \
                      20000/8000/4000 MB/s, kernel tiers 4={0} 25={1} 98={2}, kernel demotion \
                      off",
        machine: dram_cxl_pmem,
    },
    NamedFixture {
        name: "two-socket-cxl",
        description: "2 sockets (nodes 0, 1: CPUs + 64 GiB DRAM) each with a CPU-less 128 GiB \
                      CXL node (2 near socket 0, 3 near socket 1) onlined by dax/kmem, no HMAT, \
                      kernel tiers 4={0,1} 22={2,3}",
        machine: two_socket_cxl,
    },
    NamedFixture {
        name: "offline-node",
        description: "4 possible nodes, node 2 offline (online 0-1,3): two CPU+DRAM sockets and \
                      a CPU-less CXL node 3 (a hot-removed node 2 has no sysfs directory); \
                      kernel demotion on, numa_balancing=2",
        machine: offline_node,
    },
    NamedFixture {
        name: "old-kernel",
        description: "a 5.10-era kernel: node 0 CPUs+DRAM, node 1 CPU-less PMEM via dax/kmem; no \
                      memory_tiering, no demotion_enabled, no HMAT, no pgdemote counters",
        machine: old_kernel,
    },
];

/// A committed tree captured from a machine booted in the test bed (`tests/vm/topologies/`)
/// rather than written by a builder: the guest's own sysfs files and, in
/// `expected/kernel-log.txt`, the kernel's `Demotion targets` and `Fallback order` lines of
/// the same boot.
#[derive(Clone, Copy, Debug)]
pub struct CapturedFixture {
    /// The directory name under `fixtures/`.
    pub name: &'static str,
    /// The test-bed scenario that boots the machine and captures it.
    pub scenario: &'static str,
    /// What machine it is (one line, copied into `fixtures/README.md`).
    pub description: &'static str,
}

/// Every captured fixture, in the order of `fixtures/README.md`.
pub const CAPTURED: &[CapturedFixture] = &[
    CapturedFixture {
        name: "vm-tie",
        scenario: "topo-tie",
        description: "CPUs and DRAM on node 0, memory-only DRAM on node 2, CPU-less slow nodes 1 \
                      and 3; from node 2, nodes 1 and 3 tie in find_next_best_node, with equal \
                      boot-time loads",
    },
    CapturedFixture {
        name: "vm-tie3",
        scenario: "topo-tie3",
        description: "CPUs and DRAM on node 0, memory-only DRAM on nodes 1 and 3, a CPU-less node 2 \
                      faster than DRAM; from node 2, nodes 0, 1 and 3 tie and the boot-time \
                      node_load picks node 1, not the lowest number",
    },
    CapturedFixture {
        name: "vm-four-tiers",
        scenario: "topo-four-tiers",
        description: "CPUs and DRAM on node 0, CPU-less nodes 1-3 ever slower by HMAT: four \
                      tiers, each node demoting to the next",
    },
    CapturedFixture {
        name: "vm-two-socket-cxl",
        scenario: "topo-two-socket-cxl",
        description: "two sockets (nodes 0, 1) each with its own CPU-less CXL node (2, 3), HMAT \
                      from both sockets",
    },
    CapturedFixture {
        name: "vm-hbm",
        scenario: "topo-hbm",
        description: "a CPU-less node faster than DRAM (HBM, node 1) above node 0's DRAM and a slow \
                      node 2",
    },
    CapturedFixture {
        name: "vm-dram-mismatch",
        scenario: "topo-dram-mismatch",
        description: "two CPU nodes whose HMAT differs by more than 10%: the kernel gives up on \
                      HMAT and builds one tier",
    },
    CapturedFixture {
        name: "vm-hotplug",
        scenario: "topo-hotplug",
        description: "CPUs and DRAM on node 0, a CPU-less node 1 faster than DRAM, memory-only \
                      DRAM on node 2 and node 3's DRAM added by ACPI memory hotplug, which \
                      rebuilt the zonelists with the CPUs counted; `dev/kmsg` holds the \
                      kernel's zonelist lines, which tierd reads",
    },
    CapturedFixture {
        name: "vm-no-hmat",
        scenario: "topo-no-hmat",
        description: "the test bed's three nodes without HMAT: one tier",
    },
];

/// The committed fixture called `name`.
pub fn named(name: &str) -> Option<FixtureMachine> {
    FIXTURES.iter().find(|f| f.name == name).map(|f| (f.machine)())
}

/// `fixtures/` at the repository root, where the committed trees live.
pub fn committed_fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

/// The text of `fixtures/README.md`.
pub fn readme_text() -> String {
    let mut s = String::from(
        "# Fixture trees\n\n\
         Fake sysfs/procfs trees of whole machines, one directory each, holding `sys/` and \
         `proc/`\nside by side with only the files tierd reads, in the kernel's formats. Read \
         one with\n`SysRoot::under(\"fixtures/NAME\")` (tierd-linux) or \
         `--sysfs-root fixtures/NAME`.\n\n\
         Generated by `crates/tierd-linux/src/fixture.rs` (`FIXTURES`); do not edit by hand. A \
         test fails\nwhen a committed `sys/` or `proc/` tree, or this file, differs from the \
         builder. Regenerate with:\n\n\
         ```sh\nTIERD_BLESS_FIXTURES=1 cargo test -p tierd-linux committed_fixtures\n```\n\n",
    );
    for f in FIXTURES {
        let _ = writeln!(s, "- `{}`: {}.", f.name, f.description);
    }
    s.push_str(
        "\n## Captured from the test bed\n\n\
         Trees copied from Linux 6.12 booted in QEMU by the `tests/vm/topologies/` scenarios \
         (`CAPTURED`):\nthe guest's own files, node `meminfo` included (and, where the \
         zonelists were rebuilt after boot,\nthe kernel log's zonelist lines as `dev/kmsg`), \
         and in \
         `expected/kernel-log.txt` the kernel's\n`Demotion targets` and `Fallback order` \
         lines of the same boot. The scenario fails when a later boot\ncaptures other files \
         (`meminfo` aside); rewrite them with \
         `TIERD_VM_BLESS=1 tests/vm/run.sh SCENARIO`.\n\n",
    );
    for f in CAPTURED {
        let _ = writeln!(s, "- `{}` (`{}`): {}.", f.name, f.scenario, f.description);
    }
    s
}

/// Vmstat counters of a kernel with demotion and promotion (6.x).
const VMSTAT_6X: &[(&str, u64)] = &[
    ("nr_free_pages", 0),
    ("pgpromote_success", 0),
    ("pswpin", 0),
    ("pswpout", 0),
    ("pgdemote_kswapd", 0),
    ("pgdemote_direct", 0),
    ("pgmigrate_success", 0),
    ("pgmigrate_fail", 0),
];

fn vmstat_6x(free_pages: u64) -> Vec<(&'static str, u64)> {
    VMSTAT_6X.iter().map(|&(k, v)| (k, if k == "nr_free_pages" { free_pages } else { v })).collect()
}

fn laptop() -> FixtureMachine {
    FixtureMachine::new()
        .node(FixtureNode::new(0).cpu().memory(16 * GIB, 9 * GIB))
        .kernel_tier(4, "0")
        .demotion_enabled(false)
        .numa_balancing(0)
        .vmstat(&vmstat_6x(9 * GIB / 4096))
}

fn two_socket() -> FixtureMachine {
    FixtureMachine::new()
        .node(FixtureNode::new(0).cpu().memory(64 * GIB, 40 * GIB))
        .node(FixtureNode::new(1).cpu().memory(64 * GIB, 48 * GIB))
        .distance(0, 1, 21)
        .kernel_tier(4, "0-1")
        .demotion_enabled(false)
        .numa_balancing(1)
        .vmstat(&vmstat_6x(88 * GIB / 4096))
}

/// The test bed: tier ids are the kernel's `mt_perf_to_adistance()` arithmetic with node 0 as
/// the DRAM reference (`MEMTIER_ADISTANCE_DRAM` = 4 * 128 + 64 = 576, tier = adist >> 7):
/// node 0: 576 -> 4; node 1: 576 * 360 / 160 * 40000 / 16000 = 3240 -> 25;
/// node 2: 576 * 700 / 160 * 40000 / 8000 = 12600 -> 98.
fn dram_cxl_pmem() -> FixtureMachine {
    let node_vmstat = |free: u64| {
        vec![
            ("nr_free_pages", free / 4096),
            ("pgpromote_success", 0),
            ("pgdemote_kswapd", 0),
            ("pgdemote_direct", 0),
        ]
    };
    FixtureMachine::new()
        .node(
            FixtureNode::new(0)
                .cpu()
                .memory(512 * MIB, 300 * MIB)
                .hmat(symmetric_hmat(80, 20000))
                .vmstat(&node_vmstat(300 * MIB)),
        )
        .node(
            FixtureNode::new(1)
                .memory(512 * MIB, 500 * MIB)
                .hmat(symmetric_hmat(180, 8000))
                .vmstat(&node_vmstat(500 * MIB)),
        )
        .node(
            FixtureNode::new(2)
                .memory(512 * MIB, 510 * MIB)
                .hmat(symmetric_hmat(350, 4000))
                .vmstat(&node_vmstat(510 * MIB)),
        )
        .distance(0, 1, 20)
        .distance(0, 2, 30)
        .distance(1, 2, 20)
        .kernel_tier(4, "0")
        .kernel_tier(25, "1")
        .kernel_tier(98, "2")
        .demotion_enabled(false)
        .numa_balancing(1)
        .vmstat(&vmstat_6x(1310 * MIB / 4096))
}

/// CXL nodes onlined by dax/kmem without HMAT get `MEMTIER_DEFAULT_DAX_ADISTANCE`
/// (5 * 576 = 2880 -> tier 22).
fn two_socket_cxl() -> FixtureMachine {
    FixtureMachine::new()
        .node(FixtureNode::new(0).cpu().memory(64 * GIB, 30 * GIB))
        .node(FixtureNode::new(1).cpu().memory(64 * GIB, 32 * GIB))
        .node(FixtureNode::new(2).memory(128 * GIB, 120 * GIB))
        .node(FixtureNode::new(3).memory(128 * GIB, 126 * GIB))
        .distance(0, 1, 21)
        .distance(0, 2, 24)
        .distance(0, 3, 34)
        .distance(1, 2, 34)
        .distance(1, 3, 24)
        .distance(2, 3, 44)
        .kernel_tier(4, "0-1")
        .kernel_tier(22, "2-3")
        .demotion_enabled(false)
        .numa_balancing(1)
        .vmstat(&vmstat_6x(308 * GIB / 4096))
}

fn offline_node() -> FixtureMachine {
    FixtureMachine::new()
        .node(FixtureNode::new(0).cpu().memory(32 * GIB, 20 * GIB))
        .node(FixtureNode::new(1).cpu().memory(32 * GIB, 24 * GIB))
        .node(FixtureNode::new(2).offline())
        .node(FixtureNode::new(3).memory(64 * GIB, 60 * GIB))
        .possible("0-3")
        .distance(0, 1, 21)
        .distance(0, 3, 24)
        .distance(1, 3, 34)
        .kernel_tier(4, "0-1")
        .kernel_tier(22, "3")
        .demotion_enabled(true)
        .numa_balancing(2)
        .vmstat(&vmstat_6x(104 * GIB / 4096))
}

fn old_kernel() -> FixtureMachine {
    FixtureMachine::new()
        .node(FixtureNode::new(0).cpu().memory(32 * GIB, 16 * GIB))
        .node(FixtureNode::new(1).memory(128 * GIB, 127 * GIB))
        .distance(0, 1, 17)
        .numa_balancing(1)
        .vmstat(&[
            ("nr_free_pages", 143 * GIB / 4096),
            ("pswpin", 0),
            ("pswpout", 0),
            ("pgmigrate_success", 0),
            ("pgmigrate_fail", 0),
        ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read_topology;

    /// Every file under `dir`, by path relative to `dir`.
    fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
        fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for entry in entries {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(base, &path, out);
                } else {
                    let rel = path.strip_prefix(base).unwrap().to_path_buf();
                    out.insert(rel, std::fs::read(&path).unwrap());
                }
            }
        }
        let mut out = BTreeMap::new();
        for sub in ["sys", "proc"] {
            walk(dir, &dir.join(sub), &mut out);
        }
        out
    }

    /// The committed trees under `fixtures/` are exactly what the builders write. With
    /// `TIERD_BLESS_FIXTURES=1` the test rewrites them (and `fixtures/README.md`) instead.
    #[test]
    fn committed_fixtures_match_their_builders() {
        let committed = committed_fixtures_dir();
        let bless = std::env::var_os("TIERD_BLESS_FIXTURES").is_some_and(|v| v == "1");
        if bless {
            for f in FIXTURES {
                let dir = committed.join(f.name);
                for sub in ["sys", "proc"] {
                    let _ = std::fs::remove_dir_all(dir.join(sub));
                }
                (f.machine)().write_to(&dir).unwrap();
            }
            std::fs::write(committed.join("README.md"), readme_text()).unwrap();
        }
        let readme = std::fs::read_to_string(committed.join("README.md")).unwrap_or_default();
        assert_eq!(readme, readme_text(), "fixtures/README.md is stale: {HOW}");
        for f in FIXTURES {
            let fresh = tempfile::tempdir().unwrap();
            (f.machine)().write_to(fresh.path()).unwrap();
            let want = tree(fresh.path());
            let have = tree(&committed.join(f.name));
            for (path, bytes) in &want {
                match have.get(path) {
                    None => panic!("fixtures/{}/{} is missing: {HOW}", f.name, path.display()),
                    Some(b) => assert!(
                        b == bytes,
                        "fixtures/{}/{} differs from its builder: {HOW}",
                        f.name,
                        path.display()
                    ),
                }
            }
            if let Some(path) = have.keys().find(|p| !want.contains_key(*p)) {
                panic!(
                    "fixtures/{}/{} is not written by the builder: {HOW}",
                    f.name,
                    path.display()
                );
            }
        }
    }

    const HOW: &str = "regenerate with `TIERD_BLESS_FIXTURES=1 cargo test -p tierd-linux \
                       committed_fixtures` and review the diff";

    #[test]
    fn every_named_fixture_reads_back_as_described() {
        for f in FIXTURES {
            let machine = (f.machine)();
            let fx = machine.build().unwrap();
            let topo = read_topology(fx.root()).unwrap();
            assert_eq!(topo, machine.expected_topology(), "fixture {}", f.name);
        }
    }

    /// The kernel tiers of the HMAT and dax/kmem fixtures are the ones Linux builds: tier id =
    /// abstract distance >> `MEMTIER_CHUNK_BITS`, the abstract distance from
    /// `mt_perf_to_adistance()` (integer arithmetic, left to right, node 0 as the DRAM
    /// reference) or, for dax/kmem nodes without HMAT, `MEMTIER_DEFAULT_DAX_ADISTANCE`.
    #[test]
    fn kernel_tier_ids_follow_the_kernels_arithmetic() {
        const MEMTIER_CHUNK_BITS: u32 = 7;
        const MEMTIER_ADISTANCE_DRAM: u64 =
            (4 << MEMTIER_CHUNK_BITS) + (1 << (MEMTIER_CHUNK_BITS - 1));
        const MEMTIER_DEFAULT_DAX_ADISTANCE: u64 = MEMTIER_ADISTANCE_DRAM * 5;
        let tier = |adist: u64| u32::try_from(adist >> MEMTIER_CHUNK_BITS).unwrap();

        let t = named("dram-cxl-pmem").unwrap().expected_topology();
        let perf = |n: &NodeInfo| {
            let h = n.hmat.unwrap();
            (
                h.read_latency_ns.unwrap() + h.write_latency_ns.unwrap(),
                h.read_bandwidth_mbps.unwrap() + h.write_bandwidth_mbps.unwrap(),
            )
        };
        let (dram_lat, dram_bw) = perf(&t.nodes[0]);
        let mut want: BTreeMap<u32, NodeMask> = BTreeMap::new();
        for node in &t.nodes {
            let (lat, bw) = perf(node);
            let adist = MEMTIER_ADISTANCE_DRAM * lat / dram_lat * dram_bw / bw;
            want.entry(tier(adist)).or_default().insert(node.id);
        }
        let have: BTreeMap<u32, NodeMask> =
            t.kernel_tiers.unwrap().into_iter().map(|k| (k.id, k.nodes)).collect();
        assert_eq!(have, want);
        assert_eq!(want.keys().copied().collect::<Vec<_>>(), [4, 25, 98]);

        let t = named("two-socket-cxl").unwrap().expected_topology();
        let ids: Vec<u32> = t.kernel_tiers.unwrap().iter().map(|k| k.id).collect();
        assert_eq!(ids, [tier(MEMTIER_ADISTANCE_DRAM), tier(MEMTIER_DEFAULT_DAX_ADISTANCE)]);
    }

    /// Every directory under `fixtures/` is a built or a captured fixture, and every captured
    /// one has its tree and the kernel's lines.
    #[test]
    fn every_fixture_directory_is_listed() {
        let committed = committed_fixtures_dir();
        for f in CAPTURED {
            let dir = committed.join(f.name);
            assert!(dir.join("sys/devices/system/node/online").is_file(), "fixtures/{}", f.name);
            let log = std::fs::read_to_string(dir.join("expected/kernel-log.txt")).unwrap();
            assert!(log.contains("Fallback order for Node 0: "), "fixtures/{}", f.name);
        }
        for entry in std::fs::read_dir(&committed).unwrap() {
            let path = entry.unwrap().path();
            if !path.is_dir() {
                continue;
            }
            let name = path.file_name().unwrap().to_str().unwrap();
            assert!(
                FIXTURES.iter().any(|f| f.name == name) || CAPTURED.iter().any(|f| f.name == name),
                "fixtures/{name} is neither in FIXTURES nor in CAPTURED"
            );
        }
    }

    #[test]
    fn names_are_unique_and_found() {
        let mut names: Vec<_> = FIXTURES.iter().map(|f| f.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), FIXTURES.len());
        assert!(named("dram-cxl-pmem").is_some());
        assert!(named("no-such-machine").is_none());
    }

    #[test]
    fn files_use_the_kernels_formats() {
        let files: BTreeMap<PathBuf, String> =
            named("dram-cxl-pmem").unwrap().files().into_iter().collect();
        let get = |p: &str| files.get(Path::new(p)).map(String::as_str);
        assert_eq!(get("sys/devices/system/node/possible"), Some("0-2\n"));
        assert_eq!(get("sys/devices/system/node/has_cpu"), Some("0\n"));
        assert_eq!(get("sys/devices/system/node/node0/distance"), Some("10 20 30\n"));
        assert_eq!(
            get("sys/devices/system/node/node1/access1/initiators/read_latency"),
            Some("180\n")
        );
        assert_eq!(get("sys/devices/virtual/memory_tiering/memory_tier98/nodelist"), Some("2\n"));
        assert_eq!(get("sys/kernel/mm/numa/demotion_enabled"), Some("false\n"));
        let meminfo = get("sys/devices/system/node/node0/meminfo").unwrap();
        assert!(meminfo.starts_with("Node 0 MemTotal:         524288 kB\n"), "{meminfo}");
        assert!(meminfo.contains("Node 0 HugePages_Total:     0\n"), "{meminfo}");
    }

    #[test]
    fn offline_nodes_have_no_directory_and_are_only_possible() {
        let m = named("offline-node").unwrap();
        let files = m.files();
        assert!(files.iter().all(|(p, _)| !p.starts_with("sys/devices/system/node/node2")));
        let t = m.expected_topology();
        assert_eq!(t.possible.to_string(), "0-3");
        assert_eq!(t.online.to_string(), "0-1,3");
    }

    #[test]
    fn fixture_write_and_remove_edit_the_tree() {
        let fx = named("laptop").unwrap().build().unwrap();
        fx.write("sys/kernel/mm/numa/demotion_enabled", "true\n").unwrap();
        assert_eq!(read_topology(fx.root()).unwrap().demotion_enabled, Some(true));
        fx.remove("sys/kernel/mm/numa").unwrap();
        assert_eq!(read_topology(fx.root()).unwrap().demotion_enabled, None);
        assert!(fx.path().join("sys").is_dir());
    }
}
