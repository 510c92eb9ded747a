//! What the library writes to stderr, filtered by the `logging` setting.
//!
//! Per handle rather than a process-wide logger: two handles in one program
//! may want different levels, and a C host has no Rust logger to install.

use std::fmt;

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
            eprintln!("tetherdb {}: {message}", level.label());
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
