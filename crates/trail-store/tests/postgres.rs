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
    tokio::time::timeout(std::time::Duration::from_secs(60), acme.changed())
        .await
        .expect("woken within 60 s")
        .unwrap();
    assert_eq!(*acme.borrow_and_update(), 3);
    assert!(
        !other.has_changed().unwrap(),
        "another org's readers sleep on"
    );
    a.append("acme", sample_events(2)).await.unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(60), acme.changed())
        .await
        .expect("woken again within 60 s")
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

/// Events without client ids: each append of them stores them all anew.
fn events(n: usize) -> Vec<trail_core::EventBody> {
    sample_events(n)
        .into_iter()
        .map(|mut e| {
            e.client_id = None;
            e
        })
        .collect()
}

/// A clock the test moves: times of receipt in the weeks it chooses.
fn test_clock() -> (Arc<std::sync::atomic::AtomicI64>, trail_store::Clock) {
    let now = Arc::new(std::sync::atomic::AtomicI64::new(0));
    let read = now.clone();
    let clock: trail_store::Clock =
        Arc::new(move || trail_core::Timestamp(read.load(std::sync::atomic::Ordering::SeqCst)));
    (now, clock)
}

/// Monday 2026-11-02 00:00 UTC, in microseconds, and a week.
const MONDAY: i64 = 1_793_577_600_000_000;
const WEEK: i64 = 7 * 86_400 * 1_000_000;

