//! The change stamp: trigger `conversation_stamp` sets column `version` on every insert and update
//! of a conversation, whoever writes it (the extension, the application's own SQL, a DBA), so
//! that conversation_list (list.rs) can tell a client exactly what changed since its position.
//!
//! version = generation * 2^48 + the full id of the writing (top-level) transaction. Transaction
//! ids are what snapshots are made of: a position is a snapshot (position.rs), and "changed
//! since" means "written by a transaction that snapshot did not see", which stays true however
//! out of order writers commit. The generation keeps versions growing across histories: a
//! restored dump, a pg_upgrade'd cluster, a Citus node, and a timeline (a promoted standby, a
//! point-in-time recovery, which hand out ids their old history had already handed out) count
//! transaction ids from their own start, so the first write of each adds its row to
//! conversation_clock with the next generation.
//!
//! Every row written is stamped, a version it brings too: an INSERT that carries a version (a
//! restore, an ORM saving every column, INSERT ... SELECT from an archive, a Citus shard moved in,
//! logical replication's apply) carries another history's number. Only conversation_partition
//! moves rows with their versions, before its triggers exist. The trigger is ENABLE ALWAYS, so
//! that it fires for replication apply and under session_replication_role = replica too.
//! Whether a table is stamped, and since which transaction, is the relation's to say:
//! `stamp_catalog::stamped_since` (the list refuses a table that is not, or a position older).
//!
//! The clock is read and written as its owner, the way PostgreSQL's foreign-key triggers check
//! the referenced table as its owner: a role that may write conversations needs no privilege on
//! conversation_clock, and only our own statements (search_path pinned) run meanwhile.

use std::cell::Cell;

use pgrx::pg_sys;

use crate::glue::call::sql_function;
use crate::glue::errors;
use crate::list::departures::{self, DepartingKey};
use crate::list::version::{version_of, MAX_GENERATION, XID_MASK};
use crate::list::{history, own_writes};
use crate::relation::departure_table;
use crate::relation::membership;
use crate::relation::probe::Snapshot;
use crate::relation::stamp_catalog;
use crate::relation::statements::{arg, as_owner_of, connect, prepared, run, Arg, Statement, Statements};
use crate::relation::table::{self, Names};

thread_local! {
    /// The generation of this history's versions, per backend, for the clock table it was read
    /// from (a DROP/CREATE EXTENSION makes a new one) and the timeline (a standby's backends
    /// write after its promotion). Remembered once a row holds it, even one not committed yet:
    /// were it rolled back, the next writer would add the same generation (the greatest of the
    /// other histories' plus one), so no backend ever stamps another one.
    static KNOWN_GENERATION: Cell<Option<(pg_sys::Oid, u32, i64)>> = const { Cell::new(None) };
}

/// The statements below by [whether the clock has a generation per timeline] ($2, the timeline, is
/// not read by a clock of before 0.7.0: `stamp_catalog::Clock`).
const GENERATION_SQL: [&str; 2] = [
    "SELECT max(k.generation)::int8 FROM {clock} AS k WHERE k.system_identifier = $1",
    "SELECT max(k.generation)::int8 FROM {clock} AS k WHERE k.system_identifier = $1 AND k.timeline = $2",
];

/// For a writer: sees a row another writer just committed.
const GENERATION_OF: [Statement; 2] = [
    Statement { sql: GENERATION_SQL[0], parameters: &[pg_sys::INT8OID, pg_sys::INT4OID], snapshot: Snapshot::Fresh },
    Statement { sql: GENERATION_SQL[1], parameters: &[pg_sys::INT8OID, pg_sys::INT4OID], snapshot: Snapshot::Fresh },
];

/// For a reader: the calling statement's snapshot.
const GENERATION_SEEN: [Statement; 2] = [
    Statement { sql: GENERATION_SQL[0], parameters: &[pg_sys::INT8OID, pg_sys::INT4OID], snapshot: Snapshot::Statement },
    Statement { sql: GENERATION_SQL[1], parameters: &[pg_sys::INT8OID, pg_sys::INT4OID], snapshot: Snapshot::Statement },
];

/// The generation a cluster that has not written yet would take: the next one.
const NEXT_GENERATION: Statement =
    Statement { sql: "SELECT COALESCE(max(k.generation) + 1, 0)::int8 FROM {clock} AS k", parameters: &[], snapshot: Snapshot::Statement };

