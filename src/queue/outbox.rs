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

use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::backend::{Backend, Write};
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
const MAGIC: &[u8; 16] = b"tetherdb-outbox1";

const HEADER: u8 = 0;
const WRITE: u8 = 1;
const DONE: u8 = 2;
/// Length and CRC-32 before each frame's body.
const FRAME_PREFIX: u64 = 8;
/// A write frame's body before its key and value: kind, sequence number,
/// time, key length.
const WRITE_PREFIX: u64 = 1 + 8 + 8 + 4;

/// The bytes a write takes in the outbox, as `outbox_max_bytes` counts them.
pub(crate) fn write_size(write: &Write) -> u64 {
    FRAME_PREFIX + WRITE_PREFIX + (write.key.len() + write.value.len()) as u64
}

/// A write read back from the outbox.
pub(crate) struct Record {
    pub seq: u64,
    /// When it was queued.
    pub queued_at: SystemTime,
    pub write: Write,
}

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
        let ours: Vec<&str> = self.lanes.iter().map(|l| l.name).collect();
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

/// The log of one backend's queued writes.
pub(crate) struct LaneLog {
    name: &'static str,
    destination: String,
    backend: Arc<dyn Backend>,
    shared: Arc<Shared>,
    /// Frames encoded but not yet written. Held only to copy bytes.
    staged: Mutex<Staged>,
    /// The files. Held across their I/O, never while a queue's lock is held.
    files: Mutex<Files>,
    /// The group commit: what the last fsync covered, and whether one runs.
    synced: Mutex<Synced>,
    sync_done: Condvar,
    /// The last done mark staged; held across the backend's flush, so
    /// that marks are made one at a time, each after its flush.
    marking: Mutex<u64>,
    /// Writes before it are applied (or failed for good), and the bytes
    /// they hold that no done mark covers yet; set by the worker.
    applied: Mutex<(u64, u64)>,
    /// The first seq and the end of what an earlier run left here.
    held: std::ops::Range<u64>,
}

#[derive(Default)]
struct Staged {
    buffer: Vec<u8>,
    /// The buffer last written out, emptied, for the next swap: two
    /// buffers serve, instead of one allocation per round.
    spare: Vec<u8>,
    /// Bytes staged since open: a writer's position, for the group commit.
    end: u64,
    /// The last write's seq in `buffer`.
    last_seq: Option<u64>,
    /// A done mark in `buffer`, and the bytes it frees once on disk.
    done: Option<(u64, u64)>,
    /// Why the last attempt to write failed: later writes are refused
    /// until the disk takes them again.
    failed: Option<String>,
}

struct Files {
    /// In order; the last is the one written to.
    segments: Vec<Segment>,
    tail: File,
    /// Bytes staged that are now in the files.
    written: u64,
    /// Bytes staged that the last fsync covered.
    synced: u64,
    /// The done mark written, with the bytes it frees, not yet fsynced.
    done_written: Option<(u64, u64)>,
    /// The done mark on disk for sure.
    done_durable: u64,
    /// Where the read-back left off: a write's seq and its frame.
    cursor: Option<(u64, Position)>,
}

#[derive(Clone, Copy)]
struct Position {
    segment_first: u64,
    offset: u64,
}

struct Segment {
    first_seq: u64,
    path: PathBuf,
    len: u64,
    last_seq: Option<u64>,
}

#[derive(Default)]
struct Synced {
    covered: u64,
    running: bool,
}

impl LaneLog {
    fn open(backend: Arc<dyn Backend>, shared: Arc<Shared>) -> Result<LaneLog> {
        let name = backend.name();
        let destination = backend.destination();
        let dir = &shared.dir;
        let mut found = scan(dir, name)?;
        if found.end > found.start && found.destination.as_deref() != Some(&destination) {
            return Err(Error::Config(format!(
                "the outbox {} holds {} queued write(s) for {name} at {}, but this \
                 configuration's {name} is {destination}: they are not sent there. To deliver \
                 them, open the outbox with the earlier configuration and flush; to discard \
                 them, delete {}",
                dir.display(),
                found.end - found.start,
                found
                    .destination
                    .as_deref()
                    .unwrap_or("an unknown destination"),
                dir.join(format!("{name}.*.log")).display(),
            )));
        }
        if found.destination.as_deref() != Some(&destination) || found.segments.is_empty() {
            // Nothing waits here (or nothing at all): start afresh, for
            // this destination, numbering on from where the log ended.
            for segment in found.segments.drain(..) {
                remove_file(&segment.path)?;
            }
        }
        let first_new = found.end;
        let (segments, tail) = match found.segments.last() {
            Some(last) => {
                let tail = OpenOptions::new()
                    .append(true)
                    .open(&last.path)
                    .map_err(|e| outbox_error(&last.path, e))?;
                (found.segments, tail)
            }
            None => {
                let (segment, tail) = new_segment(dir, name, first_new, &destination)?;
                (vec![segment], tail)
            }
        };
        shared.bytes.fetch_add(found.bytes, Ordering::Relaxed);
        Ok(LaneLog {
            name,
            destination,
            backend,
            shared,
            staged: Mutex::default(),
            files: Mutex::new(Files {
                segments,
                tail,
                written: 0,
                synced: 0,
                done_written: None,
                done_durable: found.start,
                cursor: None,
            }),
            synced: Mutex::default(),
            sync_done: Condvar::new(),
            marking: Mutex::new(found.start),
            applied: Mutex::new((found.start, 0)),
            held: found.start..found.end,
        })
    }

