//! The one way a backend-local cache learns that what it remembers may be stale: a callback
//! registered with PostgreSQL's relcache or syscache invalidations, once per backend (PostgreSQL
//! has a fixed number of callback slots and no way to unregister, and a callback registered twice
//! runs twice). A cache registers its callback before it first remembers anything.

use std::cell::RefCell;

use pgrx::pg_sys;

/// What a relcache invalidation calls: the relation's OID, or InvalidOid for every relation.
pub type RelationCallback = unsafe extern "C-unwind" fn(pg_sys::Datum, pg_sys::Oid);
/// What a syscache invalidation calls: the cache's id and the changed row's hash (0: all rows).
pub type CatalogCallback = unsafe extern "C-unwind" fn(pg_sys::Datum, i32, u32);

thread_local! {
    /// The callbacks registered by this backend, by address.
    static REGISTERED: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

/// Whether `callback` is new to this backend (and from now on, known).
fn first_time(callback: usize) -> bool {
    REGISTERED.with_borrow_mut(|registered| {
        let new = !registered.contains(&callback);
        if new {
            registered.push(callback);
        }
        new
    })
}

/// Calls `callback` on every relcache invalidation from now on (registered once per backend).
pub fn on_relation_change(callback: RelationCallback) {
    if first_time(callback as usize) {
        // SAFETY: a callback with the signature PostgreSQL calls, for the life of this backend.
        unsafe { pg_sys::CacheRegisterRelcacheCallback(Some(callback), pg_sys::Datum::from(0)) };
    }
}

/// Calls `callback` on every invalidation of syscache `cache` from now on (registered once per
/// backend).
pub fn on_catalog_change(cache: pg_sys::SysCacheIdentifier::Type, callback: CatalogCallback) {
    if first_time(callback as usize) {
        // SAFETY: a callback with the signature PostgreSQL calls, for the life of this backend.
        unsafe { pg_sys::CacheRegisterSyscacheCallback(cache as i32, Some(callback), pg_sys::Datum::from(0)) };
    }
}
