//! Console sessions and the caller's own account: sign in, sign out, who am I, password.

use axum::Json;
use axum::extract::{Extension, Request, State};
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use subtle::ConstantTimeEq;
use trail_core::event::Actor;
use trail_core::{ActorType, Timestamp};
use trail_record::{CallContext, Identity};
use trail_store::{Session, TokenKind};
use utoipa::ToSchema;

use crate::AppState;
use crate::audit::client_ip;
use crate::auth::{
    Attempt, Caller, CredentialKind, SESSION_COOKIE, csrf_token, hash_password, hash_secret,
    mint_session, session_cookie, verify_password,
};
use crate::error::ApiError;
use crate::openapi::{Conflict, NotFound, Unsupported};
use crate::routes::json_body;
use crate::routes::manage::{check_password, domain_event, domain_event_by};

fn cookie(state: &AppState, value: &str, max_age_secs: u64) -> HeaderValue {
    let secure = if state.secure_cookies { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}{secure}"
    ))
    .expect("cookie text is ASCII")
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct SignIn {
    email: String,
    password: String,
}

/// The body of a public call that carries a password: JSON only (a cross-site form cannot
/// post it, e.g. to sign a browser in: login CSRF), at most 64 KiB, and recorded without its
/// digest (which could be guessed offline).
async fn password_body(
    req: Request,
    what: &str,
) -> Result<(Option<CallContext>, axum::body::Bytes), ApiError> {
    let json = req
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("application/json")
        });
    if !json {
        return Err(ApiError::UnsupportedMediaType(format!(
            "{what} with Content-Type: application/json"
        )));
    }
    let ctx = req.extensions().get::<CallContext>().cloned();
    if let Some(ctx) = &ctx {
        ctx.omit_body_digest();
    }
    let bytes = axum::body::to_bytes(req.into_body(), 64 * 1024)
        .await
        .map_err(|_| ApiError::PayloadTooLarge("this body is at most 64 KiB".into()))?;
    Ok((ctx, bytes))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Acceptance {
    /// The invitation, `inv_….…`.
    token: String,
    /// The password the invitee chooses: at least 12 characters.
    #[schema(min_length = 12, max_length = 1024)]
    password: String,
}

/// `POST /v1/invitations/accept`: the invitee chooses their password with the invitation
/// they were given. The invitation works once, until it expires; the invitee then signs in.
/// An accepted invitation: the invitee may now sign in.
#[derive(Serialize, ToSchema)]
pub struct Accepted {
    pub email: String,
    pub org: String,
}

#[utoipa::path(
    post,
    path = "/v1/invitations/accept",
    operation_id = "acceptInvitation",
    request_body = Acceptance,
    responses((status = 200, description = "Accepted: the password is set", body = Accepted), NotFound, Conflict, Unsupported),
)]
pub async fn accept_invitation(
    State(state): State<AppState>,
    req: Request,
) -> Result<Json<Accepted>, ApiError> {
    let (req, ip) = client_ip(req).await;
    let user_agent = req
        .headers()
        .get(axum::http::header::USER_AGENT)
        .map(|v| trail_record::printable(&String::from_utf8_lossy(v.as_bytes()), 512));
    let (ctx, bytes) = password_body(req, "accept an invitation").await?;
    let body: Acceptance = json_body(&bytes)?;
    check_password("password", &body.password)?;
    // A wrong invitation is a wrong credential: it spends its source's budget.
    let attempt = Attempt::Credential(ip);
    state
        .throttle
        .reserve(&attempt)
        .map_err(ApiError::TooManyAttempts)?;
    let invalid = || {
        ApiError::NotFound(
            "this invitation is not valid: it is unknown, used or expired; ask for a new one"
                .into(),
        )
    };
    let (id, secret) = body.token.split_once('.').ok_or_else(invalid)?;
    let now = crate::now();
    let invitation = state
        .store
        .token(id)
        .await?
        .filter(|t| {
            t.kind == TokenKind::Invitation
                && bool::from(t.secret_hash.ct_eq(&hash_secret(secret)))
                && t.revoked_at.is_none()
                && t.expires_at.is_none_or(|e| e > now)
        })
        .ok_or_else(invalid)?;
    state.throttle.refund(&attempt);
    let user_id = invitation.user_id.clone().unwrap_or_default();
    let user = state.store.user(&user_id).await?.ok_or_else(invalid)?;
    let password = body.password;
    let hash = tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| ApiError::Internal(format!("password hash: {e}")))??;
    let org = invitation.org.clone();
    if let Some(ctx) = &ctx {
        ctx.set_actor(Identity {
            actor: user.email.clone(),
            actor_type: ActorType::User,
            token_id: Some(invitation.id.clone()),
        });
        ctx.set_org(&org);
    }
    let actor = Actor {
        id: user.email.clone(),
        kind: ActorType::User,
        ip: Some(ip).filter(|ip| !ip.is_unspecified()),
        user_agent,
        token_id: Some(invitation.id.clone()),
        scope: None,
    };
    let event = domain_event_by(
        actor,
        "updated",
        trail_record::object("user", &user.email),
        "UPDATE",
        format!(
            "{} accepted the invitation to org {org:?} and chose a password",
            user.email
        ),
        json!({"invitation": invitation.id}),
    );
    state
        .store
        .accept_invitation(&invitation.id, hash, now, vec![(org.clone(), event)])
        .await
        .map_err(|e| match e {
            trail_store::StoreError::NotFound(_) => invalid(),
            trail_store::StoreError::Conflict(_) => {
                ApiError::Conflict("this user already has a password: sign in with it".into())
            }
            e => e.into(),
        })?;
    Ok(Json(Accepted {
        email: user.email,
        org,
    }))
}

