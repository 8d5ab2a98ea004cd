//! The PostgreSQL schema as versioned steps, applied under an advisory lock in one
//! transaction each, so servers that start at once apply each step once; and the roles that
//! make the log append-only by grants.
//!
//! `trail_writer` (no login) is what every connection of the server acts as (`SET ROLE`,
//! [`ActAsWriter`]). It may read everything; it may INSERT into `events`, `tiles` and
//! `checkpoints` but not UPDATE or DELETE them; it changes the rest (members, credentials,
//! tallies) as the API does. Its one way to delete events is `trail_prune(org, below)`, a
//! function that runs as the schema's owner and checks what a prune must be (no legal
//! hold, whole tiles, within the newest signed checkpoint, forward only). `events` is
//! partitioned by week of receipt; the partitions are made by `trail_partitions(now)`,
//! which runs as the owner too: the owner is the maintenance role, reached by the runtime
//! role through these two functions alone.
//!
//! The user in the connection string must be able to act as it: the schema's owner (who
//! ran the migration, and is made a member), or a login role granted it
//! (`GRANT trail_writer TO trail_app`). A connection as `trail_writer` cannot change a
//! stored event, nor delete one other than by such a prune, whatever SQL it sends.

use postgres::Client;

use super::unavailable;
use crate::{Result, StoreError};

/// The role every connection of the server acts as.
pub const WRITER: &str = "trail_writer";

/// The version a store is at once migrated.
pub const SCHEMA_VERSION: i64 = 2;

/// Any fixed number: the advisory lock migrations take.
const MIGRATION_LOCK: i64 = 0x7472_6169_6c00;

/// The steps, version 1 first.
const STEPS: &[Step] = &[
    Step {
        sql: include_str!("schema.sql"),
        grants: "GRANT EXECUTE ON FUNCTION trail_prune(TEXT, BIGINT) TO trail_writer;",
    },
    Step {
        sql: include_str!("schema_v2.sql"),
        grants: "GRANT EXECUTE ON FUNCTION trail_partitions(BIGINT), \
                 trail_import_start(TEXT, BIGINT) TO trail_writer;",
    },
];

/// A version of the schema: the change from the one before, and what the runtime role may
/// do with what it made beyond [`GRANTS`].
struct Step {
    sql: &'static str,
    grants: &'static str,
}

/// Makes the roles (once per cluster; two databases migrating at once may race, and the
/// loser finds the role made) and gives them what they may do in this database.
const GRANTS: &str = "
DO $$ BEGIN
    CREATE ROLE trail_writer NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END $$;
GRANT USAGE ON SCHEMA public TO trail_writer;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO trail_writer;
GRANT INSERT, UPDATE ON settings, orgs, users, members, instances, tokens, sessions
    TO trail_writer;
GRANT INSERT, UPDATE (size, last_received, retention_days, legal_hold) ON logs TO trail_writer;
GRANT INSERT, UPDATE, DELETE ON members, event_minutes, perf_minutes TO trail_writer;
GRANT INSERT ON events, tiles, checkpoints TO trail_writer;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO trail_writer;
";

/// Brings the database's schema to [`SCHEMA_VERSION`] and gives the roles their grants;
/// refuses a database of a later version (written by a newer Trail). On a database already
/// up to date it changes nothing, so a server that connects as a runtime login (not the
/// schema's owner) starts.
pub fn migrate(c: &mut Client) -> Result<()> {
    migrate_to(c, SCHEMA_VERSION)
}

/// Brings the database's schema to `target` (at most [`SCHEMA_VERSION`]): what
/// [`migrate`] does, stopping at an earlier version (to test the steps after it).
pub fn migrate_to(c: &mut Client, target: i64) -> Result<()> {
    let target = target.clamp(1, SCHEMA_VERSION);
    let mut tx = c.transaction().map_err(unavailable)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .map_err(unavailable)?;
    let version = version(&mut tx)?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::Unavailable(format!(
            "the database is at schema version {version}, newer than this Trail's \
             {SCHEMA_VERSION}: run a newer Trail"
        )));
    }
    if version >= target {
        // Up to date: nothing here needs more than the runtime role may do.
        return tx.commit().map_err(unavailable);
    }
    for (i, step) in STEPS
        .iter()
        .enumerate()
        .take(target as usize)
        .skip(version as usize)
    {
        tx.batch_execute(step.sql).map_err(unavailable)?;
        tx.execute(
            "INSERT INTO settings (key, value) VALUES ('schema_version', $1) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            &[&(i as i64 + 1).to_string()],
        )
        .map_err(unavailable)?;
    }
    tx.batch_execute(GRANTS).map_err(unavailable)?;
    for step in &STEPS[..target as usize] {
        tx.batch_execute(step.grants).map_err(unavailable)?;
    }
    // The owner acts as the roles it made (a superuser may already).
    tx.batch_execute(
        "DO $$ BEGIN
            GRANT trail_writer TO CURRENT_USER;
         EXCEPTION WHEN insufficient_privilege OR invalid_grant_operation THEN NULL;
         END $$;",
    )
    .map_err(unavailable)?;
    tx.commit().map_err(unavailable)
}

/// The schema version of the database (0: empty).
pub fn version(c: &mut impl postgres::GenericClient) -> Result<i64> {
    let exists: bool = c
        .query_one("SELECT to_regclass('settings') IS NOT NULL", &[])
        .map_err(unavailable)?
        .get(0);
    if !exists {
        return Ok(0);
    }
    let readable: bool = c
        .query_one("SELECT has_table_privilege('settings', 'SELECT')", &[])
        .map_err(unavailable)?
        .get(0);
    if !readable {
        // A runtime login that inherits nothing reads as the role it acts as.
        c.batch_execute(&format!("SET LOCAL ROLE {WRITER}"))
            .map_err(unavailable)?;
    }
    let v: Option<String> = c
        .query_opt(
            "SELECT value FROM settings WHERE key = 'schema_version'",
            &[],
        )
        .map_err(unavailable)?
        .map(|r| r.get(0));
    v.map_or(Ok(0), |v| {
        v.parse()
            .map_err(|_| StoreError::Corrupt(format!("schema version {v:?} is not a number")))
    })
}

/// Makes every pooled connection act as [`WRITER`].
#[derive(Debug)]
pub(super) struct ActAsWriter;

impl r2d2::CustomizeConnection<Client, postgres::Error> for ActAsWriter {
    fn on_acquire(&self, c: &mut Client) -> std::result::Result<(), postgres::Error> {
        // A write waits at most this long for another's row lock (an append behind a
        // stalled one answers "busy", rather than holding its connection), and a
        // connection left in a transaction is closed by the database.
        c.batch_execute(&format!(
            "SET ROLE {WRITER}; SET lock_timeout = '5s'; \
             SET idle_in_transaction_session_timeout = '60s'"
        ))
    }
}
