//! A batch's keys from JSON: `[{"uid": ..., "channel_id": ..., "channel_type": ...}, ...]`.
//!
//! Parsed with serde into typed elements (`JsonKey`), one element at a time, so that an error
//! names its element and no more than `MAX_BATCH_KEYS` elements are ever held: past the limit
//! the rest are only counted (`IgnoredAny`), in constant memory. serde_json refuses nesting deeper
//! than 128 levels instead of recursing into it. Numbers keep their text (serde_json's
//! arbitrary_precision), so a channel_type of any size or form is judged by its value: integral
//! ones (2, 2.0, 1e2, -0) are integers, 1.5 is not, and anything outside 0..255 is out of range
//! however many digits it has.
//!
//! The input is UTF-8 JSON text; `json_batch` hands each string to the caller to turn into the
//! database's encoding. Pure Rust: unit-tested without a server.

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, SeqAccess, Visitor};

use crate::input::batch_keys::{check_count, fold_and_order, BatchError, ElementError, PositionedKey, MAX_BATCH_KEYS};
use crate::input::key::{ConversationKey, KeyError};

/// One element, as written. Unknown and repeated fields are refused (a misspelt "channelId" is
/// an error, not a different key); each field is told apart as missing, null or a value.
#[derive(serde::Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct JsonKey<'a> {
    #[serde(default, borrow)]
    uid: Field<Cow<'a, str>>,
    #[serde(default, borrow)]
    channel_id: Field<Cow<'a, str>>,
    #[serde(default)]
    channel_type: Field<serde_json::Number>,
}

/// A field that may be missing (malformed, 22023) or null (a NULL, 22004, as for one key).
#[derive(Debug, Default)]
enum Field<T> {
    #[default]
    Missing,
    Null,
    Value(T),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Field<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Option::<T>::deserialize(deserializer)?.map_or(Field::Null, Field::Value))
    }
}

/// An element must be a JSON object: serde's derive would also take an array of three values.
struct Element<'a>(JsonKey<'a>);

impl<'de> Deserialize<'de> for Element<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectOnly;
        impl<'de> Visitor<'de> for ObjectOnly {
            type Value = Element<'de>;
            fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
                formatter.write_str(r#"an object {"uid": ..., "channel_id": ..., "channel_type": ...}"#)
            }
            fn visit_map<M: de::MapAccess<'de>>(self, map: M) -> Result<Element<'de>, M::Error> {
                JsonKey::deserialize(de::value::MapAccessDeserializer::new(map)).map(Element)
            }
        }
        deserializer.deserialize_map(ObjectOnly)
    }
}

/// Parses the array, at most `MAX_BATCH_KEYS` elements of it.
pub fn parse(text: &str) -> Result<Vec<JsonKey<'_>>, BatchError> {
    let failed_at = Cell::new(0);
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let parsed = deserializer.deserialize_any(Elements { failed_at: &failed_at }).and_then(|elements| {
        deserializer.end()?;
        Ok(elements)
    });
    match parsed {
        Ok(result) => result,
        Err(error) if error.is_syntax() || error.is_eof() => Err(BatchError::Syntax(error.to_string())),
        Err(error) if failed_at.get() > 0 => Err(BatchError::at(failed_at.get(), ElementError::Malformed(describe(&error)))),
        Err(_) => Err(BatchError::NotAnArray),
    }
}

/// serde_json's message without the line and column: an element is named by its position.
fn describe(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.rsplit_once(" at line ") {
        Some((message, _)) => message.to_string(),
        None => text,
    }
}

/// The top-level array, element by element; `failed_at` says which element an error is in.
struct Elements<'c> {
    failed_at: &'c Cell<usize>,
}

impl<'de> Visitor<'de> for Elements<'_> {
    type Value = Result<Vec<JsonKey<'de>>, BatchError>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a JSON array of keys")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut elements = Vec::new();
        loop {
            self.failed_at.set(elements.len() + 1);
            if elements.len() == MAX_BATCH_KEYS {
                // Only count the rest: the batch is refused, and its size is worth telling.
                let mut count = elements.len();
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    count += 1;
                    self.failed_at.set(count + 1);
                }
                self.failed_at.set(0);
                return Ok(check_count(count).map(|()| elements));
            }
            match seq.next_element::<Element<'de>>()? {
                Some(Element(element)) => elements.push(element),
                None => break,
            }
        }
        self.failed_at.set(0);
        Ok(Ok(elements))
    }
}

