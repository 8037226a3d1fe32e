//! What this transaction wrote to conversations, for the positions it hands out.
//!
//! A list read inside a transaction that has written conversations returns its own writes, which
//! are not committed: rolled back, the rows take back their old versions, which the positions
//! handed out meanwhile count as seen, so no sync would correct what the client was given. Such
//! positions are therefore tentative on the transaction (position.rs writes its id): accepted
//! once it committed, refused (72000) if it rolled back. A ROLLBACK TO SAVEPOINT that undoes
//! writes a list already returned leaves the transaction nothing to commit that its positions
//! describe: its COMMIT fails with 40001 (retry the transaction), as a serialization failure
//! does.

use std::cell::RefCell;

use pgrx::pg_sys;

use crate::glue::errors;
use crate::relation::probe::Snapshot;
use crate::relation::statements::{arg, connect, prepared, run, Statement};
use crate::relation::table::Names;

/// This backend's current transaction's writes, by the subtransaction that made them.
#[derive(Default)]
struct Writes {
    /// The subtransactions that stamped rows, and whether a list has returned them since.
    stamped: Vec<(pg_sys::SubTransactionId, bool)>,
    /// A list returned writes that a subtransaction's rollback then undid.
    undone: bool,
}

thread_local! {
    static WRITES: RefCell<Writes> = RefCell::new(Writes::default());
    static REGISTERED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The stamp trigger stamped a row (in the current subtransaction).
pub fn stamped() {
    // SAFETY: reads of this backend's transaction state; the callbacks are registered once per
    // backend and live as long as it does.
    unsafe {
        if !REGISTERED.get() {
            pg_sys::RegisterXactCallback(Some(on_transaction), std::ptr::null_mut());
            pg_sys::RegisterSubXactCallback(Some(on_subtransaction), std::ptr::null_mut());
            REGISTERED.set(true);
        }
        let current = pg_sys::GetCurrentSubTransactionId();
        WRITES.with_borrow_mut(|writes| {
            if writes.stamped.last().is_none_or(|&(sub, listed)| sub != current || listed) {
                writes.stamped.push((current, false));
            }
        });
    }
}

/// A list is returning rows: Some(this transaction's full id) when it wrote conversations that
/// the list returns, uncommitted, so that its positions are tentative on it.
pub fn listing() -> Option<u64> {
    let wrote = WRITES.with_borrow_mut(|writes| {
        writes.stamped.iter_mut().for_each(|(_, listed)| *listed = true);
        !writes.stamped.is_empty()
    });
    // SAFETY: a read of this backend's transaction state.
    wrote.then(|| unsafe { pg_sys::GetTopFullTransactionIdIfAny() }.value)
}

/// How a transaction a position is tentative on ended.
pub enum Outcome {
    Committed,
    InProgress,
    /// Rolled back, or too old for the commit log to say.
    NotCommitted,
}

/// pg_xact_status: 1 committed, 2 in progress, 0 rolled back or too old to say.
const XACT_STATUS: Statement = Statement {
    sql: "SELECT CASE pg_catalog.pg_xact_status($1::pg_catalog.text::pg_catalog.xid8) \
          WHEN 'committed' THEN 1 WHEN 'in progress' THEN 2 ELSE 0 END::pg_catalog.int8",
    parameters: &[pg_sys::INT8OID],
    snapshot: Snapshot::Statement,
};

pub fn outcome(names: &Names, xid: u64) -> Outcome {
    let status = connect(|statements| {
        let prepared = prepared(statements, names, &XACT_STATUS);
        let returned = run(statements, &prepared, &[arg(pg_sys::Datum::from(xid as i64))]);
        returned.value(0, 1).map_or(0, |datum| datum.value() as i64)
    });
    match status {
        1 => Outcome::Committed,
        2 => Outcome::InProgress,
        _ => Outcome::NotCommitted,
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn on_subtransaction(
    event: pg_sys::SubXactEvent::Type,
    subtransaction: pg_sys::SubTransactionId,
    parent: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    WRITES.with_borrow_mut(|writes| match event {
        pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB => {
            writes.undone |= writes.stamped.iter().any(|&(sub, listed)| sub == subtransaction && listed);
            writes.stamped.retain(|&(sub, _)| sub != subtransaction);
        }
        pg_sys::SubXactEvent::SUBXACT_EVENT_COMMIT_SUB => {
            writes.stamped.iter_mut().filter(|(sub, _)| *sub == subtransaction).for_each(|(sub, _)| *sub = parent);
        }
        _ => {}
    });
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn on_transaction(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    match event {
        pg_sys::XactEvent::XACT_EVENT_PRE_COMMIT | pg_sys::XactEvent::XACT_EVENT_PRE_PREPARE => {
            let undone = WRITES.with_borrow_mut(|writes| std::mem::take(&mut writes.undone));
            if undone {
                errors::listed_writes_rolled_back();
            }
        }
        pg_sys::XactEvent::XACT_EVENT_COMMIT
        | pg_sys::XactEvent::XACT_EVENT_ABORT
        | pg_sys::XactEvent::XACT_EVENT_PREPARE
        | pg_sys::XactEvent::XACT_EVENT_PARALLEL_COMMIT
        | pg_sys::XactEvent::XACT_EVENT_PARALLEL_ABORT => WRITES.with_borrow_mut(|writes| *writes = Writes::default()),
        _ => {}
    }
}
