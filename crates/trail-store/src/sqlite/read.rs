//! Reads: the filtered, newest-first page; seq ranges; log size; credentials.
//!
//! A filter becomes one SQL statement over integer columns: each text value is first turned
//! into its dictionary id (a value never stored matches nothing), so the query never touches
//! `dict` row by row.

use rusqlite::types::Value as Sql;
use rusqlite::{Connection, OptionalExtension, params_from_iter};
use trail_core::Timestamp;
use trail_core::query::{Field, Matcher};
use trail_core::scope::Scope;

use super::dict::{DictCache, id_of};
use super::row::{COLUMNS, RawRow, into_events};
use super::{SEQ_BITS, SEQ_MASK, org_id, unavailable};
use crate::{EventPage, EventQuery, Result, StoreError, StoredEvent, Token, TokenKind};

fn column(f: Field) -> &'static str {
    match f {
        Field::Actor => "actor",
        Field::ActorType => "atype",
        Field::Action => "action",
        Field::Category => "cat",
        Field::ObjectType => "otype",
        Field::ObjectKind => "okind",
        Field::ObjectName => "oname",
        Field::Route => "route",
        Field::Method => "method",
        Field::Status => "status",
        Field::Instance => "inst",
        Field::TokenId => "tok",
        Field::Ip => "ip",
    }
}

/// The stored values one matcher stands for: dictionary ids, or an integer range.
enum Resolved {
    Ids(Vec<i64>),
    Range(i64, i64),
}

fn resolve(conn: &Connection, field: Field, m: &Matcher) -> Result<Resolved> {
    Ok(match m {
        Matcher::Status(s) => {
            let (lo, hi) = s.range();
            Resolved::Range(lo.into(), hi.into())
        }
        Matcher::Text(v) if field == Field::ActorType => {
            let code = v.parse::<trail_core::ActorType>().map(|t| t.code() as i64);
            Resolved::Ids(code.into_iter().collect())
        }
        Matcher::Text(path) if field == Field::Route && !path.contains(' ') => {
            // A path without a method matches the template under every method.
            let mut s = conn
                .prepare_cached("SELECT id, value FROM dict WHERE substr(value, -length(?1)) = ?1")
                .map_err(unavailable)?;
            let rows = s
                .query_map([path], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
                })
                .map_err(unavailable)?;
            let mut ids = Vec::new();
            for row in rows {
                let (id, value) = row.map_err(unavailable)?;
                if value.split_once(' ').is_some_and(|(_, p)| p == path) {
                    ids.push(id);
                }
            }
            Resolved::Ids(ids)
        }
        Matcher::Text(v) => Resolved::Ids(id_of(conn, v)?.into_iter().collect()),
    })
}

/// `col IN (...)` / `col BETWEEN ...`, or `None` when it can match nothing.
fn condition(col: &str, r: &Resolved, args: &mut Vec<Sql>) -> Option<String> {
    match r {
        Resolved::Ids(ids) if ids.is_empty() => None,
        Resolved::Ids(ids) => {
            let marks = vec!["?"; ids.len()].join(", ");
            args.extend(ids.iter().map(|&i| Sql::Integer(i)));
            Some(format!("{col} IN ({marks})"))
        }
        Resolved::Range(lo, hi) => {
            args.push(Sql::Integer(*lo));
            args.push(Sql::Integer(*hi));
            Some(format!("{col} BETWEEN ? AND ?"))
        }
    }
}

