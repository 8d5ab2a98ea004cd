//! The PostgreSQL baselines of `trail bench`: what a team gets from a home-made audit table
//! in PostgreSQL on the same machine, in the same run. The bench starts a throwaway server
//! itself (`trail_store::postgres::local::LocalServer`: initdb into a temporary directory, a
//! Unix socket only, as the `postgres` user when run as root), makes the plain table (the event as `jsonb` beside the columns it is
//! searched by, and the three indexes such a table has: (org, ts), (org, actor, ts),
//! (org, route, ts)), and loads the workload two ways, every write durable
//! (`synchronous_commit = on`): one INSERT per event, and COPY of each batch.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::SinkExt;
use trail_store::postgres::local::{LocalServer, PORT};

use super::workload::Event;
use super::{Baseline, ORG, Workload, curve, percentiles};

/// The PostgreSQL server options of the bench: every commit durable.
pub(super) const DURABLE_OPTIONS: &str =
    "-c shared_buffers=256MB -c max_wal_size=4GB -c synchronous_commit=on -c fsync=on";

/// A PostgreSQL server of the bench's own; stopped when dropped.
pub(super) struct Postgres {
    server: LocalServer,
    pub version: String,
}

impl Postgres {
    /// Starts a server if PostgreSQL is installed; `Err` says why not.
    pub fn start() -> anyhow::Result<Postgres> {
        let server = LocalServer::start(DURABLE_OPTIONS).map_err(anyhow::Error::msg)?;
        Ok(Postgres {
            version: server.version.clone(),
            server,
        })
    }

    async fn connect(&self) -> anyhow::Result<tokio_postgres::Client> {
        let (client, connection) = tokio_postgres::Config::new()
            .host_path(self.server.socket_dir())
            .port(PORT)
            .user("trail")
            .dbname("postgres")
            .connect(tokio_postgres::NoTls)
            .await
            .context("connecting to the bench's PostgreSQL")?;
        tokio::spawn(connection);
        Ok(client)
    }

    /// An empty audit table, as a team would make it.
    async fn fresh_table(&self) -> anyhow::Result<()> {
        self.connect()
            .await?
            .batch_execute(
                "SET client_min_messages = warning;
                 DROP TABLE IF EXISTS audit;
                 CREATE TABLE audit (id bigserial PRIMARY KEY, org text NOT NULL,
                   ts timestamptz NOT NULL, actor text NOT NULL, route text, record jsonb NOT NULL);
                 CREATE INDEX audit_ts ON audit (org, ts);
                 CREATE INDEX audit_actor ON audit (org, actor, ts);
                 CREATE INDEX audit_route ON audit (org, route, ts);",
            )
            .await?;
        Ok(())
    }

    /// The table's size on disk, indexes and TOAST included.
    async fn bytes(&self) -> anyhow::Result<u64> {
        let client = self.connect().await?;
        client.batch_execute("CHECKPOINT").await?;
        let row = client
            .query_one("SELECT pg_total_relation_size('audit')", &[])
            .await?;
        Ok(row.get::<_, i64>(0) as u64)
    }

    /// The workload's first `batches` batches, one INSERT (and one commit) per event, from
    /// `clients` connections; the acknowledgement latency is an event's.
    pub async fn insert_per_event(
        &self,
        work: &Workload,
        batches: usize,
        clients: usize,
        max: Duration,
    ) -> anyhow::Result<Baseline> {
        self.load(work, batches, clients, max, Load::InsertPerEvent)
            .await
    }

    /// The same, one COPY (and one commit) per batch; the latency is a batch's.
    pub async fn copy(
        &self,
        work: &Workload,
        batches: usize,
        clients: usize,
        max: Duration,
    ) -> anyhow::Result<Baseline> {
        self.load(work, batches, clients, max, Load::Copy).await
    }

    async fn load(
        &self,
        work: &Workload,
        batches: usize,
        clients: usize,
        max: Duration,
        how: Load,
    ) -> anyhow::Result<Baseline> {
        self.fresh_table().await?;
        let next = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let deadline = started + max;
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let client = self.connect().await?;
            let (work, next) = (work.clone(), next.clone());
            tasks.push(tokio::spawn(async move {
                let insert = client
                    .prepare(
                        "INSERT INTO audit (org, ts, actor, route, record) \
                         VALUES ($1, ($2::text)::timestamptz, $3, $4, ($5::text)::jsonb)",
                    )
                    .await?;
                let mut latencies = Vec::new();
                let mut done_at = Vec::new();
                loop {
                    let b = next.fetch_add(1, Ordering::Relaxed);
                    if b >= batches || Instant::now() > deadline {
                        return Ok::<_, anyhow::Error>((latencies, done_at));
                    }
                    let events = work.events(b);
                    match how {
                        Load::InsertPerEvent => {
                            for e in &events {
                                let t = Instant::now();
                                let record = e.record();
                                client
                                    .execute(
                                        &insert,
                                        &[
                                            &ORG,
                                            &e.timestamp,
                                            &e.actor.id,
                                            &e.request.as_ref().map(|r| &r.route),
                                            &record,
                                        ],
                                    )
                                    .await?;
                                latencies.push(t.elapsed());
                            }
                        }
                        Load::Copy => {
                            let t = Instant::now();
                            let sink = client
                                .copy_in(
                                    "COPY audit (org, ts, actor, route, record) FROM STDIN (FORMAT csv)",
                                )
                                .await?;
                            let mut sink = std::pin::pin!(sink);
                            sink.send(bytes::Bytes::from(csv(&events))).await?;
                            sink.as_mut().finish().await?;
                            latencies.push(t.elapsed());
                        }
                    }
                    done_at.push(started.elapsed().as_secs_f64());
                }
            }));
        }
        let mut latencies = Vec::new();
        let mut done_at = Vec::new();
        for t in tasks {
            let (l, d) = t.await??;
            latencies.extend(l);
            done_at.extend(d);
        }
        let seconds = started.elapsed().as_secs_f64();
        let events = done_at.len() * work.batch;
        let (p50_ms, p99_ms) = percentiles(&mut latencies);
        done_at.sort_by(f64::total_cmp);
        Ok(Baseline {
            events,
            rate: events as f64 / seconds,
            p50_ms,
            p99_ms,
            bytes: self.bytes().await?,
            curve: curve(&done_at, work.batch),
        })
    }
}

#[derive(Clone, Copy)]
enum Load {
    InsertPerEvent,
    Copy,
}

/// A batch as CSV rows of (org, ts, actor, route, record); no route is NULL.
fn csv(events: &[Event]) -> Vec<u8> {
    let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    let mut out = String::new();
    for e in events {
        out.push_str(&quote(ORG));
        out.push(',');
        out.push_str(&quote(&e.timestamp));
        out.push(',');
        out.push_str(&quote(&e.actor.id));
        out.push(',');
        if let Some(r) = &e.request {
            out.push_str(&quote(&r.route));
        }
        out.push(',');
        out.push_str(&quote(&e.record()));
        out.push('\n');
    }
    out.into_bytes()
}
