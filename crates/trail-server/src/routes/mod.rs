//! The API's routes: one table of operations (method, path, operation id, access), from which
//! the audit actions, the OpenAPI document and the authorization-matrix test are derived.

pub mod archives;
pub mod events;
pub mod export;
pub mod live;
pub mod manage;
pub mod ops;
pub mod retention;
pub mod session;

use trail_core::Scope;

use crate::error::ApiError;

/// Which kinds of credential may call an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Callers {
    /// Any valid credential.
    Any,
    /// Any but a break-glass token, which is for looking, and makes no credentials.
    NotBreakGlass,
    /// A person: a console session or a personal access token.
    People,
    /// A person whose credential does not run out: a console session, or a PAT without an
    /// expiry. What these calls make (a member who will sign in) would outlive a credential
    /// that expires.
    LastingPeople,
    /// A console session signed in with a password (not one signed in with a token, which
    /// holds only what that token holds).
    Session,
    /// A console session, however it was signed in.
    Console,
    /// No credential (signing in, accepting an invitation).
    Public,
}

/// What an operation acts on, and so where its record goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The org named by `{org}` in the path.
    Org,
    /// The org the credential belongs to (its home org).
    OwnOrg,
    /// The platform: `orgs:admin` work, recorded in the platform org.
    Platform,
    /// The caller themselves; recorded in their home org.
    Caller,
}

/// Who may call an operation: the one statement of it, enforced by
/// [`crate::auth::authorize_call`] before any handler runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    pub callers: Callers,
    pub target: Target,
    /// The scope needed in the target org (`orgs:admin` for the platform).
    pub scope: Option<Scope>,
    /// Whether a credential restricted to one instance may call it (it must then read or
    /// write that instance's events only, which the handler applies).
    pub instance_ok: bool,
}

/// One operation of the API under `/v1`.
pub struct Operation {
    pub method: &'static str,
    /// The axum path, `{name}` for parameters.
    pub path: &'static str,
    /// The operation id; also the `action` of the call's audit record.
    pub id: &'static str,
    pub access: Access,
    pub summary: &'static str,
}

const fn op(
    method: &'static str,
    path: &'static str,
    id: &'static str,
    access: Access,
    summary: &'static str,
) -> Operation {
    Operation {
        method,
        path,
        id,
        access,
        summary,
    }
}

/// `scope` in the path's org, for any credential of the whole org.
const fn org(scope: Scope) -> Access {
    Access {
        callers: Callers::Any,
        target: Target::Org,
        scope: Some(scope),
        instance_ok: false,
    }
}

/// `scope` in the path's org; an instance's credential reads or writes its instance only.
const fn instance(scope: Scope) -> Access {
    Access {
        instance_ok: true,
        ..org(scope)
    }
}

/// Some of `callers`, acting on `target` with `scope`.
const fn by(callers: Callers, target: Target, scope: Option<Scope>) -> Access {
    Access {
        callers,
        target,
        scope,
        instance_ok: false,
    }
}

/// Platform work: `orgs:admin`, by a person.
const PLATFORM: Access = by(Callers::People, Target::Platform, Some(Scope::OrgsAdmin));
/// About the caller themselves: any credential.
const SELF: Access = Access {
    instance_ok: true,
    ..by(Callers::Any, Target::Caller, None)
};
impl Access {
    /// Who may call, in words (the OpenAPI description of the operation).
    pub fn describe(&self) -> String {
        if self.callers == Callers::Public {
            return "No credential.".to_owned();
        }
        let who = match self.callers {
            Callers::Any | Callers::Public => "Any credential",
            Callers::NotBreakGlass => "Any credential but a break-glass token",
            Callers::People => "A console session or a personal access token",
            Callers::LastingPeople => {
                "A console session or a personal access token without an expiry"
            }
            Callers::Session => "A console session signed in with a password",
            Callers::Console => "A console session",
        };
        let what = match (self.target, self.scope) {
            (Target::Platform, _) => " holding `orgs:admin` (a platform admin)".to_owned(),
            (Target::Org, Some(s)) => format!(" holding `{s}` in the org"),
            (Target::Org, None) => " of a member of the org".to_owned(),
            (Target::OwnOrg, Some(s)) => format!(" holding `{s}` in its own org"),
            (Target::OwnOrg | Target::Caller, None) => String::new(),
            (Target::Caller, Some(s)) => format!(" holding `{s}`"),
        };
        let instance = if self.instance_ok {
            "; a credential restricted to an instance covers that instance only"
        } else if self.target == Target::Org || self.target == Target::OwnOrg {
            "; not a credential restricted to one instance"
        } else {
            ""
        };
        format!("{who}{what}{instance}.")
    }
}

