//! Ingest and read the log.

use axum::Json;
use axum::body::Body;
use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header::CONTENT_TYPE};
use serde::Serialize;
use serde_json::value::RawValue;
use trail_core::batch;
use trail_core::query::{Field, Matcher, QueryError};
use trail_core::{Cursor, EventBody, Filter, Timestamp};
use trail_record::CallContext;
use trail_store::{EventQuery, Outcome};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::auth::{ActingOn, Caller};
use crate::error::ApiError;
use crate::openapi::{Conflict, NotFound, Unsupported};

/// The largest ingest body, in bytes.
pub const MAX_BODY: usize = 16 << 20;
pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;
/// The most bytes of items in one page of any list: a page ends early (with its cursor to
/// the rest) rather than grow past it.
pub const MAX_PAGE_BYTES: usize = 4 << 20;

/// The items of a page, serialized one by one until the next would pass
/// [`MAX_PAGE_BYTES`] (the first is always kept, so a page always moves on).
pub(crate) fn bounded_page<T: serde::Serialize>(
    items: impl IntoIterator<Item = T>,
) -> Vec<Box<serde_json::value::RawValue>> {
    let mut out = Vec::new();
    let mut bytes = 0;
    for item in items {
        let raw = serde_json::value::to_raw_value(&item).expect("records serialize");
        bytes += raw.get().len() + 1;
        if bytes > MAX_PAGE_BYTES && !out.is_empty() {
            break;
        }
        out.push(raw);
    }
    out
}

/// The validated `limit` of a list: 1 to `max`, `default` when absent.
pub(crate) fn limit_param(
    value: Option<&str>,
    default: usize,
    max: usize,
) -> Result<usize, ApiError> {
    let Some(value) = value else {
        return Ok(default);
    };
    value
        .parse()
        .ok()
        .filter(|n| (1..=max).contains(n))
        .ok_or_else(|| {
            ApiError::BadRequest(format!("limit: {value:?} is not a number from 1 to {max}"))
        })
}

/// A yes-or-no parameter: `true` or `false` (`1` or `0`).
pub(crate) fn flag(name: &str, value: &str) -> Result<bool, ApiError> {
    match value {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        other => Err(ApiError::BadRequest(format!(
            "{name}: {other:?} is not true or false"
        ))),
    }
}

/// Why one event of a batch was refused.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventError {
    /// Its position in the batch, from 0.
    pub index: usize,
    /// The field at fault (a dotted path), when one is.
    pub field: Option<String>,
    pub detail: String,
}

/// One stored (or already stored) event of a batch.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Ingested {
    pub index: usize,
    pub id: String,
    pub seq: u64,
    /// Its leaf hash, hex.
    pub hash: String,
    #[schema(format = DateTime)]
    pub received_at: String,
    /// Sent before by the same credential: not stored again.
    pub duplicate: bool,
}

/// The answer to a batch: what was stored and what was refused, by index.
#[derive(Debug, Serialize, ToSchema)]
pub struct IngestResult {
    pub accepted: usize,
    pub duplicates: usize,
    pub rejected: usize,
    pub items: Vec<Ingested>,
    pub errors: Vec<EventError>,
    /// The log's signed checkpoint that covers every stored event of the batch, written in
    /// the transaction that stored them (zero merge delay). Null only for a log the server
    /// refuses to sign because it failed its integrity check.
    pub checkpoint: Option<crate::log::CheckpointView>,
}

/// A page of events, newest first.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventPage {
    #[schema(value_type = Vec<trail_core::event::EventRecord>)]
    pub items: Vec<Box<RawValue>>,
    /// Where the next page starts; null on the last.
    pub next_cursor: Option<String>,
}

