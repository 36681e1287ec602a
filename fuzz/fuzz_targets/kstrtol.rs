//! kstrtol(buf, 0): never panics; an accepted buffer means the number it printed as.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tierd_core::kstrtol::kstrtol;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = kstrtol(data) {
        // Decimal is always valid kstrtol syntax for the same value.
        assert_eq!(kstrtol(v.to_string().as_bytes()), Ok(v));
    }
});
