//! Queued writes: per backend, applied in batches of `size`, or once the
//! oldest write of a batch has waited `interval` — whichever comes first.
//!
//! Each backend has a lane ([`lane`]): its queue of writes, and a worker
//! thread of its own ([`worker`]), so that an unreachable backend holds up
//! only its own writes. The writes of a lane wait either in memory or, with
//! `queue_batch.durable`, in the on-disk [`Outbox`] ([`outbox`]), from
//! before the write call returns until the backend holds them durably.
//! [`batch`] shapes what one engine call carries.
//!
//! Nothing queued is lost: a batch that fails because the backend is
//! unreachable is retried with capped exponential backoff; stop, flush and
//! drop apply everything queued before them; a write that fails for good
//! is counted and reported by the next flush or stop; and when a stop gives
//! up on an unreachable backend, its writes stay in the outbox for the next
//! start or open (in memory, they are reported as failed).

mod batch;
mod lane;
pub(crate) mod outbox;
mod worker;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::thread::JoinHandle;

use serde_json::{json, Value};

use crate::backend::{Backend, Write};
use crate::config::QueueConfig;
use crate::error::{Error, Result};
use crate::log::Logger;
use lane::{panic_message, Failures, Lane, Store};
use outbox::Outbox;
use worker::Worker;

