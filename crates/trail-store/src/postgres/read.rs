//! Reads of events in PostgreSQL: pages newest first, histograms, the export's page, and
//! reads in seq order for verification.
//!
//! A filter is answered in two steps: what the indexed columns can say (the time window, and
//! each field's alternatives among actor, action, category, route and instance) narrows the
//! rows in SQL; [`Filter::matches`], the reference semantics, decides each row read back
//! when the filter says more than that. A page reads one snapshot (a repeatable-read,
//! read-only transaction) and stops at [`QUERY_DEADLINE`](super::QUERY_DEADLINE).

use std::time::Instant;

use postgres::types::ToSql;
use postgres::{Client, GenericClient, IsolationLevel, Transaction};
use trail_core::histogram::Layout;
use trail_core::perf::window_minutes;
use trail_core::query::{Field, Filter, Matcher, route_templates};
use trail_core::verify::Leaf;
use trail_core::{Cursor, Timestamp, canonical};

use super::log::{extent, hash_of, tally_of};
use super::{QUERY_DEADLINE, unavailable};
use crate::{EventPage, EventQuery, ExportPage, Result, StoreError, StoredEvent};

type Param = Box<dyn ToSql + Sync + Send>;

/// A read-only snapshot of the database, whose statements stop at the query deadline.
fn snapshot(c: &mut Client) -> Result<Transaction<'_>> {
    let mut tx = c
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .map_err(unavailable)?;
    tx.batch_execute(&format!(
        "SET LOCAL statement_timeout = {}",
        QUERY_DEADLINE.as_millis()
    ))
    .map_err(unavailable)?;
    Ok(tx)
}

/// What SQL can say of a filter: a condition on the indexed columns (its parameters from
/// `$1`, the org first), and whether it says all the filter does.
struct Narrowed {
    clause: String,
    params: Vec<Param>,
    exact: bool,
}

impl Narrowed {
    fn of(org: &str, f: &Filter) -> Narrowed {
        let mut n = Narrowed {
            clause: "org = $1".into(),
            params: vec![Box::new(org.to_owned())],
            exact: true,
        };
        if let Some(since) = f.since {
            n.push("ts >= $", Box::new(since.micros()));
        }
        if let Some(until) = f.until {
            n.push("ts < $", Box::new(until.micros()));
        }
        let (groups, negated) = f.grouped();
        n.exact &= negated.is_empty();
        for (field, matchers) in groups {
            let column = match field {
                Field::Actor => "actor",
                Field::Action => "action",
                Field::Category => "category",
                Field::Route => "route",
                Field::Instance => "instance",
                _ => {
                    n.exact = false;
                    continue;
                }
            };
            let mut values: Vec<String> = Vec::new();
            for m in matchers {
                if let Matcher::Text(t) = m {
                    if field == Field::Route {
                        values.extend(route_templates(t));
                    } else {
                        values.push(t.clone());
                    }
                }
            }
            n.push(&format!("{column} = ANY($"), Box::new(values));
            n.clause.push(')');
        }
        n
    }

    /// Adds `AND {sql}{n}` with the parameter `p` as `$n`.
    fn push(&mut self, sql: &str, p: Param) {
        self.params.push(p);
        self.clause
            .push_str(&format!(" AND {sql}{}", self.params.len()));
    }

    fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect()
    }
}

/// The event a row holds (`seq, data, hash` from column `at` on), checked to be the org's
/// event at that seq.
fn stored(org: &str, r: &postgres::Row, at: usize) -> Result<StoredEvent> {
    let seq = r.get::<_, i64>(at) as u64;
    let event = canonical::decode(r.get::<_, &[u8]>(at + 1))
        .map_err(|e| StoreError::Corrupt(format!("seq {seq} of org {org:?}: {e}")))?;
    if event.org != org || event.seq != seq {
        return Err(StoreError::Corrupt(format!(
            "seq {seq} of org {org:?} holds another event"
        )));
    }
    Ok(StoredEvent {
        event,
        hash: hash_of(r.get(at + 2), || format!("the leaf hash of seq {seq}"))?,
    })
}

fn past_deadline(started: Instant) -> Result<()> {
    if started.elapsed() > QUERY_DEADLINE {
        return Err(StoreError::TimedOut(QUERY_DEADLINE));
    }
    Ok(())
}

