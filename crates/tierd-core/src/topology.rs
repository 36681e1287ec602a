//! The machine as the kernel describes it: which nodes exist, which are online, which have
//! CPUs and memory, how far apart they are, how fast their memory is (HMAT), and which memory
//! tiers the kernel built.
//!
//! This is plain data. `tierd-linux` fills it from sysfs and procfs; the simulator builds it
//! from a scenario. Every optional kernel file is an `Option`: absent is not zero.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::node::{NodeId, NodeMask};

/// HMAT performance of a memory node as seen from its nearest CPU initiator
/// (`nodeN/access1/initiators/*`, or `access0` on kernels that print only that class): the
/// CPU class is what the kernel's tiering uses (`hmat_calculate_adistance`). Each figure is
/// absent when the kernel does not print it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hmat {
    /// `read_latency`, nanoseconds.
    pub read_latency_ns: Option<u64>,
    /// `write_latency`, nanoseconds.
    pub write_latency_ns: Option<u64>,
    /// `read_bandwidth`, MB/s.
    pub read_bandwidth_mbps: Option<u64>,
    /// `write_bandwidth`, MB/s.
    pub write_bandwidth_mbps: Option<u64>,
}

impl Hmat {
    /// Whether all four figures are present, which the kernel requires before it computes an
    /// abstract distance from them (`mt_perf_to_adistance`).
    pub fn is_complete(&self) -> bool {
        self.read_latency_ns.is_some()
            && self.write_latency_ns.is_some()
            && self.read_bandwidth_mbps.is_some()
            && self.write_bandwidth_mbps.is_some()
    }
}

/// One NUMA node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// The node's id.
    pub id: NodeId,
    /// Listed in `online`.
    pub online: bool,
    /// Listed in `has_cpu`.
    pub has_cpu: bool,
    /// Listed in `has_memory` (or `has_normal_memory` on kernels without the former).
    pub has_memory: bool,
    /// `nodeN/distance`: the SLIT row, indexed by the position of the target in
    /// [`Topology::distance`]'s column order (the online nodes, ascending).
    pub distance: Vec<u32>,
    /// `MemTotal` from `nodeN/meminfo`, bytes.
    pub mem_total_bytes: Option<u64>,
    /// `MemFree` from `nodeN/meminfo`, bytes.
    pub mem_free_bytes: Option<u64>,
    /// HMAT `access0` performance, when the kernel exposes it.
    pub hmat: Option<Hmat>,
}

/// A memory tier the kernel built (`/sys/devices/virtual/memory_tiering/memory_tierN`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelTier {
    /// The tier's id, the `N` of `memory_tierN` (the kernel's abstract distance chunk).
    pub id: u32,
    /// The tier's `nodelist`.
    pub nodes: NodeMask,
}

/// The whole machine.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Topology {
    /// `possible`: node ids the kernel may ever bring online.
    pub possible: NodeMask,
    /// `online`.
    pub online: NodeMask,
    /// One entry per online node, ascending by id.
    pub nodes: Vec<NodeInfo>,
    /// The kernel's memory tiers, fastest first; `None` on kernels before 6.1.
    pub kernel_tiers: Option<Vec<KernelTier>>,
    /// `/sys/kernel/mm/numa/demotion_enabled`; `None` when the file is absent.
    pub demotion_enabled: Option<bool>,
    /// `/proc/sys/kernel/numa_balancing` (2 = memory tiering promotion); `None` when absent.
    pub numa_balancing: Option<u32>,
    /// The zonelists of the kernel's last zonelist build, from its log; `None` when the log
    /// could not be read or no longer holds a whole build.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_zonelists: Option<KernelZonelists>,
}

/// What the kernel log says about its zonelist builds: each `__build_all_zonelists` prints a
/// `Fallback order for Node N: ...` line per node it builds, then `Built M zonelists ...`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelZonelists {
    /// The number of whole builds in the log (the boot build, then one per rebuild).
    pub builds: u32,
    /// The fallback order of every node the last build built, ascending by node.
    pub last: BTreeMap<NodeId, Vec<NodeId>>,
}

impl Topology {
    /// The node with id `n`, when it is online.
    pub fn node(&self, n: NodeId) -> Option<&NodeInfo> {
        self.nodes.iter().find(|i| i.id == n)
    }

    /// The SLIT distance from `a` to `b`, when both are online and the kernel printed it.
    pub fn distance(&self, a: NodeId, b: NodeId) -> Option<u32> {
        let col = self.nodes.iter().position(|i| i.id == b)?;
        self.node(a)?.distance.get(col).copied()
    }

    /// Online nodes with memory.
    pub fn memory_nodes(&self) -> NodeMask {
        self.nodes.iter().filter(|i| i.has_memory).map(|i| i.id).collect()
    }

    /// Online nodes with CPUs.
    pub fn cpu_nodes(&self) -> NodeMask {
        self.nodes.iter().filter(|i| i.has_cpu).map(|i| i.id).collect()
    }

    /// A topology of `n` online nodes with the given distance matrix (row-major, `n * n`),
    /// CPU flags and memory sizes, all with memory. Meant for tests, examples and the
    /// simulator.
    pub fn synthetic(distances: &[u32], has_cpu: &[bool], mem_bytes: &[u64]) -> Topology {
        let n = has_cpu.len();
        assert_eq!(distances.len(), n * n, "distance matrix must be n*n");
        assert_eq!(mem_bytes.len(), n, "one memory size per node");
        let nodes: Vec<NodeInfo> = (0..n)
            .map(|i| NodeInfo {
                id: NodeId::new(i).expect("node id in range"),
                online: true,
                has_cpu: has_cpu[i],
                has_memory: true,
                distance: distances[i * n..(i + 1) * n].to_vec(),
                mem_total_bytes: Some(mem_bytes[i]),
                mem_free_bytes: Some(mem_bytes[i]),
                hmat: None,
            })
            .collect();
        let all = NodeMask::first(n);
        Topology { possible: all, online: all, nodes, ..Topology::default() }
    }
}
