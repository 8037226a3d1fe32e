//! conversation_message_arrived(channel_id, channel_type, member_uids, message_seq, sender_uid):
//! a message reached a channel. Creates the members' missing conversations (a batch), then
//! advances each conversation whose last_msg_seq is below message_seq:
//!
//! - last_msg_seq := message_seq, updated_at := now(), hidden := false (a hidden conversation is
//!   back in its user's list, with the new messages only: its unread count starts again from 0);
//! - the sender has read their own message: readed_to_msg_seq := message_seq, unread_count := 0;
//! - everyone else: unread_count + 1, unless their read position is already at or past the
//!   message (a device reported reading it first).
//!
//! A member whose row another transaction deletes while the message waits for it is made again,
//! and advanced: the delete came first.
//!
//! A channel is large (message_large.rs) when made so, or when a message names at least
//! pg_conversation.large_channel_members members (state/mode.rs).
//!
//! Idempotent per message seq: a redelivered message, or an older one arriving late, finds
//! last_msg_seq >= message_seq and changes nothing (one probe per member, no statement). Returns
//! how many conversations advanced.
//!
//! Rows are locked in one order (uid, bytewise) before any is updated, so two messages to the same
//! channel queue behind each other instead of deadlocking (on Citus, Citus orders the shards'
//! locks itself). Under READ COMMITTED the second one
//! re-checks `last_msg_seq < message_seq` on the row the first one left (EvalPlanQual), so nothing
//! moves back; under REPEATABLE READ / SERIALIZABLE it fails with 40001 and the caller retries.

use pgrx::pg_sys;

use std::collections::HashSet;

use crate::create::batch::{array_error, get_or_create_many, missing, IntegerColumn, Row};
use crate::create::insert::ROUNDS_AGAINST_DELETES;
use crate::glue::call::{sql_function, text_array_datum, text_array_elements, text_datum};
use crate::glue::errors;
use crate::glue::stats;
use crate::input::batch_keys::{self, PositionedKey, MAX_BATCH_KEYS};
use crate::relation::catalog::OpenTable;
use crate::relation::probe::Snapshot;
use crate::relation::statements::{arg, arg_or_null, connect, prepared, run, Statement};
use crate::state::{channel_lock, message_large, mode};

/// What a message does to a member's conversation, for the rows `target` selects. `$unhide`
/// brings a hidden conversation back, and `$unread_kept` is the unread count it comes back with:
/// none of the messages from before the hide (the user deleted the conversation from the list,
/// and expects it back with the new messages only). Both are plain for a table of a database not
/// yet updated to 0.5.0 (no column hidden).
macro_rules! advance {
    ($target:literal, $unhide:literal, $unread_kept:literal) => {
        concat!(
            "advanced AS ( \
                 UPDATE {table} AS c SET \
                     last_msg_seq = $4, \
                     updated_at = now(), ",
            $unhide,
            "readed_to_msg_seq = CASE WHEN c.uid = $5 THEN GREATEST(c.readed_to_msg_seq, $4) \
                                          ELSE c.readed_to_msg_seq END, \
                     unread_count = CASE WHEN c.uid = $5 THEN 0 \
                                         WHEN c.readed_to_msg_seq < $4 THEN ",
            $unread_kept,
            " + 1 \
                                         ELSE ",
            $unread_kept,
            " END ",
            $target,
            " RETURNING c.uid) \
             SELECT coalesce(array_agg(advanced.uid), '{}') FROM advanced"
        )
    };
}

const ADVANCE_PARAMETERS: &[pg_sys::Oid] = &[pg_sys::TEXTOID, pg_sys::INT2OID, pg_sys::TEXTARRAYOID, pg_sys::INT8OID, pg_sys::TEXTOID];

/// On one server: the rows are locked first, in one order, so that two messages queue.
macro_rules! locked_first {
    ($unhide:literal, $unread_kept:literal) => {
        Statement {
            sql: concat!(
                "WITH locked AS ( \
                     SELECT c.uid FROM {table} AS c \
                     WHERE c.channel_id = $1 AND c.channel_type = $2 AND c.uid = ANY ($3) AND c.last_msg_seq < $4 \
                     ORDER BY c.uid COLLATE \"C\" \
                     FOR NO KEY UPDATE), ",
                advance!(
                    "FROM locked AS l WHERE c.channel_id = $1 AND c.channel_type = $2 AND c.uid = l.uid AND c.last_msg_seq < $4",
                    $unhide,
                    $unread_kept
                )
            ),
            parameters: ADVANCE_PARAMETERS,
            snapshot: Snapshot::Fresh,
        }
    };
}

/// On a table distributed with Citus: one UPDATE, which Citus runs shard by shard, taking the
/// shards' locks in one order itself (and it refuses a multi-shard SELECT ... FOR UPDATE).
macro_rules! distributed {
    ($unhide:literal, $unread_kept:literal) => {
        Statement {
            sql: concat!(
                "WITH ",
                advance!(
                    "WHERE c.channel_id = $1 AND c.channel_type = $2 AND c.uid = ANY ($3) AND c.last_msg_seq < $4",
                    $unhide,
                    $unread_kept
                )
            ),
            parameters: ADVANCE_PARAMETERS,
            snapshot: Snapshot::Fresh,
        }
    };
}

