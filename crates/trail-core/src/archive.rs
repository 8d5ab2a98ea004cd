//! Weekly archives: what one holds, its manifest, and the offline check of one.
//!
//! An org's archive of an ISO week (UTC, Monday to Sunday) holds the events its log
//! **received** that week: the seqs from the size of the last checkpoint signed before the
//! week began to the size of the last one signed before it ended. Consecutive archives
//! therefore meet exactly, every event is in exactly one archive, and an archive never
//! changes once its week has ended. The events go into one JSON file per day of their
//! `timestamp` (`2026-11-16.json` … `2026-11-22.json`, an array, oldest first, `[]` for a
//! day with none); an event received in the week but stamped another day (sent late, or by a
//! fast clock) goes into a file of its own day beside them.
//!
//! The proof is constructive. The manifest carries the right edge of the tree before the
//! week (its complete subtrees, which fold to the previous checkpoint's root) and the week's
//! leaf hashes (`leaves.bin`); appending the leaves to the edge must give the root the week's
//! checkpoint signs. Each record carries its canonical bytes, whose hash must be its leaf,
//! and whose decoding must render as the record itself. So a changed byte anywhere is found
//! and named by file and record, a missing or repeated event by seq, and two archives of
//! consecutive weeks chain through the checkpoint they share.
//!
//! Nothing here opens files: callers hand in a reader of each part of the ZIP, which is
//! read once, front to back. A day file is cut into records as it is read and checked a
//! batch of records at a time (on several threads if asked), so a check holds a few batches,
//! not a day; the week's leaves are held (32 bytes per event), since records come in time
//! order and leaves in seq order.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{BufReader, Read};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use time::{Date, Duration, Weekday};

use crate::checkpoint::{self, Checkpoint, VerifierKey};
use crate::event::Event;
use crate::merkle::{Hash, RootBuilder, empty_root};
use crate::{Timestamp, canonical};

/// The manifest's name in the ZIP.
pub const MANIFEST: &str = "manifest.json";
/// The week's leaf hashes, 32 bytes each, in seq order.
pub const LEAVES: &str = "leaves.bin";
/// What [`Manifest::format`] says.
pub const FORMAT: &str = "trail-archive/1";

const DAY_US: i64 = 86_400_000_000;

/// An ISO week, `2026-W47`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Week {
    monday: Date,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid week {0:?}: expected an ISO week such as 2026-W47")]
pub struct WeekError(String);

impl Week {
    /// The week holding `t` (UTC).
    pub fn containing(t: Timestamp) -> Week {
        let date = t.to_offset_datetime().date();
        let back = i64::from(date.weekday().number_days_from_monday());
        Week {
            monday: date - Duration::days(back),
        }
    }

    pub fn parse(s: &str) -> Result<Week, WeekError> {
        let bad = || WeekError(s.to_owned());
        let (year, week) = s.split_once("-W").ok_or_else(bad)?;
        let digits = |p: &str, n: usize| p.len() == n && p.bytes().all(|b| b.is_ascii_digit());
        if !digits(year, 4) || !digits(week, 2) {
            return Err(bad());
        }
        let year: i32 = year.parse().map_err(|_| bad())?;
        let week: u8 = week.parse().map_err(|_| bad())?;
        // Years whose weeks all lie within the calendar's range (its last days have no
        // following Monday to end a week).
        if !(1..=9998).contains(&year) {
            return Err(bad());
        }
        let monday = Date::from_iso_week_date(year, week, Weekday::Monday).map_err(|_| bad())?;
        Ok(Week { monday })
    }

    /// Monday 00:00 UTC.
    pub fn start(self) -> Timestamp {
        Timestamp(self.monday.midnight().assume_utc().unix_timestamp() * 1_000_000)
    }

    /// The next Monday 00:00 UTC: the week is `[start, end)`.
    pub fn end(self) -> Timestamp {
        Timestamp(self.start().micros() + 7 * DAY_US)
    }

    pub fn previous(self) -> Week {
        Week {
            monday: self.monday - Duration::days(7),
        }
    }

    pub fn next(self) -> Week {
        Week {
            monday: self.monday + Duration::days(7),
        }
    }

    /// The names of its seven day files, Monday first.
    pub fn day_files(self) -> [String; 7] {
        std::array::from_fn(|i| day_name(self.monday + Duration::days(i as i64)))
    }
}

impl fmt::Display for Week {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (year, week, _) = self.monday.to_iso_week_date();
        write!(f, "{year:04}-W{week:02}")
    }
}

fn day_name(d: Date) -> String {
    format!(
        "{:04}-{:02}-{:02}.json",
        d.year(),
        u8::from(d.month()),
        d.day()
    )
}

/// The day file an event stamped `t` goes into.
pub fn day_file(t: Timestamp) -> String {
    day_name(t.to_offset_datetime().date())
}

