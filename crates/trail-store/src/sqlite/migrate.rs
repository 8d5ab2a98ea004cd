//! The schema, as a list of versioned steps.
//!
//! `PRAGMA user_version` is the number of steps a database has been through. Opening a store
//! applies the steps it lacks, in order, each in its own transaction together with the new
//! version, so a crash leaves the store at one version or the next, never in between. A new
//! store goes through every step from the first. To change the schema, append a step: never
//! edit one that has shipped, since stores made by it exist.

use rusqlite::Transaction;

use super::unavailable;
use crate::{Result, StoreError};

/// One step: what it does, and the SQL (or code) that takes a store from the version before
/// it to its own.
struct Step {
    what: &'static str,
    apply: fn(&Transaction<'_>) -> rusqlite::Result<()>,
}

/// Step `i` takes a store from version `i` to version `i + 1`.
const STEPS: &[Step] = &[
    Step {
        what: "the tables of the first release",
        apply: |tx| tx.execute_batch(include_str!("schema.sql")),
    },
    Step {
        what: "org ids from a counter that never goes back, so no id is ever given twice",
        apply: |tx| {
            tx.execute_batch(
                "INSERT INTO meta (key, value) \
                 SELECT 'next_org_id', CAST(coalesce(max(id), 0) + 1 AS TEXT) FROM orgs;",
            )
        },
    },
    Step {
        what: "provenance: the credential that sent each event, and the canonical encoding it \
               was hashed with (rows stored before read as encoding 1; new rows write NULL for \
               the current one)",
        apply: |tx| {
            tx.execute_batch(
                "ALTER TABLE events ADD COLUMN enc INTEGER DEFAULT 1;
                 ALTER TABLE events ADD COLUMN sub INTEGER;",
            )
        },
    },
    Step {
        what: "when each member joined their org, so a user's home org is the first they \
               joined, whoever adds them to another later",
        apply: |tx| {
            tx.execute_batch("ALTER TABLE members ADD COLUMN joined_at INTEGER NOT NULL DEFAULT 0;")
        },
    },
    Step {
        what: "actor types beyond the known ones: their name, through the dictionary (atype \
               is 0 for them; the known ones keep their code and write NULL here)",
        apply: |tx| tx.execute_batch("ALTER TABLE events ADD COLUMN atname INTEGER;"),
    },
    Step {
        what: "personal access tokens for several orgs (reach: NULL for the org it was made \
               in, '*' for all its user's orgs, else org ids separated by spaces), and console \
               sessions signed in with a token (token_id), and tokens made by signing in with \
               a password (pw = 1), revoked when it changes. The bootstrap owner's token, made \
               by the first start, covers all their orgs, as it does in a new store",
        apply: |tx| {
            tx.execute_batch(
                "ALTER TABLE tokens ADD COLUMN reach TEXT;
                 ALTER TABLE tokens ADD COLUMN pw INTEGER;
                 ALTER TABLE sessions ADD COLUMN token_id TEXT REFERENCES tokens(id);
                 UPDATE tokens SET reach = '*' \
                  WHERE kind = 'pat' AND name = 'bootstrap' AND created_by = 'trail serve';",
            )
        },
    },
    Step {
        what: "per-minute tallies, kept as events are appended and filled here from the \
               events already stored: events per org and minute (event_minutes, for \
               histograms), and recorded API calls per org, minute and route (perf_minutes: \
               requests, 4xx, 5xx and a latency sketch), so perf reads minutes, not calls",
        apply: |tx| {
            tx.execute_batch(
                "CREATE TABLE event_minutes (
                     org    INTEGER NOT NULL,
                     minute INTEGER NOT NULL,  -- minutes since the epoch, of ts
                     n      INTEGER NOT NULL,
                     PRIMARY KEY (org, minute)
                 ) WITHOUT ROWID;
                 CREATE TABLE perf_minutes (
                     org      INTEGER NOT NULL,
                     minute   INTEGER NOT NULL,  -- minutes since the epoch, of ts
                     route    INTEGER NOT NULL,  -- dict
                     requests INTEGER NOT NULL,
                     e4xx     INTEGER NOT NULL,
                     e5xx     INTEGER NOT NULL,
                     lat      BLOB NOT NULL,     -- trail_core::perf::Sketch
                     PRIMARY KEY (org, minute, route)
                 ) WITHOUT ROWID;",
            )?;
            super::minutes::fill_from_events(tx)
        },
    },
    Step {
        what: "an index of each org's events by object name, so the newest events on one \
               object are found without reading every event (a scan took a second per \
               million events)",
        apply: |tx| {
            tx.execute_batch(
                "CREATE INDEX events_by_object_name ON events (org, oname, ts) \
                 WHERE oname IS NOT NULL;",
            )
        },
    },
    Step {
        what: "the triggers that refuse a colliding insert into events or dict stop the \
               statement with FAIL rather than ABORT: a statement that may abort makes SQLite \
               copy every page it changes into a statement journal first (a tenth of the \
               writer's time), and the writer never needs a statement undone alone, since a \
               failed write rolls its whole transaction back. What they refuse is unchanged",
        apply: |tx| {
            tx.execute_batch(
                "DROP TRIGGER events_no_replace;
                 CREATE TRIGGER events_no_replace BEFORE INSERT ON events
                 WHEN EXISTS (SELECT 1 FROM events WHERE k = NEW.k)
                   OR (NEW.cid IS NOT NULL
                       AND EXISTS (SELECT 1 FROM events WHERE org = NEW.org AND cid = NEW.cid))
                 BEGIN SELECT RAISE(FAIL, 'events are append-only'); END;
                 DROP TRIGGER dict_no_replace;
                 CREATE TRIGGER dict_no_replace BEFORE INSERT ON dict
                 WHEN EXISTS (SELECT 1 FROM dict WHERE id = NEW.id OR value = NEW.value)
                 BEGIN SELECT RAISE(FAIL, 'dict is append-only'); END;",
            )
        },
    },
    Step {
        what: "retention: each org's retention in days (none: the default), its legal hold and \
               the seq below which its log was pruned; events may be deleted only below a \
               permit that the pruning transaction writes and removes itself",
        apply: |tx| {
            tx.execute_batch(
                "ALTER TABLE orgs ADD COLUMN retention_days INTEGER;
                 ALTER TABLE orgs ADD COLUMN legal_hold INTEGER NOT NULL DEFAULT 0;
                 ALTER TABLE orgs ADD COLUMN pruned_below INTEGER NOT NULL DEFAULT 0;
                 CREATE TABLE prune_permit (
                     org     INTEGER PRIMARY KEY,
                     below_k INTEGER NOT NULL
                 );
                 DROP TRIGGER events_no_delete;
                 CREATE TRIGGER events_no_delete BEFORE DELETE ON events
                 WHEN NOT EXISTS (SELECT 1 FROM prune_permit p
                                  WHERE p.org = OLD.org AND OLD.k < p.below_k)
                 BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;",
            )
        },
    },
    Step {
        what: "block summaries: for every 1,024 seqs of a log, its time bounds and a Bloom \
               filter of the values it holds in the fields no index covers (address, token, \
               category, object type and kind, method, actor type), written with the events \
               that complete the block and here for those already stored, so a filter on \
               those fields reads only the blocks that may hold its value",
        apply: |tx| {
            tx.execute_batch(
                "CREATE TABLE blocks (
                     id            INTEGER PRIMARY KEY,  -- org << 30 | block
                     org           INTEGER NOT NULL,
                     block         INTEGER NOT NULL,     -- seqs block << 10 .. (block + 1) << 10
                     min_ts        INTEGER NOT NULL,
                     max_ts        INTEGER NOT NULL,
                     max_ts_before INTEGER NOT NULL,     -- max(max_ts) of it and every earlier block
                     CHECK (id = ((org << 30) | block))
                 );
                 CREATE TABLE block_filters (
                     id     INTEGER PRIMARY KEY,         -- blocks.id
                     filter BLOB NOT NULL
                 );
                 CREATE TRIGGER blocks_no_replace BEFORE INSERT ON blocks
                 WHEN EXISTS (SELECT 1 FROM blocks WHERE id = NEW.id)
                 BEGIN SELECT RAISE(FAIL, 'block summaries are append-only'); END;
                 CREATE TRIGGER block_filters_no_replace BEFORE INSERT ON block_filters
                 WHEN EXISTS (SELECT 1 FROM block_filters WHERE id = NEW.id)
                 BEGIN SELECT RAISE(FAIL, 'block summaries are append-only'); END;
                 CREATE TRIGGER blocks_no_update BEFORE UPDATE ON blocks
                 BEGIN SELECT RAISE(ABORT, 'block summaries are append-only'); END;
                 CREATE TRIGGER block_filters_no_update BEFORE UPDATE ON block_filters
                 BEGIN SELECT RAISE(ABORT, 'block summaries are append-only'); END;
                 CREATE TRIGGER blocks_no_delete BEFORE DELETE ON blocks
                 WHEN NOT EXISTS (SELECT 1 FROM prune_permit p WHERE p.org = OLD.org
                                  AND ((OLD.org << 40) | ((OLD.block + 1) << 10)) <= p.below_k)
                 BEGIN SELECT RAISE(ABORT, 'block summaries are append-only'); END;
                 CREATE TRIGGER block_filters_no_delete BEFORE DELETE ON block_filters
                 WHEN NOT EXISTS (SELECT 1 FROM prune_permit p WHERE p.org = OLD.id >> 30
                                  AND (((OLD.id >> 30) << 40) | (((OLD.id & 1073741823) + 1) << 10))
                                      <= p.below_k)
                 BEGIN SELECT RAISE(ABORT, 'block summaries are append-only'); END;",
            )?;
            super::blocks::seal_all(tx)
        },
    },
    Step {
        what: "postings in place of the indexes by actor, action, route, instance and object \
               name: for every block of 1,024 seqs, each value it holds in those fields with \
               the seqs that hold it, written once per block rather than five index entries \
               per event; written here for the blocks already summarised. A prune deletes the \
               postings of the values it leaves a block without",
        apply: |tx| {
            tx.execute_batch(
                "CREATE TABLE postings (
                     col   INTEGER NOT NULL,  -- blocks::POSTED: 0 actor, 1 action, 2 route, 3 inst, 4 oname
                     value INTEGER NOT NULL,  -- the column's stored value (a dictionary id)
                     id    INTEGER NOT NULL,  -- blocks.id: org << 30 | block
                     seqs  BLOB NOT NULL,     -- blocks::positions
                     before INTEGER NOT NULL, -- greatest ts of the value's events in this block and every earlier one
                     PRIMARY KEY (col, value, id)
                 ) WITHOUT ROWID;
                 CREATE TRIGGER postings_no_replace BEFORE INSERT ON postings
                 WHEN EXISTS (SELECT 1 FROM postings
                              WHERE col = NEW.col AND value = NEW.value AND id = NEW.id)
                 BEGIN SELECT RAISE(FAIL, 'postings are append-only'); END;
                 CREATE TRIGGER postings_no_update BEFORE UPDATE ON postings
                 BEGIN SELECT RAISE(ABORT, 'postings are append-only'); END;
                 CREATE TRIGGER postings_no_delete BEFORE DELETE ON postings
                 WHEN NOT EXISTS (SELECT 1 FROM prune_permit p WHERE p.org = OLD.id >> 30
                                  AND (((OLD.id >> 30) << 40) | ((OLD.id & 1073741823) << 10))
                                      < p.below_k)
                 BEGIN SELECT RAISE(ABORT, 'postings are append-only'); END;
                 DROP INDEX events_by_actor;
                 DROP INDEX events_by_action;
                 DROP INDEX events_by_route;
                 DROP INDEX events_by_inst;
                 DROP INDEX events_by_object_name;",
            )?;
            super::blocks::post_all(tx, 0..5, false)
        },
    },
    Step {
        what: "the times of a sparse posting's events, one byte each (where in its block's \
               time range each falls), so a page reads only the events its values name that \
               can still enter it; NULL in the postings written before, whose events are all \
               read",
        apply: |tx| tx.execute_batch("ALTER TABLE postings ADD COLUMN times BLOB;"),
    },
    Step {
        what: "postings written first in block order: a sealed block's postings go into \
               postings_hot, keyed by a slice of the values (blocks::HOT_SLICES) and then \
               the block, so a block's postings fill a few pages there; each seal moves one \
               slice's older postings into postings, in value order, with their running \
               bounds. A hot posting may be deleted only once postings holds its seqs and \
               times, or under a prune's permit; postings takes no row whose hot posting \
               differs",
        apply: |tx| {
            tx.execute_batch(
                "CREATE TABLE postings_hot (
                     slice INTEGER NOT NULL,  -- blocks::slice of (col, value)
                     id    INTEGER NOT NULL,  -- blocks.id: org << 30 | block
                     col   INTEGER NOT NULL,  -- as in postings
                     value INTEGER NOT NULL,
                     seqs  BLOB NOT NULL,
                     top   INTEGER NOT NULL,  -- greatest ts of the value's events in this block
                     times BLOB,
                     PRIMARY KEY (slice, id, col, value)
                 ) WITHOUT ROWID;
                 CREATE TRIGGER postings_hot_no_replace BEFORE INSERT ON postings_hot
                 WHEN EXISTS (SELECT 1 FROM postings_hot WHERE slice = NEW.slice
                              AND id = NEW.id AND col = NEW.col AND value = NEW.value)
                 BEGIN SELECT RAISE(FAIL, 'postings are append-only'); END;
                 CREATE TRIGGER postings_hot_no_update BEFORE UPDATE ON postings_hot
                 BEGIN SELECT RAISE(ABORT, 'postings are append-only'); END;
                 CREATE TRIGGER postings_hot_no_delete BEFORE DELETE ON postings_hot
                 WHEN NOT EXISTS (SELECT 1 FROM postings c WHERE c.col = OLD.col
                                  AND c.value = OLD.value AND c.id = OLD.id
                                  AND c.seqs = OLD.seqs AND c.times IS OLD.times)
                  AND NOT EXISTS (SELECT 1 FROM prune_permit p WHERE p.org = OLD.id >> 30
                                  AND (((OLD.id >> 30) << 40) | ((OLD.id & 1073741823) << 10))
                                      < p.below_k)
                 BEGIN SELECT RAISE(FAIL, 'postings are append-only'); END;
                 DROP TRIGGER postings_no_replace;
                 CREATE TRIGGER postings_no_replace BEFORE INSERT ON postings
                 WHEN EXISTS (SELECT 1 FROM postings
                              WHERE col = NEW.col AND value = NEW.value AND id = NEW.id)
                   OR EXISTS (SELECT 1 FROM postings_hot h
                              WHERE h.slice = (NEW.value + 7 * NEW.col) & 31 AND h.id = NEW.id
                                AND h.col = NEW.col AND h.value = NEW.value
                                AND (h.seqs IS NOT NEW.seqs OR h.times IS NOT NEW.times))
                 BEGIN SELECT RAISE(FAIL, 'postings are append-only'); END;",
            )
        },
    },
    Step {
        what: "block times in place of the index of events by time: for every block, one \
               byte per seq saying which of 256 parts of the block's time range its event \
               falls in (written with the block's summary, and here for the blocks already \
               summarised), so a page reads only the events of a block that can still \
               enter it. A page, a count and a prune find an org's events by the time \
               bounds of its blocks, and an append writes nothing per event beyond its row \
               (the index's entries were a seventh of the store and most of what a commit \
               wrote to the WAL, spread by late events over its last pages)",
        apply: |tx| {
            tx.execute_batch(
                "CREATE TABLE block_times (
                     id    INTEGER PRIMARY KEY,  -- blocks.id
                     parts BLOB NOT NULL         -- blocks::coarse part of each seq's event
                 );
                 CREATE TRIGGER block_times_no_replace BEFORE INSERT ON block_times
                 WHEN EXISTS (SELECT 1 FROM block_times WHERE id = NEW.id)
                 BEGIN SELECT RAISE(FAIL, 'block summaries are append-only'); END;
                 CREATE TRIGGER block_times_no_update BEFORE UPDATE ON block_times
                 BEGIN SELECT RAISE(ABORT, 'block summaries are append-only'); END;
                 CREATE TRIGGER block_times_no_delete BEFORE DELETE ON block_times
                 WHEN NOT EXISTS (SELECT 1 FROM prune_permit p WHERE p.org = OLD.id >> 30
                                  AND (((OLD.id >> 30) << 40) | (((OLD.id & 1073741823) + 1) << 10))
                                      <= p.below_k)
                 BEGIN SELECT RAISE(ABORT, 'block summaries are append-only'); END;
                 DROP INDEX events_by_time;",
            )?;
            super::blocks::time_all(tx)
        },
    },
    Step {
        what: "invitations carry the role they give, and join an account only when \
               accepted; an API key names the credential it was made with, whose holder's \
               authority bounds it at each use",
        apply: |tx| {
            tx.execute_batch(
                "ALTER TABLE tokens ADD COLUMN role TEXT;
                 ALTER TABLE tokens ADD COLUMN made_with TEXT;",
            )
        },
    },
    Step {
        what: "an email names one account whatever its case: users are found by email \
               without regard to ASCII case (not unique, since an older store may hold two \
               emails that differ only in case; new accounts are refused such a twin)",
        apply: |tx| {
            tx.execute_batch("CREATE INDEX users_by_email ON users (email COLLATE NOCASE);")
        },
    },
    Step {
        what: "postings of the token id (col 5 of postings), so a filter on a credential \
               reads the seqs its postings name instead of every block whose Bloom filter \
               may hold it (a token in use now and then is in a block in ten); written here \
               for the blocks already summarised",
        apply: |tx| super::blocks::post_all(tx, 5..6, true),
    },
];

