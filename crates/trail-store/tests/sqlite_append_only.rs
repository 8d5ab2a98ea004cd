//! What the SQLite file itself guarantees, whoever opens it.

use rusqlite::Connection;
use serde_json::json;
use trail_core::{EventBody, Timestamp};
use trail_store::sqlite::DB_FILE;
use trail_store::{Org, Outcome, SqliteStore, Store};

/// An event of acme's, as sent.
fn acme_event(v: serde_json::Value) -> EventBody {
    EventBody::from_json(v, "acme").unwrap()
}

fn event(action: &str) -> EventBody {
    acme_event(
        json!({"id": format!("id-{action}"), "action": action, "actor": {"id": "alice", "type": "user"}}),
    )
}

async fn create_org(store: &SqliteStore, slug: &str) {
    store
        .create_org(
            Org {
                id: slug.into(),
                name: slug.into(),
                created_at: Timestamp(0),
            },
            None,
            None,
            Vec::new(),
        )
        .await
        .unwrap();
}

async fn store_with_events(dir: &std::path::Path) -> SqliteStore {
    let store = SqliteStore::open(dir).unwrap();
    create_org(&store, "acme").await;
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
    // Enough events for tiles, two block summaries (so that some postings have moved out of
    // the hot table, and some not), and a checkpoint, so that every table has rows to
    // attack.
    let more = (0..2100).map(|i| event(&format!("m{i}"))).collect();
    store.append("acme", more).await.unwrap();
    store.extend_tiles("acme", 0, 2102).await.unwrap();
    store
        .add_checkpoint(trail_store::SignedCheckpoint {
            org: "acme".into(),
            size: 2102,
            root: store.tree_root("acme", 2102).await.unwrap(),
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
        "INSERT OR REPLACE INTO blocks SELECT id, org, block, 0, 0, 0 FROM blocks",
        "INSERT OR REPLACE INTO block_filters SELECT id, zeroblob(32) FROM block_filters",
        "UPDATE blocks SET max_ts = 0",
        "DELETE FROM blocks",
        "UPDATE block_filters SET filter = zeroblob(32)",
        "DELETE FROM block_filters",
        "INSERT OR REPLACE INTO postings SELECT col, value, id, x'0000', before, times FROM postings",
        "UPDATE postings SET seqs = x'0000'",
        "UPDATE postings SET times = zeroblob(length(times))",
        "DELETE FROM postings",
        "INSERT OR REPLACE INTO postings_hot \
         SELECT slice, id, col, value, x'0000', top, times FROM postings_hot",
        "UPDATE postings_hot SET seqs = x'0000'",
        "UPDATE postings_hot SET slice = slice + 1",
        "DELETE FROM postings_hot",
        // A copy in `postings` that would shadow a hot posting.
        "INSERT INTO postings (col, value, id, seqs, before, times) \
         SELECT col, value, id, x'', -9223372036854775808, NULL FROM postings_hot",
    ];
    for sql in attacks {
        let err = raw.execute(sql, []).expect_err(sql).to_string();
        assert!(err.contains("append-only"), "{sql}: {err}");
    }
    // A hot posting goes once `postings` holds it as it is, not for a forged copy there.
    let sql = "BEGIN; \
         INSERT INTO postings (col, value, id, seqs, before, times) \
         SELECT col, value, id, x'0000', top, times FROM postings_hot; \
         DELETE FROM postings_hot;";
    let err = raw.execute_batch(sql).expect_err(sql).to_string();
    assert!(err.contains("append-only"), "{sql}: {err}");
    raw.execute_batch("ROLLBACK").unwrap();
    for table in ["postings", "postings_hot"] {
        let rows: i64 = raw
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .unwrap();
        assert!(rows > 0, "{table} has rows to attack");
    }
    // A pruning permit is for one org's seqs below a point: another org's permit, or one
    // below the events, lets nothing go.
    let acme: i64 = raw
        .query_row("SELECT id FROM orgs WHERE slug = 'acme'", [], |r| r.get(0))
        .unwrap();
    raw.execute(
        "INSERT INTO prune_permit (org, below_k) VALUES (?1, ?2)",
        [acme + 1, i64::MAX],
    )
    .unwrap();
    raw.execute(
        "INSERT INTO prune_permit (org, below_k) VALUES (?1, ?2)",
        [acme, acme << 40],
    )
    .unwrap();
    for table in [
        "events",
        "blocks",
        "block_filters",
        "postings",
        "postings_hot",
    ] {
        let err = raw
            .execute(&format!("DELETE FROM {table}"), [])
            .unwrap_err()
            .to_string();
        assert!(err.contains("append-only"), "{table}: {err}");
    }
    raw.execute("DELETE FROM prune_permit", []).unwrap();
    drop(raw);

    let after = store.events_from("acme", 0, 1000).await.unwrap();
    assert_eq!(before, after, "nothing stored changed");
    assert_eq!(
        store.checkpoint("acme", None).await.unwrap().unwrap().size,
        2102
    );
}

/// A prune drops the summaries of the blocks it empties and keeps that of a block it cuts
/// into, and drops the postings of the values it leaves a block without; filters on
/// summarised and posted fields still find exactly what remains.
#[tokio::test]
async fn a_prune_drops_the_summaries_of_the_blocks_it_empties() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_events(dir.path()).await;
    // bob acts only in the part of block 1 the second prune takes, carol only in the part it
    // leaves.
    let body = |i: usize| {
        let actor = match i + 2 {
            1100..1200 => "bob",
            1600..1700 => "carol",
            _ => "alice",
        };
        acme_event(json!({"action": "a", "actor": {"id": actor, "type": "user",
                          "tokenId": format!("pat_{}", i % 3)}}))
    };
    store
        .append("acme", (0..2598).map(body).collect())
        .await
        .unwrap();
    store.extend_tiles("acme", 0, 2600).await.unwrap();
    store
        .add_checkpoint(trail_store::SignedCheckpoint {
            org: "acme".into(),
            size: 2600,
            root: store.tree_root("acme", 2600).await.unwrap(),
            note: "note".into(),
            created_at: Timestamp(0),
        })
        .await
        .unwrap();
    let blocks = |dir: &std::path::Path| -> Vec<(i64, i64)> {
        let raw = Connection::open(dir.join(DB_FILE)).unwrap();
        raw.prepare("SELECT b.block, length(f.filter) FROM blocks b JOIN block_filters f USING (id) ORDER BY b.block")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    assert_eq!(
        blocks(dir.path()).iter().map(|b| b.0).collect::<Vec<_>>(),
        [0, 1]
    );
    assert!(blocks(dir.path()).iter().all(|b| b.1 > 0 && b.1 % 32 == 0));
    // The postings of each block, by actor, wherever they are.
    let postings = |dir: &std::path::Path| -> Vec<(String, i64)> {
        let raw = Connection::open(dir.join(DB_FILE)).unwrap();
        raw.prepare(
            "SELECT d.value, p.id & 1073741823 \
             FROM (SELECT col, value, id FROM postings \
                   UNION ALL SELECT col, value, id FROM postings_hot) p \
             JOIN dict d ON d.id = p.value WHERE p.col = 0 ORDER BY 2, 1",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    };
    let named = |v: &[(&str, i64)]| -> Vec<(String, i64)> {
        v.iter().map(|(a, b)| (a.to_string(), *b)).collect()
    };
    assert_eq!(
        postings(dir.path()),
        named(&[("alice", 0), ("alice", 1), ("bob", 1), ("carol", 1)])
    );
    // Block 0 goes whole, with its postings; block 1 keeps all of its.
    store.prune("acme", 1024, Vec::new()).await.unwrap();
    assert_eq!(
        postings(dir.path()),
        named(&[("alice", 1), ("bob", 1), ("carol", 1)])
    );
    store.prune("acme", 1280, Vec::new()).await.unwrap();
    assert_eq!(
        blocks(dir.path()).iter().map(|b| b.0).collect::<Vec<_>>(),
        [1]
    );
    assert_eq!(
        postings(dir.path()),
        named(&[("alice", 1), ("carol", 1)]),
        "bob has no event left in block 1"
    );
    let found = |q: &str| {
        let store = &store;
        let mut filter = trail_core::query::Filter::default();
        filter.add_query(q, Timestamp(0)).unwrap();
        async move {
            let mut seen = trail_store::conformance::page_all(store, "acme", &filter, 300).await;
            seen.sort_unstable();
            seen
        }
    };
    // Seq s holds body s - 2 (two events came first).
    let want: Vec<u64> = (1280..2600).filter(|s| (s - 2) % 3 == 1).collect();
    assert_eq!(found("tokenId:pat_1").await, want);
    assert_eq!(found("actor:bob").await, Vec::<u64>::new());
    assert_eq!(found("actor:carol").await, (1600..1700).collect::<Vec<_>>());
    let alice: Vec<u64> = (1280..2600).filter(|s| !(1600..1700).contains(s)).collect();
    assert_eq!(found("actor:alice").await, alice);
    // Counted from the postings of block 1 (which still name pruned seqs), the tail read.
    let mut filter = trail_core::query::Filter::default();
    filter.add_query("actor:alice", Timestamp(0)).unwrap();
    let all_time = (Timestamp(0), Timestamp(i64::MAX / 2));
    assert_eq!(
        store
            .histogram("acme", &filter, all_time.0, all_time.1, 1)
            .await
            .unwrap(),
        [alice.len() as u64]
    );
    // Pruned in steps, block 1 goes whole, with every posting of it (block 2 is not
    // complete, so it has none yet).
    store.prune("acme", 1792, Vec::new()).await.unwrap();
    assert_eq!(postings(dir.path()), named(&[("alice", 1)]));
    store.prune("acme", 2048, Vec::new()).await.unwrap();
    assert_eq!(postings(dir.path()), named(&[]));
    assert_eq!(found("actor:carol").await, Vec::<u64>::new());
}

/// Rewrites postings behind Trail's back, in `postings` and `postings_hot` (`updates` names
/// either as `{postings}`; their triggers against updates dropped first): the rows the last
/// statement of `updates` changed in both.
fn alter_postings(dir: &std::path::Path, updates: &str) -> u64 {
    let raw = Connection::open(dir.join(DB_FILE)).unwrap();
    let mut changed = 0;
    for table in ["postings", "postings_hot"] {
        let updates = updates.replace("{postings}", table);
        raw.execute_batch(&format!("DROP TRIGGER {table}_no_update; {updates}"))
            .unwrap();
        changed += raw.changes();
    }
    changed
}

/// Coarse times that a posting lacks (written before schema version 13) or that do not fit
/// its offsets (altered behind Trail's back) leave every event it names to be read: pages
/// still hold what the events say.
#[tokio::test]
async fn postings_without_readable_times_are_read_in_full() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_events(dir.path()).await;
    let t0 = 1_763_740_000_000_000i64;
    // Received a millisecond apart, stamped up to 4 s earlier; 23 actors, each sparse in
    // every block.
    let body = |i: i64| {
        acme_event(json!({"action": "read",
            "actor": {"id": format!("user-{}", i % 23), "type": "user"},
            "timestamp": Timestamp(t0 + i * 1000 - (i * 7919 % 4000) * 1000).to_string()}))
    };
    store
        .append("acme", (0..4096).map(body).collect())
        .await
        .unwrap();
    let changed = alter_postings(
        dir.path(),
        "UPDATE {postings} SET times = NULL WHERE times IS NOT NULL AND id % 2 = 0;
         UPDATE {postings} SET times = x'0000' WHERE times IS NOT NULL AND id % 2 = 1;",
    );
    assert!(changed > 0);
    let events = store.events_from("acme", 0, 5000).await.unwrap();
    let mut filter = trail_core::query::Filter::default();
    filter.add_query("actor:user-5", Timestamp(0)).unwrap();
    let mut want: Vec<_> = events.iter().filter(|e| filter.matches(&e.event)).collect();
    want.sort_by_key(|e| std::cmp::Reverse((e.event.timestamp, e.event.seq)));
    let want: Vec<u64> = want.iter().map(|e| e.event.seq).collect();
    assert!(want.len() > 100);
    for limit in [1, 5] {
        assert_eq!(
            trail_store::conformance::page_all(&store, "acme", &filter, limit).await,
            want,
            "pages of {limit}"
        );
    }
}

/// A store of 2,048 events (blocks 0 and 1 sealed) of `read` and `write` by alice and bob.
async fn store_of_reads_and_writes(dir: &std::path::Path) -> SqliteStore {
    let store = store_with_events(dir).await;
    let body = |i: usize| {
        acme_event(
            json!({"action": if i.is_multiple_of(2) { "read" } else { "write" },
                          "actor": {"id": if i.is_multiple_of(3) { "bob" } else { "alice" },
                                    "type": "user"}}),
        )
    };
    store
        .append("acme", (0..2046).map(body).collect())
        .await
        .unwrap();
    store
}

/// Postings that no longer read as offsets (altered behind Trail's back) make a reader look
/// at their whole block, so pages and counts still hold what the events say.
#[tokio::test]
async fn unreadable_postings_are_read_around() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_of_reads_and_writes(dir.path()).await;
    let changed = alter_postings(
        dir.path(),
        "UPDATE {postings} SET seqs = x'01'
          WHERE col = 1 AND value = (SELECT id FROM dict WHERE value = 'write');",
    );
    assert_eq!(changed, 2, "the postings of `write` in blocks 0 and 1");
    reads_hold_what_the_events_say(&store).await;
}

