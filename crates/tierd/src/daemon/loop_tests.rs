//! The loop that ships (`tierd run`'s [`LinuxHost`] under [`Daemon`]) driven by cargo
//! tests: a fixture sysfs/procfs tree, the fake `move_pages(2)` and a scripted tracker, with
//! the test bed's daemon stories at unit speed.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tierd_core::{NodeId, PathGraph};
use tierd_linux::backend::LinuxBackend;
use tierd_linux::fixture::{Fixture, FixtureMachine, FixtureNode};
use tierd_linux::mover::fake::FakeMover;
use tierd_linux::mover::{Mover, MoverLimits};
use tierd_linux::scope::Selection;
use tierd_linux::tracker::{Error, Pid, Region, Sample, Tracker};
use tierd_linux::zoneinfo::{Watermarks, zoneinfo_text};

use super::linux::{LinuxHost, LoopState};
use super::step::{Daemon, Host, Parts};
use super::{BackstopState, RunOptions, Status};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::paths::Paths;
use crate::state::StateFile;

const PID: u32 = 42;
const PS: u64 = 4096;
const BASE: u64 = 0x7f00_0000_0000;
/// Pages per node in the fixture (64 MiB).
const NODE_PAGES: u64 = 16384;
/// The workload: 512 pages on node 0, the first half idle, the second half hot.
const PAGES: u64 = 512;

fn id(n: usize) -> NodeId {
    NodeId::new(n).unwrap()
}

fn addr(i: u64) -> usize {
    usize::try_from(BASE + i * PS).unwrap()
}

/// A tracker that reports what the test scripts: the regions of the next sample.
#[derive(Debug, Default)]
struct Scripted {
    regions: Arc<Mutex<Vec<Region>>>,
    dropped: Arc<Mutex<Vec<Pid>>>,
}

impl Tracker for Scripted {
    fn name(&self) -> &'static str {
        "scripted"
    }
    fn why(&self) -> &'static str {
        "the test's script"
    }
    fn set_pids(&mut self, _pids: &[Pid]) -> Result<(), Error> {
        Ok(())
    }
    fn sample(&mut self) -> Result<Sample, Error> {
        let regions = self.regions.lock().unwrap().clone();
        let covered_bytes = regions.iter().map(Region::len).sum();
        let dropped = std::mem::take(&mut *self.dropped.lock().unwrap());
        Ok(Sample { regions, max_accesses: 20, dropped, covered_bytes, ..Sample::default() })
    }
    fn stop(&mut self) -> Result<(), Error> {
        Ok(())
    }
}

fn region(first: u64, pages: u64, accesses: u32) -> Region {
    Region {
        pid: Pid(PID),
        start: BASE + first * PS,
        end: BASE + (first + pages) * PS,
        accesses,
        age: 3,
    }
}

/// The test bed's machine in small: node 0 with the CPUs, nodes 1 and 2 below it; pid 42 a
/// process in `proc`.
struct Bed {
    fx: Fixture,
    dir: tempfile::TempDir,
    daemon: Daemon<LinuxHost<FakeMover>>,
    regions: Arc<Mutex<Vec<Region>>>,
    dropped: Arc<Mutex<Vec<Pid>>>,
    paths: Arc<Paths>,
}

/// Writes node `n`'s free pages, in meminfo and zoneinfo, as the kernel would show them.
fn set_free(fx: &Fixture, free: [u64; 3]) {
    let zones: BTreeMap<NodeId, Watermarks> = (0..3)
        .map(|n| {
            let w =
                Watermarks { min: 100, low: 125, high: 150, managed: NODE_PAGES, free: free[n] };
            (id(n), w)
        })
        .collect();
    fx.write("proc/zoneinfo", zoneinfo_text(&zones)).unwrap();
    for (n, f) in free.iter().enumerate() {
        let text = format!(
            "Node {n} MemTotal:       {} kB\nNode {n} MemFree:        {} kB\nNode {n} MemUsed:        {} kB\n",
            NODE_PAGES * 4,
            f * 4,
            (NODE_PAGES - f) * 4
        );
        fx.write(format!("sys/devices/system/node/node{n}/meminfo"), text).unwrap();
    }
}

fn graph(text: &str) -> PathGraph {
    PathGraph::from_toml(text).unwrap()
}

const CHAIN: &str = "[node.0]\ntarget = 1\n[node.1]\ntarget = 2\n[node.2]\ntarget = -1\n";
const SKIP_1: &str = "[node.0]\ntarget = 2\n[node.1]\ntarget = 2\n[node.2]\ntarget = -1\n";

