//! Console sessions and the caller's own account: sign in, sign out, who am I, password.

use axum::Json;
use axum::extract::{Extension, Request, State};
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use subtle::ConstantTimeEq;
use trail_core::Scope;
use trail_core::event::Actor;
use trail_core::scope::preset;
use trail_core::{ActorType, Timestamp};
use trail_record::{CallContext, Identity};
use trail_store::Acceptance as Joining;
use trail_store::{Reach, Session, TokenKind, User};
use utoipa::ToSchema;

use crate::AppState;
use crate::audit::client_ip;
use crate::auth::{
    Attempt, Caller, CredentialSpec, SESSION_COOKIE, csrf_token, hash_password, hash_secret, mint,
    mint_session, random_id, session_cookie, token_caller, usable, verify_password,
};
use crate::error::ApiError;
use crate::openapi::{Conflict, NotFound, Unsupported};
use crate::routes::json_body;
use crate::routes::manage::{
    audit_in, check_name, check_password, domain_event, domain_event_by, expiry, pat_json, reached,
};

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
    email: Option<String>,
    password: Option<String>,
    /// A personal access token, instead of email and password.
    token: Option<String>,
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
    /// For an email new to Trail, the password the invitee chooses (at least 12
    /// characters); for an email that has a Trail account, that account's password.
    #[schema(max_length = 1024)]
    password: String,
}

/// An accepted invitation: the invitee is a member of `org` and may sign in.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Accepted {
    pub user_id: String,
    pub email: String,
    pub org: String,
    #[schema(value_type = trail_core::Role)]
    pub role: &'static str,
    /// Whether accepting made the account (the email was new to Trail).
    pub new_account: bool,
}

