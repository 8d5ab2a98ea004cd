//! A small "tenants" service whose every authenticated call is recorded into Trail.
//!
//! Create an API key with `logs:write` in Trail, then:
//!
//! ```sh
//! TRAIL_URL=http://127.0.0.1:7070 TRAIL_ORG=default TRAIL_KEY_ID=key_... TRAIL_KEY_SECRET=... \
//!   cargo run -p trail-record --example tenants
//! # (an https:// TRAIL_URL whose certificate a private CA issued: also TRAIL_CA_CERT=ca.pem)
//! curl -H 'Authorization: Bearer alice@example.com' http://127.0.0.1:8080/v1/tenants/42
//! ```
//!
//! and the call is in Trail's log: `GET /v1/tenants/:id`, actor `alice@example.com`.

use axum::Router;
use axum::extract::{Path, Request};
use axum::http::StatusCode;
use axum::middleware::{Next, from_fn};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use trail_core::ActorType;
use trail_record::{CallContext, Identity, RecordLayer, TrailSink};

/// The service's own authentication. (A real one checks the token; this one trusts it.)
async fn authenticate(req: Request, next: Next) -> Response {
    let user = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let Some(user) = user else {
        return (StatusCode::UNAUTHORIZED, "send Authorization: Bearer <you>").into_response();
    };
    // Tell the recording layer who is calling.
    if let Some(ctx) = req.extensions().get::<CallContext>() {
        ctx.set_actor(Identity {
            actor: user,
            actor_type: ActorType::User,
            token_id: None,
        });
        ctx.set_scope("tenants:read");
    }
    next.run(req).await
}

async fn tenant(Path(id): Path<String>) -> String {
    format!("tenant {id}\n")
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let env = |k: &str| std::env::var(k).map_err(|_| format!("set {k}"));
    let mut sink = TrailSink::builder(
        &env("TRAIL_URL")?,
        &env("TRAIL_ORG")?,
        &env("TRAIL_KEY_ID")?,
        &env("TRAIL_KEY_SECRET")?,
    );
    // An https:// Trail whose certificate a private CA issued: trust that CA too.
    if let Some(ca) = std::env::var_os("TRAIL_CA_CERT") {
        sink = sink.ca_cert_pem(&std::fs::read(ca)?)?;
    }
    let sink = sink.build()?;
    let app = Router::new()
        .route("/v1/tenants/{id}", get(tenant))
        .layer(from_fn(authenticate))
        // The one line: every authenticated call above is recorded into Trail.
        .layer(RecordLayer::new(sink));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
    println!("tenants listening on http://{}", listener.local_addr()?);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .await?;
    Ok(())
}
