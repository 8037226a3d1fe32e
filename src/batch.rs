//! Batch get-or-create: the conversations of many keys in one call, set-based.
//!
//! find all (direct probes of the key index, as the single-key hit path) -> insert the missing,
//! in key order (one statement) -> find what the insert met but could not see -> return every row
//! with its input position.
//!
//! - Fan-out: one call for the members of a channel (`uids text[]`), or any keys (jsonb array).
//! - Keys are folded and sorted (`batch_keys.rs`), and the INSERT takes them in that order. An
//!   insert waits on a conflicting uncommitted row, so two batches meet in the same order on every
//!   shared key: the later one waits for the earlier instead of deadlocking, whatever order their
//!   callers listed the keys in.
//! - Rows that exist are never proposed to the INSERT, so they cost no sequence value.
//! - No advisory locks: the unique index already makes a racing batch wait for the winner, and one
//!   lock per key would fill the shared lock table on large batches.
//! - Same guarantees as the single-key function: one row per key, never NULL, no 23505, and 40001
//!   (with a hint) when a row was committed after a REPEATABLE READ / SERIALIZABLE snapshot.

use std::collections::HashMap;

use pgrx::datum::TimestampWithTimeZone;
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use pgrx::JsonB;

use crate::batch_keys::{self, PositionedKey};
use crate::errors;
use crate::find::{IndexProbe, Relations};
use crate::key::ConversationKey;
use crate::kept::{extension_schema, kept, PinnedSearchPath, Statement};
use crate::stats;

/// Rounds of find -> insert before giving up on keys that are deleted as fast as they are made.
const MAX_ROUNDS: usize = 3;

// The columns a batch returns, in COLUMN_NAMES' order.
macro_rules! columns {
    () => {
        "c.id, c.uid, c.channel_id, c.channel_type, c.type, c.unread_count, c.readed_to_msg_seq, \
         c.last_msg_seq, c.deleted_at_msg_seq, c.created_at, c.updated_at"
    };
}

const KEY_ARRAYS: &[pg_sys::Oid] = &[pg_sys::TEXTARRAYOID, pg_sys::TEXTARRAYOID, pg_sys::INT2ARRAYOID];

// ORDER BY the input's ordinality: the keys arrive sorted, and this keeps the insert (and so the
// order in which it waits on other transactions' rows) in that order whatever plan is chosen.
const INSERT_MANY: Statement = Statement {
    name: "insert_many",
    sql: concat!(
        "INSERT INTO {schema}.conversation AS c (uid, channel_id, channel_type) \
         SELECT k.uid, k.channel_id, k.channel_type \
         FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2), pg_catalog.unnest($3)) WITH ORDINALITY AS k(uid, channel_id, channel_type, n) \
         ORDER BY k.n \
         ON CONFLICT (uid, channel_id, channel_type) DO NOTHING RETURNING ",
        columns!()
    ),
    parameters: KEY_ARRAYS,
};

/// One conversation row, as a batch returns it.
pub struct Conversation {
    id: i64,
    uid: String,
    channel_id: String,
    channel_type: i16,
    kind: i16,
    unread_count: i32,
    readed_to_msg_seq: i64,
    last_msg_seq: i64,
    deleted_at_msg_seq: i64,
    created_at: TimestampWithTimeZone,
    updated_at: TimestampWithTimeZone,
}

type KeyOf = (String, String, i16);

/// Attribute numbers of the columns a batch returns, in `Conversation`'s order: looked up by name
/// once per call, so they stay right whatever columns later releases add.
struct Columns([usize; 11]);

const COLUMN_NAMES: [&std::ffi::CStr; 11] = [
    c"id", c"uid", c"channel_id", c"channel_type", c"type", c"unread_count", c"readed_to_msg_seq",
    c"last_msg_seq", c"deleted_at_msg_seq", c"created_at", c"updated_at",
];

impl Columns {
    fn of(table: pg_sys::Oid) -> Columns {
        Columns(COLUMN_NAMES.map(|name| {
            // SAFETY: a syscache lookup; InvalidAttrNumber (0) when missing.
            let attnum = unsafe { pg_sys::get_attnum(table, name.as_ptr()) };
            if attnum <= 0 {
                errors::broken_install(&format!("table conversation has no column {}", name.to_string_lossy()));
            }
            attnum as usize
        }))
    }
}

