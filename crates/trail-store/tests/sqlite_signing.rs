//! Zero merge delay: a store that has the log's key signs every append in its own
//! transaction, and refuses to sign a log whose stored history no longer matches what it
//! signed.

use std::collections::HashMap;
use std::sync::Arc;

use rusqlite::Connection;
use serde_json::json;
use trail_core::EventBody;
use trail_core::checkpoint::{SignerKey, open};
use trail_core::merkle::{self, verify_inclusion};
use trail_store::conformance::with_orgs;
use trail_store::sqlite::DB_FILE;
use trail_store::{SqliteStore, Store};

fn key() -> Arc<SignerKey> {
    Arc::new(SignerKey::from_seed("trail.test", [7; 32]).unwrap())
}

fn events(org: &str, from: usize, n: usize) -> Vec<EventBody> {
    (from..from + n)
        .map(|i| {
            EventBody::from_json(
                json!({"action": format!("a{i}"), "actor": {"id": "alice", "type": "user"}}),
                org,
            )
            .unwrap()
        })
        .collect()
}

async fn open_with_orgs(dir: &std::path::Path) -> SqliteStore {
    let store = SqliteStore::open(dir).unwrap();
    with_orgs(&store, &["acme", "umbrella"]).await;
    store
}

fn tamper(dir: &std::path::Path, sql: &str) {
    let raw = Connection::open(dir.join(DB_FILE)).unwrap();
    raw.execute_batch(sql).unwrap();
}

#[tokio::test]
async fn every_append_carries_a_checkpoint_signed_in_its_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_orgs(dir.path()).await;
    // Events stored before the store had the key are signed when it gets it.
    store.append("acme", events("acme", 0, 5)).await.unwrap();
    let refused = store.sign_logs(key(), HashMap::new()).await.unwrap();
    assert!(refused.is_empty(), "{refused:?}");
    let first = store.checkpoint("acme", None).await.unwrap().unwrap();
    assert_eq!(first.size, 5);
    assert!(store.checkpoint("umbrella", None).await.unwrap().is_none());

    let verifier = key().verifier();
    let mut size = 5;
    // Batches across tile boundaries (256, 65,536 leaves are not needed: 256 is).
    for n in [1, 250, 1, 300, 7] {
        let appended = store
            .append_signed("acme", events("acme", size as usize, n))
            .await
            .unwrap();
        size += n as u64;
        let c = appended.checkpoint.expect("a signed checkpoint");
        assert_eq!(c.size, size, "it covers the batch, and nothing later");
        let note = open(&c.note, &verifier).unwrap();
        assert_eq!(note.origin, "trail.test/acme");
        assert_eq!((note.size, note.root), (c.size, c.root));
        assert_eq!(store.tree_root("acme", size).await.unwrap(), c.root);
        assert_eq!(store.checkpoint("acme", None).await.unwrap().unwrap(), c);
        // Every event of the batch is provably in it.
        for a in &appended.items {
            let proof = store.inclusion_proof("acme", a.seq, size).await.unwrap();
            assert!(verify_inclusion(&a.hash, a.seq, size, &proof, &c.root));
        }
    }
    // The tiles the writer stored as it went are the tree's own.
    let leaves: Vec<merkle::Hash> = store
        .events_from("acme", 0, 10_000)
        .await
        .unwrap()
        .iter()
        .map(|e| e.hash)
        .collect();
    let raw = Connection::open(dir.path().join(DB_FILE)).unwrap();
    let tiles: Vec<(i64, Vec<u8>)> = raw
        .prepare("SELECT idx, hash FROM tiles WHERE level = 8 ORDER BY idx")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(tiles.len(), 2);
    for (idx, hash) in tiles {
        let want = merkle::root(&merkle::InMemory(&leaves[idx as usize * 256..][..256]), 256);
        assert_eq!(hash, want.unwrap().to_vec(), "tile {idx}");
    }

    // A batch of nothing but retries is answered with the newest checkpoint, which covers it.
    let once = EventBody::from_json(
        json!({"id": "once", "action": "x", "actor": {"id": "alice", "type": "user"}}),
        "acme",
    )
    .unwrap();
    let first = store
        .append_signed("acme", vec![once.clone()])
        .await
        .unwrap();
    let again = store.append_signed("acme", vec![once]).await.unwrap();
    assert_eq!(again.checkpoint, first.checkpoint);
    assert!(again.checkpoint.unwrap().size > again.items[0].seq);
}

#[tokio::test]
async fn a_reopened_store_goes_on_signing_the_same_tree() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_orgs(dir.path()).await;
    store.sign_logs(key(), HashMap::new()).await.unwrap();
    store.append("acme", events("acme", 0, 300)).await.unwrap();
    drop(store);
    let store = SqliteStore::open(dir.path()).unwrap();
    assert!(
        store
            .sign_logs(key(), HashMap::new())
            .await
            .unwrap()
            .is_empty()
    );
    let c = store
        .append_signed("acme", events("acme", 300, 10))
        .await
        .unwrap()
        .checkpoint
        .unwrap();
    assert_eq!(c.size, 310);
    assert_eq!(store.tree_root("acme", 310).await.unwrap(), c.root);
}

