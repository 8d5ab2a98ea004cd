//! Faults, end to end against the real `trail serve`: many `kill -9`s under concurrent
//! ingest (on the embedded store and on PostgreSQL), and a disk that fills up or turns read-only under it. What must hold: an
//! acknowledged event is stored exactly once with the seq and hash it was acknowledged with,
//! nothing is acknowledged that is not stored, seqs have no gap, the log verifies, and the
//! server comes back by itself.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

mod common;
use common::load::{Acked, Rng, batch, check_log, client, export_all, ingest, record};
use common::{Server, run, text, token};

/// `trail verify --strict` with no server: of the database if given, else of the
/// embedded store in `data`.
fn verify(data: &Path, database: Option<&str>, key: &str) {
    let out = match database {
        Some(url) => run(&["verify", "--database", url, "--key", key, "--strict"]),
        None => run(&[
            "verify",
            "--data",
            data.to_str().unwrap(),
            "--key",
            key,
            "--strict",
        ]),
    };
    assert!(out.status.success(), "{}", text(&out));
}

/// The server's options: on PostgreSQL if a database is given, else the embedded store.
fn options(database: Option<&str>) -> Vec<&str> {
    match database {
        Some(url) => vec!["--log-name", "trail.test", "--database", url],
        None => common::DEFAULT_OPTIONS.to_vec(),
    }
}

/// How each fault test ends, once the server takes writes again: the batch refused during
/// the fault is sent again and stored, the log holds every acknowledged event once and
/// every event sent, and after the server stops it verifies.
async fn resend_and_check(
    s: Server,
    token: &str,
    refused: &str,
    acked: &mut Acked,
    sent: usize,
    (data, database, key): (&Path, Option<&str>, &str),
) {
    record(
        acked,
        &ingest(&s.url, token, &batch(refused, 200, 2_000))
            .await
            .expect("the refused batch, sent again"),
    );
    check_log(&export_all(&s.url, token).await, acked, sent);
    s.stop();
    verify(data, database, key);
}

#[tokio::test]
async fn many_kill_9_rounds_lose_nothing_and_store_nothing_twice() {
    kill_9_rounds(None).await;
}

/// The same on PostgreSQL: every kill ends the server between (or inside) its transactions
/// on the database.
#[tokio::test]
async fn many_kill_9_rounds_on_postgresql_lose_nothing_and_store_nothing_twice() {
    let database = tokio::task::spawn_blocking(trail_store::conformance::postgres_database)
        .await
        .unwrap();
    kill_9_rounds(Some(&database)).await;
}