    /// The writes an earlier run left here, by sequence number.
    pub fn held(&self) -> std::ops::Range<u64> {
        self.held.clone()
    }

    /// Adds write `seq` to the log, in memory: it reaches the disk with the
    /// next [`LaneLog::sync`] or the outbox thread's next round. Returns
    /// the position a sync must reach to cover it. Fails with `TooLarge`
    /// when it could never fit, `Unavailable` when the outbox is full, and
    /// `Io` while the disk refuses writes.
    pub fn stage(&self, seq: u64, write: &Write) -> Result<u64> {
        let size = write_size(write);
        let shared = &self.shared;
        if size > shared.max_bytes {
            return Err(Error::too_large(
                self.name,
                &write.key,
                format!(
                    "the write takes {size} bytes in the outbox, over all of \
                     queue_batch.outbox_max_bytes ({}); write it directly, or raise the limit",
                    shared.max_bytes
                ),
            ));
        }
        let held = shared.bytes.fetch_add(size, Ordering::Relaxed);
        if held + size > shared.max_bytes {
            shared.bytes.fetch_sub(size, Ordering::Relaxed);
            return Err(Error::unavailable(
                self.name,
                &write.key,
                format!(
                    "the outbox {} is full ({held} of queue_batch.outbox_max_bytes {} bytes \
                     wait for the backend); the write is not queued",
                    shared.dir.display(),
                    shared.max_bytes
                ),
            ));
        }
        let mut staged = locked(&self.staged);
        if let Some(cause) = &staged.failed {
            let error = Error::io(
                self.name,
                &write.key,
                format!(
                    "the outbox {} cannot be written ({cause}); the write is not queued",
                    shared.dir.display()
                ),
            );
            drop(staged);
            shared.bytes.fetch_sub(size, Ordering::Relaxed);
            return Err(error);
        }
        let queued_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        push_write(
            &mut staged.buffer,
            seq,
            queued_at,
            write.key.as_bytes(),
            &write.value,
        );
        staged.end += size;
        staged.last_seq = Some(seq);
        Ok(staged.end)
    }

    /// Whether so much is buffered that the writer should write it out.
    pub fn buffer_full(&self) -> bool {
        locked(&self.staged).buffer.len() >= BUFFER_BYTES
    }

