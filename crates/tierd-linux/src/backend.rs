//! The Linux backend: [`LinuxBackend`], the real-host [`Backend`] the shared policy
//! (`tierd_core::policy::Tierd`) drives in `tierd run`.
//!
//! It joins three things this crate already has: the node files (per-node `meminfo`, and
//! `/proc/zoneinfo` for the watermarks, re-read by [`LinuxBackend::refresh`] once per daemon
//! loop), the tracker's latest [`Sample`] (handed over with [`LinuxBackend::set_sample`]), and
//! the [`Mover`] (batched, time-bounded, rate-limited `move_pages(2)` with verified
//! placement).
//!
//! **Ranking.** A sample names regions of processes, not nodes, and can cover gigabytes, so
//! `coldest(node, max)` walks the regions coldest first ([`Sample::coldest`]: fewest
//! accesses, then oldest) page by page and keeps the pages a batched `move_pages` *query*
//! finds on `node`, stopping as soon as it has `max`. A node's first cold scan of a window
//! probes a few pages of every region and walks the regions with a probe on the node first, so it
//! does not query its way through a lower tier's gigabytes of colder pages before it reaches
//! its own (the others follow, in ranking order). Placement is cached for the window: a
//! page is queried at most once per sample, however many nodes ask. Each node has a cursor
//! into the ranking, so within one window a page is offered once per node: a page that did
//! not move (busy, denied, no room anywhere) waits for the next window instead of standing at
//! the head of the list every tick. `hottest` works the same way over [`Sample::hottest`]
//! (regions with at least one access), which is also what makes each hot page reported once
//! per window, as the trait asks. "Cold" means at most [`DEFAULT_COLD_PCT`] percent of the
//! sample's `max_accesses` (so exactly 0 for the idle and soft-dirty trackers, whose figures
//! are 0 or 1, and for DAMON with fewer than 20 checks per window); a page's heat is its
//! region's accesses.
//!
//! **Moving.** `move_pages` groups the request by process and hands each group to the
//! [`Mover`]; the mover's outcome is mapped back to one [`MoveStatus`] per page in the
//! caller's order. When the outcome is clean (everything moved, busy or refused for room) no
//! further call is made; otherwise one placement query says which pages moved and which are
//! gone or denied. The (from, to) pairs of the [`MoveLog`] come from the cached placement
//! (pages not yet cached are queried before they move). The mover counts per-page errors but
//! does not say which page had which, so two details are approximated: a page the query
//! finds unmoved on its node gets the request's denial (`EPERM` if any page had it, else
//! `EACCES`), and a gone page is `EFAULT` or `ENOENT` as the query, not the move, says. The
//! log's counters are the mover's own.
//!
//! **Free memory between refreshes.** After a confirmed move, the cached view of the nodes is
//! adjusted (one page more free on `from`, one less on `to`) so that the policy, which reads
//! `node_memory` again within the same tick (promotion after an exchange, the next fallback
//! target), sees its own moves; the next `refresh` replaces the figures with the kernel's.
//! This also makes the backend contract hold over a fixture whose files do not change. A
//! huge page counts as one page here until the next refresh.
//!
//! **Processes that exit** (`ESRCH`) are dropped for the rest of the window, their pages
//! reported [`MoveError::NoEnt`]; pages the mover had confirmed moved before the exit are
//! still logged. A process whose `move_pages` is refused as a whole (`EPERM`/`EACCES`: no
//! `CAP_SYS_NICE` or ptrace access over it) is skipped until the tracker drops it; every
//! process with a denied page is listed once in [`MoveLog::denied_pids`] for the daemon to
//! report.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use tierd_core::backend::{Backend, MoveError, MoveStatus, NodeMemory, PageHeat};
use tierd_core::{NodeId, NodeMask};

use crate::mover::{Mover, PageMover, Stop};
use crate::read;
use crate::sys::{PageError, PageStatus};
use crate::topology::read_online;
use crate::tracker::{PageRef, Pid, Region, Sample};
use crate::zoneinfo::read_zoneinfo;
use crate::{Error, SysRoot, read_node_meminfo};

/// Regions with at most this percentage of the sample's `max_accesses` count as cold.
pub const DEFAULT_COLD_PCT: u32 = 5;

/// Windows a cached placement is trusted before every page is queried again.
pub const PLACEMENT_WINDOWS: u32 = 8;

/// Fewest and most pages per placement query while ranking.
const MIN_QUERY: usize = 64;
const MAX_QUERY: usize = 4096;

/// Pages queried and moved together while the kernel moves pages too: small enough that
/// reclaim rarely demotes one of them between the query and the move.
const KERNEL_MOVING_CHUNK: usize = 256;

/// Pages per region whose placement is probed before a node's first scan of a window.
const PROBES: u64 = 4;

/// What moved since the last [`LinuxBackend::take_moves`]: the daemon's metrics and
/// `tierd status` figures. Counts are pages.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MoveLog {
    /// Pages confirmed moved, by (from, to). A page asked to move to the node it is already
    /// on is not counted.
    pub moved: BTreeMap<(NodeId, NodeId), u64>,
    /// Pages that did not move, by errno (positive): the kernel's per-page errors, `ESRCH`
    /// for the pages of a process that exited, and the errno of a call refused as a whole
    /// for the pages it left untried.
    pub failures: BTreeMap<i32, u64>,
    /// Pages that were busy (`EBUSY`, or not where the kernel said): to retry later.
    pub busy_retry: u64,
    /// Pages the target had no room for (`ENOMEM`): left where they are.
    pub no_room: u64,
    /// Pages that are gone (unmapped, not present, or their process exited).
    pub gone: u64,
    /// Pages tierd may not move (shared, mlocked, or a process it has no right over).
    pub denied: u64,
    /// Processes with a denied page that no earlier log listed: the daemon reports each once.
    pub denied_pids: Vec<u32>,
    /// `move_pages` calls (moves and placement queries, ranking included).
    pub calls: u64,
    /// Time spent in those calls.
    pub busy_time: Duration,
}

impl MoveLog {
    /// Pages moved, all pairs.
    pub fn moved_total(&self) -> u64 {
        self.moved.values().sum()
    }
}

/// Where a page was found this window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Seen {
    On(NodeId),
    /// Not present, unmapped, or its process is gone: nothing to move.
    Gone,
}

/// A position in a ranking: the region, and the page within it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Cursor {
    region: usize,
    page: u64,
}

/// One window's ranking (coldest or hottest first) and each node's order of it (the regions
/// a probe found on the node first) and position in that order.
#[derive(Debug, Default)]
struct Ranking {
    regions: Vec<Region>,
    orders: BTreeMap<NodeId, Vec<usize>>,
    cursors: BTreeMap<NodeId, Cursor>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Cold,
    Hot,
}

/// The real-host [`Backend`]. See the module documentation.
#[derive(Debug)]
pub struct LinuxBackend<M: PageMover> {
    root: SysRoot,
    mover: Mover<M>,
    page_size: u64,
    cold_pct: u32,
    nodes: NodeMask,
    memory: BTreeMap<NodeId, NodeMemory>,
    sample: Sample,
    cold: Option<Ranking>,
    hot: Option<Ranking>,
    placement: HashMap<PageRef, Seen>,
    /// Windows since the placement cache was last emptied.
    placement_age: u32,
    /// The kernel moved pages itself since the daemon's last loop: see `set_kernel_moving`.
    kernel_moving: bool,
    /// Processes that exited during this window.
    gone_pids: HashSet<Pid>,
    /// Processes whose calls are refused as a whole, until the tracker drops them.
    blocked_pids: HashSet<Pid>,
    /// Processes already listed in a log's `denied_pids`, until the tracker drops them.
    reported_pids: HashSet<Pid>,
    log: MoveLog,
    /// Until when this tick may do housekeeping ([`Backend::out_of_time`]); `None`: always.
    housekeeping_until: Option<std::time::Instant>,
}

