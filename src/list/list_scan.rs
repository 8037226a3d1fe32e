//! A page of a conversation list read straight from the list indexes of a plain table: a walk,
//! largest first, of each index the list shows (one per state, per type, and the departures' for
//! a sync: departures.rs), merged in list order; and the badge, from the unread index alone.
//! No SPI, planner or executor: what the list statements of list.rs return, at about the cost of
//! reading the rows. table.rs says when the indexes are the extension's and so can be read this
//! way; otherwise (partitions, Citus shards, changed indexes) the statements run.
//!
//! A walk is bounded by the index itself where it can be (uid and type equal, version at least
//! the horizon's floor, at most the cursor's version); the rest of "changed since" and "below the
//! cursor" is checked on the row. Below the horizon's ceiling only its in-flight versions changed,
//! so a walk that meets a row there that did not change jumps down to the next in-flight version
//! (a new descent) instead of stepping over every row in between: a transaction left open long
//! (or an orphaned prepared one) keeps the floor far back, and a sync with nothing changed would
//! otherwise read every row written since it began. Rows are read with the calling statement's
//! snapshot, as the statements read them.

use pgrx::pg_sys;

use crate::glue::call::text_datum;
use crate::list::position::Cursor;
use crate::relation::catalog::OpenTable;
use crate::relation::departure_table::Places;
use crate::relation::membership::{self, Memberships};
use crate::relation::probe::{slot_value, Bound, IndexProbe, Snapshot};
use crate::relation::table::{ListIndexes, INT2_EQUAL, TEXT_EQUAL};

/// What a pass reads: since a horizon (its floor, ceiling and versions in flight, position.rs),
/// or everything; from the top, or below a cursor.
pub struct Reading<'a> {
    pub since: Option<(i64, i64, &'a [i64])>,
    pub cursor: Cursor,
}

impl Reading<'_> {
    /// Whether a row at `place` belongs to the page: changed since the horizon, below the cursor.
    fn takes(&self, place: Cursor) -> bool {
        self.takes_any(place, std::iter::once(place.version))
    }

    /// Whether a row at `place`, whose state is made of writes stamped `stamps`, belongs to the
    /// page: any of them since the horizon, the row below the cursor.
    fn takes_any(&self, place: Cursor, stamps: impl Iterator<Item = i64>) -> bool {
        self.changed(stamps) && (place.version, place.updated_at, place.id) < (self.cursor.version, self.cursor.updated_at, self.cursor.id)
    }

    /// Whether any of the writes stamped `stamps` is since the horizon (every one, without one).
    fn changed(&self, mut stamps: impl Iterator<Item = i64>) -> bool {
        self.since
            .is_none_or(|(_, ceiling, in_flight)| stamps.any(|version| version >= ceiling || in_flight.binary_search(&version).is_ok()))
    }
}

/// An index a page walks, of a relation whose rows have a place in the list: one state's list
/// index of the table, or the departures' index (`departed`).
pub struct Source {
    pub heap: pg_sys::Relation,
    pub index: pg_sys::Oid,
    pub places: Places,
    pub departed: bool,
}

/// One walk, its bounds (the last an upper bound on version, lowered as it jumps), where its
/// rows keep their place, and the row it stands on.
struct Walk {
    probe: IndexProbe,
    bounds: Vec<Bound>,
    places: Places,
    departed: bool,
    head: Option<(*mut pg_sys::TupleTableSlot, Cursor)>,
}

/// The sources of a page of the table's list: the list index of each state it shows (hidden ones
/// too when `changed`).
pub fn table_sources(table: &OpenTable, indexes: &ListIndexes, changed: bool) -> Vec<Source> {
    let states: &[pg_sys::Oid] = if changed { &[indexes.unread, indexes.read, indexes.hidden] } else { &[indexes.unread, indexes.read] };
    let places = Places { version: indexes.version, updated_at: indexes.updated_at, id: indexes.id };
    states.iter().map(|&index| Source { heap: table.relation, index, places, departed: false }).collect()
}

