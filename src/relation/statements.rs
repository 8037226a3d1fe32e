//! A cache of prepared statements: each is prepared once per backend and kept (SPI_keepplan), as
//! planning an INSERT or UPDATE on every call would cost more than running it. Every SQL statement
//! the Rust code runs goes through here, so this is also where search_path is pinned.
//!
//! A statement is written with `{table}` where the table goes, `{columns}` where its columns go
//! (statements return rows by column), `{clock}` for the clock table (stamp.rs), `{departures}`
//! for the departure table (departures.rs), `{channels}` for the channel table
//! (channel_table.rs) and `{per_member}` where only per-member rows are read (table.rs); it is
//! prepared
//! with the names catalog.rs knows now, and prepared again when they change (DROP/CREATE EXTENSION
//! into another schema, a schema rename, a column added or dropped). The plan cache replans by
//! itself after other DDL on the table. A statement run on a Citus shard by its own name (a
//! list's, reads.rs) has a plan per shard.
//!
//! On a table Citus distributes, a kept statement is planned on every run (a custom plan): Citus's
//! local executor keeps a plan more in a generic plan's memory on every run of a single-shard
//! statement on a node that holds the shard (a worker's backend grew by gigabytes under marks,
//! hides and badges). Its text is still parsed and analyzed once. The list's reads are planned
//! once (a generic plan: table.rs `Planning`): a sync's statement merges a dozen ordered scans,
//! whose custom plan took 1 ms to make on every call and 0.1 ms to run (a partitioned table, where
//! the plan cache kept choosing custom plans; a Citus shard read by its own name likewise).
//!
//! A statement is known by what it is: its text, its parameter types and its snapshot, the whole
//! `Statement`. There is no name to keep apart by hand: two statements that differ in anything are
//! prepared apart, and one written twice is prepared once.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::rc::Rc;

use pgrx::pg_sys;
use pgrx::spi::Spi;

use crate::glue::call::text_datum;
use crate::glue::errors;
use crate::input::key::ConversationKey;
use crate::relation::probe::Snapshot;
use crate::relation::result_row::ResultRow;
use crate::relation::table::{Names, Planning};

/// A statement the extension runs: its text, its parameter types, and the snapshot it reads with
/// (`Fresh`: as a VOLATILE function's query, `Statement`: as a STABLE one's). All three are the
/// cache's key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Statement {
    pub sql: &'static str,
    pub parameters: &'static [pg_sys::Oid],
    pub snapshot: Snapshot,
}

/// A prepared statement kept for the backend's life (SPI_keepplan), and how it is run.
pub struct Prepared {
    /// The names it was prepared with.
    prepared_for: Names,
    plan: pg_sys::SPIPlanPtr,
    parameters: usize,
    /// SPI's read_only: run with the caller's active snapshot, nothing advanced (`Statement`).
    /// (pgrx's own wrappers run a read-only statement as a writing one once the transaction has
    /// written, with a new snapshot: not what a STABLE function promises.)
    read_only: bool,
}

impl Drop for Prepared {
    fn drop(&mut self) {
        // SAFETY: our kept plan, no longer referenced (the cache held the last reference).
        unsafe { pg_sys::SPI_freeplan(self.plan) };
    }
}

/// How many relations' plans of one statement a backend keeps (a node's shards of the table).
const MAX_RELATIONS_PER_STATEMENT: usize = 64;

thread_local! {
    // Rc, not a borrow, is handed out: a trigger on the table may call us re-entrantly.
    // Per statement, one plan per relation it reads (the table; on Citus, each shard here).
    static PREPARED: RefCell<HashMap<Statement, Vec<Rc<Prepared>>>> = RefCell::new(HashMap::new());
}

/// What preparing and running a kept statement needs, set up in one place: SPI connected and
/// search_path pinned (`PinnedSearchPath`). Only `connect` makes one, and every statement takes
/// one, so no statement runs without either; both are undone when `connect`'s body returns (the
/// path first, then SPI_finish), or by the abort after an ERROR.
pub struct Statements {
    _pinned: PinnedSearchPath,
}

/// Runs `body` with SPI connected and search_path pinned.
pub fn connect<R>(body: impl FnOnce(&Statements) -> R) -> R {
    Spi::connect(|_client| body(&Statements { _pinned: PinnedSearchPath::pin() }))
}

