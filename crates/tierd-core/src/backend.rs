//! The narrow seam the policy acts through: what a machine tells tierd about its memory and
//! what tierd can ask it to do.
//!
//! A [`Backend`] reports, per node, its size, free memory and the kernel's watermarks
//! ([`NodeMemory`]); ranks the pages (or regions) of a node by access heat ([`Backend::coldest`]
//! and [`Backend::hottest`]); and moves pages between nodes with one result per page
//! ([`Backend::move_pages`]), exactly the shape of `move_pages(2)`'s status array. The
//! simulator implements it over its page array; the Linux backend implements it with
//! per-node `meminfo`/`zoneinfo`, DAMON (or idle page tracking) for heat and `move_pages(2)`.
//!
//! Ranking lives in the backend, not in the policy, because only the backend knows how heat
//! is tracked (an LRU walk, DAMON regions, a bitmap) and can find the coldest pages without
//! handing every page of the machine to the policy. The policy only decides how many pages
//! move, where, and when.
//!
//! Everything is counted in pages of [`Backend::page_size`] bytes.

use std::fmt;
use std::hash::Hash;

use crate::node::{NodeId, NodeMask};

/// A node's memory, in pages, as the kernel accounts it (one zone per node).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeMemory {
    /// Pages the node manages (`MemTotal`).
    pub total: u64,
    /// Free pages (`MemFree`).
    pub free: u64,
    /// The `min` watermark: below it, allocations reclaim directly.
    pub wmark_min: u64,
    /// The `low` watermark: below it, the allocator wakes kswapd.
    pub wmark_low: u64,
    /// The `high` watermark: kswapd stops once free memory is back above it.
    pub wmark_high: u64,
}

impl NodeMemory {
    /// Free pages above the `high` watermark (zero when below it).
    pub fn free_above_high(&self) -> u64 {
        self.free.saturating_sub(self.wmark_high)
    }
}

/// How hot a page (or region) is, as the backend's tracker measured it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageHeat<P> {
    /// The page (or the region's handle).
    pub page: P,
    /// Accesses seen in the tracker's last window; 0 = idle. Comparable only within one
    /// backend.
    pub heat: u32,
}

/// Why one page did not move: the `-errno` values `move_pages(2)` reports per page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum MoveError {
    /// `EBUSY`: the page is in use (pinned, under I/O, locked) right now; try later.
    #[error("page busy")]
    Busy,
    /// `ENOMEM`: the target node has no room.
    #[error("target node out of memory")]
    NoMem,
    /// `EFAULT`: the address is not mapped (the process unmapped it, or it was never touched).
    #[error("page not mapped")]
    Fault,
    /// `ENOENT`: the page is not present (swapped out, or gone with its process).
    #[error("page not present")]
    NoEnt,
    /// `EACCES`: the page is shared and the caller may not move shared pages.
    #[error("page shared")]
    Access,
    /// `EPERM`: not allowed (a missing capability, a mempolicy that forbids the node).
    #[error("not permitted")]
    Perm,
}

impl MoveError {
    /// The errno `move_pages(2)` reports (positive).
    pub const fn errno(self) -> i32 {
        match self {
            MoveError::Busy => 16,
            MoveError::NoMem => 12,
            MoveError::Fault => 14,
            MoveError::NoEnt => 2,
            MoveError::Access => 13,
            MoveError::Perm => 1,
        }
    }

    /// The error for a negated errno from a `move_pages(2)` status array, if it is one the
    /// syscall documents.
    pub const fn from_errno(errno: i32) -> Option<MoveError> {
        Some(match errno {
            16 => MoveError::Busy,
            12 => MoveError::NoMem,
            14 => MoveError::Fault,
            2 => MoveError::NoEnt,
            13 => MoveError::Access,
            1 => MoveError::Perm,
            _ => return None,
        })
    }
}

/// The result of moving one page: the node it is on now, or why it did not move.
pub type MoveStatus = Result<NodeId, MoveError>;

/// A machine tierd can observe and move memory on. See the module documentation.
///
/// Calls take `&mut self` because trackers keep state (a scan position, a DAMON snapshot)
/// and a real backend performs I/O; a backend is driven by one policy thread.
pub trait Backend {
    /// A unit of placement the backend can name and move: a simulated page index, or a
    /// `(pid, virtual page)` pair on Linux. Region trackers hand out one handle per page of a
    /// region they rank.
    type Page: Copy + Eq + Hash + fmt::Debug;

    /// Bytes per page.
    fn page_size(&self) -> u64;

