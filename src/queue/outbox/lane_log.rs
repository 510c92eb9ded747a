//! One backend's log: staging, writing, the group commit, done marks,
//! reading back.

use super::*;

/// The log of one backend's queued writes.
pub(crate) struct LaneLog {
    pub(super) name: String,
    destination: String,
    backend: Arc<dyn Backend>,
    shared: Arc<Shared>,
    /// Frames encoded but not yet written. Held only to copy bytes.
    staged: Mutex<Staged>,
    /// The files. Held across their I/O, never while a queue's lock is held.
    pub(super) files: Mutex<Files>,
    /// The group commit: what the last fsync covered, and whether one runs.
    synced: Mutex<Synced>,
    sync_done: Condvar,
    /// The last done mark staged; held across the backend's flush, so
    /// that marks are made one at a time, each after its flush.
    pub(super) marking: Mutex<u64>,
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

pub(super) struct Files {
    /// In order; the last is the one written to.
    segments: Vec<Segment>,
    tail: File,
    /// Bytes staged that are now in the files.
    written: u64,
    /// Bytes staged that the last fsync covered.
    pub(super) synced: u64,
    /// The done mark written, with the bytes it frees, not yet fsynced.
    done_written: Option<(u64, u64)>,
    /// The done mark on disk for sure.
    pub(super) done_durable: u64,
    /// Where the read-back left off: a write's seq and its frame.
    cursor: Option<(u64, Position)>,
}

#[derive(Clone, Copy)]
struct Position {
    segment_first: u64,
    offset: u64,
}

#[derive(Default)]
struct Synced {
    covered: u64,
    running: bool,
}

impl LaneLog {
    pub(super) fn open(backend: Arc<dyn Backend>, shared: Arc<Shared>) -> Result<LaneLog> {
        let name = backend.name().to_owned();
        let name = name.as_str();
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
            name: name.to_owned(),
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
                &self.name,
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
                &self.name,
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
                &self.name,
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
            write.deadline,
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
                new_segment(&self.shared.dir, &self.name, last + 1, &self.destination)
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
    pub(super) fn round(&self) -> Result<()> {
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

    /// The writes numbered `seqs`, in order, read back from the files; only
    /// the first of them that reach `max_bytes` (by `write_size`), and at
    /// least one.
    pub fn read(&self, seqs: std::ops::Range<u64>, max_bytes: u64) -> Result<Vec<Record>> {
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
        let mut bytes = 0;
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
                bytes += write_size(&record.write);
                records.push(record);
                if seq + 1 >= seqs.end || bytes >= max_bytes {
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
