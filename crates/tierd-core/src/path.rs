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
//! the store `n -> v` creates a cycle exactly when `n` is reachable from `v`. The
//! reachability search covers fallback edges too, so no combination of targets can loop.
//!
//! # Concurrency
//! Writers are serialised by a mutex, as the RFC's spinlock did, and keep the authoritative
//! table inside it: they validate against that copy and never read the published form.
//! Readers never take the lock. The published form is one atomic per entry (a lookup is two
//! atomic loads and can't be torn) plus the fallback words, guarded by a sequence counter as
//! the kernel's `seqcount_t`: a writer makes it odd while it changes entries, and
//! [`PathTable::snapshot`] retries until it reads the same even value before and after, so
//! a snapshot is the old table or the new one, never a mix. (Walking a path one
//! `next_migration_node` call at a time while a writer runs can mix old and new entries and
//! so appear to loop; walk a snapshot instead.) Every data access is `Acquire`/`Release`,
//! which is what makes the sequence check sound without fences: a reader that sees a value
//! stored inside a write section also sees the counter made odd before it. Entries sit on
//! their own cache lines so that a writer changing one node does not slow readers of another.
//!
//! A change can be made durable before anyone sees it: [`PathTable::store_then`] and
//! [`PathTable::apply_then`] run a hook (the state-file save) on the validated new table
//! under the writer lock, and publish only when it succeeds.

use std::convert::Infallible;
use std::fmt;

use crossbeam_utils::CachePadded;

use crate::graph::{Entry, GraphError, PathGraph, find_cycle_through, join_nodes};
use crate::kstrtol::{ParseError, kstrtol};
use crate::node::{MAX_NUMNODES, NodeId, NodeMask};

#[cfg(loom)]
use loom::sync::{
    Mutex, MutexGuard,
    atomic::{AtomicI32, AtomicU64, Ordering},
};
#[cfg(not(loom))]
use std::sync::{
    Mutex, MutexGuard,
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
    #[error("{} is {err}", crate::quote::quote(.text))]
    Parse {
        /// The buffer up to its first NUL (what the kernel parses), lossily decoded; the
        /// message quotes a bounded prefix of it.
        text: String,
        /// The parse error.
        err: ParseError,
    },
    /// The node being written does not exist in this table (it is not a possible node).
    #[error("node {0} does not exist on this machine")]
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

/// Why a change guarded by a publish hook did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejected<R, E> {
    /// The table refused it.
    Invalid(R),
    /// It was valid, but the hook failed; nothing was published.
    Hook(E),
}

/// The writers' state, behind the mutex: the authoritative table.
#[derive(Debug)]
struct Writer {
    graph: PathGraph,
    online: NodeMask,
    seq: u64,
}

/// The migration path table. See the module documentation.
pub struct PathTable {
    capacity: usize,
    /// Fallback words per node: fallback nodes are online, hence below `capacity`.
    words: usize,
    targets: Box<[CachePadded<AtomicI32>]>,
    /// `capacity * words` words: node `n`'s fallback mask is words `n * words ..`.
    fallbacks: Box<[AtomicU64]>,
    online: CachePadded<[AtomicU64; MASK_WORDS]>,
    seq: CachePadded<AtomicU64>,
    writer: CachePadded<Mutex<Writer>>,
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
    /// An all-terminal table for every node id below `MAX_NUMNODES`.
    pub fn new(online: NodeMask) -> PathTable {
        PathTable::with_capacity(MAX_NUMNODES, online)
    }

