//! Reads: the filtered, newest-first page; seq ranges; log size; credentials.
//!
//! A filter becomes one SQL statement over integer columns: each text value is first turned
//! into its dictionary id (a value never stored matches nothing), so the query never touches
//! `dict` row by row.

use rusqlite::types::Value as Sql;
use rusqlite::{Connection, OptionalExtension, params_from_iter};
use trail_core::Timestamp;
use trail_core::histogram::Layout;
use trail_core::query::{Field, Filter, Matcher};
use trail_core::scope::{Role, Scope};
use trail_core::verify::Leaf;

use super::blocks::{self, Look, Probe, Step};
use super::dict::{DictCache, id_of};
use super::row::{COLUMNS, RawRow, into_events};
use super::{SEQ_BITS, SEQ_MASK, org_id, unavailable};
use crate::{
    EventPage, EventQuery, Instance, Member, Reach, Result, Session, StoreError, StoredEvent,
    Token, TokenKind, User,
};

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

/// The column one matcher is answered from: a field's own, except that an actor type without
/// a code is found by its name, in `atname`.
fn column_of(field: Field, m: &Matcher) -> &'static str {
    match (field, m) {
        (Field::ActorType, Matcher::Text(v))
            if v.parse::<trail_core::ActorType>()
                .is_ok_and(|t| t.code().is_none()) =>
        {
            "atname"
        }
        _ => column(field),
    }
}

/// The stored values one matcher stands for: dictionary ids (and, for an address, its
/// inline bytes), or an integer range.
enum Resolved {
    Ids(Vec<Sql>),
    Range(i64, i64),
}

fn ids(ids: impl IntoIterator<Item = i64>) -> Resolved {
    Resolved::Ids(ids.into_iter().map(Sql::Integer).collect())
}

fn resolve(conn: &Connection, field: Field, m: &Matcher) -> Result<Resolved> {
    Ok(match m {
        Matcher::Status(s) => {
            let (lo, hi) = s.range();
            Resolved::Range(lo.into(), hi.into())
        }
        Matcher::Text(v) if field == Field::ActorType => match v.parse::<trail_core::ActorType>() {
            Ok(t) => match t.code() {
                Some(code) => ids([code.into()]),
                // Another kind: its name's dictionary id, in `atname` ([`column_of`]).
                None => ids(id_of(conn, v)?),
            },
            Err(_) => ids([]),
        },
        Matcher::Text(path) if field == Field::Route && !path.contains(' ') => {
            // A path without a method stands for the template under each registered method:
            // a bounded number of exact lookups, whatever other orgs have stored.
            let mut ids = Vec::new();
            for template in trail_core::query::route_templates(path) {
                ids.extend(id_of(conn, &template)?);
            }
            self::ids(ids)
        }
        // An address is stored inline; rows written before that hold its text's id.
        Matcher::Text(v) if field == Field::Ip => {
            let mut values: Vec<Sql> = id_of(conn, v)?.into_iter().map(Sql::Integer).collect();
            if let Ok(ip) = v.parse::<std::net::IpAddr>() {
                // Old rows hold the address's canonical text, however the term spelt it.
                let text = ip.to_string();
                if text != *v {
                    values.extend(id_of(conn, &text)?.map(Sql::Integer));
                }
                values.push(Sql::Blob(super::row::ip_bytes(ip)));
            }
            Resolved::Ids(values)
        }
        Matcher::Text(v) => ids(id_of(conn, v)?),
    })
}

/// `col IN (...)` / `col BETWEEN ...`, or `None` when it can match nothing.
fn condition(col: &str, r: &Resolved, args: &mut Vec<Sql>) -> Option<String> {
    match r {
        Resolved::Ids(ids) if ids.is_empty() => None,
        Resolved::Ids(ids) => {
            let marks = vec!["?"; ids.len()].join(", ");
            args.extend(ids.iter().cloned());
            Some(format!("{col} IN ({marks})"))
        }
        Resolved::Range(lo, hi) => {
            args.push(Sql::Integer(*lo));
            args.push(Sql::Integer(*hi));
            Some(format!("{col} BETWEEN ? AND ?"))
        }
    }
}

/// The WHERE clause of `org`'s events that pass `f` (its time window included), and its
/// arguments; `None` when nothing can pass (a value the store has never seen).
fn matching(conn: &Connection, org_id: i64, f: &Filter) -> Result<Option<(String, Vec<Sql>)>> {
    matching_seqs(conn, org_id, 0, SEQ_MASK as u64, f)
}

