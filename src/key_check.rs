//! `conversation_key_is_valid(uid, channel_id, channel_type)`: the table's CHECK constraint
//! `conversation_key_check`, which holds writers that bypass the functions to the key's limits.
//!
//! One function call rather than three CHECK expressions: PostgreSQL parses and plans every CHECK
//! expression again for each INSERT or UPDATE statement, which cost an INSERT about 15% of its
//! throughput. It runs once per written row, so it stays tiny: a raw V1 function that reads only
//! the values' lengths, never detoasting them (a long value is refused by its size alone).

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::key;

#[no_mangle]
pub extern "C" fn pg_finfo_conversation_key_is_valid() -> &'static pg_sys::Pg_finfo_record {
    const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

/// Declared STRICT (sql/): never called with a NULL.
#[pg_guard]
#[no_mangle]
pub unsafe extern "C-unwind" fn conversation_key_is_valid(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    let argument = |n: usize| (*(*fcinfo).args.as_ptr().add(n)).value;
    // The size the value has uncompressed, header included, read from its (toast) header.
    let text_bytes = |n: usize| pg_sys::toast_raw_datum_size(argument(n)) - pg_sys::VARHDRSZ;
    let channel_type = argument(2).value() as i16;
    pg_sys::Datum::from(key::within_limits(text_bytes(0), text_bytes(1), i64::from(channel_type)))
}
