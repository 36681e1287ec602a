//! Path graph files (`tierd path apply`): never panic; an accepted graph round-trips through
//! its TOML form, and validating it never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tierd_core::{NodeMask, PathGraph};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(g) = PathGraph::from_toml(text) {
        let again = PathGraph::from_toml(&g.to_toml()).expect("its own output parses");
        assert_eq!(again, g);
        let _ = g.validate(NodeMask::first(8), 8);
    }
});