/// [`matching`], over the seqs `first..=last` of the org's log only: one key range, so the
/// planner seeks to its start rather than choose between two lower bounds.
fn matching_seqs(
    conn: &Connection,
    org_id: i64,
    first: u64,
    last: u64,
    f: &Filter,
) -> Result<Option<(String, Vec<Sql>)>> {
    // The key range is the org's log (what a block walk narrows to a block's); the org
    // column must agree with it.
    let mut sql = "org = ? AND k BETWEEN ? AND ?".to_owned();
    let mut args = vec![
        Sql::Integer(org_id),
        Sql::Integer((org_id << SEQ_BITS) | (first.min(SEQ_MASK as u64) as i64)),
        Sql::Integer((org_id << SEQ_BITS) | (last.min(SEQ_MASK as u64) as i64)),
    ];
    if let Some(since) = f.since {
        sql.push_str(" AND ts >= ?");
        args.push(Sql::Integer(since.micros()));
    }
    if let Some(until) = f.until {
        sql.push_str(" AND ts < ?");
        args.push(Sql::Integer(until.micros()));
    }
    let (groups, negated) = f.grouped();
    for (field, matchers) in groups {
        let mut alternatives = Vec::new();
        for m in matchers {
            let col = column_of(field, m);
            if let Some(c) = condition(col, &resolve(conn, field, m)?, &mut args) {
                alternatives.push(c);
            }
        }
        if alternatives.is_empty() {
            return Ok(None);
        }
        sql.push_str(&format!(" AND ({})", alternatives.join(" OR ")));
    }
    for t in negated {
        let col = column_of(t.field, &t.matcher);
        if let Some(c) = condition(col, &resolve(conn, t.field, &t.matcher)?, &mut args) {
            sql.push_str(&format!(" AND ({col} IS NULL OR NOT ({c}))"));
        }
    }
    Ok(Some((sql, args)))
}

pub(crate) fn query(
    conn: &Connection,
    dict: &DictCache,
    org: &str,
    q: &EventQuery,
) -> Result<EventPage> {
    // One snapshot for the whole page: a walk reads many statements, and a prune or an
    // append between them must not change what it sees.
    let tx = conn.unchecked_transaction().map_err(unavailable)?;
    let conn: &Connection = &tx;
    let org_id = org_id(conn, org)?;
    let Some((mut clause, mut args)) = matching(conn, org_id, &q.filter)? else {
        return Ok(EventPage::default());
    };
    if let Some(c) = q.cursor {
        let k = (org_id << SEQ_BITS) | (c.seq as i64 & SEQ_MASK);
        clause.push_str(" AND ts <= ? AND (ts < ? OR k < ?)");
        args.extend([
            Sql::Integer(c.timestamp.micros()),
            Sql::Integer(c.timestamp.micros()),
            Sql::Integer(k),
        ]);
    }
    let limit = q.limit.max(1);
    let probe = probe(conn, &q.filter)?;
    let mut rows = newest_in_blocks(conn, org_id, &probe, q, &clause, args)?;
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

/// What the block postings and summaries can tell of `f`.
fn probe(conn: &Connection, f: &Filter) -> Result<Probe> {
    Probe::of(f, |field, m| {
        Ok(match resolve(conn, field, m)? {
            Resolved::Ids(ids) => Some((column_of(field, m), ids)),
            Resolved::Range(..) => None,
        })
    })
}

/// A block with at most this many seqs to look at has them read one by one; one with more
/// is read whole, in key order (cheaper than that many lookups).
const SPARSE: usize = blocks::BLOCK as usize / 16;

/// The statements that read the events of one [`Look`] that pass a filter: `select ...
/// WHERE clause`, where `clause` is over the org's whole log (its second and third arguments
/// are its key range), and the arguments of `select` come first. Over a range of keys,
/// `tail` follows (with its arguments last).
struct Reads<'a> {
    conn: &'a Connection,
    base: i64,
    /// Over a key range, narrowed to the look's.
    range: String,
    /// Of one key.
    one: String,
    head: usize,
    args: Vec<Sql>,
    tail_args: Vec<Sql>,
}

