//! Find the row of a key: one probe of the primary key index, no SPI, no planner.
//!
//! This is the whole hit path, so it stays lean: no plan to keep or invalidate, and no chance of
//! a generic plan that chose a sequential scan while the table was small. It reads what a
//! volatile SQL function's query would read: it first advances the command counter (so rows this
//! statement inserted are visible), then takes the transaction's snapshot, which under READ
//! COMMITTED is fresh on every call (so the re-check under the advisory lock sees the row the
//! creator we waited for committed) and under REPEATABLE READ / SERIALIZABLE is the transaction's
//! (so we never return a row the caller's snapshot cannot see).
//! SERIALIZABLE transactions get their predicate locks from the index scan as any query would.

use std::cell::Cell;

use pgrx::pg_sys;
use pgrx::IntoDatum;

use crate::errors;
use crate::key::ConversationKey;
use crate::result_row::ResultRow;

/// The table and its key index, found by name in the extension's schema, then remembered for
/// this backend until PostgreSQL invalidates either relation (see `remembered`).
#[derive(Clone, Copy, PartialEq)]
pub struct Relations {
    pub table: pg_sys::Oid,
    pub key_index: pg_sys::Oid,
}

thread_local! {
    /// The last schema asked for, and its relations. One entry: a database holds the extension
    /// once.
    static REMEMBERED: Cell<Option<(pg_sys::Oid, Relations)>> = const { Cell::new(None) };
    static FORGET_REGISTERED: Cell<bool> = const { Cell::new(false) };
}

/// Relcache invalidation callback: any change to the table or its index (ALTER, DROP, a VACUUM's
/// new statistics), or a reset of all caches, makes the next call look the names up again. The
/// messages are read at every transaction start and every new lock, so a dropped relation's OID is
/// forgotten before a later transaction could use it.
unsafe extern "C-unwind" fn forget(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    REMEMBERED.with(|remembered| {
        if let Some((_, relations)) = remembered.get() {
            if relid == pg_sys::InvalidOid || relid == relations.table || relid == relations.key_index {
                remembered.set(None);
            }
        }
    });
}

impl Relations {
    pub fn in_schema(schema: pg_sys::Oid) -> Relations {
        if let Some((remembered_schema, relations)) = REMEMBERED.with(Cell::get) {
            if remembered_schema == schema {
                return relations; // two syscache probes by name saved on every call
            }
        }
        // SAFETY: syscache lookups by name; InvalidOid when missing.
        let (table, key_index) = unsafe {
            (
                pg_sys::get_relname_relid(c"conversation".as_ptr(), schema),
                pg_sys::get_relname_relid(c"conversation_pkey".as_ptr(), schema),
            )
        };
        if table == pg_sys::InvalidOid || key_index == pg_sys::InvalidOid {
            errors::broken_install("table conversation or its index conversation_pkey is missing");
        }
        let relations = Relations { table, key_index };
        if !FORGET_REGISTERED.with(Cell::get) {
            // SAFETY: registers a callback for the life of this backend, once.
            unsafe { pg_sys::CacheRegisterRelcacheCallback(Some(forget), pg_sys::Datum::from(0)) };
            FORGET_REGISTERED.with(|registered| registered.set(true));
        }
        REMEMBERED.with(|remembered| remembered.set(Some((schema, relations))));
        relations
    }

    /// The (channel_id, channel_type) index, for batches: one probe tells whether a channel is
    /// new, so that its keys need no probe of their own.
    pub fn channel_index(schema: pg_sys::Oid) -> pg_sys::Oid {
        // SAFETY: a syscache lookup by name; InvalidOid when missing.
        let index = unsafe { pg_sys::get_relname_relid(c"conversation_channel_idx".as_ptr(), schema) };
        if index == pg_sys::InvalidOid {
            errors::broken_install("index conversation_channel_idx is missing");
        }
        index
    }
}

/// Reading the table directly skips the executor's permission checks, so make them here: the
/// function is SECURITY INVOKER and must not show a caller rows it may not SELECT.
unsafe fn check_read_allowed(table: pg_sys::Relation) {
    let relid = (*table).rd_id;
    let acl = pg_sys::pg_class_aclcheck(relid, pg_sys::GetUserId(), pg_sys::ACL_SELECT as _);
    if acl != pg_sys::AclResult::ACLCHECK_OK {
        pg_sys::aclcheck_error(acl, pg_sys::ObjectType::OBJECT_TABLE, c"conversation".as_ptr());
    }
    if (*(*table).rd_rel).relrowsecurity
        && pg_sys::check_enable_rls(relid, pg_sys::InvalidOid, false)
            == pg_sys::CheckEnableRlsResult::RLS_ENABLED as i32
    {
        errors::row_security_unsupported();
    }
}

