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
    Acceptance, Bootstrap, EventQuery, Org, Outcome, Store, StoreError, StoredEvent, Token,
    TokenKind, User,
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
            invitations_join_an_account_only_when_accepted,
            members_roles_and_the_last_owner,
            instances_per_org,
            credentials_are_listed_and_revoked,
            sessions_start_and_end,
            a_change_and_its_record_commit_together,
            append_assigns_gapless_seqs_per_org,
            concurrent_appends_have_no_gaps,
            read_back_equals_what_was_sealed,
            stored_hash_is_the_canonical_leaf_hash,
            audit_leaves_agree_with_the_stored_hashes,
            client_ids_make_retries_idempotent,
            unknown_org_is_an_error,
            newest_first_paging_returns_each_event_once,
            paging_is_stable_while_events_arrive,
            filters_agree_with_the_reference_semantics,
            filters_agree_with_the_reference_over_a_long_log,
            pages_of_values_spread_over_many_blocks_are_exact,
            events_from_and_log_size,
            the_tree_is_the_core_tree_over_the_stored_leaves,
            checkpoints_are_kept_and_listed,
            settings_are_set_once,
            api_calls_are_tallied_by_route_and_minute_within_the_window,
            a_failed_create_org_leaves_no_trace,
            a_fresh_store_is_healthy,
            other_orgs_routes_do_not_change_a_path_only_route_filter,
            actor_types_beyond_the_known_ones_are_kept_and_found,
            histograms_count_what_the_filter_passes_per_slice,
            a_histogram_of_every_event_equals_one_that_reads_them,
            a_log_watch_wakes_after_each_commit_to_its_org_only,
            an_export_pulls_every_event_once_in_seq_order_while_writers_append,
            an_export_filters_is_bounded_and_starts_at_a_time_of_receipt,
            pruning_removes_a_prefix_and_what_remains_still_proves,
            a_prune_keeps_the_call_minutes_of_the_oldest_event_that_remains,
            a_histogram_counts_what_a_prune_left_of_a_block,
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

/// A database of its own on this test run's PostgreSQL server, started on first use and
/// stopped when the test process exits ([`crate::postgres::local::LocalServer`]). Panics
/// if PostgreSQL is not installed: these tests never skip.
pub fn postgres_database() -> String {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicUsize, Ordering};
    static SERVER: OnceLock<crate::postgres::local::LocalServer> = OnceLock::new();
    static DATABASES: AtomicUsize = AtomicUsize::new(0);
    let server = SERVER.get_or_init(|| {
        crate::postgres::local::LocalServer::start(
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off \
             -c max_connections=400 -c shared_buffers=64MB",
        )
        .unwrap_or_else(|e| panic!("the PostgreSQL tests need PostgreSQL: {e}"))
    });
    let name = format!("trail_{}", DATABASES.fetch_add(1, Ordering::Relaxed));
    let mut c = postgres::Client::connect(&server.url("postgres"), postgres::NoTls)
        .unwrap_or_else(|e| panic!("connecting to the test PostgreSQL: {e}"));
    c.batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap_or_else(|e| panic!("creating database {name}: {e}"));
    server.url(&name)
}

/// Creates these orgs (no owner, no records): the setup of most checks, here and in a
/// backend's own tests.
pub async fn with_orgs(store: &dyn Store, ids: &[&str]) {
    for id in ids {
        store
            .create_org(org(id), None, None, Vec::new())
            .await
            .unwrap();
    }
}

fn user(id: &str, email: &str) -> User {
    User {
        id: id.into(),
        email: email.into(),
        password_hash: None,
        platform_admin: false,
        created_at: Timestamp(T0),
    }
}

/// A management event, as the server writes one.
fn audit(org: &str, action: &str) -> crate::AuditEvents {
    let mut event = body(json!({"action": action, "actor": {"id": "admin@x.io", "type": "pat"}}));
    event.category = trail_core::event::MANAGEMENT_CATEGORY.to_owned();
    vec![(org.to_owned(), event)]
}

async fn actions(store: &dyn Store, org: &str) -> Vec<String> {
    store
        .events_from(org, 0, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.event.action)
        .collect()
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
        user_id: None,
        name: "ci".into(),
        description: "for CI".into(),
        scopes: vec![Scope::LogsRead, Scope::LogsWrite],
        instance: None,
        secret_hash: [7; 32],
        created_by: "owner@example.com".into(),
        created_at: Timestamp(T0),
        expires_at: Some(Timestamp(T0 + 1)),
        revoked_at: None,
        reach: crate::Reach::Own,
        from_password: false,
        role: None,
        made_with: None,
    }
}

