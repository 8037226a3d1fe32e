//! Whether a conversation row is a membership of a large channel (column large, 0.9.0), and such
//! a row's values as they stand: what arrived since it was written, derived from its channel's
//! row by large.rs's rule. result_row.rs asks for every row a function returns; a per-member row
//! (every row of a table without the column too) costs it one attribute read.

use std::cell::Cell;
use std::ffi::CStr;

use pgrx::pg_sys;

use crate::glue::call::varlena_bytes;
use crate::glue::errors;
use crate::glue::invalidation;
use crate::relation::channel_rows::ChannelRows;
use crate::relation::channel_table::ChannelTable;
use crate::relation::large::{derived, Channel, Counted};
use crate::relation::probe::{slot_value, Snapshot};

/// The attribute number of `large` in a row descriptor, 0 where it has none (before 0.9.0, or
/// a table without it: no large membership).
///
/// # Safety
/// `desc` is a valid tuple descriptor.
pub unsafe fn large_column(desc: pg_sys::TupleDesc) -> i32 {
    let attnum = pg_sys::SPI_fnumber(desc, c"large".as_ptr());
    if attnum > 0 && pg_sys::SPI_gettypeid(desc, attnum) == pg_sys::BOOLOID {
        attnum
    } else {
        0
    }
}

thread_local! {
    /// The relation whose `large` was last looked up, and where it is, until a relcache
    /// invalidation of it.
    static KNOWN: Cell<Option<(pg_sys::Oid, i32)>> = const { Cell::new(None) };
}

/// `large_column` of relation `relid`, whose rows have `desc`: remembered per backend until the
/// relation changes (the hit path asks on every call).
///
/// # Safety
/// `desc` is the descriptor of relation `relid`'s rows.
pub unsafe fn large_column_of(relid: pg_sys::Oid, desc: pg_sys::TupleDesc) -> i32 {
    match KNOWN.get() {
        Some((known, attnum)) if known == relid => attnum,
        _ => {
            invalidation::on_relation_change(forget);
            let attnum = large_column(desc);
            KNOWN.set(Some((relid, attnum)));
            attnum
        }
    }
}

/// Whether `tuple`, a row of a descriptor whose `large` is at `attnum` (0: none), is a
/// membership of a large channel. Calls nothing that can raise.
///
/// # Safety
/// `tuple` is a valid row of `desc`.
pub unsafe fn is_large(tuple: pg_sys::HeapTuple, desc: pg_sys::TupleDesc, attnum: i32) -> bool {
    if attnum == 0 {
        return false;
    }
    let mut null = false;
    let datum = pg_sys::heap_getattr(tuple, attnum, desc, &mut null);
    !null && datum.value() != 0
}

/// `is_large` of the row in `slot` (deformed by the slot, which keeps what it deformed).
///
/// # Safety
/// `slot` holds a valid row of its descriptor.
pub unsafe fn slot_is_large(slot: *mut pg_sys::TupleTableSlot, attnum: i32) -> bool {
    attnum != 0 && slot_value(slot, attnum).is_some_and(|datum| datum.value() != 0)
}

/// Where a row keeps what a large channel's messages change, of the extension's types.
#[derive(Clone, Copy)]
struct Columns {
    channel_id: i32,
    channel_type: i32,
    last_msg_seq: i32,
    unread_count: i32,
    readed_to_msg_seq: i32,
    hidden: i32,
    updated_at: i32,
    version: i32,
}

impl Columns {
    /// The counted values of a deformed row (NOT NULL columns; a NULL one reads as 0).
    fn counted(&self, values: &[pg_sys::Datum], nulls: &[bool]) -> Counted {
        let value = |attnum: i32| {
            let at = (attnum - 1) as usize;
            if nulls[at] {
                0
            } else {
                values[at].value() as i64
            }
        };
        Counted {
            last_msg_seq: value(self.last_msg_seq),
            unread_count: value(self.unread_count) as i32,
            readed_to_msg_seq: value(self.readed_to_msg_seq),
            hidden: value(self.hidden) != 0,
            updated_at: value(self.updated_at),
            version: value(self.version),
        }
    }

