//! The verifiable log, server side: the signing key, the heads kept beside it, and the
//! endpoints that serve checkpoints, proofs and entries.
//!
//! Each org's log is its own RFC 6962 tree, named `<log name>/<org>` (the C2SP origin). The
//! store signs: once [`Heads::start_signing`] hands it the key, every transaction that
//! appends to a log signs that log's new checkpoint before it commits (zero merge delay;
//! the ingest answer carries it). The store checks each log before it signs more of it (see
//! `Store::sign_logs`), and what it trusts as "signed before" is never older than the heads
//! kept beside the key ([`HEADS_FILE`]), which [`Heads`] brings up to date every second.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Json;
use axum::extract::{Path as UrlPath, RawQuery, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore;
use serde::Serialize;
use serde_json::value::RawValue;
use tokio::sync::{Mutex, watch};
use trail_core::canonical;
use trail_core::checkpoint::{self, SignerKey, open};
use trail_store::{SignedCheckpoint, Store};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::error::ApiError;
use crate::openapi::NotFound;
use crate::routes::events::{bounded_page, limit_param};

/// The signing key's file in the data directory (mode 0600).
pub const KEY_FILE: &str = "log-signing-key";

/// Loads the data directory's signing key, which `trail serve` made: for operator jobs on a
/// stopped server, which must never make one.
pub fn load_key(dir: &Path) -> anyhow::Result<SignerKey> {
    let path = dir.join(KEY_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "reading {} (the log's signing key, made by the first `trail serve`)",
            path.display()
        )
    })?;
    SignerKey::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// Loads the data directory's signing key, making one on first start, named `name` or, by
