//! The simulated machine: nodes, pages, per-node LRU lists, the allocator, kswapd and
//! direct reclaim, a swap device, the page cache of file-backed processes, and the
//! [`Backend`] the `tierd` policy acts through.
//!
//! # Layout
//! Speed comes from memory layout. The only per-access state is one byte per page
//! (`state`: node slot, young bit, hint bit, active, `PG_referenced` when resident or
//! swapped when not, queued). The LRU lists (a queue of page numbers per list, and each
//! page's index in its queue: two `u32` per page) are touched only when a page is allocated,
//! reclaimed, aged or migrated, never on a plain access. That is 9 bytes per simulated page.
//! Reclaim reads a list's queue in order from the tail; a linked list made it chase one
//! link per page, each a cache miss the next had to wait for (perf: a quarter of a
//! linux-swap run, its draw included).
//!
//! # Heat for the policy
//! The *hint* bit is the simulator's access tracker for [`Backend::hottest`], like a NUMA
//! hinting fault: it is cleared on every page at the end of each policy interval
//! ([`Machine::end_window`]), and a page on a promotable node that is accessed again while
//! its hint bit is set is queued as a promotion candidate (accessed twice in one window).
//! [`Backend::coldest`] walks the inactive list as reclaim does, so coldness is the kernel's.
//!
//! # The model of Linux (classic two-list LRU, one zone per node)
//! - An access sets the page's *young* bit (the PTE accessed bit).
//! - A new page (first touch or swap-in) goes to the head of its node's inactive list, as
//!   `lru_cache_add_inactive_or_unevictable` does for anonymous pages since 5.9.
//! - Reclaim takes pages from the inactive tail (`shrink_inactive_list`) and applies
//!   `folio_check_references`: the young bit is tested and cleared, `PG_referenced` tested
//!   and cleared; a young page that was already referenced is activated, a young page seen
//!   for the first time is marked referenced and rotated for another trip (every page starts
//!   young from its instantiating fault, so one reference is not enough), an old page is
//!   evicted. Before that, while `inactive_is_low` (inactive × int_sqrt(10 × GiB) < active),
//!   the active tail is aged onto the inactive head with its bit cleared
//!   (`shrink_active_list`: anonymous pages are deactivated even when referenced).
//! - Eviction swaps the page out (`linux-swap`), or, with demotion, migrates it to the first of
//!   the node's destinations (target, then fallbacks) that stays above its `min` watermark
//!   after the move, waking that node's kswapd when it drops below `low`; it swaps only when
//!   no destination can take it (`demote_folio_list` with `alloc_demote_folio`, 5.15+).
//! - Allocation (`get_page_from_freelist`, zone_reclaim_mode 0): the first node of the
//!   process's zonelist (its allowed nodes in distance order from its CPU node) that stays
//!   above `low`; else the slow path wakes kswapd on every allowed node and retries against
//!   `min`; else direct reclaim on each allowed node, charged to the workload; else the
//!   OOM killer: the faulting process is killed (as with `vm.oom_kill_allocating_task`),
//!   its pages and swap slots are freed, and its later accesses are counted apart and cost
//!   nothing. So a swap device too small for the overflow ends the process, as on Linux,
//!   instead of reclaiming the same full lists at every fault.
//! - kswapd, once woken, runs beside the workload until the node is back above `high`,
//!   scanning a fixed number of pages per workload access; its time is not charged to the
//!   workload. Direct reclaim scans up to a whole trip around the lists at once.
//!
//! # The page cache (file-backed processes)
//! A process is anonymous or file-backed as a whole ([`ProcessConfig::file`]): the kind is
//! per process, not per page, so the hot loop is the same for both and an anonymous-only run
//! does exactly what it did before file pages existed. The page-cache state lives off the
//! hot path: a dirty bitmap (one bit per page, allocated only when some process is
//! file-backed), the shadow entry of an evicted page in its unused `pos` slot, and the
//! node's `nonresident_age`. The model is that of buffered I/O (`read`/`pwrite`, as a
//! database without `O_DIRECT` does), not of `mmap`:
//! - Each node has four LRU lists, anonymous and file × inactive and active.
//! - A page-cache miss (first read, or a refault after reclaim dropped the page) reads the
//!   page from disk: `disk_read_ns` of stall, counted in `disk_reads` (and `refaults_file`
//!   for a refault; a first read also counts as a first touch). The new page goes to the
//!   inactive file list with `PG_referenced` set and the young bit clear, as `filemap_read`
//!   marks a new folio accessed. So a page used once is dropped at reclaim's first look
//!   (`folio_check_references`: old, referenced, clean: `FOLIOREF_RECLAIM_CLEAN`) and a page
//!   accessed again before reclaim reaches it is activated (the second `folio_mark_accessed`,
//!   applied when reclaim finds it rather than at the access, which would cost per-access
//!   work). Deactivation from the active file list is as for anonymous pages.
//! - Workingset detection (mm/workingset.c): eviction stores a shadow entry (node slot and
//!   the node's `nonresident_age`, which every eviction and file activation advances); a
//!   refault whose distance (the age since) is at most the node's workingset (active file
//!   pages, plus all anonymous pages while swap has room: `workingset_test_recent`) goes
//!   straight to the active list (`workingset_activations`). Not modelled: the memcg side,
//!   `PG_workingset` and its effect on the refault cost balance, shadow-node shrinking.
//! - Dirty pages: a fixed hash of the page's index in its file picks the
//!   `dirty_fraction` of pages the process writes; such a page is dirtied when read in. An
//!   old dirty page that is still `PG_referenced` is kept (`FOLIOREF_RECLAIM_CLEAN` defers
//!   it); else reclaim writes it back (`disk_writes`, `disk_write_ns`) and drops it, as when
//!   `folio_end_writeback` rotates it to the inactive tail for reclaim to take. Writeback time
//!   is background (the flusher's) under kswapd, and a stall in direct reclaim (throttled on
//!   writeback, `VMSCAN_THROTTLE_WRITEBACK`). Not modelled: re-dirtying of a resident page
//!   after its writeback and the flusher's periodic writeback (both need per-access work),
//!   `dirty_ratio` throttling, readahead, disk queueing or bandwidth.
//! - Reclaim balances the kinds per pass as `get_scan_count` does (see `scan_weights`): no
//!   file pages, anonymous only; anonymous pages not reclaimable (no swap room, no demotion
//!   destination), file only; file pages tiny, anonymous only; a large inactive file list
//!   that is not low, file only (`cache_trim_mode`); else in proportion to list size times
//!   `swappiness` (anon) and `200 - swappiness` (file), the refault and rotation costs taken
//!   as equal. Each step scans the kind furthest behind its share.
//! - Eviction of a file page: with [`Reclaim::Demote`] it is demoted like any folio
//!   (`demote_folio_list`), dirty or clean, when a destination has room; else dropped (no
//!   swap slot), after writeback if dirty.
//! - [`Backend::coldest`] walks the anonymous and file inactive lists in turn, and
//!   [`Backend::move_pages`] moves file pages like anonymous ones, as a whole-host mover such
//!   as DAMOS `migrate_cold`/`migrate_hot` on physical addresses would; a dirty page stays
//!   dirty where it goes. On an anonymous-only machine both do exactly what they did before.
//! - An OOM-killed file-backed process loses its page-cache pages too (on Linux they would
//!   stay cached after the exit).

use std::collections::VecDeque;

use tierd_core::backend::{Backend, MoveError, MoveStatus, NodeMemory, PageHeat};
use tierd_core::{NodeId, NodeMask};

/// A page index, `0..pages`.
pub type Page = u32;

const NONE: u32 = u32::MAX;

/// The most nodes a simulated machine has (node slots fit in 3 bits, 7 = not resident).
pub const MAX_SIM_NODES: usize = 7;

const SLOT: u8 = 0b0000_0111;
const NOT_RESIDENT: u8 = 7;
const YOUNG: u8 = 1 << 3;
const HINT: u8 = 1 << 4;
const ACTIVE: u8 = 1 << 5;
/// For a page that is not resident: an anonymous page is on the swap device, a file page
/// was in the page cache and its shadow entry (in `pos`) says when it was evicted; else the
/// page was never touched.
const SWAPPED: u8 = 1 << 6;
/// For a resident page: `PG_referenced`, set when reclaim found it young once.
const REFERENCED: u8 = 1 << 6;
const QUEUED: u8 = 1 << 7;

