//! The query language: the filter parameters and the `q` expression of the audit-log
//! endpoints, and the opaque paging cursor.
//!
//! `q` is a list of `key:value` terms separated by spaces; a value with spaces is quoted
//! (`route:"GET /v1/tenants/:id"`), a leading `-` negates a term. Terms on the same key are
//! alternatives (`actor:alice actor:bob` is either), terms on different keys must all hold,
//! and a negated term excludes (an event without the field is not excluded). `since:` and
//! `until:` bound the time window.
//!
//! [`Filter::matches`] is the reference semantics; storage backends translate the same
//! filter to their own queries and are tested against it.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::event::{ActorType, Event};
use crate::time::Timestamp;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("unknown filter {0:?} (known: {known})", known = Field::KEYS)]
    UnknownKey(String),
    #[error("{key}: {message}")]
    BadValue { key: String, message: String },
    #[error("bad query at character {at}: {message}")]
    Syntax { at: usize, message: String },
    #[error("bad cursor: pass back the nextCursor of an earlier page unchanged")]
    BadCursor,
    #[error("too many filter terms: at most {MAX_TERMS} (parameters and q terms together)")]
    TooManyTerms,
}

/// The most terms a filter may have (query parameters and `q` terms together, `since` and
/// `until` aside): what one query may cost is bounded by its terms, so it is bounded here,
/// where the server and the CLI both parse filters.
pub const MAX_TERMS: usize = 32;

/// A field that can be filtered on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    Actor,
    ActorType,
    Action,
    Category,
    ObjectType,
    ObjectKind,
    ObjectName,
    Route,
    Method,
    Status,
    Instance,
    TokenId,
    Ip,
}

impl Field {
    pub const ALL: [Field; 13] = [
        Field::Actor,
        Field::ActorType,
        Field::Action,
        Field::Category,
        Field::ObjectType,
        Field::ObjectKind,
        Field::ObjectName,
        Field::Route,
        Field::Method,
        Field::Status,
        Field::Instance,
        Field::TokenId,
        Field::Ip,
    ];
    const KEYS: &'static str = "actor, actorType, action, category, objectType, objectKind, objectName, route, method, status, instance, tokenId, ip, since, until";

    pub const fn key(self) -> &'static str {
        match self {
            Field::Actor => "actor",
            Field::ActorType => "actorType",
            Field::Action => "action",
            Field::Category => "category",
            Field::ObjectType => "objectType",
            Field::ObjectKind => "objectKind",
            Field::ObjectName => "objectName",
            Field::Route => "route",
            Field::Method => "method",
            Field::Status => "status",
            Field::Instance => "instance",
            Field::TokenId => "tokenId",
            Field::Ip => "ip",
        }
    }

    pub fn from_key(key: &str) -> Option<Field> {
        Field::ALL.into_iter().find(|f| f.key() == key)
    }

    /// The field's text value in an event, if it has one (not for `status`).
    pub fn text_of(self, e: &Event) -> Option<String> {
        match self {
            Field::Actor => Some(e.actor.id.clone()),
            Field::ActorType => Some(e.actor.kind.as_str().to_owned()),
            Field::Action => Some(e.action.clone()),
            Field::Category => Some(e.category.clone()),
            Field::ObjectType => e.object.as_ref().map(|o| o.kind.clone()),
            Field::ObjectKind => e
                .object
                .as_ref()
                .and_then(|o| o.id_kind())
                .map(str::to_owned),
            Field::ObjectName => e
                .object
                .as_ref()
                .and_then(|o| o.id_name())
                .map(str::to_owned),
            Field::Route => e.request.as_ref().map(|r| r.route.clone()),
            Field::Method => e.request.as_ref().map(|r| r.method.clone()),
            Field::Status => e.request.as_ref().map(|r| r.status.to_string()),
            Field::Instance => e.instance.clone(),
            Field::TokenId => e.actor.token_id.clone(),
            Field::Ip => e.actor.ip.map(|ip| ip.to_string()),
        }
    }
}

/// What `status:` matches: one code, or a class such as `5xx`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusMatch {
    Code(u16),
    Class(u8),
}

