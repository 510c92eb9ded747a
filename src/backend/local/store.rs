//! The sled store of `local`: one tree of entries (entry.rs), changed by
//! compare-and-swap, and an index of deadlines that the sweep follows.

use std::fs::File;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{PoisonError, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use sled::IVec;

use super::entry::{self, Meta};
use super::{LocalConfig, NAME};
use crate::backend::{Access, Condition, Deadline, Listing, Outcome, Ttl, Versioned, Write};
use crate::error::{Error, Result};
use crate::keys;

/// The tree of entries: stored key to header and value (entry.rs).
const ENTRIES: &str = "tetherdb.entries";

/// The index of deadlines: the deadline (8 bytes, big-endian) followed by
/// the stored key, to nothing. Written before the entry, so that every
/// deadline is indexed; an index entry whose key has another deadline by
/// now is stale, and the sweep drops it.
const DEADLINES: &str = "tetherdb.deadlines";

/// Where stores written before entries had headers kept versions (stored
/// key to 8 bytes, big-endian); their values were in sled's default tree.
const OLD_VERSIONS: &str = "tetherdb.versions";

/// The version of a key written before versions existed.
const UNVERSIONED: u64 = 1;

/// How many keys `delete_prefix` reads at a time: a bound on what it holds
/// in memory.
const DELETE_BATCH: usize = 256;

pub(super) struct Store {
    db: sled::Db,
    entries: sled::Tree,
    deadlines: sled::Tree,
    /// Shared by every change of one key, exclusive for a batch: a batch
    /// takes its versions before sled applies it, and no single-key change
    /// may come between, or a key could get an older version than it had.
    batches: RwLock<()>,
    /// Declared after `db`, so that it is dropped after it.
    _released: AwaitUnlock,
}

impl Store {
    pub(super) fn open(config: &LocalConfig) -> Result<Store> {
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
        let trees = db
            .open_tree(ENTRIES)
            .and_then(|entries| {
                migrate(&db, &entries)?;
                Ok((entries, db.open_tree(DEADLINES)?))
            })
            .map_err(|e| {
                let cause = format!("cannot open {}: {e}", path.display());
                match &e {
                    sled::Error::Io(io) => Error::storage(NAME, "", cause, io),
                    _ => Error::io(NAME, "", cause),
                }
            })?;
        let (entries, deadlines) = trees;
        Ok(Store {
            db,
            entries,
            deadlines,
            batches: RwLock::new(()),
            _released: AwaitUnlock::new(path),
        })
    }
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
            Some(bytes) => Some(decoded(key, bytes)?.0).filter(|m| !m.has_expired(now_ms)),
            None => None,
        };
        Ok((stored, live))
    }

    /// Taken by every change of one key: see `batches`.
    fn one_key_change(&self) -> RwLockReadGuard<'_, ()> {
        self.batches.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Indexes `deadline` of `key` for the sweep, before the entry has it.
    fn index(&self, key: &[u8], deadline: Option<Deadline>) -> sled::Result<()> {
        if let Some(deadline) = deadline {
            self.deadlines.insert(index_key(deadline.at_ms, key), &[])?;
        }
        Ok(())
    }

    /// Swaps `stored` for `key`'s new entry: `false` when another change
    /// came since it was read.
    fn swap(
        &self,
        key: &str,
        stored: Option<IVec>,
        new: Option<(Meta, &[u8])>,
    ) -> sled::Result<bool> {
        let new = new.map(|(meta, value)| entry::encode(meta, value));
        Ok(self.entries.compare_and_swap(key, stored, new)?.is_ok())
    }

    /// Stores `value` where `condition` holds: read, check, then swap in the
    /// new entry only where the bytes are still those read; after a change
    /// between, the swap fails and the loop reads again. The version is
    /// taken after the read, so it is above the one read.
    pub(super) fn write_if(
        &self,
        key: &str,
        value: &[u8],
        condition: Condition,
        ttl: Ttl,
        now_ms: u64,
    ) -> sled::Result<Outcome> {
        let _change = self.one_key_change();
        loop {
            let (stored, live) = self.current(key, now_ms)?;
            match (condition, live) {
                (Condition::Present | Condition::Version(_), None) => return Ok(Outcome::Absent),
                (Condition::Absent, Some(_)) => return Ok(Outcome::Conflict),
                (Condition::Version(wanted), Some(meta)) if meta.version != wanted => {
                    return Ok(Outcome::Conflict)
                }
                _ => {}
            }
            let deadline = match ttl {
                Ttl::Clear => None,
                Ttl::Keep => live.and_then(|meta| meta.deadline),
                Ttl::Set(deadline) => Some(deadline),
            };
            let meta = Meta {
                version: self.next_version()?,
                deadline,
            };
            if ttl != Ttl::Keep {
                self.index(key.as_bytes(), deadline)?;
            }
            if self.swap(key, stored, Some((meta, value)))? {
                return Ok(Outcome::Done(meta.version));
            }
        }
    }

    /// The live entry under `key`; a read moves a sliding deadline (keeping
    /// the version: the value is the same), which the sweep indexes when it
    /// comes to the older one.
    pub(super) fn read(
        &self,
        key: &str,
        with_value: bool,
        access: Access,
        now_ms: u64,
    ) -> sled::Result<Option<Versioned>> {
        loop {
            let Some(stored) = self.entries.get(key)? else {
                return Ok(None);
            };
            let (meta, value) = decoded(key, &stored)?;
            let read = Versioned {
                value: if with_value {
                    value.to_vec()
                } else {
                    Vec::new()
                },
                version: meta.version,
                deadline: meta.deadline,
            };
            let Some(deadline) = meta.deadline else {
                return Ok(Some(read));
            };
            if deadline.has_passed(now_ms) {
                return Ok(None);
            }
            let Some(slid) = deadline.slid(now_ms, access) else {
                return Ok(Some(read));
            };
            let meta = Meta {
                deadline: Some(slid),
                ..meta
            };
            let value = value.to_vec();
            let _change = self.one_key_change();
            if self.swap(key, Some(stored), Some((meta, &value)))? {
                return Ok(Some(Versioned {
                    deadline: Some(slid),
                    ..read
                }));
            }
        }
    }

    /// Gives a live key `deadline`, keeping its value and version.
    pub(super) fn touch(
        &self,
        key: &str,
        deadline: Option<Deadline>,
        now_ms: u64,
    ) -> sled::Result<Outcome> {
        let _change = self.one_key_change();
        loop {
            let (Some(stored), Some(meta)) = self.current(key, now_ms)? else {
                return Ok(Outcome::Absent);
            };
            let value = decoded(key, &stored)?.1.to_vec();
            self.index(key.as_bytes(), deadline)?;
            let meta = Meta { deadline, ..meta };
            if self.swap(key, Some(stored), Some((meta, &value)))? {
                return Ok(Outcome::Done(meta.version));
            }
        }
    }

    /// Removes a live `key` where `condition` (`Any` or `Version`) holds.
    pub(super) fn delete_if(
        &self,
        key: &str,
        condition: Condition,
        now_ms: u64,
    ) -> sled::Result<Outcome> {
        let _change = self.one_key_change();
        loop {
            let (stored, live) = self.current(key, now_ms)?;
            let Some(meta) = live else {
                return Ok(Outcome::Absent);
            };
            if matches!(condition, Condition::Version(wanted) if wanted != meta.version) {
                return Ok(Outcome::Conflict);
            }
            if self.swap(key, stored, None)? {
                return Ok(Outcome::Done(meta.version));
            }
        }
    }

    /// Up to `limit` live entries whose keys start with `prefix`; with
    /// `keys_only`, their values are not copied out of sled.
    pub(super) fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        keys_only: bool,
        now_ms: u64,
    ) -> sled::Result<Listing> {
        let start = match start_after {
            Some(after) if after >= prefix => Bound::Excluded(after.as_bytes()),
            _ => Bound::Included(prefix.as_bytes()),
        };
        let mut listing = Listing::default();
        for item in self.entries.range::<&[u8], _>((start, Bound::Unbounded)) {
            let (key, stored) = item?;
            if !key.starts_with(prefix.as_bytes()) {
                break;
            }
            let Some(key) = keys::listable(&key) else {
                continue;
            };
            let (meta, value) = decoded(key, &stored)?;
            if meta.has_expired(now_ms) {
                continue;
            }
            if listing.entries.len() == limit {
                listing.more = true;
                break;
            }
            let value = match keys_only {
                true => Vec::new(),
                false => value.to_vec(),
            };
            listing.entries.push((key.to_owned(), value));
        }
        Ok(listing)
    }

    /// Removes the listable entries whose keys start with `prefix` (but the
    /// key `prefix` itself where `keep_prefix_key`), [`DELETE_BATCH`] keys
    /// at a time; counts the live ones (expired ones go uncounted: they
    /// were absent already). A key changed between its read and its
    /// removal stays: the call acts on the store as it finds it.
    pub(super) fn delete_prefix(
        &self,
        prefix: &str,
        keep_prefix_key: bool,
        now_ms: u64,
    ) -> sled::Result<u64> {
        let mut from = match keep_prefix_key {
            true => Bound::Excluded(prefix.as_bytes().to_vec()),
            false => Bound::Included(prefix.as_bytes().to_vec()),
        };
        let mut deleted = 0;
        loop {
            let mut batch = Vec::with_capacity(DELETE_BATCH);
            for item in self.entries.range((from.clone(), Bound::Unbounded)) {
                let (key, stored) = item?;
                if !key.starts_with(prefix.as_bytes()) || batch.len() == DELETE_BATCH {
                    break;
                }
                batch.push((key, stored));
            }
            let Some((last, _)) = batch.last() else {
                return Ok(deleted);
            };
            from = Bound::Excluded(last.to_vec());
            let full = batch.len() == DELETE_BATCH;
            let _change = self.one_key_change();
            for (key, stored) in batch {
                let Some(name) = keys::listable(&key) else {
                    continue;
                };
                let alive = !decoded(name, &stored)?.0.has_expired(now_ms);
                let removed = self
                    .entries
                    .compare_and_swap(&key, Some(stored), None::<IVec>)?;
                if removed.is_ok() && alive {
                    deleted += 1;
                }
            }
            if !full {
                return Ok(deleted);
            }
        }
    }

    /// Applies queued writes in one sled batch, each with a new version.
    pub(super) fn write_batch(&self, writes: &[Write]) -> sled::Result<()> {
        let _batch = self.batches.write().unwrap_or_else(PoisonError::into_inner);
        let mut batch = sled::Batch::default();
        for write in writes {
            let meta = Meta {
                version: self.next_version()?,
                deadline: write.deadline,
            };
            self.index(write.key.as_bytes(), write.deadline)?;
            batch.insert(write.key.as_bytes(), entry::encode(meta, &write.value));
        }
        self.entries.apply_batch(batch)
    }

    /// Removes up to `max` entries whose deadline passed by `now_ms`,
    /// following the index; `true` when more may remain.
    pub(super) fn sweep(&self, now_ms: u64, max: usize) -> sled::Result<bool> {
        let due = ..index_key(now_ms.saturating_add(1), b"");
        for (handled, item) in self.deadlines.range(due).enumerate() {
            let (indexed, _) = item?;
            if handled == max {
                return Ok(true);
            }
            let (at, key) = indexed.split_at(8);
            let at_ms = u64::from_be_bytes(at.try_into().expect("8 bytes"));
            self.sweep_key(key, at_ms, now_ms)?;
            self.deadlines.remove(&indexed)?;
        }
        Ok(false)
    }

    /// Removes `key` if it expired; indexes its deadline again where a
    /// sliding read moved it past the indexed one `at_ms`.
    fn sweep_key(&self, key: &[u8], at_ms: u64, now_ms: u64) -> sled::Result<()> {
        let _change = self.one_key_change();
        loop {
            let Some(stored) = self.entries.get(key)? else {
                return Ok(());
            };
            let Some((meta, _)) = entry::decode(&stored) else {
                return Ok(());
            };
            match meta.deadline {
                Some(deadline) if deadline.has_passed(now_ms) => {
                    let removed = self
                        .entries
                        .compare_and_swap(key, Some(stored), None::<IVec>)?;
                    if removed.is_ok() {
                        return Ok(());
                    }
                }
                Some(deadline) if deadline.sliding_ms > 0 && deadline.at_ms > at_ms => {
                    return self.index(key, Some(deadline));
                }
                _ => return Ok(()),
            }
        }
    }

    pub(super) fn flush(&self) -> sled::Result<()> {
        self.db.flush().map(drop)
    }
}

