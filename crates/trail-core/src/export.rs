//! Records as the files people download and SIEMs pull: CSV (one row an event, safe to open
//! in a spreadsheet), NDJSON (the record as the API gives it, one a line), OCSF (the Open
//! Cybersecurity Schema Framework's API Activity class) and CEF (ArcSight's Common Event
//! Format).

use serde_json::Value;

use crate::event::EventRecord;

/// The columns of a CSV export, in order.
pub const CSV_COLUMNS: [&str; 27] = [
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
    "seqs",
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
        seq_list(r),
    ]
    .into_iter()
    .map(neutralize)
    .collect()
}

/// The seqs a collapsed record stands for, `1 2 3`; empty for an event shown as it is.
fn seq_list(r: &EventRecord<'_>) -> String {
    r.seqs.as_ref().map_or_else(String::new, |s| {
        s.iter().map(u64::to_string).collect::<Vec<_>>().join(" ")
    })
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

/// The OCSF schema version the `ocsf` format follows.
pub const OCSF_VERSION: &str = "1.3.0";
/// OCSF's API Activity class, in the Application Activity category.
const OCSF_CLASS: u32 = 6003;
const OCSF_CATEGORY: u32 = 6;

/// What kind of activity a record is, in OCSF's terms: the HTTP method of a recorded call,
/// else the verb of its action (`created`, `deleted`, ...).
fn activity(r: &EventRecord<'_>) -> (u32, &'static str) {
    if let Some(q) = &r.request {
        return match q.method {
            "POST" => (1, "Create"),
            "GET" | "HEAD" => (2, "Read"),
            "PUT" | "PATCH" => (3, "Update"),
            "DELETE" => (4, "Delete"),
            _ => (99, "Other"),
        };
    }
    let verb = r.action.to_ascii_lowercase();
    let starts = |words: &[&str]| words.iter().any(|w| verb.starts_with(w));
    if starts(&["creat", "add", "insert", "register", "invit"]) {
        (1, "Create")
    } else if starts(&[
        "read", "get", "list", "view", "download", "export", "search",
    ]) {
        (2, "Read")
    } else if starts(&[
        "updat", "modif", "chang", "edit", "patch", "set", "sync", "rename", "roll",
    ]) {
        (3, "Update")
    } else if starts(&["delet", "remov", "revok", "destroy", "purg"]) {
        (4, "Delete")
    } else {
        (99, "Other")
    }
}

/// OCSF severity: a server error is Medium, a refused call Low, anything else Informational.
fn severity(r: &EventRecord<'_>) -> (u32, &'static str) {
    match r.request.as_ref().map(|q| q.status) {
        Some(500..) => (3, "Medium"),
        Some(401 | 403) => (2, "Low"),
        _ => (1, "Informational"),
    }
}

fn millis(rfc3339: &str) -> Option<i64> {
    crate::time::Timestamp::parse(rfc3339)
        .ok()
        .map(|t| t.micros().div_euclid(1000))
}

/// A record as an OCSF 1.x API Activity event (class 6003). Trail's fields that OCSF has no
/// place for (category, instance, details, the leaf hash, the credential that sent it, the
/// seqs of a collapsed record) are under `unmapped`, so nothing is lost.
pub fn ocsf(r: &EventRecord<'_>, product_version: &str) -> Value {
    let (activity_id, activity_name) = activity(r);
    let (severity_id, severity_name) = severity(r);
    let failed = r.request.as_ref().is_some_and(|q| q.status >= 400);
    let operation = match &r.request {
        Some(q) => q.route.to_owned(),
        None => r.action.to_owned(),
    };
    let (type_id, type_name) = match r.actor.kind {
        "user" => (1, "User"),
        "system" => (3, "System"),
        _ => (99, "Other"),
    };
    let mut user = serde_json::json!({
        "uid": r.actor.id, "name": r.actor.id, "type_id": type_id, "type": type_name,
    });
    if let Some(t) = r.actor.token_id {
        user["credential_uid"] = Value::from(t);
    }
    let mut event = serde_json::json!({
        "class_uid": OCSF_CLASS,
        "class_name": "API Activity",
        "category_uid": OCSF_CATEGORY,
        "category_name": "Application Activity",
        "activity_id": activity_id,
        "activity_name": activity_name,
        "type_uid": OCSF_CLASS * 100 + activity_id,
        "type_name": format!("API Activity: {activity_name}"),
        "severity_id": severity_id,
        "severity": severity_name,
        "status_id": if failed { 2 } else { 1 },
        "status": if failed { "Failure" } else { "Success" },
        "time": millis(&r.timestamp),
        "count": r.count,
        "actor": {"user": user},
        "api": {"operation": operation, "request": {"uid": r.id}},
        "metadata": {
            "version": OCSF_VERSION,
            "uid": r.id,
            "product": {"name": "Trail", "vendor_name": "Trail", "version": product_version},
            "logged_time": millis(&r.received_at),
            "original_time": r.timestamp,
            "sequence": r.seq,
            "tenant_uid": r.org,
        },
        // Required by the class: where the call came from, as far as it is known.
        "src_endpoint": {},
        "unmapped": {
            "action": r.action,
            "actorType": r.actor.kind,
            "category": r.category,
            "hash": r.hash,
        },
    });
    if r.count > 1 || r.seqs.is_some() {
        event["start_time"] = Value::from(millis(&r.timestamp));
        event["end_time"] = Value::from(millis(&r.last_occurred_timestamp));
    }
    if let Some(ip) = &r.actor.ip {
        event["src_endpoint"] = serde_json::json!({"ip": ip});
    }
    if let Some(scope) = r.actor.scope {
        event["actor"]["authorizations"] =
            serde_json::json!([{"decision": "allowed", "policy": {"name": scope}}]);
    }
    if let Some(q) = &r.request {
        let path = q.route.split_once(' ').map_or(q.route, |(_, p)| p);
        let mut request = serde_json::json!({"http_method": q.method, "url": {"path": path}});
        if let Some(ua) = r.actor.user_agent {
            request["user_agent"] = Value::from(ua);
        }
        if let Some(d) = &q.body_sha256 {
            event["unmapped"]["bodySha256"] = Value::from(d.as_str());
        }
        event["http_request"] = request;
        event["http_response"] = serde_json::json!({"code": q.status});
        event["duration"] = Value::from(q.latency_ms.round() as i64);
        event["api"]["response"] = serde_json::json!({"code": q.status});
    } else if let Some(ua) = r.actor.user_agent {
        event["http_request"] = serde_json::json!({"user_agent": ua});
    }
    if let Some(o) = &r.object {
        let name = match &o.id {
            Some(Value::Object(m)) => m.get("name").and_then(Value::as_str).map(str::to_owned),
            Some(Value::String(s)) => Some(s.clone()),
            _ => None,
        };
        let mut resource = serde_json::json!({"type": o.kind});
        if let Some(id) = &o.id {
            resource["uid"] = Value::from(json_text(Some(id)));
            resource["data"] = id.clone();
        }
        if let Some(name) = name {
            resource["name"] = Value::from(name);
        }
        if let Some(parent) = &o.parent_id {
            resource["group"] = serde_json::json!({"uid": json_text(Some(parent))});
        }
        event["resources"] = serde_json::json!([resource]);
    }
    if let Some(d) = &r.details {
        if let Some(m) = d.get("message").and_then(Value::as_str) {
            event["message"] = Value::from(m);
        }
        event["unmapped"]["details"] = d.clone();
    }
    if let Some(i) = r.instance {
        event["unmapped"]["instance"] = Value::from(i);
    }
    if let Some(s) = r.submitted_by {
        event["unmapped"]["submittedBy"] = Value::from(s);
    }
    if let Some(seqs) = &r.seqs {
        event["unmapped"]["seqs"] = serde_json::json!(seqs);
    }
    event
}

/// A character no CEF line should carry raw (other control characters, and the Unicode
/// line and paragraph separators), written as the text `\xNN` / `\uNNNN` with its
/// backslash escaped, so a syslog reader or a terminal sees it and is not driven by it.
fn cef_control(c: char, out: &mut String) -> bool {
    if c.is_control() || c == '\u{2028}' || c == '\u{2029}' {
        let code = c as u32;
        if code <= 0xff {
            out.push_str(&format!("\\\\x{code:02x}"));
        } else {
            out.push_str(&format!("\\\\u{code:04x}"));
        }
        return true;
    }
    false
}

/// Where a CEF string goes: the two places have different escaping rules.
#[derive(Clone, Copy, PartialEq, Eq)]
enum CefPart {
    /// A header field: `\\` and `|` escaped, line breaks as spaces.
    Header,
    /// An extension value: `\\`, `=` and line breaks escaped (`\\n`, `\\r`).
    Extension,
}

/// `s` escaped for its place in a CEF line; in both, other control characters are written
/// as their code ([`cef_control`]).
fn cef_escape(s: &str, part: CefPart) -> String {
    let header = part == CefPart::Header;
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '|' if header => out.push_str("\\|"),
            '=' if !header => out.push_str("\\="),
            '\r' | '\n' if header => out.push(' '),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if cef_control(c, &mut out) => {}
            c => out.push(c),
        }
    }
    out
}

