//! The conversation table, as this backend knows it. Every other module asks here; nothing else
//! looks the table up by name.
//!
//! - Found by name in the extension's schema *under a lock*: the table is locked first
//!   (AccessShareLock, as any SELECT), and only then are its primary key and partitions read from
//!   the relcache. Taking the lock processes pending invalidations, so what we then read is
//!   current: a REINDEX CONCURRENTLY or a re-created primary key that committed before the lock is
//!   seen, and one that has not cannot drop an index under us (it waits for our lock).
//! - Checked: a table (plain or partitioned) whose primary key is a valid unique btree on
//!   (uid, channel_id, channel_type) with plain text and integer equality. Anything else is a
//!   clear 55000 naming what is wrong and how to restore it without losing a row.
//! - Remembered per backend until a relcache invalidation of the table or its indexes, or a change
//!   of any schema (a rename changes the name our statements use), forgets it. A remembered entry
//!   is used only after the table is locked again, so a forgotten OID is never trusted.
//! - `placement` decides which relation holds a key's row: the table itself, the hash partition
//!   the key routes to (PostgreSQL's own partition hashing), the Citus shard of the key when this
//!   node has it (Citus's own functions, citus.rs), or, when none can be probed directly,
//!   `Placement::Query`: a SQL statement lets PostgreSQL (or Citus) find it.

use std::cell::Cell;
use std::ffi::CStr;
use std::rc::Rc;

use pgrx::pg_sys;

use crate::glue::call::text_datum;
use crate::glue::errors;
use crate::input::key::ConversationKey;
use crate::relation::{citus, xid};

/// pg_partitioned_table (a catalog OID, fixed for good).
const PARTITIONED_TABLE_CATALOG: pg_sys::Oid = pg_sys::Oid::from_u32(3350);
/// The equality functions a direct probe may compare with (those of the built-in btree opclasses).
pub const TEXT_EQUAL: pg_sys::Oid = pg_sys::Oid::from_u32(pg_sys::F_TEXTEQ);
const INT2_EQUAL: pg_sys::Oid = pg_sys::Oid::from_u32(pg_sys::F_INT2EQ);
const INT4_EQUAL: pg_sys::Oid = pg_sys::Oid::from_u32(pg_sys::F_INT4EQ);
const INT8_EQUAL: pg_sys::Oid = pg_sys::Oid::from_u32(pg_sys::F_INT8EQ);
/// A hash opclass's extended hash support function number (access/hash.h).
const HASHEXTENDED_PROC: i16 = 2;

