//! The DAMON tracker: one kdamond driven through `/sys/kernel/mm/damon/admin`.
//!
//! DAMON (`Documentation/admin-guide/mm/damon/usage.rst`, `mm/damon/sysfs*.c`) samples the
//! accessed bits of a process's address space in adaptive regions and, each aggregation
//! interval, knows per region how many samples saw an access (`nr_accesses`, 0 to
//! `aggr_us / sample_us`) and for how many intervals that figure has held (`age`). The sysfs
//! interface exposes those figures only through DAMOS: a scheme with action `stat` does
//! nothing but "try" every region that matches its access pattern, and writing
//! `update_schemes_tried_regions` to the kdamond's `state` makes the kernel list the regions
//! tried during the next aggregation interval under the scheme's `tried_regions/N/` as
//! `start`, `end`, `nr_accesses` and `age`. Tried regions do not say which target they belong
//! to, so the tracker creates one scheme per target, each with a `target` filter that
//! filters out every other target (`matching` = `N`); with one target no filter is needed,
//! which keeps a single process trackable on kernels that lack `target` filters.
//!
//! # Files, in order
//!
//! With `K` the kdamond tierd claims and `C` = `kdamonds/K/contexts/0`:
//!
//! 1. claim: `kdamonds/nr_kdamonds` ← 1, only when it is 0; else the lowest kdamond that is
//!    `off` with `nr_contexts` 0. `C/../nr_contexts` ← 1, `C/operations` ← `vaddr`,
//!    `C/monitoring_attrs/intervals/{sample_us,aggr_us,update_us}`,
//!    `C/monitoring_attrs/nr_regions/{min,max}`.
//! 2. targets: `C/targets/nr_targets` ← n, `C/targets/I/pid_target` ← pid;
//!    `C/schemes/nr_schemes` ← n, and per scheme `action` ← `stat`, `access_pattern/{sz,
//!    nr_accesses,age}/{min,max}` ← 0 and the largest value, `quotas/{ms,bytes}` ← 0,
//!    `quotas/reset_interval_ms` ← [`MARK_RESET_INTERVAL_MS`], `watermarks/metric` ← `none`,
//!    `watermarks/interval_us` ← tierd's own pid (inert with `none`: who owns the kdamond),
//!    and with n > 1 `filters/nr_filters` ← 1, `filters/0/{type,damon_target_idx,matching}`
//!    ← `target`, I, `N`. (The file is `damon_target_idx` in `mm/damon/sysfs-schemes.c` of
//!    6.12, although `usage.rst` calls it `target_idx`; seen in the guest.)
//! 3. `kdamonds/K/state` ← `on` the first time, `commit` when the set of pids changes.
//! 4. per sample: `state` ← `update_schemes_tried_regions` (the kernel answers after one
//!    aggregation interval), read `C/schemes/I/tried_regions/*/{start,end,nr_accesses,age}`,
//!    then `state` ← `clear_schemes_tried_regions`.
//! 5. stop: `state` ← `off`, `kdamonds/K/contexts/nr_contexts` ← 0, and `nr_kdamonds` ← K
//!    when tierd raised it and every other kdamond is free.
//!
//! # Cost
//!
//! The kernel samples; tierd only writes commands and reads a few files per region. A sample
//! blocks for about two aggregation intervals (the kernel answers the command once the
//! regions are in). One scheme per target means each aggregation checks every scheme against
//! every region, `n` pids times `n * max_regions`: fine for tens of processes, heavy for
//! hundreds (lower `max_regions`, or narrow the scope).
//!
//! # Other users and crash recovery
//!
//! The kernel refuses to change `nr_kdamonds` while any kdamond runs (`EBUSY`) and, when it
//! does change it, recreates every kdamond directory, wiping their settings. So tierd never
//! writes `nr_kdamonds` unless it is 0 (or, at stop, unless every other kdamond is free), and
//! never touches a kdamond that is on or configured unless it is recognisably tierd's; when no
//! kdamond is free it refuses with [`Error::Busy`]. tierd's kdamond is recognised two ways:
//! the file `damon-kdamond` in the runtime directory records its index, its thread's pid and
//! whether tierd raised `nr_kdamonds` for it (written before anything is configured,
//! rewritten once it runs; `kdamond=0 kthread=245 grew=1`), and every scheme tierd
//! writes carries a quota reset interval nobody else picks ([`MARK_RESET_INTERVAL_MS`], inert
//! since no quota is set). At open, kdamonds so recognised are turned off and emptied: what a
//! tierd that crashed (or was killed) left behind. The schemes also carry the pid of the
//! tierd that wrote them (`watermarks/interval_us`, inert with the `none` metric): a marked
//! kdamond whose tierd is still alive belongs to that other tierd and is left alone.
//!
//! DAMON's `vaddr` regions span whole stretches of the address space (gaps and file mappings
//! included); each sample cuts them to the process's anonymous private writable mappings
//! from `/proc/PID/maps`, the memory the other trackers report and the mover moves.
//!
//! When a commit puts a different pid at a target index (a pid before it exited), the 6.12
//! kernel keeps the old pid's regions at that index until its next layout update; regions
//! of such an index are left out of samples for `update_us + 2 * aggr_us` (absent, not
//! wrong). A new pid also has no regions until DAMON has laid them out.
//!
//! A process that exits stays a DAMON target until the next commit; its regions are dropped
//! from samples (the pid is reported in [`Sample::dropped`]) and the remaining pids are
//! committed again. When every target has exited the kernel stops the kdamond by itself; the
//! next sample restarts it for the pids still alive.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Error, KernelWriter, Pid, Region, Sample, Tracker, TrackerContext, io_error, unique};
use crate::SysRoot;
use crate::read::{self, malformed};

/// `sys/kernel/mm/damon/admin`.
pub fn admin_dir(root: &SysRoot) -> PathBuf {
    root.sys.join("kernel/mm/damon/admin")
}

/// The quota reset interval tierd writes to each of its schemes: inert (no quota is set) and
/// distinctive, so a restarted tierd recognises kdamonds a previous run left even when the
/// runtime directory was lost.
pub const MARK_RESET_INTERVAL_MS: u64 = 7_340_917;

/// The file in the runtime directory that records the claimed kdamond.
pub const RECORD_FILE: &str = "damon-kdamond";

/// The admin directories a live [`DamonTracker`] of this process works on. A second tracker
/// over the same directory would take the first one's kdamond for a crashed tierd's and
/// remove it, so it is refused: drop the old tracker before opening a new one (a config
/// reload).
static LIVE: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

const NEEDS_ROOT: &str = "DAMON needs root: run tierd as root or pick tracker = softdirty";

