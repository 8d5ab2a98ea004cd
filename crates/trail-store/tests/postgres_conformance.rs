//! The store conformance suite on the PostgreSQL backend: each test on a database of its
//! own, on a server the test run starts itself.

use std::sync::Arc;

use trail_store::PgStore;
use trail_store::conformance::{Backend, postgres_database};

async fn postgres() -> Backend {
    let url = tokio::task::spawn_blocking(postgres_database)
        .await
        .unwrap();
    let store = PgStore::open(&url).await.unwrap();
    Backend {
        store: Arc::new(store),
        guard: Box::new(()),
    }
}

trail_store::store_conformance_tests!(postgres);
