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
//! Returns the conversation as it stands afterwards, creating it if it did not exist.

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::errors;
use crate::get_or_create::get_or_create;
use crate::key::ConversationKey;
use crate::kept::{kept, returned_row, PinnedSearchPath, Statement};
use crate::result_row::ResultRow;
use crate::stats;

const MARK_READ: Statement = Statement {
    name: "mark_read",
    sql: "UPDATE {schema}.conversation AS c SET \
              readed_to_msg_seq = $4, \
              unread_count = LEAST(c.unread_count, GREATEST(c.last_msg_seq - $4, 0)), \
              updated_at = pg_catalog.now() \
          WHERE c.uid = $1 AND c.channel_id = $2 AND c.channel_type = $3 AND c.readed_to_msg_seq < $4 \
          RETURNING c",
    parameters: &[pg_sys::TEXTOID, pg_sys::TEXTOID, pg_sys::INT2OID, pg_sys::INT8OID],
};

#[no_mangle]
pub extern "C" fn pg_finfo_conversation_mark_read() -> &'static pg_sys::Pg_finfo_record {
    const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

/// The SQL entry point (declared in sql/). Not STRICT: a NULL argument is an error (22004).
#[pg_guard]
#[no_mangle]
pub unsafe extern "C-unwind" fn conversation_mark_read(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    let uid = pgrx::fcinfo::pg_getarg::<&str>(fcinfo, 0);
    let channel_id = pgrx::fcinfo::pg_getarg::<&str>(fcinfo, 1);
    let channel_type = pgrx::fcinfo::pg_getarg::<i32>(fcinfo, 2);
    let key = ConversationKey::validate(uid, channel_id, channel_type.map(i64::from))
        .unwrap_or_else(|error| errors::invalid_key(error));
    let Some(read_to_seq) = pgrx::fcinfo::pg_getarg::<i64>(fcinfo, 3) else {
        errors::null_argument("read_to_seq")
    };
    if read_to_seq < 1 {
        errors::invalid_seq("read_to_seq", read_to_seq);
    }
    let schema = pg_sys::get_func_namespace((*(*fcinfo).flinfo).fn_oid);
    let result = ResultRow::of_call(fcinfo);
    stats::count_read();

    // The common case: the conversation exists and the position moves forward. One statement.
    if let Some(moved) = mark_read(schema, key, read_to_seq, &result) {
        return moved;
    }
    // It did not exist yet, or the position is not ahead of the stored one, or the row was
    // committed after the UPDATE's snapshot: make sure it exists, then try once more.
    get_or_create(schema, key, &result);
    mark_read(schema, key, read_to_seq, &result).unwrap_or_else(|| get_or_create(schema, key, &result).0)
}

fn mark_read(
    schema: pg_sys::Oid,
    key: ConversationKey<'_>,
    read_to_seq: i64,
    result: &ResultRow,
) -> Option<pg_sys::Datum> {
    Spi::connect(|client| {
        let _pinned = PinnedSearchPath::push();
        let kept = kept(&client, schema, &MARK_READ);
        let args = [key.uid.into(), key.channel_id.into(), key.channel_type.into(), read_to_seq.into()];
        returned_row(&client, &kept, &args, result)
    })
}
