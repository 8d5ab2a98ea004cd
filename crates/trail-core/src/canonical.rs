//! The canonical encoding of an event: the bytes whose RFC 6962 leaf hash goes into the
//! org's Merkle log.
//!
//! Version 2, all integers big-endian:
//!
//! ```text
//! event    = version:u8(=2) id:str seq:u64 org:str instance:opt<str>
//!            timestamp:i64 receivedAt:i64 action:str category:str
//!            actor.id:str actor.type:str actor.ip:opt<str> actor.userAgent:opt<str>
//!            actor.tokenId:opt<str> actor.scope:opt<str>
//!            object:opt<object> details:opt<str> request:opt<request>
//!            count:u64 lastOccurredTimestamp:i64 submittedBy:opt<str>
//! object   = type:str id:opt<str> parentId:opt<str>
//! request  = method:str route:str status:u16 latencyUs:u64 bodySha256:opt<[u8;32]>
//! str      = len:u32 utf8-bytes
//! opt<T>   = 0x00 | 0x01 T
//! ```
//!
//! Version 1 is the same without `submittedBy` (and with version byte 1). Events accepted
//! under version 1 keep it: they are hashed, stored, decoded and verified as version 1 for
//! good, while every new event is version 2.
//!
//! Times are microseconds since the Unix epoch; JSON values (object ids, details) are their
//! RFC 8785 canonical text; an IP address is its RFC 5952 text form. A new field or a changed
//! rule means a new version byte, never a silent change: the known-answer tests below pin
//! both versions.

use std::io::Write as _;
use std::net::IpAddr;

use crate::event::{Actor, ActorType, CanonicalJson, Event, Object, RequestInfo, derived_ulid};
use crate::merkle;
use crate::time::Timestamp;

/// The encoding of every new event.
pub const VERSION: u8 = 2;

/// What the encoding reads of an event, borrowed: from an [`Event`] ([`Fields::of`]), or
/// by a store straight from its rows, so that a log is hashed for verification without an
/// event being built for each of its rows.
#[derive(Debug, Clone, Copy)]
pub struct Fields<'a> {
    pub encoding: u8,
    pub org: &'a str,
    pub seq: u64,
    /// The client's id; without one, the event's id is derived from the org, the seq and
    /// the time of receipt ([`crate::event::derived_id`]).
    pub client_id: Option<&'a str>,
    pub instance: Option<&'a str>,
    pub timestamp: Timestamp,
    pub received_at: Timestamp,
    pub action: &'a str,
    pub category: &'a str,
    pub actor_id: &'a str,
    /// [`ActorType::as_str`].
    pub actor_type: &'a str,
    pub ip: Option<IpAddr>,
    pub user_agent: Option<&'a str>,
    pub token_id: Option<&'a str>,
    pub scope: Option<&'a str>,
    pub object: Option<ObjectFields<'a>>,
    /// Canonical JSON text.
    pub details: Option<&'a str>,
    pub request: Option<RequestFields<'a>>,
    pub count: u64,
    pub last_occurred: Timestamp,
    pub submitted_by: Option<&'a str>,
}

#[derive(Debug, Clone, Copy)]
pub struct ObjectFields<'a> {
    pub kind: &'a str,
    /// Canonical JSON text, as the parent's.
    pub id: Option<&'a str>,
    pub parent_id: Option<&'a str>,
}

#[derive(Debug, Clone, Copy)]
pub struct RequestFields<'a> {
    pub method: &'a str,
    pub route: &'a str,
    pub status: u16,
    pub latency_us: u64,
    pub body_sha256: Option<&'a [u8; 32]>,
}

