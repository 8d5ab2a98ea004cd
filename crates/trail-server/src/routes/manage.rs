//! Managing orgs, instances, members, API keys, personal access tokens and break-glass
//! tokens. Every change is written together with a domain event in the seed-002 record shape
//! (object type and id; details with `actionType` and `message`), in one transaction.

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use trail_core::event::{Actor, CanonicalJson, MANAGEMENT_CATEGORY, Object, check_org_slug};
use trail_core::scope::{Role, preset};
use trail_core::time::parse_duration_micros;
use trail_core::{EventBody, Scope, Timestamp};
use trail_record::CallContext;
use trail_store::{AuditEvents, Instance, Org, Reach, Token, TokenKind};
use utoipa::ToSchema;

use crate::AppState;
use crate::auth::{
    Caller, CredentialKind, CredentialSpec, Minted, check_grant, check_grant_in, check_over_member,
    check_revoke, grant_reach, mint,
};
use crate::error::ApiError;
use crate::openapi::{Conflict, NotFound};
use crate::routes::Items;
use crate::routes::json_body as body;

type Created<T> = (StatusCode, Json<T>);

/// A domain event: `caller` did `action` (a past-tense verb, as in seed 002) to `object`.
pub fn domain_event(
    caller: &Caller,
    action: &str,
    object: Object,
    action_type: &str,
    message: String,
    extra: Value,
) -> EventBody {
    let actor = Actor {
        id: caller.actor.clone(),
        kind: caller.actor_type(),
        ip: caller.ip,
        user_agent: caller.user_agent.clone(),
        token_id: Some(caller.credential_id.clone()),
        scope: None,
    };
    domain_event_by(actor, action, object, action_type, message, extra)
}

/// A domain event by an actor who is not (yet) a caller, such as an invitee.
pub fn domain_event_by(
    actor: Actor,
    action: &str,
    object: Object,
    action_type: &str,
    message: String,
    extra: Value,
) -> EventBody {
    let mut details = json!({"actionType": action_type, "message": message});
    if let (Value::Object(d), Value::Object(e)) = (&mut details, extra) {
        d.extend(e);
    }
    EventBody {
        client_id: None,
        instance: None,
        timestamp: None,
        action: action.to_owned(),
        category: MANAGEMENT_CATEGORY.to_owned(),
        actor,
        object: Some(object),
        details: Some(CanonicalJson::from_value(&details)),
        request: None,
        count: 1,
        last_occurred: None,
        submitted_by: None,
    }
}

/// An object whose id is a JSON object, e.g. `{"id": "key_..", "name": "ci"}`.
fn object(kind: &str, id: Value) -> Object {
    Object::new(kind.to_owned(), Some(CanonicalJson::from_value(&id)), None)
}

fn audit(org: &str, event: EventBody) -> AuditEvents {
    vec![(org.to_owned(), event)]
}

/// The same event in the log of each of `orgs`: a change that concerns several orgs (a
/// token acting on them) is seen in each.
pub fn audit_in(orgs: &[String], event: EventBody) -> AuditEvents {
    orgs.iter().map(|o| (o.clone(), event.clone())).collect()
}

/// The orgs a token made in `home` with `reach` acts on, of `member_orgs` (its user's).
pub fn reached(home: &str, reach: &Reach, member_orgs: &[String]) -> Vec<String> {
    match reach {
        Reach::Own => vec![home.to_owned()],
        Reach::Orgs(orgs) => orgs.clone(),
        Reach::All => {
            let mut v = vec![home.to_owned()];
            v.extend(member_orgs.iter().filter(|o| *o != home).cloned());
            v
        }
    }
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::BadRequest(msg.into())
}

pub fn check_name(field: &str, s: &str, max: usize) -> Result<(), ApiError> {
    if s.trim().is_empty() || s.len() > max || s.chars().any(char::is_control) {
        return Err(bad(format!(
            "{field}: must be 1-{max} bytes of printable text"
        )));
    }
    Ok(())
}

fn check_email(email: &str) -> Result<(), ApiError> {
    let ok = email.len() <= 254
        && email
            .split_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && !d.is_empty())
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(bad(format!("email: {email:?} is not an email address")))
    }
}

pub const MIN_PASSWORD: usize = 12;

pub fn check_password(field: &str, pw: &str) -> Result<(), ApiError> {
    if pw.chars().count() < MIN_PASSWORD || pw.len() > 1024 {
        return Err(bad(format!(
            "{field}: a password needs at least {MIN_PASSWORD} characters"
        )));
    }
    Ok(())
}

/// `expiresIn` (`30m`, `12h`, `90d`) as an instant after `now`, within `[min, max]`.
pub fn expiry(
    value: Option<&str>,
    now: Timestamp,
    default: Option<&str>,
    min: &str,
    max: &str,
) -> Result<Option<Timestamp>, ApiError> {
    let Some(v) = value.or(default) else {
        return Ok(None);
    };
    let d = parse_duration_micros(v).ok_or_else(|| {
        bad(format!(
            "expiresIn: {v:?} is not a duration such as 30m, 12h or 90d"
        ))
    })?;
    let (lo, hi) = (
        parse_duration_micros(min).expect("valid"),
        parse_duration_micros(max).expect("valid"),
    );
    if !(lo..=hi).contains(&d) {
        return Err(bad(format!("expiresIn: must be from {min} to {max}")));
    }
    Ok(Some(Timestamp(now.micros().saturating_add(d))))
}

fn scopes_from(field: &str, list: &[String]) -> Result<Vec<Scope>, ApiError> {
    Scope::parse_list(&list.join(" ")).map_err(|e| bad(format!("{field}: {e}")))
}

fn scope_names(scopes: &[Scope]) -> Vec<&'static str> {
    scopes.iter().map(|s| s.as_str()).collect()
}

// ----- orgs -----

/// An org, with what the caller holds in it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrgView {
    pub id: String,
    pub name: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    /// What the caller holds in the org.
    #[schema(value_type = Vec<trail_core::Scope>)]
    pub scopes: Vec<&'static str>,
}

