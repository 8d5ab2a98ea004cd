//! The canonical encoding of an event: the bytes whose RFC 6962 leaf hash goes into the
//! org's Merkle log.
//!
//! Version 1, all integers big-endian:
//!
//! ```text
//! event    = version:u8(=1) id:str seq:u64 org:str instance:opt<str>
//!            timestamp:i64 receivedAt:i64 action:str category:str
//!            actor.id:str actor.type:str actor.ip:opt<str> actor.userAgent:opt<str>
//!            actor.tokenId:opt<str> actor.scope:opt<str>
//!            object:opt<object> details:opt<str> request:opt<request>
//!            count:u64 lastOccurredTimestamp:i64
//! object   = type:str id:opt<str> parentId:opt<str>
//! request  = method:str route:str status:u16 latencyUs:u64 bodySha256:opt<[u8;32]>
//! str      = len:u32 utf8-bytes
//! opt<T>   = 0x00 | 0x01 T
//! ```
//!
//! Times are microseconds since the Unix epoch; JSON values (object ids, details) are their
//! RFC 8785 canonical text; an IP address is its RFC 5952 text form. A new field or a changed
//! rule means a new version byte, never a silent change: the known-answer tests below pin
//! version 1.

use crate::event::Event;
use crate::merkle;

pub const VERSION: u8 = 1;

/// The canonical bytes of an event.
pub fn encode(e: &Event) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(256));
    w.u8(VERSION);
    w.str(&e.id());
    w.u64(e.seq);
    w.str(&e.org);
    w.opt(e.instance.as_deref(), |w, s| w.str(s));
    w.i64(e.timestamp.micros());
    w.i64(e.received_at.micros());
    w.str(&e.action);
    w.str(&e.category);
    w.str(&e.actor.id);
    w.str(e.actor.kind.as_str());
    w.opt(e.actor.ip.map(|ip| ip.to_string()).as_deref(), |w, s| {
        w.str(s)
    });
    w.opt(e.actor.user_agent.as_deref(), |w, s| w.str(s));
    w.opt(e.actor.token_id.as_deref(), |w, s| w.str(s));
    w.opt(e.actor.scope.as_deref(), |w, s| w.str(s));
    w.opt(e.object.as_ref(), |w, o| {
        w.str(&o.kind);
        w.opt(o.id.as_ref(), |w, j| w.str(j.as_str()));
        w.opt(o.parent_id.as_ref(), |w, j| w.str(j.as_str()));
    });
    w.opt(e.details.as_ref(), |w, j| w.str(j.as_str()));
    w.opt(e.request.as_ref(), |w, r| {
        w.str(&r.method);
        w.str(&r.route);
        w.0.extend_from_slice(&r.status.to_be_bytes());
        w.u64(r.latency_us);
        w.opt(r.body_sha256.as_ref(), |w, h| w.0.extend_from_slice(h));
    });
    w.u64(e.count);
    w.i64(e.last_occurred.micros());
    w.0
}

/// The event's leaf hash in its org's log: `SHA-256(0x00 || encode(e))`.
pub fn leaf_hash(e: &Event) -> [u8; 32] {
    merkle::leaf_hash(&encode(e))
}

struct Writer(Vec<u8>);

impl Writer {
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
        let len = u32::try_from(s.len()).expect("validated strings are far below 4 GiB");
        self.0.extend_from_slice(&len.to_be_bytes());
        self.0.extend_from_slice(s.as_bytes());
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
        };
        Event::seal("o", 2, Timestamp(3), body)
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
    }

    #[test]
    fn known_answer_minimal() {
        assert_eq!(
            hex::encode(leaf_hash(&minimal())),
            "c6615750a6f7e665bfaff0451fbacd3aa8712d1c2747f53c2dda479a1dd4b12c"
        );
    }

    #[test]
    fn known_answer_seed_002_sample() {
        let v = serde_json::from_str(crate::event::tests::SEED_002_SAMPLE).unwrap();
        let body = EventBody::from_json(v, "acme").unwrap();
        let e = Event::seal("acme", 1041, Timestamp(1_763_742_400_201_377), body);
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
