//! Archives and retention over weeks, with a clock the test moves: three past weeks of
//! events, a late one, the weekly archives built, read part by part and checked offline,
//! chained; then pruning, held and released, and what remains still verifies.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use serde_json::{Value, json};
use trail_core::Timestamp;
use trail_core::archive::{ArchiveVerifier, LEAVES, MANIFEST, Manifest, Week};
use trail_core::checkpoint::{SignerKey, open};
use trail_core::event::EventBody;
use trail_core::merkle::RootBuilder;
use trail_core::verify::LogVerifier;
use trail_server::archive::Archives;
use trail_server::retention::prune_due;
use trail_store::{Org, SqliteStore, Store};

const HOUR: i64 = 3_600_000_000;

fn event(action: &str, at: Timestamp) -> EventBody {
    EventBody::from_json(
        json!({"timestamp": at.to_string(), "action": action, "actor": {"id": "alice", "type": "user"}, "details": {"k": action}}),
        "acme",
    )
    .unwrap()
}

/// The parts of an archive, checked offline; its manifest.
fn verify_zip(path: &Path, key: &trail_core::checkpoint::VerifierKey) -> Manifest {
    let mut zip = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    let mut part = |name: &str| {
        let mut b = Vec::new();
        zip.by_name(name).unwrap().read_to_end(&mut b).unwrap();
        b
    };
    let manifest = part(MANIFEST);
    // Each part read a few bytes at a time: the verifier reads it as a stream, and a leaf,
    // a record or a number split between two reads must make no difference; nor must the
    // number of threads checking records.
    for workers in [1, 3] {
        let mut v = ArchiveVerifier::new(&manifest, Trickle(&part(LEAVES)), key)
            .unwrap()
            .workers(workers);
        let names: Vec<String> = v.manifest().files.iter().map(|f| f.name.clone()).collect();
        for name in names {
            v.file(&name, Trickle(&part(&name))).unwrap();
        }
        v.finish().unwrap();
    }
    serde_json::from_slice(&manifest).unwrap()
}

/// A reader that gives at most 7 bytes per read.
struct Trickle<'a>(&'a [u8]);

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(7).min(self.0.len());
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

