//! `trail bench`: the benchmark suite behind BENCHMARKS.md.
//!
//! One invocation measures Trail and its baselines on the same machine at the same time, so
//! that ratios hold on a noisy machine: it starts a real `trail serve` (this binary) on a
//! fresh data directory and ingests over HTTP with durable acknowledgement from several
//! concurrent clients, records the ingest rate as the store grows, times acknowledgements at
//! half that rate, times the queries, `perf` and offline verification, and measures bytes per event and the server's memory; then it
//! loads the same events into PostgreSQL (a server it starts itself, where PostgreSQL is
//! installed: one INSERT per event, and COPY, into a plain table with three indexes) and
//! into a plain SQLite table. The load generator is measured too, against a server that
//! does nothing, so that it is known not to be the bottleneck. It prints Markdown and writes
//! the same figures as JSON (`--json`). Every phase is bounded in events and in seconds.

mod postgres;
mod soak;
mod workload;

use workload::Workload;

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
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
    #[arg(long, default_value_t = 1800)]
    max_seconds: u64,
    /// Timed requests per query shape.
    #[arg(long, default_value_t = 200)]
    queries: usize,
    /// A run of about a minute: 50,000 events, 30 requests per query shape, small
    /// baselines.
    #[arg(long)]
    quick: bool,
    /// Run the server on this data directory, which must not exist yet, and keep it
    /// afterwards (to query or verify the store the run made); by default a temporary one.
    #[arg(long, value_name = "DIR")]
    keep: Option<PathBuf>,
    /// Instead of the benchmark: the server under ingest from `--clients` for this many
    /// seconds, with readers, an export puller and live tails (some never reading) beside
    /// it; reports rates, latencies, errors and memory over the run, and fails on any error.
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(10..=3600))]
    soak: Option<u64>,
    /// Run Trail's store on PostgreSQL: `local` for a server of the bench's own (made like
    /// the baselines', every commit durable), or `postgres://…` for an empty database.
    #[arg(long, value_name = "local|URL")]
    database: Option<String>,
    /// Where to write the figures as JSON.
    #[arg(long, value_name = "FILE", default_value = "trail-bench.json")]
    json: PathBuf,
}

const ORG: &str = "bench";

/// The most events a baseline loads (each is a reference, not the subject).
const BASELINE_MAX_EVENTS: usize = 1_000_000;
/// The most events PostgreSQL gets one INSERT at a time (it does a few thousand a second).
const INSERT_MAX_EVENTS: usize = 50_000;
/// How long the load generator is timed against a server that does nothing.
const NULL_SECONDS: u64 = 10;
/// The longest the bench waits for one batch's acknowledgement.
const BATCH_TIMEOUT: Duration = Duration::from_secs(60);
/// How long batches are offered at half the ingest rate, to time acknowledgements when the
/// server is not saturated: as long as the ingest took, within these bounds.
const PACED_SECONDS: (f64, f64) = (5.0, 20.0);

pub async fn run(mut args: BenchArgs) -> anyhow::Result<()> {
    if let Some(seconds) = args.soak {
        return soak::run(args, seconds).await;
    }
    let mut baseline_max = BASELINE_MAX_EVENTS;
    let mut insert_max = INSERT_MAX_EVENTS;
    if args.quick {
        args.events = 50_000;
        args.queries = 30;
        args.max_seconds = args.max_seconds.min(60);
        baseline_max = 50_000;
        insert_max = 10_000;
    }
    if args.batch == 0 || args.clients == 0 || args.events < args.batch {
        bail!("--batch and --clients must be positive and --events at least --batch");
    }
    let max = Duration::from_secs(args.max_seconds);
    let dir = tempfile::tempdir()?;
    let data = match &args.keep {
        Some(d) if d.exists() => bail!("--keep {}: it exists already", d.display()),
        Some(d) => d.clone(),
        None => dir.path().join("server"),
    };
    let work = Workload::new(args.events, args.batch);
    let baseline_batches = |max_events: usize| (max_events / args.batch).clamp(1, work.batches);

    // The load generator alone, against a server that answers at once.
    let null = NullServer::start(args.batch).await?;
    let generator = ingest(
        &null.target,
        &work,
        work.batches,
        &args,
        Duration::from_secs(NULL_SECONDS),
    )
    .await?;
    drop(null);

    let store = StoreUnderTest::new(args.database.as_deref(), &data).await?;
    let server = Server::start(&data, &store)?;
    let written_before = io_bytes(server.child.id(), "write_bytes:");
    let cpu_before = CpuTime::of(server.child.id());
    let ingest = ingest(&server.target, &work, work.batches, &args, max).await?;
    // On PostgreSQL the database's own processes write: not counted here.
    let written = io_bytes(server.child.id(), "write_bytes:")
        .zip(written_before)
        .map(|(after, before)| after.saturating_sub(before))
        .filter(|_| matches!(store.location, trail_store::Location::Sqlite(_)));
    let cpu = CpuTime::of(server.child.id())
        .zip(cpu_before)
        .map(|(after, before)| after.since(&before));
    // Then at half that rate, with the batches after the workload's, for as long as the
    // ingest took (within bounds: enough batches for a p99, few enough for a quick run) and
    // never more batches than it sent (the store measured next holds at most twice the
    // workload).
    let half = paced(
        &server.target,
        &work,
        work.batches,
        ingest.rate / 2.0,
        ingest
            .seconds
            .clamp(PACED_SECONDS.0, PACED_SECONDS.1)
            .min(max.as_secs_f64()),
        ingest.batches,
    )
    .await?;
    // The embedded store reports its holds once it has made one; PostgreSQL has no gate.
    let half = PacedResult {
        held: matches!(store.location, trail_store::Location::Sqlite(_))
            .then(|| half.held.clone().unwrap_or_default()),
        ..half
    };
    let peak_rss = server.peak_rss_kib();
    let target = &server.target;
    let q = |paths: &'static [&'static str], n: usize| async move {
        time_queries(target, paths, n).await.map(|t| (paths, n, t))
    };
    let over_http = vec![
        ("newest 100 of the org", q(&["audit-logs?limit=100"], args.queries).await?),
        (
            "newest 100 of one actor in 1 h",
            q(&["audit-logs?actor=user-7&since=1h&limit=100"], args.queries).await?,
        ),
        (
            "newest 100 matching `route:/v1/secrets status:5xx -actor:user-1`",
            q(
                &["audit-logs?q=route%3A%2Fv1%2Fsecrets%20status%3A5xx%20-actor%3Auser-1&limit=100"],
                args.queries,
            )
            .await?,
        ),
        (
            "newest 100 on one object name (`objectName:app-7`)",
            q(&["audit-logs?objectName=app-7&limit=100"], args.queries).await?,
        ),
        // A token of a rarely active actor (posted, as actors are), and an address that
        // nothing came from, which only the blocks' Bloom filters cover (the page is empty
        // only once every block has been ruled out).
        (
            "newest 100 of one token (`tokenId:pat_0500`)",
            q(&["audit-logs?q=tokenId%3Apat_0500&limit=100"], args.queries.min(50)).await?,
        ),
        (
            "newest 100 from an address nothing came from (`ip:10.1.2.3`, Bloom filters)",
            q(&["audit-logs?q=ip%3A10.1.2.3&limit=100"], args.queries.min(50)).await?,
        ),
        // What the console asks for when it opens Audit Logs: the first page and the
        // histogram of the last 24 hours.
        (
            "console's first view: newest 50 + 24 h histogram",
            q(
                &["audit-logs?since=24h&limit=50", "audit-logs/histogram?since=24h"],
                args.queries.min(50),
            )
            .await?,
        ),
        ("`perf` over 24 h", q(&["perf?since=24h"], args.queries.min(50)).await?),
    ];
    let export = time_export(&server.target).await?;
    let archive = time_archive(&server).await?;
    let peak_rss_run = server.peak_rss_kib();
    let heap_end = status_kib(server.child.id(), "RssAnon:");
    server.stop()?;
    let verification = time_verification(&data, &store).await?;
    // The same reads once more, from the store alone (the server stopped): what the store
    // takes, without HTTP, authentication and the durable record of each call.
    let mut queries = Vec::with_capacity(over_http.len());
    {
        let reads = store.open_for_reads().await?;
        for (what, (paths, n, http)) in over_http {
            let in_store = time_in_store(&*reads, paths, n).await?;
            queries.push((what, http, in_store));
        }
    }
    let (stored, trail_bytes) = store.size().await?;

    let (pg_copy, pg_insert, pg_version) = match postgres::Postgres::start() {
        Ok(pg) => {
            let copy = pg
                .copy(&work, baseline_batches(baseline_max), args.clients, max)
                .await?;
            let insert = pg
                .insert_per_event(&work, baseline_batches(insert_max), args.clients, max)
                .await?;
            (Ok(copy), Ok(insert), pg.version.clone())
        }
        Err(e) => (Err(e.to_string()), Err(e.to_string()), String::new()),
    };
    let sqlite = baseline(
        &dir.path().join("baseline.db"),
        &work,
        baseline_batches(baseline_max),
    )?;

    let report = Report {
        command: format!(
            "trail bench --events {} --batch {} --clients {} --queries {}{}{}",
            args.events,
            args.batch,
            args.clients,
            args.queries,
            if args.quick { " --quick" } else { "" },
            match &args.database {
                Some(d) if d == "local" => " --database local".to_owned(),
                Some(_) => " --database postgres://…".to_owned(),
                None => String::new(),
            }
        ),
        store: store.what.clone(),
        machine: machine(),
        generator,
        ingest,
        written,
        cpu,
        half,
        stored,
        trail_bytes,
        peak_rss_kib: peak_rss,
        peak_rss_run_kib: peak_rss_run,
        heap_end_kib: heap_end,
        verification,
        queries,
        export,
        archive,
        pg_copy,
        pg_insert,
        pg_version,
        sqlite,
    };
    std::fs::write(&args.json, serde_json::to_vec_pretty(&report.json())?)
        .with_context(|| format!("writing {}", args.json.display()))?;
    eprintln!(
        "trail bench: the figures as JSON are in {}",
        args.json.display()
    );
    let text = report.markdown()?;
    crate::cli::output::write(|out| out.write_all(text.as_bytes()))
}

