//! The PostgreSQL backend: several Trail servers on one database.
//!
//! Nothing about a log is kept in one process's memory: an append takes its log's row lock
//! (`logs`, `SELECT … FOR UPDATE`) in its transaction, reads the log's size and last time of
//! receipt there, and gives the next seqs; so appends to one org from any number of servers
//! are serialized by the database, and seqs stay gapless and unique. The checkpoint that
//! covers them is signed in the same transaction (zero merge delay), so one chain of
//! checkpoints grows per org whichever server appends. Work runs on blocking threads with
//! the synchronous client (as SQLite's does), so the Merkle algorithms of `trail_core` read
//! the tree through the same [`HashReader`](trail_core::merkle::HashReader).
//!
//! Append-only by grants: the migration makes a role `trail_writer` with INSERT and SELECT
//! on `events` (and on `tiles` and `checkpoints`) and no UPDATE or DELETE, and every
//! connection of the server acts as it (`SET ROLE`); pruning, the one delete, is a function
//! that runs as the schema's owner and checks what a prune must be (see [`migrate`]).
//! Events are partitioned by week of receipt, so a prune that takes a whole week of every
//! org drops its partition.

mod identity;
pub mod local;
mod log;
pub mod migrate;
mod notify;
mod read;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use postgres::error::SqlState;
use postgres::{NoTls, Transaction};
use r2d2_postgres::PostgresConnectionManager;
use tokio::sync::watch;
use trail_core::merkle::Hash;
use trail_core::query::Filter;
use trail_core::scope::Role;
use trail_core::{EventBody, Timestamp};

use crate::fault::WriteFault;
use crate::{
    Acceptance, Appends, AuditEvents, Bootstrap, EventPage, EventQuery, Instance, LogWatch, Member,
    Org, Result, Session, SignedCheckpoint, Store, StoreError, StoredEvent, Token, TokenKind, User,
};

type Pool = r2d2::Pool<PostgresConnectionManager<NoTls>>;

/// A text as a column of `events` holds it: PostgreSQL's text has no NUL, which an object
/// id may hold, so NUL is written `\u{1}0` and `\u{1}` itself `\u{1}\u{1}` (one text
/// for one value, both ways). Filter values go through it too.
pub(crate) fn column_text(s: String) -> String {
    if s.contains(['\0', '\u{1}']) {
        s.replace('\u{1}', "\u{1}\u{1}").replace('\0', "\u{1}0")
    } else {
        s
    }
}

/// How much of an object name its index holds (a b-tree entry has a size limit; an
/// object name may be long): a filter on object names matches this prefix in the index,
/// then the whole name.
pub(crate) const INDEXED_NAME_CHARS: i32 = 256;

/// The text fields of the query language and the `events` columns that hold them
/// (`status` is a column of its own, an integer). Every term of a filter is answered by SQL
/// on these.
pub(crate) const FILTERED: [(trail_core::query::Field, &str); 12] = {
    use trail_core::query::Field;
    [
        (Field::Actor, "actor"),
        (Field::ActorType, "actor_type"),
        (Field::Action, "action"),
        (Field::Category, "category"),
        (Field::ObjectType, "object_type"),
        (Field::ObjectKind, "object_kind"),
        (Field::ObjectName, "object_name"),
        (Field::Route, "route"),
        (Field::Method, "method"),
        (Field::Instance, "instance"),
        (Field::TokenId, "token_id"),
        (Field::Ip, "ip"),
    ]
};
pub(crate) type Conn = r2d2::PooledConnection<PostgresConnectionManager<NoTls>>;

/// Connections for reads (credentials, sessions and events alike).
const READ_POOL: u32 = 16;
/// Connections for writes: appends waiting for a busy log's row lock hold these, never
/// those that authenticate calls and read.
const WRITE_POOL: u32 = 8;
/// How long a read of events may run before the database stops it.
pub const QUERY_DEADLINE: Duration = Duration::from_secs(2);
/// How many times a write that lost a serialization race or a deadlock is tried again.
const WRITE_TRIES: usize = 4;
/// What readiness's probe writes (and rolls back) while writes are failing: room for a
/// group of batches.
const PROBE_BYTES: usize = 4 << 20;

