//! The soft-dirty tracker: `clear_refs` = 4, then `pagemap` bit 55.
//!
//! Writing `4` to `/proc/PID/clear_refs` clears the soft-dirty bit of every PTE of the process
//! and write-protects them; the next write to a page faults once and sets the bit again
//! (`Documentation/admin-guide/mm/soft-dirty.rst`). So at the end of a window a page whose
//! `pagemap` entry has bit 55 set was *written* during it. Reads leave no trace: a page that is
//! only read looks idle, which is why [`SoftDirtyTracker::why`](super::Tracker::why) says
//! "write heat only". It is the fallback because it needs no privilege beyond the right to
//! ptrace the processes and exists on every kernel built with `CONFIG_MEM_SOFT_DIRTY`
//! (Debian's are).
//!
//! Per window and process: read the anonymous private writable mappings from `maps`, read
//! their `pagemap` entries in chunks, then clear the bits to start the next window. Pages
//! that are not present are counted in [`Sample::absent_pages`] and left out of the regions.
//! The write-protect faults after each clear cost the workload about one minor fault per
//! written page per window: keep windows in seconds, not milliseconds.

use std::sync::Arc;

use super::ages::{Ages, push_page};
use super::bits::{BitTracker, PageBits};
use super::pagemap::{Pagemap, process_gone, read_anon_vmas};
use super::{Error, KernelWriter, Pid, Sample, TrackerContext, is_permission};
use crate::SysRoot;

/// See the module documentation.
pub type SoftDirtyTracker = BitTracker<SoftDirtyBits>;

/// The soft-dirty bits of the processes' page tables: `clear_refs` and `pagemap`.
#[derive(Debug)]
pub struct SoftDirtyBits {
    root: SysRoot,
    page_size: u64,
    writer: Arc<dyn KernelWriter>,
}

impl SoftDirtyTracker {
    /// A tracker over `ctx`'s procfs. `auto_why`, when given, is how `auto` came to pick it
    /// and is appended to [`Tracker::why`](super::Tracker::why).
    pub fn open(ctx: &TrackerContext, auto_why: Option<&str>) -> Result<SoftDirtyTracker, Error> {
        if !ctx.root.proc.join("self").exists() && !ctx.root.proc.is_dir() {
            return Err(Error::Unavailable {
                tracker: "softdirty",
                path: ctx.root.proc.clone(),
                hint: "missing: procfs is not mounted there; mount it or point tierd at it".into(),
            });
        }
        if probe(&ctx.root, ctx.page_size, &*ctx.writer)? == Some(false) {
            return Err(Error::Unavailable {
                tracker: "softdirty",
                path: ctx.root.proc.join("self/clear_refs"),
                hint: "this kernel lacks CONFIG_MEM_SOFT_DIRTY: clear_refs accepts 4 but pagemap \
                       bit 55 never sets, so every page would look idle; pick tracker = damon \
                       or idle"
                    .into(),
            });
        }
        let mut why = "softdirty: /proc/PID/clear_refs (4) and pagemap bit 55; write heat only: \
                       pages that are only read look idle"
            .to_string();
        if let Some(a) = auto_why {
            why = format!("{why}; {a}");
        }
        let bits = SoftDirtyBits {
            root: ctx.root.clone(),
            page_size: ctx.page_size,
            writer: Arc::clone(&ctx.writer),
        };
        Ok(BitTracker::new(bits, why))
    }
}

impl SoftDirtyBits {
    /// Clears the soft-dirty bits of `pid`. `Ok(false)` when the process is gone.
    fn clear(&self, pid: Pid) -> Result<bool, Error> {
        let path = self.root.proc.join(pid.0.to_string()).join("clear_refs");
        match self.writer.write(&path, "4") {
            Ok(()) => Ok(true),
            Err(e) if process_gone(&e) => Ok(false),
            Err(e) if is_permission(&e) => Err(Error::Permission {
                tracker: "softdirty",
                path,
                source: e,
                hint: "clearing another user's soft-dirty bits needs the right to ptrace the \
                       process: run tierd as root, or narrow the scope to this user's processes",
            }),
            Err(e) => Err(Error::Write {
                tracker: "softdirty",
                path,
                value: "4".into(),
                source: e,
                hint: "; a kernel without CONFIG_MEM_SOFT_DIRTY rejects it: pick tracker = \
                       damon or idle"
                    .into(),
            }),
        }
    }

