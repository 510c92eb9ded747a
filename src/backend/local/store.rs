//! The embedded `local` backend on sled. Called directly on the caller's
//! thread: a hop through a runtime would cost more than the sled call.

use std::fs::File;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use super::{LocalConfig, NAME};
use sled::IVec;

use super::entry::{self, Expiry, Meta};

use crate::backend::{Backend, Condition, Listing, Outcome, Versioned, Write};
use crate::error::{Error, Result};
use crate::files::create_private_dir;
use crate::keys;

pub(crate) struct Local {
    /// The open store; `None` once an I/O error closed it and reopening
    /// failed, until a call reopens it.
    store: RwLock<Option<Arc<Store>>>,
    config: LocalConfig,
    /// The store's directory, absolute.
    path: PathBuf,
}

/// The tree of entries: stored key to header and value (entry.rs).
const ENTRIES: &str = "tetherdb.entries";

/// Where stores written before entries had headers kept versions (stored
/// key to 8 bytes, big-endian); their values were in sled's default tree.
const OLD_VERSIONS: &str = "tetherdb.versions";

/// The version of a key written before versions existed.
const UNVERSIONED: u64 = 1;

struct Store {
    db: sled::Db,
    entries: sled::Tree,
    /// Shared by every change of one key, exclusive for a batch: a batch
    /// takes its versions before sled applies it, and no single-key change
    /// may come between, or a key could get an older version than it had.
    batches: RwLock<()>,
    /// Declared after `db`, so that it is dropped after it.
    _released: AwaitUnlock,
}

impl Local {
    pub(crate) fn open(config: &LocalConfig) -> Result<Local> {
        let path: &Path = &config.filepath;
        // Private to its owner when the library makes it: sled creates its
        // files with the umask's permissions, and the directory keeps them.
        create_private_dir(path)
            .map_err(|e| Error::io(NAME, "", format!("cannot create {}: {e}", path.display())))?;
        let store = Store::open(config)?;
        Ok(Local {
            store: RwLock::new(Some(Arc::new(store))),
            config: config.clone(),
            path: path.canonicalize().unwrap_or_else(|_| path.to_owned()),
        })
    }

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

impl Store {
    fn open(config: &LocalConfig) -> Result<Store> {
        let path: &Path = &config.filepath;
        remove_unfinished_snapshots(path);
        // sled::open would take sled's default cache of 1 GiB, which a
        // large store fills: the cache is what bounds the process's memory.
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(config.cache_capacity)
            .open()
            .map_err(|e| {
                let cause = format!("cannot open {}: {e}", path.display());
                match &e {
                    sled::Error::Io(io) => Error::storage(NAME, "", cause, io),
                    _ => Error::io(NAME, "", cause),
                }
            })?;
        let entries = db
            .open_tree(ENTRIES)
            .and_then(|entries| {
                migrate(&db, &entries)?;
                Ok(entries)
            })
            .map_err(|e| {
                let cause = format!("cannot open {}: {e}", path.display());
                match &e {
                    sled::Error::Io(io) => Error::storage(NAME, "", cause, io),
                    _ => Error::io(NAME, "", cause),
                }
            })?;
        Ok(Store {
            db,
            entries,
            batches: RwLock::new(()),
            _released: AwaitUnlock::new(path),
        })
    }
}

impl Store {
    /// A new version: the store's next id, above [`UNVERSIONED`], larger
    /// than every version any key of the store had. sled's id generator is
    /// store-wide and persistent: after a crash it resumes beyond any id it
    /// handed out.
    fn next_version(&self) -> sled::Result<u64> {
        Ok(self.db.generate_id()? + UNVERSIONED + 1)
    }

    /// The bytes stored under `key` (what a compare-and-swap expects), and
    /// their header unless they are absent or expired at `now_ms`.
    fn current(&self, key: &str, now_ms: u64) -> sled::Result<(Option<IVec>, Option<Meta>)> {
        let stored = self.entries.get(key)?;
        let live = match &stored {
            Some(bytes) => Some(decoded(key, bytes)?.0).filter(|m| !m.expiry.has_passed(now_ms)),
            None => None,
        };
        Ok((stored, live))
    }

