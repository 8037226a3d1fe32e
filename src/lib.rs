//! pg_conversation: one conversation row per (uid, channel_id, channel_type), created atomically
//! and idempotently inside PostgreSQL, for IM servers (WuKongIM and its kin).
//!
//! The design, in the order a call meets it, folder by folder (each imports only from the ones
//! before it):
//!
//! - `input/`: `key.rs`, the key and its limits; `batch_keys.rs` and `batch_json.rs`, many keys
//!   folded and put in one order. Every argument is checked before anything is read, so bad input
//!   writes nothing and gets one SQLSTATE. Pure Rust.
//! - `glue/`: `call.rs`, the one way an SQL function is declared (`sql_function!`); arguments as
//!   PostgreSQL stores them (text as bytes in the database encoding, arrays and JSON measured
//!   before they are read). `errors.rs` raises every error we raise; `stats.rs` keeps the
//!   counters in shared memory when the library is preloaded, `stats_view.rs` reads and resets
//!   them from SQL; `settings.rs` the settings (pg_conversation.*). `guard.rs` takes several calls into PostgreSQL under one pgrx guard (the hit
//!   path's); `invalidation.rs` registers the callbacks that forget what a backend remembers of
//!   the catalog.
//! - `relation/`: `catalog.rs`, the table, found under a lock, remembered until invalidated;
//!   `table.rs`, what it is, read from its relation and checked; `placement.rs`, which relation
//!   holds a key's row (the table, a hash partition, a Citus shard on this node (`citus.rs`), or
//!   "ask SQL"); `stamp_catalog.rs`, whether rows are stamped, and the clock table. `probe.rs`
//!   reads an index without SPI or planner; `result_row.rs` builds the row handed back as the
//!   declared return type (`conversation_row`), so added, dropped and retyped columns come back
//!   right; `statements.rs` prepares every SQL statement we run once per backend, under a pinned
//!   search_path. `entry.rs` is the one way a SQL function reaches the
//!   table; what it opens is released on Drop. `departure_table.rs` finds and checks the table of
//!   conversations that left a list.
//! - `create/`: `get_or_create.rs`, check, lock, check again, insert: `find.rs` is the check (one
//!   probe of the key index: the whole hit path, no advisory lock, no transaction id, no WAL, no
//!   sequence value; also find_conversation, the lookup that never writes), `lock.rs` the advisory
//!   lock of a key (class id `LOCK_CLASS_ID`, two-int4 form, released right after the insert so
//!   one transaction can create any number of keys), `insert.rs` the INSERT ... ON CONFLICT DO
//!   NOTHING; `batch.rs`, many keys in one call, set-based, created in one order;
//!   `key_check.rs`, a key checked without creating it.
//! - `list/`: `stamp.rs`, the trigger that stamps every change with its transaction (`version.rs`
//!   the arithmetic); `reads.rs`, the conversation list and the unread totals, read through
//!   positions (`position.rs`) made of snapshots and of the point in the cluster's history they
//!   were taken at (`history.rs`), so that syncing loses nothing; straight from the list indexes
//!   where they are the extension's (`list_scan.rs`), through SQL elsewhere; `departures.rs`,
//!   the conversations that left a list (deleted, moved), recorded by the trigger and reported by
//!   a sync; `own_writes.rs`, positions handed out by a transaction that wrote.
//! - `state/`: `message.rs`, a message reached a channel; `read_state.rs`, a user read (or
//!   cleared) up to a seq; `hide.rs`, a user hid a conversation.
//! - `compat.rs`: the C symbols earlier releases' SQL names, until ALTER EXTENSION UPDATE (it
//!   stands above every folder: each name is another's function).
//! - sql/: the table, the function declarations, and the operations DBAs run (import, checks,
//!   cleanup), in SQL.
//!
//! Invariants: the table's primary key (uid, channel_id, channel_type) guarantees one row per key
//! whoever writes; the function never returns NULL, never lets 23505 reach the caller, and never
//! returns a row the caller's snapshot cannot see (40001 instead, under REPEATABLE READ and
//! SERIALIZABLE). sql/install.sql builds the first release's objects (all but
//! conversation_lock_key, which a later script declares); every later release adds an upgrade
//! script in sql/, which a fresh install also runs, so both paths build the same objects.

use pgrx::prelude::*;

mod create;
mod glue;
mod input;
mod list;
mod relation;
mod state;

mod compat;

::pgrx::pg_module_magic!(name, version);

extension_sql_file!("../sql/install.sql", name = "install", bootstrap);
extension_sql_file!("../sql/pg_conversation--0.1.0--0.2.0.sql", name = "v0_2_0", requires = ["install"]);
extension_sql_file!("../sql/pg_conversation--0.2.0--0.3.0.sql", name = "v0_3_0", requires = ["v0_2_0"]);
extension_sql_file!("../sql/pg_conversation--0.3.0--0.4.0.sql", name = "v0_4_0", requires = ["v0_3_0"]);
extension_sql_file!("../sql/pg_conversation--0.4.0--0.5.0.sql", name = "v0_5_0", requires = ["v0_4_0"]);
extension_sql_file!("../sql/pg_conversation--0.5.0--0.6.0.sql", name = "v0_6_0", requires = ["v0_5_0"]);
extension_sql_file!("../sql/pg_conversation--0.6.0--0.7.0.sql", name = "v0_7_0", requires = ["v0_6_0"]);
extension_sql_file!("../sql/pg_conversation--0.7.0--0.8.0.sql", name = "v0_8_0", requires = ["v0_7_0"]);
extension_sql_file!("../sql/pg_conversation--0.8.0--0.9.0.sql", name = "v0_9_0", requires = ["v0_8_0"]);
extension_sql_file!("../sql/pg_conversation--0.9.0--0.10.0.sql", name = "v0_10_0", requires = ["v0_9_0"]);
extension_sql_file!("../sql/pg_conversation--0.10.0--0.10.1.sql", name = "v0_10_1", requires = ["v0_10_0"]);
extension_sql_file!("../sql/pg_conversation--0.10.1--0.11.0.sql", name = "v0_11_0", requires = ["v0_10_1"], finalize);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    glue::stats::init();
    glue::settings::init();
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