impl<'a> Reads<'a> {
    fn new(
        conn: &'a Connection,
        org_id: i64,
        select: &str,
        clause: &str,
        tail: (&str, Vec<Sql>),
        head: Vec<Sql>,
        clause_args: Vec<Sql>,
    ) -> Reads<'a> {
        let n = head.len();
        let mut args = head;
        args.extend(clause_args);
        Reads {
            conn,
            base: org_id << SEQ_BITS,
            range: format!("{select} FROM events NOT INDEXED WHERE {clause} {}", tail.0),
            one: format!("{select} FROM events WHERE k = ? AND {clause}"),
            head: n,
            args,
            tail_args: tail.1,
        }
    }

    /// Gives `each` every row of `look` that passes.
    fn each<T>(
        &self,
        look: &Look,
        read: impl Fn(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
        mut each: impl FnMut(T),
    ) -> Result<()> {
        match &look.seqs {
            Some(seqs) if seqs.len() <= SPARSE => {
                let mut stmt = self.conn.prepare_cached(&self.one).map_err(unavailable)?;
                let mut args = Vec::with_capacity(self.args.len() + 1);
                for &seq in seqs {
                    args.clear();
                    args.extend_from_slice(&self.args[..self.head]);
                    args.push(Sql::Integer(self.base | seq as i64));
                    args.extend_from_slice(&self.args[self.head..]);
                    let mut rows = stmt.query(params_from_iter(&args)).map_err(unavailable)?;
                    while let Some(r) = rows.next().map_err(unavailable)? {
                        each(read(r).map_err(unavailable)?);
                    }
                }
            }
            _ => {
                let mut args = self.args.clone();
                args[self.head + 1] = Sql::Integer(self.base | look.span.first as i64);
                args[self.head + 2] = Sql::Integer(self.base | look.span.last as i64);
                args.extend_from_slice(&self.tail_args);
                let mut stmt = self.conn.prepare_cached(&self.range).map_err(unavailable)?;
                let rows = stmt
                    .query_map(params_from_iter(args), read)
                    .map_err(unavailable)?;
                for r in rows {
                    each(r.map_err(unavailable)?);
                }
            }
        }
        Ok(())
    }
}

/// The rows of [`query`]'s page (one more than its limit, if there are), read block by
/// block where the postings or summaries do not rule its filter out, newest block first,
/// until no block left can hold an event newer than the page's last. `clause` and `args`
/// select the page's events over the org's whole log. Only the time and key of the events
/// that pass are read along the way (a page may pass over many more than it keeps); its
/// rows are read once it is known.
fn newest_in_blocks(
    conn: &Connection,
    org_id: i64,
    probe: &Probe,
    q: &EventQuery,
    clause: &str,
    args: Vec<Sql>,
) -> Result<Vec<RawRow>> {
    let want = q.limit.max(1) + 1;
    let reads = Reads::new(
        conn,
        org_id,
        "SELECT ts, k",
        clause,
        (
            "ORDER BY ts DESC, k DESC LIMIT ?",
            vec![Sql::Integer(want as i64)],
        ),
        Vec::new(),
        args,
    );
    let f = &q.filter;
    let (since, until) = (f.since.map(|t| t.micros()), f.until.map(|t| t.micros()));
    let cursor_ts = q.cursor.map(|c| c.timestamp.micros());
    // The timestamp of the page's last event, once the page is full: older blocks whose
    // events are all at most that old cannot change it.
    let last = std::cell::Cell::new(None::<i64>);
    let mut found: Vec<(i64, i64)> = Vec::new();
    let key = |r: &rusqlite::Row<'_>| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?));
    blocks::walk(
        conn,
        org_id,
        pruned_below(conn, org_id)?,
        size_of(conn, org_id)?,
        probe,
        |min_ts, max_ts, before| {
            let last = last.get();
            if last.is_some_and(|l| before <= l) || since.is_some_and(|s| before < s) {
                Step::Stop
            } else if last.is_some_and(|l| max_ts <= l)
                || since.is_some_and(|s| max_ts < s)
                || until.is_some_and(|u| min_ts >= u)
                || cursor_ts.is_some_and(|c| min_ts > c)
            {
                Step::Skip
            } else {
                Step::Look
            }
        },
        |mut look| {
            // Events older than the page's last cannot enter it: not read, where the
            // postings say which they are.
            if let Some(l) = last.get() {
                look.drop_older_than(conn, l)?;
            }
            reads.each(&look, key, |r| found.push(r))?;
            found.sort_unstable_by_key(|r| std::cmp::Reverse(*r));
            found.truncate(want);
            if found.len() == want {
                last.set(found.last().map(|r| r.0));
            }
            Ok(())
        },
    )?;
    let mut row = conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM events WHERE k = ?1"))
        .map_err(unavailable)?;
    found
        .into_iter()
        .map(|(_, k)| row.query_row([k], RawRow::read).map_err(unavailable))
        .collect()
}

/// How many of `org`'s events that pass `f` fall in each of `buckets` equal slices of
/// `[since, until)` ([`crate::histogram::count`]).
pub(crate) fn histogram(
    conn: &Connection,
    org: &str,
    f: &Filter,
    since: Timestamp,
    until: Timestamp,
    buckets: usize,
) -> Result<Vec<u64>> {
    // One snapshot for every count (see `query`).
    let tx = conn.unchecked_transaction().map_err(unavailable)?;
    let org_id = org_id(&tx, org)?;
    crate::histogram::count(&mut Counts { conn: &tx, org_id }, f, since, until, buckets)
}