impl<M: PageMover> LinuxBackend<M> {
    /// A backend reading the node files under `root` and moving through `mover`, with pages
    /// of `page_size` bytes (`sys::page_size()` on a real host). It knows no node until the
    /// first [`LinuxBackend::refresh`] and no page until the first
    /// [`LinuxBackend::set_sample`]. Panics when `page_size` is not a power of two.
    pub fn new(root: SysRoot, mover: Mover<M>, page_size: u64) -> LinuxBackend<M> {
        assert!(page_size.is_power_of_two(), "page size {page_size} is not a power of two");
        LinuxBackend {
            root,
            mover,
            page_size,
            cold_pct: DEFAULT_COLD_PCT,
            nodes: NodeMask::EMPTY,
            memory: BTreeMap::new(),
            sample: Sample::default(),
            cold: None,
            hot: None,
            placement: HashMap::new(),
            placement_age: 0,
            kernel_moving: false,
            gone_pids: HashSet::new(),
            blocked_pids: HashSet::new(),
            reported_pids: HashSet::new(),
            log: MoveLog::default(),
            housekeeping_until: None,
        }
    }

    /// Sets until when the coming tick may do housekeeping (demotion that can wait); after
    /// that [`Backend::out_of_time`] says so and the policy leaves the rest to the next tick.
    /// `None`: no limit.
    pub fn set_housekeeping_until(&mut self, until: Option<std::time::Instant>) {
        self.housekeeping_until = until;
    }

    /// Re-reads the online memory nodes, each node's `MemTotal`/`MemFree` (per-node
    /// `meminfo`) and watermarks (`/proc/zoneinfo`). Once per daemon loop. A node that went
    /// offline meanwhile, or that zoneinfo does not list yet, is left out until the next
    /// refresh (absent, not zero). On error the previous view is kept.
    pub fn refresh(&mut self) -> Result<(), Error> {
        let online = read_online(&self.root)?;
        let with_memory = read_has_memory(&self.root)?;
        let zones = read_zoneinfo(&self.root)?;
        let mut memory = BTreeMap::new();
        for node in online.and(&with_memory).iter() {
            let Some(info) = read_node_meminfo(&self.root, node)? else { continue };
            let (Some(total), Some(free)) = (info.mem_total_bytes(), info.mem_free_bytes()) else {
                continue;
            };
            let Some(w) = zones.get(&node) else {
                tracing::debug!(%node, "node has memory but no zone in /proc/zoneinfo yet");
                continue;
            };
            let total = total / self.page_size;
            memory.insert(
                node,
                NodeMemory {
                    total,
                    free: (free / self.page_size).min(total),
                    wmark_min: w.min,
                    wmark_low: w.low,
                    wmark_high: w.high,
                },
            );
        }
        self.nodes = memory.keys().copied().collect();
        self.memory = memory;
        Ok(())
    }

    /// Hands over the tracker's latest window. Clears the window's placement cache and
    /// rankings; processes the tracker dropped (exited) are forgotten.
    pub fn set_sample(&mut self, sample: Sample) {
        for pid in &sample.dropped {
            self.blocked_pids.remove(pid);
            self.reported_pids.remove(pid);
        }
        self.sample = sample;
        self.cold = None;
        self.hot = None;
        // Where a page is changes only when tierd moves it (the cache follows its moves), when
        // reclaim swaps it out (a move then reports it gone) or when the kernel's own tiering
        // moves it (while it does, moves query where their pages are first: see
        // `set_kernel_moving`; scans may miss its latest moves until the cache is emptied).
        // So the cache lives for a few
        // windows: re-querying every cold page of every node each window cost the loop a
        // third of its time when a lower node was full of cold pages (daemon-cascade).
        self.placement_age += 1;
        if self.placement_age >= PLACEMENT_WINDOWS {
            self.placement.clear();
            self.placement_age = 0;
        } else {
            self.placement.retain(|_, seen| *seen != Seen::Gone);
        }
        self.gone_pids.clear();
    }

    /// While the kernel moves pages itself (its demotion ran since the last loop), every
    /// move asks where its pages are right before it moves them, instead of trusting the
    /// cache: a page the kernel demoted a moment ago is not logged as moved by tierd, so the
    /// log stays exact (tierd's moves plus the kernel's `pgdemote_*` = `pgmigrate_success`).
    pub fn set_kernel_moving(&mut self, moving: bool) {
        self.kernel_moving = moving;
    }

    /// What moved since the last call.
    pub fn take_moves(&mut self) -> MoveLog {
        std::mem::take(&mut self.log)
    }

    /// The current sample.
    pub fn sample(&self) -> &Sample {
        &self.sample
    }

    /// The mover (its OS seam is the fake, in tests).
    pub fn mover(&mut self) -> &mut Mover<M> {
        &mut self.mover
    }

    /// Regions with at most `pct` percent of the sample's `max_accesses` count as cold
    /// (default [`DEFAULT_COLD_PCT`]). Takes effect with the next sample.
    pub fn set_cold_pct(&mut self, pct: u32) {
        self.cold_pct = pct.min(100);
    }

    /// The most accesses a cold region may show in the current sample.
    pub fn cold_max_accesses(&self) -> u32 {
        let max = u64::from(self.sample.max_accesses) * u64::from(self.cold_pct) / 100;
        u32::try_from(max).unwrap_or(u32::MAX)
    }

    /// Pages whose placement this window already knows (for status and tests).
    pub fn placement_cached(&self) -> usize {
        self.placement.len()
    }

    fn skipped(&self, pid: Pid) -> bool {
        self.gone_pids.contains(&pid) || self.blocked_pids.contains(&pid)
    }

    fn addr(&self, page: PageRef) -> Option<usize> {
        page.vpn.0.checked_mul(self.page_size).and_then(|a| usize::try_from(a).ok())
    }

    /// Lists `pid` in the log's `denied_pids` unless an earlier log did.
    fn report_denied(&mut self, pid: Pid) {
        if self.reported_pids.insert(pid) {
            self.log.denied_pids.push(pid.0);
        }
    }

    /// Queries the placement of the pages of `pages` not cached yet, one call per process
    /// and chunk, and caches it.
    fn resolve(&mut self, pages: &[PageRef]) {
        let mut by_pid: BTreeMap<Pid, Vec<PageRef>> = BTreeMap::new();
        for &p in pages {
            if !self.placement.contains_key(&p) && !self.skipped(p.pid) {
                by_pid.entry(p.pid).or_default().push(p);
            }
        }
        let mut status = Vec::new();
        for (pid, refs) in by_pid {
            let mut addrs = Vec::with_capacity(refs.len());
            let mut known = Vec::with_capacity(refs.len());
            for &r in &refs {
                match self.addr(r) {
                    Some(a) => {
                        addrs.push(a);
                        known.push(r);
                    }
                    None => {
                        self.placement.insert(r, Seen::Gone);
                    }
                }
            }
            for (addrs, known) in addrs.chunks(MAX_QUERY).zip(known.chunks(MAX_QUERY)) {
                match self.query(pid, addrs, &mut status) {
                    Ok(()) => {
                        for (r, s) in known.iter().zip(&status) {
                            let seen = s.node().map_or(Seen::Gone, Seen::On);
                            self.placement.insert(*r, seen);
                        }
                    }
                    Err(errno) => {
                        self.pid_failed(pid, errno);
                        break;
                    }
                }
            }
        }
    }

    /// One placement query through the mover's OS seam, counted and timed in the log.
    fn query(
        &mut self,
        pid: Pid,
        addrs: &[usize],
        status: &mut Vec<PageStatus>,
    ) -> Result<(), i32> {
        status.clear();
        status.resize(addrs.len(), PageStatus::UNSET);
        let os = self.mover.os();
        let start = os.now();
        let result = os.query(pid.0, addrs, status);
        let took = os.now().saturating_duration_since(start);
        self.log.calls += 1;
        self.log.busy_time += took;
        result.map_err(|e| e.errno().unwrap_or(libc::EINVAL))
    }