/// default, with a name unique to this install (`trail-<8 hex digits>.local`): witnesses
/// keep their state by log origin, so two installs must never share one. The store
/// remembers the log's name, so a key of another log is refused; `name` is ignored once the
/// key exists.
pub async fn load_or_create_key(
    store: &dyn Store,
    dir: &Path,
    name: Option<&str>,
) -> anyhow::Result<SignerKey> {
    let path = dir.join(KEY_FILE);
    let key = match std::fs::read_to_string(&path) {
        Ok(text) => {
            SignerKey::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let name = match name {
                Some(n) => n.to_owned(),
                // A store that lost its key keeps its name (and is told apart by the key).
                None => match store.setting("log_name").await? {
                    Some(n) => n,
                    None => default_log_name(),
                },
            };
            let mut seed = [0u8; 32];
            rand::rng().fill_bytes(&mut seed);
            let key = SignerKey::from_seed(&name, seed)
                .map_err(|e| anyhow::anyhow!("--log-name: {e}"))?;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut f = options
                .open(&path)
                .with_context(|| format!("creating {}", path.display()))?;
            writeln!(f, "{}", key.to_secret_string())?;
            f.sync_all()?;
            key
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let stored = store.init_setting("log_name", &key.name).await?;
    if stored != key.name {
        anyhow::bail!(
            "{} holds a key of log {:?}, but this store's log is {stored:?}",
            path.display(),
            key.name
        );
    }
    Ok(key)
}

/// A log name no other install has: `trail-<8 random hex digits>.local`.
pub fn default_log_name() -> String {
    format!("trail-{:08x}.local", rand::rng().next_u32())
}

/// The origin of an org's log.
pub fn origin(key: &SignerKey, org: &str) -> String {
    checkpoint::origin(&key.name, org)
}

/// The file, beside the key, that remembers the newest signed (size, root) of each log: a
/// database whose newest checkpoints were removed (restored from an old copy, say) does not
/// make the signer forget what it signed.
pub const HEADS_FILE: &str = "log-heads.json";

/// How often the heads file is brought up to date.
pub const HEADS_INTERVAL: Duration = Duration::from_secs(1);

/// Starts the store signing, and keeps the heads file; see the module documentation.
pub struct Heads {
    store: Arc<dyn Store>,
    key: Arc<SignerKey>,
    file: Option<PathBuf>,
    /// What the rounds keep between them.
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    /// The newest head of each org seen signed.
    heads: HashMap<String, Head>,
    /// Orgs not followed any more: found to have gone back, or refused by the store.
    failed: HashSet<String>,
    /// `heads` holds more than the file: written at the next round.
    unwritten: bool,
}

type Head = (u64, [u8; 32]);

impl Heads {
    /// `file`: where to keep the newest heads outside the database (the data directory's
    /// [`HEADS_FILE`]); `None` keeps them in memory only.
    pub fn new(store: Arc<dyn Store>, key: Arc<SignerKey>, file: Option<PathBuf>) -> Heads {
        Heads {
            store,
            key,
            file,
            seen: Mutex::new(Seen::default()),
        }
    }

    /// The heads remembered; none if there is no file yet. A file that cannot be read is an
    /// error, not an empty memory: it is written whole or not at all (a rename), so it is
    /// damaged only by someone or something else, and without it a store rolled back to an
    /// older copy would be signed over.
    fn read(&self) -> anyhow::Result<HashMap<String, Head>> {
        let Some(path) = &self.file else {
            return Ok(HashMap::new());
        };
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashMap::new()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let damaged = |why: &str| {
            anyhow::anyhow!(
                "{} is damaged ({why}); it remembers the newest signed head of each log: \
                 restore it, or remove it only if this store is known to be untouched",
                path.display()
            )
        };
        let parsed: HashMap<String, (u64, String)> =
            serde_json::from_str(&text).map_err(|e| damaged(&e.to_string()))?;
        parsed
            .into_iter()
            .map(|(org, (size, root))| {
                let root = hex::decode(&root)
                    .ok()
                    .and_then(|r| r.try_into().ok())
                    .ok_or_else(|| {
                        damaged(&format!("the root of {org:?} is not 32 bytes of hex"))
                    })?;
                Ok((org, (size, root)))
            })
            .collect()
    }

    fn write(&self, heads: &HashMap<String, Head>) -> anyhow::Result<()> {
        let Some(path) = &self.file else {
            return Ok(());
        };
        let text = serde_json::to_string(
            &heads
                .iter()
                .map(|(o, (s, r))| (o, (s, hex::encode(r))))
                .collect::<HashMap<_, _>>(),
        )?;
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }

    /// Gives the store the key: from now on every append is signed in its own transaction
    /// (zero merge delay). Logs whose newest checkpoint is older than the heads file
    /// remembers, or no longer matches their leaves, are refused (and the store says so).
    pub async fn start_signing(&self) -> anyhow::Result<()> {
        let remembered = self.read()?;
        let refused = self
            .store
            .sign_logs(self.key.clone(), remembered.clone())
            .await
            .context("starting to sign the logs")?;
        // The store has said why it refuses these; they are not signed any more.
        *self.seen.lock().await = Seen {
            heads: remembered,
            failed: refused.into_iter().map(|(org, _)| org).collect(),
            unwritten: false,
        };
        self.round().await?;
        Ok(())
    }

    /// Brings the heads file up to date with each log's newest checkpoint; returns how many
    /// logs have a newer one than last time. A newest checkpoint older than one seen before
    /// is an integrity failure (the database went back), said and counted.
    pub async fn round(&self) -> anyhow::Result<usize> {
        let mut seen = self.seen.lock().await;
        let mut newer = 0;
        for org in self.store.orgs().await? {
            if seen.failed.contains(&org.id) {
                continue;
            }
            let failure = match self.newest(&org.id, seen.heads.get(&org.id)).await {
                Ok(Some(head)) => {
                    seen.heads.insert(org.id, head);
                    newer += 1;
                    continue;
                }
                Ok(None) => continue,
                Err(why) => why,
            };
            integrity_failure(&org.id, &failure);
            seen.failed.insert(org.id);
        }
        if newer > 0 || seen.unwritten {
            // Kept until written, so a failed write is tried again at the next round.
            seen.unwritten = true;
            self.write(&seen.heads)?;
            seen.unwritten = false;
        }
        Ok(newer)
    }

    /// `org`'s newest checkpoint if it is newer than `seen` and checks out; `Err` says why it
    /// does not.
    async fn newest(&self, org: &str, seen: Option<&Head>) -> Result<Option<Head>, String> {
        let c = match self.store.checkpoint(org, None).await {
            Ok(Some(c)) => c,
            Ok(None) => return Ok(None),
            Err(trail_store::StoreError::Corrupt(why)) => {
                return Err(format!("the newest checkpoint does not read: {why}"));
            }
            Err(e) => {
                // Not a finding about the log: tried again at the next round.
                tracing::warn!(org, error = %e, "could not read the newest checkpoint");
                return Ok(None);
            }
        };
        let head = (c.size, c.root);
        match seen {
            Some(&(size, _)) if size > c.size => {
                return Err(format!(
                    "checkpoints up to {size} events were signed, but the store's newest covers {}",
                    c.size
                ));
            }
            Some(h) if *h == head => return Ok(None),
            _ => {}
        }
        match open(&c.note, &self.key.verifier()) {
            Ok(o) if o.origin == origin(&self.key, org) && o.size == c.size && o.root == c.root => {
                Ok(Some(head))
            }
            _ => Err("the newest stored checkpoint does not open with the log's key".into()),
        }
    }

    /// Runs rounds every [`HEADS_INTERVAL`] until `stop` turns true, then one last round.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        loop {
            let stopping = tokio::select! {
                _ = tokio::time::sleep(HEADS_INTERVAL) => false,
                _ = stop.changed() => true,
            };
            if let Err(e) = self.round().await {
                tracing::error!(error = %e, "could not keep the log heads");
            }
            if stopping || *stop.borrow() {
                return;
            }
        }
    }
}

