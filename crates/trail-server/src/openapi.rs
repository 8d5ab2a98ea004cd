//! The OpenAPI 3.1 document, served at `/v1/openapi.json`, generated with utoipa from the
//! handlers themselves: each handler carries its `#[utoipa::path]` (method, path, operation
//! id, parameters, typed request and response bodies, the errors only it answers), and the
//! bodies are the structs the handlers serialize, so a new field is documented by being
//! added. What the operations table ([`routes::OPERATIONS`]) says is then added to each
//! operation: its summary, who may call it (in words and as security requirements), and the
//! problem responses every call of its kind can get (401, 403, 429, 503, ...).
//!
//! Building the document checks it against the table both ways, and the router is built from
//! [`routes::api`], which a test checks against the document: an operation that is
//! documented but not routed, routed but not documented, or documented under another id
//! than the table's, fails the build of the document, which [`crate::app`] does first.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_json::Value;
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{IntoResponses, OpenApi};

use crate::log;
use crate::routes::{self, Callers, OPERATIONS, events, live, manage, ops, session};

/// A problem+json response with `description`.
fn problem(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/problem+json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .build()
}

/// Problem responses that only some operations give, named in their `#[utoipa::path]`.
macro_rules! problem_responses {
    ($($(#[$doc:meta])* $name:ident = $status:literal, $description:literal;)*) => {$(
        $(#[$doc])*
        pub struct $name;
        impl IntoResponses for $name {
            fn responses() -> BTreeMap<String, RefOr<Response>> {
                BTreeMap::from([($status.to_string(), problem($description).into())])
            }
        }
    )*};
}

problem_responses! {
    /// 404: what the call names does not exist.
    NotFound = 404, "What the call names does not exist (in this org).";
    /// 409: conflicts with what is stored.
    Conflict = 409, "Conflicts with what is stored (it exists already, the last owner, a full log).";
    /// 415: a body of another content type.
    Unsupported = 415, "The body is not of a content type this call takes.";
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Trail",
        description = "A tamper-evident, multi-tenant audit log. Every authenticated call is itself recorded.",
    ),
    paths(
        events::ingest,
        events::list,
        events::histogram,
        events::download,
        routes::export::export,
        routes::retention::get,
        routes::retention::set,
        routes::retention::platform,
        routes::retention::set_platform,
        routes::archives::list,
        routes::archives::download,
        events::list_instance,
        events::list_caller_org,
        live::stream,
        live::perf,
        session::me,
        session::set_password,
        session::sign_in,
        session::log_in,
        session::sign_out,
        session::accept_invitation,
        manage::list_orgs,
        manage::create_org,
        manage::invite_owner,
        manage::list_instances,
        manage::create_instance,
        manage::list_members,
        manage::add_member,
        manage::update_member,
        manage::remove_member,
        manage::list_api_keys,
        manage::create_api_key,
        manage::revoke_api_key,
        manage::list_tokens,
        manage::create_token,
        manage::revoke_token,
        manage::create_break_glass,
        manage::revoke_break_glass,
        log::key,
        log::checkpoint,
        log::checkpoints,
        log::inclusion,
        log::consistency,
        log::entries,
        log::event,
        ops::healthz,
        ops::readyz,
        ops::metrics,
        ops::openapi,
    ),
    components(schemas(crate::error::Problem))
)]
struct ApiDoc;

/// The document, as served (built once).
pub fn document() -> &'static Value {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    DOCUMENT.get_or_init(|| serde_json::to_value(build()).expect("the document serializes"))
}

