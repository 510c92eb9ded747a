//! A lane: the queue of one backend, what its callers and its worker share.
//!
//! Every write gets the next sequence number of its lane. A lane's state
//! is three marks on that sequence: writes before `done` are applied or
//! reported, writes before `taken` are with the worker, and writes before
//! `next` are queued. The first writes from `taken` on wait in memory too,
//! so that the worker reads the outbox back only after an outage or a
//! restart.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};

use super::outbox::LaneLog;
use crate::backend::{Backend, Write};
use crate::config::QueueConfig;
use crate::error::{Error, Result};

/// How often a caller waiting on a worker looks whether its backend has
/// been unreachable for longer than its timeout.
const OUTAGE_POLL: Duration = Duration::from_millis(20);

/// One queued write, with its place in its lane.
pub(super) struct Queued {
    pub(super) seq: u64,
    pub(super) queued_at: Instant,
    pub(super) write: Write,
}

/// Failed queued writes not yet reported.
#[derive(Default)]
pub(super) struct Failures {
    pub(super) count: u64,
    pub(super) first: Option<Error>,
}

impl Failures {
    pub(super) fn record(&mut self, error: Error, writes: u64) {
        self.count += writes;
        self.first.get_or_insert(error);
    }

    pub(super) fn take(&mut self) -> Result<()> {
        let count = std::mem::take(&mut self.count);
        match self.first.take() {
            Some(first) => Err(Error::QueuedWritesFailed {
                count,
                first: Box::new(first),
            }),
            None => Ok(()),
        }
    }
}

/// Where a lane's writes wait.
pub(super) enum Store {
    /// In `State::waiting`.
    Memory,
    /// In this log of the outbox (and the first of them in memory too).
    Outbox(Arc<LaneLog>),
}

/// Counters for `tether_stats`.
#[derive(Default)]
pub(super) struct Counters {
    pub(super) queued: AtomicU64,
    pub(super) applied: AtomicU64,
    pub(super) retried: AtomicU64,
    pub(super) failed: AtomicU64,
    /// Writes not applied because their deadline passed first.
    pub(super) expired: AtomicU64,
    pub(super) batches: AtomicU64,
}

/// The queue of one backend: what its callers and its worker share.
pub(super) struct Lane {
    pub(super) backend: Arc<dyn Backend>,
    pub(super) store: Store,
    pub(super) state: Mutex<State>,
    /// The worker waits on it: writes, a flush, a stop.
    pub(super) work: Condvar,
    /// Writers and flushes wait on it: writes applied.
    pub(super) progress: Condvar,
    pub(super) counters: Counters,
}

#[derive(Default)]
pub(super) struct State {
    /// Writes before it are applied, or reported as failed.
    pub(super) done: u64,
    /// Writes before it are with the worker.
    pub(super) taken: u64,
    /// The sequence number of the next write.
    pub(super) next: u64,
    /// The first writes from `taken` on: all of them with `Store::Memory`;
    /// with the outbox, as many as the capacity allows, so that the worker
    /// reads the outbox back only after an outage or a restart.
    pub(super) waiting: VecDeque<Queued>,
    /// When the write at `taken` was queued.
    pub(super) first_waiting_at: Option<Instant>,
    /// When the first write of the batch the worker is sending was queued.
    pub(super) first_taken_at: Option<Instant>,
    /// A flush wants the writes before it sent without waiting.
    pub(super) flush_to: u64,
    /// Set by stop: send everything, then end; once the backend has been
    /// unreachable for its timeout, give up.
    pub(super) stopping: bool,
    /// Since when the backend has been unreachable, and the last error;
    /// `None` while it answers.
    pub(super) outage: Option<(Instant, Error)>,
    /// Why the worker ended without a stop: every call waiting on it, and
    /// every later one, fails with it at once instead of waiting for ever.
    pub(super) dead: Option<String>,
}

impl State {
    pub(super) fn pending(&self) -> u64 {
        self.next - self.done
    }

    pub(super) fn waiting(&self) -> u64 {
        self.next - self.taken
    }
}