/// A block's posting of a value in both tables (added behind Trail's back, its trigger
/// dropped: a copy claiming no seqs and the oldest bound) shadows neither: the reader
/// looks at the whole block.
#[tokio::test]
async fn a_posting_in_both_tables_is_read_around() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_of_reads_and_writes(dir.path()).await;
    let raw = Connection::open(dir.path().join(DB_FILE)).unwrap();
    raw.execute_batch(
        "DROP TRIGGER postings_no_replace;
         INSERT INTO postings (col, value, id, seqs, before, times)
         SELECT col, value, id, x'', -9223372036854775808, NULL FROM postings_hot
          WHERE col = 1 AND value = (SELECT id FROM dict WHERE value = 'write');",
    )
    .unwrap();
    assert!(raw.changes() > 0, "`write` is hot in a block");
    drop(raw);
    reads_hold_what_the_events_say(&store).await;
}

/// Pages and counts of `write` in [`store_of_reads_and_writes`] hold what its events say.
async fn reads_hold_what_the_events_say(store: &SqliteStore) {
    let events = store.events_from("acme", 0, 3000).await.unwrap();
    for q in [
        "action:write",
        "action:write actor:alice",
        "actor:bob action:write",
    ] {
        let mut filter = trail_core::query::Filter::default();
        filter.add_query(q, Timestamp(0)).unwrap();
        let want: Vec<u64> = events
            .iter()
            .filter(|e| filter.matches(&e.event))
            .map(|e| e.event.seq)
            .collect();
        let mut seen = trail_store::conformance::page_all(store, "acme", &filter, 100).await;
        seen.sort_unstable();
        assert_eq!(seen, want, "{q}");
        let all_time = (Timestamp(0), Timestamp(i64::MAX / 2));
        assert_eq!(
            store
                .histogram("acme", &filter, all_time.0, all_time.1, 1)
                .await
                .unwrap(),
            [want.len() as u64],
            "{q}"
        );
    }
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

/// Times of receipt never go down along the seqs, even across a restart with the clock set
/// back: here the store holds an event received an hour from now (as if the clock had been
/// an hour ahead before the restart), and what is appended after is received no earlier.
#[tokio::test]
async fn times_of_receipt_never_go_back_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_events(dir.path()).await;
    drop(store);
    let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
    let ahead: i64 = conn
        .query_row(
            "INSERT INTO events (k, org, ts, rdelta, action, cat, actor, atype, hash) \
             SELECT k + 1, org, ts, rdelta + 3600000000, action, cat, actor, atype, hash \
             FROM events ORDER BY k DESC LIMIT 1 RETURNING ts + rdelta",
            [],
            |r| r.get(0),
        )
        .unwrap();
    drop(conn);
    let store = SqliteStore::open(dir.path()).unwrap();
    let more = store.append("acme", vec![event("later")]).await.unwrap();
    assert!(
        more[0].received_at >= Timestamp(ahead),
        "{:?} < {ahead}",
        more[0].received_at
    );
    assert_eq!(
        store
            .seq_received_since("acme", Timestamp(ahead))
            .await
            .unwrap(),
        2,
        "the first event received at that time"
    );
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
    let err = SqliteStore::open_read_only(dir.path())
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("newer than this Trail's") && err.contains("upgrade Trail"),
        "{err}"
    );
}

