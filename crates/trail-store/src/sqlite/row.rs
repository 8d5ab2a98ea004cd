//! The one place that knows how an [`Event`] maps to a row of `events`, both ways.

use std::net::IpAddr;

use rusqlite::types::Value;
use rusqlite::{Connection, Row};
use trail_core::canonical::{Fields, ObjectFields, RequestFields};
use trail_core::event::{ActorType, CanonicalJson, Object};
use trail_core::{Event, Timestamp};

use super::batch::{Batch, Statements};
use super::dict::{DictCache, Resolved};
use super::{SEQ_BITS, SEQ_MASK, unavailable};
use crate::{Result, StoreError, StoredEvent};

/// The columns [`RawRow::read`] expects, in order.
pub(crate) const COLUMNS: &str = "k, ts, rdelta, cid, inst, action, cat, actor, atype, ip, ua, \
     tok, scope, otype, oid, oparent, details, method, route, status, lat, body, cnt, last, hash, org, \
     enc, sub, atname";

/// The columns an insert writes, in the order of [`Inserter::add`]'s values.
const INSERT_COLUMNS: &str = "k, org, ts, rdelta, cid, inst, action, cat, actor, atype, ip, \
     ua, tok, scope, otype, oid, oparent, okind, oname, details, method, route, status, lat, \
     body, cnt, last, hash, enc, sub, atname";
const INSERT_WIDTH: usize = 31;

static INSERTS: std::sync::LazyLock<Statements> = std::sync::LazyLock::new(|| {
    Statements::new(&format!("events ({INSERT_COLUMNS})"), INSERT_WIDTH)
});

/// Writes sealed events, a [`Batch`] of rows at a time. [`Inserter::flush`] must be called
/// before the events are read back or committed.
pub(crate) struct Inserter(Batch<'static>);

impl Default for Inserter {
    fn default() -> Self {
        Inserter(Batch::new(&INSERTS))
    }
}

impl Inserter {
    /// Queues one sealed event. `intern` maps a string to its dictionary id.
    pub fn add(
        &mut self,
        tx: &Connection,
        org_id: i64,
        e: &Event,
        hash: &[u8; 32],
        intern: &mut dyn FnMut(&Connection, &str) -> Result<i64>,
    ) -> Result<()> {
        let mut opt = |s: Option<&str>| -> Result<Value> {
            Ok(match s {
                Some(s) => Value::Integer(intern(tx, s)?),
                None => Value::Null,
            })
        };
        let o = e.object.as_ref();
        let r = e.request.as_ref();
        let int = |v: Option<i64>| v.map_or(Value::Null, Value::Integer);
        let row: [Value; INSERT_WIDTH] = [
            Value::Integer((org_id << SEQ_BITS) | e.seq as i64),
            Value::Integer(org_id),
            Value::Integer(e.timestamp.micros()),
            Value::Integer(e.received_at.micros() - e.timestamp.micros()),
            e.client_id.clone().map_or(Value::Null, Value::Text),
            opt(e.instance.as_deref())?,
            opt(Some(&e.action))?,
            opt(Some(&e.category))?,
            opt(Some(&e.actor.id))?,
            Value::Integer(e.actor.kind.code().unwrap_or(0).into()),
            e.actor
                .ip
                .map_or(Value::Null, |ip| Value::Blob(ip_bytes(ip))),
            opt(e.actor.user_agent.as_deref())?,
            opt(e.actor.token_id.as_deref())?,
            opt(e.actor.scope.as_deref())?,
            opt(o.map(|o| o.kind.as_str()))?,
            opt(o.and_then(|o| o.id.as_ref()).map(CanonicalJson::as_str))?,
            opt(o
                .and_then(|o| o.parent_id.as_ref())
                .map(CanonicalJson::as_str))?,
            opt(o.and_then(Object::id_kind))?,
            opt(o.and_then(Object::id_name))?,
            e.details
                .as_ref()
                .map_or(Value::Null, |d| Value::Text(d.as_str().to_owned())),
            opt(r.map(|r| r.method.as_str()))?,
            opt(r.map(|r| r.route.as_str()))?,
            int(r.map(|r| r.status.into())),
            int(r.map(|r| r.latency_us as i64)),
            r.and_then(|r| r.body_sha256.as_ref())
                .map_or(Value::Null, |b| Value::Blob(b.to_vec())),
            int((e.count != 1).then_some(e.count as i64)),
            int((e.last_occurred != e.timestamp)
                .then(|| e.last_occurred.micros() - e.timestamp.micros())),
            Value::Blob(hash.to_vec()),
            // NULL: the current encoding (2); rows from before it default to 1.
            int((e.encoding != trail_core::canonical::VERSION).then_some(e.encoding.into())),
            opt(e.submitted_by.as_deref())?,
            // A known actor type is its code; another is 0 and its name, in the dictionary.
            match e.actor.kind.code() {
                Some(_) => Value::Null,
                None => opt(Some(e.actor.kind.as_str()))?,
            },
        ];
        self.0.push(tx, row).map_err(unavailable)
    }

    /// Writes every queued row.
    pub fn flush(&mut self, tx: &Connection) -> Result<()> {
        self.0.flush(tx).map_err(unavailable)
    }
}

/// An address as stored inline: its 4 or 16 bytes.
pub(crate) fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

/// The `ip` column as read: inline bytes, or (in rows written before addresses were stored
/// inline) a dictionary id of its text.
pub(crate) enum StoredIp {
    Inline(IpAddr),
    Dict(i64),
}

impl rusqlite::types::FromSql for StoredIp {
    fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        use rusqlite::types::{FromSqlError, ValueRef};
        match v {
            ValueRef::Integer(id) => Ok(StoredIp::Dict(id)),
            ValueRef::Blob(b) => match b.len() {
                4 => Ok(StoredIp::Inline(IpAddr::from(
                    <[u8; 4]>::try_from(b).expect("4 bytes"),
                ))),
                16 => Ok(StoredIp::Inline(IpAddr::from(
                    <[u8; 16]>::try_from(b).expect("16 bytes"),
                ))),
                n => Err(FromSqlError::InvalidBlobSize {
                    expected_size: 16,
                    blob_size: n,
                }),
            },
            _ => Err(FromSqlError::InvalidType),
        }
    }
}

