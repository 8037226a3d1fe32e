//! Transaction ids as full (64-bit) ids: what positions count and the stamp writes, whatever the
//! epoch.

use pgrx::pg_sys;

/// A 32-bit transaction id (of a snapshot, of a catalog row that is not frozen) as a full one,
/// given the next full id read after it was taken: it is from next's epoch or the one before.
pub fn full_xid(xid: u32, next: u64) -> u64 {
    let xid = u64::from(xid);
    if xid < u64::from(pg_sys::FirstNormalTransactionId.into_inner()) {
        return xid; // a special id: epoch 0
    }
    let epoch = next >> 32;
    if xid > (next & 0xFFFF_FFFF) && epoch > 0 {
        ((epoch - 1) << 32) | xid
    } else {
        (epoch << 32) | xid
    }
}

#[cfg(test)]
mod tests {
    use super::full_xid;

    #[test]
    fn widens_ids_of_this_epoch_and_the_last() {
        let next = (5 << 32) | 1000;
        assert_eq!(full_xid(999, next), (5 << 32) | 999);
        assert_eq!(full_xid(1000, next), (5 << 32) | 1000);
        assert_eq!(full_xid(4_000_000_000, next), (4 << 32) | 4_000_000_000);
        assert_eq!(full_xid(2, next), 2);
        assert_eq!(full_xid(500, 1000), 500);
    }
}
