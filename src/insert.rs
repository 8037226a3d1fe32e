//! The insert of the miss path: `INSERT ... ON CONFLICT (key) DO NOTHING RETURNING c`, prepared
//! once per backend and kept (planning it per call would cost more than the insert), run with
//! search_path pinned to pg_catalog.
//!
//! It goes through SPI so that everything an INSERT does stays Postgres's job: defaults and the
//! id sequence, the generated `type` column, CHECK constraints, triggers, speculative insertion
//! against the key index. The plan is keyed by the extension's schema (read from the called
//! function's own namespace), so DROP/CREATE EXTENSION into another schema re-prepares it; the
//! plan cache replans by itself after DDL on the table.

use std::cell::RefCell;
use std::ffi::CStr;
use std::rc::Rc;

use pgrx::pg_sys::{self, PgOid};
use pgrx::prelude::*;
use pgrx::spi::{OwnedPreparedStatement, SpiClient};
use pgrx::{PgMemoryContexts, PgSqlErrorCode};

use crate::errors;
use crate::key::ConversationKey;

struct KeptInsert {
    schema: pg_sys::Oid,
    statement: OwnedPreparedStatement,
}

thread_local! {
    // An Rc, not a borrow, is handed out: a trigger on the table may call us re-entrantly.
    static KEPT: RefCell<Option<Rc<KeptInsert>>> = const { RefCell::new(None) };
}

/// Inserts the row of `key` unless the key index already holds one (committed, or in progress and
/// then committed: ON CONFLICT waits for it). Returns the new row, allocated in `result_context`,
/// or None on conflict. Under REPEATABLE READ / SERIALIZABLE a conflict with a row this snapshot
/// cannot see raises 40001, with a hint to retry.
pub fn insert(
    client: &SpiClient<'_>,
    schema: pg_sys::Oid,
    key: ConversationKey<'_>,
    result_context: pg_sys::MemoryContext,
) -> Option<pg_sys::Datum> {
    let _pinned = PinnedSearchPath::push();
    let kept = kept_for_schema(client, schema);
    let args = [key.uid.into(), key.channel_id.into(), key.channel_type.into()];
    PgTryBuilder::new(|| {
        let table = client
            .select(&kept.statement, None, &args)
            .unwrap_or_else(|error| errors::broken_install(&error.to_string()));
        if table.is_empty() {
            return None;
        }
        let row = table
            .first()
            .get_datum_by_ordinal(1)
            .unwrap_or_else(|error| errors::broken_install(&error.to_string()))
            .expect("RETURNING c is never NULL");
        // The tuple table packs small varlenas into 1-byte headers; a function returning a
        // composite must hand back a plain tuple, so detoast into a fresh copy.
        // SAFETY: `row` lives until SPI_finish; the copy lives in the caller's context.
        Some(unsafe {
            PgMemoryContexts::For(result_context).switch_to(|_| {
                pg_sys::Datum::from(pg_sys::pg_detoast_datum_copy(row.cast_mut_ptr()))
            })
        })
    })
    .catch_when(PgSqlErrorCode::ERRCODE_T_R_SERIALIZATION_FAILURE, |caught| match caught {
        // ON CONFLICT's own visibility check says nothing of retrying; SSI failures already do.
        pg_sys::panic::CaughtError::PostgresError(report) if report.hint().is_none() => {
            errors::created_after_snapshot(report.message())
        }
        other => other.rethrow(),
    })
    .execute()
}

/// The INSERT is the only place the extension resolves names, so this is where search_path is
/// pinned: to pg_catalog alone, whatever the caller's path, for as long as it is prepared or run.
/// Cheaper than a `SET search_path` clause on the function, which costs every hit (about 4% of a
/// hit's server time under perf) for lookups the hit path never makes. An ERROR pops it through
/// the (sub)transaction abort.
struct PinnedSearchPath;

impl PinnedSearchPath {
    fn push() -> PinnedSearchPath {
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

fn kept_for_schema(client: &SpiClient<'_>, schema: pg_sys::Oid) -> Rc<KeptInsert> {
    if let Some(kept) = KEPT.with_borrow(|kept| kept.clone()) {
        if kept.schema == schema {
            return kept;
        }
    }
    let sql = format!(
        "INSERT INTO {}.conversation AS c (uid, channel_id, channel_type) VALUES ($1, $2, $3) \
         ON CONFLICT (uid, channel_id, channel_type) DO NOTHING RETURNING c",
        quoted_schema_name(schema)
    );
    let types = [PgOid::from(pg_sys::TEXTOID), PgOid::from(pg_sys::TEXTOID), PgOid::from(pg_sys::INT2OID)];
    // Prepared as mutating: SPI then runs it with a fresh snapshot and command counter.
    let statement = match client.prepare_mut(sql.as_str(), &types) {
        Ok(statement) => statement.keep(),
        Err(error) => errors::broken_install(&format!("cannot prepare {sql}: {error}")),
    };
    let kept = Rc::new(KeptInsert { schema, statement });
    KEPT.with_borrow_mut(|slot| *slot = Some(kept.clone()));
    kept
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
