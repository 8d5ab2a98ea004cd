//! Credentials: how they are minted, sent and checked, and what a caller may do.
//!
//! - A PAT or a break-glass token: `Authorization: Bearer <id>.<secret>`.
//! - An API key: HTTP Basic with the key id as user name and the secret as password.
//! - A console session: the `trail_session` cookie (`<id>.<secret>`), HttpOnly and
//!   SameSite=Strict; a state-changing call also needs the `X-CSRF-Token` header.
//!
//! Secrets are 256 random bits; only their SHA-256 is stored, compared in constant time.
//! Passwords are argon2id. Which scopes a caller holds in which org is decided here, in
//! [`Caller`]; whether a call may proceed is decided in [`authorize`], and nowhere else.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::http::HeaderMap;
use axum::http::header::{AUTHORIZATION, COOKIE};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use trail_core::{ActorType, Role, Scope, Timestamp};
use trail_record::{CallContext, Identity, object};
use trail_store::{Reach, Store, Token, TokenKind};

use crate::error::ApiError;
use crate::routes::{Access, Callers, Target};

/// The session cookie.
pub const SESSION_COOKIE: &str = "trail_session";
/// The header a session's state-changing calls carry.
pub const CSRF_HEADER: &str = "x-csrf-token";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    Session,
    Pat,
    ApiKey,
    BreakGlass,
}

/// Who is calling, once their credential checks out, and what they may do where.
#[derive(Debug, Clone)]
pub struct Caller {
    pub kind: CredentialKind,
    /// The token, key or session id (never a secret).
    pub credential_id: String,
    /// Who the caller acts as: a user's email, or an API key's name.
    pub actor: String,
    pub user_id: Option<String>,
    /// The org a token or key was made in (its own org); `None` for a password session.
    pub bound_org: Option<String>,
    /// Whether the caller acts on every org its user belongs to: a password session, or a
    /// personal access token made for all of them.
    pub all_orgs: bool,
    /// The console session the call came with (a password session, or one signed in with a
    /// personal access token, which then acts as that token).
    pub session_id: Option<String>,
    /// The instance a credential is restricted to.
    pub instance: Option<String>,
    /// Holds `orgs:admin`.
    pub platform_admin: bool,
    /// The scopes held in each org.
    grants: Vec<(String, Vec<Scope>)>,
    /// Where the caller's own calls are recorded unless they act on an org.
    pub home_org: String,
    /// When the credential stops working; nothing it creates may outlive it.
    pub expires_at: Option<Timestamp>,
    /// For a session: the CSRF token its state-changing calls must carry.
    pub csrf: Option<String>,
    /// Where the call came from, for the records of what it changes.
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
}

impl CredentialKind {
    /// What it is called in a sentence, with its article.
    pub fn noun(self) -> &'static str {
        match self {
            CredentialKind::Session => "a console session",
            CredentialKind::Pat => "a personal access token",
            CredentialKind::ApiKey => "an API key",
            CredentialKind::BreakGlass => "a break-glass token",
        }
    }
}

impl Caller {
    /// A person: signed in, or with their personal access token.
    pub fn is_person(&self) -> bool {
        matches!(self.kind, CredentialKind::Session | CredentialKind::Pat)
    }

    pub fn actor_type(&self) -> ActorType {
        match self.kind {
            CredentialKind::Session => ActorType::User,
            CredentialKind::Pat => ActorType::Pat,
            CredentialKind::ApiKey => ActorType::ApiKey,
            CredentialKind::BreakGlass => ActorType::BreakGlass,
        }
    }

    pub fn identity(&self) -> Identity {
        Identity {
            actor: self.actor.clone(),
            actor_type: self.actor_type(),
            token_id: Some(self.credential_id.clone()),
        }
    }

    /// The scopes held in `org` (none outside the caller's orgs).
    pub fn scopes_in(&self, org: &str) -> &[Scope] {
        self.grants
            .iter()
            .find(|(o, _)| o == org)
            .map_or(&[], |(_, s)| s.as_slice())
    }

    /// The orgs the caller can act on.
    pub fn orgs(&self) -> impl Iterator<Item = &str> {
        self.grants.iter().map(|(o, _)| o.as_str())
    }
}

/// A new credential: what to store, and the secret to show once.
pub struct Minted {
    pub token: Token,
    /// What the holder sends: `<id>.<secret>` as a bearer token, the secret alone for an
    /// API key (sent as the Basic password).
    pub secret: String,
}

