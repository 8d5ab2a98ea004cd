//! The one error type of the HTTP edge, rendered as RFC 9457 problem details.
//!
//! Client errors carry a `detail` that says what to fix. Server errors are logged in full
//! and answered with a generic detail: internals never reach the client.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use trail_core::Scope;
use trail_store::StoreError;
use utoipa::ToSchema;

/// An RFC 9457 problem document, as every error is answered.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A stable slug under `/problems/`, such as `/problems/missing-scope`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: &'static str,
    pub status: u16,
    /// What went wrong, and what to do about it.
    pub detail: String,
    /// The missing scope, on 403.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<&'static str>,
    /// Why each refused event of a batch was refused, on 422.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<crate::routes::events::EventError>>)]
    pub errors: Option<Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{detail}")]
    Unprocessable { detail: String, errors: Value },
    #[error("{0}")]
    Unauthorized(String),
    #[error("this credential lacks the {0} scope")]
    MissingScope(Scope),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    UriTooLong(String),
    #[error("{0}")]
    HeadersTooLarge(String),
    /// A refusal made outside the handlers (an extractor's rejection, a layer's answer),
    /// carried over with its status.
    #[error("{detail}")]
    Rejected { status: StatusCode, detail: String },
    #[error("too many failed attempts from your address; retry in {} s", .0.as_secs() + 1)]
    TooManyAttempts(std::time::Duration),
    #[error("{0}")]
    Unavailable(String),
    /// A read stopped at its deadline: 503 with `Retry-After`, saying what to do.
    #[error("{0}")]
    QueryTimeout(String),
    /// `/readyz` while the store cannot take writes: 503, saying why.
    #[error("not ready: {0}")]
    NotReady(String),
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::MissingScope(_) | ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::UriTooLong(_) => StatusCode::URI_TOO_LONG,
            ApiError::HeadersTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ApiError::Rejected { status, .. } => *status,
            ApiError::TooManyAttempts(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) | ApiError::QueryTimeout(_) | ApiError::NotReady(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The problem type: a stable slug under `/problems/`.
    fn slug(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad-request",
            ApiError::Unprocessable { .. } => "invalid-events",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::MissingScope(_) => "missing-scope",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not-found",
            ApiError::MethodNotAllowed(_) => "method-not-allowed",
            ApiError::Conflict(_) => "conflict",
            ApiError::PayloadTooLarge(_) => "payload-too-large",
            ApiError::UnsupportedMediaType(_) => "unsupported-media-type",
            ApiError::UriTooLong(_) => "uri-too-long",
            ApiError::HeadersTooLarge(_) => "headers-too-large",
            ApiError::Rejected { status, .. } => match status.as_u16() {
                400 => "bad-request",
                404 => "not-found",
                405 => "method-not-allowed",
                408 => "request-timeout",
                413 => "payload-too-large",
                414 => "uri-too-long",
                415 => "unsupported-media-type",
                422 => "unprocessable",
                431 => "headers-too-large",
                500..=599 => "internal",
                _ => "error",
            },
            ApiError::TooManyAttempts(_) => "too-many-attempts",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::QueryTimeout(_) => "query-timeout",
            ApiError::NotReady(_) => "not-ready",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::UnknownOrg(org) => {
                ApiError::NotFound(format!("org {org:?} does not exist"))
            }
            StoreError::Conflict(what) => ApiError::Conflict(format!("{what} already exists")),
            StoreError::NotFound(what) => ApiError::NotFound(format!("{what} does not exist")),
            StoreError::LogFull(org) => {
                ApiError::Conflict(format!("the log of org {org:?} is full"))
            }
            StoreError::Unavailable(m) | StoreError::Contended(m) => ApiError::Unavailable(m),
            e @ StoreError::TimedOut(_) => ApiError::QueryTimeout(e.to_string()),
            StoreError::Corrupt(m) => ApiError::Internal(format!("corrupt store: {m}")),
            StoreError::Refused(m) => ApiError::Conflict(m),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let detail = match &self {
            ApiError::Internal(m) => {
                tracing::error!(error = %m, "internal error");
                "the server failed; the error is in its log".to_owned()
            }
            ApiError::Unavailable(m) => {
                tracing::error!(error = %m, "unavailable");
                "storage is unavailable; retry later".to_owned()
            }
            other => other.to_string(),
        };
        let body = Problem {
            kind: format!("/problems/{}", self.slug()),
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail,
            scope: match &self {
                ApiError::MissingScope(scope) => Some(scope.as_str()),
                _ => None,
            },
            errors: match &self {
                ApiError::Unprocessable { errors, .. } => Some(errors.clone()),
                _ => None,
            },
        };
        let mut resp = (status, Json(body)).into_response();
        let headers = resp.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Bearer realm="trail", Basic realm="trail""#),
            );
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if let ApiError::TooManyAttempts(wait) = &self {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(wait.as_secs() + 1));
        }
        resp
    }
}
