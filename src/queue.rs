//! The batch worker: queued writes per backend, applied in
//! batches of `size`, or once the oldest write of a batch has waited
//! `interval` — whichever comes first.
//!
//! Each backend has a lane: its queue of writes and a worker thread of its
//! own, so that an unreachable backend holds up only its own writes. The
//! writes of a lane wait either in memory or, with `queue_batch.durable`,
//! in the on-disk [`Outbox`], from before the write call returns until the
//! backend has acknowledged them.
//!
//! Nothing queued is lost: a batch that fails because the backend is
//! unreachable is retried with capped exponential backoff; stop, flush and
//! drop apply everything queued before them; a write that fails for good
//! is counted and reported by the next flush or stop; and when a stop gives
//! up on an unreachable backend, its writes stay in the outbox for the next
//! start or open (in memory, they are reported as failed).
//!
//! Every write gets the next sequence number of its lane. A lane's state
//! is three marks on that sequence: writes before `done` are applied or
//! reported, writes before `taken` are with the worker, and writes before
//! `next` are queued.

use std::collections::{HashSet, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};

use crate::backend::{Backend, BatchLimit, Write};
use crate::config::QueueConfig;
use crate::error::{Error, Result};
use crate::log::Logger;
use crate::outbox::{self, LaneLog, Outbox};

/// The backends of a handle, indexed as queued writes address them.
pub(crate) type Backends = Arc<[Arc<dyn Backend>]>;

/// The first pause before a batch is retried; each failure doubles it.
const FIRST_RETRY: Duration = Duration::from_millis(50);
/// The longest pause between two tries, so that writes go out soon after
/// the backend is back.
const LAST_RETRY: Duration = Duration::from_secs(2);
/// How often a caller waiting on a worker looks whether its backend has
/// been unreachable for longer than its timeout.
const OUTAGE_POLL: Duration = Duration::from_millis(20);

/// One queued write, with its place in its lane.
struct Queued {
    seq: u64,
    queued_at: Instant,
    write: Write,
}

/// Failed queued writes not yet reported.
#[derive(Default)]
struct Failures {
    count: u64,
    first: Option<Error>,
}

impl Failures {
    fn record(&mut self, error: Error, writes: u64) {
        self.count += writes;
        self.first.get_or_insert(error);
    }