/// The schema version this Trail writes and reads.
pub const SCHEMA_VERSION: i64 = STEPS.len() as i64;

/// Brings the database to [`SCHEMA_VERSION`], one step per transaction.
pub(crate) fn migrate(conn: &mut rusqlite::Connection) -> Result<()> {
    let version = version(conn)?;
    if !(0..=SCHEMA_VERSION).contains(&version) {
        return Err(StoreError::Unavailable(format!(
            "the data directory has schema version {version}, newer than this Trail's \
             {SCHEMA_VERSION}: upgrade Trail"
        )));
    }
    for (i, step) in STEPS.iter().enumerate().skip(version as usize) {
        let to = i as i64 + 1;
        let fail = |e: rusqlite::Error| {
            StoreError::Unavailable(format!(
                "cannot migrate the store to schema version {to} ({}): {e}",
                step.what
            ))
        };
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Exclusive)
            .map_err(fail)?;
        // Another process may have migrated it meanwhile.
        if version_of(&tx)? >= to {
            continue;
        }
        (step.apply)(&tx).map_err(fail)?;
        tx.pragma_update(None, "user_version", to).map_err(fail)?;
        tx.commit().map_err(fail)?;
        if version > 0 {
            tracing::info!(version = to, step = step.what, "migrated the store");
        }
    }
    Ok(())
}

/// The schema version of a database.
pub(crate) fn version(conn: &rusqlite::Connection) -> Result<i64> {
    version_of(conn)
}

fn version_of(conn: &rusqlite::Connection) -> Result<i64> {
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(unavailable)
}
