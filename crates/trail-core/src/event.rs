//! The event: what a client sends ([`EventBody`], validated), and what Trail keeps
//! ([`Event`], sealed with its org, seq and time of receipt).
//!
//! The wire format is JSON with camelCase names (SPEC.md, "The event"). Reading is strict:
//! unknown fields are refused by name, and every message says which field is wrong.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::time::Timestamp;

/// What kind of actor did it. The known kinds keep their meaning (Trail's own records use
/// them); any other well-formed kind a platform has (`service`, `argocd.app`, ...) is kept
/// as written: lowercase letters, digits, `_`, `-` and `.`, 1 to 64 characters. There is no
/// anonymous actor.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ActorType {
    User,
    Pat,
    ApiKey,
    BreakGlass,
    System,
    /// Another kind, well-formed ([`ActorType::is_well_formed`]) and none of the above.
    Other(String),
}

impl ActorType {
    pub const KNOWN: [ActorType; 5] = [
        ActorType::User,
        ActorType::Pat,
        ActorType::ApiKey,
        ActorType::BreakGlass,
        ActorType::System,
    ];

    /// The longest actor type.
    pub const MAX_LEN: usize = 64;

    pub fn as_str(&self) -> &str {
        match self {
            ActorType::User => "user",
            ActorType::Pat => "pat",
            ActorType::ApiKey => "api_key",
            ActorType::BreakGlass => "break_glass",
            ActorType::System => "system",
            ActorType::Other(s) => s,
        }
    }

    /// A stable small number for storage, for the known kinds. Never renumber.
    pub const fn code(&self) -> Option<u8> {
        match self {
            ActorType::User => Some(1),
            ActorType::Pat => Some(2),
            ActorType::ApiKey => Some(3),
            ActorType::BreakGlass => Some(4),
            ActorType::System => Some(5),
            ActorType::Other(_) => None,
        }
    }

    /// [`Self::as_str`] of the known kind with this code.
    pub fn name_of_code(code: u8) -> Option<&'static str> {
        const NAMES: [&str; 5] = ["user", "pat", "api_key", "break_glass", "system"];
        code.checked_sub(1)
            .and_then(|i| NAMES.get(usize::from(i)).copied())
    }

    pub fn from_code(code: u8) -> Option<Self> {
        Self::KNOWN.into_iter().find(|t| t.code() == Some(code))
    }

    /// Lowercase ASCII letters, digits, `_`, `-` and `.`; 1 to [`Self::MAX_LEN`] characters.
    pub fn is_well_formed(s: &str) -> bool {
        (1..=Self::MAX_LEN).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-.".contains(&b))
    }
}

impl FromStr for ActorType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(known) = Self::KNOWN.into_iter().find(|t| t.as_str() == s) {
            return Ok(known);
        }
        if Self::is_well_formed(s) {
            return Ok(ActorType::Other(s.to_owned()));
        }
        Err(format!(
            "invalid actor type {s:?}: lowercase letters, digits, _, - and ., 1 to {} characters \
             (known: user, pat, api_key, break_glass, system)",
            Self::MAX_LEN
        ))
    }
}

impl fmt::Display for ActorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ActorType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ActorType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub id: String,
    pub kind: ActorType,
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
    pub token_id: Option<String>,
    pub scope: Option<String>,
}

/// Free-form JSON held as its RFC 8785 (JCS) canonical text, so that the bytes hashed and
/// the bytes stored are the same whatever key order or spacing the client used.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CanonicalJson(String);

impl CanonicalJson {
    pub fn from_value(v: &Value) -> Self {
        // serde_json writes a value's maps in key order (its maps are sorted by the keys'
        // UTF-8 bytes), without spaces, and escapes strings as JCS does; where it cannot
        // differ from JCS (no floats, no integer a double cannot hold, no key whose UTF-8
        // order could differ from its UTF-16 order), its text is the canonical one and is
        // made without JCS's re-sorting of every map. Anything else goes through serde_jcs.
        let text = if writes_as_jcs(v) {
            serde_json::to_string(v)
        } else {
            serde_jcs::to_string(v)
        };
        CanonicalJson(text.expect("a serde_json::Value always serializes"))
    }

    /// Wraps text that is already canonical (as read back from storage).
    pub fn from_canonical_text(text: String) -> Self {
        CanonicalJson(text)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn to_value(&self) -> Value {
        serde_json::from_str(&self.0).unwrap_or(Value::String(self.0.clone()))
    }
}

/// Whether `serde_json` writes `v` exactly as RFC 8785 does: every number an integer of at
/// most 2^53 in magnitude (which JCS, reading numbers as doubles, writes with the same
/// digits), and every key without characters from U+E000 up (below them, UTF-8's byte order,
/// the order of a `serde_json` map, is UTF-16's, the order JCS sorts by).
fn writes_as_jcs(v: &Value) -> bool {
    const EXACT: u64 = 1 << 53;
    match v {
        Value::Null | Value::Bool(_) | Value::String(_) => true,
        Value::Number(n) => n
            .as_u64()
            .or_else(|| n.as_i64().map(i64::unsigned_abs))
            .is_some_and(|m| m <= EXACT),
        Value::Array(items) => items.iter().all(writes_as_jcs),
        Value::Object(map) => map
            .iter()
            .all(|(k, v)| k.chars().all(|c| c < '\u{E000}') && writes_as_jcs(v)),
    }
}

/// What the action touched: a type, an id (a string, or an object such as
/// `{"group","kind","name"}`) and an optional parent id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    pub kind: String,
    pub id: Option<CanonicalJson>,
    pub parent_id: Option<CanonicalJson>,
    // Read out of `id` once, when the object is made: filters and indexes use them.
    id_kind: Option<String>,
    id_name: Option<String>,
}