impl Conversation {
    /// Builds a row from its column values, `value(i)` giving the datum and null flag of the
    /// i-th column of COLUMN_NAMES.
    fn from_values(value: impl Fn(usize) -> (pg_sys::Datum, bool)) -> Conversation {
        fn get<T: FromDatum>((datum, is_null): (pg_sys::Datum, bool)) -> T {
            // SAFETY: `value` hands out datums of the column's own type; FromDatum copies (and
            // detoasts) what it reads, so nothing points into the source afterwards.
            unsafe { T::from_datum(datum, is_null) }.expect("conversation columns are NOT NULL")
        }
        Conversation {
            id: get(value(0)),
            uid: get(value(1)),
            channel_id: get(value(2)),
            channel_type: get(value(3)),
            kind: get(value(4)),
            unread_count: get(value(5)),
            readed_to_msg_seq: get(value(6)),
            last_msg_seq: get(value(7)),
            deleted_at_msg_seq: get(value(8)),
            created_at: get(value(9)),
            updated_at: get(value(10)),
        }
    }

    /// The row in `slot` (a slot of the conversation table).
    fn from_slot(slot: *mut pg_sys::TupleTableSlot, columns: &Columns) -> Conversation {
        // SAFETY: the slot holds a row of the table; after slot_getallattrs every attribute's
        // value and null flag are in tts_values / tts_isnull.
        unsafe {
            pg_sys::slot_getallattrs(slot);
            Conversation::from_values(|i| {
                let at = columns.0[i] - 1;
                (*(*slot).tts_values.add(at), *(*slot).tts_isnull.add(at))
            })
        }
    }

    /// The `row`-th row (0-based) of the last SPI result, a RETURNING columns!() row, whose
    /// columns are in COLUMN_NAMES' order. Call it while that result is alive.
    fn from_spi_result(row: usize) -> Conversation {
        // SAFETY: SPI_tuptable is the live result of the statement just run, with more than
        // `row` rows; heap_getattr range-checks the attribute number.
        unsafe {
            let table = pg_sys::SPI_tuptable;
            let tuple = *(*table).vals.add(row);
            Conversation::from_values(|i| {
                let mut is_null = false;
                let datum = pg_sys::heap_getattr(tuple, (i + 1) as i32, (*table).tupdesc, &mut is_null);
                (datum, is_null)
            })
        }
    }

    fn key(&self) -> KeyOf {
        (self.uid.clone(), self.channel_id.clone(), self.channel_type)
    }
}

fn key_of(key: &ConversationKey<'_>) -> KeyOf {
    (key.uid.to_string(), key.channel_id.to_string(), key.channel_type)
}

/// The conversation of every key (already folded and ordered), creating the missing ones.
/// Returned in the order of `keys`.
pub fn get_or_create_many(client: &SpiClient<'_>, schema: pg_sys::Oid, keys: &[PositionedKey<'_>]) -> Vec<Conversation> {
    let _pinned = PinnedSearchPath::push();
    let relations = Relations::in_schema(schema);
    let channel_index = Relations::channel_index(schema);
    let columns = Columns::of(relations.table);
    let mut found: HashMap<KeyOf, Conversation> = HashMap::with_capacity(keys.len());
    let mut missing: Vec<ConversationKey<'_>> = keys.iter().map(|k| k.key).collect();
    let mut created = 0;
    for _ in 0..MAX_ROUNDS {
        find_many(relations, channel_index, &columns, &missing, &mut found);
        missing.retain(|key| !found.contains_key(&key_of(key)));
        if missing.is_empty() {
            break;
        }
        let before = found.len();
        errors::hint_retry_on_snapshot_conflict(|| insert_many(client, schema, &missing, &mut found));
        created += found.len() - before;
        // What is still missing met a row committed since the find's snapshot: under READ
        // COMMITTED the next round's find sees it.
        missing.retain(|key| !found.contains_key(&key_of(key)));
        if missing.is_empty() {
            break;
        }
    }
    if !missing.is_empty() {
        errors::deleted_while_creating();
    }
    stats::count_batch(keys.len(), created);
    keys.iter()
        .map(|k| found.remove(&key_of(&k.key)).expect("every key was found or created"))
        .collect()
}

