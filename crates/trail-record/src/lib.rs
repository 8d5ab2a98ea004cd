//! Record every authenticated call of an axum service as an audit event.
//!
//! Add [`RecordLayer`] to a router and each call that the service's own authentication has
//! attributed to an actor becomes one event: category `api`, the actor, the token id and
//! the scope checked, and a `request` block with the method, the normalized route template
//! (from axum's `MatchedPath`, never the literal URL), the status, the latency measured
//! around the handler, and the SHA-256 of the request body, computed as the handler reads
//! it, without buffering it. The event goes to a [`Sink`]: Trail's ingest API
//! ([`TrailSink`]) or one of your own.
//!
//! ```no_run
//! # use axum::{Router, routing::get};
//! # use trail_record::{RecordLayer, TrailSink};
//! let app: Router = Router::new()
//!     .route("/v1/tenants/{id}", get(|| async { "ok" }))
//!     .layer(RecordLayer::new(TrailSink::new("http://127.0.0.1:7070", "acme", "key_id", "secret")));
//! ```
//!
//! Who called is noted by the service's authentication, through the [`CallContext`] the layer
//! puts in the request's extensions: `ctx.set_actor(..)`. Calls with no actor (refused for
//! lack of a credential) are not recorded: there is no anonymous actor.
//!
//! By default the layer fails closed: if the record cannot be written, the call is answered
//! 503 instead of its response. The handler and the record run as their own task, so a
//! client that hangs up cannot cancel the record of work already done.
//!
//! A service that keeps its records where it keeps its data can write a call's record in
//! the same transaction as the call's effect, one write instead of two before the response:
//! the handler takes the record with [`CallContext::record_for`] and, once both are
//! durable, says so with [`CallContext::recorded`]. The layer then writes nothing for that
//! call; in every other case (the handler failed, answered another status, or never said it
//! wrote the record) the layer writes the record itself, so a call is never left unrecorded.
//!
//! Architecture invariant: this crate knows nothing of Trail's storage or server; it speaks
//! to Trail only through a sink.

mod digest;
#[cfg(feature = "http-sink")]
mod http_sink;

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use async_trait::async_trait;
use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, Request};
use axum::http::header::{CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use trail_core::event::{Actor, CanonicalJson, Object, RequestInfo, limits};
use trail_core::{ActorType, EventBody, Timestamp};

pub use digest::{BodyDigest, DigestingBody};
#[cfg(feature = "http-sink")]
pub use http_sink::{TrailSink, TrailSinkBuilder};

/// Who made a call, as the service's authentication established it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub actor: String,
    pub actor_type: ActorType,
    /// The credential's id (never its secret).
    pub token_id: Option<String>,
}

/// What the layers inside note about one call, for its record.
#[derive(Clone, Default)]
pub struct CallContext(Arc<Mutex<Noted>>);

#[derive(Default)]
struct Noted {
    identity: Option<Identity>,
    org: Option<String>,
    scope: Option<String>,
    object: Option<Object>,
    omit_body_digest: bool,
    /// What the layer knows of the call before its handler runs; `None` outside a layer.
    call: Option<Call>,
    /// The status of a record the handler took ([`CallContext::record_for`]) and then
    /// wrote with its effect ([`CallContext::recorded`]).
    written: Option<StatusCode>,
    taken: Option<StatusCode>,
}

/// What the layer knows of a call before its handler runs.
struct Call {
    started: Instant,
    started_at: Timestamp,
    action: String,
    method: String,
    route: String,
    ip: Option<IpAddr>,
    user_agent: Option<String>,
    digest: BodyDigest,
}

impl Noted {
    /// The call's record if it is answered `status`; `None` without an actor or a layer.
    fn record(&self, status: StatusCode) -> Option<CallRecord> {
        let (identity, call) = (self.identity.clone()?, self.call.as_ref()?);
        let event = EventBody {
            client_id: None,
            instance: None,
            timestamp: Some(call.started_at),
            action: call.action.clone(),
            category: "api".to_owned(),
            actor: Actor {
                id: identity.actor,
                kind: identity.actor_type,
                ip: call.ip,
                user_agent: call.user_agent.clone(),
                token_id: identity.token_id,
                scope: self.scope.clone(),
            },
            object: self.object.clone(),
            details: None,
            request: Some(RequestInfo {
                method: call.method.clone(),
                route: call.route.clone(),
                status: status.as_u16(),
                latency_us: call.started.elapsed().as_micros() as u64,
                body_sha256: if self.omit_body_digest {
                    None
                } else {
                    call.digest.finish()
                },
            }),
            count: 1,
            last_occurred: None,
            // Set by whoever appends it: Trail for its own, the ingest API for a TrailSink.
            submitted_by: None,
        };
        Some(CallRecord {
            org: self.org.clone(),
            event,
        })
    }
}