impl Lane {
    pub(super) fn new(backend: Arc<dyn Backend>, log: Option<&Arc<LaneLog>>) -> Result<Lane> {
        let mut state = State::default();
        let store = match log {
            None => Store::Memory,
            Some(log) => {
                let held = log.held();
                (state.done, state.taken, state.next) = (held.start, held.start, held.end);
                if !held.is_empty() {
                    let first = log.read(held.start..held.start + 1, u64::MAX)?;
                    state.first_waiting_at = first.first().map(|r| instant_of(r.queued_at));
                }
                Store::Outbox(log.clone())
            }
        };
        Ok(Lane {
            backend,
            store,
            state: Mutex::new(state),
            work: Condvar::new(),
            progress: Condvar::new(),
            counters: Counters::default(),
        })
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn name(&self) -> &str {
        self.backend.name()
    }

    /// The last error, once the backend has been unreachable for its timeout.
    pub(super) fn unreachable(&self, state: &State) -> Option<Error> {
        match &state.outage {
            Some((since, error)) if since.elapsed() >= self.backend.timeout() => {
                Some(error.clone())
            }
            _ => None,
        }
    }

    /// Fails once the backend has been unreachable for its timeout, saying
    /// how many queued writes wait for it, or at once when the worker died.
    pub(super) fn check_reachable(&self, state: &State) -> Result<()> {
        if let Some(cause) = &state.dead {
            return Err(Error::Internal(format!(
                "{}: the worker ended: {cause}; {} queued write(s) not applied (tether_stop, \
                 then tether_start, starts a new one)",
                self.name(),
                state.pending()
            )));
        }
        match self.unreachable(state) {
            None => Ok(()),
            Some(error) => Err(Error::still_waiting(
                Some(&error),
                self.name(),
                format!(
                    "{} queued write(s) not applied yet; they stay queued and are retried \
                     (last error: {})",
                    state.pending(),
                    error.cause()
                ),
            )),
        }
    }

    /// Waits for room, then queues one write. With the outbox, returns
    /// the log position that a sync must reach to cover it.
    pub(super) fn push(&self, write: Write, settings: &QueueConfig) -> Result<Option<u64>> {
        let mut state = self.lock();
        self.check_reachable_or_dead(&state)?;
        while state.pending() >= settings.capacity as u64 {
            // In an outage the outbox takes what memory would not: it is
            // bounded in bytes, and the writes are safe on disk.
            if state.outage.is_some() && matches!(self.store, Store::Outbox(..)) {
                break;
            }
            self.check_reachable(&state)?;
            // A full queue is due now, whatever its size and age.
            self.work.notify_one();
            state = self
                .progress
                .wait_timeout(state, OUTAGE_POLL)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        let seq = state.next;
        // Staging only copies the write into the log's buffer: no lock of
        // the lane is ever held across I/O.
        let (in_memory, position) = match &self.store {
            Store::Memory => (true, None),
            Store::Outbox(log) => {
                let position = log.stage(seq, &write)?;
                let held = state.waiting.len();
                let fits = held as u64 == state.waiting() && held < settings.capacity;
                (fits, Some(position))
            }
        };
        if in_memory {
            state.waiting.push_back(Queued {
                seq,
                queued_at: Instant::now(),
                write,
            });
        }
        state.next += 1;
        self.counters.queued.fetch_add(1, Ordering::Relaxed);
        let waiting = state.waiting();
        if waiting == 1 {
            state.first_waiting_at = Some(Instant::now());
        }
        if waiting == 1 || waiting == settings.size as u64 {
            self.work.notify_one();
        }
        Ok(position)
    }

    /// Fails at once when the worker died.
    pub(super) fn check_reachable_or_dead(&self, state: &State) -> Result<()> {
        match state.dead {
            Some(_) => self.check_reachable(state),
            None => Ok(()),
        }
    }

    /// The worker ended without a stop (a panic): what it had taken goes
    /// back to the outbox (or, in memory, is reported as failed), and every
    /// waiting call is woken to fail.
    pub(super) fn die(&self, cause: String, failures: &Mutex<Failures>) {
        let mut state = self.lock();
        let error = Error::Internal(format!("{}: the worker ended: {cause}", self.name()));
        reset_to_done(self, &mut state, error, failures);
        state.dead = Some(cause);
        drop(state);
        self.progress.notify_all();
    }

    /// Waits until the writes queued before the call are applied or
    /// reported; gives up once the backend has been unreachable for its
    /// timeout.
    pub(super) fn flush(&self) -> Result<()> {
        let mut state = self.lock();
        let target = state.next;
        state.flush_to = state.flush_to.max(target);
        self.work.notify_one();
        while state.done < target {
            self.check_reachable(&state)?;
            state = self
                .progress
                .wait_timeout(state, OUTAGE_POLL)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        Ok(())
    }

    pub(super) fn stats(&self) -> Value {
        let state = self.lock();
        let counter = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let c = &self.counters;
        let oldest = state.first_taken_at.or(state.first_waiting_at);
        json!({
            "queued": counter(&c.queued),
            "applied": counter(&c.applied),
            "retried": counter(&c.retried),
            "failed": counter(&c.failed),
            "expired": counter(&c.expired),
            "batches": counter(&c.batches),
            "pending": state.pending(),
            "oldest_pending_ms": oldest.map_or(0, |at| at.elapsed().as_millis() as u64),
            "unreachable_ms": state.outage.as_ref().map_or(0, |(since, _)| since.elapsed().as_millis() as u64),
            "last_error": state.outage.as_ref().map(|(_, error)| error.to_string()),
        })
    }
}

pub(super) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    match (panic.downcast_ref::<&str>(), panic.downcast_ref::<String>()) {
        (Some(message), _) => format!("panic: {message}"),
        (_, Some(message)) => format!("panic: {message}"),
        _ => "panic".into(),
    }
}

/// The `Instant` a wall-clock time was, as near as the clocks tell.
pub(super) fn instant_of(at: SystemTime) -> Instant {
    let age = at.elapsed().unwrap_or_default();
    Instant::now().checked_sub(age).unwrap_or_else(Instant::now)
}

/// Forgets what the worker took but did not finish: with the outbox, it is
/// read back from there by the next worker; in memory, it is reported as
/// failed with `error`, with every other write not applied.
pub(super) fn reset_to_done(
    lane: &Lane,
    state: &mut State,
    error: Error,
    failures: &Mutex<Failures>,
) {
    match lane.store {
        Store::Outbox(..) => {
            state.taken = state.done;
            // Memory holds writes from `taken` on, or none.
            state.waiting.clear();
            state.first_waiting_at = state.first_taken_at.take().or(state.first_waiting_at);
        }
        Store::Memory => {
            let count = state.pending();
            lane.counters.failed.fetch_add(count, Ordering::Relaxed);
            failures
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .record(error, count);
            state.waiting.clear();
            (state.done, state.taken) = (state.next, state.next);
            (state.first_taken_at, state.first_waiting_at) = (None, None);
        }
    }
}
