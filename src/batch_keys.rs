//! The keys of a batch: read from a jsonb array or a uid array, checked element by element,
//! folded and put in the one order in which every batch creates rows.
//!
//! Pure Rust, so it is unit-tested without a server; `errors.rs` turns an `ElementError` into the
//! SQLSTATE a client sees, naming the element.

use serde_json::{Map, Value};

use crate::key::{ConversationKey, KeyError};

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
    NotAnObject,
    MissingField(&'static str),
    WrongType { field: &'static str, expected: &'static str },
    UnknownField(String),
}

/// Why a whole batch was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchError {
    /// The channel_id or channel_type shared by all members.
    Channel(KeyError),
    NotAnArray,
    TooMany { count: usize },
    Element { position: usize, error: ElementError },
}

/// One element of the jsonb form, owned: `{"uid": "...", "channel_id": "...", "channel_type": n}`.
#[derive(Debug)]
pub struct JsonKey {
    uid: Option<String>,
    channel_id: Option<String>,
    channel_type: Option<i64>,
}

/// Reads the jsonb form's elements. Unknown fields are refused, so that a misspelt
/// `"channelId"` is an error rather than a silently different key.
pub fn parse_json_keys(keys: &Value) -> Result<Vec<JsonKey>, BatchError> {
    let Value::Array(elements) = keys else {
        return Err(BatchError::NotAnArray);
    };
    check_count(elements.len())?;
    elements
        .iter()
        .enumerate()
        .map(|(index, element)| {
            parse_json_key(element).map_err(|error| BatchError::Element { position: index + 1, error })
        })
        .collect()
}

fn parse_json_key(element: &Value) -> Result<JsonKey, ElementError> {
    let Value::Object(fields) = element else {
        return Err(ElementError::NotAnObject);
    };
    if let Some(unknown) = fields.keys().find(|name| !["uid", "channel_id", "channel_type"].contains(&name.as_str())) {
        return Err(ElementError::UnknownField(unknown.clone()));
    }
    Ok(JsonKey {
        uid: string_field(fields, "uid")?,
        channel_id: string_field(fields, "channel_id")?,
        channel_type: match fields.get("channel_type") {
            None => return Err(ElementError::MissingField("channel_type")),
            Some(Value::Null) => None,
            Some(value) => Some(value.as_i64().ok_or(ElementError::WrongType {
                field: "channel_type",
                expected: "an integer",
            })?),
        },
    })
}

/// A JSON null is a NULL (22004, like the single-key function); a missing field is malformed.
fn string_field(fields: &Map<String, Value>, field: &'static str) -> Result<Option<String>, ElementError> {
    match fields.get(field) {
        None => Err(ElementError::MissingField(field)),
        Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err(ElementError::WrongType { field, expected: "a string" }),
    }
}