#[utoipa::path(
    get,
    path = "/v1/orgs",
    operation_id = "listOrgs",
    responses((status = 200, description = "The orgs", body = Items<OrgView>)),
)]
pub async fn list_orgs(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Items<OrgView>>, ApiError> {
    let orgs = state.store.orgs().await?;
    let items = orgs
        .into_iter()
        .filter(|o| caller.platform_admin || caller.orgs().any(|c| c == o.id))
        .map(|o| OrgView {
            scopes: scope_names(caller.scopes_in(&o.id)),
            id: o.id,
            name: o.name,
            created_at: o.created_at.to_string(),
        })
        .collect();
    Ok(Json(Items { items }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewOrg {
    /// 1-63 lower-case letters, digits and `-`, starting with a letter or digit.
    #[schema(pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    id: String,
    /// By default the id.
    #[schema(min_length = 1, max_length = 200)]
    name: Option<String>,
    /// The first owner's email; by default the caller.
    #[schema(max_length = 254)]
    owner: Option<String>,
}

/// A new org.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedOrg {
    pub id: String,
    pub name: String,
    /// The first owner's email.
    pub owner: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    /// For a first owner new to Trail: their invitation, shown once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invitation: Option<Invitation>,
}

/// An invitation as its inviter sees it, once: the invitee accepts it with
/// `POST /v1/invitations/accept`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Invitation {
    pub id: String,
    /// The secret the invitee accepts it with (`inv_….…`).
    pub token: String,
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
}

#[utoipa::path(
    post,
    path = "/v1/orgs",
    operation_id = "createOrg",
    request_body = NewOrg,
    responses((status = 201, description = "Created", body = CreatedOrg), Conflict),
)]
pub async fn create_org(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    bytes: axum::body::Bytes,
) -> Result<Created<CreatedOrg>, ApiError> {
    let req: NewOrg = body(&bytes)?;
    check_org_slug(&req.id).map_err(|e| bad(format!("id: {e}")))?;
    let name = req.name.unwrap_or_else(|| req.id.clone());
    check_name("name", &name, 200)?;
    let now = crate::now();
    // The caller may make an org for themselves; anyone else becomes its owner only by
    // accepting the invitation made out to them.
    let me = match &caller.user_id {
        Some(id) => state.store.user(id).await?,
        None => None,
    };
    let (owner, invited) = match (req.owner, me) {
        (Some(email), Some(me)) if email.eq_ignore_ascii_case(&me.email) => (None, Some(me)),
        (Some(email), _) => {
            check_email(&email)?;
            let minted = invitation(&caller, &req.id, &email, Role::Owner, now)?;
            (Some(minted), None)
        }
        (None, Some(me)) => (None, Some(me)),
        (None, None) => return Err(bad("owner: name the first owner's email")),
    };
    let owner_email = invited.as_ref().map_or_else(
        || {
            owner
                .as_ref()
                .map(|m| m.token.owner.clone())
                .unwrap_or_default()
        },
        |u| u.email.clone(),
    );
    let org = Org {
        id: req.id.clone(),
        name: name.clone(),
        created_at: now,
    };
    let event = domain_event(
        &caller,
        "created",
        object("org", json!({"id": req.id, "name": name})),
        "CREATE",
        match &owner {
            Some(_) => format!(
                "org {:?} created; {owner_email} invited as its owner",
                req.id
            ),
            None => format!("org {:?} created with owner {owner_email}", req.id),
        },
        match &owner {
            Some(m) => json!({"owner": owner_email, "invitation": m.token.id}),
            None => json!({"owner": owner_email}),
        },
    );
    let shown = owner.as_ref().map(invitation_json);
    state
        .store
        .create_org(org, invited, owner.map(|m| m.token), audit(&req.id, event))
        .await?;
    let out = CreatedOrg {
        id: req.id,
        name,
        owner: owner_email,
        created_at: now.to_string(),
        invitation: shown,
    };
    Ok((StatusCode::CREATED, Json(out)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewOwner {
    /// Who is invited to own the org.
    #[schema(max_length = 254)]
    email: String,
}

/// `POST /v1/orgs/{org}/owner-invitation`: a platform admin invites an owner to an org that
/// has none (its first owner never accepted, and the invitation expired or went astray).
/// An org with an owner is its owners' to staff: refused (409). The new invitation replaces
/// the org's open owner invitations, and is recorded in the org's log.
#[utoipa::path(
    post,
    path = "/v1/orgs/{org}/owner-invitation",
    operation_id = "inviteOwner",
    params(("org" = String, Path, description = "The org's id")),
    request_body = NewOwner,
    responses((status = 201, description = "Invited: the answer carries the invitation, shown once", body = MemberView), NotFound, Conflict),
)]
pub async fn invite_owner(
    State(state): State<AppState>,
    Path(org): Path<String>,
    Extension(caller): Extension<Caller>,
    bytes: axum::body::Bytes,
) -> Result<Created<MemberView>, ApiError> {
    let req: NewOwner = body(&bytes)?;
    check_email(&req.email)?;
    if state.store.org(&org).await?.is_none() {
        return Err(ApiError::NotFound(format!("org {org:?} does not exist")));
    }
    if state
        .store
        .members(&org)
        .await?
        .iter()
        .any(|m| m.role == Role::Owner)
    {
        return Err(ApiError::Conflict(format!(
            "org {org:?} has an owner: its owners invite its members"
        )));
    }
    let now = crate::now();
    // One open owner invitation at a time: the ones that went astray stop working, each
    // withdrawal recorded in the org's log.
    for open in state
        .store
        .tokens(&org, TokenKind::Invitation, None)
        .await?
        .into_iter()
        .filter(|t| {
            t.role == Some(Role::Owner)
                && t.revoked_at.is_none()
                && t.expires_at.is_none_or(|e| e > now)
        })
    {
        let event = domain_event(
            &caller,
            "deleted",
            object("invitation", json!({"id": open.id, "email": open.owner})),
            "DELETE",
            format!(
                "invitation of {} as owner withdrawn: {} is invited in its place",
                open.owner, req.email
            ),
            json!({}),
        );
        state
            .store
            .revoke_token(&open.id, now, audit(&org, event))
            .await?;
    }
    let summary = format!(
        "{} invited as owner of org {org:?}, which has none, by a platform admin",
        req.email
    );
    send_invitation(&state, &caller, &org, req.email, Role::Owner, summary).await
}

/// An invitation for `email` to join `org` as `role`. It changes no account: accepting it
/// does, with the password of the email's account if it has one (so an inviter, who sees the
/// invitation, can never use it to reach an account someone else made).
fn invitation(
    caller: &Caller,
    org: &str,
    email: &str,
    role: Role,
    now: Timestamp,
) -> Result<Minted, ApiError> {
    let mut minted = mint(CredentialSpec {
        kind: TokenKind::Invitation,
        org: org.to_owned(),
        owner: email.to_owned(),
        user_id: None,
        name: "invitation".into(),
        description: format!("to join org {org:?} as {}", role.as_str()),
        scopes: Vec::new(),
        instance: None,
        created_by: caller.actor.clone(),
        created_at: now,
        expires_at: expiry(None, now, Some(INVITATION_LIFETIME), "1m", "30d")?,
        reach: trail_store::Reach::Own,
    });
    minted.token.role = Some(role);
    // Accepted only while its maker could make it then (`auth::may_still_invite`).
    minted.token.made_with = Some(caller.credential_id.clone());
    Ok(minted)
}

/// Stores an invitation of `email` to `org` as `role`, recorded in the org's log with
/// `summary`, and answers it as its maker sees it, once.
async fn send_invitation(
    state: &AppState,
    caller: &Caller,
    org: &str,
    email: String,
    role: Role,
    summary: String,
) -> Result<Created<MemberView>, ApiError> {
    let minted = invitation(caller, org, &email, role, crate::now())?;
    let shown = invitation_json(&minted);
    let event = domain_event(
        caller,
        "created",
        object("invitation", json!({"id": minted.token.id, "email": email})),
        "CREATE",
        summary,
        json!({"email": email, "role": role.as_str()}),
    );
    state
        .store
        .invite_member(minted.token, audit(org, event))
        .await?;
    let out = MemberView {
        user_id: None,
        email,
        role: role.as_str(),
        invitation: Some(shown),
    };
    Ok((StatusCode::CREATED, Json(out)))
}

/// An invitation as its inviter sees it, once.
fn invitation_json(m: &Minted) -> Invitation {
    Invitation {
        id: m.token.id.clone(),
        token: m.secret.clone(),
        expires_at: m.token.expires_at.map(|t| t.to_string()),
    }
}

// ----- instances -----

/// An instance of an org.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceView {
    pub id: String,
    pub name: String,
    pub kind: String,
    #[schema(format = DateTime)]
    pub created_at: String,
}