/// An org's events and per-minute tallies, for a histogram.
struct Counts<'c> {
    conn: &'c Connection,
    org_id: i64,
}

impl crate::histogram::MinuteCounts for Counts<'_> {
    fn minutes(&mut self, first: i64, end: i64) -> Result<Vec<(i64, u64)>> {
        super::minutes::events(self.conn, self.org_id, first, end)
    }

    fn events(
        &mut self,
        f: &Filter,
        since: Timestamp,
        until: Timestamp,
        layout: &Layout,
        counts: &mut [u64],
    ) -> Result<()> {
        count_events(self.conn, self.org_id, f, since, until, layout, counts)
    }
}

/// Adds the events in `[since, until)` that pass `f` to their buckets, reading the events.
fn count_events(
    conn: &Connection,
    org_id: i64,
    f: &Filter,
    since: Timestamp,
    until: Timestamp,
    layout: &Layout,
    counts: &mut [u64],
) -> Result<()> {
    let mut f = f.clone();
    f.since = Some(since);
    f.until = Some(until);
    let Some((clause, args)) = matching(conn, org_id, &f)? else {
        return Ok(());
    };
    let head = vec![
        Sql::Integer(layout.origin.micros()),
        Sql::Integer(layout.width_us),
    ];
    let mut add = |(b, n): (Option<i64>, i64)| {
        if let Some(c) = b
            .and_then(|b| usize::try_from(b).ok())
            .and_then(|b| counts.get_mut(b))
        {
            *c += n as u64;
        }
    };
    let read = |r: &rusqlite::Row<'_>| Ok((r.get::<_, Option<i64>>(0)?, r.get::<_, i64>(1)?));
    let probe = probe(conn, &f)?;
    let reads = Reads::new(
        conn,
        org_id,
        "SELECT (ts - ?) / ? AS b, count(*)",
        &clause,
        ("GROUP BY b", Vec::new()),
        head,
        args,
    );
    let (since, until) = (since.micros(), until.micros());
    // Where the walk says exactly which events pass and the block lies in one bucket, it
    // counts them; blocks looked at whole are read in runs of neighbours.
    let bucket = |ts: i64| layout.bucket_of(Timestamp(ts));
    let mut run: Option<blocks::Span> = None;
    blocks::walk(
        conn,
        org_id,
        pruned_below(conn, org_id)?,
        size_of(conn, org_id)?,
        &probe,
        |min_ts, max_ts, before| {
            if before < since {
                Step::Stop
            } else if max_ts < since || min_ts >= until {
                Step::Skip
            } else {
                Step::Look
            }
        },
        |look| {
            if let (Some(n), Some((lo, hi))) = (probe.passing(&look), look.times)
                && lo >= since
                && hi < until
                && bucket(lo).is_some()
                && bucket(lo) == bucket(hi)
            {
                add((bucket(lo).map(|b| b as i64), n as i64));
                return Ok(());
            }
            if look.seqs.as_ref().is_some_and(|s| s.len() <= SPARSE) {
                return reads.each(&look, read, &mut add);
            }
            match &mut run {
                Some(r) if look.span.last + 1 == r.first => r.first = look.span.first,
                _ => {
                    if let Some(r) = run.replace(look.span) {
                        reads.each(&Look::whole(r.first, r.last), read, &mut add)?;
                    }
                }
            }
            Ok(())
        },
    )?;
    match run {
        Some(r) => reads.each(&Look::whole(r.first, r.last), read, &mut add),
        None => Ok(()),
    }
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

/// The SIEM export's read ([`crate::Store::export`]): one read transaction, so the events,
/// the checkpoint that bounds them and the receipt time after them are one snapshot. The
/// scan walks the org's key range and nothing else (`NOT INDEXED`): a page costs at most
/// `scan` rows whatever the filter, and the cursor moves on even when none matches.
pub(crate) fn export(
    conn: &Connection,
    dict: &DictCache,
    org: &str,
    filter: &Filter,
    from: u64,
    limit: usize,
    scan: u64,
) -> Result<crate::ExportPage> {
    let tx = conn.unchecked_transaction().map_err(unavailable)?;
    let Some(checkpoint) = super::tree::checkpoint(&tx, org, None)? else {
        return Ok(crate::ExportPage {
            next: from,
            ..Default::default()
        });
    };
    let org_id = org_id(&tx, org)?;
    let base = org_id << SEQ_BITS;
    let end = checkpoint.size.min(from.saturating_add(scan));
    let mut items = Vec::new();
    let mut next = from.max(end);
    if from < end
        && let Some((clause, mut args)) = matching_seqs(&tx, org_id, from, end - 1, filter)?
    {
        let sql =
            format!("SELECT {COLUMNS} FROM events NOT INDEXED WHERE {clause} ORDER BY k LIMIT ?");
        args.push(Sql::Integer(limit.max(1) as i64));
        let mut stmt = tx.prepare_cached(&sql).map_err(unavailable)?;
        let rows: Vec<RawRow> = stmt
            .query_map(params_from_iter(args), RawRow::read)
            .map_err(unavailable)?
            .collect::<rusqlite::Result<_>>()
            .map_err(unavailable)?;
        if rows.len() >= limit.max(1) {
            next = ((rows[rows.len() - 1].k & SEQ_MASK) + 1) as u64;
        }
        items = into_events(&tx, dict, org, rows)?;
    }
    let following = match next.checked_sub(1) {
        Some(last) => received_at(&tx, base, last)?,
        None => None,
    };
    Ok(crate::ExportPage {
        items,
        next,
        following,
        checkpoint: Some(checkpoint),
    })
}

/// The time of receipt of the event at `seq` of the log whose keys start at `base`, if the
/// log holds it.
fn received_at(conn: &Connection, base: i64, seq: u64) -> Result<Option<Timestamp>> {
    if seq > SEQ_MASK as u64 {
        return Ok(None);
    }
    conn.prepare_cached("SELECT ts + rdelta FROM events WHERE k = ?1")
        .and_then(|mut s| s.query_row([base | seq as i64], |r| r.get(0)).optional())
        .map(|t| t.map(Timestamp))
        .map_err(unavailable)
}

/// The first seq received at or after `at`: a binary search over the seqs, since times of
/// receipt never go down along them (the writer never gives one earlier than the last).
pub(crate) fn seq_received_since(conn: &Connection, org: &str, at: Timestamp) -> Result<u64> {
    let tx = conn.unchecked_transaction().map_err(unavailable)?;
    let id = org_id(&tx, org)?;
    let base = id << SEQ_BITS;
    // Seqs below a prune are gone: they were all received before what remains.
    let (mut lo, mut hi) = (pruned_below(&tx, id)?, size_of(&tx, id)?);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let received = received_at(&tx, base, mid)?
            .ok_or_else(|| StoreError::Corrupt(format!("seq {mid} of org {org:?} is missing")))?;
        if received >= at {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Ok(lo)
}

/// The leaves of events in seq order, each recomputed from its row and dictionary strings
/// without building the event, and each row read on its own: one that no longer reads as an
/// event is returned as its seq and why, for audits to name.
pub(crate) fn leaves_for_audit(
    conn: &Connection,
    dict: &DictCache,
    org: &str,
    from: u64,
    limit: usize,
) -> Result<crate::AuditRows> {
    let base = org_id(conn, org)? << SEQ_BITS;
    let start = base | (from.min(SEQ_MASK as u64) as i64);
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM events WHERE k >= ?1 AND k <= ?2 ORDER BY k LIMIT ?3"
        ))
        .map_err(unavailable)?;
    let mut rows = stmt
        .query(rusqlite::params![start, base | SEQ_MASK, limit as i64])
        .map_err(unavailable)?;
    let mut raw: Vec<std::result::Result<RawRow, (u64, String)>> =
        Vec::with_capacity(limit.min(10_000));
    while let Some(r) = rows.next().map_err(unavailable)? {
        let k: i64 = r.get(0).map_err(unavailable)?;
        let seq = (k & SEQ_MASK) as u64;
        raw.push(RawRow::read(r).map_err(|e| (seq, format!("unreadable columns: {e}"))));
    }
    let strings = dict.resolve(conn, raw.iter().flatten().flat_map(RawRow::dict_ids))?;
    let mut scratch = Vec::with_capacity(512);
    let mut leaf = |row: &RawRow| -> Result<Leaf> {
        let stored = row.stored_hash()?;
        Ok(Leaf::of_fields(
            &row.fields(org, &strings)?,
            &stored,
            &mut scratch,
        ))
    };
    Ok(raw
        .into_iter()
        .map(|r| match r {
            Ok(row) => (row.seq(), leaf(&row).map_err(|e| e.to_string())),
            Err((seq, why)) => (seq, Err(why)),
        })
        .collect())
}

