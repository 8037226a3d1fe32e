//! Citus: which shard holds a key, and whether this node has it, asked of Citus itself.
//!
//! Citus exports its metadata functions from citus.so; they are looked up there by name the first
//! time a backend meets a distributed conversation table (no Citus headers, no copy of its hashing:
//! every Citus value stays an opaque pointer handed from one Citus function to the next). The
//! answer is asked again on every call: Citus's cache entries live for one statement, and a shard
//! can move.
//!
//! These are Citus's internal functions, not a published API: the ones used here are exported
//! from Citus 13.2.2 on PostgreSQL 15 with the signatures below (and older lines had the same).
//!
//! Citus built for PostgreSQL 16 or later (Citus 14.0 on 18 here) exports none of them: PGXS
//! compiles every module there with `-fvisibility=hidden`, so only the functions SQL calls are
//! visible. There the same answers come from Citus's catalog and its SQL-callable functions, in
//! one statement prepared once per backend (`Catalog` below): the table's row of
//! `pg_dist_partition`, and the key's shard (`get_shard_id_for_distribution_column`) with a
//! placement in this node's group (`pg_dist_placement`, `pg_dist_local_group`), named as Citus
//! names it (`shard_name`). Citus's metadata functions read no distributed table, so the statement
//! runs no distributed query (nor one Citus logs).

use std::cell::OnceCell;
use std::ffi::{c_char, c_void, CStr};

use pgrx::pg_sys;

type CacheEntry = *mut c_void;
type ShardInterval = *mut c_void;

/// The functions of citus.so this module calls.
struct Api {
    is_citus_table: unsafe extern "C-unwind" fn(pg_sys::Oid) -> bool,
    partition_method: unsafe extern "C-unwind" fn(pg_sys::Oid) -> c_char,
    dist_partition_key: unsafe extern "C-unwind" fn(pg_sys::Oid) -> *mut pg_sys::Var,
    get_cache_entry: unsafe extern "C-unwind" fn(pg_sys::Oid) -> CacheEntry,
    find_shard_interval: unsafe extern "C-unwind" fn(pg_sys::Datum, CacheEntry) -> ShardInterval,
    shard_index: unsafe extern "C-unwind" fn(ShardInterval) -> i32,
    colocated_shard_id: unsafe extern "C-unwind" fn(pg_sys::Oid, i32) -> u64,
    local_group_id: unsafe extern "C-unwind" fn() -> i32,
    placements_on_group: unsafe extern "C-unwind" fn(u64, i32) -> *mut pg_sys::List,
    append_shard_id: unsafe extern "C-unwind" fn(*mut *mut c_char, u64),
}

thread_local! {
    static API: OnceCell<Option<Api>> = const { OnceCell::new() };
}

/// Whether the citus extension is in this database (Citus then is preloaded, as it requires).
fn citus_here() -> bool {
    // SAFETY: a catalog lookup by name; InvalidOid when missing.
    unsafe { pg_sys::get_extension_oid(c"citus".as_ptr(), true) != pg_sys::InvalidOid }
}

/// The API, when the citus extension is in this database and exports its internal functions
/// (Citus then is preloaded, so looking its functions up does not load it).
fn with_api<R>(f: impl FnOnce(&Api) -> R) -> Option<R> {
    if !citus_here() {
        return None;
    }
    API.with(|api| api.get_or_init(load).as_ref().map(f))
}

/// Whether Citus is here but its internal functions are not exported (PostgreSQL 16 and later).
fn catalog_only() -> bool {
    citus_here() && API.with(|api| api.get_or_init(load).is_none())
}

// Each transmute's target is the type of the Api field it fills, declared beside the field:
// spelling it again at each call would only let the two drift apart.
#[allow(clippy::missing_transmute_annotations)]
fn load() -> Option<Api> {
    let symbol = |name: &CStr| -> Option<*mut c_void> {
        // SAFETY: looks a symbol up in citus.so (already loaded); NULL when it is not exported.
        let found = unsafe { pg_sys::load_external_function(c"$libdir/citus".as_ptr(), name.as_ptr(), false, std::ptr::null_mut()) };
        (!found.is_null()).then_some(found)
    };
    // SAFETY: each symbol is the Citus function of the signature given in `Api`.
    unsafe {
        Some(Api {
            is_citus_table: std::mem::transmute(symbol(c"IsCitusTable")?),
            partition_method: std::mem::transmute(symbol(c"PartitionMethod")?),
            dist_partition_key: std::mem::transmute(symbol(c"DistPartitionKey")?),
            get_cache_entry: std::mem::transmute(symbol(c"GetCitusTableCacheEntry")?),
            find_shard_interval: std::mem::transmute(symbol(c"FindShardInterval")?),
            shard_index: std::mem::transmute(symbol(c"ShardIndex")?),
            colocated_shard_id: std::mem::transmute(symbol(c"ColocatedShardIdInRelation")?),
            local_group_id: std::mem::transmute(symbol(c"GetLocalGroupId")?),
            placements_on_group: std::mem::transmute(symbol(c"ActiveShardPlacementListOnGroup")?),
            append_shard_id: std::mem::transmute(symbol(c"AppendShardIdToName")?),
        })
    }
}

