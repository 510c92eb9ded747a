//! The outbox's own thread.

use super::*;

/// The outbox's thread: every [`FLUSH_EVERY`], a round on every lane.
pub(super) struct Flusher {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: JoinHandle<()>,
}

impl Flusher {
    pub(super) fn start(lanes: Vec<Arc<LaneLog>>, log: Logger) -> std::io::Result<Flusher> {
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

    pub(super) fn stop(self) {
        *locked(&self.stop.0) = true;
        self.stop.1.notify_all();
        let _ = self.thread.join();
    }
}
