//! Every error the extension raises, each in one place with its SQLSTATE and a message that says
//! what to do. Raising goes through pgrx's ErrorReport, so it unwinds Rust frames before Postgres
//! aborts the (sub)transaction: nothing half-done survives and every lock is released.

use pgrx::pg_sys::panic::{CaughtError, ErrorReport};
use pgrx::prelude::*;
use pgrx::{PgLogLevel, PgSqlErrorCode};

use crate::batch_keys::{BatchError, ElementError, MAX_BATCH_KEYS};
use crate::key::{KeyError, MAX_CHANNEL_TYPE, MAX_ID_BYTES};

fn raise(code: PgSqlErrorCode, message: String, hint: Option<&str>) -> ! {
    crate::stats::count_error();
    let mut report = ErrorReport::new(code, message, "pg_conversation");
    if let Some(hint) = hint {
        report = report.set_hint(hint);
    }
    report.report(PgLogLevel::ERROR);
    unreachable!("ereport(ERROR) returned")
}

/// Bad input: 22004 for NULL, 22023 for empty, 22001 for too long, 22003 for out of range.
pub fn invalid_key(error: KeyError) -> ! {
    let (code, message) = key_error(error);
    raise(code, message, None)
}

fn key_error(error: KeyError) -> (PgSqlErrorCode, String) {
    match error {
        KeyError::Null { argument } => {
            (PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED, format!("{argument} must not be NULL"))
        }
        KeyError::Empty { argument } => {
            (PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, format!("{argument} must not be empty"))
        }
        KeyError::TooLong { argument, bytes } => (
            PgSqlErrorCode::ERRCODE_STRING_DATA_RIGHT_TRUNCATION,
            format!("{argument} is {bytes} bytes long; the limit is {MAX_ID_BYTES} bytes"),
        ),
        KeyError::ChannelTypeOutOfRange { channel_type } => (
            PgSqlErrorCode::ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE,
            format!("channel_type {channel_type} is out of range: it must be between 0 and {MAX_CHANNEL_TYPE}"),
        ),
    }
}

/// A batch refused before anything is read or written. An element's error names the argument
/// and the element's 1-based position, and keeps the SQLSTATE a single key would get.
pub fn invalid_batch(argument: &str, error: BatchError) -> ! {
    let invalid = PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE;
    match error {
        BatchError::Channel(error) => invalid_key(error),
        BatchError::NotAnArray => raise(invalid, format!("{argument} must be a JSON array of keys"), None),
        BatchError::TooMany { count } => raise(
            PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            format!("{argument} holds {count} keys; one call takes at most {MAX_BATCH_KEYS}"),
            Some("Split the batch into several calls."),
        ),
        BatchError::Element { position, error } => {
            let (code, message) = match error {
                ElementError::Key(error) => key_error(error),
                ElementError::NotAnObject => (
                    invalid,
                    r#"must be an object {"uid": ..., "channel_id": ..., "channel_type": ...}"#.into(),
                ),
                ElementError::MissingField(field) => (invalid, format!("has no {field}")),
                ElementError::WrongType { field, expected } => (invalid, format!("{field} must be {expected}")),
                ElementError::UnknownField(field) => (
                    invalid,
                    format!("has an unknown field \"{field}\"; the fields are uid, channel_id and channel_type"),
                ),
            };
            raise(code, format!("{argument} element {position}: {message}"), None)
        }
    }
}

/// A NULL where a value is required, for arguments other than the key's.
pub fn null_argument(argument: &str) -> ! {
    raise(PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED, format!("{argument} must not be NULL"), None)
}

/// A message or read sequence number below 1 (seqs start at 1; 0 means "none yet").
pub fn invalid_seq(argument: &str, value: i64) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
        format!("{argument} must be at least 1, not {value}"),
        None,
    )
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

/// Runs `insert` (an INSERT ... ON CONFLICT DO NOTHING) and turns Postgres's 40001 for a conflict
/// with a row this snapshot cannot see into `created_after_snapshot`. SSI failures already carry
/// a hint and pass through unchanged.
pub fn hint_retry_on_snapshot_conflict<R>(insert: impl FnOnce() -> R) -> R {
    // Every catch below raises again, so no state the closure touched is seen after an error.
    PgTryBuilder::new(std::panic::AssertUnwindSafe(insert))
        .catch_when(PgSqlErrorCode::ERRCODE_T_R_SERIALIZATION_FAILURE, |caught| match caught {
            CaughtError::PostgresError(report) if report.hint().is_none() => {
                created_after_snapshot(report.message())
            }
            other => other.rethrow(),
        })
        .execute()
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
