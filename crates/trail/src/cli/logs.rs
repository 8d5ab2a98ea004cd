//! `trail logs tail` and `trail perf`.

use std::io::IsTerminal;

use futures_util::{Stream, StreamExt};
use serde_json::Value;
use trail_client::{ClientError, Followed, segment};
use trail_core::{Filter, Timestamp};

use super::output::{self, Format, cell, paint};
use super::{Connection, Session, note, query_string, usage};

#[derive(clap::Args)]
#[command(after_long_help = "\
Examples:
  trail logs tail --since 1h                          # the last hour
  trail logs tail --since 1h --actor user_ABC         # one operator's actions
  trail logs tail --route 'GET /v1/tenants/:id' --status 5xx
  trail logs tail --query 'actor:alice -status:200' --json
  trail logs tail --query '-category:api'             # leave out Trail's own API calls
  trail logs tail --since 1d --all                    # every event of the day
  trail logs tail --follow                            # and keep streaming

When more events match than were printed, one line on standard error says so and how to get
them (it starts with `trail: note:`; the events on standard output are unaffected). With
--follow, a lost and a regained connection are said the same way.")]
pub struct TailArgs {
    /// Only events since: 30s, 5m, 1h, 7d, 2w back from now, or an RFC 3339 time.
    #[arg(long, default_value = "1h")]
    since: String,
    /// Only events before this (same forms as --since).
    #[arg(long)]
    until: Option<String>,
    /// Only this actor (repeat for alternatives).
    #[arg(long)]
    actor: Vec<String>,
    /// Only this route template, `GET /v1/tenants/:id`, or a path for every method.
    #[arg(long)]
    route: Vec<String>,
    /// Only this status, `404`, or class, `5xx`.
    #[arg(long)]
    status: Vec<String>,
    /// Only this action.
    #[arg(long)]
    action: Vec<String>,
    /// Only this instance's events.
    #[arg(long)]
    instance: Option<String>,
    /// A query: `actor:alice action:deleted -status:200`; it may start with `-`
    /// (`--query '-category:api'`).
    #[arg(long, short = 'q', allow_hyphen_values = true)]
    query: Option<String>,
    /// At most this many events (the newest); at least 1.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    limit: u64,
    /// Every matching event, however many (instead of --limit).
    #[arg(long, conflicts_with = "limit")]
    all: bool,
    /// Leave out this command's own credential's calls (a `-tokenId:<credential id>` term).
    #[arg(long)]
    hide_own: bool,
    /// Keep printing new events as they arrive, until Ctrl-C; if the server is lost (a
    /// restart), reconnect by itself and go on after the last event seen.
    #[arg(long, short = 'f')]
    follow: bool,
    /// Output: table (default on a terminal), json (one array), ndjson (default when piped).
    #[arg(long, short = 'o', value_enum)]
    output: Option<Format>,
    /// How the table shows times: utc (as stored), local (with its offset), relative (5m ago).
    #[arg(long, value_enum, default_value_t = TimeStyle::Utc)]
    time: TimeStyle,
    /// The same as `-o json`.
    #[arg(long)]
    json: bool,
}

impl TailArgs {
    /// The query string, checked here first with the same parser the server uses.
    fn params(&self) -> anyhow::Result<(Vec<(String, String)>, Filter)> {
        let now = trail_server::now();
        let mut filter = Filter::default();
        let mut params = vec![("since".to_owned(), self.since.clone())];
        filter
            .add("since", &self.since, false, now)
            .map_err(|e| usage(e.to_string()))?;
        if let Some(u) = &self.until {
            filter
                .add("until", u, false, now)
                .map_err(|e| usage(e.to_string()))?;
            params.push(("until".into(), u.clone()));
        }
        for (key, values) in [
            ("actor", &self.actor),
            ("route", &self.route),
            ("status", &self.status),
            ("action", &self.action),
        ] {
            for v in values {
                filter
                    .add(key, v, false, now)
                    .map_err(|e| usage(e.to_string()))?;
                params.push((key.into(), v.clone()));
            }
        }
        if let Some(i) = &self.instance {
            filter
                .add("instance", i, false, now)
                .map_err(|e| usage(e.to_string()))?;
        }
        if let Some(q) = &self.query {
            filter
                .add_query(q, now)
                .map_err(|e| usage(format!("--query: {e}")))?;
            params.push(("q".into(), q.clone()));
        }
        Ok((params, filter))
    }
}

