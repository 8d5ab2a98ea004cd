//! An org's log in PostgreSQL: appends (seqs, times of receipt, client ids, tiles, tallies
//! and the signed checkpoint, all in the caller's transaction under the log's row lock), the
//! Merkle tree read through [`HashReader`], checkpoints, and pruning.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::AtomicI64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

use postgres::{GenericClient, Transaction};
use trail_core::checkpoint::{Checkpoint, SignerKey, open, origin};
use trail_core::merkle::{self, Hash, HashReader, RootBuilder, TILE_HEIGHT};
use trail_core::perf::{MINUTE_US, Tally, minute_of};
use trail_core::{Event, EventBody, Timestamp, canonical};

use super::unavailable;
use crate::{Appended, Appends, Outcome, Result, SignedCheckpoint, StoreError};

/// The most events a log holds (seqs are 40 bits, as in every backend).
const MAX_LOG: u64 = 1 << 40;

/// What an append needs besides its transaction.
pub(super) struct Context {
    pub clock: crate::Clock,
    pub signing: Arc<Mutex<Option<Signing>>>,
    /// Where the newest partition of `events` ends, as this process last learnt it.
    pub partitioned_until: Arc<AtomicI64>,
}

/// A week, in microseconds: what a partition of `events` spans.
const WEEK_US: i64 = 7 * 24 * 3600 * 1_000_000;

/// How near the end of the newest partition an append has the next weeks' made.
const PARTITION_AHEAD_US: i64 = WEEK_US;

/// Has the partitions of the weeks around `received_at` made when it nears the end of the
/// newest one (`trail_partitions`, in the caller's transaction), so that events go to
/// their week's partition rather than the default one.
fn partition_ahead(tx: &mut Transaction<'_>, ctx: &Context, received_at: Timestamp) -> Result<()> {
    if received_at.0.saturating_add(PARTITION_AHEAD_US) < ctx.partitioned_until.load(Relaxed) {
        return Ok(());
    }
    let until: Option<i64> = tx
        .query_one("SELECT trail_partitions($1)", &[&received_at.0])
        .map_err(unavailable)?
        .get(0);
    ctx.partitioned_until.fetch_max(until.unwrap_or(0), Relaxed);
    Ok(())
}

/// Zero merge delay: once given the key ([`crate::Store::sign_logs`]), every append signs
/// a checkpoint of its log in its transaction. This process keeps each log's tree as it
/// last committed it (the right edge, at most 64 hashes), used when the log still has that
/// size under the row lock; when another server appended meanwhile, the tree is read again
/// from the stored tiles and leaves.
pub(super) struct Signing {
    key: Arc<SignerKey>,
    /// Heads signed before, kept outside the database: no checkpoint is signed that does
    /// not extend them.
    remembered: HashMap<String, (u64, Hash)>,
    trees: HashMap<String, RootBuilder>,
    /// The newest head this process signed of each log: no checkpoint is signed that does
    /// not extend it (a database rolled back under a running server is refused, not forked).
    heads: HashMap<String, (u64, Hash)>,
    /// Logs not signed any more, and why.
    refused: HashMap<String, String>,
}

/// What a committed transaction did to the logs: their new sizes (to wake readers), their
/// trees, and the logs it found it must not sign.
#[derive(Default)]
pub(super) struct Grown {
    pub sizes: HashMap<String, u64>,
    trees: HashMap<String, RootBuilder>,
    heads: HashMap<String, (u64, Hash)>,
    refused: HashMap<String, String>,
}

impl Context {
    /// Takes in what a committed transaction did.
    pub fn committed(&self, grown: &Grown) {
        let mut signing = self.signing.lock().expect("signing lock");
        if let Some(s) = signing.as_mut() {
            s.trees
                .extend(grown.trees.iter().map(|(k, v)| (k.clone(), v.clone())));
            s.heads
                .extend(grown.heads.iter().map(|(k, v)| (k.clone(), *v)));
            for (org, why) in &grown.refused {
                refused(org, why);
                s.refused.insert(org.clone(), why.clone());
            }
        }
    }
}

/// A log refused for signing: said once, loudly.
fn refused(org: &str, why: &str) {
    metrics::counter!("trail_log_integrity_failures_total").increment(1);
    tracing::error!(org, "not signing: {why}; run `trail verify` on this log");
}

/// Takes `org`'s log row lock: its size, its last time of receipt and how far it was pruned.
fn lock_log(tx: &mut Transaction<'_>, org: &str) -> Result<(u64, Timestamp)> {
    let row = tx
        .query_opt(
            "SELECT size, last_received FROM logs WHERE org = $1 FOR UPDATE",
            &[&org],
        )
        .map_err(unavailable)?
        .ok_or_else(|| StoreError::UnknownOrg(org.to_owned()))?;
    Ok((row.get::<_, i64>(0) as u64, Timestamp(row.get(1))))
}