#[tokio::test]
async fn a_log_rewritten_under_its_checkpoint_is_not_signed_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_orgs(dir.path()).await;
    store.sign_logs(key(), HashMap::new()).await.unwrap();
    store.append("acme", events("acme", 0, 20)).await.unwrap();
    store
        .append("umbrella", events("umbrella", 0, 3))
        .await
        .unwrap();
    let signed = store.checkpoint("acme", None).await.unwrap().unwrap();
    drop(store);
    // Someone with the database file rewrites a stored leaf hash; the server restarts.
    tamper(
        dir.path(),
        "DROP TRIGGER events_no_update; UPDATE events SET hash = zeroblob(32) WHERE k = (SELECT min(k) FROM events);",
    );
    let store = SqliteStore::open(dir.path()).unwrap();
    let refused = store.sign_logs(key(), HashMap::new()).await.unwrap();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].0, "acme");
    assert!(
        refused[0].1.contains("no longer gives the signed root"),
        "{refused:?}"
    );
    // Its events are still stored, but nothing is signed over them.
    let appended = store
        .append_signed("acme", events("acme", 20, 1))
        .await
        .unwrap();
    assert_eq!(appended.items.len(), 1);
    assert!(appended.checkpoint.is_none());
    assert_eq!(
        store.checkpoint("acme", None).await.unwrap().unwrap(),
        signed
    );
    // The other log is signed as before.
    let umbrella = store
        .append_signed("umbrella", events("umbrella", 3, 1))
        .await
        .unwrap();
    assert_eq!(umbrella.checkpoint.unwrap().size, 4);
}

#[tokio::test]
async fn dropping_the_newest_checkpoints_does_not_make_the_signer_forget_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_orgs(dir.path()).await;
    store.sign_logs(key(), HashMap::new()).await.unwrap();
    store.append("acme", events("acme", 0, 20)).await.unwrap();
    let first = store.checkpoint("acme", None).await.unwrap().unwrap();
    store.append("acme", events("acme", 20, 1)).await.unwrap();
    let second = store.checkpoint("acme", None).await.unwrap().unwrap();
    drop(store);
    // The newest checkpoint is dropped and the history under it rewritten, hash and all.
    tamper(
        dir.path(),
        &format!(
            "DROP TRIGGER checkpoints_no_delete; DELETE FROM checkpoints WHERE size = {};
             DROP TRIGGER events_no_update;
             UPDATE events SET hash = zeroblob(32) WHERE k = (SELECT max(k) FROM events WHERE org = (SELECT id FROM orgs WHERE slug = 'acme'));",
            second.size
        ),
    );
    let remembered = HashMap::from([("acme".to_owned(), (second.size, second.root))]);
    let store = SqliteStore::open(dir.path()).unwrap();
    let refused = store.sign_logs(key(), remembered.clone()).await.unwrap();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(refused[0].1.contains("were signed"), "{refused:?}");
    assert!(
        store
            .append_signed("acme", events("acme", 21, 1))
            .await
            .unwrap()
            .checkpoint
            .is_none()
    );
    assert_eq!(
        store.checkpoint("acme", None).await.unwrap().unwrap(),
        first
    );
    drop(store);

    // A stored checkpoint whose root disagrees with its signed note is not trusted either.
    tamper(
        dir.path(),
        "DROP TRIGGER checkpoints_no_update; UPDATE checkpoints SET root = zeroblob(32)",
    );
    let store = SqliteStore::open(dir.path()).unwrap();
    let refused = store.sign_logs(key(), HashMap::new()).await.unwrap();
    assert!(
        refused
            .iter()
            .any(|(org, why)| org == "acme" && why.contains("does not match its signed note")),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_planted_tile_or_a_different_history_under_a_remembered_head_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_orgs(dir.path()).await;
    store.sign_logs(key(), HashMap::new()).await.unwrap();
    store.append("acme", events("acme", 0, 10)).await.unwrap();
    store
        .append("umbrella", events("umbrella", 0, 10))
        .await
        .unwrap();
    let acme_at_5 = store.tree_root("acme", 5).await.unwrap();
    drop(store);

    // A tile of leaves the log does not hold yet: the writer would collide with it.
    tamper(
        dir.path(),
        "INSERT INTO tiles (org, level, idx, hash) \
         SELECT id, 8, 0, zeroblob(32) FROM orgs WHERE slug = 'umbrella'",
    );
    // A head remembered at size 5 whose root is not this history's (the store's newest is
    // later, so sizes alone would not tell).
    let remembered = HashMap::from([("acme".to_owned(), (5, [9u8; 32]))]);
    let store = SqliteStore::open(dir.path()).unwrap();
    let mut refused = store.sign_logs(key(), remembered).await.unwrap();
    refused.sort();
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert_eq!(refused[0].0, "acme");
    assert!(
        refused[0].1.contains("root signed before at size 5"),
        "{refused:?}"
    );
    assert_eq!(refused[1].0, "umbrella");
    assert!(refused[1].1.contains("past the log's 10"), "{refused:?}");
    drop(store);

    // The true head at size 5 is a prefix of the stored history: fine.
    let store = SqliteStore::open(dir.path()).unwrap();
    let remembered = HashMap::from([("acme".to_owned(), (5, acme_at_5))]);
    let refused = store.sign_logs(key(), remembered).await.unwrap();
    assert_eq!(refused.len(), 1, "only the planted tile: {refused:?}");
}