/// A bed whose node 0 has `free[0]` pages free (and so on), the workload on node 0 and the
/// paths `0 -> 1 -> 2`; `config` is the config file's text.
fn bed(free: [u64; 3], config: &str, mover: impl FnOnce(&mut FakeMover)) -> Bed {
    let fx = FixtureMachine::new()
        .node(FixtureNode::new(0).cpu().memory(NODE_PAGES * PS, free[0] * PS))
        .node(FixtureNode::new(1).memory(NODE_PAGES * PS, free[1] * PS))
        .node(FixtureNode::new(2).memory(NODE_PAGES * PS, free[2] * PS))
        .build()
        .unwrap();
    set_free(&fx, free);
    fx.write(
        format!("proc/{PID}/stat"),
        format!("{PID} (memload) S 1 {PID} {PID} 0 -1 4194304 100 0 0 0 10 5 0 0 20 0 1 0 100 1000000 250 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n"),
    )
    .unwrap();
    let topology = tierd_linux::read_topology(fx.root()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config_file = dir.path().join("tierd.toml");
    std::fs::write(&config_file, config).unwrap();
    let config = Config::load(&config_file).unwrap();
    let paths =
        Arc::new(Paths::open(&topology, StateFile::new(dir.path().join("paths.toml"))).unwrap());
    paths.apply(&graph(CHAIN), false).unwrap();
    let addrs: Vec<usize> = (0..PAGES).map(addr).collect();
    let mut fake = FakeMover::new(PID, &addrs, id(0));
    mover(&mut fake);
    let limits = MoverLimits { pages_per_call: 64, page_size: PS, ..MoverLimits::default() };
    let backend = LinuxBackend::new(fx.root().clone(), Mover::new(fake, limits), PS);
    let scripted = Scripted::default();
    let (regions, dropped) = (Arc::clone(&scripted.regions), Arc::clone(&scripted.dropped));
    *regions.lock().unwrap() = vec![region(0, PAGES / 2, 0), region(PAGES / 2, PAGES / 2, 15)];
    let backstop = BackstopState {
        kernel: BTreeMap::new(),
        homes: topology.cpu_nodes().and(&topology.memory_nodes()),
        active: false,
        off_why: "none: the test's".into(),
        on_how: "already on",
        plan: tierd_core::backstop::Backstop::default(),
    };
    let started = backend.now();
    let host = LinuxHost {
        root: fx.root().clone(),
        backend,
        tracker: Box::new(scripted),
        topology: topology.clone(),
        selection: Selection::Pids(vec![PID]),
        backstop,
        started,
        seen: LoopState::default(),
    };
    let parts = Parts {
        topology,
        paths: Arc::clone(&paths),
        config,
        metrics: Arc::new(Metrics::new()),
        status: Arc::new(Mutex::new(Status::default())),
    };
    Bed { fx, dir, daemon: Daemon::new(host, parts), regions, dropped, paths }
}

impl Bed {
    fn fake(&mut self) -> &mut FakeMover {
        self.daemon.host.backend().mover().os()
    }
    fn on(&mut self, node: usize) -> Vec<u64> {
        let fake = self.fake();
        let mut v: Vec<u64> = (0..PAGES)
            .filter(|i| fake.placement.get(&(PID, addr(*i))) == Some(&id(node)))
            .collect();
        v.sort_unstable();
        v
    }
    fn step(&mut self) {
        assert!(self.daemon.step().unwrap(), "the loop stopped");
    }
    fn status(&self) -> Status {
        self.daemon.parts.status.lock().unwrap().clone()
    }
    fn moved(&self, from: usize, to: usize) -> u64 {
        self.daemon.moved().get(&(id(from), id(to))).copied().unwrap_or(0)
    }
}

/// A config with 1% headroom (node 0 keeps `high` + 163 pages free) and the given extra.
fn config(extra: &str) -> String {
    format!(
        "[daemon]\ninterval_ms = 100\nmetrics_addr = \"\"\n[headroom]\ndefault_pct = 1\n{extra}"
    )
}

/// Node 0's goal in the bed: `high` (150) plus 1% of 16384 pages (163).
const GOAL: u64 = 150 + 163;

#[test]
fn pressure_demotes_the_coldest_pages_one_step_down_the_path() {
    let mut b = bed([200, 8000, 8000], &config(""), |_| {});
    b.step();
    let down = b.on(1);
    // Exactly the shortfall, all of it from the idle half, none from the hot half.
    assert_eq!(down.len() as u64, GOAL - 200, "{down:?}");
    assert!(down.iter().all(|i| *i < PAGES / 2), "a hot page went down: {down:?}");
    assert_eq!(b.moved(0, 1), GOAL - 200);
    let s = b.status();
    assert_eq!(s.moved_pages.get("0->1"), Some(&(GOAL - 200)));
    assert_eq!(s.loops, 1);
    assert_eq!(s.nodes.iter().find(|n| n.node == 0).unwrap().headroom_pct, Some(1.0));
    let text = b.daemon.parts.metrics.encode();
    assert!(
        text.contains(&format!("tierd_demoted_pages_total{{from=\"0\",to=\"1\"}} {}", GOAL - 200)),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "tierd_moved_bytes_total{{mover=\"move_pages\"}} {}",
            (GOAL - 200) * PS
        )),
        "{text}"
    );
}

