//! Health, readiness, metrics and the OpenAPI document: the only routes served without a
//! credential. None of them shows tenant data.

use axum::Json;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use serde_json::{Value, json};

use crate::AppState;
use crate::error::ApiError;
use trail_store::StoreError;

pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Ready when the store answers and its writes are not failing: 503 saying why otherwise
/// ("not ready: writes are failing: database or disk is full"), until a write commits.
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    state.store.health().await.map_err(|e| match e {
        StoreError::Unavailable(why) => ApiError::NotReady(why),
        other => ApiError::NotReady(other.to_string()),
    })?;
    Ok(Json(json!({"status": "ready"})))
}

pub async fn metrics() -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::metrics::handle().render(),
    )
}

pub async fn openapi() -> Json<Value> {
    Json(crate::openapi::document())
}
