//! The API through the router (no sockets): authentication and authorization for every
//! credential kind, ingest, reads, management, and the recording of every call, with a
//! problem+json answer for every bad input.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{Request, StatusCode, header};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use trail_core::scope::{Role, preset};
use trail_core::{Scope, Timestamp};
use trail_server::auth::{CredentialSpec, mint};
use trail_server::routes::OPERATIONS;
use trail_server::{AppState, app};
use trail_store::{Bootstrap, Org, SqliteStore, Store, StoredEvent, TokenKind, User};

const SEED_002: &str = r#"{"action":"deleted","actor":{"id":"Sarah Brown@akuity.io","ip":"132.226.61.247","type":"api_key"},"count":9,"details":{"actionType":"DELETE","message":"Resource successfully created","patch":""},"lastOccurredTimestamp":"2025-11-21 16:26:40.13921 +0000 UTC","object":{"id":{"group":"argoproj.io","kind":"Cluster","name":"dev-team"},"parentId":{"applicationName":"web-app","name":"","parentName":""},"type":"custom_role"},"timestamp":"2025-11-21 16:26:40.13921 +0000 UTC"}"#;

const NOW: Timestamp = Timestamp(1_763_740_000_000_000);

/// How long a test waits for what it expects to arrive (an event on a live tail, the end of
/// a stream): far longer than it takes, so that a slow, busy machine passes as a fast one
/// does. Only a failing run waits it out.
const PATIENCE: std::time::Duration = std::time::Duration::from_secs(60);

/// Two orgs: `acme` (the platform org; its owner is a platform admin) and `umbrella`.
struct Harness {
    app: Router,
    state: AppState,
    store: Arc<SqliteStore>,
    /// acme's owner: admin-full + orgs:admin.
    owner: String,
    /// acme, a PAT with logs:write only.
    writer: String,
    /// umbrella's owner: admin-full.
    other: String,
    _dir: tempfile::TempDir,
}

fn owner_of(org: &str) -> (String, String) {
    (format!("usr_{org}_owner"), format!("owner@{org}.io"))
}

/// A credential of `kind` for `org`, made straight in the store: PATs and break-glass
/// tokens belong to the org's owner.
async fn credential(
    store: &dyn Store,
    kind: TokenKind,
    org: &str,
    scopes: &[Scope],
    expires: Option<Timestamp>,
    revoked: bool,
) -> String {
    let (user_id, email) = owner_of(org);
    let mut m = mint(CredentialSpec {
        kind,
        org: org.into(),
        owner: if kind == TokenKind::ApiKey {
            "ci-key".into()
        } else {
            email
        },
        user_id: (kind != TokenKind::ApiKey).then_some(user_id),
        name: "t".into(),
        description: String::new(),
        scopes: scopes.to_vec(),
        instance: None,
        created_by: "test".into(),
        created_at: NOW,
        expires_at: expires,
        reach: trail_store::Reach::Own,
    });
    if revoked {
        m.token.revoked_at = Some(NOW);
    }
    let id = m.token.id.clone();
    store.create_token(m.token, Vec::new()).await.unwrap();
    match kind {
        TokenKind::ApiKey => format!("{id}:{}", m.secret),
        _ => m.secret,
    }
}

async fn token(
    store: &dyn Store,
    org: &str,
    scopes: &[Scope],
    expires: Option<Timestamp>,
    revoked: bool,
) -> String {
    credential(store, TokenKind::Pat, org, scopes, expires, revoked).await
}

fn user(org: &str) -> User {
    let (id, email) = owner_of(org);
    User {
        id,
        email,
        password_hash: None,
        platform_admin: org == "acme",
        created_at: NOW,
    }
}

async fn harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let mut full = preset("admin-full").unwrap().to_vec();
    full.push(Scope::OrgsAdmin);
    let org = |id: &str| Org {
        id: id.into(),
        name: id.into(),
        created_at: NOW,
    };
    let boot = mint(CredentialSpec {
        kind: TokenKind::Pat,
        org: "acme".into(),
        owner: "owner@acme.io".into(),
        user_id: Some("usr_acme_owner".into()),
        name: "bootstrap".into(),
        description: String::new(),
        scopes: full,
        instance: None,
        created_by: "test".into(),
        created_at: NOW,
        expires_at: None,
        reach: trail_store::Reach::Own,
    });
    store
        .bootstrap(Bootstrap {
            org: org("acme"),
            owner: user("acme"),
            token: boot.token,
        })
        .await
        .unwrap();
    store
        .create_org(org("umbrella"), Some(user("umbrella")), None, Vec::new())
        .await
        .unwrap();
    let key = trail_core::checkpoint::SignerKey::from_seed("trail.test", [5; 32]).unwrap();
    let mut state = AppState::new(store.clone(), Arc::new(key)).await.unwrap();
    state.archives = Some(Arc::new(trail_server::archive::Archives::new(
        dir.path().join("archives"),
    )));
    trail_server::log::Heads::new(store.clone(), state.log_key.clone(), None)
        .start_signing()
        .await
        .unwrap();
    // The budget of failed attempts refills far slower than any test runs, so what a test
    // sees of it does not depend on how fast a busy machine runs it.
    state.throttle = Arc::new(trail_server::auth::FailureThrottle::new(
        20,
        std::time::Duration::from_secs(3600),
    ));
    Harness {
        writer: token(&*store, "acme", &[Scope::LogsWrite], None, false).await,
        other: token(
            &*store,
            "umbrella",
            preset("admin-full").unwrap(),
            None,
            false,
        )
        .await,
        owner: boot.secret,
        app: app(state.clone()),
        state,
        store,
        _dir: dir,
    }
}

/// How a request authenticates.
#[derive(Clone, Debug)]
enum Cred {
    None,
    /// A PAT or break-glass token, or `id:secret` of an API key (sent as Basic).
    Token(String),
    /// A console session: the cookie value and its CSRF token.
    Session {
        cookie: String,
        csrf: String,
    },
}

impl Cred {
    fn of(token: &str) -> Cred {
        Cred::Token(token.to_owned())
    }
}

#[derive(Debug)]
struct Reply {
    status: StatusCode,
    content_type: String,
    set_cookie: Option<String>,
    body: Value,
}

impl Harness {
    async fn send(&self, req: Request<Body>) -> Reply {
        send_to(&self.app, req).await
    }

    async fn call(&self, method: &str, uri: &str, cred: &Cred, body: Option<Value>) -> Reply {
        self.send(request(method, uri, cred, body)).await
    }

    /// A GET with this `Authorization` header, verbatim.
    async fn get_with_authorization(&self, uri: &str, authorization: &str) -> Reply {
        let req = Request::get(uri).header(header::AUTHORIZATION, authorization);
        self.send(req.body(Body::empty()).unwrap()).await
    }

    async fn get(&self, uri: &str, token: Option<&str>) -> Reply {
        let cred = token.map_or(Cred::None, Cred::of);
        self.call("GET", uri, &cred, None).await
    }

    async fn post(
        &self,
        uri: &str,
        token: &str,
        content_type: &str,
        body: impl Into<Body>,
    ) -> Reply {
        self.send(
            Request::post(uri)
                .header(header::AUTHORIZATION, format!("Bearer {token}"))
                .header(header::CONTENT_TYPE, content_type)
                .body(body.into())
                .unwrap(),
        )
        .await
    }

    async fn ingest(&self, org: &str, events: Value) -> Reply {
        self.post(
            &format!("/v1/orgs/{org}/events"),
            &self.owner,
            "application/json",
            events.to_string(),
        )
        .await
    }

    /// Every stored event of an org, read straight from the store.
    async fn stored(&self, org: &str) -> Vec<StoredEvent> {
        self.store.events_from(org, 0, 100_000).await.unwrap()
    }

    /// Invites a member (as the org's owner), who accepts with a password; returns the
    /// invitation's answer.
    /// Invites `email` to `org` (acme's or umbrella's owner inviting).
    async fn invite(&self, org: &str, email: &str, role: &str) -> Reply {
        let admin = if org == "acme" {
            &self.owner
        } else {
            &self.other
        };
        self.call(
            "POST",
            &format!("/v1/orgs/{org}/members"),
            &Cred::of(admin),
            Some(json!({"email": email, "role": role})),
        )
        .await
    }

    /// Invites `email` to `org`, and accepts as them: a new account with the password
    /// "correct horse battery", or an existing one that has it.
    async fn invited(&self, org: &str, email: &str, role: &str) -> Value {
        let added = self.invite(org, email, role).await;
        assert_eq!(added.status, StatusCode::CREATED, "{:?}", added.body);
        let token = added.body["invitation"]["token"].as_str().unwrap();
        let accepted = self.accept(token, "correct horse battery").await;
        assert_eq!(accepted.status, StatusCode::OK, "{:?}", accepted.body);
        let mut member = added.body;
        member["userId"] = accepted.body["userId"].clone();
        member
    }

    async fn accept(&self, token: &str, password: &str) -> Reply {
        self.call(
            "POST",
            "/v1/invitations/accept",
            &Cred::None,
            Some(json!({"token": token, "password": password})),
        )
        .await
    }

    /// Invites a member, who accepts with a password and signs in.
    async fn signed_in(&self, org: &str, email: &str, role: &str) -> Cred {
        self.invited(org, email, role).await;
        self.sign_in(email, "correct horse battery")
            .await
            .expect("signs in")
    }

    async fn sign_in(&self, email: &str, password: &str) -> Result<Cred, Reply> {
        self.session_with(json!({"email": email, "password": password}))
            .await
    }

    /// A console session signed in with a personal access token.
    async fn sign_in_with_token(&self, token: &str) -> Result<Cred, Reply> {
        self.session_with(json!({ "token": token })).await
    }

    async fn session_with(&self, body: Value) -> Result<Cred, Reply> {
        let r = self
            .call("POST", "/v1/session", &Cred::None, Some(body))
            .await;
        if r.status != StatusCode::OK {
            return Err(r);
        }
        let cookie = r
            .set_cookie
            .as_deref()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .split_once('=')
            .unwrap()
            .1
            .to_owned();
        Ok(Cred::Session {
            cookie,
            csrf: r.body["csrfToken"].as_str().unwrap().to_owned(),
        })
    }
}

fn request(method: &str, uri: &str, cred: &Cred, body: Option<Value>) -> Request<Body> {
    let mut req = Request::builder().method(method).uri(uri);
    match cred {
        Cred::None => {}
        Cred::Token(t) => {
            req = match t.split_once(':') {
                Some((id, secret)) if t.starts_with("key_") => {
                    use base64::Engine;
                    let b =
                        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
                    req.header(header::AUTHORIZATION, format!("Basic {b}"))
                }
                _ => req.header(header::AUTHORIZATION, format!("Bearer {t}")),
            }
        }
        Cred::Session { cookie, csrf } => {
            req = req
                .header(header::COOKIE, format!("trail_session={cookie}"))
                .header("x-csrf-token", csrf);
        }
    }
    match body {
        Some(b) => req
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(b.to_string()))
            .unwrap(),
        None => req.body(Body::empty()).unwrap(),
    }
}

async fn send_to(app: &Router, req: Request<Body>) -> Reply {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let (content_type, set_cookie) = {
        let header_text = |name| {
            resp.headers()
                .get(name)
                .map(|v: &header::HeaderValue| v.to_str().unwrap().to_owned())
        };
        (
            header_text(header::CONTENT_TYPE).unwrap_or_default(),
            header_text(header::SET_COOKIE),
        )
    };
    if content_type.starts_with("text/event-stream") {
        // An endless stream: the status is the answer.
        return Reply {
            status,
            content_type,
            set_cookie,
            body: Value::Null,
        };
    }
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()));
    Reply {
        status,
        content_type,
        set_cookie,
        body,
    }
}

fn assert_problem(r: &Reply, status: u16, detail: &str) {
    assert_eq!(r.status.as_u16(), status, "{:?}", r.body);
    assert_eq!(r.content_type, "application/problem+json");
    assert_eq!(r.body["status"], status);
    assert!(r.body["type"].as_str().unwrap().starts_with("/problems/"));
    let got = r.body["detail"].as_str().unwrap();
    assert!(got.contains(detail), "detail {got:?} lacks {detail:?}");
}

fn event(action: &str) -> Value {
    json!({"action": action, "actor": {"id": "alice", "type": "user"}})
}

#[tokio::test]
async fn seed_002_sample_is_accepted_and_read_back() {
    let h = harness().await;
    let r = h
        .ingest(
            "acme",
            serde_json::from_str(&format!("[{SEED_002}]")).unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["accepted"], 1);
    let item = &r.body["items"][0];
    assert_eq!(item["seq"], 0);
    let stored = h.stored("acme").await;
    assert_eq!(item["hash"], hex::encode(stored[0].hash));
    assert_eq!(
        stored[0].hash,
        trail_core::canonical::leaf_hash(&stored[0].event)
    );

    let page = h
        .get("/v1/orgs/acme/audit-logs?category=app", Some(&h.owner))
        .await;
    let rec = &page.body["items"][0];
    assert_eq!(rec["id"], item["id"]);
    assert_eq!(rec["actor"]["id"], "Sarah Brown@akuity.io");
    assert_eq!(rec["object"]["id"]["kind"], "Cluster");
    assert_eq!(rec["object"]["parentId"]["applicationName"], "web-app");
    assert_eq!(rec["details"]["actionType"], "DELETE");
    assert_eq!(rec["count"], 9);
    assert_eq!(rec["timestamp"], "2025-11-21T16:26:40.139210Z");
    assert_eq!(rec["category"], "app");
}

#[tokio::test]
async fn a_batch_keeps_its_valid_events_and_reports_the_others_by_index() {
    let h = harness().await;
    let r = h
        .ingest("acme", json!([event("a"), {"action": 5, "actor": {"id": "x", "type": "user"}}, event("b"), {"action": "c"}]))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        (r.body["accepted"].clone(), r.body["rejected"].clone()),
        (json!(2), json!(2))
    );
    assert_eq!(r.body["items"][0]["index"], 0);
    assert_eq!(r.body["items"][1]["index"], 2);
    assert_eq!(r.body["items"][1]["seq"], 1);
    assert_eq!(r.body["errors"][0]["index"], 1);
    assert_eq!(r.body["errors"][0]["field"], "action");
    assert_eq!(r.body["errors"][1]["index"], 3);
    assert!(
        r.body["errors"][1]["detail"]
            .as_str()
            .unwrap()
            .contains("missing field `actor`")
    );
    let actions: Vec<String> = h
        .stored("acme")
        .await
        .into_iter()
        .filter(|s| s.event.category == "app")
        .map(|s| s.event.action)
        .collect();
    assert_eq!(actions, ["a", "b"]);

    let none = h.ingest("acme", json!([{"action": "x"}])).await;
    assert_problem(&none, 422, "none of the 1 events is valid");
    assert_eq!(none.body["errors"][0]["index"], 0);
}

#[tokio::test]
async fn ndjson_lines_are_events_and_a_bad_line_is_its_own_error() {
    let h = harness().await;
    let body = format!("{}\nnot json\n\n{}\n", event("a"), event("b"));
    let r = h
        .post(
            "/v1/orgs/acme/events",
            &h.owner,
            "application/x-ndjson",
            body,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["accepted"], 2);
    assert_eq!(r.body["errors"][0]["index"], 1);
    assert!(
        r.body["errors"][0]["detail"]
            .as_str()
            .unwrap()
            .starts_with("line 2: not JSON")
    );
}

#[tokio::test]
async fn a_retried_id_is_stored_once() {
    let h = harness().await;
    let e = json!([{"id": "order-1", "action": "a", "actor": {"id": "u", "type": "user"}}]);
    let first = h.ingest("acme", e.clone()).await;
    let again = h.ingest("acme", e).await;
    assert_eq!(again.body["items"][0]["duplicate"], true);
    assert_eq!(again.body["duplicates"], 1);
    assert_eq!(again.body["accepted"], 0);
    assert_eq!(again.body["items"][0]["seq"], first.body["items"][0]["seq"]);
    assert_eq!(
        again.body["items"][0]["hash"],
        first.body["items"][0]["hash"]
    );
    // The same id for a different event is refused, naming the earlier event.
    let other = h
        .ingest(
            "acme",
            json!([event("b"), {"id": "order-1", "action": "changed", "actor": {"id": "u", "type": "user"}}]),
        )
        .await;
    assert_eq!(other.status, StatusCode::OK);
    assert_eq!(other.body["accepted"], 1);
    assert_eq!(other.body["rejected"], 1);
    assert_eq!(other.body["errors"][0]["index"], 1);
    assert_eq!(other.body["errors"][0]["field"], "id");
    let detail = other.body["errors"][0]["detail"].as_str().unwrap();
    assert!(
        detail.contains("already used for a different event (seq 0)"),
        "{detail}"
    );
    let apps: Vec<String> = h
        .stored("acme")
        .await
        .into_iter()
        .filter(|s| s.event.category == "app")
        .map(|s| s.event.action)
        .collect();
    assert_eq!(apps, ["a", "b"]);
}

#[tokio::test]
async fn bad_input_gets_a_clear_problem() {
    let h = harness().await;
    let ingest = "/v1/orgs/acme/events";
    assert_problem(
        &h.post(ingest, &h.owner, "application/json", "[{").await,
        400,
        "not valid JSON",
    );
    assert_problem(
        &h.post(ingest, &h.owner, "application/json", "42").await,
        400,
        "must be a JSON array",
    );
    assert_problem(
        &h.post(ingest, &h.owner, "application/json", "[]").await,
        400,
        "holds no events",
    );
    assert_problem(
        &h.post(ingest, &h.owner, "text/csv", "a,b").await,
        415,
        "text/csv",
    );
    assert_problem(
        &h.post(ingest, &h.owner, "application/json", vec![0xffu8, 0xfe])
            .await,
        400,
        "not UTF-8",
    );
    let many = Value::Array(vec![event("a"); 10_001]);
    assert_problem(&h.ingest("acme", many).await, 413, "the limit is 10000");
    let huge = vec![b' '; (16 << 20) + 1];
    assert_problem(
        &h.post(ingest, &h.owner, "application/json", huge).await,
        413,
        "larger than",
    );
    assert_problem(
        &h.ingest("nope", json!([event("a")])).await,
        403,
        "cannot act on org \"nope\"",
    );
    let at =
        |t: &str| json!([{"action": "a", "actor": {"id": "u", "type": "user"}, "timestamp": t}]);
    let future = h.ingest("acme", at("9999-12-31T23:59:59Z")).await;
    assert_problem(&future, 422, "none of the 1 events is valid");
    let detail = future.body["errors"][0]["detail"].as_str().unwrap();
    assert!(detail.contains("more than a day ahead"), "{detail}");
    let beyond = h.ingest("acme", at("9999-12-31T23:59:59-01:00")).await;
    assert_eq!(beyond.body["errors"][0]["field"], "timestamp");

    let list = |q: &str| format!("/v1/orgs/acme/audit-logs?{q}");
    for (q, detail) in [
        ("cursor=garbage", "bad cursor"),
        ("since=yesterday", "since: invalid time"),
        ("until=2026-13-01T00:00:00Z", "until: invalid time"),
        ("q=actor%3Aalice%20bob", "expected key:value"),
        ("q=route%3A%22GET", "unterminated quote"),
        ("status=abc", "not a status"),
        ("limit=0", "limit"),
        ("limit=abc", "limit"),
        ("colour=red", "unknown parameter \"colour\""),
        ("actorType=Robot", "invalid actor type"),
        ("ip=nope", "not an IP address"),
    ] {
        assert_problem(&h.get(&list(q), Some(&h.owner)).await, 400, detail);
    }
    assert_problem(
        &h.get("/v1/nothing-here", Some(&h.owner)).await,
        404,
        "no such endpoint",
    );
    let wrong_method = h
        .send(Request::delete("/v1/me").body(Body::empty()).unwrap())
        .await;
    assert_problem(&wrong_method, 405, "does not take that method");
    // Nothing of the above reached storage as an app event.
    assert!(
        h.stored("acme")
            .await
            .iter()
            .all(|s| s.event.category == "api")
    );
}

#[tokio::test]
async fn credentials_are_checked() {
    let h = harness().await;
    let me = "/v1/me";
    assert_problem(&h.get(me, None).await, 401, "needs a credential");
    let bad = [
        "pat_0000.nope".to_owned(),
        "no-dot".to_owned(),
        format!("{}x", h.owner),
        format!(
            "{}.{}",
            h.writer.split('.').next().unwrap(),
            h.owner.split('.').nth(1).unwrap()
        ),
    ];
    for t in &bad {
        assert_problem(&h.get(me, Some(t)).await, 401, "not valid");
    }
    let other_scheme = h.get_with_authorization(me, "Digest abc").await;
    assert_problem(&other_scheme, 401, "unsupported authorization scheme");
    let expired = token(
        &*h.store,
        "acme",
        &[Scope::LogsRead],
        Some(Timestamp(NOW.0 - 1)),
        false,
    )
    .await;
    assert_problem(&h.get(me, Some(&expired)).await, 401, "expired at");
    let revoked = token(&*h.store, "acme", &[Scope::LogsRead], None, true).await;
    assert_problem(&h.get(me, Some(&revoked)).await, 401, "revoked at");
    // A PAT is not accepted as Basic, nor an unknown key.
    let basic = h.get_with_authorization(me, "Basic a2V5X3g6c2VjcmV0").await;
    assert_problem(&basic, 401, "not valid");
    // An API key past its expiry, and a revoked one.
    for (expires, revoked, why) in [
        (Some(Timestamp(NOW.0 - 1)), false, "expired at"),
        (None, true, "revoked at"),
    ] {
        let key = credential(
            &*h.store,
            TokenKind::ApiKey,
            "acme",
            &[Scope::LogsRead],
            expires,
            revoked,
        )
        .await;
        let basic = format!("Basic {}", STANDARD.encode(&key));
        assert_problem(&h.get_with_authorization(me, &basic).await, 401, why);
    }
    // None of the failures is recorded: there is no anonymous actor.
    assert!(h.stored("acme").await.is_empty());

    let ok = h.get(me, Some(&h.owner)).await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.body["org"], "acme");
    assert_eq!(ok.body["actorType"], "pat");
}

#[tokio::test]
async fn scopes_and_orgs_are_enforced() {
    let h = harness().await;
    let r = h.get("/v1/orgs/acme/audit-logs", Some(&h.writer)).await;
    assert_problem(&r, 403, "lacks the logs:read scope");
    assert_eq!(r.body["scope"], "logs:read");
    assert_problem(
        &h.get("/v1/audit-log", Some(&h.writer)).await,
        403,
        "logs:read",
    );
    assert_eq!(
        h.post(
            "/v1/orgs/acme/events",
            &h.writer,
            "application/json",
            json!([event("a")]).to_string()
        )
        .await
        .status,
        StatusCode::OK
    );

    // Another org's credential reaches nothing of acme, by any endpoint.
    assert_problem(
        &h.get("/v1/orgs/acme/audit-logs", Some(&h.other)).await,
        403,
        "cannot act on org \"acme\"",
    );
    assert_problem(
        &h.get("/v1/orgs/acme/instances/i/audit-logs", Some(&h.other))
            .await,
        403,
        "cannot act on org",
    );
    let write = h
        .post(
            "/v1/orgs/acme/events",
            &h.other,
            "application/json",
            json!([event("x")]).to_string(),
        )
        .await;
    assert_problem(&write, 403, "cannot act on org");
    // Its own log does not show acme's events.
    let own = h.get("/v1/audit-log", Some(&h.other)).await;
    assert!(
        own.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["org"] == "umbrella")
    );

    // Denied calls are recorded, with the scope checked, in the caller's own org: a
    // credential cannot write into another org's log. An attempt on another org names it.
    let denied = |org: &'static str| {
        let h = &h;
        async move {
            h.stored(org)
                .await
                .into_iter()
                .filter(|s| s.event.request.as_ref().is_some_and(|r| r.status == 403))
                .collect::<Vec<StoredEvent>>()
        }
    };
    let in_acme = denied("acme").await;
    assert_eq!(in_acme.len(), 2);
    assert!(
        in_acme
            .iter()
            .all(|s| s.event.actor.scope.as_deref() == Some("logs:read"))
    );
    let in_umbrella = denied("umbrella").await;
    assert_eq!(in_umbrella.len(), 3);
    for s in &in_umbrella {
        assert_eq!(s.event.actor.id, "owner@umbrella.io");
        let o = s.event.object.as_ref().unwrap();
        assert_eq!((o.kind.as_str(), o.id_name()), ("org", Some("acme")));
    }
    // Existing or not, another org gets the same answer.
    assert_problem(
        &h.get("/v1/orgs/no-such-org/audit-logs", Some(&h.owner))
            .await,
        403,
        "cannot act on org",
    );
}