    /// # Safety
    /// `desc` is a valid tuple descriptor.
    unsafe fn of(desc: pg_sys::TupleDesc) -> Columns {
        let typed = |name: &CStr, type_oid: pg_sys::Oid| {
            let attnum = pg_sys::SPI_fnumber(desc, name.as_ptr());
            if attnum > 0 && pg_sys::SPI_gettypeid(desc, attnum) == type_oid {
                attnum
            } else {
                errors::table_shape(
                    &format!("a membership of a large channel needs its column {} of the extension's type", name.to_string_lossy()),
                    "ALTER TABLE conversation ALTER COLUMN ... TYPE ..., back to the type the extension gave it.",
                )
            }
        };
        Columns {
            channel_id: typed(c"channel_id", pg_sys::TEXTOID),
            channel_type: typed(c"channel_type", pg_sys::INT2OID),
            last_msg_seq: typed(c"last_msg_seq", pg_sys::INT8OID),
            unread_count: typed(c"unread_count", pg_sys::INT4OID),
            readed_to_msg_seq: typed(c"readed_to_msg_seq", pg_sys::INT8OID),
            hidden: typed(c"hidden", pg_sys::BOOLOID),
            updated_at: typed(c"updated_at", pg_sys::TIMESTAMPTZOID),
            version: typed(c"version", pg_sys::INT8OID),
        }
    }
}

/// A large membership as it stands, and what it stands on: the stamps of its row and of its
/// channel's row. Its state changes when either is written, so a sync takes it when either
/// changed since the position (the greater of the two, its place, need not have: a channel
/// written by an older transaction that committed after the row keeps the row's place).
pub struct Standing {
    /// Its values and nulls, deformed, to be formed as the returned type.
    pub values: Vec<pg_sys::Datum>,
    pub nulls: Vec<bool>,
    /// The counted values among them.
    pub now: Counted,
    pub row_version: i64,
    pub channel_version: Option<i64>,
}

/// What one call reads its large memberships with, each as it stands with its channel's row (as
/// the call's snapshot sees it, in the channel table of its schema): a list reads every large
/// channel of its user, so with the statement's snapshot the channel rows come from
/// channel_rows.rs, opened at the first; and each row descriptor's columns are looked up once.
pub struct Memberships {
    schema: pg_sys::Oid,
    snapshot: Snapshot,
    /// With the statement's snapshot only: that snapshot is every probe's of the call, so its
    /// scan may outlive probes opened after it.
    channels: Option<ChannelRows>,
    columns: Vec<(pg_sys::TupleDesc, Columns)>,
}

impl Memberships {
    pub fn new(schema: pg_sys::Oid, snapshot: Snapshot) -> Memberships {
        Memberships { schema, snapshot, channels: None, columns: Vec::new() }
    }

    /// # Safety
    /// `desc` is a valid tuple descriptor, alive as long as this reader.
    unsafe fn columns(&mut self, desc: pg_sys::TupleDesc) -> Columns {
        if let Some(&(_, columns)) = self.columns.iter().find(|(known, _)| *known == desc) {
            return columns;
        }
        let columns = Columns::of(desc);
        self.columns.push((desc, columns));
        columns
    }

    fn channel(&mut self, channel_id: &[u8], channel_type: i16) -> Option<Channel> {
        if self.snapshot == Snapshot::Fresh {
            return ChannelTable::open(self.schema).channel(channel_id, channel_type, Snapshot::Fresh);
        }
        let schema = self.schema;
        self.channels.get_or_insert_with(|| ChannelRows::open(schema)).channel(channel_id, channel_type)
    }

