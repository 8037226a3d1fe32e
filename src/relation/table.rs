//! What the conversation table is, read from its open, locked relation and checked
//! (`Table::inspect`): its primary key on (uid, channel_id, channel_type) with plain text and
//! integer equality, its layout (plain, hash partitioned on key columns, distributed by Citus, or
//! only reachable through SQL), its channel and list indexes where they may be read directly, and
//! the names statements are written with. Anything else is a clear 55000 naming what is wrong and
//! how to restore it without losing a row. catalog.rs remembers what is read here.

use std::cell::Cell;
use std::ffi::CStr;

use pgrx::pg_sys;

use crate::glue::errors;
use crate::relation::citus;
use crate::relation::stamp_catalog::Stamped;

/// pg_partitioned_table (a catalog OID, fixed for good).
const PARTITIONED_TABLE_CATALOG: pg_sys::Oid = pg_sys::Oid::from_u32(3350);
/// The equality functions a direct probe may compare with (those of the built-in btree opclasses).
pub const TEXT_EQUAL: pg_sys::Oid = pg_sys::Oid::from_u32(pg_sys::F_TEXTEQ);
pub const INT2_EQUAL: pg_sys::Oid = pg_sys::Oid::from_u32(pg_sys::F_INT2EQ);
const INT4_EQUAL: pg_sys::Oid = pg_sys::Oid::from_u32(pg_sys::F_INT4EQ);
const INT8_EQUAL: pg_sys::Oid = pg_sys::Oid::from_u32(pg_sys::F_INT8EQ);
/// A hash opclass's extended hash support function number (access/hash.h).
const HASHEXTENDED_PROC: i16 = 2;

/// What this backend knows about the conversation table of one schema.
pub struct Table {
    pub schema: pg_sys::Oid,
    pub relid: pg_sys::Oid,
    /// Its name and columns for the text of statements (statements.rs).
    pub names: Names,
    /// The same, for the list's reads (planned once: `Planning::Once`).
    pub list_names: Names,
    /// Its primary key on (uid, channel_id, channel_type).
    pub key_index: pg_sys::Oid,
    /// A plain table's index led by (channel_id, channel_type), if it has one: batches probe it
    /// once to tell that a channel is new.
    pub channel_index: Option<pg_sys::Oid>,
    /// The type of channel_type in the table (the key index compares it as that type).
    pub channel_type_width: IntWidth,
    /// Whether Citus distributes it (some statements take another form there).
    pub distributed: bool,
    /// Whether it has column hidden (0.5.0): the library serves databases not yet updated too.
    pub has_hidden: bool,
    /// Whether it has column large (0.9.0), and so may hold memberships of large channels, which
    /// a write materializes first (state/materialize.rs).
    pub has_large: bool,
    /// With `has_large`, the channel table (channel_table.rs): its rows' stamps are part of the
    /// list's (a position must have seen them too), so a change to its trigger forgets the table.
    pub channels: Option<pg_sys::Oid>,
    /// Whether its rows are stamped and since which transaction (stamp.rs), once asked: an
    /// ALTER TABLE ... DISABLE TRIGGER invalidates the table (or the partition), and so this.
    pub(in crate::relation) stamped: Cell<Option<Option<Stamped>>>,
    /// A partitioned table's leaf partitions, sorted: each must be stamped, and a change to one
    /// (a trigger disabled there) forgets the table.
    pub(in crate::relation) leaves: Vec<u32>,
    /// A plain table's list indexes, when they are the extension's (list_scan.rs reads them).
    pub list_indexes: Option<ListIndexes>,
    pub(in crate::relation) layout: Layout,
}

/// The three list indexes on (uid, type, version, updated_at, id), one per state, and the
/// table's attribute numbers of version, updated_at, id and unread_count.
pub struct ListIndexes {
    pub unread: pg_sys::Oid,
    pub read: pg_sys::Oid,
    pub hidden: pg_sys::Oid,
    pub version: i16,
    pub updated_at: i16,
    pub id: i16,
    pub unread_count: i16,
    /// conversation_large_idx (uid, type) WHERE large (0.9.0): a user's memberships of large
    /// channels, which the list indexes hold at their stored values (relation/membership.rs).
    pub large: Option<pg_sys::Oid>,
}

