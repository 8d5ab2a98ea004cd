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
//! read once, front to back. A day file is checked record by record as it is read, so a
//! check holds one record at a time, not a day; the week's leaves are held (32 bytes per
//! event), since records come in time order and leaves in seq order.

use std::cell::Cell;
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
        })
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Checks one day file listed in the manifest, read from `part`: every record as it is
    /// read, then the file's digest.
    pub fn file(&mut self, name: &str, part: impl Read) -> Result<(), ArchiveError> {
        let Some(entry) = self.manifest.files.iter().find(|f| f.name == name).cloned() else {
            return fail(format!("{name} is in the archive but not in {MANIFEST}"));
        };
        if self.checked.insert(name.to_owned(), ()).is_some() {
            return fail(format!("{name} is in the archive twice"));
        }
        let used = Cell::new(0);
        let bounded = Bounded {
            inner: Hashing::new(part),
            used: &used,
            max: MAX_RECORD,
        };
        let mut part = BufReader::with_capacity(READ_BUFFER, bounded);
        // A changed file is named with the record that changed where one can be found.
        let mut records = Records {
            verifier: self,
            name,
            count: 0,
            seqs: None,
            prev: None,
            failed: None,
            used: &used,
        };
        let mut json = serde_json::Deserializer::from_reader(&mut part);
        let read =
            serde::Deserializer::deserialize_seq(&mut json, &mut records).and_then(|()| json.end());
        if let Some(failed) = records.failed {
            return Err(failed);
        }
        let (count, seqs) = (records.count, records.seqs);
        match read {
            Ok(()) => {}
            Err(e) if e.is_io() => return fail(format!("{name} does not read: {e}")),
            Err(e) => {
                return fail(format!(
                    "{name} was changed: it does not read as an array of records: {e}"
                ));
            }
        }
        used.set(0);
        std::io::copy(&mut part, &mut std::io::sink())
            .map_err(|e| ArchiveError(format!("{name} does not read: {e}")))?;
        let digest_ok = part.into_inner().inner.digest() == entry.sha256;
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

    /// Checks the `i`th record of day file `name`, and gives its seq; `prev` is the time and
    /// seq of the record before it.
    fn record(
        &mut self,
        name: &str,
        i: u64,
        rec: &Value,
        prev: &mut Option<(Timestamp, u64)>,
    ) -> Result<u64, ArchiveError> {
        let first = self.manifest.first_seq;
        let at = |what: &str| ArchiveError(format!("{name}: record {i}{what}"));
        let seq = rec["seq"]
            .as_u64()
            .ok_or_else(|| at(" has no seq: it was changed"))?;
        let at = |what: &str| ArchiveError(format!("{name}: record {i} (seq {seq}) {what}"));
        let bytes = rec["canonical"]
            .as_str()
            .and_then(|s| STANDARD.decode(s).ok())
            .ok_or_else(|| at("was changed: its canonical bytes are not base64"))?;
        let event = canonical::decode(&bytes).map_err(|e| {
            at(&format!(
                "was changed: its canonical bytes do not decode: {e}"
            ))
        })?;
        if event.seq != seq || seq < first || seq >= self.manifest.end_seq {
            return Err(at(&format!(
                "is not one of this archive's seqs {first}..{}",
                self.manifest.end_seq
            )));
        }
        let slot = (seq - first) as usize;
        let leaf = canonical::leaf_hash(&event);
        if leaf != self.leaves[slot] {
            return Err(at(
                "was changed: its content does not give its leaf in the signed tree",
            ));
        }
        if record(&event, &leaf) != *rec {
            return Err(at("was changed: it differs from its signed content"));
        }
        if day_file(event.timestamp) != name {
            return Err(at(&format!(
                "is stamped {}, which is not this file's day",
                event.timestamp
            )));
        }
        if std::mem::replace(&mut self.seen[slot], true) {
            return Err(at("is in the archive twice"));
        }
        let key = (event.timestamp, seq);
        if prev.is_some_and(|p| p > key) {
            return Err(at("is out of order: records are oldest first"));
        }
        *prev = Some(key);
        Ok(seq)
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
/// under this. A record is read whole before it is checked: without a bound, one made of a
/// single long string (which a ZIP compresses a thousandfold) would be held whole.
const MAX_RECORD: u64 = 4 << 20;

/// A reader that fails once more than `max` bytes were read through it since `used` was
/// last set to 0 (once per record).
struct Bounded<'c, R> {
    inner: R,
    used: &'c Cell<u64>,
    max: u64,
}

impl<R: Read> Read for Bounded<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.used.set(self.used.get() + n as u64);
        if self.used.get() > self.max {
            return Err(std::io::Error::other(format!(
                "a record is longer than {} bytes",
                self.max
            )));
        }
        Ok(n)
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

/// The records of one day file, checked one at a time as the JSON array is read; the first
/// record that fails stops the read and is kept here.
struct Records<'a> {
    verifier: &'a mut ArchiveVerifier,
    name: &'a str,
    count: u64,
    /// The lowest and highest seq read.
    seqs: Option<(u64, u64)>,
    prev: Option<(Timestamp, u64)>,
    failed: Option<ArchiveError>,
    /// Bytes read since the last record ended ([`Bounded`]).
    used: &'a Cell<u64>,
}

impl<'de> serde::de::Visitor<'de> for &mut Records<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of records")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(rec) = seq.next_element::<Value>()? {
            let seq = match self
                .verifier
                .record(self.name, self.count, &rec, &mut self.prev)
            {
                Ok(seq) => seq,
                Err(e) => {
                    self.failed = Some(e);
                    return Err(serde::de::Error::custom("a record does not verify"));
                }
            };
            self.seqs = Some(
                self.seqs
                    .map_or((seq, seq), |(lo, hi)| (lo.min(seq), hi.max(seq))),
            );
            self.count += 1;
            self.used.set(0);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