/// Takes the row locks of these logs (sorted), in `tx`.
pub(super) fn lock_logs(tx: &mut Transaction<'_>, orgs: &[&str]) -> Result<()> {
    if !orgs.is_empty() {
        tx.execute(
            "SELECT org FROM logs WHERE org = ANY($1) ORDER BY org FOR UPDATE",
            &[&orgs],
        )
        .map_err(unavailable)?;
    }
    Ok(())
}

/// Appends `bodies` to `org`'s log in `tx` (see [`crate::Store::append_signed`]).
pub(super) fn append(
    tx: &mut Transaction<'_>,
    ctx: &Context,
    grown: &mut Grown,
    org: &str,
    bodies: Vec<EventBody>,
) -> Result<Appends> {
    let (size, last_received) = lock_log(tx, org)?;
    if size.saturating_add(bodies.len() as u64) > MAX_LOG {
        return Err(StoreError::LogFull(org.to_owned()));
    }
    let received_at = (ctx.clock)().max(last_received);
    partition_ahead(tx, ctx, received_at)?;
    let earlier = by_client_id(tx, org, &bodies)?;
    let mut tree = signing_tree(tx, ctx, grown, org, size)?;

    let mut seq = size;
    let mut rows = Rows::default();
    let mut tiles: Vec<(u32, u64, Hash)> = Vec::new();
    let mut tallies = Tallies::default();
    let mut items: Vec<Appended> = Vec::with_capacity(bodies.len());
    let mut batch_ids: HashMap<String, usize> = HashMap::new();
    for body in bodies {
        if let Some(cid) = &body.client_id {
            let before = match batch_ids.get(cid) {
                Some(&i) => Some((items[i].clone(), canonical::VERSION)),
                None => earlier.get(cid).cloned(),
            };
            if let Some((before, encoding)) = before {
                // The same id again: a retry if it is the same event, a conflict if not. It
                // is sealed as the earlier one was.
                let again = Event::seal_as(encoding, org, before.seq, before.received_at, body);
                let outcome = if canonical::leaf_hash(&again) == before.hash {
                    Outcome::Duplicate
                } else {
                    Outcome::Conflict
                };
                items.push(Appended { outcome, ..before });
                continue;
            }
            batch_ids.insert(cid.clone(), items.len());
        }
        let event = Event::seal(org, seq, received_at, body);
        let data = canonical::encode(&event);
        let hash = merkle::leaf_hash(&data);
        if let Some(tree) = &mut tree {
            tree.push_tiles(hash, |level, idx, h| tiles.push((level, idx, *h)));
        }
        tallies.add(&event);
        items.push(Appended {
            id: event.id(),
            seq,
            hash,
            received_at,
            outcome: Outcome::Created,
        });
        rows.add(&event, data, hash);
        seq += 1;
    }
    if seq == size {
        // Nothing new: the newest checkpoint covers every event named.
        let checkpoint = match &tree {
            Some(_) => checkpoint(tx, org, None)?,
            None => None,
        };
        return Ok(Appends { items, checkpoint });
    }
    rows.insert(tx, org)?;
    insert_tiles(tx, org, &tiles)?;
    tallies.write(tx, org)?;
    tx.execute(
        "UPDATE logs SET size = $2, last_received = $3 WHERE org = $1",
        &[&org, &(seq as i64), &received_at.micros()],
    )
    .map_err(unavailable)?;
    grown.sizes.insert(org.to_owned(), seq);
    let checkpoint = match tree {
        Some(tree) => {
            let key = ctx
                .signing
                .lock()
                .expect("signing lock")
                .as_ref()
                .map(|s| s.key.clone());
            let head = match key {
                Some(key) => Some(sign(tx, &key, org, &tree, received_at)?),
                None => None,
            };
            if let Some(h) = &head {
                grown.heads.insert(org.to_owned(), (h.size, h.root));
            }
            grown.trees.insert(org.to_owned(), tree);
            head
        }
        None => None,
    };
    Ok(Appends { items, checkpoint })
}