pub fn hash_secret(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

pub fn random_id(prefix: &str) -> String {
    let mut b = [0u8; 10];
    rand::rng().fill_bytes(&mut b);
    format!("{prefix}_{}", hex::encode(b))
}

/// 256 random bits, base64url.
fn random_secret() -> String {
    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    URL_SAFE_NO_PAD.encode(raw)
}

/// What a new credential is, before its id and secret are drawn.
pub struct CredentialSpec {
    pub kind: TokenKind,
    pub org: String,
    pub owner: String,
    pub user_id: Option<String>,
    pub name: String,
    pub description: String,
    pub scopes: Vec<Scope>,
    pub instance: Option<String>,
    pub created_by: String,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    /// The orgs a personal access token acts on.
    pub reach: Reach,
}

/// Mints a credential with 256 random bits of secret.
pub fn mint(spec: CredentialSpec) -> Minted {
    let prefix = match spec.kind {
        TokenKind::Pat => "pat",
        TokenKind::ApiKey => "key",
        TokenKind::BreakGlass => "bg",
        TokenKind::Invitation => "inv",
    };
    let id = random_id(prefix);
    let secret = random_secret();
    let shown = match spec.kind {
        TokenKind::ApiKey => secret.clone(),
        TokenKind::Pat | TokenKind::BreakGlass | TokenKind::Invitation => {
            format!("{id}.{secret}")
        }
    };
    Minted {
        token: Token {
            id,
            kind: spec.kind,
            org: spec.org,
            owner: spec.owner,
            user_id: spec.user_id,
            name: spec.name,
            description: spec.description,
            scopes: spec.scopes,
            instance: spec.instance,
            secret_hash: hash_secret(&secret),
            created_by: spec.created_by,
            created_at: spec.created_at,
            expires_at: spec.expires_at,
            revoked_at: None,
            reach: spec.reach,
            from_password: false,
            role: None,
            made_with: None,
        },
        secret: shown,
    }
}

/// A new session: its id, and the cookie value `<id>.<secret>`.
pub fn mint_session() -> (String, String, [u8; 32]) {
    let id = random_id("ses");
    let secret = random_secret();
    let hash = hash_secret(&secret);
    let cookie = format!("{id}.{secret}");
    (id, cookie, hash)
}

/// The CSRF token of a session: derived from its secret, so nothing more is stored and it
/// cannot be known without the cookie.
pub fn csrf_token(session_secret: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"trail.csrf.v1\0");
    h.update(session_secret.as_bytes());
    URL_SAFE_NO_PAD.encode(h.finalize())
}

pub fn hash_password(password: &str) -> Result<String, ApiError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ApiError::Internal(format!("hashing a password: {e}")))
}

/// Checks a password against a stored argon2id hash. Without a hash (unknown user, or no
/// password set) it still does the work of a check, so timing tells nothing.
pub fn verify_password(password: &str, stored: Option<&str>) -> bool {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let dummy = DUMMY.get_or_init(|| hash_password("no such user").unwrap_or_default());
    let target = stored.unwrap_or(dummy);
    let ok = PasswordHash::new(target)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false);
    ok && stored.is_some()
}

/// The credential a request presents.
enum Presented {
    Bearer { id: String, secret: String },
    Basic { id: String, secret: String },
    Session { id: String, secret: String },
}

fn presented(headers: &HeaderMap) -> Result<Presented, ApiError> {
    let invalid = || ApiError::Unauthorized("the credential is not valid".into());
    if let Some(header) = headers.get(AUTHORIZATION) {
        let header = header.to_str().map_err(|_| {
            ApiError::Unauthorized("the Authorization header is not readable text".into())
        })?;
        let (scheme, value) = header.split_once(' ').unwrap_or((header, ""));
        if scheme.eq_ignore_ascii_case("bearer") {
            let (id, secret) = value.trim().split_once('.').ok_or_else(invalid)?;
            return Ok(Presented::Bearer {
                id: id.to_owned(),
                secret: secret.to_owned(),
            });
        }
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = STANDARD
                .decode(value.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| {
                    ApiError::Unauthorized(
                        "the Basic credential is not base64 of <key id>:<secret>".into(),
                    )
                })?;
            let (id, secret) = decoded.split_once(':').ok_or_else(invalid)?;
            return Ok(Presented::Basic {
                id: id.to_owned(),
                secret: secret.to_owned(),
            });
        }
        // What was sent is not repeated: it may be the secret itself, its scheme left off.
        return Err(ApiError::Unauthorized(
            "unsupported authorization scheme: send Bearer <token> (a PAT) or Basic <key id>:<secret> (an API key)".into(),
        ));
    }
    if let Some(value) = session_cookie(headers) {
        let (id, secret) = value.split_once('.').ok_or_else(invalid)?;
        return Ok(Presented::Session {
            id: id.to_owned(),
            secret: secret.to_owned(),
        });
    }
    Err(ApiError::Unauthorized(
        "this call needs a credential: send Authorization: Bearer <token> (a PAT), HTTP Basic <key id>:<secret> (an API key), or sign in to the console".into(),
    ))
}

/// The value of the session cookie, if the request has one.
pub fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value)
}

