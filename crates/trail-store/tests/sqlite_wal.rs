//! The WAL is folded into the database by the store's own thread, not inside a commit: what
//! the writer commits reaches the database file with no further commit, long before the
//! WAL holds the 1,000 pages after which SQLite's automatic checkpoint would run.

use std::time::{Duration, Instant};

use trail_store::conformance::{sample_events, with_orgs};
use trail_store::sqlite::DB_FILE;
use trail_store::{SqliteStore, Store};

#[tokio::test]
async fn committed_events_reach_the_database_file_off_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    with_orgs(&store, &["acme"]).await;
    let db = dir.path().join(DB_FILE);
    let size = || std::fs::metadata(&db).unwrap().len();
    // Let the store's first writes be folded, then commit far fewer pages than SQLite's
    // automatic checkpoint waits for (1,000).
    tokio::time::sleep(Duration::from_millis(600)).await;
    let before = size();
    store.append("acme", sample_events(300)).await.unwrap();
    // Folded within an interval or two; the limit only bounds a failing run.
    let deadline = Instant::now() + Duration::from_secs(60);
    while size() <= before {
        assert!(
            Instant::now() < deadline,
            "the database file still holds {before} bytes 60 s after a commit"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(store.log_size("acme").await.unwrap(), 300);
}

/// A store that closes leaves its WAL empty, even while another connection holds the file
/// open (so SQLite's own cleanup at the last close does not run): the next open (a restart,
/// an offline verification) does not read it back to rebuild its index.
#[tokio::test]
async fn a_closed_store_leaves_an_empty_wal() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    with_orgs(&store, &["acme"]).await;
    store.append("acme", sample_events(3000)).await.unwrap();
    let other = rusqlite::Connection::open(dir.path().join(DB_FILE)).unwrap();
    let _: i64 = other
        .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
        .unwrap();
    let wal = dir.path().join(format!("{DB_FILE}-wal"));
    assert!(std::fs::metadata(&wal).unwrap().len() > 0);
    drop(store);
    assert_eq!(
        std::fs::metadata(&wal).unwrap().len(),
        0,
        "the WAL is folded and emptied"
    );
    let n: i64 = other
        .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 3000);
}