pub async fn bootstrap_runs_once(store: Arc<dyn Store>) {
    assert_eq!(store.platform_org().await.unwrap(), None);
    let b = Bootstrap {
        org: org("default"),
        owner: User {
            platform_admin: true,
            ..user("usr_1", "owner@example.com")
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
    assert!(owner.platform_admin);
    assert_eq!(
        store.platform_org().await.unwrap().as_deref(),
        Some("default")
    );
    assert_eq!(
        store.memberships("usr_1").await.unwrap(),
        vec![("default".to_owned(), Role::Owner)]
    );
}

pub async fn invitations_join_an_account_only_when_accepted(store: Arc<dyn Store>) {
    with_orgs(&*store, &["acme", "umbrella"]).await;
    let invitation = |id: &str, org: &str, email: &str, role: Role| Token {
        kind: TokenKind::Invitation,
        owner: email.into(),
        scopes: Vec::new(),
        role: Some(role),
        expires_at: Some(Timestamp(T0 + 1_000)),
        ..token(id, org)
    };
    let members = |org: &'static str| {
        let store = store.clone();
        async move {
            let mut m: Vec<(String, Role)> = store
                .members(org)
                .await
                .unwrap()
                .into_iter()
                .map(|m| (m.email, m.role))
                .collect();
            m.sort_by(|a, b| a.0.cmp(&b.0));
            m
        }
    };
    // Inviting changes no account and no membership.
    store
        .invite_member(
            invitation("inv_1", "acme", "ana@x.io", Role::Member),
            Vec::new(),
        )
        .await
        .unwrap();
    assert_eq!(store.user_by_email("ana@x.io").await.unwrap(), None);
    assert!(members("acme").await.is_empty());
    // Inviting again replaces the open invitation.
    store
        .invite_member(
            invitation("inv_2", "acme", "ana@x.io", Role::Admin),
            Vec::new(),
        )
        .await
        .unwrap();
    assert!(
        store
            .token("inv_1")
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_some()
    );
    let at = Timestamp(T0 + 10);
    let ana = User {
        password_hash: Some("$argon2id$ana".into()),
        ..user("usr_ana", "ana@x.io")
    };
    assert!(matches!(
        store
            .accept_invitation("inv_1", Acceptance::NewAccount(ana.clone()), at, Vec::new())
            .await,
        Err(StoreError::NotFound(_))
    ));
    // An acceptance for another email is refused.
    assert!(matches!(
        store
            .accept_invitation(
                "inv_2",
                Acceptance::NewAccount(user("usr_eve", "eve@x.io")),
                at,
                Vec::new()
            )
            .await,
        Err(StoreError::Conflict(_))
    ));
    let m = store
        .accept_invitation("inv_2", Acceptance::NewAccount(ana.clone()), at, Vec::new())
        .await
        .unwrap();
    assert_eq!((m.email.as_str(), m.role), ("ana@x.io", Role::Admin));
    assert_eq!(
        store.user_by_email("ana@x.io").await.unwrap(),
        Some(ana.clone())
    );
    assert_eq!(
        members("acme").await,
        [("ana@x.io".to_owned(), Role::Admin)]
    );
    // Once only.
    assert!(matches!(
        store
            .accept_invitation(
                "inv_2",
                Acceptance::Account {
                    user_id: "usr_ana".into()
                },
                at,
                Vec::new()
            )
            .await,
        Err(StoreError::NotFound(_))
    ));
    // A member is not invited again, whatever the case of the email.
    for (id, email) in [("inv_3", "ana@x.io"), ("inv_3b", "Ana@X.IO")] {
        assert!(
            matches!(
                store
                    .invite_member(invitation(id, "acme", email, Role::Owner), Vec::new())
                    .await,
                Err(StoreError::Conflict(_))
            ),
            "{email}"
        );
    }
    // An email names one account whatever its case: found so, and never made twice.
    assert_eq!(
        store.user_by_email("ANA@x.io").await.unwrap(),
        Some(ana.clone())
    );
    // Another org's invitation of the same email: a new account is refused (it exists),
    // and so is another account; the account itself joins.
    store
        .invite_member(
            invitation("inv_4", "umbrella", "ana@x.io", Role::Member),
            Vec::new(),
        )
        .await
        .unwrap();
    assert!(members("umbrella").await.is_empty());
    for refused in [
        Acceptance::NewAccount(user("usr_ana2", "ana@x.io")),
        Acceptance::NewAccount(user("usr_ana3", "ANA@x.io")),
        Acceptance::Account {
            user_id: "usr_1".into(),
        },
        Acceptance::FirstPassword("$argon2id$x".into()),
    ] {
        assert!(
            matches!(
                store
                    .accept_invitation("inv_4", refused.clone(), at, Vec::new())
                    .await,
                Err(StoreError::Conflict(_))
            ),
            "{refused:?}"
        );
    }
    store
        .accept_invitation(
            "inv_4",
            Acceptance::Account {
                user_id: "usr_ana".into(),
            },
            at,
            Vec::new(),
        )
        .await
        .unwrap();
    assert_eq!(
        members("umbrella").await,
        [("ana@x.io".to_owned(), Role::Member)]
    );
    // An expired invitation is no invitation.
    store
        .invite_member(
            invitation("inv_5", "umbrella", "bo@x.io", Role::Member),
            Vec::new(),
        )
        .await
        .unwrap();
    assert!(matches!(
        store
            .accept_invitation(
                "inv_5",
                Acceptance::NewAccount(user("usr_bo", "bo@x.io")),
                Timestamp(T0 + 1_000),
                Vec::new()
            )
            .await,
        Err(StoreError::NotFound(_))
    ));
}

pub async fn orgs_users_and_tokens(store: Arc<dyn Store>) {
    with_orgs(&*store, &["acme"]).await;
    store
        .create_org(
            org("umbrella"),
            Some(user("usr_u", "u@umbrella.io")),
            None,
            Vec::new(),
        )
        .await
        .unwrap();
    assert!(matches!(
        store.create_org(org("acme"), None, None, Vec::new()).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.org("acme").await.unwrap(), Some(org("acme")));
    assert_eq!(store.org("nope").await.unwrap(), None);
    assert_eq!(store.orgs().await.unwrap().len(), 2);
    assert_eq!(
        store.members("umbrella").await.unwrap()[0].role,
        Role::Owner
    );

    let u = store.user_by_email("u@umbrella.io").await.unwrap().unwrap();
    assert_eq!(store.user(&u.id).await.unwrap(), Some(u.clone()));
    assert_eq!(u.password_hash, None);
    // A new password revokes the tokens the old one gave out, and no others.
    let from_password = Token {
        user_id: Some(u.id.clone()),
        from_password: true,
        ..token("pat_pw", "umbrella")
    };
    let other = Token {
        user_id: Some(u.id.clone()),
        ..token("pat_ci", "umbrella")
    };
    for t in [&from_password, &other] {
        store.create_token(t.clone(), Vec::new()).await.unwrap();
    }
    assert_eq!(
        store.personal_tokens(&u.id).await.unwrap(),
        vec![other.clone(), from_password.clone()],
        "a user's tokens, newest first (then by id)"
    );
    store
        .set_password(&u.id, "$argon2id$x".into(), Timestamp(T0 + 7), Vec::new())
        .await
        .unwrap();
    let u = store.user(&u.id).await.unwrap().unwrap();
    assert_eq!(u.password_hash.as_deref(), Some("$argon2id$x"));
    assert_eq!(
        store.token("pat_pw").await.unwrap().unwrap().revoked_at,
        Some(Timestamp(T0 + 7))
    );
    assert_eq!(
        store.token("pat_ci").await.unwrap().unwrap().revoked_at,
        None
    );
    assert!(matches!(
        store
            .set_password("usr_nope", "h".into(), Timestamp(T0), Vec::new())
            .await,
        Err(StoreError::NotFound(_))
    ));

    store
        .create_token(token("pat_x", "acme"), Vec::new())
        .await
        .unwrap();
    assert!(matches!(
        store.create_token(token("pat_x", "acme"), Vec::new()).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store.token("pat_x").await.unwrap(),
        Some(token("pat_x", "acme"))
    );
    assert_eq!(store.token("pat_y").await.unwrap(), None);
    assert!(matches!(
        store.create_token(token("pat_z", "nope"), Vec::new()).await,
        Err(StoreError::UnknownOrg(_))
    ));
}

pub async fn members_roles_and_the_last_owner(store: Arc<dyn Store>) {
    with_orgs(&*store, &["acme", "umbrella"]).await;
    let a = store
        .add_member("acme", user("usr_a", "a@acme.io"), Role::Owner, Vec::new())
        .await
        .unwrap();
    assert_eq!((a.email.as_str(), a.role), ("a@acme.io", Role::Owner));
    // A known email is the same user, in another org too; the id passed is ignored.
    let again = store
        .add_member(
            "umbrella",
            user("usr_other", "a@acme.io"),
            Role::Member,
            Vec::new(),
        )
        .await
        .unwrap();
    assert_eq!(again.user_id, "usr_a");
    assert!(matches!(
        store
            .add_member("acme", user("usr_a", "a@acme.io"), Role::Admin, Vec::new())
            .await,
        Err(StoreError::Conflict(_))
    ));
    store
        .add_member("acme", user("usr_b", "b@acme.io"), Role::Member, Vec::new())
        .await
        .unwrap();
    assert_eq!(
        store.memberships("usr_a").await.unwrap(),
        vec![
            ("acme".to_owned(), Role::Owner),
            ("umbrella".to_owned(), Role::Member)
        ]
    );

    // The last owner can be neither demoted nor removed.
    assert!(matches!(
        store.set_role("acme", "usr_a", Role::Admin, Vec::new()).await,
        Err(StoreError::Conflict(m)) if m.contains("without an owner")
    ));
    assert!(matches!(
        store.remove_member("acme", "usr_a", Vec::new()).await,
        Err(StoreError::Conflict(_))
    ));
    store
        .set_role("acme", "usr_b", Role::Owner, Vec::new())
        .await
        .unwrap();
    store
        .set_role("acme", "usr_a", Role::Admin, Vec::new())
        .await
        .unwrap();
    store
        .remove_member("acme", "usr_a", Vec::new())
        .await
        .unwrap();
    let members = store.members("acme").await.unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(
        (members[0].email.as_str(), members[0].role),
        ("b@acme.io", Role::Owner)
    );
    assert!(matches!(
        store.remove_member("acme", "usr_a", Vec::new()).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store
            .set_role("acme", "usr_nope", Role::Admin, Vec::new())
            .await,
        Err(StoreError::NotFound(_))
    ));
}

pub async fn instances_per_org(store: Arc<dyn Store>) {
    with_orgs(&*store, &["acme", "umbrella"]).await;
    let inst = |org: &str, id: &str| crate::Instance {
        org: org.into(),
        id: id.into(),
        name: format!("{id} name"),
        kind: "argocd".into(),
        created_at: Timestamp(T0),
    };
    store
        .create_instance(inst("acme", "prod"), Vec::new())
        .await
        .unwrap();
    store
        .create_instance(inst("acme", "dev"), Vec::new())
        .await
        .unwrap();
    store
        .create_instance(inst("umbrella", "prod"), Vec::new())
        .await
        .unwrap();
    assert!(matches!(
        store
            .create_instance(inst("acme", "prod"), Vec::new())
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store.instances("acme").await.unwrap(),
        vec![inst("acme", "dev"), inst("acme", "prod")]
    );
    assert_eq!(store.instances("umbrella").await.unwrap().len(), 1);
}

pub async fn credentials_are_listed_and_revoked(store: Arc<dyn Store>) {
    with_orgs(&*store, &["acme", "umbrella"]).await;
    let mut t1 = token("pat_1", "acme");
    t1.created_at = Timestamp(T0 + 1);
    store
        .add_member(
            "acme",
            user("usr_2", "two@acme.io"),
            Role::Member,
            Vec::new(),
        )
        .await
        .unwrap();
    let mut t2 = token("pat_2", "acme");
    t2.user_id = Some("usr_2".into());
    let mut dangling = token("pat_d", "acme");
    dangling.user_id = Some("usr_nope".into());
    assert!(matches!(
        store.create_token(dangling, Vec::new()).await,
        Err(StoreError::NotFound(_))
    ));
    let key = Token {
        kind: TokenKind::ApiKey,
        user_id: None,
        instance: Some("prod".into()),
        ..token("key_1", "acme")
    };
    // A PAT's reach is kept as given: its own org, a list, or all its user's orgs.
    let listed = Token {
        reach: crate::Reach::Orgs(vec!["acme".into(), "umbrella".into()]),
        ..token("pat_l", "acme")
    };
    let all = Token {
        reach: crate::Reach::All,
        ..token("pat_all", "acme")
    };
    for t in [&t1, &t2, &key, &token("pat_3", "umbrella"), &listed, &all] {
        store.create_token(t.clone(), Vec::new()).await.unwrap();
        assert_eq!(store.token(&t.id).await.unwrap().as_ref(), Some(t));
    }
    let ids = |v: Vec<Token>| v.into_iter().map(|t| t.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.tokens("acme", TokenKind::Pat, None).await.unwrap()),
        ["pat_1", "pat_2", "pat_all", "pat_l"]
    );
    assert_eq!(
        ids(store
            .tokens("acme", TokenKind::Pat, Some("usr_2"))
            .await
            .unwrap()),
        ["pat_2"]
    );
    assert_eq!(
        store.tokens("acme", TokenKind::ApiKey, None).await.unwrap(),
        vec![key]
    );

    store
        .revoke_token("pat_1", Timestamp(T0 + 5), Vec::new())
        .await
        .unwrap();
    store
        .revoke_token("pat_1", Timestamp(T0 + 9), Vec::new())
        .await
        .unwrap();
    assert_eq!(
        store.token("pat_1").await.unwrap().unwrap().revoked_at,
        Some(Timestamp(T0 + 5)),
        "the first revocation stands"
    );
    assert!(matches!(
        store
            .revoke_token("pat_nope", Timestamp(T0), Vec::new())
            .await,
        Err(StoreError::NotFound(_))
    ));
}

pub async fn sessions_start_and_end(store: Arc<dyn Store>) {
    with_orgs(&*store, &["acme"]).await;
    store
        .add_member("acme", user("usr_a", "a@acme.io"), Role::Owner, Vec::new())
        .await
        .unwrap();
    let s = crate::Session {
        id: "ses_1".into(),
        user_id: "usr_a".into(),
        secret_hash: [3; 32],
        created_at: Timestamp(T0),
        last_seen_at: Timestamp(T0),
        expires_at: Timestamp(T0 + 100),
        ended_at: None,
        token_id: None,
    };
    store.create_session(s.clone(), Vec::new()).await.unwrap();
    assert_eq!(store.session("ses_1").await.unwrap(), Some(s.clone()));
    // A session signed in with a token names it.
    let mut pat = token("pat_s", "acme");
    pat.user_id = Some("usr_a".into());
    store.create_token(pat, Vec::new()).await.unwrap();
    let by_token = crate::Session {
        id: "ses_t".into(),
        token_id: Some("pat_s".into()),
        ..s.clone()
    };
    store
        .create_session(by_token.clone(), Vec::new())
        .await
        .unwrap();
    assert_eq!(store.session("ses_t").await.unwrap(), Some(by_token));
    store
        .touch_session("ses_1", Timestamp(T0 + 10))
        .await
        .unwrap();
    store
        .touch_session("ses_1", Timestamp(T0 + 5))
        .await
        .unwrap();
    let touched = store.session("ses_1").await.unwrap().unwrap();
    assert_eq!(
        touched.last_seen_at,
        Timestamp(T0 + 10),
        "last seen never goes back"
    );
    store
        .end_session("ses_1", Timestamp(T0 + 20), Vec::new())
        .await
        .unwrap();
    assert_eq!(
        store.session("ses_1").await.unwrap().unwrap().ended_at,
        Some(Timestamp(T0 + 20))
    );
    assert_eq!(store.session("ses_2").await.unwrap(), None);
    for id in ["ses_a", "ses_b", "ses_c"] {
        store
            .create_session(
                crate::Session {
                    id: id.into(),
                    ..s.clone()
                },
                Vec::new(),
            )
            .await
            .unwrap();
    }
    store
        .end_user_sessions("usr_a", Some("ses_b"), Timestamp(T0 + 30))
        .await
        .unwrap();
    let ended = |id: &'static str| {
        let store = store.clone();
        async move { store.session(id).await.unwrap().unwrap().ended_at }
    };
    assert_eq!(ended("ses_a").await, Some(Timestamp(T0 + 30)));
    assert_eq!(ended("ses_b").await, None, "the one kept");
    assert_eq!(
        ended("ses_1").await,
        Some(Timestamp(T0 + 20)),
        "an ended one keeps its end"
    );
}

pub async fn a_change_and_its_record_commit_together(store: Arc<dyn Store>) {
    with_orgs(&*store, &["acme"]).await;
    store
        .create_org(
            org("umbrella"),
            Some(user("usr_u", "u@umbrella.io")),
            None,
            audit("umbrella", "org.created"),
        )
        .await
        .unwrap();
    assert_eq!(actions(&*store, "umbrella").await, ["org.created"]);
    store
        .add_member(
            "acme",
            user("usr_a", "a@acme.io"),
            Role::Owner,
            audit("acme", "member.added"),
        )
        .await
        .unwrap();
    // A refused change leaves no record.
    let dup = store
        .add_member(
            "acme",
            user("usr_a", "a@acme.io"),
            Role::Owner,
            audit("acme", "member.added"),
        )
        .await;
    assert!(dup.is_err());
    let demote = store
        .set_role(
            "acme",
            "usr_a",
            Role::Member,
            audit("acme", "member.role_changed"),
        )
        .await;
    assert!(demote.is_err());
    store
        .create_token(token("pat_1", "acme"), audit("acme", "token.created"))
        .await
        .unwrap();
    store
        .revoke_token("pat_1", Timestamp(T0), audit("acme", "token.revoked"))
        .await
        .unwrap();
    assert_eq!(
        actions(&*store, "acme").await,
        ["member.added", "token.created", "token.revoked"]
    );
    // Records take seqs like any event, with no gap.
    store.append("acme", vec![simple("x")]).await.unwrap();
    let seqs: Vec<u64> = store
        .events_from("acme", 0, 10)
        .await
        .unwrap()
        .iter()
        .map(|s| s.event.seq)
        .collect();
    assert_eq!(seqs, [0, 1, 2, 3]);
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

/// An audit's leaves, recomputed by the store from what it holds of each event (every kind
/// of field: client and derived ids, both IP families, requests, objects, actor types known
/// and not), are the leaves it stored, in seq order and page by page.
pub async fn audit_leaves_agree_with_the_stored_hashes(store: Arc<dyn Store>) {
    with_orgs(&*store, &["acme"]).await;
    let mut events = sample_events(300);
    events.push(body(json!({
        "action": "x", "actor": {"id": "r", "type": "robot.v2", "userAgent": "r/1", "scope": "s"},
        "object": {"type": "app", "id": {"kind": "Application", "name": "app-7"}, "parentId": {"name": "p"}},
    })));
    store.append("acme", events).await.unwrap();
    let n = store.log_size("acme").await.unwrap();
    let mut verifier = trail_core::verify::LogVerifier::new(Vec::new());
    let mut next = 0;
    while next < n {
        let page = store.leaves_for_audit("acme", next, 64).await.unwrap();
        assert_eq!(page.len() as u64, (n - next).min(64));
        for (seq, leaf) in page {
            assert_eq!(seq, next);
            verifier.push_leaf(leaf.unwrap_or_else(|e| panic!("seq {seq}: {e}")));
            next += 1;
        }
    }
    // No checkpoint: each leaf is checked against the hash stored beside its event.
    let verified = verifier.finish().unwrap();
    assert_eq!((verified.size, verified.uncovered), (0, n));
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

/// Events sent seconds late, as clients batch them: each value's events are spread over
/// every part of the log received in those seconds, and a page's newest events of it may
/// be in any of them. Paging through a value (alone, or with another field's) gives what
/// the reference gives, whatever a backend reads or passes over to find each page.
pub async fn pages_of_values_spread_over_many_blocks_are_exact(store: Arc<dyn Store>) {
    with_orgs(&*store, &["acme"]).await;
    let ms = 1_000;
    let events: Vec<EventBody> = (0..6000i64)
        .map(|i| {
            // Received a millisecond apart, stamped up to 4 s earlier.
            let ts = T0 + i * ms - (i * 7919 % 4000) * ms;
            body(json!({
                "action": if i % 3 == 0 { "delete" } else { "read" },
                "actor": {"id": format!("user-{}", i % 23), "type": "user"},
                "timestamp": Timestamp(ts).to_string(),
            }))
        })
        .collect();
    for chunk in events.chunks(1000) {
        store.append("acme", chunk.to_vec()).await.unwrap();
    }
    let mut all = Vec::new();
    while all.len() < events.len() {
        let from = all.len() as u64;
        all.extend(store.events_from("acme", from, 1000).await.unwrap());
    }
    let now = Timestamp(T0 + 3600 * 1_000_000);
    for q in [
        "actor:user-5",
        "actor:user-5 action:delete",
        "actor:user-7 actor:user-8",
    ] {
        let mut filter = Filter::default();
        filter.add_query(q, now).unwrap();
        let want = reference(&all, &filter);
        assert!(want.len() > 50, "{q}: {}", want.len());
        for limit in [1, 4, 50] {
            assert_eq!(
                page_all(&*store, "acme", &filter, limit).await,
                want,
                "query {q:?}, pages of {limit}"
            );
        }
    }
}

/// Pages through a query, asserting the order, and returns the seqs seen.
/// Every event of `org` that passes `filter`, page by page through the cursor, as seqs in the
/// order served (checked newest first): for checks here and in a backend's own tests.
pub async fn page_all(store: &dyn Store, org: &str, filter: &Filter, limit: usize) -> Vec<u64> {
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

/// A log of thousands of events, where some values occur rarely and far apart, and
/// timestamps do not follow seqs (late events, one from the future): every filter's pages,
/// its histogram and a window's still agree with the reference, in either org, whether its
/// terms are on fields a backend indexes, summarises or neither.
pub async fn filters_agree_with_the_reference_over_a_long_log(store: Arc<dyn Store>) {
    with_orgs(&*store, &["acme", "umbrella"]).await;
    let n = 5000;
    let second = 1_000_000;
    // In acme's log an event a day ahead comes late in the log; in umbrella's, early (so
    // every later part of the log has an event newer than its own), from a common token.
    let event = |i: usize, ahead: usize| {
        let ts = match i {
            _ if i == ahead => T0 + 86_400 * second, // a clock a day ahead
            _ if i.is_multiple_of(2500) => T0 - 3600 * second, // an hour late
            // Up to 10 s late: neighbouring thousands of seqs overlap in time.
            _ => T0 + i as i64 * second / 100 - (i as i64 * 7919 % 1000) * second / 100,
        };
        let token = if i == ahead && ahead < 1000 {
            "pat_3".to_owned()
        } else if [100, 2100, 4900].contains(&i) {
            "pat_rare".to_owned()
        } else {
            format!("pat_{}", i % 7)
        };
        let actor = if [17, 2222, 4999].contains(&i) {
            "user-rare".to_owned()
        } else {
            format!("user-{}", i % 13)
        };
        let mut v = json!({
            "action": if i % 100 == 99 { "delete" } else { "call" },
            "category": if i == 3000 { "rare" } else { "api" },
            "timestamp": Timestamp(ts).to_string(),
            "actor": {"id": actor, "type": if i == 4000 { "service" } else { "user" },
                      "ip": format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256),
                      "tokenId": token},
        });
        if i.is_multiple_of(2) {
            v["object"] = json!({"type": "application",
                "id": {"kind": if i == 2500 { "Secret" } else { "Application" }, "name": format!("app-{}", i % 50)}});
        }
        body(v)
    };
    // Batches of 700 and 1,024: some end inside a block, some on its end.
    let (acme, umbrella): (Vec<EventBody>, Vec<EventBody>) =
        (0..n).map(|i| (event(i, 3500), event(i, 300))).unzip();
    for chunk in acme.chunks(700) {
        store.append("acme", chunk.to_vec()).await.unwrap();
    }
    for chunk in umbrella[..3000].chunks(1024) {
        store.append("umbrella", chunk.to_vec()).await.unwrap();
    }
    let stored = |org: &'static str, n: usize| {
        let store = store.clone();
        async move {
            let mut all = Vec::new();
            while all.len() < n {
                let from = all.len() as u64;
                all.extend(store.events_from(org, from, 1000).await.unwrap());
            }
            all
        }
    };
    let all = stored("acme", n).await;
    let now = Timestamp(T0 + 60 * second);
    let queries = [
        "ip:10.0.0.7",
        "ip:10.0.19.127 ip:10.0.3.3",
        "ip:10.0.4.1 tokenId:pat_3",
        "ip:192.0.2.1",
        "tokenId:pat_rare",
        "tokenId:pat_rare -ip:10.0.8.52",
        "tokenId:pat_3",
        "category:rare",
        "category:api tokenId:pat_rare",
        "-category:api",
        "objectKind:Secret",
        "objectKind:Application tokenId:pat_rare",
        "actorType:service",
        "actor:user-9 tokenId:pat_rare",
        "tokenId:pat_3 since:30s",
        "tokenId:pat_3 until:2025-11-21T15:46:45Z",
        "tokenId:pat_3 since:2025-11-21T15:46:50Z until:2025-11-21T15:47:00Z",
        "tokenId:pat_3 until:2025-11-21T15:47:05Z",
        "tokenId:pat_rare since:1d",
        "actor:user-9",
        "actor:user-rare",
        "actor:user-rare actor:user-4",
        "actor:user-rare since:30s",
        "actor:nobody",
        "action:delete",
        "action:delete actor:user-8",
        "action:delete -actor:user-8",
        "objectName:app-8",
        "objectName:app-8 actor:user-8",
        "objectName:app-8 objectName:app-9 action:delete",
        "objectName:app-8 tokenId:pat_3",
        "objectName:app-8 status:5xx",
        "-actor:user-9 category:rare",
        // In umbrella's log the event a day ahead is user-1's, on app-0, early in the log:
        // those values' postings must not stop the walk before it.
        "actor:user-1",
        "objectName:app-0",
        "objectName:app-0 actor:user-1",
        // No term that postings or summaries answer: every block is walked, by its times.
        "",
        "status:5xx",
        "-actor:user-9",
        "-category:api -actor:user-1",
        "since:30s",
    ];
    // Windows that start and end all along the log, so that each falls inside blocks.
    let windows = (0..50).flat_map(|s| {
        let at = |s: i64| Timestamp(T0 + s * second).to_string();
        [
            format!("tokenId:pat_3 since:{}", at(s)),
            format!("tokenId:pat_3 until:{}", at(s)),
            format!("category:api since:{} until:{}", at(s), at(s + 2)),
            format!("actor:user-5 since:{} until:{}", at(s), at(s + 3)),
            format!("since:{} until:{}", at(s), at(s + 1)),
        ]
    });
    let umbrella_all = stored("umbrella", 3000).await;
    for q in queries {
        let mut filter = Filter::default();
        filter.add_query(q, now).unwrap();
        let want = reference(&umbrella_all, &filter);
        for limit in [1, 3, 100] {
            assert_eq!(
                page_all(&*store, "umbrella", &filter, limit).await,
                want,
                "umbrella: query {q:?}, pages of {limit}"
            );
        }
    }
    let queries = queries
        .into_iter()
        .map(|q| (q.to_owned(), &[1, 3, 7, 31, 100][..]))
        .chain(windows.map(|q| (q, &[100][..])));
    for (q, limits) in queries {
        let q = q.as_str();
        let mut filter = Filter::default();
        filter.add_query(q, now).unwrap();
        let want = reference(&all, &filter);
        for &limit in limits {
            // Small pages through a long result: at most 150 of them (many page ends, each
            // a bound that older blocks and events are passed over by).
            if limit < 100 && want.len() > (150 * limit).max(400) {
                continue;
            }
            assert_eq!(
                page_all(&*store, "acme", &filter, limit).await,
                want,
                "query {q:?}, pages of {limit}"
            );
        }
        let (since, until) = (
            Timestamp(T0 - 7200 * second),
            Timestamp(T0 + 2 * 86_400 * second),
        );
        let layout = trail_core::histogram::Layout::new(since, until, 8);
        let mut counts = vec![0u64; layout.buckets];
        for e in all.iter().filter(|e| filter.matches(&e.event)) {
            let t = e.event.timestamp;
            if t >= since && t < until {
                counts[layout.bucket_of(t).expect("in the window")] += 1;
            }
        }
        assert_eq!(
            store
                .histogram("acme", &filter, since, until, 8)
                .await
                .unwrap(),
            counts,
            "histogram of {q:?}"
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

pub async fn the_tree_is_the_core_tree_over_the_stored_leaves(store: Arc<dyn Store>) {
    use trail_core::merkle::{self, InMemory};
    with_orgs(&*store, &["acme", "umbrella"]).await;
    store.append("umbrella", sample_events(3)).await.unwrap();
    // More than two tiles of 256, appended in uneven steps, with tiles stored partway.
    for (i, n) in [100usize, 300, 213].into_iter().enumerate() {
        store
            .append(
                "acme",
                (0..n).map(|j| simple(&format!("e{i}-{j}"))).collect(),
            )
            .await
            .unwrap();
        if i == 1 {
            store.extend_tiles("acme", 0, 400).await.unwrap();
        }
    }
    let leaves: Vec<[u8; 32]> = store
        .events_from("acme", 0, 10_000)
        .await
        .unwrap()
        .iter()
        .map(|s| s.hash)
        .collect();
    assert_eq!(leaves.len(), 613);
    let core = InMemory(&leaves);
    for size in [0u64, 1, 255, 256, 257, 511, 512, 613] {
        assert_eq!(
            store.tree_root("acme", size).await.unwrap(),
            merkle::root(&core, size).unwrap(),
            "root of {size}"
        );
    }
    store.extend_tiles("acme", 400, 613).await.unwrap();
    store.extend_tiles("acme", 0, 613).await.unwrap();
    let root = store.tree_root("acme", 613).await.unwrap();
    assert_eq!(
        root,
        merkle::root(&core, 613).unwrap(),
        "tiles change nothing"
    );
    for seq in [0u64, 255, 256, 400, 612] {
        let proof = store.inclusion_proof("acme", seq, 613).await.unwrap();
        assert_eq!(proof, merkle::inclusion_proof(&core, seq, 613).unwrap());
        assert!(merkle::verify_inclusion(
            &leaves[seq as usize],
            seq,
            613,
            &proof,
            &root
        ));
    }
    for from in [1u64, 256, 300, 613] {
        let proof = store.consistency_proof("acme", from, 613).await.unwrap();
        let old = store.tree_root("acme", from).await.unwrap();
        assert!(
            merkle::verify_consistency(from, 613, &old, &root, &proof),
            "from {from}"
        );
    }
    for size in [0u64, 1, 255, 256, 257, 300, 613] {
        let frontier = store.tree_frontier("acme", size).await.unwrap();
        let mut edge =
            merkle::RootBuilder::from_frontier(size, &frontier).expect("one hash a set bit");
        assert_eq!(
            edge.root(),
            merkle::root(&core, size).unwrap(),
            "edge of {size}"
        );
        for leaf in &leaves[size as usize..] {
            edge.push(*leaf);
        }
        assert_eq!(edge.root(), root, "edge of {size} and the leaves after it");
    }
    assert!(matches!(
        store.tree_frontier("acme", 614).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.tree_root("acme", 614).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.inclusion_proof("acme", 613, 613).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.consistency_proof("acme", 700, 613).await,
        Err(StoreError::NotFound(_))
    ));
}

pub async fn checkpoints_are_kept_and_listed(store: Arc<dyn Store>) {
    with_orgs(&*store, &["acme", "umbrella"]).await;
    let cp = |org: &str, size: u64| crate::SignedCheckpoint {
        org: org.into(),
        size,
        root: [size as u8; 32],
        note: format!("o/{org}\n{size}\n...\n\n— o sig\n"),
        created_at: Timestamp(T0 + size as i64),
    };
    assert_eq!(store.checkpoint("acme", None).await.unwrap(), None);
    for size in [3, 10, 7] {
        store.add_checkpoint(cp("acme", size)).await.unwrap();
    }
    store.add_checkpoint(cp("umbrella", 99)).await.unwrap();
    assert!(matches!(
        store.add_checkpoint(cp("acme", 10)).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store.checkpoint("acme", None).await.unwrap(),
        Some(cp("acme", 10))
    );
    assert_eq!(
        store.checkpoint("acme", Some(7)).await.unwrap(),
        Some(cp("acme", 7))
    );
    assert_eq!(store.checkpoint("acme", Some(8)).await.unwrap(), None);
    for (at_most, found) in [
        (2, None),
        (3, Some(3)),
        (9, Some(7)),
        (10, Some(10)),
        (u64::MAX, Some(10)),
    ] {
        assert_eq!(
            store
                .checkpoint_at_most("acme", at_most)
                .await
                .unwrap()
                .map(|c| c.size),
            found,
            "at most {at_most}"
        );
    }
    let sizes: Vec<u64> = store
        .checkpoints("acme", 3, 10)
        .await
        .unwrap()
        .iter()
        .map(|c| c.size)
        .collect();
    assert_eq!(sizes, [7, 10]);
    assert_eq!(store.checkpoints("acme", 0, 1).await.unwrap().len(), 1);
}

pub async fn settings_are_set_once(store: Arc<dyn Store>) {
    assert_eq!(store.setting("log_name").await.unwrap(), None);
    assert_eq!(
        store.init_setting("log_name", "a.example").await.unwrap(),
        "a.example"
    );
    assert_eq!(
        store.init_setting("log_name", "b.example").await.unwrap(),
        "a.example"
    );
    assert_eq!(
        store.setting("log_name").await.unwrap().as_deref(),
        Some("a.example")
    );
    // A setting that changes, with its record.
    with_orgs(&*store, &["acme"]).await;
    for v in ["30", "40"] {
        store
            .set_setting("max", v, vec![("acme".into(), simple("set"))])
            .await
            .unwrap();
        assert_eq!(store.setting("max").await.unwrap().as_deref(), Some(v));
    }
    assert_eq!(store.log_size("acme").await.unwrap(), 2);
}

pub async fn api_calls_are_tallied_by_route_and_minute_within_the_window(store: Arc<dyn Store>) {
    use trail_core::perf::{MINUTE_US, Tally, minute_of};
    with_orgs(&*store, &["acme", "umbrella"]).await;
    // The start of a minute.
    let m0 = T0 - T0.rem_euclid(MINUTE_US) + MINUTE_US;
    let call = |route: &str, status: u16, ms: f64, at: i64| {
        body(
            json!({"action": "call", "category": "api", "timestamp": Timestamp(m0 + at).to_string(),
            "actor": {"id": "a", "type": "pat"},
            "request": {"method": (route.split(' ').next().unwrap()), "route": route, "status": status, "latencyMs": ms}}),
        )
    };
    let s = 1_000_000;
    store
        .append(
            "acme",
            vec![
                call("GET /a", 200, 1.5, 0),
                call("GET /a", 503, 2.0, 10 * s),
                call("POST /b", 201, 7.0, 20 * s),
                call("GET /a", 404, 9.0, 61 * s),
                call("GET /a", 200, 9.0, 120 * s),
                simple("not a call"),
            ],
        )
        .await
        .unwrap();
    // A later append to the same minute adds to it.
    store
        .append("acme", vec![call("GET /a", 200, 0.1, 59 * s)])
        .await
        .unwrap();
    store
        .append("umbrella", vec![call("GET /a", 200, 1.0, 0)])
        .await
        .unwrap();
    let tally = |calls: &[(u16, u64)]| {
        let mut t = Tally::default();
        for (status, us) in calls {
            t.add(*status, *us);
        }
        t
    };
    let m = minute_of(Timestamp(m0));
    // The window's minutes: the first two, not the third (until is on its start).
    let got = store
        .api_call_minutes("acme", Timestamp(m0), Timestamp(m0 + 2 * MINUTE_US), 1)
        .await
        .unwrap();
    assert_eq!(
        got,
        vec![
            (
                "GET /a".to_owned(),
                vec![
                    (m, tally(&[(200, 1500), (503, 2000), (200, 100)])),
                    (m + 1, tally(&[(404, 9000)])),
                ]
            ),
            ("POST /b".to_owned(), vec![(m, tally(&[(201, 7000)]))]),
        ]
    );
    // A window within a minute reads that minute.
    let within = store
        .api_call_minutes("acme", Timestamp(m0 + 5 * s), Timestamp(m0 + 6 * s), 1)
        .await
        .unwrap();
    assert_eq!(within.len(), 2);
    assert!(within.iter().all(|(_, minutes)| minutes.len() == 1));
    // In slices: a route's first and last minute with calls stay as they are; the minutes
    // between are added up under the minute their slice starts at.
    let more: Vec<_> = (3..9)
        .map(|i| call("GET /a", 200, 1.0, i * MINUTE_US))
        .collect();
    store.append("acme", more).await.unwrap();
    let sliced = store
        .api_call_minutes("acme", Timestamp(m0), Timestamp(m0 + 9 * MINUTE_US), 4)
        .await
        .unwrap();
    let a = &sliced[0].1;
    assert_eq!(sliced[0].0, "GET /a");
    let keys: Vec<i64> = a.iter().map(|(k, _)| k - m).collect();
    assert_eq!(
        keys,
        [0, 0, 4, 8],
        "first minute, slices from 0 and 4, last minute"
    );
    assert_eq!(
        a.iter().map(|(_, t)| t.requests).sum::<u64>(),
        3 + 1 + 1 + 6
    );
    assert_eq!(a[3].1.requests, 1);
}

/// An org whose creation failed does not exist for any later write: its events can never
/// land in the log of an org created after it.
pub async fn a_failed_create_org_leaves_no_trace(store: Arc<dyn Store>) {
    // The record of the new org is appended first, then one for an org that does not exist
    // fails the transaction.
    let mut records = audit("ghost", "org.created");
    records.extend(audit("nowhere", "org.created"));
    let failed = store.create_org(org("ghost"), None, None, records).await;
    assert!(
        matches!(failed, Err(StoreError::UnknownOrg(ref o)) if o == "nowhere"),
        "{failed:?}"
    );
    assert_eq!(store.org("ghost").await.unwrap(), None);
    store
        .create_org(org("later"), None, None, audit("later", "org.created"))
        .await
        .unwrap();
    let ghost = store.append("ghost", vec![simple("lost")]).await;
    assert!(
        matches!(ghost, Err(StoreError::UnknownOrg(ref o)) if o == "ghost"),
        "{ghost:?}"
    );
    assert_eq!(actions(&*store, "later").await, ["org.created"]);
    store.append("later", vec![simple("mine")]).await.unwrap();
    assert_eq!(actions(&*store, "later").await, ["org.created", "mine"]);
}

pub async fn a_fresh_store_is_healthy(store: Arc<dyn Store>) {
    store.health().await.unwrap();
    with_orgs(&*store, &["acme"]).await;
    store.append("acme", vec![simple("a")]).await.unwrap();
    store.health().await.unwrap();
}

/// A path-only route filter costs what the org's own data warrants: another org's routes,
/// however many (here 36,000 templates of one path under methods of its own, as a store
/// could hold from before methods were checked), neither break it nor change its answer.
pub async fn other_orgs_routes_do_not_change_a_path_only_route_filter(store: Arc<dyn Store>) {
    with_orgs(&*store, &["acme", "umbrella"]).await;
    let call = |method: &str, route: &str| {
        let mut e = body(json!({
            "action": "call", "category": "api", "actor": {"id": "alice", "type": "pat"},
            "request": {"method": "GET", "route": "/", "status": 200}
        }));
        let r = e.request.as_mut().expect("a request block");
        r.method = method.to_owned();
        r.route = route.to_owned();
        e
    };
    let noise: Vec<EventBody> = (0..36_000)
        .map(|i| call(&format!("M{i}"), &format!("M{i} /v1/tenants")))
        .collect();
    store.append("umbrella", noise).await.unwrap();
    store
        .append(
            "acme",
            vec![
                call("GET", "GET /v1/tenants"),
                call("POST", "POST /v1/tenants"),
                call("GET", "GET /v1/tenants/:id"),
                call("PROPFIND", "PROPFIND /v1/tenants"),
            ],
        )
        .await
        .unwrap();
    let now = Timestamp(T0 + 86_400_000_000);
    for (q, want) in [
        ("route:/v1/tenants", 3),
        ("-route:/v1/tenants", 1),
        ("route:/v1/tenants route:/v1/tenants/:id", 4),
        (r#"route:"GET /v1/tenants""#, 1),
    ] {
        let mut filter = Filter::default();
        filter.add_query(q, now).unwrap();
        let page = store
            .query(
                "acme",
                &EventQuery {
                    filter: filter.clone(),
                    cursor: None,
                    limit: 100,
                },
            )
            .await
            .unwrap_or_else(|e| panic!("{q}: {e}"));
        assert_eq!(page.items.len(), want, "{q}");
        assert!(page.items.iter().all(|s| filter.matches(&s.event)), "{q}");
    }
    // The other org's own filter agrees with the reference semantics too: its methods are
    // not registered ones, so its path-only filter matches none of them.
    let mut filter = Filter::default();
    filter.add_query("route:/v1/tenants", now).unwrap();
    let theirs = store
        .query(
            "umbrella",
            &EventQuery {
                filter,
                cursor: None,
                limit: 10,
            },
        )
        .await
        .unwrap();
    assert!(theirs.items.is_empty());
}

/// An actor type of the platform's own (`service`, `argocd.application`) reads back as
/// written, beside the known ones, and the `actorType` filter finds it, negated too.
pub async fn actor_types_beyond_the_known_ones_are_kept_and_found(store: Arc<dyn Store>) {
    with_orgs(&*store, &["acme"]).await;
    let by = |kind: &str, id: &str| {
        body(
            json!({"action": "deploy", "actor": {"id": id, "type": kind}, "timestamp": Timestamp(T0).to_string()}),
        )
    };
    let bodies = vec![
        by("service", "billing"),
        by("user", "ana"),
        by("argocd.application", "guestbook"),
        by("service", "payments"),
        by("system", "trail"),
    ];
    let appended = store.append("acme", bodies.clone()).await.unwrap();
    let got = store.events_from("acme", 0, 100).await.unwrap();
    for ((g, b), a) in got.iter().zip(bodies).zip(&appended) {
        assert_eq!(g.event, Event::seal("acme", a.seq, a.received_at, b));
    }
    assert_eq!(got[0].event.actor.kind.as_str(), "service");
    assert_eq!(got[1].event.actor.kind, trail_core::ActorType::User);
    let now = Timestamp(T0 + 60_000_000);
    let all: Vec<StoredEvent> = got.clone();
    for (q, want) in [
        ("actorType:service", vec!["billing", "payments"]),
        ("actorType:argocd.application", vec!["guestbook"]),
        ("actorType:user", vec!["ana"]),
        ("actorType:kargo", vec![]),
        ("-actorType:service", vec!["ana", "guestbook", "trail"]),
        (
            "-actorType:user",
            vec!["billing", "guestbook", "payments", "trail"],
        ),
        (
            "actorType:service actorType:system",
            vec!["billing", "payments", "trail"],
        ),
    ] {
        let mut filter = Filter::default();
        filter.add_query(q, now).unwrap();
        let found = page_all(&*store, "acme", &filter, 2).await;
        assert_eq!(found, reference(&all, &filter), "query {q:?}");
        let mut ids: Vec<String> = all
            .iter()
            .filter(|e| found.contains(&e.event.seq))
            .map(|e| e.event.actor.id.clone())
            .collect();
        ids.sort();
        assert_eq!(ids, want, "query {q:?}");
    }
}

pub async fn histograms_count_what_the_filter_passes_per_slice(store: Arc<dyn Store>) {
    with_orgs(&*store, &["acme", "umbrella"]).await;
    let minute = 60_000_000;
    // The start of a minute: slices of a window of whole minutes are those minutes.
    let t0 = T0 - T0.rem_euclid(minute) + minute;
    // alice at minutes 0, 1, 1, 5; bob at minute 1; one at minute 10 (outside the window).
    let at = |actor: &str, m: i64| {
        body(
            json!({"action": "a", "actor": {"id": actor, "type": "user"}, "timestamp": Timestamp(t0 + m * minute).to_string()}),
        )
    };
    let bodies = vec![
        at("alice", 0),
        at("alice", 1),
        at("bob", 1),
        at("alice", 1),
        at("alice", 5),
        at("alice", 10),
    ];
    store.append("acme", bodies.clone()).await.unwrap();
    store.append("umbrella", bodies).await.unwrap();
    let (since, until) = (Timestamp(t0), Timestamp(t0 + 6 * minute));
    let all = Filter::default();
    assert_eq!(
        store
            .histogram("acme", &all, since, until, 6)
            .await
            .unwrap(),
        vec![1, 3, 0, 0, 0, 1]
    );
    assert_eq!(
        store
            .histogram("acme", &all, since, until, 2)
            .await
            .unwrap(),
        vec![4, 1]
    );
    let mut alice = Filter::default();
    alice.add_query("actor:alice", Timestamp(T0)).unwrap();
    assert_eq!(
        store
            .histogram("acme", &alice, since, until, 3)
            .await
            .unwrap(),
        vec![3, 0, 1]
    );
    let mut nobody = Filter::default();
    nobody.add_query("actor:nobody", Timestamp(T0)).unwrap();
    assert_eq!(
        store
            .histogram("acme", &nobody, since, until, 3)
            .await
            .unwrap(),
        vec![0, 0, 0]
    );
    // The filter's own window narrows the slices' counts, never moves them.
    let late = Filter {
        since: Some(Timestamp(t0 + 2 * minute)),
        ..Filter::default()
    };
    assert_eq!(
        store
            .histogram("acme", &late, since, until, 6)
            .await
            .unwrap(),
        vec![0, 0, 0, 0, 0, 1]
    );
}

/// Without terms a histogram counts whole minutes from per-minute tallies and reads only the
/// partial minutes at its ends: the same counts as reading every event, for windows that
/// start and end anywhere within a minute.
pub async fn a_histogram_of_every_event_equals_one_that_reads_them(store: Arc<dyn Store>) {
    with_orgs(&*store, &["acme", "umbrella"]).await;
    let second = 1_000_000;
    let at = |s: i64| {
        body(json!({"action": "a", "actor": {"id": "x", "type": "user"},
                    "timestamp": Timestamp(T0 + s * second).to_string()}))
    };
    // Events every 7 seconds over 40 minutes, in two appends (the second adds to minutes the
    // first began), and a few in another org's log.
    let times: Vec<i64> = (0..2400).step_by(7).collect();
    let (a, b) = times.split_at(times.len() / 2);
    store
        .append("acme", a.iter().map(|s| at(*s)).collect())
        .await
        .unwrap();
    store
        .append("acme", b.iter().map(|s| at(*s)).collect())
        .await
        .unwrap();
    store
        .append("umbrella", vec![at(30), at(90)])
        .await
        .unwrap();
    let every = Filter::default();
    let mut reads = Filter::default();
    reads.add_query("-actor:nobody", Timestamp(T0)).unwrap();
    for (from, to, buckets) in [
        (0, 2400, 60),
        (13, 2389, 7),
        (59, 61, 1),
        (61, 1801, 20),
        (-300, 3000, 200),
        (30, 630, 10),
    ] {
        let (since, until) = (Timestamp(T0 + from * second), Timestamp(T0 + to * second));
        let fast = store
            .histogram("acme", &every, since, until, buckets)
            .await
            .unwrap();
        let read = store
            .histogram("acme", &reads, since, until, buckets)
            .await
            .unwrap();
        assert_eq!(fast, read, "[{from}, {to}) s in {buckets}");
        let inside = times.iter().filter(|s| (from..to).contains(*s)).count() as u64;
        assert_eq!(fast.iter().sum::<u64>(), inside, "[{from}, {to}) s");
    }
}

/// The live tail waits on [`Store::watch_log`] instead of polling: it must be woken by every
/// commit that appends to its org (ingest, and a change's record), with the events readable
/// by then, and not by another org's.
pub async fn a_log_watch_wakes_after_each_commit_to_its_org_only(store: Arc<dyn Store>) {
    with_orgs(&*store, &["acme", "umbrella"]).await;
    let mut acme = store.watch_log("acme");
    acme.borrow_and_update();
    store
        .append("umbrella", vec![simple("other")])
        .await
        .unwrap();
    assert!(
        !acme.has_changed().unwrap(),
        "another org's commit wakes nobody here"
    );
    store
        .append("acme", vec![simple("a"), simple("b")])
        .await
        .unwrap();
    assert!(acme.has_changed().unwrap(), "a commit to acme wakes it");
    assert_eq!(*acme.borrow_and_update(), 2);
    assert_eq!(store.events_from("acme", 0, 10).await.unwrap().len(), 2);
    // A retry that stores nothing is not growth; a change's record is.
    let retry =
        |id: &str| body(json!({"id": id, "action": "a", "actor": {"id": "x", "type": "user"}}));
    store.append("acme", vec![retry("evt-1")]).await.unwrap();
    acme.borrow_and_update();
    store.append("acme", vec![retry("evt-1")]).await.unwrap();
    assert!(!acme.has_changed().unwrap(), "a duplicate appends nothing");
    let i = crate::Instance {
        org: "acme".into(),
        id: "argocd-prod".into(),
        name: "prod".into(),
        kind: "argocd".into(),
        created_at: Timestamp(1),
    };
    store
        .create_instance(i, vec![("acme".into(), simple("instance.created"))])
        .await
        .unwrap();
    assert!(acme.has_changed().unwrap(), "a change's record wakes it");
    assert_eq!(*acme.borrow_and_update(), 4);
    // A second watcher of the same log is woken too.
    let mut again = store.watch_log("acme");
    again.borrow_and_update();
    store.append("acme", vec![simple("c")]).await.unwrap();
    assert!(again.has_changed().unwrap() && acme.has_changed().unwrap());
}

fn signer() -> Arc<trail_core::checkpoint::SignerKey> {
    Arc::new(trail_core::checkpoint::SignerKey::from_seed("trail.test", [9; 32]).unwrap())
}

/// Seed 002's SIEM pull, against writers that commit concurrently and send events whose
/// timestamps go back in time: pulled by cursor, each event comes exactly once, in seq
/// order, and every page's checkpoint covers it.
pub async fn an_export_pulls_every_event_once_in_seq_order_while_writers_append(
    store: Arc<dyn Store>,
) {
    with_orgs(&*store, &["acme", "other"]).await;
    store.sign_logs(signer(), Default::default()).await.unwrap();
    let writers: Vec<_> = (0..6u64)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for i in 0..12u64 {
                    let batch: Vec<EventBody> = (0..1 + (w + i) % 6)
                        .map(|j| {
                            let id = format!("w{w}-{i}-{j}");
                            // Late arrivals: some events say they happened minutes ago.
                            let back = ((w * 7 + i * 3 + j) % 5) as i64 * 60_000_000;
                            ids.push(id.clone());
                            body(json!({"id": id, "action": "synced",
                                        "timestamp": Timestamp(T0 - back).to_string(),
                                        "actor": {"id": format!("writer-{w}"), "type": "api_key"}}))
                        })
                        .collect();
                    store.append("acme", batch).await.unwrap();
                    store.append("other", vec![simple("noise")]).await.unwrap();
                    tokio::task::yield_now().await;
                }
                ids
            })
        })
        .collect();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let puller = {
        let (store, done) = (store.clone(), done.clone());
        tokio::spawn(async move {
            let (mut from, mut got) = (0u64, Vec::<StoredEvent>::new());
            loop {
                let finished = done.load(std::sync::atomic::Ordering::SeqCst);
                let page = store
                    .export("acme", &Filter::default(), from, 7, 50)
                    .await
                    .unwrap();
                if let Some(cp) = &page.checkpoint {
                    assert!(page.next <= cp.size, "the checkpoint covers the page");
                    assert_eq!(cp.org, "acme");
                }
                let seqs: Vec<u64> = page.items.iter().map(|s| s.event.seq).collect();
                assert_eq!(
                    seqs,
                    (from..page.next).collect::<Vec<_>>(),
                    "no filter: every seq"
                );
                from = page.next;
                got.extend(page.items);
                if finished && from == store.log_size("acme").await.unwrap() {
                    return got;
                }
                tokio::task::yield_now().await;
            }
        })
    };
    let mut written = HashSet::new();
    for w in writers {
        written.extend(w.await.unwrap());
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let got = puller.await.unwrap();
    let seqs: Vec<u64> = got.iter().map(|s| s.event.seq).collect();
    assert_eq!(seqs, (0..written.len() as u64).collect::<Vec<_>>());
    let ids: HashSet<String> = got
        .iter()
        .filter_map(|s| s.event.client_id.clone())
        .collect();
    assert_eq!(ids, written, "every event once");
    assert!(
        got.windows(2)
            .any(|w| w[1].event.timestamp < w[0].event.timestamp),
        "the pull received events older than ones before them"
    );
}

pub async fn an_export_filters_is_bounded_and_starts_at_a_time_of_receipt(store: Arc<dyn Store>) {
    with_orgs(&*store, &["acme"]).await;
    let first = store.append("acme", sample_events(40)).await.unwrap();
    // Nothing is exported that no checkpoint covers.
    let unsigned = store
        .export("acme", &Filter::default(), 0, 100, 1000)
        .await
        .unwrap();
    assert!(unsigned.items.is_empty() && unsigned.checkpoint.is_none());
    assert_eq!(unsigned.next, 0);
    store.sign_logs(signer(), Default::default()).await.unwrap();
    let mut more = sample_events(60);
    for e in &mut more {
        e.client_id = None; // the same ids as the first batch's: they would be retries
    }
    let second = store.append("acme", more).await.unwrap();
    let all: Vec<_> = first.iter().chain(&second).collect();

    let mut filter = Filter::default();
    filter
        .add_query("action:deleted -status:5xx", Timestamp(T0))
        .unwrap();
    let want: Vec<u64> = store
        .events_from("acme", 0, 1000)
        .await
        .unwrap()
        .iter()
        .filter(|s| filter.matches(&s.event))
        .map(|s| s.event.seq)
        .collect();
    assert!(!want.is_empty() && want.len() < all.len());
    let (mut from, mut got, mut empty_pages) = (0, Vec::new(), 0);
    while from < 100 {
        // At most 9 seqs read per page, at most 2 events returned.
        let page = store.export("acme", &filter, from, 2, 9).await.unwrap();
        assert!(
            page.next > from && page.next <= from + 9,
            "the cursor moves on"
        );
        assert_eq!(page.checkpoint.as_ref().unwrap().size, 100);
        assert_eq!(
            Some(page.following.unwrap()),
            all.get(page.next as usize - 1).map(|a| a.received_at),
            "the time of receipt of the last seq read"
        );
        empty_pages += usize::from(page.items.is_empty());
        got.extend(page.items.iter().map(|s| s.event.seq));
        from = page.next;
    }
    assert_eq!(got, want);
    assert!(
        empty_pages > 0,
        "a page that matched nothing still moved the cursor"
    );
    let done = store.export("acme", &filter, 100, 2, 9).await.unwrap();
    assert!(done.items.is_empty() && done.next == 100);
    assert_eq!(done.following, Some(second[59].received_at));

    // Times of receipt: the first seq received at or after each.
    let received_second = second[0].received_at;
    assert!(received_second > first[0].received_at);
    for (at, seq) in [
        (Timestamp(0), 0),
        (first[0].received_at, 0),
        (Timestamp(first[0].received_at.micros() + 1), 40),
        (received_second, 40),
        (Timestamp(received_second.micros() + 1), 100),
    ] {
        assert_eq!(store.seq_received_since("acme", at).await.unwrap(), seq);
    }
    assert!(matches!(
        store.export("nope", &filter, 0, 2, 9).await,
        Err(StoreError::UnknownOrg(_))
    ));
}

pub async fn pruning_removes_a_prefix_and_what_remains_still_proves(store: Arc<dyn Store>) {
    use trail_core::merkle::{self, InMemory};
    with_orgs(&*store, &["acme", "umbrella"]).await;
    store.append("umbrella", sample_events(3)).await.unwrap();
    store
        .append("acme", (0..700).map(|i| simple(&format!("e{i}"))).collect())
        .await
        .unwrap();
    store.extend_tiles("acme", 0, 700).await.unwrap();
    let leaves: Vec<[u8; 32]> = store
        .events_from("acme", 0, 1000)
        .await
        .unwrap()
        .iter()
        .map(|s| s.hash)
        .collect();
    let core = InMemory(&leaves);
    let root = merkle::root(&core, 700).unwrap();
    store
        .add_checkpoint(crate::SignedCheckpoint {
            org: "acme".into(),
            size: 700,
            root,
            note: "o/acme\n700\n...\n\n— o sig\n".into(),
            created_at: Timestamp(T0),
        })
        .await
        .unwrap();
    let frontier = store.tree_frontier("acme", 512).await.unwrap();
    let fresh = store.retention("acme").await.unwrap();
    assert_eq!(
        (fresh.days, fresh.legal_hold, fresh.pruned_below),
        (None, false, 0)
    );

    // Only whole tiles, only what a checkpoint covers, never under legal hold.
    for below in [300, 768] {
        assert!(
            store.prune("acme", below, Vec::new()).await.is_err(),
            "{below}"
        );
    }
    let held = store
        .set_retention("acme", Some(Some(30)), Some(true), Vec::new())
        .await
        .unwrap();
    assert_eq!((held.days, held.legal_hold), (Some(30), true));
    assert!(store.prune("acme", 512, Vec::new()).await.is_err());
    assert_eq!(
        store.events_from("acme", 0, 1).await.unwrap()[0].event.seq,
        0
    );
    store
        .set_retention("acme", None, Some(false), Vec::new())
        .await
        .unwrap();

    // The prune and its record commit together.
    let pruned = store
        .prune("acme", 512, vec![("acme".into(), simple("pruned"))])
        .await
        .unwrap();
    assert_eq!((pruned.from, pruned.to), (0, 512));
    assert_eq!(store.retention("acme").await.unwrap().pruned_below, 512);
    let rest = store.events_from("acme", 0, 1000).await.unwrap();
    assert_eq!(rest.first().unwrap().event.seq, 512);
    assert_eq!(
        rest.last().unwrap().event.seq,
        700,
        "the record of the prune"
    );
    assert_eq!(rest.last().unwrap().event.action, "pruned");
    assert_eq!(store.log_size("acme").await.unwrap(), 701);
    // The per-minute tallies count what remains, and nothing that went.
    let now = Timestamp::from_system_time(std::time::SystemTime::now());
    let day = 86_400_000_000;
    let counted: u64 = store
        .histogram(
            "acme",
            &Filter::default(),
            Timestamp(now.micros() - day),
            Timestamp(now.micros() + day),
            48,
        )
        .await
        .unwrap()
        .iter()
        .sum();
    assert_eq!(counted, 189);
    // Pruning again to the same place removes nothing; another org is untouched.
    assert_eq!(
        store.prune("acme", 512, Vec::new()).await.unwrap(),
        crate::Pruned { from: 512, to: 512 }
    );
    assert_eq!(store.events_from("umbrella", 0, 10).await.unwrap().len(), 3);

    // What remains still proves: roots, the edge at the prune, inclusion of what is kept.
    assert_eq!(store.tree_root("acme", 700).await.unwrap(), root);
    assert_eq!(store.tree_frontier("acme", 512).await.unwrap(), frontier);
    for seq in [512u64, 600, 699] {
        let proof = store.inclusion_proof("acme", seq, 700).await.unwrap();
        assert!(merkle::verify_inclusion(
            &leaves[seq as usize],
            seq,
            700,
            &proof,
            &root
        ));
    }
    assert!(matches!(
        store.inclusion_proof("acme", 100, 700).await,
        Err(StoreError::NotFound(_))
    ));
    // Neither the list nor the ids go back.
    let page = store
        .query(
            "acme",
            &EventQuery {
                limit: 1000,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(page.items.len(), 189);
    let more = store.append("acme", vec![simple("after")]).await.unwrap();
    assert_eq!(more[0].seq, 701);
}

/// After a prune, the per-minute tallies of API calls keep every minute from that of the
/// oldest event that remains, wherever in the log it lies: in the block the prune cuts into,
/// in a whole block after it, or among the newest events.
pub async fn a_prune_keeps_the_call_minutes_of_the_oldest_event_that_remains(
    store: Arc<dyn Store>,
) {
    use trail_core::perf::{MINUTE_US, minute_of};
    with_orgs(&*store, &["acme"]).await;
    let m0 = T0 - T0.rem_euclid(MINUTE_US) + MINUTE_US;
    // Minute 20 for all but one event in each part: minute 1 at seq 0, 2 at seq 300, 3 at
    // seq 1500, 4 at seq 2050.
    let minute = |seq: u64| match seq {
        0 => 1,
        300 => 2,
        1500 => 3,
        2050 => 4,
        _ => 20,
    };
    let calls = (0..2100u64)
        .map(|seq| {
            body(json!({"action": "call", "category": "api",
                "timestamp": Timestamp(m0 + minute(seq) * MINUTE_US).to_string(),
                "actor": {"id": "a", "type": "pat"},
                "request": {"method": "GET", "route": "GET /a", "status": 200, "latencyMs": 1.0}}))
        })
        .collect();
    store.append("acme", calls).await.unwrap();
    sign_all(&*store, "acme").await;
    let minutes = || async {
        let got = store
            .api_call_minutes("acme", Timestamp(m0), Timestamp(m0 + 30 * MINUTE_US), 1)
            .await
            .unwrap();
        got.iter()
            .flat_map(|(_, m)| m.iter().map(|(k, _)| k - minute_of(Timestamp(m0))))
            .collect::<Vec<i64>>()
    };
    assert_eq!(minutes().await, [1, 2, 3, 4, 20]);
    for (below, kept) in [
        (256, [2, 3, 4, 20].as_slice()),
        (1024, &[3, 4, 20]),
        (2048, &[4, 20]),
    ] {
        store.prune("acme", below, Vec::new()).await.unwrap();
        assert_eq!(minutes().await, kept, "pruned below {below}");
    }
}

/// Tiles and a checkpoint over the whole of `org`'s log, so it may be pruned anywhere.
async fn sign_all(store: &dyn Store, org: &str) {
    use trail_core::merkle::{self, InMemory};
    let size = store.log_size(org).await.unwrap();
    store.extend_tiles(org, 0, size).await.unwrap();
    let mut leaves = Vec::new();
    while (leaves.len() as u64) < size {
        let page = store
            .events_from(org, leaves.len() as u64, 1000)
            .await
            .unwrap();
        leaves.extend(page.iter().map(|s| s.hash));
    }
    store
        .add_checkpoint(crate::SignedCheckpoint {
            org: org.into(),
            size,
            root: merkle::root(&InMemory(&leaves), size).unwrap(),
            note: format!("o/{org}\n{size}\n...\n\n— o sig\n"),
            created_at: Timestamp(T0),
        })
        .await
        .unwrap();
}

/// A histogram of buckets shorter than a minute counts the events of a whole block in one
/// bucket without reading them; a block a prune cut into, from where the log now starts.
pub async fn a_histogram_counts_what_a_prune_left_of_a_block(store: Arc<dyn Store>) {
    with_orgs(&*store, &["acme"]).await;
    // 0.9 ms apart: the first block lies within the first second.
    let at = |seq: i64| T0 + seq * 900;
    store
        .append(
            "acme",
            (0..2100)
                .map(|i| {
                    body(json!({"action": "a", "actor": {"id": "x", "type": "user"},
                                "timestamp": Timestamp(at(i)).to_string()}))
                })
                .collect(),
        )
        .await
        .unwrap();
    sign_all(&*store, "acme").await;
    let second = 1_000_000;
    for below in [0, 256, 768, 1280] {
        store.prune("acme", below, Vec::new()).await.unwrap();
        let want: Vec<u64> = (0..10)
            .map(|b| {
                (below as i64..2100)
                    .filter(|&i| (b * second..(b + 1) * second).contains(&(at(i) - T0)))
                    .count() as u64
            })
            .collect();
        let got = store
            .histogram(
                "acme",
                &Filter::default(),
                Timestamp(T0),
                Timestamp(T0 + 10 * second),
                10,
            )
            .await
            .unwrap();
        assert_eq!(got, want, "pruned below {below}");
    }
}
