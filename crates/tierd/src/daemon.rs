//! `tierd run`: the tiering daemon.
//!
//! Every `interval_ms` it lists the processes in scope, takes the access tracker's last
//! window, re-reads each node's free memory and watermarks, and runs one tick of the shared
//! policy (`tierd_core::policy::Tierd`, the code the simulator runs): nodes short of their
//! headroom have their coldest pages moved one step down the migration path (fallbacks when
//! the target is full; never swapped or dropped by tierd), and pages of lower tiers that
//! turned hot come back up within the promotion rate limit and the ping-pong guard.
//!
//! Under the loop, the backstop: the kernel's own demotion, switched on while tierd runs, so
//! that reclaim demotes instead of swapping whenever the loop falls behind (a busy or slow
//! host); nodes it can fill that no migration path reaches are drained onto the paths
//! (placement repair, `tierd_core::backstop`). The daemon also gives itself the priority of
//! a latency-critical system daemon (nice, locked memory, OOM score).
//!
//! The loop itself is `step::Daemon` over a host, one type for both commands:
//! `linux::LinuxHost` here, `sim::SimHost` under `tierd run --sim`. This file sets each
//! up and tears it down.
//!
//! Around the loop: the state file and its lock (the path table, shared with `tierd path`
//! and the FUSE tree), the control socket (`tierd path ...`, `tierd status`), the metrics
//! endpoint, an optional FUSE tree, the kernel's tiering promotion (warned about, or taken
//! over),
//! and signals: SIGHUP reloads the config (an invalid one keeps the old, logged once),
//! SIGTERM/SIGINT/SIGQUIT stop cleanly (tracker torn down, FUSE unmounted, kernel settings
//! put back).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use serde::{Deserialize, Serialize};
use tierd_core::policy::{PolicyConfig, Tierd};
use tierd_core::{NodeId, PathGraph, Topology};
use tierd_linux::backend::LinuxBackend;
use tierd_linux::mover::{Mover, MoverLimits, SysMover};
use tierd_linux::scope::Selection;
use tierd_linux::tracker::{self, Pid, Tracker, TrackerContext, TrackerKind};
use tierd_linux::{SysRoot, kernel};

use crate::config::{Backstop, Config, DaemonConfig, PathsSource};
use crate::control;
use crate::metrics::{self, BackstopLabel, Metrics};
use crate::paths::Paths;
use crate::state::StateFile;

mod linux;
mod sim;
mod step;

use linux::LinuxHost;
use sim::SimHost;
use step::{Daemon, Parts};

/// What `tierd status` shows. Field names are stable (`tierd status --json`); the CLI reads
/// the daemon's report back into this type, so a field the two disagree on is an error, not
/// a zero.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Status {
    /// The daemon's pid.
    pub pid: u32,
    /// The config file.
    pub config: PathBuf,
    /// Seconds since start.
    pub uptime_s: u64,
    /// The access tracker in use.
    pub tracker: String,
    /// Why that tracker (and what was missing for the better ones).
    pub tracker_why: String,
    /// What moves pages: `"move_pages"` on a host, `"simulator"` under `run --sim`.
    #[serde(default)]
    pub mover: String,
    /// Which kinds of memory that mover covers, and what happens to the rest.
    #[serde(default)]
    pub mover_why: String,
    /// What keeps reclaim from swapping when tierd falls behind: `"kernel-demotion"` or
    /// `"none"`.
    pub backstop: String,
    /// Why, and how it relates to the migration paths (placement repair).
    pub backstop_why: String,
    /// Kernel settings that move pages behind tierd's back, one sentence each.
    pub conflicts: Vec<String>,
    /// Whether tierd switched the kernel's own tiering promotion (or, with the backstop off,
    /// its demotion) off (`take_over`).
    pub took_over: bool,
    /// The priority tierd gave itself (nice, memory lock, OOM score).
    pub priority: String,
    /// Processes in scope.
    pub processes: usize,
    /// Per node: memory and the headroom tierd keeps.
    pub nodes: Vec<NodeStatus>,
    /// Pages moved per edge since start, `"0->1"`.
    pub moved_pages: BTreeMap<String, u64>,
    /// Per-page failures since start, by errno name.
    pub failures: BTreeMap<String, u64>,
    /// Pages left in place because every target was full, since start.
    pub no_room_pages: u64,
    /// Loops run.
    pub loops: u64,
    /// The last loop's duration, milliseconds.
    pub last_loop_ms: f64,
    /// The last problem worth knowing, if any.
    pub last_error: Option<String>,
    /// Memory the tracker covered in its last window, MiB.
    pub tracked_mib: u64,
    /// tierd's CPU time per GiB of tracked memory per minute, milliseconds (since start).
    pub cpu_ms_per_gib_minute: Option<f64>,
}

/// tierd's own CPU time, user and system.
fn cpu_time() -> Duration {
    use nix::sys::resource::{UsageWho, getrusage};
    getrusage(UsageWho::RUSAGE_SELF).map_or(Duration::ZERO, |u| {
        let tv = |t: nix::sys::time::TimeVal| {
            Duration::new(u64::try_from(t.tv_sec()).unwrap_or(0), 0)
                + Duration::from_micros(u64::try_from(t.tv_usec()).unwrap_or(0))
        };
        tv(u.user_time()) + tv(u.system_time())
    })
}

/// CPU time per GiB of tracked memory per minute: CPU spent divided by GiB-minutes tracked.
#[derive(Debug, Default)]
struct CpuCost {
    gib_minutes: f64,
    last: Option<(Instant, Duration)>,
    start_cpu: Option<Duration>,
}