impl StatusMatch {
    pub fn range(self) -> (u16, u16) {
        match self {
            StatusMatch::Code(c) => (c, c),
            StatusMatch::Class(k) => (k as u16 * 100, k as u16 * 100 + 99),
        }
    }
    pub fn matches(self, status: u16) -> bool {
        let (lo, hi) = self.range();
        (lo..=hi).contains(&status)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Matcher {
    /// Equal to this text. For `route`, a value without a space (`/v1/tenants/:id`) matches
    /// the template under any method.
    Text(String),
    Status(StatusMatch),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    pub field: Field,
    pub matcher: Matcher,
    pub negated: bool,
}

impl Term {
    pub fn matches(&self, e: &Event) -> bool {
        match &self.matcher {
            Matcher::Status(s) => e.request.as_ref().is_some_and(|r| s.matches(r.status)),
            Matcher::Text(want) => match self.field.text_of(e) {
                None => false,
                Some(have) if self.field == Field::Route => route_matches(want, &have),
                Some(have) => &have == want,
            },
        }
    }
}

/// Whether a route filter matches a route template: the template itself, or a path alone
/// (`/v1/tenants/:id`) for the template under any method of the IANA HTTP Method Registry
/// ([`HTTP_METHODS`](crate::event::HTTP_METHODS)): one template per registered method, so
/// a backend can look each up exactly.
pub fn route_matches(pattern: &str, route: &str) -> bool {
    if pattern.contains(' ') {
        pattern == route
    } else {
        route
            .split_once(' ')
            .is_some_and(|(method, path)| path == pattern && crate::event::is_http_method(method))
    }
}

/// The templates a path-only route filter (`/v1/tenants/:id`) stands for: the path under each
/// registered method. A template filter stands for itself.
pub fn route_templates(pattern: &str) -> Vec<String> {
    if pattern.contains(' ') {
        vec![pattern.to_owned()]
    } else {
        crate::event::HTTP_METHODS
            .iter()
            .map(|m| format!("{m} {pattern}"))
            .collect()
    }
}

/// A parsed filter: the conjunction of its fields' alternatives, less its exclusions, within
/// `[since, until)`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub terms: Vec<Term>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
}

impl Filter {
    /// Adds one `key=value` (a query parameter) or `[-]key:value` (a `q` term).
    pub fn add(
        &mut self,
        key: &str,
        value: &str,
        negated: bool,
        now: Timestamp,
    ) -> Result<(), QueryError> {
        let bad = |message: String| QueryError::BadValue {
            key: key.to_owned(),
            message,
        };
        match key {
            "since" | "until" => {
                if negated {
                    return Err(bad("cannot be negated".into()));
                }
                let t = Timestamp::parse_bound(value, now).map_err(|e| bad(e.to_string()))?;
                if key == "since" {
                    self.since = Some(self.since.map_or(t, |s| s.max(t)));
                } else {
                    self.until = Some(self.until.map_or(t, |u| u.min(t)));
                }
                return Ok(());
            }
            _ => {}
        }
        let field = Field::from_key(key).ok_or_else(|| QueryError::UnknownKey(key.to_owned()))?;
        if self.terms.len() >= MAX_TERMS {
            return Err(QueryError::TooManyTerms);
        }
        if value.is_empty() {
            return Err(bad("needs a value".into()));
        }
        let matcher = match field {
            Field::Status => Matcher::Status(parse_status(value).ok_or_else(|| {
                bad(format!(
                    "{value:?} is not a status: use a code (404) or a class (4xx)"
                ))
            })?),
            Field::ActorType => {
                value.parse::<ActorType>().map_err(bad)?;
                Matcher::Text(value.to_owned())
            }
            Field::Method => Matcher::Text(value.to_ascii_uppercase()),
            // Addresses are kept in their RFC 5952 form; match that form.
            Field::Ip => Matcher::Text(
                value
                    .parse::<std::net::IpAddr>()
                    .map_err(|_| bad(format!("{value:?} is not an IP address")))?
                    .to_string(),
            ),
            _ => Matcher::Text(value.to_owned()),
        };
        self.terms.push(Term {
            field,
            matcher,
            negated,
        });
        Ok(())
    }

    /// Adds the terms of a `q` expression.
    pub fn add_query(&mut self, q: &str, now: Timestamp) -> Result<(), QueryError> {
        for t in tokenize(q)? {
            self.add(&t.key, &t.value, t.negated, now)
                .map_err(|e| match e {
                    QueryError::UnknownKey(k) => QueryError::Syntax {
                        at: t.at,
                        message: format!("unknown key {k:?} (known: {})", Field::KEYS),
                    },
                    other => other,
                })?;
        }
        Ok(())
    }

