//! The `trail` command line against a real `trail serve` (port 0, temp dir): each command,
//! each output format parsed back, each exit code, and the User-Agent in the recorded rows.

use std::io::Read;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

mod common;
use common::Server;

/// Runs `trail` with its own config and state (no profile unless the test logs in).
struct Cli {
    home: tempfile::TempDir,
}

impl Cli {
    fn new() -> Cli {
        Cli {
            home: tempfile::tempdir().unwrap(),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_trail"));
        c.args(args)
            .env("TRAIL_CONFIG", self.home.path().join("config.toml"))
            .env("XDG_STATE_HOME", self.home.path().join("state"))
            .env_remove("TRAIL_URL")
            .env_remove("TRAIL_TOKEN")
            .env_remove("TRAIL_ORG")
            .env_remove("TRAIL_PROFILE")
            .env("NO_COLOR", "1");
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).stdin(Stdio::null()).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        serde_json::from_str(&self.ok(args)).unwrap()
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

async fn ingest(s: &Server, events: Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/v1/orgs/default/events", s.url))
        .bearer_auth(s.token())
        .json(&events)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
}

#[tokio::test]
async fn login_profiles_and_the_logs_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("data"));
    let cli = Cli::new();
    let login = cli.ok(&["login", "--url", &s.url, "--token", &s.token()]);
    assert!(
        login.contains("as owner@trail.local (pat, acting on all your orgs), org default"),
        "{login}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(cli.home.path().join("config.toml"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    ingest(&s, json!([
        {"action": "deleted", "actor": {"id": "sarah@acme.io", "type": "user"}, "object": {"type": "custom_role", "id": {"kind": "Cluster", "name": "dev-team"}}},
        {"action": "call", "category": "api", "actor": {"id": "ops", "type": "break_glass"},
         "request": {"method": "GET", "route": "GET /v1/tenants/:id", "status": 503, "latencyMs": 4}},
    ])).await;

    // JSON: one array, oldest first.
    let all = cli.json(&["logs", "tail", "--since", "1h", "-o", "json"]);
    let items = all.as_array().unwrap();
    assert!(items.iter().any(|e| e["action"] == "deleted"));
    let times: Vec<&str> = items
        .iter()
        .map(|e| e["timestamp"].as_str().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "oldest first");
    assert_eq!(
        cli.json(&["logs", "tail", "--json", "--actor", "sarah@acme.io"])
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // NDJSON (the default when piped): one record a line.
    let nd = cli.ok(&[
        "logs",
        "tail",
        "--route",
        "GET /v1/tenants/:id",
        "--status",
        "5xx",
    ]);
    let lines: Vec<Value> = nd
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["actor"]["type"], "break_glass");
    let q = cli.ok(&[
        "logs",
        "tail",
        "-q",
        "actor:sarah@acme.io -status:200",
        "-o",
        "ndjson",
    ]);
    assert_eq!(q.lines().count(), 1);

    // A real use of a break-glass token, recorded by Trail itself.
    let http = reqwest::Client::new();
    let minted: Value = http
        .post(format!("{}/v1/break-glass", s.url))
        .bearer_auth(s.token())
        .json(&json!({"org": "default", "reason": "INC-7"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let used = http
        .get(format!("{}/v1/me", s.url))
        .bearer_auth(minted["token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert!(used.status().is_success());

    // The table: aligned; Trail's own record of the break-glass use marked, the ingested row
    // that merely claims a break-glass actor not, and every row says where it came from.
    let table = cli.ok(&["logs", "tail", "-o", "table"]);
    let header = table.lines().next().unwrap();
    assert!(
        header.starts_with("TIME") && header.contains("ACTOR") && header.contains("SOURCE"),
        "{table}"
    );
    let bg = table
        .lines()
        .find(|l| l.contains("BREAK-GLASS"))
        .expect("marked");
    assert!(bg.contains("!BREAK-GLASS") && bg.contains("whoAmI"), "{bg}");
    assert!(bg.contains("  trail  "), "its SOURCE, before DETAILS: {bg}");
    let claimed = table
        .lines()
        .find(|l| l.contains("GET /v1/tenants/:id"))
        .expect("the ingested row");
    assert!(!claimed.contains("BREAK-GLASS"), "{claimed}");
    assert!(claimed.contains("via pat_"), "{claimed}");
    assert_eq!(
        claimed.find("call"),
        header.find("ACTION"),
        "columns line up:\n{table}"
    );

    // Every CLI call is in the log with the CLI's user agent.
    let rows = cli.json(&[
        "logs",
        "tail",
        "-o",
        "json",
        "--action",
        "listAuditLogs",
        "--limit",
        "1000",
    ]);
    let agents: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["actor"]["userAgent"].as_str().unwrap())
        .collect();
    assert!(!agents.is_empty());
    assert!(
        agents
            .iter()
            .all(|a| *a == concat!("trail/", env!("CARGO_PKG_VERSION"))),
        "{agents:?}"
    );

    // Flags and environment override the profile.
    let out = cli
        .command(&["logs", "tail"])
        .env("TRAIL_TOKEN", "pat_0.x")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    let other = cli.run(&["logs", "tail", "--profile", "nope"]);
    assert_eq!(other.status.code(), Some(2), "{}", stderr(&other));
}

#[tokio::test]
async fn a_tail_pages_through_more_than_a_page_and_follows() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("data"));
    let cli = Cli::new();
    cli.ok(&["login", "--url", &s.url, "--token", &s.token()]);
    for b in 0..3 {
        let batch: Vec<Value> = (0..900).map(|i| json!({"action": format!("bulk{b}-{i}"), "actor": {"id": "loader", "type": "system"}})).collect();
        ingest(&s, Value::Array(batch)).await;
    }
    let out = cli.ok(&[
        "logs", "tail", "--actor", "loader", "--limit", "2500", "-o", "ndjson",
    ]);
    let seqs: std::collections::BTreeSet<u64> = out
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(out.lines().count(), 2500, "three pages of at most 1000");
    assert_eq!(seqs.len(), 2500, "each event once");

    // --follow prints what arrives, until stopped.
    let child = cli
        .command(&[
            "logs", "tail", "--action", "late", "--follow", "-o", "ndjson",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    ingest(
        &s,
        json!([{"action": "late", "actor": {"id": "a", "type": "user"}}]),
    )
    .await;
    following_prints(child, "\"action\":\"late\"");
}

/// What a followed command prints reaches `needle`; then the command is stopped.
fn following_prints(mut child: std::process::Child, needle: &'static str) {
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = String::new();
        let mut buf = [0u8; 4096];
        while !seen.contains(needle) {
            match stdout.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
        let _ = tx.send(seen);
    });
    let seen = rx.recv_timeout(common::PATIENCE);
    let _ = child.kill();
    let _ = child.wait();
    let seen = seen.unwrap_or_else(|_| {
        panic!(
            "{needle} printed within {:?} of the event",
            common::PATIENCE
        )
    });
    assert!(seen.contains(needle), "{seen}");
}

#[tokio::test]
async fn perf_figures_and_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("data"));
    let cli = Cli::new();
    cli.ok(&["login", "--url", &s.url, "--token", &s.token()]);
    let calls: Vec<Value> = (1..=20u64)
        .map(|i| json!({"action": "call", "category": "api", "actor": {"id": "svc", "type": "api_key"},
            "request": {"method": "POST", "route": "POST /v1/widgets", "status": if i % 5 == 0 { 500 } else { 201 }, "latencyMs": i}}))
        .collect();
    ingest(&s, Value::Array(calls)).await;
    let figures = cli.json(&[
        "perf",
        "--since",
        "1h",
        "--route",
        "POST /v1/widgets",
        "-o",
        "json",
    ]);
    let r = &figures["routes"][0];
    // Nearest rank over latencies 1..=20 ms: p50 = 10, p95 = 19, p99 = 20 (within the
    // sketch's error); 4 of 20 are 5xx.
    let near = |v: &Value, want: f64| {
        (v.as_f64().unwrap() - want).abs() <= want * trail_core::perf::RELATIVE_ERROR
    };
    assert_eq!(r["requests"], 20);
    assert!(
        near(&r["p50Ms"], 10.0) && near(&r["p95Ms"], 19.0) && near(&r["p99Ms"], 20.0),
        "{r}"
    );
    assert_eq!(r["errorRate5xx"], 0.2);
    let table = cli.ok(&["perf", "--since", "1h", "-o", "table"]);
    assert!(
        table.lines().next().unwrap().starts_with("ROUTE"),
        "{table}"
    );
    assert!(table.contains("POST /v1/widgets"));
    // 20 calls in one ingest, asked about a day: a rate over the minute they took, not the
    // day (20 / 1440 = 0.01).
    let day = cli.json(&["perf", "-o", "json"]);
    assert_eq!(day["spanMinutes"], 1.0);
    let widgets = day["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["route"] == "POST /v1/widgets")
        .unwrap();
    assert_eq!(widgets["requestsPerMinute"], 20.0);
    // -o ndjson: one route a line.
    let lines = cli.ok(&["perf", "--route", "POST /v1/widgets", "-o", "ndjson"]);
    let rows: Vec<Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 1, "{lines}");
    assert_eq!(rows[0]["route"], "POST /v1/widgets");
    // --over-time: the window in slices, oldest first; the calls are all in the last.
    let lines = cli.ok(&[
        "perf",
        "--since",
        "1h",
        "--route",
        "POST /v1/widgets",
        "--over-time",
        "6",
        "-o",
        "ndjson",
    ]);
    let slices: Vec<Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(slices.len(), 6, "{lines}");
    let counts: Vec<(u64, u64)> = slices
        .iter()
        .map(|s| {
            (
                s["requests"].as_u64().unwrap(),
                s["errors5xx"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(counts, [(0, 0), (0, 0), (0, 0), (0, 0), (0, 0), (20, 4)]);
    assert!(near(&slices[5]["p95Ms"], 19.0), "{}", slices[5]);
    // An hour (61 minutes touched) in at most 24 slices of whole minutes: 3 minutes each.
    let table = cli.ok(&["perf", "--since", "1h", "--over-time", "-o", "table"]);
    assert!(table.starts_with("START"), "{table}");
    assert_eq!(table.lines().count(), 1 + 21, "{table}");
    let out = cli.run(&["perf", "--over-time", "0"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    // 403 names the missing scope; 401; unreachable; usage.
    let key = cli.json(&[
        "keys",
        "create",
        "writer",
        "--scopes",
        "logs:write",
        "-o",
        "json",
    ]);
    let key_token = format!(
        "{}:{}",
        key["id"].as_str().unwrap(),
        key["secret"].as_str().unwrap()
    );
    let out = cli.run(&["logs", "tail", "--token", &key_token]);
    assert_eq!(out.status.code(), Some(5));
    assert_eq!(
        stderr(&out).trim(),
        "trail: 403 on logs tail: your API key lacks logs:read"
    );
    let out = cli.run(&["perf", "--token", "pat_0.nope"]);
    assert_eq!(out.status.code(), Some(4));
    assert!(
        stderr(&out).starts_with("trail: 401 on perf:"),
        "{}",
        stderr(&out)
    );
    let out = cli.run(&["logs", "tail", "--url", "http://127.0.0.1:9"]);
    assert_eq!(out.status.code(), Some(6));
    assert_eq!(stderr(&out).lines().count(), 1);
    for bad in [
        vec!["logs", "tail", "--since", "yesterday"],
        vec!["logs", "tail", "-q", "actor:"],
        vec!["logs", "tail", "--follow", "-o", "json"],
        vec!["logs", "tail", "--nope"],
    ] {
        let out = cli.run(&bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", stderr(&out));
    }
    let help = cli.ok(&["--help"]);
    assert!(
        help.contains("4  not authenticated")
            && help.contains("5  forbidden")
            && help.contains("6  server unreachable"),
        "{help}"
    );
}

#[tokio::test]
async fn management_commands_and_health() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("data"));
    let cli = Cli::new();
    cli.ok(&["login", "--url", &s.url, "--token", &s.token()]);
    assert!(cli.ok(&["health"]).contains("healthy and ready"));
    assert_eq!(cli.json(&["me", "-o", "json"])["org"], "default");

    // An owner other than the caller is invited: the table shows the invitation, once.
    let created = cli.ok(&[
        "orgs",
        "create",
        "initech",
        "--owner",
        "bill@initech.io",
        "-o",
        "table",
    ]);
    assert!(
        created.contains("invitation (shown once)") && created.contains("inv_"),
        "{created}"
    );
    let orgs = cli.json(&["orgs", "list", "-o", "json"]);
    assert_eq!(orgs.as_array().unwrap().len(), 2);
    // Bill never accepts: another owner is invited in his place.
    let reinvited = cli.ok(&[
        "orgs",
        "invite-owner",
        "initech",
        "peter@initech.io",
        "-o",
        "table",
    ]);
    assert!(
        reinvited.contains("peter@initech.io") && reinvited.contains("inv_"),
        "{reinvited}"
    );
    let refused = cli.run(&["orgs", "invite-owner", "default", "eve@initech.io"]);
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    assert!(
        stderr(&refused).contains("has an owner"),
        "{}",
        stderr(&refused)
    );
    cli.ok(&["instances", "create", "argocd-prod", "--kind", "argocd"]);
    assert_eq!(
        cli.json(&["instances", "list", "-o", "json"])[0]["id"],
        "argocd-prod"
    );
    let added = cli.json(&[
        "members",
        "add",
        "ana@trail.local",
        "--role",
        "admin",
        "-o",
        "json",
    ]);
    let invitation = added["invitation"]["token"].as_str().unwrap().to_owned();
    // The invitee chooses their password; the invitation needs no credential.
    let mut accept = cli
        .command(&["members", "accept", &invitation, "-o", "json"])
        .env_remove("TRAIL_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    writeln!(accept.stdin.take().unwrap(), "a long enough password").unwrap();
    let accepted = accept.wait_with_output().unwrap();
    assert!(accepted.status.success(), "{accepted:?}");
    let signed_in = reqwest::Client::new()
        .post(format!("{}/v1/session", s.url))
        .json(
            &serde_json::json!({"email": "ana@trail.local", "password": "a long enough password"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 200);
    cli.ok(&["members", "set-role", "ana@trail.local", "member"]);
    let members = cli.json(&["members", "list", "-o", "json"]);
    assert!(
        members
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["email"] == "ana@trail.local" && m["role"] == "member")
    );
    cli.ok(&["members", "remove", "ana@trail.local"]);

    // Secrets are printed once, at creation, and never listed.
    let key = cli.json(&[
        "keys",
        "create",
        "siem",
        "--description",
        "SIEM pull",
        "--role",
        "owner",
        "-o",
        "json",
    ]);
    let secret = key["secret"].as_str().unwrap().to_owned();
    let listed = cli.ok(&["keys", "list", "-o", "json"]);
    assert!(listed.contains("siem") && !listed.contains(&secret));
    let key_token = format!("{}:{secret}", key["id"].as_str().unwrap());
    assert_eq!(
        cli.json(&["me", "--token", &key_token, "-o", "json"])["actorType"],
        "api_key"
    );
    cli.ok(&["keys", "revoke", key["id"].as_str().unwrap()]);
    assert_eq!(
        cli.run(&["me", "--token", &key_token]).status.code(),
        Some(4)
    );

    let pat = cli.json(&[
        "tokens",
        "create",
        "laptop",
        "--preset",
        "support-readonly",
        "-o",
        "json",
    ]);
    let token = pat["token"].as_str().unwrap().to_owned();
    assert_eq!(pat["scopes"], json!(["logs:read", "archives:read"]));
    assert!(!cli.ok(&["tokens", "list", "-o", "json"]).contains(&token));
    cli.ok(&["tokens", "revoke", pat["id"].as_str().unwrap()]);

    let bg = cli.json(&[
        "break-glass",
        "create",
        "--for",
        "initech",
        "--reason",
        "INC-7",
        "--expires-in",
        "30m",
        "-o",
        "json",
    ]);
    let bg_token = bg["token"].as_str().unwrap();
    let rows = cli.json(&[
        "logs", "tail", "--token", bg_token, "--org", "initech", "-o", "json",
    ]);
    assert!(
        rows.as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "created")
    );
    cli.ok(&["break-glass", "revoke", bg["id"].as_str().unwrap()]);

    // Completions for each shell.
    for shell in ["bash", "zsh", "fish"] {
        let script = cli.ok(&["completions", shell]);
        assert!(
            script.contains("trail") && script.contains("logs"),
            "{shell}"
        );
    }
    let started = Instant::now();
    let out = cli.run(&["health", "--url", "http://127.0.0.1:9"]);
    assert_eq!(out.status.code(), Some(6));
    assert!(started.elapsed() < Duration::from_secs(30));
}

/// Runs `trail` with its stdout a pipe whose reader is already gone.
fn with_closed_stdout(cli: &Cli, args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    cli.command(args)
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

/// `trail ... | head -1`: no command panics on a closed stdout; each stops quietly with
/// exit 141 (what a shell reports for SIGPIPE).
#[tokio::test]
async fn no_command_panics_on_a_closed_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let s = Server::start(&data);
    ingest(
        &s,
        json!([{"action": "a", "actor": {"id": "x", "type": "user"}}]),
    )
    .await;
    let cli = Cli::new();
    let url = s.url.clone();
    let token = s.token();
    let runs: Vec<Vec<&str>> = vec![
        vec!["completions", "bash"],
        vec!["--help"],
        vec![
            "logs", "tail", "--url", &url, "--token", &token, "-o", "table",
        ],
        vec![
            "logs", "tail", "--url", &url, "--token", &token, "-o", "ndjson",
        ],
        vec!["me", "--url", &url, "--token", &token, "-o", "json"],
        vec!["health", "--url", &url],
    ];
    for args in runs {
        let out = with_closed_stdout(&cli, &args);
        let err = stderr(&out);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        if args[0] != "--help" {
            assert_eq!(out.status.code(), Some(141), "{args:?}: {err}");
            assert!(err.is_empty(), "{args:?} stops quietly: {err}");
        }
    }
    s.stop();
    let out = with_closed_stdout(&cli, &["verify", "--data", data.to_str().unwrap()]);
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    assert_eq!(out.status.code(), Some(141), "{}", stderr(&out));
}

/// An event cannot inject rows or terminal sequences into a table: every field shows its
/// control characters escaped, while JSON keeps them exact.
#[tokio::test]
async fn a_table_shows_control_characters_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("data"));
    let name = "a\n2026-01-01T00:00:00.000000Z  root  user  deleted\r\x1b[31mred\x1b[0m\tend\u{7}";
    let action = "deleted\u{202e}";
    ingest(
        &s,
        json!([{"action": action, "actor": {"id": "mallory", "type": "user"},
                "object": {"type": "doc", "id": {"name": name}}}]),
    )
    .await;
    let cli = Cli::new();
    let args = |o: &'static str| {
        vec![
            "logs".to_owned(),
            "tail".into(),
            "--url".into(),
            s.url.clone(),
            "--token".into(),
            s.token(),
            "-q".into(),
            "category:app".into(),
            "-o".into(),
            o.into(),
        ]
    };
    let table_args = args("table");
    let table = cli.ok(&table_args.iter().map(String::as_str).collect::<Vec<_>>());
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "a header and one row: {table:?}");
    assert!(
        !table.contains('\x1b') && !table.contains('\r') && !table.contains('\x07'),
        "{table:?}"
    );
    for shown in [
        r"doc/a\n2026-01-01T00:00:00.000000Z  root  user  deleted\r\x1b[31mred\x1b[0m\tend\x07",
        r"deleted\u{202e}",
    ] {
        assert!(lines[1].contains(shown), "{shown:?} in {:?}", lines[1]);
    }
    let json_args = args("json");
    let json = cli.json(&json_args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(json[0]["object"]["id"]["name"], name);
    assert_eq!(json[0]["action"], action);
}

#[tokio::test]
async fn a_tail_says_on_stderr_when_more_events_match_than_it_printed() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("data"));
    let cli = Cli::new();
    cli.ok(&["login", "--url", &s.url, "--token", &s.token()]);
    let batch: Vec<Value> = (0..7)
        .map(|i| json!({"action": format!("step{i}"), "actor": {"id": "loader", "type": "system"}}))
        .collect();
    ingest(&s, Value::Array(batch)).await;

    let cut = cli.run(&[
        "logs", "tail", "--actor", "loader", "--limit", "5", "-o", "ndjson",
    ]);
    assert!(cut.status.success(), "{}", stderr(&cut));
    assert_eq!(String::from_utf8_lossy(&cut.stdout).lines().count(), 5);
    let note = stderr(&cut);
    assert_eq!(note.lines().count(), 1, "one line: {note}");
    assert!(
        note.starts_with("trail: note: more events match than the 5 shown"),
        "{note}"
    );
    assert!(note.contains("--limit") && note.contains("--all"), "{note}");

    let all = cli.run(&["logs", "tail", "--actor", "loader", "--all", "-o", "ndjson"]);
    assert!(all.status.success(), "{}", stderr(&all));
    assert_eq!(String::from_utf8_lossy(&all.stdout).lines().count(), 7);
    assert_eq!(stderr(&all), "", "nothing more to say");

    let exact = cli.run(&[
        "logs", "tail", "--actor", "loader", "--limit", "7", "-o", "ndjson",
    ]);
    assert_eq!(String::from_utf8_lossy(&exact.stdout).lines().count(), 7);
    assert_eq!(stderr(&exact), "", "all matching events were printed");

    let zero = cli.run(&["logs", "tail", "--limit", "0"]);
    assert_eq!(zero.status.code(), Some(2), "{}", stderr(&zero));
    let both = cli.run(&["logs", "tail", "--limit", "3", "--all"]);
    assert_eq!(both.status.code(), Some(2), "{}", stderr(&both));
}

#[tokio::test]
async fn a_tail_query_may_start_with_a_minus() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("data"));
    let cli = Cli::new();
    cli.ok(&["login", "--url", &s.url, "--token", &s.token()]);
    ingest(
        &s,
        json!([{"action": "deleted", "actor": {"id": "sarah", "type": "user"}}]),
    )
    .await;
    for query in [
        &["--query", "-category:api"][..],
        &["-q", "-category:api"][..],
    ] {
        let mut args = vec!["logs", "tail", "-o", "ndjson"];
        args.extend_from_slice(query);
        let out = cli.ok(&args);
        let rows: Vec<Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert!(!rows.is_empty(), "{query:?}");
        assert!(
            rows.iter().all(|r| r["request"].is_null()),
            "{query:?}: no API call in {out}"
        );
        assert!(rows.iter().any(|r| r["action"] == "deleted"), "{out}");
    }
}