    /// The online nodes with memory.
    fn memory_nodes(&self) -> NodeMask;

    /// The memory of `node`, or `None` when the node is not online (absent is not zero).
    fn node_memory(&self, node: NodeId) -> Option<NodeMemory>;

    /// Appends to `out` up to `max` pages of `node` that are idle by the backend's tracker,
    /// coldest first. Pages the tracker saw in use are not returned (a simulator or an LRU
    /// backend may age them as reclaim would). May return fewer than exist.
    fn coldest(&mut self, node: NodeId, max: usize, out: &mut Vec<PageHeat<Self::Page>>);

    /// Appends to `out` up to `max` pages of `node` that the tracker saw accessed repeatedly
    /// since the previous call, hottest first. Each hot page is reported once per window.
    fn hottest(&mut self, node: NodeId, max: usize, out: &mut Vec<PageHeat<Self::Page>>);

    /// Moves `pages` to node `to`, replacing `status` with one result per page, in order, as
    /// `move_pages(2)` fills its status array. A page already on `to` reports `Ok(to)`.
    fn move_pages(&mut self, pages: &[Self::Page], to: NodeId, status: &mut Vec<MoveStatus>);

    /// Whether this tick's time for work that can wait is spent. The policy asks between
    /// batches of housekeeping (demotion from nodes that no allocation is draining) and
    /// leaves the rest to the next tick, so that a slow move does not keep a node that
    /// programs allocate on unobserved; urgent work does not ask. The default is never: a
    /// simulated machine moves in no time.
    fn out_of_time(&self) -> bool {
        false
    }

    /// Whether this tick has run as long as any tick may. The policy asks between chunks of
    /// demotion, urgent demotion included, and leaves the rest to the next tick, so that the
    /// caller samples heat and free memory again: a tick that demotes for many seconds (a slow
    /// host, a large shortfall, no rate limit) would leave a hot page found meanwhile waiting
    /// that long. Promotion is bounded by its own rate instead. The default is never: a
    /// simulated machine moves in no time.
    fn tick_over(&self) -> bool {
        false
    }
}

/// The nodes a backend's test prepared for [`backend_contract`].
#[derive(Clone, Copy, Debug)]
pub struct ContractNodes {
    /// A node with at least four idle pages, and more of them than `small` has room for.
    pub cold: NodeId,
    /// A node with room for at least four pages, above its `low` watermark.
    pub roomy: NodeId,
    /// A node that fills up: moving `cold`'s idle pages there ends in [`MoveError::NoMem`].
    /// It may be `roomy` (the contract moves four pages there first).
    pub small: NodeId,
    /// A node with pages accessed repeatedly in the tracker's current window.
    pub hot: NodeId,
}