fn integrity_failure(org: &str, what: &str) {
    metrics::counter!("trail_log_integrity_failures_total").increment(1);
    tracing::error!(org, "{what}; run `trail verify` on this log");
}

// ----- endpoints -----

/// The most events a log holds: every seq and size is at most this.
const MAX_LOG: u64 = 1 << 40;

/// A seq or size query parameter, if present: a whole number up to [`MAX_LOG`].
fn param(raw: Option<&str>, name: &str) -> Result<Option<u64>, ApiError> {
    form_urlencoded::parse(raw.unwrap_or("").as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| {
            v.parse().ok().filter(|n| *n <= MAX_LOG).ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "{name}: {v:?} is not a whole number from 0 to 2^40"
                ))
            })
        })
        .transpose()
}

/// The most items a page of entries or checkpoints holds (and its default size).
pub const MAX_PAGE: usize = 1000;

/// `limit`: 1 to [`MAX_PAGE`], which is the default.
fn page_limit(raw: Option<&str>) -> Result<usize, ApiError> {
    let value = form_urlencoded::parse(raw.unwrap_or("").as_bytes())
        .find(|(k, _)| k == "limit")
        .map(|(_, v)| v.into_owned());
    limit_param(value.as_deref(), MAX_PAGE, MAX_PAGE)
}

fn required(raw: Option<&str>, name: &str) -> Result<u64, ApiError> {
    param(raw, name)?.ok_or_else(|| ApiError::BadRequest(format!("{name} is required")))
}

async fn latest(state: &AppState, org: &str) -> Result<SignedCheckpoint, ApiError> {
    state.store.checkpoint(org, None).await?.ok_or_else(|| {
        ApiError::NotFound(format!(
            "the log of org {org:?} has no signed checkpoint yet"
        ))
    })
}

fn hexes(hashes: &[[u8; 32]]) -> Vec<String> {
    hashes.iter().map(hex::encode).collect()
}

/// The key that signs the logs' checkpoints.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LogKey {
    pub name: String,
    /// `<name>+<hash>+<base64 key>`, as Go's sumdb/note writes it.
    pub verifier_key: String,
    /// The checkpoints' origins: `<name>/<org>`.
    pub origins: String,
}

/// `GET /v1/log/key`: the key that signs checkpoints.
#[utoipa::path(
    get,
    path = "/v1/log/key",
    operation_id = "getLogKey",
    responses((status = 200, description = "The verifier key", body = LogKey)),
)]
pub async fn key(State(state): State<AppState>) -> Json<LogKey> {
    Json(LogKey {
        name: state.log_key.name.clone(),
        verifier_key: state.log_key.verifier().to_string(),
        origins: format!("{}/<org>", state.log_key.name),
    })
}

