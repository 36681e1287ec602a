//! Text and JSON renderings of the topology, the path table and the automatic paths.
//! JSON field names are stable: scripts read them.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;
use tierd_core::auto::AutoPaths;
use tierd_core::{NodeId, PathGraph, Topology};

use crate::paths::PathsView;

/// One tier as reported.
#[derive(Debug, Serialize)]
pub struct TierReport {
    /// The kernel's `memory_tierN` number, when known or computed.
    pub id: Option<u32>,
    /// The abstract distance tierd computed (HMAT source only).
    pub adistance: Option<u32>,
    /// The tier's nodes (nodelist).
    pub nodes: String,
}

/// Demotion targets of one node as the kernel computes them.
#[derive(Debug, Serialize)]
pub struct TargetsReport {
    /// The node.
    pub node: u32,
    /// `preferred` (nodelist; empty = terminal).
    pub preferred: String,
    /// `fallback`: all lower tiers (nodelist).
    pub fallback: String,
}

/// The automatic default as reported.
#[derive(Debug, Serialize)]
pub struct AutoReport {
    /// Where the tiers came from.
    pub source: String,
    /// Fastest first.
    pub tiers: Vec<TierReport>,
    /// Why tierd fell back or gave up somewhere.
    pub notes: Vec<String>,
    /// Per node.
    pub targets: Vec<TargetsReport>,
    /// The kernel's own `dmesg` lines for these targets.
    pub kernel_lines: Vec<String>,
    /// The kernel's log lines for the zonelists whose `node_load[]` breaks ties.
    pub zonelist_lines: Vec<String>,
    /// Where they come from: the kernel log, or replayed as built at boot.
    pub zonelist_source: String,
    /// The resulting path graph (`{"0": {"target": 1, "fallback": "2"}}`).
    pub graph: PathGraph,
}

/// `tierd topology --json`.
#[derive(Debug, Serialize)]
pub struct TopologyReport {
    /// The machine as read.
    pub topology: Topology,
    /// The tiers and demotion targets tierd derives.
    pub auto: AutoReport,
}

fn auto_report(auto: &AutoPaths, graph: &PathGraph) -> AutoReport {
    AutoReport {
        source: auto.tiers.source.to_string(),
        tiers: auto
            .tiers
            .tiers
            .iter()
            .map(|t| TierReport { id: t.id, adistance: t.adistance, nodes: t.nodes.to_string() })
            .collect(),
        notes: auto.tiers.notes.clone(),
        targets: auto
            .targets
            .iter()
            .map(|(n, t)| TargetsReport {
                node: u32::from(*n),
                preferred: t.preferred.to_string(),
                fallback: t.fallback.to_string(),
            })
            .collect(),
        kernel_lines: auto.kernel_lines(),
        zonelist_lines: auto.zonelist_lines(),
        zonelist_source: auto.zonelist_source.to_string(),
        graph: graph.clone(),
    }
}

impl TopologyReport {
    /// Reads the report off a topology.
    pub fn new(topology: &Topology) -> TopologyReport {
        let auto = tierd_core::auto::auto(topology);
        let graph = auto.to_graph();
        TopologyReport { topology: topology.clone(), auto: auto_report(&auto, &graph) }
    }