/// A row of a page, and its place in the list.
pub struct Copied {
    pub row: PageRow,
    pub place: Cursor,
    pub departed: bool,
}

/// What a row of a page holds: a copy of a conversation's or a departure's row (palloc'd in the
/// call's memory, or a statement's result row alive until SPI_finish); or a large membership's
/// values as it stands, deformed from such a row (its by-reference values point into it).
pub enum PageRow {
    Tuple(pg_sys::HeapTuple),
    Standing(Vec<pg_sys::Datum>, Vec<bool>),
}

/// The rows `walk` takes, each copied out of its slot; a departure only where `keep_departure`
/// says it is still to be reported (its key is not back: departures.rs).
pub fn copies(
    sources: &[Source],
    uid: &[u8],
    types: &[i16],
    reading: &Reading<'_>,
    wanted: usize,
    mut keep_departure: impl FnMut(pg_sys::HeapTuple) -> bool,
) -> Vec<Copied> {
    let mut rows = Vec::with_capacity(wanted);
    walk(sources, uid, types, reading, wanted, |slot, place, departed| {
        // SAFETY: the slot holds a row of its source, whose descriptor it carries. A membership of
        // a large channel stands in the list indexes at its stored place: large_copies lists it.
        unsafe {
            let desc = (*slot).tts_tupleDescriptor;
            if !departed && membership::slot_is_large(slot, membership::large_column_of((*slot).tts_tableOid, desc)) {
                return false;
            }
        }
        // SAFETY: the slot holds a row of its source; the copy outlives the walk's step.
        let tuple = unsafe { pg_sys::ExecCopySlotHeapTuple(slot) };
        if departed && !keep_departure(tuple) {
            return false;
        }
        rows.push(Copied { row: PageRow::Tuple(tuple), place, departed });
        true
    });
    rows
}

/// The memberships of large channels of `uid` (of `types`) that a pass takes (`reading`), each
/// copied as it stands (relation/membership.rs), with its place there: hidden ones only when
/// `changed` (a sync). All of them are read (the user's large channels: a few dozen at most, by
/// the threshold's design), and the page merges them with the walks' rows.
pub fn large_copies(
    table: &OpenTable,
    indexes: &ListIndexes,
    index: pg_sys::Oid,
    uid: &[u8],
    types: &[i16],
    reading: &Reading<'_>,
    changed: bool,
) -> Vec<Copied> {
    let mut rows = Vec::new();
    // Before the walks' probes: it may keep a scan open past them (same snapshot).
    let mut memberships = Memberships::new(table.table.schema, Snapshot::Statement);
    for &list_type in types {
        let bounds = [
            Bound { column: 1, strategy: pg_sys::BTEqualStrategyNumber, function: TEXT_EQUAL, value: text_datum(uid) },
            Bound { column: 2, strategy: pg_sys::BTEqualStrategyNumber, function: INT2_EQUAL, value: pg_sys::Datum::from(list_type) },
        ];
        let mut probe = IndexProbe::open(table.relation, index, bounds.len(), Snapshot::Statement);
        probe.walk_backward(&bounds);
        while let Some(slot) = probe.next_largest() {
            // A sync first asks whether the membership or its channel changed since the horizon,
            // from their stamps alone: most have not (a sync with nothing changed reads no more).
            // SAFETY: the slot holds a row of the table.
            if reading.since.is_some() && !reading.changed(unsafe { memberships.stamps(slot) }.into_iter().flatten()) {
                continue;
            }
            // SAFETY: the slot holds a row of the table, read before the walk moves on. The copy
            // (palloc'd in the call's memory) holds what the page's values point to.
            unsafe {
                let id = place_of(slot, &Places { version: indexes.version, updated_at: indexes.updated_at, id: indexes.id }).id;
                let tuple = pg_sys::ExecCopySlotHeapTuple(slot);
                rows.extend(large_copy(&mut memberships, tuple, (*slot).tts_tupleDescriptor, id, reading, changed));
            }
        }
    }
    rows
}

