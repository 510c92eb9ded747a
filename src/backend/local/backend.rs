//! The `local` backend: the sled store, opened again after an I/O error,
//! and its sweep. Called directly on the caller's thread: a hop through a
//! runtime would cost more than the sled call.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use super::store::Store;
use super::sweep::Sweeper;
use super::{LocalConfig, NAME};
use crate::backend::{
    now_ms, Access, Backend, BatchLimit, Condition, Deadline, Listing, Outcome, Ttl, Versioned,
    Write,
};
use crate::error::{Error, Result};
use crate::files::create_private_dir;

pub(crate) struct Local {
    reopening: Arc<Reopening>,
    /// Stops (and waits for) the sweep when the backend is dropped, before
    /// the store is closed.
    _sweeper: Sweeper,
}

/// The store, closed by an I/O error and opened again by the next call.
struct Reopening {
    /// The open store; `None` once an I/O error closed it and reopening
    /// failed, until a call reopens it.
    store: RwLock<Option<Arc<Store>>>,
    config: LocalConfig,
    /// The store's directory, absolute.
    path: PathBuf,
}

impl Local {
    pub(crate) fn open(config: &LocalConfig) -> Result<Local> {
        let path: &Path = &config.filepath;
        // Private to its owner when the library makes it: sled creates its
        // files with the umask's permissions, and the directory keeps them.
        create_private_dir(path)
            .map_err(|e| Error::io(NAME, "", format!("cannot create {}: {e}", path.display())))?;
        let store = Store::open(config)?;
        let reopening = Arc::new(Reopening {
            store: RwLock::new(Some(Arc::new(store))),
            config: config.clone(),
            path: path.canonicalize().unwrap_or_else(|_| path.to_owned()),
        });
        let sweeping = reopening.clone();
        // A failed round is tried again at the next: the error also reaches
        // the next call, which opens the store again.
        let _sweeper = Sweeper::start(move || {
            sweeping
                .with("", "sweep", |store| store.sweep(now_ms(), SWEEP_BATCH))
                .unwrap_or(false)
        });
        Ok(Local {
            reopening,
            _sweeper,
        })
    }

    fn with<T>(
        &self,
        key: &str,
        context: &str,
        op: impl FnOnce(&Store) -> sled::Result<T>,
    ) -> Result<T> {
        self.reopening.with(key, context, op)
    }
}

/// The most expired keys one round of the sweep removes.
const SWEEP_BATCH: usize = 1000;

impl Reopening {
    /// Runs `op` on the store. sled 0.34 fails every call after its first
    /// I/O error (a full disk, say) for as long as the store is open, so
    /// such an error closes it, and the next call opens it again: once the
    /// disk takes writes again, the same handle works.
    fn with<T>(
        &self,
        key: &str,
        context: &str,
        op: impl FnOnce(&Store) -> sled::Result<T>,
    ) -> Result<T> {
        let store = self.store()?;
        op(&store).map_err(|e| {
            let cause = match context {
                "" => e.to_string(),
                _ => format!("{context}: {e}"),
            };
            let sled::Error::Io(io) = &e else {
                return Error::io(NAME, key, cause);
            };
            let mut slot = self.store.write().unwrap_or_else(PoisonError::into_inner);
            if slot.as_ref().is_some_and(|open| Arc::ptr_eq(open, &store)) {
                *slot = None;
            }
            Error::storage(NAME, key, cause, io)
        })
    }

    fn store(&self) -> Result<Arc<Store>> {
        if let Some(store) = &*self.store.read().unwrap_or_else(PoisonError::into_inner) {
            return Ok(store.clone());
        }
        let mut slot = self.store.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(store) = &*slot {
            return Ok(store.clone());
        }
        let store = Arc::new(Store::open(&self.config)?);
        *slot = Some(store.clone());
        Ok(store)
    }
}

impl Backend for Local {
    fn name(&self) -> &'static str {
        NAME
    }

    fn write_if(&self, key: &str, value: &[u8], condition: Condition, ttl: Ttl) -> Result<Outcome> {
        self.with(key, "", |store| {
            store.write_if(key, value, condition, ttl, now_ms())
        })
    }

    fn read_versioned(
        &self,
        key: &str,
        with_value: bool,
        access: Access,
    ) -> Result<Option<Versioned>> {
        self.with(key, "", |store| {
            store.read(key, with_value, access, now_ms())
        })
    }

    fn touch(&self, key: &str, deadline: Option<Deadline>) -> Result<Outcome> {
        self.with(key, "", |store| store.touch(key, deadline, now_ms()))
    }

    fn delete_if(&self, key: &str, condition: Condition) -> Result<Outcome> {
        self.with(key, "", |store| store.delete_if(key, condition, now_ms()))
    }

    fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        keys_only: bool,
    ) -> Result<Listing> {
        self.with(prefix, "", |store| {
            store.list(prefix, start_after, limit, keys_only, now_ms())
        })
    }

    fn delete_prefix(&self, prefix: &str, keep_prefix_key: bool) -> Result<u64> {
        self.with(prefix, "", |store| {
            store.delete_prefix(prefix, keep_prefix_key, now_ms())
        })
    }

    fn write_batch(&self, writes: &[Write]) -> Result<()> {
        let first = writes.first().map_or("", |w| w.key.as_str());
        let context = format!("batch of {} writes", writes.len());
        self.with(first, &context, |store| store.write_batch(writes))
    }

    fn destination(&self) -> String {
        format!("the store {}", self.reopening.path.display())
    }

    fn flush(&self) -> Result<()> {
        self.with("", "flush", Store::flush)
    }

    /// sled takes a batch of any size, but one of thousands of writes costs
    /// more per write than a few hundred: its buffers outgrow the
    /// allocator's reuse and every batch faults in fresh pages (measured in
    /// docs/performance.md, local).
    fn batch_limit(&self) -> BatchLimit {
        BatchLimit {
            writes: 512,
            bytes: 1 << 20,
            overhead: 0,
        }
    }
}
