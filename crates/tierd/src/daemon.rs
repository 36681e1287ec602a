//! `tierd run`: the tiering daemon.
//!
//! Every `interval_ms` it lists the processes in scope, takes the access tracker's last
//! window, re-reads each node's free memory and watermarks, and runs one tick of the shared
//! policy (`tierd_core::policy::Tierd`, the code the simulator runs): nodes short of their
//! headroom have their coldest pages moved one step down the migration path (fallbacks when
//! the target is full; never swapped or dropped by tierd), and pages of lower tiers that
//! turned hot come back up within the promotion rate limit and the ping-pong guard.
//!
//! Around the loop: the state file and its lock (the path table, shared with `tierd path`
//! and the FUSE tree), the control socket (`tierd path ...`, `tierd status`), the metrics
//! endpoint, an optional FUSE tree, the kernel's own tiering (warned about, or taken over),
//! and signals: SIGHUP reloads the config (an invalid one keeps the old, logged once),
//! SIGTERM/SIGINT stop cleanly (tracker torn down, FUSE unmounted, kernel settings put back).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use serde::Serialize;
use tierd_core::backend::Backend;
use tierd_core::policy::{PolicyConfig, Tierd};
use tierd_core::{NodeId, PathGraph, Topology};
use tierd_linux::backend::{LinuxBackend, MoveLog};
use tierd_linux::mover::{Mover, MoverLimits, SysMover};
use tierd_linux::scope::{self, Selection};
use tierd_linux::tracker::{self, Pid, Tracker, TrackerContext, TrackerKind};
use tierd_linux::{SysRoot, kernel};

use crate::config::Config;
use crate::control;
use crate::metrics::{self, ErrnoLabel, Metrics, NodeLabel};
use crate::paths::Paths;
use crate::state::StateFile;

