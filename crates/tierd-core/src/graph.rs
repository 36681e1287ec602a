//! A whole migration path graph: what `tierd path apply` reads, `tierd path check` explains,
//! the state file stores and [`crate::PathTable::snapshot`] returns.
//!
//! A graph names, for some nodes, a target and optional fallback nodes; every node it does
//! not name is terminal. It is validated as a whole, so the result of applying it never
//! depends on the order of its entries (with single sysfs stores, `0 -> 1` then `1 -> 2` can
//! fail or succeed depending on what was there before).
//!
//! The text form is TOML:
//!
//! ```toml
//! # node 0's cold pages go to node 1, or to node 2 when node 1 is full
//! [node.0]
//! target = 1
//! fallback = "2"
//!
//! [node.1]
//! target = 2
//!
//! [node.2]
//! target = -1   # terminal; the same as leaving node 2 out
//! ```

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};

use serde::{Deserialize, Serialize};

use crate::node::{MAX_NUMNODES, NodeId, NodeMask};

/// One node's entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Entry {
    /// Where cold pages go next; `None` = terminal.
    pub target: Option<NodeId>,
    /// Nodes tried, in ascending order, when the target can't take a page. Ignored for a
    /// terminal node.
    pub fallback: NodeMask,
}

impl Entry {
    /// A terminal entry.
    pub const TERMINAL: Entry = Entry { target: None, fallback: NodeMask::EMPTY };

    /// The nodes this entry sends pages to: the target, then the fallbacks.
    pub fn destinations(&self) -> impl Iterator<Item = NodeId> + '_ {
        let target = self.target;
        target
            .into_iter()
            .chain(self.fallback.iter().filter(move |f| target.is_some() && Some(*f) != target))
    }
}

/// A problem that keeps a graph from being applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GraphError {
    /// A node id beyond the table.
    #[error("node {0} does not exist (the table holds nodes 0..{1})")]
    NoSuchNode(usize, usize),
    /// A target or fallback that is not online.
    #[error("node {target} is not online (named by node {from})")]
    NotOnline {
        /// The node whose entry names it.
        from: NodeId,
        /// The offline node.
        target: NodeId,
    },
    /// A cycle through targets; the first node is repeated at the end.
    #[error("cycle: {}", join_nodes(.0))]
    Cycle(Vec<NodeId>),
    /// A cycle that needs at least one fallback edge.
    #[error("cycle through fallback nodes: {}", join_nodes(.0))]
    FallbackCycle(Vec<NodeId>),
}

/// `0 -> 1 -> 0`.
pub(crate) fn join_nodes(nodes: &[NodeId]) -> String {
    nodes.iter().map(ToString::to_string).collect::<Vec<_>>().join(" -> ")
}

/// Why a graph file did not parse.
#[derive(Debug, thiserror::Error)]
pub enum GraphParseError {
    /// Not valid TOML, or a field of the wrong type or unknown; the message has the line.
    #[error("{0}")]
    Toml(#[from] toml::de::Error),
    /// A `[node.X]` key that is not a node number.
    #[error("`[node.{key}]`: `{key}` is not a node number below {max}", max = MAX_NUMNODES)]
    BadNode {
        /// The key.
        key: String,
    },
    /// A target below -1 or at or above MAX_NUMNODES.
    #[error("`[node.{node}]`: target {target} is out of range (-1 for terminal, or 0..{max})", max = MAX_NUMNODES)]
    BadTarget {
        /// The node.
        node: NodeId,
        /// The value.
        target: i64,
    },
    /// Fallbacks on a terminal node.
    #[error("`[node.{0}]`: fallback nodes need a target (a terminal node sends pages nowhere)")]
    FallbackWithoutTarget(NodeId),
    /// An unsupported format version.
    #[error("unsupported format version {0} (this tierd reads version 1)")]
    Version(u32),
}

/// A migration path graph: see the module documentation.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct PathGraph {
    /// Non-terminal entries only, so that equal graphs compare equal.
    entries: BTreeMap<NodeId, Entry>,
}

impl fmt::Debug for PathGraph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.entries.iter().map(|(n, e)| {
                let target = e.target.map_or(-1, NodeId::as_i32);
                (n.index(), format!("{target} fallback [{}]", e.fallback))
            }))
            .finish()
    }
}

impl PathGraph {
    /// The entry of `node` (terminal when the graph does not name it).
    pub fn entry(&self, node: NodeId) -> Entry {
        self.entries.get(&node).copied().unwrap_or(Entry::TERMINAL)
    }

    /// The fallback nodes of `node`.
    pub fn fallback_of(&self, node: NodeId) -> NodeMask {
        self.entry(node).fallback
    }

    /// Sets `node`'s entry; a terminal entry removes it (and its fallbacks).
    pub fn set(&mut self, node: NodeId, entry: Entry) {
        if entry.target.is_some() {
            self.entries.insert(node, entry);
        } else {
            self.entries.remove(&node);
        }
    }