#[utoipa::path(
    get,
    path = "/v1/orgs/{org}/instances",
    operation_id = "listInstances",
    params(("org" = String, Path, description = "The org's id")),
    responses((status = 200, description = "The org's instances", body = Items<InstanceView>)),
)]
pub async fn list_instances(
    State(state): State<AppState>,
    Path(org): Path<String>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Items<InstanceView>>, ApiError> {
    let items = state
        .store
        .instances(&org)
        .await?
        .into_iter()
        .filter(|i| caller.instance.as_ref().is_none_or(|only| *only == i.id))
        .map(|i| InstanceView {
            id: i.id,
            name: i.name,
            kind: i.kind,
            created_at: i.created_at.to_string(),
        })
        .collect();
    Ok(Json(Items { items }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewInstance {
    /// 1-63 lower-case letters, digits and `-`, starting with a letter or digit.
    #[schema(pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    id: String,
    /// By default the id.
    #[schema(min_length = 1, max_length = 200)]
    name: Option<String>,
    /// `argocd`, `kargo`, ...
    #[schema(min_length = 1, max_length = 64)]
    kind: String,
}

#[utoipa::path(
    post,
    path = "/v1/orgs/{org}/instances",
    operation_id = "createInstance",
    params(("org" = String, Path, description = "The org's id")),
    request_body = NewInstance,
    responses((status = 201, description = "Created", body = InstanceView), Conflict),
)]
pub async fn create_instance(
    State(state): State<AppState>,
    Path(org): Path<String>,
    Extension(caller): Extension<Caller>,
    bytes: axum::body::Bytes,
) -> Result<Created<InstanceView>, ApiError> {
    let req: NewInstance = body(&bytes)?;
    check_org_slug(&req.id)
        .map_err(|e| bad(format!("id: {}", e.replace("org id", "instance id"))))?;
    let name = req.name.unwrap_or_else(|| req.id.clone());
    check_name("name", &name, 200)?;
    check_name("kind", &req.kind, 64)?;
    let now = crate::now();
    let instance = Instance {
        org: org.clone(),
        id: req.id.clone(),
        name: name.clone(),
        kind: req.kind.clone(),
        created_at: now,
    };
    let event = domain_event(
        &caller,
        "created",
        object(
            "instance",
            json!({"id": req.id, "kind": req.kind, "name": name}),
        ),
        "CREATE",
        format!("{} instance {:?} created", req.kind, req.id),
        json!({}),
    );
    state
        .store
        .create_instance(instance, audit(&org, event))
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(InstanceView {
            id: req.id,
            name,
            kind: req.kind,
            created_at: now.to_string(),
        }),
    ))
}

// ----- members -----

/// A member of an org, as listed.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberListed {
    /// Null for an invitation not yet accepted.
    pub user_id: Option<String>,
    pub email: String,
    #[schema(value_type = trail_core::Role)]
    pub role: &'static str,
    /// When their pending invitation expires; null when none is pending.
    #[schema(format = DateTime)]
    pub invitation_expires_at: Option<String>,
}

/// A member of an org.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberView {
    /// Null for an invitation not yet accepted.
    pub user_id: Option<String>,
    pub email: String,
    #[schema(value_type = trail_core::Role)]
    pub role: &'static str,
    /// The invitation, shown once (only when inviting).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invitation: Option<Invitation>,
}

