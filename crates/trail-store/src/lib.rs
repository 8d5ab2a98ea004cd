//! Trail's storage.
//!
//! One [`Store`] trait says everything the server needs from storage: orgs, members and
//! credentials, and the append-only event log. Backends implement it and prove it with the
//! same [`conformance`] suite (run by the `store_conformance_tests!` macro in each backend's
//! tests).
//!
//! Architecture invariant: this crate knows nothing of HTTP or of how credentials are sent.
//! It assigns seqs and computes leaf hashes with `trail-core` and nothing else; backend
//! error codes become [`StoreError`]s inside the backend.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::watch;
use trail_core::query::{Cursor, Filter};
use trail_core::scope::{Role, Scope};
use trail_core::{Event, EventBody, Timestamp};

#[cfg(feature = "conformance")]
pub mod conformance;
pub mod copy;
mod fault;
mod histogram;
pub mod postgres;
pub mod sqlite;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Where a store is: the one place a store is chosen by its URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// `sqlite:DIR`: the embedded store in a data directory.
    Sqlite(std::path::PathBuf),
    /// `postgres://USER@HOST/DATABASE` (or `postgresql://`): a PostgreSQL database, which
    /// several servers may share.
    Postgres(String),
}

impl Location {
    /// The store `database` names, or the embedded one in `data_dir` when none is named.
    pub fn of(database: Option<&str>, data_dir: &std::path::Path) -> Result<Location, String> {
        let Some(url) = database else {
            return Ok(Location::Sqlite(data_dir.to_owned()));
        };
        if let Some(dir) = url.strip_prefix("sqlite:") {
            if dir.is_empty() {
                return Err("sqlite: needs a directory (sqlite:DIR)".into());
            }
            return Ok(Location::Sqlite(dir.into()));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            url.parse::<::postgres::Config>()
                .map_err(|e| format!("{}: {e}", Self::redacted(url)))?;
            return Ok(Location::Postgres(url.to_owned()));
        }
        Err(format!(
            "{:?} is not a store: give sqlite:DIR or postgres://USER@HOST/DATABASE",
            Self::redacted(url)
        ))
    }

    /// Opens the store (creating or migrating it as needed).
    pub async fn open(&self) -> Result<Arc<dyn Store>> {
        Ok(match self {
            Location::Sqlite(dir) => Arc::new(SqliteStore::open(dir)?),
            Location::Postgres(url) => Arc::new(PgStore::open(url).await?),
        })
    }

    /// Opens a store that exists, for reading, changing nothing of it: SQLite read-only
    /// (without the directory's lock), PostgreSQL without migrating.
    pub async fn open_existing(&self) -> Result<Arc<dyn Store>> {
        Ok(match self {
            Location::Sqlite(dir) => Arc::new(SqliteStore::open_read_only(dir)?),
            Location::Postgres(url) => Arc::new(PgStore::open_existing(url).await?),
        })
    }

    /// The schema version a store is at once opened: what this build writes.
    pub fn schema_version(&self) -> i64 {
        match self {
            Location::Sqlite(_) => sqlite::SCHEMA_VERSION,
            Location::Postgres(_) => postgres::migrate::SCHEMA_VERSION,
        }
    }

    /// What to show of it: the directory, or the database without its password.
    pub fn describe(&self) -> String {
        match self {
            Location::Sqlite(dir) => format!("{} (SQLite)", dir.display()),
            Location::Postgres(url) => format!("{} (PostgreSQL)", Self::redacted(url)),
        }
    }

