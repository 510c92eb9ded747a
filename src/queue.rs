//! The batch worker (design.md §4): a bounded queue of writes, applied per
//! backend in batches of `size`, or once the oldest write of a batch has
//! waited `interval` — whichever comes first.
//!
//! Nothing queued is lost: stop, flush and drop apply everything queued
//! before them, and a batch that fails is counted and reported by the next
//! flush or stop instead of being dropped.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};

use crate::backend::{Backend, Write};
use crate::config::QueueConfig;
use crate::error::{Error, Result};
use crate::log::Logger;

/// The backends of a handle, indexed as queued writes address them.
pub(crate) type Backends = Arc<[Arc<dyn Backend>]>;

enum Message {
    Write {
        backend: usize,
        write: Write,
    },
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

struct Worker {
    sender: Sender<Message>,
    thread: JoinHandle<()>,
}

pub(crate) struct Queue {
    settings: QueueConfig,
    backends: Backends,
    log: Logger,
    /// `None` while stopped. Writers hold the read lock while they wait on a
    /// full queue, so a stop waits for them and applies their writes too.
    worker: RwLock<Option<Worker>>,
    failures: Arc<Mutex<Failures>>,
}

impl Queue {
    pub fn new(settings: QueueConfig, backends: Backends, log: Logger) -> Queue {
        Queue {
            settings,
            backends,
            log,
            worker: RwLock::new(None),
            failures: Arc::default(),
        }
    }

    /// Starts the worker; does nothing when it runs already.
    pub fn start(&self) -> Result<()> {
        let mut worker = self.worker.write().unwrap_or_else(PoisonError::into_inner);
        if worker.is_some() {
            return Ok(());
        }
        let (sender, receiver) = bounded(self.settings.capacity);
        let batcher = Batcher {
            size: self.settings.size,
            interval: self.settings.interval(),
            backends: self.backends.clone(),
            pending: (0..self.backends.len()).map(|_| None).collect(),
            failures: self.failures.clone(),
            log: self.log,
        };
        let thread = std::thread::Builder::new()
            .name("tetherdb-worker".into())
            .spawn(move || batcher.run(receiver))
            .map_err(|e| Error::Internal(format!("cannot start the worker thread: {e}")))?;
        *worker = Some(Worker { sender, thread });
        Ok(())
    }

    /// Applies everything queued, ends the worker, and reports queued writes
    /// that failed since the last report. Does nothing more when stopped.
    pub fn stop(&self) -> Result<()> {
        let worker = self
            .worker
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(Worker { sender, thread }) = worker {
            // The worker owns the receiver, so the send only fails when it has
            // died; join tells why.
            let _ = sender.send(Message::Stop);
            if thread.join().is_err() {
                self.failures_lock()
                    .record(Error::Internal("the worker thread panicked".into()), 0);
            }
        }
        self.take_failures()
    }

    /// Waits until every write queued before the call is applied, and reports
    /// queued writes that failed since the last report.
    pub fn flush(&self) -> Result<()> {
        let (done, finished) = bounded(1);
        let sent = {
            let worker = self.worker.read().unwrap_or_else(PoisonError::into_inner);
            match worker.as_ref() {
                Some(worker) => worker.sender.send(Message::Flush(done)).is_ok(),
                None => false,
            }
        };
        if sent && finished.recv().is_err() {
            return Err(Error::Internal(
                "the worker thread ended during a flush".into(),
            ));
        }
        self.take_failures()
    }

    /// Queues one write; waits while the queue is full.
    pub fn push(&self, backend: usize, write: Write) -> Result<()> {
        let worker = self.worker.read().unwrap_or_else(PoisonError::into_inner);
        let Some(worker) = worker.as_ref() else {
            return Err(Error::NotRunning {
                backend: self.backends[backend].name().into(),
                key: write.key,
            });
        };
        worker
            .sender
            .send(Message::Write { backend, write })
            .map_err(|_| Error::Internal("the worker thread has ended".into()))
    }

    pub fn is_running(&self) -> bool {
        self.worker
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    fn take_failures(&self) -> Result<()> {
        self.failures_lock().take()
    }

    fn failures_lock(&self) -> std::sync::MutexGuard<'_, Failures> {
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

/// Writes waiting to go out to one backend.
struct Batch {
    writes: Vec<Write>,
    oldest: Instant,
}

/// The worker thread's state.
struct Batcher {
    size: usize,
    interval: Duration,
    backends: Backends,
    /// One slot per backend.
    pending: Vec<Option<Batch>>,
    failures: Arc<Mutex<Failures>>,
    log: Logger,
}

impl Batcher {
    fn run(mut self, receiver: Receiver<Message>) {
        loop {
            let message = match self.next_deadline() {
                Some(deadline) => receiver.recv_deadline(deadline),
                None => receiver.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            match message {
                Ok(Message::Write { backend, write }) => {
                    let batch = self.pending[backend].get_or_insert_with(|| Batch {
                        writes: Vec::new(),
                        oldest: Instant::now(),
                    });
                    batch.writes.push(write);
                    if batch.writes.len() >= self.size {
                        self.send(backend);
                    }
                }
                Ok(Message::Flush(done)) => {
                    self.send_all();
                    let _ = done.send(());
                }
                Err(RecvTimeoutError::Timeout) => {
                    let now = Instant::now();
                    for backend in 0..self.pending.len() {
                        if self.pending[backend]
                            .as_ref()
                            .is_some_and(|b| now >= b.oldest + self.interval)
                        {
                            self.send(backend);
                        }
                    }
                }
                Ok(Message::Stop) | Err(RecvTimeoutError::Disconnected) => {
                    self.send_all();
                    return;
                }
            }
        }
    }

    /// When the oldest pending write reaches the interval.
    fn next_deadline(&self) -> Option<Instant> {
        self.pending
            .iter()
            .flatten()
            .map(|batch| batch.oldest + self.interval)
            .min()
    }

    fn send_all(&mut self) {
        for backend in 0..self.pending.len() {
            self.send(backend);
        }
    }

    fn send(&mut self, backend: usize) {
        let Some(batch) = self.pending[backend].take() else {
            return;
        };
        let target = &self.backends[backend];
        // A panic in a backend must not end the worker: the writes behind it
        // would never be applied.
        let result = catch_unwind(AssertUnwindSafe(|| target.write_batch(&batch.writes)))
            .unwrap_or_else(|_| {
                Err(Error::Internal(format!(
                    "{}: panic while writing a batch",
                    target.name()
                )))
            });
        if let Err(error) = result {
            self.log.error(format_args!(
                "{} queued write(s) failed: {error}",
                batch.writes.len()
            ));
            self.failures
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .record(error, batch.writes.len());
        }
    }
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
    #[derive(Default)]
    struct Faulty {
        applied: Mutex<Vec<String>>,
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
}