/// A read-only open (offline verification) does not migrate: an older store is refused,
/// saying how to bring it up to date; opened read-write once, it reads.
#[tokio::test]
async fn a_read_only_open_of_an_older_store_says_how_to_bring_it_up_to_date() {
    let dir = tempfile::tempdir().unwrap();
    drop(store_with_events(dir.path()).await);
    let raw = Connection::open(dir.path().join(DB_FILE)).unwrap();
    let version: i64 = raw
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    // The last step of the schema, undone: the store is one version older.
    raw.execute_batch("DROP INDEX users_by_email;").unwrap();
    raw.pragma_update(None, "user_version", version - 1)
        .unwrap();
    drop(raw);
    let err = SqliteStore::open_read_only(dir.path())
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("older than this Trail's") && err.contains("start the server on it once"),
        "{err}"
    );
    drop(SqliteStore::open(dir.path()).unwrap());
    let store = SqliteStore::open_read_only(dir.path()).unwrap();
    assert_eq!(store.log_size("acme").await.unwrap(), 2);
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
    create_org(&store, "umbrella").await;
    assert_eq!(
        store.append("umbrella", vec![event("a")]).await.unwrap()[0].seq,
        0
    );
}

#[tokio::test]
async fn tampered_rows_are_caught_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_events(dir.path()).await;
    store
        .create_org(
            Org {
                id: "umbrella".into(),
                name: "U".into(),
                created_at: Timestamp(0),
            },
            None,
            None,
            Vec::new(),
        )
        .await
        .unwrap();
    let more = (0..600).map(|i| event(&format!("m{i}"))).collect();
    store.append("acme", more).await.unwrap();
    store.extend_tiles("acme", 0, 300).await.unwrap();
    drop(store);

    let raw = Connection::open(dir.path().join(DB_FILE)).unwrap();
    raw.execute_batch(
        "DROP TRIGGER events_no_update; DROP TRIGGER tiles_no_update;
         -- a tile planted ahead of the signed size
         INSERT INTO tiles (org, level, idx, hash) SELECT org, 8, 1, zeroblob(32) FROM events LIMIT 1;
         -- seq 5 moved to another org's listing (its key stays in acme's range)
         PRAGMA ignore_check_constraints = ON;
         UPDATE events SET org = (SELECT id FROM orgs WHERE slug = 'umbrella') WHERE k & 1099511627775 = 5;
         -- seq 9 loses a dictionary entry it needs
         DROP TRIGGER dict_no_delete;
         INSERT INTO dict (value) VALUES ('orphan');
         UPDATE events SET action = (SELECT max(id) FROM dict) WHERE k & 1099511627775 = 9;
         DELETE FROM dict WHERE value = 'orphan';",
    )
    .unwrap();
    drop(raw);

    let store = SqliteStore::open(dir.path()).unwrap();
    let err = store
        .extend_tiles("acme", 300, 602)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("does not match the leaves"), "{err}");
    let rows = store.leaves_for_audit("acme", 0, 20).await.unwrap();
    let bad: Vec<(u64, String)> = rows
        .into_iter()
        .filter_map(|(seq, r)| r.err().map(|e| (seq, e)))
        .collect();
    assert_eq!(bad.len(), 2, "{bad:?}");
    assert_eq!(bad[0].0, 5);
    assert!(bad[0].1.contains("org column"), "{}", bad[0].1);
    assert_eq!(bad[1].0, 9);
    assert!(bad[1].1.contains("dictionary entry"), "{}", bad[1].1);
    // The moved row shows in no other org's listing.
    let other = store
        .query(
            "umbrella",
            &trail_store::EventQuery {
                limit: 1000,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(other.items.is_empty());
}

#[tokio::test]
async fn a_read_only_store_reads_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    drop(store_with_events(dir.path()).await);
    let before: Vec<(String, u64)> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().unwrap().len(),
            )
        })
        .collect();
    let store = SqliteStore::open_read_only(dir.path()).unwrap();
    assert_eq!(store.events_from("acme", 0, 10).await.unwrap().len(), 2);
    assert!(matches!(
        store.append("acme", vec![event("x")]).await,
        Err(trail_store::StoreError::Unavailable(_))
    ));
    drop(store);
    let mut after: Vec<(String, u64)> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().unwrap().len(),
            )
        })
        .collect();
    let mut before = before;
    before.sort();
    after.sort();
    assert_eq!(before, after);
    assert!(SqliteStore::open_read_only(&dir.path().join("nope")).is_err());
}