pub(crate) fn log_size(conn: &Connection, org: &str) -> Result<u64> {
    size_of(conn, org_id(conn, org)?)
}

/// The size of an org's log: one past its newest seq, or where it was pruned to if nothing
/// after that remains (seqs are never reused).
pub(crate) fn size_of(conn: &Connection, org_id: i64) -> Result<u64> {
    let base = org_id << SEQ_BITS;
    let max: Option<i64> = conn
        .prepare_cached("SELECT max(k) FROM events WHERE k BETWEEN ?1 AND ?2")
        .and_then(|mut s| s.query_row([base, base | SEQ_MASK], |r| r.get(0)))
        .map_err(unavailable)?;
    let stored = max.map_or(0, |k| ((k & SEQ_MASK) + 1) as u64);
    Ok(stored.max(pruned_below(conn, org_id)?))
}

/// The seq below which an org's log was pruned.
pub(crate) fn pruned_below(conn: &Connection, org_id: i64) -> Result<u64> {
    conn.prepare_cached("SELECT pruned_below FROM orgs WHERE id = ?1")
        .and_then(|mut s| s.query_row([org_id], |r| r.get::<_, i64>(0)))
        .map(|n| n as u64)
        .map_err(unavailable)
}

pub(crate) fn retention(conn: &Connection, org: &str) -> Result<crate::Retention> {
    conn.prepare_cached("SELECT retention_days, legal_hold, pruned_below FROM orgs WHERE slug = ?1")
        .and_then(|mut s| {
            s.query_row([org], |r| {
                Ok(crate::Retention {
                    days: r.get::<_, Option<i64>>(0)?.map(|d| d as u32),
                    legal_hold: r.get(1)?,
                    pruned_below: r.get::<_, i64>(2)? as u64,
                })
            })
            .optional()
        })
        .map_err(unavailable)?
        .ok_or_else(|| StoreError::UnknownOrg(org.to_owned()))
}

