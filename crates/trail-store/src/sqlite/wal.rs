//! Folding the WAL into the database off the ingest path.
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses its threshold, on the
//! writer thread: that commit, and every group queued behind it, waits while pages are copied
//! into the database file and it is synced. The writer's connection has it turned off;
//! instead this thread, on its own connection, runs a passive checkpoint every
//! [`INTERVAL`]. A passive checkpoint never blocks the writer or a reader: it copies what no
//! reader still needs.
//!
//! The WAL starts over from its beginning only when a write transaction begins with all of
//! it folded, which under steady ingest never happens by itself: the writer begins its next
//! transaction as soon as the last one commits, while a passive checkpoint is still copying.
//! So past [`Tuning::restart_frames`] frames (at most every [`Tuning::restart_every`]) this
//! thread holds the writer at the [`Gate`] before its next transaction, folds the rest with
//! the writer stopped, makes sure the WAL starts over (a `RESTART` checkpoint, which then has
//! nothing left to copy and waits at most [`RESTART_WAIT`] for readers of older snapshots),
//! and lets it go. While the checkpoints keep up with ingest the writer waits a few
//! milliseconds; when they fall behind, it waits while they catch up, up to [`HOLD_MAX`] at
//! a time, so ingest slows towards the rate the database file takes instead of the WAL
//! growing without end (3.2 GB in a 10-million-event run before the gate).

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};

use super::{configure, unavailable};
use crate::Result;

/// How often the WAL is folded into the database.
pub const INTERVAL: Duration = Duration::from_millis(250);

/// When the WAL is made to start over.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tuning {
    /// A WAL of more frames than this is made to start over.
    pub restart_frames: i64,
    /// The least time between two holds of the writer.
    pub restart_every: Duration,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            // 64 MiB of 4 KiB pages.
            restart_frames: 16_384,
            restart_every: Duration::from_secs(2),
        }
    }
}

/// The longest the writer is held at the gate at once.
pub(crate) const HOLD_MAX: Duration = Duration::from_secs(5);

/// How long the checkpoint that starts the WAL over waits for readers of older snapshots (a
/// long export, say) before it leaves it to the next time.
const RESTART_WAIT: Duration = Duration::from_millis(50);

/// Where the writer, between two transactions, waits while this thread folds the rest of the
/// WAL.
#[derive(Default)]
pub(crate) struct Gate {
    state: Mutex<GateState>,
    changed: Condvar,
}

#[derive(Default)]
struct GateState {
    /// The writer is to wait before its next transaction.
    held: bool,
    /// The writer is in a transaction.
    writing: bool,
}

impl Gate {
    /// The writer, before each transaction: returns at once unless the gate is held, else
    /// when it is let go, or after [`HOLD_MAX`] whatever happens. The transaction lasts as
    /// long as the guard.
    pub(crate) fn pass(&self) -> Writing<'_> {
        let mut s = self.state.lock().expect("WAL gate lock");
        if s.held {
            let started = Instant::now();
            let deadline = started + HOLD_MAX;
            while s.held {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                s = self.changed.wait_timeout(s, left).expect("WAL gate lock").0;
            }
            metrics::histogram!("trail_wal_writer_held_duration_seconds")
                .record(started.elapsed().as_secs_f64());
        }
        s.writing = true;
        Writing(self)
    }

    /// Holds the writer before its next transaction until the guard is dropped.
    fn hold(&self) -> Held<'_> {
        self.state.lock().expect("WAL gate lock").held = true;
        Held(self)
    }

    /// Waits up to `within` for the writer to be out of its transaction; whether it is.
    fn writer_out(&self, within: Duration) -> bool {
        let s = self.state.lock().expect("WAL gate lock");
        let (s, _) = self
            .changed
            .wait_timeout_while(s, within, |s| s.writing)
            .expect("WAL gate lock");
        !s.writing
    }
}

/// The writer is in a transaction while this lives.
pub(crate) struct Writing<'a>(&'a Gate);

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        self.0.state.lock().expect("WAL gate lock").writing = false;
        self.0.changed.notify_all();
    }
}

/// The gate is held while this lives.
struct Held<'a>(&'a Gate);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.state.lock().expect("WAL gate lock").held = false;
        self.0.changed.notify_all();
    }
}

