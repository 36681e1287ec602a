//! Moving pages and reconciling what the mover reports with the move log and free memory.

use super::{
    HashSet, LinuxBackend, MoveError, MoveStatus, NodeId, PageError, PageMover, PageRef, Pid, Seen,
    Stop, denial,
};
use crate::mover::PageOutcome;

impl<M: PageMover> LinuxBackend<M> {
    /// Moves the pages `idx` (indices into `pages`, all of `pid`) to `to`, filling their
    /// entries of `status`.
    pub(super) fn move_pid(
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
        let out = self.mover.move_to(pid.0, &addrs, to);
        // The pages that moved, each with where it was.
        let mut moved: Vec<(PageRef, Option<NodeId>)> = Vec::new();
        for (k, outcome) in at.iter().zip(&out.pages) {
            let r = status_of(*outcome, to, out.stopped.as_ref());
            let page = refs[*k];
            status[idx[*k]] = r;
            match r {
                Ok(_) => {
                    let from = match self.placement.get(&page) {
                        Some(Seen::On(from)) if *from != to => Some(*from),
                        _ => None,
                    };
                    moved.push((page, from));
                    self.placement.insert(page, Seen::On(to));
                }
                Err(MoveError::Fault | MoveError::NoEnt) => {
                    self.placement.insert(page, Seen::Gone);
                }
                Err(_) => {}
            }
        }
        self.log_moved(pid, to, &moved);
        self.account(pid, &out);
    }

    /// Logs `moved` (pages of `pid` now on `to`, each with the node it was on, `None` when it
    /// was there already) in base pages: a page of a huge page counts as the huge page's
    /// base pages, once however many of its entries the call named, and all of them are
    /// placed on `to` in the cache (so that no later scan offers them as still on `from`).
    /// Without huge pages on any node, one page each, with no further read.
    pub(super) fn log_moved(&mut self, pid: Pid, to: NodeId, moved: &[(PageRef, Option<NodeId>)]) {
        let spans = if self.huge_pages {
            let vpns: Vec<_> = moved.iter().map(|(p, _)| p.vpn).collect();
            self.folios.spans(pid, &vpns)
        } else {
            vec![None; moved.len()]
        };
        let mut counted = HashSet::new();
        for (&(_, from), span) in moved.iter().zip(spans) {
            let pages = match span {
                None => 1,
                Some(span) if counted.insert(span.first) => {
                    for v in span.first.0..span.first.0 + span.pages {
                        let other = PageRef { pid, vpn: crate::tracker::Vpn(v) };
                        self.placement.insert(other, Seen::On(to));
                    }
                    span.pages
                }
                Some(_) => 0,
            };
            if let Some(from) = from {
                *self.log.moved.entry((from, to)).or_default() += pages;
                self.shift_free(from, to, pages);
            }
        }
    }

    /// Adds the mover's counters for one process's request to the log.
    pub(super) fn account(&mut self, pid: Pid, out: &crate::mover::MoveOutcome) {
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
        let untried = out.pages.iter().filter(|p| **p == PageOutcome::Untried).count() as u64;
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

    /// A confirmed move of `pages` base pages in the cached view of free memory.
    pub(super) fn shift_free(&mut self, from: NodeId, to: NodeId, pages: u64) {
        if let Some(m) = self.memory.get_mut(&from) {
            m.free = (m.free + pages).min(m.total);
        }
        if let Some(m) = self.memory.get_mut(&to) {
            m.free = m.free.saturating_sub(pages);
        }
    }
}

/// The status of one page of a request, from the mover's outcome for it: exact, page by page
/// (a page the request never reached takes the reason it stopped).
fn status_of(page: PageOutcome, to: NodeId, stopped: Option<&Stop>) -> MoveStatus {
    match page {
        PageOutcome::Moved => Ok(to),
        PageOutcome::Busy => Err(MoveError::Busy),
        PageOutcome::NoRoom => Err(MoveError::NoMem),
        PageOutcome::Failed(PageError::Fault) => Err(MoveError::Fault),
        PageOutcome::Failed(PageError::NotPresent) => Err(MoveError::NoEnt),
        PageOutcome::Failed(e) => Err(MoveError::from_errno(e.errno()).unwrap_or(MoveError::Perm)),
        PageOutcome::Untried => Err(match stopped {
            Some(Stop::ProcessGone) | None => MoveError::NoEnt,
            Some(Stop::Denied(e)) => denial(*e),
            Some(Stop::Failed(e)) => MoveError::from_errno(*e).unwrap_or(MoveError::Busy),
        }),
    }
}
