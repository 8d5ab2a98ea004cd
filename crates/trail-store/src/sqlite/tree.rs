//! The Merkle tree of an org's log in SQLite: leaves are `events.hash`, tiles are `tiles`;
//! the algorithms are `trail_core::merkle`'s, reached through [`HashReader`].

use rusqlite::{Connection, OptionalExtension, params};
use trail_core::Timestamp;
use trail_core::merkle::{self, Hash, HashReader, TILE_HEIGHT};

use super::{SEQ_BITS, org_id, read::log_size, unavailable};
use crate::{Result, SignedCheckpoint, StoreError};

/// An org's tree of `size` leaves, on a connection.
pub(crate) struct Tree<'c> {
    conn: &'c Connection,
    org_id: i64,
    org: String,
    size: u64,
    /// Leaves below this were pruned: only their tiles remain.
    pruned_below: u64,
}

impl<'c> Tree<'c> {
    /// The tree of the first `size` events; `size` may not exceed the log.
    pub fn open(conn: &'c Connection, org: &str, size: u64) -> Result<Tree<'c>> {
        let have = log_size(conn, org)?;
        if size > have {
            return Err(StoreError::NotFound(format!(
                "a tree of {size} events in org {org:?}, whose log holds {have}"
            )));
        }
        let org_id = org_id(conn, org)?;
        Ok(Tree {
            conn,
            org_id,
            org: org.to_owned(),
            size,
            pruned_below: super::read::pruned_below(conn, org_id)?,
        })
    }

    pub fn root(&self) -> Result<Hash> {
        merkle::root(self, self.size)
    }

    pub fn frontier(&self) -> Result<Vec<Hash>> {
        Ok(merkle::RootBuilder::at(self, self.size)?.frontier())
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
}

impl HashReader for Tree<'_> {
    type Error = StoreError;

    fn leaves(&self, start: u64, end: u64) -> Result<Vec<Hash>> {
        if start < self.pruned_below {
            return Err(StoreError::NotFound(format!(
                "seq {start} of org {:?}, pruned under its retention (the log starts at {}),",
                self.org, self.pruned_below
            )));
        }
        let base = self.org_id << SEQ_BITS;
        let mut stmt = self
            .conn
            .prepare_cached("SELECT hash FROM events WHERE k >= ?1 AND k < ?2 ORDER BY k")
            .map_err(unavailable)?;
        let rows = stmt
            .query_map(params![base | start as i64, base | end as i64], |r| {
                r.get::<_, Vec<u8>>(0)
            })
            .map_err(unavailable)?;
        let mut out = Vec::with_capacity((end - start) as usize);
        for row in rows {
            let h = row.map_err(unavailable)?;
            out.push(
                h.try_into()
                    .map_err(|_| corrupt(&self.org, "a leaf hash is not 32 bytes"))?,
            );
        }
        if out.len() as u64 != end - start {
            return Err(corrupt(
                &self.org,
                &format!("seqs {start}..{end} are not all there"),
            ));
        }
        Ok(out)
    }

    fn stored(&self, level: u32, start: u64, end: u64) -> Result<Vec<Option<Hash>>> {
        let mut out = vec![None; (end - start) as usize];
        let mut stmt = self
            .conn
            .prepare_cached("SELECT idx, hash FROM tiles WHERE org = ?1 AND level = ?2 AND idx >= ?3 AND idx < ?4")
            .map_err(unavailable)?;
        let rows = stmt
            .query_map(params![self.org_id, level, start as i64, end as i64], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
            })
            .map_err(unavailable)?;
        for row in rows {
            let (idx, h) = row.map_err(unavailable)?;
            out[(idx as u64 - start) as usize] = Some(
                h.try_into()
                    .map_err(|_| corrupt(&self.org, "a tile hash is not 32 bytes"))?,
            );
        }
        Ok(out)
    }
}

fn corrupt(org: &str, what: &str) -> StoreError {
    StoreError::Corrupt(format!("the tree of org {org:?}: {what}"))
}

