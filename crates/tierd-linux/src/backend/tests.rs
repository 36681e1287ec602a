use super::*;
use crate::fixture::{Fixture, FixtureMachine, FixtureNode};
use crate::mover::fake::{Call, FakeMover};
use crate::mover::{MoverLimits, PageBatch};
use crate::sys::SysError;
use crate::tracker::Vpn;
use crate::zoneinfo::{Watermarks, zoneinfo_text};
use tierd_core::PathGraph;

const PID: u32 = 42;
const PS: u64 = 4096;
const BASE: u64 = 0x7f00_0000_0000;
const MIB: u64 = 1 << 20;

fn id(n: usize) -> NodeId {
    NodeId::new(n).unwrap()
}

fn addrs(pid_base: u64, n: usize) -> Vec<usize> {
    (0..n as u64).map(|i| usize::try_from(pid_base + i * PS).unwrap()).collect()
}

fn page(pid: u32, i: u64) -> PageRef {
    PageRef { pid: Pid(pid), vpn: Vpn(BASE / PS + i) }
}

fn region(pid: u32, first: u64, pages: u64, accesses: u32, age: u32) -> Region {
    Region {
        pid: Pid(pid),
        start: BASE + first * PS,
        end: BASE + (first + pages) * PS,
        accesses,
        age,
    }
}

fn sample(regions: Vec<Region>, max_accesses: u32) -> Sample {
    Sample { regions, max_accesses, ..Sample::default() }
}

/// Nodes 0 (CPUs, 64 MiB, 32 free) and 1 (64 MiB, 48 free) with their zoneinfo.
fn machine() -> Fixture {
    let fx = FixtureMachine::new()
        .node(FixtureNode::new(0).cpu().memory(64 * MIB, 32 * MIB))
        .node(FixtureNode::new(1).memory(64 * MIB, 48 * MIB))
        .build()
        .unwrap();
    let zones: BTreeMap<NodeId, Watermarks> = [
        (id(0), Watermarks { min: 100, low: 125, high: 150, managed: 16384, free: 8192 }),
        (id(1), Watermarks { min: 90, low: 110, high: 130, managed: 16384, free: 12288 }),
    ]
    .into_iter()
    .collect();
    fx.write("proc/zoneinfo", zoneinfo_text(&zones)).unwrap();
    fx
}

/// A backend over `fx` whose pid 42 has `n` pages at `BASE`, all on node 0.
fn backend(fx: &Fixture, n: usize, per_call: usize) -> LinuxBackend<FakeMover> {
    let fake = FakeMover::new(PID, &addrs(BASE, n), id(0));
    let limits = MoverLimits { pages_per_call: per_call, ..MoverLimits::default() };
    let mut b = LinuxBackend::new(fx.root().clone(), Mover::new(fake, limits), PS);
    b.refresh().unwrap();
    b
}

fn queried_pages(b: &mut LinuxBackend<FakeMover>) -> usize {
    b.mover().os().calls.iter().map(|c| if let Call::Query(_, n) = c { *n } else { 0 }).sum()
}

#[test]
fn keeps_the_backend_contract_over_a_fixture_and_the_fake_mover() {
    let fx = machine();
    let mut b = backend(&fx, 16, 64);
    b.set_sample(sample(vec![region(PID, 0, 8, 0, 3), region(PID, 8, 8, 4, 1)], 20));
    // Node 1 has room for 6 pages: the contract moves 4 there, then fills it.
    b.mover().os().room.insert(id(1), 6);
    let at =
        tierd_core::backend::ContractNodes { cold: id(0), roomy: id(1), small: id(1), hot: id(0) };
    tierd_core::backend::backend_contract(&mut b, at);
    let log = b.take_moves();
    assert_eq!(log.moved.get(&(id(0), id(1))), Some(&6), "{log:?}");
    assert_eq!(b.mover().os().count_on(PID, id(1)), 6);
}

#[test]
fn housekeeping_time_ends_when_the_daemon_said() {
    let fx = machine();
    let mut b = backend(&fx, 0, 64);
    assert!(!b.out_of_time(), "no limit until one is set");
    // By the mover's clock (the fake's, which moves only when told).
    let now = b.now();
    b.set_housekeeping_until(Some(now + Duration::from_secs(3600)));
    assert!(!b.out_of_time());
    b.mover().os().clock += Duration::from_secs(3599);
    assert!(!b.out_of_time());
    b.mover().os().clock += Duration::from_secs(1);
    assert!(b.out_of_time());
    b.set_housekeeping_until(None);
    assert!(!b.out_of_time());
}

