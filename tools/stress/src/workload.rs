//! Keys and values whose every version is recognisable, so that the
//! read-back check is exact.
//!
//! Thread `t` alone writes its keys, `RUN-TTT-IIIIIIIIII` (the run's random
//! tag, the thread, the key's index), so the last value of each key is the
//! last one that thread wrote, whatever the interleaving. A value is a
//! 16-byte header — a 64-bit fingerprint of (run, thread, index, version),
//! the version, the index — then a body fixed for the thread. A stale
//! value, one of another key, another run's or a torn one never matches.

/// The tool tracks per key the version of its last write; this bit marks
/// a key whose last write failed in a way that leaves its outcome unknown
/// (a direct write that timed out may have been applied).
pub const UNCERTAIN: u32 = 1 << 31;
pub const VERSION: u32 = UNCERTAIN - 1;
pub const HEADER: usize = 16;

/// SplitMix64's finaliser: a good mix of 64 bits.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

pub fn fingerprint(run: u64, thread: usize, index: u64, version: u32) -> u64 {
    mix64(mix64(mix64(run ^ thread as u64) ^ index) ^ version as u64)
}

/// A small, fast generator for the mix's choices: xorshift64*.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(mix64(seed) | 1)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        // Multiply-shift: unbiased enough for picking keys and kinds.
        ((self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) as u128 * n as u128) >> 64) as u64
    }
}

/// The key of `index` for thread `thread` of run `run`.
pub fn key(run: u64, thread: usize, index: u64) -> impl std::fmt::Display {
    KeyName(run, thread, index)
}

struct KeyName(u64, usize, u64);

impl std::fmt::Display for KeyName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{:03}-{:010}", run_tag(self.0), self.1, self.2)
    }
}

/// The run's part of every key: the prefix that lists them.
pub fn run_tag(run: u64) -> String {
    format!("{:08x}", run as u32)
}

/// Parses a key back into (thread, index); `None` for a key of another run
/// or another shape.
pub fn parse_key(run: u64, key: &str) -> Option<(usize, u64)> {
    let rest = key.strip_prefix(&run_tag(run))?.strip_prefix('-')?;
    let (thread, index) = rest.split_once('-')?;
    Some((thread.parse().ok()?, index.parse().ok()?))
}

/// One thread's values: a buffer whose body is set once.
pub struct Values {
    run: u64,
    thread: usize,
    buf: Vec<u8>,
}

impl Values {
    pub fn new(run: u64, thread: usize, size: usize) -> Values {
        let mut buf = vec![0u8; size];
        let mut state = mix64(run ^ (thread as u64).rotate_left(32));
        for chunk in buf[HEADER..].chunks_mut(8) {
            state = mix64(state);
            chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
        }
        Values { run, thread, buf }
    }

    /// The value of version `version` of key `index`.
    pub fn of(&mut self, index: u64, version: u32) -> &[u8] {
        let fp = fingerprint(self.run, self.thread, index, version);
        self.buf[..8].copy_from_slice(&fp.to_le_bytes());
        self.buf[8..12].copy_from_slice(&version.to_le_bytes());
        self.buf[12..16].copy_from_slice(&(index as u32).to_le_bytes());
        &self.buf
    }

    /// The version `value` is of key `index`, or `None` when it is no
    /// value this thread wrote for that key.
    pub fn version_in(&self, index: u64, value: &[u8]) -> Option<u32> {
        if value.len() != self.buf.len() || value[HEADER..] != self.buf[HEADER..] {
            return None;
        }
        let version = u32::from_le_bytes(value[8..12].try_into().unwrap());
        let fp = u64::from_le_bytes(value[..8].try_into().unwrap());
        let idx = u32::from_le_bytes(value[12..16].try_into().unwrap());
        (fp == fingerprint(self.run, self.thread, index, version) && idx == index as u32)
            .then_some(version)
    }
}

/// What a value read for a key says, given the version last written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    /// The last version written.
    Current,
    /// An earlier version: acceptable only while a later write may still be
    /// queued, or when the last write's outcome is unknown.
    Earlier,
    /// No version of this key's: a wrong value.
    Wrong,
}

pub fn classify(values: &Values, index: u64, tracked: u32, value: &[u8]) -> Seen {
    let last = tracked & VERSION;
    match values.version_in(index, value) {
        Some(v) if v == last => Seen::Current,
        Some(v) if v >= 1 && v < last => Seen::Earlier,
        _ => Seen::Wrong,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_version_is_told_apart() {
        let mut values = Values::new(42, 3, 100);
        let v1 = values.of(7, 1).to_vec();
        let v2 = values.of(7, 2).to_vec();
        assert_eq!(values.version_in(7, &v1), Some(1));
        assert_eq!(values.version_in(7, &v2), Some(2));
        assert_eq!(values.version_in(8, &v2), None, "another key's value");
        assert_eq!(classify(&values, 7, 2, &v2), Seen::Current);
        assert_eq!(classify(&values, 7, 2, &v1), Seen::Earlier);
        assert_eq!(
            classify(&values, 7, 1, &v2),
            Seen::Wrong,
            "a version never written"
        );
        let other_thread = Values::new(42, 4, 100);
        assert_eq!(other_thread.version_in(7, &v1), None);
        let other_run = Values::new(43, 3, 100);
        assert_eq!(other_run.version_in(7, &v1), None);
        let mut torn = v2.clone();
        torn[50] ^= 1;
        assert_eq!(values.version_in(7, &torn), None);
        assert_eq!(values.version_in(7, &v2[..99]), None);
    }

    #[test]
    fn keys_parse_back() {
        let name = key(0xdead_beef_0123, 5, 99).to_string();
        assert_eq!(name, "beef0123-005-0000000099");
        assert_eq!(parse_key(0xdead_beef_0123, &name), Some((5, 99)));
        assert_eq!(parse_key(1, &name), None);
    }

    #[test]
    fn rng_stays_below_its_bound() {
        let mut rng = Rng::new(1);
        assert!((0..10_000).all(|_| rng.below(7) < 7));
    }
}