/// As `connect`, and the statements planned as ordered index scans
/// (`PinnedSearchPath::with_ordered_index_scans`): the list's.
pub fn connect_for_lists<R>(body: impl FnOnce(&Statements) -> R) -> R {
    Spi::connect(|_client| body(&Statements { _pinned: PinnedSearchPath::pin().with_ordered_index_scans() }))
}

/// The prepared plan of `statement` with `names` (a table's, catalog.rs), preparing it on first use.
pub fn prepared(_statements: &Statements, names: &Names, statement: &Statement) -> Rc<Prepared> {
    let kept = PREPARED.with_borrow(|all| {
        all.get(statement).and_then(|plans| plans.iter().find(|prepared| prepared.prepared_for.table == names.table).cloned())
    });
    if let Some(prepared) = kept.filter(|prepared| prepared.prepared_for == *names) {
        return prepared;
    }
    let sql = statement
        .sql
        .replace("{table}", &names.table)
        .replace("{columns}", &names.columns)
        .replace("{clock}", &names.clock)
        .replace("{departures}", &names.departures)
        .replace("{channels}", &names.channels)
        .replace("{per_member}", names.per_member);
    let text = CString::new(sql.as_str()).expect("statements hold no NUL");
    let mut types = statement.parameters.to_vec();
    let options = match names.planning {
        Planning::Chosen => 0,
        Planning::EveryRun => pg_sys::CURSOR_OPT_CUSTOM_PLAN as i32,
        Planning::Once => pg_sys::CURSOR_OPT_GENERIC_PLAN as i32,
    };
    // SAFETY: SPI is connected (`Statements` proves it); an invalid statement raises an ERROR.
    let plan = unsafe { pg_sys::SPI_prepare_cursor(text.as_ptr(), types.len() as i32, types.as_mut_ptr(), options) };
    if plan.is_null() {
        errors::statement_failed(&sql, &spi_result());
    }
    // SAFETY: a plan SPI_prepare just made.
    if unsafe { pg_sys::SPI_keepplan(plan) } != 0 {
        errors::statement_failed(&sql, &spi_result());
    }
    let prepared_for = names.clone();
    let read_only = statement.snapshot == Snapshot::Statement;
    let prepared = Rc::new(Prepared { prepared_for, plan, parameters: types.len(), read_only });
    PREPARED.with_borrow_mut(|all| {
        let plans = all.entry(*statement).or_default();
        plans.retain(|kept| kept.prepared_for.table != names.table);
        // Shards moved away or dropped leave plans nobody runs: the oldest go.
        if plans.len() >= MAX_RELATIONS_PER_STATEMENT {
            plans.remove(0);
        }
        plans.push(prepared.clone());
    });
    prepared
}

/// A parameter of a kept statement: a datum of the statement's type for it, or NULL.
#[derive(Clone, Copy)]
pub struct Arg(Option<pg_sys::Datum>);

/// A parameter's datum (in the call's context, alive past the statement).
pub fn arg(datum: pg_sys::Datum) -> Arg {
    Arg(Some(datum))
}

/// A parameter that may be NULL.
pub fn arg_or_null(datum: Option<pg_sys::Datum>) -> Arg {
    Arg(datum)
}

/// Runs a kept statement; its rows are `Returned::last()`.
///
/// `Fresh` statements run as SPI runs a VOLATILE function's: the command counter advanced and,
/// under READ COMMITTED, a new snapshot. `Statement` ones read with the active snapshot.
pub fn run(_statements: &Statements, prepared: &Prepared, args: &[Arg]) -> Returned {
    assert_eq!(args.len(), prepared.parameters, "a statement run with as many arguments as it has parameters");
    let mut values: Vec<pg_sys::Datum> = args.iter().map(|a| a.0.unwrap_or(pg_sys::Datum::from(0))).collect();
    let nulls: Vec<std::ffi::c_char> = args.iter().map(|a| if a.0.is_some() { b' ' } else { b'n' } as std::ffi::c_char).collect();
    // SAFETY: a kept plan with `parameters` parameters, and as many values and null flags.
    let status = unsafe {
        pg_sys::SPI_tuptable = std::ptr::null_mut();
        pg_sys::SPI_execute_plan(prepared.plan, values.as_mut_ptr(), nulls.as_ptr(), prepared.read_only, 0)
    };
    if status < 0 {
        errors::statement_failed(&prepared.prepared_for.table, &spi_result_of(status));
    }
    Returned::last()
}

