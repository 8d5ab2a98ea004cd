//! The recording of every authenticated call (seed 001).
//!
//! [`record`] wraps the API: it hands the inner layers an [`AuditSlot`] to note who called
//! (authentication), which org the call acted on and which scope was checked (authorization);
//! it digests the request body as the handler reads it, without buffering it; and when the
//! handler has answered, it appends one `api` event to that org's log and waits for it to be
//! durable. If that write fails the call fails with 503: nothing is served unrecorded. Calls
//! with no valid credential have no actor and are not recorded.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::header::USER_AGENT;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use sha2::{Digest, Sha256};
use trail_core::event::{Actor, CanonicalJson, Object, RequestInfo, limits};
use trail_core::{EventBody, Scope};

use crate::AppState;
use crate::auth::{Caller, authenticate};
use crate::error::ApiError;
use crate::routes;

/// What the layers of one call learn about it, for its audit record.
#[derive(Clone, Default)]
pub struct AuditSlot(Arc<Mutex<Noted>>);

#[derive(Default)]
struct Noted {
    caller: Option<Caller>,
    org: Option<String>,
    /// Another org the call tried to act on, refused.
    target_org: Option<String>,
    scope: Option<Scope>,
}

impl AuditSlot {
    pub fn note_caller(&self, caller: Caller) {
        self.0.lock().expect("audit slot").caller = Some(caller);
    }
    pub fn note_org(&self, org: &str) {
        self.0.lock().expect("audit slot").org = Some(org.to_owned());
    }
    pub fn note_target_org(&self, org: &str) {
        self.0.lock().expect("audit slot").target_org = Some(org.to_owned());
    }
    pub fn note_scope(&self, scope: Scope) {
        self.0.lock().expect("audit slot").scope = Some(scope);
    }
    fn take(&self) -> Noted {
        std::mem::take(&mut *self.0.lock().expect("audit slot"))
    }
}

/// Authenticates the call and notes the caller; answers 401 itself.
pub async fn require_credential(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    match authenticate(&*state.store, req.headers(), crate::now()).await {
        Ok(caller) => {
            if let Some(slot) = req.extensions().get::<AuditSlot>() {
                slot.note_caller(caller.clone());
            }
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(e) => {
            metrics::counter!("trail_auth_failures_total").increment(1);
            e.into_response()
        }
    }
}

/// Records the call once it is answered; see the module documentation.
///
/// The call and its record run as their own task: a client that hangs up cannot cancel the
/// record of work already done (such as events already stored).
pub async fn record(State(state): State<AppState>, req: Request, next: Next) -> Response {
    match tokio::spawn(handle_and_record(state, req, next)).await {
        Ok(response) => response,
        Err(e) => ApiError::Internal(format!("the call's task failed: {e}")).into_response(),
    }
}

async fn handle_and_record(state: AppState, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let started_at = crate::now();
    let method = req.method().as_str().to_owned();
    let route = format!(
        "{method} {}",
        req.extensions()
            .get::<MatchedPath>()
            .map(|p| routes::template(p.as_str()))
            .unwrap_or_else(|| "unmatched".to_owned())
    );
    let action = routes::operation(&method, req.extensions().get::<MatchedPath>());
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let user_agent = req
        .headers()
        .get(USER_AGENT)
        .map(|v| printable(&String::from_utf8_lossy(v.as_bytes()), limits::USER_AGENT));

    let slot = AuditSlot::default();
    let (mut parts, body) = req.into_parts();
    parts.extensions.insert(slot.clone());
    let (body, digest) = DigestingBody::wrap(body);
    let response = next.run(Request::from_parts(parts, body)).await;

    let noted = slot.take();
    let Some(caller) = noted.caller else {
        return response;
    };
    let org = noted.org.unwrap_or_else(|| caller.org.clone());
    let event = EventBody {
        client_id: None,
        instance: None,
        timestamp: Some(started_at),
        action: action.to_owned(),
        category: "api".to_owned(),
        actor: Actor {
            id: caller.actor.clone(),
            kind: caller.actor_type(),
            ip,
            user_agent,
            token_id: Some(caller.token_id.clone()),
            scope: noted.scope.map(|s| s.as_str().to_owned()),
        },
        // A refused attempt on another org names that org as what the call acted on.
        object: noted.target_org.map(|o| {
            Object::new(
                "org".to_owned(),
                Some(CanonicalJson::from_value(&o.into())),
                None,
            )
        }),
        details: None,
        request: Some(RequestInfo {
            method,
            route,
            status: response.status().as_u16(),
            latency_us: started.elapsed().as_micros() as u64,
            body_sha256: digest.finish(),
        }),
        count: 1,
        last_occurred: None,
    };
    match state.store.append(&org, vec![event]).await {
        Ok(_) => response,
        Err(e) => {
            tracing::error!(error = %e, org, "could not record an API call; failing it");
            metrics::counter!("trail_recording_failures_total").increment(1);
            ApiError::Unavailable(format!("the call could not be recorded: {e}")).into_response()
        }
    }
}

/// Text safe to keep: control characters replaced, cut at `max` bytes.
fn printable(s: &str, max: usize) -> String {
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

/// A request body that feeds what passes through it to SHA-256.
struct DigestingBody {
    inner: Body,
    state: Arc<Mutex<DigestState>>,
}

struct DigestState {
    hasher: Sha256,
    finished: bool,
}

/// The digest of a body, once the handler has read it all.
struct BodyDigest(Arc<Mutex<DigestState>>);

impl DigestingBody {
    fn wrap(inner: Body) -> (Body, BodyDigest) {
        let state = Arc::new(Mutex::new(DigestState {
            hasher: Sha256::new(),
            // An empty body is complete before anyone reads it.
            finished: inner.is_end_stream(),
        }));
        let digest = BodyDigest(state.clone());
        (Body::new(DigestingBody { inner, state }), digest)
    }
}

impl BodyDigest {
    /// The SHA-256 of the whole body, or `None` if the handler did not read all of it (it
    /// was refused before being read, or was too large).
    fn finish(self) -> Option<[u8; 32]> {
        let state = self.0.lock().expect("digest state");
        state
            .finished
            .then(|| state.hasher.clone().finalize().into())
    }
}

impl HttpBody for DigestingBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        let mut state = self.state.lock().expect("digest state");
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    state.hasher.update(data);
                }
            }
            Poll::Ready(None) => state.finished = true,
            _ => {}
        }
        drop(state);
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn digests_what_is_read_and_only_when_complete() {
        let (body, digest) = DigestingBody::wrap(Body::from("hello"));
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(bytes, "hello");
        assert_eq!(
            hex::encode(digest.finish().unwrap()),
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );

        let (_unread, digest) = DigestingBody::wrap(Body::from("hello"));
        assert_eq!(digest.finish(), None);

        let (_empty, digest) = DigestingBody::wrap(Body::empty());
        assert_eq!(
            hex::encode(digest.finish().unwrap()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn printable_cuts_and_cleans() {
        assert_eq!(printable("trail/0.1\u{7}x", 100), "trail/0.1?x");
        assert_eq!(printable("ééé", 5), "éé");
    }
}
