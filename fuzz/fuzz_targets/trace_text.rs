//! Text traces (`--import-trace`): never panic; an imported trace reads back whole.
#![no_main]
use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use tierd_sim::tracefile::{TraceReader, import_text};

fuzz_target!(|data: &[u8]| {
    let mut out = Cursor::new(Vec::new());
    let Ok(h) = import_text(data, &mut out, 4096) else { return };
    let bytes = out.into_inner();
    let mut r = TraceReader::new(&bytes[..]).expect("its own header");
    assert_eq!(r.header(), h);
    let mut block = Vec::new();
    let mut n = 0u64;
    loop {
        r.read_block(&mut block, 1024).expect("its own records");
        if block.is_empty() {
            break;
        }
        n += block.len() as u64;
    }
    assert_eq!(n, h.accesses);
});
