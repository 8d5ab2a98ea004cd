//! The query language: a `q` expression, or (first byte odd) one `key=value` parameter.
//! Whatever parses is a bounded filter that can be matched and grouped.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trail_core::Filter;
use trail_core::query::{self, MAX_TERMS};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let mut filter = Filter::default();
    let parsed = if mode % 2 == 0 {
        filter.add_query(text, trail_fuzz::NOW)
    } else {
        let (key, value) = text.split_once('=').unwrap_or((text, ""));
        let negated = key.starts_with('-');
        filter.add(key.trim_start_matches('-'), value, negated, trail_fuzz::NOW)
    };
    let _ = query::route_templates(text);
    let _ = query::route_matches(text, "/v1/orgs/{org}/events");
    if parsed.is_err() {
        return;
    }
    assert!(filter.terms.len() <= MAX_TERMS);
    let _ = filter.grouped();
    for e in trail_fuzz::sample_events() {
        let _ = filter.matches(&e);
    }
});