const INACTIVE_LIST: usize = 0;
const ACTIVE_LIST: usize = 1;
/// The file lists' indices are the anonymous ones plus this (`lists[FILE + INACTIVE_LIST]`).
const FILE: usize = 2;
/// Bits of a shadow entry (in `pos`) that hold the node slot; the eviction age is above them.
const SHADOW_SLOT_BITS: u32 = 3;
/// The eviction ages a shadow entry keeps (refault distances are taken modulo this).
const SHADOW_AGE_MASK: u32 = u32::MAX >> SHADOW_SLOT_BITS;
/// `SWAP_CLUSTER_MAX`: the batch reclaim works in.
const BATCH: u64 = 32;
/// `DEF_PRIORITY`: reclaim's first priority (it scans `lru_size >> priority` pages a round).
const DEF_PRIORITY: u32 = 12;
/// Pages kswapd scans in the time of one workload access.
const KSWAPD_SCAN_PER_ACCESS: u64 = 2;
/// Hot-page candidates kept per node between two policy ticks.
const HOT_QUEUE_CAP: usize = 1 << 16;
/// List entries [`Machine::hottest`] looks at per heat-1 page it is asked for.
const WARM_LOOK_PER_PAGE: usize = 4;
/// Most list entries one [`Machine::hottest`] call looks at for heat-1 pages.
const WARM_LOOK_MAX: usize = 16384;

/// What kernel reclaim does with a page it evicts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reclaim {
    /// Swap it out (no demotion).
    Swap,
    /// Migrate it down the path, swap only when no destination has room.
    Demote,
}

/// One node as the scenario describes it.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// The node id.
    pub id: NodeId,
    /// Pages.
    pub total: u64,
    /// `[min, low, high]` watermarks, pages.
    pub wmarks: [u64; 3],
    /// Access latency, ns.
    pub latency_ns: u64,
    /// Bandwidth, MB/s (for migration cost).
    pub bandwidth_mbps: u64,
}

/// One process's pages and memory policy.
#[derive(Clone, Debug)]
pub struct ProcessConfig {
    /// First page.
    pub first: Page,
    /// One past the last page.
    pub end: Page,
    /// Node slots to allocate from, in order (allowed nodes by distance from the CPU).
    pub zonelist: Vec<u8>,
    /// Its pages are a file's, in the page cache (else anonymous).
    pub file: bool,
    /// For a file: a page is written (dirtied when read in) when the hash of its index in
    /// the file, 32 bits, is below this (0: none, 2^32: all). See [`dirty_threshold`].
    pub dirty_below: u64,
}

/// The [`ProcessConfig::dirty_below`] of a dirty fraction in `0.0..=1.0`.
pub fn dirty_threshold(fraction: f64) -> u64 {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // clamped to 0..=2^32
    let t = (fraction.clamp(0.0, 1.0) * 4_294_967_296.0).round() as u64;
    t
}

/// Whether page `index` of a file is among those written, for `dirty_below`: the top half
/// of a fixed 64-bit mix (splitmix64's finaliser) of the index.
fn is_written(index: u64, dirty_below: u64) -> bool {
    let mut z = index.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 32) < dirty_below
}

/// Everything the machine needs.
#[derive(Clone, Debug)]
pub struct MachineConfig {
    /// Nodes, in slot order.
    pub nodes: Vec<NodeConfig>,
    /// Per slot, demotion destination slots (target, then fallbacks).
    pub destinations: Vec<Vec<u8>>,
    /// Per slot, whether hot pages on it are tracked for promotion.
    pub promotable: Vec<bool>,
    /// Processes, in page order, covering `0..pages`.
    pub processes: Vec<ProcessConfig>,
    /// Bytes per page.
    pub page_size: u64,
    /// Swap device size, pages.
    pub swap_pages: u64,
    /// Cost of a swap-in fault, ns.
    pub swap_fault_ns: u64,
    /// Cost of a first-touch fault (allocate and zero a page), ns.
    pub first_touch_ns: u64,
    /// Fixed cost of migrating one page besides the copy (unmap, TLB flush), ns.
    pub migrate_overhead_ns: u64,
    /// What kernel reclaim does.
    pub reclaim: Reclaim,
    /// Cost of reading one file page from disk, ns (a stall of the workload).
    pub disk_read_ns: u64,
    /// Cost of writing one dirty file page back, ns (background, or a stall in direct
    /// reclaim).
    pub disk_write_ns: u64,
    /// `vm.swappiness`, 0..=200.
    pub swappiness: u64,
}

/// Counters of one run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Accesses served by a resident page, per node slot (faults are counted apart).
    pub served: [u64; MAX_SIM_NODES],
    /// Accesses that found no memory at all (each one OOM-killed its process).
    pub oom: u64,
    /// Processes the OOM killer ended.
    pub oom_kills: u64,
    /// Accesses replayed when the first process was OOM-killed.
    pub first_oom_kill_at: Option<u64>,
    /// Accesses of processes that had been OOM-killed (not simulated: they never ran).
    pub killed_accesses: u64,
    /// First touches.
    pub first_touch: u64,
    /// Swap-in faults.
    pub swap_in: u64,
    /// Pages swapped out.
    pub swap_out: u64,
    /// Pages demoted by kernel reclaim.
    pub kernel_demoted: u64,
    /// Pages demoted through the backend (the policy).
    pub policy_demoted: u64,
    /// Pages promoted through the backend (the policy).
    pub promoted: u64,
    /// Page moves per (from slot, to slot), every cause.
    pub moves: [[u64; MAX_SIM_NODES]; MAX_SIM_NODES],
    /// kswapd wake-ups.
    pub kswapd_runs: u64,
    /// Direct reclaim runs.
    pub direct_reclaims: u64,
    /// Workload stall time besides memory latency (faults, direct reclaim), ns.
    pub stall_ns: u64,
    /// Background time (kswapd and policy migrations), ns.
    pub background_ns: u64,
    /// File pages read from disk (first reads and refaults).
    pub disk_reads: u64,
    /// Dirty file pages written back by reclaim.
    pub disk_writes: u64,
    /// File pages read again after reclaim dropped them.
    pub refaults_file: u64,
    /// Refaults whose distance was within the workingset, activated at once.
    pub workingset_activations: u64,
    /// File pages reclaim dropped from the page cache.
    pub file_dropped: u64,
}

/// One LRU list, as a queue of pages: the tail (oldest) at the front, the head at the back.
///
/// A page moved off the list from its middle is not searched for: its entry stays, stale,
/// and is dropped when it reaches the front (or when stale entries outnumber live ones, by
/// a compaction that keeps the order). An entry is live when its page's state names this
/// list and the page's `pos` is the entry's absolute index (`base` counts the entries ever
/// dropped from the front), so the order of the live entries is exactly that of a linked
/// list, while reclaim, which works from the tail, reads the queue in order instead of
/// chasing a link per page (a cache miss the next link had to wait for).
#[derive(Clone, Debug, Default)]
struct List {
    queue: VecDeque<Page>,
    /// Absolute index of the queue's front entry.
    base: u64,
    /// Live entries.
    len: u64,
}

impl List {
    fn new() -> List {
        List::default()
    }

    /// Whether `page`, found at absolute index `at` of list `list` of `slot`, is live there.
    /// (A page is only ever pushed onto the lists of its own kind, anonymous or file, so the
    /// active bit tells the two lists of a kind apart.)
    #[inline]
    fn live(state: &[u8], pos: &[u32], page: Page, at: u64, slot: usize, list: usize) -> bool {
        let i = page as usize;
        let s = state[i];
        #[allow(clippy::cast_possible_truncation)] // indices compare modulo 2^32, see `pos`
        let at = at as u32;
        (s & SLOT) as usize == slot && usize::from(s & ACTIVE != 0) == list & 1 && pos[i] == at
    }
}

#[derive(Clone, Debug)]
struct Node {
    cfg: NodeConfig,
    free: u64,
    /// Anonymous inactive and active, file inactive and active.
    lists: [List; 4],
    /// `nonresident_age` (mm/workingset.c): evictions and activations so far, the clock of
    /// shadow entries.
    nonresident_age: u32,
    hot: Vec<Page>,
    /// Where the next look for heat-1 pages starts: a list (index into the four) and an
    /// absolute queue index in it.
    warm_cursor: (usize, u64),
    /// ns to migrate one page out of or into this node.
    copy_ns: u64,
}

