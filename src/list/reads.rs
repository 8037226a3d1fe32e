//! What a client reads after every message: its conversation list, and its unread totals.
//!
//! conversation_list(uid, type, position, page_size): the user's conversations, newest change
//! first (version, then updated_at for rows not changed since 0.5.0, then id), one type or both,
//! in pages. Without a position: every conversation not hidden. With the position a row came
//! back with: the rest of that pass, then every conversation that changed since it, hidden ones
//! too (a client must learn that one was hidden). position.rs says why nothing is ever lost.
//!
//! conversation_unread(uid, type): the sum of unread_count over the conversations not hidden,
//! and how many have unread messages (the app badge).
//!
//! Both read with the calling statement's snapshot (STABLE), which is also the snapshot a
//! position is made of, and both are served by the list indexes, which partition the rows by
//! state (unread, read, hidden) under (uid, type, version, updated_at, id): a list reads at most
//! a page from each state it shows, newest first, and merges them; the badge reads only the
//! unread ones.

use pgrx::pg_sys;

use crate::glue::call::{int8_array_datum, sql_function, text_datum, Call, Materialized};
use crate::glue::errors;
use crate::input::key::ConversationKey;
use crate::list::departures::Departures;
use crate::list::history::{self, Reach};
use crate::list::list_scan::{self, Copied, PageRow, Reading};
use crate::list::own_writes::{self, Outcome};
use crate::list::position::{max_in_flight, Cursor, Horizon, Origin, PassPositions, Position, EARLIER_FORMAT, MAX_POSITION_BYTES};
use crate::list::stamp;
use crate::relation::catalog::OpenTable;
use crate::relation::membership::{deformed, Memberships};
use crate::relation::probe::Snapshot;
use crate::relation::result_row::{ColumnMap, LIST_DEPARTED, LIST_POSITION};
use crate::relation::statements::{arg, arg_or_null, connect_for_lists, prepared, run, Returned, Statement, Statements};
use crate::relation::table::Names;

pub const MAX_PAGE_SIZE: i32 = 1000;

/// The rows a position's horizon did not see ($4 ceiling, $5 in flight, position.rs; $3, the
/// floor, is what every id in flight is at or above), as ranges of the list index: from the
/// ceiling up, and each version in flight (`f`, one of $5). Each branch reads only what it returns: a floor far
/// back (a transaction open since long ago) does not make a sync read every row written since.
macro_rules! changed_since {
    (above) => {
        " AND c.version >= $4"
    };
    (in_flight) => {
        " AND c.version = f.version"
    };
}

/// Where a pass is: at its top (every row), or at the cursor ($6, $7, $8) it has reached.
macro_rules! below {
    (top) => {
        ""
    };
    (cursor) => {
        " AND (c.version, c.updated_at, c.id) < ($6, $7, $8)"
    };
}

/// One state's rows of one type, newest first, at most a page ($9): one backward scan of its
/// list index. $1 uid; `$since`: every row (a first listing), or `changed_since!(above)` or
/// `changed_since!(in_flight)`.
macro_rules! state_rows {
    ($type:literal, $state:literal, $since:expr, $at:ident) => {
        concat!(
            "(SELECT c.* FROM {table} AS c WHERE c.uid = $1 AND c.type = ",
            $type,
            " AND ",
            $state,
            "{per_member}",
            $since,
            below!($at),
            " ORDER BY c.version DESC, c.updated_at DESC, c.id DESC LIMIT $9)"
        )
    };
}

/// One state's rows of one type of the versions in flight, each version found in its list index
/// (a probe per version, whatever the statistics say; an ordered scan would walk the index from
/// the top and filter).
macro_rules! in_flight_rows {
    ($type:literal, $state:literal, $at:ident) => {
        concat!(
            "SELECT c.* FROM unnest($5) AS f (version) CROSS JOIN LATERAL (SELECT c.* FROM {table} AS c WHERE c.uid = $1 AND c.type = ",
            $type,
            " AND ",
            $state,
            "{per_member}",
            changed_since!(in_flight),
            below!($at),
            // Not pulled up into a join, which the planner could turn around into a walk of the
            // index with the versions as a filter.
            " OFFSET 0) AS c"
        )
    };
}

