//! The per-node migration path table: the seed ABI of the 2019 RFC
//! "node: Define and export memory migration path", with its bugs fixed.
//!
//! Each node has one stored *target* (`-1` = terminal) and, beyond the seed, a set of
//! *fallback* nodes tried when the target is full. [`PathTable::store`] has the sysfs
//! `migration_path_store` semantics: the buffer goes through [`kstrtol`], a negative value
//! makes the node terminal, a value that is out of range, not online, or that would close a
//! cycle is rejected with `EINVAL` and changes nothing. [`PathTable::next_migration_node`]
//! mirrors the RFC's function of that name: the stored target when it is online, else
//! terminal.
//!
//! # What the RFC got wrong, and what this does instead
//! The RFC walks the chain from the new target and fails if it meets a node twice, seeding
//! the visited set with the node being written. The walk stops *before* testing a terminal
//! node, so it misses every cycle that closes through the written node while that node is
//! still terminal: `echo 0 > node0/migration_path` (a self loop), or `1 -> 0` followed by
//! `echo 1 > node0/migration_path`. Both were accepted and made reclaim loop for ever. Here
//! the check is derived from the invariant instead: the table is acyclic before a store, so
//! the store `n -> v` creates a cycle exactly when `n` is reachable from `v`. The reachability
//! search covers fallback edges too, so no combination of targets can loop.
//!
//! # Concurrency
//! Readers never block and never take a lock: each entry is an atomic, so a single lookup
//! can't be torn. A whole-table view ([`PathTable::snapshot`]) uses a sequence counter, as
//! the kernel's `seqcount_t`: writers make it odd while they change entries, readers retry
//! until they read the same even value before and after. Walking a path one
//! `next_migration_node` call at a time while a writer runs can mix old and new entries
//! (and so appear to loop); walk a snapshot instead. Writers are serialised by a mutex, as
//! the RFC's spinlock did. Entries are cache-line padded so that a writer changing one node
//! does not slow readers of another.

use std::fmt;

use crossbeam_utils::CachePadded;

use crate::graph::{Entry, GraphError, PathGraph, find_cycle_through, join_nodes};
use crate::kstrtol::{ParseError, kstrtol};
use crate::node::{MAX_NUMNODES, NodeId, NodeMask};

#[cfg(loom)]
use loom::sync::{
    Mutex,
    atomic::{AtomicI32, AtomicU64, Ordering},
};
#[cfg(not(loom))]
use std::sync::{
    Mutex,
    atomic::{AtomicI32, AtomicU64, Ordering},
};

/// The stored value of a terminal node, as the RFC's `TERMINAL_NODE`.
pub const TERMINAL: i32 = -1;

const MASK_WORDS: usize = MAX_NUMNODES / 64;

/// Why a store was rejected. Every variant is `EINVAL` to a sysfs writer
/// ([`StoreError::errno`]); the variants exist to explain it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The buffer is not a number by `kstrtol`'s rules.
    #[error("`{text}` is {err}")]
    Parse {
        /// The buffer, lossily decoded, trailing newline removed.
        text: String,
        /// The parse error.
        err: ParseError,
    },
    /// The node being written does not exist in this table.
    #[error("node {0} does not exist (the table holds nodes 0..{max})", max = MAX_NUMNODES)]
    NoSuchNode(usize),
    /// The target is at or above `MAX_NUMNODES`.
    #[error("node {0} is out of range (0..{max})", max = MAX_NUMNODES)]
    OutOfRange(i64),
    /// The target is not online.
    #[error("node {0} is not online")]
    NotOnline(NodeId),
    /// The store would close a cycle of targets; its nodes, the first repeated at the end.
    #[error("cycle: {}", join_nodes(.0))]
    Cycle(Vec<NodeId>),
    /// The store would close a cycle through a fallback node.
    #[error("cycle through fallback nodes: {}", join_nodes(.0))]
    FallbackCycle(Vec<NodeId>),
}

