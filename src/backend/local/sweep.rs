//! The thread that removes expired entries from a `local` store, so that
//! their space is reclaimed without a call touching them.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long the sweep waits between rounds that found nothing more to do.
pub(super) const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// Runs rounds of a sweep on a thread of its own until dropped; dropping it
/// waits for the round in progress.
pub(super) struct Sweeper {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Sweeper {
    /// Starts `round`, which returns `true` when it stopped at its bound with
    /// more to do: the next round then starts at once.
    pub(super) fn start(round: impl Fn() -> bool + Send + 'static) -> Sweeper {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("tetherdb-sweep".into())
            .spawn(move || loop {
                let pause = if round() {
                    Duration::ZERO
                } else {
                    SWEEP_INTERVAL
                };
                match stopped.recv_timeout(pause) {
                    Err(RecvTimeoutError::Timeout) => continue,
                    _ => return,
                }
            });
        Sweeper {
            stop: Some(stop),
            // Without a thread (none could be made), expired entries stay
            // until overwritten: calls skip them all the same.
            thread: thread.ok(),
        }
    }
}

impl Drop for Sweeper {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Instant;

    /// Rounds that hit their bound follow at once; dropping the sweeper
    /// stops its thread without waiting out the interval.
    #[test]
    fn rounds_run_until_the_sweeper_is_dropped() {
        let rounds = Arc::new(AtomicUsize::new(0));
        let counted = rounds.clone();
        let sweeper = Sweeper::start(move || counted.fetch_add(1, Ordering::SeqCst) < 5);
        let give_up = Instant::now() + Duration::from_secs(60);
        while rounds.load(Ordering::SeqCst) < 6 {
            assert!(Instant::now() < give_up, "the sweep did not run");
            std::thread::sleep(Duration::from_millis(1));
        }
        drop(sweeper);
        let after = rounds.load(Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(
            rounds.load(Ordering::SeqCst),
            after,
            "a round after the drop"
        );
    }
}
