//! The writer thread and its group commit.
//!
//! Every write goes through one thread that owns the read-write connection. Appends that
//! queue up while a commit is in flight are committed together, in one transaction and one
//! WAL sync, and each caller is answered only after that sync: durability at the cost of one
//! fsync per group, not per request. A request for an unknown org is refused before it writes
//! anything, so it does not fail the others in its group.

use std::collections::HashMap;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use tokio::sync::{mpsc, oneshot};
use trail_core::scope::{Role, Scope};
use trail_core::{Event, EventBody, Timestamp, canonical};

use trail_core::checkpoint::SignerKey;
use trail_core::merkle::{Hash, RootBuilder};

use super::signer::{self, Opened, Signer};
use super::{SEQ_BITS, SEQ_MASK, org_id, row, unavailable};
use crate::fault::WriteFault;
use crate::{
    Acceptance, Appended, Appends, AuditEvents, Bootstrap, Instance, LogWatch, Member, Org,
    Outcome, Reach, Result, Session, SignedCheckpoint, StoreError, Token, TokenKind, User,
};

/// The writer thread's name (as `top -H` and `/proc/PID/task/*/comm` show it: at most 15
/// bytes).
pub const WRITER_THREAD: &str = "trail-writer";

/// At most this many events go into one group commit.
const MAX_GROUP_EVENTS: usize = 50_000;
const QUEUE: usize = 4096;
/// Dictionary ids the writer keeps at hand; the rest are looked up.
const DICT_CACHE: usize = 100_000;

type Reply<T> = oneshot::Sender<Result<T>>;

/// What one request of a group stored: its org's id, and each event's outcome.
type OrgAppends = (i64, Vec<Appended>);

/// One caller's appends waiting in a group: the org, the events, where to answer.
type Queued = (String, Vec<EventBody>, Reply<Appends>);

enum Job {
    Append {
        org: String,
        events: Vec<EventBody>,
        reply: Reply<Appends>,
    },
    Exec(Box<dyn FnOnce(&mut WriterState) + Send>),
}

/// How long readiness's probe waits for another connection's write lock: a locked database
/// is a failure to report at once, not to wait out behind a readiness check.
const PROBE_LOCK_WAIT: Duration = Duration::from_millis(100);
/// The free space a probe wants on the data directory's filesystem before it says writes
/// work again: room for several groups of batches and their WAL.
pub const RESUME_FREE_BYTES: u64 = 16 << 20;

/// The handle the store holds; dropping it stops the thread once its queue is drained, and
/// waits for it to close the database.
pub(crate) struct Writer {
    tx: Option<mpsc::Sender<Job>>,
    thread: Option<thread::JoinHandle<()>>,
    fault: WriteFault,
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The latest time of receipt stored: that of each org's newest event (times of receipt
/// never go down along the seqs). The writer starts from it, so a clock set back across a
/// restart never gives a later seq an earlier time of receipt, which a pull that starts at a
/// time ([`crate::Store::seq_received_since`]) relies on.
fn latest_receipt(conn: &Connection) -> rusqlite::Result<Timestamp> {
    let orgs: Vec<i64> = conn
        .prepare("SELECT id FROM orgs")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut newest = conn.prepare(
        "SELECT ts + rdelta FROM events \
         WHERE k = (SELECT max(k) FROM events WHERE k BETWEEN ?1 AND ?2)",
    )?;
    let mut latest = Timestamp(i64::MIN);
    for org in orgs {
        let base = org << super::SEQ_BITS;
        if let Some(t) = newest
            .query_row([base, base | super::SEQ_MASK], |r| r.get::<_, i64>(0))
            .optional()?
        {
            latest = latest.max(Timestamp(t));
        }
    }
    Ok(latest)
}

impl Writer {
    /// Starts the writer thread on `conn`; after every commit that appends to a log, it
    /// tells `logs`.
    pub fn start(
        conn: Connection,
        logs: Arc<LogWatch>,
        clock: crate::Clock,
        gate: Arc<super::wal::Gate>,
    ) -> Result<Writer> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let pruning = super::guard::Pruning::default();
        super::guard::install(&conn, pruning.clone()).map_err(unavailable)?;
        let fault = WriteFault::default();
        let last_received = latest_receipt(&conn).map_err(super::unavailable)?;
        let state = WriterState {
            conn,
            org_ids: HashMap::new(),
            next_seq: HashMap::new(),
            dict: super::dict::Ids::new(DICT_CACHE),
            last_received,
            fault: fault.clone(),
            pruning,
            logs,
            signer: None,
            clock,
            gate,
        };
        let thread = thread::Builder::new()
            .name(WRITER_THREAD.into())
            .spawn(move || run(state, rx))
            .map_err(|e| StoreError::Unavailable(format!("cannot start the writer: {e}")))?;
        Ok(Writer {
            tx: Some(tx),
            thread: Some(thread),
            fault,
        })
    }

    /// Why writes are failing, as readiness sees it.
    pub fn fault(&self) -> &WriteFault {
        &self.fault
    }

    pub async fn append(&self, org: String, events: Vec<EventBody>) -> Result<Appends> {
        let (reply, rx) = oneshot::channel();
        self.send(Job::Append { org, events, reply }).await?;
        rx.await.map_err(|_| closed())?
    }

    /// Runs `f` on the writer thread, in order with the appends.
    pub async fn exec<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut WriterState) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (reply, rx) = oneshot::channel();
        self.send(Job::Exec(Box::new(move |w| {
            let _ = reply.send(f(w));
        })))
        .await?;
        rx.await.map_err(|_| closed())?
    }

    async fn send(&self, job: Job) -> Result<()> {
        let tx = self.tx.as_ref().ok_or_else(closed)?;
        tx.send(job).await.map_err(|_| closed())
    }
}

fn closed() -> StoreError {
    StoreError::Unavailable("the store's writer has stopped".into())
}