#[test]
fn refresh_reads_meminfo_and_zoneinfo_in_pages_and_absent_nodes_are_none() {
    let fx = machine();
    let mut b = backend(&fx, 0, 64);
    assert_eq!(b.memory_nodes().to_string(), "0-1");
    assert_eq!(
        b.node_memory(id(0)),
        Some(NodeMemory {
            total: 16384,
            free: 8192,
            wmark_min: 100,
            wmark_low: 125,
            wmark_high: 150
        })
    );
    assert_eq!(b.node_memory(id(2)), None);
    // Node 1 goes offline: its directory goes, and so does it from the view.
    fx.remove("sys/devices/system/node/node1").unwrap();
    b.refresh().unwrap();
    assert_eq!(b.memory_nodes().to_string(), "0");
    assert_eq!(b.node_memory(id(1)), None);
    // Without zoneinfo, refresh fails and the previous view stays.
    fx.remove("proc/zoneinfo").unwrap();
    let err = b.refresh().unwrap_err();
    assert!(matches!(err, Error::Missing { .. }), "{err:?}");
    assert_eq!(b.memory_nodes().to_string(), "0");
}

#[test]
fn coldest_ranks_regions_and_keeps_only_pages_on_the_node() {
    let fx = machine();
    let mut b = backend(&fx, 12, 64);
    // Pages 2 and 3 already live on node 1.
    for i in [2, 3] {
        b.mover().os().placement.insert((PID, addrs(BASE, 12)[i]), id(1));
    }
    b.set_sample(sample(
        vec![
            region(PID, 0, 4, 1, 9), // cold enough (threshold 1 of 20), but used once
            region(PID, 4, 2, 0, 1), // idle, young
            region(PID, 6, 2, 0, 5), // idle, old: first
            region(PID, 8, 4, 7, 9), // hot: never cold
        ],
        20,
    ));
    assert_eq!(b.cold_max_accesses(), 1);
    let mut out = Vec::new();
    b.coldest(id(0), 10, &mut out);
    let got: Vec<(PageRef, u32)> = out.iter().map(|h| (h.page, h.heat)).collect();
    let want = [(6, 0), (7, 0), (4, 0), (5, 0), (0, 1), (1, 1)];
    assert_eq!(got, want.map(|(i, h)| (page(PID, i), h)));
    let mut out = Vec::new();
    b.coldest(id(1), 10, &mut out);
    let got: Vec<PageRef> = out.iter().map(|h| h.page).collect();
    assert_eq!(got, [page(PID, 2), page(PID, 3)]);
    // A soft-dirty or idle sample (0 or 1 accesses): only 0 is cold.
    b.set_sample(sample(vec![region(PID, 0, 2, 1, 0), region(PID, 4, 2, 0, 0)], 1));
    assert_eq!(b.cold_max_accesses(), 0);
    let mut out = Vec::new();
    b.coldest(id(0), 10, &mut out);
    assert_eq!(out.iter().map(|h| h.page).collect::<Vec<_>>(), [page(PID, 4), page(PID, 5)]);
}

#[test]
fn hottest_ranks_busiest_first_and_reports_each_page_once_per_window() {
    let fx = machine();
    let mut b = backend(&fx, 8, 64);
    let regions = vec![
        region(PID, 0, 2, 3, 1),
        region(PID, 2, 2, 9, 1),
        region(PID, 4, 2, 0, 1), // idle: never hot
        region(PID, 6, 2, 3, 4), // as hot as the first, steadier
    ];
    b.set_sample(sample(regions.clone(), 20));
    let mut out = Vec::new();
    b.hottest(id(0), 3, &mut out);
    let got: Vec<(PageRef, u32)> = out.iter().map(|h| (h.page, h.heat)).collect();
    assert_eq!(got, [(page(PID, 2), 9), (page(PID, 3), 9), (page(PID, 6), 3)]);
    out.clear();
    b.hottest(id(0), 10, &mut out);
    let got: Vec<PageRef> = out.iter().map(|h| h.page).collect();
    assert_eq!(got, [page(PID, 7), page(PID, 0), page(PID, 1)], "the rest, once");
    out.clear();
    b.hottest(id(0), 10, &mut out);
    assert!(out.is_empty(), "each hot page once per window");
    b.set_sample(sample(regions, 20));
    b.hottest(id(0), 10, &mut out);
    assert_eq!(out.len(), 6, "a new window reports them again");
}

#[test]
fn a_scan_starts_with_the_regions_probed_on_its_node() {
    // The coldest region (10000 pages) lives on node 1; node 0's cold pages are in a
    // younger one. Node 0's scan probes both and walks its own first: it queries a few
    // probes and one chunk, not the 10000 pages ranked before its own.
    let fx = machine();
    let mut b = backend(&fx, 10_100, 4096);
    for a in &addrs(BASE, 10_000) {
        b.mover().os().placement.insert((PID, *a), id(1));
    }
    b.set_sample(sample(vec![region(PID, 0, 10_000, 0, 9), region(PID, 10_000, 100, 0, 1)], 20));
    let mut out = Vec::new();
    b.coldest(id(0), 10, &mut out);
    let got: Vec<PageRef> = out.iter().map(|h| h.page).collect();
    assert_eq!(got, (10_000..10_010).map(|i| page(PID, i)).collect::<Vec<_>>());
    let queried = queried_pages(&mut b);
    assert!(queried <= 2 * 4 + MIN_QUERY, "queried {queried} pages for 10");
    // Node 1's scan takes the coldest region first, as ranked.
    out.clear();
    b.coldest(id(1), 3, &mut out);
    assert_eq!(out.iter().map(|h| h.page).collect::<Vec<_>>(), [0, 1, 2].map(|i| page(PID, i)));
}