/// The filters and paging of the audit-log reads (parsed by [`list_params`]).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ListQuery {
    /// Actor id. Repeat a filter for alternatives.
    actor: Option<Vec<String>>,
    /// `user`, `pat`, `api_key`, `break_glass`, `system`, or another kind: lowercase letters, digits, `_`, `-` and `.`, 1 to 64 characters.
    #[param(rename = "actorType")]
    actor_type: Option<Vec<String>>,
    action: Option<Vec<String>>,
    /// `app`, `api`, `system`, ...
    category: Option<Vec<String>>,
    #[param(rename = "objectType")]
    object_type: Option<Vec<String>>,
    /// `object.id.kind`.
    #[param(rename = "objectKind")]
    object_kind: Option<Vec<String>>,
    /// `object.id.name` (or `object.id` when it is a string).
    #[param(rename = "objectName")]
    object_name: Option<Vec<String>>,
    /// A route template, `GET /v1/tenants/:id`; a path alone for any method.
    route: Option<Vec<String>>,
    /// The HTTP method of a recorded call.
    method: Option<Vec<String>>,
    /// A status code (`404`) or class (`5xx`).
    status: Option<Vec<String>>,
    instance: Option<Vec<String>>,
    /// The credential id of the actor.
    #[param(rename = "tokenId")]
    token_id: Option<Vec<String>>,
    /// The client IP address.
    ip: Option<Vec<String>>,
    /// RFC 3339, or a duration back from now: `30s`, `5m`, `1h`, `7d`, `2w`. Inclusive. On the export: where the first call starts, by time of receipt (without it: from now on).
    since: Option<String>,
    /// RFC 3339, or a duration back from now. Exclusive. Not on the export, which follows the log as it grows.
    until: Option<String>,
    /// A query: `actor:alice action:deleted route:"GET /v1/tenants/:id" -status:200`. Terms on one key are alternatives, different keys must all hold, `-` excludes.
    q: Option<String>,
    #[param(minimum = 1, maximum = 1000, default = 100)]
    limit: Option<u32>,
    /// The `nextCursor` of the previous page (on the export: its `cursor`).
    cursor: Option<String>,
    /// The collapsed view: runs of identical events (same actor, action, object and details, received within 60 s of the run's first) as one record, with `count`, `lastOccurredTimestamp` and the `seqs` it folds. Stored events are never merged. On the export, a run is returned once, when it is closed.
    collapse: Option<bool>,
}

