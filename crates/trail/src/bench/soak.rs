//! `trail bench --soak SECONDS`: the server under the bench's ingest load for minutes, with
//! everything else a deployment does at the same time: readers paging the log, a SIEM
//! pulling the export, live-tail clients that read, and live-tail clients that never read a
//! byte. It reports the ingest rate and acknowledgement latency over the run, the readers'
//! latencies, every error, and the server's memory sampled each second; it fails if any
//! request failed, if the export skipped or repeated a seq, or if the export did not reach
//! every event stored.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use super::{
    BenchArgs, ORG, Server, StoreUnderTest, Target, Workload, machine, percentiles, status_kib,
};

/// Live-tail clients that read what they are sent, and ones that never read.
const TAILS_READING: usize = 4;
const TAILS_STALLED: usize = 4;
/// Readers paging the log, each waiting this long between requests.
const READERS: usize = 2;
const READER_PAUSE: Duration = Duration::from_millis(100);
/// The export puller's page, and its wait when it has caught up.
const EXPORT_LIMIT: usize = 1000;
const EXPORT_PAUSE: Duration = Duration::from_secs(1);
const READS: [&str; 3] = [
    "audit-logs?limit=100",
    "audit-logs?actor=user-7&since=1h&limit=100",
    "audit-logs?q=status%3A5xx%20-actor%3Auser-1&limit=50",
];

/// What failed, counted by kind, with the first message of each.
#[derive(Default)]
struct Errors(std::sync::Mutex<std::collections::BTreeMap<String, (u64, String)>>);

impl Errors {
    fn add(&self, kind: &str, message: impl std::fmt::Display) {
        let mut m = self.0.lock().expect("errors lock");
        let e = m.entry(kind.to_owned()).or_insert((0, message.to_string()));
        e.0 += 1;
    }

    fn total(&self) -> u64 {
        self.0
            .lock()
            .expect("errors lock")
            .values()
            .map(|e| e.0)
            .sum()
    }

    fn json(&self) -> Value {
        let m = self.0.lock().expect("errors lock");
        m.iter()
            .map(|(k, (n, first))| (k.clone(), json!({"count": n, "first": first})))
            .collect::<serde_json::Map<_, _>>()
            .into()
    }
}