    /// A URL with any password in it (`user:password@`, `password=`) replaced by `***`.
    fn redacted(url: &str) -> String {
        let mut out = match url.split_once("://") {
            Some((scheme, rest)) => match rest.rsplit_once('@') {
                Some((auth, host)) => match auth.split_once(':') {
                    Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
                    None => url.to_owned(),
                },
                None => url.to_owned(),
            },
            None => url.to_owned(),
        };
        if let Some(at) = out.find("password=") {
            let from = at + "password=".len();
            let to = out[from..].find('&').map_or(out.len(), |i| from + i);
            out.replace_range(from..to, "***");
        }
        out
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("org {0:?} does not exist")]
    UnknownOrg(String),
    #[error("{0} already exists")]
    Conflict(String),
    #[error("{0} does not exist")]
    NotFound(String),
    /// The backend could not do the work now (I/O error, full disk, shut down).
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The write lost a race with another writer of the same database (a serialization
    /// failure or a deadlock) and nothing of it was committed: trying it again may succeed.
    /// A backend retries these itself a few times before it answers this.
    #[error("storage contended: {0}")]
    Contended(String),
    /// The org's log holds 2^40 events, the most a log can.
    #[error("the log of org {0:?} is full")]
    LogFull(String),
    /// A read ran past its deadline and was stopped: the reader is free again, and a
    /// narrower query (a shorter window, fewer terms) or a later retry may succeed.
    #[error("the query ran past its {}-second deadline; narrow it (a shorter window, fewer terms) or retry later", .0.as_secs_f64())]
    TimedOut(std::time::Duration),
    /// What is stored cannot be read back as it was written.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The store will not do this (a prune under legal hold, or past what is signed).
    #[error("{0}")]
    Refused(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Org {
    pub id: String,
    pub name: String,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub email: String,
    /// argon2id PHC string; `None`: the user cannot sign in to the console.
    pub password_hash: Option<String>,
    /// Holds `orgs:admin`: creates orgs, mints break-glass tokens.
    pub platform_admin: bool,
    pub created_at: Timestamp,
}

/// A member of an org.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub user_id: String,
    pub email: String,
    pub role: Role,
}

/// How an invitation is accepted, once the server has checked the invitee.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acceptance {
    /// No account has the invitation's email: `User` (with the password the invitee chose) is
    /// created and joins the org.
    NewAccount(User),
    /// The account with the invitation's email joins the org: the invitee gave its password.
    Account { user_id: String },
    /// An invitation from before invitations carried a role, made out to the account it
    /// created (already a member): that account gets this first password.
    FirstPassword(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub org: String,
    pub id: String,
    pub name: String,
    pub kind: String,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Pat,
    ApiKey,
    BreakGlass,
    /// An invitation to join an org ([`Token::org`]) as [`Token::role`], made out to an
    /// email ([`Token::owner`]). Accepting it makes that email's account a member: a new
    /// account, whose password the invitee chooses, or an existing one, whose password the
    /// invitee must give. `revoked_at` is when it was used (or withdrawn). It authenticates
    /// nothing.
    Invitation,
}

impl TokenKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            TokenKind::Pat => "pat",
            TokenKind::ApiKey => "api_key",
            TokenKind::BreakGlass => "break_glass",
            TokenKind::Invitation => "invitation",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        [
            TokenKind::Pat,
            TokenKind::ApiKey,
            TokenKind::BreakGlass,
            TokenKind::Invitation,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// A credential as stored: never the secret, only its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub id: String,
    pub kind: TokenKind,
    pub org: String,
    /// Who the credential acts as (a member's email, or the key's name).
    pub owner: String,
    /// The user behind a PAT or a break-glass token.
    pub user_id: Option<String>,
    pub name: String,
    /// What it is for; a break-glass token's reason.
    pub description: String,
    pub scopes: Vec<Scope>,
    /// Restricted to this instance's events.
    pub instance: Option<String>,
    pub secret_hash: [u8; 32],
    /// The actor that created it.
    pub created_by: String,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
    /// The orgs a personal access token acts on ([`Reach::Own`] for every other kind).
    pub reach: Reach,
    /// Made by signing in with a password (`POST /v1/login`): revoked when that password
    /// changes, like the user's sessions.
    pub from_password: bool,
    /// An invitation's role: what the invitee becomes in [`Token::org`] by accepting it.
    /// `None` for every other kind, and for an invitation stored before invitations carried
    /// their role (one that set the first password of the account it created, already a
    /// member).
    pub role: Option<Role>,
    /// An API key's maker: the credential (a token's or a console session's id) it was made
    /// with. A key never holds more than that credential's holder does today (see the
    /// server's `auth::token_caller`). `None` for keys made before this was kept.
    pub made_with: Option<String>,
}

/// The orgs a personal access token acts on. In each, it holds its scopes as far as its
/// user's role there grants them, decided at each call.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Reach {
    /// Only the org it was made in ([`Token::org`]).
    #[default]
    Own,
    /// These orgs (the org it was made in among them).
    Orgs(Vec<String>),
    /// Every org its user belongs to, now or later.
    All,
}

impl Reach {
    /// Whether a token made in `home` with this reach may act on `org`.
    pub fn covers(&self, home: &str, org: &str) -> bool {
        match self {
            Reach::Own => home == org,
            Reach::Orgs(orgs) => orgs.iter().any(|o| o == org),
            Reach::All => true,
        }
    }
}

/// A console session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: String,
    pub user_id: String,
    pub secret_hash: [u8; 32],
    pub created_at: Timestamp,
    pub last_seen_at: Timestamp,
    pub expires_at: Timestamp,
    pub ended_at: Option<Timestamp>,
    /// A session signed in with a personal access token holds what that token holds, and
    /// ends when it does; `None` for a session signed in with a password.
    pub token_id: Option<String>,
}