#[utoipa::path(
    post,
    path = "/v1/orgs/{org}/events",
    operation_id = "ingestEvents",
    params(("org" = String, Path, description = "The org's id")),
    request_body(
        description = "At most 10,000 events and 16 MiB: a JSON array, one object, or NDJSON. An event `id` makes retries idempotent.",
        content(
            (Vec<trail_core::event::EventInput> = "application/json"),
            (trail_core::event::EventInput = "application/x-ndjson"),
        ),
    ),
    responses(
        (status = 200, description = "Stored: each event's seq and hash; invalid ones refused by index", body = IngestResult),
        (status = 422, description = "No event of the batch is valid; `errors` says why, by index", body = crate::error::Problem, content_type = "application/problem+json"),
        NotFound, Conflict, Unsupported,
    ),
)]
pub async fn ingest(
    State(state): State<AppState>,
    Path(org): Path<String>,
    Extension(caller): Extension<Caller>,
    call: Option<Extension<CallContext>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<IngestResult>, ApiError> {
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
    let items = batch::split(&bytes, batch_format(content_type.as_deref())?)?;
    if items.is_empty() {
        return Err(ApiError::BadRequest("the batch holds no events".into()));
    }

    let now = crate::now();
    let mut valid: Vec<(usize, EventBody)> = Vec::with_capacity(items.len());
    let mut errors = Vec::new();
    let error = |index: usize, field: Option<&str>, detail: String| EventError {
        index,
        field: field.map(str::to_owned),
        detail,
    };
    for (index, item) in items.into_iter().enumerate() {
        let body = item.map_err(ItemError::unreadable).and_then(|text| {
            let mut body = EventBody::from_json_str(text, &org)?;
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
            errors: serde_json::to_value(errors).expect("errors serialize"),
        });
    }
    let (indexes, mut bodies): (Vec<usize>, Vec<EventBody>) = valid.into_iter().unzip();
    // This call's own record goes into the org's log with the batch, in its transaction:
    // one commit and one sync before the answer instead of two, and the checkpoint in the
    // answer covers the record too. Only if the batch is stored does the layer leave it.
    let record = call
        .as_ref()
        .and_then(|Extension(call)| call.record_for(StatusCode::OK))
        .filter(|r| r.org.as_deref() == Some(org.as_str()));
    let with_record = record.is_some();
    bodies.extend(record.map(|r| r.event));
    let mut appended = state.store.append_signed(&org, bodies).await?;
    if with_record {
        appended.items.pop();
        if let Some(Extension(call)) = &call {
            call.recorded();
        }
    }
    let (mut accepted, mut duplicates) = (0, 0);
    let mut items = Vec::with_capacity(appended.items.len());
    for (index, a) in indexes.into_iter().zip(&appended.items) {
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
        items.push(Ingested {
            index,
            id: a.id.clone(),
            seq: a.seq,
            hash: hex::encode(a.hash),
            received_at: a.received_at.to_string(),
            duplicate: a.outcome == Outcome::Duplicate,
        });
    }
    errors.sort_by_key(|e| e.index);
    metrics::counter!("trail_events_ingested_total").increment(accepted as u64);
    Ok(Json(IngestResult {
        accepted,
        duplicates,
        rejected: errors.len(),
        items,
        errors,
        checkpoint: appended.checkpoint.map(Into::into),
    }))
}

/// The layout of an ingest body, by its content type.
fn batch_format(content_type: Option<&str>) -> Result<batch::Format, ApiError> {
    match content_type {
        Some(
            "application/x-ndjson"
            | "application/ndjson"
            | "application/jsonl"
            | "application/x-jsonlines",
        ) => Ok(batch::Format::Ndjson),
        Some("application/json") => Ok(batch::Format::Json),
        None => Ok(batch::Format::Sniff),
        Some(other) => Err(ApiError::UnsupportedMediaType(format!(
            "content type {other:?} is not accepted: send application/json (an array of events) or application/x-ndjson (one event a line)"
        ))),
    }
}

impl From<batch::BatchError> for ApiError {
    fn from(e: batch::BatchError) -> Self {
        match e {
            batch::BatchError::TooMany => ApiError::PayloadTooLarge(e.to_string()),
            _ => ApiError::BadRequest(e.to_string()),
        }
    }
}

/// Why one element of a batch was refused.
struct ItemError {
    field: Option<String>,
    detail: String,
}

impl ItemError {
    /// An element that could not be read as an event at all.
    fn unreadable(detail: String) -> Self {
        ItemError {
            field: None,
            detail,
        }
    }
}

impl From<trail_core::event::TextError> for ItemError {
    fn from(e: trail_core::event::TextError) -> Self {
        match e {
            trail_core::event::TextError::NotJson(e) => ItemError {
                field: None,
                detail: format!("not JSON: {e}"),
            },
            trail_core::event::TextError::Invalid(e) => e.into(),
        }
    }
}

impl From<trail_core::ValidationError> for ItemError {
    fn from(e: trail_core::ValidationError) -> Self {
        ItemError {
            detail: e.to_string(),
            field: Some(e.field),
        }
    }
}

/// What a list call asks for, read from its query string.
pub struct ListParams {
    pub filter: Filter,
    cursor: Option<Cursor>,
    limit: usize,
    /// The collapsed view: runs of identical events as one record each.
    pub collapse: bool,
}

pub fn list_params(raw: Option<&str>, now: Timestamp) -> Result<ListParams, ApiError> {
    let mut p = ListParams {
        filter: Filter::default(),
        cursor: None,
        limit: DEFAULT_LIMIT,
        collapse: false,
    };
    let bad = |e: QueryError| ApiError::BadRequest(e.to_string());
    for (key, value) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        match &*key {
            "q" => p.filter.add_query(&value, now).map_err(bad)?,
            "limit" => p.limit = limit_param(Some(&value), DEFAULT_LIMIT, MAX_LIMIT)?,
            "cursor" => p.cursor = Some(Cursor::decode(&value).map_err(bad)?),
            "collapse" => p.collapse = flag("collapse", &value)?,
            key => p.filter.add(key, &value, false, now).map_err(|e| match e {
                QueryError::UnknownKey(k) => ApiError::BadRequest(format!(
                    "unknown parameter {k:?} (known: q, limit, cursor, collapse, actor, actorType, action, category, objectType, objectKind, objectName, route, method, status, instance, tokenId, ip, since, until)"
                )),
                other => bad(other),
            })?,
        }
    }
    Ok(p)
}

impl ListParams {
    /// The store's read of one page.
    pub fn page_query(self) -> EventQuery {
        EventQuery {
            filter: self.filter,
            cursor: self.cursor,
            limit: self.limit,
        }
    }
}

