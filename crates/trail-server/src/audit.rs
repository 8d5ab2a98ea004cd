//! Trail's use of the recording layer (`trail-record`): its own API is recorded like any
//! other service's, through the same layer, with a sink that appends to the store directly.
//!
//! [`require_credential`] runs inside the layer: it authenticates the call (answering 401,
//! or 429 to a source that keeps failing) and notes the caller in the layer's
//! [`CallContext`], so the record names them.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use async_trait::async_trait;
use axum::extract::{FromRequestParts, MatchedPath, RawPathParams, Request, State};
use axum::http::Method;
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use trail_record::{CallContext, CallRecord, Sink, SinkError};
use trail_store::Store;

use crate::AppState;
use subtle::ConstantTimeEq;

use crate::auth::{Attempt, CSRF_HEADER, authenticate, authorize_call, session_cookie};
use crate::error::ApiError;

/// Appends records to the store: to the org the call acted on.
pub struct StoreSink {
    pub store: Arc<dyn Store>,
}

#[async_trait]
impl Sink for StoreSink {
    async fn record(&self, call: CallRecord) -> Result<(), SinkError> {
        // Every call with an actor is noted with the org it acts on (the platform org for
        // platform work); one without would land in a log it has nothing to do with.
        let org = call
            .org
            .ok_or_else(|| SinkError("a call with an actor names no org to record it in".into()))?;
        self.store
            .append(&org, vec![call.event])
            .await
            .map(|_| ())
            .map_err(|e| SinkError(e.to_string()))
    }
}

/// The address a request came from: the [`trail_record::ClientIp`] that
/// [`crate::edge::resolve_client_ip`] found (`0.0.0.0` when unknown, as in tests without
/// sockets).
pub async fn client_ip(req: Request) -> (Request, IpAddr) {
    let (req, ip) = trail_record::peer_ip(req).await;
    (req, ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)))
}

/// Authenticates the call and notes the caller for its record; answers 401 itself (429 to a
/// source whose wrong credentials have spent its budget), and 403 to a console call that
/// changes something without its session's CSRF token.
pub async fn require_credential(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let (req, ip) = client_ip(req).await;
    let is_write = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    // Only a credential that was presented and is wrong counts as a failed attempt.
    let presented =
        req.headers().contains_key(AUTHORIZATION) || session_cookie(req.headers()).is_some();
    let caller = authenticate(
        &*state.store,
        req.headers(),
        crate::now(),
        state.sessions,
        &state.platform_org,
    )
    .await;
    let mut caller = match caller {
        Ok(caller) => caller,
        Err(e @ ApiError::Unauthorized(_)) if presented => {
            metrics::counter!("trail_auth_failures_total").increment(1);
            let attempt = Attempt::Credential(ip);
            if let Some(wait) = state.throttle.blocked(&attempt) {
                return ApiError::TooManyAttempts(wait).into_response();
            }
            state.throttle.failed(&attempt);
            return e.into_response();
        }
        Err(e) => return e.into_response(),
    };
    caller.ip = Some(ip).filter(|ip| !ip.is_unspecified());
    caller.user_agent = req.headers().get(axum::http::header::USER_AGENT).map(|v| {
        trail_record::printable(
            &String::from_utf8_lossy(v.as_bytes()),
            trail_core::event::limits::USER_AGENT,
        )
    });
    if let Some(ctx) = req.extensions().get::<CallContext>() {
        ctx.set_actor(caller.identity());
        ctx.set_org(&caller.home_org);
    }
    // Refused after the caller is noted, so the refusal is recorded.
    if is_write && let Some(expected) = &caller.csrf {
        let sent = req
            .headers()
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !bool::from(sent.as_bytes().ct_eq(expected.as_bytes())) {
            return ApiError::Forbidden(
                "a console call that changes something needs the X-CSRF-Token header of its session".into(),
            )
            .into_response();
        }
    }
    // What may this caller do here? Decided once, from the operations table.
    let Some(op) = req
        .extensions()
        .get::<MatchedPath>()
        .and_then(|m| crate::routes::find(req.method().as_str(), m.as_str()))
    else {
        return ApiError::Internal(format!(
            "no operation for {} {}",
            req.method(),
            req.uri().path()
        ))
        .into_response();
    };
    let (mut parts, body) = req.into_parts();
    let path_org = match RawPathParams::from_request_parts(&mut parts, &state).await {
        Ok(params) => params
            .iter()
            .find(|(name, _)| *name == "org")
            .map(|(_, v)| v.to_owned()),
        Err(e) => {
            return ApiError::BadRequest(format!("the path is not valid: {e}")).into_response();
        }
    };
    let mut req = Request::from_parts(parts, body);
    let ctx = req
        .extensions()
        .get::<CallContext>()
        .cloned()
        .unwrap_or_default();
    match authorize_call(
        &caller,
        &ctx,
        op.access,
        path_org.as_deref(),
        &state.platform_org,
    ) {
        Ok(acting) => {
            req.extensions_mut().insert(acting);
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}
