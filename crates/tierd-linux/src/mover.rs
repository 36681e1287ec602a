//! The mover: moves a process's pages to a node with batched `move_pages(2)` calls, handles
//! every per-page status, hands back the pages the node is full for, and counts only what a
//! placement query confirms.
//!
//! The OS sits behind the narrow [`PageMover`] trait ([`SysMover`] for the real syscalls), so
//! tests drive the mover with a fake that returns scripted per-page results.
//!
//! Why each rule:
//! - *Batches, bounded in time.* One huge call stalls the target process for as long as the
//!   kernel migrates; the batch shrinks when a call takes longer than the bound and grows
//!   back when calls are quick.
//! - *A rate limit* (MiB/s), so that migration traffic can't starve the workload's own
//!   memory bandwidth.
//! - *Per-page status*: `EBUSY` pages are handed back to retry later; `ENOMEM` pages are
//!   handed back as no room (the policy offers them to its next destination, the fallback
//!   nodes); `EFAULT`/`ENOENT` pages are gone (unmapped or
//!   swapped) and dropped; `EACCES`/`EPERM` are a scope problem the caller reports once. A
//!   process that exits mid-batch (`ESRCH`) ends the request, nothing lost. tierd never
//!   swaps or drops anything itself: pages that no target can take stay where they are.
//! - *Verified placement*: with transparent huge pages the kernel may report `-EBUSY` for an
//!   entry whose huge page did move, so every batch is followed by a query (`nodes = NULL`),
//!   and the counts come from it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tierd_core::NodeId;

use crate::sys::{self, MoveScope, PageError, PageStatus, SysError, Target};

/// One call's pages: `addrs`, page-aligned virtual addresses of process `pid`, and `status`,
/// as long, for the kernel's answer per page.
#[derive(Debug)]
pub struct PageBatch<'a> {
    /// The process.
    pub pid: u32,
    /// Its pages.
    pub addrs: &'a [usize],
    /// Per page: the node it is on, or why not.
    pub status: &'a mut [PageStatus],
}

/// The syscalls the mover needs.
pub trait PageMover {
    /// `move_pages(pid, addrs, [to; n], status)`.
    fn move_pages(&mut self, batch: PageBatch<'_>, to: NodeId) -> Result<(), SysError>;
    /// `move_pages(pid, addrs, NULL, status)`: where each page is now.
    fn query(&mut self, batch: PageBatch<'_>) -> Result<(), SysError>;
    /// The time now; a fake clock in tests. The backend's housekeeping budget and the
    /// daemon's policy clock read it too, so a test can make a tick slow deterministically.
    fn now(&self) -> Instant {
        Instant::now()
    }
    /// Waits; a fake clock in tests only advances.
    fn sleep(&mut self, d: Duration) {
        std::thread::sleep(d);
    }
}

/// The real syscalls.
#[derive(Debug, Default)]
pub struct SysMover {
    nodes: Vec<NodeId>,
    scope: Option<MoveScope>,
}

impl SysMover {
    /// Moves only pages each process maps alone (`MPOL_MF_MOVE`), or shared ones too with
    /// `all` (`MPOL_MF_MOVE_ALL`, needs `CAP_SYS_NICE`).
    pub fn new(all: bool) -> SysMover {
        SysMover {
            nodes: Vec::new(),
            scope: Some(if all { MoveScope::All } else { MoveScope::Exclusive }),
        }
    }
}

impl PageMover for SysMover {
    fn move_pages(&mut self, batch: PageBatch<'_>, to: NodeId) -> Result<(), SysError> {
        let PageBatch { pid, addrs, status } = batch;
        self.nodes.clear();
        self.nodes.resize(addrs.len(), to);
        let scope = self.scope.unwrap_or(MoveScope::Exclusive);
        sys::move_pages(Target::Pid(pid), addrs, &self.nodes, status, scope).map(|_| ())
    }

    fn query(&mut self, batch: PageBatch<'_>) -> Result<(), SysError> {
        sys::query_pages(Target::Pid(batch.pid), batch.addrs, batch.status)
    }
}

/// Bounds on the mover (the `[mover]` config section).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MoverLimits {
    /// Most pages per `move_pages` call.
    pub pages_per_call: usize,
    /// A call that takes longer halves the next batch.
    pub max_call: Duration,
    /// Migration traffic cap, bytes per second; `None` = no cap.
    pub bytes_per_sec: Option<u64>,
    /// Bytes per page.
    pub page_size: u64,
}

impl Default for MoverLimits {
    fn default() -> Self {
        MoverLimits {
            pages_per_call: 4096,
            max_call: Duration::from_millis(20),
            bytes_per_sec: None,
            page_size: 4096,
        }
    }
}

/// Why a request stopped early.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stop {
    /// The process exited (`ESRCH`): whatever was not moved yet is simply gone.
    ProcessGone,
    /// The call itself was refused (`EPERM`/`EACCES`: no `CAP_SYS_NICE` over this process).
    Denied(i32),
    /// Another call-wide error.
    Failed(i32),
}

