//! conversation_message_arrived(channel_id, channel_type, member_uids, message_seq, sender_uid):
//! a message reached a channel. Creates the members' missing conversations (a batch), then
//! advances each conversation whose last_msg_seq is below message_seq:
//!
//! - last_msg_seq := message_seq, updated_at := now();
//! - the sender has read their own message: readed_to_msg_seq := message_seq, unread_count := 0;
//! - everyone else: unread_count + 1, unless their read position is already at or past the
//!   message (a device reported reading it first).
//!
//! Idempotent per message seq: a redelivered message, or an older one arriving late, finds
//! last_msg_seq >= message_seq and changes nothing. Returns how many conversations advanced.
//!
//! Rows are locked in one order (uid, bytewise) before any is updated, so two messages to the same
//! channel queue behind each other instead of deadlocking. Under READ COMMITTED the second one
//! re-checks `last_msg_seq < message_seq` on the row the first one left (EvalPlanQual), so nothing
//! moves back; under REPEATABLE READ / SERIALIZABLE it fails with 40001 and the caller retries.

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::batch::get_or_create_many;
use crate::batch_keys;
use crate::errors;
use crate::kept::{kept, PinnedSearchPath, Statement};
use crate::stats;

const ADVANCE: Statement = Statement {
    name: "advance",
    sql: "WITH locked AS ( \
              SELECT c.uid FROM {schema}.conversation AS c \
              WHERE c.channel_id = $1 AND c.channel_type = $2 AND c.uid = ANY ($3) AND c.last_msg_seq < $4 \
              ORDER BY c.uid COLLATE \"C\" \
              FOR NO KEY UPDATE), \
          advanced AS ( \
              UPDATE {schema}.conversation AS c SET \
                  last_msg_seq = $4, \
                  updated_at = pg_catalog.now(), \
                  readed_to_msg_seq = CASE WHEN c.uid = $5 THEN GREATEST(c.readed_to_msg_seq, $4) \
                                           ELSE c.readed_to_msg_seq END, \
                  unread_count = CASE WHEN c.uid = $5 THEN 0 \
                                      WHEN c.readed_to_msg_seq < $4 THEN c.unread_count + 1 \
                                      ELSE c.unread_count END \
              FROM locked AS l \
              WHERE c.channel_id = $1 AND c.channel_type = $2 AND c.uid = l.uid AND c.last_msg_seq < $4 \
              RETURNING 1) \
          SELECT pg_catalog.count(*)::integer FROM advanced",
    parameters: &[pg_sys::TEXTOID, pg_sys::INT2OID, pg_sys::TEXTARRAYOID, pg_sys::INT8OID, pg_sys::TEXTOID],
};

#[no_mangle]
pub extern "C" fn pg_finfo_conversation_message_arrived() -> &'static pg_sys::Pg_finfo_record {
    const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

/// The SQL entry point (declared in sql/). Not STRICT: sender_uid may be NULL (a system
/// message: everyone's unread count goes up); any other NULL is an error.
#[pg_guard]
#[no_mangle]
pub unsafe extern "C-unwind" fn conversation_message_arrived(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    let channel_id = pgrx::fcinfo::pg_getarg::<&str>(fcinfo, 0);
    let channel_type = pgrx::fcinfo::pg_getarg::<i32>(fcinfo, 1);
    let Some(member_uids) = pgrx::fcinfo::pg_getarg::<Array<&str>>(fcinfo, 2) else {
        errors::null_argument("member_uids")
    };
    let Some(message_seq) = pgrx::fcinfo::pg_getarg::<i64>(fcinfo, 3) else {
        errors::null_argument("message_seq")
    };
    let sender_uid = pgrx::fcinfo::pg_getarg::<&str>(fcinfo, 4);
    if message_seq < 1 {
        errors::invalid_seq("message_seq", message_seq);
    }
    let member_uids: Vec<Option<&str>> = member_uids.iter().collect();
    let members = batch_keys::member_batch(channel_id, channel_type.map(i64::from), &member_uids)
        .unwrap_or_else(|error| errors::invalid_batch("member_uids", error));
    let schema = pg_sys::get_func_namespace((*(*fcinfo).flinfo).fn_oid);

    let advanced = Spi::connect(|client| {
        if members.is_empty() {
            return 0;
        }
        get_or_create_many(&client, schema, &members);
        let _pinned = PinnedSearchPath::push();
        let kept = kept(&client, schema, &ADVANCE);
        let key = members[0].key;
        let uids: Vec<&str> = members.iter().map(|m| m.key.uid).collect();
        let args = [key.channel_id.into(), key.channel_type.into(), uids.into(), message_seq.into(), sender_uid.into()];
        client
            .select(&kept.statement, None, &args)
            .unwrap_or_else(|error| errors::broken_install(&error.to_string()))
            .first()
            .get_one::<i32>()
            .unwrap_or_else(|error| errors::broken_install(&error.to_string()))
            .unwrap_or(0)
    });
    stats::count_message();
    advanced.into()
}
