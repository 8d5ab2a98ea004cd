//! Verifying an org's log over the API, as a witness: the checkpoints must be signed by the
//! pinned key, consistent with the checkpoint this client saw last time (kept in its state
//! directory), and given by the events the server serves, each recomputed from its
//! canonical bytes.
//!
//! Two kinds of failure are told apart, because they call for different actions:
//! - **a different log, or a rotated key** ([`VerifyError::DifferentKey`]): the server signs
//!   with a key other than the one pinned, or the checkpoint remembered for this origin was
//!   signed by another key. Nothing says the log was tampered with; the operator re-pins
//!   (`--key`) or forgets a log replaced on purpose.
//! - **tampering** ([`VerifyError::Checkpoint`], [`VerifyError::Finding`]): the same key
//!   signed a history that the events, or an earlier checkpoint, contradict.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use trail_core::checkpoint::{Checkpoint, VerifierKey, open};
use trail_core::merkle::{Hash, RootBuilder, verify_consistency};
use trail_core::verify::{Finding, LogVerifier, Verified};

use crate::{Client, ClientError, segment};

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The log itself is wrong: the first bad seq and what is wrong with it.
    #[error("{0}")]
    Finding(Finding),
    /// A checkpoint is not what it must be (bad signature, wrong origin, not consistent).
    #[error("{0}")]
    Checkpoint(String),
    /// The log is signed by another key than the one trusted for it: a different log, or a
    /// rotated key (not evidence of tampering; see the module documentation).
    #[error("{0}")]
    DifferentKey(String),
    #[error("the state directory: {0}")]
    State(String),
}

