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
/// The most bytes (as the outbox counts them) one batch takes when more
/// writes wait: a deep queue goes out in large batches, yet one batch's
/// memory stays bounded, also when it is read back from the outbox.
const BATCH_BYTES: u64 = 8 << 20;

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
    /// Pieces of a batch applied at once: `queue_batch.in_flight` on a
    /// remote backend, else 1.
    pub(super) in_flight: usize,
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

    /// The most writes one batch takes: what one round of `in_flight`
    /// engine batches carries, and never fewer than `size`.
    fn most_writes(&self) -> u64 {
        let limit = self.lane.backend.batch_limit();
        let round = limit.writes.saturating_mul(self.in_flight);
        round.max(self.size) as u64
    }

    /// Takes the next batch of the `waiting` writes: every one of them, up
    /// to [`Worker::most_writes`] and [`BATCH_BYTES`] (at least one). Reads
    /// the outbox, when it must, without the lane's lock: writers go on
    /// meanwhile, and only this thread moves `taken`.
    pub(super) fn take<'a>(
        &'a self,
        mut state: MutexGuard<'a, State>,
        waiting: u64,
    ) -> (MutexGuard<'a, State>, Result<Vec<Queued>>) {
        let most = waiting.min(self.most_writes());
        let batch: Vec<Queued> = if !state.waiting.is_empty() {
            // Memory holds the first waiting writes: as many as fit.
            let mut bytes = 0;
            let count = state
                .waiting
                .iter()
                .take(most as usize)
                .take_while(|queued| {
                    let before = bytes;
                    bytes += outbox::write_size(&queued.write);
                    before < BATCH_BYTES
                })
                .count();
            state.waiting.drain(..count).collect()
        } else {
            // Memory holds none of the waiting writes only where the outbox
            // holds them (after an outage, or from an earlier run): the
            // batch is read back.
            let Store::Outbox(log) = &self.lane.store else {
                let error = Error::Internal(format!(
                    "{}: {waiting} writes wait, {} in memory",
                    self.lane.name(),
                    state.waiting.len()
                ));
                return (state, Err(error));
            };
            let seqs = state.taken..state.taken + most;
            drop(state);
            let read = self.read_back(log, seqs);
            state = self.lane.lock();
            match read {
                Ok(batch) => batch,
                Err(error) => return (state, Err(error)),
            }
        };
        state.first_taken_at = state.first_waiting_at;
        state.taken += batch.len() as u64;
        // The next write's time: in memory, or, when only the outbox holds
        // it, no later than this batch's last, which was queued before it.
        state.first_waiting_at = match state.waiting.front() {
            Some(next) => Some(next.queued_at),
            None if state.taken < state.next => batch.last().map(|q| q.queued_at),
            None => None,
        };
        (state, Ok(batch))
    }

    /// The first writes numbered `seqs` that fit in [`BATCH_BYTES`], read
    /// back from the outbox.
    pub(super) fn read_back(
        &self,
        log: &LaneLog,
        seqs: std::ops::Range<u64>,
    ) -> Result<Vec<Queued>> {
        let batch: Vec<Queued> = log
            .read(seqs.clone(), BATCH_BYTES)?
            .into_iter()
            .map(|record| Queued {
                seq: record.seq,
                queued_at: instant_of(record.queued_at),
                write: record.write,
            })
            .collect();
        let from_start = batch.iter().zip(seqs.start..).all(|(q, seq)| q.seq == seq);
        if batch.is_empty() || !from_start {
            return Err(Error::Internal(format!(
                "{}: the outbox holds {} of the writes {seqs:?}, not from the first on",
                self.lane.name(),
                batch.len()
            )));
        }
        Ok(batch)
    }

    /// Applies a batch, in pieces the backend accepts, up to `in_flight`
    /// of them at once. Pieces of one batch touch different keys (the last
    /// write to each key is kept), so they may land in any order; each is
    /// marked done in order, once it and every piece before it landed.
    /// Returns false when a stop gave up on the backend.
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
        let mut pieces = Vec::new();
        let mut start = 0;
        while start < writes.len() {
            let end = start + piece_len(&writes[start..], limit);
            pieces.push(&writes[start..end]);
            start = end;
        }
        let mut end = 0;
        for window in pieces.chunks(self.in_flight) {
            for (piece, outcome) in window.iter().zip(self.apply_all(window)) {
                end += piece.len();
                // A piece takes with it the writes its own overtook; the
                // last one ends the batch, since it holds its last write.
                let done = seqs.get(end).copied().unwrap_or(end_of_batch);
                if !self.settle(outcome, done, &bytes_before) {
                    return false;
                }
            }
        }
        true
    }

    /// Applies `pieces` side by side, each on a thread of its own but the
    /// first, which this thread applies; gives their outcomes in order.
    fn apply_all(&self, pieces: &[&[Write]]) -> Vec<Outcome> {
        let [first, rest @ ..] = pieces else {
            return Vec::new();
        };
        std::thread::scope(|scope| {
            let others: Vec<_> = rest
                .iter()
                .map(|piece| {
                    std::thread::Builder::new()
                        .name(format!("tetherdb-{}", self.lane.name()))
                        .spawn_scoped(scope, || self.apply(piece))
                        // No thread to be had: this one applies it, after.
                        .map_err(|_| *piece)
                })
                .collect();
            let mut outcomes = vec![self.apply(first)];
            for other in others {
                outcomes.push(match other {
                    Ok(thread) => thread
                        .join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                    Err(piece) => self.apply(piece),
                });
            }
            outcomes
        })
    }

    /// Records how applying the piece that ends before `done` went: marks
    /// it done in the outbox and the lane. Returns false when a stop gave
    /// up on the backend.
    fn settle(&self, outcome: Outcome, done: u64, bytes_before: &impl Fn(u64) -> u64) -> bool {
        let (error, expired) = match outcome {
            Outcome::Applied { expired } => (None, expired),
            Outcome::Failed(error) => (Some(error), 0),
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