/// Takes in the next events of `org`'s log as another store sealed them, with the tiles of
/// a pruned prefix and the checkpoints they reach (see [`crate::Store::import_events`]).
pub(super) fn import(
    tx: &mut Transaction<'_>,
    grown: &mut Grown,
    org: &str,
    tiles: &[(u32, u64, Hash)],
    events: &[crate::StoredEvent],
    checkpoints: &[SignedCheckpoint],
) -> Result<()> {
    let (size, last_received) = lock_log(tx, org)?;
    insert_tiles(tx, org, tiles)?;
    let mut seq = size;
    let mut last = last_received;
    let mut rows = Rows::default();
    let mut tallies = Tallies::default();
    let mut weeks = std::collections::BTreeSet::new();
    for stored in events {
        let e = &stored.event;
        if e.org != org || e.seq != seq {
            return Err(StoreError::Refused(format!(
                "seq {} of org {:?} comes where seq {seq} of org {org:?} is due",
                e.seq, e.org
            )));
        }
        if e.received_at < last {
            return Err(StoreError::Refused(format!(
                "seq {seq} of org {org:?} was received before the one before it"
            )));
        }
        let data = canonical::encode(e);
        let hash = merkle::leaf_hash(&data);
        if hash != stored.hash {
            return Err(StoreError::Corrupt(format!(
                "seq {seq} of org {org:?}: its content does not hash to its stored leaf"
            )));
        }
        weeks.insert(e.received_at.0.div_euclid(WEEK_US));
        tallies.add(e);
        rows.add(e, data, hash);
        last = e.received_at;
        seq += 1;
    }
    // Events of past weeks go to their weeks' partitions (each call makes the partition of
    // the week it is given and the two after).
    for week in weeks {
        tx.execute("SELECT trail_partitions($1)", &[&(week * WEEK_US)])
            .map_err(unavailable)?;
    }
    if seq > size {
        rows.insert(tx, org)?;
        tallies.write(tx, org)?;
        tx.execute(
            "UPDATE logs SET size = $2, last_received = $3 WHERE org = $1",
            &[&org, &(seq as i64), &last.micros()],
        )
        .map_err(unavailable)?;
        extend_tiles(tx, org, size, seq)?;
        grown.sizes.insert(org.to_owned(), seq);
    }
    for c in checkpoints {
        if c.org != org || c.size > seq {
            return Err(StoreError::Refused(format!(
                "checkpoint {} of org {:?} is past the {seq} events of org {org:?}",
                c.size, c.org
            )));
        }
        add_checkpoint(tx, c)?;
    }
    Ok(())
}

/// The events stored under the client ids of `bodies`, by id, with the canonical encoding
/// each was hashed with.
fn by_client_id(
    tx: &mut Transaction<'_>,
    org: &str,
    bodies: &[EventBody],
) -> Result<HashMap<String, (Appended, u8)>> {
    let ids: Vec<&str> = bodies
        .iter()
        .filter_map(|b| b.client_id.as_deref())
        .collect();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = tx
        .query(
            "SELECT cid, seq, received_at, hash, get_byte(data, 0) FROM events \
             WHERE org = $1 AND cid = ANY($2)",
            &[&org, &ids],
        )
        .map_err(unavailable)?;
    rows.into_iter()
        .map(|r| {
            let cid: String = r.get(0);
            let hash = hash_of(r.get(3), || format!("the leaf hash of id {cid}"))?;
            let appended = Appended {
                id: cid.clone(),
                seq: r.get::<_, i64>(1) as u64,
                hash,
                received_at: Timestamp(r.get(2)),
                outcome: Outcome::Duplicate,
            };
            Ok((cid, (appended, r.get::<_, i32>(4) as u8)))
        })
        .collect()
}

/// A stored 32-byte hash, or `Corrupt` naming what it is.
pub(super) fn hash_of(bytes: Vec<u8>, what: impl FnOnce() -> String) -> Result<Hash> {
    bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("{} is not 32 bytes", what())))
}

/// The rows of one append, column by column, inserted with one statement.
#[derive(Default)]
struct Rows {
    seq: Vec<i64>,
    ts: Vec<i64>,
    received_at: Vec<i64>,
    cid: Vec<Option<String>>,
    /// The filterable fields, in [`super::FILTERED`]'s order (status aside).
    text: [Vec<Option<String>>; super::FILTERED.len()],
    status: Vec<Option<i32>>,
    data: Vec<Vec<u8>>,
    hash: Vec<Vec<u8>>,
}

impl Rows {
    fn add(&mut self, e: &Event, data: Vec<u8>, hash: Hash) {
        self.seq.push(e.seq as i64);
        self.ts.push(e.timestamp.micros());
        self.received_at.push(e.received_at.micros());
        self.cid.push(e.client_id.clone());
        for (column, (field, _)) in self.text.iter_mut().zip(super::FILTERED) {
            column.push(field.text_of(e).map(super::column_text));
        }
        self.status
            .push(e.request.as_ref().map(|r| i32::from(r.status)));
        self.data.push(data);
        self.hash.push(hash.to_vec());
    }