    /// Returns once everything staged up to `position` is on disk. The
    /// writer that finds no fsync running runs one for every writer waiting.
    pub fn sync(&self, position: u64) -> Result<()> {
        let mut synced = locked(&self.synced);
        while synced.covered < position {
            if synced.running {
                synced = self
                    .sync_done
                    .wait(synced)
                    .unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            synced.running = true;
            drop(synced);
            let covered = self.persist(true);
            synced = locked(&self.synced);
            synced.running = false;
            self.sync_done.notify_all();
            synced.covered = synced.covered.max(covered?);
        }
        Ok(())
    }

    /// Writes what is staged to the files, and with `fsync` to the disk;
    /// returns the staged position now written. On a failed write the
    /// files are cut back to their last whole frame, the frames stay
    /// staged, and new writes are refused until a write succeeds.
    pub fn persist(&self, fsync: bool) -> Result<u64> {
        let mut files = locked(&self.files);
        let (buffer, end, last_seq, done) = {
            let mut staged = locked(&self.staged);
            let spare = std::mem::take(&mut staged.spare);
            (
                std::mem::replace(&mut staged.buffer, spare),
                staged.end,
                staged.last_seq.take(),
                staged.done.take(),
            )
        };
        if let Err(e) = self.write_out(&mut files, &buffer, last_seq) {
            let mut staged = locked(&self.staged);
            let mut restored = buffer;
            restored.append(&mut staged.buffer);
            staged.buffer = restored;
            staged.last_seq = staged.last_seq.or(last_seq);
            staged.done = staged.done.or(done);
            staged.failed = Some(e.to_string());
            return Err(self.error(e));
        }
        files.written = end;
        {
            let mut buffer = buffer;
            buffer.clear();
            buffer.shrink_to(4 * BUFFER_BYTES);
            locked(&self.staged).spare = buffer;
        }
        if let Some(done) = done {
            let freed = files.done_written.map_or(0, |(_, bytes)| bytes);
            files.done_written = Some((done.0, done.1 + freed));
        }
        if fsync {
            files.tail.sync_data().map_err(|e| {
                locked(&self.staged).failed = Some(format!("fsync: {e}"));
                self.error(format!("fsync: {e}"))
            })?;
            self.shared.syncs.fetch_add(1, Ordering::Relaxed);
            files.synced = end;
            if let Some((done, freed)) = files.done_written.take() {
                files.done_durable = done;
                self.shared.bytes.fetch_sub(freed, Ordering::Relaxed);
                self.trim(&mut files)?;
            }
        }
        locked(&self.staged).failed = None;
        Ok(end)
    }

    fn write_out(
        &self,
        files: &mut Files,
        buffer: &[u8],
        last_seq: Option<u64>,
    ) -> std::io::Result<()> {
        if buffer.is_empty() {
            return Ok(());
        }
        let before = files.segments.last().map_or(0, |s| s.len);
        if let Err(e) = files.tail.write_all(buffer) {
            // A frame cut short would end the log there on the next read.
            let _ = files.tail.set_len(before);
            return Err(e);
        }
        let tail = files.segments.last_mut().expect("a log has a segment");
        tail.len += buffer.len() as u64;
        tail.last_seq = last_seq.or(tail.last_seq);
        if let (true, Some(last)) = (tail.len >= SEGMENT_BYTES, tail.last_seq) {
            // Closed durably before the next begins: a later segment's
            // done mark may not outlive the writes of this one.
            files.tail.sync_data()?;
            let (segment, file) =
                new_segment(&self.shared.dir, self.name, last + 1, &self.destination)
                    .map_err(|e| std::io::Error::other(e.to_string()))?;
            files.segments.push(segment);
            files.tail = file;
        }
        Ok(())
    }

    /// Deletes the segments, but the one written to, whose writes are all
    /// done on disk.
    fn trim(&self, files: &mut Files) -> Result<()> {
        let done = files.done_durable;
        while files.segments.len() > 1 {
            let first = &files.segments[0];
            // The next segment starts after this one's last write.
            if files.segments[1].first_seq > done {
                break;
            }
            remove_file(&first.path)?;
            if files
                .cursor
                .is_some_and(|(_, at)| at.segment_first == first.first_seq)
            {
                files.cursor = None;
            }
            files.segments.remove(0);
        }
        Ok(())
    }

    /// The worker applied (or reported as failed) every write before `end`;
    /// `bytes` of the outbox were theirs.
    pub fn applied(&self, end: u64, bytes: u64) {
        let mut applied = locked(&self.applied);
        applied.0 = applied.0.max(end);
        applied.1 += bytes;
    }

    /// Makes the applied writes durable in their backend, then stages the
    /// done mark that lets the outbox forget them.
    fn mark_done(&self) -> Result<()> {
        let mut marking = locked(&self.marking);
        let (end, bytes) = *locked(&self.applied);
        if end <= *marking {
            return Ok(());
        }
        // Before the mark: a mark on disk before the data would lose the
        // data in a crash.
        self.backend.flush()?;
        let mut body = Vec::with_capacity(9);
        body.push(DONE);
        body.extend_from_slice(&end.to_le_bytes());
        {
            let mut applied = locked(&self.applied);
            applied.1 -= bytes;
        }
        let mut staged = locked(&self.staged);
        push_frame(&mut staged.buffer, &body);
        let freed = staged.done.map_or(0, |(_, b)| b);
        staged.done = Some((end, bytes + freed));
        *marking = end;
        Ok(())
    }

    /// One round of the outbox thread: what writers staged to disk first
    /// (that bounds what a crash loses), then the done mark.
    fn round(&self) -> Result<()> {
        let staged = locked(&self.staged).end;
        let unsynced = {
            let files = locked(&self.files);
            staged > files.synced || files.done_written.is_some()
        };
        if unsynced {
            self.persist(true)?;
        }
        self.mark_done()?;
        self.persist(false).map(drop)
    }

    /// Everything staged and every done mark to disk; the done writes deleted.
    pub fn checkpoint(&self) -> Result<()> {
        // The writes go to disk even when the mark cannot.
        let marked = self.mark_done();
        let persisted = self.persist(true);
        marked.and(persisted.map(drop))
    }

    /// The writes numbered `seqs`, in order, read back from the files.
    pub fn read(&self, seqs: std::ops::Range<u64>) -> Result<Vec<Record>> {
        self.persist(false)?;
        let mut files = locked(&self.files);
        let segment_of =
            |files: &Files, first: u64| files.segments.iter().position(|s| s.first_seq == first);
        // From where the last read ended, when that is not past the start.
        let mut at = match files.cursor {
            Some((seq, at))
                if seq <= seqs.start && segment_of(&files, at.segment_first).is_some() =>
            {
                at
            }
            _ => {
                let segment = files
                    .segments
                    .iter()
                    .rev()
                    .find(|s| s.first_seq <= seqs.start)
                    .or(files.segments.first())
                    .ok_or_else(|| self.error("the log has no segment"))?;
                Position {
                    segment_first: segment.first_seq,
                    offset: 0,
                }
            }
        };
        let mut records = Vec::new();
        let mut last = None;
        'segments: while let Some(index) = segment_of(&files, at.segment_first) {
            let segment = &files.segments[index];
            let mut reader = FrameReader::open(&segment.path, at.offset, segment.len)
                .map_err(|e| self.error(e))?;
            while let Some((offset, body)) = reader.next().map_err(|e| self.error(e))? {
                let Some(record) = decode_write(&body).filter(|r| r.seq >= seqs.start) else {
                    continue;
                };
                if record.seq >= seqs.end {
                    break 'segments;
                }
                let position = Position {
                    segment_first: segment.first_seq,
                    offset,
                };
                last = Some((record.seq, position));
                let seq = record.seq;
                records.push(record);
                if seq + 1 >= seqs.end {
                    break 'segments;
                }
            }
            match files.segments.get(index + 1) {
                Some(next) => {
                    at = Position {
                        segment_first: next.first_seq,
                        offset: 0,
                    }
                }
                None => break,
            }
        }
        if last.is_some() {
            files.cursor = last;
        }
        Ok(records)
    }

    fn error(&self, cause: impl std::fmt::Display) -> Error {
        outbox_error(&self.shared.dir, cause)
    }
}

