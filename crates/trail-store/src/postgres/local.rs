//! A PostgreSQL server of Trail's own, for the tests and `trail bench`: `initdb` into a new
//! directory, a Unix socket in it and no TCP port, its superuser `trail` trusted; run as
//! the `postgres` user when the caller is root (PostgreSQL refuses to run as root). Stopped,
//! and its directory removed, when dropped, and by a watchdog once the process that started
//! it is gone, so that neither a server held for a whole test run nor one whose process was
//! killed outlives it.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The port number in the socket's name.
pub const PORT: u16 = 5432;

pub struct LocalServer {
    bin: PathBuf,
    dir: PathBuf,
    as_postgres: bool,
    /// `postgres --version`.
    pub version: String,
}

impl LocalServer {
    /// Starts a server if PostgreSQL is installed, with `options` (`-c name=value …`) on its
    /// command line; `Err` says why it could not.
    pub fn start(options: &str) -> Result<LocalServer, String> {
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let bin = bindir().ok_or("PostgreSQL is not installed (no initdb found)")?;
        let as_postgres = rustix::process::geteuid().is_root();
        let dir = std::env::temp_dir().join(format!(
            "trail-postgres-{}-{}",
            std::process::id(),
            STARTED.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        // Only its user reaches the socket (its superuser is trusted without a password).
        std::fs::DirBuilder::new()
            .mode(0o700)
            .recursive(true)
            .create(&dir)
            .map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let mut server = LocalServer {
            bin,
            dir,
            as_postgres,
            version: String::new(),
        };
        if as_postgres {
            let id = |flag: &str| -> Result<u32, String> {
                let out = Command::new("id")
                    .args([flag, "postgres"])
                    .output()
                    .map_err(|e| e.to_string())?;
                if !out.status.success() {
                    return Err(
                        "running as root, and there is no postgres user to run PostgreSQL as"
                            .into(),
                    );
                }
                String::from_utf8_lossy(&out.stdout)
                    .trim()
                    .parse()
                    .map_err(|e| format!("{e}"))
            };
            std::os::unix::fs::chown(&server.dir, Some(id("-u")?), Some(id("-g")?))
                .map_err(|e| format!("chown {}: {e}", server.dir.display()))?;
        }
        let data = server.data();
        server.run(
            "initdb",
            &[
                "-D",
                path(&data)?,
                "-A",
                "trust",
                "-U",
                "trail",
                "-E",
                "UTF8",
                "--no-instructions",
            ],
        )?;
        let options = format!(
            "-c listen_addresses='' -k {} -p {PORT} -c unix_socket_permissions=0700 {options}",
            quoted(path(&server.dir)?)
        );
        let log = server.dir.join("server.log");
        server.run(
            "pg_ctl",
            &[
                "-D",
                path(&data)?,
                "-l",
                path(&log)?,
                "-o",
                &options,
                "-w",
                "-t",
                "60",
                "start",
            ],
        )?;
        server.stop_with(std::process::id())?;
        server.version = Command::new(server.bin.join("postgres"))
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        Ok(server)
    }

    /// The directory of the server's socket.
    pub fn socket_dir(&self) -> &Path {
        &self.dir
    }

    /// The URL of database `db` as the superuser `trail` (the socket's directory as the
    /// host, percent-encoded).
    pub fn url(&self, db: &str) -> String {
        let host = self
            .dir
            .display()
            .to_string()
            .replace('%', "%25")
            .replace('/', "%2F");
        format!("postgres://trail@{host}:{PORT}/{db}")
    }

    /// Stops the server and removes its directory once `process` has exited, whether or
    /// not this value is dropped (a server held in a `static` never is, nor is one whose
    /// process is killed).
    fn stop_with(&self, process: u32) -> Result<(), String> {
        let script = format!(
            "while kill -0 {process} 2>/dev/null; do sleep 1; done; {} -D {} -m immediate stop; rm -rf {}",
            self.program("pg_ctl")?,
            quoted(path(&self.data())?),
            quoted(path(&self.dir)?)
        );
        Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map(drop)
            .map_err(|e| format!("starting the watchdog: {e}"))
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// A shell command that runs `program` as the server's user.
    fn program(&self, program: &str) -> Result<String, String> {
        let exe = self.bin.join(program);
        let exe = quoted(path(&exe)?);
        Ok(if self.as_postgres {
            format!("runuser -u postgres -- {exe}")
        } else {
            exe
        })
    }

    fn run(&self, program: &str, args: &[&str]) -> Result<(), String> {
        let exe = self.bin.join(program);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let out = cmd
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("running {}: {e}", exe.display()))?;
        if !out.status.success() {
            return Err(format!(
                "{program} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(())
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        let data = self.data();
        if data.join("postmaster.pid").exists()
            && let Some(data) = data.to_str()
            && let Err(e) = self.run("pg_ctl", &["-D", data, "-m", "fast", "-w", "stop"])
        {
            eprintln!("stopping PostgreSQL: {e}");
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A word for `sh` (and for PostgreSQL's own option parsing): in single quotes.
fn quoted(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

fn path(p: &Path) -> Result<&str, String> {
    p.to_str()
        .ok_or_else(|| format!("{} is not UTF-8", p.display()))
}

/// Where PostgreSQL's programs are: `pg_config --bindir`, or the newest Debian install.
fn bindir() -> Option<PathBuf> {
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").exists() {
            return Some(dir);
        }
    }
    let mut installed: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    installed.sort();
    installed.pop().map(|(_, bin)| bin)
}
