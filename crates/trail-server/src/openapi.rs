//! The OpenAPI 3.1 document, served at `/v1/openapi.json`. Paths come from
//! [`routes::OPERATIONS`], so the document cannot name an operation the router lacks (a test
//! checks the converse).

use serde_json::{Map, Value, json};

use crate::routes::{OPERATIONS, events};

fn list_parameters() -> Vec<Value> {
    let text = |name: &str, description: &str| json!({"name": name, "in": "query", "required": false, "schema": {"type": "string"}, "description": description});
    vec![
        text("actor", "Actor id. Repeat for alternatives."),
        text(
            "actorType",
            "user, pat, api_key, break_glass, system, or another kind: lowercase letters, digits, _, - and ., 1 to 64 characters.",
        ),
        text("action", "Action."),
        text("category", "app, api, system, ..."),
        text("objectType", "Object type."),
        text("objectKind", "object.id.kind."),
        text(
            "objectName",
            "object.id.name (or object.id when it is a string).",
        ),
        text(
            "route",
            "Route template, `GET /v1/tenants/:id`; without a method, any method.",
        ),
        text("method", "HTTP method of a recorded call."),
        text("status", "Status code (404) or class (5xx)."),
        text("instance", "Instance id."),
        text("tokenId", "Credential id of the actor."),
        text("ip", "Client IP address."),
        text(
            "since",
            "RFC 3339 time, or a duration back from now: 30s, 5m, 1h, 7d, 2w. Inclusive.",
        ),
        text(
            "until",
            "RFC 3339 time or duration back from now. Exclusive.",
        ),
        text(
            "q",
            "Query: `actor:alice action:deleted route:\"GET /v1/tenants/:id\" -status:200`. Terms on one key are alternatives, different keys must all hold, `-` excludes.",
        ),
        json!({"name": "limit", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 1, "maximum": events::MAX_LIMIT, "default": events::DEFAULT_LIMIT}}),
        text("cursor", "The nextCursor of the previous page."),
    ]
}

