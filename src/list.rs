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
use pgrx::prelude::*;

use crate::call::{sql_function, text_datum, Call, Materialized};
use crate::catalog::OpenTable;
use crate::errors;
use crate::key::ConversationKey;
use crate::kept::{arg, kept, run, Arg, Kept, PinnedSearchPath, Statement};
use crate::position::{Cursor, Horizon, Origin, Position, MAX_POSITION_BYTES};
use crate::probe::Snapshot;
use crate::result_row::{deformed, ColumnMap, LIST_POSITION};
use crate::stamp;

pub const MAX_PAGE_SIZE: i32 = 1000;

/// One state's rows of one type, newest first, at most a page ($10): one backward scan of its
/// list index. $1 uid, $3 floor, $4 ceiling, $5 versions in flight (position.rs: what the
/// "since" horizon did not see), $6 whether hidden ones count, and ($7, $8, $9) the cursor the
/// pass has reached.
macro_rules! state_rows {
    ($type:literal, $state:literal) => {
        concat!(
            "(SELECT c.* FROM {table} AS c WHERE c.uid = $1 AND c.type = ",
            $type,
            " AND ",
            $state,
            " AND c.version >= $3 AND (c.version >= $4 OR c.version = ANY ($5)) \
              AND (c.version, c.updated_at, c.id) < ($7, $8, $9) \
              ORDER BY c.version DESC, c.updated_at DESC, c.id DESC LIMIT $10)"
        )
    };
}

/// The three states, each the predicate of its list index. Each branch is a query of its own with
/// its own LIMIT: that is what makes PostgreSQL merge their ordered scans (a plain UNION ALL of
/// the three gets a sort of every row).
macro_rules! type_rows {
    ($type:literal) => {
        concat!(
            state_rows!($type, "c.unread_count > 0 AND NOT c.hidden"),
            " UNION ALL ",
            state_rows!($type, "c.unread_count <= 0 AND NOT c.hidden"),
            " UNION ALL ",
            state_rows!($type, "c.hidden AND $6")
        )
    };
}

macro_rules! newest_first {
    ($rows:expr) => {
        concat!("SELECT {columns} FROM (", $rows, ") AS c ORDER BY c.version DESC, c.updated_at DESC, c.id DESC LIMIT $10")
    };
}

const LIST_PARAMETERS: &[pg_sys::Oid] = &[
    pg_sys::TEXTOID,
    pg_sys::INT2OID,
    pg_sys::INT8OID,
    pg_sys::INT8OID,
    pg_sys::INT8ARRAYOID,
    pg_sys::BOOLOID,
    pg_sys::INT8OID,
    pg_sys::TIMESTAMPTZOID,
    pg_sys::INT8OID,
    pg_sys::INT8OID,
];

const LIST_ONE_TYPE: Statement = Statement {
    name: "list_one_type",
    sql: newest_first!(type_rows!("$2")),
    parameters: LIST_PARAMETERS,
    snapshot: Snapshot::Statement,
};

/// Both types the table's generated column holds, each merged in order.
const LIST_ALL_TYPES: Statement = Statement {
    name: "list_all_types",
    sql: newest_first!(concat!(type_rows!("1"), " UNION ALL ", type_rows!("2"))),
    parameters: LIST_PARAMETERS,
    snapshot: Snapshot::Statement,
};

const UNREAD_ONE_TYPE: Statement = Statement {
    name: "unread_one_type",
    sql: "SELECT COALESCE(sum(c.unread_count), 0)::int8, count(*) FROM {table} AS c \
          WHERE c.uid = $1 AND c.type = $2 AND c.unread_count > 0 AND NOT c.hidden",
    parameters: &[pg_sys::TEXTOID, pg_sys::INT2OID],
    snapshot: Snapshot::Statement,
};

