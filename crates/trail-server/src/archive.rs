//! Weekly archives on disk: building them (`trail_core::archive` says what one holds), the
//! weekly job, and listing them.
//!
//! An archive is written under a temporary name in its org's directory, synced, and renamed
//! into place: a crash leaves either the whole archive or none, and the next run builds it
//! again. Events are read page by page and spooled to one temporary file per day (their
//! leaf hashes to another). Each record's place in its day's spool is kept to put the day in
//! time order: past [`SORT_BUDGET`] places held over all days, the days holding the most
//! write theirs out, sorted, as runs in a temporary file per day, merged as the day is
//! written out (an external sort). So a build holds a few MiB, whatever the size of the week
//! or the spread of its dates, never the events themselves. One archive is built at a time.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::fs::File;
use std::io::{BufWriter, Read, Seek, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use sha2::{Digest, Sha256};
use tempfile::TempPath;
use trail_core::Timestamp;
use trail_core::archive::{
    self, FORMAT, FileEntry, LEAVES, MANIFEST, Manifest, Previous, Week, day_file,
};
use trail_core::checkpoint::{SignerKey, VerifierKey};
use trail_core::merkle::{RootBuilder, empty_root};
use trail_store::Store;
use zip::write::SimpleFileOptions;

use crate::error::ApiError;

/// Events read from the store at a time while building.
const PAGE: usize = 1000;
/// The part size of an upload to a bucket.
const UPLOAD_PART: usize = 8 << 20;

fn bucket(e: object_store::Error) -> ApiError {
    ApiError::Unavailable(format!("the archive bucket: {e}"))
}

/// One stored archive, as listed.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArchiveSummary {
    /// The ISO week, `2026-W47`.
    pub week: String,
    pub events: u64,
    /// The ZIP's size in bytes.
    pub size: u64,
    #[schema(format = DateTime)]
    pub created_at: String,
    pub first_seq: u64,
    pub end_seq: u64,
    /// Built before the week ended (only the current week's, which is never stored).
    pub partial: bool,
}

/// A built archive to send: a stored one, or a partial one that goes away once sent.
pub struct ArchiveFile {
    pub path: PathBuf,
    pub partial: bool,
    /// A partial archive's file, removed when this is dropped.
    pub temp: Option<TempPath>,
}

/// Where stored archives are kept.
enum Shelf {
    /// In the work directory: `<dir>/<org>/<week>.zip`.
    Dir,
    /// In an S3-compatible bucket: `<prefix>/<org>/<week>.zip`, and beside it `<week>.json`,
    /// its [`ArchiveSummary`], written once the ZIP is whole (an upload is atomic), so a
    /// listed archive is always complete.
    Bucket {
        store: Arc<dyn ObjectStore>,
        url: String,
        prefix: String,
    },
}

/// The archives of every org: built in a work directory (`DATA/archives`) and kept there
/// (`<org>/<week>.zip`) or in an S3-compatible bucket.
pub struct Archives {
    dir: PathBuf,
    shelf: Shelf,
    /// Who may build now: see [`Building`].
    builds: Builds,
    /// Cancelled when the server stops: a build in progress gives up (its temporary file
    /// goes with it) and is made again by the next run.
    stop: tokio_util::sync::CancellationToken,
}

