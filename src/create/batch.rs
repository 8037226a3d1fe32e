//! Batch get-or-create: the conversations of many keys in one call, set-based.
//!
//! find all (direct probes of the key index where catalog.rs places the keys, one SELECT for the
//! rest) -> insert the missing, in key order (one statement) -> find what the insert met but
//! could not see -> return every row with its input position.
//!
//! - Fan-out: one call for the members of a channel (`uids text[]`), or any keys (JSON).
//! - Keys are folded and sorted (`batch_keys.rs`), and the INSERT takes them in that order. An
//!   insert waits on a conflicting uncommitted row, so two batches meet in the same order on every
//!   shared key: the later one waits for the earlier instead of deadlocking, whatever order their
//!   callers listed the keys in.
//! - Rows that exist are never proposed to the INSERT, so they cost no sequence value.
//! - No advisory locks: the unique index already makes a racing batch wait for the winner, and one
//!   lock per key would fill the shared lock table on large batches.
//! - Same guarantees as the single-key function: one row per key, never NULL, no 23505, and 40001
//!   (with a hint) when a row was committed after a REPEATABLE READ / SERIALIZABLE snapshot.
//! - Input is measured before it is read (`call.rs`, `batch_json.rs`): a batch over the limit is
//!   refused in constant memory.

use std::collections::{HashMap, HashSet};
use std::ffi::CStr;

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::create::insert::ROUNDS_AGAINST_DELETES;
use crate::glue::call::{raw_size, refuse_writes_if_read_only, sql_function, text_array_datum, varlena_bytes, ArrayError, Call};
use crate::glue::errors;
use crate::glue::stats;
use crate::input::batch_json;
use crate::input::batch_keys::{self, BatchError, PositionedKey, MAX_BATCH_KEYS};
use crate::input::key::ConversationKey;
use crate::relation::catalog::OpenTable;
use crate::relation::membership::{self, Memberships};
use crate::relation::placement::Placement;
use crate::relation::probe::{IndexProbe, Snapshot};
use crate::relation::result_row::{ColumnMap, INPUT_POSITION};
use crate::relation::statements::{arg, connect, prepared, run, Statement, Statements};
use crate::relation::table::IntWidth;

const KEY_ARRAYS: &[pg_sys::Oid] = &[pg_sys::TEXTARRAYOID, pg_sys::TEXTARRAYOID, pg_sys::INT2ARRAYOID];

// ORDER BY the input's ordinality: the keys arrive sorted, and this keeps the insert (and so the
// order in which it waits on other transactions' rows) in that order whatever plan is chosen.
// Inside a CTE, so that the statement's result is the rows the INSERT returned: Citus counts an
// INSERT ... SELECT's rows as those it sent, and SPI refuses a count that is not what it received.
const INSERT_MANY: Statement = Statement {
    sql: "WITH inserted AS ( \
              INSERT INTO {table} AS c (uid, channel_id, channel_type) \
              SELECT k.uid, k.channel_id, k.channel_type \
              FROM ROWS FROM (unnest($1), unnest($2), unnest($3)) WITH ORDINALITY AS k(uid, channel_id, channel_type, n) \
              ORDER BY k.n \
              ON CONFLICT (uid, channel_id, channel_type) DO NOTHING \
              RETURNING {columns}) \
          SELECT * FROM inserted",
    parameters: KEY_ARRAYS,
    snapshot: Snapshot::Fresh,
};

/// The rows of keys the table's layout gives no relation to probe: one SELECT, routed by
/// PostgreSQL (or Citus), of every row whose uid, channel_id and channel_type are among the keys';
/// the rows of exactly the keys asked for are kept.
const FIND_MANY: Statement = Statement {
    sql: "SELECT {columns} FROM {table} AS c \
          WHERE c.uid = ANY ($1) AND c.channel_id = ANY ($2) AND c.channel_type = ANY ($3)",
    parameters: KEY_ARRAYS,
    snapshot: Snapshot::Fresh,
};

/// A key, owned, as found rows are filed under it.
type KeyOf = (Vec<u8>, Vec<u8>, i16);