    /// The positive terms grouped by field (each group is a disjunction), and the negated
    /// terms. Backends build their queries from this.
    pub fn grouped(&self) -> (Vec<(Field, Vec<&Matcher>)>, Vec<&Term>) {
        let mut groups: Vec<(Field, Vec<&Matcher>)> = Vec::new();
        let mut negated = Vec::new();
        for t in &self.terms {
            if t.negated {
                negated.push(t);
            } else if let Some((_, g)) = groups.iter_mut().find(|(f, _)| *f == t.field) {
                g.push(&t.matcher);
            } else {
                groups.push((t.field, vec![&t.matcher]));
            }
        }
        (groups, negated)
    }

    /// Whether the event passes this filter (the reference semantics).
    pub fn matches(&self, e: &Event) -> bool {
        if self.since.is_some_and(|s| e.timestamp < s)
            || self.until.is_some_and(|u| e.timestamp >= u)
        {
            return false;
        }
        let (groups, negated) = self.grouped();
        groups.iter().all(|(field, ms)| {
            ms.iter().any(|m| {
                Term {
                    field: *field,
                    matcher: (*m).clone(),
                    negated: false,
                }
                .matches(e)
            })
        }) && negated.iter().all(|t| !t.matches(e))
    }
}

fn parse_status(v: &str) -> Option<StatusMatch> {
    let b = v.as_bytes();
    if b.len() == 3 && (b'1'..=b'5').contains(&b[0]) && v[1..].eq_ignore_ascii_case("xx") {
        return Some(StatusMatch::Class(b[0] - b'0'));
    }
    let code: u16 = v.parse().ok()?;
    (100..=599)
        .contains(&code)
        .then_some(StatusMatch::Code(code))
}

struct Token {
    at: usize,
    key: String,
    value: String,
    negated: bool,
}

fn tokenize(q: &str) -> Result<Vec<Token>, QueryError> {
    let chars: Vec<(usize, char)> = q.char_indices().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let syntax = |at: usize, message: String| QueryError::Syntax { at, message };
    while i < chars.len() {
        if chars[i].1.is_whitespace() {
            i += 1;
            continue;
        }
        let start = chars[i].0;
        let negated = chars[i].1 == '-';
        if negated {
            i += 1;
        }
        let key_start = i;
        while i < chars.len() && chars[i].1 != ':' && !chars[i].1.is_whitespace() {
            i += 1;
        }
        let key: String = chars[key_start..i].iter().map(|c| c.1).collect();
        if i >= chars.len() || chars[i].1 != ':' {
            return Err(syntax(
                start,
                format!("expected key:value, found {key:?} (quote values that hold spaces)"),
            ));
        }
        if key.is_empty() {
            return Err(syntax(start, "a term needs a key before ':'".into()));
        }
        i += 1; // ':'
        let mut value = String::new();
        if i < chars.len() && chars[i].1 == '"' {
            let quote_at = chars[i].0;
            i += 1;
            let mut closed = false;
            while i < chars.len() {
                match chars[i].1 {
                    '\\' if i + 1 < chars.len() => {
                        value.push(chars[i + 1].1);
                        i += 2;
                    }
                    '"' => {
                        closed = true;
                        i += 1;
                        break;
                    }
                    c => {
                        value.push(c);
                        i += 1;
                    }
                }
            }
            if !closed {
                return Err(syntax(quote_at, "unterminated quote".into()));
            }
            if i < chars.len() && !chars[i].1.is_whitespace() {
                return Err(syntax(
                    chars[i].0,
                    "expected a space after the closing quote".into(),
                ));
            }
        } else {
            while i < chars.len() && !chars[i].1.is_whitespace() {
                value.push(chars[i].1);
                i += 1;
            }
        }
        if value.is_empty() {
            return Err(syntax(start, format!("{key}: needs a value")));
        }
        out.push(Token {
            at: start,
            key,
            value,
            negated,
        });
    }
    Ok(out)
}

/// A position in newest-first order: the `(timestamp, seq)` of the last event returned.
/// Opaque to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub timestamp: Timestamp,
    pub seq: u64,
}

const CURSOR_VERSION: u8 = 1;

impl Cursor {
    pub fn encode(&self) -> String {
        let mut b = Vec::with_capacity(17);
        b.push(CURSOR_VERSION);
        b.extend_from_slice(&self.timestamp.micros().to_be_bytes());
        b.extend_from_slice(&self.seq.to_be_bytes());
        URL_SAFE_NO_PAD.encode(b)
    }