/// The simulated machine. See the module documentation.
#[derive(Clone, Debug)]
pub struct Machine {
    state: Vec<u8>,
    /// Per resident page, the absolute index of its entry in its list's queue, modulo 2^32
    /// (a queue never holds 2^32 entries, so live indices never collide). Per file page
    /// evicted from the page cache, its shadow entry: the node slot in the low
    /// [`SHADOW_SLOT_BITS`], the node's `nonresident_age` at eviction above them.
    pos: Vec<u32>,
    /// One bit per page: a resident file page that is dirty. Empty when no process is
    /// file-backed.
    dirty: Vec<u64>,
    /// Some process is file-backed (else every page is anonymous and the file lists empty).
    has_file: bool,
    disk_read_ns: u64,
    disk_write_ns: u64,
    swappiness: u64,
    nodes: Vec<Node>,
    destinations: Vec<Vec<u8>>,
    promotable_mask: u8,
    processes: Vec<ProcessConfig>,
    /// Per process, whether the OOM killer ended it.
    killed: Vec<bool>,
    page_size: u64,
    swap_pages: u64,
    swap_used: u64,
    swap_fault_ns: u64,
    first_touch_ns: u64,
    migrate_overhead_ns: u64,
    reclaim: Reclaim,
    reclaiming: u8,
    /// Nodes whose kswapd is awake, one bit per slot.
    kswapd_running: u8,
    /// Accesses replayed when each node's kswapd last ran.
    kswapd_at: [u64; MAX_SIM_NODES],
    /// The counters.
    pub counters: Counters,
}

impl Machine {
    /// A machine with every page untouched and every node free.
    pub fn new(cfg: MachineConfig) -> Machine {
        assert!(cfg.nodes.len() <= MAX_SIM_NODES, "at most {MAX_SIM_NODES} nodes");
        let pages = cfg.processes.last().map_or(0, |p| p.end as usize);
        let min_bw = |a: u64| a.max(1);
        let nodes = cfg
            .nodes
            .iter()
            .map(|n| Node {
                free: n.total,
                lists: [List::new(), List::new(), List::new(), List::new()],
                nonresident_age: 0,
                hot: Vec::new(),
                warm_cursor: (0, 0),
                copy_ns: cfg.page_size * 1000 / min_bw(n.bandwidth_mbps),
                cfg: n.clone(),
            })
            .collect();
        let mut promotable_mask = 0u8;
        for (slot, p) in cfg.promotable.iter().enumerate() {
            if *p {
                promotable_mask |= 1 << slot;
            }
        }
        let has_file = cfg.processes.iter().any(|p| p.file);
        Machine {
            state: vec![NOT_RESIDENT; pages],
            pos: vec![NONE; pages],
            dirty: if has_file { vec![0; pages.div_ceil(64)] } else { Vec::new() },
            has_file,
            disk_read_ns: cfg.disk_read_ns,
            disk_write_ns: cfg.disk_write_ns,
            swappiness: cfg.swappiness.min(200),
            nodes,
            destinations: cfg.destinations,
            promotable_mask,
            killed: vec![false; cfg.processes.len()],
            processes: cfg.processes,
            page_size: cfg.page_size,
            swap_pages: cfg.swap_pages,
            swap_used: 0,
            swap_fault_ns: cfg.swap_fault_ns,
            first_touch_ns: cfg.first_touch_ns,
            migrate_overhead_ns: cfg.migrate_overhead_ns,
            reclaim: cfg.reclaim,
            reclaiming: 0,
            kswapd_running: 0,
            kswapd_at: [0; MAX_SIM_NODES],
            counters: Counters::default(),
        }
    }

    /// Bytes of simulator state per page: the hot byte, the page's index in its list (or a
    /// file page's shadow entry) and its list entry (plus, between two compactions, up to
    /// one more entry per page and 4096 per list for pages moved off a list's middle; and,
    /// when some process is file-backed, one dirty bit per page).
    pub const BYTES_PER_PAGE: usize = 1 + 2 * std::mem::size_of::<u32>();

    /// Number of pages.
    pub fn pages(&self) -> usize {
        self.state.len()
    }

    /// Number of node slots.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// The node in `slot`.
    pub fn node_id(&self, slot: usize) -> NodeId {
        self.nodes[slot].cfg.id
    }

    /// Free pages of `slot`.
    pub fn free(&self, slot: usize) -> u64 {
        self.nodes[slot].free
    }

    /// Pages in use on `slot`.
    pub fn used(&self, slot: usize) -> u64 {
        self.nodes[slot].cfg.total - self.nodes[slot].free
    }

    /// Pages on the swap device.
    pub fn swap_used(&self) -> u64 {
        self.swap_used
    }

    /// File pages resident on `slot` (both file lists).
    pub fn file_pages(&self, slot: usize) -> u64 {
        let l = &self.nodes[slot].lists;
        l[FILE + INACTIVE_LIST].len + l[FILE + ACTIVE_LIST].len
    }

    /// File pages reclaim dropped from the page cache and not read again since (each has a
    /// shadow entry).
    pub fn evicted_file_pages(&self) -> u64 {
        self.processes
            .iter()
            .filter(|p| p.file)
            .flat_map(|p| p.first..p.end)
            .filter(|&p| self.state[p as usize] & (SLOT | SWAPPED) == NOT_RESIDENT | SWAPPED)
            .count() as u64
    }

    /// Whether `page` is a file page (of a file-backed process).
    pub fn is_file(&self, page: Page) -> bool {
        self.has_file && self.processes[self.process_of(page)].file
    }

    /// The offset of `page`'s kind in `lists`: 0 (anonymous) or [`FILE`].
    fn kind(&self, page: Page) -> usize {
        if self.is_file(page) { FILE } else { 0 }
    }

    /// Whether resident file page `page` is dirty.
    pub fn is_dirty(&self, page: Page) -> bool {
        let i = page as usize;
        self.dirty.get(i / 64).is_some_and(|w| w >> (i % 64) & 1 != 0)
    }

    fn set_dirty(&mut self, page: Page, dirty: bool) {
        let i = page as usize;
        let bit = 1u64 << (i % 64);
        if dirty {
            self.dirty[i / 64] |= bit;
        } else if let Some(w) = self.dirty.get_mut(i / 64) {
            *w &= !bit;
        }
    }

    /// The node slot `page` is on, if resident.
    pub fn slot_of(&self, page: Page) -> Option<usize> {
        let s = self.state[page as usize] & SLOT;
        (s != NOT_RESIDENT).then_some(s as usize)
    }

    /// Simulated time so far: memory latency of every access plus stalls, ns. Scenario
    /// checks keep it far below `u64::MAX`; it saturates rather than wraps regardless.
    pub fn now_ns(&self) -> u64 {
        let c = &self.counters;
        let lat = self
            .nodes
            .iter()
            .zip(c.served)
            .fold(0u64, |t, (n, s)| t.saturating_add(n.cfg.latency_ns.saturating_mul(s)));
        lat.saturating_add(c.stall_ns)
    }

    /// Whether the OOM killer has ended every process: nothing is left to simulate.
    pub fn all_killed(&self) -> bool {
        !self.killed.is_empty() && self.killed.iter().all(|k| *k)
    }

    /// Names of the processes the OOM killer ended, by index.
    pub fn killed_processes(&self) -> Vec<usize> {
        self.killed.iter().enumerate().filter(|(_, k)| **k).map(|(i, _)| i).collect()
    }

    /// Replays `trace`. The hot loop: one byte read and written per access, faults aside.
    pub fn run(&mut self, trace: &[Page]) {
        let track = self.promotable_mask;
        let mut served = self.counters.served;
        for &p in trace {
            let i = p as usize;
            let s = self.state[i];
            let slot = s & SLOT;
            if slot == NOT_RESIDENT {
                self.counters.served = served;
                self.fault(p);
                served = self.counters.served;
                continue;
            }
            served[slot as usize] += 1;
            // A second access in one tracking window on a node whose pages are promotable
            // makes the page a promotion candidate (like a NUMA hinting fault).
            if s & (HINT | QUEUED) == HINT && track & (1 << slot) != 0 {
                self.queue_hot(p, slot);
                continue;
            }
            self.state[i] = s | YOUNG | HINT;
        }
        self.counters.served = served;
        self.kswapd_background();
    }

    #[cold]
    fn queue_hot(&mut self, p: Page, slot: u8) {
        let hot = &mut self.nodes[slot as usize].hot;
        let i = p as usize;
        if hot.len() < HOT_QUEUE_CAP {
            hot.push(p);
            self.state[i] |= YOUNG | HINT | QUEUED;
        } else {
            self.state[i] |= YOUNG | HINT;
        }
    }

    /// Ends a tracking window: pages must be accessed twice in the next window to become
    /// promotion candidates again.
    pub fn end_window(&mut self) {
        for s in &mut self.state {
            *s &= !HINT;
        }
    }

