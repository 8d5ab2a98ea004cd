//! The web console's files, embedded in the binary: the page at `/` and its modules,
//! styles and icons under `/console/`. The console is a client of the JSON API like the CLI
//! (same credentials, same authority, every call recorded); this module only serves its
//! files, under a strict Content-Security-Policy.

use axum::extract::Path;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, IF_NONE_MATCH, REFERRER_POLICY,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use rust_embed::Embed;

use crate::error::ApiError;

#[derive(Embed)]
#[folder = "console/"]
struct Files;

/// Scripts and styles from this origin only (no inline script, no eval); the API from this
/// origin only; never framed.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; \
    form-action 'self'; frame-ancestors 'none'";

/// `GET /`: the console's page.
pub async fn index(headers: HeaderMap) -> Response {
    file("index.html", &headers).unwrap_or_else(|e| e.into_response())
}

/// `GET /console/{*path}`: one of its files.
pub async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    file(&path, &headers).unwrap_or_else(|e| e.into_response())
}

fn file(path: &str, headers: &HeaderMap) -> Result<Response, ApiError> {
    let f = Files::get(path)
        .ok_or_else(|| ApiError::NotFound(format!("the console has no file {path:?}")))?;
    let etag = format!("\"{}\"", hex::encode(&f.metadata.sha256_hash()[..16]));
    let fresh = headers
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut resp = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mime = f.metadata.mimetype();
        let mut r = f.data.into_owned().into_response();
        r.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_str(mime)
                .unwrap_or(HeaderValue::from_static("application/octet-stream")),
        );
        r
    };
    let h = resp.headers_mut();
    h.insert(ETAG, HeaderValue::from_str(&etag).expect("hex"));
    // Revalidated on every load: a new Trail serves its new console at once.
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    Ok(resp)
}
