//! What this backend remembers of the catalog (a function's schema, the table, the clock, the
//! departure table) is
//! forgotten when PostgreSQL says that what it was read from changed: a relcache or syscache
//! invalidation callback. This is the one way such a callback is registered: once per backend
//! (PostgreSQL keeps a handful of slots per backend and never frees one), by a cache about to be
//! filled, before it reads what it will remember; never on a path that finds the cache filled.

use std::cell::RefCell;

use pgrx::pg_sys;

/// A relcache invalidation callback: the relation's OID, or InvalidOid for every relation.
pub type RelationCallback = unsafe extern "C-unwind" fn(pg_sys::Datum, pg_sys::Oid);

/// A syscache invalidation callback: the cache's id and the hash of the entry.
pub type SyscacheCallback = unsafe extern "C-unwind" fn(pg_sys::Datum, i32, u32);

thread_local! {
    /// The callbacks registered so far, by address.
    static REGISTERED: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

/// Whether `address` is registered now for the first time (and so must be handed to PostgreSQL).
fn first_time(address: usize) -> bool {
    REGISTERED.with_borrow_mut(|registered| {
        let first = !registered.contains(&address);
        if first {
            registered.push(address);
        }
        first
    })
}

/// Calls `callback` on every relcache invalidation from now on in this backend.
pub fn on_relation_change(callback: RelationCallback) {
    if first_time(callback as usize) {
        // SAFETY: a function that lives as long as the library, registered once.
        unsafe { pg_sys::CacheRegisterRelcacheCallback(Some(callback), pg_sys::Datum::from(0)) };
    }
}

/// Calls `callback` on every invalidation of the syscache `cache` from now on in this backend.
pub fn on_syscache_change(cache: pg_sys::SysCacheIdentifier::Type, callback: SyscacheCallback) {
    if first_time(callback as usize) {
        // SAFETY: a function that lives as long as the library, registered once.
        unsafe { pg_sys::CacheRegisterSyscacheCallback(cache as i32, Some(callback), pg_sys::Datum::from(0)) };
    }
}
