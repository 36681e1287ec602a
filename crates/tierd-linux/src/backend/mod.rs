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
//! This also makes the backend contract hold over a fixture whose files do not change.
//!
//! **Huge pages.** One entry of a transparent huge page moves all of its base pages. While
//! any node's `meminfo` shows huge pages (`AnonHugePages`, `ShmemHugePages`,
//! `FileHugePages`), the pages a call moved are looked up in `pagemap` and `kpageflags`
//! ([`crate::folio`]): a huge page is logged, and shifted in the view of free memory, as its
//! base pages, once per call however many of its entries the call named, and all of its
//! pages are placed on the target in the cache. The policy's own count stays one per entry
//! it asked for; the log, and so the metrics, are in base pages (bytes = pages x page size).
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
    /// Huge-page spans of moved pages, read while any node holds huge pages.
    folios: crate::folio::Folios,
    /// Whether the last refresh found transparent huge pages on any node.
    huge_pages: bool,
    /// Until when this tick may do housekeeping ([`Backend::out_of_time`]); `None`: always.
    housekeeping_until: Option<std::time::Instant>,
    /// Until when this tick may move pages at all ([`Backend::tick_over`]); `None`: always.
    tick_until: Option<std::time::Instant>,
}

impl<M: PageMover> LinuxBackend<M> {
    /// A backend reading the node files under `root` and moving through `mover`, with pages
    /// of `page_size` bytes (`sys::page_size()` on a real host). It knows no node until the
    /// first [`LinuxBackend::refresh`] and no page until the first
    /// [`LinuxBackend::set_sample`]. Panics when `page_size` is not a power of two.
    pub fn new(root: SysRoot, mover: Mover<M>, page_size: u64) -> LinuxBackend<M> {
        assert!(page_size.is_power_of_two(), "page size {page_size} is not a power of two");
        LinuxBackend {
            folios: crate::folio::Folios::new(root.clone()),
            huge_pages: false,
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
            tick_until: None,
        }
    }

    /// Sets until when the coming tick may do housekeeping (demotion that can wait); after
    /// that [`Backend::out_of_time`] says so and the policy leaves the rest to the next tick.
    /// `None`: no limit. The time is the mover's clock ([`LinuxBackend::now`]).
    pub fn set_housekeeping_until(&mut self, until: Option<std::time::Instant>) {
        self.housekeeping_until = until;
    }

    /// Sets until when the coming tick may move pages at all, urgent demotion and promotion
    /// included; after that [`Backend::tick_over`] says so. `None`: no limit. The mover's
    /// clock, as for [`LinuxBackend::set_housekeeping_until`].
    pub fn set_tick_until(&mut self, until: Option<std::time::Instant>) {
        self.tick_until = until;
    }

    /// The time by the mover's clock: real time, or a fake mover's virtual clock.
    pub fn now(&self) -> std::time::Instant {
        self.mover.clock()
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
        let mut huge = 0;
        for node in online.and(&with_memory).iter() {
            let Some(info) = read_node_meminfo(&self.root, node)? else { continue };
            huge += ["AnonHugePages", "ShmemHugePages", "FileHugePages"]
                .iter()
                .filter_map(|k| info.bytes.get(*k))
                .sum::<u64>();
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
        self.huge_pages = huge > 0;
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
        self.housekeeping_until.is_some_and(|t| self.mover.clock() >= t)
    }

    fn tick_over(&self) -> bool {
        self.tick_until.is_some_and(|t| self.mover.clock() >= t)
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

mod moves;
mod placement;
mod ranking;
#[cfg(test)]
mod tests;

use ranking::{Kind, Ranking};
