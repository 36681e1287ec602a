//! The live path table of one process, tied to its state file.
//!
//! [`Paths`] is what the FUSE tree, the control socket and the CLI's direct mode share: the
//! lock-free [`PathTable`] plus the state file it persists to. Every change is validated by
//! the table, then saved, and only then published to readers: a change whose save fails is
//! never seen by anyone, so the file and the memory never disagree and nothing a user wrote
//! is silently lost. The table is sized to the machine's possible nodes, so a node that
//! can't exist can't be written.

use serde::{Deserialize, Serialize};
use tierd_core::graph::GraphError;
use tierd_core::path::Rejected;
use tierd_core::{NodeId, NodeMask, PathGraph, PathTable, StoreError, Topology};

use crate::state::{StateError, StateFile};

/// Why a change was not made.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    /// The table rejected a single store (`EINVAL`).
    #[error("Invalid argument: {0}")]
    Store(#[from] StoreError),
    /// The table rejected a graph; every problem is listed.
    #[error("Invalid argument: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Graph(Vec<GraphError>),
    /// The change was valid but could not be saved, so it was not made.
    #[error("{0} (nothing was changed)")]
    State(#[from] StateError),
}

impl ChangeError {
    /// The errno a sysfs-style writer sees.
    pub fn errno(&self) -> i32 {
        match self {
            ChangeError::Store(e) => e.errno(),
            ChangeError::Graph(_) => libc::EINVAL,
            ChangeError::State(_) => libc::EIO,
        }
    }
}

/// One node's row in `tierd path show`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRow {
    /// The node.
    pub node: u32,
    /// Whether the node is online.
    pub online: bool,
    /// What `migration_path` shows: the stored target, -1 when terminal.
    pub stored: i32,
    /// What `next_migration_node` returns: the stored target when online, else -1.
    pub next: i32,
    /// Online fallback nodes (nodelist), tried in order when the target is full.
    pub fallback: String,
}

/// The whole table as `tierd path show --json` prints it. Field names are stable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathsView {
    /// Online nodes (nodelist).
    pub online: String,
    /// Possible nodes (nodelist).
    pub possible: String,
    /// One row per possible node and per node with a stored entry, ascending.
    pub nodes: Vec<NodeRow>,
}

/// The path table's size for a machine: one slot per node id up to the highest possible
/// node, so that nodes that can't exist can't be written.
pub fn capacity_of(topology: &Topology) -> usize {
    topology.possible.or(&topology.online).iter().last().map_or(1, |n| n.index() + 1)
}

/// Reads the machine's online nodes now; `None` when that fails (the last set is kept).
pub type OnlineSource = Box<dyn Fn() -> Option<NodeMask> + Send + Sync>;

/// The live table and its state file.
pub struct Paths {
    table: PathTable,
    state: StateFile,
    possible: NodeMask,
    online_source: Option<OnlineSource>,
}

impl std::fmt::Debug for Paths {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Paths")
            .field("table", &self.table)
            .field("state", &self.state)
            .field("possible", &self.possible)
            .finish_non_exhaustive()
    }
}

impl Paths {
    /// Loads the state file (an all-terminal table when there is none) against the
    /// machine's online nodes. A saved target that is no longer online is kept, shown, and
    /// treated as terminal, as the RFC does.
    pub fn open(topology: &Topology, state: StateFile) -> Result<Paths, StateError> {
        let possible = topology.possible.or(&topology.online);
        let table = PathTable::with_capacity(capacity_of(topology), topology.online);
        if let Some(graph) = state.load()? {
            table.restore(&graph).map_err(|errs| StateError::Corrupt {
                path: state.path().to_path_buf(),
                reason: errs.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "),
            })?;
        }
        Ok(Paths { table, state, possible, online_source: None })
    }

    /// The table.
    pub fn table(&self) -> &PathTable {
        &self.table
    }

    /// The state file.
    pub fn state(&self) -> &StateFile {
        &self.state
    }

    /// Possible nodes (including online ones).
    pub fn possible(&self) -> NodeMask {
        self.possible
    }

    /// Re-reads the online set from `source` before every change and every view, as the
    /// kernel checks `node_online()` at every store: for a long-running owner, during which
    /// nodes may come and go.
    #[must_use]
    pub fn with_online_source(mut self, source: OnlineSource) -> Paths {
        self.online_source = Some(source);
        self
    }

    /// Brings the online set up to date from the online source, if there is one.
    pub fn refresh_online(&self) {
        if let Some(online) = self.online_source.as_ref().and_then(|f| f()) {
            self.table.set_online(online);
        }
    }

