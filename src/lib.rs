//! pg_conversation: one conversation row per (uid, channel_id, channel_type), created atomically
//! and idempotently inside PostgreSQL, for IM servers (WuKongIM and its kin).
//!
//! The design, in the order a call meets it:
//!
//! - `call.rs`: the one way an SQL function is declared; arguments as PostgreSQL stores them (text
//!   as bytes in the database encoding, arrays and JSON measured before they are read).
//! - `key.rs`: the key and its limits. Every argument is checked before anything is read, so bad
//!   input writes nothing and gets one SQLSTATE (`errors.rs` raises every error we raise).
//! - `catalog.rs`: the table, found under a lock, checked, remembered until invalidated; which
//!   relation holds a key's row (the table, a hash partition, a Citus shard on this node
//!   (`citus.rs`), or "ask SQL").
//! - `get_or_create.rs`: check, lock, check again, insert.
//! - `find.rs`: the check, one probe of the key index (`probe.rs`) without SPI or planner. It is
//!   the whole hit path: no advisory lock, no transaction id, no WAL, no sequence value. Also
//!   find_conversation, the lookup that never writes (replicas, READ ONLY transactions).
//! - `lock.rs`: the advisory lock of a key (class id `LOCK_CLASS_ID`, two-int4 form), taken
//!   transaction-scoped and released right after the insert, so one transaction can create any
//!   number of keys without filling the shared lock table.
//! - `insert.rs`: the miss path's INSERT ... ON CONFLICT DO NOTHING.
//! - `result_row.rs`: the row handed back, built by column name as the declared return type
//!   (`conversation_row`: the table's columns without its defaults and constraints), so added,
//!   dropped and retyped columns come back right; copied as it is when the layouts agree.
//! - `kept.rs`: every SQL statement we run, prepared once per backend, under a pinned search_path.
//!
//! Around the core:
//!
//! - `batch_keys.rs`, `batch_json.rs` and `batch.rs`: many keys in one call, set-based, created
//!   in one order.
//! - `message.rs`: a message reached a channel; `read_state.rs`: a user read (or cleared) up to
//!   a seq; `hide.rs`: a user hid a conversation.
//! - `stamp.rs`: the trigger that stamps every change with its transaction; `list.rs`: the
//!   conversation list and the unread totals, read through positions (`position.rs`) made of
//!   snapshots, so that syncing loses nothing; straight from the list indexes where they are the
//!   extension's (`list_scan.rs`, as the hit path reads the key index), through SQL elsewhere.
//! - `stats.rs`: counters in shared memory when the library is preloaded.
//! - `compat.rs`: the C symbols earlier releases' SQL names, until ALTER EXTENSION UPDATE.
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

// The layers, from the ground up: input (the key, batches of keys, JSON: pure Rust), glue (how a
// SQL function is declared and reads its arguments, its errors, its counters), relation (the
// table: catalog, placement, index probe, result rows, statements), then create (get-or-create,
// find, batches) and list (the stamp, positions, the list), then state (a message, a read, a
// hide). Each imports only from the layers below it.
mod create;
mod glue;
mod input;
mod list;
mod relation;
mod state;

mod compat;
mod stats_view;

::pgrx::pg_module_magic!(name, version);

extension_sql_file!("../sql/install.sql", name = "install", bootstrap);
extension_sql_file!("../sql/pg_conversation--0.1.0--0.2.0.sql", name = "v0_2_0", requires = ["install"]);
extension_sql_file!("../sql/pg_conversation--0.2.0--0.3.0.sql", name = "v0_3_0", requires = ["v0_2_0"]);
extension_sql_file!("../sql/pg_conversation--0.3.0--0.4.0.sql", name = "v0_4_0", requires = ["v0_3_0"]);
extension_sql_file!("../sql/pg_conversation--0.4.0--0.5.0.sql", name = "v0_5_0", requires = ["v0_4_0"]);
extension_sql_file!("../sql/pg_conversation--0.5.0--0.6.0.sql", name = "v0_6_0", requires = ["v0_5_0"], finalize);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    glue::stats::init();
}

#[cfg(any(test, feature = "pg_test"))]
mod list_tests;
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
