//! The insert of the miss path: `INSERT ... ON CONFLICT (key) DO NOTHING RETURNING ...`, kept.
//!
//! It goes through SPI so that everything an INSERT does stays Postgres's job: defaults and the
//! id sequence, the generated `type` column, CHECK constraints, triggers, partition routing,
//! speculative insertion against the key index.

use pgrx::pg_sys;

use crate::glue::errors;
use crate::input::key::ConversationKey;
use crate::relation::probe::Snapshot;
use crate::relation::result_row::ResultRow;
use crate::relation::statements::{key_args, prepared, returned_row, Statement, Statements};
use crate::relation::table::Table;

/// How often a key is made again when its row is deleted before its caller has used it (each round
/// takes the key's lock again): a concurrent delete can win a round; get-or-create refuses with
/// 40001 (`errors::deleted_while_creating`) only when it wins them all.
pub const ROUNDS_AGAINST_DELETES: usize = 3;

const INSERT_ONE: Statement = Statement {
    sql: "INSERT INTO {table} AS c (uid, channel_id, channel_type) VALUES ($1, $2, $3) \
          ON CONFLICT (uid, channel_id, channel_type) DO NOTHING RETURNING {columns}",
    parameters: &[pg_sys::TEXTOID, pg_sys::TEXTOID, pg_sys::INT2OID],
    snapshot: Snapshot::Fresh,
};

/// Inserts the row of `key` unless the key index already holds one (committed, or in progress and
/// then committed: ON CONFLICT waits for it). Returns the new row as the call's result datum,
/// or None on conflict. Under REPEATABLE READ / SERIALIZABLE a conflict with a row this snapshot
/// cannot see raises 40001, with a hint to retry.
pub fn insert(statements: &Statements, table: &Table, key: ConversationKey<'_>, result: &ResultRow) -> Option<pg_sys::Datum> {
    let prepared = prepared(statements, &table.names, &INSERT_ONE);
    errors::hint_retry_on_snapshot_conflict(|| returned_row(statements, &prepared, &key_args(&key), result))
}
