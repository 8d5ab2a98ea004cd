//! The conformance suite: what every [`Store`] backend must do, written once.
//!
//! A backend's test crate expands it with
//! `trail_store::store_conformance_tests!(make_backend);` where `make_backend` is an async
//! function returning a fresh, empty [`Backend`]. Each check becomes its own `#[tokio::test]`.

use std::any::Any;
use std::collections::HashSet;
use std::sync::Arc;

use serde_json::{Value, json};
use trail_core::query::Filter;
use trail_core::scope::{Role, Scope};
use trail_core::{Cursor, Event, EventBody, Timestamp};

use crate::{
    Bootstrap, EventQuery, Org, Outcome, Store, StoreError, StoredEvent, Token, TokenKind, User,
};

/// A store under test, and whatever must live as long as it (a temp dir, a database).
pub struct Backend {
    pub store: Arc<dyn Store>,
    pub guard: Box<dyn Any + Send>,
}

#[macro_export]
macro_rules! store_conformance_tests {
    ($make:path) => {
        $crate::store_conformance_tests!(@each $make;
            bootstrap_runs_once,
            orgs_users_and_tokens,
            append_assigns_gapless_seqs_per_org,
            concurrent_appends_have_no_gaps,
            read_back_equals_what_was_sealed,
            stored_hash_is_the_canonical_leaf_hash,
            client_ids_make_retries_idempotent,
            unknown_org_is_an_error,
            newest_first_paging_returns_each_event_once,
            paging_is_stable_while_events_arrive,
            filters_agree_with_the_reference_semantics,
            events_from_and_log_size,
        );
    };
    (@each $make:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let backend = $make().await;
                $crate::conformance::$name(backend.store.clone()).await;
            }
        )*
    };
}

const T0: i64 = 1_763_740_000_000_000; // 2025-11-21T15:46:40Z

fn org(id: &str) -> Org {
    Org {
        id: id.into(),
        name: format!("Org {id}"),
        created_at: Timestamp(T0),
    }
}

fn body(v: Value) -> EventBody {
    EventBody::from_json(v, "acme").expect("test event is valid")
}

fn simple(action: &str) -> EventBody {
    body(json!({"action": action, "actor": {"id": "alice", "type": "user"}}))
}

async fn with_orgs(store: &dyn Store, ids: &[&str]) {
    for id in ids {
        store.create_org(org(id)).await.unwrap();
    }
}