/// Validates the parsed jsonb elements, then folds and orders them.
pub fn json_batch(keys: &[JsonKey]) -> Result<Vec<PositionedKey<'_>>, BatchError> {
    let checked = keys
        .iter()
        .enumerate()
        .map(|(index, key)| {
            ConversationKey::validate(key.uid.as_deref(), key.channel_id.as_deref(), key.channel_type)
                .map(|key| PositionedKey { position: (index + 1) as i32, key })
                .map_err(|error| BatchError::Element { position: index + 1, error: ElementError::Key(error) })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(fold_and_order(checked))
}

/// The members of one channel: `uids` with one channel_id and channel_type.
pub fn member_batch<'a>(
    channel_id: Option<&'a str>,
    channel_type: Option<i64>,
    uids: &[Option<&'a str>],
) -> Result<Vec<PositionedKey<'a>>, BatchError> {
    // Checked even when there are no members, so a bad channel never passes unnoticed.
    ConversationKey::validate(Some("any uid"), channel_id, channel_type).map_err(BatchError::Channel)?;
    check_count(uids.len())?;
    let checked = uids
        .iter()
        .enumerate()
        .map(|(index, uid)| {
            ConversationKey::validate(*uid, channel_id, channel_type)
                .map(|key| PositionedKey { position: (index + 1) as i32, key })
                .map_err(|error| BatchError::Element { position: index + 1, error: ElementError::Key(error) })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(fold_and_order(checked))
}

fn check_count(count: usize) -> Result<(), BatchError> {
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
    keys.sort_by(|a, b| order_of(&a.key).cmp(&order_of(&b.key)));
    keys.dedup_by(|later, first| later.key == first.key);
    keys
}

fn order_of<'k>(key: &ConversationKey<'k>) -> (&'k [u8], &'k [u8], i16) {
    (key.uid.as_bytes(), key.channel_id.as_bytes(), key.channel_type)
}

#[cfg(test)]
mod unit_tests {
    use super::*;
    use serde_json::json;

    fn positions(keys: &[PositionedKey<'_>]) -> Vec<(i32, String)> {
        keys.iter().map(|k| (k.position, format!("{}/{}/{}", k.key.uid, k.key.channel_id, k.key.channel_type))).collect()
    }

    #[test]
    fn folds_duplicates_to_their_first_position_and_sorts_bytewise() {
        let uids = [Some("b"), Some("a"), Some("b"), Some("B"), Some("a")];
        let keys = member_batch(Some("g1"), Some(2), &uids).unwrap();
        // 'B' (0x42) sorts before 'a' (0x61) bytewise, whatever the database's collation says.
        assert_eq!(
            positions(&keys),
            vec![(4, "B/g1/2".into()), (2, "a/g1/2".into()), (1, "b/g1/2".into())]
        );
    }

    #[test]
    fn opposite_input_orders_give_the_same_lock_order() {
        let forward: Vec<String> = (0..50).map(|i| format!("u{i}")).collect();
        let backward: Vec<String> = forward.iter().rev().cloned().collect();
        fn as_options(uids: &[String]) -> Vec<Option<&str>> {
            uids.iter().map(|u| Some(u.as_str())).collect()
        }
        let (f, b) = (as_options(&forward), as_options(&backward));
        let order = |keys: Vec<PositionedKey<'_>>| keys.iter().map(|k| k.key.uid.to_string()).collect::<Vec<_>>();
        assert_eq!(
            order(member_batch(Some("g"), Some(2), &f).unwrap()),
            order(member_batch(Some("g"), Some(2), &b).unwrap())
        );
    }

    #[test]
    fn json_elements_are_checked_and_named_by_position() {
        let parse = |value: Value| parse_json_keys(&value).map(|_| ());
        assert_eq!(parse(json!({"uid": "u"})), Err(BatchError::NotAnArray));
        assert_eq!(
            parse(json!([{"uid": "u", "channel_id": "g", "channel_type": 1}, 7])),
            Err(BatchError::Element { position: 2, error: ElementError::NotAnObject })
        );
        assert_eq!(
            parse(json!([{"uid": "u", "channel_type": 1}])),
            Err(BatchError::Element { position: 1, error: ElementError::MissingField("channel_id") })
        );
        assert_eq!(
            parse(json!([{"uid": "u", "channel_id": "g", "channel_type": "1"}])),
            Err(BatchError::Element {
                position: 1,
                error: ElementError::WrongType { field: "channel_type", expected: "an integer" }
            })
        );
        assert_eq!(
            parse(json!([{"uid": "u", "channelId": "g", "channel_id": "g", "channel_type": 1}])),
            Err(BatchError::Element { position: 1, error: ElementError::UnknownField("channelId".into()) })
        );
    }

    #[test]
    fn json_values_are_validated_like_single_keys() {
        let parsed = parse_json_keys(&json!([
            {"uid": "u", "channel_id": "g", "channel_type": 1},
            {"uid": null, "channel_id": "g", "channel_type": 1}
        ]))
        .unwrap();
        assert_eq!(
            json_batch(&parsed),
            Err(BatchError::Element { position: 2, error: ElementError::Key(KeyError::Null { argument: "uid" }) })
        );
        let parsed = parse_json_keys(&json!([{"uid": "u", "channel_id": "g", "channel_type": 4294967296_i64}])).unwrap();
        assert_eq!(
            json_batch(&parsed),
            Err(BatchError::Element {
                position: 1,
                error: ElementError::Key(KeyError::ChannelTypeOutOfRange { channel_type: 4294967296 })
            })
        );
    }

    #[test]
    fn checks_the_channel_even_without_members() {
        assert_eq!(
            member_batch(None, Some(1), &[]),
            Err(BatchError::Channel(KeyError::Null { argument: "channel_id" }))
        );
        assert_eq!(member_batch(Some("g"), Some(1), &[]), Ok(vec![]));
    }

    #[test]
    fn refuses_batches_over_the_limit_before_reading_them() {
        let uids = vec![Some("u"); MAX_BATCH_KEYS + 1];
        assert_eq!(member_batch(Some("g"), Some(1), &uids), Err(BatchError::TooMany { count: MAX_BATCH_KEYS + 1 }));
        let exactly = vec![Some("u"); MAX_BATCH_KEYS];
        assert_eq!(member_batch(Some("g"), Some(1), &exactly).unwrap().len(), 1);
    }
}