    /// Taken by every change of one key: see `batches`.
    fn one_key_change(&self) -> RwLockReadGuard<'_, ()> {
        self.batches.read().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The header and value of `stored`; an error when the bytes are not an
/// entry, which only damage makes.
fn decoded<'a>(key: &str, stored: &'a [u8]) -> sled::Result<(Meta, &'a [u8])> {
    entry::decode(stored)
        .ok_or_else(|| sled::Error::Unsupported(format!("the entry of {key:?} is damaged")))
}

/// Moves the values of a store written before entries had headers (sled's
/// default tree, raw; their versions in [`OLD_VERSIONS`] where it exists)
/// into `entries`, a thousand at a time. Each chunk is written to
/// `entries` before it is removed from the default tree, and sled recovers
/// a prefix of what was written, so a move cut short by a crash starts
/// again where it stopped.
fn migrate(db: &sled::Db, entries: &sled::Tree) -> sled::Result<()> {
    if db.is_empty() {
        return Ok(());
    }
    let old_versions = match db.tree_names().contains(&IVec::from(OLD_VERSIONS)) {
        true => Some(db.open_tree(OLD_VERSIONS)?),
        false => None,
    };
    loop {
        let chunk = db.iter().take(1000).collect::<sled::Result<Vec<_>>>()?;
        if chunk.is_empty() {
            break;
        }
        let mut moved = sled::Batch::default();
        let mut removed = sled::Batch::default();
        for (key, value) in chunk {
            let version = match &old_versions {
                Some(tree) => tree.get(&key)?.and_then(|v| (*v).try_into().ok()),
                None => None,
            };
            let meta = Meta {
                version: version.map_or(UNVERSIONED, u64::from_be_bytes),
                expiry: Expiry::Never,
            };
            moved.insert(key.clone(), entry::encode(meta, &value));
            removed.remove(key);
        }
        entries.apply_batch(moved)?;
        db.apply_batch(removed)?;
    }
    if old_versions.is_some() {
        db.drop_tree(OLD_VERSIONS)?;
    }
    db.flush()?;
    Ok(())
}

/// Milliseconds since the Unix epoch: deadlines are wall-clock times,
/// since they outlive the process.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// sled 0.34 writes a snapshot to `snap.N.generating` and renames it once
/// complete. One that a failed write left (a full disk, a crash) makes the
/// store fail to open with "Read corrupted data" (sled #1527), though the
/// data is whole. Such a file is incomplete by definition: it is removed,
/// but only while nobody holds the store (its lock is free), since an open
/// store may be writing one.
fn remove_unfinished_snapshots(dir: &Path) {
    let Ok(lock) = File::open(dir.join("db")) else {
        return;
    };
    if lock.try_lock().is_err() {
        return;
    }
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            let _ = std::fs::remove_file(entry.path());
        }
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

    fn write_if(&self, key: &str, value: &[u8], condition: Condition) -> Result<Outcome> {
        self.with(key, "", |store| {
            let _change = store.one_key_change();
            // Read, check, then swap in the new entry only where the bytes
            // are still those read: after a change between, the swap fails
            // and the loop reads again. The version is taken after the
            // read, so it is above the one read.
            loop {
                let (stored, live) = store.current(key, now_ms())?;
                match (condition, live) {
                    (Condition::Present | Condition::Version(_), None) => {
                        return Ok(Outcome::Absent)
                    }
                    (Condition::Absent, Some(_)) => return Ok(Outcome::Conflict),
                    (Condition::Version(wanted), Some(meta)) if meta.version != wanted => {
                        return Ok(Outcome::Conflict)
                    }
                    _ => {}
                }
                let version = store.next_version()?;
                let meta = Meta {
                    version,
                    expiry: Expiry::Never,
                };
                let entry = entry::encode(meta, value);
                if store
                    .entries
                    .compare_and_swap(key, stored, Some(entry))?
                    .is_ok()
                {
                    return Ok(Outcome::Done(version));
                }
            }
        })
    }

    fn read_versioned(&self, key: &str, with_value: bool) -> Result<Option<Versioned>> {
        self.with(key, "", |store| {
            let Some(stored) = store.entries.get(key)? else {
                return Ok(None);
            };
            let (meta, value) = decoded(key, &stored)?;
            if meta.expiry.has_passed(now_ms()) {
                return Ok(None);
            }
            Ok(Some(Versioned {
                value: if with_value { value.to_vec() } else { Vec::new() },
                version: meta.version,
            }))
        })
    }

    fn delete_if(&self, key: &str, condition: Condition) -> Result<Outcome> {
        self.with(key, "", |store| {
            let _change = store.one_key_change();
            loop {
                let (stored, live) = store.current(key, now_ms())?;
                let Some(meta) = live else {
                    return Ok(Outcome::Absent);
                };
                if matches!(condition, Condition::Version(wanted) if wanted != meta.version) {
                    return Ok(Outcome::Conflict);
                }
                if store
                    .entries
                    .compare_and_swap(key, stored, None::<IVec>)?
                    .is_ok()
                {
                    return Ok(Outcome::Done(meta.version));
                }
            }
        })
    }

    fn list(&self, prefix: &str, start_after: Option<&str>, limit: usize) -> Result<Listing> {
        let start = match start_after {
            Some(after) if after >= prefix => Bound::Excluded(after.as_bytes()),
            _ => Bound::Included(prefix.as_bytes()),
        };
        self.with(prefix, "", |store| {
            let now = now_ms();
            let mut listing = Listing::default();
            for item in store.entries.range::<&[u8], _>((start, Bound::Unbounded)) {
                let (key, stored) = item?;
                if !key.starts_with(prefix.as_bytes()) {
                    break;
                }
                let Some(key) = keys::listable(&key) else {
                    continue;
                };
                let (meta, value) = decoded(key, &stored)?;
                if meta.expiry.has_passed(now) {
                    continue;
                }
                if listing.entries.len() == limit {
                    listing.more = true;
                    break;
                }
                listing.entries.push((key.to_owned(), value.to_vec()));
            }
            Ok(listing)
        })
    }

    fn write_batch(&self, writes: &[Write]) -> Result<()> {
        let first = writes.first().map_or("", |w| w.key.as_str());
        let context = format!("batch of {} writes", writes.len());
        self.with(first, &context, |store| {
            let _batch = store.batches.write().unwrap_or_else(PoisonError::into_inner);
            let mut batch = sled::Batch::default();
            for write in writes {
                let meta = Meta {
                    version: store.next_version()?,
                    expiry: Expiry::Never,
                };
                batch.insert(write.key.as_bytes(), entry::encode(meta, &write.value));
            }
            store.entries.apply_batch(batch)
        })
    }

    fn destination(&self) -> String {
        format!("the store {}", self.path.display())
    }

    fn flush(&self) -> Result<()> {
        self.with("", "flush", |store| store.db.flush().map(drop))
    }
}
