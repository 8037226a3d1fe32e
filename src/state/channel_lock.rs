//! The lock of a channel's mode (mode.rs): held exclusively by a mode change, shared by every
//! message to the channel, to the end of the transaction (a message's writes must not meet a
//! change half done, and a change must not meet a message half done).
//!
//! The same lock as SQL's `pg_advisory_xact_lock(CHANNEL_LOCK_CLASS_ID, hash)` and
//! `pg_advisory_xact_lock_shared(...)`, with a class id of its own, apart from the key locks
//! (create/lock.rs) and from an application's bigint advisory locks. Transaction-scoped: an error
//! or a PgBouncer transaction-pooled client never leaves it behind. One per channel a transaction
//! writes messages to: a transaction of many channels' messages takes as many lock-table entries.

use pgrx::pg_sys;

use crate::input::key::fnv1a;

/// "Chan" in ASCII. Visible in pg_locks as classid for locktype 'advisory' with objsubid 2.
pub const CHANNEL_LOCK_CLASS_ID: i32 = 0x4368_616e;

/// For a mode change: the channel's lock, exclusively (waits for the messages in flight).
pub fn exclusive(channel_id: &[u8], channel_type: i16) {
    acquire(channel_id, channel_type, pg_sys::ExclusiveLock, false);
}

/// For a message: the channel's lock, shared (waits for a mode change in flight).
pub fn shared(channel_id: &[u8], channel_type: i16) {
    acquire(channel_id, channel_type, pg_sys::ShareLock, false);
}

/// For a message that would change the mode (mode.rs): the channel's lock, exclusively, if no
/// other transaction holds it (this one may hold it shared); false, without waiting, if one does.
pub fn try_exclusive(channel_id: &[u8], channel_type: i16) -> bool {
    acquire(channel_id, channel_type, pg_sys::ExclusiveLock, true)
}

/// The lock's second key, hashed as the key locks' are (key.rs), over the channel id, a NUL and
/// the channel type's low byte: stable across releases, so a DBA can find it in pg_locks.
pub fn channel_lock_hash(channel_id: &[u8], channel_type: i16) -> i32 {
    fnv1a(channel_id.iter().copied().chain(std::iter::once(0)).chain(std::iter::once(channel_type as u8)))
}

/// Takes the lock in `mode`, waiting for it unless `or_not` (then false if another holds it).
fn acquire(channel_id: &[u8], channel_type: i16, mode: u32, or_not: bool) -> bool {
    let tag = pg_sys::LOCKTAG {
        // SAFETY: MyDatabaseId is set for the life of a backend connected to a database.
        locktag_field1: unsafe { pg_sys::MyDatabaseId }.to_u32(),
        locktag_field2: CHANNEL_LOCK_CLASS_ID as u32,
        locktag_field3: channel_lock_hash(channel_id, channel_type) as u32,
        // 2 marks the two-int4 form, as SET_LOCKTAG_INT32 does.
        locktag_field4: 2,
        locktag_type: pg_sys::LockTagType::LOCKTAG_ADVISORY as u8,
        locktag_lockmethodid: pg_sys::USER_LOCKMETHOD as u8,
    };
    // SAFETY: a fully initialized tag; sessionLock=false ties it to the transaction, which
    // releases it at its end (or abort). Waits as any heavyweight lock: lock_timeout,
    // statement_timeout, cancel and the deadlock detector apply.
    let acquired = unsafe { pg_sys::LockAcquire(&tag, mode as pg_sys::LOCKMODE, false, or_not) };
    acquired != pg_sys::LockAcquireResult::LOCKACQUIRE_NOT_AVAIL
}