impl CpuCost {
    /// Adds one loop that tracked `bytes`; returns ms of CPU per GiB-minute so far.
    fn add(&mut self, bytes: u64) -> Option<f64> {
        let now = (Instant::now(), cpu_time());
        let start_cpu = *self.start_cpu.get_or_insert(now.1);
        if let Some((t, _)) = self.last {
            #[allow(clippy::cast_precision_loss)] // a figure for people
            let gib = bytes as f64 / f64::from(1u32 << 30);
            self.gib_minutes += gib * now.0.duration_since(t).as_secs_f64() / 60.0;
        }
        self.last = Some(now);
        (self.gib_minutes > 0.0)
            .then(|| now.1.saturating_sub(start_cpu).as_secs_f64() * 1e3 / self.gib_minutes)
    }
}

/// One node in [`Status`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeStatus {
    /// The node.
    pub node: u32,
    /// Total memory, MiB.
    pub total_mib: u64,
    /// Free memory, MiB.
    pub free_mib: u64,
    /// Headroom tierd keeps, percent (only nodes with a target).
    pub headroom_pct: Option<f64>,
    /// Where its cold pages go.
    pub target: Option<u32>,
}

/// The `/proc/vmstat` counters of pages the kernel moved between nodes itself.
const KERNEL_MOVES: &[&str] =
    &["pgdemote_kswapd", "pgdemote_direct", "pgdemote_khugepaged", "pgpromote_success"];

/// Loops after the kernel last moved pages itself during which tierd's moves query placement
/// first (see `LinuxBackend::set_kernel_moving`).
const KERNEL_MOVING_LOOPS: u32 = 8;

/// How long a process must have lived before the tracker watches it.
const MIN_PROCESS_AGE: Duration = Duration::from_secs(1);

/// Options of `tierd run` beyond the config file.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The config file.
    pub config: PathBuf,
    /// `--take-over` (or the config's `take_over`).
    pub take_over: bool,
    /// The sysfs/procfs roots.
    pub root: SysRoot,
    /// The global `--state`: replaces the config's `[paths] state`, on reloads too.
    pub state: Option<PathBuf>,
    /// The global `--socket`: replaces the config's `[daemon] socket`, on reloads too.
    pub socket: Option<PathBuf>,
}

impl RunOptions {
    /// The config file as this run uses it: `path` (the options' config, or none for the
    /// defaults) with the command line's `--state` and `--socket` in place of its own.
    fn config(&self, path: Option<&Path>) -> Result<Config> {
        let mut c = match path {
            Some(p) => Config::load(p)?,
            None => Config::default(),
        };
        if let Some(s) = &self.state {
            c.paths.state.clone_from(s);
        }
        if let Some(s) = &self.socket {
            c.daemon.socket.clone_from(s);
        }
        Ok(c)
    }
}

/// The policy's parameters from the daemon config.
pub fn policy_config(c: &Config) -> PolicyConfig {
    let mib = |v: u64| if v == 0 { u64::MAX / (1 << 20) } else { v };
    PolicyConfig {
        interval_ms: c.daemon.interval_ms,
        headroom_pct: c.headroom.default_pct,
        node_headroom_pct: c.headroom.node.clone(),
        demote_mib_per_s: mib(c.mover.max_mib_per_s),
        promote: c.promotion.enabled,
        promote_mib_per_s: mib(c.promotion.max_mib_per_s),
        promote_min_heat: c.promotion.min_heat,
        pingpong_ms: c.promotion.min_residence_ms,
        // Not yet on the host: filling needs trackers whose low heats the test bed has
        // validated; the daemon promotes only pages at `min_heat` and above.
        fill: false,
        // The host keeps its configured headroom always: kernel allocations (slab, page
        // tables) come without a program's fault pattern, and the test bed validates this.
        quiet_ms: 0,
        ..PolicyConfig::default()
    }
}

fn selection(c: &Config) -> Result<Selection> {
    Ok(if let Some(cg) = &c.scope.cgroup {
        Selection::Cgroup(cg.clone())
    } else if let Some(pids) = &c.scope.pids {
        Selection::Pids(pids.clone())
    } else if let Some(re) = &c.scope.comm {
        Selection::Comm(regex::Regex::new(re).context("scope.comm")?)
    } else {
        Selection::All
    })
}

fn mover_limits(c: &Config, page_size: u64) -> MoverLimits {
    MoverLimits {
        pages_per_call: c.mover.pages_per_call,
        max_call: Duration::from_millis(c.mover.max_call_ms),
        bytes_per_sec: (c.mover.max_mib_per_s > 0).then_some(c.mover.max_mib_per_s << 20),
        page_size,
    }
}

/// Sets the table up from `[paths] source` at start and on reload.
fn seed_paths(c: &Config, topology: &Topology, paths: &Paths, at_start: bool) -> Result<()> {
    match &c.paths.source {
        PathsSource::State => Ok(()),
        PathsSource::Auto => {
            if at_start && !paths.state().path().exists() {
                let graph = tierd_core::auto::auto(topology).to_graph();
                paths.apply(&graph, false).map_err(|e| anyhow!("automatic paths: {e}"))?;
                tracing::info!("no saved paths: applied the kernel's default (tierd path auto)");
            }
            Ok(())
        }
        PathsSource::File(file) => {
            // Like the config, it decides where a root daemon moves pages: it must be
            // private to root (or the running user).
            let text =
                crate::input::read_private_text(file, crate::input::MAX_TEXT_BYTES, "a path graph")
                    .context("paths.source")?;
            let graph = PathGraph::from_toml(&text)
                .map_err(|e| anyhow!("paths.source {}: {e}", file.display()))?;
            paths.apply(&graph, false).map_err(|e| anyhow!("paths.source {}: {e}", file.display()))
        }
    }
}