/// One event as an archive holds it: its API record, plus its canonical bytes (base64),
/// from which the verifier recomputes its leaf.
pub fn record(event: &Event, hash: &Hash) -> Value {
    let mut v = serde_json::to_value(event.record(hash)).expect("a record serializes");
    v["canonical"] = Value::String(STANDARD.encode(canonical::encode(event)));
    v
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub format: String,
    pub org: String,
    pub week: String,
    /// The week had not ended when this was made: later events of it are not here.
    pub partial: bool,
    pub created_at: String,
    /// The key that signed the checkpoints, as `trail serve` prints it. For information:
    /// verify against the key you trust.
    pub log_key: String,
    /// The archive holds seqs `firstSeq..endSeq`.
    pub first_seq: u64,
    pub end_seq: u64,
    /// The log before the week: the tree of `firstSeq` events.
    pub previous: Previous,
    /// The signed checkpoint of `endSeq` events (a C2SP signed note).
    pub checkpoint: String,
    pub files: Vec<FileEntry>,
    pub leaves: Digest256,
    /// The log key's signature over this manifest (see [`Manifest::sign`]): what the
    /// checkpoints do not sign (the week, whether it is partial, the files' names and
    /// digests) is signed here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// The first line of a manifest's signed note.
const SIGNED_AS: &str = "trail archive manifest";

impl Manifest {
    /// The text a manifest's signature covers: what it is, its log, its week, and the
    /// SHA-256 of the manifest as written without its signature.
    fn signed_text(&self, log_name: &str) -> String {
        let unsigned = Manifest {
            signature: None,
            ..self.clone()
        };
        let digest = Sha256::digest(serde_json::to_vec_pretty(&unsigned).expect("serializes"));
        format!(
            "{SIGNED_AS}\n{}\n{}\n{}\n",
            checkpoint::origin(log_name, &self.org),
            self.week,
            hex::encode(digest)
        )
    }

    /// Signs the manifest with the log's key (its `signature`).
    pub fn sign(&mut self, key: &checkpoint::SignerKey) {
        self.signature = None;
        self.signature = Some(key.sign_text(&self.signed_text(&key.name)));
    }

    /// Checks the manifest's signature under `key`.
    fn check_signature(&self, key: &VerifierKey) -> Result<(), ArchiveError> {
        let note = self.signature.as_deref().ok_or_else(|| {
            ArchiveError(format!(
                "{MANIFEST} is not signed: it cannot be told from one made up"
            ))
        })?;
        let text = checkpoint::open_text(note, key)
            .map_err(|e| ArchiveError(format!("{MANIFEST}: its signature: {e}")))?;
        if text != self.signed_text(&key.name) {
            return fail(format!(
                "{MANIFEST} was changed: it is not the manifest its signature covers"
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Previous {
    pub size: u64,
    /// Its root, hex.
    pub root: String,
    /// Its signed checkpoint, when the log had one (none for an empty log).
    pub checkpoint: Option<String>,
    /// The complete subtrees on its right edge, largest first, hex.
    pub frontier: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileEntry {
    pub name: String,
    pub sha256: String,
    pub events: u64,
    /// The lowest and highest seq in the file; none when it is empty.
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Digest256 {
    pub name: String,
    pub sha256: String,
}

/// What an archive was found to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub org: String,
    pub week: String,
    pub partial: bool,
    pub events: u64,
    pub first_seq: u64,
    pub end_seq: u64,
    pub checkpoint: Checkpoint,
}

/// Why an archive does not verify. The message names the file, and the record where one
/// is at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ArchiveError(pub String);

fn fail<T>(msg: impl Into<String>) -> Result<T, ArchiveError> {
    Err(ArchiveError(msg.into()))
}

fn unhex(what: &str, s: &str) -> Result<Hash, ArchiveError> {
    hex::decode(s)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| ArchiveError(format!("{MANIFEST}: {what} is not a hex SHA-256")))
}

/// The offline check of one archive: [`Self::new`] with the manifest and the leaves, then
/// [`Self::file`] for each day file, then [`Self::finish`].
pub struct ArchiveVerifier {
    manifest: Manifest,
    checkpoint: Checkpoint,
    leaves: Vec<Hash>,
    seen: Vec<bool>,
    checked: BTreeMap<String, ()>,
    workers: usize,
}

impl ArchiveVerifier {
    /// Checks the manifest, the checkpoints' signatures under `key`, and that the leaves
    /// extend the tree before the week to the signed root.
    pub fn new(
        manifest_bytes: &[u8],
        leaves_part: impl Read,
        key: &VerifierKey,
    ) -> Result<ArchiveVerifier, ArchiveError> {
        let manifest: Manifest = serde_json::from_slice(manifest_bytes)
            .map_err(|e| ArchiveError(format!("{MANIFEST} does not read as a manifest: {e}")))?;
        if manifest.format != FORMAT {
            return fail(format!(
                "{MANIFEST}: format {:?}, this Trail reads {FORMAT:?}",
                manifest.format
            ));
        }
        if manifest.leaves.name != LEAVES {
            return fail(format!(
                "{MANIFEST}: the leaves are {:?}, an archive's are {LEAVES:?}",
                manifest.leaves.name
            ));
        }
        let week =
            Week::parse(&manifest.week).map_err(|e| ArchiveError(format!("{MANIFEST}: {e}")))?;
        manifest.check_signature(key)?;
        let origin = checkpoint::origin(&key.name, &manifest.org);
        let open = |note: &str, what: &str| -> Result<Checkpoint, ArchiveError> {
            let c = checkpoint::open(note, key)
                .map_err(|e| ArchiveError(format!("{MANIFEST}: the {what} checkpoint: {e}")))?;
            if c.origin != origin {
                return fail(format!(
                    "{MANIFEST}: the {what} checkpoint is of log {:?}, not org {:?}'s",
                    c.origin, manifest.org
                ));
            }
            Ok(c)
        };
        let signed = open(&manifest.checkpoint, "week's")?;
        if signed.size != manifest.end_seq {
            return fail(format!(
                "{MANIFEST}: the week's checkpoint covers {} events, not endSeq {}",
                signed.size, manifest.end_seq
            ));
        }
        let prev = &manifest.previous;
        if prev.size != manifest.first_seq || manifest.first_seq > manifest.end_seq {
            return fail(format!(
                "{MANIFEST}: seqs {}..{} do not follow the previous tree of {} events",
                manifest.first_seq, manifest.end_seq, prev.size
            ));
        }
        let prev_root = unhex("previous.root", &prev.root)?;
        if let Some(note) = &prev.checkpoint {
            let c = open(note, "previous")?;
            if c.size != prev.size || c.root != prev_root {
                return fail(format!(
                    "{MANIFEST}: the previous checkpoint is not the tree of {} events it names",
                    prev.size
                ));
            }
        } else if prev.size != 0 {
            return fail(format!(
                "{MANIFEST}: the previous tree of {} events has no signed checkpoint",
                prev.size
            ));
        }
        let frontier = prev
            .frontier
            .iter()
            .map(|h| unhex("previous.frontier", h))
            .collect::<Result<Vec<_>, _>>()?;
        let mut builder = RootBuilder::from_frontier(prev.size, &frontier).ok_or_else(|| {
            ArchiveError(format!(
                "{MANIFEST}: the previous tree's edge has {} subtrees, a tree of {} events has {}",
                frontier.len(),
                prev.size,
                prev.size.count_ones()
            ))
        })?;
        if builder.root() != prev_root && !(prev.size == 0 && prev_root == empty_root()) {
            return fail(format!(
                "{MANIFEST}: the previous tree's edge does not give its root: it is not the log before this week"
            ));
        }
        let count = manifest.end_seq - manifest.first_seq;
        let unreadable = |e: std::io::Error| ArchiveError(format!("{LEAVES} does not read: {e}"));
        let mut part = BufReader::with_capacity(READ_BUFFER, Hashing::new(leaves_part));
        // The count is the signed manifest's: allocated once (a vector grown by doubling
        // holds both its old and new buffer as it grows), up to 64 Mi leaves (2 GiB); past
        // that it grows with what is read.
        let mut leaves: Vec<Hash> = Vec::with_capacity(count.min(1 << 26) as usize);
        let mut leaf = [0u8; 32];
        while (leaves.len() as u64) < count {
            match part.read_exact(&mut leaf) {
                Ok(()) => {
                    builder.push(leaf);
                    leaves.push(leaf);
                }
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(unreadable(e)),
            }
        }
        std::io::copy(&mut part, &mut std::io::sink()).map_err(unreadable)?;
        let part = part.into_inner();
        let read = part.read;
        if part.digest() != manifest.leaves.sha256 {
            return fail(format!(
                "{LEAVES} was changed: its SHA-256 is not the manifest's"
            ));
        }
        if read != count * 32 {
            return fail(format!(
                "{LEAVES} holds {read} bytes, not 32 for each of {count} events"
            ));
        }
        if builder.root() != signed.root {
            return fail(format!(
                "{LEAVES}: the week's leaves do not extend the previous tree to the signed root of {} events",
                signed.size
            ));
        }
        let mut days: Vec<String> = week.day_files().into();
        days.sort();
        for d in &days {
            if !manifest.files.iter().any(|f| &f.name == d) {
                return fail(format!("{MANIFEST}: the week's day file {d} is not listed"));
            }
        }
        Ok(ArchiveVerifier {
            seen: vec![false; leaves.len()],
            leaves,
            checkpoint: signed,
            manifest,
            checked: BTreeMap::new(),
            workers: 1,
        })
    }

    /// Checks each day file's records on `n` threads (one by default), at most
    /// [`MAX_WORKERS`]: an offline check gives it its cores; a server checking what it
    /// built, beside its other work, one.
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n.clamp(1, MAX_WORKERS);
        self
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Checks one day file listed in the manifest, read from `part`: every record, then the
    /// file's digest. The file is read once, front to back, and cut into its records as it
    /// is read (a batch of them at a time); each record is checked on its own, on one of
    /// [`Self::workers`] threads, and what needs the records in order (each seq once, oldest
    /// first) is checked here, in order, so the record named is the first that fails.
    pub fn file(&mut self, name: &str, part: impl Read) -> Result<(), ArchiveError> {
        let Some(entry) = self.manifest.files.iter().find(|f| f.name == name).cloned() else {
            return fail(format!("{name} is in the archive but not in {MANIFEST}"));
        };
        if self.checked.insert(name.to_owned(), ()).is_some() {
            return fail(format!("{name} is in the archive twice"));
        }
        let mut cutter = Cutter::new(Hashing::new(part));
        let check = Check {
            name,
            first: self.manifest.first_seq,
            end: self.manifest.end_seq,
            leaves: &self.leaves,
        };
        let mut order = Order {
            name,
            first: self.manifest.first_seq,
            seen: &mut self.seen,
            count: 0,
            seqs: None,
            prev: None,
        };
        let cut = each_batch(&mut cutter, self.workers, &check, |checked| {
            order.apply(checked)
        })?;
        if let Err(e) = cut {
            return Err(match e {
                Cut::Io(e) => ArchiveError(format!("{name} does not read: {e}")),
                Cut::Long => ArchiveError(format!(
                    "{name} does not read: a record is longer than {MAX_RECORD} bytes"
                )),
                Cut::Layout(why) => ArchiveError(format!(
                    "{name} was changed: it does not read as an array of records: {why}, after {} records",
                    cutter.cut
                )),
            });
        }
        let (count, seqs) = (order.count, order.seqs);
        let digest_ok = cutter.inner.digest() == entry.sha256;
        if count != entry.events {
            return fail(format!(
                "{name} holds {count} records, {MANIFEST} says {}",
                entry.events
            ));
        }
        let listed = entry.first_seq.zip(entry.last_seq);
        if seqs != listed || entry.first_seq.is_some() != entry.last_seq.is_some() {
            let says = |s: Option<(u64, u64)>| {
                s.map_or("no seqs".to_owned(), |(lo, hi)| {
                    format!("seqs {lo} to {hi}")
                })
            };
            return fail(format!(
                "{name} holds {}, {MANIFEST} says {}",
                says(seqs),
                says(listed)
            ));
        }
        if !digest_ok {
            return fail(format!(
                "{name} was changed: its SHA-256 is not the manifest's, though every record still verifies (its layout changed)"
            ));
        }
        Ok(())
    }

    /// Every listed file was checked and every seq of the week found.
    pub fn finish(self) -> Result<Verified, ArchiveError> {
        for f in &self.manifest.files {
            if !self.checked.contains_key(&f.name) {
                return fail(format!(
                    "{} is listed in {MANIFEST} but not in the archive",
                    f.name
                ));
            }
        }
        if let Some(i) = self.seen.iter().position(|s| !s) {
            return fail(format!(
                "seq {} is missing: the signed tree holds it but no day file does",
                self.manifest.first_seq + i as u64
            ));
        }
        Ok(Verified {
            org: self.manifest.org.clone(),
            week: self.manifest.week.clone(),
            partial: self.manifest.partial,
            events: self.manifest.end_seq - self.manifest.first_seq,
            first_seq: self.manifest.first_seq,
            end_seq: self.manifest.end_seq,
            checkpoint: self.checkpoint,
        })
    }
}

/// Bytes read from a part at a time.
const READ_BUFFER: usize = 1 << 16;

/// The longest record a day file may hold, in bytes. An event is at most 256 KiB of JSON at
/// ingest; its record is that rendered again beside its canonical bytes in base64, well
/// under this. A record is held whole before it is checked: without a bound, one made of a
/// single long string (which a ZIP compresses a thousandfold) would be held whole.
const MAX_RECORD: usize = 4 << 20;

/// The most threads [`ArchiveVerifier::workers`] checks records on. Each holds up to three
/// batches and parses one record: a batch is about [`BATCH_BYTES`] (at most that and a
/// record), and a record that is not as a server writes it is parsed whole, which for one of
/// [`MAX_RECORD`] made to be costly takes some tens of MiB.
pub const MAX_WORKERS: usize = 4;

/// Records cut at a time, and their bytes at most (a batch holds at least one record).
const BATCH_RECORDS: usize = 1024;
const BATCH_BYTES: usize = 1 << 20;

/// What checking a record needs of the verifier, shared by the threads that check them.
struct Check<'a> {
    name: &'a str,
    first: u64,
    end: u64,
    leaves: &'a [Hash],
}

/// What a batch of records was found to be: the seq and time of each that verifies on its
/// own, in order, up to the first that does not.
struct Checked {
    /// The index in the file of the batch's first record.
    first: u64,
    ok: Vec<(u64, Timestamp)>,
    failed: Option<ArchiveError>,
}

impl Check<'_> {
    fn batch(&self, batch: &Batch, day: &mut Option<i64>) -> Checked {
        let mut ok = Vec::with_capacity(batch.ends.len());
        for (i, bytes) in batch.records() {
            match self.record(i, bytes, day) {
                Ok(r) => ok.push(r),
                Err(e) => {
                    return Checked {
                        first: batch.first,
                        ok,
                        failed: Some(e),
                    };
                }
            }
        }
        Checked {
            first: batch.first,
            ok,
            failed: None,
        }
    }

    /// Checks the `i`th record of the file on its own, and gives its seq and time. `day`
    /// is the day (in days since 1970) of a record already found to be of this file's.
    fn record(
        &self,
        i: u64,
        bytes: &[u8],
        day: &mut Option<i64>,
    ) -> Result<(u64, Timestamp), ArchiveError> {
        let name = self.name;
        let parse = || {
            serde_json::from_slice::<Value>(bytes).map_err(|e| {
                ArchiveError(format!(
                    "{name} was changed: record {i} does not read as JSON: {e}"
                ))
            })
        };
        // The two fields the record is checked from, read without the rest (which is
        // compared below as bytes, in the usual case); a record they cannot be read from so
        // is read whole.
        let head = serde_json::from_slice::<Head<'_>>(bytes).ok();
        let parsed = match head {
            Some(_) => None,
            None => Some(parse()?),
        };
        let at = |what: &str| ArchiveError(format!("{name}: record {i}{what}"));
        let (seq, canonical) = match (&head, &parsed) {
            (Some(h), _) => (h.seq, Some(h.canonical)),
            (None, Some(rec)) => (
                rec["seq"]
                    .as_u64()
                    .ok_or_else(|| at(" has no seq: it was changed"))?,
                rec["canonical"].as_str(),
            ),
            (None, None) => unreachable!("a record is read one way or the other"),
        };
        let at = |what: &str| ArchiveError(format!("{name}: record {i} (seq {seq}) {what}"));
        let bytes_of_event = canonical
            .and_then(|s| STANDARD.decode(s).ok())
            .ok_or_else(|| at("was changed: its canonical bytes are not base64"))?;
        let event = canonical::decode(&bytes_of_event).map_err(|e| {
            at(&format!(
                "was changed: its canonical bytes do not decode: {e}"
            ))
        })?;
        let first = self.first;
        if event.seq != seq || seq < first || seq >= self.end {
            return Err(at(&format!(
                "is not one of this archive's seqs {first}..{}",
                self.end
            )));
        }
        let leaf = canonical::leaf_hash(&event);
        if leaf != self.leaves[(seq - first) as usize] {
            return Err(at(
                "was changed: its content does not give its leaf in the signed tree",
            ));
        }
        // The record must render its canonical content: byte for byte as a server writes
        // it, or else (laid out otherwise) equal to it as JSON.
        let rendered = record(&event, &leaf);
        let written = serde_json::to_vec(&rendered).expect("a record serializes");
        if written != bytes {
            let rec = match parsed {
                Some(rec) => rec,
                None => parse()?,
            };
            if rendered != rec {
                return Err(at("was changed: it differs from its signed content"));
            }
        }
        let stamped = event.timestamp.micros().div_euclid(DAY_US);
        if *day != Some(stamped) {
            if day_file(event.timestamp) != name {
                return Err(at(&format!(
                    "is stamped {}, which is not this file's day",
                    event.timestamp
                )));
            }
            *day = Some(stamped);
        }
        Ok((seq, event.timestamp))
    }
}

/// The fields of a record that it is checked from.
#[derive(Deserialize)]
struct Head<'a> {
    seq: u64,
    canonical: &'a str,
}

/// What needs a file's records in order: each seq once, oldest first, and what the file
/// holds.
struct Order<'a> {
    name: &'a str,
    first: u64,
    seen: &'a mut [bool],
    count: u64,
    /// The lowest and highest seq read.
    seqs: Option<(u64, u64)>,
    prev: Option<(Timestamp, u64)>,
}

impl Order<'_> {
    fn apply(&mut self, checked: Checked) -> Result<(), ArchiveError> {
        let name = self.name;
        for (i, (seq, ts)) in (checked.first..).zip(checked.ok) {
            let at = |what: &str| ArchiveError(format!("{name}: record {i} (seq {seq}) {what}"));
            if std::mem::replace(&mut self.seen[(seq - self.first) as usize], true) {
                return Err(at("is in the archive twice"));
            }
            let key = (ts, seq);
            if self.prev.is_some_and(|p| p > key) {
                return Err(at("is out of order: records are oldest first"));
            }
            self.prev = Some(key);
            self.seqs = Some(
                self.seqs
                    .map_or((seq, seq), |(lo, hi)| (lo.min(seq), hi.max(seq))),
            );
            self.count += 1;
        }
        checked.failed.map_or(Ok(()), Err)
    }
}

/// Cuts `cutter`'s file into batches and checks them on `workers` threads (here, for one),
/// handing what each batch was found to be to `apply` in the file's order. Stops at the first
/// error `apply` gives (returned as the outer error) or at the end of what could be cut (the
/// inner result: how the cutting ended, once every record cut before was applied).
fn each_batch<R: Read>(
    cutter: &mut Cutter<R>,
    workers: usize,
    check: &Check<'_>,
    mut apply: impl FnMut(Checked) -> Result<(), ArchiveError>,
) -> Result<Result<(), Cut>, ArchiveError> {
    if workers <= 1 {
        let mut day = None;
        loop {
            let mut batch = Batch::default();
            let cut = cutter.fill(&mut batch);
            apply(check.batch(&batch, &mut day))?;
            match cut {
                Ok(true) => {}
                Ok(false) => return Ok(Ok(())),
                Err(e) => return Ok(Err(e)),
            }
        }
    }
    std::thread::scope(|s| {
        // One lane per thread; batches go round the lanes, so their results come back in
        // order by taking them round the lanes too. Each lane holds up to `DEPTH` batches,
        // so that a thread that finished its batch need not wait for the one before it to
        // be taken.
        const DEPTH: usize = 2;
        let lanes: Vec<_> = (0..workers)
            .map(|_| {
                let (to_lane, batches) = std::sync::mpsc::sync_channel::<Batch>(DEPTH);
                let (to_here, results) = std::sync::mpsc::sync_channel::<Checked>(DEPTH);
                s.spawn(move || {
                    let mut day = None;
                    for batch in batches {
                        if to_here.send(check.batch(&batch, &mut day)).is_err() {
                            break;
                        }
                    }
                });
                (to_lane, results)
            })
            .collect();
        let (mut sent, mut applied) = (0usize, 0usize);
        let mut ended = None;
        loop {
            while ended.is_none() && sent - applied < workers * DEPTH {
                let mut batch = Batch::default();
                let cut = cutter.fill(&mut batch);
                if !batch.ends.is_empty() {
                    // A lane stops only when this scope drops its receiver, below.
                    let _ = lanes[sent % workers].0.send(batch);
                    sent += 1;
                }
                match cut {
                    Ok(true) => {}
                    Ok(false) => ended = Some(Ok(())),
                    Err(e) => ended = Some(Err(e)),
                }
            }
            if applied == sent {
                return Ok(ended.unwrap_or(Ok(())));
            }
            let checked = lanes[applied % workers]
                .1
                .recv()
                .map_err(|_| ArchiveError("a thread checking records stopped".into()))?;
            applied += 1;
            apply(checked)?;
        }
    })
}

/// Records cut from a day file: their bytes one after another, and where each ends.
#[derive(Default)]
struct Batch {
    /// The index in the file of the first record.
    first: u64,
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl Batch {
    fn records(&self) -> impl Iterator<Item = (u64, &[u8])> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        (self.first..).zip(starts.zip(&self.ends).map(|(a, &b)| &self.bytes[a..b]))
    }
}

/// Why a day file could not be cut into records.
enum Cut {
    Io(std::io::Error),
    /// A record longer than [`MAX_RECORD`].
    Long,
    /// Not a JSON array of objects.
    Layout(&'static str),
}

/// Where a [`Cutter`] is in the array.
#[derive(Clone, Copy, PartialEq)]
enum At {
    /// Before its `[`.
    Start,
    /// After its `[`.
    Open,
    /// After a record.
    Record,
    /// After a `,`.
    Comma,
    /// After its `]`.
    Closed,
}

/// Cuts a day file, a JSON array of objects, into its records as it is read: each record's
/// bytes are found by following its strings and brackets, and parsed on their own afterwards
/// (from memory, which `serde_json` reads many times faster than from a stream, and on
/// whichever thread checks it). Whatever is not JSON inside a record is found when it is
/// parsed; whatever is not JSON between records is found here.
struct Cutter<R> {
    inner: R,
    buf: Box<[u8]>,
    pos: usize,
    len: usize,
    at: At,
    /// Records cut so far.
    cut: u64,
}

impl<R: Read> Cutter<R> {
    fn new(inner: R) -> Cutter<R> {
        Cutter {
            inner,
            buf: vec![0; READ_BUFFER].into_boxed_slice(),
            pos: 0,
            len: 0,
            at: At::Start,
            cut: 0,
        }
    }

    /// Reads more into the buffer: false at the end of the file.
    fn refill(&mut self) -> Result<bool, Cut> {
        loop {
            match self.inner.read(&mut self.buf) {
                Ok(n) => {
                    (self.pos, self.len) = (0, n);
                    return Ok(n > 0);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Cut::Io(e)),
            }
        }
    }

    /// The next byte that is not JSON whitespace, taken; `None` at the end of the file.
    /// Whitespace is bounded as a record is: a ZIP compresses a long run of it too.
    fn token(&mut self) -> Result<Option<u8>, Cut> {
        let mut skipped = 0;
        loop {
            while self.pos < self.len {
                let b = self.buf[self.pos];
                self.pos += 1;
                if !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
                    return Ok(Some(b));
                }
                skipped += 1;
            }
            if skipped > MAX_RECORD {
                return Err(Cut::Layout(
                    "it holds more than 4 MiB of whitespace in a row",
                ));
            }
            if !self.refill()? {
                return Ok(None);
            }
        }
    }

    /// Cuts records into `batch` until it is full (true) or the file ends (false); the
    /// records cut before an error stay in the batch.
    fn fill(&mut self, batch: &mut Batch) -> Result<bool, Cut> {
        batch.first = self.cut;
        while batch.ends.len() < BATCH_RECORDS && batch.bytes.len() < BATCH_BYTES {
            let token = self.token()?;
            self.at = match (self.at, token) {
                (At::Start, Some(b'[')) => At::Open,
                (At::Start, _) => return Err(Cut::Layout("it does not begin with `[`")),
                (At::Open | At::Record, Some(b']')) => At::Closed,
                (At::Record, Some(b',')) => At::Comma,
                (At::Comma, Some(b']')) => return Err(Cut::Layout("a `,` is followed by `]`")),
                (At::Open | At::Comma, Some(b'{')) => {
                    self.record(&mut batch.bytes)?;
                    batch.ends.push(batch.bytes.len());
                    self.cut += 1;
                    At::Record
                }
                (At::Open | At::Comma, Some(_)) => {
                    return Err(Cut::Layout("an element is not an object"));
                }
                (At::Record, Some(_)) => {
                    return Err(Cut::Layout("a record is not followed by `,` or `]`"));
                }
                (At::Closed, None) => return Ok(false),
                (At::Closed, Some(_)) => return Err(Cut::Layout("bytes follow its `]`")),
                (_, None) => return Err(Cut::Layout("it ends before its `]`")),
            };
        }
        Ok(true)
    }

    /// Appends one record to `out`, its `{` just taken: up to and with its closing `}`.
    fn record(&mut self, out: &mut Vec<u8>) -> Result<(), Cut> {
        let start = out.len();
        out.push(b'{');
        let (mut depth, mut in_string, mut escaped) = (1u32, false, false);
        loop {
            let (from, len) = (self.pos, self.len);
            let mut end = None;
            let mut j = from;
            while j < len {
                if escaped {
                    // The character a `\` escapes, whatever it is.
                    escaped = false;
                    j += 1;
                } else if in_string {
                    // Strings are most of a record: jump to where one may end.
                    match memchr::memchr2(b'"', b'\\', &self.buf[j..len]) {
                        Some(k) if self.buf[j + k] == b'"' => {
                            in_string = false;
                            j += k + 1;
                        }
                        Some(k) => {
                            escaped = true;
                            j += k + 1;
                        }
                        None => j = len,
                    }
                } else {
                    match self.buf[j] {
                        b'"' => in_string = true,
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                end = Some(j + 1);
                                break;
                            }
                        }
                        _ => {}
                    }
                    j += 1;
                }
            }
            let to = end.unwrap_or(self.len);
            out.extend_from_slice(&self.buf[from..to]);
            self.pos = to;
            if out.len() - start > MAX_RECORD {
                return Err(Cut::Long);
            }
            if end.is_some() {
                return Ok(());
            }
            if !self.refill()? {
                return Err(Cut::Layout("it ends inside a record"));
            }
        }
    }
}