const TOKEN_COLUMNS: &str = "t.id, t.kind, o.slug, t.owner, t.user_id, t.name, t.description, \
     t.scopes, t.instance, t.secret_hash, t.created_by, t.created_at, t.expires_at, t.revoked_at, \
     t.reach, t.pw, t.role, t.made_with";

fn token_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<Token>> {
    let id: String = r.get(0)?;
    let kind: String = r.get(1)?;
    let scopes: String = r.get(7)?;
    let hash: Vec<u8> = r.get(9)?;
    let corrupt = |what: &str| StoreError::Corrupt(format!("credential {id}: {what}"));
    let kind = match TokenKind::parse(&kind) {
        Some(k) => k,
        None => return Ok(Err(corrupt("bad kind"))),
    };
    let scopes = match Scope::parse_list(&scopes) {
        Ok(s) => s,
        Err(e) => return Ok(Err(corrupt(&e.to_string()))),
    };
    let secret_hash = match hash.try_into() {
        Ok(h) => h,
        Err(_) => return Ok(Err(corrupt("bad secret hash"))),
    };
    let role = match r.get::<_, Option<String>>(16)?.map(|r| r.parse::<Role>()) {
        None => None,
        Some(Ok(role)) => Some(role),
        Some(Err(e)) => return Ok(Err(corrupt(&e))),
    };
    let reach = match r.get::<_, Option<String>>(14)?.as_deref() {
        None => Reach::Own,
        Some("*") => Reach::All,
        Some(list) => Reach::Orgs(list.split(' ').map(str::to_owned).collect()),
    };
    Ok(Ok(Token {
        kind,
        org: r.get(2)?,
        owner: r.get(3)?,
        user_id: r.get(4)?,
        name: r.get(5)?,
        description: r.get(6)?,
        scopes,
        instance: r.get(8)?,
        secret_hash,
        created_by: r.get(10)?,
        created_at: Timestamp(r.get(11)?),
        expires_at: r.get::<_, Option<i64>>(12)?.map(Timestamp),
        revoked_at: r.get::<_, Option<i64>>(13)?.map(Timestamp),
        reach,
        from_password: r.get::<_, Option<i64>>(15)? == Some(1),
        role,
        made_with: r.get(17)?,
        id,
    }))
}

pub(crate) fn token(conn: &Connection, id: &str) -> Result<Option<Token>> {
    conn.prepare_cached(&format!(
        "SELECT {TOKEN_COLUMNS} FROM tokens t JOIN orgs o ON o.id = t.org WHERE t.id = ?1"
    ))
    .and_then(|mut s| s.query_row([id], token_from_row).optional())
    .map_err(unavailable)?
    .transpose()
}

