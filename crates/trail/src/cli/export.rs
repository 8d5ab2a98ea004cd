//! `trail logs export`: the SIEM pull from a terminal, resuming from a saved cursor.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use trail_client::{ClientError, segment};
use trail_core::{Filter, Timestamp};

use super::output;
use super::{Connection, Session, note, query_string, usage};

#[derive(clap::Args)]
#[command(after_long_help = "\
Examples:
  trail logs export --since 7d                 # the last week, then stop
  trail logs export --since 7d --follow        # and keep pulling as events arrive
  trail logs export --format ocsf --follow     # from now on, as OCSF API Activity
  trail logs export --format cef -q 'category:api status:5xx'

Events come oldest first, by seq: each exactly once, whatever order they were written in.
The cursor is saved after each page is written, so a pull stopped and started again goes
on where it stopped (a page written just before a crash may be written again; none is ever
skipped). --since applies to a first pull only: with a saved cursor, the pull resumes from
it. This command's own calls are left out (a `-tokenId:<credential id>` term), so its
pulls do not feed themselves.")]
pub struct ExportArgs {
    /// Where a first pull starts, by time of receipt: 30s, 5m, 1h, 7d, 2w back from now, or
    /// an RFC 3339 time. Without it (and without a saved cursor): from now on.
    #[arg(long)]
    since: Option<String>,
    /// json or ndjson (the event record, one a line), ocsf (OCSF API Activity, one a line),
    /// cef (CEF:0, one a line).
    #[arg(long, value_enum, default_value_t = ExportFormat::Ndjson)]
    format: ExportFormat,
    /// Keep pulling as events arrive, until Ctrl-C.
    #[arg(long, short = 'f')]
    follow: bool,
    /// With --follow: how long to wait once caught up before pulling again.
    #[arg(long, default_value = "5s", value_parser = interval)]
    interval: Duration,
    /// The file that keeps the cursor [default: $XDG_STATE_HOME/trail/export/HOST-ORG.json,
    /// else ~/.local/state/trail/export/HOST-ORG.json].
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
    /// A query: `actor:alice action:deleted -status:200`.
    #[arg(long, short = 'q', allow_hyphen_values = true)]
    query: Option<String>,
    /// Runs of identical events (same actor, action, object and details within 60 s) as one
    /// record with `count`, `lastOccurredTimestamp` and the `seqs` it folds.
    #[arg(long)]
    collapse: bool,
    /// Keep this command's own recorded calls in the export.
    #[arg(long)]
    include_own: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    Json,
    Ndjson,
    Ocsf,
    Cef,
}

fn interval(s: &str) -> Result<Duration, String> {
    trail_core::time::parse_duration_micros(s)
        .filter(|us| *us > 0)
        .map(|us| Duration::from_micros(us as u64))
        .ok_or_else(|| format!("{s:?} is not a duration such as 5s, 1m or 1h"))
}

/// What the state file keeps: where the pull of this org on this server, with these
/// filters, goes on. A cursor is a place in the log as a filter read it: resumed with another
/// filter, it would skip what the first left out before it, so it is not.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct State {
    url: String,
    org: String,
    /// The `q` sent (the command's own calls' term included).
    #[serde(default)]
    query: String,
    #[serde(default)]
    collapse: bool,
    cursor: String,
    saved_at: String,
}

fn default_state_file(url: &str, org: &str) -> anyhow::Result<PathBuf> {
    let dir = match std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(
            std::env::var_os("HOME").context("no HOME to keep the cursor in: pass --state FILE")?,
        )
        .join(".local/state"),
    };
    let host: String = url
        .split("://")
        .last()
        .unwrap_or(url)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let org: String = org
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    Ok(dir.join("trail/export").join(format!("{host}-{org}.json")))
}