/// A record as one line of ArcSight's Common Event Format (CEF:0), without the line break.
/// The event class is the route of a recorded call, else `category:action`; Trail's own
/// fields go to CEF's custom strings and numbers, each with its label.
pub fn cef(r: &EventRecord<'_>, product_version: &str) -> String {
    let (class, name) = match &r.request {
        Some(q) => (q.route.to_owned(), q.route.to_owned()),
        None => (format!("{}:{}", r.category, r.action), r.action.to_owned()),
    };
    let severity = match severity(r).0 {
        3 => 7,
        2 => 5,
        _ => 3,
    };
    // `rt` is when Trail received it; `start` when it happened, as the client said.
    let mut ext: Vec<(&str, String)> = vec![
        ("rt", millis(&r.received_at).unwrap_or_default().to_string()),
        (
            "start",
            millis(&r.timestamp).unwrap_or_default().to_string(),
        ),
        ("externalId", r.id.clone()),
        ("act", r.action.to_owned()),
        ("cat", r.category.to_owned()),
        ("suser", r.actor.id.to_owned()),
        ("cs1Label", "actorType".into()),
        ("cs1", r.actor.kind.to_owned()),
        ("cs2Label", "org".into()),
        ("cs2", r.org.to_owned()),
        ("cn1Label", "seq".into()),
        ("cn1", r.seq.to_string()),
        ("cnt", r.count.to_string()),
        ("cs6Label", "leafHash".into()),
        ("cs6", r.hash.clone()),
    ];
    match &r.actor.ip {
        Some(ip) if ip.contains(':') => {
            ext.push(("c6a2Label", "Source IPv6 Address".into()));
            ext.push(("c6a2", ip.clone()));
        }
        Some(ip) => ext.push(("src", ip.clone())),
        None => {}
    }
    if let Some(ua) = r.actor.user_agent {
        ext.push(("requestClientApplication", ua.to_owned()));
    }
    if let Some(t) = r.actor.token_id {
        ext.push(("suid", t.to_owned()));
    }
    if let Some(q) = &r.request {
        ext.push(("requestMethod", q.method.to_owned()));
        ext.push(("request", q.route.to_owned()));
        ext.push(("outcome", q.status.to_string()));
        ext.push(("cn2Label", "latencyMs".into()));
        ext.push(("cn2", q.latency_ms.round().to_string()));
    }
    if let Some(o) = &r.object {
        ext.push(("cs3Label", "object".into()));
        ext.push((
            "cs3",
            serde_json::json!({"type": o.kind, "id": o.id, "parentId": o.parent_id}).to_string(),
        ));
    }
    if let Some(d) = &r.details {
        if let Some(m) = d.get("message").and_then(Value::as_str) {
            ext.push(("msg", m.to_owned()));
        }
        ext.push(("cs4Label", "details".into()));
        ext.push(("cs4", d.to_string()));
    }
    if let Some(i) = r.instance {
        ext.push(("cs5Label", "instance".into()));
        ext.push(("cs5", i.to_owned()));
    }
    if r.count > 1 || r.seqs.is_some() {
        ext.push((
            "end",
            millis(&r.last_occurred_timestamp)
                .unwrap_or_default()
                .to_string(),
        ));
    }
    if r.seqs.is_some() {
        ext.push(("flexString1Label", "seqs".into()));
        ext.push(("flexString1", seq_list(r)));
    }
    let extension: Vec<String> = ext
        .into_iter()
        .map(|(k, v)| format!("{k}={}", cef_escape(&v, CefPart::Extension)))
        .collect();
    format!(
        "CEF:0|Trail|Trail|{}|{}|{}|{severity}|{}",
        cef_escape(product_version, CefPart::Header),
        cef_escape(&class, CefPart::Header),
        cef_escape(&name, CefPart::Header),
        extension.join(" ")
    )
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

    #[test]
    fn ocsf_api_activity() {
        let call = event(serde_json::json!({
            "action": "call", "category": "api",
            "actor": {"id": "ci-bot", "type": "api_key", "ip": "2001:db8::1",
                      "tokenId": "key_1", "scope": "logs:read", "userAgent": "curl/8"},
            "request": {"method": "DELETE", "route": "DELETE /v1/tenants/:id", "status": 503,
                        "latencyMs": 12.6, "bodySha256": "ab".repeat(32)},
        }));
        let hash = [1u8; 32];
        let v = ocsf(&call.record(&hash), "0.1.0");
        assert_eq!(v["class_uid"], 6003);
        assert_eq!(v["category_uid"], 6);
        assert_eq!(v["activity_id"], 4);
        assert_eq!(v["type_uid"], 600304);
        assert_eq!(v["severity_id"], 3);
        assert_eq!(v["status_id"], 2);
        assert_eq!(v["api"]["operation"], "DELETE /v1/tenants/:id");
        assert_eq!(v["actor"]["user"]["uid"], "ci-bot");
        assert_eq!(v["actor"]["user"]["credential_uid"], "key_1");
        assert_eq!(v["src_endpoint"]["ip"], "2001:db8::1");
        assert_eq!(v["http_request"]["http_method"], "DELETE");
        assert_eq!(v["http_request"]["url"]["path"], "/v1/tenants/:id");
        assert_eq!(v["http_request"]["user_agent"], "curl/8");
        assert_eq!(v["http_response"]["code"], 503);
        assert_eq!(v["duration"], 13);
        assert_eq!(v["metadata"]["uid"], call.id());
        assert_eq!(v["metadata"]["product"]["version"], "0.1.0");
        assert_eq!(v["metadata"]["sequence"], 7);
        assert_eq!(v["time"], call.timestamp.micros() / 1000);
        assert_eq!(v["unmapped"]["hash"], "01".repeat(32));

        let app = event(serde_json::json!({
            "action": "deleted", "actor": {"id": "sarah", "type": "user"},
            "object": {"type": "custom_role", "id": {"kind": "Cluster", "name": "dev"}},
            "details": {"message": "gone"}, "instance": "argocd-1",
        }));
        let v = ocsf(&app.record(&hash), "0.1.0");
        assert_eq!(
            (v["activity_id"].clone(), v["severity_id"].clone()),
            (4.into(), 1.into())
        );
        assert_eq!(v["api"]["operation"], "deleted");
        assert_eq!(v["resources"][0]["name"], "dev");
        assert_eq!(v["resources"][0]["type"], "custom_role");
        assert_eq!(v["message"], "gone");
        assert_eq!(v["unmapped"]["instance"], "argocd-1");
        assert_eq!(
            v["src_endpoint"],
            serde_json::json!({}),
            "required by the class, even empty"
        );
        assert!(v.get("http_response").is_none());
        assert_eq!(
            (
                v["actor"]["user"]["type_id"].clone(),
                v["actor"]["user"]["type"].clone()
            ),
            (1.into(), "User".into())
        );
        for (action, id) in [
            ("created", 1),
            ("listed", 2),
            ("synced", 3),
            ("revoked", 4),
            ("login", 99),
        ] {
            let e =
                event(serde_json::json!({"action": action, "actor": {"id": "a", "type": "user"}}));
            assert_eq!(ocsf(&e.record(&hash), "x")["activity_id"], id, "{action}");
        }
    }

    #[test]
    fn cef_escapes_its_header_and_extension() {
        let e = event(serde_json::json!({
            "action": "a|b\\c", "category": "app",
            "actor": {"id": "x=y\\z", "type": "user", "ip": "10.0.0.1"},
            "details": {"message": "line one\nline two"},
        }));
        let line = cef(&e.record(&[0u8; 32]), "0.1|0");
        assert!(!line.contains('\n'), "{line}");
        assert!(
            line.starts_with("CEF:0|Trail|Trail|0.1\\|0|app:a\\|b\\\\c|a\\|b\\\\c|3|rt="),
            "{line}"
        );
        assert!(line.contains(" suser=x\\=y\\\\z "), "{line}");
        assert!(line.contains(" msg=line one\\nline two "), "{line}");
        assert!(line.contains(" src=10.0.0.1"), "{line}");
        let hostile = event(serde_json::json!({
            "action": "x", "actor": {"id": "a", "type": "user"},
            "details": {"message": "x\u{1b}[2J\u{2028}y\u{7}"},
        }));
        let line = cef(&hostile.record(&[0u8; 32]), "0.1.0");
        assert!(
            !line.chars().any(|c| c.is_control() || c == '\u{2028}'),
            "{line:?}"
        );
        assert!(
            line.contains(" msg=x\\\\x1b[2J\\\\u2028y\\\\x07 "),
            "{line}"
        );
        assert!(line.contains(" cn1=7 "), "{line}");
    }
}