fn run(mut state: WriterState, mut rx: mpsc::Receiver<Job>) {
    let mut group: Vec<Queued> = Vec::new();
    while let Some(job) = rx.blocking_recv() {
        // Held here while the WAL is folded so that it can start over; what arrives
        // meanwhile joins this group.
        let gate = state.gate.clone();
        let _writing = gate.pass();
        let mut next = Some(job);
        let mut events = 0;
        // Take everything already queued: that is the group.
        while let Some(job) = next.take() {
            match job {
                Job::Append {
                    org,
                    events: e,
                    reply,
                } => {
                    events += e.len();
                    group.push((org, e, reply));
                }
                Job::Exec(f) => {
                    state.commit_group(&mut group);
                    f(&mut state);
                }
            }
            if events < MAX_GROUP_EVENTS {
                next = rx.try_recv().ok();
            }
        }
        state.commit_group(&mut group);
    }
}

pub(crate) struct WriterState {
    conn: Connection,
    /// Org ids by slug, as committed.
    org_ids: HashMap<String, i64>,
    /// The next seq of each org, as committed.
    next_seq: HashMap<i64, u64>,
    /// Dictionary ids, as committed: the most recently used.
    dict: super::dict::Ids,
    /// receivedAt never goes backwards, even if the clock does.
    last_received: Timestamp,
    fault: WriteFault,
    /// Set while a prune runs: the one time this connection may delete from the
    /// append-only tables ([`super::guard`]).
    pruning: super::guard::Pruning,
    /// Told the new size of each log a transaction appended to, once it commits.
    logs: Arc<LogWatch>,
    /// Signs every log a transaction appends to, in that transaction, once it has the key.
    signer: Option<Signer>,
    /// Times of receipt come from here.
    clock: crate::Clock,
    /// Passed before each transaction: the WAL's thread may hold the writer there briefly.
    gate: Arc<super::wal::Gate>,
}

/// What one transaction has learnt or changed for the writer's caches; applied only if it
/// commits, so the caches only ever hold committed state.
#[derive(Default)]
struct Pending {
    org_ids: HashMap<String, i64>,
    next_seq: HashMap<i64, u64>,
    dict: HashMap<String, i64>,
    /// The logs this transaction appended to, by org slug: their org id and their size after
    /// it.
    grown: HashMap<String, (i64, u64)>,
    /// The size of each log this transaction appended to before it did, by org id.
    appended_from: HashMap<i64, u64>,
    /// What the events appended add to the per-minute tallies, written before commit.
    tallies: super::minutes::Added,
    /// The trees of the logs this transaction appended to, with its leaves.
    trees: HashMap<i64, RootBuilder>,
    /// The checkpoints this transaction signed (or, when the signer starts, found).
    signed: HashMap<i64, SignedCheckpoint>,
    /// Logs found not fit to sign: their slug and why.
    refused: HashMap<i64, (String, String)>,
}

/// The writer's view of what is committed: read through `pending` first (this transaction's
/// own changes), then the caches, then the database.
struct Caches<'a> {
    org_ids: &'a HashMap<String, i64>,
    next_seq: &'a HashMap<i64, u64>,
    dict: &'a mut super::dict::Ids,
    signer: Option<&'a Signer>,
}

/// Whether a failed write says nothing about the writer's caches: a refusal decided from
/// committed state (unknown org, a duplicate, a missing reference, a full log). Anything else
/// (a collision with state the writer did not expect, a full disk, an I/O error, a busy
/// database) may mean the caches no longer match the database.
fn is_refusal(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::UnknownOrg(_)
            | StoreError::Conflict(_)
            | StoreError::NotFound(_)
            | StoreError::LogFull(_)
            | StoreError::Refused(_)
    )
}

impl WriterState {
    #[cfg(test)]
    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    fn commit_group(&mut self, group: &mut Vec<Queued>) {
        if group.is_empty() {
            return;
        }
        let received_at = self.next_received_at();
        let mut pending = Pending::default();
        let started = Instant::now();
        let result = (|| -> Result<Vec<Result<OrgAppends>>> {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(unavailable)?;
            let mut results = Vec::with_capacity(group.len());
            for (org, events, _) in group.iter_mut() {
                // A request that cannot be appended (unknown org) is refused before it
                // writes anything; a failure once rows are written is an I/O fault, and
                // fails the whole group.
                let events = std::mem::take(events);
                let caches = Caches {
                    org_ids: &self.org_ids,
                    next_seq: &self.next_seq,
                    dict: &mut self.dict,
                    signer: self.signer.as_ref(),
                };
                match append_one(&tx, caches, &mut pending, org, events, received_at) {
                    Ok(appended) => results.push(Ok(appended)),
                    Err(e @ (StoreError::UnknownOrg(_) | StoreError::LogFull(_))) => {
                        results.push(Err(e))
                    }
                    Err(e) => return Err(e),
                }
            }
            finish(&tx, self.signer.as_ref(), &mut pending, received_at)?;
            // Writing the group's pages to the WAL and syncing it: what the device takes,
            // apart from what the writer computes.
            let committing = Instant::now();
            tx.commit().map_err(unavailable)?;
            metrics::histogram!("trail_store_commit_duration_seconds")
                .record(committing.elapsed().as_secs_f64());
            metrics::histogram!("trail_store_group_duration_seconds")
                .record(started.elapsed().as_secs_f64());
            Ok(results)
        })();
        match result {
            Ok(results) => {
                self.apply(pending, received_at);
                let created = results
                    .iter()
                    .flatten()
                    .flat_map(|(_, items)| items)
                    .filter(|a| a.outcome == Outcome::Created)
                    .count();
                metrics::counter!("trail_events_appended_total").increment(created as u64);
                metrics_group(group.len());
                for ((_, _, reply), r) in group.drain(..).zip(results) {
                    // The newest checkpoint of the log covers the request: signed in this
                    // transaction if it appended, else before (its events were there).
                    let _ = reply.send(r.map(|(org_id, items)| {
                        Appends {
                            items,
                            // None for a log refused for signing: its last head does
                            // not cover what was just stored.
                            checkpoint: self
                                .signer
                                .as_ref()
                                .filter(|s| !s.refused.contains_key(&org_id))
                                .and_then(|s| s.heads.get(&org_id).cloned()),
                        }
                    }));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "group commit failed");
                self.failed(&e);
                for (_, _, reply) in group.drain(..) {
                    let _ = reply.send(Err(StoreError::Unavailable(e.to_string())));
                }
            }
        }
    }