pub struct PgStore {
    reads: Connections,
    /// What writes share, with the tasks that commit them.
    w: Arc<Writer>,
}

/// The write side: its connections, and what a commit tells.
struct Writer {
    writes: Connections,
    /// Wakes this process's readers when a log grows, through this process or another
    /// server on the database ([`notify`]).
    logs: Arc<LogWatch>,
    clock: crate::Clock,
    /// The signing key and each log's tree as this process last committed it.
    signing: Arc<Mutex<Option<log::Signing>>>,
    /// Group commit: the appends waiting for each org's log ([`PgStore::append_signed`]).
    queues: Mutex<HashMap<String, Arc<Queue>>>,
    /// Why writes are failing, until one commits (readiness).
    fault: WriteFault,
    /// Where the newest partition of `events` ends, as this process last learnt it.
    partitioned_until: Arc<std::sync::atomic::AtomicI64>,
}

/// The pool. The synchronous client blocks while it closes a connection, which must not
/// happen on an async task: when the store is dropped, its connections are closed on a
/// thread of their own.
struct Connections(Option<Pool>);

impl Connections {
    fn pool(&self) -> &Pool {
        self.0
            .as_ref()
            .expect("the pool is there until the store is dropped")
    }
}

impl Drop for Connections {
    fn drop(&mut self) {
        if let Some(pool) = self.0.take() {
            let _ = std::thread::Builder::new()
                .name("trail-pg-close".into())
                .spawn(move || drop(pool));
        }
    }
}

/// The most appends one transaction takes for one log, and the most events.
const GROUP_APPENDS: usize = 32;
const GROUP_EVENTS: usize = 20_000;

/// The appends waiting for one org's log. An org's appends are one at a time anyway (its
/// log's row lock), so those that arrive while one commits are taken together in the next
/// transaction: one commit, one fsync and one lock hand-over for all of them.
#[derive(Default)]
struct Queue {
    waiting: Mutex<Vec<Queued>>,
    /// Whether a task is committing this org's appends (and will take what waits).
    busy: std::sync::atomic::AtomicBool,
}

type Queued = (
    Vec<EventBody>,
    tokio::sync::oneshot::Sender<Result<Appends>>,
);

/// Runs `f` on a connection of `pool`, on a blocking thread.
async fn on_pool<T: Send + 'static>(
    pool: &Connections,
    f: impl FnOnce(&mut Conn) -> Result<T> + Send + 'static,
) -> Result<T> {
    let pool = pool.pool().clone();
    tokio::task::spawn_blocking(move || {
        let mut conn = pool
            .get()
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        f(&mut conn)
    })
    .await
    .map_err(|e| StoreError::Unavailable(format!("a database task failed: {e}")))?
}

/// A database error as a store error: the backend's codes stay here.
pub(crate) fn unavailable(e: postgres::Error) -> StoreError {
    match e.code() {
        Some(c) if *c == SqlState::QUERY_CANCELED => StoreError::TimedOut(QUERY_DEADLINE),
        Some(c)
            if *c == SqlState::T_R_SERIALIZATION_FAILURE
                || *c == SqlState::T_R_DEADLOCK_DETECTED
                || *c == SqlState::LOCK_NOT_AVAILABLE =>
        {
            StoreError::Contended(e.to_string())
        }
        // What the request carries, not the database's state: refused, and no fault.
        Some(c)
            if *c == SqlState::CHARACTER_NOT_IN_REPERTOIRE
                || *c == SqlState::PROGRAM_LIMIT_EXCEEDED =>
        {
            StoreError::Refused(match e.as_db_error() {
                Some(db) => format!("the database refused a value: {}", db.message()),
                None => e.to_string(),
            })
        }
        _ => StoreError::Unavailable(match e.as_db_error() {
            // The server's own words ("permission denied for table events").
            Some(db) => db.message().to_owned(),
            // The client's own ("error connecting to server: Connection refused").
            None => match std::error::Error::source(&e) {
                Some(cause) => format!("{e}: {cause}"),
                None => e.to_string(),
            },
        }),
    }
}