/// The outbox's thread: every [`FLUSH_EVERY`], a round on every lane.
struct Flusher {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: JoinHandle<()>,
}

impl Flusher {
    fn start(lanes: Vec<Arc<LaneLog>>, log: Logger) -> std::io::Result<Flusher> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let signal = stop.clone();
        let thread = std::thread::Builder::new()
            .name("tetherdb-outbox".into())
            .spawn(move || {
                let (stopped, wake) = &*signal;
                let mut failing = false;
                loop {
                    let guard = locked(stopped);
                    let (guard, _) = wake
                        .wait_timeout_while(guard, FLUSH_EVERY, |stop| !*stop)
                        .unwrap_or_else(PoisonError::into_inner);
                    if *guard {
                        return;
                    }
                    drop(guard);
                    let mut failed = None;
                    for lane in &lanes {
                        let round =
                            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| lane.round()));
                        match round {
                            Ok(Ok(())) => {}
                            Ok(Err(e)) => failed = Some(e.to_string()),
                            Err(_) => {
                                failed =
                                    Some(format!("{}: panic in the outbox's thread", lane.name))
                            }
                        }
                    }
                    // Said once when it starts and once when it ends.
                    match (&failed, failing) {
                        (Some(e), false) => log.error(format_args!("{e}")),
                        (None, true) => log.info(format_args!("the outbox is written again")),
                        _ => {}
                    }
                    failing = failed.is_some();
                }
            })?;
        Ok(Flusher { stop, thread })
    }

    fn stop(self) {
        *locked(&self.stop.0) = true;
        self.stop.1.notify_all();
        let _ = self.thread.join();
    }
}