pub(crate) fn query(
    conn: &Connection,
    dict: &DictCache,
    org: &str,
    q: &EventQuery,
) -> Result<EventPage> {
    let org_id = org_id(conn, org)?;
    let mut sql = format!("SELECT {COLUMNS} FROM events WHERE org = ?");
    let mut args = vec![Sql::Integer(org_id)];
    let f = &q.filter;
    if let Some(since) = f.since {
        sql.push_str(" AND ts >= ?");
        args.push(Sql::Integer(since.micros()));
    }
    if let Some(until) = f.until {
        sql.push_str(" AND ts < ?");
        args.push(Sql::Integer(until.micros()));
    }
    if let Some(c) = q.cursor {
        let k = (org_id << SEQ_BITS) | (c.seq as i64 & SEQ_MASK);
        sql.push_str(" AND ts <= ? AND (ts < ? OR k < ?)");
        args.extend([
            Sql::Integer(c.timestamp.micros()),
            Sql::Integer(c.timestamp.micros()),
            Sql::Integer(k),
        ]);
    }
    let (groups, negated) = f.grouped();
    for (field, matchers) in groups {
        let col = column(field);
        let mut alternatives = Vec::new();
        for m in matchers {
            if let Some(c) = condition(col, &resolve(conn, field, m)?, &mut args) {
                alternatives.push(c);
            }
        }
        if alternatives.is_empty() {
            return Ok(EventPage::default());
        }
        sql.push_str(&format!(" AND ({})", alternatives.join(" OR ")));
    }
    for t in negated {
        let col = column(t.field);
        if let Some(c) = condition(col, &resolve(conn, t.field, &t.matcher)?, &mut args) {
            sql.push_str(&format!(" AND ({col} IS NULL OR NOT ({c}))"));
        }
    }
    let limit = q.limit.max(1);
    sql.push_str(" ORDER BY ts DESC, k DESC LIMIT ?");
    args.push(Sql::Integer(limit as i64 + 1));

    let mut stmt = conn.prepare_cached(&sql).map_err(unavailable)?;
    let mut rows: Vec<RawRow> = stmt
        .query_map(params_from_iter(args), RawRow::read)
        .map_err(unavailable)?
        .collect::<rusqlite::Result<_>>()
        .map_err(unavailable)?;
    let more = rows.len() > limit;
    rows.truncate(limit);
    let next = if more {
        rows.last().map(|r| trail_core::Cursor {
            timestamp: r.timestamp(),
            seq: r.seq(),
        })
    } else {
        None
    };
    Ok(EventPage {
        items: into_events(conn, dict, org, rows)?,
        next,
    })
}

pub(crate) fn events_from(
    conn: &Connection,
    dict: &DictCache,
    org: &str,
    from: u64,
    limit: usize,
) -> Result<Vec<StoredEvent>> {
    let base = org_id(conn, org)? << SEQ_BITS;
    let start = base | (from.min(SEQ_MASK as u64) as i64);
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM events WHERE k >= ?1 AND k <= ?2 ORDER BY k LIMIT ?3"
        ))
        .map_err(unavailable)?;
    let rows: Vec<RawRow> = stmt
        .query_map(
            rusqlite::params![start, base | SEQ_MASK, limit as i64],
            RawRow::read,
        )
        .map_err(unavailable)?
        .collect::<rusqlite::Result<_>>()
        .map_err(unavailable)?;
    into_events(conn, dict, org, rows)
}

pub(crate) fn log_size(conn: &Connection, org: &str) -> Result<u64> {
    let base = org_id(conn, org)? << SEQ_BITS;
    let max: Option<i64> = conn
        .prepare_cached("SELECT max(k) FROM events WHERE k BETWEEN ?1 AND ?2")
        .and_then(|mut s| s.query_row([base, base | SEQ_MASK], |r| r.get(0)))
        .map_err(unavailable)?;
    Ok(max.map_or(0, |k| ((k & SEQ_MASK) + 1) as u64))
}

pub(crate) fn token(conn: &Connection, id: &str) -> Result<Option<Token>> {
    let row = conn
        .prepare_cached(
            "SELECT t.id, t.kind, o.slug, t.owner, t.name, t.scopes, t.secret_hash, \
             t.created_at, t.expires_at, t.revoked_at \
             FROM tokens t JOIN orgs o ON o.id = t.org WHERE t.id = ?1",
        )
        .and_then(|mut s| {
            s.query_row([id], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, Vec<u8>>(6)?,
                    r.get::<_, i64>(7)?,
                    r.get::<_, Option<i64>>(8)?,
                    r.get::<_, Option<i64>>(9)?,
                ))
            })
            .optional()
        })
        .map_err(unavailable)?;
    let Some((id, kind, org, owner, name, scopes, hash, created, expires, revoked)) = row else {
        return Ok(None);
    };
    let corrupt = |what: &str| StoreError::Corrupt(format!("token {id}: {what}"));
    Ok(Some(Token {
        kind: TokenKind::parse(&kind).ok_or_else(|| corrupt("bad kind"))?,
        org,
        owner,
        name,
        scopes: Scope::parse_list(&scopes).map_err(|e| corrupt(&e.to_string()))?,
        secret_hash: hash.try_into().map_err(|_| corrupt("bad secret hash"))?,
        created_at: Timestamp(created),
        expires_at: expires.map(Timestamp),
        revoked_at: revoked.map(Timestamp),
        id,
    }))
}