fn key_of(key: &ConversationKey<'_>) -> KeyOf {
    (key.uid.to_vec(), key.channel_id.to_vec(), key.channel_type)
}

/// A row found or created, and the descriptor it is a row of: a relation's (copied) or a
/// statement result's. Both live until the SPI connection ends.
#[derive(Clone, Copy)]
pub struct Row {
    tuple: pg_sys::HeapTuple,
    desc: pg_sys::TupleDesc,
}

/// The rows found or created, by key.
pub type Rows = HashMap<KeyOf, Row>;

impl Row {
    /// The row of `key` among `rows`.
    pub fn of<'r>(rows: &'r Rows, key: &ConversationKey<'_>) -> Option<&'r Row> {
        rows.get(&key_of(key))
    }
}

/// An integer column (smallint, integer or bigint) read from found rows by name, its place looked
/// up once per descriptor: the rows of one relation share one.
pub struct IntegerColumn {
    name: &'static CStr,
    /// The last descriptor met, and the column's number and width there (None: it has no such
    /// integer column).
    known: Option<(pg_sys::TupleDesc, Option<(i32, IntWidth)>)>,
}

impl IntegerColumn {
    pub fn named(name: &'static CStr) -> IntegerColumn {
        IntegerColumn { name, known: None }
    }

    /// Its value in `row`: None where the row has no such column, or of another type (a table a
    /// DBA altered), or it is NULL.
    pub fn of(&mut self, row: &Row) -> Option<i64> {
        // SAFETY: a row of its descriptor, both alive until SPI_finish; the column is one of the
        // descriptor's, found in it.
        unsafe {
            let place = match self.known {
                Some((desc, place)) if desc == row.desc => place,
                _ => {
                    let attnum = pg_sys::SPI_fnumber(row.desc, self.name.as_ptr());
                    let type_oid = if attnum > 0 { pg_sys::SPI_gettypeid(row.desc, attnum) } else { pg_sys::InvalidOid };
                    let place = matches!(type_oid, pg_sys::INT2OID | pg_sys::INT4OID | pg_sys::INT8OID)
                        .then(|| (attnum, IntWidth::of_type(type_oid)));
                    self.known = Some((row.desc, place));
                    place
                }
            };
            let (attnum, width) = place?;
            let mut null = false;
            let datum = pg_sys::heap_getattr(row.tuple, attnum as _, row.desc, &mut null);
            (!null).then(|| width.value(datum))
        }
    }
}

sql_function! {
    /// get_or_create_conversations(keys jsonb). The element count is read from the binary value
    /// before anything else; the value is then read as JSON text by the same parser as the text
    /// form. (jsonb has already kept only the last of repeated fields: it cannot report them.)
    fn get_or_create_conversations_jsonb(call) {
        let Some(datum) = call.datum(0) else { errors::null_argument("keys") };
        // Measured before it is read: first its whole size, then, from its first word alone, its
        // element count, which bounds the size again (an element with a huge unknown field is
        // refused by its size, never converted).
        // SAFETY: a jsonb argument: its size from its header or toast pointer, its root header
        // from a slice of its first 4 bytes, then the whole value detoasted into the call's
        // context; JsonbToCString reads it.
        let text = unsafe {
            let bytes = raw_size(datum);
            if bytes > max_jsonb_bytes(MAX_BATCH_KEYS) {
                errors::invalid_batch("keys", BatchError::TooLarge { bytes, limit: max_jsonb_bytes(MAX_BATCH_KEYS) });
            }
            let first_word = pg_sys::pg_detoast_datum_slice(datum.cast_mut_ptr(), 0, 4);
            let header = (pgrx::varlena::vardata_any(first_word) as *const u32).read_unaligned();
            if header & pg_sys::JB_FARRAY == 0 || header & pg_sys::JB_FSCALAR != 0 {
                errors::invalid_batch("keys", BatchError::NotAnArray);
            }
            let count = (header & pg_sys::JB_CMASK) as usize;
            if count > MAX_BATCH_KEYS {
                errors::invalid_batch("keys", BatchError::TooMany { count });
            }
            if bytes > max_jsonb_bytes(count) {
                errors::invalid_batch("keys", BatchError::TooLarge { bytes, limit: max_jsonb_bytes(count) });
            }
            let jsonb = pg_sys::pg_detoast_datum(datum.cast_mut_ptr()) as *mut pg_sys::Jsonb;
            let text = pg_sys::JsonbToCString(std::ptr::null_mut(), &mut (*jsonb).root, pgrx::varsize_any(jsonb.cast()) as i32);
            std::ffi::CStr::from_ptr(text).to_bytes()
        };
        respond_to_json(call, text)
    }
}