impl StoreError {
    /// The errno a sysfs write gets: always `EINVAL` (22), as in the RFC.
    pub const fn errno(&self) -> i32 {
        22
    }
}

/// The migration path table. See the module documentation.
pub struct PathTable {
    capacity: usize,
    targets: Box<[CachePadded<AtomicI32>]>,
    /// `capacity * MASK_WORDS` words: node `n`'s fallback mask is words
    /// `n * MASK_WORDS .. (n + 1) * MASK_WORDS`.
    fallbacks: Box<[AtomicU64]>,
    online: CachePadded<[AtomicU64; MASK_WORDS]>,
    seq: CachePadded<AtomicU64>,
    writer: CachePadded<Mutex<()>>,
}

impl fmt::Debug for PathTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PathTable")
            .field("online", &self.online())
            .field("graph", &self.snapshot())
            .finish_non_exhaustive()
    }
}

impl PathTable {
    /// An all-terminal table for `MAX_NUMNODES` nodes with the given online set.
    pub fn new(online: NodeMask) -> PathTable {
        PathTable::with_capacity(MAX_NUMNODES, online)
    }

    /// An all-terminal table for nodes `0..capacity` (at most `MAX_NUMNODES`). A smaller
    /// table is for model checking, where every atomic costs; nodes at or above `capacity`
    /// can never be online in it.
    pub fn with_capacity(capacity: usize, online: NodeMask) -> PathTable {
        assert!(capacity > 0 && capacity <= MAX_NUMNODES, "capacity out of range");
        let table = PathTable {
            capacity,
            targets: (0..capacity).map(|_| CachePadded::new(AtomicI32::new(TERMINAL))).collect(),
            fallbacks: (0..capacity * MASK_WORDS).map(|_| AtomicU64::new(0)).collect(),
            online: CachePadded::new(std::array::from_fn(|_| AtomicU64::new(0))),
            seq: CachePadded::new(AtomicU64::new(0)),
            writer: CachePadded::new(Mutex::new(())),
        };
        table.write_online(online);
        table
    }

    /// The number of node slots.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The online set the table validates against.
    pub fn online(&self) -> NodeMask {
        NodeMask::from_words(std::array::from_fn(|i| self.online[i].load(Ordering::Acquire)))
    }

    /// Replaces the online set (a node came or went). Stored targets are kept: an entry
    /// pointing at a node that went offline is shown as stored and treated as terminal by
    /// [`PathTable::next_migration_node`], as in the RFC.
    pub fn set_online(&self, online: NodeMask) {
        let _guard = self.lock();
        self.write_online(online);
    }

    fn write_online(&self, online: NodeMask) {
        let online = online.and(&NodeMask::first(self.capacity));
        for (slot, word) in self.online.iter().zip(online.words()) {
            slot.store(*word, Ordering::Release);
        }
    }

    fn is_online(&self, n: usize) -> bool {
        n < self.capacity && self.online[n / 64].load(Ordering::Acquire) & (1 << (n % 64)) != 0
    }

    fn lock(&self) -> impl Drop + '_ {
        // A writer that panicked left the table consistent (entries are written only after
        // validation), so a poisoned lock is safe to take over.
        self.writer.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `migration_path_show`: the stored target of `node`, even when that target is now
    /// offline; `None` for a node outside the table.
    pub fn show(&self, node: NodeId) -> Option<i32> {
        self.targets.get(node.index()).map(|t| t.load(Ordering::Acquire))
    }

    /// `migration_path_show` as the sysfs text: the signed decimal and a newline.
    pub fn show_text(&self, node: NodeId) -> Option<String> {
        self.show(node).map(|v| format!("{v}\n"))
    }

    /// The RFC's `next_migration_node()`: the stored target of `node` when it is online,
    /// else `None` (terminal). Lock-free and wait-free: two atomic loads.
    pub fn next_migration_node(&self, node: NodeId) -> Option<NodeId> {
        let t = self.show(node)?;
        let t = usize::try_from(t).ok()?;
        if self.is_online(t) { NodeId::new(t) } else { None }
    }