#[test]
fn a_middle_tier_short_of_room_passes_its_own_cold_pages_on_in_the_same_loop() {
    // Node 1 is short too, and holds half the idle pages: the cascade 1 -> 2 runs with
    // 0 -> 1, and node 1 takes node 0's pages into the room its own demotion made.
    let mut b = bed([200, 200, 8000], &config(""), |f| {
        for i in 0..PAGES / 4 {
            f.placement.insert((PID, addr(i)), id(1));
        }
    });
    b.step();
    assert!(b.moved(1, 2) > 0, "no 1 -> 2 demotion: {:?}", b.daemon.moved());
    assert!(b.moved(0, 1) > 0, "no 0 -> 1 demotion: {:?}", b.daemon.moved());
}

#[test]
fn a_path_changed_through_the_table_sends_the_next_demotions_down_the_new_path() {
    let mut b = bed([200, 8000, 8000], &config(""), |_| {});
    b.step();
    let to1 = b.moved(0, 1);
    assert!(to1 > 0);
    b.paths.apply(&graph(SKIP_1), false).unwrap();
    // The kernel still shows node 0 short (the fixture's figures): the next loop demotes
    // again, now to node 2, and nothing more to node 1.
    b.step();
    assert!(b.moved(0, 2) > 0, "{:?}", b.daemon.moved());
    assert_eq!(b.moved(0, 1), to1);
    assert_eq!(b.status().nodes.iter().find(|n| n.node == 0).unwrap().target, Some(2));
}

#[test]
fn hot_pages_come_back_up_but_not_the_ones_just_moved_down() {
    let mut b = bed([200, 8000, 8000], &config(""), |f| {
        // 64 more pages of the workload that already sit on node 1.
        for i in PAGES..PAGES + 64 {
            f.placement.insert((PID, addr(i)), id(1));
        }
    });
    b.step();
    let demoted = b.on(1);
    assert!(!demoted.is_empty());
    // Node 0 has room again; everything on node 1 turns hot, the pages demoted a moment ago
    // included: those stay (the ping-pong guard), the others come up.
    set_free(&b.fx, [8000, 8000, 8000]);
    *b.regions.lock().unwrap() = vec![region(0, PAGES + 64, 15)];
    b.step();
    assert_eq!(b.moved(1, 0), 64, "{:?}", b.daemon.moved());
    let fake = b.fake();
    assert!((PAGES..PAGES + 64).all(|i| fake.placement[&(PID, addr(i))] == id(0)));
    assert!(
        demoted.iter().all(|i| fake.placement[&(PID, addr(*i))] == id(1)),
        "a guarded page moved"
    );
}

#[test]
fn a_process_that_exits_mid_batch_ends_its_moves_and_the_loop_goes_on() {
    // Calls of 64 pages: the process exits during the second, in the middle of the batch.
    // The first call's pages are counted; the second's, which the kernel can no longer
    // confirm, are not.
    let mut b = bed([200, 8000, 8000], &config(""), |f| f.exit_after = Some((PID, 2)));
    b.step();
    assert_eq!(b.moved(0, 1), 64, "{:?}", b.daemon.moved());
    let s = b.status();
    assert!(s.failures.get("ESRCH").is_some_and(|n| *n > 0), "{:?}", s.failures);
    // The tracker reports it gone; the next loops run and move nothing of it.
    b.regions.lock().unwrap().clear();
    b.dropped.lock().unwrap().push(Pid(PID));
    b.step();
    b.step();
    assert_eq!(b.status().loops, 3);
    assert_eq!(b.moved(0, 1), 64);
}

#[test]
fn a_broken_reload_keeps_the_config_and_a_good_one_changes_the_policy() {
    let mut b = bed([200, 8000, 8000], &config(""), |_| {});
    let file = b.dir.path().join("tierd.toml");
    let opts = RunOptions {
        config: file.clone(),
        take_over: false,
        root: b.fx.root().clone(),
        state: None,
        socket: None,
    };
    std::fs::write(&file, "[daemon]\ninterval_ms = \"fast\"\n").unwrap();
    b.daemon.reload(&opts);
    assert_eq!(b.daemon.parts.config.daemon.interval_ms, 100);
    assert!((b.daemon.policy_config().headroom_pct - 1.0).abs() < 1e-9);
    b.step();
    assert_eq!(b.moved(0, 1), GOAL - 200, "the loop runs on the old config");
    std::fs::write(&file, config("").replace("default_pct = 1", "default_pct = 20")).unwrap();
    b.daemon.reload(&opts);
    assert!((b.daemon.policy_config().headroom_pct - 20.0).abs() < 1e-9);
    b.step();
    assert_eq!(b.status().nodes.iter().find(|n| n.node == 0).unwrap().headroom_pct, Some(20.0));
}