/// What an empty store is seeded with on first start, in one transaction. The org becomes
/// the platform org, where platform-level calls are recorded.
#[derive(Debug, Clone)]
pub struct Bootstrap {
    pub org: Org,
    pub owner: User,
    pub token: Token,
}

/// A signed checkpoint of an org's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    pub org: String,
    pub size: u64,
    pub root: [u8; 32],
    /// The signed note, as served.
    pub note: String,
    pub created_at: Timestamp,
}

/// Rows of an org's log for an audit: each seq, and its leaf recomputed from its content
/// (with the hash stored beside it) or why the row cannot be read.
pub type AuditRows = Vec<(u64, std::result::Result<trail_core::verify::Leaf, String>)>;

/// An org's retention: how long its events are kept, whether pruning is held, and how far
/// its log has been pruned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Days an event is kept after its week's archive is stored; `None`: the default.
    pub days: Option<u32>,
    /// Legal hold: nothing is pruned while it is on.
    pub legal_hold: bool,
    /// Seqs below this were pruned (0: none).
    pub pruned_below: u64,
}

/// What one pruning step removed: seqs `from..to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub from: u64,
    pub to: u64,
}

/// Where a store takes the time of receipt from: the system clock, or (for tests of what
/// happens over weeks) one the caller controls.
pub type Clock = std::sync::Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    std::sync::Arc::new(|| Timestamp::from_system_time(std::time::SystemTime::now()))
}

/// Pruning removes whole tiles of this many seqs, so that every proof about what remains
/// reads stored tiles, never a pruned leaf.
pub const PRUNE_ALIGN: u64 = 256;

/// Events to append in the same transaction as a change, so that no change exists without
/// its record: `(org, event)`.
pub type AuditEvents = Vec<(String, EventBody)>;

/// What became of one appended event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Stored now.
    Created,
    /// The org already holds this client id for the same event (a retry): nothing was
    /// written, and the seq and hash are the earlier event's.
    Duplicate,
    /// The org already holds this client id for a different event: nothing was written, and
    /// the seq and hash are the earlier event's.
    Conflict,
}

/// The outcome of appending one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    pub id: String,
    pub seq: u64,
    pub hash: [u8; 32],
    pub received_at: Timestamp,
    pub outcome: Outcome,
}

/// What one append stored, and the signed checkpoint that covers it.
#[derive(Debug, Clone)]
pub struct Appends {
    /// One per event, in order.
    pub items: Vec<Appended>,
    /// The log's newest checkpoint, signed in the transaction that stored the events (or
    /// before it, if they were all stored already); `None` if the store does not sign its
    /// logs ([`Store::sign_logs`]) or refused to sign this one.
    pub checkpoint: Option<SignedCheckpoint>,
}

/// An event as stored, with the leaf hash that was computed when it was accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub event: Event,
    pub hash: [u8; 32],
}

#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    pub filter: Filter,
    /// Start after this position (the `next` of the previous page).
    pub cursor: Option<Cursor>,
    pub limit: usize,
}

#[derive(Debug, Clone, Default)]
pub struct EventPage {
    pub items: Vec<StoredEvent>,
    /// Where the next page starts, when there may be one.
    pub next: Option<Cursor>,
}

