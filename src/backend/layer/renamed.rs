//! An engine under a name of its own (`"primary": {"engine": "etcd", …}`):
//! calls address it by that name, and its errors carry it, so that a
//! handle with two etcd clusters says which one failed.

use std::sync::Arc;
use std::time::Duration;

use crate::backend::{
    Access, Backend, BatchLimit, Condition, Deadline, Listing, Outcome, Ttl, Versioned, Write,
};
use crate::error::Result;

pub(crate) struct Renamed {
    name: String,
    engine: Arc<dyn Backend>,
}

impl Renamed {
    pub(crate) fn new(name: String, engine: Arc<dyn Backend>) -> Renamed {
        Renamed { name, engine }
    }

    fn named<T>(&self, result: Result<T>) -> Result<T> {
        result.map_err(|e| e.renamed(self.engine.name(), &self.name))
    }
}

impl Backend for Renamed {
    fn name(&self) -> &str {
        &self.name
    }

    fn write_if(&self, key: &str, value: &[u8], condition: Condition, ttl: Ttl) -> Result<Outcome> {
        self.named(self.engine.write_if(key, value, condition, ttl))
    }

    fn read_versioned(
        &self,
        key: &str,
        with_value: bool,
        access: Access,
    ) -> Result<Option<Versioned>> {
        self.named(self.engine.read_versioned(key, with_value, access))
    }

    fn touch(&self, key: &str, deadline: Option<Deadline>) -> Result<Outcome> {
        self.named(self.engine.touch(key, deadline))
    }

    fn delete_if(&self, key: &str, condition: Condition) -> Result<Outcome> {
        self.named(self.engine.delete_if(key, condition))
    }

    fn write(&self, key: &str, value: &[u8]) -> Result<()> {
        self.named(self.engine.write(key, value))
    }

    fn read(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.named(self.engine.read(key))
    }

    fn update(&self, key: &str, value: &[u8]) -> Result<bool> {
        self.named(self.engine.update(key, value))
    }

    fn increment(&self, key: &str, delta: i64) -> Result<i64> {
        self.named(self.engine.increment(key, delta))
    }

    fn delete(&self, key: &str) -> Result<bool> {
        self.named(self.engine.delete(key))
    }

    fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        keys_only: bool,
    ) -> Result<Listing> {
        self.named(self.engine.list(prefix, start_after, limit, keys_only))
    }

    fn read_many(&self, keys: &[String], with_value: bool) -> Result<Vec<Option<Versioned>>> {
        self.named(self.engine.read_many(keys, with_value))
    }

    fn delete_many(&self, keys: &[String]) -> Result<()> {
        self.named(self.engine.delete_many(keys))
    }

    fn delete_prefix(&self, prefix: &str, keep_prefix_key: bool) -> Result<u64> {
        self.named(self.engine.delete_prefix(prefix, keep_prefix_key))
    }

    fn write_batch(&self, writes: &[Write]) -> Result<()> {
        self.named(self.engine.write_batch(writes))
    }

    fn flush(&self) -> Result<()> {
        self.named(self.engine.flush())
    }

    fn destination(&self) -> String {
        self.engine.destination()
    }

    fn accepts(&self, key: &str, value: &[u8]) -> Result<()> {
        self.named(self.engine.accepts(key, value))
    }

    fn batch_limit(&self) -> BatchLimit {
        self.engine.batch_limit()
    }

    fn timeout(&self) -> Duration {
        self.engine.timeout()
    }

    fn is_remote(&self) -> bool {
        self.engine.is_remote()
    }
}
