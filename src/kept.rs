//! Statements prepared once per backend and kept: planning an INSERT or UPDATE on every call would
//! cost more than running it. Every SQL statement the extension runs goes through here, so this is
//! also where search_path is pinned.
//!
//! A statement is written with `{schema}` where the extension's schema goes; it is kept per
//! schema (read from the called function's own namespace), so DROP/CREATE EXTENSION into another
//! schema re-prepares it, and the plan cache replans by itself after DDL on the table.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::CStr;
use std::rc::Rc;

use pgrx::datum::DatumWithOid;
use pgrx::pg_sys::{self, PgOid};
use pgrx::spi::{OwnedPreparedStatement, SpiClient};

use crate::errors;
use crate::result_row::ResultRow;

/// A statement the extension runs: its name (the cache key), its text, its parameter types.
pub struct Statement {
    pub name: &'static str,
    pub sql: &'static str,
    pub parameters: &'static [pg_sys::Oid],
}

pub struct Kept {
    schema: pg_sys::Oid,
    pub statement: OwnedPreparedStatement,
}

thread_local! {
    // Rc, not a borrow, is handed out: a trigger on the table may call us re-entrantly.
    static KEPT: RefCell<HashMap<&'static str, Rc<Kept>>> = RefCell::new(HashMap::new());
}

/// The kept plan of `statement` for `schema`, preparing it on first use. Call it, and run the
/// plan, while a `PinnedSearchPath` is alive.
pub fn kept(client: &SpiClient<'_>, schema: pg_sys::Oid, statement: &Statement) -> Rc<Kept> {
    if let Some(kept) = KEPT.with_borrow(|all| all.get(statement.name).cloned()) {
        if kept.schema == schema {
            return kept;
        }
    }
    let sql = statement.sql.replace("{schema}", &quoted_schema_name(schema));
    let types: Vec<PgOid> = statement.parameters.iter().map(|&oid| PgOid::from(oid)).collect();
    // Prepared as mutating: SPI then runs it with a fresh snapshot (under READ COMMITTED) after a
    // command counter increment, so it sees what committed, and what this statement wrote, so far.
    let prepared = match client.prepare_mut(sql.as_str(), &types) {
        Ok(prepared) => prepared.keep(),
        Err(error) => errors::broken_install(&format!("cannot prepare {sql}: {error}")),
    };
    let kept = Rc::new(Kept { schema, statement: prepared });
    KEPT.with_borrow_mut(|all| all.insert(statement.name, kept.clone()));
    kept
}

/// Runs a kept statement that returns one whole row (`RETURNING c`) or none, and hands the row
/// back as the call's result datum.
pub fn returned_row(
    client: &SpiClient<'_>,
    kept: &Kept,
    args: &[DatumWithOid<'_>],
    result: &ResultRow,
) -> Option<pg_sys::Datum> {
    let table = client
        .select(&kept.statement, None, args)
        .unwrap_or_else(|error| errors::broken_install(&error.to_string()));
    if table.is_empty() {
        return None;
    }
    let row = table
        .first()
        .get_datum_by_ordinal(1)
        .unwrap_or_else(|error| errors::broken_install(&error.to_string()))
        .expect("RETURNING c is never NULL");
    // SAFETY: `row` is a composite of the table's row type and lives until SPI_finish; the
    // result is a copy in the caller's context.
    Some(unsafe { result.from_composite(row) })
}

/// Kept statements are the only place the extension resolves names, so this is where search_path
/// is pinned: to pg_catalog alone, whatever the caller's path, for as long as one is prepared or
/// run. Cheaper than a `SET search_path` clause on the function, which costs every hit (about 4%
/// of a hit's server time under perf) for lookups the hit path never makes. An ERROR pops it
/// through the (sub)transaction abort.
pub struct PinnedSearchPath;

impl PinnedSearchPath {
    pub fn push() -> PinnedSearchPath {
        let mut path = pg_sys::OverrideSearchPath {
            schemas: std::ptr::null_mut(),
            addCatalog: true,
            addTemp: false,
            generation: 0,
        };
        // SAFETY: Postgres copies the path into its own override stack.
        unsafe { pg_sys::PushOverrideSearchPath(&mut path) };
        PinnedSearchPath
    }
}

impl Drop for PinnedSearchPath {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            // SAFETY: pops the entry push() made, at the same transaction nesting level.
            unsafe { pg_sys::PopOverrideSearchPath() };
        }
    }
}

/// The schema the extension was created in, for entry points that cannot ask the called function
/// (pgrx's #[pg_extern] wrappers do not expose it). Remembered per extension OID, which a
/// DROP/CREATE EXTENSION changes; the extension is not relocatable, so that is the only way the
/// schema can change.
pub fn extension_schema(client: &SpiClient<'_>) -> pg_sys::Oid {
    thread_local! {
        static SCHEMA_OF: std::cell::Cell<(pg_sys::Oid, pg_sys::Oid)> =
            const { std::cell::Cell::new((pg_sys::InvalidOid, pg_sys::InvalidOid)) };
    }
    // SAFETY: a catalog lookup; missing_ok=false raises a normal ERROR.
    let extension = unsafe { pg_sys::get_extension_oid(c"pg_conversation".as_ptr(), false) };
    let (known, schema) = SCHEMA_OF.get();
    if known == extension {
        return schema;
    }
    let schema = client
        .select("SELECT extnamespace FROM pg_catalog.pg_extension WHERE oid = $1", None, &[extension.into()])
        .and_then(|table| table.first().get_one::<pg_sys::Oid>())
        .unwrap_or_else(|error| errors::broken_install(&error.to_string()))
        .unwrap_or_else(|| errors::broken_install("the extension is not in pg_extension"));
    SCHEMA_OF.set((extension, schema));
    schema
}

fn quoted_schema_name(schema: pg_sys::Oid) -> String {
    // SAFETY: both return palloc'd C strings; get_namespace_name returns NULL when it is gone.
    unsafe {
        let name = pg_sys::get_namespace_name(schema);
        if name.is_null() {
            errors::broken_install("the extension's schema does not exist");
        }
        CStr::from_ptr(pg_sys::quote_identifier(name)).to_string_lossy().into_owned()
    }
}