#[tokio::test]
async fn every_authenticated_call_is_recorded_and_readers_see_their_own() {
    let h = harness().await;
    let first = h
        .send(
            Request::get("/v1/audit-log?limit=5")
                .header(header::AUTHORIZATION, format!("Bearer {}", h.owner))
                .header(header::USER_AGENT, "trail/0.1.0")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(
        first.body["items"],
        json!([]),
        "nothing before the first call"
    );
    let next = h.get("/v1/audit-log?limit=5", Some(&h.owner)).await;
    let rec = &next.body["items"][0];
    assert_eq!(rec["category"], "api");
    assert_eq!(rec["action"], "listCallerAuditLog");
    assert_eq!(rec["actor"]["id"], "owner@acme.io");
    assert_eq!(rec["actor"]["type"], "pat");
    assert_eq!(rec["actor"]["tokenId"], h.owner.split('.').next().unwrap());
    assert_eq!(rec["actor"]["scope"], "logs:read");
    assert_eq!(rec["actor"]["userAgent"], "trail/0.1.0");
    assert_eq!(rec["request"]["route"], "GET /v1/audit-log");
    assert_eq!(rec["request"]["method"], "GET");
    assert_eq!(rec["request"]["status"], 200);
    assert!(rec["request"]["latencyMs"].as_f64().unwrap() >= 0.0);
    assert_eq!(
        rec["request"]["bodySha256"],
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );

    // A POST: the route template (not the URL) and the body's digest.
    let body = json!([event("a")]).to_string();
    h.post(
        "/v1/orgs/acme/events",
        &h.owner,
        "application/json",
        body.clone(),
    )
    .await;
    let page = h
        .get(
            "/v1/orgs/acme/audit-logs?action=ingestEvents",
            Some(&h.owner),
        )
        .await;
    let rec = &page.body["items"][0];
    assert_eq!(rec["request"]["route"], "POST /v1/orgs/:org/events");
    assert_eq!(rec["actor"]["scope"], "logs:write");
    use sha2::Digest;
    assert_eq!(
        rec["request"]["bodySha256"],
        hex::encode(sha2::Sha256::digest(body.as_bytes()))
    );
    assert!(
        rec.get("details").is_none(),
        "the body itself is never stored"
    );

    // Route filters match templates; secrets appear nowhere in the log.
    let by_route = h
        .get(
            "/v1/orgs/acme/audit-logs?route=GET%20/v1/audit-log",
            Some(&h.owner),
        )
        .await;
    assert_eq!(by_route.body["items"].as_array().unwrap().len(), 2);
    let everything = serde_json::to_string(
        &h.get("/v1/orgs/acme/audit-logs?limit=1000", Some(&h.owner))
            .await
            .body,
    )
    .unwrap();
    for secret in [&h.owner, &h.writer] {
        assert!(
            !everything.contains(secret.split('.').nth(1).unwrap()),
            "a secret leaked into the log"
        );
    }
}

#[tokio::test]
async fn an_ingest_and_its_record_are_one_transaction_under_one_checkpoint() {
    let h = harness().await;
    let before = h.stored("acme").await.len() as u64;
    let r = h
        .ingest("acme", json!([event("a"), event("b"), event("c")]))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let seqs: Vec<u64> = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(
        seqs,
        [before, before + 1, before + 2],
        "the items are the batch's alone"
    );
    // The call's record follows the batch at once, and the checkpoint in the answer,
    // signed in the transaction that stored them, covers both.
    let stored = h.stored("acme").await;
    let record = &stored[before as usize + 3].event;
    assert_eq!(record.seq, before + 3);
    assert_eq!(record.category, "api");
    assert_eq!(record.action, "ingestEvents");
    assert_eq!(record.request.as_ref().unwrap().status, 200);
    assert_eq!(stored.len() as u64, before + 4, "the call is recorded once");
    assert_eq!(r.body["checkpoint"]["size"].as_u64(), Some(before + 4));
    let cp = trail_core::checkpoint::open(
        r.body["checkpoint"]["note"].as_str().unwrap(),
        &h.state.log_key.verifier(),
    )
    .unwrap();
    assert_eq!(cp.size, before + 4);

    // A batch with nothing to store is recorded by the layer, with the answer it had.
    let r = h.ingest("acme", json!([{"action": ""}])).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let stored = h.stored("acme").await;
    assert_eq!(stored.len() as u64, before + 5);
    assert_eq!(
        stored
            .last()
            .unwrap()
            .event
            .request
            .as_ref()
            .unwrap()
            .status,
        422
    );
}

#[tokio::test]
async fn a_call_that_cannot_be_recorded_fails() {
    let h = harness().await;
    // Fill acme's log before its first call (a forged last seq, written beside the
    // store), so no record fits.
    let raw = rusqlite::Connection::open(h.store.path()).unwrap();
    raw.execute(
        "INSERT INTO events (k, org, ts, rdelta, action, cat, actor, atype, hash) \
         SELECT (id << 40) | ((1 << 40) - 1), id, 0, 0, 1, 1, 1, 1, zeroblob(32) \
         FROM orgs WHERE slug = 'acme'",
        [],
    )
    .unwrap();
    drop(raw);
    let r = h.get("/v1/me", Some(&h.owner)).await;
    assert_problem(&r, 503, "could not be recorded");
    let r = h.get("/v1/orgs/acme/audit-logs", Some(&h.owner)).await;
    assert_eq!(
        r.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "a read is not served unrecorded"
    );
    // Another org's calls are unaffected.
    assert_eq!(h.get("/v1/me", Some(&h.other)).await.status, StatusCode::OK);
}

#[tokio::test]
async fn paging_over_http_returns_each_event_once() {
    let h = harness().await;
    let events: Vec<Value> = (0..250).map(|i| event(&format!("e{i}"))).collect();
    h.ingest("acme", Value::Array(events)).await;
    let mut seen = std::collections::HashSet::new();
    let mut uri = "/v1/orgs/acme/audit-logs?category=app&limit=33".to_owned();
    loop {
        let page = h.get(&uri, Some(&h.owner)).await;
        for e in page.body["items"].as_array().unwrap() {
            assert!(seen.insert(e["seq"].as_u64().unwrap()), "repeated {e}");
        }
        h.ingest("acme", json!([event("late")])).await;
        match page.body["nextCursor"].as_str() {
            Some(c) => uri = format!("/v1/orgs/acme/audit-logs?category=app&limit=33&cursor={c}"),
            None => break,
        }
    }
    // The batch was the first call, so its events hold seqs 0..250.
    assert!((0..250).all(|i| seen.contains(&i)));
}

#[tokio::test]
async fn filters_and_the_query_language_over_http() {
    let h = harness().await;
    h.ingest(
        "acme",
        json!([
            {"action": "deleted", "actor": {"id": "alice", "type": "user"}, "instance": "argocd-prod"},
            {"action": "created", "actor": {"id": "bob", "type": "user"}, "instance": "kargo-dev"},
            {"action": "call", "category": "api", "actor": {"id": "alice", "type": "pat"},
             "request": {"method": "GET", "route": "GET /v1/tenants/:id", "status": 503}},
        ]),
    )
    .await;
    let actions = |r: Reply| -> Vec<String> {
        r.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["action"].as_str().unwrap().to_owned())
            .collect()
    };
    let q = |s: &str| format!("/v1/orgs/acme/audit-logs?{s}");
    assert_eq!(
        actions(h.get(&q("actor=alice&category=app"), Some(&h.owner)).await),
        ["deleted"]
    );
    assert_eq!(
        actions(h.get(&q("status=5xx"), Some(&h.owner)).await),
        ["call"]
    );
    assert_eq!(
        actions(
            h.get(&q("route=GET%20/v1/tenants/:id"), Some(&h.owner))
                .await
        ),
        ["call"]
    );
    assert_eq!(
        actions(
            h.get(
                &q("q=actor%3Aalice%20-status%3A503%20category%3Aapp"),
                Some(&h.owner)
            )
            .await
        ),
        ["deleted"]
    );
    assert_eq!(
        actions(
            h.get(&q("since=1h&category=app&actor=nobody"), Some(&h.owner))
                .await
        ),
        Vec::<String>::new()
    );

    // The instance endpoint shows that instance only, and cannot be widened.
    let inst = h
        .get(
            "/v1/orgs/acme/instances/argocd-prod/audit-logs",
            Some(&h.owner),
        )
        .await;
    assert_eq!(actions(inst), ["deleted"]);
    let widened = h
        .get(
            "/v1/orgs/acme/instances/argocd-prod/audit-logs?instance=kargo-dev",
            Some(&h.owner),
        )
        .await;
    assert_problem(&widened, 400, "covers instance \"argocd-prod\" only");
}

#[tokio::test]
async fn public_endpoints_and_the_openapi_document() {
    let h = harness().await;
    assert_eq!(h.get("/healthz", None).await.status, StatusCode::OK);
    assert_eq!(h.get("/readyz", None).await.body["status"], "ready");
    let doc = h.get("/v1/openapi.json", None).await.body;
    assert_eq!(doc["openapi"], "3.1.0");
    // Every documented operation exists in the router (none answers "no such endpoint").
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let uri = path.replace("{org}", "acme").replace("{instance}", "i");
            let req = Request::builder()
                .method(method.to_uppercase().as_str())
                .uri(&uri);
            let r = h.send(req.body(Body::empty()).unwrap()).await;
            assert_ne!(r.status, StatusCode::NOT_FOUND, "{method} {path}");
            assert_ne!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        }
    }
    let mut paths: Vec<&str> = OPERATIONS.iter().map(|o| o.path).collect();
    paths.sort_unstable();
    paths.dedup();
    assert_eq!(doc["paths"].as_object().unwrap().len(), paths.len() + 4);
    h.get("/v1/me", Some(&h.owner)).await;
    let metrics = h.get("/metrics", None).await;
    assert_eq!(metrics.status, StatusCode::OK);
    let text = metrics.body.as_str().unwrap();
    assert!(text.contains("trail_http_requests_total"), "{text}");
    assert!(text.contains(r#"route="/v1/me""#), "{text}");
    // Label values come from fixed sets: an odd method does not mint a series.
    let odd = Request::builder()
        .method("FROBNICATE")
        .uri("/nowhere")
        .body(Body::empty())
        .unwrap();
    h.send(odd).await;
    let text = h
        .get("/metrics", None)
        .await
        .body
        .as_str()
        .unwrap()
        .to_owned();
    assert!(!text.contains("FROBNICATE"), "{text}");
    assert!(text.contains(r#"method="other""#), "{text}");
}

/// The document is the router's: every routed method and path is documented and every
/// documented one routed, each `/v1` operation under the table's id; and it says what the
/// API does: content types, nullable fields, date-times, the credentials each call takes
/// and the problems it can answer.
#[tokio::test]
async fn openapi_document_matches_the_router_and_says_what_the_api_does() {
    let h = harness().await;
    let doc = h.get("/v1/openapi.json", None).await.body;
    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.push((method.to_uppercase(), path.clone()));
        }
    }
    documented.sort();
    let mut routed: Vec<(String, String)> = trail_server::routes::route_table()
        .into_iter()
        .map(|(m, p)| (m.to_owned(), p.to_owned()))
        .collect();
    routed.sort();
    assert_eq!(documented, routed);
    for op in OPERATIONS {
        let o = &doc["paths"][op.path][op.method.to_lowercase()];
        assert_eq!(o["operationId"], op.id, "{} {}", op.method, op.path);
        assert_eq!(o["summary"], op.summary);
        assert_eq!(o["description"], op.access.describe());
        for status in ["401", "414", "503"] {
            let content = &o["responses"][status]["content"];
            assert!(
                content["application/problem+json"].is_object(),
                "{} lacks a problem {status}",
                op.id
            );
        }
        let public = op.access.callers == trail_server::routes::Callers::Public;
        assert_eq!(o["responses"]["403"].is_object(), !public, "{}", op.id);
    }
    let op = |id: &str| {
        let o = OPERATIONS.iter().find(|o| o.id == id).unwrap();
        doc["paths"][o.path][o.method.to_lowercase()].clone()
    };
    let schema = |name: &str| doc["components"]["schemas"][name].clone();
    // Content types.
    let ok = |id: &str| op(id)["responses"]["200"]["content"].clone();
    assert!(ok("streamAuditLogs")["text/event-stream"].is_object());
    assert!(ok("getCheckpoint")["text/plain"].is_object());
    assert!(ok("getCheckpoint")["application/json"].is_null());
    assert!(op("ingestEvents")["requestBody"]["content"]["application/x-ndjson"].is_object());
    // The checkpoint is served as the text it is documented as.
    let h2 = h
        .call(
            "POST",
            "/v1/orgs/acme/events",
            &Cred::of(&h.writer),
            Some(json!([{"action": "a", "actor": {"id": "x", "type": "user"}}])),
        )
        .await;
    assert_eq!(h2.status, StatusCode::OK);
    // `/v1/me` is typed, nullable fields are nullable, timestamps are date-times.
    assert_eq!(
        ok("whoAmI")["application/json"]["schema"]["$ref"],
        "#/components/schemas/Me"
    );
    let me = schema("Me");
    for field in [
        "actor",
        "actorType",
        "credentialId",
        "orgs",
        "platformAdmin",
    ] {
        assert!(me["properties"][field].is_object(), "Me.{field}");
        assert!(me["required"].as_array().unwrap().contains(&json!(field)));
    }
    assert_eq!(me["properties"]["org"]["type"], json!(["string", "null"]));
    assert_eq!(
        schema("EventPage")["properties"]["nextCursor"]["type"],
        json!(["string", "null"])
    );
    assert_eq!(
        schema("Event")["properties"]["timestamp"]["format"],
        "date-time"
    );
    assert_eq!(
        schema("Event")["properties"]["receivedAt"]["format"],
        "date-time"
    );
    assert_eq!(
        schema("TokenView")["properties"]["expiresAt"]["format"],
        "date-time"
    );
    // Credentials: bearer, basic, the session cookie and its CSRF header.
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(schemes["basic"]["scheme"], "basic");
    assert_eq!(schemes["session"]["in"], "cookie");
    assert_eq!(schemes["session"]["name"], "trail_session");
    assert_eq!(schemes["csrf"]["in"], "header");
    assert_eq!(schemes["csrf"]["name"], "X-CSRF-Token");
    assert_eq!(
        op("setPassword")["security"],
        json!([{"csrf": [], "session": []}])
    );
    assert_eq!(op("signIn")["security"], json!([{}]));
    assert_eq!(
        op("listAuditLogs")["security"],
        json!([{"bearer": []}, {"basic": []}, {"session": []}])
    );
    assert_eq!(
        op("createToken")["security"],
        json!([{"bearer": []}, {"csrf": [], "session": []}])
    );
    // Problems each operation can answer.
    assert!(op("ingestEvents")["responses"]["422"].is_object());
    assert!(op("createOrg")["responses"]["409"].is_object());
    assert!(op("revokeApiKey")["responses"]["404"].is_object());
    assert!(op("revokeApiKey")["responses"]["204"].is_object());
    // Roles and scopes are the names the core gives them.
    assert_eq!(schema("Role")["enum"], json!(["owner", "admin", "member"]));
    let scopes: Vec<&str> = Scope::ALL.iter().map(|s| s.as_str()).collect();
    assert_eq!(schema("Scope")["enum"], json!(scopes));
    assert_eq!(
        schema("MemberUpdate")["properties"]["role"]["$ref"],
        "#/components/schemas/Role"
    );
    // Found by the API pass: an unknown invitation is answered 404.
    assert!(op("acceptInvitation")["responses"]["404"].is_object());
}

/// `/metrics` names and explains what it exports: every metric family rendered has a
/// `# HELP` line and is in the one list of metrics, and the build is named.
#[tokio::test]
async fn metrics_have_help_lines_and_build_info() {
    let h = harness().await;
    let events = json!([{"action": "a", "actor": {"id": "x", "type": "user"}}]);
    let r = h
        .call(
            "POST",
            "/v1/orgs/acme/events",
            &Cred::of(&h.writer),
            Some(events),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    h.call("GET", "/v1/me", &Cred::of("pat_nobody.wrong"), None)
        .await;
    let text = h
        .get("/metrics", None)
        .await
        .body
        .as_str()
        .unwrap()
        .to_owned();
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        text.lines()
            .any(|l| l == format!("trail_build_info{{version=\"{version}\"}} 1")),
        "{text}"
    );
    let known: Vec<&str> = trail_server::metrics::METRICS.iter().map(|m| m.0).collect();
    let families: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    for name in [
        "trail_build_info",
        "trail_http_requests_total",
        "trail_http_request_duration_seconds",
        "trail_auth_failures_total",
        "trail_events_ingested_total",
    ] {
        assert!(families.contains(&name), "{name} not rendered: {text}");
    }
    for name in families {
        assert!(known.contains(&name), "{name} is not in METRICS");
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("# HELP {name} "))),
            "no HELP for {name}: {text}"
        );
    }
}

/// Every authenticated operation × every credential kind × with and without what it needs
/// × own org and another org: 401 without a credential, 403 without the scope or across
/// orgs, and neither with it.
/// A request that the operation answers with success for a caller that may make it, made
/// fresh for each cell (so a cell that creates or revokes does not spoil the next), and the
/// status of that success. `user` is the caller's user (the owner's for machines), so the
/// token a person revokes is their own.
async fn sample(
    h: &Harness,
    op: &str,
    caller_user: &str,
    n: usize,
) -> (String, Option<Value>, u16) {
    let s: &dyn Store = &*h.store;
    let fresh = |what: &str| format!("{what}-{n}");
    let pat_of = |user: &str| {
        let mut m = mint(CredentialSpec {
            kind: TokenKind::Pat,
            org: "acme".into(),
            owner: "someone".into(),
            user_id: Some(user.to_owned()),
            name: "to revoke".into(),
            description: String::new(),
            scopes: vec![Scope::LogsWrite],
            instance: None,
            created_by: "test".into(),
            created_at: NOW,
            expires_at: None,
            reach: trail_store::Reach::Own,
        });
        m.token.owner = format!("{user}@acme.io");
        m.token
    };
    let get = |uri: &str, status: u16| (uri.to_owned(), None, status);
    match op {
        "ingestEvents" => (
            "/v1/orgs/acme/events".into(),
            Some(
                json!([{"action": "x", "instance": "prod", "actor": {"id": "a", "type": "user"}}]),
            ),
            200,
        ),
        "listAuditLogs" => get("/v1/orgs/acme/audit-logs", 200),
        "exportAuditLogs" => get("/v1/orgs/acme/audit-logs/export?since=1h", 200),
        "listInstanceAuditLogs" => get("/v1/orgs/acme/instances/prod/audit-logs", 200),
        "listCallerAuditLog" => get("/v1/audit-log", 200),
        "whoAmI" => get("/v1/me", 200),
        "setPassword" => {
            let pw = if caller_user == "usr_acme_owner" {
                "platform admin password"
            } else {
                "correct horse battery"
            };
            (
                "/v1/me/password".into(),
                Some(json!({"currentPassword": pw, "newPassword": pw})),
                204,
            )
        }
        "listOrgs" => get("/v1/orgs", 200),
        "createOrg" => ("/v1/orgs".into(), Some(json!({"id": fresh("org")})), 201),
        "inviteOwner" => {
            let orphan = fresh("orphan");
            let org = Org {
                id: orphan.clone(),
                name: orphan.clone(),
                created_at: NOW,
            };
            s.create_org(org, None, None, Vec::new()).await.unwrap();
            (
                format!("/v1/orgs/{orphan}/owner-invitation"),
                Some(json!({"email": format!("{}@acme.io", fresh("owner"))})),
                201,
            )
        }
        "listInstances" => get("/v1/orgs/acme/instances", 200),
        "createInstance" => (
            "/v1/orgs/acme/instances".into(),
            Some(json!({"id": fresh("inst"), "kind": "argocd"})),
            201,
        ),
        "listMembers" => get("/v1/orgs/acme/members", 200),
        "addMember" => (
            "/v1/orgs/acme/members".into(),
            Some(json!({"email": format!("{}@acme.io", fresh("new")), "role": "member"})),
            201,
        ),
        "updateMember" | "removeMember" => {
            let email = format!("{}@acme.io", fresh("m"));
            let mut u = user("acme");
            (u.id, u.email, u.platform_admin) = (fresh("usr"), email.clone(), false);
            s.add_member("acme", u, Role::Member, Vec::new())
                .await
                .unwrap();
            let uri = format!("/v1/orgs/acme/members/{email}");
            if op == "updateMember" {
                (uri, Some(json!({"role": "member"})), 200)
            } else {
                (uri, None, 204)
            }
        }
        "listApiKeys" => get("/v1/orgs/acme/api-keys", 200),
        "createApiKey" => (
            "/v1/orgs/acme/api-keys".into(),
            Some(json!({"name": fresh("key"), "scopes": ["logs:write"]})),
            201,
        ),
        "revokeApiKey" => {
            let key = credential(
                s,
                TokenKind::ApiKey,
                "acme",
                &[Scope::LogsWrite],
                None,
                false,
            )
            .await;
            let id = key.split_once(':').unwrap().0.to_owned();
            (format!("/v1/orgs/acme/api-keys/{id}"), None, 204)
        }
        "listTokens" => get("/v1/orgs/acme/tokens", 200),
        "createToken" => (
            "/v1/orgs/acme/tokens".into(),
            Some(json!({"name": fresh("pat"), "scopes": ["logs:write"]})),
            201,
        ),
        "revokeToken" => {
            let t = pat_of(caller_user);
            let id = t.id.clone();
            s.create_token(t, Vec::new()).await.unwrap();
            (format!("/v1/orgs/acme/tokens/{id}"), None, 204)
        }
        "createBreakGlassToken" => (
            "/v1/break-glass".into(),
            Some(json!({"org": "acme", "reason": "matrix"})),
            201,
        ),
        "revokeBreakGlassToken" => {
            let bg = credential(
                s,
                TokenKind::BreakGlass,
                "acme",
                &[Scope::LogsRead],
                None,
                false,
            )
            .await;
            let id = bg.split_once('.').unwrap().0.to_owned();
            (format!("/v1/break-glass/{id}"), None, 204)
        }
        "signOut" => ("/v1/session".into(), None, 204),
        "getLogKey" => get("/v1/log/key", 200),
        "getCheckpoint" => get("/v1/orgs/acme/log/checkpoint", 200),
        "listCheckpoints" => get("/v1/orgs/acme/log/checkpoints", 200),
        "getInclusionProof" => get("/v1/orgs/acme/log/proof/inclusion?seq=0", 200),
        "getConsistencyProof" => get("/v1/orgs/acme/log/proof/consistency?from=1", 200),
        "listLogEntries" => get("/v1/orgs/acme/log/entries?from=0", 200),
        "getEvent" => get("/v1/orgs/acme/events/0", 200),
        "streamAuditLogs" => get("/v1/orgs/acme/audit-logs/stream", 200),
        "histogramAuditLogs" => get("/v1/orgs/acme/audit-logs/histogram", 200),
        "downloadAuditLogs" => get("/v1/orgs/acme/audit-logs/download", 200),
        "getPerformance" => get("/v1/orgs/acme/perf", 200),
        "listArchives" => get("/v1/orgs/acme/archives", 200),
        "getRetention" => get("/v1/orgs/acme/retention", 200),
        "setRetention" => (
            "/v1/orgs/acme/retention".into(),
            Some(json!({"retentionDays": 400})),
            200,
        ),
        "getPlatformRetention" => get("/v1/retention", 200),
        "setPlatformRetention" => ("/v1/retention".into(), Some(json!({"maxDays": 4000})), 200),
        "downloadArchive" => {
            let week = trail_core::archive::Week::containing(trail_server::now());
            get(&format!("/v1/orgs/acme/archives/{week}"), 200)
        }
        other => panic!("the authorization matrix has no sample request for {other}: add one"),
    }
}

/// One cell's caller, described by what the operations table looks at.
#[derive(Clone, Copy, Debug)]
struct Who {
    kind: &'static str,
    /// Holds every org scope but this one (`None`: every scope).
    lacks: Option<Scope>,
    platform_admin: bool,
    expires: bool,
    instance: bool,
    other_org: bool,
}

impl Who {
    /// A `kind` of credential of acme, lacking `lacks`, that neither expires nor is
    /// restricted, held by no platform admin.
    fn new(kind: &'static str, lacks: Option<Scope>) -> Who {
        Who {
            kind,
            lacks,
            platform_admin: false,
            expires: false,
            instance: false,
            other_org: false,
        }
    }
}

/// What a cell must answer: computed from the table's `Access`, independently of the code
/// that enforces it.
fn expected(access: trail_server::routes::Access, who: Who, success: u16) -> u16 {
    use trail_server::routes::{Callers, Target};
    // A console session signed in with a PAT ("pat-session") holds what the PAT holds.
    let person = matches!(who.kind, "session" | "pat" | "pat-session");
    let kind_ok = match access.callers {
        Callers::Any | Callers::Public => true,
        Callers::NotBreakGlass => who.kind != "break-glass",
        Callers::People => person,
        Callers::LastingPeople => {
            who.kind == "session" || (matches!(who.kind, "pat" | "pat-session") && !who.expires)
        }
        Callers::Session => who.kind == "session",
        Callers::Console => matches!(who.kind, "session" | "pat-session"),
    };
    if !kind_ok || (who.instance && !access.instance_ok) {
        return 403;
    }
    match access.target {
        Target::Platform if !who.platform_admin => 403,
        Target::Org if who.other_org => 403,
        Target::Org | Target::OwnOrg if access.scope.is_some() && access.scope == who.lacks => 403,
        _ => success,
    }
}