/// What this backend knows about the conversation table of one schema.
pub struct Table {
    pub schema: pg_sys::Oid,
    pub relid: pg_sys::Oid,
    /// Its name and columns for the text of statements (kept.rs).
    pub names: Names,
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
    /// Whether its rows are stamped and since which transaction (stamp.rs), once asked: an
    /// ALTER TABLE ... DISABLE TRIGGER invalidates the table (or the partition), and so this.
    stamped: Cell<Option<Option<Stamped>>>,
    /// A partitioned table's leaf partitions, sorted: each must be stamped, and a change to one
    /// (a trigger disabled there) forgets the table.
    leaves: Vec<u32>,
    /// A plain table's list indexes, when they are the extension's (list_scan.rs reads them).
    pub list_indexes: Option<ListIndexes>,
    layout: Layout,
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
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum IntWidth {
    Two,
    Four,
    Eight,
}

enum Layout {
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
struct HashRouting {
    fields: Vec<KeyField>,
    functions: Box<[pg_sys::FmgrInfo]>,
    collations: Box<[pg_sys::Oid]>,
}

#[derive(Clone, Copy)]
enum KeyField {
    Uid,
    ChannelId,
    ChannelType,
}

/// Where the row of a key lives.
pub enum Placement {
    /// In `heap`, under its key index `index`: probe it directly. `leaf` when it is a partition
    /// opened for this probe (closed when the placement is dropped).
    Direct { heap: pg_sys::Relation, index: pg_sys::Oid, leaf: bool },
    /// Only SQL can find it.
    Query,
}

impl Drop for Placement {
    fn drop(&mut self) {
        // While unwinding from an ERROR, PostgreSQL may not be called; the abort that follows
        // releases the relation with the resource owner.
        if let (Placement::Direct { heap, leaf: true, .. }, false) = (&*self, std::thread::panicking()) {
            // SAFETY: opened by `placement`; the lock stays to the end of the transaction.
            unsafe { pg_sys::table_close(*heap, pg_sys::NoLock as _) };
        }
    }
}

thread_local! {
    /// One entry: a database holds the extension once.
    static KNOWN: Cell<Option<Rc<Table>>> = const { Cell::new(None) };
    static CALLBACKS_REGISTERED: Cell<bool> = const { Cell::new(false) };
    /// The clock table of one schema and its OID.
    static KNOWN_CLOCK: Cell<Option<(pg_sys::Oid, Clock)>> = const { Cell::new(None) };
}

fn known() -> Option<Rc<Table>> {
    KNOWN.with(|known| {
        let table = known.take();
        known.set(table.clone());
        table
    })
}

fn forget_if(depends: impl Fn(&Table) -> bool) {
    KNOWN.with(|known| {
        let table = known.take();
        if let Some(table) = table {
            if !depends(&table) {
                known.set(Some(table));
            }
        }
    });
}

/// Relcache invalidation: the table, or one of the indexes we use, changed (or every cache was
/// reset).
///
/// # Safety
/// Called by PostgreSQL as a relcache invalidation callback (registered in `register_callbacks`).
unsafe extern "C-unwind" fn forget_relation(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    forget_if(|table| {
        relid == pg_sys::InvalidOid
            || relid == table.relid
            || relid == table.key_index
            || table.channel_index == Some(relid)
            || table.list_indexes.as_ref().is_some_and(|list| [list.unread, list.read, list.hidden].contains(&relid))
            || table.leaves.binary_search(&relid.to_u32()).is_ok()
    });
}

/// Relcache invalidation for the clock table (dropped, renamed), or of every relation.
///
/// # Safety
/// Called by PostgreSQL as a relcache invalidation callback (registered in `register_callbacks`).
unsafe extern "C-unwind" fn forget_clock(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    if KNOWN_CLOCK.get().is_some_and(|(_, clock)| relid == pg_sys::InvalidOid || relid == clock.relid) {
        KNOWN_CLOCK.set(None);
    }
}

/// A schema changed (renamed, say): the qualified name we remember may be stale.
///
/// # Safety
/// Called by PostgreSQL as a syscache invalidation callback (registered in `register_callbacks`).
unsafe extern "C-unwind" fn forget_on_schema_change(_arg: pg_sys::Datum, _cache: i32, _hash: u32) {
    forget_if(|_| true);
}

fn register_callbacks() {
    if CALLBACKS_REGISTERED.with(Cell::get) {
        return;
    }
    // SAFETY: registered once for the life of this backend.
    unsafe {
        pg_sys::CacheRegisterRelcacheCallback(Some(forget_relation), pg_sys::Datum::from(0));
        pg_sys::CacheRegisterRelcacheCallback(Some(forget_clock), pg_sys::Datum::from(0));
        pg_sys::CacheRegisterSyscacheCallback(
            pg_sys::SysCacheIdentifier::NAMESPACEOID as i32,
            Some(forget_on_schema_change),
            pg_sys::Datum::from(0),
        );
    }
    CALLBACKS_REGISTERED.with(|registered| registered.set(true));
}

/// The clock table (conversation_clock, stamp.rs).
#[derive(Clone, Copy)]
pub struct Clock {
    pub relid: pg_sys::Oid,
    /// Whether it has column timeline (0.7.0): a generation per timeline. A database whose
    /// extension is not updated yet is served as its version was: a generation per cluster, and
    /// a stamp trigger enabled for ordinary sessions counts.
    pub per_timeline: bool,
}

/// The clock table of `schema`. Looked up by name once and remembered until a relcache
/// invalidation of it: the stamp trigger asks on every row it stamps.
pub fn clock(schema: pg_sys::Oid) -> Clock {
    register_callbacks();
    if let Some((known_schema, clock)) = KNOWN_CLOCK.get() {
        if known_schema == schema {
            return clock;
        }
    }
    // SAFETY: syscache lookups.
    let clock = unsafe {
        let relid = pg_sys::get_relname_relid(c"conversation_clock".as_ptr(), schema);
        if relid == pg_sys::InvalidOid {
            errors::clock_table_missing();
        }
        Clock { relid, per_timeline: pg_sys::get_attnum(relid, c"timeline".as_ptr()) > 0 }
    };
    KNOWN_CLOCK.set(Some((schema, clock)));
    clock
}

/// Whether rows written to `relid` are stamped, and since when: Some when it has
/// conversation_stamp as a BEFORE INSERT OR UPDATE row trigger that fires ALWAYS (replication
/// apply and session_replication_role = replica too) for every row and every column (no WHEN
/// condition, no UPDATE OF list). Its departures are recorded when that trigger fires on DELETE
/// too (0.8.0) and, for the table itself (`whole_table`: not a partition or a Citus shard),
/// conversation_stamp is its BEFORE TRUNCATE statement trigger, ALWAYS as well (None without
/// it). None otherwise. (Positions would miss the changes of a table without them, so the list
/// refuses to hand any out.) Whether the database has somewhere to record departures is the
/// list's to check (departures.rs): a table can be renamed without invalidating this.
///
/// A trigger disabled and enabled again (pg_restore --disable-triggers, a maintenance window)
/// let writes through unstamped meanwhile, and its catalog row was last written by the
/// transaction that enabled it: a position that did not see that transaction may lack those
/// writes, and the list refuses it. So is a position older than the trigger itself (the extension
/// dropped and created again, conversation_partition's new table): its rows may be gone. 0 when
/// the trigger's row is frozen (older than every snapshot).
pub fn stamped_since(relid: pg_sys::Oid, schema: pg_sys::Oid, whole_table: bool) -> Option<Stamped> {
    let stamp = pg_sys::TRIGGER_TYPE_ROW | pg_sys::TRIGGER_TYPE_BEFORE | pg_sys::TRIGGER_TYPE_INSERT | pg_sys::TRIGGER_TYPE_UPDATE;
    let Some(since) = trigger_since(relid, schema, stamp | pg_sys::TRIGGER_TYPE_DELETE) else {
        return trigger_since(relid, schema, stamp).map(|since| Stamped { since, departures: false });
    };
    if !whole_table {
        return Some(Stamped { since, departures: true });
    }
    let truncate = trigger_since(relid, schema, pg_sys::TRIGGER_TYPE_BEFORE | pg_sys::TRIGGER_TYPE_TRUNCATE)?;
    Some(Stamped { since: since.max(truncate), departures: true })
}

/// How a relation's rows are stamped (`stamped_since`).
#[derive(Clone, Copy)]
pub struct Stamped {
    /// The transaction that last made or enabled a stamp trigger (0: frozen).
    pub since: u64,
    /// Whether its departures are recorded (0.8.0's trigger fires on DELETE, and the table's
    /// own on TRUNCATE); not before 0.8.0's update.
    pub departures: bool,
}

/// The transaction that last wrote the catalog row of `relid`'s trigger running
/// conversation_stamp with at least the type bits `wanted` (row or statement level as `wanted`
/// says), ALWAYS, for every row and column (0 when frozen); None when there is none.
fn trigger_since(relid: pg_sys::Oid, schema: pg_sys::Oid, wanted: u32) -> Option<u64> {
    // SAFETY: the relation is locked by the caller's statements already; its trigger descriptor
    // is read while it is open.
    unsafe {
        let relation = pg_sys::relation_open(relid, pg_sys::AccessShareLock as _);
        let triggers = (*relation).trigdesc;
        let all =
            if triggers.is_null() { &[][..] } else { std::slice::from_raw_parts((*triggers).triggers, (*triggers).numtriggers as usize) };
        let found = all
            .iter()
            .find(|trigger| {
                let tgtype = trigger.tgtype as u32;
                tgtype & wanted == wanted
                    && tgtype & pg_sys::TRIGGER_TYPE_ROW == wanted & pg_sys::TRIGGER_TYPE_ROW
                    && trigger.tgqual.is_null()
                    && trigger.tgnattr == 0
                    && pg_sys::get_func_namespace(trigger.tgfoid) == schema
                    && CStr::from_ptr(pg_sys::get_func_name(trigger.tgfoid)) == c"conversation_stamp"
                    // (Enabled for ordinary sessions only was enough before 0.7.0's update.)
                    && (trigger.tgenabled as u8 == pg_sys::TRIGGER_FIRES_ALWAYS
                        || (trigger.tgenabled as u8 == pg_sys::TRIGGER_FIRES_ON_ORIGIN && !clock(schema).per_timeline))
            })
            .map(|trigger| trigger.tgoid);
        pg_sys::relation_close(relation, pg_sys::NoLock as _);
        let written = written_by(pg_sys::TriggerRelationId, pg_sys::TriggerOidIndexId, pg_sys::Anum_pg_trigger_oid, found?);
        Some(written.map_or(0, |id| xid::full_xid(id, pg_sys::ReadNextFullTransactionId().value)))
    }
}

/// The transaction that wrote the catalog row of `oid` (None: frozen, or not found).
///
/// # Safety
/// `catalog` is a system catalog whose unique index `index` is on its oid column `column`.
unsafe fn written_by(catalog: pg_sys::Oid, index: u32, column: u32, oid: pg_sys::Oid) -> Option<u32> {
    let mut key: pg_sys::ScanKeyData = std::mem::zeroed();
    pg_sys::ScanKeyInit(
        &mut key,
        column as _,
        pg_sys::BTEqualStrategyNumber as _,
        pg_sys::RegProcedure::from(pg_sys::F_OIDEQ),
        pg_sys::Datum::from(oid),
    );
    let table = pg_sys::table_open(catalog, pg_sys::AccessShareLock as _);
    let scan = pg_sys::systable_beginscan(table, pg_sys::Oid::from(index), true, std::ptr::null_mut(), 1, &mut key);
    let tuple = pg_sys::systable_getnext(scan);
    let xmin = (!tuple.is_null()).then(|| {
        let header = &*(*tuple).t_data;
        let frozen = u32::from(header.t_infomask) & pg_sys::HEAP_XMIN_FROZEN == pg_sys::HEAP_XMIN_FROZEN;
        let xmin = header.t_choice.t_heap.t_xmin.into_inner();
        (!frozen && xmin >= pg_sys::FirstNormalTransactionId.into_inner()).then_some(xmin)
    });
    pg_sys::systable_endscan(scan);
    pg_sys::table_close(table, pg_sys::AccessShareLock as _);
    xmin.flatten()
}

/// The table, locked and open for this call, its privileges checked; closed when dropped (the
/// lock stays to the end of the transaction).
pub struct OpenTable {
    pub table: Rc<Table>,
    pub relation: pg_sys::Relation,
}

impl OpenTable {
    /// Locks the conversation table of `schema` (AccessShareLock, to the end of the transaction)
    /// and checks that the caller may read it: SELECT privilege, and no row level security policy
    /// in force (the functions refuse rather than bypass one).
    pub(in crate::relation) fn open(schema: pg_sys::Oid) -> OpenTable {
        register_callbacks();
        if let Some(table) = known().filter(|table| table.schema == schema) {
            // SAFETY: locks by OID first; NULL if the relation is gone.
            let relation = unsafe { pg_sys::try_table_open(table.relid, pg_sys::AccessShareLock as _) };
            if !relation.is_null() {
                // The lock processed pending invalidations: the entry is current if still known.
                if known().is_some_and(|now| Rc::ptr_eq(&now, &table)) {
                    return OpenTable::checked(table, relation);
                }
                // SAFETY: opened above; the lock stays, harmlessly, to the end of the transaction.
                unsafe { pg_sys::table_close(relation, pg_sys::NoLock as _) };
            }
        }
        let relation = lock_by_name(schema);
        // SAFETY: `relation` is open and locked.
        let table = Rc::new(unsafe { Table::inspect(schema, relation) });
        KNOWN.with(|known| known.set(Some(table.clone())));
        OpenTable::checked(table, relation)
    }

