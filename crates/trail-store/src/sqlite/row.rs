//! The one place that knows how an [`Event`] maps to a row of `events`, both ways.

use std::net::IpAddr;

use rusqlite::{Connection, Row, params};
use trail_core::event::{Actor, ActorType, CanonicalJson, Object, RequestInfo};
use trail_core::{Event, Timestamp};

use super::dict::{DictCache, Resolved};
use super::{SEQ_BITS, SEQ_MASK, unavailable};
use crate::{Result, StoreError, StoredEvent};

/// The columns [`RawRow::read`] expects, in order.
pub(crate) const COLUMNS: &str = "k, ts, rdelta, cid, inst, action, cat, actor, atype, ip, ua, \
     tok, scope, otype, oid, oparent, details, method, route, status, lat, body, cnt, last, hash, org, \
     enc, sub, atname";

/// Writes one sealed event. `intern` maps a string to its dictionary id.
pub(crate) fn insert(
    tx: &Connection,
    org_id: i64,
    e: &Event,
    hash: &[u8; 32],
    intern: &mut dyn FnMut(&Connection, &str) -> Result<i64>,
) -> Result<()> {
    let mut opt = |s: Option<&str>| s.map(|s| intern(tx, s)).transpose();
    let inst = opt(e.instance.as_deref())?;
    let action = opt(Some(&e.action))?;
    let cat = opt(Some(&e.category))?;
    let actor = opt(Some(&e.actor.id))?;
    let ip = opt(e.actor.ip.map(|ip| ip.to_string()).as_deref())?;
    let ua = opt(e.actor.user_agent.as_deref())?;
    let tok = opt(e.actor.token_id.as_deref())?;
    let scope = opt(e.actor.scope.as_deref())?;
    let o = e.object.as_ref();
    let otype = opt(o.map(|o| o.kind.as_str()))?;
    let oid = opt(o.and_then(|o| o.id.as_ref()).map(CanonicalJson::as_str))?;
    let oparent = opt(o
        .and_then(|o| o.parent_id.as_ref())
        .map(CanonicalJson::as_str))?;
    let okind = opt(o.and_then(Object::id_kind))?;
    let oname = opt(o.and_then(Object::id_name))?;
    let r = e.request.as_ref();
    let method = opt(r.map(|r| r.method.as_str()))?;
    let route = opt(r.map(|r| r.route.as_str()))?;
    let sub = opt(e.submitted_by.as_deref())?;
    // A known actor type is its code; another is 0 and its name, through the dictionary.
    let atname = match e.actor.kind.code() {
        Some(_) => None,
        None => opt(Some(e.actor.kind.as_str()))?,
    };
    let k = (org_id << SEQ_BITS) | e.seq as i64;
    tx.prepare_cached(
        "INSERT INTO events (k, org, ts, rdelta, cid, inst, action, cat, actor, atype, ip, ua, \
         tok, scope, otype, oid, oparent, okind, oname, details, method, route, status, lat, \
         body, cnt, last, hash, enc, sub, atname) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, \
         ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, \
         ?27, ?28, ?29, ?30, ?31)",
    )
    .and_then(|mut s| {
        s.execute(params![
            k,
            org_id,
            e.timestamp.micros(),
            e.received_at.micros() - e.timestamp.micros(),
            e.client_id,
            inst,
            action,
            cat,
            actor,
            e.actor.kind.code().unwrap_or(0),
            ip,
            ua,
            tok,
            scope,
            otype,
            oid,
            oparent,
            okind,
            oname,
            e.details.as_ref().map(CanonicalJson::as_str),
            method,
            route,
            r.map(|r| r.status),
            r.map(|r| r.latency_us as i64),
            r.and_then(|r| r.body_sha256.as_ref().map(|b| b.as_slice())),
            (e.count != 1).then_some(e.count as i64),
            (e.last_occurred != e.timestamp)
                .then(|| e.last_occurred.micros() - e.timestamp.micros()),
            hash.as_slice(),
            // NULL: the current encoding (2); rows from before it default to 1.
            (e.encoding != trail_core::canonical::VERSION).then_some(e.encoding),
            sub,
            atname,
        ])
    })
    .map_err(unavailable)?;
    Ok(())
}

/// A row as read, strings still as dictionary ids.
pub(crate) struct RawRow {
    k: i64,
    ts: i64,
    rdelta: i64,
    cid: Option<String>,
    inst: Option<i64>,
    action: i64,
    cat: i64,
    actor: i64,
    atype: u8,
    ip: Option<i64>,
    ua: Option<i64>,
    tok: Option<i64>,
    scope: Option<i64>,
    otype: Option<i64>,
    oid: Option<i64>,
    oparent: Option<i64>,
    details: Option<String>,
    method: Option<i64>,
    route: Option<i64>,
    status: Option<u16>,
    lat: Option<i64>,
    body: Option<Vec<u8>>,
    cnt: Option<i64>,
    last: Option<i64>,
    hash: Vec<u8>,
    org: i64,
    /// The canonical encoding; NULL for the current one.
    enc: Option<u8>,
    sub: Option<i64>,
    /// The name of an actor type that has no code (`atype` 0).
    atname: Option<i64>,
}