    /// A sysfs store to `node`'s `migration_path`: validated, saved, then published.
    pub fn store(&self, node: NodeId, buf: &[u8]) -> Result<usize, ChangeError> {
        self.refresh_online();
        self.table.store_then(node, buf, |g| self.save(g)).map_err(|e| match e {
            Rejected::Invalid(e) => ChangeError::Store(e),
            Rejected::Hook(e) => ChangeError::State(e),
        })
    }

    /// Validates `graph` as a whole; with `dry_run` false, saves it and applies it.
    pub fn apply(&self, graph: &PathGraph, dry_run: bool) -> Result<(), ChangeError> {
        self.refresh_online();
        if dry_run {
            return self.table.check(graph).map_err(ChangeError::Graph);
        }
        self.table.apply_then(graph, |g| self.save(g)).map_err(|e| match e {
            Rejected::Invalid(e) => ChangeError::Graph(e),
            Rejected::Hook(e) => ChangeError::State(e),
        })
    }

    fn save(&self, graph: &PathGraph) -> Result<(), StateError> {
        if self.state.path().exists() && self.table.snapshot() == *graph {
            return Ok(());
        }
        self.state.save(graph)
    }

    /// The table as rows.
    pub fn view(&self) -> PathsView {
        self.refresh_online();
        let graph = self.table.snapshot();
        let online = self.table.online();
        let mut nodes: NodeMask = self.possible;
        for (n, _) in graph.iter() {
            nodes.insert(n);
        }
        let rows = nodes
            .iter()
            .map(|n| {
                let entry = graph.entry(n);
                NodeRow {
                    node: u32::from(n),
                    online: online.contains(n),
                    stored: entry.target.map_or(-1, NodeId::as_i32),
                    next: self.table.next_migration_node(n).map_or(-1, NodeId::as_i32),
                    fallback: entry.fallback.and(&online).to_string(),
                }
            })
            .collect();
        PathsView { online: online.to_string(), possible: self.possible.to_string(), nodes: rows }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: usize) -> NodeId {
        NodeId::new(n).unwrap()
    }

    fn three_nodes() -> Topology {
        Topology::synthetic(
            &[10, 20, 30, 20, 10, 20, 30, 20, 10],
            &[true, false, false],
            &[1 << 30; 3],
        )
    }

    #[test]
    fn changes_persist_and_reload() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateFile::new(dir.path().join("paths.toml"));
        let paths = Paths::open(&three_nodes(), state.clone()).unwrap();
        assert_eq!(paths.store(id(0), b"1\n").unwrap(), 2);
        assert!(matches!(paths.store(id(1), b"0"), Err(ChangeError::Store(StoreError::Cycle(_)))));
        let again = Paths::open(&three_nodes(), state).unwrap();
        assert_eq!(again.table().show(id(0)), Some(1));
        assert_eq!(again.table().show(id(1)), Some(-1));
    }

    #[test]
    fn saved_target_that_went_offline_is_kept_and_terminal() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateFile::new(dir.path().join("paths.toml"));
        Paths::open(&three_nodes(), state.clone()).unwrap().store(id(0), b"2").unwrap();
        let mut topo = three_nodes();
        topo.online = "0-1".parse().unwrap();
        topo.nodes.pop();
        let paths = Paths::open(&topo, state).unwrap();
        let row = &paths.view().nodes[0];
        assert_eq!((row.stored, row.next), (2, -1));
    }

    #[test]
    fn failed_save_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("state");
        std::fs::create_dir(&sub).unwrap();
        let paths = Paths::open(&three_nodes(), StateFile::new(sub.join("paths.toml"))).unwrap();
        // The state directory becomes a regular file: every save fails from now on.
        std::fs::remove_dir(&sub).unwrap();
        std::fs::write(&sub, "").unwrap();
        let err = paths.store(id(0), b"1").unwrap_err();
        assert_eq!(err.errno(), libc::EIO, "{err}");
        assert_eq!(paths.table().show(id(0)), Some(-1));
    }

    #[test]
    fn a_state_file_with_a_cycle_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("paths.toml");
        std::fs::write(&path, "[node.0]\ntarget = 1\n[node.1]\ntarget = 0\n").unwrap();
        let err = Paths::open(&three_nodes(), StateFile::new(&path)).unwrap_err().to_string();
        assert!(err.contains("cycle: 0 -> 1 -> 0") && err.contains("paths.toml"), "{err}");
    }
}
