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
use crate::glue::guard::{c, guarded, text};
use crate::input::key::ConversationKey;
use crate::relation::table::{Table, INT2_EQUAL, TEXT_EQUAL};

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
        // SAFETY: the index-scan protocol of genam.h on an open, locked relation, under one guard
        // (only calls and plain values). The index stays locked (AccessShareLock) to the end of
        // the transaction, as the executor leaves it.
        let (index, slot, scan) = unsafe {
            guarded(|| {
                let index = c::index_open(index, pg_sys::AccessShareLock as _);
                if snapshot == Snapshot::Fresh {
                    c::CommandCounterIncrement();
                    c::PushCopiedSnapshot(c::GetTransactionSnapshot());
                    c::UpdateActiveSnapshotCommandId();
                } else {
                    c::PushActiveSnapshot(c::GetActiveSnapshot());
                }
                let slot = c::table_slot_create(heap, std::ptr::null_mut());
                (index, slot, begin_scan(heap, index, columns as i32))
            })
        };
        IndexProbe { index, slot, scan, columns }
    }

    /// The visible row of `key` (probing the key index of `table`), in the probe's slot until
    /// the next probe, or None.
    pub fn key(&mut self, table: &Table, key: &ConversationKey<'_>) -> Option<*mut pg_sys::TupleTableSlot> {
        // SAFETY: two palloc'd copies, under one guard.
        let (uid, channel_id) = unsafe { guarded(|| (text(key.uid), text(key.channel_id))) };
        self.first_equal(&[
            (TEXT_EQUAL, uid),
            (TEXT_EQUAL, channel_id),
            (table.channel_type_equality(), table.channel_type_datum(key.channel_type)),
        ])
    }

    /// For a probe of conversation_channel's primary key: the channel's visible row, and the TID
    /// of its index entry: the root of its HOT chain, from which a fetch finds the row's visible
    /// version after HOT updates (channel_rows.rs keeps it).
    pub fn channel(&mut self, channel_id: &[u8], channel_type: i16) -> Option<(*mut pg_sys::TupleTableSlot, pg_sys::ItemPointerData)> {
        let bounds = equal_bounds(&[(TEXT_EQUAL, text_datum(channel_id)), (INT2_EQUAL, pg_sys::Datum::from(channel_type))]);
        self.rescan(&bounds[..2], None);
        // SAFETY: the index-scan protocol (index_getnext_slot's, in its two steps) on a scan
        // rescanned with its keys, under an MVCC snapshot (one visible version per entry); the
        // TID is copied before the fetch moves it along the chain.
        unsafe {
            loop {
                let tid = pg_sys::index_getnext_tid(self.scan, pg_sys::ScanDirection::ForwardScanDirection);
                if tid.is_null() {
                    return None;
                }
                let root = *tid;
                if pg_sys::index_fetch_heap(self.scan, self.slot) {
                    return Some((self.slot, root));
                }
            }
        }
    }

    /// For a probe of the channel index: whether the channel has any visible conversation.
    pub fn channel_has_rows(&mut self, table: &Table, channel_id: &[u8], channel_type: i16) -> bool {
        self.first_equal(&[(TEXT_EQUAL, text_datum(channel_id)), (table.channel_type_equality(), table.channel_type_datum(channel_type))])
            .is_some()
    }

    /// The first visible row whose leading index columns equal `values` (equality function, value).
    fn first_equal(&mut self, values: &[(pg_sys::Oid, pg_sys::Datum)]) -> Option<*mut pg_sys::TupleTableSlot> {
        self.rescan(&equal_bounds(values)[..values.len()], Some(pg_sys::ScanDirection::ForwardScanDirection))
    }

    /// Starts a walk, largest first, over the visible rows that meet `bounds` (as many as the
    /// probe was opened with); `next_largest` steps it.
    pub fn walk_backward(&mut self, bounds: &[Bound]) {
        self.rescan(bounds, None);
    }

    /// The next row of the walk, in the probe's slot until the next step, or None at its end.
    pub fn next_largest(&mut self) -> Option<*mut pg_sys::TupleTableSlot> {
        self.next(pg_sys::ScanDirection::BackwardScanDirection)
    }

    /// Rescans with `bounds`, and with `first` returns the first row in that direction (the hit
    /// path: both under one guard).
    fn rescan(&mut self, bounds: &[Bound], first: Option<pg_sys::ScanDirection::Type>) -> Option<*mut pg_sys::TupleTableSlot> {
        assert_eq!(bounds.len(), self.columns, "a probe compares with as many bounds as it was opened with");
        let (index, scan, slot) = (self.index, self.scan, self.slot);
        // SAFETY: one scan key per bound, on the stack (this is the hit path); the scan was begun
        // with that many keys. Under one guard: calls and plain values only (zip cannot panic).
        unsafe {
            let mut scan_keys: [pg_sys::ScanKeyData; MAX_BOUNDS] = std::mem::zeroed();
            // The index's own collation for each bound: comparing under another could miss the row.
            let mut collations = [pg_sys::InvalidOid; MAX_BOUNDS];
            for (collation, bound) in collations.iter_mut().zip(bounds) {
                *collation = *(*index).rd_indcollation.add(usize::from(bound.column as u16) - 1);
            }
            guarded(|| {
                for ((scan_key, bound), &collation) in scan_keys.iter_mut().zip(bounds).zip(&collations) {
                    c::ScanKeyEntryInitialize(
                        scan_key,
                        0,
                        bound.column,
                        bound.strategy as pg_sys::StrategyNumber,
                        pg_sys::InvalidOid,
                        collation,
                        bound.function,
                        bound.value,
                    );
                }
                c::index_rescan(scan, scan_keys.as_mut_ptr(), bounds.len() as i32, std::ptr::null_mut(), 0);
                let direction = first?;
                c::index_getnext_slot(scan, direction, slot).then_some(slot)
            })
        }
    }

    fn next(&mut self, direction: pg_sys::ScanDirection::Type) -> Option<*mut pg_sys::TupleTableSlot> {
        // SAFETY: a scan rescanned with its keys.
        unsafe { pg_sys::index_getnext_slot(self.scan, direction, self.slot).then_some(self.slot) }
    }
}