/// The states a list shows, each the predicate of its list index: the visible ones (a first
/// listing), or those changed since a position, hidden ones too (above the ceiling: the ones in
/// flight are `in_flight_of_type`'s). Each branch is a query of its own with its own LIMIT: that
/// is what makes PostgreSQL merge their ordered scans (a plain UNION ALL of them gets a sort of
/// every row).
macro_rules! type_rows {
    ($type:literal, visible, $at:ident) => {
        concat!(
            state_rows!($type, "c.unread_count > 0 AND NOT c.hidden", "", $at),
            " UNION ALL ",
            state_rows!($type, "c.unread_count <= 0 AND NOT c.hidden", "", $at)
        )
    };
    ($type:literal, changed, $at:ident) => {
        concat!(
            state_rows!($type, "c.unread_count > 0 AND NOT c.hidden", changed_since!(above), $at),
            " UNION ALL ",
            state_rows!($type, "c.unread_count <= 0 AND NOT c.hidden", changed_since!(above), $at),
            " UNION ALL ",
            state_rows!($type, "c.hidden", changed_since!(above), $at)
        )
    };
}

/// Every state's rows of one type of the versions in flight.
macro_rules! in_flight_of_type {
    ($type:literal, $at:ident) => {
        concat!(
            in_flight_rows!($type, "c.unread_count > 0 AND NOT c.hidden", $at),
            " UNION ALL ",
            in_flight_rows!($type, "c.unread_count <= 0 AND NOT c.hidden", $at),
            " UNION ALL ",
            in_flight_rows!($type, "c.hidden", $at)
        )
    };
}

/// A list statement: of one type ($2) or of both types the table's generated column holds. A
/// sync's rows in flight are read first (a materialized CTE, so that reading them is planned
/// apart from their order) and sorted, a few rows, into the merge of the ordered scans.
macro_rules! list_statement {
    (one, visible, $at:ident) => {
        list_statement!(@ "", type_rows!("$2", visible, $at))
    };
    (all, visible, $at:ident) => {
        list_statement!(@ "", concat!(type_rows!("1", visible, $at), " UNION ALL ", type_rows!("2", visible, $at)))
    };
    (one, changed, $at:ident) => {
        list_statement!(@
            concat!("WITH in_flight AS MATERIALIZED (", in_flight_of_type!("$2", $at), ") "),
            concat!(type_rows!("$2", changed, $at), " UNION ALL ", in_flight_sorted!()))
    };
    (all, changed, $at:ident) => {
        list_statement!(@
            concat!("WITH in_flight AS MATERIALIZED (", in_flight_of_type!("1", $at), " UNION ALL ", in_flight_of_type!("2", $at), ") "),
            concat!(type_rows!("1", changed, $at), " UNION ALL ", type_rows!("2", changed, $at), " UNION ALL ", in_flight_sorted!()))
    };
    (@ $with:expr, $rows:expr) => {
        Statement {
            sql: concat!($with, "SELECT {columns} FROM (", $rows, ") AS c ORDER BY c.version DESC, c.updated_at DESC, c.id DESC LIMIT $9"),
            parameters: LIST_PARAMETERS,
            snapshot: Snapshot::Statement,
        }
    };
}

macro_rules! in_flight_sorted {
    () => {
        "(SELECT * FROM in_flight AS c ORDER BY c.version DESC, c.updated_at DESC, c.id DESC LIMIT $9)"
    };
}

/// $1 uid, $2 type, $3 floor, $4 ceiling, $5 in flight, ($6, $7, $8) the cursor, $9 the limit.
const LIST_PARAMETERS: &[pg_sys::Oid] = &[
    pg_sys::TEXTOID,
    pg_sys::INT2OID,
    pg_sys::INT8OID,
    pg_sys::INT8OID,
    pg_sys::INT8ARRAYOID,
    pg_sys::INT8OID,
    pg_sys::TIMESTAMPTZOID,
    pg_sys::INT8OID,
    pg_sys::INT8OID,
];

/// Every form of the list statement, by [both types][changes since a position][below a cursor]:
/// each as lean as its call allows (no hidden branch and no horizon for a first listing, no
/// cursor at a pass's top).
const LIST: [[[Statement; 2]; 2]; 2] = [
    [
        [list_statement!(one, visible, top), list_statement!(one, visible, cursor)],
        [list_statement!(one, changed, top), list_statement!(one, changed, cursor)],
    ],
    [
        [list_statement!(all, visible, top), list_statement!(all, visible, cursor)],
        [list_statement!(all, changed, top), list_statement!(all, changed, cursor)],
    ],
];