/// Everything one run measured.
struct Report {
    command: String,
    /// Trail's store, as the report names it.
    store: String,
    machine: String,
    /// The load generator against a server that does nothing.
    generator: IngestResult,
    ingest: IngestResult,
    /// What the server wrote to storage during the ingest (the WAL, and the database file
    /// as checkpoints fold the WAL into it), in bytes.
    written: Option<u64>,
    /// The server's CPU time during the ingest.
    cpu: Option<CpuTime>,
    /// Acknowledgements at half the ingest rate.
    half: PacedResult,
    /// Events stored (the recorded API calls included) and the database's bytes.
    stored: u64,
    trail_bytes: u64,
    /// After ingest, and over the whole run (reads, the export and the archive included);
    /// and the heap at the end.
    peak_rss_kib: Option<u64>,
    peak_rss_run_kib: Option<u64>,
    heap_end_kib: Option<u64>,
    /// Offline verification, events per second.
    verification: f64,
    /// Query shapes and their p50 / p99 (ms) over HTTP, and in the store where it answers
    /// them alone.
    queries: Vec<(&'static str, Timed, Option<Timed>)>,
    /// The SIEM pull of the whole log.
    export: ExportRun,
    /// The weekly archive of the whole log.
    archive: ArchiveRun,
    pg_copy: Result<Baseline, String>,
    pg_insert: Result<Baseline, String>,
    pg_version: String,
    sqlite: Baseline,
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}x", a / b)
    } else {
        "-".into()
    }
}