impl Archives {
    /// Archives kept in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Archives {
        Archives {
            dir: dir.into(),
            shelf: Shelf::Dir,
            builds: Builds::default(),
            stop: tokio_util::sync::CancellationToken::new(),
        }
    }

    /// Archives built in `dir` and kept in the bucket of `url` (`s3://BUCKET[/PREFIX]`),
    /// reached with the standard `AWS_*` settings of the environment (keys, region, and
    /// `AWS_ENDPOINT` and `AWS_ALLOW_HTTP` for an S3-compatible server).
    pub fn in_bucket(dir: impl Into<PathBuf>, url: &str) -> anyhow::Result<Archives> {
        Self::in_bucket_with(dir, url, &[])
    }

    /// [`Self::in_bucket`], with settings that override the environment's (`aws_endpoint`,
    /// `aws_access_key_id`, ...: `object_store`'s names).
    pub fn in_bucket_with(
        dir: impl Into<PathBuf>,
        url: &str,
        settings: &[(&str, &str)],
    ) -> anyhow::Result<Archives> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| anyhow::anyhow!("--archive-url: {url:?} is not s3://BUCKET[/PREFIX]"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            anyhow::bail!("--archive-url: {url:?} names no bucket");
        }
        let mut builder = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
        for (key, value) in settings {
            builder = builder.with_config(
                key.parse()
                    .map_err(|e| anyhow::anyhow!("the archive bucket's setting {key}: {e}"))?,
                *value,
            );
        }
        let store = builder
            .build()
            .map_err(|e| anyhow::anyhow!("--archive-url {url}: {e}"))?;
        let mut a = Archives::new(dir);
        a.shelf = Shelf::Bucket {
            store: Arc::new(store),
            url: url.to_owned(),
            prefix: prefix.trim_matches('/').to_owned(),
        };
        Ok(a)
    }

    /// Where archives are kept, for the banner and the log.
    pub fn describe(&self) -> String {
        match &self.shelf {
            Shelf::Dir => self.dir.display().to_string(),
            Shelf::Bucket { url, .. } => url.clone(),
        }
    }

    /// Waits for the builds in progress, if any, and holds off others: for a job that must
    /// not run beside a build (pruning, which reads the archives).
    pub async fn exclusive(&self) -> tokio::sync::OwnedSemaphorePermit {
        self.builds
            .slots
            .clone()
            .acquire_many_owned(BUILD_SLOTS as u32)
            .await
            .expect("the build slots are never closed")
    }

    /// Stops builds in progress and the weekly job.
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// The weekly job: builds the archives that are due and prunes what retention no
    /// longer keeps (`crate::retention`), now, then every hour, until [`Self::stop`].
    pub async fn run(self: Arc<Self>, store: Arc<dyn Store>, key: Arc<SignerKey>) {
        loop {
            self.build_due(&store, &key, crate::now()).await;
            if let Err(e) = crate::retention::prune_due(&store, &self, crate::now(), None).await {
                tracing::warn!(error = %e, "pruning under retention failed");
            }
            tokio::select! {
                () = self.stop.cancelled() => return,
                () = tokio::time::sleep(std::time::Duration::from_secs(3600)) => {}
            }
        }
    }

    fn org_dir(&self, org: &str) -> PathBuf {
        self.dir.join(org)
    }

    fn path(&self, org: &str, week: Week) -> PathBuf {
        self.org_dir(org).join(format!("{week}.zip"))
    }

    /// An object's path in the bucket.
    fn object(prefix: &str, org: &str, name: &str) -> ObjectPath {
        if prefix.is_empty() {
            ObjectPath::from(format!("{org}/{name}"))
        } else {
            ObjectPath::from(format!("{prefix}/{org}/{name}"))
        }
    }

    /// The stored archives of `org`, oldest week first.
    pub async fn list(&self, org: &str) -> Result<Vec<ArchiveSummary>, ApiError> {
        match &self.shelf {
            Shelf::Dir => {
                let dir = self.org_dir(org);
                tokio::task::spawn_blocking(move || list_dir(&dir))
                    .await
                    .map_err(|e| ApiError::Internal(e.to_string()))?
            }
            Shelf::Bucket { store, prefix, .. } => {
                let within = Self::object(prefix, org, "");
                let metas: Vec<_> = store
                    .list(Some(&within))
                    .try_collect()
                    .await
                    .map_err(bucket)?;
                let mut out = Vec::new();
                for meta in metas {
                    let Some(week) = meta
                        .location
                        .filename()
                        .and_then(|n| n.strip_suffix(".json"))
                        .and_then(|w| Week::parse(w).ok())
                    else {
                        continue;
                    };
                    let bytes = store
                        .get(&meta.location)
                        .await
                        .map_err(bucket)?
                        .bytes()
                        .await
                        .map_err(bucket)?;
                    match serde_json::from_slice::<ArchiveSummary>(&bytes) {
                        Ok(a) if a.week == week.to_string() => out.push(a),
                        _ => tracing::warn!(object = %meta.location, "unreadable archive summary"),
                    }
                }
                out.sort_by(|a, b| a.week.cmp(&b.week));
                Ok(out)
            }
        }
    }

    /// Whether the archive of `week` is stored.
    async fn is_stored(&self, org: &str, week: Week) -> Result<bool, ApiError> {
        match &self.shelf {
            Shelf::Dir => Ok(self.path(org, week).exists()),
            Shelf::Bucket { store, prefix, .. } => {
                match store
                    .head(&Self::object(prefix, org, &format!("{week}.json")))
                    .await
                {
                    Ok(_) => Ok(true),
                    Err(object_store::Error::NotFound { .. }) => Ok(false),
                    Err(e) => Err(bucket(e)),
                }
            }
        }
    }

    /// Keeps a built archive: renamed into place and synced, or uploaded with its summary
    /// after it. Returns where it went.
    async fn keep(
        &self,
        org: &str,
        week: Week,
        temp: TempPath,
        summary: &ArchiveSummary,
    ) -> Result<String, ApiError> {
        match &self.shelf {
            Shelf::Dir => {
                let path = self.path(org, week);
                let dir = self.org_dir(org);
                let target = path.clone();
                tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                    temp.persist(&target).map_err(|e| e.error)?;
                    File::open(&dir)?.sync_all()
                })
                .await
                .map_err(|e| ApiError::Internal(e.to_string()))?
                .map_err(|e| {
                    ApiError::Unavailable(format!(
                        "cannot store the archive {}: {e}",
                        path.display()
                    ))
                })?;
                Ok(path.display().to_string())
            }
            Shelf::Bucket { store, prefix, url } => {
                let zip = Self::object(prefix, org, &format!("{week}.zip"));
                let mut upload = object_store::WriteMultipart::new_with_chunk_size(
                    store.put_multipart(&zip).await.map_err(bucket)?,
                    UPLOAD_PART,
                );
                let mut file = tokio::fs::File::open(&temp).await.map_err(io)?;
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let n = tokio::io::AsyncReadExt::read(&mut file, &mut buf)
                        .await
                        .map_err(io)?;
                    if n == 0 {
                        break;
                    }
                    upload.wait_for_capacity(2).await.map_err(bucket)?;
                    upload.write(&buf[..n]);
                }
                upload.finish().await.map_err(bucket)?;
                let json = serde_json::to_vec(summary).map_err(io)?;
                store
                    .put(
                        &Self::object(prefix, org, &format!("{week}.json")),
                        json.into(),
                    )
                    .await
                    .map_err(bucket)?;
                Ok(format!(
                    "{}/{zip}",
                    url.split('/').take(3).collect::<Vec<_>>().join("/")
                ))
            }
        }
    }

    /// A stored archive as a file to send: its own, or a copy fetched from the bucket.
    async fn fetch(&self, org: &str, week: Week) -> Result<ArchiveFile, ApiError> {
        match &self.shelf {
            Shelf::Dir => Ok(ArchiveFile {
                path: self.path(org, week),
                partial: false,
                temp: None,
            }),
            Shelf::Bucket { store, prefix, .. } => {
                let zip = Self::object(prefix, org, &format!("{week}.zip"));
                let got = store.get(&zip).await.map_err(bucket)?;
                std::fs::create_dir_all(&self.dir).map_err(io)?;
                let temp = tempfile::Builder::new()
                    .prefix(".fetched-")
                    .tempfile_in(&self.dir)
                    .map_err(io)?
                    .into_temp_path();
                let mut file = tokio::fs::File::create(&temp).await.map_err(io)?;
                let mut stream = got.into_stream();
                while let Some(chunk) = stream.try_next().await.map_err(bucket)? {
                    tokio::io::AsyncWriteExt::write_all(&mut file, &chunk)
                        .await
                        .map_err(io)?;
                }
                tokio::io::AsyncWriteExt::flush(&mut file)
                    .await
                    .map_err(io)?;
                Ok(ArchiveFile {
                    path: temp.to_path_buf(),
                    partial: false,
                    temp: Some(temp),
                })
            }
        }
    }

    /// The archive of `week`: the stored one, built first if its week has ended and it is
    /// not there yet; a partial one for the current week. `NotFound` for a week to come, and
    /// for a week whose end no checkpoint of the log had reached.
    pub async fn get(
        &self,
        store: &Arc<dyn Store>,
        key: &Arc<SignerKey>,
        org: &str,
        week: Week,
        now: Timestamp,
    ) -> Result<ArchiveFile, ApiError> {
        let current = Week::containing(now);
        if week > current {
            return Err(ApiError::NotFound(format!(
                "the archive of {week}: that week has not begun"
            )));
        }
        if settled(week, now) {
            if !self.is_stored(org, week).await? {
                self.build(store, key, org, week, now).await?;
            }
            return self.fetch(org, week).await;
        }
        // A partial archive is built for its caller alone: queued behind other builds (one
        // of a big week takes minutes), callers would wait longer than they or a proxy
        // before them will, each with a connection held open meanwhile.
        let one = self.builds.try_claim(org)?;
        let (temp, _, _) =
            write(self, one, store.clone(), key.clone(), org, week, true, now).await?;
        Ok(ArchiveFile {
            path: temp.to_path_buf(),
            partial: true,
            temp: Some(temp),
        })
    }

    /// Builds and stores the archive of an ended `week`, unless it is there.
    pub async fn build(
        &self,
        store: &Arc<dyn Store>,
        key: &Arc<SignerKey>,
        org: &str,
        week: Week,
        now: Timestamp,
    ) -> Result<String, ApiError> {
        if !settled(week, now) {
            return Err(ApiError::Conflict(format!(
                "{week} has not ended {} minutes ago yet: its archive is built after (download it now as a partial archive)",
                GRACE_US / 60_000_000
            )));
        }
        let one = self.builds.claim(org).await;
        if self.is_stored(org, week).await? {
            return Ok(format!("{week} is already archived"));
        }
        let (temp, summary, one) =
            write(self, one, store.clone(), key.clone(), org, week, false, now).await?;
        // Pruning trusts what is kept: an archive that does not verify is never kept. The
        // check holds the claim too (it holds the week's leaves in memory), so checks count
        // against the build slots, even if this caller goes away meanwhile. On one thread,
        // beside the server's other work.
        let (check, k) = (temp.to_path_buf(), key.verifier());
        let (verified, one) =
            tokio::task::spawn_blocking(move || (verify_file(&check, &k, 1), one))
                .await
                .map_err(|e| ApiError::Internal(e.to_string()))?;
        verified.map_err(|e| {
            ApiError::Internal(format!(
                "the archive of {week} just built does not verify: {e}"
            ))
        })?;
        // Kept under the lock: another build of the week waits, then finds it stored.
        let at = self.keep(org, week, temp, &summary).await?;
        drop(one);
        tracing::info!(org, %week, at, "archived a week");
        Ok(at)
    }

    /// Builds every ended week's archive that is missing, for every org: from the week the
    /// org was made to the last one that has ended.
    pub async fn build_due(&self, store: &Arc<dyn Store>, key: &Arc<SignerKey>, now: Timestamp) {
        let orgs = match store.orgs().await {
            Ok(orgs) => orgs,
            Err(e) => {
                tracing::warn!(error = %e, "weekly archives: cannot list the orgs");
                return;
            }
        };
        self.sweep().await;
        let last = Week::containing(Timestamp(now.micros() - GRACE_US)).previous();
        for org in orgs {
            let mut week = Week::containing(org.created_at);
            while week <= last {
                if !self.is_stored(&org.id, week).await.unwrap_or(false)
                    && let Err(e) = self.build(store, key, &org.id, week, now).await
                {
                    match e {
                        // Nothing signed by then: nothing to archive yet.
                        ApiError::NotFound(_) => {}
                        e => {
                            tracing::warn!(org = %org.id, %week, error = %e, "weekly archive failed");
                            break;
                        }
                    }
                }
                week = week.next();
            }
        }
    }
}