#[utoipa::path(
    get,
    path = "/v1/orgs/{org}/members",
    operation_id = "listMembers",
    params(("org" = String, Path, description = "The org's id")),
    responses((status = 200, description = "The org's members", body = Items<MemberListed>)),
)]
pub async fn list_members(
    State(state): State<AppState>,
    Path(org): Path<String>,
) -> Result<Json<Items<MemberListed>>, ApiError> {
    let now = crate::now();
    let pending: Vec<Token> = state
        .store
        .tokens(&org, TokenKind::Invitation, None)
        .await?
        .into_iter()
        .filter(|t| t.revoked_at.is_none() && t.expires_at.is_none_or(|e| e > now))
        .collect();
    let mut items: Vec<MemberListed> = state
        .store
        .members(&org)
        .await?
        .into_iter()
        .map(|m| {
            // An invitation from before invitations carried a role completes its member.
            let invited = pending
                .iter()
                .find(|t| t.user_id.as_ref() == Some(&m.user_id));
            MemberListed {
                invitation_expires_at: invited.and_then(|t| t.expires_at).map(|t| t.to_string()),
                user_id: Some(m.user_id),
                email: m.email,
                role: m.role.as_str(),
            }
        })
        .collect();
    items.extend(pending.iter().filter_map(|t| {
        Some(MemberListed {
            user_id: None,
            email: t.owner.clone(),
            role: t.role?.as_str(),
            invitation_expires_at: t.expires_at.map(|t| t.to_string()),
        })
    }));
    Ok(Json(Items { items }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewMember {
    #[schema(max_length = 254)]
    email: String,
    #[schema(value_type = trail_core::Role)]
    role: String,
    /// Refused with a clear answer: members set their own password.
    #[schema(ignore)]
    password: Option<serde::de::IgnoredAny>,
}

fn role(s: &str) -> Result<Role, ApiError> {
    s.parse().map_err(|e: String| bad(format!("role: {e}")))
}

/// How long an invitation can be accepted.
const INVITATION_LIFETIME: &str = "7d";

/// `POST /v1/orgs/{org}/members`: invites an email with a role. The answer carries the
/// invitation (shown once), whether or not the email has a Trail account (this answer says
/// nothing about that; accepting tells the invitation's holder): the invitee accepts it with `POST /v1/invitations/accept` (or in
/// the console), choosing a password if the email is new to Trail, or giving their account's
/// password if not. Nobody is made a member of an org without accepting, and nobody sets
/// another person's password. Inviting an email again replaces its open invitation.
#[utoipa::path(
    post,
    path = "/v1/orgs/{org}/members",
    operation_id = "addMember",
    params(("org" = String, Path, description = "The org's id")),
    request_body = NewMember,
    responses((status = 201, description = "Invited: the answer carries the invitation, shown once", body = MemberView), Conflict),
)]
pub async fn add_member(
    State(state): State<AppState>,
    Path(org): Path<String>,
    Extension(caller): Extension<Caller>,
    bytes: axum::body::Bytes,
) -> Result<Created<MemberView>, ApiError> {
    let req: NewMember = body(&bytes)?;
    if req.password.is_some() {
        return Err(bad(
            "password: members are invited and choose their own password; leave it out and pass on the invitation in the answer",
        ));
    }
    check_email(&req.email)?;
    let role = role(&req.role)?;
    check_grant(&caller, &org, role.scopes())?;
    // Inviting again replaces the open invitation, which takes what withdrawing it takes:
    // an admin cannot swap an owner's invitation for one they could accept themselves.
    if let Some(open) = open_invitation(&state, &org, &req.email).await? {
        let held = open.role.unwrap_or(Role::Owner);
        check_grant(&caller, &org, held.scopes()).map_err(|_| {
            ApiError::Forbidden(format!(
                "{} has an open invitation as {}, which only someone who could make it may replace",
                req.email,
                held.as_str()
            ))
        })?;
    }
    let summary = format!("{} invited as {}", req.email, role.as_str());
    send_invitation(&state, &caller, &org, req.email, role, summary).await
}

/// The open invitation (with a role) of `email` to `org`, if there is one.
async fn open_invitation(
    state: &AppState,
    org: &str,
    email: &str,
) -> Result<Option<Token>, ApiError> {
    let now = crate::now();
    Ok(state
        .store
        .tokens(org, TokenKind::Invitation, None)
        .await?
        .into_iter()
        .find(|t| {
            t.owner.eq_ignore_ascii_case(email)
                && t.role.is_some()
                && t.revoked_at.is_none()
                && t.expires_at.is_none_or(|e| e > now)
        }))
}

/// Withdraws an invitation not yet accepted: only by someone who could have made it.
async fn withdraw(
    state: &AppState,
    caller: &Caller,
    org: &str,
    invitation: Token,
) -> Result<StatusCode, ApiError> {
    let role = invitation.role.unwrap_or(Role::Owner);
    check_grant(caller, org, role.scopes())?;
    let event = domain_event(
        caller,
        "deleted",
        object(
            "invitation",
            json!({"id": invitation.id, "email": invitation.owner}),
        ),
        "DELETE",
        format!(
            "invitation of {} as {} withdrawn",
            invitation.owner,
            role.as_str()
        ),
        json!({}),
    );
    state
        .store
        .revoke_token(&invitation.id, crate::now(), audit(org, event))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The member a path names, by email or user id.
async fn find_member(
    state: &AppState,
    org: &str,
    who: &str,
) -> Result<trail_store::Member, ApiError> {
    let members = state.store.members(org).await?;
    // An email in any case; its exact spelling first (an older store may hold two accounts
    // whose emails differ only in case).
    let exact = members
        .iter()
        .position(|m| m.email == who || m.user_id == who);
    let found = exact.or_else(|| {
        members
            .iter()
            .position(|m| m.email.eq_ignore_ascii_case(who))
    });
    found
        .map(|i| members[i].clone())
        .ok_or_else(|| ApiError::NotFound(format!("{who:?} is not a member of org {org:?}")))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct MemberUpdate {
    #[schema(value_type = trail_core::Role)]
    role: String,
}

#[utoipa::path(
    patch,
    path = "/v1/orgs/{org}/members/{member}",
    operation_id = "updateMember",
    params(("org" = String, Path, description = "The org's id"), ("member" = String, Path, description = "The member's email or user id")),
    request_body = MemberUpdate,
    responses((status = 200, description = "Changed", body = MemberView), NotFound, Conflict),
)]
pub async fn update_member(
    State(state): State<AppState>,
    Path((org, who)): Path<(String, String)>,
    Extension(caller): Extension<Caller>,
    bytes: axum::body::Bytes,
) -> Result<Json<MemberView>, ApiError> {
    let req: MemberUpdate = body(&bytes)?;
    let new = role(&req.role)?;
    let m = match find_member(&state, &org, &who).await {
        Err(ApiError::NotFound(_)) if open_invitation(&state, &org, &who).await?.is_some() => {
            return Err(ApiError::Conflict(format!(
                "{who} has not accepted their invitation yet: invite them again with the new role"
            )));
        }
        found => found?,
    };
    // Changing a role means holding what it takes away and what it gives.
    check_over_member(&*state.store, &caller, &org, &state.platform_org, &m).await?;
    check_grant(&caller, &org, new.scopes())?;
    let event = domain_event(
        &caller,
        "updated",
        object("member", json!({"email": m.email, "role": new.as_str()})),
        "UPDATE",
        format!(
            "role of {} changed from {} to {}",
            m.email,
            m.role.as_str(),
            new.as_str()
        ),
        json!({"from": m.role.as_str(), "to": new.as_str()}),
    );
    state
        .store
        .set_role(&org, &m.user_id, new, audit(&org, event))
        .await?;
    Ok(Json(MemberView {
        user_id: Some(m.user_id),
        email: m.email,
        role: new.as_str(),
        invitation: None,
    }))
}

#[utoipa::path(
    delete,
    path = "/v1/orgs/{org}/members/{member}",
    operation_id = "removeMember",
    params(("org" = String, Path, description = "The org's id"), ("member" = String, Path, description = "The member's email or user id")),
    responses((status = 204, description = "Removed"), NotFound, Conflict),
)]
pub async fn remove_member(
    State(state): State<AppState>,
    Path((org, who)): Path<(String, String)>,
    Extension(caller): Extension<Caller>,
) -> Result<StatusCode, ApiError> {
    let m = match find_member(&state, &org, &who).await {
        Err(ApiError::NotFound(not_member)) => {
            return match open_invitation(&state, &org, &who).await? {
                Some(invitation) => withdraw(&state, &caller, &org, invitation).await,
                None => Err(ApiError::NotFound(not_member)),
            };
        }
        found => found?,
    };
    check_over_member(&*state.store, &caller, &org, &state.platform_org, &m).await?;
    let event = domain_event(
        &caller,
        "deleted",
        object("member", json!({"email": m.email, "role": m.role.as_str()})),
        "DELETE",
        format!("{} removed", m.email),
        json!({}),
    );
    state
        .store
        .remove_member(&org, &m.user_id, audit(&org, event))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

// ----- API keys -----

/// An API key (its secret only in the answer to its creation).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyView {
    pub id: String,
    pub name: String,
    pub description: String,
    #[schema(value_type = Vec<trail_core::Scope>)]
    pub scopes: Vec<&'static str>,
    /// The instance it is restricted to, if any.
    pub instance: Option<String>,
    pub created_by: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
    #[schema(format = DateTime)]
    pub revoked_at: Option<String>,
    /// The secret, shown once: only in the answer to its creation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

fn key_json(t: &Token) -> ApiKeyView {
    ApiKeyView {
        id: t.id.clone(),
        name: t.name.clone(),
        description: t.description.clone(),
        scopes: scope_names(&t.scopes),
        instance: t.instance.clone(),
        created_by: t.created_by.clone(),
        created_at: t.created_at.to_string(),
        expires_at: t.expires_at.map(|t| t.to_string()),
        revoked_at: t.revoked_at.map(|t| t.to_string()),
        secret: None,
    }
}

#[utoipa::path(
    get,
    path = "/v1/orgs/{org}/api-keys",
    operation_id = "listApiKeys",
    params(("org" = String, Path, description = "The org's id")),
    responses((status = 200, description = "The org's API keys", body = Items<ApiKeyView>)),
)]
pub async fn list_api_keys(
    State(state): State<AppState>,
    Path(org): Path<String>,
) -> Result<Json<Items<ApiKeyView>>, ApiError> {
    let keys = state.store.tokens(&org, TokenKind::ApiKey, None).await?;
    Ok(Json(Items {
        items: keys.iter().map(key_json).collect(),
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct NewApiKey {
    #[schema(min_length = 1, max_length = 200)]
    name: String,
    #[schema(max_length = 1000)]
    description: Option<String>,
    #[schema(value_type = Option<trail_core::Role>)]
    role: Option<String>,
    #[schema(value_type = Option<Vec<trail_core::Scope>>)]
    scopes: Option<Vec<String>>,
    /// A duration, `1m` to `365d` (`90d`); by default none.
    expires_in: Option<String>,
    /// Restrict the key to one instance's events.
    instance: Option<String>,
}

#[utoipa::path(
    post,
    path = "/v1/orgs/{org}/api-keys",
    operation_id = "createApiKey",
    params(("org" = String, Path, description = "The org's id")),
    request_body = NewApiKey,
    responses((status = 201, description = "Created; the secret is shown once", body = ApiKeyView), Conflict),
)]
pub async fn create_api_key(
    State(state): State<AppState>,
    Path(org): Path<String>,
    Extension(caller): Extension<Caller>,
    bytes: axum::body::Bytes,
) -> Result<Created<ApiKeyView>, ApiError> {
    let req: NewApiKey = body(&bytes)?;
    check_name("name", &req.name, 200)?;
    let description = req.description.unwrap_or_default();
    if description.len() > 1000 {
        return Err(bad("description: at most 1000 bytes"));
    }
    let scopes = match (&req.role, &req.scopes) {
        (Some(r), None) => role(r)?.scopes().to_vec(),
        (None, Some(list)) => scopes_from("scopes", list)?,
        _ => return Err(bad("give either role or scopes")),
    };
    if scopes.is_empty() || scopes.contains(&Scope::OrgsAdmin) {
        return Err(bad(
            "scopes: give at least one org scope (orgs:admin cannot be given to a key)",
        ));
    }
    check_grant(&caller, &org, &scopes)?;
    if let Some(i) = &req.instance {
        if !state
            .store
            .instances(&org)
            .await?
            .iter()
            .any(|x| x.id == *i)
        {
            return Err(bad(format!("instance: org {org:?} has no instance {i:?}")));
        }
        if scopes
            .iter()
            .any(|s| !matches!(s, Scope::LogsRead | Scope::LogsWrite))
        {
            return Err(bad(
                "scopes: a key restricted to an instance can hold logs:read and logs:write only",
            ));
        }
    }
    let now = crate::now();
    let name = req.name.clone();
    let spec = CredentialSpec {
        kind: TokenKind::ApiKey,
        org: org.clone(),
        owner: req.name.clone(),
        user_id: None,
        name: req.name,
        description,
        instance: req.instance,
        created_by: caller.actor.clone(),
        created_at: now,
        expires_at: expiry(req.expires_in.as_deref(), now, None, "1m", "365d")?,
        scopes,
        reach: trail_store::Reach::Own,
    };
    let message = format!(
        "API key {name:?} created with {}",
        Scope::join(&spec.scopes)
    );
    let (token, secret) = store_new_credential(&state, &caller, spec, message, json!({})).await?;
    let mut out = key_json(&token);
    out.secret = Some(secret);
    Ok((StatusCode::CREATED, Json(out)))
}

/// Mints a credential and stores it with its domain event ("created", the credential as the
/// object); returns it and its secret, to be shown once.
async fn store_new_credential(
    state: &AppState,
    caller: &Caller,
    spec: CredentialSpec,
    message: String,
    extra: Value,
) -> Result<(Token, String), ApiError> {
    // Recorded in each org it acts on: each can see that a credential for it exists.
    let member_orgs: Vec<String> = caller.orgs().map(str::to_owned).collect();
    let orgs = reached(&spec.org, &spec.reach, &member_orgs);
    let mut spec = spec;
    // A credential never outlives the token that made it (a session is not a token: what a
    // member makes in the console is theirs).
    if caller.kind != CredentialKind::Session
        && let Some(limit) = caller.expires_at
    {
        spec.expires_at = Some(spec.expires_at.map_or(limit, |e| e.min(limit)));
    }
    let mut minted = mint(spec);
    if minted.token.kind == TokenKind::ApiKey {
        // What a key holds is bounded, at each use, by what its maker holds then.
        minted.token.made_with = Some(caller.credential_id.clone());
    }
    let t = &minted.token;
    let id = match t.kind {
        TokenKind::BreakGlass => json!({"id": t.id}),
        _ => json!({"id": t.id, "name": t.name}),
    };
    let kind = match t.kind {
        TokenKind::ApiKey => "api_key",
        TokenKind::Pat => "token",
        TokenKind::BreakGlass => "break_glass_token",
        TokenKind::Invitation => "invitation",
    };
    let event = domain_event(
        caller,
        "created",
        object(kind, id),
        "CREATE",
        message,
        extra,
    );
    state
        .store
        .create_token(minted.token.clone(), audit_in(&orgs, event))
        .await?;
    Ok((minted.token, minted.secret))
}

/// A credential of `kind` in `org`, or 404 (also for another org's: nothing to learn).
async fn find_token(
    state: &AppState,
    org: &str,
    id: &str,
    kind: TokenKind,
) -> Result<Token, ApiError> {
    match state.store.token(id).await? {
        Some(t) if t.org == org && t.kind == kind => Ok(t),
        _ => Err(ApiError::NotFound(format!(
            "org {org:?} has no {} {id:?}",
            kind.as_str().replace('_', " ")
        ))),
    }
}

#[utoipa::path(
    delete,
    path = "/v1/orgs/{org}/api-keys/{key}",
    operation_id = "revokeApiKey",
    params(("org" = String, Path, description = "The org's id"), ("key" = String, Path, description = "The key's id")),
    responses((status = 204, description = "Revoked"), NotFound),
)]
pub async fn revoke_api_key(
    State(state): State<AppState>,
    Path((org, id)): Path<(String, String)>,
    Extension(caller): Extension<Caller>,
    Extension(ctx): Extension<CallContext>,
) -> Result<StatusCode, ApiError> {
    let key = find_token(&state, &org, &id, TokenKind::ApiKey).await?;
    check_revoke(&*state.store, &caller, &ctx, &org, &key).await?;
    let event = domain_event(
        &caller,
        "revoked",
        object("api_key", json!({"id": key.id, "name": key.name})),
        "DELETE",
        format!("API key {:?} revoked", key.name),
        json!({}),
    );
    state
        .store
        .revoke_token(&id, crate::now(), audit(&org, event))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

// ----- personal access tokens -----

/// The orgs a personal access token acts on, as the API shows them.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum TokenOrgs {
    /// All its user's orgs, including those they join later.
    All(AllOrgs),
    /// These orgs.
    Listed(Vec<String>),
}

