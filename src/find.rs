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

use pgrx::pg_sys;
use pgrx::IntoDatum;

use crate::errors;
use crate::key::ConversationKey;

/// The table and its key index, found by name in the extension's schema on every call: two
/// syscache probes, cheap, and never stale after DROP/CREATE EXTENSION.
#[derive(Clone, Copy)]
pub struct Relations {
    pub table: pg_sys::Oid,
    pub key_index: pg_sys::Oid,
}

impl Relations {
    pub fn in_schema(schema: pg_sys::Oid) -> Relations {
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
        Relations { table, key_index }
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

/// The row of `key` as a composite datum allocated in `result_context`, or None.
pub fn find(
    relations: Relations,
    key: ConversationKey<'_>,
    result_context: pg_sys::MemoryContext,
) -> Option<pg_sys::Datum> {
    // SAFETY: the standard index-scan protocol of genam.h. Relations stay locked
    // (AccessShareLock) to the end of the transaction, as the executor leaves them; on ERROR the
    // abort releases the scan, the slot's buffer pin and the pushed snapshot.
    unsafe {
        let table = pg_sys::table_open(relations.table, pg_sys::AccessShareLock as _);
        check_read_allowed(table);
        let index = pg_sys::index_open(relations.key_index, pg_sys::AccessShareLock as _);

        let key_values = [
            (pg_sys::F_TEXTEQ, key.uid.into_datum()),
            (pg_sys::F_TEXTEQ, key.channel_id.into_datum()),
            (pg_sys::F_INT2EQ, key.channel_type.into_datum()),
        ];
        let mut scan_keys: [pg_sys::ScanKeyData; 3] = std::mem::zeroed();
        for (i, (equality, value)) in key_values.into_iter().enumerate() {
            pg_sys::ScanKeyEntryInitialize(
                &mut scan_keys[i],
                0,
                (i + 1) as pg_sys::AttrNumber,
                pg_sys::BTEqualStrategyNumber as pg_sys::StrategyNumber,
                pg_sys::InvalidOid,
                // The index's own collation: comparing under another could miss the row.
                *(*index).rd_indcollation.add(i),
                pg_sys::Oid::from(equality),
                value.expect("key values are never NULL"),
            );
        }

        pg_sys::CommandCounterIncrement();
        pg_sys::PushCopiedSnapshot(pg_sys::GetTransactionSnapshot());
        pg_sys::UpdateActiveSnapshotCommandId();
        let snapshot = pg_sys::GetActiveSnapshot();

        let slot = pg_sys::table_slot_create(table, std::ptr::null_mut());
        let scan = pg_sys::index_beginscan(table, index, snapshot, 3, 0);
        pg_sys::index_rescan(scan, scan_keys.as_mut_ptr(), 3, std::ptr::null_mut(), 0);
        let found = pg_sys::index_getnext_slot(scan, pg_sys::ScanDirection::ForwardScanDirection, slot);
        let row = found.then(|| {
            let caller = pg_sys::MemoryContextSwitchTo(result_context);
            let datum = pg_sys::ExecFetchSlotHeapTupleDatum(slot);
            pg_sys::MemoryContextSwitchTo(caller);
            datum
        });
        pg_sys::index_endscan(scan);
        pg_sys::ExecDropSingleTupleTableSlot(slot);
        pg_sys::PopActiveSnapshot();

        pg_sys::index_close(index, pg_sys::NoLock as _);
        pg_sys::table_close(table, pg_sys::NoLock as _);
        row
    }
}