impl Archives {
    /// Removes what a build cut short left (a crash between writing and renaming): a file
    /// is an archive only once renamed into place, so these are never listed or served.
    async fn sweep(&self) {
        let _all = self.exclusive().await;
        let dir = self.dir.clone();
        let _ = tokio::task::spawn_blocking(move || {
            for org in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                for f in std::fs::read_dir(org.path())
                    .into_iter()
                    .flatten()
                    .flatten()
                {
                    if f.file_name().to_string_lossy().starts_with(BUILDING) {
                        let _ = std::fs::remove_file(f.path());
                    }
                }
            }
        })
        .await;
    }
}

/// How many archives are built at once, over all orgs: a build holds its week's leaves in
/// memory and keeps a core busy.
const BUILD_SLOTS: usize = 2;

/// Who may build now. An org builds one archive at a time (so two builds of one week never
/// race, and one org never holds more than one slot), in one of [`BUILD_SLOTS`] slots
/// shared by all orgs: one org's builds never keep another's waiting, whatever it asks for.
struct Builds {
    slots: Arc<tokio::sync::Semaphore>,
    orgs: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// A claim to build for one org, held until the build's blocking work ends (not only while
/// its caller waits), so abandoned requests cannot pile builds up.
struct Building {
    _org: tokio::sync::OwnedMutexGuard<()>,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl Default for Builds {
    fn default() -> Self {
        Builds {
            slots: Arc::new(tokio::sync::Semaphore::new(BUILD_SLOTS)),
            orgs: Default::default(),
        }
    }
}

impl Builds {
    fn org(&self, org: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut orgs = self.orgs.lock().unwrap_or_else(|e| e.into_inner());
        orgs.entry(org.to_owned()).or_default().clone()
    }

