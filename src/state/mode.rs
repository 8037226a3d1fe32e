//! A channel changes mode (docs/large-groups.md): per member, each message writes every member's
//! row; large, a message writes the channel's row in conversation_channel and the sender's, and
//! each member's values are derived when read (relation/large.rs).
//!
//! conversation_channel_make_large(channel_id, channel_type, member_uids): the channel row is
//! made from the members' rows (their greatest last_msg_seq), and each member's row, created if
//! missing, becomes a membership counted to it, its unread count kept: what a member returns is
//! the same before and after. The channel table is written as its owner (channel_table.rs): a
//! role that may write conversations needs no privilege on it. conversation_channel_make_per_member(channel_id, channel_type):
//! each membership is materialized (state/materialize.rs) and per member again; the channel row
//! is deleted. Both return how many conversations changed mode.
//!
//! A mode change holds the channel's lock (channel_lock.rs) exclusively, a message shares it: a
//! change waits for the messages in flight and the next ones wait for it, and a message reads the
//! mode once it holds the lock.
//!
//! A message makes its channel large itself when it names at least
//! pg_conversation.large_channel_members members (glue/settings.rs): then it takes the lock
//! exclusively if no other transaction holds it, without waiting (a message in flight leaves
//! the change to a later message), and the change is make_large's.

use pgrx::pg_sys;

use crate::create::batch::{array_error, get_or_create_many};
use crate::glue::call::{sql_function, text_array_datum, text_datum, Call};
use crate::glue::errors;
use crate::glue::settings;
use crate::input::batch_keys::{self, PositionedKey, MAX_BATCH_KEYS};
use crate::relation::catalog::OpenTable;
use crate::relation::channel_table::{self, ChannelTable};
use crate::relation::probe::Snapshot;
use crate::relation::statements::{arg, as_owner_of, connect, prepared, run, Statement, Statements};
use crate::state::channel_lock;
use crate::state::materialize::as_it_stands;

const CHANNEL: &[pg_sys::Oid] = &[pg_sys::TEXTOID, pg_sys::INT2OID];
const CHANNEL_AND_MEMBERS: &[pg_sys::Oid] = &[pg_sys::TEXTOID, pg_sys::INT2OID, pg_sys::TEXTARRAYOID];

/// The greatest last message of the members' rows, and when (the channel row is made of them).
const MEMBERS_LAST: Statement = Statement {
    sql: "SELECT COALESCE(max(c.last_msg_seq), 0), COALESCE(max(c.updated_at), now()) \
          FROM {table} AS c WHERE c.channel_id = $1 AND c.channel_type = $2 AND c.uid = ANY ($3)",
    parameters: CHANNEL_AND_MEMBERS,
    snapshot: Snapshot::Fresh,
};

/// The channel row (as the table's owner); none made if there is one: the channel is large.
const CHANNEL_ROW: Statement = Statement {
    sql: "INSERT INTO {channels} AS s (channel_id, channel_type, last_msg_seq, updated_at) VALUES ($1, $2, $3, $4) \
          ON CONFLICT (channel_id, channel_type) DO UPDATE SET channel_id = s.channel_id \
          RETURNING s.last_msg_seq, s.updated_at",
    parameters: &[pg_sys::TEXTOID, pg_sys::INT2OID, pg_sys::INT8OID, pg_sys::TIMESTAMPTZOID],
    snapshot: Snapshot::Fresh,
};

/// The members' rows become memberships counted to the channel row ($4): their unread counts
/// kept, the messages they did not get (a member who joined late) not counted. Also what a
/// message does to the members it names that are not memberships yet (message_large.rs).
pub(crate) const MEMBERSHIPS: Statement = Statement {
    sql: "UPDATE {table} AS c SET large = true, last_msg_seq = GREATEST(c.last_msg_seq, $4) \
          WHERE c.channel_id = $1 AND c.channel_type = $2 AND c.uid = ANY ($3) AND NOT c.large \
          RETURNING 1",
    parameters: &[pg_sys::TEXTOID, pg_sys::INT2OID, pg_sys::TEXTARRAYOID, pg_sys::INT8OID],
    snapshot: Snapshot::Fresh,
};