/// How long a session lives without use, and at most.
#[derive(Debug, Clone, Copy)]
pub struct SessionPolicy {
    pub idle: Duration,
    pub max: Duration,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        SessionPolicy {
            idle: Duration::from_secs(30 * 60),
            max: Duration::from_secs(12 * 3600),
        }
    }
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// Reads and checks the request's credential, and works out what the caller holds.
pub async fn authenticate(
    store: &dyn Store,
    headers: &HeaderMap,
    now: Timestamp,
    policy: SessionPolicy,
    platform_org: &str,
) -> Result<Caller, ApiError> {
    let invalid = || ApiError::Unauthorized("the credential is not valid".into());
    match presented(headers)? {
        Presented::Session { id, secret } => {
            let s = store.session(&id).await?.ok_or_else(invalid)?;
            if !bool::from(s.secret_hash.ct_eq(&hash_secret(&secret))) {
                return Err(invalid());
            }
            if s.ended_at.is_some()
                || s.expires_at <= now
                || s.last_seen_at.micros().saturating_add(micros(policy.idle)) <= now.micros()
            {
                return Err(ApiError::Unauthorized(
                    "the session has ended: sign in again".into(),
                ));
            }
            // Sessions are kept alive by use; touching at most once a minute spares writes.
            if now.micros() - s.last_seen_at.micros() > 60_000_000 {
                store.touch_session(&id, now).await?;
            }
            let mut caller = session_holds(store, &s, now, platform_org).await?;
            caller.csrf = Some(csrf_token(&secret));
            Ok(caller)
        }
        Presented::Bearer { id, secret } => token_auth(store, &id, &secret, false, now).await,
        Presented::Basic { id, secret } => token_auth(store, &id, &secret, true, now).await,
    }
}

/// What `caller`'s credential holds now. Its secret was checked when it authenticated; this
/// is for what outlives one request (a live tail), so that a credential revoked, expired or
/// narrowed since, a member removed or demoted, or a session ended stops there as it would
/// at its next request. A session's idle limit does not apply (the open stream is its use);
/// its lifetime does.
pub async fn holds_now(
    store: &dyn Store,
    caller: &Caller,
    now: Timestamp,
    platform_org: &str,
) -> Result<Caller, ApiError> {
    let invalid = || ApiError::Unauthorized("the credential is not valid".into());
    match &caller.session_id {
        Some(id) => {
            let s = store.session(id).await?.ok_or_else(invalid)?;
            if s.ended_at.is_some() || s.expires_at <= now {
                return Err(ApiError::Unauthorized(
                    "the session has ended: sign in again".into(),
                ));
            }
            session_holds(store, &s, now, platform_org).await
        }
        None => {
            let token = store
                .token(&caller.credential_id)
                .await?
                .ok_or_else(invalid)?;
            usable(&token, now)?;
            token_caller(store, token).await
        }
    }
}

/// What a live session holds today: what the token it was signed in with holds, or its
/// user's role in each of their orgs.
async fn session_holds(
    store: &dyn Store,
    s: &trail_store::Session,
    now: Timestamp,
    platform_org: &str,
) -> Result<Caller, ApiError> {
    let mut caller = match &s.token_id {
        Some(token_id) => {
            let token = store
                .token(token_id)
                .await?
                .ok_or_else(|| ApiError::Unauthorized("the credential is not valid".into()))?;
            usable(&token, now)?;
            token_caller(store, token).await?
        }
        None => password_session(store, s, platform_org).await?,
    };
    caller.session_id = Some(s.id.clone());
    Ok(caller)
}

/// What a session signed in with a password holds: its user's role in each of their orgs.
async fn password_session(
    store: &dyn Store,
    s: &trail_store::Session,
    platform_org: &str,
) -> Result<Caller, ApiError> {
    let user = store
        .user(&s.user_id)
        .await?
        .ok_or_else(|| ApiError::Unauthorized("the credential is not valid".into()))?;
    let grants: Vec<(String, Vec<Scope>)> = store
        .memberships(&user.id)
        .await?
        .into_iter()
        .map(|(org, role)| (org, role.scopes().to_vec()))
        .collect();
    let home_org = home_org(&grants, user.platform_admin, platform_org)?;
    Ok(Caller {
        kind: CredentialKind::Session,
        credential_id: s.id.clone(),
        actor: user.email,
        user_id: Some(user.id),
        bound_org: None,
        all_orgs: true,
        session_id: None,
        instance: None,
        platform_admin: user.platform_admin,
        grants,
        home_org,
        expires_at: Some(s.expires_at),
        csrf: None,
        ip: None,
        user_agent: None,
    })
}

/// Where a user's calls that name no org are recorded: their first org, or the platform org
/// for a platform admin. A user in no org (and no platform admin) has nowhere to act: their
/// calls must not land in the platform org's log, so they are refused.
pub fn home_org(
    grants: &[(String, Vec<Scope>)],
    platform_admin: bool,
    platform_org: &str,
) -> Result<String, ApiError> {
    match grants.first() {
        Some((org, _)) => Ok(org.clone()),
        None if platform_admin => Ok(platform_org.to_owned()),
        None => Err(ApiError::Unauthorized(
            "you are no longer a member of any org".into(),
        )),
    }
}