/// `size` of a checkpoint.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct SizeQuery {
    /// The checkpoint of this many events; by default the newest.
    #[param(minimum = 0, maximum = 1099511627776_u64)]
    size: Option<u64>,
}

/// `GET /v1/orgs/{org}/log/checkpoint[?size=S]`: a signed note, as text.
#[utoipa::path(
    get,
    path = "/v1/orgs/{org}/log/checkpoint",
    operation_id = "getCheckpoint",
    params(("org" = String, Path, description = "The org's id"), SizeQuery),
    responses(
        (status = 200, description = "A C2SP tlog-checkpoint signed note", body = String, content_type = "text/plain"),
        NotFound,
    ),
)]
pub async fn checkpoint(
    State(state): State<AppState>,
    UrlPath(org): UrlPath<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let c = match param(raw.as_deref(), "size")? {
        Some(size) => state
            .store
            .checkpoint(&org, Some(size))
            .await?
            .ok_or_else(|| {
                ApiError::NotFound(format!("no checkpoint of size {size} in org {org:?}"))
            })?,
        None => latest(&state, &org).await?,
    };
    Ok(([(CONTENT_TYPE, "text/plain; charset=utf-8")], c.note).into_response())
}

/// A signed checkpoint.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointView {
    pub size: u64,
    /// The tree's root hash, hex.
    pub root: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    /// The C2SP signed note.
    pub note: String,
}

impl From<SignedCheckpoint> for CheckpointView {
    fn from(c: SignedCheckpoint) -> Self {
        CheckpointView {
            size: c.size,
            root: hex::encode(c.root),
            created_at: c.created_at.to_string(),
            note: c.note,
        }
    }
}

/// A page of signed checkpoints, oldest first.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Checkpoints {
    pub items: Vec<CheckpointView>,
    /// The `after` of the next page; null on the last.
    pub next_after: Option<u64>,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct CheckpointsQuery {
    /// Only checkpoints of more events than this.
    #[param(minimum = 0, maximum = 1099511627776_u64)]
    after: Option<u64>,
    #[param(minimum = 1, maximum = 1000, default = 1000)]
    limit: Option<u32>,
}

