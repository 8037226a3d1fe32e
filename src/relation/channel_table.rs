//! The channel table, conversation_channel (0.9.0): one row per large channel, what its messages
//! changed for all its members at once (state/large.rs derives each member's values from it).
//! Read by its primary key (channel_id, channel_type), directly as the hit path reads the
//! conversation table. A database not updated to 0.9.0 has none, and no large membership.
//!
//! On Citus (conversation_distribute, 0.11.0) it is a reference table: every node holds a
//! placement of it, which Citus writes in the same transaction as every other, and whose rows
//! this node's trigger stamps with this node's clock (the one its positions are taken on). Its
//! rows are read there, as placement.rs reads a uid's shard; Citus's shell table is empty.
//!
//! Its shape is checked once and remembered until the table or its index changes: the primary
//! key on (channel_id text, channel_type smallint), valid and ready, and last_msg_seq, updated_at
//! and version of the extension's types. Anything else is a clear 55000, as for the conversation
//! table: a derived value read from the wrong column would be a wrong unread count.

use std::cell::Cell;
use std::ffi::CStr;

use pgrx::pg_sys;

use crate::glue::errors;
use crate::glue::invalidation;
use crate::relation::citus;
use crate::relation::large::Channel;
use crate::relation::probe::{slot_value, IndexProbe, Snapshot};
use crate::relation::table;

/// What reading a channel row needs, checked once and remembered.
#[derive(Clone, Copy)]
struct Checked {
    /// The extension's table, and the relation that holds its rows on this node: the table
    /// itself, or this node's placement of it where Citus made it a reference table.
    table: pg_sys::Oid,
    relid: pg_sys::Oid,
    index: pg_sys::Oid,
    /// The attribute numbers of last_msg_seq, updated_at and version.
    columns: [i16; 3],
    /// The attribute numbers of channel_id and channel_type (the key).
    key: [i16; 2],
    /// Whether it has members and member_digest (0.10.0): before, no channel is made large.
    member_set: bool,
}

thread_local! {
    /// The channel table last checked, until a relcache invalidation of it, its placement or its index.
    static CHECKED: Cell<Option<Checked>> = const { Cell::new(None) };
}

/// The channel table of `schema`, or None where the extension has none (before 0.9.0).
pub fn relid_in(schema: pg_sys::Oid) -> Option<pg_sys::Oid> {
    table::extension_table(schema, c"conversation_channel")
}

/// The channel table of `schema`, which must exist where a large channel is written (55000 if
/// it is gone). Statements on it alone run as its owner (`statements::as_owner_of`), as the
/// clock's do (stamp.rs): a role that may write conversations needs no privilege on it.
pub fn required_in(schema: pg_sys::Oid) -> pg_sys::Oid {
    relid_in(schema).unwrap_or_else(|| errors::channel_table_missing())
}

/// The channel table, open and locked (AccessShareLock, to the end of the transaction) for one
/// call; closed when dropped.
pub struct ChannelTable {
    relation: pg_sys::Relation,
    checked: Checked,
}

impl ChannelTable {
    /// Opens the channel table of `schema` for reading. A large membership without one (the
    /// table dropped or renamed) is refused: its values cannot be told.
    pub fn open(schema: pg_sys::Oid) -> ChannelTable {
        let table = relid_in(schema).unwrap_or_else(|| errors::channel_table_missing());
        let known = CHECKED.get().filter(|checked| checked.table == table);
        let relid = rows_of(table, known);
        // SAFETY: opened by OID under a lock (NULL if it was dropped meanwhile); its index list
        // and attributes are read while it is open.
        unsafe {
            let relation = pg_sys::try_table_open(relid, pg_sys::AccessShareLock as _);
            if relation.is_null() {
                CHECKED.set(None);
                errors::channel_table_missing();
            }
            let checked = known.unwrap_or_else(|| {
                invalidation::on_relation_change(forget);
                let checked = check(table, relation);
                CHECKED.set(Some(checked));
                checked
            });
            ChannelTable { relation, checked }
        }
    }

    /// The channel table of `schema` if messages may write it: it exists and keeps the member
    /// set a message names (0.10.0's update; a database not updated yet has no large channel).
    pub fn for_messages(schema: pg_sys::Oid) -> Option<ChannelTable> {
        relid_in(schema)?;
        Some(ChannelTable::open(schema)).filter(|table| table.checked.member_set)
    }

    /// The channel row of (channel_id, channel_type) as `snapshot` sees it, or None.
    pub fn channel(&self, channel_id: &[u8], channel_type: i16, snapshot: Snapshot) -> Option<Channel> {
        let mut probe = self.probe(snapshot);
        let (slot, _) = probe.channel(channel_id, channel_type)?;
        // SAFETY: the probe's slot, holding a visible row of this table.
        Some(unsafe { self.values(slot) })
    }

    /// A probe of the primary key, dropped before this table.
    pub fn probe(&self, snapshot: Snapshot) -> IndexProbe {
        IndexProbe::open(self.relation, self.checked.index, 2, snapshot)
    }

    /// The table, its key's columns (channel_id, channel_type) and a slot's row of it: for
    /// channel_rows.rs, which fetches rows by TID.
    pub fn relation(&self) -> pg_sys::Relation {
        self.relation
    }

