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

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::errors;
use crate::find::{find, Relations};
use crate::insert::insert;
use crate::key::ConversationKey;
use crate::lock::KeyLock;
use crate::result_row::ResultRow;
use crate::stats::{self, Outcome};

/// How often a READ COMMITTED caller starts over when the row it conflicted with is gone again
/// by the time it re-reads (a concurrent delete). Each round takes the lock again.
const MAX_ROUNDS: usize = 3;

#[no_mangle]
pub extern "C" fn pg_finfo_get_or_create_conversation() -> &'static pg_sys::Pg_finfo_record {
    const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

/// The SQL entry point (declared in sql/pg_conversation.sql). Not STRICT: a NULL argument is an
/// error (22004), not a NULL result.
#[pg_guard]
#[no_mangle]
pub unsafe extern "C-unwind" fn get_or_create_conversation(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    let uid = pgrx::fcinfo::pg_getarg::<&str>(fcinfo, 0);
    let channel_id = pgrx::fcinfo::pg_getarg::<&str>(fcinfo, 1);
    let channel_type = pgrx::fcinfo::pg_getarg::<i32>(fcinfo, 2);
    let key = ConversationKey::validate(uid, channel_id, channel_type.map(i64::from))
        .unwrap_or_else(|error| errors::invalid_key(error));
    // The table lives in the schema of the function that was called.
    let schema = pg_sys::get_func_namespace((*(*fcinfo).flinfo).fn_oid);
    let (row, outcome, lock_waited) = get_or_create(schema, key, &ResultRow::of_call(fcinfo));
    stats::count_call(outcome, lock_waited);
    row
}

/// Returns the conversation row for `key` as the call's result datum, how the call ended, and
/// whether it waited for another creator's lock.
pub fn get_or_create(schema: pg_sys::Oid, key: ConversationKey<'_>, result: &ResultRow) -> (pg_sys::Datum, Outcome, bool) {
    let relations = Relations::in_schema(schema);

    if let Some(found) = find(relations, key, result) {
        return (found, Outcome::Hit, false);
    }
    Spi::connect(|client| {
        let mut waited = false;
        for _ in 0..MAX_ROUNDS {
            let lock = KeyLock::acquire(key.lock_hash());
            waited |= lock.waited;
            // Only after a wait is a creator likely to have just inserted the key. Without one,
            // the rare creator that slipped in since our check is met by ON CONFLICT below.
            if lock.waited {
                if let Some(found) = find(relations, key, result) {
                    return (found, Outcome::RaceResolved, waited); // the creator we waited for
                }
            }
            if let Some(created) = insert(client, schema, key, result) {
                return (created, Outcome::Created, waited);
            }
            drop(lock);
            // The insert met a row our last snapshot did not show: committed just now, possibly
            // after we waited for it. Only READ COMMITTED gets here; its fresh snapshot sees it.
            if let Some(found) = find(relations, key, result) {
                return (found, Outcome::RaceResolved, waited);
            }
        }
        errors::deleted_while_creating()
    })
}