    /// Waits for the org's build in progress, then for a slot.
    async fn claim(&self, org: &str) -> Building {
        let org = self.org(org).lock_owned().await;
        let slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("the build slots are never closed");
        Building {
            _org: org,
            _slot: slot,
        }
    }

    /// A claim now, or 503 saying who is building: for a caller who waits on the answer.
    fn try_claim(&self, org: &str) -> Result<Building, ApiError> {
        let org_lock = self.org(org).try_lock_owned().map_err(|_| {
            ApiError::Unavailable(format!(
                "another archive of org {org:?} is being built; try again in a few minutes"
            ))
        })?;
        let slot = self.slots.clone().try_acquire_owned().map_err(|_| {
            ApiError::Unavailable(
                "the server is building as many archives as it can at once; try again in a \
                 few minutes"
                    .into(),
            )
        })?;
        Ok(Building {
            _org: org_lock,
            _slot: slot,
        })
    }
}

/// The name a build writes under until it is complete.
const BUILDING: &str = ".building-";

fn list_dir(dir: &Path) -> Result<Vec<ArchiveSummary>, ApiError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(ApiError::Unavailable(format!(
                "cannot list the archives: {e}"
            )));
        }
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(week) = name.strip_suffix(".zip").and_then(|w| Week::parse(w).ok()) else {
            continue;
        };
        let path = entry.path();
        let read = || -> Result<(Manifest, u64), String> {
            let file = File::open(&path).map_err(|e| e.to_string())?;
            let size = file.metadata().map_err(|e| e.to_string())?.len();
            let mut zip = zip::ZipArchive::new(file).map_err(|e| e.to_string())?;
            let mut bytes = Vec::new();
            zip.by_name(MANIFEST)
                .map_err(|e| e.to_string())?
                .read_to_end(&mut bytes)
                .map_err(|e| e.to_string())?;
            Ok((
                serde_json::from_slice(&bytes).map_err(|e| e.to_string())?,
                size,
            ))
        };
        match read() {
            Ok((m, size)) => out.push(ArchiveSummary {
                week: week.to_string(),
                events: m.end_seq - m.first_seq,
                size,
                created_at: m.created_at,
                first_seq: m.first_seq,
                end_seq: m.end_seq,
                partial: m.partial,
            }),
            Err(e) => tracing::warn!(path = %path.display(), error = %e, "unreadable archive"),
        }
    }
    out.sort_by(|a, b| a.week.cmp(&b.week));
    Ok(out)
}

/// One day's records, spooled: the file, each record's place in it (to be put in time
/// order), how many, and the lowest and highest seq.
struct Day {
    spool: File,
    len: u64,
    places: Places,
    events: u64,
    seqs: Option<(u64, u64)>,
}

/// Places of records a build keeps in memory, over all its days (24 bytes each; 20 on
/// disk): at this, the days holding the most write theirs out as a sorted run. So a build
/// holds at most 6 MiB of them, whatever the size of the week or the spread of its dates.
const SORT_BUDGET: usize = 1 << 18;