/// What became of one page of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageOutcome {
    /// On the target now (the placement query after the move says so).
    Moved,
    /// Not on the target: the kernel reported it busy, or moved it elsewhere; retry later.
    Busy,
    /// The target had no room (`ENOMEM`, or `ENODEV`: it went offline); still where it was.
    NoRoom,
    /// Failed with this per-page error: gone (`EFAULT`, `ENOENT`) or not movable by tierd
    /// (`EACCES`: shared, `EPERM`, `EINVAL`, ...).
    Failed(PageError),
    /// Not tried: the request stopped first ([`MoveOutcome::stopped`] says why).
    Untried,
}

/// What one request did. Counts are pages.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MoveOutcome {
    /// One outcome per address asked, in order: the exact result the counts below sum up.
    pub pages: Vec<PageOutcome>,
    /// Pages confirmed on each target by a placement query.
    pub moved: BTreeMap<NodeId, u64>,
    /// Pages the kernel reported busy and that are not on a target: retry later.
    pub busy: Vec<usize>,
    /// Pages no target could take (`ENOMEM` everywhere): left where they are.
    pub no_room: Vec<usize>,
    /// Pages that are gone (unmapped, not present, or their process exited).
    pub gone: u64,
    /// Pages the caller may not move (shared without `MOVE_ALL`, mlocked...).
    pub denied: u64,
    /// Per-page failures by errno, all kinds.
    pub failures: BTreeMap<i32, u64>,
    /// Set when the request stopped before every page was tried.
    pub stopped: Option<Stop>,
    /// `move_pages` calls made (moves and queries).
    pub calls: u64,
    /// Time spent in calls.
    pub busy_time: Duration,
    /// Time spent waiting for the rate limit.
    pub paced_time: Duration,
}

impl MoveOutcome {
    /// Pages moved, all targets.
    pub fn moved_total(&self) -> u64 {
        self.moved.values().sum()
    }
}

/// The mover. Keeps the adaptive batch size and the rate-limit budget across requests.
#[derive(Debug)]
pub struct Mover<M> {
    os: M,
    limits: MoverLimits,
    batch: usize,
    /// When the traffic already sent will have drained at the rate limit.
    pace_until: Option<Instant>,
    status: Vec<PageStatus>,
}

impl<M: PageMover> Mover<M> {
    /// A mover over `os` with `limits`.
    pub fn new(os: M, limits: MoverLimits) -> Mover<M> {
        let batch = limits.pages_per_call.max(1);
        Mover { os, limits, batch, pace_until: None, status: Vec::new() }
    }

    /// The OS seam (the fake, in tests).
    pub fn os(&mut self) -> &mut M {
        &mut self.os
    }

    /// The OS seam's clock: real time, or the fake's.
    pub fn clock(&self) -> Instant {
        self.os.now()
    }

