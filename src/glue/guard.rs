//! One pgrx guard around several calls into PostgreSQL, for the hit path.
//!
//! pgrx guards every `pg_sys` call on its own (a thread check, a sigsetjmp, the error stacks
//! saved and restored), so that an ERROR becomes a Rust panic that unwinds through our frames.
//! A hit made 29 such calls, and the guards alone were about 5% of its CPU (perf, PostgreSQL
//! 15). Where a step makes several calls in a row, `guarded` takes them under one guard: an
//! ERROR in any of them is caught as pgrx would catch it, before any Rust frame is skipped.
//!
//! The calls are PostgreSQL's own functions, declared in `c` below with the signatures of
//! pgrx's bindings (checked when this compiles), and callable only inside `guarded`.

use pgrx::pg_sys;

/// Runs `calls` under one guard: an ERROR raised inside becomes a Rust panic here, as it does
/// from a `pg_sys` call.
///
/// # Safety
/// `calls` only calls PostgreSQL (functions of `c`, or `pg_sys`) and moves plain values: it
/// holds nothing with a destructor and cannot panic, since an ERROR jumps out of it without
/// unwinding its frame.
pub unsafe fn guarded<T>(calls: impl FnOnce() -> T) -> T {
    pg_sys::ffi::pg_guard_ffi_boundary(calls)
}

/// A text datum holding `bytes` (taken as the database encoding's), palloc'd.
///
/// # Safety
/// Inside `guarded`.
pub unsafe fn text(bytes: &[u8]) -> pg_sys::Datum {
    pg_sys::Datum::from(c::cstring_to_text_with_len(bytes.as_ptr().cast(), bytes.len() as i32))
}

/// Declares PostgreSQL functions to call without a guard of their own, each with the signature
/// of pgrx's binding of the same name (a compile error if one differs: the binding follows the
/// server's headers).
macro_rules! unguarded {
    ($(fn $name:ident($($arg:ident: $type:ty),* $(,)?) $(-> $ret:ty)?;)*) => {
        $(const _: unsafe fn($($type),*) $(-> $ret)? = pg_sys::$name;)*
        extern "C-unwind" {
            $(pub fn $name($($arg: $type),*) $(-> $ret)?;)*
        }
    };
}

/// Callable only inside `guarded` (an ERROR must not jump over a Rust frame that is not guarded).
pub mod c {
    use pgrx::pg_sys;

    unguarded! {
        fn index_open(relation: pg_sys::Oid, lockmode: pg_sys::LOCKMODE) -> pg_sys::Relation;
        fn index_close(relation: pg_sys::Relation, lockmode: pg_sys::LOCKMODE);
        fn index_rescan(scan: pg_sys::IndexScanDesc, keys: pg_sys::ScanKey, nkeys: i32, orderbys: pg_sys::ScanKey, norderbys: i32);
        fn index_getnext_slot(scan: pg_sys::IndexScanDesc, direction: pg_sys::ScanDirection::Type, slot: *mut pg_sys::TupleTableSlot) -> bool;
        fn index_endscan(scan: pg_sys::IndexScanDesc);
        fn ScanKeyEntryInitialize(
            entry: pg_sys::ScanKey,
            flags: i32,
            attribute: pg_sys::AttrNumber,
            strategy: pg_sys::StrategyNumber,
            subtype: pg_sys::Oid,
            collation: pg_sys::Oid,
            procedure: pg_sys::RegProcedure,
            argument: pg_sys::Datum,
        );
        fn CommandCounterIncrement();
        fn GetTransactionSnapshot() -> pg_sys::Snapshot;
        fn GetActiveSnapshot() -> pg_sys::Snapshot;
        fn PushCopiedSnapshot(snapshot: pg_sys::Snapshot);
        fn PushActiveSnapshot(snapshot: pg_sys::Snapshot);
        fn UpdateActiveSnapshotCommandId();
        fn PopActiveSnapshot();
        fn table_slot_create(relation: pg_sys::Relation, registers: *mut *mut pg_sys::List) -> *mut pg_sys::TupleTableSlot;
        fn ExecDropSingleTupleTableSlot(slot: *mut pg_sys::TupleTableSlot);
        fn ExecFetchSlotHeapTuple(slot: *mut pg_sys::TupleTableSlot, materialize: bool, should_free: *mut bool) -> pg_sys::HeapTuple;
        fn heap_copy_tuple_as_datum(tuple: pg_sys::HeapTuple, desc: pg_sys::TupleDesc) -> pg_sys::Datum;
        fn heap_expand_tuple(tuple: pg_sys::HeapTuple, desc: pg_sys::TupleDesc) -> pg_sys::HeapTuple;
        fn cstring_to_text_with_len(bytes: *const std::ffi::c_char, len: i32) -> *mut pg_sys::text;
        fn get_fn_expr_rettype(flinfo: *mut pg_sys::FmgrInfo) -> pg_sys::Oid;
        fn get_func_rettype(function: pg_sys::Oid) -> pg_sys::Oid;
        fn lookup_rowtype_tupdesc_noerror(type_oid: pg_sys::Oid, typmod: i32, no_error: bool) -> pg_sys::TupleDesc;
        fn try_table_open(relation: pg_sys::Oid, lockmode: pg_sys::LOCKMODE) -> pg_sys::Relation;
        fn GetUserId() -> pg_sys::Oid;
        fn pg_class_aclcheck(relation: pg_sys::Oid, role: pg_sys::Oid, mode: pg_sys::AclMode) -> pg_sys::AclResult::Type;
    }

    #[cfg(not(feature = "pg18"))]
    unguarded! {
        fn index_beginscan(heap: pg_sys::Relation, index: pg_sys::Relation, snapshot: pg_sys::Snapshot, nkeys: i32, norderbys: i32) -> pg_sys::IndexScanDesc;
    }
    #[cfg(feature = "pg18")]
    unguarded! {
        fn index_beginscan(
            heap: pg_sys::Relation,
            index: pg_sys::Relation,
            snapshot: pg_sys::Snapshot,
            instrument: *mut pg_sys::IndexScanInstrumentation,
            nkeys: i32,
            norderbys: i32,
        ) -> pg_sys::IndexScanDesc;
    }
}