    fn insert(&self, tx: &mut Transaction<'_>, org: &str) -> Result<()> {
        let columns: Vec<&str> = super::FILTERED.iter().map(|(_, c)| *c).collect();
        let texts: Vec<String> = (0..columns.len())
            .map(|i| format!("${}::text[]", i + 6))
            .collect();
        let n = columns.len() + 6;
        let sql = format!(
            "INSERT INTO events (org, seq, ts, received_at, cid, {}, status, data, hash) \
             SELECT $1, * FROM unnest($2::bigint[], $3::bigint[], $4::bigint[], $5::text[], \
             {}, ${n}::int[], ${}::bytea[], ${}::bytea[])",
            columns.join(", "),
            texts.join(", "),
            n + 1,
            n + 2
        );
        let mut params: Vec<&(dyn postgres::types::ToSql + Sync)> =
            vec![&org, &self.seq, &self.ts, &self.received_at, &self.cid];
        params.extend(
            self.text
                .iter()
                .map(|c| c as &(dyn postgres::types::ToSql + Sync)),
        );
        params.extend([
            &self.status as &(dyn postgres::types::ToSql + Sync),
            &self.data,
            &self.hash,
        ]);
        tx.execute(&sql, &params)
            .map_err(|e| super::constraint(e, || format!("an event of org {org:?}")))?;
        Ok(())
    }
}

/// Stores tiles the tree completed.
fn insert_tiles(tx: &mut Transaction<'_>, org: &str, tiles: &[(u32, u64, Hash)]) -> Result<()> {
    if tiles.is_empty() {
        return Ok(());
    }
    let level: Vec<i32> = tiles.iter().map(|t| t.0 as i32).collect();
    let idx: Vec<i64> = tiles.iter().map(|t| t.1 as i64).collect();
    let hash: Vec<Vec<u8>> = tiles.iter().map(|t| t.2.to_vec()).collect();
    tx.execute(
        "INSERT INTO tiles (org, level, idx, hash) \
         SELECT $1, * FROM unnest($2::int[], $3::bigint[], $4::bytea[])",
        &[&org, &level, &idx, &hash],
    )
    .map_err(|e| super::constraint(e, || format!("a tile of org {org:?}")))?;
    Ok(())
}

/// Per-minute tallies of one append (see `schema.sql`).
#[derive(Default)]
struct Tallies {
    events: HashMap<i64, i64>,
    calls: HashMap<(i64, String), Tally>,
}

impl Tallies {
    fn add(&mut self, e: &Event) {
        let minute = minute_of(e.timestamp);
        *self.events.entry(minute).or_default() += 1;
        if let Some(r) = &e.request {
            self.calls
                .entry((minute, r.route.clone()))
                .or_default()
                .add(r.status, r.latency_us);
        }
    }

    /// Adds these tallies to the stored ones (the log's row lock is held: no other append
    /// of this org changes them meanwhile).
    fn write(self, tx: &mut Transaction<'_>, org: &str) -> Result<()> {
        let (minutes, counts): (Vec<i64>, Vec<i64>) = self.events.into_iter().unzip();
        tx.execute(
            "INSERT INTO event_minutes (org, minute, n) \
             SELECT $1, * FROM unnest($2::bigint[], $3::bigint[]) \
             ON CONFLICT (org, minute) DO UPDATE SET n = event_minutes.n + excluded.n",
            &[&org, &minutes, &counts],
        )
        .map_err(unavailable)?;
        if self.calls.is_empty() {
            return Ok(());
        }
        // The stored tallies of these (minute, route)s, merged here (a latency sketch adds
        // up only as a sketch), then written back in one statement.
        let mut calls = self.calls;
        let (minutes, routes): (Vec<i64>, Vec<String>) = calls.keys().cloned().unzip();
        for r in tx
            .query(
                "SELECT p.requests, p.e4xx, p.e5xx, p.lat, p.minute, p.route FROM perf_minutes p \
                 JOIN unnest($2::bigint[], $3::text[]) AS k (minute, route) \
                 ON p.minute = k.minute AND p.route = k.route WHERE p.org = $1",
                &[&org, &minutes, &routes],
            )
            .map_err(unavailable)?
        {
            if let Some(t) = calls.get_mut(&(r.get(4), r.get(5))) {
                t.merge(&tally_of(&r)?);
            }
        }
        let mut rows = (
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
        );
        for ((minute, route), t) in calls {
            rows.0.push(minute);
            rows.1.push(route);
            rows.2.push(t.requests as i64);
            rows.3.push(t.errors_4xx as i64);
            rows.4.push(t.errors_5xx as i64);
            rows.5.push(t.latency.to_bytes());
        }
        tx.execute(
            "INSERT INTO perf_minutes (org, minute, route, requests, e4xx, e5xx, lat) \
             SELECT $1, * FROM unnest($2::bigint[], $3::text[], $4::bigint[], $5::bigint[], \
             $6::bigint[], $7::bytea[]) \
             ON CONFLICT (org, minute, route) DO UPDATE SET requests = excluded.requests, \
             e4xx = excluded.e4xx, e5xx = excluded.e5xx, lat = excluded.lat",
            &[&org, &rows.0, &rows.1, &rows.2, &rows.3, &rows.4, &rows.5],
        )
        .map_err(unavailable)?;
        Ok(())
    }
}