impl Callers {
    /// Who may make such a call, in words.
    pub fn who(self) -> &'static str {
        match self {
            Callers::Any => "any credential may",
            Callers::NotBreakGlass => "a break-glass token is for looking and makes no credentials",
            Callers::People => "it is for a member, signed in or with a personal access token",
            Callers::LastingPeople => {
                "what it makes outlives this credential: use the console, or a personal access token that does not expire"
            }
            Callers::Session => "it is for a console session signed in with a password",
            Callers::Console => "it is for a signed-in console session",
            Callers::Public => "no credential is needed",
        }
    }
}

const PUBLIC: Access = by(Callers::Public, Target::Caller, None);

use Callers::*;
use Scope::*;
use Target::*;

pub const OPERATIONS: &[Operation] = &[
    op(
        "POST",
        "/v1/orgs/{org}/events",
        "ingestEvents",
        instance(LogsWrite),
        "Ingest a batch of events (JSON array or NDJSON)",
    ),
    op(
        "GET",
        "/v1/orgs/{org}/audit-logs",
        "listAuditLogs",
        instance(LogsRead),
        "An org's audit log, newest first, filtered and paged",
    ),
    op(
        "GET",
        "/v1/orgs/{org}/audit-logs/download",
        "downloadAuditLogs",
        instance(LogsRead),
        "Every event that matches the filters, newest first, as a CSV or NDJSON file",
    ),
    op(
        "GET",
        "/v1/orgs/{org}/audit-logs/export",
        "exportAuditLogs",
        instance(LogsRead),
        "The incremental pull for SIEMs: events oldest first, by seq cursor, with the checkpoint that covers them",
    ),
    op(
        "GET",
        "/v1/orgs/{org}/audit-logs/histogram",
        "histogramAuditLogs",
        instance(LogsRead),
        "How many events match the filters, per slice of the window",
    ),
    op(
        "GET",
        "/v1/orgs/{org}/instances/{instance}/audit-logs",
        "listInstanceAuditLogs",
        instance(LogsRead),
        "One instance's audit log, newest first, filtered and paged",
    ),
    op(
        "GET",
        "/v1/audit-log",
        "listCallerAuditLog",
        Access {
            instance_ok: true,
            ..by(Any, OwnOrg, Some(LogsRead))
        },
        "The audit log of the org the credential belongs to",
    ),
    op(
        "GET",
        "/v1/me",
        "whoAmI",
        SELF,
        "Who the credential is, and what it holds where",
    ),
    op(
        "PUT",
        "/v1/me/password",
        "setPassword",
        by(Session, Caller, None),
        "Change the signed-in user's console password",
    ),
    op(
        "GET",
        "/v1/orgs",
        "listOrgs",
        SELF,
        "The orgs the caller can act on (every org, for a platform admin)",
    ),
    op(
        "POST",
        "/v1/orgs",
        "createOrg",
        PLATFORM,
        "Create an org and its first owner",
    ),
    op(
        "POST",
        "/v1/orgs/{org}/owner-invitation",
        "inviteOwner",
        PLATFORM,
        "Invite an owner to an org that has none",
    ),
    op(
        "GET",
        "/v1/orgs/{org}/instances",
        "listInstances",
        Access {
            instance_ok: true,
            ..by(Any, Org, None)
        },
        "An org's instances",
    ),
    op(
        "POST",
        "/v1/orgs/{org}/instances",
        "createInstance",
        org(InstancesManage),
        "Add an instance",
    ),
    op(
        "GET",
        "/v1/orgs/{org}/members",
        "listMembers",
        org(MembersManage),
        "An org's members, their roles and pending invitations",
    ),
    op(
        "POST",
        "/v1/orgs/{org}/members",
        "addMember",
        by(LastingPeople, Org, Some(MembersManage)),
        "Invite a member with a role; the invitation is shown once",
    ),
    op(
        "PATCH",
        "/v1/orgs/{org}/members/{member}",
        "updateMember",
        by(NotBreakGlass, Org, Some(MembersManage)),
        "Change a member's role",
    ),
    op(
        "DELETE",
        "/v1/orgs/{org}/members/{member}",
        "removeMember",
        by(NotBreakGlass, Org, Some(MembersManage)),
        "Remove a member",
    ),
    op(
        "GET",
        "/v1/orgs/{org}/api-keys",
        "listApiKeys",
        org(KeysManage),
        "An org's API keys (never their secrets)",
    ),
    op(
        "POST",
        "/v1/orgs/{org}/api-keys",
        "createApiKey",
        by(NotBreakGlass, Org, Some(KeysManage)),
        "Create an API key; its secret is shown once",
    ),
    op(
        "DELETE",
        "/v1/orgs/{org}/api-keys/{key}",
        "revokeApiKey",
        org(KeysManage),
        "Revoke an API key at once",
    ),
    op(
        "GET",
        "/v1/orgs/{org}/tokens",
        "listTokens",
        by(People, Org, None),
        "The caller's personal access tokens in the org",
    ),
    op(
        "POST",
        "/v1/orgs/{org}/tokens",
        "createToken",
        by(People, Org, None),
        "Create a personal access token; it is shown once",
    ),
    op(
        "DELETE",
        "/v1/orgs/{org}/tokens/{token}",
        "revokeToken",
        by(People, Org, None),
        "Revoke a personal access token at once (another member's needs members:manage and every scope it holds)",
    ),
    op(
        "POST",
        "/v1/break-glass",
        "createBreakGlassToken",
        PLATFORM,
        "Mint a short-lived emergency token for an org",
    ),
    op(
        "DELETE",
        "/v1/break-glass/{id}",
        "revokeBreakGlassToken",
        PLATFORM,
        "End a break-glass token at once",
    ),
    op(
        "POST",
        "/v1/session",
        "signIn",
        PUBLIC,
        "Sign in to the console with email and password, or with a personal access token",
    ),
    op(
        "POST",
        "/v1/login",
        "logIn",
        PUBLIC,
        "Email and password for a personal access token acting on all the user's orgs (what `trail login` keeps); shown once",
    ),
    op(
        "DELETE",
        "/v1/session",
        "signOut",
        by(Console, Caller, None),
        "End the console session",
    ),
    op(
        "POST",
        "/v1/invitations/accept",
        "acceptInvitation",
        PUBLIC,
        "Accept an invitation: set your password and join the org",
    ),
    op(
        "GET",
        "/v1/log/key",
        "getLogKey",
        SELF,
        "The key that signs the logs' checkpoints",
    ),
    op(
        "GET",
        "/v1/orgs/{org}/archives",
        "listArchives",
        org(ArchivesRead),
        "The org's weekly archives",
    ),
    op(
        "GET",
        "/v1/orgs/{org}/archives/{week}",
        "downloadArchive",
        org(ArchivesRead),
        "One week's archive, a ZIP that verifies offline (the current week: a partial one)",
    ),
    op(
        "GET",
        "/v1/orgs/{org}/retention",
        "getRetention",
        org(LogsRead),
        "The org's retention, legal hold and how far its log was pruned",
    ),
    op(
        "PUT",
        "/v1/orgs/{org}/retention",
        "setRetention",
        by(NotBreakGlass, Org, Some(RetentionManage)),
        "Set the org's retention (days) or legal hold",
    ),
    op(
        "GET",
        "/v1/retention",
        "getPlatformRetention",
        by(Any, Caller, None),
        "The platform's default and longest retention",
    ),
    op(
        "PUT",
        "/v1/retention",
        "setPlatformRetention",
        PLATFORM,
        "Set the longest retention an org may set",
    ),
    op(
        "GET",
        "/v1/orgs/{org}/log/checkpoint",
        "getCheckpoint",
        org(LogsRead),
        "The newest signed checkpoint (or ?size=), as a C2SP signed note",
    ),
    op(
        "GET",
        "/v1/orgs/{org}/log/checkpoints",
        "listCheckpoints",
        org(LogsRead),
        "Signed checkpoints, oldest first",
    ),
    op(
        "GET",
        "/v1/orgs/{org}/log/proof/inclusion",
        "getInclusionProof",
        org(LogsRead),
        "RFC 6962 inclusion proof of a seq",
    ),
    op(
        "GET",
        "/v1/orgs/{org}/log/proof/consistency",
        "getConsistencyProof",
        org(LogsRead),
        "RFC 6962 consistency proof between two tree sizes",
    ),
    op(
        "GET",
        "/v1/orgs/{org}/log/entries",
        "listLogEntries",
        org(LogsRead),
        "Events in seq order with their canonical bytes",
    ),
    op(
        "GET",
        "/v1/orgs/{org}/events/{seq}",
        "getEvent",
        org(LogsRead),
        "One event, its canonical bytes and its inclusion proof",
    ),
    op(
        "GET",
        "/v1/orgs/{org}/audit-logs/stream",
        "streamAuditLogs",
        instance(LogsRead),
        "Live tail: new events as Server-Sent Events, same filters, resumable with Last-Event-ID",
    ),
    op(
        "GET",
        "/v1/orgs/{org}/perf",
        "getPerformance",
        org(LogsRead),
        "Per-route requests, requests per minute, error rates and p50/p95/p99 latency",
    ),
];

