//! The progress line on stderr while threads count: a counter per thread,
//! summed and shown with the rate and the errors so far, rewritten in place
//! on a terminal and a plain line each second otherwise.

use std::io::{IsTerminal, Write as _};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::args::Options;
use crate::report::thousands;

/// One counter per thread, each on its own cache line, read by the
/// progress line while the threads count.
#[repr(align(128))]
#[derive(Default)]
pub struct Counter(pub AtomicU64);

pub struct Progress {
    enabled: bool,
    tty: bool,
}

impl Progress {
    pub fn new(o: &Options) -> Progress {
        Progress {
            enabled: !o.quiet,
            tty: std::io::stderr().is_terminal(),
        }
    }

    pub fn note(&self, text: &str) {
        if self.enabled {
            eprintln!("{text}");
        }
    }

    /// Until `done`: on a terminal, one line rewritten four times a
    /// second; otherwise a plain line each second.
    /// `phase`: what is counted, and the unit, e.g. `("writing", "ops")`.
    pub fn watch(
        &self,
        (phase, unit): (&str, &str),
        started: Instant,
        counters: &[Counter],
        total: Option<u64>,
        errors: &Counter,
        done: &AtomicBool,
    ) {
        if !self.enabled {
            return;
        }
        let every = if self.tty {
            Duration::from_millis(250)
        } else {
            Duration::from_secs(1)
        };
        let (mut last_count, mut last_time) = (0u64, started);
        let mut next = started + every;
        let mut printed = false;
        loop {
            // Short naps, so that a short run does not wait for a tick.
            while Instant::now() < next && !done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(20));
            }
            if done.load(Ordering::Relaxed) {
                break;
            }
            let now = Instant::now();
            let count: u64 = counters.iter().map(|c| c.0.load(Ordering::Relaxed)).sum();
            let rate = (count - last_count) as f64 / (now - last_time).as_secs_f64();
            (last_count, last_time) = (count, now);
            let of = total.map_or(String::new(), |t| format!(" of {}", thousands(t)));
            let line = format!(
                "[{:6.1}s] {phase}: {}{of} {unit}, {} {unit}/s, {} errors",
                (now - started).as_secs_f64(),
                thousands(count),
                thousands(rate as u64),
                thousands(errors.0.load(Ordering::Relaxed)),
            );
            if self.tty {
                eprint!("\r\x1b[2K{line}");
                let _ = std::io::stderr().flush();
                printed = true;
            } else {
                eprintln!("{line}");
            }
            next += every;
        }
        if printed {
            eprint!("\r\x1b[2K");
        }
    }
}