pub async fn run(args: BenchArgs, seconds: u64) -> anyhow::Result<()> {
    if args.batch == 0 || args.clients == 0 {
        bail!("--batch and --clients must be positive");
    }
    let dir = tempfile::tempdir()?;
    let data = match &args.keep {
        Some(d) if d.exists() => bail!("--keep {}: it exists already", d.display()),
        Some(d) => d.clone(),
        None => dir.path().join("server"),
    };
    // More batches than any machine sends in the time: the run ends by the clock.
    let work = Workload::new(
        (seconds as usize).max(1) * 200_000 / args.batch * args.batch,
        args.batch,
    );
    let store = StoreUnderTest::new(args.database.as_deref(), &data).await?;
    let server = Server::start(&data, &store)?;
    let pid = server.child.id();
    let target = Arc::new(Target::new(
        server.target.url.clone(),
        server.target.token.clone(),
    )?);
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(Errors::default());
    let started = Instant::now();
    let run_for = Duration::from_secs(seconds);

    // Memory, each second.
    let memory = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut samples = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                if let Some(kib) = status_kib(pid, "VmRSS:") {
                    samples.push((started.elapsed().as_secs_f64(), kib));
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            samples
        })
    };

    // Live tails: some read every event, some never read a byte.
    let stream_url = format!("{}/v1/orgs/{ORG}/audit-logs/stream", target.url);
    let tail_bytes = Arc::new(AtomicU64::new(0));
    let mut tails = Vec::new();
    for _ in 0..TAILS_READING {
        let (target, url, bytes, errors) = (
            target.clone(),
            stream_url.clone(),
            tail_bytes.clone(),
            errors.clone(),
        );
        tails.push(tokio::spawn(async move {
            match target
                .client
                .get(&url)
                .bearer_auth(&target.token)
                .send()
                .await
            {
                Ok(mut r) if r.status().is_success() => loop {
                    match r.chunk().await {
                        Ok(Some(c)) => {
                            bytes.fetch_add(c.len() as u64, Ordering::Relaxed);
                        }
                        Ok(None) => {
                            errors.add("live tail", "the stream ended");
                            return;
                        }
                        Err(e) => {
                            errors.add("live tail", e);
                            return;
                        }
                    }
                },
                Ok(r) => errors.add("live tail", r.status()),
                Err(e) => errors.add("live tail", e),
            }
        }));
    }
    let mut stalled = Vec::new();
    for _ in 0..TAILS_STALLED {
        let r = target
            .client
            .get(&stream_url)
            .bearer_auth(&target.token)
            .send()
            .await;
        match r {
            Ok(r) if r.status().is_success() => stalled.push(r),
            Ok(r) => errors.add("stalled live tail", r.status()),
            Err(e) => errors.add("stalled live tail", e),
        }
    }

    // Readers paging the newest events.
    let read_latencies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut readers = Vec::new();
    for k in 0..READERS {
        let (target, stop, errors, latencies) = (
            target.clone(),
            stop.clone(),
            errors.clone(),
            read_latencies.clone(),
        );
        readers.push(tokio::spawn(async move {
            let mut i = k;
            while !stop.load(Ordering::Relaxed) {
                let url = format!("{}/v1/orgs/{ORG}/{}", target.url, READS[i % READS.len()]);
                i += 1;
                let t = Instant::now();
                match target
                    .client
                    .get(url)
                    .bearer_auth(&target.token)
                    .send()
                    .await
                {
                    Ok(r) if r.status().is_success() => match r.bytes().await {
                        Ok(_) => latencies.lock().expect("latencies").push(t.elapsed()),
                        Err(e) => errors.add("read", e),
                    },
                    Ok(r) => errors.add("read", r.status()),
                    Err(e) => errors.add("read", e),
                }
                tokio::time::sleep(READER_PAUSE).await;
            }
        }));
    }

    // A SIEM following the export from the start: every seq once, in order.
    let puller = {
        let (target, stop, errors) = (target.clone(), stop.clone(), errors.clone());
        tokio::spawn(async move {
            let mut cursor: Option<String> = None;
            let mut next_seq = 0u64;
            let mut drained = false;
            let mut latencies = Vec::new();
            let mut signed = 0u64;
            loop {
                let mut url = format!(
                    "{}/v1/orgs/{ORG}/audit-logs/export?limit={EXPORT_LIMIT}",
                    target.url
                );
                match &cursor {
                    Some(c) => url.push_str(&format!("&cursor={c}")),
                    None => url.push_str("&since=1970-01-01T00:00:00Z"),
                }
                let t = Instant::now();
                let page: Value = match target
                    .client
                    .get(url)
                    .bearer_auth(&target.token)
                    .send()
                    .await
                {
                    Ok(r) if r.status().is_success() => match r.json().await {
                        Ok(v) => v,
                        Err(e) => {
                            errors.add("export", e);
                            return (next_seq, latencies, signed);
                        }
                    },
                    Ok(r) => {
                        errors.add("export", r.status());
                        return (next_seq, latencies, signed);
                    }
                    Err(e) => {
                        errors.add("export", e);
                        return (next_seq, latencies, signed);
                    }
                };
                latencies.push(t.elapsed());
                for item in page["items"].as_array().into_iter().flatten() {
                    let seq = item["seq"].as_u64().unwrap_or(u64::MAX);
                    if seq != next_seq {
                        errors.add(
                            "export order",
                            format!("expected seq {next_seq}, got {seq}"),
                        );
                        return (next_seq, latencies, signed);
                    }
                    next_seq += 1;
                }
                signed = page["checkpoint"]["size"].as_u64().unwrap_or(signed);
                cursor = page["cursor"].as_str().map(str::to_owned);
                if page["more"] != true {
                    // Once the writers have stopped, one pull that finds nothing more is
                    // the end.
                    if drained {
                        return (next_seq, latencies, signed);
                    }
                    drained = stop.load(Ordering::Relaxed);
                    if !drained {
                        tokio::time::sleep(EXPORT_PAUSE).await;
                    }
                }
            }
        })
    };

    // Ingest: the bench's clients, each sending its next batch as soon as the last is
    // acknowledged, until the time is up.
    let next = Arc::new(AtomicUsize::new(0));
    let ingest_url = format!("{}/v1/orgs/{ORG}/events", target.url);
    let writers: Vec<_> = (0..args.clients)
        .map(|_| {
            let (work, next, url, target, errors) = (
                work.clone(),
                next.clone(),
                ingest_url.clone(),
                target.clone(),
                errors.clone(),
            );
            tokio::spawn(async move {
                let mut acks = Vec::new();
                while started.elapsed() < run_for {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= work.batches {
                        break;
                    }
                    let body = work.body(i);
                    let t = Instant::now();
                    match super::send_batch(&target.client, &url, &target.token, body).await {
                        Ok(_) => acks.push((started.elapsed().as_secs_f64(), t.elapsed())),
                        Err(e) => errors.add("ingest", format!("{e:#}")),
                    }
                }
                acks
            })
        })
        .collect();
    let mut acks = Vec::new();
    for w in writers {
        acks.extend(w.await?);
    }
    let ingest_seconds = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.await?;
    }
    let (exported_to, mut export_latencies, export_signed) =
        tokio::time::timeout(Duration::from_secs(600), puller)
            .await
            .context("the export puller did not catch up within 10 minutes")??;
    let memory = memory.await?;
    for t in &tails {
        t.abort();
    }
    drop(stalled);
    // Still answering, and how many events the log holds.
    // (The checkpoint is a signed note: origin, size, root, a line each.)
    let note = target
        .client
        .get(format!("{}/v1/orgs/{ORG}/log/checkpoint", target.url))
        .bearer_auth(&target.token)
        .send()
        .await?
        .error_for_status()
        .context("the server after the soak")?
        .text()
        .await?;
    let log_size = note
        .lines()
        .nth(1)
        .and_then(|l| l.parse().ok())
        .context("the log's checkpoint has no size")?;
    let peak_rss = server.peak_rss_kib();
    server.stop()?;

    let report = Soak {
        command: format!(
            "trail bench --soak {seconds} --batch {} --clients {}{}",
            args.batch,
            args.clients,
            match &args.database {
                Some(d) if d == "local" => " --database local",
                Some(_) => " --database postgres://…",
                None => "",
            }
        ),
        machine: machine(),
        seconds: ingest_seconds,
        batch: args.batch,
        acks,
        reads: std::mem::take(&mut *read_latencies.lock().expect("latencies")),
        export: std::mem::take(&mut export_latencies),
        exported_to,
        export_signed,
        log_size,
        tail_bytes: tail_bytes.load(Ordering::Relaxed),
        memory,
        peak_rss,
        errors,
    };
    std::fs::write(&args.json, serde_json::to_vec_pretty(&report.json())?)
        .with_context(|| format!("writing {}", args.json.display()))?;
    let text = report.markdown();
    crate::cli::output::write(|out| std::io::Write::write_all(out, text.as_bytes()))?;
    report.verdict()
}