    /// The current batch size.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Moves `addrs` (page-aligned virtual addresses of `pid`) to `to`. Pages `to` has no
    /// room for come back in [`MoveOutcome::no_room`], where they still are: the caller (the
    /// policy, through the backend) offers them to its next destination.
    pub fn move_to(&mut self, pid: u32, addrs: &[usize], to: NodeId) -> MoveOutcome {
        let mut out =
            MoveOutcome { pages: Vec::with_capacity(addrs.len()), ..MoveOutcome::default() };
        out.no_room = self.move_all(pid, addrs, to, &mut out);
        out.pages.resize(addrs.len(), PageOutcome::Untried);
        out
    }

    /// One target; returns the pages it had no room for.
    fn move_all(
        &mut self,
        pid: u32,
        addrs: &[usize],
        to: NodeId,
        out: &mut MoveOutcome,
    ) -> Vec<usize> {
        let mut full = Vec::new();
        let mut rest = addrs;
        while !rest.is_empty() {
            let n = self.batch.min(rest.len());
            let (batch, tail) = rest.split_at(n);
            rest = tail;
            self.pace(n, out);
            let start = self.os.now();
            self.status.clear();
            self.status.resize(n, PageStatus::UNSET);
            let result =
                self.os.move_pages(PageBatch { pid, addrs: batch, status: &mut self.status }, to);
            out.calls += 1;
            let took = self.os.now().saturating_duration_since(start);
            out.busy_time += took;
            self.adapt(took);
            if let Err(e) = result {
                out.stopped = Some(match e.errno() {
                    Some(libc::ESRCH) => Stop::ProcessGone,
                    Some(e @ (libc::EPERM | libc::EACCES)) => Stop::Denied(e),
                    Some(e) => Stop::Failed(e),
                    None => Stop::Failed(libc::EINVAL),
                });
                if out.stopped == Some(Stop::ProcessGone) {
                    out.gone += u64::try_from(batch.len() + rest.len()).unwrap_or(u64::MAX);
                }
                return full;
            }
            // The move's own statuses say which pages are busy, full or gone; where each
            // page is now comes from the query, which is what the counts trust.
            let moved_status = std::mem::take(&mut self.status);
            self.status = vec![PageStatus::UNSET; n];
            let verified = self.os.query(PageBatch { pid, addrs: batch, status: &mut self.status });
            out.calls += 1;
            if verified.as_ref().err().and_then(SysError::errno) == Some(libc::ESRCH) {
                out.stopped = Some(Stop::ProcessGone);
                out.gone += u64::try_from(batch.len() + rest.len()).unwrap_or(u64::MAX);
                return full;
            }
            for (k, (&addr, said)) in batch.iter().zip(&moved_status).enumerate() {
                let now_on = if verified.is_ok() { self.status[k].node() } else { said.node() };
                let page = if now_on == Some(to) {
                    *out.moved.entry(to).or_default() += 1;
                    PageOutcome::Moved
                } else {
                    match said.get() {
                        // Reported on a node but not on the target: the page moved back or
                        // the kernel chose not to move it; try it again later.
                        Ok(_) => {
                            out.busy.push(addr);
                            PageOutcome::Busy
                        }
                        Err(err) => {
                            *out.failures.entry(err.errno()).or_default() += 1;
                            match err {
                                PageError::Busy | PageError::Io => {
                                    out.busy.push(addr);
                                    PageOutcome::Busy
                                }
                                // ENODEV: the target went offline; treat it as full.
                                PageError::NoMemory | PageError::NoDevice => {
                                    full.push(addr);
                                    PageOutcome::NoRoom
                                }
                                PageError::Fault | PageError::NotPresent => {
                                    out.gone += 1;
                                    PageOutcome::Failed(err)
                                }
                                PageError::Shared
                                | PageError::NotPermitted
                                | PageError::Invalid
                                | PageError::Other(_) => {
                                    out.denied += 1;
                                    PageOutcome::Failed(err)
                                }
                            }
                        }
                    }
                };
                out.pages.push(page);
            }
            self.status = moved_status;
        }
        full
    }

    /// A call that overran the bound halves the batch; a quick one grows it back.
    fn adapt(&mut self, took: Duration) {
        if took > self.limits.max_call {
            self.batch = (self.batch / 2).max(16);
        } else if took < self.limits.max_call / 4 {
            self.batch = (self.batch * 2).min(self.limits.pages_per_call.max(1));
        }
    }

