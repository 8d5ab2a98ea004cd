//! A store made by the first release (schema version 1) opens with this Trail: it is
//! migrated in place and keeps every event, checkpoint and credential, and keeps verifying.

use std::path::Path;

use rusqlite::Connection;
use trail_core::Timestamp;
use trail_store::conformance::sample_events;
use trail_store::sqlite::{DB_FILE, SCHEMA_VERSION};
use trail_store::{Bootstrap, Org, SignedCheckpoint, SqliteStore, Store, Token, TokenKind, User};

/// The schema of version 1, as it shipped.
const SCHEMA_V1: &str = include_str!("fixtures/schema_v1.sql");

/// Every table of version 1 and its columns: what a version-1 store holds.
const TABLES_V1: &[(&str, &str)] = &[
    ("dict", "id, value"),
    ("orgs", "id, slug, name, created_at"),
    (
        "users",
        "id, email, password_hash, platform_admin, created_at",
    ),
    ("members", "org, user_id, role"),
    ("instances", "org, id, name, kind, created_at"),
    (
        "tokens",
        "id, kind, org, owner, user_id, name, description, scopes, instance, secret_hash, \
         created_by, created_at, expires_at, revoked_at",
    ),
    (
        "sessions",
        "id, user_id, secret_hash, created_at, last_seen_at, expires_at, ended_at",
    ),
    (
        "events",
        "k, org, ts, rdelta, cid, inst, action, cat, actor, atype, ip, ua, tok, scope, otype, \
         oid, oparent, okind, oname, details, method, route, status, lat, body, cnt, last, hash",
    ),
    ("tiles", "org, level, idx, hash"),
    ("checkpoints", "org, size, root, note, created_at"),
];

const T0: Timestamp = Timestamp(1_763_740_000_000_000);

fn org(id: &str) -> Org {
    Org {
        id: id.into(),
        name: id.into(),
        created_at: T0,
    }
}

/// Fills a store with what a running Trail has: a bootstrap org, owner and token, a second
/// org, events, tiles and a checkpoint.
/// Events in the populated org: enough for its log to have complete blocks, whose
/// summaries and postings the migrations write.
const EVENTS: u64 = 2600;

async fn populate(dir: &Path) {
    let store = SqliteStore::open(dir).unwrap();
    let owner = User {
        id: "usr_1".into(),
        email: "owner@acme.io".into(),
        password_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into()),
        platform_admin: true,
        created_at: T0,
    };
    let token = Token {
        id: "pat_1".into(),
        kind: TokenKind::Pat,
        org: "acme".into(),
        owner: "owner@acme.io".into(),
        user_id: Some("usr_1".into()),
        name: "bootstrap".into(),
        description: String::new(),
        scopes: trail_core::scope::preset("admin-full").unwrap().to_vec(),
        instance: None,
        secret_hash: [9; 32],
        created_by: "trail serve".into(),
        created_at: T0,
        expires_at: None,
        revoked_at: None,
        reach: trail_store::Reach::Own,
        from_password: false,
        role: None,
        made_with: None,
    };
    assert!(
        store
            .bootstrap(Bootstrap {
                org: org("acme"),
                owner,
                token,
            })
            .await
            .unwrap()
    );
    store
        .create_org(org("umbrella"), None, None, Vec::new())
        .await
        .unwrap();
    store
        .append("acme", sample_events(EVENTS as usize))
        .await
        .unwrap();
    store.append("umbrella", sample_events(20)).await.unwrap();
    store.extend_tiles("acme", 0, EVENTS).await.unwrap();
    store
        .add_checkpoint(SignedCheckpoint {
            org: "acme".into(),
            size: EVENTS,
            root: store.tree_root("acme", EVENTS).await.unwrap(),
            note: format!("trail.local\n{EVENTS}\nroot\n"),
            created_at: T0,
        })
        .await
        .unwrap();
}