/// The weeks' partitions of `events`, oldest first, as the database lists them.
fn partitions(url: &str) -> Vec<String> {
    let mut c = postgres::Client::connect(url, postgres::NoTls).unwrap();
    c.query(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
         WHERE i.inhparent = 'events'::regclass AND c.relname <> 'events_default' \
         ORDER BY c.relname",
        &[],
    )
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// Events go to the partition of their week of receipt, made as appends reach it; a prune
/// drops a week's partition once no log keeps anything in it, and deletes the rest.
#[tokio::test]
async fn events_are_partitioned_by_week_and_a_prune_drops_whole_weeks() {
    let url = tokio::task::spawn_blocking(postgres_database)
        .await
        .unwrap();
    let (now, clock) = test_clock();
    let store = PgStore::open_with_clock(&url, clock).await.unwrap();
    with_orgs(&store, &["acme", "beta"]).await;
    let key = Arc::new(SignerKey::from_seed("trail.test", [7; 32]).unwrap());
    store.sign_logs(key, Default::default()).await.unwrap();
    let at = |t: i64| now.store(t, std::sync::atomic::Ordering::SeqCst);

    at(MONDAY + 3600 * 1_000_000);
    store.append("acme", events(256)).await.unwrap();
    store.append("beta", events(256)).await.unwrap();
    at(MONDAY + WEEK + 60 * 1_000_000);
    store.append("acme", events(256)).await.unwrap();
    // Far ahead of the partitions made: the append makes its weeks.
    at(MONDAY + 5 * WEEK);
    let late = store.append("acme", events(10)).await.unwrap();
    store.append("beta", events(10)).await.unwrap();

    let u = url.clone();
    let before = tokio::task::spawn_blocking(move || partitions(&u))
        .await
        .unwrap();
    for week in [
        "events_2026_11_02",
        "events_2026_11_09",
        "events_2026_12_07",
    ] {
        assert!(before.iter().any(|p| p == week), "{week} in {before:?}");
    }
    let u = url.clone();
    let in_default: i64 = tokio::task::spawn_blocking(move || {
        let mut c = postgres::Client::connect(&u, postgres::NoTls).unwrap();
        c.query_one("SELECT count(*) FROM events_default", &[])
            .unwrap()
            .get(0)
    })
    .await
    .unwrap();
    assert_eq!(in_default, 0, "every event is in its week's partition");

    // acme's second week goes whole; its first keeps beta's events.
    store.prune("acme", 512, Vec::new()).await.unwrap();
    let u = url.clone();
    let after = tokio::task::spawn_blocking(move || partitions(&u))
        .await
        .unwrap();
    assert!(!after.iter().any(|p| p == "events_2026_11_09"), "{after:?}");
    assert!(after.iter().any(|p| p == "events_2026_11_02"), "{after:?}");
    assert_eq!(store.events_from("beta", 0, 1000).await.unwrap().len(), 266);
    let acme = store.events_from("acme", 0, 1000).await.unwrap();
    assert_eq!(acme.len(), 10);
    assert_eq!(acme[0].hash, late[0].hash);
    // Once beta is pruned past it too, the first week goes.
    store.prune("beta", 256, Vec::new()).await.unwrap();
    let u = url.clone();
    let last = tokio::task::spawn_blocking(move || partitions(&u))
        .await
        .unwrap();
    assert!(!last.iter().any(|p| p == "events_2026_11_02"), "{last:?}");
    assert_eq!(store.events_from("beta", 0, 1000).await.unwrap().len(), 10);
    // What remains still proves against the newest checkpoint.
    let head = store.checkpoint("acme", None).await.unwrap().unwrap();
    let proof = store.inclusion_proof("acme", 515, head.size).await.unwrap();
    assert!(trail_core::merkle::verify_inclusion(
        &acme[3].hash,
        515,
        head.size,
        &proof,
        &head.root
    ));
    // The runtime role may not touch a partition directly either.
    let (refused, _) = tokio::task::spawn_blocking(move || {
        let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        c.batch_execute("SET ROLE trail_writer").unwrap();
        let mut refused = Vec::new();
        for sql in [
            "DELETE FROM events_2026_12_07",
            "UPDATE events_2026_12_07 SET action = 'forged'",
            "DELETE FROM events_default",
            "DROP TABLE events_2026_12_07",
            "ALTER TABLE events DETACH PARTITION events_2026_12_07",
        ] {
            let err = c.batch_execute(sql).expect_err(sql);
            refused.push(err.as_db_error().unwrap().message().to_owned());
        }
        (refused, ())
    })
    .await
    .unwrap();
    for why in refused {
        assert!(
            why.contains("permission denied") || why.contains("must be owner"),
            "{why}"
        );
    }
}

/// A store of schema version 1 (one table of events) is migrated in place: its events move
/// to their weeks' partitions, unchanged, and its log goes on from where it was.
#[tokio::test]
async fn a_version_1_store_is_migrated_to_partitions() {
    let (from, to) = tokio::task::spawn_blocking(|| (postgres_database(), postgres_database()))
        .await
        .unwrap();
    // A log with events over two weeks, written by this Trail...
    let (now, clock) = test_clock();
    let at = |t: i64| now.store(t, std::sync::atomic::Ordering::SeqCst);
    let key = Arc::new(SignerKey::from_seed("trail.test", [7; 32]).unwrap());
    let written = PgStore::open_with_clock(&from, clock.clone())
        .await
        .unwrap();
    with_orgs(&written, &["acme"]).await;
    written
        .sign_logs(key.clone(), Default::default())
        .await
        .unwrap();
    at(MONDAY);
    let mut appended = written.append("acme", events(300)).await.unwrap();
    at(MONDAY + WEEK);
    appended.extend(written.append("acme", events(300)).await.unwrap());
    drop(written);
    // ...copied row for row into a database at version 1.
    let (f, t) = (from.clone(), to.clone());
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut src = postgres::Client::connect(&f, postgres::NoTls).unwrap();
        let mut dst = postgres::Client::connect(&t, postgres::NoTls).unwrap();
        trail_store::postgres::migrate::migrate_to(&mut dst, 1).unwrap();
        assert_eq!(
            trail_store::postgres::migrate::version(&mut dst).unwrap(),
            1
        );
        for table in [
            "orgs",
            "logs",
            "events",
            "tiles",
            "checkpoints",
            "event_minutes",
        ] {
            let mut rows = Vec::new();
            src.copy_out(&format!("COPY (SELECT * FROM {table}) TO STDOUT"))
                .unwrap()
                .read_to_end(&mut rows)
                .unwrap();
            let mut w = dst.copy_in(&format!("COPY {table} FROM STDIN")).unwrap();
            w.write_all(&rows).unwrap();
            w.finish().unwrap();
        }
    })
    .await
    .unwrap();

    let store = PgStore::open_with_clock(&to, clock).await.unwrap();
    store.sign_logs(key, Default::default()).await.unwrap();
    let back = store.events_from("acme", 0, 1000).await.unwrap();
    assert_eq!(back.len(), 600);
    assert!(back.iter().zip(&appended).all(|(b, a)| b.hash == a.hash));
    let t = to.clone();
    let weeks = tokio::task::spawn_blocking(move || partitions(&t))
        .await
        .unwrap();
    assert!(
        weeks.iter().any(|p| p == "events_2026_11_02")
            && weeks.iter().any(|p| p == "events_2026_11_09"),
        "{weeks:?}"
    );
    at(MONDAY + WEEK + 1);
    let next = store.append("acme", events(1)).await.unwrap();
    assert_eq!(next[0].seq, 600);
    let head = store.checkpoint("acme", None).await.unwrap().unwrap();
    assert_eq!(head.size, 601);
    let proof = store.consistency_proof("acme", 600, 601).await.unwrap();
    let old = store.checkpoint("acme", Some(600)).await.unwrap().unwrap();
    assert!(trail_core::merkle::verify_consistency(
        600, 601, &old.root, &head.root, &proof
    ));
}

