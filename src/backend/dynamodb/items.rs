//! The Python TetherDB's item layout: the partition key `key` (S) holds
//! the stored key, `value` the value, as S where it is valid UTF-8 and as
//! B otherwise; `version` (N) its version (docs/design.md, Versions); for
//! a key that expires, `deadline_ms` (N, the exact deadline), `expires`
//! (N, in seconds: the table's TTL attribute, so that DynamoDB deletes it,
//! up to days late) and, for a sliding ttl, `sliding_ms` (N); and
//! DynamoDB's limits on an item.

use std::collections::HashMap;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;

use super::NAME;
use crate::backend::Deadline;
use crate::error::{Error, Result};

/// The attribute names of the Python TetherDB's items.
pub(super) const KEY: &str = "key";
pub(super) const VALUE: &str = "value";
/// Written by this library only: an item without it has version
/// [`UNVERSIONED`].
pub(super) const VERSION: &str = "version";

/// Written by this library only, for a key that expires.
pub(super) const DEADLINE: &str = "deadline_ms";
pub(super) const EXPIRES: &str = "expires";
pub(super) const SLIDING: &str = "sliding_ms";

/// The version of an item without a `version` attribute (written by boto3
/// or the Python TetherDB).
pub(super) const UNVERSIONED: u64 = 1;

/// What the `version` attribute adds to an item at most: its name and a
/// number of 20 digits (DynamoDB counts a number's significant digits);
/// and what the expiry attributes add.
const VERSION_BYTES: usize = VERSION.len() + 21;
const EXPIRY_BYTES: usize = DEADLINE.len() + EXPIRES.len() + SLIDING.len() + 3 * 21;

/// DynamoDB's limit on one item: its attribute names and values together.
pub(super) const MAX_ITEM_BYTES: usize = 400 * 1024;
/// DynamoDB's limit on a partition key value.
pub(super) const MAX_KEY_BYTES: usize = 2048;

pub(super) type Item = HashMap<String, AttributeValue>;

/// Fails with `TooLarge` for a key DynamoDB refuses in any request, so that
/// reads and deletes say so alike, before sending, on DynamoDB and on
/// emulators that do not check.
pub(super) fn check_key(key: &str) -> Result<()> {
    if key.len() > MAX_KEY_BYTES {
        return Err(Error::too_large(
            NAME,
            key,
            format!(
                "a key of {} bytes is over DynamoDB's partition key limit of \
                 {MAX_KEY_BYTES} bytes",
                key.len()
            ),
        ));
    }
    Ok(())
}

/// The size DynamoDB counts for an item: attribute names and values (with
/// room for a deadline).
pub(super) fn item_size(key: &str, value: &[u8]) -> usize {
    KEY.len() + key.len() + VALUE.len() + value.len() + VERSION_BYTES + EXPIRY_BYTES
}

pub(super) fn item(key: &str, value: &[u8], version: u64, deadline: Option<Deadline>) -> Item {
    let mut item = HashMap::from([
        (KEY.to_owned(), AttributeValue::S(key.to_owned())),
        (VALUE.to_owned(), value_attribute(value)),
        (VERSION.to_owned(), number(version)),
    ]);
    if let Some(deadline) = deadline {
        item.extend(expiry_attributes(deadline));
    }
    item
}

/// The attributes of a deadline: `sliding_ms` only for a sliding one.
pub(super) fn expiry_attributes(deadline: Deadline) -> Vec<(String, AttributeValue)> {
    let mut attributes = vec![
        (DEADLINE.to_owned(), number(deadline.at_ms)),
        (EXPIRES.to_owned(), number(deadline.at_ms.div_ceil(1000))),
    ];
    if deadline.sliding_ms > 0 {
        attributes.push((SLIDING.to_owned(), number(deadline.sliding_ms)));
    }
    attributes
}

