//! Departures: a conversation that left a list, which a sync reports so that the client removes
//! it. A row leaves its list when it is deleted (the CMD cleanup, a DBA, the application) or when
//! its uid or channel_id changes (another user's list, or the other type's: `type` follows
//! channel_id). The stamp trigger records each in conversation_departure with the version its
//! transaction stamps (stamp.rs), so a position's horizon tells a departure it did not see as it
//! tells a row; a sync reads them from their index beside the list indexes (list_scan.rs).
//!
//! A departure is reported only while its key is not in the table: a key deleted and created
//! again, or changed away and back, is the row, whatever order the client applies a page in; and
//! a departure recorded for a delete that did not happen (a later BEFORE trigger of the
//! application's skipped it) is never reported.
//!
//! Kept until conversation_forget_departures (the retention, SQL): it leaves a mark, a row with
//! uid '' and type -1 at one above the newest version it forgot, and a position whose horizon has
//! not seen every transaction below the mark is refused (72000). A TRUNCATE of the table (its
//! statement trigger) leaves a mark of type -2 at its version: a position that did not see it
//! end is refused too.

use pgrx::pg_sys;

use crate::glue::call::{text_datum, varlena_bytes};
use crate::glue::errors;
use crate::input::key::ConversationKey;
use crate::list::list_scan::{self, Copied, Reading, Source};
use crate::list::position::Horizon;
use crate::list::version;
use crate::relation::catalog::OpenTable;
use crate::relation::channel_table;
use crate::relation::departure_table::{self, DepartureTable};
use crate::relation::placement::Placement;
use crate::relation::probe::{Bound, IndexProbe, Snapshot};
use crate::relation::statements::{arg, as_owner_of, connect, key_args, prepared, run, Arg, Statement, Statements};
use crate::relation::table::{IntWidth, Names, INT2_EQUAL, TEXT_EQUAL};

const RECORD: Statement = Statement {
    // When it left, to the microsecond: a row moved to another list of the same user in the same
    // transaction (its channel_id changed) that set updated_at = now() would otherwise hold the
    // departure's very place (version, updated_at, id), and a page could end between the two.
    // Once per transaction: an UPDATE that moves a row to another partition fires the trigger
    // for the update and again for the delete (as PostgreSQL moves it).
    sql: "INSERT INTO {departures} (uid, type, version, updated_at, id, channel_id, channel_type) \
          SELECT $1, $2, $3, pg_catalog.clock_timestamp(), $4, $5, $6 \
          WHERE NOT EXISTS (SELECT FROM {departures} AS d WHERE d.uid = $1 AND d.type = $2 AND d.version = $3 \
                            AND d.id = $4 AND d.channel_id = $5 AND d.channel_type = $6)",
    parameters: &[pg_sys::TEXTOID, pg_sys::INT2OID, pg_sys::INT8OID, pg_sys::INT8OID, pg_sys::TEXTOID, pg_sys::INT4OID],
    snapshot: Snapshot::Fresh,
};

const KEY_PRESENT: Statement = Statement {
    sql: "SELECT 1 FROM {table} AS c WHERE c.uid = $1 AND c.channel_id = $2 AND c.channel_type = $3",
    parameters: &[pg_sys::TEXTOID, pg_sys::TEXTOID, pg_sys::INT2OID],
    snapshot: Snapshot::Statement,
};

/// The uid of the marks, and their types: where conversation_forget_departures forgot up to, and
/// the last TRUNCATE.
const MARK_UID: &[u8] = b"";
const FORGOTTEN_TYPE: i16 = -1;
const TRUNCATED_TYPE: i16 = -2;

/// Where a departing row's key and place are, in the conversation table's (or partition's, or
/// shard's) attributes: looked up once per statement by the stamp trigger. 0: no such column.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct DepartingKey {
    uid: i32,
    channel_id: i32,
    channel_type: i32,
    channel_type_width: IntWidth,
    list_type: i32,
    id: i32,
}

