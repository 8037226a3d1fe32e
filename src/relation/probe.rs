//! Reading rows straight from an index of the table: no SPI, no planner, no executor node. It only
//! scans; which relation and index to scan is placement.rs's answer.
//!
//! This is the whole hit path, so it stays lean: no plan to keep or invalidate, and no chance of
//! a generic plan that chose a sequential scan while the table was small. It reads what a query
//! would read:
//! - `Snapshot::Fresh`, as a VOLATILE function's query: the command counter advances first (so
//!   rows this statement inserted are visible), then the transaction's snapshot is taken, which
//!   under READ COMMITTED is new on every call (so the re-check under the advisory lock sees the
//!   row the creator we waited for committed) and under REPEATABLE READ / SERIALIZABLE is the
//!   transaction's (so we never return a row the caller's snapshot cannot see);
//! - `Snapshot::Statement`, as a STABLE function's query: the calling statement's snapshot, with
//!   nothing advanced, so every call in one statement sees the same rows (find_conversation).
//!
//! SERIALIZABLE transactions get their predicate locks from the index scan as any query would.
//! Reading skips the executor's permission checks: catalog.rs makes them when it opens the table.
//!
//! Besides one key's row (the hit path), a probe walks an index backward, largest first, over
//! the rows whose columns meet bounds: a page of a conversation list (list_scan.rs).

use pgrx::pg_sys;

use crate::glue::call::text_datum;
use crate::input::key::ConversationKey;
use crate::relation::table::{Table, TEXT_EQUAL};

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub enum Snapshot {
    Fresh,
    Statement,
}

/// A bound on an index column in a walk: the column (1-based), its btree strategy, the comparison
/// function of the column's type, and the value.
#[derive(Clone, Copy)]
pub struct Bound {
    pub column: pg_sys::AttrNumber,
    pub strategy: u32,
    pub function: pg_sys::Oid,
    pub value: pg_sys::Datum,
}

/// The most bounds a probe takes (three key columns; a list's uid, type, and two on version).
const MAX_BOUNDS: usize = 4;

/// An open scan of one index of a relation: the snapshot pushed, the scan ready to be rescanned
/// per probe. Dropping it closes it; on ERROR the abort releases the scan, the slot's buffer pin
/// and the pushed snapshot.
pub struct IndexProbe {
    index: pg_sys::Relation,
    slot: *mut pg_sys::TupleTableSlot,
    scan: pg_sys::IndexScanDesc,
    columns: usize,
}

impl IndexProbe {
    /// A probe of `index` of the open relation `heap`, compared with `columns` bounds (its first
    /// columns, for a key).
    pub fn open(heap: pg_sys::Relation, index: pg_sys::Oid, columns: usize, snapshot: Snapshot) -> IndexProbe {
        // SAFETY: the index-scan protocol of genam.h on an open, locked relation. The index stays
        // locked (AccessShareLock) to the end of the transaction, as the executor leaves it.
        unsafe {
            let index = pg_sys::index_open(index, pg_sys::AccessShareLock as _);
            if snapshot == Snapshot::Fresh {
                pg_sys::CommandCounterIncrement();
                pg_sys::PushCopiedSnapshot(pg_sys::GetTransactionSnapshot());
                pg_sys::UpdateActiveSnapshotCommandId();
            } else {
                pg_sys::PushActiveSnapshot(pg_sys::GetActiveSnapshot());
            }
            let slot = pg_sys::table_slot_create(heap, std::ptr::null_mut());
            let scan = begin_scan(heap, index, columns as i32);
            IndexProbe { index, slot, scan, columns }
        }
    }

    /// The visible row of `key` (probing the key index of `table`), in the probe's slot until
    /// the next probe, or None.
    pub fn key(&mut self, table: &Table, key: &ConversationKey<'_>) -> Option<*mut pg_sys::TupleTableSlot> {
        self.first_equal(&[
            (TEXT_EQUAL, text_datum(key.uid)),
            (TEXT_EQUAL, text_datum(key.channel_id)),
            (table.channel_type_equality(), table.channel_type_datum(key.channel_type)),
        ])
    }