/// The rows a credential's calls left in the default org's log, read with the bootstrap
/// token straight over HTTP, once at least `at_least` are there.
async fn calls_of(s: &Server, token_id: &str, at_least: usize) -> Vec<Value> {
    let what = format!("{at_least} calls recorded for {token_id}");
    common::eventually(&what, async || {
        let v: Value = reqwest::Client::new()
            .get(format!(
                "{}/v1/orgs/default/audit-logs?tokenId={token_id}&category=api&limit=1000",
                s.url
            ))
            .bearer_auth(s.token())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let items = v["items"].as_array().unwrap().clone();
        if items.len() >= at_least {
            Ok(items)
        } else {
            Err(format!("{} calls", items.len()))
        }
    })
    .await
}

#[tokio::test]
async fn each_command_makes_one_call_and_hide_own_leaves_out_the_viewers_calls() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("data"));
    let cli = Cli::new();
    // A second credential of the owner's, so the reads below are not mixed with the calls
    // this test makes with the bootstrap token.
    let pat = reqwest::Client::new()
        .post(format!("{}/v1/orgs/default/tokens", s.url))
        .bearer_auth(s.token())
        .json(&json!({"name": "reader", "scopes": ["logs:read", "keys:manage"]}))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let id = pat.split_once('.').unwrap().0.to_owned();
    let login = cli.ok(&["login", "--url", &s.url, "--token", &pat]);
    assert!(login.contains("org default"), "{login}");
    cli.ok(&["logs", "tail", "-o", "ndjson"]);
    // Without a profile or --org, the credential's own org, still in one call.
    let bare = cli.ok(&[
        "logs", "tail", "--url", &s.url, "--token", &pat, "-o", "ndjson",
    ]);
    assert!(bare.lines().count() > 0);
    cli.ok(&["keys", "list", "-o", "json"]);
    let calls = calls_of(&s, &id, 4).await;
    let routes: Vec<&str> = calls
        .iter()
        .map(|c| c["request"]["route"].as_str().unwrap())
        .collect();
    assert_eq!(calls.len(), 4, "one call per command: {routes:?}");
    assert_eq!(
        routes.iter().filter(|r| r.ends_with("/v1/me")).count(),
        1,
        "only login asks who the credential is: {routes:?}"
    );
    // With nothing naming the org, a command that needs one asks who the credential is
    // first (the README's `trail verify --url .. --token ..` works as written).
    let fresh = Cli::new();
    let keys = fresh.ok(&[
        "keys", "list", "--url", &s.url, "--token", &pat, "-o", "json",
    ]);
    assert!(
        serde_json::from_str::<Value>(&keys).unwrap().is_array(),
        "{keys}"
    );

    // --hide-own: the viewer's own calls are left out, the rest stays.
    ingest(
        &s,
        json!([{"action": "deleted", "actor": {"id": "sarah", "type": "user"}}]),
    )
    .await;
    let shown = |extra: &[&str]| -> Vec<Value> {
        let mut args = vec!["logs", "tail", "-o", "ndjson"];
        args.extend_from_slice(extra);
        cli.ok(&args)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let own = |rows: &[Value]| {
        rows.iter()
            .filter(|r| r["actor"]["tokenId"] == id.as_str())
            .count()
    };
    let all = shown(&[]);
    assert!(own(&all) > 0, "the viewer's calls are in the log");
    let hidden = shown(&["--hide-own"]);
    assert_eq!(own(&hidden), 0, "{hidden:?}");
    assert!(hidden.iter().any(|r| r["action"] == "deleted"));
    assert!(
        hidden.iter().any(|r| r["request"].is_object()),
        "others' calls stay"
    );
    // It combines with a query of the user's.
    let both = shown(&["--hide-own", "--query", "-category:api"]);
    assert_eq!(own(&both), 0);
    assert!(both.iter().all(|r| r["request"].is_null()));
}

