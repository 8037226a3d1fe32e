//! The conversation key (uid, channel_id, channel_type): its limits, its validation, and the
//! 32-bit hash that names its advisory lock.
//!
//! uid and channel_id are the bytes PostgreSQL stores, in the database's encoding: nothing here
//! assumes UTF-8, so every server encoding works, and nothing reads text as a Rust `str`.
//! Validation is pure Rust so that it can be unit-tested without a server; `errors.rs` turns a
//! `KeyError` into the SQLSTATE a client sees.

/// Longest uid or channel_id accepted, in bytes. Far below the btree entry limit (about 2.7 kB),
/// so that an index insert can never fail on size, and roomy for WuKongIM's ids (uids of 40
/// bytes, channel ids of 100, a person channel joining two uids, a `____cmd` suffix).
pub const MAX_ID_BYTES: usize = 255;

/// channel_type is a uint8 in WuKongIM.
pub const MAX_CHANNEL_TYPE: i64 = 255;

/// A validated key, ready to bind to SQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConversationKey<'a> {
    pub uid: &'a [u8],
    pub channel_id: &'a [u8],
    pub channel_type: i16,
}

/// Why a key was refused. Each maps to one SQLSTATE in `errors.rs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    Null {
        argument: &'static str,
    },
    Empty {
        argument: &'static str,
    },
    TooLong {
        argument: &'static str,
        bytes: usize,
    },
    /// A channel_type outside 0..=255; `value` says what it was (it may not fit any integer type).
    ChannelTypeOutOfRange {
        value: String,
    },
}

impl<'a> ConversationKey<'a> {
    /// Checks every argument before anything is read or written.
    pub fn validate(uid: Option<&'a [u8]>, channel_id: Option<&'a [u8]>, channel_type: Option<i64>) -> Result<Self, KeyError> {
        let uid = check_id("uid", uid)?;
        let channel_id = check_id("channel_id", channel_id)?;
        let channel_type = channel_type.ok_or(KeyError::Null { argument: "channel_type" })?;
        if !channel_type_in_range(channel_type) {
            return Err(KeyError::ChannelTypeOutOfRange { value: channel_type.to_string() });
        }
        Ok(ConversationKey { uid, channel_id, channel_type: channel_type as i16 })
    }