impl Report {
    fn markdown(&self) -> anyhow::Result<String> {
        let i = &self.ingest;
        let mut r = String::new();
        writeln!(r, "## trail bench\n")?;
        writeln!(r, "- command: `{}`", self.command)?;
        writeln!(r, "- machine: {}", self.machine)?;
        writeln!(
            r,
            "- Trail: `trail serve` over HTTP on loopback, {}, a signed checkpoint in every acknowledgement",
            self.store
        )?;
        writeln!(
            r,
            "- load generator: {} clients, batches of {} events made and sent as JSON; against a server that answers at once it sends {:.0} events/s ({:.1}x Trail's rate)",
            self.generator.clients,
            self.generator.batch,
            self.generator.rate,
            self.generator.rate / i.rate.max(1e-9)
        )?;
        match (&self.pg_copy, &self.pg_insert) {
            (Ok(copy), Ok(insert)) => writeln!(
                r,
                "- PostgreSQL: {}, started by the bench; a plain table (the event as jsonb, indexes (org, ts), (org, actor, ts), (org, route, ts)); every commit durable; COPY of each batch ({} events), one INSERT per event ({} events), {} connections",
                self.pg_version, copy.events, insert.events, self.generator.clients
            )?,
            (Err(why), _) | (_, Err(why)) => writeln!(r, "- PostgreSQL: not measured: {why}")?,
        }
        writeln!(
            r,
            "- SQLite: the same events ({} of them) into a plain SQLite table (JSON text + 4 indexes), one transaction and sync per batch, no HTTP\n",
            self.sqlite.events
        )?;

        let copy = self.pg_copy.as_ref().ok();
        let insert = self.pg_insert.as_ref().ok();
        let cell = |b: Option<&Baseline>, f: &dyn Fn(&Baseline) -> String| b.map_or("-".into(), f);
        writeln!(
            r,
            "| measure | Trail | PostgreSQL COPY | PostgreSQL INSERT per event | SQLite table | Trail / COPY |"
        )?;
        writeln!(r, "|---|---|---|---|---|---|")?;
        writeln!(
            r,
            "| ingest, durable ack, batches of {} (events/s) | {:.0} | {} | {} | {:.0} | {} |",
            i.batch,
            i.rate,
            cell(copy, &|b| format!("{:.0}", b.rate)),
            cell(insert, &|b| format!("{:.0}", b.rate)),
            self.sqlite.rate,
            copy.map_or("-".into(), |b| ratio(i.rate, b.rate))
        )?;
        writeln!(
            r,
            "| ack latency p50 / p99 (ms; a batch's, an event's for INSERT) | {:.1} / {:.1} | {} | {} | {:.1} / {:.1} | |",
            i.p50_ms,
            i.p99_ms,
            cell(copy, &|b| format!("{:.1} / {:.1}", b.p50_ms, b.p99_ms)),
            cell(insert, &|b| format!("{:.1} / {:.1}", b.p50_ms, b.p99_ms)),
            self.sqlite.p50_ms,
            self.sqlite.p99_ms
        )?;
        let h = &self.half;
        writeln!(
            r,
            "| ack latency at half that rate ({:.0} events/s offered on a fixed schedule, {} batches), p50 / p99 / max (ms) | {:.1} / {:.1} / {:.1} | | | | |",
            h.rate, h.batches, h.p50_ms, h.p99_ms, h.max_ms
        )?;
        if let Some(held) = &h.held {
            writeln!(
                r,
                "| the writer held at the WAL's gate during those batches (so that the WAL starts over): times; in all (ms) | {}; {:.1} | | | | |",
                held.count,
                held.seconds * 1000.0
            )?;
        }
        for (what, recorded) in [
            (
                "the writer's transactions during those batches (rows, checkpoint, commit)",
                &h.groups,
            ),
            (
                "their commits alone (the WAL written and synced)",
                &h.commits,
            ),
        ] {
            let Some(c) = recorded else { continue };
            let over = |ms: f64| c.over(ms / 1000.0).map_or("-".into(), |n| n.to_string());
            writeln!(
                r,
                "| {what}: how many; mean (ms); over 10 / 25 / 50 ms | {}; {:.2}; {} / {} / {} | | | | |",
                c.count,
                c.mean_ms(),
                over(10.0),
                over(25.0),
                over(50.0)
            )?;
        }
        writeln!(
            r,
            "| bytes written to storage per event during the ingest (the WAL and the checkpoints that fold it into the database file) | {} | | | | |",
            self.written.map_or("-".into(), |w| format!(
                "{:.0}",
                w as f64 / i.events.max(1) as f64
            ))
        )?;
        writeln!(
            r,
            "| server CPU time per event during the ingest (µs): all threads; the writer thread, which every append goes through | {} | | | | |",
            self.cpu.as_ref().map_or("-".into(), |c| format!(
                "{:.1}; {:.1}",
                c.server_seconds * 1e6 / i.events.max(1) as f64,
                c.writer_seconds * 1e6 / i.events.max(1) as f64
            ))
        )?;
        let bpe = |b: &Baseline| b.bytes as f64 / b.events.max(1) as f64;
        let trail_bpe = self.trail_bytes as f64 / self.stored.max(1) as f64;
        writeln!(
            r,
            "| bytes per event on disk, indexes included | {trail_bpe:.0} | {} | {} | {:.0} | {} |",
            cell(copy, &|b| format!("{:.0}", bpe(b))),
            cell(insert, &|b| format!("{:.0}", bpe(b))),
            bpe(&self.sqlite),
            copy.map_or("-".into(), |b| ratio(trail_bpe, bpe(b)))
        )?;
        writeln!(
            r,
            "| acknowledgements carrying a signed checkpoint that covers their batch | {} of {} | | | | |",
            i.covered + h.covered,
            i.batches + h.batches
        )?;
        writeln!(
            r,
            "| full verification from the store, `trail verify --data` (or `--database`) (events/s) | {:.0} | | | | |",
            self.verification
        )?;
        let e = &self.export;
        writeln!(
            r,
            "| SIEM export of the whole log by cursor, pages of {EXPORT_PAGE} (events/s; a page's p50 / p99 in ms) | {:.0} ({:.1} / {:.1}) | | | | |",
            e.events as f64 / e.seconds.max(1e-9),
            e.page.p50,
            e.page.p99
        )?;
        let a = &self.archive;
        writeln!(
            r,
            "| weekly archive of every stored event (this week's, partial), built and downloaded: events/s ({:.1} s, {:.1} MiB ZIP; server memory during it at most {} MiB resident, {} MiB of it heap; before: {} / {}) | {:.0} | | | | |",
            a.seconds,
            a.bytes as f64 / 1048576.0,
            mib(a.rss_max_kib),
            mib(a.anon_max_kib),
            mib(a.rss_before_kib),
            mib(a.anon_before_kib),
            a.events as f64 / a.seconds.max(1e-9)
        )?;
        writeln!(
            r,
            "| that archive checked offline, `trail verify --archive` (events/s; its peak resident memory: {} MiB) | {:.0} | | | | |",
            mib(a.verify_rss_max_kib),
            a.events as f64 / a.verify_seconds.max(1e-9)
        )?;
        for (what, t, in_store) in &self.queries {
            let refused = match &t.failure {
                Some(status) => format!(" ({} of {} refused: {status})", t.failed, t.rounds),
                None => String::new(),
            };
            let (label, store) = in_store
                .as_ref()
                .map_or((String::new(), String::new()), |s| {
                    let refused = match &s.failure {
                        Some(why) => format!(" ({} of {} refused: {why})", s.failed, s.rounds),
                        None => String::new(),
                    };
                    (
                        ": over HTTP; in the store alone".into(),
                        format!("; in the store {:.2} / {:.2}{refused}", s.p50, s.p99),
                    )
                });
            writeln!(
                r,
                "| {what}, p50 / p99 (ms){label} | {:.2} / {:.2}{refused}{store} | | | | |",
                t.p50, t.p99
            )?;
        }
        writeln!(
            r,
            "| server peak RSS (MiB): after ingest; over the whole run (the database file's mapped pages included); heap at the end | {} ; {} ; {} | | | | |",
            mib(self.peak_rss_kib),
            mib(self.peak_rss_run_kib),
            mib(self.heap_end_kib)
        )?;
        writeln!(
            r,
            "\n{} events acknowledged in {:.1} s, then {} at half the rate ({} stored, including the recorded API calls).",
            i.events,
            i.seconds,
            self.half.batches * i.batch,
            self.stored
        )?;
        writeln!(
            r,
            "\nIngest as the store grows (each row a tenth of the run; events/s):\n"
        )?;
        writeln!(
            r,
            "| Trail: events stored | Trail | PostgreSQL COPY: events stored | PostgreSQL COPY |"
        )?;
        writeln!(r, "|---|---|---|---|")?;
        for (k, (upto, rate)) in i.curve.iter().enumerate() {
            let pg = copy.and_then(|c| c.curve.get(k));
            writeln!(
                r,
                "| to {upto} | {rate:.0} | {} | {} |",
                pg.map_or("-".into(), |p| format!("to {}", p.0)),
                pg.map_or("-".into(), |p| format!("{:.0}", p.1))
            )?;
        }
        if let (Some(first), Some(last)) = (i.curve.first(), i.curve.last()) {
            writeln!(
                r,
                "\nTrail's last tenth against its first: {}.",
                ratio(last.1, first.1)
            )?;
        }
        Ok(r)
    }

