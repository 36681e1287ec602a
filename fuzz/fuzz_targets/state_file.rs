//! The state file as `tierd` loads it (bounded read, UTF-8, TOML, then the table's own
//! checks): never panics, and a loaded table restores or is refused.
#![no_main]
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tierd::state::StateFile;
use tierd_core::{NodeMask, PathTable};

fn dir() -> &'static tempfile::TempDir {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir_in("/dev/shm").or_else(|_| tempfile::tempdir()).unwrap())
}

fuzz_target!(|data: &[u8]| {
    let path = dir().path().join("paths.toml");
    std::fs::write(&path, data).unwrap();
    if let Ok(Some(graph)) = StateFile::new(&path).load() {
        let table = PathTable::with_capacity(16, NodeMask::first(4));
        let _ = table.restore(&graph);
    }
});
