//! Ranking the tracker's regions coldest or hottest first, and scanning a node's pages in
//! that order.

use super::{
    BTreeMap, LinuxBackend, MAX_QUERY, MIN_QUERY, NodeId, PROBES, PageHeat, PageMover, PageRef,
    Region, Seen,
};

/// A position in a ranking: the region, and the page within it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Cursor {
    pub(super) region: usize,
    pub(super) page: u64,
}

/// One window's ranking (coldest or hottest first) and each node's order of it (the regions
/// a probe found on the node first) and position in that order.
#[derive(Debug, Default)]
pub(super) struct Ranking {
    pub(super) regions: Vec<Region>,
    pub(super) orders: BTreeMap<NodeId, Vec<usize>>,
    pub(super) cursors: BTreeMap<NodeId, Cursor>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Cold,
    Hot,
}

impl<M: PageMover> LinuxBackend<M> {
    /// The ranking of `kind` for this window, built on first use.
    pub(super) fn ranking(&mut self, kind: Kind) -> Ranking {
        let slot = match kind {
            Kind::Cold => &mut self.cold,
            Kind::Hot => &mut self.hot,
        };
        if let Some(r) = slot.take() {
            return r;
        }
        let regions = match kind {
            Kind::Cold => self.sample.coldest(self.cold_max_accesses()),
            Kind::Hot => self.sample.hottest(1),
        };
        Ranking { regions, orders: BTreeMap::new(), cursors: BTreeMap::new() }
    }

    /// Up to [`PROBES`] pages spread over `r`, first page first.
    pub(super) fn probes(&self, r: &Region) -> impl Iterator<Item = PageRef> + use<M> {
        let first = r.start / self.page_size;
        let pages = r.end.div_ceil(self.page_size).saturating_sub(first);
        let n = pages.min(PROBES);
        let pid = r.pid;
        (0..n).map(move |k| PageRef { pid, vpn: crate::tracker::Vpn(first + k * pages / n) })
    }

    /// The indices of `regions` in ranking order, those where a probe found a page on `node`
    /// first. The probes' placement is cached like any other, so each page is still queried
    /// at most once a window. Without this, a node's first scan would query its way through
    /// every page of the colder regions that live elsewhere (a lower tier full of cold
    /// pages) before it reached its own: half a second on the test bed, with nothing cached,
    /// just when a filling node needed its first demotion (daemon-cascade).
    pub(super) fn probe_order(&mut self, regions: &[Region], node: NodeId) -> Vec<usize> {
        let probes: Vec<PageRef> =
            regions.iter().filter(|r| !self.skipped(r.pid)).flat_map(|r| self.probes(r)).collect();
        self.resolve(&probes);
        let on_node = |b: &Self, r: &Region| {
            b.probes(r).any(|p| b.placement.get(&p) == Some(&Seen::On(node)))
        };
        let (mut order, rest): (Vec<usize>, Vec<usize>) =
            (0..regions.len()).partition(|&i| on_node(self, &regions[i]));
        order.extend(rest);
        order
    }

    /// Appends up to `max` pages of `node` from the ranking of `kind`, from the node's cursor
    /// on, querying placement a chunk at a time.
    pub(super) fn scan(
        &mut self,
        kind: Kind,
        node: NodeId,
        max: usize,
        out: &mut Vec<PageHeat<PageRef>>,
    ) {
        if max == 0 || !self.nodes.contains(node) {
            return;
        }
        let mut ranking = self.ranking(kind);
        // Only the cold ranking is reordered: every region in it is cold, while the hot one
        // must stay hottest first (a warm region probed on the node would otherwise fill
        // `max` with pages below the policy's heat threshold ahead of a hot one).
        let order = match (ranking.orders.remove(&node), kind) {
            (Some(order), _) => order,
            (None, Kind::Cold) => self.probe_order(&ranking.regions, node),
            (None, Kind::Hot) => (0..ranking.regions.len()).collect(),
        };
        let mut cursor = ranking.cursors.get(&node).copied().unwrap_or_default();
        let mut found = 0;
        let mut chunk: Vec<(PageRef, u32, Cursor)> = Vec::new();
        let mut refs: Vec<PageRef> = Vec::new();
        while found < max {
            let want = (max - found).saturating_mul(2).clamp(MIN_QUERY, MAX_QUERY);
            self.gather(&ranking.regions, &order, cursor, want, &mut chunk);
            if chunk.is_empty() {
                cursor = Cursor { region: order.len(), page: 0 };
                break;
            }
            refs.clear();
            refs.extend(chunk.iter().map(|c| c.0));
            self.resolve(&refs);
            for &(page, heat, after) in &chunk {
                cursor = after;
                if self.skipped(page.pid) {
                    continue;
                }
                if self.placement.get(&page) == Some(&Seen::On(node)) {
                    out.push(PageHeat { page, heat });
                    found += 1;
                    if found == max {
                        break;
                    }
                }
            }
        }
        ranking.cursors.insert(node, cursor);
        ranking.orders.insert(node, order);
        match kind {
            Kind::Cold => self.cold = Some(ranking),
            Kind::Hot => self.hot = Some(ranking),
        }
    }

    /// Up to `want` pages of `regions`, taken in `order` (the cursor's `region` indexes it)
    /// from `cursor` on, each with its region's accesses and the cursor just past it;
    /// regions of skipped processes are passed over.
    pub(super) fn gather(
        &self,
        regions: &[Region],
        order: &[usize],
        mut cursor: Cursor,
        want: usize,
        chunk: &mut Vec<(PageRef, u32, Cursor)>,
    ) {
        chunk.clear();
        while chunk.len() < want && cursor.region < order.len() {
            let r = &regions[order[cursor.region]];
            let first = r.start / self.page_size;
            let pages = r.end.div_ceil(self.page_size).saturating_sub(first);
            if self.skipped(r.pid) || cursor.page >= pages {
                cursor = Cursor { region: cursor.region + 1, page: 0 };
                continue;
            }
            let vpn = crate::tracker::Vpn(first + cursor.page);
            cursor.page += 1;
            chunk.push((PageRef { pid: r.pid, vpn }, r.accesses, cursor));
        }
    }
}
