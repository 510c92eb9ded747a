//! The `bucket:key` scheme shared with the Python TetherDB, and validation.

use std::ops::Deref;

use smallvec::SmallVec;

use crate::error::{Error, Result};

/// Separates the bucket from the key in a stored key.
pub const SEPARATOR: char = ':';

/// Checks a bucket name; `None` and `""` both mean "no bucket".
pub fn bucket(bucket: Option<&str>) -> Result<Option<&str>> {
    match bucket {
        None | Some("") => Ok(None),
        Some(b) if b.contains(SEPARATOR) => {
            Err(Error::invalid(format!("the bucket contains '{SEPARATOR}'")))
        }
        Some(b) => Ok(Some(b)),
    }
}

/// The key as stored in the backend: `bucket:key`, or `key` alone.
pub fn stored<'a>(bucket_name: Option<&str>, key: &'a str) -> Result<StoredKey<'a>> {
    if key.is_empty() {
        return Err(Error::invalid("the key is empty"));
    }
    Ok(match bucket(bucket_name)? {
        None => StoredKey::Borrowed(key),
        Some(b) => {
            let mut joined = SmallVec::with_capacity(b.len() + 1 + key.len());
            joined.extend_from_slice(b.as_bytes());
            joined.push(SEPARATOR as u8);
            joined.extend_from_slice(key.as_bytes());
            StoredKey::Joined(joined)
        }
    })
}

/// A stored key, built on the stack unless it is long: it lives for one
/// call, and a heap allocation per call would cost more than a sled read
/// spends in its tree.
pub enum StoredKey<'a> {
    Borrowed(&'a str),
    /// Always valid UTF-8: two `&str`s joined by an ASCII separator.
    Joined(SmallVec<[u8; 96]>),
}

impl Deref for StoredKey<'_> {
    type Target = str;

    fn deref(&self) -> &str {
        match self {
            StoredKey::Borrowed(key) => key,
            // SAFETY: built in `stored` from two `&str`s and an ASCII byte.
            StoredKey::Joined(bytes) => unsafe { std::str::from_utf8_unchecked(bytes) },
        }
    }
}

/// What every listed stored key starts with: `bucket:` + prefix, or the
/// prefix alone, for a bucket [`bucket`] has checked. The separator is
/// always part of a bucket's prefix, so bucket `logs` never matches keys of
/// bucket `logsX`.
pub fn list_prefix(checked_bucket: Option<&str>, prefix: &str) -> String {
    match checked_bucket {
        None => prefix.to_owned(),
        Some(b) => join(b, prefix),
    }
}

/// The key a caller sees for a stored key listed under `bucket`.
pub fn unstored<'a>(bucket_name: Option<&str>, stored: &'a str) -> &'a str {
    match bucket_name {
        Some(b) if !b.is_empty() => &stored[b.len() + SEPARATOR.len_utf8()..],
        _ => stored,
    }
}

/// The key a caller sees for a stored key listed under `bucket`, or `None`
/// where no call can name it there: the stored key `bucket:` itself (the
/// Python TetherDB's empty key in `bucket`, or the key `bucket:` written
/// without a bucket) has an empty key part, which every call refuses.
/// Bucket listings leave it out; listed without a bucket it is named as
/// stored, and read and deleted that way.
pub fn in_bucket<'a>(bucket_name: Option<&str>, stored: &'a str) -> Option<&'a str> {
    match unstored(bucket_name, stored) {
        "" => None,
        key => Some(key),
    }
}

/// A stored key as the C API can hand it out: valid UTF-8 without NUL.
/// Keys that other tools wrote otherwise cannot be named through the C API,
/// so listings leave them out.
pub fn listable(stored: &[u8]) -> Option<&str> {
    std::str::from_utf8(stored)
        .ok()
        .filter(|key| !key.contains('\0'))
}

fn join(bucket: &str, key: &str) -> String {
    let mut joined = String::with_capacity(bucket.len() + 1 + key.len());
    joined.push_str(bucket);
    joined.push(SEPARATOR);
    joined.push_str(key);
    joined
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_keys_follow_the_python_scheme() {
        assert_eq!(&*stored(None, "k").unwrap(), "k");
        assert_eq!(&*stored(Some(""), "k").unwrap(), "k");
        assert_eq!(&*stored(Some("logs"), "k").unwrap(), "logs:k");
        assert_eq!(&*stored(Some("logs"), "a:b").unwrap(), "logs:a:b");
        let long = "k".repeat(500);
        assert_eq!(
            &*stored(Some("logs"), &long).unwrap(),
            format!("logs:{long}")
        );
    }

    #[test]
    fn bad_keys_and_buckets_are_rejected() {
        assert!(matches!(stored(None, ""), Err(Error::InvalidArgument(_))));
        assert!(matches!(
            stored(Some("a:b"), "k"),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(bucket(Some("a:")), Err(Error::InvalidArgument(_))));
    }

    #[test]
    fn list_prefixes_end_buckets_with_the_separator() {
        assert_eq!(list_prefix(Some("logs"), ""), "logs:");
        assert_eq!(list_prefix(Some("logs"), "2024"), "logs:2024");
        assert_eq!(list_prefix(None, "x"), "x");
        assert_eq!(list_prefix(None, ""), "");
        assert_eq!(unstored(Some("logs"), "logs:k"), "k");
        assert_eq!(unstored(None, "logs:k"), "logs:k");
        assert_eq!(in_bucket(Some("logs"), "logs:k"), Some("k"));
        assert_eq!(in_bucket(Some("logs"), "logs:"), None);
        assert_eq!(in_bucket(None, "logs:"), Some("logs:"));
    }

    #[test]
    fn unlistable_keys_are_those_c_cannot_name() {
        assert_eq!(listable(b"ok"), Some("ok"));
        assert_eq!(listable(b"nul\0inside"), None);
        assert_eq!(listable(&[0xff, 0xfe]), None);
    }
}