#[test]
fn the_hot_scan_keeps_the_hottest_first_whatever_the_probes_say() {
    // A hot region (9 accesses) whose probes are all on node 0 but whose page 5 is on
    // node 1, and a warm one (1 access) all on node 1: node 1's hot scan offers page 5
    // first.
    let fx = machine();
    let mut b = backend(&fx, 16, 64);
    b.mover().os().placement.insert((PID, addrs(BASE, 16)[5]), id(1));
    for i in 8..16 {
        b.mover().os().placement.insert((PID, addrs(BASE, 16)[i]), id(1));
    }
    b.set_sample(sample(vec![region(PID, 0, 8, 9, 1), region(PID, 8, 8, 1, 1)], 20));
    let mut out = Vec::new();
    b.hottest(id(1), 1, &mut out);
    assert_eq!(out.iter().map(|h| (h.page, h.heat)).collect::<Vec<_>>(), [(page(PID, 5), 9)]);
}

#[test]
fn placement_is_queried_once_per_window_and_only_as_far_as_needed() {
    let fx = machine();
    let n = 20_000;
    let mut b = backend(&fx, n, 4096);
    b.set_sample(sample(vec![region(PID, 0, n as u64, 0, 1)], 20));
    let mut out = Vec::new();
    b.coldest(id(0), 10, &mut out);
    assert_eq!(out.len(), 10);
    let first = queried_pages(&mut b);
    assert!(first <= MIN_QUERY + 3, "queried {first} pages of {n} for 10 (3 more probes)");
    // Node 1 has none of them: its walk queries the rest once, and a second walk of
    // node 1 or node 0 queries nothing again.
    out.clear();
    b.coldest(id(1), 10, &mut out);
    assert!(out.is_empty());
    assert_eq!(queried_pages(&mut b), n, "every page queried exactly once");
    b.coldest(id(1), 10, &mut out);
    b.coldest(id(0), 10, &mut out);
    assert_eq!(queried_pages(&mut b), n);
    assert_eq!(out.len(), 10, "node 0's walk goes on where it stopped");
    assert_eq!(out[0].page, page(PID, 10));
    assert_eq!(b.placement_cached(), n);
    // Moving cached pages queries nothing before the move.
    let before = b.mover().os().calls.len();
    let pages: Vec<PageRef> = out.iter().map(|h| h.page).collect();
    let mut status = Vec::new();
    b.move_pages(&pages, id(1), &mut status);
    let calls = &b.mover().os().calls[before..];
    assert_eq!(calls, [Call::Move(PID, 10, id(1)), Call::Query(PID, 10)], "the mover's own");
    // The next windows keep what they know (tierd's own moves update it) ...
    b.set_sample(sample(vec![region(PID, 0, n as u64, 0, 1)], 20));
    assert_eq!(b.placement_cached(), n);
    b.coldest(id(0), 10, &mut out);
    assert_eq!(queried_pages(&mut b), n + 10, "the mover's verification only, nothing again");
    // ... and every PLACEMENT_WINDOWS windows the cache is emptied and queried afresh.
    for _ in 1..PLACEMENT_WINDOWS {
        b.set_sample(sample(vec![region(PID, 0, 4, 0, 1)], 20));
    }
    assert_eq!(b.placement_cached(), 0);
}

#[test]
fn move_maps_each_result_in_the_callers_order_and_logs_it() {
    let fx = machine();
    let other = 7;
    let mut b = backend(&fx, 8, 64);
    let a = addrs(BASE, 8);
    {
        // The fake keys forced results by address alone: the other process's pages
        // live elsewhere. Pages 2 and 3 are swapped out and unmapped meanwhile.
        let fake = b.mover().os();
        for &x in &addrs(BASE + 100 * PS, 2) {
            fake.placement.insert((other, x), id(0));
        }
        fake.fail_once.insert(a[1], libc::EBUSY);
        fake.fail_once.insert(a[2], libc::ENOENT);
        fake.placement.remove(&(PID, a[2]));
        fake.placement.remove(&(PID, a[3]));
        fake.placement.insert((PID, a[4]), id(1)); // already there
    }
    b.set_sample(sample(vec![region(PID, 0, 8, 0, 1), region(other, 100, 2, 0, 1)], 20));
    let pages = [
        page(PID, 0),
        page(other, 100),
        page(PID, 1),
        page(PID, 2),
        page(PID, 3),
        page(PID, 4),
        page(other, 101),
        page(PID, 5),
    ];
    let mut status = Vec::new();
    b.move_pages(&pages, id(1), &mut status);
    assert_eq!(
        status,
        [
            Ok(id(1)),
            Ok(id(1)),
            Err(MoveError::Busy),
            // Each page's own answer: ENOENT from the move for page 2 (swapped out), EFAULT
            // for page 3 (the fake answers it for any page it does not hold).
            Err(MoveError::NoEnt),
            Err(MoveError::Fault),
            Ok(id(1)),
            Ok(id(1)),
            Ok(id(1)),
        ]
    );
    let log = b.take_moves();
    assert_eq!(log.moved, [((id(0), id(1)), 4)].into_iter().collect(), "not the one on 1");
    assert_eq!((log.busy_retry, log.gone, log.denied, log.no_room), (1, 2, 0, 0));
    assert_eq!(log.failures.get(&libc::EBUSY), Some(&1));
    assert_eq!(log.failures.get(&libc::ENOENT), Some(&1));
    assert_eq!(log.failures.get(&libc::EFAULT), Some(&1));
    assert!(log.denied_pids.is_empty());
    assert!(log.calls >= 4, "a pre-query, a move and a query for each pid: {}", log.calls);
    assert_eq!(b.take_moves(), MoveLog::default(), "taken");
    // The cached view follows the four moves.
    assert_eq!(b.node_memory(id(0)).unwrap().free, 8192 + 4);
    assert_eq!(b.node_memory(id(1)).unwrap().free, 12288 - 4);
    b.refresh().unwrap();
    assert_eq!(b.node_memory(id(0)).unwrap().free, 8192, "until the files are re-read");
}