/// How Citus holds a table.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Distribution {
    /// Not a Citus table (or Citus is not here).
    Local,
    /// Hash-distributed by the column with this attribute number.
    ByHash(i16),
    /// Another kind of Citus table (reference, single-shard, range): only SQL finds its rows.
    Other,
}

pub fn distribution_of(relid: pg_sys::Oid) -> Distribution {
    if catalog_only() {
        return catalog::distribution_of(relid);
    }
    with_api(|api| {
        // SAFETY: Citus's metadata functions on an existing relation.
        unsafe {
            if !(api.is_citus_table)(relid) {
                return Distribution::Local;
            }
            let key = (api.dist_partition_key)(relid);
            if (api.partition_method)(relid) as u8 != b'h' || key.is_null() {
                return Distribution::Other;
            }
            Distribution::ByHash((*key).varattno)
        }
    })
    .unwrap_or(Distribution::Local)
}

/// The shard of `value` (a datum of the distribution column's type) of the hash-distributed
/// table `relid`, if it has a placement on this node: its relation OID here.
pub fn local_shard(relid: pg_sys::Oid, schema: pg_sys::Oid, value: pg_sys::Datum) -> Option<pg_sys::Oid> {
    if catalog_only() {
        return catalog::local_shard(relid, value);
    }
    with_api(|api| {
        // SAFETY: Citus's metadata functions, in the order its own code calls them; the shard
        // name is built by Citus's own naming (it hashes names that would be too long).
        unsafe {
            let entry = (api.get_cache_entry)(relid);
            let interval = (api.find_shard_interval)(value, entry);
            if interval.is_null() {
                return None;
            }
            let shard_id = (api.colocated_shard_id)(relid, (api.shard_index)(interval));
            if (api.placements_on_group)(shard_id, (api.local_group_id)()).is_null() {
                return None; // the shard lives on another node
            }
            let mut name = pg_sys::pstrdup(pg_sys::get_rel_name(relid));
            (api.append_shard_id)(&mut name, shard_id);
            let shard = pg_sys::get_relname_relid(name, schema);
            (shard != pg_sys::InvalidOid).then_some(shard)
        }
    })
    .flatten()
}

/// This node's placement of the reference table `relid` (one shard, a placement on every node
/// in the metadata): its relation OID here, or None where this node has none (a coordinator not
/// in the metadata: `citus_set_coordinator_host`) or the table is not a reference table. Asked of Citus's catalog on every version:
/// callers remember the answer until the table changes (channel_table.rs).
pub fn reference_placement(relid: pg_sys::Oid) -> Option<pg_sys::Oid> {
    if !citus_here() {
        return None;
    }
    catalog::reference_placement(relid)
}

/// The same answers from Citus's catalog and SQL-callable functions, where its internal functions
/// are hidden (see the top of this file).
mod catalog {
    use std::cell::Cell;
    use std::ffi::CStr;

    use pgrx::pg_sys;

    use super::Distribution;

    /// The table's distribution: its partition method and, when hash-distributed by a column, the
    /// column's attribute number.
    const DISTRIBUTION: &CStr = c"SELECT p.partmethod::pg_catalog.text,
        CASE WHEN p.partmethod = 'h' AND p.partkey IS NOT NULL THEN
            (SELECT a.attnum FROM pg_catalog.pg_attribute AS a WHERE a.attrelid = p.logicalrelid
             AND a.attname = pg_catalog.column_to_column_name(p.logicalrelid, p.partkey)) END
        FROM pg_catalog.pg_dist_partition AS p WHERE p.logicalrelid = $1";

    /// The key's shard, by Citus's hashing, if this node's group has a placement of it: the
    /// shard's relation here (NULL if the placement's table is missing). Its name schema-qualified
    /// (`skip_qualify_public` false, Citus 13.1 and later): found whatever search_path is in force,
    /// the caller's or the pinned `pg_catalog, pg_temp` of statements.rs (unqualified, a shard of
    /// `public` was not found there, and the key was read through SQL instead).
    const LOCAL_SHARD: &CStr = c"SELECT pg_catalog.to_regclass(pg_catalog.shard_name($1, p.shardid, false))::pg_catalog.oid
        FROM pg_catalog.pg_dist_placement AS p
        WHERE p.shardid = pg_catalog.get_shard_id_for_distribution_column($1, $2)
        AND p.groupid = (SELECT g.groupid FROM pg_catalog.pg_dist_local_group AS g)";

