//! The API's routes: one table of operations (method, path, operation id, scope), from which
//! the router's audit actions and the OpenAPI document are both derived.

pub mod events;
pub mod ops;

use axum::extract::MatchedPath;
use trail_core::Scope;

/// One operation of the authenticated API.
pub struct Operation {
    pub method: &'static str,
    /// The axum path, `{name}` for parameters.
    pub path: &'static str,
    /// The operation id; also the `action` of the call's audit record.
    pub id: &'static str,
    /// The scope checked, if any (`None`: any valid credential).
    pub scope: Option<Scope>,
    pub summary: &'static str,
}

pub const OPERATIONS: &[Operation] = &[
    Operation {
        method: "POST",
        path: "/v1/orgs/{org}/events",
        id: "ingestEvents",
        scope: Some(Scope::LogsWrite),
        summary: "Ingest a batch of events (JSON array or NDJSON)",
    },
    Operation {
        method: "GET",
        path: "/v1/orgs/{org}/audit-logs",
        id: "listAuditLogs",
        scope: Some(Scope::LogsRead),
        summary: "An org's audit log, newest first, filtered and paged",
    },
    Operation {
        method: "GET",
        path: "/v1/orgs/{org}/instances/{instance}/audit-logs",
        id: "listInstanceAuditLogs",
        scope: Some(Scope::LogsRead),
        summary: "One instance's audit log, newest first, filtered and paged",
    },
    Operation {
        method: "GET",
        path: "/v1/audit-log",
        id: "listCallerAuditLog",
        scope: Some(Scope::LogsRead),
        summary: "The audit log of the org the credential belongs to",
    },
    Operation {
        method: "GET",
        path: "/v1/me",
        id: "whoAmI",
        scope: None,
        summary: "Who the credential is",
    },
];

/// `/v1/orgs/{org}/events` as a route template: `/v1/orgs/:org/events`.
pub fn template(path: &str) -> String {
    path.replace('{', ":").replace('}', "")
}

/// The operation id of a matched route, the action of its audit record.
pub fn operation(method: &str, matched: Option<&MatchedPath>) -> &'static str {
    matched
        .and_then(|m| {
            OPERATIONS
                .iter()
                .find(|o| o.method == method && o.path == m.as_str())
        })
        .map_or("api.call", |o| o.id)
}
