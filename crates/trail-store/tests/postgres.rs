//! What holds of the PostgreSQL backend beyond the conformance suite: the log is
//! append-only by grants, and servers on one database see each other's appends.

use std::sync::Arc;

use trail_core::checkpoint::SignerKey;
use trail_store::conformance::{postgres_database, sample_events, with_orgs};
use trail_store::{PgStore, Store};

/// The same database, connected as `user`.
fn as_user(url: &str, user: &str) -> String {
    url.replacen("postgres://trail@", &format!("postgres://{user}@"), 1)
}

/// A server connected as a runtime login (granted `trail_writer`, not inheriting it)
/// ingests, reads and prunes, and the database refuses it any other change to events,
/// tiles or checkpoints, and any prune the store would refuse, whatever SQL it sends.
#[tokio::test]
async fn the_runtime_login_cannot_change_or_delete_an_event() {
    let url = tokio::task::spawn_blocking(postgres_database)
        .await
        .unwrap();
    // The owner migrates (and seeds); the runtime login is made as the docs say.
    let owner = PgStore::open(&url).await.unwrap();
    with_orgs(&owner, &["acme"]).await;
    drop(owner);
    let admin_url = url.clone();
    tokio::task::spawn_blocking(move || {
        let mut c = postgres::Client::connect(&admin_url, postgres::NoTls).unwrap();
        c.batch_execute(
            "DO $$ BEGIN CREATE ROLE trail_app LOGIN NOINHERIT; \
             EXCEPTION WHEN duplicate_object THEN NULL; END $$; \
             GRANT trail_writer TO trail_app;",
        )
        .unwrap();
    })
    .await
    .unwrap();

    let app_url = as_user(&url, "trail_app");
    let store: Arc<dyn Store> = Arc::new(PgStore::open(&app_url).await.unwrap());
    let key = Arc::new(SignerKey::from_seed("trail.test", [7; 32]).unwrap());
    store.sign_logs(key, Default::default()).await.unwrap();
    let appended = store.append("acme", sample_events(600)).await.unwrap();
    assert_eq!(appended.len(), 600);
    // The one delete there is: a prune, through its own role.
    let pruned = store.prune("acme", 256, Vec::new()).await.unwrap();
    assert_eq!((pruned.from, pruned.to), (0, 256));

    let refused = tokio::task::spawn_blocking(move || {
        let mut c = postgres::Client::connect(&app_url, postgres::NoTls).unwrap();
        c.batch_execute("SET ROLE trail_writer").unwrap();
        let mut refused = Vec::new();
        for sql in [
            "UPDATE events SET action = 'forged' WHERE org = 'acme' AND seq = 300",
            "DELETE FROM events WHERE org = 'acme' AND seq = 599",
            "TRUNCATE events",
            "UPDATE checkpoints SET note = 'x'",
            "DELETE FROM checkpoints",
            "UPDATE tiles SET hash = '\\x00'",
            "DELETE FROM tiles",
            "ALTER TABLE events DISABLE TRIGGER ALL",
            "DROP TABLE events",
            "UPDATE logs SET pruned_below = 512 WHERE org = 'acme'",
            "CREATE OR REPLACE FUNCTION trail_prune(p_org TEXT, p_below BIGINT) \
             RETURNS BIGINT LANGUAGE sql AS 'SELECT 0::bigint'",
            // The prune function checks what a prune must be: whole tiles, forward only.
            "SELECT trail_prune('acme', 300)",
            "SELECT trail_prune('acme', 256)",
        ] {
            let err = c.batch_execute(sql).expect_err(sql);
            let db = err.as_db_error().map(|d| d.message().to_owned());
            refused.push((sql, db.unwrap_or_else(|| err.to_string())));
        }
        // What it may do still works on the same connection.
        let n: i64 = c
            .query_one("SELECT count(*) FROM events WHERE org = 'acme'", &[])
            .unwrap()
            .get(0);
        (refused, n)
    })
    .await
    .unwrap();
    for (sql, why) in &refused.0 {
        assert!(
            why.contains("permission denied")
                || why.contains("must be owner")
                || why.contains("cannot be pruned below"),
            "{sql}: {why}"
        );
    }
    assert_eq!(refused.1, 600 - 256, "nothing but the prune removed events");
    let first = store.events_from("acme", 0, 1).await.unwrap();
    assert_eq!(first[0].event.seq, 256);
    let kept = store.events_from("acme", 300, 1).await.unwrap();
    assert_eq!(
        kept[0].hash, appended[300].hash,
        "seq 300 is as it was accepted"
    );
    assert_eq!(store.log_size("acme").await.unwrap(), 600);
}

