//! Counters (`tether_increment`, `tether_counter_total`): the text a
//! counter is stored as, the names of a sharded counter's keys, and the
//! increment every engine runs unless it has a primitive of its own: a
//! loop of reading the value with its version, then writing the sum only
//! at that version (docs/design.md, Counters).

use std::hash::{BuildHasher, RandomState};
use std::time::{Duration, Instant};

use crate::backend::{Access, Backend, Condition, Outcome, Ttl, Versioned};
use crate::error::{Error, Quoted, Result};

/// The most keys a counter may be split over: `tether_counter_total`
/// reads each, one request apiece on a remote engine.
pub(crate) const MAX_SHARDS: u32 = 1024;

/// What marks a shard's key: shard `i` of the counter `visits` is
/// `visits#shard{i}`, in the counter's bucket.
pub(crate) const SHARD_MARK: &str = "#shard";

/// How long an increment on an engine without a timeout (`local`) keeps
/// trying when other writers change the key between its read and its
/// write. Each lost round means another writer's change went in, so the
/// racers as a whole always progress; this only bounds one caller's bad
/// luck.
const IN_PROCESS_BOUND: Duration = Duration::from_secs(5);

/// After a lost round on a remote engine, the pause is drawn at random
/// below a window of as long as the round took, doubled at each further
/// loss up to [`MAX_WINDOW_ROUNDS`] rounds, and never above [`MAX_PAUSE`]:
/// racers spread over the next rounds instead of colliding again, at the
/// pace of the server they share, however fast it answers. (Measured, 16
/// racers in two processes: 1,600 increments took 6.4 to 7.2 s on etcd,
/// 8.6 to 9.7 without pauses; 320 took 13 s on moto, 26 without.)
const MAX_WINDOW_ROUNDS: u32 = 16;
const MAX_PAUSE: Duration = Duration::from_secs(1);