/// A stored tally: its row's first four columns.
pub(super) fn tally_of(r: &postgres::Row) -> Result<Tally> {
    let latency = trail_core::perf::Sketch::from_bytes(&r.get::<_, Vec<u8>>(3))
        .ok_or_else(|| StoreError::Corrupt("a stored latency sketch does not read".into()))?;
    Ok(Tally {
        requests: r.get::<_, i64>(0) as u64,
        errors_4xx: r.get::<_, i64>(1) as u64,
        errors_5xx: r.get::<_, i64>(2) as u64,
        latency,
    })
}

/// The tree to extend and sign for `org`'s log of `size` events, if this process signs and
/// the log is not refused: the one it committed last if the log still has that size, else
/// read and checked again.
fn signing_tree(
    tx: &mut Transaction<'_>,
    ctx: &Context,
    grown: &mut Grown,
    org: &str,
    size: u64,
) -> Result<Option<RootBuilder>> {
    let (key, floors, cached) = {
        let signing = ctx.signing.lock().expect("signing lock");
        let Some(s) = signing.as_ref() else {
            return Ok(None);
        };
        if s.refused.contains_key(org) || grown.refused.contains_key(org) {
            return Ok(None);
        }
        let cached = grown
            .trees
            .get(org)
            .or_else(|| s.trees.get(org))
            .filter(|t| t.size() == size)
            .cloned();
        let floors: Vec<(u64, Hash)> = [
            s.remembered.get(org),
            s.heads.get(org),
            grown.heads.get(org),
        ]
        .into_iter()
        .flatten()
        .copied()
        .collect();
        (s.key.clone(), floors, cached)
    };
    // The tree this process committed last serves while the database agrees with it: the
    // log's newest checkpoint is that tree's head (another server appended meanwhile, or
    // the database was rolled back under it, otherwise).
    if let Some(tree) = cached {
        let newest = checkpoint(tx, org, None)?.map(|c| (c.size, c.root));
        if newest == Some((tree.size(), tree.root())) || (size == 0 && newest.is_none()) {
            return Ok(Some(tree));
        }
    }
    match check(tx, &key, &floors, org, size) {
        Ok(tree) => Ok(Some(tree)),
        Err(StoreError::Corrupt(why)) => {
            grown.refused.insert(org.to_owned(), why);
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Reads `org`'s tree of `size` leaves and checks it against its newest checkpoint (which
/// must open with the key and give the root of the stored tree) and against `floor`, the
/// head remembered outside the database (which the stored history must extend); stores the
/// tiles of events no checkpoint covered yet. `Corrupt` says why the log must not be signed.
fn check(
    tx: &mut Transaction<'_>,
    key: &SignerKey,
    floors: &[(u64, Hash)],
    org: &str,
    size: u64,
) -> Result<RootBuilder> {
    let corrupt = StoreError::Corrupt;
    let signed = match checkpoint(tx, org, None)? {
        None => (0, merkle::empty_root()),
        Some(c) => {
            let opened = open(&c.note, &key.verifier())
                .map_err(|e| corrupt(format!("the newest stored checkpoint does not open: {e}")))?;
            if opened.origin != origin(&key.name, org)
                || opened.size != c.size
                || opened.root != c.root
            {
                return Err(corrupt(
                    "the newest stored checkpoint does not match its signed note".into(),
                ));
            }
            (c.size, c.root)
        }
    };
    if signed.0 > size {
        return Err(corrupt(format!(
            "the log holds {size} events but a signed checkpoint covers {}",
            signed.0
        )));
    }
    for &(was, root) in floors {
        if was > signed.0 {
            return Err(corrupt(format!(
                "checkpoints up to {was} events were signed, but the store's newest covers {}",
                signed.0
            )));
        }
        // The head signed then must be a prefix of this history: its checkpoint is still
        // stored with that root (checkpoints are never deleted; its leaves may be pruned).
        let same = if was == signed.0 {
            root == signed.1
        } else {
            was == 0 || checkpoint(tx, org, Some(was))?.is_some_and(|c| c.root == root)
        };
        if !same {
            return Err(corrupt(format!(
                "the stored history does not give the root signed before at size {was}"
            )));
        }
    }
    let ahead: bool = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM tiles WHERE org = $1 \
             AND idx >= ($2::bigint >> level))",
            &[&org, &(size as i64)],
        )
        .map_err(unavailable)?
        .get(0);
    if ahead {
        return Err(corrupt(format!(
            "a stored tile covers events past the log's {size}"
        )));
    }
    if signed.0 > 0 && Tree::open(tx, org, signed.0)?.root()? != signed.1 {
        return Err(corrupt(format!(
            "the stored tree no longer gives the signed root of size {}",
            signed.0
        )));
    }
    extend_tiles(tx, org, signed.0, size)?;
    RootBuilder::at(&Tree::open(tx, org, size)?, size)
}

/// Signs the head of `tree` as `org`'s newest checkpoint, in `tx`.
fn sign(
    tx: &mut Transaction<'_>,
    key: &SignerKey,
    org: &str,
    tree: &RootBuilder,
    at: Timestamp,
) -> Result<SignedCheckpoint> {
    let checkpoint = SignedCheckpoint {
        org: org.to_owned(),
        size: tree.size(),
        root: tree.root(),
        note: key.sign(&Checkpoint {
            origin: origin(&key.name, org),
            size: tree.size(),
            root: tree.root(),
        }),
        created_at: at,
    };
    add_checkpoint(tx, &checkpoint)?;
    Ok(checkpoint)
}

/// From now on, signs every log an append touches; first checks every log and signs the
/// events no checkpoint covers yet. Returns the logs refused (org, why).
pub(super) fn sign_logs(
    conn: &mut postgres::Client,
    ctx: &Context,
    key: Arc<SignerKey>,
    remembered: HashMap<String, (u64, Hash)>,
) -> Result<Vec<(String, String)>> {
    let orgs: Vec<String> = conn
        .query("SELECT org FROM logs ORDER BY org", &[])
        .map_err(unavailable)?
        .into_iter()
        .map(|r| r.get(0))
        .collect();
    let mut grown = Grown::default();
    for org in orgs {
        // One transaction per log: each takes only its own row lock.
        let mut tx = conn.transaction().map_err(unavailable)?;
        let (size, last_received) = lock_log(&mut tx, &org)?;
        let floors: Vec<(u64, Hash)> = remembered.get(&org).copied().into_iter().collect();
        match check(&mut tx, &key, &floors, &org, size) {
            Ok(tree) => {
                let newest = checkpoint(&mut tx, &org, None)?;
                if size > 0 && newest.is_none_or(|c| c.size != size) {
                    let at = (ctx.clock)().max(last_received);
                    let head = sign(&mut tx, &key, &org, &tree, at)?;
                    grown.heads.insert(org.clone(), (head.size, head.root));
                }
                grown.trees.insert(org, tree);
            }
            Err(StoreError::Corrupt(why)) => {
                grown.refused.insert(org, why);
            }
            Err(e) => return Err(e),
        }
        tx.commit().map_err(unavailable)?;
    }
    let refused: Vec<(String, String)> = grown
        .refused
        .iter()
        .map(|(o, w)| (o.clone(), w.clone()))
        .collect();
    *ctx.signing.lock().expect("signing lock") = Some(Signing {
        key,
        remembered,
        trees: HashMap::new(),
        heads: HashMap::new(),
        refused: HashMap::new(),
    });
    ctx.committed(&grown);
    Ok(refused)
}

/// An org's tree of `size` leaves, read on a connection: leaves are `events.hash`, tiles are
/// `tiles`; the algorithms are `trail_core::merkle`'s.
pub(super) struct Tree<'c, C: GenericClient> {
    conn: RefCell<&'c mut C>,
    org: String,
    size: u64,
    /// Leaves below this were pruned: only their tiles remain.
    pruned_below: u64,
}

