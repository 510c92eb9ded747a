//! The embedded `local` backend on sled. Called directly on the caller's
//! thread: a hop through a runtime would cost more than the sled call.

use std::fs::File;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use super::{LocalConfig, NAME};
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use sled::Transactional;

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

/// The tree beside the values that holds each stored key's version (8
/// bytes, big-endian): docs/design.md, Versions.
const VERSIONS: &str = "tetherdb.versions";

/// The version of a key the versions tree has no entry for: written before
/// versions existed.
const UNVERSIONED: u64 = 1;

struct Store {
    db: sled::Db,
    versions: sled::Tree,
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
        let versions = db.open_tree(VERSIONS).map_err(|e| {
            let cause = format!("cannot open {}: {e}", path.display());
            match &e {
                sled::Error::Io(io) => Error::storage(NAME, "", cause, io),
                _ => Error::io(NAME, "", cause),
            }
        })?;
        Ok(Store {
            db,
            versions,
            _released: AwaitUnlock::new(path),
        })
    }
}

type Conflictable<T> = std::result::Result<T, ConflictableTransactionError<()>>;

impl Store {
    /// Runs `op` as one sled transaction over the values and their
    /// versions. sled runs transactions under its global write lock, so
    /// the ids `put` takes are in commit order.
    fn transact<T>(
        &self,
        op: impl Fn(&TransactionalTree, &TransactionalTree) -> Conflictable<T>,
    ) -> sled::Result<T> {
        let values: &sled::Tree = &self.db;
        (values, &self.versions)
            .transaction(|(values, versions)| op(values, versions))
            .map_err(|e| match e {
                TransactionError::Storage(e) => e,
                TransactionError::Abort(()) => unreachable!("no transaction aborts"),
            })
    }
}

/// The version of `key` in a transaction; `None` when the key is absent.
fn version_in(
    values: &TransactionalTree,
    versions: &TransactionalTree,
    key: &str,
) -> Conflictable<Option<u64>> {
    if values.get(key)?.is_none() {
        return Ok(None);
    }
    Ok(Some(versions.get(key)?.map_or(UNVERSIONED, |v| decode(&v))))
}

/// Stores `value` with a new version: the store's next id, above
/// [`UNVERSIONED`], larger than every version any key of the store had.
fn put(
    values: &TransactionalTree,
    versions: &TransactionalTree,
    key: &str,
    value: &[u8],
) -> Conflictable<Outcome> {
    let version = values.generate_id()? + UNVERSIONED + 1;
    values.insert(key, value)?;
    versions.insert(key, &version.to_be_bytes())?;
    Ok(Outcome::Done(version))
}

/// How many keys `delete_prefix` removes in one transaction: a bound on
/// what it holds in memory and on how long it holds sled's write lock.
const DELETE_BATCH: usize = 256;

/// Up to `limit` keys from `from` on that start with `prefix` and that a
/// listing lists (`keys::listable`), in key order.
fn listable_keys(
    tree: &sled::Tree,
    prefix: &str,
    from: Bound<Vec<u8>>,
    limit: usize,
) -> sled::Result<Vec<String>> {
    let mut keys = Vec::new();
    for item in tree.range((from, Bound::Unbounded)) {
        let (key, _) = item?;
        if !key.starts_with(prefix.as_bytes()) || keys.len() == limit {
            break;
        }
        if let Some(key) = keys::listable(&key) {
            keys.push(key.to_owned());
        }
    }
    Ok(keys)
}

