//! The keys of a batch: checked element by element, folded and put in the one order in which
//! every batch creates rows. The JSON forms are read in `batch_json.rs`, the uid array here.
//!
//! Pure Rust, so it is unit-tested without a server; `errors.rs` turns an `ElementError` into the
//! SQLSTATE a client sees, naming the element.

use crate::input::key::{ConversationKey, KeyError};

/// Most keys one batch call accepts. A batch holds its new rows' index entries locked until
/// commit, and builds its result in memory: 10,000 covers the largest WuKongIM groups' fan-out
/// while keeping one call's locks and memory bounded. Larger fan-outs split into several calls.
pub const MAX_BATCH_KEYS: usize = 10_000;

/// A key and the 1-based position of its first occurrence in the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PositionedKey<'a> {
    pub position: i32,
    pub key: ConversationKey<'a>,
}

/// Why one element of a batch was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElementError {
    Key(KeyError),
    /// Not an object of the three fields, a field of the wrong JSON type, an unknown or a
    /// repeated field: serde's description of it.
    Malformed(String),
    MissingField(&'static str),
    /// channel_type is a number with a fraction (1.5); integral ones (2.0, 1e2) are integers.
    NotAnInteger,
    /// A string holding \u0000, which PostgreSQL text cannot hold.
    NulCharacter(&'static str),
}

/// Why a whole batch was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchError {
    /// The channel_id or channel_type shared by all members.
    Channel(KeyError),
    NotAnArray,
    NotOneDimensional {
        dimensions: i32,
    },
    /// Not JSON at all (only the text form can be; a jsonb value always is).
    Syntax(String),
    TooMany {
        count: usize,
    },
    /// More bytes than the keys it holds can take: refused by its size, before it is read.
    TooLarge {
        bytes: usize,
        limit: usize,
    },
    Element {
        position: usize,
        error: ElementError,
    },
}

impl BatchError {
    pub fn at(position: usize, error: ElementError) -> BatchError {
        BatchError::Element { position, error }
    }
}

/// The members of one channel: `uids` with one channel_id and channel_type.
pub fn member_batch<'a>(
    channel_id: Option<&'a [u8]>,
    channel_type: Option<i64>,
    uids: &[Option<&'a [u8]>],
) -> Result<Vec<PositionedKey<'a>>, BatchError> {
    // Checked even when there are no members, so a bad channel never passes unnoticed.
    ConversationKey::validate(Some(b"any uid"), channel_id, channel_type).map_err(BatchError::Channel)?;
    check_count(uids.len())?;
    let checked = uids
        .iter()
        .enumerate()
        .map(|(index, uid)| {
            ConversationKey::validate(*uid, channel_id, channel_type)
                .map(|key| PositionedKey { position: (index + 1) as i32, key })
                .map_err(|error| BatchError::at(index + 1, ElementError::Key(error)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(fold_and_order(checked))
}

pub fn check_count(count: usize) -> Result<(), BatchError> {
    if count > MAX_BATCH_KEYS {
        return Err(BatchError::TooMany { count });
    }
    Ok(())
}

/// One entry per distinct key, at the position of its first occurrence, sorted by (uid,
/// channel_id, channel_type) compared bytewise. Every batch inserts and locks in this order, so
/// two batches that share keys wait for each other instead of deadlocking: whichever reaches the
/// smallest shared key first goes first on all of them.
pub fn fold_and_order(mut keys: Vec<PositionedKey<'_>>) -> Vec<PositionedKey<'_>> {
    // Stable: among equal keys the first occurrence stays first, and dedup keeps it.
    keys.sort_by(|a, b| a.key.order().cmp(&b.key.order()));
    keys.dedup_by(|later, first| later.key == first.key);
    keys
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    fn positions(keys: &[PositionedKey<'_>]) -> Vec<(i32, String)> {
        keys.iter()
            .map(|k| {
                let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
                (k.position, format!("{}/{}/{}", text(k.key.uid), text(k.key.channel_id), k.key.channel_type))
            })
            .collect()
    }

    fn uids<'a>(names: &[&'a str]) -> Vec<Option<&'a [u8]>> {
        names.iter().map(|name| Some(name.as_bytes())).collect()
    }

    #[test]
    fn folds_duplicates_to_their_first_position_and_sorts_bytewise() {
        let keys = member_batch(Some(b"g1"), Some(2), &uids(&["b", "a", "b", "B", "a"])).unwrap();
        // 'B' (0x42) sorts before 'a' (0x61) bytewise, whatever the database's collation says.
        assert_eq!(positions(&keys), vec![(4, "B/g1/2".into()), (2, "a/g1/2".into()), (1, "b/g1/2".into())]);
    }

    #[test]
    fn opposite_input_orders_give_the_same_lock_order() {
        let forward: Vec<String> = (0..50).map(|i| format!("u{i}")).collect();
        let backward: Vec<String> = forward.iter().rev().cloned().collect();
        let order = |names: &[String]| {
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            let keys = member_batch(Some(b"g"), Some(2), &uids(&names)).unwrap();
            keys.iter().map(|k| k.key.uid.to_vec()).collect::<Vec<_>>()
        };
        assert_eq!(order(&forward), order(&backward));
    }

    #[test]
    fn checks_the_channel_even_without_members() {
        assert_eq!(member_batch(None, Some(1), &[]), Err(BatchError::Channel(KeyError::Null { argument: "channel_id" })));
        assert_eq!(member_batch(Some(b"g"), Some(1), &[]), Ok(vec![]));
    }

    #[test]
    fn refuses_batches_over_the_limit_before_reading_them() {
        let too_many = vec![Some(&b"u"[..]); MAX_BATCH_KEYS + 1];
        assert_eq!(member_batch(Some(b"g"), Some(1), &too_many), Err(BatchError::TooMany { count: MAX_BATCH_KEYS + 1 }));
        let exactly = vec![Some(&b"u"[..]); MAX_BATCH_KEYS];
        assert_eq!(member_batch(Some(b"g"), Some(1), &exactly).unwrap().len(), 1);
    }

    #[test]
    fn names_the_element_that_is_wrong() {
        assert_eq!(
            member_batch(Some(b"g"), Some(1), &[Some(b"a"), None]),
            Err(BatchError::at(2, ElementError::Key(KeyError::Null { argument: "uid" })))
        );
    }
}
