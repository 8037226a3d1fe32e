//! Version arithmetic: what conversation_stamp (stamp.rs) writes into column `version`, and what
//! a position (position.rs) compares it with. version = generation * 2^48 + the full id of the
//! writing transaction; stamp.rs says why.

/// Bits of a version that hold the transaction id: 2^48 transactions is about 90 years at
/// 100,000 a second; the generation takes the 15 bits above.
const XID_BITS: u32 = 48;
pub const XID_MASK: u64 = (1 << XID_BITS) - 1;
pub const MAX_GENERATION: i64 = 32767;

/// The version a transaction id of this cluster's is stamped with, in generation `generation`.
pub fn version_of(generation: i64, xid: u64) -> i64 {
    (generation << XID_BITS) | (xid.min(XID_MASK) as i64)
}

/// A version's generation and transaction id.
pub fn parts(version: i64) -> (i64, u64) {
    (version >> XID_BITS, version as u64 & XID_MASK)
}
