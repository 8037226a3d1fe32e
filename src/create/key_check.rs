//! `conversation_key_is_valid(uid, channel_id, channel_type)`: the table's CHECK constraint
//! `conversation_key_check`, which holds writers that bypass the functions to the key's limits.
//!
//! One function call rather than three CHECK expressions: PostgreSQL parses and plans every CHECK
//! expression again for each INSERT or UPDATE statement, which cost an INSERT about 15% of its
//! throughput. It runs once per written row, so it stays tiny: it reads only the values' lengths,
//! never detoasting them (a long value is refused by its size alone), and their bytes in any
//! encoding are what the limits count.

use pgrx::pg_sys;

use crate::glue::call::sql_function;
use crate::input::key;

sql_function! {
    /// Declared STRICT and IMMUTABLE (sql/): never called with a NULL.
    fn conversation_key_is_valid(call) {
        let argument = |n: usize| call.datum(n).expect("STRICT: no NULL arguments");
        // SAFETY: the size the value has uncompressed, header included, read from its (toast) header.
        let text_bytes = |n: usize| unsafe { pg_sys::toast_raw_datum_size(argument(n)) } - pg_sys::VARHDRSZ;
        let channel_type = argument(2).value() as i16;
        pg_sys::Datum::from(key::within_limits(text_bytes(0), text_bytes(1), i64::from(channel_type)))
    }
}
