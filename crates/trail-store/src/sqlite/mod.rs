//! The embedded backend: one SQLite database in the data directory.
//!
//! Writes go through one writer thread that commits whatever has queued up together in one
//! transaction and one fsync (group commit, [`writer`]); reads use a pool of read-only
//! connections on the WAL snapshot ([`read`]). Strings are dictionary-encoded ([`dict`]).

mod dict;
pub mod lock;
mod read;
mod row;
mod tree;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use trail_core::scope::Role;
use trail_core::{EventBody, Timestamp};

use crate::{
    Appended, AuditEvents, Bootstrap, EventPage, EventQuery, Instance, Member, Org, Result,
    Session, SignedCheckpoint, Store, StoreError, StoredEvent, Token, TokenKind, User,
};
use dict::DictCache;
pub use lock::{DirLock, LockError};
use writer::Writer;

/// The database file inside the data directory.
pub const DB_FILE: &str = "trail.db";
const SCHEMA: &str = include_str!("schema.sql");
const SCHEMA_VERSION: i64 = 1;

/// `k = org << SEQ_BITS | seq`: an org's log is one contiguous key range.
pub(crate) const SEQ_BITS: u32 = 40;
pub(crate) const SEQ_MASK: i64 = (1 << SEQ_BITS) - 1;

pub struct SqliteStore {
    /// `None` when opened read-only.
    writer: Option<Writer>,
    readers: r2d2::Pool<SqliteConnectionManager>,
    dict: Arc<DictCache>,
    path: PathBuf,
    /// The data directory's lock, held while the store is open for writing; declared last so
    /// that it is released only after the writer has closed the database.
    _lock: Option<DirLock>,
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `dir`, taking the directory's lock: a store
    /// has one writing process. Fails, naming the directory and the holder, if another
    /// process holds it.
    pub fn open(dir: &Path) -> Result<SqliteStore> {
        let lock = DirLock::acquire(dir).map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Self::open_locked(lock)
    }

    /// Opens the store in the directory whose lock the caller took (see [`DirLock::acquire`]:
    /// a caller that must tell "in use" from other failures takes it first).
    pub fn open_locked(lock: DirLock) -> Result<SqliteStore> {
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
        migrate(&mut conn)?;
        let manager = SqliteConnectionManager::file(&path)
            .with_flags(OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .with_init(|c| {
                c.busy_timeout(Duration::from_secs(5))?;
                c.pragma_update(None, "query_only", true)?;
                c.pragma_update(None, "cache_size", -16_000)?;
                c.pragma_update(None, "mmap_size", 256i64 << 20)
            });
        let readers = r2d2::Pool::builder()
            .max_size(8)
            .min_idle(Some(1))
            .build(manager)
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Ok(SqliteStore {
            writer: Some(Writer::start(conn)?),
            readers,
            dict: Arc::new(DictCache::default()),
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
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(unavailable)?;
        if version != SCHEMA_VERSION {
            return Err(StoreError::Unavailable(format!(
                "the store has schema version {version}; this Trail reads version {SCHEMA_VERSION}"
            )));
        }
        let manager = SqliteConnectionManager::file(&path)
            .with_flags(OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .with_init(|c| c.pragma_update(None, "query_only", true));
        let readers = r2d2::Pool::builder()
            .max_size(2)
            .build(manager)
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Ok(SqliteStore {
            writer: None,
            readers,
            dict: Arc::new(DictCache::default()),
            path,
            _lock: None,
        })
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

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection, &DictCache) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let pool = self.readers.clone();
        let dict = self.dict.clone();
        tokio::task::spawn_blocking(move || {
            let conn = pool
                .get()
                .map_err(|e| StoreError::Unavailable(e.to_string()))?;
            f(&conn, &dict)
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("reader task failed: {e}")))?
    }
}

/// Settings every read-write connection gets.
pub(crate) fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(Duration::from_secs(5))?;
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

fn migrate(conn: &mut Connection) -> Result<()> {
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(unavailable)?;
    match version {
        0 => {
            let tx = conn.transaction().map_err(unavailable)?;
            tx.execute_batch(SCHEMA).map_err(unavailable)?;
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)
                .map_err(unavailable)?;
            tx.commit().map_err(unavailable)
        }
        SCHEMA_VERSION => Ok(()),
        v => Err(StoreError::Unavailable(format!(
            "the data directory has schema version {v}, newer than this Trail's {SCHEMA_VERSION}: upgrade Trail"
        ))),
    }
}

pub(crate) fn unavailable(e: rusqlite::Error) -> StoreError {
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

    async fn bootstrap(&self, b: Bootstrap) -> Result<bool> {
        self.writer()?.exec(move |w| w.bootstrap(&b)).await
    }

    async fn platform_org(&self) -> Result<Option<String>> {
        self.read(|c, _| read::meta(c, "platform_org")).await
    }

    async fn create_org(&self, org: Org, owner: Option<User>, audit: AuditEvents) -> Result<()> {
        self.writer()?
            .exec(move |w| w.create_org(&org, owner, audit))
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

    async fn set_password(&self, user_id: &str, hash: String, audit: AuditEvents) -> Result<()> {
        let user_id = user_id.to_owned();
        self.writer()?
            .exec(move |w| w.set_password(&user_id, hash, audit))
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

    async fn append(&self, org: &str, events: Vec<EventBody>) -> Result<Vec<Appended>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        self.writer()?.append(org.to_owned(), events).await
    }

    async fn query(&self, org: &str, q: &EventQuery) -> Result<EventPage> {
        let (org, q) = (org.to_owned(), q.clone());
        self.read(move |c, dict| read::query(c, dict, &org, &q))
            .await
    }

    async fn events_from(&self, org: &str, from: u64, limit: usize) -> Result<Vec<StoredEvent>> {
        let org = org.to_owned();
        self.read(move |c, dict| read::events_from(c, dict, &org, from, limit))
            .await
    }

    async fn events_for_audit(
        &self,
        org: &str,
        from: u64,
        limit: usize,
    ) -> Result<crate::AuditRows> {
        let org = org.to_owned();
        self.read(move |c, dict| read::events_for_audit(c, dict, &org, from, limit))
            .await
    }

    async fn log_size(&self, org: &str) -> Result<u64> {
        let org = org.to_owned();
        self.read(move |c, _| read::log_size(c, &org)).await
    }

    async fn api_calls(
        &self,
        org: &str,
        since: Timestamp,
        until: Timestamp,
    ) -> Result<crate::CallsByRoute> {
        let org = org.to_owned();
        self.read(move |c, dict| read::api_calls(c, dict, &org, since, until))
            .await
    }

    async fn tree_root(&self, org: &str, size: u64) -> Result<[u8; 32]> {
        let org = org.to_owned();
        self.read(move |c, _| tree::Tree::open(c, &org, size)?.root())
            .await
    }

    async fn inclusion_proof(&self, org: &str, seq: u64, size: u64) -> Result<Vec<[u8; 32]>> {
        let org = org.to_owned();
        self.read(move |c, _| tree::Tree::open(c, &org, size)?.inclusion(seq))
            .await
    }

    async fn consistency_proof(&self, org: &str, from: u64, to: u64) -> Result<Vec<[u8; 32]>> {
        let org = org.to_owned();
        self.read(move |c, _| tree::Tree::open(c, &org, to)?.consistency(from))
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
}