const UNREAD_ONE_TYPE: Statement = Statement {
    sql: "SELECT COALESCE(sum(c.unread_count), 0)::int8, count(*) FROM {table} AS c \
          WHERE c.uid = $1 AND c.type = $2 AND c.unread_count > 0 AND NOT c.hidden{per_member}",
    parameters: &[pg_sys::TEXTOID, pg_sys::INT2OID],
    snapshot: Snapshot::Statement,
};

const UNREAD_ALL_TYPES: Statement = Statement {
    sql: "SELECT COALESCE(sum(c.unread_count), 0)::int8, count(*) FROM {table} AS c \
          WHERE c.uid = $1 AND c.unread_count > 0 AND NOT c.hidden{per_member}",
    parameters: &[pg_sys::TEXTOID, pg_sys::INT2OID],
    snapshot: Snapshot::Statement,
};

/// The user's memberships of large channels ($2: of one type, NULL every type), as stored: each
/// is derived as it stands in Rust (relation/membership.rs), which reads the channel table as the
/// extension may and a caller need not. One probe of conversation_large_idx.
const LARGE_ROWS: Statement = Statement {
    sql: "SELECT {columns} FROM {table} AS c WHERE c.uid = $1 AND c.large AND ($2::int2 IS NULL OR c.type = $2)",
    parameters: &[pg_sys::TEXTOID, pg_sys::INT2OID],
    snapshot: Snapshot::Statement,
};

sql_function! {
    /// conversation_list(uid, type, position, page_size) RETURNS SETOF conversation_list_row,
    /// STABLE. Not STRICT: a NULL uid or page_size is 22004; NULL type is every type, NULL
    /// position the start.
    fn conversation_list(call) {
        let uid = ConversationKey::validate_uid(call.id_text(0, "uid")).unwrap_or_else(|error| errors::invalid_key(error));
        let list_type = list_type(call);
        let given = match call.text_at_most(2, MAX_POSITION_BYTES) {
            None => None,
            Some(Err(bytes)) => errors::position_too_long(bytes, MAX_POSITION_BYTES),
            Some(Ok(text)) if text.starts_with(EARLIER_FORMAT) => errors::position_of_earlier_version(),
            Some(Ok(text)) => Some(Position::parse(text).unwrap_or_else(|| errors::invalid_position())),
        };
        let page_size = match call.int32(3) {
            None => errors::null_argument("page_size"),
            Some(size) if !(1..=MAX_PAGE_SIZE).contains(&size) => errors::invalid_page_size(size, MAX_PAGE_SIZE),
            Some(size) => size as usize,
        };
        // The function's own catalog entry first: materializing reads its result type from there.
        call.schema();
        let output = call.materialize();
        let table = OpenTable::for_call(call);
        let schema = table.table.schema;
        let Some(holding) = table.relation_holding(uid) else { errors::list_on_another_node() };
        let names = statement_names(&table, Some(holding));
        let Some(stamped) = table.stamped_since(holding) else { errors::changes_not_stamped() };
        // Read after the calling statement's snapshot was taken: past every transaction it saw.
        let origin = Origin {
            system_identifier: stamp::system_identifier(),
            // SAFETY: this backend's database, set at connection.
            database: unsafe { pg_sys::MyDatabaseId }.to_u32(),
            taken: history::here(true),
            tentative: own_writes::listing(),
        };
        let generation = stamp::read_generation(schema);
        // Read only by a sync: a first listing shows what is there.
        let departures = given.as_ref().and_then(|_| Departures::for_sync(&table, stamped.departures));
        let given = given.map(|given| accepted(given, list_type, origin, generation, stamped.since, &table.table.names, departures.as_ref()));
        let now = Horizon::of_active_snapshot(generation);
        let passes = |statements: Option<&Statements>| {
            let page =
                Page { output: &output, table: &table, names: &names, statements, departures: departures.as_ref(), uid, list_type, origin, page_size };
            match given {
                None => {
                    page.pass(None, &now, Cursor::TOP);
                }
                Some(Position { since, pass: Some((horizon, cursor)), .. }) => {
                    // The rest of a pass; if nothing is left of it, the next pass at once.
                    if page.pass(since.as_ref(), &horizon, cursor) == 0 {
                        page.pass(Some(&horizon), &now, Cursor::TOP);
                    }
                }
                Some(Position { since: Some(since), pass: None, .. }) => {
                    page.pass(Some(&since), &now, Cursor::TOP);
                }
                Some(Position { since: None, pass: None, .. }) => errors::invalid_position(),
            }
        };
        // The list indexes read directly where they can be (list_scan.rs); statements elsewhere.
        if table.table.list_indexes.is_some() {
            passes(None);
        } else {
            connect_for_lists(|statements| passes(Some(statements)));
        }
        call.return_null()
    }
}