/// The backends of a handle, indexed as queued writes address them.
pub(crate) type Backends = Arc<[Arc<dyn Backend>]>;

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
                in_flight: match lane.backend.is_remote() {
                    true => self.settings.in_flight,
                    false => 1,
                },
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
                return Err(Error::still_waiting(
                    state.outage.as_ref().map(|(_, e)| e),
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::Path;
    use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
    use std::sync::Mutex;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::backend::{Access, BatchLimit, Condition, Listing, Outcome, Versioned};
    use crate::error::Status;
    use crate::log::Level;

    /// A backend that records batches, and fails (or panics on) those
    /// holding a key starting with "fail" (or "panic"): faults sled cannot
    /// be made to produce on demand.
    /// While `down`, it is unreachable; while `holding`, so it is to
    /// batches holding a key starting with "hold". It takes at most 3
    /// writes a batch, each taking `slow_ms`.
    #[derive(Default)]
    struct Faulty {
        applied: Mutex<Vec<String>>,
        down: AtomicBool,
        holding: AtomicBool,
        slow_ms: AtomicU64,
        /// Batches being written now, and the most there were at once.
        writing: AtomicUsize,
        most_writing: AtomicUsize,
        /// Per key, the largest numeric value applied; and whether a
        /// smaller one came after it (an order broken).
        values: Mutex<HashMap<String, u64>>,
        reordered: AtomicBool,
        tries: AtomicU64,
        /// Panics where the worker has no guard: it dies.
        breaks_worker: AtomicBool,
    }

    impl Backend for Faulty {
        fn name(&self) -> &'static str {
            "faulty"
        }
        fn write_if(
            &self,
            _: &str,
            _: &[u8],
            _: Condition,
            _: crate::backend::Ttl,
        ) -> Result<Outcome> {
            unreachable!()
        }
        fn read_versioned(&self, _: &str, _: bool, _: Access) -> Result<Option<Versioned>> {
            unreachable!()
        }
        fn delete_if(&self, _: &str, _: Condition) -> Result<Outcome> {
            unreachable!()
        }
        fn list(&self, _: &str, _: Option<&str>, _: usize, _: bool) -> Result<Listing> {
            unreachable!()
        }
        fn delete_prefix(&self, _: &str, _: bool) -> Result<u64> {
            unreachable!()
        }
        fn write_batch(&self, writes: &[Write]) -> Result<()> {
            self.tries.fetch_add(1, Ordering::SeqCst);
            assert!(writes.len() <= 3, "over the batch limit");
            let writing = self.writing.fetch_add(1, Ordering::SeqCst) + 1;
            self.most_writing.fetch_max(writing, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(self.slow_ms.load(Ordering::SeqCst)));
            self.writing.fetch_sub(1, Ordering::SeqCst);
            let held = self.holding.load(Ordering::SeqCst)
                && writes.iter().any(|w| w.key.starts_with("hold"));
            if self.down.load(Ordering::SeqCst) || held {
                return Err(Error::unavailable("faulty", "", "injected outage"));
            }
            if writes.iter().any(|w| w.key.starts_with("panic")) {
                panic!("injected panic");
            }
            if let Some(bad) = writes.iter().find(|w| w.key.starts_with("fail")) {
                return Err(Error::io("faulty", &bad.key, "injected failure"));
            }
            let mut values = self.values.lock().unwrap();
            for write in writes {
                let Some(value) = std::str::from_utf8(&write.value)
                    .ok()
                    .and_then(|v| v.parse().ok())
                else {
                    continue;
                };
                let last = values.entry(write.key.clone()).or_insert(0);
                if value < *last {
                    self.reordered.store(true, Ordering::SeqCst);
                }
                *last = value;
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
                ..BatchLimit::none()
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
        queue_in_flight(size, 1, faulty, outbox)
    }

    /// A queue whose worker keeps up to `in_flight` batches in flight.
    fn queue_in_flight(
        size: usize,
        in_flight: usize,
        faulty: &Arc<Faulty>,
        outbox: Option<&Path>,
    ) -> Queue {
        let backends: Backends = vec![faulty.clone() as Arc<dyn Backend>].into();
        let settings = QueueConfig {
            size,
            interval: 3600.0,
            in_flight,
            ..QueueConfig::default()
        };
        let log = Logger::new(Level::None);
        let outbox = outbox.map(|path| Outbox::open(path, 1 << 20, &backends, log).unwrap());
        let queue = Queue::new(settings, &backends, outbox, log).unwrap();
        queue.start().unwrap();
        queue
    }

    fn push(queue: &Queue, key: &str) {
        push_value(queue, key, "v");
    }

    fn push_value(queue: &Queue, key: &str, value: &str) {
        let write = Write {
            key: key.into(),
            value: value.into(),
            deadline: None,
        };
        queue.push(0, write).unwrap();
    }

    #[test]
    fn a_failed_batch_is_reported_once_by_the_next_flush() {
        // One batch of all nine writes (its size), in pieces of three.
        let (queue, faulty) = queue(9);
        let keys = [
            "ok1", "ok2", "ok3", "fail1", "x", "fail2", "ok4", "ok5", "ok6",
        ];
        for key in keys {
            push(&queue, key);
        }
        let err = queue.flush().unwrap_err();
        assert_eq!(err.status(), Status::Io);
        assert_eq!(
            err.to_string(),
            "3 queued write(s) failed; the first: faulty: key \"fail1\": storage failed: injected failure"
        );
        let applied = ["ok1", "ok2", "ok3", "ok4", "ok5", "ok6"];
        assert_eq!(*faulty.applied.lock().unwrap(), applied);
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
        let err = queue.flush().unwrap_err();
        assert_eq!(err.status(), Status::Internal);
        push(&queue, "after");
        queue.flush().unwrap();
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
            deadline: None,
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
    fn batches_in_flight_overlap_and_keep_each_keys_order() {
        let faulty = Arc::new(Faulty::default());
        faulty.slow_ms.store(30, Ordering::SeqCst);
        let queue = queue_in_flight(12, 4, &faulty, None);
        // 30 keys written 20 times each, values rising: a key's value may
        // only rise, also across batches in flight.
        for i in 0..600 {
            push_value(&queue, &format!("k{}", i % 30), &i.to_string());
        }
        queue.flush().unwrap();
        assert!(
            !faulty.reordered.load(Ordering::SeqCst),
            "a key's order broken"
        );
        let values = faulty.values.lock().unwrap().clone();
        let last: HashMap<String, u64> = (570..600).map(|i| (format!("k{}", i % 30), i)).collect();
        assert_eq!(values, last);
        let most = faulty.most_writing.load(Ordering::SeqCst);
        assert!((2..=4).contains(&most), "{most} batches in flight at most");
    }

    #[test]
    fn an_outbox_forgets_a_write_only_once_every_earlier_piece_landed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox");
        let faulty = Arc::new(Faulty::default());
        faulty.holding.store(true, Ordering::SeqCst);
        // One batch of twelve, four pieces in flight: the second piece,
        // holding "hold", meets an outage while the others land.
        let queue = queue_in_flight(12, 4, &faulty, Some(&path));
        let keys: Vec<String> = (0..12)
            .map(|i| match i {
                3 => "hold".to_string(),
                i => format!("k{i:02}"),
            })
            .collect();
        for key in &keys {
            push(&queue, key);
        }
        assert_eq!(queue.stop().unwrap_err().status(), Status::Unavailable);
        drop(queue);
        let mut landed = std::mem::take(&mut *faulty.applied.lock().unwrap());
        landed.sort();
        let mut others: Vec<String> = keys
            .iter()
            .filter(|k| !k.starts_with("hold"))
            .cloned()
            .collect();
        others.retain(|k| !["k04", "k05"].contains(&k.as_str()));
        assert_eq!(landed, others, "every piece but the held one landed");

        // Only the first piece was done: the rest, landed or not, is
        // applied again, in order.
        faulty.holding.store(false, Ordering::SeqCst);
        let queue = queue_over(12, &faulty, Some(&path));
        queue.flush().unwrap();
        assert_eq!(*faulty.applied.lock().unwrap(), keys[3..]);
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
}