    /// The non-terminal entries, ascending by node.
    pub fn iter(&self) -> impl Iterator<Item = (NodeId, Entry)> + '_ {
        self.entries.iter().map(|(n, e)| (*n, *e))
    }

    /// Drops entries of nodes at or above `capacity`.
    #[must_use]
    pub fn with_capacity(mut self, capacity: usize) -> PathGraph {
        self.entries.retain(|n, _| n.index() < capacity);
        self
    }

    /// A cycle through `node` over target and fallback edges, as the list of nodes from
    /// `node` back to `node` (rotated to start at its lowest node), or `None`.
    pub fn cycle_through(&self, node: NodeId) -> Option<Vec<NodeId>> {
        find_cycle_through(node, |n| self.entry(n)).map(|(c, _)| c)
    }

    /// Every problem that keeps this graph from replacing a table with `capacity` slots and
    /// the given online set.
    pub fn validate(&self, online: NodeMask, capacity: usize) -> Result<(), Vec<GraphError>> {
        let mut errors = Vec::new();
        for (node, entry) in self.iter() {
            if node.index() >= capacity {
                errors.push(GraphError::NoSuchNode(node.index(), capacity));
                continue;
            }
            for dest in entry.destinations() {
                if !online.contains(dest) {
                    errors.push(GraphError::NotOnline { from: node, target: dest });
                }
            }
        }
        let mut on_reported_cycle = NodeMask::EMPTY;
        for (node, _) in self.iter() {
            if on_reported_cycle.contains(node) {
                continue;
            }
            if let Some((cycle, through_fallback)) = find_cycle_through(node, |n| self.entry(n)) {
                for n in &cycle {
                    on_reported_cycle.insert(*n);
                }
                errors.push(if through_fallback {
                    GraphError::FallbackCycle(cycle)
                } else {
                    GraphError::Cycle(cycle)
                });
            }
        }
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }

    /// Parses the TOML text form.
    pub fn from_toml(text: &str) -> Result<PathGraph, GraphParseError> {
        let file: GraphFile = toml::from_str(text)?;
        if let Some(v) = file.version
            && v != 1
        {
            return Err(GraphParseError::Version(v));
        }
        let mut graph = PathGraph::default();
        for (key, e) in file.node {
            let node = key
                .parse::<usize>()
                .ok()
                .filter(|_| key.bytes().all(|b| b.is_ascii_digit()))
                .and_then(NodeId::new)
                .ok_or_else(|| GraphParseError::BadNode { key: key.clone() })?;
            let target = match e.target {
                -1 => None,
                t => Some(
                    usize::try_from(t)
                        .ok()
                        .and_then(NodeId::new)
                        .ok_or(GraphParseError::BadTarget { node, target: t })?,
                ),
            };
            let fallback = e.fallback.unwrap_or_default();
            if target.is_none() && !fallback.is_empty() {
                return Err(GraphParseError::FallbackWithoutTarget(node));
            }
            graph.set(node, Entry { target, fallback });
        }
        Ok(graph)
    }

    /// The TOML text form, with a header comment; `from_toml(to_toml(g)) == g`.
    pub fn to_toml(&self) -> String {
        let mut out = String::from("version = 1\n");
        for (node, e) in self.iter() {
            let _ =
                write!(out, "\n[node.{node}]\ntarget = {}\n", e.target.map_or(-1, NodeId::as_i32));
            if !e.fallback.is_empty() {
                let _ = writeln!(out, "fallback = \"{}\"", e.fallback);
            }
        }
        out
    }
}

/// A cycle that closes through `node`, as the list of nodes from its lowest node back to
/// that node, and whether it needs a fallback edge (`false`: the targets alone loop). Target
/// edges are searched first, so the message names the loop a user wrote in `migration_path`
/// when there is one. Visits only nodes reachable from `node`, so a store costs what its
/// path is long, not what the table is large.
pub(crate) fn find_cycle_through(
    node: NodeId,
    entry_of: impl Fn(NodeId) -> Entry,
) -> Option<(Vec<NodeId>, bool)> {
    if let Some(c) = shortest_cycle(node, |n| entry_of(n).target.into_iter().collect()) {
        return Some((c, false));
    }
    shortest_cycle(node, |n| entry_of(n).destinations().collect()).map(|c| (c, true))
}

/// Breadth-first search from `node` along `next`; the shortest cycle back to `node`.
fn shortest_cycle(node: NodeId, next: impl Fn(NodeId) -> Vec<NodeId>) -> Option<Vec<NodeId>> {
    let mut parent: BTreeMap<NodeId, NodeId> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([node]);
    while let Some(n) = queue.pop_front() {
        for m in next(n) {
            if m == node {
                // Walk the parents back from `n` to `node`, then close the loop.
                let mut path = vec![n];
                while *path.last().expect("non-empty") != node {
                    path.push(parent[path.last().expect("non-empty")]);
                }
                path.reverse();
                path.push(node);
                return Some(order_cycle(path));
            }
            if let std::collections::btree_map::Entry::Vacant(v) = parent.entry(m) {
                v.insert(n);
                queue.push_back(m);
            }
        }
    }
    None
}