/// The first writers of a history may each add this row, and none waits for another (a unique key
/// would make them wait for the first one's whole transaction, and could deadlock them). So they
/// must all add the same generation, whatever each sees: one that finds a row of its history
/// (another first writer's, committed since it looked) takes that row's generation; otherwise the
/// next after every other history's, which a row of its own history cannot change. (Taking the
/// next after every row, its own history's included, made a writer that saw another's row add
/// a second, greater generation: versions stamped in one and horizons taken in the other, so a
/// sync returned the same rows for ever, or missed some.)
const NEW_GENERATION: [Statement; 2] = [
    Statement {
        sql: "INSERT INTO {clock} (system_identifier, generation) \
              SELECT $1, COALESCE(max(c.generation) FILTER (WHERE c.system_identifier = $1), \
                                  max(c.generation) FILTER (WHERE c.system_identifier <> $1) + 1, 0) \
              FROM {clock} AS c \
              RETURNING generation::int8",
        parameters: &[pg_sys::INT8OID, pg_sys::INT4OID],
        snapshot: Snapshot::Fresh,
    },
    Statement {
        sql: "INSERT INTO {clock} (system_identifier, timeline, generation) \
              SELECT $1, $2, COALESCE(max(c.generation) FILTER (WHERE c.system_identifier = $1 AND c.timeline = $2), \
                                      max(c.generation) FILTER (WHERE c.system_identifier <> $1 OR c.timeline IS DISTINCT FROM $2) + 1, 0) \
              FROM {clock} AS c \
              RETURNING generation::int8",
        parameters: &[pg_sys::INT8OID, pg_sys::INT4OID],
        snapshot: Snapshot::Fresh,
    },
];

sql_function! {
    /// Trigger function: BEFORE INSERT OR UPDATE OR DELETE ... FOR EACH ROW on the conversation
    /// table (and so on its partitions and shards), and BEFORE TRUNCATE ... FOR EACH STATEMENT
    /// on the table; with the argument 'channel', the row trigger of conversation_channel (0.9.0).
    /// Anything else is a misuse (39P01). A conversation deleted, or one whose key changes, is
    /// recorded as a departure from its list; a truncation, as the mark that every row left
    /// (departures.rs). A channel row is only stamped: it is in no list of its own.
    fn conversation_stamp(call) {
        // SAFETY: a trigger call's context is its TriggerData; checked before use.
        unsafe {
            let context = (*call.fcinfo()).context;
            if context.is_null() || (*context).type_ != pg_sys::NodeTag::T_TriggerData {
                errors::trigger_misused("it was not called as a trigger");
            }
            let trigger = &*(context as *const pg_sys::TriggerData);
            let event = trigger.tg_event;
            if event & pg_sys::TRIGGER_EVENT_TIMINGMASK != pg_sys::TRIGGER_EVENT_BEFORE {
                errors::trigger_misused("it must fire BEFORE");
            }
            if event & pg_sys::TRIGGER_EVENT_OPMASK == pg_sys::TRIGGER_EVENT_TRUNCATE {
                // Every row leaves at once: the positions taken before are refused (departures.rs).
                let schema = call.schema();
                departures::record_truncation(schema, version_now(schema));
                own_writes::stamped();
                return pg_sys::Datum::from(0);
            }
            if event & pg_sys::TRIGGER_EVENT_ROW == 0 {
                errors::trigger_misused("it must fire FOR EACH ROW on INSERT, UPDATE or DELETE");
            }
            let desc = (*trigger.tg_relation).rd_att;
            let target = target_of(call, trigger);
            // The row written (none for a delete), and whether the old one leaves its list: deleted,
            // or its key changed.
            // (A channel row is in no list: it never departs.)
            let (written, departing) = match event & pg_sys::TRIGGER_EVENT_OPMASK {
                pg_sys::TRIGGER_EVENT_INSERT => (Some(trigger.tg_trigtuple), false),
                pg_sys::TRIGGER_EVENT_UPDATE => (
                    Some(trigger.tg_newtuple),
                    !target.channel && departures::key_changed(&target.key, desc, trigger.tg_trigtuple, trigger.tg_newtuple),
                ),
                pg_sys::TRIGGER_EVENT_DELETE => (None, !target.channel),
                _ => errors::trigger_misused("it must fire on INSERT, UPDATE or DELETE"),
            };
            #[cfg(any(test, feature = "pg_test"))]
            if let (Some(tuple), true) = (written, stamp_catalog::for_tests::ROWS_AS_GIVEN.get()) {
                return pg_sys::Datum::from(tuple);
            }
            let version = version_now(target.schema);
            // 0.8.0's trigger, the one that fires on DELETE, must record it; before that update
            // there is nowhere to, and no sync reads one.
            if departing
                && !departures::record(&target.key, target.departures, target.schema, desc, trigger.tg_trigtuple, version)
                && (*trigger.tg_trigger).tgtype as u32 & pg_sys::TRIGGER_TYPE_DELETE != 0
            {
                errors::departure_table_missing();
            }
            if departing && membership::is_large(trigger.tg_trigtuple, desc, target.large) {
                departures::leave_large_channel(&target.key, target.channels, target.schema, desc, trigger.tg_trigtuple);
            }
            // (A list in this transaction returns its writes, departures too: its positions are
            // tentative.)
            own_writes::stamped();
            let Some(tuple) = written else {
                return pg_sys::Datum::from(trigger.tg_trigtuple); // the delete goes on
            };
            let mut value = pg_sys::Datum::from(version);
            let mut null = false;
            let mut column = target.attnum;
            pg_sys::Datum::from(pg_sys::heap_modify_tuple_by_cols(tuple, desc, 1, &raw mut column, &raw mut value, &raw mut null))
        }
    }
}