/// Checks a token or key; API keys come as Basic, PATs and break-glass tokens as Bearer.
async fn token_auth(
    store: &dyn Store,
    id: &str,
    secret: &str,
    basic: bool,
    now: Timestamp,
) -> Result<Caller, ApiError> {
    let invalid = || ApiError::Unauthorized("the credential is not valid".into());
    let token = store.token(id).await?.ok_or_else(invalid)?;
    let kind_fits = match token.kind {
        TokenKind::ApiKey => basic,
        TokenKind::Pat | TokenKind::BreakGlass => !basic,
        // An invitation sets a password; it authenticates nothing.
        TokenKind::Invitation => false,
    };
    if !bool::from(token.secret_hash.ct_eq(&hash_secret(secret))) || !kind_fits {
        return Err(invalid());
    }
    usable(&token, now)?;
    token_caller(store, token).await
}

/// Refuses a token that was revoked or has expired. Only for a caller who has shown its
/// secret (or a session signed in with it): telling them why leaks nothing.
pub fn usable(token: &Token, now: Timestamp) -> Result<(), ApiError> {
    if let Some(at) = token.revoked_at {
        return Err(ApiError::Unauthorized(format!(
            "this credential was revoked at {at}"
        )));
    }
    if let Some(at) = token.expires_at.filter(|at| *at <= now) {
        return Err(ApiError::Unauthorized(format!(
            "this credential expired at {at}"
        )));
    }
    Ok(())
}

/// What a token or key holds: a PAT, in each org it reaches, no more than its user's role
/// there grants today (so a demoted or removed member's PATs shrink at once); a key or
/// break-glass token its own scopes in its own org.
pub async fn token_caller(store: &dyn Store, token: Token) -> Result<Caller, ApiError> {
    let (kind, grants, home, platform_admin) = match token.kind {
        TokenKind::ApiKey | TokenKind::BreakGlass => {
            let mut scopes: Vec<Scope> = token
                .scopes
                .iter()
                .copied()
                .filter(|s| *s != Scope::OrgsAdmin)
                .collect();
            if let Some(maker) = &token.made_with {
                let held = maker_holds(store, maker, &token.org, 0).await?;
                scopes.retain(|s| held.contains(s));
            }
            let kind = if token.kind == TokenKind::ApiKey {
                CredentialKind::ApiKey
            } else {
                CredentialKind::BreakGlass
            };
            (
                kind,
                vec![(token.org.clone(), scopes)],
                token.org.clone(),
                false,
            )
        }
        TokenKind::Invitation => {
            return Err(ApiError::Unauthorized("the credential is not valid".into()));
        }
        TokenKind::Pat => {
            let user_id = token.user_id.as_deref().unwrap_or_default();
            let user = store.user(user_id).await?;
            let grants: Vec<(String, Vec<Scope>)> = store
                .memberships(user_id)
                .await?
                .into_iter()
                .filter(|(org, _)| token.reach.covers(&token.org, org))
                .map(|(org, role)| {
                    let held = role.scopes();
                    let scopes = token
                        .scopes
                        .iter()
                        .copied()
                        .filter(|s| held.contains(s))
                        .collect();
                    (org, scopes)
                })
                .collect();
            // Its calls that name no org go to the org it was made in, while its user is
            // still there; else to the first org it still reaches.
            let home = if grants.iter().any(|(o, _)| *o == token.org) {
                token.org.clone()
            } else if let Some((first, _)) = grants.first() {
                first.clone()
            } else {
                return Err(ApiError::Unauthorized(match token.reach {
                    Reach::Own => format!(
                        "the member this token belongs to is no longer in org {:?}",
                        token.org
                    ),
                    _ => "the member this token belongs to is no longer in any org it covers"
                        .to_owned(),
                }));
            };
            let admin =
                user.is_some_and(|u| u.platform_admin) && token.scopes.contains(&Scope::OrgsAdmin);
            (CredentialKind::Pat, grants, home, admin)
        }
    };
    Ok(Caller {
        kind,
        credential_id: token.id,
        actor: token.owner,
        user_id: token.user_id,
        // Its own org: where it was made, or, once its user left that org, the first it
        // still acts on.
        bound_org: Some(home.clone()),
        all_orgs: token.kind == TokenKind::Pat && token.reach == Reach::All,
        session_id: None,
        instance: token.instance,
        platform_admin,
        grants,
        home_org: home,
        expires_at: token.expires_at,
        csrf: None,
        ip: None,
        user_agent: None,
    })
}

/// How many keys deep a key's makers are followed (a key made by a key made by ...).
const MAKERS_DEEP: usize = 16;

