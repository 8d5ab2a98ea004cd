//! What the SQLite file itself guarantees, whoever opens it.

use rusqlite::Connection;
use serde_json::json;
use trail_core::{EventBody, Timestamp};
use trail_store::sqlite::DB_FILE;
use trail_store::{Org, Outcome, SqliteStore, Store};

fn event(action: &str) -> EventBody {
    EventBody::from_json(
        json!({"id": format!("id-{action}"), "action": action, "actor": {"id": "alice", "type": "user"}}),
        "acme",
    )
    .unwrap()
}

async fn store_with_events(dir: &std::path::Path) -> SqliteStore {
    let store = SqliteStore::open(dir).unwrap();
    store
        .create_org(
            Org {
                id: "acme".into(),
                name: "Acme".into(),
                created_at: Timestamp(0),
            },
            None,
            Vec::new(),
        )
        .await
        .unwrap();
    store
        .append("acme", vec![event("a"), event("b")])
        .await
        .unwrap();
    store
}

#[tokio::test]
async fn direct_sql_cannot_rewrite_history() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_events(dir.path()).await;
    // Enough events for a tile, and a checkpoint, so that every table has rows to attack.
    let more = (0..300).map(|i| event(&format!("m{i}"))).collect();
    store.append("acme", more).await.unwrap();
    store.extend_tiles("acme", 302).await.unwrap();
    store
        .add_checkpoint(trail_store::SignedCheckpoint {
            org: "acme".into(),
            size: 302,
            root: store.tree_root("acme", 302).await.unwrap(),
            note: "note".into(),
            created_at: Timestamp(0),
        })
        .await
        .unwrap();
    let before = store.events_from("acme", 0, 1000).await.unwrap();

    // A plain connection, with none of Trail's settings.
    let raw = Connection::open(dir.path().join(DB_FILE)).unwrap();
    let attacks = [
        "UPDATE events SET ts = ts + 1",
        "DELETE FROM events",
        "DELETE FROM events WHERE k = (SELECT max(k) FROM events)",
        "INSERT OR REPLACE INTO events SELECT * FROM events LIMIT 1",
        "REPLACE INTO events (k, org, ts, rdelta, cid, action, cat, actor, atype, hash) \
         SELECT k + 1, org, ts, rdelta, cid, action, cat, actor, atype, hash FROM events LIMIT 1",
        "UPDATE dict SET value = 'mallory' WHERE value = 'alice'",
        "DELETE FROM dict",
        "INSERT OR REPLACE INTO dict (id, value) SELECT id, 'mallory' FROM dict WHERE value = 'alice'",
        "UPDATE checkpoints SET size = size + 1",
        "DELETE FROM checkpoints",
        "UPDATE tiles SET hash = zeroblob(32)",
        "DELETE FROM tiles",
    ];
    for sql in attacks {
        let err = raw.execute(sql, []).expect_err(sql).to_string();
        assert!(err.contains("append-only"), "{sql}: {err}");
    }
    drop(raw);

    let after = store.events_from("acme", 0, 1000).await.unwrap();
    assert_eq!(before, after, "nothing stored changed");
    assert_eq!(
        store.checkpoint("acme", None).await.unwrap().unwrap().size,
        302
    );
}

#[tokio::test]
async fn a_restart_keeps_every_event_and_continues_the_seqs() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_events(dir.path()).await;
    let before = store.events_from("acme", 0, 10).await.unwrap();
    drop(store);

    let store = SqliteStore::open(dir.path()).unwrap();
    assert_eq!(store.events_from("acme", 0, 10).await.unwrap(), before);
    let more = store
        .append("acme", vec![event("c"), event("a")])
        .await
        .unwrap();
    assert_eq!(more[0].seq, 2);
    assert_eq!(
        more[1].outcome,
        Outcome::Duplicate,
        "client ids are remembered across restarts"
    );
    assert_eq!(store.log_size("acme").await.unwrap(), 3);
}

#[tokio::test]
async fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(SqliteStore::open(dir.path()).unwrap());
    let raw = Connection::open(dir.path().join(DB_FILE)).unwrap();
    raw.pragma_update(None, "user_version", 99).unwrap();
    drop(raw);
    let err = SqliteStore::open(dir.path()).err().unwrap().to_string();
    assert!(err.contains("schema version 99"), "{err}");
}

#[tokio::test]
async fn a_full_log_refuses_more_without_touching_other_orgs() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_events(dir.path()).await;
    drop(store);
    // Forge the last seq a log can hold (k = org << 40 | 2^40 - 1) with a plain INSERT.
    let raw = Connection::open(dir.path().join(DB_FILE)).unwrap();
    raw.execute(
        "INSERT INTO events (k, org, ts, rdelta, action, cat, actor, atype, hash) \
         SELECT (org << 40) | ((1 << 40) - 1), org, ts, rdelta, action, cat, actor, atype, hash \
         FROM events LIMIT 1",
        [],
    )
    .unwrap();
    drop(raw);
    let store = SqliteStore::open(dir.path()).unwrap();
    let err = store.append("acme", vec![event("z")]).await.unwrap_err();
    assert!(
        matches!(err, trail_store::StoreError::LogFull(ref o) if o == "acme"),
        "{err}"
    );
    store
        .create_org(
            Org {
                id: "umbrella".into(),
                name: "Umbrella".into(),
                created_at: Timestamp(0),
            },
            None,
            Vec::new(),
        )
        .await
        .unwrap();
    assert_eq!(
        store.append("umbrella", vec![event("a")]).await.unwrap()[0].seq,
        0
    );
}