    fn process_of(&self, p: Page) -> usize {
        self.processes.partition_point(|pr| pr.end <= p)
    }

    #[cold]
    fn fault(&mut self, p: Page) {
        let i = p as usize;
        let swapped = self.state[i] & SWAPPED != 0;
        let proc = self.process_of(p);
        if self.killed[proc] {
            self.counters.killed_accesses += 1;
            return;
        }
        // A file page's shadow entry, read before reclaim runs for the allocation.
        let shadow = self.pos[i];
        let Some(slot) = self.allocate(proc) else {
            self.counters.oom += 1;
            self.oom_kill(proc);
            return;
        };
        if self.processes[proc].file {
            self.file_fault(p, proc, slot, swapped.then_some(shadow));
            return;
        }
        let c = &mut self.counters;
        if swapped {
            c.swap_in += 1;
            c.stall_ns = c.stall_ns.saturating_add(self.swap_fault_ns);
            self.swap_used -= 1;
        } else {
            c.first_touch += 1;
            c.stall_ns = c.stall_ns.saturating_add(self.first_touch_ns);
        }
        // The faulting access itself is a fault, not a hit on the node: it pays the fault
        // and the node's latency.
        c.stall_ns = c.stall_ns.saturating_add(self.nodes[slot as usize].cfg.latency_ns);
        // A page still in a hot queue keeps its mark, so that it is never queued twice.
        self.state[i] = slot | YOUNG | HINT | (self.state[i] & QUEUED);
        self.push_head(p, slot as usize, INACTIVE_LIST);
    }

    /// A page-cache miss on file page `p` of process `proc`, for which `slot` has a free page:
    /// the page is read from disk (the workload stalls for it) and added to the inactive file
    /// list with `PG_referenced` set and its young bit clear, as `filemap_read` adds a new
    /// folio and marks it accessed: one more access before reclaim reaches it activates it,
    /// none lets reclaim drop it at its first look (used once). A refault (`shadow`: the page
    /// was evicted) whose refault distance, the evictions and activations on its node since,
    /// is within the workingset (active file pages, plus all anonymous ones while swap has
    /// room: `workingset_test_recent`) goes straight to the active list.
    #[cold]
    fn file_fault(&mut self, p: Page, proc: usize, slot: u8, shadow: Option<u32>) {
        let i = p as usize;
        let c = &mut self.counters;
        c.disk_reads += 1;
        c.stall_ns = c
            .stall_ns
            .saturating_add(self.disk_read_ns)
            .saturating_add(self.nodes[slot as usize].cfg.latency_ns);
        let mut flag = 0;
        if let Some(shadow) = shadow {
            c.refaults_file += 1;
            if self.refault_is_recent(shadow) {
                self.counters.workingset_activations += 1;
                let n = &mut self.nodes[slot as usize];
                n.nonresident_age = n.nonresident_age.wrapping_add(1);
                flag = ACTIVE;
            }
        } else {
            c.first_touch += 1;
        }
        let pr = &self.processes[proc];
        if is_written(u64::from(p - pr.first), pr.dirty_below) {
            self.set_dirty(p, true);
        }
        self.state[i] = slot | HINT | REFERENCED | flag | (self.state[i] & QUEUED);
        let list = if flag == 0 { INACTIVE_LIST } else { ACTIVE_LIST };
        self.push_head(p, slot as usize, FILE + list);
    }

    /// `workingset_test_recent`: whether a refault's distance is within the workingset size of
    /// the node it was evicted from.
    fn refault_is_recent(&self, shadow: u32) -> bool {
        let slot = (shadow & ((1 << SHADOW_SLOT_BITS) - 1)) as usize;
        let Some(n) = self.nodes.get(slot) else {
            return false;
        };
        let distance = (n.nonresident_age & SHADOW_AGE_MASK)
            .wrapping_sub(shadow >> SHADOW_SLOT_BITS)
            & SHADOW_AGE_MASK;
        let mut workingset = n.lists[FILE + ACTIVE_LIST].len;
        if self.swap_used < self.swap_pages {
            workingset += n.lists[ACTIVE_LIST].len + n.lists[INACTIVE_LIST].len;
        }
        u64::from(distance) <= workingset
    }

    /// The OOM killer (`out_of_memory` with `oom_kill_allocating_task`): ends process
    /// `proc` and frees its pages and its swap slots, as the exit of a killed task does.
    #[cold]
    fn oom_kill(&mut self, proc: usize) {
        let ProcessConfig { first, end, file, .. } = self.processes[proc];
        let kind = if file { FILE } else { 0 };
        for p in first..end {
            let i = p as usize;
            let s = self.state[i];
            let slot = s & SLOT;
            if slot != NOT_RESIDENT {
                self.unlink(p, slot as usize, kind + usize::from(s & ACTIVE != 0));
                self.nodes[slot as usize].free += 1;
                if file {
                    self.set_dirty(p, false);
                }
            } else if s & SWAPPED != 0 && !file {
                self.swap_used -= 1;
            }
            // A page still in a hot queue keeps its mark until the queue is drained.
            self.state[i] = NOT_RESIDENT | (s & QUEUED);
        }
        self.killed[proc] = true;
        self.counters.oom_kills += 1;
        let at = self.accesses();
        self.counters.first_oom_kill_at.get_or_insert(at);
    }

    /// Takes one free page for process `proc`, reclaiming as Linux would. Returns the slot
    /// whose free count was already decremented.
    fn allocate(&mut self, proc: usize) -> Option<u8> {
        let zonelist = std::mem::take(&mut self.processes[proc].zonelist);
        let got = self.allocate_from(&zonelist);
        self.processes[proc].zonelist = zonelist;
        got
    }

    fn allocate_from(&mut self, zonelist: &[u8]) -> Option<u8> {
        self.kswapd_background();
        // Fast path: above low.
        for &s in zonelist {
            let n = &mut self.nodes[s as usize];
            if n.free > n.cfg.wmarks[1] {
                n.free -= 1;
                return Some(s);
            }
        }
        // Slow path: wake kswapd everywhere allowed, retry against min.
        for &s in zonelist {
            self.wake_kswapd(s as usize);
        }
        for &s in zonelist {
            let n = &mut self.nodes[s as usize];
            if n.free > n.cfg.wmarks[0] {
                n.free -= 1;
                return Some(s);
            }
        }
        // Direct reclaim, charged to the workload.
        for &s in zonelist {
            let goal = self.nodes[s as usize].cfg.wmarks[0] + BATCH;
            self.counters.direct_reclaims += 1;
            let before = self.counters.background_ns;
            let trip = self.used(s as usize) + BATCH;
            self.shrink_node(s as usize, goal, trip);
            let spent = self.counters.background_ns - before;
            self.counters.background_ns = before;
            self.counters.stall_ns = self.counters.stall_ns.saturating_add(spent);
            let n = &mut self.nodes[s as usize];
            if n.free > n.cfg.wmarks[0] {
                n.free -= 1;
                return Some(s);
            }
        }
        None
    }

    /// Wakes kswapd on a node below `low`: it runs beside the workload until the node is
    /// back above `high` (`balance_pgdat`), scanning about [`KSWAPD_SCAN_PER_ACCESS`] pages in
    /// the time of one access. The pacing matters: an instantaneous pass over a list of
    /// young pages would rotate all of them and evict them on the next pass, before the
    /// workload had a chance to touch any again.
    fn wake_kswapd(&mut self, slot: usize) {
        let n = &self.nodes[slot];
        let bit = 1 << slot;
        if n.free > n.cfg.wmarks[1] || self.kswapd_running & bit != 0 {
            return;
        }
        self.kswapd_running |= bit;
        self.kswapd_at[slot] = self.accesses();
        self.counters.kswapd_runs += 1;
        self.kswapd_step(slot, BATCH);
    }

    /// Lets kswapd on `slot` scan what it could since its last step, plus `extra` pages.
    fn kswapd_step(&mut self, slot: usize, extra: u64) {
        if self.reclaiming & (1 << slot) != 0 {
            return;
        }
        let now = self.accesses();
        let budget = extra + KSWAPD_SCAN_PER_ACCESS * (now - self.kswapd_at[slot]);
        self.kswapd_at[slot] = now;
        let goal = self.nodes[slot].cfg.wmarks[2];
        self.shrink_node(slot, goal, budget.min(self.used(slot)));
        if self.nodes[slot].free >= goal {
            self.kswapd_running &= !(1 << slot);
        }
    }

