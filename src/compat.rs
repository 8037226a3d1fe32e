//! The C symbols earlier releases' SQL declarations name, kept so that a new library serves a
//! database until `ALTER EXTENSION pg_conversation UPDATE` points its declarations at the new
//! names (as PostgreSQL's contrib modules keep theirs). Up to 0.3.0, pgrx generated the entry
//! points of some functions and named them `<function>_wrapper`.

use crate::glue::call::sql_function;

/// Declares `old` as one more name of the SQL function `new`.
macro_rules! earlier_name {
    ($old:ident => $new:path) => {
        sql_function! {
            fn $old(call) {
                // SAFETY: the same V1 call, passed on as it came.
                unsafe { $new(call.fcinfo()) }
            }
        }
    };
}

earlier_name!(get_or_create_conversations_from_jsonb_wrapper => crate::create::batch::get_or_create_conversations_jsonb);
earlier_name!(get_or_create_conversations_for_members_wrapper => crate::create::batch::get_or_create_conversations_members);
earlier_name!(conversation_stats_row_wrapper => crate::glue::stats_view::conversation_stats_row);
earlier_name!(conversation_stats_reset_all_wrapper => crate::glue::stats_view::conversation_stats_reset);
earlier_name!(conversation_lock_key_wrapper => crate::create::lock::conversation_lock_key);