/// Column `attnum` of the row in `slot`, None when NULL. The slot deforms its row once, up to the
/// columns asked for, and keeps them (heap_getattr past a text column walks the row from its
/// start on every call: 5% of a first page).
///
/// # Safety
/// `slot` holds a valid row; `attnum` is one of its descriptor's columns.
pub unsafe fn slot_value(slot: *mut pg_sys::TupleTableSlot, attnum: i32) -> Option<pg_sys::Datum> {
    let mut null = false;
    let datum = pg_sys::slot_getattr(slot, attnum, &mut null);
    (!null).then_some(datum)
}

/// Bounds of equality on the leading index columns, one per (equality function, value).
fn equal_bounds(values: &[(pg_sys::Oid, pg_sys::Datum)]) -> [Bound; MAX_BOUNDS] {
    let mut bounds = [Bound { column: 0, strategy: 0, function: pg_sys::InvalidOid, value: pg_sys::Datum::from(0) }; MAX_BOUNDS];
    for (i, &(function, value)) in values.iter().enumerate() {
        bounds[i] = Bound { column: (i + 1) as pg_sys::AttrNumber, strategy: pg_sys::BTEqualStrategyNumber, function, value };
    }
    bounds
}

impl Drop for IndexProbe {
    fn drop(&mut self) {
        // While unwinding from an ERROR, PostgreSQL may not be called; the abort releases it all.
        if std::thread::panicking() {
            return;
        }
        let IndexProbe { index, slot, scan, .. } = *self;
        // SAFETY: closes what open() opened, in reverse order, under one guard.
        unsafe {
            guarded(|| {
                c::index_endscan(scan);
                c::ExecDropSingleTupleTableSlot(slot);
                c::PopActiveSnapshot();
                c::index_close(index, pg_sys::NoLock as _);
            })
        }
    }
}

/// index_beginscan, which PostgreSQL 18 gave an instrumentation argument (NULL: none).
///
/// # Safety
/// Inside `guarded`. `heap` and `index` are open and locked, `index` an index of `heap`, and a
/// snapshot is active; `keys` is the number of scan keys the caller passes to index_rescan.
unsafe fn begin_scan(heap: pg_sys::Relation, index: pg_sys::Relation, keys: i32) -> pg_sys::IndexScanDesc {
    #[cfg(not(feature = "pg18"))]
    return c::index_beginscan(heap, index, c::GetActiveSnapshot(), keys, 0);
    #[cfg(feature = "pg18")]
    return c::index_beginscan(heap, index, c::GetActiveSnapshot(), std::ptr::null_mut(), keys, 0);
}