fn records(path: &Path, name: &str) -> Vec<Value> {
    let mut zip = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    let mut b = Vec::new();
    zip.by_name(name).unwrap().read_to_end(&mut b).unwrap();
    serde_json::from_slice(&b).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_weeks_archive_chain_and_prune_and_what_remains_verifies() {
    let dir = tempfile::tempdir().unwrap();
    // The test's now: the real one, or on a Monday a moment a day later, so that the three
    // weeks before it ended more than the day of retention the prune below keeps.
    let real_now = trail_server::now();
    let this_week = Week::containing(real_now);
    let now = Timestamp(
        real_now
            .micros()
            .max(this_week.start().micros() + 25 * HOUR),
    );
    let weeks = [
        this_week.previous().previous().previous(),
        this_week.previous().previous(),
        this_week.previous(),
    ];
    let clock = Arc::new(AtomicI64::new(weeks[0].start().micros() + HOUR));
    let c = clock.clone();
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open_with_clock(
            &dir.path().join("data"),
            Arc::new(move || Timestamp(c.load(Ordering::SeqCst))),
        )
        .unwrap(),
    );
    store
        .create_org(
            Org {
                id: "acme".into(),
                name: "Acme".into(),
                created_at: weeks[0].start(),
            },
            None,
            None,
            Vec::new(),
        )
        .await
        .unwrap();
    let key = Arc::new(SignerKey::from_seed("trail.test", [5; 32]).unwrap());
    let verifier = key.verifier();
    trail_server::log::Heads::new(store.clone(), key.clone(), None)
        .start_signing()
        .await
        .unwrap();

    // 300 events a week, received on its Tuesday, stamped over its days; and in the third
    // week one stamped in the first (sent late).
    for (i, week) in weeks.iter().enumerate() {
        clock.store(week.start().micros() + 30 * HOUR, Ordering::SeqCst);
        for batch in 0..3 {
            let events = (0..100)
                .map(|j| {
                    let at = Timestamp(week.start().micros() + (batch * 100 + j) as i64 * HOUR / 2);
                    event(&format!("w{i}-{batch}-{j}"), at)
                })
                .collect();
            store.append("acme", events).await.unwrap();
        }
    }
    let late_at = Timestamp(weeks[0].start().micros() + 2 * HOUR);
    store
        .append("acme", vec![event("late", late_at)])
        .await
        .unwrap();

    // The weekly job: one archive per ended week since the org was made. What a build cut
    // short by a crash left is never listed, and the next run clears it.
    let archives = Archives::new(dir.path().join("archives"));
    let acme_dir = dir.path().join("archives/acme");
    std::fs::create_dir_all(&acme_dir).unwrap();
    std::fs::write(acme_dir.join(".building-x1.zip"), b"PK\x03\x04 half").unwrap();
    assert!(archives.list("acme").await.unwrap().is_empty());
    // Two builds of one ended week at once: one builds, checks and keeps it; the other
    // waits for it and finds it kept.
    let (a, b) = tokio::join!(
        archives.build(&store, &key, "acme", weeks[0], now),
        archives.build(&store, &key, "acme", weeks[0], now),
    );
    let said = [a.unwrap(), b.unwrap()];
    let kept = said.iter().filter(|s| s.ends_with("is already archived"));
    assert_eq!(kept.count(), 1, "{said:?}");
    archives.build_due(&store, &key, now).await;
    assert!(!acme_dir.join(".building-x1.zip").exists());
    let list = archives.list("acme").await.unwrap();
    let names: Vec<&str> = list.iter().map(|a| a.week.as_str()).collect();
    let expected: Vec<String> = weeks.iter().map(Week::to_string).collect();
    assert_eq!(names, expected);
    assert_eq!(
        list.iter().map(|a| a.events).collect::<Vec<_>>(),
        [300, 300, 301]
    );
    // They meet: each starts where the one before ends, from the checkpoint it ends on.
    let mut manifests = Vec::new();
    for (i, a) in list.iter().enumerate() {
        let path = dir.path().join(format!("archives/acme/{}.zip", a.week));
        let m = verify_zip(&path, &verifier);
        assert!(!m.partial);
        if let Some(before) = manifests.last() {
            let before: &Manifest = before;
            assert_eq!(m.first_seq, before.end_seq);
            let prev = open(&before.checkpoint, &verifier).unwrap();
            assert_eq!(m.previous.root, hex::encode(prev.root));
        } else {
            assert_eq!(m.first_seq, 0);
        }
        // Seven day files, each holding only its day; the third week also the late one's.
        let days = weeks[i].day_files();
        for d in &days {
            for r in records(&path, d) {
                assert!(r["timestamp"].as_str().unwrap().starts_with(&d[..10]));
            }
        }
        let extra: Vec<&String> = m
            .files
            .iter()
            .map(|f| &f.name)
            .filter(|n| !days.contains(n))
            .collect();
        if i == 2 {
            assert_eq!(extra, [&trail_core::archive::day_file(late_at)]);
            let late = records(&path, extra[0]);
            assert_eq!(late.len(), 1);
            assert_eq!(late[0]["action"], "late");
        } else {
            assert!(extra.is_empty(), "{extra:?}");
        }
        manifests.push(m);
    }
    // A second run builds nothing again: the archives of ended weeks never change.
    let before = std::fs::read(dir.path().join(format!("archives/acme/{}.zip", weeks[0]))).unwrap();
    archives.build_due(&store, &key, now).await;
    let again = std::fs::read(dir.path().join(format!("archives/acme/{}.zip", weeks[0]))).unwrap();
    assert_eq!(before, again);

    // A partial archive is never queued behind another build (one of a big week takes
    // minutes): 503 while one runs, built once none does.
    let current = Week::containing(now);
    {
        let _building = archives.exclusive().await;
        match archives.get(&store, &key, "acme", current, now).await {
            Err(trail_server::error::ApiError::Unavailable(m)) => {
                assert!(m.contains("as many archives as it can at once"), "{m}")
            }
            other => panic!("{:?}", other.map(|f| f.partial)),
        }
    }
    let partial = archives
        .get(&store, &key, "acme", current, now)
        .await
        .unwrap();
    assert!(partial.partial);
    drop(partial);

    // From here on, the test's now.
    clock.store(now.micros(), Ordering::SeqCst);

    // Retention of one day: every archived week may go, but not under legal hold.
    store
        .set_retention("acme", Some(Some(1)), Some(true), Vec::new())
        .await
        .unwrap();
    let held = prune_due(&store, &archives, now, None).await.unwrap();
    assert_eq!(held[0].to, 0);
    assert_eq!(held[0].skipped.as_deref(), Some("under legal hold"));
    store
        .set_retention("acme", None, Some(false), Vec::new())
        .await
        .unwrap();
    let pruned = prune_due(&store, &archives, now, None).await.unwrap();
    let end = manifests[2].end_seq;
    assert_eq!((pruned[0].from, pruned[0].to), (0, end - end % 256));
    let below = pruned[0].to;
    assert!(below >= 768, "{pruned:?}");
    let again = prune_due(&store, &archives, now, None).await.unwrap();
    assert_eq!(
        again[0].to, below,
        "nothing more until another week is archived"
    );

    // The prune is recorded in the log it pruned, naming the range.
    let rest = store.events_from("acme", 0, 10_000).await.unwrap();
    assert_eq!(rest[0].event.seq, below);
    let record = rest
        .iter()
        .find(|e| e.event.action == "pruned")
        .expect("the prune's record");
    assert_eq!(record.event.category, "system");
    let details = record.event.details.as_ref().unwrap().to_value();
    assert_eq!(details["firstSeq"], 0);
    assert_eq!(details["endSeq"], below);
    assert_eq!(details["count"], below);

    // What remains verifies from the tree's edge at the prune; the archives still do.
    let edge = store.tree_frontier("acme", below).await.unwrap();
    let checkpoints = store
        .checkpoints("acme", 0, 10_000)
        .await
        .unwrap()
        .iter()
        .map(|c| open(&c.note, &verifier).unwrap())
        .collect();
    let mut v = LogVerifier::after_pruned(
        checkpoints,
        RootBuilder::from_frontier(below, &edge).unwrap(),
    );
    for e in &rest {
        v.push(&e.event, &e.hash);
    }
    let verified = v.finish().unwrap();
    assert_eq!(verified.pruned_below, below);
    assert_eq!(verified.size, rest.last().unwrap().event.seq + 1);
    for a in &list {
        verify_zip(
            &dir.path().join(format!("archives/acme/{}.zip", a.week)),
            &verifier,
        );
    }

    // Life goes on after the prune: this week's events, and its partial archive, which
    // starts where the last stored one ends (times of receipt are found past the prune).
    store.append("acme", vec![event("now", now)]).await.unwrap();
    let partial = archives
        .get(&store, &key, "acme", this_week, now)
        .await
        .unwrap();
    assert!(partial.partial);
    let m = verify_zip(&partial.path, &verifier);
    assert_eq!(m.first_seq, manifests[2].end_seq);
    assert!(m.end_seq > m.first_seq);
    // A week whose events were pruned and whose archive is gone has nothing to give.
    std::fs::remove_file(dir.path().join(format!("archives/acme/{}.zip", weeks[0]))).unwrap();
    assert!(matches!(
        archives.get(&store, &key, "acme", weeks[0], now).await,
        Err(trail_server::error::ApiError::NotFound(_))
    ));
}
