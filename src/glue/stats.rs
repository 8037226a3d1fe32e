//! Live counters since server start (or the last reset), in shared memory, read through the
//! `conversation_stats` view and cleared by `conversation_stats_reset()`.
//!
//! The ritual is pg_stat_statements': the memory is requested while the library is preloaded
//! (shared_preload_libraries), attached at shared-memory startup, inherited by every backend.
//! Counters are plain atomics (relaxed: each is a sum, none orders anything else), updated outside
//! any transaction, so work that later rolls back is still counted, as in pg_stat_statements.
//! A call of get_or_create_conversation ends in exactly one of hits, creates, races_resolved or an
//! error, so the hit path pays for one atomic add.
//!
//! Without preloading there is no shared memory to count in: counting is skipped, and the view
//! says so (preloaded = false, counters NULL, and a NOTICE on how to turn it on).

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::{pg_shmem_init, PGRXSharedMemory, PgAtomic};

use crate::glue::call::sql_function;

#[derive(Default)]
pub struct Counters {
    hits: AtomicU64,
    creates: AtomicU64,
    lock_waits: AtomicU64,
    races_resolved: AtomicU64,
    errors: AtomicU64,
    batch_calls: AtomicU64,
    batch_keys: AtomicU64,
    batch_creates: AtomicU64,
    messages: AtomicU64,
    reads: AtomicU64,
    /// When the counters last started from zero, as a TimestampTz.
    reset_at: AtomicI64,
}

// SAFETY: atomics only; no pointers into one process's memory.
unsafe impl PGRXSharedMemory for Counters {}

// SAFETY: the name is ours alone.
static COUNTERS: PgAtomic<Counters> = unsafe { PgAtomic::new(c"pg_conversation counters") };

/// Set in _PG_init when the library is being preloaded: only then is COUNTERS attached.
static PRELOADED: AtomicBool = AtomicBool::new(false);

/// Called from _PG_init.
pub fn init() {
    // SAFETY: a plain global of the postmaster, read in _PG_init.
    if unsafe { !pgrx::pg_sys::process_shared_preload_libraries_in_progress } {
        return;
    }
    pg_shmem_init!(
        COUNTERS = Counters {
            // SAFETY: a clock read.
            reset_at: AtomicI64::new(unsafe { pgrx::pg_sys::GetCurrentTimestamp() }),
            ..Counters::default()
        }
    );
    PRELOADED.store(true, Ordering::Relaxed);
}

fn with_counters(update: impl FnOnce(&Counters)) {
    if PRELOADED.load(Ordering::Relaxed) {
        update(COUNTERS.get());
    }
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// How a single-key call ended.
pub enum Outcome {
    Hit,
    Created,
    /// The key was created by a concurrent caller while we were creating it.
    RaceResolved,
}

pub fn count_call(outcome: Outcome, lock_waited: bool) {
    with_counters(|c| {
        add(
            match outcome {
                Outcome::Hit => &c.hits,
                Outcome::Created => &c.creates,
                Outcome::RaceResolved => &c.races_resolved,
            },
            1,
        );
        if lock_waited {
            add(&c.lock_waits, 1);
        }
    });
}

pub fn count_batch(keys: usize, created: usize) {
    with_counters(|c| {
        add(&c.batch_calls, 1);
        add(&c.batch_keys, keys as u64);
        add(&c.batch_creates, created as u64);
    });
}

pub fn count_message() {
    with_counters(|c| add(&c.messages, 1));
}

pub fn count_read() {
    with_counters(|c| add(&c.reads, 1));
}

pub fn count_error() {
    with_counters(|c| add(&c.errors, 1));
}

sql_function! {
    /// The one row of the conversation_stats view (declared in sql/ with its OUT columns).
    fn conversation_stats_row(call) {
        let output = call.materialize();
        let none = (pg_sys::Datum::from(0), true);
        let mut row = [none; 13];
        if !PRELOADED.load(Ordering::Relaxed) {
            notice!(
                "pg_conversation is not in shared_preload_libraries, so no counters are kept; \
                 add it there and restart the server to keep them"
            );
            row[0] = (pg_sys::Datum::from(false), false);
        } else {
            let c = COUNTERS.get();
            let read = |counter: &AtomicU64| (pg_sys::Datum::from(counter.load(Ordering::Relaxed) as i64), false);
            let (hits, creates, races) = (read(&c.hits), read(&c.creates), read(&c.races_resolved));
            let calls = hits.0.value() as i64 + creates.0.value() as i64 + races.0.value() as i64;
            row = [
                (pg_sys::Datum::from(true), false),
                (pg_sys::Datum::from(calls), false),
                hits,
                creates,
                read(&c.lock_waits),
                races,
                read(&c.errors),
                read(&c.batch_calls),
                read(&c.batch_keys),
                read(&c.batch_creates),
                read(&c.messages),
                read(&c.reads),
                (pg_sys::Datum::from(c.reset_at.load(Ordering::Relaxed)), false),
            ];
        }
        let values: Vec<pg_sys::Datum> = row.iter().map(|(value, _)| *value).collect();
        let nulls: Vec<bool> = row.iter().map(|(_, null)| *null).collect();
        output.push(&values, &nulls);
        call.return_null()
    }
}

sql_function! {
    /// Starts every counter from zero. Revoked from PUBLIC in the install script.
    fn conversation_stats_reset(call) {
        with_counters(|c| {
            for counter in [
                &c.hits,
                &c.creates,
                &c.lock_waits,
                &c.races_resolved,
                &c.errors,
                &c.batch_calls,
                &c.batch_keys,
                &c.batch_creates,
                &c.messages,
                &c.reads,
            ] {
                counter.store(0, Ordering::Relaxed);
            }
            // SAFETY: a clock read.
            c.reset_at.store(unsafe { pgrx::pg_sys::GetCurrentTimestamp() }, Ordering::Relaxed);
        });
        call.return_null()
    }
}