/// A route: method, axum path, handler.
pub type Route = (
    &'static str,
    &'static str,
    axum::routing::MethodRouter<crate::AppState>,
);

/// Every route of the API under `/v1`, from which [`crate::app`] builds the router (public or
/// behind a credential, as [`OPERATIONS`] says). Each is an operation of the table and is
/// documented by its handler's `#[utoipa::path]`; a test checks the three agree.
pub fn api() -> Vec<Route> {
    use axum::routing::{delete, get, patch, post, put};
    vec![
        ("POST", "/v1/orgs/{org}/events", post(events::ingest)),
        ("GET", "/v1/orgs/{org}/audit-logs", get(events::list)),
        (
            "GET",
            "/v1/orgs/{org}/audit-logs/histogram",
            get(events::histogram),
        ),
        (
            "GET",
            "/v1/orgs/{org}/audit-logs/download",
            get(events::download),
        ),
        (
            "GET",
            "/v1/orgs/{org}/audit-logs/export",
            get(export::export),
        ),
        ("GET", "/v1/orgs/{org}/audit-logs/stream", get(live::stream)),
        ("GET", "/v1/orgs/{org}/perf", get(live::perf)),
        (
            "GET",
            "/v1/orgs/{org}/instances/{instance}/audit-logs",
            get(events::list_instance),
        ),
        ("GET", "/v1/audit-log", get(events::list_caller_org)),
        ("GET", "/v1/me", get(session::me)),
        ("PUT", "/v1/me/password", put(session::set_password)),
        ("GET", "/v1/orgs", get(manage::list_orgs)),
        ("POST", "/v1/orgs", post(manage::create_org)),
        (
            "POST",
            "/v1/orgs/{org}/owner-invitation",
            post(manage::invite_owner),
        ),
        (
            "GET",
            "/v1/orgs/{org}/instances",
            get(manage::list_instances),
        ),
        (
            "POST",
            "/v1/orgs/{org}/instances",
            post(manage::create_instance),
        ),
        ("GET", "/v1/orgs/{org}/members", get(manage::list_members)),
        ("POST", "/v1/orgs/{org}/members", post(manage::add_member)),
        (
            "PATCH",
            "/v1/orgs/{org}/members/{member}",
            patch(manage::update_member),
        ),
        (
            "DELETE",
            "/v1/orgs/{org}/members/{member}",
            delete(manage::remove_member),
        ),
        ("GET", "/v1/orgs/{org}/api-keys", get(manage::list_api_keys)),
        (
            "POST",
            "/v1/orgs/{org}/api-keys",
            post(manage::create_api_key),
        ),
        (
            "DELETE",
            "/v1/orgs/{org}/api-keys/{key}",
            delete(manage::revoke_api_key),
        ),
        ("GET", "/v1/orgs/{org}/tokens", get(manage::list_tokens)),
        ("POST", "/v1/orgs/{org}/tokens", post(manage::create_token)),
        (
            "DELETE",
            "/v1/orgs/{org}/tokens/{token}",
            delete(manage::revoke_token),
        ),
        ("POST", "/v1/break-glass", post(manage::create_break_glass)),
        (
            "DELETE",
            "/v1/break-glass/{id}",
            delete(manage::revoke_break_glass),
        ),
        ("POST", "/v1/session", post(session::sign_in)),
        ("POST", "/v1/login", post(session::log_in)),
        ("DELETE", "/v1/session", delete(session::sign_out)),
        (
            "POST",
            "/v1/invitations/accept",
            post(session::accept_invitation),
        ),
        ("GET", "/v1/log/key", get(crate::log::key)),
        ("GET", "/v1/orgs/{org}/retention", get(retention::get)),
        ("PUT", "/v1/orgs/{org}/retention", put(retention::set)),
        ("GET", "/v1/retention", get(retention::platform)),
        ("PUT", "/v1/retention", put(retention::set_platform)),
        ("GET", "/v1/orgs/{org}/archives", get(archives::list)),
        (
            "GET",
            "/v1/orgs/{org}/archives/{week}",
            get(archives::download),
        ),
        (
            "GET",
            "/v1/orgs/{org}/log/checkpoint",
            get(crate::log::checkpoint),
        ),
        (
            "GET",
            "/v1/orgs/{org}/log/checkpoints",
            get(crate::log::checkpoints),
        ),
        (
            "GET",
            "/v1/orgs/{org}/log/proof/inclusion",
            get(crate::log::inclusion),
        ),
        (
            "GET",
            "/v1/orgs/{org}/log/proof/consistency",
            get(crate::log::consistency),
        ),
        (
            "GET",
            "/v1/orgs/{org}/log/entries",
            get(crate::log::entries),
        ),
        ("GET", "/v1/orgs/{org}/events/{seq}", get(crate::log::event)),
    ]
}