impl CallContext {
    /// Who is calling. Without it the call is not recorded.
    pub fn set_actor(&self, identity: Identity) {
        self.lock().identity = Some(identity);
    }
    /// The org (tenant) the call acted on, if the sink needs one.
    pub fn set_org(&self, org: &str) {
        self.lock().org = Some(org.to_owned());
    }
    /// The scope (permission) that was checked.
    pub fn set_scope(&self, scope: &str) {
        self.lock().scope = Some(scope.to_owned());
    }
    /// What the call acted on, when that is worth naming (e.g. a refused target).
    pub fn set_object(&self, object: Object) {
        self.lock().object = Some(object);
    }
    /// Leaves the body's digest out of the record: for calls whose body holds a secret (a
    /// password), whose unsalted digest could be guessed offline.
    pub fn omit_body_digest(&self) {
        self.lock().omit_body_digest = true;
    }
    /// The identity noted so far.
    pub fn identity(&self) -> Option<Identity> {
        self.lock().identity.clone()
    }
    /// The call's record as it will read if the call is answered `status`, for a handler
    /// that writes it in the same transaction as the call's effect (its latency ends now,
    /// when the effect and the record are handed over together). `None` when the call has
    /// no actor, so no record, or runs outside a [`RecordLayer`]. Once the record is
    /// durable, call [`CallContext::recorded`]; until then the layer still writes it.
    pub fn record_for(&self, status: StatusCode) -> Option<CallRecord> {
        let mut noted = self.lock();
        let record = noted.record(status)?;
        noted.taken = Some(status);
        Some(record)
    }
    /// The record taken with [`CallContext::record_for`] is durable. The layer writes no
    /// other record of this call if the response has the status the record names.
    pub fn recorded(&self) {
        let mut noted = self.lock();
        noted.written = noted.taken;
    }
    fn lock(&self) -> std::sync::MutexGuard<'_, Noted> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One call's record, for a sink.
#[derive(Debug, Clone)]
pub struct CallRecord {
    /// The org noted by the service, if any.
    pub org: Option<String>,
    pub event: EventBody,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SinkError(pub String);

/// Where records go. `record` returns once the record is durable (or fails).
#[async_trait]
pub trait Sink: Send + Sync + 'static {
    async fn record(&self, call: CallRecord) -> Result<(), SinkError>;
}

type Namer = dyn Fn(&str, Option<&str>) -> String + Send + Sync;

/// The layer; see the crate documentation.
#[derive(Clone)]
pub struct RecordLayer {
    shared: Arc<Shared>,
}

struct Shared {
    sink: Arc<dyn Sink>,
    action: Box<Namer>,
    fail_closed: bool,
}

impl RecordLayer {
    pub fn new(sink: impl Sink) -> RecordLayer {
        RecordLayer::with_sink(Arc::new(sink))
    }

    pub fn with_sink(sink: Arc<dyn Sink>) -> RecordLayer {
        RecordLayer {
            shared: Arc::new(Shared {
                sink,
                action: Box::new(|_, _| "api.call".to_owned()),
                fail_closed: true,
            }),
        }
    }

    /// Names the `action` of a record from the method and the matched path (axum's form,
    /// `/v1/tenants/{id}`); `api.call` by default.
    pub fn action(
        mut self,
        f: impl Fn(&str, Option<&str>) -> String + Send + Sync + 'static,
    ) -> Self {
        self.shared_mut().action = Box::new(f);
        self
    }

    /// Serve the call even when its record cannot be written (logged as an error).
    pub fn fail_open(mut self) -> Self {
        self.shared_mut().fail_closed = false;
        self
    }

    fn shared_mut(&mut self) -> &mut Shared {
        Arc::get_mut(&mut self.shared).expect("configure the layer before cloning it")
    }
}

impl<S> tower::Layer<S> for RecordLayer {
    type Service = RecordService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RecordService {
            inner,
            shared: self.shared.clone(),
        }
    }
}