/// A constraint violation as a domain error: a duplicate is a conflict, a reference to
/// something missing is "not found".
pub(crate) fn constraint(e: postgres::Error, what: impl FnOnce() -> String) -> StoreError {
    match e.code() {
        Some(c) if *c == SqlState::UNIQUE_VIOLATION => StoreError::Conflict(what()),
        Some(c) if *c == SqlState::FOREIGN_KEY_VIOLATION => {
            StoreError::NotFound(format!("what {} refers to", what()))
        }
        _ => unavailable(e),
    }
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://user@host/db`, or the key-value form),
    /// and brings its schema up to date ([`migrate::migrate`]).
    pub async fn open(url: &str) -> Result<PgStore> {
        Self::open_with_clock(url, crate::system_clock()).await
    }

    /// [`Self::open`], taking times of receipt from `clock`.
    pub async fn open_with_clock(url: &str, clock: crate::Clock) -> Result<PgStore> {
        let url = url.to_owned();
        tokio::task::spawn_blocking(move || Self::connect(&url, clock, true))
            .await
            .map_err(|e| StoreError::Unavailable(format!("connecting failed: {e}")))?
    }

    /// Connects to a database already at this Trail's schema, changing nothing of it (for
    /// a verifier, whose login need not own the schema); `Unavailable` if it is at another
    /// version.
    pub async fn open_existing(url: &str) -> Result<PgStore> {
        let url = url.to_owned();
        tokio::task::spawn_blocking(move || Self::connect(&url, crate::system_clock(), false))
            .await
            .map_err(|e| StoreError::Unavailable(format!("connecting failed: {e}")))?
    }

    fn connect(url: &str, clock: crate::Clock, migrating: bool) -> Result<PgStore> {
        let config: postgres::Config = url.parse().map_err(|e| {
            StoreError::Unavailable(format!("not a PostgreSQL connection string: {e}"))
        })?;
        {
            let mut admin = config.connect(NoTls).map_err(unavailable)?;
            if migrating {
                migrate::migrate(&mut admin)?;
            } else {
                let mut tx = admin.transaction().map_err(unavailable)?;
                let version = migrate::version(&mut tx)?;
                if version != migrate::SCHEMA_VERSION {
                    return Err(StoreError::Unavailable(format!(
                        "the database is at schema version {version}, this Trail reads {}",
                        migrate::SCHEMA_VERSION
                    )));
                }
            }
        }
        let logs = Arc::new(LogWatch::default());
        notify::listen(config.clone(), Arc::downgrade(&logs))?;
        let pool = |size: u32| {
            r2d2::Pool::builder()
                .max_size(size)
                .min_idle(Some(1))
                .connection_customizer(Box::new(migrate::ActAsWriter))
                .build(PostgresConnectionManager::new(config.clone(), NoTls))
                .map(|p| Connections(Some(p)))
                .map_err(|e| StoreError::Unavailable(e.to_string()))
        };
        Ok(PgStore {
            reads: pool(READ_POOL)?,
            w: Arc::new(Writer {
                writes: pool(WRITE_POOL)?,
                logs,
                clock,
                signing: Arc::default(),
                queues: Mutex::default(),
                fault: WriteFault::default(),
                partitioned_until: Arc::default(),
            }),
        })
    }

    /// Runs `f` on a read connection, on a blocking thread.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Conn) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        on_pool(&self.reads, f).await
    }
}