    fn checked(table: Rc<Table>, relation: pg_sys::Relation) -> OpenTable {
        // SAFETY: catalog checks on the open relation.
        unsafe {
            let acl = pg_sys::pg_class_aclcheck(table.relid, pg_sys::GetUserId(), pg_sys::ACL_SELECT as _);
            if acl != pg_sys::AclResult::ACLCHECK_OK {
                pg_sys::aclcheck_error(acl, pg_sys::ObjectType::OBJECT_TABLE, c"conversation".as_ptr());
            }
            if (*(*relation).rd_rel).relrowsecurity
                && pg_sys::check_enable_rls(table.relid, pg_sys::InvalidOid, false) == pg_sys::CheckEnableRlsResult::RLS_ENABLED as i32
            {
                errors::row_security_unsupported();
            }
        }
        OpenTable { table, relation }
    }

    /// Where the row of `key` lives (a partition or shard it opens is closed when the placement
    /// is dropped).
    pub fn placement(&self, key: &ConversationKey<'_>) -> Placement {
        match &self.table.layout {
            Layout::Plain => Placement::Direct { heap: self.relation, index: self.table.key_index, leaf: false },
            Layout::Queried => Placement::Query,
            // SAFETY: the partitioned table is open and locked.
            Layout::HashPartitioned(routing) => unsafe { self.hash_partition_of(routing, key) },
            Layout::Distributed => match citus::local_shard(self.table.relid, self.table.schema, text_datum(key.uid)) {
                // SAFETY: the shard exists on this node; locked as the table is.
                Some(shard) => unsafe { direct(shard) },
                None => Placement::Query,
            },
        }
    }