const ADVANCE: Statement = locked_first!("hidden = false, ", "(CASE WHEN c.hidden THEN 0 ELSE c.unread_count END)");
const ADVANCE_DISTRIBUTED: Statement = distributed!("hidden = false, ", "(CASE WHEN c.hidden THEN 0 ELSE c.unread_count END)");
const ADVANCE_BEFORE_0_5: Statement = locked_first!("", "c.unread_count");
const ADVANCE_DISTRIBUTED_BEFORE_0_5: Statement = distributed!("", "c.unread_count");

sql_function! {
    /// Not STRICT: sender_uid may be NULL (a system message: everyone's unread count goes up); any
    /// other NULL is an error.
    fn conversation_message_arrived(call) {
        let member_uids = match call.text_array(2, MAX_BATCH_KEYS) {
            None => errors::null_argument("member_uids"),
            Some(Err(error)) => errors::invalid_batch("member_uids", array_error(error)),
            Some(Ok(uids)) => uids,
        };
        let Some(message_seq) = call.int64(3) else { errors::null_argument("message_seq") };
        if message_seq < 1 {
            errors::invalid_seq("message_seq", message_seq, 1);
        }
        let members = batch_keys::member_batch(call.id_text(0, "channel_id"), call.int32(1).map(i64::from), &member_uids)
            .unwrap_or_else(|error| errors::invalid_batch("member_uids", error));
        // Measured like a uid (a longer one could match no member anyway).
        let sender = call.id_text(4, "sender_uid");
        let sender_uid = sender.map(text_datum);
        let table = OpenTable::for_writes(call, "conversation_message_arrived");
        let advanced = connect(|statements| {
            if members.is_empty() {
                return 0;
            }
            // A large channel's message writes its row and the sender's (message_large.rs); the
            // mode is read under the channel's lock, which a mode change holds exclusively. A
            // message naming enough members makes a per-member channel large first (mode.rs).
            if table.table.has_large {
                channel_lock::shared(members[0].key.channel_id, members[0].key.channel_type);
                if let Some(advanced) = message_large::arrived(statements, &table, &members, message_seq, sender) {
                    return advanced;
                }
                if mode::made_large_by_message(statements, &table, &members) {
                    if let Some(advanced) = message_large::arrived(statements, &table, &members, message_seq, sender) {
                        return advanced;
                    }
                }
            }
            let statement = match (table.table.distributed, table.table.has_hidden) {
                (false, true) => &ADVANCE,
                (true, true) => &ADVANCE_DISTRIBUTED,
                (false, false) => &ADVANCE_BEFORE_0_5,
                (true, false) => &ADVANCE_DISTRIBUTED_BEFORE_0_5,
            };
            let prepared = prepared(statements, &table.table.names, statement);
            let key = members[0].key;
            let mut pending = members.clone();
            let mut advanced = 0;
            for _ in 0..ROUNDS_AGAINST_DELETES {
                let found = get_or_create_many(statements, &table, &pending, "conversation_message_arrived");
                // A member whose row holds this message already (a redelivery, a late one) is
                // past it: not updated, and not looked at again (what happens to its row next
                // comes after this message). A redelivery then costs one probe per member.
                let mut last_msg_seq = IntegerColumn::named(c"last_msg_seq");
                pending.retain(|m| Row::of(&found, &m.key).and_then(|row| last_msg_seq.of(row)).is_none_or(|seq| seq < message_seq));
                if pending.is_empty() {
                    break;
                }
                let args = [
                    arg(text_datum(key.channel_id)),
                    arg(pg_sys::Datum::from(key.channel_type)),
                    arg(text_array_datum(pending.iter().map(|m| m.key.uid))),
                    arg(pg_sys::Datum::from(message_seq)),
                    arg_or_null(sender_uid),
                ];
                let returned = run(statements, &prepared, &args);
                // SAFETY: a text[] the statement built (never NULL: coalesce), read in this context.
                let uids: HashSet<&[u8]> = match returned.value(0, 1) {
                    Some(array) => unsafe { text_array_elements(array) }.into_iter().collect(),
                    None => HashSet::new(),
                };
                advanced += uids.len();
                // A member not advanced has passed this message since it was found (a newer message
                // came first), or its row was deleted while this message waited for it: made
                // again, and advanced, as if the message had come after the delete.
                let behind: Vec<PositionedKey<'_>> = pending.iter().filter(|m| !uids.contains(m.key.uid)).copied().collect();
                if behind.is_empty() {
                    break;
                }
                pending = missing(statements, &table, &behind);
                if pending.is_empty() {
                    break;
                }
            }
            advanced as i32
        });
        stats::count_message();
        pg_sys::Datum::from(advanced)
    }
}
