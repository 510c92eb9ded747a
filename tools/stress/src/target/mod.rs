//! What the workload drives: the library through its C ABI (the tool's
//! purpose), or, for the benchmark report's baseline, the engine underneath
//! used directly (sled, etcd-client, aws-sdk-dynamodb) on the same keys and
//! values.

use std::ffi::c_char;

use tetherdb::Status;

pub mod engines;
mod library;

pub use library::{status_name, CAbi, ConfigSource};

/// A call that did not succeed: its status and message.
#[derive(Clone, Debug)]
pub struct Failure {
    pub status: Status,
    pub message: String,
}

pub type Outcome = Result<(), Failure>;

/// One key as the calls need it, built once per operation in one buffer:
/// `bucket:key\0`. The C ABI takes the key part (with the NUL); an engine
/// takes the stored key, `bucket:key`, so both sides store
/// the same bytes.
pub struct KeyBuf {
    buf: Vec<u8>,
    /// Length of `bucket:`, or 0 without a bucket.
    prefix: usize,
}

impl KeyBuf {
    pub fn new(bucket: &str) -> KeyBuf {
        let mut buf = Vec::with_capacity(bucket.len() + 40);
        if !bucket.is_empty() {
            buf.extend_from_slice(bucket.as_bytes());
            buf.push(b':');
        }
        let prefix = buf.len();
        KeyBuf { buf, prefix }
    }

    /// Replaces the key part with `key` (which holds no NUL).
    pub fn set(&mut self, key: impl std::fmt::Display) {
        use std::io::Write;
        self.buf.truncate(self.prefix);
        write!(self.buf, "{key}\0").expect("writing to a Vec cannot fail");
    }

    pub fn c_key(&self) -> *const c_char {
        self.buf[self.prefix..].as_ptr().cast()
    }

    pub fn stored(&self) -> &[u8] {
        &self.buf[..self.buf.len() - 1]
    }
}

/// A target's calls from one thread.
pub trait Session {
    fn write(&mut self, key: &KeyBuf, value: &[u8], queued: bool) -> Status;
    fn update(&mut self, key: &KeyBuf, value: &[u8]) -> Status;
    /// Reads `key`, and on success hands its value to `check`.
    fn read(&mut self, key: &KeyBuf, check: &mut dyn FnMut(&[u8])) -> Status;
    /// The message of this thread's last failed call.
    fn last_error(&self) -> String;
    /// Sends what this thread still holds (an engine's partial batch).
    fn finish(&mut self) -> Outcome {
        Ok(())
    }
}

pub trait Target: Sync {
    /// What is measured, for the summary: "library (C ABI)", "sled", ...
    fn describe(&self) -> String;
    fn session(&self) -> Box<dyn Session + '_>;
    /// Waits until every queued write is applied and durable.
    fn flush(&self) -> Outcome;
    /// Visits every entry of `bucket` whose key starts with `prefix`,
    /// with the key without its bucket part, `page` entries per request
    /// where the target pages.
    fn list(
        &self,
        bucket: &str,
        prefix: &str,
        page: usize,
        visit: &mut dyn FnMut(&str, &[u8]),
    ) -> Outcome;
    fn close(self: Box<Self>) -> Outcome;
}