/// An embedded store, pruned and with every kind of record, is copied into PostgreSQL: the
/// same records, the same events and checkpoints, every checkpoint proved; and the copy
/// goes on as the same log (retries known, signing extends it).
#[tokio::test]
async fn an_embedded_store_is_copied_into_postgresql_and_proved() {
    use trail_core::scope::{Role, Scope};
    use trail_store::{Instance, SqliteStore, Token, TokenKind, User};
    let dir = tempfile::tempdir().unwrap();
    let url = tokio::task::spawn_blocking(postgres_database)
        .await
        .unwrap();
    let (now, clock) = test_clock();
    let at = |t: i64| now.store(t, std::sync::atomic::Ordering::SeqCst);
    at(MONDAY);
    let src: Arc<dyn Store> = Arc::new(SqliteStore::open_with_clock(dir.path(), clock).unwrap());
    with_orgs(&*src, &["acme", "beta"]).await;
    src.init_setting("log_name", "trail.test").await.unwrap();
    let ana = User {
        id: "usr_ana".into(),
        email: "Ana@Example.com".into(),
        password_hash: Some("$argon2id$v=19$x".into()),
        platform_admin: true,
        created_at: trail_core::Timestamp(MONDAY),
    };
    src.add_member("acme", ana.clone(), Role::Admin, Vec::new())
        .await
        .unwrap();
    src.add_member("beta", ana.clone(), Role::Member, Vec::new())
        .await
        .unwrap();
    src.create_instance(
        Instance {
            org: "acme".into(),
            id: "argocd-prod".into(),
            name: "Argo CD".into(),
            kind: "argocd".into(),
            created_at: trail_core::Timestamp(MONDAY),
        },
        Vec::new(),
    )
    .await
    .unwrap();
    let key_token = Token {
        id: "key_1".into(),
        kind: TokenKind::ApiKey,
        org: "acme".into(),
        owner: "deploy-bot".into(),
        user_id: None,
        name: "deploy".into(),
        description: "ships".into(),
        scopes: vec![Scope::LogsWrite],
        instance: Some("argocd-prod".into()),
        secret_hash: [9; 32],
        created_by: "Ana@Example.com".into(),
        created_at: trail_core::Timestamp(MONDAY + 1),
        expires_at: Some(trail_core::Timestamp(MONDAY + WEEK * 52)),
        revoked_at: None,
        reach: Default::default(),
        from_password: false,
        role: None,
        made_with: Some("pat_x".into()),
    };
    src.create_token(key_token.clone(), Vec::new())
        .await
        .unwrap();
    src.create_token(
        Token {
            id: "pat_1".into(),
            kind: TokenKind::Pat,
            user_id: Some(ana.id.clone()),
            ..key_token.clone()
        },
        Vec::new(),
    )
    .await
    .unwrap();
    src.revoke_token("pat_1", trail_core::Timestamp(MONDAY + 2), Vec::new())
        .await
        .unwrap();
    src.set_retention("beta", Some(Some(30)), Some(true), Vec::new())
        .await
        .unwrap();
    let key = Arc::new(SignerKey::from_seed("trail.test", [7; 32]).unwrap());
    src.sign_logs(key.clone(), Default::default())
        .await
        .unwrap();
    src.append("acme", sample_events(400)).await.unwrap();
    at(MONDAY + WEEK);
    src.append("acme", events(300)).await.unwrap();
    src.append("beta", events(5)).await.unwrap();
    src.prune("acme", 256, Vec::new()).await.unwrap();

    let dst = PgStore::open(&url).await.unwrap();
    let copied = trail_store::copy::copy(&*src, &dst, &mut |_| {})
        .await
        .unwrap();
    assert_eq!(copied.orgs, 2);
    assert_eq!(copied.events, 700 - 256 + 5);
    assert!(copied.proved >= 3, "{copied:?}");

    // The same records, in the same order...
    let (a, b) = (src.identity().await.unwrap(), dst.identity().await.unwrap());
    assert_eq!(a, b);
    assert_eq!(a.tokens.len(), 2);
    assert_eq!(
        dst.memberships("usr_ana").await.unwrap(),
        src.memberships("usr_ana").await.unwrap(),
        "the same home org"
    );
    // ...the same logs, and their checkpoints...
    for org in ["acme", "beta"] {
        assert_eq!(
            dst.events_from(org, 0, 1000).await.unwrap(),
            src.events_from(org, 0, 1000).await.unwrap()
        );
        assert_eq!(
            dst.checkpoints(org, 0, 1000).await.unwrap(),
            src.checkpoints(org, 0, 1000).await.unwrap()
        );
        assert_eq!(
            dst.retention(org).await.unwrap(),
            src.retention(org).await.unwrap()
        );
        let size = src.log_size(org).await.unwrap();
        assert_eq!(
            dst.tree_root(org, size).await.unwrap(),
            src.tree_root(org, size).await.unwrap()
        );
    }
    // ...and the copy goes on as the same log.
    assert!(
        dst.sign_logs(key, Default::default())
            .await
            .unwrap()
            .is_empty()
    );
    let retries: Vec<_> = sample_events(400)
        .into_iter()
        .skip(256)
        .filter(|e| e.client_id.is_some())
        .collect();
    assert!(!retries.is_empty());
    let again = dst.append("acme", retries).await.unwrap();
    assert!(
        again
            .iter()
            .all(|a| a.outcome == trail_store::Outcome::Duplicate && a.seq < 400),
        "a retry of a copied event is known"
    );
    let next = dst.append("acme", events(1)).await.unwrap();
    assert_eq!(next[0].seq, 700);
    let old = dst.checkpoint("acme", Some(700)).await.unwrap().unwrap();
    let head = dst.checkpoint("acme", None).await.unwrap().unwrap();
    let proof = dst.consistency_proof("acme", 700, 701).await.unwrap();
    assert!(trail_core::merkle::verify_consistency(
        700, 701, &old.root, &head.root, &proof
    ));
    // A copy goes into an empty database only.
    assert!(matches!(
        trail_store::copy::copy(&*src, &dst, &mut |_| {}).await,
        Err(trail_store::StoreError::Refused(_))
    ));
}
