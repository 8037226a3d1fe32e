//! get_or_create_conversation(uid, channel_id, channel_type): the one conversation for a key.
//!
//! check (read-only) -> lock the key -> check again if we had to wait -> insert ... on conflict do
//! nothing -> return.
//!
//! - Hit: the first check finds the row. No lock, no transaction id, no WAL, no sequence value.
//! - Miss: the advisory lock lets one creator at a time through the check-and-insert of a key, so
//!   creators never race speculative inserts against each other. A creator that waited re-checks
//!   with a fresh snapshot (READ COMMITTED) and returns the winner's row.
//! - The unique index is the last line of defence: against writers that bypass this function, and
//!   against a winner that released the lock but has not committed yet. ON CONFLICT DO NOTHING
//!   waits for that winner; if it commits we re-read its row, if it aborts our insert goes in.
//!   A unique violation never reaches the caller.
//! - REPEATABLE READ / SERIALIZABLE: a row committed after our snapshot is invisible to us and
//!   conflicts with our insert; Postgres raises 40001 and we add a hint to retry the transaction.
//! - A read-only transaction (READ ONLY, or a hot standby): a hit is returned as ever; a miss is
//!   25006 before any lock is taken.

use pgrx::pg_sys;

use crate::create::find::find;
use crate::create::insert::{insert, ROUNDS_AGAINST_DELETES};
use crate::create::lock::KeyLock;
use crate::glue::call::{refuse_writes_if_read_only, sql_function};
use crate::glue::errors;
use crate::glue::stats::{self, Outcome};
use crate::input::key::ConversationKey;
use crate::relation::catalog::OpenTable;
use crate::relation::probe::Snapshot;
use crate::relation::result_row::ResultRow;
use crate::relation::statements::connect;

sql_function! {
    /// get_or_create_conversation(uid, channel_id, channel_type) RETURNS conversation_row. Not
    /// STRICT: a NULL argument is an error (22004), not a NULL result.
    fn get_or_create_conversation(call) {
        let key = call.key(0);
        let table = OpenTable::for_call(call);
        let result = ResultRow::of_call(call, table.table.schema, Snapshot::Fresh);
        let (row, outcome, lock_waited) = get_or_create(&table, key, &result, "get_or_create_conversation");
        stats::count_call(outcome, lock_waited);
        row
    }
}

/// Returns the conversation row for `key` as the call's result datum, how the call ended, and
/// whether it waited for another creator's lock. `function` names the caller in a read-only error.
pub fn get_or_create(table: &OpenTable, key: ConversationKey<'_>, result: &ResultRow, function: &str) -> (pg_sys::Datum, Outcome, bool) {
    if let Some(found) = find(table, &key, Snapshot::Fresh, result) {
        return (found, Outcome::Hit, false);
    }
    refuse_writes_if_read_only(function);
    connect(|statements| {
        let mut waited = false;
        for _ in 0..ROUNDS_AGAINST_DELETES {
            let lock = KeyLock::acquire(key.lock_hash());
            waited |= lock.waited;
            // Only after a wait is a creator likely to have just inserted the key. Without one,
            // the rare creator that slipped in since our check is met by ON CONFLICT below.
            if lock.waited {
                if let Some(found) = find(table, &key, Snapshot::Fresh, result) {
                    return (found, Outcome::RaceResolved, waited); // the creator we waited for
                }
            }
            if let Some(created) = insert(statements, &table.table, key, result) {
                return (created, Outcome::Created, waited);
            }
            drop(lock);
            // The insert met a row our last snapshot did not show: committed just now, possibly
            // after we waited for it. Only READ COMMITTED gets here; its fresh snapshot sees it.
            if let Some(found) = find(table, &key, Snapshot::Fresh, result) {
                return (found, Outcome::RaceResolved, waited);
            }
        }
        errors::deleted_while_creating()
    })
}