/// `org`'s log size and where it was pruned to.
pub(super) fn extent(c: &mut impl GenericClient, org: &str) -> Result<(u64, u64)> {
    let row = c
        .query_opt(
            "SELECT size, pruned_below FROM logs WHERE org = $1",
            &[&org],
        )
        .map_err(unavailable)?
        .ok_or_else(|| StoreError::UnknownOrg(org.to_owned()))?;
    Ok((row.get::<_, i64>(0) as u64, row.get::<_, i64>(1) as u64))
}

impl<'c, C: GenericClient> Tree<'c, C> {
    /// The tree of the first `size` events; `size` may not exceed the log.
    pub fn open(conn: &'c mut C, org: &str, size: u64) -> Result<Tree<'c, C>> {
        let (have, pruned_below) = extent(conn, org)?;
        if size > have {
            return Err(StoreError::NotFound(format!(
                "a tree of {size} events in org {org:?}, whose log holds {have}"
            )));
        }
        Ok(Tree {
            conn: RefCell::new(conn),
            org: org.to_owned(),
            size,
            pruned_below,
        })
    }

    pub fn root(&self) -> Result<Hash> {
        merkle::root(self, self.size)
    }

    pub fn frontier(&self) -> Result<Vec<Hash>> {
        Ok(RootBuilder::at(self, self.size)?.frontier())
    }

    pub fn inclusion(&self, seq: u64) -> Result<Vec<Hash>> {
        if seq >= self.size {
            return Err(StoreError::NotFound(format!(
                "seq {seq} in a tree of {} events",
                self.size
            )));
        }
        merkle::inclusion_proof(self, seq, self.size)
    }

    pub fn consistency(&self, from: u64) -> Result<Vec<Hash>> {
        if from > self.size {
            return Err(StoreError::NotFound(format!(
                "a tree of {from} events before one of {}",
                self.size
            )));
        }
        merkle::consistency_proof(self, from, self.size)
    }

    fn corrupt(&self, what: &str) -> StoreError {
        StoreError::Corrupt(format!("the tree of org {:?}: {what}", self.org))
    }
}

impl<C: GenericClient> HashReader for Tree<'_, C> {
    type Error = StoreError;