/// A bed with 20% headroom on a slow host: 4096 more idle pages of the workload on `node`,
/// every page taking 1 ms on the fake mover's clock.
fn slow_bed(free: [u64; 3], node: usize) -> Bed {
    let extra = 4096;
    let cfg = config("").replace("default_pct = 1", "default_pct = 20");
    let b = bed(free, &cfg, |f| {
        for i in PAGES..PAGES + extra {
            f.placement.insert((PID, addr(i)), id(node));
        }
        f.per_page = std::time::Duration::from_millis(1);
    });
    *b.regions.lock().unwrap() = vec![region(0, PAGES + extra, 0)];
    b
}

#[test]
fn a_slow_tick_leaves_housekeeping_for_the_next_one() {
    // 20% headroom: node 1 (1000 pages free, above `high`, nothing draining it) should keep
    // 150 + 3276 free, 2426 pages of housekeeping. On the fake mover's clock every page takes
    // 1 ms: the first batch of 1024 overruns the half interval (50 ms) the tick may spend.
    let mut b = slow_bed([8000, 1000, 8000], 1);
    let want = 150 + 3276 - 1000;
    let batch = tierd_core::policy::HOUSEKEEPING_BATCH;
    b.step();
    assert_eq!(b.moved(1, 2), batch, "{:?}", b.daemon.moved());
    let backlog = format!("tierd_housekeeping_backlog_pages {}", want - batch);
    assert!(b.daemon.parts.metrics.encode().contains(&backlog), "want {backlog}");
    // The kernel's figures follow the moves; the next tick goes on with the next batch
    // and again leaves the rest.
    set_free(&b.fx, [8000, 1000 + batch, 8000 - batch]);
    b.step();
    assert_eq!(b.moved(1, 2), 2 * batch, "{:?}", b.daemon.moved());
    let backlog = format!("tierd_housekeeping_backlog_pages {}", want - 2 * batch);
    assert!(b.daemon.parts.metrics.encode().contains(&backlog), "want {backlog}");
}

#[test]
fn a_slow_urgent_tick_stops_at_the_tick_limit_and_the_next_goes_on() {
    // Node 0 at 100 free, below `high`: urgent, with 20% headroom a shortfall of
    // 150 + 3276 - 100 = 3326 pages, all idle. On the fake mover's clock every page takes
    // 1 ms; the tick may move for 2 s (`tick_limit` of a 100 ms interval), checked between
    // chunks of 1024: two chunks move, the rest waits for the next tick instead of holding
    // the loop (and the next heat sample) for 3.3 s.
    let mut b = slow_bed([100, 8000, 8000], 0);
    assert_eq!(super::step::tick_limit(std::time::Duration::from_millis(100)).as_secs(), 2);
    let want = 150 + 3276 - 100;
    // The kernel's demotion backs tierd up (without it there is no limit: see below).
    b.daemon.host.backstop.active = true;
    b.step();
    assert_eq!(b.moved(0, 1), 2048, "{:?}", b.daemon.moved());
    let backlog = format!("tierd_housekeeping_backlog_pages {}", want - 2048);
    assert!(b.daemon.parts.metrics.encode().contains(&backlog), "want {backlog}");
    // The kernel's figures follow the moves. Nothing drains node 0 any more: the rest is
    // housekeeping now, a batch a tick (its half interval is spent in the first), until done.
    set_free(&b.fx, [100 + 2048, 8000 - 2048, 8000]);
    b.step();
    assert_eq!(b.moved(0, 1), 3072, "{:?}", b.daemon.moved());
    set_free(&b.fx, [100 + 3072, 8000 - 3072, 8000]);
    b.step();
    assert_eq!(b.moved(0, 1), want, "{:?}", b.daemon.moved());
}

#[test]
fn without_the_backstop_an_urgent_tick_demotes_all_it_must() {
    // The same slow host and shortfall, the kernel's demotion off (`backstop = "off"`):
    // nothing else keeps reclaim from swapping, so the tick does not stop at the limit.
    let mut b = slow_bed([100, 8000, 8000], 0);
    assert!(!b.daemon.host.backstop.active);
    b.step();
    assert_eq!(b.moved(0, 1), 150 + 3276 - 100, "{:?}", b.daemon.moved());
}