/// An operation's request body schema, success status and response schema.
fn shape(id: &str) -> (Option<Value>, &'static str, Option<Value>) {
    let r = |name: &str| json!({"$ref": format!("#/components/schemas/{name}")});
    let items = |name: &str| json!({"type": "object", "properties": {"items": {"type": "array", "items": r(name)}}});
    let obj = |props: Value, required: &[&str]| json!({"type": "object", "additionalProperties": false, "properties": props, "required": required});
    let s = json!({"type": "string"});
    let strs = json!({"type": "array", "items": {"type": "string"}});
    match id {
        "ingestEvents" => (None, "200", Some(r("IngestResult"))),
        "listAuditLogs" | "listInstanceAuditLogs" | "listCallerAuditLog" => {
            (None, "200", Some(r("EventPage")))
        }
        "whoAmI" => (None, "200", Some(json!({"type": "object"}))),
        "setPassword" => (
            Some(obj(
                json!({"currentPassword": s, "newPassword": s}),
                &["newPassword"],
            )),
            "204",
            None,
        ),
        "listOrgs" => (None, "200", Some(items("Org"))),
        "createOrg" => (
            Some(obj(
                json!({"id": s, "name": s, "owner": {"type": "string", "description": "The first owner's email; by default the caller."}}),
                &["id"],
            )),
            "201",
            Some(
                json!({"allOf": [r("Org"), {"type": "object", "properties": {"invitation": {"type": "object", "description": "For a first owner new to Trail: their invitation (shown once), accepted with POST /v1/invitations/accept.", "properties": {"id": s, "token": s, "expiresAt": s}}}}]}),
            ),
        ),
        "listInstances" => (None, "200", Some(items("Instance"))),
        "createInstance" => (
            Some(obj(
                json!({"id": s, "name": s, "kind": {"type": "string", "examples": ["argocd", "kargo"]}}),
                &["id", "kind"],
            )),
            "201",
            Some(r("Instance")),
        ),
        "listMembers" => (None, "200", Some(items("Member"))),
        "addMember" => (
            Some(obj(
                json!({"email": s, "role": {"enum": ["owner", "admin", "member"]}}),
                &["email", "role"],
            )),
            "201",
            Some(
                json!({"allOf": [r("Member"), {"type": "object", "properties": {"invitation": {"type": "object", "description": "For an email new to Trail: the invitation (shown once) they accept with POST /v1/invitations/accept.", "properties": {"id": s, "token": s, "expiresAt": s}}}}]}),
            ),
        ),
        "updateMember" => (
            Some(obj(
                json!({"role": {"enum": ["owner", "admin", "member"]}}),
                &["role"],
            )),
            "200",
            Some(r("Member")),
        ),
        "listApiKeys" => (None, "200", Some(items("ApiKey"))),
        "createApiKey" => (
            Some(obj(
                json!({"name": s, "description": s, "role": {"enum": ["owner", "admin", "member"]}, "scopes": strs, "expiresIn": {"type": "string", "examples": ["90d"]}, "instance": s}),
                &["name"],
            )),
            "201",
            Some(r("ApiKey")),
        ),
        "listTokens" => (None, "200", Some(items("Token"))),
        "createToken" => (
            Some(obj(
                json!({"name": s, "scopes": strs, "preset": {"enum": ["support-readonly", "admin-full"]}, "expiresIn": {"type": "string", "examples": ["30d"]}}),
                &["name"],
            )),
            "201",
            Some(r("Token")),
        ),
        "createBreakGlassToken" => (
            Some(obj(
                json!({"org": s, "reason": s, "expiresIn": {"type": "string", "description": "1m to 12h; 1h by default."}, "scopes": strs}),
                &["org", "reason"],
            )),
            "201",
            Some(json!({"type": "object"})),
        ),
        "streamAuditLogs" => (
            None,
            "200",
            Some(
                json!({"type": "string", "description": "text/event-stream: each event is `event: audit`, `id: <seq>`, `data: <the record>`."}),
            ),
        ),
        "getPerformance" => (
            None,
            "200",
            Some(json!({"type": "object", "properties": {
                "since": s, "until": s, "windowMinutes": {"type": "number"}, "spanMinutes": {"type": "number"},
                "routes": {"type": "array", "items": {"type": "object", "properties": {
                    "route": s, "requests": {"type": "integer"}, "requestsPerMinute": {"type": "number"},
                    "errors4xx": {"type": "integer"}, "errors5xx": {"type": "integer"},
                    "errorRate4xx": {"type": "number"}, "errorRate5xx": {"type": "number"},
                    "p50Ms": {"type": "number"}, "p95Ms": {"type": "number"}, "p99Ms": {"type": "number"}}}},
            }})),
        ),
        "getLogKey" => (
            None,
            "200",
            Some(
                json!({"type": "object", "properties": {"name": s, "verifierKey": {"type": "string", "description": "<name>+<hash>+<base64 key>, as Go's sumdb/note writes it."}}}),
            ),
        ),
        "getCheckpoint" => (
            None,
            "200",
            Some(
                json!({"type": "string", "description": "A C2SP tlog-checkpoint signed note (text/plain)."}),
            ),
        ),
        "listCheckpoints" => (
            None,
            "200",
            Some(
                json!({"type": "object", "properties": {"items": {"type": "array", "items": {"type": "object", "properties": {"size": {"type": "integer"}, "root": s, "createdAt": s, "note": s}}}, "nextAfter": {"type": ["integer", "null"]}}}),
            ),
        ),
        "getInclusionProof" => (
            None,
            "200",
            Some(
                json!({"type": "object", "properties": {"seq": {"type": "integer"}, "treeSize": {"type": "integer"}, "leafHash": s, "proof": strs}}),
            ),
        ),
        "getConsistencyProof" => (
            None,
            "200",
            Some(
                json!({"type": "object", "properties": {"from": {"type": "integer"}, "to": {"type": "integer"}, "proof": strs}}),
            ),
        ),
        "listLogEntries" => (
            None,
            "200",
            Some(
                json!({"type": "object", "properties": {"items": {"type": "array", "items": r("Event")}, "nextFrom": {"type": ["integer", "null"]}}}),
            ),
        ),
        "getEvent" => (
            None,
            "200",
            Some(
                json!({"type": "object", "properties": {"event": r("Event"), "leafHash": s, "inclusion": {"type": ["object", "null"], "properties": {"treeSize": {"type": "integer"}, "proof": strs, "checkpoint": s}}}}),
            ),
        ),
        "acceptInvitation" => (
            Some(obj(
                json!({"token": s, "password": s}),
                &["token", "password"],
            )),
            "200",
            Some(obj(json!({"email": s, "org": s}), &["email", "org"])),
        ),
        "signIn" => (
            Some(obj(
                json!({"email": s, "password": s}),
                &["email", "password"],
            )),
            "200",
            Some(
                json!({"type": "object", "description": "Sets the session cookie; `csrfToken` goes in X-CSRF-Token on calls that change something."}),
            ),
        ),
        _ => (None, "204", None),
    }
}