    /// Scans `pid`, appending its regions; `Ok(false)` when it is gone.
    fn scan(&self, pid: Pid, ages: &mut Ages, s: &mut Sample) -> Result<bool, Error> {
        let Some(vmas) = read_anon_vmas(&self.root, pid)? else { return Ok(false) };
        let Some(mut pm) = Pagemap::open(&self.root, pid)? else { return Ok(false) };
        let ps = self.page_size;
        let mark = s.regions.len();
        let mut absent = 0u64;
        for vma in &vmas {
            let vpns = vma.vpns(ps);
            let len = usize::try_from(vpns.end - vpns.start).unwrap_or(usize::MAX);
            let state = ages.mapping(pid, vpns.start, len);
            let first = vpns.start;
            let regions = &mut s.regions;
            let alive = pm.for_each(vpns, |vpn, e| {
                let i = usize::try_from(vpn.0 - first).expect("index within the mapping");
                if !e.present() {
                    absent += 1;
                    return;
                }
                let used = e.soft_dirty();
                let age = Ages::update(&mut state[i], used);
                push_page(regions, pid, vpn.0 * ps, ps, u32::from(used), age);
            })?;
            if !alive {
                s.regions.truncate(mark);
                return Ok(false);
            }
        }
        s.absent_pages += absent;
        Ok(true)
    }
}

/// Whether the kernel really tracks soft-dirty bits, tried on tierd's own memory:
/// `Some(false)` when a page written after `clear_refs` = 4 does not read back soft-dirty.
/// A kernel built without `CONFIG_MEM_SOFT_DIRTY` accepts the `4` and never sets the bit,
/// which would make every page look idle. `None` when the root has no `self` (a fake tree),
/// or the check cannot be made.
pub fn probe(
    root: &SysRoot,
    page_size: u64,
    writer: &dyn KernelWriter,
) -> Result<Option<bool>, Error> {
    let me = root.proc.join("self");
    if !me.join("pagemap").is_file() {
        return Ok(None);
    }
    let ps = usize::try_from(page_size).unwrap_or(4096);
    let mut buf = vec![0u8; 2 * ps];
    let off = (ps - (buf.as_ptr() as usize) % ps) % ps;
    buf[off] = 1; // fault the page in before the clear
    if writer.write(&me.join("clear_refs"), "4").is_err() {
        return Ok(None);
    }
    buf[off] = 2;
    std::hint::black_box(&mut buf);
    let vpn = (buf.as_ptr() as u64 + off as u64) / page_size;
    let Ok(pm) = std::fs::File::open(me.join("pagemap")) else { return Ok(None) };
    let mut raw = [0u8; 8];
    if std::os::unix::fs::FileExt::read_exact_at(&pm, &mut raw, vpn * 8).is_err() {
        return Ok(None);
    }
    let e = super::pagemap::Entry(u64::from_le_bytes(raw));
    std::hint::black_box(&buf);
    Ok(e.present().then_some(e.soft_dirty()))
}

impl PageBits for SoftDirtyBits {
    const NAME: &'static str = "softdirty";

    fn start(&mut self, pid: Pid) -> Result<(), Error> {
        self.clear(pid).map(drop)
    }

