//! Ingest and read the log.

use axum::Json;
use axum::body::Body;
use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::{HeaderMap, header::CONTENT_TYPE};
use serde_json::{Value, json};
use trail_core::query::{Field, Matcher, QueryError};
use trail_core::{Cursor, EventBody, Filter, Timestamp};
use trail_store::{EventQuery, Outcome};

use crate::AppState;
use crate::auth::{ActingOn, Caller};
use crate::error::ApiError;

/// The largest ingest body, in bytes.
pub const MAX_BODY: usize = 16 << 20;
/// The most events in one ingest batch.
pub const MAX_BATCH: usize = 10_000;
pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;

pub async fn ingest(
    State(state): State<AppState>,
    Path(org): Path<String>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let bytes = axum::body::to_bytes(body, MAX_BODY).await.map_err(|e| {
        if std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
        {
            ApiError::PayloadTooLarge(format!("the body is larger than {MAX_BODY} bytes"))
        } else {
            ApiError::BadRequest(format!("could not read the body: {e}"))
        }
    })?;
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    let items = parse_batch(&bytes, content_type.as_deref())?;
    if items.is_empty() {
        return Err(ApiError::BadRequest("the batch holds no events".into()));
    }
    if items.len() > MAX_BATCH {
        return Err(ApiError::PayloadTooLarge(format!(
            "the batch holds {} events; the limit is {MAX_BATCH}",
            items.len()
        )));
    }

    let now = crate::now();
    let mut valid: Vec<(usize, EventBody)> = Vec::with_capacity(items.len());
    let mut errors = Vec::new();
    let error = |index: usize, field: Option<&str>, detail: String| json!({"index": index, "field": field, "detail": detail});
    for (index, item) in items.into_iter().enumerate() {
        let body = item.and_then(|v| {
            let mut body = EventBody::from_json(v, &org)?;
            body.check_clock(now)?;
            // Provenance: whatever the event says of itself, it came through this credential.
            body.submitted_by = Some(caller.credential_id.clone());
            if let Some(only) = &caller.instance
                && body.instance.as_ref() != Some(only)
            {
                return Err(ItemError {
                    field: Some("instance".into()),
                    detail: format!(
                        "instance: this credential writes events of instance {only:?} only"
                    ),
                });
            }
            Ok(body)
        });
        match body {
            Ok(body) => valid.push((index, body)),
            Err(e) => errors.push(error(index, e.field.as_deref(), e.detail)),
        }
    }
    if valid.is_empty() {
        return Err(ApiError::Unprocessable {
            detail: format!("none of the {} events is valid; see errors", errors.len()),
            errors: Value::Array(errors),
        });
    }
    let (indexes, bodies): (Vec<usize>, Vec<EventBody>) = valid.into_iter().unzip();
    let appended = state.store.append(&org, bodies).await?;
    let (mut accepted, mut duplicates) = (0, 0);
    let mut items = Vec::with_capacity(appended.len());
    for (index, a) in indexes.into_iter().zip(&appended) {
        match a.outcome {
            Outcome::Conflict => {
                errors.push(error(
                    index,
                    Some("id"),
                    format!(
                        "id {:?} was already used for a different event (seq {}); use a new id for a new event",
                        a.id, a.seq
                    ),
                ));
                continue;
            }
            Outcome::Created => accepted += 1,
            Outcome::Duplicate => duplicates += 1,
        }
        items.push(json!({
            "index": index,
            "id": a.id,
            "seq": a.seq,
            "hash": hex::encode(a.hash),
            "receivedAt": a.received_at.to_string(),
            "duplicate": a.outcome == Outcome::Duplicate,
        }));
    }
    errors.sort_by_key(|e| e["index"].as_u64());
    metrics::counter!("trail_events_ingested_total").increment(accepted as u64);
    Ok(Json(json!({
        "accepted": accepted,
        "duplicates": duplicates,
        "rejected": errors.len(),
        "items": items,
        "errors": errors,
    })))
}

/// One element of a batch, or why it could not be read.
type Item = Result<Value, ItemError>;