/// A store written before provenance (schema version 1, events in canonical encoding 1)
/// opens after the upgrade: its events read back as version 1 with the same leaf hashes,
/// a retry of one of them is still a duplicate, and new events are version 2.
#[tokio::test]
async fn a_store_from_before_provenance_opens_and_keeps_its_hashes() {
    use trail_core::{Event, canonical};
    let dir = tempfile::tempdir().unwrap();
    let old = event("before");
    let sealed = Event::seal_as(1, "acme", 0, Timestamp(5_000_000), old.clone());
    let hash = canonical::leaf_hash(&sealed);
    {
        // What the version-1 code wrote: its schema, one org, one event row.
        let raw = Connection::open(dir.path().join(DB_FILE)).unwrap();
        raw.execute_batch(include_str!("fixtures/schema_v1.sql"))
            .unwrap();
        raw.pragma_update(None, "user_version", 1).unwrap();
        raw.execute(
            "INSERT INTO orgs (id, slug, name, created_at) VALUES (1, 'acme', 'Acme', 0)",
            [],
        )
        .unwrap();
        for (id, v) in [(1, "before"), (2, "app"), (3, "alice")] {
            raw.execute(
                "INSERT INTO dict (id, value) VALUES (?1, ?2)",
                rusqlite::params![id, v],
            )
            .unwrap();
        }
        raw.execute(
            "INSERT INTO events (k, org, ts, rdelta, cid, action, cat, actor, atype, hash) \
             VALUES (?1, 1, ?2, 0, 'id-before', 1, 2, 3, ?3, ?4)",
            rusqlite::params![
                1i64 << 40,
                5_000_000i64,
                sealed.actor.kind.code(),
                hash.as_slice()
            ],
        )
        .unwrap();
    }
    let store = SqliteStore::open(dir.path()).unwrap();
    let read = store.events_from("acme", 0, 10).await.unwrap();
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].event.encoding, 1);
    assert_eq!(read[0].event.submitted_by, None);
    assert_eq!(canonical::leaf_hash(&read[0].event), hash);
    assert_eq!(read[0].hash, hash);

    let mut retry = old;
    retry.submitted_by = Some("key_x".into());
    let mut new = event("after");
    new.submitted_by = Some("key_x".into());
    let out = store.append("acme", vec![retry, new]).await.unwrap();
    assert_eq!(out[0].outcome, Outcome::Duplicate);
    assert_eq!((out[1].outcome, out[1].seq), (Outcome::Created, 1));
    let read = store.events_from("acme", 1, 10).await.unwrap();
    assert_eq!(read[0].event.encoding, canonical::VERSION);
    assert_eq!(read[0].event.submitted_by.as_deref(), Some("key_x"));
    assert_eq!(canonical::leaf_hash(&read[0].event), read[0].hash);
}