impl Writer {
    /// Runs `work` in a transaction on a write connection, again while it loses races to
    /// other transactions; once it commits, tells this process's signing state, the other
    /// servers ([`notify`]) and this process's readers.
    async fn transact<T: Send + 'static>(
        &self,
        work: impl Fn(&mut Transaction<'_>, &log::Context, &mut log::Grown) -> Result<T>
        + Send
        + 'static,
    ) -> Result<T> {
        let ctx = self.append_context();
        let result = on_pool(&self.writes, move |conn| {
            let mut tries = 0;
            loop {
                tries += 1;
                let attempt = (|| {
                    let mut tx = conn.transaction().map_err(unavailable)?;
                    let mut grown = log::Grown::default();
                    let out = work(&mut tx, &ctx, &mut grown)?;
                    tx.commit().map_err(unavailable)?;
                    ctx.committed(&grown);
                    Ok((out, grown))
                })();
                match attempt {
                    Err(StoreError::Contended(_)) if tries < WRITE_TRIES => continue,
                    Ok((out, grown)) => {
                        notify::grew(conn, &grown.sizes);
                        return Ok((out, grown));
                    }
                    Err(e) => return Err(e),
                }
            }
        })
        .await;
        let (out, grown) = self.committed(result)?;
        self.grew(grown);
        Ok(out)
    }

    /// Runs `f` and appends `audit` in one transaction: the change and its record commit
    /// together or not at all.
    async fn write<T: Send + 'static>(
        &self,
        audit: AuditEvents,
        f: impl Fn(&mut Transaction<'_>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.transact(move |tx, ctx, grown| {
            let out = f(tx)?;
            // The logs in one order whatever the caller's, so that two changes recorded in
            // the same orgs never wait for each other.
            let mut orgs: Vec<&str> = audit.iter().map(|(org, _)| org.as_str()).collect();
            orgs.sort_unstable();
            orgs.dedup();
            log::lock_logs(tx, &orgs)?;
            for (org, event) in audit.iter().cloned() {
                log::append(tx, ctx, grown, &org, vec![event])?;
            }
            Ok(out)
        })
        .await
    }

    /// Commits what waits in `org`'s queue, a group at a time, until it is empty.
    async fn drain(self: Arc<Self>, org: String, queue: Arc<Queue>) {
        loop {
            loop {
                let group = {
                    let mut waiting = queue.waiting.lock().expect("queue lock");
                    let mut events = 0;
                    let take = waiting
                        .iter()
                        .take_while(|(e, _)| {
                            events += e.len();
                            events <= GROUP_EVENTS
                        })
                        .count()
                        .clamp(1.min(waiting.len()), GROUP_APPENDS);
                    waiting.drain(..take).collect::<Vec<Queued>>()
                };
                if group.is_empty() {
                    break;
                }
                self.commit_group(&org, group).await;
            }
            queue
                .busy
                .store(false, std::sync::atomic::Ordering::Release);
            // One that queued after the last look, and found the queue busy, is taken here.
            if queue.waiting.lock().expect("queue lock").is_empty()
                || queue.busy.swap(true, std::sync::atomic::Ordering::AcqRel)
            {
                return;
            }
        }
    }

    /// Appends each of `group`'s batches to `org`'s log in one transaction, and answers
    /// each: its events and the checkpoint that covers them, or why it was refused.
    async fn commit_group(&self, org: &str, group: Vec<Queued>) {
        let (batches, replies): (Vec<Vec<EventBody>>, Vec<_>) = group.into_iter().unzip();
        let org_name = org.to_owned();
        let result = self
            .transact(move |tx, ctx, grown| {
                let mut out = Vec::with_capacity(batches.len());
                for events in &batches {
                    match log::append(tx, ctx, grown, &org_name, events.clone()) {
                        // Refused before it wrote anything: the others go on.
                        Err(e @ StoreError::LogFull(_)) => out.push(Err(e)),
                        other => out.push(Ok(other?)),
                    }
                }
                Ok(out)
            })
            .await;
        let answers: Vec<Result<Appends>> = match result {
            Ok(each) => each,
            Err(e) => replies.iter().map(|_| Err(e.clone())).collect(),
        };
        let created = answers
            .iter()
            .flatten()
            .flat_map(|a| &a.items)
            .filter(|a| a.outcome == crate::Outcome::Created)
            .count();
        metrics::counter!("trail_events_appended_total").increment(created as u64);
        metrics::histogram!("trail_group_commit_requests").record(replies.len() as f64);
        for (reply, answer) in replies.into_iter().zip(answers) {
            let _ = reply.send(answer);
        }
    }

    /// What an append needs besides its transaction.
    fn append_context(&self) -> log::Context {
        log::Context {
            clock: self.clock.clone(),
            signing: self.signing.clone(),
            partitioned_until: self.partitioned_until.clone(),
        }
    }

    /// Tells this process's readers which logs grew, after a commit.
    fn grew(&self, grown: log::Grown) {
        for (org, size) in grown.sizes {
            self.logs.grew(&org, size);
        }
    }

    /// Records the outcome of a write for readiness: a failure that can pass is remembered
    /// until a write commits.
    fn committed<T>(&self, r: Result<T>) -> Result<T> {
        self.fault.record(&r);
        r
    }

    /// After a fault, writes [`PROBE_BYTES`] of incompressible text into `settings` and
    /// rolls it back: the database must find room for a group of batches, as a write
    /// must, not only for a row that fits in a page already on disk, or readiness would
    /// come and go on a tablespace that is still full. One that succeeds clears the fault;
    /// one that fails (no room, a read-only database or transaction, no connection)
    /// renews it with the database's words.
    async fn probe(&self) {
        let tried = on_pool(&self.writes, |conn| {
            let mut tx = conn.transaction().map_err(unavailable)?;
            tx.execute(
                "INSERT INTO settings (key, value) \
                 SELECT 'write_probe', string_agg(gen_random_uuid()::text, '') \
                 FROM generate_series(1, $1::int / 36)",
                &[&(PROBE_BYTES as i32)],
            )
            .map_err(unavailable)?;
            tx.rollback().map_err(unavailable)
        })
        .await;
        self.fault.record(&tried);
    }
}

