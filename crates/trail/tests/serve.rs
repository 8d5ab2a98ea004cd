//! End to end: the real `trail serve` on port 0 in a temp dir, driven over HTTP.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

mod common;
use common::{Server, token};

async fn get_json(url: &str, token: &str) -> Value {
    client()
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn ingest(url: &str, token: &str, events: &Value) -> reqwest::Result<Value> {
    client()
        .post(format!("{url}/v1/orgs/default/events"))
        .bearer_auth(token)
        .json(events)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await
}

async fn all_events(url: &str, token: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut page_url = format!("{url}/v1/orgs/default/audit-logs?category=app&limit=1000");
        if let Some(c) = &cursor {
            page_url.push_str(&format!("&cursor={c}"));
        }
        let page = get_json(&page_url, token).await;
        out.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return out,
        }
    }
}

fn batch(prefix: &str, n: usize) -> Value {
    Value::Array(
        (0..n)
            .map(|i| json!({"id": format!("{prefix}-{i}"), "action": "created", "actor": {"id": "alice", "type": "user"}}))
            .collect(),
    )
}

#[tokio::test]
async fn first_start_bootstraps_and_later_starts_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut s = Server::start(&data);
    let token = token(&data);
    assert!(s.banner.contains("Owner token"), "{}", s.banner);
    assert!(s.banner.contains(&token), "the token is printed once");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data.join("bootstrap-token"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let me = get_json(&format!("{}/v1/me", s.url), &token).await;
    assert_eq!(me["org"], "default");
    assert_eq!(
        me["platformAdmin"], true,
        "the bootstrap token holds orgs:admin"
    );
    s.signal(libc::SIGTERM);

    let s = Server::start(&data);
    assert!(!s.banner.contains("Owner token"), "{}", s.banner);
    let status = client()
        .get(format!("{}/v1/me", s.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200, "the bootstrap token still works");
    let health = client()
        .get(format!("{}/healthz", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn every_acknowledged_event_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut s = Server::start(&data);
    let token = token(&data);

    // Four writers ingest until the server dies under them: killed 700 ms into the ingest,
    // or later, once a batch has been acknowledged.
    let answered = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> =
        (0..4)
            .map(|w| {
                let (url, token, answered) = (s.url.clone(), token.clone(), answered.clone());
                tokio::spawn(async move {
                    let mut acked = Vec::new();
                    for b in 0..200 {
                        match ingest(&url, &token, &batch(&format!("w{w}-b{b}"), 50)).await {
                            Ok(r) => {
                                acked.extend(r["items"].as_array().unwrap().iter().map(|i| {
                                    (i["id"].clone(), i["seq"].clone(), i["hash"].clone())
                                }));
                                answered.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(_) => break,
                        }
                    }
                    acked
                })
            })
            .collect();
    tokio::time::sleep(Duration::from_millis(700)).await;
    common::eventually("a batch acknowledged", async || {
        match answered.load(Ordering::Relaxed) {
            0 => Err("no answer yet".to_owned()),
            _ => Ok(()),
        }
    })
    .await;
    s.signal(libc::SIGKILL);
    let mut acked = Vec::new();
    for w in writers {
        acked.extend(w.await.unwrap());
    }
    assert!(
        !acked.is_empty(),
        "some batches were acknowledged before the kill"
    );

    let s = Server::start(&data);
    let stored = all_events(&s.url, &token).await;
    let by_id: std::collections::HashMap<&str, &Value> = stored
        .iter()
        .map(|e| (e["id"].as_str().unwrap(), e))
        .collect();
    for (id, seq, hash) in &acked {
        let e = by_id
            .get(id.as_str().unwrap())
            .unwrap_or_else(|| panic!("acknowledged {id} was lost"));
        assert_eq!((&e["seq"], &e["hash"]), (seq, hash));
    }
    // Seqs have no gap, and the log goes on from where it stopped.
    let mut seqs: Vec<u64> = stored.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    seqs.sort_unstable();
    let after = ingest(&s.url, &token, &batch("after", 1)).await.unwrap();
    let next = after["items"][0]["seq"].as_u64().unwrap();
    assert!(next > *seqs.last().unwrap());
}

#[tokio::test]
async fn a_graceful_restart_keeps_everything_and_ids_stay_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut s = Server::start(&data);
    let token = token(&data);
    let first = ingest(&s.url, &token, &batch("r", 100)).await.unwrap();
    s.signal(libc::SIGTERM);

    let s = Server::start(&data);
    assert_eq!(all_events(&s.url, &token).await.len(), 100);
    let again = ingest(&s.url, &token, &batch("r", 100)).await.unwrap();
    assert_eq!(again["duplicates"], 100);
    assert_eq!(
        again["items"],
        json!(
            first["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| {
                    let mut i = i.clone();
                    i["duplicate"] = json!(true);
                    i
                })
                .collect::<Vec<_>>()
        )
    );
}

#[test]
fn usage_errors_exit_2_and_failures_exit_1() {
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_trail"))
            .args(args)
            .output()
            .unwrap()
    };
    assert_eq!(
        run(&["serve", "--listen", "nowhere"]).status.code(),
        Some(2)
    );
    assert_eq!(run(&["frobnicate"]).status.code(), Some(2));
    let dir = tempfile::tempdir().unwrap();
    let out = run(&[
        "serve",
        "--bootstrap-org",
        "Not A Slug",
        "--data",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.starts_with("trail: --bootstrap-org:"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    let help = String::from_utf8(run(&["--help"]).stdout).unwrap();
    assert!(help.contains("Exit codes"), "{help}");
}

/// Another axum service adds the recording layer in one line, with an API key of Trail's;
/// its calls land in Trail's log.
#[tokio::test]
async fn another_service_records_into_trail_through_the_layer() {
    use axum::extract::Request;
    use axum::middleware::{Next, from_fn};
    use axum::response::Response;
    use trail_record::{CallContext, Identity, RecordLayer, TrailSink};

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let s = Server::start(&data);
    let token = token(&data);
    let key: Value = client()
        .post(format!("{}/v1/orgs/default/api-keys", s.url))
        .bearer_auth(&token)
        .json(&json!({"name": "tenants service", "scopes": ["logs:write"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    async fn auth(req: Request, next: Next) -> Response {
        if let Some(ctx) = req.extensions().get::<CallContext>() {
            ctx.set_actor(Identity {
                actor: "alice@example.com".into(),
                actor_type: trail_core::ActorType::User,
                token_id: None,
            });
        }
        next.run(req).await
    }
    let sink = TrailSink::new(
        &s.url,
        "default",
        key["id"].as_str().unwrap(),
        key["secret"].as_str().unwrap(),
    );
    let service = axum::Router::new()
        .route(
            "/v1/tenants/{id}",
            axum::routing::get(|| async { "tenant" }),
        )
        .layer(from_fn(auth))
        .layer(RecordLayer::new(sink));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            service.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
        .unwrap();
    });

    let resp = client()
        .get(format!("http://{addr}/v1/tenants/7"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let page = get_json(
        &format!(
            "{}/v1/orgs/default/audit-logs?route=GET%20/v1/tenants/:id",
            s.url
        ),
        &token,
    )
    .await;
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{page}");
    assert_eq!(items[0]["actor"]["id"], "alice@example.com");
    assert_eq!(items[0]["request"]["status"], 200);
    assert_eq!(items[0]["actor"]["ip"], "127.0.0.1");
    // The service's own call into Trail is recorded too, under its key.
    let by_key = get_json(
        &format!("{}/v1/orgs/default/audit-logs?actorType=api_key", s.url),
        &token,
    )
    .await;
    assert_eq!(by_key["items"][0]["actor"]["id"], "tenants service");
}

/// The bootstrap owner gets a console password from an operator, then signs in.
#[tokio::test]
async fn an_operator_sets_a_password_and_the_owner_signs_in() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let s = Server::start(&data);
    let set = |password: &str, email: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_trail"))
            .args(["admin", "set-password", "--email", email, "--data"])
            .arg(&data)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
        child.wait_with_output().unwrap()
    };
    let out = set("short", "owner@trail.local");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 12 characters"));
    assert_eq!(
        set("a long enough password", "nobody@trail.local")
            .status
            .code(),
        Some(1)
    );
    let out = set("a long enough password", "owner@trail.local");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "password of owner@trail.local set"
    );
    // It went through the running server, whose writer keeps working: ingest and reads
    // succeed in the org the change was recorded in (they answered 503 when the command
    // opened a second writer on the file).
    for i in 0..3 {
        ingest(&s.url, &token(&data), &batch(&format!("after{i}"), 5))
            .await
            .expect("ingest after set-password");
    }
    assert_eq!(all_events(&s.url, &token(&data)).await.len(), 15);

    let resp = client()
        .post(format!("{}/v1/session", s.url))
        .json(&json!({"email": "owner@trail.local", "password": "a long enough password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let cookie = resp.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    // The operator's action is in the platform org's log, as a system action.
    let page = get_json(
        &format!("{}/v1/orgs/default/audit-logs?actorType=system", s.url),
        &token(&data),
    )
    .await;
    assert_eq!(page["items"][0]["object"]["id"], "owner@trail.local");
}

/// One process owns a data directory: a second server on it refuses to start, in one line
/// naming the directory and the holder, and the first keeps serving.
#[tokio::test]
async fn a_second_server_on_a_data_directory_in_use_exits_1_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let s = Server::start(&data);
    let out = Command::new(env!("CARGO_BIN_EXE_trail"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(&data)
        .env("TRAIL_LOG", "error")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(
        err.contains(&format!(
            "the data directory {} is in use by another Trail process (pid {})",
            data.display(),
            s.pid()
        )),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "nothing bootstrapped or served");
    ingest(&s.url, &s.token(), &batch("still", 3))
        .await
        .unwrap();
}

/// The data directory is 0700 and every file in it 0600, for a new store and, tightened at
/// start, for one made before.
#[cfg(unix)]
#[tokio::test]
async fn the_data_directory_and_its_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let check = |data: &std::path::Path| {
        assert_eq!(mode(data), 0o700);
        let names: Vec<String> = std::fs::read_dir(data)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        for name in [
            "trail.db",
            "trail.db-wal",
            "trail.db-shm",
            "log-signing-key",
            "bootstrap-token",
            "trail.lock",
            "admin.sock",
        ] {
            assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
        }
        for name in names {
            // (A file renamed over meanwhile, such as the heads file's temporary, is skipped.)
            if let Ok(m) = std::fs::metadata(data.join(&name)) {
                assert_eq!(m.permissions().mode() & 0o777, 0o600, "{name}");
            }
        }
    };
    let s = Server::start(&data);
    ingest(&s.url, &s.token(), &batch("x", 3)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    check(&data);
    s.stop();
    // A store made world-readable (as Trail made them before) is tightened at start.
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    for name in [
        "trail.db",
        "log-signing-key",
        "bootstrap-token",
        "log-heads.json",
    ] {
        std::fs::set_permissions(data.join(name), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let s = Server::start(&data);
    ingest(&s.url, &s.token(), &batch("y", 3)).await.unwrap();
    check(&data);
}

/// The operator socket is removed on a clean stop, and one left by a crash does not stop
/// the next start (which answers on a new one).
#[tokio::test]
async fn a_stale_operator_socket_does_not_stop_the_next_start() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let socket = data.join("admin.sock");
    let s = Server::start(&data);
    assert!(socket.exists());
    s.stop();
    assert!(!socket.exists(), "removed on a clean stop");
    let mut s = Server::start(&data);
    s.signal(libc::SIGKILL);
    assert!(socket.exists(), "left by the crash");
    let s = Server::start(&data);
    let mut child = Command::new(env!("CARGO_BIN_EXE_trail"))
        .args([
            "admin",
            "set-password",
            "--email",
            "owner@trail.local",
            "--data",
        ])
        .arg(&data)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "a long enough password").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let resp = client()
        .post(format!("{}/v1/session", s.url))
        .json(&json!({"email": "owner@trail.local", "password": "a long enough password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // With no server, the command opens the store itself.
    s.stop();
    let mut child = Command::new(env!("CARGO_BIN_EXE_trail"))
        .args([
            "admin",
            "set-password",
            "--email",
            "owner@trail.local",
            "--data",
        ])
        .arg(&data)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "another long password").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A server whose stdout is closed (a supervisor, or `trail bench`, that stopped reading)
/// keeps serving: its banner never panics.
#[tokio::test]
async fn a_server_with_a_closed_stdout_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut child = Command::new(env!("CARGO_BIN_EXE_trail"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data"])
        .arg(&data)
        .env("TRAIL_LOG", "error")
        .stdout(writer)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    common::eventually("the server answers /healthz", async || {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the server exited ({status}) instead of serving");
        }
        match client().get(format!("{url}/healthz")).send().await {
            Ok(r) if r.status() == 200 => Ok(()),
            Ok(r) => Err(r.status().to_string()),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "the server is still running"
    );
    ingest(&url, &token(&data), &batch("z", 2)).await.unwrap();
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("panicked"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The `host:port` a server listens on.
fn addr_of(s: &Server) -> String {
    s.url.trim_start_matches("http://").to_owned()
}

/// Sends `raw` on a new connection and reads until the server closes it (or
/// [`common::PATIENCE`] passes).
fn exchange(addr: &str, raw: &[u8]) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(addr)?;
    conn.set_read_timeout(Some(common::PATIENCE))?;
    conn.write_all(raw)?;
    let mut out = Vec::new();
    conn.read_to_end(&mut out)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[test]
fn idle_connections_cannot_starve_the_server() {
    let dir = tempfile::tempdir().unwrap();
    // Few file descriptors, as on a host with a low limit: idle sockets must not use them up.
    let s = Server::start_with(
        &dir.path().join("data"),
        &["--header-timeout", "1s"],
        Some(256),
    );
    let addr = addr_of(&s);
    let idle: Vec<std::net::TcpStream> = (0..300)
        .map(|_| std::net::TcpStream::connect(&addr).expect("the kernel queues the connection"))
        .collect();
    let answer = exchange(
        &addr,
        b"GET /healthz HTTP/1.1\r\nHost: trail\r\nConnection: close\r\n\r\n",
    )
    .expect("healthz answers while 300 idle connections are open");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    drop(idle);
}

#[test]
fn a_half_sent_head_or_a_stalled_body_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(
        &dir.path().join("data"),
        &["--header-timeout", "1s", "--idle-timeout", "1s"],
        None,
    );
    let addr = addr_of(&s);
    // Half a head: closed after the header timeout, not held open.
    exchange(&addr, b"GET /healthz HTTP/1.1\r\nHost: trail\r\n")
        .expect("the server closes a connection whose head never ends");
    // A body that stops coming: closed after the idle timeout.
    let stalled = format!(
        "POST /v1/orgs/default/events HTTP/1.1\r\nHost: trail\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n[{{",
        s.token()
    );
    exchange(&addr, stalled.as_bytes()).expect("the server closes a stalled connection");
}

#[test]
fn oversized_requests_get_problem_json_before_the_body_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("data"));
    let addr = addr_of(&s);
    let token = s.token();
    // Expect: 100-continue with a length over the limit: 413 at once, never 100 Continue.
    let head = format!(
        "POST /v1/orgs/default/events HTTP/1.1\r\nHost: trail\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
        17 << 20
    );
    let answer = exchange(&addr, head.as_bytes()).unwrap();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(!answer.contains("100 Continue"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    // A long target, and long header fields: 414 and 431, as problem documents.
    let long = format!(
        "GET /v1/me?x={} HTTP/1.1\r\nHost: trail\r\nConnection: close\r\n\r\n",
        "a".repeat(10_000)
    );
    let answer = exchange(&addr, long.as_bytes()).unwrap();
    assert!(answer.starts_with("HTTP/1.1 414"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    let fat = format!(
        "GET /healthz HTTP/1.1\r\nHost: trail\r\nX-Filler: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(40_000)
    );
    let answer = exchange(&addr, fat.as_bytes()).unwrap();
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
}