    /// Runs every awake kswapd for the time elapsed since its last step.
    fn kswapd_background(&mut self) {
        let mut running = self.kswapd_running;
        while running != 0 {
            let slot = running.trailing_zeros() as usize;
            running &= running - 1;
            self.kswapd_step(slot, 0);
        }
    }

    /// Accesses replayed so far (served and faulted).
    fn accesses(&self) -> u64 {
        let c = &self.counters;
        c.served.iter().sum::<u64>() + c.first_touch + c.swap_in + c.refaults_file + c.oom
    }

    /// `inactive_is_low` for the lists of `kind` (0: anonymous, [`FILE`]).
    fn inactive_is_low(&self, slot: usize, kind: usize) -> bool {
        let [inactive, active] =
            [INACTIVE_LIST, ACTIVE_LIST].map(|l| self.nodes[slot].lists[kind + l].len);
        let gb = ((inactive + active) * self.page_size) >> 30;
        let ratio = if gb == 0 { 1 } else { (10 * gb).isqrt() };
        inactive * ratio < active
    }

    /// `shrink_active_list`: moves up to `nr` pages from the active tail of `kind` to its
    /// inactive head, clearing their young bits (anonymous and file pages alike: only
    /// executable file pages, not modelled, are kept active when referenced).
    fn age_active(&mut self, slot: usize, kind: usize, nr: u64) {
        for _ in 0..nr {
            let Some(p) = self.tail(slot, kind + ACTIVE_LIST) else {
                return;
            };
            self.unlink(p, slot, kind + ACTIVE_LIST);
            self.state[p as usize] &= !(YOUNG | ACTIVE);
            self.push_head(p, slot, kind + INACTIVE_LIST);
        }
    }

    /// The next page to consider at the inactive tail of `kind`, aging its active list as
    /// needed; `None` when the node has no pages of that kind.
    fn inactive_tail(&mut self, slot: usize, kind: usize) -> Option<Page> {
        if self.inactive_is_low(slot, kind) {
            self.age_active(slot, kind, BATCH);
        }
        if let Some(p) = self.tail(slot, kind + INACTIVE_LIST) {
            return Some(p);
        }
        self.age_active(slot, kind, BATCH);
        self.tail(slot, kind + INACTIVE_LIST)
    }

    /// `folio_check_references` on the inactive tail page `p` of `kind`: returns true when
    /// the page stays (it was young and has been activated or rotated; or, a file page, it is
    /// dirty and was referenced: `FOLIOREF_RECLAIM_CLEAN` keeps it for now), false when it is
    /// old (reclaimable).
    fn check_references(&mut self, p: Page, slot: usize, kind: usize) -> bool {
        let i = p as usize;
        let s = self.state[i];
        if s & YOUNG == 0 {
            self.state[i] = s & !REFERENCED;
            if kind == FILE && s & REFERENCED != 0 && self.is_dirty(p) {
                self.unlink(p, slot, FILE + INACTIVE_LIST);
                self.push_head(p, slot, FILE + INACTIVE_LIST);
                return true;
            }
            return false;
        }
        self.unlink(p, slot, kind + INACTIVE_LIST);
        if s & REFERENCED != 0 {
            self.state[i] = (s & !YOUNG) | ACTIVE;
            self.push_head(p, slot, kind + ACTIVE_LIST);
            if kind == FILE {
                // `workingset_activation`.
                let n = &mut self.nodes[slot];
                n.nonresident_age = n.nonresident_age.wrapping_add(1);
            }
        } else {
            self.state[i] = (s & !YOUNG) | REFERENCED;
            self.push_head(p, slot, kind + INACTIVE_LIST);
        }
        true
    }

    /// `get_scan_count` for one pass of reclaim on `slot`: the weights of anonymous and file
    /// pages, `[anon, file]` (a pass scans each kind in proportion to its weight).
    /// - No file pages on the node: anonymous only (every anonymous-only run).
    /// - Anonymous pages cannot be reclaimed (no swap room and no demotion destination):
    ///   file only (`can_reclaim_anon_pages`).
    /// - File pages and free pages together below `high`: anonymous only (`file_is_tiny`).
    /// - The inactive file list is not low and holds at least `1 << DEF_PRIORITY` pages (the
    ///   kernel's `file >> sc->priority` at its first priority; the refaults that also make
    ///   it deactivate file pages are not modelled): file only (`cache_trim_mode`).
    /// - Else `SCAN_FRACT`: each kind's list size times its priority, anon `swappiness`,
    ///   file `200 - swappiness` (the kernel also weighs the kinds by their recent refault
    ///   and rotation costs, `lru_note_cost`: not modelled, the costs are taken as equal).
    fn scan_weights(&self, slot: usize) -> [u64; 2] {
        let n = &self.nodes[slot];
        let file = self.file_pages(slot);
        if file == 0 {
            return [1, 0];
        }
        let room = self.swap_used < self.swap_pages
            || (self.reclaim == Reclaim::Demote && !self.destinations[slot].is_empty());
        if !room {
            return [0, 1];
        }
        if file + n.free <= n.cfg.wmarks[2] {
            return [1, 0];
        }
        if n.lists[FILE + INACTIVE_LIST].len >> DEF_PRIORITY > 0
            && !self.inactive_is_low(slot, FILE)
        {
            return [0, 1];
        }
        let anon = n.lists[INACTIVE_LIST].len + n.lists[ACTIVE_LIST].len;
        [anon * self.swappiness, file * (200 - self.swappiness)]
    }

    /// Reclaims `slot` until `goal` pages are free or nothing more can go.
    /// At most `budget` pages are examined without freeing one (never more than one trip
    /// around the lists: a page rotated in this pass must not come round again before the
    /// workload has had a chance to touch it).
    fn shrink_node(&mut self, slot: usize, goal: u64, budget: u64) {
        self.reclaiming |= 1 << slot;
        let mut fruitless = 0u64;
        // Pages scanned per kind, and the kinds' weights (`get_scan_count`): each step
        // scans the kind furthest behind its share.
        let mut scanned = [0u64; 2];
        let weights = if self.has_file { self.scan_weights(slot) } else { [1, 0] };
        while self.nodes[slot].free < goal && fruitless < budget {
            let first = usize::from(scanned[1] * weights[0] < scanned[0] * weights[1]);
            let first = if weights[first] == 0 { 1 - first } else { first };
            let (p, k) = match self.inactive_tail(slot, first * FILE) {
                Some(p) => (p, first),
                None if weights[1 - first] > 0 => {
                    match self.inactive_tail(slot, (1 - first) * FILE) {
                        Some(p) => (p, 1 - first),
                        None => break,
                    }
                }
                None => break,
            };
            scanned[k] += 1;
            let kind = k * FILE;
            if self.check_references(p, slot, kind) {
                fruitless += 1;
                continue;
            }
            if self.evict(p, slot, kind) {
                fruitless = 0;
            } else {
                self.unlink(p, slot, kind + INACTIVE_LIST);
                self.push_head(p, slot, kind + INACTIVE_LIST);
                fruitless += 1;
            }
        }
        self.reclaiming &= !(1 << slot);
    }

    /// Evicts an old inactive page of `kind`: demote when enabled and a destination has room
    /// (`demote_folio_list` takes file pages as well, dirty ones too: migration keeps them
    /// dirty); else swap an anonymous page, or drop a file page from the page cache after
    /// writing it back if it is dirty. Returns false when the page had to stay.
    fn evict(&mut self, p: Page, slot: usize, kind: usize) -> bool {
        if self.reclaim == Reclaim::Demote {
            for k in 0..self.destinations[slot].len() {
                let d = self.destinations[slot][k] as usize;
                let n = &self.nodes[d];
                if n.free > n.cfg.wmarks[0] {
                    self.migrate(p, slot, d);
                    self.counters.kernel_demoted += 1;
                    self.counters.background_ns =
                        self.counters.background_ns.saturating_add(self.copy_ns(slot, d));
                    self.wake_kswapd(d);
                    return true;
                }
            }
        }
        let i = p as usize;
        if kind == FILE {
            if self.is_dirty(p) {
                // Written back (the flusher's time; `shrink_node` charges it to the workload
                // in direct reclaim), then clean and dropped, as when `folio_end_writeback`
                // rotates it to the inactive tail and reclaim comes back to it.
                self.set_dirty(p, false);
                self.counters.disk_writes += 1;
                self.counters.background_ns =
                    self.counters.background_ns.saturating_add(self.disk_write_ns);
            }
            self.unlink(p, slot, FILE + INACTIVE_LIST);
            let n = &mut self.nodes[slot];
            n.free += 1;
            // `workingset_eviction`: the shadow entry records the node and its age.
            #[allow(clippy::cast_possible_truncation)] // slots are < 7
            let shadow = (n.nonresident_age << SHADOW_SLOT_BITS) | slot as u32;
            n.nonresident_age = n.nonresident_age.wrapping_add(1);
            self.pos[i] = shadow;
            self.state[i] = NOT_RESIDENT | SWAPPED | (self.state[i] & QUEUED);
            self.counters.file_dropped += 1;
            return true;
        }
        if self.swap_used >= self.swap_pages {
            return false;
        }
        self.unlink(p, slot, INACTIVE_LIST);
        let n = &mut self.nodes[slot];
        n.free += 1;
        // `workingset_eviction` ages the node for anonymous pages too.
        n.nonresident_age = n.nonresident_age.wrapping_add(1);
        self.state[i] = NOT_RESIDENT | SWAPPED | (self.state[i] & QUEUED);
        self.swap_used += 1;
        self.counters.swap_out += 1;
        true
    }

