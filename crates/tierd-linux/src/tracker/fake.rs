//! A fake host for tracker tests: a procfs tree with hand-built `maps` and `pagemap` files,
//! and the idle page bitmap.
//!
//! [`FakeHost`] is a temporary directory holding `sys/`, `proc/` and `run/`, and a
//! [`KernelWriter`] that plays the kernel's part when a tracker writes a control file: a write
//! to a file that does not exist fails with `ENOENT` as in sysfs, a path marked with
//! [`FakeHost::deny`] fails with `EACCES`. Everything else is a plain file the test reads
//! back.
//!
//! Compiled for the crate's tests and behind the `fixture` feature, so that the daemon's
//! tests and a guest scenario harness can drive trackers over the same fakes.

use std::collections::HashSet;
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

#[derive(Debug, Default)]
pub(crate) struct FakeState {
    pub(crate) denied: HashSet<PathBuf>,
    /// Every write, in order: (path relative to the host, value).
    pub(crate) log: Vec<(String, String)>,
}

/// The writer of a [`FakeHost`].
#[derive(Debug)]
pub struct FakeWriter {
    pub(crate) base: PathBuf,
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
        if !path.is_file() {
            return Err(io::Error::from_raw_os_error(libc::ENOENT));
        }
        std::fs::write(path, value)
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
            state: Mutex::new(FakeState::default()),
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

    /// A tracker context over this host: 4 KiB pages, `run/` as the runtime directory.
    pub fn context(&self) -> TrackerContext {
        TrackerContext {
            root: self.root.clone(),
            runtime_dir: self.dir.path().join("run"),
            page_size: 4096,
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

    /// The process exits: `proc/PID` disappears.
    pub fn exit(&self, pid: Pid) {
        let _ = std::fs::remove_dir_all(self.root.proc.join(pid.0.to_string()));
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
