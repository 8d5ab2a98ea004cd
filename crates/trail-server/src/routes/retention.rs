//! Retention settings: an org's retention and legal hold, and the platform's maximum
//! (`crate::retention` prunes by them). Every change is a domain event in the org's log (the
//! platform org's, for the maximum), written in the transaction that makes it.

use axum::Json;
use axum::extract::{Extension, Path, State};
use serde::{Deserialize, Serialize};
use serde_json::json;
use trail_core::event::{CanonicalJson, Object};
use utoipa::ToSchema;

use super::json_body as body;
use super::manage::domain_event;
use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::retention::{DEFAULT_DAYS, MAX_DAYS_SETTING, effective_days, max_days};

/// An org's retention.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetentionView {
    /// Days an event is kept once its week's archive is stored.
    pub retention_days: u32,
    /// Whether that is the platform's default (the org set none).
    pub default: bool,
    /// The longest retention the platform allows.
    pub max_retention_days: u32,
    /// Nothing is pruned while this is on.
    pub legal_hold: bool,
    /// Seqs below this were pruned (0: none); their weekly archives hold them.
    pub pruned_below: u64,
}

async fn view(state: &AppState, org: &str) -> Result<RetentionView, ApiError> {
    let r = state.store.retention(org).await?;
    let max = max_days(&*state.store).await?;
    Ok(RetentionView {
        retention_days: effective_days(&r, max),
        default: r.days.is_none(),
        max_retention_days: max,
        legal_hold: r.legal_hold,
        pruned_below: r.pruned_below,
    })
}

/// `GET /v1/orgs/{org}/retention`.
#[utoipa::path(
    get,
    path = "/v1/orgs/{org}/retention",
    operation_id = "getRetention",
    params(("org" = String, Path, description = "The org's id")),
    responses((status = 200, description = "The org's retention and legal hold", body = RetentionView)),
)]
pub async fn get(
    State(state): State<AppState>,
    Path(org): Path<String>,
) -> Result<Json<RetentionView>, ApiError> {
    Ok(Json(view(&state, &org).await?))
}

/// A change of an org's retention; what is left out stays as it is.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RetentionChange {
    /// Days to keep events, at least 1 and at most the platform's maximum; null: back to the
    /// default (365).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u32>, minimum = 1)]
    retention_days: Option<Option<u32>>,
    /// Put the org under legal hold (nothing is pruned), or release it.
    legal_hold: Option<bool>,
}

/// A field that is there, null or not: `Some(None)` for null, `None` (the default) when absent.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<u32>>, D::Error> {
    Ok(Some(Option::deserialize(d)?))
}

/// `PUT /v1/orgs/{org}/retention`.
#[utoipa::path(
    put,
    path = "/v1/orgs/{org}/retention",
    operation_id = "setRetention",
    params(("org" = String, Path, description = "The org's id")),
    request_body = RetentionChange,
    responses((status = 200, description = "The org's retention, changed", body = RetentionView)),
)]
pub async fn set(
    State(state): State<AppState>,
    Path(org): Path<String>,
    Extension(caller): Extension<Caller>,
    bytes: axum::body::Bytes,
) -> Result<Json<RetentionView>, ApiError> {
    let req: RetentionChange = body(&bytes)?;
    let max = max_days(&*state.store).await?;
    if let Some(Some(days)) = req.retention_days
        && !(1..=max).contains(&days)
    {
        return Err(ApiError::BadRequest(format!(
            "retentionDays: {days} is not between 1 and the platform's maximum, {max}"
        )));
    }
    if req.retention_days.is_none() && req.legal_hold.is_none() {
        return Err(ApiError::BadRequest(
            "nothing to change: give retentionDays, legalHold or both".into(),
        ));
    }
    let before = state.store.retention(&org).await?;
    let mut said = Vec::new();
    if let Some(days) = req.retention_days {
        said.push(match days {
            Some(d) => format!("retention set to {d} days"),
            None => format!("retention set back to the default, {DEFAULT_DAYS} days"),
        });
    }
    match req.legal_hold {
        Some(true) if !before.legal_hold => {
            said.push("legal hold placed: nothing is pruned".into())
        }
        Some(false) if before.legal_hold => said.push("legal hold released".into()),
        _ => {}
    }
    let event = domain_event(
        &caller,
        "updated",
        Object::new(
            "retention".into(),
            Some(CanonicalJson::from_value(&json!({"org": org}))),
            None,
        ),
        "UPDATE",
        if said.is_empty() {
            "retention unchanged".into()
        } else {
            said.join("; ")
        },
        json!({
            "retentionDays": req.retention_days.map(|d| d.map_or(json!(null), |d| json!(d))),
            "legalHold": req.legal_hold,
            "before": {"retentionDays": before.days, "legalHold": before.legal_hold},
        }),
    );
    state
        .store
        .set_retention(
            &org,
            req.retention_days,
            req.legal_hold,
            vec![(org.clone(), event)],
        )
        .await?;
    Ok(Json(view(&state, &org).await?))
}

/// The platform's retention policy.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlatformRetention {
    /// What an org keeps unless its owners set otherwise.
    pub default_days: u32,
    /// The longest retention an org may set.
    pub max_days: u32,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PlatformRetentionChange {
    /// The longest retention an org may set, in days (at least the default, 365).
    #[schema(minimum = 365)]
    max_days: u32,
}

/// `GET /v1/retention`.
#[utoipa::path(
    get,
    path = "/v1/retention",
    operation_id = "getPlatformRetention",
    responses((status = 200, description = "The platform's retention policy", body = PlatformRetention)),
)]
pub async fn platform(State(state): State<AppState>) -> Result<Json<PlatformRetention>, ApiError> {
    Ok(Json(PlatformRetention {
        default_days: DEFAULT_DAYS,
        max_days: max_days(&*state.store).await?,
    }))
}

/// `PUT /v1/retention`.
#[utoipa::path(
    put,
    path = "/v1/retention",
    operation_id = "setPlatformRetention",
    request_body = PlatformRetentionChange,
    responses((status = 200, description = "The platform's retention policy, changed", body = PlatformRetention)),
)]
pub async fn set_platform(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    bytes: axum::body::Bytes,
) -> Result<Json<PlatformRetention>, ApiError> {
    let req: PlatformRetentionChange = body(&bytes)?;
    if !(DEFAULT_DAYS..=100 * 366).contains(&req.max_days) {
        return Err(ApiError::BadRequest(format!(
            "maxDays: {} is not between the default, {DEFAULT_DAYS}, and 36600",
            req.max_days
        )));
    }
    let before = max_days(&*state.store).await?;
    let event = domain_event(
        &caller,
        "updated",
        Object::new(
            "retention_policy".into(),
            Some(CanonicalJson::from_value(&json!("platform"))),
            None,
        ),
        "UPDATE",
        format!(
            "the longest retention an org may set changed from {before} to {} days",
            req.max_days
        ),
        json!({"maxDays": req.max_days, "before": before}),
    );
    state
        .store
        .set_setting(
            MAX_DAYS_SETTING,
            &req.max_days.to_string(),
            vec![(state.platform_org.clone(), event)],
        )
        .await?;
    Ok(Json(PlatformRetention {
        default_days: DEFAULT_DAYS,
        max_days: req.max_days,
    }))
}