sql_function! {
    /// conversation_unread(uid, type, OUT unread_count bigint, OUT conversations bigint), STABLE.
    fn conversation_unread(call) {
        let uid = ConversationKey::validate_uid(call.id_text(0, "uid")).unwrap_or_else(|error| errors::invalid_key(error));
        let list_type = list_type(call);
        let table = OpenTable::for_call(call);
        let (unread, conversations) = match &table.table.list_indexes {
            Some(indexes) => list_scan::unread(&table, indexes, uid, list_type),
            None => connect_for_lists(|statements| {
                let statement = if list_type.is_some() { &UNREAD_ONE_TYPE } else { &UNREAD_ALL_TYPES };
                let names = statement_names(&table, table.relation_holding(uid));
                let prepared = prepared(statements, &names, statement);
                let returned = run(statements, &prepared, &[arg(text_datum(uid)), arg_or_null(list_type.map(pg_sys::Datum::from))]);
                let value = |column| returned.value(0, column).map_or(0, |datum| datum.value() as i64);
                let (mut unread, mut conversations) = (value(1), value(2));
                // The memberships of large channels, each as it stands: the statement left them out.
                if table.table.has_large {
                    let large = large_rows(statements, &names, uid, list_type);
                    let mut memberships = Memberships::new(table.table.schema, Snapshot::Statement);
                    for row in 0..large.len() {
                        // SAFETY: a row of the result's descriptor, alive until SPI_finish.
                        let now = unsafe { memberships.standing(large.tuple(row), large.desc()).now };
                        if let Some(count) = now.badge() {
                            unread += count;
                            conversations += 1;
                        }
                    }
                }
                (unread, conversations)
            }),
        };
        call.record_result(&[pg_sys::Datum::from(unread), pg_sys::Datum::from(conversations)], &[false, false])
    }
}

/// The rows of `uid`'s memberships of large channels (of `list_type`, or every type), as stored.
fn large_rows(statements: &Statements, names: &Names, uid: &[u8], list_type: Option<i16>) -> Returned {
    run(statements, &prepared(statements, names, &LARGE_ROWS), &[arg(text_datum(uid)), arg_or_null(list_type.map(pg_sys::Datum::from))])
}

/// A position the client gave, checked before any of its ids reach a row or a statement: written
/// by this server's kind of snapshot, for this list, in this server's history (history.rs), after
/// the stamp last came into force (stamp.rs), and seen in full by the reading snapshot. Returned
/// as it is read: coarsened (position.rs).
fn accepted(
    given: Position,
    list_type: Option<i16>,
    here: Origin,
    generation: i64,
    stamped_since: u64,
    names: &Names,
    departures: Option<&Departures>,
) -> Position {
    let count = given.in_flight_count();
    if count > max_in_flight() {
        errors::position_too_many_in_flight(count, max_in_flight());
    }
    if given.list_type != list_type {
        errors::position_of_another_list(given.list_type, list_type);
    }
    if (given.origin.system_identifier, given.origin.database) != (here.system_identifier, here.database) {
        errors::position_of_another_cluster();
    }
    // SAFETY: a flag in shared memory.
    let in_recovery = unsafe { pg_sys::RecoveryInProgress() };
    match history::reach(given.origin.taken, here.taken, in_recovery) {
        Reach::Contains => {}
        Reach::Behind => errors::position_ahead_of_snapshot(),
        Reach::Elsewhere => errors::position_of_another_history(),
    }
    if let Some(writer) = given.origin.tentative {
        // SAFETY: a read of this backend's transaction state.
        if writer != unsafe { pg_sys::GetTopFullTransactionIdIfAny() }.value {
            match own_writes::outcome(names, writer) {
                Outcome::Committed => {}
                Outcome::InProgress => errors::position_ahead_of_snapshot(),
                Outcome::NotCommitted => errors::position_of_rolled_back_writes(),
            }
        }
    }
    let horizons = || given.since.iter().chain(given.pass.iter().map(|(horizon, _)| horizon));
    if horizons().any(|horizon| horizon.generation > generation) {
        errors::position_of_another_history();
    }
    if !horizons().all(|horizon| horizon.saw_end_of(stamped_since)) {
        errors::position_before_stamp();
    }
    if let Some(departures) = departures {
        departures.check(&horizons().collect::<Vec<_>>());
    }
    // Ids of an earlier generation (a timeline this one branched from) are not this snapshot's
    // to compare: every row stamped since is of a later generation, and so not seen by them.
    if !horizons().filter(|horizon| horizon.generation == generation).all(Horizon::is_covered_by_active_snapshot) {
        errors::position_ahead_of_snapshot();
    }
    given.coarsened()
}

