//! pg_conversation: one conversation row per (uid, channel_id, channel_type), created atomically
//! and idempotently inside PostgreSQL, for IM servers (WuKongIM and its kin).
//!
//! The design, in the order a call meets it:
//!
//! - `key.rs`: the key and its limits. Every argument is checked before anything is read, so bad
//!   input writes nothing and gets one SQLSTATE (`errors.rs` raises every error we raise).
//! - `get_or_create.rs`: check, lock, check again, insert.
//! - `find.rs`: the check, one probe of the key index without SPI or planner. It is the whole hit
//!   path: no advisory lock, no transaction id, no WAL, no sequence value.
//! - `lock.rs`: the advisory lock of a key (class id `LOCK_CLASS_ID`, two-int4 form), taken
//!   transaction-scoped and released right after the insert, so one transaction can create any
//!   number of keys without filling the shared lock table.
//! - `insert.rs`: the miss path's INSERT ... ON CONFLICT DO NOTHING.
//! - `result_row.rs`: the row handed back, copied once into the declared return type
//!   (`conversation_row`: the table's columns without its defaults and constraints).
//! - `kept.rs`: every SQL statement we run, prepared once per backend, under a pinned search_path.
//!
//! Around the core:
//!
//! - `batch_keys.rs` and `batch.rs`: many keys in one call, set-based, created in one order.
//! - `message.rs`: a message reached a channel; `read_state.rs`: a user read up to a seq.
//! - `stats.rs`: counters in shared memory when the library is preloaded.
//! - sql/: the table, the function declarations, and the operations DBAs run (import, checks,
//!   cleanup), in SQL.
//!
//! Invariants: the table's primary key (uid, channel_id, channel_type) guarantees one row per key
//! whoever writes; the function never returns NULL, never lets 23505 reach the caller, and never
//! returns a row the caller's snapshot cannot see (40001 instead, under REPEATABLE READ and
//! SERIALIZABLE). The SQL objects of the first release live in sql/install.sql; every later release
//! adds an upgrade script in sql/, which a fresh install also runs, so both paths build the same
//! objects.

use pgrx::prelude::*;

mod batch;
mod batch_keys;
mod errors;
mod find;
mod get_or_create;
mod insert;
mod kept;
mod key;
mod key_check;
mod lock;
mod message;
mod read_state;
mod result_row;
mod stats;

::pgrx::pg_module_magic!(name, version);

extension_sql_file!("../sql/install.sql", name = "install", bootstrap);
extension_sql_file!("../sql/pg_conversation--0.1.0--0.2.0.sql", name = "v0_2_0", requires = ["install"]);
extension_sql_file!("../sql/pg_conversation--0.2.0--0.3.0.sql", name = "v0_3_0", requires = ["v0_2_0"], finalize);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    stats::init();
}

/// The advisory lock id get_or_create_conversation takes while creating this key: find it in
/// pg_locks as locktype 'advisory', classid 1131376246, objid = this value (as oid), objsubid 2.
/// It resolves no names, so it needs no pinned search_path.
#[pg_extern(immutable, parallel_safe)]
fn conversation_lock_key(uid: &str, channel_id: &str, channel_type: i32) -> i32 {
    key::ConversationKey::validate(Some(uid), Some(channel_id), Some(channel_type.into()))
        .unwrap_or_else(|error| errors::invalid_key(error))
        .lock_hash()
}

#[cfg(any(test, feature = "pg_test"))]
mod tests;

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        // The counters need the library preloaded; the regress suite covers the other case.
        vec!["shared_preload_libraries = 'pg_conversation'"]
    }
}
