//! The SIEM export: an org's log oldest first, by seq, from a cursor that never skips or
//! repeats an event.
//!
//! Seqs are given in commit order and a page reads a committed snapshot, so "every seq below
//! the cursor has been read" stays true whatever order concurrent writers commit in, and
//! whatever `timestamp` their events carry: an event that commits late gets a later seq, and
//! the next pull reads it. Each page carries the signed checkpoint of the same snapshot, which
//! covers every event of the page, so a SIEM can prove what it received.

use axum::body::Body;
use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::HeaderValue;
use axum::http::header::CONTENT_TYPE;
use axum::response::Response;
use base64::Engine;
use serde::Serialize;
use serde_json::value::RawValue;
use trail_core::collapse::{self, MAX_RUN, WINDOW_US};
use trail_core::event::EventRecord;
use trail_core::{Event, ExportCursor, Timestamp};
use trail_store::StoredEvent;
use utoipa::ToSchema;

use super::events::{ListQuery, MAX_PAGE_BYTES, limit_param, whole_window};
use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::log::CheckpointView;

/// Records in a page when `limit` is not given (the list's default).
pub const DEFAULT_LIMIT: usize = 100;
/// The most records in one page.
pub const MAX_LIMIT: usize = 1000;
/// The most seqs one page reads, whether they pass the filter or not: a page costs at most
/// this many rows, and a filter that matches little still moves the cursor on.
pub const SCAN: u64 = 50_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Ndjson,
    Ocsf,
    Cef,
    Csv,
}

impl Format {
    fn parse(v: &str) -> Result<Format, ApiError> {
        Ok(match v {
            "json" => Format::Json,
            "ndjson" => Format::Ndjson,
            "ocsf" => Format::Ocsf,
            "cef" => Format::Cef,
            "csv" => Format::Csv,
            other => {
                return Err(ApiError::BadRequest(format!(
                    "format: {other:?} is not json, ndjson, ocsf, cef or csv"
                )));
            }
        })
    }

    /// One record in this format: a JSON value for `json` and `ocsf` (items of the page's
    /// JSON), a line without its break for `ndjson` and `cef`, a CSV row (whose quoted cells
    /// may hold line breaks) for `csv`.
    fn render(self, r: &EventRecord<'_>) -> String {
        match self {
            Format::Csv => {
                let mut row = String::from_utf8(trail_core::export::csv_text([r], false))
                    .expect("CSV of UTF-8 text");
                row.truncate(row.trim_end_matches(['\r', '\n']).len());
                row
            }
            Format::Json | Format::Ndjson => serde_json::to_string(r).expect("records serialize"),
            Format::Ocsf => trail_core::export::ocsf(r, env!("CARGO_PKG_VERSION")).to_string(),
            Format::Cef => trail_core::export::cef(r, env!("CARGO_PKG_VERSION")),
        }
    }
}

/// A page of the export (`json` and `ocsf`; the line formats carry the same in headers).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExportPage {
    /// The records, oldest first: the event record (`json`) or an OCSF API Activity event.
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<Box<RawValue>>,
    /// Pass it as `cursor` to read on from here. Always present, even on an empty page.
    pub cursor: String,
    /// Whether more can be read at once; when false, wait before pulling again.
    pub more: bool,
    /// The signed checkpoint that covers every event of the page, read in the same snapshot:
    /// each record's `seq` is below its `size`. Null for a log without one (then the page is
    /// empty), and for a credential restricted to one instance (it proves the whole org's
    /// log, which is not that credential's to see).
    pub checkpoint: Option<CheckpointView>,
}

/// What an export call asks for.
struct Ask {
    format: Format,
    collapse: bool,
    limit: usize,
    cursor: Option<ExportCursor>,
    since: Option<Timestamp>,
}

