//! A fake host for tracker tests: a procfs tree with hand-built `maps` and `pagemap` files,
//! the idle page bitmap, and an emulated DAMON sysfs interface.
//!
//! [`FakeHost`] is a temporary directory holding `sys/`, `proc/` and `run/`, and a
//! [`KernelWriter`] that plays the kernel's part when a tracker writes a control file: a write
//! to a file that does not exist fails with `ENOENT` as in sysfs, a path marked with
//! [`FakeHost::deny`] fails with `EACCES`, and writes under the DAMON admin directory follow
//! DAMON's file protocol (see [`FakeHost::with_damon`]). Everything else is a plain file the
//! test reads back.
//!
//! Compiled for the crate's tests and behind the `fixture` feature, so that the daemon's
//! tests and a guest scenario harness can drive trackers over the same fakes.

use std::collections::{BTreeMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tempfile::TempDir;

use super::pagemap::{PM_PRESENT, PM_SOFT_DIRTY};
use super::{KernelWriter, Pid, TrackerContext};
use crate::SysRoot;

/// A pagemap entry: present or not, soft-dirty or not, and a PFN.
pub fn entry(present: bool, soft_dirty: bool, pfn: u64) -> u64 {
    (if present { PM_PRESENT | pfn } else { 0 }) | if soft_dirty { PM_SOFT_DIRTY } else { 0 }
}

/// One DAMON region a fake kdamond reports for a process: `start`, `end`, `nr_accesses`,
/// `age`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FakeRegion {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
    /// Accesses in the aggregation interval.
    pub nr_accesses: u32,
    /// Aggregation intervals the figure has held.
    pub age: u32,
}

#[derive(Debug, Default)]
pub(crate) struct FakeState {
    pub(crate) denied: HashSet<PathBuf>,
    /// Regions a running kdamond reports per pid.
    pub(crate) damon_regions: BTreeMap<u32, Vec<FakeRegion>>,
    /// The next kdamond thread pid.
    pub(crate) next_kthread: u32,
    /// Every write, in order: (path relative to the host, value).
    pub(crate) log: Vec<(String, String)>,
}

/// The writer of a [`FakeHost`].
#[derive(Debug)]
pub struct FakeWriter {
    pub(crate) base: PathBuf,
    pub(crate) root: SysRoot,
    pub(crate) state: Mutex<FakeState>,
}

impl KernelWriter for FakeWriter {
    fn write(&self, path: &Path, value: &str) -> io::Result<()> {
        let mut st = self.state.lock().expect("fake state lock");
        let rel = path.strip_prefix(&self.base).unwrap_or(path).display().to_string();
        st.log.push((rel, value.to_string()));
        if st.denied.contains(path) {
            return Err(io::Error::from_raw_os_error(libc::EACCES));
        }
        if path.starts_with(super::damon::admin_dir(&self.root)) {
            return super::fake_damon::write(&self.root, &mut st, path, value);
        }
        if !path.is_file() {
            return Err(io::Error::from_raw_os_error(libc::ENOENT));
        }
        std::fs::write(path, value)
    }

    /// The fake's `EBUSY` always means "a kdamond is on": no point in waiting.
    fn transient_busy(&self) -> bool {
        false
    }

    fn check_writable(&self, path: &Path) -> io::Result<()> {
        if self.state.lock().expect("fake state lock").denied.contains(path) {
            return Err(io::Error::from_raw_os_error(libc::EACCES));
        }
        std::fs::OpenOptions::new().write(true).open(path).map(drop)
    }
}

/// A fake host. See the module documentation.
#[derive(Debug)]
pub struct FakeHost {
    dir: TempDir,
    root: SysRoot,
    writer: Arc<FakeWriter>,
}

impl Default for FakeHost {
    fn default() -> FakeHost {
        FakeHost::new()
    }
}

impl FakeHost {
    /// An empty host: `proc/sys/kernel/osrelease` says `6.12.0-fake`; no DAMON, no bitmap.
    pub fn new() -> FakeHost {
        let dir = tempfile::tempdir().expect("temporary directory");
        let root = SysRoot::under(dir.path());
        std::fs::create_dir_all(root.proc.join("sys/kernel")).expect("proc");
        std::fs::write(root.proc.join("sys/kernel/osrelease"), "6.12.0-fake\n").expect("write");
        std::fs::create_dir_all(&root.sys).expect("sys");
        std::fs::create_dir_all(dir.path().join("run")).expect("run");
        let writer = Arc::new(FakeWriter {
            base: dir.path().to_path_buf(),
            root: root.clone(),
            state: Mutex::new(FakeState { next_kthread: 900, ..FakeState::default() }),
        });
        FakeHost { dir, root, writer }
    }

