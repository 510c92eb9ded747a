//! The durable outbox: queued writes on disk, from before `tether_write`
//! returns until their backend has acknowledged them, so that a crash, an
//! outage or a close loses none of them.
//!
//! One sled store holds a tree per backend (`queued:<backend>`). A tree's
//! keys are the writes' sequence numbers (8 bytes, big-endian, so in queue
//! order); its values are records: when the write was queued, then the
//! stored key and the value. The worker removes writes in order, so a tree
//! always holds one contiguous run of sequence numbers.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::backend::local::AwaitUnlock;
use crate::backend::Write;
use crate::error::{Error, Result};

/// How often sled writes the outbox to disk on its own: with
/// `queue_batch.sync` off, the most a `kill -9` can lose.
pub(crate) const FLUSH_EVERY: Duration = Duration::from_millis(500);
/// The outbox's page cache: it is read once, in order, so a small one
/// serves, and it keeps memory bounded however large the outbox grows.
const CACHE_BYTES: u64 = 16 << 20;
/// What a record adds to its key and value: the time (8) and key length (4).
const RECORD_HEADER: usize = 12;

/// A write read back from the outbox.
pub(crate) struct Record {
    pub seq: u64,
    /// When it was queued.
    pub queued_at: SystemTime,
    pub write: Write,
}

pub(crate) struct Outbox {
    store: sled::Db,
    path: PathBuf,
    max_bytes: u64,
    /// Bytes of the records held, as `max_bytes` counts them.
    bytes: AtomicU64,
    /// Appends so far; the group commit's clock.
    appended: AtomicU64,
    /// fsyncs run for `queue_batch.sync`: fewer than the writes they
    /// served when writers share them.
    syncs: AtomicU64,
    synced: Mutex<Sync>,
    sync_done: Condvar,
    /// Declared after `store`, so that it is dropped after it.
    _released: AwaitUnlock,
}

/// The group commit's state: what the last fsync covered, and whether a
/// writer is running one now.
#[derive(Default)]
struct Sync {
    covered: u64,
    running: bool,
}

impl Outbox {
    pub fn open(path: &Path, max_bytes: u64) -> Result<Outbox> {
        let store = sled::Config::new()
            .path(path)
            .cache_capacity(CACHE_BYTES)
            .flush_every_ms(Some(FLUSH_EVERY.as_millis() as u64))
            .open()
            .map_err(|e| {
                outbox_error(
                    path,
                    format!(
                        "cannot open it: {e} (each open handle needs an outbox of its own: \
                         set queue_batch.outbox_path)"
                    ),
                )
            })?;
        let outbox = Outbox {
            path: path.to_owned(),
            max_bytes,
            bytes: AtomicU64::new(0),
            appended: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            synced: Mutex::default(),
            sync_done: Condvar::new(),
            _released: AwaitUnlock::new(path),
            store,
        };
        let mut bytes = 0;
        for name in outbox.store.tree_names() {
            let tree = outbox.store.open_tree(name).map_err(|e| outbox.error(e))?;
            for record in tree.iter().values() {
                bytes += record.map_err(|e| outbox.error(e))?.len() as u64;
            }
        }
        outbox.bytes.store(bytes, Ordering::Relaxed);
        Ok(outbox)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }

    /// The tree of one backend's writes, and the sequence numbers it holds.
    pub fn tree(&self, backend: &str) -> Result<(sled::Tree, std::ops::Range<u64>)> {
        let tree = self
            .store
            .open_tree(format!("queued:{backend}"))
            .map_err(|e| self.error(e))?;
        let seq = |entry: Option<(sled::IVec, sled::IVec)>| entry.map(|(key, _)| seq_of(&key));
        let first = seq(tree.first().map_err(|e| self.error(e))?);
        let last = seq(tree.last().map_err(|e| self.error(e))?);
        let held = match (first, last) {
            (Some(first), Some(last)) => first..last + 1,
            _ => 0..0,
        };
        Ok((tree, held))
    }

    /// Backends other than `configured` with writes waiting here, and how
    /// many: left by an earlier run with another configuration.
    pub fn others(&self, configured: &[&str]) -> Vec<(String, usize)> {
        let mut others = Vec::new();
        for name in self.store.tree_names() {
            let Some(backend) = std::str::from_utf8(&name)
                .ok()
                .and_then(|n| n.strip_prefix("queued:"))
            else {
                continue;
            };
            if configured.contains(&backend) {
                continue;
            }
            if let Ok(tree) = self.store.open_tree(&name) {
                if !tree.is_empty() {
                    others.push((backend.to_owned(), tree.len()));
                }
            }
        }
        others
    }

