//! How `local` stores a value: a small header (its version, and its
//! deadline when it expires) before the value's bytes, in one sled entry,
//! so that one compare-and-swap checks a condition and writes
//! (docs/design.md, Versions).
//!
//! | byte 0 (`kind`) | then | size |
//! |---|---|---|
//! | `PLAIN` (0) | version | 9 bytes |
//! | `EXPIRING` (1) | version, deadline | 17 bytes |
//! | `SLIDING` (2) | version, deadline, ttl | 25 bytes |
//!
//! Numbers are 8 bytes, big-endian; a deadline is in milliseconds since the
//! Unix epoch, a ttl in milliseconds.

const PLAIN: u8 = 0;
const EXPIRING: u8 = 1;
const SLIDING: u8 = 2;

use crate::backend::Deadline;

/// An entry's header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Meta {
    pub version: u64,
    pub deadline: Option<Deadline>,
}

impl Meta {
    /// Whether the entry is gone at `now_ms`.
    pub(super) fn has_expired(&self, now_ms: u64) -> bool {
        self.deadline.is_some_and(|d| d.has_passed(now_ms))
    }
}

/// The stored bytes for `value` with header `meta`.
pub(super) fn encode(meta: Meta, value: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(25 + value.len());
    let numbers = match meta.deadline {
        None => {
            bytes.push(PLAIN);
            vec![meta.version]
        }
        Some(Deadline {
            at_ms,
            sliding_ms: 0,
        }) => {
            bytes.push(EXPIRING);
            vec![meta.version, at_ms]
        }
        Some(Deadline { at_ms, sliding_ms }) => {
            bytes.push(SLIDING);
            vec![meta.version, at_ms, sliding_ms]
        }
    };
    for number in numbers {
        bytes.extend_from_slice(&number.to_be_bytes());
    }
    bytes.extend_from_slice(value);
    bytes
}

/// The header and the value of stored bytes; `None` when they are not an
/// entry (damaged).
pub(super) fn decode(bytes: &[u8]) -> Option<(Meta, &[u8])> {
    let (&kind, rest) = bytes.split_first()?;
    let numbers = match kind {
        PLAIN => 1,
        EXPIRING => 2,
        SLIDING => 3,
        _ => return None,
    };
    if rest.len() < 8 * numbers {
        return None;
    }
    let (head, value) = rest.split_at(8 * numbers);
    let number = |i: usize| u64::from_be_bytes(head[8 * i..8 * i + 8].try_into().unwrap());
    let deadline = (numbers > 1).then(|| Deadline {
        at_ms: number(1),
        sliding_ms: if numbers > 2 { number(2) } else { 0 },
    });
    let meta = Meta {
        version: number(0),
        deadline,
    };
    Some((meta, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_of_header_decodes_as_encoded() {
        for deadline in [
            None,
            Some(Deadline {
                at_ms: 7,
                sliding_ms: 0,
            }),
            Some(Deadline {
                at_ms: u64::MAX,
                sliding_ms: 300,
            }),
        ] {
            let meta = Meta {
                version: 42,
                deadline,
            };
            for value in [&b""[..], b"v", &[0u8; 100]] {
                assert_eq!(decode(&encode(meta, value)), Some((meta, value)));
            }
        }
    }

    #[test]
    fn damaged_entries_do_not_decode() {
        for bytes in [&b""[..], &[3, 0, 0], &[PLAIN, 1, 2], &[SLIDING; 24]] {
            assert_eq!(decode(bytes), None, "{bytes:?}");
        }
    }
}