/// Validates the parsed elements, then folds and orders them. `to_database` turns a string into
/// the database encoding's bytes (raising the database's own error where it has no equivalent).
pub fn json_batch<'a>(
    elements: &'a [JsonKey<'a>],
    to_database: impl Fn(&'a str) -> &'a [u8],
) -> Result<Vec<PositionedKey<'a>>, BatchError> {
    let checked = elements
        .iter()
        .enumerate()
        .map(|(index, element)| {
            let position = index + 1;
            let fail = |error| BatchError::at(position, error);
            let text = |field: &'a Field<Cow<'a, str>>, name: &'static str| match field {
                Field::Missing => Err(fail(ElementError::MissingField(name))),
                Field::Null => Ok(None),
                Field::Value(text) if text.contains('\0') => Err(fail(ElementError::NulCharacter(name))),
                Field::Value(text) => Ok(Some(to_database(text.as_ref()))),
            };
            let uid = text(&element.uid, "uid")?;
            let channel_id = text(&element.channel_id, "channel_id")?;
            let channel_type = match &element.channel_type {
                Field::Missing => return Err(fail(ElementError::MissingField("channel_type"))),
                Field::Null => None,
                Field::Value(number) => match integer_of(&number.to_string()) {
                    Integer::Small(value) => Some(value),
                    Integer::Huge => {
                        let value = shortened(&number.to_string());
                        return Err(fail(ElementError::Key(KeyError::ChannelTypeOutOfRange { value })));
                    }
                    Integer::Fraction => return Err(fail(ElementError::NotAnInteger)),
                },
            };
            ConversationKey::validate(uid, channel_id, channel_type)
                .map(|key| PositionedKey { position: position as i32, key })
                .map_err(|error| fail(ElementError::Key(error)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(fold_and_order(checked))
}

/// A JSON number's value, as far as a key cares.
#[derive(Debug, PartialEq, Eq)]
enum Integer {
    Small(i64),
    /// Integral, but with more than 18 digits.
    Huge,
    Fraction,
}

/// Classifies a JSON number (`-?int(.frac)?([eE][+-]?exp)?`) by its value, not its form.
fn integer_of(number: &str) -> Integer {
    let (negative, unsigned) = match number.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, number),
    };
    let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
        Some((mantissa, exponent)) => (mantissa, exponent.trim_start_matches('+')),
        None => (unsigned, "0"),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits: String = format!("{whole}{fraction}");
    let significant = digits.trim_start_matches('0');
    if significant.is_empty() {
        return Integer::Small(0); // 0, -0, 0.0, 0e5
    }
    // Where the decimal point falls in `digits`, after the exponent moves it.
    let point = match exponent.parse::<i64>() {
        Ok(exponent) => whole.len() as i64 + exponent,
        // An exponent beyond i64: huge if positive, a tiny fraction if negative.
        Err(_) if exponent.starts_with('-') => return Integer::Fraction,
        Err(_) => return Integer::Huge,
    };
    let leading_zeros = (digits.len() - significant.len()) as i64;
    let integer_digits = point - leading_zeros; // digits of the value before the point
    if (point.max(0) as usize) < digits.len() && digits[point.max(0) as usize..].bytes().any(|b| b != b'0') {
        return Integer::Fraction;
    }
    if integer_digits > 18 {
        return Integer::Huge;
    }
    let mut value: i64 = 0;
    for position in 0..point {
        let digit = digits.as_bytes().get(position as usize).map_or(0, |b| i64::from(b - b'0'));
        value = value * 10 + digit;
    }
    Integer::Small(if negative { -value } else { value })
}

