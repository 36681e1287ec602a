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
    page_counts_of(&[trace], pages)
}

/// Accesses per page of a trace held in `chunks`, in order.
pub fn page_counts_of(chunks: &[&[u32]], pages: usize) -> Vec<u32> {
    let mut counts = vec![0u32; pages];
    for &p in chunks.iter().copied().flatten() {
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

/// A set of positions `0..n` whose largest member is found in a few word reads: a 64-ary
/// tree of bit words, level 0 holding the positions and each level above one bit per
/// non-empty word below (a bit is set exactly when the word it stands for is non-zero).
struct PositionSet {
    levels: Vec<Vec<u64>>,
}

impl PositionSet {
    fn new(n: usize) -> PositionSet {
        let mut levels = Vec::new();
        let mut len = n;
        loop {
            let words = len.div_ceil(64).max(1);
            levels.push(vec![0u64; words]);
            if words == 1 {
                return PositionSet { levels };
            }
            len = words;
        }
    }

    #[inline]
    fn contains(&self, i: usize) -> bool {
        self.levels[0][i / 64] & (1 << (i % 64)) != 0
    }

    #[inline]
    fn insert(&mut self, mut i: usize) {
        for level in &mut self.levels {
            let w = &mut level[i / 64];
            let was = *w;
            *w |= 1 << (i % 64);
            if was != 0 {
                return;
            }
            i /= 64;
        }
    }

    #[inline]
    fn remove(&mut self, mut i: usize) {
        for level in &mut self.levels {
            let w = &mut level[i / 64];
            *w &= !(1 << (i % 64));
            if *w != 0 {
                return;
            }
            i /= 64;
        }
    }

    fn max(&self) -> Option<usize> {
        let mut at = 0usize;
        for level in self.levels.iter().rev() {
            let w = level[at];
            if w == 0 {
                return None;
            }
            at = at * 64 + 63 - w.leading_zeros() as usize;
        }
        Some(at)
    }
}

/// Belady-with-bypass hits for a fast tier of `capacity` pages, as a fraction of all accesses.
///
/// The cache is kept as the set of its pages' next-use positions (distinct for distinct
/// pages), so the page to evict is the set's largest member, and the page accessed at `i`
/// is cached exactly when `i` is in the set. Cached pages never used again are only
/// counted: they are evicted first, and which of them goes changes no hit. The same
/// decisions as a max-heap of next uses, without its stale entries and their cache misses.
pub fn belady_bypass(trace: &[u32], pages: usize, capacity: u64) -> f64 {
    belady_bypass_of(&[trace], pages, capacity)
}

/// [`belady_bypass`] of a trace held in `chunks`, in order.
pub fn belady_bypass_of(chunks: &[&[u32]], pages: usize, capacity: u64) -> f64 {
    let len: usize = chunks.iter().map(|c| c.len()).sum();
    #[allow(clippy::cast_precision_loss)]
    let ratio = belady_hits(chunks, pages, capacity) as f64 / len.max(1) as f64;
    ratio
}

/// Belady-with-bypass hits (see [`belady_bypass`]).
fn belady_hits(chunks: &[&[u32]], pages: usize, capacity: u64) -> u64 {
    const NEVER: u32 = u32::MAX;
    let len: usize = chunks.iter().map(|c| c.len()).sum();
    assert!(len < NEVER as usize, "trace too long for the Belady bound");
    // next[i]: the position of the next access to the page accessed at i.
    let mut next = vec![NEVER; len];
    let mut last = vec![NEVER; pages];
    let mut end = len;
    for chunk in chunks.iter().rev() {
        let start = end - chunk.len();
        for (j, (&p, nx)) in chunk.iter().zip(&mut next[start..end]).enumerate().rev() {
            let l = &mut last[p as usize];
            *nx = *l;
            #[allow(clippy::cast_possible_truncation)] // checked above
            {
                *l = (start + j) as u32;
            }
        }
        end = start;
    }
    drop(last);
    let cap = usize::try_from(capacity).unwrap_or(usize::MAX);
    let mut cached = PositionSet::new(len);
    let mut never = 0usize;
    let mut size = 0usize;
    let mut hits = 0u64;
    for (i, &nx) in next.iter().enumerate() {
        if cached.contains(i) {
            hits += 1;
            cached.remove(i);
            if nx == NEVER {
                never += 1;
            } else {
                cached.insert(nx as usize);
            }
        } else if cap > 0 && nx != NEVER {
            if size < cap {
                cached.insert(nx as usize);
                size += 1;
            } else if never > 0 {
                never -= 1;
                cached.insert(nx as usize);
            } else {
                // The cached page used farthest in the future, unless this one is.
                let far = cached.max().expect("a full cache has a member");
                if far > nx as usize {
                    cached.remove(far);
                    cached.insert(nx as usize);
                }
            }
        }
    }
    hits
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BinaryHeap;

    /// Belady with bypass as a max-heap of next uses with stale entries (the first
    /// implementation): the reference the position set must agree with exactly.
    fn belady_by_heap(trace: &[u32], pages: usize, cap: usize) -> u64 {
        const NEVER: u32 = u32::MAX;
        let mut next = vec![NEVER; trace.len()];
        let mut last = vec![NEVER; pages];
        for i in (0..trace.len()).rev() {
            next[i] = last[trace[i] as usize];
            last[trace[i] as usize] = u32::try_from(i).unwrap();
        }
        let mut in_cache = vec![false; pages];
        let mut cur = vec![NEVER; pages];
        let mut heap: BinaryHeap<(u32, u32)> = BinaryHeap::new();
        let (mut size, mut hits) = (0usize, 0u64);
        for (i, &p) in trace.iter().enumerate() {
            let (pi, nx) = (p as usize, next[i]);
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
                    while let Some(&(t, q)) = heap.peek() {
                        if in_cache[q as usize] && cur[q as usize] == t {
                            break;
                        }
                        heap.pop();
                    }
                    let &(far, q) = heap.peek().unwrap();
                    if far > nx {
                        heap.pop();
                        in_cache[q as usize] = false;
                        in_cache[pi] = true;
                        cur[pi] = nx;
                        heap.push((nx, p));
                    }
                }
            }
        }
        hits
    }

    proptest! {
        /// The position set makes the heap's decisions: the same hits on any trace, with
        /// few pages (many never-again ties) and many (a set of several levels).
        #[test]
        fn belady_agrees_with_the_heap(
            pages in 1usize..300,
            cap in 0usize..40,
            draws in proptest::collection::vec(any::<u32>(), 0..6000),
        ) {
            let trace: Vec<u32> = draws.iter().map(|d| d % u32::try_from(pages).unwrap()).collect();
            let want = belady_by_heap(&trace, pages, cap);
            prop_assert_eq!(belady_hits(&[&trace], pages, cap as u64), want);
            // Cut anywhere, the chunks are the same trace.
            let (a, b) = trace.split_at(trace.len() / 3);
            prop_assert_eq!(belady_hits(&[a, &[], b], pages, cap as u64), want);
        }
    }

    #[test]
    fn the_position_set_finds_its_largest_member() {
        let mut s = PositionSet::new(300_000);
        assert_eq!(s.max(), None);
        for i in [5, 64, 4095, 4096, 262_143, 299_999] {
            s.insert(i);
            assert_eq!(s.max(), Some(i));
            assert!(s.contains(i));
        }
        for (i, then) in [(299_999, 262_143), (262_143, 4096), (4096, 4095), (64, 4095)] {
            s.remove(i);
            assert!(!s.contains(i));
            assert_eq!(s.max(), Some(then));
        }
        s.remove(4095);
        s.remove(5);
        assert_eq!(s.max(), None);
    }

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
