//! The embedded backend: one SQLite database in the data directory.
//!
//! Writes go through one writer thread that commits whatever has queued up together in one
//! transaction and one fsync (group commit, [`writer`]); reads run on read-only
//! connections on the WAL snapshot, each owned by a thread of its own ([`readers`],
//! [`read`]). Strings are dictionary-encoded ([`dict`]).

mod batch;
mod blocks;
mod dict;
mod guard;
pub mod lock;
mod migrate;
mod minutes;
mod read;
mod readers;
mod row;
mod signer;
mod tree;
mod wal;
mod writer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use tokio::sync::Semaphore;
use trail_core::query::Filter;
use trail_core::scope::Role;
use trail_core::{EventBody, Timestamp};

use crate::{
    Acceptance, Appends, AuditEvents, Bootstrap, EventPage, EventQuery, Instance, LogWatch, Member,
    Org, Result, Session, SignedCheckpoint, Store, StoreError, StoredEvent, Token, TokenKind, User,
};
use dict::DictCache;
pub use lock::{DirLock, LockError};
use readers::Readers;
use writer::Writer;

/// The database file inside the data directory.
pub const DB_FILE: &str = "trail.db";
pub use migrate::SCHEMA_VERSION;
pub use writer::WRITER_THREAD;

/// `k = org << SEQ_BITS | seq`: an org's log is one contiguous key range.
pub(crate) const SEQ_BITS: u32 = 40;
pub(crate) const SEQ_MASK: i64 = (1 << SEQ_BITS) - 1;

/// Connections for reading events (queries, exports, proofs, perf figures).
const EVENT_READERS: u32 = 8;
/// Connections for everything else: credentials, sessions, orgs, members, settings. Event
/// reads never take these, so authenticating a call never waits behind a slow query.
const LOOKUP_READERS: u32 = 2;
/// At most this many reads of one org's events run at once: one org's queries can hold at
/// most half of the event readers, whatever they cost.
const READS_PER_ORG: usize = EVENT_READERS as usize / 2;
/// How long a filtered query (`query`, `api_call_minutes`) may run before SQLite stops it.
pub const QUERY_DEADLINE: Duration = Duration::from_secs(2);

pub use crate::fault::PROBE_INTERVAL;
/// How long a connection waits for another's write lock before its statement fails.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// SQLite virtual-machine steps between two checks of the deadline.
const DEADLINE_CHECK_STEPS: i32 = 1000;

pub struct SqliteStore {
    /// `None` when opened read-only.
    writer: Option<Writer>,
    /// Folds the WAL into the database off the writer's path; `None` when read-only.
    _wal: Option<wal::WalCheckpointer>,
    /// Event reads ([`EVENT_READERS`] connections, each on a thread of its own).
    readers: Readers,
    /// Every other read ([`LOOKUP_READERS`]).
    lookups: Readers,
    /// A semaphore per org, of [`READS_PER_ORG`] permits, held by each read of its events.
    org_reads: Mutex<HashMap<String, Arc<Semaphore>>>,
    /// The query deadline, in microseconds.
    deadline_us: AtomicU64,
    dict: Arc<DictCache>,
    /// Wakes readers waiting for a log to grow (told by the writer after each commit).
    logs: Arc<LogWatch>,
    path: PathBuf,
    /// The data directory's lock, held while the store is open for writing; declared last so
    /// that it is released only after the writer has closed the database.
    _lock: Option<DirLock>,
}

/// `n` read-only connections to `path`, set up by [`init_reader`], each on a thread named
/// `{name}-{i}`.
fn readers(path: &Path, name: &str, n: u32) -> Result<Readers> {
    let connections = (0..n)
        .map(|_| {
            let mut c = Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            init_reader(&mut c)?;
            Ok(c)
        })
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(unavailable)?;
    Readers::start(name, connections)
}

/// A read connection's own page cache, KiB. Ten of them are 40 MiB of the server's memory
/// at most; the kernel's page cache, shared by all, holds the rest of what is read often.
const READER_CACHE_KIB: i64 = 4_000;

/// Prepared statements a connection keeps (rusqlite keeps 16 by default). The writer's
/// transaction alone runs about forty distinct ones, several of them inserts of 64 rows;
/// with 16, each was evicted and compiled again every few transactions.
const STATEMENT_CACHE: usize = 128;