#[test]
fn a_full_target_is_no_mem_and_pages_stay() {
    let fx = machine();
    let mut b = backend(&fx, 6, 64);
    b.mover().os().room.insert(id(1), 2);
    b.set_sample(sample(vec![region(PID, 0, 6, 0, 1)], 20));
    let pages: Vec<PageRef> = (0..6).map(|i| page(PID, i)).collect();
    let mut status = Vec::new();
    b.move_pages(&pages, id(1), &mut status);
    assert_eq!(status.iter().filter(|s| **s == Err(MoveError::NoMem)).count(), 4);
    assert_eq!(status[..2], [Ok(id(1)), Ok(id(1))]);
    let log = b.take_moves();
    assert_eq!((log.moved_total(), log.no_room), (2, 4));
    // The refused pages are still node 0's coldest in the next window.
    b.set_sample(sample(vec![region(PID, 0, 6, 0, 1)], 20));
    let mut out = Vec::new();
    b.coldest(id(0), 10, &mut out);
    assert_eq!(out.len(), 4);
}

#[test]
fn a_process_that_exits_mid_move_loses_nothing_and_never_panics() {
    let fx = machine();
    let mut b = backend(&fx, 10, 4);
    // The process exits after the mover's second batch; the first one was confirmed.
    b.mover().os().exit_after = Some((PID, 2));
    b.set_sample(sample(vec![region(PID, 0, 10, 0, 1)], 20));
    let mut out = Vec::new();
    b.coldest(id(0), 10, &mut out);
    let pages: Vec<PageRef> = out.iter().map(|h| h.page).collect();
    let mut status = Vec::new();
    b.move_pages(&pages, id(1), &mut status);
    assert_eq!(status.len(), 10);
    assert!(status[..4].iter().all(|s| *s == Ok(id(1))), "{status:?}");
    assert!(status[4..].iter().all(|s| *s == Err(MoveError::NoEnt)), "{status:?}");
    let log = b.take_moves();
    assert_eq!(log.moved_total(), 4);
    assert_eq!(log.gone, 6);
    assert_eq!(log.failures.get(&libc::ESRCH), Some(&6));
    // Gone for the rest of the window: no more calls for it.
    let calls = b.mover().os().calls.len();
    out.clear();
    b.coldest(id(0), 10, &mut out);
    b.move_pages(&pages, id(1), &mut status);
    assert!(out.is_empty());
    assert!(status.iter().all(|s| *s == Err(MoveError::NoEnt)));
    assert_eq!(b.mover().os().calls.len(), calls);
}

#[test]
fn another_process_in_the_same_request_moves_when_one_exits() {
    let fx = machine();
    let other = 7;
    let mut b = backend(&fx, 6, 2);
    for &x in &addrs(BASE + 100 * PS, 3) {
        b.mover().os().placement.insert((other, x), id(0));
    }
    b.mover().os().exit_after = Some((PID, 1));
    b.set_sample(sample(vec![region(PID, 0, 6, 0, 1), region(other, 100, 3, 0, 1)], 20));
    let mut pages: Vec<PageRef> = (0..6).map(|i| page(PID, i)).collect();
    pages.splice(1..1, (100..103).map(|i| page(other, i)));
    let mut status = Vec::new();
    b.move_pages(&pages, id(1), &mut status);
    let of = |pid: u32| -> Vec<MoveStatus> {
        pages.iter().zip(&status).filter(|(p, _)| p.pid == Pid(pid)).map(|(_, s)| *s).collect()
    };
    assert_eq!(of(other), [Ok(id(1)); 3]);
    assert_eq!(of(PID), [Err(MoveError::NoEnt); 6]);
    let log = b.take_moves();
    assert_eq!((log.moved_total(), log.gone), (3, 6), "{log:?}");
    assert_eq!(b.node_memory(id(1)).unwrap().free, 12288 - 3);
}

