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
    list.parse()
        .unwrap_or_else(|e| panic!("fixture nodelist {list:?}: {e}"))
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
        self.kernel_tiers
            .get_or_insert_with(BTreeMap::new)
            .insert(id, mask(nodelist));
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
        self.nodes
            .values()
            .filter(|n| n.online)
            .map(|n| n.id)
            .collect()
    }

    fn possible_mask(&self) -> NodeMask {
        self.possible
            .unwrap_or_else(|| self.nodes.keys().copied().collect())
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
        let has_memory = if self.legacy_has_normal_memory {
            "has_normal_memory"
        } else {
            "has_memory"
        };
        put(root.join(has_memory), line(with(|n| n.has_memory)));

        for node in self.online_nodes() {
            let dir = rel.node_dir(node.id);
            let row: Vec<String> = online
                .iter()
                .map(|b| self.distance_of(node.id, b).to_string())
                .collect();
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
        let dir = tempfile::Builder::new()
            .prefix("tierd-fixture-")
            .tempdir()?;
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
            kernel_tiers: self.kernel_tiers.as_ref().map(|tiers| {
                tiers
                    .iter()
                    .map(|(&id, &nodes)| KernelTier { id, nodes })
                    .collect()
            }),
            demotion_enabled: self.demotion_enabled,
            numa_balancing: self.numa_balancing,
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
        let _ = writeln!(
            s,
            "Node {id} {:<16}{:>8} kB",
            format!("{key}:"),
            bytes / 1024
        );
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
        if path.is_dir() {
            std::fs::remove_dir_all(path)
        } else {
            std::fs::remove_file(path)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read_topology;

    fn test_bed() -> FixtureMachine {
        FixtureMachine::new()
            .node(
                FixtureNode::new(0)
                    .cpu()
                    .memory(512 << 20, 300 << 20)
                    .hmat(symmetric_hmat(80, 20000)),
            )
            .node(
                FixtureNode::new(1)
                    .memory(512 << 20, 500 << 20)
                    .hmat(symmetric_hmat(180, 8000)),
            )
            .node(
                FixtureNode::new(2)
                    .memory(512 << 20, 510 << 20)
                    .hmat(symmetric_hmat(350, 4000)),
            )
            .node(FixtureNode::new(3).offline())
            .distance(0, 1, 20)
            .distance(0, 2, 30)
            .distance(1, 2, 20)
            .kernel_tier(4, "0")
            .kernel_tier(25, "1")
            .kernel_tier(98, "2")
            .demotion_enabled(false)
            .numa_balancing(1)
            .vmstat(&[("pgdemote_kswapd", 0)])
    }

    #[test]
    fn a_machine_reads_back_as_described() {
        let machine = test_bed();
        let fx = machine.build().unwrap();
        assert_eq!(
            read_topology(fx.root()).unwrap(),
            machine.expected_topology()
        );
        let bare = FixtureMachine::new().node(FixtureNode::new(0).cpu().memory(1 << 30, 1 << 30));
        let fx = bare.build().unwrap();
        assert_eq!(read_topology(fx.root()).unwrap(), bare.expected_topology());
    }

    #[test]
    fn files_use_the_kernels_formats() {
        let files: BTreeMap<PathBuf, String> = test_bed().files().into_iter().collect();
        let get = |p: &str| files.get(Path::new(p)).map(String::as_str);
        assert_eq!(get("sys/devices/system/node/possible"), Some("0-3\n"));
        assert_eq!(get("sys/devices/system/node/online"), Some("0-2\n"));
        assert_eq!(get("sys/devices/system/node/has_cpu"), Some("0\n"));
        assert_eq!(
            get("sys/devices/system/node/node0/distance"),
            Some("10 20 30\n")
        );
        assert_eq!(
            get("sys/devices/system/node/node1/access1/initiators/read_latency"),
            Some("180\n")
        );
        assert_eq!(
            get("sys/devices/virtual/memory_tiering/memory_tier98/nodelist"),
            Some("2\n")
        );
        assert_eq!(get("sys/kernel/mm/numa/demotion_enabled"), Some("false\n"));
        let meminfo = get("sys/devices/system/node/node0/meminfo").unwrap();
        assert!(
            meminfo.starts_with("Node 0 MemTotal:         524288 kB\n"),
            "{meminfo}"
        );
        assert!(
            meminfo.contains("Node 0 HugePages_Free:      0\n"),
            "{meminfo}"
        );
        assert!(
            files
                .keys()
                .all(|p| !p.starts_with("sys/devices/system/node/node3"))
        );
    }

    #[test]
    fn fixture_write_and_remove_edit_the_tree() {
        let fx = test_bed().build().unwrap();
        fx.write("sys/kernel/mm/numa/demotion_enabled", "true\n")
            .unwrap();
        assert_eq!(
            read_topology(fx.root()).unwrap().demotion_enabled,
            Some(true)
        );
        fx.remove("sys/kernel/mm/numa").unwrap();
        assert_eq!(read_topology(fx.root()).unwrap().demotion_enabled, None);
        assert!(fx.path().join("sys").is_dir());
    }
}