    fn leaves(&self, start: u64, end: u64) -> Result<Vec<Hash>> {
        if start < self.pruned_below {
            return Err(StoreError::NotFound(format!(
                "seq {start} of org {:?}, pruned under its retention (the log starts at {}),",
                self.org, self.pruned_below
            )));
        }
        let rows = self
            .conn
            .borrow_mut()
            .query(
                "SELECT hash FROM events WHERE org = $1 AND seq >= $2 AND seq < $3 ORDER BY seq",
                &[&self.org, &(start as i64), &(end as i64)],
            )
            .map_err(unavailable)?;
        if rows.len() as u64 != end - start {
            return Err(self.corrupt(&format!("seqs {start}..{end} are not all there")));
        }
        rows.into_iter()
            .map(|r| hash_of(r.get(0), || "a leaf hash".into()))
            .collect()
    }

    fn stored(&self, level: u32, start: u64, end: u64) -> Result<Vec<Option<Hash>>> {
        let mut out = vec![None; (end - start) as usize];
        let rows = self
            .conn
            .borrow_mut()
            .query(
                "SELECT idx, hash FROM tiles WHERE org = $1 AND level = $2 AND idx >= $3 \
                 AND idx < $4",
                &[&self.org, &(level as i32), &(start as i64), &(end as i64)],
            )
            .map_err(unavailable)?;
        for r in rows {
            let idx = r.get::<_, i64>(0) as u64;
            out[(idx - start) as usize] = Some(hash_of(r.get(1), || "a tile hash".into())?);
        }
        Ok(out)
    }
}

/// Stores every tile that leaves `[0, size)` complete and that the first `signed` leaves
/// did not, lowest level first. Each is computed from the level below; one already stored
/// must agree, or the tree was tampered with.
pub(super) fn extend_tiles(
    tx: &mut impl GenericClient,
    org: &str,
    signed: u64,
    size: u64,
) -> Result<()> {
    let mut level = TILE_HEIGHT;
    let mut new = Vec::new();
    {
        let tree = Tree::open(tx, org, size)?;
        while level < 64 && size >> level > 0 {
            let stored = tree.stored(level, signed >> level, size >> level)?;
            for (i, have) in stored.into_iter().enumerate() {
                let idx = (signed >> level) + i as u64;
                let hash = merkle::subtree_from_below(&tree, level, idx)?;
                match have {
                    Some(h) if h == hash => {}
                    Some(_) => {
                        return Err(tree.corrupt(&format!(
                            "the stored tile {idx} of level {level} does not match the leaves"
                        )));
                    }
                    None => new.push((level, idx, hash)),
                }
            }
            level += TILE_HEIGHT;
        }
    }
    for (level, idx, hash) in new {
        tx.execute(
            "INSERT INTO tiles (org, level, idx, hash) VALUES ($1, $2, $3, $4)",
            &[&org, &(level as i32), &(idx as i64), &hash.as_slice()],
        )
        .map_err(unavailable)?;
    }
    Ok(())
}

fn to_checkpoint(org: &str, r: &postgres::Row) -> Result<SignedCheckpoint> {
    Ok(SignedCheckpoint {
        org: org.to_owned(),
        size: r.get::<_, i64>(0) as u64,
        root: hash_of(r.get(1), || format!("a checkpoint root of org {org:?}"))?,
        note: r.get(2),
        created_at: Timestamp(r.get(3)),
    })
}

/// Stores a checkpoint.
pub(super) fn add_checkpoint(tx: &mut impl GenericClient, c: &SignedCheckpoint) -> Result<()> {
    extent(tx, &c.org)?;
    tx.execute(
        "INSERT INTO checkpoints (org, size, root, note, created_at) VALUES ($1, $2, $3, $4, $5)",
        &[
            &c.org,
            &(c.size as i64),
            &c.root.as_slice(),
            &c.note,
            &c.created_at.micros(),
        ],
    )
    .map_err(|e| super::constraint(e, || format!("checkpoint {} of org {:?}", c.size, c.org)))?;
    Ok(())
}

