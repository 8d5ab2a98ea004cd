//! Reading the log as it grows and as it performs: the live tail (Server-Sent Events) and
//! per-route performance figures.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderName};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::Stream;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use trail_core::query::route_matches;
use trail_core::{Filter, Scope, Timestamp};
use trail_store::Store;

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::routes::events::{MAX_BUCKETS, list_params, restrict_to_instance, summed_window};

/// The most events a log holds: a seq is below it.
const MAX_SEQ: u64 = 1 << 40;

/// The most routes a performance answer lists (the busiest).
pub const MAX_PERF_ROUTES: usize = 1000;

/// The most events a live tail reads from the store at once.
const BATCH: usize = 500;

/// One live tail: where it is in the log, and what wakes it.
struct Tail {
    store: Arc<dyn Store>,
    org: String,
    filter: Filter,
    /// The seq of the next event to read.
    next: u64,
    pending: VecDeque<SseEvent>,
    /// Marked changed after every commit to the org's log.
    grown: watch::Receiver<u64>,
    /// Cancelled when the server stops: the stream ends.
    stopping: CancellationToken,
    /// Whether the last read found every event committed when it began.
    caught_up: bool,
    /// Who reads, as they authenticated when the tail opened, and when what their credential
    /// holds was last checked again ([`RECHECK`]).
    caller: Caller,
    platform_org: String,
    checked: Instant,
}

/// How often an open tail checks that its credential still reads the org, before it reads
/// more: a key revoked, a member removed or a session ended ends the tail within this
/// long (the client's reconnection is then refused, saying why), without a store read per
/// commit per tail.
const RECHECK: Duration = Duration::from_secs(1);

impl Tail {
    /// The next SSE event to send: the queued ones, else what the log has from `next` on,
    /// read after a commit wakes the tail. `None` ends the stream (the server is stopping,
    /// or the store failed; the client resumes from the last id it saw).
    async fn next_event(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Some(e);
            }
            if self.caught_up {
                tokio::select! {
                    biased;
                    () = self.stopping.cancelled() => return None,
                    changed = self.grown.changed() => changed.ok()?,
                }
            }
            if self.stopping.is_cancelled() {
                return None;
            }
            if self.checked.elapsed() >= RECHECK {
                if let Err(why) = self.still_reads().await {
                    tracing::info!(org = %self.org, credential = %self.caller.credential_id, reason = %why, "a live tail ended: its credential no longer reads the org");
                    return None;
                }
                self.checked = Instant::now();
            }
            // Marked seen before the read: a commit after this point wakes the next wait,
            // and one before it is in what the read finds.
            self.grown.borrow_and_update();
            let batch = match self.store.events_from(&self.org, self.next, BATCH).await {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::warn!(error = %e, org = %self.org, "a live tail stopped: reading the log failed");
                    return None;
                }
            };
            self.caught_up = batch.len() < BATCH;
            let mut sent_last = true;
            for e in &batch {
                self.next = e.event.seq + 1;
                sent_last = self.filter.matches(&e.event);
                if sent_last {
                    let data =
                        serde_json::to_string(&e.event.record(&e.hash)).expect("records serialize");
                    self.pending.push_back(
                        SseEvent::default()
                            .id(e.event.seq.to_string())
                            .event("audit")
                            .data(data),
                    );
                }
            }
            if !sent_last {
                // The events read last were filtered out: an id-only block says how far the
                // tail has read (an `EventSource` keeps it as its last event id), so a
                // reconnection resumes here instead of reading them again.
                self.pending
                    .push_back(SseEvent::default().id((self.next - 1).to_string()));
            }
        }
    }

    /// Whether the tail's credential still holds `logs:read` in its org, as the operation
    /// requires of a new request.
    async fn still_reads(&self) -> Result<(), ApiError> {
        let now = crate::auth::holds_now(
            self.store.as_ref(),
            &self.caller,
            crate::now(),
            &self.platform_org,
        )
        .await?;
        if now.scopes_in(&self.org).contains(&Scope::LogsRead) {
            Ok(())
        } else {
            Err(ApiError::MissingScope(Scope::LogsRead))
        }
    }
}

/// Where a live tail starts.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct StreamQuery {
    /// Start at this seq; by default new events only (or those after `Last-Event-ID`).
    #[param(minimum = 0, maximum = 1099511627775_u64)]
    from: Option<u64>,
}

