//! conversation_mark_read(uid, channel_id, channel_type, read_to_seq): a user read a conversation
//! up to a message seq, from any of their devices.
//!
//! readed_to_msg_seq only moves forward. unread_count never grows from a read: it becomes
//! LEAST(unread_count, GREATEST(last_msg_seq - read_to_seq, 0)), so it is 0 once the read position
//! reaches last_msg_seq. That rule gives the same end state whatever order concurrent reads apply
//! in: positions p < q leave min(u, L - q) either way, because the smaller one, applied second,
//! no longer moves anything. Under READ COMMITTED a concurrent read re-checks
//! `readed_to_msg_seq < read_to_seq` on the row the other left (EvalPlanQual); under REPEATABLE
//! READ / SERIALIZABLE it fails with 40001 and the caller retries.
//!
//! A read may run ahead of the last message the conversation knows (a device can report reading
//! a message whose arrival is still being recorded), by at most `MAX_READ_AHEAD` messages. A
//! position further ahead is refused (22023) and nothing is written: stored, it would make every
//! later message arrive already read, silencing the conversation for good.
//!
//! Returns the conversation as it stands afterwards, creating it if it did not exist.
//!
//! conversation_clear(uid, channel_id, channel_type, up_to_msg_seq): the user cleared the
//! history up to a message (NULL: the last one). deleted_at_msg_seq moves forward to it, and the
//! conversation is read up to it by the same rule as a read: clearing is a read that also hides
//! what came before. A message that arrived after up_to_msg_seq stays unread. up_to_msg_seq is
//! bounded as a read is. Returns the conversation afterwards, or NULL if it does not exist
//! (nothing to clear, nothing created).

use pgrx::pg_sys;

use crate::create::find::find;
use crate::create::get_or_create::get_or_create;
use crate::glue::call::sql_function;
use crate::glue::errors;
use crate::glue::stats;
use crate::input::key::ConversationKey;
use crate::relation::catalog::OpenTable;
use crate::relation::probe::Snapshot;
use crate::relation::result_row::ResultRow;
use crate::relation::statements::{arg, connect, key_args, prepared, returned_row, Statement};
use crate::state::hide::{change_up_to, up_to_msg_seq};
use crate::state::materialize::materialize;

/// How far a read (or a clear) may run ahead of the conversation's last message: the messages a
/// busy channel can have in delivery at once, with room to spare. A literal, for the statements'
/// text; `MAX_READ_AHEAD` is the same number for the Rust code.
macro_rules! max_read_ahead {
    () => {
        "1000"
    };
}

pub const MAX_READ_AHEAD: i64 = 1000;

/// The read, on the rows `$only` leaves.
macro_rules! mark_read {
    ($only:literal) => {
        Statement {
            sql: concat!(
                "UPDATE {table} AS c SET \
                      readed_to_msg_seq = $4, \
                      unread_count = LEAST(c.unread_count, GREATEST(c.last_msg_seq - $4, 0)), \
                      updated_at = now() \
                  WHERE c.uid = $1 AND c.channel_id = $2 AND c.channel_type = $3 AND c.readed_to_msg_seq < $4 \
                    AND $4 - ",
                max_read_ahead!(),
                " <= c.last_msg_seq",
                $only,
                " RETURNING {columns}"
            ),
            parameters: &[pg_sys::TEXTOID, pg_sys::TEXTOID, pg_sys::INT2OID, pg_sys::INT8OID],
            snapshot: Snapshot::Fresh,
        }
    };
}

/// The common case: a read of a per-member row (every row, where the table has no column large),
/// which needs no materializing first (materialize.rs), in one statement.
const MARK_READ_PER_MEMBER: Statement = mark_read!("{per_member}");
/// A read of a membership of a large channel, once materialized.
const MARK_READ: Statement = mark_read!("");

const FUNCTION: &str = "conversation_mark_read";

/// $4: up_to_msg_seq, NULL for the last message. Changes the row only if something moves.
const CLEAR: Statement = Statement {
    sql: concat!(
        "UPDATE {table} AS c SET \
              deleted_at_msg_seq = GREATEST(c.deleted_at_msg_seq, COALESCE($4, c.last_msg_seq)), \
              readed_to_msg_seq = GREATEST(c.readed_to_msg_seq, COALESCE($4, c.last_msg_seq)), \
              unread_count = LEAST(c.unread_count, GREATEST(c.last_msg_seq - COALESCE($4, c.last_msg_seq), 0)), \
              updated_at = now() \
          WHERE c.uid = $1 AND c.channel_id = $2 AND c.channel_type = $3 \
            AND COALESCE($4 - ",
        max_read_ahead!(),
        " <= c.last_msg_seq, true) \
            AND (c.deleted_at_msg_seq < COALESCE($4, c.last_msg_seq) \
                 OR c.readed_to_msg_seq < COALESCE($4, c.last_msg_seq) \
                 OR c.unread_count > GREATEST(c.last_msg_seq - COALESCE($4, c.last_msg_seq), 0)) \
          RETURNING {columns}"
    ),
    parameters: &[pg_sys::TEXTOID, pg_sys::TEXTOID, pg_sys::INT2OID, pg_sys::INT8OID],
    snapshot: Snapshot::Fresh,
};