impl RawRow {
    pub fn read(r: &Row<'_>) -> rusqlite::Result<RawRow> {
        Ok(RawRow {
            k: r.get(0)?,
            ts: r.get(1)?,
            rdelta: r.get(2)?,
            cid: r.get(3)?,
            inst: r.get(4)?,
            action: r.get(5)?,
            cat: r.get(6)?,
            actor: r.get(7)?,
            atype: r.get(8)?,
            ip: r.get(9)?,
            ua: r.get(10)?,
            tok: r.get(11)?,
            scope: r.get(12)?,
            otype: r.get(13)?,
            oid: r.get(14)?,
            oparent: r.get(15)?,
            details: r.get(16)?,
            method: r.get(17)?,
            route: r.get(18)?,
            status: r.get(19)?,
            lat: r.get(20)?,
            body: r.get(21)?,
            cnt: r.get(22)?,
            last: r.get(23)?,
            hash: r.get(24)?,
            org: r.get(25)?,
            enc: r.get(26)?,
            sub: r.get(27)?,
            atname: r.get(28)?,
        })
    }

    pub fn seq(&self) -> u64 {
        (self.k & SEQ_MASK) as u64
    }

    pub fn timestamp(&self) -> Timestamp {
        Timestamp(self.ts)
    }

    /// Every dictionary id the row refers to.
    pub fn dict_ids(&self) -> impl Iterator<Item = i64> + '_ {
        [
            self.inst,
            Some(self.action),
            Some(self.cat),
            Some(self.actor),
            self.ip,
            self.ua,
            self.tok,
            self.scope,
            self.otype,
            self.oid,
            self.oparent,
            self.method,
            self.route,
            self.sub,
            self.atname,
        ]
        .into_iter()
        .flatten()
    }

    /// Rebuilds the event; `dict` holds the strings of every id it refers to.
    pub fn into_stored(self, org: &str, dict: &Resolved) -> Result<StoredEvent> {
        let seq = self.seq();
        let corrupt = |what: &str| StoreError::Corrupt(format!("event {seq} of org {org}: {what}"));
        if self.org != self.k >> SEQ_BITS {
            return Err(corrupt("its org column does not match its key"));
        }
        let s = |id: i64| {
            dict.get(&id)
                .map(|v| v.to_string())
                .ok_or_else(|| corrupt(&format!("dictionary entry {id} is missing")))
        };
        let os = |id: Option<i64>| id.map(s).transpose();
        let ip = match os(self.ip)? {
            None => None,
            Some(text) => Some(text.parse::<IpAddr>().map_err(|_| corrupt("bad ip"))?),
        };
        let object = match self.otype {
            None => None,
            Some(t) => Some(Object::new(
                s(t)?,
                os(self.oid)?.map(CanonicalJson::from_canonical_text),
                os(self.oparent)?.map(CanonicalJson::from_canonical_text),
            )),
        };
        let request = match (self.method, self.route, self.status) {
            (None, None, None) => None,
            (Some(m), Some(r), Some(status)) => Some(RequestInfo {
                method: s(m)?,
                route: s(r)?,
                status,
                latency_us: self.lat.unwrap_or(0) as u64,
                body_sha256: match self.body {
                    None => None,
                    Some(b) => Some(b.try_into().map_err(|_| corrupt("bad body digest"))?),
                },
            }),
            _ => return Err(corrupt("partial request block")),
        };
        let event = Event {
            org: org.to_owned(),
            seq,
            client_id: self.cid,
            received_at: Timestamp(self.ts + self.rdelta),
            timestamp: Timestamp(self.ts),
            instance: os(self.inst)?,
            action: s(self.action)?,
            category: s(self.cat)?,
            actor: Actor {
                id: s(self.actor)?,
                kind: match (self.atype, self.atname) {
                    (0, Some(name)) => s(name)?
                        .parse::<ActorType>()
                        .ok()
                        .filter(|k| k.code().is_none())
                        .ok_or_else(|| corrupt("bad actor type name"))?,
                    (code, None) => {
                        ActorType::from_code(code).ok_or_else(|| corrupt("bad actor type"))?
                    }
                    _ => return Err(corrupt("bad actor type")),
                },
                ip,
                user_agent: os(self.ua)?,
                token_id: os(self.tok)?,
                scope: os(self.scope)?,
            },
            object,
            details: self.details.map(CanonicalJson::from_canonical_text),
            request,
            count: self.cnt.unwrap_or(1) as u64,
            last_occurred: Timestamp(self.ts + self.last.unwrap_or(0)),
            submitted_by: os(self.sub)?,
            encoding: self.enc.unwrap_or(trail_core::canonical::VERSION),
        };
        let hash = self.hash.try_into().map_err(|_| corrupt("bad leaf hash"))?;
        Ok(StoredEvent { event, hash })
    }
}

/// Rebuilds a page of rows, loading their dictionary entries in one go.
pub(crate) fn into_events(
    conn: &rusqlite::Connection,
    dict: &DictCache,
    org: &str,
    rows: Vec<RawRow>,
) -> Result<Vec<StoredEvent>> {
    let strings = dict.resolve(conn, rows.iter().flat_map(RawRow::dict_ids))?;
    rows.into_iter()
        .map(|r| r.into_stored(org, &strings))
        .collect()
}