#[test]
fn a_process_gone_before_the_move_is_no_ent_for_every_page() {
    let fx = machine();
    let mut b = backend(&fx, 4, 64);
    b.set_sample(sample(vec![region(PID, 0, 4, 0, 1)], 20));
    b.mover().os().exited.push(PID);
    let pages: Vec<PageRef> = (0..4).map(|i| page(PID, i)).collect();
    let mut status = Vec::new();
    b.move_pages(&pages, id(1), &mut status);
    assert_eq!(status, [Err(MoveError::NoEnt); 4]);
    let log = b.take_moves();
    assert_eq!((log.gone, log.moved_total()), (4, 0));
}

#[test]
fn a_denied_process_is_reported_once() {
    let fx = machine();
    let mut b = backend(&fx, 4, 64);
    let a = addrs(BASE, 4);
    b.set_sample(sample(vec![region(PID, 0, 4, 0, 1)], 20));
    b.mover().os().fail_once.insert(a[0], libc::EPERM);
    b.mover().os().fail_once.insert(a[1], libc::EPERM);
    let mut status = Vec::new();
    b.move_pages(&[page(PID, 0)], id(1), &mut status);
    assert_eq!(status, [Err(MoveError::Perm)]);
    b.move_pages(&[page(PID, 1), page(PID, 2)], id(1), &mut status);
    assert_eq!(status, [Err(MoveError::Perm), Ok(id(1))]);
    let log = b.take_moves();
    assert_eq!(log.denied_pids, [PID], "once, however many pages");
    assert_eq!(log.denied, 2);
    assert_eq!(log.failures.get(&libc::EPERM), Some(&2));
    b.mover().os().fail_once.insert(a[3], libc::EACCES);
    b.move_pages(&[page(PID, 3)], id(1), &mut status);
    assert_eq!(status, [Err(MoveError::Access)]);
    assert!(b.take_moves().denied_pids.is_empty(), "already reported");
    // Once the tracker drops the process, a new one with its pid is reported again.
    b.set_sample(Sample { dropped: vec![Pid(PID)], ..Sample::default() });
    b.mover().os().fail_once.insert(a[3], libc::EACCES);
    b.move_pages(&[page(PID, 3)], id(1), &mut status);
    assert_eq!(b.take_moves().denied_pids, [PID]);
}

/// The fake, refusing every call over one pid (no right over the process), or only its
/// moves (tierd may look but not move: no `CAP_SYS_NICE`).
#[derive(Debug)]
struct Refusing(FakeMover, u32, bool);

impl Refusing {
    fn check(&self, pid: u32, query: bool) -> Result<(), SysError> {
        if pid == self.1 && !(query && self.2) {
            Err(SysError::Syscall {
                call: "move_pages",
                source: std::io::Error::from_raw_os_error(libc::EPERM),
            })
        } else {
            Ok(())
        }
    }
}

impl PageMover for Refusing {
    fn move_pages(&mut self, batch: PageBatch<'_>, to: NodeId) -> Result<(), SysError> {
        self.0.calls.push(Call::Move(batch.pid, batch.addrs.len(), to));
        self.check(batch.pid, false)?;
        self.0.move_pages(batch, to)
    }
    fn query(&mut self, batch: PageBatch<'_>) -> Result<(), SysError> {
        self.0.calls.push(Call::Query(batch.pid, batch.addrs.len()));
        self.check(batch.pid, true)?;
        self.0.query(batch)
    }
}

#[test]
fn a_process_tierd_has_no_right_over_is_skipped_and_reported_once() {
    let fx = machine();
    let denied = 9;
    let mut fake = FakeMover::new(PID, &addrs(BASE, 4), id(0));
    for &x in &addrs(BASE, 4) {
        fake.placement.insert((denied, x), id(0));
    }
    let mut b = LinuxBackend::new(
        fx.root().clone(),
        Mover::new(Refusing(fake, denied, false), MoverLimits::default()),
        PS,
    );
    b.refresh().unwrap();
    b.set_sample(sample(vec![region(denied, 0, 4, 0, 9), region(PID, 0, 4, 0, 1)], 20));
    let mut out = Vec::new();
    b.coldest(id(0), 8, &mut out);
    assert!(out.iter().all(|h| h.page.pid == Pid(PID)), "{out:?}");
    assert_eq!(out.len(), 4);
    let mut status = Vec::new();
    b.move_pages(&[page(denied, 0), page(PID, 0)], id(1), &mut status);
    assert_eq!(status, [Err(MoveError::Perm), Ok(id(1))]);
    let log = b.take_moves();
    assert_eq!(log.denied_pids, [denied]);
    let calls = b.mover().os().0.calls.len();
    b.move_pages(&[page(denied, 1)], id(1), &mut status);
    assert_eq!(status, [Err(MoveError::Perm)]);
    assert_eq!(b.mover().os().0.calls.len(), calls, "no call for a refused process");
    assert!(b.take_moves().denied_pids.is_empty());
}