/// `GET /v1/orgs/{org}/audit-logs/export`: the incremental pull for SIEMs.
#[utoipa::path(
    get,
    path = "/v1/orgs/{org}/audit-logs/export",
    operation_id = "exportAuditLogs",
    params(
        ("org" = String, Path, description = "The org's id"),
        ("format" = Option<String>, Query, description = "`json` (the default: a page of event records), `ndjson` (one record a line), `ocsf` (a page of OCSF 1.x API Activity events, class 6003), `cef` (one CEF:0 line an event) or `csv` (the download's columns, each page starting with the header row, cells a spreadsheet would run written as text). The line formats carry the cursor, `more` and the checkpoint in the `Trail-Cursor`, `Trail-More` and `Trail-Checkpoint` (the signed note, base64) headers, with `Trail-Checkpoint-Size`, `Trail-Checkpoint-Root` and `Trail-Records` (how many records the page holds); every format has the headers"),
        ListQuery,
    ),
    responses(
        (status = 200, description = "The next events in seq order, the cursor after them and the checkpoint that covers them", content(
            (ExportPage = "application/json"),
            (String = "application/x-ndjson"),
            (String = "text/plain"),
            (String = "text/csv"),
        ), headers(
            ("trail-cursor" = String, description = "Where the next pull starts (the body's `cursor`)"),
            ("trail-more" = bool, description = "Whether more can be read at once (the body's `more`)"),
            ("trail-records" = u64, description = "How many records the page holds"),
            ("trail-checkpoint-size" = u64, description = "The size of the signed checkpoint that covers the page (absent for a credential restricted to an instance)"),
            ("trail-checkpoint-root" = String, description = "Its root hash, hex"),
            ("trail-checkpoint" = String, description = "Its signed note, base64"),
        )),
    ),
)]
pub async fn export(
    State(state): State<AppState>,
    Path(org): Path<String>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let now = crate::now();
    let mut ask = Ask {
        format: Format::Json,
        collapse: false,
        limit: DEFAULT_LIMIT,
        cursor: None,
        since: None,
    };
    let params = whole_window(
        raw.as_deref(),
        now,
        &caller,
        &org,
        "an export reads",
        |k, v| {
            match k {
                "format" => ask.format = Format::parse(v)?,
                "collapse" => ask.collapse = super::events::flag("collapse", v)?,
                "limit" => ask.limit = limit_param(Some(v), DEFAULT_LIMIT, MAX_LIMIT)?,
                "cursor" => {
                    let c = ExportCursor::decode(v)
                        .map_err(|e| ApiError::BadRequest(format!("cursor: {e}")))?;
                    if c.org != org {
                        return Err(ApiError::BadRequest(format!(
                            "cursor: it belongs to the export of another org, not {org:?}"
                        )));
                    }
                    ask.cursor = Some(c);
                }
                "since" => {
                    ask.since = Some(
                        Timestamp::parse_bound(v, now)
                            .map_err(|e| ApiError::BadRequest(format!("since: {e}")))?,
                    );
                }
                "until" => {
                    return Err(ApiError::BadRequest(
                        "until: an export has no end; it follows the log as it grows".into(),
                    ));
                }
                _ => return Ok(false),
            }
            Ok(true)
        },
    )?;
    if params.filter.since.is_some() || params.filter.until.is_some() {
        return Err(ApiError::BadRequest(
            "q: an export takes no since: or until: terms; pass since= (the backfill start, by time of receipt) on the first call".into(),
        ));
    }
    if ask.cursor.is_some() && ask.since.is_some() {
        return Err(ApiError::BadRequest(
            "since is for the first call only; with a cursor, the pull resumes from it".into(),
        ));
    }
    let from = match (&ask.cursor, ask.since) {
        (Some(c), _) => c.seq,
        (None, Some(since)) => state.store.seq_received_since(&org, since).await?,
        // From now on (seed 002: no backfill start, no past records).
        (None, None) => state.store.log_size(&org).await?,
    };
    let read = if ask.collapse { MAX_RUN } else { ask.limit };
    let mut page = state
        .store
        .export(&org, &params.filter, from, read, SCAN)
        .await?;
    if let Some(size) = page.checkpoint.as_ref().map(|c| c.size)
        && from > size
    {
        let stored = state.store.log_size(&org).await?;
        if from > stored {
            return Err(ApiError::BadRequest(format!(
                "cursor: seq {from} is past the end of the log ({stored} events)"
            )));
        }
        // Events no checkpoint covers yet (a log the server refused to sign) are not
        // exported, and those before `from` are not this pull's: nothing to send yet, and
        // the pull goes on from `from` once they are signed.
        page.items.clear();
        page.next = from;
    }
    let size = page.checkpoint.as_ref().map_or(0, |c| c.size);

    // The records of the page, each with the seq to resume from if it is left out; in the
    // collapsed view, a last run that may still grow is left for the next pull to read whole.
    let (records, open_at): (Vec<(EventRecord<'_>, u64)>, Option<u64>) = if ask.collapse {
        // A run that is all a page holds closes at the page's end when more of the log is
        // there to read: otherwise a filter that matches little, with a run open at the end
        // of its scan window, would read the same window again and again.
        let must_move = page.next < size;
        let records = closed_runs(&page.items, page.following, must_move);
        let folded: usize = records
            .iter()
            .map(|(r, _)| r.seqs.as_ref().map_or(1, Vec::len))
            .sum();
        let open_at = page.items.get(folded).map(|s| s.event.seq);
        (records, open_at)
    } else {
        let records = page
            .items
            .iter()
            .map(|s| (s.event.record(&s.hash), s.event.seq))
            .collect();
        (records, None)
    };
    let mut cursor = open_at.unwrap_or(page.next);
    let mut cut = false;
    let mut lines = Vec::new();
    let mut bytes = 0;
    for (i, (r, start)) in records.iter().enumerate() {
        let line = ask.format.render(r);
        bytes += line.len() + 1;
        if i == ask.limit || (bytes > MAX_PAGE_BYTES && !lines.is_empty()) {
            cursor = *start;
            cut = true;
            break;
        }
        lines.push(line);
    }
    let records_sent = lines.len();
    let more = cut || page.next < size;
    let cursor = ExportCursor {
        org: org.clone(),
        seq: cursor,
    }
    .encode();
    // The org's checkpoint proves the org's log, which a credential restricted to one
    // instance does not see (it reads no proofs either): it gets none.
    let checkpoint = page
        .checkpoint
        .filter(|_| caller.instance.is_none())
        .map(CheckpointView::from);

    let mut response = match ask.format {
        Format::Json | Format::Ocsf => {
            let items = lines
                .into_iter()
                .map(|l| RawValue::from_string(l).expect("rendered JSON"))
                .collect();
            let body = ExportPage {
                items,
                cursor: cursor.clone(),
                more,
                checkpoint: checkpoint.clone(),
            };
            Response::builder()
                .header(CONTENT_TYPE, "application/json")
                .body(Body::from(
                    serde_json::to_vec(&body).expect("page serializes"),
                ))
        }
        Format::Ndjson | Format::Cef | Format::Csv => {
            let mut text = String::new();
            if ask.format == Format::Csv {
                text = String::from_utf8(trail_core::export::csv_text([], true))
                    .expect("CSV of UTF-8 text");
            }
            for line in &lines {
                text.push_str(line);
                text.push('\n');
            }
            let mime = match ask.format {
                Format::Cef => "text/plain; charset=utf-8",
                Format::Csv => "text/csv; charset=utf-8",
                _ => "application/x-ndjson",
            };
            Response::builder()
                .header(CONTENT_TYPE, mime)
                .body(Body::from(text))
        }
    }
    .expect("a valid response");
    let headers = response.headers_mut();
    let value = |s: &str| HeaderValue::from_str(s).expect("a header value");
    headers.insert("trail-cursor", value(&cursor));
    headers.insert("trail-more", value(if more { "true" } else { "false" }));
    headers.insert("trail-records", value(&records_sent.to_string()));
    if let Some(cp) = &checkpoint {
        headers.insert("trail-checkpoint-size", value(&cp.size.to_string()));
        headers.insert("trail-checkpoint-root", value(&cp.root));
        headers.insert(
            "trail-checkpoint",
            value(&base64::engine::general_purpose::STANDARD.encode(&cp.note)),
        );
    }
    Ok(response)
}

/// The collapsed records of a page in seq order, each with its first seq: every run but
/// the last, and the last too if it is closed: full, or the last seq read was received a
/// window or more after the run's first (`following`: times of receipt never go down along
/// the seqs, so no later event can join it), or it is the page's only run and `must_move`.
fn closed_runs(
    items: &[StoredEvent],
    following: Option<Timestamp>,
    must_move: bool,
) -> Vec<(EventRecord<'_>, u64)> {
    let events: Vec<&Event> = items.iter().map(|s| &s.event).collect();
    let runs = collapse::runs(&events);
    let mut out = Vec::with_capacity(runs.len());
    for (i, run) in runs.iter().enumerate() {
        let first = &items[run.start].event;
        let closed = i + 1 < runs.len()
            || run.len() == MAX_RUN
            || following.is_some_and(|t| t.micros() - first.received_at.micros() >= WINDOW_US)
            || (runs.len() == 1 && must_move);
        if !closed {
            break;
        }
        let members: Vec<(&Event, &[u8; 32])> = items[run.clone()]
            .iter()
            .map(|s| (&s.event, &s.hash))
            .collect();
        out.push((collapse::record(&members), first.seq));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use trail_core::EventBody;

    fn stored(seq: u64, received_s: i64) -> StoredEvent {
        let body = EventBody::from_json(
            serde_json::json!({"action": "synced", "actor": {"id": "bot", "type": "api_key"}}),
            "acme",
        )
        .unwrap();
        StoredEvent {
            event: Event::seal("acme", seq, Timestamp(received_s * 1_000_000), body),
            hash: [0; 32],
        }
    }

    #[test]
    fn the_last_run_waits_until_it_is_closed_or_the_pull_would_stall() {
        let items: Vec<StoredEvent> = (0..3).map(|s| stored(10 + s, 100)).collect();
        let at = |s: i64| Some(Timestamp(s * 1_000_000));
        // Caught up, received within the window: it may still grow.
        assert!(closed_runs(&items, at(150), false).is_empty());
        // The last seq read came a window after the run's first: nothing later can join.
        let closed = closed_runs(&items, at(160), false);
        assert_eq!(closed.len(), 1);
        assert_eq!((closed[0].0.count, closed[0].1), (3, 10));
        // The page's only run, with more of the log to read past the page: it is returned,
        // or the next pull would read the same page again.
        assert_eq!(closed_runs(&items, at(150), true).len(), 1);
        // With another run after it, the first is closed; the last waits.
        let mut two = items.clone();
        let mut other = stored(13, 101);
        other.event.action = "deleted".into();
        two.push(other);
        let runs = closed_runs(&two, at(150), true);
        assert_eq!(runs.iter().map(|(_, s)| *s).collect::<Vec<_>>(), [10]);
    }
}
