//! The worker thread of a lane: it waits until a batch is due, takes it
//! (from memory, or read back from the outbox), applies it in pieces the
//! engine accepts, retries while the backend is unreachable, and reports
//! what failed for good.

use std::borrow::Cow;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::batch::{last_write_per_key, piece_len};
use super::lane::{instant_of, reset_to_done, Failures, Lane, Queued, State, Store};
use super::outbox::{self, LaneLog};
use crate::backend::{now_ms, Write};
use crate::error::{Error, Result};
use crate::log::Logger;

/// The first pause before a batch is retried; each failure doubles it.
const FIRST_RETRY: Duration = Duration::from_millis(50);
/// The longest pause between two tries, so that writes go out soon after
/// the backend is back.
const LAST_RETRY: Duration = Duration::from_secs(2);

/// How applying one piece of a batch ended.
pub(super) enum Outcome {
    /// Applied, but for this many writes whose deadline had passed (left
    /// out: docs/design.md, Expiry).
    Applied { expired: u64 },
    /// Failed for good: reported by the next flush or stop.
    Failed(Error),
    /// A stop gave up on the unreachable backend.
    GaveUp(Error),
}

/// The worker thread of one lane.
pub(super) struct Worker {
    pub(super) size: usize,
    pub(super) capacity: usize,
    pub(super) interval: Duration,
    pub(super) lane: Arc<Lane>,
    pub(super) failures: Arc<Mutex<Failures>>,
    pub(super) log: Logger,
}

impl Worker {
    pub(super) fn run(self) {
        while let Some(batch) = self.next_batch() {
            if !self.send(batch) {
                return;
            }
        }
    }

