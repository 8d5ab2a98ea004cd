//! The API's routes: one table of operations (method, path, operation id, access), from which
//! the audit actions, the OpenAPI document and the authorization-matrix test are derived.

pub mod events;
pub mod live;
pub mod manage;
pub mod ops;
pub mod session;

use trail_core::Scope;

use crate::error::ApiError;

/// Who may call an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone with a valid credential.
    Any,
    /// A credential that can act on the org in the path, whatever its scopes.
    Member,
    /// A credential holding this scope in the org in the path.
    Scope(Scope),
    /// A platform admin (`orgs:admin`).
    Platform,
    /// No credential needed (signing in).
    Public,
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

use Access::*;
use Scope::*;

pub const OPERATIONS: &[Operation] = &[
    op(
        "POST",
        "/v1/orgs/{org}/events",
        "ingestEvents",
        Scope(LogsWrite),
        "Ingest a batch of events (JSON array or NDJSON)",
    ),
    op(
        "GET",
        "/v1/orgs/{org}/audit-logs",
        "listAuditLogs",
        Scope(LogsRead),
        "An org's audit log, newest first, filtered and paged",
    ),
    op(
        "GET",
        "/v1/orgs/{org}/instances/{instance}/audit-logs",
        "listInstanceAuditLogs",
        Scope(LogsRead),
        "One instance's audit log, newest first, filtered and paged",
    ),
    op(
        "GET",
        "/v1/audit-log",
        "listCallerAuditLog",
        Scope(LogsRead),
        "The audit log of the org the credential belongs to",
    ),
    op(
        "GET",
        "/v1/me",
        "whoAmI",
        Any,
        "Who the credential is, and what it holds where",
    ),
    op(
        "PUT",
        "/v1/me/password",
        "setPassword",
        Any,
        "Set the caller's console password",
    ),
    op(
        "GET",
        "/v1/orgs",
        "listOrgs",
        Any,
        "The orgs the caller can act on (every org, for a platform admin)",
    ),
    op(
        "POST",
        "/v1/orgs",
        "createOrg",
        Platform,
        "Create an org and its first owner",
    ),
    op(
        "GET",
        "/v1/orgs/{org}/instances",
        "listInstances",
        Member,
        "An org's instances",
    ),
    op(
        "POST",
        "/v1/orgs/{org}/instances",
        "createInstance",
        Scope(InstancesManage),
        "Add an instance",
    ),
    op(
        "GET",
        "/v1/orgs/{org}/members",
        "listMembers",
        Scope(MembersManage),
        "An org's members and their roles",
    ),
    op(
        "POST",
        "/v1/orgs/{org}/members",
        "addMember",
        Scope(MembersManage),
        "Add a member with a role",
    ),
    op(
        "PATCH",
        "/v1/orgs/{org}/members/{member}",
        "updateMember",
        Scope(MembersManage),
        "Change a member's role",
    ),
    op(
        "DELETE",
        "/v1/orgs/{org}/members/{member}",
        "removeMember",
        Scope(MembersManage),
        "Remove a member",
    ),
    op(
        "GET",
        "/v1/orgs/{org}/api-keys",
        "listApiKeys",
        Scope(KeysManage),
        "An org's API keys (never their secrets)",
    ),
    op(
        "POST",
        "/v1/orgs/{org}/api-keys",
        "createApiKey",
        Scope(KeysManage),
        "Create an API key; its secret is shown once",
    ),
    op(
        "DELETE",
        "/v1/orgs/{org}/api-keys/{key}",
        "revokeApiKey",
        Scope(KeysManage),
        "Revoke an API key at once",
    ),
    op(
        "GET",
        "/v1/orgs/{org}/tokens",
        "listTokens",
        Member,
        "The caller's personal access tokens in the org",
    ),
    op(
        "POST",
        "/v1/orgs/{org}/tokens",
        "createToken",
        Member,
        "Create a personal access token; it is shown once",
    ),
    op(
        "DELETE",
        "/v1/orgs/{org}/tokens/{token}",
        "revokeToken",
        Member,
        "Revoke a personal access token at once",
    ),
    op(
        "POST",
        "/v1/break-glass",
        "createBreakGlassToken",
        Platform,
        "Mint a short-lived emergency token for an org",
    ),
    op(
        "DELETE",
        "/v1/break-glass/{id}",
        "revokeBreakGlassToken",
        Platform,
        "End a break-glass token at once",
    ),
    op(
        "POST",
        "/v1/session",
        "signIn",
        Public,
        "Sign in to the console with email and password",
    ),
    op(
        "DELETE",
        "/v1/session",
        "signOut",
        Any,
        "End the console session",
    ),
    op(
        "GET",
        "/v1/log/key",
        "getLogKey",
        Any,
        "The key that signs the logs' checkpoints",
    ),
    op(
        "GET",
        "/v1/orgs/{org}/log/checkpoint",
        "getCheckpoint",
        Scope(LogsRead),
        "The newest signed checkpoint (or ?size=), as a C2SP signed note",
    ),
    op(
        "GET",
        "/v1/orgs/{org}/log/checkpoints",
        "listCheckpoints",
        Scope(LogsRead),
        "Signed checkpoints, oldest first",
    ),
    op(
        "GET",
        "/v1/orgs/{org}/log/proof/inclusion",
        "getInclusionProof",
        Scope(LogsRead),
        "RFC 6962 inclusion proof of a seq",
    ),
    op(
        "GET",
        "/v1/orgs/{org}/log/proof/consistency",
        "getConsistencyProof",
        Scope(LogsRead),
        "RFC 6962 consistency proof between two tree sizes",
    ),
    op(
        "GET",
        "/v1/orgs/{org}/log/entries",
        "listLogEntries",
        Scope(LogsRead),
        "Events in seq order with their canonical bytes",
    ),
    op(
        "GET",
        "/v1/orgs/{org}/events/{seq}",
        "getEvent",
        Scope(LogsRead),
        "One event, its canonical bytes and its inclusion proof",
    ),
    op(
        "GET",
        "/v1/orgs/{org}/audit-logs/stream",
        "streamAuditLogs",
        Scope(LogsRead),
        "Live tail: new events as Server-Sent Events, same filters, resumable with Last-Event-ID",
    ),
    op(
        "GET",
        "/v1/orgs/{org}/perf",
        "getPerformance",
        Scope(LogsRead),
        "Per-route requests, requests per minute, error rates and p50/p95/p99 latency",
    ),
];

/// The operation id of a matched route, the action of its audit record.
pub fn operation(method: &str, matched: Option<&str>) -> String {
    matched
        .and_then(|m| {
            OPERATIONS
                .iter()
                .find(|o| o.method == method && o.path == m)
        })
        .map_or("api.call", |o| o.id)
        .to_owned()
}

/// Reads a JSON body into `T`, naming the field that is wrong.
pub(crate) fn json_body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
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
