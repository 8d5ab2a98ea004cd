//! Credentials: how they are minted, sent and checked.
//!
//! A PAT is sent as `Authorization: Bearer <id>.<secret>`, an API key as HTTP Basic with the
//! key id as user name and the secret as password (seed 002). Secrets are 256 random bits;
//! only their SHA-256 is stored, and it is compared in constant time. Scopes are checked in
//! [`authorize`], the one place that decides whether a caller may act on an org.

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use trail_core::{ActorType, Scope, Timestamp};
use trail_store::{Store, Token, TokenKind};

use crate::audit::AuditSlot;
use crate::error::ApiError;

/// Who is calling, once their credential checks out.
#[derive(Debug, Clone)]
pub struct Caller {
    pub token_id: String,
    pub kind: TokenKind,
    pub org: String,
    pub actor: String,
    pub scopes: Vec<Scope>,
}

impl Caller {
    pub fn actor_type(&self) -> ActorType {
        match self.kind {
            TokenKind::Pat => ActorType::Pat,
            TokenKind::ApiKey => ActorType::ApiKey,
            TokenKind::BreakGlass => ActorType::BreakGlass,
        }
    }
}

/// A new credential: what to store, and the secret to show once.
pub struct Minted {
    pub token: Token,
    /// What the holder sends: `<id>.<secret>` for a PAT, the secret alone for an API key.
    pub secret: String,
}

pub fn hash_secret(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

fn random_id(prefix: &str) -> String {
    let mut b = [0u8; 10];
    rand::rng().fill_bytes(&mut b);
    format!("{prefix}_{}", hex::encode(b))
}

/// Mints a credential with 256 random bits of secret.
pub fn mint(
    kind: TokenKind,
    org: &str,
    owner: &str,
    name: &str,
    scopes: Vec<Scope>,
    now: Timestamp,
    expires_at: Option<Timestamp>,
) -> Minted {
    let prefix = match kind {
        TokenKind::Pat => "pat",
        TokenKind::ApiKey => "key",
        TokenKind::BreakGlass => "bg",
    };
    let id = random_id(prefix);
    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    let secret = URL_SAFE_NO_PAD.encode(raw);
    let shown = match kind {
        TokenKind::ApiKey => secret.clone(),
        TokenKind::Pat | TokenKind::BreakGlass => format!("{id}.{secret}"),
    };
    Minted {
        token: Token {
            id,
            kind,
            org: org.to_owned(),
            owner: owner.to_owned(),
            name: name.to_owned(),
            scopes,
            secret_hash: hash_secret(&secret),
            created_at: now,
            expires_at,
            revoked_at: None,
        },
        secret: shown,
    }
}

/// Reads and checks the request's credential.
pub async fn authenticate(
    store: &dyn Store,
    headers: &HeaderMap,
    now: Timestamp,
) -> Result<Caller, ApiError> {
    let header = headers
        .get(AUTHORIZATION)
        .ok_or_else(|| ApiError::Unauthorized("this call needs a credential: send Authorization: Bearer <token> (a PAT) or HTTP Basic <key id>:<secret> (an API key)".into()))?;
    let header = header.to_str().map_err(|_| {
        ApiError::Unauthorized("the Authorization header is not readable text".into())
    })?;
    let (scheme, value) = header.split_once(' ').unwrap_or((header, ""));
    let invalid = || ApiError::Unauthorized("the credential is not valid".into());
    let (id, secret, kinds): (String, String, &[TokenKind]) = if scheme
        .eq_ignore_ascii_case("bearer")
    {
        let (id, secret) = value.trim().split_once('.').ok_or_else(invalid)?;
        (
            id.to_owned(),
            secret.to_owned(),
            &[TokenKind::Pat, TokenKind::BreakGlass],
        )
    } else if scheme.eq_ignore_ascii_case("basic") {
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
        (id.to_owned(), secret.to_owned(), &[TokenKind::ApiKey])
    } else {
        return Err(ApiError::Unauthorized(format!(
            "unsupported authorization scheme {scheme:?}: use Bearer (a PAT) or Basic (an API key)"
        )));
    };
    let token = store.token(&id).await?.ok_or_else(invalid)?;
    let matches: bool = token.secret_hash.ct_eq(&hash_secret(&secret)).into();
    if !matches || !kinds.contains(&token.kind) {
        return Err(invalid());
    }
    // The caller holds the secret: telling them why it no longer works leaks nothing.
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
    Ok(Caller {
        token_id: token.id,
        kind: token.kind,
        org: token.org,
        actor: token.owner,
        scopes: token.scopes,
    })
}

/// May `caller` act on `org` with `scope`? Notes the scope checked, and the org acted on, in
/// the call's audit record either way.
///
/// A credential acts on its own org only. An attempt on another org is refused the same way
/// whether that org exists or not (nothing to learn from the answer), and is recorded in the
/// caller's own org, naming the target: a credential cannot write into another org's log.
pub fn authorize(
    caller: &Caller,
    slot: &AuditSlot,
    org: &str,
    scope: Scope,
) -> Result<(), ApiError> {
    slot.note_scope(scope);
    if org != caller.org {
        slot.note_target_org(org);
        return Err(ApiError::Forbidden(format!(
            "this credential belongs to org {:?} and cannot act on org {org:?}",
            caller.org
        )));
    }
    slot.note_org(org);
    if !caller.scopes.contains(&scope) {
        return Err(ApiError::MissingScope(scope));
    }
    Ok(())
}