pub async fn tail(conn: &Connection, args: TailArgs) -> anyhow::Result<()> {
    let format = Format::choose(args.output, args.json);
    if args.follow && format == Format::Json {
        return Err(usage(
            "--follow streams one event a line: use -o ndjson or -o table".into(),
        ));
    }
    let (mut params, mut filter) = args.params()?;
    let session = Session::open(conn)?;
    if args.hide_own {
        let id = session.credential_id().ok_or_else(|| {
            usage("--hide-own: the credential has no id (KEYID:SECRET or ID.SECRET)".into())
        })?;
        let term = format!("-tokenId:{id}");
        filter
            .add_query(&term, trail_server::now())
            .map_err(|e| usage(format!("--hide-own: {e}")))?;
        params.push(("q".into(), term));
    }
    // One call: an org named here is read by its path; otherwise the credential's own org,
    // which `/v1/audit-log` reads without being told which it is.
    let org_base = |org: &str| match &args.instance {
        Some(i) => format!(
            "/v1/orgs/{}/instances/{}/audit-logs",
            segment(org),
            segment(i)
        ),
        None => format!("/v1/orgs/{}/audit-logs", segment(org)),
    };
    let base = match session.named_org() {
        Some(org) => org_base(org),
        None => {
            if let Some(i) = &args.instance {
                params.push(("instance".into(), i.clone()));
            }
            "/v1/audit-log".to_owned()
        }
    };

    // Following opens the org's stream before the history is read, so an event that
    // arrives in between is on one or the other. Its filters are the same (an instance's
    // events are the org's with an `instance` filter); the bounds in time are the history's.
    let live = if args.follow {
        let org = session.org().await?;
        let mut live: Vec<(String, String)> = params
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "since" | "until" | "instance"))
            .cloned()
            .collect();
        if let Some(i) = &args.instance {
            live.push(("instance".into(), i.clone()));
        }
        let path = format!(
            "/v1/orgs/{}/audit-logs/stream?{}",
            segment(&org),
            query_string(&live)
        );
        Some(session.client.follow_opened(&path, None).await?)
    } else {
        None
    };

    // The newest `limit` events (or all of them), newest first, page by page.
    let limit = if args.all {
        usize::MAX
    } else {
        args.limit as usize
    };
    let progress = (std::io::stderr().is_terminal() && limit > 1000).then(|| {
        let bar = if args.all {
            indicatif::ProgressBar::no_length()
        } else {
            indicatif::ProgressBar::new(limit as u64)
        };
        bar.set_style(
            indicatif::ProgressStyle::with_template(if args.all {
                "{spinner} {pos} events"
            } else {
                "{spinner} {pos}/{len} events"
            })
            .expect("a valid template"),
        );
        bar
    });
    let mut events: Vec<Value> = Vec::new();
    let mut cursor: Option<String> = None;
    // Whether the server has more matching events than were fetched.
    let mut more = false;
    while events.len() < limit {
        let mut p = params.clone();
        p.push(("limit".into(), (limit - events.len()).min(1000).to_string()));
        if let Some(c) = &cursor {
            p.push(("cursor".into(), c.clone()));
        }
        let page = session
            .client
            .get_json(&format!("{base}?{}", query_string(&p)))
            .await?;
        events.extend(page["items"].as_array().cloned().unwrap_or_default());
        if let Some(bar) = &progress {
            bar.set_position(events.len() as u64);
        }
        match page["nextCursor"].as_str() {
            Some(c) => {
                cursor = Some(c.to_owned());
                more = true;
            }
            None => {
                more = false;
                break;
            }
        }
    }
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    if more {
        eprintln!("{}", more_notice(events.len(), &args.since));
    }
    // Printed oldest first, as a tail is.
    events.reverse();
    print_events(format, &events, true, args.time)?;
    let Some(live) = live else {
        return Ok(());
    };
    // What the history showed is not shown again (and only that: an event with an older
    // timestamp, or beyond --limit, committed meanwhile is new here).
    let shown: std::collections::HashSet<u64> =
        events.iter().filter_map(|e| e["seq"].as_u64()).collect();
    let show = Show {
        format,
        times: args.time,
    };
    tokio::select! {
        r = follow(live, shown, show) => r,
        // Ctrl-C is how following ends: a success.
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

/// The one line said on standard error when more events match than were printed.
fn more_notice(printed: usize, since: &str) -> String {
    format!(
        "trail: note: more events match than the {printed} shown (the newest since {since}): \
         raise --limit, pass --all, or narrow --since or the filters"
    )
}

/// Prints the live tail's events as they arrive, but those already `shown`, until the
/// stream fails for good (401, 403, a bad filter). A lost connection is said in one line on
/// standard error, and so is its return; the stream resumes by itself where it was.
async fn follow(
    live: impl Stream<Item = Result<Followed, ClientError>>,
    shown: std::collections::HashSet<u64>,
    show: Show,
) -> anyhow::Result<()> {
    let mut stream = std::pin::pin!(live);
    while let Some(item) = stream.next().await {
        match item? {
            Followed::Event { seq, .. } if shown.contains(&seq) => {}
            Followed::Event { data, .. } => {
                let event: Value =
                    serde_json::from_str(&data).map_err(|e| ClientError::Decode(e.to_string()))?;
                print_events(show.format, &[event], false, show.times)?;
            }
            Followed::Lost(why) => note(&format!(
                "lost the server ({why}); reconnecting until it is back (Ctrl-C to stop)"
            )),
            Followed::Regained { after } => note(&match after {
                Some(seq) => format!("reconnected; following on after seq {seq}"),
                None => "reconnected; following on from the start of the log".into(),
            }),
        }
    }
    Ok(())
}

/// How followed events are printed.
#[derive(Clone, Copy)]
struct Show {
    format: Format,
    times: TimeStyle,
}

/// How a table shows times: `utc` (RFC 3339, as stored), `local` (the local time zone, with
/// its offset), `relative` (`5m ago`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum TimeStyle {
    #[default]
    Utc,
    Local,
    Relative,
}

