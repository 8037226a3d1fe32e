//! The SQL side of the counters (glue/stats.rs): the one row of the `conversation_stats` view,
//! and `conversation_stats_reset()`.

use std::sync::atomic::{AtomicU64, Ordering};

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::glue::call::sql_function;
use crate::glue::stats;

sql_function! {
    /// The one row of the conversation_stats view (declared in sql/ with its OUT columns).
    fn conversation_stats_row(call) {
        let output = call.materialize();
        let none = (pg_sys::Datum::from(0), true);
        let mut row = [none; 13];
        if let Some(c) = stats::counters() {
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
        } else {
            notice!(
                "pg_conversation is not in shared_preload_libraries, so no counters are kept; \
                 add it there and restart the server to keep them"
            );
            row[0] = (pg_sys::Datum::from(false), false);
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
        stats::reset();
        call.return_null()
    }
}