/// A key as the parameters of a kept statement ($1 uid, $2 channel_id, $3 channel_type).
pub fn key_args(key: &ConversationKey<'_>) -> [Arg; 3] {
    [arg(text_datum(key.uid)), arg(text_datum(key.channel_id)), arg(pg_sys::Datum::from(key.channel_type))]
}

fn spi_result() -> String {
    // SAFETY: a global of SPI's.
    spi_result_of(unsafe { pg_sys::SPI_result })
}

fn spi_result_of(code: i32) -> String {
    // SAFETY: returns a static string for any code.
    unsafe { CStr::from_ptr(pg_sys::SPI_result_code_string(code)) }.to_string_lossy().into_owned()
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
        if self.table.is_null() {
            0
        } else {
            unsafe { (*self.table).numvals as usize }
        }
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
pub fn returned_row(statements: &Statements, prepared: &Prepared, args: &[Arg], result: &ResultRow) -> Option<pg_sys::Datum> {
    let returned = run(statements, prepared, args);
    // The result is a copy in the caller's context; the returned row lives until SPI_finish.
    (returned.len() > 0).then(|| result.of_tuple(returned.tuple(0), returned.desc()))
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
struct PinnedSearchPath {
    nest_level: i32,
}

impl PinnedSearchPath {
    fn pin() -> PinnedSearchPath {
        // SAFETY: as fmgr_security_definer applies a SET clause.
        let nest_level = unsafe { pg_sys::NewGUCNestLevel() };
        set_until_restored(c"search_path", c"pg_catalog, pg_temp");
        PinnedSearchPath { nest_level }
    }

    /// Also plans the statements prepared and run meanwhile as ordered index scans, whatever the
    /// statistics say: a list's LIMIT is a parameter, which a generic plan cannot see, and reading
    /// a page must never mean sorting every row of a user (list.rs). The disabled plan types add
    /// a huge cost to the plan, which would make PostgreSQL JIT-compile it (130 ms a call): JIT
    /// goes off too. Undone with the path.
    fn with_ordered_index_scans(self) -> PinnedSearchPath {
        for setting in [c"enable_sort", c"enable_bitmapscan", c"enable_seqscan", c"jit"] {
            set_until_restored(setting, c"off");
        }
        self
    }
}

/// Sets a setting at the current GUC nest level, saved to be restored with it (as a function's
/// SET clause is).
fn set_until_restored(name: &CStr, value: &CStr) {
    // SAFETY: a USERSET setting, set as fmgr_security_definer sets a SET clause's.
    unsafe {
        pg_sys::set_config_option(
            name.as_ptr(),
            value.as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_SAVE,
            true,
            0,
            false,
        );
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

/// Runs `body` as the owner of `relid`, in a security-restricted operation (no SET ROLE, no temp
/// objects), as ri_triggers.c does. An ERROR inside is undone by the (sub)transaction's abort,
/// which restores the user.
pub fn as_owner_of<R>(relid: pg_sys::Oid, body: impl FnOnce() -> R) -> R {
    struct Restore(pg_sys::Oid, i32);
    impl Drop for Restore {
        fn drop(&mut self) {
            if !std::thread::panicking() {
                // SAFETY: restores what was saved below.
                unsafe { pg_sys::SetUserIdAndSecContext(self.0, self.1) };
            }
        }
    }
    // SAFETY: the relation exists (looked up just before, under the caller's snapshot); its owner
    // is read from the relcache entry opened under a lock.
    let _restore = unsafe {
        let relation = pg_sys::relation_open(relid, pg_sys::AccessShareLock as _);
        let owner = (*(*relation).rd_rel).relowner;
        pg_sys::relation_close(relation, pg_sys::NoLock as _);
        let (mut user, mut context) = (pg_sys::InvalidOid, 0);
        pg_sys::GetUserIdAndSecContext(&mut user, &mut context);
        pg_sys::SetUserIdAndSecContext(
            owner,
            context | (pg_sys::SECURITY_LOCAL_USERID_CHANGE | pg_sys::SECURITY_RESTRICTED_OPERATION) as i32,
        );
        Restore(user, context)
    };
    body()
}