    fn next_received_at(&self) -> Timestamp {
        (self.clock)().max(self.last_received)
    }

    /// Runs `f` and appends `audit` in one transaction: the change and its record commit
    /// together or not at all.
    fn in_tx<T>(
        &mut self,
        audit: AuditEvents,
        f: impl FnOnce(&Transaction<'_>) -> Result<T>,
    ) -> Result<T> {
        let received_at = self.next_received_at();
        let mut pending = Pending::default();
        let result = (|| {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(unavailable)?;
            let out = f(&tx)?;
            for (org, event) in audit {
                let caches = Caches {
                    org_ids: &self.org_ids,
                    next_seq: &self.next_seq,
                    dict: &mut self.dict,
                    signer: self.signer.as_ref(),
                };
                append_one(&tx, caches, &mut pending, &org, vec![event], received_at)?;
            }
            finish(&tx, self.signer.as_ref(), &mut pending, received_at)?;
            tx.commit().map_err(unavailable)?;
            Ok(out)
        })();
        match &result {
            Ok(_) => self.apply(pending, received_at),
            Err(e) if is_refusal(e) => {}
            Err(e) => {
                tracing::error!(error = %e, "write failed");
                self.failed(e);
            }
        }
        result
    }

    /// Takes in what a committed transaction assigned; writes work again.
    fn apply(&mut self, pending: Pending, received_at: Timestamp) {
        self.org_ids.extend(pending.org_ids);
        self.next_seq.extend(pending.next_seq);
        for (value, id) in pending.dict {
            self.dict.put(value, id);
        }
        self.last_received = self.last_received.max(received_at);
        self.fault.cleared();
        if let Some(signer) = &mut self.signer {
            signer.trees.extend(pending.trees);
            signer.heads.extend(pending.signed);
            for (org_id, (org, why)) in pending.refused {
                signer::refused(&org, &why);
                signer.refused.insert(org_id, why);
            }
        }
        // Committed: readers of these logs may read the new events now.
        for (org, (_, size)) in pending.grown {
            self.logs.grew(&org, size);
        }
    }

    /// After a write transaction failed for a reason that can pass: forgets everything read
    /// from the database, so the next write reads committed state again instead of repeating
    /// a stale guess (a seq another connection has taken, say), and records why for
    /// readiness until a write commits.
    fn failed(&mut self, e: &StoreError) {
        self.org_ids.clear();
        self.next_seq.clear();
        self.dict.clear();
        if let Some(signer) = &mut self.signer {
            signer.trees.clear();
        }
        let why = match e {
            StoreError::Unavailable(m) => m.clone(),
            other => other.to_string(),
        };
        self.fault.failed(why);
    }

    /// After a fault, tries a small write transaction (one row of `meta`), waiting at most
    /// [`PROBE_LOCK_WAIT`] for another connection's lock. One that commits clears the fault,
    /// so readiness comes back once the disk has room or is writable again, whether or not
    /// anyone writes meanwhile; but not while the data directory's filesystem has less than
    /// [`RESUME_FREE_BYTES`] free: a small write can commit into WAL space already on disk
    /// when a batch cannot, and readiness would come and go each second on a disk that is
    /// still full. Nothing to do without a fault.
    pub fn probe(&mut self) {
        if self.fault.get().is_none() {
            return;
        }
        let tried = (|| -> rusqlite::Result<()> {
            self.conn.busy_timeout(PROBE_LOCK_WAIT)?;
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate);
            let written = tx.and_then(|tx| {
                tx.execute(
                    "INSERT INTO meta (key, value) VALUES ('write_probe', ?1) \
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    [(self.clock)().to_string()],
                )?;
                tx.commit()
            });
            self.conn.busy_timeout(super::BUSY_TIMEOUT)?;
            written
        })();
        if let Err(e) = tried {
            self.failed(&unavailable(e));
            return;
        }
        match self.free_bytes() {
            Some(free) if free < RESUME_FREE_BYTES => {
                self.failed(&StoreError::Unavailable(format!(
                    "{} MiB free on the data directory's filesystem; writes resume at {} MiB",
                    free >> 20,
                    RESUME_FREE_BYTES >> 20
                )))
            }
            _ => self.fault.cleared(),
        }
    }

    /// The space free to this process on the database's filesystem, if it can be read.
    fn free_bytes(&self) -> Option<u64> {
        let path = self.conn.path().filter(|p| !p.is_empty())?;
        let s = rustix::fs::statvfs(path).ok()?;
        Some(s.f_bavail.saturating_mul(s.f_frsize))
    }

    /// From now on, signs a checkpoint of every log a transaction appends to, in that
    /// transaction; first checks every log against its newest checkpoint and `remembered`
    /// heads, and signs the events no checkpoint covers yet. Returns the logs refused (org
    /// slug, why): they are not signed any more.
    pub fn sign_logs(
        &mut self,
        key: Arc<SignerKey>,
        remembered: HashMap<String, (u64, Hash)>,
    ) -> Result<Vec<(String, String)>> {
        let signer = Signer::new(key, remembered);
        let at = self.next_received_at();
        let mut pending = Pending::default();
        let result = (|| {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(unavailable)?;
            let orgs: Vec<(i64, String)> = tx
                .prepare("SELECT id, slug FROM orgs ORDER BY id")
                .and_then(|mut s| {
                    s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                        .collect::<rusqlite::Result<_>>()
                })
                .map_err(unavailable)?;
            for (org_id, org) in orgs {
                match signer.open_log(&tx, org_id, &org)? {
                    Opened::Tree(tree) => {
                        let newest = super::tree::checkpoint(&tx, &org, None)?;
                        let head = match newest {
                            Some(c) if c.size == tree.size() => Some(c),
                            _ if tree.size() == 0 => None,
                            _ => Some(signer.sign(&tx, org_id, &org, &tree, at)?),
                        };
                        if let Some(head) = head {
                            pending.signed.insert(org_id, head);
                        }
                        pending.trees.insert(org_id, tree);
                    }
                    Opened::Refused(why) => {
                        pending.refused.insert(org_id, (org, why));
                    }
                }
            }
            tx.commit().map_err(unavailable)
        })();
        self.signer = Some(signer);
        match result {
            Ok(()) => {
                let refused = pending.refused.values().cloned().collect();
                self.apply(pending, at);
                Ok(refused)
            }
            Err(e) => {
                self.failed(&e);
                Err(e)
            }
        }
    }