impl Object {
    pub fn new(
        kind: String,
        id: Option<CanonicalJson>,
        parent_id: Option<CanonicalJson>,
    ) -> Object {
        let (id_kind, id_name) = match id.as_ref().map(CanonicalJson::to_value) {
            Some(Value::String(s)) => (None, Some(s)),
            Some(Value::Object(map)) => {
                let field = |key: &str| match map.get(key) {
                    Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
                    _ => None,
                };
                (field("kind"), field("name"))
            }
            _ => (None, None),
        };
        Object {
            kind,
            id,
            parent_id,
            id_kind,
            id_name,
        }
    }

    /// `id.kind`, when the id is an object with a string `kind`.
    pub fn id_kind(&self) -> Option<&str> {
        self.id_kind.as_deref()
    }

    /// `id.name` when the id is an object with a string `name`, or the id itself when it is
    /// a string.
    pub fn id_name(&self) -> Option<&str> {
        self.id_name.as_deref()
    }
}

/// The request block of a recorded API call (seed 001). The body itself is never kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestInfo {
    pub method: String,
    /// The normalized route template, `GET /v1/tenants/:id`, never the literal URL.
    pub route: String,
    pub status: u16,
    pub latency_us: u64,
    pub body_sha256: Option<[u8; 32]>,
}

/// A validated event as a client (or Trail's own recorder) submits it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventBody {
    /// The client's idempotency id, if it gave one.
    pub client_id: Option<String>,
    pub instance: Option<String>,
    pub timestamp: Option<Timestamp>,
    pub action: String,
    pub category: String,
    pub actor: Actor,
    pub object: Option<Object>,
    pub details: Option<CanonicalJson>,
    pub request: Option<RequestInfo>,
    pub count: u64,
    pub last_occurred: Option<Timestamp>,
    /// Provenance: the credential that sent the event through ingest. Set by the server,
    /// never read from the client's JSON; `None` on the records Trail makes itself.
    pub submitted_by: Option<String>,
}

/// An accepted event: the body sealed with its org, its seq and its time of receipt.
/// Defaults are resolved here (timestamp, last occurrence), so that what is hashed is what
/// is stored and read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub org: String,
    pub seq: u64,
    pub client_id: Option<String>,
    pub received_at: Timestamp,
    pub timestamp: Timestamp,
    pub instance: Option<String>,
    pub action: String,
    pub category: String,
    pub actor: Actor,
    pub object: Option<Object>,
    pub details: Option<CanonicalJson>,
    pub request: Option<RequestInfo>,
    pub count: u64,
    pub last_occurred: Timestamp,
    /// The credential that sent it through ingest (see [`EventBody::submitted_by`]).
    pub submitted_by: Option<String>,
    /// The canonical encoding it was hashed with when it was accepted: events keep theirs
    /// for good (1 for those accepted before provenance existed).
    pub encoding: u8,
}

impl Event {
    pub fn seal(org: &str, seq: u64, received_at: Timestamp, body: EventBody) -> Event {
        let timestamp = body.timestamp.unwrap_or(received_at);
        Event {
            org: org.to_owned(),
            seq,
            client_id: body.client_id,
            received_at,
            timestamp,
            instance: body.instance,
            action: body.action,
            category: body.category,
            actor: body.actor,
            object: body.object,
            details: body.details,
            request: body.request,
            count: body.count,
            last_occurred: body.last_occurred.unwrap_or(timestamp),
            submitted_by: body.submitted_by,
            encoding: crate::canonical::VERSION,
        }
    }

    /// Seals `body` as [`Event::seal`] does, in an older canonical encoding: what an event
    /// accepted then would be. Version 1 has no provenance.
    pub fn seal_as(
        encoding: u8,
        org: &str,
        seq: u64,
        received_at: Timestamp,
        body: EventBody,
    ) -> Event {
        let mut e = Event::seal(org, seq, received_at, body);
        e.encoding = encoding;
        if encoding < 2 {
            e.submitted_by = None;
        }
        e
    }

    /// The event's id: the client's, or one derived from the org, the seq and the time of
    /// receipt (a ULID whose random part is a hash of org and seq), so server-made ids take
    /// no space in storage and are unique across orgs.
    pub fn id(&self) -> String {
        match &self.client_id {
            Some(id) => id.clone(),
            None => derived_id(&self.org, self.seq, self.received_at),
        }
    }

    /// The wire record (SPEC.md), with the stored leaf hash.
    pub fn record(&self, hash: &[u8; 32]) -> EventRecord<'_> {
        EventRecord {
            id: self.id(),
            seq: self.seq,
            org: &self.org,
            instance: self.instance.as_deref(),
            timestamp: self.timestamp.to_string(),
            received_at: self.received_at.to_string(),
            action: &self.action,
            category: &self.category,
            actor: ActorRecord {
                id: &self.actor.id,
                kind: self.actor.kind.as_str(),
                ip: self.actor.ip.map(|ip| ip.to_string()),
                user_agent: self.actor.user_agent.as_deref(),
                token_id: self.actor.token_id.as_deref(),
                scope: self.actor.scope.as_deref(),
            },
            object: self.object.as_ref().map(|o| ObjectRecord {
                kind: &o.kind,
                id: o.id.as_ref().map(CanonicalJson::to_value),
                parent_id: o.parent_id.as_ref().map(CanonicalJson::to_value),
            }),
            details: self.details.as_ref().map(CanonicalJson::to_value),
            request: self.request.as_ref().map(|r| RequestRecord {
                method: &r.method,
                route: &r.route,
                status: r.status,
                latency_ms: r.latency_us as f64 / 1000.0,
                body_sha256: r.body_sha256.map(hex::encode),
            }),
            count: self.count,
            last_occurred_timestamp: self.last_occurred.to_string(),
            submitted_by: self.submitted_by.as_deref(),
            hash: hex::encode(hash),
            seqs: None,
        }
    }
}

pub fn derived_id(org: &str, seq: u64, received_at: Timestamp) -> String {
    format!("evt_{}", derived_ulid(org, seq, received_at))
}

