//! Where pages are: placement queries (`move_pages` with no target), cached per window.

use super::{BTreeMap, LinuxBackend, MAX_QUERY, PageMover, PageRef, PageStatus, Pid, Seen};
use crate::mover::PageBatch;

impl<M: PageMover> LinuxBackend<M> {
    /// Queries the placement of the pages of `pages` not cached yet, one call per process
    /// and chunk, and caches it.
    pub(super) fn resolve(&mut self, pages: &[PageRef]) {
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
    pub(super) fn query(
        &mut self,
        pid: Pid,
        addrs: &[usize],
        status: &mut Vec<PageStatus>,
    ) -> Result<(), i32> {
        status.clear();
        status.resize(addrs.len(), PageStatus::UNSET);
        let os = self.mover.os();
        let start = os.now();
        let result = os.query(PageBatch { pid: pid.0, addrs, status });
        let took = os.now().saturating_duration_since(start);
        self.log.calls += 1;
        self.log.busy_time += took;
        result.map_err(|e| e.errno().unwrap_or(libc::EINVAL))
    }

    /// A call over `pid` failed as a whole with `errno`.
    pub(super) fn pid_failed(&mut self, pid: Pid, errno: i32) {
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
}