    pub fn bootstrap(&mut self, b: &Bootstrap) -> Result<bool> {
        self.in_tx(Vec::new(), |tx| {
            let orgs: i64 = tx
                .query_row("SELECT count(*) FROM orgs", [], |r| r.get(0))
                .map_err(unavailable)?;
            if orgs > 0 {
                return Ok(false);
            }
            insert_org(tx, &b.org)?;
            insert_user(tx, &b.owner)?;
            insert_member(tx, &b.org.id, &b.owner.id, Role::Owner)?;
            insert_token(tx, &b.token)?;
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('platform_org', ?1)",
                [&b.org.id],
            )
            .map_err(unavailable)?;
            Ok(true)
        })
    }

    pub fn create_org(
        &mut self,
        org: &Org,
        owner: Option<User>,
        invitation: Option<Token>,
        audit: AuditEvents,
    ) -> Result<()> {
        self.in_tx(audit, |tx| {
            insert_org(tx, org)?;
            if let Some(owner) = owner {
                let (user, _) = user_or_insert(tx, owner)?;
                insert_member(tx, &org.id, &user.id, Role::Owner)?;
            }
            if let Some(invitation) = invitation {
                insert_invitation(tx, &invitation)?;
            }
            Ok(())
        })
    }

    pub fn set_password(
        &mut self,
        user_id: &str,
        hash: String,
        at: Timestamp,
        audit: AuditEvents,
    ) -> Result<()> {
        self.in_tx(audit, |tx| {
            let n = tx
                .execute(
                    "UPDATE users SET password_hash = ?2 WHERE id = ?1",
                    params![user_id, hash],
                )
                .map_err(unavailable)?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("user {user_id:?}")));
            }
            tx.execute(
                "UPDATE tokens SET revoked_at = ?2 \
                 WHERE user_id = ?1 AND pw = 1 AND revoked_at IS NULL",
                params![user_id, at.micros()],
            )
            .map_err(unavailable)?;
            Ok(())
        })
    }

    pub fn add_member(
        &mut self,
        org: &str,
        user: User,
        role: Role,
        audit: AuditEvents,
    ) -> Result<Member> {
        self.in_tx(audit, |tx| {
            let (user, _) = user_or_insert(tx, user)?;
            insert_member(tx, org, &user.id, role)?;
            Ok(Member {
                user_id: user.id,
                email: user.email,
                role,
            })
        })
    }

    pub fn invite_member(&mut self, invitation: Token, audit: AuditEvents) -> Result<()> {
        self.in_tx(audit, |tx| insert_invitation(tx, &invitation))
    }

    pub fn set_role(
        &mut self,
        org: &str,
        user_id: &str,
        role: Role,
        audit: AuditEvents,
    ) -> Result<()> {
        self.in_tx(audit, |tx| {
            let org_id = org_id(tx, org)?;
            keeps_an_owner(tx, org_id, org, user_id, Some(role))?;
            let n = tx
                .execute(
                    "UPDATE members SET role = ?3 WHERE org = ?1 AND user_id = ?2",
                    params![org_id, user_id, role.as_str()],
                )
                .map_err(unavailable)?;
            if n == 0 {
                return Err(StoreError::NotFound(format!(
                    "member {user_id:?} of org {org:?}"
                )));
            }
            Ok(())
        })
    }

    pub fn remove_member(&mut self, org: &str, user_id: &str, audit: AuditEvents) -> Result<()> {
        self.in_tx(audit, |tx| {
            let org_id = org_id(tx, org)?;
            keeps_an_owner(tx, org_id, org, user_id, None)?;
            let n = tx
                .execute(
                    "DELETE FROM members WHERE org = ?1 AND user_id = ?2",
                    params![org_id, user_id],
                )
                .map_err(unavailable)?;
            if n == 0 {
                return Err(StoreError::NotFound(format!(
                    "member {user_id:?} of org {org:?}"
                )));
            }
            // An invitation to an org one is no longer in is withdrawn with the membership.
            let now = Timestamp::from_system_time(std::time::SystemTime::now());
            tx.execute(
                "UPDATE tokens SET revoked_at = ?3 WHERE kind = 'invitation' AND org = ?1 \
                 AND user_id = ?2 AND revoked_at IS NULL",
                params![org_id, user_id, now.micros()],
            )
            .map_err(unavailable)?;
            Ok(())
        })
    }

    pub fn create_instance(&mut self, i: &Instance, audit: AuditEvents) -> Result<()> {
        self.in_tx(audit, |tx| {
            let org_id = org_id(tx, &i.org)?;
            tx.execute(
                "INSERT INTO instances (org, id, name, kind, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![org_id, i.id, i.name, i.kind, i.created_at.micros()],
            )
            .map_err(|e| constraint(e, || format!("instance {:?} of org {:?}", i.id, i.org)))?;
            Ok(())
        })
    }

    pub fn set_retention(
        &mut self,
        org: &str,
        days: Option<Option<u32>>,
        legal_hold: Option<bool>,
        audit: AuditEvents,
    ) -> Result<crate::Retention> {
        self.in_tx(audit, |tx| {
            let org_id = org_id(tx, org)?;
            if let Some(days) = days {
                tx.execute(
                    "UPDATE orgs SET retention_days = ?2 WHERE id = ?1",
                    params![org_id, days.map(i64::from)],
                )
                .map_err(unavailable)?;
            }
            if let Some(hold) = legal_hold {
                tx.execute(
                    "UPDATE orgs SET legal_hold = ?2 WHERE id = ?1",
                    params![org_id, hold],
                )
                .map_err(unavailable)?;
            }
            super::read::retention(tx, org)
        })
    }

    /// Deletes `org`'s events below `below`, the one delete of them: the writer's connection
    /// may delete from the append-only tables only here ([`super::guard`]), and the permit
    /// the transaction writes and removes is what the delete trigger asks of any other.
    pub fn prune(&mut self, org: &str, below: u64, audit: AuditEvents) -> Result<crate::Pruned> {
        let pruning = self.pruning.clone();
        pruning.during(|| self.prune_now(org, below, audit))
    }

    fn prune_now(&mut self, org: &str, below: u64, audit: AuditEvents) -> Result<crate::Pruned> {
        self.in_tx(audit, |tx| {
            let org_id = org_id(tx, org)?;
            let now = super::read::retention(tx, org)?;
            if now.legal_hold {
                return Err(StoreError::Refused(format!(
                    "org {org:?} is under legal hold: nothing of it is pruned"
                )));
            }
            let signed = super::tree::checkpoint(tx, org, None)?.map_or(0, |c| c.size);
            if !below.is_multiple_of(crate::PRUNE_ALIGN) || below > signed {
                return Err(StoreError::Refused(format!(
                    "cannot prune org {org:?} below seq {below}: a prune stops at a multiple of {} covered by a signed checkpoint ({signed} events)",
                    crate::PRUNE_ALIGN
                )));
            }
            let from = now.pruned_below;
            if below <= from {
                return Ok(crate::Pruned { from, to: from });
            }
            let base = org_id << SEQ_BITS;
            let end = base | below as i64;
            // The per-minute tallies stop counting what goes: exactly for the events'
            // counts; the API-call tallies (whose latency sketches cannot be taken apart)
            // before the oldest minute that remains.
            tx.execute(
                "WITH gone AS (SELECT (CASE WHEN ts >= 0 THEN ts ELSE ts - ?4 + 1 END) / ?4 AS minute, \
                                      count(*) AS n FROM events \
                               WHERE k >= ?2 AND k < ?3 GROUP BY minute) \
                 UPDATE event_minutes SET n = event_minutes.n - gone.n FROM gone \
                 WHERE event_minutes.org = ?1 AND event_minutes.minute = gone.minute",
                params![
                    org_id,
                    base | from as i64,
                    end,
                    trail_core::perf::MINUTE_US
                ],
            )
            .map_err(unavailable)?;
            tx.execute(
                "DELETE FROM event_minutes WHERE org = ?1 AND n <= 0",
                [org_id],
            )
            .map_err(unavailable)?;
            tx.execute(
                "INSERT INTO prune_permit (org, below_k) VALUES (?1, ?2)",
                params![org_id, end],
            )
            .map_err(unavailable)?;
            super::blocks::forget(tx, org_id, from, below).map_err(unavailable)?;
            tx.execute(
                "DELETE FROM events WHERE k >= ?1 AND k < ?2",
                params![base | from as i64, end],
            )
            .map_err(unavailable)?;
            tx.execute("DELETE FROM prune_permit WHERE org = ?1", [org_id])
                .map_err(unavailable)?;
            let size = super::read::size_of(tx, org_id)?;
            let oldest = super::blocks::oldest(tx, org_id, below, size).map_err(unavailable)?;
            tx.execute(
                "DELETE FROM perf_minutes WHERE org = ?1 AND minute < ?2",
                params![
                    org_id,
                    oldest.map_or(i64::MAX, |ts| ts.div_euclid(trail_core::perf::MINUTE_US))
                ],
            )
            .map_err(unavailable)?;
            tx.execute(
                "UPDATE orgs SET pruned_below = ?2 WHERE id = ?1",
                params![org_id, below as i64],
            )
            .map_err(unavailable)?;
            Ok(crate::Pruned { from, to: below })
        })
    }

    pub fn create_token(&mut self, token: &Token, audit: AuditEvents) -> Result<()> {
        self.in_tx(audit, |tx| insert_token(tx, token))
    }

    pub fn revoke_token(&mut self, id: &str, at: Timestamp, audit: AuditEvents) -> Result<()> {
        self.in_tx(audit, |tx| {
            let n = tx
                .execute(
                    "UPDATE tokens SET revoked_at = coalesce(revoked_at, ?2) WHERE id = ?1",
                    params![id, at.micros()],
                )
                .map_err(unavailable)?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("credential {id:?}")));
            }
            Ok(())
        })
    }

    pub fn accept_invitation(
        &mut self,
        id: &str,
        acceptance: Acceptance,
        at: Timestamp,
        audit: AuditEvents,
    ) -> Result<Member> {
        self.in_tx(audit, |tx| {
            let open: Option<(String, String, Option<String>, Option<String>)> = tx
                .query_row(
                    "SELECT o.slug, t.owner, t.user_id, t.role FROM tokens t \
                     JOIN orgs o ON o.id = t.org WHERE t.id = ?1 AND t.kind = 'invitation' \
                     AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > ?2)",
                    params![id, at.micros()],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )
                .optional()
                .map_err(unavailable)?;
            let (org, email, invitee, role) =
                open.ok_or_else(|| StoreError::NotFound(format!("invitation {id:?}")))?;
            let role = match role.map(|r| r.parse::<Role>()) {
                None => None,
                Some(Ok(role)) => Some(role),
                Some(Err(e)) => return Err(StoreError::Corrupt(format!("invitation {id}: {e}"))),
            };
            let member = match (acceptance, invitee, role) {
                // From before invitations carried a role: it completes the account it made.
                (Acceptance::FirstPassword(hash), Some(user_id), None) => {
                    let n = tx
                        .execute(
                            "UPDATE users SET password_hash = ?2 \
                             WHERE id = ?1 AND password_hash IS NULL",
                            params![user_id, hash],
                        )
                        .map_err(unavailable)?;
                    if n == 0 {
                        return Err(StoreError::Conflict(format!(
                            "a password for the user of invitation {id:?}"
                        )));
                    }
                    super::read::members(tx, &org)?
                        .into_iter()
                        .find(|m| m.user_id == user_id)
                        .ok_or_else(|| StoreError::NotFound(format!("invitation {id:?}")))?
                }
                (Acceptance::NewAccount(user), None, Some(role))
                    if user.email.eq_ignore_ascii_case(&email) =>
                {
                    // Fails (Conflict) if the email has an account by now.
                    insert_user(tx, &user)?;
                    insert_member(tx, &org, &user.id, role)?;
                    Member {
                        user_id: user.id,
                        email: user.email,
                        role,
                    }
                }
                (Acceptance::Account { user_id }, None, Some(role)) => {
                    let user = super::read::user_where(tx, "id", &user_id)?
                        .filter(|u| u.email.eq_ignore_ascii_case(&email))
                        .ok_or_else(|| {
                            StoreError::Conflict(format!("an account for invitation {id:?}"))
                        })?;
                    insert_member(tx, &org, &user.id, role)?;
                    Member {
                        user_id: user.id,
                        email: user.email,
                        role,
                    }
                }
                _ => {
                    return Err(StoreError::Conflict(format!(
                        "an account for invitation {id:?}"
                    )));
                }
            };
            tx.execute(
                "UPDATE tokens SET revoked_at = ?2 WHERE id = ?1",
                params![id, at.micros()],
            )
            .map_err(unavailable)?;
            Ok(member)
        })
    }

    pub fn create_session(&mut self, s: &Session, audit: AuditEvents) -> Result<()> {
        self.in_tx(audit, |tx| {
            tx.execute(
                "INSERT INTO sessions (id, user_id, secret_hash, created_at, last_seen_at, \
                 expires_at, ended_at, token_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    s.id,
                    s.user_id,
                    s.secret_hash.as_slice(),
                    s.created_at.micros(),
                    s.last_seen_at.micros(),
                    s.expires_at.micros(),
                    s.ended_at.map(Timestamp::micros),
                    s.token_id,
                ],
            )
            .map_err(|e| constraint(e, || format!("session {:?}", s.id)))?;
            Ok(())
        })
    }

    pub fn touch_session(&mut self, id: &str, at: Timestamp) -> Result<()> {
        self.in_tx(Vec::new(), |tx| {
            tx.execute(
                "UPDATE sessions SET last_seen_at = max(last_seen_at, ?2) WHERE id = ?1",
                params![id, at.micros()],
            )
            .map_err(unavailable)?;
            Ok(())
        })
    }

    pub fn extend_tiles(&mut self, org: &str, signed: u64, size: u64) -> Result<()> {
        self.in_tx(Vec::new(), |tx| {
            super::tree::extend_tiles(tx, org, signed, size)
        })
    }

    pub fn add_checkpoint(&mut self, c: &SignedCheckpoint) -> Result<()> {
        self.in_tx(Vec::new(), |tx| {
            let org_id = org_id(tx, &c.org)?;
            tx.execute(
                "INSERT INTO checkpoints (org, size, root, note, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![org_id, c.size as i64, c.root.as_slice(), c.note, c.created_at.micros()],
            )
            .map_err(|e| constraint(e, || format!("checkpoint {} of org {:?}", c.size, c.org)))?;
            Ok(())
        })
    }

    pub fn init_setting(&mut self, key: &str, value: &str) -> Result<String> {
        self.in_tx(Vec::new(), |tx| {
            tx.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO NOTHING",
                params![key, value],
            )
            .map_err(unavailable)?;
            tx.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
                .map_err(unavailable)
        })
    }

    pub fn set_setting(&mut self, key: &str, value: &str, audit: AuditEvents) -> Result<()> {
        self.in_tx(audit, |tx| {
            tx.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )
            .map_err(unavailable)?;
            Ok(())
        })
    }

    pub fn end_user_sessions(
        &mut self,
        user_id: &str,
        except: Option<&str>,
        at: Timestamp,
    ) -> Result<()> {
        self.in_tx(Vec::new(), |tx| {
            tx.execute(
                "UPDATE sessions SET ended_at = coalesce(ended_at, ?3) \
                 WHERE user_id = ?1 AND (?2 IS NULL OR id != ?2)",
                params![user_id, except, at.micros()],
            )
            .map_err(unavailable)?;
            Ok(())
        })
    }

    pub fn end_session(&mut self, id: &str, at: Timestamp, audit: AuditEvents) -> Result<()> {
        self.in_tx(audit, |tx| {
            tx.execute(
                "UPDATE sessions SET ended_at = coalesce(ended_at, ?2) WHERE id = ?1",
                params![id, at.micros()],
            )
            .map_err(unavailable)?;
            Ok(())
        })
    }
}