/// What `tierd status` shows. Field names are stable (`tierd status --json`).
#[derive(Clone, Debug, Default, Serialize)]
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
    /// Kernel settings that move pages behind tierd's back, one sentence each.
    pub conflicts: Vec<String>,
    /// Whether tierd switched the kernel's own tiering off (`take_over`).
    pub took_over: bool,
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
#[derive(Clone, Debug, Serialize)]
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
    match c.paths.source.as_str() {
        "state" => Ok(()),
        "auto" => {
            if at_start && !paths.state().path().exists() {
                let graph = tierd_core::auto::auto(topology).to_graph();
                paths.apply(&graph, false).map_err(|e| anyhow!("automatic paths: {e}"))?;
                tracing::info!("no saved paths: applied the kernel's default (tierd path auto)");
            }
            Ok(())
        }
        file => {
            let text = crate::input::read_text(
                Path::new(file),
                crate::input::Links::Follow,
                crate::input::MAX_TEXT_BYTES,
                "a path graph",
            )
            .context("paths.source")?;
            let graph =
                PathGraph::from_toml(&text).map_err(|e| anyhow!("paths.source {file}: {e}"))?;
            paths.apply(&graph, false).map_err(|e| anyhow!("paths.source {file}: {e}"))
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

/// Runs the daemon until SIGTERM/SIGINT.
#[allow(clippy::too_many_lines)] // one linear setup, one loop, one teardown
pub fn run(opts: &RunOptions) -> Result<()> {
    let started = Instant::now();
    let mut config = Config::load(&opts.config)?;
    let root = opts.root.clone();
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

    // The kernel's own tiering.
    let tiering = kernel::KernelTiering::read(&root)?;
    let take_over = opts.take_over || config.daemon.take_over;
    let took_over = if take_over && !tiering.conflicts().is_empty() {
        let guard = kernel::take_over(&root).context("--take-over")?;
        tracing::info!(
            "switched the kernel's own demotion/tiering promotion off; restored on exit"
        );
        Some(guard)
    } else {
        for c in tiering.conflicts() {
            tracing::warn!("{c}");
        }
        None
    };

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
    let kind: TrackerKind =
        config.tracker.kind.parse().map_err(|e| anyhow!("tracker.kind: {e}"))?;
    let mut tracker: Box<dyn Tracker> = tracker::open(kind, &ctx)?;
    tracing::info!(tracker = tracker.name(), "{}", tracker.why());

    // Status, control socket, metrics, FUSE.
    let status = Arc::new(Mutex::new(Status {
        pid: std::process::id(),
        config: opts.config.clone(),
        tracker: tracker.name().to_string(),
        tracker_why: tracker.why().to_string(),
        conflicts: if took_over.is_some() { Vec::new() } else { tiering.conflicts() },
        took_over: took_over.is_some(),
        ..Status::default()
    }));
    let Services { server, metrics, endpoint } =
        start_services(&config, &paths, &mut lock, &status, started)?;
    let fuse = match &config.daemon.mount {
        Some(mnt) => Some(mount_tree(mnt, &paths, &topology)?),
        None => None,
    };

    let mut backend = LinuxBackend::new(
        root.clone(),
        Mover::new(SysMover::new(config.mover.move_shared), mover_limits(&config, page_size)),
        page_size,
    );
    let mut graph = paths.table().snapshot();
    let mut policy_cfg = policy_config(&config);
    let mut policy: Tierd<tracker::PageRef> = Tierd::new(policy_cfg.clone(), &topology, &graph);
    let mut selection = selection(&config)?;
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGHUP,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ])?;
    let mut once = Once::default();
    let mut pids: Vec<Pid> = Vec::new();
    let mut first_seen: BTreeMap<Pid, Instant> = BTreeMap::new();
    // Processes whose exit the tracker reported and that are still in `pids`.
    let mut said_gone: BTreeSet<Pid> = BTreeSet::new();
    let mut totals = MoveLog::default();
    let mut cpu = CpuCost::default();
    let mut tracked_bytes = 0u64;
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    tracing::info!(
        socket = %config.daemon.socket.display(),
        metrics = endpoint.as_ref().map(|e| e.addr().to_string()).unwrap_or_default(),
        "tierd running"
    );

    let mut loops = 0u64;
    'outer: loop {
        let t0 = Instant::now();
        loops += 1;
        // Who is in scope.
        match scope::processes(&root, &selection) {
            Ok(procs) => {
                // A process joins the tracker once it has lived a second: short-lived
                // commands (a shell loop, a health check) have nothing worth moving, and
                // each change of the set re-commits DAMON's targets, which resets what
                // it learned about the long-lived ones.
                let listed: BTreeSet<Pid> = procs.iter().map(|p| Pid(p.pid)).collect();
                first_seen.retain(|p, _| listed.contains(p));
                for p in &listed {
                    first_seen.entry(*p).or_insert(t0);
                }
                let now: Vec<Pid> = listed
                    .iter()
                    .copied()
                    .filter(|p| {
                        t0.duration_since(first_seen[p]) >= MIN_PROCESS_AGE || pids.contains(p)
                    })
                    .collect();
                if now != pids {
                    // A process gone from the listing before the tracker saw it exit: the
                    // tracker will not report it, so say it here, unless the tracker did.
                    for p in left_scope(&pids, &now) {
                        if !said_gone.remove(&p) {
                            tracing::info!(pid = p.0, "process left scope (exited)");
                        }
                    }
                    if let Err(e) = tracker.set_pids(&now) {
                        once.warn(format!("set_pids:{e}"), &format!("tracker: {e}"));
                    }
                    pids = now;
                }
            }
            Err(e) => once.warn(format!("scope:{e}"), &format!("listing processes: {e}")),
        }
        // The last window of accesses.
        let mut scan = Duration::ZERO;
        match tracker.sample() {
            Ok(sample) => {
                metrics.tracker_scan_seconds.observe(sample.took.as_secs_f64());
                scan = sample.took;
                tracked_bytes = sample.covered_bytes;
                // Processes the tracker saw exit: said here, once; the listing that no
                // longer has them does not say it again.
                for p in &sample.dropped {
                    if !said_gone.contains(p) {
                        tracing::info!(pid = p.0, "process left scope (exited)");
                    }
                    if pids.contains(p) {
                        said_gone.insert(*p);
                    }
                }
                let min_heat = config.promotion.min_heat.min(sample.max_accesses.max(1));
                if min_heat != policy_cfg.promote_min_heat {
                    tracing::info!(
                        "tracker counts at most {} accesses per window: promotion heat threshold {} -> {min_heat}",
                        sample.max_accesses,
                        policy_cfg.promote_min_heat
                    );
                    policy_cfg.promote_min_heat = min_heat;
                    policy.replan(policy_cfg.clone(), &topology, &graph);
                }
                backend.set_sample(sample);
            }
            Err(e) => once.warn(format!("sample:{e}"), &format!("tracker sample: {e}")),
        }
        if let Err(e) = backend.refresh() {
            once.warn(format!("refresh:{e}"), &format!("reading node memory: {e}"));
        }
        // Paths changed through the socket or the FUSE tree: re-plan.
        let now_graph = paths.table().snapshot();
        if now_graph != graph {
            tracing::info!("migration paths changed: re-planning");
            graph = now_graph;
            policy.replan(policy_cfg.clone(), &topology, &graph);
        }
        let now_ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let tick_start = Instant::now();
        // Housekeeping gets half an interval a loop: a node that programs allocate on is
        // observed again soon, however much a lower tier has to pass on.
        backend.set_housekeeping_until(Some(
            tick_start + Duration::from_millis(config.daemon.interval_ms / 2),
        ));
        let tick = policy.tick(now_ns, &mut backend);
        metrics.housekeeping_backlog_pages.set(tick.deferred);
        let tick_took = tick_start.elapsed();
        let log = backend.take_moves();
        record(&metrics, &log, &graph, page_size);
        for pid in &log.denied_pids {
            once.warn(
                format!("denied:{pid}"),
                &format!(
                    "may not move pages of pid {pid}: run tierd as root with CAP_SYS_NICE, or narrow [scope]"
                ),
            );
        }
        merge(&mut totals, &log);
        if let Ok(vm) = tierd_linux::read_vmstat(&root) {
            metrics.record_vmstat(&vm);
        }
        let elapsed = t0.elapsed();
        if tick.demoted + tick.promoted + tick.failed > 0
            || elapsed > Duration::from_millis(config.daemon.interval_ms)
        {
            tracing::debug!(
                demoted = tick.demoted,
                promoted = tick.promoted,
                failed = tick.failed,
                guarded = tick.guarded,
                deferred = tick.deferred,
                urgent = %tick.urgent,
                scan_ms = scan.as_millis(),
                policy_ms = tick_took.as_millis(),
                loop_ms = elapsed.as_millis(),
                "tick"
            );
        }
        metrics.loop_seconds.observe(elapsed.as_secs_f64());
        let cost = cpu.add(tracked_bytes);
        if let Some(ms) = cost {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // a gauge in µs
            metrics.cpu_us_per_gib_minute.set((ms * 1e3) as u64);
        }
        {
            let mut s = status.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            s.tracked_mib = tracked_bytes >> 20;
            s.cpu_ms_per_gib_minute = cost;
            s.last_error.clone_from(&once.last);
        }
        update_status(
            &status,
            &backend,
            &paths,
            &config,
            &totals,
            pids.len(),
            loops,
            elapsed,
            &metrics,
        );

        // Wait for the next interval, answering signals meanwhile.
        let deadline = t0 + Duration::from_millis(config.daemon.interval_ms);
        loop {
            for sig in signals.pending() {
                if sig != signal_hook::consts::SIGHUP {
                    tracing::info!("signal {sig}: stopping");
                    break 'outer;
                }
                match Config::load(&opts.config) {
                    Ok(new) => {
                        tracing::info!("config reloaded from {}", opts.config.display());
                        if let Err(e) = seed_paths(&new, &topology, &paths, false) {
                            tracing::warn!("config reload: {e}; keeping the old paths");
                        }
                        selection = selection_or_old(&new, selection);
                        policy_cfg = policy_config(&new);
                        policy.replan(policy_cfg.clone(), &topology, &graph);
                        config = new;
                    }
                    Err(e) => {
                        tracing::error!("config reload failed, keeping the old configuration: {e}");
                    }
                }
            }
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            std::thread::sleep((deadline - now).min(Duration::from_millis(50)));
        }
    }

    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    if let Err(e) = tracker.stop() {
        tracing::warn!("stopping the tracker: {e}");
    }
    if let Some(session) = fuse {
        session.umount_and_join().context("unmounting the FUSE tree")?;
    }
    drop(server);
    drop(endpoint);
    if let Some(guard) = took_over {
        guard.restore().context("restoring the kernel's tiering settings")?;
    }
    drop(lock);
    tracing::info!("stopped after {loops} loops");
    Ok(())
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

