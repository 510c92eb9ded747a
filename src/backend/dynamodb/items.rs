//! The Python TetherDB's item layout: the partition key `key` (S) holds
//! the stored key, `value` the value, as S where it is valid UTF-8 and as
//! B otherwise; `version` (N) its version (docs/design.md, Versions); and
//! DynamoDB's limits on an item.

use std::collections::HashMap;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;

use super::NAME;
use crate::error::{Error, Result};

/// The attribute names of the Python TetherDB's items.
pub(super) const KEY: &str = "key";
pub(super) const VALUE: &str = "value";
/// Written by this library only: an item without it has version
/// [`UNVERSIONED`].
pub(super) const VERSION: &str = "version";

/// The version of an item without a `version` attribute (written by boto3
/// or the Python TetherDB).
pub(super) const UNVERSIONED: u64 = 1;

/// What the `version` attribute adds to an item at most: its name and a
/// number of 20 digits (DynamoDB counts a number's significant digits).
const VERSION_BYTES: usize = VERSION.len() + 21;

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

/// The size DynamoDB counts for an item: attribute names and values.
pub(super) fn item_size(key: &str, value: &[u8]) -> usize {
    KEY.len() + key.len() + VALUE.len() + value.len() + VERSION_BYTES
}

pub(super) fn item(key: &str, value: &[u8], version: u64) -> Item {
    HashMap::from([
        (KEY.to_owned(), AttributeValue::S(key.to_owned())),
        (VALUE.to_owned(), value_attribute(value)),
        (VERSION.to_owned(), number(version)),
    ])
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
            assert_eq!(value_of("k", item("k", value, 7)).unwrap(), value);
            assert_eq!(version_of("k", &item("k", value, 7)).unwrap(), 7);
        }
        let numeric = HashMap::from([(VALUE.to_owned(), AttributeValue::N("1".into()))]);
        assert_eq!(
            value_of("k", numeric).unwrap_err().status(),
            crate::Status::Io
        );
    }

    #[test]
    fn item_sizes_count_attribute_names() {
        assert_eq!(item_size("b:k", b"12345"), 3 + 3 + 5 + 5 + 7 + 21);
    }
}