/// Rounds of ingest from several writers, each ended by SIGKILL at a random point; then
/// every batch whose answer was lost is sent again. The log holds every acknowledged event
/// once with the seq and hash it was acknowledged with, seqs have no gap, and it verifies
/// with no server, every event covered by a signed checkpoint.
async fn kill_9_rounds(database: Option<&str>) {
    const ROUNDS: usize = 8;
    const WRITERS: usize = 4;
    const EVENTS: usize = 40;
    let mut rng = Rng::seeded();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut acked = Acked::new();
    // Each writer's batches in order; those whose answer never came are sent again, as a
    // client that retries with the same ids does.
    let mut next = [0usize; WRITERS];
    let mut unanswered: Vec<Vec<String>> = vec![Vec::new(); WRITERS];
    let mut key = String::new();
    let options = options(database);
    for round in 0..ROUNDS {
        let mut s = Server::start_with(&data, &options, None);
        key = s.key();
        let token = s.token();
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let (url, token) = (s.url.clone(), token.clone());
                let mut pending = std::mem::take(&mut unanswered[w]);
                let first = next[w];
                tokio::spawn(async move {
                    let mut done = Vec::new();
                    let mut b = first;
                    loop {
                        let name = pending.pop().unwrap_or_else(|| {
                            b += 1;
                            format!("w{w}-b{}", b - 1)
                        });
                        match ingest(&url, &token, &batch(&name, EVENTS, 64)).await {
                            Ok(items) => done.push(items),
                            Err(_) => {
                                pending.push(name);
                                return (done, pending, b);
                            }
                        }
                    }
                })
            })
            .collect();
        let delay = 150 + rng.below(1_000);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        s.signal(libc::SIGKILL);
        for (w, writer) in writers.into_iter().enumerate() {
            let (done, pending, b) = writer.await.unwrap();
            for items in &done {
                record(&mut acked, items);
            }
            unanswered[w] = pending;
            next[w] = b;
        }
        eprintln!(
            "round {round}: killed after {delay} ms; {} events acknowledged so far",
            acked.len()
        );
    }
    assert!(!acked.is_empty(), "no batch was acknowledged before a kill");

    // After the last kill: the batches whose answer was lost are sent again, and each of
    // their events is stored once, whether or not it was stored before.
    let s = Server::start_with(&data, &options, None);
    let token = s.token();
    for name in unanswered.iter().flatten() {
        let items = ingest(&s.url, &token, &batch(name, EVENTS, 64))
            .await
            .expect("a retry after restart is stored");
        record(&mut acked, &items);
    }
    let sent: usize = next.iter().sum::<usize>() * EVENTS;
    assert_eq!(
        acked.len(),
        sent,
        "every batch sent was acknowledged in the end"
    );
    check_log(&export_all(&s.url, &token).await, &acked, sent);
    s.stop();
    verify(&data, database, &key);
}

/// A tmpfs of its own, mounted for the test and unmounted when dropped. Mounting needs root,
/// which the test command has (`scripts/test`); without it the test fails, saying so.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "this test mounts a small tmpfs to fill it, which needs root (scripts/test runs as root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills what space is left with one file, which is returned.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.path().join("ballast");
        let mut f = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 1 << 16];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.path()).status();
    }
}