/// Logs a message once per distinct key, and remembers the last one for `tierd status`.
#[derive(Default)]
struct Once {
    said: BTreeSet<String>,
    last: Option<String>,
}

impl Once {
    fn warn(&mut self, key: impl Into<String>, msg: &str) {
        if self.said.insert(key.into()) {
            tracing::warn!("{msg}");
        }
        self.last = Some(msg.to_string());
    }
}

/// What both daemon loops serve: the control socket (with status) and the metrics endpoint.
struct Services {
    server: control::Server,
    metrics: Arc<Metrics>,
    endpoint: Option<metrics::Endpoint>,
}

/// Starts the control socket (publishing it in the state lock once it listens) and the
/// metrics endpoint.
fn start_services(
    config: &Config,
    paths: &Arc<Paths>,
    lock: &mut crate::state::OwnerLock,
    status: &Arc<Mutex<Status>>,
    started: Instant,
) -> Result<Services> {
    let status_source: control::StatusSource = {
        let status = Arc::clone(status);
        Arc::new(move || {
            let mut s = status.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
            s.uptime_s = started.elapsed().as_secs();
            serde_json::to_value(s).unwrap_or_default()
        })
    };
    let server = control::Server::start_with_status(
        &config.daemon.socket,
        Arc::clone(paths),
        Some(status_source),
    )
    .with_context(|| format!("control socket {}", config.daemon.socket.display()))?;
    lock.publish_socket(&config.daemon.socket)?;
    let metrics = Arc::new(Metrics::new());
    let endpoint = if config.daemon.metrics_addr.is_empty() {
        None
    } else {
        Some(metrics::Endpoint::start(&config.daemon.metrics_addr, Arc::clone(&metrics))?)
    };
    Ok(Services { server, metrics, endpoint })
}

/// Gives the daemon the priority a latency-critical system daemon needs, before it starts
/// any thread (threads inherit the nice value): a nice value that keeps the loop ahead of
/// CPU-bound work, its own pages locked (the daemon that keeps pages from being swapped must
/// not wait on a swap-in), and a low OOM score. Each failure is a warning, not an error: the
/// backstop keeps the no-swap promise without them. Returns the summary for `tierd status`.
fn set_priority(d: &DaemonConfig, root: &SysRoot) -> String {
    let mut said = Vec::new();
    match tierd_linux::sys::set_nice(d.nice) {
        Ok(()) => said.push(format!("nice {}", d.nice)),
        Err(e) => {
            tracing::warn!(
                "daemon.nice = {}: {e}: running at the inherited priority (needs CAP_SYS_NICE)",
                d.nice
            );
            said.push("nice unchanged".into());
        }
    }
    if d.lock_memory {
        use nix::sys::mman::{MlockAllFlags, mlockall};
        let flags = MlockAllFlags::from_bits_retain(
            libc::MCL_CURRENT | libc::MCL_FUTURE | libc::MCL_ONFAULT,
        );
        match mlockall(flags) {
            Ok(()) => said.push("memory locked".into()),
            Err(e) => {
                tracing::warn!(
                    "daemon.lock_memory: mlockall: {e}: raise RLIMIT_MEMLOCK (LimitMEMLOCK=infinity \
                     in the unit) or set lock_memory = false"
                );
                said.push("memory not locked".into());
            }
        }
    }
    let oom = root.oom_score_adj_file();
    match std::fs::write(&oom, format!("{}\n", d.oom_score_adj)) {
        Ok(()) => said.push(format!("oom_score_adj {}", d.oom_score_adj)),
        Err(e) => {
            tracing::warn!(
                "daemon.oom_score_adj = {}: {}: {e} (below 0 needs CAP_SYS_RESOURCE; the unit sets \
                 OOMScoreAdjust=)",
                d.oom_score_adj,
                oom.display()
            );
        }
    }
    said.join(", ")
}

/// The backstop as `tierd status` and the metrics show it, for the current paths.
struct BackstopState {
    /// The kernel's demotion targets (from its tiers), fixed while tierd runs.
    kernel: BTreeMap<NodeId, tierd_core::auto::DemotionTargets>,
    /// Programs' nodes: memory nodes with CPUs.
    homes: tierd_core::NodeMask,
    /// `demotion_enabled` is on while tierd runs.
    active: bool,
    /// Why it is off, when it is.
    off_why: String,
    /// How it was switched on ("switched on by tierd, restored on exit" or "already on").
    on_how: &'static str,
    /// The plan for the current paths.
    plan: tierd_core::backstop::Backstop,
}