sql_function! {
    /// get_or_create_conversations(keys text): JSON text, read strictly (a repeated field is an
    /// error). An unknown-typed literal or parameter resolves to this form.
    fn get_or_create_conversations_text(call) {
        let text = match call.text_at_most(0, max_json_text_bytes(MAX_BATCH_KEYS)) {
            None => errors::null_argument("keys"),
            Some(Err(bytes)) => errors::invalid_batch("keys", BatchError::TooLarge { bytes, limit: max_json_text_bytes(MAX_BATCH_KEYS) }),
            Some(Ok(text)) => text,
        };
        respond_to_json(call, text)
    }
}

sql_function! {
    /// get_or_create_conversations(channel_id, channel_type, uids text[]): the members of one
    /// channel.
    fn get_or_create_conversations_members(call) {
        let uids = match call.text_array(2, MAX_BATCH_KEYS) {
            None => errors::null_argument("uids"),
            Some(Err(error)) => errors::invalid_batch("uids", array_error(error)),
            Some(Ok(uids)) => uids,
        };
        let batch = batch_keys::member_batch(call.id_text(0, "channel_id"), call.int32(1).map(i64::from), &uids)
            .unwrap_or_else(|error| errors::invalid_batch("uids", error));
        respond(call, &batch, "get_or_create_conversations")
    }
}

/// The most bytes a jsonb batch of `count` keys can take: an object of the three fields, each
/// string at most MAX_ID_BYTES, is under 600 bytes in jsonb's binary form; 1 kB each leaves room
/// for channel_type written as a long number, which is judged by its value. Never less than
/// 1 MB, so that a small malformed batch is refused for what is wrong with it, element by element.
fn max_jsonb_bytes(count: usize) -> usize {
    (64 + count * 1024).max(1 << 20)
}

/// The most bytes a JSON text batch of `count` keys can take: room for every byte of both ids
/// written as a \uXXXX escape, the field names and some whitespace.
fn max_json_text_bytes(count: usize) -> usize {
    64 + count * 4096
}

pub fn array_error(error: ArrayError) -> BatchError {
    match error {
        ArrayError::NotOneDimensional { dimensions } => BatchError::NotOneDimensional { dimensions },
        ArrayError::TooMany { count } => BatchError::TooMany { count },
        ArrayError::TooLarge { bytes, limit } => BatchError::TooLarge { bytes, limit },
    }
}

/// JSON text in the database encoding: as UTF-8 for the parser, and each string back in the
/// database encoding for the key. PostgreSQL converts both ways (and refuses, 22021 / 22P05, what
/// has no equivalent).
fn respond_to_json(call: &Call, text: &[u8]) -> pg_sys::Datum {
    // SAFETY: pg_server_to_any returns its input or a palloc'd conversion, valid UTF-8 either way
    // (it validates when the database is SQL_ASCII).
    let utf8 = unsafe {
        let converted = pg_sys::pg_server_to_any(text.as_ptr().cast(), text.len() as i32, pg_sys::pg_enc::PG_UTF8 as i32);
        let bytes = if converted.cast_const() == text.as_ptr().cast() { text } else { std::ffi::CStr::from_ptr(converted).to_bytes() };
        std::str::from_utf8(bytes).unwrap_or_else(|_| errors::invalid_batch("keys", BatchError::Syntax("not UTF-8".into())))
    };
    let elements = batch_json::parse(utf8).unwrap_or_else(|error| errors::invalid_batch("keys", error));
    let batch = batch_json::json_batch(&elements, |text| {
        // SAFETY: converts valid UTF-8 into the database encoding, palloc'd (or `text` itself).
        unsafe {
            let converted = pg_sys::pg_any_to_server(text.as_ptr().cast(), text.len() as i32, pg_sys::pg_enc::PG_UTF8 as i32);
            if converted.cast_const() == text.as_ptr().cast() {
                text.as_bytes()
            } else {
                std::ffi::CStr::from_ptr(converted).to_bytes()
            }
        }
    })
    .unwrap_or_else(|error| errors::invalid_batch("keys", error));
    respond(call, &batch, "get_or_create_conversations")
}