    /// A uid alone (the functions that read one user's conversations).
    pub fn validate_uid(uid: Option<&'a [u8]>) -> Result<&'a [u8], KeyError> {
        check_id("uid", uid)
    }

    /// The second key of the advisory lock: FNV-1a over uid, channel_id and channel_type, with a
    /// NUL between the strings (text never contains NUL, so distinct keys never concatenate alike).
    /// Stable across releases and platforms: it is documented so a DBA can find a key in pg_locks.
    /// Two keys that collide only share a lock for the microseconds of one check-and-insert.
    pub fn lock_hash(&self) -> i32 {
        fnv1a(
            self.uid
                .iter()
                .copied()
                .chain(std::iter::once(0))
                .chain(self.channel_id.iter().copied())
                .chain(std::iter::once(0))
                .chain(std::iter::once(self.channel_type as u8)),
        )
    }

    /// The order in which every batch creates and locks rows: bytewise, field by field, whatever
    /// the database's collation says.
    pub fn order(&self) -> (&'a [u8], &'a [u8], i16) {
        (self.uid, self.channel_id, self.channel_type)
    }
}

/// Whether ids of these lengths (in bytes) and this channel_type pass `validate`: for the table's
/// CHECK constraint (`key_check.rs`), which looks at lengths only.
pub fn within_limits(uid_bytes: usize, channel_id_bytes: usize, channel_type: i64) -> bool {
    let id_ok = |bytes: usize| (1..=MAX_ID_BYTES).contains(&bytes);
    id_ok(uid_bytes) && id_ok(channel_id_bytes) && channel_type_in_range(channel_type)
}

fn channel_type_in_range(channel_type: i64) -> bool {
    (0..=MAX_CHANNEL_TYPE).contains(&channel_type)
}

fn check_id<'a>(argument: &'static str, value: Option<&'a [u8]>) -> Result<&'a [u8], KeyError> {
    let value = value.ok_or(KeyError::Null { argument })?;
    if value.is_empty() {
        return Err(KeyError::Empty { argument });
    }
    if value.len() > MAX_ID_BYTES {
        return Err(KeyError::TooLong { argument, bytes: value.len() });
    }
    Ok(value)
}

/// 32-bit FNV-1a of `bytes`, as the advisory locks' second key (this key's, a channel's).
pub fn fnv1a(bytes: impl Iterator<Item = u8>) -> i32 {
    const OFFSET: u32 = 0x811c_9dc5;
    const PRIME: u32 = 0x0100_0193;
    bytes.fold(OFFSET, |hash, byte| (hash ^ u32::from(byte)).wrapping_mul(PRIME)) as i32
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    fn key<'a>(uid: &'a str, channel_id: &'a str, channel_type: i64) -> Result<ConversationKey<'a>, KeyError> {
        ConversationKey::validate(Some(uid.as_bytes()), Some(channel_id.as_bytes()), Some(channel_type))
    }

    /// The table's CHECK constraint and the functions accept exactly the same keys.
    #[test]
    fn within_limits_agrees_with_validate() {
        for uid_bytes in [0, 1, 2, 254, 255, 256, 1000] {
            for channel_id_bytes in [0, 1, 255, 256] {
                for channel_type in [-1, 0, 1, 255, 256, 32767] {
                    let (uid, channel_id) = ("u".repeat(uid_bytes), "c".repeat(channel_id_bytes));
                    assert_eq!(
                        within_limits(uid_bytes, channel_id_bytes, channel_type),
                        key(&uid, &channel_id, channel_type).is_ok(),
                        "{uid_bytes} {channel_id_bytes} {channel_type}"
                    );
                }
            }
        }
    }

    #[test]
    fn accepts_the_documented_range() {
        assert!(key("u", "g", 0).is_ok());
        assert!(key("u", "g", 255).is_ok());
        let longest = "x".repeat(MAX_ID_BYTES);
        assert!(key(&longest, &longest, 1).is_ok());
    }

    #[test]
    fn accepts_any_bytes_whatever_the_encoding() {
        // LATIN1 'é' (0xe9) and bytes that are not UTF-8 at all (SQL_ASCII): keys are bytes.
        let latin1: &[u8] = &[b'u', 0xe9];
        let not_utf8: &[u8] = &[0xff, 0xfe, 0x80];
        assert!(ConversationKey::validate(Some(latin1), Some(not_utf8), Some(1)).is_ok());
    }

    #[test]
    fn refuses_nulls_first_argument_first() {
        assert_eq!(ConversationKey::validate(None, None, None), Err(KeyError::Null { argument: "uid" }));
        assert_eq!(ConversationKey::validate(Some(b"u"), None, Some(1)), Err(KeyError::Null { argument: "channel_id" }));
        assert_eq!(ConversationKey::validate(Some(b"u"), Some(b"g"), None), Err(KeyError::Null { argument: "channel_type" }));
    }

    #[test]
    fn refuses_empty_and_oversized_ids_counting_bytes_not_characters() {
        assert_eq!(key("", "g", 1), Err(KeyError::Empty { argument: "uid" }));
        assert_eq!(key("u", "", 1), Err(KeyError::Empty { argument: "channel_id" }));
        // 128 two-byte characters are 256 bytes: one over the limit.
        let wide = "é".repeat(128);
        assert_eq!(key(&wide, "g", 1), Err(KeyError::TooLong { argument: "uid", bytes: 256 }));
        assert_eq!(key("u", &wide, 1), Err(KeyError::TooLong { argument: "channel_id", bytes: 256 }));
    }

    #[test]
    fn refuses_channel_types_outside_a_byte() {
        assert_eq!(key("u", "g", -1), Err(KeyError::ChannelTypeOutOfRange { value: "-1".into() }));
        assert_eq!(key("u", "g", 256), Err(KeyError::ChannelTypeOutOfRange { value: "256".into() }));
    }

    #[test]
    fn lock_hash_is_stable_and_separates_fields() {
        // Pinned values: changing the hash would make two releases disagree on a key's lock.
        assert_eq!(key("u1", "g1", 2).unwrap().lock_hash(), 0xaccf_b043_u32 as i32);
        assert_ne!(key("u1", "g1", 2).unwrap().lock_hash(), key("u1g", "1", 2).unwrap().lock_hash());
        assert_ne!(key("u1", "g1", 1).unwrap().lock_hash(), key("u1", "g1", 2).unwrap().lock_hash());
    }
}
