//! The advisory lock that serializes creators of one key.
//!
//! It is the same lock as SQL's `pg_advisory_xact_lock(LOCK_CLASS_ID, key.lock_hash())`: the
//! two-int4 form, whose first key is a class id of this extension's own, so it cannot collide with
//! an application's bigint advisory locks (those use a different tag field). It is taken
//! transaction-scoped, never session-scoped, so an error or a PgBouncer transaction-pooled client
//! can never leave it behind: abort releases it.
//!
//! Unlike `pg_advisory_xact_lock`, we release it as soon as our insert is done instead of at
//! commit. Holding it to commit would buy nothing (our inserted row is then already in the unique
//! index, where a later creator waits for our transaction anyway) and would pin one shared
//! lock-table entry per created key: 100,000 creations in one transaction would exhaust
//! max_locks_per_transaction. So a backend holds at most one of these at any moment.

use pgrx::pg_sys;

use crate::glue::call::sql_function;

/// "Conv" in ASCII. Visible in pg_locks as classid for locktype 'advisory' with objsubid 2.
pub const LOCK_CLASS_ID: i32 = 0x436f_6e76;

/// Holds the key's advisory lock; releases it when dropped on the normal path. When dropped while
/// unwinding from an error, it leaves the release to the (sub)transaction abort that follows.
pub struct KeyLock {
    tag: pg_sys::LOCKTAG,
    /// Whether another backend held the lock when we asked: then a creator may just have
    /// inserted this key, and a re-check is worth its index probe.
    pub waited: bool,
}

impl KeyLock {
    /// Waits for the lock like any heavyweight lock: lock_timeout, statement_timeout, cancel and
    /// the deadlock detector all apply.
    pub fn acquire(lock_hash: i32) -> KeyLock {
        let tag = pg_sys::LOCKTAG {
            // SAFETY: MyDatabaseId is set for the life of a backend connected to a database.
            locktag_field1: unsafe { pg_sys::MyDatabaseId }.to_u32(),
            locktag_field2: LOCK_CLASS_ID as u32,
            locktag_field3: lock_hash as u32,
            // 2 marks the two-int4 form, as SET_LOCKTAG_INT32 does.
            locktag_field4: 2,
            locktag_type: pg_sys::LockTagType::LOCKTAG_ADVISORY as u8,
            locktag_lockmethodid: pg_sys::USER_LOCKMETHOD as u8,
        };
        let mode = pg_sys::ExclusiveLock as pg_sys::LOCKMODE;
        // SAFETY: a fully initialized tag; sessionLock=false ties it to the current resource
        // owner. The first call does not wait and reports NOT_AVAIL when the lock is held; the
        // second waits and either returns holding the lock or raises an ERROR.
        let waited = unsafe {
            let at_once = pg_sys::LockAcquire(&tag, mode, false, true);
            if at_once == pg_sys::LockAcquireResult::LOCKACQUIRE_NOT_AVAIL {
                pg_sys::LockAcquire(&tag, mode, false, false);
                true
            } else {
                false
            }
        };
        KeyLock { tag, waited }
    }
}

impl Drop for KeyLock {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        // SAFETY: we hold this lock, taken with the same tag, mode and (transaction) scope.
        unsafe {
            pg_sys::LockRelease(&self.tag, pg_sys::ExclusiveLock as pg_sys::LOCKMODE, false);
        }
    }
}

sql_function! {
    /// conversation_lock_key(uid, channel_id, channel_type): the advisory lock id
    /// get_or_create_conversation takes while creating this key: find it in pg_locks as locktype
    /// 'advisory', classid 1131376246, objid = this value (as oid), objsubid 2. STRICT.
    fn conversation_lock_key(call) {
        pg_sys::Datum::from(call.key(0).lock_hash())
    }
}