/// Rotates a cycle so that it starts (and ends) at its lowest node, for stable messages.
fn order_cycle(mut path: Vec<NodeId>) -> Vec<NodeId> {
    path.pop();
    let min = path.iter().enumerate().min_by_key(|(_, n)| **n).map_or(0, |(i, _)| i);
    path.rotate_left(min);
    path.push(path[0]);
    path
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct GraphFile {
    version: Option<u32>,
    #[serde(default)]
    node: BTreeMap<String, EntryFile>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct EntryFile {
    target: i64,
    fallback: Option<NodeMask>,
}

impl Serialize for PathGraph {
    /// `{"0": {"target": 1, "fallback": "2"}, ...}`, terminal nodes left out.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.entries.len()))?;
        for (node, e) in self.iter() {
            map.serialize_entry(
                &node.to_string(),
                &EntryFile {
                    target: i64::from(e.target.map_or(-1, NodeId::as_i32)),
                    fallback: Some(e.fallback),
                },
            )?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: usize) -> NodeId {
        NodeId::new(n).unwrap()
    }

    fn graph(text: &str) -> PathGraph {
        PathGraph::from_toml(text).unwrap()
    }

    #[test]
    fn explains_cycles_and_offline_nodes() {
        let g = graph("[node.0]\ntarget = 1\n[node.1]\ntarget = 0\n[node.2]\ntarget = 7\n");
        let errs = g.validate("0-2".parse().unwrap(), MAX_NUMNODES).unwrap_err();
        let text: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert_eq!(text, ["node 7 is not online (named by node 2)", "cycle: 0 -> 1 -> 0"]);
    }

    #[test]
    fn cycle_through_fallback_is_found() {
        let g = graph("[node.0]\ntarget = 1\n[node.1]\ntarget = 2\nfallback = \"0\"\n");
        assert_eq!(g.cycle_through(id(1)), Some(vec![id(0), id(1), id(0)]));
        let errs = g.validate("0-2".parse().unwrap(), MAX_NUMNODES).unwrap_err();
        assert_eq!(errs[0].to_string(), "cycle through fallback nodes: 0 -> 1 -> 0");
        // Target loops are named before shorter loops through fallbacks.
        let g = graph(
            "[node.0]\ntarget = 1\nfallback = \"2\"\n[node.1]\ntarget = 2\n[node.2]\ntarget = 0\n",
        );
        assert_eq!(g.cycle_through(id(2)), Some(vec![id(0), id(1), id(2), id(0)]));
        let g = graph("[node.2]\ntarget = 2\n");
        assert_eq!(g.cycle_through(id(2)), Some(vec![id(2), id(2)]));
        let g = graph("[node.3]\ntarget = 1\n[node.1]\ntarget = 2\n[node.2]\ntarget = 3\n");
        assert_eq!(g.cycle_through(id(2)), Some(vec![id(1), id(2), id(3), id(1)]));
    }

    #[test]
    fn order_does_not_matter() {
        let a = graph("[node.0]\ntarget = 1\n[node.1]\ntarget = 2\n");
        let b = graph("[node.1]\ntarget = 2\n[node.0]\ntarget = 1\n[node.2]\ntarget = -1\n");
        assert_eq!(a, b);
        assert!(a.validate("0-2".parse().unwrap(), MAX_NUMNODES).is_ok());
    }

    #[test]
    fn text_round_trips() {
        let g = graph("[node.0]\ntarget = 1\nfallback = \"1-2\"\n[node.1]\ntarget = 2\n");
        assert_eq!(PathGraph::from_toml(&g.to_toml()).unwrap(), g);
        assert_eq!(g.entry(id(0)).destinations().collect::<Vec<_>>(), [id(1), id(2)]);
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        let cases = [
            ("[node.x]\ntarget = 1\n", "`x` is not a node number"),
            ("[node.0]\ntarget = -2\n", "target -2 is out of range"),
            ("[node.0]\ntarget = 1024\n", "target 1024 is out of range"),
            ("[node.0]\ntarget = 1\ncolour = 3\n", "unknown field `colour`"),
            ("[node.0]\ntarget = -1\nfallback = \"1\"\n", "fallback nodes need a target"),
            ("[node.0]\ntarget = 1\nfallback = \"3-1\"\n", "range `3-1` goes backwards"),
            ("version = 2\n", "unsupported format version 2"),
            ("[node.0]\n", "missing field `target`"),
        ];
        for (text, want) in cases {
            let err = PathGraph::from_toml(text).unwrap_err().to_string();
            assert!(err.contains(want), "{text:?}: got {err:?}, want {want:?}");
        }
    }
}