/// One page of an export ([`Store::export`]): an org's events in seq order, read in one
/// snapshot of the store together with the checkpoint that covers them.
#[derive(Debug, Clone, Default)]
pub struct ExportPage {
    /// The events that pass the filter, oldest first.
    pub items: Vec<StoredEvent>,
    /// Every seq below this one has been read (whether or not it passed the filter): the
    /// next page starts here.
    pub next: u64,
    /// The time of receipt of the last seq read (`next - 1`), if any. Times of receipt never
    /// go down along the seqs, so no event at `next` or after, stored or still to come, was
    /// received earlier.
    pub following: Option<Timestamp>,
    /// The log's newest signed checkpoint in the same snapshot; `next` never passes its size,
    /// so it covers every event of the page. `None` if no checkpoint exists (the page is then
    /// empty: only signed events are exported).
    pub checkpoint: Option<SignedCheckpoint>,
}

/// Who is waiting for which org's log to grow: [`Store::watch_log`]'s receivers, and what a
/// backend tells after each commit ([`LogWatch::grew`]).
#[derive(Debug, Default)]
pub struct LogWatch {
    orgs: Mutex<HashMap<String, watch::Sender<u64>>>,
}

impl LogWatch {
    /// A receiver marked changed whenever `org`'s log grows.
    pub fn subscribe(&self, org: &str) -> watch::Receiver<u64> {
        let mut orgs = self.orgs.lock().expect("log watch lock");
        match orgs.get(org) {
            Some(tx) => tx.subscribe(),
            None => {
                let (tx, rx) = watch::channel(0);
                orgs.insert(org.to_owned(), tx);
                rx
            }
        }
    }

    /// `org`'s log has `size` events, committed: wakes its readers, unless they were told
    /// of that size already (a server hears of its own appends again from the database).
    pub fn grew(&self, org: &str, size: u64) {
        let mut orgs = self.orgs.lock().expect("log watch lock");
        if let Some(tx) = orgs.get(org) {
            if tx.receiver_count() == 0 {
                // Nobody waits for this log any more: forget it.
                orgs.remove(org);
            } else {
                tx.send_if_modified(|known| {
                    let grew = size > *known;
                    *known = (*known).max(size);
                    grew
                });
            }
        }
    }
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Whether the store can serve reads and writes now.
    async fn ping(&self) -> Result<()>;
    /// Whether the store is ready: it answers, and writes are not failing. From a write that
    /// fails for a reason that can pass (full disk, I/O error, a busy or changed database)
    /// until the next write commits, this answers `Unavailable` saying why
    /// ("writes are failing: database or disk is full").
    async fn health(&self) -> Result<()>;

    /// Seeds an empty store. Returns `false`, and writes nothing, if any org exists.
    async fn bootstrap(&self, b: Bootstrap) -> Result<bool>;
    /// The org where platform-level calls are recorded (the bootstrap org).
    async fn platform_org(&self) -> Result<Option<String>>;

    /// Creates an org with, if given, its first owner (`owner`, a user made a member at
    /// once: the caller making an org for themselves; created if new) and/or `invitation` (a
    /// [`TokenKind::Invitation`] for the owner to be), in one transaction.
    async fn create_org(
        &self,
        org: Org,
        owner: Option<User>,
        invitation: Option<Token>,
        audit: AuditEvents,
    ) -> Result<()>;
    async fn org(&self, id: &str) -> Result<Option<Org>>;
    async fn orgs(&self) -> Result<Vec<Org>>;

    async fn user(&self, id: &str) -> Result<Option<User>>;
    async fn user_by_email(&self, email: &str) -> Result<Option<User>>;
    /// Sets a user's password; what their old one gave out (their personal access tokens
    /// made by signing in with it) is revoked at `at`, in the same transaction.
    async fn set_password(
        &self,
        user_id: &str,
        hash: String,
        at: Timestamp,
        audit: AuditEvents,
    ) -> Result<()>;

