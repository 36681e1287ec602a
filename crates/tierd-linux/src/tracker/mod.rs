//! Access trackers: which pages of the processes in scope were used in the last window.
//!
//! A [`Tracker`] watches one set of processes (the daemon's scope) and, on every
//! [`Tracker::sample`], reports [`Region`]s: a process, a virtual address range, how many
//! accesses the range showed in the last window (0 = idle) and for how many windows that figure
//! has held (its age). The policy ranks regions by heat and asks the mover to move their pages;
//! a Linux backend turns each region into `(pid, virtual page)` handles ([`PageRef`]) with
//! [`Region::pages`] and orders them with [`Sample::coldest`] and
//! [`Sample::hottest`].
//!
//! Three implementations, chosen by [`open`] from a [`TrackerKind`]:
//!
//! - [`damon`]: the kernel's DAMON through its sysfs interface (`vaddr` operations, one target
//!   per process, one `stat` scheme per target whose tried regions carry the access counts).
//!   The kernel samples, so tierd costs nothing per page; counts range over
//!   `aggr_us / sample_us` checks per window.
//! - [`idle`]: idle page tracking, `/sys/kernel/mm/page_idle/bitmap` indexed by the PFNs that
//!   `/proc/PID/pagemap` reveals to `CAP_SYS_ADMIN`. Reads and writes both count; one check per
//!   window, so accesses are 0 or 1.
//! - [`softdirty`]: `/proc/PID/clear_refs` and the soft-dirty bit of `pagemap`. Works for any
//!   user allowed to ptrace the process, on every kernel, but sees writes only.
//!
//! [`TrackerKind::Auto`] takes the first of these that the host offers and says why in
//! [`Tracker::why`], the sentence `tierd status` prints.
//!
//! Absent is not zero: a process that exits while it is sampled is listed in
//! [`Sample::dropped`] and its regions are left out; it is never an error and never "idle".
//! Pages that are not present (never touched, or swapped out) are left out too: there is
//! nothing to move.

use std::fmt;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::SysRoot;

pub mod damon;
#[cfg(any(test, feature = "fixture"))]
pub mod fake;
#[cfg(any(test, feature = "fixture"))]
mod fake_damon;
pub mod idle;
pub mod pagemap;
pub mod softdirty;

mod ages;
pub mod bits;

/// A process id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pid(pub u32);

impl fmt::Display for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A virtual page number: a virtual address divided by the page size. Never a PFN.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Vpn(pub u64);

/// A physical page frame number, as `pagemap` bits 0-54 give it. Never a virtual page number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pfn(pub u64);

/// One page of one process: the unit a Linux backend names and moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PageRef {
    /// The process.
    pub pid: Pid,
    /// The page in its address space.
    pub vpn: Vpn,
}

impl PageRef {
    /// The page's first byte, the address `move_pages(2)` takes.
    pub fn addr(self, page_size: u64) -> u64 {
        self.vpn.0 * page_size
    }
}

/// An address range of one process with the access figure the tracker measured for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Region {
    /// The process.
    pub pid: Pid,
    /// First byte (page-aligned).
    pub start: u64,
    /// One past the last byte (page-aligned).
    pub end: u64,
    /// Accesses seen in the last window, from 0 (idle) to [`Sample::max_accesses`].
    pub accesses: u32,
    /// For how many windows `accesses` has stayed about the same (DAMON's `age`; for the
    /// page-bit trackers, windows since the page last changed between used and idle).
    pub age: u32,
}

impl Region {
    /// Bytes in the range.
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    /// Whether the range is empty.
    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }

    /// The pages of the range, lowest first. `page_size` must be the one the addresses were
    /// aligned to; a partial page at either end counts as a whole one.
    pub fn pages(&self, page_size: u64) -> impl Iterator<Item = PageRef> + use<> {
        let pid = self.pid;
        let first = self.start / page_size;
        let last = self.end.div_ceil(page_size);
        (first..last).map(move |v| PageRef { pid, vpn: Vpn(v) })
    }
}