/// The deadline of an item, if it has one.
pub(super) fn deadline_of(key: &str, item: &Item) -> Result<Option<Deadline>> {
    let number = |name: &str| match item.get(name) {
        None => Ok(None),
        Some(AttributeValue::N(n)) => n.parse().map(Some).map_err(|_| {
            Error::io(
                NAME,
                key,
                format!("the item's {name:?} attribute is {n:?}, not a number"),
            )
        }),
        Some(other) => Err(Error::io(
            NAME,
            key,
            format!("the item's {name:?} attribute is {other:?}, not a number"),
        )),
    };
    let Some(at_ms) = number(DEADLINE)? else {
        return Ok(None);
    };
    let sliding_ms = number(SLIDING)?.unwrap_or(0);
    Ok(Some(Deadline { at_ms, sliding_ms }))
}

pub(super) fn number(version: u64) -> AttributeValue {
    AttributeValue::N(version.to_string())
}

/// The version of an item: its `version` attribute, or [`UNVERSIONED`]
/// where it has none.
pub(super) fn version_of(key: &str, item: &Item) -> Result<u64> {
    match item.get(VERSION) {
        None => Ok(UNVERSIONED),
        Some(AttributeValue::N(n)) => n.parse().map_err(|_| {
            Error::io(
                NAME,
                key,
                format!("the item's \"version\" attribute is {n:?}, not a version"),
            )
        }),
        Some(other) => Err(Error::io(
            NAME,
            key,
            format!("the item's \"version\" attribute is {other:?}, not a number"),
        )),
    }
}

/// A value as the Python TetherDB stores it: S where it is valid UTF-8, B
/// otherwise.
pub(super) fn value_attribute(value: &[u8]) -> AttributeValue {
    match std::str::from_utf8(value) {
        Ok(text) => AttributeValue::S(text.to_owned()),
        Err(_) => AttributeValue::B(Blob::new(value)),
    }
}

/// The value of an item, from S or B.
pub(super) fn value_of(key: &str, mut item: Item) -> Result<Vec<u8>> {
    match item.remove(VALUE) {
        Some(AttributeValue::S(text)) => Ok(text.into_bytes()),
        Some(AttributeValue::B(bytes)) => Ok(bytes.into_inner()),
        Some(other) => Err(Error::io(
            NAME,
            key,
            format!("the item's \"value\" attribute is {other:?}, neither a string nor binary"),
        )),
        None => Err(Error::io(NAME, key, "the item has no \"value\" attribute")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_strings_where_they_can_be() {
        assert_eq!(value_attribute(b"text"), AttributeValue::S("text".into()));
        assert_eq!(
            value_attribute(b"\xff\x00"),
            AttributeValue::B(Blob::new(b"\xff\x00".to_vec()))
        );
        for value in [&b"text"[..], b"\xff\x00", b""] {
            assert_eq!(value_of("k", item("k", value, 7, None)).unwrap(), value);
            assert_eq!(version_of("k", &item("k", value, 7, None)).unwrap(), 7);
        }
        let numeric = HashMap::from([(VALUE.to_owned(), AttributeValue::N("1".into()))]);
        assert_eq!(
            value_of("k", numeric).unwrap_err().status(),
            crate::Status::Io
        );
    }

    #[test]
    fn item_sizes_count_attribute_names() {
        assert_eq!(
            item_size("b:k", b"12345"),
            3 + 3 + 5 + 5 + 7 + 21 + 11 + 7 + 10 + 63
        );
        let deadline = Deadline {
            at_ms: 1_700_000_000_001,
            sliding_ms: 300,
        };
        let expiring = item("k", b"v", 7, Some(deadline));
        assert_eq!(deadline_of("k", &expiring).unwrap(), Some(deadline));
        assert_eq!(expiring[EXPIRES], number(1_700_000_001));
        assert_eq!(deadline_of("k", &item("k", b"v", 7, None)).unwrap(), None);
    }
}