/// The width of an integer column (channel_type is smallint as the extension makes it; an
/// application may have widened it).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum IntWidth {
    Two,
    Four,
    Eight,
}

impl IntWidth {
    /// The width of integer type `type_oid`; bigint's for any other.
    pub fn of_type(type_oid: pg_sys::Oid) -> IntWidth {
        match type_oid {
            pg_sys::INT2OID => IntWidth::Two,
            pg_sys::INT4OID => IntWidth::Four,
            _ => IntWidth::Eight,
        }
    }

    /// A datum of this width, as its value.
    pub fn value(self, datum: pg_sys::Datum) -> i64 {
        match self {
            IntWidth::Two => i64::from(datum.value() as i16),
            IntWidth::Four => i64::from(datum.value() as i32),
            IntWidth::Eight => datum.value() as i64,
        }
    }
}

pub(in crate::relation) enum Layout {
    Plain,
    /// PARTITION BY HASH on key columns: routed with PostgreSQL's own hash support functions.
    HashPartitioned(HashRouting),
    /// Distributed by uid on Citus: the key's shard, where this node has it (citus.rs).
    Distributed,
    /// Partitioned or distributed in another way: rows are found through SQL.
    Queried,
}

/// A hash partition key over key columns: each column's hash support function and collation, in
/// partition key order, and which key field it is.
pub(in crate::relation) struct HashRouting {
    pub(in crate::relation) fields: Vec<KeyField>,
    pub(in crate::relation) functions: Box<[pg_sys::FmgrInfo]>,
    pub(in crate::relation) collations: Box<[pg_sys::Oid]>,
}

#[derive(Clone, Copy)]
pub(in crate::relation) enum KeyField {
    Uid,
    ChannelId,
    ChannelType,
}
impl Table {
    /// The equality function the key index compares channel_type with.
    pub fn channel_type_equality(&self) -> pg_sys::Oid {
        match self.channel_type_width {
            IntWidth::Two => INT2_EQUAL,
            IntWidth::Four => INT4_EQUAL,
            IntWidth::Eight => INT8_EQUAL,
        }
    }

    /// A channel_type datum of the table's channel_type column type, as the key's i16.
    pub fn channel_type_of(&self, datum: pg_sys::Datum) -> i16 {
        self.channel_type_width.value(datum) as i16
    }

    /// The channel_type value as a datum of the table's channel_type column type.
    pub fn channel_type_datum(&self, channel_type: i16) -> pg_sys::Datum {
        match self.channel_type_width {
            IntWidth::Two => pg_sys::Datum::from(channel_type),
            IntWidth::Four => pg_sys::Datum::from(i32::from(channel_type)),
            IntWidth::Eight => pg_sys::Datum::from(i64::from(channel_type)),
        }
    }

