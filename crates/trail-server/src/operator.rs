//! Operator jobs (`trail admin ...`) and the operator socket that runs them inside a running
//! server.
//!
//! One process owns a data directory (the store's lock). An operator command therefore opens
//! the store itself only when no server holds it; when one does, it sends its [`Request`] to
//! that server's operator socket, `DATA/admin.sock` (a Unix socket, mode 0600 in the 0700
//! data directory: whoever can use it already owns the store's files). Either way the job
//! runs through [`apply`], on the one store handle of the process that owns the directory,
//! so a second writer never touches the file.
//!
//! The protocol is one JSON line each way: `{"op": "set-password", ...}` in,
//! `{"ok": true, "message": "..."}` or `{"ok": false, "message": "..."}` out. A new operator
//! job is one more [`Request`] variant and one more arm in [`apply`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use tokio::net::{UnixListener, UnixStream};
use trail_store::Store;
use trail_store::sqlite::{DirLock, LockError};

/// The operator socket inside the data directory.
pub const SOCKET_FILE: &str = "admin.sock";

/// The largest request line the socket reads.
const MAX_REQUEST: u64 = 64 * 1024;
/// How long a connection may take to send its request.
const DEADLINE: Duration = Duration::from_secs(60);
/// How long a job that reads a week of events (an archive, a prune) may take.
const LONG_DEADLINE: Duration = Duration::from_secs(3600);

/// An operator job.
#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Request {
    /// Set a user's console password and end their sessions.
    SetPassword { email: String, password: String },
    /// Build the weekly archive of an ended week, for one org or all.
    Archive { week: String, org: Option<String> },
    /// Prune what retention no longer keeps, for one org or all.
    Prune { org: Option<String> },
}

impl Request {
    /// The operation's name, for the server's log (never its arguments: they hold secrets).
    pub fn name(&self) -> &'static str {
        match self {
            Request::SetPassword { .. } => "set-password",
            Request::Archive { .. } => "archive",
            Request::Prune { .. } => "prune",
        }
    }

    fn deadline(&self) -> Duration {
        match self {
            Request::SetPassword { .. } => DEADLINE,
            Request::Archive { .. } | Request::Prune { .. } => LONG_DEADLINE,
        }
    }
}