#[derive(Clone)]
pub struct RecordService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> tower::Service<Request> for RecordService<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        // The clone that was polled ready serves this call; keep a fresh one for the next.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let shared = self.shared.clone();
        Box::pin(async move {
            let task = tokio::spawn(handle_and_record(shared, inner, req));
            Ok(task.await.unwrap_or_else(|e| {
                tracing::error!(error = %e, "a recorded call's task failed");
                problem(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the server failed; the error is in its log",
                )
            }))
        })
    }
}

async fn handle_and_record<S>(shared: Arc<Shared>, mut inner: S, req: Request) -> Response
where
    S: tower::Service<Request, Response = Response, Error = Infallible>,
{
    let started = Instant::now();
    let started_at = Timestamp::from_system_time(std::time::SystemTime::now());
    let method = req.method().as_str().to_owned();
    let matched = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let route = format!(
        "{method} {}",
        matched
            .as_deref()
            .map_or_else(|| "unmatched".to_owned(), template)
    );
    let action = (shared.action)(&method, matched.as_deref());
    let (req, ip) = peer_ip(req).await;
    let user_agent = req
        .headers()
        .get(USER_AGENT)
        .map(|v| printable(&String::from_utf8_lossy(v.as_bytes()), limits::USER_AGENT));

    let (mut parts, body) = req.into_parts();
    let (body, digest) = DigestingBody::wrap(body);
    let ctx = CallContext::default();
    ctx.lock().call = Some(Call {
        started,
        started_at,
        action,
        method,
        route,
        ip,
        user_agent,
        digest,
    });
    parts.extensions.insert(ctx.clone());
    let response = match inner.call(Request::from_parts(parts, body)).await {
        Ok(r) => r,
        Err(never) => match never {},
    };

    let noted = std::mem::take(&mut *ctx.lock());
    if noted.written == Some(response.status()) {
        // Written by the handler with the call's effect, with this status.
        return response;
    }
    let Some(record) = noted.record(response.status()) else {
        return response;
    };
    match shared.sink.record(record).await {
        Ok(()) => response,
        Err(e) if shared.fail_closed => {
            tracing::error!(error = %e, "could not record a call; failing it");
            problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "the call could not be recorded in the audit log, so it was not served; retry later",
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "could not record a call; serving it anyway (fail open)");
            response
        }
    }
}

/// The client's address, when a layer in front of the recording layer has worked it out
/// (behind a reverse proxy, say, from `X-Forwarded-For`). Put it in the request's
/// extensions and it is what records name; without it, the socket peer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

/// The address `req` came from: its [`ClientIp`] extension if it has one, else the socket
/// peer as axum's `ConnectInfo` extractor sees it (the server must be run with
/// `into_make_service_with_connect_info`).
pub async fn peer_ip(req: Request) -> (Request, Option<IpAddr>) {
    if let Some(ClientIp(ip)) = req.extensions().get::<ClientIp>() {
        let ip = *ip;
        return (req, Some(ip));
    }
    let (mut parts, body) = req.into_parts();
    let ip = ConnectInfo::<SocketAddr>::from_request_parts(&mut parts, &())
        .await
        .ok()
        .map(|c| c.0.ip());
    (Request::from_parts(parts, body), ip)
}

/// `/v1/orgs/{org}/events` as a route template: `/v1/orgs/:org/events`.
pub fn template(path: &str) -> String {
    path.replace('{', ":").replace('}', "")
}

/// An object naming what a call acted on, e.g. `object("org", "acme")`.
pub fn object(kind: &str, id: &str) -> Object {
    Object::new(
        kind.to_owned(),
        Some(CanonicalJson::from_value(&id.into())),
        None,
    )
}

/// Text safe to keep: control characters replaced, cut at `max` bytes.
pub fn printable(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max));
    for c in s.chars() {
        let c = if c.is_control() { '?' } else { c };
        if out.len() + c.len_utf8() > max {
            break;
        }
        out.push(c);
    }
    out
}

fn problem(status: StatusCode, detail: &str) -> Response {
    let body = serde_json::json!({
        "type": if status == StatusCode::SERVICE_UNAVAILABLE { "/problems/unavailable" } else { "/problems/internal" },
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": detail,
    });
    let mut resp = (status, body.to_string()).into_response();
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    if status == StatusCode::SERVICE_UNAVAILABLE {
        resp.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_and_printable_text() {
        assert_eq!(template("/v1/orgs/{org}/events"), "/v1/orgs/:org/events");
        assert_eq!(printable("trail/0.1\u{7}x", 100), "trail/0.1?x");
        assert_eq!(printable("ééé", 5), "éé");
    }
}