/// `"all"`.
#[derive(Serialize, ToSchema)]
pub enum AllOrgs {
    #[serde(rename = "all")]
    All,
}

/// A token's reach as the API shows it: `"all"`, or the org ids it acts on.
pub fn reach_view(t: &Token) -> TokenOrgs {
    match &t.reach {
        Reach::All => TokenOrgs::All(AllOrgs::All),
        Reach::Own => TokenOrgs::Listed(vec![t.org.clone()]),
        Reach::Orgs(orgs) => TokenOrgs::Listed(orgs.clone()),
    }
}

/// A personal access token (the token itself only in the answer to its creation).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenView {
    pub id: String,
    pub name: String,
    /// The org it was made in.
    pub org: String,
    /// The orgs it acts on: in each, its scopes as far as its user's role there allows.
    pub orgs: TokenOrgs,
    #[schema(value_type = Vec<trail_core::Scope>)]
    pub scopes: Vec<&'static str>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
    #[schema(format = DateTime)]
    pub revoked_at: Option<String>,
    /// The token (`pat_….…`), shown once: only in the answer to its creation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

pub fn pat_json(t: &Token) -> TokenView {
    TokenView {
        id: t.id.clone(),
        name: t.name.clone(),
        org: t.org.clone(),
        orgs: reach_view(t),
        scopes: scope_names(&t.scopes),
        created_at: t.created_at.to_string(),
        expires_at: t.expires_at.map(|t| t.to_string()),
        revoked_at: t.revoked_at.map(|t| t.to_string()),
        token: None,
    }
}

