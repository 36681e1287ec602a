//! The idle page tracker: `/sys/kernel/mm/page_idle/bitmap` over the PFNs of `pagemap`.
//!
//! The bitmap has one bit per page frame, read and written in 64-bit words
//! (`Documentation/admin-guide/mm/idle_page_tracking.rst`): writing a 1 bit marks the frame
//! idle (clearing the accessed bits of the PTEs that map it), and the kernel clears the bit
//! when the page is accessed through any mapping, by a read or a write. So, per window: read
//! the PFNs of the scanned pages from `pagemap`, read their bitmap words (a set bit = not
//! used since it was marked), then mark them all idle again. Reads and writes both count,
//! unlike soft-dirty; one check per window, so accesses are 0 or 1.
//!
//! Needs `CONFIG_IDLE_PAGE_TRACKING` (not built into Debian's kernels) and `CAP_SYS_ADMIN`:
//! both the bitmap and the PFN bits of `pagemap` are root-only (without the capability the
//! kernel reports every PFN as 0, which this tracker refuses rather than misread). Only the
//! bits of the tracked pages are written, so other users of the bitmap keep theirs; words are
//! read and written in runs of adjacent words, one `pread`/`pwrite` per run.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt as _;
use std::path::PathBuf;

use super::ages::{Ages, push_page};
use super::bits::{BitTracker, PageBits};
use super::pagemap::{Pagemap, read_anon_vmas};
use super::{Error, Pid, Sample, TrackerContext, io_error, is_permission};
use crate::SysRoot;

/// `sys/kernel/mm/page_idle/bitmap`.
pub fn bitmap_path(root: &SysRoot) -> PathBuf {
    root.sys.join("kernel/mm/page_idle/bitmap")
}

const NEEDS_ROOT: &str = "idle page tracking needs root (CAP_SYS_ADMIN for the bitmap and for \
                          PFNs in pagemap): run tierd as root or pick tracker = softdirty";

/// The present pages of one mapping: its first page, its length, and `(vpn, pfn)` of each
/// present page.
struct Mapping {
    first: u64,
    len: usize,
    pages: Vec<(u64, u64)>,
}

/// See the module documentation.
pub type IdleTracker = BitTracker<IdleBits>;

/// The idle bits of the page frames: the bitmap and the `pagemap` that names the frames.
#[derive(Debug)]
pub struct IdleBits {
    root: SysRoot,
    page_size: u64,
    bitmap: File,
    path: PathBuf,
}

impl IdleTracker {
    /// Whether the kernel has idle page tracking (the bitmap exists).
    pub fn present(root: &SysRoot) -> bool {
        bitmap_path(root).exists()
    }

    /// Opens the bitmap for reading and writing. `auto_why`, when given, is how `auto` came
    /// to pick this tracker and is appended to [`Tracker::why`](super::Tracker::why).
    pub fn open(ctx: &TrackerContext, auto_why: Option<&str>) -> Result<IdleTracker, Error> {
        let path = bitmap_path(&ctx.root);
        let opened = ctx
            .writer
            .check_writable(&path)
            .and_then(|()| std::fs::OpenOptions::new().read(true).write(true).open(&path));
        let bitmap = match opened {
            Ok(f) => f,
            Err(e) if crate::read::is_gone(&e) => {
                return Err(Error::Unavailable {
                    tracker: "idle",
                    path,
                    hint: "missing: this kernel lacks CONFIG_IDLE_PAGE_TRACKING (Debian's kernels are \
                           built without it): \
                           pick tracker = damon or softdirty"
                        .into(),
                });
            }
            Err(e) if is_permission(&e) => {
                return Err(Error::Permission {
                    tracker: "idle",
                    path,
                    source: e,
                    hint: NEEDS_ROOT,
                });
            }
            Err(e) => return Err(io_error(&path, e)),
        };
        let kernel = super::kernel_release(&ctx.root).unwrap_or_else(|| "unknown".into());
        let mut why = format!(
            "idle: {} present, kernel {kernel}; PFNs from pagemap, reads and writes count, one \
             check per window",
            path.display()
        );
        if let Some(a) = auto_why {
            why = format!("{why}; {a}");
        }
        Ok(BitTracker::new(
            IdleBits { root: ctx.root.clone(), page_size: ctx.page_size, bitmap, path },
            why,
        ))
    }
}

