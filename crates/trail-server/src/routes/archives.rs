//! Weekly archives: the list of an org's weeks, and one week's ZIP (`crate::archive`).

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::HeaderValue;
use axum::http::header::{CACHE_CONTROL, CONTENT_DISPOSITION};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tower::ServiceExt;
use trail_core::archive::Week;
use utoipa::ToSchema;

use crate::archive::{ArchiveSummary, Archives};
use crate::error::ApiError;
use crate::openapi::NotFound;
use crate::{AppState, now};

/// The weeks an org has archives of.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArchiveList {
    /// Stored archives of ended weeks, oldest first.
    pub items: Vec<ArchiveSummary>,
    /// The current week, which can be downloaded as a partial archive.
    pub current: String,
}

fn archives(state: &AppState) -> Result<&Archives, ApiError> {
    state
        .archives
        .as_deref()
        .ok_or_else(|| ApiError::Unavailable("this server keeps no archives".into()))
}

/// `GET /v1/orgs/{org}/archives`.
#[utoipa::path(
    get,
    path = "/v1/orgs/{org}/archives",
    operation_id = "listArchives",
    params(("org" = String, Path, description = "The org's id")),
    responses((status = 200, description = "The org's weekly archives", body = ArchiveList)),
)]
pub async fn list(
    State(state): State<AppState>,
    Path(org): Path<String>,
) -> Result<Json<ArchiveList>, ApiError> {
    // The org must exist whatever its archives (a credential may reach one it cannot list).
    state.store.log_size(&org).await?;
    Ok(Json(ArchiveList {
        items: archives(&state)?.list(&org).await?,
        current: Week::containing(now()).to_string(),
    }))
}

/// `GET /v1/orgs/{org}/archives/{week}`.
#[utoipa::path(
    get,
    path = "/v1/orgs/{org}/archives/{week}",
    operation_id = "downloadArchive",
    params(
        ("org" = String, Path, description = "The org's id"),
        ("week" = String, Path, description = "The ISO week, `2026-W47`; the current week gives a partial archive"),
    ),
    responses(
        (status = 200, description = "The week's archive: a ZIP of one JSON file per day, `leaves.bin` and `manifest.json`", body = Vec<u8>, content_type = "application/zip"),
        (status = 206, description = "The part of it asked for with `Range`", body = Vec<u8>, content_type = "application/zip"),
        (status = 416, description = "A `Range` outside the archive"),
        NotFound,
    ),
)]
pub async fn download(
    State(state): State<AppState>,
    Path((org, week)): Path<(String, String)>,
    request: Request,
) -> Result<Response, ApiError> {
    let week = Week::parse(&week).map_err(|e| ApiError::NotFound(e.to_string()))?;
    let file = archives(&state)?
        .get(&state.store, &state.log_key, &org, week, now())
        .await?;
    let (parts, _) = request.into_parts();
    let request = Request::from_parts(parts, Body::empty());
    // ServeFile answers Range, If-Range and HEAD; the file is open before a partial
    // archive's temporary name goes away.
    let mut response = tower_http::services::ServeFile::new_with_mime(
        &file.path,
        &"application/zip".parse().expect("a MIME type"),
    )
    .oneshot(request)
    .await
    .map_err(|e| ApiError::Unavailable(format!("cannot read the archive: {e}")))?
    .map(Body::new);
    drop(file.temp);
    let name = format!(
        "attachment; filename=\"{org}-{week}{}.zip\"",
        if file.partial { "-partial" } else { "" }
    );
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&name) {
        headers.insert(CONTENT_DISPOSITION, v);
    }
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
    Ok(response.into_response())
}