/// What the maker of an API key or an invitation (`made_with`: the credential it was made
/// with) holds in `org` today, which bounds what the key holds and what the invitation may
/// still grant: neither outlives its maker's role nor the token it was made with. A key
/// made in a console session is bounded by the role of the session's user (not by the
/// session, which is short-lived); one made with a token, by what that token holds today
/// (nothing, once it is revoked or expired, or its user has left).
pub async fn maker_holds(
    store: &dyn Store,
    maker: &str,
    org: &str,
    depth: usize,
) -> Result<Vec<Scope>, ApiError> {
    let gone = |why: String| ApiError::Unauthorized(format!("this key no longer works: {why}"));
    if depth >= MAKERS_DEEP {
        return Err(gone(format!(
            "it was made by a chain of more than {MAKERS_DEEP} keys"
        )));
    }
    if let Some(token) = store.token(maker).await? {
        usable(&token, crate::now()).map_err(|e| match e {
            ApiError::Unauthorized(why) => gone(format!(
                "the credential it was made with ({maker}) {}",
                why.trim_start_matches("this credential ")
            )),
            e => e,
        })?;
        let holder = if token.kind == TokenKind::ApiKey {
            // A key made by a key: that key's own bound, further up.
            let mut held: Vec<Scope> = token.scopes.clone();
            if let Some(up) = &token.made_with {
                let above = Box::pin(maker_holds(store, up, org, depth + 1)).await?;
                held.retain(|s| above.contains(s));
            }
            if token.org != org {
                held.clear();
            }
            return Ok(held);
        } else {
            Box::pin(token_caller(store, token))
                .await
                .map_err(|e| match e {
                    ApiError::Unauthorized(why) => gone(format!(
                        "the credential it was made with ({maker}) holds nothing: {why}"
                    )),
                    e => e,
                })?
        };
        return Ok(holder.scopes_in(org).to_vec());
    }
    let session = store
        .session(maker)
        .await?
        .ok_or_else(|| gone(format!("the credential it was made with ({maker}) is gone")))?;
    match store
        .memberships(&session.user_id)
        .await?
        .into_iter()
        .find(|(o, _)| o == org)
    {
        Some((_, role)) => Ok(role.scopes().to_vec()),
        None => Err(gone(format!(
            "the member who made it is no longer in org {org:?}"
        ))),
    }
}

/// May an invitation made with `maker` (`made_with`) still make someone `role` in `org`?
/// Only while its maker could make it today: a member who holds the role's scopes and
/// `members:manage` there, or a platform admin while the org has no owner (the platform
/// staffs only an org that nobody owns). The one place that decides it, when the invitation
/// is accepted.
pub async fn may_still_invite(
    store: &dyn Store,
    maker: &str,
    org: &str,
    role: Role,
) -> Result<bool, ApiError> {
    let held = match maker_holds(store, maker, org, 0).await {
        Ok(held) => held,
        Err(ApiError::Unauthorized(_)) => Vec::new(),
        Err(e) => return Err(e),
    };
    if held.contains(&Scope::MembersManage) && role.scopes().iter().all(|s| held.contains(s)) {
        return Ok(true);
    }
    let platform_admin = match store.token(maker).await? {
        Some(token) => {
            usable(&token, crate::now()).is_ok()
                && match Box::pin(token_caller(store, token)).await {
                    Ok(caller) => caller.platform_admin,
                    Err(ApiError::Unauthorized(_)) => false,
                    Err(e) => return Err(e),
                }
        }
        None => match store.session(maker).await? {
            Some(s) => store
                .user(&s.user_id)
                .await?
                .is_some_and(|u| u.platform_admin),
            None => false,
        },
    };
    Ok(platform_admin
        && !store
            .members(org)
            .await?
            .iter()
            .any(|m| m.role == Role::Owner))
}

/// The org a call acts on, once [`authorize_call`] has let it through: where its record
/// goes, and what its handler reads or changes.
#[derive(Debug, Clone)]
pub struct ActingOn(pub String);

/// May `caller` make this call? The one place where an operation's [`Access`] (from the
/// operations table) is enforced, before any handler runs. `path_org` is the `{org}` of the
/// path, if it has one. Notes the scope checked and the org acted on in the call's record
/// either way, and answers the org the call acts on.
pub fn authorize_call(
    caller: &Caller,
    ctx: &CallContext,
    access: Access,
    path_org: Option<&str>,
    platform_org: &str,
) -> Result<ActingOn, ApiError> {
    if let Some(scope) = access.scope {
        ctx.set_scope(scope.as_str());
    }
    let kind_ok = match access.callers {
        Callers::Any => true,
        Callers::NotBreakGlass => caller.kind != CredentialKind::BreakGlass,
        Callers::People => caller.is_person(),
        Callers::LastingPeople => {
            caller.kind == CredentialKind::Session
                || (caller.kind == CredentialKind::Pat && caller.expires_at.is_none())
        }
        Callers::Session => caller.kind == CredentialKind::Session,
        Callers::Console => caller.session_id.is_some(),
        Callers::Public => true,
    };
    if !kind_ok {
        return Err(ApiError::Forbidden(format!(
            "{} cannot make this call: {}",
            caller.kind.noun(),
            access.callers.who()
        )));
    }
    if !access.instance_ok
        && let Some(i) = &caller.instance
    {
        return Err(ApiError::Forbidden(format!(
            "this credential is restricted to instance {i:?}; this call covers the whole org"
        )));
    }
    let org = match access.target {
        Target::Platform => {
            if !caller.platform_admin {
                return Err(ApiError::MissingScope(Scope::OrgsAdmin));
            }
            ctx.set_org(platform_org);
            return Ok(ActingOn(platform_org.to_owned()));
        }
        Target::Caller => {
            ctx.set_org(&caller.home_org);
            return Ok(ActingOn(caller.home_org.clone()));
        }
        Target::OwnOrg => caller
            .bound_org
            .clone()
            .unwrap_or_else(|| caller.home_org.clone()),
        Target::Org => path_org
            .ok_or_else(|| ApiError::Internal("an org operation without {org}".into()))?
            .to_owned(),
    };
    authorize_org(caller, ctx, &org, access.scope)?;
    Ok(ActingOn(org))
}