/// Moves the writes of an outbox that an earlier TetherDB kept in a sled
/// store (one tree `queued:<backend>` per backend; keys the big-endian
/// sequence numbers; records of the time queued in ms and the key's length,
/// big-endian, then the key and the value) into the logs of this handle's
/// backends, then deletes the sled files. Those writes had no recorded
/// destination: they go to the backend of that name, as they would have.
/// Until the sled files are gone they are the truth: a migration cut short
/// starts again.
fn migrate_sled_outbox(dir: &Path, backends: &[Arc<dyn Backend>]) -> Result<()> {
    if !(dir.join("db").is_file() && dir.join("conf").is_file()) {
        return Ok(());
    }
    let old_error = |e: sled::Error| outbox_error(dir, format!("the earlier (sled) outbox: {e}"));
    {
        // Declared first, dropped last: the store's lock is free after it.
        let _released = crate::backend::local::AwaitUnlock::new(dir);
        let old = sled::Config::new().path(dir).open().map_err(old_error)?;
        for tree_name in old.tree_names() {
            let Some(name) = tree_name.strip_prefix(b"queued:") else {
                continue;
            };
            let tree = old.open_tree(&tree_name).map_err(old_error)?;
            if tree.is_empty() {
                continue;
            }
            let name = String::from_utf8_lossy(name).into_owned();
            let Some(backend) = backends.iter().find(|b| b.name() == name) else {
                return Err(Error::Config(format!(
                    "the outbox {} holds {} queued write(s) for backend {name}, kept by an \
                     earlier TetherDB, and this configuration has no {name}: open it with one \
                     that has",
                    dir.display(),
                    tree.len()
                )));
            };
            for first_seq in segment_seqs(dir, &name)? {
                remove_file(&segment_path(dir, &name, first_seq))?;
            }
            let (_, mut file) = new_segment(dir, &name, 0, &backend.destination())?;
            let mut frames = Vec::new();
            for entry in tree.iter() {
                let (key, record) = entry.map_err(old_error)?;
                let seq = u64::from_be_bytes(key.as_ref().try_into().unwrap_or_default());
                let damaged =
                    || outbox_error(dir, format!("the earlier outbox's record {seq} is damaged"));
                let millis =
                    u64::from_be_bytes(record.get(..8).ok_or_else(damaged)?.try_into().unwrap());
                let key_len =
                    u32::from_be_bytes(record.get(8..12).ok_or_else(damaged)?.try_into().unwrap())
                        as usize;
                let stored_key = record.get(12..12 + key_len).ok_or_else(damaged)?;
                let value = &record[12 + key_len..];
                push_write(&mut frames, seq, millis, stored_key, value);
            }
            file.write_all(&frames)
                .and_then(|()| file.sync_data())
                .map_err(|e| outbox_error(dir, e))?;
        }
        sync_dir(dir).map_err(|e| outbox_error(dir, e))?;
    }
    // `db` first: without it, the outbox is no sled store any more.
    for file in ["db", "conf"] {
        remove_file(&dir.join(file))?;
    }
    for entry in fs::read_dir(dir)
        .map_err(|e| outbox_error(dir, e))?
        .flatten()
    {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") {
            remove_file(&entry.path())?;
        } else if name == "blobs" {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
    Ok(())
}

/// What a log's files hold: its segments, the destination, the writes not
/// done (`start..end`) and their bytes.
struct Scan {
    segments: Vec<Segment>,
    destination: Option<String>,
    start: u64,
    end: u64,
    bytes: u64,
}

/// Reads the log of backend `name` in `dir`, in two passes that keep no
/// more than a segment's list in memory: the done mark and the last write,
/// then the bytes of the writes not done. A frame cut short at the end of
/// the last segment (a crash while writing) is cut off; damage anywhere
/// else is an error.
fn scan(dir: &Path, name: &str) -> Result<Scan> {
    let mut segments = Vec::new();
    for first_seq in segment_seqs(dir, name)? {
        let path = segment_path(dir, name, first_seq);
        let len = fs::metadata(&path)
            .map_err(|e| outbox_error(&path, e))?
            .len();
        segments.push(Segment {
            first_seq,
            path,
            len,
            last_seq: None,
        });
    }
    let mut destination = None;
    let mut done = 0;
    let mut end = 0;
    let count = segments.len();
    let mut headerless = None;
    for (index, segment) in segments.iter_mut().enumerate() {
        let is_tail = index + 1 == count;
        let mut reader = FrameReader::open(&segment.path, 0, segment.len)
            .map_err(|e| outbox_error(&segment.path, e))?;
        let mut whole = 0;
        loop {
            let body = match reader.next() {
                Ok(Some((_, body))) => body,
                Ok(None) => break,
                // The tail a crash cut short.
                Err(_) if is_tail => break,
                Err(e) => return Err(outbox_error(&segment.path, e)),
            };
            match (whole, body.first()) {
                (0, Some(&HEADER)) => {
                    let found = decode_header(&body).ok_or_else(|| {
                        outbox_error(
                            &segment.path,
                            "not a TetherDB outbox segment of this version",
                        )
                    })?;
                    destination.get_or_insert(found);
                }
                (0, _) => return Err(outbox_error(&segment.path, "not a TetherDB outbox segment")),
                (_, Some(&WRITE)) => {
                    let seq = decode_write(&body)
                        .ok_or_else(|| outbox_error(&segment.path, "a damaged write"))?
                        .seq;
                    segment.last_seq = Some(seq);
                    end = end.max(seq + 1);
                }
                (_, Some(&DONE)) => {
                    let mark = body
                        .get(1..9)
                        .and_then(|b| b.try_into().ok())
                        .map(u64::from_le_bytes)
                        .ok_or_else(|| outbox_error(&segment.path, "a damaged done mark"))?;
                    done = done.max(mark);
                }
                _ => return Err(outbox_error(&segment.path, "a frame of an unknown kind")),
            }
            whole = reader.position;
        }
        if whole == 0 {
            // A crash while the segment was being created: no header yet.
            headerless = Some(index);
        } else if whole < segment.len {
            let file = OpenOptions::new()
                .write(true)
                .open(&segment.path)
                .map_err(|e| outbox_error(&segment.path, e))?;
            file.set_len(whole)
                .and_then(|()| file.sync_data())
                .map_err(|e| outbox_error(&segment.path, e))?;
            segment.len = whole;
        }
    }
    if let Some(index) = headerless {
        remove_file(&segments.remove(index).path)?;
    }
    let end = end.max(done);
    let mut start = end;
    let mut bytes = 0;
    for segment in segments
        .iter()
        .filter(|s| s.last_seq.is_some_and(|last| last >= done))
    {
        let mut reader = FrameReader::open(&segment.path, 0, segment.len)
            .map_err(|e| outbox_error(&segment.path, e))?;
        while let Some((_, body)) = reader.next().map_err(|e| outbox_error(&segment.path, e))? {
            if let Some(record) = decode_write(&body).filter(|r| r.seq >= done) {
                start = start.min(record.seq);
                bytes += FRAME_PREFIX + body.len() as u64;
            }
        }
    }
    Ok(Scan {
        segments,
        destination,
        start,
        end,
        bytes,
    })
}

/// The first seqs of backend `name`'s segments in `dir`, in order.
fn segment_seqs(dir: &Path, name: &str) -> Result<Vec<u64>> {
    let mut seqs = Vec::new();
    let entries = fs::read_dir(dir).map_err(|e| outbox_error(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| outbox_error(dir, e))?;
        let file = entry.file_name();
        let Some(file) = file.to_str() else { continue };
        if let Some(seq) = file
            .strip_prefix(name)
            .and_then(|rest| rest.strip_prefix('.'))
            .and_then(|rest| rest.strip_suffix(".log"))
            .filter(|digits| digits.len() == 20)
            .and_then(|digits| digits.parse::<u64>().ok())
        {
            seqs.push(seq);
        }
    }
    seqs.sort_unstable();
    Ok(seqs)
}

/// The backends with segments in `dir`.
fn segment_owners(dir: &Path) -> Vec<String> {
    let mut owners: Vec<String> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let file = entry.file_name().into_string().ok()?;
            let stem = file.strip_suffix(".log")?;
            let (owner, digits) = stem.rsplit_once('.')?;
            (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
                .then(|| owner.to_owned())
        })
        .collect();
    owners.sort();
    owners.dedup();
    owners
}

fn segment_path(dir: &Path, name: &str, first_seq: u64) -> PathBuf {
    dir.join(format!("{name}.{first_seq:020}.log"))
}

