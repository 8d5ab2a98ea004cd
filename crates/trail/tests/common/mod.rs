//! A real `trail serve` for the end-to-end tests: port 0, a data directory of the test's.

#![allow(dead_code)]

pub mod load;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a test waits for what it expects to happen (a server ready, a file written, a
/// record listed): far longer than it takes, so that a slow, busy machine passes as a fast
/// one does. Only a failing run waits it out.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// How often [`eventually`] and [`eventually_blocking`] ask again.
const POLL: Duration = Duration::from_millis(50);

/// Asks `check` until it answers `Ok` (once what the test waits for has happened), and
/// returns that answer. `Err` says what is seen so far: the test fails with the last one,
/// naming `what` it waited for, if [`PATIENCE`] passes first.
pub async fn eventually<T>(what: &str, check: impl AsyncFnMut() -> Result<T, String>) -> T {
    eventually_within(PATIENCE, what, check).await
}

/// [`eventually`], for work that takes long even on a fast machine: the test fails if
/// `limit` passes first.
pub async fn eventually_within<T>(
    limit: Duration,
    what: &str,
    mut check: impl AsyncFnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        match check().await {
            Ok(done) => return done,
            Err(seen) => assert!(
                Instant::now() < deadline,
                "{what}: not within {limit:?}; last seen: {seen}"
            ),
        }
        tokio::time::sleep(POLL).await;
    }
}

/// [`eventually`], for a test that does not run on an async runtime.
pub fn eventually_blocking<T>(what: &str, mut check: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match check() {
            Ok(done) => return done,
            Err(seen) => assert!(
                Instant::now() < deadline,
                "{what}: not within {PATIENCE:?}; last seen: {seen}"
            ),
        }
        std::thread::sleep(POLL);
    }
}

pub struct Server {
    child: Child,
    pub url: String,
    /// What the server printed before it listened.
    pub banner: String,
    pub data: PathBuf,
    /// What it has logged so far (on stderr), when started with [`Server::start_logged`].
    log: Option<Arc<Mutex<String>>>,
}

/// What [`Server::start`] runs with: as log `trail.test`.
pub const DEFAULT_OPTIONS: &[&str] = &["--log-name", "trail.test"];

impl Server {
    /// Starts on `data`, signing as log `trail.test`.
    pub fn start(data: &Path) -> Server {
        Server::start_with(data, DEFAULT_OPTIONS, None)
    }

    /// Starts on `data` with these `trail serve` options (besides the address and the data
    /// directory), and (if given) the process's open-file limit, soft and hard, set to
    /// `open_files`.
    pub fn start_with(data: &Path, options: &[&str], open_files: Option<u64>) -> Server {
        Server::launch(data, "127.0.0.1:0", options, open_files, false, &[])
    }

    /// As [`Server::start_with`], with these environment variables.
    pub fn start_with_env(data: &Path, options: &[&str], env: &[(&str, String)]) -> Server {
        Server::launch(data, "127.0.0.1:0", options, None, false, env)
    }

    /// As [`Server::start_with`], keeping what the server logs (errors only) for
    /// [`Server::log`].
    pub fn start_logged(data: &Path, options: &[&str]) -> Server {
        Server::launch(data, "127.0.0.1:0", options, None, true, &[])
    }

    /// What the server has logged so far (started with [`Server::start_logged`]).
    pub fn log(&self) -> String {
        let log = self.log.as_ref().expect("started with start_logged");
        log.lock().unwrap().clone()
    }

    /// Like [`Server::start_with`], listening on `listen` (`127.0.0.1:PORT`, say, to start
    /// again where a stopped server was).
    pub fn start_listening(
        data: &Path,
        listen: &str,
        options: &[&str],
        open_files: Option<u64>,
    ) -> Server {
        Server::launch(data, listen, options, open_files, false, &[])
    }

