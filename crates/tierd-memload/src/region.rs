//! One anonymous, page-aligned buffer whose every page carries verifiable content.
//!
//! The buffer is a zeroed `Vec<u64>` (large zeroed allocations come from fresh anonymous
//! mappings, so no page is touched before we bind it), over-allocated by one page so that
//! the region used starts on a page boundary. Word `i` of page `p` holds
//! `pattern(seed, p, i)`: a page that was lost, zeroed, swapped back wrong or mixed up with
//! another page during migration fails the check.

use std::hint::black_box;

use tierd_core::NodeMask;
use tierd_linux::sys::{self, MemPolicy, MoveScope, SysError};

/// The content of word `word` of page `page`.
fn pattern(seed: u64, page: usize, word: usize) -> u64 {
    let p = page as u64;
    let w = word as u64;
    (p << 20 | w) ^ seed
}

/// A page-aligned buffer of `pages` pages.
pub struct Region {
    buf: Vec<u64>,
    start: usize,
    pages: usize,
    words_per_page: usize,
    seed: u64,
}

impl Region {
    /// Allocates `pages` pages without touching them; binds them to `bind` first when given.
    pub fn new(pages: usize, bind: Option<NodeMask>, seed: u64) -> Result<Region, SysError> {
        let page_size = sys::page_size();
        let words_per_page = page_size / 8;
        let buf = vec![0u64; (pages + 1) * words_per_page];
        let addr = buf.as_ptr() as usize;
        let start = (addr.next_multiple_of(page_size) - addr) / 8;
        let region = Region { buf, start, pages, words_per_page, seed };
        if let Some(mask) = bind {
            sys::mbind(
                region.base(),
                pages * page_size,
                &MemPolicy::Bind(mask),
                Some(MoveScope::Exclusive),
            )?;
        }
        Ok(region)
    }

    /// The number of pages.
    pub fn pages(&self) -> usize {
        self.pages
    }

    /// The address of the first page.
    pub fn base(&self) -> usize {
        self.buf[self.start..].as_ptr() as usize
    }

    /// The addresses of pages `range`.
    pub fn addrs(&self, range: std::ops::Range<usize>) -> Vec<usize> {
        let page_size = self.words_per_page * 8;
        let base = self.base();
        range.map(|p| base + p * page_size).collect()
    }

    fn page_mut(&mut self, p: usize) -> &mut [u64] {
        let from = self.start + p * self.words_per_page;
        &mut self.buf[from..from + self.words_per_page]
    }

    fn page(&self, p: usize) -> &[u64] {
        let from = self.start + p * self.words_per_page;
        &self.buf[from..from + self.words_per_page]
    }

    /// Writes every page's pattern (this is what makes the pages present).
    pub fn fill(&mut self) {
        self.fill_range(0..self.pages);
    }

    /// Writes the pattern of pages `range`.
    pub fn fill_range(&mut self, range: std::ops::Range<usize>) {
        let seed = self.seed;
        for p in range {
            for (i, w) in self.page_mut(p).iter_mut().enumerate() {
                *w = pattern(seed, p, i);
            }
        }
    }

    /// The number of pages whose content differs from their pattern.
    pub fn verify(&self) -> usize {
        (0..self.pages)
            .filter(|&p| {
                self.page(p).iter().enumerate().any(|(i, &w)| w != pattern(self.seed, p, i))
            })
            .count()
    }

    /// Touches page `p`: reads and writes back one word, so both the accessed and the
    /// dirty bits are set, without changing its content.
    pub fn touch(&mut self, p: usize, word: usize) {
        let w = word % self.words_per_page;
        let page = self.page_mut(p);
        let v = black_box(page[w]);
        page[w] = black_box(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filled_region_verifies_and_detects_a_changed_page() {
        let mut r = Region::new(8, None, 42).unwrap();
        assert_eq!(r.base() % sys::page_size(), 0);
        r.fill();
        r.touch(3, 17);
        assert_eq!(r.verify(), 0);
        r.page_mut(5)[100] ^= 1;
        r.page_mut(6).fill(0);
        assert_eq!(r.verify(), 2);
        let a = r.addrs(1..3);
        assert_eq!(a[1] - a[0], sys::page_size());
    }
}