impl TimeStyle {
    /// A record's `timestamp` as this style shows it, at `now`.
    fn show(self, timestamp: &Value, now: Timestamp) -> String {
        let Some(t) = timestamp.as_str().and_then(|s| Timestamp::parse(s).ok()) else {
            return cell(timestamp);
        };
        match self {
            TimeStyle::Utc => t.to_string(),
            TimeStyle::Local => {
                let at = t.to_offset_datetime();
                let offset = time::UtcOffset::from_whole_seconds(local_offset(at.unix_timestamp()))
                    .unwrap_or(time::UtcOffset::UTC);
                at.to_offset(offset)
                    .format(time::macros::format_description!(
                        "[year]-[month]-[day] [hour]:[minute]:[second] [offset_hour sign:mandatory]:[offset_minute]"
                    ))
                    .unwrap_or_else(|_| t.to_string())
            }
            TimeStyle::Relative => relative(now.micros() - t.micros()),
        }
    }

    /// The TIME column's natural and least width.
    fn widths(self) -> (usize, usize) {
        match self {
            TimeStyle::Utc => (27, 12),
            TimeStyle::Local => (26, 12),
            TimeStyle::Relative => (9, 9),
        }
    }
}

/// The local time zone's offset from UTC at a Unix time, in seconds (the C library's
/// `localtime_r`, so `TZ` is honored); 0 when it cannot tell.
fn local_offset(unix: i64) -> i32 {
    #[cfg(unix)]
    {
        let t = unix as libc::time_t;
        // SAFETY: `tm` is plain data written by `localtime_r`, which is thread-safe.
        let mut tm: libc::tm = unsafe { std::mem::zeroed() };
        if !unsafe { libc::localtime_r(&t, &mut tm) }.is_null() {
            return tm.tm_gmtoff as i32;
        }
    }
    let _ = unix;
    0
}

/// An age in microseconds as `12s ago`, `5m ago`, `3h ago`, `4d ago` (`in 5m` ahead).
fn relative(age_us: i64) -> String {
    let secs = age_us.unsigned_abs() / 1_000_000;
    let amount = match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    };
    if age_us < 0 {
        format!("in {amount}")
    } else {
        format!("{amount} ago")
    }
}

/// The DETAILS cell: the details' `message` if they have one, else the details as compact
/// JSON.
fn details(e: &Value) -> String {
    match &e["details"] {
        Value::Null => "-".into(),
        d => d["message"]
            .as_str()
            .map_or_else(|| d.to_string(), str::to_owned),
    }
}