    /// Adds `user` (created if its email is new; otherwise the stored user) to the org.
    async fn add_member(
        &self,
        org: &str,
        user: User,
        role: Role,
        audit: AuditEvents,
    ) -> Result<Member>;
    /// Stores `invitation` (a [`TokenKind::Invitation`] with a role, made out to an email):
    /// nothing else changes until the invitee accepts it. It replaces the email's open
    /// invitations to the org. `Conflict` if the email is already a member.
    async fn invite_member(&self, invitation: Token, audit: AuditEvents) -> Result<()>;
    /// Changes a member's role; refuses to leave the org without an owner.
    async fn set_role(
        &self,
        org: &str,
        user_id: &str,
        role: Role,
        audit: AuditEvents,
    ) -> Result<()>;
    /// Removes a member, withdrawing their open invitation to the org; refuses to leave the
    /// org without an owner.
    async fn remove_member(&self, org: &str, user_id: &str, audit: AuditEvents) -> Result<()>;
    async fn members(&self, org: &str) -> Result<Vec<Member>>;
    /// The orgs a user belongs to, and the role in each, in the order they joined them (the
    /// first is their home org).
    async fn memberships(&self, user_id: &str) -> Result<Vec<(String, Role)>>;

    async fn create_instance(&self, instance: Instance, audit: AuditEvents) -> Result<()>;
    async fn instances(&self, org: &str) -> Result<Vec<Instance>>;

    async fn create_token(&self, token: Token, audit: AuditEvents) -> Result<()>;
    async fn token(&self, id: &str) -> Result<Option<Token>>;
    /// A user's personal access tokens, in every org, newest first.
    async fn personal_tokens(&self, user_id: &str) -> Result<Vec<Token>>;
    /// An org's credentials of one kind, newest first; PATs of one user if `user_id` is given.
    async fn tokens(&self, org: &str, kind: TokenKind, user_id: Option<&str>)
    -> Result<Vec<Token>>;
    /// Revokes a credential at `at`; revoking a revoked one changes nothing.
    async fn revoke_token(&self, id: &str, at: Timestamp, audit: AuditEvents) -> Result<()>;

    /// Uses open invitation `id` at `at`, once: see [`Acceptance`]. Answers the membership it
    /// made (or, for an invitation from before invitations carried a role, the one it
    /// completed). `NotFound` if there is no such open invitation (unknown, used, withdrawn or
    /// expired); `Conflict` if the account is not as the acceptance says (it exists, or has a
    /// password, or is already a member).
    async fn accept_invitation(
        &self,
        id: &str,
        acceptance: Acceptance,
        at: Timestamp,
        audit: AuditEvents,
    ) -> Result<Member>;

    async fn create_session(&self, session: Session, audit: AuditEvents) -> Result<()>;
    async fn session(&self, id: &str) -> Result<Option<Session>>;
    async fn touch_session(&self, id: &str, at: Timestamp) -> Result<()>;
    async fn end_session(&self, id: &str, at: Timestamp, audit: AuditEvents) -> Result<()>;
    /// Ends every session of a user but `except`.
    async fn end_user_sessions(
        &self,
        user_id: &str,
        except: Option<&str>,
        at: Timestamp,
    ) -> Result<()>;

    /// Appends events to an org's log, durably: when this returns `Ok`, they are on disk.
    /// Each gets the next seq of its org (no gaps), its time of receipt and its leaf hash;
    /// an event whose client id the org already holds is not stored again (see [`Outcome`]).
    async fn append(&self, org: &str, events: Vec<EventBody>) -> Result<Vec<Appended>> {
        Ok(self.append_signed(org, events).await?.items)
    }

    /// [`Store::append`], with the signed checkpoint that covers the events.
    async fn append_signed(&self, org: &str, events: Vec<EventBody>) -> Result<Appends>;

    /// Zero merge delay: from now on the store signs a checkpoint of every log a transaction
    /// appends to, with `key`, in that transaction. It first checks each log (its newest
    /// checkpoint must open with the key, be no older than the `remembered` head of its org
    /// (size and root, kept outside the store), and be the root of the stored leaves) and
    /// signs the events no checkpoint covers yet. Returns the logs it refuses to sign (org,
    /// why), which it also logs and counts.
    async fn sign_logs(
        &self,
        key: Arc<trail_core::checkpoint::SignerKey>,
        remembered: HashMap<String, (u64, [u8; 32])>,
    ) -> Result<Vec<(String, String)>>;

    /// Events newest first (by timestamp, then seq) that pass the filter, after the cursor.
    async fn query(&self, org: &str, q: &EventQuery) -> Result<EventPage>;