    fn read(&mut self, pids: &[Pid], ages: &mut Ages, s: &mut Sample) -> Result<(), Error> {
        for &pid in pids {
            if !self.scan(pid, ages, s)? || !self.clear(pid)? {
                let mark = s.regions.iter().position(|r| r.pid == pid).unwrap_or(s.regions.len());
                s.regions.truncate(mark);
                s.dropped.push(pid);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::fake::{FakeHost, entry};
    use super::super::pagemap::{PM_PRESENT, PM_SOFT_DIRTY, PM_SWAPPED};
    use super::*;
    use crate::tracker::Tracker as _;

    const BASE: u64 = 0x1000_0000;

    fn tracker(fp: &FakeHost) -> SoftDirtyTracker {
        SoftDirtyTracker::open(&fp.context(), None).unwrap()
    }

    #[test]
    fn dirty_pages_are_hot_clean_ones_idle_absent_ones_left_out() {
        let fp = FakeHost::new();
        fp.process(Pid(100))
            .maps(&format!("{BASE:x}-{:x} rw-p 00000000 00:00 0 ", BASE + 6 * 4096))
            .maps_line("20000000-20001000 r-xp 00000000 08:01 7 /usr/bin/true")
            .pagemap(
                BASE / 4096,
                &[
                    PM_PRESENT | PM_SOFT_DIRTY,
                    PM_PRESENT | PM_SOFT_DIRTY,
                    PM_PRESENT,
                    0,
                    PM_SWAPPED,
                    PM_PRESENT,
                ],
            )
            .write();
        let mut t = tracker(&fp);
        assert!(t.why().contains("write heat only"), "{}", t.why());
        t.set_pids(&[Pid(100)]).unwrap();
        assert_eq!(fp.clear_refs(Pid(100)), "4", "a new pid starts its window with a clear");
        fp.set_clear_refs(Pid(100), "");
        let s = t.sample().unwrap();
        let spans: Vec<_> =
            s.regions.iter().map(|r| (r.start - BASE, r.end - BASE, r.accesses)).collect();
        assert_eq!(spans, [(0, 8192, 1), (8192, 12288, 0), (20480, 24576, 0)]);
        assert_eq!(s.absent_pages, 2);
        assert_eq!(s.max_accesses, 1);
        assert_eq!(s.covered_bytes, 4 * 4096);
        assert!(s.dropped.is_empty());
        assert_eq!(fp.clear_refs(Pid(100)), "4", "sampling starts the next window");
    }

    #[test]
    fn ages_grow_while_a_page_stays_idle() {
        let fp = FakeHost::new();
        fp.process(Pid(7))
            .maps(&format!("{BASE:x}-{:x} rw-p 00000000 00:00 0 [heap]", BASE + 4096))
            .pagemap(BASE / 4096, &[entry(true, false, 0)])
            .write();
        let mut t = tracker(&fp);
        t.set_pids(&[Pid(7)]).unwrap();
        let ages: Vec<u32> = (0..3).map(|_| t.sample().unwrap().regions[0].age).collect();
        assert_eq!(ages, [1, 2, 3]);
    }

    #[test]
    fn a_process_that_exited_is_dropped_not_idle() {
        let fp = FakeHost::new();
        for pid in [1, 2] {
            fp.process(Pid(pid))
                .maps(&format!("{BASE:x}-{:x} rw-p 00000000 00:00 0 ", BASE + 4096))
                .pagemap(BASE / 4096, &[PM_PRESENT])
                .write();
        }
        let mut t = tracker(&fp);
        t.set_pids(&[Pid(2), Pid(1), Pid(2), Pid(3)]).unwrap();
        fp.exit(Pid(2));
        let s = t.sample().unwrap();
        assert_eq!(s.dropped, [Pid(2), Pid(3)]);
        assert!(s.regions.iter().all(|r| r.pid == Pid(1)));
        assert_eq!(t.sample().unwrap().dropped, [], "dropped once, then forgotten");
    }

    /// Runs on the machine's own kernel: the probe must agree with the kernel's config where
    /// `/proc/config.gz` tells it (this workplace's kernel is built without soft-dirty).
    #[test]
    fn probe_agrees_with_the_running_kernels_config() {
        let root = SysRoot::default();
        let got = probe(&root, crate::sys::page_size() as u64, &super::super::RealWriter).unwrap();
        let config = std::process::Command::new("zcat").arg("/proc/config.gz").output();
        let Some(text) = config.ok().filter(|o| o.status.success()).map(|o| o.stdout) else {
            eprintln!("skipped: no /proc/config.gz to compare the probe ({got:?}) with");
            return;
        };
        let built = String::from_utf8_lossy(&text).lines().any(|l| l == "CONFIG_MEM_SOFT_DIRTY=y");
        assert_eq!(got, Some(built), "probe vs CONFIG_MEM_SOFT_DIRTY");
    }

    #[test]
    fn permission_denied_says_what_to_do() {
        let fp = FakeHost::new();
        fp.process(Pid(5)).maps("").write();
        let mut t = tracker(&fp);
        fp.deny("proc/5/clear_refs");
        let err = t.set_pids(&[Pid(5)]).unwrap_err();
        assert!(matches!(err, Error::Permission { .. }), "{err:?}");
        assert!(err.to_string().contains("run tierd as root"), "{err}");
    }
}
