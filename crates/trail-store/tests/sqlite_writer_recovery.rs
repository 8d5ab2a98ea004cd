//! The writer never stays broken: a write that fails for a reason that can pass (here: rows
//! another connection added behind its back, as an operator command on the same data
//! directory would) makes it forget what it cached, readiness says why, and the next write
//! reads committed state and succeeds.

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use serde_json::json;
use trail_core::scope::Scope;
use trail_core::{EventBody, Timestamp};
use trail_store::sqlite::{DB_FILE, PROBE_INTERVAL};
use trail_store::{Org, SqliteStore, Store, StoreError, Token, TokenKind};

fn event(action: &str) -> EventBody {
    EventBody::from_json(
        json!({"action": action, "actor": {"id": "alice", "type": "user"}}),
        "acme",
    )
    .unwrap()
}

fn org(id: &str) -> Org {
    Org {
        id: id.into(),
        name: id.into(),
        created_at: Timestamp(0),
    }
}

async fn store_with_events(dir: &Path) -> SqliteStore {
    let store = SqliteStore::open(dir).unwrap();
    store
        .create_org(org("acme"), None, None, Vec::new())
        .await
        .unwrap();
    store
        .append("acme", vec![event("a"), event("b")])
        .await
        .unwrap();
    store
}

fn raw(dir: &Path) -> Connection {
    let c = Connection::open(dir.join(DB_FILE)).unwrap();
    c.busy_timeout(Duration::from_secs(10)).unwrap();
    c
}

/// Appends one row to `org`'s log from another connection: a copy of its newest event at the
/// next seq.
fn append_behind_the_back(dir: &Path, org: &str) {
    let n = raw(dir)
        .execute(
            "INSERT INTO events (k, org, ts, rdelta, action, cat, actor, atype, hash) \
             SELECT k + 1, org, ts, rdelta, action, cat, actor, atype, hash FROM events \
             WHERE k = (SELECT max(k) FROM events \
                        WHERE org = (SELECT id FROM orgs WHERE slug = ?1))",
            [org],
        )
        .unwrap();
    assert_eq!(n, 1);
}

async fn seqs(store: &SqliteStore, org: &str) -> Vec<u64> {
    store
        .events_from(org, 0, 1000)
        .await
        .unwrap()
        .iter()
        .map(|s| s.event.seq)
        .collect()
}

#[tokio::test]
async fn appends_recover_after_another_connection_appends() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_events(dir.path()).await;
    append_behind_the_back(dir.path(), "acme");

    let mut failures = 0;
    let appended = loop {
        match store.append("acme", vec![event("c")]).await {
            Ok(a) => break a,
            Err(e) => {
                failures += 1;
                assert!(failures <= 1, "the writer stays broken: {e}");
                let health = store.health().await.expect_err("readiness must say why");
                assert!(
                    health.to_string().contains("writes are failing"),
                    "{health}"
                );
            }
        }
    };
    assert_eq!(appended[0].seq, 3);
    store.health().await.unwrap();
    store.append("acme", vec![event("d")]).await.unwrap();
    assert_eq!(seqs(&store, "acme").await, [0, 1, 2, 3, 4]);
    assert_eq!(store.log_size("acme").await.unwrap(), 5);
}

#[tokio::test]
async fn changes_and_their_records_recover_after_another_connection_appends() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_events(dir.path()).await;
    append_behind_the_back(dir.path(), "acme");
    let token = |id: &str| Token {
        id: id.into(),
        kind: TokenKind::ApiKey,
        org: "acme".into(),
        owner: "ci".into(),
        user_id: None,
        name: "ci".into(),
        description: String::new(),
        scopes: vec![Scope::LogsWrite],
        instance: None,
        secret_hash: [1; 32],
        created_by: "test".into(),
        created_at: Timestamp(0),
        expires_at: None,
        revoked_at: None,
        reach: trail_store::Reach::Own,
        from_password: false,
        role: None,
        made_with: None,
    };
    let mut failures = 0;
    loop {
        match store
            .create_token(token("key_1"), vec![("acme".into(), event("key.created"))])
            .await
        {
            Ok(()) => break,
            Err(e) => {
                failures += 1;
                assert!(failures <= 1, "the writer stays broken: {e}");
                assert!(store.health().await.is_err());
            }
        }
    }
    store.health().await.unwrap();
    assert!(store.token("key_1").await.unwrap().is_some());
    assert_eq!(seqs(&store, "acme").await, [0, 1, 2, 3]);
}

#[tokio::test]
async fn a_busy_database_fails_writes_until_it_is_free_and_readiness_follows() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_events(dir.path()).await;
    // Another process holds the write lock past the writer's busy timeout.
    let holder = raw(dir.path());
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let err = store.append("acme", vec![event("c")]).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    let why = store.health().await.unwrap_err().to_string();
    assert!(
        why.contains("writes are failing") && why.contains("locked"),
        "{why}"
    );
    // While the lock is held, readiness's own write fails too, and it stays unready.
    tokio::time::sleep(PROBE_INTERVAL).await;
    let probed = Instant::now();
    assert!(store.health().await.is_err());
    holder.execute_batch("COMMIT").unwrap();
    // A failure is reported for a probe interval after it was seen (checked only when this
    // machine got here within that interval of the failed probe)...
    let reported = store.health().await;
    if probed.elapsed() < PROBE_INTERVAL {
        assert!(reported.is_err(), "ready again before a probe interval");
    }
    // ...then readiness tries a write of its own: ready again with nobody writing.
    tokio::time::sleep(PROBE_INTERVAL).await;
    store.health().await.unwrap();
    let a = store.append("acme", vec![event("c")]).await.unwrap();
    assert_eq!(a[0].seq, 2);
    store.health().await.unwrap();
}

#[tokio::test]
async fn org_ids_are_never_given_twice() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    store
        .create_org(org("a"), None, None, Vec::new())
        .await
        .unwrap();
    store
        .create_org(org("b"), None, None, Vec::new())
        .await
        .unwrap();
    let id = |slug: &str| -> i64 {
        raw(dir.path())
            .query_row("SELECT id FROM orgs WHERE slug = ?1", [slug], |r| r.get(0))
            .unwrap()
    };
    let b = id("b");
    assert!(b > id("a"));
    // Remove the newest org behind the store's back: a rowid would be handed out again.
    raw(dir.path())
        .execute("DELETE FROM orgs WHERE slug = 'b'", [])
        .unwrap();
    store
        .create_org(org("c"), None, None, Vec::new())
        .await
        .unwrap();
    assert!(id("c") > b, "org id {b} was given again");
}
