//! Citus: which shard holds a key, and whether this node has it, asked of Citus itself.
//!
//! Citus exports its metadata functions from citus.so; they are looked up there by name the first
//! time a backend meets a distributed conversation table (no Citus headers, no copy of its hashing:
//! every Citus value stays an opaque pointer handed from one Citus function to the next). The
//! answer is asked again on every call: Citus's cache entries live for one statement, and a shard
//! can move.
//!
//! These are Citus's internal functions, not a published API: the ones used here are exported
//! from Citus 13.2.2 with the signatures below (and older lines had the same). If one is missing,
//! the table is treated as one to query through SQL, which Citus routes.

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

/// The API, when the citus extension is in this database (Citus then is preloaded, as it
/// requires, so looking its functions up does not load it).
fn with_api<R>(f: impl FnOnce(&Api) -> R) -> Option<R> {
    // SAFETY: a catalog lookup by name; InvalidOid when missing.
    if unsafe { pg_sys::get_extension_oid(c"citus".as_ptr(), true) } == pg_sys::InvalidOid {
        return None;
    }
    API.with(|api| api.get_or_init(load).as_ref().map(f))
}

fn load() -> Option<Api> {
    let symbol = |name: &CStr| -> Option<*mut c_void> {
        // SAFETY: looks a symbol up in citus.so (already loaded); NULL when it is not exported.
        let found = unsafe {
            pg_sys::load_external_function(c"$libdir/citus".as_ptr(), name.as_ptr(), false, std::ptr::null_mut())
        };
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
