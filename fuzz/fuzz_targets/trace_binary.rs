//! Binary traces: never panic; every access read is below the header's page count.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tierd_sim::tracefile::TraceReader;

fuzz_target!(|data: &[u8]| {
    let Ok(mut r) = TraceReader::new(data) else { return };
    let pages = r.header().pages;
    let mut block = Vec::new();
    while r.read_block(&mut block, 64).is_ok() && !block.is_empty() {
        assert!(block.iter().all(|p| u64::from(*p) < pages));
    }
});
