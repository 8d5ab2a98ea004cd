//! Per-minute tallies of recorded API calls (`perf_minutes`), kept as events are appended,
//! in the same transaction: a `perf` window reads its minutes, never the events.
//!
//! The table is derived from the events (each row adds up the calls of one route in one
//! minute of their timestamp), so it is not part of what the log proves; the migration that
//! made it filled it from the events already stored.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension};
use trail_core::Timestamp;
use trail_core::perf::{Minutes, Sketch, Tally, minute_of, window_minutes};

use super::dict::DictCache;
use super::{org_id, unavailable};
use crate::Result;

/// The calls one transaction adds, by (org id, minute, route's dictionary id).
pub(crate) type Added = HashMap<(i64, i64, i64), Tally>;

/// Counts one call in `added`.
pub(crate) fn add(
    added: &mut Added,
    org_id: i64,
    at: Timestamp,
    route: i64,
    status: u16,
    latency_us: u64,
) {
    added
        .entry((org_id, minute_of(at), route))
        .or_default()
        .add(status, latency_us);
}

/// Adds `added` to the stored tallies, in the transaction `tx`.
pub(crate) fn write(tx: &Connection, added: Added) -> Result<()> {
    write_rows(tx, added).map_err(unavailable)
}

fn write_rows(tx: &Connection, added: Added) -> rusqlite::Result<()> {
    let mut read = tx.prepare_cached(
        "SELECT requests, e4xx, e5xx, lat FROM perf_minutes \
         WHERE org = ?1 AND minute = ?2 AND route = ?3",
    )?;
    let mut put = tx.prepare_cached(
        "INSERT INTO perf_minutes (org, minute, route, requests, e4xx, e5xx, lat) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
         ON CONFLICT (org, minute, route) DO UPDATE SET requests = excluded.requests, \
         e4xx = excluded.e4xx, e5xx = excluded.e5xx, lat = excluded.lat",
    )?;
    for ((org, minute, route), mut tally) in added {
        if let Some(stored) = read
            .query_row(rusqlite::params![org, minute, route], tally_of)
            .optional()?
        {
            tally.merge(&stored);
        }
        put.execute(rusqlite::params![
            org,
            minute,
            route,
            tally.requests as i64,
            tally.errors_4xx as i64,
            tally.errors_5xx as i64,
            tally.latency.to_bytes(),
        ])?;
    }
    Ok(())
}

/// A stored row's tally (its first four columns).
fn tally_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<Tally> {
    let bytes: Vec<u8> = r.get(3)?;
    let latency = Sketch::from_bytes(&bytes).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            3,
            rusqlite::types::Type::Blob,
            "not a latency sketch".into(),
        )
    })?;
    Ok(Tally {
        requests: r.get::<_, i64>(0)? as u64,
        errors_4xx: r.get::<_, i64>(1)? as u64,
        errors_5xx: r.get::<_, i64>(2)? as u64,
        latency,
    })
}

/// The org's tallies for the minutes of `[since, until)` ([`window_minutes`]), by route.
pub(crate) fn read(
    conn: &Connection,
    dict: &DictCache,
    org: &str,
    since: Timestamp,
    until: Timestamp,
) -> Result<Minutes> {
    let org_id = org_id(conn, org)?;
    let (first, end) = window_minutes(since, until);
    let mut stmt = conn
        .prepare_cached(
            "SELECT requests, e4xx, e5xx, lat, route, minute FROM perf_minutes \
             WHERE org = ?1 AND minute >= ?2 AND minute < ?3",
        )
        .map_err(unavailable)?;
    let rows = stmt
        .query_map(rusqlite::params![org_id, first, end], |r| {
            Ok((r.get::<_, i64>(4)?, r.get::<_, i64>(5)?, tally_of(r)?))
        })
        .map_err(unavailable)?;
    let mut by_route: HashMap<i64, Vec<(i64, Tally)>> = HashMap::new();
    for row in rows {
        let (route, minute, tally) = row.map_err(unavailable)?;
        by_route.entry(route).or_default().push((minute, tally));
    }
    let names = dict.resolve(conn, by_route.keys().copied())?;
    let mut out: Minutes = by_route
        .into_iter()
        .map(|(id, mut minutes)| {
            minutes.sort_by_key(|(m, _)| *m);
            let name = names.get(&id).ok_or_else(|| {
                crate::StoreError::Corrupt(format!("dictionary entry {id} is missing"))
            })?;
            Ok((name.to_string(), minutes))
        })
        .collect::<Result<_>>()?;
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Fills `perf_minutes` from the events stored (the migration that makes the table).
pub(crate) fn fill_from_events(tx: &Connection) -> rusqlite::Result<()> {
    let mut added = Added::new();
    {
        let mut stmt =
            tx.prepare("SELECT org, ts, route, status, lat FROM events WHERE route IS NOT NULL")?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            add(
                &mut added,
                r.get(0)?,
                Timestamp(r.get(1)?),
                r.get(2)?,
                r.get::<_, Option<u16>>(3)?.unwrap_or(0),
                r.get::<_, Option<i64>>(4)?.unwrap_or(0).max(0) as u64,
            );
        }
    }
    write_rows(tx, added)
}