/// The membership of a large channel `tuple` (a row of `desc`, with `id`), as it stands (read by
/// `memberships`) with its place there, if a pass reading `reading` takes it (a hidden one only
/// when `changed`). Its values are not formed into a row again: the page's output takes them.
///
/// # Safety
/// `tuple` is a valid row of `desc`, a row of the extension's table, alive as long as the page
/// (its values point into it) and as `memberships`.
pub unsafe fn large_copy(
    memberships: &mut Memberships,
    tuple: pg_sys::HeapTuple,
    desc: pg_sys::TupleDesc,
    id: i64,
    reading: &Reading<'_>,
    changed: bool,
) -> Option<Copied> {
    let standing = memberships.standing(tuple, desc);
    let now = standing.now;
    let place = Cursor { version: now.version, updated_at: now.updated_at, id };
    let stamps = [Some(standing.row_version), standing.channel_version];
    if (now.hidden && !changed) || !reading.takes_any(place, stamps.iter().flatten().copied()) {
        return None;
    }
    Some(Copied { row: PageRow::Standing(standing.values, standing.nulls), place, departed: false })
}

/// Hands `emit` the next rows of `sources` for `uid` (of `types`), in list order, each as its
/// slot (valid during the call), its place, and whether it is a departure, until it took
/// `wanted` (it returns whether it took the row). Returns how many it took.
pub fn walk(
    sources: &[Source],
    uid: &[u8],
    types: &[i16],
    reading: &Reading<'_>,
    wanted: usize,
    mut emit: impl FnMut(*mut pg_sys::TupleTableSlot, Cursor, bool) -> bool,
) -> usize {
    let uid = text_datum(uid);
    let mut walks: Vec<Walk> = Vec::with_capacity(types.len() * sources.len());
    for &list_type in types {
        let mut bounds = vec![
            Bound { column: 1, strategy: pg_sys::BTEqualStrategyNumber, function: TEXT_EQUAL, value: uid },
            Bound { column: 2, strategy: pg_sys::BTEqualStrategyNumber, function: INT2_EQUAL, value: pg_sys::Datum::from(list_type) },
        ];
        if let Some((floor, _, _)) = reading.since {
            bounds.push(Bound {
                column: 3,
                strategy: pg_sys::BTGreaterEqualStrategyNumber,
                function: INT8_AT_LEAST,
                value: pg_sys::Datum::from(floor),
            });
        }
        // Always last when there is a horizon: the bound a jump lowers.
        if reading.cursor != Cursor::TOP || reading.since.is_some() {
            bounds.push(Bound {
                column: 3,
                strategy: pg_sys::BTLessEqualStrategyNumber,
                function: INT8_AT_MOST,
                value: pg_sys::Datum::from(reading.cursor.version),
            });
        }
        for source in sources {
            let mut probe = IndexProbe::open(source.heap, source.index, bounds.len(), Snapshot::Statement);
            probe.walk_backward(&bounds);
            let mut walk = Walk { probe, bounds: bounds.clone(), places: source.places, departed: source.departed, head: None };
            advance(&mut walk, reading);
            walks.push(walk);
        }
    }
    let mut handed = 0;
    while handed < wanted {
        let Some(next) = walks
            .iter()
            .enumerate()
            .filter_map(|(i, walk)| walk.head.map(|(_, place)| (i, place)))
            .max_by_key(|&(_, place)| (place.version, place.updated_at, place.id))
            .map(|(i, _)| i)
        else {
            break;
        };
        let (slot, place) = walks[next].head.expect("the walk chosen stands on a row");
        if emit(slot, place, walks[next].departed) {
            handed += 1;
        }
        advance(&mut walks[next], reading);
    }
    handed
}

