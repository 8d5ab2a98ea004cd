//! Block summaries and postings: what lets a filter on a field read only the parts of a log
//! where its value occurs, without an index of `events` that every append must write into.
//!
//! Every [`BLOCK`] seqs of an org's log form a block. The transaction that completes a block
//! writes, for it:
//! - in `blocks`, the least and greatest `timestamp` in it and the greatest of this block and
//!   every earlier one;
//! - in `block_filters`, a split-block Bloom filter (the layout of Apache Parquet's) of every
//!   value its events hold in the [`COLUMNS`], the fields filtered on rarely. A filter has no
//!   false negatives: a block it rules out holds no event with the value;
//! - postings: for each value its events hold in the [`POSTED`] columns (the fields filtered
//!   on most: actor, action, route, instance, object name, token id), exactly which of its
//!   seqs hold it, and, where they are few, when each of those events happened, coarsely
//!   ([`coarse`]).
//!
//! A block's postings are one row per distinct value in the block, where an index of
//! `events` on those five fields cost five entries per event (measured in BENCHMARKS.md).
//! Where those rows go matters as much: in `postings`, keyed by value and then block so
//! that a value's postings, newest block first, are one range of the key, each of a block's
//! hundreds of values lands on a page of its own, and every page a commit changes is written
//! to the WAL and again to the database. So a block's postings are first written to
//! `postings_hot`, keyed by [`slice`] (one of [`HOT_SLICES`] slices of the values) and then
//! block: a few pages per slice. Each seal then moves one slice's postings of the blocks
//! before it into `postings`, sorted by value, so that each value there gets the postings of
//! up to [`HOT_SLICES`] blocks in one page write, with the greatest timestamp of its events
//! so far ([`settle`]). A value's postings in `postings_hot` are all newer than its postings
//! in `postings`, and a reader reads both as one sequence ([`Stream`]).
//!
//! [`Probe`] is what a query's terms ask of a block. The readers in `read.rs` walk an org's
//! blocks newest first: those a probe's postings name (with the seqs that match), those its
//! Bloom filters do not rule out, or every block when it has no term on those fields, and
//! first the newest, incomplete block, which has no summary yet. They skip the blocks whose
//! times fall outside their window and stop once no block left can hold an event newer than
//! the last one their page needs. `events` has no index by time: the block summaries are how
//! any read finds an org's events by time.
//!
//! The summaries and postings are written in the same transaction as the events that
//! complete a block (and by the migrations that introduced them, for the blocks already
//! stored), so every complete block of a log up to its newest summarised one has them; the
//! readers rely on that.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};

use rusqlite::types::{Value as Sql, ValueRef};
use rusqlite::{Connection, OptionalExtension, params};
use trail_core::query::{Field, Filter};

use super::batch::{Batch, Statements};
use super::{SEQ_BITS, unavailable};
use crate::Result;

/// A block is `1 << BLOCK_BITS` seqs.
pub(crate) const BLOCK_BITS: u32 = 10;
pub(crate) const BLOCK: u64 = 1 << BLOCK_BITS;

/// The columns of `events` whose values a block's filter holds: the filterable fields that
/// no index covers. A value's key is the hash of its column's position here and its stored
/// form (a dictionary id, an address's bytes, a code), so none of it may be reordered.
pub(crate) const COLUMNS: [&str; 8] = [
    "ip", "tok", "cat", "otype", "okind", "method", "atype", "atname",
];

/// The columns of `events` whose values a block's postings list, by position: a posting's
/// `col` is the position of its column here, so none of it may be reordered. `tok` came
/// later (schema version 18): the postings of the first five were written for the blocks
/// stored before version 12 by one step, those of `tok` by another.
pub(crate) const POSTED: [&str; 6] = ["actor", "action", "route", "inst", "oname", "tok"];

/// How many slices `postings_hot` is cut into: a slice's postings move into `postings` every
/// this many seals of its org's blocks, so it holds those of at most this many blocks.
pub(crate) const HOT_SLICES: i64 = 32;

/// The slice of `postings_hot` that (column, value)'s postings are written to: values are
/// dictionary ids, given in turn, so their low bits spread them evenly. Stored in each row,
/// looked for by readers and computed by a trigger (`postings_no_replace`, schema version
/// 14) in SQL as `(value + 7 * col) & 31`, so it may never change.
fn slice(col: usize, value: i64) -> i64 {
    (value.wrapping_add(7 * col as i64)) & (HOT_SLICES - 1)
}

/// The inserts of hot postings, and of settled postings with and without times.
static HOT_INSERTS: std::sync::LazyLock<Statements> = std::sync::LazyLock::new(|| {
    Statements::new("postings_hot (slice, id, col, value, seqs, top, times)", 7)
});
static SETTLED_INSERTS: std::sync::LazyLock<Statements> = std::sync::LazyLock::new(|| {
    Statements::new("postings (col, value, id, seqs, before, times)", 6)
});
static UNTIMED_INSERTS: std::sync::LazyLock<Statements> =
    std::sync::LazyLock::new(|| Statements::new("postings (col, value, id, seqs, before)", 5));

/// Filter bits per distinct value: about 0.5% false positives.
const BITS_PER_VALUE: usize = 12;

/// The id of a block's rows: its org and its number, as `events.k` is of an event.
pub(crate) fn block_id(org_id: i64, block: u64) -> i64 {
    (org_id << (SEQ_BITS - BLOCK_BITS)) | block as i64
}

/// The id of the first block of the org of block id `id`.
fn org_first(id: i64) -> i64 {
    block_id(id >> (SEQ_BITS - BLOCK_BITS), 0)
}

/// A stored value's key in a filter.
fn key(column: usize, v: ValueRef<'_>) -> Option<u64> {
    let (tag, int, bytes): (u64, [u8; 8], &[u8]) = match v {
        ValueRef::Null => return None,
        ValueRef::Integer(i) => (0, i.to_le_bytes(), &[]),
        ValueRef::Real(r) => (1, r.to_le_bytes(), &[]),
        ValueRef::Text(t) => (2, [0; 8], t),
        ValueRef::Blob(b) => (3, [0; 8], b),
    };
    let seed = column as u64 * 4 + tag;
    Some(if tag < 2 {
        twox_hash::XxHash3_64::oneshot_with_seed(seed, &int)
    } else {
        twox_hash::XxHash3_64::oneshot_with_seed(seed, bytes)
    })
}

/// The split-block Bloom filter: 256-bit blocks of eight 32-bit words; a key sets one bit in
/// each word of the block its upper half picks, the bits chosen by multiplying its lower half
/// by eight odd constants (Apache Parquet's, so the filters are those of a known format).
mod bloom {
    const SALT: [u32; 8] = [
        0x47b6_137b,
        0x4497_4d91,
        0x8824_ad5b,
        0xa2b7_289d,
        0x7054_95c7,
        0x2df1_424b,
        0x9efc_4947,
        0x5c6b_fb31,
    ];
    const BLOCK_BYTES: usize = 32;

    fn mask(key: u64) -> [u32; 8] {
        let low = key as u32;
        SALT.map(|s| 1u32 << (low.wrapping_mul(s) >> 27))
    }

    fn block_of(key: u64, blocks: usize) -> usize {
        (((key >> 32) * blocks as u64) >> 32) as usize
    }

