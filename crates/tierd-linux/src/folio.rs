//! Huge pages: the span of base pages a moved page's folio covers, so that moves are
//! counted in the memory they really moved.
//!
//! `move_pages(2)` takes one entry per base page, but the kernel migrates whole folios: one
//! entry of a 2 MiB transparent huge page moves all 512 of its base pages (the kernel's
//! `pgmigrate_success` and the `migrate:mm_migrate_pages` tracepoint count 512), and the
//! other entries of the same huge page in the call report `-EBUSY` or "already there".
//! Counting entries would count such a move as one page. [`Folios::spans`] tells, for pages
//! that moved, which are part of a huge page and which base pages that huge page covers:
//! the page's frame from `/proc/PID/pagemap` (bits 0-54, readable with `CAP_SYS_ADMIN`),
//! then the frame's flags in `/proc/kpageflags` (`KPF_THP`, and `KPF_COMPOUND_HEAD` /
//! `KPF_COMPOUND_TAIL` over the naturally aligned block around it to find the head and the
//! size). The span in the address space is taken as contiguous from the head's position,
//! which holds for a huge page mapped by one PMD (the common case) and for one mapped by
//! contiguous PTEs; a huge page that a partial `mremap` left scattered is counted right and
//! only its place in the backend's placement cache is approximate.
//!
//! Both files are root-only; without them every page counts as one, as before, and one
//! warning says so.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use crate::SysRoot;
use crate::tracker::pagemap::Pagemap;
use crate::tracker::{Pid, Vpn};

/// `kpageflags` bit 15: the first page of a compound page (a folio of several pages).
pub const KPF_COMPOUND_HEAD: u64 = 1 << 15;
/// `kpageflags` bit 16: a page of a compound page after its first.
pub const KPF_COMPOUND_TAIL: u64 = 1 << 16;
/// `kpageflags` bit 22: part of a transparent huge page.
pub const KPF_THP: u64 = 1 << 22;
/// The largest folio looked for, base pages: a PMD of 4 KiB pages on x86-64 and arm64.
/// Folios are aligned to their size in frame numbers, so a folio of at most this many pages
/// lies within one aligned block of this many frames.
pub const MAX_FOLIO_PAGES: u64 = 512;

/// The base pages of a huge page in a process's address space.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Span {
    /// Its first page.
    pub first: Vpn,
    /// How many base pages it has.
    pub pages: u64,
}

/// Where the huge page that holds the frame at `at` (an index into `flags`, the flags of
/// an aligned block of [`MAX_FOLIO_PAGES`] frames) starts, as an index, and how many frames
/// it has; `None` when the frame is not part of a transparent huge page, or the flags do not
/// describe one (a tail with no head in the block).
pub fn folio_in_block(flags: &[u64], at: usize) -> Option<(usize, usize)> {
    let f = *flags.get(at)?;
    if f & KPF_THP == 0 || f & (KPF_COMPOUND_HEAD | KPF_COMPOUND_TAIL) == 0 {
        return None;
    }
    let head = (0..=at).rev().find(|&i| flags[i] & KPF_COMPOUND_HEAD != 0)?;
    if flags[head + 1..=at].iter().any(|f| f & KPF_COMPOUND_TAIL == 0) {
        return None;
    }
    let tails = flags[head + 1..].iter().take_while(|f| *f & KPF_COMPOUND_TAIL != 0).count();
    Some((head, 1 + tails))
}

/// Reads huge-page spans through `pagemap` and `kpageflags`.
#[derive(Debug)]
pub struct Folios {
    root: SysRoot,
    kpageflags: Option<File>,
    /// Why spans cannot be read, once that is known: the file is not opened again.
    why_not: Option<String>,
    block: Vec<u8>,
    /// Blocks of flags read so far.
    blocks_read: u64,
}

impl Folios {
    /// A reader under `root`; files are opened on first use.
    pub fn new(root: SysRoot) -> Folios {
        Folios { root, kpageflags: None, why_not: None, block: Vec::new(), blocks_read: 0 }
    }

    /// How many blocks of [`MAX_FOLIO_PAGES`] flags the lookups have read (for the tests
    /// that check a huge page's span is read once).
    #[cfg(test)]
    pub(crate) fn blocks_read(&self) -> u64 {
        self.blocks_read
    }

    fn flags_file(&mut self) -> Option<&File> {
        if self.kpageflags.is_none() && self.why_not.is_none() {
            let path: PathBuf = self.root.proc.join("kpageflags");
            match File::open(&path) {
                Ok(f) => self.kpageflags = Some(f),
                Err(e) => {
                    self.why_not = Some(format!(
                        "{}: {e}: moves of huge pages count one page per entry moved",
                        path.display()
                    ));
                    tracing::warn!("{}", self.why_not.as_deref().unwrap_or_default());
                }
            }
        }
        self.kpageflags.as_ref()
    }

