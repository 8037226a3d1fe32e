//! A channel changes mode (docs/large-groups.md): per member, each message writes every member's
//! row; large, a message writes the channel's row in conversation_channel and the sender's, and
//! each member's values are derived when read (relation/large.rs).
//!
//! conversation_channel_make_large(channel_id, channel_type, member_uids): the channel row is
//! made from the members' rows (their greatest last_msg_seq), and each member's row, created if
//! missing, becomes a membership counted to it, its unread count kept: what a member returns is
//! the same before and after. conversation_channel_make_per_member(channel_id, channel_type):
//! each membership is materialized (state/materialize.rs) and per member again; the channel row
//! is deleted. Both return how many conversations changed mode.
//!
//! A mode change holds the channel's lock (channel_lock.rs) exclusively, a message shares it: a
//! change waits for the messages in flight and the next ones wait for it, and a message reads the
//! mode once it holds the lock.

use pgrx::pg_sys;

use crate::create::batch::{array_error, get_or_create_many};
use crate::glue::call::{sql_function, text_array_datum, text_datum, Call};
use crate::glue::errors;
use crate::input::batch_keys::{self, PositionedKey, MAX_BATCH_KEYS};
use crate::relation::catalog::OpenTable;
use crate::relation::probe::Snapshot;
use crate::relation::statements::{arg, connect, prepared, run, Statement, Statements};
use crate::state::channel_lock;

const CHANNEL: &[pg_sys::Oid] = &[pg_sys::TEXTOID, pg_sys::INT2OID];
const CHANNEL_AND_MEMBERS: &[pg_sys::Oid] = &[pg_sys::TEXTOID, pg_sys::INT2OID, pg_sys::TEXTARRAYOID];

/// The channel row, from the members' rows; none made if there is one (the channel is large).
const CHANNEL_ROW: Statement = Statement {
    sql: "INSERT INTO {channels} AS s (channel_id, channel_type, last_msg_seq, updated_at) \
          SELECT $1, $2, COALESCE(max(c.last_msg_seq), 0), COALESCE(max(c.updated_at), now()) \
          FROM {table} AS c WHERE c.channel_id = $1 AND c.channel_type = $2 AND c.uid = ANY ($3) \
          ON CONFLICT (channel_id, channel_type) DO NOTHING",
    parameters: CHANNEL_AND_MEMBERS,
    snapshot: Snapshot::Fresh,
};

/// The members' rows become memberships counted to the channel row: their unread counts kept,
/// the messages they did not get (a member who joined late) not counted.
const MEMBERSHIPS: Statement = Statement {
    sql: "UPDATE {table} AS c SET large = true, last_msg_seq = GREATEST(c.last_msg_seq, s.last_msg_seq) \
          FROM {channels} AS s \
          WHERE c.channel_id = $1 AND c.channel_type = $2 AND c.uid = ANY ($3) AND NOT c.large \
            AND s.channel_id = c.channel_id AND s.channel_type = c.channel_type \
          RETURNING 1",
    parameters: CHANNEL_AND_MEMBERS,
    snapshot: Snapshot::Fresh,
};

/// Every membership per member again, its values as they stand (materialize.rs's rule, for the
/// whole channel at once).
const PER_MEMBER: Statement = Statement {
    sql: "UPDATE {table} AS c SET \
              large = false, \
              last_msg_seq = GREATEST(c.last_msg_seq, s.last_msg_seq), \
              unread_count = CASE WHEN s.last_msg_seq > c.last_msg_seq \
                                  THEN LEAST(CASE WHEN c.hidden THEN 0 ELSE c.unread_count END::int8 \
                                             + GREATEST(s.last_msg_seq - GREATEST(c.readed_to_msg_seq, c.last_msg_seq), 0), 2147483647) \
                                  ELSE c.unread_count END, \
              hidden = c.hidden AND s.last_msg_seq <= c.last_msg_seq, \
              updated_at = CASE WHEN s.last_msg_seq > c.last_msg_seq THEN GREATEST(c.updated_at, s.updated_at) ELSE c.updated_at END \
          FROM {channels} AS s \
          WHERE c.channel_id = $1 AND c.channel_type = $2 AND c.large \
            AND s.channel_id = c.channel_id AND s.channel_type = c.channel_type \
          RETURNING 1",
    parameters: CHANNEL,
    snapshot: Snapshot::Fresh,
};