    /// The roots.
    pub fn root(&self) -> &SysRoot {
        &self.root
    }

    /// The directory holding `sys/`, `proc/` and `run/`.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The writer that plays the kernel.
    pub fn writer(&self) -> Arc<FakeWriter> {
        Arc::clone(&self.writer)
    }

    /// A tracker context over this host: 4 KiB pages, `run/` as the runtime directory,
    /// DAMON defaults.
    pub fn context(&self) -> TrackerContext {
        TrackerContext {
            root: self.root.clone(),
            runtime_dir: self.dir.path().join("run"),
            page_size: 4096,
            damon: super::damon::DamonParams::default(),
            writer: self.writer(),
        }
    }

    /// The text of `rel` (relative to [`FakeHost::path`]); empty when absent.
    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(rel)).unwrap_or_default()
    }

    /// Writes `rel` (relative to [`FakeHost::path`]) directly, creating parents, as the
    /// kernel (or another program) would change it behind the tracker's back.
    pub fn write(&self, rel: &str, contents: impl AsRef<[u8]>) {
        let path = self.dir.path().join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, contents).expect("write");
    }

    /// Writes through the fake kernel, as another program's `echo value > rel` would.
    pub fn echo(&self, rel: &str, value: &str) -> io::Result<()> {
        self.writer.write(&self.dir.path().join(rel), value)
    }

    /// Makes writes to `rel` fail with `EACCES`, as for a user without the privilege.
    pub fn deny(&self, rel: &str) {
        let path = self.dir.path().join(rel);
        self.writer.state.lock().expect("lock").denied.insert(path);
    }

    /// Every write made through the fake kernel so far: (path relative to the host, value).
    pub fn writes(&self) -> Vec<(String, String)> {
        self.writer.state.lock().expect("lock").log.clone()
    }

    /// Starts describing process `pid`; [`ProcBuilder::write`] creates its files.
    pub fn process(&self, pid: Pid) -> ProcBuilder<'_> {
        ProcBuilder { host: self, pid, maps: String::new(), pagemap: Vec::new() }
    }

    /// The process exits: `proc/PID` disappears, and a running kdamond whose targets have all
    /// exited stops, as DAMON does.
    pub fn exit(&self, pid: Pid) {
        let _ = std::fs::remove_dir_all(self.root.proc.join(pid.0.to_string()));
        super::fake_damon::reap(&self.root);
    }

    /// What was last written to `proc/PID/clear_refs`.
    pub fn clear_refs(&self, pid: Pid) -> String {
        self.read(&format!("proc/{pid}/clear_refs"))
    }

    /// Overwrites `proc/PID/clear_refs`.
    pub fn set_clear_refs(&self, pid: Pid, text: &str) {
        self.write(&format!("proc/{pid}/clear_refs"), text);
    }

    /// Creates `sys/kernel/mm/page_idle/bitmap` covering `nr_pfns` page frames, all
    /// not idle.
    pub fn with_idle_bitmap(&self, nr_pfns: u64) {
        let words = usize::try_from(nr_pfns.div_ceil(64)).expect("small bitmap");
        self.write("sys/kernel/mm/page_idle/bitmap", vec![0u8; words * 8]);
    }

    /// The page frame `pfn` is accessed: the kernel clears its idle bit.
    pub fn touch_pfn(&self, pfn: u64) {
        let path = self.dir.path().join("sys/kernel/mm/page_idle/bitmap");
        let mut b = std::fs::read(&path).expect("bitmap");
        let byte = usize::try_from(pfn / 8).expect("small pfn");
        b[byte] &= !(1 << (pfn % 8));
        std::fs::write(path, b).expect("bitmap");
    }

    /// Whether the idle bit of `pfn` is set.
    pub fn pfn_idle(&self, pfn: u64) -> bool {
        let b =
            std::fs::read(self.dir.path().join("sys/kernel/mm/page_idle/bitmap")).expect("bitmap");
        b[usize::try_from(pfn / 8).expect("small pfn")] & (1 << (pfn % 8)) != 0
    }

    /// Creates an empty DAMON sysfs interface (`admin/kdamonds/nr_kdamonds` = 0) that
    /// follows the kernel's file protocol, as `mm/damon/sysfs.c` of Linux 6.12 does:
    /// writing `nr_kdamonds`, `nr_contexts`, `nr_targets`, `nr_schemes` or `nr_filters`
    /// recreates the child directories with the kernel's defaults (`EBUSY` for the first two
    /// while a kdamond runs); `state` takes `on`, `off`, `commit`,
    /// `update_schemes_tried_regions`, `clear_schemes_tried_regions` and
    /// `update_schemes_stats`; `on` and `commit` fail with `EINVAL` for a target pid that
    /// does not exist or bad monitoring attributes; tried regions are the regions set with
    /// [`FakeHost::damon_regions`] that pass each scheme's access pattern and `target`
    /// filters.
    pub fn with_damon(&self) {
        self.write("sys/kernel/mm/damon/admin/kdamonds/nr_kdamonds", "0\n");
    }

    /// The regions a running kdamond reports for `pid`.
    pub fn damon_regions(&self, pid: Pid, regions: &[FakeRegion]) {
        self.writer.state.lock().expect("lock").damon_regions.insert(pid.0, regions.to_vec());
    }

    /// Another DAMON user (damo, a script) starts kdamond 0 monitoring `pid`: the writes
    /// `echo 1 > nr_kdamonds` ... `echo on > state`.
    pub fn other_user_kdamond(&self, pid: Pid) {
        let k = "sys/kernel/mm/damon/admin/kdamonds";
        self.echo(&format!("{k}/nr_kdamonds"), "1").expect("nr_kdamonds");
        self.echo(&format!("{k}/0/contexts/nr_contexts"), "1").expect("nr_contexts");
        self.echo(&format!("{k}/0/contexts/0/targets/nr_targets"), "1").expect("nr_targets");
        self.echo(&format!("{k}/0/contexts/0/targets/0/pid_target"), &pid.0.to_string())
            .expect("pid_target");
        self.echo(&format!("{k}/0/state"), "on").expect("on");
    }
}

