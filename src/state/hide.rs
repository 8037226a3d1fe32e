//! conversation_hide(uid, channel_id, channel_type, up_to_msg_seq): a user hid a conversation
//! from their list (the "delete conversation" of IM clients). Its id, read position and history
//! stay; conversation_list leaves it out, and reports the change to clients that sync; the next
//! message that arrives (message.rs) brings it back.
//!
//! up_to_msg_seq is the last message the client showed when the user hid it: if a newer one has
//! arrived meanwhile, the conversation is not hidden (the user has not seen that message). NULL
//! hides it as it stands. Returns the conversation as it is afterwards, or NULL if it does not
//! exist (nothing to hide, nothing created).

use pgrx::pg_sys;

use crate::create::find::find;
use crate::glue::call::sql_function;
use crate::glue::errors;
use crate::relation::catalog::OpenTable;
use crate::relation::probe::Snapshot;
use crate::relation::result_row::ResultRow;
use crate::relation::statements::{arg_or_null, connect, key_args, prepared, returned_row, Statement};
use crate::state::materialize::materialize;

const HIDE: Statement = Statement {
    sql: "UPDATE {table} AS c SET hidden = true \
          WHERE c.uid = $1 AND c.channel_id = $2 AND c.channel_type = $3 AND NOT c.hidden \
            AND c.last_msg_seq <= COALESCE($4, c.last_msg_seq) \
          RETURNING {columns}",
    parameters: &[pg_sys::TEXTOID, pg_sys::TEXTOID, pg_sys::INT2OID, pg_sys::INT8OID],
    snapshot: Snapshot::Fresh,
};

sql_function! {
    /// Not STRICT: a NULL key argument is 22004; a NULL up_to_msg_seq hides it as it stands.
    fn conversation_hide(call) {
        // Hidden already, a newer message, or no such conversation: as it stands.
        change_up_to(call, "conversation_hide", &HIDE)
    }
}

/// What conversation_hide and conversation_clear share: `statement` changes the conversation of
/// the call's key, given up_to_msg_seq, and returns it; a conversation it leaves as it was is
/// returned as it stands; NULL if there is none.
pub fn change_up_to(call: &crate::glue::call::Call, function: &str, statement: &Statement) -> pg_sys::Datum {
    let key = call.key(0);
    let up_to = up_to_msg_seq(call);
    let table = OpenTable::for_writes(call, function);
    let result = ResultRow::of_call(call, table.table.schema, Snapshot::Fresh);
    let changed = connect(|statements| {
        // A large membership counts to its channel's last message first (hides and clears are
        // rare: no guarded statement as for reads).
        materialize(statements, &table, &key);
        let prepared = prepared(statements, &table.table.names, statement);
        let [uid, channel_id, channel_type] = key_args(&key);
        returned_row(statements, &prepared, &[uid, channel_id, channel_type, arg_or_null(up_to.map(pg_sys::Datum::from))], &result)
    });
    let row = changed.or_else(|| find(&table, &key, Snapshot::Fresh, &result));
    row.unwrap_or_else(|| call.return_null())
}

/// The optional `up_to_msg_seq` argument (the 4th): NULL, or a seq of 0 or more.
pub fn up_to_msg_seq(call: &crate::glue::call::Call) -> Option<i64> {
    let up_to = call.int64(3);
    if let Some(seq) = up_to.filter(|&seq| seq < 0) {
        errors::invalid_seq("up_to_msg_seq", seq, 0);
    }
    up_to
}