impl DepartingKey {
    /// # Safety
    /// `desc` is a valid tuple descriptor of the conversation table.
    pub unsafe fn of(desc: pg_sys::TupleDesc) -> DepartingKey {
        let attnum = |name: &std::ffi::CStr| pg_sys::SPI_fnumber(desc, name.as_ptr()).max(0);
        let channel_type = attnum(c"channel_type");
        DepartingKey {
            uid: attnum(c"uid"),
            channel_id: attnum(c"channel_id"),
            channel_type,
            channel_type_width: IntWidth::of_type(if channel_type > 0 {
                pg_sys::SPI_gettypeid(desc, channel_type)
            } else {
                pg_sys::InvalidOid
            }),
            list_type: attnum(c"type"),
            id: attnum(c"id"),
        }
    }
}

/// Whether an UPDATE changes the row's key (uid, channel_id, channel_type), and so takes it out
/// of its list (a key compared by its bytes: a change there that is no change of value records a
/// departure the list never reports, since the key is still in the table).
///
/// # Safety
/// `old` and `new` are rows of `desc`, which `key` was read from.
pub unsafe fn key_changed(key: &DepartingKey, desc: pg_sys::TupleDesc, old: pg_sys::HeapTuple, new: pg_sys::HeapTuple) -> bool {
    let value = |tuple: pg_sys::HeapTuple, attnum: i32| attribute(tuple, desc, attnum);
    let text_differs = |attnum: i32| match (value(old, attnum), value(new, attnum)) {
        (Some(a), Some(b)) => varlena_bytes(a) != varlena_bytes(b),
        (a, b) => a.is_some() != b.is_some(),
    };
    let width = key.channel_type_width;
    let channel_type_differs = match (value(old, key.channel_type), value(new, key.channel_type)) {
        (Some(a), Some(b)) => width.value(a) != width.value(b),
        (a, b) => a.is_some() != b.is_some(),
    };
    text_differs(key.uid) || text_differs(key.channel_id) || channel_type_differs
}

/// Records that the row `old` left its list in the transaction stamped `version`, in the departure
/// table `table` of `schema` (`departure_table::relid_in`, looked up once per statement). False
/// where the extension has none (before 0.8.0's update).
///
/// # Safety
/// `old` is a row of `desc`, which `key` was read from; called from the stamp trigger.
pub unsafe fn record(
    key: &DepartingKey,
    table: Option<pg_sys::Oid>,
    schema: pg_sys::Oid,
    desc: pg_sys::TupleDesc,
    old: pg_sys::HeapTuple,
    version: i64,
) -> bool {
    let Some(table) = table else { return false };
    if [key.uid, key.channel_id, key.channel_type, key.list_type, key.id].contains(&0) {
        errors::table_shape(
            "it lacks a column a departure is recorded with (uid, channel_id, channel_type, type, id)",
            "Give the column back its name (ALTER TABLE conversation RENAME COLUMN ... TO ...).",
        );
    }
    let value = |attnum: i32| attribute(old, desc, attnum);
    let (Some(uid), Some(channel_id), Some(channel_type), Some(list_type), Some(id)) =
        (value(key.uid), value(key.channel_id), value(key.channel_type), value(key.list_type), value(key.id))
    else {
        return true; // NOT NULL columns: a row without its key was never in a list
    };
    let args = [
        arg(uid),
        arg(list_type),
        arg(pg_sys::Datum::from(version)),
        arg(id),
        arg(channel_id),
        arg(pg_sys::Datum::from(key.channel_type_width.value(channel_type) as i32)),
    ];
    write(schema, table, &RECORD, &args);
    true
}

/// Records that the table was truncated in the transaction stamped `version`: a mark, uid '' and
/// type -2, which positions taken before refuse on (every row they have left). Nothing where the
/// extension has no departure table (before 0.8.0's update).
pub fn record_truncation(schema: pg_sys::Oid, version: i64) {
    let Some(table) = departure_table::relid_in(schema) else { return };
    let args = [
        arg(text_datum(MARK_UID)),
        arg(pg_sys::Datum::from(TRUNCATED_TYPE)),
        arg(pg_sys::Datum::from(version)),
        arg(pg_sys::Datum::from(0i64)),
        arg(text_datum(b"")),
        arg(pg_sys::Datum::from(0i32)),
    ];
    write(schema, table, &RECORD, &args);
}

