//! `trail bench`: the benchmark suite behind BENCHMARKS.md.
//!
//! It starts a real `trail serve` (this binary) on a fresh data directory, ingests over HTTP
//! with durable acknowledgement from several concurrent clients, times the newest-100
//! queries, measures bytes per event on disk, and runs the same events into a plain SQLite
//! table (the home-made audit table Trail replaces) in the same invocation, so that every
//! figure comes with a baseline measured on the same machine at the same time.
//! Every phase is bounded in events and in seconds.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Events to ingest over HTTP.
    #[arg(long, default_value_t = 200_000)]
    events: usize,
    /// Events per ingest request.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Concurrent ingest clients.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Stop ingesting after this many seconds even if not all events are sent.
    #[arg(long, default_value_t = 120)]
    max_seconds: u64,
    /// Timed requests per query shape.
    #[arg(long, default_value_t = 200)]
    queries: usize,
    /// A run of about a minute: 50,000 events, 30 requests per query shape.
    #[arg(long)]
    quick: bool,
}

const ORG: &str = "bench";

pub async fn run(mut args: BenchArgs) -> anyhow::Result<()> {
    if args.quick {
        args.events = 50_000;
        args.queries = 30;
        args.max_seconds = args.max_seconds.min(60);
    }
    if args.batch == 0 || args.clients == 0 || args.events < args.batch {
        bail!("--batch and --clients must be positive and --events at least --batch");
    }
    let dir = tempfile::tempdir()?;
    let work = Workload::new(args.events, args.batch);

    let server = Server::start(&dir.path().join("server"))?;
    let ingest = ingest(&server, &work, work.batches, &args).await?;
    let peak_rss = server.peak_rss_kib();
    let org_q = time_queries(&server, &["audit-logs?limit=100"], args.queries).await?;
    let actor_q = time_queries(
        &server,
        &["audit-logs?actor=user-7&since=1h&limit=100"],
        args.queries,
    )
    .await?;
    let filter_q = time_queries(
        &server,
        &["audit-logs?q=route%3A%2Fv1%2Fsecrets%20status%3A5xx%20-actor%3Auser-1&limit=100"],
        args.queries,
    )
    .await?;
    // What the console asks for when it opens Audit Logs: the first page and the
    // histogram of the last 24 hours.
    let console_q = time_queries(
        &server,
        &[
            "audit-logs?since=24h&limit=50",
            "audit-logs/histogram?since=24h",
        ],
        args.queries.min(50),
    )
    .await?;
    let perf_q = time_queries(&server, &["perf?since=24h"], args.queries.min(50)).await?;
    let trail_db = server.stop()?;
    let verification = time_verification(&dir.path().join("server")).await?;
    let (stored, trail_bytes) = bytes_on_disk(&trail_db)?;

    let base = baseline(
        &dir.path().join("baseline.db"),
        &work,
        ingest.batches.min(BASELINE_MAX_EVENTS / args.batch),
    )?;

    let ratio = |a: f64, b: f64| {
        if b > 0.0 {
            format!("{:.2}x", a / b)
        } else {
            "-".into()
        }
    };
    let mut r = String::new();
    writeln!(r, "## trail bench\n")?;
    writeln!(
        r,
        "- command: `trail bench --events {} --batch {} --clients {} --queries {}`",
        args.events, args.batch, args.clients, args.queries
    )?;
    writeln!(r, "- machine: {}", machine())?;
    writeln!(
        r,
        "- Trail: `trail serve` over HTTP on loopback, embedded SQLite, WAL synced at every group commit"
    )?;
    writeln!(
        r,
        "- baseline: the same events (the first {} at most) into a plain SQLite table (JSON text + 4 indexes), one transaction and sync per batch, no HTTP\n",
        BASELINE_MAX_EVENTS
    )?;
    writeln!(
        r,
        "| measure | Trail | plain SQLite table | Trail / baseline |"
    )?;
    writeln!(r, "|---|---|---|---|")?;
    writeln!(
        r,
        "| ingest, durable ack, batches of {} (events/s) | {:.0} | {:.0} | {} |",
        args.batch,
        ingest.rate,
        base.rate,
        ratio(ingest.rate, base.rate)
    )?;
    writeln!(
        r,
        "| ack latency p50 / p99 (ms) | {:.1} / {:.1} | {:.1} / {:.1} | |",
        ingest.p50_ms, ingest.p99_ms, base.p50_ms, base.p99_ms
    )?;
    writeln!(
        r,
        "| acknowledgements carrying a signed checkpoint that covers their batch | {} of {} | | |",
        ingest.covered, ingest.batches
    )?;
    writeln!(
        r,
        "| full verification, `trail verify --data` (events/s) | {:.0} | | |",
        verification
    )?;
    let trail_bpe = trail_bytes as f64 / stored as f64;
    let base_bpe = base.bytes as f64 / base.events as f64;
    writeln!(
        r,
        "| bytes per event on disk, indexes included | {trail_bpe:.0} | {base_bpe:.0} | {} |",
        ratio(trail_bpe, base_bpe)
    )?;
    writeln!(
        r,
        "| newest 100 of the org, p50 / p99 (ms) | {:.2} / {:.2} | | |",
        org_q.0, org_q.1
    )?;
    writeln!(
        r,
        "| newest 100 of one actor in 1 h, p50 / p99 (ms) | {:.2} / {:.2} | | |",
        actor_q.0, actor_q.1
    )?;
    writeln!(
        r,
        "| newest 100 matching `route:/v1/secrets status:5xx -actor:user-1`, p50 / p99 (ms) | {:.2} / {:.2} | | |",
        filter_q.0, filter_q.1
    )?;
    writeln!(
        r,
        "| console's first view: newest 50 + 24 h histogram, p50 / p99 (ms) | {:.2} / {:.2} | | |",
        console_q.0, console_q.1
    )?;
    writeln!(
        r,
        "| `perf` over 24 h, p50 / p99 (ms) | {:.2} / {:.2} | | |",
        perf_q.0, perf_q.1
    )?;
    writeln!(
        r,
        "| server peak RSS (MiB) | {} | | |",
        peak_rss.map_or("-".into(), |k| format!("{:.0}", k as f64 / 1024.0))
    )?;
    writeln!(
        r,
        "\n{} events acknowledged in {:.1} s ({} stored, including the recorded API calls); {} events in the baseline.",
        ingest.events, ingest.seconds, stored, base.events
    )?;
    writeln!(
        r,
        "\nIngest as the store grows (Trail, checkpoints on; each row a tenth of the run):\n"
    )?;
    writeln!(r, "| events stored | events/s |")?;
    writeln!(r, "|---|---|")?;
    for (upto, rate) in &ingest.curve {
        writeln!(r, "| to {upto} | {rate:.0} |")?;
    }
    if let (Some(first), Some(last)) = (ingest.curve.first(), ingest.curve.last()) {
        writeln!(
            r,
            "\nThe last tenth against the first: {}.",
            ratio(last.1, first.1)
        )?;
    }
    crate::cli::output::write(|out| out.write_all(r.as_bytes()))
}