    /// A filter of `keys` (distinct), of about `bits_per_key` bits each.
    pub fn build(keys: &[u64], bits_per_key: usize) -> Vec<u8> {
        let blocks = (keys.len() * bits_per_key).div_ceil(BLOCK_BYTES * 8).max(1);
        let mut words = vec![0u32; blocks * 8];
        for &k in keys {
            let b = block_of(k, blocks);
            for (w, m) in words[b * 8..b * 8 + 8].iter_mut().zip(mask(k)) {
                *w |= m;
            }
        }
        words.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    /// Whether `filter` may hold `key`: false only if it surely does not. A filter that is
    /// not a whole number of blocks rules nothing out.
    pub fn may_hold(filter: &[u8], key: u64) -> bool {
        let blocks = filter.len() / BLOCK_BYTES;
        if blocks == 0 || !filter.len().is_multiple_of(BLOCK_BYTES) {
            return true;
        }
        let b = block_of(key, blocks);
        filter[b * BLOCK_BYTES..(b + 1) * BLOCK_BYTES]
            .chunks_exact(4)
            .zip(mask(key))
            .all(|(w, m)| u32::from_le_bytes(w.try_into().expect("4 bytes")) & m == m)
    }
}

/// A block's seqs that hold one value, as offsets from the block's first seq: fewer than
/// [`DENSE`](positions::DENSE) of them as their little-endian `u16`s in order, else a bitmap
/// of the block (bit `i % 8` of byte `i / 8` for offset `i`). The two never have the same
/// length, so the bytes say which they are.
pub(crate) mod positions {
    use super::BLOCK;

    /// From this many offsets on, the bitmap is the shorter.
    pub const DENSE: usize = BLOCK as usize / 16;
    const BITMAP: usize = BLOCK as usize / 8;

    /// `offsets` in increasing order, each less than [`BLOCK`].
    pub fn encode(offsets: &[u16]) -> Vec<u8> {
        if offsets.len() < DENSE {
            offsets.iter().flat_map(|o| o.to_le_bytes()).collect()
        } else {
            let mut bits = vec![0u8; BITMAP];
            for &o in offsets {
                bits[usize::from(o) / 8] |= 1 << (o % 8);
            }
            bits
        }
    }

    /// The offsets, in increasing order; `None` for bytes that [`encode`] does not give.
    pub fn decode(bytes: &[u8]) -> Option<Vec<u16>> {
        if bytes.len() == BITMAP {
            let mut out = Vec::new();
            for (i, &byte) in bytes.iter().enumerate() {
                let mut b = byte;
                while b != 0 {
                    out.push((i * 8) as u16 + b.trailing_zeros() as u16);
                    b &= b - 1;
                }
            }
            return Some(out);
        }
        if !bytes.len().is_multiple_of(2) || bytes.len() >= 2 * DENSE {
            return None;
        }
        let out: Vec<u16> = bytes
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        let ordered = out.windows(2).all(|w| w[0] < w[1]);
        let inside = out.last().is_none_or(|&o| u64::from(o) < BLOCK);
        (ordered && inside).then_some(out)
    }
}

/// The times of a sparse posting's events, one byte each: which of 256 equal parts of the
/// block's time range (its summary's least and greatest timestamps) an event falls in. A
/// reader that needs only events newer than some time reads only those whose part reaches
/// it, not every event the posting names.
pub(crate) mod coarse {
    /// The part of `[lo, hi]` that `ts` (inside it) falls in.
    pub fn part(ts: i64, lo: i64, hi: i64) -> u8 {
        let width = i128::from(hi) - i128::from(lo) + 1;
        let at = i128::from(ts.clamp(lo, hi)) - i128::from(lo);
        (at * 256 / width.max(1)) as u8
    }