/// The member set a message last named on a channel's row, forgotten (message_large.rs).
const FORGET_MEMBER_SET: Statement = Statement {
    sql: "UPDATE {channels} AS s SET members = NULL, member_digest = NULL \
          WHERE s.channel_id = $1 AND s.channel_type = $2 AND s.members IS NOT NULL",
    parameters: &[pg_sys::TEXTOID, pg_sys::INT2OID],
    snapshot: Snapshot::Fresh,
};

/// The membership of a large channel `old` left it (deleted, or its key changed): the channel's
/// member set is forgotten, so that the next message looks at every member it names again and
/// makes the row again where it is gone, as a message does per member (a message naming the same
/// set would look at none). `channels` is the channel table of `schema`, where there is one.
/// (On Citus, message_large.rs counts the memberships instead.)
///
/// # Safety
/// `old` is a row of `desc`, which `key` was read from; called from the stamp trigger.
pub unsafe fn leave_large_channel(
    key: &DepartingKey,
    channels: Option<pg_sys::Oid>,
    schema: pg_sys::Oid,
    desc: pg_sys::TupleDesc,
    old: pg_sys::HeapTuple,
) {
    let Some(channels) = channels else { return };
    // On Citus the channel table is a reference table, which only a distributed statement
    // writes, and a shard's trigger runs none: there a message counts the memberships instead.
    if channel_table::on_every_node(schema) {
        return;
    }
    if key.channel_id == 0 || key.channel_type == 0 {
        return; // record() refused such a table already
    }
    let (Some(channel_id), Some(channel_type)) = (attribute(old, desc, key.channel_id), attribute(old, desc, key.channel_type)) else {
        return;
    };
    let channel_type = pg_sys::Datum::from(key.channel_type_width.value(channel_type) as i16);
    write(schema, channels, &FORGET_MEMBER_SET, &[arg(channel_id), arg(channel_type)]);
}

/// Runs `statement` on the extension's table `table` of `schema`, as its owner.
fn write(schema: pg_sys::Oid, table: pg_sys::Oid, statement: &Statement, args: &[Arg]) {
    let names = Names::of_schema(schema);
    as_owner_of(table, || {
        connect(|statements| {
            let prepared = prepared(statements, &names, statement);
            run(statements, &prepared, args);
        })
    });
}

/// Column `attnum` of `tuple` (a row of `desc`), or None where it is NULL.
///
/// # Safety
/// `tuple` is a row of `desc`, and `attnum` one of its columns.
unsafe fn attribute(tuple: pg_sys::HeapTuple, desc: pg_sys::TupleDesc, attnum: i32) -> Option<pg_sys::Datum> {
    let mut null = false;
    let datum = pg_sys::heap_getattr(tuple, attnum as _, desc, &mut null);
    (!null).then_some(datum)
}

/// The departure table of a sync, open for one call.
pub struct Departures {
    table: DepartureTable,
}

impl Departures {
    /// The departures a sync reads: None before 0.8.0's update (the stamp trigger does not
    /// record them, and the database has no table for them). A table whose trigger records them
    /// without their table (renamed), or the other way round (a trigger made again without
    /// DELETE), would lose some: refused (55000).
    pub fn for_sync(table: &OpenTable, recorded: bool) -> Option<Departures> {
        match (DepartureTable::open(table.table.schema), recorded) {
            (Some(departures), true) => Some(Departures { table: departures }),
            (None, false) => None,
            (None, true) => errors::departure_table_missing(),
            (Some(_), false) => errors::changes_not_stamped(),
        }
    }

