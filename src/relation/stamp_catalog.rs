//! Whether a relation's rows are stamped, and since which transaction: the stamp trigger
//! (list/stamp.rs) found on it as the list needs it, and the clock table it draws generations
//! from. The list refuses positions a relation's stamps cannot vouch for.

use std::cell::Cell;
use std::ffi::CStr;

use pgrx::pg_sys;

use crate::glue::errors;
use crate::glue::invalidation;
use crate::relation::xid;

thread_local! {
    /// The clock table of one schema and its OID.
    static KNOWN_CLOCK: Cell<Option<(pg_sys::Oid, Clock)>> = const { Cell::new(None) };
}

/// Relcache invalidation for the clock table (dropped, renamed), or of every relation.
///
/// # Safety
/// Called by PostgreSQL as a relcache invalidation callback (registered in `clock`).
unsafe extern "C-unwind" fn forget_clock(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    if KNOWN_CLOCK.get().is_some_and(|(_, clock)| relid == pg_sys::InvalidOid || relid == clock.relid) {
        KNOWN_CLOCK.set(None);
    }
}

/// The clock table (conversation_clock, stamp.rs).
#[derive(Clone, Copy)]
pub struct Clock {
    pub relid: pg_sys::Oid,
    /// Whether it has column timeline (0.7.0): a generation per timeline. A database whose
    /// extension is not updated yet is served as its version was: a generation per cluster, and
    /// a stamp trigger enabled for ordinary sessions counts.
    pub per_timeline: bool,
}

/// The clock table of `schema`. Looked up by name once and remembered until a relcache
/// invalidation of it: the stamp trigger asks on every row it stamps.
pub fn clock(schema: pg_sys::Oid) -> Clock {
    if let Some((known_schema, clock)) = KNOWN_CLOCK.get() {
        if known_schema == schema {
            return clock;
        }
    }
    invalidation::on_relation_change(forget_clock);
    // SAFETY: syscache lookups.
    let clock = unsafe {
        let relid = pg_sys::get_relname_relid(c"conversation_clock".as_ptr(), schema);
        if relid == pg_sys::InvalidOid {
            errors::clock_table_missing();
        }
        Clock { relid, per_timeline: pg_sys::get_attnum(relid, c"timeline".as_ptr()) > 0 }
    };
    KNOWN_CLOCK.set(Some((schema, clock)));
    clock
}

/// Whether rows written to `relid` are stamped, and since when: Some when it has
/// conversation_stamp as a BEFORE INSERT OR UPDATE row trigger that fires ALWAYS (replication
/// apply and session_replication_role = replica too) for every row and every column (no WHEN
/// condition, no UPDATE OF list). Its departures are recorded when that trigger fires on DELETE
/// too (0.8.0) and, for the table itself (`whole_table`: not a partition or a Citus shard),
/// conversation_stamp is its BEFORE TRUNCATE statement trigger, ALWAYS as well (None without
/// it). None otherwise. (Positions would miss the changes of a table without them, so the list
/// refuses to hand any out.) Whether the database has somewhere to record departures is the
/// list's to check (departures.rs): a table can be renamed without invalidating this.
///
/// A trigger disabled and enabled again (pg_restore --disable-triggers, a maintenance window)
/// let writes through unstamped meanwhile, and its catalog row was last written by the
/// transaction that enabled it: a position that did not see that transaction may lack those
/// writes, and the list refuses it. So is a position older than the trigger itself (the extension
/// dropped and created again, conversation_partition's new table): its rows may be gone. 0 when
/// the trigger's row is frozen (older than every snapshot).
pub fn stamped_since(relid: pg_sys::Oid, schema: pg_sys::Oid, whole_table: bool) -> Option<Stamped> {
    let stamp = pg_sys::TRIGGER_TYPE_ROW | pg_sys::TRIGGER_TYPE_BEFORE | pg_sys::TRIGGER_TYPE_INSERT | pg_sys::TRIGGER_TYPE_UPDATE;
    let Some(since) = trigger_since(relid, schema, stamp | pg_sys::TRIGGER_TYPE_DELETE) else {
        return trigger_since(relid, schema, stamp).map(|since| Stamped { since, departures: false });
    };
    if !whole_table {
        return Some(Stamped { since, departures: true });
    }
    let truncate = trigger_since(relid, schema, pg_sys::TRIGGER_TYPE_BEFORE | pg_sys::TRIGGER_TYPE_TRUNCATE)?;
    Some(Stamped { since: since.max(truncate), departures: true })
}