/// The memberships the channel ($3, $4: its row) moved past, as they stand (materialize.rs)...
const AS_THEY_STAND: Statement = Statement {
    sql: concat!(
        "UPDATE {table} AS c SET ",
        as_it_stands!("$3", "$4"),
        " WHERE c.channel_id = $1 AND c.channel_type = $2 AND c.large AND c.last_msg_seq < $3"
    ),
    parameters: &[pg_sys::TEXTOID, pg_sys::INT2OID, pg_sys::INT8OID, pg_sys::TIMESTAMPTZOID],
    snapshot: Snapshot::Fresh,
};

/// ... then every membership per member.
const PER_MEMBER: Statement = Statement {
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
        if !channels_on_every_node(&table) {
            errors::large_channel_on_citus();
        }
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
            let names = &table.table.names;
            let channel = [arg(text_datum(members.channel_id)), arg(pg_sys::Datum::from(members.channel_type))];
            let schema = table.table.schema;
            if let Some(row) = ChannelTable::open(schema).channel(members.channel_id, members.channel_type, Snapshot::Fresh) {
                let [channel_id, channel_type] = channel;
                let at = [channel_id, channel_type, arg(pg_sys::Datum::from(row.last_msg_seq)), arg(pg_sys::Datum::from(row.updated_at))];
                run(statements, &prepared(statements, names, &AS_THEY_STAND), &at);
            }
            // Memberships without a channel row (a DBA deleted it) too: per member, as counted.
            let changed = run(statements, &prepared(statements, names, &PER_MEMBER), &channel).len();
            as_owner_of(channel_table::required_in(schema), || run(statements, &prepared(statements, names, &DROP_CHANNEL_ROW), &channel));
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
    let names = &table.table.names;
    let (channel_id, channel_type) = (arg(text_datum(members.channel_id)), arg(pg_sys::Datum::from(members.channel_type)));
    let uids = arg(text_array_datum(members.keys.iter().map(|m| m.key.uid)));
    let last = run(statements, &prepared(statements, names, &MEMBERS_LAST), &[channel_id, channel_type, uids]);
    let (last_msg_seq, updated_at) =
        (last.value(0, 1).unwrap_or(pg_sys::Datum::from(0)), last.value(0, 2).unwrap_or(pg_sys::Datum::from(0)));
    let row = as_owner_of(channel_table::required_in(table.table.schema), || {
        run(statements, &prepared(statements, names, &CHANNEL_ROW), &[channel_id, channel_type, arg(last_msg_seq), arg(updated_at)])
    });
    let channel_last = row.value(0, 1).unwrap_or(last_msg_seq);
    run(statements, &prepared(statements, names, &MEMBERSHIPS), &[channel_id, channel_type, uids, arg(channel_last)]).len() as i64
}

/// Whether every node that reads `table` holds the channel rows: on Citus, only once the channel
/// table is a reference table (conversation_distribute, 0.11.0); the members' lists are read on
/// the nodes of their shards.
fn channels_on_every_node(table: &OpenTable) -> bool {
    !table.table.distributed || channel_table::on_every_node(table.table.schema)
}

/// A message's own mode change: the per-member channel of `members` (all of one channel, as a
/// message names them) made large with them, if they are at least the setting's count, no other
/// transaction holds the channel's lock, and large channels can be had here (on Citus, with the
/// channel table on every node; not before 0.10.0's update).
/// Returns whether it was made large.
pub fn made_large_by_message(statements: &Statements, table: &OpenTable, members: &[PositionedKey<'_>]) -> bool {
    let Some(first) = members.first() else { return false };
    let schema = table.table.schema;
    if !settings::makes_large(members.len()) || !channels_on_every_node(table) || ChannelTable::for_messages(schema).is_none() {
        return false;
    }
    let (channel_id, channel_type) = (first.key.channel_id, first.key.channel_type);
    if !channel_lock::try_exclusive(channel_id, channel_type) {
        return false;
    }
    make_large(statements, table, &Members { channel_id, channel_type, keys: members.to_vec() });
    true
}
