//! The `Backend` trait: everything that differs from one engine to the next.
//!
//! Keys here are stored keys (`bucket:key`), already validated. Each method
//! returns errors that name the backend and the key, since they reach the C
//! caller as they are.

pub mod local;

use crate::error::Result;

/// One queued write, as the worker hands it to a backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Write {
    pub key: String,
    pub value: Vec<u8>,
}

/// Up to `limit` stored entries of one listing call, and whether more
/// matching keys remain after them.
#[derive(Debug, Default)]
pub struct Listing {
    pub entries: Vec<(String, Vec<u8>)>,
    pub more: bool,
}

/// A storage engine. Implementations are shared between the callers'
/// threads and the worker, so every method takes `&self`.
pub trait Backend: Send + Sync {
    /// The name calls use to address it, e.g. `"local"`.
    fn name(&self) -> &'static str;

    /// Stores `value` under `key`, replacing any value.
    fn write(&self, key: &str, value: &[u8]) -> Result<()>;

    /// The value under `key`, or `None`.
    fn read(&self, key: &str) -> Result<Option<Vec<u8>>>;

    /// Replaces the value under `key` only where the key exists, atomically.
    /// Returns `false` when the key is absent (nothing is written).
    fn update(&self, key: &str, value: &[u8]) -> Result<bool>;

    /// Removes `key`. Returns `false` when there was nothing to remove.
    fn delete(&self, key: &str) -> Result<bool>;

    /// Up to `limit` entries whose keys start with `prefix`, after
    /// `start_after` when given, in the engine's listing order.
    fn list(&self, prefix: &str, start_after: Option<&str>, limit: usize) -> Result<Listing>;

    /// Applies queued writes in order (the last write to a key wins), with
    /// the engine's batch primitive.
    fn write_batch(&self, writes: &[Write]) -> Result<()>;

    /// Makes everything written so far durable.
    fn flush(&self) -> Result<()>;
}
