//! Page and export cursors: one decoded encodes to the text it came from (a cursor has one
//! spelling) and decodes again to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trail_core::{Cursor, ExportCursor};

fuzz_target!(|text: &str| {
    if let Ok(c) = Cursor::decode(text) {
        assert_eq!(c.encode(), text);
        assert_eq!(Cursor::decode(&c.encode()), Ok(c));
    }
    if let Ok(c) = ExportCursor::decode(text) {
        assert_eq!(c.encode(), text);
        assert_eq!(ExportCursor::decode(&c.encode()), Ok(c));
    }
});
