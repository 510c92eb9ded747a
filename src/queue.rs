//! The batch worker (design.md §4): a bounded queue of writes per backend,
//! applied in batches of `size`, or once the oldest write of a batch has
//! waited `interval` — whichever comes first.
//!
//! Each backend has a worker thread of its own, so that an unreachable
//! backend holds up only its own writes. Nothing queued is lost: a batch
//! that fails because the backend is unreachable is retried with capped
//! exponential backoff; stop, flush and drop apply everything queued before
//! them; and a write that fails for good is counted and reported by the next
//! flush or stop instead of being dropped.

use std::collections::HashSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, SendTimeoutError, Sender};

use crate::backend::{Backend, BatchLimit, Write};
use crate::config::QueueConfig;
use crate::error::{Error, Result};
use crate::log::Logger;

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

enum Message {
    Write(Write),
    /// Apply everything queued before this message, then answer.
    Flush(Sender<()>),
    /// Apply everything queued before this message, then end.
    Stop,
}

/// Failed queued writes not yet reported.
#[derive(Default)]
struct Failures {
    count: u64,
    first: Option<Error>,
}

impl Failures {
    fn record(&mut self, error: Error, writes: usize) {
        self.count += writes as u64;
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

/// What the callers and the worker of one backend share.
#[derive(Default)]
struct Lane {
    /// Writes queued and neither applied nor reported as failed yet.
    pending: AtomicU64,
    /// Since when the backend has been unreachable, and the last error;
    /// `None` while it answers.
    outage: Mutex<Option<(Instant, Error)>>,
    /// Set by stop: once the outage has lasted the backend's timeout, the
    /// worker gives up and reports what is left instead of retrying.
    stopping: AtomicBool,
}

impl Lane {
    fn outage(&self) -> MutexGuard<'_, Option<(Instant, Error)>> {
        self.outage.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The last error, once the backend has been unreachable for `timeout`.
    fn unreachable_for(&self, timeout: Duration) -> Option<Error> {
        match &*self.outage() {
            Some((since, error)) if since.elapsed() >= timeout => Some(error.clone()),
            _ => None,
        }
    }
}

struct Worker {
    sender: Sender<Message>,
    thread: JoinHandle<()>,
}

pub(crate) struct Queue {
    settings: QueueConfig,
    backends: Backends,
    lanes: Vec<Arc<Lane>>,
    log: Logger,
    /// One per backend; `None` while stopped. Writers hold the read lock
    /// while they wait on a full queue, so a stop waits for them and
    /// applies their writes too.
    workers: RwLock<Option<Vec<Worker>>>,
    failures: Arc<Mutex<Failures>>,
}

impl Queue {
    pub fn new(settings: QueueConfig, backends: Backends, log: Logger) -> Queue {
        Queue {
            settings,
            lanes: backends.iter().map(|_| Arc::default()).collect(),
            backends,
            log,
            workers: RwLock::new(None),
            failures: Arc::default(),
        }
    }

    /// Starts the workers; does nothing when they run already.
    pub fn start(&self) -> Result<()> {
        let mut workers = self.workers.write().unwrap_or_else(PoisonError::into_inner);
        if workers.is_some() {
            return Ok(());
        }
        let mut started = Vec::with_capacity(self.backends.len());
        for (backend, lane) in self.backends.iter().zip(&self.lanes) {
            // An outage a stop gave up on is news no longer: the new worker
            // finds out for itself.
            *lane.outage() = None;
            let (sender, receiver) = bounded(self.settings.capacity);
            let batcher = Batcher {
                size: self.settings.size,
                interval: self.settings.interval(),
                backend: backend.clone(),
                lane: lane.clone(),
                batch: None,
                abandoned: None,
                failures: self.failures.clone(),
                log: self.log,
            };
            let thread = std::thread::Builder::new()
                .name(format!("tetherdb-{}", backend.name()))
                .spawn(move || batcher.run(receiver))
                .map_err(|e| Error::Internal(format!("cannot start a worker thread: {e}")))?;
            started.push(Worker { sender, thread });
        }
        *workers = Some(started);
        Ok(())
    }

    /// Applies everything queued, ends the workers, and reports queued
    /// writes that failed since the last report. A backend unreachable for
    /// longer than its timeout gets no more tries: its writes are reported
    /// as failed. Does nothing more when stopped.
    pub fn stop(&self) -> Result<()> {
        let workers = self
            .workers
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(workers) = workers {
            for (worker, lane) in workers.iter().zip(&self.lanes) {
                lane.stopping.store(true, Ordering::SeqCst);
                // Cut a pause between two tries short.
                worker.thread.thread().unpark();
                // The worker owns the receiver, so this only fails when it
                // has died; join tells why.
                let _ = worker.sender.send(Message::Stop);
            }
            for (worker, lane) in workers.into_iter().zip(&self.lanes) {
                if worker.thread.join().is_err() {
                    self.failures_lock()
                        .record(Error::Internal("a worker thread panicked".into()), 0);
                }
                lane.stopping.store(false, Ordering::SeqCst);
            }
        }
        self.take_failures()
    }

    /// Waits until every write queued before the call is applied, and
    /// reports queued writes that failed since the last report. Gives up
    /// with `Unavailable` on a backend unreachable for longer than its
    /// timeout; its writes stay queued and are retried.
    pub fn flush(&self) -> Result<()> {
        let mut answers = Vec::new();
        {
            let workers = self.workers.read().unwrap_or_else(PoisonError::into_inner);
            for (backend, worker) in workers.iter().flatten().enumerate() {
                let (done, answer) = bounded(1);
                self.send(backend, &worker.sender, Message::Flush(done))?;
                answers.push((backend, answer));
            }
        }
        for (backend, answer) in answers {
            loop {
                match answer.recv_timeout(OUTAGE_POLL) {
                    Ok(()) => break,
                    Err(RecvTimeoutError::Timeout) => self.check_reachable(backend)?,
                    Err(RecvTimeoutError::Disconnected) => {
                        return Err(Error::Internal(
                            "a worker thread ended during a flush".into(),
                        ))
                    }
                }
            }
        }
        self.take_failures()
    }

    /// Queues one write; waits while the queue is full, unless its backend
    /// has been unreachable for longer than its timeout.
    pub fn push(&self, backend: usize, write: Write) -> Result<()> {
        let workers = self.workers.read().unwrap_or_else(PoisonError::into_inner);
        let Some(workers) = workers.as_ref() else {
            return Err(Error::NotRunning {
                backend: self.backends[backend].name().into(),
                key: write.key,
            });
        };
        let pending = &self.lanes[backend].pending;
        pending.fetch_add(1, Ordering::Relaxed);
        let sent = self.send(backend, &workers[backend].sender, Message::Write(write));
        if sent.is_err() {
            pending.fetch_sub(1, Ordering::Relaxed);
        }
        sent
    }

    pub fn is_running(&self) -> bool {
        self.workers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    /// Sends to a worker, waiting while its queue is full.
    fn send(&self, backend: usize, sender: &Sender<Message>, mut message: Message) -> Result<()> {
        loop {
            match sender.send_timeout(message, OUTAGE_POLL) {
                Ok(()) => return Ok(()),
                Err(SendTimeoutError::Timeout(unsent)) => {
                    self.check_reachable(backend)?;
                    message = unsent;
                }
                Err(SendTimeoutError::Disconnected(_)) => {
                    return Err(Error::Internal("a worker thread has ended".into()))
                }
            }
        }
    }

    /// Fails once the backend has been unreachable for its timeout, saying
    /// how many queued writes wait for it.
    fn check_reachable(&self, backend: usize) -> Result<()> {
        let engine = &self.backends[backend];
        let lane = &self.lanes[backend];
        match lane.unreachable_for(engine.timeout()) {
            None => Ok(()),
            Some(error) => Err(Error::unavailable(
                engine.name(),
                "",
                format!(
                    "{} queued write(s) not applied yet; they stay queued and are retried \
                     (last error: {})",
                    lane.pending.load(Ordering::Relaxed),
                    error.cause()
                ),
            )),
        }
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

/// Writes waiting to go out.
struct Batch {
    writes: Vec<Write>,
    oldest: Instant,
}

/// The state of the worker thread of one backend.
struct Batcher {
    size: usize,
    interval: Duration,
    backend: Arc<dyn Backend>,
    lane: Arc<Lane>,
    batch: Option<Batch>,
    /// Set when a stop gave up on the unreachable backend: what is left
    /// fails at once with this error.
    abandoned: Option<Error>,
    failures: Arc<Mutex<Failures>>,
    log: Logger,
}

impl Batcher {
    fn run(mut self, receiver: Receiver<Message>) {
        loop {
            let message = match &self.batch {
                Some(batch) => receiver.recv_deadline(batch.oldest + self.interval),
                None => receiver.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            match message {
                Ok(Message::Write(write)) => {
                    let batch = self.batch.get_or_insert_with(|| Batch {
                        writes: Vec::new(),
                        oldest: Instant::now(),
                    });
                    batch.writes.push(write);
                    if batch.writes.len() >= self.size {
                        self.send();
                    }
                }
                Ok(Message::Flush(done)) => {
                    self.send();
                    let _ = done.send(());
                }
                Err(RecvTimeoutError::Timeout) => self.send(),
                Ok(Message::Stop) | Err(RecvTimeoutError::Disconnected) => {
                    self.send();
                    return;
                }
            }
        }
    }

    /// Applies the pending batch, in pieces the backend accepts.
    fn send(&mut self) {
        let Some(batch) = self.batch.take() else {
            return;
        };
        let queued = batch.writes.len();
        let writes = last_write_per_key(batch.writes);
        self.lane
            .pending
            .fetch_sub((queued - writes.len()) as u64, Ordering::Relaxed);
        let limit = self.backend.batch_limit();
        let mut rest = writes.as_slice();
        while !rest.is_empty() {
            let (piece, after) = rest.split_at(piece_len(rest, limit));
            self.apply(piece);
            rest = after;
        }
    }

    /// Applies one piece, trying again while the backend is unreachable.
    fn apply(&mut self, writes: &[Write]) {
        let mut pause = FIRST_RETRY;
        let result = loop {
            if let Some(error) = &self.abandoned {
                break Err(error.clone());
            }
            let tried = Instant::now();
            match self.write_batch(writes) {
                Err(error) if error.is_transient() => {
                    let since = self.outage_began(tried, &error);
                    if self.lane.stopping.load(Ordering::SeqCst)
                        && since.elapsed() >= self.backend.timeout()
                    {
                        self.abandoned = Some(error.clone());
                        break Err(error);
                    }
                    self.wait(pause, since);
                    pause = (pause * 2).min(LAST_RETRY);
                }
                result => break result,
            }
        };
        if result.is_ok() && self.lane.outage().take().is_some() {
            self.log
                .info(format_args!("{}: reachable again", self.backend.name()));
        }
        self.lane
            .pending
            .fetch_sub(writes.len() as u64, Ordering::Relaxed);
        if let Err(error) = result {
            self.log.error(format_args!(
                "{} queued write(s) failed: {error}",
                writes.len()
            ));
            self.failures
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .record(error, writes.len());
        }
    }

    fn write_batch(&self, writes: &[Write]) -> Result<()> {
        // A panic in a backend must not end the worker: the writes behind it
        // would never be applied.
        catch_unwind(AssertUnwindSafe(|| self.backend.write_batch(writes))).unwrap_or_else(|_| {
            Err(Error::Internal(format!(
                "{}: panic while writing a batch",
                self.backend.name()
            )))
        })
    }

    /// Records the outage (once) and returns when it began.
    fn outage_began(&self, tried: Instant, error: &Error) -> Instant {
        let mut outage = self.lane.outage();
        match &mut *outage {
            Some((since, last)) => {
                *last = error.clone();
                *since
            }
            None => {
                self.log.warn(format_args!(
                    "{error}; {} queued write(s) wait and are retried",
                    self.lane.pending.load(Ordering::Relaxed)
                ));
                *outage = Some((tried, error.clone()));
                tried
            }
        }
    }

    /// Pauses before the next try; a stop cuts the pause short once the
    /// outage that began at `since` has lasted the backend's timeout.
    fn wait(&self, pause: Duration, since: Instant) {
        let until = Instant::now() + pause;
        loop {
            let until = match self.lane.stopping.load(Ordering::SeqCst) {
                true => until.min(since + self.backend.timeout()),
                false => until,
            };
            let Some(left) = until.checked_duration_since(Instant::now()) else {
                return;
            };
            std::thread::park_timeout(left);
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

/// The writes with only the last one to each key kept, in their order: one
/// batch may not touch a key twice on etcd or DynamoDB, and the last queued
/// write to a key wins anyway.
fn last_write_per_key(writes: Vec<Write>) -> Vec<Write> {
    let mut seen = HashSet::with_capacity(writes.len());
    let kept: Vec<bool> = writes
        .iter()
        .rev()
        .map(|write| seen.insert(write.key.as_str()))
        .collect();
    if seen.len() == writes.len() {
        return writes;
    }
    writes
        .into_iter()
        .zip(kept.into_iter().rev())
        .filter_map(|(write, kept)| kept.then_some(write))
        .collect()
}

#[cfg(test)]
mod tests {
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
        fn batch_limit(&self) -> BatchLimit {
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
        let backends: Backends = vec![faulty.clone() as Arc<dyn Backend>].into();
        let settings = QueueConfig {
            size,
            interval: 3600.0,
            ..QueueConfig::default()
        };
        let queue = Queue::new(settings, backends, Logger::new(Level::None));
        queue.start().unwrap();
        (queue, faulty)
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
    fn duplicate_keys_collapse_to_the_last_write_in_order() {
        let write = |key: &str, value: &str| Write {
            key: key.into(),
            value: value.into(),
        };
        let writes = vec![
            write("a", "1"),
            write("b", "1"),
            write("a", "2"),
            write("c", "1"),
        ];
        let kept = last_write_per_key(writes);
        assert_eq!(kept, [write("b", "1"), write("a", "2"), write("c", "1")]);
    }

    #[test]
    fn pieces_keep_to_the_batch_limit() {
        let writes: Vec<Write> = (0..10)
            .map(|i| Write {
                key: format!("k{i}"),
                value: vec![0; 98],
            })
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