#[tokio::test]
async fn authorization_matrix() {
    use trail_server::routes::Callers;
    let h = harness().await;
    let s: &dyn Store = &*h.store;
    // acme's owner is the platform admin: give them a password to sign in with (as an
    // operator would).
    let hash = trail_server::auth::hash_password("platform admin password").unwrap();
    h.store
        .set_password("usr_acme_owner", hash, NOW, Vec::new())
        .await
        .unwrap();
    let member = h.invited("acme", "dev@acme.io", "member").await;
    let member_id = member["userId"].as_str().unwrap().to_owned();
    s.create_instance(
        trail_store::Instance {
            org: "acme".into(),
            id: "prod".into(),
            name: "prod".into(),
            kind: "argocd".into(),
            created_at: NOW,
        },
        Vec::new(),
    )
    .await
    .unwrap();
    h.ingest("acme", json!([event("seed")])).await;
    let org_scopes: Vec<Scope> = Scope::ALL
        .into_iter()
        .filter(|x| *x != Scope::OrgsAdmin)
        .collect();
    let but = |lacking: Option<Scope>, admin: bool| -> Vec<Scope> {
        let mut v: Vec<Scope> = org_scopes
            .iter()
            .copied()
            .filter(|x| Some(*x) != lacking)
            .collect();
        if admin {
            v.push(Scope::OrgsAdmin);
        }
        v
    };
    let later = Some(Timestamp(i64::MAX / 2));
    let mut n = 0;
    let mut cells = 0;
    for op in OPERATIONS {
        let label = format!("{} {} ({})", op.method, op.path, op.id);
        if op.access.callers == Callers::Public {
            continue;
        }
        n += 1;
        let (uri, body, _) = sample(&h, op.id, "usr_acme_owner", n).await;
        assert_eq!(
            h.call(op.method, &uri, &Cred::None, body).await.status,
            StatusCode::UNAUTHORIZED,
            "{label}: no credential"
        );
        // The scope this operation checks: each credential kind once with everything, once
        // without it.
        let lacks = [None, op.access.scope];
        for lacking in lacks
            .iter()
            .copied()
            .collect::<std::collections::BTreeSet<_>>()
        {
            let full = lacking.is_none();
            // The owner's PATs hold orgs:admin unless it is the scope left out.
            let admin = lacking != Some(Scope::OrgsAdmin);
            let owner_scopes = but(lacking, admin);
            let mut cases: Vec<(Who, Cred, String)> = vec![
                (
                    Who {
                        platform_admin: admin,
                        ..Who::new("pat", lacking)
                    },
                    Cred::of(&token(s, "acme", &owner_scopes, None, false).await),
                    "usr_acme_owner".into(),
                ),
                (
                    Who {
                        platform_admin: admin,
                        ..Who::new("pat-session", lacking)
                    },
                    h.sign_in_with_token(&token(s, "acme", &owner_scopes, None, false).await)
                        .await
                        .unwrap(),
                    "usr_acme_owner".into(),
                ),
                (
                    Who {
                        platform_admin: admin,
                        expires: true,
                        ..Who::new("pat-session", lacking)
                    },
                    h.sign_in_with_token(&token(s, "acme", &owner_scopes, later, false).await)
                        .await
                        .unwrap(),
                    "usr_acme_owner".into(),
                ),
                (
                    Who {
                        platform_admin: admin,
                        expires: true,
                        ..Who::new("pat", lacking)
                    },
                    Cred::of(&token(s, "acme", &owner_scopes, later, false).await),
                    "usr_acme_owner".into(),
                ),
                (
                    Who::new("api-key", lacking.or(Some(Scope::OrgsAdmin))),
                    Cred::of(
                        &credential(
                            s,
                            TokenKind::ApiKey,
                            "acme",
                            &but(lacking, false),
                            None,
                            false,
                        )
                        .await,
                    ),
                    "usr_acme_owner".into(),
                ),
                (
                    Who {
                        expires: true,
                        ..Who::new("break-glass", lacking.or(Some(Scope::OrgsAdmin)))
                    },
                    Cred::of(
                        &credential(
                            s,
                            TokenKind::BreakGlass,
                            "acme",
                            &but(lacking, false),
                            later,
                            false,
                        )
                        .await,
                    ),
                    "usr_acme_owner".into(),
                ),
            ];
            if full {
                let mut restricted = mint(CredentialSpec {
                    kind: TokenKind::ApiKey,
                    org: "acme".into(),
                    owner: "prod-key".into(),
                    user_id: None,
                    name: "prod".into(),
                    description: String::new(),
                    scopes: vec![Scope::LogsRead, Scope::LogsWrite],
                    instance: Some("prod".into()),
                    created_by: "test".into(),
                    created_at: NOW,
                    expires_at: None,
                    reach: trail_store::Reach::Own,
                });
                restricted.token.instance = Some("prod".into());
                let id = restricted.token.id.clone();
                s.create_token(restricted.token, Vec::new()).await.unwrap();
                let instance_lacks = op
                    .access
                    .scope
                    .filter(|x| !matches!(x, Scope::LogsRead | Scope::LogsWrite));
                cases.push((
                    Who {
                        instance: true,
                        ..Who::new("api-key", instance_lacks)
                    },
                    Cred::of(&format!("{id}:{}", restricted.secret)),
                    "usr_acme_owner".into(),
                ));
                cases.push((
                    Who {
                        platform_admin: true,
                        ..Who::new("session", None)
                    },
                    h.sign_in("owner@acme.io", "platform admin password")
                        .await
                        .unwrap(),
                    "usr_acme_owner".into(),
                ));
                // A member holds logs:write alone.
                let member_lacks = op
                    .access
                    .scope
                    .filter(|x| !Role::Member.scopes().contains(x));
                cases.push((
                    Who::new("session", member_lacks),
                    h.sign_in("dev@acme.io", "correct horse battery")
                        .await
                        .unwrap(),
                    member_id.clone(),
                ));
                cases.push((
                    Who {
                        other_org: true,
                        ..Who::new("pat", None)
                    },
                    Cred::of(&h.other),
                    "usr_umbrella_owner".into(),
                ));
            }
            for (who, cred, user) in cases {
                n += 1;
                cells += 1;
                let (uri, body, success) = sample(&h, op.id, &user, n).await;
                let want = expected(op.access, who, success);
                let r = h.call(op.method, &uri, &cred, body).await;
                assert_eq!(r.status.as_u16(), want, "{label}: {who:?} got {:?}", r.body);
                if want == 403 {
                    assert_eq!(r.content_type, "application/problem+json", "{label}");
                    if let (Some(scope), Some(lacking)) = (op.access.scope, who.lacks)
                        && scope == lacking
                        && r.body["type"] == "/problems/missing-scope"
                    {
                        assert_eq!(r.body["scope"], scope.as_str(), "{label}");
                    }
                }
            }
        }
    }
    assert!(cells > 200, "{cells} cells");
}

#[tokio::test]
async fn api_keys_authenticate_with_basic_are_listed_without_secrets_and_revoke_at_once() {
    let h = harness().await;
    let owner = Cred::of(&h.owner);
    let r = h
        .call("POST", "/v1/orgs/acme/api-keys", &owner, Some(json!({"name": "Monad Audit Logs Integration", "description": "SIEM pull", "scopes": ["logs:read"]})))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let (id, secret) = (
        r.body["id"].as_str().unwrap().to_owned(),
        r.body["secret"].as_str().unwrap().to_owned(),
    );
    assert!(id.starts_with("key_"));
    assert!(secret.len() >= 43, "256 bits of secret");
    let key = Cred::of(&format!("{id}:{secret}"));

    // The seed-002 flow: HTTP Basic, key id and secret, reading the org's log.
    let page = h.call("GET", "/v1/audit-log", &key, None).await;
    assert_eq!(page.status, StatusCode::OK);
    let me = h.call("GET", "/v1/me", &key, None).await;
    assert_eq!(
        (me.body["actorType"].clone(), me.body["actor"].clone()),
        (json!("api_key"), json!("Monad Audit Logs Integration"))
    );
    assert_problem(
        &h.call(
            "POST",
            "/v1/orgs/acme/events",
            &key,
            Some(json!([event("x")])),
        )
        .await,
        403,
        "logs:write",
    );

    let list = h.call("GET", "/v1/orgs/acme/api-keys", &owner, None).await;
    let listed = list.body["items"].as_array().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["name"], "Monad Audit Logs Integration");
    assert!(listed[0].get("secret").is_none() && !list.body.to_string().contains(&secret));

    assert_eq!(
        h.call(
            "DELETE",
            &format!("/v1/orgs/acme/api-keys/{id}"),
            &owner,
            None
        )
        .await
        .status,
        StatusCode::NO_CONTENT
    );
    assert_problem(
        &h.call("GET", "/v1/audit-log", &key, None).await,
        401,
        "revoked",
    );
    assert_problem(
        &h.call("DELETE", "/v1/orgs/acme/api-keys/key_nope", &owner, None)
            .await,
        404,
        "no api key",
    );

    // Both changes are domain events in the seed-002 shape.
    let changes: Vec<StoredEvent> = h
        .stored("acme")
        .await
        .into_iter()
        .filter(|s| s.event.category == "management")
        .collect();
    let shape: Vec<(String, String)> = changes
        .iter()
        .map(|s| {
            (
                s.event.action.clone(),
                s.event.object.as_ref().unwrap().kind.clone(),
            )
        })
        .collect();
    assert_eq!(
        shape,
        [
            ("created".into(), "api_key".into()),
            ("revoked".into(), "api_key".into())
        ]
    );
    let details = changes[0].event.details.as_ref().unwrap().to_value();
    assert_eq!(details["actionType"], "CREATE");
    assert!(
        details["message"]
            .as_str()
            .unwrap()
            .contains("Monad Audit Logs Integration")
    );

    // Nobody grants what they do not hold; bad input is named.
    let admin_only = token(&*h.store, "acme", &[Scope::KeysManage], None, false).await;
    let r = h
        .call(
            "POST",
            "/v1/orgs/acme/api-keys",
            &Cred::of(&admin_only),
            Some(json!({"name": "k", "scopes": ["logs:read"]})),
        )
        .await;
    assert_problem(&r, 403, "cannot grant the logs:read scope");
    for (body, detail) in [
        (json!({"name": "k"}), "either role or scopes"),
        (
            json!({"name": "k", "scopes": ["logs:fly"]}),
            "unknown scope",
        ),
        (
            json!({"name": "k", "role": "owner", "expiresIn": "400d"}),
            "expiresIn",
        ),
        (json!({"name": "k", "scopes": ["orgs:admin"]}), "orgs:admin"),
        (json!({"name": "", "role": "member"}), "name"),
        (
            json!({"name": "k", "role": "member", "colour": 1}),
            "unknown field",
        ),
    ] {
        assert_problem(
            &h.call("POST", "/v1/orgs/acme/api-keys", &owner, Some(body))
                .await,
            400,
            detail,
        );
    }
}

