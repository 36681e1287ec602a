//! Scenario files: never panic. An accepted scenario builds its machine and draws a few
//! accesses without panicking or overflowing (this is where a Zipf exponent of 0 or a
//! u64::MAX cost used to end).
#![no_main]
use libfuzzer_sys::fuzz_target;
use tierd_sim::Scenario;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(mut s) = Scenario::from_toml(text) else { return };
    if s.uses_trace_files() || s.node.is_empty() {
        return;
    }
    let Ok(setup) = tierd_sim::run::Setup::new(&s) else { return };
    s.accesses = s.accesses.min(2000);
    // The machine holds 9 bytes a page: keep what is simulated small.
    let pages: u64 = setup.machine.processes.last().map_or(0, |p| u64::from(p.end));
    if pages > 1 << 16 {
        return;
    }
    let opts = tierd_sim::RunOptions {
        no_bounds: false,
        check: true,
        memory_budget: Some(64 << 20),
        ..tierd_sim::RunOptions::default()
    };
    if let Err(tierd_sim::SimError::Invariant { what, .. }) =
        tierd_sim::simulate(&s, &opts, &mut |_, _| {})
    {
        panic!("invariant broken: {what}");
    }
});