/// A reader waiting on one server's store is woken by an append through another's.
#[tokio::test]
async fn a_log_watch_wakes_for_appends_through_another_server() {
    let url = tokio::task::spawn_blocking(postgres_database)
        .await
        .unwrap();
    let a = PgStore::open(&url).await.unwrap();
    let b = PgStore::open(&url).await.unwrap();
    with_orgs(&a, &["acme", "other"]).await;
    let mut acme = b.watch_log("acme");
    let mut other = b.watch_log("other");
    acme.mark_unchanged();
    other.mark_unchanged();
    a.append("acme", sample_events(3)).await.unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(10), acme.changed())
        .await
        .expect("woken within 10 s")
        .unwrap();
    assert_eq!(*acme.borrow_and_update(), 3);
    assert!(
        !other.has_changed().unwrap(),
        "another org's readers sleep on"
    );
    a.append("acme", sample_events(2)).await.unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(10), acme.changed())
        .await
        .expect("woken again")
        .unwrap();
    assert_eq!(*acme.borrow(), 5);
}

/// What an event may hold and a text column may not (a NUL in an object id, an object
/// name longer than an index entry may be) is stored, and found by its filters.
#[tokio::test]
async fn object_ids_with_nul_and_long_names_are_stored_and_found() {
    use trail_core::query::{Field, Filter, Matcher, Term};
    let url = tokio::task::spawn_blocking(postgres_database)
        .await
        .unwrap();
    let store = PgStore::open(&url).await.unwrap();
    with_orgs(&store, &["acme"]).await;
    let long = "n".repeat(3000);
    let event = |kind: &str, name: &str| {
        trail_core::EventBody::from_json(
            serde_json::json!({
                "action": "doc.read",
                "actor": {"id": "ana", "type": "user"},
                "object": {"type": "doc", "id": {"kind": kind, "name": name}},
            }),
            "acme",
        )
        .unwrap()
    };
    let appended = store
        .append(
            "acme",
            vec![
                event("k\u{0}1", "short"),
                event("k\u{1}0", &long),
                event("k", "x"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(appended.len(), 3);
    let find = |field: Field, value: &str| {
        let mut filter = Filter::default();
        filter.terms.push(Term {
            field,
            matcher: Matcher::Text(value.to_owned()),
            negated: false,
        });
        let q = trail_store::EventQuery {
            filter,
            cursor: None,
            limit: 10,
        };
        let store = &store;
        async move {
            store
                .query("acme", &q)
                .await
                .unwrap()
                .items
                .iter()
                .map(|e| e.event.seq)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(find(Field::ObjectKind, "k\u{0}1").await, vec![0]);
    // Escaped apart: NUL and \u{1} never read as each other.
    assert_eq!(find(Field::ObjectKind, "k\u{1}0").await, vec![1]);
    assert_eq!(find(Field::ObjectName, &long).await, vec![1]);
    assert_eq!(
        find(Field::ObjectName, &long[..2999]).await,
        Vec::<u64>::new()
    );
    let back = store.events_from("acme", 0, 3).await.unwrap();
    assert_eq!(
        back[0].event.object.as_ref().unwrap().id_kind(),
        Some("k\u{0}1")
    );
}