async fn readyz(url: &str) -> (u16, Value) {
    let r = client().get(format!("{url}/readyz")).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// Waits for `/readyz` to say ready, without any other call.
async fn ready_by_itself(url: &str, what: &str) {
    common::eventually(&format!("ready {what}"), async || match readyz(url).await {
        (200, _) => Ok(()),
        (status, body) => Err(format!("{status} {body}")),
    })
    .await;
}

/// Sends batches until one is refused (at most `tries`): those acknowledged are recorded,
/// the refused one is returned with its status.
async fn ingest_until_refused(
    url: &str,
    token: &str,
    prefix: &str,
    tries: usize,
    acked: &mut Acked,
    sent: &mut usize,
) -> (String, u16) {
    for b in 0..tries {
        let name = format!("{prefix}-{b}");
        *sent += 200;
        match ingest(url, token, &batch(&name, 200, 2_000)).await {
            Ok(items) => record(acked, &items),
            Err(status) => return (name, status),
        }
    }
    panic!("{prefix}: {tries} batches of 200 events were all stored on a full disk");
}

#[tokio::test]
async fn a_full_disk_refuses_writes_and_service_returns_by_itself() {
    let fs = Tmpfs::mount("64m");
    full_disk(&fs, &fs.path().join("data"), None).await;
}

/// The same with the database's tablespace on the small filesystem (its WAL elsewhere, as
/// a full data volume is most often): PostgreSQL refuses to extend a table, the batch is
/// refused, and readiness's own probe finds when there is room again.
#[tokio::test]
async fn on_postgresql_a_full_tablespace_refuses_writes_and_service_returns_by_itself() {
    let fs = Tmpfs::mount("64m");
    let location = fs.path().join("tablespace");
    let url = tokio::task::spawn_blocking(move || {
        let url = trail_store::conformance::postgres_database();
        let mut admin = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        // PostgreSQL keeps a tablespace in an empty directory of its own user's.
        std::fs::create_dir(&location).unwrap();
        sh(Command::new("chown")
            .arg("postgres:postgres")
            .arg(&location));
        let name = format!("full_{}", std::process::id());
        for sql in [
            format!("CREATE TABLESPACE {name} LOCATION '{}'", location.display()),
            format!("CREATE DATABASE {name} TABLESPACE {name}"),
        ] {
            admin.batch_execute(&sql).unwrap();
        }
        let (server, _) = url.rsplit_once('/').unwrap();
        format!("{server}/{name}")
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    full_disk(&fs, &dir.path().join("data"), Some(&url)).await;
}

/// Fills `fs` under a server on `data` (and `database`, if given): a batch is refused with
/// 503 and readiness says why; it stays not ready while only a little room is free; once
/// the space returns it is ready by itself, the refused batch is stored, and the log holds
/// everything acknowledged and verifies.
async fn full_disk(fs: &Tmpfs, data: &Path, database: Option<&str>) {
    let options = options(database);
    let s = Server::start_with(data, &options, None);
    let (key, token) = (s.key(), s.token());
    let mut acked = Acked::new();
    let mut sent = 0;
    sent += 100;
    record(
        &mut acked,
        &ingest(&s.url, &token, &batch("before", 100, 100))
            .await
            .unwrap(),
    );

    // The disk fills up: a batch is refused with 503, never acknowledged unstored.
    let ballast = fs.fill();
    let (refused, status) =
        ingest_until_refused(&s.url, &token, "full", 50, &mut acked, &mut sent).await;
    assert_eq!(status, 503, "a batch on a full disk");
    let (status, body) = readyz(&s.url).await;
    assert_eq!(status, 503, "{body}");
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("writes are failing")
            && (detail.contains("full") || detail.contains("No space left on device")),
        "readyz says why: {body}"
    );
    // While the disk is nearly full, readiness's own writes (one a second) do not make it
    // ready: with a little room, a small write commits where a batch cannot.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&ballast)
        .unwrap();
    f.set_len(f.metadata().unwrap().len() - (256 << 10))
        .unwrap();
    drop(f);
    for _ in 0..14 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let (status, body) = readyz(&s.url).await;
        assert_eq!(status, 503, "ready on a full disk: {body}");
    }

    // Space returns: ready again with no write from anyone, and the refused batch is stored.
    std::fs::remove_file(&ballast).unwrap();
    ready_by_itself(&s.url, "after space returned").await;
    resend_and_check(
        s,
        &token,
        &refused,
        &mut acked,
        sent,
        (data, database, &key),
    )
    .await;
}

/// An ext4 filesystem in an image file of its own, on a loop device, mounted to go
/// read-only on an error as servers' filesystems do (`errors=remount-ro`). Needs root.
struct Ext4 {
    dir: tempfile::TempDir,
}

fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} (this test makes a loop filesystem, which needs root; scripts/test runs as root): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

impl Ext4 {
    fn mount() -> Ext4 {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("mnt")).unwrap();
        let fs = Ext4 { dir };
        sh(Command::new("truncate").args(["-s", "64M"]).arg(fs.image()));
        sh(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(fs.image()));
        fs.attach();
        fs
    }

    fn image(&self) -> PathBuf {
        self.dir.path().join("fs.img")
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("mnt")
    }

    fn attach(&self) {
        sh(Command::new("mount")
            .args(["-o", "loop,errors=remount-ro"])
            .arg(self.image())
            .arg(self.path()));
    }

    /// An error in the filesystem, as the kernel reports a failing disk: it turns
    /// read-only at once under the open files, and stays so until it is checked.
    fn break_it(&self) {
        let source = sh(Command::new("findmnt")
            .args(["-n", "-o", "SOURCE"])
            .arg(self.path()));
        let device = Path::new(&source)
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        std::fs::write(format!("/sys/fs/ext4/{device}/trigger_fs_error"), "1").unwrap();
    }

    /// What an operator does: unmount, check, mount again.
    fn repair(&self) {
        sh(Command::new("umount").arg(self.path()));
        // e2fsck exits 1 when it corrected the error it was told of.
        let out = Command::new("e2fsck")
            .arg("-fy")
            .arg(self.image())
            .output()
            .unwrap();
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        self.attach();
    }
}

