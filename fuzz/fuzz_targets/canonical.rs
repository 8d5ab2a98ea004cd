//! Canonical bytes: what decodes is exactly what encoding the decoded event gives (the
//! decoder is the strict inverse of the encoder), and its records render.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trail_core::canonical;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(event) = canonical::decode(bytes) {
        assert_eq!(
            canonical::encode(&event),
            bytes,
            "bytes decoded that encoding does not give"
        );
        trail_fuzz::check_records(&event);
    }
});