/// The badge of `uid` (of `list_type`, or of every type): the sum of unread_count over its
/// unread conversations that are not hidden, and how many there are. One walk of the unread
/// index, which holds exactly those per member; and one of the user's memberships of large
/// channels, each as it stands (the unread index holds them at their stored values: skipped).
pub fn unread(table: &OpenTable, indexes: &ListIndexes, uid: &[u8], list_type: Option<i16>) -> (i64, i64) {
    let mut bounds = vec![Bound { column: 1, strategy: pg_sys::BTEqualStrategyNumber, function: TEXT_EQUAL, value: text_datum(uid) }];
    if let Some(list_type) = list_type {
        bounds.push(Bound {
            column: 2,
            strategy: pg_sys::BTEqualStrategyNumber,
            function: INT2_EQUAL,
            value: pg_sys::Datum::from(list_type),
        });
    }
    // SAFETY: a descriptor of the open table.
    let large = unsafe { membership::large_column_of(table.table.relid, (*table.relation).rd_att) };
    let mut probe = IndexProbe::open(table.relation, indexes.unread, bounds.len(), Snapshot::Statement);
    probe.walk_backward(&bounds);
    let (mut unread, mut conversations) = (0i64, 0i64);
    while let Some(slot) = probe.next_largest() {
        // SAFETY: the slot holds a row of the table; unread_count is a NOT NULL integer.
        let count = unsafe { slot_value(slot, i32::from(indexes.unread_count)) };
        if let (Some(count), false) = (count, unsafe { membership::slot_is_large(slot, large) }) {
            unread += i64::from(count.value() as i32);
            conversations += 1;
        }
    }
    drop(probe);
    if let Some(index) = indexes.large {
        let mut memberships = Memberships::new(table.table.schema, Snapshot::Statement);
        let mut probe = IndexProbe::open(table.relation, index, bounds.len(), Snapshot::Statement);
        probe.walk_backward(&bounds);
        while let Some(slot) = probe.next_largest() {
            // SAFETY: the slot holds a row of the table, read before the walk moves on.
            let now = unsafe {
                let tuple = pg_sys::ExecFetchSlotHeapTuple(slot, false, std::ptr::null_mut());
                memberships.standing(tuple, (*slot).tts_tupleDescriptor).now
            };
            if let Some(count) = now.badge() {
                unread += count;
                conversations += 1;
            }
        }
    }
    (unread, conversations)
}

const INT8_AT_LEAST: pg_sys::Oid = pg_sys::Oid::from_u32(pg_sys::F_INT8GE);
const INT8_AT_MOST: pg_sys::Oid = pg_sys::Oid::from_u32(pg_sys::F_INT8LE);

/// Steps `walk` to its next row that belongs to the page, or to its end. A row below the
/// horizon's ceiling that did not change sends the walk down to the next in-flight version below
/// it, or ends it when there is none.
fn advance(walk: &mut Walk, reading: &Reading<'_>) {
    walk.head = None;
    while let Some(slot) = walk.probe.next_largest() {
        let place = place_of(slot, &walk.places);
        if reading.takes(place) {
            walk.head = Some((slot, place));
            return;
        }
        if let Some((_, ceiling, in_flight)) = reading.since {
            if place.version < ceiling && in_flight.binary_search(&place.version).is_err() {
                // The in-flight versions are ascending: the greatest one below this row's.
                let below = in_flight.partition_point(|&version| version < place.version);
                let Some(&next) = below.checked_sub(1).map(|i| &in_flight[i]) else { return };
                let last = walk.bounds.len() - 1;
                walk.bounds[last].value = pg_sys::Datum::from(next);
                walk.probe.walk_backward(&walk.bounds);
            }
        }
    }
}

/// A row's place in the list: its version, updated_at and id.
pub fn place_of(slot: *mut pg_sys::TupleTableSlot, places: &Places) -> Cursor {
    // SAFETY: the slot holds a row of its relation, whose descriptor it carries; the three columns
    // are NOT NULL bigint, timestamptz and bigint (table.rs and departure_table.rs checked).
    let value = |attnum: i16| unsafe { slot_value(slot, i32::from(attnum)) }.map_or(0, |datum| datum.value() as i64);
    Cursor { version: value(places.version), updated_at: value(places.updated_at), id: value(places.id) }
}