/// The routes outside the recorded API: health, readiness, metrics, the document.
pub fn unauthenticated() -> Vec<Route> {
    use axum::routing::get;
    vec![
        ("GET", "/healthz", get(ops::healthz)),
        ("GET", "/readyz", get(ops::readyz)),
        ("GET", "/metrics", get(ops::metrics)),
        ("GET", "/v1/openapi.json", get(ops::openapi)),
    ]
}

/// Method and path of every route the router has.
pub fn route_table() -> Vec<(&'static str, &'static str)> {
    api()
        .into_iter()
        .chain(unauthenticated())
        .map(|(method, path, _)| (method, path))
        .collect()
}

/// A list answer: `{"items": [...]}`.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Items<T> {
    pub items: Vec<T>,
}

/// The operation a matched route is.
pub fn find(method: &str, matched: &str) -> Option<&'static Operation> {
    // HEAD is GET without the body (RFC 9110, 9.3.2): the router answers it with the GET
    // handler, so it is that operation, with its access and its record.
    let method = if method == "HEAD" { "GET" } else { method };
    OPERATIONS
        .iter()
        .find(|o| o.method == method && o.path == matched)
}

/// The operation id of a matched route, the action of its audit record.
pub fn operation(method: &str, matched: Option<&str>) -> String {
    matched
        .and_then(|m| find(method, m))
        .map_or("api.call", |o| o.id)
        .to_owned()
}

/// Reads a JSON object body into `T`, naming the field that is wrong. Only an object: serde
/// would also read a struct from an array of its fields in order, which no client means.
pub(crate) fn json_body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::BadRequest(
            "the body must be a JSON object".into(),
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            crate::error::ApiError::BadRequest(format!(
                "the body is not what this call takes: {}",
                e.into_inner()
            ))
        } else {
            crate::error::ApiError::BadRequest(format!("{path}: {}", e.into_inner()))
        }
    })
}