/// Refuses a change of `user_id`'s membership (to `new_role`, or removal) that would leave
/// the org without an owner.
fn keeps_an_owner(
    tx: &Connection,
    org_id: i64,
    org: &str,
    user_id: &str,
    new_role: Option<Role>,
) -> Result<()> {
    if new_role == Some(Role::Owner) {
        return Ok(());
    }
    let other_owners: i64 = tx
        .query_row(
            "SELECT count(*) FROM members WHERE org = ?1 AND role = 'owner' AND user_id != ?2",
            params![org_id, user_id],
            |r| r.get(0),
        )
        .map_err(unavailable)?;
    let is_owner: bool = tx
        .query_row(
            "SELECT count(*) FROM members WHERE org = ?1 AND user_id = ?2 AND role = 'owner'",
            params![org_id, user_id],
            |r| r.get::<_, i64>(0),
        )
        .map_err(unavailable)?
        > 0;
    if is_owner && other_owners == 0 {
        return Err(StoreError::Conflict(format!(
            "org {org:?} would be left without an owner; make another member owner first"
        )));
    }
    Ok(())
}

/// The stored user with this email, or `user` inserted.
/// The stored user with this email, or `user` inserted; and whether it was inserted now.
fn user_or_insert(tx: &Connection, user: User) -> Result<(User, bool)> {
    if let Some(existing) = super::read::user_where(tx, "email", &user.email)? {
        return Ok((existing, false));
    }
    insert_user(tx, &user)?;
    Ok((user, true))
}