impl<'a> Fields<'a> {
    pub fn of(e: &'a Event) -> Fields<'a> {
        Fields {
            encoding: e.encoding,
            org: &e.org,
            seq: e.seq,
            client_id: e.client_id.as_deref(),
            instance: e.instance.as_deref(),
            timestamp: e.timestamp,
            received_at: e.received_at,
            action: &e.action,
            category: &e.category,
            actor_id: &e.actor.id,
            actor_type: e.actor.kind.as_str(),
            ip: e.actor.ip,
            user_agent: e.actor.user_agent.as_deref(),
            token_id: e.actor.token_id.as_deref(),
            scope: e.actor.scope.as_deref(),
            object: e.object.as_ref().map(|o| ObjectFields {
                kind: &o.kind,
                id: o.id.as_ref().map(CanonicalJson::as_str),
                parent_id: o.parent_id.as_ref().map(CanonicalJson::as_str),
            }),
            details: e.details.as_ref().map(CanonicalJson::as_str),
            request: e.request.as_ref().map(|r| RequestFields {
                method: &r.method,
                route: &r.route,
                status: r.status,
                latency_us: r.latency_us,
                body_sha256: r.body_sha256.as_ref(),
            }),
            count: e.count,
            last_occurred: e.last_occurred,
            submitted_by: e.submitted_by.as_deref(),
        }
    }

    /// The event these fields describe. They are taken as they are: the strings must be
    /// what the event's constructors accept (an actor type that is none of the known ones
    /// becomes [`ActorType::Other`], JSON texts must be canonical).
    pub fn to_event(&self) -> Event {
        let owned = |s: Option<&str>| s.map(str::to_owned);
        let json = |s: Option<&str>| s.map(|s| CanonicalJson::from_canonical_text(s.to_owned()));
        Event {
            org: self.org.to_owned(),
            seq: self.seq,
            client_id: owned(self.client_id),
            received_at: self.received_at,
            timestamp: self.timestamp,
            instance: owned(self.instance),
            action: self.action.to_owned(),
            category: self.category.to_owned(),
            actor: Actor {
                id: self.actor_id.to_owned(),
                kind: ActorType::KNOWN
                    .into_iter()
                    .find(|k| k.as_str() == self.actor_type)
                    .unwrap_or_else(|| ActorType::Other(self.actor_type.to_owned())),
                ip: self.ip,
                user_agent: owned(self.user_agent),
                token_id: owned(self.token_id),
                scope: owned(self.scope),
            },
            object: self
                .object
                .map(|o| Object::new(o.kind.to_owned(), json(o.id), json(o.parent_id))),
            details: json(self.details),
            request: self.request.map(|r| RequestInfo {
                method: r.method.to_owned(),
                route: r.route.to_owned(),
                status: r.status,
                latency_us: r.latency_us,
                body_sha256: r.body_sha256.copied(),
            }),
            count: self.count,
            last_occurred: self.last_occurred,
            submitted_by: owned(self.submitted_by),
            encoding: self.encoding,
        }
    }

    /// The canonical bytes, written to `out` (cleared first).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.clear();
        let mut w = Writer(out);
        w.u8(self.encoding);
        match self.client_id {
            Some(id) => w.str(id),
            None => {
                let mut text = [0u8; ulid::ULID_LEN];
                let ulid = derived_ulid(self.org, self.seq, self.received_at);
                w.str_parts("evt_", ulid.array_to_str(&mut text));
            }
        }
        w.u64(self.seq);
        w.str(self.org);
        w.opt(self.instance, |w, s| w.str(s));
        w.i64(self.timestamp.micros());
        w.i64(self.received_at.micros());
        w.str(self.action);
        w.str(self.category);
        w.str(self.actor_id);
        w.str(self.actor_type);
        w.opt(self.ip, |w, ip| w.ip(ip));
        w.opt(self.user_agent, |w, s| w.str(s));
        w.opt(self.token_id, |w, s| w.str(s));
        w.opt(self.scope, |w, s| w.str(s));
        w.opt(self.object, |w, o| {
            w.str(o.kind);
            w.opt(o.id, |w, j| w.str(j));
            w.opt(o.parent_id, |w, j| w.str(j));
        });
        w.opt(self.details, |w, j| w.str(j));
        w.opt(self.request, |w, r| {
            w.str(r.method);
            w.str(r.route);
            w.0.extend_from_slice(&r.status.to_be_bytes());
            w.u64(r.latency_us);
            w.opt(r.body_sha256, |w, h| w.0.extend_from_slice(h));
        });
        w.u64(self.count);
        w.i64(self.last_occurred.micros());
        if self.encoding >= 2 {
            w.opt(self.submitted_by, |w, s| w.str(s));
        }
    }

