//! The synchronous backstop: what keeps reclaim from swapping while tierd's loop is starved.
//!
//! tierd demotes from userspace, ahead of reclaim. When it gets less CPU than the allocation
//! rate needs (a busy host, a slow one), a fast node still reaches its `low` watermark and
//! kswapd reclaims there. Only a mechanism that runs *inside* reclaim keeps the RFC's promise
//! then, and on stock kernels that is the kernel's own demotion (`demotion_enabled`, 5.15+):
//! reclaim migrates a page to a lower tier instead of swapping or dropping it, synchronously,
//! whatever CPU is left. So tierd switches it on while it runs and keeps it as a safety net
//! under its own, earlier demotion.
//!
//! The kernel's targets come from memory tiers (`establish_demotion_targets`), not from the
//! user's migration paths, and Linux 6.12 offers no way to change them. [`plan`] compares the
//! two. Where every page the kernel can demote from a node lands on that node's user path
//! (perhaps a step further down), nothing needs doing. Where the kernel can put pages on a
//! node that no user path reaches from the nodes programs run on (the test bed's `0 -> 2`
//! with node 1 terminal: the kernel demotes node 0 to node 1), that node is **stranded**:
//! the policy drains it onto the user's destinations of the node the kernel demoted from
//! (placement repair, [`crate::policy::Tierd::set_repair`]), so such pages are off the path
//! only for as long as the mover needs.
//!
//! What this cannot do, and [`Backstop::notes`] says so: a node that the user made terminal
//! (swap there) but the kernel demotes from is demoted, not swapped, while tierd runs (a
//! page kept in slower memory instead of on a swap device, which is what the path's "no
//! target" usually means anyway); and a node whose user path goes on but whose kernel tier is
//! the lowest is not covered (reclaim swaps there when tierd falls behind).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::auto::DemotionTargets;
use crate::graph::PathGraph;
use crate::node::{NodeId, NodeMask};

/// How the kernel's demotion relates to the user's paths.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Backstop {
    /// Stranded nodes and where the policy drains them to, in order.
    pub repair: BTreeMap<NodeId, Vec<NodeId>>,
    /// Nodes with a user target that the kernel cannot demote from (no lower tier).
    pub uncovered: NodeMask,
    /// One sentence per difference between the kernel's targets and the paths.
    pub notes: Vec<String>,
}

impl Backstop {
    /// Whether every page the kernel demotes lands on its node's path, and every node with
    /// a path is covered.
    pub fn exact(&self) -> bool {
        self.repair.is_empty() && self.uncovered.is_empty()
    }

    /// One sentence for `tierd status`: what the backstop does with these paths.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        if self.repair.is_empty() {
            out.push_str("the kernel's demotion targets stay on the migration paths");
        } else {
            out.push_str("the kernel can demote off the migration paths: ");
            let parts: Vec<String> = self
                .repair
                .iter()
                .map(|(k, dests)| {
                    let d: Vec<String> = dests.iter().map(ToString::to_string).collect();
                    format!("pages on node {k} move on to {}", d.join(", then "))
                })
                .collect();
            out.push_str(&parts.join("; "));
            out.push_str(" (placement repair)");
        }
        if !self.uncovered.is_empty() {
            let _ = write!(
                out,
                "; nodes {} have no lower tier: reclaim there may swap when tierd falls behind",
                self.uncovered
            );
        }
        out
    }
}

/// The nodes reachable from `from` along target and fallback edges, `from` excluded.
fn reach(graph: &PathGraph, from: NodeId) -> NodeMask {
    let mut found = NodeMask::EMPTY;
    let mut todo = vec![from];
    while let Some(n) = todo.pop() {
        for d in graph.entry(n).destinations() {
            if d != from && found.insert(d) {
                todo.push(d);
            }
        }
    }
    found
}