/// Stores an invitation (made out to an email, with a role) in place of the email's open
/// invitations to the org; refuses one for a member. It changes no account: only its
/// acceptance does.
fn insert_invitation(tx: &Connection, invitation: &Token) -> Result<()> {
    debug_assert!(invitation.kind == TokenKind::Invitation && invitation.role.is_some());
    let org_id = org_id(tx, &invitation.org)?;
    let member: bool = tx
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM members m JOIN users u ON u.id = m.user_id \
             WHERE m.org = ?1 AND u.email = ?2 COLLATE NOCASE)",
            params![org_id, invitation.owner],
            |r| r.get(0),
        )
        .map_err(unavailable)?;
    if member {
        return Err(StoreError::Conflict(format!(
            "member {:?} of org {:?}",
            invitation.owner, invitation.org
        )));
    }
    tx.execute(
        "UPDATE tokens SET revoked_at = ?3 WHERE kind = 'invitation' AND org = ?1 \
         AND owner = ?2 COLLATE NOCASE AND revoked_at IS NULL",
        params![org_id, invitation.owner, invitation.created_at.micros()],
    )
    .map_err(unavailable)?;
    insert_token(tx, invitation)
}

fn append_one(
    tx: &Connection,
    committed: Caches<'_>,
    pending: &mut Pending,
    org: &str,
    events: Vec<EventBody>,
    received_at: Timestamp,
) -> Result<OrgAppends> {
    let org_id = match pending.org_ids.get(org).or(committed.org_ids.get(org)) {
        Some(id) => *id,
        None => {
            // Learnt inside this transaction: cached only if it commits (the org may be one
            // this very transaction creates).
            let id = org_id(tx, org)?;
            pending.org_ids.insert(org.to_owned(), id);
            id
        }
    };
    let committed_dict = committed.dict;
    let mut seq = match pending
        .next_seq
        .get(&org_id)
        .or(committed.next_seq.get(&org_id))
    {
        Some(s) => *s,
        None => next_seq_on_disk(tx, org_id)?,
    };
    if seq.saturating_add(events.len() as u64) > SEQ_MASK as u64 + 1 {
        return Err(StoreError::LogFull(org.to_owned()));
    }
    pending.appended_from.entry(org_id).or_insert(seq);
    let mut tree = match committed.signer {
        Some(signer)
            if !signer.refused.contains_key(&org_id) && !pending.refused.contains_key(&org_id) =>
        {
            match pending
                .trees
                .remove(&org_id)
                .or_else(|| signer.trees.get(&org_id).cloned())
            {
                Some(tree) => Some(tree),
                None => match signer.open_log(tx, org_id, org)? {
                    Opened::Tree(tree) => Some(tree),
                    Opened::Refused(why) => {
                        pending.refused.insert(org_id, (org.to_owned(), why));
                        None
                    }
                },
            }
        }
        _ => None,
    };
    if let Some(tree) = &tree
        && tree.size() != seq
    {
        // The writer's view of this log no longer matches; failing the write makes it
        // read the log again.
        return Err(StoreError::Unavailable(format!(
            "the writer's tree of org {org:?} has {} leaves, its log {seq}",
            tree.size()
        )));
    }
    let mut tiles = Vec::new();
    let mut rows = row::Inserter::default();
    let mut intern = |tx: &Connection, s: &str| -> Result<i64> {
        if let Some(id) = pending
            .dict
            .get(s)
            .copied()
            .or_else(|| committed_dict.get(s))
        {
            return Ok(id);
        }
        let id = match super::dict::id_of(tx, s)? {
            Some(id) => id,
            None => {
                tx.prepare_cached("INSERT OR FAIL INTO dict (value) VALUES (?1)")
                    .and_then(|mut st| st.execute([s]))
                    .map_err(unavailable)?;
                tx.last_insert_rowid()
            }
        };
        pending.dict.insert(s.to_owned(), id);
        Ok(id)
    };
    let mut out: Vec<Appended> = Vec::with_capacity(events.len());
    let mut batch_ids: HashMap<String, usize> = HashMap::new();
    for body in events {
        if let Some(cid) = &body.client_id {
            let earlier = match batch_ids.get(cid) {
                Some(&i) => Some((out[i].clone(), canonical::VERSION)),
                None => by_client_id(tx, org_id, cid)?,
            };
            if let Some((earlier, encoding)) = earlier {
                // The same id again: a retry if it is the same event (sent by the same
                // credential), a conflict if not. It is sealed as the earlier one was.
                let again = Event::seal_as(encoding, org, earlier.seq, earlier.received_at, body);
                let outcome = if canonical::leaf_hash(&again) == earlier.hash {
                    Outcome::Duplicate
                } else {
                    Outcome::Conflict
                };
                out.push(Appended { outcome, ..earlier });
                continue;
            }
            batch_ids.insert(cid.clone(), out.len());
        }
        let event = Event::seal(org, seq, received_at, body);
        let hash = canonical::leaf_hash(&event);
        rows.add(tx, org_id, &event, &hash, &mut intern)?;
        if let Some(tree) = &mut tree {
            tree.push_tiles(hash, |level, idx, h| tiles.push((level, idx, *h)));
        }
        pending.tallies.event(org_id, event.timestamp);
        if let Some(r) = &event.request {
            let route = intern(tx, &r.route)?;
            pending
                .tallies
                .call(org_id, event.timestamp, route, r.status, r.latency_us);
        }
        out.push(Appended {
            id: event.id(),
            seq,
            hash,
            received_at,
            outcome: Outcome::Created,
        });
        seq += 1;
    }
    rows.flush(tx)?;
    for (level, idx, hash) in tiles {
        signer::store_tile(tx, org_id, level, idx, &hash)?;
    }
    if let Some(tree) = tree {
        pending.trees.insert(org_id, tree);
    }
    if out.iter().any(|a| a.outcome == Outcome::Created) {
        pending.grown.insert(org.to_owned(), (org_id, seq));
    }
    pending.next_seq.insert(org_id, seq);
    Ok((org_id, out))
}