    fn copy_ns(&self, from: usize, to: usize) -> u64 {
        self.nodes[from].copy_ns.max(self.nodes[to].copy_ns) + self.migrate_overhead_ns
    }

    /// Moves a resident page between nodes (the destination must have a free page).
    /// Promoted pages (to a node that demotes into `from`) land on the active list, others on
    /// the inactive list, both with young and hint bits cleared.
    fn migrate(&mut self, p: Page, from: usize, to: usize) {
        let i = p as usize;
        let kind = self.kind(p);
        let list = usize::from(self.state[i] & ACTIVE != 0);
        self.unlink(p, from, kind + list);
        self.nodes[from].free += 1;
        self.nodes[to].free -= 1;
        let up = self.is_below(from, to);
        let (flag, list) = if up { (ACTIVE, ACTIVE_LIST) } else { (0, INACTIVE_LIST) };
        #[allow(clippy::cast_possible_truncation)] // slots are < 7
        let slot = to as u8;
        self.state[i] = slot | flag | (self.state[i] & QUEUED);
        self.push_head(p, to, kind + list);
        self.counters.moves[from][to] += 1;
    }

    /// Whether `low` is reachable from `high` along demotion destinations.
    fn is_below(&self, low: usize, high: usize) -> bool {
        let mut seen = 0u8;
        let mut stack = vec![high];
        while let Some(n) = stack.pop() {
            for &d in &self.destinations[n] {
                if d as usize == low {
                    return true;
                }
                if seen & (1 << d) == 0 {
                    seen |= 1 << d;
                    stack.push(d as usize);
                }
            }
        }
        false
    }

    /// The tail page of a list, dropping the stale entries before it.
    fn tail(&mut self, slot: usize, list: usize) -> Option<Page> {
        let l = &mut self.nodes[slot].lists[list];
        while let Some(&q) = l.queue.front() {
            if List::live(&self.state, &self.pos, q, l.base, slot, list) {
                return Some(q);
            }
            l.queue.pop_front();
            l.base += 1;
        }
        None
    }

    /// Takes `p` off a list it is on: from the queue's front or back, else by leaving its
    /// entry stale (its `pos` then names an index before the queue, so it cannot be live
    /// until the page is pushed again).
    fn unlink(&mut self, p: Page, slot: usize, list: usize) {
        let i = p as usize;
        let l = &mut self.nodes[slot].lists[list];
        #[allow(clippy::cast_possible_truncation)] // indices compare modulo 2^32
        let (front, back) = (l.base as u32, (l.base + l.queue.len() as u64).wrapping_sub(1) as u32);
        l.len -= 1;
        if self.pos[i] == front && l.queue.front() == Some(&p) {
            l.queue.pop_front();
            l.base += 1;
        } else if self.pos[i] == back && l.queue.back() == Some(&p) {
            l.queue.pop_back();
        } else {
            #[allow(clippy::cast_possible_truncation)]
            {
                self.pos[i] = l.base.wrapping_sub(1) as u32;
            }
            if l.queue.len() as u64 > 2 * l.len + 4096 {
                self.compact(slot, list);
            }
        }
    }

    /// Drops a list's stale entries, keeping the live ones in order at fresh indices.
    fn compact(&mut self, slot: usize, list: usize) {
        let l = &mut self.nodes[slot].lists[list];
        let (state, pos) = (&self.state, &mut self.pos);
        let base = l.base;
        let mut at = 0u64;
        let fresh = base + l.queue.len() as u64;
        l.queue.retain(|&q| {
            let keep = List::live(state, pos, q, base + at, slot, list);
            at += 1;
            keep
        });
        for (k, &q) in l.queue.iter().enumerate() {
            #[allow(clippy::cast_possible_truncation)]
            {
                pos[q as usize] = (fresh + k as u64) as u32;
            }
        }
        l.base = fresh;
    }

    fn push_head(&mut self, p: Page, slot: usize, list: usize) {
        let l = &mut self.nodes[slot].lists[list];
        #[allow(clippy::cast_possible_truncation)] // indices compare modulo 2^32
        {
            self.pos[p as usize] = (l.base + l.queue.len() as u64) as u32;
        }
        l.queue.push_back(p);
        l.len += 1;
    }

    /// Up to `max` pages of `slot` accessed once in this window (heat 1: the hint bit set,
    /// not queued), from its lists, looking at [`WARM_LOOK_PER_PAGE`] entries
    /// per page asked for and at most [`WARM_LOOK_MAX`] a call: the policy fills free room on
    /// the node above with them, and a bounded look keeps a tick cheap when few are there.
    fn warm(&mut self, slot: usize, max: usize, out: &mut Vec<PageHeat<Page>>) {
        let mut look = max.saturating_mul(WARM_LOOK_PER_PAGE).min(WARM_LOOK_MAX);
        let mut warm = Vec::new();
        // Each call goes on where the last one stopped, list after list, so that over ticks
        // the look covers the node's pages instead of reading the same heads again.
        let lists = [INACTIVE_LIST, ACTIVE_LIST, FILE + INACTIVE_LIST, FILE + ACTIVE_LIST];
        let (mut li, mut at) = self.nodes[slot].warm_cursor;
        let mut empty = 0;
        while look > 0 && warm.len() < max && empty < lists.len() {
            let list = lists[li % lists.len()];
            let l = &self.nodes[slot].lists[list];
            let end = l.base + l.queue.len() as u64;
            at = at.max(l.base);
            if at >= end {
                li = (li + 1) % lists.len();
                at = 0;
                empty += 1;
                continue;
            }
            empty = 0;
            while at < end && look > 0 && warm.len() < max {
                #[allow(clippy::cast_possible_truncation)] // an index into the queue
                let p = l.queue[(at - l.base) as usize];
                let s = self.state[p as usize];
                if s & (HINT | QUEUED) == HINT
                    && List::live(&self.state, &self.pos, p, at, slot, list)
                {
                    warm.push(p);
                }
                at += 1;
                look -= 1;
            }
        }
        self.nodes[slot].warm_cursor = (li, at);
        // Reported once: the hint bit is spent, so the page is warm again only when it is
        // accessed again.
        for &p in &warm {
            self.state[p as usize] &= !HINT;
            out.push(PageHeat { page: p, heat: 1 });
        }
    }

    fn slot_by_id(&self, node: NodeId) -> Option<usize> {
        self.nodes.iter().position(|n| n.cfg.id == node)
    }