    /// How many events that pass `filter` fall in each slice of `[since, until)` (by their
    /// timestamp; the filter's own window narrows it further), the slices as
    /// [`trail_core::histogram::Layout::new`] cuts the window into at most `buckets`.
    /// Without terms, whole minutes are counted from per-minute tallies.
    async fn histogram(
        &self,
        org: &str,
        filter: &Filter,
        since: Timestamp,
        until: Timestamp,
        buckets: usize,
    ) -> Result<Vec<u64>>;

    /// The SIEM export's read: events from seq `from` on that pass `filter`, oldest first,
    /// at most `limit`, reading at most `scan` seqs; only events a signed checkpoint covers,
    /// and that checkpoint, in one snapshot ([`ExportPage`]).
    async fn export(
        &self,
        org: &str,
        filter: &Filter,
        from: u64,
        limit: usize,
        scan: u64,
    ) -> Result<ExportPage>;

    /// The first seq received at or after `at` (the log's size if none was): where an export
    /// that starts at a time begins.
    async fn seq_received_since(&self, org: &str, at: Timestamp) -> Result<u64>;

    /// Events in seq order from `from`, at most `limit`.
    async fn events_from(&self, org: &str, from: u64, limit: usize) -> Result<Vec<StoredEvent>>;

    /// The leaves of the events in seq order from `from`, at most `limit`, each recomputed
    /// from the event's content as `trail_core::verify::Leaf::of` would (the event is built
    /// only when it does not give its stored hash), each row read on its own: one that no
    /// longer reads as an event comes back as its seq and why, so an audit can name it and
    /// go on.
    async fn leaves_for_audit(&self, org: &str, from: u64, limit: usize) -> Result<AuditRows>;

    /// The number of events in the org's log (the next seq).
    async fn log_size(&self, org: &str) -> Result<u64>;

    /// A receiver that is marked changed after every commit that appends to the org's log
    /// (its value: the log's size then), so a reader waits for new events instead of polling.
    /// A wake-up says only "read again": the reader reads by seq from where it is. Subscribe
    /// before the first read, and mark the value seen before each read, and no commit is
    /// missed. Only commits made through this store are seen.
    fn watch_log(&self, org: &str) -> watch::Receiver<u64>;

    /// The recorded API calls (events with a request block) in the minutes of
    /// `[since, until)` ([`trail_core::perf::window_minutes`]), by route template, tallied
    /// per minute of their timestamp, each route's entries in order. Minutes are added up
    /// into slices of `per_minutes` from the window's first (each under the minute its slice
    /// starts at), except each route's first and last minute with calls, which are kept as
    /// they are. Kept as events are appended, so a window costs its minutes, not its calls,
    /// and a route holds at most its slices and two more entries.
    async fn api_call_minutes(
        &self,
        org: &str,
        since: Timestamp,
        until: Timestamp,
        per_minutes: i64,
    ) -> Result<trail_core::perf::Minutes>;

    /// The Merkle root of the org's first `size` events, from their stored leaf hashes.
    async fn tree_root(&self, org: &str, size: u64) -> Result<[u8; 32]>;
    /// The inclusion proof of `seq` in the tree of `size` (seq < size <= log size).
    async fn inclusion_proof(&self, org: &str, seq: u64, size: u64) -> Result<Vec<[u8; 32]>>;
    /// The consistency proof between the trees of `from` and `to` (from <= to <= log size).
    async fn consistency_proof(&self, org: &str, from: u64, to: u64) -> Result<Vec<[u8; 32]>>;
    /// Stores the tiles that the first `size` events complete, so proofs stay cheap. Tiles
    /// past the first `signed` events are computed from below, and a stored one that
    /// disagrees is refused (`Corrupt`): a planted tile never reaches a signed root.
    /// Only for a store that does not sign its logs itself.
    async fn extend_tiles(&self, org: &str, signed: u64, size: u64) -> Result<()>;