/// What a job runs on: the store, and the data directory's archives.
pub struct Jobs {
    pub store: Arc<dyn Store>,
    pub archives: Arc<crate::archive::Archives>,
    pub data: PathBuf,
    /// The key that signs the logs (and archives' manifests): the running server's, or
    /// (none) the data directory's, read.
    pub key: Option<Arc<trail_core::checkpoint::SignerKey>>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Response {
    ok: bool,
    message: String,
}

/// Runs a job on the store of the process that owns the data directory. A job that changes
/// the store is recorded as a `system` action: a password in the platform org, a prune in
/// the org it prunes. Building an archive changes nothing stored.
pub async fn apply(jobs: &Jobs, request: Request) -> anyhow::Result<String> {
    match request {
        Request::SetPassword { email, password } => {
            set_password(&*jobs.store, &email, &password).await
        }
        Request::Archive { week, org } => archive(jobs, &week, org.as_deref()).await,
        Request::Prune { org } => prune(jobs, org.as_deref()).await,
    }
}

async fn archive(jobs: &Jobs, week: &str, org: Option<&str>) -> anyhow::Result<String> {
    let week = trail_core::archive::Week::parse(week)?;
    let now = crate::now();
    if week >= trail_core::archive::Week::containing(now) {
        bail!(
            "{week} has not ended: its archive is built after; download it now as a partial archive"
        );
    }
    let key = match &jobs.key {
        Some(k) => k.clone(),
        None => Arc::new(crate::log::load_key(&jobs.data)?),
    };
    let orgs = match org {
        Some(o) => vec![o.to_owned()],
        None => jobs.store.orgs().await?.into_iter().map(|o| o.id).collect(),
    };
    let mut said = Vec::new();
    for org in orgs {
        let line = match jobs
            .archives
            .build(&jobs.store, &key, &org, week, now)
            .await
        {
            Ok(at) => format!("{org}: {at}"),
            Err(crate::error::ApiError::NotFound(why)) => {
                format!("{org}: nothing to archive ({why})")
            }
            Err(e) => bail!("{org}: {e}"),
        };
        said.push(line);
    }
    Ok(said.join("\n"))
}

async fn prune(jobs: &Jobs, org: Option<&str>) -> anyhow::Result<String> {
    if let Some(o) = org
        && jobs.store.org(o).await?.is_none()
    {
        bail!("no org {o:?}");
    }
    let reports =
        crate::retention::prune_due(&jobs.store, &jobs.archives, crate::now(), org).await?;
    Ok(reports
        .iter()
        .map(|r| match &r.skipped {
            Some(why) => format!("{}: nothing pruned: {why}", r.org),
            None if r.to <= r.from => format!("{}: nothing pruned", r.org),
            None => format!(
                "{}: pruned seqs {}..{} ({} events)",
                r.org,
                r.from,
                r.to - 1,
                r.to - r.from
            ),
        })
        .collect::<Vec<_>>()
        .join("\n"))
}

async fn set_password(store: &dyn Store, email: &str, password: &str) -> anyhow::Result<String> {
    if password.chars().count() < 12 {
        bail!("a password needs at least 12 characters");
    }
    let user = store
        .user_by_email(email)
        .await?
        .with_context(|| format!("no user {email:?}"))?;
    let platform_org = store
        .platform_org()
        .await?
        .context("the store has no platform org")?;
    let hash = crate::auth::hash_password(password).map_err(|e| anyhow::anyhow!("{e}"))?;
    let event = trail_core::EventBody::from_json(
        serde_json::json!({
            "action": "updated",
            "category": "system",
            "actor": {"id": "trail admin set-password", "type": "system"},
            "object": {"type": "user", "id": email},
            "details": {"actionType": "UPDATE", "message": format!("password of {email} set by an operator; sessions and tokens from the old password ended")},
        }),
        &platform_org,
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    store
        .set_password(&user.id, hash, crate::now(), vec![(platform_org, event)])
        .await?;
    store
        .end_user_sessions(&user.id, None, crate::now())
        .await?;
    Ok(format!("password of {email} set"))
}

/// Runs a job on the store in `data`: directly if no process holds the directory, else
/// through the operator socket of the server that does.
pub async fn run(data: &Path, request: Request) -> anyhow::Result<String> {
    run_with(data, request, None).await
}

/// [`run`], with the bucket that keeps the archives (`--archive-url`) when no server holds
/// the directory (a server uses its own).
pub async fn run_with(
    data: &Path,
    request: Request,
    archive_url: Option<&str>,
) -> anyhow::Result<String> {
    if !data.is_dir() {
        bail!("no Trail store in {}", data.display());
    }
    match DirLock::acquire(data) {
        // A server whose store is elsewhere (PostgreSQL) holds the directory without it.
        Ok(_) if !data.join(trail_store::sqlite::DB_FILE).exists() => {
            bail!(
                "no Trail store in {} (for a server on PostgreSQL, run this while it runs: \
                 it takes the command on its operator socket)",
                data.display()
            );
        }
        Ok(lock) => {
            let store = Arc::new(trail_store::SqliteStore::open_locked(lock)?);
            let jobs = Jobs {
                store,
                archives: Arc::new(match archive_url {
                    Some(url) => {
                        crate::archive::Archives::in_bucket(data.join(crate::ARCHIVES_DIR), url)?
                    }
                    None => crate::archive::Archives::new(data.join(crate::ARCHIVES_DIR)),
                }),
                data: data.to_owned(),
                key: None,
            };
            apply(&jobs, request).await
        }
        Err(LockError::Held { .. }) => call(data, &request).await,
        Err(e) => Err(e.into()),
    }
}

/// Sends a job to the operator socket of the server that owns `data`.
async fn call(data: &Path, request: &Request) -> anyhow::Result<String> {
    let path = data.join(SOCKET_FILE);
    let mut stream = UnixStream::connect(&path).await.with_context(|| {
        format!(
            "{} is in use by a running Trail, but its operator socket {} does not answer",
            data.display(),
            path.display()
        )
    })?;
    let mut line = serde_json::to_vec(request).expect("serializes");
    line.push(b'\n');
    let exchange = async {
        write_all(&mut stream, &line).await?;
        read_line(&stream).await
    };
    let answer = tokio::time::timeout(request.deadline(), exchange)
        .await
        .context("the server's operator socket did not answer in time")?
        .context("talking to the server's operator socket")?;
    let response: Response = serde_json::from_str(&answer)
        .with_context(|| format!("the operator socket answered {answer:?}"))?;
    if response.ok {
        Ok(response.message)
    } else {
        bail!("{}", response.message)
    }
}

/// The operator socket of a running server; [`Socket::close`] removes it.
pub struct Socket {
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl Socket {
    /// Listens on `DATA/admin.sock`. The caller owns the directory's lock, so a socket file
    /// already there is a crashed server's, and is replaced.
    pub fn listen(jobs: Jobs) -> anyhow::Result<Socket> {
        let data = jobs.data.clone();
        let jobs = Arc::new(jobs);
        let path = data.join(SOCKET_FILE);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
        }
        let listener =
            UnixListener::bind(&path).with_context(|| format!("binding {}", path.display()))?;
        #[cfg(unix)]
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .with_context(|| format!("restricting {}", path.display()))?;
        let task = tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => {
                        tokio::spawn(serve_one(stream, jobs.clone()));
                    }
                    Err(e) => {
                        tracing::warn!("operator socket: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
        Ok(Socket { path, task })
    }

    /// Stops listening and removes the socket file.
    pub fn close(self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn serve_one(mut stream: UnixStream, jobs: Arc<Jobs>) {
    let job = async {
        let line = tokio::time::timeout(DEADLINE, read_line(&stream))
            .await
            .context("no request in time")?
            .context("reading the request")?;
        let request: Request = serde_json::from_str(&line).context("a bad request")?;
        tracing::info!(op = request.name(), "operator job");
        let deadline = request.deadline();
        tokio::time::timeout(deadline, apply(&jobs, request))
            .await
            .context("the job did not finish in time")?
    };
    let response = match job.await {
        Ok(message) => Response { ok: true, message },
        Err(e) => Response {
            ok: false,
            message: format!("{e:#}"),
        },
    };
    let mut line = serde_json::to_vec(&response).expect("serializes");
    line.push(b'\n');
    let _ = write_all(&mut stream, &line).await;
}

/// Reads up to the first newline (or the end), at most [`MAX_REQUEST`] bytes.
async fn read_line(stream: &UnixStream) -> std::io::Result<String> {
    let mut line = Vec::new();
    let mut buf = [0u8; 4096];
    while !line.contains(&b'\n') {
        stream.readable().await?;
        match stream.try_read(&mut buf) {
            Ok(0) => break,
            Ok(n) => line.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
        if line.len() as u64 > MAX_REQUEST {
            return Err(std::io::Error::other("the line is too long"));
        }
    }
    let end = line.iter().position(|b| *b == b'\n').unwrap_or(line.len());
    line.truncate(end);
    String::from_utf8(line).map_err(std::io::Error::other)
}

async fn write_all(stream: &mut UnixStream, mut data: &[u8]) -> std::io::Result<()> {
    while !data.is_empty() {
        stream.writable().await?;
        match stream.try_write(data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_one_json_line_and_refuse_unknown_operations() {
        let r = Request::SetPassword {
            email: "a@b".into(),
            password: "p".into(),
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"op":"set-password","email":"a@b","password":"p"}"#
        );
        assert!(serde_json::from_str::<Request>(r#"{"op":"drop-tables"}"#).is_err());
    }
}