#[async_trait]
impl Store for PgStore {
    async fn ping(&self) -> Result<()> {
        self.blocking(|c| {
            c.simple_query("SELECT 1").map_err(unavailable)?;
            Ok(())
        })
        .await
    }

    async fn health(&self) -> Result<()> {
        self.ping().await?;
        if self.w.fault.claim_probe() {
            self.w.probe().await;
        }
        self.w.fault.readiness()
    }

    async fn bootstrap(&self, b: Bootstrap) -> Result<bool> {
        self.w
            .write(Vec::new(), move |tx| identity::bootstrap(tx, &b))
            .await
    }

    async fn platform_org(&self) -> Result<Option<String>> {
        self.blocking(|c| identity::setting(&mut **c, "platform_org"))
            .await
    }

    async fn create_org(
        &self,
        org: Org,
        owner: Option<User>,
        invitation: Option<Token>,
        audit: AuditEvents,
    ) -> Result<()> {
        self.w
            .write(audit, move |tx| {
                identity::create_org(tx, &org, owner.as_ref(), invitation.as_ref())
            })
            .await
    }

    async fn org(&self, id: &str) -> Result<Option<Org>> {
        let id = id.to_owned();
        self.blocking(move |c| identity::org(&mut **c, &id)).await
    }

    async fn orgs(&self) -> Result<Vec<Org>> {
        self.blocking(|c| identity::orgs(&mut **c)).await
    }