/// The names a list's statements read the user's rows by: on Citus, on the node that holds the
/// user's shard (`holding`), the shard's own (Names::reading_from); the table's elsewhere. Either
/// planned once (table.rs `Planning::Once`), but on a distributed table.
fn statement_names(table: &OpenTable, holding: Option<pg_sys::Oid>) -> std::borrow::Cow<'_, Names> {
    match holding {
        Some(shard) if shard != table.table.relid => std::borrow::Cow::Owned(table.table.names.reading_from(shard)),
        _ => std::borrow::Cow::Borrowed(&table.table.list_names),
    }
}

/// The `type` argument: NULL for every type.
fn list_type(call: &Call) -> Option<i16> {
    call.int32(1).map(|list_type| i16::try_from(list_type).unwrap_or_else(|_| errors::invalid_list_type(list_type)))
}

/// One call's page: where its rows go and what its positions say.
struct Page<'a> {
    output: &'a Materialized,
    table: &'a OpenTable,
    /// What the statements read (statement_names).
    names: &'a Names,
    /// For the statements, when the indexes are not read directly.
    statements: Option<&'a Statements>,
    /// Where departures are read from (departures.rs), where there are any.
    departures: Option<&'a Departures>,
    uid: &'a [u8],
    list_type: Option<i16>,
    origin: Origin,
    page_size: usize,
}

