//! Reads of events in PostgreSQL: pages newest first, histograms, the export's page, and
//! reads in seq order for verification.
//!
//! A filter is answered by SQL alone: every field of the query language is a column of
//! `events` ([`super::FILTERED`]), the busiest ones indexed, and [`Narrowed`] translates a
//! filter to its condition with the reference semantics of [`Filter::matches`] (the
//! conformance suite checks it against them). A page reads one snapshot (a repeatable-read,
//! read-only transaction) whose statements stop at [`QUERY_DEADLINE`](super::QUERY_DEADLINE).

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

/// A filter as SQL: its condition on the `events` columns (its parameters from `$1`, the
/// org first), which says all [`Filter::matches`] does: each field's alternatives, and each
/// exclusion only where its term holds (an event without the field is not excluded).
struct Narrowed {
    clause: String,
    params: Vec<Param>,
}

impl Narrowed {
    fn of(org: &str, f: &Filter) -> Narrowed {
        let mut n = Narrowed {
            clause: "org = $1".into(),
            params: vec![Box::new(org.to_owned())],
        };
        if let Some(since) = f.since {
            let p = n.param(Box::new(since.micros()));
            n.clause.push_str(&format!(" AND ts >= {p}"));
        }
        if let Some(until) = f.until {
            let p = n.param(Box::new(until.micros()));
            n.clause.push_str(&format!(" AND ts < {p}"));
        }
        let (groups, negated) = f.grouped();
        for (field, matchers) in groups {
            let any = n.any(field, &matchers);
            n.clause.push_str(&format!(" AND ({any})"));
        }
        for t in negated {
            let holds = n.any(t.field, &[&t.matcher]);
            n.clause.push_str(&format!(" AND ({holds}) IS NOT TRUE"));
        }
        n
    }

    /// Adds a parameter; answers its `$n`.
    fn param(&mut self, p: Param) -> String {
        self.params.push(p);
        format!("${}", self.params.len())
    }

    /// The condition that one of `matchers` holds on `field`: true, false, or NULL where
    /// the event has no such field.
    fn any(&mut self, field: Field, matchers: &[&Matcher]) -> String {
        let mut texts: Vec<String> = Vec::new();
        let mut alternatives: Vec<String> = Vec::new();
        for m in matchers {
            match m {
                Matcher::Status(s) => {
                    let (lo, hi) = s.range();
                    alternatives.push(format!("status BETWEEN {lo} AND {hi}"));
                }
                Matcher::Text(t) if field == Field::Route => texts.extend(route_templates(t)),
                Matcher::Text(t) => texts.push(super::column_text(t.clone())),
            }
        }
        if !texts.is_empty() {
            let column = super::FILTERED
                .iter()
                .find(|(f, _)| *f == field)
                .map_or("NULL", |(_, c)| *c);
            if field == Field::ObjectName {
                // The index holds a prefix of each name.
                let chars = super::INDEXED_NAME_CHARS as usize;
                let prefixes: Vec<String> = texts
                    .iter()
                    .map(|t| t.chars().take(chars).collect())
                    .collect();
                let p = self.param(Box::new(prefixes));
                let q = self.param(Box::new(texts));
                let n = super::INDEXED_NAME_CHARS;
                alternatives.push(format!(
                    "(left({column}, {n}) = ANY({p}) AND {column} = ANY({q}))"
                ));
            } else {
                let p = self.param(Box::new(texts));
                alternatives.push(format!("{column} = ANY({p})"));
            }
        }
        alternatives.join(" OR ")
    }

    fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect()
    }
}

/// The event a row holds (`seq, data, hash`), checked to be the org's event at that seq.
fn stored(org: &str, r: &postgres::Row) -> Result<StoredEvent> {
    let seq = r.get::<_, i64>(0) as u64;
    let event = canonical::decode(r.get::<_, &[u8]>(1))
        .map_err(|e| StoreError::Corrupt(format!("seq {seq} of org {org:?}: {e}")))?;
    if event.org != org || event.seq != seq {
        return Err(StoreError::Corrupt(format!(
            "seq {seq} of org {org:?} holds another event"
        )));
    }
    Ok(StoredEvent {
        event,
        hash: hash_of(r.get(2), || format!("the leaf hash of seq {seq}"))?,
    })
}