    /// Reads and checks what the functions need from the open, locked table.
    ///
    /// # Safety
    /// `relation` is the table of `schema`, open and locked (catalog.rs's `lock_by_name`).
    pub(in crate::relation) unsafe fn inspect(schema: pg_sys::Oid, relation: pg_sys::Relation) -> Table {
        let relid = (*relation).rd_id;
        let relkind = (*(*relation).rd_rel).relkind as u8;
        if relkind != pg_sys::RELKIND_RELATION && relkind != pg_sys::RELKIND_PARTITIONED_TABLE {
            errors::table_shape("it is not a table", "The extension's table must be named conversation; give the table back that name.");
        }
        let columns = [attnum_of(relation, c"uid"), attnum_of(relation, c"channel_id"), attnum_of(relation, c"channel_type")];
        let key_index = primary_key(relation);
        if key_index == pg_sys::InvalidOid {
            errors::table_shape(
                "it has no primary key",
                "ALTER TABLE conversation ADD CONSTRAINT conversation_pkey PRIMARY KEY (uid, channel_id, channel_type)",
            );
        }
        let index = pg_sys::index_open(key_index, pg_sys::AccessShareLock as _);
        let compared = [(columns[0], Compared::AsText), (columns[1], Compared::AsText), (columns[2], Compared::AsInteger)];
        let equality = match key_equality(index, &compared, true) {
            Some(equality) => equality,
            None => errors::table_shape(
                "its primary key is not a valid unique btree index on (uid, channel_id, channel_type) comparing text and integers",
                "ALTER TABLE conversation DROP CONSTRAINT <its primary key>, ADD CONSTRAINT conversation_pkey PRIMARY KEY (uid, channel_id, channel_type)",
            ),
        };
        pg_sys::index_close(index, pg_sys::NoLock as _);
        let channel_type_width = match equality {
            INT2_EQUAL => IntWidth::Two,
            INT4_EQUAL => IntWidth::Four,
            _ => IntWidth::Eight,
        };
        let distribution = citus::distribution_of(relid);
        let layout = match distribution {
            citus::Distribution::ByHash(column) if column == columns[0] => Layout::Distributed,
            citus::Distribution::ByHash(_) | citus::Distribution::Other => Layout::Queried,
            citus::Distribution::Local if relkind == pg_sys::RELKIND_RELATION => Layout::Plain,
            citus::Distribution::Local => hash_routing(relid, &columns).map_or(Layout::Queried, Layout::HashPartitioned),
        };
        let channel_index = if matches!(layout, Layout::Plain) { channel_index(relation, &columns) } else { None };
        let columns = pgrx::PgTupleDesc::from_pg_unchecked((*relation).rd_att)
            .iter()
            .filter(|attribute| !attribute.attisdropped)
            .map(|attribute| format!("c.{}", quote(attribute.attname.data.as_ptr())))
            .collect::<Vec<_>>()
            .join(", ");
        let distributed = distribution != citus::Distribution::Local;
        let has_hidden = pg_sys::get_attnum(relid, c"hidden".as_ptr()) > 0;
        let large = pg_sys::get_attnum(relid, c"large".as_ptr());
        let has_large = large > 0 && pg_sys::get_atttype(relid, large) == pg_sys::BOOLOID;
        let per_member = if has_large { " AND NOT c.large" } else { "" };
        let planning = if distribution != citus::Distribution::Local { Planning::EveryRun } else { Planning::Chosen };
        let names = Names { columns, per_member, planning, ..Names::of_schema(schema) };
        let list_names = names.for_lists();
        let channels = if has_large { extension_table(schema, c"conversation_channel") } else { None };
        let stamped = Cell::new(None);
        let leaves = if relkind == pg_sys::RELKIND_PARTITIONED_TABLE { leaf_partitions(relation) } else { Vec::new() };
        let list_indexes = if matches!(layout, Layout::Plain) { list_indexes(relation) } else { None };
        Table {
            schema,
            relid,
            names,
            list_names,
            key_index,
            channel_index,
            channel_type_width,
            distributed,
            has_hidden,
            has_large,
            channels,
            stamped,
            leaves,
            list_indexes,
            layout,
        }
    }
}

/// `name` quoted as an SQL identifier where it needs to be.
///
/// # Safety
/// `name` is a NUL-terminated string.
unsafe fn quote(name: *const std::ffi::c_char) -> String {
    CStr::from_ptr(pg_sys::quote_identifier(name)).to_string_lossy().into_owned()
}

/// The names statements are written with (statements.rs), quoted.
#[derive(Clone, PartialEq)]
pub struct Names {
    /// The table, schema-qualified.
    pub table: String,
    /// Its columns, `c."id", c."uid", ...`: statements return rows by column, never as the
    /// whole-row `c` (Citus cannot cast a shard's row type to the table's).
    pub columns: String,
    /// The clock table (stamp.rs), schema-qualified.
    pub clock: String,
    /// The departure table (departures.rs), schema-qualified.
    pub departures: String,
    /// The channel table of large channels (channel_table.rs), schema-qualified.
    pub channels: String,
    /// ` AND NOT c.large` where the table has column large (0.9.0), empty where it has not: the
    /// list's statements read per-member rows only (large ones as they stand: relation/membership.rs).
    pub per_member: &'static str,
    /// How its kept statements are planned (statements.rs says why each).
    pub planning: Planning,
}