fn require_user(caller: &Caller) -> Result<&str, ApiError> {
    caller
        .user_id
        .as_deref()
        .filter(|_| matches!(caller.kind, CredentialKind::Session | CredentialKind::Pat))
        .ok_or_else(|| {
            ApiError::Forbidden(
                "only a member, signed in or with a personal access token, can do this".into(),
            )
        })
}

#[utoipa::path(
    get,
    path = "/v1/orgs/{org}/tokens",
    operation_id = "listTokens",
    params(("org" = String, Path, description = "The org's id")),
    responses((status = 200, description = "The caller's tokens", body = Items<TokenView>)),
)]
pub async fn list_tokens(
    State(state): State<AppState>,
    Path(org): Path<String>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Items<TokenView>>, ApiError> {
    let user = require_user(&caller)?;
    // Every token of the caller's that acts on this org, wherever it was made.
    let tokens: Vec<Token> = state
        .store
        .personal_tokens(user)
        .await?
        .into_iter()
        .filter(|t| t.reach.covers(&t.org, &org))
        .collect();
    Ok(Json(Items {
        items: tokens.iter().map(pat_json).collect(),
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct NewToken {
    #[schema(min_length = 1, max_length = 200)]
    name: String,
    #[schema(value_type = Option<Vec<trail_core::Scope>>)]
    scopes: Option<Vec<String>>,
    /// `support-readonly` or `admin-full` (instead of `scopes`).
    preset: Option<String>,
    /// A duration, `1m` to `365d`; `30d` by default.
    expires_in: Option<String>,
    /// The orgs it acts on: a list of org ids (the path's org among them), or `"all"` of
    /// the user's orgs; the path's org alone if absent.
    orgs: Option<OrgsAsked>,
}

#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
enum OrgsAsked {
    List(Vec<String>),
    Word(String),
}

impl OrgsAsked {
    fn reach(self) -> Result<Reach, ApiError> {
        match self {
            OrgsAsked::Word(w) if w == "all" => Ok(Reach::All),
            OrgsAsked::Word(w) => Err(bad(format!(
                "orgs: {w:?} is neither a list of org ids nor \"all\""
            ))),
            OrgsAsked::List(list) if list.len() > 100 => {
                Err(bad("orgs: a token acts on at most 100 listed orgs"))
            }
            OrgsAsked::List(list) => {
                for o in &list {
                    check_org_slug(o).map_err(|e| bad(format!("orgs: {e}")))?;
                }
                Ok(Reach::Orgs(list))
            }
        }
    }
}

#[utoipa::path(
    post,
    path = "/v1/orgs/{org}/tokens",
    operation_id = "createToken",
    params(("org" = String, Path, description = "The org's id")),
    request_body = NewToken,
    responses((status = 201, description = "Created; the token is shown once", body = TokenView), Conflict),
)]
pub async fn create_token(
    State(state): State<AppState>,
    Path(org): Path<String>,
    Extension(caller): Extension<Caller>,
    bytes: axum::body::Bytes,
) -> Result<Created<TokenView>, ApiError> {
    let user = require_user(&caller)?.to_owned();
    let req: NewToken = body(&bytes)?;
    check_name("name", &req.name, 200)?;
    let asked = req.orgs.map_or(Ok(Reach::Own), OrgsAsked::reach)?;
    let reach = grant_reach(&caller, &org, asked)?;
    // The orgs whose scopes the caller can hand on: each the token reaches, as far as the
    // caller holds scopes there.
    let granting: Vec<&str> = match &reach {
        Reach::Own => vec![org.as_str()],
        Reach::Orgs(orgs) => orgs.iter().map(String::as_str).collect(),
        Reach::All => caller.orgs().collect(),
    };
    let mut scopes = match (&req.scopes, &req.preset) {
        (Some(list), None) => scopes_from("scopes", list)?,
        (None, Some(p)) => preset(p)
            .ok_or_else(|| {
                bad(format!(
                    "preset: unknown preset {p:?} (known: support-readonly, admin-full)"
                ))
            })?
            .to_vec(),
        _ => return Err(bad("give either scopes or preset")),
    };
    // A token holds a subset of what its member holds; orgs:admin only for a platform admin.
    let wants_admin = scopes.contains(&Scope::OrgsAdmin);
    scopes.retain(|s| *s != Scope::OrgsAdmin);
    if req.preset.is_some() {
        scopes.retain(|s| granting.iter().any(|o| caller.scopes_in(o).contains(s)));
    }
    check_grant_in(&caller, &granting, &scopes)?;
    if wants_admin {
        if !caller.platform_admin {
            return Err(ApiError::Forbidden(
                "you cannot grant the orgs:admin scope, which you do not hold".into(),
            ));
        }
        scopes.push(Scope::OrgsAdmin);
    }
    if scopes.is_empty() {
        return Err(bad("scopes: a token needs at least one scope you hold"));
    }
    let now = crate::now();
    let spec = CredentialSpec {
        kind: TokenKind::Pat,
        org: org.clone(),
        owner: caller.actor.clone(),
        user_id: Some(user),
        name: req.name.clone(),
        description: String::new(),
        scopes,
        instance: None,
        created_by: caller.actor.clone(),
        created_at: now,
        expires_at: expiry(req.expires_in.as_deref(), now, Some("30d"), "1m", "365d")?,
        reach,
    };
    let message = format!(
        "personal access token {:?} created with {} for {}",
        req.name,
        Scope::join(&spec.scopes),
        match &spec.reach {
            Reach::Own => format!("org {org:?}"),
            Reach::Orgs(orgs) => format!("orgs {}", orgs.join(", ")),
            Reach::All => "all the user's orgs".to_owned(),
        }
    );
    let (token, secret) = store_new_credential(&state, &caller, spec, message, json!({})).await?;
    let mut out = pat_json(&token);
    out.token = Some(secret);
    Ok((StatusCode::CREATED, Json(out)))
}

#[utoipa::path(
    delete,
    path = "/v1/orgs/{org}/tokens/{token}",
    operation_id = "revokeToken",
    params(("org" = String, Path, description = "The org's id"), ("token" = String, Path, description = "The token's id")),
    responses((status = 204, description = "Revoked"), NotFound),
)]
pub async fn revoke_token(
    State(state): State<AppState>,
    Path((org, id)): Path<(String, String)>,
    Extension(caller): Extension<Caller>,
    Extension(ctx): Extension<CallContext>,
) -> Result<StatusCode, ApiError> {
    // Found through any org it acts on, not only the one it was made in: its user may have
    // left that one.
    let token = match state.store.token(&id).await? {
        Some(t) if t.kind == TokenKind::Pat && t.reach.covers(&t.org, &org) => t,
        _ => {
            return Err(ApiError::NotFound(format!(
                "org {org:?} has no personal access token {id:?}"
            )));
        }
    };
    let orgs = check_revoke(&*state.store, &caller, &ctx, &org, &token).await?;
    let event = domain_event(
        &caller,
        "revoked",
        object(
            "token",
            json!({"id": token.id, "name": token.name, "owner": token.owner}),
        ),
        "DELETE",
        format!(
            "personal access token {:?} of {} revoked",
            token.name, token.owner
        ),
        json!({}),
    );
    state
        .store
        .revoke_token(&id, crate::now(), audit_in(&orgs, event))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

// ----- break-glass -----

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct NewBreakGlass {
    org: String,
    #[schema(min_length = 1, max_length = 1000)]
    reason: String,
    /// A duration, `1m` to `12h`; `1h` by default.
    expires_in: Option<String>,
    #[schema(value_type = Option<Vec<trail_core::Scope>>)]
    scopes: Option<Vec<String>>,
}

/// The scopes a break-glass token gets unless others are asked for: enough to investigate.
const BREAK_GLASS_DEFAULT: [Scope; 2] = [Scope::LogsRead, Scope::ArchivesRead];

/// A break-glass token, shown once.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BreakGlassView {
    pub id: String,
    /// The token (`bg_….…`), shown once.
    pub token: String,
    pub org: String,
    #[schema(value_type = Vec<trail_core::Scope>)]
    pub scopes: Vec<&'static str>,
    pub reason: String,
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
}

#[utoipa::path(
    post,
    path = "/v1/break-glass",
    operation_id = "createBreakGlassToken",
    request_body = NewBreakGlass,
    responses((status = 201, description = "Minted; the token is shown once", body = BreakGlassView), NotFound, Conflict),
)]
pub async fn create_break_glass(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    bytes: axum::body::Bytes,
) -> Result<Created<BreakGlassView>, ApiError> {
    let req: NewBreakGlass = body(&bytes)?;
    check_name("reason", &req.reason, 1000)?;
    if state.store.org(&req.org).await?.is_none() {
        return Err(ApiError::NotFound(format!(
            "org {:?} does not exist",
            req.org
        )));
    }
    let scopes = match &req.scopes {
        Some(list) => scopes_from("scopes", list)?,
        None => BREAK_GLASS_DEFAULT.to_vec(),
    };
    if scopes.is_empty() || scopes.contains(&Scope::OrgsAdmin) {
        return Err(bad("scopes: give org scopes (orgs:admin cannot be given)"));
    }
    let user = caller.user_id.clone().ok_or_else(|| {
        ApiError::Forbidden("only a platform admin user can mint break-glass tokens".into())
    })?;
    let now = crate::now();
    let spec = CredentialSpec {
        kind: TokenKind::BreakGlass,
        org: req.org.clone(),
        owner: caller.actor.clone(),
        user_id: Some(user),
        name: "break-glass".into(),
        description: req.reason.clone(),
        scopes,
        instance: None,
        created_by: caller.actor.clone(),
        created_at: now,
        expires_at: expiry(req.expires_in.as_deref(), now, Some("1h"), "1m", "12h")?,
        reach: trail_store::Reach::Own,
    };
    let expires_at = spec.expires_at.map(|t| t.to_string());
    let message = format!(
        "break-glass token issued to {}: {}",
        caller.actor, req.reason
    );
    let extra =
        json!({"reason": req.reason, "expiresAt": expires_at, "scopes": scope_names(&spec.scopes)});
    let (token, secret) = store_new_credential(&state, &caller, spec, message, extra).await?;
    let out = BreakGlassView {
        id: token.id,
        token: secret,
        org: req.org,
        scopes: scope_names(&token.scopes),
        reason: req.reason,
        expires_at,
    };
    Ok((StatusCode::CREATED, Json(out)))
}

