//! What this backend remembers of the catalog (a function's schema, the table, the clock, the
//! departure table, the channel table) is forgotten when PostgreSQL says that what it was read
//! from changed: a relcache or syscache invalidation callback. This is the one way such a
//! callback is registered, by a cache about to be filled, before it reads what it will remember;
//! never on a path that finds the cache filled.
//!
//! PostgreSQL keeps a few slots per backend for these callbacks (ten for the relcache), shared
//! by every library loaded, and never frees one: Citus takes several, and a backend that runs out
//! ends with FATAL. So the library takes one relcache slot, whatever its caches: the callbacks
//! are kept here and called in turn. (Syscache callbacks are per cache, and there are few.)

use std::cell::RefCell;

use pgrx::pg_sys;

/// A relcache invalidation callback: the relation's OID, or InvalidOid for every relation.
pub type RelationCallback = unsafe extern "C-unwind" fn(pg_sys::Datum, pg_sys::Oid);

/// A syscache invalidation callback: the cache's id and the hash of the entry.
pub type SyscacheCallback = unsafe extern "C-unwind" fn(pg_sys::Datum, i32, u32);

thread_local! {
    /// The relcache callbacks of the library's caches, called by `relation_changed`.
    static RELATION_CALLBACKS: RefCell<Vec<RelationCallback>> = const { RefCell::new(Vec::new()) };
    /// The syscache callbacks registered so far, by address.
    static SYSCACHE_CALLBACKS: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

/// Calls `callback` on every relcache invalidation from now on in this backend.
pub fn on_relation_change(callback: RelationCallback) {
    let first = RELATION_CALLBACKS.with_borrow_mut(|callbacks| {
        let first = callbacks.is_empty();
        if !callbacks.iter().any(|&known| known as usize == callback as usize) {
            callbacks.push(callback);
        }
        first
    });
    if first {
        // SAFETY: a function that lives as long as the library, registered once per backend.
        unsafe { pg_sys::CacheRegisterRelcacheCallback(Some(relation_changed), pg_sys::Datum::from(0)) };
    }
}

/// The library's one relcache callback: each cache's in turn.
///
/// # Safety
/// Called by PostgreSQL as a relcache invalidation callback.
unsafe extern "C-unwind" fn relation_changed(arg: pg_sys::Datum, relid: pg_sys::Oid) {
    // A copy: a callback only forgets, but must not find the list borrowed if it ever registers.
    let callbacks = RELATION_CALLBACKS.with_borrow(|callbacks| callbacks.clone());
    for callback in callbacks {
        callback(arg, relid);
    }
}

/// Calls `callback` on every invalidation of the syscache `cache` from now on in this backend.
pub fn on_syscache_change(cache: pg_sys::SysCacheIdentifier::Type, callback: SyscacheCallback) {
    let first = SYSCACHE_CALLBACKS.with_borrow_mut(|registered| {
        let first = !registered.contains(&(callback as usize));
        if first {
            registered.push(callback as usize);
        }
        first
    });
    if first {
        // SAFETY: a function that lives as long as the library, registered once.
        unsafe { pg_sys::CacheRegisterSyscacheCallback(cache as i32, Some(callback), pg_sys::Datum::from(0)) };
    }
}