    /// The fallback nodes of `node` that are online, in ascending order, without its target.
    pub fn fallback(&self, node: NodeId) -> NodeMask {
        self.snapshot().fallback_of(node).and(&self.online())
    }

    /// `migration_path_store`: parses `buf` like sysfs and stores it as `node`'s target.
    /// Returns the byte count, as a sysfs store does, or the reason for `EINVAL`.
    pub fn store(&self, node: NodeId, buf: &[u8]) -> Result<usize, StoreError> {
        let value = kstrtol(buf).map_err(|err| StoreError::Parse {
            text: String::from_utf8_lossy(buf).trim_end_matches('\n').to_string(),
            err,
        })?;
        self.store_value(node, value)?;
        Ok(buf.len())
    }

    /// Stores a parsed value as `node`'s target: negative makes the node terminal (and clears
    /// its fallbacks, which only apply to a node with a target); otherwise the target must
    /// be online and must not close a cycle.
    pub fn store_value(&self, node: NodeId, value: i64) -> Result<(), StoreError> {
        let n = node.index();
        if n >= self.capacity {
            return Err(StoreError::NoSuchNode(n));
        }
        if value < 0 {
            let _guard = self.lock();
            self.write_entries(&[(node, Entry::TERMINAL)]);
            return Ok(());
        }
        let target = usize::try_from(value)
            .ok()
            .and_then(NodeId::new)
            .ok_or(StoreError::OutOfRange(value))?;
        let _guard = self.lock();
        // Checked under the lock: a concurrent set_online can't slip in between.
        if !self.is_online(target.index()) {
            return Err(StoreError::NotOnline(target));
        }
        // Entries can't change under us (we hold the lock): read them live, and only along
        // the paths reachable from the new target.
        let proposed = Entry { target: Some(target), fallback: self.read_entry(n).fallback };
        let entry_of = |m: NodeId| if m == node { proposed } else { self.read_entry(m.index()) };
        match find_cycle_through(node, entry_of) {
            Some((cycle, false)) => return Err(StoreError::Cycle(cycle)),
            Some((cycle, true)) => return Err(StoreError::FallbackCycle(cycle)),
            None => {}
        }
        self.write_entries(&[(node, proposed)]);
        Ok(())
    }

    /// Checks `graph` as a whole replacement of the table: every node it does not name
    /// becomes terminal. Returns every problem found, not only the first.
    pub fn check(&self, graph: &PathGraph) -> Result<(), Vec<GraphError>> {
        graph.validate(self.online(), self.capacity)
    }

    /// Validates `graph` (as [`PathTable::check`]) and then replaces the whole table with it
    /// in one step: readers of [`PathTable::snapshot`] see the old table or the new one,
    /// never a mix. On error nothing changes.
    pub fn apply(&self, graph: &PathGraph) -> Result<(), Vec<GraphError>> {
        let _guard = self.lock();
        graph.validate(self.online(), self.capacity)?;
        let mut changes: Vec<(NodeId, Entry)> = Vec::new();
        let current = self.snapshot_locked();
        for i in 0..self.capacity {
            let node = NodeId::new(i).expect("capacity <= MAX_NUMNODES");
            let want = graph.entry(node);
            if current.entry(node) != want {
                changes.push((node, want));
            }
        }
        self.write_entries(&changes);
        Ok(())
    }

    /// Replaces the table with `graph` without validating targets against the online set,
    /// only against cycles and range: used to load a saved state in which a target may have
    /// gone offline since (the RFC keeps such a target and treats it as terminal).
    pub fn restore(&self, graph: &PathGraph) -> Result<(), Vec<GraphError>> {
        let _guard = self.lock();
        graph.validate(NodeMask::first(self.capacity), self.capacity)?;
        let changes: Vec<(NodeId, Entry)> = (0..self.capacity)
            .map(|i| {
                let node = NodeId::new(i).expect("capacity <= MAX_NUMNODES");
                (node, graph.entry(node))
            })
            .collect();
        self.write_entries(&changes);
        Ok(())
    }