fn init_reader(c: &mut Connection) -> rusqlite::Result<()> {
    c.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    c.busy_timeout(BUSY_TIMEOUT)?;
    c.pragma_update(None, "query_only", true)?;
    c.pragma_update(None, "cache_size", -READER_CACHE_KIB)?;
    // No memory map: it would cover only the file's first pages (the oldest events, once the
    // store is large) and count every page read through it in the server's resident memory.
    c.pragma_update(None, "mmap_size", 0)
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `dir`, taking the directory's lock: a store
    /// has one writing process. Fails, naming the directory and the holder, if another
    /// process holds it.
    pub fn open(dir: &Path) -> Result<SqliteStore> {
        Self::open_with_clock(dir, crate::system_clock())
    }

    /// [`Self::open`], taking times of receipt from `clock`.
    pub fn open_with_clock(dir: &Path, clock: crate::Clock) -> Result<SqliteStore> {
        let lock = DirLock::acquire(dir).map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Self::open_locked_with(lock, clock, wal::Tuning::default())
    }

    /// Opens the store in the directory whose lock the caller took (see [`DirLock::acquire`]:
    /// a caller that must tell "in use" from other failures takes it first).
    pub fn open_locked(lock: DirLock) -> Result<SqliteStore> {
        Self::open_locked_with(lock, crate::system_clock(), wal::Tuning::default())
    }

    fn open_locked_with(
        lock: DirLock,
        clock: crate::Clock,
        wal: wal::Tuning,
    ) -> Result<SqliteStore> {
        let path = lock.dir().join(DB_FILE);
        lock::create_private_file(&path).map_err(|e| {
            StoreError::Unavailable(format!("cannot create {}: {e}", path.display()))
        })?;
        // The writer thread alone uses this connection: SQLite's own mutexes are not needed.
        let mut conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(unavailable)?;
        configure(&conn).map_err(unavailable)?;
        migrate::migrate(&mut conn)?;
        // Checkpoints are the WAL thread's, not the writer's: a commit never waits for one.
        // Once folded and started over, a WAL file past 256 MiB is cut back to that. The WAL
        // thread starts it over at about a quarter of that, so in steady ingest the file keeps
        // its size and its frames are overwritten in place: cutting it at every restart made
        // each commit grow the file again, which the file system pays for in block
        // allocation and zeroing on the writer's thread.
        conn.pragma_update(None, "wal_autocheckpoint", 0)
            .and_then(|_| conn.pragma_update(None, "journal_size_limit", 256i64 << 20))
            .map_err(unavailable)?;
        let logs = Arc::new(LogWatch::default());
        let gate = Arc::new(wal::Gate::default());
        Ok(SqliteStore {
            writer: Some(Writer::start(conn, logs.clone(), clock, gate.clone())?),
            _wal: Some(wal::WalCheckpointer::start(&path, gate, wal)?),
            readers: readers(&path, "trail-read", EVENT_READERS)?,
            lookups: readers(&path, "trail-lookup", LOOKUP_READERS)?,
            org_reads: Mutex::default(),
            deadline_us: AtomicU64::new(QUERY_DEADLINE.as_micros() as u64),
            dict: Arc::new(DictCache::default()),
            logs,
            path,
            _lock: Some(lock),
        })
    }

    /// Opens the store in `dir` for reading only: nothing in the directory is changed (for
    /// an auditor's copy, or a live store: the directory's lock is not taken). Every write
    /// answers `Unavailable`.
    pub fn open_read_only(dir: &Path) -> Result<SqliteStore> {
        let path = dir.join(DB_FILE);
        if !path.exists() {
            return Err(StoreError::NotFound(format!(
                "a Trail store in {}",
                dir.display()
            )));
        }
        let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(unavailable)?;
        let version = migrate::version(&conn)?;
        if version < SCHEMA_VERSION {
            return Err(StoreError::Unavailable(format!(
                "the store has schema version {version}, older than this Trail's \
                 {SCHEMA_VERSION}, and a read-only open does not migrate it: start the server \
                 on it once (it migrates at start), then read it again"
            )));
        }
        if version > SCHEMA_VERSION {
            return Err(StoreError::Unavailable(format!(
                "the store has schema version {version}, newer than this Trail's \
                 {SCHEMA_VERSION}: upgrade Trail"
            )));
        }
        Ok(SqliteStore {
            writer: None,
            _wal: None,
            // Connections set up as a server's readers are, so that what is measured on a
            // read-only store (the bench) is what a server's reads would cost.
            readers: readers(&path, "trail-read", 2)?,
            lookups: readers(&path, "trail-lookup", 1)?,
            org_reads: Mutex::default(),
            deadline_us: AtomicU64::new(QUERY_DEADLINE.as_micros() as u64),
            dict: Arc::new(DictCache::default()),
            // Nothing is written through a read-only store: its watchers are never woken.
            logs: Arc::default(),
            path,
            _lock: None,
        })
    }

    /// Sets how long a filtered query may run ([`QUERY_DEADLINE`] by default).
    pub fn set_query_deadline(&self, deadline: Duration) {
        self.deadline_us
            .store(deadline.as_micros() as u64, Ordering::Relaxed);
    }

    fn writer(&self) -> Result<&Writer> {
        self.writer
            .as_ref()
            .ok_or_else(|| StoreError::Unavailable("the store is open read-only".into()))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A read of anything but events, on the lookup pool.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection, &DictCache) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let dict = self.dict.clone();
        self.lookups.run(move |conn| f(conn, &dict)).await
    }

    /// A read of `org`'s events, on the event pool, holding one of the org's
    /// [`READS_PER_ORG`] permits until it ends; with `deadline`, SQLite stops it once the
    /// query deadline has passed (`TimedOut`).
    async fn read_events<T: Send + 'static>(
        &self,
        org: &str,
        deadline: bool,
        f: impl FnOnce(&Connection, &DictCache) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let permit = self
            .org_gate(org)
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Unavailable("the store is closing".into()))?;
        let limit =
            deadline.then(|| Duration::from_micros(self.deadline_us.load(Ordering::Relaxed)));
        let dict = self.dict.clone();
        self.readers
            .run(move |conn| {
                // Held until the read ends, even if the caller has gone.
                let _permit = permit;
                let Some(limit) = limit else {
                    return f(conn, &dict);
                };
                let end = Instant::now() + limit;
                conn.progress_handler(DEADLINE_CHECK_STEPS, Some(move || Instant::now() >= end))
                    .map_err(unavailable)?;
                // Removed however the read ends (even by a panic), before the thread takes its
                // next read.
                let _deadline = ClearsProgressHandler(conn);
                f(conn, &dict).map_err(|e| match e {
                    StoreError::TimedOut(_) => StoreError::TimedOut(limit),
                    other => other,
                })
            })
            .await
    }

    /// The semaphore that bounds the concurrent event reads of `org`.
    fn org_gate(&self, org: &str) -> Arc<Semaphore> {
        let mut gates = self.org_reads.lock().expect("org read gates lock");
        if gates.len() >= 1024 {
            // Forget the gates nobody holds; they are made again when needed.
            gates.retain(|_, g| Arc::strong_count(g) > 1 || g.available_permits() < READS_PER_ORG);
        }
        gates
            .entry(org.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(READS_PER_ORG)))
            .clone()
    }
}