async fn list_org(
    state: &AppState,
    org: &str,
    params: ListParams,
) -> Result<Json<EventPage>, ApiError> {
    if params.collapse {
        return list_collapsed(state, org, params).await;
    }
    let page = state.store.query(org, &params.page_query()).await?;
    let items = bounded_page(page.items.iter().map(|s| s.event.record(&s.hash)));
    let next = if items.len() < page.items.len() {
        Some(position(&page.items[items.len() - 1]))
    } else {
        page.next
    };
    Ok(Json(EventPage {
        items,
        next_cursor: next.map(|c| c.encode()),
    }))
}

fn position(s: &trail_store::StoredEvent) -> Cursor {
    Cursor {
        timestamp: s.event.timestamp,
        seq: s.event.seq,
    }
}

/// The collapsed list: events are read page by page, newest first, until `limit` runs are
/// whole (a run ends at the first event that does not join it), so a run is not cut between
/// two pages unless it is longer than what one read may take; the cursor is the last event
/// of the last run returned.
async fn list_collapsed(
    state: &AppState,
    org: &str,
    params: ListParams,
) -> Result<Json<EventPage>, ApiError> {
    use trail_core::collapse::{self, MAX_RUN};
    let mut events: Vec<trail_store::StoredEvent> = Vec::new();
    let mut cursor = params.cursor;
    let mut runs;
    loop {
        // As much as may be needed at once: `limit` runs, and a whole run after them.
        let page = state
            .store
            .query(
                org,
                &EventQuery {
                    filter: params.filter.clone(),
                    cursor,
                    limit: params.limit + MAX_RUN - events.len(),
                },
            )
            .await?;
        events.extend(page.items);
        cursor = page.next;
        let refs: Vec<&trail_core::Event> = events.iter().map(|s| &s.event).collect();
        runs = collapse::runs(&refs);
        if cursor.is_none() || runs.len() > params.limit || events.len() >= params.limit + MAX_RUN {
            break;
        }
    }
    // Runs past `limit` wait for the next page; so does the last run read when the read
    // stopped before the end and others are there to show, since it may go on past it.
    let whole = runs.len() > params.limit || (cursor.is_some() && runs.len() >= 2);
    if runs.len() > params.limit {
        runs.truncate(params.limit);
    } else if whole {
        runs.pop();
    }
    let records = runs.iter().map(|run| {
        let members: Vec<_> = events[run.clone()]
            .iter()
            .map(|s| (&s.event, &s.hash))
            .collect();
        collapse::record(&members)
    });
    let items = bounded_page(records);
    let next = if items.len() < runs.len() || whole {
        Some(position(&events[runs[items.len() - 1].end - 1]))
    } else {
        cursor.and(events.last().map(position))
    };
    Ok(Json(EventPage {
        items,
        next_cursor: next.map(|c| c.encode()),
    }))
}

#[utoipa::path(
    get,
    path = "/v1/orgs/{org}/audit-logs",
    operation_id = "listAuditLogs",
    params(("org" = String, Path, description = "The org's id"), ListQuery),
    responses((status = 200, description = "A page of events, newest first", body = EventPage)),
)]
pub async fn list(
    State(state): State<AppState>,
    Path(org): Path<String>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
) -> Result<Json<EventPage>, ApiError> {
    let mut params = list_params(raw.as_deref(), crate::now())?;
    if let Some(only) = &caller.instance {
        restrict_to_instance(&mut params, &org, only)?;
    }
    list_org(&state, &org, params).await
}

/// The list's filters of a read over the whole window (a histogram, a download): `own`
/// takes the parameters the read has of its own (answering whether it took one); paging
/// (`limit`, `cursor`) is refused, since such a read `what` every match; a credential
/// restricted to an instance reads that instance only.
pub(crate) fn whole_window(
    raw: Option<&str>,
    now: Timestamp,
    caller: &Caller,
    org: &str,
    what: &str,
    mut own: impl FnMut(&str, &str) -> Result<bool, ApiError>,
) -> Result<ListParams, ApiError> {
    let mut filters: Vec<(String, String)> = Vec::new();
    for (k, v) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        if own(&k, &v)? {
            continue;
        }
        if k == "limit" || k == "cursor" || k == "collapse" {
            return Err(ApiError::BadRequest(format!(
                "unknown parameter {k:?}: {what} every match"
            )));
        }
        filters.push((k.into_owned(), v.into_owned()));
    }
    let rest = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&filters)
        .finish();
    let mut params = list_params(Some(&rest), now)?;
    if let Some(only) = &caller.instance {
        restrict_to_instance(&mut params, org, only)?;
    }
    Ok(params)
}