/// The index key of `key`'s deadline `at_ms`: sorted by deadline.
fn index_key(at_ms: u64, key: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(8 + key.len());
    bytes.extend_from_slice(&at_ms.to_be_bytes());
    bytes.extend_from_slice(key);
    bytes
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
                deadline: None,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path) -> Store {
        let config = LocalConfig {
            filepath: dir.join("db"),
            ..LocalConfig::default()
        };
        Store::open(&config).unwrap()
    }

    fn expiring(at_ms: u64, sliding_ms: u64) -> Ttl {
        Ttl::Set(Deadline { at_ms, sliding_ms })
    }

    /// The sweep follows the index in bounded rounds: expired entries go,
    /// live ones stay, a slid deadline is indexed again, and stale index
    /// entries (keys written again since) are dropped.
    #[test]
    fn the_sweep_removes_expired_entries_in_bounded_rounds() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let (then, now) = (1_000, 2_000);
        for i in 0..2_500 {
            let key = format!("b:expired{i:04}");
            store
                .write_if(&key, b"v", Condition::Any, expiring(then, 0), then - 1)
                .unwrap();
        }
        store
            .write_if("b:live", b"v", Condition::Any, expiring(now + 1, 0), then)
            .unwrap();
        // Written again without a deadline: its index entry is stale.
        store
            .write_if(
                "b:rewritten",
                b"v",
                Condition::Any,
                expiring(then, 0),
                then - 1,
            )
            .unwrap();
        store
            .write_if("b:rewritten", b"w", Condition::Any, Ttl::Clear, then - 1)
            .unwrap();
        // Read at `then - 1`: its deadline slides to `then + 1_501`.
        store
            .write_if(
                "b:sliding",
                b"v",
                Condition::Any,
                expiring(then, 1_501),
                then - 1,
            )
            .unwrap();
        assert!(store
            .read("b:sliding", true, Access::Use, then - 1)
            .unwrap()
            .is_some());
        assert_eq!(store.entries.len(), 2_503);

        assert!(store.sweep(now, 1_000).unwrap());
        assert!(store.sweep(now, 1_000).unwrap());
        assert!(!store.sweep(now, 1_000).unwrap());
        let keys: Vec<_> = store.entries.iter().keys().map(|k| k.unwrap()).collect();
        assert_eq!(keys, ["b:live", "b:rewritten", "b:sliding"].map(IVec::from));
        // What remains indexed: the live key, and the slid deadline.
        let indexed: Vec<_> = store.deadlines.iter().keys().map(|k| k.unwrap()).collect();
        assert_eq!(
            indexed,
            [
                index_key(now + 1, b"b:live"),
                index_key(then + 1_501, b"b:sliding")
            ]
            .map(IVec::from)
        );
        // Later, everything with a deadline goes.
        assert!(!store.sweep(now + 10_000, 1_000).unwrap());
        let keys: Vec<_> = store.entries.iter().keys().map(|k| k.unwrap()).collect();
        assert_eq!(keys, [IVec::from("b:rewritten")]);
        assert!(store.deadlines.is_empty());
    }
}