    /// A time every event in part `p` of `[lo, hi]` is older than.
    pub fn older_than(p: u8, lo: i64, hi: i64) -> i64 {
        let width = (i128::from(hi) - i128::from(lo) + 1).max(1);
        let end = i128::from(lo)
            + (i128::from(p) + 1) * width / 256
            + i128::from((i128::from(p) + 1) * width % 256 != 0);
        end.min(i128::from(hi) + 1).min(i128::from(i64::MAX)) as i64
    }
}

/// The postings of one block as they are gathered: each (column, value) with its offsets
/// and their events' timestamps.
#[derive(Default)]
struct Postings(BTreeMap<(usize, i64), Vec<(u16, i64)>>);

impl Postings {
    /// Adds the event at `offset` in its block, stamped `ts`, whose [`POSTED`] columns hold
    /// `posted`. Events are added in seq order.
    fn add(&mut self, offset: u16, ts: i64, posted: &[ValueRef<'_>]) {
        for (c, v) in posted.iter().enumerate() {
            if let ValueRef::Integer(v) = *v {
                self.0.entry((c, v)).or_default().push((offset, ts));
            }
        }
    }

    /// Writes them into `postings_hot` as the postings of block `id`, whose events' times
    /// span `lo..=hi`: each with the greatest timestamp of its value's events here and the
    /// [`coarse`] times of a sparse one's events.
    fn write_hot(self, tx: &Connection, id: i64, within: (i64, i64)) -> rusqlite::Result<()> {
        let mut insert = Batch::new(&HOT_INSERTS);
        for ((col, value), events) in self.0 {
            let (top, offsets) = top_and_offsets(&events);
            let times = sparse_times(&events, &offsets, within);
            insert.push(
                tx,
                [
                    Sql::Integer(slice(col, value)),
                    Sql::Integer(id),
                    Sql::Integer(col as i64),
                    Sql::Integer(value),
                    Sql::Blob(positions::encode(&offsets)),
                    Sql::Integer(top),
                    times,
                ],
            )?;
        }
        insert.flush(tx)
    }

    /// Writes them straight into `postings` as the postings of block `id`, each with the
    /// greatest timestamp of its value's events in this block and every earlier one; with
    /// the [`coarse`] times of a sparse one's events given `within`, the block's time range,
    /// else without times (schema version 12, which had neither times nor `postings_hot`).
    fn write_settled(
        self,
        tx: &Connection,
        id: i64,
        within: Option<(i64, i64)>,
    ) -> rusqlite::Result<()> {
        let mut settled = Settled::new(tx, org_first(id));
        let mut insert = Batch::new(if within.is_some() {
            &SETTLED_INSERTS
        } else {
            &UNTIMED_INSERTS
        });
        for ((col, value), events) in self.0 {
            let (top, offsets) = top_and_offsets(&events);
            // A value's bound is read before any of its postings here is queued.
            let before = settled.before(col as i64, value, id, top)?;
            let mut row = vec![
                Sql::Integer(col as i64),
                Sql::Integer(value),
                Sql::Integer(id),
                Sql::Blob(positions::encode(&offsets)),
                Sql::Integer(before),
            ];
            if let Some(within) = within {
                row.push(sparse_times(&events, &offsets, within));
            }
            insert.push(tx, row)?;
        }
        insert.flush(tx)
    }
}

/// A posting's `times`: the [`coarse`] part of each of its events' timestamps within its
/// block's range `lo..=hi` if it names fewer than [`positions::DENSE`] seqs, else NULL.
fn sparse_times(events: &[(u16, i64)], offsets: &[u16], (lo, hi): (i64, i64)) -> Sql {
    match offsets.len() < positions::DENSE {
        true => Sql::Blob(events.iter().map(|e| coarse::part(e.1, lo, hi)).collect()),
        false => Sql::Null,
    }
}

/// The greatest timestamp of a value's events in a block, and their offsets.
fn top_and_offsets(events: &[(u16, i64)]) -> (i64, Vec<u16>) {
    let top = events.iter().map(|e| e.1).max().unwrap_or(i64::MIN);
    (top, events.iter().map(|e| e.0).collect())
}

/// The running bound a posting in `postings` carries: the greatest timestamp of its value's
/// events in its block and every earlier one of the log.
struct Settled<'c> {
    tx: &'c Connection,
    /// Where the org's block ids start.
    first: i64,
    /// The value last asked about, and its bound so far.
    last: Option<(i64, i64, i64)>,
}

impl<'c> Settled<'c> {
    fn new(tx: &'c Connection, first: i64) -> Settled<'c> {
        Settled {
            tx,
            first,
            last: None,
        }
    }

    /// The bound of (col, value)'s posting in block `id`, whose events' greatest timestamp
    /// is `top`. Asked of one value's postings in block order, it reads `postings` only for
    /// the first.
    fn before(&mut self, col: i64, value: i64, id: i64, top: i64) -> rusqlite::Result<i64> {
        let before = match self.last {
            Some((c, v, before)) if (c, v) == (col, value) => before.max(top),
            _ => settled_bound(self.tx, col, value, self.first, id)?.map_or(top, |b| b.max(top)),
        };
        self.last = Some((col, value, before));
        Ok(before)
    }
}

/// Moves slice `slice` of `org_id`'s postings in `postings_hot` from the blocks before block
/// id `below` into `postings`, in key order, each with its running bound.
fn settle(tx: &Connection, org_id: i64, slice: i64, below: i64) -> rusqlite::Result<()> {
    type Hot = (i64, i64, i64, Vec<u8>, i64, Option<Vec<u8>>);
    let first = block_id(org_id, 0);
    let mut hot: Vec<Hot> = tx
        .prepare_cached(
            "SELECT col, value, id, seqs, top, times FROM postings_hot \
             WHERE slice = ?1 AND id >= ?2 AND id < ?3",
        )?
        .query_map(params![slice, first, below], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })?
        .collect::<rusqlite::Result<_>>()?;
    if hot.is_empty() {
        return Ok(());
    }
    hot.sort_unstable_by_key(|h| (h.0, h.1, h.2));
    let mut settled = Settled::new(tx, first);
    let mut insert = Batch::new(&SETTLED_INSERTS);
    for (col, value, id, seqs, top, times) in hot {
        // Read before any of the value's postings is queued: those queued are of values
        // before it.
        let before = settled.before(col, value, id, top)?;
        insert.push(
            tx,
            [
                Sql::Integer(col),
                Sql::Integer(value),
                Sql::Integer(id),
                Sql::Blob(seqs),
                Sql::Integer(before),
                times.map_or(Sql::Null, Sql::Blob),
            ],
        )?;
    }
    // The hot postings may go only once `postings` holds them.
    insert.flush(tx)?;
    tx.prepare_cached("DELETE FROM postings_hot WHERE slice = ?1 AND id >= ?2 AND id < ?3")?
        .execute(params![slice, first, below])?;
    Ok(())
}

/// Writes the summary and, with `post`, the postings and times (`block_times`) of
/// `org_id`'s block `block`, whose events are all stored. A block left without events
/// (pruned whole) gets none.
fn seal(tx: &Connection, org_id: i64, block: u64, post: bool) -> rusqlite::Result<()> {
    let first = (org_id << SEQ_BITS) | (block << BLOCK_BITS) as i64;
    let mut stmt = tx.prepare_cached(&format!(
        "SELECT k, ts, {}, {} FROM events WHERE k >= ?1 AND k < ?2 ORDER BY k",
        COLUMNS.join(", "),
        POSTED.join(", ")
    ))?;
    let mut rows = stmt.query(params![first, first + BLOCK as i64])?;
    let (mut min_ts, mut max_ts) = (i64::MAX, i64::MIN);
    let mut keys = HashSet::new();
    let mut postings = Postings::default();
    let mut times = Vec::with_capacity(BLOCK as usize);
    while let Some(row) = rows.next()? {
        let offset = (row.get::<_, i64>(0)? - first) as u16;
        let ts: i64 = row.get(1)?;
        times.push((offset, ts));
        min_ts = min_ts.min(ts);
        max_ts = max_ts.max(ts);
        for c in 0..COLUMNS.len() {
            keys.extend(key(c, row.get_ref(c + 2)?));
        }
        let mut posted = [ValueRef::Null; POSTED.len()];
        for (c, v) in posted.iter_mut().enumerate() {
            *v = row.get_ref(2 + COLUMNS.len() + c)?;
        }
        postings.add(offset, ts, &posted);
    }
    if min_ts > max_ts {
        return Ok(());
    }
    let id = block_id(org_id, block);
    let before: Option<i64> = tx
        .prepare_cached("SELECT max_ts_before FROM blocks WHERE id = ?1 AND block + 1 = ?2")?
        .query_row(params![id - 1, block as i64], |r| r.get(0))
        .optional()?;
    tx.prepare_cached(
        "INSERT OR FAIL INTO blocks (id, org, block, min_ts, max_ts, max_ts_before) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        id,
        org_id,
        block as i64,
        min_ts,
        max_ts,
        before.map_or(max_ts, |b| b.max(max_ts))
    ])?;
    let keys: Vec<u64> = keys.into_iter().collect();
    tx.prepare_cached("INSERT OR FAIL INTO block_filters (id, filter) VALUES (?1, ?2)")?
        .execute(params![id, bloom::build(&keys, BITS_PER_VALUE)])?;
    if post {
        postings.write_hot(tx, id, (min_ts, max_ts))?;
        settle(tx, org_id, block as i64 % HOT_SLICES, id)?;
        write_times(tx, id, &times, (min_ts, max_ts))?;
    }
    Ok(())
}

/// Writes the row of `block_times` of block `id` from its events' offsets and timestamps;
/// `(lo, hi)` are their least and greatest timestamps. An offset without an event (pruned
/// before the block was sealed) gets the newest part, which never rules it out.
fn write_times(
    tx: &Connection,
    id: i64,
    events: &[(u16, i64)],
    (lo, hi): (i64, i64),
) -> rusqlite::Result<()> {
    let mut parts = vec![u8::MAX; BLOCK as usize];
    for &(offset, ts) in events {
        parts[usize::from(offset)] = coarse::part(ts, lo, hi);
    }
    tx.prepare_cached("INSERT OR FAIL INTO block_times (id, parts) VALUES (?1, ?2)")?
        .execute(params![id, parts])?;
    Ok(())
}