/// Writes a version-1 database in `v1` holding the rows of the store in `from`.
fn make_v1_store(from: &Path, v1: &Path) {
    let conn = Connection::open(v1.join(DB_FILE)).unwrap();
    conn.execute_batch(SCHEMA_V1).unwrap();
    conn.pragma_update(None, "user_version", 1).unwrap();
    conn.execute(
        "ATTACH DATABASE ?1 AS src",
        [from.join(DB_FILE).to_str().unwrap()],
    )
    .unwrap();
    let tx = conn.unchecked_transaction().unwrap();
    tx.execute(
        "INSERT INTO main.meta (key, value) SELECT key, value FROM src.meta \
         WHERE key != 'next_org_id'",
        [],
    )
    .unwrap();
    // Version 1 kept an address as its text, in the dictionary: today's inline bytes go back
    // to that form (each address's text as a new dictionary entry).
    tx.execute_batch("CREATE TEMP TABLE ips (bytes BLOB PRIMARY KEY, id INTEGER)")
        .unwrap();
    let inline: Vec<Vec<u8>> = tx
        .prepare("SELECT DISTINCT ip FROM src.events WHERE typeof(ip) = 'blob'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(!inline.is_empty(), "the sample has addresses");
    let next: i64 = tx
        .query_row("SELECT max(id) + 1 FROM src.dict", [], |r| r.get(0))
        .unwrap();
    for (i, bytes) in inline.iter().enumerate() {
        let ip = match bytes.len() {
            4 => std::net::IpAddr::from(<[u8; 4]>::try_from(&bytes[..]).unwrap()),
            _ => std::net::IpAddr::from(<[u8; 16]>::try_from(&bytes[..]).unwrap()),
        };
        let id = next + i as i64;
        tx.execute(
            "INSERT INTO main.dict (id, value) VALUES (?1, ?2)",
            rusqlite::params![id, ip.to_string()],
        )
        .unwrap();
        tx.execute(
            "INSERT INTO temp.ips (bytes, id) VALUES (?1, ?2)",
            rusqlite::params![bytes, id],
        )
        .unwrap();
    }
    for (table, cols) in TABLES_V1 {
        let select = match *table {
            "events" => cols.replacen(
                " ip,",
                " coalesce((SELECT id FROM temp.ips WHERE bytes = ip), ip),",
                1,
            ),
            _ => (*cols).to_owned(),
        };
        tx.execute(
            &format!("INSERT INTO main.{table} ({cols}) SELECT {select} FROM src.{table}"),
            [],
        )
        .unwrap();
    }
    let left: i64 = tx
        .query_row(
            "SELECT count(*) FROM main.events WHERE typeof(ip) = 'blob'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        left, 0,
        "every address is a dictionary id, as version 1 stored it"
    );
    tx.commit().unwrap();
}

#[tokio::test]
async fn a_version_1_store_opens_and_keeps_everything() {
    let made = tempfile::tempdir().unwrap();
    populate(made.path()).await;
    let before = SqliteStore::open_read_only(made.path()).unwrap();
    let mut events = before.events_from("acme", 0, 10_000).await.unwrap();
    // Rows copied into a version-1 table read as encoding 1, as version 1 wrote them.
    for e in &mut events {
        e.event.encoding = 1;
    }
    let checkpoint = before.checkpoint("acme", None).await.unwrap().unwrap();
    let token = before.token("pat_1").await.unwrap().unwrap();
    let owner = before.user("usr_1").await.unwrap().unwrap();
    let all_time = (Timestamp(0), Timestamp(i64::MAX / 2));
    let calls = before
        .api_call_minutes("acme", all_time.0, all_time.1, 1)
        .await
        .unwrap();
    assert!(!calls.is_empty());
    drop(before);

    let old = tempfile::tempdir().unwrap();
    make_v1_store(made.path(), old.path());
    let store = SqliteStore::open(old.path()).unwrap();
    let version: i64 = Connection::open(old.path().join(DB_FILE))
        .unwrap()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);

    // Every event, checkpoint and credential is there, as it was.
    assert_eq!(store.events_from("acme", 0, 10_000).await.unwrap(), events);
    assert_eq!(store.log_size("umbrella").await.unwrap(), 20);
    assert_eq!(
        store.checkpoint("acme", None).await.unwrap(),
        Some(checkpoint.clone())
    );
    // The bootstrap owner's token, from before tokens could act on several orgs, now acts
    // on all of theirs, as a new store's does.
    assert_eq!(
        store.token("pat_1").await.unwrap(),
        Some(Token {
            reach: trail_store::Reach::All,
            ..token
        })
    );
    assert_eq!(store.user("usr_1").await.unwrap(), Some(owner));
    // The per-minute tallies of API calls, which version 1 did not keep, are made from the
    // events: the same as those kept as they were appended.
    assert_eq!(
        store
            .api_call_minutes("acme", all_time.0, all_time.1, 1)
            .await
            .unwrap(),
        calls
    );
    assert_eq!(store.platform_org().await.unwrap().as_deref(), Some("acme"));

    // It keeps verifying: the signed root is still the tree's. (These rows were written by
    // today's code and copied, so their hashes are encoding 2's; that rows version 1 wrote
    // hash as encoding 1 is `a_store_from_before_provenance_opens_and_keeps_its_hashes`.)
    assert_eq!(
        store.tree_root("acme", EVENTS).await.unwrap(),
        checkpoint.root
    );
    let proof = store.inclusion_proof("acme", 17, EVENTS).await.unwrap();
    assert!(!proof.is_empty());

    // The block summaries are those a store written today keeps (their filters hold the
    // addresses as this store keeps them, so only their times compare).
    let summaries = |dir: &Path| -> Vec<(i64, i64, i64, i64)> {
        Connection::open(dir.join(DB_FILE))
            .unwrap()
            .prepare("SELECT id, min_ts, max_ts, max_ts_before FROM blocks ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    assert_eq!(summaries(old.path()), summaries(made.path()));
    assert_eq!(summaries(old.path()).len(), EVENTS as usize / 1024);
    // So are the postings (of dictionary ids, which the copy kept), wherever they are; a
    // posting not yet moved out of `postings_hot` has no running bound yet.
    type Posting = (i64, i64, i64, Vec<u8>, Option<i64>);
    let postings = |dir: &Path| -> Vec<Posting> {
        Connection::open(dir.join(DB_FILE))
            .unwrap()
            .prepare(
                "SELECT col, value, id, seqs, before FROM postings UNION ALL \
                 SELECT col, value, id, seqs, NULL FROM postings_hot ORDER BY col, value, id",
            )
            .unwrap()
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    let (migrated, written) = (postings(old.path()), postings(made.path()));
    assert_eq!(migrated.len(), written.len());
    for (m, w) in migrated.iter().zip(&written) {
        assert_eq!((m.0, m.1, m.2, &m.3), (w.0, w.1, w.2, &w.3));
        assert!(m.4.is_some(), "the migration writes every posting settled");
        if w.4.is_some() {
            assert_eq!(m.4, w.4, "posting {w:?}");
        }
    }
    let posted_blocks: std::collections::HashSet<i64> = migrated.iter().map(|p| p.2).collect();
    assert_eq!(posted_blocks.len(), EVENTS as usize / 1024);

    // An address filter finds the rows that keep it in the dictionary, and those that keep
    // it inline, written from now on.
    let by_ip = |ip: String| {
        let store = &store;
        async move {
            let mut filter = trail_core::query::Filter::default();
            filter.add_query(&format!("ip:{ip}"), T0).unwrap();
            let q = trail_store::EventQuery {
                filter,
                limit: 10_000,
                cursor: None,
            };
            store.query("acme", &q).await.unwrap().items.len()
        }
    };
    let v4 = events
        .iter()
        .filter(|e| e.event.actor.ip == Some("10.0.0.1".parse().unwrap()))
        .count();
    assert!(v4 > 0);
    assert_eq!(by_ip("10.0.0.1".into()).await, v4);

    // And it goes on: the next seq follows, and a new org takes an id never used before.
    let a = store.append("acme", sample_events(1)).await.unwrap();
    assert_eq!(a[0].seq, EVENTS);
    let new = store.events_from("acme", EVENTS, 1).await.unwrap()[0]
        .event
        .actor
        .ip
        .expect("an address")
        .to_string();
    let had = events
        .iter()
        .filter(|e| e.event.actor.ip.map(|ip| ip.to_string()) == Some(new.clone()))
        .count();
    assert_eq!(by_ip(new).await, had + 1);
    store
        .create_org(org("initech"), None, None, Vec::new())
        .await
        .unwrap();
    let raw = Connection::open(old.path().join(DB_FILE)).unwrap();
    let ids: Vec<i64> = raw
        .prepare("SELECT id FROM orgs ORDER BY slug")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    // acme, initech, umbrella
    assert!(ids[1] > ids[0] && ids[1] > ids[2], "{ids:?}");
    store.health().await.unwrap();
}

#[tokio::test]
async fn a_store_from_a_newer_trail_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(SqliteStore::open(dir.path()).unwrap());
    Connection::open(dir.path().join(DB_FILE))
        .unwrap()
        .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    let err = SqliteStore::open(dir.path()).err().expect("refused");
    assert!(err.to_string().contains("upgrade Trail"), "{err}");
}
