//! The recording layer around a small axum service, with a sink that collects records.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::{Next, from_fn};
use axum::response::Response;
use axum::routing::{get, post};
use http_body_util::BodyExt;
use sha2::Digest;
use tower::ServiceExt;
use trail_core::ActorType;
use trail_record::{CallContext, CallRecord, Identity, RecordLayer, Sink, SinkError};

#[derive(Clone, Default)]
struct Collect {
    records: Arc<Mutex<Vec<CallRecord>>>,
    fail: bool,
}

#[async_trait]
impl Sink for Collect {
    async fn record(&self, call: CallRecord) -> Result<(), SinkError> {
        if self.fail {
            return Err(SinkError("disk full".into()));
        }
        self.records.lock().unwrap().push(call);
        Ok(())
    }
}

/// The service's own authentication: a bearer token names the user.
async fn auth(req: Request, next: Next) -> Response {
    let user = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let Some(user) = user else {
        return Response::builder().status(401).body(Body::empty()).unwrap();
    };
    if let Some(ctx) = req.extensions().get::<CallContext>() {
        ctx.set_actor(Identity {
            actor: user,
            actor_type: ActorType::Pat,
            token_id: Some("tok_1".into()),
        });
        ctx.set_org("acme");
        ctx.set_scope("tenants:read");
    }
    next.run(req).await
}

fn service(sink: Collect) -> Router {
    Router::new()
        .route("/v1/tenants/{id}", get(|| async { "tenant" }))
        .route(
            "/v1/tenants",
            post(|body: String| async move { (StatusCode::CREATED, body) }),
        )
        .route("/v1/panic-free", get(|| async { StatusCode::IM_A_TEAPOT }))
        .layer(from_fn(auth))
        .layer(
            RecordLayer::new(sink)
                .action(|method, path| format!("{method} {}", path.unwrap_or("?"))),
        )
}

async fn call(app: &Router, method: &str, uri: &str, user: Option<&str>, body: &str) -> StatusCode {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header("user-agent", "tenants-cli/1.0");
    if let Some(u) = user {
        req = req.header("authorization", format!("Bearer {u}"));
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::from(body.to_owned())).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    resp.into_body().collect().await.unwrap();
    status
}

