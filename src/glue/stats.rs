//! Live counters since server start (or the last reset), in shared memory, read through the
//! `conversation_stats` view and cleared by `conversation_stats_reset()` (both declared in
//! stats_view.rs).
//!
//! The ritual is pg_stat_statements': the memory is requested while the library is preloaded
//! (shared_preload_libraries), attached at shared-memory startup, inherited by every backend.
//! Counters are plain atomics (relaxed: each is a sum, none orders anything else), updated outside
//! any transaction, so work that later rolls back is still counted, as in pg_stat_statements.
//! A call of get_or_create_conversation ends in exactly one of hits, creates, races_resolved or an
//! error, so the hit path pays for one atomic add. (Other functions that may create a row count
//! their own calls: mark_read counts a read, not the creation it may make.)
//!
//! Without preloading there is no shared memory to count in: counting is skipped, and the view
//! says so (preloaded = false, counters NULL, and a NOTICE on how to turn it on).

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::{pg_shmem_init, PGRXSharedMemory, PgAtomic};

#[derive(Default)]
pub struct Counters {
    pub hits: AtomicU64,
    pub creates: AtomicU64,
    pub lock_waits: AtomicU64,
    pub races_resolved: AtomicU64,
    pub errors: AtomicU64,
    pub batch_calls: AtomicU64,
    pub batch_keys: AtomicU64,
    pub batch_creates: AtomicU64,
    pub messages: AtomicU64,
    pub reads: AtomicU64,
    /// When the counters last started from zero, as a TimestampTz.
    pub reset_at: AtomicI64,
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

/// The counters, None when the library was not preloaded (there is no shared memory to read).
pub fn counters() -> Option<&'static Counters> {
    PRELOADED.load(Ordering::Relaxed).then(|| COUNTERS.get())
}

/// Starts every counter from zero.
pub fn reset() {
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
}