#[tokio::test]
async fn the_event_table_fits_its_width_shows_details_and_times_as_asked() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("data"));
    let cli = Cli::new();
    cli.ok(&["login", "--url", &s.url, "--token", &s.token()]);
    ingest(
        &s,
        json!([
            {"action": "deleted", "actor": {"id": "sarah@acme.io", "type": "user"},
             "timestamp": "2026-01-02T03:04:05Z",
             "details": {"message": "Resource deleted from the production cluster of the east region"}},
            {"action": "tagged", "actor": {"id": "ci", "type": "system"},
             "timestamp": "2026-01-02T03:04:06Z", "details": {"tag": "v1"}}
        ]),
    )
    .await;
    let table = |columns: &str, extra: &[&str]| -> String {
        let mut args = vec![
            "logs",
            "tail",
            "--since",
            "2026-01-01T00:00:00Z",
            "--query",
            "-category:api",
            "-o",
            "table",
        ];
        args.extend_from_slice(extra);
        let out = cli
            .command(&args)
            .env("COLUMNS", columns)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8(out.stdout).unwrap()
    };

    let narrow = table("80", &[]);
    for line in narrow.lines() {
        assert!(line.chars().count() <= 80, "wider than 80: {line:?}");
    }
    assert!(narrow.lines().next().unwrap().contains("DETAI"), "{narrow}");
    assert!(narrow.contains('…'), "cut with an ellipsis: {narrow}");

    let wide = table("400", &[]);
    assert!(wide.lines().next().unwrap().contains("DETAILS"), "{wide}");
    assert!(
        wide.contains("Resource deleted from the production cluster of the east region"),
        "{wide}"
    );
    assert!(
        wide.contains(r#"{"tag":"v1"}"#),
        "details without a message, compact: {wide}"
    );
    assert!(
        wide.contains("2026-01-02T03:04:05.000000Z"),
        "utc by default: {wide}"
    );

    let relative = table("400", &["--time", "relative"]);
    assert!(relative.contains("d ago"), "{relative}");
    let local = cli
        .command(&[
            "logs",
            "tail",
            "--since",
            "2026-01-01T00:00:00Z",
            "-q",
            "-category:api",
            "-o",
            "table",
            "--time",
            "local",
        ])
        .env("COLUMNS", "400")
        .env("TZ", "EST5")
        .output()
        .unwrap();
    let local = String::from_utf8(local.stdout).unwrap();
    assert!(local.contains("2026-01-01 22:04:05 -05:00"), "{local}");
    let bad = cli.run(&["logs", "tail", "--time", "mars"]);
    assert_eq!(bad.status.code(), Some(2));
}