/// Removes a connection's progress handler when dropped.
struct ClearsProgressHandler<'a>(&'a Connection);

impl Drop for ClearsProgressHandler<'_> {
    fn drop(&mut self) {
        let _ = self.0.progress_handler(0, None::<fn() -> bool>);
    }
}

/// Settings every read-write connection gets.
pub(crate) fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // FULL: the WAL is synced at every commit, so an acknowledged event survives power loss.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    // REPLACE deletes the row it replaces; with recursive triggers that delete meets the
    // append-only trigger instead of silently overwriting an event.
    conn.pragma_update(None, "recursive_triggers", true)?;
    conn.pragma_update(None, "cache_size", -32_000)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    Ok(())
}

pub(crate) fn unavailable(e: rusqlite::Error) -> StoreError {
    if e.sqlite_error_code() == Some(rusqlite::ErrorCode::OperationInterrupted) {
        // Stopped by the query deadline; the reader puts in how long that was.
        return StoreError::TimedOut(Duration::ZERO);
    }
    StoreError::Unavailable(e.to_string())
}

pub(crate) fn org_id(conn: &Connection, slug: &str) -> Result<i64> {
    conn.prepare_cached("SELECT id FROM orgs WHERE slug = ?1")
        .and_then(|mut s| s.query_row([slug], |r| r.get(0)).optional())
        .map_err(unavailable)?
        .ok_or_else(|| StoreError::UnknownOrg(slug.to_owned()))
}