impl BackstopState {
    /// Re-plans for `graph`, hands the repair to the policy and publishes the result.
    fn update(
        &mut self,
        graph: &PathGraph,
        policy: &mut Tierd<tracker::PageRef>,
        metrics: &Metrics,
        status: &Mutex<Status>,
    ) {
        self.plan = tierd_core::backstop::plan(&self.kernel, graph, self.homes);
        policy.set_repair(if self.active { self.plan.repair.clone() } else { BTreeMap::new() });
        let repair = self.active && !self.plan.repair.is_empty();
        let label = BackstopLabel {
            mechanism: if self.active { "kernel-demotion" } else { "none" }.into(),
            repair: if repair { "yes" } else { "no" }.into(),
        };
        metrics.set_backstop(&label);
        let why = if self.active {
            format!("demotion_enabled=true ({}); {}", self.on_how, self.plan.summary())
        } else {
            self.off_why.clone()
        };
        if self.active {
            for note in &self.plan.notes {
                tracing::info!("backstop: {note}");
            }
        }
        let mut s = status.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        s.backstop = label.mechanism;
        s.backstop_why = why;
    }

    /// Whether a move from `from` to `to` is placement repair.
    fn is_repair(&self, from: NodeId, to: NodeId) -> bool {
        self.active && self.plan.repair.get(&from).is_some_and(|d| d.contains(&to))
    }
}

/// Switches the kernel's demotion on as the backstop (unless `[daemon] backstop = "off"`),
/// and with `take_over` its tiering promotion off (and its demotion, with the backstop off).
/// A backstop that cannot be switched on is a warning and `tierd status` says why; a take-over
/// that fails is an error, as before.
fn kernel_settings(
    root: &SysRoot,
    config: &Config,
    take_over: bool,
) -> Result<(kernel::Guard, bool, String)> {
    let before = kernel::KernelTiering::read(root)?;
    let backstop = config.daemon.backstop == Backstop::KernelDemotion;
    let wanted = kernel::Wanted {
        demotion: if backstop {
            Some(true)
        } else if take_over {
            Some(false)
        } else {
            None
        },
        no_tiering_promotion: take_over,
    };
    let (guard, off_why) = match kernel::apply(root, wanted) {
        Ok(g) => {
            let why = match g.demotion() {
                None => "none: this kernel has no demotion in reclaim (no \
                         /sys/kernel/mm/numa/demotion_enabled, before 5.15): reclaim may swap \
                         when tierd falls behind"
                    .to_string(),
                Some(_) if !backstop => "none ([daemon] backstop = \"off\"): reclaim may swap \
                                         when tierd falls behind"
                    .to_string(),
                Some(_) => String::new(),
            };
            (g, why)
        }
        Err(e) if backstop => {
            tracing::warn!("backstop: cannot switch the kernel's demotion on: {e}");
            let g = kernel::apply(root, kernel::Wanted { demotion: None, ..wanted })
                .context("--take-over")?;
            let why = format!(
                "none: switching the kernel's demotion on failed ({e}): reclaim may swap when \
                 tierd falls behind; run tierd as root"
            );
            (g, why)
        }
        Err(e) => return Err(anyhow::Error::new(e).context("--take-over")),
    };
    let active = backstop && guard.demotion() == Some(true);
    if guard.changed_demotion() && active {
        tracing::info!("backstop: switched the kernel's demotion on (restored on exit)");
    }
    if guard.changed_balancing() {
        tracing::info!("switched the kernel's tiering promotion off (restored on exit)");
    }
    if !active {
        tracing::warn!("backstop: {off_why}");
    }
    for c in kernel::KernelTiering::read(root).unwrap_or(before).conflicts(active) {
        tracing::warn!("{c}");
    }
    Ok((guard, active, off_why))
}

