//! The acceptance properties of the simulator (issue 4): conservation of pages, no work
//! without pressure, demotion off = swap, moves only along the graph, hot sets stay in
//! DRAM, no policy above the Belady bound, deterministic output.

#![allow(clippy::cast_precision_loss)]

use proptest::prelude::*;
use tierd_sim::run::{Setup, replay, run_policy};
use tierd_sim::{PolicyName, RunOptions, Scenario, simulate, workload};

const ALL: [PolicyName; 3] = [PolicyName::LinuxSwap, PolicyName::LinuxDemote, PolicyName::Tierd];

/// A small three-node machine (MiB sizes) with the given paths and process tables.
fn scenario(caps: [u64; 3], paths: &str, accesses: u64, processes: &str) -> Scenario {
    let text = format!(
        r#"
name = "test"
seed = 7
accesses = {accesses}
paths = "{paths}"
[[node]]
id = 0
capacity_mib = {}
cpu = true
latency_ns = 80
[[node]]
id = 1
capacity_mib = {}
latency_ns = 180
[[node]]
id = 2
capacity_mib = {}
latency_ns = 350
[policy]
interval_ms = 1
pingpong_ms = 5
{processes}
"#,
        caps[0], caps[1], caps[2]
    );
    Scenario::from_toml(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn zipf(mib: u64, bind: Option<&str>, prefault: bool) -> String {
    let bind = bind.map(|b| format!("bind = \"{b}\"\n")).unwrap_or_default();
    format!(
        "[[process]]\n{bind}[process.workload]\nkind = \"zipf\"\nfootprint_mib = {mib}\nprefault = {prefault}\n"
    )
}

fn checked() -> RunOptions {
    RunOptions { check: true, ..RunOptions::default() }
}

#[test]
fn pages_are_conserved_under_every_policy() {
    let two = format!(
        "{}[[process]]\n[process.workload]\nkind = \"phases\"\n[[process.workload.phase]]\naccesses = 5000\n[process.workload.phase.workload]\nkind = \"scan\"\nfootprint_mib = 6\n[[process.workload.phase]]\naccesses = 5000\n[process.workload.phase.workload]\nkind = \"gups\"\nfootprint_mib = 3\n",
        zipf(8, Some("0"), true)
    );
    for procs in [zipf(12, Some("0"), true), zipf(12, None, true), two] {
        let s = scenario([4, 4, 8], "0 -> 1 -> 2", 200_000, &procs);
        let setup = Setup::new(&s).unwrap();
        let trace = workload::draw(&s).unwrap();
        for p in ALL {
            let (r, m) = replay(&s, &setup, &trace, p, &checked(), &mut |_, _| {}).unwrap();
            // resident + swapped = touched; every access served or faulted.
            let resident: u64 = (0..m.node_count()).map(|i| m.used(i)).sum();
            assert_eq!(resident + m.swap_used(), m.touched(), "{}", r.policy);
            let served: u64 = r.accesses_per_node.iter().sum();
            assert_eq!(served + r.first_touches + r.swap_ins + r.oom, 200_000, "{}", r.policy);
            assert_eq!(r.oom, 0);
        }
    }
}

#[test]
fn no_pressure_no_work() {
    let s = scenario([64, 4, 8], "0 -> 1 -> 2", 100_000, &zipf(16, None, true));
    let report = simulate(&s, &checked(), &mut |_, _| {}).unwrap();
    for r in &report.policies {
        assert_eq!((r.swap_ins, r.swap_outs, r.demotions, r.promotions), (0, 0, 0, 0), "{r:?}");
        assert!(r.migrated_mib.abs() < f64::EPSILON);
        assert_eq!(r.accesses_per_node[1..], [0, 0]);
    }
}

#[test]
fn all_terminal_demote_equals_swap() {
    let s = scenario([4, 4, 8], "0", 200_000, &zipf(12, Some("0"), true));
    let report = simulate(&s, &checked(), &mut |_, _| {}).unwrap();
    let (mut a, mut b) = (report.policies[0].clone(), report.policies[1].clone());
    assert!(a.swap_ins > 0, "the test needs pressure");
    a.policy = "";
    b.policy = "";
    a.wall_s = 0.0;
    b.wall_s = 0.0;
    assert_eq!(a, b);
}

#[test]
fn moves_follow_the_graph() {
    // Fallbacks too: node 0 demotes to 1, falling back to 2.
    for paths in ["0 -> 1 -> 2", "0 -> 2", "auto"] {
        for procs in [zipf(14, Some("0"), true), zipf(14, None, true)] {
            let s = scenario([4, 4, 8], paths, 200_000, &procs);
            let setup = Setup::new(&s).unwrap();
            let report = simulate(&s, &checked(), &mut |_, _| {}).unwrap();
            for r in &report.policies {
                for (from, row) in r.moves.iter().enumerate() {
                    for (to, &count) in row.iter().enumerate() {
                        if count == 0 {
                            continue;
                        }
                        let id = |n: usize| tierd_core::NodeId::new(n).unwrap();
                        let down = setup.graph.entry(id(from)).destinations().any(|d| d == id(to));
                        // Up: `from` is reachable from `to` along the graph.
                        let mut reach = vec![to];
                        let mut up = false;
                        while let Some(n) = reach.pop() {
                            for d in setup.graph.entry(id(n)).destinations() {
                                up |= d.index() == from;
                                reach.push(d.index());
                            }
                        }
                        assert!(
                            down || up,
                            "{paths}: {} moved {count} pages {from} -> {to}",
                            r.policy
                        );
                        if r.policy != "tierd" {
                            assert!(down, "{}: only tierd promotes", r.policy);
                        }
                    }
                }
            }
        }
    }
}

/// Once warm, a hot set that fits in DRAM stays there while cold pages stream through, under
/// every policy; and the policies that can bring pages back (swap-in, promotion) end with
/// all of it in DRAM. (Linux's demotion never promotes, so a hot page it demoted during the
/// cold start, when every page is young at once, stays below for good.)
#[test]
fn a_hot_set_that_fits_stays_in_dram() {
    let procs = "[[process]]\n[process.workload]\nkind = \"hotset-shift\"\nfootprint_mib = 16\nhot_mib = 1\nhot_fraction = 0.9\nshift_every = 1000000000\n";
    for bind in ["0", "0-2"] {
        let procs = procs.replace("[[process]]\n", &format!("[[process]]\nbind = \"{bind}\"\n"));
        let s = scenario([4, 8, 8], "0 -> 1 -> 2", 400_000, &procs);
        let setup = Setup::new(&s).unwrap();
        let trace = workload::draw(&s).unwrap();
        for p in ALL {
            // The hot set is the first 256 pages (offset 0, never shifted).
            let mut warm: Vec<u32> = Vec::new();
            let mut observe = |m: &tierd_sim::machine::Machine, done: u64| {
                if done == 200_704 {
                    warm = (0..256).filter(|&pg| m.slot_of(pg) == Some(0)).collect();
                }
            };
            let (r, m) = replay(&s, &setup, &trace, p, &checked(), &mut observe).unwrap();
            assert!(
                warm.len() >= 200,
                "{bind} {}: only {} hot pages in DRAM",
                r.policy,
                warm.len()
            );
            let left = warm.iter().filter(|&&pg| m.slot_of(pg) != Some(0)).count();
            assert_eq!(left, 0, "{bind} {}: {left} warm hot pages left DRAM", r.policy);
            if p != PolicyName::LinuxDemote {
                let away = (0..256).filter(|&pg| m.slot_of(pg) != Some(0)).count();
                assert_eq!(away, 0, "{bind} {}: {away} hot pages out of DRAM", r.policy);
            }
        }
    }
}

#[test]
fn same_seed_same_json() {
    let s = scenario([4, 4, 8], "auto", 100_000, &zipf(12, Some("0"), true));
    let a = serde_json::to_string(&simulate(&s, &RunOptions::default(), &mut |_, _| {}).unwrap());
    let b = serde_json::to_string(&simulate(&s, &RunOptions::default(), &mut |_, _| {}).unwrap());
    assert_eq!(a.unwrap(), b.unwrap());
}

/// A run replays the trace while it is drawn, in chunks, on several threads: its report is
/// the one each policy gives replaying the whole drawn trace alone, and its bounds those of
/// the whole trace (2.5 M accesses: several chunks of the draw).
#[test]
fn the_pipelined_run_reports_what_one_policy_at_a_time_does() {
    let two = format!("{}{}", zipf(6, Some("0"), true), zipf(6, None, false));
    let s = scenario([4, 4, 8], "0 -> 1 -> 2", 2_500_000, &two);
    let report = simulate(&s, &RunOptions::default(), &mut |_, _| {}).unwrap();
    let setup = Setup::new(&s).unwrap();
    let trace = workload::draw(&s).unwrap();
    assert_eq!(report.policies.len(), 3);
    for (got, &p) in report.policies.iter().zip(&s.policies) {
        let mut want =
            run_policy(&s, &setup, &trace, p, &RunOptions::default(), &mut |_| {}).unwrap();
        let mut got = got.clone();
        (got.wall_s, want.wall_s) = (0.0, 0.0);
        assert_eq!(got, want);
    }
    let b = report.bounds.unwrap();
    let pages = trace.pages() as usize;
    let nodes: Vec<(u64, u64, bool)> = setup
        .machine
        .nodes
        .iter()
        .zip(&setup.fast)
        .map(|(n, f)| (n.total, n.latency_ns, *f))
        .collect();
    let belady = tierd_sim::bounds::belady_bypass(&trace.accesses, pages, nodes[0].0);
    assert_eq!(b.belady_fast_hit_ratio, Some(belady));
    let (first, fault) = (s.costs.first_touch_ns, s.swap.fault_us * 1000);
    let st = tierd_sim::bounds::static_top_k(&trace.accesses, pages, &nodes, first, fault);
    assert_eq!((b.static_fast_hit_ratio, b.static_amat_ns), (st.fast_hit_ratio, st.amat_ns));
}

#[test]
fn the_default_scenario_parses_and_runs_short() {
    let s = Scenario::default_scenario();
    let opts = RunOptions { accesses: Some(50_000), ..RunOptions::default() };
    let r = simulate(&s, &opts, &mut |_, _| {}).unwrap();
    assert_eq!(r.policies.len(), 3);
}

fn workload_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        (2u64..10, any::<bool>()).prop_map(|(m, pf)| format!(
            "kind = \"zipf\"\nfootprint_mib = {m}\nexponent = 0.9\nprefault = {pf}\n"
        )),
        (2u64..10, 1u64..2).prop_map(|(m, h)| format!(
            "kind = \"hotset-shift\"\nfootprint_mib = {m}\nhot_mib = {h}\nshift_every = 20000\n"
        )),
        (2u64..10).prop_map(|m| format!("kind = \"scan\"\nfootprint_mib = {m}\n")),
        (2u64..10).prop_map(|m| format!("kind = \"gups\"\nfootprint_mib = {m}\n")),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Conservation after every chunk, and no policy above Belady-with-bypass, on random
    /// small machines and workloads.
    #[test]
    fn random_scenarios_hold_the_invariants(
        caps in (1u64..6, 1u64..6, 2u64..8),
        chain in prop_oneof![Just("0 -> 1 -> 2"), Just("0 -> 2"), Just("auto"), Just("0")],
        w1 in workload_strategy(),
        w2 in proptest::option::of(workload_strategy()),
        bind in any::<bool>(),
        seed in 0u64..1000,
    ) {
        let bind = if bind { "bind = \"0\"\n" } else { "" };
        let mut procs = format!("[[process]]\n{bind}[process.workload]\n{w1}");
        if let Some(w2) = w2 {
            procs = format!("{procs}[[process]]\n[process.workload]\n{w2}");
        }
        let mut s = scenario([caps.0, caps.1, caps.2], chain, 40_000, &procs);
        s.seed = seed;
        let report = simulate(&s, &checked(), &mut |_, _| {}).unwrap();
        let bound = report.bounds.as_ref().unwrap().belady_fast_hit_ratio.unwrap();
        for r in &report.policies {
            prop_assert!(r.fast_hit_ratio <= bound + 1e-12, "{} {} > {bound}", r.policy, r.fast_hit_ratio);
        }
    }
}

/// The simulator keeps the contract every backend keeps.
#[test]
fn the_machine_keeps_the_backend_contract() {
    use tierd_core::NodeId;
    use tierd_core::backend::{Backend, ContractNodes, backend_contract};
    let id = |n| NodeId::new(n).unwrap();
    // A 3 MiB workload on node 0; node 1 (1 MiB) fills up, node 2 has room.
    let s = scenario([4, 1, 8], "0 -> 1 -> 2", 50_000, &zipf(3, Some("0"), true));
    let setup = Setup::new(&s).unwrap();
    let trace = workload::draw(&s).unwrap();
    let mut cfg = setup.machine.clone();
    cfg.promotable = vec![false, true, true];
    let mut m = tierd_sim::machine::Machine::new(cfg);
    m.run(&trace.accesses);
    // Node 2's hot pages: 32 of node 0's pages, moved there and touched twice in a new
    // window (without `coldest`, so that a backend whose `coldest` finds nothing fails in
    // the contract, not here).
    let pages: Vec<u32> = (0..u32::try_from(m.pages()).unwrap())
        .filter(|&p| m.slot_of(p) == Some(0))
        .take(32)
        .collect();
    assert_eq!(pages.len(), 32, "the workload is on node 0");
    let mut status = Vec::new();
    m.move_pages(&pages, id(2), &mut status);
    assert!(status.iter().all(Result::is_ok), "{status:?}");
    m.end_window();
    let twice: Vec<u32> = pages.iter().flat_map(|&p| [p, p]).collect();
    m.run(&twice);
    backend_contract(&mut m, ContractNodes { cold: id(0), roomy: id(2), small: id(1), hot: id(2) });
    m.check().unwrap();
}

/// The simulator keeps the policy's contract, the same one the Linux backend keeps.
#[test]
fn the_machine_keeps_the_policy_contract() {
    let s = scenario([4, 4, 8], "0 -> 1 -> 2", 50_000, &zipf(3, Some("0"), true));
    let setup = Setup::new(&s).unwrap();
    let trace = workload::draw(&s).unwrap();
    let (_, mut m) =
        replay(&s, &setup, &trace, PolicyName::LinuxSwap, &checked(), &mut |_, _| {}).unwrap();
    let node0 = tierd_core::NodeId::new(0).unwrap();
    // Age the pages once so that some are idle, as a tracker's window would.
    let mut cold = Vec::new();
    tierd_core::backend::Backend::coldest(&mut m, node0, 64, &mut cold);
    tierd_core::backend::policy_contract(&mut m, &setup.topology, &setup.graph, node0);
    m.check().unwrap();
}

/// A recorded trace replayed from disk (streamed) gives the same results as the drawn one.
#[test]
fn a_recorded_trace_replays_the_same() {
    let s = scenario([4, 4, 8], "0 -> 1 -> 2", 150_000, &zipf(12, Some("0"), true));
    let drawn = simulate(&s, &RunOptions::default(), &mut |_, _| {}).unwrap();
    let trace = workload::draw(&s).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("zipf.trace");
    let mut file = std::fs::File::create(&path).unwrap();
    tierd_sim::tracefile::write_trace(&mut file, 4096, u64::from(trace.pages()), &trace.accesses)
        .unwrap();
    drop(file);
    let procs =
        "[[process]]\nbind = \"0\"\n[process.workload]\nkind = \"trace\"\npath = \"zipf.trace\"\n";
    let mut replayed = scenario([4, 4, 8], "0 -> 1 -> 2", 150_000, procs);
    replayed.open_traces(Some(dir.path())).unwrap();
    let streamed = simulate(&replayed, &RunOptions::default(), &mut |_, _| {}).unwrap();
    assert_eq!(streamed.pages, drawn.pages);
    for (a, b) in drawn.policies.iter().zip(&streamed.policies) {
        let (mut a, mut b) = (a.clone(), b.clone());
        a.wall_s = 0.0;
        b.wall_s = 0.0;
        assert_eq!(a, b);
    }
    let (da, sa) = (drawn.bounds.unwrap(), streamed.bounds.unwrap());
    assert!((da.static_fast_hit_ratio - sa.static_fast_hit_ratio).abs() < 1e-12);
    assert!(sa.belady_fast_hit_ratio.is_none(), "no Belady bound on a streamed trace");
    // Streaming a drawn workload is the same as holding it.
    let opts = RunOptions { stream: true, ..RunOptions::default() };
    let again = simulate(&s, &opts, &mut |_, _| {}).unwrap();
    assert_eq!(again.policies[2].amat_ns.to_bits(), drawn.policies[2].amat_ns.to_bits());
}

/// One process of a page-cache mix: anonymous or file-backed (with a dirty fraction).
fn mixed_process() -> impl Strategy<Value = String> {
    (workload_strategy(), any::<bool>(), 0u32..=4, any::<bool>()).prop_map(
        |(w, file, dirty, bind)| {
            let bind = if bind { "bind = \"0\"\n" } else { "" };
            let memory = if file {
                format!("memory = \"file\"\ndirty_fraction = {}\n", f64::from(dirty) / 4.0)
            } else {
                String::new()
            };
            format!("[[process]]\n{bind}{memory}[process.workload]\n{w}")
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Random mixes of anonymous and file-backed processes, under every reclaim mode (swap,
    /// demotion, tierd with and without kernel demotion), with and without swap, at any
    /// swappiness: the checked run holds every invariant after each chunk (pages on exactly
    /// one list of their own kind, free + used per node, swap slots, dirty bits), every
    /// access is served or faulted, and every touched page is resident, swapped or evicted.
    #[test]
    fn page_cache_mixes_hold_the_invariants(
        caps in (1u64..6, 1u64..6, 2u64..8),
        chain in prop_oneof![Just("0 -> 1 -> 2"), Just("0 -> 2"), Just("0")],
        procs in proptest::collection::vec(mixed_process(), 1..4),
        swap_mib in prop_oneof![Just(0u64), Just(2), Just(64)],
        swappiness in 0u64..=200,
        kernel_demotion in any::<bool>(),
        seed in 0u64..1000,
    ) {
        let procs = format!(
            "{}[swap]\nsize_mib = {swap_mib}\n[reclaim]\nswappiness = {swappiness}\n\
             [costs]\nkernel_demotion_under_tierd = {kernel_demotion}\n",
            procs.concat()
        );
        let mut s = scenario([caps.0, caps.1, caps.2], chain, 30_000, &procs);
        s.seed = seed;
        let setup = Setup::new(&s).unwrap();
        let trace = workload::draw(&s).unwrap();
        let any_file = s.process.iter().any(|p| p.memory == tierd_sim::scenario::MemoryKind::File);
        for p in ALL {
            let (r, m) = replay(&s, &setup, &trace, p, &checked(), &mut |_, _| {}).unwrap();
            let resident: u64 = (0..m.node_count()).map(|i| m.used(i)).sum();
            prop_assert_eq!(resident + m.swap_used() + m.evicted_file_pages(), m.touched());
            let file: u64 = (0..m.node_count()).map(|i| m.file_pages(i)).sum();
            prop_assert!(file <= resident);
            let served: u64 = r.accesses_per_node.iter().sum();
            prop_assert_eq!(
                served + r.first_touches + r.swap_ins + r.refaults_file + r.oom + r.killed_accesses,
                30_000,
                "{}", r.policy
            );
            prop_assert!(r.disk_reads >= r.refaults_file);
            prop_assert!(r.disk_writes <= r.file_drops);
            if !any_file {
                prop_assert_eq!((r.disk_reads, r.disk_writes, r.file_drops), (0, 0, 0));
            }
        }
    }
}