/// The ULID in [`derived_id`].
pub(crate) fn derived_ulid(org: &str, seq: u64, received_at: Timestamp) -> ulid::Ulid {
    let mut h = Sha256::new();
    h.update(b"trail.event-id.v1\0");
    h.update(org.as_bytes());
    h.update([0]);
    h.update(seq.to_be_bytes());
    let digest = h.finalize();
    let mut random = [0u8; 16];
    random[6..].copy_from_slice(&digest[..10]);
    ulid::Ulid::from_parts(
        received_at.millis().max(0) as u64,
        u128::from_be_bytes(random),
    )
}

/// The JSON record of an event, as the API returns it.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = Event))]
#[serde(rename_all = "camelCase")]
pub struct EventRecord<'a> {
    pub id: String,
    pub seq: u64,
    pub org: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<&'a str>,
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub timestamp: String,
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub received_at: String,
    pub action: &'a str,
    pub category: &'a str,
    pub actor: ActorRecord<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<ObjectRecord<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<RequestRecord<'a>>,
    pub count: u64,
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub last_occurred_timestamp: String,
    /// Provenance: the credential that sent the event (absent on Trail's own records).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub submitted_by: Option<&'a str>,
    /// RFC 6962 leaf hash, hex: SHA-256(0x00 || canonical bytes).
    pub hash: String,
    /// In the collapsed view (`collapse=true`): the seqs of the identical events this record
    /// stands for, its own among them. The record is the oldest's, with `count` and
    /// `lastOccurredTimestamp` over them all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seqs: Option<Vec<u64>>,
}

#[derive(Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = Actor))]
#[serde(rename_all = "camelCase")]
pub struct ActorRecord<'a> {
    pub id: &'a str,
    #[serde(rename = "type")]
    pub kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<&'a str>,
}

#[derive(Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = Object))]
#[serde(rename_all = "camelCase")]
pub struct ObjectRecord<'a> {
    #[serde(rename = "type")]
    pub kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<Value>,
}

#[derive(Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = Request))]
#[serde(rename_all = "camelCase")]
pub struct RequestRecord<'a> {
    pub method: &'a str,
    pub route: &'a str,
    pub status: u16,
    pub latency_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_sha256: Option<String>,
}

/// Why an event's text was refused ([`EventBody::from_json_str`]): it is not JSON (what
/// the JSON reader said), or not a valid event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TextError {
    NotJson(String),
    Invalid(ValidationError),
}

/// Why one event was refused: the field (a dotted path) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    pub field: String,
    pub message: String,
}

fn invalid(field: &str, message: impl Into<String>) -> ValidationError {
    ValidationError {
        field: field.to_owned(),
        message: message.into(),
    }
}

/// How far ahead of the server's clock a client's timestamp may be: a clock a little fast is
/// fine, an event dated years ahead would sit at the top of the newest-first log for good.
pub const MAX_CLOCK_SKEW_MICROS: i64 = 24 * 3600 * 1_000_000;

/// Limits on what one event may hold.
/// The methods of the IANA HTTP Method Registry
/// (<https://www.iana.org/assignments/http-methods>), less the reserved `*`. An event's
/// `request.method`, and the method its route template names, is one of these, so a
/// path-only route filter stands for one template per method here, whatever was stored.
pub const HTTP_METHODS: [&str; 40] = [
    "ACL",
    "BASELINE-CONTROL",
    "BIND",
    "CHECKIN",
    "CHECKOUT",
    "CONNECT",
    "COPY",
    "DELETE",
    "GET",
    "HEAD",
    "LABEL",
    "LINK",
    "LOCK",
    "MERGE",
    "MKACTIVITY",
    "MKCALENDAR",
    "MKCOL",
    "MKREDIRECTREF",
    "MKWORKSPACE",
    "MOVE",
    "OPTIONS",
    "ORDERPATCH",
    "PATCH",
    "POST",
    "PRI",
    "PROPFIND",
    "PROPPATCH",
    "PUT",
    "QUERY",
    "REBIND",
    "REPORT",
    "SEARCH",
    "TRACE",
    "UNBIND",
    "UNCHECKOUT",
    "UNLINK",
    "UNLOCK",
    "UPDATE",
    "UPDATEREDIRECTREF",
    "VERSION-CONTROL",
];

/// Whether `m` is a method of the IANA HTTP Method Registry ([`HTTP_METHODS`]).
pub fn is_http_method(m: &str) -> bool {
    HTTP_METHODS.contains(&m)
}

pub mod limits {
    pub const ID: usize = 128;
    pub const NAME: usize = 256;
    pub const ACTION: usize = 128;
    pub const USER_AGENT: usize = 1024;
    pub const ROUTE: usize = 512;
    pub const JSON: usize = 64 * 1024;
}

// What the wire may carry. Server-assigned fields (seq, receivedAt, hash) are accepted and
// ignored, so Akuity-style records and Trail's own (less a Trail-made id) can be sent as is.
/// An event as ingest takes it (the schema of the API's `EventInput`).
#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventInput {
    /// Idempotency id; a repeat from the same credential is not stored twice.
    id: Option<String>,
    /// Ignored: Trail sets it.
    #[allow(dead_code)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Value>))]
    seq: Option<Value>,
    /// Ignored: Trail sets it.
    #[allow(dead_code)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Value>))]
    received_at: Option<Value>,
    /// Ignored: Trail sets it.
    #[allow(dead_code)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Value>))]
    hash: Option<Value>,
    org: Option<String>,
    instance: Option<String>,
    timestamp: Option<String>,
    action: String,
    category: Option<String>,
    actor: ActorInput,
    object: Option<ObjectInput>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    details: Option<Map<String, Value>>,
    request: Option<RequestInput>,
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    count: Option<u64>,
    last_occurred_timestamp: Option<String>,
    /// Refused when given: Trail sets it.
    #[cfg_attr(feature = "openapi", schema(ignore))]
    submitted_by: Option<Value>,
}