/// The contract every [`Backend`] keeps, as a test helper each backend's tests call (the
/// simulator on a small machine, the Linux backend on a fake sysfs tree), so that the two
/// cannot drift apart. Panics with a message naming the broken rule.
///
/// Every rule is checked on pages that exist, so a backend that finds nothing fails it:
/// idle pages are found, on the node asked, coldest first; hot pages likewise, hottest
/// first, each reported once per window; a page moved leaves its node for the target; a
/// move to a full node is `NoMem` and leaves the page where it was; absent nodes have no
/// memory and no pages. `b` must be prepared as [`ContractNodes`] says and be quiet
/// (nothing else allocating) while the contract runs.
#[allow(clippy::too_many_lines)] // one rule after another, each with its message
pub fn backend_contract<B: Backend>(b: &mut B, at: ContractNodes) {
    let nodes = b.memory_nodes();
    assert!(nodes.len() >= 2, "the contract needs two memory nodes, got {nodes}");
    assert!(b.page_size().is_power_of_two(), "page size {} is not a power of two", b.page_size());
    for n in nodes.iter() {
        let m = b.node_memory(n).unwrap_or_else(|| panic!("node {n} is listed but has no memory"));
        assert!(m.free <= m.total, "node {n}: free {} > total {}", m.free, m.total);
        assert!(
            m.wmark_min <= m.wmark_low && m.wmark_low <= m.wmark_high,
            "node {n}: watermarks out of order {m:?}"
        );
    }
    for n in [at.cold, at.roomy, at.small, at.hot] {
        assert!(nodes.contains(n), "node {n} named for the contract is not a memory node");
    }
    let absent = (0..crate::MAX_NUMNODES)
        .filter_map(NodeId::new)
        .find(|n| !nodes.contains(*n))
        .expect("some node id is unused");
    assert_eq!(b.node_memory(absent), None, "node {absent} is not a memory node: absent, not zero");
    let mut none = Vec::new();
    b.coldest(absent, 4, &mut none);
    b.hottest(absent, 4, &mut none);
    assert!(none.is_empty(), "pages reported on node {absent}, which is absent");

    // Idle pages are found, at most as many as asked, distinct, coldest first, on the node.
    let mut cold = Vec::new();
    b.coldest(at.cold, 4, &mut cold);
    assert!(!cold.is_empty(), "coldest found no idle page on node {}, which has some", at.cold);
    assert!(cold.len() <= 4, "coldest returned {} pages for max 4", cold.len());
    assert!(cold.windows(2).all(|w| w[0].heat <= w[1].heat), "coldest not coldest first");
    let cold: Vec<B::Page> = cold.iter().map(|h| h.page).collect();
    assert_distinct(&cold, "coldest");
    assert_on(b, &cold, at.cold, "coldest");

    // Hot pages likewise, hottest first, each once per window.
    let mut hot = Vec::new();
    b.hottest(at.hot, 4, &mut hot);
    assert!(!hot.is_empty(), "hottest found no hot page on node {}, which has some", at.hot);
    assert!(hot.len() <= 4, "hottest returned {} pages for max 4", hot.len());
    assert!(hot.windows(2).all(|w| w[0].heat >= w[1].heat), "hottest not hottest first");
    let hot: Vec<B::Page> = hot.iter().map(|h| h.page).collect();
    assert_distinct(&hot, "hottest");
    assert_on(b, &hot, at.hot, "hottest");
    let mut again = Vec::new();
    b.hottest(at.hot, 1 << 16, &mut again);
    if let Some(p) = again.iter().find(|h| hot.contains(&h.page)) {
        panic!("hot page {:?} reported twice in one window", p.page);
    }

    // One status per page, in order; a moved page leaves its node for the target.
    let mut status = vec![Err(MoveError::Busy); 1];
    let before_from = b.node_memory(at.cold).expect("listed").free;
    let before_to = b.node_memory(at.roomy).expect("listed").free;
    b.move_pages(&cold, at.roomy, &mut status);
    assert_eq!(status.len(), cold.len(), "one status per page");
    for s in &status {
        assert!(matches!(s, Ok(n) if *n == at.roomy) || s.is_err(), "moved somewhere else: {s:?}");
    }
    let moved: Vec<B::Page> =
        cold.iter().zip(&status).filter(|(_, s)| s.is_ok()).map(|(p, _)| *p).collect();
    assert!(
        !moved.is_empty(),
        "no idle page of node {} moved to {}: {status:?}",
        at.cold,
        at.roomy
    );
    let after_from = b.node_memory(at.cold).expect("listed").free;
    let after_to = b.node_memory(at.roomy).expect("listed").free;
    let n = moved.len() as u64;
    assert_eq!(after_from, before_from + n, "node {} did not free the {n} moved pages", at.cold);
    assert_eq!(after_to + n, before_to, "node {} did not take the {n} moved pages", at.roomy);
    assert_on(b, &moved, at.roomy, "moved");

    // A node that is full: the move is NoMem and the page stays where it was.
    let mut refused = Vec::new();
    for _ in 0..64 {
        let mut batch = Vec::new();
        b.coldest(at.cold, 256, &mut batch);
        if batch.is_empty() {
            break;
        }
        let pages: Vec<B::Page> = batch.iter().map(|h| h.page).collect();
        b.move_pages(&pages, at.small, &mut status);
        assert_eq!(status.len(), pages.len(), "one status per page");
        refused.extend(
            pages
                .iter()
                .zip(&status)
                .filter(|(_, s)| **s == Err(MoveError::NoMem))
                .map(|(p, _)| *p),
        );
        if !refused.is_empty() {
            break;
        }
    }
    assert!(
        !refused.is_empty(),
        "moving node {}'s idle pages to node {} never reported NoMem: it must fill",
        at.cold,
        at.small
    );
    assert_on(b, &refused, at.cold, "refused with NoMem");

    // An empty request is answered with an empty status list.
    b.move_pages(&[], at.roomy, &mut status);
    assert!(status.is_empty(), "status not replaced for an empty request");
}

fn assert_distinct<P: Eq + Hash + fmt::Debug>(pages: &[P], what: &str) {
    let set: std::collections::HashSet<&P> = pages.iter().collect();
    assert_eq!(set.len(), pages.len(), "{what} reported a page twice: {pages:?}");
}