/// Memberships left without their channel row (a DBA deleted it): per member, as counted.
const ORPHANS: Statement = Statement {
    sql: "UPDATE {table} AS c SET large = false WHERE c.channel_id = $1 AND c.channel_type = $2 AND c.large RETURNING 1",
    parameters: CHANNEL,
    snapshot: Snapshot::Fresh,
};

const DROP_CHANNEL_ROW: Statement = Statement {
    sql: "DELETE FROM {channels} AS s WHERE s.channel_id = $1 AND s.channel_type = $2",
    parameters: CHANNEL,
    snapshot: Snapshot::Fresh,
};

sql_function! {
    /// conversation_channel_make_large(channel_id, channel_type, member_uids) RETURNS bigint. Not
    /// STRICT: a NULL argument is 22004.
    fn conversation_channel_make_large(call) {
        let members = members_of(call, 2);
        let table = OpenTable::for_writes(call, "conversation_channel_make_large");
        channel_lock::exclusive(members.channel_id, members.channel_type);
        let changed = connect(|statements| make_large(statements, &table, &members));
        pg_sys::Datum::from(changed)
    }
}

sql_function! {
    /// conversation_channel_make_per_member(channel_id, channel_type) RETURNS bigint. Not STRICT:
    /// a NULL argument is 22004.
    fn conversation_channel_make_per_member(call) {
        let members = members_of(call, usize::MAX);
        let table = OpenTable::for_writes(call, "conversation_channel_make_per_member");
        channel_lock::exclusive(members.channel_id, members.channel_type);
        let changed = connect(|statements| {
            let args = [arg(text_datum(members.channel_id)), arg(pg_sys::Datum::from(members.channel_type))];
            let mut changed = 0;
            for statement in [&PER_MEMBER, &ORPHANS] {
                changed += run(statements, &prepared(statements, &table.table.names, statement), &args).len();
            }
            run(statements, &prepared(statements, &table.table.names, &DROP_CHANNEL_ROW), &args);
            changed as i64
        });
        pg_sys::Datum::from(changed)
    }
}

/// A channel and its members, as a mode change or a message names them.
pub struct Members<'a> {
    pub channel_id: &'a [u8],
    pub channel_type: i16,
    pub keys: Vec<PositionedKey<'a>>,
}

/// The channel of arguments 0 and 1 and the member uids of argument `uids` (none past the
/// arguments), checked as a batch's.
fn members_of(call: &Call, uids: usize) -> Members<'_> {
    let member_uids = if uids == usize::MAX {
        Vec::new()
    } else {
        match call.text_array(uids, MAX_BATCH_KEYS) {
            None => errors::null_argument("member_uids"),
            Some(Err(error)) => errors::invalid_batch("member_uids", array_error(error)),
            Some(Ok(uids)) => uids,
        }
    };
    let channel_id = call.id_text(0, "channel_id");
    let keys = batch_keys::member_batch(channel_id, call.int32(1).map(i64::from), &member_uids)
        .unwrap_or_else(|error| errors::invalid_batch("member_uids", error));
    // Valid from here: member_batch checked the channel.
    let (Some(channel_id), Some(channel_type)) = (channel_id, call.int32(1)) else { unreachable!("checked by member_batch") };
    Members { channel_id, channel_type: channel_type as i16, keys }
}

/// Makes the channel large with `members` as its memberships (created if missing), under the
/// channel's exclusive lock. Returns how many rows became memberships.
pub fn make_large(statements: &Statements, table: &OpenTable, members: &Members<'_>) -> i64 {
    if !members.keys.is_empty() {
        get_or_create_many(statements, table, &members.keys, "conversation_channel_make_large");
    }
    let args = [
        arg(text_datum(members.channel_id)),
        arg(pg_sys::Datum::from(members.channel_type)),
        arg(text_array_datum(members.keys.iter().map(|m| m.key.uid))),
    ];
    run(statements, &prepared(statements, &table.table.names, &CHANNEL_ROW), &args);
    run(statements, &prepared(statements, &table.table.names, &MEMBERSHIPS), &args).len() as i64
}