/// What one [`Tracker::sample`] saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sample {
    /// Regions of the processes that were still there, per process in address order.
    pub regions: Vec<Region>,
    /// The highest [`Region::accesses`] this tracker can report (every check in the window
    /// saw an access): `aggr_us / sample_us` for DAMON, 1 for the page-bit trackers.
    pub max_accesses: u32,
    /// Processes in scope that had exited (or whose memory could no longer be read because
    /// they were exiting): dropped from the sample, not idle.
    pub dropped: Vec<Pid>,
    /// How long the window the figures describe lasted (since the previous sample or the
    /// start). Zero for a first sample that only started the window.
    pub window: Duration,
    /// Wall time this call took: tierd's scan cost. DAMON's is mostly waiting: the kernel
    /// answers `update_schemes_tried_regions` after about two aggregation intervals (210-340
    /// ms with `aggr_us` = 100 000 in the 6.12 guest), so the loop must not count it as CPU.
    pub took: Duration,
    /// Bytes covered by [`Sample::regions`].
    pub covered_bytes: u64,
    /// Pages of the scanned mappings that were not present (never touched or swapped out):
    /// not in any region. Always 0 for DAMON, which does not say.
    pub absent_pages: u64,
}

impl Sample {
    /// Regions from idle to busy, and among equals the oldest first: the order in which to
    /// demote. Regions with accesses above `max_accesses_for_cold` are left out.
    pub fn coldest(&self, max_accesses_for_cold: u32) -> Vec<Region> {
        let mut v: Vec<Region> =
            self.regions.iter().copied().filter(|r| r.accesses <= max_accesses_for_cold).collect();
        v.sort_by(|a, b| a.accesses.cmp(&b.accesses).then(b.age.cmp(&a.age)).then(key(a, b)));
        v
    }

    /// Regions from busiest to least busy with at least `min_accesses`, and among equals the
    /// oldest (steadiest) first: the order in which to promote.
    pub fn hottest(&self, min_accesses: u32) -> Vec<Region> {
        let mut v: Vec<Region> =
            self.regions.iter().copied().filter(|r| r.accesses >= min_accesses).collect();
        v.sort_by(|a, b| b.accesses.cmp(&a.accesses).then(b.age.cmp(&a.age)).then(key(a, b)));
        v
    }
}

fn key(a: &Region, b: &Region) -> std::cmp::Ordering {
    (a.pid, a.start).cmp(&(b.pid, b.start))
}

/// An access tracker over one set of processes. See the module documentation.
pub trait Tracker: Send + fmt::Debug {
    /// `damon`, `idle` or `softdirty`: the config's name for it.
    fn name(&self) -> &'static str;

    /// One sentence for `tierd status`: what this tracker uses, why it was chosen, and what
    /// it cannot see.
    fn why(&self) -> &str;

    /// Starts tracking `pids` or changes the set tracked to `pids` (duplicates ignored).
    /// Processes in the set that no longer exist are skipped, not errors; the next sample
    /// lists them as dropped.
    fn set_pids(&mut self, pids: &[Pid]) -> Result<(), Error>;

    /// Ends the current window and reports it; the next window starts now.
    fn sample(&mut self) -> Result<Sample, Error>;

    /// Tears down everything the tracker created in the kernel (a DAMON kdamond). Idempotent;
    /// `Drop` calls it too, ignoring errors.
    fn stop(&mut self) -> Result<(), Error>;
}

/// Which tracker to use (the config's `tracker`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TrackerKind {
    /// DAMON if its sysfs interface is there and writable, else idle page tracking if the
    /// bitmap is there, else soft-dirty.
    Auto,
    /// DAMON through `/sys/kernel/mm/damon/admin`.
    Damon,
    /// Idle page tracking through `/sys/kernel/mm/page_idle/bitmap`.
    Idle,
    /// Soft-dirty bits through `/proc/PID/clear_refs` and `pagemap`.
    SoftDirty,
}

impl TrackerKind {
    /// The config's spelling.
    pub fn name(self) -> &'static str {
        match self {
            TrackerKind::Auto => "auto",
            TrackerKind::Damon => "damon",
            TrackerKind::Idle => "idle",
            TrackerKind::SoftDirty => "softdirty",
        }
    }
}

impl std::str::FromStr for TrackerKind {
    type Err = String;

    fn from_str(s: &str) -> Result<TrackerKind, String> {
        match s {
            "auto" => Ok(TrackerKind::Auto),
            "damon" => Ok(TrackerKind::Damon),
            "idle" => Ok(TrackerKind::Idle),
            "softdirty" => Ok(TrackerKind::SoftDirty),
            _ => Err(format!("unknown tracker {s:?}: expected auto, damon, idle or softdirty")),
        }
    }
}