/// `DELETE /v1/break-glass/{id}`: a platform admin ends a break-glass token early.
#[utoipa::path(
    delete,
    path = "/v1/break-glass/{id}",
    operation_id = "revokeBreakGlassToken",
    params(("id" = String, Path, description = "The break-glass token's id")),
    responses((status = 204, description = "Ended"), NotFound),
)]
pub async fn revoke_break_glass(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Extension(caller): Extension<Caller>,
) -> Result<StatusCode, ApiError> {
    let token = match state.store.token(&id).await? {
        Some(t) if t.kind == TokenKind::BreakGlass => t,
        _ => return Err(ApiError::NotFound(format!("no break-glass token {id:?}"))),
    };
    let event = domain_event(
        &caller,
        "revoked",
        object("break_glass_token", json!({"id": token.id})),
        "DELETE",
        format!("break-glass token of {} revoked", token.owner),
        json!({"reason": token.description}),
    );
    state
        .store
        .revoke_token(&id, crate::now(), audit(&token.org, event))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_bounds() {
        let now = Timestamp(0);
        assert_eq!(expiry(None, now, None, "1m", "1h").unwrap(), None);
        assert_eq!(
            expiry(None, now, Some("1h"), "1m", "12h").unwrap(),
            Some(Timestamp(3_600_000_000))
        );
        assert!(expiry(Some("13h"), now, None, "1m", "12h").is_err());
        assert!(expiry(Some("30s"), now, None, "1m", "12h").is_err());
        assert!(expiry(Some("soon"), now, None, "1m", "12h").is_err());
    }

    #[test]
    fn emails() {
        assert!(check_email("a@b.io").is_ok());
        for bad in ["", "a", "@b", "a@", "a b@c.io", "a@b\n"] {
            assert!(check_email(bad).is_err(), "{bad:?}");
        }
    }
}
