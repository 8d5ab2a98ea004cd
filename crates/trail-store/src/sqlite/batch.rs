//! Rows written with as few `INSERT` statements as hold them.
//!
//! Each statement pays its own overhead (binding, a run of SQLite's VM, a reset) once,
//! however many rows it writes, and journals each page it changes once. A [`Batch`] queues
//! rows and writes them [`STATEMENT_ROWS`]`[0]` to a statement, and the rest with as few
//! statements of the smaller sizes as it can.

use rusqlite::types::Value;
use rusqlite::{Connection, Result, params_from_iter};

/// Rows per statement, largest first.
const STATEMENT_ROWS: [usize; 3] = [64, 8, 1];

/// The `INSERT` statements of one table's rows, one of each size in [`STATEMENT_ROWS`].
pub(crate) struct Statements {
    sql: [String; 3],
    width: usize,
}

impl Statements {
    /// The statements inserting into `into` (`table (a, b, c)`), whose rows are `width`
    /// values. `OR FAIL`, with triggers that `FAIL`: nothing in the statement may abort, so
    /// SQLite keeps no statement journal for it (a failed write rolls the whole transaction
    /// back instead; migrate.rs, version 9).
    pub fn new(into: &str, width: usize) -> Statements {
        let row = format!("({})", vec!["?"; width].join(", "));
        Statements {
            sql: STATEMENT_ROWS.map(|rows| {
                format!(
                    "INSERT OR FAIL INTO {into} VALUES {}",
                    vec![row.as_str(); rows].join(", ")
                )
            }),
            width,
        }
    }
}

/// Rows queued for one table's [`Statements`]. Rows are written when a statement's worth
/// is queued and by [`Batch::flush`], which a caller must call before it reads them back or
/// commits.
pub(crate) struct Batch<'s> {
    statements: &'s Statements,
    values: Vec<Value>,
}

impl<'s> Batch<'s> {
    pub fn new(statements: &'s Statements) -> Batch<'s> {
        Batch {
            statements,
            values: Vec::new(),
        }
    }

    /// Queues one row, which must be as wide as the statements' rows.
    pub fn push(&mut self, tx: &Connection, row: impl IntoIterator<Item = Value>) -> Result<()> {
        let before = self.values.len();
        self.values.extend(row);
        debug_assert_eq!(self.values.len() - before, self.statements.width);
        if self.values.len() == STATEMENT_ROWS[0] * self.statements.width {
            self.flush(tx)?;
        }
        Ok(())
    }

    /// Writes every queued row.
    pub fn flush(&mut self, tx: &Connection) -> Result<()> {
        let width = self.statements.width;
        let mut rest = &self.values[..];
        for (size, sql) in STATEMENT_ROWS.iter().zip(&self.statements.sql) {
            while rest.len() >= size * width {
                let (rows, after) = rest.split_at(size * width);
                tx.prepare_cached(sql)?.execute(params_from_iter(rows))?;
                rest = after;
            }
        }
        self.values.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_queued_is_written_once_and_as_queued_whatever_their_number() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT NOT NULL)")
            .unwrap();
        let statements = Statements::new("t (a, b)", 2);
        let mut next = 0i64;
        for n in [0, 1, 7, 8, 9, 63, 64, 65, 64 + 8 + 1, 200] {
            let mut batch = Batch::new(&statements);
            for _ in 0..n {
                batch
                    .push(
                        &conn,
                        [Value::Integer(next), Value::Text(format!("r{next}"))],
                    )
                    .unwrap();
                next += 1;
            }
            batch.flush(&conn).unwrap();
            let (rows, right): (i64, i64) = conn
                .query_row(
                    "SELECT count(*), count(*) FILTER (WHERE b = 'r' || a) FROM t",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .unwrap();
            assert_eq!((rows, right), (next, next), "after a batch of {n}");
        }
    }
}