/// The events `sql` reads (`seq, data, hash`).
fn read_events(
    tx: &mut Transaction<'_>,
    org: &str,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<StoredEvent>> {
    tx.query(sql, params)
        .map_err(unavailable)?
        .iter()
        .map(|r| stored(org, r))
        .collect()
}

/// Events newest first (by timestamp, then seq) that pass the filter, after the cursor.
pub(super) fn query(c: &mut Client, org: &str, q: &EventQuery) -> Result<EventPage> {
    let mut tx = snapshot(c)?;
    extent(&mut tx, org)?;
    let limit = q.limit.max(1);
    let mut n = Narrowed::of(org, &q.filter);
    if let Some(c) = q.cursor {
        let ts = n.param(Box::new(c.timestamp.micros()));
        let seq = n.param(Box::new(c.seq.min(i64::MAX as u64) as i64));
        n.clause
            .push_str(&format!(" AND (ts, seq) < ({ts}, {seq})"));
    }
    let sql = format!(
        "SELECT seq, data, hash FROM events WHERE {} ORDER BY ts DESC, seq DESC LIMIT {}",
        n.clause,
        limit + 1
    );
    let mut items = read_events(&mut tx, org, &sql, &n.refs())?;
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

/// How many events that pass `f` fall in each slice of `[since, until)`
/// ([`crate::histogram::count`]: whole minutes from the tallies where it can).
pub(super) fn histogram(
    c: &mut Client,
    org: &str,
    f: &Filter,
    since: Timestamp,
    until: Timestamp,
    buckets: usize,
) -> Result<Vec<u64>> {
    let mut tx = snapshot(c)?;
    extent(&mut tx, org)?;
    crate::histogram::count(&mut Counts { tx, org }, f, since, until, buckets)
}

/// An org's events and per-minute tallies in one snapshot, for a histogram.
struct Counts<'t, 'o> {
    tx: Transaction<'t>,
    org: &'o str,
}

impl crate::histogram::MinuteCounts for Counts<'_, '_> {
    fn minutes(&mut self, first: i64, end: i64) -> Result<Vec<(i64, u64)>> {
        Ok(self
            .tx
            .query(
                "SELECT minute, n FROM event_minutes WHERE org = $1 AND minute >= $2 \
                 AND minute < $3",
                &[&self.org, &first, &end],
            )
            .map_err(unavailable)?
            .iter()
            .map(|r| (r.get(0), r.get::<_, i64>(1).max(0) as u64))
            .collect())
    }

    /// Counted in the database, a bucket at a time.
    fn events(
        &mut self,
        f: &Filter,
        since: Timestamp,
        until: Timestamp,
        layout: &Layout,
        counts: &mut [u64],
    ) -> Result<()> {
        let mut f = f.clone();
        f.since = Some(since);
        f.until = Some(until);
        let mut n = Narrowed::of(self.org, &f);
        let origin = n.param(Box::new(layout.origin.micros()));
        let width = n.param(Box::new(layout.width_us));
        let sql = format!(
            "SELECT {origin}::bigint + (ts - {origin}::bigint) / {width}::bigint * {width}::bigint, \
             count(*) FROM events WHERE {} GROUP BY 1",
            n.clause
        );
        for r in self.tx.query(&sql, &n.refs()).map_err(unavailable)? {
            if let Some(c) = layout
                .bucket_of(Timestamp(r.get(0)))
                .and_then(|b| counts.get_mut(b))
            {
                *c += r.get::<_, i64>(1) as u64;
            }
        }
        Ok(())
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
        let lo = n.param(Box::new(from as i64));
        let hi = n.param(Box::new(end as i64));
        n.clause
            .push_str(&format!(" AND seq >= {lo} AND seq < {hi}"));
        let sql = format!(
            "SELECT seq, data, hash FROM events WHERE {} ORDER BY seq LIMIT {limit}",
            n.clause
        );
        items = read_events(&mut tx, org, &sql, &n.refs())?;
        if items.len() >= limit
            && let Some(last) = items.last()
        {
            next = last.event.seq + 1;
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
        .map(|r| stored(org, r))
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
            // The leaf of what the row holds at the row's place: data copied from another
            // seq or org reads as changed here, not as that other event.
            let leaf = canonical::decode(r.get::<_, &[u8]>(1))
                .map_err(|e| e.to_string())
                .and_then(|mut event| {
                    event.seq = seq;
                    event.org = org.to_owned();
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