    /// The leaf hash, `SHA-256(0x00 || encode)`, encoding into `scratch` (which a caller
    /// hashing many events reuses).
    pub fn leaf_hash(&self, scratch: &mut Vec<u8>) -> [u8; 32] {
        self.encode_into(scratch);
        merkle::leaf_hash(scratch)
    }
}

/// The canonical bytes of an event.
pub fn encode(e: &Event) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    Fields::of(e).encode_into(&mut out);
    out
}

/// The event's leaf hash in its org's log: `SHA-256(0x00 || encode(e))`.
pub fn leaf_hash(e: &Event) -> [u8; 32] {
    Fields::of(e).leaf_hash(&mut Vec::with_capacity(256))
}

struct Writer<'a>(&'a mut Vec<u8>);

impl Writer<'_> {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn str(&mut self, s: &str) {
        self.str_parts("", s);
    }
    /// One string given in two parts.
    fn str_parts(&mut self, a: &str, b: &str) {
        let len = u32::try_from(a.len() + b.len()).expect("validated strings are far below 4 GiB");
        self.0.extend_from_slice(&len.to_be_bytes());
        self.0.extend_from_slice(a.as_bytes());
        self.0.extend_from_slice(b.as_bytes());
    }
    /// An address as its RFC 5952 text, written in place.
    fn ip(&mut self, ip: IpAddr) {
        let at = self.0.len();
        self.0.extend_from_slice(&[0; 4]);
        write!(self.0, "{ip}").expect("a Vec takes any write");
        let len = (self.0.len() - at - 4) as u32;
        self.0[at..at + 4].copy_from_slice(&len.to_be_bytes());
    }
    fn opt<T>(&mut self, v: Option<T>, f: impl FnOnce(&mut Self, T)) {
        match v {
            None => self.u8(0),
            Some(v) => {
                self.u8(1);
                f(self, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Actor, ActorType, EventBody};
    use crate::time::Timestamp;

    fn minimal() -> Event {
        let body = EventBody {
            client_id: Some("e1".into()),
            instance: None,
            timestamp: Some(Timestamp(1)),
            action: "a".into(),
            category: "app".into(),
            actor: Actor {
                id: "u".into(),
                kind: ActorType::User,
                ip: None,
                user_agent: None,
                token_id: None,
                scope: None,
            },
            object: None,
            details: None,
            request: None,
            count: 1,
            last_occurred: None,
            submitted_by: Some("key_1".into()),
        };
        Event::seal_as(1, "o", 2, Timestamp(3), body)
    }

    /// The same event accepted now: version 2, with its provenance.
    fn minimal_v2() -> Event {
        let mut e = minimal();
        e.encoding = 2;
        e.submitted_by = Some("key_1".into());
        e
    }

    #[test]
    fn minimal_event_bytes_are_exactly_the_documented_layout() {
        let mut want = vec![1u8];
        want.extend([0, 0, 0, 2, b'e', b'1']); // id
        want.extend(2u64.to_be_bytes()); // seq
        want.extend([0, 0, 0, 1, b'o']); // org
        want.push(0); // instance
        want.extend(1i64.to_be_bytes()); // timestamp
        want.extend(3i64.to_be_bytes()); // receivedAt
        want.extend([0, 0, 0, 1, b'a']); // action
        want.extend([0, 0, 0, 3, b'a', b'p', b'p']); // category
        want.extend([0, 0, 0, 1, b'u']); // actor.id
        want.extend([0, 0, 0, 4, b'u', b's', b'e', b'r']); // actor.type
        want.extend([0, 0, 0, 0]); // ip, userAgent, tokenId, scope
        want.extend([0, 0, 0]); // object, details, request
        want.extend(1u64.to_be_bytes()); // count
        want.extend(1i64.to_be_bytes()); // lastOccurredTimestamp
        assert_eq!(encode(&minimal()), want);
        // Version 2: the version byte, and the provenance at the end.
        want[0] = 2;
        want.extend([1, 0, 0, 0, 5]);
        want.extend(b"key_1");
        assert_eq!(encode(&minimal_v2()), want);
        let mut without = minimal_v2();
        without.submitted_by = None;
        want.truncate(want.len() - 10);
        want.push(0);
        assert_eq!(encode(&without), want);
    }

    #[test]
    fn both_versions_decode_to_what_was_encoded() {
        for e in [minimal(), minimal_v2()] {
            let back = decode(&encode(&e)).unwrap();
            assert_eq!(back.encoding, e.encoding);
            assert_eq!(back.submitted_by, e.submitted_by);
            assert_eq!(leaf_hash(&back), leaf_hash(&e));
        }
        let mut unknown = encode(&minimal_v2());
        unknown[0] = 3;
        assert!(decode(&unknown).is_err());
    }

    #[test]
    fn provenance_changes_the_hash() {
        let a = minimal_v2();
        let mut b = a.clone();
        b.submitted_by = Some("key_2".into());
        let mut c = a.clone();
        c.submitted_by = None;
        assert_ne!(leaf_hash(&a), leaf_hash(&b));
        assert_ne!(leaf_hash(&a), leaf_hash(&c));
    }

    #[test]
    fn known_answer_minimal() {
        assert_eq!(
            hex::encode(leaf_hash(&minimal())),
            "c6615750a6f7e665bfaff0451fbacd3aa8712d1c2747f53c2dda479a1dd4b12c"
        );
        assert_eq!(
            hex::encode(leaf_hash(&minimal_v2())),
            "f335aadb56b69455d2d7aaeb978d45ab6e114d4dcde6444a9fcc80fa9b8e5532"
        );
    }

    #[test]
    fn known_answer_seed_002_sample() {
        let v = serde_json::from_str(crate::event::tests::SEED_002_SAMPLE).unwrap();
        let body = EventBody::from_json(v, "acme").unwrap();
        let e = Event::seal_as(1, "acme", 1041, Timestamp(1_763_742_400_201_377), body);
        assert_eq!(
            hex::encode(leaf_hash(&e)),
            "b0bf60f5666a2e286b3c1747d7bf2413fca757bdd876c588abf57f6b2bc5a892"
        );
    }

    #[test]
    fn every_field_changes_the_hash() {
        let base = minimal();
        let h = leaf_hash(&base);
        let mut variants: Vec<Event> = Vec::new();
        let mut v = base.clone();
        v.seq += 1;
        variants.push(v);
        let mut v = base.clone();
        v.org = "p".into();
        variants.push(v);
        let mut v = base.clone();
        v.client_id = None;
        variants.push(v);
        let mut v = base.clone();
        v.timestamp = Timestamp(2);
        variants.push(v);
        let mut v = base.clone();
        v.received_at = Timestamp(4);
        variants.push(v);
        let mut v = base.clone();
        v.actor.kind = ActorType::System;
        variants.push(v);
        let mut v = base.clone();
        v.instance = Some(String::new());
        variants.push(v);
        let mut v = base.clone();
        v.count = 2;
        variants.push(v);
        for v in variants {
            assert_ne!(leaf_hash(&v), h, "{v:?}");
        }
    }
}

/// Why bytes are not a version-1 canonical event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a canonical event: {0}")]
pub struct DecodeError(pub String);

/// Reads canonical bytes back into the event they encode (the inverse of [`encode`]).
pub fn decode(bytes: &[u8]) -> Result<Event, DecodeError> {
    use crate::event::{Actor, Object, RequestInfo};
    use crate::time::Timestamp;
    let mut r = Reader(bytes);
    let encoding = r.u8()?;
    if !(1..=VERSION).contains(&encoding) {
        return Err(DecodeError(format!("unknown version {encoding}")));
    }
    let id = r.str()?;
    let seq = r.u64()?;
    let org = r.str()?;
    let instance = r.opt(|r| r.str())?;
    let timestamp = Timestamp(r.i64()?);
    let received_at = Timestamp(r.i64()?);
    let action = r.str()?;
    let category = r.str()?;
    let actor_id = r.str()?;
    let kind = r.str()?.parse().map_err(DecodeError)?;
    let ip = r.opt(|r| r.str())?.map(ip).transpose()?;
    let user_agent = r.opt(|r| r.str())?;
    let token_id = r.opt(|r| r.str())?;
    let scope = r.opt(|r| r.str())?;
    let object = r.opt(|r| {
        let kind = r.str()?;
        let id = r.opt(|r| r.str())?.map(json).transpose()?;
        let parent = r.opt(|r| r.str())?.map(json).transpose()?;
        Ok(Object::new(kind, id, parent))
    })?;
    let details = r.opt(|r| r.str())?.map(json).transpose()?;
    let request = r.opt(|r| {
        let method = r.str()?;
        let route = r.str()?;
        let status = u16::from_be_bytes(r.take(2)?.try_into().expect("2 bytes"));
        let latency_us = r.u64()?;
        let body_sha256 = r.opt(|r| Ok(r.take(32)?.try_into().expect("32 bytes")))?;
        Ok(RequestInfo {
            method,
            route,
            status,
            latency_us,
            body_sha256,
        })
    })?;
    let count = r.u64()?;
    let last_occurred = Timestamp(r.i64()?);
    let submitted_by = if encoding >= 2 {
        r.opt(|r| r.str())?
    } else {
        None
    };
    if !r.0.is_empty() {
        return Err(DecodeError("trailing bytes".into()));
    }
    let mut event = Event {
        org,
        seq,
        client_id: None,
        received_at,
        timestamp,
        instance,
        action,
        category,
        actor: Actor {
            id: actor_id,
            kind,
            ip,
            user_agent,
            token_id,
            scope,
        },
        object,
        details,
        request,
        count,
        last_occurred,
        submitted_by,
        encoding,
    };
    // A server-made id is derived; any other is the client's.
    if event.id() != id {
        event.client_id = Some(id);
    }
    Ok(event)
}

/// An address as the encoder writes it (RFC 5952 text): any other spelling of the same
/// address would decode to an event that encodes to other bytes.
fn ip(s: String) -> Result<IpAddr, DecodeError> {
    match s.parse::<IpAddr>() {
        Ok(ip) if ip.to_string() == s => Ok(ip),
        _ => Err(DecodeError(format!(
            "bad ip {s:?}: not an address in RFC 5952 form"
        ))),
    }
}

/// JSON as the encoder writes it (RFC 8785 canonical text), for the same reason.
fn json(s: String) -> Result<crate::event::CanonicalJson, DecodeError> {
    let canonical = serde_json::from_str::<serde_json::Value>(&s)
        .ok()
        .map(|v| crate::event::CanonicalJson::from_value(&v));
    match canonical {
        Some(c) if c.as_str() == s => Ok(c),
        _ => Err(DecodeError(format!("not canonical JSON text: {s}"))),
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError("truncated".into()));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    fn str(&mut self) -> Result<String, DecodeError> {
        let len = u32::from_be_bytes(self.take(4)?.try_into().expect("4 bytes")) as usize;
        String::from_utf8(self.take(len)?.to_vec())
            .map_err(|_| DecodeError("text is not UTF-8".into()))
    }
    fn opt<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Option<T>, DecodeError> {
        match self.u8()? {
            0 => Ok(None),
            1 => f(self).map(Some),
            b => Err(DecodeError(format!("bad option tag {b}"))),
        }
    }
}

#[cfg(test)]
mod decode_tests {
    use super::*;
    use crate::event::EventBody;
    use crate::time::Timestamp;

    #[test]
    fn decoding_inverts_encoding() {
        let v: serde_json::Value =
            serde_json::from_str(crate::event::tests::SEED_002_SAMPLE).unwrap();
        for (seq, client) in [(1041u64, false), (7, true)] {
            let mut body = EventBody::from_json(v.clone(), "acme").unwrap();
            if client {
                body.client_id = Some("order-7".into());
            }
            let e = Event::seal("acme", seq, Timestamp(1_763_742_400_201_377), body);
            assert_eq!(decode(&encode(&e)).unwrap(), e);
        }
        let api = EventBody::from_json(
            serde_json::json!({"action": "call", "category": "api", "actor": {"id": "a", "type": "pat", "ip": "::1", "tokenId": "pat_1", "scope": "logs:read", "userAgent": "trail/0.1"},
                "request": {"method": "GET", "route": "GET /v1/x", "status": 200, "latencyMs": 1.5, "bodySha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}}),
            "acme",
        )
        .unwrap();
        let e = Event::seal("acme", 3, Timestamp(5), api);
        assert_eq!(decode(&encode(&e)).unwrap(), e);
        let mut long = encode(&e);
        long.push(0);
        assert!(decode(&long).is_err());
        assert!(decode(&encode(&e)[..20]).is_err());
    }

    /// Decoding is strict: bytes that another spelling of the same content would give
    /// (found by the `canonical` fuzz target) are refused, so whatever decodes encodes back
    /// to the very bytes it came from.
    #[test]
    fn only_the_encoders_spelling_decodes() {
        let body = EventBody::from_json(
            serde_json::json!({"action": "a", "actor": {"id": "x", "type": "user", "ip": "2001:db8::"},
                "object": {"type": "repo", "id": {"b": 1, "a": [2.5]}}, "details": {"k": "v"}}),
            "acme",
        )
        .unwrap();
        let e = Event::seal("acme", 3, Timestamp(5), body);
        let bytes = encode(&e);
        let respelled = |from: &str, to: &str| {
            let (f, t) = (from.as_bytes(), to.as_bytes());
            let at = bytes
                .windows(f.len())
                .position(|w| w == f)
                .expect("present");
            let mut out = bytes[..at - 4].to_vec();
            out.extend_from_slice(&(t.len() as u32).to_be_bytes());
            out.extend_from_slice(t);
            out.extend_from_slice(&bytes[at + f.len()..]);
            out
        };
        assert_eq!(decode(&respelled("2001:db8::", "2001:db8::")).unwrap(), e);
        for (from, to) in [
            ("2001:db8::", "2001:db8::0"),
            ("2001:db8::", "2001:DB8::"),
            (r#"{"a":[2.5],"b":1}"#, r#"{"b":1,"a":[2.5]}"#),
            (r#"{"a":[2.5],"b":1}"#, r#"{"a":[2.50],"b":1}"#),
            (r#"{"k":"v"}"#, r#"{ "k":"v"}"#),
            (r#"{"k":"v"}"#, r#"{"k":"v""#),
        ] {
            let err = decode(&respelled(from, to)).unwrap_err();
            assert!(err.0.contains(to), "{to}: {err}");
        }
    }

    /// What a store hashes from its rows ([`Fields`]) is what the event gives, and the
    /// event comes back from it whole.
    #[test]
    fn fields_hash_as_their_event_and_give_it_back() {
        let v: serde_json::Value =
            serde_json::from_str(crate::event::tests::SEED_002_SAMPLE).unwrap();
        let sample = EventBody::from_json(v, "acme").unwrap();
        let api = EventBody::from_json(
            serde_json::json!({"action": "call", "category": "api", "actor": {"id": "a", "type": "robot.v2", "ip": "2001:db8::7", "tokenId": "pat_1", "scope": "logs:read", "userAgent": "trail/0.1"},
                "object": {"type": "app", "id": {"kind": "Application", "name": "app-7"}, "parentId": {"name": "p"}},
                "request": {"method": "GET", "route": "GET /v1/x", "status": 503, "latencyMs": 1.5, "bodySha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}}),
            "acme",
        )
        .unwrap();
        let mut with_id = api.clone();
        with_id.client_id = Some("order-7".into());
        // One scratch buffer for all, as a store uses it: each hash starts afresh.
        let mut scratch = Vec::new();
        for (seq, body) in [(1041, sample), (3, api), (4, with_id)] {
            let e = Event::seal("acme", seq, Timestamp(1_763_742_400_201_377), body);
            let fields = Fields::of(&e);
            assert_eq!(fields.to_event(), e);
            assert_eq!(fields.leaf_hash(&mut scratch), leaf_hash(&e));
            // The id is encoded first, as the event gives it (derived, or the client's).
            let id = e.id();
            let bytes = encode(&e);
            assert_eq!(bytes[1..5], (id.len() as u32).to_be_bytes());
            assert_eq!(&bytes[5..5 + id.len()], id.as_bytes());
            if seq == 4 {
                // Every optional part present, the IPv6 text, an actor type that is none of
                // the known ones: the leaf of the documented layout, computed apart from
                // this code (the layout above, written out in Python).
                assert_eq!(
                    hex::encode(leaf_hash(&e)),
                    "1eedfdeb7ed017dc3a0f8fbdfa5de662f90c7ece8abc2d09d39b2519d290cbfb"
                );
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn decoding_garbage_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = decode(&bytes);
        }
    }
}