    /// The `numactl -H`-like text.
    pub fn to_text(&self) -> String {
        let t = &self.topology;
        let mut s = String::new();
        let _ = writeln!(s, "available: {} nodes ({})", t.online.len(), t.online);
        if t.possible != t.online {
            let _ =
                writeln!(s, "possible: {} (offline: {})", t.possible, t.possible.minus(&t.online));
        }
        for n in &t.nodes {
            let _ = writeln!(
                s,
                "node {} cpus: {}   memory: {}",
                n.id,
                if n.has_cpu { "yes" } else { "none" },
                if n.has_memory { "yes" } else { "none" }
            );
            let _ = writeln!(s, "node {} size: {}", n.id, mib(n.mem_total_bytes));
            let _ = writeln!(s, "node {} free: {}", n.id, mib(n.mem_free_bytes));
        }
        let _ = writeln!(s, "node distances:");
        let _ = write!(s, "node");
        for n in &t.nodes {
            let _ = write!(s, "{:>5}", n.id.index());
        }
        s.push('\n');
        for n in &t.nodes {
            let _ = write!(s, "{:>3}:", n.id.index());
            for d in &n.distance {
                let _ = write!(s, "{d:>5}");
            }
            s.push('\n');
        }
        if t.nodes.iter().any(|n| n.hmat.is_some()) {
            let _ = writeln!(s, "memory performance (HMAT, from the nearest CPU):");
            let _ =
                writeln!(s, "node  read-latency  write-latency  read-bandwidth  write-bandwidth");
            for n in &t.nodes {
                if let Some(h) = &n.hmat {
                    let _ = writeln!(
                        s,
                        "{:>4}  {:>12}  {:>13}  {:>14}  {:>15}",
                        n.id.index(),
                        fig(h.read_latency_ns, "ns"),
                        fig(h.write_latency_ns, "ns"),
                        fig(h.read_bandwidth_mbps, "MB/s"),
                        fig(h.write_bandwidth_mbps, "MB/s"),
                    );
                }
            }
        }
        match &t.kernel_tiers {
            Some(tiers) => {
                let _ = writeln!(s, "kernel memory tiers:");
                for tier in tiers {
                    let _ = writeln!(s, "  memory_tier{}: {}", tier.id, tier.nodes);
                }
            }
            None => {
                let _ = writeln!(
                    s,
                    "kernel memory tiers: none (no memory_tiering in sysfs: kernel before 6.1)"
                );
            }
        }
        let a = &self.auto;
        let tiers: Vec<&str> = a.tiers.iter().map(|t| t.nodes.as_str()).collect();
        let _ = writeln!(s, "tierd tiers ({}): {}", a.source, tiers.join(" | "));
        for note in &a.notes {
            let _ = writeln!(s, "  note: {note}");
        }
        let _ = writeln!(
            s,
            "kernel demotion: {}   numa_balancing: {}",
            t.demotion_enabled
                .map_or("unknown (no demotion_enabled file)".to_string(), |d| d.to_string()),
            t.numa_balancing.map_or("unknown".to_string(), |b| match b {
                2 => "2 (memory tiering: the kernel promotes pages itself)".to_string(),
                b => b.to_string(),
            })
        );
        if t.demotion_enabled == Some(true) {
            let _ = writeln!(
                s,
                "  warning: the kernel demotes pages itself; when tierd demotes, turn that off \
                 (echo false > /sys/kernel/mm/numa/demotion_enabled) or the two fight"
            );
        }
        s
    }
}

fn mib(bytes: Option<u64>) -> String {
    bytes.map_or("unknown".to_string(), |b| format!("{} MiB", b / (1024 * 1024)))
}

fn fig(v: Option<u64>, unit: &str) -> String {
    v.map_or("-".to_string(), |v| format!("{v} {unit}"))
}

/// `tierd path show` as a table.
pub fn paths_text(view: &PathsView, state: Option<&Path>) -> String {
    let mut s = String::from("node  migration_path  next  fallback  online\n");
    for r in &view.nodes {
        let _ = writeln!(
            s,
            "{:>4}  {:>14}  {:>4}  {:<8}  {}",
            r.node,
            r.stored,
            r.next,
            if r.fallback.is_empty() { "-" } else { &r.fallback },
            if r.online { "yes" } else { "no" }
        );
    }
    match state {
        Some(p) => {
            let _ = writeln!(s, "(state: {})", p.display());
        }
        None => s.push_str(
            "(no state file yet: every node is terminal; `tierd path auto --apply` sets the kernel's default)\n",
        ),
    }
    s
}

/// `tierd path auto` as text: the kernel's own lines, then the graph tierd derives.
pub fn auto_text(auto: &AutoPaths, graph: &PathGraph) -> String {
    let mut s = String::new();
    for line in auto.kernel_lines() {
        let _ = writeln!(s, "{line}");
    }
    let tiers: Vec<String> = auto.tiers.tiers.iter().map(|t| t.nodes.to_string()).collect();
    let _ = writeln!(s, "\ntiers ({}): {}", auto.tiers.source, tiers.join(" | "));
    for note in &auto.tiers.notes {
        let _ = writeln!(s, "note: {note}");
    }
    let _ = writeln!(s, "paths:");
    let nodes: Vec<NodeId> = auto.targets.keys().copied().collect();
    for n in nodes {
        let e = graph.entry(n);
        match e.target {
            Some(t) if e.fallback.is_empty() => {
                let _ = writeln!(s, "  {n} -> {t}");
            }
            Some(t) => {
                let _ = writeln!(s, "  {n} -> {t} (fallback {})", e.fallback);
            }
            None => {
                let _ = writeln!(s, "  {n} terminal");
            }
        }
    }
    let _ = writeln!(
        s,
        "zonelists ({}), whose node_load breaks ties between targets:",
        auto.zonelist_source
    );
    for line in auto.zonelist_lines() {
        let _ = writeln!(s, "  {line}");
    }
    s
}

/// `tierd path auto --json`.
pub fn auto_json(auto: &AutoPaths, graph: &PathGraph) -> AutoReport {
    auto_report(auto, graph)
}