/// Creates a segment holding its header, durably: the file, then the
/// directory entry.
fn new_segment(
    dir: &Path,
    name: &str,
    first_seq: u64,
    destination: &str,
) -> Result<(Segment, File)> {
    let path = segment_path(dir, name, first_seq);
    let mut file = private_file(&path).map_err(|e| outbox_error(&path, e))?;
    let mut body = vec![HEADER];
    body.extend_from_slice(MAGIC);
    body.extend_from_slice(destination.as_bytes());
    let mut frame = Vec::new();
    push_frame(&mut frame, &body);
    file.write_all(&frame)
        .and_then(|()| file.sync_data())
        .map_err(|e| outbox_error(&path, e))?;
    sync_dir(dir).map_err(|e| outbox_error(dir, e))?;
    let segment = Segment {
        first_seq,
        path,
        len: frame.len() as u64,
        last_seq: None,
    };
    Ok((segment, file))
}

fn remove_file(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(outbox_error(path, e)),
        _ => Ok(()),
    }
}

/// Appends the frame of write `seq`, queued at `queued_at` (ms since the
/// epoch), encoded in place.
fn push_write(out: &mut Vec<u8>, seq: u64, queued_at: u64, key: &[u8], value: &[u8]) {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_PREFIX as usize]);
    out.push(WRITE);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&queued_at.to_le_bytes());
    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(value);
    seal_frame(&mut out[start..]);
}

fn push_frame(out: &mut Vec<u8>, body: &[u8]) {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_PREFIX as usize]);
    out.extend_from_slice(body);
    seal_frame(&mut out[start..]);
}

/// Fills in the length and CRC-32 of a frame whose body follows room left
/// for them.
fn seal_frame(frame: &mut [u8]) {
    let (prefix, body) = frame.split_at_mut(FRAME_PREFIX as usize);
    prefix[..4].copy_from_slice(&(body.len() as u32).to_le_bytes());
    prefix[4..].copy_from_slice(&crc32fast::hash(body).to_le_bytes());
}

fn decode_header(body: &[u8]) -> Option<String> {
    let rest = body.get(1..)?.strip_prefix(MAGIC.as_slice())?;
    String::from_utf8(rest.to_vec()).ok()
}