    /// The table's placement in this node's group, as LOCAL_SHARD names it, if it is a reference
    /// table (one shard, replicated to every node: partition method 'n', replication model 't';
    /// a table distributed otherwise has no copy of every row here).
    const REFERENCE_PLACEMENT: &CStr = c"SELECT pg_catalog.to_regclass(pg_catalog.shard_name($1, p.shardid, false))::pg_catalog.oid
        FROM pg_catalog.pg_dist_partition AS d
        JOIN pg_catalog.pg_dist_shard AS s ON s.logicalrelid = d.logicalrelid
        JOIN pg_catalog.pg_dist_placement AS p ON p.shardid = s.shardid
        WHERE d.logicalrelid = $1 AND d.partmethod = 'n' AND d.repmodel = 't'
        AND p.groupid = (SELECT g.groupid FROM pg_catalog.pg_dist_local_group AS g)";

    thread_local! {
        static PLANS: [Cell<pg_sys::SPIPlanPtr>; 3] = const { [const { Cell::new(std::ptr::null_mut()) }; 3] };
    }

    /// Runs one of the three statements (prepared and kept the first time) read-only, with the
    /// latest snapshot, and returns the first row's columns (None: no row).
    fn first_row<const N: usize>(
        which: usize,
        sql: &CStr,
        args: &mut [pg_sys::Datum],
        types: &mut [pg_sys::Oid],
    ) -> Option<[Option<pg_sys::Datum>; N]> {
        // SAFETY: SPI connected and finished here (nested in any caller's connection); the plan
        // is kept for the backend's life; the values read are by-value datums (oid, int2) or
        // copied out of SPI's memory before it ends (text, as a char).
        unsafe {
            if pg_sys::SPI_connect() != pg_sys::SPI_OK_CONNECT as i32 {
                pgrx::error!("pg_conversation: could not connect to SPI to read Citus's catalog");
            }
            let mut plan = PLANS.with(|plans| plans[which].get());
            if plan.is_null() {
                plan = pg_sys::SPI_prepare(sql.as_ptr(), types.len() as i32, types.as_mut_ptr());
                if plan.is_null() || pg_sys::SPI_keepplan(plan) != 0 {
                    pgrx::error!("pg_conversation: could not prepare a statement on Citus's catalog");
                }
                PLANS.with(|plans| plans[which].set(plan));
            }
            // Citus's metadata as Citus itself reads it (its cache follows every committed change
            // of the catalog): the latest committed state, whatever the caller's snapshot.
            pg_sys::PushActiveSnapshot(pg_sys::GetLatestSnapshot());
            let status = pg_sys::SPI_execute_plan(plan, args.as_mut_ptr(), std::ptr::null(), true, 1);
            pg_sys::PopActiveSnapshot();
            if status != pg_sys::SPI_OK_SELECT as i32 {
                pgrx::error!("pg_conversation: a statement on Citus's catalog failed ({status})");
            }
            let mut row = None;
            if pg_sys::SPI_processed > 0 {
                let table = pg_sys::SPI_tuptable;
                let tuple = *(*table).vals;
                let mut columns = [None; N];
                for (i, column) in columns.iter_mut().enumerate() {
                    let mut null = false;
                    let datum = pg_sys::SPI_getbinval(tuple, (*table).tupdesc, i as i32 + 1, &mut null);
                    *column = (!null).then_some(datum);
                }
                // The partition method, a text in SPI's memory: read it before SPI_finish.
                if which == 0 {
                    if let Some(method) = columns[0] {
                        let text = pg_sys::text_to_cstring(method.cast_mut_ptr());
                        columns[0] = Some(pg_sys::Datum::from(*text as u8 as usize));
                    }
                }
                row = Some(columns);
            }
            pg_sys::SPI_finish();
            row
        }
    }

    pub fn distribution_of(relid: pg_sys::Oid) -> Distribution {
        match first_row::<2>(0, DISTRIBUTION, &mut [pg_sys::Datum::from(relid)], &mut [pg_sys::OIDOID]) {
            None => Distribution::Local,
            Some([Some(method), Some(column)]) if method.value() as u8 == b'h' => Distribution::ByHash(column.value() as i16),
            Some(_) => Distribution::Other,
        }
    }

    pub fn local_shard(relid: pg_sys::Oid, value: pg_sys::Datum) -> Option<pg_sys::Oid> {
        relation(first_row::<1>(1, LOCAL_SHARD, &mut [pg_sys::Datum::from(relid), value], &mut [pg_sys::OIDOID, pg_sys::TEXTOID]))
    }

    pub fn reference_placement(relid: pg_sys::Oid) -> Option<pg_sys::Oid> {
        relation(first_row::<1>(2, REFERENCE_PLACEMENT, &mut [pg_sys::Datum::from(relid)], &mut [pg_sys::OIDOID]))
    }

    /// The placement's relation a statement's row names, if any.
    fn relation(row: Option<[Option<pg_sys::Datum>; 1]>) -> Option<pg_sys::Oid> {
        row.and_then(|[shard]| shard).map(|shard| pg_sys::Oid::from(shard.value() as u32)).filter(|shard| *shard != pg_sys::InvalidOid)
    }
}