/// A reader that hashes what is read through it, and counts it.
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
    read: u64,
}

impl<R> Hashing<R> {
    fn new(inner: R) -> Hashing<R> {
        Hashing {
            inner,
            hasher: Sha256::new(),
            read: 0,
        }
    }

    /// The SHA-256 of what was read, in hex.
    fn digest(self) -> String {
        hex::encode(self.hasher.finalize())
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that gives one byte per read: every boundary falls between two reads.
    struct OneByte<'a>(&'a [u8]);

    impl Read for OneByte<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(1).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    /// Every record `text` is cut into, read in one go and a byte at a time (which must
    /// agree), or how the cutting failed.
    fn cut(text: &str) -> Result<Vec<Value>, String> {
        let whole = cut_from(text.as_bytes());
        assert_eq!(whole, cut_from(OneByte(text.as_bytes())), "{text}");
        whole
    }

    fn cut_from(r: impl Read) -> Result<Vec<Value>, String> {
        let mut cutter = Cutter::new(r);
        let mut out = Vec::new();
        loop {
            let mut batch = Batch::default();
            let more = cutter.fill(&mut batch);
            assert_eq!(batch.first, out.len() as u64);
            for (i, bytes) in batch.records() {
                assert_eq!(i, out.len() as u64);
                out.push(serde_json::from_slice(bytes).map_err(|e| format!("record {i}: {e}"))?);
            }
            match more {
                Ok(true) => {}
                Ok(false) => return Ok(out),
                Err(Cut::Layout(why)) => return Err(why.to_owned()),
                Err(Cut::Long) => return Err("long".to_owned()),
                Err(Cut::Io(e)) => return Err(e.to_string()),
            }
        }
    }