/// `GET /v1/orgs/{org}/log/checkpoints?after=S&limit=N`: signed checkpoints, oldest first.
#[utoipa::path(
    get,
    path = "/v1/orgs/{org}/log/checkpoints",
    operation_id = "listCheckpoints",
    params(("org" = String, Path, description = "The org's id"), CheckpointsQuery),
    responses((status = 200, description = "Signed checkpoints", body = Checkpoints)),
)]
pub async fn checkpoints(
    State(state): State<AppState>,
    UrlPath(org): UrlPath<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Checkpoints>, ApiError> {
    let after = param(raw.as_deref(), "after")?.unwrap_or(0);
    let limit = page_limit(raw.as_deref())?;
    let items = state.store.checkpoints(&org, after, limit).await?;
    let next = (items.len() == limit)
        .then(|| items.last().map(|c| c.size))
        .flatten();
    Ok(Json(Checkpoints {
        items: items.into_iter().map(CheckpointView::from).collect(),
        next_after: next,
    }))
}

/// An RFC 6962 inclusion proof.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InclusionProof {
    pub seq: u64,
    pub tree_size: u64,
    /// The event's leaf hash, hex.
    pub leaf_hash: String,
    /// The audit path, hex hashes, leaf to root.
    pub proof: Vec<String>,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct InclusionQuery {
    /// The event.
    #[param(minimum = 0, maximum = 1099511627776_u64)]
    seq: u64,
    /// The tree size; by default the newest checkpoint's.
    #[param(minimum = 0, maximum = 1099511627776_u64)]
    size: Option<u64>,
}

/// `GET /v1/orgs/{org}/log/proof/inclusion?seq=N[&size=S]` (size: the latest checkpoint's).
#[utoipa::path(
    get,
    path = "/v1/orgs/{org}/log/proof/inclusion",
    operation_id = "getInclusionProof",
    params(("org" = String, Path, description = "The org's id"), InclusionQuery),
    responses((status = 200, description = "The proof", body = InclusionProof), NotFound),
)]
pub async fn inclusion(
    State(state): State<AppState>,
    UrlPath(org): UrlPath<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<InclusionProof>, ApiError> {
    let seq = required(raw.as_deref(), "seq")?;
    let size = match param(raw.as_deref(), "size")? {
        Some(s) => s,
        None => latest(&state, &org).await?.size,
    };
    if seq >= size {
        return Err(ApiError::BadRequest(format!(
            "seq {seq} is not in a tree of {size} events"
        )));
    }
    let log_size = state.store.log_size(&org).await?;
    if size > log_size {
        return Err(ApiError::BadRequest(format!(
            "size {size} is more than the log's {log_size} events"
        )));
    }
    let proof = state.store.inclusion_proof(&org, seq, size).await?;
    let leaf = state
        .store
        .events_from(&org, seq, 1)
        .await?
        .pop()
        .map(|e| e.hash)
        .unwrap_or_default();
    Ok(Json(InclusionProof {
        seq,
        tree_size: size,
        leaf_hash: hex::encode(leaf),
        proof: hexes(&proof),
    }))
}

/// An RFC 6962 consistency proof.
#[derive(Serialize, ToSchema)]
pub struct ConsistencyProof {
    pub from: u64,
    pub to: u64,
    /// Hex hashes.
    pub proof: Vec<String>,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ConsistencyQuery {
    /// The older tree size.
    #[param(minimum = 0, maximum = 1099511627776_u64)]
    from: u64,
    /// The newer tree size; by default the newest checkpoint's.
    #[param(minimum = 0, maximum = 1099511627776_u64)]
    to: Option<u64>,
}

/// `GET /v1/orgs/{org}/log/proof/consistency?from=A[&to=B]` (to: the latest checkpoint's).
#[utoipa::path(
    get,
    path = "/v1/orgs/{org}/log/proof/consistency",
    operation_id = "getConsistencyProof",
    params(("org" = String, Path, description = "The org's id"), ConsistencyQuery),
    responses((status = 200, description = "The proof", body = ConsistencyProof), NotFound),
)]
pub async fn consistency(
    State(state): State<AppState>,
    UrlPath(org): UrlPath<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<ConsistencyProof>, ApiError> {
    let from = required(raw.as_deref(), "from")?;
    let to = match param(raw.as_deref(), "to")? {
        Some(t) => t,
        None => latest(&state, &org).await?.size,
    };
    if from > to {
        return Err(ApiError::BadRequest(format!(
            "from ({from}) is after to ({to})"
        )));
    }
    let log_size = state.store.log_size(&org).await?;
    if to > log_size {
        return Err(ApiError::BadRequest(format!(
            "to {to} is more than the log's {log_size} events"
        )));
    }
    let proof = state.store.consistency_proof(&org, from, to).await?;
    Ok(Json(ConsistencyProof {
        from,
        to,
        proof: hexes(&proof),
    }))
}

/// An event with its canonical bytes.
#[derive(Serialize, ToSchema)]
pub struct Entry<'a> {
    #[serde(flatten)]
    pub record: trail_core::event::EventRecord<'a>,
    /// The canonical bytes its leaf hash is computed over, base64.
    pub canonical: String,
}

fn entry(e: &trail_store::StoredEvent) -> Entry<'_> {
    Entry {
        record: e.event.record(&e.hash),
        canonical: STANDARD.encode(canonical::encode(&e.event)),
    }
}

/// A page of entries, in seq order.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Entries {
    #[schema(value_type = Vec<Entry>)]
    pub items: Vec<Box<RawValue>>,
    /// The `from` of the next page; null on the last.
    pub next_from: Option<u64>,
    /// When `from` lies in the part of the log pruned under retention: where the log now
    /// starts, and the tree's edge there, from which a verifier goes on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pruned: Option<PrunedPrefix>,
}

/// The pruned start of a log.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrunedPrefix {
    /// Seqs below this were pruned; their weekly archives hold them.
    pub below: u64,
    /// The complete subtrees that cover them, largest first, hex: with the leaves from
    /// `below` on, they give every later signed root.
    pub frontier: Vec<String>,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct EntriesQuery {
    /// The first seq (0 by default).
    #[param(minimum = 0, maximum = 1099511627776_u64)]
    from: Option<u64>,
    #[param(minimum = 1, maximum = 1000, default = 1000)]
    limit: Option<u32>,
}