#[test]
fn a_process_whose_moves_are_refused_is_denied_then_skipped() {
    let fx = machine();
    let fake = FakeMover::new(PID, &addrs(BASE, 6), id(0));
    let mut b = LinuxBackend::new(
        fx.root().clone(),
        Mover::new(Refusing(fake, PID, true), MoverLimits::default()),
        PS,
    );
    b.refresh().unwrap();
    b.set_sample(sample(vec![region(PID, 0, 6, 0, 1)], 20));
    let mut out = Vec::new();
    b.coldest(id(0), 4, &mut out);
    assert_eq!(out.len(), 4, "queries are allowed");
    let pages: Vec<PageRef> = out.iter().map(|h| h.page).collect();
    let mut status = Vec::new();
    b.move_pages(&pages, id(1), &mut status);
    assert_eq!(status, [Err(MoveError::Perm); 4]);
    let log = b.take_moves();
    assert_eq!((log.denied, log.moved_total()), (4, 0));
    assert_eq!(log.failures.get(&libc::EPERM), Some(&4));
    assert_eq!(log.denied_pids, [PID]);
    assert_eq!(b.node_memory(id(0)).unwrap().free, 8192, "nothing moved");
    out.clear();
    b.coldest(id(0), 4, &mut out);
    assert!(out.is_empty(), "skipped until the tracker drops it");
}

#[test]
fn a_page_seen_gone_and_back_is_logged_when_it_moves() {
    let fx = machine();
    let mut b = backend(&fx, 2, 64);
    let a = addrs(BASE, 2);
    let on0 = b.mover().os().placement.remove(&(PID, a[1])).unwrap();
    b.set_sample(sample(vec![region(PID, 0, 2, 0, 1)], 20));
    let mut out = Vec::new();
    b.coldest(id(0), 4, &mut out);
    assert_eq!(out.len(), 1, "page 1 is not present");
    // Swapped back in, on node 0, before the policy moves it.
    b.mover().os().placement.insert((PID, a[1]), on0);
    let mut status = Vec::new();
    b.move_pages(&[page(PID, 1)], id(1), &mut status);
    assert_eq!(status, [Ok(id(1))]);
    assert_eq!(b.take_moves().moved.get(&(id(0), id(1))), Some(&1));
}

/// Whatever the kernel answers per page (busy, refused, unmapped, already there, a full
/// target), every page of a request is accounted for exactly once, the statuses agree
/// with the log, and the fake's placement with both.
#[test]
fn no_page_is_lost_or_counted_twice_whatever_the_kernel_answers() {
    let answers = ["moves", "moves", "moves", "busy", "there", "unmapped", "eperm", "eacces"];
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = |n: usize| {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        usize::try_from(seed >> 33).unwrap() % n
    };
    let fx = machine();
    for round in 0..50 {
        let n = 1 + next(40);
        let mut b = backend(&fx, n, 1 + next(16));
        let a = addrs(BASE, n);
        let room = next(n + 1) as u64;
        {
            let fake = b.mover().os();
            fake.room.insert(id(1), room);
            for &x in &a {
                match answers[next(answers.len())] {
                    "busy" => drop(fake.fail_once.insert(x, libc::EBUSY)),
                    "eperm" => drop(fake.fail_once.insert(x, libc::EPERM)),
                    "eacces" => drop(fake.fail_once.insert(x, libc::EACCES)),
                    "there" => drop(fake.placement.insert((PID, x), id(1))),
                    // Unmapped for good: the move and the query both say EFAULT.
                    "unmapped" => drop(fake.placement.remove(&(PID, x))),
                    _ => {}
                }
            }
        }
        let already = b.mover().os().count_on(PID, id(1)) as u64;
        b.set_sample(sample(vec![region(PID, 0, n as u64, 0, 1)], 20));
        let pages: Vec<PageRef> = (0..n as u64).map(|i| page(PID, i)).collect();
        let mut status = Vec::new();
        b.move_pages(&pages, id(1), &mut status);
        let log = b.take_moves();
        let ok = status.iter().filter(|s| s.is_ok()).count() as u64;
        let count = |e: MoveError| status.iter().filter(|s| **s == Err(e)).count() as u64;
        assert_eq!(status.len(), n, "round {round}");
        assert_eq!(ok, log.moved_total() + already, "round {round}: {status:?} {log:?}");
        assert_eq!(b.mover().os().count_on(PID, id(1)) as u64, ok, "round {round}");
        assert_eq!(count(MoveError::Busy), log.busy_retry, "round {round}");
        assert_eq!(count(MoveError::NoMem), log.no_room, "round {round}");
        assert_eq!(count(MoveError::Fault) + count(MoveError::NoEnt), log.gone, "round {round}");
        assert_eq!(count(MoveError::Perm) + count(MoveError::Access), log.denied, "round {round}");
        let failed: u64 = log.failures.values().sum();
        assert!(failed >= log.busy_retry + log.gone + log.denied, "round {round}: {log:?}");
        assert_eq!(b.node_memory(id(0)).unwrap().free, 8192 + log.moved_total(), "round {round}");
    }
}

