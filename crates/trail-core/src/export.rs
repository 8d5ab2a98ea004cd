//! Records as the files people download: CSV (one row an event, safe to open in a
//! spreadsheet) and NDJSON (the record as the API gives it, one a line).

use serde_json::Value;

use crate::event::EventRecord;

/// The columns of a CSV export, in order.
pub const CSV_COLUMNS: [&str; 26] = [
    "timestamp",
    "receivedAt",
    "seq",
    "org",
    "instance",
    "action",
    "category",
    "actorId",
    "actorType",
    "actorIp",
    "actorUserAgent",
    "tokenId",
    "scope",
    "objectType",
    "objectId",
    "objectParentId",
    "message",
    "details",
    "method",
    "route",
    "status",
    "latencyMs",
    "bodySha256",
    "count",
    "submittedBy",
    "hash",
];

/// A cell a spreadsheet would take for a formula (`=`, `+`, `-`, `@`, or a tab or carriage
/// return first) starts with `'`, so it shows as the text it is (OWASP's advice on CSV
/// injection). Every other cell is as it was.
pub fn neutralize(cell: String) -> String {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{cell}"),
        _ => cell,
    }
}

fn json_text(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    }
}

/// One event's CSV row: [`CSV_COLUMNS`], each cell neutralized.
pub fn csv_row(r: &EventRecord<'_>) -> Vec<String> {
    let opt = |s: Option<&str>| s.unwrap_or_default().to_owned();
    let req = r.request.as_ref();
    let message = r
        .details
        .as_ref()
        .and_then(|d| d.get("message"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    [
        r.timestamp.clone(),
        r.received_at.clone(),
        r.seq.to_string(),
        r.org.to_owned(),
        opt(r.instance),
        r.action.to_owned(),
        r.category.to_owned(),
        r.actor.id.to_owned(),
        r.actor.kind.to_owned(),
        r.actor.ip.clone().unwrap_or_default(),
        opt(r.actor.user_agent),
        opt(r.actor.token_id),
        opt(r.actor.scope),
        r.object
            .as_ref()
            .map(|o| o.kind.to_owned())
            .unwrap_or_default(),
        json_text(r.object.as_ref().and_then(|o| o.id.as_ref())),
        json_text(r.object.as_ref().and_then(|o| o.parent_id.as_ref())),
        message,
        json_text(r.details.as_ref()),
        req.map(|q| q.method.to_owned()).unwrap_or_default(),
        req.map(|q| q.route.to_owned()).unwrap_or_default(),
        req.map(|q| q.status.to_string()).unwrap_or_default(),
        req.map(|q| q.latency_ms.to_string()).unwrap_or_default(),
        req.and_then(|q| q.body_sha256.clone()).unwrap_or_default(),
        r.count.to_string(),
        opt(r.submitted_by),
        r.hash.clone(),
    ]
    .into_iter()
    .map(neutralize)
    .collect()
}

/// Rows as CSV text (RFC 4180 quoting), with the header first if `header`.
pub fn csv_text<'a>(rows: impl IntoIterator<Item = &'a EventRecord<'a>>, header: bool) -> Vec<u8> {
    let mut w = csv::Writer::from_writer(Vec::new());
    if header {
        w.write_record(CSV_COLUMNS).expect("writes to memory");
    }
    for r in rows {
        w.write_record(csv_row(r)).expect("writes to memory");
    }
    w.into_inner().expect("writes to memory")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, EventBody};
    use crate::time::Timestamp;

    fn event(v: serde_json::Value) -> Event {
        Event::seal(
            "acme",
            7,
            Timestamp(1_763_740_000_000_000),
            EventBody::from_json(v, "acme").unwrap(),
        )
    }

    #[test]
    fn cells_that_a_spreadsheet_would_run_are_text() {
        for bad in ["=HYPERLINK(\"x\")", "+1", "-2+3", "@SUM(A1)", "\tx", "\rx"] {
            assert!(neutralize(bad.to_owned()).starts_with('\''), "{bad:?}");
        }
        for fine in ["alice", "1", "", " =x"] {
            assert_eq!(neutralize(fine.to_owned()), fine);
        }
    }

    #[test]
    fn a_row_has_every_column_quoted_as_needed() {
        let e = event(serde_json::json!({
            "action": "=cmd|' /C calc'!A0",
            "actor": {"id": "sarah, the \"admin\"", "type": "user", "ip": "10.0.0.1"},
            "object": {"type": "custom_role", "id": {"kind": "Cluster", "name": "dev"}},
            "details": {"message": "line one\nline two", "actionType": "DELETE"},
        }));
        let hash = [0u8; 32];
        let record = e.record(&hash);
        let text = String::from_utf8(csv_text([&record], true)).unwrap();
        let mut rows = csv::Reader::from_reader(text.as_bytes());
        let headers: Vec<String> = rows.headers().unwrap().iter().map(str::to_owned).collect();
        assert_eq!(headers, CSV_COLUMNS);
        let row = rows.records().next().unwrap().unwrap();
        let get = |c: &str| row[CSV_COLUMNS.iter().position(|x| *x == c).unwrap()].to_owned();
        assert_eq!(get("action"), "'=cmd|' /C calc'!A0");
        assert_eq!(get("actorId"), "sarah, the \"admin\"");
        assert_eq!(get("message"), "line one\nline two");
        assert_eq!(get("objectId"), r#"{"kind":"Cluster","name":"dev"}"#);
        assert_eq!(get("seq"), "7");
        assert_eq!(get("hash"), "0".repeat(64));
        assert_eq!(row.len(), CSV_COLUMNS.len());
    }
}
