//! Zero merge delay: once the store is given the log's key ([`crate::Store::sign_logs`]),
//! the writer signs a checkpoint of every log a transaction appends to, in that same
//! transaction. An acknowledged event is in a signed tree the moment it is acknowledged,
//! and a crash leaves no unsigned tail.
//!
//! The writer keeps each log's tree as the complete subtrees on its right edge (a
//! `RootBuilder`, at most 64 hashes), so a new root costs the new leaves and one fold, and a
//! completed tile is stored as the leaf that completes it is appended. A log's tree is read
//! from the store when the writer first appends to it (and again after a failed write), and
//! checked first: the newest stored checkpoint must open with the key, must extend every head
//! the writer signed or was told of (the same root at that head's size), and must be the
//! root of the stored tree (read through its stored tiles: a leaf rewritten under a stored
//! tile is not seen here, but the roots signed from then on are those of the original
//! history, and `trail verify`, which recomputes every leaf, names it); no stored tile may
//! cover events the log does not hold yet.
//! A log that fails is not signed any more (its events are still stored, and the failure is
//! logged and counted), since signing it would put the key's name to a rewritten history.

use std::collections::HashMap;
use std::sync::Arc;

use rusqlite::{Connection, params};
use trail_core::Timestamp;
use trail_core::checkpoint::{Checkpoint, SignerKey, open, origin};
use trail_core::merkle::{Hash, RootBuilder, TILE_HEIGHT};

use super::tree::{self, Tree};
use super::{read, unavailable};
use crate::{Result, SignedCheckpoint, StoreError};

/// The writer's signing state.
pub(crate) struct Signer {
    key: Arc<SignerKey>,
    /// Heads signed before, remembered outside the database (by org slug): no checkpoint is
    /// signed that does not extend them.
    remembered: HashMap<String, (u64, Hash)>,
    /// The newest checkpoint of each log, as committed.
    pub heads: HashMap<i64, SignedCheckpoint>,
    /// Each log's tree as committed.
    pub trees: HashMap<i64, RootBuilder>,
    /// Logs that are not signed any more, and why.
    pub refused: HashMap<i64, String>,
}

/// What opening a log for signing found.
pub(crate) enum Opened {
    /// Its tree, after its newest checkpoint was checked.
    Tree(RootBuilder),
    /// Why it must not be signed.
    Refused(String),
}

impl Signer {
    pub fn new(key: Arc<SignerKey>, remembered: HashMap<String, (u64, Hash)>) -> Signer {
        Signer {
            key,
            remembered,
            heads: HashMap::new(),
            trees: HashMap::new(),
            refused: HashMap::new(),
        }
    }

    /// Reads the tree of `org`'s log as `tx` sees it and checks it against its newest
    /// checkpoint; stores the tiles of events that no checkpoint covered yet.
    pub fn open_log(&self, tx: &Connection, org_id: i64, org: &str) -> Result<Opened> {
        match self.check(tx, org_id, org) {
            Ok(tree) => Ok(Opened::Tree(tree)),
            Err(StoreError::Corrupt(why)) => Ok(Opened::Refused(why)),
            Err(e) => Err(e),
        }
    }

    fn check(&self, tx: &Connection, org_id: i64, org: &str) -> Result<RootBuilder> {
        let corrupt = |why: String| StoreError::Corrupt(why);
        let size = read::log_size(tx, org)?;
        let signed = match tree::checkpoint(tx, org, None)? {
            None => (0, trail_core::merkle::empty_root()),
            Some(c) => {
                let opened = open(&c.note, &self.key.verifier()).map_err(|e| {
                    corrupt(format!("the newest stored checkpoint does not open: {e}"))
                })?;
                if opened.origin != origin(&self.key.name, org)
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
        let floors = [
            self.remembered.get(org).copied(),
            self.heads.get(&org_id).map(|c| (c.size, c.root)),
        ];
        if signed.0 > size {
            return Err(corrupt(format!(
                "the log holds {size} events but a signed checkpoint covers {}",
                signed.0
            )));
        }
        for (was, root) in floors.into_iter().flatten() {
            if was > signed.0 {
                return Err(corrupt(format!(
                    "checkpoints up to {was} events were signed, but the store's newest covers {}",
                    signed.0
                )));
            }
            // The head signed before must be a prefix of this history: the same root at its
            // size (the store's newest may be later).
            let same = if was == signed.0 {
                root == signed.1
            } else {
                was == 0 || Tree::open(tx, org, was)?.root()? == root
            };
            if !same {
                return Err(corrupt(format!(
                    "the stored history does not give the root signed before at size {was}"
                )));
            }
        }
        // A tile of a subtree the log has not completed was planted: the writer would collide
        // with it when the subtree completes.
        let mut ahead = false;
        for level in (TILE_HEIGHT..64).step_by(TILE_HEIGHT as usize) {
            ahead |= tx
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM tiles WHERE org = ?1 AND level = ?2 AND idx >= ?3)",
                )
                .and_then(|mut s| {
                    s.query_row(params![org_id, level, (size >> level) as i64], |r| {
                        r.get::<_, bool>(0)
                    })
                })
                .map_err(unavailable)?;
        }
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
        tree::extend_tiles(tx, org, signed.0, size)?;
        RootBuilder::at(&Tree::open(tx, org, size)?, size)
    }

    /// Signs the head of `tree` as `org`'s newest checkpoint, in `tx`.
    pub fn sign(
        &self,
        tx: &Connection,
        org_id: i64,
        org: &str,
        tree: &RootBuilder,
        at: Timestamp,
    ) -> Result<SignedCheckpoint> {
        let (size, root) = (tree.size(), tree.root());
        let note = self.key.sign(&Checkpoint {
            origin: origin(&self.key.name, org),
            size,
            root,
        });
        tx.prepare_cached(
            "INSERT INTO checkpoints (org, size, root, note, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .and_then(|mut s| s.execute(params![org_id, size as i64, root.as_slice(), note, at.0]))
        .map_err(unavailable)?;
        Ok(SignedCheckpoint {
            org: org.to_owned(),
            size,
            root,
            note,
            created_at: at,
        })
    }
}

/// Stores a tile the tree completed.
pub(crate) fn store_tile(
    tx: &Connection,
    org_id: i64,
    level: u32,
    idx: u64,
    hash: &Hash,
) -> Result<()> {
    tx.prepare_cached("INSERT INTO tiles (org, level, idx, hash) VALUES (?1, ?2, ?3, ?4)")
        .and_then(|mut s| s.execute(params![org_id, level, idx as i64, hash.as_slice()]))
        .map_err(unavailable)?;
    Ok(())
}

/// A log refused for signing: said once, loudly.
pub(crate) fn refused(org: &str, why: &str) {
    metrics::counter!("trail_log_integrity_failures_total").increment(1);
    tracing::error!(org, "not signing: {why}; run `trail verify` on this log");
}