/// Where one record is in its day's spool, and its timestamp. Ordered oldest first, and
/// records with the same timestamp in seq order (the order they were spooled in); no two
/// have the same offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Place {
    ts: i64,
    offset: u64,
    len: u32,
}

impl Place {
    const BYTES: usize = 20;

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.ts.to_le_bytes());
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&self.len.to_le_bytes());
    }

    fn decode(b: &[u8]) -> Place {
        let (ts, rest) = b.split_at(8);
        let (offset, len) = rest.split_at(8);
        Place {
            ts: i64::from_le_bytes(ts.try_into().expect("8 bytes")),
            offset: u64::from_le_bytes(offset.try_into().expect("8 bytes")),
            len: u32::from_le_bytes(len[..4].try_into().expect("4 bytes")),
        }
    }
}

/// The places of a day, put in order by an external sort: in memory until told to spill;
/// then sorted and appended to the day's one run file as a run, and the runs merged at the
/// end (one file descriptor per day, however many runs).
struct Places {
    dir: PathBuf,
    buf: Vec<Place>,
    file: Option<File>,
    /// Each run's first place in the file, and how many it holds.
    runs: Vec<(u64, u64)>,
    end: u64,
}

/// Places read from a run at a time while merging, and written at a time when spilling
/// (64 KiB).
const RUN_READ: usize = 3_276;

/// Where the merge is in one run.
struct RunCursor {
    next: u64,
    left: u64,
    buf: Vec<Place>,
}

impl RunCursor {
    fn pop(&mut self, file: &File) -> std::io::Result<Option<Place>> {
        if self.buf.is_empty() {
            let n = (self.left as usize).min(RUN_READ);
            if n == 0 {
                return Ok(None);
            }
            let mut bytes = vec![0u8; n * Place::BYTES];
            file.read_exact_at(&mut bytes, self.next * Place::BYTES as u64)?;
            self.buf = bytes
                .chunks_exact(Place::BYTES)
                .rev()
                .map(Place::decode)
                .collect();
            self.next += n as u64;
            self.left -= n as u64;
        }
        Ok(self.buf.pop())
    }
}

impl Places {
    fn new(dir: &Path) -> Places {
        Places {
            dir: dir.to_owned(),
            buf: Vec::new(),
            file: None,
            runs: Vec::new(),
            end: 0,
        }
    }

    fn push(&mut self, place: Place) {
        self.buf.push(place);
    }

    /// Places held in memory.
    fn held(&self) -> usize {
        self.buf.len()
    }

    /// Writes what is in memory out as one sorted run.
    fn spill(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.buf.sort_unstable();
        let file = match &mut self.file {
            Some(f) => f,
            None => self.file.insert(tempfile::tempfile_in(&self.dir)?),
        };
        // Written 64 KiB at a time, not encoded whole first.
        let mut bytes = Vec::with_capacity(RUN_READ * Place::BYTES);
        let mut at = self.end * Place::BYTES as u64;
        for chunk in self.buf.chunks(RUN_READ) {
            bytes.clear();
            for p in chunk {
                p.encode(&mut bytes);
            }
            file.write_all_at(&bytes, at)?;
            at += bytes.len() as u64;
        }
        self.runs.push((self.end, self.buf.len() as u64));
        self.end += self.buf.len() as u64;
        self.buf = Vec::new();
        Ok(())
    }

    /// Every place, in order.
    fn sorted(mut self) -> std::io::Result<Box<dyn Iterator<Item = std::io::Result<Place>>>> {
        if self.runs.is_empty() {
            self.buf.sort_unstable();
            return Ok(Box::new(self.buf.into_iter().map(Ok)));
        }
        self.spill()?;
        let file = self.file.expect("a run was written");
        let mut cursors = Vec::with_capacity(self.runs.len());
        let mut heads = BinaryHeap::with_capacity(self.runs.len());
        for (i, &(next, left)) in self.runs.iter().enumerate() {
            let mut c = RunCursor {
                next,
                left,
                buf: Vec::new(),
            };
            if let Some(p) = c.pop(&file)? {
                heads.push(Reverse((p, i)));
            }
            cursors.push(c);
        }
        Ok(Box::new(std::iter::from_fn(move || {
            let Reverse((p, i)) = heads.pop()?;
            match cursors[i].pop(&file) {
                Ok(Some(next)) => heads.push(Reverse((next, i))),
                Ok(None) => {}
                Err(e) => return Some(Err(e)),
            }
            Some(Ok(p))
        })))
    }
}

impl Day {
    /// An empty day, its spool and runs in `dir`.
    fn new(dir: &Path) -> std::io::Result<Day> {
        Ok(Day {
            spool: tempfile::tempfile_in(dir)?,
            len: 0,
            places: Places::new(dir),
            events: 0,
            seqs: None,
        })
    }

    /// Spools one record (JSON), given in seq order.
    fn add(&mut self, ts: Timestamp, seq: u64, record: &[u8]) -> std::io::Result<()> {
        self.spool.write_all_at(record, self.len)?;
        self.places.push(Place {
            ts: ts.micros(),
            offset: self.len,
            len: record.len() as u32,
        });
        self.events += 1;
        self.seqs = Some(self.seqs.map_or((seq, seq), |(lo, _)| (lo, seq)));
        self.len += record.len() as u64;
        Ok(())
    }

