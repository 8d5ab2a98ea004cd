//! What the writer's own connection may do to the append-only tables.
//!
//! Every other connection to a store runs the triggers the schema defines (`schema.sql`,
//! `migrate.rs`): no `UPDATE` or `DELETE` of the append-only tables, no insert that would
//! replace a stored row, deletes of events only below a prune's permit. The writer's
//! connection runs none of them: a trigger is a sub-program SQLite runs for every row, and
//! those on inserts look the row up again before it is written, which cost about a third
//! of the writer's time (BENCHMARKS.md). For it, SQLite's authorizer holds the line
//! instead, once per statement, as the statement is compiled: it refuses to compile an
//! `UPDATE` of an append-only table, a `DELETE` from one outside a prune ([`Pruning`]), and
//! the dropping or altering of any table, index or trigger, or the schema made writable.
//! The writer's inserts never replace: a collision with a stored row fails its transaction.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rusqlite::Connection;
use rusqlite::config::DbConfig;
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};

/// The tables whose rows are never changed and deleted only by a prune.
const APPEND_ONLY: [&str; 9] = [
    "events",
    "dict",
    "tiles",
    "checkpoints",
    "blocks",
    "block_filters",
    "block_times",
    "postings",
    "postings_hot",
];

/// Set while the writer prunes: the one time it may compile a `DELETE` from an append-only
/// table. (A statement compiled then and cached is the prune's own: its text is only in
/// the prune's code.)
#[derive(Clone, Default)]
pub(crate) struct Pruning(Arc<AtomicBool>);

impl Pruning {
    /// Runs `f` as a prune.
    pub fn during<T>(&self, f: impl FnOnce() -> T) -> T {
        struct Reset<'a>(&'a AtomicBool);
        impl Drop for Reset<'_> {
            fn drop(&mut self) {
                self.0.store(false, Ordering::Release);
            }
        }
        self.0.store(true, Ordering::Release);
        let _reset = Reset(&self.0);
        f()
    }
}

/// Turns `conn`'s triggers off and its authorizer on, as the module says.
pub(crate) fn install(conn: &Connection, pruning: Pruning) -> rusqlite::Result<()> {
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_TRIGGER, false)?;
    conn.authorizer(Some(move |ctx: AuthContext<'_>| {
        authorize(&ctx.action, pruning.0.load(Ordering::Acquire))
    }))
}

fn authorize(action: &AuthAction<'_>, pruning: bool) -> Authorization {
    match action {
        AuthAction::Update { table_name, .. } if APPEND_ONLY.contains(table_name) => {
            Authorization::Deny
        }
        // A seal moves postings from `postings_hot` into `postings`.
        AuthAction::Delete {
            table_name: "postings_hot",
        } => Authorization::Allow,
        AuthAction::Delete { table_name } if APPEND_ONLY.contains(table_name) && !pruning => {
            Authorization::Deny
        }
        AuthAction::DropTable { .. }
        | AuthAction::DropIndex { .. }
        | AuthAction::DropTrigger { .. }
        | AuthAction::DropTempTrigger { .. }
        | AuthAction::DropView { .. }
        | AuthAction::AlterTable { .. } => Authorization::Deny,
        // The schema as rows to edit: triggers removed behind every connection's back.
        AuthAction::Pragma { pragma_name, .. }
            if pragma_name.eq_ignore_ascii_case("writable_schema") =>
        {
            Authorization::Deny
        }
        _ => Authorization::Allow,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(conn: &Connection, sql: &str) -> bool {
        match conn.execute_batch(sql) {
            Err(rusqlite::Error::SqliteFailure(e, _)) => {
                e.code == rusqlite::ErrorCode::AuthorizationForStatementDenied
            }
            other => panic!("{sql}: {other:?}"),
        }
    }

    #[test]
    fn the_writer_may_append_but_not_rewrite_and_deletes_only_while_pruning() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE events (k INTEGER PRIMARY KEY, hash BLOB);
             CREATE TABLE postings_hot (id INTEGER PRIMARY KEY);
             CREATE TABLE members (id INTEGER PRIMARY KEY, role TEXT);
             CREATE TRIGGER events_no_update BEFORE UPDATE ON events
             BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
             INSERT INTO events VALUES (1, x'00'), (2, x'01');
             INSERT INTO postings_hot VALUES (1);
             INSERT INTO members VALUES (1, 'viewer');",
        )
        .unwrap();
        let pruning = Pruning::default();
        install(&conn, pruning.clone()).unwrap();

        conn.execute_batch("INSERT OR FAIL INTO events VALUES (3, x'02')")
            .unwrap();
        assert!(refused(&conn, "UPDATE events SET hash = x'ff' WHERE k = 1"));
        assert!(refused(&conn, "DELETE FROM events WHERE k = 1"));
        assert!(refused(&conn, "DROP TRIGGER events_no_update"));
        assert!(refused(&conn, "DROP TABLE events"));
        assert!(refused(&conn, "ALTER TABLE events RENAME TO old_events"));
        assert!(refused(&conn, "PRAGMA writable_schema = ON"));
        // What is not the log changes as the API says.
        conn.execute_batch("UPDATE members SET role = 'owner'; DELETE FROM postings_hot")
            .unwrap();

        pruning.during(|| {
            conn.execute_batch("DELETE FROM events WHERE k = 1")
                .unwrap()
        });
        assert!(
            refused(&conn, "DELETE FROM events WHERE k = 2"),
            "only while pruning"
        );
        assert!(
            refused(&conn, "UPDATE events SET hash = x'ff' WHERE k = 2"),
            "not even while pruning"
        );
        let left: i64 = conn
            .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
            .unwrap();
        assert_eq!(left, 2);
    }
}