/// Checks that every page of `pages` is on `node`: a move to the node a page is on is a
/// no-op that reports the node and changes no node's free memory.
fn assert_on<B: Backend>(b: &mut B, pages: &[B::Page], node: NodeId, what: &str) {
    let nodes: Vec<NodeId> = b.memory_nodes().iter().collect();
    let free = |b: &B| -> Vec<u64> {
        nodes.iter().map(|n| b.node_memory(*n).map_or(0, |m| m.free)).collect()
    };
    let before = free(b);
    let mut status = Vec::new();
    b.move_pages(pages, node, &mut status);
    for (p, s) in pages.iter().zip(&status) {
        assert_eq!(*s, Ok(node), "{what} page {p:?} is not on node {node}");
    }
    assert_eq!(free(b), before, "{what}: moving pages to the node they are on changed memory");
}

/// The policy's contract, run against every backend with the same expectations: one tick
/// of [`crate::policy::Tierd`] over a backend whose node `from` is short of headroom moves
/// pages out of `from` only along its migration path, never more than the shortfall, and
/// every page that leaves `from` arrives at one of its destinations (target or fallbacks);
/// nodes off the path don't change; a node with enough headroom moves nothing.
///
/// `b` must be quiet (nothing else allocating), with idle pages on `from` and room on its
/// target. Panics with a message naming the broken rule.
pub fn policy_contract<B: Backend>(
    b: &mut B,
    topology: &crate::Topology,
    graph: &crate::PathGraph,
    from: NodeId,
) {
    use crate::policy::{PolicyConfig, Tierd};
    let nodes: Vec<NodeId> = b.memory_nodes().iter().collect();
    let free = |b: &B| -> Vec<u64> {
        nodes.iter().map(|n| b.node_memory(*n).map_or(0, |m| m.free)).collect()
    };
    let m = b.node_memory(from).expect("`from` is a memory node");
    // A headroom that leaves `from` short by an eighth of its size.
    let want_free = m.free + m.total / 8;
    #[allow(clippy::cast_precision_loss)]
    let pct = (want_free.saturating_sub(m.wmark_high) as f64 * 100.0 / m.total as f64).min(95.0);
    let config = PolicyConfig {
        headroom_pct: pct,
        burst_factor: 0.0,
        promote: false,
        demote_mib_per_s: u64::MAX >> 24,
        ..PolicyConfig::default()
    };
    let before = free(b);
    let mut policy: Tierd<B::Page> = Tierd::new(config.clone(), topology, graph);
    let stats = policy.tick(config.interval_ms * 1_000_000, b);
    let after = free(b);
    let i = nodes.iter().position(|n| *n == from).expect("listed");
    let shortfall = m.total / 8;
    assert!(stats.demoted > 0, "node {from} is short by {shortfall} pages but nothing moved");
    assert!(
        stats.demoted <= shortfall + 1,
        "{} pages moved for a shortfall of {shortfall}",
        stats.demoted
    );
    assert_eq!(after[i] - before[i], stats.demoted, "node {from} freed what the policy moved");
    let dests: NodeMask = graph.entry(from).destinations().collect();
    let mut arrived = 0;
    for (k, n) in nodes.iter().enumerate() {
        if k == i {
            continue;
        }
        let lost = before[k].saturating_sub(after[k]);
        if dests.contains(*n) {
            arrived += lost;
        } else {
            assert_eq!(before[k], after[k], "node {n} is not on node {from}'s path but changed");
        }
    }
    assert_eq!(arrived, stats.demoted, "pages that left node {from} arrived on its path");

    // With the headroom met, the next tick moves nothing.
    let relaxed = PolicyConfig { headroom_pct: 0.0, ..config };
    let mut policy: Tierd<B::Page> = Tierd::new(relaxed.clone(), topology, graph);
    let stats = policy.tick(relaxed.interval_ms * 2_000_000, b);
    assert_eq!((stats.demoted, stats.promoted), (0, 0), "a node with its headroom moved pages");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_round_trips() {
        for e in [
            MoveError::Busy,
            MoveError::NoMem,
            MoveError::Fault,
            MoveError::NoEnt,
            MoveError::Access,
            MoveError::Perm,
        ] {
            assert_eq!(MoveError::from_errno(e.errno()), Some(e));
        }
        assert_eq!(MoveError::from_errno(22), None);
    }

    #[test]
    fn free_above_high_saturates() {
        let m = NodeMemory { total: 100, free: 5, wmark_min: 1, wmark_low: 2, wmark_high: 10 };
        assert_eq!(m.free_above_high(), 0);
        assert_eq!(NodeMemory { free: 15, ..m }.free_above_high(), 5);
    }
}
