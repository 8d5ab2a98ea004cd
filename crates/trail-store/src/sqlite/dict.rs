//! The string dictionary's caches: ids to strings for the readers ([`DictCache`]), strings
//! to ids for the writer ([`Ids`]), each keeping the most recently used for the life of the
//! process. Entries are never changed or removed (the table refuses it), so a cached entry
//! never goes stale.

use std::collections::HashMap;
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

/// The writer's ids of the strings it stored or met most recently: at most `capacity`, in two
/// generations. A string is found in the young one, or moved there from the old one; when
/// the young one is full it becomes the old one and the old one is forgotten, so a string
/// used at least once a generation stays. A hit costs one lookup, with none of an LRU list's
/// pointer updates. Hashed with the standard library's SipHash: the strings come from
/// clients, and the maps last as long as the process.
pub(crate) struct Ids {
    young: HashMap<Box<str>, i64>,
    old: HashMap<Box<str>, i64>,
    generation: usize,
}

impl Ids {
    pub fn new(capacity: usize) -> Ids {
        Ids {
            young: HashMap::new(),
            old: HashMap::new(),
            generation: (capacity / 2).max(1),
        }
    }

    pub fn get(&mut self, value: &str) -> Option<i64> {
        if let Some(&id) = self.young.get(value) {
            return Some(id);
        }
        let (value, id) = self.old.remove_entry(value)?;
        self.keep(value, id);
        Some(id)
    }

    pub fn put(&mut self, value: String, id: i64) {
        self.old.remove(value.as_str());
        self.keep(value.into_boxed_str(), id);
    }

    pub fn clear(&mut self) {
        self.young.clear();
        self.old.clear();
    }

    fn keep(&mut self, value: Box<str>, id: i64) {
        if self.young.len() >= self.generation {
            self.old = std::mem::take(&mut self.young);
        }
        self.young.insert(value, id);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.young.len() + self.old.len()
    }
}

/// The id of a string, if it was ever stored.
pub(crate) fn id_of(conn: &Connection, value: &str) -> Result<Option<i64>> {
    conn.prepare_cached("SELECT id FROM dict WHERE value = ?1")
        .and_then(|mut s| s.query_row([value], |r| r.get(0)).optional())
        .map_err(unavailable)
}

#[cfg(test)]
mod tests {
    use super::Ids;

    #[test]
    fn the_writers_ids_keep_what_is_used_and_stay_within_their_capacity() {
        let mut ids = Ids::new(4);
        for (i, s) in ["a", "b", "c", "d", "e", "f"].into_iter().enumerate() {
            ids.put(s.to_owned(), i as i64);
            // "a" is used once in every generation: it is never forgotten.
            assert_eq!(ids.get("a"), Some(0), "after {s}");
            assert!(ids.len() <= 4, "{} ids kept after {s}", ids.len());
        }
        // The last ones put are kept; those used neither since nor in the generation before
        // are forgotten, to be looked up again.
        assert_eq!(ids.get("f"), Some(5));
        assert_eq!(ids.get("b"), None);
        assert_eq!(ids.get("c"), None);
        // A string put again is kept once, with its id.
        ids.put("f".to_owned(), 5);
        ids.put("f".to_owned(), 5);
        assert!(ids.len() <= 4);
        assert_eq!(ids.get("f"), Some(5));
        ids.clear();
        assert_eq!(ids.get("a"), None);
        assert_eq!(ids.len(), 0);
    }
}
