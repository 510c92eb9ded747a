//! The `Backend` trait: everything that differs from one engine to the next.
//!
//! Keys here are stored keys (`bucket:key`), already validated. Each method
//! returns errors that name the backend and the key, since they reach the C
//! caller as they are.

pub mod local;
#[cfg(any(feature = "etcd", feature = "dynamodb"))]
mod remote;

#[cfg(feature = "dynamodb")]
pub mod dynamodb;
#[cfg(feature = "etcd")]
pub mod etcd;

use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
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

/// How much one [`Backend::write_batch`] call may carry: at most `writes`
/// writes, whose keys and values plus `overhead` each add up to at most
/// `bytes`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchLimit {
    pub writes: usize,
    pub bytes: usize,
    pub overhead: usize,
}

impl BatchLimit {
    /// No limit: the whole batch goes in one call.
    pub const NONE: BatchLimit = BatchLimit {
        writes: usize::MAX,
        bytes: usize::MAX,
        overhead: 0,
    };
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

    /// Applies queued writes with the engine's batch primitive. The worker
    /// passes writes within [`Backend::batch_limit`], each to a different
    /// key, each [`Backend::accepts`].
    fn write_batch(&self, writes: &[Write]) -> Result<()>;

    /// Makes everything written so far durable.
    fn flush(&self) -> Result<()>;

    /// What identifies where its writes go (a store's path, a cluster's
    /// endpoints, a table and its region): the outbox keeps queued writes
    /// for this destination and delivers them to no other.
    fn destination(&self) -> String;

    /// Fails with `TooLarge` when the engine would refuse this write for its
    /// size, so that a queued write is refused before it is queued.
    fn accepts(&self, _key: &str, _value: &[u8]) -> Result<()> {
        Ok(())
    }

    /// The engine's limits on one batch (etcd's `--max-txn-ops`, for one);
    /// the worker splits larger batches.
    fn batch_limit(&self) -> BatchLimit {
        BatchLimit::NONE
    }

    /// How long a call waits on the engine before it fails with
    /// `Unavailable`; also how long flush and stop keep retrying queued
    /// writes while the engine is unreachable. Engines that cannot be
    /// unreachable keep the default.
    fn timeout(&self) -> Duration {
        Duration::ZERO
    }
}

/// The engines a configuration names that this build has no code for.
pub const NOT_BUILT: &[&str] = &[
    #[cfg(not(feature = "etcd"))]
    "etcd",
    #[cfg(not(feature = "dynamodb"))]
    "dynamodb",
];

/// Opens every configured backend this build has, in the order of
/// [`Config::backend_names`]; remote ones share one tokio runtime.
pub(crate) fn open_all(config: &Config) -> Result<Vec<Arc<dyn Backend>>> {
    let mut backends: Vec<Arc<dyn Backend>> = Vec::new();
    if let Some(local) = config.local_config() {
        backends.push(Arc::new(local::Local::open(&local)?));
    }
    #[cfg(any(feature = "etcd", feature = "dynamodb"))]
    let runtime = remote::Runtime::shared_by(config)?;
    #[cfg(feature = "etcd")]
    if let (Some(section), Some(runtime)) = (&config.etcd, &runtime) {
        backends.push(Arc::new(etcd::Etcd::open(section, runtime.clone())?));
    }
    #[cfg(feature = "dynamodb")]
    if let (Some(section), Some(runtime)) = (&config.dynamodb, &runtime) {
        backends.push(Arc::new(dynamodb::DynamoDb::open(
            section,
            runtime.clone(),
        )?));
    }
    Ok(backends)
}