impl IdleBits {
    /// The present pages of `pid`'s tracked mappings and how many pages were absent;
    /// `None` when the process is gone.
    fn pages_of(&self, pid: Pid) -> Result<Option<(Vec<Mapping>, u64)>, Error> {
        let Some(vmas) = read_anon_vmas(&self.root, pid)? else { return Ok(None) };
        let Some(mut pm) = Pagemap::open(&self.root, pid)? else { return Ok(None) };
        let mut out = Vec::with_capacity(vmas.len());
        let mut absent = 0;
        let mut hidden = false;
        for vma in &vmas {
            let vpns = vma.vpns(self.page_size);
            let mut m = Mapping {
                first: vpns.start,
                len: usize::try_from(vpns.end - vpns.start).unwrap_or(usize::MAX),
                pages: Vec::new(),
            };
            let alive = pm.for_each(vpns, |vpn, e| match e.pfn() {
                None => absent += 1,
                Some(pfn) => {
                    hidden |= pfn.0 == 0;
                    m.pages.push((vpn.0, pfn.0));
                }
            })?;
            if !alive {
                return Ok(None);
            }
            out.push(m);
        }
        if hidden {
            return Err(Error::Permission {
                tracker: "idle",
                path: pm.path().to_path_buf(),
                source: std::io::Error::from_raw_os_error(libc::EPERM),
                hint: NEEDS_ROOT,
            });
        }
        Ok(Some((out, absent)))
    }

    /// Reads the bitmap words holding `pfns`, by word index.
    fn read_words(&self, pfns: impl Iterator<Item = u64>) -> Result<BTreeMap<u64, u64>, Error> {
        let mut words: BTreeMap<u64, u64> = pfns.map(|p| (p / 64, 0)).collect();
        for (first, n) in runs(words.keys().copied()) {
            let mut buf = vec![0u8; n * 8];
            self.bitmap.read_exact_at(&mut buf, first * 8).map_err(|e| io_error(&self.path, e))?;
            for (i, w) in buf.chunks_exact(8).enumerate() {
                let v = u64::from_ne_bytes(w.try_into().expect("8 bytes"));
                words.insert(first + i as u64, v);
            }
        }
        Ok(words)
    }

    /// Marks `pfns` idle: writes their bits (and only theirs) in runs of adjacent words.
    fn mark(&self, pfns: impl Iterator<Item = u64>) -> Result<(), Error> {
        let mut words: BTreeMap<u64, u64> = BTreeMap::new();
        for p in pfns {
            *words.entry(p / 64).or_insert(0) |= 1 << (p % 64);
        }
        let keys: Vec<u64> = words.keys().copied().collect();
        for (first, n) in runs(keys.into_iter()) {
            let buf: Vec<u8> =
                (first..first + n as u64).flat_map(|w| words[&w].to_ne_bytes()).collect();
            self.bitmap.write_all_at(&buf, first * 8).map_err(|e| {
                if is_permission(&e) {
                    Error::Permission {
                        tracker: "idle",
                        path: self.path.clone(),
                        source: e,
                        hint: NEEDS_ROOT,
                    }
                } else {
                    Error::Write {
                        tracker: "idle",
                        path: self.path.clone(),
                        value: format!("{n} words at word {first}"),
                        source: e,
                        hint: String::new(),
                    }
                }
            })?;
        }
        Ok(())
    }
}

/// Runs of consecutive values in an ascending sequence: `(first, length)`.
fn runs(sorted: impl Iterator<Item = u64>) -> Vec<(u64, usize)> {
    let mut out: Vec<(u64, usize)> = Vec::new();
    for w in sorted {
        match out.last_mut() {
            Some((first, n)) if *first + *n as u64 == w => *n += 1,
            _ => out.push((w, 1)),
        }
    }
    out
}

impl PageBits for IdleBits {
    const NAME: &'static str = "idle";

    fn start(&mut self, pid: Pid) -> Result<(), Error> {
        if let Some((maps, _)) = self.pages_of(pid)? {
            self.mark(maps.iter().flat_map(|m| m.pages.iter().map(|&(_, pfn)| pfn)))?;
        }
        Ok(())
    }