#[tokio::test]
async fn personal_access_tokens_hold_a_subset_of_their_members_scopes() {
    let h = harness().await;
    let session = h.signed_in("acme", "sre@acme.io", "owner").await;
    let r = h
        .call(
            "POST",
            "/v1/orgs/acme/tokens",
            &session,
            Some(json!({"name": "laptop", "preset": "support-readonly", "expiresIn": "7d"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["scopes"], json!(["logs:read", "archives:read"]));
    let pat = Cred::of(r.body["token"].as_str().unwrap());
    assert_eq!(
        h.call("GET", "/v1/audit-log", &pat, None).await.status,
        StatusCode::OK
    );
    assert_problem(
        &h.call(
            "POST",
            "/v1/orgs/acme/events",
            &pat,
            Some(json!([event("x")])),
        )
        .await,
        403,
        "logs:write",
    );
    let mine = h.call("GET", "/v1/orgs/acme/tokens", &session, None).await;
    assert_eq!(mine.body["items"].as_array().unwrap().len(), 1);
    assert!(
        !mine
            .body
            .to_string()
            .contains(r.body["token"].as_str().unwrap())
    );

    // A member cannot mint more than their role holds; nor orgs:admin without being an admin.
    let member = h.signed_in("acme", "dev@acme.io", "member").await;
    let r = h
        .call(
            "POST",
            "/v1/orgs/acme/tokens",
            &member,
            Some(json!({"name": "x", "scopes": ["logs:read"]})),
        )
        .await;
    assert_problem(&r, 403, "cannot grant the logs:read scope");
    let r = h
        .call(
            "POST",
            "/v1/orgs/acme/tokens",
            &session,
            Some(json!({"name": "x", "scopes": ["orgs:admin"]})),
        )
        .await;
    assert_problem(&r, 403, "orgs:admin");

    // A demoted member's PAT shrinks with the role, at once.
    let r = h
        .call(
            "POST",
            "/v1/orgs/acme/tokens",
            &member,
            Some(json!({"name": "ci", "scopes": ["logs:write"]})),
        )
        .await;
    let member_pat = Cred::of(r.body["token"].as_str().unwrap());
    assert_eq!(
        h.call(
            "POST",
            "/v1/orgs/acme/events",
            &member_pat,
            Some(json!([event("x")]))
        )
        .await
        .status,
        StatusCode::OK
    );
    let removed = h
        .call(
            "DELETE",
            "/v1/orgs/acme/members/dev@acme.io",
            &Cred::of(&h.owner),
            None,
        )
        .await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT);
    assert_problem(
        &h.call(
            "POST",
            "/v1/orgs/acme/events",
            &member_pat,
            Some(json!([event("x")])),
        )
        .await,
        401,
        "no longer in org \"acme\"",
    );

    // Revoked: refused at once. API keys cannot mint PATs.
    let id = mine.body["items"][0]["id"].as_str().unwrap();
    assert_eq!(
        h.call(
            "DELETE",
            &format!("/v1/orgs/acme/tokens/{id}"),
            &session,
            None
        )
        .await
        .status,
        StatusCode::NO_CONTENT
    );
    assert_problem(
        &h.call("GET", "/v1/audit-log", &pat, None).await,
        401,
        "revoked",
    );
    let key = Cred::of(
        &credential(
            &*h.store,
            TokenKind::ApiKey,
            "acme",
            preset("admin-full").unwrap(),
            None,
            false,
        )
        .await,
    );
    assert_problem(
        &h.call(
            "POST",
            "/v1/orgs/acme/tokens",
            &key,
            Some(json!({"name": "x", "preset": "admin-full"})),
        )
        .await,
        403,
        "it is for a member",
    );
}

#[tokio::test]
async fn break_glass_tokens_are_short_lived_and_every_use_stands_out() {
    let h = harness().await;
    let owner = Cred::of(&h.owner);
    let r = h.call("POST", "/v1/break-glass", &owner, Some(json!({"org": "umbrella", "reason": "INC-42: umbrella cannot sign in", "expiresIn": "30m"}))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let bg = Cred::of(r.body["token"].as_str().unwrap());
    assert_eq!(r.body["scopes"], json!(["logs:read", "archives:read"]));

    let page = h
        .call("GET", "/v1/orgs/umbrella/audit-logs", &bg, None)
        .await;
    assert_eq!(page.status, StatusCode::OK);
    let next = h
        .call(
            "GET",
            "/v1/orgs/umbrella/audit-logs?actorType=break_glass",
            &bg,
            None,
        )
        .await;
    let rec = &next.body["items"][0];
    assert_eq!(rec["actor"]["type"], "break_glass");
    assert_eq!(rec["actor"]["id"], "owner@acme.io");
    // Issuing it is a domain event in the org it opens, with the reason.
    let issued: Vec<StoredEvent> = h
        .stored("umbrella")
        .await
        .into_iter()
        .filter(|s| s.event.category == "management")
        .collect();
    let details = issued[0].event.details.as_ref().unwrap().to_value();
    assert_eq!(details["reason"], "INC-42: umbrella cannot sign in");
    // The call that issued it is recorded in the platform org.
    assert!(
        h.stored("acme")
            .await
            .iter()
            .any(|s| s.event.action == "createBreakGlassToken")
    );

    for (body, status, detail) in [
        (
            json!({"org": "umbrella", "reason": "x", "expiresIn": "13h"}),
            400,
            "1m to 12h",
        ),
        (json!({"org": "umbrella", "reason": ""}), 400, "reason"),
        (json!({"org": "nope", "reason": "x"}), 404, "does not exist"),
    ] {
        assert_problem(
            &h.call("POST", "/v1/break-glass", &owner, Some(body)).await,
            status,
            detail,
        );
    }
    assert_problem(
        &h.call(
            "POST",
            "/v1/break-glass",
            &Cred::of(&h.other),
            Some(json!({"org": "acme", "reason": "x"})),
        )
        .await,
        403,
        "orgs:admin",
    );
    let expired = credential(
        &*h.store,
        TokenKind::BreakGlass,
        "umbrella",
        &[Scope::LogsRead],
        Some(Timestamp(NOW.0 - 1)),
        false,
    )
    .await;
    assert_problem(
        &h.get("/v1/orgs/umbrella/audit-logs", Some(&expired)).await,
        401,
        "expired",
    );
}

#[tokio::test]
async fn console_sessions_sign_in_need_csrf_to_change_things_and_sign_out() {
    let h = harness().await;
    h.invited("acme", "ana@acme.io", "owner").await;
    let r = h
        .call(
            "POST",
            "/v1/session",
            &Cred::None,
            Some(json!({"email": "ana@acme.io", "password": "correct horse battery"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let cookie = r.set_cookie.unwrap();
    for attr in [
        "trail_session=ses_",
        "HttpOnly",
        "SameSite=Strict",
        "Path=/",
    ] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    let session = h
        .sign_in("ana@acme.io", "correct horse battery")
        .await
        .unwrap();
    let me = h.call("GET", "/v1/me", &session, None).await;
    assert_eq!(
        (me.body["actorType"].clone(), me.body["actor"].clone()),
        (json!("user"), json!("ana@acme.io"))
    );
    assert_eq!(me.body["orgs"][0]["id"], "acme");

    // A state-changing call with the cookie alone is refused.
    let Cred::Session { cookie, csrf } = session.clone() else {
        unreachable!()
    };
    let no_csrf = Cred::Session {
        cookie: cookie.clone(),
        csrf: "forged".into(),
    };
    let r = h
        .call(
            "POST",
            "/v1/orgs/acme/instances",
            &no_csrf,
            Some(json!({"id": "prod", "kind": "argocd"})),
        )
        .await;
    assert_problem(&r, 403, "X-CSRF-Token");
    assert_eq!(
        me.body["csrfToken"],
        json!(csrf),
        "the console can get its CSRF token back"
    );
    let r = h
        .call(
            "POST",
            "/v1/orgs/acme/instances",
            &session,
            Some(json!({"id": "prod", "kind": "argocd"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);

    // Wrong passwords, unknown users: the same answer.
    for (email, pw) in [
        ("ana@acme.io", "wrong password!"),
        ("nobody@acme.io", "correct horse battery"),
    ] {
        assert_problem(
            &h.sign_in(email, pw).await.unwrap_err(),
            401,
            "wrong email or password",
        );
    }

    // Sign-out ends it on the server and clears the cookie.
    let out = h.call("DELETE", "/v1/session", &session, None).await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    assert!(out.set_cookie.unwrap().contains("Max-Age=0"));
    assert_problem(
        &h.call("GET", "/v1/me", &session, None).await,
        401,
        "session has ended",
    );

    // An idle session ends by itself.
    let mut state = h.state.clone();
    state.sessions.idle = std::time::Duration::from_millis(1);
    let strict = app(state);
    let fresh = h
        .sign_in("ana@acme.io", "correct horse battery")
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert_problem(
        &send_to(&strict, request("GET", "/v1/me", &fresh, None)).await,
        401,
        "session has ended",
    );

    // Changing the password needs the current one.
    let fresh = h
        .sign_in("ana@acme.io", "correct horse battery")
        .await
        .unwrap();
    let r = h
        .call(
            "PUT",
            "/v1/me/password",
            &fresh,
            Some(json!({"currentPassword": "nope", "newPassword": "another long password"})),
        )
        .await;
    assert_problem(&r, 403, "currentPassword");
    let r = h
        .call(
            "PUT",
            "/v1/me/password",
            &fresh,
            Some(json!({"currentPassword": "correct horse battery", "newPassword": "short"})),
        )
        .await;
    assert_problem(&r, 400, "at least 12 characters");
    let r = h.call("PUT", "/v1/me/password", &fresh, Some(json!({"currentPassword": "correct horse battery", "newPassword": "another long password"}))).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(
        h.sign_in("ana@acme.io", "another long password")
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn members_roles_change_without_escalation_and_orgs_keep_an_owner() {
    let h = harness().await;
    let owner = Cred::of(&h.owner);
    h.invited("acme", "ops@acme.io", "admin").await;
    // A member is not invited again.
    assert_eq!(
        h.call(
            "POST",
            "/v1/orgs/acme/members",
            &owner,
            Some(json!({"email": "ops@acme.io", "role": "admin"}))
        )
        .await
        .status,
        StatusCode::CONFLICT
    );
    let r = h
        .call(
            "PATCH",
            "/v1/orgs/acme/members/ops@acme.io",
            &owner,
            Some(json!({"role": "member"})),
        )
        .await;
    assert_eq!(r.body["role"], "member");
    let changed = h
        .stored("acme")
        .await
        .into_iter()
        .find(|s| s.event.action == "updated")
        .unwrap();
    let details = changed.event.details.unwrap().to_value();
    assert_eq!(
        (details["from"].clone(), details["to"].clone()),
        (json!("admin"), json!("member"))
    );
    assert_eq!(details["actionType"], "UPDATE");

    // An admin (no logs:read) cannot make anyone an owner, nor touch an owner.
    let admin = h.signed_in("acme", "adm@acme.io", "admin").await;
    let r = h
        .call(
            "PATCH",
            "/v1/orgs/acme/members/ops@acme.io",
            &admin,
            Some(json!({"role": "owner"})),
        )
        .await;
    assert_problem(&r, 403, "cannot grant the logs:read scope");
    let r = h
        .call(
            "DELETE",
            "/v1/orgs/acme/members/owner@acme.io",
            &admin,
            None,
        )
        .await;
    assert_problem(&r, 403, "logs:read");
    // The last owner stays.
    let r = h
        .call(
            "PATCH",
            "/v1/orgs/acme/members/owner@acme.io",
            &owner,
            Some(json!({"role": "admin"})),
        )
        .await;
    assert_problem(&r, 409, "without an owner");
    assert_problem(
        &h.call(
            "PATCH",
            "/v1/orgs/acme/members/ghost@acme.io",
            &owner,
            Some(json!({"role": "admin"})),
        )
        .await,
        404,
        "not a member",
    );
    assert_problem(
        &h.call(
            "POST",
            "/v1/orgs/acme/members",
            &owner,
            Some(json!({"email": "x", "role": "admin"})),
        )
        .await,
        400,
        "email",
    );
    assert_problem(
        &h.call(
            "POST",
            "/v1/orgs/acme/members",
            &owner,
            Some(json!({"email": "y@acme.io", "role": "god"})),
        )
        .await,
        400,
        "unknown role",
    );

    let list = h.call("GET", "/v1/orgs/acme/members", &owner, None).await;
    let emails: Vec<&str> = list.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["email"].as_str().unwrap())
        .collect();
    assert_eq!(emails, ["adm@acme.io", "ops@acme.io", "owner@acme.io"]);
}

#[tokio::test]
async fn a_platform_admin_invites_an_owner_to_an_org_that_has_none() {
    let h = harness().await;
    let admin = Cred::of(&h.owner);
    let r = h
        .call(
            "POST",
            "/v1/orgs",
            &admin,
            Some(json!({"id": "initech", "owner": "bill@initech.io"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let astray = r.body["invitation"]["token"].as_str().unwrap().to_owned();
    // Bill never accepts: the platform admin invites another owner, whose invitation
    // replaces Bill's.
    let invite = |email: &'static str| {
        h.call(
            "POST",
            "/v1/orgs/initech/owner-invitation",
            &admin,
            Some(json!({ "email": email })),
        )
    };
    let r = invite("peter@initech.io").await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(
        (r.body["role"].clone(), r.body["userId"].clone()),
        (json!("owner"), Value::Null)
    );
    let token = r.body["invitation"]["token"].as_str().unwrap().to_owned();
    assert_eq!(
        h.accept(&astray, "bill's passphrase here").await.status,
        StatusCode::NOT_FOUND
    );
    let r = h.accept(&token, "peter's passphrase here").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["role"], "owner");
    assert!(
        h.stored("initech").await.iter().any(|s| s
            .event
            .object
            .as_ref()
            .is_some_and(|o| o.kind == "invitation")),
        "the invitation is recorded in the org's log"
    );
    let replaced = h.stored("initech").await;
    assert!(
        replaced.iter().any(|s| s.event.action == "deleted"
            && s.event
                .object
                .as_ref()
                .is_some_and(|o| o.kind == "invitation")),
        "the replaced invitation's withdrawal is recorded in the org's log"
    );
    // An org with an owner is its owners' to staff: no new platform invitation, and none
    // made before admits anyone now.
    assert_problem(&invite("mallory@initech.io").await, 409, "has an owner");
    let r = h
        .call(
            "POST",
            "/v1/orgs",
            &admin,
            Some(json!({"id": "hooli", "owner": "gavin@hooli.io"})),
        )
        .await;
    let gavins = r.body["invitation"]["token"].as_str().unwrap().to_owned();
    let mut owner = h
        .store
        .user_by_email("peter@initech.io")
        .await
        .unwrap()
        .unwrap();
    owner.password_hash = None;
    h.store
        .add_member("hooli", owner, Role::Owner, Vec::new())
        .await
        .unwrap();
    let r = h.accept(&gavins, "gavin's passphrase here").await;
    assert_problem(&r, 404, "whoever made it can no longer make someone owner");
    assert_problem(
        &h.call(
            "POST",
            "/v1/orgs/nowhere/owner-invitation",
            &admin,
            Some(json!({"email": "x@y.io"})),
        )
        .await,
        404,
        "does not exist",
    );
    // Only a platform admin.
    assert_problem(
        &h.call(
            "POST",
            "/v1/orgs/initech/owner-invitation",
            &Cred::of(&h.other),
            Some(json!({"email": "x@y.io"})),
        )
        .await,
        403,
        "orgs:admin",
    );
}

#[tokio::test]
async fn platform_admins_create_orgs_with_a_first_owner() {
    let h = harness().await;
    let owner = Cred::of(&h.owner);
    let r = h
        .call(
            "POST",
            "/v1/orgs",
            &owner,
            Some(json!({"id": "initech", "name": "Initech", "owner": "bill@initech.io"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_problem(
        &h.call("POST", "/v1/orgs", &owner, Some(json!({"id": "initech"})))
            .await,
        409,
        "already exists",
    );
    assert_problem(
        &h.call("POST", "/v1/orgs", &owner, Some(json!({"id": "Not Valid"})))
            .await,
        400,
        "id:",
    );
    assert_problem(
        &h.call(
            "POST",
            "/v1/orgs",
            &Cred::of(&h.other),
            Some(json!({"id": "x"})),
        )
        .await,
        403,
        "orgs:admin",
    );

    let created = h.stored("initech").await;
    assert_eq!(created.len(), 1);
    assert_eq!(
        (
            created[0].event.action.as_str(),
            created[0].event.object.as_ref().unwrap().kind.as_str()
        ),
        ("created", "org")
    );
    assert!(
        h.stored("acme")
            .await
            .iter()
            .any(|s| s.event.action == "createOrg"),
        "recorded in the platform org"
    );
    // The org list: everything for the platform admin, one's own otherwise.
    let ids = |r: Reply| {
        r.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["id"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ids(h.call("GET", "/v1/orgs", &owner, None).await),
        ["acme", "initech", "umbrella"]
    );
    assert_eq!(
        ids(h.call("GET", "/v1/orgs", &Cred::of(&h.other), None).await),
        ["umbrella"]
    );
    // Its first owner is a member once they accept the invitation in the answer.
    assert!(h.store.members("initech").await.unwrap().is_empty());
    let accepted = h
        .accept(
            r.body["invitation"]["token"].as_str().unwrap(),
            "bill's own passphrase",
        )
        .await;
    assert_eq!(accepted.status, StatusCode::OK, "{:?}", accepted.body);
    let members = h.store.members("initech").await.unwrap();
    assert_eq!(
        (members[0].email.as_str(), members[0].role),
        ("bill@initech.io", Role::Owner)
    );
}

#[tokio::test]
async fn an_instance_scoped_key_reads_and_writes_that_instance_only() {
    let h = harness().await;
    let owner = Cred::of(&h.owner);
    for id in ["prod", "dev"] {
        h.call(
            "POST",
            "/v1/orgs/acme/instances",
            &owner,
            Some(json!({"id": id, "kind": "argocd"})),
        )
        .await;
    }
    h.ingest(
        "acme",
        json!([
            {"action": "synced", "instance": "prod", "actor": {"id": "a", "type": "user"}},
            {"action": "synced", "instance": "dev", "actor": {"id": "a", "type": "user"}},
            {"action": "login", "actor": {"id": "a", "type": "user"}},
        ]),
    )
    .await;
    let r = h.call("POST", "/v1/orgs/acme/api-keys", &owner, Some(json!({"name": "prod reader", "scopes": ["logs:read", "logs:write"], "instance": "prod"}))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let key = Cred::of(&format!(
        "{}:{}",
        r.body["id"].as_str().unwrap(),
        r.body["secret"].as_str().unwrap()
    ));

    let page = h
        .call("GET", "/v1/orgs/acme/audit-logs?category=app", &key, None)
        .await;
    let instances: Vec<&str> = page.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["instance"].as_str().unwrap_or("-"))
        .collect();
    assert_eq!(instances, ["prod"]);
    // The SIEM export of an instance key holds that instance's events only.
    let export = h
        .call(
            "GET",
            "/v1/orgs/acme/audit-logs/export?since=2000-01-01T00:00:00Z",
            &key,
            None,
        )
        .await;
    let exported: Vec<&Value> = export.body["items"].as_array().unwrap().iter().collect();
    assert!(!exported.is_empty(), "{:?}", export.body);
    assert!(
        exported.iter().all(|e| e["instance"] == "prod"),
        "{exported:?}"
    );
    assert!(
        export.body["checkpoint"].is_null(),
        "the org's checkpoint is not an instance's"
    );
    assert_problem(
        &h.call(
            "GET",
            "/v1/orgs/acme/audit-logs/export?instance=dev",
            &key,
            None,
        )
        .await,
        400,
        "covers instance \"prod\" only",
    );
    assert_problem(
        &h.call("GET", "/v1/orgs/acme/instances/dev/audit-logs", &key, None)
            .await,
        403,
        "instance \"prod\" only",
    );
    assert_problem(
        &h.call("GET", "/v1/orgs/acme/audit-logs?instance=dev", &key, None)
            .await,
        400,
        "covers instance \"prod\" only",
    );
    let w = h.call("POST", "/v1/orgs/acme/events", &key, Some(json!([{"action": "x", "instance": "prod", "actor": {"id": "a", "type": "user"}}, {"action": "x", "actor": {"id": "a", "type": "user"}}]))).await;
    assert_eq!(
        (
            w.body["accepted"].clone(),
            w.body["errors"][0]["field"].clone()
        ),
        (json!(1), json!("instance"))
    );
    let listed = h.call("GET", "/v1/orgs/acme/instances", &key, None).await;
    assert_eq!(listed.body["items"].as_array().unwrap().len(), 1);
    let r = h
        .call(
            "POST",
            "/v1/orgs/acme/api-keys",
            &owner,
            Some(json!({"name": "x", "scopes": ["keys:manage"], "instance": "prod"})),
        )
        .await;
    assert_problem(&r, 400, "logs:read and logs:write only");
    let r = h
        .call(
            "POST",
            "/v1/orgs/acme/api-keys",
            &owner,
            Some(json!({"name": "x", "scopes": ["logs:read"], "instance": "nope"})),
        )
        .await;
    assert_problem(&r, 400, "no instance");
}

#[tokio::test]
async fn repeated_failures_from_one_source_are_slowed_without_locking_out_others() {
    let h = harness().await;
    let from = |ip: &str| {
        h.app
            .clone()
            .layer(MockConnectInfo(ip.parse::<SocketAddr>().unwrap()))
    };
    let attacker = from("203.0.113.9:5000");
    let neighbour = from("198.51.100.7:5000");
    let bad = Cred::of("pat_0000.guess");
    let mut statuses = Vec::new();
    for _ in 0..25 {
        statuses.push(
            send_to(&attacker, request("GET", "/v1/me", &bad, None))
                .await
                .status
                .as_u16(),
        );
    }
    assert_eq!(&statuses[..20], &[401; 20]);
    assert_eq!(&statuses[20..], &[429; 5]);
    let r = send_to(
        &attacker,
        request("GET", "/v1/me", &Cred::of(&h.owner), None),
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "a valid credential is served, whatever its source"
    );
    let r = send_to(&attacker, request("GET", "/v1/me", &bad, None)).await;
    assert_problem(&r, 429, "too many failed attempts");
    // Password guesses count per account and source, on a budget of their own.
    let r = send_to(
        &attacker,
        request(
            "POST",
            "/v1/session",
            &Cred::None,
            Some(json!({"email": "owner@acme.io", "password": "guess guess guess"})),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // Another source is not affected, with a valid credential or a bad one.
    assert_eq!(
        send_to(
            &neighbour,
            request("GET", "/v1/me", &Cred::of(&h.owner), None)
        )
        .await
        .status,
        StatusCode::OK
    );
    assert_eq!(
        send_to(&neighbour, request("GET", "/v1/me", &bad, None))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
}

/// The secret part of a bearer token `<id>.<secret>`.
fn secret_of(token: &Value) -> String {
    token
        .as_str()
        .unwrap()
        .split('.')
        .nth(1)
        .unwrap()
        .to_owned()
}

/// A log sink for the test: everything the server logs, as text.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A session cookie is only good whole, with its own CSRF token on a change, and only
/// within its lifetime: a forged secret, an unknown id, a missing or borrowed CSRF token
/// and a session past its absolute lifetime (however active) are refused.
#[tokio::test]
async fn forged_and_expired_session_cookies_and_a_missing_csrf_header_are_refused() {
    let h = harness().await;
    let Cred::Session { cookie, csrf } = h.sign_in_with_token(&h.owner).await.unwrap() else {
        unreachable!()
    };
    let (id, secret) = cookie.split_once('.').unwrap();
    let mut flipped = secret.to_owned().into_bytes();
    flipped[0] = if flipped[0] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    for forged in [
        format!("{id}.{flipped}"),
        format!("{id}.{secret}x"),
        format!("ses_0000000000000000.{secret}"),
        id.to_owned(),
    ] {
        let as_forged = Cred::Session {
            cookie: forged.clone(),
            csrf: csrf.clone(),
        };
        let r = h.call("GET", "/v1/me", &as_forged, None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{forged}: {}", r.body);
    }
    // A change with the cookie alone, or with another session's CSRF token.
    let add = || Some(json!({"id": "prod", "kind": "argocd"}));
    let cookie_only = Request::post("/v1/orgs/acme/instances")
        .header(header::COOKIE, format!("trail_session={cookie}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(add().unwrap().to_string()))
        .unwrap();
    assert_problem(&h.send(cookie_only).await, 403, "X-CSRF-Token");
    let Cred::Session {
        csrf: other_csrf, ..
    } = h.sign_in_with_token(&h.owner).await.unwrap()
    else {
        unreachable!()
    };
    let borrowed = Cred::Session {
        cookie: cookie.clone(),
        csrf: other_csrf,
    };
    let r = h
        .call("POST", "/v1/orgs/acme/instances", &borrowed, add())
        .await;
    assert_problem(&r, 403, "X-CSRF-Token");
    let own = Cred::Session {
        cookie: cookie.clone(),
        csrf,
    };
    assert_eq!(
        h.call("POST", "/v1/orgs/acme/instances", &own, add())
            .await
            .status,
        StatusCode::CREATED
    );

    // A session used without pause still ends at its absolute lifetime: it is good until
    // then, and refused from then on.
    let lifetime = std::time::Duration::from_secs(3);
    let mut state = h.state.clone();
    state.sessions.max = lifetime;
    let short = app(state);
    let before = std::time::Instant::now();
    let signed_in = send_to(
        &short,
        request(
            "POST",
            "/v1/session",
            &Cred::None,
            Some(json!({"token": h.owner})),
        ),
    )
    .await;
    assert_eq!(signed_in.status, StatusCode::OK, "{}", signed_in.body);
    let cookie = signed_in.set_cookie.unwrap().split(';').next().unwrap()["trail_session=".len()..]
        .to_owned();
    let session = Cred::Session {
        cookie,
        csrf: signed_in.body["csrfToken"].as_str().unwrap().to_owned(),
    };
    // Used again and again, well within the idle timeout. The session was made after
    // `before`, so a use answered less than its lifetime after `before` was inside it,
    // however slowly this machine runs, and the first refusal comes no sooner than its
    // lifetime after `before`. (The margin covers the server's times, kept in microseconds.)
    let margin = std::time::Duration::from_millis(10);
    let ended = loop {
        let r = send_to(&short, request("GET", "/v1/me", &session, None)).await;
        let answered = before.elapsed();
        if answered + margin < lifetime {
            assert_eq!(
                r.status,
                StatusCode::OK,
                "used {answered:?} after signing in: {}",
                r.body
            );
        }
        if r.status == StatusCode::UNAUTHORIZED {
            break answered;
        }
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert!(
            answered < PATIENCE,
            "a session of a {lifetime:?} lifetime still served {answered:?} after signing in"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert!(
        ended + margin >= lifetime,
        "ended {ended:?} after signing in, before its lifetime"
    );
}

/// Values that mean something to SQL (quotes, comments, wildcards, statement ends) are
/// matched as the text they are, through every filter of free text and the `q` language:
/// each finds its one event, nothing else, and no error. Through the filters whose values
/// have a form (identifiers, enumerations, statuses, addresses, routes) they find nothing
/// or are refused as not of that form, never a 5xx.
#[tokio::test]
async fn sql_metacharacters_in_filters_are_literal_values() {
    let h = harness().await;
    let values = [
        "o'brien",
        "x' OR '1'='1",
        "y\" OR 1=1 --",
        "%",
        "_",
        "a%b",
        "z; DROP TABLE events; --",
        "\\",
        "*",
    ];
    let events: Vec<Value> = values
        .iter()
        .map(|v| {
            json!({"action": v, "actor": {"id": v, "type": "user"},
                   "object": {"type": v, "id": {"kind": v, "name": v}}})
        })
        .collect();
    assert_eq!(
        h.ingest("acme", Value::Array(events)).await.status,
        StatusCode::OK
    );
    let encode = |v: &str| -> String {
        v.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    };
    for v in values {
        let quoted = format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""));
        for query in [
            format!("actor={}", encode(v)),
            format!("action={}", encode(v)),
            format!("objectName={}", encode(v)),
            format!("objectType={}", encode(v)),
            format!("objectKind={}", encode(v)),
            format!("q={}", encode(&format!("actor:{quoted}"))),
            format!(
                "q={}",
                encode(&format!("objectType:{quoted} objectKind:{quoted}"))
            ),
            format!(
                "q={}",
                encode(&format!("action:{quoted} objectName:{quoted}"))
            ),
        ] {
            let r = h
                .get(
                    &format!("/v1/orgs/acme/audit-logs?category=app&{query}"),
                    Some(&h.owner),
                )
                .await;
            assert_eq!(r.status, StatusCode::OK, "{query}: {}", r.body);
            let items = r.body["items"].as_array().unwrap();
            let actors: Vec<&str> = items
                .iter()
                .map(|e| e["actor"]["id"].as_str().unwrap())
                .collect();
            assert_eq!(actors, [v], "{query}");
        }
        for key in [
            "instance",
            "tokenId",
            "route",
            "actorType",
            "category",
            "method",
            "status",
            "ip",
        ] {
            for query in [
                format!("{key}={}", encode(v)),
                format!("q={}", encode(&format!("{key}:{quoted}"))),
            ] {
                let r = h
                    .get(&format!("/v1/orgs/acme/audit-logs?{query}"), Some(&h.owner))
                    .await;
                match r.status {
                    StatusCode::OK => {
                        assert_eq!(r.body["items"], json!([]), "{query}: {}", r.body)
                    }
                    _ => assert_problem(&r, 400, ""),
                }
            }
        }
    }
    // Everything is still there.
    assert_eq!(
        h.get("/v1/orgs/acme/audit-logs?category=app", Some(&h.owner))
            .await
            .body["items"]
            .as_array()
            .unwrap()
            .len(),
        values.len()
    );
}

/// Another org's ids, positions and seqs, given to one's own org's routes, reach nothing of
/// that org: a list cursor is a position in the caller's own log, a seq is looked up in the
/// caller's own log, and an API key or a member is found only in the org of the path.
#[tokio::test]
async fn ids_cursors_and_seqs_of_another_org_reach_nothing_of_it() {
    const MARKER: &str = "acme-only-7c1e";
    let h = harness().await;
    let owner = Cred::of(&h.owner);
    let other = Cred::of(&h.other);
    let events: Vec<Value> = (0..150)
        .map(|i| json!({"action": MARKER, "instance": "eu-1", "actor": {"id": format!("{MARKER}-{i}"), "type": "user"}}))
        .collect();
    assert_eq!(
        h.ingest("acme", Value::Array(events)).await.status,
        StatusCode::OK
    );
    let key = h
        .call(
            "POST",
            "/v1/orgs/acme/api-keys",
            &owner,
            Some(json!({"name": "siem", "scopes": ["logs:read"]})),
        )
        .await;
    let (key_id, key_secret) = (
        key.body["id"].as_str().unwrap(),
        key.body["secret"].as_str().unwrap(),
    );
    h.invited("acme", "only@acme.io", "member").await;
    let page = h
        .get("/v1/orgs/acme/audit-logs?limit=5", Some(&h.owner))
        .await;
    let cursor = page.body["nextCursor"].as_str().unwrap().to_owned();
    assert!(
        h.stored("umbrella").await.len() < 100,
        "seq 120 is acme's alone"
    );
    // The same calls on acme's own routes do carry the marker: what is looked for is there.
    for uri in [
        "/v1/orgs/acme/events/120",
        "/v1/orgs/acme/log/entries?from=120",
        "/v1/orgs/acme/instances/eu-1/audit-logs",
    ] {
        let r = h.get(uri, Some(&h.owner)).await;
        assert!(r.body.to_string().contains(MARKER), "{uri}: {}", r.body);
    }

    let attempts = [
        (
            "GET",
            format!("/v1/orgs/umbrella/audit-logs?cursor={cursor}"),
            None,
        ),
        ("GET", format!("/v1/audit-log?cursor={cursor}"), None),
        (
            "GET",
            "/v1/orgs/umbrella/instances/eu-1/audit-logs".to_owned(),
            None,
        ),
        (
            "GET",
            "/v1/orgs/umbrella/audit-logs?instance=eu-1".to_owned(),
            None,
        ),
        ("GET", "/v1/orgs/umbrella/events/120".to_owned(), None),
        (
            "GET",
            "/v1/orgs/umbrella/log/proof/inclusion?seq=120".to_owned(),
            None,
        ),
        (
            "GET",
            "/v1/orgs/umbrella/log/entries?from=120".to_owned(),
            None,
        ),
        (
            "GET",
            "/v1/orgs/umbrella/log/entries?from=0".to_owned(),
            None,
        ),
        (
            "GET",
            "/v1/orgs/umbrella/audit-logs/export?since=1970-01-01T00:00:00Z".to_owned(),
            None,
        ),
        (
            "DELETE",
            format!("/v1/orgs/umbrella/api-keys/{key_id}"),
            None,
        ),
        (
            "PATCH",
            "/v1/orgs/umbrella/members/only@acme.io".to_owned(),
            Some(json!({"role": "admin"})),
        ),
        (
            "DELETE",
            "/v1/orgs/umbrella/members/only@acme.io".to_owned(),
            None,
        ),
    ];
    for (method, uri, body) in attempts {
        let r = h.call(method, &uri, &other, body).await;
        let answer = r.body.to_string();
        assert!(!answer.contains(MARKER), "{method} {uri}: {answer}");
        assert!(
            r.status == StatusCode::OK || r.status.is_client_error(),
            "{method} {uri}: {}",
            r.status
        );
        if method != "GET" {
            assert_eq!(r.status, StatusCode::NOT_FOUND, "{method} {uri}: {answer}");
        }
    }
    // What was aimed at is untouched: the key still reads, the member keeps their role.
    let basic = format!(
        "Basic {}",
        STANDARD.encode(format!("{key_id}:{key_secret}"))
    );
    let read = h
        .get_with_authorization("/v1/orgs/acme/audit-logs?limit=1", &basic)
        .await;
    assert_eq!(read.status, StatusCode::OK);
    let members = h.get("/v1/orgs/acme/members", Some(&h.owner)).await.body;
    let member = members["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["email"] == "only@acme.io")
        .unwrap_or_else(|| panic!("{members}"));
    assert_eq!(member["role"], "member");
}

/// However a credential is presented, and however it is wrong, the refusal never carries
/// it back (an answer may be logged by a proxy or shown in a browser), and neither do the
/// metrics.
#[tokio::test]
async fn refusals_and_metrics_never_echo_a_presented_secret() {
    let h = harness().await;
    let (id, secret) = h.owner.split_once('.').unwrap();
    let key = credential(
        &*h.store,
        TokenKind::ApiKey,
        "acme",
        &[Scope::LogsRead],
        None,
        false,
    )
    .await;
    let (key_id, key_secret) = key.split_once(':').unwrap();
    let presented = [
        // A token without its scheme, the token where the scheme goes, another scheme.
        h.owner.clone(),
        format!("{} x", h.owner),
        format!("Token {}", h.owner),
        format!("Bearer{}", h.owner),
        // Malformed, or with the wrong secret.
        format!("Bearer {id}{secret}"),
        format!("Bearer {id}.{secret}x"),
        format!("Basic {}", h.owner),
        format!(
            "Basic {}",
            STANDARD.encode(format!("{key_id}:{key_secret}x"))
        ),
        format!("Basic {}", STANDARD.encode(format!("{key_id}{key_secret}"))),
        format!("basic {key_id}:{key_secret}"),
    ];
    for authorization in &presented {
        let r = h.get_with_authorization("/v1/me", authorization).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{authorization}");
        let answer = r.body.to_string();
        for s in [secret, key_secret] {
            assert!(
                !answer.contains(s),
                "{authorization} was answered with its secret: {answer}"
            );
        }
    }
    let metrics = h.get("/metrics", None).await.body.to_string();
    assert!(!metrics.contains(secret) && !metrics.contains(key_secret));
}

#[tokio::test(flavor = "current_thread")]
async fn secrets_never_reach_the_log_or_the_audit_rows() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let h = harness().await;
    let owner = Cred::of(&h.owner);
    let mut secrets = vec![
        h.owner.split('.').nth(1).unwrap().to_owned(),
        "correct horse battery".to_owned(),
    ];
    let key = h
        .call(
            "POST",
            "/v1/orgs/acme/api-keys",
            &owner,
            Some(json!({"name": "k", "role": "owner"})),
        )
        .await;
    secrets.push(key.body["secret"].as_str().unwrap().to_owned());
    let pat = h
        .call(
            "POST",
            "/v1/orgs/acme/tokens",
            &owner,
            Some(json!({"name": "p", "preset": "admin-full"})),
        )
        .await;
    secrets.push(secret_of(&pat.body["token"]));
    let bg = h
        .call(
            "POST",
            "/v1/break-glass",
            &owner,
            Some(json!({"org": "umbrella", "reason": "drill"})),
        )
        .await;
    secrets.push(secret_of(&bg.body["token"]));
    let session = h.signed_in("acme", "ana@acme.io", "owner").await;
    let Cred::Session { cookie, csrf } = &session else {
        unreachable!()
    };
    secrets.push(cookie.split('.').nth(1).unwrap().to_owned());
    secrets.push(csrf.clone());
    // Use each, fail with some, so that every path has run.
    for cred in [
        Cred::of(&format!(
            "{}:{}",
            key.body["id"].as_str().unwrap(),
            secrets[2]
        )),
        Cred::of(pat.body["token"].as_str().unwrap()),
        session.clone(),
    ] {
        h.call("GET", "/v1/audit-log", &cred, None).await;
    }
    h.get_with_authorization("/v1/me", &format!("Bearer {}x", h.owner))
        .await;
    h.sign_in("ana@acme.io", "correct horse battery!")
        .await
        .unwrap_err();

    let mut rows = String::new();
    for org in ["acme", "umbrella"] {
        for s in h.stored(org).await {
            rows.push_str(&serde_json::to_string(&s.event.record(&s.hash)).unwrap());
        }
    }
    let logged = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        rows.len() > 1000 && rows.contains("createApiKey"),
        "the rows were read"
    );
    for secret in &secrets {
        assert!(
            !rows.contains(secret.as_str()),
            "a secret is in an audit row"
        );
        assert!(
            !logged.contains(secret.as_str()),
            "a secret is in the server's log"
        );
    }
}

/// Fixes of ways a credential could outgrow itself, and of secrets reaching records.
#[tokio::test]
async fn credentials_cannot_outgrow_what_made_them() {
    let h = harness().await;
    let owner = Cred::of(&h.owner);

    // A bearer token never sets a password (it would become a full console session).
    let r = h
        .call(
            "PUT",
            "/v1/me/password",
            &owner,
            Some(json!({"currentPassword": "x", "newPassword": "attacker chosen pw"})),
        )
        .await;
    assert_problem(&r, 403, "console session signed in with a password");
    // Nor does a console session signed in with one: it holds what the token holds.
    let session = h.sign_in_with_token(&h.owner).await.unwrap();
    let r = h
        .call(
            "PUT",
            "/v1/me/password",
            &session,
            Some(json!({"currentPassword": "x", "newPassword": "attacker chosen pw"})),
        )
        .await;
    assert_problem(&r, 403, "console session signed in with a password");

    // What a short-lived token makes expires with it.
    let short = token(
        &*h.store,
        "acme",
        preset("admin-full").unwrap(),
        Some(Timestamp(trail_server::now().0 + 60_000_000)),
        false,
    )
    .await;
    let r = h
        .call(
            "POST",
            "/v1/orgs/acme/api-keys",
            &Cred::of(&short),
            Some(json!({"name": "persist", "role": "member"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let expires = Timestamp::parse(r.body["expiresAt"].as_str().expect("capped")).unwrap();
    assert!(expires.0 <= trail_server::now().0 + 60_000_000);

    // A break-glass token reads; it makes no credentials, and it can be ended early.
    let r = h
        .call(
            "POST",
            "/v1/break-glass",
            &owner,
            Some(json!({"org": "acme", "reason": "drill", "scopes": ["logs:read", "keys:manage"]})),
        )
        .await;
    let (bg_id, bg) = (
        r.body["id"].as_str().unwrap().to_owned(),
        Cred::of(r.body["token"].as_str().unwrap()),
    );
    let r = h
        .call(
            "POST",
            "/v1/orgs/acme/api-keys",
            &bg,
            Some(json!({"name": "persist", "scopes": ["logs:read"]})),
        )
        .await;
    assert_problem(&r, 403, "break-glass token cannot make this call");
    assert_eq!(
        h.call("DELETE", &format!("/v1/break-glass/{bg_id}"), &owner, None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_problem(
        &h.call("GET", "/v1/audit-log", &bg, None).await,
        401,
        "revoked",
    );
    assert_problem(
        &h.call("DELETE", "/v1/break-glass/bg_nope", &owner, None)
            .await,
        404,
        "no break-glass token",
    );

    // Clients cannot write records that pass for Trail's own management records.
    let forged = h.ingest("acme", json!([{"action": "created", "category": "management", "actor": {"id": "x", "type": "user"}}])).await;
    assert_eq!(forged.body["errors"][0]["field"], "category");
}

#[tokio::test]
async fn passwords_leave_no_digest_and_console_refusals_are_recorded() {
    let h = harness().await;
    let session = h.signed_in("acme", "ana@acme.io", "owner").await;
    // Sign-in takes JSON only (a cross-site form cannot sign a browser in).
    let form = Request::post("/v1/session")
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from(
            r#"{"email":"ana@acme.io","password":"correct horse battery"}"#,
        ))
        .unwrap();
    assert_eq!(
        h.send(form).await.status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    // The records of calls that carried a password hold no digest of their body.
    let Cred::Session { cookie, csrf } = &session else {
        unreachable!()
    };
    let r = h.call("PUT", "/v1/me/password", &session, Some(json!({"currentPassword": "correct horse battery", "newPassword": "a new long password"}))).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let records = h.stored("acme").await;
    for action in ["signIn", "acceptInvitation", "setPassword"] {
        let rec = records
            .iter()
            .find(|s| s.event.action == action)
            .unwrap_or_else(|| panic!("{action} recorded"));
        assert_eq!(
            rec.event.request.as_ref().unwrap().body_sha256,
            None,
            "{action}"
        );
    }
    // A console call refused for its CSRF token is recorded, attributed to the user.
    let forged = Cred::Session {
        cookie: cookie.clone(),
        csrf: format!("{csrf}x"),
    };
    let before = h.stored("acme").await.len();
    assert_eq!(
        h.call("DELETE", "/v1/session", &forged, None).await.status,
        StatusCode::FORBIDDEN
    );
    let after = h.stored("acme").await;
    assert_eq!(after.len(), before + 1);
    let last = after.last().unwrap();
    assert_eq!(
        (
            last.event.actor.id.as_str(),
            last.event.request.as_ref().unwrap().status
        ),
        ("ana@acme.io", 403)
    );
}

async fn text(h: &Harness, uri: &str, token: &str) -> (StatusCode, String) {
    let resp = h
        .app
        .clone()
        .oneshot(
            Request::get(uri)
                .header(header::AUTHORIZATION, format!("Bearer {token}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let status = resp.status();
    (
        status,
        String::from_utf8(
            resp.into_body()
                .collect()
                .await
                .unwrap()
                .to_bytes()
                .to_vec(),
        )
        .unwrap(),
    )
}

fn hash_of(v: &Value) -> [u8; 32] {
    hex::decode(v.as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap()
}

fn proof_of(v: &Value) -> Vec<[u8; 32]> {
    v["proof"].as_array().unwrap().iter().map(hash_of).collect()
}

#[tokio::test]
async fn signed_checkpoints_and_proofs_verify_with_the_served_key() {
    use trail_core::checkpoint::{VerifierKey, open};
    use trail_core::merkle::{verify_consistency, verify_inclusion};
    let h = harness().await;
    let key = h.get("/v1/log/key", Some(&h.owner)).await;
    let verifier = VerifierKey::parse(key.body["verifierKey"].as_str().unwrap()).unwrap();

    assert_problem(
        &h.get("/v1/orgs/umbrella/log/checkpoint", Some(&h.other))
            .await,
        404,
        "no signed checkpoint yet",
    );
    // Zero merge delay: the answer to a batch carries the signed checkpoint that covers it.
    let ingested = h
        .ingest(
            "acme",
            Value::Array((0..300).map(|i| event(&format!("e{i}"))).collect()),
        )
        .await
        .body;
    let covers = ingested["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["seq"].as_u64().unwrap())
        .max()
        .unwrap()
        + 2; // the batch and, after it, the call's own record
    let answered = open(ingested["checkpoint"]["note"].as_str().unwrap(), &verifier).unwrap();
    assert_eq!(answered.size, covers);
    assert_eq!(ingested["checkpoint"]["size"], covers);
    assert_eq!(ingested["checkpoint"]["root"], hex::encode(answered.root));
    let (status, first) = text(&h, "/v1/orgs/acme/log/checkpoint", &h.owner).await;
    assert_eq!(status, StatusCode::OK);
    let first = open(&first, &verifier).unwrap();
    assert_eq!(first.origin, "trail.test/acme");
    assert!(
        first.size >= covers,
        "the newest is this one or a later one"
    );

    h.ingest("acme", json!([event("late")])).await;
    let (_, second) = text(&h, "/v1/orgs/acme/log/checkpoint", &h.owner).await;
    let second = open(&second, &verifier).unwrap();
    assert!(second.size > first.size);

    // Inclusion of an event in the newest checkpoint, from its detail alone.
    let detail = h.get("/v1/orgs/acme/events/42", Some(&h.owner)).await;
    assert_eq!(detail.status, StatusCode::OK, "{:?}", detail.body);
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(detail.body["event"]["canonical"].as_str().unwrap())
        .unwrap();
    let leaf = trail_core::merkle::leaf_hash(&bytes);
    assert_eq!(hex::encode(leaf), detail.body["leafHash"].as_str().unwrap());
    let inc = &detail.body["inclusion"];
    let signed = open(inc["checkpoint"].as_str().unwrap(), &verifier).unwrap();
    assert!(verify_inclusion(
        &leaf,
        42,
        signed.size,
        &proof_of(inc),
        &signed.root
    ));

    // The proof endpoints, against the signed roots.
    let p = h
        .get(
            &format!(
                "/v1/orgs/acme/log/proof/inclusion?seq=7&size={}",
                first.size
            ),
            Some(&h.owner),
        )
        .await;
    assert!(verify_inclusion(
        &hash_of(&p.body["leafHash"]),
        7,
        first.size,
        &proof_of(&p.body),
        &first.root
    ));
    let c = h
        .get(
            &format!(
                "/v1/orgs/acme/log/proof/consistency?from={}&to={}",
                first.size, second.size
            ),
            Some(&h.owner),
        )
        .await;
    assert_eq!(c.body["to"], second.size);
    assert!(verify_consistency(
        first.size,
        second.size,
        &first.root,
        &second.root,
        &proof_of(&c.body)
    ));
    let (_, old) = text(
        &h,
        &format!("/v1/orgs/acme/log/checkpoint?size={}", first.size),
        &h.owner,
    )
    .await;
    assert_eq!(
        open(&old, &verifier).unwrap(),
        first,
        "every checkpoint is kept"
    );
    // One checkpoint for every transaction that appended: the two above among them.
    let list = h.get("/v1/orgs/acme/log/checkpoints", Some(&h.owner)).await;
    let sizes: Vec<u64> = list.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["size"].as_u64().unwrap())
        .collect();
    assert!(sizes.windows(2).all(|w| w[0] < w[1]), "{sizes:?}");
    assert!(sizes.contains(&first.size) && sizes.contains(&second.size));

    // Entries carry the bytes that were hashed.
    let entries = h
        .get("/v1/orgs/acme/log/entries?from=5&limit=3", Some(&h.owner))
        .await;
    let items = entries.body["items"].as_array().unwrap();
    assert_eq!(
        items
            .iter()
            .map(|e| e["seq"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [5, 6, 7]
    );
    assert_eq!(entries.body["nextFrom"], 8);
    for e in items {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(e["canonical"].as_str().unwrap())
            .unwrap();
        assert_eq!(
            hex::encode(trail_core::merkle::leaf_hash(&bytes)),
            e["hash"].as_str().unwrap()
        );
    }

    for (uri, status, detail) in [
        (
            // Past the newest checkpoint, however many calls have been recorded since.
            format!(
                "/v1/orgs/acme/log/proof/inclusion?seq={}",
                second.size + 100_000
            ),
            400,
            "is not in a tree of",
        ),
        (
            "/v1/orgs/acme/log/proof/inclusion".to_owned(),
            400,
            "seq is required",
        ),
        (
            "/v1/orgs/acme/log/proof/inclusion?seq=x".to_owned(),
            400,
            "not a whole number",
        ),
        (
            "/v1/orgs/acme/log/proof/inclusion?seq=1&size=999999".to_owned(),
            400,
            "more than the log's",
        ),
        (
            "/v1/orgs/acme/log/proof/consistency?from=9&to=3".to_owned(),
            400,
            "after to",
        ),
        (
            "/v1/orgs/acme/log/checkpoint?size=3".to_owned(),
            404,
            "no checkpoint of size 3",
        ),
        (
            "/v1/orgs/acme/events/999999".to_owned(),
            404,
            "no event 999999",
        ),
        ("/v1/orgs/acme/events/abc".to_owned(), 400, "not a seq"),
    ] {
        assert_problem(&h.get(&uri, Some(&h.owner)).await, status, detail);
    }
}

#[tokio::test]
async fn perf_figures_equal_those_computed_from_the_same_rows() {
    let h = harness().await;
    // Known calls: three routes, statuses and latencies chosen by hand.
    let mut calls = Vec::new();
    let mut expected: std::collections::BTreeMap<&str, Vec<(u16, f64)>> = Default::default();
    for i in 0..40u32 {
        let (route, status, ms) = match i % 4 {
            0 | 1 => (
                "GET /v1/tenants/:id",
                if i % 10 == 0 { 500 } else { 200 },
                1.0 + i as f64,
            ),
            2 => (
                "POST /v1/tenants",
                if i % 6 == 2 { 409 } else { 201 },
                10.0 * i as f64,
            ),
            _ => ("DELETE /v1/tenants/:id", 204, 0.5),
        };
        expected.entry(route).or_default().push((status, ms));
        calls.push(json!({"action": "call", "category": "api", "actor": {"id": "svc", "type": "api_key"},
            "request": {"method": (route.split(' ').next().unwrap()), "route": route, "status": status, "latencyMs": ms}}));
    }
    h.ingest("acme", Value::Array(calls)).await;
    let got = h
        .get(
            "/v1/orgs/acme/perf?since=1h&route=/v1/tenants/:id",
            Some(&h.owner),
        )
        .await;
    assert_eq!(got.status, StatusCode::OK, "{:?}", got.body);
    // The hour asked about, to whole minutes: the 61 it touches (60 if it began on one).
    let window = got.body["windowMinutes"].as_f64().unwrap();
    assert!(window == 61.0 || window == 60.0, "{window}");
    assert!(got.body["since"].as_str().unwrap().ends_with(":00.000000Z"));
    assert_eq!(got.body["spanMinutes"], 1.0);
    let routes = got.body["routes"].as_array().unwrap();
    let names: Vec<&str> = routes
        .iter()
        .map(|r| r["route"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["GET /v1/tenants/:id", "DELETE /v1/tenants/:id"],
        "busiest first; path filter spans methods"
    );
    // Computed here independently: nearest-rank percentiles (the answer's within the error
    // its sketch states), rates per call.
    let near = |got: &Value, want: f64| {
        let got = got.as_f64().unwrap();
        assert!(
            (got - want).abs() <= want * trail_core::perf::RELATIVE_ERROR,
            "{got} for {want}"
        );
    };
    for r in routes {
        let rows = &expected[r["route"].as_str().unwrap()];
        let mut lat: Vec<f64> = rows.iter().map(|(_, ms)| *ms).collect();
        lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let rank = |p: f64| lat[((p * lat.len() as f64).ceil() as usize).max(1) - 1];
        let n = rows.len() as f64;
        assert_eq!(r["requests"], rows.len());
        near(&r["p50Ms"], rank(0.50));
        near(&r["p95Ms"], rank(0.95));
        near(&r["p99Ms"], rank(0.99));
        assert_eq!(
            r["errorRate5xx"],
            rows.iter().filter(|(s, _)| *s >= 500).count() as f64 / n
        );
        assert_eq!(
            r["errorRate4xx"],
            rows.iter().filter(|(s, _)| (400..500).contains(s)).count() as f64 / n
        );
        // Over the span in which the calls happened (one ingest: the least span, a
        // minute), not the hour asked about.
        let rpm = r["requestsPerMinute"].as_f64().unwrap();
        assert!((rpm - n / 1.0).abs() < 1e-6, "{rpm}");
    }
    // Over time: the same calls, in slices of whole minutes, every route named counted.
    let slices = got.body["overTime"].as_array().unwrap();
    assert!(!slices.is_empty() && slices.len() <= trail_server::routes::live::PERF_SLICES);
    let counted: u64 = slices.iter().map(|s| s["requests"].as_u64().unwrap()).sum();
    assert_eq!(counted, 30, "the GET and DELETE calls");
    assert_eq!(got.body["sliceSeconds"].as_f64().unwrap() % 60.0, 0.0);
    assert_problem(
        &h.get("/v1/orgs/acme/perf?since=1h&until=2h", Some(&h.owner))
            .await,
        400,
        "until must be after since",
    );
    assert_problem(
        &h.get("/v1/orgs/acme/perf?window=1h", Some(&h.owner)).await,
        400,
        "unknown parameter",
    );
}

/// Reads an SSE body until `needle` and the end of its block have arrived ([`PATIENCE`] at
/// most for each frame).
async fn read_sse_until(body: &mut Body, needle: &str) -> String {
    let mut text = String::new();
    while !text
        .find(needle)
        .is_some_and(|at| text[at..].contains("\n\n"))
    {
        let frame = tokio::time::timeout(PATIENCE, body.frame())
            .await
            .unwrap_or_else(|_| panic!("{needle:?} within {PATIENCE:?}; so far: {text}"))
            .expect("the stream goes on")
            .unwrap();
        if let Some(data) = frame.data_ref() {
            text.push_str(std::str::from_utf8(data).unwrap());
        }
    }
    text
}

/// The last `id:` of an SSE text.
fn last_sse_id(text: &str) -> u64 {
    text.lines()
        .rev()
        .find_map(|l| l.strip_prefix("id: "))
        .expect("an id")
        .parse()
        .unwrap()
}

#[tokio::test]
async fn the_live_tail_is_woken_by_commits_says_how_far_it_read_and_ends_when_the_server_stops() {
    let h = harness().await;
    let open = || {
        Request::get("/v1/orgs/acme/audit-logs/stream?action=wanted")
            .header(header::AUTHORIZATION, format!("Bearer {}", h.owner))
            .body(Body::empty())
            .unwrap()
    };
    let mut body = h.app.clone().oneshot(open()).await.unwrap().into_body();
    // Only filtered-out events so far: an id-only block says how far the tail has read.
    h.ingest("acme", json!([event("unwanted")])).await;
    let size = h.store.log_size("acme").await.unwrap();
    let text = read_sse_until(&mut body, &format!("id: {}\n", size - 1)).await;
    assert!(!text.contains("data:"), "{text}");
    // Each commit wakes it: a wanted event a while later arrives, however long it waited.
    for round in 0..3 {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        h.ingest("acme", json!([event("wanted")])).await;
        let text = read_sse_until(&mut body, "event: audit").await;
        assert!(
            text.contains("\"action\":\"wanted\""),
            "round {round}: {text}"
        );
    }
    // A server that stops ends its streams: the body ends instead of holding the stop up.
    h.state.stopping.cancel();
    let end = tokio::time::timeout(PATIENCE, async {
        while let Some(frame) = body.frame().await {
            frame.unwrap();
        }
    })
    .await;
    assert!(end.is_ok(), "the stream ended when the server stopped");
    // And one opened while it stops ends at once.
    let mut late = h.app.clone().oneshot(open()).await.unwrap().into_body();
    let end = tokio::time::timeout(PATIENCE, async {
        while let Some(frame) = late.frame().await {
            frame.unwrap();
        }
    })
    .await;
    assert!(end.is_ok(), "a stream opened while stopping ends");
}

/// Reads an SSE body to its end ([`PATIENCE`] at most) and answers what it carried.
async fn read_sse_to_end(body: &mut Body) -> String {
    let mut text = String::new();
    tokio::time::timeout(PATIENCE, async {
        while let Some(frame) = body.frame().await {
            if let Some(data) = frame.unwrap().data_ref() {
                text.push_str(std::str::from_utf8(data).unwrap());
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the stream ends within {PATIENCE:?}"));
    text
}

#[tokio::test]
async fn a_live_tail_ends_once_its_credential_no_longer_reads_the_org() {
    let h = harness().await;
    let member = h.signed_in("acme", "m@acme.io", "owner").await;
    let key = h.signed_in("acme", "k@acme.io", "owner").await;
    let r = h
        .call(
            "POST",
            "/v1/orgs/acme/api-keys",
            &key,
            Some(json!({"name": "siem", "scopes": ["logs:read"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let key_id = r.body["id"].as_str().unwrap().to_owned();
    let api_key = Cred::of(&format!("{key_id}:{}", r.body["secret"].as_str().unwrap()));
    let uri = "/v1/orgs/acme/audit-logs/stream?action=wanted";
    let mut tails = Vec::new();
    for cred in [&member, &api_key, &Cred::of(&h.owner)] {
        let resp = h
            .app
            .clone()
            .oneshot(request("GET", uri, cred, None))
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        tails.push(resp.into_body());
    }
    h.ingest("acme", json!([event("wanted")])).await;
    for body in &mut tails {
        read_sse_until(body, "event: audit").await;
    }
    // The co-owner is made a member (who does not read the log), the key revoked: their
    // open tails send nothing more.
    let r = h
        .call(
            "PATCH",
            "/v1/orgs/acme/members/m@acme.io",
            &Cred::of(&h.owner),
            Some(json!({"role": "member"})),
        )
        .await;
    assert!(r.status.is_success(), "{:?}", r.body);
    let r = h
        .call(
            "DELETE",
            &format!("/v1/orgs/acme/api-keys/{key_id}"),
            &Cred::of(&h.owner),
            None,
        )
        .await;
    assert!(r.status.is_success(), "{:?}", r.body);
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    h.ingest("acme", json!([event("wanted")])).await;
    let mut owner = tails.pop().unwrap();
    read_sse_until(&mut owner, "event: audit").await;
    for mut body in tails {
        let rest = read_sse_to_end(&mut body).await;
        assert!(!rest.contains("event: audit"), "{rest}");
    }
    // A reconnection is refused, saying why.
    let r = h.call("GET", uri, &api_key, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{:?}", r.body);
}

#[tokio::test]
async fn the_live_tail_streams_new_matching_events_and_resumes() {
    let h = harness().await;
    h.ingest("acme", json!([event("old")])).await;
    let req = Request::get("/v1/orgs/acme/audit-logs/stream?action=wanted")
        .header(header::AUTHORIZATION, format!("Bearer {}", h.owner))
        .body(Body::empty())
        .unwrap();
    let resp = h.app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut body = resp.into_body();
    h.ingest("acme", json!([event("unwanted"), event("wanted")]))
        .await;
    let text = read_sse_until(&mut body, "event: audit").await;
    assert!(text.contains("\"action\":\"wanted\""), "{text}");
    assert!(
        !text.contains("unwanted") && !text.contains("\"old\""),
        "{text}"
    );
    let id = last_sse_id(&text);

    // Resuming after that seq sees only what came later.
    h.ingest("acme", json!([event("wanted")])).await;
    let req = Request::get("/v1/orgs/acme/audit-logs/stream?action=wanted")
        .header(header::AUTHORIZATION, format!("Bearer {}", h.owner))
        .header("last-event-id", id.to_string())
        .body(Body::empty())
        .unwrap();
    let mut body = h.app.clone().oneshot(req).await.unwrap().into_body();
    let text = read_sse_until(&mut body, "event: audit").await;
    let next = last_sse_id(&text);
    assert!(next > id, "{text}");
    assert_problem(
        &h.get("/v1/orgs/acme/audit-logs/stream?from=x", Some(&h.owner))
            .await,
        400,
        "not a seq",
    );
}

#[tokio::test]
async fn the_heads_file_keeps_the_newest_signed_head_of_each_log() {
    let h = harness().await;
    let file = h._dir.path().join("log-heads.json");
    let heads =
        trail_server::log::Heads::new(h.store.clone(), h.state.log_key.clone(), Some(file.clone()));
    let kept =
        || -> Value { serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap() };
    h.ingest("acme", json!([event("a")])).await;
    assert!(heads.round().await.unwrap() >= 1);
    let newest = h.store.checkpoint("acme", None).await.unwrap().unwrap();
    assert_eq!(
        kept()["acme"],
        json!([newest.size, hex::encode(newest.root)])
    );
    assert_eq!(heads.round().await.unwrap(), 0, "nothing newer");
    let ingested = h.ingest("acme", json!([event("b")])).await.body;
    assert_eq!(
        heads.round().await.unwrap(),
        1,
        "acme grew; umbrella did not"
    );
    let newest = h.store.checkpoint("acme", None).await.unwrap().unwrap();
    assert_eq!(kept()["acme"][0], newest.size);
    assert!(newest.size >= ingested["checkpoint"]["size"].as_u64().unwrap());
}

/// Review finding: a heads file that could not be read was taken for an empty one, so a store
/// rolled back to an older copy would have been signed over, and the file overwritten.
#[tokio::test]
async fn a_damaged_heads_file_stops_the_signer_from_starting() {
    let h = harness().await;
    let file = h._dir.path().join("log-heads.json");
    let heads = || {
        trail_server::log::Heads::new(h.store.clone(), h.state.log_key.clone(), Some(file.clone()))
    };
    std::fs::write(&file, "{\"acme\": [3, \"not hex\"]}").unwrap();
    let err = heads().start_signing().await.unwrap_err();
    assert!(format!("{err:#}").contains("is damaged"), "{err:#}");
    std::fs::write(&file, "{ truncated").unwrap();
    assert!(heads().start_signing().await.is_err());
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "{ truncated",
        "left as it was found"
    );
    std::fs::remove_file(&file).unwrap();
    h.ingest("acme", json!([event("a")])).await;
    heads().start_signing().await.unwrap();
    assert!(file.exists(), "a missing file is a first start");
}

/// Review finding: an admin could revoke an owner's PAT, the platform admin's bootstrap token
/// included. Revoking another's credential takes every scope it holds.
#[tokio::test]
async fn nobody_revokes_a_credential_that_holds_more_than_they_do() {
    let h = harness().await;
    let admin = h.signed_in("acme", "ops@acme.io", "admin").await;
    let boot_id = h.owner.split_once('.').unwrap().0.to_owned();
    let r = h
        .call(
            "DELETE",
            &format!("/v1/orgs/acme/tokens/{boot_id}"),
            &admin,
            None,
        )
        .await;
    assert_problem(&r, 403, "holds scopes you do not");
    let owner_pat = token(&*h.store, "acme", &[Scope::LogsRead], None, false).await;
    let owner_pat_id = owner_pat.split_once('.').unwrap().0.to_owned();
    let r = h
        .call(
            "DELETE",
            &format!("/v1/orgs/acme/tokens/{owner_pat_id}"),
            &admin,
            None,
        )
        .await;
    assert_problem(&r, 403, "holds scopes you do not");
    // Both still work.
    assert_eq!(h.get("/v1/me", Some(&h.owner)).await.status, StatusCode::OK);
    assert_eq!(
        h.get("/v1/me", Some(&owner_pat)).await.status,
        StatusCode::OK
    );
    // An owner revokes an owner's narrower PAT; the platform admin's token needs a platform
    // admin.
    let boss = h.signed_in("acme", "boss@acme.io", "owner").await;
    let r = h
        .call(
            "DELETE",
            &format!("/v1/orgs/acme/tokens/{owner_pat_id}"),
            &boss,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    let r = h
        .call(
            "DELETE",
            &format!("/v1/orgs/acme/tokens/{boot_id}"),
            &boss,
            None,
        )
        .await;
    assert_problem(&r, 403, "holds scopes you do not");
}

/// Review finding: a read-only break-glass token could revoke its minter's PATs (it carries
/// their user). Revoking a PAT is for people, and another's takes members:manage.
#[tokio::test]
async fn a_break_glass_token_cannot_revoke_its_minters_tokens() {
    let h = harness().await;
    let bg = credential(
        &*h.store,
        TokenKind::BreakGlass,
        "acme",
        &[Scope::LogsRead, Scope::ArchivesRead],
        Some(Timestamp(i64::MAX / 2)),
        false,
    )
    .await;
    let boot_id = h.owner.split_once('.').unwrap().0.to_owned();
    let r = h
        .call(
            "DELETE",
            &format!("/v1/orgs/acme/tokens/{boot_id}"),
            &Cred::of(&bg),
            None,
        )
        .await;
    assert_problem(&r, 403, "break-glass token cannot make this call");
    assert_eq!(h.get("/v1/me", Some(&h.owner)).await.status, StatusCode::OK);
}

/// Review finding: a break-glass token, a short-lived PAT or an API key could create a member
/// with a password: a sign-in that outlives the credential that made it. Members are now
/// invited and choose their own password, and only a lasting person can invite.
#[tokio::test]
async fn members_are_invited_by_lasting_people_and_choose_their_own_password() {
    let h = harness().await;
    let s: &dyn Store = &*h.store;
    let all: Vec<Scope> = preset("admin-full").unwrap().to_vec();
    let soon = Some(Timestamp(i64::MAX / 2));
    let body = json!({"email": "mallory@evil.io", "role": "owner"});
    for (what, cred, detail) in [
        (
            "break-glass",
            credential(s, TokenKind::BreakGlass, "acme", &all, soon, false).await,
            "break-glass token cannot make this call",
        ),
        (
            "expiring PAT",
            token(s, "acme", &all, soon, false).await,
            "outlives this credential",
        ),
        (
            "API key",
            credential(s, TokenKind::ApiKey, "acme", &all, None, false).await,
            "API key cannot make this call",
        ),
    ] {
        let r = h
            .call(
                "POST",
                "/v1/orgs/acme/members",
                &Cred::of(&cred),
                Some(body.clone()),
            )
            .await;
        assert_problem(&r, 403, detail);
        assert!(
            s.user_by_email("mallory@evil.io").await.unwrap().is_none(),
            "{what} made no user"
        );
    }
    // Nobody sets another person's password.
    let r = h
        .call(
            "POST",
            "/v1/orgs/acme/members",
            &Cred::of(&h.owner),
            Some(json!({"email": "ana@acme.io", "role": "member", "password": "correct horse battery"})),
        )
        .await;
    assert_problem(&r, 400, "choose their own password");
    // The invitation works once, and its holder signs in with what they chose.
    let added = h
        .call(
            "POST",
            "/v1/orgs/acme/members",
            &Cred::of(&h.owner),
            Some(json!({"email": "ana@acme.io", "role": "member"})),
        )
        .await;
    assert_eq!(added.status, StatusCode::CREATED, "{:?}", added.body);
    let invitation = added.body["invitation"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(invitation.starts_with("inv_"));
    assert!(h.sign_in("ana@acme.io", "anything at all").await.is_err());
    // An invitation is no credential.
    assert_eq!(
        h.get("/v1/me", Some(&invitation)).await.status,
        StatusCode::UNAUTHORIZED
    );
    let wrong = format!("{}x", invitation);
    assert_problem(
        &h.accept(&wrong, "my own passphrase").await,
        404,
        "not valid",
    );
    assert_problem(&h.accept(&invitation, "short").await, 400, "at least");
    assert_eq!(
        h.accept(&invitation, "my own passphrase").await.status,
        StatusCode::OK
    );
    assert_problem(
        &h.accept(&invitation, "another passphrase").await,
        404,
        "not valid",
    );
    assert!(h.sign_in("ana@acme.io", "my own passphrase").await.is_ok());
    // The acceptance is recorded in the org, by the invitee, without a digest of the body.
    let records = h.stored("acme").await;
    let accepted = records
        .iter()
        .find(|s| s.event.action == "acceptInvitation")
        .expect("recorded");
    assert_eq!(accepted.event.actor.id, "ana@acme.io");
    assert_eq!(accepted.event.request.as_ref().unwrap().body_sha256, None);
    assert!(records.iter().any(|s| s.event.category == "management"
        && s.event.action == "created"
        && s.event.actor.id == "ana@acme.io"
        && s.event.object.as_ref().is_some_and(|o| o.kind == "member")));
}

/// Review finding: an instance-scoped key read org-wide perf figures (other instances' routes
/// and error rates).
#[tokio::test]
async fn an_instance_key_reads_no_org_wide_figures() {
    let h = harness().await;
    let mut m = mint(CredentialSpec {
        kind: TokenKind::ApiKey,
        org: "acme".into(),
        owner: "prod".into(),
        user_id: None,
        name: "prod".into(),
        description: String::new(),
        scopes: vec![Scope::LogsRead],
        instance: Some("prod".into()),
        created_by: "test".into(),
        created_at: NOW,
        expires_at: None,
        reach: trail_store::Reach::Own,
    });
    m.token.instance = Some("prod".into());
    let key = format!("{}:{}", m.token.id, m.secret);
    h.store.create_token(m.token, Vec::new()).await.unwrap();
    for uri in [
        "/v1/orgs/acme/perf",
        "/v1/orgs/acme/log/entries?from=0",
        "/v1/orgs/acme/log/checkpoint",
    ] {
        let r = h.get(uri, Some(&key)).await;
        assert_problem(&r, 403, "restricted to instance \"prod\"");
    }
    assert_eq!(
        h.get("/v1/orgs/acme/instances/prod/audit-logs", Some(&key))
            .await
            .status,
        StatusCode::OK
    );
}

/// Review finding: a user with no org left kept a working session, and their calls landed in
/// the platform org's log.
#[tokio::test]
async fn a_user_in_no_org_is_refused_and_writes_nowhere() {
    let h = harness().await;
    let session = h.signed_in("umbrella", "temp@umbrella.io", "member").await;
    let r = h
        .call(
            "DELETE",
            "/v1/orgs/umbrella/members/temp@umbrella.io",
            &Cred::of(&h.other),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let before = h.stored("acme").await.len();
    assert_problem(&h.get("/v1/me", None).await, 401, "");
    let r = h.call("GET", "/v1/me", &session, None).await;
    assert_problem(&r, 401, "no longer a member of any org");
    let r = h.sign_in("temp@umbrella.io", "correct horse battery").await;
    assert_problem(&r.err().unwrap(), 401, "no longer a member of any org");
    assert_eq!(
        h.stored("acme").await.len(),
        before,
        "nothing in the platform org"
    );
}

/// Review finding: any logs:write credential could ingest an event that read exactly like a
/// call Trail recorded itself (category api, a break-glass actor, another user's token id).
/// Every ingested event now carries the credential that sent it, covered by its leaf hash;
/// Trail's own records carry none.
#[tokio::test]
async fn ingested_events_carry_their_provenance_and_cannot_pass_as_trails_own() {
    let h = harness().await;
    let key = credential(
        &*h.store,
        TokenKind::ApiKey,
        "acme",
        &[Scope::LogsWrite],
        None,
        false,
    )
    .await;
    let key_id = key.split_once(':').unwrap().0.to_owned();
    let boot_id = h.owner.split_once('.').unwrap().0.to_owned();
    let forged = json!([{
        "action": "listAuditLogs",
        "category": "api",
        "actor": {"id": "owner@acme.io", "type": "break_glass", "tokenId": boot_id},
        "request": {"method": "GET", "route": "GET /v1/orgs/:org/audit-logs", "status": 200}
    }]);
    let r = h
        .call(
            "POST",
            "/v1/orgs/acme/events",
            &Cred::of(&key),
            Some(forged),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let stored = h.stored("acme").await;
    let ingested = stored
        .iter()
        .find(|s| s.event.action == "listAuditLogs")
        .unwrap();
    assert_eq!(
        ingested.event.submitted_by.as_deref(),
        Some(key_id.as_str())
    );
    // Covered by the hash: the same event without its provenance hashes differently.
    let mut stripped = ingested.event.clone();
    stripped.submitted_by = None;
    assert_ne!(trail_core::canonical::leaf_hash(&stripped), ingested.hash);
    assert_eq!(
        trail_core::canonical::leaf_hash(&ingested.event),
        ingested.hash
    );
    // Trail's own record of the ingest call carries none.
    let own = stored
        .iter()
        .find(|s| s.event.action == "ingestEvents")
        .unwrap();
    assert_eq!(own.event.submitted_by, None);
    // Readers see where each came from.
    let page = h
        .get("/v1/orgs/acme/audit-logs?limit=1000", Some(&h.owner))
        .await;
    let items = page.body["items"].as_array().unwrap();
    let forged_row = items
        .iter()
        .find(|e| e["action"] == "listAuditLogs" && e["actor"]["type"] == "break_glass")
        .unwrap();
    assert_eq!(forged_row["submittedBy"], key_id.as_str());
    let own_row = items
        .iter()
        .find(|e| e["action"] == "ingestEvents")
        .unwrap();
    assert!(own_row.get("submittedBy").is_none(), "{own_row}");
    // A client cannot name a submitter.
    let r = h
        .call(
            "POST",
            "/v1/orgs/acme/events",
            &Cred::of(&key),
            Some(json!([{"action": "x", "actor": {"id": "a", "type": "user"}, "submittedBy": "trail"}])),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.body["errors"][0]["field"], "submittedBy");
    // The same id sent again by another credential is not the same submission.
    let again = json!([{"id": "once", "action": "x", "actor": {"id": "a", "type": "user"}}]);
    let first = h
        .call(
            "POST",
            "/v1/orgs/acme/events",
            &Cred::of(&key),
            Some(again.clone()),
        )
        .await;
    assert_eq!(first.body["accepted"], 1);
    let same = h
        .call(
            "POST",
            "/v1/orgs/acme/events",
            &Cred::of(&key),
            Some(again.clone()),
        )
        .await;
    assert_eq!(same.body["duplicates"], 1);
    let other = h.ingest("acme", again).await;
    assert_eq!(other.body["errors"][0]["field"], "id", "{:?}", other.body);
}

/// Another org's routes, however many, neither break nor change a path-only route filter:
/// it stands for one template per registered method, looked up exactly.
#[tokio::test]
async fn a_path_only_route_filter_is_not_hurt_by_another_orgs_routes() {
    let h = harness().await;
    // Methods outside the IANA registry are refused at ingest, each event by its index...
    let forged: Vec<Value> = (0..1000)
        .map(|i| {
            json!({"action": "call", "actor": {"id": "mallory", "type": "api_key"},
                   "request": {"method": format!("M{i}"), "route": format!("M{i} /v1/tenants"), "status": 200}})
        })
        .collect();
    let r = h
        .post(
            "/v1/orgs/umbrella/events",
            &h.other,
            "application/json",
            Value::Array(forged).to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.body);
    assert!(
        h.stored("umbrella")
            .await
            .iter()
            .all(|s| s.event.actor.id != "mallory")
    );
    // ...and 36,000 such routes already stored (from before methods were checked) do not
    // reach acme's filter.
    let legacy: Vec<trail_core::EventBody> = (0..36_000)
        .map(|i| {
            let mut e = trail_core::EventBody::from_json(
                json!({"action": "call", "actor": {"id": "mallory", "type": "api_key"},
                       "request": {"method": "GET", "route": "/", "status": 200}}),
                "umbrella",
            )
            .unwrap();
            let r = e.request.as_mut().unwrap();
            r.method = format!("M{i}");
            r.route = format!("M{i} /v1/tenants");
            e
        })
        .collect();
    h.store.append("umbrella", legacy).await.unwrap();
    let calls = |method: &str, route: &str| {
        json!({"action": "call", "actor": {"id": "svc", "type": "api_key"},
               "request": {"method": method, "route": route, "status": 200}})
    };
    let r = h
        .ingest(
            "acme",
            json!([
                calls("GET", "GET /v1/tenants"),
                calls("POST", "POST /v1/tenants"),
                calls("GET", "GET /v1/tenants/:id"),
            ]),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = h
        .get("/v1/orgs/acme/audit-logs?route=/v1/tenants", Some(&h.owner))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let mut routes: Vec<&str> = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["request"]["route"].as_str().unwrap())
        .collect();
    routes.sort();
    assert_eq!(routes, ["GET /v1/tenants", "POST /v1/tenants"]);
}

#[tokio::test]
async fn a_filter_with_too_many_terms_answers_400_naming_the_limit() {
    let h = harness().await;
    let params: Vec<String> = (0..300).map(|i| format!("route=/v1/r{i}")).collect();
    let r = h
        .get(
            &format!("/v1/orgs/acme/audit-logs?{}", params.join("&")),
            Some(&h.owner),
        )
        .await;
    assert_problem(&r, 400, "at most 32");
    let q: Vec<String> = (0..33).map(|i| format!("route:/v1/r{i}")).collect();
    let r = h
        .get(
            &format!("/v1/orgs/acme/audit-logs?q={}", q.join("+")),
            Some(&h.owner),
        )
        .await;
    assert_problem(&r, 400, "at most 32");
    let ok: Vec<String> = (0..32).map(|i| format!("route=/v1/r{i}")).collect();
    let r = h
        .get(
            &format!("/v1/orgs/acme/audit-logs?{}", ok.join("&")),
            Some(&h.owner),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
}

#[tokio::test]
async fn a_query_past_its_deadline_answers_503_with_retry_after() {
    let h = harness().await;
    let events: Vec<Value> = (0..500).map(|i| event(&format!("e{i}"))).collect();
    h.ingest("acme", Value::Array(events)).await;
    h.store.set_query_deadline(std::time::Duration::ZERO);
    let resp = h
        .app
        .clone()
        .oneshot(request(
            "GET",
            "/v1/orgs/acme/audit-logs?actor=alice&limit=500",
            &Cred::of(&h.owner),
            None,
        ))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(resp.headers().contains_key(header::RETRY_AFTER));
    let r = send_to(
        &h.app,
        request(
            "GET",
            "/v1/orgs/acme/audit-logs?actor=alice&limit=500",
            &Cred::of(&h.owner),
            None,
        ),
    )
    .await;
    assert_problem(&r, 503, "deadline");
    // Other calls go on: the credential lookup and the call's record do not need a query.
    assert_eq!(h.get("/v1/me", Some(&h.owner)).await.status, StatusCode::OK);
    h.store
        .set_query_deadline(trail_store::sqlite::QUERY_DEADLINE);
    let r = h
        .get("/v1/orgs/acme/audit-logs?actor=alice", Some(&h.owner))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
}

/// A write that fails for a reason that can pass (here: a row another connection appended to
/// acme's log behind the server's back, as an operator command on the data directory would)
/// makes `/readyz` answer 503 saying why; the writer re-reads the database, and the next write
/// succeeds and makes it ready again.
#[tokio::test]
async fn readyz_answers_503_while_writes_fail_and_the_writer_recovers() {
    let h = harness().await;
    h.ingest("acme", json!([event("first")])).await;
    let raw = rusqlite::Connection::open(h.store.path()).unwrap();
    let n = raw
        .execute(
            "INSERT INTO events (k, org, ts, rdelta, action, cat, actor, atype, hash) \
             SELECT k + 1, org, ts, rdelta, action, cat, actor, atype, hash FROM events \
             WHERE k = (SELECT max(k) FROM events \
                        WHERE org = (SELECT id FROM orgs WHERE slug = 'acme'))",
            [],
        )
        .unwrap();
    assert_eq!(n, 1);
    drop(raw);
    let failed = h.get("/v1/me", Some(&h.owner)).await;
    assert_eq!(
        failed.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{:?}",
        failed.body
    );
    let r = h.get("/readyz", None).await;
    assert_problem(&r, 503, "writes are failing");
    // The next call is recorded at the seq after the one taken behind its back.
    assert_eq!(h.get("/v1/me", Some(&h.owner)).await.status, StatusCode::OK);
    assert_eq!(h.get("/readyz", None).await.body["status"], "ready");
    let seqs: Vec<u64> = h.stored("acme").await.iter().map(|s| s.event.seq).collect();
    assert_eq!(seqs, (0..seqs.len() as u64).collect::<Vec<_>>());
    assert_eq!(h.get("/v1/me", Some(&h.owner)).await.status, StatusCode::OK);
}

/// A body that fails if anything reads it: what a layer must refuse without polling.
fn unread_body() -> Body {
    Body::from_stream(futures_util::stream::once(async {
        Err::<bytes::Bytes, std::io::Error>(std::io::Error::other("the body was read"))
    }))
}

#[tokio::test]
async fn every_error_is_problem_json_whoever_answers_it() {
    let h = harness().await;
    // A path parameter that is not UTF-8 (axum's Path rejection).
    assert_problem(
        &h.get("/v1/orgs/%ff/members", Some(&h.owner)).await,
        400,
        "",
    );
    // A management body over its limit, with no Content-Length (the body limit's rejection).
    let big = format!(r#"{{"id":"big","name":"{}"}}"#, "x".repeat(3 << 20));
    let r = h
        .send(
            Request::post("/v1/orgs")
                .header(header::AUTHORIZATION, format!("Bearer {}", h.owner))
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from_stream(futures_util::stream::iter([Ok::<
                    _,
                    std::io::Error,
                >(
                    bytes::Bytes::from(big),
                )])))
                .unwrap(),
        )
        .await;
    assert_problem(&r, 413, "larger than 2097152 bytes");
    // A declared length over the route's limit is refused before the body is read, so a
    // client that sent `Expect: 100-continue` never gets `100 Continue`.
    for (uri, length) in [
        ("/v1/orgs/acme/events", (17 << 20).to_string()),
        ("/v1/orgs", (3 << 20).to_string()),
        ("/v1/session", (1 << 20).to_string()),
    ] {
        let r = h
            .send(
                Request::post(uri)
                    .header(header::AUTHORIZATION, format!("Bearer {}", h.owner))
                    .header(header::CONTENT_TYPE, "application/json")
                    .header(header::CONTENT_LENGTH, length)
                    .header(header::EXPECT, "100-continue")
                    .body(unread_body())
                    .unwrap(),
            )
            .await;
        assert_problem(&r, 413, "larger than");
    }
    // A request target or header fields over the limits.
    let long = format!("/v1/me?x={}", "a".repeat(trail_server::edge::MAX_URI));
    assert_problem(&h.get(&long, Some(&h.owner)).await, 414, "request target");
    let mut many =
        Request::get("/v1/me").header(header::AUTHORIZATION, format!("Bearer {}", h.owner));
    for i in 0..=trail_server::edge::MAX_HEADERS {
        many = many.header(format!("x-filler-{i}"), "1");
    }
    assert_problem(
        &h.send(many.body(Body::empty()).unwrap()).await,
        431,
        "header fields",
    );
    let huge = Request::get("/v1/me")
        .header("x-filler", "a".repeat(trail_server::edge::MAX_HEADER_BYTES))
        .body(Body::empty())
        .unwrap();
    assert_problem(&h.send(huge).await, 431, "bytes");
    // A method a public route does not take, and a Content-Length that is no number.
    let r = h
        .send(Request::post("/healthz").body(Body::empty()).unwrap())
        .await;
    assert_problem(&r, 405, "");
    let r = h
        .send(
            Request::post("/v1/orgs")
                .header(header::CONTENT_LENGTH, "lots")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_problem(&r, 400, "Content-Length");
}

#[tokio::test]
async fn a_batch_over_the_limit_is_refused_while_it_is_parsed() {
    let h = harness().await;
    // One element too many and then garbage: the count stops the parse first.
    let mut body = "[".to_owned() + &"0,".repeat(10_001);
    body.push_str("never read");
    assert_problem(
        &h.post("/v1/orgs/acme/events", &h.owner, "application/json", body)
            .await,
        413,
        "the limit is 10000",
    );
}

#[tokio::test]
async fn every_page_is_bounded_in_items_and_bytes() {
    let h = harness().await;
    for (uri, detail) in [
        ("/v1/orgs/acme/log/entries?limit=0", "from 1 to 1000"),
        ("/v1/orgs/acme/log/entries?limit=100000", "from 1 to 1000"),
        ("/v1/orgs/acme/log/entries?limit=-1", "from 1 to 1000"),
        ("/v1/orgs/acme/log/checkpoints?limit=0", "from 1 to 1000"),
        ("/v1/orgs/acme/audit-logs?limit=1001", "from 1 to 1000"),
        // Past the largest log: a seq there would name another org's key range.
        (
            "/v1/orgs/acme/log/entries?from=1099511627777",
            "from 0 to 2^40",
        ),
        ("/v1/orgs/acme/events/1099511627776", "not a seq"),
    ] {
        assert_problem(&h.get(uri, Some(&h.owner)).await, 400, detail);
    }
    // 1,000 events of about 6 KiB: a page of all of them would be 6 MB.
    let padding = "p".repeat(6 * 1024);
    let events: Vec<Value> = (0..1000)
        .map(|i| json!({"action": format!("a{i}"), "actor": {"id": "u", "type": "user"}, "details": {"message": padding}}))
        .collect();
    assert_eq!(
        h.ingest("acme", Value::Array(events)).await.status,
        StatusCode::OK
    );
    let budget = trail_server::routes::events::MAX_PAGE_BYTES + 64 * 1024;
    let mut seen = std::collections::HashSet::new();
    let mut uri = "/v1/orgs/acme/audit-logs?category=app&limit=1000".to_owned();
    let mut pages = 0;
    loop {
        let r = h.get(&uri, Some(&h.owner)).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        assert!(
            r.body.to_string().len() <= budget,
            "a page of {} bytes",
            r.body.to_string().len()
        );
        for item in r.body["items"].as_array().unwrap() {
            assert!(
                seen.insert(item["seq"].as_u64().unwrap()),
                "each event once"
            );
        }
        pages += 1;
        match r.body["nextCursor"].as_str() {
            Some(c) => uri = format!("/v1/orgs/acme/audit-logs?category=app&limit=1000&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 1000);
    assert!(pages > 1);
    let mut from = 0;
    let mut entries = 0;
    loop {
        let r = h
            .get(
                &format!("/v1/orgs/acme/log/entries?from={from}&limit=1000"),
                Some(&h.owner),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        assert!(r.body.to_string().len() <= budget);
        let items = r.body["items"].as_array().unwrap();
        entries += items.len();
        match r.body["nextFrom"].as_u64() {
            Some(next) => {
                assert_eq!(next, items.last().unwrap()["seq"].as_u64().unwrap() + 1);
                from = next;
            }
            None => break,
        }
    }
    assert!(entries >= 1000, "every entry is reached: {entries}");
}

#[tokio::test]
async fn last_event_id_must_name_a_seq_of_the_log() {
    let h = harness().await;
    h.ingest("acme", json!([event("one")])).await;
    let stream = |id: &str| {
        Request::get("/v1/orgs/acme/audit-logs/stream")
            .header(header::AUTHORIZATION, format!("Bearer {}", h.owner))
            .header("last-event-id", id)
            .body(Body::empty())
            .unwrap()
    };
    for bad in ["18446744073709551615", "1099511627776", "99999", "-1", "x"] {
        assert_problem(&h.send(stream(bad)).await, 400, "Last-Event-ID");
    }
    assert_eq!(h.send(stream("0")).await.status, StatusCode::OK);
    assert_problem(
        &h.get("/v1/orgs/acme/audit-logs/stream?from=99999", Some(&h.owner))
            .await,
        400,
        "past the end",
    );
}

#[tokio::test]
async fn password_guesses_spend_the_budget_of_that_account_from_that_source() {
    let h = harness().await;
    h.signed_in("acme", "ana@acme.io", "member").await;
    h.signed_in("acme", "bob@acme.io", "member").await;
    let from = |ip: &str| {
        h.app
            .clone()
            .layer(MockConnectInfo(ip.parse::<SocketAddr>().unwrap()))
    };
    let shared = from("203.0.113.9:5000");
    let sign_in = |email: &str, password: &str| {
        request(
            "POST",
            "/v1/session",
            &Cred::None,
            Some(json!({"email": email, "password": password})),
        )
    };
    let mut statuses = Vec::new();
    for _ in 0..21 {
        statuses.push(
            send_to(&shared, sign_in("ana@acme.io", "guess guess guess"))
                .await
                .status
                .as_u16(),
        );
    }
    assert_eq!(&statuses[..20], &[401; 20]);
    assert_eq!(statuses[20], 429);
    // Another account signs in from the same address; the same account from elsewhere.
    assert_eq!(
        send_to(&shared, sign_in("bob@acme.io", "correct horse battery"))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        send_to(
            &from("198.51.100.7:5000"),
            sign_in("ana@acme.io", "correct horse battery")
        )
        .await
        .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn wrong_current_passwords_are_throttled() {
    let h = harness().await;
    let ana = h.signed_in("acme", "ana@acme.io", "member").await;
    let change = |current: &str| {
        request(
            "PUT",
            "/v1/me/password",
            &ana,
            Some(json!({"currentPassword": current, "newPassword": "another long passphrase"})),
        )
    };
    let mut statuses = Vec::new();
    for _ in 0..21 {
        statuses.push(h.send(change("guess guess guess")).await.status.as_u16());
    }
    assert_eq!(&statuses[..20], &[403; 20]);
    assert_eq!(statuses[20], 429, "the 21st guess is not even checked");
}

#[tokio::test]
async fn forwarded_for_is_believed_from_trusted_proxies_only() {
    let h = harness().await;
    let mut state = h.state.clone();
    state.trusted_proxies =
        std::sync::Arc::from(vec!["10.0.0.0/8".parse::<ipnet::IpNet>().unwrap()]);
    let app = trail_server::app(state);
    let from = |ip: &str| {
        app.clone()
            .layer(MockConnectInfo(ip.parse::<SocketAddr>().unwrap()))
    };
    let me = |xff: &str, cred: &Cred| {
        let mut req = request("GET", "/v1/me", cred, None);
        req.headers_mut()
            .insert("x-forwarded-for", xff.parse().unwrap());
        req
    };
    let recorded_ip = || async {
        let rows = h.stored("acme").await;
        let last = rows
            .iter()
            .rev()
            .find(|s| s.event.action == "whoAmI")
            .unwrap();
        last.event.actor.ip.map(|ip| ip.to_string())
    };
    let owner = Cred::of(&h.owner);
    send_to(&from("198.51.100.7:1"), me("6.6.6.6", &owner)).await;
    assert_eq!(
        recorded_ip().await.as_deref(),
        Some("198.51.100.7"),
        "spoofed header ignored"
    );
    send_to(
        &from("10.0.0.5:1"),
        me("6.6.6.6, 203.0.113.7, 10.0.0.9", &owner),
    )
    .await;
    assert_eq!(
        recorded_ip().await.as_deref(),
        Some("203.0.113.7"),
        "the client behind the proxy"
    );
    // The throttle counts that client, not the proxy every client shares.
    let bad = Cred::of("pat_0000.guess");
    for _ in 0..20 {
        send_to(&from("10.0.0.5:1"), me("203.0.113.7", &bad)).await;
    }
    assert_eq!(
        send_to(&from("10.0.0.5:1"), me("203.0.113.7", &bad))
            .await
            .status,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        send_to(&from("10.0.0.5:1"), me("203.0.113.8", &bad))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn perf_lists_the_busiest_routes_only() {
    let h = harness().await;
    let max = trail_server::routes::live::MAX_PERF_ROUTES;
    let calls: Vec<Value> = (0..=max)
        .map(|i| json!({"action": "call", "category": "api", "actor": {"id": "svc", "type": "api_key"},
            "request": {"method": "GET", "route": format!("GET /v1/r{i}"), "status": 200, "latencyMs": 1.0}}))
        .collect();
    assert_eq!(
        h.ingest("acme", Value::Array(calls)).await.status,
        StatusCode::OK
    );
    let r = h.get("/v1/orgs/acme/perf?since=1h", Some(&h.owner)).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["routes"].as_array().unwrap().len(), max);
    assert!(r.body["routesTotal"].as_u64().unwrap() > max as u64);
}

/// Attack finding (account pre-hijacking): an inviter sees the invitation it makes, so it
/// could accept one made out to an address nobody had claimed, choosing the password; when
/// another org later invited that address, the account was added at once, and the first
/// org's owner was in. Inviting also told any inviter whether an address had an account,
/// and joined the account's later sign-ins to the inviter's log. Now a membership comes only
/// from accepting that org's invitation, with the password of the address's account if it
/// has one, and the answer to an invitation is the same whether or not it has one.
#[tokio::test]
async fn an_invitation_is_replaced_only_by_someone_who_could_have_made_it() {
    let h = harness().await;
    h.invited("acme", "adm@acme.io", "admin").await;
    let admin = h
        .sign_in("adm@acme.io", "correct horse battery")
        .await
        .unwrap();
    let owners = h.invite("acme", "newhire@acme.io", "owner").await;
    assert_eq!(owners.status, StatusCode::CREATED, "{:?}", owners.body);
    // The admin cannot swap the owner's invitation for one of their own.
    let r = h
        .call(
            "POST",
            "/v1/orgs/acme/members",
            &admin,
            Some(json!({"email": "newhire@acme.io", "role": "member"})),
        )
        .await;
    assert_problem(
        &r,
        403,
        "newhire@acme.io has an open invitation as owner, which only someone who could make it may replace",
    );
    let token = owners.body["invitation"]["token"].as_str().unwrap();
    let r = h.accept(token, "the new hire's passphrase").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["role"], "owner");
    // An invitation they could have made, they replace.
    h.invite("acme", "two@acme.io", "member").await;
    let r = h
        .call(
            "POST",
            "/v1/orgs/acme/members",
            &admin,
            Some(json!({"email": "two@acme.io", "role": "admin"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
}

#[tokio::test]
async fn an_invitation_grants_no_more_than_its_maker_holds_when_it_is_accepted() {
    let h = harness().await;
    let admin = h.signed_in("acme", "adm@acme.io", "admin").await;
    let make = |email: &'static str, role: &'static str| {
        let admin = admin.clone();
        let h = &h;
        async move {
            let r = h
                .call(
                    "POST",
                    "/v1/orgs/acme/members",
                    &admin,
                    Some(json!({"email": email, "role": role})),
                )
                .await;
            assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
            r.body["invitation"]["token"].as_str().unwrap().to_owned()
        }
    };
    let before = make("one@acme.io", "admin").await;
    let after = make("two@acme.io", "admin").await;
    // A member's role asks for nothing a member lacks; inviting to it still takes
    // members:manage.
    let as_member = make("four@acme.io", "member").await;
    let r = h.accept(&before, "the first passphrase").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    // The owner demotes the admin: the invitation the admin made no longer admits an admin.
    let r = h
        .call(
            "PATCH",
            "/v1/orgs/acme/members/adm@acme.io",
            &Cred::of(&h.owner),
            Some(json!({"role": "member"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = h.accept(&after, "the second passphrase").await;
    assert_problem(
        &r,
        404,
        "this invitation no longer works: whoever made it can no longer make someone admin of org \"acme\"",
    );
    let r = h.accept(&as_member, "the fourth passphrase").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{:?}", r.body);
    assert!(
        h.store
            .members("acme")
            .await
            .unwrap()
            .iter()
            .all(|m| m.email != "two@acme.io" && m.email != "four@acme.io")
    );
    // Once the admin is an admin again, it works (until it expires or is withdrawn).
    let r = h
        .call(
            "PATCH",
            "/v1/orgs/acme/members/adm@acme.io",
            &Cred::of(&h.owner),
            Some(json!({"role": "admin"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = h.accept(&after, "the second passphrase").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    // Removed from the org, the maker's invitations admit nobody.
    let third = make("three@acme.io", "admin").await;
    let r = h
        .call(
            "DELETE",
            "/v1/orgs/acme/members/adm@acme.io",
            &Cred::of(&h.owner),
            None,
        )
        .await;
    assert!(r.status.is_success(), "{:?}", r.body);
    let r = h.accept(&third, "the third passphrase").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{:?}", r.body);
}

#[tokio::test]
async fn an_email_names_one_account_whatever_its_case() {
    let h = harness().await;
    h.invited("acme", "ana@acme.io", "member").await;
    // A member is not invited again under another case.
    let r = h.invite("acme", "Ana@ACME.io", "admin").await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{:?}", r.body);
    // Another org's invitation of the same email in another case joins the same account,
    // with its password only: it makes no twin.
    let r = h.invite("umbrella", "ANA@acme.io", "owner").await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let token = r.body["invitation"]["token"].as_str().unwrap().to_owned();
    let r = h.accept(&token, "the squatter's passphrase").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{:?}", r.body);
    let r = h.accept(&token, "correct horse battery").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["newAccount"], false);
    assert_eq!(r.body["email"], "ana@acme.io");
    // Signing in and naming a member take any case.
    assert!(
        h.sign_in("ANA@Acme.IO", "correct horse battery")
            .await
            .is_ok()
    );
    let r = h
        .call(
            "PATCH",
            "/v1/orgs/acme/members/Ana@Acme.io",
            &Cred::of(&h.owner),
            Some(json!({"role": "admin"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
}

#[tokio::test]
async fn nobody_joins_an_org_without_accepting_its_invitation() {
    let h = harness().await;
    // umbrella's owner invites an address of acme's and accepts the invitation themselves.
    let squat = h.invite("umbrella", "victim@acme.io", "member").await;
    assert_eq!(squat.status, StatusCode::CREATED, "{:?}", squat.body);
    let token = squat.body["invitation"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = h.accept(&token, "the squatter's passphrase").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["newAccount"], true);
    // acme invites that address as an admin: the answer is the same as for an address new
    // to Trail, and the account is not in acme.
    let fresh = h.invite("acme", "new@acme.io", "admin").await;
    let invited = h.invite("acme", "victim@acme.io", "admin").await;
    assert_eq!(invited.status, StatusCode::CREATED, "{:?}", invited.body);
    let shape = |v: &Value| {
        let mut keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        keys.extend(v["invitation"].as_object().unwrap().keys().cloned());
        (keys, v["userId"].clone())
    };
    assert_eq!(shape(&invited.body), shape(&fresh.body));
    assert_eq!(invited.body["userId"], Value::Null);
    let squatter = h
        .sign_in("victim@acme.io", "the squatter's passphrase")
        .await
        .unwrap();
    let before = h.stored("acme").await.len();
    let r = h
        .call("GET", "/v1/orgs/acme/audit-logs", &squatter, None)
        .await;
    assert_problem(&r, 403, "you are not a member of org \"acme\"");
    assert!(
        h.store
            .members("acme")
            .await
            .unwrap()
            .iter()
            .all(|m| m.email != "victim@acme.io")
    );
    assert!(
        h.stored("acme").await[before..]
            .iter()
            .all(|s| s.event.actor.id != "victim@acme.io"),
        "the account's calls are not recorded in acme"
    );
    // acme lists the invitation as pending, with no account.
    let list = h
        .call("GET", "/v1/orgs/acme/members", &Cred::of(&h.owner), None)
        .await;
    let row = list.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["email"] == "victim@acme.io")
        .unwrap()
        .clone();
    assert_eq!(row["userId"], Value::Null, "{row:?}");
    assert_eq!(row["role"], "admin");
    assert!(row["invitationExpiresAt"].is_string(), "{row:?}");
    // acme's invitation joins the account only with the account's password: choosing a new
    // one is refused, and changes nothing.
    let acmes = invited.body["invitation"]["token"].as_str().unwrap();
    let r = h.accept(acmes, "a password of my choosing").await;
    assert_problem(
        &r,
        401,
        "victim@acme.io has a Trail account: give its password",
    );
    assert!(
        h.sign_in("victim@acme.io", "a password of my choosing")
            .await
            .is_err()
    );
    let r = h.accept(acmes, "the squatter's passphrase").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(
        (r.body["newAccount"].clone(), r.body["role"].clone()),
        (json!(false), json!("admin"))
    );
    assert_problem(
        &h.accept(acmes, "the squatter's passphrase").await,
        404,
        "not valid",
    );
    // An account that signs in with tokens only (acme's owner) joins no org by invitation.
    let r = h.invite("umbrella", "owner@acme.io", "member").await;
    let r = h
        .accept(
            r.body["invitation"]["token"].as_str().unwrap(),
            "anything at all here",
        )
        .await;
    assert_problem(&r, 409, "signs in with tokens only");
    assert!(
        h.sign_in("owner@acme.io", "anything at all here")
            .await
            .is_err()
    );
    // A platform admin's new org for someone else: its owner is invited, not added, whether
    // or not they have an account.
    for (org, owner) in [
        ("initech", "bill@initech.io"),
        ("hooli", "owner@umbrella.io"),
    ] {
        let r = h
            .call(
                "POST",
                "/v1/orgs",
                &Cred::of(&h.owner),
                Some(json!({"id": org, "owner": owner})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        assert!(r.body["invitation"]["token"].is_string(), "{:?}", r.body);
        assert!(h.store.members(org).await.unwrap().is_empty(), "{org}");
    }
}

/// Review finding: an org that sorts first could become the home org of anyone it added,
/// and so receive the records of their own-account calls. A user's home org is the first
/// they joined.
#[tokio::test]
async fn a_users_home_org_is_the_first_they_joined() {
    let h = harness().await;
    let carol = h.signed_in("umbrella", "carol@umbrella.io", "member").await;
    // acme (which sorts first) adds her later.
    let r = h
        .call(
            "POST",
            "/v1/orgs/acme/members",
            &Cred::of(&h.owner),
            Some(json!({"email": "carol@umbrella.io", "role": "member"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let acme_before = h.stored("acme").await.len();
    let carol = h
        .sign_in("carol@umbrella.io", "correct horse battery")
        .await
        .unwrap_or(carol);
    assert_eq!(
        h.call("GET", "/v1/me", &carol, None).await.status,
        StatusCode::OK
    );
    let acme_after = h.stored("acme").await;
    assert!(
        acme_after[acme_before..]
            .iter()
            .all(|s| s.event.actor.id != "carol@umbrella.io"),
        "carol's own calls are not recorded in acme"
    );
    let umbrella = h.stored("umbrella").await;
    assert!(
        umbrella
            .iter()
            .any(|s| s.event.action == "whoAmI" && s.event.actor.id == "carol@umbrella.io")
    );
}

/// Review finding: a co-owner who could not revoke the platform admin's token cut it off by
/// demoting or removing the platform admin; and a break-glass token changed who may sign in.
#[tokio::test]
async fn nobody_changes_a_member_who_holds_more_than_they_do() {
    let h = harness().await;
    let co_owner = h.signed_in("acme", "co@acme.io", "owner").await;
    for (method, body) in [("PATCH", Some(json!({"role": "member"}))), ("DELETE", None)] {
        let r = h
            .call(
                method,
                "/v1/orgs/acme/members/owner@acme.io",
                &co_owner,
                body,
            )
            .await;
        assert_problem(&r, 403, "they hold more than you do");
    }
    let me = h.get("/v1/me", Some(&h.owner)).await;
    assert_eq!(me.body["platformAdmin"], true);
    assert!(me.body["scopes"].as_array().unwrap().len() > 2);
    // A co-owner still manages an ordinary owner.
    h.invited("acme", "other@acme.io", "owner").await;
    let r = h
        .call(
            "PATCH",
            "/v1/orgs/acme/members/other@acme.io",
            &co_owner,
            Some(json!({"role": "admin"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    // A break-glass token is for looking: it changes no membership.
    let bg = credential(
        &*h.store,
        TokenKind::BreakGlass,
        "acme",
        preset("admin-full").unwrap(),
        Some(Timestamp(i64::MAX / 2)),
        false,
    )
    .await;
    let r = h
        .call(
            "DELETE",
            "/v1/orgs/acme/members/other@acme.io",
            &Cred::of(&bg),
            None,
        )
        .await;
    assert_problem(&r, 403, "break-glass token cannot make this call");
}

/// Review finding: removing a member left their invitation valid.
#[tokio::test]
async fn removing_a_member_withdraws_their_invitation() {
    let h = harness().await;
    let added = h
        .call(
            "POST",
            "/v1/orgs/acme/members",
            &Cred::of(&h.owner),
            Some(json!({"email": "gone@acme.io", "role": "member"})),
        )
        .await;
    let token = added.body["invitation"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = h
        .call(
            "DELETE",
            "/v1/orgs/acme/members/gone@acme.io",
            &Cred::of(&h.owner),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_problem(
        &h.accept(&token, "a passphrase of mine").await,
        404,
        "not valid",
    );
}

/// Gives acme's owner (the platform admin) a password, as an operator would.
async fn owner_password(h: &Harness) -> Cred {
    let hash = trail_server::auth::hash_password("platform admin password").unwrap();
    h.store
        .set_password("usr_acme_owner", hash, NOW, Vec::new())
        .await
        .unwrap();
    h.sign_in("owner@acme.io", "platform admin password")
        .await
        .unwrap()
}

#[tokio::test]
async fn personal_access_tokens_act_on_the_orgs_they_were_made_for_as_far_as_the_role_there_allows()
{
    let h = harness().await;
    let admin = Cred::of(&h.owner);
    for org in ["beta", "gamma"] {
        let r = h
            .call("POST", "/v1/orgs", &admin, Some(json!({"id": org})))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    }
    // The owner's token was made for acme alone: the orgs it creates are not in its reach.
    let r = h
        .call("GET", "/v1/orgs/beta/audit-logs", &admin, None)
        .await;
    assert_problem(&r, 403, "this token cannot act on org \"beta\"");
    // Nor can it make a token for more than it reaches.
    let r = h
        .call(
            "POST",
            "/v1/orgs/acme/tokens",
            &admin,
            Some(json!({"name": "wider", "preset": "admin-full", "orgs": ["beta"]})),
        )
        .await;
    assert_problem(&r, 403, "you cannot give a token org \"beta\"");
    let r = h
        .call(
            "POST",
            "/v1/orgs/acme/tokens",
            &admin,
            Some(json!({"name": "wider", "preset": "admin-full", "orgs": "all"})),
        )
        .await;
    assert_problem(&r, 403, "a token for all your orgs");
    let r = h
        .call(
            "POST",
            "/v1/orgs/acme/tokens",
            &admin,
            Some(json!({"name": "x", "preset": "admin-full", "orgs": "most"})),
        )
        .await;
    assert_problem(&r, 400, "orgs:");

    // Signed in, the owner acts on all their orgs, and makes a token for two of them.
    let session = owner_password(&h).await;
    let r = h
        .call(
            "POST",
            "/v1/orgs/acme/tokens",
            &session,
            Some(json!({"name": "two", "preset": "admin-full", "orgs": ["beta"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["orgs"], json!(["acme", "beta"]));
    let two = Cred::of(r.body["token"].as_str().unwrap());
    for org in ["acme", "beta"] {
        let r = h
            .call("GET", &format!("/v1/orgs/{org}/audit-logs"), &two, None)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{org}: {:?}", r.body);
    }
    let r = h.call("GET", "/v1/orgs/gamma/audit-logs", &two, None).await;
    assert_problem(&r, 403, "this token cannot act on org \"gamma\"");
    // In each org it holds its scopes ∩ the role there, decided at each call: as a member of
    // beta, the owner's token no longer manages keys there, though it still does in acme.
    let me = h.call("GET", "/v1/me", &two, None).await;
    assert_eq!(me.body["orgs"].as_array().unwrap().len(), 2);
    let demote = h
        .call(
            "PATCH",
            "/v1/orgs/beta/members/owner@acme.io",
            &session,
            Some(json!({"role": "member"})),
        )
        .await;
    // The only owner cannot leave beta without one: add another first.
    assert_eq!(demote.status, StatusCode::CONFLICT, "{:?}", demote.body);
    let r = h
        .call(
            "POST",
            "/v1/orgs/beta/members",
            &session,
            Some(json!({"email": "second@beta.io", "role": "owner"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let accepted = h
        .accept(
            r.body["invitation"]["token"].as_str().unwrap(),
            "second owner's passphrase",
        )
        .await;
    assert_eq!(accepted.status, StatusCode::OK, "{:?}", accepted.body);
    let demote = h
        .call(
            "PATCH",
            "/v1/orgs/beta/members/owner@acme.io",
            &session,
            Some(json!({"role": "member"})),
        )
        .await;
    assert_eq!(demote.status, StatusCode::OK, "{:?}", demote.body);
    let key = json!({"name": "k", "scopes": ["logs:read"]});
    let r = h
        .call("POST", "/v1/orgs/beta/api-keys", &two, Some(key.clone()))
        .await;
    assert_problem(&r, 403, "keys:manage");
    let r = h
        .call("POST", "/v1/orgs/acme/api-keys", &two, Some(key))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);

    // A token for all the user's orgs reaches the ones they join later too.
    let r = h
        .call(
            "POST",
            "/v1/orgs/acme/tokens",
            &session,
            Some(json!({"name": "all", "scopes": ["logs:read"], "orgs": "all"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["orgs"], json!("all"));
    let all = Cred::of(r.body["token"].as_str().unwrap());
    let r = h
        .call("POST", "/v1/orgs", &session, Some(json!({"id": "delta"})))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let r = h.call("GET", "/v1/orgs/delta/audit-logs", &all, None).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    // ... but never an org they are not in, and never more than its scopes.
    let r = h
        .call("GET", "/v1/orgs/umbrella/audit-logs", &all, None)
        .await;
    assert_problem(&r, 403, "you are not a member of org \"umbrella\"");
    let r = h.call("GET", "/v1/orgs/delta/api-keys", &all, None).await;
    assert_problem(&r, 403, "keys:manage");
    // A token from a token for all orgs may reach all of them too; listed, it says so.
    let r = h
        .call(
            "POST",
            "/v1/orgs/acme/tokens",
            &all,
            Some(json!({"name": "all again", "scopes": ["logs:read"], "orgs": "all"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let list = h.call("GET", "/v1/orgs/acme/tokens", &session, None).await;
    let reaches: Vec<&Value> = list.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| &t["orgs"])
        .collect();
    assert!(reaches.contains(&&json!("all")) && reaches.contains(&&json!(["acme", "beta"])));
}

#[tokio::test]
async fn a_console_session_signed_in_with_a_token_holds_what_the_token_holds_and_ends_with_it() {
    let h = harness().await;
    let reader = token(&*h.store, "acme", &[Scope::LogsRead], None, false).await;
    let session = h.sign_in_with_token(&reader).await.unwrap();
    let r = h
        .call("GET", "/v1/orgs/acme/audit-logs", &session, None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let me = h.call("GET", "/v1/me", &session, None).await;
    assert_eq!(me.body["actorType"], "pat");
    assert_eq!(me.body["tokenId"], reader.split_once('.').unwrap().0);
    assert!(me.body["csrfToken"].is_string());
    // No more than the token: no other scope, no other org.
    let r = h
        .call(
            "POST",
            "/v1/orgs/acme/api-keys",
            &session,
            Some(json!({"name": "k", "scopes": ["logs:read"]})),
        )
        .await;
    assert_problem(&r, 403, "keys:manage");
    let r = h
        .call("GET", "/v1/orgs/umbrella/audit-logs", &session, None)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // Its changes need the CSRF token, like any session's.
    let Cred::Session { cookie, .. } = &session else {
        unreachable!()
    };
    let no_csrf = Cred::Session {
        cookie: cookie.clone(),
        csrf: "wrong".into(),
    };
    let r = h
        .call(
            "POST",
            "/v1/orgs/acme/tokens",
            &no_csrf,
            Some(json!({"name": "t", "scopes": ["logs:read"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
    // Revoking the token ends the session at once.
    let id = reader.split_once('.').unwrap().0;
    let r = h
        .call(
            "DELETE",
            &format!("/v1/orgs/acme/tokens/{id}"),
            &Cred::of(&h.owner),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    let r = h
        .call("GET", "/v1/orgs/acme/audit-logs", &session, None)
        .await;
    assert_problem(&r, 401, "revoked");

    // Only a personal access token signs in: not an API key, a break-glass token, a revoked
    // token or nonsense.
    let key = credential(
        &*h.store,
        TokenKind::ApiKey,
        "acme",
        &[Scope::LogsRead],
        None,
        false,
    )
    .await;
    let bg = credential(
        &*h.store,
        TokenKind::BreakGlass,
        "acme",
        &[Scope::LogsRead],
        Some(Timestamp(i64::MAX / 2)),
        false,
    )
    .await;
    for bad in [
        key.as_str(),
        bg.as_str(),
        reader.as_str(),
        "pat_x.y",
        "nonsense",
    ] {
        let r = h.sign_in_with_token(bad).await.unwrap_err();
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{bad}: {:?}", r.body);
    }
    let r = h
        .call(
            "POST",
            "/v1/session",
            &Cred::None,
            Some(json!({"email": "owner@acme.io", "token": h.owner})),
        )
        .await;
    assert_problem(&r, 400, "email and password, or with token");

    // A session from a token that expires ends no later than the token; signing out ends it.
    let soon = Timestamp(trail_server::now().0 + 3_600_000_000);
    let short = token(&*h.store, "acme", &[Scope::LogsRead], Some(soon), false).await;
    let r = h
        .call(
            "POST",
            "/v1/session",
            &Cred::None,
            Some(json!({ "token": short })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert!(Timestamp::parse(r.body["expiresAt"].as_str().unwrap()).unwrap() <= soon);
    let session = h.sign_in_with_token(&short).await.unwrap();
    let r = h.call("DELETE", "/v1/session", &session, None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    let r = h.call("GET", "/v1/me", &session, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn logging_in_with_a_password_gives_a_revocable_token_for_all_the_users_orgs() {
    let h = harness().await;
    owner_password(&h).await;
    let admin = Cred::of(&h.owner);
    let r = h
        .call("POST", "/v1/orgs", &admin, Some(json!({"id": "beta"})))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let login = |password: &str| json!({"email": "owner@acme.io", "password": password, "name": "trail login on laptop"});
    let r = h
        .call(
            "POST",
            "/v1/login",
            &Cred::None,
            Some(login("wrong password!")),
        )
        .await;
    assert_problem(&r, 401, "wrong email or password");
    let r = h
        .call(
            "POST",
            "/v1/login",
            &Cred::None,
            Some(login("platform admin password")),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["orgs"], "all");
    assert!(r.body["expiresAt"].is_null());
    let id = r.body["id"].as_str().unwrap().to_owned();
    let cli = Cred::of(r.body["token"].as_str().unwrap());
    for org in ["acme", "beta"] {
        let r = h
            .call("GET", &format!("/v1/orgs/{org}/audit-logs"), &cli, None)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{org}: {:?}", r.body);
    }
    // The platform admin's login token creates orgs; what it holds in each is their role.
    let r = h
        .call("POST", "/v1/orgs", &cli, Some(json!({"id": "gamma"})))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    // It is recorded, listed with the user's tokens, and revoked like them.
    let page = h
        .call(
            "GET",
            "/v1/orgs/acme/audit-logs?action=created",
            &admin,
            None,
        )
        .await;
    assert!(
        page.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["object"]["type"] == "token" && e["object"]["id"] == id),
        "{:?}",
        page.body
    );
    let list = h.call("GET", "/v1/orgs/acme/tokens", &admin, None).await;
    assert!(
        list.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["id"] == id.as_str() && t["name"] == "trail login on laptop")
    );
    let r = h
        .call(
            "DELETE",
            &format!("/v1/orgs/acme/tokens/{id}"),
            &admin,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    let r = h.call("GET", "/v1/me", &cli, None).await;
    assert_problem(&r, 401, "revoked");
    // A user in no org (and no platform admin) gets no token; bad input is a 400.
    let r = h
        .call(
            "POST",
            "/v1/login",
            &Cred::None,
            Some(json!({"email": "owner@acme.io", "password": "platform admin password"})),
        )
        .await;
    assert_problem(&r, 400, "name");
}

#[tokio::test]
async fn a_token_is_seen_and_revoked_in_every_org_it_acts_on_and_by_nobody_with_less_say() {
    let h = harness().await;
    let session = owner_password(&h).await;
    for org in ["beta", "gamma"] {
        let r = h
            .call("POST", "/v1/orgs", &session, Some(json!({ "id": org })))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    }
    // A token made in acme for acme and beta: its making is in both logs.
    let r = h
        .call(
            "POST",
            "/v1/orgs/acme/tokens",
            &session,
            Some(json!({"name": "two", "scopes": ["logs:write", "logs:read"], "orgs": ["beta"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let id = r.body["id"].as_str().unwrap().to_owned();
    let two = Cred::of(r.body["token"].as_str().unwrap());
    for org in ["acme", "beta"] {
        let page = h
            .call(
                "GET",
                &format!("/v1/orgs/{org}/audit-logs?action=created&objectType=token"),
                &session,
                None,
            )
            .await;
        assert!(
            page.body["items"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["object"]["id"]["id"] == id.as_str()),
            "{org}: {:?}",
            page.body
        );
        // ... and it is listed there.
        let list = h
            .call("GET", &format!("/v1/orgs/{org}/tokens"), &session, None)
            .await;
        assert!(
            list.body["items"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t["id"] == id.as_str()),
            "{org}"
        );
    }
    // An admin of acme alone (no say in beta) cannot revoke it, though it was made in acme.
    h.invited("acme", "admin@acme.io", "admin").await;
    let admin = h
        .sign_in("admin@acme.io", "correct horse battery")
        .await
        .unwrap();
    let r = h
        .call(
            "DELETE",
            &format!("/v1/orgs/acme/tokens/{id}"),
            &admin,
            None,
        )
        .await;
    assert_problem(&r, 403, "it holds scopes you do not in org \"acme\"");
    // Nor one that holds only what they hold in acme, but acts on beta too.
    let r = h
        .call(
            "POST",
            "/v1/orgs/acme/tokens",
            &session,
            Some(json!({"name": "writer", "scopes": ["logs:write"], "orgs": ["beta"]})),
        )
        .await;
    let writer = r.body["id"].as_str().unwrap().to_owned();
    let r = h
        .call(
            "DELETE",
            &format!("/v1/orgs/acme/tokens/{writer}"),
            &admin,
            None,
        )
        .await;
    assert_problem(&r, 403, "it also acts on org \"beta\"");

    // Its user leaves acme, where it was made: it still acts on beta, and is revoked there,
    // by its user, with the revocation in beta's log.
    let r = h
        .call(
            "POST",
            "/v1/orgs/acme/members",
            &session,
            Some(json!({"email": "other@acme.io", "role": "owner"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let accepted = h
        .accept(
            r.body["invitation"]["token"].as_str().unwrap(),
            "another owner's passphrase",
        )
        .await;
    assert_eq!(accepted.status, StatusCode::OK, "{:?}", accepted.body);
    let r = h
        .call(
            "DELETE",
            "/v1/orgs/acme/members/owner@acme.io",
            &session,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    let me = h.call("GET", "/v1/me", &two, None).await;
    assert_eq!(me.body["org"], "beta", "{:?}", me.body);
    assert!(!me.body["scopes"].as_array().unwrap().is_empty());
    let r = h.call("GET", "/v1/audit-log", &two, None).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = h
        .call("DELETE", &format!("/v1/orgs/beta/tokens/{id}"), &two, None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    let page = h
        .call(
            "GET",
            "/v1/orgs/beta/audit-logs?action=revoked",
            &session,
            None,
        )
        .await;
    assert!(
        !page.body["items"].as_array().unwrap().is_empty(),
        "{:?}",
        page.body
    );
    let r = h.call("GET", "/v1/me", &two, None).await;
    assert_problem(&r, 401, "revoked");
    // Found only through an org it acts on.
    let r = h
        .call(
            "DELETE",
            &format!("/v1/orgs/gamma/tokens/{id}"),
            &session,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{:?}", r.body);
}

#[tokio::test]
async fn tokens_from_a_password_end_with_it_and_a_valid_token_signs_in_whatever_others_guessed() {
    let h = harness().await;
    let session = owner_password(&h).await;
    let r = h
        .call(
            "POST",
            "/v1/login",
            &Cred::None,
            Some(json!({"email": "owner@acme.io", "password": "platform admin password", "name": "laptop"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.set_cookie, None);
    let login = Cred::of(r.body["token"].as_str().unwrap());
    // A token made otherwise survives a password change; one made with the password does not.
    let ci = h
        .call(
            "POST",
            "/v1/orgs/acme/tokens",
            &session,
            Some(json!({"name": "ci", "scopes": ["logs:read"]})),
        )
        .await;
    let ci = Cred::of(ci.body["token"].as_str().unwrap());
    let r = h
        .call(
            "PUT",
            "/v1/me/password",
            &session,
            Some(json!({"currentPassword": "platform admin password", "newPassword": "another long password"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    assert_problem(&h.call("GET", "/v1/me", &login, None).await, 401, "revoked");
    assert_eq!(
        h.call("GET", "/v1/me", &ci, None).await.status,
        StatusCode::OK
    );

    // Wrong tokens from one source spend its budget; the right token still signs in.
    for _ in 0..25 {
        let r = h.sign_in_with_token("pat_nope.wrong").await.unwrap_err();
        assert!(matches!(r.status.as_u16(), 401 | 429), "{:?}", r.body);
    }
    let r = h.sign_in_with_token("pat_nope.wrong").await.unwrap_err();
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(h.sign_in_with_token(&h.owner).await.is_ok());

    // A body is a JSON object, never an array of the fields in order; and no answer of the
    // API is kept by a cache.
    let r = h
        .call(
            "POST",
            "/v1/login",
            &Cred::None,
            Some(json!([
                "owner@acme.io",
                "another long password",
                "laptop",
                null
            ])),
        )
        .await;
    assert_problem(&r, 400, "JSON object");
    let req = request(
        "POST",
        "/v1/login",
        &Cred::None,
        Some(json!({"email": "owner@acme.io", "password": "another long password", "name": "x"})),
    );
    let resp = h.app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(resp.headers()[header::CACHE_CONTROL], "no-store");
}

#[tokio::test]
async fn a_histogram_counts_what_the_filters_match_over_the_whole_window() {
    let h = harness().await;
    let owner = Cred::of(&h.owner);
    let now = trail_server::now().0;
    let at = |actor: &str, minutes_ago: i64| {
        json!({"action": "a", "actor": {"id": actor, "type": "user"},
               "timestamp": Timestamp(now - minutes_ago * 60_000_000).to_string()})
    };
    h.ingest(
        "acme",
        json!([
            at("alice", 55),
            at("alice", 52),
            at("bob", 52),
            at("alice", 5)
        ]),
    )
    .await;
    let r = h
        .call(
            "GET",
            "/v1/orgs/acme/audit-logs/histogram?since=1h&buckets=6&actor=alice",
            &owner,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let counts: Vec<u64> = r.body["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["count"].as_u64().unwrap())
        .collect();
    assert_eq!(counts, vec![2, 0, 0, 0, 0, 1], "{:?}", r.body);
    assert_eq!(r.body["total"], 3);
    // The hour touches 61 minutes: 6 slices of 11 whole minutes.
    assert_eq!(r.body["bucketSeconds"], 660.0);
    for bad in [
        "buckets=0",
        "buckets=201",
        "cursor=x",
        "since=1h&until=2h",
        "nosuch=1",
    ] {
        let r = h
            .call(
                "GET",
                &format!("/v1/orgs/acme/audit-logs/histogram?{bad}"),
                &owner,
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {:?}", r.body);
    }
}

#[tokio::test]
async fn a_download_holds_every_match_newest_first_and_no_cell_runs_as_a_formula() {
    let h = harness().await;
    // More than one read of the store: 1,500 of alice's, and some of bob's.
    let mut batch: Vec<Value> = (0..1500)
        .map(|i| json!({"action": format!("a{i}"), "actor": {"id": "alice", "type": "user"}}))
        .collect();
    batch.push(
        json!({"action": "=HYPERLINK(\"http://evil\")", "actor": {"id": "bob", "type": "user"}}),
    );
    let r = h.ingest("acme", Value::Array(batch)).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = h
        .get(
            "/v1/orgs/acme/audit-logs/download?format=ndjson&actor=alice",
            Some(&h.owner),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.content_type, "application/x-ndjson");
    let text = r.body.as_str().unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1500);
    assert!(lines.iter().all(|e| e["actor"]["id"] == "alice"));
    let seqs: Vec<u64> = lines.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] > w[1]),
        "newest first, each once"
    );

    let r = h
        .get(
            "/v1/orgs/acme/audit-logs/download?actor=bob",
            Some(&h.owner),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.content_type.starts_with("text/csv"));
    let text = r.body.as_str().unwrap();
    let mut lines = text.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("timestamp,receivedAt,seq,org,")
    );
    let row = lines.next().unwrap();
    assert!(row.contains(r#"'=HYPERLINK(""http://evil"")"#), "{row}");
    assert_eq!(lines.next(), None);

    for bad in ["format=xlsx", "cursor=x", "limit=5", "actor=a&nosuch=1"] {
        let r = h
            .get(
                &format!("/v1/orgs/acme/audit-logs/download?{bad}"),
                Some(&h.owner),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
    }
}

/// Raw text and headers of a GET, for the export's line formats.
async fn raw_get(h: &Harness, uri: &str, cred: &Cred) -> (StatusCode, header::HeaderMap, String) {
    let resp = h
        .app
        .clone()
        .oneshot(request("GET", uri, cred, None))
        .await
        .unwrap();
    let (status, headers) = (resp.status(), resp.headers().clone());
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8(bytes.to_vec()).unwrap())
}

async fn siem_key(h: &Harness) -> (String, Cred) {
    let r = h
        .call(
            "POST",
            "/v1/orgs/acme/api-keys",
            &Cred::of(&h.owner),
            Some(json!({"name": "siem", "scopes": ["logs:read"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let id = r.body["id"].as_str().unwrap().to_owned();
    let cred = Cred::of(&format!("{id}:{}", r.body["secret"].as_str().unwrap()));
    (id, cred)
}

/// Seed 002's pull over HTTP: an API key with Basic auth, writers ingesting concurrently
/// through the API with timestamps that go back in time, and a puller that follows the
/// cursor, leaving out its own recorded calls with a filter. It gets every event once, in
/// seq order, each page covered by a checkpoint that opens with the log's key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_siem_export_pulls_every_event_once_while_clients_write() {
    let h = Arc::new(harness().await);
    let (key_id, key) = siem_key(&h).await;
    let own_calls = format!("q=-tokenId:{key_id}");

    // No since: from now on. The page is empty, and says where to resume.
    let first = h
        .call(
            "GET",
            &format!("/v1/orgs/acme/audit-logs/export?{own_calls}"),
            &key,
            None,
        )
        .await;
    assert_eq!(first.status, StatusCode::OK, "{:?}", first.body);
    assert_eq!(first.body["items"], json!([]));
    assert_eq!(first.body["more"], false);
    let mut cursor = first.body["cursor"].as_str().unwrap().to_owned();
    let start = first.body["checkpoint"]["size"].as_u64().unwrap();

    let writers: Vec<_> = (0..4)
        .map(|w| {
            let h = h.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for i in 0..8 {
                    let batch: Vec<Value> = (0..3)
                        .map(|j| {
                            let id = format!("w{w}-{i}-{j}");
                            ids.push(id.clone());
                            let back = ((w + i + j) % 4) as i64 * 3_600_000_000;
                            json!({"id": id, "action": "synced",
                                   "timestamp": Timestamp(NOW.micros() - back).to_string(),
                                   "actor": {"id": format!("writer-{w}"), "type": "api_key"}})
                        })
                        .collect();
                    let r = h
                        .post(
                            "/v1/orgs/acme/events",
                            &h.writer,
                            "application/json",
                            Value::from(batch).to_string(),
                        )
                        .await;
                    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
                }
                ids
            })
        })
        .collect();
    let mut written = HashSet::new();
    let mut got: Vec<Value> = Vec::new();
    let mut writing = writers;
    loop {
        let done = writing.iter().all(|w| w.is_finished());
        let page = h
            .call(
                "GET",
                &format!("/v1/orgs/acme/audit-logs/export?{own_calls}&limit=5&cursor={cursor}"),
                &key,
                None,
            )
            .await;
        assert_eq!(page.status, StatusCode::OK, "{:?}", page.body);
        let size = page.body["checkpoint"]["size"].as_u64().unwrap();
        for item in page.body["items"].as_array().unwrap() {
            assert!(
                item["seq"].as_u64().unwrap() < size,
                "the checkpoint covers the page"
            );
            got.push(item.clone());
        }
        cursor = page.body["cursor"].as_str().unwrap().to_owned();
        if done && page.body["more"] == false {
            break;
        }
        tokio::task::yield_now().await;
    }
    for w in writing.drain(..) {
        written.extend(w.await.unwrap());
    }
    // One more pull after the writers: nothing is left.
    let last = h
        .call(
            "GET",
            &format!("/v1/orgs/acme/audit-logs/export?{own_calls}&cursor={cursor}"),
            &key,
            None,
        )
        .await;
    got.extend(last.body["items"].as_array().unwrap().iter().cloned());

    let seqs: Vec<u64> = got.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "seq order, no repeat: {seqs:?}"
    );
    assert!(seqs.iter().all(|s| *s >= start));
    let ingested: Vec<&str> = got
        .iter()
        .filter(|e| e["category"] == "app")
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ingested.len(), written.len(), "every event once");
    assert_eq!(
        ingested
            .iter()
            .map(|s| s.to_string())
            .collect::<HashSet<_>>(),
        written
    );
    assert!(
        got.iter().all(|e| e["actor"]["tokenId"] != key_id.as_str()),
        "its own calls are left out"
    );
    let stamps: Vec<&str> = got
        .iter()
        .filter(|e| e["category"] == "app")
        .map(|e| e["timestamp"].as_str().unwrap())
        .collect();
    assert!(
        stamps.windows(2).any(|w| w[1] < w[0]),
        "late events were received after newer ones"
    );
    // Every event between the first cursor and the end that the filter passes was pulled.
    let want: Vec<u64> = h
        .stored("acme")
        .await
        .iter()
        .filter(|s| {
            s.event.seq >= start && s.event.actor.token_id.as_deref() != Some(key_id.as_str())
        })
        .map(|s| s.event.seq)
        .collect();
    assert_eq!(seqs, want);

    // The checkpoint of a page opens with the log's key.
    let note = last.body["checkpoint"]["note"].as_str().unwrap();
    let cp = trail_core::checkpoint::open(note, &h.state.log_key.verifier()).unwrap();
    assert_eq!(cp.size, last.body["checkpoint"]["size"].as_u64().unwrap());

    // A backfill from a time of receipt starts at the first event received then.
    let all = h
        .call(
            "GET",
            "/v1/orgs/acme/audit-logs/export?since=2000-01-01T00:00:00Z&limit=3",
            &key,
            None,
        )
        .await;
    let items = all.body["items"].as_array().unwrap();
    assert_eq!(
        items
            .iter()
            .map(|e| e["seq"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    assert_eq!(all.body["more"], true);
}

#[tokio::test]
async fn the_export_speaks_ndjson_ocsf_and_cef_and_refuses_what_it_cannot_do() {
    let h = harness().await;
    let (_, key) = siem_key(&h).await;
    let sent = h
        .ingest(
            "acme",
            json!([
                {"action": "deleted", "actor": {"id": "sarah|x", "type": "user", "ip": "10.0.0.7"},
                 "details": {"message": "a=b\nc"}},
                event("created"),
            ]),
        )
        .await;
    assert_eq!(sent.status, StatusCode::OK);
    let base = "/v1/orgs/acme/audit-logs/export?since=2000-01-01T00:00:00Z&q=category:app";

    let (status, headers, text) = raw_get(&h, &format!("{base}&format=ndjson"), &key).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "application/x-ndjson");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines
            .iter()
            .map(|l| l["action"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["deleted", "created"]
    );
    let cursor = headers["trail-cursor"].to_str().unwrap();
    assert!(!cursor.is_empty() && headers.contains_key("trail-checkpoint-size"));
    use base64::Engine;
    let note = base64::engine::general_purpose::STANDARD
        .decode(headers["trail-checkpoint"].to_str().unwrap())
        .unwrap();
    trail_core::checkpoint::open(
        std::str::from_utf8(&note).unwrap(),
        &h.state.log_key.verifier(),
    )
    .unwrap();

    let (_, headers, text) = raw_get(&h, &format!("{base}&format=cef"), &key).await;
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let cef: Vec<&str> = text.lines().collect();
    assert_eq!(cef.len(), 2);
    assert!(cef[0].starts_with("CEF:0|Trail|Trail|"), "{}", cef[0]);
    assert!(
        cef[0].contains("suser=sarah|x ") && cef[0].contains("|app:deleted|deleted|"),
        "{}",
        cef[0]
    );
    assert!(cef[0].contains("msg=a\\=b\\nc"), "{}", cef[0]);

    let (_, headers, text) = raw_get(&h, &format!("{base}&format=csv"), &key).await;
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let rows: Vec<&str> = text.lines().collect();
    assert!(
        rows[0].starts_with("timestamp,receivedAt,seq,org,"),
        "{text}"
    );
    // Two records; a line break inside a quoted cell stays in its cell.
    assert_eq!(
        rows.iter().filter(|r| r.starts_with("20")).count(),
        2,
        "{text}"
    );
    assert!(
        rows[1].contains("sarah|x") && text.contains("\"a=b\nc\""),
        "{text}"
    );

    let ocsf = h
        .call("GET", &format!("{base}&format=ocsf"), &key, None)
        .await;
    let items = ocsf.body["items"].as_array().unwrap();
    assert_eq!(items[0]["class_uid"], 6003);
    assert_eq!(items[0]["activity_id"], 4);
    assert_eq!(items[0]["src_endpoint"]["ip"], "10.0.0.7");
    assert_eq!(items[0]["metadata"]["uid"], lines[0]["id"]);
    assert!(ocsf.body["cursor"].is_string() && ocsf.body["checkpoint"]["note"].is_string());

    let umbrella = h
        .call(
            "GET",
            "/v1/orgs/umbrella/audit-logs/export",
            &Cred::of(&h.other),
            None,
        )
        .await;
    let theirs = umbrella.body["cursor"].as_str().unwrap();
    for (query, detail) in [
        (
            format!("cursor={cursor}&since=1h"),
            "since is for the first call only",
        ),
        ("until=1h".into(), "an export has no end"),
        ("q=since:1h".into(), "no since: or until: terms"),
        (
            "format=xml".into(),
            "format: \"xml\" is not json, ndjson, ocsf, cef or csv",
        ),
        ("limit=0".into(), "limit:"),
        ("limit=1001".into(), "limit:"),
        ("collapse=maybe".into(), "collapse:"),
        ("cursor=abc".into(), "cursor:"),
        (format!("cursor={theirs}"), "another org"),
        (
            format!(
                "cursor={}",
                trail_core::ExportCursor {
                    org: "acme".into(),
                    seq: 1 << 30
                }
                .encode()
            ),
            "past the end of the log",
        ),
        ("colour=red".into(), "unknown parameter"),
    ] {
        let r = h
            .call(
                "GET",
                &format!("/v1/orgs/acme/audit-logs/export?{query}"),
                &key,
                None,
            )
            .await;
        assert_problem(&r, 400, detail);
    }
    let stream = h
        .call(
            "GET",
            "/v1/orgs/acme/audit-logs/stream?collapse=true",
            &key,
            None,
        )
        .await;
    assert_problem(&stream, 400, "collapse: the live tail sends every event");
    // Another org's export is not this key's to read.
    let r = h
        .call("GET", "/v1/orgs/umbrella/audit-logs/export", &key, None)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

/// The collapsed view folds runs of identical events into one record, in the list and in
/// the export, where a run is returned once, when it is closed.
#[tokio::test]
async fn collapse_folds_runs_and_the_export_returns_each_run_once() {
    let h = harness().await;
    let (_, key) = siem_key(&h).await;
    let at = |s: i64| Timestamp(NOW.micros() + s * 1_000_000).to_string();
    let same = |s: i64| {
        json!({"action": "synced", "timestamp": at(s), "actor": {"id": "ci", "type": "api_key"},
                               "object": {"type": "application", "id": {"kind": "Application", "name": "web"}}})
    };
    let mut batch: Vec<Value> = (0..5).map(same).collect();
    batch.push(
        json!({"action": "deleted", "timestamp": at(5), "actor": {"id": "ci", "type": "api_key"}}),
    );
    batch.extend((6..9).map(same));
    assert_eq!(
        h.ingest("acme", Value::from(batch)).await.status,
        StatusCode::OK
    );

    let list = h
        .get(
            "/v1/orgs/acme/audit-logs?q=category:app&collapse=true&limit=2",
            Some(&h.owner),
        )
        .await;
    let items = list.body["items"].as_array().unwrap();
    assert_eq!(
        items
            .iter()
            .map(|r| r["count"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [3, 1]
    );
    assert_eq!(items[0]["timestamp"], at(6));
    assert_eq!(items[0]["lastOccurredTimestamp"], at(8));
    assert_eq!(items[0]["seqs"].as_array().unwrap().len(), 3);
    let next = list.body["nextCursor"].as_str().unwrap();
    let rest = h
        .get(
            &format!("/v1/orgs/acme/audit-logs?q=category:app&collapse=true&cursor={next}"),
            Some(&h.owner),
        )
        .await;
    let rest = rest.body["items"].as_array().unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(
        (
            rest[0]["count"].clone(),
            rest[0]["lastOccurredTimestamp"].clone()
        ),
        (json!(5), json!(at(4)))
    );
    // A run is not cut between pages because a read stopped inside it: 150 events of one
    // run, then 1,000 of another (a full run), newest first, 100 runs a page.
    let bulk: Vec<Value> = (0..1150)
        .map(|i| {
            let action = if i < 150 { "older-run" } else { "newer-run" };
            json!({"action": action, "category": "batch", "timestamp": at(20 + i / 100), "actor": {"id": "bulk", "type": "system"}})
        })
        .collect();
    assert_eq!(
        h.ingest("acme", Value::from(bulk)).await.status,
        StatusCode::OK
    );
    let counts = |r: &Reply| {
        r.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["count"].as_u64().unwrap())
            .collect::<Vec<_>>()
    };
    let first = h
        .get(
            "/v1/orgs/acme/audit-logs?actor=bulk&collapse=true&limit=100",
            Some(&h.owner),
        )
        .await;
    assert_eq!(counts(&first), [1000]);
    let next = first.body["nextCursor"].as_str().unwrap();
    let second = h
        .get(
            &format!("/v1/orgs/acme/audit-logs?actor=bulk&collapse=true&limit=100&cursor={next}"),
            Some(&h.owner),
        )
        .await;
    assert_eq!(
        counts(&second),
        [150],
        "the older run whole, on the next page"
    );
    assert!(second.body["nextCursor"].is_null());

    // Without collapse, every stored event is there as it was stored.
    let plain = h
        .get("/v1/orgs/acme/audit-logs?q=category:app", Some(&h.owner))
        .await;
    assert_eq!(plain.body["items"].as_array().unwrap().len(), 9);
    assert!(plain.body["items"][0].get("seqs").is_none());

    // The export: the last run may still grow, so it waits for the next pull.
    let url = "/v1/orgs/acme/audit-logs/export?q=category:app&collapse=true";
    let first = h
        .call(
            "GET",
            &format!("{url}&since=2000-01-01T00:00:00Z"),
            &key,
            None,
        )
        .await;
    let counts = |r: &Reply| {
        r.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["count"].as_u64().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(counts(&first), [5, 1]);
    let cursor = first.body["cursor"].as_str().unwrap().to_owned();
    let again = h
        .call("GET", &format!("{url}&cursor={cursor}"), &key, None)
        .await;
    assert_eq!(
        counts(&again),
        Vec::<u64>::new(),
        "an open run is not returned"
    );
    assert_eq!(again.body["cursor"], json!(cursor));
    // A different event closes it: it comes once, whole, and the new one waits in turn.
    assert_eq!(
        h.ingest("acme", json!([event("created")])).await.status,
        StatusCode::OK
    );
    let closed = h
        .call("GET", &format!("{url}&cursor={cursor}"), &key, None)
        .await;
    assert_eq!(counts(&closed), [3]);
    assert_eq!(closed.body["items"][0]["seqs"].as_array().unwrap().len(), 3);
}

/// Attack finding: an API key kept the role of the admin who made it after they were demoted
/// or removed (and could promote them back), and one made with a personal access token
/// worked after that token was revoked. What a key holds is now bounded, at each use, by what
/// its maker holds then.
#[tokio::test]
async fn an_api_key_never_holds_more_than_its_maker_does_now() {
    let h = harness().await;
    let owner = Cred::of(&h.owner);
    let admin = h.signed_in("acme", "admin@acme.io", "admin").await;
    let make = |cred: Cred, name: &'static str, scopes: &'static [&'static str]| {
        let h = &h;
        async move {
            let r = h
                .call(
                    "POST",
                    "/v1/orgs/acme/api-keys",
                    &cred,
                    Some(json!({"name": name, "scopes": scopes})),
                )
                .await;
            assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
            let id = r.body["id"].as_str().unwrap().to_owned();
            (
                Cred::of(&format!("{id}:{}", r.body["secret"].as_str().unwrap())),
                id,
            )
        }
    };
    let (key, _) = make(admin, "admins-key", &["members:manage", "logs:write"]).await;
    async fn members(h: &Harness, cred: &Cred) -> Reply {
        h.call("GET", "/v1/orgs/acme/members", cred, None).await
    }
    async fn read_with(h: &Harness, cred: &Cred) -> Reply {
        h.call("GET", "/v1/orgs/acme/audit-logs?limit=1", cred, None)
            .await
    }
    assert_eq!(members(&h, &key).await.status, StatusCode::OK);
    // Demoted to member: the key holds what a member does, and cannot promote its maker.
    let r = h
        .call(
            "PATCH",
            "/v1/orgs/acme/members/admin@acme.io",
            &owner,
            Some(json!({"role": "member"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_problem(&members(&h, &key).await, 403, "members:manage");
    let r = h
        .call(
            "PATCH",
            "/v1/orgs/acme/members/admin@acme.io",
            &key,
            Some(json!({"role": "admin"})),
        )
        .await;
    assert_problem(&r, 403, "members:manage");
    // Promoted again, the key works again; removed, it is refused, saying why.
    h.call(
        "PATCH",
        "/v1/orgs/acme/members/admin@acme.io",
        &owner,
        Some(json!({"role": "admin"})),
    )
    .await;
    assert_eq!(members(&h, &key).await.status, StatusCode::OK);
    let r = h
        .call(
            "DELETE",
            "/v1/orgs/acme/members/admin@acme.io",
            &owner,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    assert_problem(
        &members(&h, &key).await,
        401,
        "the member who made it is no longer in org \"acme\"",
    );

    // Made with a PAT: it works while that PAT does; and a key made by that key, too.
    let r = h
        .call(
            "POST",
            "/v1/orgs/acme/tokens",
            &owner,
            Some(json!({"name": "automation", "scopes": ["logs:read", "keys:manage"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let (pat_id, pat) = (
        r.body["id"].as_str().unwrap().to_owned(),
        r.body["token"].as_str().unwrap().to_owned(),
    );
    let (by_pat, _) = make(Cred::of(&pat), "by-pat", &["logs:read", "keys:manage"]).await;
    assert_eq!(read_with(&h, &by_pat).await.status, StatusCode::OK);
    let r = h
        .call(
            "POST",
            "/v1/orgs/acme/api-keys",
            &by_pat,
            Some(json!({"name": "by-key", "scopes": ["logs:read"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let by_key = Cred::of(&format!(
        "{}:{}",
        r.body["id"].as_str().unwrap(),
        r.body["secret"].as_str().unwrap()
    ));
    assert_eq!(read_with(&h, &by_key).await.status, StatusCode::OK);
    let r = h
        .call(
            "DELETE",
            &format!("/v1/orgs/acme/tokens/{pat_id}"),
            &owner,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    assert_problem(
        &read_with(&h, &by_pat).await,
        401,
        &format!("the credential it was made with ({pat_id}) was revoked"),
    );
    // The key made by that key: its maker's maker was revoked.
    assert_problem(
        &read_with(&h, &by_key).await,
        401,
        &format!("the credential it was made with ({pat_id}) was revoked"),
    );
    // Revoking a key ends the keys it made.
    let (parent, parent_id) =
        make(Cred::of(&h.owner), "parent", &["keys:manage", "logs:write"]).await;
    let (child, _) = make(parent, "child", &["logs:write"]).await;
    async fn ingest(h: &Harness, cred: &Cred) -> Reply {
        h.call(
            "POST",
            "/v1/orgs/acme/events",
            cred,
            Some(json!([event("user.login")])),
        )
        .await
    }
    assert_eq!(ingest(&h, &child).await.status, StatusCode::OK);
    let r = h
        .call(
            "DELETE",
            &format!("/v1/orgs/acme/api-keys/{parent_id}"),
            &owner,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    assert_problem(
        &ingest(&h, &child).await,
        401,
        &format!("the credential it was made with ({parent_id}) was revoked"),
    );
}

/// Attack finding: HEAD on an authenticated route answered 500 ("no operation for HEAD") and
/// was recorded as a server error. HEAD is the GET operation without the body: the same
/// access, the same record.
#[tokio::test]
async fn head_is_the_get_operation_without_its_body() {
    let h = harness().await;
    for (cred, status) in [
        (Cred::of(&h.owner), StatusCode::OK),
        (Cred::None, StatusCode::UNAUTHORIZED),
        (Cred::of(&h.other), StatusCode::FORBIDDEN),
    ] {
        let r = h
            .send(request("HEAD", "/v1/orgs/acme/audit-logs", &cred, None))
            .await;
        assert_eq!(r.status, status);
        assert_eq!(r.body, Value::String(String::new()), "no body");
    }
    let recorded = h.stored("acme").await;
    let heads: Vec<_> = recorded
        .iter()
        .filter(|s| s.event.request.as_ref().is_some_and(|r| r.method == "HEAD"))
        .collect();
    assert!(!heads.is_empty());
    assert!(heads.iter().all(
        |s| s.event.action == "listAuditLogs" && s.event.request.as_ref().unwrap().status < 500
    ));
}

/// An invitation made before invitations carried a role (a store from an earlier Trail) was
/// made out to the account it created, already a member: accepting it still sets that
/// account's first password, and nothing else.
#[tokio::test]
async fn an_invitation_from_an_earlier_trail_still_sets_its_accounts_first_password() {
    let h = harness().await;
    let s: &dyn Store = &*h.store;
    let pending = User {
        id: "usr_old".into(),
        email: "old@acme.io".into(),
        password_hash: None,
        platform_admin: false,
        created_at: NOW,
    };
    s.add_member("acme", pending, Role::Member, Vec::new())
        .await
        .unwrap();
    let minted = mint(CredentialSpec {
        kind: TokenKind::Invitation,
        org: "acme".into(),
        owner: "old@acme.io".into(),
        user_id: Some("usr_old".into()),
        name: "invitation".into(),
        description: String::new(),
        scopes: Vec::new(),
        instance: None,
        created_by: "owner@acme.io".into(),
        created_at: NOW,
        expires_at: None,
        reach: trail_store::Reach::Own,
    });
    s.create_token(minted.token, Vec::new()).await.unwrap();
    let r = h
        .accept(&minted.secret, "the old member's passphrase")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(
        (r.body["role"].clone(), r.body["newAccount"].clone()),
        (json!("member"), json!(false))
    );
    assert!(
        h.sign_in("old@acme.io", "the old member's passphrase")
            .await
            .is_ok()
    );
    assert_problem(
        &h.accept(&minted.secret, "the old member's passphrase")
            .await,
        404,
        "not valid",
    );
}