    /// Waits until a batch is due and takes it; `None` once stopping with
    /// nothing left.
    pub(super) fn next_batch(&self) -> Option<Vec<Queued>> {
        let mut state = self.lane.lock();
        loop {
            let waiting = state.waiting();
            if waiting == 0 && state.stopping {
                return None;
            }
            let due = state
                .first_waiting_at
                .map_or(Instant::now(), |at| at + self.interval);
            if waiting > 0
                && (waiting >= self.size as u64
                    || state.pending() >= self.capacity as u64
                    || state.stopping
                    || state.flush_to > state.taken
                    || Instant::now() >= due)
            {
                let (taken, batch) = self.take(state, waiting);
                state = taken;
                match batch {
                    Ok(batch) => return Some(batch),
                    Err(error) => {
                        // The outbox cannot be read: nothing to do but
                        // report and try again later.
                        self.log.error(format_args!("{error}"));
                        state = self.pause(state, LAST_RETRY);
                        continue;
                    }
                }
            }
            state = match waiting {
                0 => self
                    .lane
                    .work
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner),
                _ => self.pause(state, due.saturating_duration_since(Instant::now())),
            };
        }
    }

    /// Takes the next batch of the `waiting` writes: `size` of them at most.
    /// Reads the outbox, when it must, without the lane's lock: writers go
    /// on meanwhile, and only this thread moves `taken`.
    pub(super) fn take<'a>(
        &'a self,
        mut state: MutexGuard<'a, State>,
        waiting: u64,
    ) -> (MutexGuard<'a, State>, Result<Vec<Queued>>) {
        let count = waiting.min(self.size as u64);
        let seqs = state.taken..state.taken + count;
        let batch: Vec<Queued> = if state.waiting.len() as u64 >= count {
            state.waiting.drain(..count as usize).collect()
        } else {
            // Memory is short only of writes the outbox holds: after an
            // outage, or from an earlier run. What it holds starts at
            // `taken`: it goes, and the batch is read back.
            let Store::Outbox(log) = &self.lane.store else {
                let error = Error::Internal(format!(
                    "{}: {waiting} writes wait, {} in memory",
                    self.lane.name(),
                    state.waiting.len()
                ));
                return (state, Err(error));
            };
            state.waiting.clear();
            drop(state);
            let read = self.read_back(log, seqs.clone());
            state = self.lane.lock();
            match read {
                Ok(batch) => batch,
                Err(error) => return (state, Err(error)),
            }
        };
        state.first_taken_at = state.first_waiting_at;
        state.taken = seqs.end;
        // The next write's time: in memory, or, when only the outbox holds
        // it, no later than this batch's last, which was queued before it.
        state.first_waiting_at = match state.waiting.front() {
            Some(next) => Some(next.queued_at),
            None if state.taken < state.next => batch.last().map(|q| q.queued_at),
            None => None,
        };
        (state, Ok(batch))
    }

    /// The writes numbered `seqs`, read back from the outbox.
    pub(super) fn read_back(
        &self,
        log: &LaneLog,
        seqs: std::ops::Range<u64>,
    ) -> Result<Vec<Queued>> {
        let batch: Vec<Queued> = log
            .read(seqs.clone())?
            .into_iter()
            .map(|record| Queued {
                seq: record.seq,
                queued_at: instant_of(record.queued_at),
                write: record.write,
            })
            .collect();
        if batch.len() as u64 != seqs.end - seqs.start {
            return Err(Error::Internal(format!(
                "{}: the outbox holds {} of the writes {seqs:?}",
                self.lane.name(),
                batch.len()
            )));
        }
        Ok(batch)
    }

    /// Applies a batch, in pieces the backend accepts. Returns false when
    /// a stop gave up on the backend.
    pub(super) fn send(&self, batch: Vec<Queued>) -> bool {
        let first = batch.first().map_or(0, |q| q.seq);
        let end_of_batch = batch.last().map_or(0, |q| q.seq + 1);
        // The outbox bytes of the batch's first i writes, at [i].
        let mut bytes = vec![0];
        for queued in &batch {
            bytes.push(bytes[bytes.len() - 1] + outbox::write_size(&queued.write));
        }
        let bytes_before = |seq: u64| bytes[(seq - first) as usize];
        let (seqs, writes) = last_write_per_key(batch);
        let limit = self.lane.backend.batch_limit();
        let mut start = 0;
        while start < writes.len() {
            let end = start + piece_len(&writes[start..], limit);
            // A piece takes with it the writes its own overtook; the last
            // one ends the batch, since it holds the batch's last write.
            let done = seqs.get(end).copied().unwrap_or(end_of_batch);
            let mut expired = 0;
            let error = match self.apply(&writes[start..end]) {
                Outcome::Applied { expired: gone } => {
                    expired = gone;
                    None
                }
                Outcome::Failed(error) => Some(error),
                Outcome::GaveUp(error) => {
                    self.give_up(error);
                    return false;
                }
            };
            if let Store::Outbox(log) = &self.lane.store {
                log.applied(
                    done,
                    bytes_before(done) - bytes_before(self.lane.lock().done),
                );
            }
            self.finish(done, error, expired);
            start = end;
        }
        true
    }

    /// Applies one piece, trying again while the backend is unreachable.
    pub(super) fn apply(&self, writes: &[Write]) -> Outcome {
        let mut pause = FIRST_RETRY;
        let counters = &self.lane.counters;
        loop {
            let tried = Instant::now();
            // A write whose deadline passed while it waited is not applied
            // (nor the earlier writes to its key that it overtook).
            let now = now_ms();
            let live = |w: &&Write| !w.deadline.is_some_and(|d| d.has_passed(now));
            let live: Cow<[Write]> = match writes.iter().all(|w| live(&w)) {
                true => Cow::Borrowed(writes),
                false => Cow::Owned(writes.iter().filter(live).cloned().collect()),
            };
            let expired = (writes.len() - live.len()) as u64;
            if live.is_empty() {
                return Outcome::Applied { expired };
            }
            counters.batches.fetch_add(1, Ordering::Relaxed);
            let error = match self.write_batch(&live) {
                Ok(()) => {
                    if self.lane.lock().outage.take().is_some() {
                        self.log
                            .info(format_args!("{}: reachable again", self.lane.name()));
                    }
                    return Outcome::Applied { expired };
                }
                Err(error) if error.is_transient() => error,
                Err(error) => return Outcome::Failed(error),
            };
            let mut state = self.lane.lock();
            let since = match &mut state.outage {
                Some((since, last)) => {
                    *last = error.clone();
                    *since
                }
                None => {
                    self.log.warn(format_args!(
                        "{error}; {} queued write(s) wait and are retried",
                        state.pending()
                    ));
                    state.outage = Some((tried, error.clone()));
                    tried
                }
            };
            let timeout = self.lane.backend.timeout();
            if state.stopping && since.elapsed() >= timeout {
                return Outcome::GaveUp(error);
            }
            // A stop cuts the pause short once the outage has lasted the
            // backend's timeout.
            let until = Instant::now() + pause;
            while Instant::now() < until {
                let until = match state.stopping {
                    true => until.min(since + timeout),
                    false => until,
                };
                if Instant::now() >= until {
                    break;
                }
                state = self.pause(state, until.saturating_duration_since(Instant::now()));
            }
            drop(state);
            counters
                .retried
                .fetch_add(writes.len() as u64, Ordering::Relaxed);
            pause = (pause * 2).min(LAST_RETRY);
        }
    }

    /// Marks the writes before `end` done: applied, or failed with `error`,
    /// but for `expired` that were left out.
    pub(super) fn finish(&self, end: u64, error: Option<Error>, expired: u64) {
        let lane = &self.lane;
        // Only this thread moves `done`.
        let done = lane.lock().done;
        lane.counters.expired.fetch_add(expired, Ordering::Relaxed);
        let count = end - done - expired;
        // Reported before a flush waiting for these writes can return.
        match error {
            None => {
                lane.counters.applied.fetch_add(count, Ordering::Relaxed);
            }
            Some(error) => {
                lane.counters.failed.fetch_add(count, Ordering::Relaxed);
                self.log
                    .error(format_args!("{count} queued write(s) failed: {error}"));
                self.record(error, count);
            }
        }
        let mut state = lane.lock();
        state.done = end;
        if state.done == state.taken {
            state.first_taken_at = None;
        }
        drop(state);
        lane.progress.notify_all();
    }

    pub(super) fn record(&self, error: Error, writes: u64) {
        self.failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .record(error, writes);
    }

    /// A stop gave up on the unreachable backend: the writes not applied
    /// stay in the outbox for the next start, or fail when in memory.
    pub(super) fn give_up(&self, error: Error) {
        let lane = &self.lane;
        let mut state = lane.lock();
        reset_to_done(lane, &mut state, error, &self.failures);
        drop(state);
        lane.progress.notify_all();
    }

    pub(super) fn write_batch(&self, writes: &[Write]) -> Result<()> {
        // A panic in a backend must not end the worker: the writes behind it
        // would never be applied.
        let backend = &self.lane.backend;
        catch_unwind(AssertUnwindSafe(|| backend.write_batch(writes))).unwrap_or_else(|_| {
            Err(Error::Internal(format!(
                "{}: panic while writing a batch",
                backend.name()
            )))
        })
    }

    /// Waits on the lane for at most `pause`, or until woken.
    pub(super) fn pause<'a>(
        &self,
        state: MutexGuard<'a, State>,
        pause: Duration,
    ) -> MutexGuard<'a, State> {
        self.lane
            .work
            .wait_timeout(state, pause)
            .unwrap_or_else(PoisonError::into_inner)
            .0
    }
}
