//! `read_only` and `write_only`: a backend with half of its calls refused,
//! with `TETHER_UNSUPPORTED` and a message naming the layer.

use std::sync::Arc;
use std::time::Duration;

use crate::backend::{
    Access, Backend, BatchLimit, Condition, Deadline, Listing, Outcome, Ttl, Versioned, Write,
};
use crate::error::{Error, Result};

/// Reads, listings and counter totals pass; every change is refused,
/// queued writes before they are queued.
pub(crate) struct ReadOnly {
    name: String,
    of: Arc<dyn Backend>,
}

impl ReadOnly {
    pub(crate) fn new(name: String, of: Arc<dyn Backend>) -> ReadOnly {
        ReadOnly { name, of }
    }

    fn refused<T>(&self, what: &str) -> Result<T> {
        Err(Error::Unsupported(format!(
            "{} is read-only (over {}): {what} refused",
            self.name,
            self.of.name()
        )))
    }
}

impl Backend for ReadOnly {
    fn name(&self) -> &str {
        &self.name
    }

    fn write_if(&self, _: &str, _: &[u8], _: Condition, _: Ttl) -> Result<Outcome> {
        self.refused("a write")
    }

    fn read_versioned(
        &self,
        key: &str,
        with_value: bool,
        access: Access,
    ) -> Result<Option<Versioned>> {
        self.of.read_versioned(key, with_value, access)
    }

    fn read(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.of.read(key)
    }

    fn touch(&self, _: &str, _: Option<Deadline>) -> Result<Outcome> {
        self.refused("a change of expiry")
    }

    fn delete_if(&self, _: &str, _: Condition) -> Result<Outcome> {
        self.refused("a delete")
    }

    fn increment(&self, _: &str, _: i64) -> Result<i64> {
        self.refused("an increment")
    }

    fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        keys_only: bool,
    ) -> Result<Listing> {
        self.of.list(prefix, start_after, limit, keys_only)
    }

    fn read_many(&self, keys: &[String], with_value: bool) -> Result<Vec<Option<Versioned>>> {
        self.of.read_many(keys, with_value)
    }

    fn delete_many(&self, _: &[String]) -> Result<()> {
        self.refused("a delete")
    }

    fn delete_prefix(&self, _: &str, _: bool) -> Result<u64> {
        self.refused("a delete")
    }

    fn write_batch(&self, _: &[Write]) -> Result<()> {
        self.refused("a write")
    }

    fn flush(&self) -> Result<()> {
        Ok(())
    }

    fn destination(&self) -> String {
        format!("read-only {}", self.of.destination())
    }

    fn accepts(&self, _: &str, _: &[u8]) -> Result<()> {
        self.refused("a queued write")
    }

    fn timeout(&self) -> Duration {
        self.of.timeout()
    }

    fn is_remote(&self) -> bool {
        self.of.is_remote()
    }
}

/// Changes pass; every read is refused: reads, listings, counter totals,
/// and the read a condition on version 0 needs to tell an absent key from
/// another version. An increment passes: it is a change, and its sum what
/// the change did.
pub(crate) struct WriteOnly {
    name: String,
    of: Arc<dyn Backend>,
}

impl WriteOnly {
    pub(crate) fn new(name: String, of: Arc<dyn Backend>) -> WriteOnly {
        WriteOnly { name, of }
    }

    fn refused<T>(&self, what: &str) -> Result<T> {
        Err(Error::Unsupported(format!(
            "{} is write-only (over {}): {what} refused",
            self.name,
            self.of.name()
        )))
    }
}

impl Backend for WriteOnly {
    fn name(&self) -> &str {
        &self.name
    }

    fn write_if(&self, key: &str, value: &[u8], condition: Condition, ttl: Ttl) -> Result<Outcome> {
        self.of.write_if(key, value, condition, ttl)
    }

    fn read_versioned(&self, _: &str, _: bool, _: Access) -> Result<Option<Versioned>> {
        self.refused("a read")
    }

    fn read(&self, _: &str) -> Result<Option<Vec<u8>>> {
        self.refused("a read")
    }

    fn touch(&self, key: &str, deadline: Option<Deadline>) -> Result<Outcome> {
        self.of.touch(key, deadline)
    }

    fn delete_if(&self, key: &str, condition: Condition) -> Result<Outcome> {
        self.of.delete_if(key, condition)
    }

    fn write(&self, key: &str, value: &[u8]) -> Result<()> {
        self.of.write(key, value)
    }

    fn update(&self, key: &str, value: &[u8]) -> Result<bool> {
        self.of.update(key, value)
    }

    fn increment(&self, key: &str, delta: i64) -> Result<i64> {
        self.of.increment(key, delta)
    }

    fn delete(&self, key: &str) -> Result<bool> {
        self.of.delete(key)
    }

    fn list(&self, _: &str, _: Option<&str>, _: usize, _: bool) -> Result<Listing> {
        self.refused("a listing")
    }

    fn read_many(&self, _: &[String], _: bool) -> Result<Vec<Option<Versioned>>> {
        self.refused("a read")
    }

    fn delete_many(&self, keys: &[String]) -> Result<()> {
        self.of.delete_many(keys)
    }

    fn delete_prefix(&self, prefix: &str, keep_prefix_key: bool) -> Result<u64> {
        self.of.delete_prefix(prefix, keep_prefix_key)
    }

    fn write_batch(&self, writes: &[Write]) -> Result<()> {
        self.of.write_batch(writes)
    }

    fn flush(&self) -> Result<()> {
        self.of.flush()
    }

    fn destination(&self) -> String {
        self.of.destination()
    }

    fn accepts(&self, key: &str, value: &[u8]) -> Result<()> {
        self.of.accepts(key, value)
    }

    fn batch_limit(&self) -> BatchLimit {
        self.of.batch_limit()
    }

    fn timeout(&self) -> Duration {
        self.of.timeout()
    }

    fn is_remote(&self) -> bool {
        self.of.is_remote()
    }
}
