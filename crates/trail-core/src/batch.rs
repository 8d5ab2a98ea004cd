//! The body of an ingest call, split into its events' texts.
//!
//! A batch is a JSON array of events, one JSON object, or NDJSON (one event a line). Each
//! element comes out as the slice of the body that holds it, to be read as an event one at a
//! time ([`crate::EventBody::from_json_str`]), so a batch is never held as a tree of values.
//! A malformed NDJSON line, or an element larger than [`MAX_EVENT_BYTES`], is that event's
//! error; a malformed JSON body is the batch's. More than [`MAX_BATCH`] events are refused as
//! soon as the next one begins, before the rest is split (a body whose layout is not given
//! is first checked whole for being one JSON value).

use std::cell::Cell;
use std::marker::PhantomData;

use serde_json::value::RawValue;

/// The most events in one batch.
pub const MAX_BATCH: usize = 10_000;

/// The largest one event may be as sent, in bytes: far above what its fields' own limits
/// allow, and small enough that reading it as JSON costs little.
pub const MAX_EVENT_BYTES: usize = 256 * 1024;

/// How the body is laid out: said by its sender, or found from the body itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// A JSON array of events, or one event object.
    Json,
    /// One event a line; blank lines are passed over.
    Ndjson,
    /// A body that is one JSON value is [`Format::Json`], anything else NDJSON.
    Sniff,
}

/// One element of a batch (its text, as sent), or why it cannot be read: the error is
/// the element's, and the others are read on.
pub type Element<'a> = Result<&'a str, String>;

/// Why a whole batch is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("the body is not UTF-8: {0}")]
    NotUtf8(String),
    #[error("the body is not valid JSON: {0}")]
    NotJson(String),
    #[error("the body must be a JSON array of events, one event object, or NDJSON")]
    NotEvents,
    #[error("the batch holds more than {MAX_BATCH} events; the limit is {MAX_BATCH}")]
    TooMany,
}

/// Splits `body` into its elements.
pub fn split(body: &[u8], format: Format) -> Result<Vec<Element<'_>>, BatchError> {
    let text = std::str::from_utf8(body).map_err(|e| BatchError::NotUtf8(e.to_string()))?;
    let ndjson = match format {
        Format::Ndjson => true,
        Format::Json => false,
        Format::Sniff => serde_json::from_str::<serde::de::IgnoredAny>(text).is_err(),
    };
    if ndjson {
        return lines(text);
    }
    let not_json = |e: serde_json::Error| BatchError::NotJson(e.to_string());
    let elements: Vec<&RawValue> = match text.trim_start().as_bytes().first() {
        Some(b'[') => {
            let over = Cell::new(false);
            let mut de = serde_json::Deserializer::from_str(text);
            let parsed = serde::Deserializer::deserialize_seq(
                &mut de,
                Elements {
                    over: &over,
                    _body: PhantomData,
                },
            );
            if over.get() {
                return Err(BatchError::TooMany);
            }
            let elements = parsed.map_err(not_json)?;
            de.end().map_err(not_json)?;
            elements
        }
        Some(b'{') => vec![serde_json::from_str(text).map_err(not_json)?],
        _ => {
            serde_json::from_str::<serde::de::IgnoredAny>(text).map_err(not_json)?;
            return Err(BatchError::NotEvents);
        }
    };
    Ok(elements.into_iter().map(|raw| sized(raw.get())).collect())
}

/// The elements of an NDJSON body: a line that is not one JSON value is that event's
/// error, naming the line.
fn lines(text: &str) -> Result<Vec<Element<'_>>, BatchError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if out.len() == MAX_BATCH {
            return Err(BatchError::TooMany);
        }
        out.push(match serde_json::from_str::<&RawValue>(line) {
            Ok(raw) => sized(raw.get()),
            Err(e) => Err(format!("line {}: not JSON: {e}", i + 1)),
        });
    }
    Ok(out)
}

/// An element's text, if it is within [`MAX_EVENT_BYTES`].
fn sized(text: &str) -> Element<'_> {
    if text.len() > MAX_EVENT_BYTES {
        return Err(format!(
            "the event is {} bytes; the limit is {MAX_EVENT_BYTES}",
            text.len()
        ));
    }
    Ok(text)
}