    /// Writes the day file: a JSON array of its records, oldest first.
    fn write_to(self, out: &mut impl Write) -> std::io::Result<()> {
        if self.events == 0 {
            return out.write_all(b"[]\n");
        }
        let mut buf = Vec::new();
        let mut written = 0;
        for place in self.places.sorted()? {
            let place = place?;
            out.write_all(if written == 0 { b"[\n" } else { b",\n" })?;
            buf.resize(place.len as usize, 0);
            self.spool.read_exact_at(&mut buf, place.offset)?;
            out.write_all(&buf)?;
            written += 1;
        }
        if written != self.events {
            return Err(std::io::Error::other(format!(
                "{written} records of a day's {} came back from its sort",
                self.events
            )));
        }
        out.write_all(b"\n]\n")
    }
}

/// A week's archive is built once the week has been over this long: a group committing as
/// the week ended is stamped with the time it began, so it is in by then.
const GRACE_US: i64 = 5 * 60 * 1_000_000;

/// Whether `week` ended long enough ago to be archived for good.
fn settled(week: Week, now: Timestamp) -> bool {
    now.micros() >= week.end().micros().saturating_add(GRACE_US)
}

/// The longest manifest read, in bytes: it lists a week's day files and holds two
/// checkpoints and an edge of at most 64 hashes, a few KiB; it is read before its signature
/// is checked.
const MAX_MANIFEST: u64 = 1 << 20;

/// Checks an archive file offline, as `trail verify --archive` does, and as every build is
/// checked before it is kept: a ZIP whose entries have one name each and whose local
/// headers agree with its directory (so other tools unpack what was checked), then every
/// part through [`archive::ArchiveVerifier`], checking records on `workers` threads.
pub fn verify_file(
    path: &Path,
    key: &VerifierKey,
    workers: usize,
) -> Result<archive::Verified, archive::ArchiveError> {
    use archive::ArchiveError as E;
    let shown = path.display();
    let file = File::open(path).map_err(|e| E(format!("{shown}: {e}")))?;
    let mut zip =
        zip::ZipArchive::new(file).map_err(|e| E(format!("{shown} is not a readable ZIP: {e}")))?;
    zip.validate_header_consistency()
        .map_err(|e| E(format!("{shown} is not a consistent ZIP: {e}")))?;
    let mut names = std::collections::BTreeSet::new();
    for i in 0..zip.len() {
        let entry = zip
            .by_index(i)
            .map_err(|e| E(format!("{shown}: entry {i}: {e}")))?;
        let name = entry
            .name()
            .map_err(|e| E(format!("{shown}: entry {i}: {e}")))?
            .into_owned();
        if !names.insert(name.clone()) {
            return Err(E(format!("{name} is in the archive twice")));
        }
    }
    let missing = |name: &str, e| E(format!("{shown}: no {name}: {e}"));
    let mut manifest = Vec::new();
    zip.by_name(MANIFEST)
        .map_err(|e| missing(MANIFEST, e))?
        .take(MAX_MANIFEST + 1)
        .read_to_end(&mut manifest)
        .map_err(|e| E(format!("{shown}: {MANIFEST} does not read: {e}")))?;
    if manifest.len() as u64 > MAX_MANIFEST {
        return Err(E(format!(
            "{shown}: {MANIFEST} is longer than {MAX_MANIFEST} bytes: it is not a manifest"
        )));
    }
    let leaves = zip.by_name(LEAVES).map_err(|e| missing(LEAVES, e))?;
    let mut v = archive::ArchiveVerifier::new(&manifest, leaves, key)?.workers(workers);
    for name in &names {
        if name != MANIFEST && name != LEAVES {
            v.file(name, zip.by_name(name).map_err(|e| missing(name, e))?)?;
        }
    }
    v.finish()
}