/// What the trigger needs of the relation it fires for, looked up at its first row of a statement
/// and kept in the trigger's FmgrInfo (which lives as long as the statement's executor state):
/// nothing per row that can be per statement.
#[repr(C)]
#[derive(Clone, Copy)]
struct StampTarget {
    relid: pg_sys::Oid,
    attnum: i32,
    schema: pg_sys::Oid,
    /// What a departure is made of (departures.rs), and where it goes (None before 0.8.0).
    key: DepartingKey,
    departures: Option<pg_sys::Oid>,
    /// conversation_channel's trigger (argument 'channel'): its rows are stamped and never depart.
    channel: bool,
    /// Where a row says it is a membership of a large channel (0: nowhere, before 0.9.0), and the
    /// channel table such a membership leaves (departures::leave_large_channel).
    large: i32,
    channels: Option<pg_sys::Oid>,
}

/// # Safety
/// `call` is a trigger call and `trigger` its TriggerData.
unsafe fn target_of(call: &crate::glue::call::Call, trigger: &pg_sys::TriggerData) -> StampTarget {
    let relation = trigger.tg_relation;
    let flinfo = (*call.fcinfo()).flinfo;
    let kept = (*flinfo).fn_extra as *mut StampTarget;
    if !kept.is_null() && (*kept).relid == (*relation).rd_id {
        return *kept;
    }
    let desc = (*relation).rd_att;
    let attnum = pg_sys::SPI_fnumber(desc, c"version".as_ptr());
    if attnum <= 0 || pg_sys::SPI_gettypeid(desc, attnum) != pg_sys::INT8OID {
        errors::table_shape("it has no bigint column version", "ALTER TABLE conversation ADD COLUMN version bigint NOT NULL DEFAULT 0");
    }
    let schema = call.schema();
    let channel = channel_trigger(&*trigger.tg_trigger);
    let target = StampTarget {
        relid: (*relation).rd_id,
        attnum,
        schema,
        key: DepartingKey::of(desc),
        departures: departure_table::relid_in(schema),
        channel,
        large: membership::large_column(desc),
        channels: table::extension_table(schema, c"conversation_channel"),
    };
    let kept = pg_sys::MemoryContextAlloc((*flinfo).fn_mcxt, std::mem::size_of::<StampTarget>()) as *mut StampTarget;
    kept.write(target);
    (*flinfo).fn_extra = kept.cast();
    target
}

/// Whether `trigger` is conversation_channel's (its one argument 'channel'); any other argument
/// is a misuse.
///
/// # Safety
/// `trigger` is the firing trigger's catalog entry.
unsafe fn channel_trigger(trigger: &pg_sys::Trigger) -> bool {
    match trigger.tgnargs {
        0 => false,
        1 if std::ffi::CStr::from_ptr(*trigger.tgargs) == c"channel" => true,
        _ => errors::trigger_misused("its only argument may be 'channel', on table conversation_channel"),
    }
}