    /// Checks every invariant of the page state and the lists; returns a description of the
    /// first broken one. Touched pages are either on exactly one list of the node their state
    /// names, of their own kind (anonymous or file), or not resident (swapped, or evicted from
    /// the page cache with a shadow entry naming a node); free counts match; swap usage
    /// matches; only resident file pages are dirty.
    pub fn check(&self) -> Result<(), String> {
        let mut seen = vec![false; self.pages()];
        let mut file = vec![false; self.pages()];
        for pr in self.processes.iter().filter(|p| p.file) {
            file[pr.first as usize..pr.end as usize].fill(true);
        }
        for (slot, n) in self.nodes.iter().enumerate() {
            let mut on_node = 0;
            for (list, l) in n.lists.iter().enumerate() {
                let mut count = 0;
                for (k, &p) in l.queue.iter().enumerate() {
                    if !List::live(&self.state, &self.pos, p, l.base + k as u64, slot, list) {
                        continue;
                    }
                    let i = p as usize;
                    if seen[i] {
                        return Err(format!("page {p} is on two lists"));
                    }
                    if file[i] != (list >= FILE) {
                        return Err(format!(
                            "page {p} (file {}) is on slot {slot} list {list}",
                            file[i]
                        ));
                    }
                    seen[i] = true;
                    count += 1;
                }
                if l.len != count {
                    return Err(format!("slot {slot} list {list}: {count} live, length {}", l.len));
                }
                on_node += count;
            }
            if on_node + n.free != n.cfg.total {
                return Err(format!("slot {slot}: {on_node} used + {} free != total", n.free));
            }
        }
        let mut swapped = 0;
        for (i, s) in self.state.iter().enumerate() {
            let resident = s & SLOT != NOT_RESIDENT;
            if resident != seen[i] {
                return Err(format!("page {i}: resident {resident} but listed {}", seen[i]));
            }
            #[allow(clippy::cast_possible_truncation)] // pages are u32
            let page = i as Page;
            if self.is_dirty(page) && !(resident && file[i]) {
                return Err(format!("page {i}: dirty but not a resident file page"));
            }
            if !resident && s & SWAPPED != 0 {
                if !file[i] {
                    swapped += 1;
                } else if (self.pos[i] & ((1 << SHADOW_SLOT_BITS) - 1)) as usize >= self.nodes.len()
                {
                    return Err(format!("page {i}: evicted, its shadow names no node"));
                }
            }
        }
        if swapped != self.swap_used {
            return Err(format!("{swapped} swapped pages but swap holds {}", self.swap_used));
        }
        // Hot-page queues: each queued page once, and marked.
        let mut queued = vec![false; self.pages()];
        for n in &self.nodes {
            for &p in &n.hot {
                if std::mem::replace(&mut queued[p as usize], true) {
                    return Err(format!("page {p} is queued twice"));
                }
                if self.state[p as usize] & QUEUED == 0 {
                    return Err(format!("page {p} is queued but not marked"));
                }
            }
        }
        if let Some(p) = (0..self.pages()).find(|&p| self.state[p] & QUEUED != 0 && !queued[p]) {
            return Err(format!("page {p} is marked queued but in no queue"));
        }
        Ok(())
    }

    /// Pages touched so far (resident, swapped, or evicted from the page cache).
    pub fn touched(&self) -> u64 {
        self.state.iter().filter(|s| **s & SLOT != NOT_RESIDENT || **s & SWAPPED != 0).count()
            as u64
    }
}

impl Backend for Machine {
    type Page = Page;

    fn page_size(&self) -> u64 {
        self.page_size
    }

    fn memory_nodes(&self) -> NodeMask {
        self.nodes.iter().map(|n| n.cfg.id).collect()
    }

    fn node_memory(&self, node: NodeId) -> Option<NodeMemory> {
        let n = &self.nodes[self.slot_by_id(node)?];
        Some(NodeMemory {
            total: n.cfg.total,
            free: n.free,
            wmark_min: n.cfg.wmarks[0],
            wmark_low: n.cfg.wmarks[1],
            wmark_high: n.cfg.wmarks[2],
        })
    }

    /// Walks the inactive tail as reclaim does (young pages are activated on the way) and
    /// reports old pages, rotating them to the inactive head so one walk sees each once.
    /// With file pages on the node (a whole-host mover such as DAMOS `migrate_cold` on
    /// physical addresses sees both kinds), the anonymous and file inactive lists are walked
    /// in turn, one page of each, each kind with its own budget.
    fn coldest(&mut self, node: NodeId, max: usize, out: &mut Vec<PageHeat<Page>>) {
        let Some(slot) = self.slot_by_id(node) else {
            return;
        };
        let file = self.file_pages(slot);
        let mut budget = [self.used(slot) - file + BATCH, if file > 0 { file + BATCH } else { 0 }];
        let mut k = 0;
        let mut found = 0;
        while found < max && budget[0] + budget[1] > 0 {
            if budget[k] == 0 {
                k = 1 - k;
            }
            budget[k] -= 1;
            let kind = k * FILE;
            let Some(p) = self.inactive_tail(slot, kind) else {
                budget[k] = 0;
                continue;
            };
            if budget[1 - k] > 0 {
                k = 1 - k;
            }
            if self.check_references(p, slot, kind) {
                continue;
            }
            self.unlink(p, slot, kind + INACTIVE_LIST);
            self.push_head(p, slot, kind + INACTIVE_LIST);
            out.push(PageHeat { page: p, heat: 0 });
            found += 1;
        }
    }

    /// Drains the node's candidate queue (pages accessed twice in the window, heat 2), then,
    /// when that is fewer than `max`, adds pages accessed once (heat 1). A page reported
    /// spends its hint bit: it is reported again only after new accesses.
    fn hottest(&mut self, node: NodeId, max: usize, out: &mut Vec<PageHeat<Page>>) {
        let Some(slot) = self.slot_by_id(node) else {
            return;
        };
        let queue = std::mem::take(&mut self.nodes[slot].hot);
        let mut taken = 0;
        for &p in &queue {
            let i = p as usize;
            self.state[i] &= !QUEUED;
            if taken < max && (self.state[i] & SLOT) as usize == slot {
                // Reported once: the hint bit is spent (the page is found again only when
                // accessed again), so the heat-1 look below does not report it a second time.
                self.state[i] &= !HINT;
                out.push(PageHeat { page: p, heat: 2 });
                taken += 1;
            }
        }
        let mut queue = queue;
        queue.clear();
        self.nodes[slot].hot = queue;
        if taken < max {
            self.warm(slot, max - taken, out);
        }
    }