/// Why one element of a batch was refused.
struct ItemError {
    field: Option<String>,
    detail: String,
}

impl From<trail_core::ValidationError> for ItemError {
    fn from(e: trail_core::ValidationError) -> Self {
        ItemError {
            detail: e.to_string(),
            field: Some(e.field),
        }
    }
}

/// A JSON array, one JSON object, or NDJSON, by content type; without one, a body that is one
/// JSON value is JSON and anything else NDJSON. A malformed NDJSON line is that event's error;
/// a malformed JSON body is the batch's.
fn parse_batch(bytes: &[u8], content_type: Option<&str>) -> Result<Vec<Item>, ApiError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| ApiError::BadRequest(format!("the body is not UTF-8: {e}")))?;
    let ndjson = match content_type {
        Some(
            "application/x-ndjson"
            | "application/ndjson"
            | "application/jsonl"
            | "application/x-jsonlines",
        ) => true,
        Some("application/json") => false,
        None => serde_json::from_str::<serde::de::IgnoredAny>(text).is_err(),
        Some(other) => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "content type {other:?} is not accepted: send application/json (an array of events) or application/x-ndjson (one event a line)"
            )));
        }
    };
    if ndjson {
        return Ok(text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, line)| {
                serde_json::from_str(line).map_err(|e| ItemError {
                    field: None,
                    detail: format!("line {}: not JSON: {e}", i + 1),
                })
            })
            .collect());
    }
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Array(items)) => Ok(items.into_iter().map(Ok).collect()),
        Ok(v @ Value::Object(_)) => Ok(vec![Ok(v)]),
        Ok(_) => Err(ApiError::BadRequest(
            "the body must be a JSON array of events, one event object, or NDJSON".into(),
        )),
        Err(e) => Err(ApiError::BadRequest(format!(
            "the body is not valid JSON: {e}"
        ))),
    }
}

/// What a list call asks for, read from its query string.
pub(crate) struct ListParams {
    pub filter: Filter,
    cursor: Option<Cursor>,
    limit: usize,
}

pub(crate) fn list_params(raw: Option<&str>, now: Timestamp) -> Result<ListParams, ApiError> {
    let mut p = ListParams {
        filter: Filter::default(),
        cursor: None,
        limit: DEFAULT_LIMIT,
    };
    let bad = |e: QueryError| ApiError::BadRequest(e.to_string());
    for (key, value) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        match &*key {
            "q" => p.filter.add_query(&value, now).map_err(bad)?,
            "limit" => {
                p.limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        ApiError::BadRequest(format!(
                            "limit: {value:?} is not a number from 1 to {MAX_LIMIT}"
                        ))
                    })?
            }
            "cursor" => p.cursor = Some(Cursor::decode(&value).map_err(bad)?),
            key => p.filter.add(key, &value, false, now).map_err(|e| match e {
                QueryError::UnknownKey(k) => ApiError::BadRequest(format!(
                    "unknown parameter {k:?} (known: q, limit, cursor, actor, actorType, action, category, objectType, objectKind, objectName, route, method, status, instance, tokenId, ip, since, until)"
                )),
                other => bad(other),
            })?,
        }
    }
    Ok(p)
}

async fn list_org(
    state: &AppState,
    org: &str,
    params: ListParams,
) -> Result<Json<Value>, ApiError> {
    let page = state
        .store
        .query(
            org,
            &EventQuery {
                filter: params.filter,
                cursor: params.cursor,
                limit: params.limit,
            },
        )
        .await?;
    let items: Vec<Value> = page
        .items
        .iter()
        .map(|s| serde_json::to_value(s.event.record(&s.hash)).expect("records serialize"))
        .collect();
    Ok(Json(json!({
        "items": items,
        "nextCursor": page.next.map(|c| c.encode()),
    })))
}

pub async fn list(
    State(state): State<AppState>,
    Path(org): Path<String>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let mut params = list_params(raw.as_deref(), crate::now())?;
    if let Some(only) = &caller.instance {
        restrict_to_instance(&mut params, &org, only)?;
    }
    list_org(&state, &org, params).await
}