/// A deterministic spread of events over fields and time, with timestamp ties.
pub fn sample_events(n: usize) -> Vec<EventBody> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |m: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % m
    };
    let actors = ["alice", "bob", "Sarah Brown@akuity.io", "ci-bot"];
    let types = ["user", "pat", "api_key", "break_glass", "system"];
    let actions = ["created", "deleted", "updated", "call"];
    let routes = [
        "GET /v1/tenants/:id",
        "POST /v1/tenants",
        "DELETE /v1/tenants/:id",
    ];
    let statuses = [200, 201, 204, 403, 404, 500, 503];
    (0..n)
        .map(|i| {
            let mut v = json!({
                "id": if next(4) == 0 { Value::from(format!("c-{i}")) } else { Value::Null },
                "action": (actions[next(4) as usize]),
                "timestamp": Timestamp(T0 + (next(50) as i64) * 1_000_000).to_string(),
                "actor": {
                    "id": (actors[next(4) as usize]),
                    "type": (types[next(5) as usize]),
                    "ip": if next(2) == 0 { "10.0.0.1" } else { "2001:db8::1" },
                    "tokenId": format!("pat_{}", next(3)),
                },
            });
            if next(3) == 0 {
                v["instance"] = json!((["argocd-prod", "kargo-dev"][next(2) as usize]));
            }
            if next(2) == 0 {
                v["category"] = json!("api");
                v["request"] = json!({
                    "method": routes[next(3) as usize].split(' ').next().unwrap(),
                    "route": (routes[next(3) as usize]),
                    "status": (statuses[next(7) as usize]),
                    "latencyMs": next(5000) as f64 / 10.0,
                    "bodySha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                });
            } else {
                v["object"] = json!({
                    "type": (["custom_role", "application"][next(2) as usize]),
                    "id": {"group": "argoproj.io", "kind": (["Cluster", "Application"][next(2) as usize]), "name": format!("app-{}", next(3))},
                });
                v["details"] = json!({"actionType": "DELETE", "message": "m", "patch": ""});
            }
            body(v)
        })
        .collect()
}

fn token(id: &str, org: &str) -> Token {
    Token {
        id: id.into(),
        kind: TokenKind::Pat,
        org: org.into(),
        owner: "owner@example.com".into(),
        name: "ci".into(),
        scopes: vec![Scope::LogsRead, Scope::LogsWrite],
        secret_hash: [7; 32],
        created_at: Timestamp(T0),
        expires_at: Some(Timestamp(T0 + 1)),
        revoked_at: None,
    }
}

pub async fn bootstrap_runs_once(store: Arc<dyn Store>) {
    let b = Bootstrap {
        org: org("default"),
        owner: User {
            id: "usr_1".into(),
            email: "owner@example.com".into(),
            created_at: Timestamp(T0),
        },
        token: token("pat_1", "default"),
    };
    assert!(store.bootstrap(b.clone()).await.unwrap());
    assert!(
        !store.bootstrap(b).await.unwrap(),
        "second bootstrap must do nothing"
    );
    assert_eq!(store.orgs().await.unwrap(), vec![org("default")]);
    assert_eq!(
        store.token("pat_1").await.unwrap(),
        Some(token("pat_1", "default"))
    );
    let owner = store
        .user_by_email("owner@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(owner.id, "usr_1");
}

pub async fn orgs_users_and_tokens(store: Arc<dyn Store>) {
    with_orgs(&*store, &["acme", "umbrella"]).await;
    assert!(matches!(
        store.create_org(org("acme")).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.org("acme").await.unwrap(), Some(org("acme")));
    assert_eq!(store.org("nope").await.unwrap(), None);
    assert_eq!(store.orgs().await.unwrap().len(), 2);

    let u = User {
        id: "usr_a".into(),
        email: "a@acme.io".into(),
        created_at: Timestamp(T0),
    };
    store.create_user(u.clone()).await.unwrap();
    assert!(matches!(
        store.create_user(u).await,
        Err(StoreError::Conflict(_))
    ));
    store
        .add_member("acme", "usr_a", Role::Owner)
        .await
        .unwrap();
    assert!(matches!(
        store.add_member("nope", "usr_a", Role::Owner).await,
        Err(StoreError::UnknownOrg(_))
    ));

    store.create_token(token("pat_x", "acme")).await.unwrap();
    assert!(matches!(
        store.create_token(token("pat_x", "acme")).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store.token("pat_x").await.unwrap(),
        Some(token("pat_x", "acme"))
    );
    assert_eq!(store.token("pat_y").await.unwrap(), None);
}

pub async fn append_assigns_gapless_seqs_per_org(store: Arc<dyn Store>) {
    with_orgs(&*store, &["acme", "umbrella"]).await;
    let a = store
        .append("acme", vec![simple("a"), simple("b")])
        .await
        .unwrap();
    let u = store.append("umbrella", vec![simple("c")]).await.unwrap();
    let a2 = store.append("acme", vec![simple("d")]).await.unwrap();
    let seqs = |v: &[crate::Appended]| v.iter().map(|a| a.seq).collect::<Vec<_>>();
    assert_eq!(seqs(&a), [0, 1]);
    assert_eq!(seqs(&u), [0]);
    assert_eq!(seqs(&a2), [2]);
    assert!(
        a.iter()
            .chain(&a2)
            .all(|x| x.outcome == Outcome::Created && x.id.starts_with("evt_"))
    );
    assert_eq!(store.append("acme", vec![]).await.unwrap(), vec![]);
    assert_eq!(store.log_size("acme").await.unwrap(), 3);
    assert_eq!(store.log_size("umbrella").await.unwrap(), 1);
}

pub async fn concurrent_appends_have_no_gaps(store: Arc<dyn Store>) {
    with_orgs(&*store, &["acme"]).await;
    let tasks: Vec<_> = (0..16)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut seqs = Vec::new();
                for i in 0..10 {
                    let batch = (0..=(t + i) % 5).map(|_| simple("c")).collect();
                    seqs.extend(
                        store
                            .append("acme", batch)
                            .await
                            .unwrap()
                            .into_iter()
                            .map(|a| a.seq),
                    );
                }
                seqs
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort_unstable();
    let n = all.len() as u64;
    assert_eq!(
        all,
        (0..n).collect::<Vec<_>>(),
        "seqs must be 0..n with no gap or repeat"
    );
    assert_eq!(store.log_size("acme").await.unwrap(), n);
}

pub async fn read_back_equals_what_was_sealed(store: Arc<dyn Store>) {
    with_orgs(&*store, &["acme"]).await;
    let bodies = sample_events(60);
    let appended = store.append("acme", bodies.clone()).await.unwrap();
    let want: Vec<Event> = bodies
        .into_iter()
        .zip(&appended)
        .map(|(b, a)| Event::seal("acme", a.seq, a.received_at, b))
        .collect();
    let got = store.events_from("acme", 0, 1000).await.unwrap();
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(&g.event, w);
        assert_eq!(g.event.id(), appended[w.seq as usize].id);
    }
}

pub async fn stored_hash_is_the_canonical_leaf_hash(store: Arc<dyn Store>) {
    with_orgs(&*store, &["acme"]).await;
    let appended = store.append("acme", sample_events(40)).await.unwrap();
    for (s, a) in store
        .events_from("acme", 0, 100)
        .await
        .unwrap()
        .iter()
        .zip(&appended)
    {
        assert_eq!(s.hash, trail_core::canonical::leaf_hash(&s.event));
        assert_eq!(s.hash, a.hash);
    }
}

pub async fn client_ids_make_retries_idempotent(store: Arc<dyn Store>) {
    with_orgs(&*store, &["acme", "umbrella"]).await;
    let with_id = |id: &str, action: &str| {
        body(json!({"id": id, "action": action, "actor": {"id": "a", "type": "user"}}))
    };
    let first = store
        .append(
            "acme",
            vec![
                with_id("x-1", "a"),
                simple("b"),
                with_id("x-1", "a"),
                with_id("x-1", "z"),
            ],
        )
        .await
        .unwrap();
    assert_eq!((first[0].seq, first[0].outcome), (0, Outcome::Created));
    assert_eq!(first[1].seq, 1);
    assert_eq!(
        first[2].outcome,
        Outcome::Duplicate,
        "a repeat inside one batch"
    );
    assert_eq!((first[2].seq, first[2].hash), (first[0].seq, first[0].hash));
    assert_eq!(
        first[3].outcome,
        Outcome::Conflict,
        "the same id for another event"
    );
    assert_eq!(first[3].seq, 0, "a conflict names the earlier event");

    let retry = store
        .append(
            "acme",
            vec![
                with_id("x-1", "a"),
                with_id("x-2", "c"),
                with_id("x-1", "changed"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(retry[0].outcome, Outcome::Duplicate);
    assert_eq!(retry[0].id, "x-1");
    assert_eq!((retry[0].seq, retry[0].hash), (0, first[0].hash));
    assert_eq!(retry[0].received_at, first[0].received_at);
    assert_eq!(retry[1].seq, 2, "a duplicate takes no seq");
    assert_eq!(retry[2].outcome, Outcome::Conflict);
    assert_eq!(store.log_size("acme").await.unwrap(), 3);
    let stored = store.events_from("acme", 0, 10).await.unwrap();
    assert_eq!(
        stored[0].event.action, "a",
        "a conflict changes nothing stored"
    );

    // Ids are per org.
    let other = store
        .append("umbrella", vec![with_id("x-1", "a")])
        .await
        .unwrap();
    assert_eq!(other[0].outcome, Outcome::Created);
}

pub async fn unknown_org_is_an_error(store: Arc<dyn Store>) {
    with_orgs(&*store, &["acme"]).await;
    assert!(matches!(
        store.append("nope", vec![simple("a")]).await,
        Err(StoreError::UnknownOrg(o)) if o == "nope"
    ));
    assert!(matches!(
        store
            .query(
                "nope",
                &EventQuery {
                    limit: 10,
                    ..Default::default()
                }
            )
            .await,
        Err(StoreError::UnknownOrg(_))
    ));
    assert!(matches!(
        store.log_size("nope").await,
        Err(StoreError::UnknownOrg(_))
    ));
    // A failed append in a group does not disturb the next one.
    assert_eq!(
        store.append("acme", vec![simple("a")]).await.unwrap()[0].seq,
        0
    );
}

/// Pages through a query, asserting the order, and returns the seqs seen.
async fn page_all(store: &dyn Store, org: &str, filter: &Filter, limit: usize) -> Vec<u64> {
    let mut seen: Vec<(Timestamp, u64)> = Vec::new();
    let mut cursor: Option<Cursor> = None;
    loop {
        let page = store
            .query(
                org,
                &EventQuery {
                    filter: filter.clone(),
                    cursor,
                    limit,
                },
            )
            .await
            .unwrap();
        assert!(page.items.len() <= limit);
        seen.extend(page.items.iter().map(|s| (s.event.timestamp, s.event.seq)));
        match page.next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert!(
        seen.windows(2).all(|w| w[0] > w[1]),
        "newest first, by timestamp then seq"
    );
    seen.into_iter().map(|(_, s)| s).collect()
}

fn reference(events: &[StoredEvent], filter: &Filter) -> Vec<u64> {
    let mut want: Vec<&StoredEvent> = events.iter().filter(|s| filter.matches(&s.event)).collect();
    want.sort_by_key(|s| std::cmp::Reverse((s.event.timestamp, s.event.seq)));
    want.into_iter().map(|s| s.event.seq).collect()
}

pub async fn newest_first_paging_returns_each_event_once(store: Arc<dyn Store>) {
    with_orgs(&*store, &["acme"]).await;
    store.append("acme", sample_events(250)).await.unwrap();
    let all = store.events_from("acme", 0, 1000).await.unwrap();
    let filter = Filter::default();
    for limit in [1, 7, 100, 250, 1000] {
        assert_eq!(
            page_all(&*store, "acme", &filter, limit).await,
            reference(&all, &filter)
        );
    }
}

pub async fn paging_is_stable_while_events_arrive(store: Arc<dyn Store>) {
    with_orgs(&*store, &["acme"]).await;
    store.append("acme", sample_events(120)).await.unwrap();
    let before: HashSet<u64> = (0..120).collect();
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .query(
                "acme",
                &EventQuery {
                    cursor,
                    limit: 13,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        seen.extend(page.items.iter().map(|s| s.event.seq));
        // New events arrive between pages, some with old timestamps.
        store.append("acme", sample_events(5)).await.unwrap();
        match page.next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let unique: HashSet<u64> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "no event is returned twice");
    assert!(
        before.is_subset(&unique),
        "every event present at the start is returned"
    );
}

pub async fn filters_agree_with_the_reference_semantics(store: Arc<dyn Store>) {
    with_orgs(&*store, &["acme", "umbrella"]).await;
    store.append("acme", sample_events(300)).await.unwrap();
    store.append("umbrella", sample_events(50)).await.unwrap();
    let all = store.events_from("acme", 0, 1000).await.unwrap();
    let now = Timestamp(T0 + 60_000_000);
    let queries = [
        "",
        "actor:alice",
        "actor:alice actor:bob",
        r#"actor:"Sarah Brown@akuity.io""#,
        "-actor:alice",
        "actorType:break_glass",
        "action:deleted category:app",
        "category:api -status:200",
        "status:5xx",
        "status:404",
        "-status:2xx",
        r#"route:"GET /v1/tenants/:id""#,
        "route:/v1/tenants/:id",
        "method:delete",
        "objectType:custom_role objectKind:Cluster",
        "objectName:app-1",
        "instance:argocd-prod",
        "-instance:argocd-prod",
        "tokenId:pat_1 ip:2001:db8:0::1",
        "actor:nobody",
        "-actor:nobody",
        "since:45s",
        "since:40s until:20s actor:bob",
        "until:2025-11-21T15:47:00Z",
    ];
    for q in queries {
        let mut filter = Filter::default();
        filter.add_query(q, now).unwrap();
        assert_eq!(
            page_all(&*store, "acme", &filter, 17).await,
            reference(&all, &filter),
            "query {q:?}"
        );
    }
}

pub async fn events_from_and_log_size(store: Arc<dyn Store>) {
    with_orgs(&*store, &["acme", "umbrella"]).await;
    assert_eq!(store.log_size("acme").await.unwrap(), 0);
    assert!(store.events_from("acme", 0, 10).await.unwrap().is_empty());
    store.append("acme", sample_events(30)).await.unwrap();
    store.append("umbrella", sample_events(5)).await.unwrap();
    let seqs = |v: Vec<StoredEvent>| v.into_iter().map(|s| s.event.seq).collect::<Vec<_>>();
    assert_eq!(
        seqs(store.events_from("acme", 10, 5).await.unwrap()),
        [10, 11, 12, 13, 14]
    );
    assert_eq!(
        seqs(store.events_from("acme", 28, 5).await.unwrap()),
        [28, 29]
    );
    assert!(store.events_from("acme", 30, 5).await.unwrap().is_empty());
    assert!(
        store
            .events_from("acme", u64::MAX, 5)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.log_size("acme").await.unwrap(), 30);
}