impl Drop for Ext4 {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.path()).status();
    }
}

#[tokio::test]
async fn a_filesystem_gone_read_only_refuses_writes_and_loses_nothing() {
    let fs = Ext4::mount();
    let data = fs.path().join("data");
    let s = Server::start(&data);
    let (key, token) = (s.key(), token(&data));
    let mut acked = Acked::new();
    let mut sent = 100;
    record(
        &mut acked,
        &ingest(&s.url, &token, &batch("before", 100, 100))
            .await
            .unwrap(),
    );

    fs.break_it();
    let (refused, status) =
        ingest_until_refused(&s.url, &token, "ro", 5, &mut acked, &mut sent).await;
    assert_eq!(status, 503, "a batch on a read-only filesystem");
    let (status, body) = readyz(&s.url).await;
    assert_eq!(status, 503, "{body}");
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("writes are failing"),
        "readyz says why: {body}"
    );

    // The server stops cleanly; once the filesystem is repaired, a new one has everything
    // acknowledged, takes the refused batch, and the log verifies.
    s.stop();
    fs.repair();
    let s = Server::start(&data);
    resend_and_check(s, &token, &refused, &mut acked, sent, (&data, None, &key)).await;
}

/// PostgreSQL turned read-only under the server, as a primary demoted to a standby is: its
/// connections are dropped and new ones may only read. Batches are refused with 503 and
/// readiness says why; once the database takes writes again (its connections dropped once
/// more, as a failover back does), the server is ready by itself, the refused batch is
/// stored, and nothing acknowledged is lost.
#[tokio::test]
async fn on_postgresql_a_read_only_database_refuses_writes_and_service_returns_by_itself() {
    let url = tokio::task::spawn_blocking(trail_store::conformance::postgres_database)
        .await
        .unwrap();
    let name = url.rsplit_once('/').unwrap().1.to_owned();
    let turn = |read_only: bool| {
        let (url, name) = (url.clone(), name.clone());
        tokio::task::spawn_blocking(move || {
            let mut admin = postgres::Client::connect(&url, postgres::NoTls).unwrap();
            let set = if read_only {
                "SET default_transaction_read_only = on"
            } else {
                "RESET default_transaction_read_only"
            };
            // The administrator's own session may write, whatever its database says.
            admin
                .batch_execute("SET default_transaction_read_only = off")
                .unwrap();
            admin
                .batch_execute(&format!("ALTER DATABASE {name} {set}"))
                .unwrap();
            admin
                .execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                     WHERE datname = $1 AND pid <> pg_backend_pid()",
                    &[&name],
                )
                .unwrap();
        })
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let s = Server::start_with(&data, &options(Some(&url)), None);
    let (key, token) = (s.key(), s.token());
    let mut acked = Acked::new();
    let mut sent = 100;
    record(
        &mut acked,
        &ingest(&s.url, &token, &batch("before", 100, 100))
            .await
            .unwrap(),
    );

    turn(true).await.unwrap();
    let (refused, status) =
        ingest_until_refused(&s.url, &token, "ro", 5, &mut acked, &mut sent).await;
    assert_eq!(status, 503, "a batch on a read-only database");
    // The first refusal may be the dropped connection's; readiness's probe then finds the
    // database itself refusing.
    common::eventually("readyz saying the database is read-only", async || {
        let (status, body) = readyz(&s.url).await;
        assert_eq!(status, 503, "ready on a read-only database: {body}");
        if body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("writes are failing") && d.contains("read-only"))
        {
            Ok(())
        } else {
            Err(body.to_string())
        }
    })
    .await;

    turn(false).await.unwrap();
    ready_by_itself(&s.url, "after the database took writes again").await;
    let database = Some(url.as_str());
    resend_and_check(
        s,
        &token,
        &refused,
        &mut acked,
        sent,
        (&data, database, &key),
    )
    .await;
}