fn record(metrics: &Metrics, log: &MoveLog, graph: &PathGraph, page_size: u64) {
    for ((from, to), pages) in &log.moved {
        // A move along a path edge (target or fallback) is a demotion; any other, a promotion.
        let demotion = graph.entry(*from).destinations().any(|d| d == *to);
        metrics.record_move(demotion, u32::from(*from), u32::from(*to), *pages, page_size);
    }
    for (errno, pages) in &log.failures {
        let name = tierd_linux::sys::PageError::from_errno(*errno).name().to_string();
        metrics.move_failures.get_or_create(&ErrnoLabel { errno: name }).inc_by(*pages);
    }
}

fn merge(total: &mut MoveLog, log: &MoveLog) {
    for (k, v) in &log.moved {
        *total.moved.entry(*k).or_default() += v;
    }
    for (k, v) in &log.failures {
        *total.failures.entry(*k).or_default() += v;
    }
    total.no_room += log.no_room;
    total.busy_retry += log.busy_retry;
    total.gone += log.gone;
    total.denied += log.denied;
    total.calls += log.calls;
    total.busy_time += log.busy_time;
}

#[allow(clippy::too_many_arguments)]
fn update_status<B: Backend>(
    status: &Mutex<Status>,
    backend: &B,
    paths: &Paths,
    config: &Config,
    totals: &MoveLog,
    processes: usize,
    loops: u64,
    elapsed: Duration,
    metrics: &Metrics,
) {
    // The backend read every node's memory this loop (and follows its own moves): no
    // second read of meminfo here.
    let page = backend.page_size();
    let mut nodes = Vec::new();
    for n in backend.memory_nodes().iter() {
        let (total, free) = backend
            .node_memory(n)
            .map_or((0, 0), |m| (m.total.saturating_mul(page), m.free.saturating_mul(page)));
        let label = NodeLabel { node: u32::from(n) };
        metrics
            .node_total_bytes
            .get_or_create(&label)
            .set(i64::try_from(total).unwrap_or(i64::MAX));
        metrics.node_free_bytes.get_or_create(&label).set(i64::try_from(free).unwrap_or(i64::MAX));
        let target = paths.table().next_migration_node(n);
        nodes.push(NodeStatus {
            node: u32::from(n),
            total_mib: total >> 20,
            free_mib: free >> 20,
            headroom_pct: target.map(|_| config.headroom_pct(n)),
            target: target.map(u32::from),
        });
    }
    let mut s = status.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    s.nodes = nodes;
    s.processes = processes;
    s.loops = loops;
    s.last_loop_ms = elapsed.as_secs_f64() * 1e3;
    s.moved_pages = totals.moved.iter().map(|((f, t), v)| (format!("{f}->{t}"), *v)).collect();
    s.failures = totals
        .failures
        .iter()
        .map(|(e, v)| (tierd_linux::sys::PageError::from_errno(*e).name().to_string(), *v))
        .collect();
    s.no_room_pages = totals.no_room;
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
    Ok(status_text(&report))
}

