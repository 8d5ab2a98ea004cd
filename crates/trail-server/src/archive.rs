//! Weekly archives on disk: building them (`trail_core::archive` says what one holds), the
//! weekly job, and listing them.
//!
//! An archive is written under a temporary name in its org's directory, synced, and renamed
//! into place: a crash leaves either the whole archive or none, and the next run builds it
//! again. Events are read page by page and spooled to one temporary file per day (their
//! leaf hashes to another), so a build holds 24 bytes per event of the week (its place in its
//! day, to put the day in time order), never the events themselves. One archive is built at
//! a time.

use std::collections::BTreeMap;
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
    /// One build at a time, held until its blocking work ends (not only while its caller
    /// waits), so abandoned requests cannot pile builds up.
    building: Arc<tokio::sync::Mutex<()>>,
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
            building: Arc::new(tokio::sync::Mutex::new(())),
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

    /// Waits for the build in progress, if any, and holds off others: for a job that must
    /// not run beside a build (pruning, which reads the archives).
    pub async fn exclusive(&self) -> tokio::sync::OwnedMutexGuard<()> {
        self.building.clone().lock_owned().await
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
        let one = self.building.clone().lock_owned().await;
        let (temp, _) = write(self, one, store.clone(), key.clone(), org, week, true, now).await?;
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
        let one = self.building.clone().lock_owned().await;
        if self.is_stored(org, week).await? {
            return Ok(format!("{week} is already archived"));
        }
        let (temp, summary) =
            write(self, one, store.clone(), key.clone(), org, week, false, now).await?;
        // Pruning trusts what is kept: an archive that does not verify is never kept.
        let (check, k) = (temp.to_path_buf(), key.verifier());
        tokio::task::spawn_blocking(move || verify_file(&check, &k))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?
            .map_err(|e| {
                ApiError::Internal(format!(
                    "the archive of {week} just built does not verify: {e}"
                ))
            })?;
        let at = self.keep(org, week, temp, &summary).await?;
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
        let _one = self.building.lock().await;
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

/// One day's records, spooled: the file, each record's (timestamp, offset, length) in seq
/// order, and the lowest and highest seq.
struct Day {
    spool: File,
    len: u64,
    index: Vec<(i64, u64, u32)>,
    seqs: Option<(u64, u64)>,
}

/// A week's archive is built once the week has been over this long: a group committing as
/// the week ended is stamped with the time it began, so it is in by then.
const GRACE_US: i64 = 5 * 60 * 1_000_000;

/// Whether `week` ended long enough ago to be archived for good.
fn settled(week: Week, now: Timestamp) -> bool {
    now.micros() >= week.end().micros().saturating_add(GRACE_US)
}

/// Checks an archive file offline, as `trail verify --archive` does, and as every build is
/// checked before it is kept: a ZIP whose entries have one name each and whose local
/// headers agree with its directory (so other tools unpack what was checked), then every
/// part through [`archive::ArchiveVerifier`].
pub fn verify_file(
    path: &Path,
    key: &VerifierKey,
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
    let mut part = |name: &str| -> Result<Vec<u8>, E> {
        let mut bytes = Vec::new();
        zip.by_name(name)
            .map_err(|e| E(format!("{shown}: no {name}: {e}")))?
            .read_to_end(&mut bytes)
            .map_err(|e| E(format!("{shown}: {name} does not read: {e}")))?;
        Ok(bytes)
    };
    let mut v = archive::ArchiveVerifier::new(&part(MANIFEST)?, &part(LEAVES)?, key)?;
    for name in &names {
        if name != MANIFEST && name != LEAVES {
            v.file(name, &part(name)?)?;
        }
    }
    v.finish()
}

/// Writes the archive of `week` to a temporary file in `dir` and returns it, synced.
/// `one` is the build lock, held until the writing ends; a caller that goes away (a
/// dropped request) stops it at the next page.
#[allow(clippy::too_many_arguments)]
async fn write(
    archives: &Archives,
    one: tokio::sync::OwnedMutexGuard<()>,
    store: Arc<dyn Store>,
    key: Arc<SignerKey>,
    org: &str,
    week: Week,
    partial: bool,
    now: Timestamp,
) -> Result<(TempPath, ArchiveSummary), ApiError> {
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
    tokio::task::spawn_blocking(move || {
        let written = write_blocking(&rt, &*store, &key, &org, week, manifest, &dir, &stop);
        drop(one);
        written
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
    let new_day = || -> Result<Day, ApiError> {
        Ok(Day {
            spool: tempfile::tempfile_in(dir).map_err(io)?,
            len: 0,
            index: Vec::new(),
            seqs: None,
        })
    };
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
            day.spool.write_all_at(&bytes, day.len).map_err(io)?;
            day.index
                .push((e.timestamp.micros(), day.len, bytes.len() as u32));
            day.seqs = Some(day.seqs.map_or((e.seq, e.seq), |(lo, _)| (lo, e.seq)));
            day.len += bytes.len() as u64;
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
    for (name, mut day) in days {
        // Oldest first: by timestamp, and (a stable sort of records in seq order) by seq.
        day.index.sort_by_key(|r| r.0);
        zip.start_file(name.as_str(), options).map_err(io)?;
        let mut out = Hashing::new(&mut zip);
        if day.index.is_empty() {
            out.write_all(b"[]\n").map_err(io)?;
        } else {
            let mut buf = Vec::new();
            for (i, (_, offset, len)) in day.index.iter().enumerate() {
                out.write_all(if i == 0 { b"[\n" } else { b",\n" })
                    .map_err(io)?;
                buf.resize(*len as usize, 0);
                day.spool.read_exact_at(&mut buf, *offset).map_err(io)?;
                out.write_all(&buf).map_err(io)?;
            }
            out.write_all(b"\n]\n").map_err(io)?;
        }
        manifest.files.push(FileEntry {
            name,
            sha256: out.finish(),
            events: day.index.len() as u64,
            first_seq: day.seqs.map(|s| s.0),
            last_seq: day.seqs.map(|s| s.1),
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
