//! Batch shaping: what one engine call carries.

use std::collections::HashSet;

use super::lane::Queued;
use crate::backend::{BatchLimit, Write};

/// How many of the first `writes` fit in one batch; at least one.
pub(super) fn piece_len(writes: &[Write], limit: BatchLimit) -> usize {
    let mut bytes = 0usize;
    let fitting = writes
        .iter()
        .take(limit.writes)
        .take_while(|w| {
            bytes = bytes.saturating_add(w.key.len() + w.value.len() + limit.overhead);
            bytes <= limit.bytes
        })
        .count();
    fitting.max(1)
}

/// The writes with only the last one to each key kept, in their order, and
/// their sequence numbers: one batch may not touch a key twice on etcd or
/// DynamoDB, and the last queued write to a key wins anyway.
pub(super) fn last_write_per_key(batch: Vec<Queued>) -> (Vec<u64>, Vec<Write>) {
    let mut seen = HashSet::with_capacity(batch.len());
    let kept: Vec<bool> = batch
        .iter()
        .rev()
        .map(|q| seen.insert(q.write.key.as_str()))
        .collect();
    batch
        .into_iter()
        .zip(kept.into_iter().rev())
        .filter_map(|(q, kept)| kept.then_some((q.seq, q.write)))
        .unzip()
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn queued(key: &str, value: &str) -> Queued {
        Queued {
            seq: 0,
            queued_at: Instant::now(),
            write: Write {
                key: key.into(),
                value: value.into(),
                deadline: None,
            },
        }
    }

    #[test]
    fn duplicate_keys_collapse_to_the_last_write_in_order() {
        let writes = vec![
            queued("a", "1"),
            queued("b", "1"),
            queued("a", "2"),
            queued("c", "1"),
        ];
        let kept: Vec<(String, Vec<u8>)> = last_write_per_key(writes)
            .1
            .into_iter()
            .map(|w| (w.key, w.value))
            .collect();
        let pair = |k: &str, v: &str| (k.to_string(), v.as_bytes().to_vec());
        assert_eq!(kept, [pair("b", "1"), pair("a", "2"), pair("c", "1")]);
    }

    #[test]
    fn pieces_keep_to_the_batch_limit() {
        let writes: Vec<Write> = (0..10)
            .map(|i| queued(&format!("k{i}"), &"x".repeat(98)).write)
            .collect();
        let limit = |writes, bytes| BatchLimit {
            writes,
            bytes,
            overhead: 0,
        };
        assert_eq!(piece_len(&writes, BatchLimit::none()), 10);
        assert_eq!(piece_len(&writes, limit(3, usize::MAX)), 3);
        assert_eq!(piece_len(&writes, limit(10, 450)), 4);
        assert_eq!(
            piece_len(&writes, limit(10, 50)),
            1,
            "one write always goes"
        );
    }
}