pub async fn list_instance(
    State(state): State<AppState>,
    Path((org, instance)): Path<(String, String)>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    if caller
        .instance
        .as_ref()
        .is_some_and(|only| *only != instance)
    {
        return Err(ApiError::Forbidden(format!(
            "this credential reads instance {:?} only",
            caller.instance.as_deref().unwrap_or_default()
        )));
    }
    let mut params = list_params(raw.as_deref(), crate::now())?;
    restrict_to_instance(&mut params, &org, &instance)?;
    list_org(&state, &org, params).await
}

/// Narrows a read to one instance's events. Another instance named in the filter would
/// widen it (alternatives on one key are OR-ed), so it is refused.
pub(crate) fn restrict_to_instance(
    params: &mut ListParams,
    org: &str,
    instance: &str,
) -> Result<(), ApiError> {
    let widens = params.filter.terms.iter().any(|t| {
        t.field == Field::Instance && !t.negated && t.matcher != Matcher::Text(instance.to_owned())
    });
    if widens {
        return Err(ApiError::BadRequest(format!(
            "this read covers instance {instance:?} only; use /v1/orgs/{org}/audit-logs with a credential for the whole org to filter by other instances"
        )));
    }
    params
        .filter
        .add("instance", instance, false, crate::now())
        .map_err(|e| ApiError::BadRequest(e.to_string()))
}

pub async fn list_caller_org(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(ActingOn(org)): Extension<ActingOn>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let mut params = list_params(raw.as_deref(), crate::now())?;
    if let Some(only) = &caller.instance {
        restrict_to_instance(&mut params, &org, only)?;
    }
    list_org(&state, &org, params).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_formats() {
        let ok = |b: &str, ct: Option<&str>| parse_batch(b.as_bytes(), ct).unwrap().len();
        assert_eq!(ok(r#"[{"a":1},{"a":2}]"#, Some("application/json")), 2);
        assert_eq!(ok(r#"{"a":1}"#, Some("application/json")), 1);
        assert_eq!(
            ok("{\"a\":1}\n\n{\"a\":2}\n", Some("application/x-ndjson")),
            2
        );
        assert_eq!(ok("{\"a\":1}\n{\"a\":2}", None), 2);
        assert_eq!(
            ok("{\n  \"a\": 1\n}\n", None),
            1,
            "one pretty-printed object"
        );
        assert_eq!(ok(r#"[{"a":1}]"#, None), 1);
        let lines = parse_batch(b"{\"a\":1}\n\n{oops\n", Some("application/x-ndjson")).unwrap();
        assert!(lines[0].is_ok());
        let err = lines[1].as_ref().err().unwrap();
        assert!(err.detail.starts_with("line 3: not JSON"), "{}", err.detail);
        for (body, ct) in [
            ("[1,", Some("application/json")),
            ("42", Some("application/json")),
        ] {
            assert!(matches!(
                parse_batch(body.as_bytes(), ct),
                Err(ApiError::BadRequest(_))
            ));
        }
        assert!(matches!(
            parse_batch(b"x", Some("text/csv")),
            Err(ApiError::UnsupportedMediaType(_))
        ));
        assert!(matches!(
            parse_batch(&[0xff], None),
            Err(ApiError::BadRequest(_))
        ));
    }

    #[test]
    fn list_parameters() {
        let now = Timestamp(1_000_000_000_000_000);
        let p = list_params(
            Some("actor=alice&actor=bob&status=5xx&limit=5&q=-action%3Aread"),
            now,
        )
        .unwrap();
        assert_eq!(p.filter.terms.len(), 4);
        assert_eq!(p.limit, 5);
        for (q, want) in [
            ("limit=0", "limit:"),
            ("limit=5000", "limit:"),
            ("cursor=zzz", "bad cursor"),
            ("since=tomorrow", "since:"),
            ("colour=red", "unknown parameter \"colour\""),
            ("q=actor%3A", "needs a value"),
        ] {
            let err = list_params(Some(q), now).err().unwrap().to_string();
            assert!(err.contains(want), "{q}: {err}");
        }
    }
}