impl Page<'_> {
    /// Returns the next rows of the pass that started at `horizon` and has reached `cursor`, of
    /// those `since` did not see (all but hidden ones, without `since`; departures too, with it),
    /// each with the position after it. Returns how many.
    fn pass(&self, since: Option<&Horizon>, horizon: &Horizon, cursor: Cursor) -> usize {
        let (floor, ceiling, in_flight) = since.map_or((i64::MIN, i64::MIN, Vec::new()), Horizon::versions);
        // One more than a page: whether the pass goes on after it.
        let wanted = self.page_size + 1;
        let reading = Reading { since: since.map(|_| (floor, ceiling, &in_flight[..])), cursor };
        let types: &[i16] = match &self.list_type {
            Some(list_type) => std::slice::from_ref(list_type),
            None => &[1, 2],
        };
        let departures = since.and(self.departures);
        let (mut rows, desc) = match &self.table.table.list_indexes {
            Some(indexes) => {
                let mut sources = list_scan::table_sources(self.table, indexes, since.is_some());
                sources.extend(departures.map(Departures::source));
                let mut rows = list_scan::copies(&sources, self.uid, types, &reading, wanted, |tuple| {
                    departures.is_some_and(|departures| departures.left(self.table, None, tuple))
                });
                // The memberships of large channels, as they stand, merged: the walks skipped them.
                if let Some(index) = indexes.large {
                    rows.extend(list_scan::large_copies(self.table, indexes, index, self.uid, types, &reading, since.is_some()));
                    rows.sort_by_key(|row| std::cmp::Reverse((row.place.version, row.place.updated_at, row.place.id)));
                }
                // SAFETY: the open table's descriptor.
                (rows, unsafe { (*self.table.relation).rd_att })
            }
            None => {
                let statements = self.statements.expect("statements run under SPI");
                let statement =
                    &LIST[usize::from(self.list_type.is_none())][usize::from(since.is_some())][usize::from(cursor != Cursor::TOP)];
                let prepared = prepared(statements, self.names, statement);
                let args = [
                    arg(text_datum(self.uid)),
                    arg_or_null(self.list_type.map(pg_sys::Datum::from)),
                    arg(pg_sys::Datum::from(floor)),
                    arg(pg_sys::Datum::from(ceiling)),
                    arg(int8_array_datum(&in_flight)),
                    arg(pg_sys::Datum::from(cursor.version)),
                    arg(pg_sys::Datum::from(cursor.updated_at)),
                    arg(pg_sys::Datum::from(cursor.id)),
                    arg(pg_sys::Datum::from(wanted as i64)),
                ];
                let returned = run(statements, &prepared, &args);
                let desc = returned.desc();
                // SAFETY: a descriptor of the statement's result.
                let attnum = |name: &std::ffi::CStr| unsafe { pg_sys::SPI_fnumber(desc, name.as_ptr()) };
                let (version, updated_at, id) = (attnum(c"version"), attnum(c"updated_at"), attnum(c"id"));
                let value = |row: usize, column: i32| returned.value(row, column).map_or(0, |datum| datum.value() as i64);
                let mut rows = (0..returned.len())
                    .map(|row| {
                        let place = Cursor { version: value(row, version), updated_at: value(row, updated_at), id: value(row, id) };
                        Copied { row: PageRow::Tuple(returned.tuple(row)), place, departed: false }
                    })
                    .collect::<Vec<_>>();
                // The departures are read from their index here too, and merged: each side holds
                // the first `wanted` of its own, so the first `wanted` of both are among them.
                if let Some(departures) = departures {
                    rows.extend(
                        departures.page(self.uid, types, &reading, wanted, |tuple| departures.left(self.table, Some(statements), tuple)),
                    );
                }
                // The memberships of large channels, as they stand, merged: the statement left
                // them out (they stand in its indexes at their stored values).
                if self.table.table.has_large {
                    let large = large_rows(statements, self.names, self.uid, self.list_type);
                    // SAFETY: rows of the result, alive until SPI_finish; id is a bigint column.
                    let (large_desc, large_id) = (large.desc(), unsafe { pg_sys::SPI_fnumber(large.desc(), c"id".as_ptr()) });
                    let mut memberships = Memberships::new(self.table.table.schema, Snapshot::Statement);
                    for row in 0..large.len() {
                        let id = large.value(row, large_id).map_or(0, |datum| datum.value() as i64);
                        // SAFETY: a row of the result's descriptor, the table's columns as the list
                        // statement returns them.
                        rows.extend(unsafe {
                            list_scan::large_copy(&mut memberships, large.tuple(row), large_desc, id, &reading, since.is_some())
                        });
                    }
                }
                rows.sort_by_key(|row| std::cmp::Reverse((row.place.version, row.place.updated_at, row.place.id)));
                (rows, desc)
            }
        };
        rows.truncate(wanted);
        let count = rows.len().min(self.page_size);
        let more = rows.len() > self.page_size;
        let map = ColumnMap::new(desc, self.output.desc, &[LIST_POSITION, LIST_DEPARTED]);
        let departed_map = departures.map(|departures| ColumnMap::new(departures.desc(), self.output.desc, DEPARTURE_EXTRAS));
        let positions = PassPositions::new(self.list_type, self.origin, since, horizon);
        for (i, row) in rows.iter().take(count).enumerate() {
            // After the pass's last row, the client has every change its horizon saw.
            let position = if i + 1 < count || more { positions.after(row.place) } else { positions.done.clone() };
            let position = Some(text_datum(position.as_bytes()));
            let yes = Some(pg_sys::Datum::from(true));
            // SAFETY: a row of its descriptor (a copy, or alive until SPI_finish).
            let (values, nulls) = match (&row.row, row.departed, &departed_map, departures) {
                (PageRow::Tuple(tuple), true, Some(map), Some(departures)) => {
                    let (values, nulls) = unsafe { deformed(*tuple, departures.desc()) };
                    // position, departed, hidden: the client removes it; the rest of its state is gone.
                    map.fill(&values, &nulls, &[position, yes, yes])
                }
                (PageRow::Tuple(tuple), ..) => {
                    let (values, nulls) = unsafe { deformed(*tuple, desc) };
                    map.fill(&values, &nulls, &[position, Some(pg_sys::Datum::from(false))])
                }
                (PageRow::Standing(values, nulls), ..) => map.fill(values, nulls, &[position, Some(pg_sys::Datum::from(false))]),
            };
            self.output.push(&values, &nulls);
        }
        count
    }
}

/// What a departure's row of the list is filled with beyond its key, id, type, version and
/// updated_at: its position, departed and hidden (true), and NULL for the state it no longer has.
const DEPARTURE_EXTRAS: &[&std::ffi::CStr] = &[
    LIST_POSITION,
    LIST_DEPARTED,
    c"hidden",
    c"unread_count",
    c"readed_to_msg_seq",
    c"last_msg_seq",
    c"deleted_at_msg_seq",
    c"created_at",
    c"large",
];
