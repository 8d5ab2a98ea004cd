//! Prometheus metrics: one process-wide recorder, and the per-request middleware.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's Prometheus recorder, installed on first use.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Suffix("duration_seconds".into()),
                &[
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                ],
            )
            .expect("buckets are not empty")
            .build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (in tests); then this handle renders
        // nothing, which is harmless.
        let _ = metrics::set_global_recorder(recorder);
        describe();
        metrics::gauge!("trail_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
        handle
    })
}

/// What a metric counts.
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Every metric Trail exports, with its `# HELP` text: the one list of them. Recording a
/// metric that is not here leaves it without help, which a test catches.
pub const METRICS: &[(&str, Kind, &str)] = &[
    (
        "trail_build_info",
        Kind::Gauge,
        "Always 1; the version label is the running Trail's version",
    ),
    (
        "trail_http_requests_total",
        Kind::Counter,
        "HTTP requests answered, by method, route template and status",
    ),
    (
        "trail_http_request_duration_seconds",
        Kind::Histogram,
        "Time to answer an HTTP request, by method and route template",
    ),
    (
        "trail_auth_failures_total",
        Kind::Counter,
        "Credentials or passwords refused (missing, wrong, expired, revoked)",
    ),
    (
        "trail_events_ingested_total",
        Kind::Counter,
        "Events accepted through the ingest API (duplicates not counted)",
    ),
    (
        "trail_events_appended_total",
        Kind::Counter,
        "Events the store committed to the logs, ingested and recorded calls alike",
    ),
    (
        "trail_wal_frames",
        Kind::Gauge,
        "Frames in the store's write-ahead log at its last checkpoint (folded off the ingest path)",
    ),
    (
        "trail_wal_writer_held_duration_seconds",
        Kind::Histogram,
        "Time the store's writer waited before a transaction while the write-ahead log was folded to its end, so that it starts over instead of growing",
    ),
    (
        "trail_wal_restarts_total",
        Kind::Counter,
        "Times the store's write-ahead log was folded to its end with the writer held, so that it starts over",
    ),
    (
        "trail_store_commit_duration_seconds",
        Kind::Histogram,
        "Time the embedded store's writer took to commit a group of appends: writing its pages to the write-ahead log and syncing it to the device",
    ),
    (
        "trail_store_group_duration_seconds",
        Kind::Histogram,
        "Time the embedded store's writer took over a group of appends, from the start of its transaction to its commit: the rows, the log's checkpoint and the commit",
    ),
    (
        "trail_group_commit_requests",
        Kind::Histogram,
        "Append requests committed together in one transaction of the store's writer",
    ),
    (
        "trail_checkpoints_signed_total",
        Kind::Counter,
        "Signed checkpoints stored, one per grown log per round",
    ),
    (
        "trail_log_integrity_failures_total",
        Kind::Counter,
        "Logs whose stored tree no longer gives their last signed root, or that shrank: signing stopped for them",
    ),
];

/// Gives every metric of [`METRICS`] its help text, in the installed recorder.
fn describe() {
    for (name, kind, help) in METRICS {
        match kind {
            Kind::Counter => metrics::describe_counter!(*name, *help),
            Kind::Gauge => metrics::describe_gauge!(*name, *help),
            Kind::Histogram => metrics::describe_histogram!(*name, *help),
        }
    }
}

/// Counts and times every request by route template, method and status.
pub async fn track(req: Request, next: Next) -> Response {
    let started = Instant::now();
    // Label values come from fixed sets, so no request can mint new series.
    let method = match *req.method() {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    };
    let route = req.extensions().get::<MatchedPath>().map_or_else(
        || "unmatched".to_owned(),
        |p| trail_record::template(p.as_str()),
    );
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("trail_http_requests_total", "method" => method, "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("trail_http_request_duration_seconds", "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}