fn problem(description: &str) -> Value {
    json!({"description": description, "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}})
}

pub fn document() -> Value {
    let mut paths = Map::new();
    for op in OPERATIONS {
        let mut parameters: Vec<Value> = op
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        let mut responses = Map::new();
        let mut operation = json!({
            "operationId": op.id,
            "summary": op.summary,
            "security": [{"bearer": []}, {"basic": []}],
        });
        let access = op.access.describe();
        operation["description"] = json!(access);
        if op.access.callers == crate::routes::Callers::Public {
            operation["security"] = json!([]);
        }
        let (request, status, response) = shape(op.id);
        if op.id.contains("AuditLog") {
            parameters.extend(list_parameters());
        }
        let int_param = |name: &str, required: bool, description: &str| json!({"name": name, "in": "query", "required": required, "schema": {"type": "integer", "minimum": 0}, "description": description});
        match op.id {
            "getCheckpoint" => parameters.push(int_param(
                "size",
                false,
                "A checkpoint of this size; by default the newest.",
            )),
            "listCheckpoints" => {
                parameters.push(int_param(
                    "after",
                    false,
                    "Only checkpoints of more events.",
                ));
                parameters.push(int_param(
                    "limit",
                    false,
                    "At most this many (1000 by default).",
                ));
            }
            "getInclusionProof" => {
                parameters.push(int_param("seq", true, "The event."));
                parameters.push(int_param(
                    "size",
                    false,
                    "The tree size; by default the newest checkpoint's.",
                ));
            }
            "getConsistencyProof" => {
                parameters.push(int_param("from", true, "The older tree size."));
                parameters.push(int_param(
                    "to",
                    false,
                    "The newer tree size; by default the newest checkpoint's.",
                ));
            }
            "streamAuditLogs" => parameters.push(int_param(
                "from",
                false,
                "Start at this seq; by default new events only (or after Last-Event-ID).",
            )),
            "getPerformance" => {
                let text = |name: &str, d: &str| json!({"name": name, "in": "query", "required": false, "schema": {"type": "string"}, "description": d});
                parameters.push(text(
                    "since",
                    "RFC 3339 or a duration back from now; 24h by default.",
                ));
                parameters.push(text(
                    "until",
                    "RFC 3339 or a duration back from now; now by default.",
                ));
                parameters.push(text(
                    "route",
                    "One route template, or a path for every method.",
                ));
            }
            "listLogEntries" => {
                parameters.push(int_param("from", false, "The first seq (0 by default)."));
                parameters.push(int_param(
                    "limit",
                    false,
                    "At most this many (1000 by default).",
                ));
            }
            _ => {}
        }
        if let Some(schema) = request {
            operation["requestBody"] =
                json!({"required": true, "content": {"application/json": {"schema": schema}}});
        }
        if op.id == "ingestEvents" {
            operation["requestBody"] = json!({
                "required": true,
                "description": format!("At most {} events and {} bytes. An event `id` makes retries idempotent.", events::MAX_BATCH, events::MAX_BODY),
                "content": {
                    "application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/EventInput"}}},
                    "application/x-ndjson": {"schema": {"$ref": "#/components/schemas/EventInput"}},
                }
            });
            responses.insert("413".into(), problem("Too many events or bytes."));
            responses.insert("415".into(), problem("Unsupported content type."));
            responses.insert(
                "422".into(),
                problem("No event in the batch is valid; `errors` lists why."),
            );
        }
        let ok = match response {
            Some(schema) => {
                json!({"description": "Done.", "content": {"application/json": {"schema": schema}}})
            }
            None => json!({"description": "Done."}),
        };
        responses.insert(status.into(), ok);
        responses.insert("400".into(), problem("Bad input; `detail` says what."));
        responses.insert("401".into(), problem("No valid credential."));
        responses.insert(
            "403".into(),
            problem("The credential lacks the scope (named in `scope`) or belongs to another org."),
        );
        responses.insert("404".into(), problem("No such thing in the org."));
        responses.insert(
            "409".into(),
            problem("Conflicts with what is stored (a duplicate, the last owner)."),
        );
        responses.insert(
            "429".into(),
            problem("Too many failed attempts from this address; see Retry-After."),
        );
        responses.insert(
            "503".into(),
            problem("Storage unavailable, or the call could not be recorded."),
        );
        operation["parameters"] = Value::Array(parameters);
        operation["responses"] = Value::Object(responses);
        paths
            .entry(op.path)
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("path item is an object")
            .insert(op.method.to_ascii_lowercase(), operation);
    }
    for (path, summary) in [
        ("/healthz", "Liveness"),
        (
            "/readyz",
            "Readiness: the store answers and its writes are not failing (503 saying why otherwise)",
        ),
        ("/metrics", "Prometheus metrics"),
        ("/v1/openapi.json", "This document"),
    ] {
        paths.insert(path.into(), json!({"get": {"summary": summary, "security": [], "responses": {"200": {"description": "OK"}}}}));
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Trail",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "A tamper-evident, multi-tenant audit log. Every authenticated call is itself recorded.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "A personal access token, `<id>.<secret>`."},
                "basic": {"type": "http", "scheme": "basic", "description": "An API key: key id as user name, secret as password."},
            },
            "schemas": schemas(),
        },
    })
}