/// The version a row written now by this transaction gets.
fn version_now(schema: pg_sys::Oid) -> i64 {
    // SAFETY: assigns the top-level transaction id if there is none yet (a write needs one).
    let xid = unsafe { pg_sys::GetTopFullTransactionId() }.value;
    if xid > XID_MASK {
        errors::versions_exhausted();
    }
    version_of(written_generation(schema), xid)
}

/// The generation remembered for the clock table `clock` on `timeline`, if any.
fn remembered_generation(clock: pg_sys::Oid, timeline: u32) -> Option<i64> {
    KNOWN_GENERATION.get().and_then(|(relid, of, generation)| (relid == clock && of == timeline).then_some(generation))
}

/// This history's generation for writing: its row in conversation_clock, added if missing.
fn written_generation(schema: pg_sys::Oid) -> i64 {
    let clock = stamp_catalog::clock(schema);
    let timeline = history::timeline();
    if let Some(generation) = remembered_generation(clock.relid, timeline) {
        return generation;
    }
    let generation = clock_generation(schema, &clock, timeline, &[&GENERATION_OF, &NEW_GENERATION]);
    if generation > MAX_GENERATION {
        errors::versions_exhausted();
    }
    KNOWN_GENERATION.set(Some((clock.relid, timeline, generation)));
    generation
}

/// This history's generation as the first of `statements` (by the clock's kind) that returns one
/// says, run as the clock's owner.
fn clock_generation(schema: pg_sys::Oid, clock: &stamp_catalog::Clock, timeline: u32, statements: &[&[Statement; 2]]) -> i64 {
    let names = Names::of_schema(schema);
    let args = [system_identifier_arg(), arg(pg_sys::Datum::from(timeline as i32))];
    as_owner_of(clock.relid, || {
        connect(|prepared_statements| {
            let per_timeline = usize::from(clock.per_timeline);
            statements
                .iter()
                .find_map(|kinds| one_i64(prepared_statements, &names, &kinds[per_timeline], &args))
                .unwrap_or_else(|| errors::clock_row_missing())
        })
    })
}

#[cfg(any(test, feature = "pg_test"))]
pub mod for_tests {
    use pgrx::pg_sys;

    use crate::relation::stamp_catalog;

    /// What a first writer of this history adds to the clock of `schema` (it found no row of its
    /// history when it looked).
    pub fn first_writer_adds(schema: pg_sys::Oid) -> i64 {
        let clock = stamp_catalog::clock(schema);
        super::clock_generation(schema, &clock, crate::list::history::timeline(), &[&super::NEW_GENERATION])
    }
}

/// This history's generation for reading (a STABLE function cannot add the row): its row, or
/// the generation its first write will take.
pub fn read_generation(schema: pg_sys::Oid) -> i64 {
    let clock = stamp_catalog::clock(schema);
    let timeline = history::timeline();
    if let Some(generation) = remembered_generation(clock.relid, timeline) {
        return generation;
    }
    let names = Names::of_schema(schema);
    let (generation, held) = as_owner_of(clock.relid, || {
        connect(|statements| {
            let seen = &GENERATION_SEEN[usize::from(clock.per_timeline)];
            match one_i64(statements, &names, seen, &[system_identifier_arg(), arg(pg_sys::Datum::from(timeline as i32))]) {
                Some(generation) => (generation, true),
                None => (one_i64(statements, &names, &NEXT_GENERATION, &[]).unwrap_or(0), false),
            }
        })
    });
    if held {
        KNOWN_GENERATION.set(Some((clock.relid, timeline, generation)));
    }
    generation
}

pub fn system_identifier() -> u64 {
    // SAFETY: a read of pg_control's copy in shared memory.
    unsafe { pg_sys::GetSystemIdentifier() }
}

fn system_identifier_arg() -> Arg {
    arg(pg_sys::Datum::from(system_identifier() as i64))
}

fn one_i64(statements: &Statements, names: &Names, statement: &Statement, args: &[Arg]) -> Option<i64> {
    let prepared = prepared(statements, names, statement);
    let returned = run(statements, &prepared, args);
    (returned.len() > 0).then(|| returned.value(0, 1)).flatten().map(|datum| datum.value() as i64)
}