const EVENT_HEADERS: [&str; 9] = [
    "TIME",
    "ACTOR",
    "TYPE",
    "ACTION",
    "OBJECT / ROUTE",
    "STATUS",
    "IP",
    "SOURCE",
    "DETAILS",
];

/// Prints events; in a table every field is escaped ([`output::escape`]), so an event cannot
/// inject rows or terminal sequences. The table's columns have fixed widths (so followed
/// events line up under the header), cut to fit the terminal.
fn print_events(
    format: Format,
    events: &[Value],
    header: bool,
    times: TimeStyle,
) -> anyhow::Result<()> {
    match format {
        Format::Table => output::write(|out| {
            let on = output::color();
            let (time_w, time_min) = times.widths();
            let avail = output::width();
            // Columns give way to comfortable widths first, then to their least.
            let widths = output::fit(
                &[time_w, 24, 12, 20, 32, 6, 15, 24, 40],
                &[time_min.max(20), 14, 5, 10, 16, 6, 7, 6, 10],
                avail,
            );
            let widths = output::fit(&widths, &[time_min, 6, 5, 6, 8, 6, 4, 4, 5], avail);
            let limited = avail.is_some();
            if header {
                let h: Vec<String> = EVENT_HEADERS.iter().map(|h| h.to_string()).collect();
                writeln!(
                    out,
                    "{}",
                    paint(&output::fit_line(&h, &widths, limited), "1", on)
                )?;
            }
            let now = trail_server::now();
            for e in events {
                let kind = e["actor"]["type"].as_str().unwrap_or("");
                let what = if e["request"].is_object() {
                    cell(&e["request"]["route"])
                } else if e["object"].is_object() {
                    let id = &e["object"]["id"];
                    let name = id["name"]
                        .as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| cell(id));
                    format!("{}/{}", cell(&e["object"]["type"]), name)
                } else {
                    "-".into()
                };
                // Where the row came from: Trail's own record, or the credential that sent
                // it through ingest. Only Trail's own records of a break-glass token's use
                // are marked as such: an ingested row merely says so.
                let source = e["submittedBy"]
                    .as_str()
                    .map_or_else(|| "trail".to_owned(), |by| format!("via {by}"));
                let own = e["submittedBy"].is_null();
                let kind_cell = if kind == "break_glass" && own {
                    "!BREAK-GLASS"
                } else {
                    kind
                };
                let cells: Vec<String> = [
                    times.show(&e["timestamp"], now),
                    cell(&e["actor"]["id"]),
                    kind_cell.to_owned(),
                    cell(&e["action"]),
                    what,
                    cell(&e["request"]["status"]),
                    cell(&e["actor"]["ip"]),
                    source,
                    details(e),
                ]
                .iter()
                .map(|c| output::escape(c))
                .collect();
                let line = output::fit_line(&cells, &widths, limited);
                let line = match (kind, e["request"]["status"].as_u64()) {
                    ("break_glass", _) if own => paint(&line, "1;31", on),
                    (_, Some(s)) if s >= 500 => paint(&line, "31", on),
                    (_, Some(s)) if s >= 400 => paint(&line, "33", on),
                    _ => line,
                };
                writeln!(out, "{line}")?;
            }
            Ok(())
        }),
        Format::Json | Format::Ndjson => output::json_values(format, events),
    }
}

#[derive(clap::Args)]
#[command(after_long_help = "\
Figures come from the recorded API calls: requests, requests per minute, the share of 5xx and
of 4xx answers, and p50 / p95 / p99 latency, busiest route first. Requests per
minute are over the span in which the calls happened (first to last, at least a minute), not
the whole window.

With --over-time, the window in equal slices of whole minutes instead (at most as many as
asked), oldest first: each slice's requests, errors and latency, every route counted
together (or the one --route names).

Calls are tallied per route and minute as they are recorded, so a window is taken to whole
minutes, and the percentiles are within 0.8% of the exact nearest-rank value.

Examples:
  trail perf --since 24h
  trail perf --since 1h --route 'GET /v1/tenants/:id' -o json
  trail perf --since 24h --over-time 24")]