    pub fn decode(s: &str) -> Result<Cursor, QueryError> {
        let b = URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| QueryError::BadCursor)?;
        if b.len() != 17 || b[0] != CURSOR_VERSION {
            return Err(QueryError::BadCursor);
        }
        Ok(Cursor {
            timestamp: Timestamp(i64::from_be_bytes(b[1..9].try_into().expect("8 bytes"))),
            seq: u64::from_be_bytes(b[9..17].try_into().expect("8 bytes")),
        })
    }

    /// Whether `e` comes after this position in newest-first order.
    pub fn is_before(&self, timestamp: Timestamp, seq: u64) -> bool {
        (timestamp, seq) < (self.timestamp, self.seq)
    }
}

/// Where a SIEM export resumes: the next seq of an org's log to read. Opaque to clients, and
/// bound to its org, so that a cursor passed to another org's export is refused rather than
/// read as a position there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportCursor {
    pub org: String,
    pub seq: u64,
}

const EXPORT_CURSOR_VERSION: u8 = 0x81;

impl ExportCursor {
    pub fn encode(&self) -> String {
        let mut b = Vec::with_capacity(9 + self.org.len());
        b.push(EXPORT_CURSOR_VERSION);
        b.extend_from_slice(&self.seq.to_be_bytes());
        b.extend_from_slice(self.org.as_bytes());
        URL_SAFE_NO_PAD.encode(b)
    }