/// Writes the archive of `week` to a temporary file in `dir` and returns it, synced.
/// `one` is the claim to build, held by the writing and handed back with the file (dropped if
/// the writing fails); a caller that goes away (a dropped request) stops it at the next
/// page.
#[allow(clippy::too_many_arguments)]
async fn write(
    archives: &Archives,
    one: Building,
    store: Arc<dyn Store>,
    key: Arc<SignerKey>,
    org: &str,
    week: Week,
    partial: bool,
    now: Timestamp,
) -> Result<(TempPath, ArchiveSummary, Building), ApiError> {
    let dir = archives.org_dir(org);
    let stop = archives.stop.child_token();
    let _abandoned = stop.clone().drop_guard();
    // The seqs the week received: up to the last checkpoint signed before it began and
    // before it ended (the newest one, for the current week).
    let signed_by = |at: Timestamp| {
        let store = store.clone();
        async move {
            let n = store.seq_received_since(org, at).await?;
            store.checkpoint_at_most(org, n).await
        }
    };
    let previous = signed_by(week.start()).await?;
    let end = if week == Week::containing(now) {
        store.checkpoint(org, None).await?
    } else {
        signed_by(week.end()).await?
    };
    let Some(end) = end else {
        return Err(ApiError::NotFound(format!(
            "the archive of {week}: org {org:?} had no signed checkpoint by then"
        )));
    };
    let first = previous.as_ref().map_or(0, |c| c.size);
    if first < store.retention(org).await?.pruned_below {
        return Err(ApiError::NotFound(format!(
            "the archive of {week}: its events were pruned under the org's retention, and it is not stored"
        )));
    }
    let frontier = store.tree_frontier(org, first).await?;
    let prev_root = RootBuilder::from_frontier(first, &frontier)
        .map(|b| b.root())
        .unwrap_or_else(empty_root);
    let manifest = Manifest {
        format: FORMAT.to_owned(),
        org: org.to_owned(),
        week: week.to_string(),
        partial,
        created_at: now.to_string(),
        log_key: key.verifier().to_string(),
        first_seq: first,
        end_seq: end.size,
        previous: Previous {
            size: first,
            root: hex::encode(prev_root),
            checkpoint: previous.map(|c| c.note),
            frontier: frontier.iter().map(hex::encode).collect(),
        },
        checkpoint: end.note,
        files: Vec::new(),
        leaves: archive::Digest256 {
            name: LEAVES.to_owned(),
            sha256: String::new(),
        },
        signature: None,
    };
    let org = org.to_owned();
    let rt = tokio::runtime::Handle::current();
    // The lock is held by the blocking work and handed back with what it wrote: a caller
    // that goes away drops it only once the work stops.
    tokio::task::spawn_blocking(move || {
        write_blocking(&rt, &*store, &key, &org, week, manifest, &dir, &stop)
            .map(|(temp, summary)| (temp, summary, one))
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
}

fn io(e: impl std::fmt::Display) -> ApiError {
    ApiError::Unavailable(format!("cannot write an archive: {e}"))
}

#[allow(clippy::too_many_arguments)]
fn write_blocking(
    rt: &tokio::runtime::Handle,
    store: &dyn Store,
    key: &SignerKey,
    org: &str,
    week: Week,
    mut manifest: Manifest,
    dir: &Path,
    stop: &tokio_util::sync::CancellationToken,
) -> Result<(TempPath, ArchiveSummary), ApiError> {
    std::fs::create_dir_all(dir).map_err(io)?;
    let mut days: BTreeMap<String, Day> = BTreeMap::new();
    let new_day = || Day::new(dir).map_err(io);
    let mut held = 0;
    for name in week.day_files() {
        days.insert(name, new_day()?);
    }
    // The leaves are spooled too: a build holds only each record's place in its day.
    let mut leaves = BufWriter::new(tempfile::tempfile_in(dir).map_err(io)?);
    let mut leaves_digest = Sha256::new();
    let mut from = manifest.first_seq;
    while from < manifest.end_seq {
        if stop.is_cancelled() {
            return Err(ApiError::Unavailable("the server is stopping".into()));
        }
        let limit = PAGE.min((manifest.end_seq - from) as usize);
        let page = rt.block_on(store.events_from(org, from, limit))?;
        if page.is_empty() {
            return Err(ApiError::Internal(format!(
                "the log of {org:?} ends at seq {from}, before its checkpoint's {}",
                manifest.end_seq
            )));
        }
        for stored in page {
            let e = &stored.event;
            if e.seq != from {
                return Err(ApiError::Internal(format!(
                    "seq {from} of {org:?} is missing"
                )));
            }
            let bytes = serde_json::to_vec(&archive::record(e, &stored.hash)).map_err(io)?;
            let name = day_file(e.timestamp);
            let day = match days.get_mut(&name) {
                Some(d) => d,
                None => days.entry(name).or_insert(new_day()?),
            };
            day.add(e.timestamp, e.seq, &bytes).map_err(io)?;
            held += 1;
            // At the budget: the days holding the most write theirs out, down to half of it
            // (so the runs are long however many days there are). Not past it: a day's
            // places are a vector whose capacity doubles at a power of two.
            if held >= SORT_BUDGET {
                while held > SORT_BUDGET / 2 {
                    let most = days
                        .values_mut()
                        .max_by_key(|d| d.places.held())
                        .expect("a day holds places");
                    held -= most.places.held();
                    most.places.spill().map_err(io)?;
                }
            }
            leaves.write_all(&stored.hash).map_err(io)?;
            leaves_digest.update(stored.hash);
            from += 1;
        }
    }

    let temp = tempfile::Builder::new()
        .prefix(BUILDING)
        .suffix(".zip")
        .tempfile_in(dir)
        .map_err(io)?;
    let (file, temp) = temp.into_parts();
    let mut zip = zip::ZipWriter::new(BufWriter::new(file));
    let options = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(true);
    for (name, day) in days {
        // Oldest first: by timestamp, and (a stable sort of records in seq order) by seq.
        zip.start_file(name.as_str(), options).map_err(io)?;
        let (events, seqs) = (day.events, day.seqs);
        let mut out = Hashing::new(&mut zip);
        day.write_to(&mut out).map_err(io)?;
        manifest.files.push(FileEntry {
            name,
            sha256: out.finish(),
            events,
            first_seq: seqs.map(|s| s.0),
            last_seq: seqs.map(|s| s.1),
        });
    }
    zip.start_file(LEAVES, options).map_err(io)?;
    let mut leaves = leaves.into_inner().map_err(|e| io(e.error()))?;
    leaves.rewind().map_err(io)?;
    std::io::copy(&mut leaves, &mut zip).map_err(io)?;
    manifest.leaves.sha256 = hex::encode(leaves_digest.finalize());
    manifest.sign(key);
    zip.start_file(MANIFEST, options).map_err(io)?;
    zip.write_all(&serde_json::to_vec_pretty(&manifest).map_err(io)?)
        .map_err(io)?;
    let mut file = zip
        .finish()
        .map_err(io)?
        .into_inner()
        .map_err(|e| io(e.error()))?;
    file.flush().map_err(io)?;
    file.sync_all().map_err(io)?;
    file.rewind().map_err(io)?;
    let summary = ArchiveSummary {
        week: manifest.week,
        events: manifest.end_seq - manifest.first_seq,
        size: file.metadata().map_err(io)?.len(),
        created_at: manifest.created_at,
        first_seq: manifest.first_seq,
        end_seq: manifest.end_seq,
        partial: manifest.partial,
    };
    Ok((temp, summary))
}

/// A writer that hashes what goes through it.
struct Hashing<'a, W: Write> {
    inner: &'a mut W,
    hash: Sha256,
}

impl<'a, W: Write> Hashing<'a, W> {
    fn new(inner: &'a mut W) -> Self {
        Hashing {
            inner,
            hash: Sha256::new(),
        }
    }

    fn finish(self) -> String {
        hex::encode(self.hash.finalize())
    }
}

impl<W: Write> Write for Hashing<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One org's build (a partial archive downloaded, say) never makes another org's wait or
    /// fail; an org builds one archive at a time; and the slots bound the builds of all orgs.
    #[tokio::test]
    async fn an_orgs_build_holds_off_its_own_builds_only() {
        let builds = Builds::default();
        let acme = builds.try_claim("acme").unwrap();
        let beta = builds
            .try_claim("beta")
            .expect("another org builds beside acme");
        match builds.try_claim("acme") {
            Err(ApiError::Unavailable(m)) => assert!(m.contains("of org \"acme\""), "{m}"),
            other => panic!("{:?}", other.is_ok()),
        }
        match builds.try_claim("gamma") {
            Err(ApiError::Unavailable(m)) => assert!(m.contains("as many archives"), "{m}"),
            other => panic!("{:?}", other.is_ok()),
        }
        drop(beta);
        let _gamma = builds.try_claim("gamma").expect("a slot is free again");
        drop(acme);
        let _acme = tokio::time::timeout(std::time::Duration::from_secs(60), builds.claim("acme"))
            .await
            .expect("acme builds again once its build has ended");
    }

    /// A day written out in time order, in memory and through sorted runs on disk (the last
    /// run written at the end or not): late records, and timestamp ties kept in seq order.
    #[test]
    fn a_day_is_written_oldest_first_through_runs_on_disk() {
        for (run, runs) in [(64, 0), (4, 10), (7, 5), (1, 40)] {
            let dir = tempfile::tempdir().unwrap();
            let mut day = Day::new(dir.path()).unwrap();
            // Seqs 0..40, stamped out of order: every third 10 s late, ties every fifth.
            let mut expected = Vec::new();
            for seq in 0..40u64 {
                let ts = if seq % 3 == 0 {
                    1_000 + seq as i64 - 10
                } else if seq % 5 == 0 {
                    1_000
                } else {
                    1_000 + seq as i64
                };
                let record = format!("{{\"seq\":{seq}}}");
                day.add(Timestamp(ts * 1_000_000), seq, record.as_bytes())
                    .unwrap();
                if day.places.held() == run {
                    day.places.spill().unwrap();
                }
                expected.push((ts, seq));
            }
            expected.sort();
            assert_eq!(day.events, 40);
            assert_eq!(day.seqs, Some((0, 39)));
            assert_eq!(day.places.runs.len(), runs, "runs of {run} on disk");
            let mut out = Vec::new();
            day.write_to(&mut out).unwrap();
            let records: Vec<serde_json::Value> = serde_json::from_slice(&out).unwrap();
            let seqs: Vec<u64> = records.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
            let want: Vec<u64> = expected.iter().map(|e| e.1).collect();
            assert_eq!(seqs, want, "runs of {run}");
        }
    }

    /// Runs longer than one read of the merge come back whole and in order.
    #[test]
    fn long_runs_merge_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut places = Places::new(dir.path());
        let n = 3 * RUN_READ as u64 + 5;
        for i in 0..n {
            // Descending within each half: two runs, each needing several reads.
            let ts = if i < n / 2 {
                -(i as i64)
            } else {
                (n - i) as i64
            };
            places.push(Place {
                ts,
                offset: i,
                len: 1,
            });
            if i + 1 == n / 2 {
                places.spill().unwrap();
            }
        }
        let got: Vec<Place> = places.sorted().unwrap().map(Result::unwrap).collect();
        assert_eq!(got.len() as u64, n);
        assert!(got.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn an_empty_day_is_an_empty_array() {
        let dir = tempfile::tempdir().unwrap();
        let mut out = Vec::new();
        Day::new(dir.path()).unwrap().write_to(&mut out).unwrap();
        assert_eq!(out, b"[]\n");
    }
}