/// How a relation's rows are stamped (`stamped_since`).
#[derive(Clone, Copy)]
pub struct Stamped {
    /// The transaction that last made or enabled a stamp trigger (0: frozen).
    pub since: u64,
    /// Whether its departures are recorded (0.8.0's trigger fires on DELETE, and the table's
    /// own on TRUNCATE); not before 0.8.0's update.
    pub departures: bool,
}

/// Whether `relid`'s rows have been stamped since it was made: its row stamp trigger's catalog
/// row was written by the transaction that made the table (the one that wrote its row type's,
/// which no ALTER TABLE rewrites but a rename or a change of owner), and not since (no disable,
/// no enable). A position from before such a table existed cannot lack an unstamped write of it:
/// its `stamped_since` says nothing a position must have seen.
pub fn stamped_from_the_start(relid: pg_sys::Oid, schema: pg_sys::Oid) -> bool {
    let stamp = pg_sys::TRIGGER_TYPE_ROW | pg_sys::TRIGGER_TYPE_BEFORE | pg_sys::TRIGGER_TYPE_INSERT | pg_sys::TRIGGER_TYPE_UPDATE;
    // SAFETY: catalog reads of a relation the caller has open.
    unsafe {
        let Some(trigger) = stamp_trigger(relid, schema, stamp) else { return false };
        let row_type = pg_sys::get_rel_type_id(relid);
        if row_type == pg_sys::InvalidOid {
            return false;
        }
        let trigger_written = written_by(pg_sys::TriggerRelationId, pg_sys::TriggerOidIndexId, pg_sys::Anum_pg_trigger_oid, trigger);
        let type_written = written_by(pg_sys::TypeRelationId, pg_sys::TypeOidIndexId, pg_sys::Anum_pg_type_oid, row_type);
        trigger_written.is_some() && trigger_written == type_written
    }
}

/// The transaction that last wrote the catalog row of `relid`'s trigger running
/// conversation_stamp with at least the type bits `wanted` (row or statement level as `wanted`
/// says), ALWAYS, for every row and column (0 when frozen); None when there is none.
fn trigger_since(relid: pg_sys::Oid, schema: pg_sys::Oid, wanted: u32) -> Option<u64> {
    // SAFETY: the catalog row of a trigger found on the relation.
    unsafe {
        let written = written_by(
            pg_sys::TriggerRelationId,
            pg_sys::TriggerOidIndexId,
            pg_sys::Anum_pg_trigger_oid,
            stamp_trigger(relid, schema, wanted)?,
        );
        Some(written.map_or(0, |id| xid::full_xid(id, pg_sys::ReadNextFullTransactionId().value)))
    }
}