/// How a tracker writes kernel control files. The real one writes the file; a test's fake
/// (`fake::FakeHost`, feature `fixture`) also plays the kernel's part (writing `nr_kdamonds` creates the
/// kdamond directories, `update_schemes_tried_regions` fills `tried_regions`).
pub trait KernelWriter: Send + Sync + fmt::Debug {
    /// Writes `value` to the existing file `path` in one `write(2)`, as `echo value > path`
    /// does; the kernel's errno comes back as the error.
    fn write(&self, path: &Path, value: &str) -> io::Result<()>;

    /// Whether an `EBUSY` from this writer may be a lock held for a moment by another
    /// program (so worth trying again), as in the kernel's DAMON sysfs files.
    fn transient_busy(&self) -> bool {
        true
    }

    /// Whether `path` may be written, without writing it (opens it for writing).
    fn check_writable(&self, path: &Path) -> io::Result<()> {
        std::fs::OpenOptions::new().write(true).open(path).map(drop)
    }
}

/// Writes the real files: opens without creating (a control file that does not exist is
/// `ENOENT`, as in sysfs) and writes the value in one call.
#[derive(Clone, Copy, Debug, Default)]
pub struct RealWriter;

impl KernelWriter for RealWriter {
    fn write(&self, path: &Path, value: &str) -> io::Result<()> {
        let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
        f.write_all(value.as_bytes())
    }
}

/// Where a tracker works and how it may write.
#[derive(Clone, Debug)]
pub struct TrackerContext {
    /// The sysfs and procfs roots.
    pub root: SysRoot,
    /// A directory private to this tierd (e.g. `/run/tierd`), where the DAMON tracker records
    /// the kdamond it claims so that the next start can remove it after a crash.
    pub runtime_dir: PathBuf,
    /// The base page size in bytes (`sys::page_size()` on a real host).
    pub page_size: u64,
    /// DAMON's monitoring attributes.
    pub damon: damon::DamonParams,
    /// How control files are written.
    pub writer: std::sync::Arc<dyn KernelWriter>,
}

impl TrackerContext {
    /// The running system: `/sys`, `/proc`, the real page size and writer, DAMON defaults.
    pub fn system(runtime_dir: impl Into<PathBuf>) -> TrackerContext {
        TrackerContext {
            root: SysRoot::default(),
            runtime_dir: runtime_dir.into(),
            page_size: crate::sys::page_size() as u64,
            damon: damon::DamonParams::default(),
            writer: std::sync::Arc::new(RealWriter),
        }
    }
}

/// Opens the tracker `kind` asks for. [`TrackerKind::Auto`] falls through DAMON, idle and
/// soft-dirty in that order and records in [`Tracker::why`] what it found missing; an
/// explicit kind that the host lacks is an error saying what to do.
pub fn open(kind: TrackerKind, ctx: &TrackerContext) -> Result<Box<dyn Tracker>, Error> {
    match kind {
        TrackerKind::Damon => Ok(Box::new(damon::DamonTracker::open(ctx, None)?)),
        TrackerKind::Idle => Ok(Box::new(idle::IdleTracker::open(ctx, None)?)),
        TrackerKind::SoftDirty => Ok(Box::new(softdirty::SoftDirtyTracker::open(ctx, None)?)),
        TrackerKind::Auto => {
            let damon_missing =
                match damon::DamonTracker::open(ctx, Some("auto: DAMON comes first")) {
                    Ok(t) => return Ok(Box::new(t)),
                    Err(e) => e.to_string(),
                };
            let idle_missing = if idle::IdleTracker::present(&ctx.root) {
                let why = format!("auto: DAMON unusable ({damon_missing})");
                match idle::IdleTracker::open(ctx, Some(&why)) {
                    Ok(t) => return Ok(Box::new(t)),
                    Err(e) => format!("idle page tracking unusable ({e})"),
                }
            } else {
                format!(
                    "idle page tracking absent ({} missing)",
                    idle::bitmap_path(&ctx.root).display()
                )
            };
            let why = format!("auto: DAMON unusable ({damon_missing}); {idle_missing}");
            match softdirty::SoftDirtyTracker::open(ctx, Some(&why)) {
                Ok(t) => Ok(Box::new(t)),
                Err(e) => Err(Error::Unavailable {
                    tracker: "auto",
                    path: e.path().to_path_buf(),
                    hint: format!("no tracker works on this host: {why}; {e}"),
                }),
            }
        }
    }
}

