//! Block summaries: what lets a filter on a field no index covers (an address, a token, a
//! category, a kind of object...) skip the parts of a log where its value never occurs.
//!
//! Every [`BLOCK`] seqs of an org's log form a block. The transaction that completes a block
//! writes its summary: in `blocks`, the least and greatest `timestamp` in it and the greatest
//! of this block and every earlier one; in `block_filters`, a split-block Bloom filter (the
//! layout of Apache Parquet's) of every value its events hold in the [`COLUMNS`]. A filter
//! has no false negatives: a block it rules out holds no event with the value.
//!
//! [`Probe`] is what a query's terms ask of a block. The readers in `read.rs` walk an org's
//! blocks newest first, read the events only of those a probe does not rule out (and of the
//! newest, incomplete block, which has no summary yet), and stop once no block left can hold
//! an event newer than the last one their page needs.
//!
//! The summaries are written in the same transaction as the events that complete a block
//! (and by the migration that introduced them, for the blocks already stored), so every
//! complete block of a log has one; the readers rely on that.

use std::collections::HashSet;

use rusqlite::types::{Value as Sql, ValueRef};
use rusqlite::{Connection, OptionalExtension, params};
use trail_core::query::{Field, Filter};

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

/// Filter bits per distinct value: about 0.5% false positives.
const BITS_PER_VALUE: usize = 12;

/// The id of a block's rows: its org and its number, as `events.k` is of an event.
pub(crate) fn block_id(org_id: i64, block: u64) -> i64 {
    (org_id << (SEQ_BITS - BLOCK_BITS)) | block as i64
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

/// Writes the summary of `org_id`'s block `block`, whose events are all stored. A block left
/// without events (pruned whole) gets none.
pub(crate) fn seal(tx: &Connection, org_id: i64, block: u64) -> rusqlite::Result<()> {
    let first = (org_id << SEQ_BITS) | (block << BLOCK_BITS) as i64;
    let mut stmt = tx.prepare_cached(&format!(
        "SELECT ts, {} FROM events WHERE k >= ?1 AND k < ?2",
        COLUMNS.join(", ")
    ))?;
    let mut rows = stmt.query(params![first, first + BLOCK as i64])?;
    let (mut min_ts, mut max_ts) = (i64::MAX, i64::MIN);
    let mut keys = HashSet::new();
    while let Some(row) = rows.next()? {
        let ts: i64 = row.get(0)?;
        min_ts = min_ts.min(ts);
        max_ts = max_ts.max(ts);
        for c in 0..COLUMNS.len() {
            keys.extend(key(c, row.get_ref(c + 1)?));
        }
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
        "INSERT INTO blocks (id, org, block, min_ts, max_ts, max_ts_before) \
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
    tx.prepare_cached("INSERT INTO block_filters (id, filter) VALUES (?1, ?2)")?
        .execute(params![id, bloom::build(&keys, BITS_PER_VALUE)])?;
    Ok(())
}

/// Seals every complete block of `org_id`'s log, now `size` seqs long, that has no summary
/// yet: from the one after the newest summarised (or where the log was pruned to), so a
/// block completed by rows some other way (a tool on the database) is not left without.
pub(crate) fn seal_completed(tx: &Connection, org_id: i64, size: u64) -> rusqlite::Result<()> {
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
        seal(tx, org_id, block)?;
    }
    Ok(())
}

/// Summaries for every complete block already stored (the migration that adds them).
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
            seal_completed(tx, org_id, size)?;
        }
    }
    Ok(())
}

/// What a filter's terms ask of a block: for each group of terms on one summarised field
/// (which `AND` together), the keys of which one must be in the block's filter. `None` when
/// no term is on a summarised field, or when one can match nothing at all.
pub(crate) struct Probe {
    groups: Vec<Vec<u64>>,
}

impl Probe {
    /// `resolved` gives the column and the stored values of one matcher, as the query's
    /// SQL compares them (`None` for a range, which a filter cannot answer).
    pub(crate) fn of(
        f: &Filter,
        mut resolved: impl FnMut(
            Field,
            &trail_core::query::Matcher,
        ) -> Result<Option<(&'static str, Vec<Sql>)>>,
    ) -> Result<Option<Probe>> {
        let (groups, _negated) = f.grouped();
        let mut out = Vec::new();
        'group: for (field, matchers) in groups {
            let mut keys = Vec::new();
            for m in matchers {
                let Some((col, values)) = resolved(field, m)? else {
                    continue 'group;
                };
                let Some(c) = COLUMNS.iter().position(|x| *x == col) else {
                    continue 'group;
                };
                keys.extend(values.iter().filter_map(|v| key(c, ValueRef::from(v))));
            }
            out.push(keys);
        }
        Ok((!out.is_empty()).then_some(Probe { groups: out }))
    }

    fn admits(&self, filter: &[u8]) -> bool {
        self.groups
            .iter()
            .all(|keys| keys.iter().any(|k| bloom::may_hold(filter, *k)))
    }
}

/// A run of seqs whose events a reader must look at.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Span {
    pub first: u64,
    pub last: u64,
}

/// Walks `org_id`'s log newest first (its seqs `floor..size`), giving `visit` the newest,
/// incomplete block and then each block that `probe` does not rule out. `bounds` is asked
/// before each summarised block, given its least and greatest timestamps and the greatest of
/// it and every earlier block, and says whether to look at the block, skip it, or stop.
pub(crate) fn walk(
    conn: &Connection,
    org_id: i64,
    floor: u64,
    size: u64,
    probe: &Probe,
    mut bounds: impl FnMut(i64, i64, i64) -> Step,
    mut visit: impl FnMut(Span) -> Result<()>,
) -> Result<()> {
    let sealed = (size >> BLOCK_BITS) << BLOCK_BITS;
    if size > sealed.max(floor) {
        visit(Span {
            first: sealed.max(floor),
            last: size - 1,
        })?;
    }
    if sealed <= floor {
        return Ok(());
    }
    let mut blocks = conn
        .prepare_cached(
            "SELECT block, min_ts, max_ts, max_ts_before FROM blocks \
             WHERE id >= ?1 AND id < ?2 ORDER BY id DESC",
        )
        .map_err(unavailable)?;
    let mut filter = conn
        .prepare_cached("SELECT filter FROM block_filters WHERE id = ?1")
        .map_err(unavailable)?;
    let mut rows = blocks
        .query(params![
            block_id(org_id, floor >> BLOCK_BITS),
            block_id(org_id, sealed >> BLOCK_BITS)
        ])
        .map_err(unavailable)?;
    // Blocks without a summary (there should be none) are looked at whatever they hold.
    let mut expected = sealed >> BLOCK_BITS;
    let unsummarised = |from: u64, to: u64| Span {
        first: (from << BLOCK_BITS).max(floor),
        last: (to << BLOCK_BITS) - 1,
    };
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
        let id = block_id(org_id, block);
        let admitted = filter
            .query_row([id], |r| Ok(probe.admits(r.get_ref(0)?.as_bytes()?)))
            .optional()
            .map_err(unavailable)?
            .unwrap_or(true);
        if admitted {
            visit(Span {
                first: (block << BLOCK_BITS).max(floor),
                last: ((block + 1) << BLOCK_BITS) - 1,
            })?;
        }
    }
    let first = floor >> BLOCK_BITS;
    if expected > first {
        visit(unsummarised(first, expected))?;
    }
    Ok(())
}

/// What to do with a summarised block, from its times.
pub(crate) enum Step {
    Look,
    Skip,
    Stop,
}

#[cfg(test)]
mod tests {
    use super::bloom;

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