/// Stores every tile that leaves `[0, size)` complete and that the first `signed` leaves
/// did not, lowest level first. Each is computed from the level below (never from a stored
/// tile of its own level); one already stored must agree, or the tree was tampered with.
pub(crate) fn extend_tiles(conn: &Connection, org: &str, signed: u64, size: u64) -> Result<()> {
    let tree = Tree::open(conn, org, size)?;
    let mut level = TILE_HEIGHT;
    while level < 64 && size >> level > 0 {
        let stored = tree.stored(level, signed >> level, size >> level)?;
        for (i, have) in stored.into_iter().enumerate() {
            let idx = (signed >> level) + i as u64;
            let hash = merkle::subtree_from_below(&tree, level, idx)?;
            match have {
                Some(h) if h == hash => {}
                Some(_) => {
                    return Err(corrupt(
                        org,
                        &format!(
                            "the stored tile {idx} of level {level} does not match the leaves"
                        ),
                    ));
                }
                None => {
                    conn.prepare_cached(
                        "INSERT INTO tiles (org, level, idx, hash) VALUES (?1, ?2, ?3, ?4)",
                    )
                    .and_then(|mut s| {
                        s.execute(params![tree.org_id, level, idx as i64, hash.as_slice()])
                    })
                    .map_err(unavailable)?;
                }
            }
        }
        level += TILE_HEIGHT;
    }
    Ok(())
}

fn checkpoint_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(i64, Vec<u8>, String, i64)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
}

fn to_checkpoint(
    org: &str,
    (size, root, note, at): (i64, Vec<u8>, String, i64),
) -> Result<SignedCheckpoint> {
    Ok(SignedCheckpoint {
        org: org.to_owned(),
        size: size as u64,
        root: root
            .try_into()
            .map_err(|_| corrupt(org, "a checkpoint root is not 32 bytes"))?,
        note,
        created_at: Timestamp(at),
    })
}

pub(crate) fn checkpoint(
    conn: &Connection,
    org: &str,
    size: Option<u64>,
) -> Result<Option<SignedCheckpoint>> {
    let org_id = org_id(conn, org)?;
    let row = match size {
        Some(s) => conn
            .prepare_cached("SELECT size, root, note, created_at FROM checkpoints WHERE org = ?1 AND size = ?2")
            .and_then(|mut st| st.query_row(params![org_id, s as i64], checkpoint_from_row).optional()),
        None => conn
            .prepare_cached(
                "SELECT size, root, note, created_at FROM checkpoints WHERE org = ?1 ORDER BY size DESC LIMIT 1",
            )
            .and_then(|mut st| st.query_row([org_id], checkpoint_from_row).optional()),
    }
    .map_err(unavailable)?;
    row.map(|r| to_checkpoint(org, r)).transpose()
}

pub(crate) fn checkpoint_at_most(
    conn: &Connection,
    org: &str,
    size: u64,
) -> Result<Option<SignedCheckpoint>> {
    let org_id = org_id(conn, org)?;
    conn.prepare_cached(
        "SELECT size, root, note, created_at FROM checkpoints WHERE org = ?1 AND size <= ?2 \
         ORDER BY size DESC LIMIT 1",
    )
    .and_then(|mut st| {
        st.query_row(
            params![org_id, size.min(i64::MAX as u64) as i64],
            checkpoint_from_row,
        )
        .optional()
    })
    .map_err(unavailable)?
    .map(|r| to_checkpoint(org, r))
    .transpose()
}

pub(crate) fn checkpoints(
    conn: &Connection,
    org: &str,
    after: u64,
    limit: usize,
) -> Result<Vec<SignedCheckpoint>> {
    let org_id = org_id(conn, org)?;
    let mut stmt = conn
        .prepare_cached(
            "SELECT size, root, note, created_at FROM checkpoints WHERE org = ?1 AND size > ?2 \
             ORDER BY size LIMIT ?3",
        )
        .map_err(unavailable)?;
    let rows = stmt
        .query_map(
            params![org_id, after.min(i64::MAX as u64) as i64, limit as i64],
            checkpoint_from_row,
        )
        .map_err(unavailable)?;
    rows.map(|r| to_checkpoint(org, r.map_err(unavailable)?))
        .collect()
}