    fn json(&self) -> Value {
        let baseline = |b: &Result<Baseline, String>| match b {
            Ok(b) => b.json(),
            Err(why) => json!({ "notMeasured": why }),
        };
        let i = &self.ingest;
        json!({
            "command": self.command,
            "machine": self.machine,
            "loadGenerator": { "eventsPerSecond": self.generator.rate },
            "trail": {
                "ingest": i.json(),
                "bytesWrittenPerEvent": self.written.map(|w| w as f64 / i.events.max(1) as f64),
                "cpuMicrosPerEvent": self.cpu.as_ref().map(|c| json!({
                    "server": c.server_seconds * 1e6 / i.events.max(1) as f64,
                    "writer": c.writer_seconds * 1e6 / i.events.max(1) as f64,
                })),
                "ackAtHalfRate": {
                    "eventsPerSecondOffered": self.half.rate,
                    "batches": self.half.batches,
                    "seconds": self.half.seconds,
                    "batchesWithCoveringCheckpoint": self.half.covered,
                    "ackP50Ms": self.half.p50_ms,
                    "ackP99Ms": self.half.p99_ms,
                    "ackMaxMs": self.half.max_ms,
                    "writerHeldAtWalGate": self.half.held.as_ref().map(|h| json!({
                        "times": h.count,
                        "ms": h.seconds * 1000.0,
                    })),
                    "writerTransactions": self.half.groups.as_ref().map(Recorded::json),
                    "writerCommits": self.half.commits.as_ref().map(Recorded::json),
                },
                "eventsStored": self.stored,
                "bytes": self.trail_bytes,
                "bytesPerEvent": self.trail_bytes as f64 / self.stored.max(1) as f64,
                "verificationEventsPerSecond": self.verification,
                "peakRssKiB": self.peak_rss_kib,
                "peakRssRunKiB": self.peak_rss_run_kib,
                "heapEndKiB": self.heap_end_kib,
                "export": {
                    "events": self.export.events,
                    "seconds": self.export.seconds,
                    "eventsPerSecond": self.export.events as f64 / self.export.seconds.max(1e-9),
                    "pageP50Ms": self.export.page.p50,
                    "pageP99Ms": self.export.page.p99,
                },
                "archive": {
                    "events": self.archive.events,
                    "bytes": self.archive.bytes,
                    "seconds": self.archive.seconds,
                    "rssBeforeKiB": self.archive.rss_before_kib,
                    "rssMaxKiB": self.archive.rss_max_kib,
                    "heapBeforeKiB": self.archive.anon_before_kib,
                    "heapMaxKiB": self.archive.anon_max_kib,
                    "verifySeconds": self.archive.verify_seconds,
                    "verifyRssMaxKiB": self.archive.verify_rss_max_kib,
                },
                "queries": self.queries.iter().map(|(what, t, in_store)| {
                    json!({
                        "query": what,
                        "p50Ms": t.p50,
                        "p99Ms": t.p99,
                        "rounds": t.rounds,
                        "refused": t.failed,
                        "inStore": in_store.as_ref().map(|s| json!({"p50Ms": s.p50, "p99Ms": s.p99, "refused": s.failed})),
                    })
                }).collect::<Vec<_>>(),
            },
            "postgres": {
                "version": self.pg_version,
                "copy": baseline(&self.pg_copy),
                "insertPerEvent": baseline(&self.pg_insert),
            },
            "sqliteTable": self.sqlite.json(),
            "store": self.store,
        })
    }
}

/// Where the load goes: a server's address and the token to send.
struct Target {
    url: String,
    token: String,
    client: reqwest::Client,
}

impl Target {
    fn new(url: String, token: String) -> anyhow::Result<Target> {
        Ok(Target {
            url,
            token,
            client: reqwest::Client::builder()
                .user_agent(concat!("trail/", env!("CARGO_PKG_VERSION"), " bench"))
                // Within the server's 10 s wait for a request on a kept-alive connection:
                // otherwise a connection the server is closing as idle can be taken from
                // the pool for a batch, which then fails ("connection closed before message
                // completed"), as one run in two did.
                .pool_idle_timeout(Duration::from_secs(5))
                .build()?,
        })
    }
}

/// A server that reads each batch and answers at once with an acknowledgement of Trail's
/// shape and size, storing nothing: what the load generator reaches when the server costs
/// nothing.
struct NullServer {
    target: Target,
    task: tokio::task::JoinHandle<()>,
}

impl NullServer {
    async fn start(batch: usize) -> anyhow::Result<NullServer> {
        let ack = axum::body::Bytes::from(workload::null_ack(batch));
        let app = axum::Router::new()
            .route(
                "/v1/orgs/{org}/events",
                axum::routing::post(|body: axum::body::Bytes| async move {
                    let _ = body.len();
                    (
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        ack,
                    )
                }),
            )
            .layer(axum::extract::DefaultBodyLimit::disable());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(NullServer {
            target: Target::new(url, "none".into())?,
            task,
        })
    }
}

impl Drop for NullServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A `trail serve` of the bench's own.
/// Where the bench's Trail keeps its store: SQLite in its data directory, or PostgreSQL
/// (`--database`): a server of the bench's own, or a database given by its URL.
struct StoreUnderTest {
    location: trail_store::Location,
    /// The bench's own PostgreSQL, for `--database local` (stopped when dropped).
    _server: Option<trail_store::postgres::local::LocalServer>,
    /// As the report names it.
    what: String,
}

impl StoreUnderTest {
    async fn new(database: Option<&str>, data: &Path) -> anyhow::Result<StoreUnderTest> {
        let (url, server, what) = match database {
            None => (
                None,
                None,
                "embedded SQLite, WAL synced at every group commit".to_owned(),
            ),
            Some("local") => {
                let server =
                    trail_store::postgres::local::LocalServer::start(postgres::DURABLE_OPTIONS)
                        .map_err(|e| anyhow::anyhow!("--database local: {e}"))?;
                let admin = server.url("postgres");
                let (client, connection) =
                    tokio_postgres::connect(&admin, tokio_postgres::NoTls).await?;
                tokio::spawn(connection);
                client.batch_execute("CREATE DATABASE trail").await?;
                let what = format!(
                    "PostgreSQL ({}, the bench's own server, every commit durable)",
                    server.version
                );
                (Some(server.url("trail")), Some(server), what)
            }
            Some(url) => (
                Some(url.to_owned()),
                None,
                "PostgreSQL (a database given by --database)".to_owned(),
            ),
        };
        let location = trail_store::Location::of(url.as_deref(), data)
            .map_err(|e| anyhow::anyhow!("--database: {e}"))?;
        Ok(StoreUnderTest {
            location,
            _server: server,
            what,
        })
    }

