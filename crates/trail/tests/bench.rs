//! `trail bench` runs end to end: Trail, the load generator's own speed, and the PostgreSQL
//! and SQLite baselines it starts itself. (Its figures are for BENCHMARKS.md, from a release
//! build; this only checks that every part of the harness works and reports.)

use std::process::Command;

#[test]
fn a_small_bench_measures_trail_and_every_baseline() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let out = Command::new(env!("CARGO_BIN_EXE_trail"))
        .args([
            "bench",
            "--events",
            "2000",
            "--batch",
            "100",
            "--queries",
            "2",
        ])
        .arg("--json")
        .arg(&json)
        .env("TRAIL_LOG", "error")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("| ingest, durable ack"), "{stdout}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(report["trail"]["ingest"]["events"], 2000);
    // What the server wrote to storage while it ingested, from /proc/PID/io.
    assert!(
        stdout.contains("| bytes written to storage per event"),
        "{stdout}"
    );
    assert!(
        report["trail"]["bytesWrittenPerEvent"].as_f64().is_some(),
        "{}",
        report["trail"]
    );
    // The server's CPU time per event, all threads and the writer's (the writer thread
    // found by its name: without it the figures are absent).
    assert!(
        stdout.contains("| server CPU time per event during the ingest (µs)"),
        "{stdout}"
    );
    let cpu = &report["trail"]["cpuMicrosPerEvent"];
    let (server, writer) = (
        cpu["server"].as_f64().unwrap(),
        cpu["writer"].as_f64().unwrap(),
    );
    assert!(writer > 0.0 && server > 0.0, "{cpu}");
    // Then batches were offered at half the rate measured, on a schedule: for five seconds
    // or, sooner, as many batches as the ingest sent (20). They were spread over the time
    // that schedule takes, and every acknowledgement, at either rate, carried a checkpoint
    // covering its batch.
    let half = &report["trail"]["ackAtHalfRate"];
    let full = report["trail"]["ingest"]["eventsPerSecond"]
        .as_f64()
        .unwrap();
    let offered = half["eventsPerSecondOffered"].as_f64().unwrap();
    assert!((offered - full / 2.0).abs() <= 1e-9 * full, "{half}");
    let paced = half["batches"].as_u64().unwrap();
    assert!(
        paced == 20 || paced as f64 >= 5.0 * offered / 100.0,
        "{half}"
    );
    assert!(paced <= 20, "{half}");
    let period = 100.0 / offered;
    assert!(
        half["seconds"].as_f64().unwrap() >= (paced - 1) as f64 * period * 0.99,
        "sent faster than the schedule: {half}"
    );
    assert_eq!(half["batchesWithCoveringCheckpoint"], paced, "{half}");
    assert!(
        stdout.contains("| ack latency at half that rate"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "| acknowledgements carrying a signed checkpoint that covers their batch | {0} of {0} |",
            20 + paced
        )),
        "{stdout}"
    );
    assert_eq!(
        report["trail"]["ingest"]["curve"].as_array().unwrap().len(),
        10
    );
    assert!(report["loadGenerator"]["eventsPerSecond"].as_f64().unwrap() > 0.0);
    // The SIEM pull read the whole log: the 2000 events and the calls recorded before it.
    let exported = report["trail"]["export"]["events"].as_u64().unwrap();
    assert!(exported > 2000, "{}", report["trail"]["export"]);
    assert!(
        stdout.contains("| SIEM export of the whole log by cursor"),
        "{stdout}"
    );
    // The weekly archive held the events stored this week (all of them, unless the run
    // crossed a Monday) and the server's memory was sampled while it was built.
    let archived = report["trail"]["archive"]["events"].as_u64().unwrap();
    assert!(archived > 0, "{}", report["trail"]["archive"]);
    assert!(report["trail"]["archive"]["rssMaxKiB"].as_u64().unwrap() > 0);
    assert!(
        stdout.contains("| weekly archive of every stored event"),
        "{stdout}"
    );
    // PostgreSQL is installed where Trail's tests run: both of its baselines are measured.
    for load in ["copy", "insertPerEvent"] {
        let b = &report["postgres"][load];
        assert!(b["notMeasured"].is_null(), "{load}: {b}");
        assert_eq!(b["events"], 2000, "{load}: {b}");
        assert!(b["bytesPerEvent"].as_f64().unwrap() > 0.0, "{load}: {b}");
    }
    assert_eq!(report["sqliteTable"]["events"], 2000);
}

/// `trail bench --database local`: the same harness with Trail's store on PostgreSQL (a
/// server the bench starts), every figure there.
#[test]
fn a_small_bench_measures_trail_on_postgresql() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let out = Command::new(env!("CARGO_BIN_EXE_trail"))
        .args([
            "bench",
            "--events",
            "2000",
            "--batch",
            "100",
            "--queries",
            "2",
            "--database",
            "local",
        ])
        .arg("--json")
        .arg(&json)
        .env("TRAIL_LOG", "error")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("--database local"), "{stdout}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert!(
        report["store"].as_str().unwrap().starts_with("PostgreSQL"),
        "{}",
        report["store"]
    );
    let trail = &report["trail"];
    assert_eq!(trail["ingest"]["events"], 2000, "{trail}");
    assert!(
        trail["verificationEventsPerSecond"].as_f64().unwrap() > 0.0,
        "{trail}"
    );
    assert!(trail["bytesPerEvent"].as_f64().unwrap() > 0.0, "{trail}");
    assert_eq!(
        trail["ackAtHalfRate"]["batchesWithCoveringCheckpoint"], trail["ackAtHalfRate"]["batches"],
        "{trail}"
    );
}