    /// For each of `vpns` of `pid`: the huge page it is part of, or `None` (a base page, not
    /// present, the process gone, or the files unreadable).
    pub fn spans(&mut self, pid: Pid, vpns: &[Vpn]) -> Vec<Option<Span>> {
        let mut out = vec![None; vpns.len()];
        if vpns.is_empty() || self.flags_file().is_none() {
            return out;
        }
        let Ok(Some(mut pagemap)) = Pagemap::open(&self.root, pid) else { return out };
        // The entries of one huge page come one after another (a scan's order): a page in
        // the span just found is in it without another read of 512 flags.
        let mut last: Option<Span> = None;
        for (k, vpn) in vpns.iter().enumerate() {
            if let Some(span) = last.filter(|s| (s.first.0..s.first.0 + s.pages).contains(&vpn.0)) {
                out[k] = Some(span);
                continue;
            }
            let mut pfn = None;
            if pagemap.for_each(vpn.0..vpn.0 + 1, |_, e| pfn = e.pfn()).is_err() {
                return out;
            }
            // No PFN (not present), or 0: the kernel hides frames from this reader.
            let Some(pfn) = pfn.map(|p| p.0).filter(|p| *p != 0) else { continue };
            out[k] = self.span_of(*vpn, pfn);
            last = out[k].or(last);
        }
        out
    }

    fn span_of(&mut self, vpn: Vpn, pfn: u64) -> Option<Span> {
        let block = pfn & !(MAX_FOLIO_PAGES - 1);
        let at = usize::try_from(pfn - block).ok()?;
        let mut buf = std::mem::take(&mut self.block);
        buf.resize(usize::try_from(MAX_FOLIO_PAGES * 8).ok()?, 0);
        let file = self.kpageflags.as_ref()?;
        // One 8-byte read says whether the frame is a huge page's; only then the block.
        let mut one = [0u8; 8];
        let span = (file.read_exact_at(&mut one, pfn * 8).is_ok()
            && u64::from_le_bytes(one) & KPF_THP != 0
            && file.read_exact_at(&mut buf, block * 8).is_ok())
        .then(|| {
            self.blocks_read += 1;
            let flags: Vec<u64> = buf
                .chunks_exact(8)
                .map(|b| u64::from_le_bytes(b.try_into().expect("8-byte chunk")))
                .collect();
            folio_in_block(&flags, at)
        })
        .flatten()
        .and_then(|(head, pages)| {
            let first = vpn.0.checked_sub(u64::try_from(at - head).ok()?)?;
            Some(Span { first: Vpn(first), pages: u64::try_from(pages).ok()? })
        });
        self.block = buf;
        span
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The flags of a block holding, from `at`, a huge page of `pages` frames.
    fn block_with(at: usize, pages: usize) -> Vec<u64> {
        let mut flags = vec![0u64; 512];
        flags[at] = KPF_THP | KPF_COMPOUND_HEAD;
        for f in &mut flags[at + 1..at + pages] {
            *f = KPF_THP | KPF_COMPOUND_TAIL;
        }
        flags
    }

    #[test]
    fn a_pmd_huge_page_spans_the_whole_block_from_any_of_its_frames() {
        let flags = block_with(0, 512);
        for at in [0, 1, 255, 511] {
            assert_eq!(folio_in_block(&flags, at), Some((0, 512)));
        }
    }

    #[test]
    fn base_pages_and_broken_flags_are_not_huge() {
        let mut flags = vec![0u64; 512];
        assert_eq!(folio_in_block(&flags, 3), None, "a base page");
        flags[3] = KPF_THP | KPF_COMPOUND_TAIL;
        assert_eq!(folio_in_block(&flags, 3), None, "a tail with no head before it");
        flags[1] = KPF_THP | KPF_COMPOUND_HEAD;
        assert_eq!(folio_in_block(&flags, 3), None, "a gap between head and tail");
        flags[2] = KPF_THP | KPF_COMPOUND_TAIL;
        assert_eq!(folio_in_block(&flags, 3), Some((1, 3)));
        assert_eq!(folio_in_block(&flags, 600), None, "outside the block");
    }

    proptest! {
        /// Any naturally aligned folio of 2..=512 frames is found whole from each of its
        /// frames, and no frame outside it is taken for part of it.
        #[test]
        fn an_aligned_folio_is_found_whole_from_each_frame(order in 1u32..=9, slot in 0usize..512, at in 0usize..512) {
            let pages = 1usize << order;
            let start = (slot / pages) * pages;
            let flags = block_with(start, pages);
            let got = folio_in_block(&flags, at);
            if (start..start + pages).contains(&at) {
                prop_assert_eq!(got, Some((start, pages)));
            } else {
                prop_assert_eq!(got, None);
            }
        }
    }
}