    /// An all-terminal table for nodes `0..capacity` (at most `MAX_NUMNODES`): size it to
    /// the machine's possible nodes, so that a node that can't exist can't be written and a
    /// snapshot costs what the machine has. Nodes at or above `capacity` are never online in
    /// it; a store naming one as target is refused as not online, as on the machine.
    pub fn with_capacity(capacity: usize, online: NodeMask) -> PathTable {
        assert!(capacity > 0 && capacity <= MAX_NUMNODES, "capacity out of range");
        let words = capacity.div_ceil(64);
        let online = online.and(&NodeMask::first(capacity));
        PathTable {
            capacity,
            words,
            targets: (0..capacity).map(|_| CachePadded::new(AtomicI32::new(TERMINAL))).collect(),
            fallbacks: (0..capacity * words).map(|_| AtomicU64::new(0)).collect(),
            online: CachePadded::new(std::array::from_fn(|i| AtomicU64::new(online.words()[i]))),
            seq: CachePadded::new(AtomicU64::new(0)),
            writer: CachePadded::new(Mutex::new(Writer {
                graph: PathGraph::default(),
                online,
                seq: 0,
            })),
        }
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
        let mut w = self.lock();
        let online = online.and(&NodeMask::first(self.capacity));
        for (i, (old, new)) in w.online.words().iter().zip(online.words()).enumerate() {
            if old != new {
                self.online[i].store(*new, Ordering::Release);
            }
        }
        w.online = online;
    }

    fn is_online(&self, n: usize) -> bool {
        n < self.capacity && self.online[n / 64].load(Ordering::Acquire) & (1 << (n % 64)) != 0
    }

    fn lock(&self) -> MutexGuard<'_, Writer> {
        // A writer that panicked left the table consistent: the published form changes
        // only in `publish`, which can't panic half-way, so a poisoned lock is safe to take.
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

    /// The online fallback nodes of `node`, in ascending order, its target left out.
    pub fn fallback(&self, node: NodeId) -> NodeMask {
        let i = node.index();
        if i >= self.capacity {
            return NodeMask::EMPTY;
        }
        let mask = loop {
            let before = self.seq_begin();
            let mask = self.read_fallback(i);
            if self.seq.load(Ordering::Acquire) == before {
                break mask;
            }
        };
        let mut mask = mask.and(&self.online());
        if let Some(t) = self.show(node).and_then(|t| usize::try_from(t).ok()).and_then(NodeId::new)
        {
            mask.remove(t);
        }
        mask
    }

    /// `migration_path_store`: parses `buf` like sysfs and stores it as `node`'s target.
    /// Returns the byte count, as a sysfs store does, or the reason for `EINVAL`.
    pub fn store(&self, node: NodeId, buf: &[u8]) -> Result<usize, StoreError> {
        self.store_then(node, buf, |_| Ok::<(), Infallible>(())).map_err(|e| match e {
            Rejected::Invalid(e) => e,
            Rejected::Hook(never) => match never {},
        })
    }

    /// [`PathTable::store`], with `publish` run on the new table (under the writer lock,
    /// after validation) before anyone can see the change; if it fails, nothing changes.
    pub fn store_then<E>(
        &self,
        node: NodeId,
        buf: &[u8],
        publish: impl FnOnce(&PathGraph) -> Result<(), E>,
    ) -> Result<usize, Rejected<StoreError, E>> {
        // The kernel hands store() a NUL-terminated copy: nothing after a NUL is seen.
        let seen = buf.split(|&b| b == 0).next().unwrap_or_default();
        let value = kstrtol(buf).map_err(|err| {
            Rejected::Invalid(StoreError::Parse { text: String::from_utf8_lossy(seen).into(), err })
        })?;
        let mut w = self.lock();
        let entry = self.validate_store(&w, node, value).map_err(Rejected::Invalid)?;
        let mut graph = w.graph.clone();
        graph.set(node, entry);
        publish(&graph).map_err(Rejected::Hook)?;
        self.publish(&mut w, graph);
        Ok(buf.len())
    }

    /// Stores a parsed value as `node`'s target: negative makes the node terminal (and clears
    /// its fallbacks, which only apply to a node with a target); otherwise the target must
    /// be online and must not close a cycle.
    pub fn store_value(&self, node: NodeId, value: i64) -> Result<(), StoreError> {
        let mut w = self.lock();
        let entry = self.validate_store(&w, node, value)?;
        let mut graph = w.graph.clone();
        graph.set(node, entry);
        self.publish(&mut w, graph);
        Ok(())
    }

