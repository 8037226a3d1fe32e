//! The departure table, conversation_departure (0.8.0): one row per conversation that left a
//! list (deleted, or its uid or channel_id changed), written by the stamp trigger and read by a
//! sync from its index on (uid, type, version, updated_at, id), the list indexes' columns.
//!
//! A database whose extension is not updated to 0.8.0 has none: its deletes are not recorded and
//! its syncs read none, as that version did. Its index is checked as the list indexes are (the
//! extension's definition, valid, ready and live, locked as a scan locks it); a sync refuses
//! (55000) rather than miss a departure while it is not usable.

use std::cell::Cell;
use std::ffi::CStr;

use pgrx::pg_sys;

use crate::glue::errors;
use crate::glue::invalidation;
use crate::relation::table;

/// Where a row's place in the list is, in a relation read by list_scan.rs: the attribute numbers
/// of version, updated_at and id.
#[derive(Clone, Copy)]
pub struct Places {
    pub version: i16,
    pub updated_at: i16,
    pub id: i16,
}

/// The departure table, open and locked (AccessShareLock, to the end of the transaction) for one
/// call; closed when dropped.
pub struct DepartureTable {
    pub relation: pg_sys::Relation,
    pub index: pg_sys::Oid,
    pub places: Places,
    /// The attribute numbers of uid, channel_id and channel_type: a departure's key.
    pub key: [i16; 3],
}

/// What a sync needs of the departure table, checked once and remembered.
#[derive(Clone, Copy)]
struct Checked {
    relid: pg_sys::Oid,
    index: pg_sys::Oid,
    places: Places,
    key: [i16; 3],
}

thread_local! {
    /// The departure table last checked, until a relcache invalidation of it or its index.
    static CHECKED: Cell<Option<Checked>> = const { Cell::new(None) };
}

/// The departure table of `schema`, or None where the extension has none (before 0.8.0).
pub fn relid_in(schema: pg_sys::Oid) -> Option<pg_sys::Oid> {
    table::extension_table(schema, c"conversation_departure")
}

impl DepartureTable {
    /// Opens the departure table of `schema` for reading, or None where there is none.
    pub fn open(schema: pg_sys::Oid) -> Option<DepartureTable> {
        let relid = relid_in(schema)?;
        // SAFETY: opened by OID under a lock (NULL if it was dropped meanwhile); its index list,
        // descriptor and attributes are read while it is open.
        unsafe {
            let relation = pg_sys::try_table_open(relid, pg_sys::AccessShareLock as _);
            if relation.is_null() {
                return None;
            }
            let checked = match CHECKED.get() {
                Some(checked) if checked.relid == relid => checked,
                _ => {
                    invalidation::on_relation_change(forget);
                    let index = list_index(relation).unwrap_or_else(|| errors::departure_index_unusable());
                    let attnum = |name: &CStr| pg_sys::get_attnum(relid, name.as_ptr());
                    let places = Places { version: attnum(c"version"), updated_at: attnum(c"updated_at"), id: attnum(c"id") };
                    let key = [attnum(c"uid"), attnum(c"channel_id"), attnum(c"channel_type")];
                    let checked = Checked { relid, index, places, key };
                    CHECKED.set(Some(checked));
                    checked
                }
            };
            Some(DepartureTable { relation, index: checked.index, places: checked.places, key: checked.key })
        }
    }
}

impl Drop for DepartureTable {
    fn drop(&mut self) {
        // While unwinding from an ERROR, PostgreSQL may not be called; the abort releases it.
        if !std::thread::panicking() {
            // SAFETY: opened by `open`; the lock stays to the end of the transaction.
            unsafe { pg_sys::table_close(self.relation, pg_sys::NoLock as _) };
        }
    }
}

/// The table's index `conversation_departure_list_idx` when it is the extension's and usable,
/// with its columns of the types the walks compare.
///
/// # Safety
/// `relation` is the open, locked departure table.
unsafe fn list_index(relation: pg_sys::Relation) -> Option<pg_sys::Oid> {
    let relid = (*relation).rd_id;
    let typed = |name: &CStr, type_oid: pg_sys::Oid| {
        let attnum = pg_sys::get_attnum(relid, name.as_ptr());
        attnum > 0 && pg_sys::get_atttype(relid, attnum) == type_oid
    };
    let columns = [
        (c"uid", pg_sys::TEXTOID),
        (c"type", pg_sys::INT2OID),
        (c"version", pg_sys::INT8OID),
        (c"updated_at", pg_sys::TIMESTAMPTZOID),
        (c"id", pg_sys::INT8OID),
        (c"channel_id", pg_sys::TEXTOID),
        (c"channel_type", pg_sys::INT4OID),
    ];
    if !columns.iter().all(|&(name, type_oid)| typed(name, type_oid)) {
        return None;
    }
    table::extension_index(relation, c"conversation_departure_list_idx", " USING btree (uid, type, version, updated_at, id)")
}

/// # Safety
/// Called by PostgreSQL as a relcache invalidation callback.
unsafe extern "C-unwind" fn forget(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    if CHECKED.get().is_some_and(|checked| relid == pg_sys::InvalidOid || relid == checked.relid || relid == checked.index) {
        CHECKED.set(None);
    }
}
