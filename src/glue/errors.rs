//! Every error the extension raises, each in one place with its SQLSTATE and a message that says
//! what to do. Raising goes through pgrx's ErrorReport, so it unwinds Rust frames before Postgres
//! aborts the (sub)transaction: nothing half-done survives and every lock is released.
//!
//! No hint ever suggests dropping the extension or anything else that loses rows.

use pgrx::pg_sys::panic::{CaughtError, ErrorReport};
use pgrx::prelude::*;
use pgrx::{PgLogLevel, PgSqlErrorCode};

use crate::input::batch_keys::{BatchError, ElementError, MAX_BATCH_KEYS};
use crate::input::key::{KeyError, MAX_CHANNEL_TYPE, MAX_ID_BYTES};

fn raise(code: PgSqlErrorCode, message: String, hint: Option<&str>) -> ! {
    crate::glue::stats::count_error();
    let mut report = ErrorReport::new(code, message, "pg_conversation");
    if let Some(hint) = hint {
        report = report.set_hint(hint);
    }
    report.report(PgLogLevel::ERROR);
    unreachable!("ereport(ERROR) returned")
}

// ---- bad input (class 22): nothing is read or written before these

/// 22004 for NULL, 22023 for empty, 22001 for too long, 22003 for out of range.
pub fn invalid_key(error: KeyError) -> ! {
    let (code, message) = key_error(error);
    raise(code, message, None)
}

fn key_error(error: KeyError) -> (PgSqlErrorCode, String) {
    match error {
        KeyError::Null { argument } => (PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED, format!("{argument} must not be NULL")),
        KeyError::Empty { argument } => (PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, format!("{argument} must not be empty")),
        KeyError::TooLong { argument, bytes } => (
            PgSqlErrorCode::ERRCODE_STRING_DATA_RIGHT_TRUNCATION,
            format!("{argument} is {bytes} bytes long; the limit is {MAX_ID_BYTES} bytes"),
        ),
        KeyError::ChannelTypeOutOfRange { value } => (
            PgSqlErrorCode::ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE,
            format!("channel_type {value} is out of range: it must be between 0 and {MAX_CHANNEL_TYPE}"),
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
        BatchError::NotOneDimensional { dimensions } => raise(
            PgSqlErrorCode::ERRCODE_ARRAY_ELEMENT_ERROR, // 2202E, array_subscript_error
            format!("{argument} must be a one-dimensional array, not one of {dimensions} dimensions"),
            None,
        ),
        BatchError::Syntax(detail) => {
            raise(PgSqlErrorCode::ERRCODE_INVALID_TEXT_REPRESENTATION, format!("{argument} is not valid JSON: {detail}"), None)
        }
        BatchError::TooMany { count } => raise(
            PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            format!("{argument} holds {count} keys; one call takes at most {MAX_BATCH_KEYS}"),
            Some("Split the batch into several calls."),
        ),
        BatchError::TooLarge { bytes, limit } => raise(
            PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            format!("{argument} is {bytes} bytes, more than its keys can take ({limit} bytes at most)"),
            Some(
                "A key's uid and channel_id are at most 255 bytes each, and one call takes at most 10000 keys: send only the keys' fields.",
            ),
        ),
        BatchError::Element { position, error } => {
            let (code, message) = match error {
                ElementError::Key(error) => key_error(error),
                ElementError::Malformed(what) => (invalid, what),
                ElementError::MissingField(field) => (invalid, format!("has no {field}")),
                ElementError::NotAnInteger => (invalid, "channel_type must be an integer".into()),
                ElementError::NulCharacter(field) => {
                    (PgSqlErrorCode::ERRCODE_UNTRANSLATABLE_CHARACTER, format!("{field} holds \\u0000, which text cannot hold"))
                }
            };
            raise(code, format!("{argument} element {position}: {message}"), None)
        }
    }
}

/// A NULL where a value is required, for arguments other than the key's.
pub fn null_argument(argument: &str) -> ! {
    raise(PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED, format!("{argument} must not be NULL"), None)
}

/// A message or read sequence number below `minimum` (seqs start at 1; 0 means "none yet").
pub fn invalid_seq(argument: &str, value: i64, minimum: i64) -> ! {
    raise(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, format!("{argument} must be at least {minimum}, not {value}"), None)
}

/// A read position too far ahead of the conversation's last message (read_state.rs).
pub fn read_too_far_ahead(argument: &str, value: i64, last: i64, max: i64) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
        format!("{argument} {value} is more than {max} ahead of the conversation's last message ({last})"),
        Some("Pass the seq of a message the client has: a read may run ahead of the last message recorded only by the messages still being delivered."),
    )
}