#[tokio::test]
async fn errors_name_the_action_a_missing_credential_exits_4_and_login_names_a_profile_one_way() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("data"));
    let cli = Cli::new();
    // No credential at all: 4, saying how to give one.
    let none = cli.run(&["keys", "list", "--url", &s.url, "--org", "default"]);
    assert_eq!(none.status.code(), Some(4), "{}", stderr(&none));
    assert!(stderr(&none).contains("trail login"), "{}", stderr(&none));

    // login saves under --profile, the one way to name a profile; --as is gone.
    let login = cli.ok(&[
        "login",
        "--url",
        &s.url,
        "--token",
        &s.token(),
        "--profile",
        "work",
    ]);
    assert!(login.contains("profile \"work\""), "{login}");
    assert_eq!(
        cli.run(&["login", "--url", &s.url, "--token", &s.token(), "--as", "x"])
            .status
            .code(),
        Some(2)
    );
    let me = cli.json(&["me", "--profile", "work", "-o", "json"]);
    assert_eq!(me["org"], "default");

    // A 403 names the action, not only the group.
    let reader = cli.json(&[
        "tokens",
        "create",
        "reader",
        "--scopes",
        "logs:read",
        "--profile",
        "work",
        "-o",
        "json",
    ]);
    let token = reader["token"].as_str().unwrap();
    let out = cli.run(&[
        "keys",
        "create",
        "ci",
        "--scopes",
        "logs:write",
        "--token",
        token,
        "--url",
        &s.url,
        "--org",
        "default",
    ]);
    assert_eq!(out.status.code(), Some(5));
    assert!(
        stderr(&out).starts_with("trail: 403 on keys create:"),
        "{}",
        stderr(&out)
    );
    // The connection flags go before the command as well as after it.
    let before = cli.run(&[
        "--token", token, "--url", &s.url, "--org", "default", "keys", "list",
    ]);
    assert!(
        stderr(&before).starts_with("trail: 403 on keys list:"),
        "{}",
        stderr(&before)
    );
    // serve takes none of them.
    let serve = cli.run(&["serve", "--url", &s.url]);
    assert_eq!(serve.status.code(), Some(2), "{}", stderr(&serve));
}

