//! An ingest body: its first byte chooses the layout the content type would (JSON, NDJSON,
//! or found from the body), the rest is the body. Every element is a slice of the body
//! within the size limit, read as an event; a body that is one JSON array or object splits
//! into exactly its elements, or is refused whole as too many.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use trail_core::batch::{self, Format, MAX_BATCH, MAX_EVENT_BYTES};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let format = match mode % 3 {
        0 => Format::Json,
        1 => Format::Ndjson,
        _ => Format::Sniff,
    };
    let split = batch::split(body, format);
    let whole: Option<Vec<Value>> = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Array(items)) if format != Format::Ndjson => Some(items),
        Ok(v @ Value::Object(_)) if format != Format::Ndjson => Some(vec![v]),
        _ => None,
    };
    if let Some(items) = &whole
        && items.len() > MAX_BATCH
    {
        assert_eq!(
            split,
            Err(batch::BatchError::TooMany),
            "a batch over the limit"
        );
        return;
    }
    if let Some(items) = &whole {
        let elements = split.as_ref().expect("a JSON array or object splits");
        assert_eq!(elements.len(), items.len(), "an element lost or made up");
        for (e, item) in elements.iter().zip(items) {
            if let Ok(text) = e {
                let read: Value = serde_json::from_str(text).expect("an element is JSON");
                assert_eq!(&read, item, "an element is not its part of the body");
            }
        }
    }
    let Ok(elements) = split else {
        return;
    };
    assert!(elements.len() <= MAX_BATCH);
    let range = body.as_ptr_range();
    for text in elements.iter().flatten() {
        assert!(text.len() <= MAX_EVENT_BYTES);
        let start = text.as_ptr();
        assert!(
            range.start <= start && start.wrapping_add(text.len()) <= range.end,
            "an element is not a slice of the body"
        );
        trail_fuzz::check_event_text(text);
    }
});