/// An org the signed-in user belongs to, and their role there.
#[derive(Serialize, ToSchema)]
pub struct OrgRole {
    pub id: String,
    #[schema(value_type = trail_core::Role)]
    pub role: &'static str,
}

/// A new console session (its secret is in the `trail_session` cookie).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignedIn {
    /// The user's email.
    pub user: String,
    pub session_id: String,
    /// Goes in `X-CSRF-Token` on calls that change something.
    pub csrf_token: String,
    #[schema(format = DateTime)]
    pub expires_at: String,
    pub idle_timeout_seconds: u64,
    pub orgs: Vec<OrgRole>,
}

/// `POST /v1/session`: email and password for a session cookie and its CSRF token.
#[utoipa::path(
    post,
    path = "/v1/session",
    operation_id = "signIn",
    request_body = SignIn,
    responses(
        (status = 200, description = "Signed in; sets the `trail_session` cookie", body = SignedIn,
         headers(("set-cookie" = String, description = "The session cookie: HttpOnly, SameSite=Strict"))),
        Unsupported,
    ),
)]
pub async fn sign_in(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let (req, ip) = client_ip(req).await;
    let (ctx, bytes) = password_body(req, "sign in").await?;
    let creds: SignIn = json_body(&bytes)?;
    // The attempt is spent before the (slow) check, so concurrent guesses cannot overrun
    // the budget; a success gives it back.
    let attempt = Attempt::password(&creds.email, ip);
    state
        .throttle
        .reserve(&attempt)
        .map_err(ApiError::TooManyAttempts)?;
    let user = state.store.user_by_email(&creds.email).await?;
    let stored = user.as_ref().and_then(|u| u.password_hash.clone());
    let password = creds.password;
    let ok = tokio::task::spawn_blocking(move || verify_password(&password, stored.as_deref()))
        .await
        .map_err(|e| ApiError::Internal(format!("password check: {e}")))?;
    let Some(user) = user.filter(|_| ok) else {
        metrics::counter!("trail_auth_failures_total").increment(1);
        return Err(ApiError::Unauthorized("wrong email or password".into()));
    };
    let orgs = state.store.memberships(&user.id).await?;
    let grants: Vec<_> = orgs.iter().map(|(o, _)| (o.clone(), Vec::new())).collect();
    let home = crate::auth::home_org(&grants, user.platform_admin, &state.platform_org)?;
    state.throttle.refund(&attempt);
    let now = crate::now();
    let (id, value, secret_hash) = mint_session();
    let max = state.sessions.max;
    let session = Session {
        id: id.clone(),
        user_id: user.id.clone(),
        secret_hash,
        created_at: now,
        last_seen_at: now,
        expires_at: Timestamp(now.micros().saturating_add(max.as_micros() as i64)),
        ended_at: None,
    };
    state
        .store
        .create_session(session.clone(), Vec::new())
        .await?;
    if let Some(ctx) = &ctx {
        ctx.set_actor(Identity {
            actor: user.email.clone(),
            actor_type: ActorType::User,
            token_id: Some(id.clone()),
        });
        ctx.set_org(&home);
    }
    let secret = value.split_once('.').map(|(_, s)| s).unwrap_or_default();
    let body = SignedIn {
        user: user.email,
        session_id: id,
        csrf_token: csrf_token(secret),
        expires_at: session.expires_at.to_string(),
        idle_timeout_seconds: state.sessions.idle.as_secs(),
        orgs: orgs
            .iter()
            .map(|(o, r)| OrgRole {
                id: o.clone(),
                role: r.as_str(),
            })
            .collect(),
    };
    let mut resp = (StatusCode::OK, Json(body)).into_response();
    resp.headers_mut()
        .insert(SET_COOKIE, cookie(&state, &value, max.as_secs()));
    Ok(resp)
}

/// `DELETE /v1/session`: ends the session on the server and clears the cookie.
#[utoipa::path(
    delete,
    path = "/v1/session",
    operation_id = "signOut",
    responses((status = 204, description = "Signed out; the cookie is cleared")),
)]
pub async fn sign_out(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    state
        .store
        .end_session(&caller.credential_id, crate::now(), Vec::new())
        .await?;
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut().insert(SET_COOKIE, cookie(&state, "", 0));
    Ok(resp)
}

