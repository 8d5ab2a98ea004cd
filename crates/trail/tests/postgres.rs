//! Trail on PostgreSQL, end to end: several `trail serve` processes on one database.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

mod common;
use common::load::{Acked, Rng, batch, check_log, export_all, ingest, record};
use common::{Server, run, text};

/// A database of the test's own, on the PostgreSQL server the test run starts.
async fn database() -> String {
    tokio::task::spawn_blocking(trail_store::conformance::postgres_database)
        .await
        .unwrap()
}

fn start(data: &Path, database: &str) -> Server {
    Server::start_with(
        data,
        &["--log-name", "trail.test", "--database", database],
        None,
    )
}

/// `trail verify` over the API of `s`, trusting `key`.
fn verify(s: &Server, token: &str, key: &str, state: &Path) {
    let out = run(&[
        "verify",
        "--url",
        &s.url,
        "--token",
        token,
        "--org",
        "default",
        "--key",
        key,
        "--state-dir",
        state.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("OK default"), "{}", text(&out));
}

#[tokio::test]
async fn two_servers_on_one_database_ingest_into_one_log_and_a_kill_9_loses_nothing() {
    const WRITERS: usize = 4;
    const EVENTS: usize = 40;
    let database = database().await;
    let dir = tempfile::tempdir().unwrap();
    let (a_dir, b_dir) = (dir.path().join("a"), dir.path().join("b"));
    let a = start(&a_dir, &database);
    let key = a.key();
    let token = a.token();
    // The second server signs with the same key: it is given the first one's.
    std::fs::create_dir_all(&b_dir).unwrap();
    std::fs::copy(a_dir.join("log-signing-key"), b_dir.join("log-signing-key")).unwrap();
    let mut b = start(&b_dir, &database);
    assert_eq!(b.key(), key, "both servers sign as the same log");
    assert!(
        b.banner.contains("(PostgreSQL)"),
        "the banner names the store: {}",
        b.banner
    );

    // Writers alternate between the servers, batch by batch, until told to stop; a batch
    // whose answer does not come (its server was killed) is sent again to the other, with
    // the same client ids.
    let stop = Arc::new(AtomicBool::new(false));
    let sent_again = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let urls = [a.url.clone(), b.url.clone()];
            let (token, stop, sent_again) = (token.clone(), stop.clone(), sent_again.clone());
            tokio::spawn(async move {
                let (mut acked, mut redirected) = (Vec::new(), 0);
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let body = batch(&format!("w{w}-b{n}"), EVENTS, 32);
                    let items = match ingest(&urls[(w + n) % 2], &token, &body).await {
                        Ok(items) => items,
                        Err(_) => {
                            redirected += 1;
                            let items = ingest(&urls[0], &token, &body)
                                .await
                                .expect("the surviving server takes the batch");
                            sent_again.fetch_add(1, Ordering::Relaxed);
                            items
                        }
                    };
                    acked.push(items);
                    n += 1;
                }
                (acked, redirected, n)
            })
        })
        .collect();
    let delay = 300 + Rng::seeded().below(700);
    tokio::time::sleep(Duration::from_millis(delay)).await;
    b.signal(libc::SIGKILL);
    // The writers go on for 500 ms after the kill, and until a batch sent to the killed
    // server has been taken by the other.
    tokio::time::sleep(Duration::from_millis(500)).await;
    common::eventually(
        "a batch sent again to the surviving server",
        async || match sent_again.load(Ordering::Relaxed) {
            0 => Err("none yet".to_owned()),
            _ => Ok(()),
        },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    let (mut acked, mut redirected, mut sent) = (Acked::new(), 0, 0);
    for writer in writers {
        let (batches, r, n) = writer.await.unwrap();
        for items in batches {
            record(&mut acked, &items);
        }
        redirected += r;
        sent += n * EVENTS;
    }
    eprintln!(
        "killed one server after {delay} ms: {sent} events sent, {redirected} batches sent again to the other"
    );
    assert!(
        redirected > 0,
        "the kill came while the writers were sending to both servers"
    );
    assert_eq!(acked.len(), sent, "every batch was acknowledged in the end");

    // One log, whichever server wrote: every acknowledged event once, seqs gapless, as read
    // through either server; and it verifies through both.
    let b = start(&b_dir, &database);
    let through_a = export_all(&a.url, &token).await;
    check_log(&through_a, &acked, sent);
    let through_b = export_all(&b.url, &token).await;
    let seqs = |events: &[serde_json::Value]| -> Vec<(u64, String)> {
        events
            .iter()
            .map(|e| (e["seq"].as_u64().unwrap(), e["hash"].to_string()))
            .collect()
    };
    let n = through_a.len().min(through_b.len());
    assert_eq!(
        seqs(&through_a)[..n],
        seqs(&through_b)[..n],
        "both servers read the same log"
    );
    let state = dir.path().join("state");
    verify(&a, &token, &key, &state);
    verify(&b, &token, &key, &state);
    a.stop();
    b.stop();

    // And on the database itself, no server needed: every event is covered by a signed
    // checkpoint (each was signed in the transaction that stored it).
    let out = run(&["verify", "--database", &database, "--key", &key, "--strict"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("OK default"), "{}", text(&out));
    // A server without the log's key does not start on its database.
    let c_dir = dir.path().join("c");
    let out = run(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data",
        c_dir.to_str().unwrap(),
        "--database",
        &database,
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("every server on one database signs with the same key"),
        "{}",
        text(&out)
    );
    let out = run(&["admin", "migrate", "--database", &database]);
    assert!(
        out.status.success()
            && text(&out).contains(&format!(
                "is at schema version {}",
                trail_store::postgres::migrate::SCHEMA_VERSION
            )),
        "{}",
        text(&out)
    );
}

/// `trail admin copy`: a served embedded store moves to PostgreSQL, and a server on the
/// copy (same data directory, same key) is the same Trail: its token works, the log a
/// verifier followed before goes on consistently, and the database verifies.
#[tokio::test]
async fn an_embedded_store_is_copied_to_postgresql_and_served_from_there() {
    let database = database().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let s = Server::start(&data);
    let key = s.key();
    let token = s.token();
    for n in 0..3 {
        ingest(&s.url, &token, &batch(&format!("b{n}"), 50, 32))
            .await
            .unwrap();
    }
    let state = dir.path().join("state");
    verify(&s, &token, &key, &state);
    let before = export_all(&s.url, &token).await;

    // Not while a server holds the store.
    let from = format!("sqlite:{}", data.display());
    let out = run(&["admin", "copy", "--from", &from, "--to", &database]);
    assert!(!out.status.success(), "{}", text(&out));
    s.stop();
    let out = run(&["admin", "copy", "--from", &from, "--to", &database]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("checkpoint roots recomputed from the copied leaves and matched"),
        "{}",
        text(&out)
    );
    // Once only: the target now holds orgs.
    let out = run(&["admin", "copy", "--from", &from, "--to", &database]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("empty"), "{}", text(&out));

    let s = start(&data, &database);
    // The same events (and then the calls that read them, which the server records).
    let after = export_all(&s.url, &token).await;
    let hashes = |events: &[serde_json::Value]| -> Vec<String> {
        events.iter().map(|e| e["hash"].to_string()).collect()
    };
    assert!(after.len() > before.len());
    assert!(
        hashes(&after).starts_with(&hashes(&before)),
        "the same events, read through the copy"
    );
    assert_eq!(after[..before.len()], before[..]);
    ingest(&s.url, &token, &batch("b3", 50, 32)).await.unwrap();
    verify(&s, &token, &key, &state);
    s.stop();
    let out = run(&["verify", "--database", &database, "--key", &key, "--strict"]);
    assert!(out.status.success(), "{}", text(&out));
}