#[tokio::test]
async fn each_attributed_call_becomes_one_record() {
    let sink = Collect::default();
    let app = service(sink.clone());
    assert_eq!(
        call(&app, "GET", "/v1/tenants/42", Some("sarah@acme.io"), "").await,
        StatusCode::OK
    );
    assert_eq!(
        call(
            &app,
            "POST",
            "/v1/tenants",
            Some("sarah@acme.io"),
            r#"{"name":"t"}"#
        )
        .await,
        StatusCode::CREATED
    );
    assert_eq!(
        call(&app, "GET", "/v1/panic-free", Some("bob@acme.io"), "").await,
        StatusCode::IM_A_TEAPOT
    );
    assert_eq!(
        call(&app, "GET", "/v1/tenants/42", None, "").await,
        StatusCode::UNAUTHORIZED
    );

    let records = sink.records.lock().unwrap().clone();
    assert_eq!(records.len(), 3, "no record without an actor");
    let get = &records[0];
    assert_eq!(get.org.as_deref(), Some("acme"));
    let e = &get.event;
    assert_eq!(
        (e.category.as_str(), e.action.as_str()),
        ("api", "GET /v1/tenants/{id}")
    );
    assert_eq!(e.actor.id, "sarah@acme.io");
    assert_eq!(e.actor.kind, ActorType::Pat);
    assert_eq!(e.actor.token_id.as_deref(), Some("tok_1"));
    assert_eq!(e.actor.scope.as_deref(), Some("tenants:read"));
    assert_eq!(e.actor.user_agent.as_deref(), Some("tenants-cli/1.0"));
    let r = e.request.as_ref().unwrap();
    assert_eq!(
        (r.method.as_str(), r.route.as_str(), r.status),
        ("GET", "GET /v1/tenants/:id", 200)
    );
    assert_eq!(
        hex::encode(r.body_sha256.unwrap()),
        hex::encode(sha2::Sha256::digest(b""))
    );

    let post = records[1].event.request.as_ref().unwrap();
    assert_eq!(post.route, "POST /v1/tenants");
    assert_eq!(post.status, 201);
    assert_eq!(
        post.body_sha256.unwrap().to_vec(),
        sha2::Sha256::digest(br#"{"name":"t"}"#).to_vec()
    );
    assert_eq!(records[2].event.request.as_ref().unwrap().status, 418);
}

#[tokio::test]
async fn a_call_whose_record_fails_is_not_served_unless_failing_open() {
    let closed = service(Collect {
        fail: true,
        ..Default::default()
    });
    assert_eq!(
        call(&closed, "GET", "/v1/tenants/1", Some("a"), "").await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    // Without an actor there is nothing to record, so nothing fails.
    assert_eq!(
        call(&closed, "GET", "/v1/tenants/1", None, "").await,
        StatusCode::UNAUTHORIZED
    );

    let open = Router::new()
        .route("/v1/tenants/{id}", get(|| async { "tenant" }))
        .layer(from_fn(auth))
        .layer(
            RecordLayer::new(Collect {
                fail: true,
                ..Default::default()
            })
            .fail_open(),
        );
    assert_eq!(
        call(&open, "GET", "/v1/tenants/1", Some("a"), "").await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_client_ip_worked_out_in_front_of_the_layer_is_the_one_recorded() {
    use axum::extract::connect_info::MockConnectInfo;
    use std::net::{IpAddr, SocketAddr};
    use trail_record::ClientIp;
    let sink = Collect::default();
    let peer = |app: Router| {
        app.layer(MockConnectInfo(
            "10.0.0.5:4000".parse::<SocketAddr>().unwrap(),
        ))
    };
    // Without a ClientIp, the socket peer is recorded.
    call(
        &peer(service(sink.clone())),
        "GET",
        "/v1/tenants/1",
        Some("ana"),
        "",
    )
    .await;
    // A layer in front (a trusted proxy's X-Forwarded-For, say) names the client.
    let client: IpAddr = "203.0.113.7".parse().unwrap();
    let fronted = peer(service(sink.clone()).layer(from_fn(
        move |mut req: Request, next: Next| async move {
            req.extensions_mut().insert(ClientIp(client));
            next.run(req).await
        },
    )));
    call(&fronted, "GET", "/v1/tenants/1", Some("ana"), "").await;
    let records = sink.records.lock().unwrap().clone();
    let ips: Vec<Option<String>> = records
        .iter()
        .map(|r| r.event.actor.ip.map(|ip| ip.to_string()))
        .collect();
    assert_eq!(
        ips,
        [Some("10.0.0.5".to_owned()), Some("203.0.113.7".to_owned())]
    );
}

/// A handler that keeps its records where it keeps its data: it takes its call's record and
/// writes it "with its effect" (into the same collection), answering 201, unless the query
/// asks it to fail the write (`?fail`) or to answer another status than the one it took
/// the record for (`?other`).
async fn writes_its_own_record(req: Request) -> Response {
    let sink = req.extensions().get::<Collect>().unwrap().clone();
    let ctx = req.extensions().get::<CallContext>().unwrap().clone();
    let query = req.uri().query().unwrap_or("").to_owned();
    req.into_body().collect().await.unwrap();
    let record = ctx.record_for(StatusCode::CREATED).unwrap();
    if query == "fail" {
        return Response::builder().status(500).body(Body::empty()).unwrap();
    }
    sink.records.lock().unwrap().push(record);
    ctx.recorded();
    let status = if query == "other" { 200 } else { 201 };
    Response::builder()
        .status(status)
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn a_record_written_with_the_calls_effect_is_written_once() {
    let sink = Collect::default();
    let app = Router::new()
        .route("/v1/tenants", post(writes_its_own_record))
        .layer(from_fn(auth))
        .layer(axum::Extension(sink.clone()))
        .layer(RecordLayer::new(sink.clone()));
    let statuses = |sink: &Collect| -> Vec<u16> {
        let records = sink.records.lock().unwrap();
        records
            .iter()
            .map(|r| r.event.request.as_ref().unwrap().status)
            .collect()
    };

    assert_eq!(
        call(&app, "POST", "/v1/tenants", Some("ana"), r#"{"name":"t"}"#).await,
        StatusCode::CREATED
    );
    assert_eq!(
        statuses(&sink),
        [201],
        "the handler wrote it; the layer did not"
    );
    let taken = sink.records.lock().unwrap()[0].clone();
    assert_eq!(taken.org.as_deref(), Some("acme"));
    let r = taken.event.request.unwrap();
    assert_eq!(r.route, "POST /v1/tenants");
    assert_eq!(
        r.body_sha256.unwrap().to_vec(),
        sha2::Sha256::digest(br#"{"name":"t"}"#).to_vec(),
        "the body is read before the record is taken, so its digest is in it"
    );
    assert_eq!(taken.event.actor.scope.as_deref(), Some("tenants:read"));

    // A record taken but not written is written by the layer, with the status answered.
    sink.records.lock().unwrap().clear();
    call(&app, "POST", "/v1/tenants?fail", Some("ana"), "{}").await;
    assert_eq!(statuses(&sink), [500]);

    // An answer other than the one the written record names is recorded as well.
    sink.records.lock().unwrap().clear();
    call(&app, "POST", "/v1/tenants?other", Some("ana"), "{}").await;
    assert_eq!(statuses(&sink), [201, 200]);

    // Outside the layer there is no record to take.
    assert!(CallContext::default().record_for(StatusCode::OK).is_none());
}
