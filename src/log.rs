//! What the library writes to stderr, filtered by the `logging` setting.
//!
//! Per handle rather than a process-wide logger: two handles in one program
//! may want different levels, and a C host has no Rust logger to install.
//!
//! A line is written only when stderr can take it at once, in one write(2)
//! of at most `PIPE_BUF` bytes, and errors are ignored: a full pipe, a
//! reader gone (EPIPE) or a closed fd 2 never blocks nor panics a worker.
//! Lines that could not be written are counted, and the next line says so.

use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Deserialize;

/// The `logging` setting. Messages at or above it go to stderr.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Debug,
    Info,
    #[default]
    Warn,
    Error,
    /// Nothing is written.
    None,
}

impl Level {
    fn label(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
            Level::None => "none",
        }
    }
}

impl<'de> Deserialize<'de> for Level {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Case-insensitive, with Python's names too, so the Python TetherDB's
        // files ("INFO", "WARNING", "CRITICAL") load unchanged.
        let name = String::deserialize(deserializer)?;
        Ok(match name.to_ascii_lowercase().as_str() {
            "debug" => Level::Debug,
            "info" => Level::Info,
            "warn" | "warning" => Level::Warn,
            "error" | "critical" => Level::Error,
            "none" | "off" => Level::None,
            _ => {
                return Err(serde::de::Error::custom(format!(
                    "unknown logging level {}, expected one of debug, info, warn, error, none",
                    crate::error::Quoted(&name)
                )))
            }
        })
    }
}

/// Writes messages of at least its level to stderr.
#[derive(Clone, Copy, Debug)]
pub struct Logger {
    level: Level,
}

impl Logger {
    pub fn new(level: Level) -> Logger {
        Logger { level }
    }

    pub fn enabled(&self, level: Level) -> bool {
        level != Level::None && level >= self.level
    }

    pub fn log(&self, level: Level, message: fmt::Arguments<'_>) {
        if self.enabled(level) {
            let mut line = String::new();
            let _ = write!(line, "tetherdb {}: {message}", level.label());
            emit(line);
        }
    }

    pub fn info(&self, message: fmt::Arguments<'_>) {
        self.log(Level::Info, message)
    }

    pub fn warn(&self, message: fmt::Arguments<'_>) {
        self.log(Level::Warn, message)
    }

    pub fn error(&self, message: fmt::Arguments<'_>) {
        self.log(Level::Error, message)
    }
}

/// The most one write(2) to a pipe carries at once (POSIX's `PIPE_BUF`).
const PIPE_BUF: usize = 4096;

/// Lines stderr could not take, not yet reported.
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Writes `line` to fd 2 if it can take it now, without blocking.
fn emit(mut line: String) {
    let dropped = DROPPED.swap(0, Ordering::Relaxed);
    if dropped > 0 {
        line = format!("tetherdb warn: {dropped} log line(s) dropped: stderr was full\n{line}");
    }
    if line.len() >= PIPE_BUF {
        let mut end = PIPE_BUF - 4;
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        line.truncate(end);
        line.push_str("...");
    }
    line.push('\n');
    let mut stderr = libc::pollfd {
        fd: libc::STDERR_FILENO,
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one pollfd, valid for the call; a zero timeout never waits.
    let ready = unsafe { libc::poll(&mut stderr, 1, 0) };
    if ready != 1 || stderr.revents & libc::POLLOUT == 0 {
        DROPPED.fetch_add(dropped + 1, Ordering::Relaxed);
        return;
    }
    // SAFETY: the pointer and length are the line's. A pipe with room
    // (POLLOUT: a free page) takes up to PIPE_BUF bytes without blocking.
    let written = unsafe { libc::write(libc::STDERR_FILENO, line.as_ptr().cast(), line.len()) };
    if written < 0 {
        DROPPED.fetch_add(dropped + 1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_level_lets_through_itself_and_above() {
        let warn = Logger::new(Level::Warn);
        assert!(!warn.enabled(Level::Info));
        assert!(warn.enabled(Level::Warn) && warn.enabled(Level::Error));
        let none = Logger::new(Level::None);
        assert!(!none.enabled(Level::Error) && !none.enabled(Level::None));
        assert!(Logger::new(Level::Debug).enabled(Level::Debug));
    }
}
