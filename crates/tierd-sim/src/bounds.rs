//! Two bounds computed from the trace itself, to say how far a policy is from the best.
//!
//! - **Static top-k**: the hottest pages of the whole trace pinned in the fastest nodes, the
//!   next hottest in the next nodes, and so on, never moved. What a perfect offline
//!   placement without migration gets.
//! - **Belady with bypass**: the most accesses any policy could serve from the fast tier
//!   with free, instant migrations, counting (as the simulator does) only accesses to pages
//!   already there. On a miss the page may be brought in, evicting the page used farthest in
//!   the future, or bypassed when its own next use is farther than all of theirs. Bypass
//!   makes Belady's MIN optimal for this setting, and prefetching cannot beat a demand policy
//!   (any prefetching schedule can be made lazy without losing a hit), so no policy exceeds it.

use std::collections::BinaryHeap;

/// The static best placement.
#[derive(Clone, Debug, PartialEq)]
pub struct StaticBound {
    /// Accesses served by the fast nodes, as a fraction of all accesses (first touches are
    /// faults, not hits).
    pub fast_hit_ratio: f64,
    /// Average access time, ns, with the simulator's costs (first touches cost a fault;
    /// pages beyond all memory cost a swap fault per access).
    pub amat_ns: f64,
}

/// Accesses per page.
pub fn page_counts(trace: &[u32], pages: usize) -> Vec<u32> {
    let mut counts = vec![0u32; pages];
    for &p in trace {
        counts[p as usize] = counts[p as usize].saturating_add(1);
    }
    counts
}

/// Static top-k over `trace`. `nodes` are `(pages, latency_ns, is_fast)`, any order.
pub fn static_top_k(
    trace: &[u32],
    pages: usize,
    nodes: &[(u64, u64, bool)],
    first_touch_ns: u64,
    swap_fault_ns: u64,
) -> StaticBound {
    let counts = page_counts(trace, pages);
    static_from_counts(counts, trace.len() as u64, nodes, first_touch_ns, swap_fault_ns)
}

/// Static top-k from accesses per page (`accesses` in all).
pub fn static_from_counts(
    mut counts: Vec<u32>,
    accesses: u64,
    nodes: &[(u64, u64, bool)],
    first_touch_ns: u64,
    swap_fault_ns: u64,
) -> StaticBound {
    let touched = counts.iter().filter(|c| **c > 0).count() as u64;
    counts.sort_unstable_by(|a, b| b.cmp(a));
    let mut order: Vec<(u64, u64, bool)> = nodes.to_vec();
    order.sort_by_key(|n| n.1);
    let mut fast_hits = 0u64;
    let mut time = u128::from(touched) * u128::from(first_touch_ns);
    let mut it = counts.iter().map(|c| u64::from(*c)).filter(|c| *c > 0);
    for (cap, lat, fast) in order {
        for c in it.by_ref().take(usize::try_from(cap).unwrap_or(usize::MAX)) {
            // The first access is the fault.
            let hits = c - 1;
            time += u128::from(hits) * u128::from(lat);
            if fast {
                fast_hits += hits;
            }
        }
    }
    for c in it {
        time += u128::from(c - 1) * u128::from(swap_fault_ns);
    }
    #[allow(clippy::cast_precision_loss)]
    let n = accesses.max(1) as f64;
    #[allow(clippy::cast_precision_loss)]
    StaticBound { fast_hit_ratio: fast_hits as f64 / n, amat_ns: time as f64 / n }
}

/// Belady-with-bypass hits for a fast tier of `capacity` pages, as a fraction of all accesses.
pub fn belady_bypass(trace: &[u32], pages: usize, capacity: u64) -> f64 {
    const NEVER: u32 = u32::MAX;
    assert!(trace.len() < NEVER as usize, "trace too long for the Belady bound");
    // next[i]: the position of the next access to the page accessed at i.
    let mut next = vec![NEVER; trace.len()];
    let mut last = vec![NEVER; pages];
    for i in (0..trace.len()).rev() {
        let p = trace[i] as usize;
        next[i] = last[p];
        #[allow(clippy::cast_possible_truncation)] // checked above
        {
            last[p] = i as u32;
        }
    }
    drop(last);
    let cap = usize::try_from(capacity).unwrap_or(usize::MAX);
    let mut in_cache = vec![false; pages];
    // The next use of each cached page; heap entries that disagree are stale.
    let mut cur = vec![NEVER; pages];
    let mut heap: BinaryHeap<(u32, u32)> = BinaryHeap::new();
    let mut size = 0usize;
    let mut hits = 0u64;
    for (i, &p) in trace.iter().enumerate() {
        let pi = p as usize;
        let nx = next[i];
        if in_cache[pi] {
            hits += 1;
            cur[pi] = nx;
            heap.push((nx, p));
        } else if cap > 0 && nx != NEVER {
            if size < cap {
                in_cache[pi] = true;
                cur[pi] = nx;
                heap.push((nx, p));
                size += 1;
            } else {
                // The cached page used farthest in the future.
                while let Some(&(t, q)) = heap.peek() {
                    if in_cache[q as usize] && cur[q as usize] == t {
                        break;
                    }
                    heap.pop();
                }
                let &(far, q) = heap.peek().expect("a full cache has a valid entry");
                if far > nx {
                    heap.pop();
                    in_cache[q as usize] = false;
                    in_cache[pi] = true;
                    cur[pi] = nx;
                    heap.push((nx, p));
                }
            }
        }
        if heap.len() > 4 * cap + 1024 {
            heap.retain(|&(t, q)| in_cache[q as usize] && cur[q as usize] == t);
        }
    }
    #[allow(clippy::cast_precision_loss)]
    let ratio = hits as f64 / trace.len().max(1) as f64;
    ratio
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn belady_on_a_known_sequence() {
        // Capacity 1: a b a b ... keeps one of them: every other access to it hits.
        let trace = [0, 1, 0, 1, 0, 1];
        let r = belady_bypass(&trace, 2, 1);
        assert!((r - 2.0 / 6.0).abs() < 1e-9, "{r}");
        // Capacity 2: everything after the first touches hits.
        assert!((belady_bypass(&trace, 2, 2) - 4.0 / 6.0).abs() < 1e-9);
        // Bypass: a page used once does not evict a page used again.
        let trace = [0, 1, 2, 3, 0, 0];
        assert!((belady_bypass(&trace, 4, 1) - 2.0 / 6.0).abs() < 1e-9);
    }

    #[test]
    fn static_bound_pins_the_hottest() {
        let trace = [0, 0, 0, 1, 1, 2];
        let b = static_top_k(&trace, 3, &[(1, 100, false), (1, 10, true)], 0, 0);
        assert!((b.fast_hit_ratio - 2.0 / 6.0).abs() < 1e-9);
        assert!((b.amat_ns - (2.0 * 10.0 + 100.0) / 6.0).abs() < 1e-9);
    }
}