pub(crate) fn tokens(
    conn: &Connection,
    org: &str,
    kind: TokenKind,
    user_id: Option<&str>,
) -> Result<Vec<Token>> {
    let org_id = org_id(conn, org)?;
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens t JOIN orgs o ON o.id = t.org \
             WHERE t.org = ?1 AND t.kind = ?2 AND (?3 IS NULL OR t.user_id = ?3) \
             ORDER BY t.created_at DESC, t.id"
        ))
        .map_err(unavailable)?;
    let rows = stmt
        .query_map(
            rusqlite::params![org_id, kind.as_str(), user_id],
            token_from_row,
        )
        .map_err(unavailable)?;
    rows.map(|r| r.map_err(unavailable)?).collect()
}

pub(crate) fn personal_tokens(conn: &Connection, user_id: &str) -> Result<Vec<Token>> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens t JOIN orgs o ON o.id = t.org \
             WHERE t.user_id = ?1 AND t.kind = 'pat' ORDER BY t.created_at DESC, t.id"
        ))
        .map_err(unavailable)?;
    let rows = stmt
        .query_map([user_id], token_from_row)
        .map_err(unavailable)?;
    rows.map(|r| r.map_err(unavailable)?).collect()
}

/// The user whose `column` (`id` or `email`) is `value`. An email is matched without regard
/// to ASCII case (one an older store holds twice, differing only in case, answers its exact
/// spelling first, else the older account).
pub(crate) fn user_where(conn: &Connection, column: &str, value: &str) -> Result<Option<User>> {
    let condition = match column {
        "id" => "id = ?1",
        "email" => "email = ?1 COLLATE NOCASE ORDER BY email = ?1 DESC, created_at LIMIT 1",
        _ => unreachable!("users are found by id or email"),
    };
    conn.prepare_cached(&format!(
        "SELECT {USER_COLUMNS} FROM users WHERE {condition}"
    ))
    .and_then(|mut s| s.query_row([value], user_from_row).optional())
    .map_err(unavailable)
}

const USER_COLUMNS: &str = "id, email, password_hash, platform_admin, created_at";

fn user_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: r.get(0)?,
        email: r.get(1)?,
        password_hash: r.get(2)?,
        platform_admin: r.get(3)?,
        created_at: Timestamp(r.get(4)?),
    })
}

fn role(s: &str) -> Result<Role> {
    s.parse()
        .map_err(|e: String| StoreError::Corrupt(format!("member role: {e}")))
}

pub(crate) fn members(conn: &Connection, org: &str) -> Result<Vec<Member>> {
    let org_id = org_id(conn, org)?;
    let mut stmt = conn
        .prepare_cached(
            "SELECT u.id, u.email, m.role FROM members m JOIN users u ON u.id = m.user_id \
             WHERE m.org = ?1 ORDER BY u.email",
        )
        .map_err(unavailable)?;
    let rows = stmt
        .query_map([org_id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })
        .map_err(unavailable)?;
    rows.map(|r| {
        let (user_id, email, r) = r.map_err(unavailable)?;
        Ok(Member {
            user_id,
            email,
            role: role(&r)?,
        })
    })
    .collect()
}

pub(crate) fn memberships(conn: &Connection, user_id: &str) -> Result<Vec<(String, Role)>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT o.slug, m.role FROM members m JOIN orgs o ON o.id = m.org \
             WHERE m.user_id = ?1 ORDER BY m.joined_at, o.id",
        )
        .map_err(unavailable)?;
    let rows = stmt
        .query_map([user_id], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })
        .map_err(unavailable)?;
    rows.map(|r| {
        let (org, r) = r.map_err(unavailable)?;
        Ok((org, role(&r)?))
    })
    .collect()
}

pub(crate) fn instances(conn: &Connection, org: &str) -> Result<Vec<Instance>> {
    let org_id = org_id(conn, org)?;
    let mut stmt = conn
        .prepare_cached(
            "SELECT id, name, kind, created_at FROM instances WHERE org = ?1 ORDER BY id",
        )
        .map_err(unavailable)?;
    let rows = stmt
        .query_map([org_id], |r| {
            Ok(Instance {
                org: org.to_owned(),
                id: r.get(0)?,
                name: r.get(1)?,
                kind: r.get(2)?,
                created_at: Timestamp(r.get(3)?),
            })
        })
        .map_err(unavailable)?;
    rows.collect::<rusqlite::Result<_>>().map_err(unavailable)
}