/// How the plan cache plans a kept statement.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Planning {
    /// As PostgreSQL chooses: custom plans at first, then one generic plan if it costs no more.
    Chosen,
    /// A custom plan on every run: the table is Citus's.
    EveryRun,
    /// One generic plan, whatever it is estimated to cost: the list's reads, whose custom plans
    /// cost more to make than to run (on a partitioned table, the executor then prunes to the
    /// user's partition on every run).
    Once,
}

impl Names {
    /// These names with `relid`, a Citus shard of the table on this node, in the table's place:
    /// read-only statements then read the shard as the plain table it is here, and Citus runs
    /// nothing (writes go through the distributed table: Citus refuses them on a shard, and
    /// coordinates them with shard moves).
    pub fn reading_from(&self, relid: pg_sys::Oid) -> Names {
        // SAFETY: catalog lookups of a relation that exists (found under the table's lock).
        let table = unsafe {
            let (schema, name) = (pg_sys::get_namespace_name(pg_sys::get_rel_namespace(relid)), pg_sys::get_rel_name(relid));
            if schema.is_null() || name.is_null() {
                errors::extension_dropped();
            }
            format!("{}.{}", quote(schema), quote(name))
        };
        Names { table, planning: Planning::Once, ..self.clone() }
    }

    /// These names for the list's reads of the table itself: planned once, but on a table Citus
    /// distributes (planned on every run there).
    pub fn for_lists(&self) -> Names {
        let planning = if self.planning == Planning::EveryRun { Planning::EveryRun } else { Planning::Once };
        Names { planning, ..self.clone() }
    }

    /// The names in `schema`, without columns (the table is not opened).
    pub fn of_schema(schema: pg_sys::Oid) -> Names {
        // SAFETY: catalog lookups; the quoted names are copied out of palloc'd memory.
        unsafe {
            let schema_name = pg_sys::get_namespace_name(schema);
            if schema_name.is_null() {
                errors::extension_dropped();
            }
            let schema_name = quote(schema_name);
            Names {
                table: format!("{schema_name}.{}", quote(c"conversation".as_ptr())),
                columns: String::new(),
                clock: format!("{schema_name}.{}", quote(c"conversation_clock".as_ptr())),
                departures: format!("{schema_name}.{}", quote(c"conversation_departure".as_ptr())),
                channels: format!("{schema_name}.{}", quote(c"conversation_channel".as_ptr())),
                per_member: "",
                planning: Planning::Chosen,
            }
        }
    }
}

/// The relation's primary key index (an immediate one: ON CONFLICT cannot use a deferrable key),
/// or InvalidOid. PostgreSQL 18 asks whether a deferrable one would do.
///
/// # Safety
/// `relation` is an open relation.
pub(in crate::relation) unsafe fn primary_key(relation: pg_sys::Relation) -> pg_sys::Oid {
    #[cfg(not(feature = "pg18"))]
    return pg_sys::RelationGetPrimaryKeyIndex(relation);
    #[cfg(feature = "pg18")]
    return pg_sys::RelationGetPrimaryKeyIndex(relation, false);
}

/// The attribute number of column `name`; a clear 55000 (`errors::table_shape`) if there is none.
///
/// # Safety
/// `relation` is an open relation.
unsafe fn attnum_of(relation: pg_sys::Relation, name: &CStr) -> i16 {
    let attnum = pg_sys::get_attnum((*relation).rd_id, name.as_ptr());
    if attnum <= 0 {
        let column = name.to_string_lossy();
        errors::table_shape(
            &format!("it has no column {column}"),
            &format!("Give the column back its name (ALTER TABLE conversation RENAME COLUMN ... TO {column})."),
        );
    }
    attnum
}

/// How an index column must compare for a direct probe to find exactly what SQL's `=` finds.
#[derive(Clone, Copy, PartialEq)]
enum Compared {
    /// texteq under a deterministic collation: equal means byte-for-byte equal.
    AsText,
    /// int2eq, int4eq or int8eq.
    AsInteger,
}