struct Soak {
    command: String,
    machine: String,
    seconds: f64,
    batch: usize,
    /// Each acknowledgement: when it came (seconds into the run) and how long it took.
    acks: Vec<(f64, Duration)>,
    reads: Vec<Duration>,
    export: Vec<Duration>,
    /// The export reached every seq below this.
    exported_to: u64,
    /// The size of the checkpoint its last page carried: what it had to reach.
    export_signed: u64,
    /// The log's size (its newest checkpoint) after the run.
    log_size: u64,
    tail_bytes: u64,
    /// The server's resident memory, each second: (seconds into the run, KiB).
    memory: Vec<(f64, u64)>,
    peak_rss: Option<u64>,
    errors: Arc<Errors>,
}

impl Soak {
    /// Per tenth of the run: events/s, ack p99 in ms, and the largest RSS in MiB.
    fn tenths(&self) -> Vec<(f64, f64, f64)> {
        let tenth = self.seconds / 10.0;
        (0..10)
            .map(|k| {
                let (from, to) = (k as f64 * tenth, (k + 1) as f64 * tenth);
                let mut lat: Vec<Duration> = self
                    .acks
                    .iter()
                    .filter(|(at, _)| *at >= from && *at < to)
                    .map(|(_, d)| *d)
                    .collect();
                let rate = (lat.len() * self.batch) as f64 / tenth.max(1e-9);
                let (_, p99) = percentiles(&mut lat);
                let rss = self
                    .memory
                    .iter()
                    .filter(|(at, _)| *at >= from && *at < to)
                    .map(|(_, kib)| *kib)
                    .max()
                    .unwrap_or(0);
                (rate, p99, rss as f64 / 1024.0)
            })
            .collect()
    }

    fn ack_percentiles(&self) -> (f64, f64, f64) {
        let mut lat: Vec<Duration> = self.acks.iter().map(|(_, d)| *d).collect();
        let (p50, p99) = percentiles(&mut lat);
        (
            p50,
            p99,
            lat.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
        )
    }