/// Why a tracker cannot go on. Every variant names the file and says what to do next.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The kernel interface the tracker needs is not there (or does not work).
    #[error("{tracker}: {}: {hint}", path.display())]
    Unavailable {
        /// The tracker's name.
        tracker: &'static str,
        /// The file or directory that is missing or misbehaves.
        path: PathBuf,
        /// What is wrong and what to do.
        hint: String,
    },
    /// tierd lacks the privilege the interface needs.
    #[error("{tracker}: {}: {source}: {hint}", path.display())]
    Permission {
        /// The tracker's name.
        tracker: &'static str,
        /// The file it could not open or write.
        path: PathBuf,
        /// The OS error (`EACCES`, `EPERM`).
        #[source]
        source: io::Error,
        /// What to do, e.g. "DAMON needs root: run tierd as root or pick tracker = softdirty".
        hint: &'static str,
    },
    /// DAMON's kdamonds belong to another user and tierd will not touch them.
    #[error("damon: {}: {detail}; tierd leaves other DAMON users alone: stop them or pick \
             tracker = softdirty (or idle)", path.display())]
    Busy {
        /// The kdamond directory (or `nr_kdamonds`) in the way.
        path: PathBuf,
        /// Who holds it and how.
        detail: String,
    },
    /// Writing a control file failed.
    #[error("{tracker}: writing {value:?} to {}: {source}{hint}", path.display())]
    Write {
        /// The tracker's name.
        tracker: &'static str,
        /// The file.
        path: PathBuf,
        /// What was written.
        value: String,
        /// The kernel's answer.
        #[source]
        source: io::Error,
        /// What the errno most likely means here (may be empty).
        hint: String,
    },
    /// Reading a file failed, or it said something tierd cannot parse.
    #[error(transparent)]
    Read(#[from] crate::Error),
}

impl Error {
    /// The path that failed.
    pub fn path(&self) -> &Path {
        match self {
            Error::Unavailable { path, .. }
            | Error::Permission { path, .. }
            | Error::Busy { path, .. }
            | Error::Write { path, .. } => path,
            Error::Read(e) => e.path(),
        }
    }
}

/// Whether `e` is a permission failure.
pub(crate) fn is_permission(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::PermissionDenied || e.raw_os_error() == Some(libc::EPERM)
}

/// An [`Error::Io`](crate::Error::Io) for `path`.
pub(crate) fn io_error(path: &Path, source: io::Error) -> Error {
    Error::Read(crate::Error::Io { path: path.to_path_buf(), source })
}

/// The running kernel's release (`proc/sys/kernel/osrelease`), for [`Tracker::why`].
pub(crate) fn kernel_release(root: &SysRoot) -> Option<String> {
    let text = std::fs::read_to_string(root.proc.join("sys/kernel/osrelease")).ok()?;
    Some(text.trim().to_string())
}

/// Whether `pid` still exists (`proc/PID` is there).
pub(crate) fn pid_alive(root: &SysRoot, pid: Pid) -> bool {
    root.proc.join(pid.0.to_string()).is_dir()
}