/// May `caller` act on `org`, with `scope` if one is named? Notes the org acted on in the
/// call's record.
///
/// A token or key acts on its own org only, a session on the orgs its user belongs to. An
/// attempt on any other org is refused the same way whether that org exists or not, and is
/// recorded in the caller's home org naming the target: a credential never writes into the
/// log of an org it cannot act on.
fn authorize_org(
    caller: &Caller,
    ctx: &CallContext,
    org: &str,
    scope: Option<Scope>,
) -> Result<(), ApiError> {
    if !caller.orgs().any(|o| o == org) {
        ctx.set_object(object("org", org));
        return Err(ApiError::Forbidden(match &caller.bound_org {
            _ if caller.all_orgs => format!("you are not a member of org {org:?}"),
            // Not naming the orgs it does act on: a refusal is recorded, and the user's other
            // orgs are none of this one's business.
            Some(_) if caller.kind == CredentialKind::Pat => {
                format!("this token cannot act on org {org:?}")
            }
            Some(bound) => {
                format!("this credential belongs to org {bound:?} and cannot act on org {org:?}")
            }
            None => format!("you are not a member of org {org:?}"),
        }));
    }
    ctx.set_org(org);
    if let Some(scope) = scope
        && !caller.scopes_in(org).contains(&scope)
    {
        return Err(ApiError::MissingScope(scope));
    }
    Ok(())
}

/// Refuses a grant of scopes the granter does not hold: nobody hands out more than they have.
pub fn check_grant(caller: &Caller, org: &str, wanted: &[Scope]) -> Result<(), ApiError> {
    check_grant_in(caller, &[org], wanted)
}

/// Refuses a grant, good in each of `orgs` as far as the grantee's role there allows, of a
/// scope the granter holds in none of them.
pub fn check_grant_in(caller: &Caller, orgs: &[&str], wanted: &[Scope]) -> Result<(), ApiError> {
    if wanted.contains(&Scope::OrgsAdmin) && !caller.platform_admin {
        return Err(ApiError::Forbidden(
            "you cannot grant the orgs:admin scope, which you do not hold".into(),
        ));
    }
    match wanted
        .iter()
        .find(|s| **s != Scope::OrgsAdmin && !orgs.iter().any(|o| caller.scopes_in(o).contains(s)))
    {
        Some(s) => Err(ApiError::Forbidden(match orgs {
            [org] => {
                format!("you cannot grant the {s} scope, which you do not hold in org {org:?}")
            }
            _ => format!(
                "you cannot grant the {s} scope, which you hold in none of orgs {}",
                orgs.join(", ")
            ),
        })),
        None => Ok(()),
    }
}

/// The orgs a new personal access token made in `org` may reach, as asked: never an org the
/// caller cannot act on, and all of the user's orgs (including those they join later) only
/// from a caller that itself reaches all of them.
pub fn grant_reach(caller: &Caller, org: &str, asked: Reach) -> Result<Reach, ApiError> {
    match asked {
        Reach::Own => Ok(Reach::Own),
        Reach::All if caller.all_orgs => Ok(Reach::All),
        Reach::All => Err(ApiError::Forbidden(
            "only a console session signed in with a password, or a token for all your orgs, \
             can make a token for all of them"
                .into(),
        )),
        Reach::Orgs(list) => {
            let mut orgs = vec![org.to_owned()];
            for o in list {
                if !caller.orgs().any(|c| c == o) {
                    return Err(ApiError::Forbidden(format!(
                        "you cannot give a token org {o:?}: you cannot act on it with this \
                         credential"
                    )));
                }
                if !orgs.contains(&o) {
                    orgs.push(o);
                }
            }
            Ok(if orgs.len() == 1 {
                Reach::Own
            } else {
                Reach::Orgs(orgs)
            })
        }
    }
}