/// An open probe of an index of the table: the table and index locked, the permissions checked,
/// the snapshot pushed, one index scan to rescan per probe. `finish` closes it; on ERROR the abort
/// releases the scan, the slot's buffer pin and the pushed snapshot.
pub struct IndexProbe {
    table: pg_sys::Relation,
    index: pg_sys::Relation,
    slot: *mut pg_sys::TupleTableSlot,
    scan: pg_sys::IndexScanDesc,
}

impl IndexProbe {
    /// A probe of the key index (uid, channel_id, channel_type).
    pub fn key_index(relations: Relations) -> IndexProbe {
        IndexProbe::open(relations.table, relations.key_index, 3)
    }

    /// A probe of `index`, compared on its first `columns` columns.
    pub fn open(table: pg_sys::Oid, index: pg_sys::Oid, columns: i32) -> IndexProbe {
        // SAFETY: the standard index-scan protocol of genam.h. Relations stay locked
        // (AccessShareLock) to the end of the transaction, as the executor leaves them.
        unsafe {
            let table = pg_sys::table_open(table, pg_sys::AccessShareLock as _);
            check_read_allowed(table);
            let index = pg_sys::index_open(index, pg_sys::AccessShareLock as _);
            pg_sys::CommandCounterIncrement();
            pg_sys::PushCopiedSnapshot(pg_sys::GetTransactionSnapshot());
            pg_sys::UpdateActiveSnapshotCommandId();
            let slot = pg_sys::table_slot_create(table, std::ptr::null_mut());
            let scan = pg_sys::index_beginscan(table, index, pg_sys::GetActiveSnapshot(), columns, 0);
            IndexProbe { table, index, slot, scan }
        }
    }

    /// The visible row of `key`, in the probe's slot until the next probe, or None.
    pub fn probe(&mut self, key: &ConversationKey<'_>) -> Option<*mut pg_sys::TupleTableSlot> {
        self.first_equal(&[
            (pg_sys::F_TEXTEQ, key.uid.into_datum()),
            (pg_sys::F_TEXTEQ, key.channel_id.into_datum()),
            (pg_sys::F_INT2EQ, key.channel_type.into_datum()),
        ])
    }

    /// The first visible row whose leading index columns equal `values` (equality function, value).
    fn first_equal(&mut self, values: &[(u32, Option<pg_sys::Datum>)]) -> Option<*mut pg_sys::TupleTableSlot> {
        // SAFETY: the scan and slot were created by open() and are still open; `values` matches
        // the number of columns the scan was opened with (at most 3).
        unsafe {
            // On the stack: this is the hit path.
            let mut scan_keys: [pg_sys::ScanKeyData; 3] = std::mem::zeroed();
            for (i, (equality, value)) in values.iter().enumerate() {
                pg_sys::ScanKeyEntryInitialize(
                    &mut scan_keys[i],
                    0,
                    (i + 1) as pg_sys::AttrNumber,
                    pg_sys::BTEqualStrategyNumber as pg_sys::StrategyNumber,
                    pg_sys::InvalidOid,
                    // The index's own collation: comparing under another could miss the row.
                    *(*self.index).rd_indcollation.add(i),
                    pg_sys::Oid::from(*equality),
                    value.expect("probe values are never NULL"),
                );
            }
            pg_sys::index_rescan(self.scan, scan_keys.as_mut_ptr(), values.len() as i32, std::ptr::null_mut(), 0);
            pg_sys::index_getnext_slot(self.scan, pg_sys::ScanDirection::ForwardScanDirection, self.slot)
                .then_some(self.slot)
        }
    }

    /// For a probe of conversation_channel_idx: whether the channel has any visible conversation.
    pub fn channel_has_rows(&mut self, channel_id: &str, channel_type: i16) -> bool {
        self.first_equal(&[(pg_sys::F_TEXTEQ, channel_id.into_datum()), (pg_sys::F_INT2EQ, channel_type.into_datum())])
            .is_some()
    }

    pub fn finish(self) {
        // SAFETY: closes what open() opened, in reverse order.
        unsafe {
            pg_sys::index_endscan(self.scan);
            pg_sys::ExecDropSingleTupleTableSlot(self.slot);
            pg_sys::PopActiveSnapshot();
            pg_sys::index_close(self.index, pg_sys::NoLock as _);
            pg_sys::table_close(self.table, pg_sys::NoLock as _);
        }
    }
}

/// The row of `key` as the call's result datum, or None.
pub fn find(relations: Relations, key: ConversationKey<'_>, result: &ResultRow) -> Option<pg_sys::Datum> {
    let mut probe = IndexProbe::key_index(relations);
    let row = probe.probe(&key).map(|slot| {
        // SAFETY: the slot holds the found row, a tuple of the table: fetched without a copy (the
        // buffer stays pinned until the next probe), copied once into the result.
        unsafe { result.from_tuple(pg_sys::ExecFetchSlotHeapTuple(slot, false, std::ptr::null_mut())) }
    });
    probe.finish();
    row
}