/// Deterministic events like a platform's, as JSON array bodies, made batch by batch (a
/// 10-million-event run is never held in memory): half application events on objects, half
/// recorded API calls, from 1,000 actors of Zipf-skewed activity (s = 1.1), over 50 route
/// templates, from IP addresses nearly all distinct, with a random body digest per call,
/// in near time order (batch `b` a few milliseconds after `b - 1`, its events up to two
/// seconds old).
#[derive(Clone)]
struct Workload {
    batch: usize,
    batches: usize,
    start: i64,
    /// Cumulative Zipf weights of the actors, for sampling by binary search.
    actors: Arc<Vec<f64>>,
    routes: Arc<Vec<String>>,
}

impl Workload {
    fn new(events: usize, batch: usize) -> Workload {
        let batches = events / batch;
        let mut total = 0.0;
        let actors = (1..=1000)
            .map(|k| {
                total += 1.0 / (k as f64).powf(1.1);
                total
            })
            .collect();
        let resources = [
            "tenants",
            "apps",
            "clusters",
            "users",
            "keys",
            "projects",
            "deployments",
            "secrets",
            "webhooks",
            "billing",
        ];
        let routes = resources
            .iter()
            .flat_map(|r| {
                [
                    format!("GET /v1/{r}"),
                    format!("POST /v1/{r}"),
                    format!("GET /v1/{r}/:id"),
                    format!("PATCH /v1/{r}/:id"),
                    format!("DELETE /v1/{r}/:id"),
                ]
            })
            .collect();
        Workload {
            batch,
            batches,
            start: trail_server::now().micros() - batches as i64 * 5_000,
            actors: Arc::new(actors),
            routes: Arc::new(routes),
        }
    }

