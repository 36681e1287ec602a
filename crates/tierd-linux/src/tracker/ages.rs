//! Per-page ages for the page-bit trackers, and the coalescing of pages into regions.
//!
//! Soft-dirty and idle page tracking answer one bit per page per window. To give the policy
//! DAMON's second figure, the age (how many windows the access figure has held), these
//! trackers keep one byte per scanned page: bit 7 says whether the page was used in the
//! previous window, bits 0-6 count the windows since that last changed (saturating at 127).
//! One byte per 4 KiB page is 0.025% of the memory tracked. State is kept per mapping,
//! keyed by `(pid, first page)`, and forgotten with the mapping or the process.

use std::collections::HashMap;

use super::{Pid, Region};

const USED: u8 = 0x80;
const AGE: u8 = 0x7f;

/// Ages of every scanned page, window to window.
#[derive(Debug, Default)]
pub struct Ages {
    prev: HashMap<(Pid, u64), Vec<u8>>,
    cur: HashMap<(Pid, u64), Vec<u8>>,
}

impl Ages {
    /// The state of the mapping of `pid` starting at page `first`, `len` pages long, carried
    /// over from the previous window (resized if the mapping grew or shrank).
    pub(crate) fn mapping(&mut self, pid: Pid, first: u64, len: usize) -> &mut Vec<u8> {
        let mut v = self.prev.remove(&(pid, first)).unwrap_or_default();
        v.resize(len, 0);
        self.cur.entry((pid, first)).or_insert(v)
    }

    /// Ends the window: state of mappings not visited in it is dropped.
    pub(crate) fn finish(&mut self) {
        self.prev = std::mem::take(&mut self.cur);
    }

    /// Records whether a page was used in this window; returns its age.
    pub(crate) fn update(state: &mut u8, used: bool) -> u32 {
        let was_used = *state & USED != 0;
        let age = if was_used == used { (*state & AGE).saturating_add(1).min(AGE) } else { 0 };
        *state = age | if used { USED } else { 0 };
        u32::from(age)
    }
}

/// Appends a page to `out`, extending the last region when the page follows it with the same
/// figures.
pub(crate) fn push_page(
    out: &mut Vec<Region>,
    pid: Pid,
    addr: u64,
    page_size: u64,
    accesses: u32,
    age: u32,
) {
    if let Some(last) = out.last_mut()
        && last.pid == pid
        && last.end == addr
        && last.accesses == accesses
        && last.age == age
    {
        last.end += page_size;
        return;
    }
    out.push(Region { pid, start: addr, end: addr + page_size, accesses, age });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn age_counts_windows_since_the_bit_changed_and_saturates() {
        let mut s = 0u8;
        assert_eq!(Ages::update(&mut s, true), 0);
        assert_eq!(Ages::update(&mut s, true), 1);
        assert_eq!(Ages::update(&mut s, true), 2);
        assert_eq!(Ages::update(&mut s, false), 0);
        for _ in 0..300 {
            Ages::update(&mut s, false);
        }
        assert_eq!(Ages::update(&mut s, false), 127);
    }

    #[test]
    fn state_follows_the_mapping_and_is_dropped_with_it() {
        let mut a = Ages::default();
        a.mapping(Pid(1), 10, 2)[1] = 5;
        a.finish();
        assert_eq!(a.mapping(Pid(1), 10, 3), &vec![0, 5, 0]);
        a.finish();
        a.finish();
        assert_eq!(a.mapping(Pid(1), 10, 3), &vec![0, 0, 0]);
    }

    #[test]
    fn pages_with_equal_figures_coalesce() {
        let mut out = Vec::new();
        push_page(&mut out, Pid(1), 0, 4096, 0, 3);
        push_page(&mut out, Pid(1), 4096, 4096, 0, 3);
        push_page(&mut out, Pid(1), 8192, 4096, 1, 0);
        push_page(&mut out, Pid(1), 16384, 4096, 1, 0);
        push_page(&mut out, Pid(2), 20480, 4096, 1, 0);
        let spans: Vec<_> = out.iter().map(|r| (r.pid.0, r.start, r.end)).collect();
        assert_eq!(spans, [(1, 0, 8192), (1, 8192, 12288), (1, 16384, 20480), (2, 20480, 24576)]);
    }
}