    #[test]
    fn a_day_file_is_cut_into_its_records_whatever_its_layout() {
        // Escaped quotes and backslashes, brackets inside strings, nested objects and lists.
        let source = r#"[
            {"seq": 1, "details": {"note": "a } in a string, a { and a ] and a [", "n": [1, [2, {}]]}},
            {"seq": 2, "details": {"quote": "say \"}\" and \\", "back": "\\\\\"{"}},
            {"seq": 3, "empty": {}, "list": [], "unicode": "caf\u00e9 \ud83d\ude00 \/"}
        ]"#;
        let records: Value = serde_json::from_str(source).unwrap();
        let want: Vec<Value> = serde_json::from_value(records.clone()).unwrap();
        // As a server writes it, compact, pretty, and with whitespace wherever JSON allows.
        let compact = serde_json::to_string(&records).unwrap();
        let pretty = serde_json::to_string_pretty(&records).unwrap();
        let spaced = format!(
            " \r\n\t{}\n\n",
            compact.replace(",{", " ,\n\t{").replace("[{", "[ \n{")
        );
        for text in [source, &compact, &pretty, &spaced] {
            assert_eq!(cut(text), Ok(want.clone()), "{text}");
        }
        assert_eq!(cut("[]"), Ok(vec![]));
        assert_eq!(cut(" [ \n ] \n"), Ok(vec![]));
        // More records than a batch holds: batches follow one another, numbered on.
        let many = format!(
            "[{}]",
            vec![r#"{"seq":0}"#; BATCH_RECORDS * 2 + 3].join(",")
        );
        assert_eq!(cut(&many).unwrap().len(), BATCH_RECORDS * 2 + 3);
    }

