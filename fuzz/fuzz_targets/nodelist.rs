//! Nodelists ("0-2,4"): never panic; an accepted list prints as one that parses to it.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tierd_core::NodeMask;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(mask) = text.parse::<NodeMask>() {
        assert_eq!(mask.to_string().parse::<NodeMask>().ok(), Some(mask), "{text:?}");
    }
});