fn load(path: &Path) -> anyhow::Result<Option<State>> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text).map(Some).map_err(|e| {
            usage(format!(
                "{}: not a cursor file of trail logs export: {e}",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Saves the state whole or not at all: written beside, synced, then renamed over.
fn save(path: &Path, state: &State) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = path.with_extension("json.tmp");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(state).expect("state serializes"))?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().with_context(|| format!("saving the cursor to {}", path.display()))
}

pub async fn export(conn: &Connection, args: ExportArgs) -> anyhow::Result<()> {
    let now = trail_server::now();
    let since = args
        .since
        .as_deref()
        .map(|s| Timestamp::parse_bound(s, now).map_err(|e| usage(format!("--since: {e}"))))
        .transpose()?;
    let mut params: Vec<(String, String)> = vec![
        (
            "format".into(),
            match args.format {
                ExportFormat::Json | ExportFormat::Ndjson => "ndjson",
                ExportFormat::Ocsf => "ocsf",
                ExportFormat::Cef => "cef",
            }
            .into(),
        ),
        ("limit".into(), "1000".into()),
    ];
    let session = Session::open(conn)?;
    let mut query = args.query.clone().unwrap_or_default();
    if !args.include_own {
        let id = session.credential_id().ok_or_else(|| {
            usage("the credential has no id (KEYID:SECRET or ID.SECRET) to leave its own calls out: pass --include-own".into())
        })?;
        query = format!("{query} -tokenId:{id}").trim().to_owned();
    }
    if !query.is_empty() {
        let mut check = Filter::default();
        check
            .add_query(&query, now)
            .map_err(|e| usage(format!("--query: {e}")))?;
        params.push(("q".into(), query.clone()));
    }
    if args.collapse {
        params.push(("collapse".into(), "true".into()));
    }
    let org = session.org().await?;
    let url = session.client.url().to_owned();
    let state_file = match &args.state {
        Some(p) => p.clone(),
        None => default_state_file(&url, &org)?,
    };
    let mut cursor = match load(&state_file)? {
        Some(s) if s.org != org || s.url != url => {
            return Err(usage(format!(
                "{} keeps the pull of org {:?} at {}, not of {org:?} at {url}: pass another --state",
                state_file.display(),
                s.org,
                s.url
            )));
        }
        Some(s) if s.query != query || s.collapse != args.collapse => {
            return Err(usage(format!(
                "{} keeps a pull with other filters (q {:?}{}); its cursor would skip what they left out: pass the same filters, or another --state to start a new pull",
                state_file.display(),
                s.query,
                if s.collapse { ", collapsed" } else { "" }
            )));
        }
        Some(s) => {
            if args.since.is_some() {
                note(&format!(
                    "resuming from the cursor saved in {}; --since is for a first pull",
                    state_file.display()
                ));
            }
            Some(s.cursor)
        }
        None => None,
    };
    if cursor.is_none()
        && let Some(since) = since
    {
        params.push(("since".into(), since.to_string()));
    }

    let progress = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {pos} events exported {msg}")
                .expect("a valid template"),
        );
        bar
    });
    let base = format!("/v1/orgs/{}/audit-logs/export", segment(&org));
    let pull = async {
        loop {
            let mut p = params.clone();
            if let Some(c) = &cursor {
                p.retain(|(k, _)| k != "since");
                p.push(("cursor".into(), c.clone()));
            }
            let path = format!("{base}?{}", query_string(&p));
            let page = match session.client.export_page(&path).await {
                Ok(page) => page,
                // While following, a server that is away or busy is waited for.
                Err(
                    e @ (ClientError::Unreachable { .. }
                    | ClientError::Status {
                        status: 502..=504, ..
                    }),
                ) if args.follow => {
                    note(&format!(
                        "{e}; trying again in {}s",
                        args.interval.as_secs_f64()
                    ));
                    tokio::time::sleep(args.interval).await;
                    continue;
                }
                Err(e) => return Err(anyhow::Error::from(e)),
            };
            write_page(args.format, &page.body)?;
            save(
                &state_file,
                &State {
                    url: url.clone(),
                    org: org.clone(),
                    query: query.clone(),
                    collapse: args.collapse,
                    cursor: page.cursor.clone(),
                    saved_at: trail_server::now().to_string(),
                },
            )?;
            cursor = Some(page.cursor);
            if let Some(bar) = &progress {
                bar.inc(page.records);
                bar.set_message(match (page.more, page.checkpoint_size) {
                    (true, _) => "(catching up)".to_owned(),
                    (false, Some(size)) => format!("(caught up with the log's {size} events)"),
                    (false, None) => "(caught up)".to_owned(),
                });
                bar.tick();
            }
            if !page.more {
                if !args.follow {
                    return Ok(());
                }
                tokio::time::sleep(args.interval).await;
            }
        }
    };
    let result = tokio::select! {
        r = pull => r,
        // Ctrl-C is how following ends: a success, the cursor saved at the last page.
        _ = tokio::signal::ctrl_c() => Ok(()),
    };
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    result
}

/// Writes a page's records, one a line.
fn write_page(format: ExportFormat, body: &str) -> anyhow::Result<()> {
    if format == ExportFormat::Ocsf {
        let page: Value = serde_json::from_str(body)
            .map_err(|e| ClientError::Decode(format!("an OCSF page that is not JSON: {e}")))?;
        let items = page["items"].as_array().cloned().unwrap_or_default();
        return output::write(|out| {
            for item in &items {
                writeln!(out, "{item}")?;
            }
            Ok(())
        });
    }
    output::write(|out| out.write_all(body.as_bytes()))
}