    fn json(&self) -> Value {
        let (p50, p99, max) = self.ack_percentiles();
        let (read_p50, read_p99) = percentiles(&mut self.reads.clone());
        let (export_p50, export_p99) = percentiles(&mut self.export.clone());
        json!({
            "command": self.command,
            "machine": self.machine,
            "seconds": self.seconds,
            "eventsAcknowledged": self.acks.len() * self.batch,
            "eventsPerSecond": (self.acks.len() * self.batch) as f64 / self.seconds,
            "ackP50Ms": p50,
            "ackP99Ms": p99,
            "ackMaxMs": max,
            "reads": self.reads.len(),
            "readP50Ms": read_p50,
            "readP99Ms": read_p99,
            "exportPages": self.export.len(),
            "exportPageP50Ms": export_p50,
            "exportPageP99Ms": export_p99,
            "exportedThroughSeq": self.exported_to,
            "logSize": self.log_size,
            "liveTailBytes": self.tail_bytes,
            "peakRssKib": self.peak_rss,
            "tenths": self.tenths().iter().map(|(rate, p99, rss)| json!({
                "eventsPerSecond": rate, "ackP99Ms": p99, "rssMib": rss,
            })).collect::<Vec<_>>(),
            "errors": self.errors.json(),
        })
    }

    fn markdown(&self) -> String {
        let (p50, p99, max) = self.ack_percentiles();
        let (read_p50, read_p99) = percentiles(&mut self.reads.clone());
        let (export_p50, export_p99) = percentiles(&mut self.export.clone());
        let events = self.acks.len() * self.batch;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "Command: `{}`  \nMachine: {}\n",
            self.command, self.machine
        );
        let _ = writeln!(
            s,
            "Beside ingest: {READERS} readers paging the log, one export puller, \
             {TAILS_READING} live tails reading and {TAILS_STALLED} that never read.\n"
        );
        let _ = writeln!(s, "| figure | value |\n|---|---|");
        let _ = writeln!(
            s,
            "| ingest, durable ack | {:.0} events/s ({events} events in {:.0} s) |",
            events as f64 / self.seconds,
            self.seconds
        );
        let _ = writeln!(
            s,
            "| ack latency p50 / p99 / max | {p50:.1} / {p99:.1} / {max:.0} ms |"
        );
        let _ = writeln!(
            s,
            "| reads during ingest p50 / p99 | {read_p50:.1} / {read_p99:.1} ms ({} reads) |",
            self.reads.len()
        );
        let _ = writeln!(
            s,
            "| export page p50 / p99 | {export_p50:.1} / {export_p99:.1} ms ({} pages; every seq below {} once, in order; the log holds {}) |",
            self.export.len(),
            self.exported_to,
            self.log_size
        );
        let _ = writeln!(
            s,
            "| live tail, read by 4 clients | {:.1} MiB |",
            self.tail_bytes as f64 / 1048576.0
        );
        let _ = writeln!(
            s,
            "| server RSS peak | {} |",
            self.peak_rss
                .map_or("?".into(), |k| format!("{:.0} MiB", k as f64 / 1024.0))
        );
        let _ = writeln!(s, "| errors | {} |\n", self.errors.total());
        let _ = writeln!(
            s,
            "| tenth | events/s | ack p99 | RSS (largest) |\n|---|---|---|---|"
        );
        for (k, (rate, p99, rss)) in self.tenths().iter().enumerate() {
            let _ = writeln!(s, "| {} | {rate:.0} | {p99:.1} ms | {rss:.0} MiB |", k + 1);
        }
        for (kind, (n, first)) in self.errors.0.lock().expect("errors lock").iter() {
            let _ = writeln!(s, "\nerrors in {kind}: {n}, the first: {first}");
        }
        s
    }

    /// The run passes if nothing failed and the export reached every event its last
    /// checkpoint covers (the log grows on by the record of each call, the pulls' own).
    fn verdict(&self) -> anyhow::Result<()> {
        let errors = self.errors.total();
        if errors > 0 {
            bail!("the soak saw {errors} errors (listed above)");
        }
        if self.exported_to != self.export_signed || self.export_signed > self.log_size {
            bail!(
                "the export reached seq {} but its last checkpoint covers {} events (the log {})",
                self.exported_to,
                self.export_signed,
                self.log_size
            );
        }
        Ok(())
    }
}