fn schemas() -> Value {
    let s = json!({"type": "string"});
    let ts = json!({"type": "string", "description": "RFC 3339 (Go's `2006-01-02 15:04:05.999999999 -0700 MST` is also read)."});
    json!({
        "Problem": {"type": "object", "description": "RFC 9457 problem details.", "properties": {
            "type": s, "title": s, "status": {"type": "integer"}, "detail": s,
            "scope": {"type": "string", "description": "The missing scope, on 403."},
            "errors": {"type": "array", "items": {"$ref": "#/components/schemas/EventError"}},
        }},
        "Org": {"type": "object", "properties": {"id": s, "name": s, "owner": s, "createdAt": s, "scopes": {"type": "array", "items": s}}},
        "Instance": {"type": "object", "properties": {"id": s, "name": s, "kind": s, "createdAt": s}},
        "Member": {"type": "object", "properties": {"userId": s, "email": s, "role": {"enum": ["owner", "admin", "member"]}}},
        "ApiKey": {"type": "object", "properties": {
            "id": s, "name": s, "description": s, "scopes": {"type": "array", "items": s}, "instance": s,
            "createdBy": s, "createdAt": s, "expiresAt": s, "revokedAt": s,
            "secret": {"type": "string", "description": "Only in the answer to its creation."},
        }},
        "Token": {"type": "object", "properties": {
            "id": s, "name": s, "scopes": {"type": "array", "items": s}, "createdAt": s, "expiresAt": s, "revokedAt": s,
            "token": {"type": "string", "description": "Only in the answer to its creation."},
        }},
        "EventError": {"type": "object", "properties": {"index": {"type": "integer"}, "field": {"type": ["string", "null"]}, "detail": s}},
        "Actor": {"type": "object", "required": ["id", "type"], "properties": {
            "id": s, "type": {"enum": ["user", "pat", "api_key", "break_glass", "system"]},
            "ip": s, "userAgent": s, "tokenId": s, "scope": s,
        }},
        "Object": {"type": "object", "required": ["type"], "properties": {
            "type": s, "id": {"type": ["string", "object"]}, "parentId": {"type": "object"},
        }},
        "Request": {"type": "object", "required": ["method", "route", "status"], "properties": {
            "method": s, "route": {"type": "string", "description": "Normalized route template."},
            "status": {"type": "integer"}, "latencyMs": {"type": "number"},
            "bodySha256": {"type": "string", "description": "Hex SHA-256 of the request body."},
        }},
        "EventInput": {"type": "object", "required": ["action", "actor"], "additionalProperties": false, "properties": {
            "id": {"type": "string", "description": "Idempotency id; a repeat is not stored twice."},
            "org": s, "instance": s, "timestamp": ts, "action": s,
            "category": {"type": "string", "default": "app"},
            "actor": {"$ref": "#/components/schemas/Actor"},
            "object": {"$ref": "#/components/schemas/Object"},
            "details": {"type": "object"},
            "request": {"$ref": "#/components/schemas/Request"},
            "count": {"type": "integer", "minimum": 1}, "lastOccurredTimestamp": ts,
            "seq": {"description": "Ignored."}, "receivedAt": {"description": "Ignored."}, "hash": {"description": "Ignored."},
        }},
        "Event": {"type": "object", "properties": {
            "id": s, "seq": {"type": "integer"}, "org": s, "instance": s, "timestamp": s, "receivedAt": s,
            "action": s, "category": s, "actor": {"$ref": "#/components/schemas/Actor"},
            "object": {"$ref": "#/components/schemas/Object"}, "details": {"type": "object"},
            "request": {"$ref": "#/components/schemas/Request"}, "count": {"type": "integer"},
            "lastOccurredTimestamp": s,
            "hash": {"type": "string", "description": "RFC 6962 leaf hash, hex: SHA-256(0x00 || canonical bytes)."},
        }},
        "EventPage": {"type": "object", "properties": {
            "items": {"type": "array", "items": {"$ref": "#/components/schemas/Event"}},
            "nextCursor": {"type": ["string", "null"]},
        }},
        "IngestResult": {"type": "object", "properties": {
            "accepted": {"type": "integer"}, "duplicates": {"type": "integer"}, "rejected": {"type": "integer"},
            "items": {"type": "array", "items": {"type": "object", "properties": {
                "index": {"type": "integer"}, "id": s, "seq": {"type": "integer"}, "hash": s,
                "receivedAt": s, "duplicate": {"type": "boolean"},
            }}},
            "errors": {"type": "array", "items": {"$ref": "#/components/schemas/EventError"}},
        }},
    })
}