#[utoipa::path(
    get,
    path = "/v1/orgs/{org}/audit-logs/stream",
    operation_id = "streamAuditLogs",
    params(
        ("org" = String, Path, description = "The org's id"),
        ("Last-Event-ID" = Option<u64>, Header, description = "Resume after this seq (the id of the last event received)"),
        StreamQuery,
        crate::routes::events::ListQuery,
    ),
    responses((
        status = 200,
        description = "Server-Sent Events: each is `event: audit`, `id: <seq>`, `data: <the event record as JSON>`; comments keep the connection alive",
        body = String,
        content_type = "text/event-stream",
        headers(("trail-stream-from" = u64, description = "The seq the tail starts at: the log's size when it starts from now")),
    )),
)]
/// `GET /v1/orgs/{org}/audit-logs/stream`: the events that arrive from now on (or after the
/// seq in `Last-Event-ID`, or from `?from=`), oldest first, that pass the same filters as
/// the list. Each SSE event's id is the event's seq, so a client resumes where it left off;
/// an id-only block says where the tail starts and, when the events read last were filtered
/// out, the seq read up to.
/// The tail is woken by each commit to the org's log ([`Store::watch_log`]), never polls,
/// sends a keep-alive comment every `--stream-keep-alive` while idle, and ends when the
/// server stops.
pub async fn stream(
    State(state): State<AppState>,
    Path(org): Path<String>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<
    (
        [(HeaderName, String); 1],
        Sse<impl Stream<Item = Result<SseEvent, Infallible>>>,
    ),
    ApiError,
> {
    let from_param = form_urlencoded::parse(raw.as_deref().unwrap_or("").as_bytes())
        .find(|(k, _)| k == "from")
        .map(|(_, v)| {
            v.parse::<u64>()
                .map_err(|_| ApiError::BadRequest(format!("from: {v:?} is not a seq")))
        })
        .transpose()?;
    let without_from: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(
            form_urlencoded::parse(raw.as_deref().unwrap_or("").as_bytes())
                .filter(|(k, _)| k != "from"),
        )
        .finish();
    let mut params = list_params(Some(&without_from), crate::now())?;
    if params.collapse {
        return Err(ApiError::BadRequest(
            "collapse: the live tail sends every event as it is committed; collapse the list or the export instead".into(),
        ));
    }
    if let Some(only) = &caller.instance {
        restrict_to_instance(&mut params, &org, only)?;
    }
    let size = state.store.log_size(&org).await?;
    // A seq names an event of this log: below 2^40 (what a log can hold) and below its size.
    let seq_in_log = |what: &str, v: &str| {
        v.trim()
            .parse::<u64>()
            .ok()
            .filter(|seq| *seq < MAX_SEQ && *seq < size)
            .ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "{what}: {v:?} is not the seq of an event of this log (it holds {size})"
                ))
            })
    };
    let resume = match headers.get("last-event-id") {
        None => None,
        Some(v) => {
            let v = v
                .to_str()
                .map_err(|_| ApiError::BadRequest("Last-Event-ID is not readable text".into()))?;
            Some(seq_in_log("Last-Event-ID", v)?)
        }
    };
    if let Some(from) = from_param
        && from > size
    {
        return Err(ApiError::BadRequest(format!(
            "from: {from} is past the end of this log (it holds {size})"
        )));
    }
    let next = match (resume, from_param) {
        (Some(last), _) => last + 1,
        (None, Some(from)) => from,
        (None, None) => size,
    };
    let tail = Tail {
        grown: state.store.watch_log(&org),
        stopping: state.stopping.clone(),
        store: state.store.clone(),
        org,
        filter: params.filter,
        next,
        // Where the tail starts, said first: a client that sees no event before it loses
        // the connection still knows where to resume (no id at all: the log was empty).
        pending: (next > 0)
            .then(|| SseEvent::default().id((next - 1).to_string()))
            .into_iter()
            .collect(),
        caught_up: false,
        caller,
        platform_org: state.platform_org.clone(),
        checked: Instant::now(),
    };
    let events = futures_util::stream::unfold(tail, |mut t| async move {
        let e = t.next_event().await?;
        Some((Ok(e), t))
    });
    Ok((
        [(STREAM_FROM, next.to_string())],
        Sse::new(events).keep_alive(KeepAlive::new().interval(state.stream_keep_alive)),
    ))
}

/// The live tail's response header that says where it starts: known to the client as soon
/// as it is connected, before any event, so reading something else meanwhile (the history a
/// tail prints first) leaves no gap.
pub const STREAM_FROM: HeaderName = HeaderName::from_static("trail-stream-from");