/// How many events match, in each slice of the window.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Histogram {
    #[schema(format = DateTime)]
    pub since: String,
    #[schema(format = DateTime)]
    pub until: String,
    /// How long each slice is.
    pub bucket_seconds: f64,
    /// The slices, oldest first.
    pub buckets: Vec<Bucket>,
    /// Every match in the window.
    pub total: u64,
}

/// One slice of a [`Histogram`].
#[derive(Serialize, ToSchema)]
pub struct Bucket {
    /// Where the slice starts.
    #[schema(format = DateTime)]
    pub start: String,
    pub count: u64,
}

/// The window a histogram or `perf` sums over: `since` and `until`, 24 hours back and now
/// by default.
pub fn summed_window(
    since: Option<Timestamp>,
    until: Option<Timestamp>,
    now: Timestamp,
) -> Result<(Timestamp, Timestamp), ApiError> {
    let since = since.unwrap_or(Timestamp(now.micros() - 24 * 3600 * 1_000_000));
    let until = until.unwrap_or(now);
    if until <= since {
        return Err(ApiError::BadRequest("until must be after since".into()));
    }
    Ok((since, until))
}

/// The most slices a histogram has.
pub const MAX_BUCKETS: usize = 200;

/// The slices of a histogram that does not say.
pub const DEFAULT_BUCKETS: usize = 60;

/// `GET /v1/orgs/{org}/audit-logs/histogram`: the same filters as the list (`since` 24 h
/// back and `until` now by default), counted per slice: the shape of what matches over the
/// whole window, not only the page shown.
#[utoipa::path(
    get,
    path = "/v1/orgs/{org}/audit-logs/histogram",
    operation_id = "histogramAuditLogs",
    params(
        ("org" = String, Path, description = "The org's id"),
        ("buckets" = Option<usize>, Query, description = "At most how many slices: 1 to 200, 60 by default. A window of at least that many minutes is cut into slices of whole minutes, the first starting at the minute `since` falls in; only events from `since` on are counted"),
        ListQuery,
    ),
    responses((status = 200, description = "Matching events per slice of the window", body = Histogram)),
)]
pub async fn histogram(
    State(state): State<AppState>,
    Path(org): Path<String>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Histogram>, ApiError> {
    let mut buckets = DEFAULT_BUCKETS;
    let now = crate::now();
    let params = whole_window(
        raw.as_deref(),
        now,
        &caller,
        &org,
        "a histogram counts",
        |k, v| {
            if k != "buckets" {
                return Ok(false);
            }
            buckets = limit_param(Some(v), DEFAULT_BUCKETS, MAX_BUCKETS).map_err(|_| {
                ApiError::BadRequest(format!(
                    "buckets: {v:?} is not a number from 1 to {MAX_BUCKETS}"
                ))
            })?;
            Ok(true)
        },
    )?;
    let (since, until) = summed_window(params.filter.since, params.filter.until, now)?;
    let counts = state
        .store
        .histogram(&org, &params.filter, since, until, buckets)
        .await?;
    let layout = trail_core::histogram::Layout::new(since, until, buckets);
    Ok(Json(Histogram {
        since: since.to_string(),
        until: until.to_string(),
        bucket_seconds: layout.width_us as f64 / 1e6,
        total: counts.iter().sum(),
        buckets: counts
            .iter()
            .enumerate()
            .map(|(i, n)| Bucket {
                start: layout.start(i).to_string(),
                count: *n,
            })
            .collect(),
    }))
}

/// How many events each read of a download takes from the store.
const DOWNLOAD_PAGE: usize = 1000;

/// `GET /v1/orgs/{org}/audit-logs/download?format=csv|ndjson`: every event that passes the
/// list's filters, newest first, as a file, streamed page by page (never held whole). CSV
/// cells that a spreadsheet would take for a formula are written as text.
#[utoipa::path(
    get,
    path = "/v1/orgs/{org}/audit-logs/download",
    operation_id = "downloadAuditLogs",
    params(
        ("org" = String, Path, description = "The org's id"),
        ("format" = Option<String>, Query, description = "`csv` (the default) or `ndjson`"),
        ListQuery,
    ),
    responses(
        (status = 200, description = "The matching events, newest first", content(
            (String = "text/csv"),
            (String = "application/x-ndjson"),
        )),
    ),
)]
pub async fn download(
    State(state): State<AppState>,
    Path(org): Path<String>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
) -> Result<axum::response::Response, ApiError> {
    let mut csv = true;
    let params = whole_window(
        raw.as_deref(),
        crate::now(),
        &caller,
        &org,
        "a download holds",
        |k, v| {
            if k != "format" {
                return Ok(false);
            }
            csv = match v {
                "csv" => true,
                "ndjson" => false,
                other => {
                    return Err(ApiError::BadRequest(format!(
                        "format: {other:?} is not csv or ndjson"
                    )));
                }
            };
            Ok(true)
        },
    )?;
    // The first page is read before answering, so a store that cannot serve it gets a
    // problem, not a broken file.
    let query = |cursor| EventQuery {
        filter: params.filter.clone(),
        cursor,
        limit: DOWNLOAD_PAGE,
    };
    let first = state.store.query(&org, &query(None)).await?;
    let render = move |page: &trail_store::EventPage, header: bool| -> bytes::Bytes {
        let records: Vec<_> = page.items.iter().map(|s| s.event.record(&s.hash)).collect();
        if csv {
            trail_core::export::csv_text(records.iter(), header).into()
        } else {
            let mut out = Vec::new();
            for r in &records {
                serde_json::to_writer(&mut out, r).expect("records serialize");
                out.push(b'\n');
            }
            out.into()
        }
    };
    let head = render(&first, true);
    let store = state.store.clone();
    let filter = params.filter.clone();
    let rest = futures_util::stream::unfold(first.next, move |cursor| {
        let (store, org, filter) = (store.clone(), org.clone(), filter.clone());
        async move {
            let cursor = cursor?;
            let q = EventQuery {
                filter,
                cursor: Some(cursor),
                limit: DOWNLOAD_PAGE,
            };
            match store.query(&org, &q).await {
                Ok(page) => Some((Ok::<_, std::io::Error>(render(&page, false)), page.next)),
                // The file ends short; the client sees the connection end without the
                // chunked body's last chunk, never a silently complete file.
                Err(e) => Some((Err(std::io::Error::other(e.to_string())), None)),
            }
        }
    });
    let body = futures_util::StreamExt::chain(
        futures_util::stream::once(async move { Ok::<_, std::io::Error>(head) }),
        rest,
    );
    let (mime, ext) = if csv {
        ("text/csv; charset=utf-8", "csv")
    } else {
        ("application/x-ndjson", "ndjson")
    };
    Ok(axum::response::Response::builder()
        .header(CONTENT_TYPE, mime)
        .header(
            axum::http::header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"audit-logs.{ext}\""),
        )
        .body(Body::from_stream(body))
        .expect("a valid response"))
}