    /// The relation that holds the rows of `uid` when a statement run here reads them in this
    /// node's own transaction: the table on one server; on Citus, the uid's shard, only on the
    /// node that holds it (None elsewhere).
    pub fn relation_holding(&self, uid: &[u8]) -> Option<pg_sys::Oid> {
        match &self.table.layout {
            Layout::Distributed => citus::local_shard(self.table.relid, self.table.schema, text_datum(uid)),
            _ => (!self.table.distributed).then_some(self.table.relid),
        }
    }

    /// Whether the rows of `relid` (the table, or a Citus shard of it) are stamped, and since
    /// which transaction (`stamp::stamped_since`; the latest of its partitions').
    pub fn stamped_since(&self, relid: pg_sys::Oid) -> Option<Stamped> {
        #[cfg(any(test, feature = "pg_test"))]
        if for_tests::STAMP_TRIGGER_FROZEN.get() {
            return self.stamped_since_as_found(relid).map(|stamped| Stamped { since: 0, ..stamped });
        }
        self.stamped_since_as_found(relid)
    }

    fn stamped_since_as_found(&self, relid: pg_sys::Oid) -> Option<Stamped> {
        if relid != self.table.relid {
            return stamped_since(relid, self.table.schema, false); // a Citus shard
        }
        if let Some(stamped) = self.table.stamped.get() {
            return stamped;
        }
        // A partitioned table's rows live in its leaves, each with a trigger of its own.
        // The table's truncation is recorded by its own trigger (a partition truncated alone is
        // not: docs/changing-the-table.md).
        let table = stamped_since(relid, self.table.schema, true);
        let stamped = if self.table.leaves.is_empty() {
            table
        } else {
            // Every leaf stamped as the table is: a leaf whose trigger does not record deletes
            // would lose its departures.
            self.table.leaves.iter().try_fold(table?, |latest, &leaf| {
                stamped_since(pg_sys::Oid::from_u32(leaf), self.table.schema, false)
                    .filter(|stamped| stamped.departures == latest.departures)
                    .map(|stamped| Stamped { since: stamped.since.max(latest.since), departures: latest.departures })
            })
        };
        self.table.stamped.set(Some(stamped));
        stamped
    }