sql_function! {
    /// Not STRICT: a NULL argument is an error (22004).
    fn conversation_mark_read(call) {
        let key = call.key(0);
        let Some(read_to_seq) = call.int64(3) else { errors::null_argument("read_to_seq") };
        if read_to_seq < 1 {
            errors::invalid_seq("read_to_seq", read_to_seq, 1);
        }
        let table = OpenTable::for_writes(call, FUNCTION);
        let result = ResultRow::of_call(call, table.table.schema, Snapshot::Fresh);
        stats::count_read();
        // The common case: the conversation exists and the position moves forward. One statement.
        let row = mark_read(&table, key, read_to_seq, &result).unwrap_or_else(|| {
            // It did not exist yet, or the position is not ahead of the stored one, or the row was
            // committed after the UPDATE's snapshot: make sure it exists, then try once more. A
            // new conversation's last message is 0: a read too far ahead of it is refused before
            // anything is created (not even a sequence value is drawn).
            if read_to_seq > MAX_READ_AHEAD && find(&table, &key, Snapshot::Fresh, &result).is_none() {
                errors::read_too_far_ahead("read_to_seq", read_to_seq, 0, MAX_READ_AHEAD);
            }
            get_or_create(&table, key, &result, FUNCTION);
            mark_read(&table, key, read_to_seq, &result).unwrap_or_else(|| get_or_create(&table, key, &result, FUNCTION).0)
        });
        refuse_read_ahead(row, "read_to_seq", read_to_seq);
        row
    }
}

/// The read, on a per-member row in one statement; on a large membership (or when that read
/// moved nothing) after materializing it.
fn mark_read(table: &OpenTable, key: ConversationKey<'_>, read_to_seq: i64, result: &ResultRow) -> Option<pg_sys::Datum> {
    connect(|statements| {
        let [uid, channel_id, channel_type] = key_args(&key);
        let args = [uid, channel_id, channel_type, arg(pg_sys::Datum::from(read_to_seq))];
        let per_member = prepared(statements, &table.table.names, &MARK_READ_PER_MEMBER);
        let row = returned_row(statements, &per_member, &args, result);
        if row.is_some() || !table.table.has_large {
            return row;
        }
        materialize(statements, table, &key);
        returned_row(statements, &prepared(statements, &table.table.names, &MARK_READ), &args, result)
    })
}

sql_function! {
    /// Not STRICT: a NULL key argument is 22004; a NULL up_to_msg_seq clears up to the last message.
    fn conversation_clear(call) {
        // Nothing to move, or no such conversation: as it stands.
        let row = change_up_to(call, "conversation_clear", &CLEAR);
        if let (Some(up_to), false) = (up_to_msg_seq(call), call.is_null_result()) {
            refuse_read_ahead(row, "up_to_msg_seq", up_to);
        }
        row
    }
}

/// Refuses (22023) a read position `seq` more than MAX_READ_AHEAD ahead of the last message of
/// the conversation `row` (as the function returns it): the statements left such a row as it
/// was, and the error rolls back anything the call created.
fn refuse_read_ahead(row: pg_sys::Datum, argument: &str, seq: i64) {
    let mut null = false;
    // SAFETY: `row` is a conversation_row datum the call built; last_msg_seq is a bigint of it.
    let last = unsafe { pg_sys::GetAttributeByName(row.cast_mut_ptr(), c"last_msg_seq".as_ptr(), &mut null) };
    let last = if null { 0 } else { last.value() as i64 };
    if seq.saturating_sub(last) > MAX_READ_AHEAD {
        errors::read_too_far_ahead(argument, seq, last, MAX_READ_AHEAD);
    }
}

#[cfg(test)]
mod unit_tests {
    #[test]
    fn the_statements_and_the_code_bound_reads_alike() {
        assert_eq!(max_read_ahead!().parse::<i64>(), Ok(super::MAX_READ_AHEAD));
    }
}