/// Runs the daemon until SIGTERM, SIGINT or SIGQUIT.
#[allow(clippy::too_many_lines)] // one linear setup, one loop, one teardown
pub fn run(opts: &RunOptions) -> Result<()> {
    let started = Instant::now();
    let config = opts.config(Some(&opts.config))?;
    let root = opts.root.clone();
    let priority = set_priority(&config.daemon, &root);
    let topology = tierd_linux::read_topology(&root).context("reading the NUMA topology")?;
    let page_size = tierd_linux::sys::page_size() as u64;

    // The path table: one owner per state file.
    let state = StateFile::new(&config.paths.state);
    let mut lock = state.lock_within(Duration::from_secs(5))?.ok_or_else(|| {
        anyhow!(
            "{} is owned by another tierd (pid {}); one daemon per state file",
            config.paths.state.display(),
            state.owner_pid().map_or("unknown".into(), |p| p.to_string())
        )
    })?;
    let online_root = root.clone();
    let paths = Arc::new(Paths::open(&topology, state)?.with_online_source(Box::new(move || {
        tierd_linux::topology::read_online(&online_root).ok()
    })));
    seed_paths(&config, &topology, &paths, true)?;

    // The kernel's own tiering: its demotion as the backstop, its promotion taken over.
    let take_over = opts.take_over || config.daemon.take_over;
    let (kernel_guard, backstop_active, backstop_off_why) =
        kernel_settings(&root, &config, take_over)?;
    let kernel_auto = tierd_core::auto::auto(&topology);
    let backstop = BackstopState {
        kernel: kernel_auto.targets,
        homes: topology.cpu_nodes().and(&topology.memory_nodes()),
        active: backstop_active,
        off_why: backstop_off_why,
        on_how: if kernel_guard.changed_demotion() {
            "switched on by tierd, restored on exit"
        } else {
            "already on"
        },
        plan: tierd_core::backstop::Backstop::default(),
    };
    let conflicts = kernel::KernelTiering::read(&root)?.conflicts(backstop_active);

    // The tracker.
    let runtime_dir = config
        .daemon
        .socket
        .parent()
        .map_or_else(|| PathBuf::from("/run/tierd"), Path::to_path_buf);
    std::fs::create_dir_all(&runtime_dir)
        .with_context(|| format!("creating {}", runtime_dir.display()))?;
    let mut ctx = TrackerContext::system(&runtime_dir);
    ctx.root = root.clone();
    ctx.damon.sample_us = config.tracker.sample_us;
    ctx.damon.aggr_us = config.tracker.aggregate_ms * 1000;
    let kind: TrackerKind = config.tracker.kind.into();
    let tracker: Box<dyn Tracker> = tracker::open(kind, &ctx)?;
    tracing::info!(tracker = tracker.name(), "{}", tracker.why());

    // Status, control socket, metrics, FUSE.
    let status = Arc::new(Mutex::new(Status {
        pid: std::process::id(),
        config: opts.config.clone(),
        tracker: tracker.name().to_string(),
        tracker_why: tracker.why().to_string(),
        mover: "move_pages".into(),
        mover_why: mover_why(config.mover.move_shared, backstop_active),
        conflicts,
        took_over: kernel_guard.changed_balancing()
            || (kernel_guard.changed_demotion() && !backstop_active),
        priority: priority.clone(),
        ..Status::default()
    }));
    let Services { server, metrics, endpoint } =
        start_services(&config, &paths, &mut lock, &status, started)?;
    let fuse = match &config.daemon.mount {
        Some(mnt) => Some(mount_tree(mnt, &paths, &topology)?),
        None => None,
    };

    let backend = LinuxBackend::new(
        root.clone(),
        Mover::new(SysMover::new(config.mover.move_shared), mover_limits(&config, page_size)),
        page_size,
    );
    let selection = selection(&config)?;
    let mut signals = signal_hook::iterator::Signals::new(crate::mount::SIGNALS)?;
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    tracing::info!(
        socket = %config.daemon.socket.display(),
        metrics = endpoint.as_ref().map(|e| e.addr().to_string()).unwrap_or_default(),
        "tierd running"
    );
    let host = LinuxHost {
        root: root.clone(),
        backend,
        tracker,
        topology: topology.clone(),
        selection,
        backstop,
        started,
        seen: linux::LoopState::default(),
    };
    let mut daemon = Daemon::new(host, Parts { topology, paths, config, metrics, status });
    let result = daemon.run(opts, &mut signals);

    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    if let Err(e) = daemon.host.tracker().stop() {
        tracing::warn!("stopping the tracker: {e}");
    }
    if let Some(session) = fuse {
        session.umount_and_join().context("unmounting the FUSE tree")?;
    }
    drop(server);
    drop(endpoint);
    kernel_guard.restore().context("restoring the kernel's tiering settings")?;
    drop(lock);
    tracing::info!("stopped after {} loops", daemon.loops());
    result
}

/// The processes of `before` that are not in `now`.
fn left_scope(before: &[Pid], now: &[Pid]) -> Vec<Pid> {
    let now: BTreeSet<Pid> = now.iter().copied().collect();
    before.iter().copied().filter(|p| !now.contains(p)).collect()
}

fn selection_or_old(c: &Config, old: Selection) -> Selection {
    match selection(c) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("config reload: {e}; keeping the old scope");
            old
        }
    }
}

fn mount_tree(
    mnt: &Path,
    paths: &Arc<Paths>,
    topology: &Topology,
) -> Result<fuser::BackgroundSession> {
    crate::mount::check_mountpoint(mnt).map_err(|e| anyhow!(e))?;
    let mut cfg = fuser::Config::default();
    cfg.mount_options = vec![
        fuser::MountOption::FSName("tierd".into()),
        fuser::MountOption::Subtype("tierd".into()),
        fuser::MountOption::DefaultPermissions,
        fuser::MountOption::NoDev,
        fuser::MountOption::NoSuid,
    ];
    cfg.acl = fuser::SessionACL::All;
    fuser::spawn_mount(crate::mount::PathFs::new(Arc::clone(paths), topology.clone()), mnt, &cfg)
        .with_context(|| format!("mounting the path tree on {}", mnt.display()))
}

/// What the host's `move_pages(2)` mover covers, and what is left to the kernel.
fn mover_why(move_shared: bool, backstop: bool) -> String {
    let pages = if move_shared {
        "the anonymous pages of the processes in scope, shared ones too ([mover] move_shared)"
    } else {
        "the anonymous pages of the processes in scope, not those shared with other processes"
    };
    let rest = if backstop {
        "the page cache, shared memory and other processes' pages are demoted by the kernel's \
         reclaim (the backstop) when a node runs short"
    } else {
        "the page cache, shared memory and other processes' pages are left to reclaim, which \
         swaps or drops them (backstop off)"
    };
    format!("move_pages(2) moves {pages}; {rest}")
}

/// `tierd status`: asks the running daemon.
pub fn status(socket: &Path, json: bool) -> Result<String> {
    let report = match control::call(socket, &control::Request::Status)? {
        control::Response::Status { report } => report,
        control::Response::Error { message, .. } => return Err(anyhow!(message)),
        control::Response::Ok { .. } => {
            return Err(anyhow!("unexpected answer from {}", socket.display()));
        }
    };
    if json {
        return Ok(serde_json::to_string_pretty(&report)? + "\n");
    }
    let typed: Status = serde_json::from_value(report).with_context(|| {
        format!(
            "the daemon at {} answered a status this tierd cannot read (a different version?); \
             `tierd status --json` shows it as sent",
            socket.display()
        )
    })?;
    Ok(status_text(&typed))
}