/// What the caller holds in one org.
#[derive(Serialize, ToSchema)]
pub struct OrgScopes {
    pub id: String,
    #[schema(value_type = Vec<trail_core::Scope>)]
    pub scopes: Vec<&'static str>,
}

/// Who the credential is, and what it holds where.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Me {
    /// A user's email, or an API key's name.
    pub actor: String,
    /// `user` (a console session), `pat`, `api_key` or `break_glass`.
    pub actor_type: String,
    /// The token, key or session id (never a secret).
    pub credential_id: String,
    /// The same as `credentialId`: the `actor.tokenId` of this caller's records.
    pub token_id: String,
    /// The org a token or key is bound to; null for a console session.
    pub org: Option<String>,
    /// The instance the credential is restricted to, if any.
    pub instance: Option<String>,
    /// Holds `orgs:admin`.
    pub platform_admin: bool,
    /// Every org the caller can act on, with what it holds there.
    pub orgs: Vec<OrgScopes>,
    /// What it holds in its own org (a token or key only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<trail_core::Scope>>)]
    pub scopes: Option<Vec<&'static str>>,
    /// A console session's CSRF token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub csrf_token: Option<String>,
}

fn scope_names(scopes: &[trail_core::Scope]) -> Vec<&'static str> {
    scopes.iter().map(|s| s.as_str()).collect()
}

/// `GET /v1/me`.
#[utoipa::path(
    get,
    path = "/v1/me",
    operation_id = "whoAmI",
    responses((status = 200, description = "The caller", body = Me)),
)]
pub async fn me(Extension(caller): Extension<Caller>, headers: HeaderMap) -> Json<Me> {
    let orgs = caller
        .orgs()
        .map(|o| OrgScopes {
            id: o.to_owned(),
            scopes: scope_names(caller.scopes_in(o)),
        })
        .collect();
    let csrf_token = if caller.kind == CredentialKind::Session
        && let Some((_, secret)) = session_cookie(&headers).and_then(|v| v.split_once('.'))
    {
        Some(csrf_token(secret))
    } else {
        None
    };
    Json(Me {
        actor: caller.actor.clone(),
        actor_type: caller.actor_type().as_str().to_owned(),
        credential_id: caller.credential_id.clone(),
        token_id: caller.credential_id.clone(),
        org: caller.bound_org.clone(),
        instance: caller.instance.clone(),
        platform_admin: caller.platform_admin,
        orgs,
        scopes: caller
            .bound_org
            .as_ref()
            .map(|bound| scope_names(caller.scopes_in(bound))),
        csrf_token,
    })
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct NewPassword {
    current_password: String,
    /// At least 12 characters.
    #[schema(min_length = 12, max_length = 1024)]
    new_password: String,
}

/// `PUT /v1/me/password`: from a signed-in session, with the current password; the user's
/// other sessions end. (A first password is given when the member is added, or by an operator
/// with `trail admin set-password`: never through a bearer token, which would turn a narrow
/// token into a full session.)
#[utoipa::path(
    put,
    path = "/v1/me/password",
    operation_id = "setPassword",
    request_body = NewPassword,
    responses((status = 204, description = "Changed; the user's other sessions have ended")),
)]
pub async fn set_password(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(ctx): Extension<CallContext>,
    bytes: axum::body::Bytes,
) -> Result<StatusCode, ApiError> {
    ctx.omit_body_digest();
    let user_id = caller
        .user_id
        .clone()
        .ok_or_else(|| ApiError::Internal("a session without a user".into()))?;
    let req: NewPassword = json_body(&bytes)?;
    check_password("newPassword", &req.new_password)?;
    let user = state
        .store
        .user(&user_id)
        .await?
        .ok_or_else(|| ApiError::NotFound("no such user".into()))?;
    // A wrong current password is a password guess like a sign-in's: same budget.
    let attempt = Attempt::password(
        &user.email,
        caller
            .ip
            .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)),
    );
    state
        .throttle
        .reserve(&attempt)
        .map_err(ApiError::TooManyAttempts)?;
    let stored = user.password_hash.clone();
    let current = req.current_password;
    let ok = tokio::task::spawn_blocking(move || verify_password(&current, stored.as_deref()))
        .await
        .map_err(|e| ApiError::Internal(format!("password check: {e}")))?;
    if !ok {
        metrics::counter!("trail_auth_failures_total").increment(1);
        return Err(ApiError::Forbidden("currentPassword is wrong".into()));
    }
    state.throttle.refund(&attempt);
    let new = req.new_password;
    let hash = tokio::task::spawn_blocking(move || hash_password(&new))
        .await
        .map_err(|e| ApiError::Internal(format!("password hash: {e}")))??;
    let event = domain_event(
        &caller,
        "updated",
        trail_record::object("user", &user.email),
        "UPDATE",
        format!("password of {} changed; other sessions ended", user.email),
        json!({}),
    );
    state
        .store
        .set_password(&user_id, hash, vec![(caller.home_org.clone(), event)])
        .await?;
    state
        .store
        .end_user_sessions(&user_id, Some(&caller.credential_id), crate::now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