    /// Whether every horizon of a position saw every departure that was forgotten (each saw the
    /// end of every transaction below that mark), and the last TRUNCATE (each saw it end); the
    /// error (72000) otherwise.
    pub fn check(&self, horizons: &[&Horizon]) {
        let mut probe = IndexProbe::open(self.table.relation, self.table.index, 2, Snapshot::Statement);
        let mut mark = |mark_type: i16| {
            probe.walk_backward(&[
                Bound { column: 1, strategy: pg_sys::BTEqualStrategyNumber, function: TEXT_EQUAL, value: text_datum(MARK_UID) },
                Bound { column: 2, strategy: pg_sys::BTEqualStrategyNumber, function: INT2_EQUAL, value: pg_sys::Datum::from(mark_type) },
            ]);
            probe.next_largest().map(|slot| list_scan::place_of(slot, &self.table.places).version)
        };
        if let Some(forgotten) = mark(FORGOTTEN_TYPE) {
            if !horizons.iter().all(|horizon| horizon.versions().0 >= forgotten) {
                errors::position_before_forgotten_departures();
            }
        }
        if let Some(truncated) = mark(TRUNCATED_TYPE) {
            let (generation, xid) = version::parts(truncated);
            let saw = |horizon: &&Horizon| match horizon.generation.cmp(&generation) {
                std::cmp::Ordering::Greater => true,
                std::cmp::Ordering::Less => false,
                std::cmp::Ordering::Equal => horizon.saw_end_of(xid),
            };
            if !horizons.iter().all(saw) {
                errors::position_before_truncate();
            }
        }
    }

    /// The walks of a sync's pass over the departures of `uid` (of `types`): list_scan.rs
    /// merges them with the rows.
    pub fn source(&self) -> Source {
        Source { heap: self.table.relation, index: self.table.index, places: self.table.places, departed: true }
    }

    /// The departures of `uid` (of `types`) that `reading` takes and `left` keeps, in list order,
    /// at most `wanted`: for tables whose rows are read through statements (the merge with them
    /// is the caller's).
    pub fn page(
        &self,
        uid: &[u8],
        types: &[i16],
        reading: &Reading<'_>,
        wanted: usize,
        left: impl FnMut(pg_sys::HeapTuple) -> bool,
    ) -> Vec<Copied> {
        list_scan::copies(&[self.source()], uid, types, reading, wanted, left)
    }

    /// Whether the departure `tuple` is still to be reported: its key is not in the table now
    /// (the calling statement's snapshot).
    pub fn left(&self, table: &OpenTable, statements: Option<&Statements>, tuple: pg_sys::HeapTuple) -> bool {
        // SAFETY: a row of the departure table, of its descriptor.
        let [uid, channel_id, channel_type] = self.table.key.map(|attnum| unsafe { attribute(tuple, self.desc(), i32::from(attnum)) });
        // NOT NULL columns: a record without its key (a DBA's) names nothing a client holds.
        let (Some(uid), Some(channel_id), Some(channel_type)) = (uid, channel_id, channel_type) else { return false };
        // SAFETY: uid and channel_id are text, channel_type an integer (departure_table.rs checked
        // their types); the bytes live as long as the copy of the row.
        let (uid, channel_id) = unsafe { (varlena_bytes(uid), varlena_bytes(channel_id)) };
        let Ok(channel_type) = i16::try_from(channel_type.value() as i32) else { return true };
        let key = ConversationKey { uid, channel_id, channel_type };
        let placement = table.placement(&key);
        match placement {
            Placement::Direct { heap, index, .. } => {
                IndexProbe::open(heap, index, 3, Snapshot::Statement).key(&table.table, &key).is_none()
            }
            Placement::Query => {
                let present = |statements: &Statements| {
                    let prepared = prepared(statements, &table.table.names, &KEY_PRESENT);
                    run(statements, &prepared, &key_args(&key)).len() > 0
                };
                !match statements {
                    Some(statements) => present(statements),
                    None => connect(present),
                }
            }
        }
    }

    pub fn desc(&self) -> pg_sys::TupleDesc {
        // SAFETY: the open table's descriptor.
        unsafe { (*self.table.relation).rd_att }
    }
}