    /// A consistent copy of the whole table. Lock-free: retries while a writer is active.
    pub fn snapshot(&self) -> PathGraph {
        loop {
            let before = self.seq.load(Ordering::Acquire);
            if before % 2 == 1 {
                std::hint::spin_loop();
                #[cfg(loom)]
                loom::thread::yield_now();
                continue;
            }
            let graph = self.read_entries();
            if self.seq.load(Ordering::Acquire) == before {
                return graph;
            }
        }
    }

    /// The snapshot as seen by the writer holding the lock (no retry needed).
    fn snapshot_locked(&self) -> PathGraph {
        self.read_entries()
    }

    fn read_entry(&self, i: usize) -> Entry {
        if i >= self.capacity {
            return Entry::TERMINAL;
        }
        let target = self.targets[i].load(Ordering::Acquire);
        let words = &self.fallbacks[i * MASK_WORDS..(i + 1) * MASK_WORDS];
        let fallback =
            NodeMask::from_words(std::array::from_fn(|w| words[w].load(Ordering::Acquire)));
        let target = usize::try_from(target).ok().and_then(NodeId::new);
        Entry { target, fallback }
    }

    fn read_entries(&self) -> PathGraph {
        let mut graph = PathGraph::default();
        for i in 0..self.capacity {
            graph.set(NodeId::new(i).expect("capacity <= MAX_NUMNODES"), self.read_entry(i));
        }
        graph
    }