#[tokio::test]
async fn a_platforms_own_actor_types_are_ingested_and_found() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("data"));
    let cli = Cli::new();
    cli.ok(&["login", "--url", &s.url, "--token", &s.token()]);
    ingest(
        &s,
        json!([
            {"action": "sync", "actor": {"id": "billing", "type": "service"}},
            {"action": "promote", "actor": {"id": "stage-a", "type": "kargo.stage"}},
            {"action": "deleted", "actor": {"id": "sarah", "type": "user"}}
        ]),
    )
    .await;
    let actors = |q: &str| -> Vec<String> {
        let out = cli.ok(&["logs", "tail", "-q", q, "-o", "ndjson"]);
        out.lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                format!(
                    "{}:{}",
                    v["actor"]["type"].as_str().unwrap(),
                    v["actor"]["id"].as_str().unwrap()
                )
            })
            .collect()
    };
    assert_eq!(actors("actorType:service"), ["service:billing"]);
    assert_eq!(actors("actorType:kargo.stage"), ["kargo.stage:stage-a"]);
    assert_eq!(actors("actorType:user"), ["user:sarah"]);
    let others = actors("-actorType:service -category:api");
    assert_eq!(others, ["kargo.stage:stage-a", "user:sarah"]);

    // A malformed one is refused, by index, with what a type may be.
    let r = reqwest::Client::new()
        .post(format!("{}/v1/orgs/default/events", s.url))
        .bearer_auth(s.token())
        .json(&json!([{"action": "x", "actor": {"id": "a", "type": "Service Account"}}]))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert!(v.to_string().contains("invalid actor type"), "{v}");
    // And so is a query for one.
    let bad = cli.run(&["logs", "tail", "-q", "actorType:Nope"]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
}