pub(crate) fn session(conn: &Connection, id: &str) -> Result<Option<Session>> {
    let row = conn
        .prepare_cached(
            "SELECT user_id, secret_hash, created_at, last_seen_at, expires_at, ended_at, \
             token_id FROM sessions WHERE id = ?1",
        )
        .and_then(|mut s| {
            s.query_row([id], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Vec<u8>>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, Option<i64>>(5)?,
                    r.get::<_, Option<String>>(6)?,
                ))
            })
            .optional()
        })
        .map_err(unavailable)?;
    let Some((user_id, hash, created, seen, expires, ended, token_id)) = row else {
        return Ok(None);
    };
    Ok(Some(Session {
        id: id.to_owned(),
        user_id,
        secret_hash: hash
            .try_into()
            .map_err(|_| StoreError::Corrupt(format!("session {id}: bad secret hash")))?,
        created_at: Timestamp(created),
        last_seen_at: Timestamp(seen),
        expires_at: Timestamp(expires),
        ended_at: ended.map(Timestamp),
        token_id,
    }))
}

pub(crate) fn meta(conn: &Connection, key: &str) -> Result<Option<String>> {
    conn.prepare_cached("SELECT value FROM meta WHERE key = ?1")
        .and_then(|mut s| s.query_row([key], |r| r.get(0)).optional())
        .map_err(unavailable)
}

/// Everything but the logs and the sessions, in the order it was made (see
/// [`crate::Store::identity`]). The store's own bookkeeping in `meta` stays.
pub(crate) fn identity(conn: &Connection) -> Result<crate::Identity> {
    fn all<T>(
        conn: &Connection,
        sql: &str,
        row: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>> {
        let mut stmt = conn.prepare(sql).map_err(unavailable)?;
        let rows = stmt.query_map([], row).map_err(unavailable)?;
        rows.collect::<rusqlite::Result<_>>().map_err(unavailable)
    }
    let settings = all(
        conn,
        "SELECT key, value FROM meta WHERE key NOT IN ('next_org_id', 'write_probe') ORDER BY key",
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let orgs = all(
        conn,
        "SELECT slug, name, created_at, retention_days, legal_hold, pruned_below FROM orgs \
         ORDER BY id",
        |r| {
            Ok((
                crate::Org {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    created_at: Timestamp(r.get(2)?),
                },
                crate::Retention {
                    days: r.get::<_, Option<i64>>(3)?.map(|d| d as u32),
                    legal_hold: r.get(4)?,
                    pruned_below: r.get::<_, i64>(5)? as u64,
                },
            ))
        },
    )?;
    let users = all(
        conn,
        &format!("SELECT {USER_COLUMNS} FROM users ORDER BY created_at, id"),
        user_from_row,
    )?;
    let members = all(
        conn,
        "SELECT o.slug, m.user_id, m.role FROM members m JOIN orgs o ON o.id = m.org \
         ORDER BY m.joined_at, o.id, m.user_id",
        |r| Ok((r.get::<_, String>(0)?, r.get(1)?, r.get::<_, String>(2)?)),
    )?
    .into_iter()
    .map(|(org, user, r)| Ok((org, user, role(&r)?)))
    .collect::<Result<_>>()?;
    let instances = all(
        conn,
        "SELECT o.slug, i.id, i.name, i.kind, i.created_at FROM instances i \
         JOIN orgs o ON o.id = i.org ORDER BY i.created_at, o.id, i.id",
        |r| {
            Ok(Instance {
                org: r.get(0)?,
                id: r.get(1)?,
                name: r.get(2)?,
                kind: r.get(3)?,
                created_at: Timestamp(r.get(4)?),
            })
        },
    )?;
    let tokens = all(
        conn,
        &format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens t JOIN orgs o ON o.id = t.org \
             ORDER BY t.created_at, t.id"
        ),
        token_from_row,
    )?
    .into_iter()
    .collect::<Result<_>>()?;
    Ok(crate::Identity {
        settings,
        orgs,
        users,
        members,
        instances,
        tokens,
    })
}

/// The stored tiles of the org's first `below` seqs (see [`crate::Store::tiles_below`]).
pub(crate) fn tiles_below(
    conn: &Connection,
    org: &str,
    below: u64,
) -> Result<Vec<(u32, u64, [u8; 32])>> {
    let org_id = org_id(conn, org)?;
    let mut stmt = conn
        .prepare(
            "SELECT level, idx, hash FROM tiles WHERE org = ?1 AND ((idx + 1) << level) <= ?2 \
             ORDER BY level, idx",
        )
        .map_err(unavailable)?;
    let rows = stmt
        .query_map(rusqlite::params![org_id, below as i64], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, Vec<u8>>(2)?,
            ))
        })
        .map_err(unavailable)?;
    rows.map(|r| {
        let (level, idx, hash) = r.map_err(unavailable)?;
        let hash = hash.try_into().map_err(|_| {
            StoreError::Corrupt(format!("tile {idx} of level {level} of org {org:?}"))
        })?;
        Ok((level as u32, idx as u64, hash))
    })
    .collect()
}