    /// Stores a checkpoint signed elsewhere; only for a store that does not sign its logs
    /// itself.
    async fn add_checkpoint(&self, checkpoint: SignedCheckpoint) -> Result<()>;
    /// The newest checkpoint, or the one of exactly `size`.
    async fn checkpoint(&self, org: &str, size: Option<u64>) -> Result<Option<SignedCheckpoint>>;
    /// Sets a platform setting, with `audit` in the same transaction.
    async fn set_setting(&self, key: &str, value: &str, audit: AuditEvents) -> Result<()>;
    /// The org's retention settings and how far its log was pruned.
    async fn retention(&self, org: &str) -> Result<Retention>;
    /// Sets the org's retention days (`Some(None)`: back to the default) and legal hold,
    /// with `audit` in the same transaction.
    async fn set_retention(
        &self,
        org: &str,
        days: Option<Option<u32>>,
        legal_hold: Option<bool>,
        audit: AuditEvents,
    ) -> Result<Retention>;
    /// Deletes the org's events below `below`, with `audit` in the same transaction: the one
    /// path that deletes events. `below` must be a multiple of [`PRUNE_ALIGN`] covered by a
    /// signed checkpoint; refused (`Conflict`) under legal hold. Seqs are never reused, and
    /// proofs about the events that remain still hold.
    async fn prune(&self, org: &str, below: u64, audit: AuditEvents) -> Result<Pruned>;
    /// The newest checkpoint of at most `size` events.
    async fn checkpoint_at_most(&self, org: &str, size: u64) -> Result<Option<SignedCheckpoint>>;
    /// The right edge of the tree of the org's first `size` events: its complete subtrees,
    /// largest first (`trail_core::merkle::RootBuilder::frontier`).
    async fn tree_frontier(&self, org: &str, size: u64) -> Result<Vec<[u8; 32]>>;
    /// Checkpoints of more than `after` events, oldest first, at most `limit`.
    async fn checkpoints(
        &self,
        org: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<SignedCheckpoint>>;

    /// Reads or writes a setting of the store (such as the log's name), set once.
    async fn setting(&self, key: &str) -> Result<Option<String>>;
    /// Sets a setting if it is not set yet; returns the value in force.
    async fn init_setting(&self, key: &str, value: &str) -> Result<String>;

    // A copy to another store ([`copy`]): what this one holds, read out; and what the other
    // takes in. A backend that does not take part answers `Refused`.

    /// Everything but the logs and the console sessions.
    async fn identity(&self) -> Result<Identity> {
        Err(StoreError::Refused(
            "this store cannot be copied from".into(),
        ))
    }
    /// The stored tiles of the org's first `below` seqs (level, index, hash): what proofs
    /// about a pruned prefix are made of.
    async fn tiles_below(&self, _org: &str, _below: u64) -> Result<Vec<(u32, u64, [u8; 32])>> {
        Err(StoreError::Refused(
            "this store cannot be copied from".into(),
        ))
    }
    /// Takes in `identity` (each org with an empty log that starts where the copied one
    /// was pruned to); only into a store without orgs.
    async fn restore_identity(&self, _identity: Identity) -> Result<()> {
        Err(StoreError::Refused(
            "this store cannot be copied into".into(),
        ))
    }
    /// Takes in the next events of the org's log as another store sealed them (the first at
    /// the log's size; each must hash to its stored leaf), with the stored `tiles` of a
    /// pruned prefix (first call only) and the signed `checkpoints` of sizes up to the new
    /// size, in one transaction; stores the tiles the events complete and their tallies.
    /// Signs nothing.
    async fn import_events(
        &self,
        _org: &str,
        _tiles: Vec<(u32, u64, [u8; 32])>,
        _events: Vec<StoredEvent>,
        _checkpoints: Vec<SignedCheckpoint>,
    ) -> Result<()> {
        Err(StoreError::Refused(
            "this store cannot be copied into".into(),
        ))
    }
}

/// What a store holds besides its logs and console sessions (see [`Store::identity`]), in
/// the order it was made.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// The platform's settings (log name, verifier key, platform org, retention limit).
    pub settings: Vec<(String, String)>,
    /// Orgs in the order they were made, each with its retention and prune point.
    pub orgs: Vec<(Org, Retention)>,
    pub users: Vec<User>,
    /// (org, user id, role), in the order members joined (a user's first org is their home).
    pub members: Vec<(String, String, Role)>,
    pub instances: Vec<Instance>,
    /// Every credential and invitation, revoked ones included, oldest first.
    pub tokens: Vec<Token>,
}