    fn take(&mut self) -> Result<()> {
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
enum Store {
    /// In `State::waiting`.
    Memory,
    /// In this log of the outbox (and the first of them in memory too).
    Outbox(Arc<LaneLog>),
}

/// Counters for `tether_stats`.
#[derive(Default)]
struct Counters {
    queued: AtomicU64,
    applied: AtomicU64,
    retried: AtomicU64,
    failed: AtomicU64,
    batches: AtomicU64,
}

/// The queue of one backend: what its callers and its worker share.
struct Lane {
    backend: Arc<dyn Backend>,
    store: Store,
    state: Mutex<State>,
    /// The worker waits on it: writes, a flush, a stop.
    work: Condvar,
    /// Writers and flushes wait on it: writes applied.
    progress: Condvar,
    counters: Counters,
}

#[derive(Default)]
struct State {
    /// Writes before it are applied, or reported as failed.
    done: u64,
    /// Writes before it are with the worker.
    taken: u64,
    /// The sequence number of the next write.
    next: u64,
    /// The first writes from `taken` on: all of them with `Store::Memory`;
    /// with the outbox, as many as the capacity allows, so that the worker
    /// reads the outbox back only after an outage or a restart.
    waiting: VecDeque<Queued>,
    /// When the write at `taken` was queued.
    first_waiting_at: Option<Instant>,
    /// When the first write of the batch the worker is sending was queued.
    first_taken_at: Option<Instant>,
    /// A flush wants the writes before it sent without waiting.
    flush_to: u64,
    /// Set by stop: send everything, then end; once the backend has been
    /// unreachable for its timeout, give up.
    stopping: bool,
    /// Since when the backend has been unreachable, and the last error;
    /// `None` while it answers.
    outage: Option<(Instant, Error)>,
    /// Why the worker ended without a stop: every call waiting on it, and
    /// every later one, fails with it at once instead of waiting for ever.
    dead: Option<String>,
}

impl State {
    fn pending(&self) -> u64 {
        self.next - self.done
    }

    fn waiting(&self) -> u64 {
        self.next - self.taken
    }
}

impl Lane {
    fn new(backend: Arc<dyn Backend>, log: Option<&Arc<LaneLog>>) -> Result<Lane> {
        let mut state = State::default();
        let store = match log {
            None => Store::Memory,
            Some(log) => {
                let held = log.held();
                (state.done, state.taken, state.next) = (held.start, held.start, held.end);
                if !held.is_empty() {
                    let first = log.read(held.start..held.start + 1)?;
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

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn name(&self) -> &'static str {
        self.backend.name()
    }

    /// The last error, once the backend has been unreachable for its timeout.
    fn unreachable(&self, state: &State) -> Option<Error> {
        match &state.outage {
            Some((since, error)) if since.elapsed() >= self.backend.timeout() => {
                Some(error.clone())
            }
            _ => None,
        }
    }

    /// Fails once the backend has been unreachable for its timeout, saying
    /// how many queued writes wait for it, or at once when the worker died.
    fn check_reachable(&self, state: &State) -> Result<()> {
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
                &error,
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
    fn push(&self, write: Write, settings: &QueueConfig) -> Result<Option<u64>> {
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
    fn check_reachable_or_dead(&self, state: &State) -> Result<()> {
        match state.dead {
            Some(_) => self.check_reachable(state),
            None => Ok(()),
        }
    }

    /// The worker ended without a stop (a panic): what it had taken goes
    /// back to the outbox (or, in memory, is reported as failed), and every
    /// waiting call is woken to fail.
    fn die(&self, cause: String, failures: &Mutex<Failures>) {
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
    fn flush(&self) -> Result<()> {
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

    fn stats(&self) -> Value {
        let state = self.lock();
        let counter = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let c = &self.counters;
        let oldest = state.first_taken_at.or(state.first_waiting_at);
        json!({
            "queued": counter(&c.queued),
            "applied": counter(&c.applied),
            "retried": counter(&c.retried),
            "failed": counter(&c.failed),
            "batches": counter(&c.batches),
            "pending": state.pending(),
            "oldest_pending_ms": oldest.map_or(0, |at| at.elapsed().as_millis() as u64),
            "unreachable_ms": state.outage.as_ref().map_or(0, |(since, _)| since.elapsed().as_millis() as u64),
            "last_error": state.outage.as_ref().map(|(_, error)| error.to_string()),
        })
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    match (panic.downcast_ref::<&str>(), panic.downcast_ref::<String>()) {
        (Some(message), _) => format!("panic: {message}"),
        (_, Some(message)) => format!("panic: {message}"),
        _ => "panic".into(),
    }
}

/// The `Instant` a wall-clock time was, as near as the clocks tell.
fn instant_of(at: SystemTime) -> Instant {
    let age = at.elapsed().unwrap_or_default();
    Instant::now().checked_sub(age).unwrap_or_else(Instant::now)
}

pub(crate) struct Queue {
    settings: QueueConfig,
    lanes: Vec<Arc<Lane>>,
    outbox: Option<Arc<Outbox>>,
    log: Logger,
    /// One worker per lane; `None` while stopped. Writers hold the read
    /// lock while they wait for room, so a stop waits for them and applies
    /// their writes too.
    workers: RwLock<Option<Vec<JoinHandle<()>>>>,
    failures: Arc<Mutex<Failures>>,
}

impl Queue {
    /// A stopped queue over `backends`; with an outbox, the writes an
    /// earlier run left in it wait at the head of their lanes.
    pub fn new(
        settings: QueueConfig,
        backends: &Backends,
        outbox: Option<Outbox>,
        log: Logger,
    ) -> Result<Queue> {
        let outbox = outbox.map(Arc::new);
        let lanes = backends
            .iter()
            .enumerate()
            .map(|(i, backend)| {
                let log = outbox.as_ref().map(|outbox| outbox.lane(i));
                Lane::new(backend.clone(), log).map(Arc::new)
            })
            .collect::<Result<Vec<_>>>()?;
        if let Some(outbox) = &outbox {
            for lane in &lanes {
                let left = lane.lock().pending();
                if left > 0 {
                    log.info(format_args!(
                        "{}: {left} queued write(s) from an earlier run wait in the outbox {}",
                        lane.name(),
                        outbox.path().display()
                    ));
                }
            }
            for (backend, count) in outbox.others() {
                log.warn(format_args!(
                    "the outbox {} holds {count} write(s) for backend {backend}, which this \
                     handle does not configure; they wait for a handle that does",
                    outbox.path().display()
                ));
            }
        }
        Ok(Queue {
            settings,
            lanes,
            outbox,
            log,
            workers: RwLock::new(None),
            failures: Arc::default(),
        })
    }

    /// Starts the workers; does nothing when they run already.
    pub fn start(&self) -> Result<()> {
        let mut workers = self.workers.write().unwrap_or_else(PoisonError::into_inner);
        if workers.is_some() {
            return Ok(());
        }
        let mut started = Vec::with_capacity(self.lanes.len());
        for lane in &self.lanes {
            {
                let mut state = lane.lock();
                state.stopping = false;
                // An outage a stop gave up on is news no longer: the new
                // worker finds out for itself.
                state.outage = None;
                state.dead = None;
            }
            let worker = Worker {
                size: self.settings.size,
                capacity: self.settings.capacity,
                interval: self.settings.interval(),
                lane: lane.clone(),
                failures: self.failures.clone(),
                log: self.log,
            };
            let spawned = std::thread::Builder::new()
                .name(format!("tetherdb-{}", lane.name()))
                .spawn(move || {
                    let (lane, failures) = (worker.lane.clone(), worker.failures.clone());
                    if let Err(panic) = catch_unwind(AssertUnwindSafe(|| worker.run())) {
                        lane.die(panic_message(&*panic), &failures);
                    }
                });
            match spawned {
                Ok(thread) => started.push(thread),
                Err(e) => {
                    *workers = Some(started);
                    drop(workers);
                    let _ = self.stop();
                    return Err(Error::Internal(format!(
                        "cannot start a worker thread: {e}"
                    )));
                }
            }
        }
        *workers = Some(started);
        Ok(())
    }

    /// Applies everything queued, ends the workers, and reports queued
    /// writes that failed since the last report. A backend unreachable for
    /// longer than its timeout gets no more tries: its writes stay in the
    /// outbox and are reported as not applied yet (without an outbox, as
    /// failed). Does nothing more when stopped.
    pub fn stop(&self) -> Result<()> {
        // Held until the workers have ended, so that a flush, stop or start
        // on another thread meanwhile waits for this stop instead of
        // finding no worker and returning before the queue is applied.
        let mut running = self.workers.write().unwrap_or_else(PoisonError::into_inner);
        let Some(workers) = running.take() else {
            return self.take_failures();
        };
        for lane in &self.lanes {
            lane.lock().stopping = true;
            lane.work.notify_one();
        }
        for thread in workers {
            if thread.join().is_err() {
                self.failures_lock()
                    .record(Error::Internal("a worker thread panicked".into()), 0);
            }
        }
        self.take_failures()?;
        for lane in &self.lanes {
            let state = lane.lock();
            if let (Some(outbox), Store::Outbox(_), left @ 1..) =
                (&self.outbox, &lane.store, state.pending())
            {
                let cause = state.outage.as_ref().map_or_else(String::new, |(_, e)| {
                    format!(" (last error: {})", e.cause())
                });
                let last = state.outage.as_ref().map(|(_, e)| e.clone());
                let last = last.unwrap_or_else(|| Error::unavailable("", "", ""));
                return Err(Error::still_waiting(
                    &last,
                    lane.name(),
                    format!(
                        "{left} queued write(s) not applied yet{cause}; they stay in the \
                         outbox {} and are applied once the worker runs again, in this handle \
                         or the next one opened on it",
                        outbox.path().display()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Waits until every write queued before the call is applied, and
    /// reports queued writes that failed since the last report. Gives up
    /// with `Unavailable` on a backend unreachable for longer than its
    /// timeout; its writes stay queued and are retried.
    pub fn flush(&self) -> Result<()> {
        if self.is_running() {
            for lane in &self.lanes {
                lane.flush()?;
            }
        }
        self.take_failures()?;
        match &self.outbox {
            Some(outbox) => outbox.checkpoint(),
            None => Ok(()),
        }
    }

    /// Queues one write; waits while its lane is full, unless its backend
    /// has been unreachable for longer than its timeout. With
    /// `queue_batch.sync`, returns once the write is on disk.
    pub fn push(&self, backend: usize, write: Write) -> Result<()> {
        let workers = self.workers.read().unwrap_or_else(PoisonError::into_inner);
        let lane = &self.lanes[backend];
        if workers.is_none() {
            return Err(Error::NotRunning {
                backend: lane.name().into(),
                key: write.key,
            });
        }
        let position = lane.push(write, &self.settings)?;
        drop(workers);
        let (Some(position), Store::Outbox(log)) = (position, &lane.store) else {
            return Ok(());
        };
        if self.settings.sync {
            log.sync(position)
        } else {
            if log.buffer_full() {
                // A failure refuses later writes, which report it.
                let _ = log.persist(false);
            }
            Ok(())
        }
    }

    pub fn is_running(&self) -> bool {
        self.workers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    /// Per backend, what its queue has done and what waits in it; and the
    /// outbox, if any. See `tether_stats`.
    pub fn stats(&self) -> Value {
        let backends: serde_json::Map<String, Value> = self
            .lanes
            .iter()
            .map(|lane| (lane.name().to_owned(), lane.stats()))
            .collect();
        let outbox = self.outbox.as_ref().map(|outbox| {
            json!({
                "path": outbox.path().display().to_string(),
                "bytes": outbox.bytes(),
                "max_bytes": outbox.max_bytes(),
                "sync": self.settings.sync,
                "syncs": outbox.syncs(),
            })
        });
        json!({
            "running": self.is_running(),
            "backends": backends,
            "outbox": outbox,
        })
    }

    fn take_failures(&self) -> Result<()> {
        self.failures_lock().take()
    }

    fn failures_lock(&self) -> MutexGuard<'_, Failures> {
        self.failures.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            self.log.error(format_args!("while closing: {e}"));
        }
    }
}

/// How applying one piece of a batch ended.
enum Outcome {
    Applied,
    /// Failed for good: reported by the next flush or stop.
    Failed(Error),
    /// A stop gave up on the unreachable backend.
    GaveUp(Error),
}

/// The worker thread of one lane.
struct Worker {
    size: usize,
    capacity: usize,
    interval: Duration,
    lane: Arc<Lane>,
    failures: Arc<Mutex<Failures>>,
    log: Logger,
}

impl Worker {
    fn run(self) {
        while let Some(batch) = self.next_batch() {
            if !self.send(batch) {
                return;
            }
        }
    }

    /// Waits until a batch is due and takes it; `None` once stopping with
    /// nothing left.
    fn next_batch(&self) -> Option<Vec<Queued>> {
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
    fn take<'a>(
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
    fn read_back(&self, log: &LaneLog, seqs: std::ops::Range<u64>) -> Result<Vec<Queued>> {
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
    fn send(&self, batch: Vec<Queued>) -> bool {
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
            let error = match self.apply(&writes[start..end]) {
                Outcome::Applied => None,
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
            self.finish(done, error);
            start = end;
        }
        true
    }

    /// Applies one piece, trying again while the backend is unreachable.
    fn apply(&self, writes: &[Write]) -> Outcome {
        let mut pause = FIRST_RETRY;
        let counters = &self.lane.counters;
        loop {
            let tried = Instant::now();
            counters.batches.fetch_add(1, Ordering::Relaxed);
            let error = match self.write_batch(writes) {
                Ok(()) => {
                    if self.lane.lock().outage.take().is_some() {
                        self.log
                            .info(format_args!("{}: reachable again", self.lane.name()));
                    }
                    return Outcome::Applied;
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

    /// Marks the writes before `end` done: applied, or failed with `error`.
    fn finish(&self, end: u64, error: Option<Error>) {
        let lane = &self.lane;
        // Only this thread moves `done`.
        let done = lane.lock().done;
        let count = end - done;
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

    fn record(&self, error: Error, writes: u64) {
        self.failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .record(error, writes);
    }

    /// A stop gave up on the unreachable backend: the writes not applied
    /// stay in the outbox for the next start, or fail when in memory.
    fn give_up(&self, error: Error) {
        let lane = &self.lane;
        let mut state = lane.lock();
        reset_to_done(lane, &mut state, error, &self.failures);
        drop(state);
        lane.progress.notify_all();
    }

    fn write_batch(&self, writes: &[Write]) -> Result<()> {
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
    fn pause<'a>(&self, state: MutexGuard<'a, State>, pause: Duration) -> MutexGuard<'a, State> {
        self.lane
            .work
            .wait_timeout(state, pause)
            .unwrap_or_else(PoisonError::into_inner)
            .0
    }
}

/// Forgets what the worker took but did not finish: with the outbox, it is
/// read back from there by the next worker; in memory, it is reported as
/// failed with `error`, with every other write not applied.
fn reset_to_done(lane: &Lane, state: &mut State, error: Error, failures: &Mutex<Failures>) {
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

/// How many of the first `writes` fit in one batch; at least one.
fn piece_len(writes: &[Write], limit: BatchLimit) -> usize {
    let mut bytes = 0usize;
    let fitting = writes
        .iter()
        .take(limit.writes)
        .take_while(|w| {
            bytes = bytes.saturating_add(w.key.len() + w.value.len() + limit.overhead);
            bytes <= limit.bytes
        })
        .count();
    fitting.max(1)
}

/// The writes with only the last one to each key kept, in their order, and
/// their sequence numbers: one batch may not touch a key twice on etcd or
/// DynamoDB, and the last queued write to a key wins anyway.
fn last_write_per_key(batch: Vec<Queued>) -> (Vec<u64>, Vec<Write>) {
    let mut seen = HashSet::with_capacity(batch.len());
    let kept: Vec<bool> = batch
        .iter()
        .rev()
        .map(|q| seen.insert(q.write.key.as_str()))
        .collect();
    batch
        .into_iter()
        .zip(kept.into_iter().rev())
        .filter_map(|(q, kept)| kept.then_some((q.seq, q.write)))
        .unzip()
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::atomic::AtomicBool;
    use std::sync::Mutex;

    use super::*;
    use crate::backend::Listing;
    use crate::error::Status;
    use crate::log::Level;

    /// A backend that records batches, and fails (or panics on) those
    /// holding a key starting with "fail" (or "panic"): faults sled cannot
    /// be made to produce on demand.
    /// While `down`, it is unreachable; it takes at most 3 writes a batch.
    #[derive(Default)]
    struct Faulty {
        applied: Mutex<Vec<String>>,
        down: AtomicBool,
        tries: AtomicU64,
        /// Panics where the worker has no guard: it dies.
        breaks_worker: AtomicBool,
    }

    impl Backend for Faulty {
        fn name(&self) -> &'static str {
            "faulty"
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
        fn write_batch(&self, writes: &[Write]) -> Result<()> {
            self.tries.fetch_add(1, Ordering::SeqCst);
            assert!(writes.len() <= 3, "over the batch limit");
            if self.down.load(Ordering::SeqCst) {
                return Err(Error::unavailable("faulty", "", "injected outage"));
            }
            if writes.iter().any(|w| w.key.starts_with("panic")) {
                panic!("injected panic");
            }
            if let Some(bad) = writes.iter().find(|w| w.key.starts_with("fail")) {
                return Err(Error::io("faulty", &bad.key, "injected failure"));
            }
            let mut applied = self.applied.lock().unwrap();
            applied.extend(writes.iter().map(|w| w.key.clone()));
            Ok(())
        }
        fn flush(&self) -> Result<()> {
            Ok(())
        }
        fn destination(&self) -> String {
            "the faulty test backend".into()
        }
        fn batch_limit(&self) -> BatchLimit {
            if self.breaks_worker.load(Ordering::SeqCst) {
                panic!("injected: the worker dies");
            }
            BatchLimit {
                writes: 3,
                ..BatchLimit::NONE
            }
        }
        fn timeout(&self) -> Duration {
            Duration::from_millis(100)
        }
    }

    fn queue(size: usize) -> (Queue, Arc<Faulty>) {
        let faulty = Arc::new(Faulty::default());
        (queue_over(size, &faulty, None), faulty)
    }

    fn queue_over(size: usize, faulty: &Arc<Faulty>, outbox: Option<&Path>) -> Queue {
        let backends: Backends = vec![faulty.clone() as Arc<dyn Backend>].into();
        let settings = QueueConfig {
            size,
            interval: 3600.0,
            ..QueueConfig::default()
        };
        let log = Logger::new(Level::None);
        let outbox = outbox.map(|path| Outbox::open(path, 1 << 20, &backends, log).unwrap());
        let queue = Queue::new(settings, &backends, outbox, log).unwrap();
        queue.start().unwrap();
        queue
    }

    fn push(queue: &Queue, key: &str) {
        let write = Write {
            key: key.into(),
            value: b"v".to_vec(),
        };
        queue.push(0, write).unwrap();
    }

    #[test]
    fn a_failed_batch_is_reported_once_by_the_next_flush() {
        let (queue, faulty) = queue(2);
        for key in ["ok1", "ok2", "fail1", "x", "fail2", "y", "ok3"] {
            push(&queue, key);
        }
        let err = queue.flush().unwrap_err();
        assert_eq!(err.status(), Status::Io);
        assert_eq!(
            err.to_string(),
            "4 queued write(s) failed; the first: faulty: key \"fail1\": storage failed: injected failure"
        );
        assert_eq!(*faulty.applied.lock().unwrap(), ["ok1", "ok2", "ok3"]);
        queue.flush().unwrap();
    }

    #[test]
    fn stop_reports_failures_too() {
        let (queue, _) = queue(10);
        push(&queue, "fail");
        assert_eq!(queue.stop().unwrap_err().status(), Status::Io);
        queue.stop().unwrap();
    }

    #[test]
    fn a_panicking_backend_is_reported_and_the_worker_goes_on() {
        let (queue, faulty) = queue(1);
        push(&queue, "panic");
        push(&queue, "after");
        let err = queue.flush().unwrap_err();
        assert_eq!(err.status(), Status::Internal);
        assert_eq!(*faulty.applied.lock().unwrap(), ["after"]);
    }

    #[test]
    fn a_worker_that_dies_fails_every_waiting_call_at_once() {
        let (queue, faulty) = queue(1);
        faulty.breaks_worker.store(true, Ordering::SeqCst);
        push(&queue, "lost");
        let err = queue.flush().unwrap_err();
        assert_eq!(err.status(), Status::Internal);
        assert!(err.to_string().contains("the worker ended"), "{err}");
        let write = Write {
            key: "refused".into(),
            value: b"v".to_vec(),
        };
        let err = queue.push(0, write).unwrap_err();
        assert_eq!(err.status(), Status::Internal);
        assert!(
            err.to_string().contains("injected: the worker dies"),
            "{err}"
        );
        // A stop and a start make a new worker.
        faulty.breaks_worker.store(false, Ordering::SeqCst);
        queue.stop().unwrap();
        queue.start().unwrap();
        push(&queue, "after");
        queue.flush().unwrap();
        assert_eq!(*faulty.applied.lock().unwrap(), ["after"]);
    }

    #[test]
    fn a_dead_worker_gives_the_outbox_back_its_writes() {
        let dir = tempfile::tempdir().unwrap();
        let faulty = Arc::new(Faulty::default());
        let queue = queue_over(1, &faulty, Some(&dir.path().join("outbox")));
        faulty.breaks_worker.store(true, Ordering::SeqCst);
        push(&queue, "kept");
        assert_eq!(queue.flush().unwrap_err().status(), Status::Internal);
        faulty.breaks_worker.store(false, Ordering::SeqCst);
        let _ = queue.stop();
        queue.start().unwrap();
        queue.flush().unwrap();
        assert_eq!(*faulty.applied.lock().unwrap(), ["kept"]);
    }

    #[test]
    fn an_unreachable_backend_is_retried_until_it_answers() {
        let (queue, faulty) = queue(10);
        faulty.down.store(true, Ordering::SeqCst);
        for i in 0..10 {
            push(&queue, &format!("k{i}"));
        }
        let err = queue.flush().unwrap_err();
        assert_eq!(err.status(), Status::Unavailable);
        assert_eq!(
            err.to_string(),
            "faulty: unavailable: 10 queued write(s) not applied yet; they stay queued and \
             are retried (last error: injected outage)"
        );
        assert!(faulty.tries.load(Ordering::SeqCst) > 1, "no retry");
        faulty.down.store(false, Ordering::SeqCst);
        let give_up = Instant::now() + Duration::from_secs(60);
        while queue.flush().is_err() {
            assert!(Instant::now() < give_up);
        }
        let applied = faulty.applied.lock().unwrap().clone();
        let expected: Vec<String> = (0..10).map(|i| format!("k{i}")).collect();
        assert_eq!(applied, expected, "each write once, in order");
    }

    #[test]
    fn stop_gives_up_on_an_unreachable_backend_and_reports_every_write() {
        let (queue, faulty) = queue(4);
        faulty.down.store(true, Ordering::SeqCst);
        for i in 0..10 {
            push(&queue, &format!("k{i}"));
        }
        let err = queue.stop().unwrap_err();
        assert_eq!(err.status(), Status::Unavailable);
        assert!(
            err.to_string().starts_with("10 queued write(s) failed"),
            "{err}"
        );
        assert!(faulty.applied.lock().unwrap().is_empty());

        faulty.down.store(false, Ordering::SeqCst);
        queue.start().unwrap();
        push(&queue, "after");
        queue.flush().unwrap();
        assert_eq!(*faulty.applied.lock().unwrap(), ["after"]);
    }

    #[test]
    fn with_an_outbox_a_stop_keeps_what_it_gave_up_on_for_the_next_queue() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox");
        let faulty = Arc::new(Faulty::default());
        faulty.down.store(true, Ordering::SeqCst);
        let queue = queue_over(4, &faulty, Some(&path));
        for i in 0..10 {
            push(&queue, &format!("k{i}"));
        }
        let err = queue.stop().unwrap_err();
        assert_eq!(err.status(), Status::Unavailable);
        assert!(
            err.to_string()
                .contains("10 queued write(s) not applied yet")
                && err.to_string().contains("stay in the outbox"),
            "{err}"
        );
        drop(queue);

        faulty.down.store(false, Ordering::SeqCst);
        let queue = queue_over(4, &faulty, Some(&path));
        push(&queue, "after");
        queue.flush().unwrap();
        let mut expected: Vec<String> = (0..10).map(|i| format!("k{i}")).collect();
        expected.push("after".into());
        assert_eq!(
            *faulty.applied.lock().unwrap(),
            expected,
            "once each, in order"
        );
        assert_eq!(queue.stats()["backends"]["faulty"]["applied"], 11);
        assert_eq!(queue.stats()["outbox"]["bytes"], 0);
    }

    #[test]
    fn in_an_outage_the_outbox_takes_more_than_the_capacity() {
        let dir = tempfile::tempdir().unwrap();
        let faulty = Arc::new(Faulty::default());
        faulty.down.store(true, Ordering::SeqCst);
        let backends: Backends = vec![faulty.clone() as Arc<dyn Backend>].into();
        let settings = QueueConfig {
            size: 2,
            capacity: 3,
            ..QueueConfig::default()
        };
        let log = Logger::new(Level::None);
        let outbox = Outbox::open(&dir.path().join("outbox"), 1 << 20, &backends, log).unwrap();
        let queue = Queue::new(settings, &backends, Some(outbox), log).unwrap();
        queue.start().unwrap();
        for i in 0..50 {
            push(&queue, &format!("k{i}"));
        }
        let stats = &queue.stats()["backends"]["faulty"];
        assert_eq!(stats["queued"], 50);
        assert_eq!(stats["pending"], 50);
        assert!(stats["last_error"]
            .as_str()
            .unwrap()
            .contains("injected outage"));
        faulty.down.store(false, Ordering::SeqCst);
        let give_up = Instant::now() + Duration::from_secs(60);
        while queue.flush().is_err() {
            assert!(Instant::now() < give_up);
        }
        assert_eq!(faulty.applied.lock().unwrap().len(), 50);
    }

    #[test]
    fn a_full_queue_is_sent_whatever_its_size_and_age() {
        let faulty = Arc::new(Faulty::default());
        let backends: Backends = vec![faulty.clone() as Arc<dyn Backend>].into();
        let settings = QueueConfig {
            size: 1000,
            interval: 3600.0,
            capacity: 2,
            durable: false,
            ..QueueConfig::default()
        };
        let queue = Queue::new(settings, &backends, None, Logger::new(Level::None)).unwrap();
        queue.start().unwrap();
        for i in 0..10 {
            push(&queue, &format!("k{i}"));
        }
        assert!(faulty.applied.lock().unwrap().len() >= 8);
    }

    fn queued(key: &str, value: &str) -> Queued {
        Queued {
            seq: 0,
            queued_at: Instant::now(),
            write: Write {
                key: key.into(),
                value: value.into(),
            },
        }
    }

    #[test]
    fn duplicate_keys_collapse_to_the_last_write_in_order() {
        let writes = vec![
            queued("a", "1"),
            queued("b", "1"),
            queued("a", "2"),
            queued("c", "1"),
        ];
        let kept: Vec<(String, Vec<u8>)> = last_write_per_key(writes)
            .1
            .into_iter()
            .map(|w| (w.key, w.value))
            .collect();
        let pair = |k: &str, v: &str| (k.to_string(), v.as_bytes().to_vec());
        assert_eq!(kept, [pair("b", "1"), pair("a", "2"), pair("c", "1")]);
    }

    #[test]
    fn pieces_keep_to_the_batch_limit() {
        let writes: Vec<Write> = (0..10)
            .map(|i| queued(&format!("k{i}"), &"x".repeat(98)).write)
            .collect();
        let limit = |writes, bytes| BatchLimit {
            writes,
            bytes,
            overhead: 0,
        };
        assert_eq!(piece_len(&writes, BatchLimit::NONE), 10);
        assert_eq!(piece_len(&writes, limit(3, usize::MAX)), 3);
        assert_eq!(piece_len(&writes, limit(10, 450)), 4);
        assert_eq!(
            piece_len(&writes, limit(10, 50)),
            1,
            "one write always goes"
        );
    }
}