/// The `block_times` of every block already summarised (the migration that adds them),
/// read from its events as [`seal`] reads them.
pub(crate) fn time_all(tx: &Connection) -> rusqlite::Result<()> {
    let blocks: Vec<(i64, i64, i64, i64, i64)> = tx
        .prepare("SELECT id, org, block, min_ts, max_ts FROM blocks ORDER BY id")?
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut stmt = tx.prepare("SELECT k, ts FROM events WHERE k >= ?1 AND k < ?2")?;
    for (id, org_id, block, lo, hi) in blocks {
        let first = (org_id << SEQ_BITS) | (block << BLOCK_BITS);
        let events = stmt
            .query_map(params![first, first + BLOCK as i64], |r| {
                Ok(((r.get::<_, i64>(0)? - first) as u16, r.get(1)?))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        write_times(tx, id, &events, (lo, hi))?;
    }
    Ok(())
}

/// Seals every complete block of `org_id`'s log, now `size` seqs long, that has no summary
/// yet: from the one after the newest summarised (or where the log was pruned to), so a
/// block completed by rows some other way (a tool on the database) is not left without.
pub(crate) fn seal_completed(tx: &Connection, org_id: i64, size: u64) -> rusqlite::Result<()> {
    seal_completed_as(tx, org_id, size, true)
}

/// [`seal_completed`], writing postings and times or not (the migration that made the
/// summaries, before the schema had either).
fn seal_completed_as(tx: &Connection, org_id: i64, size: u64, post: bool) -> rusqlite::Result<()> {
    let end = size >> BLOCK_BITS;
    let newest: Option<i64> = tx
        .prepare_cached("SELECT max(id) FROM blocks WHERE id >= ?1 AND id < ?2")?
        .query_row(params![block_id(org_id, 0), block_id(org_id + 1, 0)], |r| {
            r.get(0)
        })?;
    let next = match newest {
        Some(id) => (id - block_id(org_id, 0)) as u64 + 1,
        None => {
            let pruned: i64 = tx
                .prepare_cached("SELECT pruned_below FROM orgs WHERE id = ?1")?
                .query_row([org_id], |r| r.get(0))?;
            pruned as u64 >> BLOCK_BITS
        }
    };
    for block in next..end {
        seal(tx, org_id, block, post)?;
    }
    Ok(())
}

/// Summaries for every complete block already stored (the migration that adds them, to a
/// schema without postings: [`post_all`] adds theirs).
pub(crate) fn seal_all(tx: &Connection) -> rusqlite::Result<()> {
    let orgs: Vec<i64> = tx
        .prepare("SELECT id FROM orgs")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for org_id in orgs {
        let last: Option<i64> = tx.query_row(
            "SELECT max(k) FROM events WHERE k >= ?1 AND k <= ?2",
            params![org_id << SEQ_BITS, (org_id << SEQ_BITS) | super::SEQ_MASK],
            |r| r.get(0),
        )?;
        if let Some(last) = last {
            let size = (last & super::SEQ_MASK) as u64 + 1;
            seal_completed_as(tx, org_id, size, false)?;
        }
    }
    Ok(())
}

/// Deletes what a prune of `org_id`'s seqs `from..below` leaves without events: the
/// summaries of the blocks it empties, and in each block it touches, the postings of the
/// values that no event left in the block holds. Called under the prune's permit, before
/// its events are deleted. (A block it leaves in part keeps the postings of the values its
/// remaining events hold, which may also name pruned seqs: readers look at none below the
/// log's floor.)
pub(crate) fn forget(tx: &Connection, org_id: i64, from: u64, below: u64) -> rusqlite::Result<()> {
    let base = org_id << SEQ_BITS;
    let end = below.div_ceil(BLOCK) * BLOCK;
    let mut gone: BTreeSet<(usize, i64, i64)> = BTreeSet::new();
    let mut kept: HashSet<(usize, i64)> = HashSet::new();
    let mut stmt = tx.prepare_cached(&format!(
        "SELECT k, {} FROM events WHERE k >= ?1 AND k < ?2",
        POSTED.join(", ")
    ))?;
    let mut rows = stmt.query(params![base | from as i64, base | end as i64])?;
    while let Some(row) = rows.next()? {
        let seq = (row.get::<_, i64>(0)? & super::SEQ_MASK) as u64;
        for c in 0..POSTED.len() {
            if let ValueRef::Integer(v) = row.get_ref(c + 1)? {
                if seq < below {
                    gone.insert((c, v, block_id(org_id, seq >> BLOCK_BITS)));
                } else {
                    kept.insert((c, v));
                }
            }
        }
    }
    let partial = (!below.is_multiple_of(BLOCK)).then(|| block_id(org_id, below >> BLOCK_BITS));
    let mut delete =
        tx.prepare_cached("DELETE FROM postings WHERE col = ?1 AND value = ?2 AND id = ?3")?;
    let mut delete_hot = tx.prepare_cached(
        "DELETE FROM postings_hot WHERE slice = ?1 AND id = ?2 AND col = ?3 AND value = ?4",
    )?;
    for (c, v, id) in gone {
        if Some(id) != partial || !kept.contains(&(c, v)) {
            delete.execute(params![c as i64, v, id])?;
            delete_hot.execute(params![slice(c, v), id, c as i64, v])?;
        }
    }
    let (first, emptied) = (block_id(org_id, 0), block_id(org_id, below >> BLOCK_BITS));
    for table in ["block_filters", "block_times", "blocks"] {
        tx.execute(
            &format!("DELETE FROM {table} WHERE id >= ?1 AND id < ?2"),
            params![first, emptied],
        )?;
    }
    Ok(())
}

/// The postings of the [`POSTED`] columns `cols` of every block already summarised (the
/// migrations that add them), read from its events as [`seal`] reads them: written settled,
/// with times given `timed`.
pub(crate) fn post_all(
    tx: &Connection,
    cols: std::ops::Range<usize>,
    timed: bool,
) -> rusqlite::Result<()> {
    let blocks: Vec<(i64, i64, i64, i64, i64)> = tx
        .prepare("SELECT id, org, block, min_ts, max_ts FROM blocks ORDER BY id")?
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut stmt = tx.prepare(&format!(
        "SELECT k, ts, {} FROM events WHERE k >= ?1 AND k < ?2 ORDER BY k",
        POSTED[cols.clone()].join(", ")
    ))?;
    for (id, org_id, block, lo, hi) in blocks {
        let first = (org_id << SEQ_BITS) | (block << BLOCK_BITS);
        let mut rows = stmt.query(params![first, first + BLOCK as i64])?;
        let mut postings = Postings::default();
        while let Some(row) = rows.next()? {
            let offset = (row.get::<_, i64>(0)? - first) as u16;
            let mut posted = [ValueRef::Null; POSTED.len()];
            for (i, c) in cols.clone().enumerate() {
                posted[c] = row.get_ref(2 + i)?;
            }
            postings.add(offset, row.get(1)?, &posted);
        }
        postings.write_settled(tx, id, timed.then_some((lo, hi)))?;
    }
    Ok(())
}

/// The oldest timestamp of `org_id`'s events at seqs `floor..size`, read from the summaries
/// of the whole blocks among them and from the events of the rest (the part of a block above
/// `floor`, the blocks not summarised yet), so that it costs at most two blocks of events
/// however long the log.
pub(crate) fn oldest(
    conn: &Connection,
    org_id: i64,
    floor: u64,
    size: u64,
) -> rusqlite::Result<Option<i64>> {
    let base = org_id << SEQ_BITS;
    let events = |from: u64, to: u64| -> rusqlite::Result<Option<i64>> {
        if from >= to {
            return Ok(None);
        }
        conn.prepare_cached("SELECT min(ts) FROM events WHERE k >= ?1 AND k < ?2")?
            .query_row(params![base | from as i64, base | to as i64], |r| r.get(0))
    };
    let first_whole = floor.div_ceil(BLOCK);
    let head_end = (first_whole << BLOCK_BITS).min(size);
    let (newest, summarised): (Option<i64>, Option<i64>) = conn
        .prepare_cached("SELECT max(id), min(min_ts) FROM blocks WHERE id >= ?1 AND id < ?2")?
        .query_row(
            params![
                block_id(org_id, first_whole),
                block_id(org_id, size >> BLOCK_BITS)
            ],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
    let tail = newest.map_or(head_end, |id| {
        ((id - org_first(id) + 1) as u64) << BLOCK_BITS
    });
    Ok([
        events(floor, head_end)?,
        summarised,
        events(tail.max(head_end), size)?,
    ]
    .into_iter()
    .flatten()
    .min())
}

/// What a filter's terms ask of a block.
pub(crate) enum Probe {
    /// Terms on [`POSTED`] fields: for each group (the groups `AND` together), the (column,
    /// value) pairs of which an event must hold one; and the groups of keys of the terms on
    /// summarised fields, as in [`Probe::Filtered`], which rule out a block its postings
    /// name. `exact` when the posted terms are all the filter's terms: then a block's
    /// postings alone count its events that pass.
    Posted {
        groups: Vec<Vec<(usize, i64)>>,
        filtered: Vec<Vec<u64>>,
        exact: bool,
    },
    /// Terms on summarised fields and none on a posted one: for each group, the keys of
    /// which one must be in a block's filter.
    Filtered(Vec<Vec<u64>>),
    /// No term on a posted or summarised field: every block may hold events that pass, and
    /// its time bounds alone rule it out. `exact` when the filter has no terms at all: then
    /// every event of a block passes (within its time window).
    Every { exact: bool },
}

impl Probe {
    /// `resolved` gives the column and the stored values of one matcher, as the query's SQL
    /// compares them (`None` for a range, which neither postings nor filters answer).
    pub(crate) fn of(
        f: &Filter,
        mut resolved: impl FnMut(
            Field,
            &trail_core::query::Matcher,
        ) -> Result<Option<(&'static str, Vec<Sql>)>>,
    ) -> Result<Probe> {
        let (groups, negated) = f.grouped();
        let all = groups.len();
        let (mut posted, mut filtered) = (Vec::new(), Vec::new());
        'group: for (field, matchers) in groups {
            let (mut pairs, mut keys) = (Vec::new(), Vec::new());
            for m in matchers {
                let Some((col, values)) = resolved(field, m)? else {
                    continue 'group;
                };
                if let Some(c) = POSTED.iter().position(|x| *x == col) {
                    for v in values {
                        let Sql::Integer(v) = v else { continue 'group };
                        pairs.push((c, v));
                    }
                } else if let Some(c) = COLUMNS.iter().position(|x| *x == col) {
                    keys.extend(values.iter().filter_map(|v| key(c, ValueRef::from(v))));
                } else {
                    continue 'group;
                }
            }
            match (pairs.is_empty(), keys.is_empty()) {
                (false, true) => posted.push(pairs),
                (true, false) => filtered.push(keys),
                _ => {}
            }
        }
        let exact = negated.is_empty() && posted.len() == all;
        Ok(if !posted.is_empty() {
            Probe::Posted {
                groups: posted,
                filtered,
                exact,
            }
        } else if !filtered.is_empty() {
            Probe::Filtered(filtered)
        } else {
            Probe::Every {
                exact: exact && all == 0,
            }
        })
    }

    /// How many of the events of a look this probe's walk gave pass the filter's terms,
    /// where the walk alone says: the seqs the postings name when they are all the terms,
    /// every seq of the look when there are none. Its time window is still to check.
    pub(crate) fn passing(&self, look: &Look) -> Option<u64> {
        match (self, &look.seqs) {
            (Probe::Posted { exact: true, .. }, Some(seqs)) => Some(seqs.len() as u64),
            (Probe::Every { exact: true }, None) => Some(look.span.last + 1 - look.span.first),
            _ => None,
        }
    }
}

/// A run of seqs whose events a reader must look at.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Span {
    pub first: u64,
    pub last: u64,
}

/// What a walk gives a reader to look at: a run of seqs and, where postings say which of
/// them hold the probe's values, those (in increasing order), and the times and id of the
/// block where it has a summary.
pub(crate) struct Look {
    pub span: Span,
    pub seqs: Option<Vec<u64>>,
    /// For each of `seqs`, a time its event is older than (`i64::MAX` where the postings do
    /// not say); empty without `seqs`.
    pub older_than: Vec<i64>,
    pub times: Option<(i64, i64)>,
    /// The summarised block's id, whose `block_times` a reader narrowing the look by time
    /// reads ([`Look::drop_older_than`]).
    pub block: Option<i64>,
}

impl Look {
    /// Every seq of `first..=last`.
    pub(crate) fn whole(first: u64, last: u64) -> Look {
        Look {
            span: Span { first, last },
            seqs: None,
            older_than: Vec::new(),
            times: None,
            block: None,
        }
    }

    /// Leaves out the seqs whose events are older than `t`, as far as the postings' times
    /// say, and where they do not (or the look has no postings), the block's times: read
    /// from `block_times` only then. A look with neither keeps every seq.
    pub(crate) fn drop_older_than(&mut self, conn: &Connection, t: i64) -> Result<()> {
        let untimed = self
            .seqs
            .as_ref()
            .is_none_or(|_| self.older_than.contains(&i64::MAX));
        if let (true, Some(id), Some((lo, hi))) = (untimed, self.block, self.times)
            && let Some(parts) = block_times(conn, id)?
        {
            let start = self.span.last + 1 - BLOCK;
            let older = |seq: u64| coarse::older_than(parts[(seq - start) as usize], lo, hi);
            match &self.seqs {
                Some(seqs) => {
                    for (o, &seq) in self.older_than.iter_mut().zip(seqs) {
                        *o = (*o).min(older(seq));
                    }
                }
                None => {
                    let seqs: Vec<u64> = (self.span.first..=self.span.last).collect();
                    self.older_than = seqs.iter().map(|&s| older(s)).collect();
                    self.seqs = Some(seqs);
                }
            }
        }
        if let Some(seqs) = &mut self.seqs {
            let (kept, older_than) = seqs
                .iter()
                .zip(&self.older_than)
                .filter(|(_, o)| **o > t)
                .map(|(s, o)| (*s, *o))
                .unzip();
            *seqs = kept;
            self.older_than = older_than;
        }
        Ok(())
    }
}

/// The coarse times of block `id`'s events ([`coarse`]), one per seq of the block; `None`
/// for a block sealed without them, or whose row does not read as them.
fn block_times(conn: &Connection, id: i64) -> Result<Option<Vec<u8>>> {
    let parts: Option<Vec<u8>> = conn
        .prepare_cached("SELECT parts FROM block_times WHERE id = ?1")
        .and_then(|mut st| st.query_row([id], |r| r.get(0)).optional())
        .map_err(unavailable)?;
    Ok(parts.filter(|p| p.len() == BLOCK as usize))
}

/// Walks `org_id`'s log newest first (its seqs `floor..size`), giving `visit` the newest
/// blocks that have no summary yet and then each block that `probe` does not rule out.
/// `bounds` is asked before each summarised block, given its least and greatest timestamps
/// and the greatest of it and every earlier block, and says whether to look at the block,
/// skip it, or stop.
pub(crate) fn walk(
    conn: &Connection,
    org_id: i64,
    floor: u64,
    size: u64,
    probe: &Probe,
    bounds: impl FnMut(i64, i64, i64) -> Step,
    visit: impl FnMut(Look) -> Result<()>,
) -> Result<()> {
    match probe {
        Probe::Posted {
            groups, filtered, ..
        } => walk_postings(conn, org_id, floor, size, (groups, filtered), bounds, visit),
        Probe::Filtered(groups) => walk_filters(conn, org_id, floor, size, groups, bounds, visit),
        Probe::Every { .. } => walk_filters(conn, org_id, floor, size, &[], bounds, visit),
    }
}

/// Whether a block's Bloom `filter` may hold an event that passes every group of `keys`
/// (one key of each).
fn admits(filter: &[u8], keys: &[Vec<u64>]) -> bool {
    keys.iter()
        .all(|keys| keys.iter().any(|k| bloom::may_hold(filter, *k)))
}

/// [`walk`] through the Bloom filters of every summarised block (through the blocks' time
/// bounds alone, without `groups`).
fn walk_filters(
    conn: &Connection,
    org_id: i64,
    floor: u64,
    size: u64,
    groups: &[Vec<u64>],
    mut bounds: impl FnMut(i64, i64, i64) -> Step,
    mut visit: impl FnMut(Look) -> Result<()>,
) -> Result<()> {
    let sealed = (size >> BLOCK_BITS) << BLOCK_BITS;
    if size > sealed.max(floor) {
        visit(Look::whole(sealed.max(floor), size - 1))?;
    }
    if sealed <= floor {
        return Ok(());
    }
    // With terms, each block's filter is read in the same walk of the table as its
    // summary: at ten million events a read may look at ten thousand blocks, and a query of
    // its own per block cost more than the filters' pages.
    let mut blocks = conn
        .prepare_cached(if groups.is_empty() {
            "SELECT block, min_ts, max_ts, max_ts_before FROM blocks \
             WHERE id >= ?1 AND id < ?2 ORDER BY id DESC"
        } else {
            "SELECT b.block, b.min_ts, b.max_ts, b.max_ts_before, f.filter \
             FROM blocks b LEFT JOIN block_filters f ON f.id = b.id \
             WHERE b.id >= ?1 AND b.id < ?2 ORDER BY b.id DESC"
        })
        .map_err(unavailable)?;
    let mut rows = blocks
        .query(params![
            block_id(org_id, floor >> BLOCK_BITS),
            block_id(org_id, sealed >> BLOCK_BITS)
        ])
        .map_err(unavailable)?;
    // Blocks without a summary (there should be none) are looked at whatever they hold.
    let mut expected = sealed >> BLOCK_BITS;
    let unsummarised =
        |from: u64, to: u64| Look::whole((from << BLOCK_BITS).max(floor), (to << BLOCK_BITS) - 1);
    while let Some(row) = rows.next().map_err(unavailable)? {
        let block = row.get::<_, i64>(0).map_err(unavailable)? as u64;
        if block + 1 < expected {
            visit(unsummarised(block + 1, expected))?;
        }
        expected = block;
        let (min_ts, max_ts, before) = (
            row.get::<_, i64>(1).map_err(unavailable)?,
            row.get::<_, i64>(2).map_err(unavailable)?,
            row.get::<_, i64>(3).map_err(unavailable)?,
        );
        match bounds(min_ts, max_ts, before) {
            Step::Stop => return Ok(()),
            Step::Skip => continue,
            Step::Look => {}
        }
        // A block without a filter (there should be none) is looked at.
        let admitted = groups.is_empty()
            || match row.get_ref(4).map_err(unavailable)? {
                ValueRef::Blob(filter) => admits(filter, groups),
                _ => true,
            };
        if admitted {
            visit(Look {
                span: Span {
                    first: (block << BLOCK_BITS).max(floor),
                    last: ((block + 1) << BLOCK_BITS) - 1,
                },
                seqs: None,
                older_than: Vec::new(),
                times: Some((min_ts, max_ts)),
                block: Some(block_id(org_id, block)),
            })?;
        }
    }
    let first = floor >> BLOCK_BITS;
    if expected > first {
        visit(unsummarised(first, expected))?;
    }
    Ok(())
}

/// One row of `postings`, as a walk reads it.
struct Posting {
    /// The block's id.
    id: i64,
    /// Its [`positions`].
    seqs: Vec<u8>,
    /// The greatest timestamp of the value's events in this block and every earlier one.
    before: i64,
    /// The [`coarse`] times of `seqs`' events, where the posting has them.
    times: Option<Vec<u8>>,
    /// The block has a posting of the value in both tables (only ever by a hand on the
    /// database): neither can be trusted, so the whole block is read.
    doubled: bool,
}

impl Posting {
    fn read(r: &rusqlite::Row<'_>) -> rusqlite::Result<Posting> {
        let times = match r.get_ref(3)? {
            ValueRef::Blob(b) => Some(b.to_vec()),
            _ => None,
        };
        Ok(Posting {
            id: r.get(0)?,
            seqs: r.get(1)?,
            before: r.get(2)?,
            times,
            doubled: false,
        })
    }
}

/// The `before` of (col, value)'s newest posting in `postings` below block id `below`, in
/// the org whose ids start at `first`.
fn settled_bound(
    conn: &Connection,
    col: i64,
    value: i64,
    first: i64,
    below: i64,
) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached(
        "SELECT before FROM postings WHERE col = ?1 AND value = ?2 AND id >= ?3 AND id < ?4 \
         ORDER BY id DESC LIMIT 1",
    )?
    .query_row(params![col, value, first, below], |r| r.get(0))
    .optional()
}

/// One value's postings in a range of block ids, newest first, from `postings_hot` and
/// `postings` as one sequence: its hot postings (at most [`HOT_SLICES`] blocks') all at
/// once, each with the bound its settled postings and the hot ones up to it give, and its
/// settled ones a few at a time (more each time: a page often needs only the newest few).
struct Stream {
    col: i64,
    value: i64,
    lo: i64,
    end: i64,
    /// The hot postings not yet walked past, newest first; `None` until read.
    hot: Option<VecDeque<Posting>>,
    /// Every settled posting of a block id below this not yet read.
    below: i64,
    chunk: i64,
    /// Settled postings read and not yet walked past.
    settled: VecDeque<Posting>,
    done: bool,
    /// The newest posting not yet walked past, once [`Stream::head`] has found it.
    front: Option<Posting>,
}

impl Stream {
    fn new((col, value): (usize, i64), lo: i64, end: i64) -> Stream {
        Stream {
            col: col as i64,
            value,
            lo,
            end,
            hot: None,
            below: end,
            chunk: 8,
            settled: VecDeque::new(),
            done: false,
            front: None,
        }
    }

    /// The block of the newest posting not yet walked past.
    fn head(&mut self, conn: &Connection) -> Result<Option<i64>> {
        if self.front.is_none() {
            self.front = self.next(conn).map_err(unavailable)?;
        }
        Ok(self.front.as_ref().map(|p| p.id))
    }

    /// Walks past the head.
    fn pop(&mut self) -> Option<Posting> {
        self.front.take()
    }

    fn next(&mut self, conn: &Connection) -> rusqlite::Result<Option<Posting>> {
        if self.hot.is_none() {
            self.hot = Some(self.read_hot(conn)?);
        }
        if self.settled.is_empty() && !self.done {
            self.read_settled(conn)?;
        }
        let hot = self.hot.as_mut().expect("read");
        let newest_hot = hot.front().map(|p| p.id);
        Ok(match (newest_hot, self.settled.front().map(|p| p.id)) {
            (None, None) => None,
            (Some(h), s) if s.is_none_or(|s| h > s) => hot.pop_front(),
            (h, Some(s)) if h.is_none_or(|h| s > h) => self.settled.pop_front(),
            _ => {
                hot.pop_front();
                self.settled.pop_front().map(|p| Posting {
                    before: i64::MAX,
                    doubled: true,
                    ..p
                })
            }
        })
    }

    /// The value's hot postings, newest first. A value's hot postings are newer than its
    /// settled ones, so the bound of each is the greatest of the newest settled posting's
    /// and of the hot ones' own up to it.
    fn read_hot(&self, conn: &Connection) -> rusqlite::Result<VecDeque<Posting>> {
        let mut hot: Vec<Posting> = conn
            .prepare_cached(
                "SELECT id, seqs, top, times FROM postings_hot WHERE slice = ?1 \
                 AND id >= ?2 AND id < ?3 AND col = ?4 AND value = ?5 ORDER BY id",
            )?
            .query_map(
                params![
                    slice(self.col as usize, self.value),
                    self.lo,
                    self.end,
                    self.col,
                    self.value
                ],
                Posting::read,
            )?
            .collect::<rusqlite::Result<_>>()?;
        if let Some(oldest) = hot.first() {
            let mut bound =
                settled_bound(conn, self.col, self.value, org_first(self.lo), oldest.id)?
                    .unwrap_or(i64::MIN);
            for p in &mut hot {
                bound = bound.max(p.before);
                p.before = bound;
            }
        }
        Ok(hot.into_iter().rev().collect())
    }

    fn read_settled(&mut self, conn: &Connection) -> rusqlite::Result<()> {
        let rows: Vec<Posting> = conn
            .prepare_cached(
                "SELECT id, seqs, before, times FROM postings \
                 WHERE col = ?1 AND value = ?2 AND id >= ?3 AND id < ?4 \
                 ORDER BY id DESC LIMIT ?5",
            )?
            .query_map(
                params![self.col, self.value, self.lo, self.below, self.chunk],
                Posting::read,
            )?
            .collect::<rusqlite::Result<_>>()?;
        self.done = (rows.len() as i64) < self.chunk;
        self.chunk = (self.chunk * 4).min(1024);
        if let Some(p) = rows.last() {
            self.below = p.id;
        }
        self.settled.extend(rows);
        Ok(())
    }
}

/// The postings of one group of terms: the union of its values'.
struct Group(Vec<Stream>);

impl Group {
    /// The newest block left in which one of the group's values has a posting.
    fn head(&mut self, conn: &Connection) -> Result<Option<i64>> {
        let mut newest = None;
        for s in &mut self.0 {
            newest = newest.max(s.head(conn)?);
        }
        Ok(newest)
    }

    /// The greatest timestamp of the group's events in the blocks left (not yet taken), or
    /// `None` if there are none. Called once [`Group::head`] has read each stream's head.
    fn newest_left(&self) -> Option<i64> {
        self.0
            .iter()
            .filter_map(|s| s.front.as_ref().map(|p| p.before))
            .max()
    }

    /// Passes over the postings of blocks newer than `id`.
    fn skip_past(&mut self, conn: &Connection, id: i64) -> Result<()> {
        for s in &mut self.0 {
            while s.head(conn)?.is_some_and(|h| h > id) {
                s.pop();
            }
        }
        Ok(())
    }

    /// The offsets in block `id` that hold one of the group's values, each with a time its
    /// event is older than (from the postings' [`coarse`] times in the block's time range
    /// `range`, else `i64::MAX`), taking its postings there; `None` if one of them is
    /// unreadable (then the whole block must be looked at).
    fn take(
        &mut self,
        conn: &Connection,
        id: i64,
        range: Option<(i64, i64)>,
    ) -> Result<Option<Vec<(u16, i64)>>> {
        let mut all = Some(Vec::new());
        for s in &mut self.0 {
            if s.head(conn)? == Some(id) {
                let Posting {
                    seqs,
                    times,
                    doubled,
                    ..
                } = s.pop().expect("a head");
                let offsets = positions::decode(&seqs).filter(|_| !doubled);
                all = match (all, offsets) {
                    (Some(mut all), Some(more)) => {
                        match (times.filter(|t| t.len() == more.len()), range) {
                            (Some(times), Some((lo, hi))) => all.extend(
                                more.into_iter()
                                    .zip(times.iter().map(|p| coarse::older_than(*p, lo, hi))),
                            ),
                            _ => all.extend(more.into_iter().map(|o| (o, i64::MAX))),
                        }
                        Some(all)
                    }
                    _ => None,
                };
            }
        }
        Ok(all.map(|mut all| {
            all.sort_unstable();
            all.dedup_by_key(|o| o.0);
            all
        }))
    }
}

/// A [`Probe::Posted`]'s groups of posted values, and its groups of filter keys.
type PostedTerms<'p> = (&'p [Vec<(usize, i64)>], &'p [Vec<u64>]);

/// [`walk`] through the postings of the probe's values: only the blocks where each group
/// has one and whose filter may hold a key of each filter group, newest first, with the
/// seqs that hold them all.
fn walk_postings(
    conn: &Connection,
    org_id: i64,
    floor: u64,
    size: u64,
    (groups, filtered): PostedTerms<'_>,
    mut bounds: impl FnMut(i64, i64, i64) -> Step,
    mut visit: impl FnMut(Look) -> Result<()>,
) -> Result<()> {
    let base = block_id(org_id, 0);
    let lo = block_id(org_id, floor >> BLOCK_BITS);
    let newest: Option<i64> = conn
        .prepare_cached("SELECT max(id) FROM blocks WHERE id >= ?1 AND id < ?2")
        .and_then(|mut st| {
            st.query_row(params![lo, block_id(org_id, size >> BLOCK_BITS)], |r| {
                r.get(0)
            })
        })
        .map_err(unavailable)?;
    // The blocks after the newest summarised one (the incomplete block; any other should
    // not be) have no postings: looked at whole.
    let end = newest.map_or(lo, |id| id + 1);
    let unposted = (((end - base) as u64) << BLOCK_BITS).max(floor);
    if size > unposted {
        visit(Look::whole(unposted, size - 1))?;
    }
    let mut groups: Vec<Group> = groups
        .iter()
        .map(|g| Group(g.iter().map(|&v| Stream::new(v, lo, end)).collect()))
        .collect();
    let mut summary = conn
        .prepare_cached("SELECT min_ts, max_ts, max_ts_before FROM blocks WHERE id = ?1")
        .map_err(unavailable)?;
    let mut filter = conn
        .prepare_cached("SELECT filter FROM block_filters WHERE id = ?1")
        .map_err(unavailable)?;
    loop {
        // The newest block that every group may have a posting in, and whether they do.
        let mut target = i64::MAX;
        for g in &mut groups {
            match g.head(conn)? {
                Some(id) => target = target.min(id),
                None => return Ok(()),
            }
        }
        let mut everywhere = true;
        for g in &mut groups {
            g.skip_past(conn, target)?;
            everywhere &= g.head(conn)? == Some(target);
        }
        // No event left can be newer than what the postings say of its values: for each
        // group the newest of its values', and of those the oldest, since an event that
        // passes holds a value of every group. Tighter than the block's own bound when
        // other events (the server's records of its calls, stamped on arrival) are newer.
        let newest_left = groups
            .iter()
            .filter_map(Group::newest_left)
            .min()
            .unwrap_or(i64::MIN);
        if !everywhere {
            // No block to look at yet, but the walk may be over.
            if let Step::Stop = bounds(i64::MIN, i64::MAX, newest_left) {
                return Ok(());
            }
            continue;
        }
        let times = summary
            .query_row([target], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()
            .map_err(unavailable)?;
        let (min_ts, max_ts, before) = times.unwrap_or((i64::MIN, i64::MAX, i64::MAX));
        let step = match bounds(min_ts, max_ts, before.min(newest_left)) {
            // The terms on summarised fields rule out a block whose filter holds none of a
            // group's keys (a block without a filter is looked at).
            Step::Look if !filtered.is_empty() => {
                let admitted = filter
                    .query_row([target], |r| {
                        Ok(match r.get_ref(0)? {
                            ValueRef::Blob(f) => admits(f, filtered),
                            _ => true,
                        })
                    })
                    .optional()
                    .map_err(unavailable)?;
                match admitted {
                    Some(false) => Step::Skip,
                    _ => Step::Look,
                }
            }
            step => step,
        };
        match step {
            Step::Stop => return Ok(()),
            Step::Skip => {
                for g in &mut groups {
                    g.skip_past(conn, target - 1)?;
                }
                continue;
            }
            Step::Look => {}
        }
        // The seqs every group's postings name (with the least of what their postings say
        // of their times); if one cannot be read, the whole block.
        let range = times.map(|(min_ts, max_ts, _)| (min_ts, max_ts));
        let mut offsets: Option<Vec<(u16, i64)>> = None;
        let mut unreadable = false;
        for g in &mut groups {
            match g.take(conn, target, range)? {
                None => unreadable = true,
                Some(b) => {
                    offsets = Some(match offsets {
                        None => b,
                        Some(a) => a
                            .into_iter()
                            .filter_map(|(o, t)| {
                                b.binary_search_by_key(&o, |x| x.0)
                                    .ok()
                                    .map(|i| (o, t.min(b[i].1)))
                            })
                            .collect(),
                    })
                }
            }
        }
        let block = (target - base) as u64;
        let named: Option<Vec<(u64, i64)>> = offsets.filter(|_| !unreadable).map(|o| {
            o.into_iter()
                .map(|(o, t)| ((block << BLOCK_BITS) | u64::from(o), t))
                .filter(|&(s, _)| s >= floor)
                .collect()
        });
        if named.as_ref().is_some_and(Vec::is_empty) {
            continue;
        }
        let (seqs, older_than) = match named {
            Some(n) => {
                let (seqs, older_than) = n.into_iter().unzip();
                (Some(seqs), older_than)
            }
            None => (None, Vec::new()),
        };
        visit(Look {
            span: Span {
                first: (block << BLOCK_BITS).max(floor),
                last: ((block + 1) << BLOCK_BITS) - 1,
            },
            seqs,
            older_than,
            times: range,
            block: range.map(|_| target),
        })?;
    }
}

/// What to do with a summarised block, from its times.
pub(crate) enum Step {
    Look,
    Skip,
    Stop,
}

#[cfg(test)]
mod tests {
    use super::{BLOCK, Probe, Step, bloom, coarse, key, positions, walk};
    use crate::Store;
    use rusqlite::types::ValueRef;

    /// A term on a summarised field rules out the blocks its filters rule out even beside a
    /// posted term: `tokenId:<a key on every event> ip:<an address never seen>` looks only
    /// at the newest, unsummarised block, not at every block the token's postings name.
    #[tokio::test]
    async fn the_filters_rule_out_blocks_that_a_posted_term_names() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::SqliteStore::open(dir.path()).unwrap();
        crate::conformance::with_orgs(&store, &["acme"]).await;
        let mut events = crate::conformance::sample_events(3 * BLOCK as usize + 10);
        for e in &mut events {
            e.client_id = None;
            e.actor.token_id = Some("pat_busy".into());
            e.actor.ip = Some("10.0.0.1".parse().unwrap());
        }
        store.append("acme", events).await.unwrap();
        let conn = rusqlite::Connection::open(dir.path().join(super::super::DB_FILE)).unwrap();
        let one = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
        let (org_id, tok) = (
            one("SELECT id FROM orgs WHERE slug = 'acme'"),
            one("SELECT id FROM dict WHERE value = 'pat_busy'"),
        );
        let ip = |a: &str| {
            let bytes = super::super::row::ip_bytes(a.parse().unwrap());
            key(0, ValueRef::Blob(&bytes)).unwrap()
        };
        let looks = |address: &str| {
            let probe = Probe::Posted {
                groups: vec![vec![(5, tok)]],
                filtered: vec![vec![ip(address)]],
                exact: false,
            };
            let mut looks = Vec::new();
            walk(
                &conn,
                org_id,
                0,
                3 * BLOCK + 10,
                &probe,
                |_, _, _| Step::Look,
                |look| {
                    looks.push(look.span.first);
                    Ok(())
                },
            )
            .unwrap();
            looks
        };
        assert_eq!(looks("10.9.9.9"), vec![3 * BLOCK]);
        assert_eq!(looks("10.0.0.1"), vec![3 * BLOCK, 2 * BLOCK, BLOCK, 0]);
    }

    #[test]
    fn a_coarse_time_bounds_its_event_and_is_one_256th_of_the_range_wide() {
        for (lo, hi) in [
            (0, 0),
            (1_000, 1_000),
            (0, 255),
            (0, 256),
            (-7, 1_000_003),
            (1_700_000_000_000_000, 1_700_000_002_000_000),
            // Years 1 and 9999, the widest range timestamps have.
            (-62_135_596_800_000_000, 253_402_300_799_999_999),
        ] {
            let width = (i128::from(hi) - i128::from(lo) + 1) as f64;
            let mut ts: Vec<i64> = (0..=512i128)
                .map(|i| (i128::from(lo) + (i128::from(hi) - i128::from(lo)) * i / 512) as i64)
                .collect();
            ts.extend([lo, hi, lo + 1, hi - 1]);
            for t in ts.into_iter().filter(|t| (lo..=hi).contains(t)) {
                let p = coarse::part(t, lo, hi);
                let older = coarse::older_than(p, lo, hi);
                assert!(
                    t < older,
                    "{t} in part {p} of [{lo}, {hi}] is not older than {older}"
                );
                // Newer than every event of the part before.
                if p > 0 {
                    assert!(
                        coarse::older_than(p - 1, lo, hi) <= t,
                        "{t} in [{lo}, {hi}]"
                    );
                }
                assert!(
                    (older as f64 - t as f64) <= width / 256.0 + 1.0,
                    "{t} in [{lo}, {hi}]: bound {older} is loose"
                );
            }
            assert_eq!(coarse::part(hi, lo, hi), if hi > lo { 255 } else { 0 });
            assert_eq!(coarse::older_than(255, lo, hi), hi + 1);
        }
    }

    #[test]
    fn positions_read_back_as_written_in_either_form() {
        let every: Vec<u16> = (0..BLOCK as u16).collect();
        for n in [
            0,
            1,
            2,
            positions::DENSE - 1,
            positions::DENSE,
            300,
            BLOCK as usize,
        ] {
            // Spread over the block, the last offset included.
            let offsets: Vec<u16> = every
                .iter()
                .rev()
                .step_by(BLOCK as usize / n.max(1))
                .rev()
                .copied()
                .take(n)
                .collect();
            assert_eq!(offsets.len(), n);
            let bytes = positions::encode(&offsets);
            assert!(
                bytes.len() <= BLOCK as usize / 8,
                "{n} offsets in {} bytes",
                bytes.len()
            );
            assert_eq!(positions::decode(&bytes), Some(offsets), "{n} offsets");
        }
        // What no encoding gives is not read as offsets.
        for bad in [&[1u8][..], &[2, 0, 1, 0], &[0, 4], &[0; 200]] {
            assert_eq!(positions::decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_filter_holds_every_key_put_in_it_and_few_others() {
        let keys: Vec<u64> = (0..2000u64)
            .map(|i| twox_hash::XxHash3_64::oneshot_with_seed(7, &i.to_le_bytes()))
            .collect();
        let filter = bloom::build(&keys, super::BITS_PER_VALUE);
        assert!(keys.iter().all(|k| bloom::may_hold(&filter, *k)));
        let others = (2000..102_000u64)
            .map(|i| twox_hash::XxHash3_64::oneshot_with_seed(7, &i.to_le_bytes()))
            .filter(|k| bloom::may_hold(&filter, *k))
            .count();
        // About 0.5% at 12 bits a key; well under 2% whatever the keys.
        assert!(others < 2000, "{others} false positives in 100,000");
        assert!(bloom::may_hold(&filter[..31], keys[0]) && bloom::may_hold(&[], 1));
    }
}