/// May `caller` change or remove member `m` of `org`? Only if they hold everything the member
/// holds there: their role's scopes and, in the platform org (where a platform admin's
/// tokens stand), `orgs:admin` if the member is a platform admin, so no co-owner cuts the
/// platform admin off. Elsewhere a platform admin is a member like any other: they joined by
/// accepting the org's invitation, and its owners decide who stays.
pub async fn check_over_member(
    store: &dyn Store,
    caller: &Caller,
    org: &str,
    platform_org: &str,
    m: &trail_store::Member,
) -> Result<(), ApiError> {
    let mut held = m.role.scopes().to_vec();
    if org == platform_org
        && store
            .user(&m.user_id)
            .await?
            .is_some_and(|u| u.platform_admin)
    {
        held.push(Scope::OrgsAdmin);
    }
    check_grant(caller, org, &held).map_err(|_| {
        ApiError::Forbidden(format!(
            "you cannot change {}: they hold more than you do in org {org:?} ({})",
            m.email,
            Scope::join(&held)
        ))
    })
}

/// May `caller` revoke `token`, found through `org`? Their own PAT, always; anyone else's
/// needs `members:manage` (for a PAT; `keys:manage` for a key is the operation's own scope)
/// and every scope the credential holds today, in every org it acts on: nobody takes away
/// more than they could give, so an admin cannot cut off an owner, nor anyone the platform
/// admin, nor a member's access to an org the admin has no say in. Answers the orgs the
/// credential acts on today (where its revocation is recorded).
pub async fn check_revoke(
    store: &dyn Store,
    caller: &Caller,
    ctx: &CallContext,
    org: &str,
    token: &Token,
) -> Result<Vec<String>, ApiError> {
    // What it holds today (a PAT of a member who left holds nothing).
    let holder = match token_caller(store, token.clone()).await {
        Ok(holder) => Some(holder),
        Err(ApiError::Unauthorized(_)) => None,
        Err(e) => return Err(e),
    };
    let mut reached: Vec<String> = vec![org.to_owned()];
    for o in holder.iter().flat_map(|h| h.orgs()) {
        if !reached.iter().any(|r| r == o) {
            reached.push(o.to_owned());
        }
    }
    let own = caller.is_person() && token.user_id.is_some() && token.user_id == caller.user_id;
    if own && token.kind == TokenKind::Pat {
        return Ok(reached);
    }
    if token.kind == TokenKind::Pat {
        authorize_org(caller, ctx, org, Some(Scope::MembersManage))?;
    }
    for o in &reached {
        if token.kind == TokenKind::Pat && !caller.scopes_in(o).contains(&Scope::MembersManage) {
            return Err(ApiError::Forbidden(format!(
                "you cannot revoke {}: it also acts on org {o:?}, where you do not hold \
                 members:manage",
                token.id
            )));
        }
        let mut held: Vec<Scope> = holder
            .as_ref()
            .map_or(Vec::new(), |h| h.scopes_in(o).to_vec());
        if holder.as_ref().is_some_and(|h| h.platform_admin) {
            held.push(Scope::OrgsAdmin);
        }
        check_grant(caller, o, &held).map_err(|_| {
            ApiError::Forbidden(format!(
                "you cannot revoke {}: it holds scopes you do not in org {o:?} ({})",
                token.id,
                Scope::join(&held)
            ))
        })?;
    }
    Ok(reached)
}

/// What a failed attempt is counted against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Attempt {
    /// A presented credential (token, key, session cookie) that is wrong, from a source.
    Credential(IpAddr),
    /// A password tried for an account (by email, lowercased) from a source.
    Password { account: String, source: IpAddr },
}

impl Attempt {
    pub fn password(account: &str, source: IpAddr) -> Attempt {
        Attempt::Password {
            account: account.to_lowercase(),
            source,
        }
    }

    /// Counted by source: an IPv6 source by its /64, which one host usually holds whole.
    fn key(&self) -> Attempt {
        match self {
            Attempt::Credential(ip) => Attempt::Credential(source(*ip)),
            Attempt::Password { account, source: s } => Attempt::Password {
                account: account.clone(),
                source: source(*s),
            },
        }
    }
}

/// Slows down repeated failed attempts: each [`Attempt`] key has a budget of failures that
/// refills over time. Wrong presented credentials spend their source's budget; password
/// guesses (sign-in, and the current password of a password change) spend the budget of
/// that account from that source, so a guesser behind a shared address locks out neither
/// the other accounts signing in from it nor that account elsewhere. A key that has spent
/// its budget gets 429; password checks [`FailureThrottle::reserve`] their attempt before
/// the check (so concurrent guesses cannot overrun the budget) and get it back on success.
/// A valid credential is always served.
pub struct FailureThrottle {
    buckets: Mutex<HashMap<Attempt, Bucket>>,
    burst: f64,
    refill_per_sec: f64,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

fn source(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let mut o = v6.octets();
            o[8..].fill(0);
            IpAddr::V6(o.into())
        }
    }
}

impl FailureThrottle {
    pub fn new(burst: u32, refill_every: Duration) -> FailureThrottle {
        FailureThrottle {
            buckets: Mutex::new(HashMap::new()),
            burst: burst as f64,
            refill_per_sec: 1.0 / refill_every.as_secs_f64(),
        }
    }