/// Per-route figures over a window, busiest route first.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Perf {
    /// The window counted: the whole minutes the one asked about touches.
    #[schema(format = DateTime)]
    pub since: String,
    #[schema(format = DateTime)]
    pub until: String,
    pub window_minutes: f64,
    /// The span the rates are over: first to last call, at least a minute, at most the window.
    pub span_minutes: f64,
    pub routes: Vec<trail_core::perf::RouteStats>,
    /// How many routes there were (at most 1,000 are listed).
    pub routes_total: usize,
    /// How long each slice of `overTime` is.
    pub slice_seconds: f64,
    /// The window in equal slices, oldest first: the routes above (every one of them, or the
    /// one asked about) counted together, so a chart shows how they moved.
    pub over_time: Vec<PerfSlice>,
}

/// One slice of a window's calls ([`trail_core::perf::over_time`]).
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PerfSlice {
    #[schema(format = DateTime)]
    pub start: String,
    pub requests: u64,
    pub errors_4xx: u64,
    pub errors_5xx: u64,
    /// Latency percentiles of the slice's calls; 0 when it has none.
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
}

impl From<trail_core::perf::Slice> for PerfSlice {
    fn from(s: trail_core::perf::Slice) -> PerfSlice {
        PerfSlice {
            start: s.start.to_string(),
            requests: s.requests,
            errors_4xx: s.errors_4xx,
            errors_5xx: s.errors_5xx,
            p50_ms: s.p50_ms,
            p95_ms: s.p95_ms,
            p99_ms: s.p99_ms,
        }
    }
}

/// At most how many slices `overTime` has unless asked (a minute each over an hour).
pub const PERF_SLICES: usize = 60;

#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct PerfQuery {
    /// RFC 3339 or a duration back from now; 24h by default.
    since: Option<String>,
    /// RFC 3339 or a duration back from now; now by default.
    until: Option<String>,
    /// One route template, or a path for every method.
    route: Option<String>,
    /// At most how many slices of whole minutes `overTime` has: 1 to 200, 60 by default.
    #[param(minimum = 1, maximum = 200)]
    slices: Option<usize>,
}

/// `GET /v1/orgs/{org}/perf?since=24h[&until=T][&route=R][&slices=N]`: per route, busiest
/// first, and the window in slices over time.
#[utoipa::path(
    get,
    path = "/v1/orgs/{org}/perf",
    operation_id = "getPerformance",
    params(("org" = String, Path, description = "The org's id"), PerfQuery),
    responses((status = 200, description = "The figures", body = Perf)),
)]
pub async fn perf(
    State(state): State<AppState>,
    Path(org): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Perf>, ApiError> {
    let now = crate::now();
    let (mut since, mut until, mut route) = (None, None, None);
    let mut slices = PERF_SLICES;
    for (k, v) in form_urlencoded::parse(raw.as_deref().unwrap_or("").as_bytes()) {
        let bound = |v: &str| {
            Timestamp::parse_bound(v, now).map_err(|e| ApiError::BadRequest(format!("{k}: {e}")))
        };
        match &*k {
            "since" => since = Some(bound(&v)?),
            "until" => until = Some(bound(&v)?),
            "route" => route = Some(v.into_owned()),
            "slices" => {
                slices = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_BUCKETS).contains(n))
                    .ok_or_else(|| {
                        ApiError::BadRequest(format!(
                            "slices: {v:?} is not a number from 1 to {MAX_BUCKETS}"
                        ))
                    })?;
            }
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unknown parameter {other:?} (known: since, until, route, slices)"
                )));
            }
        }
    }
    let (since, until) = summed_window(since, until, now)?;
    let per = trail_core::perf::slice_minutes(since, until, slices);
    let mut calls = state
        .store
        .api_call_minutes(&org, since, until, per)
        .await?;
    if let Some(r) = &route {
        calls.retain(|(template, _)| route_matches(r, template));
    }
    // The window counted: the whole minutes it touches.
    let (first, end) = trail_core::perf::window_minutes(since, until);
    let (since, until) = (
        Timestamp(first * trail_core::perf::MINUTE_US),
        Timestamp(end * trail_core::perf::MINUTE_US),
    );
    let minutes = (end - first) as f64;
    let span = trail_core::perf::span_minutes(&calls, minutes);
    let over_time = trail_core::perf::over_time(&calls, since, until, slices);
    let mut routes = trail_core::perf::summarize(&calls, minutes);
    // Busiest first: the answer keeps the busiest routes, and says how many there were.
    let total = routes.len();
    routes.truncate(MAX_PERF_ROUTES);
    Ok(Json(Perf {
        since: since.to_string(),
        until: until.to_string(),
        window_minutes: minutes,
        span_minutes: span,
        routes,
        routes_total: total,
        slice_seconds: per as f64 * 60.0,
        over_time: over_time.into_iter().map(PerfSlice::from).collect(),
    }))
}