/// For a valid btree index with neither expressions nor a predicate whose leading key columns
/// are `columns`, each compared as required: the equality function of the last of them. With
/// `unique`, the index must also be unique on exactly those columns.
///
/// # Safety
/// `index` is an open index relation.
unsafe fn key_equality(index: pg_sys::Relation, columns: &[(i16, Compared)], unique: bool) -> Option<pg_sys::Oid> {
    let form = (*index).rd_index;
    if !usable(index)
        || (*(*index).rd_rel).relam != pg_sys::BTREE_AM_OID
        || (unique && (!(*form).indisunique || (*form).indnkeyatts as usize != columns.len()))
        || ((*form).indnkeyatts as usize) < columns.len()
        || !pg_sys::RelationGetIndexExpressions(index).is_null()
        || !pg_sys::RelationGetIndexPredicate(index).is_null()
    {
        return None;
    }
    let mut last = pg_sys::InvalidOid;
    for (i, &(column, compared)) in columns.iter().enumerate() {
        if *(*form).indkey.values.as_ptr().add(i) != column {
            return None;
        }
        let family = *(*index).rd_opfamily.add(i);
        let input = *(*index).rd_opcintype.add(i);
        let operator = pg_sys::get_opfamily_member(family, input, input, pg_sys::BTEqualStrategyNumber as i16);
        let equality = pg_sys::get_opcode(operator);
        let acceptable = match compared {
            Compared::AsText => {
                let collation = *(*index).rd_indcollation.add(i);
                equality == TEXT_EQUAL && (collation == pg_sys::InvalidOid || pg_sys::get_collation_isdeterministic(collation))
            }
            Compared::AsInteger => [INT2_EQUAL, INT4_EQUAL, INT8_EQUAL].contains(&equality),
        };
        if !acceptable {
            return None;
        }
        last = equality;
    }
    Some(last)
}

/// The extension's list indexes of `relation`, if each is there under its name, usable (valid
/// and ready, as the planner requires of an index it reads), defined as the extension defines
/// it, over columns of the types it made: only then may they be read directly. Otherwise (an
/// index being built or rebuilt, one a failed CREATE INDEX CONCURRENTLY left behind, one changed)
/// the list is read through SQL, which is right whatever they are. Each index is found among the
/// table's own (the relcache's list, read under the table's lock) and locked as a scan locks it.
///
/// # Safety
/// `relation` is the open, locked table.
unsafe fn list_indexes(relation: pg_sys::Relation) -> Option<ListIndexes> {
    const ON: &str = " USING btree (uid, type, version, updated_at, id) WHERE ";
    let wanted: [(&CStr, &str); 3] = [
        (c"conversation_list_unread_idx", "((unread_count > 0) AND (NOT hidden))"),
        (c"conversation_list_read_idx", "((unread_count <= 0) AND (NOT hidden))"),
        (c"conversation_list_hidden_idx", "hidden"),
    ];
    let mut found = [pg_sys::InvalidOid; 3];
    let indexes = pg_sys::RelationGetIndexList(relation);
    let count = if indexes.is_null() { 0 } else { (*indexes).length };
    for i in 0..count {
        let oid = pg_sys::list_nth_oid(indexes, i);
        let name = pg_sys::get_rel_name(oid);
        let Some(slot) = (!name.is_null()).then(|| wanted.iter().position(|(wanted, _)| CStr::from_ptr(name) == *wanted)).flatten() else {
            continue;
        };
        let index = pg_sys::index_open(oid, pg_sys::AccessShareLock as _);
        let ready = usable(index);
        pg_sys::index_close(index, pg_sys::NoLock as _);
        if !ready {
            continue;
        }
        let definition = CStr::from_ptr(pg_sys::pg_get_indexdef_string(oid)).to_string_lossy().into_owned();
        if definition.ends_with(&format!("{ON}{}", wanted[slot].1)) {
            found[slot] = oid;
        }
    }
    pg_sys::list_free(indexes);
    if found.contains(&pg_sys::InvalidOid) {
        return None;
    }
    let typed = |name: &CStr, type_oid: pg_sys::Oid| -> Option<i16> {
        let attnum = pg_sys::get_attnum((*relation).rd_id, name.as_ptr());
        (attnum > 0 && pg_sys::get_atttype((*relation).rd_id, attnum) == type_oid).then_some(attnum)
    };
    typed(c"type", pg_sys::INT2OID)?;
    // Where memberships of large channels can be (column large), they must be found by their
    // index, or a list would show them as stored: no direct reading without it.
    let large = match typed(c"large", pg_sys::BOOLOID) {
        None => None,
        Some(_) => Some(extension_index(relation, c"conversation_large_idx", " USING btree (uid, type) WHERE large")?),
    };
    Some(ListIndexes {
        unread: found[0],
        read: found[1],
        hidden: found[2],
        version: typed(c"version", pg_sys::INT8OID)?,
        updated_at: typed(c"updated_at", pg_sys::TIMESTAMPTZOID)?,
        id: typed(c"id", pg_sys::INT8OID)?,
        unread_count: typed(c"unread_count", pg_sys::INT4OID)?,
        large,
    })
}