    fn move_pages(&mut self, pages: &[Page], to: NodeId, status: &mut Vec<MoveStatus>) {
        status.clear();
        let Some(dest) = self.slot_by_id(to) else {
            status.extend(pages.iter().map(|_| Err(MoveError::NoMem)));
            return;
        };
        for &p in pages {
            if p as usize >= self.pages() {
                status.push(Err(MoveError::Fault));
                continue;
            }
            let Some(from) = self.slot_of(p) else {
                status.push(Err(MoveError::NoEnt));
                continue;
            };
            if from == dest {
                status.push(Ok(to));
                continue;
            }
            let n = &self.nodes[dest];
            if n.free <= n.cfg.wmarks[0] {
                status.push(Err(MoveError::NoMem));
                continue;
            }
            self.migrate(p, from, dest);
            if self.is_below(from, dest) {
                self.counters.promoted += 1;
            } else {
                self.counters.policy_demoted += 1;
            }
            self.counters.background_ns =
                self.counters.background_ns.saturating_add(self.copy_ns(from, dest));
            status.push(Ok(to));
        }
        self.wake_kswapd(dest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A machine of `sizes` pages per node (watermarks 4/8/12 pages), node `k` demoting to
    /// `k + 1`, with `procs` processes of `(pages, file, dirty fraction)` allocating on node 0
    /// only, and `swap` pages of swap.
    fn machine(sizes: &[u64], procs: &[(u32, bool, f64)], reclaim: Reclaim, swap: u64) -> Machine {
        let nodes: Vec<NodeConfig> = sizes
            .iter()
            .enumerate()
            .map(|(i, &total)| NodeConfig {
                id: NodeId::new(i).unwrap(),
                total,
                wmarks: [4, 8, 12],
                latency_ns: 100,
                bandwidth_mbps: 10_000,
            })
            .collect();
        #[allow(clippy::cast_possible_truncation)]
        let destinations =
            (0..sizes.len()).map(|i| if i + 1 < sizes.len() { vec![i as u8 + 1] } else { vec![] });
        let mut first = 0;
        let processes = procs
            .iter()
            .map(|&(pages, file, dirty)| {
                let p = ProcessConfig {
                    first,
                    end: first + pages,
                    zonelist: vec![0],
                    file,
                    dirty_below: dirty_threshold(dirty),
                };
                first += pages;
                p
            })
            .collect();
        Machine::new(MachineConfig {
            nodes,
            destinations: destinations.collect(),
            promotable: vec![false; sizes.len()],
            processes,
            page_size: 4096,
            swap_pages: swap,
            swap_fault_ns: 20_000,
            first_touch_ns: 1000,
            migrate_overhead_ns: 1000,
            reclaim,
            disk_read_ns: 100_000,
            disk_write_ns: 50_000,
            swappiness: 60,
        })
    }

    /// `passes` sweeps over pages `range`, checking the invariants after each.
    fn sweep(m: &mut Machine, range: std::ops::Range<Page>, passes: usize) {
        let trace: Vec<Page> = range.collect();
        for _ in 0..passes {
            m.run(&trace);
            m.check().unwrap();
        }
    }

    #[test]
    fn reclaim_drops_clean_file_pages_without_swap() {
        // No swap device at all: a 128-page file on a 64-page node still fits by dropping.
        let mut m = machine(&[64], &[(128, true, 0.0)], Reclaim::Swap, 0);
        sweep(&mut m, 0..128, 1);
        let c = &m.counters;
        assert!(c.file_dropped >= 64, "{c:?}");
        assert_eq!((c.swap_out, c.oom, c.disk_writes, m.swap_used()), (0, 0, 0, 0));
        assert_eq!(c.disk_reads, 128);
        assert_eq!(m.evicted_file_pages(), c.file_dropped);
        assert_eq!(m.file_pages(0) + m.evicted_file_pages(), m.touched());
    }

    #[test]
    fn dirty_file_pages_are_written_back_before_they_are_dropped() {
        let mut m = machine(&[64], &[(128, true, 1.0)], Reclaim::Swap, 0);
        sweep(&mut m, 0..128, 1);
        let c = m.counters.clone();
        assert!(c.file_dropped > 0);
        assert_eq!(c.disk_writes, c.file_dropped, "every dropped page was dirty: {c:?}");
        assert!((0..128).filter(|&p| m.slot_of(p).is_some()).all(|p| m.is_dirty(p)));
        // A writeback costs 50 µs: background under kswapd, a stall in direct reclaim; a
        // read 100 µs of stall.
        assert!(c.background_ns + c.stall_ns >= c.disk_writes * 50_000 + c.disk_reads * 100_000);
        // About a tenth dirty: some writes, fewer than the drops.
        let mut m = machine(&[64], &[(1024, true, 0.1)], Reclaim::Swap, 0);
        sweep(&mut m, 0..1024, 1);
        let c = &m.counters;
        assert!(c.disk_writes > 0 && c.disk_writes * 4 < c.file_dropped, "{c:?}");
    }

    #[test]
    fn a_refault_is_a_disk_read_charged_to_the_workload() {
        let mut m = machine(&[64], &[(128, true, 0.0)], Reclaim::Swap, 0);
        sweep(&mut m, 0..128, 1);
        let stall = m.counters.stall_ns;
        sweep(&mut m, 0..128, 1);
        let c = &m.counters;
        assert!(c.refaults_file >= 64, "{c:?}");
        assert_eq!(c.disk_reads, 128 + c.refaults_file);
        assert_eq!(c.first_touch, 128);
        // Each refault stalls for the read and the node's latency.
        assert_eq!(c.stall_ns - stall, c.refaults_file * (100_000 + 100));
        // Every access was served or faulted.
        assert_eq!(m.accesses(), 256);
    }

    #[test]
    fn file_pages_used_once_go_before_pages_used_twice() {
        // 16 pages read twice, then a stream of 256 read once: reclaim drops the stream and
        // keeps the pages used twice (they were activated; the active list stays smaller than
        // the inactive one, so it is not aged).
        let mut m = machine(&[64], &[(272, true, 0.0)], Reclaim::Swap, 0);
        sweep(&mut m, 0..16, 2);
        sweep(&mut m, 16..272, 1);
        assert!((0..16).all(|p| m.slot_of(p) == Some(0)), "a page used twice was dropped");
        assert!(m.counters.file_dropped >= 200);
        assert_eq!(m.counters.refaults_file, 0);
    }

    #[test]
    fn demotion_moves_file_pages_down_when_there_is_room() {
        let mut m = machine(&[64, 256], &[(128, true, 0.5)], Reclaim::Demote, 0);
        sweep(&mut m, 0..128, 2);
        let c = &m.counters;
        assert!(c.kernel_demoted >= 64, "{c:?}");
        assert_eq!((c.file_dropped, c.refaults_file, c.disk_writes), (0, 0, 0));
        assert_eq!(c.disk_reads, 128);
        assert_eq!(m.file_pages(0) + m.file_pages(1), 128);
        // Dirty pages stay dirty where they went.
        assert!((0..128).filter(|&p| m.slot_of(p) == Some(1)).any(|p| m.is_dirty(p)));
        // With no room below, the same machine drops them again.
        let mut m = machine(&[64, 16], &[(128, true, 0.0)], Reclaim::Demote, 0);
        sweep(&mut m, 0..128, 2);
        assert!(m.counters.file_dropped > 0 && m.counters.refaults_file > 0);
    }

    /// 40 anonymous and 40 file pages, all hot (touched in turn, again and again) on a node of
    /// 64: the file pages are active, the inactive file list is low, so reclaim balances the
    /// two kinds by swappiness (no `cache_trim_mode`).
    fn anon_then_file(swappiness: u64) -> Machine {
        let mut m = machine(&[64], &[(40, false, 0.0), (40, true, 0.0)], Reclaim::Swap, 1024);
        m.swappiness = swappiness;
        let trace: Vec<Page> = (0..40).flat_map(|p| [p, p + 40]).collect();
        for _ in 0..8 {
            m.run(&trace);
            m.check().unwrap();
        }
        m
    }

    #[test]
    fn swappiness_zero_reclaims_file_pages_and_keeps_anon_ones() {
        let m = anon_then_file(0);
        assert_eq!(m.counters.swap_out, 0, "{:?}", m.counters);
        assert!(m.counters.file_dropped > 0);
        // At 200 the anonymous pages are reclaimed as well.
        let m = anon_then_file(200);
        assert!(m.counters.swap_out > 0, "{:?}", m.counters);
    }

    #[test]
    fn no_swap_means_file_pages_only() {
        let mut m = machine(&[64], &[(48, false, 0.0), (128, true, 0.0)], Reclaim::Swap, 0);
        m.swappiness = 200;
        sweep(&mut m, 0..48, 2);
        sweep(&mut m, 48..176, 2);
        assert_eq!((m.counters.swap_out, m.counters.oom), (0, 0));
        assert!((0..48).all(|p| m.slot_of(p) == Some(0)));
    }

    #[test]
    fn an_idle_file_process_changes_nothing_for_anonymous_pages() {
        // The same anonymous sweep, with and without an untouched file-backed process beside.
        for reclaim in [Reclaim::Swap, Reclaim::Demote] {
            let mut a = machine(&[64, 32], &[(160, false, 0.0)], reclaim, 1024);
            let mut b = machine(&[64, 32], &[(160, false, 0.0), (64, true, 0.5)], reclaim, 1024);
            sweep(&mut a, 0..160, 3);
            sweep(&mut b, 0..160, 3);
            assert!(a.counters.swap_out > 0);
            assert_eq!(a.counters, b.counters, "{reclaim:?}");
            assert!((0..160).all(|p| a.slot_of(p) == b.slot_of(p)));
        }
    }

    #[test]
    fn the_backend_finds_and_moves_file_pages() {
        let mut m = machine(&[256, 256], &[(64, false, 0.0), (64, true, 1.0)], Reclaim::Swap, 0);
        sweep(&mut m, 0..128, 1);
        let mut cold = Vec::new();
        let node = |n| NodeId::new(n).unwrap();
        m.coldest(node(0), 1000, &mut cold);
        m.check().unwrap();
        let pages: Vec<Page> = cold.iter().map(|h| h.page).collect();
        assert!(pages.iter().any(|&p| p < 64) && pages.iter().any(|&p| p >= 64), "{pages:?}");
        let mut status = Vec::new();
        m.move_pages(&pages, node(1), &mut status);
        assert!(status.iter().all(Result::is_ok));
        m.check().unwrap();
        assert_eq!(m.file_pages(1), pages.iter().filter(|&&p| p >= 64).count() as u64);
        assert!((64..128).filter(|&p| m.slot_of(p) == Some(1)).all(|p| m.is_dirty(p)));
    }

    #[test]
    fn the_check_sees_a_file_page_on_an_anonymous_list() {
        let mut m = machine(&[256], &[(64, true, 0.0)], Reclaim::Swap, 0);
        sweep(&mut m, 0..64, 1);
        let p = m.tail(0, FILE + INACTIVE_LIST).unwrap();
        m.unlink(p, 0, FILE + INACTIVE_LIST);
        m.push_head(p, 0, INACTIVE_LIST);
        assert!(m.check().unwrap_err().contains("list 0"), "{:?}", m.check());
        let mut m = machine(&[256], &[(64, true, 0.0)], Reclaim::Swap, 0);
        m.run(&[0]);
        m.set_dirty(1, true);
        assert!(m.check().unwrap_err().contains("dirty"));
    }
}
