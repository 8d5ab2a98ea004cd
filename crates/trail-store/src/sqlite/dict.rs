//! The string dictionary, read side: ids to strings, cached for the life of the process.
//! Entries are never changed or removed (the table refuses it), so a cached entry never goes
//! stale.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use rusqlite::{Connection, OptionalExtension};

use super::unavailable;
use crate::{Result, StoreError};

#[derive(Default)]
pub(crate) struct DictCache {
    map: RwLock<HashMap<i64, Arc<str>>>,
}

impl DictCache {
    /// Loads whichever of `ids` are not cached yet.
    pub fn ensure(&self, conn: &Connection, ids: impl IntoIterator<Item = i64>) -> Result<()> {
        let missing: HashSet<i64> = {
            let map = self.map.read().expect("dict cache lock");
            ids.into_iter().filter(|id| !map.contains_key(id)).collect()
        };
        if missing.is_empty() {
            return Ok(());
        }
        let mut stmt = conn
            .prepare_cached("SELECT value FROM dict WHERE id = ?1")
            .map_err(unavailable)?;
        let mut loaded = Vec::with_capacity(missing.len());
        for id in missing {
            let value: String = stmt
                .query_row([id], |r| r.get(0))
                .optional()
                .map_err(unavailable)?
                .ok_or_else(|| StoreError::Corrupt(format!("dictionary entry {id} is missing")))?;
            loaded.push((id, Arc::<str>::from(value)));
        }
        self.map.write().expect("dict cache lock").extend(loaded);
        Ok(())
    }

    /// A cached entry; call [`DictCache::ensure`] first.
    pub fn get(&self, id: i64) -> Result<Arc<str>> {
        self.map
            .read()
            .expect("dict cache lock")
            .get(&id)
            .cloned()
            .ok_or_else(|| StoreError::Corrupt(format!("dictionary entry {id} is missing")))
    }
}

/// The id of a string, if it was ever stored.
pub(crate) fn id_of(conn: &Connection, value: &str) -> Result<Option<i64>> {
    conn.prepare_cached("SELECT id FROM dict WHERE value = ?1")
        .and_then(|mut s| s.query_row([value], |r| r.get(0)).optional())
        .map_err(unavailable)
}