    fn launch(
        data: &Path,
        listen: &str,
        options: &[&str],
        open_files: Option<u64>,
        logged: bool,
        env: &[(&str, String)],
    ) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_trail"));
        command.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
        #[cfg(unix)]
        if let Some(n) = open_files {
            use std::os::unix::process::CommandExt;
            let limit = libc::rlimit {
                rlim_cur: n as libc::rlim_t,
                rlim_max: n as libc::rlim_t,
            };
            // SAFETY: setrlimit is async-signal-safe and touches nothing but the child.
            unsafe {
                command.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        #[cfg(not(unix))]
        let _ = open_files;
        let mut child = command
            .args(["serve", "--listen", listen])
            .args(options)
            .arg("--data")
            .arg(data)
            .env("TRAIL_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(if logged {
                Stdio::piped()
            } else {
                Stdio::inherit()
            })
            .spawn()
            .expect("trail serve starts");
        let log = child.stderr.take().map(|stderr| {
            let log = Arc::new(Mutex::new(String::new()));
            let kept = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let mut kept = kept.lock().unwrap();
                    kept.push_str(&line);
                    kept.push('\n');
                }
            });
            log
        });
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut banner = String::new();
        let mut url = None;
        // The banner ends with the key that signs the checkpoints.
        loop {
            let line = lines
                .next()
                .expect("trail serve printed its banner")
                .unwrap();
            banner.push_str(&line);
            banner.push('\n');
            if let Some(u) = line.split("listening on ").nth(1) {
                url = Some(u.trim().to_owned());
            }
            if line.contains("signed by: ") {
                break;
            }
        }
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Server {
            child,
            url: url.expect("an address"),
            banner,
            data: data.to_owned(),
            log,
        }
    }

    /// The key that verifies this server's checkpoints.
    pub fn key(&self) -> String {
        self.banner
            .lines()
            .find_map(|l| l.split("signed by: ").nth(1))
            .expect("a key")
            .trim()
            .to_owned()
    }

    pub fn token(&self) -> String {
        token(&self.data)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&mut self, sig: i32) {
        unsafe { libc::kill(self.child.id() as i32, sig) };
        self.child.wait().unwrap();
    }

    /// Stops gracefully.
    pub fn stop(mut self) {
        self.signal(libc::SIGTERM);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The bootstrap token of a data directory.
pub fn token(data: &Path) -> String {
    std::fs::read_to_string(data.join("bootstrap-token"))
        .unwrap()
        .trim()
        .to_owned()
}

/// An S3-compatible server (moto's, which `scripts/s3-server` installs under `target/`) on a
/// free loopback port, stopped when dropped.
pub struct S3 {
    child: Child,
    pub url: String,
}

impl S3 {
    pub fn start() -> S3 {
        let bin = std::env::var_os("TRAIL_MOTO_SERVER").map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/moto-venv/bin/moto_server"),
            PathBuf::from,
        );
        assert!(
            bin.exists(),
            "no S3-compatible server at {}: run `bash scripts/s3-server` (scripts/test does), or set TRAIL_MOTO_SERVER",
            bin.display()
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts");
        // Made first, so that it is stopped if it never answers.
        let s3 = S3 {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        eventually_blocking("moto_server accepts connections", || {
            std::net::TcpStream::connect(("127.0.0.1", port))
                .map(drop)
                .map_err(|e| e.to_string())
        });
        s3
    }

    /// Makes a bucket (moto takes unsigned requests).
    pub async fn bucket(&self, name: &str) {
        let r = reqwest::Client::new()
            .put(format!("{}/{name}", self.url))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
    }

    /// What a Trail needs in its environment to reach it.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT", self.url.clone()),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_ACCESS_KEY_ID", "trail-test".into()),
            ("AWS_SECRET_ACCESS_KEY", "trail-test".into()),
            ("AWS_REGION", "us-east-1".into()),
        ]
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `trail` with these arguments and no connection of a server's (offline commands,
/// or ones given their own).
pub fn run(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_trail"))
        .args(args)
        .env("TRAIL_LOG", "error")
        .output()
        .unwrap()
}

/// A command's standard output and error, together.
pub fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