#[test]
fn a_huge_page_entry_reported_busy_that_moved_is_ok() {
    let fx = machine();
    let mut b = backend(&fx, 4, 64);
    let a = addrs(BASE, 4);
    b.mover().os().busy_but_moved.push(a[1]);
    b.mover().os().fail_once.insert(a[2], libc::EBUSY);
    b.set_sample(sample(vec![region(PID, 0, 4, 0, 1)], 20));
    let pages: Vec<PageRef> = (0..4).map(|i| page(PID, i)).collect();
    let mut status = Vec::new();
    b.move_pages(&pages, id(1), &mut status);
    assert_eq!(status, [Ok(id(1)), Ok(id(1)), Err(MoveError::Busy), Ok(id(1))]);
    let log = b.take_moves();
    assert_eq!((log.moved_total(), log.busy_retry), (3, 1));
    // The busy page is retried and moves; the log says so.
    b.move_pages(&pages[2..3], id(1), &mut status);
    assert_eq!(status, [Ok(id(1))]);
    assert_eq!(b.take_moves().moved.get(&(id(0), id(1))), Some(&1));
}

#[test]
fn an_empty_or_unknown_request_is_harmless() {
    let fx = machine();
    let mut b = backend(&fx, 2, 64);
    let mut status = vec![Ok(id(0))];
    b.move_pages(&[], id(1), &mut status);
    assert!(status.is_empty());
    let mut out = Vec::new();
    b.coldest(id(0), 4, &mut out);
    b.hottest(id(5), 4, &mut out);
    assert!(out.is_empty(), "no sample, no pages");
    // A page the fake never heard of (the process unmapped it): EFAULT, nothing logged.
    b.move_pages(&[page(PID, 50)], id(1), &mut status);
    assert_eq!(status, [Err(MoveError::Fault)]);
    assert_eq!(b.take_moves().moved_total(), 0);
}

/// The backend on the kernel this test runs on, over this test's own buffer: its node
/// files read cleanly, the placement query finds every page of the buffer on some memory
/// node, and moving them to the node they are on succeeds and logs no move. Skips, saying
/// why, where `/sys` has no NUMA node files; under `CI=true` that is a failure.
#[test]
fn the_running_kernel_serves_the_backend() {
    use crate::mover::SysMover;
    let Some(root) = crate::root::running_kernel() else { return };
    let ps = crate::sys::page_size() as u64;
    let mover = Mover::new(SysMover::new(false), MoverLimits::default());
    let mut b = LinuxBackend::new(root, mover, ps);
    b.refresh().unwrap();
    assert!(!b.memory_nodes().is_empty());
    for node in b.memory_nodes().iter() {
        let m = b.node_memory(node).unwrap();
        assert!(m.total > 0 && m.free <= m.total, "node {node}: {m:?}");
        assert!(m.wmark_min <= m.wmark_low && m.wmark_low <= m.wmark_high, "{m:?}");
    }
    let pages = 32;
    let buf = vec![1u8; usize::try_from((pages + 1) * ps).unwrap()];
    let start = (buf.as_ptr() as u64).div_ceil(ps) * ps;
    let pid = std::process::id();
    b.set_sample(sample(
        vec![Region { pid: Pid(pid), start, end: start + pages * ps, accesses: 0, age: 1 }],
        1,
    ));
    let mut found = 0;
    for node in b.memory_nodes().iter() {
        let mut out = Vec::new();
        b.coldest(node, 64, &mut out);
        found += out.len();
        let refs: Vec<PageRef> = out.iter().map(|h| h.page).collect();
        let mut status = Vec::new();
        b.move_pages(&refs, node, &mut status);
        assert!(status.iter().all(|s| *s == Ok(node)), "node {node}: {status:?}");
    }
    assert_eq!(found, usize::try_from(pages).unwrap(), "every page of the buffer, once");
    let log = b.take_moves();
    assert_eq!(log.moved_total(), 0, "{log:?}");
    assert!(log.failures.is_empty(), "{log:?}");
    assert!(buf.iter().all(|&x| x == 1));
}

/// A backend over `fx` with 4000 pages of [`PID`], the first 2000 used 5 times in the window
/// and the rest idle, and the path `0 -> 1`.
fn warm_and_cold(fx: &Fixture) -> (LinuxBackend<FakeMover>, tierd_core::Topology, PathGraph) {
    let mut b = backend(fx, 4000, 512);
    b.set_sample(sample(vec![region(PID, 0, 2000, 5, 1), region(PID, 2000, 2000, 0, 1)], 20));
    let topo = crate::read_topology(fx.root()).unwrap();
    let graph = PathGraph::from_toml("[node.0]\ntarget = 1\n").unwrap();
    (b, topo, graph)
}