/// `POST /v1/invitations/accept`: the invitee joins the org the invitation names, with its
/// role. For an email new to Trail they choose their password, which makes the account; for
/// an email that has an account they give its password, so only that account's owner can
/// bring it into an org, whoever else saw the invitation. The invitation works once, until
/// it expires; the invitee then signs in.
#[utoipa::path(
    post,
    path = "/v1/invitations/accept",
    operation_id = "acceptInvitation",
    request_body = Acceptance,
    responses((status = 200, description = "Accepted: the invitee is a member", body = Accepted), NotFound, Conflict, Unsupported),
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
    if body.password.len() > 1024 {
        return Err(ApiError::BadRequest("password: at most 1024 bytes".into()));
    }
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
    let org = invitation.org.clone();
    let email = invitation.owner.clone();
    // An invitation grants its role only while whoever made it could make it today: one
    // made by an admin since demoted or removed, or by the platform for an org that has an
    // owner by now, admits nobody.
    if let (Some(maker), Some(role)) = (&invitation.made_with, invitation.role)
        && !crate::auth::may_still_invite(state.store.as_ref(), maker, &org, role).await?
    {
        return Err(ApiError::NotFound(format!(
            "this invitation no longer works: whoever made it can no longer make someone {} \
             of org {org:?}; ask for a new one",
            role.as_str()
        )));
    }
    let new_password = |password: String| async move {
        check_password("password", &password)?;
        tokio::task::spawn_blocking(move || hash_password(&password))
            .await
            .map_err(|e| ApiError::Internal(format!("password hash: {e}")))?
    };
    let existing = match &invitation.user_id {
        Some(_) => None,
        None => state.store.user_by_email(&email).await?,
    };
    let acceptance = match (&invitation.user_id, existing) {
        // From before invitations carried a role: it sets the first password of the
        // account it made (already a member).
        (Some(_), _) => Joining::FirstPassword(new_password(body.password).await?),
        (None, None) => Joining::NewAccount(User {
            id: random_id("usr"),
            email: email.clone(),
            password_hash: Some(new_password(body.password).await?),
            platform_admin: false,
            created_at: now,
        }),
        (None, Some(user)) if user.password_hash.is_none() => {
            return Err(ApiError::Conflict(format!(
                "{email} has a Trail account that signs in with tokens only: it joins other \
                 orgs once it has a password"
            )));
        }
        (None, Some(_)) => {
            let user = password_user(&state, ip, &email, body.password)
                .await
                .map_err(|e| match e {
                    ApiError::Unauthorized(_) => ApiError::Unauthorized(format!(
                        "{email} has a Trail account: give its password to accept"
                    )),
                    e => e,
                })?;
            Joining::Account { user_id: user.id }
        }
    };
    let new_account = matches!(acceptance, Joining::NewAccount(_));
    if let Some(ctx) = &ctx {
        ctx.set_actor(Identity {
            actor: email.clone(),
            actor_type: ActorType::User,
            token_id: Some(invitation.id.clone()),
        });
        ctx.set_org(&org);
    }
    let actor = Actor {
        id: email.clone(),
        kind: ActorType::User,
        ip: Some(ip).filter(|ip| !ip.is_unspecified()),
        user_agent,
        token_id: Some(invitation.id.clone()),
        scope: None,
    };
    let role = invitation.role.map_or("", |r| r.as_str());
    let event = domain_event_by(
        actor,
        "created",
        trail_record::object("member", &email),
        "CREATE",
        match &acceptance {
            Joining::NewAccount(_) => format!(
                "{email} accepted the invitation to org {org:?}, chose a password and joined \
                 as {role}"
            ),
            Joining::Account { .. } => format!(
                "{email} accepted the invitation to org {org:?} with their account and joined \
                 as {role}"
            ),
            Joining::FirstPassword(_) => {
                format!("{email} accepted the invitation to org {org:?} and chose a password")
            }
        },
        json!({"invitation": invitation.id, "newAccount": new_account}),
    );
    let member = state
        .store
        .accept_invitation(&invitation.id, acceptance, now, vec![(org.clone(), event)])
        .await
        .map_err(|e| match e {
            trail_store::StoreError::NotFound(_) => invalid(),
            trail_store::StoreError::Conflict(_) if new_account => ApiError::Conflict(format!(
                "{email} has a Trail account by now: give its password to accept"
            )),
            trail_store::StoreError::Conflict(_) => ApiError::Conflict(format!(
                "{email} is already a member of org {org:?}, or has a password: sign in with it"
            )),
            e => e.into(),
        })?;
    Ok(Json(Accepted {
        user_id: member.user_id,
        email: member.email,
        org,
        role: member.role.as_str(),
        new_account,
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
    /// The personal access token the session holds what of, when signed in with one.
    pub token_id: Option<String>,
    /// Goes in `X-CSRF-Token` on calls that change something.
    pub csrf_token: String,
    #[schema(format = DateTime)]
    pub expires_at: String,
    pub idle_timeout_seconds: u64,
    pub orgs: Vec<OrgRole>,
}

/// `POST /v1/session`: signs the console in, with email and password or with a personal
/// access token, for a session cookie and its CSRF token. A session signed in with a token
/// holds what the token holds, and ends when it is revoked or expires.
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
    let now = crate::now();
    let max = Timestamp(
        now.micros()
            .saturating_add(state.sessions.max.as_micros() as i64),
    );
    let (user_id, actor, session_expiry, token_id, home, orgs) =
        match (creds.email, creds.password, creds.token) {
            (Some(email), Some(password), None) => {
                let user = password_user(&state, ip, &email, password).await?;
                let orgs = state.store.memberships(&user.id).await?;
                let grants: Vec<_> = orgs.iter().map(|(o, _)| (o.clone(), Vec::new())).collect();
                let home =
                    crate::auth::home_org(&grants, user.platform_admin, &state.platform_org)?;
                let actor = Identity {
                    actor: user.email.clone(),
                    actor_type: ActorType::User,
                    token_id: None,
                };
                (user.id, actor, max, None, home, orgs)
            }
            (None, None, Some(token)) => {
                let caller = token_user(&state, ip, &token, now).await?;
                let user_id = caller.user_id.clone().unwrap_or_default();
                let orgs: Vec<_> = state
                    .store
                    .memberships(&user_id)
                    .await?
                    .into_iter()
                    .filter(|(o, _)| caller.orgs().any(|c| c == o))
                    .collect();
                let expiry = caller.expires_at.map_or(max, |e| e.min(max));
                (
                    user_id,
                    caller.identity(),
                    expiry,
                    Some(caller.credential_id.clone()),
                    caller.home_org.clone(),
                    orgs,
                )
            }
            _ => {
                return Err(ApiError::BadRequest(
                    "sign in with email and password, or with token (a personal access token)"
                        .into(),
                ));
            }
        };
    let (id, value, secret_hash) = mint_session();
    let session = Session {
        id: id.clone(),
        user_id,
        secret_hash,
        created_at: now,
        last_seen_at: now,
        expires_at: session_expiry,
        ended_at: None,
        token_id: token_id.clone(),
    };
    state
        .store
        .create_session(session.clone(), Vec::new())
        .await?;
    if let Some(ctx) = &ctx {
        // A password session's calls carry its id; a token session's carry the token's.
        let credential = token_id.clone().unwrap_or_else(|| id.clone());
        ctx.set_actor(Identity {
            token_id: Some(credential),
            ..actor.clone()
        });
        ctx.set_org(&home);
    }
    let secret = value.split_once('.').map(|(_, s)| s).unwrap_or_default();
    let body = SignedIn {
        user: actor.actor,
        session_id: id,
        token_id,
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
    let seconds =
        u64::try_from((session.expires_at.micros() - now.micros()) / 1_000_000).unwrap_or(0);
    let mut resp = (StatusCode::OK, Json(body)).into_response();
    resp.headers_mut()
        .insert(SET_COOKIE, cookie(&state, &value, seconds));
    Ok(resp)
}

/// The user whose email and password these are, or 401. Each wrong guess spends the budget
/// of the account and the source; it is spent before the (slow) check, so concurrent guesses
/// cannot overrun it, and a success gives it back.
async fn password_user(
    state: &AppState,
    ip: std::net::IpAddr,
    email: &str,
    password: String,
) -> Result<User, ApiError> {
    let attempt = Attempt::password(email, ip);
    state
        .throttle
        .reserve(&attempt)
        .map_err(ApiError::TooManyAttempts)?;
    let user = state.store.user_by_email(email).await?;
    let stored = user.as_ref().and_then(|u| u.password_hash.clone());
    let ok = tokio::task::spawn_blocking(move || verify_password(&password, stored.as_deref()))
        .await
        .map_err(|e| ApiError::Internal(format!("password check: {e}")))?;
    let Some(user) = user.filter(|_| ok) else {
        metrics::counter!("trail_auth_failures_total").increment(1);
        return Err(ApiError::Unauthorized("wrong email or password".into()));
    };
    state.throttle.refund(&attempt);
    Ok(user)
}

/// What the personal access token `presented` (`<id>.<secret>`) holds, or 401. A wrong
/// token spends its source's budget, like any wrong credential.
async fn token_user(
    state: &AppState,
    ip: std::net::IpAddr,
    presented: &str,
    now: Timestamp,
) -> Result<Caller, ApiError> {
    // As for any presented credential: a valid token is always served (its 256 random bits
    // need no budget); a wrong one spends its source's, and once that is spent, is refused
    // without being checked.
    let found = match presented.trim().split_once('.') {
        Some((id, secret)) => state.store.token(id).await?.filter(|t| {
            t.kind == TokenKind::Pat && bool::from(t.secret_hash.ct_eq(&hash_secret(secret)))
        }),
        None => None,
    };
    let Some(token) = found else {
        metrics::counter!("trail_auth_failures_total").increment(1);
        let attempt = Attempt::Credential(ip);
        if let Some(wait) = state.throttle.blocked(&attempt) {
            return Err(ApiError::TooManyAttempts(wait));
        }
        state.throttle.failed(&attempt);
        return Err(ApiError::Unauthorized(
            "the token is not valid: sign in with a personal access token (pat_…)".into(),
        ));
    };
    usable(&token, now)?;
    token_caller(&*state.store, token).await
}

/// Email and password, and what to call the token they buy.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct LogIn {
    email: String,
    password: String,
    /// What the token is for, e.g. the machine it is kept on.
    #[schema(min_length = 1, max_length = 200)]
    name: String,
    /// A duration, `1m` to `365d`; none by default (it lasts until revoked, or until the
    /// password changes).
    expires_in: Option<String>,
}

/// `POST /v1/login`: email and password for a personal access token that acts on all the
/// user's orgs, with everything their role grants in each (and `orgs:admin` for a platform
/// admin): the credential `trail login` keeps. It is shown once, listed with the user's
/// other tokens in their home org, and revoked like them.
#[utoipa::path(
    post,
    path = "/v1/login",
    operation_id = "logIn",
    request_body = LogIn,
    responses(
        (status = 201, description = "The token, shown once", body = crate::routes::manage::TokenView),
        Unsupported,
    ),
)]
pub async fn log_in(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let (req, ip) = client_ip(req).await;
    let user_agent = req
        .headers()
        .get(axum::http::header::USER_AGENT)
        .map(|v| trail_record::printable(&String::from_utf8_lossy(v.as_bytes()), 512));
    let (ctx, bytes) = password_body(req, "log in").await?;
    let creds: LogIn = json_body(&bytes)?;
    check_name("name", &creds.name, 200)?;
    let now = crate::now();
    let expires_at = expiry(creds.expires_in.as_deref(), now, None, "1m", "365d")?;
    let user = password_user(&state, ip, &creds.email, creds.password).await?;
    let orgs = state.store.memberships(&user.id).await?;
    let grants: Vec<_> = orgs.iter().map(|(o, _)| (o.clone(), Vec::new())).collect();
    let home = crate::auth::home_org(&grants, user.platform_admin, &state.platform_org)?;
    let mut scopes = preset("admin-full").expect("a preset").to_vec();
    if user.platform_admin {
        scopes.push(Scope::OrgsAdmin);
    }
    let minted = mint(CredentialSpec {
        kind: TokenKind::Pat,
        org: home.clone(),
        owner: user.email.clone(),
        user_id: Some(user.id.clone()),
        name: creds.name.clone(),
        description: "made by signing in with email and password".into(),
        scopes,
        instance: None,
        created_by: user.email.clone(),
        created_at: now,
        expires_at,
        reach: Reach::All,
    });
    let mut minted = minted;
    minted.token.from_password = true;
    let identity = Identity {
        actor: user.email.clone(),
        actor_type: ActorType::User,
        token_id: Some(minted.token.id.clone()),
    };
    if let Some(ctx) = &ctx {
        ctx.set_actor(identity.clone());
        ctx.set_org(&home);
    }
    let actor = Actor {
        id: user.email.clone(),
        kind: ActorType::User,
        ip: Some(ip).filter(|ip| !ip.is_unspecified()),
        user_agent,
        token_id: Some(minted.token.id.clone()),
        scope: None,
    };
    let event = domain_event_by(
        actor,
        "created",
        trail_record::object("token", &minted.token.id),
        "CREATE",
        format!(
            "{} signed in with a password for personal access token {:?} for all their orgs",
            user.email, creds.name
        ),
        json!({}),
    );
    let member_orgs: Vec<String> = orgs.iter().map(|(o, _)| o.clone()).collect();
    state
        .store
        .create_token(
            minted.token.clone(),
            audit_in(&reached(&home, &Reach::All, &member_orgs), event),
        )
        .await?;
    let mut out = pat_json(&minted.token);
    out.token = Some(minted.secret);
    Ok((StatusCode::CREATED, Json(out)).into_response())
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
    let session = caller
        .session_id
        .as_deref()
        .ok_or_else(|| ApiError::Internal("signing out without a session".into()))?;
    state
        .store
        .end_session(session, crate::now(), Vec::new())
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
    /// The org a token or key acts on by default (where it was made, or for a token whose
    /// user left that org, the first it still acts on); null for a password session.
    pub org: Option<String>,
    /// Acts on every org its user belongs to (a password session, or a token for all).
    pub all_orgs: bool,
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
    let csrf_token = if caller.session_id.is_some()
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
        all_orgs: caller.all_orgs,
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
        .set_password(
            &user_id,
            hash,
            crate::now(),
            vec![(caller.home_org.clone(), event)],
        )
        .await?;
    state
        .store
        .end_user_sessions(&user_id, Some(&caller.credential_id), crate::now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
