//! Per-minute tallies, kept as events are appended, in the same transaction: how many events
//! each org has in each minute of their timestamp (`event_minutes`, for histograms), and the
//! recorded API calls of each route in each minute (`perf_minutes`, for `perf`). A window
//! reads its minutes, never its events.
//!
//! Both tables are derived from the events, so they are not part of what the log proves; the
//! migration that made them filled them from the events already stored.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension};
use trail_core::Timestamp;
use trail_core::perf::{Minutes, Sketch, Tally, fold_slices, minute_of, window_minutes};

use super::dict::DictCache;
use super::{org_id, unavailable};
use crate::Result;

/// What one transaction adds to the tallies.
#[derive(Default)]
pub(crate) struct Added {
    /// Events, by (org id, minute).
    events: HashMap<(i64, i64), i64>,
    /// Calls, by (org id, minute, route's dictionary id).
    calls: HashMap<(i64, i64, i64), Tally>,
}

impl Added {
    /// Counts one event appended.
    pub(crate) fn event(&mut self, org_id: i64, at: Timestamp) {
        *self.events.entry((org_id, minute_of(at))).or_default() += 1;
    }

    /// Counts one recorded call appended.
    pub(crate) fn call(
        &mut self,
        org_id: i64,
        at: Timestamp,
        route: i64,
        status: u16,
        latency_us: u64,
    ) {
        self.calls
            .entry((org_id, minute_of(at), route))
            .or_default()
            .add(status, latency_us);
    }
}

/// Adds `added` to the stored tallies, in the transaction `tx`.
pub(crate) fn write(tx: &Connection, added: Added) -> Result<()> {
    write_rows(tx, added).map_err(unavailable)
}

fn write_rows(tx: &Connection, added: Added) -> rusqlite::Result<()> {
    let mut count = tx.prepare_cached(
        "INSERT INTO event_minutes (org, minute, n) VALUES (?1, ?2, ?3) \
         ON CONFLICT (org, minute) DO UPDATE SET n = n + excluded.n",
    )?;
    for ((org, minute), n) in added.events {
        count.execute(rusqlite::params![org, minute, n])?;
    }
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
    for ((org, minute, route), mut tally) in added.calls {
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

/// The org's call tallies for the minutes of `[since, until)` ([`window_minutes`]), by
/// route, minutes added up into slices of `per` minutes from the window's first (each under
/// the minute its slice starts at), except each route's first and last minute with calls,
/// kept as they are: a window's rate span stays exact, and a long window costs a route at
/// most its slices and two more, however many minutes it has.
pub(crate) fn perf(
    conn: &Connection,
    dict: &DictCache,
    org: &str,
    since: Timestamp,
    until: Timestamp,
    per: i64,
) -> Result<Minutes> {
    let org_id = org_id(conn, org)?;
    let (first, end) = window_minutes(since, until);
    let mut stmt = conn
        .prepare_cached(
            "SELECT requests, e4xx, e5xx, lat, route, minute FROM perf_minutes \
             WHERE org = ?1 AND minute >= ?2 AND minute < ?3 ORDER BY minute",
        )
        .map_err(unavailable)?;
    let rows = stmt
        .query_map(rusqlite::params![org_id, first, end], |r| {
            Ok((r.get::<_, i64>(4)?, r.get::<_, i64>(5)?, tally_of(r)?))
        })
        .map_err(unavailable)?;
    let mut rows_read = Vec::new();
    for row in rows {
        rows_read.push(row.map_err(unavailable)?);
    }
    let by_route = fold_slices(rows_read, first, per);
    let names = dict.resolve(conn, by_route.iter().map(|(id, _)| *id))?;
    let mut out: Minutes = by_route
        .into_iter()
        .map(|(id, minutes)| {
            let name = names.get(&id).ok_or_else(|| {
                crate::StoreError::Corrupt(format!("dictionary entry {id} is missing"))
            })?;
            Ok((name.to_string(), minutes))
        })
        .collect::<Result<_>>()?;
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// The org's events in each whole minute of `[first, end)` (minutes since the epoch) that
/// has any.
pub(crate) fn events(
    conn: &Connection,
    org_id: i64,
    first: i64,
    end: i64,
) -> Result<Vec<(i64, u64)>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT minute, n FROM event_minutes WHERE org = ?1 AND minute >= ?2 AND minute < ?3",
        )
        .map_err(unavailable)?;
    stmt.query_map(rusqlite::params![org_id, first, end], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?.max(0) as u64))
    })
    .map_err(unavailable)?
    .collect::<rusqlite::Result<_>>()
    .map_err(unavailable)
}

/// How many tallies the migration holds before it writes them.
const FILL_CHUNK: usize = 50_000;

/// Fills the tallies from the events stored (the migration that makes the tables).
pub(crate) fn fill_from_events(tx: &Connection) -> rusqlite::Result<()> {
    let mut added = Added::default();
    {
        let mut stmt = tx.prepare("SELECT org, ts, route, status, lat FROM events")?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            // Written as it goes (each write adds to what is stored), so a big store is
            // filled in bounded memory.
            if added.calls.len() + added.events.len() >= FILL_CHUNK {
                write_rows(tx, std::mem::take(&mut added))?;
            }
            let (org, at) = (r.get(0)?, Timestamp(r.get(1)?));
            added.event(org, at);
            if let Some(route) = r.get::<_, Option<i64>>(2)? {
                added.call(
                    org,
                    at,
                    route,
                    r.get::<_, Option<u16>>(3)?.unwrap_or(0),
                    r.get::<_, Option<i64>>(4)?.unwrap_or(0).max(0) as u64,
                );
            }
        }
    }
    write_rows(tx, added)
}