    fn level(&self, b: &Bucket, now: Instant) -> f64 {
        (b.tokens + now.duration_since(b.at).as_secs_f64() * self.refill_per_sec).min(self.burst)
    }

    fn wait(&self, level: f64) -> Duration {
        Duration::from_secs_f64((1.0 - level).max(0.0) / self.refill_per_sec)
    }

    /// `Some(wait)` if `attempt`'s budget is spent and it must wait.
    pub fn blocked(&self, attempt: &Attempt) -> Option<Duration> {
        let now = Instant::now();
        let map = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let level = self.level(map.get(&attempt.key())?, now);
        (level < 1.0).then(|| self.wait(level))
    }

    /// Counts one failure.
    pub fn failed(&self, attempt: &Attempt) {
        let _ = self.reserve(attempt);
    }

    /// Spends one attempt of the budget ahead of a check, or says how long to wait.
    pub fn reserve(&self, attempt: &Attempt) -> Result<(), Duration> {
        let now = Instant::now();
        let mut map = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() > 100_000 {
            // Forget keys whose budget is full again.
            map.retain(|_, b| self.level(b, now) < self.burst);
        }
        let key = attempt.key();
        let level = map.get(&key).map_or(self.burst, |b| self.level(b, now));
        if level < 1.0 {
            return Err(self.wait(level));
        }
        map.insert(
            key,
            Bucket {
                tokens: level - 1.0,
                at: now,
            },
        );
        Ok(())
    }

    /// Gives back an attempt reserved for a check that succeeded.
    pub fn refund(&self, attempt: &Attempt) {
        let now = Instant::now();
        let mut map = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = map.get_mut(&attempt.key()) {
            b.tokens = (self.level(b, now) + 1.0).min(self.burst);
            b.at = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_and_unknown_users_never_do() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery", Some(&h)));
        assert!(!verify_password("wrong", Some(&h)));
        assert!(!verify_password("correct horse battery", None));
        assert!(!verify_password("x", Some("not a phc string")));
    }

    #[test]
    fn the_throttle_blocks_one_source_only_and_refills() {
        // One attempt comes back a minute: none does while the test runs, however slowly,
        // until the test makes a's bucket a minute older.
        let t = FailureThrottle::new(3, Duration::from_secs(60));
        let a = Attempt::Credential("10.0.0.1".parse().unwrap());
        let b = Attempt::Credential("10.0.0.2".parse().unwrap());
        for _ in 0..3 {
            assert_eq!(t.blocked(&a), None);
            t.failed(&a);
        }
        assert!(t.blocked(&a).is_some(), "a spent its budget");
        assert_eq!(t.blocked(&b), None, "b is not affected");
        {
            let mut buckets = t.buckets.lock().unwrap();
            let bucket = buckets.get_mut(&a.key()).unwrap();
            bucket.at = bucket.at.checked_sub(Duration::from_secs(60)).unwrap();
        }
        assert_eq!(t.blocked(&a), None, "the budget refills");
    }

    #[test]
    fn reservations_cannot_overrun_the_budget_and_successes_are_refunded() {
        let t = FailureThrottle::new(2, Duration::from_secs(3600));
        let ip = Attempt::password("Ana@acme.io", "10.0.0.1".parse().unwrap());
        assert!(t.reserve(&ip).is_ok());
        t.refund(&ip);
        assert!(t.reserve(&ip).is_ok());
        assert!(t.reserve(&ip).is_ok());
        assert!(
            t.reserve(&ip).is_err(),
            "two reservations in flight spend the budget"
        );
    }

    #[test]
    fn ipv6_sources_count_by_slash_64() {
        let t = FailureThrottle::new(1, Duration::from_secs(3600));
        let from = |ip: &str| Attempt::Credential(ip.parse().unwrap());
        t.failed(&from("2001:db8::1"));
        assert!(t.blocked(&from("2001:db8::ffff:2")).is_some());
        assert!(t.blocked(&from("2001:db8:0:1::1")).is_none());
    }

    #[test]
    fn password_guesses_count_per_account_and_source() {
        let t = FailureThrottle::new(2, Duration::from_secs(3600));
        let (here, there) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        for _ in 0..2 {
            t.failed(&Attempt::password("ana@acme.io", here));
        }
        assert!(
            t.reserve(&Attempt::password("ANA@acme.io", here)).is_err(),
            "spent, whatever the case of the email"
        );
        assert!(t.reserve(&Attempt::password("bob@acme.io", here)).is_ok());
        assert!(t.reserve(&Attempt::password("ana@acme.io", there)).is_ok());
        assert!(t.blocked(&Attempt::Credential(here)).is_none());
    }

    #[test]
    fn csrf_tokens_depend_on_the_session_secret() {
        assert_eq!(csrf_token("s1"), csrf_token("s1"));
        assert_ne!(csrf_token("s1"), csrf_token("s2"));
    }
}