/// What every write transaction does last: adds its events to the per-minute tallies and
/// signs a checkpoint of each log it appended to.
fn finish(
    tx: &Connection,
    signer: Option<&Signer>,
    pending: &mut Pending,
    at: Timestamp,
) -> Result<()> {
    super::minutes::write(tx, std::mem::take(&mut pending.tallies))?;
    for (org_id, size) in pending.grown.values() {
        let bits = super::blocks::BLOCK_BITS;
        // Only a transaction that completes a block has one to seal.
        if pending
            .appended_from
            .get(org_id)
            .is_none_or(|from| size >> bits > from >> bits)
        {
            super::blocks::seal_completed(tx, *org_id, *size).map_err(unavailable)?;
        }
    }
    let Some(signer) = signer else {
        return Ok(());
    };
    for (org, (org_id, _)) in &pending.grown {
        if let Some(tree) = pending.trees.get(org_id) {
            let head = signer.sign(tx, *org_id, org, tree, at)?;
            pending.signed.insert(*org_id, head);
        }
    }
    Ok(())
}

fn next_seq_on_disk(tx: &Connection, org_id: i64) -> Result<u64> {
    super::read::size_of(tx, org_id)
}

/// The event stored under a client id, and the canonical encoding it was hashed with.
fn by_client_id(tx: &Connection, org_id: i64, cid: &str) -> Result<Option<(Appended, u8)>> {
    tx.prepare_cached("SELECT k, ts + rdelta, hash, enc FROM events WHERE org = ?1 AND cid = ?2")
        .and_then(|mut s| {
            s.query_row(params![org_id, cid], |r| {
                let k: i64 = r.get(0)?;
                let hash: Vec<u8> = r.get(2)?;
                let enc: Option<u8> = r.get(3)?;
                Ok((k, r.get::<_, i64>(1)?, hash, enc))
            })
            .optional()
        })
        .map_err(unavailable)?
        .map(|(k, received, hash, enc)| {
            let appended = Appended {
                id: cid.to_owned(),
                seq: (k & SEQ_MASK) as u64,
                hash: hash
                    .try_into()
                    .map_err(|_| StoreError::Corrupt(format!("bad leaf hash for id {cid}")))?,
                received_at: Timestamp(received),
                outcome: Outcome::Duplicate,
            };
            Ok((appended, enc.unwrap_or(canonical::VERSION)))
        })
        .transpose()
}

