//! The string dictionary, read side: ids to strings, the most recently used cached for the
//! life of the process. Entries are never changed or removed (the table refuses it), so a
//! cached entry never goes stale.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use lru::LruCache;
use rusqlite::{Connection, OptionalExtension};

use super::unavailable;
use crate::Result;

const CAPACITY: usize = 100_000;

pub(crate) struct DictCache {
    map: Mutex<LruCache<i64, Arc<str>, rustc_hash::FxBuildHasher>>,
}

impl Default for DictCache {
    fn default() -> Self {
        DictCache {
            map: Mutex::new(LruCache::with_hasher(
                NonZeroUsize::new(CAPACITY).expect("not zero"),
                rustc_hash::FxBuildHasher,
            )),
        }
    }
}

/// The strings of one page of rows. (Looked up a dozen times per row read: hashed with
/// FxHash, not SipHash, since the keys are the store's own ids.)
pub(crate) type Resolved = rustc_hash::FxHashMap<i64, Arc<str>>;

impl DictCache {
    /// The strings of `ids`, from the cache or the table.
    pub fn resolve(
        &self,
        conn: &Connection,
        ids: impl IntoIterator<Item = i64>,
    ) -> Result<Resolved> {
        // A page names each string many times: the distinct ids are found first, without
        // the lock, so that the cache (shared by every reader) is held for one lookup per
        // distinct string, not one per reference.
        let wanted: rustc_hash::FxHashSet<i64> = ids.into_iter().collect();
        let mut out = Resolved::with_capacity_and_hasher(wanted.len(), Default::default());
        let mut missing = Vec::new();
        {
            let mut map = self.map.lock().expect("dict cache lock");
            for id in wanted {
                match map.get(&id) {
                    Some(v) => {
                        out.insert(id, v.clone());
                    }
                    None => missing.push(id),
                }
            }
        }
        missing.sort_unstable();
        missing.dedup();
        if missing.is_empty() {
            return Ok(out);
        }
        let mut stmt = conn
            .prepare_cached("SELECT value FROM dict WHERE id = ?1")
            .map_err(unavailable)?;
        let mut loaded = Vec::with_capacity(missing.len());
        for id in missing {
            // A missing entry is left out: the row that needs it fails on its own.
            let value: Option<String> = stmt
                .query_row([id], |r| r.get(0))
                .optional()
                .map_err(unavailable)?;
            if let Some(value) = value {
                loaded.push((id, Arc::<str>::from(value)));
            }
        }
        let mut map = self.map.lock().expect("dict cache lock");
        for (id, value) in loaded {
            map.put(id, value.clone());
            out.insert(id, value);
        }
        Ok(out)
    }
}

/// The id of a string, if it was ever stored.
pub(crate) fn id_of(conn: &Connection, value: &str) -> Result<Option<i64>> {
    conn.prepare_cached("SELECT id FROM dict WHERE value = ?1")
        .and_then(|mut s| s.query_row([value], |r| r.get(0)).optional())
        .map_err(unavailable)
}