/// Probes the key index for every key, skipping the keys of channels that have no conversation
/// at all: a fan-out to a new channel then costs one probe, not one per member. Each probe takes
/// its snapshot as the single-key check takes it (under READ COMMITTED fresh, so a later round
/// sees what the insert met); a row committed between the two probes is met by the insert's
/// ON CONFLICT and found by the next round.
fn find_many(
    relations: Relations,
    channel_index: pg_sys::Oid,
    columns: &Columns,
    keys: &[ConversationKey<'_>],
    found: &mut HashMap<KeyOf, Conversation>,
) {
    let mut channels: HashMap<(&str, i16), bool> = HashMap::new();
    let mut channel_probe = IndexProbe::open(relations.table, channel_index, 2);
    for key in keys {
        channels
            .entry((key.channel_id, key.channel_type))
            .or_insert_with(|| channel_probe.channel_has_rows(key.channel_id, key.channel_type));
    }
    channel_probe.finish();
    if !channels.values().any(|&has_rows| has_rows) {
        return;
    }
    let mut probe = IndexProbe::key_index(relations);
    for key in keys {
        if !channels[&(key.channel_id, key.channel_type)] {
            continue;
        }
        if let Some(slot) = probe.probe(key) {
            found.insert(key_of(key), Conversation::from_slot(slot, columns));
        }
    }
    probe.finish();
}

/// Inserts the rows of `keys` (in their order), adding the rows it created to `found`.
fn insert_many(
    client: &SpiClient<'_>,
    schema: pg_sys::Oid,
    keys: &[ConversationKey<'_>],
    found: &mut HashMap<KeyOf, Conversation>,
) {
    let kept = kept(client, schema, &INSERT_MANY);
    let uids: Vec<&str> = keys.iter().map(|k| k.uid).collect();
    let channel_ids: Vec<&str> = keys.iter().map(|k| k.channel_id).collect();
    let channel_types: Vec<i16> = keys.iter().map(|k| k.channel_type).collect();
    let args = [uids.into(), channel_ids.into(), channel_types.into()];
    let table = client
        .select(&kept.statement, None, &args)
        .unwrap_or_else(|error| errors::broken_install(&error.to_string()));
    for row in 0..table.len() {
        let conversation = Conversation::from_spi_result(row);
        found.insert(conversation.key(), conversation);
    }
}

/// Rows in input order: by the position of each key's first occurrence.
fn result_rows(keys: &[PositionedKey<'_>], rows: Vec<Conversation>) -> TableIterator<'static, (
        name!(input_position, i32),
        name!(id, i64),
        name!(uid, String),
        name!(channel_id, String),
        name!(channel_type, i16),
        name!(kind, i16),
        name!(unread_count, i32),
        name!(readed_to_msg_seq, i64),
        name!(last_msg_seq, i64),
        name!(deleted_at_msg_seq, i64),
        name!(created_at, TimestampWithTimeZone),
        name!(updated_at, TimestampWithTimeZone),
    )> {
    let mut positioned: Vec<(i32, Conversation)> = keys.iter().map(|k| k.position).zip(rows).collect();
    positioned.sort_by_key(|(position, _)| *position);
    TableIterator::new(positioned.into_iter().map(|(position, c)| {
        (
            position,
            c.id,
            c.uid,
            c.channel_id,
            c.channel_type,
            c.kind,
            c.unread_count,
            c.readed_to_msg_seq,
            c.last_msg_seq,
            c.deleted_at_msg_seq,
            c.created_at,
            c.updated_at,
        )
    }))
}

/// get_or_create_conversations(keys jsonb): declared in sql/, not by pgrx.
#[pg_extern(sql = false)]
fn get_or_create_conversations_from_jsonb(keys: Option<JsonB>) -> TableIterator<'static, (
        name!(input_position, i32),
        name!(id, i64),
        name!(uid, String),
        name!(channel_id, String),
        name!(channel_type, i16),
        name!(kind, i16),
        name!(unread_count, i32),
        name!(readed_to_msg_seq, i64),
        name!(last_msg_seq, i64),
        name!(deleted_at_msg_seq, i64),
        name!(created_at, TimestampWithTimeZone),
        name!(updated_at, TimestampWithTimeZone),
    )> {
    let Some(JsonB(keys)) = keys else { errors::null_argument("keys") };
    let parsed = batch_keys::parse_json_keys(&keys).unwrap_or_else(|error| errors::invalid_batch("keys", error));
    let batch = batch_keys::json_batch(&parsed).unwrap_or_else(|error| errors::invalid_batch("keys", error));
    let rows = Spi::connect(|client| get_or_create_many(&client, extension_schema(&client), &batch));
    result_rows(&batch, rows)
}

/// get_or_create_conversations(channel_id, channel_type, uids text[]): the members of one channel.
#[pg_extern(sql = false)]
fn get_or_create_conversations_for_members(
    channel_id: Option<&str>,
    channel_type: Option<i32>,
    uids: Option<Array<'_, &str>>,
) -> TableIterator<'static, (
        name!(input_position, i32),
        name!(id, i64),
        name!(uid, String),
        name!(channel_id, String),
        name!(channel_type, i16),
        name!(kind, i16),
        name!(unread_count, i32),
        name!(readed_to_msg_seq, i64),
        name!(last_msg_seq, i64),
        name!(deleted_at_msg_seq, i64),
        name!(created_at, TimestampWithTimeZone),
        name!(updated_at, TimestampWithTimeZone),
    )> {
    let Some(uids) = uids else { errors::null_argument("uids") };
    let uids: Vec<Option<&str>> = uids.iter().collect();
    let batch = batch_keys::member_batch(channel_id, channel_type.map(i64::from), &uids)
        .unwrap_or_else(|error| errors::invalid_batch("uids", error));
    let rows = Spi::connect(|client| get_or_create_many(&client, extension_schema(&client), &batch));
    result_rows(&batch, rows)
}