#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ActorInput {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    ip: Option<String>,
    user_agent: Option<String>,
    token_id: Option<String>,
    scope: Option<String>,
}

#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectInput {
    #[serde(rename = "type")]
    kind: String,
    id: Option<Value>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    parent_id: Option<Map<String, Value>>,
}

#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequestInput {
    method: String,
    route: String,
    status: u16,
    latency_ms: Option<f64>,
    body_sha256: Option<String>,
}

impl EventBody {
    /// Refuses a timestamp (or last occurrence) more than [`MAX_CLOCK_SKEW_MICROS`] after
    /// `now`, the time of receipt.
    pub fn check_clock(&self, now: Timestamp) -> Result<(), ValidationError> {
        let limit = Timestamp(now.micros().saturating_add(MAX_CLOCK_SKEW_MICROS));
        for (field, t) in [
            ("timestamp", self.timestamp),
            ("lastOccurredTimestamp", self.last_occurred),
        ] {
            if let Some(t) = t.filter(|t| *t > limit) {
                return Err(invalid(
                    field,
                    format!("{t} is more than a day ahead of the server's clock ({now})"),
                ));
            }
        }
        Ok(())
    }

    /// Reads and validates one event sent to `org`.
    pub fn from_json(value: Value, org: &str) -> Result<EventBody, ValidationError> {
        if !value.is_object() {
            return Err(invalid("event", "must be a JSON object"));
        }
        let input = serde_path_to_error::deserialize(value)
            .map_err(|e| input_error(e, serde_json::Error::to_string))?;
        EventBody::from_input(input, org)
    }

    /// Reads and validates one event sent to `org` from its JSON text: what reading it into
    /// a value and [`EventBody::from_json`] would say. Ingest reads each event of a batch
    /// this way, straight into its fields, without first building a value of the whole event
    /// (building and reading that value were about 40% of the request threads' time during
    /// ingest). Two differences: a field of the
    /// format given twice is refused (a value keeps the last), and an event with both a field
    /// of the wrong type and text no value can hold is refused for whichever comes first.
    pub fn from_json_str(text: &str, org: &str) -> Result<EventBody, TextError> {
        if text.trim_start().starts_with('{') {
            // Most events are valid: read them without tracking where the reader is, and
            // read again with the path only to say where an error is.
            let mut de = serde_json::Deserializer::from_str(text);
            if let Ok(input) = EventInput::deserialize(&mut de)
                && de.end().is_ok()
            {
                return EventBody::from_input(input, org).map_err(TextError::Invalid);
            }
            let mut de = serde_json::Deserializer::from_str(text);
            let read = serde_path_to_error::deserialize::<_, EventInput>(&mut de);
            match read {
                Ok(input) if de.end().is_ok() => {
                    return EventBody::from_input(input, org).map_err(TextError::Invalid);
                }
                Err(e) if e.inner().is_data() => {
                    return Err(TextError::Invalid(input_error(e, |e| {
                        // As a value's error says it: the field's path says where.
                        let text = e.to_string();
                        let at = format!(" at line {} column {}", e.line(), e.column());
                        text.strip_suffix(&at).unwrap_or(&text).to_owned()
                    })));
                }
                _ => {}
            }
        }
        // Not an object, or refused as text rather than for a field (a number out of range,
        // a lone surrogate, nesting too deep, a field given as an array too long): read as
        // a value first, as from_json's callers do, for the same answer.
        match serde_json::from_str::<Value>(text) {
            Ok(value) => EventBody::from_json(value, org).map_err(TextError::Invalid),
            Err(e) => Err(TextError::NotJson(e.to_string())),
        }
    }

    fn from_input(input: EventInput, org: &str) -> Result<EventBody, ValidationError> {
        if input.submitted_by.is_some() {
            return Err(invalid(
                "submittedBy",
                "is set by Trail to the credential that sends the event; leave it out",
            ));
        }
        if let Some(o) = &input.org
            && o != org
        {
            return Err(invalid(
                "org",
                format!("names org {o:?} but the event was sent to org {org:?}"),
            ));
        }
        let client_id = input
            .id
            .map(|id| check_client_id(&id).map(|()| id))
            .transpose()?;
        let instance = input
            .instance
            .map(|i| check_token("instance", &i, limits::ID).map(|()| i))
            .transpose()?;
        let timestamp = input
            .timestamp
            .map(|t| Timestamp::parse(&t).map_err(|e| invalid("timestamp", e.to_string())))
            .transpose()?;
        let last_occurred = input
            .last_occurred_timestamp
            .map(|t| {
                Timestamp::parse(&t).map_err(|e| invalid("lastOccurredTimestamp", e.to_string()))
            })
            .transpose()?;
        check_text("action", &input.action, limits::ACTION)?;
        let category = input.category.unwrap_or_else(|| "app".to_owned());
        check_category(&category)?;
        let actor = actor_from(input.actor)?;
        let object = input.object.map(object_from).transpose()?;
        let details = input
            .details
            .map(|d| json_field("details", &Value::Object(d)))
            .transpose()?;
        let request = input.request.map(request_from).transpose()?;
        let count = input.count.unwrap_or(1);
        if count == 0 {
            return Err(invalid("count", "must be at least 1"));
        }
        Ok(EventBody {
            client_id,
            instance,
            timestamp,
            action: input.action,
            category,
            actor,
            object,
            details,
            request,
            count,
            last_occurred,
            submitted_by: None,
        })
    }
}

/// A field that does not read as its type: named by its path (`actor.ip`), or `event`
/// for the event as a whole; `message` says what was wrong.
fn input_error(
    e: serde_path_to_error::Error<serde_json::Error>,
    message: impl FnOnce(&serde_json::Error) -> String,
) -> ValidationError {
    let path = e.path().to_string();
    let field = if path == "." {
        "event".to_owned()
    } else {
        path
    };
    invalid(&field, message(e.inner()))
}