pub struct PerfArgs {
    /// The window's start: 30m, 24h, 7d back from now, or an RFC 3339 time.
    #[arg(long, default_value = "24h")]
    since: String,
    /// The window's end [default: now].
    #[arg(long)]
    until: Option<String>,
    /// Only this route template, or a path for every method.
    #[arg(long)]
    route: Option<String>,
    /// The window over time, in at most this many equal slices (1 to 200) rather than per
    /// route.
    #[arg(long, value_name = "SLICES", num_args = 0..=1, default_missing_value = "24",
          value_parser = clap::value_parser!(u16).range(1..=200))]
    over_time: Option<u16>,
    /// Output: table (default on a terminal), json (the figures and their window), ndjson (one
    /// route, or slice, a line; default when piped).
    #[arg(long, short = 'o', value_enum)]
    output: Option<Format>,
}

pub async fn perf(conn: &Connection, args: PerfArgs) -> anyhow::Result<()> {
    let now = trail_server::now();
    for (flag, value) in [
        ("--since", Some(&args.since)),
        ("--until", args.until.as_ref()),
    ] {
        if let Some(v) = value {
            Timestamp::parse_bound(v, now).map_err(|e| usage(format!("{flag}: {e}")))?;
        }
    }
    let session = Session::open(conn)?;
    let mut p = vec![("since".to_owned(), args.since.clone())];
    if let Some(u) = &args.until {
        p.push(("until".into(), u.clone()));
    }
    if let Some(r) = &args.route {
        p.push(("route".into(), r.clone()));
    }
    if let Some(n) = args.over_time {
        p.push(("slices".into(), n.to_string()));
    }
    let figures = session
        .client
        .get_json(&format!(
            "{}/perf?{}",
            session.org_path().await?,
            query_string(&p)
        ))
        .await?;
    let format = Format::choose(args.output, false);
    if args.over_time.is_some() {
        return print_over_time(format, &figures);
    }
    match format {
        Format::Table => {
            let pct = |v: &Value| format!("{:.1}%", v.as_f64().unwrap_or(0.0) * 100.0);
            let ms = |v: &Value| format!("{:.1}", v.as_f64().unwrap_or(0.0));
            let rows: Vec<(Vec<String>, Option<&str>)> = figures["routes"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| {
                    (
                        vec![
                            cell(&r["route"]),
                            cell(&r["requests"]),
                            format!("{:.2}", r["requestsPerMinute"].as_f64().unwrap_or(0.0)),
                            pct(&r["errorRate5xx"]),
                            pct(&r["errorRate4xx"]),
                            ms(&r["p50Ms"]),
                            ms(&r["p95Ms"]),
                            ms(&r["p99Ms"]),
                        ],
                        None,
                    )
                })
                .collect();
            output::table(
                &[
                    "ROUTE", "REQUESTS", "RPM", "5XX", "4XX", "P50 MS", "P95 MS", "P99 MS",
                ],
                &rows,
            )
        }
        Format::Json => output::json(&figures),
        Format::Ndjson => output::json_values(
            Format::Ndjson,
            figures["routes"].as_array().map_or(&[][..], |v| v),
        ),
    }
}

/// A perf report's slices over time: a row each, oldest first.
fn print_over_time(format: Format, figures: &Value) -> anyhow::Result<()> {
    let slices = figures["overTime"].as_array().map_or(&[][..], |v| v);
    match format {
        Format::Table => {
            let ms = |v: &Value| format!("{:.1}", v.as_f64().unwrap_or(0.0));
            let rows: Vec<(Vec<String>, Option<&str>)> = slices
                .iter()
                .map(|s| {
                    let idle = s["requests"].as_u64() == Some(0);
                    let lat = |v: &Value| if idle { "-".to_owned() } else { ms(v) };
                    (
                        vec![
                            cell(&s["start"]),
                            cell(&s["requests"]),
                            cell(&s["errors5xx"]),
                            cell(&s["errors4xx"]),
                            lat(&s["p50Ms"]),
                            lat(&s["p95Ms"]),
                            lat(&s["p99Ms"]),
                        ],
                        None,
                    )
                })
                .collect();
            output::table(
                &[
                    "START", "REQUESTS", "5XX", "4XX", "P50 MS", "P95 MS", "P99 MS",
                ],
                &rows,
            )
        }
        Format::Json => output::json(figures),
        Format::Ndjson => output::json_values(Format::Ndjson, slices),
    }
}