const UNREAD_ALL_TYPES: Statement = Statement {
    name: "unread_all_types",
    sql: "SELECT COALESCE(sum(c.unread_count), 0)::int8, count(*) FROM {table} AS c \
          WHERE c.uid = $1 AND c.unread_count > 0 AND NOT c.hidden",
    parameters: &[pg_sys::TEXTOID, pg_sys::INT2OID],
    snapshot: Snapshot::Statement,
};

sql_function! {
    /// conversation_list(uid, type, position, page_size) RETURNS SETOF conversation_list_row,
    /// STABLE. Not STRICT: a NULL uid or page_size is 22004; NULL type is every type, NULL
    /// position the start.
    fn conversation_list(call) {
        let uid = ConversationKey::validate_uid(call.text(0)).unwrap_or_else(|error| errors::invalid_key(error));
        let list_type = list_type(call);
        let given = match call.text_at_most(2, MAX_POSITION_BYTES) {
            None => None,
            Some(Err(bytes)) => errors::position_too_long(bytes, MAX_POSITION_BYTES),
            Some(Ok(text)) => Some(Position::parse(text).unwrap_or_else(|| errors::invalid_position())),
        };
        let page_size = match call.int32(3) {
            None => errors::null_argument("page_size"),
            Some(size) if !(1..=MAX_PAGE_SIZE).contains(&size) => errors::invalid_page_size(size, MAX_PAGE_SIZE),
            Some(size) => size as usize,
        };
        let schema = call.schema();
        let output = call.materialize();
        let table = OpenTable::open(schema);
        let Some(holding) = table.relation_holding(uid) else { errors::list_on_another_node() };
        if !stamp::is_stamped(holding, schema) {
            errors::changes_not_stamped();
        }
        let origin = Origin { system_identifier: stamp::system_identifier(), generation: stamp::read_generation(schema) };
        if let Some(given) = &given {
            if given.list_type != list_type {
                errors::position_of_another_list(given.list_type, list_type);
            }
            if given.origin != origin {
                errors::position_of_another_cluster();
            }
        }
        let now = Horizon::of_active_snapshot();
        Spi::connect(|client| {
            let _pinned = PinnedSearchPath::pin().with_ordered_index_scans();
            let statement = if list_type.is_some() { &LIST_ONE_TYPE } else { &LIST_ALL_TYPES };
            let page = Page { output: &output, kept: kept(&client, &table.table.names, statement), uid, list_type, origin, page_size };
            match given {
                None => {
                    page.pass(&client, None, &now, Cursor::TOP);
                }
                Some(Position { since, pass: Some((horizon, cursor)), .. }) => {
                    // The rest of a pass; if nothing is left of it, the next pass at once.
                    if page.pass(&client, since.as_ref(), &horizon, cursor) == 0 {
                        page.pass(&client, Some(&horizon), &now, Cursor::TOP);
                    }
                }
                Some(Position { since: Some(since), pass: None, .. }) => {
                    page.pass(&client, Some(&since), &now, Cursor::TOP);
                }
                Some(Position { since: None, pass: None, .. }) => errors::invalid_position(),
            }
        });
        table.close();
        call.return_null()
    }
}

sql_function! {
    /// conversation_unread(uid, type, OUT unread_count bigint, OUT conversations bigint), STABLE.
    fn conversation_unread(call) {
        let uid = ConversationKey::validate_uid(call.text(0)).unwrap_or_else(|error| errors::invalid_key(error));
        let list_type = list_type(call);
        let table = OpenTable::open(call.schema());
        let (unread, conversations) = Spi::connect(|client| {
            let _pinned = PinnedSearchPath::pin().with_ordered_index_scans();
            let statement = if list_type.is_some() { &UNREAD_ONE_TYPE } else { &UNREAD_ALL_TYPES };
            let kept = kept(&client, &table.table.names, statement);
            let returned = run(&client, &kept, &[arg(text_datum(uid)), type_arg(list_type)]);
            (returned.value(0, 1).expect("a sum"), returned.value(0, 2).expect("a count"))
        });
        table.close();
        call.record_result(&[unread, conversations], &[false, false])
    }
}