    /// Writes entries inside a sequence-counter write section. The caller holds the lock.
    fn write_entries(&self, changes: &[(NodeId, Entry)]) {
        if changes.is_empty() {
            return;
        }
        let s = self.seq.load(Ordering::Relaxed);
        self.seq.store(s + 1, Ordering::Release);
        for (node, entry) in changes {
            let i = node.index();
            let words = &self.fallbacks[i * MASK_WORDS..(i + 1) * MASK_WORDS];
            let fallback = if entry.target.is_some() { entry.fallback } else { NodeMask::EMPTY };
            for (slot, word) in words.iter().zip(fallback.words()) {
                slot.store(*word, Ordering::Release);
            }
            self.targets[i].store(entry.target.map_or(TERMINAL, NodeId::as_i32), Ordering::Release);
        }
        self.seq.store(s + 2, Ordering::Release);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id(n: usize) -> NodeId {
        NodeId::new(n).unwrap()
    }

    fn table(online: &str) -> PathTable {
        PathTable::new(online.parse().unwrap())
    }

    #[test]
    fn starts_terminal_and_shows_minus_one() {
        let t = table("0-2");
        assert_eq!(t.show_text(id(0)).unwrap(), "-1\n");
        assert_eq!(t.next_migration_node(id(0)), None);
        assert_eq!(t.show(id(1023)), Some(-1));
    }

    #[test]
    fn store_follows_kstrtol_and_returns_the_count() {
        let t = table("0-9");
        let ok: &[(&[u8], i32)] = &[
            (b"2", 2),
            (b"2\n", 2),
            (b"0x2", 2),
            (b"0X2", 2),
            (b"02", 2),
            (b"+2", 2),
            (b"010", 8),
            (b"-1", -1),
            (b"-9", -1),
            (b"-9223372036854775808", -1),
        ];
        for (buf, want) in ok {
            assert_eq!(t.store(id(0), buf), Ok(buf.len()), "{buf:?}");
            assert_eq!(t.show(id(0)), Some(*want), "{buf:?}");
        }
        t.store(id(0), b"3").unwrap();
        for buf in [
            &b""[..],
            b" 2",
            b"2 ",
            b"2\n\n",
            b"0x",
            b"08",
            b"9223372036854775808",
            b"-9223372036854775809",
        ] {
            let err = t.store(id(0), buf).unwrap_err();
            assert!(matches!(err, StoreError::Parse { .. }), "{buf:?}: {err}");
            assert_eq!(err.errno(), 22);
            assert_eq!(t.show(id(0)), Some(3), "a rejected store changes nothing ({buf:?})");
        }
    }

    #[test]
    fn rejects_offline_and_out_of_range_targets() {
        let t = table("0,2");
        assert_eq!(t.store(id(0), b"1"), Err(StoreError::NotOnline(id(1))));
        assert_eq!(t.store(id(0), b"1024"), Err(StoreError::OutOfRange(1024)));
        assert_eq!(t.store(id(0), b"9223372036854775807"), Err(StoreError::OutOfRange(i64::MAX)));
        assert_eq!(t.store(id(0), b"2"), Ok(1));
        assert_eq!(t.show(id(0)), Some(2));
    }

    #[test]
    fn rfc_bug_self_loop_is_rejected() {
        // The RFC accepted this: its walk never tested a terminal node.
        let t = table("0-2");
        assert_eq!(t.store(id(0), b"0"), Err(StoreError::Cycle(vec![id(0), id(0)])));
    }

    #[test]
    fn rfc_bug_cycle_through_terminal_writer_is_rejected() {
        let t = table("0-2");
        t.store(id(1), b"0").unwrap();
        let err = t.store(id(0), b"1").unwrap_err();
        assert_eq!(err, StoreError::Cycle(vec![id(0), id(1), id(0)]));
        assert_eq!(err.to_string(), "cycle: 0 -> 1 -> 0");
        assert_eq!(t.show(id(0)), Some(-1));
    }

    #[test]
    fn offline_target_is_kept_and_treated_as_terminal() {
        let t = table("0-2");
        t.store(id(0), b"2").unwrap();
        t.set_online("0-1".parse().unwrap());
        assert_eq!(t.show(id(0)), Some(2));
        assert_eq!(t.next_migration_node(id(0)), None);
        t.set_online("0-2".parse().unwrap());
        assert_eq!(t.next_migration_node(id(0)), Some(id(2)));
    }

    #[test]
    fn terminal_store_is_always_accepted() {
        let t = table("0");
        assert_eq!(t.store(id(5), b"-1"), Ok(2));
        assert_eq!(t.store(id(1023), b"-100\n"), Ok(5));
    }

    /// Follows stored targets and fallbacks from every node; returns a node on a cycle.
    fn find_cycle(g: &PathGraph, capacity: usize) -> Option<NodeId> {
        (0..capacity).map(id).find(|&n| g.cycle_through(n).is_some())
    }

    fn walk_terminates(g: &PathGraph, capacity: usize) -> bool {
        (0..capacity).all(|start| {
            let mut n = id(start);
            for _ in 0..MAX_NUMNODES {
                match g.entry(n).target {
                    None => return true,
                    Some(next) => n = next,
                }
            }
            false
        })
    }

    #[derive(Debug, Clone)]
    enum Op {
        Store(usize, i64),
        Online(Vec<bool>),
    }

    fn op(nodes: usize) -> impl Strategy<Value = Op> {
        let n = nodes;
        prop_oneof![
            8 => (0..n, -2i64..=i64::try_from(n).unwrap()).prop_map(|(a, b)| Op::Store(a, b)),
            1 => proptest::collection::vec(proptest::bool::weighted(0.8), n).prop_map(Op::Online),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        /// After any sequence of stores and online changes, from every node, following the
        /// stored targets ends at a terminal node in fewer than MAX_NUMNODES steps, no cycle
        /// exists through targets or fallbacks, and a rejected store changed nothing.
        #[test]
        fn no_store_sequence_forms_a_cycle(
            (nodes, ops, online) in (1usize..9).prop_flat_map(|n| (
                Just(n),
                proptest::collection::vec(op(n), 1..60),
                proptest::collection::vec(proptest::bool::weighted(0.8), n),
            ))
        ) {
            let online: NodeMask =
                online.iter().enumerate().filter(|&(_, &o)| o).map(|(i, _)| id(i)).collect();
            let t = PathTable::with_capacity(nodes, online);
            for op in ops {
                let before = t.snapshot();
                match op {
                    Op::Store(n, v) => {
                        let text = v.to_string();
                        match t.store(id(n), text.as_bytes()) {
                            Ok(len) => {
                                prop_assert_eq!(len, text.len());
                                let want = if v < 0 { -1 } else { i32::try_from(v).unwrap() };
                                prop_assert_eq!(t.show(id(n)), Some(want));
                            }
                            Err(e) => {
                                prop_assert_eq!(&t.snapshot(), &before, "rejected {} changed the table", e);
                                prop_assert!(v >= 0);
                            }
                        }
                    }
                    Op::Online(bits) => {
                        let m = bits.iter().enumerate().filter(|&(_, &o)| o).map(|(i, _)| id(i)).collect();
                        t.set_online(m);
                        prop_assert_eq!(&t.snapshot(), &before);
                    }
                }
                let g = t.snapshot();
                prop_assert_eq!(find_cycle(&g, nodes), None);
                prop_assert!(walk_terminates(&g, nodes));
            }
        }

        /// Graph-level apply never commits a cycle and commits exactly the graph it accepts.
        #[test]
        fn apply_is_all_or_nothing(
            (nodes, targets) in (1usize..7).prop_flat_map(|n| (
                Just(n),
                proptest::collection::vec(proptest::option::of(0..n), n),
            ))
        ) {
            let t = PathTable::with_capacity(nodes, NodeMask::first(nodes));
            let mut g = PathGraph::default();
            for (i, tgt) in targets.iter().enumerate() {
                g.set(id(i), Entry { target: tgt.map(id), fallback: NodeMask::EMPTY });
            }
            let before = t.snapshot();
            match t.apply(&g) {
                Ok(()) => prop_assert_eq!(t.snapshot(), g.clone().with_capacity(nodes)),
                Err(errs) => {
                    prop_assert!(!errs.is_empty());
                    prop_assert_eq!(t.snapshot(), before);
                    prop_assert!(find_cycle(&g, nodes).is_some());
                }
            }
        }
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;

    fn id(n: usize) -> NodeId {
        NodeId::new(n).unwrap()
    }

    /// A writer turns `0 -> 1 -> 2` into `2 -> 1 -> 0` through single stores and a whole-graph
    /// apply; a reader takes snapshots and single lookups meanwhile. Every snapshot is
    /// acyclic, and every single lookup returns a value some state of the table held.
    #[test]
    fn readers_never_see_a_cycle_or_a_torn_entry() {
        loom::model(|| {
            let t = Arc::new(PathTable::with_capacity(3, NodeMask::first(3)));
            t.store(id(0), b"1").unwrap();
            t.store(id(1), b"2").unwrap();
            let w = Arc::clone(&t);
            let writer = loom::thread::spawn(move || {
                let mut g = PathGraph::default();
                g.set(id(2), Entry { target: Some(id(1)), fallback: NodeMask::EMPTY });
                g.set(id(1), Entry { target: Some(id(0)), fallback: NodeMask::EMPTY });
                w.apply(&g).unwrap();
            });
            for _ in 0..2 {
                let g = t.snapshot();
                for n in 0..3 {
                    assert!(g.cycle_through(id(n)).is_none(), "reader saw a cycle: {g:?}");
                }
                let v = t.show(id(1)).unwrap();
                assert!(v == 2 || v == 0, "torn or invented entry {v}");
            }
            writer.join().unwrap();
            assert_eq!(t.next_migration_node(id(2)), Some(id(1)));
        });
    }
}