/// The text form of a status report.
pub fn status_text(s: &Status) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "tierd pid {} up {} s, {} loops (last {:.1} ms), {} processes in scope",
        s.pid, s.uptime_s, s.loops, s.last_loop_ms, s.processes
    );
    let _ = writeln!(out, "tracker: {}: {}", s.tracker, s.tracker_why);
    if !s.mover.is_empty() {
        let _ = writeln!(out, "mover: {}: {}", s.mover, s.mover_why);
    }
    let _ = writeln!(out, "backstop: {}: {}", s.backstop, s.backstop_why);
    if !s.priority.is_empty() {
        let _ = writeln!(out, "priority: {}", s.priority);
    }
    if s.took_over {
        let _ = writeln!(out, "kernel tiering promotion: switched off by tierd (restored on exit)");
    }
    for c in &s.conflicts {
        let _ = writeln!(out, "warning: {c}");
    }
    let _ = writeln!(out, "node  total MiB  free MiB  headroom  target");
    for n in &s.nodes {
        let _ = writeln!(
            out,
            "{:>4}  {:>9}  {:>8}  {:>8}  {}",
            n.node,
            n.total_mib,
            n.free_mib,
            n.headroom_pct.map_or("-".into(), |p| format!("{p}%")),
            n.target.map_or("terminal".into(), |t| t.to_string())
        );
    }
    for (edge, pages) in &s.moved_pages {
        let _ = writeln!(out, "moved {edge}: {pages} pages");
    }
    for (errno, pages) in &s.failures {
        let _ = writeln!(out, "failed {errno}: {pages} pages");
    }
    if s.no_room_pages > 0 {
        let _ = writeln!(out, "left in place (every target full): {} pages", s.no_room_pages);
    }
    if let Some(ms) = s.cpu_ms_per_gib_minute {
        let _ = writeln!(
            out,
            "cost: {ms:.1} ms of CPU per GiB tracked per minute ({} MiB tracked)",
            s.tracked_mib
        );
    }
    if let Some(e) = &s.last_error {
        let _ = writeln!(out, "last problem: {e}");
    }
    out
}

/// `tierd run --sim SCENARIO`: the daemon's policy, control socket and metrics over the
/// simulated machine instead of a real host: a live demo that needs no tiered memory. Each
/// daemon interval (real time) replays one policy interval of simulated time; the trace
/// repeats until SIGTERM/SIGINT. Paths changed with `tierd path set` re-plan the policy, as
/// on a real host.
#[allow(clippy::too_many_lines)] // one linear setup, one loop
pub fn run_sim(opts: &RunOptions, scenario_file: Option<&Path>) -> Result<()> {
    use tierd_sim::machine::{Machine, Reclaim};
    let started = Instant::now();
    let config = opts.config(opts.config.exists().then_some(opts.config.as_path()))?;
    let mut scenario = match scenario_file {
        Some(f) => {
            let text = crate::input::read_text(
                f,
                crate::input::Links::Follow,
                crate::input::MAX_TEXT_BYTES,
                "a scenario",
            )?;
            tierd_sim::Scenario::from_toml(&text).map_err(|e| anyhow!("{}: {e}", f.display()))?
        }
        None => tierd_sim::Scenario::default_scenario(),
    };
    scenario.open_traces(scenario_file.and_then(Path::parent)).map_err(|e| anyhow!("{e}"))?;
    let setup = tierd_sim::run::Setup::new(&scenario).map_err(|e| anyhow!("{e}"))?;
    let trace = tierd_sim::workload::draw_within(&scenario, crate::limits::memory_budget())
        .map_err(|e| anyhow!("{e}"))?;
    if trace.accesses.is_empty() {
        return Err(anyhow!("the scenario draws no accesses"));
    }
    let state = StateFile::new(&config.paths.state);
    let mut lock = state.lock_within(Duration::from_secs(5))?.ok_or_else(|| {
        anyhow!(
            "{} is owned by another tierd; use another [paths] state",
            config.paths.state.display()
        )
    })?;
    let paths = Arc::new(Paths::open(&setup.topology, state)?);
    if !paths.state().path().exists() {
        paths.apply(&setup.graph, false).map_err(|e| anyhow!("the scenario's paths: {e}"))?;
    }
    let loaded = opts.config.exists();
    let policy_cfg = sim_policy(&scenario.policy, loaded.then_some(&config));
    // Which nodes the machine tracks hot pages on: those the policy promotes from.
    let policy: Tierd<u32> =
        Tierd::new(policy_cfg.clone(), &setup.topology, &paths.table().snapshot());
    let mut cfg = setup.machine.clone();
    cfg.reclaim = Reclaim::Swap;
    for (slot, p) in cfg.promotable.iter_mut().enumerate() {
        *p = policy_cfg.promote
            && NodeId::new(slot).and_then(|n| policy.promotion_target(n)).is_some();
    }
    let machine = Machine::new(cfg);

    let status = Arc::new(Mutex::new(Status {
        pid: std::process::id(),
        config: opts.config.clone(),
        tracker: "simulator".into(),
        mover: "simulator".into(),
        mover_why: "every page of the simulated machine, anonymous and page cache".into(),
        backstop: "none".into(),
        backstop_why: "tierd run --sim: the simulated machine's reclaim swaps, as on a host \
                       with [daemon] backstop = \"off\""
            .into(),
        tracker_why: format!(
            "tierd run --sim: the simulated machine of {} (exact per-page access bits)",
            scenario_file
                .map_or("the embedded default scenario".into(), |f| f.display().to_string())
        ),
        ..Status::default()
    }));
    let Services { server, metrics, endpoint } =
        start_services(&config, &paths, &mut lock, &status, started)?;
    let mut signals = signal_hook::iterator::Signals::new(crate::mount::SIGNALS)?;
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    tracing::info!(
        socket = %config.daemon.socket.display(),
        metrics = endpoint.as_ref().map(|e| e.addr().to_string()).unwrap_or_default(),
        "tierd running on the simulated machine"
    );

    let tracked = u64::from(trace.pages()) * scenario.page_size;
    let host = SimHost::new(
        machine,
        trace.accesses,
        scenario.policy.clone(),
        scenario.process.len(),
        tracked,
        loaded,
    );
    let topology = setup.topology;
    let mut daemon = Daemon::new(host, Parts { topology, paths, config, metrics, status });
    let result = daemon.run(opts, &mut signals);
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    drop(server);
    drop(endpoint);
    drop(lock);
    tracing::info!("stopped after {} loops", daemon.loops());
    result
}