fn decode(bytes: &[u8]) -> u64 {
    bytes.try_into().map_or(UNVERSIONED, u64::from_be_bytes)
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
            store.transact(|values, versions| {
                if condition == Condition::Any {
                    return put(values, versions, key, value);
                }
                let Some(current) = version_in(values, versions, key)? else {
                    if matches!(condition, Condition::Present | Condition::Version(_)) {
                        return Ok(Outcome::Absent);
                    }
                    return put(values, versions, key, value);
                };
                match condition {
                    Condition::Absent => Ok(Outcome::Conflict),
                    Condition::Version(wanted) if wanted != current => Ok(Outcome::Conflict),
                    _ => put(values, versions, key, value),
                }
            })
        })
    }

    fn read_versioned(&self, key: &str, with_value: bool) -> Result<Option<Versioned>> {
        // Not a transaction, which would take sled's global write lock: the
        // version read again after the value says whether a change came
        // between (every change gives a new version).
        self.with(key, "", |store| loop {
            let before = store.versions.get(key)?;
            let Some(value) = store.db.get(key)? else {
                return Ok(None);
            };
            if store.versions.get(key)? == before {
                // sled hands out the value it holds without a copy: an
                // existence check copies nothing.
                let value = match with_value {
                    true => value.to_vec(),
                    false => Vec::new(),
                };
                return Ok(Some(Versioned {
                    value,
                    version: before.map_or(UNVERSIONED, |v| decode(&v)),
                }));
            }
        })
    }

    fn delete_if(&self, key: &str, condition: Condition) -> Result<Outcome> {
        self.with(key, "", |store| {
            store.transact(|values, versions| {
                let Some(current) = version_in(values, versions, key)? else {
                    return Ok(Outcome::Absent);
                };
                if matches!(condition, Condition::Version(wanted) if wanted != current) {
                    return Ok(Outcome::Conflict);
                }
                values.remove(key)?;
                versions.remove(key)?;
                Ok(Outcome::Done(current))
            })
        })
    }

    fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        keys_only: bool,
    ) -> Result<Listing> {
        let start = match start_after {
            Some(after) if after >= prefix => Bound::Excluded(after.as_bytes()),
            _ => Bound::Included(prefix.as_bytes()),
        };
        self.with(prefix, "", |store| {
            let db = &store.db;
            let mut listing = Listing::default();
            for item in db.range::<&[u8], _>((start, Bound::Unbounded)) {
                let (key, value) = item?;
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
                // sled hands out the value it holds without a copy; only
                // a listing that gives values copies them.
                let value = match keys_only {
                    true => Vec::new(),
                    false => value.to_vec(),
                };
                listing.entries.push((key.to_owned(), value));
            }
            Ok(listing)
        })
    }

    fn delete_prefix(&self, prefix: &str, keep_prefix_key: bool) -> Result<u64> {
        let mut deleted = 0;
        let mut from = match keep_prefix_key {
            true => Bound::Excluded(prefix.as_bytes().to_vec()),
            false => Bound::Included(prefix.as_bytes().to_vec()),
        };
        loop {
            let batch = self.with(prefix, "", |store| {
                listable_keys(&store.db, prefix, from.clone(), DELETE_BATCH)
            })?;
            let Some(last) = batch.last() else {
                return Ok(deleted);
            };
            from = Bound::Excluded(last.as_bytes().to_vec());
            let context = format!("deleting a batch of {} keys", batch.len());
            deleted += self.with(prefix, &context, |store| {
                store.transact(|values, versions| {
                    let mut removed = 0;
                    for key in &batch {
                        // Gone since it was listed: not counted.
                        if values.remove(key.as_bytes())?.is_some() {
                            removed += 1;
                        }
                        versions.remove(key.as_bytes())?;
                    }
                    Ok(removed)
                })
            })?;
            if batch.len() < DELETE_BATCH {
                return Ok(deleted);
            }
        }
    }

    fn write_batch(&self, writes: &[Write]) -> Result<()> {
        let first = writes.first().map_or("", |w| w.key.as_str());
        let context = format!("batch of {} writes", writes.len());
        self.with(first, &context, |store| {
            store.transact(|values, versions| {
                for write in writes {
                    put(values, versions, &write.key, &write.value)?;
                }
                Ok(())
            })
        })
    }

    fn destination(&self) -> String {
        format!("the store {}", self.path.display())
    }

    fn flush(&self) -> Result<()> {
        self.with("", "flush", |store| store.db.flush().map(drop))
    }
}