/// The newest checkpoint, or the one of exactly `size`.
pub(super) fn checkpoint(
    c: &mut impl GenericClient,
    org: &str,
    size: Option<u64>,
) -> Result<Option<SignedCheckpoint>> {
    extent(c, org)?;
    let row = match size {
        Some(s) => c.query_opt(
            "SELECT size, root, note, created_at FROM checkpoints WHERE org = $1 AND size = $2",
            &[&org, &(s.min(i64::MAX as u64) as i64)],
        ),
        None => c.query_opt(
            "SELECT size, root, note, created_at FROM checkpoints WHERE org = $1 \
             ORDER BY size DESC LIMIT 1",
            &[&org],
        ),
    }
    .map_err(unavailable)?;
    row.map(|r| to_checkpoint(org, &r)).transpose()
}

/// The newest checkpoint of at most `size` events.
pub(super) fn checkpoint_at_most(
    c: &mut impl GenericClient,
    org: &str,
    size: u64,
) -> Result<Option<SignedCheckpoint>> {
    extent(c, org)?;
    c.query_opt(
        "SELECT size, root, note, created_at FROM checkpoints WHERE org = $1 AND size <= $2 \
         ORDER BY size DESC LIMIT 1",
        &[&org, &(size.min(i64::MAX as u64) as i64)],
    )
    .map_err(unavailable)?
    .map(|r| to_checkpoint(org, &r))
    .transpose()
}

/// Checkpoints of more than `after` events, oldest first, at most `limit`.
pub(super) fn checkpoints(
    c: &mut impl GenericClient,
    org: &str,
    after: u64,
    limit: usize,
) -> Result<Vec<SignedCheckpoint>> {
    extent(c, org)?;
    c.query(
        "SELECT size, root, note, created_at FROM checkpoints WHERE org = $1 AND size > $2 \
         ORDER BY size LIMIT $3",
        &[
            &org,
            &(after.min(i64::MAX as u64) as i64),
            &(limit.min(i64::MAX as usize) as i64),
        ],
    )
    .map_err(unavailable)?
    .iter()
    .map(|r| to_checkpoint(org, r))
    .collect()
}

/// Deletes `org`'s events below `below` (see [`crate::Store::prune`]) through the
/// database's `trail_prune`: the server's own role cannot delete events otherwise.
pub(super) fn prune(tx: &mut Transaction<'_>, org: &str, below: u64) -> Result<crate::Pruned> {
    lock_log(tx, org)?;
    let now = super::identity::retention(tx, org)?;
    if now.legal_hold {
        return Err(StoreError::Refused(format!(
            "org {org:?} is under legal hold: nothing of it is pruned"
        )));
    }
    let signed = checkpoint(tx, org, None)?.map_or(0, |c| c.size);
    if !below.is_multiple_of(crate::PRUNE_ALIGN) || below > signed {
        return Err(StoreError::Refused(format!(
            "cannot prune org {org:?} below seq {below}: a prune stops at a multiple of {} covered by a signed checkpoint ({signed} events)",
            crate::PRUNE_ALIGN
        )));
    }
    let from = now.pruned_below;
    if below <= from {
        return Ok(crate::Pruned { from, to: from });
    }
    let (from_i, below_i) = (from as i64, below as i64);
    // The per-minute tallies stop counting what goes: exactly for the events' counts; the
    // API-call tallies (whose latency sketches cannot be taken apart) before the oldest
    // minute that remains.
    tx.execute(
        "WITH gone AS (SELECT floor(ts::numeric / $4::bigint)::bigint AS minute, count(*) AS n \
                       FROM events WHERE org = $1 AND seq >= $2 AND seq < $3 GROUP BY 1) \
         UPDATE event_minutes SET n = event_minutes.n - gone.n FROM gone \
         WHERE event_minutes.org = $1 AND event_minutes.minute = gone.minute",
        &[&org, &from_i, &below_i, &MINUTE_US],
    )
    .map_err(unavailable)?;
    tx.execute(
        "DELETE FROM event_minutes WHERE org = $1 AND n <= 0",
        &[&org],
    )
    .map_err(unavailable)?;
    // The delete itself is the database's function, which checks the prune again.
    tx.execute("SELECT trail_prune($1, $2)", &[&org, &below_i])
        .map_err(unavailable)?;
    let oldest: Option<i64> = tx
        .query_one(
            "SELECT min(ts) FROM events WHERE org = $1 AND seq >= $2",
            &[&org, &below_i],
        )
        .map_err(unavailable)?
        .get(0);
    tx.execute(
        "DELETE FROM perf_minutes WHERE org = $1 AND minute < $2",
        &[
            &org,
            &oldest.map_or(i64::MAX, |ts| ts.div_euclid(MINUTE_US)),
        ],
    )
    .map_err(unavailable)?;
    Ok(crate::Pruned { from, to: below })
}