/// Gets or creates every key's row and returns them, in input order, as the declared rows.
fn respond(call: &Call, keys: &[PositionedKey<'_>], function: &str) -> pg_sys::Datum {
    // The function's own catalog entry first: materializing reads its result type from there.
    call.schema();
    let output = call.materialize();
    let table = OpenTable::for_call(call);
    connect(|statements| {
        let mut rows = get_or_create_many(statements, &table, keys, function);
        let mut positioned: Vec<&PositionedKey<'_>> = keys.iter().collect();
        positioned.sort_by_key(|k| k.position);
        // One map per descriptor met (the table's, each partition's, a statement's), by name,
        // and where the descriptor has large.
        let mut maps: Vec<(pg_sys::TupleDesc, ColumnMap, i32)> = Vec::new();
        let mut memberships = Memberships::new(table.table.schema, Snapshot::Fresh);
        for k in positioned {
            let row = rows.remove(&key_of(&k.key)).expect("every key was found or created");
            if !maps.iter().any(|(desc, _, _)| *desc == row.desc) {
                // SAFETY: a valid descriptor.
                let large = unsafe { membership::large_column(row.desc) };
                maps.push((row.desc, ColumnMap::new(row.desc, output.desc, &[INPUT_POSITION]), large));
            }
            let (_, map, large) = maps.iter().find(|(desc, _, _)| *desc == row.desc).expect("just added");
            // SAFETY: a row of its descriptor, alive until SPI_finish.
            let (values, nulls) = unsafe { memberships.values_of(row.tuple, row.desc, *large) };
            let (values, nulls) = map.fill(&values, &nulls, &[Some(pg_sys::Datum::from(k.position))]);
            output.push(&values, &nulls);
        }
    });
    call.return_null()
}

/// The rows of every key (already folded and ordered), creating the missing ones.
pub fn get_or_create_many(statements: &Statements, table: &OpenTable, keys: &[PositionedKey<'_>], function: &str) -> Rows {
    let mut found = Rows::with_capacity(keys.len());
    let mut missing: Vec<ConversationKey<'_>> = keys.iter().map(|k| k.key).collect();
    let mut created = 0;
    for _ in 0..ROUNDS_AGAINST_DELETES {
        find_many(statements, table, &missing, &mut found);
        missing.retain(|key| !found.contains_key(&key_of(key)));
        if missing.is_empty() {
            break;
        }
        refuse_writes_if_read_only(function);
        let before = found.len();
        errors::hint_retry_on_snapshot_conflict(|| file_rows(statements, table, &INSERT_MANY, &missing, &mut found));
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
    found
}

/// Which of `keys` have no row now (READ COMMITTED: a fresh snapshot).
pub fn missing<'a>(statements: &Statements, table: &OpenTable, keys: &[PositionedKey<'a>]) -> Vec<PositionedKey<'a>> {
    let mut found = Rows::with_capacity(keys.len());
    find_many(statements, table, &keys.iter().map(|k| k.key).collect::<Vec<_>>(), &mut found);
    keys.iter().filter(|k| !found.contains_key(&key_of(&k.key))).copied().collect()
}

