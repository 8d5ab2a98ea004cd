//! `trail verify` against real stores: untouched, and tampered with directly in the SQLite
//! file (triggers dropped) while the server is stopped.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

mod common;
use common::{Server, token};

async fn ingest(s: &Server, token: &str, from: usize, n: usize) {
    let events: Vec<Value> = (from..from + n)
        .map(|i| json!({"action": format!("a{i}"), "actor": {"id": "alice", "type": "user"}, "details": {"n": i}}))
        .collect();
    let r = reqwest::Client::new()
        .post(format!("{}/v1/orgs/default/events", s.url))
        .bearer_auth(token)
        .json(&events)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
}

use common::{run as trail, text};

/// A stopped store with about a hundred events, and its verifier key.
async fn stopped_store(dir: &Path) -> (PathBuf, String, u64) {
    let data = dir.join("data");
    let s = Server::start(&data);
    let t = token(&data);
    for batch in 0..4 {
        ingest(&s, &t, batch * 25, 25).await;
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    }
    let key = s.key();
    s.stop();
    let size: u64 = sql(&data, "SELECT count(*) FROM events").parse().unwrap();
    (data, key, size)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        // Files only: a running server's operator socket is not copied.
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// Runs SQL on the store's file, as someone with the file (and no key) would.
fn sql(data: &Path, script: &str) -> String {
    let conn = rusqlite::Connection::open(data.join("trail.db")).unwrap();
    let base: i64 = conn
        .query_row(
            "SELECT id << 40 FROM orgs WHERE slug = 'default'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let script = script.replace("BASE", &base.to_string());
    let mut out = String::new();
    for stmt in script.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        if stmt.starts_with("SELECT") {
            out = conn
                .query_row(stmt, [], |r| r.get::<_, i64>(0))
                .unwrap()
                .to_string();
        } else {
            conn.execute_batch(stmt).unwrap();
        }
    }
    out
}

/// What someone with the file does first: drop the triggers, ignore the key check.
const UNGUARD: &str = "DROP TRIGGER events_no_update; DROP TRIGGER events_no_delete; \
     DROP TRIGGER events_no_replace; PRAGMA ignore_check_constraints = ON;";

#[tokio::test]
async fn every_kind_of_tampering_is_found_and_named_at_its_seq() {
    let dir = tempfile::tempdir().unwrap();
    let (data, key, n) = stopped_store(dir.path()).await;
    assert!(n > 100, "{n} events");

    let ok = trail(&["verify", "--data", data.to_str().unwrap(), "--key", &key]);
    assert!(ok.status.success(), "{}", text(&ok));
    assert!(
        text(&ok).contains(&format!("OK default: {n} events verified")),
        "{}",
        text(&ok)
    );

    let cases: Vec<(&str, String, String)> = vec![
        ("changed", "UPDATE events SET ts = ts + 1 WHERE k = BASE + 23".into(), "seq 23 was changed".into()),
        ("deleted", "DELETE FROM events WHERE k = BASE + 23".into(), "seq 23 is missing".into()),
        (
            "swapped",
            "UPDATE events SET k = -1 WHERE k = BASE + 23; UPDATE events SET k = BASE + 23 WHERE k = BASE + 24; UPDATE events SET k = BASE + 24 WHERE k = -1".into(),
            "seq 23 was reordered: the event there was accepted as seq 24".into(),
        ),
        // Appended past the newest checkpoint: no checkpoint covers it, but its content does
        // not give the hash stored with it. (One appended with a hash recomputed to match is,
        // by nature, only told from a genuine unsigned event by --strict: see below.)
        (
            "appended",
            format!(
                "INSERT INTO events (k, org, ts, rdelta, action, cat, actor, atype, details, hash) \
                 SELECT k + 1, org, ts + 1, rdelta, action, cat, actor, atype, '{{\"forged\":true}}', hash FROM events WHERE k = BASE + {}",
                n - 1
            ),
            format!("seq {n} was changed"),
        ),
        ("truncated", format!("DELETE FROM events WHERE k >= BASE + {}", n - 10), format!("seq {} is missing: the log was truncated", n - 10)),
    ];
    for (name, edit, want) in cases {
        let copy = dir.path().join(name);
        copy_dir(&data, &copy);
        sql(&copy, &format!("{UNGUARD} {edit}"));
        let out = trail(&["verify", "--data", copy.to_str().unwrap(), "--key", &key]);
        assert_eq!(out.status.code(), Some(1), "{name}: {}", text(&out));
        assert!(
            text(&out).contains(&want),
            "{name}: want {want:?} in {}",
            text(&out)
        );
    }

    // A checkpoint altered in place, or signed by another key, is refused.
    let copy = dir.path().join("checkpoint");
    copy_dir(&data, &copy);
    sql(
        &copy,
        "DROP TRIGGER checkpoints_no_update; UPDATE checkpoints SET root = zeroblob(32)",
    );
    let out = trail(&["verify", "--data", copy.to_str().unwrap(), "--key", &key]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("was altered"), "{}", text(&out));
    // A note whose signature no longer holds, though the rows and the events agree with its
    // size and root: the walk passes, and the verdict is still the note's.
    let copy = dir.path().join("note");
    copy_dir(&data, &copy);
    sql(
        &copy,
        "DROP TRIGGER checkpoints_no_update; \
         UPDATE checkpoints SET note = replace(note, char(10) || char(10), char(10) || 'x' || char(10) || char(10)) \
         WHERE size = (SELECT min(size) FROM checkpoints)",
    );
    let out = trail(&["verify", "--data", copy.to_str().unwrap(), "--key", &key]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("FAIL default: the checkpoint of"),
        "{}",
        text(&out)
    );
    let other = "trail.test+2f9c5a9e+AXbsp8bXvLsRq5M8I+9ZrCNwNRhGHyk2y2bAgWkXMdDo";
    let out = trail(&["verify", "--data", data.to_str().unwrap(), "--key", other]);
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
}

#[tokio::test]
async fn online_verification_is_a_witness() {
    let dir = tempfile::tempdir().unwrap();
    let (data, key, _) = stopped_store(dir.path()).await;
    let state = dir.path().join("state");
    let old = dir.path().join("old");
    copy_dir(&data, &old);

    let s = Server::start(&data);
    let t = token(&data);
    let verify = |s: &Server, extra: &[&str]| {
        let mut args = vec![
            "verify",
            "--url",
            &s.url,
            "--token",
            &t,
            "--org",
            "default",
            "--state-dir",
            state.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        trail(&args)
    };
    let first = verify(&s, &[]);
    assert!(first.status.success(), "{}", text(&first));
    assert!(
        text(&first).contains("trusting trail.test+"),
        "the key is pinned on first use: {}",
        text(&first)
    );
    ingest(&s, &t, 100, 10).await;
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let second = verify(&s, &[]);
    assert!(second.status.success(), "{}", text(&second));
    assert!(
        text(&second).contains("consistent with the checkpoint of"),
        "{}",
        text(&second)
    );
    assert!(
        !text(&second).contains("trusting"),
        "the pinned key is used"
    );
    s.stop();

    // History rewritten while the server was down: the event is named.
    let tampered = dir.path().join("tampered");
    copy_dir(&data, &tampered);
    sql(
        &tampered,
        &format!(
            "{UNGUARD} UPDATE events SET action = (SELECT action FROM events WHERE k = BASE + 3) WHERE k = BASE + 23"
        ),
    );
    let s = Server::start(&tampered);
    let out = verify(&s, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("seq 23 was changed"), "{}", text(&out));
    s.stop();

    // The whole store rolled back to an older copy: the witness remembers more.
    let s = Server::start(&old);
    let out = verify(&s, &["--key", &key]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("the log went back"), "{}", text(&out));

    // Exit codes: a bad token, an unreachable server.
    let out = trail(&[
        "verify",
        "--url",
        &s.url,
        "--token",
        "pat_0.x",
        "--org",
        "default",
        "--state-dir",
        state.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let out = trail(&[
        "verify",
        "--url",
        "http://127.0.0.1:9",
        "--token",
        &t,
        "--org",
        "default",
        "--state-dir",
        state.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
}

/// The review's cases: a row moved to another org, a row that no longer reads, and the
/// newest checkpoints deleted under a rewritten history.
#[tokio::test]
async fn moved_unreadable_and_unsigned_history_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let (data, key, n) = stopped_store(dir.path()).await;

    let moved = dir.path().join("moved");
    copy_dir(&data, &moved);
    sql(
        &moved,
        &format!("{UNGUARD} UPDATE events SET org = org + 1000 WHERE k = BASE + 30"),
    );
    let out = trail(&["verify", "--data", moved.to_str().unwrap(), "--key", &key]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("seq 30 was changed: it no longer reads"),
        "{}",
        text(&out)
    );

    let unreadable = dir.path().join("unreadable");
    copy_dir(&data, &unreadable);
    sql(
        &unreadable,
        &format!(
            "{UNGUARD} UPDATE events SET action = 999999 WHERE k = BASE + 60; UPDATE events SET ts = ts + 1 WHERE k = BASE + 10"
        ),
    );
    let out = trail(&[
        "verify",
        "--data",
        unreadable.to_str().unwrap(),
        "--key",
        &key,
    ]);
    assert!(
        text(&out).contains("seq 10 was changed"),
        "the first bad seq, not the unreadable later one: {}",
        text(&out)
    );

    // Deleting the newest checkpoints of a stopped store leaves events no checkpoint covers:
    // said as such; a store that stopped cleanly has none, which --strict demands.
    let dropped = dir.path().join("dropped");
    copy_dir(&data, &dropped);
    sql(
        &dropped,
        "DROP TRIGGER checkpoints_no_delete; DELETE FROM checkpoints WHERE size = (SELECT max(size) FROM checkpoints)",
    );
    let out = trail(&["verify", "--data", dropped.to_str().unwrap(), "--key", &key]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("not yet covered by a signed checkpoint"),
        "{}",
        text(&out)
    );
    let out = trail(&[
        "verify",
        "--data",
        dropped.to_str().unwrap(),
        "--key",
        &key,
        "--strict",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("FAIL default") && text(&out).contains("--strict"),
        "{}",
        text(&out)
    );
    // ... and a restarted server will not sign over them: its head file remembers.
    let s = Server::start(&dropped);
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let note = reqwest::Client::new()
        .get(format!("{}/v1/orgs/default/log/checkpoint", s.url))
        .bearer_auth(token(&dropped))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let size: u64 = note.lines().nth(1).unwrap().parse().unwrap();
    assert!(size < n, "no new checkpoint over the gap: {size} < {n}");
    s.stop();
}

/// Ingests batches until told to stop; returns how many batches were acknowledged.
async fn ingest_until(url: String, token: String, stop: tokio::sync::watch::Receiver<bool>) {
    let client = reqwest::Client::new();
    let mut i = 0;
    while !*stop.borrow() {
        let events: Vec<Value> = (0..20)
            .map(|j| json!({"action": format!("b{i}-{j}"), "actor": {"id": "alice", "type": "user"}}))
            .collect();
        let sent = client
            .post(format!("{url}/v1/orgs/default/events"))
            .bearer_auth(&token)
            .json(&events)
            .send()
            .await;
        if sent.is_err() {
            return;
        }
        i += 1;
    }
}

/// Zero merge delay: a server killed under ingest leaves no unsigned tail, so the store
/// verifies strictly as it was left. Events stored without a signature (written to the
/// store by something other than a running server, or by an older Trail) are told as such:
/// not tampering, exit 0, unless --strict; a server started on the store signs them.
#[tokio::test]
async fn after_kill_9_under_ingest_every_stored_event_is_signed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut s = Server::start(&data);
    let t = token(&data);
    let key = s.key();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let load = tokio::spawn(ingest_until(s.url.clone(), t.clone(), stopped));
    ingest(&s, &t, 0, 30).await;
    s.signal(libc::SIGKILL);
    let _ = stop.send(true);
    load.await.unwrap();

    let default = "(SELECT id FROM orgs WHERE slug = 'default')";
    let stored: u64 = sql(
        &data,
        &format!("SELECT count(*) FROM events WHERE org = {default}"),
    )
    .parse()
    .unwrap();
    let signed: u64 = sql(
        &data,
        &format!("SELECT max(size) FROM checkpoints WHERE org = {default}"),
    )
    .parse()
    .unwrap();
    assert_eq!(
        signed, stored,
        "the newest checkpoint covers every stored event"
    );
    let strict = |key: &str| {
        trail(&[
            "verify",
            "--data",
            data.to_str().unwrap(),
            "--key",
            key,
            "--strict",
        ])
    };
    let out = strict(&key);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("OK default: {stored} events verified")),
        "{}",
        text(&out)
    );

    // Events stored without signing.
    {
        let store = trail_store::SqliteStore::open(&data).unwrap();
        let events = (0..5)
            .map(|i| {
                trail_core::EventBody::from_json(
                    json!({"action": format!("u{i}"), "actor": {"id": "alice", "type": "user"}}),
                    "default",
                )
                .unwrap()
            })
            .collect();
        use trail_store::Store;
        store.append("default", events).await.unwrap();
    }
    let out = trail(&["verify", "--data", data.to_str().unwrap(), "--key", &key]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let want = format!(
        "OK default: {signed} events verified against {} signed checkpoints; 5 events after them (seq {signed}..{}) are not yet covered by a signed checkpoint: not tampering",
        sql(
            &data,
            &format!("SELECT count(*) FROM checkpoints WHERE org = {default}")
        ),
        signed + 4
    );
    assert!(
        text(&out).contains(&want),
        "want {want:?} in {}",
        text(&out)
    );
    assert!(!text(&out).contains("inserted"), "{}", text(&out));
    assert_eq!(strict(&key).status.code(), Some(1));

    // A server started on the store signs them.
    let s = Server::start(&data);
    s.stop();
    let out = strict(&key);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("OK default: {} events verified", signed + 5)),
        "{}",
        text(&out)
    );
}

/// Every install has its own log origin, so one witness verifies several installs; a log
/// signed by another key than expected is told apart from tampering, with what to do.
#[tokio::test]
async fn two_installs_verify_from_one_witness_and_a_different_key_is_not_called_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let verify = |url: &str, token: &str, extra: &[&str]| {
        let mut args = vec![
            "verify",
            "--url",
            url,
            "--token",
            token,
            "--org",
            "default",
            "--state-dir",
            state.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        trail(&args)
    };
    let mut keys = Vec::new();
    for name in ["a", "b"] {
        let data = dir.path().join(name);
        let s = Server::start_with(&data, &[], None);
        let t = token(&data);
        ingest(&s, &t, 0, 5).await;
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        let key = s.key();
        let log = key.split('+').next().unwrap().to_owned();
        assert!(
            log.starts_with("trail-") && log.ends_with(".local") && log.len() == 20,
            "a default log name unique to the install: {key}"
        );
        let out = verify(&s.url, &t, &[]);
        assert!(out.status.success(), "{name}: {}", text(&out));
        keys.push(key);
        // The name is kept: a restart signs as the same log.
        s.stop();
        let s = Server::start_with(&data, &[], None);
        assert_eq!(s.key(), *keys.last().unwrap());
        s.stop();
    }
    assert_ne!(keys[0], keys[1]);

    // Two installs that share a name (here both `trail.test`): the second one's key is not
    // the one this witness verified that log under.
    let one = Server::start(&dir.path().join("one"));
    let t1 = token(&one.data);
    ingest(&one, &t1, 0, 5).await;
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert!(verify(&one.url, &t1, &[]).status.success());
    let two = Server::start(&dir.path().join("two"));
    let t2 = token(&two.data);
    ingest(&two, &t2, 0, 5).await;
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let out = verify(&two.url, &t2, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("signed by another key")
            && text(&out).contains("a different log with the same name, or its key was rotated")
            && text(&out).contains("witness.json"),
        "{}",
        text(&out)
    );
    assert!(!text(&out).contains("rewritten"), "{}", text(&out));
    // Pinned to the first one's key, the second server's checkpoints are another key's.
    let out = verify(&two.url, &t2, &["--key", &one.key()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("a different log, or its key was rotated")
            && text(&out).contains(&format!("--key {}", two.key())),
        "{}",
        text(&out)
    );
}