impl Cli {
    /// Runs `trail` with `input` on standard input (a password, as a script gives it).
    fn with_stdin(&self, args: &[&str], input: &str) -> Output {
        use std::io::Write;
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        writeln!(child.stdin.take().unwrap(), "{input}").unwrap();
        child.wait_with_output().unwrap()
    }
}

#[tokio::test]
async fn one_login_works_in_every_org_and_tokens_reach_only_the_orgs_they_were_made_for() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("data"));
    let cli = Cli::new();
    // The bootstrap admin creates orgs and works in them with the same profile.
    cli.ok(&["login", "--url", &s.url, "--token", &s.token()]);
    for org in ["acme", "beta"] {
        cli.ok(&["orgs", "create", org]);
    }
    cli.ok(&["--org", "acme", "logs", "tail"]);
    let orgs = cli.json(&["orgs", "list", "-o", "json"]);
    for org in orgs.as_array().unwrap() {
        assert!(
            org["scopes"].as_array().is_some_and(|s| !s.is_empty()),
            "{orgs}"
        );
    }
    // A token for default and acme works in both, and is refused in beta.
    let two = cli.json(&[
        "--org",
        "acme",
        "tokens",
        "create",
        "two",
        "--preset",
        "admin-full",
        "--orgs",
        "default",
        "-o",
        "json",
    ]);
    assert_eq!(two["orgs"], json!(["acme", "default"]));
    let two = two["token"].as_str().unwrap().to_owned();
    for org in ["acme", "default"] {
        cli.ok(&["--token", &two, "--org", org, "logs", "tail"]);
    }
    let refused = cli.run(&["--token", &two, "--org", "beta", "logs", "tail"]);
    assert_eq!(refused.status.code(), Some(5), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("this token cannot act on org \"beta\""),
        "{}",
        stderr(&refused)
    );

    // An invited member chooses a password, then logs in with email and password.
    let added = cli.json(&[
        "--org",
        "beta",
        "members",
        "add",
        "dev@beta.io",
        "--role",
        "owner",
        "-o",
        "json",
    ]);
    let invitation = added["invitation"]["token"].as_str().unwrap().to_owned();
    let accepted = cli.with_stdin(
        &["members", "accept", &invitation],
        "a long enough password",
    );
    assert!(accepted.status.success(), "{}", stderr(&accepted));
    let wrong = cli.with_stdin(
        &["login", "--profile", "dev", "--email", "dev@beta.io"],
        "not the password",
    );
    assert_eq!(wrong.status.code(), Some(4), "{}", stderr(&wrong));
    let login = cli.with_stdin(
        &["login", "--profile", "dev", "--email", "dev@beta.io"],
        "a long enough password",
    );
    assert!(login.status.success(), "{}", stderr(&login));
    let said = String::from_utf8_lossy(&login.stdout);
    assert!(
        said.contains("dev@beta.io") && said.contains("all your orgs") && said.contains("beta"),
        "{said}"
    );
    // The password never reaches the config: only the token made for this machine.
    let config = std::fs::read_to_string(cli.home.path().join("config.toml")).unwrap();
    assert!(!config.contains("a long enough password") && config.contains("pat_"));
    cli.ok(&["--profile", "dev", "logs", "tail"]);
    let mine = cli.json(&["--profile", "dev", "tokens", "list", "-o", "json"]);
    let made = mine
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"].as_str().unwrap().starts_with("trail login on "))
        .expect("listed")
        .clone();
    assert_eq!(made["orgs"], "all");
    // In an org they are not in, the login token acts on nothing.
    let other = cli.run(&["--profile", "dev", "--org", "acme", "logs", "tail"]);
    assert_eq!(other.status.code(), Some(5), "{}", stderr(&other));

    // Logging out revokes the token login made, and forgets the profile.
    let dev_token = config
        .lines()
        .skip_while(|l| !l.contains("[profiles.dev]"))
        .find_map(|l| l.strip_prefix("token = "))
        .unwrap()
        .trim_matches('"')
        .to_owned();
    cli.ok(&["--profile", "dev", "logout"]);
    let after = cli.run(&["--token", &dev_token, "me"]);
    assert_eq!(after.status.code(), Some(4), "{}", stderr(&after));
    let gone = cli.run(&["--profile", "dev", "me"]);
    assert_eq!(gone.status.code(), Some(2), "{}", stderr(&gone));
    // The default profile (a token given to login) is logged out of without revoking it.
    cli.ok(&["logout"]);
    cli.ok(&["--url", &s.url, "--token", &s.token(), "me"]);
}