/// A list type that is not a smallint (the table's type column is one).
pub fn invalid_list_type(value: i32) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE,
        format!("type {value} is out of range: conversation types are 1 (chat) and 2 (CMD)"),
        None,
    )
}

pub fn invalid_page_size(value: i32, max: i32) -> ! {
    raise(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, format!("page_size must be between 1 and {max}, not {value}"), None)
}

const START_OVER: &str = "Pass position NULL to list from the start.";

/// A position listing more transactions in progress than this server's snapshots can hold.
pub fn position_too_many_in_flight(count: usize, max: usize) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
        format!("position lists {count} transactions in progress; a position of this server lists at most {max}"),
        Some(START_OVER),
    )
}

/// A position whose horizon the reading snapshot has not caught up with (position.rs).
pub fn position_ahead_of_snapshot() -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_T_R_SERIALIZATION_FAILURE,
        "position is ahead of this transaction's snapshot: it has seen changes this snapshot has not".into(),
        Some("Retry in a new transaction: a replica that has not replayed as far as the server the position came from catches up, or read from the primary."),
    )
}

/// A position conversation_list did not write.
pub fn invalid_position() -> ! {
    raise(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, "position is not one that conversation_list returned".into(), Some(START_OVER))
}

pub fn position_too_long(bytes: usize, limit: usize) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
        format!("position is {bytes} bytes long; no position conversation_list returns is longer than {limit}"),
        Some(START_OVER),
    )
}

/// A position of the list of another type: it says nothing of this list's changes.
pub fn position_of_another_list(given: Option<i16>, asked: Option<i16>) -> ! {
    let name = |list_type: Option<i16>| list_type.map_or_else(|| "every type".to_string(), |t| format!("type {t}"));
    raise(
        PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
        format!("position belongs to the list of {}, not of {}", name(given), name(asked)),
        Some("Keep one position per list the client reads, and pass each back with its own type."),
    )
}

/// A position counted in another cluster's transaction ids (a restored dump, a pg_upgrade'd
/// cluster, a Citus shard moved to another node): what changed since it cannot be told.
pub fn position_of_another_cluster() -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_SNAPSHOT_TOO_OLD,
        "position was returned by another server or database (before a restore, an upgrade or a shard move)".into(),
        Some("List from the start (position NULL) and replace the conversations the client holds with what it returns."),
    )
}

/// A position taken in a history this server's does not contain: on a timeline it did not come
/// from, or past the point where it branched off (a promoted standby that had not replayed as
/// far, a point-in-time recovery, a clone), or past this primary's end of WAL. Ids it took as
/// seen are handed out again here.
pub fn position_of_another_history() -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_SNAPSHOT_TOO_OLD,
        "position was returned in a history this server does not share (before a failover or a recovery to an earlier point)".into(),
        Some("List from the start (position NULL) and replace the conversations the client holds with what it returns."),
    )
}

/// A position taken before the stamp trigger last came into force: writes may have gone
/// unstamped meanwhile (stamp.rs).
pub fn position_before_stamp() -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_SNAPSHOT_TOO_OLD,
        "position was returned before trigger conversation_stamp was last made, enabled or changed: changes since may not be stamped"
            .into(),
        Some("List from the start (position NULL) and replace the conversations the client holds with what it returns."),
    )
}

/// A position older than the departures conversation_forget_departures forgot: some it needs
/// may be gone.
pub fn position_before_forgotten_departures() -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_SNAPSHOT_TOO_OLD,
        "position is older than the departures kept (conversation_forget_departures forgot some it needs)".into(),
        Some("List from the start (position NULL) and replace the conversations the client holds with what it returns."),
    )
}

/// A position taken before table conversation was last truncated: every row it knew is gone.
pub fn position_before_truncate() -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_SNAPSHOT_TOO_OLD,
        "position was returned before table conversation was truncated".into(),
        Some("List from the start (position NULL) and replace the conversations the client holds with what it returns."),
    )
}

/// A position handed out by a transaction that had written conversations, and did not commit:
/// its rows took back what the position counts as seen (own_writes.rs).
pub fn position_of_rolled_back_writes() -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_SNAPSHOT_TOO_OLD,
        "position was returned by a transaction that wrote conversations and then rolled back".into(),
        Some("List from the start (position NULL) and replace the conversations the client holds with what it returns."),
    )
}