/// `GET /v1/orgs/{org}/log/entries?from=S&limit=N`: events in seq order, each with its
/// canonical bytes, for verifiers and exports.
#[utoipa::path(
    get,
    path = "/v1/orgs/{org}/log/entries",
    operation_id = "listLogEntries",
    params(("org" = String, Path, description = "The org's id"), EntriesQuery),
    responses((status = 200, description = "Entries in seq order", body = Entries)),
)]
pub async fn entries(
    State(state): State<AppState>,
    UrlPath(org): UrlPath<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Entries>, ApiError> {
    let from = param(raw.as_deref(), "from")?.unwrap_or(0);
    let limit = page_limit(raw.as_deref())?;
    // The prefix and the events are separate reads: a prune that commits between them moves
    // where the events start, and then they are read again.
    let (mut pruned, mut events) = (None, Vec::new());
    for _ in 0..3 {
        let below = state.store.retention(&org).await?.pruned_below;
        pruned = if from < below {
            let frontier = state.store.tree_frontier(&org, below).await?;
            Some(PrunedPrefix {
                below,
                frontier: frontier.iter().map(hex::encode).collect(),
            })
        } else {
            None
        };
        events = state.store.events_from(&org, from, limit).await?;
        if events
            .first()
            .is_none_or(|e| e.event.seq == from.max(below))
        {
            break;
        }
    }
    let items = bounded_page(events.iter().map(entry));
    // A page cut short by its size, or a full one, has more after it.
    let next = (items.len() < events.len() || events.len() == limit)
        .then(|| {
            events
                .get(items.len().wrapping_sub(1))
                .map(|e| e.event.seq + 1)
        })
        .flatten();
    Ok(Json(Entries {
        items,
        next_from: next,
        pruned,
    }))
}

/// `GET /v1/orgs/{org}/events/{seq}`: one event, its canonical bytes and, once a checkpoint
/// covers it, its inclusion proof and that checkpoint: all a client needs to check it.
/// The proof that an event is in its log.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Inclusion {
    pub tree_size: u64,
    /// The audit path, hex hashes.
    pub proof: Vec<String>,
    /// The signed checkpoint of `treeSize` it is proven against.
    pub checkpoint: String,
}

/// One event, all a client needs to check it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventProof<'a> {
    pub event: Entry<'a>,
    /// Its leaf hash, hex.
    pub leaf_hash: String,
    /// Null until a signed checkpoint covers it.
    pub inclusion: Option<Inclusion>,
}

#[utoipa::path(
    get,
    path = "/v1/orgs/{org}/events/{seq}",
    operation_id = "getEvent",
    params(("org" = String, Path, description = "The org's id"), ("seq" = u64, Path, minimum = 0, maximum = 1099511627775_u64, description = "The event's seq")),
    responses((status = 200, description = "The event and its proof", body = EventProof), NotFound),
)]
pub async fn event(
    State(state): State<AppState>,
    UrlPath((org, seq)): UrlPath<(String, String)>,
) -> Result<Response, ApiError> {
    let seq: u64 = seq
        .parse()
        .ok()
        .filter(|n| *n < MAX_LOG)
        .ok_or_else(|| ApiError::BadRequest(format!("{seq:?} is not a seq")))?;
    let e = state
        .store
        .events_from(&org, seq, 1)
        .await?
        .into_iter()
        .find(|e| e.event.seq == seq)
        .ok_or_else(|| ApiError::NotFound(format!("org {org:?} has no event {seq}")))?;
    let inclusion = match state.store.checkpoint(&org, None).await? {
        Some(c) if c.size > seq => {
            let proof = state.store.inclusion_proof(&org, seq, c.size).await?;
            Some(Inclusion {
                tree_size: c.size,
                proof: hexes(&proof),
                checkpoint: c.note,
            })
        }
        _ => None,
    };
    // The answer borrows the event, so it is rendered here.
    Ok(Json(EventProof {
        event: entry(&e),
        leaf_hash: hex::encode(e.hash),
        inclusion,
    })
    .into_response())
}