fn org_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Org> {
    Ok(Org {
        id: r.get(0)?,
        name: r.get(1)?,
        created_at: Timestamp(r.get(2)?),
    })
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> Result<()> {
        self.read(|c, _| c.query_row("SELECT 1", [], |_| Ok(())).map_err(unavailable))
            .await?;
        self.writer()?.exec(|_| Ok(())).await
    }

    async fn health(&self) -> Result<()> {
        self.ping().await?;
        let writer = self.writer()?;
        // Has the fault passed? The first call a probe interval after the newest failure
        // claims the probe; the others, meanwhile, report the fault as it stands.
        if writer.fault().claim_probe() {
            writer
                .exec(|w| {
                    w.probe();
                    Ok(())
                })
                .await?;
        }
        writer.fault().readiness()
    }

    async fn bootstrap(&self, b: Bootstrap) -> Result<bool> {
        self.writer()?.exec(move |w| w.bootstrap(&b)).await
    }

    async fn platform_org(&self) -> Result<Option<String>> {
        self.read(|c, _| read::meta(c, "platform_org")).await
    }

    async fn create_org(
        &self,
        org: Org,
        owner: Option<User>,
        invitation: Option<Token>,
        audit: AuditEvents,
    ) -> Result<()> {
        self.writer()?
            .exec(move |w| w.create_org(&org, owner, invitation, audit))
            .await
    }

    async fn org(&self, id: &str) -> Result<Option<Org>> {
        let id = id.to_owned();
        self.read(move |c, _| {
            c.prepare_cached("SELECT slug, name, created_at FROM orgs WHERE slug = ?1")
                .and_then(|mut s| s.query_row([&id], org_from_row).optional())
                .map_err(unavailable)
        })
        .await
    }

    async fn orgs(&self) -> Result<Vec<Org>> {
        self.read(|c, _| {
            let mut s = c
                .prepare_cached("SELECT slug, name, created_at FROM orgs ORDER BY slug")
                .map_err(unavailable)?;
            let rows = s.query_map([], org_from_row).map_err(unavailable)?;
            rows.collect::<rusqlite::Result<_>>().map_err(unavailable)
        })
        .await
    }

    async fn user(&self, id: &str) -> Result<Option<User>> {
        let id = id.to_owned();
        self.read(move |c, _| read::user_where(c, "id", &id)).await
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<User>> {
        let email = email.to_owned();
        self.read(move |c, _| read::user_where(c, "email", &email))
            .await
    }

    async fn set_password(
        &self,
        user_id: &str,
        hash: String,
        at: Timestamp,
        audit: AuditEvents,
    ) -> Result<()> {
        let user_id = user_id.to_owned();
        self.writer()?
            .exec(move |w| w.set_password(&user_id, hash, at, audit))
            .await
    }

    async fn invite_member(&self, invitation: Token, audit: AuditEvents) -> Result<()> {
        self.writer()?
            .exec(move |w| w.invite_member(invitation, audit))
            .await
    }

    async fn add_member(
        &self,
        org: &str,
        user: User,
        role: Role,
        audit: AuditEvents,
    ) -> Result<Member> {
        let org = org.to_owned();
        self.writer()?
            .exec(move |w| w.add_member(&org, user, role, audit))
            .await
    }

    async fn set_role(
        &self,
        org: &str,
        user_id: &str,
        role: Role,
        audit: AuditEvents,
    ) -> Result<()> {
        let (org, user_id) = (org.to_owned(), user_id.to_owned());
        self.writer()?
            .exec(move |w| w.set_role(&org, &user_id, role, audit))
            .await
    }

    async fn remove_member(&self, org: &str, user_id: &str, audit: AuditEvents) -> Result<()> {
        let (org, user_id) = (org.to_owned(), user_id.to_owned());
        self.writer()?
            .exec(move |w| w.remove_member(&org, &user_id, audit))
            .await
    }

    async fn members(&self, org: &str) -> Result<Vec<Member>> {
        let org = org.to_owned();
        self.read(move |c, _| read::members(c, &org)).await
    }

    async fn memberships(&self, user_id: &str) -> Result<Vec<(String, Role)>> {
        let user_id = user_id.to_owned();
        self.read(move |c, _| read::memberships(c, &user_id)).await
    }

    async fn create_instance(&self, instance: Instance, audit: AuditEvents) -> Result<()> {
        self.writer()?
            .exec(move |w| w.create_instance(&instance, audit))
            .await
    }

    async fn instances(&self, org: &str) -> Result<Vec<Instance>> {
        let org = org.to_owned();
        self.read(move |c, _| read::instances(c, &org)).await
    }

    async fn create_token(&self, token: Token, audit: AuditEvents) -> Result<()> {
        self.writer()?
            .exec(move |w| w.create_token(&token, audit))
            .await
    }

    async fn token(&self, id: &str) -> Result<Option<Token>> {
        let id = id.to_owned();
        self.read(move |c, _| read::token(c, &id)).await
    }

    async fn personal_tokens(&self, user_id: &str) -> Result<Vec<Token>> {
        let user_id = user_id.to_owned();
        self.read(move |c, _| read::personal_tokens(c, &user_id))
            .await
    }

    async fn tokens(
        &self,
        org: &str,
        kind: TokenKind,
        user_id: Option<&str>,
    ) -> Result<Vec<Token>> {
        let (org, user_id) = (org.to_owned(), user_id.map(str::to_owned));
        self.read(move |c, _| read::tokens(c, &org, kind, user_id.as_deref()))
            .await
    }

    async fn revoke_token(&self, id: &str, at: Timestamp, audit: AuditEvents) -> Result<()> {
        let id = id.to_owned();
        self.writer()?
            .exec(move |w| w.revoke_token(&id, at, audit))
            .await
    }

    async fn accept_invitation(
        &self,
        id: &str,
        acceptance: Acceptance,
        at: Timestamp,
        audit: AuditEvents,
    ) -> Result<Member> {
        let id = id.to_owned();
        self.writer()?
            .exec(move |w| w.accept_invitation(&id, acceptance, at, audit))
            .await
    }

    async fn create_session(&self, session: Session, audit: AuditEvents) -> Result<()> {
        self.writer()?
            .exec(move |w| w.create_session(&session, audit))
            .await
    }

    async fn session(&self, id: &str) -> Result<Option<Session>> {
        let id = id.to_owned();
        self.read(move |c, _| read::session(c, &id)).await
    }

    async fn touch_session(&self, id: &str, at: Timestamp) -> Result<()> {
        let id = id.to_owned();
        self.writer()?.exec(move |w| w.touch_session(&id, at)).await
    }

    async fn end_user_sessions(
        &self,
        user_id: &str,
        except: Option<&str>,
        at: Timestamp,
    ) -> Result<()> {
        let (user_id, except) = (user_id.to_owned(), except.map(str::to_owned));
        self.writer()?
            .exec(move |w| w.end_user_sessions(&user_id, except.as_deref(), at))
            .await
    }

    async fn end_session(&self, id: &str, at: Timestamp, audit: AuditEvents) -> Result<()> {
        let id = id.to_owned();
        self.writer()?
            .exec(move |w| w.end_session(&id, at, audit))
            .await
    }

    async fn append_signed(&self, org: &str, events: Vec<EventBody>) -> Result<Appends> {
        if events.is_empty() {
            return Ok(Appends {
                items: Vec::new(),
                checkpoint: None,
            });
        }
        self.writer()?.append(org.to_owned(), events).await
    }

    async fn sign_logs(
        &self,
        key: Arc<trail_core::checkpoint::SignerKey>,
        remembered: HashMap<String, (u64, [u8; 32])>,
    ) -> Result<Vec<(String, String)>> {
        self.writer()?
            .exec(move |w| w.sign_logs(key, remembered))
            .await
    }

    async fn query(&self, org: &str, q: &EventQuery) -> Result<EventPage> {
        let (org, q) = (org.to_owned(), q.clone());
        self.read_events(&org.clone(), true, move |c, dict| {
            read::query(c, dict, &org, &q)
        })
        .await
    }

    async fn histogram(
        &self,
        org: &str,
        filter: &Filter,
        since: Timestamp,
        until: Timestamp,
        buckets: usize,
    ) -> Result<Vec<u64>> {
        let (org, filter) = (org.to_owned(), filter.clone());
        self.read_events(&org.clone(), true, move |c, _| {
            read::histogram(c, &org, &filter, since, until, buckets)
        })
        .await
    }

    async fn export(
        &self,
        org: &str,
        filter: &Filter,
        from: u64,
        limit: usize,
        scan: u64,
    ) -> Result<crate::ExportPage> {
        let (org, filter) = (org.to_owned(), filter.clone());
        self.read_events(&org.clone(), true, move |c, dict| {
            read::export(c, dict, &org, &filter, from, limit, scan)
        })
        .await
    }

    async fn seq_received_since(&self, org: &str, at: Timestamp) -> Result<u64> {
        let org = org.to_owned();
        self.read(move |c, _| read::seq_received_since(c, &org, at))
            .await
    }

    async fn events_from(&self, org: &str, from: u64, limit: usize) -> Result<Vec<StoredEvent>> {
        let org = org.to_owned();
        self.read_events(&org.clone(), false, move |c, dict| {
            read::events_from(c, dict, &org, from, limit)
        })
        .await
    }

    async fn leaves_for_audit(
        &self,
        org: &str,
        from: u64,
        limit: usize,
    ) -> Result<crate::AuditRows> {
        let org = org.to_owned();
        self.read_events(&org.clone(), false, move |c, dict| {
            read::leaves_for_audit(c, dict, &org, from, limit)
        })
        .await
    }

    async fn log_size(&self, org: &str) -> Result<u64> {
        let org = org.to_owned();
        self.read(move |c, _| read::log_size(c, &org)).await
    }

    fn watch_log(&self, org: &str) -> tokio::sync::watch::Receiver<u64> {
        self.logs.subscribe(org)
    }

    async fn api_call_minutes(
        &self,
        org: &str,
        since: Timestamp,
        until: Timestamp,
        per_minutes: i64,
    ) -> Result<trail_core::perf::Minutes> {
        let org = org.to_owned();
        self.read_events(&org.clone(), true, move |c, dict| {
            minutes::perf(c, dict, &org, since, until, per_minutes)
        })
        .await
    }

    async fn tree_root(&self, org: &str, size: u64) -> Result<[u8; 32]> {
        let org = org.to_owned();
        self.read_events(&org.clone(), false, move |c, _| {
            tree::Tree::open(c, &org, size)?.root()
        })
        .await
    }

    async fn inclusion_proof(&self, org: &str, seq: u64, size: u64) -> Result<Vec<[u8; 32]>> {
        let org = org.to_owned();
        self.read_events(&org.clone(), false, move |c, _| {
            tree::Tree::open(c, &org, size)?.inclusion(seq)
        })
        .await
    }

    async fn consistency_proof(&self, org: &str, from: u64, to: u64) -> Result<Vec<[u8; 32]>> {
        let org = org.to_owned();
        self.read_events(&org.clone(), false, move |c, _| {
            tree::Tree::open(c, &org, to)?.consistency(from)
        })
        .await
    }

    async fn extend_tiles(&self, org: &str, signed: u64, size: u64) -> Result<()> {
        let org = org.to_owned();
        self.writer()?
            .exec(move |w| w.extend_tiles(&org, signed, size))
            .await
    }

    async fn add_checkpoint(&self, checkpoint: SignedCheckpoint) -> Result<()> {
        self.writer()?
            .exec(move |w| w.add_checkpoint(&checkpoint))
            .await
    }

    async fn checkpoint(&self, org: &str, size: Option<u64>) -> Result<Option<SignedCheckpoint>> {
        let org = org.to_owned();
        self.read(move |c, _| tree::checkpoint(c, &org, size)).await
    }

    async fn set_setting(&self, key: &str, value: &str, audit: AuditEvents) -> Result<()> {
        let (key, value) = (key.to_owned(), value.to_owned());
        self.writer()?
            .exec(move |w| w.set_setting(&key, &value, audit))
            .await
    }

    async fn retention(&self, org: &str) -> Result<crate::Retention> {
        let org = org.to_owned();
        self.read(move |c, _| read::retention(c, &org)).await
    }

    async fn set_retention(
        &self,
        org: &str,
        days: Option<Option<u32>>,
        legal_hold: Option<bool>,
        audit: AuditEvents,
    ) -> Result<crate::Retention> {
        let org = org.to_owned();
        self.writer()?
            .exec(move |w| w.set_retention(&org, days, legal_hold, audit))
            .await
    }

    async fn prune(&self, org: &str, below: u64, audit: AuditEvents) -> Result<crate::Pruned> {
        let org = org.to_owned();
        self.writer()?
            .exec(move |w| w.prune(&org, below, audit))
            .await
    }

    async fn checkpoint_at_most(&self, org: &str, size: u64) -> Result<Option<SignedCheckpoint>> {
        let org = org.to_owned();
        self.read(move |c, _| tree::checkpoint_at_most(c, &org, size))
            .await
    }

    async fn tree_frontier(&self, org: &str, size: u64) -> Result<Vec<[u8; 32]>> {
        let org = org.to_owned();
        self.read_events(&org.clone(), false, move |c, _| {
            tree::Tree::open(c, &org, size)?.frontier()
        })
        .await
    }

    async fn checkpoints(
        &self,
        org: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<SignedCheckpoint>> {
        let org = org.to_owned();
        self.read(move |c, _| tree::checkpoints(c, &org, after, limit))
            .await
    }

    async fn setting(&self, key: &str) -> Result<Option<String>> {
        let key = key.to_owned();
        self.read(move |c, _| read::meta(c, &key)).await
    }

    async fn init_setting(&self, key: &str, value: &str) -> Result<String> {
        let (key, value) = (key.to_owned(), value.to_owned());
        self.writer()?
            .exec(move |w| w.init_setting(&key, &value))
            .await
    }

    async fn identity(&self) -> Result<crate::Identity> {
        self.read(|c, _| read::identity(c)).await
    }

    async fn tiles_below(&self, org: &str, below: u64) -> Result<Vec<(u32, u64, [u8; 32])>> {
        let org = org.to_owned();
        self.read(move |c, _| read::tiles_below(c, &org, below))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::task::{Context, Poll, Waker};

    /// Polls a future once: `Some` if it is done at once.
    fn poll_once<F: Future + Unpin>(f: &mut F) -> Option<F::Output> {
        match std::pin::Pin::new(f).poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(v) => Some(v),
            Poll::Pending => None,
        }
    }

    /// `f`, failing the test rather than hanging it if a read is never run (after a minute,
    /// far longer than a read takes to start on a slow, busy machine).
    async fn within<F: Future>(f: F) -> F::Output {
        tokio::time::timeout(Duration::from_secs(60), f)
            .await
            .expect("a read never ran")
    }

    /// A read holding one of a set's connections until this is dropped.
    struct Occupied<'a> {
        /// Dropped first, which ends the read.
        _release: std::sync::mpsc::Sender<()>,
        /// Its caller, kept: a read whose caller has gone is not run.
        _read: std::pin::Pin<Box<dyn Future<Output = Result<()>> + 'a>>,
    }

    /// Occupies one of `readers`' connections; returns once the read holding it has started.
    async fn occupy(readers: &Readers) -> Occupied<'_> {
        let (started, has_started) = tokio::sync::oneshot::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let mut read = Box::pin(readers.run(move |_| {
            let _ = started.send(());
            let _ = released.recv();
            Ok(())
        }));
        // Its first poll queues the read.
        assert!(poll_once(&mut read).is_none());
        within(has_started).await.unwrap();
        Occupied {
            _release: release,
            _read: read,
        }
    }

    async fn store() -> (SqliteStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        crate::conformance::with_orgs(&store, &["acme", "umbrella"]).await;
        (store, dir)
    }

    /// The writer's connection runs no triggers; its authorizer refuses what they would
    /// (`guard.rs`). (That a prune still deletes, the conformance suite's prunes show.)
    #[tokio::test]
    async fn the_writers_own_connection_cannot_rewrite_the_log() {
        let (store, _dir) = store().await;
        store
            .append("acme", crate::conformance::sample_events(300))
            .await
            .unwrap();
        for sql in [
            "UPDATE events SET hash = zeroblob(32)",
            "DELETE FROM events",
            "DELETE FROM checkpoints",
            "UPDATE dict SET value = 'x'",
            "DROP TRIGGER events_no_update",
            "INSERT INTO events SELECT * FROM events",
        ] {
            let refused = store
                .writer()
                .unwrap()
                .exec(move |w| Ok(w.conn().execute_batch(sql)))
                .await
                .unwrap();
            assert!(refused.is_err(), "{sql} on the writer's connection");
        }
        let page = store
            .query(
                "acme",
                &EventQuery {
                    limit: 1000,
                    ..EventQuery::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(page.items.len(), 300, "every event is there, unchanged");
    }

    /// Under appends that never let up, with reads going on, the WAL still starts over
    /// again and again, so its file stays near the size at which it is made to. Before the
    /// writer was held at the gate for it, a checkpoint that waited 50 ms for a gap between
    /// two commits seldom found one, and the file grew with every commit (to 3.2 GB in a
    /// 10-million-event run).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_wal_starts_over_under_appends_that_never_let_up() {
        let dir = tempfile::tempdir().unwrap();
        let lock = DirLock::acquire(dir.path()).unwrap();
        let tuning = wal::Tuning {
            restart_frames: 256,
            restart_every: Duration::from_millis(100),
        };
        let store =
            Arc::new(SqliteStore::open_locked_with(lock, crate::system_clock(), tuning).unwrap());
        crate::conformance::with_orgs(&*store, &["acme"]).await;
        let wal_file = dir.path().join(format!("{DB_FILE}-wal"));
        // The appenders and the reader go on until the WAL has been seen to start over three
        // times after 10,000 events, however fast this machine appends; the time limit only
        // bounds a failing run.
        let stop = Arc::new(AtomicBool::new(false));
        let appended = Arc::new(AtomicUsize::new(0));
        // More appenders than a group waits for, so the writer's queue never empties.
        let appenders: Vec<_> = (0..32)
            .map(|_| {
                let (store, stop, appended) = (store.clone(), stop.clone(), appended.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let mut events = crate::conformance::sample_events(200);
                        for e in &mut events {
                            e.client_id = None;
                        }
                        let n = store.append("acme", events).await.unwrap().len();
                        appended.fetch_add(n, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        let reader = {
            let (store, stop) = (store.clone(), stop.clone());
            tokio::spawn(async move {
                let q = EventQuery {
                    limit: 100,
                    ..EventQuery::default()
                };
                while !stop.load(Ordering::Relaxed) {
                    store.query("acme", &q).await.unwrap();
                }
            })
        };
        // The WAL header's checkpoint sequence number (bytes 12..16) goes up at each start.
        let (mut largest, mut starts, mut sequence) = (0, 0, None);
        let until = Instant::now() + Duration::from_secs(120);
        while (starts < 3 || appended.load(Ordering::Relaxed) < 10_000) && Instant::now() < until {
            if let Ok(mut f) = std::fs::File::open(&wal_file) {
                largest = largest.max(f.metadata().map_or(0, |m| m.len()));
                let mut head = [0u8; 16];
                if std::io::Read::read_exact(&mut f, &mut head).is_ok() {
                    let now = u32::from_be_bytes(head[12..16].try_into().unwrap());
                    if sequence.is_some_and(|s| s != now) {
                        starts += 1;
                    }
                    sequence = Some(now);
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.store(true, Ordering::Relaxed);
        for a in appenders {
            a.await.unwrap();
        }
        reader.await.unwrap();
        let appended = appended.load(Ordering::Relaxed);
        assert!(
            starts >= 3,
            "the WAL started over {starts} times over {appended} events"
        );
        assert!(
            largest <= 32 << 20,
            "the WAL file grew to {largest} bytes over {appended} events"
        );
    }

    /// While one org's slow queries hold every read they may (its permits, and as many event
    /// readers), credential lookups and other orgs' queries still find a connection; the
    /// org's next query waits for its own.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_orgs_slow_reads_leave_readers_for_everyone_else() {
        let (store, _dir) = store().await;
        // acme's slow queries in flight: every permit of acme, each with an event reader.
        let gate = store.org_gate("acme");
        let mut held = Vec::new();
        for _ in 0..READS_PER_ORG {
            held.push((
                gate.clone().try_acquire_owned().unwrap(),
                occupy(&store.readers).await,
            ));
        }
        // Credential lookups do not use the event readers at all.
        let mut all_event_readers = Vec::new();
        for _ in READS_PER_ORG..EVENT_READERS as usize {
            all_event_readers.push(occupy(&store.readers).await);
        }
        assert_eq!(within(store.token("pat_nope")).await.unwrap(), None);
        assert!(within(store.org("acme")).await.unwrap().is_some());
        drop(all_event_readers);
        // Another org's query finds a reader.
        let q = EventQuery {
            limit: 10,
            ..EventQuery::default()
        };
        within(store.query("umbrella", &q)).await.unwrap();
        // acme's next query waits for one of acme's own to end: it is not handed to any of
        // the idle readers.
        let free = EVENT_READERS as usize - READS_PER_ORG;
        // (The readers released above list themselves idle as they finish.)
        within(async {
            while store.readers.idle() < free {
                tokio::task::yield_now().await;
            }
        })
        .await;
        let mut next = Box::pin(store.query("acme", &q));
        assert!(poll_once(&mut next).is_none());
        assert_eq!(store.readers.idle(), free);
        held.pop();
        within(next).await.unwrap();
    }
}