/// A ROLLBACK TO SAVEPOINT undid writes a list of this transaction had returned (own_writes.rs).
pub fn listed_writes_rolled_back() -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_T_R_SERIALIZATION_FAILURE,
        "conversation_list returned changes of this transaction that a ROLLBACK TO SAVEPOINT then undid; the positions it handed out would be wrong".into(),
        Some("Retry the whole transaction; or call conversation_list after the writes it should show are past any savepoint rolled back."),
    )
}

/// A position of 0.5.0 or 0.6.0, which does not say where in the history it was taken.
pub fn position_of_earlier_version() -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_SNAPSHOT_TOO_OLD,
        "position was returned by an earlier version of pg_conversation".into(),
        Some("List from the start (position NULL) and replace the conversations the client holds with what it returns."),
    )
}

// ---- concurrency (40001)

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
            CaughtError::PostgresError(report) if report.hint().is_none() => created_after_snapshot(report.message()),
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

// ---- where the call runs

/// A missing conversation, in a transaction that may not write: a READ ONLY transaction or a hot
/// standby. Existing conversations are returned there; only creating one is refused.
pub fn read_only(function: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_READ_ONLY_SQL_TRANSACTION,
        format!("{function} cannot write in a read-only transaction"),
        Some("Write on the primary, in a read-write transaction. On a replica, find_conversation() looks a conversation up and returns NULL when there is none."),
    )
}

/// Row level security policies apply to this caller; the functions refuse rather than bypass them
/// (a probe of the index cannot apply a policy) or apply them to half of what they do.
pub fn row_security_unsupported() -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
        "pg_conversation's functions do not support row level security on table conversation".into(),
        Some("Call them as a role that bypasses row level security (the table owner, or a role with BYPASSRLS), for example through a SECURITY DEFINER function of your own."),
    )
}

/// On Citus, a list read on a node without the user's shard: its snapshot would not be the one
/// the rows are read with on their node, so its positions could lose changes.
pub fn list_on_another_node() -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
        "conversation_list runs on the Citus node that holds the user's shard".into(),
        Some("Call it on its own, outside a transaction block (SELECT * FROM conversation_list(...)): Citus then runs it on that node. After ALTER EXTENSION pg_conversation UPDATE, run SELECT * FROM conversation_distribute() once first."),
    )
}

// ---- the change stamp (stamp.rs)

/// conversation_stamp attached some other way than the extension attaches it.
pub fn trigger_misused(problem: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED,
        format!("conversation_stamp cannot run here: {problem}"),
        Some("It is the trigger BEFORE INSERT OR UPDATE OR DELETE ... FOR EACH ROW on table conversation, BEFORE TRUNCATE ... FOR EACH STATEMENT on it, and BEFORE INSERT OR UPDATE OR DELETE ... FOR EACH ROW with argument 'channel' on table conversation_channel; nothing else."),
    )
}

/// The table (or the user's shard) has no enabled stamp trigger: positions would miss changes.
pub fn changes_not_stamped() -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        "changes to table conversation are not all stamped (trigger conversation_stamp is missing, disabled, changed, or not ENABLE ALWAYS on it or one of its partitions; or trigger conversation_truncate on it), so a position could miss them".into(),
        Some("ALTER TABLE conversation ENABLE ALWAYS TRIGGER conversation_stamp, ENABLE ALWAYS TRIGGER conversation_truncate (ENABLE TRIGGER alone, as pg_restore --disable-triggers leaves it, skips replication and session_replication_role = replica writes; or create them again as the extension's script does, README: Table conversation); on Citus, SELECT * FROM conversation_distribute() puts the stamp on every shard."),
    )
}

/// The departure table's index is missing, changed or not usable (a build or REINDEX
/// CONCURRENTLY under way, or one that failed): a sync could miss a departure.
pub fn departure_index_unusable() -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        "index conversation_departure_list_idx on conversation_departure is missing, changed or not usable, so a sync could miss a conversation that left the list".into(),
        Some("Retry after a build under way ends; otherwise DROP INDEX IF EXISTS conversation_departure_list_idx; CREATE INDEX conversation_departure_list_idx ON conversation_departure (uid, type, version, updated_at, id) (docs/changing-the-table.md). No row is lost meanwhile."),
    )
}

