//! Control-socket requests: any line decodes or is refused, and a decoded request is
//! executed (as root and as another user) against a live table without panicking; the
//! table never holds a cycle afterwards.
#![no_main]
use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use tierd::control::{Request, handle};
use tierd::paths::Paths;
use tierd::state::StateFile;
use tierd_core::{NodeMask, Topology};

fn paths() -> &'static (tempfile::TempDir, Arc<Paths>) {
    static P: OnceLock<(tempfile::TempDir, Arc<Paths>)> = OnceLock::new();
    P.get_or_init(|| {
        let dir = tempfile::tempdir_in("/dev/shm").or_else(|_| tempfile::tempdir()).unwrap();
        let topo = Topology::synthetic(
            &[10, 20, 30, 20, 10, 20, 30, 20, 10],
            &[true, false, false],
            &[1 << 30; 3],
        );
        let p = Paths::open(&topo, StateFile::new(dir.path().join("paths.toml"))).unwrap();
        (dir, Arc::new(p))
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(req) = serde_json::from_slice::<Request>(data) else { return };
    let p = &paths().1;
    let _ = handle(&req, 1000, p);
    let _ = handle(&req, 0, p);
    let g = p.table().snapshot();
    assert!(g.validate(NodeMask::first(3), 3).is_ok(), "the table holds an invalid graph");
});