/// Events newest first (by timestamp, then seq) that pass the filter, after the cursor.
pub(super) fn query(c: &mut Client, org: &str, q: &EventQuery) -> Result<EventPage> {
    let started = Instant::now();
    let mut tx = snapshot(c)?;
    extent(&mut tx, org)?;
    let limit = q.limit.max(1);
    let mut n = Narrowed::of(org, &q.filter);
    let mut after = q.cursor.map(|c| (c.timestamp.micros(), c.seq as i64));
    let (ts_at, seq_at) = (n.params.len() + 1, n.params.len() + 2);
    n.clause
        .push_str(&format!(" AND (ts, seq) < (${ts_at}, ${seq_at})"));
    let mut chunk = if n.exact {
        limit + 1
    } else {
        (limit + 1).max(256)
    };
    let mut items: Vec<StoredEvent> = Vec::new();
    loop {
        let (ts, seq) = after.unwrap_or((i64::MAX, i64::MAX));
        let mut params = n.refs();
        params.extend([&ts as &(dyn ToSql + Sync), &seq]);
        let sql = format!(
            "SELECT ts, seq, data, hash FROM events WHERE {} ORDER BY ts DESC, seq DESC LIMIT {chunk}",
            n.clause
        );
        let rows = tx.query(&sql, &params).map_err(unavailable)?;
        for r in &rows {
            after = Some((r.get(0), r.get(1)));
            let e = stored(org, r, 1)?;
            if n.exact || q.filter.matches(&e.event) {
                items.push(e);
                if items.len() > limit {
                    break;
                }
            }
        }
        if items.len() > limit || rows.len() < chunk {
            break;
        }
        past_deadline(started)?;
        chunk = (chunk * 2).min(8192);
    }
    let more = items.len() > limit;
    items.truncate(limit);
    let next = if more {
        items.last().map(|e| Cursor {
            timestamp: e.event.timestamp,
            seq: e.event.seq,
        })
    } else {
        None
    };
    Ok(EventPage { items, next })
}

/// How many events that pass `f` fall in each slice of `[since, until)`.
pub(super) fn histogram(
    c: &mut Client,
    org: &str,
    f: &Filter,
    since: Timestamp,
    until: Timestamp,
    buckets: usize,
) -> Result<Vec<u64>> {
    let started = Instant::now();
    let mut tx = snapshot(c)?;
    extent(&mut tx, org)?;
    let layout = Layout::new(since, until, buckets);
    let mut counts = vec![0u64; layout.buckets];
    let mut f = f.clone();
    f.since = Some(f.since.map_or(since, |s| s.max(since)));
    f.until = Some(f.until.map_or(until, |u| u.min(until)));
    if f.until <= f.since {
        return Ok(counts);
    }
    let mut n = Narrowed::of(org, &f);
    let mut add = |ts: i64, k: u64| {
        if let Some(c) = layout
            .bucket_of(Timestamp(ts))
            .and_then(|b| counts.get_mut(b))
        {
            *c += k;
        }
    };
    if n.exact {
        // Counted in the database, a bucket at a time.
        let (o, w) = (n.params.len() + 1, n.params.len() + 2);
        let sql = format!(
            "SELECT ${o}::bigint + (ts - ${o}::bigint) / ${w}::bigint * ${w}::bigint, count(*) \
             FROM events WHERE {} GROUP BY 1",
            n.clause
        );
        let mut params = n.refs();
        let (origin, width) = (layout.origin.micros(), layout.width_us);
        params.extend([&origin as &(dyn ToSql + Sync), &width]);
        for r in tx.query(&sql, &params).map_err(unavailable)? {
            add(r.get(0), r.get::<_, i64>(1) as u64);
        }
        return Ok(counts);
    }
    // Read in seq order and decided one by one.
    let at = n.params.len() + 1;
    n.clause.push_str(&format!(" AND seq > ${at}"));
    let mut after: i64 = -1;
    loop {
        let mut params = n.refs();
        params.push(&after);
        let sql = format!(
            "SELECT seq, data, hash FROM events WHERE {} ORDER BY seq LIMIT 4096",
            n.clause
        );
        let rows = tx.query(&sql, &params).map_err(unavailable)?;
        for r in &rows {
            let e = stored(org, r, 0)?;
            after = e.event.seq as i64;
            if f.matches(&e.event) {
                add(e.event.timestamp.micros(), 1);
            }
        }
        if rows.len() < 4096 {
            return Ok(counts);
        }
        past_deadline(started)?;
    }
}

/// The SIEM export's read ([`crate::Store::export`]), in one snapshot.
pub(super) fn export(
    c: &mut Client,
    org: &str,
    filter: &Filter,
    from: u64,
    limit: usize,
    scan: u64,
) -> Result<ExportPage> {
    let mut tx = snapshot(c)?;
    let Some(checkpoint) = super::log::checkpoint(&mut tx, org, None)? else {
        return Ok(ExportPage {
            next: from,
            ..Default::default()
        });
    };
    let limit = limit.max(1);
    let end = checkpoint.size.min(from.saturating_add(scan));
    let mut items = Vec::new();
    let mut next = from.max(end);
    if from < end {
        let mut n = Narrowed::of(org, filter);
        let (lo, hi) = (n.params.len() + 1, n.params.len() + 2);
        n.clause
            .push_str(&format!(" AND seq >= ${lo} AND seq < ${hi}"));
        let mut start = from as i64;
        let end = end as i64;
        'read: loop {
            let mut params = n.refs();
            params.extend([&start as &(dyn ToSql + Sync), &end]);
            let chunk = if n.exact { limit } else { 1024 };
            let sql = format!(
                "SELECT seq, data, hash FROM events WHERE {} ORDER BY seq LIMIT {chunk}",
                n.clause
            );
            let rows = tx.query(&sql, &params).map_err(unavailable)?;
            for r in &rows {
                let e = stored(org, r, 0)?;
                start = e.event.seq as i64 + 1;
                if n.exact || filter.matches(&e.event) {
                    items.push(e);
                    if items.len() >= limit {
                        next = start as u64;
                        break 'read;
                    }
                }
            }
            if rows.len() < chunk {
                break;
            }
        }
    }
    let following = match next.checked_sub(1) {
        Some(last) => received_at(&mut tx, org, last)?,
        None => None,
    };
    Ok(ExportPage {
        items,
        next,
        following,
        checkpoint: Some(checkpoint),
    })
}