/// The operations of a path item, by method.
fn operations(
    item: &mut utoipa::openapi::PathItem,
) -> [(&'static str, &mut Option<utoipa::openapi::path::Operation>); 5] {
    [
        ("GET", &mut item.get),
        ("POST", &mut item.post),
        ("PUT", &mut item.put),
        ("PATCH", &mut item.patch),
        ("DELETE", &mut item.delete),
    ]
}

/// The document: the handlers' annotations, completed from [`OPERATIONS`].
///
/// # Panics
/// When the annotations and the table disagree: an operation of the table that no handler
/// documents, a documented `/v1` operation the table lacks, or another operation id.
pub fn build() -> utoipa::openapi::OpenApi {
    from_table(ApiDoc::openapi())
}

/// Completes the handlers' document from the table, checking that they agree.
fn from_table(mut doc: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "A personal access token (`pat_…`) or a break-glass token (`bg_…`): `<id>.<secret>`.",
                ))
                .build(),
        ),
    );
    components.add_security_scheme(
        "basic",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Basic)
                .description(Some(
                    "An API key: the key id as user name, its secret as password.",
                ))
                .build(),
        ),
    );
    components.add_security_scheme(
        "session",
        SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
            crate::auth::SESSION_COOKIE,
            "A console session, set by POST /v1/session.",
        ))),
    );
    components.add_security_scheme(
        "csrf",
        SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
            "X-CSRF-Token",
            "The session's CSRF token (the `csrfToken` of POST /v1/session and GET /v1/me): with the session cookie, on every call that changes something.",
        ))),
    );
    let mut documented = 0;
    for (path, item) in doc.paths.paths.iter_mut() {
        for (method, slot) in operations(item) {
            let Some(operation) = slot else { continue };
            let Some(op) = routes::find(method, path) else {
                assert!(
                    !path.starts_with("/v1/") || path == "/v1/openapi.json",
                    "{method} {path} is documented but not in routes::OPERATIONS"
                );
                continue;
            };
            assert_eq!(
                operation.operation_id.as_deref(),
                Some(op.id),
                "{method} {path}: the handler documents another operation id than routes::OPERATIONS"
            );
            documented += 1;
            complete(method, operation, op);
        }
    }
    for op in OPERATIONS {
        assert!(
            doc.paths
                .paths
                .get(op.path)
                .is_some_and(|item| operations(&mut item.clone())
                    .into_iter()
                    .any(|(m, o)| m == op.method && o.is_some())),
            "{} {} ({}) is in routes::OPERATIONS but no handler documents it",
            op.method,
            op.path,
            op.id
        );
    }
    assert_eq!(documented, OPERATIONS.len());
    doc
}

/// Adds to a documented operation what the table says of it.
fn complete(
    method: &str,
    operation: &mut utoipa::openapi::path::Operation,
    op: &routes::Operation,
) {
    operation.summary = Some(op.summary.to_owned());
    operation.description = Some(op.access.describe());
    let changes = method != "GET";
    let bearer = || SecurityRequirement::new("bearer", Vec::<String>::new());
    let basic = || SecurityRequirement::new("basic", Vec::<String>::new());
    let session = || {
        let s = SecurityRequirement::new("session", Vec::<String>::new());
        if changes {
            s.add("csrf", Vec::<String>::new())
        } else {
            s
        }
    };
    operation.security = Some(match op.access.callers {
        Callers::Public => vec![SecurityRequirement::default()],
        Callers::Session | Callers::Console => vec![session()],
        Callers::People | Callers::LastingPeople => vec![bearer(), session()],
        Callers::Any | Callers::NotBreakGlass => vec![bearer(), basic(), session()],
    });
    let has_input = operation.parameters.as_ref().is_some_and(|p| !p.is_empty())
        || operation.request_body.is_some();
    let public = op.access.callers == Callers::Public;
    let mut add = |status: &str, description: &str| {
        operation
            .responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| problem(description).into());
    };
    if has_input {
        add("400", "Bad input; `detail` says what.");
    }
    if public {
        add("401", "The password or invitation is wrong.");
        add(
            "429",
            "Too many failed attempts from this address; see Retry-After.",
        );
    } else {
        add("401", "No valid credential.");
        add(
            "403",
            "The credential may not make this call: it lacks the scope (named in `scope`), is of a kind the call is not for, or cannot act on this org.",
        );
        add(
            "429",
            "Too many failed credentials from this address; see Retry-After.",
        );
    }
    if operation.request_body.is_some() {
        add("413", "The body is too large.");
    }
    add("414", "The request target is longer than 8 KiB.");
    add("431", "The request's header fields are too large.");
    add(
        "503",
        "Storage is unavailable, a read passed its deadline, or the call could not be recorded; see Retry-After.",
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fails(doc: utoipa::openapi::OpenApi) -> bool {
        std::panic::catch_unwind(move || from_table(doc)).is_err()
    }

    #[test]
    fn a_mistyped_or_missing_operation_fails_the_document() {
        assert!(!fails(ApiDoc::openapi()));
        let mut mistyped = ApiDoc::openapi();
        let item = mistyped.paths.paths.get_mut("/v1/me").unwrap();
        item.get.as_mut().unwrap().operation_id = Some("whoAmi".into());
        assert!(fails(mistyped));
        let mut missing = ApiDoc::openapi();
        missing.paths.paths.remove("/v1/log/key");
        assert!(fails(missing));
        let mut extra = ApiDoc::openapi();
        let item = extra.paths.paths.get("/v1/me").unwrap().clone();
        extra.paths.paths.insert("/v1/you".into(), item);
        assert!(fails(extra));
    }
}