    /// Waits until `pages` more pages fit in the rate limit.
    fn pace(&mut self, pages: usize, out: &mut MoveOutcome) {
        let Some(rate) = self.limits.bytes_per_sec.filter(|r| *r > 0) else { return };
        let now = self.os.now();
        let until = self.pace_until.filter(|u| *u > now).unwrap_or(now);
        if until > now {
            let wait = until - now;
            self.os.sleep(wait);
            out.paced_time += wait;
        }
        let bytes = u64::try_from(pages).unwrap_or(u64::MAX).saturating_mul(self.limits.page_size);
        #[allow(clippy::cast_precision_loss)]
        let secs = bytes as f64 / rate as f64;
        self.pace_until = Some(until + Duration::from_secs_f64(secs));
    }
}

/// A scripted fake of the syscalls: pages live on nodes in a map; per-address results can be
/// forced; every call is recorded; a clock that advances only when told.
#[cfg(any(test, feature = "fixture"))]
pub mod fake {
    use std::collections::{BTreeMap, HashMap};
    use std::io;
    use std::time::{Duration, Instant};

    use tierd_core::NodeId;

    use super::{PageBatch, PageMover};
    use crate::sys::{PageStatus, SysError};

    /// One recorded call.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub enum Call {
        /// A move of these many pages to this node.
        Move(u32, usize, NodeId),
        /// A query of these many pages.
        Query(u32, usize),
    }

    /// The fake. See the module documentation.
    #[derive(Debug)]
    pub struct FakeMover {
        /// Where each `(pid, addr)` is.
        pub placement: HashMap<(u32, usize), NodeId>,
        /// Free pages per node; a move to a node with none left fails with `ENOMEM`.
        pub room: BTreeMap<NodeId, u64>,
        /// Forced per-page errno for moves (positive), consumed once.
        pub fail_once: HashMap<usize, i32>,
        /// Addresses the kernel reports `-EBUSY` for although they moved (the THP quirk).
        pub busy_but_moved: Vec<usize>,
        /// Pids that have exited (calls fail with `ESRCH`); `exit_after` makes one exit after
        /// that many move calls.
        pub exited: Vec<u32>,
        /// `(pid, calls)`: the pid exits after that many move calls.
        pub exit_after: Option<(u32, usize)>,
        /// Every call, in order.
        pub calls: Vec<Call>,
        /// How long each move call takes on the fake clock, per page.
        pub per_page: Duration,
        /// The fake clock.
        pub clock: Instant,
        moves: usize,
    }

    impl FakeMover {
        /// Pages `addrs` of `pid` on `node`.
        pub fn new(pid: u32, addrs: &[usize], node: NodeId) -> FakeMover {
            FakeMover {
                placement: addrs.iter().map(|&a| ((pid, a), node)).collect(),
                room: BTreeMap::new(),
                fail_once: HashMap::new(),
                busy_but_moved: Vec::new(),
                exited: Vec::new(),
                exit_after: None,
                calls: Vec::new(),
                per_page: Duration::ZERO,
                clock: Instant::now(),
                moves: 0,
            }
        }

        /// Pages of `pid` on `node`.
        pub fn count_on(&self, pid: u32, node: NodeId) -> usize {
            self.placement.iter().filter(|((p, _), n)| *p == pid && **n == node).count()
        }

        fn gone(&self, pid: u32) -> Result<(), SysError> {
            if self.exited.contains(&pid) {
                Err(SysError::Syscall {
                    call: "move_pages",
                    source: io::Error::from_raw_os_error(libc::ESRCH),
                })
            } else {
                Ok(())
            }
        }
    }

    impl PageMover for FakeMover {
        fn move_pages(&mut self, batch: PageBatch<'_>, to: NodeId) -> Result<(), SysError> {
            let PageBatch { pid, addrs, status } = batch;
            self.calls.push(Call::Move(pid, addrs.len(), to));
            self.gone(pid)?;
            self.clock += self.per_page * u32::try_from(addrs.len()).unwrap_or(u32::MAX);
            for (addr, st) in addrs.iter().zip(status.iter_mut()) {
                let raw = if let Some(e) = self.fail_once.remove(addr) {
                    -e
                } else if let Some(&on) = self.placement.get(&(pid, *addr)) {
                    if on == to {
                        to.as_i32()
                    } else {
                        let room = self.room.entry(to).or_insert(u64::MAX);
                        if *room == 0 {
                            -libc::ENOMEM
                        } else {
                            *room -= 1;
                            self.placement.insert((pid, *addr), to);
                            if self.busy_but_moved.contains(addr) {
                                -libc::EBUSY
                            } else {
                                to.as_i32()
                            }
                        }
                    }
                } else {
                    -libc::EFAULT
                };
                *st = PageStatus::from_raw(raw);
            }
            self.moves += 1;
            if let Some((p, after)) = self.exit_after
                && p == pid
                && self.moves >= after
            {
                self.exited.push(pid);
            }
            Ok(())
        }

        fn query(&mut self, batch: PageBatch<'_>) -> Result<(), SysError> {
            let PageBatch { pid, addrs, status } = batch;
            self.calls.push(Call::Query(pid, addrs.len()));
            self.gone(pid)?;
            for (addr, st) in addrs.iter().zip(status.iter_mut()) {
                let raw = self.placement.get(&(pid, *addr)).map_or(-libc::EFAULT, |n| n.as_i32());
                *st = PageStatus::from_raw(raw);
            }
            Ok(())
        }

        fn now(&self) -> Instant {
            self.clock
        }

        fn sleep(&mut self, d: Duration) {
            self.clock += d;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::{Call, FakeMover};
    use super::*;

    const PID: u32 = 42;

    fn id(n: usize) -> NodeId {
        NodeId::new(n).unwrap()
    }

    fn pages(n: usize) -> Vec<usize> {
        (0..n).map(|i| 0x7f00_0000_0000 + i * 4096).collect()
    }

    fn mover(fake: FakeMover, per_call: usize) -> Mover<FakeMover> {
        Mover::new(fake, MoverLimits { pages_per_call: per_call, ..MoverLimits::default() })
    }

    #[test]
    fn moves_in_batches_and_counts_what_the_query_confirms() {
        let addrs = pages(10);
        let mut m = mover(FakeMover::new(PID, &addrs, id(0)), 4);
        let out = m.move_to(PID, &addrs, id(1));
        assert_eq!(out.moved_total(), 10);
        assert_eq!(m.os().count_on(PID, id(1)), 10);
        let moves: Vec<_> = m.os().calls.iter().filter(|c| matches!(c, Call::Move(..))).collect();
        assert_eq!(
            moves,
            [&Call::Move(PID, 4, id(1)), &Call::Move(PID, 4, id(1)), &Call::Move(PID, 2, id(1))]
        );
        assert_eq!(out.calls, 6, "every move is followed by a query");
    }

    #[test]
    fn a_full_target_leaves_the_rest_in_place_and_reports_it() {
        let addrs = pages(10);
        let mut fake = FakeMover::new(PID, &addrs, id(0));
        fake.room.insert(id(1), 3);
        let mut m = mover(fake, 64);
        let out = m.move_to(PID, &addrs, id(1));
        assert_eq!(out.moved.get(&id(1)), Some(&3));
        assert_eq!(out.no_room.len(), 7, "left in place, reported");
        assert_eq!(m.os().count_on(PID, id(0)), 7);
        assert_eq!(out.failures.get(&libc::ENOMEM), Some(&7), "7 full on node 1");
    }

    #[test]
    fn busy_pages_come_back_for_a_retry_and_the_thp_quirk_is_verified() {
        let addrs = pages(6);
        let mut fake = FakeMover::new(PID, &addrs, id(0));
        fake.fail_once.insert(addrs[0], libc::EBUSY);
        fake.busy_but_moved.push(addrs[1]);
        let mut m = mover(fake, 64);
        let out = m.move_to(PID, &addrs, id(1));
        assert_eq!(out.busy, [addrs[0]]);
        assert_eq!(out.moved_total(), 5, "the THP entry reported EBUSY but moved");
        let again = m.move_to(PID, &out.busy, id(1));
        assert_eq!(again.moved_total(), 1);
        assert_eq!(m.os().count_on(PID, id(1)), 6);
    }

    #[test]
    fn gone_and_denied_pages_are_counted_not_retried() {
        let addrs = pages(4);
        let mut fake = FakeMover::new(PID, &addrs, id(0));
        fake.fail_once.insert(addrs[0], libc::ENOENT);
        fake.fail_once.insert(addrs[1], libc::EFAULT);
        fake.fail_once.insert(addrs[2], libc::EACCES);
        let mut m = mover(fake, 64);
        let out = m.move_to(PID, &addrs, id(1));
        assert_eq!((out.gone, out.denied, out.moved_total()), (2, 1, 1));
        assert!(out.busy.is_empty() && out.no_room.is_empty());
        assert_eq!(
            out.pages,
            [
                PageOutcome::Failed(PageError::NotPresent),
                PageOutcome::Failed(PageError::Fault),
                PageOutcome::Failed(PageError::Shared),
                PageOutcome::Moved,
            ],
            "each page's own result, in order"
        );
    }

    #[test]
    fn every_page_has_its_outcome_in_order() {
        use PageOutcome::{Busy, Moved, NoRoom};
        let addrs = pages(8);
        let mut fake = FakeMover::new(PID, &addrs, id(0));
        fake.room.insert(id(1), 5);
        fake.fail_once.insert(addrs[1], libc::EBUSY);
        fake.busy_but_moved.push(addrs[2]);
        let mut m = mover(fake, 3);
        let out = m.move_to(PID, &addrs, id(1));
        // Page 1 busy (room not taken), page 2's EBUSY moved all the same (verified), then
        // room for pages 3-5 and none for 6 and 7.
        assert_eq!(out.pages, [Moved, Busy, Moved, Moved, Moved, Moved, NoRoom, NoRoom]);
        assert_eq!(out.moved_total(), 5);
        assert_eq!(out.no_room, [addrs[6], addrs[7]]);
    }

    #[test]
    fn a_process_that_exits_mid_request_ends_it_cleanly() {
        let addrs = pages(10);
        let mut fake = FakeMover::new(PID, &addrs, id(0));
        fake.exit_after = Some((PID, 1));
        let mut m = mover(fake, 4);
        let out = m.move_to(PID, &addrs, id(1));
        assert_eq!(out.stopped, Some(Stop::ProcessGone));
        assert_eq!(out.moved_total(), 0, "the query after the first batch found the process gone");
        assert_eq!(out.gone, 10);
        assert_eq!(out.pages, [PageOutcome::Untried; 10], "no page's result is known");
    }

    #[test]
    fn slow_calls_shrink_the_batch_and_quick_ones_grow_it() {
        let addrs = pages(4096);
        let mut fake = FakeMover::new(PID, &addrs, id(0));
        fake.per_page = Duration::from_micros(20); // 1024 pages = 20.5 ms > 20 ms
        let mut m = mover(fake, 1024);
        m.move_to(PID, &addrs[..1024], id(1));
        assert_eq!(m.batch(), 512);
        m.os().per_page = Duration::from_nanos(100);
        m.move_to(PID, &addrs[1024..], id(1));
        assert_eq!(m.batch(), 1024);
    }

    #[test]
    fn the_rate_limit_paces_the_calls() {
        let addrs = pages(1024);
        let fake = FakeMover::new(PID, &addrs, id(0));
        let limits = MoverLimits {
            pages_per_call: 256,
            bytes_per_sec: Some(4096 * 1024), // 1024 pages per second
            ..MoverLimits::default()
        };
        let mut m = Mover::new(fake, limits);
        let start = m.os().clock;
        let out = m.move_to(PID, &addrs, id(1));
        assert_eq!(out.moved_total(), 1024);
        // Four batches of 256: the first goes at once, each later one waits 0.25 s.
        assert_eq!(m.os().clock - start, Duration::from_millis(750));
        assert_eq!(out.paced_time, Duration::from_millis(750));
    }
}