    /// Batch `b`'s events, the same every time.
    fn events(&self, b: usize) -> Vec<Value> {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d ^ (b as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let mut next = move |m: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % m
        };
        let actions = [
            "created",
            "deleted",
            "updated",
            "synced",
            "rolled_back",
            "login",
            "logout",
            "approved",
        ];
        let statuses = [200, 200, 200, 200, 201, 204, 400, 403, 404, 500];
        let total = *self.actors.last().expect("actors");
        let now = self.start + b as i64 * 5_000;
        (0..self.batch)
            .map(|_| {
                let pick = next(1 << 30) as f64 / (1u64 << 30) as f64 * total;
                let user = self.actors.partition_point(|w| *w < pick);
                let ip = next(u64::from(u32::MAX)) as u32;
                let ts = trail_core::Timestamp(now - next(2_000_000) as i64).to_string();
                let mut e = json!({
                    "timestamp": ts,
                    "action": (actions[next(8) as usize]),
                    "actor": {"id": format!("user-{user}"), "type": "user",
                              "ip": std::net::Ipv4Addr::from(ip).to_string()},
                });
                if next(2) == 0 {
                    let route = &self.routes[next(self.routes.len() as u64) as usize];
                    e["category"] = json!("api");
                    e["action"] = json!("call");
                    e["actor"]["type"] = json!("pat");
                    e["actor"]["tokenId"] = json!(format!("pat_{user:04}"));
                    e["actor"]["userAgent"] = json!("trail/0.1.0");
                    e["request"] = json!({
                        "method": (route.split(' ').next().unwrap()),
                        "route": route,
                        "status": (statuses[next(10) as usize]),
                        "latencyMs": next(50_000) as f64 / 100.0,
                        "bodySha256": format!("{:016x}{:016x}{:016x}{:016x}", next(u64::MAX), next(u64::MAX), next(u64::MAX), next(u64::MAX)),
                    });
                } else {
                    e["instance"] = json!(format!("argocd-{}", next(5)));
                    e["object"] = json!({
                        "type": "application",
                        "id": {"group": "argoproj.io", "kind": "Application", "name": format!("app-{}", next(2000))},
                        "parentId": {"applicationName": format!("app-{}", next(2000)), "name": "", "parentName": ""},
                    });
                    e["details"] = json!({"actionType": "UPDATE", "message": "Resource updated", "patch": ""});
                }
                e
            })
            .collect()
    }

    fn body(&self, b: usize) -> Vec<u8> {
        serde_json::to_vec(&self.events(b)).expect("events serialize")
    }
}

struct Server {
    child: Child,
    url: String,
    token: String,
    data: std::path::PathBuf,
    client: reqwest::Client,
}