    /// A call over `pid` failed as a whole with `errno`.
    fn pid_failed(&mut self, pid: Pid, errno: i32) {
        match errno {
            libc::ESRCH => {
                self.gone_pids.insert(pid);
            }
            libc::EPERM | libc::EACCES => {
                self.blocked_pids.insert(pid);
                self.report_denied(pid);
                tracing::debug!(%pid, errno, "move_pages refused for the whole process");
            }
            _ => tracing::debug!(%pid, errno, "move_pages query failed"),
        }
    }

    /// The ranking of `kind` for this window, built on first use.
    fn ranking(&mut self, kind: Kind) -> Ranking {
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
    fn probes(&self, r: &Region) -> impl Iterator<Item = PageRef> + use<M> {
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
    fn probe_order(&mut self, regions: &[Region], node: NodeId) -> Vec<usize> {
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
    fn scan(&mut self, kind: Kind, node: NodeId, max: usize, out: &mut Vec<PageHeat<PageRef>>) {
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
    fn gather(
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

    /// Moves the pages `idx` (indices into `pages`, all of `pid`) to `to`, filling their
    /// entries of `status`.
    fn move_pid(
        &mut self,
        pid: Pid,
        idx: &[usize],
        pages: &[PageRef],
        to: NodeId,
        status: &mut [MoveStatus],
    ) {
        let n = u64::try_from(idx.len()).unwrap_or(u64::MAX);
        let refs: Vec<PageRef> = idx.iter().map(|&i| pages[i]).collect();
        // Where the pages are before they move: the log's `from`. A page last seen gone is
        // asked again (it may have been faulted back in), so that a move is never unlogged;
        // every page is, while the kernel moves pages itself.
        for r in &refs {
            if self.kernel_moving || self.placement.get(r) == Some(&Seen::Gone) {
                self.placement.remove(r);
            }
        }
        self.resolve(&refs);
        if self.gone_pids.contains(&pid) {
            for &i in idx {
                status[i] = Err(MoveError::NoEnt);
            }
            self.log.gone += n;
            *self.log.failures.entry(libc::ESRCH).or_default() += n;
            return;
        }
        if self.blocked_pids.contains(&pid) {
            for &i in idx {
                status[i] = Err(MoveError::Perm);
            }
            self.log.denied += n;
            *self.log.failures.entry(libc::EPERM).or_default() += n;
            return;
        }
        // Pages without a valid address are unmapped by definition.
        let mut addrs = Vec::with_capacity(refs.len());
        let mut at = Vec::with_capacity(refs.len());
        for (k, &r) in refs.iter().enumerate() {
            if let Some(a) = self.addr(r) {
                addrs.push(a);
                at.push(k);
            } else {
                status[idx[k]] = Err(MoveError::Fault);
                self.log.gone += 1;
                *self.log.failures.entry(libc::EFAULT).or_default() += 1;
            }
        }
        let out = self.mover.move_to(pid.0, &addrs, &[to]);
        let (results, failed) = self.settle(pid, &addrs, to, &out);
        for (k, r) in at.iter().zip(results) {
            let r = r.unwrap_or(Err(failed));
            let page = refs[*k];
            status[idx[*k]] = r;
            match r {
                Ok(_) => {
                    if let Some(Seen::On(from)) = self.placement.get(&page).copied()
                        && from != to
                    {
                        *self.log.moved.entry((from, to)).or_default() += 1;
                        self.shift_free(from, to);
                    }
                    self.placement.insert(page, Seen::On(to));
                }
                Err(MoveError::Fault | MoveError::NoEnt) => {
                    self.placement.insert(page, Seen::Gone);
                }
                Err(_) => {}
            }
        }
        self.account(pid, &out, u64::try_from(addrs.len()).unwrap_or(u64::MAX));
    }

    /// Maps the mover's outcome for `addrs` (one process, target `to`) to one result per
    /// address, and says why a page without one did not move. When the outcome is not clean,
    /// one placement query tells moved pages from gone and denied ones.
    fn settle(
        &mut self,
        pid: Pid,
        addrs: &[usize],
        to: NodeId,
        out: &crate::mover::MoveOutcome,
    ) -> (Vec<Option<MoveStatus>>, MoveError) {
        let busy: HashSet<usize> = out.busy.iter().copied().collect();
        let full: HashSet<usize> = out.no_room.iter().copied().collect();
        let mut results: Vec<Option<MoveStatus>> = addrs
            .iter()
            .map(|a| {
                if busy.contains(a) {
                    Some(Err(MoveError::Busy))
                } else if full.contains(a) {
                    Some(Err(MoveError::NoMem))
                } else {
                    None
                }
            })
            .collect();
        let open: Vec<usize> = (0..addrs.len()).filter(|&k| results[k].is_none()).collect();
        // Why a page that is neither moved, busy nor refused for room did not move.
        let failed = match out.stopped {
            Some(Stop::ProcessGone) => MoveError::NoEnt,
            Some(Stop::Denied(e)) => denial(e),
            Some(Stop::Failed(e)) => MoveError::from_errno(e).unwrap_or(MoveError::Busy),
            None if out.failures.contains_key(&libc::EPERM) => MoveError::Perm,
            None if out.failures.contains_key(&libc::EACCES) => MoveError::Access,
            None => MoveError::Perm,
        };
        if open.is_empty() {
            // Every page is busy or refused for room: nothing more to learn.
        } else if out.stopped.is_none() && out.gone == 0 && out.denied == 0 {
            for &k in &open {
                results[k] = Some(Ok(to));
            }
        } else {
            let open_addrs: Vec<usize> = open.iter().map(|&k| addrs[k]).collect();
            let mut now = Vec::new();
            let queried = if out.stopped == Some(Stop::ProcessGone) {
                Err(libc::ESRCH)
            } else {
                self.query(pid, &open_addrs, &mut now)
            };
            if queried.is_ok() {
                for (&k, s) in open.iter().zip(&now) {
                    results[k] = Some(match s.get() {
                        Ok(node) if node == to => Ok(to),
                        Err(PageError::Fault) => Err(MoveError::Fault),
                        Err(PageError::NotPresent) => Err(MoveError::NoEnt),
                        Ok(_) | Err(_) => Err(failed),
                    });
                }
            } else {
                if queried == Err(libc::ESRCH) {
                    self.gone_pids.insert(pid);
                }
                // No way to ask (the process is gone or refuses queries): the mover moves in
                // order, so the pages it confirmed are the first ones still open.
                let moved = usize::try_from(out.moved_total()).unwrap_or(usize::MAX);
                for (j, &k) in open.iter().enumerate() {
                    results[k] = Some(if j < moved { Ok(to) } else { Err(failed) });
                }
            }
        }
        (results, failed)
    }

    /// Adds the mover's counters for one process's request of `asked` pages to the log.
    fn account(&mut self, pid: Pid, out: &crate::mover::MoveOutcome, asked: u64) {
        let log = &mut self.log;
        log.busy_retry += out.busy.len() as u64;
        log.no_room += out.no_room.len() as u64;
        log.gone += out.gone;
        log.denied += out.denied;
        log.calls += out.calls;
        log.busy_time += out.busy_time;
        for (&e, &pages) in &out.failures {
            *log.failures.entry(e).or_default() += pages;
        }
        let accounted = out.moved_total()
            + out.busy.len() as u64
            + out.no_room.len() as u64
            + out.gone
            + out.denied;
        let untried = asked.saturating_sub(accounted);
        match out.stopped {
            Some(Stop::ProcessGone) => {
                let per_page = out.failures.get(&libc::EFAULT).copied().unwrap_or(0)
                    + out.failures.get(&libc::ENOENT).copied().unwrap_or(0);
                let exited = out.gone.saturating_sub(per_page);
                *log.failures.entry(libc::ESRCH).or_default() += exited;
                self.gone_pids.insert(pid);
            }
            Some(Stop::Denied(e)) => {
                log.denied += untried;
                *log.failures.entry(e).or_default() += untried;
                self.pid_failed(pid, e);
            }
            Some(Stop::Failed(e)) => {
                *log.failures.entry(e).or_default() += untried;
                tracing::debug!(%pid, errno = e, "move_pages failed for the whole call");
            }
            None => {}
        }
        if out.denied > 0 {
            self.report_denied(pid);
        }
    }

    /// One confirmed move in the cached view of free memory.
    fn shift_free(&mut self, from: NodeId, to: NodeId) {
        if let Some(m) = self.memory.get_mut(&from) {
            m.free = (m.free + 1).min(m.total);
        }
        if let Some(m) = self.memory.get_mut(&to) {
            m.free = m.free.saturating_sub(1);
        }
    }
}

/// The [`MoveError`] of a denial errno.
fn denial(errno: i32) -> MoveError {
    if errno == libc::EACCES { MoveError::Access } else { MoveError::Perm }
}

/// `has_memory`, or `has_normal_memory` on kernels without it (as `read_topology` reads it).
fn read_has_memory(root: &SysRoot) -> Result<NodeMask, Error> {
    for name in ["has_memory", "has_normal_memory"] {
        let path = root.node_root().join(name);
        if let Some(text) = read::optional(&path)? {
            return text
                .parse()
                .map_err(|e| read::malformed(&path, read::value(&text), format!("{e}")));
        }
    }
    Err(Error::Missing {
        path: root.node_root().join("has_memory"),
        hint: "this kernel exposes no NUMA node files: was it built without CONFIG_NUMA, or \
               is sysfs not mounted at the root tierd was given?",
    })
}

impl<M: PageMover> Backend for LinuxBackend<M> {
    type Page = PageRef;

    fn page_size(&self) -> u64 {
        self.page_size
    }

    fn memory_nodes(&self) -> NodeMask {
        self.nodes
    }

    fn node_memory(&self, node: NodeId) -> Option<NodeMemory> {
        self.memory.get(&node).copied()
    }

    fn coldest(&mut self, node: NodeId, max: usize, out: &mut Vec<PageHeat<PageRef>>) {
        self.scan(Kind::Cold, node, max, out);
    }

    fn hottest(&mut self, node: NodeId, max: usize, out: &mut Vec<PageHeat<PageRef>>) {
        self.scan(Kind::Hot, node, max, out);
    }

    fn out_of_time(&self) -> bool {
        self.housekeeping_until.is_some_and(|t| std::time::Instant::now() >= t)
    }

    fn move_pages(&mut self, pages: &[PageRef], to: NodeId, status: &mut Vec<MoveStatus>) {
        status.clear();
        status.resize(pages.len(), Err(MoveError::NoEnt));
        let mut by_pid: BTreeMap<Pid, Vec<usize>> = BTreeMap::new();
        for (i, p) in pages.iter().enumerate() {
            by_pid.entry(p.pid).or_default().push(i);
        }
        for (pid, idx) in by_pid {
            // While the kernel moves pages too, each small chunk is queried right before it
            // moves: a page that reclaim demoted between the query and the move would be
            // logged as tierd's move without having moved (see `set_kernel_moving`).
            let chunk = if self.kernel_moving { KERNEL_MOVING_CHUNK } else { idx.len().max(1) };
            for part in idx.chunks(chunk) {
                self.move_pid(pid, part, pages, to, status);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::{Fixture, FixtureMachine, FixtureNode};
    use crate::mover::MoverLimits;
    use crate::mover::fake::{Call, FakeMover};
    use crate::sys::SysError;
    use crate::tracker::Vpn;
    use crate::zoneinfo::{Watermarks, zoneinfo_text};

    const PID: u32 = 42;
    const PS: u64 = 4096;
    const BASE: u64 = 0x7f00_0000_0000;
    const MIB: u64 = 1 << 20;

    fn id(n: usize) -> NodeId {
        NodeId::new(n).unwrap()
    }

    fn addrs(pid_base: u64, n: usize) -> Vec<usize> {
        (0..n as u64).map(|i| usize::try_from(pid_base + i * PS).unwrap()).collect()
    }

    fn page(pid: u32, i: u64) -> PageRef {
        PageRef { pid: Pid(pid), vpn: Vpn(BASE / PS + i) }
    }

    fn region(pid: u32, first: u64, pages: u64, accesses: u32, age: u32) -> Region {
        Region {
            pid: Pid(pid),
            start: BASE + first * PS,
            end: BASE + (first + pages) * PS,
            accesses,
            age,
        }
    }

    fn sample(regions: Vec<Region>, max_accesses: u32) -> Sample {
        Sample { regions, max_accesses, ..Sample::default() }
    }

    /// Nodes 0 (CPUs, 64 MiB, 32 free) and 1 (64 MiB, 48 free) with their zoneinfo.
    fn machine() -> Fixture {
        let fx = FixtureMachine::new()
            .node(FixtureNode::new(0).cpu().memory(64 * MIB, 32 * MIB))
            .node(FixtureNode::new(1).memory(64 * MIB, 48 * MIB))
            .build()
            .unwrap();
        let zones: BTreeMap<NodeId, Watermarks> = [
            (id(0), Watermarks { min: 100, low: 125, high: 150, managed: 16384, free: 8192 }),
            (id(1), Watermarks { min: 90, low: 110, high: 130, managed: 16384, free: 12288 }),
        ]
        .into_iter()
        .collect();
        fx.write("proc/zoneinfo", zoneinfo_text(&zones)).unwrap();
        fx
    }

    /// A backend over `fx` whose pid 42 has `n` pages at `BASE`, all on node 0.
    fn backend(fx: &Fixture, n: usize, per_call: usize) -> LinuxBackend<FakeMover> {
        let fake = FakeMover::new(PID, &addrs(BASE, n), id(0));
        let limits = MoverLimits { pages_per_call: per_call, ..MoverLimits::default() };
        let mut b = LinuxBackend::new(fx.root().clone(), Mover::new(fake, limits), PS);
        b.refresh().unwrap();
        b
    }

    fn queried_pages(b: &mut LinuxBackend<FakeMover>) -> usize {
        b.mover().os().calls.iter().map(|c| if let Call::Query(_, n) = c { *n } else { 0 }).sum()
    }

    #[test]
    fn keeps_the_backend_contract_over_a_fixture_and_the_fake_mover() {
        let fx = machine();
        let mut b = backend(&fx, 16, 64);
        b.set_sample(sample(vec![region(PID, 0, 8, 0, 3), region(PID, 8, 8, 4, 1)], 20));
        // Node 1 has room for 6 pages: the contract moves 4 there, then fills it.
        b.mover().os().room.insert(id(1), 6);
        let at = tierd_core::backend::ContractNodes {
            cold: id(0),
            roomy: id(1),
            small: id(1),
            hot: id(0),
        };
        tierd_core::backend::backend_contract(&mut b, at);
        let log = b.take_moves();
        assert_eq!(log.moved.get(&(id(0), id(1))), Some(&6), "{log:?}");
        assert_eq!(b.mover().os().count_on(PID, id(1)), 6);
    }

    #[test]
    fn housekeeping_time_ends_when_the_daemon_said() {
        let fx = machine();
        let mut b = backend(&fx, 0, 64);
        assert!(!b.out_of_time(), "no limit until one is set");
        let now = std::time::Instant::now();
        b.set_housekeeping_until(Some(now + Duration::from_secs(3600)));
        assert!(!b.out_of_time());
        b.set_housekeeping_until(Some(now));
        assert!(b.out_of_time());
        b.set_housekeeping_until(None);
        assert!(!b.out_of_time());
    }

    #[test]
    fn refresh_reads_meminfo_and_zoneinfo_in_pages_and_absent_nodes_are_none() {
        let fx = machine();
        let mut b = backend(&fx, 0, 64);
        assert_eq!(b.memory_nodes().to_string(), "0-1");
        assert_eq!(
            b.node_memory(id(0)),
            Some(NodeMemory {
                total: 16384,
                free: 8192,
                wmark_min: 100,
                wmark_low: 125,
                wmark_high: 150
            })
        );
        assert_eq!(b.node_memory(id(2)), None);
        // Node 1 goes offline: its directory goes, and so does it from the view.
        fx.remove("sys/devices/system/node/node1").unwrap();
        b.refresh().unwrap();
        assert_eq!(b.memory_nodes().to_string(), "0");
        assert_eq!(b.node_memory(id(1)), None);
        // Without zoneinfo, refresh fails and the previous view stays.
        fx.remove("proc/zoneinfo").unwrap();
        let err = b.refresh().unwrap_err();
        assert!(matches!(err, Error::Missing { .. }), "{err:?}");
        assert_eq!(b.memory_nodes().to_string(), "0");
    }

    #[test]
    fn coldest_ranks_regions_and_keeps_only_pages_on_the_node() {
        let fx = machine();
        let mut b = backend(&fx, 12, 64);
        // Pages 2 and 3 already live on node 1.
        for i in [2, 3] {
            b.mover().os().placement.insert((PID, addrs(BASE, 12)[i]), id(1));
        }
        b.set_sample(sample(
            vec![
                region(PID, 0, 4, 1, 9), // cold enough (threshold 1 of 20), but used once
                region(PID, 4, 2, 0, 1), // idle, young
                region(PID, 6, 2, 0, 5), // idle, old: first
                region(PID, 8, 4, 7, 9), // hot: never cold
            ],
            20,
        ));
        assert_eq!(b.cold_max_accesses(), 1);
        let mut out = Vec::new();
        b.coldest(id(0), 10, &mut out);
        let got: Vec<(PageRef, u32)> = out.iter().map(|h| (h.page, h.heat)).collect();
        let want = [(6, 0), (7, 0), (4, 0), (5, 0), (0, 1), (1, 1)];
        assert_eq!(got, want.map(|(i, h)| (page(PID, i), h)));
        let mut out = Vec::new();
        b.coldest(id(1), 10, &mut out);
        let got: Vec<PageRef> = out.iter().map(|h| h.page).collect();
        assert_eq!(got, [page(PID, 2), page(PID, 3)]);
        // A soft-dirty or idle sample (0 or 1 accesses): only 0 is cold.
        b.set_sample(sample(vec![region(PID, 0, 2, 1, 0), region(PID, 4, 2, 0, 0)], 1));
        assert_eq!(b.cold_max_accesses(), 0);
        let mut out = Vec::new();
        b.coldest(id(0), 10, &mut out);
        assert_eq!(out.iter().map(|h| h.page).collect::<Vec<_>>(), [page(PID, 4), page(PID, 5)]);
    }

    #[test]
    fn hottest_ranks_busiest_first_and_reports_each_page_once_per_window() {
        let fx = machine();
        let mut b = backend(&fx, 8, 64);
        let regions = vec![
            region(PID, 0, 2, 3, 1),
            region(PID, 2, 2, 9, 1),
            region(PID, 4, 2, 0, 1), // idle: never hot
            region(PID, 6, 2, 3, 4), // as hot as the first, steadier
        ];
        b.set_sample(sample(regions.clone(), 20));
        let mut out = Vec::new();
        b.hottest(id(0), 3, &mut out);
        let got: Vec<(PageRef, u32)> = out.iter().map(|h| (h.page, h.heat)).collect();
        assert_eq!(got, [(page(PID, 2), 9), (page(PID, 3), 9), (page(PID, 6), 3)]);
        out.clear();
        b.hottest(id(0), 10, &mut out);
        let got: Vec<PageRef> = out.iter().map(|h| h.page).collect();
        assert_eq!(got, [page(PID, 7), page(PID, 0), page(PID, 1)], "the rest, once");
        out.clear();
        b.hottest(id(0), 10, &mut out);
        assert!(out.is_empty(), "each hot page once per window");
        b.set_sample(sample(regions, 20));
        b.hottest(id(0), 10, &mut out);
        assert_eq!(out.len(), 6, "a new window reports them again");
    }

    #[test]
    fn a_scan_starts_with_the_regions_probed_on_its_node() {
        // The coldest region (10000 pages) lives on node 1; node 0's cold pages are in a
        // younger one. Node 0's scan probes both and walks its own first: it queries a few
        // probes and one chunk, not the 10000 pages ranked before its own.
        let fx = machine();
        let mut b = backend(&fx, 10_100, 4096);
        for a in &addrs(BASE, 10_000) {
            b.mover().os().placement.insert((PID, *a), id(1));
        }
        b.set_sample(sample(
            vec![region(PID, 0, 10_000, 0, 9), region(PID, 10_000, 100, 0, 1)],
            20,
        ));
        let mut out = Vec::new();
        b.coldest(id(0), 10, &mut out);
        let got: Vec<PageRef> = out.iter().map(|h| h.page).collect();
        assert_eq!(got, (10_000..10_010).map(|i| page(PID, i)).collect::<Vec<_>>());
        let queried = queried_pages(&mut b);
        assert!(queried <= 2 * 4 + MIN_QUERY, "queried {queried} pages for 10");
        // Node 1's scan takes the coldest region first, as ranked.
        out.clear();
        b.coldest(id(1), 3, &mut out);
        assert_eq!(out.iter().map(|h| h.page).collect::<Vec<_>>(), [0, 1, 2].map(|i| page(PID, i)));
    }

    #[test]
    fn the_hot_scan_keeps_the_hottest_first_whatever_the_probes_say() {
        // A hot region (9 accesses) whose probes are all on node 0 but whose page 5 is on
        // node 1, and a warm one (1 access) all on node 1: node 1's hot scan offers page 5
        // first.
        let fx = machine();
        let mut b = backend(&fx, 16, 64);
        b.mover().os().placement.insert((PID, addrs(BASE, 16)[5]), id(1));
        for i in 8..16 {
            b.mover().os().placement.insert((PID, addrs(BASE, 16)[i]), id(1));
        }
        b.set_sample(sample(vec![region(PID, 0, 8, 9, 1), region(PID, 8, 8, 1, 1)], 20));
        let mut out = Vec::new();
        b.hottest(id(1), 1, &mut out);
        assert_eq!(out.iter().map(|h| (h.page, h.heat)).collect::<Vec<_>>(), [(page(PID, 5), 9)]);
    }

    #[test]
    fn placement_is_queried_once_per_window_and_only_as_far_as_needed() {
        let fx = machine();
        let n = 20_000;
        let mut b = backend(&fx, n, 4096);
        b.set_sample(sample(vec![region(PID, 0, n as u64, 0, 1)], 20));
        let mut out = Vec::new();
        b.coldest(id(0), 10, &mut out);
        assert_eq!(out.len(), 10);
        let first = queried_pages(&mut b);
        assert!(first <= MIN_QUERY + 3, "queried {first} pages of {n} for 10 (3 more probes)");
        // Node 1 has none of them: its walk queries the rest once, and a second walk of
        // node 1 or node 0 queries nothing again.
        out.clear();
        b.coldest(id(1), 10, &mut out);
        assert!(out.is_empty());
        assert_eq!(queried_pages(&mut b), n, "every page queried exactly once");
        b.coldest(id(1), 10, &mut out);
        b.coldest(id(0), 10, &mut out);
        assert_eq!(queried_pages(&mut b), n);
        assert_eq!(out.len(), 10, "node 0's walk goes on where it stopped");
        assert_eq!(out[0].page, page(PID, 10));
        assert_eq!(b.placement_cached(), n);
        // Moving cached pages queries nothing before the move.
        let before = b.mover().os().calls.len();
        let pages: Vec<PageRef> = out.iter().map(|h| h.page).collect();
        let mut status = Vec::new();
        b.move_pages(&pages, id(1), &mut status);
        let calls = &b.mover().os().calls[before..];
        assert_eq!(calls, [Call::Move(PID, 10, id(1)), Call::Query(PID, 10)], "the mover's own");
        // The next windows keep what they know (tierd's own moves update it) ...
        b.set_sample(sample(vec![region(PID, 0, n as u64, 0, 1)], 20));
        assert_eq!(b.placement_cached(), n);
        b.coldest(id(0), 10, &mut out);
        assert_eq!(queried_pages(&mut b), n + 10, "the mover's verification only, nothing again");
        // ... and every PLACEMENT_WINDOWS windows the cache is emptied and queried afresh.
        for _ in 1..PLACEMENT_WINDOWS {
            b.set_sample(sample(vec![region(PID, 0, 4, 0, 1)], 20));
        }
        assert_eq!(b.placement_cached(), 0);
    }

    #[test]
    fn move_maps_each_result_in_the_callers_order_and_logs_it() {
        let fx = machine();
        let other = 7;
        let mut b = backend(&fx, 8, 64);
        let a = addrs(BASE, 8);
        {
            // The fake keys forced results by address alone: the other process's pages
            // live elsewhere. Pages 2 and 3 are swapped out and unmapped meanwhile.
            let fake = b.mover().os();
            for &x in &addrs(BASE + 100 * PS, 2) {
                fake.placement.insert((other, x), id(0));
            }
            fake.fail_once.insert(a[1], libc::EBUSY);
            fake.fail_once.insert(a[2], libc::ENOENT);
            fake.placement.remove(&(PID, a[2]));
            fake.placement.remove(&(PID, a[3]));
            fake.placement.insert((PID, a[4]), id(1)); // already there
        }
        b.set_sample(sample(vec![region(PID, 0, 8, 0, 1), region(other, 100, 2, 0, 1)], 20));
        let pages = [
            page(PID, 0),
            page(other, 100),
            page(PID, 1),
            page(PID, 2),
            page(PID, 3),
            page(PID, 4),
            page(other, 101),
            page(PID, 5),
        ];
        let mut status = Vec::new();
        b.move_pages(&pages, id(1), &mut status);
        assert_eq!(
            status,
            [
                Ok(id(1)),
                Ok(id(1)),
                Err(MoveError::Busy),
                // The placement query decides, and the fake answers EFAULT for any page it
                // does not hold (a kernel says ENOENT for a swapped-out one).
                Err(MoveError::Fault),
                Err(MoveError::Fault),
                Ok(id(1)),
                Ok(id(1)),
                Ok(id(1)),
            ]
        );
        let log = b.take_moves();
        assert_eq!(log.moved, [((id(0), id(1)), 4)].into_iter().collect(), "not the one on 1");
        assert_eq!((log.busy_retry, log.gone, log.denied, log.no_room), (1, 2, 0, 0));
        assert_eq!(log.failures.get(&libc::EBUSY), Some(&1));
        assert_eq!(log.failures.get(&libc::ENOENT), Some(&1));
        assert_eq!(log.failures.get(&libc::EFAULT), Some(&1));
        assert!(log.denied_pids.is_empty());
        assert!(log.calls >= 4, "a pre-query, a move and a query for each pid: {}", log.calls);
        assert_eq!(b.take_moves(), MoveLog::default(), "taken");
        // The cached view follows the four moves.
        assert_eq!(b.node_memory(id(0)).unwrap().free, 8192 + 4);
        assert_eq!(b.node_memory(id(1)).unwrap().free, 12288 - 4);
        b.refresh().unwrap();
        assert_eq!(b.node_memory(id(0)).unwrap().free, 8192, "until the files are re-read");
    }

    #[test]
    fn a_full_target_is_no_mem_and_pages_stay() {
        let fx = machine();
        let mut b = backend(&fx, 6, 64);
        b.mover().os().room.insert(id(1), 2);
        b.set_sample(sample(vec![region(PID, 0, 6, 0, 1)], 20));
        let pages: Vec<PageRef> = (0..6).map(|i| page(PID, i)).collect();
        let mut status = Vec::new();
        b.move_pages(&pages, id(1), &mut status);
        assert_eq!(status.iter().filter(|s| **s == Err(MoveError::NoMem)).count(), 4);
        assert_eq!(status[..2], [Ok(id(1)), Ok(id(1))]);
        let log = b.take_moves();
        assert_eq!((log.moved_total(), log.no_room), (2, 4));
        // The refused pages are still node 0's coldest in the next window.
        b.set_sample(sample(vec![region(PID, 0, 6, 0, 1)], 20));
        let mut out = Vec::new();
        b.coldest(id(0), 10, &mut out);
        assert_eq!(out.len(), 4);
    }

    #[test]
    fn a_process_that_exits_mid_move_loses_nothing_and_never_panics() {
        let fx = machine();
        let mut b = backend(&fx, 10, 4);
        // The process exits after the mover's second batch; the first one was confirmed.
        b.mover().os().exit_after = Some((PID, 2));
        b.set_sample(sample(vec![region(PID, 0, 10, 0, 1)], 20));
        let mut out = Vec::new();
        b.coldest(id(0), 10, &mut out);
        let pages: Vec<PageRef> = out.iter().map(|h| h.page).collect();
        let mut status = Vec::new();
        b.move_pages(&pages, id(1), &mut status);
        assert_eq!(status.len(), 10);
        assert!(status[..4].iter().all(|s| *s == Ok(id(1))), "{status:?}");
        assert!(status[4..].iter().all(|s| *s == Err(MoveError::NoEnt)), "{status:?}");
        let log = b.take_moves();
        assert_eq!(log.moved_total(), 4);
        assert_eq!(log.gone, 6);
        assert_eq!(log.failures.get(&libc::ESRCH), Some(&6));
        // Gone for the rest of the window: no more calls for it.
        let calls = b.mover().os().calls.len();
        out.clear();
        b.coldest(id(0), 10, &mut out);
        b.move_pages(&pages, id(1), &mut status);
        assert!(out.is_empty());
        assert!(status.iter().all(|s| *s == Err(MoveError::NoEnt)));
        assert_eq!(b.mover().os().calls.len(), calls);
    }

    #[test]
    fn another_process_in_the_same_request_moves_when_one_exits() {
        let fx = machine();
        let other = 7;
        let mut b = backend(&fx, 6, 2);
        for &x in &addrs(BASE + 100 * PS, 3) {
            b.mover().os().placement.insert((other, x), id(0));
        }
        b.mover().os().exit_after = Some((PID, 1));
        b.set_sample(sample(vec![region(PID, 0, 6, 0, 1), region(other, 100, 3, 0, 1)], 20));
        let mut pages: Vec<PageRef> = (0..6).map(|i| page(PID, i)).collect();
        pages.splice(1..1, (100..103).map(|i| page(other, i)));
        let mut status = Vec::new();
        b.move_pages(&pages, id(1), &mut status);
        let of = |pid: u32| -> Vec<MoveStatus> {
            pages.iter().zip(&status).filter(|(p, _)| p.pid == Pid(pid)).map(|(_, s)| *s).collect()
        };
        assert_eq!(of(other), [Ok(id(1)); 3]);
        assert_eq!(of(PID), [Err(MoveError::NoEnt); 6]);
        let log = b.take_moves();
        assert_eq!((log.moved_total(), log.gone), (3, 6), "{log:?}");
        assert_eq!(b.node_memory(id(1)).unwrap().free, 12288 - 3);
    }

    #[test]
    fn a_process_gone_before_the_move_is_no_ent_for_every_page() {
        let fx = machine();
        let mut b = backend(&fx, 4, 64);
        b.set_sample(sample(vec![region(PID, 0, 4, 0, 1)], 20));
        b.mover().os().exited.push(PID);
        let pages: Vec<PageRef> = (0..4).map(|i| page(PID, i)).collect();
        let mut status = Vec::new();
        b.move_pages(&pages, id(1), &mut status);
        assert_eq!(status, [Err(MoveError::NoEnt); 4]);
        let log = b.take_moves();
        assert_eq!((log.gone, log.moved_total()), (4, 0));
    }

    #[test]
    fn a_denied_process_is_reported_once() {
        let fx = machine();
        let mut b = backend(&fx, 4, 64);
        let a = addrs(BASE, 4);
        b.set_sample(sample(vec![region(PID, 0, 4, 0, 1)], 20));
        b.mover().os().fail_once.insert(a[0], libc::EPERM);
        b.mover().os().fail_once.insert(a[1], libc::EPERM);
        let mut status = Vec::new();
        b.move_pages(&[page(PID, 0)], id(1), &mut status);
        assert_eq!(status, [Err(MoveError::Perm)]);
        b.move_pages(&[page(PID, 1), page(PID, 2)], id(1), &mut status);
        assert_eq!(status, [Err(MoveError::Perm), Ok(id(1))]);
        let log = b.take_moves();
        assert_eq!(log.denied_pids, [PID], "once, however many pages");
        assert_eq!(log.denied, 2);
        assert_eq!(log.failures.get(&libc::EPERM), Some(&2));
        b.mover().os().fail_once.insert(a[3], libc::EACCES);
        b.move_pages(&[page(PID, 3)], id(1), &mut status);
        assert_eq!(status, [Err(MoveError::Access)]);
        assert!(b.take_moves().denied_pids.is_empty(), "already reported");
        // Once the tracker drops the process, a new one with its pid is reported again.
        b.set_sample(Sample { dropped: vec![Pid(PID)], ..Sample::default() });
        b.mover().os().fail_once.insert(a[3], libc::EACCES);
        b.move_pages(&[page(PID, 3)], id(1), &mut status);
        assert_eq!(b.take_moves().denied_pids, [PID]);
    }

    /// The fake, refusing every call over one pid (no right over the process), or only its
    /// moves (tierd may look but not move: no `CAP_SYS_NICE`).
    #[derive(Debug)]
    struct Refusing(FakeMover, u32, bool);

    impl Refusing {
        fn check(&self, pid: u32, query: bool) -> Result<(), SysError> {
            if pid == self.1 && !(query && self.2) {
                Err(SysError::Syscall {
                    call: "move_pages",
                    source: std::io::Error::from_raw_os_error(libc::EPERM),
                })
            } else {
                Ok(())
            }
        }
    }

    impl PageMover for Refusing {
        fn move_pages(
            &mut self,
            pid: u32,
            addrs: &[usize],
            to: NodeId,
            status: &mut [PageStatus],
        ) -> Result<(), SysError> {
            self.0.calls.push(Call::Move(pid, addrs.len(), to));
            self.check(pid, false)?;
            self.0.move_pages(pid, addrs, to, status)
        }
        fn query(
            &mut self,
            pid: u32,
            addrs: &[usize],
            status: &mut [PageStatus],
        ) -> Result<(), SysError> {
            self.0.calls.push(Call::Query(pid, addrs.len()));
            self.check(pid, true)?;
            self.0.query(pid, addrs, status)
        }
    }

    #[test]
    fn a_process_tierd_has_no_right_over_is_skipped_and_reported_once() {
        let fx = machine();
        let denied = 9;
        let mut fake = FakeMover::new(PID, &addrs(BASE, 4), id(0));
        for &x in &addrs(BASE, 4) {
            fake.placement.insert((denied, x), id(0));
        }
        let mut b = LinuxBackend::new(
            fx.root().clone(),
            Mover::new(Refusing(fake, denied, false), MoverLimits::default()),
            PS,
        );
        b.refresh().unwrap();
        b.set_sample(sample(vec![region(denied, 0, 4, 0, 9), region(PID, 0, 4, 0, 1)], 20));
        let mut out = Vec::new();
        b.coldest(id(0), 8, &mut out);
        assert!(out.iter().all(|h| h.page.pid == Pid(PID)), "{out:?}");
        assert_eq!(out.len(), 4);
        let mut status = Vec::new();
        b.move_pages(&[page(denied, 0), page(PID, 0)], id(1), &mut status);
        assert_eq!(status, [Err(MoveError::Perm), Ok(id(1))]);
        let log = b.take_moves();
        assert_eq!(log.denied_pids, [denied]);
        let calls = b.mover().os().0.calls.len();
        b.move_pages(&[page(denied, 1)], id(1), &mut status);
        assert_eq!(status, [Err(MoveError::Perm)]);
        assert_eq!(b.mover().os().0.calls.len(), calls, "no call for a refused process");
        assert!(b.take_moves().denied_pids.is_empty());
    }

    #[test]
    fn a_process_whose_moves_are_refused_is_denied_then_skipped() {
        let fx = machine();
        let fake = FakeMover::new(PID, &addrs(BASE, 6), id(0));
        let mut b = LinuxBackend::new(
            fx.root().clone(),
            Mover::new(Refusing(fake, PID, true), MoverLimits::default()),
            PS,
        );
        b.refresh().unwrap();
        b.set_sample(sample(vec![region(PID, 0, 6, 0, 1)], 20));
        let mut out = Vec::new();
        b.coldest(id(0), 4, &mut out);
        assert_eq!(out.len(), 4, "queries are allowed");
        let pages: Vec<PageRef> = out.iter().map(|h| h.page).collect();
        let mut status = Vec::new();
        b.move_pages(&pages, id(1), &mut status);
        assert_eq!(status, [Err(MoveError::Perm); 4]);
        let log = b.take_moves();
        assert_eq!((log.denied, log.moved_total()), (4, 0));
        assert_eq!(log.failures.get(&libc::EPERM), Some(&4));
        assert_eq!(log.denied_pids, [PID]);
        assert_eq!(b.node_memory(id(0)).unwrap().free, 8192, "nothing moved");
        out.clear();
        b.coldest(id(0), 4, &mut out);
        assert!(out.is_empty(), "skipped until the tracker drops it");
    }

    #[test]
    fn a_page_seen_gone_and_back_is_logged_when_it_moves() {
        let fx = machine();
        let mut b = backend(&fx, 2, 64);
        let a = addrs(BASE, 2);
        let on0 = b.mover().os().placement.remove(&(PID, a[1])).unwrap();
        b.set_sample(sample(vec![region(PID, 0, 2, 0, 1)], 20));
        let mut out = Vec::new();
        b.coldest(id(0), 4, &mut out);
        assert_eq!(out.len(), 1, "page 1 is not present");
        // Swapped back in, on node 0, before the policy moves it.
        b.mover().os().placement.insert((PID, a[1]), on0);
        let mut status = Vec::new();
        b.move_pages(&[page(PID, 1)], id(1), &mut status);
        assert_eq!(status, [Ok(id(1))]);
        assert_eq!(b.take_moves().moved.get(&(id(0), id(1))), Some(&1));
    }

    /// Whatever the kernel answers per page (busy, refused, unmapped, already there, a full
    /// target), every page of a request is accounted for exactly once, the statuses agree
    /// with the log, and the fake's placement with both.
    #[test]
    fn no_page_is_lost_or_counted_twice_whatever_the_kernel_answers() {
        let answers = ["moves", "moves", "moves", "busy", "there", "unmapped", "eperm", "eacces"];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |n: usize| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            usize::try_from(seed >> 33).unwrap() % n
        };
        let fx = machine();
        for round in 0..50 {
            let n = 1 + next(40);
            let mut b = backend(&fx, n, 1 + next(16));
            let a = addrs(BASE, n);
            let room = next(n + 1) as u64;
            {
                let fake = b.mover().os();
                fake.room.insert(id(1), room);
                for &x in &a {
                    match answers[next(answers.len())] {
                        "busy" => drop(fake.fail_once.insert(x, libc::EBUSY)),
                        "eperm" => drop(fake.fail_once.insert(x, libc::EPERM)),
                        "eacces" => drop(fake.fail_once.insert(x, libc::EACCES)),
                        "there" => drop(fake.placement.insert((PID, x), id(1))),
                        // Unmapped for good: the move and the query both say EFAULT.
                        "unmapped" => drop(fake.placement.remove(&(PID, x))),
                        _ => {}
                    }
                }
            }
            let already = b.mover().os().count_on(PID, id(1)) as u64;
            b.set_sample(sample(vec![region(PID, 0, n as u64, 0, 1)], 20));
            let pages: Vec<PageRef> = (0..n as u64).map(|i| page(PID, i)).collect();
            let mut status = Vec::new();
            b.move_pages(&pages, id(1), &mut status);
            let log = b.take_moves();
            let ok = status.iter().filter(|s| s.is_ok()).count() as u64;
            let count = |e: MoveError| status.iter().filter(|s| **s == Err(e)).count() as u64;
            assert_eq!(status.len(), n, "round {round}");
            assert_eq!(ok, log.moved_total() + already, "round {round}: {status:?} {log:?}");
            assert_eq!(b.mover().os().count_on(PID, id(1)) as u64, ok, "round {round}");
            assert_eq!(count(MoveError::Busy), log.busy_retry, "round {round}");
            assert_eq!(count(MoveError::NoMem), log.no_room, "round {round}");
            assert_eq!(
                count(MoveError::Fault) + count(MoveError::NoEnt),
                log.gone,
                "round {round}"
            );
            assert_eq!(
                count(MoveError::Perm) + count(MoveError::Access),
                log.denied,
                "round {round}"
            );
            let failed: u64 = log.failures.values().sum();
            assert!(failed >= log.busy_retry + log.gone + log.denied, "round {round}: {log:?}");
            assert_eq!(
                b.node_memory(id(0)).unwrap().free,
                8192 + log.moved_total(),
                "round {round}"
            );
        }
    }

    #[test]
    fn a_huge_page_entry_reported_busy_that_moved_is_ok() {
        let fx = machine();
        let mut b = backend(&fx, 4, 64);
        let a = addrs(BASE, 4);
        b.mover().os().busy_but_moved.push(a[1]);
        b.mover().os().fail_once.insert(a[2], libc::EBUSY);
        b.set_sample(sample(vec![region(PID, 0, 4, 0, 1)], 20));
        let pages: Vec<PageRef> = (0..4).map(|i| page(PID, i)).collect();
        let mut status = Vec::new();
        b.move_pages(&pages, id(1), &mut status);
        assert_eq!(status, [Ok(id(1)), Ok(id(1)), Err(MoveError::Busy), Ok(id(1))]);
        let log = b.take_moves();
        assert_eq!((log.moved_total(), log.busy_retry), (3, 1));
        // The busy page is retried and moves; the log says so.
        b.move_pages(&pages[2..3], id(1), &mut status);
        assert_eq!(status, [Ok(id(1))]);
        assert_eq!(b.take_moves().moved.get(&(id(0), id(1))), Some(&1));
    }

    #[test]
    fn an_empty_or_unknown_request_is_harmless() {
        let fx = machine();
        let mut b = backend(&fx, 2, 64);
        let mut status = vec![Ok(id(0))];
        b.move_pages(&[], id(1), &mut status);
        assert!(status.is_empty());
        let mut out = Vec::new();
        b.coldest(id(0), 4, &mut out);
        b.hottest(id(5), 4, &mut out);
        assert!(out.is_empty(), "no sample, no pages");
        // A page the fake never heard of (the process unmapped it): EFAULT, nothing logged.
        b.move_pages(&[page(PID, 50)], id(1), &mut status);
        assert_eq!(status, [Err(MoveError::Fault)]);
        assert_eq!(b.take_moves().moved_total(), 0);
    }

    /// The backend on the kernel this test runs on, over this test's own buffer: its node
    /// files read cleanly, the placement query finds every page of the buffer on some memory
    /// node, and moving them to the node they are on succeeds and logs no move. Skips, saying
    /// why, where `/sys` has no NUMA node files; under `CI=true` that is a failure.
    #[test]
    fn the_running_kernel_serves_the_backend() {
        use crate::mover::SysMover;
        let root = SysRoot::default();
        if !root.node_root().join("online").exists() {
            let why = "skipped: /sys/devices/system/node/online is absent (no sysfs, or no NUMA)";
            assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}, and CI=true");
            eprintln!("{why}");
            return;
        }
        let ps = crate::sys::page_size() as u64;
        let mover = Mover::new(SysMover::new(false), MoverLimits::default());
        let mut b = LinuxBackend::new(root, mover, ps);
        b.refresh().unwrap();
        assert!(!b.memory_nodes().is_empty());
        for node in b.memory_nodes().iter() {
            let m = b.node_memory(node).unwrap();
            assert!(m.total > 0 && m.free <= m.total, "node {node}: {m:?}");
            assert!(m.wmark_min <= m.wmark_low && m.wmark_low <= m.wmark_high, "{m:?}");
        }
        let pages = 32;
        let buf = vec![1u8; usize::try_from((pages + 1) * ps).unwrap()];
        let start = (buf.as_ptr() as u64).div_ceil(ps) * ps;
        let pid = std::process::id();
        b.set_sample(sample(
            vec![Region { pid: Pid(pid), start, end: start + pages * ps, accesses: 0, age: 1 }],
            1,
        ));
        let mut found = 0;
        for node in b.memory_nodes().iter() {
            let mut out = Vec::new();
            b.coldest(node, 64, &mut out);
            found += out.len();
            let refs: Vec<PageRef> = out.iter().map(|h| h.page).collect();
            let mut status = Vec::new();
            b.move_pages(&refs, node, &mut status);
            assert!(status.iter().all(|s| *s == Ok(node)), "node {node}: {status:?}");
        }
        assert_eq!(found, usize::try_from(pages).unwrap(), "every page of the buffer, once");
        let log = b.take_moves();
        assert_eq!(log.moved_total(), 0, "{log:?}");
        assert!(log.failures.is_empty(), "{log:?}");
        assert!(buf.iter().all(|&x| x == 1));
    }

    #[test]
    fn keeps_the_policy_contract() {
        let fx = machine();
        let n = 4000;
        let mut b = backend(&fx, n, 512);
        b.set_sample(sample(vec![region(PID, 0, 2000, 5, 1), region(PID, 2000, 2000, 0, 1)], 20));
        let topo = crate::read_topology(fx.root()).unwrap();
        let graph = tierd_core::PathGraph::from_toml("[node.0]\ntarget = 1\n").unwrap();
        tierd_core::backend::policy_contract(&mut b, &topo, &graph, id(0));
    }

    #[test]
    fn the_policy_demotes_node_zeros_coldest_pages_through_the_backend() {
        use tierd_core::policy::{PolicyConfig, Tierd};
        let fx = machine();
        // Node 0: 16384 pages, 8192 free, high 150. A 60% headroom wants 150 + 9830 free:
        // about 1788 pages move, the coldest first.
        let n = 4000;
        let mut b = backend(&fx, n, 512);
        b.set_sample(sample(vec![region(PID, 0, 2000, 5, 1), region(PID, 2000, 2000, 0, 1)], 20));
        let topo = crate::read_topology(fx.root()).unwrap();
        let graph = tierd_core::PathGraph::from_toml("[node.0]\ntarget = 1\n").unwrap();
        let config = PolicyConfig { headroom_pct: 60.0, promote: false, ..PolicyConfig::default() };
        let mut p = Tierd::new(config, &topo, &graph);
        let stats = p.tick(0, &mut b);
        let log = b.take_moves();
        assert_eq!(stats.demoted, log.moved_total());
        assert_eq!(log.moved_total(), 150 + 9830 - 8192);
        // Only idle pages went (the first region is above the cold threshold).
        let moved_hot = (0..2000)
            .filter(|&i| b.mover().os().placement[&(PID, addrs(BASE, n)[i])] == id(1))
            .count();
        assert_eq!(moved_hot, 0);
    }
}
