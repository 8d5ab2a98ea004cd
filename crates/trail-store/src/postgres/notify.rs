//! Live tails across servers: every append that grows a log sends `NOTIFY trail_log`
//! (`size:org`) once it has committed, and each store listens on a
//! connection of its own and wakes its readers of that log ([`LogWatch::grew`]). A wake-up
//! only says "read again": a reader reads by seq from where it is, so a notification lost
//! while the listener reconnects delays a reader at most until the next one.

use std::sync::Weak;
use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, NoTls};

use super::{migrate, unavailable};
use crate::{LogWatch, Result, StoreError};

const CHANNEL: &str = "trail_log";
/// How often the listener checks that its store is still there, and waits between tries to
/// reconnect.
const TICK: Duration = Duration::from_secs(1);

/// Tells every listening server that these logs grew, after the commit that grew them:
/// outside the appending transaction, whose commit would otherwise take the database's
/// one notification lock (serializing every append of every server). A notification
/// that fails to go is logged: readers wake at the next.
pub(super) fn grew<'a>(c: &mut Client, logs: impl IntoIterator<Item = (&'a String, &'a u64)>) {
    for (org, size) in logs {
        if let Err(e) = c.execute(
            "SELECT pg_notify($1, $2)",
            &[&CHANNEL, &format!("{size}:{org}")],
        ) {
            tracing::warn!(org, error = %e, "telling other servers of an append");
        }
    }
}

/// Starts the thread that listens for the logs that grow and tells `logs`; it ends once the
/// store (the last holder of `logs`) is gone.
pub(super) fn listen(config: postgres::Config, logs: Weak<LogWatch>) -> Result<()> {
    std::thread::Builder::new()
        .name("trail-pg-listen".into())
        .spawn(move || {
            while logs.strong_count() > 0 {
                if let Err(e) = relay(&config, &logs) {
                    tracing::warn!(error = %e, "listening for other servers' appends; reconnecting");
                    std::thread::sleep(TICK);
                }
            }
        })
        .map(drop)
        .map_err(|e| StoreError::Unavailable(format!("starting the listener: {e}")))
}

/// Relays notifications to `logs` until the store is gone (`Ok`) or the connection fails.
fn relay(config: &postgres::Config, logs: &Weak<LogWatch>) -> Result<()> {
    let mut c = config.connect(NoTls).map_err(unavailable)?;
    c.batch_execute(&format!("SET ROLE {}; LISTEN {CHANNEL}", migrate::WRITER))
        .map_err(unavailable)?;
    loop {
        let next = c.notifications().timeout_iter(TICK).next();
        let Some(logs) = logs.upgrade() else {
            return Ok(());
        };
        if let Some(n) = next.map_err(unavailable)?
            && let Some((size, org)) = n.payload().split_once(':')
            && let Ok(size) = size.parse()
        {
            logs.grew(org, size);
        }
    }
}
