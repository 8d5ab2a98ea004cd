//! Folding the WAL into the database off the ingest path.
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses its threshold, on the
//! writer thread: that commit, and every group queued behind it, waits while pages are copied
//! into the database file and it is synced. The writer's connection has it turned off;
//! instead this thread, on its own connection, runs a passive checkpoint every
//! [`INTERVAL`]. A passive checkpoint never blocks the writer or a reader: it copies what no
//! reader still needs, and the WAL starts over from its beginning once all of it is folded.
//! Past [`RESTART_FRAMES`] it also waits for a moment between commits, so that it does (at
//! most [`RESTART_WAIT`], at most every [`RESTART_EVERY`]).

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};

use super::{configure, unavailable};
use crate::Result;

/// How often the WAL is folded into the database.
pub const INTERVAL: Duration = Duration::from_millis(250);

/// The thread that checkpoints; stopped (and joined) when dropped.
pub(crate) struct WalCheckpointer {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl WalCheckpointer {
    pub(crate) fn start(path: &Path) -> Result<WalCheckpointer> {
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
            .spawn(move || run(conn, &stopping))
            .map_err(|e| crate::StoreError::Unavailable(e.to_string()))?;
        Ok(WalCheckpointer {
            stop,
            thread: Some(thread),
        })
    }
}

fn run(conn: Connection, stop: &(Mutex<bool>, Condvar)) {
    // A checkpoint that waits holds the writer's lock while it does: never for long.
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
            // Under steady writes a passive checkpoint may never find the WAL all folded
            // with no commit after it, which is when the WAL starts over: past the limit, one
            // that waits for the writer's lock makes sure it does (most of it is folded by
            // then, so the writer waits briefly).
            Ok(frames) if frames > RESTART_FRAMES && last_restart.elapsed() >= RESTART_EVERY => {
                last_restart = Instant::now();
                if let Err(e) = checkpoint(&conn, "RESTART") {
                    tracing::warn!(error = %e, "WAL checkpoint failed; trying again");
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed; trying again"),
        }
    }
}

/// A WAL of more frames than this (64 MiB of 4 KiB pages) is made to start over.
const RESTART_FRAMES: i64 = 16_384;

/// How long a checkpoint that makes the WAL start over waits for the writer and for readers
/// of older snapshots (a long export, say) before it gives up until later: the writer waits
/// at most this long for it.
const RESTART_WAIT: Duration = Duration::from_millis(50);

/// The least time between two such checkpoints, so that one that keeps finding a reader of
/// an older snapshot costs the writer at most 50 ms every 2 s.
const RESTART_EVERY: Duration = Duration::from_secs(2);

/// Runs one checkpoint of `mode`; the WAL's frames before it.
fn checkpoint(conn: &Connection, mode: &str) -> rusqlite::Result<i64> {
    // (busy, WAL frames, frames folded)
    let (frames, folded) = conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
        Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
    })?;
    metrics::gauge!("trail_wal_frames").set(frames.max(0) as f64);
    tracing::trace!(mode, frames, folded, "WAL checkpoint");
    Ok(frames)
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