fn actor_from(a: ActorInput) -> Result<Actor, ValidationError> {
    check_text("actor.id", &a.id, limits::NAME)?;
    let kind = a.kind.parse().map_err(|m| invalid("actor.type", m))?;
    let ip =
        a.ip.map(|ip| {
            ip.parse::<IpAddr>()
                .map_err(|_| invalid("actor.ip", format!("not an IP address: {ip:?}")))
        })
        .transpose()?;
    if let Some(ua) = &a.user_agent {
        check_text("actor.userAgent", ua, limits::USER_AGENT)?;
    }
    if let Some(t) = &a.token_id {
        check_token("actor.tokenId", t, limits::ID)?;
    }
    if let Some(s) = &a.scope {
        check_text("actor.scope", s, limits::ID)?;
    }
    Ok(Actor {
        id: a.id,
        kind,
        ip,
        user_agent: a.user_agent,
        token_id: a.token_id,
        scope: a.scope,
    })
}

fn object_from(o: ObjectInput) -> Result<Object, ValidationError> {
    check_text("object.type", &o.kind, limits::NAME)?;
    let id = match o.id {
        None | Some(Value::Null) => None,
        Some(v @ (Value::String(_) | Value::Object(_))) => Some(json_field("object.id", &v)?),
        Some(_) => return Err(invalid("object.id", "must be a string or an object")),
    };
    let parent_id = o
        .parent_id
        .map(|p| json_field("object.parentId", &Value::Object(p)))
        .transpose()?;
    Ok(Object::new(o.kind, id, parent_id))
}

fn request_from(r: RequestInput) -> Result<RequestInfo, ValidationError> {
    if !is_http_method(&r.method) {
        return Err(invalid(
            "request.method",
            format!(
                "must be an upper-case method of the IANA HTTP Method Registry (GET, POST, ...), got {:?}",
                r.method
            ),
        ));
    }
    check_text("request.route", &r.route, limits::ROUTE)?;
    if let Some((method, _)) = r.route.split_once(' ')
        && !is_http_method(method)
    {
        return Err(invalid(
            "request.route",
            format!(
                "a template that names a method (\"GET /v1/tenants/:id\") must name a method of the IANA HTTP Method Registry, got {method:?}"
            ),
        ));
    }
    if !(100..=599).contains(&r.status) {
        return Err(invalid(
            "request.status",
            format!("must be an HTTP status 100-599, got {}", r.status),
        ));
    }
    let latency_ms = r.latency_ms.unwrap_or(0.0);
    if !latency_ms.is_finite() || !(0.0..=86_400_000.0).contains(&latency_ms) {
        return Err(invalid(
            "request.latencyMs",
            "must be a number of milliseconds between 0 and 86400000",
        ));
    }
    let body_sha256 = r
        .body_sha256
        .map(|h| {
            let mut out = [0u8; 32];
            hex::decode_to_slice(&h, &mut out)
                .map(|()| out)
                .map_err(|_| invalid("request.bodySha256", "must be 64 hex digits"))
        })
        .transpose()?;
    Ok(RequestInfo {
        method: r.method,
        route: r.route,
        status: r.status,
        latency_us: (latency_ms * 1000.0).round() as u64,
        body_sha256,
    })
}

fn json_field(field: &str, v: &Value) -> Result<CanonicalJson, ValidationError> {
    let c = CanonicalJson::from_value(v);
    if c.as_str().len() > limits::JSON {
        return Err(invalid(
            field,
            format!(
                "is {} bytes; the limit is {}",
                c.as_str().len(),
                limits::JSON
            ),
        ));
    }
    Ok(c)
}

/// Printable text: not empty, within the limit, no control characters.
fn check_text(field: &str, s: &str, max: usize) -> Result<(), ValidationError> {
    if s.is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if s.len() > max {
        return Err(invalid(
            field,
            format!("is {} bytes; the limit is {max}", s.len()),
        ));
    }
    if s.chars().any(char::is_control) {
        return Err(invalid(field, "must not contain control characters"));
    }
    Ok(())
}

/// An identifier: letters, digits and `._:-`, within the limit.
fn check_token(field: &str, s: &str, max: usize) -> Result<(), ValidationError> {
    check_text(field, s, max)?;
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
    {
        return Err(invalid(
            field,
            format!("{s:?} may hold only letters, digits and . _ : -"),
        ));
    }
    Ok(())
}

fn check_client_id(id: &str) -> Result<(), ValidationError> {
    check_token("id", id, limits::ID)?;
    if id.starts_with("evt_") {
        return Err(invalid(
            "id",
            "ids that begin with evt_ are made by Trail: leave id out to get one, or use your own",
        ));
    }
    Ok(())
}

/// The category of the records Trail writes of its own management changes; clients cannot
/// send it, so such a record is always Trail's.
pub const MANAGEMENT_CATEGORY: &str = "management";

fn check_category(c: &str) -> Result<(), ValidationError> {
    if c == MANAGEMENT_CATEGORY {
        return Err(invalid(
            "category",
            "\"management\" is kept for the records Trail writes of its own changes",
        ));
    }
    if c.is_empty()
        || c.len() > 32
        || !c.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.')
        })
    {
        return Err(invalid(
            "category",
            format!("{c:?} must be 1-32 lower-case letters, digits, _ - or ."),
        ));
    }
    Ok(())
}

/// Checks an org id: a slug of lower-case letters, digits and `-`.
pub fn check_org_slug(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not an org id: 1-63 lower-case letters, digits and -, starting with a letter or digit"
        ))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    /// The sample record of seed 002, byte for byte.
    pub(crate) const SEED_002_SAMPLE: &str = r#"{