/// A block's postings are written to `postings_hot` and moved into `postings` a slice at a
/// time. Over two orgs' logs of many blocks, appended in turns: every posting is in exactly
/// one of the two tables, the hot one holds none older than its number of slices of
/// blocks, each posting in `postings` carries the greatest timestamp of its value's events
/// up to its block (also when it is moved after earlier postings of its value were, and
/// its own block's events are older than theirs), and pages read across both tables hold
/// what the events say.
#[tokio::test]
async fn postings_move_out_of_the_hot_table_with_their_running_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_events(dir.path()).await;
    create_org(&store, "umbrella").await;
    let t0 = 1_763_740_000_000_000i64;
    // Every event of an odd block is stamped an hour late, so that a value's bound there is
    // an earlier block's; every slice is moved at least twice in acme's 70 blocks.
    let body = |org: &str, i: u64| {
        let late = if (i / 1024) % 2 == 1 {
            3_600_000_000
        } else {
            0
        };
        let mut v = json!({"action": if i.is_multiple_of(5) { "write" } else { "read" },
            "actor": {"id": format!("user-{}", (i * i) % 61), "type": "user"},
            "timestamp": Timestamp(t0 + i as i64 * 1000 - (i as i64 * 7919 % 4000) * 1000 - late)
                .to_string()});
        if i.is_multiple_of(3) {
            v["object"] = json!({"type": "app", "id": {"name": format!("app-{}", i % 97)}});
        }
        EventBody::from_json(v, org).unwrap()
    };
    let sizes = [("acme", 70 * 1024u64), ("umbrella", 40 * 1024)];
    for turn in 0..(70 * 1024u64).div_ceil(3000) {
        for (org, n) in sizes {
            let from = (turn * 3000).min(n);
            let to = ((turn + 1) * 3000).min(n);
            if from < to {
                store
                    .append(org, (from..to).map(|i| body(org, i)).collect())
                    .await
                    .unwrap();
            }
        }
    }
    let raw = Connection::open(dir.path().join(DB_FILE)).unwrap();
    let mut moved_twice = 0;
    for (org, n) in sizes {
        // acme's log has two events before these.
        let size = n + if org == "acme" { 2 } else { 0 };
        let sealed = (size / 1024) as i64;
        let org_id: i64 = raw
            .query_row("SELECT id FROM orgs WHERE slug = ?1", [org], |r| r.get(0))
            .unwrap();
        let rows = |sql: &str| -> Vec<(i64, i64, i64, i64)> {
            raw.prepare(sql)
                .unwrap()
                .query_map([org_id], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        };
        let settled =
            rows("SELECT col, value, id & 1073741823, before FROM postings WHERE id >> 30 = ?1");
        let hot =
            rows("SELECT col, value, id & 1073741823, slice FROM postings_hot WHERE id >> 30 = ?1");
        assert!(
            settled.len() > hot.len(),
            "{org}: {} {}",
            settled.len(),
            hot.len()
        );
        for (_, _, block, slice) in &hot {
            assert!(
                *block >= sealed - 32,
                "{org}: block {block} of slice {slice} still hot"
            );
        }
        // What each block's postings must be: every value its events hold in the posted
        // columns, with the greatest timestamp of the value's events so far.
        let mut want = std::collections::BTreeMap::new();
        let mut running = std::collections::HashMap::new();
        let mut stmt = raw
            .prepare(
                "SELECT k & 1099511627775, ts, actor, action, route, inst, oname FROM events \
                 WHERE org = ?1 ORDER BY k",
            )
            .unwrap();
        let mut events = stmt.query([org_id]).unwrap();
        while let Some(e) = events.next().unwrap() {
            let (seq, ts): (i64, i64) = (e.get(0).unwrap(), e.get(1).unwrap());
            if seq >= sealed * 1024 {
                break;
            }
            for col in 0..5 {
                if let Some(value) = e.get::<_, Option<i64>>(2 + col).unwrap() {
                    let top = running.entry((col as i64, value)).or_insert(i64::MIN);
                    *top = (*top).max(ts);
                    want.insert((col as i64, value, seq / 1024), *top);
                }
            }
        }
        let mut got = std::collections::BTreeMap::new();
        for (col, value, block, before) in &settled {
            got.insert((*col, *value, *block), Some(*before));
        }
        for (col, value, block, _) in &hot {
            assert!(
                got.insert((*col, *value, *block), None).is_none(),
                "{org}: posting {:?} in both tables",
                (col, value, block)
            );
        }
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>(),
            "{org}"
        );
        for (key, before) in &got {
            if let Some(before) = before {
                assert_eq!(*before, want[key], "{org}: the bound of posting {key:?}");
                // Moved after earlier postings of its value were, with its own events
                // older than theirs: its bound is theirs.
                if key.2 >= HOT_SLICES && key.2 % 2 == 1 {
                    moved_twice += 1;
                }
            }
        }
    }
    assert!(moved_twice > 100, "{moved_twice}");
    drop(raw);
    for org in ["acme", "umbrella"] {
        let all = store.events_from(org, 0, 100_000).await.unwrap();
        for q in [
            "actor:user-5",
            "actor:user-0 action:write",
            "action:write",
            "objectName:app-7",
        ] {
            let mut filter = trail_core::query::Filter::default();
            filter.add_query(q, Timestamp(0)).unwrap();
            let mut want: Vec<_> = all.iter().filter(|e| filter.matches(&e.event)).collect();
            want.sort_by_key(|e| std::cmp::Reverse((e.event.timestamp, e.event.seq)));
            let want: Vec<u64> = want.iter().map(|e| e.event.seq).collect();
            for limit in [7, 1000] {
                if want.len() / limit > 300 {
                    continue;
                }
                assert_eq!(
                    trail_store::conformance::page_all(&store, org, &filter, limit).await,
                    want,
                    "{org}: {q}: pages of {limit}"
                );
            }
        }
    }
}

/// How many blocks' postings a slice of `postings_hot` holds at most.
const HOT_SLICES: i64 = 32;
