//! Key ranges: etcd lists a range `[key, range_end)`, so a prefix and
//! "after this key" are written as ranges.

/// The first key after every key starting with `prefix`: etcd's range end
/// for a prefix, `"\0"` (to the end of the keyspace) for the empty one.
pub(super) fn range_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// The first key after `key`.
pub(super) fn just_after(key: &[u8]) -> Vec<u8> {
    let mut after = Vec::with_capacity(key.len() + 1);
    after.extend_from_slice(key);
    after.push(0);
    after
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_ends() {
        assert_eq!(range_end(b"logs:"), b"logs;");
        assert_eq!(range_end(b"a\xff\xff"), b"b");
        assert_eq!(range_end(b"\xff"), b"\0");
        assert_eq!(range_end(b""), b"\0");
        assert_eq!(just_after(b"k"), b"k\0");
    }
}