    fn validate_store(&self, w: &Writer, node: NodeId, value: i64) -> Result<Entry, StoreError> {
        if node.index() >= self.capacity {
            return Err(StoreError::NoSuchNode(node.index()));
        }
        if value < 0 {
            return Ok(Entry::TERMINAL);
        }
        let target = usize::try_from(value)
            .ok()
            .and_then(NodeId::new)
            .ok_or(StoreError::OutOfRange(value))?;
        if !w.online.contains(target) {
            return Err(StoreError::NotOnline(target));
        }
        let proposed = Entry { target: Some(target), fallback: w.graph.fallback_of(node) };
        let entry_of = |m: NodeId| if m == node { proposed } else { w.graph.entry(m) };
        match find_cycle_through(node, entry_of) {
            Some((cycle, false)) => Err(StoreError::Cycle(cycle)),
            Some((cycle, true)) => Err(StoreError::FallbackCycle(cycle)),
            None => Ok(proposed),
        }
    }

    /// Checks `graph` as a whole replacement of the table: every node it does not name
    /// becomes terminal. Returns every problem found, not only the first.
    pub fn check(&self, graph: &PathGraph) -> Result<(), Vec<GraphError>> {
        let w = self.lock();
        graph.validate(w.online, self.capacity)
    }

    /// Validates `graph` (as [`PathTable::check`]) and then replaces the whole table with it
    /// in one step: readers of [`PathTable::snapshot`] see the old table or the new one,
    /// never a mix. On error nothing changes.
    pub fn apply(&self, graph: &PathGraph) -> Result<(), Vec<GraphError>> {
        self.apply_then(graph, |_| Ok::<(), Infallible>(())).map_err(|e| match e {
            Rejected::Invalid(e) => e,
            Rejected::Hook(never) => match never {},
        })
    }

    /// [`PathTable::apply`], with `publish` run on the new table before anyone sees it.
    pub fn apply_then<E>(
        &self,
        graph: &PathGraph,
        publish: impl FnOnce(&PathGraph) -> Result<(), E>,
    ) -> Result<(), Rejected<Vec<GraphError>, E>> {
        let mut w = self.lock();
        graph.validate(w.online, self.capacity).map_err(Rejected::Invalid)?;
        publish(graph).map_err(Rejected::Hook)?;
        self.publish(&mut w, graph.clone());
        Ok(())
    }

    /// Replaces the table with `graph` without validating targets against the online set,
    /// only against cycles and the table's nodes: used to load a saved state in which a
    /// target may have gone offline since (the RFC keeps such a target and treats it as
    /// terminal).
    pub fn restore(&self, graph: &PathGraph) -> Result<(), Vec<GraphError>> {
        let mut w = self.lock();
        graph.validate(NodeMask::first(self.capacity), self.capacity)?;
        self.publish(&mut w, graph.clone());
        Ok(())
    }

    /// A consistent copy of the whole table. Lock-free: retries while a writer is active.
    pub fn snapshot(&self) -> PathGraph {
        loop {
            let before = self.seq_begin();
            let mut graph = PathGraph::default();
            for i in 0..self.capacity {
                let target = self.targets[i].load(Ordering::Acquire);
                let target = usize::try_from(target).ok().and_then(NodeId::new);
                let fallback = self.read_fallback(i);
                graph.set(
                    NodeId::new(i).expect("capacity <= MAX_NUMNODES"),
                    Entry { target, fallback },
                );
            }
            if self.seq.load(Ordering::Acquire) == before {
                return graph;
            }
        }
    }

