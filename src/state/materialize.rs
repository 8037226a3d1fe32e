//! A write to a membership of a large channel (docs/large-groups.md) materializes it first: what
//! arrived since its row was counted (its channel's row is past its last_msg_seq) is written into
//! the row by the rule of relation/large.rs, so that the write then applies to it exactly as per
//! member: a read, a hide with its up_to_msg_seq, a clear.
//!
//! One statement, routed by PostgreSQL (or Citus) whatever the layout. No lock against messages is
//! needed: a message writes only the channel row, so a row counted to an older channel row still
//! derives the messages after it. Two writers that materialize at once queue on the row, and the
//! second re-checks that the channel is past it (EvalPlanQual under READ COMMITTED; 40001 under
//! REPEATABLE READ). The version is the trigger's, as for any write.

use pgrx::pg_sys;

use crate::input::key::ConversationKey;
use crate::relation::catalog::OpenTable;
use crate::relation::probe::Snapshot;
use crate::relation::statements::{key_args, prepared, run, Statement, Statements};

/// relation/large.rs's `derived`, written in SQL (a pg_test holds the two to one answer).
const MATERIALIZE: Statement = Statement {
    sql: "UPDATE {table} AS c SET \
              last_msg_seq = s.last_msg_seq, \
              unread_count = LEAST(CASE WHEN c.hidden THEN 0 ELSE c.unread_count END::int8 \
                                   + GREATEST(s.last_msg_seq - GREATEST(c.readed_to_msg_seq, c.last_msg_seq), 0), 2147483647), \
              hidden = false, \
              updated_at = GREATEST(c.updated_at, s.updated_at) \
          FROM {channels} AS s \
          WHERE c.uid = $1 AND c.channel_id = $2 AND c.channel_type = $3 AND c.large \
            AND s.channel_id = c.channel_id AND s.channel_type = c.channel_type AND s.last_msg_seq > c.last_msg_seq",
    parameters: &[pg_sys::TEXTOID, pg_sys::TEXTOID, pg_sys::INT2OID],
    snapshot: Snapshot::Fresh,
};

/// Materializes the conversation of `key` if it is a large membership that its channel moved
/// past; nothing for any other row, or a table without large channels (before 0.9.0).
pub fn materialize(statements: &Statements, table: &OpenTable, key: &ConversationKey<'_>) {
    if !table.table.has_large {
        return;
    }
    let prepared = prepared(statements, &table.table.names, &MATERIALIZE);
    run(statements, &prepared, &key_args(key));
}