    #[test]
    fn what_is_not_an_array_of_objects_is_refused_where_it_goes_wrong() {
        for (text, why) in [
            ("", "it does not begin with `[`"),
            ("{}", "it does not begin with `[`"),
            ("[{}", "it ends before its `]`"),
            ("[{},", "it ends before its `]`"),
            ("[{},]", "a `,` is followed by `]`"),
            ("[,{}]", "an element is not an object"),
            ("[1]", "an element is not an object"),
            ("[{}, \"a\"]", "an element is not an object"),
            ("[{} {}]", "a record is not followed by `,` or `]`"),
            ("[{}] []", "bytes follow its `]`"),
            ("[{}]]", "bytes follow its `]`"),
            (r#"[{"a": "}]"#, "it ends inside a record"),
            (r#"[{"a": "\"}]"#, "it ends inside a record"),
        ] {
            assert_eq!(cut(text), Err(why.to_owned()), "{text}");
        }
        // What is not JSON inside a record is found when the record is parsed.
        assert!(
            cut(r#"[{"a": nope}]"#)
                .unwrap_err()
                .starts_with("record 0:")
        );
        assert!(
            cut(r#"[{"seq": 1}, {"a" 1}]"#)
                .unwrap_err()
                .starts_with("record 1:")
        );
        // A record longer than any a server writes is refused before it is held whole.
        let long = format!(r#"[{{"a": "{}"}}]"#, "A".repeat(MAX_RECORD + 1));
        assert_eq!(cut_from(long.as_bytes()), Err("long".to_owned()));
    }

    /// Checks a day file of `records` (each a record's JSON) against `leaves` on `workers`
    /// threads: the records that verify, or the first failure in the file's order.
    fn check_file(records: &[String], leaves: &[Hash], workers: usize) -> Result<u64, String> {
        check_text(&format!("[{}]", records.join(",")), leaves, workers)
    }

    fn check_text(text: &str, leaves: &[Hash], workers: usize) -> Result<u64, String> {
        let name = "1970-01-01.json";
        let check = Check {
            name,
            first: 0,
            end: leaves.len() as u64,
            leaves,
        };
        let mut seen = vec![false; leaves.len()];
        let mut order = Order {
            name,
            first: 0,
            seen: &mut seen,
            count: 0,
            seqs: None,
            prev: None,
        };
        let mut cutter = Cutter::new(text.as_bytes());
        match each_batch(&mut cutter, workers, &check, |c| order.apply(c)) {
            Ok(Ok(())) => Ok(order.count),
            Ok(Err(Cut::Layout(why))) => Err(format!("{why}, after {} records", cutter.cut)),
            Ok(Err(Cut::Long)) => Err("long".to_owned()),
            Ok(Err(Cut::Io(e))) => Err(e.to_string()),
            Err(e) => Err(e.0),
        }
    }

    /// The event of `seq`, stamped `at` (µs).
    fn event_at(seq: u64, at: i64) -> Event {
        let body = crate::event::EventBody::from_json(
            serde_json::json!({
                "timestamp": Timestamp(at).to_string(),
                "action": "user.login",
                "actor": {"id": format!("user-{}", seq % 7), "type": "user"},
                "details": {"note": "a \"quoted\" } and a / and caf\u{e9}"},
            }),
            "acme",
        )
        .unwrap();
        Event::seal("acme", seq, Timestamp(at + 1_000), body)
    }

    /// `n` events of 1970-01-01 in seq and time order: their leaves and records.
    fn day_of(n: u64) -> (Vec<Event>, Vec<Hash>, Vec<String>) {
        let events: Vec<Event> = (0..n)
            .map(|seq| event_at(seq, 1_000 + seq as i64))
            .collect();
        let leaves: Vec<Hash> = events.iter().map(canonical::leaf_hash).collect();
        let records = events
            .iter()
            .zip(&leaves)
            .map(|(e, h)| serde_json::to_string(&record(e, h)).unwrap())
            .collect();
        (events, leaves, records)
    }

    #[test]
    fn records_checked_on_several_threads_fail_where_they_would_on_one() {
        let n = BATCH_RECORDS as u64 * 3;
        let (_, leaves, records) = day_of(n);
        for workers in [1, 2, 3] {
            assert_eq!(check_file(&records, &leaves, workers), Ok(n), "{workers}");
        }
        // A record repeated in the second batch (found only in order, after the threads),
        // and one changed in the third (found by a thread, perhaps first): the repeated
        // one is named, however many threads check.
        let mut bad = records.clone();
        let repeated = BATCH_RECORDS + 10;
        bad[repeated] = records[5].clone();
        let changed = 2 * BATCH_RECORDS + 1;
        bad[changed] = bad[changed].replace("user.login", "user.logout");
        // Seq 5 is read again after seqs up to 1033, so it is out of order too; being
        // there twice is what is checked first.
        let want = format!("1970-01-01.json: record {repeated} (seq 5) is in the archive twice");
        for workers in [1, 2, 3] {
            assert_eq!(
                check_file(&bad, &leaves, workers),
                Err(want.clone()),
                "{workers}"
            );
        }
        // With the repeat undone, the changed record is named.
        bad[repeated] = records[repeated].clone();
        for workers in [1, 2, 3] {
            let said = check_file(&bad, &leaves, workers).unwrap_err();
            assert!(
                said.starts_with(&format!(
                    "1970-01-01.json: record {changed} (seq {changed}) was changed"
                )),
                "{workers}: {said}"
            );
        }
    }

    #[test]
    fn a_record_laid_out_otherwise_verifies_as_json_and_what_is_wrong_is_named() {
        let (mut events, mut leaves, records) = day_of(40);
        // Pretty-printed, keys in another order, `/` escaped in the canonical bytes: not as
        // a server writes them, but the same JSON: each is parsed whole and verifies.
        let relaid: Vec<String> = records
            .iter()
            .map(|r| {
                let v: Value = serde_json::from_str(r).unwrap();
                let mut fields: Vec<(String, Value)> =
                    v.as_object().unwrap().clone().into_iter().collect();
                fields.reverse();
                let body: Vec<String> = fields
                    .iter()
                    .map(|(k, v)| {
                        format!(
                            "\n  {}: {}",
                            serde_json::to_string(k).unwrap(),
                            serde_json::to_string_pretty(v).unwrap()
                        )
                    })
                    .collect();
                format!("{{{}\n}}", body.join(",")).replace("/", "\\/")
            })
            .collect();
        assert_ne!(relaid, records);
        for workers in [1, 2] {
            assert_eq!(check_file(&relaid, &leaves, workers), Ok(40));
        }
        // Two records swapped: the later seq first, so the second of them is out of order.
        let mut swapped = records.clone();
        swapped.swap(10, 11);
        assert_eq!(
            check_file(&swapped, &leaves, 2),
            Err(
                "1970-01-01.json: record 11 (seq 10) is out of order: records are oldest first"
                    .into()
            )
        );
        // An event of another day, in this day's file: named, whichever record before it
        // set the day the others are compared with.
        events[30] = event_at(30, 2 * DAY_US + 5);
        leaves[30] = canonical::leaf_hash(&events[30]);
        let mut other_day = records.clone();
        other_day[30] = serde_json::to_string(&record(&events[30], &leaves[30])).unwrap();
        let said = check_file(&other_day, &leaves, 2).unwrap_err();
        assert!(
            said.starts_with("1970-01-01.json: record 30 (seq 30) is stamped 1970-01-03T"),
            "{said}"
        );
        assert!(said.ends_with("which is not this file's day"), "{said}");
        // A layout that goes wrong after some records: they are checked, and the count said.
        let text = format!("[{}, 5]", records[..3].join(","));
        assert_eq!(
            check_text(&text, &leaves, 2),
            Err("an element is not an object, after 3 records".into())
        );
        // A long run of whitespace is refused as a long record is.
        let text = format!(
            "[{}{}]",
            records[0],
            " ".repeat(MAX_RECORD + READ_BUFFER + 1)
        );
        assert_eq!(
            check_text(&text, &leaves, 1),
            Err("it holds more than 4 MiB of whitespace in a row, after 1 records".into())
        );
    }

    #[test]
    fn weeks_are_iso_weeks_in_utc() {
        let w = Week::parse("2026-W47").unwrap();
        assert_eq!(w.to_string(), "2026-W47");
        assert_eq!(w.start(), Timestamp::parse("2026-11-16T00:00:00Z").unwrap());
        assert_eq!(w.end(), Timestamp::parse("2026-11-23T00:00:00Z").unwrap());
        assert_eq!(
            Week::containing(Timestamp::parse("2026-11-22T23:59:59.999999Z").unwrap()),
            w
        );
        assert_eq!(
            Week::containing(Timestamp::parse("2026-11-23T00:00:00Z").unwrap()),
            w.next()
        );
        assert_eq!(w.day_files()[0], "2026-11-16.json");
        assert_eq!(w.day_files()[6], "2026-11-22.json");
        // Across a year: 2026 has 53 weeks; its first began on 2025-12-29.
        assert_eq!(
            Week::parse("2026-W53").unwrap().next().to_string(),
            "2027-W01"
        );
        assert_eq!(
            Week::parse("2026-W01").unwrap().previous().to_string(),
            "2025-W52"
        );
        assert_eq!(
            Week::parse("2026-W01").unwrap().day_files()[0],
            "2025-12-29.json"
        );
        assert_eq!(
            day_file(Timestamp::parse("1969-12-31T23:59:59Z").unwrap()),
            "1969-12-31.json"
        );
    }

    #[test]
    fn a_week_is_written_one_way_only() {
        for bad in [
            "",
            "2026",
            "2026-W",
            "2026-W4",
            "2026-W047",
            "26-W47",
            "2026-w47",
            "2026-W00",
            "2025-W53",
            "+999-W01",
            "-999-W01",
            "2026-W+1",
            "2026-W 1",
            "9999-W52",
            "0000-W01",
            "２０２６-W47",
            "2026-W47 ",
            "../etc-W01",
        ] {
            assert!(Week::parse(bad).is_err(), "{bad:?}");
        }
        for good in ["0001-W01", "1970-W01", "9998-W52", "2020-W53"] {
            let w = Week::parse(good).unwrap();
            assert_eq!(w.to_string(), good);
            // Every accepted week has its days and neighbours without overflow.
            let _ = (w.day_files(), w.next(), w.previous(), w.end());
        }
    }
}