    async fn user(&self, id: &str) -> Result<Option<User>> {
        let id = id.to_owned();
        self.blocking(move |c| identity::user(&mut **c, &id)).await
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<User>> {
        let email = email.to_owned();
        self.blocking(move |c| identity::user_by_email(&mut **c, &email))
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
        self.w
            .write(audit, move |tx| {
                identity::set_password(tx, &user_id, &hash, at)
            })
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
        self.w
            .write(audit, move |tx| identity::add_member(tx, &org, &user, role))
            .await
    }

    async fn invite_member(&self, invitation: Token, audit: AuditEvents) -> Result<()> {
        self.w
            .write(audit, move |tx| {
                identity::insert_invitation(tx, &invitation)
            })
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
        self.w
            .write(audit, move |tx| {
                identity::set_role(tx, &org, &user_id, role)
            })
            .await
    }

    async fn remove_member(&self, org: &str, user_id: &str, audit: AuditEvents) -> Result<()> {
        let (org, user_id) = (org.to_owned(), user_id.to_owned());
        let at = (self.w.clock)();
        self.w
            .write(audit, move |tx| {
                identity::remove_member(tx, &org, &user_id, at)
            })
            .await
    }

    async fn members(&self, org: &str) -> Result<Vec<Member>> {
        let org = org.to_owned();
        self.blocking(move |c| identity::members(&mut **c, &org))
            .await
    }

    async fn memberships(&self, user_id: &str) -> Result<Vec<(String, Role)>> {
        let user_id = user_id.to_owned();
        self.blocking(move |c| identity::memberships(&mut **c, &user_id))
            .await
    }

    async fn create_instance(&self, instance: Instance, audit: AuditEvents) -> Result<()> {
        self.w
            .write(audit, move |tx| identity::create_instance(tx, &instance))
            .await
    }

    async fn instances(&self, org: &str) -> Result<Vec<Instance>> {
        let org = org.to_owned();
        self.blocking(move |c| identity::instances(&mut **c, &org))
            .await
    }

    async fn create_token(&self, token: Token, audit: AuditEvents) -> Result<()> {
        self.w
            .write(audit, move |tx| identity::insert_token(tx, &token))
            .await
    }

    async fn token(&self, id: &str) -> Result<Option<Token>> {
        let id = id.to_owned();
        self.blocking(move |c| identity::token(&mut **c, &id)).await
    }

    async fn personal_tokens(&self, user_id: &str) -> Result<Vec<Token>> {
        let user_id = user_id.to_owned();
        self.blocking(move |c| identity::personal_tokens(&mut **c, &user_id))
            .await
    }

    async fn tokens(
        &self,
        org: &str,
        kind: TokenKind,
        user_id: Option<&str>,
    ) -> Result<Vec<Token>> {
        let (org, user_id) = (org.to_owned(), user_id.map(str::to_owned));
        self.blocking(move |c| identity::tokens(&mut **c, &org, kind, user_id.as_deref()))
            .await
    }

    async fn revoke_token(&self, id: &str, at: Timestamp, audit: AuditEvents) -> Result<()> {
        let id = id.to_owned();
        self.w
            .write(audit, move |tx| identity::revoke_token(tx, &id, at))
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
        self.w
            .write(audit, move |tx| {
                identity::accept_invitation(tx, &id, &acceptance, at)
            })
            .await
    }

    async fn create_session(&self, session: Session, audit: AuditEvents) -> Result<()> {
        self.w
            .write(audit, move |tx| identity::create_session(tx, &session))
            .await
    }

    async fn session(&self, id: &str) -> Result<Option<Session>> {
        let id = id.to_owned();
        self.blocking(move |c| identity::session(&mut **c, &id))
            .await
    }

    async fn touch_session(&self, id: &str, at: Timestamp) -> Result<()> {
        let id = id.to_owned();
        self.w
            .write(Vec::new(), move |tx| identity::touch_session(tx, &id, at))
            .await
    }

    async fn end_session(&self, id: &str, at: Timestamp, audit: AuditEvents) -> Result<()> {
        let id = id.to_owned();
        self.w
            .write(audit, move |tx| identity::end_session(tx, &id, at))
            .await
    }

    async fn end_user_sessions(
        &self,
        user_id: &str,
        except: Option<&str>,
        at: Timestamp,
    ) -> Result<()> {
        let (user_id, except) = (user_id.to_owned(), except.map(str::to_owned));
        self.w
            .write(Vec::new(), move |tx| {
                identity::end_user_sessions(tx, &user_id, except.as_deref(), at)
            })
            .await
    }

    async fn append_signed(&self, org: &str, events: Vec<EventBody>) -> Result<Appends> {
        let queue = self
            .w
            .queues
            .lock()
            .expect("queues lock")
            .entry(org.to_owned())
            .or_default()
            .clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        queue.waiting.lock().expect("queue lock").push((events, tx));
        // The first to find the queue idle starts a task that commits for everyone until it
        // is empty (a task of its own: a caller that goes away does not stop a commit, nor
        // the answers of the others); the others wait for their answer.
        if !queue.busy.swap(true, std::sync::atomic::Ordering::AcqRel) {
            tokio::spawn(self.w.clone().drain(org.to_owned(), queue));
        }
        rx.await
            .map_err(|_| StoreError::Unavailable("the append was dropped".into()))?
    }

    async fn sign_logs(
        &self,
        key: Arc<trail_core::checkpoint::SignerKey>,
        remembered: HashMap<String, (u64, Hash)>,
    ) -> Result<Vec<(String, String)>> {
        let ctx = self.w.append_context();
        on_pool(&self.w.writes, move |conn| {
            log::sign_logs(conn, &ctx, key, remembered)
        })
        .await
    }

    async fn query(&self, org: &str, q: &EventQuery) -> Result<EventPage> {
        let (org, q) = (org.to_owned(), q.clone());
        self.blocking(move |c| read::query(c, &org, &q)).await
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
        self.blocking(move |c| read::histogram(c, &org, &filter, since, until, buckets))
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
        self.blocking(move |c| read::export(c, &org, &filter, from, limit, scan))
            .await
    }

    async fn seq_received_since(&self, org: &str, at: Timestamp) -> Result<u64> {
        let org = org.to_owned();
        self.blocking(move |c| read::seq_received_since(c, &org, at))
            .await
    }

    async fn events_from(&self, org: &str, from: u64, limit: usize) -> Result<Vec<StoredEvent>> {
        let org = org.to_owned();
        self.blocking(move |c| read::events_from(c, &org, from, limit))
            .await
    }

    async fn leaves_for_audit(
        &self,
        org: &str,
        from: u64,
        limit: usize,
    ) -> Result<crate::AuditRows> {
        let org = org.to_owned();
        self.blocking(move |c| read::leaves_for_audit(c, &org, from, limit))
            .await
    }

    async fn log_size(&self, org: &str) -> Result<u64> {
        let org = org.to_owned();
        self.blocking(move |c| read::log_size(c, &org)).await
    }

    fn watch_log(&self, org: &str) -> watch::Receiver<u64> {
        self.w.logs.subscribe(org)
    }

    async fn api_call_minutes(
        &self,
        org: &str,
        since: Timestamp,
        until: Timestamp,
        per_minutes: i64,
    ) -> Result<trail_core::perf::Minutes> {
        let org = org.to_owned();
        self.blocking(move |c| read::api_call_minutes(c, &org, since, until, per_minutes))
            .await
    }

    async fn tree_root(&self, org: &str, size: u64) -> Result<[u8; 32]> {
        let org = org.to_owned();
        self.blocking(move |c| log::Tree::open(&mut **c, &org, size)?.root())
            .await
    }

    async fn inclusion_proof(&self, org: &str, seq: u64, size: u64) -> Result<Vec<[u8; 32]>> {
        let org = org.to_owned();
        self.blocking(move |c| log::Tree::open(&mut **c, &org, size)?.inclusion(seq))
            .await
    }

    async fn consistency_proof(&self, org: &str, from: u64, to: u64) -> Result<Vec<[u8; 32]>> {
        let org = org.to_owned();
        self.blocking(move |c| log::Tree::open(&mut **c, &org, to)?.consistency(from))
            .await
    }

    async fn tree_frontier(&self, org: &str, size: u64) -> Result<Vec<[u8; 32]>> {
        let org = org.to_owned();
        self.blocking(move |c| log::Tree::open(&mut **c, &org, size)?.frontier())
            .await
    }

    async fn extend_tiles(&self, org: &str, signed: u64, size: u64) -> Result<()> {
        let org = org.to_owned();
        self.w
            .write(Vec::new(), move |tx| {
                log::extend_tiles(tx, &org, signed, size)
            })
            .await
    }

    async fn add_checkpoint(&self, checkpoint: SignedCheckpoint) -> Result<()> {
        self.w
            .write(Vec::new(), move |tx| log::add_checkpoint(tx, &checkpoint))
            .await
    }

    async fn checkpoint(&self, org: &str, size: Option<u64>) -> Result<Option<SignedCheckpoint>> {
        let org = org.to_owned();
        self.blocking(move |c| log::checkpoint(&mut **c, &org, size))
            .await
    }

    async fn checkpoint_at_most(&self, org: &str, size: u64) -> Result<Option<SignedCheckpoint>> {
        let org = org.to_owned();
        self.blocking(move |c| log::checkpoint_at_most(&mut **c, &org, size))
            .await
    }

    async fn checkpoints(
        &self,
        org: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<SignedCheckpoint>> {
        let org = org.to_owned();
        self.blocking(move |c| log::checkpoints(&mut **c, &org, after, limit))
            .await
    }

    async fn set_setting(&self, key: &str, value: &str, audit: AuditEvents) -> Result<()> {
        let (key, value) = (key.to_owned(), value.to_owned());
        self.w
            .write(audit, move |tx| identity::set_setting(tx, &key, &value))
            .await
    }

    async fn retention(&self, org: &str) -> Result<crate::Retention> {
        let org = org.to_owned();
        self.blocking(move |c| identity::retention(&mut **c, &org))
            .await
    }

    async fn set_retention(
        &self,
        org: &str,
        days: Option<Option<u32>>,
        legal_hold: Option<bool>,
        audit: AuditEvents,
    ) -> Result<crate::Retention> {
        let org = org.to_owned();
        self.w
            .write(audit, move |tx| {
                identity::set_retention(tx, &org, days, legal_hold)
            })
            .await
    }

    async fn prune(&self, org: &str, below: u64, audit: AuditEvents) -> Result<crate::Pruned> {
        let org = org.to_owned();
        self.w
            .write(audit, move |tx| log::prune(tx, &org, below))
            .await
    }

    async fn setting(&self, key: &str) -> Result<Option<String>> {
        let key = key.to_owned();
        self.blocking(move |c| identity::setting(&mut **c, &key))
            .await
    }

    async fn init_setting(&self, key: &str, value: &str) -> Result<String> {
        let (key, value) = (key.to_owned(), value.to_owned());
        self.w
            .write(Vec::new(), move |tx| {
                identity::init_setting(tx, &key, &value)
            })
            .await
    }

    async fn identity(&self) -> Result<crate::Identity> {
        // One snapshot of all of it.
        self.blocking(|c| {
            let mut tx = c
                .build_transaction()
                .isolation_level(postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .map_err(unavailable)?;
            identity::snapshot(&mut tx)
        })
        .await
    }

    async fn tiles_below(&self, org: &str, below: u64) -> Result<Vec<(u32, u64, [u8; 32])>> {
        let org = org.to_owned();
        self.blocking(move |c| identity::tiles_below(&mut **c, &org, below))
            .await
    }

    async fn restore_identity(&self, identity: crate::Identity) -> Result<()> {
        self.w
            .write(Vec::new(), move |tx| identity::restore(tx, &identity))
            .await
    }

    async fn import_events(
        &self,
        org: &str,
        tiles: Vec<(u32, u64, [u8; 32])>,
        events: Vec<StoredEvent>,
        checkpoints: Vec<SignedCheckpoint>,
    ) -> Result<()> {
        let org = org.to_owned();
        self.w
            .transact(move |tx, _, grown| {
                log::import(tx, grown, &org, &tiles, &events, &checkpoints)
            })
            .await
    }
}
