//! The `local` section.

use std::path::PathBuf;

use serde::Deserialize;

use crate::error::{Error, Result};

/// The embedded `local` backend.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocalConfig {
    /// The directory sled keeps its files in.
    pub filepath: PathBuf,
    /// Bytes of sled's page cache (`sled::Config::cache_capacity`): what
    /// bounds the `local` store's memory, beside the queue. sled's own
    /// default is 1 GiB.
    #[serde(deserialize_with = "cache_capacity")]
    pub cache_capacity: u64,
}

/// A `local.cache_capacity` that is no byte count (negative, fractional,
/// text) is an error that names the key, as a value out of range is.
fn cache_capacity<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<u64, D::Error> {
    use serde::de::Error as _;
    u64::deserialize(d).map_err(|e| {
        D::Error::custom(format!(
            "local.cache_capacity must be a number of bytes: {e}"
        ))
    })
}

impl LocalConfig {
    /// The default `cache_capacity`: 32 MiB.
    const DEFAULT_CACHE_CAPACITY: u64 = 32 * 1024 * 1024;
    /// The smallest `cache_capacity` accepted: 1 MiB.
    const MIN_CACHE_CAPACITY: u64 = 1024 * 1024;
    /// The largest `cache_capacity` accepted: 1 TiB.
    const MAX_CACHE_CAPACITY: u64 = 1 << 40;

    pub(super) fn validate(&self) -> Result<()> {
        if self.filepath.as_os_str().is_empty() {
            return Err(Error::Config("local.filepath is empty".into()));
        }
        let range = Self::MIN_CACHE_CAPACITY..=Self::MAX_CACHE_CAPACITY;
        if !range.contains(&self.cache_capacity) {
            return Err(Error::Config(format!(
                "local.cache_capacity must be between {} (1 MiB) and {} (1 TiB) bytes, not {}",
                range.start(),
                range.end(),
                self.cache_capacity
            )));
        }
        Ok(())
    }
}

impl Default for LocalConfig {
    fn default() -> Self {
        LocalConfig {
            filepath: PathBuf::from("tetherdb_data"),
            cache_capacity: Self::DEFAULT_CACHE_CAPACITY,
        }
    }
}
