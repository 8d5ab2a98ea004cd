//! The store conformance suite on the embedded SQLite backend.

use std::sync::Arc;

use trail_store::SqliteStore;
use trail_store::conformance::Backend;

async fn sqlite() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    Backend {
        store: Arc::new(store),
        guard: Box::new(dir),
    }
}

trail_store::store_conformance_tests!(sqlite);