/// A row as read, strings still as dictionary ids.
pub(crate) struct RawRow {
    pub(crate) k: i64,
    ts: i64,
    rdelta: i64,
    cid: Option<String>,
    inst: Option<i64>,
    action: i64,
    cat: i64,
    actor: i64,
    atype: u8,
    ip: Option<StoredIp>,
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
            match self.ip {
                Some(StoredIp::Dict(id)) => Some(id),
                _ => None,
            },
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

    /// The event's fields, checked and borrowed from the row and from `dict`, which holds
    /// the strings of every id it refers to: what an event is rebuilt from, and what an
    /// audit hashes without rebuilding it.
    pub fn fields<'a>(&'a self, org: &'a str, dict: &'a Resolved) -> Result<Fields<'a>> {
        let seq = self.seq();
        let corrupt = |what: &str| StoreError::Corrupt(format!("event {seq} of org {org}: {what}"));
        if self.org != self.k >> SEQ_BITS {
            return Err(corrupt("its org column does not match its key"));
        }
        let s = |id: i64| {
            dict.get(&id)
                .map(|v| &**v)
                .ok_or_else(|| corrupt(&format!("dictionary entry {id} is missing")))
        };
        let os = |id: Option<i64>| id.map(s).transpose();
        let ip = match self.ip {
            None => None,
            Some(StoredIp::Inline(ip)) => Some(ip),
            Some(StoredIp::Dict(id)) => {
                Some(s(id)?.parse::<IpAddr>().map_err(|_| corrupt("bad ip"))?)
            }
        };
        let object = match self.otype {
            None => None,
            Some(t) => Some(ObjectFields {
                kind: s(t)?,
                id: os(self.oid)?,
                parent_id: os(self.oparent)?,
            }),
        };
        let request = match (self.method, self.route, self.status) {
            (None, None, None) => None,
            (Some(m), Some(r), Some(status)) => Some(RequestFields {
                method: s(m)?,
                route: s(r)?,
                status,
                latency_us: self.lat.unwrap_or(0) as u64,
                body_sha256: match &self.body {
                    None => None,
                    Some(b) => Some(
                        b.as_slice()
                            .try_into()
                            .map_err(|_| corrupt("bad body digest"))?,
                    ),
                },
            }),
            _ => return Err(corrupt("partial request block")),
        };
        let actor_type = match (self.atype, self.atname) {
            (0, Some(name)) => {
                let name = s(name)?;
                match name.parse::<ActorType>() {
                    Ok(kind) if kind.code().is_none() => name,
                    _ => return Err(corrupt("bad actor type name")),
                }
            }
            (code, None) => {
                ActorType::name_of_code(code).ok_or_else(|| corrupt("bad actor type"))?
            }
            _ => return Err(corrupt("bad actor type")),
        };
        Ok(Fields {
            encoding: self.enc.unwrap_or(trail_core::canonical::VERSION),
            org,
            seq,
            client_id: self.cid.as_deref(),
            instance: os(self.inst)?,
            timestamp: Timestamp(self.ts),
            received_at: Timestamp(self.ts + self.rdelta),
            action: s(self.action)?,
            category: s(self.cat)?,
            actor_id: s(self.actor)?,
            actor_type,
            ip,
            user_agent: os(self.ua)?,
            token_id: os(self.tok)?,
            scope: os(self.scope)?,
            object,
            details: self.details.as_deref(),
            request,
            count: self.cnt.unwrap_or(1) as u64,
            last_occurred: Timestamp(self.ts + self.last.unwrap_or(0)),
            submitted_by: os(self.sub)?,
        })
    }

    /// The leaf hash stored with the event.
    pub fn stored_hash(&self) -> Result<[u8; 32]> {
        self.hash.as_slice().try_into().map_err(|_| {
            StoreError::Corrupt(format!(
                "event {} of org id {}: bad leaf hash",
                self.seq(),
                self.k >> SEQ_BITS
            ))
        })
    }

    /// Rebuilds the event; `dict` holds the strings of every id it refers to.
    pub fn into_stored(self, org: &str, dict: &Resolved) -> Result<StoredEvent> {
        Ok(StoredEvent {
            event: self.fields(org, dict)?.to_event(),
            hash: self.stored_hash()?,
        })
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