/// The `type` argument: NULL for every type.
fn list_type(call: &Call) -> Option<i16> {
    call.int32(1).map(|list_type| i16::try_from(list_type).unwrap_or_else(|_| errors::invalid_list_type(list_type)))
}

fn type_arg(list_type: Option<i16>) -> Arg {
    list_type.map_or_else(|| Arg::NULL, |t| arg(pg_sys::Datum::from(t)))
}

/// One call's page: where its rows go and what its positions say.
struct Page<'a> {
    output: &'a Materialized,
    kept: std::rc::Rc<Kept>,
    uid: &'a [u8],
    list_type: Option<i16>,
    origin: Origin,
    page_size: usize,
}

impl Page<'_> {
    /// Returns the next rows of the pass that started at `horizon` and has reached `cursor`, of
    /// those `since` did not see (all but hidden ones, without `since`), each with the position
    /// after it. Returns how many.
    fn pass(&self, client: &pgrx::spi::SpiClient<'_>, since: Option<&Horizon>, horizon: &Horizon, cursor: Cursor) -> usize {
        let (floor, ceiling, in_flight) = since.map_or((i64::MIN, i64::MIN, Vec::new()), |since| since.versions(self.origin.generation));
        let args = [
            arg(text_datum(self.uid)),
            type_arg(self.list_type),
            arg(pg_sys::Datum::from(floor)),
            arg(pg_sys::Datum::from(ceiling)),
            arg(int8_array_datum(&in_flight)),
            arg(pg_sys::Datum::from(since.is_some())),
            arg(pg_sys::Datum::from(cursor.version)),
            arg(pg_sys::Datum::from(cursor.updated_at)),
            arg(pg_sys::Datum::from(cursor.id)),
            arg(pg_sys::Datum::from(self.page_size as i64 + 1)),
        ];
        let returned = run(client, &self.kept, &args);
        let count = returned.len().min(self.page_size);
        if count == 0 {
            return 0;
        }
        let more = returned.len() > self.page_size;
        let desc = returned.desc();
        let map = ColumnMap::new(desc, self.output.desc, &[LIST_POSITION]);
        // SAFETY: a descriptor of the statement's result.
        let attnum = |name: &std::ffi::CStr| unsafe { pg_sys::SPI_fnumber(desc, name.as_ptr()) };
        let (version, updated_at, id) = (attnum(c"version"), attnum(c"updated_at"), attnum(c"id"));
        let value = |row: usize, column: i32| returned.value(row, column).map_or(0, |datum| datum.value() as i64);
        for row in 0..count {
            let position = if row + 1 < count || more {
                let reached = Cursor { version: value(row, version), updated_at: value(row, updated_at), id: value(row, id) };
                Position { list_type: self.list_type, origin: self.origin, since: since.cloned(), pass: Some((horizon.clone(), reached)) }
            } else {
                // The pass is done: the client has every change its horizon saw.
                Position { list_type: self.list_type, origin: self.origin, since: Some(horizon.clone()), pass: None }
            };
            // SAFETY: a row of its descriptor, alive until SPI_finish.
            let (values, nulls) = unsafe { deformed(returned.tuple(row), desc) };
            let (values, nulls) = map.fill(&values, &nulls, &[Some(text_datum(position.to_text().as_bytes()))]);
            self.output.push(&values, &nulls);
        }
        count
    }
}

/// A one-dimensional int8[] datum, palloc'd.
fn int8_array_datum(values: &[i64]) -> pg_sys::Datum {
    // SAFETY: builds an array of by-value int8 datums.
    unsafe {
        let datums: Vec<pg_sys::Datum> = values.iter().map(|&v| pg_sys::Datum::from(v)).collect();
        let array = pg_sys::construct_array(datums.as_ptr().cast_mut(), datums.len() as i32, pg_sys::INT8OID, 8, true, pg_sys::TYPALIGN_DOUBLE as _);
        pg_sys::Datum::from(array)
    }
}