    /// The leaf partition PostgreSQL would route `key` to, as ExecFindPartition does for hash
    /// partitioning: the partition key's hash, modulo the greatest modulus, indexes the bound.
    ///
    /// # Safety
    /// `self.relation` is the open, locked partitioned table that `routing` was read from.
    unsafe fn hash_partition_of(&self, routing: &HashRouting, key: &ConversationKey<'_>) -> Placement {
        let partitions = pg_sys::RelationGetPartitionDesc(self.relation, true);
        if partitions.is_null() || (*partitions).nparts == 0 {
            return Placement::Query;
        }
        let bound = (*partitions).boundinfo;
        let mut values: Vec<pg_sys::Datum> = routing
            .fields
            .iter()
            .map(|field| match field {
                KeyField::Uid => text_datum(key.uid),
                KeyField::ChannelId => text_datum(key.channel_id),
                KeyField::ChannelType => self.table.channel_type_datum(key.channel_type),
            })
            .collect();
        let mut nulls = vec![false; values.len()];
        let hash = pg_sys::compute_partition_hash_value(
            values.len() as i32,
            routing.functions.as_ptr().cast_mut(),
            routing.collations.as_ptr().cast_mut(),
            values.as_mut_ptr(),
            nulls.as_mut_ptr(),
        );
        let modulus = (*bound).nindexes as u64;
        let part = *(*bound).indexes.add((hash % modulus) as usize);
        // No partition for this remainder (the INSERT will say so), or one partitioned again.
        if part < 0 || !*(*partitions).is_leaf.add(part as usize) {
            return Placement::Query;
        }
        direct(*(*partitions).oids.add(part as usize))
    }
}

impl Drop for OpenTable {
    fn drop(&mut self) {
        // While unwinding from an ERROR, PostgreSQL may not be called; the abort that follows
        // releases the relation with the resource owner.
        if !std::thread::panicking() {
            // SAFETY: opened by `open`; the lock stays to the end of the transaction.
            unsafe { pg_sys::table_close(self.relation, pg_sys::NoLock as _) };
        }
    }
}

/// A placement in the relation `relid` (a partition or a shard), opened and locked (AccessShareLock,
/// as the executor locks the partitions it reads), probed through its own primary key.
///
/// # Safety
/// `relid` is a relation that exists (a partition or shard of the table, found under its lock).
unsafe fn direct(relid: pg_sys::Oid) -> Placement {
    let leaf = pg_sys::table_open(relid, pg_sys::AccessShareLock as _);
    let index = primary_key(leaf);
    if index == pg_sys::InvalidOid {
        pg_sys::table_close(leaf, pg_sys::NoLock as _);
        return Placement::Query;
    }
    Placement::Direct { heap: leaf, index, leaf: true }
}

/// Finds the table by name in `schema`, locking it before the name is trusted (PostgreSQL's
/// RangeVarGetRelidExtended retries if the name moved to another relation while it waited).
fn lock_by_name(schema: pg_sys::Oid) -> pg_sys::Relation {
    // SAFETY: catalog lookups; the RangeVar and names are palloc'd in the call's context.
    unsafe {
        let schema_name = pg_sys::get_namespace_name(schema);
        if schema_name.is_null() {
            errors::extension_dropped();
        }
        let range = pg_sys::makeRangeVar(schema_name, pg_sys::pstrdup(c"conversation".as_ptr()), -1);
        let relid = pg_sys::RangeVarGetRelidExtended(
            range,
            pg_sys::AccessShareLock as _,
            pg_sys::RVROption::RVR_MISSING_OK,
            None,
            std::ptr::null_mut(),
        );
        if relid == pg_sys::InvalidOid {
            errors::table_missing(&CStr::from_ptr(schema_name).to_string_lossy());
        }
        pg_sys::table_open(relid, pg_sys::NoLock as _)
    }
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
        match self.channel_type_width {
            IntWidth::Two => datum.value() as i16,
            IntWidth::Four => datum.value() as i32 as i16,
            IntWidth::Eight => datum.value() as i64 as i16,
        }
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
    /// `relation` is the table of `schema`, open and locked (`lock_by_name`).
    unsafe fn inspect(schema: pg_sys::Oid, relation: pg_sys::Relation) -> Table {
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
        let names = Names { columns, ..Names::of_schema(schema) };
        let has_hidden = pg_sys::get_attnum(relid, c"hidden".as_ptr()) > 0;
        let stamped = Cell::new(None);
        let leaves = if relkind == pg_sys::RELKIND_PARTITIONED_TABLE { leaf_partitions(relation) } else { Vec::new() };
        let list_indexes = if matches!(layout, Layout::Plain) { list_indexes(relation) } else { None };
        Table {
            schema,
            relid,
            names,
            key_index,
            channel_index,
            channel_type_width,
            distributed,
            has_hidden,
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

/// The names statements are written with (kept.rs), quoted.
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
}

impl Names {
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
            }
        }
    }
}

/// The relation's primary key index (an immediate one: ON CONFLICT cannot use a deferrable key),
/// or InvalidOid. PostgreSQL 18 asks whether a deferrable one would do.
///
/// # Safety
/// `relation` is an open relation.
unsafe fn primary_key(relation: pg_sys::Relation) -> pg_sys::Oid {
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
    Some(ListIndexes {
        unread: found[0],
        read: found[1],
        hidden: found[2],
        version: typed(c"version", pg_sys::INT8OID)?,
        updated_at: typed(c"updated_at", pg_sys::TIMESTAMPTZOID)?,
        id: typed(c"id", pg_sys::INT8OID)?,
        unread_count: typed(c"unread_count", pg_sys::INT4OID)?,
    })
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

/// What the in-server tests need to set up and nothing else may do: rows "written long ago" (as
/// written before 0.5.0, or with a version of an old transaction), and a stamp trigger older than
/// any position (as it is once its catalog row is frozen).
#[cfg(any(test, feature = "pg_test"))]
pub mod for_tests {
    use std::cell::Cell;

    thread_local! {
        pub static ROWS_AS_GIVEN: Cell<bool> = const { Cell::new(false) };
        pub static STAMP_TRIGGER_FROZEN: Cell<bool> = const { Cell::new(false) };
    }

    fn with<R>(flag: &'static std::thread::LocalKey<Cell<bool>>, body: impl FnOnce() -> R) -> R {
        flag.set(true);
        let result = body();
        flag.set(false);
        result
    }

    /// Runs `body` with the trigger leaving rows as they are written.
    pub fn rows_as_given<R>(body: impl FnOnce() -> R) -> R {
        with(&ROWS_AS_GIVEN, body)
    }

    /// Runs `body` with the stamp trigger taken as older than every position.
    pub fn stamp_trigger_frozen<R>(body: impl FnOnce() -> R) -> R {
        with(&STAMP_TRIGGER_FROZEN, body)
    }
}
