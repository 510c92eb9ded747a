//! The embedded `local` backend on sled. Called directly on the caller's
//! thread: a hop through a runtime would cost more than the sled call.

use std::fs::File;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{Backend, Listing, Write};
use crate::config::LocalConfig;
use crate::error::{Error, Result};
use crate::keys;

const NAME: &str = "local";

pub struct Local {
    db: sled::Db,
    /// The store's directory, absolute.
    path: PathBuf,
    /// Declared after `db`, so that it is dropped after it.
    _released: AwaitUnlock,
}

impl Local {
    pub fn open(config: &LocalConfig) -> Result<Local> {
        let path: &Path = &config.filepath;
        // sled::open would take sled's default cache of 1 GiB, which a
        // large store fills: the cache is what bounds the process's memory.
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(config.cache_capacity)
            .open()
            .map_err(|e| Error::Io {
                backend: NAME.into(),
                key: String::new(),
                cause: format!("cannot open {}: {e}", path.display()),
            })?;
        Ok(Local {
            db,
            path: path.canonicalize().unwrap_or_else(|_| path.to_owned()),
            _released: AwaitUnlock::new(path),
        })
    }
}

/// Waits, when dropped, until sled has released the store's file lock.
///
/// sled 0.34 closes its file, and so releases the lock, with the last
/// reference to it, which can be a job of its I/O pool that ends a few
/// milliseconds after the `Db` is dropped. Without the wait, reopening a
/// store right after `tether_close` returned could fail with TETHER_IO.
pub(crate) struct AwaitUnlock {
    lock_file: PathBuf,
}

impl AwaitUnlock {
    /// For the sled store in `dir`.
    pub(crate) fn new(dir: &Path) -> AwaitUnlock {
        AwaitUnlock {
            lock_file: dir.join("db"),
        }
    }
}

impl Drop for AwaitUnlock {
    fn drop(&mut self) {
        // Bounded, so that a lock held by someone else cannot hang a close.
        let give_up = Instant::now() + Duration::from_secs(5);
        while let Ok(file) = File::open(&self.lock_file) {
            // sled locks with flock(2), which conflicts between open files
            // of one process too, as does File::try_lock.
            if file.try_lock().is_ok() || Instant::now() > give_up {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Backend for Local {
    fn name(&self) -> &'static str {
        NAME
    }

    fn write(&self, key: &str, value: &[u8]) -> Result<()> {
        self.db
            .insert(key, value)
            .map(drop)
            .map_err(|e| Error::io(NAME, key, e))
    }

    fn read(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.db
            .get(key)
            .map(|value| value.map(|v| v.to_vec()))
            .map_err(|e| Error::io(NAME, key, e))
    }

    fn update(&self, key: &str, value: &[u8]) -> Result<bool> {
        // sled retries the closure on a concurrent change (compare-and-swap),
        // and keeping `None` as `None` never creates the key.
        self.db
            .fetch_and_update(key, |old| old.map(|_| value))
            .map(|old| old.is_some())
            .map_err(|e| Error::io(NAME, key, e))
    }

    fn delete(&self, key: &str) -> Result<bool> {
        self.db
            .remove(key)
            .map(|old| old.is_some())
            .map_err(|e| Error::io(NAME, key, e))
    }

    fn list(&self, prefix: &str, start_after: Option<&str>, limit: usize) -> Result<Listing> {
        let start = match start_after {
            Some(after) if after >= prefix => Bound::Excluded(after.as_bytes()),
            _ => Bound::Included(prefix.as_bytes()),
        };
        let mut listing = Listing::default();
        for item in self.db.range::<&[u8], _>((start, Bound::Unbounded)) {
            let (key, value) = item.map_err(|e| Error::io(NAME, prefix, e))?;
            if !key.starts_with(prefix.as_bytes()) {
                break;
            }
            let Some(key) = keys::listable(&key) else {
                continue;
            };
            if listing.entries.len() == limit {
                listing.more = true;
                break;
            }
            listing.entries.push((key.to_owned(), value.to_vec()));
        }
        Ok(listing)
    }

    fn write_batch(&self, writes: &[Write]) -> Result<()> {
        let mut batch = sled::Batch::default();
        for write in writes {
            batch.insert(write.key.as_bytes(), write.value.as_slice());
        }
        self.db.apply_batch(batch).map_err(|e| {
            let first = writes.first().map_or("", |w| w.key.as_str());
            Error::io(
                NAME,
                first,
                format!("batch of {} writes: {e}", writes.len()),
            )
        })
    }

    fn destination(&self) -> String {
        format!("the store {}", self.path.display())
    }

    fn flush(&self) -> Result<()> {
        self.db
            .flush()
            .map(drop)
            .map_err(|e| Error::io(NAME, "", format!("flush: {e}")))
    }
}
