//! The daemon config: never panics; an accepted config reports no changed field against
//! itself.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tierd::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(c) = Config::parse(text) {
        assert!(Config::changed_fields(&c, &c.clone()).is_empty());
    }
});