/// The time of receipt of `org`'s event at `seq`, if the log holds it.
fn received_at(c: &mut impl GenericClient, org: &str, seq: u64) -> Result<Option<Timestamp>> {
    if seq > i64::MAX as u64 {
        return Ok(None);
    }
    Ok(c.query_opt(
        "SELECT received_at FROM events WHERE org = $1 AND seq = $2",
        &[&org, &(seq as i64)],
    )
    .map_err(unavailable)?
    .map(|r| Timestamp(r.get(0))))
}

/// The first seq received at or after `at`: a binary search over the seqs, since times of
/// receipt never go down along them.
pub(super) fn seq_received_since(c: &mut Client, org: &str, at: Timestamp) -> Result<u64> {
    let mut tx = snapshot(c)?;
    let (size, pruned_below) = extent(&mut tx, org)?;
    let (mut lo, mut hi) = (pruned_below, size);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let received = received_at(&mut tx, org, mid)?
            .ok_or_else(|| StoreError::Corrupt(format!("seq {mid} of org {org:?} is missing")))?;
        if received >= at {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Ok(lo)
}

/// The rows of `org`'s log in seq order from `from`, at most `limit`.
fn rows_from(c: &mut Client, org: &str, from: u64, limit: usize) -> Result<Vec<postgres::Row>> {
    extent(c, org)?;
    c.query(
        "SELECT seq, data, hash FROM events WHERE org = $1 AND seq >= $2 ORDER BY seq LIMIT $3",
        &[
            &org,
            &(from.min(i64::MAX as u64) as i64),
            &(limit.min(i64::MAX as usize) as i64),
        ],
    )
    .map_err(unavailable)
}

/// Events in seq order from `from`, at most `limit`.
pub(super) fn events_from(
    c: &mut Client,
    org: &str,
    from: u64,
    limit: usize,
) -> Result<Vec<StoredEvent>> {
    rows_from(c, org, from, limit)?
        .iter()
        .map(|r| stored(org, r, 0))
        .collect()
}

/// The leaves of the events in seq order, each recomputed from its content; a row that no
/// longer reads as the org's event at its seq comes back as its seq and why.
pub(super) fn leaves_for_audit(
    c: &mut Client,
    org: &str,
    from: u64,
    limit: usize,
) -> Result<crate::AuditRows> {
    Ok(rows_from(c, org, from, limit)?
        .iter()
        .map(|r| {
            let seq = r.get::<_, i64>(0) as u64;
            let leaf = canonical::decode(r.get::<_, &[u8]>(1))
                .map_err(|e| e.to_string())
                .and_then(|event| {
                    let stored =
                        hash_of(r.get(2), || "the leaf hash".into()).map_err(|e| e.to_string())?;
                    Ok(Leaf::of(&event, &stored))
                });
            (seq, leaf)
        })
        .collect())
}

pub(super) fn log_size(c: &mut Client, org: &str) -> Result<u64> {
    Ok(extent(c, org)?.0)
}

/// The org's call tallies for the minutes of `[since, until)` by route
/// ([`trail_core::perf::fold_slices`]).
pub(super) fn api_call_minutes(
    c: &mut Client,
    org: &str,
    since: Timestamp,
    until: Timestamp,
    per: i64,
) -> Result<trail_core::perf::Minutes> {
    let mut tx = snapshot(c)?;
    extent(&mut tx, org)?;
    let (first, end) = window_minutes(since, until);
    let rows = tx
        .query(
            "SELECT requests, e4xx, e5xx, lat, route, minute FROM perf_minutes \
             WHERE org = $1 AND minute >= $2 AND minute < $3 ORDER BY minute",
            &[&org, &first, &end],
        )
        .map_err(unavailable)?;
    let read = rows
        .iter()
        .map(|r| Ok((r.get::<_, String>(4), r.get::<_, i64>(5), tally_of(r)?)))
        .collect::<Result<Vec<_>>>()?;
    let mut out = trail_core::perf::fold_slices(read, first, per);
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}
