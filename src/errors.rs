//! Every error the extension raises, each in one place with its SQLSTATE and a message that says
//! what to do. Raising goes through pgrx's ErrorReport, so it unwinds Rust frames before Postgres
//! aborts the (sub)transaction: nothing half-done survives and every lock is released.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{PgLogLevel, PgSqlErrorCode};

use crate::key::{KeyError, MAX_CHANNEL_TYPE, MAX_ID_BYTES};

const FUNCTION: &str = "get_or_create_conversation";

fn raise(code: PgSqlErrorCode, message: String, hint: Option<&str>) -> ! {
    let mut report = ErrorReport::new(code, message, FUNCTION);
    if let Some(hint) = hint {
        report = report.set_hint(hint);
    }
    report.report(PgLogLevel::ERROR);
    unreachable!("ereport(ERROR) returned")
}

/// Bad input: 22004 for NULL, 22023 for empty, 22001 for too long, 22003 for out of range.
pub fn invalid_key(error: KeyError) -> ! {
    match error {
        KeyError::Null { argument } => raise(
            PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            format!("{argument} must not be NULL"),
            None,
        ),
        KeyError::Empty { argument } => raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("{argument} must not be empty"),
            None,
        ),
        KeyError::TooLong { argument, bytes } => raise(
            PgSqlErrorCode::ERRCODE_STRING_DATA_RIGHT_TRUNCATION,
            format!("{argument} is {bytes} bytes long; the limit is {MAX_ID_BYTES} bytes"),
            None,
        ),
        KeyError::ChannelTypeOutOfRange { channel_type } => raise(
            PgSqlErrorCode::ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE,
            format!("channel_type {channel_type} is out of range: it must be between 0 and {MAX_CHANNEL_TYPE}"),
            None,
        ),
    }
}

/// REPEATABLE READ or SERIALIZABLE, and our insert met a row committed by a transaction this
/// snapshot cannot see: returning it would show the caller a row its own snapshot says is not
/// there. Postgres raised 40001 without a hint; we keep its message and add one.
pub fn created_after_snapshot(message: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_T_R_SERIALIZATION_FAILURE,
        format!("{message} (the conversation was created by a transaction that committed after this transaction's snapshot was taken)"),
        Some("Retry the whole transaction; the retry will find the conversation."),
    )
}

/// The row vanished between our insert attempt and the re-read, several times over: someone is
/// deleting it as fast as we create it.
pub fn deleted_while_creating() -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_T_R_SERIALIZATION_FAILURE,
        "could not get or create the conversation: it was deleted concurrently while being created".into(),
        Some("Retry the transaction."),
    )
}

/// The extension's table or its key index is missing or has been changed under us.
pub fn broken_install(what: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        format!("pg_conversation is not installed correctly: {what}"),
        Some("Run ALTER EXTENSION pg_conversation UPDATE, or drop and recreate the extension."),
    )
}

/// Row level security policies apply to this caller; the direct index probe cannot apply them.
pub fn row_security_unsupported() -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
        "get_or_create_conversation does not support row level security on table conversation".into(),
        Some("Disable row level security on the table, or call the function as a role that bypasses it."),
    )
}