    pub fn decode(s: &str) -> Result<ExportCursor, QueryError> {
        let b = URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| QueryError::BadCursor)?;
        if b.len() < 10 || b[0] != EXPORT_CURSOR_VERSION {
            return Err(QueryError::BadCursor);
        }
        Ok(ExportCursor {
            seq: u64::from_be_bytes(b[1..9].try_into().expect("8 bytes")),
            org: String::from_utf8(b[9..].to_vec()).map_err(|_| QueryError::BadCursor)?,
        })
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.encode())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_cursors_round_trip_and_refuse_the_rest() {
        for c in [
            ExportCursor {
                org: "acme".into(),
                seq: 0,
            },
            ExportCursor {
                org: "é-org".into(),
                seq: u64::MAX,
            },
        ] {
            assert_eq!(ExportCursor::decode(&c.encode()), Ok(c));
        }
        let list = Cursor {
            timestamp: Timestamp(1),
            seq: 2,
        }
        .encode();
        let mut not_utf8 = vec![EXPORT_CURSOR_VERSION];
        not_utf8.extend_from_slice(&[0; 8]);
        not_utf8.push(0xff);
        for bad in [
            list.as_str(),
            "",
            "!!",
            &URL_SAFE_NO_PAD.encode(&not_utf8),
            &URL_SAFE_NO_PAD.encode([EXPORT_CURSOR_VERSION; 9]),
        ] {
            assert_eq!(
                ExportCursor::decode(bad),
                Err(QueryError::BadCursor),
                "{bad:?}"
            );
        }
    }
    use crate::event::EventBody;
    use serde_json::json;

    const NOW: Timestamp = Timestamp(1_763_740_000_000_000);

    fn parse(q: &str) -> Result<Filter, QueryError> {
        let mut f = Filter::default();
        f.add_query(q, NOW)?;
        Ok(f)
    }

    fn event(v: serde_json::Value) -> Event {
        Event::seal("acme", 0, NOW, EventBody::from_json(v, "acme").unwrap())
    }

    #[test]
    fn parses_the_spec_example() {
        let f =
            parse(r#"actor:alice action:deleted route:"GET /v1/tenants/:id" -status:200"#).unwrap();
        assert_eq!(f.terms.len(), 4);
        assert_eq!(
            f.terms[2].matcher,
            Matcher::Text("GET /v1/tenants/:id".into())
        );
        assert!(f.terms[3].negated);
        assert_eq!(f.terms[3].matcher, Matcher::Status(StatusMatch::Code(200)));
    }

    #[test]
    fn syntax_errors_say_where() {
        let cases = [
            ("alice", "bad query at character 0: expected key:value"),
            ("actor:alice bob", "character 12"),
            ("colour:red", "unknown key \"colour\""),
            (r#"route:"GET /x"#, "unterminated quote"),
            ("actor:", "actor: needs a value"),
            (":x", "needs a key"),
            ("status:2xy", "status: \"2xy\" is not a status"),
            ("actorType:Robot", "invalid actor type \"Robot\""),
            ("since:yesterday", "since: invalid time"),
            ("-since:1h", "since: cannot be negated"),
            (r#"route:"a"b"#, "expected a space after the closing quote"),
        ];
        for (q, want) in cases {
            let got = parse(q).unwrap_err().to_string();
            assert!(got.contains(want), "{q:?}: got {got:?}, want {want:?}");
        }
    }

    #[test]
    fn quoting_and_unicode() {
        let f =
            parse(r#"actor:"Sarah Brown@akuity.io" action:"say \"hi\"" objectName:dév"#).unwrap();
        assert_eq!(
            f.terms[0].matcher,
            Matcher::Text("Sarah Brown@akuity.io".into())
        );
        assert_eq!(f.terms[1].matcher, Matcher::Text("say \"hi\"".into()));
        assert_eq!(f.terms[2].matcher, Matcher::Text("dév".into()));
    }

    #[test]
    fn a_filter_has_at_most_max_terms() {
        let q = |n: usize| {
            (0..n)
                .map(|i| format!("route:/v1/r{i}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(parse(&q(MAX_TERMS)).unwrap().terms.len(), MAX_TERMS);
        let err = parse(&q(MAX_TERMS + 1)).unwrap_err();
        assert_eq!(err, QueryError::TooManyTerms);
        assert!(err.to_string().contains(&MAX_TERMS.to_string()));
        // Parameters and q terms count together; the time window does not count.
        let mut f = parse(&format!("{} since:1h until:1m", q(MAX_TERMS - 1))).unwrap();
        f.add("actor", "alice", false, NOW).unwrap();
        assert_eq!(
            f.add("actor", "bob", false, NOW),
            Err(QueryError::TooManyTerms)
        );
    }

    #[test]
    fn a_path_only_route_stands_for_one_template_per_registered_method() {
        let templates = route_templates("/v1/tenants");
        assert_eq!(templates.len(), crate::event::HTTP_METHODS.len());
        assert!(templates.contains(&"GET /v1/tenants".to_owned()));
        assert_eq!(route_templates("GET /v1/x"), ["GET /v1/x"]);
        assert!(route_matches("/v1/tenants", "PROPFIND /v1/tenants"));
        assert!(!route_matches("/v1/tenants", "XGET /v1/tenants"));
        assert!(!route_matches("/v1/tenants", "GET /v1/tenants/:id"));
        for t in &templates {
            assert!(route_matches("/v1/tenants", t), "{t}");
        }
    }

    #[test]
    fn time_bounds_narrow() {
        let f = parse("since:2h since:1h until:2026-01-01T00:00:00Z").unwrap();
        assert_eq!(f.since, Some(Timestamp(NOW.0 - 3_600_000_000)));
        assert_eq!(f.until.unwrap().to_string(), "2026-01-01T00:00:00.000000Z");
    }

    #[test]
    fn matching_semantics() {
        let api = event(json!({
            "action": "call", "category": "api",
            "actor": {"id": "alice", "type": "pat"},
            "request": {"method": "GET", "route": "GET /v1/tenants/:id", "status": 503}
        }));
        let app = event(json!({
            "action": "deleted", "actor": {"id": "bob", "type": "user"},
            "object": {"type": "custom_role", "id": {"kind": "Cluster", "name": "dev"}}
        }));
        let check = |q: &str, want: [bool; 2]| {
            let f = parse(q).unwrap();
            assert_eq!([f.matches(&api), f.matches(&app)], want, "{q}");
        };
        check("actor:alice", [true, false]);
        check("actor:alice actor:bob", [true, true]);
        check("actor:alice action:deleted", [false, false]);
        check("-actor:alice", [false, true]);
        check("status:5xx", [true, false]);
        check("status:503", [true, false]);
        check("-status:503", [false, true]);
        check("route:/v1/tenants/:id", [true, false]);
        check(r#"route:"POST /v1/tenants/:id""#, [false, false]);
        check("method:get", [true, false]);
        check(
            "objectKind:Cluster objectName:dev objectType:custom_role",
            [false, true],
        );
        check("category:app", [false, true]);
        check("actorType:pat", [true, false]);
        check("", [true, true]);
    }

    #[test]
    fn cursor_round_trips_and_rejects_garbage() {
        let c = Cursor {
            timestamp: Timestamp(-5),
            seq: 42,
        };
        assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
        for bad in ["", "!!!", "AAAA", &URL_SAFE_NO_PAD.encode([2u8; 17])] {
            assert_eq!(Cursor::decode(bad), Err(QueryError::BadCursor), "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn tokenizer_never_panics(q in "\\PC{0,64}") {
            let _ = parse(&q);
        }

        #[test]
        fn cursor_decode_never_panics(s in "[A-Za-z0-9_-]{0,40}") {
            let _ = Cursor::decode(&s);
        }
    }
}