    pub fn relid(&self) -> pg_sys::Oid {
        self.checked.relid
    }

    pub fn key_columns(&self) -> [i16; 2] {
        self.checked.key
    }

    /// What the row in `slot` says of its channel's messages.
    ///
    /// # Safety
    /// `slot` holds a visible row of this table, read before it moves on.
    pub unsafe fn values(&self, slot: *mut pg_sys::TupleTableSlot) -> Channel {
        let [last_msg_seq, updated_at, version] = self.checked.columns;
        // NOT NULL columns of int8 and timestamptz (checked).
        let value = |attnum: i16| match slot_value(slot, i32::from(attnum)) {
            Some(datum) => datum.value() as i64,
            None => {
                errors::table_shape("a conversation_channel row holds NULL", "UPDATE conversation_channel SET ... the column's default")
            }
        };
        Channel { last_msg_seq: value(last_msg_seq), updated_at: value(updated_at), version: value(version) }
    }
}

impl Drop for ChannelTable {
    fn drop(&mut self) {
        // While unwinding from an ERROR, PostgreSQL may not be called; the abort releases it.
        if !std::thread::panicking() {
            // SAFETY: opened by `open`; the lock stays to the end of the transaction.
            unsafe { pg_sys::table_close(self.relation, pg_sys::NoLock as _) };
        }
    }
}

/// Whether the channel table of `schema` is on every node of a Citus cluster (a reference table:
/// conversation_distribute, 0.11.0), as large channels on a distributed conversation table need.
pub fn on_every_node(schema: pg_sys::Oid) -> bool {
    relid_in(schema).is_some_and(|table| citus::distribution_of(table) != citus::Distribution::Local)
}

/// The relation that holds the rows of the channel table of `schema` on this node (`rows_of`), or
/// None where the extension has none: what the list checks is stamped (catalog.rs).
pub fn rows_relid_in(schema: pg_sys::Oid) -> Option<pg_sys::Oid> {
    let table = relid_in(schema)?;
    Some(rows_of(table, CHECKED.get().filter(|checked| checked.table == table)))
}

/// The relation that holds the channel table's rows on this node, as `known` remembers it or
/// asked: the table, or this node's placement of it where Citus holds it (55000 where this node
/// has none).
fn rows_of(table: pg_sys::Oid, known: Option<Checked>) -> pg_sys::Oid {
    if let Some(checked) = known {
        return checked.relid;
    }
    match citus::distribution_of(table) {
        citus::Distribution::Local => table,
        _ => citus::reference_placement(table).unwrap_or_else(|| errors::channel_placement_missing()),
    }
}

/// The table's primary key and columns, as the extension made them, or a 55000 saying what differs.
///
/// # Safety
/// `relation` is the open, locked relation that holds the rows of the channel table `table`.
unsafe fn check(table: pg_sys::Oid, relation: pg_sys::Relation) -> Checked {
    let relid = (*relation).rd_id;
    let typed = |name: &CStr, type_oid: pg_sys::Oid| {
        let attnum = pg_sys::get_attnum(relid, name.as_ptr());
        (attnum > 0 && pg_sys::get_atttype(relid, attnum) == type_oid).then_some(attnum)
    };
    let column = |name: &CStr, type_oid: pg_sys::Oid| {
        typed(name, type_oid)
            .unwrap_or_else(|| errors::channel_table_shape(&format!("its column {} is missing or of another type", name.to_string_lossy())))
    };
    let columns =
        [column(c"last_msg_seq", pg_sys::INT8OID), column(c"updated_at", pg_sys::TIMESTAMPTZOID), column(c"version", pg_sys::INT8OID)];
    let key = [typed(c"channel_id", pg_sys::TEXTOID), typed(c"channel_type", pg_sys::INT2OID)];
    let index = table::primary_key(relation);
    let usable = index != pg_sys::InvalidOid && {
        let opened = pg_sys::index_open(index, pg_sys::AccessShareLock as _);
        let form = (*opened).rd_index;
        let on_key = (*form).indnkeyatts == 2 && key.map(|attnum| attnum.unwrap_or(0)) == (*form).indkey.values.as_slice(2);
        // Compared with text equality: a nondeterministic collation would find other rows.
        let collation = *(*opened).rd_indcollation;
        let deterministic = collation == pg_sys::InvalidOid || pg_sys::get_collation_isdeterministic(collation);
        let ready = table::usable(opened);
        pg_sys::index_close(opened, pg_sys::NoLock as _);
        on_key && deterministic && ready
    };
    if !usable {
        errors::channel_table_shape("its primary key on (channel_id text, channel_type smallint) is missing, changed or not valid");
    }
    let member_set = typed(c"members", pg_sys::INT4OID).is_some() && typed(c"member_digest", pg_sys::INT8OID).is_some();
    Checked { table, relid, index, columns, key: key.map(|attnum| attnum.unwrap_or(0)), member_set }
}

/// # Safety
/// Called by PostgreSQL as a relcache invalidation callback.
unsafe extern "C-unwind" fn forget(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    let changed = |checked: Checked| [pg_sys::InvalidOid, checked.table, checked.relid, checked.index].contains(&relid);
    if CHECKED.get().is_some_and(changed) {
        CHECKED.set(None);
    }
}