/// The policy `tierd run --sim` runs: the scenario's `[policy]`, and with a config file what
/// that file says for the host, as `tierd run` reads it ([`policy_config`]: `[headroom]`,
/// `[promotion]`, `[mover] max_mib_per_s`), so that one config tried on the simulated machine
/// behaves as it will on the host. The scenario keeps what the host config has no say in:
/// the simulated interval, the burst factor, fill and quiet nodes.
fn sim_policy(scenario: &PolicyConfig, config: Option<&Config>) -> PolicyConfig {
    let Some(c) = config else { return scenario.clone() };
    PolicyConfig {
        interval_ms: scenario.interval_ms,
        burst_factor: scenario.burst_factor,
        fill: scenario.fill,
        quiet_ms: scenario.quiet_ms,
        ..policy_config(c)
    }
}

/// The config fields `tierd run --sim` applies on SIGHUP: the loop's interval and what
/// [`sim_policy`] takes from the config, less `mover.max_mib_per_s`, which as on the host
/// takes a restart.
fn sim_reloads(field: &str) -> bool {
    field == "daemon.interval_ms"
        || field.starts_with("headroom.")
        || field.starts_with("promotion.")
}

/// SIGHUP under `tierd run --sim`: re-reads the config, applies what the simulated loop
/// uses ([`sim_reloads`]) and says which changes need a restart and which mean nothing on the
/// simulated machine. An unusable config keeps the old one.
fn reload_for_sim(opts: &RunOptions, old: Config) -> (Config, bool) {
    let path = &opts.config;
    let new = match opts.config(Some(path)) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("config reload failed, keeping the old configuration: {e}");
            return (old, false);
        }
    };
    let restart = Config::restart_needed(&old, &new);
    let unused: Vec<&str> = Config::changed_fields(&old, &new)
        .into_iter()
        .filter(|f| !restart.contains(f) && !sim_reloads(f))
        .collect();
    tracing::info!("config reloaded from {}", path.display());
    if !restart.is_empty() {
        tracing::warn!(
            "config reload: {} changed but only take effect after a restart",
            restart.join(", ")
        );
    }
    if !unused.is_empty() {
        tracing::warn!(
            "config reload: {} changed but mean nothing on the simulated machine",
            unused.join(", ")
        );
    }
    // Keep what cannot change live, so the process goes on saying what it really uses.
    let mut applied = old;
    applied.daemon.interval_ms = new.daemon.interval_ms;
    applied.headroom = new.headroom;
    applied.promotion = new.promotion;
    (applied, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiering_tree(demotion: Option<&str>) -> (tempfile::TempDir, SysRoot) {
        let dir = tempfile::tempdir().unwrap();
        let root = SysRoot::under(dir.path());
        std::fs::create_dir_all(root.numa_balancing_file().parent().unwrap()).unwrap();
        std::fs::write(root.numa_balancing_file(), "0\n").unwrap();
        if let Some(d) = demotion {
            std::fs::create_dir_all(root.demotion_enabled_file().parent().unwrap()).unwrap();
            std::fs::write(root.demotion_enabled_file(), d).unwrap();
        }
        (dir, root)
    }

    fn demotion_file(root: &SysRoot) -> String {
        std::fs::read_to_string(root.demotion_enabled_file()).unwrap()
    }

    #[test]
    fn the_backstop_switches_the_kernels_demotion_on_and_back_off() {
        let (_d, root) = tiering_tree(Some("false\n"));
        let (guard, active, why) = kernel_settings(&root, &Config::default(), false).unwrap();
        assert!(active && why.is_empty());
        assert_eq!(demotion_file(&root), "true\n");
        guard.restore().unwrap();
        assert_eq!(demotion_file(&root), "false\n");
    }

    #[test]
    fn backstop_off_leaves_demotion_alone_unless_taken_over() {
        let (_d, root) = tiering_tree(Some("true\n"));
        let mut config = Config::default();
        config.daemon.backstop = Backstop::Off;
        let (guard, active, why) = kernel_settings(&root, &config, false).unwrap();
        assert!(!active && why.contains("backstop = \"off\""), "{why}");
        assert_eq!(demotion_file(&root), "true\n");
        drop(guard);
        let (guard, _, _) = kernel_settings(&root, &config, true).unwrap();
        assert_eq!(demotion_file(&root), "false\n", "taken over");
        drop(guard);
        assert_eq!(demotion_file(&root), "true\n", "and put back");
    }

    #[test]
    fn a_kernel_without_demotion_has_no_backstop_and_says_why() {
        let (_d, root) = tiering_tree(None);
        let (_guard, active, why) = kernel_settings(&root, &Config::default(), false).unwrap();
        assert!(!active);
        assert!(why.starts_with("none: this kernel has no demotion in reclaim"), "{why}");
    }

    #[test]
    fn status_and_metrics_name_the_backstop_and_its_repair() {
        let topo = Topology::synthetic(
            &[10, 20, 30, 20, 10, 20, 30, 20, 10],
            &[true, false, false],
            &[1 << 30; 3],
        );
        let kernel = tierd_core::auto::auto(&topo).targets;
        let mut b = BackstopState {
            kernel,
            homes: topo.cpu_nodes(),
            active: true,
            off_why: String::new(),
            on_how: "switched on by tierd, restored on exit",
            plan: tierd_core::backstop::Backstop::default(),
        };
        let graph = PathGraph::from_toml("[node.0]\ntarget = 2\n").unwrap();
        let mut policy: Tierd<tracker::PageRef> =
            Tierd::new(PolicyConfig::default(), &topo, &graph);
        let metrics = Metrics::new();
        let status = Mutex::new(Status::default());
        b.update(&graph, &mut policy, &metrics, &status);
        let (one, two) = (NodeId::new(1).unwrap(), NodeId::new(2).unwrap());
        assert!(b.is_repair(one, two) && !b.is_repair(two, one));
        // The report as the CLI gets it: JSON over the socket, read back into the type.
        let report = serde_json::to_value(status.lock().unwrap().clone()).unwrap();
        let text = status_text(&serde_json::from_value(report).unwrap());
        assert!(
            text.contains("backstop: kernel-demotion: demotion_enabled=true (switched on by tierd")
                && text.contains("pages on node 1 move on to 2 (placement repair)"),
            "{text}"
        );
        let label = BackstopLabel { mechanism: "kernel-demotion".into(), repair: "yes".into() };
        assert_eq!(metrics.backstop.get(&label).map(|g| g.get()), Some(1));
        // The kernel's own paths: nothing to repair.
        let auto = tierd_core::auto::auto(&topo).to_graph();
        b.update(&auto, &mut policy, &metrics, &status);
        assert!(!b.is_repair(one, two));
        assert_eq!(metrics.backstop.get(&label).map(|g| g.get()), Some(0));
    }

    #[test]
    fn the_status_text_comes_from_the_typed_report_and_a_renamed_field_is_an_error() {
        let status = Status {
            pid: 42,
            loops: 7,
            mover: "move_pages".into(),
            mover_why: mover_why(false, true),
            moved_pages: [("0->1".to_string(), 5)].into_iter().collect(),
            ..Status::default()
        };
        let mut report = serde_json::to_value(&status).unwrap();
        let text = status_text(&serde_json::from_value(report.clone()).unwrap());
        assert!(text.starts_with("tierd pid 42 up 0 s, 7 loops"), "{text}");
        assert!(text.contains("moved 0->1: 5 pages"), "{text}");
        assert!(
            text.contains("mover: move_pages: move_pages(2) moves the anonymous pages of the")
                && text.contains("demoted by the kernel's reclaim (the backstop)"),
            "{text}"
        );
        // A daemon that names a field otherwise: the CLI says so instead of printing 0.
        let loops = report.as_object_mut().unwrap().remove("loops").unwrap();
        report.as_object_mut().unwrap().insert("loop_count".into(), loops);
        assert!(serde_json::from_value::<Status>(report).is_err());
    }

    #[test]
    fn a_paths_source_others_can_write_is_refused_and_the_table_kept() {
        use std::os::unix::fs::PermissionsExt;
        let topo = Topology::synthetic(&[10, 20, 20, 10], &[true, false], &[1 << 30; 2]);
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::open(&topo, StateFile::new(dir.path().join("paths.toml"))).unwrap();
        let graph = dir.path().join("graph.toml");
        std::fs::write(&graph, "[node.0]\ntarget = 1\n").unwrap();
        let mut config = Config::default();
        config.paths.source = crate::config::PathsSource::File(graph.clone());
        std::fs::set_permissions(&graph, std::fs::Permissions::from_mode(0o666)).unwrap();
        let err = format!("{:#}", seed_paths(&config, &topo, &paths, true).unwrap_err());
        assert!(err.contains("writable by group or others (mode 0666)"), "{err}");
        let node0 = NodeId::new(0).unwrap();
        assert_eq!(paths.table().snapshot().entry(node0).target, None, "a refused file changed it");
        std::fs::set_permissions(&graph, std::fs::Permissions::from_mode(0o644)).unwrap();
        seed_paths(&config, &topo, &paths, true).unwrap();
        assert_eq!(paths.table().snapshot().entry(node0).target, NodeId::new(1));
    }

    #[test]
    fn processes_that_left_scope_are_those_no_longer_listed() {
        let p = |v: &[u32]| v.iter().map(|&n| Pid(n)).collect::<Vec<_>>();
        assert_eq!(left_scope(&p(&[3, 7, 9, 12]), &p(&[3, 9, 15])), p(&[7, 12]));
        assert_eq!(left_scope(&p(&[3]), &p(&[3, 4])), p(&[]));
        assert_eq!(left_scope(&p(&[]), &p(&[1])), p(&[]));
    }
}

#[cfg(test)]
mod loop_tests;