/// Describes one fake process. See [`FakeHost::process`].
#[derive(Debug)]
pub struct ProcBuilder<'a> {
    host: &'a FakeHost,
    pid: Pid,
    maps: String,
    pagemap: Vec<(u64, Vec<u64>)>,
}

impl ProcBuilder<'_> {
    /// Adds `text` (one or more lines) to `maps`.
    #[must_use]
    pub fn maps(mut self, text: &str) -> Self {
        if !text.is_empty() {
            self.maps.push_str(text);
            if !text.ends_with('\n') {
                self.maps.push('\n');
            }
        }
        self
    }

    /// Adds one line to `maps`.
    #[must_use]
    pub fn maps_line(self, line: &str) -> Self {
        self.maps(line)
    }

    /// Sets the pagemap entries of the pages from `first_vpn` on; every other entry is 0.
    #[must_use]
    pub fn pagemap(mut self, first_vpn: u64, entries: &[u64]) -> Self {
        self.pagemap.push((first_vpn, entries.to_vec()));
        self
    }

    /// Writes `proc/PID/{maps,pagemap,clear_refs}` (a sparse pagemap file of 64-bit
    /// little-endian entries).
    pub fn write(self) {
        use std::os::unix::fs::FileExt as _;
        let dir = self.host.root.proc.join(self.pid.0.to_string());
        std::fs::create_dir_all(&dir).expect("proc dir");
        std::fs::write(dir.join("maps"), &self.maps).expect("maps");
        std::fs::write(dir.join("clear_refs"), "").expect("clear_refs");
        let f = std::fs::File::create(dir.join("pagemap")).expect("pagemap");
        let mut len = 0;
        for (first, entries) in &self.pagemap {
            let bytes: Vec<u8> = entries.iter().flat_map(|e| e.to_le_bytes()).collect();
            f.write_all_at(&bytes, first * 8).expect("pagemap");
            len = len.max(first * 8 + bytes.len() as u64);
        }
        // Cover every mapping, as the kernel's pagemap does.
        for line in self.maps.lines() {
            if let Some(v) = super::pagemap::parse_maps_line(line) {
                len = len.max(v.end / 4096 * 8);
            }
        }
        f.set_len(len).expect("pagemap length");
    }
}