impl Server {
    fn start(data: &Path) -> anyhow::Result<Server> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--bootstrap-org",
                ORG,
                "--data",
            ])
            .arg(data)
            .env("TRAIL_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting trail serve")?;
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
        let mut url = None;
        let mut line = String::new();
        while url.is_none() && stdout.read_line(&mut line)? > 0 {
            if let Some(u) = line.split("listening on ").nth(1) {
                url = Some(u.trim().to_owned());
            }
            line.clear();
        }
        // Keep reading what the server prints after its address until it exits: a pipe
        // nobody reads fills up, or breaks, under a server that still writes to it.
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        let url = url.context("trail serve exited before listening")?;
        let token = std::fs::read_to_string(data.join(trail_server::BOOTSTRAP_TOKEN_FILE))?
            .trim()
            .to_owned();
        Ok(Server {
            child,
            url,
            token,
            data: data.to_owned(),
            client: reqwest::Client::builder()
                .user_agent(concat!("trail/", env!("CARGO_PKG_VERSION"), " bench"))
                .build()?,
        })
    }

    fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    }

    /// Stops the server gracefully; returns its database file.
    fn stop(mut self) -> anyhow::Result<std::path::PathBuf> {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                self.child.kill()?;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(self.data.join(trail_store::sqlite::DB_FILE))
    }
}

/// The most events the SQLite baseline loads (it is a reference at one size, not a curve).
const BASELINE_MAX_EVENTS: usize = 1_000_000;

struct IngestResult {
    events: usize,
    /// Acknowledgements whose signed checkpoint covers every event of their batch.
    covered: usize,
    batches: usize,
    seconds: f64,
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// Events stored by the end of each tenth of the run, and the rate over that tenth.
    curve: Vec<(usize, f64)>,
}

/// Sends the workload's first `batches` batches from `--clients` concurrent clients.
async fn ingest(
    server: &Server,
    work: &Workload,
    batches: usize,
    args: &BenchArgs,
) -> anyhow::Result<IngestResult> {
    let next = Arc::new(AtomicUsize::new(0));
    let url = format!("{}/v1/orgs/{ORG}/events", server.url);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.max_seconds);
    let tasks: Vec<_> = (0..args.clients)
        .map(|_| {
            let (work, next, url) = (work.clone(), next.clone(), url.clone());
            let (client, token) = (server.client.clone(), server.token.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut done_at = Vec::new();
                let mut covered = 0;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= batches || Instant::now() > deadline {
                        return Ok::<_, anyhow::Error>((latencies, done_at, covered));
                    }
                    let body = work.body(i);
                    let t = Instant::now();
                    let resp = client
                        .post(&url)
                        .bearer_auth(&token)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await?;
                    if !resp.status().is_success() {
                        bail!("ingest failed: {} {}", resp.status(), resp.text().await?);
                    }
                    let body: serde_json::Value = resp.json().await?;
                    latencies.push(t.elapsed());
                    done_at.push(started.elapsed().as_secs_f64());
                    let seqs = body["items"].as_array().into_iter().flatten();
                    let last_seq = seqs.filter_map(|i| i["seq"].as_u64()).max();
                    let signed = body["checkpoint"]["size"].as_u64();
                    if let (Some(seq), Some(size)) = (last_seq, signed)
                        && size > seq
                    {
                        covered += 1;
                    }
                }
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut done_at = Vec::new();
    let mut covered = 0;
    for t in tasks {
        let (l, d, c) = t.await??;
        latencies.extend(l);
        done_at.extend(d);
        covered += c;
    }
    let seconds = started.elapsed().as_secs_f64();
    let done = latencies.len();
    let events = done * args.batch;
    let (p50_ms, p99_ms) = percentiles(&mut latencies);
    done_at.sort_by(f64::total_cmp);
    let mut curve = Vec::new();
    let tenth = done / 10;
    if tenth > 0 {
        let mut from = 0.0;
        for k in 1..=10 {
            let at = done_at[k * tenth - 1];
            curve.push((
                k * tenth * args.batch,
                (tenth * args.batch) as f64 / (at - from).max(1e-9),
            ));
            from = at;
        }
    }
    Ok(IngestResult {
        events,
        covered,
        batches: done,
        seconds,
        rate: events as f64 / seconds,
        p50_ms,
        p99_ms,
        curve,
    })
}

/// Offline verification of the stopped store, in events per second.
async fn time_verification(data: &Path) -> anyhow::Result<f64> {
    let key = trail_core::checkpoint::SignerKey::parse(&std::fs::read_to_string(
        data.join(trail_server::log::KEY_FILE),
    )?)?
    .verifier();
    let store = trail_store::SqliteStore::open_read_only(data)?;
    let started = Instant::now();
    let line = crate::verify::verify_stored_org(&store, ORG, &key, true)
        .await?
        .map_err(|e| anyhow::anyhow!("the bench store does not verify: {e}"))?;
    let seconds = started.elapsed().as_secs_f64();
    let events: f64 = line
        .split_whitespace()
        .nth(2)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0.0);
    Ok(events / seconds)
}