    /// The stamps the state of the large membership in `slot` is made of: its row's, and its
    /// channel row's (None without one), as `standing` reads them, without deforming the rest of
    /// the row.
    ///
    /// # Safety
    /// `slot` holds a valid row of its descriptor, alive as long as this reader.
    pub unsafe fn stamps(&mut self, slot: *mut pg_sys::TupleTableSlot) -> [Option<i64>; 2] {
        let columns = self.columns((*slot).tts_tupleDescriptor);
        let row_version = slot_value(slot, columns.version).map_or(0, |datum| datum.value() as i64);
        let channel = match (slot_value(slot, columns.channel_id), slot_value(slot, columns.channel_type)) {
            (Some(channel_id), Some(channel_type)) => self.channel(varlena_bytes(channel_id), channel_type.value() as i16),
            _ => None,
        };
        [Some(row_version), channel.map(|channel| channel.version)]
    }

    /// The large membership `tuple`, a row of `desc`, as it stands. A channel row gone (a DBA
    /// deleted it) leaves the row as counted.
    ///
    /// # Safety
    /// `tuple` is a valid row of `desc`, alive as long as this reader.
    pub unsafe fn standing(&mut self, tuple: pg_sys::HeapTuple, desc: pg_sys::TupleDesc) -> Standing {
        let columns = self.columns(desc);
        let (mut values, mut nulls) = deformed(tuple, desc);
        let at = |attnum: i32| (attnum - 1) as usize;
        let row = columns.counted(&values, &nulls);
        let as_counted = |values, nulls| Standing { values, nulls, now: row, row_version: row.version, channel_version: None };
        if nulls[at(columns.channel_id)] || nulls[at(columns.channel_type)] {
            return as_counted(values, nulls);
        }
        let channel_id = varlena_bytes(values[at(columns.channel_id)]);
        let channel_type = values[at(columns.channel_type)].value() as i16;
        let Some(channel) = self.channel(channel_id, channel_type) else {
            return as_counted(values, nulls);
        };
        let now = derived(row, channel);
        let mut set = |attnum: i32, datum: pg_sys::Datum| {
            values[at(attnum)] = datum;
            nulls[at(attnum)] = false;
        };
        set(columns.last_msg_seq, pg_sys::Datum::from(now.last_msg_seq));
        set(columns.unread_count, pg_sys::Datum::from(now.unread_count));
        set(columns.hidden, pg_sys::Datum::from(now.hidden));
        set(columns.updated_at, pg_sys::Datum::from(now.updated_at));
        set(columns.version, pg_sys::Datum::from(now.version));
        Standing { values, nulls, now, row_version: row.version, channel_version: Some(channel.version) }
    }

    /// The values and nulls of `tuple`, a row of `desc` whose `large` is at `large` (0: none):
    /// as stored, or as it stands for a membership of a large channel.
    ///
    /// # Safety
    /// `tuple` is a valid row of `desc`, alive as long as this reader.
    pub unsafe fn values_of(&mut self, tuple: pg_sys::HeapTuple, desc: pg_sys::TupleDesc, large: i32) -> (Vec<pg_sys::Datum>, Vec<bool>) {
        if is_large(tuple, desc, large) {
            let standing = self.standing(tuple, desc);
            return (standing.values, standing.nulls);
        }
        deformed(tuple, desc)
    }
}

/// Every attribute's value and null flag of a row of `desc` (missing ones filled from it).
///
/// # Safety
/// `tuple` is a row of `desc`.
pub unsafe fn deformed(tuple: pg_sys::HeapTuple, desc: pg_sys::TupleDesc) -> (Vec<pg_sys::Datum>, Vec<bool>) {
    let natts = (*desc).natts as usize;
    let (mut values, mut nulls) = (vec![pg_sys::Datum::from(0); natts], vec![true; natts]);
    pg_sys::heap_deform_tuple(tuple, desc, values.as_mut_ptr(), nulls.as_mut_ptr());
    (values, nulls)
}

/// # Safety
/// Called by PostgreSQL as a relcache invalidation callback.
unsafe extern "C-unwind" fn forget(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    if KNOWN.get().is_some_and(|(known, _)| relid == pg_sys::InvalidOid || relid == known) {
        KNOWN.set(None);
    }
}