/// DAMON's monitoring attributes (`monitoring_attrs/`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DamonParams {
    /// Sampling interval, µs (default 5 000: 5 ms).
    pub sample_us: u64,
    /// Aggregation interval, µs (default 100 000: 100 ms): one window of access counts.
    pub aggr_us: u64,
    /// How often DAMON re-reads the address-space layout, µs (default 1 000 000).
    pub update_us: u64,
    /// Fewest regions per target (default 10; the kernel wants at least 3).
    pub min_regions: u64,
    /// Most regions per target (default 1 000).
    pub max_regions: u64,
}

impl Default for DamonParams {
    fn default() -> DamonParams {
        DamonParams {
            sample_us: 5_000,
            aggr_us: 100_000,
            update_us: 1_000_000,
            min_regions: 10,
            max_regions: 1_000,
        }
    }
}

impl DamonParams {
    /// The highest `nr_accesses` a region can show: samples per aggregation interval.
    pub fn max_accesses(&self) -> u32 {
        u32::try_from(self.aggr_us / self.sample_us.max(1)).unwrap_or(u32::MAX)
    }
}

/// What a kdamond directory says about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
struct KdamondInfo {
    on: bool,
    kthread: Option<u64>,
    nr_contexts: u64,
    marked: bool,
    /// For a marked kdamond: the tierd process that wrote it (see [`DamonTracker::owner`]).
    owner: Option<u32>,
}

impl KdamondInfo {
    fn free(&self) -> bool {
        !self.on && self.nr_contexts == 0
    }
}

/// The recorded claim: kdamond index, its thread's pid once it ran, and whether tierd
/// raised `nr_kdamonds` to get it (so that whoever stops it last may lower it again).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Record {
    index: usize,
    kthread: Option<u64>,
    grew: bool,
}

fn parse_record(text: &str) -> Option<Record> {
    let mut index = None;
    let mut kthread = None;
    let mut grew = false;
    for field in text.split_whitespace() {
        match field.split_once('=')? {
            ("grew", v) => grew = v == "1",
            ("kdamond", v) => index = Some(v.parse().ok()?),
            ("kthread", "-") => {}
            ("kthread", v) => kthread = Some(v.parse().ok()?),
            _ => return None,
        }
    }
    Some(Record { index: index?, kthread, grew })
}

/// How often a DAMON file that answers `EBUSY` is tried again, and how long apart.
///
/// `mm/damon/sysfs.c` takes its one lock with `mutex_trylock()` in `state` and `pid` reads
/// and in every `nr_*`/`state` write, and returns `EBUSY` while another program's command
/// holds it (an `update_schemes_tried_regions` holds it for about two aggregation
/// intervals). Seen in the 6.12 guest: `cat state` failed while tierd sampled.
const BUSY_TRIES: u32 = 40;
const BUSY_WAIT: Duration = Duration::from_millis(25);

fn is_busy(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(libc::EBUSY)
}

/// `read` of `path`, tried again while the kernel answers EBUSY (a DAMON file being
/// updated), at most [`BUSY_TRIES`] times.
fn retry_busy<T>(
    path: &Path,
    read: impl Fn(&Path) -> Result<T, crate::Error>,
) -> Result<T, crate::Error> {
    let mut tries = 0;
    loop {
        match read(path) {
            Err(crate::Error::Io { ref source, .. }) if is_busy(source) && tries < BUSY_TRIES => {
                tries += 1;
                std::thread::sleep(BUSY_WAIT);
            }
            r => return r,
        }
    }
}

/// A one-value file's text, trimmed; `None` when it does not exist.
fn value(path: &Path) -> Result<Option<String>, Error> {
    Ok(retry_busy(path, read::optional)?.map(|t| read::value(&t).trim().to_string()))
}

/// A one-value file's unsigned number; `None` when it does not exist. Read with
/// [`read::small_u64`]: the region files are the tracker's hot path.
fn number(path: &Path) -> Result<Option<u64>, Error> {
    Ok(retry_busy(path, read::small_u64)?)
}

/// See the module documentation.
#[derive(Debug)]
pub struct DamonTracker {
    root: SysRoot,
    writer: Arc<dyn KernelWriter>,
    params: DamonParams,
    record_path: PathBuf,
    why: String,
    kdamond: Option<usize>,
    /// Whether this tracker holds its admin directory in [`LIVE`].
    live: bool,
    grew: bool,
    /// The kdamond a crashed tierd's record says it raised `nr_kdamonds` for.
    inherited: Option<usize>,
    running: bool,
    pids: Vec<Pid>,
    /// Per target index, until when its regions are not to be trusted: a commit that puts a
    /// new pid at an index leaves the old pid's regions there until DAMON's next layout
    /// update (seen in the 6.12 guest), so they are left out, absent rather than wrong.
    settle: Vec<Option<Instant>>,
    pending_dropped: Vec<Pid>,
    window_start: Option<Instant>,
}

impl DamonTracker {
    /// Checks that DAMON's sysfs interface is there and writable, removes kdamonds a
    /// previous tierd left, and claims a free kdamond (or refuses with [`Error::Busy`]).
    /// `auto_why`, when given, is how `auto` came to pick it, appended to [`Tracker::why`].
    pub fn open(ctx: &TrackerContext, auto_why: Option<&str>) -> Result<DamonTracker, Error> {
        let admin = admin_dir(&ctx.root);
        let nr = admin.join("kdamonds/nr_kdamonds");
        if !nr.is_file() {
            return Err(Error::Unavailable {
                tracker: "damon",
                path: admin,
                hint:
                    "missing: this kernel has no DAMON sysfs interface (CONFIG_DAMON_SYSFS, Linux \
                       5.18+): pick tracker = idle or softdirty"
                        .into(),
            });
        }
        if let Err(e) = ctx.writer.check_writable(&nr) {
            return Err(if super::is_permission(&e) {
                Error::Permission { tracker: "damon", path: nr, source: e, hint: NEEDS_ROOT }
            } else {
                io_error(&nr, e)
            });
        }
        std::fs::create_dir_all(&ctx.runtime_dir).map_err(|e| io_error(&ctx.runtime_dir, e))?;
        if !LIVE.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(admin.clone()) {
            return Err(Error::Busy {
                path: admin,
                detail: "this tierd already runs a DAMON tracker here; stop it before opening \
                         another"
                    .into(),
            });
        }
        let mut t = DamonTracker {
            root: ctx.root.clone(),
            writer: Arc::clone(&ctx.writer),
            params: ctx.damon,
            record_path: ctx.runtime_dir.join(RECORD_FILE),
            why: String::new(),
            kdamond: None,
            live: true,
            grew: false,
            inherited: None,
            running: false,
            pids: Vec::new(),
            settle: Vec::new(),
            pending_dropped: Vec::new(),
            window_start: None,
        };
        let recovered = t.recover()?;
        let k = t.claim()?;
        let kernel = super::kernel_release(&ctx.root).unwrap_or_else(|| "unknown".into());
        let p = &t.params;
        let mut why = format!(
            "damon: {} present, kernel {kernel}; kdamond {k}, vaddr, sampling {} us, \
             aggregation {} us, {}-{} regions per process",
            admin.display(),
            p.sample_us,
            p.aggr_us,
            p.min_regions,
            p.max_regions
        );
        for r in recovered {
            why = format!("{why}; removed kdamond {r} left by a previous tierd");
        }
        if let Some(a) = auto_why {
            why = format!("{why}; {a}");
        }
        t.why = why;
        Ok(t)
    }

