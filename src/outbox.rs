//! The durable outbox: queued writes on disk, from before `tether_write`
//! returns until their backend has acknowledged them, so that a crash, an
//! outage or a close loses none of them.
//!
//! One sled store holds a tree per backend (`queued:<backend>`). A tree's
//! keys are the writes' sequence numbers (8 bytes, big-endian, so in queue
//! order); its values are records: when the write was queued, then the
//! stored key and the value. The worker removes writes in order, so a tree
//! always holds one contiguous run of sequence numbers (after a crash, it
//! may start with writes applied just before it).
//!
//! Removing applied writes costs about as much as appending them, so a
//! thread of the outbox's own removes them while the worker sends its next
//! batch; [`Outbox::settle`] waits for it.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{unbounded, Sender};

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
    bytes: Arc<AtomicU64>,
    /// Appends so far; the group commit's clock.
    appended: AtomicU64,
    /// fsyncs run for `queue_batch.sync`: fewer than the writes they
    /// served when writers share them.
    syncs: AtomicU64,
    synced: Mutex<Sync>,
    sync_done: Condvar,
    reaper: Reaper,
    /// Declared after `store`, so that it is dropped after it.
    _released: AwaitUnlock,
}

/// Writes to remove: a tree and the sequence numbers.
type Removal = (sled::Tree, Range<u64>);

/// The thread that removes applied writes, and how far it has got.
struct Reaper {
    /// `None` once the outbox is dropped: the thread then ends.
    removals: Mutex<Option<Sender<Removal>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    progress: Arc<ReaperProgress>,
}

#[derive(Default)]
struct ReaperProgress {
    /// Removals asked for, removals done, and the first that failed.
    counts: Mutex<(u64, u64, Option<String>)>,
    done: Condvar,
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
        let bytes = Arc::new(AtomicU64::new(0));
        let reaper = Reaper::start(bytes.clone())
            .map_err(|e| outbox_error(path, format!("cannot start its thread: {e}")))?;
        let outbox = Outbox {
            path: path.to_owned(),
            max_bytes,
            bytes,
            reaper,
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

    /// Removes the writes numbered `seqs`, which their backend has, soon:
    /// on the reaper's thread.
    pub fn remove(&self, tree: &sled::Tree, seqs: Range<u64>) {
        let progress = &self.reaper.progress;
        progress.lock().0 += 1;
        let removals = locked(&self.reaper.removals);
        let sent = removals.as_ref().map(|r| r.send((tree.clone(), seqs)));
        if !matches!(sent, Some(Ok(()))) {
            // Only while dropping; the next open finds them applied again.
            progress.lock().0 -= 1;
        }
    }

    /// Waits until every removal asked for is done; reports the first
    /// that failed since the last call.
    pub fn settle(&self) -> Result<()> {
        let progress = &self.reaper.progress;
        let mut counts = progress.lock();
        while counts.1 < counts.0 {
            counts = progress
                .done
                .wait(counts)
                .unwrap_or_else(PoisonError::into_inner);
        }
        match counts.2.take() {
            Some(cause) => Err(self.error(format!(
                "cannot remove applied writes, which a later run would apply again: {cause}"
            ))),
            None => Ok(()),
        }
    }

    /// Returns once every write appended before the call is on disk. The
    /// writer that finds no fsync running runs one for everybody waiting.
    pub fn sync(&self) -> Result<()> {
        let wanted = self.appended.load(Ordering::SeqCst);
        let mut sync = locked(&self.synced);
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
            sync = locked(&self.synced);
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

impl Drop for Outbox {
    fn drop(&mut self) {
        // Closing the channel ends the thread once it has removed the rest.
        locked(&self.reaper.removals).take();
        if let Some(thread) = locked(&self.reaper.thread).take() {
            let _ = thread.join();
        }
    }
}

impl Reaper {
    fn start(bytes: Arc<AtomicU64>) -> std::io::Result<Reaper> {
        let (sender, receiver) = unbounded::<Removal>();
        let progress = Arc::new(ReaperProgress::default());
        let shared = progress.clone();
        let thread = std::thread::Builder::new()
            .name("tetherdb-outbox".into())
            .spawn(move || {
                for (tree, seqs) in receiver {
                    let removed = remove(&tree, seqs, &bytes);
                    let mut counts = shared.lock();
                    counts.1 += 1;
                    if let Err(e) = removed {
                        counts.2.get_or_insert(e.to_string());
                    }
                    shared.done.notify_all();
                }
            })?;
        Ok(Reaper {
            removals: Mutex::new(Some(sender)),
            thread: Mutex::new(Some(thread)),
            progress,
        })
    }
}

impl ReaperProgress {
    fn lock(&self) -> MutexGuard<'_, (u64, u64, Option<String>)> {
        locked(&self.counts)
    }
}

/// Removes the records numbered `seqs` from `tree` at once.
fn remove(tree: &sled::Tree, seqs: Range<u64>, bytes: &AtomicU64) -> sled::Result<()> {
    let range = seqs.start.to_be_bytes()..seqs.end.to_be_bytes();
    let mut batch = sled::Batch::default();
    let mut freed = 0;
    for entry in tree.range(range) {
        let (key, record) = entry?;
        freed += record.len() as u64;
        batch.remove(key);
    }
    tree.apply_batch(batch)?;
    bytes.fetch_sub(freed, Ordering::Relaxed);
    Ok(())
}

/// A lock, also when another thread panicked holding it: what it guards
/// stays consistent between statements.
fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
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
            outbox.remove(&tree, 0..2);
            outbox.settle().unwrap();
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
