//! The API through the router (no sockets): authentication, authorization, ingest, reads,
//! the recording of every call, and a problem+json answer for every bad input.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use trail_core::scope::{Role, Scope};
use trail_core::{EventBody, Timestamp};
use trail_server::auth::mint;
use trail_server::{AppState, app};
use trail_store::{
    Appended, Bootstrap, EventPage, EventQuery, Org, SqliteStore, Store, StoreError, StoredEvent,
    Token, TokenKind, User,
};

const SEED_002: &str = r#"{"action":"deleted","actor":{"id":"Sarah Brown@akuity.io","ip":"132.226.61.247","type":"api_key"},"count":9,"details":{"actionType":"DELETE","message":"Resource successfully created","patch":""},"lastOccurredTimestamp":"2025-11-21 16:26:40.13921 +0000 UTC","object":{"id":{"group":"argoproj.io","kind":"Cluster","name":"dev-team"},"parentId":{"applicationName":"web-app","name":"","parentName":""},"type":"custom_role"},"timestamp":"2025-11-21 16:26:40.13921 +0000 UTC"}"#;

/// A store whose appends of recorded API calls can be made to fail.
struct Flaky {
    inner: SqliteStore,
    fail_recording: AtomicBool,
}

#[async_trait]
impl Store for Flaky {
    async fn ping(&self) -> trail_store::Result<()> {
        self.inner.ping().await
    }
    async fn bootstrap(&self, b: Bootstrap) -> trail_store::Result<bool> {
        self.inner.bootstrap(b).await
    }
    async fn create_org(&self, org: Org) -> trail_store::Result<()> {
        self.inner.create_org(org).await
    }
    async fn org(&self, id: &str) -> trail_store::Result<Option<Org>> {
        self.inner.org(id).await
    }
    async fn orgs(&self) -> trail_store::Result<Vec<Org>> {
        self.inner.orgs().await
    }
    async fn create_user(&self, user: User) -> trail_store::Result<()> {
        self.inner.create_user(user).await
    }
    async fn user_by_email(&self, email: &str) -> trail_store::Result<Option<User>> {
        self.inner.user_by_email(email).await
    }
    async fn add_member(&self, org: &str, user: &str, role: Role) -> trail_store::Result<()> {
        self.inner.add_member(org, user, role).await
    }
    async fn create_token(&self, token: Token) -> trail_store::Result<()> {
        self.inner.create_token(token).await
    }
    async fn token(&self, id: &str) -> trail_store::Result<Option<Token>> {
        self.inner.token(id).await
    }
    async fn append(
        &self,
        org: &str,
        events: Vec<EventBody>,
    ) -> trail_store::Result<Vec<Appended>> {
        if self.fail_recording.load(Ordering::SeqCst) && events.iter().any(|e| e.category == "api")
        {
            return Err(StoreError::Unavailable("disk full".into()));
        }
        self.inner.append(org, events).await
    }
    async fn query(&self, org: &str, q: &EventQuery) -> trail_store::Result<EventPage> {
        self.inner.query(org, q).await
    }
    async fn events_from(
        &self,
        org: &str,
        from: u64,
        limit: usize,
    ) -> trail_store::Result<Vec<StoredEvent>> {
        self.inner.events_from(org, from, limit).await
    }
    async fn log_size(&self, org: &str) -> trail_store::Result<u64> {
        self.inner.log_size(org).await
    }
}

struct Harness {
    app: Router,
    store: Arc<Flaky>,
    /// Owner of acme: admin-full.
    owner: String,
    /// acme, logs:write only.
    writer: String,
    /// Owner of umbrella.
    other: String,
    _dir: tempfile::TempDir,
}

const NOW: Timestamp = Timestamp(1_763_740_000_000_000);

async fn token(
    store: &dyn Store,
    org: &str,
    scopes: &[Scope],
    expires: Option<Timestamp>,
    revoked: bool,
) -> String {
    let mut m = mint(
        TokenKind::Pat,
        org,
        &format!("owner@{org}.io"),
        "t",
        scopes.to_vec(),
        NOW,
        expires,
    );
    if revoked {
        m.token.revoked_at = Some(NOW);
    }
    store.create_token(m.token).await.unwrap();
    m.secret
}

async fn harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Flaky {
        inner: SqliteStore::open(dir.path()).unwrap(),
        fail_recording: AtomicBool::new(false),
    });
    for id in ["acme", "umbrella"] {
        store
            .create_org(Org {
                id: id.into(),
                name: id.into(),
                created_at: NOW,
            })
            .await
            .unwrap();
    }
    let full = trail_core::scope::preset("admin-full").unwrap();
    Harness {
        owner: token(&*store, "acme", full, None, false).await,
        writer: token(&*store, "acme", &[Scope::LogsWrite], None, false).await,
        other: token(&*store, "umbrella", full, None, false).await,
        app: app(AppState {
            store: store.clone(),
        }),
        store,
        _dir: dir,
    }
}

struct Reply {
    status: StatusCode,
    content_type: String,
    body: Value,
}

impl Harness {
    async fn send(&self, req: Request<Body>) -> Reply {
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let content_type = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()));
        Reply {
            status,
            content_type,
            body,
        }
    }

    /// A GET with this `Authorization` header, verbatim.
    async fn get_with_authorization(&self, uri: &str, authorization: &str) -> Reply {
        let req = Request::get(uri).header(header::AUTHORIZATION, authorization);
        self.send(req.body(Body::empty()).unwrap()).await
    }

    async fn get(&self, uri: &str, token: Option<&str>) -> Reply {
        let mut req = Request::get(uri);
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        self.send(req.body(Body::empty()).unwrap()).await
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
        ("actorType=robot", "unknown actor type"),
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
async fn a_call_that_cannot_be_recorded_fails() {
    let h = harness().await;
    h.store.fail_recording.store(true, Ordering::SeqCst);
    let r = h.get("/v1/me", Some(&h.owner)).await;
    assert_problem(&r, 503, "retry later");
    let r = h.ingest("acme", json!([event("a")])).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    h.store.fail_recording.store(false, Ordering::SeqCst);
    assert_eq!(h.get("/v1/me", Some(&h.owner)).await.status, StatusCode::OK);
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
    assert_problem(&widened, 400, "reads instance \"argocd-prod\" only");
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
    assert_eq!(
        doc["paths"].as_object().unwrap().len(),
        trail_server::routes::OPERATIONS.len() + 4
    );
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
