//! A write to a membership of a large channel (docs/large-groups.md) materializes it first: what
//! arrived since its row was counted (its channel's row is past its last_msg_seq) is written into
//! the row by the rule of relation/large.rs, so that the write then applies to it exactly as per
//! member: a read, a hide with its up_to_msg_seq, a clear.
//!
//! The channel's row is read directly (channel_table.rs) and passed to one UPDATE of the row, so
//! a caller needs no privilege on conversation_channel, as none on the clock. No lock against
//! messages is needed: a message writes only the channel row, so a row counted to an older channel
//! row still derives the messages after it. Two writers that materialize at once queue on the row,
//! and the second re-checks that the channel is past it (EvalPlanQual under READ COMMITTED;
//! 40001 under REPEATABLE READ). The version is the trigger's, as for any write.

use pgrx::pg_sys;

use crate::input::key::ConversationKey;
use crate::relation::catalog::OpenTable;
use crate::relation::channel_table::{self, ChannelTable};
use crate::relation::probe::Snapshot;
use crate::relation::statements::{arg, key_args, prepared, run, Statement, Statements};

/// relation/large.rs's `derived` in SQL, for a row `c` whose channel's row is at `$last`
/// (last_msg_seq) and `$at` (updated_at) and past it: the SET list of an UPDATE. A pg_test holds
/// the two to one answer.
macro_rules! as_it_stands {
    ($last:literal, $at:literal) => {
        concat!(
            "last_msg_seq = ",
            $last,
            ", unread_count = LEAST(CASE WHEN c.hidden THEN 0 ELSE c.unread_count END::int8 \
                                    + GREATEST(",
            $last,
            " - GREATEST(c.readed_to_msg_seq, c.last_msg_seq), 0), 2147483647), \
             hidden = false, updated_at = GREATEST(c.updated_at, ",
            $at,
            ")"
        )
    };
}
pub(crate) use as_it_stands;

const MATERIALIZE: Statement = Statement {
    sql: concat!(
        "UPDATE {table} AS c SET ",
        as_it_stands!("$4", "$5"),
        " WHERE c.uid = $1 AND c.channel_id = $2 AND c.channel_type = $3 AND c.large AND c.last_msg_seq < $4"
    ),
    parameters: &[pg_sys::TEXTOID, pg_sys::TEXTOID, pg_sys::INT2OID, pg_sys::INT8OID, pg_sys::TIMESTAMPTZOID],
    snapshot: Snapshot::Fresh,
};

/// Materializes the conversation of `key` if it is a large membership that its channel moved
/// past; nothing for any other row, or where there are no large channels (before 0.9.0, or a
/// channel without a row).
pub fn materialize(statements: &Statements, table: &OpenTable, key: &ConversationKey<'_>) {
    if !table.table.has_large || channel_table::relid_in(table.table.schema).is_none() {
        return;
    }
    let Some(channel) = ChannelTable::open(table.table.schema).channel(key.channel_id, key.channel_type, Snapshot::Fresh) else {
        return;
    };
    let [uid, channel_id, channel_type] = key_args(key);
    let args =
        [uid, channel_id, channel_type, arg(pg_sys::Datum::from(channel.last_msg_seq)), arg(pg_sys::Datum::from(channel.updated_at))];
    run(statements, &prepared(statements, &table.table.names, &MATERIALIZE), &args);
}