fn decode_write(body: &[u8]) -> Option<Record> {
    if body.first() != Some(&WRITE) {
        return None;
    }
    let u64_at = |at: usize| {
        body.get(at..at + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    };
    let seq = u64_at(1)?;
    let millis = u64_at(9)?;
    let key_len = u32::from_le_bytes(body.get(17..21)?.try_into().ok()?) as usize;
    let key = body.get(21..21 + key_len)?;
    let value = body.get(21 + key_len..)?;
    Some(Record {
        seq,
        queued_at: UNIX_EPOCH + Duration::from_millis(millis),
        write: Write {
            key: String::from_utf8(key.to_vec()).ok()?,
            value: value.to_vec(),
        },
    })
}

/// Reads frames from `offset` to `end` of a segment.
struct FrameReader {
    reader: BufReader<File>,
    position: u64,
    end: u64,
}

impl FrameReader {
    fn open(path: &Path, offset: u64, end: u64) -> std::io::Result<FrameReader> {
        let mut file = File::open(path)?;
        file.seek(SeekFrom::Start(offset))?;
        Ok(FrameReader {
            reader: BufReader::with_capacity(1 << 16, file),
            position: offset,
            end,
        })
    }

    /// The next frame's offset and body; `None` at the end; an error for a
    /// frame cut short or damaged.
    fn next(&mut self) -> std::io::Result<Option<(u64, Vec<u8>)>> {
        if self.position >= self.end {
            return Ok(None);
        }
        let damaged =
            |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
        if self.end - self.position < FRAME_PREFIX {
            return Err(damaged("a frame cut short"));
        }
        let mut prefix = [0u8; 8];
        self.reader.read_exact(&mut prefix)?;
        let len = u32::from_le_bytes(prefix[..4].try_into().unwrap()) as u64;
        let crc = u32::from_le_bytes(prefix[4..].try_into().unwrap());
        if self.end - self.position - FRAME_PREFIX < len {
            return Err(damaged("a frame cut short"));
        }
        let mut body = vec![0; len as usize];
        self.reader.read_exact(&mut body)?;
        if crc32fast::hash(&body) != crc {
            return Err(damaged("a frame whose checksum does not match"));
        }
        let offset = self.position;
        self.position += FRAME_PREFIX + len;
        Ok(Some((offset, body)))
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

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::sync::atomic::AtomicBool;

    use super::*;
    use crate::backend::Listing;
    use crate::error::Status;
    use crate::log::Level;

    /// A backend that only counts its flushes; the outbox calls nothing else.
    struct Sink {
        destination: String,
        flushes: AtomicU64,
        flush_fails: AtomicBool,
    }

    impl Backend for Sink {
        fn name(&self) -> &'static str {
            "sink"
        }
        fn write(&self, _: &str, _: &[u8]) -> Result<()> {
            unreachable!()
        }
        fn read(&self, _: &str) -> Result<Option<Vec<u8>>> {
            unreachable!()
        }
        fn update(&self, _: &str, _: &[u8]) -> Result<bool> {
            unreachable!()
        }
        fn delete(&self, _: &str) -> Result<bool> {
            unreachable!()
        }
        fn list(&self, _: &str, _: Option<&str>, _: usize) -> Result<Listing> {
            unreachable!()
        }
        fn write_batch(&self, _: &[Write]) -> Result<()> {
            unreachable!()
        }
        fn flush(&self) -> Result<()> {
            self.flushes.fetch_add(1, Ordering::SeqCst);
            match self.flush_fails.load(Ordering::SeqCst) {
                true => Err(Error::io("sink", "", "injected flush failure")),
                false => Ok(()),
            }
        }
        fn destination(&self) -> String {
            self.destination.clone()
        }
    }

    fn sink(destination: &str) -> Arc<Sink> {
        Arc::new(Sink {
            destination: destination.into(),
            flushes: AtomicU64::new(0),
            flush_fails: AtomicBool::new(false),
        })
    }

    fn open(dir: &Path, backend: &Arc<Sink>, max_bytes: u64) -> Result<Outbox> {
        let backends = [backend.clone() as Arc<dyn Backend>];
        Outbox::open(dir, max_bytes, &backends, Logger::new(Level::None))
    }

    fn write(key: &str, value_len: usize) -> Write {
        Write {
            key: key.into(),
            value: vec![b'v'; value_len],
        }
    }

    fn keys(records: &[Record]) -> Vec<String> {
        records.iter().map(|r| r.write.key.clone()).collect()
    }

    #[test]
    fn writes_come_back_in_order_and_only_done_ones_are_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox");
        let backend = sink("here");
        {
            let outbox = open(&path, &backend, 1 << 20).unwrap();
            let log = outbox.lane(0);
            assert_eq!(log.held(), 0..0);
            for seq in 0..5 {
                log.stage(seq, &write(&format!("k{seq}"), 10)).unwrap();
            }
            assert_eq!(keys(&log.read(1..3).unwrap()), ["k1", "k2"]);
            assert_eq!(keys(&log.read(3..5).unwrap()), ["k3", "k4"]);
            assert_eq!(keys(&log.read(0..2).unwrap()), ["k0", "k1"]);
            let size = write_size(&write("k0", 10));
            log.applied(2, 2 * size);
            let flushes = backend.flushes.load(Ordering::SeqCst);
            outbox.checkpoint().unwrap();
            assert!(
                backend.flushes.load(Ordering::SeqCst) > flushes,
                "the done mark went to disk without the backend's flush"
            );
            assert_eq!(outbox.bytes(), 3 * size);
        }
        let outbox = open(&path, &backend, 1 << 20).unwrap();
        let log = outbox.lane(0);
        assert_eq!(log.held(), 2..5);
        assert_eq!(outbox.bytes(), 3 * write_size(&write("k0", 10)));
        let records = log.read(2..5).unwrap();
        assert_eq!(keys(&records), ["k2", "k3", "k4"]);
        assert_eq!(records[0].seq, 2);
        assert!(records[0].queued_at.elapsed().unwrap() < Duration::from_secs(3600));
        // Numbering goes on after the writes left.
        log.stage(5, &write("k5", 1)).unwrap();
        assert_eq!(keys(&log.read(5..6).unwrap()), ["k5"]);
    }

    /// Polls `done` for at most a minute: a hang check, not a timing one.
    fn eventually(done: impl Fn() -> bool) {
        let give_up = std::time::Instant::now() + Duration::from_secs(60);
        while !done() {
            assert!(std::time::Instant::now() < give_up, "gave up waiting");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn the_outbox_thread_syncs_and_forgets_without_a_flush() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = open(&dir.path().join("outbox"), &sink("here"), 1 << 20).unwrap();
        let log = outbox.lane(0);
        // Written, but not synced, by a writer whose buffer was full.
        let position = log.stage(0, &write("k", 10)).unwrap();
        log.persist(false).unwrap();
        eventually(|| locked(&log.files).synced >= position);
        // Applied, then idle: the done mark reaches the disk, the bytes go.
        log.applied(1, write_size(&write("k", 10)));
        eventually(|| outbox.bytes() == 0);
        eventually(|| locked(&log.files).done_durable == 1);
    }

    #[test]
    fn without_the_backends_flush_nothing_is_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox");
        let backend = sink("here");
        {
            let outbox = open(&path, &backend, 1 << 20).unwrap();
            let log = outbox.lane(0);
            log.stage(0, &write("k0", 1)).unwrap();
            log.applied(1, write_size(&write("k0", 1)));
            backend.flush_fails.store(true, Ordering::SeqCst);
            assert_eq!(outbox.checkpoint().unwrap_err().status(), Status::Io);
        }
        backend.flush_fails.store(false, Ordering::SeqCst);
        let outbox = open(&path, &backend, 1 << 20).unwrap();
        assert_eq!(
            outbox.lane(0).held(),
            0..1,
            "applied, but maybe not durably"
        );
    }

    #[test]
    fn a_frame_cut_short_by_a_crash_ends_the_log_and_the_log_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox");
        let backend = sink("here");
        {
            let outbox = open(&path, &backend, 1 << 20).unwrap();
            let log = outbox.lane(0);
            for seq in 0..3 {
                log.stage(seq, &write(&format!("k{seq}"), 100)).unwrap();
            }
            log.persist(true).unwrap();
        }
        let segment = segment_path(&path, "sink", 0);
        let len = fs::metadata(&segment).unwrap().len();
        // The last write loses its last 10 bytes.
        OpenOptions::new()
            .write(true)
            .open(&segment)
            .unwrap()
            .set_len(len - 10)
            .unwrap();
        {
            let outbox = open(&path, &backend, 1 << 20).unwrap();
            let log = outbox.lane(0);
            assert_eq!(log.held(), 0..2);
            log.stage(2, &write("k2-again", 1)).unwrap();
            log.persist(true).unwrap();
        }
        let outbox = open(&path, &backend, 1 << 20).unwrap();
        let log = outbox.lane(0);
        assert_eq!(log.held(), 0..3);
        assert_eq!(keys(&log.read(0..3).unwrap()), ["k0", "k1", "k2-again"]);
    }

    #[test]
    fn writes_for_another_destination_are_not_delivered() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox");
        {
            let outbox = open(&path, &sink("cluster A"), 1 << 20).unwrap();
            outbox.lane(0).stage(0, &write("k", 1)).unwrap();
        }
        let error = open(&path, &sink("cluster B"), 1 << 20).err().unwrap();
        assert_eq!(error.status(), Status::Config);
        let message = error.to_string();
        assert!(
            message.contains("cluster A") && message.contains("cluster B"),
            "{message}"
        );
        // Drained with the first configuration, it serves the second.
        {
            let a = sink("cluster A");
            let outbox = open(&path, &a, 1 << 20).unwrap();
            let log = outbox.lane(0);
            assert_eq!(log.held(), 0..1);
            log.applied(1, write_size(&write("k", 1)));
        }
        let outbox = open(&path, &sink("cluster B"), 1 << 20).unwrap();
        assert_eq!(outbox.lane(0).held(), 1..1);
    }

    #[test]
    fn a_full_outbox_refuses_a_write_and_one_too_large_for_it_is_too_large() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = open(&dir.path().join("outbox"), &sink("here"), 1000).unwrap();
        let log = outbox.lane(0);
        log.stage(0, &write("k", 800)).unwrap();
        let full = log.stage(1, &write("k", 800)).unwrap_err();
        assert_eq!(full.status(), Status::Unavailable);
        assert!(full.to_string().contains("is full"), "{full}");
        let huge = log.stage(1, &write("k", 2000)).unwrap_err();
        assert_eq!(huge.status(), Status::TooLarge);
        assert_eq!(outbox.bytes(), write_size(&write("k", 800)));
    }

    #[test]
    fn segments_whose_writes_are_done_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox");
        let outbox = open(&path, &sink("here"), 1 << 30).unwrap();
        let log = outbox.lane(0);
        let big = write("k", 1 << 20);
        for seq in 0..20 {
            log.stage(seq, &big).unwrap();
            log.persist(false).unwrap();
        }
        let segments = || segment_seqs(&path, "sink").unwrap().len();
        assert!(segments() >= 2, "no new segment after 20 MiB");
        assert_eq!(log.read(15..16).unwrap()[0].seq, 15);
        log.applied(20, 20 * write_size(&big));
        outbox.checkpoint().unwrap();
        assert_eq!(segments(), 1);
        assert_eq!(outbox.bytes(), 0);
    }

    /// Writes an outbox as TetherDB kept it before its own log: a sled
    /// store, one tree per backend.
    fn old_outbox(dir: &Path, backend: &str, keys: &[&str]) {
        let old = sled::open(dir).unwrap();
        let tree = old.open_tree(format!("queued:{backend}")).unwrap();
        for (seq, key) in keys.iter().enumerate() {
            let mut record = 1_700_000_000_000u64.to_be_bytes().to_vec();
            record.extend_from_slice(&(key.len() as u32).to_be_bytes());
            record.extend_from_slice(key.as_bytes());
            record.extend_from_slice(b"value");
            tree.insert((seq as u64 + 7).to_be_bytes(), record).unwrap();
        }
        old.flush().unwrap();
        drop(tree);
        drop(old);
        drop(crate::backend::local::AwaitUnlock::new(dir));
    }

    #[test]
    fn writes_an_earlier_sled_outbox_held_move_into_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox");
        old_outbox(&path, "sink", &["b:one", "b:two", "b:three"]);
        let outbox = open(&path, &sink("here"), 1 << 20).unwrap();
        let log = outbox.lane(0);
        assert_eq!(log.held(), 7..10);
        let records = log.read(7..10).unwrap();
        assert_eq!(keys(&records), ["b:one", "b:two", "b:three"]);
        assert_eq!(records[2].write.value, b"value");
        assert!(!path.join("db").exists() && !path.join("conf").exists());
        drop(outbox);
        let outbox = open(&path, &sink("here"), 1 << 20).unwrap();
        assert_eq!(outbox.lane(0).held(), 7..10, "moved once");
    }

    #[test]
    fn an_earlier_sled_outbox_for_an_unconfigured_backend_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox");
        old_outbox(&path, "etcd", &["b:one"]);
        let error = open(&path, &sink("here"), 1 << 20).err().unwrap();
        assert_eq!(error.status(), Status::Config);
        assert!(error.to_string().contains("backend etcd"), "{error}");
        assert!(path.join("db").exists(), "the writes were dropped");
    }

    #[test]
    fn the_outbox_is_private_to_its_owner() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/outbox");
        let _outbox = open(&path, &sink("here"), 1 << 20).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o700);
        assert_eq!(mode(&dir.path().join("a")), 0o700);
        for entry in fs::read_dir(&path).unwrap() {
            assert_eq!(mode(&entry.unwrap().path()), 0o600);
        }
    }

    #[test]
    fn one_handle_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox");
        let _first = open(&path, &sink("here"), 1 << 20).unwrap();
        let second = open(&path, &sink("here"), 1 << 20).err().unwrap();
        assert!(second.to_string().contains("outbox_path"), "{second}");
    }
}