/// A value for an error message: long numbers are cut, so the message stays readable.
fn shortened(text: &str) -> String {
    if text.len() <= 40 {
        text.to_string()
    } else {
        format!("{}... ({} characters)", &text[..30], text.len())
    }
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    fn keys(text: &str) -> Result<Vec<(i32, String)>, BatchError> {
        let elements = parse(text)?;
        let batch = json_batch(&elements, |text| text.as_bytes())?;
        Ok(batch
            .iter()
            .map(|k| {
                let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
                (k.position, format!("{}/{}/{}", text(k.key.uid), text(k.key.channel_id), k.key.channel_type))
            })
            .collect())
    }

    fn malformed(position: usize, message: &str) -> Result<Vec<(i32, String)>, BatchError> {
        Err(BatchError::at(position, ElementError::Malformed(message.into())))
    }

    #[test]
    fn reads_elements_folds_and_orders_them() {
        assert_eq!(
            keys(
                r#"[{"uid": "b", "channel_id": "g", "channel_type": 1}, {"uid": "a", "channel_id": "g", "channel_type": 1},
                    {"uid": "b", "channel_id": "g", "channel_type": 1}]"#
            ),
            Ok(vec![(2, "a/g/1".into()), (1, "b/g/1".into())])
        );
        assert_eq!(keys("[]"), Ok(vec![]));
    }

    #[test]
    fn names_the_element_and_what_is_wrong_with_it() {
        assert_eq!(keys(r#"{"uid": "u"}"#), Err(BatchError::NotAnArray));
        assert_eq!(keys("7"), Err(BatchError::NotAnArray));
        assert_eq!(
            keys(r#"[{"uid": "u", "channel_id": "g", "channel_type": 1}, 5]"#),
            malformed(2, r#"invalid type: integer `5`, expected an object {"uid": ..., "channel_id": ..., "channel_type": ...}"#)
        );
        assert_eq!(keys(r#"[{"uid": "u", "channel_type": 1}]"#), Err(BatchError::at(1, ElementError::MissingField("channel_id"))));
        assert_eq!(
            keys(r#"[{"uid": "u", "channel_id": "g", "channel_type": "1"}]"#),
            malformed(1, "invalid type: string \"1\", expected a JSON number")
        );
        assert_eq!(
            keys(r#"[{"uid": "u", "channelId": "g", "channel_id": "g", "channel_type": 1}]"#),
            malformed(1, "unknown field `channelId`, expected one of `uid`, `channel_id`, `channel_type`")
        );
        assert_eq!(keys(r#"[{"uid": "u", "uid": "v", "channel_id": "g", "channel_type": 1}]"#), malformed(1, "duplicate field `uid`"));
        assert_eq!(
            keys(r#"[{"uid": null, "channel_id": "g", "channel_type": 1}]"#),
            Err(BatchError::at(1, ElementError::Key(KeyError::Null { argument: "uid" })))
        );
        assert_eq!(
            keys(r#"[{"uid": "a\u0000b", "channel_id": "g", "channel_type": 1}]"#),
            Err(BatchError::at(1, ElementError::NulCharacter("uid")))
        );
    }

    #[test]
    fn channel_types_are_judged_by_value_not_form() {
        let channel_type = |number: &str| keys(&format!(r#"[{{"uid": "u", "channel_id": "g", "channel_type": {number}}}]"#));
        for (number, value) in [("2", 2), ("2.0", 2), ("1e2", 100), ("-0", 0), ("0.0e9", 0), ("2.50e2", 250), ("255", 255)] {
            assert_eq!(channel_type(number), Ok(vec![(1, format!("u/g/{value}"))]), "{number}");
        }
        assert_eq!(channel_type("1.5"), Err(BatchError::at(1, ElementError::NotAnInteger)));
        assert_eq!(channel_type("1e-2"), Err(BatchError::at(1, ElementError::NotAnInteger)));
        let out_of_range = |value: &str| Err(BatchError::at(1, ElementError::Key(KeyError::ChannelTypeOutOfRange { value: value.into() })));
        for (number, shown) in [
            ("256", "256"),
            ("-1", "-1"),
            ("9223372036854775807", "9223372036854775807"),
            ("9223372036854775808", "9223372036854775808"),
            ("1e400", "1e+400"),
            ("-1E400", "-1e+400"),
        ] {
            assert_eq!(channel_type(number), out_of_range(shown), "{number}");
        }
        let long = "9".repeat(500);
        assert_eq!(channel_type(&long), out_of_range(&shortened(&long)));
    }

    #[test]
    fn refuses_what_is_not_json_and_deep_nesting_without_recursing() {
        assert!(matches!(keys("[{"), Err(BatchError::Syntax(_))));
        assert!(matches!(keys("[] x"), Err(BatchError::Syntax(_))));
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(matches!(keys(&deep), Err(BatchError::Element { position: 1, .. })));
        let deep_in_field = format!(r#"[{{"uid": {}{}}}]"#, "[".repeat(1000), "]".repeat(1000));
        assert!(matches!(keys(&deep_in_field), Err(BatchError::Element { position: 1, .. })));
    }

    #[test]
    fn counts_past_the_limit_without_keeping_elements() {
        let element = r#"{"uid": "u", "channel_id": "g", "channel_type": 1}"#;
        let array = |n: usize| format!("[{}]", vec![element; n].join(","));
        assert_eq!(keys(&array(MAX_BATCH_KEYS)).map(|k| k.len()), Ok(1));
        assert_eq!(keys(&array(MAX_BATCH_KEYS + 5)), Err(BatchError::TooMany { count: MAX_BATCH_KEYS + 5 }));
    }

    #[test]
    fn integers_of_every_form() {
        assert_eq!(integer_of("0"), Integer::Small(0));
        assert_eq!(integer_of("-12"), Integer::Small(-12));
        assert_eq!(integer_of("12.000"), Integer::Small(12));
        assert_eq!(integer_of("1.2e1"), Integer::Small(12));
        assert_eq!(integer_of("120e-1"), Integer::Small(12));
        assert_eq!(integer_of("0.5"), Integer::Fraction);
        assert_eq!(integer_of("5e-1"), Integer::Fraction);
        assert_eq!(integer_of("1e18"), Integer::Huge);
        assert_eq!(integer_of("999999999999999999"), Integer::Small(999_999_999_999_999_999));
        assert_eq!(integer_of("1e99999999999999999999"), Integer::Huge);
        assert_eq!(integer_of("1e-99999999999999999999"), Integer::Fraction);
    }
}
