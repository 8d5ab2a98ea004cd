//! One event's text, as ingest reads each element of a batch.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    trail_fuzz::check_event_text(text);
});