    /// For a probe of the channel index: whether the channel has any visible conversation.
    pub fn channel_has_rows(&mut self, table: &Table, channel_id: &[u8], channel_type: i16) -> bool {
        self.first_equal(&[(TEXT_EQUAL, text_datum(channel_id)), (table.channel_type_equality(), table.channel_type_datum(channel_type))])
            .is_some()
    }

    /// The first visible row whose leading index columns equal `values` (equality function, value).
    fn first_equal(&mut self, values: &[(pg_sys::Oid, pg_sys::Datum)]) -> Option<*mut pg_sys::TupleTableSlot> {
        let mut bounds = [Bound { column: 0, strategy: 0, function: pg_sys::InvalidOid, value: pg_sys::Datum::from(0) }; MAX_BOUNDS];
        for (i, &(function, value)) in values.iter().enumerate() {
            bounds[i] = Bound { column: (i + 1) as pg_sys::AttrNumber, strategy: pg_sys::BTEqualStrategyNumber, function, value };
        }
        self.rescan(&bounds[..values.len()]);
        self.next(pg_sys::ScanDirection::ForwardScanDirection)
    }

    /// Starts a walk, largest first, over the visible rows that meet `bounds` (as many as the
    /// probe was opened with); `next_largest` steps it.
    pub fn walk_backward(&mut self, bounds: &[Bound]) {
        self.rescan(bounds);
    }

    /// The next row of the walk, in the probe's slot until the next step, or None at its end.
    pub fn next_largest(&mut self) -> Option<*mut pg_sys::TupleTableSlot> {
        self.next(pg_sys::ScanDirection::BackwardScanDirection)
    }

    fn rescan(&mut self, bounds: &[Bound]) {
        assert_eq!(bounds.len(), self.columns, "a probe compares with as many bounds as it was opened with");
        // SAFETY: one scan key per bound, on the stack (this is the hit path); the scan was begun
        // with that many keys.
        unsafe {
            let mut scan_keys: [pg_sys::ScanKeyData; MAX_BOUNDS] = std::mem::zeroed();
            for (i, bound) in bounds.iter().enumerate() {
                pg_sys::ScanKeyEntryInitialize(
                    &mut scan_keys[i],
                    0,
                    bound.column,
                    bound.strategy as pg_sys::StrategyNumber,
                    pg_sys::InvalidOid,
                    // The index's own collation: comparing under another could miss the row.
                    *(*self.index).rd_indcollation.add(bound.column as usize - 1),
                    bound.function,
                    bound.value,
                );
            }
            pg_sys::index_rescan(self.scan, scan_keys.as_mut_ptr(), bounds.len() as i32, std::ptr::null_mut(), 0);
        }
    }

    fn next(&mut self, direction: pg_sys::ScanDirection::Type) -> Option<*mut pg_sys::TupleTableSlot> {
        // SAFETY: a scan rescanned with its keys.
        unsafe { pg_sys::index_getnext_slot(self.scan, direction, self.slot).then_some(self.slot) }
    }
}

impl Drop for IndexProbe {
    fn drop(&mut self) {
        // While unwinding from an ERROR, PostgreSQL may not be called; the abort releases it all.
        if std::thread::panicking() {
            return;
        }
        // SAFETY: closes what open() opened, in reverse order.
        unsafe {
            pg_sys::index_endscan(self.scan);
            pg_sys::ExecDropSingleTupleTableSlot(self.slot);
            pg_sys::PopActiveSnapshot();
            pg_sys::index_close(self.index, pg_sys::NoLock as _);
        }
    }
}

/// index_beginscan, which PostgreSQL 18 gave an instrumentation argument (NULL: none).
///
/// # Safety
/// `heap` and `index` are open and locked, `index` an index of `heap`, and a snapshot is active;
/// `keys` is the number of scan keys the caller passes to index_rescan.
unsafe fn begin_scan(heap: pg_sys::Relation, index: pg_sys::Relation, keys: i32) -> pg_sys::IndexScanDesc {
    #[cfg(not(feature = "pg18"))]
    return pg_sys::index_beginscan(heap, index, pg_sys::GetActiveSnapshot(), keys, 0);
    #[cfg(feature = "pg18")]
    return pg_sys::index_beginscan(heap, index, pg_sys::GetActiveSnapshot(), std::ptr::null_mut(), keys, 0);
}