    /// What `trail serve` is told of it.
    fn serve_args(&self) -> Vec<String> {
        match &self.location {
            trail_store::Location::Postgres(url) => vec!["--database".into(), url.clone()],
            trail_store::Location::Sqlite(_) => Vec::new(),
        }
    }

    /// The store, to read with the server stopped.
    async fn open_for_reads(&self) -> anyhow::Result<std::sync::Arc<dyn trail_store::Store>> {
        Ok(self.location.open_existing().await?)
    }

    /// Events stored, and the bytes the store takes (PostgreSQL: its tables, their indexes
    /// and TOAST).
    async fn size(&self) -> anyhow::Result<(u64, u64)> {
        match &self.location {
            trail_store::Location::Sqlite(dir) => {
                bytes_on_disk(&dir.join(trail_store::sqlite::DB_FILE))
            }
            trail_store::Location::Postgres(url) => {
                let (client, connection) =
                    tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
                tokio::spawn(connection);
                client.batch_execute("VACUUM ANALYZE").await?;
                let events: i64 = client
                    .query_one("SELECT count(*) FROM events", &[])
                    .await?
                    .get(0);
                let bytes: i64 = client
                    .query_one(
                        "SELECT sum(pg_total_relation_size(c.oid))::bigint FROM pg_class c \
                         JOIN pg_namespace n ON n.oid = c.relnamespace \
                         WHERE n.nspname = 'public' AND c.relkind = 'r'",
                        &[],
                    )
                    .await?
                    .get(0);
                Ok((events as u64, bytes as u64))
            }
        }
    }
}

struct Server {
    child: Child,
    target: Target,
    data: PathBuf,
}

