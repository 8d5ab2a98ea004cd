//! `trail logs tail --follow` against a real `trail serve`: it lasts, it comes back after a
//! restart without a gap or a repeat, and an open stream does not hold up a stop.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};

mod common;
use common::Server;

/// A short keep-alive, so a quiet stream still carries traffic in a short test.
const OPTIONS: &[&str] = &["--log-name", "trail.test", "--stream-keep-alive", "1s"];

/// `trail logs tail --follow` of the `loader` actor's events, as NDJSON; its stdout lines
/// and stderr lines arrive on channels.
struct Follower {
    child: Child,
    lines: mpsc::Receiver<String>,
    notes: mpsc::Receiver<String>,
    _home: tempfile::TempDir,
}

impl Follower {
    fn start(s: &Server) -> Follower {
        let home = tempfile::tempdir().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_trail"))
            .args([
                "logs", "tail", "--actor", "loader", "--follow", "-o", "ndjson",
            ])
            .args(["--url", &s.url, "--token", &s.token(), "--org", "default"])
            .env("TRAIL_CONFIG", home.path().join("config.toml"))
            .env("XDG_STATE_HOME", home.path().join("state"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pipe = |r: Box<dyn std::io::Read + Send>| {
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(r).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
            rx
        };
        let lines = pipe(Box::new(child.stdout.take().unwrap()));
        let notes = pipe(Box::new(child.stderr.take().unwrap()));
        Follower {
            child,
            lines,
            notes,
            _home: home,
        }
    }

    /// The next `n` events printed, each within [`common::PATIENCE`].
    fn events(&self, n: usize) -> Vec<Value> {
        (0..n)
            .map(|i| {
                let line = self
                    .lines
                    .recv_timeout(common::PATIENCE)
                    .unwrap_or_else(|_| panic!("event {i} of {n} within {:?}", common::PATIENCE));
                serde_json::from_str(&line).unwrap()
            })
            .collect()
    }

    /// The next stderr line that contains `needle`, within [`common::PATIENCE`].
    fn note(&self, needle: &str) -> String {
        let deadline = Instant::now() + common::PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .notes
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("a note with {needle:?} within {:?}", common::PATIENCE));
            if line.contains(needle) {
                return line;
            }
        }
    }

    /// Ctrl-C: following ends, successfully.
    fn interrupt(mut self) -> std::process::ExitStatus {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        common::eventually_blocking("trail exits after Ctrl-C", || {
            self.child
                .try_wait()
                .unwrap()
                .ok_or_else(|| "still running".to_owned())
        })
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn ingest(s: &Server, names: &[&str]) {
    let events: Vec<Value> = names
        .iter()
        .map(|n| json!({"action": n, "actor": {"id": "loader", "type": "system"}}))
        .collect();
    let r = reqwest::Client::new()
        .post(format!("{}/v1/orgs/default/events", s.url))
        .bearer_auth(s.token())
        .json(&events)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
}

fn actions(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect()
}

fn seqs(events: &[Value]) -> Vec<u64> {
    events.iter().map(|e| e["seq"].as_u64().unwrap()).collect()
}

#[tokio::test]
async fn following_goes_on_across_a_server_restart_with_no_gap_or_repeat() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let s = Server::start_with(&data, OPTIONS, None);
    ingest(&s, &["a1", "a2"]).await;
    let f = Follower::start(&s);
    let mut seen = f.events(2); // the history
    ingest(&s, &["a3"]).await;
    seen.extend(f.events(1)); // followed
    // The server restarts on the same directory and port; events arrive while the follower
    // is still waiting to reconnect, and after.
    let listen = s.url.trim_start_matches("http://").to_owned();
    s.stop();
    f.note("lost the server");
    let s = Server::start_listening(&data, &listen, OPTIONS, None);
    ingest(&s, &["b1", "b2"]).await;
    f.note("reconnected");
    ingest(&s, &["b3"]).await;
    seen.extend(f.events(3));
    assert_eq!(actions(&seen), ["a1", "a2", "a3", "b1", "b2", "b3"]);
    let seqs = seqs(&seen);
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "in seq order, once each: {seqs:?}"
    );
    // Nothing more than those.
    assert!(f.lines.recv_timeout(Duration::from_millis(500)).is_err());
    assert!(f.interrupt().success(), "Ctrl-C ends following with exit 0");
}

#[tokio::test]
async fn following_goes_on_past_a_minute() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(&dir.path().join("data"), OPTIONS, None);
    ingest(&s, &["first"]).await;
    let f = Follower::start(&s);
    assert_eq!(actions(&f.events(1)), ["first"]);
    // Longer than the 60 s that used to end every request, the stream included.
    tokio::time::sleep(Duration::from_secs(65)).await;
    ingest(&s, &["later"]).await;
    assert_eq!(actions(&f.events(1)), ["later"]);
    assert!(
        f.notes.try_iter().all(|l| !l.contains("lost")),
        "the stream was never lost"
    );
    assert!(f.interrupt().success());
}

#[tokio::test]
async fn a_stop_does_not_wait_for_open_streams_and_leaves_every_event_signed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut s = Server::start_with(&data, &["--log-name", "trail.test"], None);
    let f = Follower::start(&s);
    ingest(&s, &["x"]).await;
    assert_eq!(actions(&f.events(1)), ["x"]);
    let started = Instant::now();
    s.signal(libc::SIGTERM);
    // Calls in flight get 10 s; the stream is not one to wait for.
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "stopped in {:?} with a stream open",
        started.elapsed()
    );
    f.note("lost the server");
    drop(f);
    let out = Command::new(env!("CARGO_BIN_EXE_trail"))
        .args(["verify", "--strict", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "every event is covered by a signed checkpoint: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn an_opened_tail_keeps_what_arrives_before_it_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(&dir.path().join("data"), OPTIONS, None);
    let client = trail_client::Client::new(&s.url, &s.token()).unwrap();
    let path = "/v1/orgs/default/audit-logs/stream?actor=loader";
    // The tail starts where the log ends, fixed when it opens, not when it is first read
    // (what `trail logs tail --follow` reads meanwhile is the history).
    let live = client.follow_opened(path, None).await.unwrap();
    ingest(&s, &["between"]).await;
    let mut live = std::pin::pin!(live);
    let first = tokio::time::timeout(common::PATIENCE, live.next())
        .await
        .unwrap_or_else(|_| panic!("the event within {:?}", common::PATIENCE))
        .unwrap()
        .unwrap();
    let seq = match first {
        trail_client::Followed::Event { seq, data } => {
            assert!(data.contains("\"between\""), "{data}");
            seq
        }
        other => panic!("expected the event, got {other:?}"),
    };
    // Where a tail starts is said before any event.
    let r = reqwest::Client::new()
        .get(format!("{}{path}", s.url))
        .bearer_auth(s.token())
        .send()
        .await
        .unwrap();
    let from: u64 = r.headers()["trail-stream-from"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(from > seq, "starts after {seq}: {from}");
}
