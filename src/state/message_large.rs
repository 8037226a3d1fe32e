//! A message to a large channel (docs/large-groups.md): it writes the channel's row and the
//! sender's, whatever the channel's size; each member's values are derived when read.
//!
//! Messages to one channel queue on its row (locked first). A message that names another member
//! set than the last one (its count and order-free digest differ) first brings the memberships in
//! line: members without one become memberships counting from the channel's last message before
//! this one (created if missing: this message is then unread for them, as per member), and
//! memberships no longer named are materialized and per member again, frozen as a message leaves
//! a user who left. A message naming the same set reads none of the members' rows. (A membership
//! deleted makes its channel forget the set (list/departures.rs); on Citus, whose shards cannot
//! write the channel table, a message counts the channel's memberships instead: an index-only
//! read per shard, no write.)
//!
//! Idempotent per seq: a message at or below the channel's last_msg_seq (a redelivery, a late
//! one) moves nothing. Returns how many conversations advanced: the members, or none.

use pgrx::pg_sys;

use crate::create::batch::get_or_create_many;
use crate::glue::call::{text_array_datum, text_datum};
use crate::input::batch_keys::PositionedKey;
use crate::relation::catalog::OpenTable;
use crate::relation::channel_table::{self, ChannelTable};
use crate::relation::probe::Snapshot;
use crate::relation::statements::{arg, arg_or_null, as_owner_of, prepared, run, Arg, Statement, Statements};
use crate::state::materialize::as_it_stands;
use crate::state::mode::MEMBERSHIPS;

const CHANNEL: [pg_sys::Oid; 2] = [pg_sys::TEXTOID, pg_sys::INT2OID];

/// The channel's row, locked: its last message, when, and the member set it knows. None: not
/// large. Run as the channel table's owner, as every statement on it alone.
const CHANNEL_ROW: Statement = Statement {
    sql: "SELECT s.last_msg_seq, s.updated_at, s.members, s.member_digest FROM {channels} AS s \
          WHERE s.channel_id = $1 AND s.channel_type = $2 FOR NO KEY UPDATE",
    parameters: &CHANNEL,
    snapshot: Snapshot::Fresh,
};

/// How many memberships the channel has (Citus: the set is known only if none left).
const MEMBERSHIP_COUNT: Statement = Statement {
    sql: "SELECT count(*)::int4 FROM {table} AS c WHERE c.channel_id = $1 AND c.channel_type = $2 AND c.large",
    parameters: &CHANNEL,
    snapshot: Snapshot::Fresh,
};

/// Memberships no longer named, as they stand with the channel at $4, $5 (materialize.rs)...
const LEFT_AS_THEY_STAND: Statement = Statement {
    sql: concat!(
        "UPDATE {table} AS c SET ",
        as_it_stands!("$4", "$5"),
        " WHERE c.channel_id = $1 AND c.channel_type = $2 AND c.large AND NOT (c.uid = ANY ($3)) AND c.last_msg_seq < $4"
    ),
    parameters: &[pg_sys::TEXTOID, pg_sys::INT2OID, pg_sys::TEXTARRAYOID, pg_sys::INT8OID, pg_sys::TIMESTAMPTZOID],
    snapshot: Snapshot::Fresh,
};

/// ... then per member.
const LEFT: Statement = Statement {
    sql: "UPDATE {table} AS c SET large = false \
          WHERE c.channel_id = $1 AND c.channel_type = $2 AND c.large AND NOT (c.uid = ANY ($3))",
    parameters: &[pg_sys::TEXTOID, pg_sys::INT2OID, pg_sys::TEXTARRAYOID],
    snapshot: Snapshot::Fresh,
};

const MEMBER_SET: Statement = Statement {
    sql: "UPDATE {channels} AS s SET members = $3, member_digest = $4 WHERE s.channel_id = $1 AND s.channel_type = $2",
    parameters: &[pg_sys::TEXTOID, pg_sys::INT2OID, pg_sys::INT4OID, pg_sys::INT8OID],
    snapshot: Snapshot::Fresh,
};

const ADVANCE: Statement = Statement {
    sql: "UPDATE {channels} AS s SET last_msg_seq = $3, updated_at = now() \
          WHERE s.channel_id = $1 AND s.channel_type = $2 AND s.last_msg_seq < $3 RETURNING 1",
    parameters: &[pg_sys::TEXTOID, pg_sys::INT2OID, pg_sys::INT8OID],
    snapshot: Snapshot::Fresh,
};