    /// The sequence value at the start of a read section: waits out a writer (spinning a
    /// little, then yielding the CPU so that a preempted writer can finish).
    fn seq_begin(&self) -> u64 {
        let mut spins = 0u32;
        loop {
            let s = self.seq.load(Ordering::Acquire);
            if s.is_multiple_of(2) {
                return s;
            }
            spins += 1;
            #[cfg(loom)]
            {
                // Loom explores preemption itself: yielding is all a waiting reader does.
                let _ = spins;
                loom::thread::yield_now();
            }
            #[cfg(not(loom))]
            if spins < 64 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }

    fn read_fallback(&self, i: usize) -> NodeMask {
        let slot = &self.fallbacks[i * self.words..(i + 1) * self.words];
        let mut words = [0u64; MASK_WORDS];
        for (w, a) in words.iter_mut().zip(slot) {
            *w = a.load(Ordering::Acquire);
        }
        NodeMask::from_words(words)
    }

    /// Publishes `new` as the table, inside a sequence-counter write section, storing only
    /// what changed. The caller holds the lock (`w`).
    fn publish(&self, w: &mut Writer, new: PathGraph) {
        // Only nodes with an entry before or after can have changed (a graph holds
        // non-terminal entries only), so a store costs what the graph holds, not the table.
        let nodes: std::collections::BTreeSet<NodeId> =
            w.graph.iter().chain(new.iter()).map(|(n, _)| n).collect();
        let changed: Vec<(NodeId, Entry, Entry)> = nodes
            .into_iter()
            .filter_map(|n| {
                let (old, new) = (w.graph.entry(n), new.entry(n));
                (old != new).then_some((n, old, new))
            })
            .collect();
        if !changed.is_empty() {
            self.seq.store(w.seq + 1, Ordering::Release);
            for (n, old, new) in &changed {
                let i = n.index();
                let slot = &self.fallbacks[i * self.words..(i + 1) * self.words];
                let (old_words, new_words) = (old.fallback.words(), new.fallback.words());
                for (k, a) in slot.iter().enumerate() {
                    if old_words[k] != new_words[k] {
                        a.store(new_words[k], Ordering::Release);
                    }
                }
                if old.target != new.target {
                    let raw = new.target.map_or(TERMINAL, NodeId::as_i32);
                    self.targets[i].store(raw, Ordering::Release);
                }
            }
            w.seq += 2;
            self.seq.store(w.seq, Ordering::Release);
        }
        w.graph = new;
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
        Apply(PathGraph),
    }

    fn mask_of(bits: &[bool]) -> NodeMask {
        bits.iter().enumerate().filter(|&(_, &o)| o).map(|(i, _)| id(i)).collect()
    }

    /// A random graph over `n` nodes with random fallbacks: valid or not.
    fn any_graph(n: usize) -> impl Strategy<Value = PathGraph> {
        proptest::collection::vec(
            (
                proptest::option::of(0..n),
                proptest::collection::vec(proptest::bool::weighted(0.2), n),
            ),
            n,
        )
        .prop_map(|entries| {
            let mut g = PathGraph::default();
            for (i, (target, fb)) in entries.into_iter().enumerate() {
                g.set(id(i), Entry { target: target.map(id), fallback: mask_of(&fb) });
            }
            g
        })
    }

    fn op(nodes: usize) -> impl Strategy<Value = Op> {
        let n = nodes;
        prop_oneof![
            8 => (0..n, -2i64..=i64::try_from(n).unwrap()).prop_map(|(a, b)| Op::Store(a, b)),
            1 => proptest::collection::vec(proptest::bool::weighted(0.8), n).prop_map(Op::Online),
            2 => any_graph(n).prop_map(Op::Apply),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        /// After any sequence of stores, whole-graph applies (with fallbacks) and online
        /// changes, from every node, following the stored targets ends at a terminal node in
        /// fewer than MAX_NUMNODES steps, no cycle exists through targets or fallbacks, and a
        /// rejected change changed nothing.
        #[test]
        fn no_store_sequence_forms_a_cycle(
            (nodes, ops, online) in (1usize..9).prop_flat_map(|n| (
                Just(n),
                proptest::collection::vec(op(n), 1..60),
                proptest::collection::vec(proptest::bool::weighted(0.8), n),
            ))
        ) {
            let t = PathTable::with_capacity(nodes, mask_of(&online));
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
                        t.set_online(mask_of(&bits));
                        prop_assert_eq!(&t.snapshot(), &before);
                    }
                    Op::Apply(g) => match t.apply(&g) {
                        Ok(()) => prop_assert_eq!(t.snapshot(), g),
                        Err(errs) => {
                            prop_assert!(!errs.is_empty());
                            prop_assert_eq!(&t.snapshot(), &before, "rejected apply changed the table");
                        }
                    },
                }
                let g = t.snapshot();
                prop_assert_eq!(find_cycle(&g, nodes), None);
                prop_assert!(walk_terminates(&g, nodes));
            }
        }