    /// The kdamond this tracker claimed.
    pub fn kdamond(&self) -> Option<usize> {
        self.kdamond
    }

    fn admin(&self) -> PathBuf {
        admin_dir(&self.root)
    }

    fn kd(&self, k: usize) -> PathBuf {
        self.admin().join(format!("kdamonds/{k}"))
    }

    fn ctx_dir(&self, k: usize) -> PathBuf {
        self.kd(k).join("contexts/0")
    }

    /// Writes a control file, trying again while DAMON's lock is taken (see [`BUSY_TRIES`]):
    /// an `EBUSY` that persists means what the kernel says it means (a kdamond is on).
    fn write(&self, path: &Path, value: &str) -> Result<(), Error> {
        let mut tries = 0;
        let mut res = self.writer.write(path, value);
        while res.as_ref().is_err_and(is_busy) && tries < BUSY_TRIES && self.writer.transient_busy()
        {
            tries += 1;
            std::thread::sleep(BUSY_WAIT);
            res = self.writer.write(path, value);
        }
        res.map_err(|e| {
            if super::is_permission(&e) {
                return Error::Permission {
                    tracker: "damon",
                    path: path.to_path_buf(),
                    source: e,
                    hint: NEEDS_ROOT,
                };
            }
            let hint = match e.raw_os_error() {
                Some(libc::EBUSY) => {
                    "; a kdamond is running (the kernel forbids this change \
                                      while one is on)"
                }
                Some(libc::EINVAL) => {
                    "; the kernel rejected it (a target pid that exited, \
                                       attributes out of range, or a kdamond that is off)"
                }
                Some(libc::ENOENT) => {
                    "; this kernel's DAMON lacks the file (Linux 6.12 has \
                                       it): pick tracker = softdirty"
                }
                _ => "",
            };
            Error::Write {
                tracker: "damon",
                path: path.to_path_buf(),
                value: value.to_string(),
                source: e,
                hint: hint.into(),
            }
        })
    }

    fn nr_kdamonds(&self) -> Result<usize, Error> {
        let path = self.admin().join("kdamonds/nr_kdamonds");
        let n = number(&path)?.ok_or_else(|| Error::Unavailable {
            tracker: "damon",
            path: path.clone(),
            hint: "missing: DAMON's sysfs interface vanished".into(),
        })?;
        usize::try_from(n).map_err(|_| Error::Read(malformed(&path, &n.to_string(), "too many")))
    }

    fn info(&self, k: usize) -> Result<KdamondInfo, Error> {
        let kd = self.kd(k);
        let on = value(&kd.join("state"))?.as_deref() == Some("on");
        let kthread = value(&kd.join("pid"))?.and_then(|t| t.parse().ok());
        let nr_contexts = number(&kd.join("contexts/nr_contexts"))?.unwrap_or(0);
        let marked = nr_contexts == 1 && self.marked(k)?;
        let owner = if marked { self.owner(k)? } else { None };
        Ok(KdamondInfo { on, kthread, nr_contexts, marked, owner })
    }

    /// The pid of the tierd that configured marked kdamond `k`: each scheme's
    /// `watermarks/interval_us`, inert with the `none` metric, carries it.
    fn owner(&self, k: usize) -> Result<Option<u32>, Error> {
        let n = number(&self.ctx_dir(k).join("schemes/0/watermarks/interval_us"))?;
        Ok(n.and_then(|n| u32::try_from(n).ok()).filter(|&p| p != 0))
    }

    /// Whether marked kdamond `k` belongs to another tierd that still runs: its owner is
    /// alive and is not this process. (A reused pid makes tierd refuse rather than take a
    /// live tierd's kdamond; the message names the pid.)
    fn owned_by_live_tierd(&self, info: &KdamondInfo) -> Option<u32> {
        info.owner.filter(|&o| o != std::process::id() && super::pid_alive(&self.root, Pid(o)))
    }

