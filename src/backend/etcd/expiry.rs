//! Expiry on etcd (docs/design.md, Expiry): leases reclaim the space, and a
//! deadline key beside each expiring key says exactly when it expires, so
//! that the key is absent from its deadline on, whatever the lease's lag.
//!
//! - **Leases**: one per deadline bucket, shared by every key whose
//!   deadline falls in it, by every process (the lease id is the bucket's
//!   end, tagged, so processes agree on it without asking). A bucket is
//!   `width` seconds wide, the power of two nearest above an eighth of the
//!   ttl (at least 1 s): a key outlives its deadline in etcd's storage by
//!   at most an eighth of its ttl, and at most 17 leases per power of two
//!   of ttls are alive at once.
//! - **Deadline keys**: `"\0tetherdb.deadline\0" + key`, holding the
//!   deadline (ms since the epoch) and the sliding ttl (ms; 0: fixed), 8
//!   bytes each, big-endian, on the key's lease. It belongs to the key only
//!   while both have the same `mod_revision` (written by one transaction)
//!   and the key has one of these leases: a later write by another program
//!   leaves it stale, and stale ones go with their lease. No call can name
//!   one (a NUL), and listings skip them.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use etcd_client::{Compare, CompareOp, KeyValue};

use crate::backend::Deadline;

const DEADLINE_KEYS: &[u8] = b"\0tetherdb.deadline\0";

/// The high bits of the ids of the leases the library grants, which tell
/// them from the leases of other programs (etcd's own ids start with bits
/// of the member id).
const LEASE_TAG: i64 = 0x7e7d << 40;
const LEASE_END_BITS: i64 = (1 << 40) - 1;

/// etcd refuses longer leases (`MaxLeaseTTL`, about 285 years): a deadline
/// further away is kept as no deadline.
const MAX_LEASE_SECONDS: u64 = 9_000_000_000;

/// The deadline key of `key`.
pub(super) fn deadline_key(key: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(DEADLINE_KEYS.len() + key.len());
    bytes.extend_from_slice(DEADLINE_KEYS);
    bytes.extend_from_slice(key);
    bytes
}

pub(super) fn encode(deadline: Deadline) -> Vec<u8> {
    let mut bytes = deadline.at_ms.to_be_bytes().to_vec();
    bytes.extend_from_slice(&deadline.sliding_ms.to_be_bytes());
    bytes
}

fn decode(bytes: &[u8]) -> Option<Deadline> {
    let at_ms = u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?);
    let sliding_ms = u64::from_be_bytes(bytes.get(8..16)?.try_into().ok()?);
    Some(Deadline { at_ms, sliding_ms })
}

/// Whether `lease` is one the library granted: only a key on one can have
/// a deadline key.
pub(super) fn is_ours(lease: i64) -> bool {
    lease & !LEASE_END_BITS == LEASE_TAG
}

/// The deadline of `key`, read with `deadline_key` (its deadline key, if
/// any, read at the same revision): `None` when the deadline key is not
/// its own.
pub(super) fn deadline_of(key: &KeyValue, deadline_key: Option<&KeyValue>) -> Option<Deadline> {
    let deadline_key = deadline_key?;
    if !is_ours(key.lease()) || deadline_key.mod_revision() != key.mod_revision() {
        return None;
    }
    decode(deadline_key.value())
}

/// Holds in a transaction while the deadline key of `key` says it is
/// alive at `now_ms`: its value compares above `now_ms` followed by the
/// largest sliding ttl, byte by byte, only where its deadline is later.
pub(super) fn still_alive(key: &[u8], now_ms: u64) -> Compare {
    let mut now = now_ms.to_be_bytes().to_vec();
    now.extend_from_slice(&[0xff; 8]);
    Compare::value(deadline_key(key), CompareOp::Greater, now)
}

/// The lease for keys expiring at `deadline`, seen at `now_ms`: its id and
/// the ttl (s) to grant it with; `None` for a deadline too far for a lease.
pub(super) fn lease_for(deadline: Deadline, now_ms: u64) -> Option<(i64, i64)> {
    let ttl_s = deadline.at_ms.saturating_sub(now_ms).div_ceil(1000).max(1);
    let width = (ttl_s / 8).max(1).next_power_of_two();
    let end = deadline
        .at_ms
        .div_ceil(1000)
        .div_ceil(width)
        .checked_mul(width)?;
    // Until the bucket's end, and a second for the rounding of now.
    let grant = (end * 1000).saturating_sub(now_ms).div_ceil(1000) + 1;
    if grant > MAX_LEASE_SECONDS || end > LEASE_END_BITS as u64 {
        return None;
    }
    Some((LEASE_TAG | end as i64, grant as i64))
}

/// The leases this handle knows to exist, with their bucket's end (s), so
/// that a write grants a lease once per bucket, not once per write.
#[derive(Default)]
pub(super) struct Leases {
    known: Mutex<HashMap<i64, u64>>,
}

impl Leases {
    pub(super) fn is_known(&self, id: i64) -> bool {
        self.lock().contains_key(&id)
    }

    /// Remembers a granted lease, and forgets those whose bucket ended.
    pub(super) fn remember(&self, id: i64, now_ms: u64) {
        let mut known = self.lock();
        known.retain(|_, end| *end * 1000 > now_ms);
        known.insert(id, (id & LEASE_END_BITS) as u64);
    }

    /// Forgets every lease, after etcd said one it knew is gone (revoked by
    /// someone): they are granted again as needed.
    pub(super) fn forget_all(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, u64>> {
        self.known.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(at_ms: u64) -> Deadline {
        Deadline {
            at_ms,
            sliding_ms: 0,
        }
    }

    #[test]
    fn leases_end_after_the_deadline_within_an_eighth_of_the_ttl() {
        let now = 1_700_000_000_000;
        for ttl in [
            1,
            300,
            999,
            1_000,
            5_000,
            60_000,
            3_600_000,
            86_400_000 * 30,
        ] {
            let (id, grant) = lease_for(at(now + ttl), now).unwrap();
            assert!(is_ours(id));
            let end_ms = (id & LEASE_END_BITS) as u64 * 1000;
            assert!(end_ms >= now + ttl, "{ttl}: ends before the deadline");
            let slack = (end_ms - now - ttl).saturating_sub(1000);
            assert!(slack <= ttl / 8 + 1000, "{ttl}: {slack} ms late");
            assert!(
                grant as u64 * 1000 >= end_ms - now,
                "{ttl}: granted too short"
            );
        }
        // Deadlines close together share a lease.
        let (a, _) = lease_for(at(now + 60_000), now).unwrap();
        let (b, _) = lease_for(at(now + 60_400), now + 300).unwrap();
        assert_eq!(a, b);
        // Beyond what etcd grants: no lease.
        assert_eq!(lease_for(at(u64::MAX / 2), now), None);
        assert!(!is_ours(0) && !is_ours(0x694d_8f2b_3a5c_0001));
    }

    #[test]
    fn deadlines_encode_so_that_bytes_compare_as_numbers() {
        let deadline = Deadline {
            at_ms: 1_700_000_000_123,
            sliding_ms: 300,
        };
        assert_eq!(decode(&encode(deadline)), Some(deadline));
        let now = |ms: u64| {
            let mut b = ms.to_be_bytes().to_vec();
            b.extend_from_slice(&[0xff; 8]);
            b
        };
        assert!(encode(deadline) > now(deadline.at_ms - 1));
        assert!(encode(deadline) <= now(deadline.at_ms));
    }
}