/// The counter stored as `value`: an optional `+` or `-` and one or more
/// ASCII digits (leading zeros allowed), nothing else, within a signed
/// 64-bit integer. Exactly what Rust's `i64::from_str` accepts.
pub(crate) fn parse(value: &[u8]) -> Option<i64> {
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// The text a counter is stored as: decimal, `-` for a negative one, no
/// `+`, no leading zero.
pub(crate) fn format(count: i64) -> String {
    count.to_string()
}

/// The key (without the bucket) of shard `index` of counter `key`.
pub(crate) fn shard_key(key: &str, index: u32) -> String {
    format!("{key}{SHARD_MARK}{index}")
}

/// A number below `bound` (above 0), at random: which shard an increment
/// adds to, how long a pause lasts. Not for secrets.
pub(crate) fn random_below(bound: u64) -> u64 {
    // Each RandomState has keys of its own (random per thread, then one
    // more per state), so each hash is a fresh draw.
    RandomState::new().hash_one(()) % bound.max(1)
}

/// The counter stored under `key` on `backend`: 0 when the key is absent,
/// `Conflict` when its value is not a counter.
pub(crate) fn read(backend: &dyn Backend, key: &str) -> Result<i64> {
    match backend.read_versioned(key, true, Access::Peek)? {
        None => Ok(0),
        Some(Versioned { value, .. }) => {
            parse(&value).ok_or_else(|| not_a_number(backend.name(), key, &value))
        }
    }
}

/// Adds `delta` to the counter under `key` by reading its value and
/// version, then writing the sum only at that version (or only where the
/// key is still absent), until a round goes through unchanged by others:
/// the default of [`Backend::increment`].
pub(crate) fn increment<B: Backend + ?Sized>(backend: &B, key: &str, delta: i64) -> Result<i64> {
    let started = Instant::now();
    let remote = backend.is_remote();
    let bound = match remote {
        true => backend.timeout(),
        false => IN_PROCESS_BOUND,
    };
    let mut lost = 0u32;
    loop {
        let round = Instant::now();
        let (count, condition) = match backend.read_versioned(key, true, Access::Peek)? {
            None => (0, Condition::Absent),
            Some(read) => {
                let count = parse(&read.value)
                    .ok_or_else(|| not_a_number(backend.name(), key, &read.value))?;
                (count, Condition::Version(read.version))
            }
        };
        let sum = count.checked_add(delta).ok_or_else(|| {
            Error::conflict(
                backend.name(),
                key,
                format!("{count} + {delta} is beyond a 64-bit integer"),
            )
        })?;
        match backend.write_if(key, format(sum).as_bytes(), condition, Ttl::Keep)? {
            Outcome::Done(_) => return Ok(sum),
            // Another writer changed (or removed, or created) the key
            // between the read and the write: nothing was written.
            Outcome::Conflict | Outcome::Absent => lost += 1,
        }
        let pause = match remote {
            // Past half its time, a caller that kept losing stops giving
            // way: the pauses favour callers that lost least, and without
            // this one could lose to newcomers until its time is up.
            true if started.elapsed() > bound / 2 => Duration::ZERO,
            true => {
                let rounds = (1u32 << (lost - 1).min(31)).min(MAX_WINDOW_ROUNDS);
                let window = round.elapsed().saturating_mul(rounds).min(MAX_PAUSE);
                Duration::from_micros(random_below(window.as_micros() as u64 + 1))
            }
            false => Duration::ZERO,
        };
        if started.elapsed() + pause >= bound {
            return Err(Error::unavailable(
                backend.name(),
                key,
                format!(
                    "increment not applied: other writers changed the key between each of \
                     {lost} reads and writes within {bound:?}; the call may be retried"
                ),
            ));
        }
        match remote {
            true => std::thread::sleep(pause),
            // Lets the writer that won run on, rather than read again at
            // once in the middle of its change.
            false => std::thread::yield_now(),
        }
    }
}

/// The error for a stored value that is not a counter, quoting a long
/// one in part.
fn not_a_number(backend: &str, key: &str, value: &[u8]) -> Error {
    let shown = match std::str::from_utf8(value) {
        Ok(text) => Quoted(text).to_string(),
        Err(_) => format!("{} bytes that are not UTF-8", value.len()),
    };
    Error::conflict(
        backend,
        key,
        format!("the value stored, {shown}, is not a decimal 64-bit integer"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_parse_from_an_optional_sign_and_digits_only() {
        for (text, count) in [
            ("0", 0),
            ("42", 42),
            ("-7", -7),
            ("+5", 5),
            ("007", 7),
            ("-0", 0),
            ("9223372036854775807", i64::MAX),
            ("-9223372036854775808", i64::MIN),
        ] {
            assert_eq!(parse(text.as_bytes()), Some(count), "{text:?}");
        }
        for text in [
            "",
            "-",
            "+",
            " 5",
            "5 ",
            "5\n",
            "1_000",
            "1.0",
            "1e3",
            "0x10",
            "five",
            "٣",
            "9223372036854775808",
            "-9223372036854775809",
        ] {
            assert_eq!(parse(text.as_bytes()), None, "{text:?}");
        }
        assert_eq!(parse(b"\xff1"), None);
        assert_eq!(format(-42), "-42");
        assert_eq!(format(7), "7");
    }

    #[test]
    fn shard_keys_follow_the_counter_key() {
        assert_eq!(shard_key("visits", 0), "visits#shard0");
        assert_eq!(shard_key("a:b", 1023), "a:b#shard1023");
    }

    #[test]
    fn random_draws_stay_below_their_bound_and_vary() {
        let draws: Vec<u64> = (0..200).map(|_| random_below(8)).collect();
        assert!(draws.iter().all(|&d| d < 8));
        assert!((0..8).all(|n| draws.contains(&n)), "{draws:?}");
        assert_eq!(random_below(1), 0);
        assert_eq!(random_below(0), 0);
    }

    #[test]
    fn messages_quote_a_long_value_in_part() {
        let long = not_a_number("local", "k", "x".repeat(1000).as_bytes());
        assert!(long.to_string().contains("(1000 bytes)"), "{long}");
        let binary = not_a_number("local", "k", b"\xff\xfe");
        assert!(
            binary.to_string().contains("2 bytes that are not UTF-8"),
            "{binary}"
        );
        assert_eq!(binary.status(), crate::Status::Conflict);
    }
}