    /// Whether kdamond `k`'s context carries tierd's mark: `vaddr`, at least one scheme,
    /// every scheme `stat` with [`MARK_RESET_INTERVAL_MS`].
    fn marked(&self, k: usize) -> Result<bool, Error> {
        let c = self.ctx_dir(k);
        if value(&c.join("operations"))?.as_deref() != Some("vaddr") {
            return Ok(false);
        }
        let n = number(&c.join("schemes/nr_schemes"))?.unwrap_or(0);
        if n == 0 {
            return Ok(false);
        }
        for i in 0..n {
            let s = c.join(format!("schemes/{i}"));
            if value(&s.join("action"))?.as_deref() != Some("stat")
                || number(&s.join("quotas/reset_interval_ms"))? != Some(MARK_RESET_INTERVAL_MS)
            {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Turns off and empties every kdamond a previous tierd left; returns their indices.
    fn recover(&mut self) -> Result<Vec<usize>, Error> {
        let record = read::optional(&self.record_path)?.and_then(|t| parse_record(&t));
        self.inherited = record.filter(|r| r.grew).map(|r| r.index);
        let mut out = Vec::new();
        for k in 0..self.nr_kdamonds()? {
            let info = self.info(k)?;
            let recorded = record.is_some_and(|r| {
                r.index == k
                    && if info.on {
                        r.kthread.is_some() && r.kthread == info.kthread
                    } else {
                        info.nr_contexts <= 1
                    }
            });
            if !(info.marked || recorded)
                || info.free()
                || self.owned_by_live_tierd(&info).is_some()
            {
                continue;
            }
            if info.on {
                self.turn_off(k)?;
            }
            self.write(&self.kd(k).join("contexts/nr_contexts"), "0")?;
            out.push(k);
        }
        match std::fs::remove_file(&self.record_path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(&self.record_path, e)),
        }
        Ok(out)
    }

    /// Writes `off`, tolerating a kdamond that stopped by itself in the meantime.
    fn turn_off(&self, k: usize) -> Result<(), Error> {
        let state = self.kd(k).join("state");
        match self.write(&state, "off") {
            Err(e) if value(&state)?.as_deref() != Some("off") => Err(e),
            _ => Ok(()),
        }
    }

    /// Claims a free kdamond and sets up its context (steps 1 of the module docs).
    fn claim(&mut self) -> Result<usize, Error> {
        let nr = self.nr_kdamonds()?;
        let mut chosen = None;
        let mut blocker = None;
        for k in 0..nr {
            let info = self.info(k)?;
            if info.free() {
                chosen = Some(k);
                break;
            }
            blocker.get_or_insert((k, info));
        }
        let k = match (chosen, blocker) {
            (Some(k), _) => {
                // A crashed tierd raised nr_kdamonds for this one: lower it again at stop.
                self.grew = self.inherited == Some(k);
                k
            }
            (None, None) => {
                self.write(&self.admin().join("kdamonds/nr_kdamonds"), "1")?;
                self.grew = true;
                0
            }
            (None, Some((k, info))) => {
                let detail = if let Some(o) = self.owned_by_live_tierd(&info) {
                    format!("kdamond {k} belongs to another tierd (pid {o}) that is still running")
                } else if info.on {
                    format!(
                        "kdamond {k} is on (thread {}) and was not started by tierd, and the \
                         kernel will not add a kdamond while one runs",
                        info.kthread.map_or("?".into(), |p| p.to_string())
                    )
                } else {
                    format!(
                        "kdamond {k} is configured by another DAMON user and adding a kdamond \
                         would make the kernel wipe its settings"
                    )
                };
                return Err(Error::Busy { path: self.kd(k), detail });
            }
        };
        self.kdamond = Some(k);
        self.save_record(None)?;
        let contexts = self.kd(k).join("contexts");
        self.write(&contexts.join("nr_contexts"), "1")?;
        let c = self.ctx_dir(k);
        let avail = value(&c.join("avail_operations"))?.unwrap_or_default();
        if !avail.split_whitespace().any(|o| o == "vaddr") {
            return Err(Error::Unavailable {
                tracker: "damon",
                path: c.join("avail_operations"),
                hint: format!(
                    "this kernel's DAMON offers {avail:?} but not vaddr (CONFIG_DAMON_VADDR): \
                     pick tracker = softdirty"
                ),
            });
        }
        self.write(&c.join("operations"), "vaddr")?;
        let p = self.params;
        let a = c.join("monitoring_attrs");
        self.write(&a.join("intervals/sample_us"), &p.sample_us.to_string())?;
        self.write(&a.join("intervals/aggr_us"), &p.aggr_us.to_string())?;
        self.write(&a.join("intervals/update_us"), &p.update_us.to_string())?;
        self.write(&a.join("nr_regions/min"), &p.min_regions.to_string())?;
        self.write(&a.join("nr_regions/max"), &p.max_regions.to_string())?;
        Ok(k)
    }

    fn save_record(&self, kthread: Option<u64>) -> Result<(), Error> {
        let Some(k) = self.kdamond else { return Ok(()) };
        let kt = kthread.map_or("-".into(), |p| p.to_string());
        let grew = u8::from(self.grew);
        std::fs::write(&self.record_path, format!("kdamond={k} kthread={kt} grew={grew}\n"))
            .map_err(|e| io_error(&self.record_path, e))
    }

    /// Writes targets and schemes for `pids` (step 2 of the module docs).
    fn configure(&self, kdamond: usize, pids: &[Pid]) -> Result<(), Error> {
        let c = self.ctx_dir(kdamond);
        let n = pids.len().to_string();
        self.write(&c.join("targets/nr_targets"), &n)?;
        for (i, pid) in pids.iter().enumerate() {
            self.write(&c.join(format!("targets/{i}/pid_target")), &pid.0.to_string())?;
        }
        self.write(&c.join("schemes/nr_schemes"), &n)?;
        for i in 0..pids.len() {
            let s = c.join(format!("schemes/{i}"));
            if !s.join("tried_regions").is_dir() {
                return Err(Error::Unavailable {
                    tracker: "damon",
                    path: s.join("tried_regions"),
                    hint: "this kernel's DAMON cannot report regions (tried_regions came with \
                           Linux 6.2): pick tracker = softdirty"
                        .into(),
                });
            }
            self.write(&s.join("action"), "stat")?;
            let ap = s.join("access_pattern");
            for (what, max) in [
                ("sz", u64::MAX),
                ("nr_accesses", u64::from(u32::MAX)),
                ("age", u64::from(u32::MAX)),
            ] {
                self.write(&ap.join(format!("{what}/min")), "0")?;
                self.write(&ap.join(format!("{what}/max")), &max.to_string())?;
            }
            self.write(&s.join("quotas/ms"), "0")?;
            self.write(&s.join("quotas/bytes"), "0")?;
            self.write(&s.join("quotas/reset_interval_ms"), &MARK_RESET_INTERVAL_MS.to_string())?;
            self.write(&s.join("watermarks/metric"), "none")?;
            self.write(&s.join("watermarks/interval_us"), &std::process::id().to_string())?;
            if pids.len() > 1 {
                self.write(&s.join("filters/nr_filters"), "1")?;
                let f = s.join("filters/0");
                if !f.join("damon_target_idx").is_file() {
                    return Err(Error::Unavailable {
                        tracker: "damon",
                        path: f.join("damon_target_idx"),
                        hint: "this kernel's DAMON has no `target` filters, needed to track \
                               several processes with one kdamond (Linux 6.12 has them): \
                               track one process, or pick tracker = softdirty"
                            .into(),
                    });
                }
                self.write(&f.join("type"), "target")?;
                self.write(&f.join("damon_target_idx"), &i.to_string())?;
                self.write(&f.join("matching"), "N")?;
            } else {
                self.write(&s.join("filters/nr_filters"), "0")?;
            }
        }
        Ok(())
    }

    /// Configures the alive subset of `want` and turns the kdamond on (or commits). A pid
    /// that exits between the check and the kernel's lookup makes `on`/`commit` fail with
    /// `EINVAL`; the tracker then drops it and tries once more.
    fn apply(&mut self, want: &[Pid]) -> Result<(), Error> {
        let Some(k) = self.kdamond else { return Ok(()) };
        for attempt in 0..2 {
            let (alive, gone): (Vec<Pid>, Vec<Pid>) =
                want.iter().partition(|&&p| super::pid_alive(&self.root, p));
            for g in gone {
                if !self.pending_dropped.contains(&g) && self.pids.contains(&g) {
                    self.pending_dropped.push(g);
                }
            }
            let before = std::mem::replace(&mut self.pids, alive.clone());
            if alive.is_empty() {
                self.settle.clear();
                if self.running {
                    self.turn_off(k)?;
                    self.running = false;
                }
                return Ok(());
            }
            self.configure(k, &alive)?;
            let state = self.kd(k).join("state");
            let cmd = if self.running { "commit" } else { "on" };
            match self.write(&state, cmd) {
                Ok(()) => {
                    self.settle_after(cmd, &before, &alive);
                    if !self.running {
                        self.running = true;
                        let kthread = number(&self.kd(k).join("pid")).ok().flatten();
                        self.save_record(kthread)?;
                    }
                    return Ok(());
                }
                Err(Error::Write { ref source, .. })
                    if attempt == 0 && source.raw_os_error() == Some(libc::EINVAL) =>
                {
                    // The kdamond may have stopped on its own (every target exited).
                    self.running = value(&state)?.as_deref() == Some("on");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Updates [`DamonTracker::settle`] after `cmd` set the targets from `before` to `now`.
    fn settle_after(&mut self, cmd: &str, before: &[Pid], now: &[Pid]) {
        if cmd == "on" {
            self.settle = vec![None; now.len()];
            return;
        }
        let p = self.params;
        let wait = p.update_us.saturating_add(p.aggr_us.saturating_mul(2));
        let until = Instant::now() + Duration::from_micros(wait);
        self.settle = now
            .iter()
            .enumerate()
            .map(|(i, pid)| {
                if before.get(i) == Some(pid) {
                    self.settle.get(i).copied().flatten()
                } else {
                    Some(until)
                }
            })
            .collect();
    }

    /// Reads the tried regions of every scheme, as regions of its pid, clipped to the pid's
    /// anonymous private writable mappings. Returns how many regions the kernel listed
    /// before clipping and how many targets were read (not settling, alive).
    fn read_all_tried(&self, k: usize, out: &mut Vec<Region>) -> Result<(usize, usize), Error> {
        let mut raw = Vec::new();
        let mut listed = 0;
        let mut read = 0;
        let now = Instant::now();
        for (i, &pid) in self.pids.iter().enumerate() {
            if self.settle.get(i).copied().flatten().is_some_and(|t| now < t) {
                continue;
            }
            raw.clear();
            self.tried_regions(k, i, pid, &mut raw)?;
            listed += raw.len();
            if let Some(vmas) = super::pagemap::read_anon_vmas(&self.root, pid)? {
                read += 1;
                clip(&raw, &vmas, out);
            }
        }
        Ok((listed, read))
    }

    /// Reads `tried_regions` of scheme `i` as regions of `pid`.
    fn tried_regions(
        &self,
        k: usize,
        i: usize,
        pid: Pid,
        out: &mut Vec<Region>,
    ) -> Result<(), Error> {
        let dir = self.ctx_dir(k).join(format!("schemes/{i}/tried_regions"));
        let mut idx: Vec<u64> = match std::fs::read_dir(&dir) {
            Ok(rd) => rd
                .filter_map(Result::ok)
                .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
                .collect(),
            Err(e) if read::is_gone(&e) => return Ok(()),
            Err(e) => return Err(io_error(&dir, e)),
        };
        idx.sort_unstable();
        for j in idx {
            let r = dir.join(j.to_string());
            let num = |f: &str| -> Result<Option<u64>, Error> { number(&r.join(f)) };
            let (Some(start), Some(end), Some(acc), Some(age)) =
                (num("start")?, num("end")?, num("nr_accesses")?, num("age")?)
            else {
                continue; // cleared while we read: absent, not zero
            };
            let small = |v: u64, f: &str| {
                u32::try_from(v).map_err(|_| {
                    Error::Read(malformed(&r.join(f), &v.to_string(), "above 32 bits"))
                })
            };
            out.push(Region {
                pid,
                start,
                end,
                accesses: small(acc, "nr_accesses")?,
                age: small(age, "age")?,
            });
        }
        Ok(())
    }
}

impl Tracker for DamonTracker {
    fn name(&self) -> &'static str {
        "damon"
    }

    fn why(&self) -> &str {
        &self.why
    }

    fn set_pids(&mut self, pids: &[Pid]) -> Result<(), Error> {
        let want = unique(pids);
        if want == self.pids && self.running {
            return Ok(());
        }
        for p in &want {
            if !super::pid_alive(&self.root, *p) && !self.pending_dropped.contains(p) {
                self.pending_dropped.push(*p);
            }
        }
        self.apply(&want)?;
        self.window_start.get_or_insert_with(Instant::now);
        Ok(())
    }

    fn sample(&mut self) -> Result<Sample, Error> {
        let t0 = Instant::now();
        let mut s = Sample { max_accesses: self.params.max_accesses(), ..Sample::default() };
        s.window = self.window_start.map(|w| t0 - w).unwrap_or_default();
        let Some(k) = self.kdamond else {
            s.dropped = std::mem::take(&mut self.pending_dropped);
            return Ok(s);
        };
        let state = self.kd(k).join("state");
        if self.running && value(&state)?.as_deref() != Some("on") {
            // Every target exited (the kernel stopped the kdamond), or someone turned it off.
            self.running = false;
            let want = self.pids.clone();
            self.apply(&want)?;
        }
        if self.running {
            match self.write(&state, "update_schemes_tried_regions") {
                Ok(()) => {}
                Err(Error::Write { ref source, .. })
                    if source.raw_os_error() == Some(libc::EINVAL) =>
                {
                    // Stopped between the check and the command: the pids are gone.
                    self.running = value(&state)?.as_deref() == Some("on");
                }
                Err(e) => return Err(e),
            }
        }
        if self.running {
            let (listed, read) = self.read_all_tried(k, &mut s.regions)?;
            if listed == 0 && read > 0 {
                // A live vaddr target always has regions: the kernel has not filled them yet
                // (6.12 answers the command after the regions are in, taking about two
                // aggregation intervals, but do not rely on it). Wait and read again.
                std::thread::sleep(Duration::from_micros(self.params.aggr_us.saturating_mul(2)));
                self.read_all_tried(k, &mut s.regions)?;
            }
            let _ = self.writer.write(&state, "clear_schemes_tried_regions");
        }
        let gone: Vec<Pid> =
            self.pids.iter().copied().filter(|&p| !super::pid_alive(&self.root, p)).collect();
        if !gone.is_empty() {
            s.regions.retain(|r| !gone.contains(&r.pid));
            s.dropped.extend(&gone);
            let want: Vec<Pid> = self.pids.iter().copied().filter(|p| !gone.contains(p)).collect();
            self.apply(&want)?;
        }
        s.dropped.append(&mut self.pending_dropped);
        s.dropped.sort_unstable();
        s.dropped.dedup();
        self.window_start = Some(Instant::now());
        s.covered_bytes = s.regions.iter().map(Region::len).sum();
        s.took = t0.elapsed();
        Ok(s)
    }

    fn stop(&mut self) -> Result<(), Error> {
        if std::mem::take(&mut self.live) {
            LIVE.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&self.admin());
        }
        let Some(k) = self.kdamond else { return Ok(()) };
        if value(&self.kd(k).join("state"))?.as_deref() == Some("on") {
            self.turn_off(k)?;
        }
        self.running = false;
        self.write(&self.kd(k).join("contexts/nr_contexts"), "0")?;
        if self.grew {
            let nr = self.nr_kdamonds()?;
            let mut others_free = true;
            for j in (0..nr).filter(|&j| j != k) {
                others_free &= self.info(j)?.free();
            }
            if k + 1 == nr && others_free {
                self.write(&self.admin().join("kdamonds/nr_kdamonds"), &k.to_string())?;
            }
        }
        self.kdamond = None;
        self.pids.clear();
        match std::fs::remove_file(&self.record_path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error(&self.record_path, e)),
        }
    }
}

/// Appends the parts of `regions` that lie in `vmas`. DAMON's `vaddr` regions cover whole
/// stretches of the address space, gaps, file mappings and stacks of other threads
/// included; the other trackers and the mover only deal in anonymous private memory, so
/// regions are cut to it. Both inputs are in address order.
fn clip(regions: &[Region], vmas: &[super::pagemap::Vma], out: &mut Vec<Region>) {
    let mut first = 0;
    for r in regions {
        while first < vmas.len() && vmas[first].end <= r.start {
            first += 1;
        }
        for v in vmas[first..].iter().take_while(|v| v.start < r.end) {
            let (start, end) = (r.start.max(v.start), r.end.min(v.end));
            if start < end {
                out.push(Region { start, end, ..*r });
            }
        }
    }
}

#[cfg(test)]
impl DamonTracker {
    /// What a killed tierd leaves: its kdamond and record, without `stop` or `Drop`.
    fn simulate_crash(self) {
        LIVE.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&self.admin());
        std::mem::forget(self);
    }
}

impl Drop for DamonTracker {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::super::fake::{FakeHost, FakeRegion};
    use super::*;

    const KD: &str = "sys/kernel/mm/damon/admin/kdamonds";

    fn region(start: u64, pages: u64, nr_accesses: u32, age: u32) -> FakeRegion {
        FakeRegion { start, end: start + pages * 4096, nr_accesses, age }
    }

    /// A host with DAMON and processes 100 and 200, each with two regions.
    fn host() -> FakeHost {
        let h = FakeHost::new();
        h.with_damon();
        h.process(Pid(100)).maps("10000000-10006000 rw-p 00000000 00:00 0 ").write();
        h.process(Pid(200))
            .maps("10000000-10008000 rw-p 00000000 00:00 0 [heap]")
            .maps("70000000-70001000 rw-p 00000000 00:00 0 ")
            .write();
        h.damon_regions(Pid(100), &[region(0x1000_0000, 4, 0, 7), region(0x1000_4000, 2, 20, 1)]);
        h.damon_regions(Pid(200), &[region(0x1000_0000, 8, 3, 2), region(0x7000_0000, 1, 0, 0)]);
        h
    }

    fn open(h: &FakeHost) -> Result<DamonTracker, Error> {
        DamonTracker::open(&h.context(), None)
    }

    fn spans(s: &Sample) -> Vec<(u32, u64, u64, u32, u32)> {
        s.regions.iter().map(|r| (r.pid.0, r.start, r.end, r.accesses, r.age)).collect()
    }

    #[test]
    fn drives_one_kdamond_with_one_target_and_one_filtered_scheme_per_pid() {
        let h = host();
        let mut t = open(&h).unwrap();
        assert_eq!(t.kdamond(), Some(0));
        assert!(t.why().starts_with("damon: "), "{}", t.why());
        assert!(t.why().contains("kernel 6.12.0-fake"), "{}", t.why());
        t.set_pids(&[Pid(200), Pid(100)]).unwrap();
        let ctx = format!("{KD}/0/contexts/0");
        assert_eq!(h.read(&format!("{KD}/0/state")), "on\n");
        assert_eq!(h.read(&format!("{ctx}/operations")), "vaddr\n");
        assert_eq!(h.read(&format!("{ctx}/monitoring_attrs/intervals/aggr_us")), "100000\n");
        assert_eq!(h.read(&format!("{ctx}/monitoring_attrs/nr_regions/min")), "10\n");
        assert_eq!(h.read(&format!("{ctx}/targets/nr_targets")), "2\n");
        assert_eq!(h.read(&format!("{ctx}/targets/0/pid_target")), "100\n");
        assert_eq!(h.read(&format!("{ctx}/targets/1/pid_target")), "200\n");
        assert_eq!(h.read(&format!("{ctx}/schemes/1/action")), "stat\n");
        assert_eq!(h.read(&format!("{ctx}/schemes/1/filters/0/type")), "target\n");
        assert_eq!(h.read(&format!("{ctx}/schemes/1/filters/0/damon_target_idx")), "1\n");
        assert_eq!(h.read(&format!("{ctx}/schemes/1/filters/0/matching")), "N\n");
        assert_eq!(h.read("run/damon-kdamond"), "kdamond=0 kthread=901 grew=1\n");

        // The order of the protocol: create, configure, then turn on.
        let writes = h.writes();
        assert_eq!(writes[0], (format!("{KD}/nr_kdamonds"), "1".into()));
        assert_eq!(writes[1], (format!("{KD}/0/contexts/nr_contexts"), "1".into()));
        assert_eq!(writes.last().unwrap(), &(format!("{KD}/0/state"), "on".into()));

        let s = t.sample().unwrap();
        assert_eq!(
            spans(&s),
            [
                (100, 0x1000_0000, 0x1000_4000, 0, 7),
                (100, 0x1000_4000, 0x1000_6000, 20, 1),
                (200, 0x1000_0000, 0x1000_8000, 3, 2),
                (200, 0x7000_0000, 0x7000_1000, 0, 0),
            ],
            "each pid gets exactly its own regions"
        );
        assert_eq!(s.max_accesses, 20);
        assert_eq!(s.covered_bytes, 15 * 4096);
        assert!(s.dropped.is_empty());
        assert!(
            h.writes().ends_with(&[
                (format!("{KD}/0/state"), "update_schemes_tried_regions".into()),
                (format!("{KD}/0/state"), "clear_schemes_tried_regions".into()),
            ]),
            "{:?}",
            h.writes()
        );
    }

    #[test]
    fn regions_are_cut_to_anonymous_private_writable_mappings() {
        let h = FakeHost::new();
        h.with_damon();
        h.process(Pid(9))
            .maps("10000000-10002000 rw-p 00000000 00:00 0 ")
            .maps("10002000-10003000 r--p 00000000 08:01 5 /usr/lib/x.so")
            .maps("10003000-10004000 rw-p 00000000 00:00 0 ")
            .maps("20000000-20001000 rw-p 00000000 00:00 0 [stack]")
            .write();
        // One region over both anonymous mappings and the file between them, one over a gap.
        h.damon_regions(Pid(9), &[region(0x0fff_f000, 6, 4, 1), region(0x1800_0000, 16, 0, 9)]);
        let mut t = open(&h).unwrap();
        t.set_pids(&[Pid(9)]).unwrap();
        let s = t.sample().unwrap();
        assert_eq!(
            spans(&s),
            [(9, 0x1000_0000, 0x1000_2000, 4, 1), (9, 0x1000_3000, 0x1000_4000, 4, 1)]
        );
    }

    #[test]
    fn a_pid_moved_to_another_target_index_is_left_out_until_damon_updates_it() {
        let h = host();
        h.process(Pid(50)).maps("10000000-10006000 rw-p 00000000 00:00 0 ").write();
        h.damon_regions(Pid(50), &[region(0x1000_0000, 1, 0, 0)]);
        let mut ctx = h.context();
        ctx.damon.update_us = 30_000;
        ctx.damon.aggr_us = 10_000;
        ctx.damon.sample_us = 1_000;
        let mut t = DamonTracker::open(&ctx, None).unwrap();
        t.set_pids(&[Pid(50), Pid(100), Pid(200)]).unwrap();
        h.exit(Pid(50));
        // 100 and 200 move from indices 1, 2 to 0, 1: the kernel keeps 50's regions at 0.
        let s = t.sample().unwrap();
        assert_eq!(s.dropped, [Pid(50)]);
        let s = t.sample().unwrap();
        assert!(s.regions.is_empty(), "moved pids are absent while settling: {:?}", spans(&s));
        std::thread::sleep(Duration::from_millis(60));
        let s = t.sample().unwrap();
        assert_eq!(s.regions.len(), 4, "then measured again: {:?}", spans(&s));
        // Adding a pid at the end moves nobody.
        h.process(Pid(300)).maps("10000000-10001000 rw-p 00000000 00:00 0 ").write();
        h.damon_regions(Pid(300), &[region(0x1000_0000, 1, 5, 0)]);
        t.set_pids(&[Pid(100), Pid(200), Pid(300)]).unwrap();
        let s = t.sample().unwrap();
        assert_eq!(s.regions.iter().filter(|r| r.pid != Pid(300)).count(), 4, "{:?}", spans(&s));
        assert!(s.regions.iter().all(|r| r.pid != Pid(300)), "the new pid settles first");
    }

    #[test]
    fn one_pid_needs_no_filter() {
        let h = host();
        let mut t = open(&h).unwrap();
        t.set_pids(&[Pid(100)]).unwrap();
        assert_eq!(h.read(&format!("{KD}/0/contexts/0/schemes/0/filters/nr_filters")), "0\n");
        assert_eq!(t.sample().unwrap().regions.len(), 2);
    }

    #[test]
    fn stop_and_drop_remove_everything_tierd_created() {
        let h = host();
        let mut t = open(&h).unwrap();
        t.set_pids(&[Pid(100)]).unwrap();
        t.stop().unwrap();
        assert_eq!(h.read(&format!("{KD}/nr_kdamonds")), "0\n");
        assert_eq!(h.read("run/damon-kdamond"), "");
        t.stop().unwrap();
        let mut t = open(&h).unwrap();
        t.set_pids(&[Pid(100)]).unwrap();
        drop(t);
        assert_eq!(h.read(&format!("{KD}/nr_kdamonds")), "0\n");
    }

    #[test]
    fn another_users_running_kdamond_is_left_alone() {
        let h = host();
        h.other_user_kdamond(Pid(100));
        let before = h.writes().len();
        let err = open(&h).unwrap_err();
        assert!(matches!(err, Error::Busy { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("kdamond 0 is on") && msg.contains("pick tracker = softdirty"),
            "{msg}"
        );
        assert_eq!(h.writes().len(), before, "tierd wrote nothing");
        assert_eq!(h.read(&format!("{KD}/0/state")), "on\n");
    }

    #[test]
    fn a_free_kdamond_is_used_without_touching_nr_kdamonds_or_the_others() {
        let h = host();
        h.echo(&format!("{KD}/nr_kdamonds"), "2").unwrap();
        h.echo(&format!("{KD}/0/contexts/nr_contexts"), "1").unwrap();
        h.echo(&format!("{KD}/0/contexts/0/targets/nr_targets"), "1").unwrap();
        h.echo(&format!("{KD}/0/contexts/0/targets/0/pid_target"), "200").unwrap();
        h.echo(&format!("{KD}/0/state"), "on").unwrap();
        let before = h.writes().len();
        let mut t = open(&h).unwrap();
        assert_eq!(t.kdamond(), Some(1));
        t.set_pids(&[Pid(100)]).unwrap();
        assert_eq!(t.sample().unwrap().regions.len(), 2);
        t.stop().unwrap();
        let ours = &h.writes()[before..];
        assert!(ours.iter().all(|(p, _)| p.starts_with(&format!("{KD}/1/"))), "{ours:?}");
        assert_eq!(h.read(&format!("{KD}/nr_kdamonds")), "2\n");
        assert_eq!(h.read(&format!("{KD}/0/state")), "on\n");
    }

    #[test]
    fn a_configured_but_stopped_kdamond_of_someone_else_is_not_wiped() {
        let h = host();
        h.echo(&format!("{KD}/nr_kdamonds"), "1").unwrap();
        h.echo(&format!("{KD}/0/contexts/nr_contexts"), "1").unwrap();
        let err = open(&h).unwrap_err();
        assert!(err.to_string().contains("wipe its settings"), "{err}");
        assert_eq!(h.read(&format!("{KD}/0/contexts/nr_contexts")), "1\n");
    }

    #[test]
    fn a_kdamond_left_by_a_crashed_tierd_is_removed_at_start() {
        let h = host();
        let mut t = open(&h).unwrap();
        t.set_pids(&[Pid(100), Pid(200)]).unwrap();
        t.simulate_crash();
        assert_eq!(h.read(&format!("{KD}/0/state")), "on\n");
        let t2 = open(&h).unwrap();
        assert!(t2.why().contains("removed kdamond 0 left by a previous tierd"), "{}", t2.why());
        assert_eq!(t2.kdamond(), Some(0));
        assert_eq!(h.read(&format!("{KD}/0/state")), "off\n");
        assert_eq!(h.read("run/damon-kdamond"), "kdamond=0 kthread=- grew=1\n");
        drop(t2);
        assert_eq!(h.read(&format!("{KD}/nr_kdamonds")), "0\n", "the crashed one's growth undone");
    }

    #[test]
    fn without_the_record_tierds_kdamond_is_recognised_by_its_mark() {
        let h = host();
        let mut t = open(&h).unwrap();
        t.set_pids(&[Pid(100)]).unwrap();
        t.simulate_crash();
        std::fs::remove_file(h.path().join("run/damon-kdamond")).unwrap();
        let t2 = open(&h).unwrap();
        assert!(t2.why().contains("removed kdamond 0"), "{}", t2.why());
    }

    #[test]
    fn a_kdamond_of_another_tierd_that_still_runs_is_left_alone() {
        let h = host();
        let mut t = open(&h).unwrap();
        t.set_pids(&[Pid(100)]).unwrap();
        t.simulate_crash();
        // As if another tierd, pid 4242 and alive, had written it.
        h.write(&format!("{KD}/0/contexts/0/schemes/0/watermarks/interval_us"), "4242\n");
        h.process(Pid(4242)).maps("").write();
        let err = open(&h).unwrap_err();
        assert!(
            err.to_string().contains("another tierd (pid 4242) that is still running"),
            "{err}"
        );
        assert_eq!(h.read(&format!("{KD}/0/state")), "on\n");
        // Once that tierd is gone, its kdamond is a crashed tierd's.
        h.exit(Pid(4242));
        let t = open(&h).unwrap();
        assert!(t.why().contains("removed kdamond 0"), "{}", t.why());
    }

    #[test]
    fn a_record_does_not_make_another_users_kdamond_ours() {
        let h = host();
        // A stale record (say from before a reboot) names kdamond 0, now someone else's.
        h.write("run/damon-kdamond", "kdamond=0 kthread=4242\n");
        h.other_user_kdamond(Pid(200));
        assert!(matches!(open(&h), Err(Error::Busy { .. })));
        assert_eq!(h.read(&format!("{KD}/0/state")), "on\n");
    }

    #[test]
    fn an_exited_pid_is_dropped_and_the_others_recommitted() {
        let h = host();
        let mut t = open(&h).unwrap();
        t.set_pids(&[Pid(100), Pid(200)]).unwrap();
        h.exit(Pid(200));
        let s = t.sample().unwrap();
        assert_eq!(s.dropped, [Pid(200)]);
        assert!(s.regions.iter().all(|r| r.pid == Pid(100)) && !s.regions.is_empty());
        assert_eq!(h.read(&format!("{KD}/0/contexts/0/targets/nr_targets")), "1\n");
        assert_eq!(h.writes().last().unwrap(), &(format!("{KD}/0/state"), "commit".into()));
        let s = t.sample().unwrap();
        assert!(s.dropped.is_empty());
        assert_eq!(s.regions.len(), 2);
    }

    #[test]
    fn when_every_target_exits_the_kdamond_stops_and_new_pids_restart_it() {
        let h = host();
        let mut t = open(&h).unwrap();
        t.set_pids(&[Pid(100)]).unwrap();
        h.exit(Pid(100));
        assert_eq!(h.read(&format!("{KD}/0/state")), "off\n", "the kernel stopped it");
        let s = t.sample().unwrap();
        assert_eq!(s.dropped, [Pid(100)]);
        assert!(s.regions.is_empty());
        t.set_pids(&[Pid(200), Pid(300)]).unwrap();
        assert_eq!(h.read(&format!("{KD}/0/state")), "on\n");
        assert_eq!(h.read(&format!("{KD}/0/contexts/0/targets/nr_targets")), "1\n");
        let s = t.sample().unwrap();
        assert_eq!(s.dropped, [Pid(300)], "a pid that never existed is dropped, not an error");
        assert_eq!(s.regions.len(), 2);
    }

    #[test]
    fn bad_attributes_are_the_kernels_einval_with_the_path() {
        let h = host();
        let mut ctx = h.context();
        ctx.damon.min_regions = 1;
        let mut t = DamonTracker::open(&ctx, None).unwrap();
        let err = t.set_pids(&[Pid(100)]).unwrap_err();
        assert!(err.path().ends_with("kdamonds/0/state"), "{err}");
        assert!(err.to_string().contains("attributes out of range"), "{err}");
    }

    #[test]
    fn not_root_says_what_to_do() {
        let h = host();
        h.deny(&format!("{KD}/nr_kdamonds"));
        let err = open(&h).unwrap_err();
        assert!(matches!(err, Error::Permission { .. }), "{err:?}");
        assert!(
            err.to_string()
                .contains("DAMON needs root: run tierd as root or pick tracker = softdirty"),
            "{err}"
        );
    }

    #[test]
    fn no_damon_sysfs_is_unavailable() {
        let h = FakeHost::new();
        let err = open(&h).unwrap_err();
        assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
        assert!(err.to_string().contains("CONFIG_DAMON_SYSFS"), "{err}");
    }

    #[test]
    fn a_second_tracker_over_the_same_damon_is_refused_until_the_first_stops() {
        let h = host();
        let mut t = open(&h).unwrap();
        t.set_pids(&[Pid(100)]).unwrap();
        let err = open(&h).unwrap_err();
        assert!(err.to_string().contains("already runs a DAMON tracker"), "{err}");
        assert_eq!(h.read(&format!("{KD}/0/state")), "on\n", "the first one is untouched");
        drop(t);
        open(&h).unwrap();
    }

    #[test]
    fn records_parse() {
        assert_eq!(
            parse_record("kdamond=2 kthread=77\n"),
            Some(Record { index: 2, kthread: Some(77), grew: false })
        );
        assert_eq!(
            parse_record("kdamond=0 kthread=-\n"),
            Some(Record { index: 0, kthread: None, grew: false })
        );
        assert_eq!(
            parse_record("kdamond=1 kthread=5 grew=1\n"),
            Some(Record { index: 1, kthread: Some(5), grew: true })
        );
        assert_eq!(parse_record("garbage"), None);
    }
}