    fn read(&mut self, pids: &[Pid], ages: &mut Ages, s: &mut Sample) -> Result<(), Error> {
        let mut scanned = Vec::new();
        for &pid in pids {
            match self.pages_of(pid)? {
                None => s.dropped.push(pid),
                Some((maps, absent)) => {
                    s.absent_pages += absent;
                    scanned.push((pid, maps));
                }
            }
        }
        let all_pfns = || {
            scanned
                .iter()
                .flat_map(|(_, ms)| ms.iter().flat_map(|m| m.pages.iter().map(|&(_, p)| p)))
        };
        let words = self.read_words(all_pfns())?;
        let ps = self.page_size;
        for (pid, maps) in &scanned {
            for m in maps {
                let state = ages.mapping(*pid, m.first, m.len);
                for &(vpn, pfn) in &m.pages {
                    let idle = words[&(pfn / 64)] & (1 << (pfn % 64)) != 0;
                    let i = usize::try_from(vpn - m.first).expect("index within the mapping");
                    let age = Ages::update(&mut state[i], !idle);
                    push_page(&mut s.regions, *pid, vpn * ps, ps, u32::from(!idle), age);
                }
            }
        }
        self.mark(all_pfns())
    }
}

#[cfg(test)]
mod tests {
    use super::super::fake::{FakeHost, entry};
    use super::*;
    use crate::tracker::Tracker as _;

    const BASE: u64 = 0x1000_0000;

    fn host_with(pfns: &[Option<u64>]) -> FakeHost {
        let h = FakeHost::new();
        h.with_idle_bitmap(4096);
        let entries: Vec<u64> =
            pfns.iter().map(|p| p.map_or(0, |pfn| entry(true, false, pfn))).collect();
        h.process(Pid(42))
            .maps(&format!(
                "{BASE:x}-{:x} rw-p 00000000 00:00 0 ",
                BASE + entries.len() as u64 * 4096
            ))
            .pagemap(BASE / 4096, &entries)
            .write();
        h
    }

    #[test]
    fn touched_frames_are_used_untouched_ones_idle_and_all_are_marked_again() {
        // Frames in two words, one page absent.
        let h = host_with(&[Some(3), Some(4), None, Some(64), Some(130)]);
        let mut t = IdleTracker::open(&h.context(), None).unwrap();
        assert!(t.why().starts_with("idle: "), "{}", t.why());
        t.set_pids(&[Pid(42)]).unwrap();
        for pfn in [3, 4, 64, 130] {
            assert!(h.pfn_idle(pfn), "set_pids marks the pages of a new pid idle ({pfn})");
        }
        assert!(!h.pfn_idle(5), "other frames keep their bits");
        h.touch_pfn(4);
        h.touch_pfn(130);
        let s = t.sample().unwrap();
        let figs: Vec<_> = s
            .regions
            .iter()
            .map(|r| ((r.start - BASE) / 4096, (r.end - BASE) / 4096, r.accesses))
            .collect();
        assert_eq!(figs, [(0, 1, 0), (1, 2, 1), (3, 4, 0), (4, 5, 1)]);
        assert_eq!(s.absent_pages, 1);
        for pfn in [3, 4, 64, 130] {
            assert!(h.pfn_idle(pfn), "sampling marks every page idle again ({pfn})");
        }
    }

    #[test]
    fn hidden_pfns_mean_no_cap_sys_admin() {
        let h = host_with(&[Some(0)]);
        let mut t = IdleTracker::open(&h.context(), None).unwrap();
        let err = t.set_pids(&[Pid(42)]).unwrap_err();
        assert!(err.to_string().contains("CAP_SYS_ADMIN"), "{err}");
    }

    #[test]
    fn missing_bitmap_says_the_kernel_lacks_it() {
        let h = FakeHost::new();
        assert!(!IdleTracker::present(h.root()));
        let err = IdleTracker::open(&h.context(), None).unwrap_err();
        assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
        assert!(err.to_string().contains("CONFIG_IDLE_PAGE_TRACKING"), "{err}");
    }

    #[test]
    fn exited_process_is_dropped() {
        let h = host_with(&[Some(9)]);
        let mut t = IdleTracker::open(&h.context(), None).unwrap();
        t.set_pids(&[Pid(42)]).unwrap();
        h.exit(Pid(42));
        let s = t.sample().unwrap();
        assert_eq!(s.dropped, [Pid(42)]);
        assert!(s.regions.is_empty());
    }

    #[test]
    fn runs_group_adjacent_words() {
        assert_eq!(runs([1, 2, 3, 7, 9, 10].into_iter()), [(1, 3), (7, 1), (9, 2)]);
    }
}