/// Reads the elements of a JSON array as slices of the body, counting them as it goes: at
/// element `MAX_BATCH + 1` it stops, so a long array of small values costs no more than
/// the events that could be accepted.
struct Elements<'a, 'c> {
    over: &'c Cell<bool>,
    _body: PhantomData<&'a ()>,
}

impl<'de> serde::de::Visitor<'de> for Elements<'de, '_> {
    type Value = Vec<&'de RawValue>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON array of events")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(item) = seq.next_element::<&'de RawValue>()? {
            if out.len() == MAX_BATCH {
                self.over.set(true);
                return Err(serde::de::Error::custom("too many events"));
            }
            out.push(item);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(body: &str, format: Format) -> usize {
        split(body.as_bytes(), format).unwrap().len()
    }

    #[test]
    fn the_three_layouts() {
        assert_eq!(count(r#"[{"a":1},{"a":2}]"#, Format::Json), 2);
        assert_eq!(count(r#"{"a":1}"#, Format::Json), 1);
        assert_eq!(count("{\"a\":1}\n\n{\"a\":2}\n", Format::Ndjson), 2);
        assert_eq!(count("{\"a\":1}\n{\"a\":2}", Format::Sniff), 2);
        assert_eq!(
            count("{\n  \"a\": 1\n}\n", Format::Sniff),
            1,
            "one pretty-printed object"
        );
        assert_eq!(count(r#"[{"a":1}]"#, Format::Sniff), 1);
        let elements = split(b"[ {\"a\": [1, 2]} , 3 ]", Format::Json).unwrap();
        assert_eq!(elements, vec![Ok("{\"a\": [1, 2]}"), Ok("3")]);
    }

    #[test]
    fn a_bad_line_is_its_events_error_and_a_bad_body_the_batchs() {
        let lines = split(b"{\"a\":1}\n\n{oops\n", Format::Ndjson).unwrap();
        assert_eq!(lines[0], Ok("{\"a\":1}"));
        let err = lines[1].as_ref().unwrap_err();
        assert!(err.starts_with("line 3: not JSON"), "{err}");
        for body in ["[1,", "{\"a\":", "[1] 2"] {
            assert!(
                matches!(
                    split(body.as_bytes(), Format::Json),
                    Err(BatchError::NotJson(_))
                ),
                "{body}"
            );
        }
        assert_eq!(split(b"42", Format::Json), Err(BatchError::NotEvents));
        assert!(matches!(
            split(&[0xff], Format::Sniff),
            Err(BatchError::NotUtf8(_))
        ));
    }

    #[test]
    fn a_batch_is_counted_while_it_is_split() {
        // One element too many, then a body that is not JSON at all: the count stops the
        // split before the rest is read.
        let mut body = "[".to_owned() + &"0,".repeat(MAX_BATCH + 1);
        body.push_str("this is never read");
        assert_eq!(
            split(body.as_bytes(), Format::Json),
            Err(BatchError::TooMany)
        );
        let mut lines = "{}\n".repeat(MAX_BATCH + 1);
        lines.push_str("{never read\n");
        assert_eq!(
            split(lines.as_bytes(), Format::Ndjson),
            Err(BatchError::TooMany)
        );
        let full = "[".to_owned() + &vec!["0"; MAX_BATCH].join(",") + "]";
        assert_eq!(
            split(full.as_bytes(), Format::Sniff).map(|v| v.len()),
            Ok(MAX_BATCH)
        );
    }

    #[test]
    fn an_event_larger_than_the_limit_is_its_own_error() {
        let big = format!("{{\"a\":\"{}\"}}", "x".repeat(MAX_EVENT_BYTES));
        for (body, format) in [
            (format!("[{big}, {{}}]"), Format::Json),
            (format!("{big}\n{{}}\n"), Format::Ndjson),
        ] {
            let elements = split(body.as_bytes(), format).unwrap();
            assert!(elements[0].as_ref().unwrap_err().contains("the limit is"));
            assert_eq!(elements[1], Ok("{}"));
        }
    }
}