#[test]
fn keeps_the_policy_contract() {
    let fx = machine();
    let (mut b, topo, graph) = warm_and_cold(&fx);
    tierd_core::backend::policy_contract(&mut b, &topo, &graph, id(0));
}

#[test]
fn the_policy_demotes_node_zeros_coldest_pages_through_the_backend() {
    use tierd_core::policy::{PolicyConfig, Tierd};
    let fx = machine();
    // Node 0: 16384 pages, 8192 free, high 150. A 60% headroom wants 150 + 9830 free:
    // about 1788 pages move, the coldest first.
    let (mut b, topo, graph) = warm_and_cold(&fx);
    let config = PolicyConfig { headroom_pct: 60.0, promote: false, ..PolicyConfig::default() };
    let mut p = Tierd::new(config, &topo, &graph);
    let stats = p.tick(0, &mut b);
    let log = b.take_moves();
    assert_eq!(stats.demoted, log.moved_total());
    assert_eq!(log.moved_total(), 150 + 9830 - 8192);
    // Only idle pages went (the first region is above the cold threshold).
    let moved_hot = (0..2000)
        .filter(|&i| b.mover().os().placement[&(PID, addrs(BASE, 4000)[i])] == id(1))
        .count();
    assert_eq!(moved_hot, 0);
}

/// Writes `value` at entry `index` of the binary file `path` (8 bytes each, little endian),
/// making it as long as needed (sparse): a `pagemap` or `kpageflags` fixture.
fn put_entry(path: &std::path::Path, index: u64, value: u64) {
    use std::os::unix::fs::FileExt;
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let f =
        std::fs::OpenOptions::new().create(true).write(true).truncate(false).open(path).unwrap();
    f.write_all_at(&value.to_le_bytes(), index * 8).unwrap();
}

/// Pid 42's pages 0..512 at `BASE` as one transparent huge page at frames 0x4000.., with
/// huge pages in node 0's meminfo when `in_meminfo`.
fn huge_page_fixture(fx: &Fixture, in_meminfo: bool) {
    use crate::folio::{KPF_COMPOUND_HEAD, KPF_COMPOUND_TAIL, KPF_THP};
    let pagemap = fx.root().proc.join(format!("{PID}/pagemap"));
    let kpageflags = fx.root().proc.join("kpageflags");
    for i in 0..512 {
        put_entry(&pagemap, BASE / PS + i, (1 << 63) | (0x4000 + i));
        let kind = if i == 0 { KPF_COMPOUND_HEAD } else { KPF_COMPOUND_TAIL };
        put_entry(&kpageflags, 0x4000 + i, KPF_THP | kind);
    }
    let meminfo = fx.root().node_dir(id(0)).join("meminfo");
    let mut text = std::fs::read_to_string(&meminfo).unwrap();
    if in_meminfo {
        text.push_str("Node 0 AnonHugePages:      2048 kB\n");
    }
    std::fs::write(&meminfo, text).unwrap();
}

#[test]
fn a_moved_huge_page_is_logged_as_its_base_pages_once() {
    let fx = machine();
    huge_page_fixture(&fx, true);
    let mut b = backend(&fx, 512, 64);
    b.set_sample(sample(vec![region(PID, 0, 512, 0, 1)], 20));
    let free = |b: &LinuxBackend<FakeMover>, n| b.node_memory(id(n)).unwrap().free;
    let (free0, free1) = (free(&b, 0), free(&b, 1));
    // Two entries of the huge page in one call: the kernel moves it once, 512 base pages.
    let mut status = Vec::new();
    b.move_pages(&[page(PID, 3), page(PID, 300)], id(1), &mut status);
    assert_eq!(status, [Ok(id(1)), Ok(id(1))]);
    assert_eq!(b.folios.blocks_read(), 1, "the second entry is in the span the first found");
    let log = b.take_moves();
    assert_eq!(log.moved.get(&(id(0), id(1))), Some(&512));
    assert_eq!((free(&b, 0), free(&b, 1)), (free0 + 512, free1 - 512));
    // Its other pages are on node 1 now: a scan of node 0 offers none of them, and a later
    // move naming another of its entries logs nothing more.
    let mut cold = Vec::new();
    b.coldest(id(0), 512, &mut cold);
    assert!(cold.is_empty(), "{cold:?}");
    b.move_pages(&[page(PID, 7)], id(1), &mut status);
    assert_eq!(b.take_moves().moved_total(), 0);
}

#[test]
fn without_huge_pages_in_meminfo_a_page_counts_one_and_kpageflags_is_not_read() {
    let fx = machine();
    huge_page_fixture(&fx, false);
    let mut b = backend(&fx, 512, 64);
    b.set_sample(sample(vec![region(PID, 0, 512, 0, 1)], 20));
    let mut status = Vec::new();
    b.move_pages(&[page(PID, 3), page(PID, 300)], id(1), &mut status);
    assert_eq!(b.take_moves().moved.get(&(id(0), id(1))), Some(&2));
}
