//! Statements prepared once per backend and kept: planning an INSERT or UPDATE on every call would
//! cost more than running it. Every SQL statement the Rust code runs goes through here, so this is
//! also where search_path is pinned.
//!
//! A statement is written with `{table}` where the table goes and `{columns}` where its columns go
//! (statements return rows by column); it is prepared with both as catalog.rs knows them now, and
//! prepared again when either changes (DROP/CREATE EXTENSION into another schema, a schema rename,
//! a column added or dropped). The plan cache replans by itself after other DDL on the table.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use pgrx::datum::DatumWithOid;
use pgrx::pg_sys::{self, PgOid};
use pgrx::spi::{OwnedPreparedStatement, SpiClient, SpiTupleTable};

use crate::catalog::Table;
use crate::errors;
use crate::probe::Snapshot;
use crate::result_row::ResultRow;

/// A statement the extension runs: its name (the cache key), its text, its parameter types, and
/// the snapshot it reads with (`Fresh`: as a VOLATILE function's query, `Statement`: as a STABLE
/// one's).
pub struct Statement {
    pub name: &'static str,
    pub sql: &'static str,
    pub parameters: &'static [pg_sys::Oid],
    pub snapshot: Snapshot,
}

pub struct Kept {
    /// The table's name and columns it was prepared for.
    prepared_for: (String, String),
    statement: OwnedPreparedStatement,
}

thread_local! {
    // Rc, not a borrow, is handed out: a trigger on the table may call us re-entrantly.
    static KEPT: RefCell<HashMap<&'static str, Rc<Kept>>> = RefCell::new(HashMap::new());
}

/// The kept plan of `statement` for `table`, preparing it on first use. Call it, and run the plan,
/// while a `PinnedSearchPath` is alive.
pub fn kept(client: &SpiClient<'_>, table: &Table, statement: &Statement) -> Rc<Kept> {
    if let Some(kept) = KEPT.with_borrow(|all| all.get(statement.name).cloned()) {
        if kept.prepared_for.0 == table.qualified_name && kept.prepared_for.1 == table.columns {
            return kept;
        }
    }
    let sql = statement.sql.replace("{table}", &table.qualified_name).replace("{columns}", &table.columns);
    let types: Vec<PgOid> = statement.parameters.iter().map(|&oid| PgOid::from(oid)).collect();
    // Fresh: SPI then runs it after a command counter increment with a new snapshot (under READ
    // COMMITTED), so it sees what committed, and what this statement wrote, so far.
    let prepared = match statement.snapshot {
        Snapshot::Fresh => client.prepare_mut(sql.as_str(), &types),
        Snapshot::Statement => client.prepare(sql.as_str(), &types),
    };
    let prepared = prepared.unwrap_or_else(|error| errors::statement_failed(&sql, &error.to_string()));
    let prepared_for = (table.qualified_name.clone(), table.columns.clone());
    let kept = Rc::new(Kept { prepared_for, statement: prepared.keep() });
    KEPT.with_borrow_mut(|all| all.insert(statement.name, kept.clone()));
    kept
}

/// Runs a kept statement.
pub fn run<'conn>(client: &SpiClient<'conn>, kept: &Kept, args: &[DatumWithOid<'_>]) -> SpiTupleTable<'conn> {
    client
        .select(&kept.statement, None, args)
        .unwrap_or_else(|error| errors::statement_failed(&kept.prepared_for.0, &error.to_string()))
}

/// The rows the statement just run returned, read as raw datums (valid until the SPI connection
/// ends).
pub struct Returned {
    table: *mut pg_sys::SPITupleTable,
}

impl Returned {
    /// Of the last statement run on this SPI connection.
    pub fn last() -> Returned {
        // SAFETY: SPI's global result of the statement just run.
        Returned { table: unsafe { pg_sys::SPI_tuptable } }
    }

    pub fn len(&self) -> usize {
        // SAFETY: a live SPI result.
        if self.table.is_null() { 0 } else { unsafe { (*self.table).numvals as usize } }
    }

    pub fn desc(&self) -> pg_sys::TupleDesc {
        // SAFETY: a live SPI result.
        unsafe { (*self.table).tupdesc }
    }

    /// The `row`-th (0-based) row.
    pub fn tuple(&self, row: usize) -> pg_sys::HeapTuple {
        assert!(row < self.len(), "row {row} of a result of {}", self.len());
        // SAFETY: a live SPI result with more than `row` rows.
        unsafe { *(*self.table).vals.add(row) }
    }

    /// The `column`-th (1-based) value of the `row`-th (0-based) row; None for NULL.
    pub fn value(&self, row: usize, column: i32) -> Option<pg_sys::Datum> {
        assert!(row < self.len(), "row {row} of a result of {}", self.len());
        // SAFETY: a live SPI result; SPI_getbinval range-checks the column.
        unsafe {
            let mut is_null = false;
            let datum = pg_sys::SPI_getbinval(*(*self.table).vals.add(row), (*self.table).tupdesc, column, &mut is_null);
            (!is_null).then_some(datum)
        }
    }
}

/// Runs a kept statement that returns the table's columns (`RETURNING {columns}`) for one row or
/// none, and hands the row back as the call's result datum.
pub fn returned_row(client: &SpiClient<'_>, kept: &Kept, args: &[DatumWithOid<'_>], result: &ResultRow) -> Option<pg_sys::Datum> {
    run(client, kept, args);
    let returned = Returned::last();
    // The result is a copy in the caller's context; the returned row lives until SPI_finish.
    (returned.len() > 0).then(|| result.from_tuple(returned.tuple(0), returned.desc()))
}

/// A parameter of a kept statement: a datum of the statement's parameter type.
pub fn arg<'a>(datum: pg_sys::Datum, type_oid: pg_sys::Oid) -> DatumWithOid<'a> {
    // SAFETY: the datum is of `type_oid`, and lives (in the call's context) past the statement.
    unsafe { DatumWithOid::new(datum, type_oid) }
}

/// Kept statements are the only SQL the Rust code runs, so this is where search_path is pinned:
/// to `pg_catalog, pg_temp`, whatever the caller's path, for as long as one is prepared or run
/// (PostgreSQL re-analyzes a kept statement under the path in force when it runs). Every name and
/// operator in them then resolves to the catalog's; a caller's schema can hold no look-alike that
/// runs instead. It is PostgreSQL's own mechanism for a function's SET clause: a GUC nest level,
/// undone when the guard drops, or by the (sub)transaction abort after an ERROR. A trigger on the
/// table that sets its own search_path sees it; one that does not sees this one.
/// Cheaper than a `SET search_path` clause on the functions, which would tax every hit (about 4%
/// of a hit's server time under perf) for lookups the hit path never makes.
pub struct PinnedSearchPath {
    nest_level: i32,
}

impl PinnedSearchPath {
    pub fn pin() -> PinnedSearchPath {
        // SAFETY: as fmgr_security_definer applies a SET clause.
        unsafe {
            let nest_level = pg_sys::NewGUCNestLevel();
            pg_sys::set_config_option(
                c"search_path".as_ptr(),
                c"pg_catalog, pg_temp".as_ptr(),
                pg_sys::GucContext::PGC_USERSET,
                pg_sys::GucSource::PGC_S_SESSION,
                pg_sys::GucAction::GUC_ACTION_SAVE,
                true,
                0,
                false,
            );
            PinnedSearchPath { nest_level }
        }
    }
}

impl Drop for PinnedSearchPath {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            // SAFETY: restores what pin() saved, at the level it created.
            unsafe { pg_sys::AtEOXact_GUC(true, self.nest_level) };
        }
    }
}