/// The text form of a status report.
pub fn status_text(report: &serde_json::Value) -> String {
    let get = |k: &str| report.get(k).cloned().unwrap_or_default();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "tierd pid {} up {} s, {} loops (last {:.1} ms), {} processes in scope",
        get("pid"),
        get("uptime_s"),
        get("loops"),
        get("last_loop_ms").as_f64().unwrap_or(0.0),
        get("processes")
    );
    let _ = writeln!(
        out,
        "tracker: {}: {}",
        get("tracker").as_str().unwrap_or("?"),
        get("tracker_why").as_str().unwrap_or("")
    );
    if get("took_over").as_bool() == Some(true) {
        let _ = writeln!(out, "kernel tiering: switched off by tierd (restored on exit)");
    }
    for c in get("conflicts").as_array().into_iter().flatten() {
        let _ = writeln!(out, "warning: {}", c.as_str().unwrap_or(""));
    }
    let _ = writeln!(out, "node  total MiB  free MiB  headroom  target");
    for n in get("nodes").as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "{:>4}  {:>9}  {:>8}  {:>8}  {}",
            n["node"].as_u64().unwrap_or(0),
            n["total_mib"].as_u64().unwrap_or(0),
            n["free_mib"].as_u64().unwrap_or(0),
            n["headroom_pct"].as_f64().map_or("-".into(), |p| format!("{p}%")),
            n["target"].as_u64().map_or("terminal".into(), |t| t.to_string())
        );
    }
    for (edge, pages) in get("moved_pages").as_object().into_iter().flatten() {
        let _ = writeln!(out, "moved {edge}: {pages} pages");
    }
    for (errno, pages) in get("failures").as_object().into_iter().flatten() {
        let _ = writeln!(out, "failed {errno}: {pages} pages");
    }
    if let Some(n) = get("no_room_pages").as_u64().filter(|n| *n > 0) {
        let _ = writeln!(out, "left in place (every target full): {n} pages");
    }
    if let Some(ms) = get("cpu_ms_per_gib_minute").as_f64() {
        let _ = writeln!(
            out,
            "cost: {ms:.1} ms of CPU per GiB tracked per minute ({} MiB tracked)",
            get("tracked_mib")
        );
    }
    if let Some(e) = get("last_error").as_str() {
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
    let mut config =
        if opts.config.exists() { Config::load(&opts.config)? } else { Config::default() };
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
    let policy_cfg = scenario.policy.clone();
    let mut graph = paths.table().snapshot();
    let mut policy: Tierd<u32> = Tierd::new(policy_cfg.clone(), &setup.topology, &graph);
    let mut cfg = setup.machine.clone();
    cfg.reclaim = Reclaim::Swap;
    for (slot, p) in cfg.promotable.iter_mut().enumerate() {
        *p = policy_cfg.promote
            && NodeId::new(slot).and_then(|n| policy.promotion_target(n)).is_some();
    }
    let mut m = Machine::new(cfg);

    let status = Arc::new(Mutex::new(Status {
        pid: std::process::id(),
        config: opts.config.clone(),
        tracker: "simulator".into(),
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

    let interval_ns = policy_cfg.interval_ms.max(1) * 1_000_000;
    let n = m.node_count();
    let mut seen = vec![vec![0u64; n]; n];
    let mut at = 0usize;
    let mut loops = 0u64;
    'outer: loop {
        let t0 = Instant::now();
        loops += 1;
        let until = m.now_ns() + interval_ns;
        while m.now_ns() < until && !m.all_killed() {
            let end = (at + 1024).min(trace.accesses.len());
            m.run(&trace.accesses[at..end]);
            at = if end == trace.accesses.len() { 0 } else { end };
        }
        if m.all_killed() {
            tracing::error!(
                "every simulated process was OOM-killed (no free memory and the swap device \
                 full); stopping: give the scenario more memory or a larger [swap] size_mib"
            );
            break 'outer;
        }
        let now_graph = paths.table().snapshot();
        if now_graph != graph {
            tracing::info!("migration paths changed: re-planning");
            graph = now_graph;
            policy.replan(policy_cfg.clone(), &setup.topology, &graph);
        }
        let tick = policy.tick(m.now_ns(), &mut m);
        metrics.housekeeping_backlog_pages.set(tick.deferred);
        m.end_window();
        let page = scenario.page_size;
        let mut moved = BTreeMap::new();
        for (from, row) in seen.iter_mut().enumerate() {
            for (to, last) in row.iter_mut().enumerate() {
                let now = m.counters.moves[from][to];
                if now > *last {
                    let (f, t) = (m.node_id(from), m.node_id(to));
                    let demotion = graph.entry(f).destinations().any(|d| d == t);
                    metrics.record_move(demotion, u32::from(f), u32::from(t), now - *last, page);
                    *last = now;
                }
                if now > 0 {
                    moved.insert(format!("{}->{}", m.node_id(from), m.node_id(to)), now);
                }
            }
        }
        let mut nodes = Vec::new();
        for slot in 0..n {
            let id = m.node_id(slot);
            let total = (m.used(slot) + m.free(slot)) * page;
            let free = m.free(slot) * page;
            let label = NodeLabel { node: u32::from(id) };
            metrics
                .node_total_bytes
                .get_or_create(&label)
                .set(i64::try_from(total).unwrap_or(i64::MAX));
            metrics
                .node_free_bytes
                .get_or_create(&label)
                .set(i64::try_from(free).unwrap_or(i64::MAX));
            let target = paths.table().next_migration_node(id);
            nodes.push(NodeStatus {
                node: u32::from(id),
                total_mib: total >> 20,
                free_mib: free >> 20,
                headroom_pct: target.map(|_| policy_cfg.headroom_pct_of(id)),
                target: target.map(u32::from),
            });
        }
        let vm: BTreeMap<String, u64> = [
            ("pswpout".to_string(), m.counters.swap_out),
            ("pswpin".to_string(), m.counters.swap_in),
            ("pgdemote_kswapd".to_string(), m.counters.kernel_demoted),
        ]
        .into();
        metrics.record_vmstat(&vm);
        let elapsed = t0.elapsed();
        metrics.loop_seconds.observe(elapsed.as_secs_f64());
        {
            let mut s = status.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            s.nodes = nodes;
            s.moved_pages = moved;
            s.loops = loops;
            s.last_loop_ms = elapsed.as_secs_f64() * 1e3;
            s.processes = scenario.process.len();
            s.tracked_mib = (u64::from(trace.pages()) * page) >> 20;
        }
        let deadline = t0 + Duration::from_millis(config.daemon.interval_ms);
        loop {
            for sig in signals.pending() {
                if sig == signal_hook::consts::SIGHUP {
                    config = reload_for_sim(&opts.config, config);
                    continue;
                }
                tracing::info!("signal {sig}: stopping");
                break 'outer;
            }
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            std::thread::sleep((deadline - now).min(Duration::from_millis(50)));
        }
    }
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    drop(server);
    drop(endpoint);
    drop(lock);
    tracing::info!("stopped after {loops} loops");
    Ok(())
}

/// SIGHUP under `tierd run --sim`: re-reads the config, applies what the simulated loop
/// uses (`daemon.interval_ms`) and says which changes need a restart and which mean nothing
/// on the simulated machine. An unusable config keeps the old one.
fn reload_for_sim(path: &Path, old: Config) -> Config {
    let new = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("config reload failed, keeping the old configuration: {e}");
            return old;
        }
    };
    let restart = Config::restart_needed(&old, &new);
    let unused: Vec<&str> = Config::changed_fields(&old, &new)
        .into_iter()
        .filter(|f| !restart.contains(f) && *f != "daemon.interval_ms")
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
            "config reload: {} changed but mean nothing under --sim (the scenario's [policy] \
             drives the simulated machine)",
            unused.join(", ")
        );
    }
    // Keep what cannot change live, so the process goes on saying what it really uses.
    let mut applied = old;
    applied.daemon.interval_ms = new.daemon.interval_ms;
    applied
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processes_that_left_scope_are_those_no_longer_listed() {
        let p = |v: &[u32]| v.iter().map(|&n| Pid(n)).collect::<Vec<_>>();
        assert_eq!(left_scope(&p(&[3, 7, 9, 12]), &p(&[3, 9, 15])), p(&[7, 12]));
        assert_eq!(left_scope(&p(&[3]), &p(&[3, 4])), p(&[]));
        assert_eq!(left_scope(&p(&[]), &p(&[1])), p(&[]));
    }
}
