//! `random`: each call goes to one member, chosen at random, as the seed's
//! `RandomChoiceDict` spreads reads over replicas. A batch of queued writes
//! is one call: it goes to one member whole.

use std::sync::Arc;
use std::time::Duration;

use super::first_error;
use super::tiered::{longest_timeout, narrowest};
use crate::backend::{
    Access, Backend, BatchLimit, Condition, Deadline, Listing, Outcome, Ttl, Versioned, Write,
};
use crate::counter::random_below;
use crate::error::Result;

pub(crate) struct Random {
    name: String,
    members: Vec<Arc<dyn Backend>>,
}

impl Random {
    pub(crate) fn new(name: String, members: Vec<Arc<dyn Backend>>) -> Random {
        assert!(!members.is_empty(), "the configuration checks for members");
        Random { name, members }
    }

    fn one(&self) -> &dyn Backend {
        let at = random_below(self.members.len() as u64) as usize;
        &*self.members[at]
    }
}

impl Backend for Random {
    fn name(&self) -> &str {
        &self.name
    }

    fn write_if(&self, key: &str, value: &[u8], condition: Condition, ttl: Ttl) -> Result<Outcome> {
        self.one().write_if(key, value, condition, ttl)
    }

    fn read_versioned(
        &self,
        key: &str,
        with_value: bool,
        access: Access,
    ) -> Result<Option<Versioned>> {
        self.one().read_versioned(key, with_value, access)
    }

    fn read(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.one().read(key)
    }

    fn touch(&self, key: &str, deadline: Option<Deadline>) -> Result<Outcome> {
        self.one().touch(key, deadline)
    }

    fn delete_if(&self, key: &str, condition: Condition) -> Result<Outcome> {
        self.one().delete_if(key, condition)
    }

    fn write(&self, key: &str, value: &[u8]) -> Result<()> {
        self.one().write(key, value)
    }

    fn update(&self, key: &str, value: &[u8]) -> Result<bool> {
        self.one().update(key, value)
    }

    fn increment(&self, key: &str, delta: i64) -> Result<i64> {
        self.one().increment(key, delta)
    }

    fn delete(&self, key: &str) -> Result<bool> {
        self.one().delete(key)
    }

    fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        keys_only: bool,
    ) -> Result<Listing> {
        self.one().list(prefix, start_after, limit, keys_only)
    }

    fn read_many(&self, keys: &[String], with_value: bool) -> Result<Vec<Option<Versioned>>> {
        self.one().read_many(keys, with_value)
    }

    fn delete_many(&self, keys: &[String]) -> Result<()> {
        self.one().delete_many(keys)
    }

    fn delete_prefix(&self, prefix: &str, keep_prefix_key: bool) -> Result<u64> {
        self.one().delete_prefix(prefix, keep_prefix_key)
    }

    fn write_batch(&self, writes: &[Write]) -> Result<()> {
        self.one().write_batch(writes)
    }

    fn flush(&self) -> Result<()> {
        first_error(self.members.iter().map(|member| member.flush()))
    }

    fn destination(&self) -> String {
        let members: Vec<String> = self
            .members
            .iter()
            .map(|member| format!("{} ({})", member.name(), member.destination()))
            .collect();
        format!("random over {}", members.join(", "))
    }

    fn accepts(&self, key: &str, value: &[u8]) -> Result<()> {
        first_error(self.members.iter().map(|member| member.accepts(key, value)))
    }

    fn batch_limit(&self) -> BatchLimit {
        narrowest(&self.members)
    }

    fn timeout(&self) -> Duration {
        longest_timeout(&self.members)
    }

    fn is_remote(&self) -> bool {
        self.members.iter().any(|member| member.is_remote())
    }
}