/// Finds the rows of `keys` that exist. On a plain table, keys of channels that have no
/// conversation at all are not probed: a fan-out to a new channel costs one probe of the channel
/// index, not one per member. Each probe takes its snapshot as the single-key check takes it
/// (under READ COMMITTED fresh, so a later round sees what the insert met); a row committed
/// between the two is met by the insert's ON CONFLICT and found by the next round.
fn find_many(statements: &Statements, table: &OpenTable, keys: &[ConversationKey<'_>], found: &mut Rows) {
    let new_channels = new_channels(table, keys);
    let mut by_sql: Vec<ConversationKey<'_>> = Vec::new();
    // One probe per relation holding keys (the table, or each partition or shard met), and a copy
    // of its descriptor, which outlives the relation's closing. Each probe is dropped (closed)
    // before its placement.
    let mut probes: Vec<(pg_sys::Oid, IndexProbe, Placement, pg_sys::TupleDesc)> = Vec::new();
    for key in keys {
        if new_channels.contains(&(key.channel_id, key.channel_type)) {
            continue;
        }
        let placement = table.placement(key);
        let Placement::Direct { heap, index, .. } = placement else {
            by_sql.push(*key);
            continue;
        };
        let at = match probes.iter().position(|(oid, _, _, _)| *oid == index) {
            Some(at) => at,
            None => {
                let probe = IndexProbe::open(heap, index, 3, Snapshot::Fresh);
                // SAFETY: the open relation's descriptor, copied into the SPI context.
                let desc = unsafe { pg_sys::CreateTupleDescCopy((*heap).rd_att) };
                probes.push((index, probe, placement, desc));
                probes.len() - 1
            }
        };
        let (_, probe, _, desc) = &mut probes[at];
        if let Some(slot) = probe.key(&table.table, key) {
            // SAFETY: the slot holds the found row; the copy lives in the SPI context.
            let tuple = unsafe { pg_sys::ExecCopySlotHeapTuple(slot) };
            found.insert(key_of(key), Row { tuple, desc: *desc });
        }
    }
    drop(probes);
    if !by_sql.is_empty() {
        file_rows(statements, table, &FIND_MANY, &by_sql, found);
    }
}

/// The channels among `keys` that have no visible conversation, by one probe of the channel
/// index each (plain tables only: elsewhere every key is probed).
fn new_channels<'k>(table: &OpenTable, keys: &[ConversationKey<'k>]) -> Vec<(&'k [u8], i16)> {
    let Some(channel_index) = table.table.channel_index else { return Vec::new() };
    let mut channels: Vec<(&[u8], i16)> = keys.iter().map(|k| (k.channel_id, k.channel_type)).collect();
    channels.sort_unstable();
    channels.dedup();
    let mut probe = IndexProbe::open(table.relation, channel_index, 2, Snapshot::Fresh);
    channels.retain(|&(channel_id, channel_type)| !probe.channel_has_rows(&table.table, channel_id, channel_type));
    channels
}

/// Runs INSERT_MANY or FIND_MANY over `keys` (in their order) and files the rows it returns
/// (the table's columns) under their keys, those of `keys` only.
fn file_rows(statements: &Statements, table: &OpenTable, statement: &Statement, keys: &[ConversationKey<'_>], found: &mut Rows) {
    let prepared = prepared(statements, &table.table.names, statement);
    let channel_types: Vec<i16> = keys.iter().map(|k| k.channel_type).collect();
    let args = [
        arg(text_array_datum(keys.iter().map(|k| k.uid))),
        arg(text_array_datum(keys.iter().map(|k| k.channel_id))),
        arg(channel_types.into_datum().expect("an array")),
    ];
    let returned = run(statements, &prepared, &args);
    let wanted: HashSet<KeyOf> = keys.iter().map(key_of).collect();
    let column = |name: &CStr| {
        // SAFETY: the result's descriptor; SPI_fnumber returns a 1-based number or an error code.
        let number = unsafe { pg_sys::SPI_fnumber(returned.desc(), name.as_ptr()) };
        assert!(number > 0, "the statement returns the table's columns");
        number
    };
    let (uid, channel_id, channel_type) = (column(c"uid"), column(c"channel_id"), column(c"channel_type"));
    for row in 0..returned.len() {
        let value = |column| returned.value(row, column).expect("key columns are NOT NULL");
        // SAFETY: text key columns of the returned row, alive until SPI_finish; channel_type of
        // the table's integer type.
        let key = unsafe {
            (
                varlena_bytes(value(uid)).to_vec(),
                varlena_bytes(value(channel_id)).to_vec(),
                table.table.channel_type_of(value(channel_type)),
            )
        };
        if wanted.contains(&key) {
            found.insert(key, Row { tuple: returned.tuple(row), desc: returned.desc() });
        }
    }
}