impl Server {
    fn start(data: &Path, store: &StoreUnderTest) -> anyhow::Result<Server> {
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
            .args(store.serve_args())
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
            target: Target::new(url, token)?,
            data: data.to_owned(),
        })
    }

    fn peak_rss_kib(&self) -> Option<u64> {
        status_kib(self.child.id(), "VmHWM:")
    }

    /// Stops the server gracefully. (A run that fails stops it at once, by `Drop`.)
    fn stop(mut self) -> anyhow::Result<()> {
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
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

struct IngestResult {
    clients: usize,
    batch: usize,
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
    target: &Target,
    work: &Workload,
    batches: usize,
    args: &BenchArgs,
    max: Duration,
) -> anyhow::Result<IngestResult> {
    let next = Arc::new(AtomicUsize::new(0));
    let url = format!("{}/v1/orgs/{ORG}/events", target.url);
    let started = Instant::now();
    let deadline = started + max;
    let tasks: Vec<_> = (0..args.clients)
        .map(|_| {
            let (work, next, url) = (work.clone(), next.clone(), url.clone());
            let (client, token) = (target.client.clone(), target.token.clone());
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
                    let signed = send_batch(&client, &url, &token, body).await?;
                    latencies.push(t.elapsed());
                    done_at.push(started.elapsed().as_secs_f64());
                    covered += usize::from(signed);
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
    Ok(IngestResult {
        clients: args.clients,
        batch: args.batch,
        curve: curve(&done_at, args.batch),
        events,
        covered,
        batches: done,
        seconds,
        rate: events as f64 / seconds,
        p50_ms,
        p99_ms,
    })
}

/// Sends one batch and waits for its acknowledgement; whether the acknowledgement carries a
/// signed checkpoint that covers every event of the batch.
async fn send_batch(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    body: Vec<u8>,
) -> anyhow::Result<bool> {
    let resp = client
        .post(url)
        .timeout(BATCH_TIMEOUT)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await?;
    if !resp.status().is_success() {
        bail!("ingest failed: {} {}", resp.status(), resp.text().await?);
    }
    workload::covered(&resp.bytes().await?)
}

/// Acknowledgement latency when the server is not saturated.
struct PacedResult {
    /// The rate offered, events per second.
    rate: f64,
    batches: usize,
    /// From the first batch's due time to the last acknowledgement.
    seconds: f64,
    covered: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    /// The embedded store's writer held at the WAL's gate during these batches (so that
    /// the WAL starts over): how often, and for how long in all. `None` if the server
    /// reported none (on PostgreSQL, always).
    held: Option<Recorded>,
    /// The embedded store's commits during these batches (`None` on PostgreSQL).
    commits: Option<Recorded>,
    /// The embedded store's groups during these batches, their commits included.
    groups: Option<Recorded>,
}

/// What one of the server's histograms (in seconds) has recorded so far, from its `/metrics`:
/// how many observations, their sum, and how many fell at or under each bucket's bound.
#[derive(Clone, Debug, Default, PartialEq)]
struct Recorded {
    count: u64,
    seconds: f64,
    /// (upper bound in seconds, observations at or under it), ascending.
    buckets: Vec<(f64, u64)>,
}

/// The writer's holds at the WAL's gate.
const GATE_HOLDS: &str = "trail_wal_writer_held_duration_seconds";
/// The writer's commits: the WAL written and synced.
const COMMITS: &str = "trail_store_commit_duration_seconds";
/// The writer's groups, from the start of the transaction to its commit.
const GROUPS: &str = "trail_store_group_duration_seconds";

impl Recorded {
    /// The histogram `name` in a Prometheus exposition; `None` if it has none (a server on
    /// PostgreSQL, or one that has not recorded it yet).
    fn of_metrics(text: &str, name: &str) -> Option<Recorded> {
        let value = |rest: &str| rest.trim().parse::<f64>().ok();
        let (mut count, mut seconds, mut buckets) = (None, None, Vec::new());
        for line in text.lines() {
            let Some(rest) = line.strip_prefix(name) else {
                continue;
            };
            if let Some(v) = rest.strip_prefix("_count ") {
                count = value(v);
            } else if let Some(v) = rest.strip_prefix("_sum ") {
                seconds = value(v);
            } else if let Some((le, v)) = rest
                .strip_prefix("_bucket{le=\"")
                .and_then(|r| r.split_once("\"} "))
            {
                let le = if le == "+Inf" {
                    Some(f64::INFINITY)
                } else {
                    value(le)
                };
                if let (Some(le), Some(v)) = (le, value(v)) {
                    buckets.push((le, v as u64));
                }
            }
        }
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        Some(Recorded {
            count: count? as u64,
            seconds: seconds?,
            buckets,
        })
    }

    /// The server's `/metrics`, to read histograms from.
    async fn exposition(target: &Target) -> anyhow::Result<String> {
        Ok(target
            .client
            .get(format!("{}/metrics", target.url))
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?)
    }

    /// What was recorded between `before` and `self`.
    fn since(self, before: Option<&Recorded>) -> Recorded {
        let Some(before) = before else {
            return self;
        };
        let earlier = |le: f64| {
            before
                .buckets
                .iter()
                .find(|(b, _)| *b == le)
                .map_or(0, |(_, n)| *n)
        };
        Recorded {
            count: self.count.saturating_sub(before.count),
            seconds: (self.seconds - before.seconds).max(0.0),
            buckets: self
                .buckets
                .iter()
                .map(|&(le, n)| (le, n.saturating_sub(earlier(le))))
                .collect(),
        }
    }

    fn mean_ms(&self) -> f64 {
        self.seconds * 1000.0 / self.count.max(1) as f64
    }

    /// How many, their mean, and how many took over 10, 25 and 50 ms.
    fn json(&self) -> Value {
        json!({
            "count": self.count,
            "meanMs": self.mean_ms(),
            "over10Ms": self.over(0.01),
            "over25Ms": self.over(0.025),
            "over50Ms": self.over(0.05),
        })
    }

    /// Observations over `bound` seconds, which is one of the buckets' bounds; `None` if it
    /// is not.
    fn over(&self, bound: f64) -> Option<u64> {
        let (_, at_most) = self.buckets.iter().find(|(le, _)| *le == bound)?;
        Some(self.count.saturating_sub(*at_most))
    }
}

/// Offers batches `first..` at `rate` events/s on a fixed schedule for `seconds` (at most
/// `most` batches), each sent from its own task when its time comes, whether or not earlier
/// ones were answered (an open loop: a slow acknowledgement does not hold back the requests
/// after it, so it cannot hide the latency they would have seen). Each batch's latency runs
/// from its scheduled time to its acknowledgement. The bodies are made ahead on a thread of
/// their own, so that making one never delays sending another.
async fn paced(
    target: &Target,
    work: &Workload,
    first: usize,
    rate: f64,
    seconds: f64,
    most: usize,
) -> anyhow::Result<PacedResult> {
    let url = format!("{}/v1/orgs/{ORG}/events", target.url);
    let period = Duration::from_secs_f64(work.batch as f64 / rate.max(1.0));
    let batches = if rate > 0.0 {
        ((seconds / period.as_secs_f64()).ceil() as usize).clamp(1, most.max(1))
    } else {
        0
    };
    let (bodies, mut made) = tokio::sync::mpsc::channel(2);
    let maker = {
        let work = work.clone();
        tokio::task::spawn_blocking(move || {
            for k in 0..batches {
                if bodies.blocking_send(work.body(first + k)).is_err() {
                    return;
                }
            }
        })
    };
    let before = Recorded::exposition(target).await?;
    let started = tokio::time::Instant::now();
    let mut sent = Vec::with_capacity(batches);
    for k in 0..batches {
        let body = made
            .recv()
            .await
            .context("the paced batches' maker stopped")?;
        let due = started + period * k as u32;
        tokio::time::sleep_until(due).await;
        let (client, url, token) = (target.client.clone(), url.clone(), target.token.clone());
        sent.push(tokio::spawn(async move {
            let signed = send_batch(&client, &url, &token, body).await?;
            anyhow::Ok((due.elapsed(), signed))
        }));
    }
    maker.await?;
    let mut latencies = Vec::with_capacity(batches);
    let mut covered = 0;
    for task in sent {
        let (latency, signed) = task.await??;
        latencies.push(latency);
        covered += usize::from(signed);
    }
    let seconds = started.elapsed().as_secs_f64();
    let (p50_ms, p99_ms) = percentiles(&mut latencies);
    // A histogram appears at its first observation (the gate's at the server's first
    // hold): none yet is none recorded.
    let after = Recorded::exposition(target).await?;
    let between = |name: &str| {
        Recorded::of_metrics(&after, name)
            .map(|a| a.since(Recorded::of_metrics(&before, name).as_ref()))
    };
    let (held, commits, groups) = (between(GATE_HOLDS), between(COMMITS), between(GROUPS));
    Ok(PacedResult {
        rate: if batches > 0 { rate } else { 0.0 },
        batches,
        seconds,
        covered,
        p50_ms,
        p99_ms,
        max_ms: latencies.last().map_or(0.0, |l| l.as_secs_f64() * 1000.0),
        held,
        commits,
        groups,
    })
}

impl IngestResult {
    fn json(&self) -> Value {
        json!({
            "events": self.events,
            "batches": self.batches,
            "batchesWithCoveringCheckpoint": self.covered,
            "seconds": self.seconds,
            "eventsPerSecond": self.rate,
            "ackP50Ms": self.p50_ms,
            "ackP99Ms": self.p99_ms,
            "curve": curve_json(&self.curve),
        })
    }
}

/// The rate over each tenth of a run, from when each batch was acknowledged (sorted, in
/// seconds from the start): (events stored by the end of the tenth, events/s over it).
fn curve(done_at: &[f64], batch: usize) -> Vec<(usize, f64)> {
    let tenth = done_at.len() / 10;
    let mut curve = Vec::new();
    if tenth > 0 {
        let mut from = 0.0;
        for k in 1..=10 {
            let at = done_at[k * tenth - 1];
            curve.push((
                k * tenth * batch,
                (tenth * batch) as f64 / (at - from).max(1e-9),
            ));
            from = at;
        }
    }
    curve
}

fn curve_json(curve: &[(usize, f64)]) -> Value {
    curve
        .iter()
        .map(|(upto, rate)| json!({ "eventsStored": upto, "eventsPerSecond": rate }))
        .collect()
}

/// Offline verification of the stopped store, in events per second.
async fn time_verification(data: &Path, store: &StoreUnderTest) -> anyhow::Result<f64> {
    let key = trail_core::checkpoint::SignerKey::parse(&std::fs::read_to_string(
        data.join(trail_server::log::KEY_FILE),
    )?)?
    .verifier();
    let store = store.open_for_reads().await?;
    let started = Instant::now();
    let line = crate::verify::verify_stored_org(&*store, ORG, &key, true)
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

/// How one query shape fared: p50 and p99 of a round (ms), and the rounds refused (a read
/// stopped at its deadline answers 503), with the first refusal's status.
struct Timed {
    p50: f64,
    p99: f64,
    rounds: usize,
    failed: usize,
    failure: Option<String>,
}

/// Times `n` rounds of GETs of `paths` (under the org), one after another. A refused round
/// is counted and timed like the others, not an end to the run: a read that is too slow is
/// a finding to report.
async fn time_queries(target: &Target, paths: &[&str], n: usize) -> anyhow::Result<Timed> {
    let mut latencies = Vec::with_capacity(n);
    let (mut failed, mut failure) = (0, None);
    for _ in 0..n {
        let t = Instant::now();
        let mut ok = true;
        for path in paths {
            let resp = target
                .client
                .get(format!("{}/v1/orgs/{ORG}/{path}", target.url))
                .bearer_auth(&target.token)
                .send()
                .await?;
            let status = resp.status();
            resp.bytes().await?;
            if !status.is_success() {
                ok = false;
                failure.get_or_insert_with(|| status.to_string());
            }
        }
        failed += usize::from(!ok);
        latencies.push(t.elapsed());
    }
    let (p50, p99) = percentiles(&mut latencies);
    Ok(Timed {
        p50,
        p99,
        rounds: n,
        failed,
        failure,
    })
}

/// Times `n` rounds of `paths` read from the store directly, parsed as the server parses
/// them; `None` if a path is not a read the store answers alone (`perf` sums tallies and
/// sketches above the store).
async fn time_in_store(
    store: &dyn trail_store::Store,
    paths: &[&str],
    n: usize,
) -> anyhow::Result<Option<Timed>> {
    use trail_server::routes::events::{DEFAULT_BUCKETS, list_params, summed_window};
    let mut latencies = Vec::with_capacity(n);
    let (mut failed, mut failure) = (0, None);
    let bad = |query: &str, e: trail_server::error::ApiError| {
        anyhow::anyhow!("bench query {query:?}: {e}")
    };
    for _ in 0..n {
        let t = Instant::now();
        let mut refused = None;
        for path in paths {
            // One time for the whole read, as the server takes one per request.
            let now = trail_server::now();
            let (read, query) = path.split_once('?').unwrap_or((path, ""));
            let params = list_params(Some(query), now).map_err(|e| bad(query, e))?;
            let done = match read {
                "audit-logs" => store.query(ORG, &params.page_query()).await.map(drop),
                "audit-logs/histogram" => {
                    let f = params.filter;
                    let (since, until) =
                        summed_window(f.since, f.until, now).map_err(|e| bad(query, e))?;
                    store
                        .histogram(ORG, &f, since, until, DEFAULT_BUCKETS)
                        .await
                        .map(drop)
                }
                _ => return Ok(None),
            };
            // A read stopped at its deadline is a finding to report, as over HTTP.
            match done {
                Err(e @ trail_store::StoreError::TimedOut(_)) => refused = Some(e.to_string()),
                other => other?,
            }
        }
        if let Some(why) = refused {
            failed += 1;
            failure.get_or_insert(why);
        }
        latencies.push(t.elapsed());
    }
    let (p50, p99) = percentiles(&mut latencies);
    Ok(Some(Timed {
        p50,
        p99,
        rounds: n,
        failed,
        failure,
    }))
}

/// Records in a page of the timed SIEM export.
const EXPORT_PAGE: usize = 1000;

/// KiB as whole MiB, or a dash.
fn mib(kib: Option<u64>) -> String {
    kib.map_or("-".into(), |k| format!("{:.0}", k as f64 / 1024.0))
}

/// A count of `/proc/PID/io`, in bytes (`write_bytes:`: what the process sent to storage).
fn io_bytes(pid: u32, field: &str) -> Option<u64> {
    proc_figure(pid, "io", field)
}

/// CPU time a process has used, in seconds: all its threads, and its writer thread.
struct CpuTime {
    server_seconds: f64,
    writer_seconds: f64,
}

impl CpuTime {
    /// From `/proc/PID/stat` (user and system time, in clock ticks) and the writer thread's
    /// `schedstat` (time on a CPU, in nanoseconds); `None` where there is no `/proc`.
    fn of(pid: u32) -> Option<CpuTime> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The fields after the command name, which is in parentheses and may hold spaces.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        // SAFETY: sysconf reads a constant of the system; it has no preconditions.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let writer = std::fs::read_dir(format!("/proc/{pid}/task"))
            .ok()?
            .flatten()
            .find(|t| {
                std::fs::read_to_string(t.path().join("comm"))
                    .is_ok_and(|c| c.trim() == trail_store::sqlite::WRITER_THREAD)
            })?;
        let ns: u64 = std::fs::read_to_string(writer.path().join("schedstat"))
            .ok()?
            .split_whitespace()
            .next()?
            .parse()
            .ok()?;
        Some(CpuTime {
            server_seconds: ticks as f64 / per_second,
            writer_seconds: ns as f64 / 1e9,
        })
    }

    fn since(&self, before: &CpuTime) -> CpuTime {
        CpuTime {
            server_seconds: self.server_seconds - before.server_seconds,
            writer_seconds: self.writer_seconds - before.writer_seconds,
        }
    }
}

/// A figure of `/proc/PID/status`, in KiB.
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    proc_figure(pid, "status", field)
}

/// The number after `field` in `/proc/PID/FILE`.
fn proc_figure(pid: u32, file: &str, field: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/{file}"))
        .ok()?
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The weekly archive of the whole log: its events, bytes and time, and the server's
/// resident memory before and (sampled every 20 ms) while it was built and sent.
struct ArchiveRun {
    events: u64,
    bytes: u64,
    seconds: f64,
    rss_before_kib: Option<u64>,
    rss_max_kib: Option<u64>,
    /// The anonymous part (the heap: what the build itself holds), without the pages of
    /// the database file its readers map.
    anon_before_kib: Option<u64>,
    anon_max_kib: Option<u64>,
    /// `trail verify --archive` of the downloaded ZIP: its time and peak resident memory.
    verify_seconds: f64,
    verify_rss_max_kib: Option<u64>,
}

/// Downloads this week's archive, which holds every event the run stored (all received
/// this week): the build streams the log page by page through per-day spools.
async fn time_archive(server: &Server) -> anyhow::Result<ArchiveRun> {
    let target = &server.target;
    let week = trail_core::archive::Week::containing(trail_server::now());
    let pid = server.child.id();
    let rss_before_kib = status_kib(pid, "VmRSS:");
    let anon_before_kib = status_kib(pid, "RssAnon:");
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let sampler = tokio::spawn(async move {
        let (mut rss, mut anon) = (None::<u64>, None::<u64>);
        let most = |m: Option<u64>, k: Option<u64>| match (m, k) {
            (Some(m), Some(k)) => Some(m.max(k)),
            (m, k) => m.or(k),
        };
        loop {
            rss = most(rss, status_kib(pid, "VmRSS:"));
            anon = most(anon, status_kib(pid, "RssAnon:"));
            tokio::select! {
                _ = stopped.changed() => return (rss, anon),
                () = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        }
    });
    let start = Instant::now();
    let resp = target
        .client
        .get(format!("{}/v1/orgs/{ORG}/archives/{week}", target.url))
        .bearer_auth(&target.token)
        .send()
        .await?;
    if !resp.status().is_success() {
        bail!("the archive answered {}", resp.status());
    }
    let zip = resp.bytes().await?;
    let seconds = start.elapsed().as_secs_f64();
    let _ = stop.send(true);
    let (rss_max_kib, anon_max_kib) = sampler.await?;
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(&zip))?;
    let mut manifest = Vec::new();
    std::io::Read::read_to_end(
        &mut archive.by_name(trail_core::archive::MANIFEST)?,
        &mut manifest,
    )?;
    let manifest: trail_core::archive::Manifest = serde_json::from_slice(&manifest)?;
    let file = tempfile::NamedTempFile::new_in(server.data.parent().unwrap_or(&server.data))?;
    std::fs::write(file.path(), &zip)?;
    drop(zip);
    let (verify_seconds, verify_rss_max_kib) =
        time_archive_check(&server.data, file.path()).await?;
    Ok(ArchiveRun {
        events: manifest.end_seq - manifest.first_seq,
        bytes: std::fs::metadata(file.path())?.len(),
        seconds,
        rss_before_kib,
        rss_max_kib,
        anon_before_kib,
        anon_max_kib,
        verify_seconds,
        verify_rss_max_kib,
    })
}

/// Runs `trail verify --archive` on `zip` against the server's key, as an auditor would,
/// sampling its resident memory: the seconds it took and the most it held.
async fn time_archive_check(data: &Path, zip: &Path) -> anyhow::Result<(f64, Option<u64>)> {
    let key = trail_core::checkpoint::SignerKey::parse(&std::fs::read_to_string(
        data.join(trail_server::log::KEY_FILE),
    )?)?
    .verifier()
    .to_string();
    let zip = zip.to_owned();
    tokio::task::spawn_blocking(move || -> anyhow::Result<(f64, Option<u64>)> {
        let started = Instant::now();
        let mut child = Command::new(std::env::current_exe()?)
            .args(["verify", "--archive"])
            .arg(&zip)
            .args(["--key", &key])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let mut rss = None::<u64>;
        let status = loop {
            if let Some(kib) = status_kib(child.id(), "VmRSS:") {
                rss = Some(rss.map_or(kib, |r| r.max(kib)));
            }
            match child.try_wait()? {
                Some(status) => break status,
                None => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        let seconds = started.elapsed().as_secs_f64();
        if !status.success() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                std::io::Read::read_to_string(&mut e, &mut err)?;
            }
            bail!("the bench's archive does not verify: {}", err.trim());
        }
        Ok((seconds, rss))
    })
    .await?
}

/// The SIEM pull of the whole log: how many events, in how long, and each page's time.
struct ExportRun {
    events: u64,
    seconds: f64,
    page: Timed,
}

/// Pulls the whole log through the SIEM export, as a SIEM's backfill does: from the first
/// event received, page after page by cursor, until the export says nothing more is there.
async fn time_export(target: &Target) -> anyhow::Result<ExportRun> {
    let start = Instant::now();
    let mut pages = Vec::new();
    let (mut events, mut cursor) = (0u64, None::<String>);
    loop {
        let mut url = format!(
            "{}/v1/orgs/{ORG}/audit-logs/export?format=ndjson&limit={EXPORT_PAGE}",
            target.url
        );
        match &cursor {
            Some(c) => url.push_str(&format!("&cursor={c}")),
            None => url.push_str("&since=1970-01-01T00:00:00Z"),
        }
        let t = Instant::now();
        let resp = target
            .client
            .get(url)
            .bearer_auth(&target.token)
            .send()
            .await?;
        if !resp.status().is_success() {
            bail!("the export answered {}", resp.status());
        }
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let more = header("trail-more").as_deref() == Some("true");
        events += header("trail-records")
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        cursor = header("trail-cursor");
        resp.bytes().await?;
        pages.push(t.elapsed());
        if !more {
            break;
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let rounds = pages.len();
    let (p50, p99) = percentiles(&mut pages);
    Ok(ExportRun {
        events,
        seconds,
        page: Timed {
            p50,
            p99,
            rounds,
            failed: 0,
            failure: None,
        },
    })
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

/// A baseline's load: events, rate, acknowledgement latency, size on disk, and the rate by
/// tenths as its table grew.
struct Baseline {
    events: usize,
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    bytes: u64,
    curve: Vec<(usize, f64)>,
}

impl Baseline {
    fn json(&self) -> Value {
        json!({
            "events": self.events,
            "eventsPerSecond": self.rate,
            "ackP50Ms": self.p50_ms,
            "ackP99Ms": self.p99_ms,
            "bytes": self.bytes,
            "bytesPerEvent": self.bytes as f64 / self.events.max(1) as f64,
            "curve": curve_json(&self.curve),
        })
    }
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
    let mut done_at = Vec::new();
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
                let request = e.request.as_ref();
                stmt.execute(rusqlite::params![
                    ORG,
                    e.timestamp,
                    e.actor.id,
                    e.action,
                    request.map(|r| &r.route),
                    request.map(|r| r.status),
                    e.record(),
                ])?;
                events += 1;
            }
        }
        tx.commit()?;
        latencies.push(t.elapsed());
        done_at.push((started.elapsed() - making).as_secs_f64());
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
        curve: curve(&done_at, work.batch),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The bench reads the holds and the commits from what the server's own recorder
    /// renders, with the buckets it is configured with.
    #[test]
    fn histograms_are_read_from_the_servers_metrics() {
        let handle = trail_server::metrics::handle();
        let before = Recorded::of_metrics(&handle.render(), GATE_HOLDS);
        for s in [0.25, 0.5] {
            metrics::histogram!("trail_wal_writer_held_duration_seconds").record(s);
        }
        let after = Recorded::of_metrics(&handle.render(), GATE_HOLDS).expect("holds recorded");
        let held = after.since(before.as_ref());
        assert_eq!((held.count, held.seconds), (2, 0.75));
        assert_eq!(held.over(0.25), Some(1));
        assert_eq!(held.over(0.1), Some(2));
        assert_eq!(held.over(0.5), Some(0));
        assert_eq!(held.over(0.3), None, "not a bucket's bound");
        assert_eq!(held.buckets.last(), Some(&(f64::INFINITY, 2)));

        let before = Recorded::of_metrics(&handle.render(), COMMITS);
        for s in [0.0004, 0.003, 0.012, 0.03] {
            metrics::histogram!("trail_store_commit_duration_seconds").record(s);
        }
        let commits = Recorded::of_metrics(&handle.render(), COMMITS)
            .expect("commits recorded")
            .since(before.as_ref());
        assert_eq!(commits.count, 4);
        assert_eq!(
            [0.01, 0.025, 0.05].map(|b| commits.over(b)),
            [Some(2), Some(1), Some(0)]
        );
        assert_eq!(
            Recorded::of_metrics("trail_wal_frames 12\n", GATE_HOLDS),
            None
        );
    }
}