"action": "deleted",
"actor": {
"id": "Sarah Brown@akuity.io",
"ip": "132.226.61.247",
"type": "api_key"
},
"count": 9,
"details": {
"actionType": "DELETE",
"message": "Resource successfully created",
"patch": ""
},
"lastOccurredTimestamp": "2025-11-21 16:26:40.13921 +0000 UTC",
"object": {
"id": {
"group": "argoproj.io",
"kind": "Cluster",
"name": "dev-team"
},
"parentId": {
"applicationName": "web-app",
"name": "",
"parentName": ""
},
"type": "custom_role"
},
"timestamp": "2025-11-21 16:26:40.13921 +0000 UTC"
}"#;

    fn body(v: Value) -> Result<EventBody, ValidationError> {
        EventBody::from_json(v, "acme")
    }

    /// What reading `text` into a value and then [`EventBody::from_json`] says, as
    /// [`EventBody::from_json_str`] says it.
    fn via_value(text: &str) -> Result<EventBody, TextError> {
        match serde_json::from_str::<Value>(text) {
            Ok(v) => body(v).map_err(TextError::Invalid),
            Err(e) => Err(TextError::NotJson(e.to_string())),
        }
    }

    /// Ingest reads events from their text; other callers from a value. Both read the same
    /// events, and refuse the same ones with the same field and message.
    #[test]
    fn an_event_reads_the_same_from_its_text_as_from_a_value() {
        let actor = json!({"id": "u", "type": "user"});
        let mut texts: Vec<String> = [
            serde_json::from_str(SEED_002_SAMPLE).unwrap(),
            json!({"action": "a", "actor": actor}),
            json!({"action": "a", "actor": actor, "request": {"method": "GET", "route": "/r",
                   "status": 200, "latencyMs": 1.5, "bodySha256": "ab".repeat(32)}}),
            json!({"id": "c-1", "action": "a", "actor": actor, "instance": "i-1",
                   "org": "acme", "seq": 7, "receivedAt": "x", "hash": null}),
            // Refused, each at its own path.
            json!({"action": 5, "actor": actor}),
            json!({"action": "a", "actor": {"id": "u", "type": "user", "ip": 7}}),
            json!({"action": "a", "actor": {"id": "u", "type": "user", "ip": "nope"}}),
            json!({"action": "a", "actor": {"id": "u"}}),
            json!({"action": "a", "actor": actor, "request": {"method": "GET", "route": "/r",
                   "status": "200"}}),
            json!({"action": "a", "actor": actor, "request": {"method": "GET", "route": "/r",
                   "status": 70000}}),
            json!({"action": "a", "actor": actor, "object": {"type": "t", "id": {"k": [1]},
                   "extra": 1}}),
            json!({"action": "a", "actor": actor, "details": "text"}),
            json!({"action": "a", "actor": actor, "count": -1}),
            json!({"action": "a", "actor": actor, "count": 0}),
            json!({"action": "a", "actor": actor, "count": 1.0}),
            json!({"action": "a", "actor": actor, "count": 1e300}),
            json!({"action": "a", "actor": actor, "count": u64::MAX}),
            json!({"action": "a", "actor": actor, "request": {"method": "GET", "route": "/r",
                   "status": 200, "latencyMs": -3}}),
            json!({"action": "a", "actor": actor, "timestamp": 17}),
            json!({"action": "a", "actor": actor, "details": {"k": {"z": 1, "a": [1.5, "é\u{1}"]}}}),
            json!({"action": "a", "actor": actor, "unknown": true}),
            json!({"action": "a", "actor": actor, "submittedBy": "k"}),
            json!({"action": "a", "actor": actor, "submittedBy": null}),
            json!({"action": "a", "actor": actor, "org": "other"}),
            json!({"actor": actor}),
            json!({}),
            json!([{"action": "a", "actor": actor}]),
            json!("a string"),
            json!(null),
        ]
        .iter()
        .flat_map(|v| [v.to_string(), format!(" {v:#}\n")])
        .collect();
        let a = r#"{"action": "a", "actor": {"id": "u", "type": "user"}"#;
        let deep = format!("{}{}", "[".repeat(129), "]".repeat(129));
        texts.extend(
            [
                // Text no value can hold, in a field read and in fields set aside.
                r#", "count": 1e400}"#,
                r#", "request": {"method": "GET", "route": "/r", "status": 200, "latencyMs": 1e400}}"#,
                r#", "details": {"x": "\ud800"}}"#,
                r#", "seq": 1e400}"#,
                r#", "hash": "\ud800"}"#,
                &format!(r#", "receivedAt": {deep}}}"#),
                &format!(r#", "details": {{"x": {deep}}}}}"#),
                // Numbers and escapes as text.
                r#", "count": 18446744073709551616}"#,
                r#", "count": 1e2}"#,
                r#", "count": -0}"#,
                r#", "\u0063ount": 2}"#,
                // A part given as an array (as serde reads a struct), too long or not.
                r#", "request": ["GET", "/r", 200, null, null]}"#,
                r#", "request": ["GET", "/r", 200, null, null, 1]}"#,
                // Not an event at all.
                r#" x"#,
                r#","#,
            ]
            .iter()
            .map(|rest| format!("{a}{rest}")),
        );
        texts.extend(["[1e400]", "1", "\"\\ud800\""].map(String::from));
        for text in &texts {
            assert_eq!(
                EventBody::from_json_str(text, "acme"),
                via_value(text),
                "read from {text}"
            );
        }
        // A field given twice, which a value keeps the last of: refused.
        for (text, field) in [
            (format!(r#"{a}, "action": "b"}}"#), "event"),
            (
                r#"{"action": "a", "actor": {"id": "u", "id": "v", "type": "user"}}"#.into(),
                "actor",
            ),
        ] {
            match EventBody::from_json_str(&text, "acme") {
                Err(TextError::Invalid(e)) => {
                    assert_eq!(e.field, field, "{text}: {e}");
                    assert!(e.message.starts_with("duplicate field"), "{text}: {e}");
                }
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_code_names_its_kind() {
        for kind in ActorType::KNOWN {
            let code = kind.code().unwrap();
            assert_eq!(ActorType::name_of_code(code), Some(kind.as_str()));
        }
        assert_eq!(ActorType::name_of_code(0), None);
        assert_eq!(ActorType::name_of_code(6), None);
    }

    #[test]
    fn seed_002_sample_is_accepted_as_is() {
        let b = body(serde_json::from_str(SEED_002_SAMPLE).unwrap()).unwrap();
        assert_eq!(b.action, "deleted");
        assert_eq!(b.category, "app");
        assert_eq!(b.actor.kind, ActorType::ApiKey);
        assert_eq!(b.count, 9);
        let o = b.object.as_ref().unwrap();
        assert_eq!(o.kind, "custom_role");
        assert_eq!(o.id_kind(), Some("Cluster"));
        assert_eq!(o.id_name(), Some("dev-team"));
        assert_eq!(
            b.timestamp.unwrap().to_string(),
            "2025-11-21T16:26:40.139210Z"
        );
    }

    #[test]
    fn record_round_trips_through_the_reader() {
        let b = body(serde_json::from_str(SEED_002_SAMPLE).unwrap()).unwrap();
        let e = Event::seal("acme", 7, Timestamp(1_700_000_000_000_000), b);
        let rec = serde_json::to_value(e.record(&[0xab; 32])).unwrap();
        assert_eq!(rec["seq"], 7);
        assert_eq!(rec["actor"]["type"], "api_key");
        assert_eq!(rec["object"]["id"]["kind"], "Cluster");
        assert_eq!(rec["hash"], "ab".repeat(32));
        assert!(rec["id"].as_str().unwrap().starts_with("evt_"));
        // A record sent back (as a relay might) yields the same event, less its Trail-made
        // id, which is refused as a client id: idempotency checks would not find it.
        let err = body(rec.clone()).unwrap_err().to_string();
        assert!(err.starts_with("id: ids that begin with evt_"), "{err}");
        let mut rec = rec;
        rec.as_object_mut().unwrap().remove("id");
        assert_eq!(Event::seal("acme", 7, e.received_at, body(rec).unwrap()), e);
    }

    #[test]
    fn derived_ids_differ_by_org_and_seq() {
        let t = Timestamp(1_700_000_000_000_000);
        let a = derived_id("acme", 1, t);
        assert_eq!(a, derived_id("acme", 1, t));
        assert_ne!(a, derived_id("acme", 2, t));
        assert_ne!(a, derived_id("umbrella", 1, t));
        assert_eq!(a.len(), 4 + 26);
    }

    #[test]
    fn errors_name_the_field() {
        let minimal = || json!({"action": "x", "actor": {"id": "a", "type": "user"}});
        let cases: Vec<(Value, &str)> = vec![
            (json!([]), "event: must be a JSON object"),
            (
                json!({"actor": {"id": "a", "type": "user"}}),
                "missing field `action`",
            ),
            (
                json!({"action": 5, "actor": {"id": "a", "type": "user"}}),
                "action: invalid type",
            ),
            (
                json!({"action": "x", "actor": {"id": "a", "type": "Robot"}}),
                "actor.type: invalid actor type \"Robot\"",
            ),
            (
                json!({"action": "x", "actor": {"id": "", "type": "user"}}),
                "actor.id: must not be empty",
            ),
            (
                json!({"action": "x", "actor": {"id": "a", "type": "user", "ip": "1.2.3"}}),
                "actor.ip: not an IP address",
            ),
            (
                json!({"action": "x", "actor": {"id": "a", "type": "user"}, "colour": 1}),
                "unknown field `colour`",
            ),
            (
                json!({"action": "x", "actor": {"id": "a", "type": "user"}, "org": "other"}),
                "org: names org \"other\"",
            ),
            (
                json!({"action": "x", "actor": {"id": "a", "type": "user"}, "timestamp": "now"}),
                "timestamp: invalid time",
            ),
            (
                json!({"action": "x", "actor": {"id": "a", "type": "user"}, "id": "a b"}),
                "id: \"a b\" may hold only",
            ),
            (
                json!({"action": "x", "actor": {"id": "a", "type": "user"}, "count": 0}),
                "count: must be at least 1",
            ),
            (
                json!({"action": "x", "actor": {"id": "a", "type": "user"}, "request": {"method": "XGET123", "route": "/v1/x", "status": 200}}),
                "request.method: must be an upper-case method of the IANA HTTP Method Registry",
            ),
            (
                json!({"action": "x", "actor": {"id": "a", "type": "user"}, "request": {"method": "GET", "route": "XGET /v1/x", "status": 200}}),
                "request.route: a template that names a method",
            ),
            (
                json!({"action": "x", "actor": {"id": "a", "type": "user"}, "category": "App"}),
                "category:",
            ),
            (
                json!({"action": "x", "actor": {"id": "a", "type": "user"}, "object": {"type": "t", "id": 3}}),
                "object.id: must be a string or an object",
            ),
            (
                json!({"action": "x", "actor": {"id": "a", "type": "user"}, "request": {"method": "get", "route": "r", "status": 200}}),
                "request.method",
            ),
            (
                json!({"action": "x", "actor": {"id": "a", "type": "user"}, "request": {"method": "GET", "route": "r", "status": 99}}),
                "request.status",
            ),
            (
                json!({"action": "x", "actor": {"id": "a", "type": "user"}, "request": {"method": "GET", "route": "r", "status": 200, "bodySha256": "zz"}}),
                "request.bodySha256",
            ),
            (
                json!({"action": "x", "actor": {"id": "a", "type": "user"}, "request": {"method": "GET", "route": "r", "status": 200, "latencyMs": -1}}),
                "request.latencyMs",
            ),
            (
                json!({"action": "x\u{7}", "actor": {"id": "a", "type": "user"}}),
                "action: must not contain control",
            ),
        ];
        for (v, want) in cases {
            let got = body(v.clone()).unwrap_err().to_string();
            assert!(got.contains(want), "for {v}: got {got:?}, want {want:?}");
        }
        assert!(body(minimal()).is_ok());
    }

    #[test]
    fn timestamps_far_ahead_of_the_clock_are_refused() {
        let now = Timestamp::parse("2026-11-21T12:00:00Z").unwrap();
        let at = |t: &str| {
            body(json!({"action": "x", "actor": {"id": "a", "type": "user"}, "timestamp": t}))
                .unwrap()
                .check_clock(now)
        };
        assert!(at("2026-11-22T11:59:59Z").is_ok());
        assert!(at("2020-01-01T00:00:00Z").is_ok());
        let err = at("2026-11-22T12:00:01Z").unwrap_err();
        assert_eq!(err.field, "timestamp");
        assert!(err.message.contains("more than a day ahead"), "{err}");
    }

    #[test]
    fn oversized_details_are_refused() {
        let big = "x".repeat(limits::JSON);
        let err = body(
            json!({"action": "x", "actor": {"id": "a", "type": "user"}, "details": {"m": big}}),
        )
        .unwrap_err();
        assert_eq!(err.field, "details");
    }

    #[test]
    fn details_are_canonicalized() {
        let a = body(json!({"action": "x", "actor": {"id": "a", "type": "user"}, "details": {"b": 1, "a": [1.0, "é"]}})).unwrap();
        assert_eq!(a.details.unwrap().as_str(), r#"{"a":[1,"é"],"b":1}"#);
    }

    fn arbitrary_json() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            "\\PC{0,12}".prop_map(Value::from),
            prop_oneof![
                Just("user"),
                Just("api_key"),
                Just("GET"),
                Just("2026-01-01T00:00:00Z")
            ]
            .prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 48, 8, |inner| {
            let keys = prop_oneof![
                Just("action".to_owned()),
                Just("actor".to_owned()),
                Just("id".to_owned()),
                Just("type".to_owned()),
                Just("object".to_owned()),
                Just("request".to_owned()),
                Just("status".to_owned()),
                Just("details".to_owned()),
                Just("timestamp".to_owned()),
                Just("ip".to_owned()),
                Just("route".to_owned()),
                Just("method".to_owned()),
                Just("latencyMs".to_owned()),
                Just("count".to_owned()),
                "[a-z]{1,6}",
            ];
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                proptest::collection::btree_map(keys, inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Any JSON value, with numbers of every kind and keys from every plane.
    fn any_json() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            proptest::bool::ANY.prop_map(Value::from),
            proptest::num::i64::ANY.prop_map(Value::from),
            proptest::num::u64::ANY.prop_map(Value::from),
            (-(1i64 << 54)..(1i64 << 54)).prop_map(Value::from),
            proptest::num::f64::NORMAL.prop_map(Value::from),
            prop_oneof![Just(0.5), Just(1.0), Just(-0.0), Just(1e21), Just(1e-7)]
                .prop_map(Value::from),
            "\\PC{0,8}".prop_map(Value::from),
            "[\\x00-\\x1f\"\\\\/\\x7f\u{2028}\u{e000}\u{ffff}\u{10000}]{0,4}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 32, 6, |inner| {
            let keys = prop_oneof![
                "[a-z]{1,3}",
                "\\PC{1,3}",
                "[a\u{7f}\u{e9}\u{d7ff}\u{e000}\u{ffff}\u{10000}\u{1f600}]{1,3}",
            ];
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                proptest::collection::btree_map(keys, inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        #[test]
        fn canonical_text_is_jcs_whichever_way_it_is_made(v in any_json()) {
            let made = CanonicalJson::from_value(&v);
            proptest::prop_assert_eq!(made.as_str(), serde_jcs::to_string(&v).unwrap());
        }

        #[test]
        fn validation_never_panics_and_accepted_events_seal(v in arbitrary_json()) {
            if let Ok(b) = body(v) {
                let e = Event::seal("acme", 0, Timestamp(0), b);
                let _ = crate::canonical::leaf_hash(&e);
                let _ = serde_json::to_string(&e.record(&[0; 32])).unwrap();
            }
        }
    }

    #[test]
    fn org_slugs() {
        assert!(check_org_slug("acme").is_ok());
        assert!(check_org_slug("acme-2").is_ok());
        for bad in ["", "-acme", "Acme", "a_b", &"a".repeat(64)] {
            assert!(check_org_slug(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn any_well_formed_actor_type_is_accepted_and_the_known_ones_keep_their_meaning() {
        let kind = |t: &str| {
            body(json!({"action": "x", "actor": {"id": "a", "type": t}}))
                .map(|b| b.actor.kind)
                .map_err(|e| e.to_string())
        };
        assert_eq!(kind("break_glass"), Ok(ActorType::BreakGlass));
        assert_eq!(kind("user").unwrap().code(), Some(1));
        for t in [
            "service",
            "argocd.application",
            "kargo-stage",
            "svc_2",
            &"a".repeat(64),
        ] {
            let k = kind(t).unwrap();
            assert_eq!(k, ActorType::Other(t.to_owned()));
            assert_eq!((k.as_str(), k.code()), (t, None));
        }
        for bad in ["", "Service", "svc acct", "svc/x", "é", &"a".repeat(65)] {
            let e = kind(bad).unwrap_err();
            assert!(
                e.starts_with("actor.type: invalid actor type"),
                "{bad:?}: {e}"
            );
        }
        // Written as the string in the canonical bytes, like the known ones: no hash change
        // for them, and a kind of its own for the others.
        let e = |t: &str| {
            Event::seal(
                "acme",
                0,
                Timestamp(0),
                body(json!({"action": "x", "actor": {"id": "a", "type": t}})).unwrap(),
            )
        };
        let svc = e("service");
        let bytes = crate::canonical::encode(&svc);
        assert_eq!(crate::canonical::decode(&bytes).unwrap(), svc);
        assert_ne!(bytes, crate::canonical::encode(&e("system")));
    }
}