/// What this client remembers between runs: the key pinned for each server (by URL), and the
/// last checkpoint verified of each log (by origin).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Witness {
    pub keys: BTreeMap<String, String>,
    pub checkpoints: BTreeMap<String, SeenCheckpoint>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeenCheckpoint {
    pub size: u64,
    pub root: String,
    pub note: String,
    /// The key it was verified with (absent in state written by older versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl Witness {
    pub fn file(dir: &Path) -> PathBuf {
        dir.join("witness.json")
    }

    pub fn load(dir: &Path) -> Result<Witness, VerifyError> {
        match std::fs::read_to_string(Self::file(dir)) {
            Ok(text) => serde_json::from_str(&text)
                .map_err(|e| VerifyError::State(format!("{}: {e}", Self::file(dir).display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Witness::default()),
            Err(e) => Err(VerifyError::State(e.to_string())),
        }
    }

    pub fn save(&self, dir: &Path) -> Result<(), VerifyError> {
        std::fs::create_dir_all(dir).map_err(|e| VerifyError::State(e.to_string()))?;
        let tmp = dir.join("witness.json.tmp");
        std::fs::write(
            &tmp,
            serde_json::to_string_pretty(self).expect("serializes"),
        )
        .and_then(|()| std::fs::rename(&tmp, Self::file(dir)))
        .map_err(|e| VerifyError::State(e.to_string()))
    }
}

/// What a verification established.
#[derive(Debug)]
pub struct Report {
    pub org: String,
    pub checkpoint: Checkpoint,
    pub verified: Verified,
    /// The checkpoint seen before, if any, that the new one is consistent with.
    pub previous: Option<u64>,
    /// The checkpoint seen before, when it lies in the part of the log since pruned under
    /// retention: no proof reaches it online any more (its weekly archives hold its events).
    pub previous_pruned: Option<u64>,
}

fn decode_hash(s: &str) -> Result<Hash, ClientError> {
    hex::decode(s)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| ClientError::Decode(format!("{s:?} is not a hash")))
}

/// Verifies `org`'s log up to its newest checkpoint. `key` is the verifier key to trust;
/// `witness` holds the checkpoint seen last time, and is updated.
pub async fn verify_log(
    client: &Client,
    org: &str,
    key: &VerifierKey,
    witness: &mut Witness,
    mut progress: impl FnMut(u64, u64),
) -> Result<Report, VerifyError> {
    let o = segment(org);
    let origin = format!("{}/{org}", key.name);
    let open_checked = |note: &str| -> Result<Checkpoint, VerifyError> {
        let c = open(note, key).map_err(|e| VerifyError::Checkpoint(e.to_string()))?;
        if c.origin != origin {
            return Err(VerifyError::Checkpoint(format!(
                "a checkpoint names log {:?}, not {origin:?}",
                c.origin
            )));
        }
        Ok(c)
    };
    let newest_note = client
        .get_text(&format!("/v1/orgs/{o}/log/checkpoint"))
        .await?;
    let newest = match open_checked(&newest_note) {
        Ok(c) => c,
        Err(e) => {
            // Signed by another key than the trusted one? Then it is another log (or the same
            // log under a new key), which the operator must decide about, not tampering.
            let served = client.get_json("/v1/log/key").await?;
            let served = served["verifierKey"].as_str().unwrap_or("");
            if let Ok(served) = VerifierKey::parse(served)
                && served.to_string() != key.to_string()
            {
                return Err(VerifyError::DifferentKey(format!(
                    "the server signs with key {served}, not the key trusted for it ({key}): \
                     this is a different log, or its key was rotated. If that is expected, \
                     trust the new key with --key {served}"
                )));
            }
            return Err(e);
        }
    };

    // Every checkpoint up to the newest, each signature checked and each listed size and
    // root matched against its note.
    let mut checkpoints = vec![newest.clone()];
    let mut after = 0;
    loop {
        let page = client
            .get_json(&format!(
                "/v1/orgs/{o}/log/checkpoints?after={after}&limit=1000"
            ))
            .await?;
        for item in page["items"].as_array().into_iter().flatten() {
            let c = open_checked(item["note"].as_str().unwrap_or(""))?;
            if item["size"].as_u64() != Some(c.size)
                || item["root"].as_str() != Some(&hex::encode(c.root))
            {
                return Err(VerifyError::Checkpoint(format!(
                    "the checkpoint listed as {} disagrees with its signed note",
                    item["size"]
                )));
            }
            if c.size <= newest.size {
                checkpoints.push(c);
            }
        }
        match page["nextAfter"].as_u64() {
            Some(n) if n > after && n < newest.size => after = n,
            _ => break,
        }
    }

    // Consistent with what this client saw before?
    // A log is known by its origin, whichever URL serves it.
    let previous = witness.checkpoints.get(&origin).cloned();
    let mut previous_pruned = None;
    if let Some(prev) = &previous {
        let other_key = prev.key.as_ref().is_some_and(|k| *k != key.to_string());
        let before = match open_checked(&prev.note) {
            Ok(c) if !other_key => c,
            _ => {
                return Err(VerifyError::DifferentKey(format!(
                    "you verified a log named {origin:?} before, signed by another key{}: this \
                     is a different log with the same name, or its key was rotated. If you \
                     replaced that log on purpose, forget it: remove {origin:?} from the \
                     witness file",
                    prev.key
                        .as_ref()
                        .map_or(String::new(), |k| format!(" ({k})"))
                )));
            }
        };
        if before.size > newest.size {
            return Err(VerifyError::Checkpoint(format!(
                "the log went back: its newest checkpoint covers {} events, but you verified {} before",
                newest.size, before.size
            )));
        }
        let pruned_below =
            client.get_json(&format!("/v1/orgs/{o}/retention")).await?["prunedBelow"]
                .as_u64()
                .unwrap_or(0);
        if before.size < pruned_below && before.size < newest.size {
            previous_pruned = Some(before.size);
        } else {
            let proof = client
                .get_json(&format!(
                    "/v1/orgs/{o}/log/proof/consistency?from={}&to={}",
                    before.size, newest.size
                ))
                .await?;
            let proof: Vec<Hash> = proof["proof"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|h| decode_hash(h.as_str().unwrap_or("")))
                .collect::<Result<_, _>>()?;
            if !verify_consistency(before.size, newest.size, &before.root, &newest.root, &proof) {
                return Err(VerifyError::Checkpoint(format!(
                    "the log is not consistent with the checkpoint of {} events you verified before: history was rewritten",
                    before.size
                )));
            }
        }
        checkpoints.push(before);
    }

    // Recompute the tree from the events, as served: from seq 0, or, if the log was pruned
    // under retention, from where it now starts and the tree's edge there (which must then
    // give every later signed root).
    let mut checkpoints = Some(checkpoints);
    let mut verifier: Option<LogVerifier> = None;
    let mut from = 0;
    while from < newest.size {
        let page = client
            .get_json(&format!("/v1/orgs/{o}/log/entries?from={from}&limit=1000"))
            .await?;
        let verifier = match &mut verifier {
            Some(v) => v,
            None => {
                let cps = checkpoints.take().unwrap_or_default();
                let started = match page["pruned"].as_object() {
                    Some(p) => {
                        let below = p["below"].as_u64().unwrap_or(0);
                        if below % 256 != 0 || below > newest.size {
                            return Err(VerifyError::Checkpoint(format!(
                                "the server says the log was pruned below seq {below}, which a prune never leaves (whole tiles of 256, within the newest checkpoint's {} events)",
                                newest.size
                            )));
                        }
                        let edge: Vec<Hash> = p["frontier"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(|h| decode_hash(h.as_str().unwrap_or("")))
                            .collect::<Result<_, _>>()?;
                        let edge = RootBuilder::from_frontier(below, &edge).ok_or_else(|| {
                            VerifyError::Checkpoint(format!(
                                "the server's edge of the log pruned below seq {below} is not a tree's"
                            ))
                        })?;
                        from = below;
                        LogVerifier::after_pruned(cps, edge)
                    }
                    None => LogVerifier::new(cps),
                };
                verifier.insert(started)
            }
        };
        let items = page["items"].as_array().cloned().unwrap_or_default();
        if items.is_empty() {
            break;
        }
        for item in &items {
            let bytes = STANDARD
                .decode(item["canonical"].as_str().unwrap_or(""))
                .map_err(|e| ClientError::Decode(format!("canonical bytes: {e}")))?;
            let event = trail_core::canonical::decode(&bytes)
                .map_err(|e| ClientError::Decode(e.to_string()))?;
            if event.seq >= newest.size {
                break;
            }
            verifier.push(&event, &decode_hash(item["hash"].as_str().unwrap_or(""))?);
            from = event.seq + 1;
        }
        progress(from, newest.size);
        match page["nextFrom"].as_u64() {
            Some(n) if n >= from => from = n,
            _ => break,
        }
    }
    let verified = match verifier {
        Some(v) => v.finish(),
        None => LogVerifier::new(checkpoints.unwrap_or_default()).finish(),
    }
    .map_err(VerifyError::Finding)?;
    if verified.size != newest.size {
        return Err(VerifyError::Checkpoint(format!(
            "the events served reach {} of the {} the newest checkpoint covers",
            verified.size, newest.size
        )));
    }
    witness.checkpoints.insert(
        origin,
        SeenCheckpoint {
            size: newest.size,
            root: hex::encode(newest.root),
            note: newest_note,
            key: Some(key.to_string()),
        },
    );
    Ok(Report {
        org: org.to_owned(),
        checkpoint: newest,
        verified,
        previous: previous
            .map(|p| p.size)
            .filter(|p| previous_pruned != Some(*p)),
        previous_pruned,
    })
}