/// Compares the kernel's demotion targets (`kernel`, as [`crate::auto::auto`] derives them)
/// with the user's `paths`, for programs running on `homes` (the memory nodes with CPUs;
/// all memory nodes when none has one). See the module documentation.
pub fn plan(
    kernel: &BTreeMap<NodeId, DemotionTargets>,
    paths: &PathGraph,
    homes: NodeMask,
) -> Backstop {
    let homes = if homes.is_empty() { kernel.keys().copied().collect() } else { homes };
    // Where the user's paths can put a page of a program on a home node.
    let mut on_path = homes;
    for h in homes.iter() {
        on_path = on_path.or(&reach(paths, h));
    }
    let mut b = Backstop::default();
    for (&node, t) in kernel.iter().filter(|(n, _)| on_path.contains(**n)) {
        let kernel_dests = t.preferred.or(&t.fallback);
        let user: Vec<NodeId> = paths.entry(node).destinations().collect();
        if kernel_dests.is_empty() {
            if !user.is_empty() {
                b.uncovered.insert(node);
            }
            continue;
        }
        if user.is_empty() {
            b.notes.push(format!(
                "node {node} is terminal on the migration paths, but the kernel demotes it to \
                 {kernel_dests} in reclaim while tierd runs (slower memory instead of swap)"
            ));
            continue;
        }
        let user_reach = reach(paths, node);
        for k in kernel_dests.iter().filter(|k| !user_reach.contains(*k)) {
            if on_path.contains(k) {
                // Off this node's path, but on another one's: pages there are where that
                // path puts them, and its own policy moves them on.
                b.notes.push(format!(
                    "the kernel may demote node {node} to {k}, which is not on node {node}'s \
                     path but on another's: such pages stay there"
                ));
                continue;
            }
            let dests = b.repair.entry(k).or_default();
            for d in &user {
                if !dests.contains(d) {
                    dests.push(*d);
                }
            }
        }
    }
    for (k, dests) in &b.repair {
        let d: Vec<String> = dests.iter().map(ToString::to_string).collect();
        b.notes.push(format!(
            "no migration path leads to node {k}, but the kernel demotes there: tierd moves \
             what lands on node {k} on to {}",
            d.join(", then ")
        ));
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Entry;
    use proptest::prelude::*;

    fn id(n: usize) -> NodeId {
        NodeId::new(n).unwrap()
    }

    fn mask(s: &str) -> NodeMask {
        s.parse().unwrap()
    }

    /// The test bed's kernel targets: 0 -> 1 (fallback 1-2), 1 -> 2, 2 terminal.
    fn test_bed_kernel() -> BTreeMap<NodeId, DemotionTargets> {
        BTreeMap::from([
            (id(0), DemotionTargets { preferred: mask("1"), fallback: mask("1-2") }),
            (id(1), DemotionTargets { preferred: mask("2"), fallback: mask("2") }),
            (id(2), DemotionTargets::default()),
        ])
    }

    fn graph(edges: &[(usize, usize, &str)]) -> PathGraph {
        let mut g = PathGraph::default();
        for &(n, t, f) in edges {
            let fallback = if f.is_empty() { NodeMask::EMPTY } else { mask(f) };
            g.set(id(n), Entry { target: Some(id(t)), fallback });
        }
        g
    }

    #[test]
    fn the_kernels_own_paths_need_no_repair() {
        let b = plan(&test_bed_kernel(), &graph(&[(0, 1, "2"), (1, 2, "")]), mask("0"));
        assert!(b.exact(), "{b:?}");
        assert!(b.notes.is_empty());
        assert_eq!(b.summary(), "the kernel's demotion targets stay on the migration paths");
    }

    #[test]
    fn a_path_that_skips_node_1_strands_node_1_and_drains_it_to_node_2() {
        let b = plan(&test_bed_kernel(), &graph(&[(0, 2, "")]), mask("0"));
        assert_eq!(b.repair, BTreeMap::from([(id(1), vec![id(2)])]));
        assert!(!b.exact());
        assert!(b.summary().contains("pages on node 1 move on to 2"), "{}", b.summary());
    }

    #[test]
    fn a_kernel_target_further_down_the_same_path_is_not_stranded() {
        // User 0 -> 1 -> 2 without fallback: the kernel's fallback 0 -> 2 skips a step but
        // stays on the path.
        let b = plan(&test_bed_kernel(), &graph(&[(0, 1, ""), (1, 2, "")]), mask("0"));
        assert!(b.exact(), "{b:?}");
    }

    #[test]
    fn a_terminal_node_the_kernel_demotes_is_reported_not_repaired() {
        // Node 0 terminal: the user wants swap on node 0; the kernel demotes it anyway.
        let b = plan(&test_bed_kernel(), &PathGraph::default(), mask("0"));
        assert!(b.repair.is_empty());
        assert_eq!(b.notes.len(), 1);
        assert!(b.notes[0].contains("node 0 is terminal"), "{:?}", b.notes);
    }

    #[test]
    fn a_node_with_a_path_but_no_lower_tier_is_uncovered() {
        // The user demotes 2 -> 1 (upwards in the kernel's tiers): 2 has no kernel target.
        let b = plan(&test_bed_kernel(), &graph(&[(0, 2, ""), (2, 1, "")]), mask("0"));
        assert_eq!(b.uncovered, mask("2"));
        assert!(b.repair.is_empty(), "node 1 is on the path 0 -> 2 -> 1: {b:?}");
        assert!(b.summary().contains("nodes 2 have no lower tier"), "{}", b.summary());
    }

    #[test]
    fn several_sources_share_one_stranded_node_in_source_order() {
        // Two CPU nodes 0 and 1 demote (in the kernel) to 2 and 3; the user sends both to 3.
        let kernel = BTreeMap::from([
            (id(0), DemotionTargets { preferred: mask("2"), fallback: mask("2-3") }),
            (id(1), DemotionTargets { preferred: mask("2"), fallback: mask("2-3") }),
            (id(2), DemotionTargets::default()),
            (id(3), DemotionTargets::default()),
        ]);
        let b = plan(&kernel, &graph(&[(0, 3, ""), (1, 3, "")]), mask("0-1"));
        assert_eq!(b.repair, BTreeMap::from([(id(2), vec![id(3)])]));
    }

    fn arb_case() -> impl Strategy<Value = (BTreeMap<NodeId, DemotionTargets>, PathGraph, NodeMask)>
    {
        // Up to 6 nodes, tiers by node order (kernel targets only go to higher ids), a random
        // acyclic user graph (edges to higher ids only), random homes.
        (2usize..=6).prop_flat_map(|n| {
            (
                proptest::collection::vec(any::<u8>(), n),
                proptest::collection::vec((any::<u8>(), any::<u8>()), n),
                1u8..(1 << n),
            )
                .prop_map(move |(kt, ut, homes)| {
                    let mut kernel = BTreeMap::new();
                    let mut paths = PathGraph::default();
                    for i in 0..n {
                        let mut t = DemotionTargets::default();
                        for j in i + 1..n {
                            if kt[i] & (1 << (j % 8)) != 0 {
                                t.fallback.insert(id(j));
                            }
                        }
                        t.preferred = t.fallback.first_node().into_iter().collect();
                        kernel.insert(id(i), t);
                        let (target, fb) = ut[i];
                        let target = i + 1 + usize::from(target) % n;
                        if target < n {
                            let mut fallback = NodeMask::EMPTY;
                            for j in target + 1..n {
                                if fb & (1 << (j % 8)) != 0 {
                                    fallback.insert(id(j));
                                }
                            }
                            paths.set(id(i), Entry { target: Some(id(target)), fallback });
                        }
                    }
                    let homes = (0..n).filter(|i| homes & (1 << i) != 0).map(id).collect();
                    (kernel, paths, homes)
                })
        })
    }

    proptest! {
        /// Every node the kernel can demote a path node's pages to is on some path from the
        /// homes, or is drained by the repair plan onto that node's own path; the repair never
        /// sends a page back up into a node from which it could come again (no cycle with the
        /// paths) and never drains a node onto itself.
        #[test]
        fn every_kernel_demotion_ends_on_a_path(case in arb_case()) {
            let (kernel, paths, homes) = case;
            let b = plan(&kernel, &paths, homes);
            let mut on_path = homes;
            for h in homes.iter() {
                on_path = on_path.or(&reach(&paths, h));
            }
            for (&node, t) in kernel.iter().filter(|(n, _)| on_path.contains(**n)) {
                if paths.entry(node).target.is_none() {
                    continue;
                }
                for k in t.preferred.or(&t.fallback).iter() {
                    let repaired = b.repair.get(&k).is_some_and(|d| {
                        paths.entry(node).destinations().all(|u| d.contains(&u))
                    });
                    prop_assert!(on_path.contains(k) || repaired, "{k} from {node}: {b:?}");
                }
            }
            for (k, dests) in &b.repair {
                prop_assert!(!on_path.contains(*k));
                prop_assert!(!dests.is_empty());
                for d in dests {
                    prop_assert!(d != k);
                    prop_assert!(on_path.contains(*d), "drained to {d}, off every path");
                    prop_assert!(!reach(&paths, *d).contains(*k));
                }
            }
        }
    }
}