/// A constraint violation as a domain error: a duplicate is a conflict, a reference to
/// something missing is "not found".
fn constraint(e: rusqlite::Error, what: impl FnOnce() -> String) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY =>
        {
            StoreError::NotFound(format!("what {} refers to", what()))
        }
        _ if e.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation) => {
            StoreError::Conflict(what())
        }
        _ => unavailable(e),
    }
}

/// Inserts an org under the next id of the `next_org_id` counter, which only goes up: an id
/// is never given twice, even if an org were removed, so nothing that names an org by id (a
/// log's key range) can come to mean another.
fn insert_org(tx: &Connection, org: &Org) -> Result<()> {
    let next: i64 = tx
        .query_row(
            "SELECT max(CAST(value AS INTEGER), (SELECT coalesce(max(id), 0) + 1 FROM orgs))              FROM meta WHERE key = 'next_org_id'",
            [],
            |r| r.get(0),
        )
        .optional()
        .map_err(unavailable)?
        .ok_or_else(|| StoreError::Corrupt("the org id counter is missing".into()))?;
    if next >= 1 << (63 - SEQ_BITS) {
        return Err(StoreError::Unavailable("no org ids are left".into()));
    }
    tx.execute(
        "INSERT INTO orgs (id, slug, name, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![next, org.id, org.name, org.created_at.micros()],
    )
    .map_err(|e| constraint(e, || format!("org {:?}", org.id)))?;
    tx.execute(
        "UPDATE meta SET value = CAST(?1 AS TEXT) WHERE key = 'next_org_id'",
        [next + 1],
    )
    .map_err(unavailable)?;
    Ok(())
}

fn insert_user(tx: &Connection, user: &User) -> Result<()> {
    // An email names one account, whatever its case.
    if super::read::user_where(tx, "email", &user.email)?.is_some() {
        return Err(StoreError::Conflict(format!("user {:?}", user.email)));
    }
    tx.execute(
        "INSERT INTO users (id, email, password_hash, platform_admin, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            user.id,
            user.email,
            user.password_hash,
            user.platform_admin,
            user.created_at.micros()
        ],
    )
    .map_err(|e| constraint(e, || format!("user {:?}", user.email)))?;
    Ok(())
}

fn insert_member(tx: &Connection, org: &str, user_id: &str, role: Role) -> Result<()> {
    let org_id = org_id(tx, org)?;
    let now = Timestamp::from_system_time(std::time::SystemTime::now());
    tx.execute(
        "INSERT INTO members (org, user_id, role, joined_at) VALUES (?1, ?2, ?3, ?4)",
        params![org_id, user_id, role.as_str(), now.micros()],
    )
    .map_err(|e| constraint(e, || format!("member {user_id:?} of org {org:?}")))?;
    Ok(())
}

fn insert_token(tx: &Connection, t: &Token) -> Result<()> {
    let org_id = org_id(tx, &t.org)?;
    tx.execute(
        "INSERT INTO tokens (id, kind, org, owner, user_id, name, description, scopes, \
         instance, secret_hash, created_by, created_at, expires_at, revoked_at, reach, pw, \
         role, made_with) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
        params![
            t.id,
            t.kind.as_str(),
            org_id,
            t.owner,
            t.user_id,
            t.name,
            t.description,
            Scope::join(&t.scopes),
            t.instance,
            t.secret_hash.as_slice(),
            t.created_by,
            t.created_at.micros(),
            t.expires_at.map(Timestamp::micros),
            t.revoked_at.map(Timestamp::micros),
            match &t.reach {
                Reach::Own => None,
                Reach::All => Some("*".to_owned()),
                Reach::Orgs(orgs) => Some(orgs.join(" ")),
            },
            t.from_password.then_some(1),
            t.role.map(Role::as_str),
            t.made_with,
        ],
    )
    .map_err(|e| constraint(e, || format!("token {:?}", t.id)))?;
    Ok(())
}

fn metrics_group(requests: usize) {
    metrics::histogram!("trail_group_commit_requests").record(requests as f64);
}