/// The extension's table `name` in `schema`, or None where it has none (a release before it).
pub fn extension_table(schema: pg_sys::Oid, name: &CStr) -> Option<pg_sys::Oid> {
    // SAFETY: a syscache lookup.
    let relid = unsafe { pg_sys::get_relname_relid(name.as_ptr(), schema) };
    (relid != pg_sys::InvalidOid).then_some(relid)
}

/// The index of `relation` named `name` when it is usable and its definition ends with
/// `ending` (as the extension builds it: a rebuilt or changed one is not read directly).
///
/// # Safety
/// `relation` is an open, locked relation.
pub(in crate::relation) unsafe fn extension_index(relation: pg_sys::Relation, name: &CStr, ending: &str) -> Option<pg_sys::Oid> {
    let indexes = pg_sys::RelationGetIndexList(relation);
    let count = if indexes.is_null() { 0 } else { (*indexes).length };
    let mut found = None;
    for i in 0..count {
        let oid = pg_sys::list_nth_oid(indexes, i);
        let index_name = pg_sys::get_rel_name(oid);
        if index_name.is_null() || CStr::from_ptr(index_name) != name {
            continue;
        }
        let index = pg_sys::index_open(oid, pg_sys::AccessShareLock as _);
        let ready = usable(index);
        pg_sys::index_close(index, pg_sys::NoLock as _);
        let definition = CStr::from_ptr(pg_sys::pg_get_indexdef_string(oid)).to_string_lossy().into_owned();
        if ready && definition.ends_with(ending) {
            found = Some(oid);
        }
    }
    pg_sys::list_free(indexes);
    found
}

/// Whether an open index may be read: valid, ready and live, as PostgreSQL's planner requires
/// (an index being built concurrently, or left by a build that failed, is not).
///
/// # Safety
/// `index` is an open index relation.
pub(in crate::relation) unsafe fn usable(index: pg_sys::Relation) -> bool {
    let form = (*index).rd_index;
    (*form).indisvalid && (*form).indisready && (*form).indislive
}

/// The leaf partitions of an open partitioned table, sorted, from its partition descriptor (and
/// those of partitions partitioned again, opened and locked as a query would). Attaching or
/// detaching a partition invalidates the table, which then finds them again.
///
/// # Safety
/// `relation` is an open, locked partitioned table.
unsafe fn leaf_partitions(relation: pg_sys::Relation) -> Vec<u32> {
    let mut leaves = Vec::new();
    let partitions = pg_sys::RelationGetPartitionDesc(relation, true);
    if !partitions.is_null() {
        for i in 0..(*partitions).nparts as usize {
            let oid = *(*partitions).oids.add(i);
            if *(*partitions).is_leaf.add(i) {
                leaves.push(oid.to_u32());
            } else {
                let child = pg_sys::table_open(oid, pg_sys::AccessShareLock as _);
                leaves.extend(leaf_partitions(child));
                pg_sys::table_close(child, pg_sys::NoLock as _);
            }
        }
    }
    leaves.sort_unstable();
    leaves
}