#[utoipa::path(
    get,
    path = "/v1/orgs/{org}/instances/{instance}/audit-logs",
    operation_id = "listInstanceAuditLogs",
    params(
        ("org" = String, Path, description = "The org's id"),
        ("instance" = String, Path, description = "The instance's id"),
        ListQuery,
    ),
    responses((status = 200, description = "A page of the instance's events, newest first", body = EventPage)),
)]
pub async fn list_instance(
    State(state): State<AppState>,
    Path((org, instance)): Path<(String, String)>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
) -> Result<Json<EventPage>, ApiError> {
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

#[utoipa::path(
    get,
    path = "/v1/audit-log",
    operation_id = "listCallerAuditLog",
    params(ListQuery),
    responses((status = 200, description = "A page of events of the credential's org, newest first", body = EventPage)),
)]
pub async fn list_caller_org(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(ActingOn(org)): Extension<ActingOn>,
    RawQuery(raw): RawQuery,
) -> Result<Json<EventPage>, ApiError> {
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
    fn content_types_choose_the_layout() {
        assert_eq!(
            batch_format(Some("application/x-ndjson")).ok(),
            Some(batch::Format::Ndjson)
        );
        assert_eq!(
            batch_format(Some("application/json")).ok(),
            Some(batch::Format::Json)
        );
        assert_eq!(batch_format(None).ok(), Some(batch::Format::Sniff));
        assert!(matches!(
            batch_format(Some("text/csv")),
            Err(ApiError::UnsupportedMediaType(_))
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
