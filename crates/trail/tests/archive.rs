//! Weekly archives end to end: listed and downloaded through the API and the CLI, resumed
//! with `Range`, and checked offline by `trail verify --archive`, which names a changed
//! record by file and seq.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Output};

use serde_json::{Value, json};

mod common;
use common::Server;

fn trail(s: &Server, token: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_trail"))
        .args(args)
        .env("TRAIL_URL", &s.url)
        .env("TRAIL_TOKEN", token)
        .env("TRAIL_ORG", "default")
        .env("TRAIL_LOG", "error")
        .env("HOME", s.data.parent().unwrap())
        .env_remove("TRAIL_PROFILE")
        .output()
        .unwrap()
}

use common::{run, text};

/// A JSON answer of the server, with the token.
async fn get_json(s: &Server, token: &str, path: &str) -> Value {
    reqwest::Client::new()
        .get(format!("{}{path}", s.url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The ZIP's parts, by name.
fn parts(zip: &Path) -> Vec<(String, Vec<u8>)> {
    let mut z = zip::ZipArchive::new(std::fs::File::open(zip).unwrap()).unwrap();
    (0..z.len())
        .map(|i| {
            let mut f = z.by_index(i).unwrap();
            let mut b = Vec::new();
            f.read_to_end(&mut b).unwrap();
            (f.name().unwrap().into_owned(), b)
        })
        .collect()
}

fn write_zip(path: &Path, parts: &[(String, Vec<u8>)]) {
    let mut z = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    for (name, bytes) in parts {
        z.start_file(name.as_str(), zip::write::SimpleFileOptions::default())
            .unwrap();
        z.write_all(bytes).unwrap();
    }
    z.finish().unwrap();
}

#[tokio::test]
async fn a_weeks_archive_downloads_resumes_and_verifies_offline_naming_a_changed_record() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("data"));
    let token = s.token();
    let http = reqwest::Client::new();
    let now = time::OffsetDateTime::now_utc();
    // Stamped now, and three days ago: the second group goes into its own day's file
    // (of this week or, early in a week, of the week before: received now all the same).
    let stamp = |days: i64| {
        (now - time::Duration::days(days))
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    for (days, n) in [(0, 40), (3, 25)] {
        let events: Vec<Value> = (0..n)
            .map(|i| json!({"timestamp": stamp(days), "action": "deployed", "actor": {"id": format!("u{i}"), "type": "user", "ip": "203.0.113.9"}, "details": {"i": i, "note": "ünïcode"}}))
            .collect();
        let r = http
            .post(format!("{}/v1/orgs/default/events", s.url))
            .bearer_auth(&token)
            .json(&events)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }

    // The list: no week has ended since the org was made; the current week is named.
    let list = get_json(&s, &token, "/v1/orgs/default/archives").await;
    assert_eq!(list["items"], json!([]));
    let week = list["current"].as_str().unwrap().to_owned();
    let out = trail(&s, &token, &["archive", "list", "--output", "json"]);
    assert!(out.status.success(), "{}", text(&out));

    // A week before the org was made has no archive; nor has a week to come or a bad name.
    for w in ["2001-W01", "2999-W01", "2026-W99", "..%2F..%2Fetc"] {
        let r = http
            .get(format!("{}/v1/orgs/default/archives/{w}", s.url))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{w}");
        assert_eq!(
            r.headers()["content-type"],
            "application/problem+json",
            "{w}"
        );
    }

    // The current week through the CLI: a partial archive that verifies offline.
    let zip = dir.path().join("week.zip");
    let out = trail(
        &s,
        &token,
        &["archive", "download", &week, "-o", zip.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", text(&out));
    let key = s.key();
    let out = trail(
        &s,
        &token,
        &["verify", "--archive", zip.to_str().unwrap(), "--key", &key],
    );
    assert!(out.status.success(), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains(&format!("archive {week} of org default verified")),
        "{said}"
    );
    assert!(said.contains("partial"), "{said}");

    // Its parts: the seven days of the week, the leaves and the manifest; 65 events and
    // Trail's own records of the calls, each in its day's file, oldest first.
    let parts = parts(&zip);
    let manifest: Value =
        serde_json::from_slice(&parts.iter().find(|(n, _)| n == "manifest.json").unwrap().1)
            .unwrap();
    assert_eq!(manifest["week"], week.as_str());
    assert_eq!(manifest["partial"], true);
    assert_eq!(manifest["firstSeq"], 0);
    let end = manifest["endSeq"].as_u64().unwrap();
    assert!(end >= 65, "{manifest}");
    let mut seen = 0;
    for (name, bytes) in &parts {
        if !name.ends_with(".json") || name == "manifest.json" {
            continue;
        }
        let records: Vec<Value> = serde_json::from_slice(bytes).unwrap();
        for r in &records {
            assert_eq!(
                format!("{}.json", &r["timestamp"].as_str().unwrap()[..10]),
                *name
            );
        }
        seen += records.len() as u64;
    }
    assert_eq!(seen, end);
    let days = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["events"] == 0)
        .count();
    assert!(days >= 5, "most days of the week are empty: {manifest}");

    // Resumed with Range: the rest of a stored archive's bytes, as served whole. (The
    // current week's archive is made at each call, so its bytes differ; a partial download
    // resumes only against a stored week.)
    let whole = std::fs::read(&zip).unwrap();
    let r = http
        .get(format!("{}/v1/orgs/default/archives/{week}", s.url))
        .bearer_auth(&token)
        .header("range", "bytes=0-99")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.unwrap().len(), 100);
    assert!(whole.len() > 100);

    // A credential without archives:read is refused.
    let r = http
        .post(format!("{}/v1/orgs/default/api-keys", s.url))
        .bearer_auth(&token)
        .json(&json!({"name": "reader", "scopes": ["logs:read"]}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let k: Value = r.json().await.unwrap();
    let r = http
        .get(format!("{}/v1/orgs/default/archives/{week}", s.url))
        .basic_auth(k["id"].as_str().unwrap(), k["secret"].as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // A changed archive, written as FILE.zip: `trail verify --archive` refuses it (exit 1)
    // and says why.
    let refused = |file: &str, parts: &[(String, Vec<u8>)]| {
        let bad = dir.path().join(format!("{file}.zip"));
        write_zip(&bad, parts);
        let out = trail(
            &s,
            &token,
            &["verify", "--archive", bad.to_str().unwrap(), "--key", &key],
        );
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        text(&out)
    };
    // One changed byte in a day's record: named by file and seq.
    let mut changed = parts.clone();
    let (name, bytes) = changed
        .iter_mut()
        .find(|(n, b)| n.ends_with(".json") && n != "manifest.json" && b.len() > 10)
        .unwrap();
    let text_of = String::from_utf8(bytes.clone()).unwrap();
    *bytes = text_of
        .replacen("\"deployed\"", "\"deleted\"", 1)
        .into_bytes();
    let name = name.clone();
    let said = refused("bad", &changed);
    assert!(said.contains(&format!("{name}: record")), "{said}");
    assert!(said.contains("(seq "), "{said}");

    // A record taken out: the seq is named as missing.
    let mut fewer = parts.clone();
    let (name, bytes) = fewer
        .iter_mut()
        .find(|(n, b)| n.ends_with(".json") && n != "manifest.json" && b.len() > 10)
        .unwrap();
    let mut records: Vec<Value> = serde_json::from_slice(bytes).unwrap();
    let gone = records.remove(0)["seq"].as_u64().unwrap();
    *bytes = serde_json::to_vec(&records).unwrap();
    let _ = name;
    let said = refused("fewer", &fewer);
    assert!(
        said.contains("holds") || said.contains(&format!("seq {gone} is missing")),
        "{said}"
    );

    // A record grown to 8 MiB of one letter (a ZIP stores it in a few KiB): refused once
    // it passes the longest a record may be, not read whole.
    let mut long = parts.clone();
    let (name, bytes) = long
        .iter_mut()
        .find(|(n, b)| n.ends_with(".json") && n != "manifest.json" && b.len() > 10)
        .unwrap();
    let mut records: Vec<Value> = serde_json::from_slice(bytes).unwrap();
    let canonical = records[0]["canonical"].as_str().unwrap();
    records[0]["canonical"] = json!(format!("{}{canonical}", "A".repeat(8 << 20)));
    *bytes = serde_json::to_vec(&records).unwrap();
    let name = name.clone();
    let said = refused("long", &long);
    assert!(
        said.contains(&format!("{name} does not read: a record is longer than")),
        "{}",
        said
    );

    // The manifest relabelled as another week: its signature no longer covers it.
    let mut relabelled = parts.clone();
    let (_, bytes) = relabelled
        .iter_mut()
        .find(|(n, _)| n == "manifest.json")
        .unwrap();
    let mut m: Value = serde_json::from_slice(bytes).unwrap();
    m["week"] = json!("2099-W01");
    *bytes = serde_json::to_vec_pretty(&m).unwrap();
    let said = refused("relabelled", &relabelled);
    assert!(said.contains("manifest.json was changed"), "{}", said);
    // Another log's key: the signature does not verify.
    let other = trail_core::checkpoint::SignerKey::from_seed("trail.test", [7; 32])
        .unwrap()
        .verifier()
        .to_string();
    let out = trail(
        &s,
        &token,
        &[
            "verify",
            "--archive",
            zip.to_str().unwrap(),
            "--key",
            &other,
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    s.stop();
}

/// A store whose three past weeks were received at their time (a clock the test sets),
/// seeded as `trail serve` seeds one, signed with the key the server will find.
async fn store_with_past_weeks(data: &Path, per_week: i64) -> Vec<trail_core::archive::Week> {
    store_with_past_weeks_in(data, per_week, None).await
}

/// [`store_with_past_weeks`], on the PostgreSQL `database` if given.
async fn store_with_past_weeks_in(
    data: &Path,
    per_week: i64,
    database: Option<&str>,
) -> Vec<trail_core::archive::Week> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicI64, Ordering};
    use trail_core::Timestamp;
    use trail_core::archive::Week;
    use trail_store::Store;
    const HOUR: i64 = 3_600_000_000;
    // Ten minutes back: the server builds a week's archive a few minutes after it ends, so
    // the three weeks are ended and built whenever the test runs.
    let this_week = Week::containing(Timestamp(trail_server::now().micros() - 600_000_000));
    let weeks = vec![
        this_week.previous().previous().previous(),
        this_week.previous().previous(),
        this_week.previous(),
    ];
    let clock = Arc::new(AtomicI64::new(weeks[0].start().micros() + HOUR));
    let c = clock.clone();
    let reads: trail_store::Clock = Arc::new(move || Timestamp(c.load(Ordering::SeqCst)));
    let store: Arc<dyn Store> = match database {
        Some(url) => Arc::new(
            trail_store::PgStore::open_with_clock(url, reads)
                .await
                .unwrap(),
        ),
        None => Arc::new(trail_store::SqliteStore::open_with_clock(data, reads).unwrap()),
    };
    trail_server::bootstrap(
        &*store,
        data,
        "default",
        "owner@example.com",
        Timestamp(weeks[0].start().micros() + HOUR),
    )
    .await
    .unwrap();
    let key = Arc::new(
        trail_server::log::load_or_create_key(&*store, data, Some("trail.test"))
            .await
            .unwrap(),
    );
    let heads = trail_server::log::Heads::new(
        store.clone(),
        key,
        Some(data.join(trail_server::log::HEADS_FILE)),
    );
    heads.start_signing().await.unwrap();
    for week in &weeks {
        clock.store(week.start().micros() + 30 * HOUR, Ordering::SeqCst);
        let batches = per_week / 100;
        for batch in 0..batches {
            let events = (0..100i64)
                .map(|j| {
                    let at = Timestamp(
                        week.start().micros() + (batch * 100 + j) * (7 * 24 * HOUR) / per_week,
                    );
                    trail_core::EventBody::from_json(
                        json!({"timestamp": at.to_string(), "action": "deployed", "actor": {"id": format!("u{j}"), "type": "user"}}),
                        "default",
                    )
                    .unwrap()
                })
                .collect();
            store.append("default", events).await.unwrap();
        }
    }
    drop(heads);
    drop(store);
    weeks
}

/// Where a prune under a retention of one day, run at `at`, ends: at the end of the last
/// listed week that ended a day before, aligned down to 256 seqs. Weeks end at Monday 00:00
/// UTC, so on a Monday the week just ended is still inside the retention.
fn pruned_below(items: &[Value], at: trail_core::Timestamp) -> u64 {
    const DAY: i64 = 86_400_000_000;
    let end = items
        .iter()
        .take_while(|a| {
            let week = trail_core::archive::Week::parse(a["week"].as_str().unwrap()).unwrap();
            week.end().micros() <= at.micros() - DAY
        })
        .last()
        .map_or(0, |a| a["endSeq"].as_u64().unwrap());
    end - end % 256
}

/// The org's archives once `n` are listed (the server's job builds them at start).
async fn listed_weeks(s: &Server, token: &str, n: usize) -> Vec<Value> {
    common::eventually(&format!("{n} archives listed"), async || {
        let list = get_json(s, token, "/v1/orgs/default/archives").await;
        match list["items"].as_array() {
            Some(items) if items.len() == n => Ok(items.clone()),
            _ => Err(list.to_string()),
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pruned_log_still_verifies_online_and_offline_and_its_archives_hold_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let weeks = store_with_past_weeks(&data, 300).await;
    let s = Server::start(&data);
    let token = common::token(&data);
    let http = reqwest::Client::new();

    // The server's job builds the three ended weeks' archives at start.
    let items = listed_weeks(&s, &token, 3).await;
    assert_eq!(items[0]["week"], weeks[0].to_string());

    // A witness first sees the whole log.
    let state = dir.path().join("witness");
    let state_arg = state.to_str().unwrap();
    let out = trail(&s, &token, &["verify", "--state-dir", state_arg]);
    assert!(out.status.success(), "{}", text(&out));

    // Retention of a day, set through the CLI (recorded), then the prune, run by hand.
    let out = trail(&s, &token, &["retention", "set", "1", "--output", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["retentionDays"], 1);
    let out = trail(&s, &token, &["retention", "hold"]);
    assert!(out.status.success(), "{}", text(&out));
    let data_arg = data.to_str().unwrap();
    let out = run(&["admin", "prune", "--data", data_arg]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("default: nothing pruned: under legal hold"),
        "{}",
        text(&out)
    );
    let out = trail(&s, &token, &["retention", "release"]);
    assert!(out.status.success(), "{}", text(&out));
    let before = trail_server::now();
    let out = run(&["admin", "prune", "--data", data_arg]);
    assert!(out.status.success(), "{}", text(&out));
    // The first two weeks always go; the third once a day has passed since it ended.
    let below = [before, trail_server::now()]
        .map(|at| pruned_below(&items, at))
        .into_iter()
        .find(|&b| text(&out).contains(&format!("default: pruned seqs 0..{} ({b} events)", b - 1)));
    let below = below.unwrap_or_else(|| panic!("{}", text(&out)));
    assert!(below >= 512, "{below}");

    // What is pruned is gone from the API, with a clear answer.
    let r = http
        .get(format!("{}/v1/orgs/default/events/0", s.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let r = get_json(&s, &token, "/v1/orgs/default/retention").await;
    assert_eq!(r["prunedBelow"], below);

    // The log still verifies, online (the witness's old checkpoint is in the pruned part)
    // and on the files; the pruned weeks' archives still verify.
    let out = trail(&s, &token, &["verify", "--state-dir", state_arg]);
    assert!(out.status.success(), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains(&format!("seqs 0..{} were pruned", below - 1)),
        "{said}"
    );
    let key = s.key();
    let out = run(&["verify", "--data", data_arg, "--key", &key]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("were pruned"), "{}", text(&out));
    for week in &weeks {
        let zip = dir.path().join(format!("{week}.zip"));
        let w = week.to_string();
        let out = trail(
            &s,
            &token,
            &["archive", "download", &w, "-o", zip.to_str().unwrap()],
        );
        assert!(out.status.success(), "{}", text(&out));
        let out = run(&["verify", "--archive", zip.to_str().unwrap(), "--key", &key]);
        assert!(out.status.success(), "{}", text(&out));
    }
    // The prune is in the log, as a system event naming its range.
    let page = get_json(
        &s,
        &token,
        "/v1/orgs/default/audit-logs?category=system&action=pruned",
    )
    .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1, "{page}");
    assert_eq!(page["items"][0]["details"]["endSeq"], below);
    s.stop();
    let out = run(&["verify", "--data", data_arg, "--key", &key, "--strict"]);
    assert!(out.status.success(), "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_archive_builds_and_a_prune_leaves_whole_archives_and_every_event() {
    kill_9_during_archive_builds_and_a_prune(None).await;
}

/// On PostgreSQL, where the prune drops the partitions of whole weeks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgresql_kill_9_during_archive_builds_and_a_prune_loses_nothing() {
    let database = tokio::task::spawn_blocking(trail_store::conformance::postgres_database)
        .await
        .unwrap();
    kill_9_during_archive_builds_and_a_prune(Some(database)).await;
}

async fn kill_9_during_archive_builds_and_a_prune(database: Option<String>) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let weeks = store_with_past_weeks_in(&data, 20_000, database.as_deref()).await;
    let data_arg = data.to_str().unwrap().to_owned();
    let env: Vec<(&str, String)> = database
        .iter()
        .map(|url| ("TRAIL_DATABASE_URL", url.clone()))
        .collect();
    let start = || Server::start_with_env(&data, common::DEFAULT_OPTIONS, &env);
    // The log's own check: the embedded store's file, or the database.
    let store_arg: [&str; 2] = match &database {
        Some(url) => ["--database", url],
        None => ["--data", &data_arg],
    };
    let archives = data.join("archives/default");
    let check = |key: &str| {
        // Whatever was renamed into place is a whole archive; nothing else is listed.
        for f in std::fs::read_dir(&archives).into_iter().flatten().flatten() {
            let name = f.file_name().to_string_lossy().into_owned();
            if name.ends_with(".zip") && !name.starts_with('.') {
                let out = run(&[
                    "verify",
                    "--archive",
                    f.path().to_str().unwrap(),
                    "--key",
                    key,
                ]);
                assert!(out.status.success(), "{name}: {}", text(&out));
            }
        }
        let out = run(&[
            "verify",
            store_arg[0],
            store_arg[1],
            "--key",
            key,
            "--strict",
        ]);
        assert!(out.status.success(), "{}", text(&out));
    };
    // Killed while the start-up job builds the three weeks (at varied points).
    let mut key = String::new();
    for delay in [30u64, 150, 400] {
        let mut s = start();
        key = s.key();
        tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
        s.signal(libc::SIGKILL);
        check(&key);
    }
    // Then left to finish: three whole weeks (60,000 events: some 20 s of a debug build on
    // an idle machine of two cores).
    let s = start();
    let token = common::token(&data);
    let limit = std::time::Duration::from_secs(300);
    common::eventually_within(limit, "the three weeks' archives written", async || {
        let names: Vec<String> = std::fs::read_dir(&archives)
            .into_iter()
            .flatten()
            .flatten()
            .map(|f| f.file_name().to_string_lossy().into_owned())
            .filter(|name| !name.starts_with('.'))
            .collect();
        if names.len() == 3 {
            Ok(())
        } else {
            Err(format!("{names:?}"))
        }
    })
    .await;
    let out = trail(&s, &token, &["retention", "set", "1"]);
    assert!(out.status.success(), "{}", text(&out));
    // Killed during a prune: it happened whole or not at all.
    let prune = std::process::Command::new(env!("CARGO_BIN_EXE_trail"))
        .args(["admin", "prune", "--data", &data_arg])
        .env("TRAIL_LOG", "error")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    let mut s = s;
    s.signal(libc::SIGKILL);
    let _ = prune.wait_with_output();
    check(&key);
    let s = start();
    let out = run(&["admin", "prune", "--data", &data_arg]);
    assert!(out.status.success(), "{}", text(&out));
    s.stop();
    check(&key);
    let out = run(&["verify", store_arg[0], store_arg[1], "--key", &key]);
    assert!(text(&out).contains("were pruned"), "{}", text(&out));
    if let Some(url) = database {
        // The weeks that went whole went as partitions: none is left from before the second.
        let second = weeks[1].start().micros();
        let left: i64 = tokio::task::spawn_blocking(move || {
            let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
            c.query_one(
                "SELECT count(*) FROM event_partitions WHERE lo < $1",
                &[&second],
            )
            .unwrap()
            .get(0)
        })
        .await
        .unwrap();
        assert_eq!(left, 0, "the first week's partition was dropped");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archives_kept_in_an_s3_bucket_are_listed_downloaded_verified_and_pruned_by() {
    let s3 = common::S3::start();
    s3.bucket("trail-archives").await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let weeks = store_with_past_weeks(&data, 300).await;
    let mut options = common::DEFAULT_OPTIONS.to_vec();
    options.extend(["--archive-url", "s3://trail-archives/prod"]);
    let s = Server::start_with_env(&data, &options, &s3.env());
    assert!(
        s.banner.contains("archives: s3://trail-archives/prod"),
        "{}",
        s.banner
    );
    let token = common::token(&data);
    let http = reqwest::Client::new();
    let items = listed_weeks(&s, &token, 3).await;
    assert_eq!(items[0]["week"], weeks[0].to_string());
    assert!(items[0]["size"].as_u64().unwrap() > 0);

    // In the bucket, under the prefix: each week's ZIP and its summary; none on local disk.
    let listing = http
        .get(format!(
            "{}/trail-archives?list-type=2&prefix=prod/default/",
            s3.url
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for week in &weeks {
        for ext in ["zip", "json"] {
            let key = format!("prod/default/{week}.{ext}");
            assert!(listing.contains(&key), "{key} in {listing}");
        }
    }
    let local = std::fs::read_dir(data.join("archives/default"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|f| f.file_name().to_string_lossy().ends_with(".zip"))
        .count();
    assert_eq!(local, 0);

    // Downloaded through Trail (with Range), and verified offline.
    let key = s.key();
    let zip = dir.path().join("w1.zip");
    let w = weeks[1].to_string();
    let out = trail(
        &s,
        &token,
        &["archive", "download", &w, "-o", zip.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = trail(
        &s,
        &token,
        &["verify", "--archive", zip.to_str().unwrap(), "--key", &key],
    );
    assert!(out.status.success(), "{}", text(&out));
    let whole = std::fs::read(&zip).unwrap();
    let r = http
        .get(format!("{}/v1/orgs/default/archives/{w}", s.url))
        .bearer_auth(&token)
        .header("range", "bytes=10-")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.unwrap(), whole[10..]);

    // Retention prunes by the archives in the bucket.
    let out = trail(&s, &token, &["retention", "set", "1"]);
    assert!(out.status.success(), "{}", text(&out));
    let before = trail_server::now();
    let out = Command::new(env!("CARGO_BIN_EXE_trail"))
        .args(["admin", "prune", "--data", data.to_str().unwrap()])
        .env("TRAIL_LOG", "error")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        [before, trail_server::now()]
            .map(|at| pruned_below(&items, at))
            .iter()
            .any(|b| text(&out).contains(&format!("pruned seqs 0..{}", b - 1))),
        "{}",
        text(&out)
    );
    let out = trail(
        &s,
        &token,
        &[
            "verify",
            "--state-dir",
            dir.path().join("w").to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("were pruned"), "{}", text(&out));
    s.stop();
}