/// `pids` sorted, without duplicates.
pub(crate) fn unique(pids: &[Pid]) -> Vec<Pid> {
    let mut v = pids.to_vec();
    v.sort_unstable();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(pid: u32, start: u64, accesses: u32, age: u32) -> Region {
        Region { pid: Pid(pid), start, end: start + 4096, accesses, age }
    }

    #[test]
    fn coldest_puts_idle_and_old_first_hottest_busy_first() {
        let s = Sample {
            regions: vec![r(1, 0, 5, 1), r(1, 4096, 0, 2), r(2, 0, 0, 9), r(2, 8192, 20, 3)],
            max_accesses: 20,
            ..Sample::default()
        };
        let cold: Vec<_> = s.coldest(0).iter().map(|r| (r.pid.0, r.start)).collect();
        assert_eq!(cold, [(2, 0), (1, 4096)]);
        let hot: Vec<_> = s.hottest(5).iter().map(|r| (r.pid.0, r.start)).collect();
        assert_eq!(hot, [(2, 8192), (1, 0)]);
    }

    #[test]
    fn region_pages_are_pid_and_virtual_page_pairs() {
        let reg = Region { pid: Pid(7), start: 0x1000, end: 0x3000, accesses: 0, age: 0 };
        let pages: Vec<_> = reg.pages(4096).collect();
        assert_eq!(
            pages,
            [PageRef { pid: Pid(7), vpn: Vpn(1) }, PageRef { pid: Pid(7), vpn: Vpn(2) }]
        );
        assert_eq!(pages[1].addr(4096), 0x2000);
        assert_eq!(reg.len(), 0x2000);
    }

    /// One contract for every tracker (STYLE 4), over one fake host that offers all three:
    /// process 10 has one anonymous mapping of 8 pages, 6 present (frames 100-105, pages 0
    /// and 1 soft-dirty) and two DAMON regions; process 99 does not exist.
    fn contract(name: &str, make: impl Fn(&TrackerContext) -> Result<Box<dyn Tracker>, Error>) {
        const BASE: u64 = 0x4000_0000;
        let h = fake::FakeHost::new();
        h.with_damon();
        h.with_idle_bitmap(4096);
        let e = |present, dirty, pfn| fake::entry(present, dirty, pfn);
        h.process(Pid(10))
            .maps(&format!("{BASE:x}-{:x} rw-p 00000000 00:00 0 ", BASE + 8 * 4096))
            .maps("50000000-50001000 r-xp 00000000 08:01 3 /bin/true")
            .pagemap(
                BASE / 4096,
                &[
                    e(true, true, 100),
                    e(true, true, 101),
                    e(true, false, 102),
                    e(false, false, 0),
                    e(true, false, 103),
                    e(true, false, 104),
                    e(false, false, 0),
                    e(true, false, 105),
                ],
            )
            .write();
        h.damon_regions(
            Pid(10),
            &[
                fake::FakeRegion { start: BASE, end: BASE + 0x2000, nr_accesses: 9, age: 1 },
                fake::FakeRegion { start: BASE + 0x2000, end: 0x5000_1000, nr_accesses: 0, age: 4 },
            ],
        );
        let mut t = make(&h.context()).unwrap();
        assert_eq!(t.name(), name);
        assert!(t.why().starts_with(&format!("{name}: ")), "{}", t.why());

        let s = t.sample().unwrap();
        assert!(s.regions.is_empty() && s.dropped.is_empty(), "{name}: nothing before set_pids");

        t.set_pids(&[Pid(10), Pid(99), Pid(10)]).unwrap();
        let s = t.sample().unwrap();
        assert_eq!(s.dropped, [Pid(99)], "{name}: a pid that does not exist is dropped");
        assert!(!s.regions.is_empty(), "{name}: regions of pid 10");
        let mut prev_end = 0;
        for r in &s.regions {
            assert_eq!(r.pid, Pid(10), "{name}");
            assert!(
                r.start >= BASE && r.end <= BASE + 8 * 4096,
                "{name}: {r:?} outside the anon mapping"
            );
            assert!(r.start >= prev_end && r.start < r.end, "{name}: regions in order, disjoint");
            assert!(r.accesses <= s.max_accesses, "{name}: {r:?} above max {}", s.max_accesses);
            prev_end = r.end;
        }
        assert_eq!(s.covered_bytes, s.regions.iter().map(Region::len).sum::<u64>(), "{name}");
        let first = s.regions[0];
        assert!(first.start == BASE && first.accesses > 0, "{name}: the first pages are used");

        t.set_pids(&[Pid(10)]).unwrap();
        h.exit(Pid(10));
        let s = t.sample().unwrap();
        assert_eq!(s.dropped, [Pid(10)], "{name}: an exited pid is dropped");
        assert!(s.regions.is_empty(), "{name}: and has no regions");
        assert!(t.sample().unwrap().dropped.is_empty(), "{name}: dropped once");
        t.stop().unwrap();
        t.stop().unwrap();
    }

    #[test]
    fn every_tracker_keeps_the_contract() {
        contract("damon", |c| Ok(Box::new(damon::DamonTracker::open(c, None)?)));
        contract("softdirty", |c| Ok(Box::new(softdirty::SoftDirtyTracker::open(c, None)?)));
        // Idle: the first window starts at set_pids (all frames marked); the contract's
        // first sample then sees frames 100 and 101 used.
        contract("idle", |c| {
            let t = idle::IdleTracker::open(c, None)?;
            Ok(Box::new(TouchAfterMark { inner: t, root: c.root.clone() }))
        });
    }

    /// Idle tracking learns of accesses from the kernel clearing bits after the mark; this
    /// wrapper plays the workload touching frames 100 and 101 right after `set_pids`.
    #[derive(Debug)]
    struct TouchAfterMark {
        inner: idle::IdleTracker,
        root: SysRoot,
    }

    impl Tracker for TouchAfterMark {
        fn name(&self) -> &'static str {
            self.inner.name()
        }
        fn why(&self) -> &str {
            self.inner.why()
        }
        fn set_pids(&mut self, pids: &[Pid]) -> Result<(), Error> {
            self.inner.set_pids(pids)?;
            let path = idle::bitmap_path(&self.root);
            let mut b = std::fs::read(&path).unwrap();
            b[100 / 8] &= !(0b11 << (100 % 8));
            std::fs::write(path, b).unwrap();
            Ok(())
        }
        fn sample(&mut self) -> Result<Sample, Error> {
            self.inner.sample()
        }
        fn stop(&mut self) -> Result<(), Error> {
            self.inner.stop()
        }
    }

    #[test]
    fn auto_prefers_damon() {
        let h = fake::FakeHost::new();
        h.with_damon();
        h.with_idle_bitmap(64);
        let t = open(TrackerKind::Auto, &h.context()).unwrap();
        assert_eq!(t.name(), "damon");
        assert!(t.why().ends_with("auto: DAMON comes first"), "{}", t.why());
    }

    #[test]
    fn auto_takes_idle_when_damon_is_not_writable_and_says_why() {
        let h = fake::FakeHost::new();
        h.with_damon();
        h.deny("sys/kernel/mm/damon/admin/kdamonds/nr_kdamonds");
        h.with_idle_bitmap(64);
        let t = open(TrackerKind::Auto, &h.context()).unwrap();
        assert_eq!(t.name(), "idle");
        assert!(t.why().contains("DAMON needs root"), "{}", t.why());
    }

    #[test]
    fn auto_without_root_skips_damon_and_idle_for_softdirty() {
        let h = fake::FakeHost::new();
        h.with_damon();
        h.deny("sys/kernel/mm/damon/admin/kdamonds/nr_kdamonds");
        h.with_idle_bitmap(64);
        h.deny("sys/kernel/mm/page_idle/bitmap");
        let t = open(TrackerKind::Auto, &h.context()).unwrap();
        assert_eq!(t.name(), "softdirty");
        assert!(t.why().contains("idle page tracking unusable"), "{}", t.why());
    }

    #[test]
    fn auto_falls_back_to_softdirty_naming_what_is_missing() {
        let h = fake::FakeHost::new();
        let t = open(TrackerKind::Auto, &h.context()).unwrap();
        assert_eq!(t.name(), "softdirty");
        let why = t.why();
        assert!(why.contains("write heat only"), "{why}");
        assert!(why.contains("damon/admin: missing: this kernel has no DAMON"), "{why}");
        assert!(why.contains("page_idle/bitmap missing"), "{why}");
    }

    #[test]
    fn auto_leaves_a_busy_damon_alone() {
        let h = fake::FakeHost::new();
        h.with_damon();
        h.process(Pid(1)).maps("").write();
        h.other_user_kdamond(Pid(1));
        let t = open(TrackerKind::Auto, &h.context()).unwrap();
        assert_eq!(t.name(), "softdirty");
        assert!(t.why().contains("tierd leaves other DAMON users alone"), "{}", t.why());
    }

    #[test]
    fn an_explicit_kind_the_host_lacks_is_an_error() {
        let h = fake::FakeHost::new();
        for kind in [TrackerKind::Damon, TrackerKind::Idle] {
            let err = open(kind, &h.context()).unwrap_err();
            assert!(matches!(err, Error::Unavailable { .. }), "{kind:?}: {err:?}");
        }
    }

    #[test]
    fn kinds_parse_as_the_config_spells_them() {
        for k in [TrackerKind::Auto, TrackerKind::Damon, TrackerKind::Idle, TrackerKind::SoftDirty]
        {
            assert_eq!(k.name().parse::<TrackerKind>(), Ok(k));
        }
        assert!("DAMON".parse::<TrackerKind>().is_err());
    }
}
