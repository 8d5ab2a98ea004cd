//! Every filtered query has a deadline inside SQLite: past it, the query is stopped and
//! answers a clear `TimedOut`, never a hang, and the reader serves the next query normally.

use std::time::Duration;

use trail_core::Timestamp;
use trail_core::query::Filter;
use trail_store::conformance::{sample_events, with_orgs};
use trail_store::{EventQuery, SqliteStore, Store, StoreError};

#[tokio::test]
async fn a_query_past_its_deadline_is_stopped_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    with_orgs(&store, &["acme"]).await;
    store.append("acme", sample_events(3000)).await.unwrap();
    let mut filter = Filter::default();
    filter
        .add_query("-actor:nobody route:/v1/tenants", Timestamp(i64::MAX / 2))
        .unwrap();
    let q = EventQuery {
        filter,
        cursor: None,
        limit: 100,
    };

    // A deadline that has passed before the query starts: SQLite stops it at its first
    // check, however fast the machine.
    store.set_query_deadline(Duration::ZERO);
    for _ in 0..3 {
        let err = store.query("acme", &q).await.unwrap_err();
        assert!(
            matches!(err, StoreError::TimedOut(d) if d == Duration::ZERO),
            "{err}"
        );
        assert!(err.to_string().contains("deadline"), "{err}");
    }
    // Reads without a deadline are not affected, and once the deadline is back every reader
    // answers in full.
    assert_eq!(
        store.events_from("acme", 0, 10_000).await.unwrap().len(),
        3000
    );
    store.set_query_deadline(Duration::from_secs(60));
    for _ in 0..10 {
        let page = store.query("acme", &q).await.unwrap();
        assert!(!page.items.is_empty());
    }
}