        /// Graph-level apply never commits a cycle or an offline node, commits exactly the
        /// graph it accepts, and accepts every graph that has neither.
        #[test]
        fn apply_is_all_or_nothing(
            (nodes, g, online) in (1usize..7).prop_flat_map(|n| (
                Just(n),
                any_graph(n),
                proptest::collection::vec(proptest::bool::weighted(0.8), n),
            ))
        ) {
            let online = mask_of(&online);
            let t = PathTable::with_capacity(nodes, online);
            let before = t.snapshot();
            let offline_named = g.iter().any(|(_, e)| e.destinations().any(|d| !online.contains(d)));
            match t.apply(&g) {
                Ok(()) => {
                    prop_assert_eq!(t.snapshot(), g.clone());
                    prop_assert!(find_cycle(&g, nodes).is_none() && !offline_named);
                }
                Err(errs) => {
                    prop_assert!(!errs.is_empty());
                    prop_assert_eq!(t.snapshot(), before);
                    prop_assert!(find_cycle(&g, nodes).is_some() || offline_named);
                }
            }
        }
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    fn id(n: usize) -> NodeId {
        NodeId::new(n).unwrap()
    }

    fn graph(text: &str) -> PathGraph {
        PathGraph::from_toml(text).unwrap()
    }

    fn old() -> PathGraph {
        graph("[node.0]\ntarget = 1\nfallback = \"2\"\n[node.1]\ntarget = 2\n")
    }

    fn new() -> PathGraph {
        graph("[node.2]\ntarget = 1\nfallback = \"0\"\n[node.1]\ntarget = 0\n")
    }

    /// A writer turns `0 -> 1 (fallback 2) -> 2` into `2 -> 1 (fallback 0) -> 0` with one
    /// whole-graph apply while a reader reads. Runs `read` in every interleaving loom finds
    /// and returns how many there were.
    fn model(read: fn(&PathTable) -> PathGraph) -> usize {
        static RUNS: AtomicUsize = AtomicUsize::new(0);
        RUNS.store(0, std::sync::atomic::Ordering::Relaxed);
        loom::model(move || {
            RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let t = Arc::new(PathTable::with_capacity(3, NodeMask::first(3)));
            t.apply(&old()).unwrap();
            let w = Arc::clone(&t);
            let writer = loom::thread::spawn(move || w.apply(&new()).unwrap());
            let seen = read(&t);
            assert!(seen == old() || seen == new(), "reader saw a mix: {seen:?}");
            for n in 0..3 {
                assert!(seen.cycle_through(id(n)).is_none(), "reader saw a cycle: {seen:?}");
            }
            let v = t.show(id(1)).unwrap();
            assert!(v == 2 || v == 0, "invented entry {v}");
            writer.join().unwrap();
            assert_eq!(t.snapshot(), new());
        });
        RUNS.load(std::sync::atomic::Ordering::Relaxed)
    }

    #[test]
    fn snapshots_are_the_old_table_or_the_new_one() {
        let runs = model(PathTable::snapshot);
        assert!(runs > 10, "loom explored only {runs} interleavings: the model is degenerate");
    }

    /// The negative control: without the sequence check, some interleaving shows a mix of
    /// the two tables. If this stops failing, the model above proves nothing.
    #[test]
    #[should_panic(expected = "reader saw a")]
    fn without_the_sequence_check_a_reader_sees_a_mix() {
        model(|t| {
            let mut g = PathGraph::default();
            for i in 0..3 {
                let target = usize::try_from(t.targets[i].load(Ordering::Acquire)).ok();
                let target = target.and_then(NodeId::new);
                g.set(id(i), Entry { target, fallback: t.read_fallback(i) });
            }
            g
        });
    }
}