/// The thread that checkpoints; stopped (and joined) when dropped.
pub(crate) struct WalCheckpointer {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl WalCheckpointer {
    pub(crate) fn start(path: &Path, gate: Arc<Gate>, tuning: Tuning) -> Result<WalCheckpointer> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(unavailable)?;
        configure(&conn).map_err(unavailable)?;
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("trail-wal".into())
            .spawn(move || run(conn, &stopping, &gate, tuning))
            .map_err(|e| crate::StoreError::Unavailable(e.to_string()))?;
        Ok(WalCheckpointer {
            stop,
            thread: Some(thread),
        })
    }
}

fn run(conn: Connection, stop: &(Mutex<bool>, Condvar), gate: &Gate, tuning: Tuning) {
    // Only the checkpoints that start the WAL over (and the last one) wait, for readers.
    if let Err(e) = conn.busy_timeout(RESTART_WAIT) {
        tracing::warn!(error = %e, "cannot set the WAL checkpoint's wait");
    }
    let (lock, wake) = stop;
    let mut stopped = lock.lock().expect("checkpointer lock");
    let mut last_restart = Instant::now();
    loop {
        stopped = wake
            .wait_timeout(stopped, INTERVAL)
            .expect("checkpointer lock")
            .0;
        if *stopped {
            // The store is closing, its writer already stopped: fold all of the WAL in and
            // empty its file, so the next open (a restart, an offline verification) does not
            // read up to 256 MiB of it back to rebuild its index.
            if let Err(e) = checkpoint(&conn, "TRUNCATE") {
                tracing::debug!(error = %e, "final WAL checkpoint failed; the next open folds it");
            }
            return;
        }
        match checkpoint(&conn, "PASSIVE") {
            Ok((frames, _))
                if frames > tuning.restart_frames
                    && last_restart.elapsed() >= tuning.restart_every =>
            {
                last_restart = Instant::now();
                fold_with_the_writer_held(&conn, gate);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed; trying again"),
        }
    }
}

/// Holds the writer at the gate and folds what is left of the WAL, then makes sure the
/// writer's next transaction starts it over. Lets the writer go once that is done, once a
/// checkpoint makes no progress (a reader of an older snapshot still needs the rest: later,
/// then), or after [`HOLD_MAX`].
fn fold_with_the_writer_held(conn: &Connection, gate: &Gate) {
    let started = Instant::now();
    let _held = gate.hold();
    let mut folded_before = None;
    loop {
        let left = HOLD_MAX.saturating_sub(started.elapsed());
        // Once the writer is out of its transaction it cannot begin another: the WAL stops
        // growing, and passive checkpoints fold it to its end unless a reader needs some.
        if left.is_zero() || !gate.writer_out(left) {
            return;
        }
        match checkpoint(conn, "PASSIVE") {
            Ok((frames, folded)) if folded >= frames => break,
            Ok((_, folded)) if folded_before == Some(folded) => return,
            Ok((_, folded)) => folded_before = Some(folded),
            Err(e) => {
                tracing::warn!(error = %e, "WAL checkpoint failed; trying again");
                return;
            }
        }
    }
    // All folded, and no writer: what is left is to wait for the readers still on the WAL.
    match conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| r.get::<_, i64>(0)) {
        Ok(0) => metrics::counter!("trail_wal_restarts_total").increment(1),
        Ok(_) => tracing::debug!("the WAL cannot start over yet: a reader still needs it"),
        Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed; trying again"),
    }
}

/// Runs one checkpoint of `mode`: the WAL's frames, and how many of them are folded.
fn checkpoint(conn: &Connection, mode: &str) -> rusqlite::Result<(i64, i64)> {
    // (busy, WAL frames, frames folded)
    let (frames, folded) = conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
        Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
    })?;
    metrics::gauge!("trail_wal_frames").set(frames.max(0) as f64);
    tracing::trace!(mode, frames, folded, "WAL checkpoint");
    Ok((frames, folded))
}

impl Drop for WalCheckpointer {
    fn drop(&mut self) {
        let (lock, wake) = &*self.stop;
        *lock.lock().expect("checkpointer lock") = true;
        wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