/// `trail logs export`: a SIEM pull with an API key, resumed from its saved cursor, in each
/// format, and followed.
#[tokio::test]
async fn logs_export_pulls_once_resumes_from_its_cursor_and_follows() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("data"));
    let cli = Cli::new();
    let key: Value = reqwest::Client::new()
        .post(format!("{}/v1/orgs/default/api-keys", s.url))
        .bearer_auth(s.token())
        .json(&json!({"name": "siem", "scopes": ["logs:read"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = format!(
        "{}:{}",
        key["id"].as_str().unwrap(),
        key["secret"].as_str().unwrap()
    );
    let export = |extra: &[&str]| {
        let mut args = vec!["--url", &s.url, "--token", &key, "logs", "export"];
        args.extend_from_slice(extra);
        cli.run(&args)
    };
    let app_seqs = |out: &Output| -> Vec<u64> {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|e| e["category"] == "app")
            .map(|e| e["seq"].as_u64().unwrap())
            .collect()
    };
    for b in 0..2 {
        let batch: Vec<Value> = (0..700)
            .map(|i| json!({"action": format!("bulk{b}-{i}"), "actor": {"id": "loader", "type": "system"}}))
            .collect();
        ingest(&s, Value::Array(batch)).await;
    }

    let first = export(&["--since", "1h"]);
    assert!(first.status.success(), "{}", stderr(&first));
    let seqs = app_seqs(&first);
    assert_eq!(seqs.len(), 1400, "more than a page, each event once");
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "oldest first, by seq");
    let key_id = key.split(':').next().unwrap();
    assert!(
        String::from_utf8_lossy(&first.stdout)
            .lines()
            .all(|l| serde_json::from_str::<Value>(l).unwrap()["actor"]["tokenId"] != key_id),
        "its own calls are left out"
    );

    // Run again: it resumes from the saved cursor, with only what came since.
    ingest(
        &s,
        json!([{"action": "later", "actor": {"id": "a", "type": "user"}}]),
    )
    .await;
    let again = export(&["--since", "1h"]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("resuming from the cursor saved in"),
        "{}",
        stderr(&again)
    );
    let later = app_seqs(&again);
    assert_eq!(later.len(), 1);
    assert!(later[0] > *seqs.last().unwrap());

    let state = dir.path().join("cef.json");
    let state = state.to_str().unwrap();
    let cef = export(&[
        "--since",
        "1h",
        "--format",
        "cef",
        "--state",
        state,
        "-q",
        "action:later",
    ]);
    let text = String::from_utf8_lossy(&cef.stdout).into_owned();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.starts_with("CEF:0|Trail|Trail|") && text.contains("act=later"),
        "{text}"
    );
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(state).unwrap()).unwrap();
    assert!(saved["cursor"].is_string() && saved["org"] == "default");

    let ocsf = export(&[
        "--since",
        "1h",
        "--format",
        "ocsf",
        "--state",
        &format!("{state}.2"),
        "-q",
        "action:later",
    ]);
    let line: Value = serde_json::from_str(String::from_utf8_lossy(&ocsf.stdout).trim()).unwrap();
    assert_eq!(
        (line["class_uid"].clone(), line["api"]["operation"].clone()),
        (json!(6003), json!("later"))
    );

    // The saved cursor belongs to its filters: resumed with others, it would skip events.
    let other = export(&["-q", "action:later"]);
    assert_eq!(other.status.code(), Some(2), "{}", stderr(&other));
    assert!(
        stderr(&other).contains("keeps a pull with other filters"),
        "{}",
        stderr(&other)
    );

    for (args, detail) in [
        (vec!["--since", "yesterday"], "--since"),
        (vec!["--format", "xml"], "invalid value"),
        (vec!["--interval", "0s"], "--interval"),
        (vec!["-q", "actor:"], "--query"),
    ] {
        let out = export(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(detail), "{args:?}: {}", stderr(&out));
    }

    // --follow: what arrives is pulled, until stopped. With no --since the pull starts
    // where the log ends at its first page, which saves the cursor: the event is sent
    // after that.
    let followed = format!("{state}.3");
    let child = cli
        .command(&[
            "--url",
            &s.url,
            "--token",
            &key,
            "logs",
            "export",
            "--follow",
            "--interval",
            "1s",
            "--state",
            &followed,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    common::eventually(
        "the follower's first page, its cursor saved",
        async || match std::fs::exists(&followed) {
            Ok(true) => Ok(()),
            Ok(false) => Err(format!("no {followed}")),
            Err(e) => Err(e.to_string()),
        },
    )
    .await;
    ingest(
        &s,
        json!([{"action": "followed", "actor": {"id": "a", "type": "user"}}]),
    )
    .await;
    following_prints(child, "\"action\":\"followed\"");
}
