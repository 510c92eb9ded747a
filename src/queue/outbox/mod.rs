//! The durable outbox: queued writes on disk from before `tether_write`
//! returns until their backend holds them durably, so that a crash, an
//! outage or a close loses none of them.
//!
//! An append-only log per backend, written for this one job: append, read
//! back in order, trim the front. It is a directory of segment files,
//! `<backend>.<first sequence number>.log`, each a run of frames
//! (length, CRC-32, body):
//!
//! - a header, first in each segment: the format and the *destination* of
//!   its writes (which cluster, table or store), so that writes queued for
//!   one destination are never delivered to another;
//! - a write: its sequence number, when it was queued, key and value;
//! - a done mark: every write before this sequence number is in the backend,
//!   durably (after the backend's own flush: a done mark on disk before the
//!   data would lose the data in a crash).
//!
//! A writer only encodes its frame into a buffer under a short lock; the
//! buffer reaches the file on a group commit (`queue_batch.sync`), on the
//! outbox's own thread every [`FLUSH_EVERY`], or when it grows large. That
//! thread also writes done marks and deletes segments whose writes are all
//! done. No lock of a queue is held across any of it.

mod flusher;
mod frame;
mod lane_log;
mod migrate;
mod segments;
#[cfg(test)]
mod tests;

// The parts are one module split by idea: each takes this module's
// imports and its siblings' items with `use super::*`.
use flusher::Flusher;
use frame::*;
pub(crate) use frame::{write_size, Record};
pub(crate) use lane_log::LaneLog;
use migrate::migrate_sled_outbox;
use segments::*;

use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::backend::{Backend, Deadline, Write};
use crate::error::{Error, Result};
use crate::files::{create_private_dir, private_file};
use crate::log::Logger;

/// How often the outbox's thread writes what writers queued to disk, with
/// `queue_batch.sync` off. The docs promise that a `kill -9` loses no write
/// queued more than 1 s before it: this, plus time for the write and the
/// fsync on a busy disk.
const FLUSH_EVERY: Duration = Duration::from_millis(200);
/// A segment past this size is closed and a new one begun, so that applied
/// writes can be deleted a segment at a time.
const SEGMENT_BYTES: u64 = 8 << 20;
/// A writer that finds this much buffered writes it out itself, so that
/// memory stays bounded however slow the disk.
const BUFFER_BYTES: usize = 1 << 20;

pub(crate) struct Outbox {
    dir: PathBuf,
    shared: Arc<Shared>,
    lanes: Vec<Arc<LaneLog>>,
    flusher: Option<Flusher>,
    /// Released last.
    _lock: DirLock,
}

/// What the lanes of one outbox share.
struct Shared {
    dir: PathBuf,
    max_bytes: u64,
    /// Bytes of the writes not yet done, over every lane.
    bytes: AtomicU64,
    /// fsyncs run; fewer than the writes they covered when writers share them.
    syncs: AtomicU64,
}

impl Outbox {
    /// Opens (creating it, private to its owner) the outbox in `dir` for
    /// `lanes`, and reads what an earlier run left in it. Fails with
    /// `Config` when it holds writes for another destination than a lane's.
    pub fn open(
        dir: &Path,
        max_bytes: u64,
        backends: &[Arc<dyn Backend>],
        log: Logger,
    ) -> Result<Outbox> {
        create_private_dir(dir).map_err(|e| outbox_error(dir, format!("cannot create it: {e}")))?;
        let lock = DirLock::take(dir)?;
        migrate_sled_outbox(dir, backends)?;
        let shared = Arc::new(Shared {
            dir: dir.to_owned(),
            max_bytes,
            bytes: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
        });
        let lanes = backends
            .iter()
            .map(|backend| LaneLog::open(backend.clone(), shared.clone()).map(Arc::new))
            .collect::<Result<Vec<_>>>()?;
        let mut outbox = Outbox {
            dir: dir.to_owned(),
            shared,
            lanes,
            flusher: None,
            _lock: lock,
        };
        outbox.flusher = Some(
            Flusher::start(outbox.lanes.clone(), log)
                .map_err(|e| outbox_error(dir, format!("cannot start its thread: {e}")))?,
        );
        Ok(outbox)
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    pub fn lane(&self, index: usize) -> &Arc<LaneLog> {
        &self.lanes[index]
    }

    pub fn bytes(&self) -> u64 {
        self.shared.bytes.load(Ordering::Relaxed)
    }

    pub fn max_bytes(&self) -> u64 {
        self.shared.max_bytes
    }

    pub fn syncs(&self) -> u64 {
        self.shared.syncs.load(Ordering::Relaxed)
    }

    /// Backends this outbox has writes for that are not among its lanes,
    /// and how many: left by an earlier run with another configuration.
    pub fn others(&self) -> Vec<(String, u64)> {
        let ours: Vec<&str> = self.lanes.iter().map(|l| l.name.as_str()).collect();
        let mut others = Vec::new();
        for name in segment_owners(&self.dir) {
            if ours.contains(&name.as_str()) {
                continue;
            }
            if let Ok(scan) = scan(&self.dir, &name) {
                if scan.end > scan.start {
                    others.push((name, scan.end - scan.start));
                }
            }
        }
        others
    }

    /// Writes every done mark and everything buffered to disk, and deletes
    /// what is done: after it, the outbox holds only writes not applied.
    pub fn checkpoint(&self) -> Result<()> {
        self.lanes
            .iter()
            .map(|lane| lane.checkpoint())
            .fold(Ok(()), Result::and)
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        if let Some(flusher) = self.flusher.take() {
            flusher.stop();
        }
        for lane in &self.lanes {
            let _ = lane.checkpoint();
        }
    }
}

/// The outbox directory's lock: one handle at a time, in this process or
/// another.
struct DirLock {
    _file: File,
}

impl DirLock {
    fn take(dir: &Path) -> Result<DirLock> {
        let path = dir.join("LOCK");
        let file = private_file(&path).map_err(|e| outbox_error(&path, e))?;
        match file.try_lock() {
            Ok(()) => Ok(DirLock { _file: file }),
            Err(e) => Err(outbox_error(
                dir,
                format!(
                    "in use by another handle ({e}): each open handle needs an outbox of its \
                     own: set queue_batch.outbox_path"
                ),
            )),
        }
    }
}

/// The outbox of a handle whose configuration names no place for it and
/// has no `local` store: `$XDG_STATE_HOME/tetherdb/outbox-<hash>` (by
/// default under `~/.local/state`), the hash of its backends' destinations.
/// Not the working directory: two programs started in one directory for
/// different clusters would share it. Named after the destinations, so that
/// a program finds its queued writes again after a restart wherever it
/// runs, and never another destination's.
pub(crate) fn default_path(backends: &[Arc<dyn Backend>]) -> Result<PathBuf> {
    let state = match std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
            Some(home) => Path::new(&home).join(".local/state"),
            None => {
                return Err(Error::Config(
                    "neither XDG_STATE_HOME nor HOME is set, so the outbox has no default \
                     place: set queue_batch.outbox_path"
                        .into(),
                ))
            }
        },
    };
    let destinations: Vec<String> = backends.iter().map(|b| b.destination()).collect();
    let hash = crc32fast::hash(destinations.join("\n").as_bytes());
    Ok(state.join("tetherdb").join(format!("outbox-{hash:08x}")))
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// A lock, also when another thread panicked holding it: what it guards
/// stays consistent between statements.
fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn outbox_error(path: &Path, cause: impl std::fmt::Display) -> Error {
    Error::io("outbox", "", format!("{}: {cause}", path.display()))
}