/// The sender read their own message, the channel's last now: every value a read sets, so no
/// materializing first (as per member: unread 0, back in the list).
const SENDER: Statement = Statement {
    sql: "UPDATE {table} AS c SET last_msg_seq = GREATEST(c.last_msg_seq, $4), readed_to_msg_seq = GREATEST(c.readed_to_msg_seq, $4), \
              unread_count = 0, hidden = false, updated_at = now() \
          WHERE c.uid = $3 AND c.channel_id = $1 AND c.channel_type = $2 AND c.large",
    parameters: &[pg_sys::TEXTOID, pg_sys::INT2OID, pg_sys::TEXTOID, pg_sys::INT8OID],
    snapshot: Snapshot::Fresh,
};

/// A message at `message_seq` to the channel of `members` (all of one channel), if it is large:
/// how many conversations advanced. None: the channel is not large (per member, message.rs).
pub fn arrived(
    statements: &Statements,
    table: &OpenTable,
    members: &[PositionedKey<'_>],
    message_seq: i64,
    sender_uid: Option<&[u8]>,
) -> Option<i32> {
    let key = members.first()?.key;
    let (names, schema) = (&table.table.names, table.table.schema);
    // Large only with a channel row (read directly: a per-member channel's message runs no
    // statement for it), in a database updated to 0.10.0.
    ChannelTable::for_messages(schema)?.channel(key.channel_id, key.channel_type, Snapshot::Fresh)?;
    let channel = [arg(text_datum(key.channel_id)), arg(pg_sys::Datum::from(key.channel_type))];
    let on_channel = |statement: &Statement, args: &[Arg]| {
        as_owner_of(channel_table::required_in(schema), || run(statements, &prepared(statements, names, statement), args))
    };
    let row = on_channel(&CHANNEL_ROW, &channel);
    if row.len() == 0 {
        return None;
    }
    let last_msg_seq = row.value(0, 1).map_or(0, |datum| datum.value() as i64);
    let updated_at = row.value(0, 2).unwrap_or(pg_sys::Datum::from(0));
    let known = (row.value(0, 3).map(|datum| datum.value() as i32), row.value(0, 4).map(|datum| datum.value() as i64));
    let (count, digest) = member_set(members);
    let [channel_id, channel_type] = channel;
    // On Citus a membership that left cannot have made the channel forget the set: counted.
    let someone_left = || {
        let memberships = run(statements, &prepared(statements, names, &MEMBERSHIP_COUNT), &[channel_id, channel_type]);
        memberships.value(0, 1).map(|datum| datum.value() as i32) != Some(count)
    };
    if known != (Some(count), Some(digest)) || (table.table.distributed && someone_left()) {
        get_or_create_many(statements, table, members, "conversation_message_arrived");
        let uids = arg(text_array_datum(members.iter().map(|m| m.key.uid)));
        let last = arg(pg_sys::Datum::from(last_msg_seq));
        // Members named that are not memberships yet, counting from the channel's last message.
        run(statements, &prepared(statements, names, &MEMBERSHIPS), &[channel_id, channel_type, uids, last]);
        run(statements, &prepared(statements, names, &LEFT_AS_THEY_STAND), &[channel_id, channel_type, uids, last, arg(updated_at)]);
        run(statements, &prepared(statements, names, &LEFT), &[channel_id, channel_type, uids]);
        on_channel(&MEMBER_SET, &[channel_id, channel_type, arg(pg_sys::Datum::from(count)), arg(pg_sys::Datum::from(digest))]);
    }
    let seq = arg(pg_sys::Datum::from(message_seq));
    if on_channel(&ADVANCE, &[channel_id, channel_type, seq]).len() == 0 {
        return Some(0);
    }
    if let Some(sender) = sender_uid.filter(|sender| members.iter().any(|m| m.key.uid == *sender)) {
        run(statements, &prepared(statements, names, &SENDER), &[channel_id, channel_type, arg_or_null(Some(text_datum(sender))), seq]);
    }
    Some(members.len() as i32)
}

unsafe extern "C" {
    /// common/hashfn.h (the hash of hash partitioning), which pgrx does not bind: pure, never raises.
    fn hash_bytes_extended(k: *const u8, keylen: i32, seed: u64) -> u64;
}

/// The member set of `members`: its size and the sum of a 64-bit hash of each uid (PostgreSQL's
/// hash_bytes_extended, seed 0: the same on every server and release), in any order.
fn member_set(members: &[PositionedKey<'_>]) -> (i32, i64) {
    let digest = members.iter().fold(0u64, |sum, m| {
        // SAFETY: hashes the bytes of a uid in hand.
        let hash = unsafe { hash_bytes_extended(m.key.uid.as_ptr(), m.key.uid.len() as i32, 0) };
        sum.wrapping_add(hash)
    });
    (members.len() as i32, digest as i64)
}