/// A plain table's index led by (channel_id, channel_type), if any.
///
/// # Safety
/// `relation` is the open, locked table; `key_columns` are its attribute numbers of the key.
unsafe fn channel_index(relation: pg_sys::Relation, key_columns: &[i16; 3]) -> Option<pg_sys::Oid> {
    let indexes = pg_sys::RelationGetIndexList(relation);
    let count = if indexes.is_null() { 0 } else { (*indexes).length };
    let leading = [(key_columns[1], Compared::AsText), (key_columns[2], Compared::AsInteger)];
    let mut found = None;
    for i in 0..count {
        let oid = pg_sys::list_nth_oid(indexes, i);
        let index = pg_sys::index_open(oid, pg_sys::AccessShareLock as _);
        let leads = key_equality(index, &leading, false).is_some();
        pg_sys::index_close(index, pg_sys::NoLock as _);
        if leads {
            found = Some(oid);
            break;
        }
    }
    pg_sys::list_free(indexes);
    found
}

/// For a table partitioned by hash on key columns only: how to route a key.
///
/// # Safety
/// `relid` is the table, locked (its pg_partitioned_table row is read through the syscache).
unsafe fn hash_routing(relid: pg_sys::Oid, key_columns: &[i16; 3]) -> Option<HashRouting> {
    let tuple = pg_sys::SearchSysCache1(pg_sys::SysCacheIdentifier::PARTRELID as i32, pg_sys::Datum::from(relid));
    if tuple.is_null() {
        return None;
    }
    let attribute = |name: &CStr| {
        let mut is_null = false;
        let attnum = pg_sys::get_attnum(PARTITIONED_TABLE_CATALOG, name.as_ptr());
        let datum = pg_sys::SysCacheGetAttr(pg_sys::SysCacheIdentifier::PARTRELID as i32, tuple, attnum, &mut is_null);
        (!is_null).then_some(datum)
    };
    let strategy = attribute(c"partstrat").map(|datum| datum.value() as u8);
    let (Some(attributes), Some(classes), Some(collations)) =
        (attribute(c"partattrs"), attribute(c"partclass"), attribute(c"partcollation"))
    else {
        pg_sys::ReleaseSysCache(tuple);
        return None;
    };
    let attributes = attributes.cast_mut_ptr::<pg_sys::int2vector>();
    let classes = classes.cast_mut_ptr::<pg_sys::oidvector>();
    let collations = collations.cast_mut_ptr::<pg_sys::oidvector>();
    let count = (*attributes).dim1 as usize;
    let mut routing = HashRouting { fields: Vec::new(), functions: Vec::new().into(), collations: Vec::new().into() };
    let mut functions = Vec::with_capacity(count);
    let mut routed = strategy == Some(b'h');
    for i in 0..count {
        let attnum = *(*attributes).values.as_ptr().add(i);
        let field = match key_columns.iter().position(|&column| column == attnum) {
            Some(0) => KeyField::Uid,
            Some(1) => KeyField::ChannelId,
            Some(2) => KeyField::ChannelType,
            _ => {
                routed = false; // an expression or another column: not a key's to route
                break;
            }
        };
        let class = *(*classes).values.as_ptr().add(i);
        let family = pg_sys::get_opclass_family(class);
        let input = pg_sys::get_opclass_input_type(class);
        let support = pg_sys::get_opfamily_proc(family, input, input, HASHEXTENDED_PROC);
        let mut function: pg_sys::FmgrInfo = std::mem::zeroed();
        pg_sys::fmgr_info_cxt(support, &mut function, pg_sys::CacheMemoryContext);
        functions.push(function);
        routing.fields.push(field);
    }
    if routed {
        routing.functions = functions.into_boxed_slice();
        routing.collations = (0..count).map(|i| *(*collations).values.as_ptr().add(i)).collect();
    }
    pg_sys::ReleaseSysCache(tuple);
    routed.then_some(routing)
}