    /// Adds a write; fails with `Unavailable` when the outbox is full.
    pub fn append(&self, tree: &sled::Tree, seq: u64, backend: &str, write: &Write) -> Result<()> {
        let size = (RECORD_HEADER + write.key.len() + write.value.len()) as u64;
        let held = self.bytes.fetch_add(size, Ordering::Relaxed);
        if held + size > self.max_bytes {
            self.bytes.fetch_sub(size, Ordering::Relaxed);
            return Err(Error::unavailable(
                backend,
                &write.key,
                format!(
                    "the outbox {} is full ({held} of queue_batch.outbox_max_bytes {} bytes \
                     wait for the backend); the write is not queued",
                    self.path.display(),
                    self.max_bytes
                ),
            ));
        }
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let mut record = Vec::with_capacity(size as usize);
        record.extend_from_slice(&(since_epoch.as_millis() as u64).to_be_bytes());
        record.extend_from_slice(&(write.key.len() as u32).to_be_bytes());
        record.extend_from_slice(write.key.as_bytes());
        record.extend_from_slice(&write.value);
        if let Err(e) = tree.insert(seq.to_be_bytes(), record) {
            self.bytes.fetch_sub(size, Ordering::Relaxed);
            return Err(self.error(e));
        }
        self.appended.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// The writes numbered `seqs`, in order.
    pub fn read(&self, tree: &sled::Tree, seqs: std::ops::Range<u64>) -> Result<Vec<Record>> {
        let range = seqs.start.to_be_bytes()..seqs.end.to_be_bytes();
        tree.range(range)
            .map(|entry| {
                let (key, record) = entry.map_err(|e| self.error(e))?;
                decode(seq_of(&key), &record)
                    .ok_or_else(|| self.error(format!("record {} is damaged", seq_of(&key))))
            })
            .collect()
    }

    /// Removes the writes numbered `seqs`: their backend has them.
    pub fn remove(&self, tree: &sled::Tree, seqs: std::ops::Range<u64>) -> Result<()> {
        let range = seqs.start.to_be_bytes()..seqs.end.to_be_bytes();
        let mut batch = sled::Batch::default();
        let mut freed = 0;
        for entry in tree.range(range) {
            let (key, record) = entry.map_err(|e| self.error(e))?;
            freed += record.len() as u64;
            batch.remove(key);
        }
        tree.apply_batch(batch).map_err(|e| self.error(e))?;
        self.bytes.fetch_sub(freed, Ordering::Relaxed);
        Ok(())
    }

    /// Returns once every write appended before the call is on disk. The
    /// writer that finds no fsync running runs one for everybody waiting.
    pub fn sync(&self) -> Result<()> {
        let wanted = self.appended.load(Ordering::SeqCst);
        let mut sync = self.synced.lock().unwrap_or_else(PoisonError::into_inner);
        while sync.covered < wanted {
            if sync.running {
                sync = self
                    .sync_done
                    .wait(sync)
                    .unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            sync.running = true;
            let covers = self.appended.load(Ordering::SeqCst);
            drop(sync);
            let flushed = self.store.flush();
            self.syncs.fetch_add(1, Ordering::Relaxed);
            sync = self.synced.lock().unwrap_or_else(PoisonError::into_inner);
            sync.running = false;
            self.sync_done.notify_all();
            flushed.map_err(|e| self.error(format!("fsync: {e}")))?;
            sync.covered = sync.covered.max(covers);
        }
        Ok(())
    }

    /// Writes everything to disk, removals included: a write that was
    /// applied must not be applied again after a crash.
    pub fn flush(&self) -> Result<()> {
        self.store
            .flush()
            .map(drop)
            .map_err(|e| self.error(format!("flush: {e}")))
    }

    fn error(&self, cause: impl std::fmt::Display) -> Error {
        outbox_error(&self.path, cause)
    }
}

fn outbox_error(path: &Path, cause: impl std::fmt::Display) -> Error {
    Error::io("outbox", "", format!("{}: {cause}", path.display()))
}

fn seq_of(key: &[u8]) -> u64 {
    u64::from_be_bytes(key.try_into().unwrap_or_default())
}

fn decode(seq: u64, record: &[u8]) -> Option<Record> {
    let millis = u64::from_be_bytes(record.get(..8)?.try_into().ok()?);
    let key_len = u32::from_be_bytes(record.get(8..12)?.try_into().ok()?) as usize;
    let key = record.get(RECORD_HEADER..RECORD_HEADER + key_len)?;
    let value = record.get(RECORD_HEADER + key_len..)?;
    Some(Record {
        seq,
        queued_at: UNIX_EPOCH + Duration::from_millis(millis),
        write: Write {
            key: String::from_utf8(key.to_vec()).ok()?,
            value: value.to_vec(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(key: &str, value: &str) -> Write {
        Write {
            key: key.into(),
            value: value.into(),
        }
    }

    #[test]
    fn writes_come_back_in_order_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox");
        {
            let outbox = Outbox::open(&path, 1 << 20).unwrap();
            let (tree, held) = outbox.tree("etcd").unwrap();
            assert_eq!(held, 0..0);
            for seq in 0..5 {
                outbox
                    .append(&tree, seq, "etcd", &write(&format!("b:k{seq}"), "v"))
                    .unwrap();
            }
            outbox.remove(&tree, 0..2).unwrap();
            outbox.sync().unwrap();
            assert_eq!(outbox.bytes(), 3 * (RECORD_HEADER as u64 + 5));
        }
        let outbox = Outbox::open(&path, 1 << 20).unwrap();
        assert_eq!(outbox.bytes(), 3 * (RECORD_HEADER as u64 + 5));
        assert_eq!(outbox.others(&["local"]), [("etcd".to_string(), 3)]);
        let (tree, held) = outbox.tree("etcd").unwrap();
        assert_eq!(held, 2..5);
        let records = outbox.read(&tree, held).unwrap();
        let keys: Vec<_> = records.iter().map(|r| r.write.key.as_str()).collect();
        assert_eq!(keys, ["b:k2", "b:k3", "b:k4"]);
        assert_eq!(records[0].seq, 2);
        assert!(records[0].queued_at.elapsed().unwrap() < Duration::from_secs(3600));
    }

    #[test]
    fn a_full_outbox_refuses_the_write_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(&dir.path().join("outbox"), 100).unwrap();
        let (tree, _) = outbox.tree("etcd").unwrap();
        outbox
            .append(&tree, 0, "etcd", &write("b:k", &"x".repeat(80)))
            .unwrap();
        let err = outbox
            .append(&tree, 1, "etcd", &write("b:k", &"x".repeat(80)))
            .unwrap_err();
        assert_eq!(err.status(), crate::Status::Unavailable);
        assert!(err.to_string().contains("is full"), "{err}");
        assert_eq!(tree.len(), 1);
    }
}