/// Times `n` rounds of GETs of `paths` (under the org), one after another: p50 and p99 of a
/// round, in ms.
async fn time_queries(server: &Server, paths: &[&str], n: usize) -> anyhow::Result<(f64, f64)> {
    let mut latencies = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        for path in paths {
            let resp = server
                .client
                .get(format!("{}/v1/orgs/{ORG}/{path}", server.url))
                .bearer_auth(&server.token)
                .send()
                .await?;
            if !resp.status().is_success() {
                bail!("{path}: {} {}", resp.status(), resp.text().await?);
            }
            resp.bytes().await?;
        }
        latencies.push(t.elapsed());
    }
    Ok(percentiles(&mut latencies))
}

fn percentiles(v: &mut [Duration]) -> (f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0);
    }
    v.sort_unstable();
    let at = |p: f64| {
        v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1].as_secs_f64() * 1000.0
    };
    (at(0.50), at(0.99))
}

/// Events stored and the database's size once its WAL is folded in.
fn bytes_on_disk(db: &Path) -> anyhow::Result<(u64, u64)> {
    let conn = rusqlite::Connection::open(db)?;
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    let n: i64 = conn.query_row("SELECT count(*) FROM events", [], |r| r.get(0))?;
    drop(conn);
    Ok((n as u64, std::fs::metadata(db)?.len()))
}

struct Baseline {
    events: usize,
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    bytes: u64,
}

/// The home-made audit table: one row per event, its JSON as text, four indexes; the
/// workload's first `batches` batches.
fn baseline(path: &Path, work: &Workload, batches: usize) -> anyhow::Result<Baseline> {
    let mut conn = rusqlite::Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute_batch(
        "CREATE TABLE audit (id INTEGER PRIMARY KEY, org TEXT NOT NULL, ts TEXT NOT NULL, \
           actor TEXT NOT NULL, action TEXT NOT NULL, route TEXT, status INTEGER, record TEXT NOT NULL);
         CREATE INDEX audit_ts ON audit (org, ts);
         CREATE INDEX audit_actor ON audit (org, actor, ts);
         CREATE INDEX audit_action ON audit (org, action, ts);
         CREATE INDEX audit_route ON audit (org, route, ts);",
    )?;
    let mut latencies = Vec::new();
    let mut events = 0;
    let mut making = Duration::ZERO;
    let started = Instant::now();
    for b in 0..batches {
        let made = Instant::now();
        let batch = work.events(b);
        making += made.elapsed();
        let t = Instant::now();
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO audit (org, ts, actor, action, route, status, record) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for e in batch {
                stmt.execute(rusqlite::params![
                    ORG,
                    e["timestamp"].as_str(),
                    e["actor"]["id"].as_str(),
                    e["action"].as_str(),
                    e["request"]["route"].as_str(),
                    e["request"]["status"].as_i64(),
                    e.to_string(),
                ])?;
                events += 1;
            }
        }
        tx.commit()?;
        latencies.push(t.elapsed());
    }
    // Making the events is not the table's time.
    let seconds = (started.elapsed() - making).as_secs_f64();
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    drop(conn);
    let (p50_ms, p99_ms) = percentiles(&mut latencies);
    Ok(Baseline {
        events,
        rate: events as f64 / seconds,
        p50_ms,
        p99_ms,
        bytes: std::fs::metadata(path)?.len(),
    })
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<u64>().ok())
        })
        .map_or("unknown memory".into(), |k| {
            format!("{:.0} GiB", k as f64 / 1048576.0)
        });
    format!(
        "{} cores, {mem}, {cpu}",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    )
}