/// 2^48 transactions in one cluster, or 32768 clusters: not in this century.
pub fn versions_exhausted() -> ! {
    raise(PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED, "pg_conversation has no versions left to stamp changes with".into(), None)
}

pub fn clock_table_missing() -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        "pg_conversation's table conversation_clock does not exist".into(),
        Some("If it was renamed or moved, give it back its name and schema; the extension's update script creates it (README: Table conversation_clock)."),
    )
}

/// A delete fired the 0.8.0 stamp trigger, which records departures, and their table is gone.
pub fn departure_table_missing() -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        "pg_conversation's table conversation_departure does not exist, so the conversations that leave a list cannot be recorded".into(),
        Some("If it was renamed or moved, give it back its name and schema; the extension's update script creates it (README: Table conversation_clock)."),
    )
}

/// A large membership (0.9.0) was read and the channel table is gone: its values cannot be told.
pub fn channel_table_missing() -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        "pg_conversation's table conversation_channel does not exist, so the conversations of large channels cannot be read".into(),
        Some("If it was renamed or moved, give it back its name and schema (README: Table conversation_channel)."),
    )
}

/// A channel made large on a table distributed by Citus whose channel table is on one node: the
/// members' lists are read on the nodes of their shards.
pub fn large_channel_on_citus() -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
        "channels cannot be made large while table conversation_channel is not on every node of the Citus cluster".into(),
        Some("Run SELECT * FROM conversation_distribute() on the coordinator again: it makes conversation_channel a reference table (the coordinator must be in the metadata: citus_set_coordinator_host). Until then the channel stays per member."),
    )
}

/// On Citus, this node holds no copy of the channel table: not a reference table, or none here.
pub fn channel_placement_missing() -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        "this node holds no copy of table conversation_channel, so the conversations of large channels cannot be read here".into(),
        Some("It must be a Citus reference table (conversation_distribute makes it one; undistribute_table first if it was distributed otherwise), with a placement on this node: add the node to the metadata (citus_set_coordinator_host on a coordinator), or run replicate_reference_tables()."),
    )
}

/// The channel table is not as the extension made it: a derived value could be read wrong.
pub fn channel_table_shape(problem: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        format!("table conversation_channel cannot be used by pg_conversation: {problem}"),
        Some("Give it back the extension's definition (sql/current/pg_conversation.sql shows it); its rows can stay."),
    )
}

/// This cluster's row of conversation_clock was neither there nor added: a concurrent delete.
pub fn clock_row_missing() -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        "conversation_clock has no row for this cluster and none could be added".into(),
        Some("Retry; do not delete rows of conversation_clock (README: Table conversation_clock)."),
    )
}

// ---- the table (table.rs, result_row.rs): 55000, with a hint that keeps every row

/// The table cannot be found where the extension put it.
pub fn table_missing(schema: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        format!("pg_conversation's table {schema}.conversation does not exist"),
        Some("If it was renamed or moved, give it back its name and schema (ALTER TABLE ... RENAME TO conversation, ALTER TABLE ... SET SCHEMA); the functions look for it there."),
    )
}

/// The called function's catalog entry vanished while it ran: DROP EXTENSION committed.
pub fn extension_dropped() -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        "pg_conversation was dropped while this call was running".into(),
        Some("Retry once CREATE EXTENSION pg_conversation has committed."),
    )
}

/// The table has a shape the functions cannot work with. `fix` says how to restore it, keeping
/// every row.
pub fn table_shape(problem: &str, fix: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        format!("table conversation cannot be used by pg_conversation: {problem}"),
        Some(fix),
    )
}

/// A stored value that does not fit the column of the row a function returns (a retyped column
/// holding a value its old type cannot hold). Keeps the conversion's own SQLSTATE.
pub fn value_not_returnable(code: PgSqlErrorCode, column: &str, detail: &str) -> ! {
    raise(
        code,
        format!("the value of column {column} of table conversation cannot be returned: {detail}"),
        Some("The column was retyped; give conversation_row (ALTER TYPE ... ALTER ATTRIBUTE) or the column the same type again."),
    )
}

/// A statement of ours that SPI refused: only a table changed beyond what the checks above see.
pub fn statement_failed(statement: &str, error: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        format!("pg_conversation could not run its statement ({error}): {statement}"),
        Some("Check that table conversation still has the columns and the primary key the extension created (README: Table conversation)."),
    )
}