/// `relid`'s trigger running conversation_stamp with at least the type bits `wanted` (row or
/// statement level as `wanted` says), ALWAYS, for every row and column; None when there is none.
fn stamp_trigger(relid: pg_sys::Oid, schema: pg_sys::Oid, wanted: u32) -> Option<pg_sys::Oid> {
    // SAFETY: the relation is locked by the caller's statements already; its trigger descriptor
    // is read while it is open.
    unsafe {
        let relation = pg_sys::relation_open(relid, pg_sys::AccessShareLock as _);
        let triggers = (*relation).trigdesc;
        let all =
            if triggers.is_null() { &[][..] } else { std::slice::from_raw_parts((*triggers).triggers, (*triggers).numtriggers as usize) };
        let found = all
            .iter()
            .find(|trigger| {
                let tgtype = trigger.tgtype as u32;
                tgtype & wanted == wanted
                    && tgtype & pg_sys::TRIGGER_TYPE_ROW == wanted & pg_sys::TRIGGER_TYPE_ROW
                    && trigger.tgqual.is_null()
                    && trigger.tgnattr == 0
                    && pg_sys::get_func_namespace(trigger.tgfoid) == schema
                    && CStr::from_ptr(pg_sys::get_func_name(trigger.tgfoid)) == c"conversation_stamp"
                    // (Enabled for ordinary sessions only was enough before 0.7.0's update.)
                    && (trigger.tgenabled as u8 == pg_sys::TRIGGER_FIRES_ALWAYS
                        || (trigger.tgenabled as u8 == pg_sys::TRIGGER_FIRES_ON_ORIGIN && !clock(schema).per_timeline))
            })
            .map(|trigger| trigger.tgoid);
        pg_sys::relation_close(relation, pg_sys::NoLock as _);
        found
    }
}

/// The transaction that wrote the catalog row of `oid` (None: frozen, or not found).
///
/// # Safety
/// `catalog` is a system catalog whose unique index `index` is on its oid column `column`.
unsafe fn written_by(catalog: pg_sys::Oid, index: u32, column: u32, oid: pg_sys::Oid) -> Option<u32> {
    let mut key: pg_sys::ScanKeyData = std::mem::zeroed();
    pg_sys::ScanKeyInit(
        &mut key,
        column as _,
        pg_sys::BTEqualStrategyNumber as _,
        pg_sys::RegProcedure::from(pg_sys::F_OIDEQ),
        pg_sys::Datum::from(oid),
    );
    let table = pg_sys::table_open(catalog, pg_sys::AccessShareLock as _);
    let scan = pg_sys::systable_beginscan(table, pg_sys::Oid::from(index), true, std::ptr::null_mut(), 1, &mut key);
    let tuple = pg_sys::systable_getnext(scan);
    let xmin = (!tuple.is_null()).then(|| {
        let header = &*(*tuple).t_data;
        let frozen = u32::from(header.t_infomask) & pg_sys::HEAP_XMIN_FROZEN == pg_sys::HEAP_XMIN_FROZEN;
        let xmin = header.t_choice.t_heap.t_xmin.into_inner();
        (!frozen && xmin >= pg_sys::FirstNormalTransactionId.into_inner()).then_some(xmin)
    });
    pg_sys::systable_endscan(scan);
    pg_sys::table_close(table, pg_sys::AccessShareLock as _);
    xmin.flatten()
}

/// What the in-server tests need to set up and nothing else may do: rows "written long ago" (as
/// written before 0.5.0, or with a version of an old transaction), and a stamp trigger older than
/// any position (as it is once its catalog row is frozen).
#[cfg(any(test, feature = "pg_test"))]
pub mod for_tests {
    use std::cell::Cell;

    thread_local! {
        pub static ROWS_AS_GIVEN: Cell<bool> = const { Cell::new(false) };
        pub static STAMP_TRIGGER_FROZEN: Cell<bool> = const { Cell::new(false) };
    }

    fn with<R>(flag: &'static std::thread::LocalKey<Cell<bool>>, body: impl FnOnce() -> R) -> R {
        flag.set(true);
        let result = body();
        flag.set(false);
        result
    }

    /// Runs `body` with the trigger leaving rows as they are written.
    pub fn rows_as_given<R>(body: impl FnOnce() -> R) -> R {
        with(&ROWS_AS_GIVEN, body)
    }

    /// Runs `body` with the stamp trigger taken as older than every position.
    pub fn stamp_trigger_frozen<R>(body: impl FnOnce() -> R) -> R {
        with(&STAMP_TRIGGER_FROZEN, body)
    }
}
