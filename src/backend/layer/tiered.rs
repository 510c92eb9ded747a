//! `tiered`: layers read in order, the first hit winning, and written
//! all, the last first. The last layer holds every key and decides: reads
//! that give a version (`tether_read_ex`), conditions, counters and
//! listings go to it, and the layers before it are written after it, with
//! what it accepted. So a layer before the last is a cache of it: a write
//! that fails on the last changes nothing, and one that fails on an
//! earlier layer leaves the key written on every other layer and reports
//! that layer's error.
//!
//! Changes to one key through one handle are applied to the layers one
//! change at a time, so that an earlier layer ends with what the last
//! one holds; another process writing the same key through a tiered
//! backend of its own may leave an earlier layer behind (as any cache
//! without invalidation can be).

use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::first_error;
use crate::backend::{
    Access, Backend, BatchLimit, Condition, Deadline, Listing, Outcome, Ttl, Versioned, Write,
};
use crate::error::Result;

/// How many locks the keys are spread over: changes to keys of different
/// stripes go on side by side.
const STRIPES: usize = 64;

pub(crate) struct Tiered {
    name: String,
    /// In read order; the last decides.
    layers: Vec<Arc<dyn Backend>>,
    /// A change to a key holds its stripe's lock from the last layer to
    /// the first, so that two changes to one key reach every layer in the
    /// same order.
    stripes: Vec<Mutex<()>>,
}

impl Tiered {
    pub(crate) fn new(name: String, layers: Vec<Arc<dyn Backend>>) -> Tiered {
        assert!(!layers.is_empty(), "the configuration checks for layers");
        let stripes = (0..STRIPES).map(|_| Mutex::new(())).collect();
        Tiered {
            name,
            layers,
            stripes,
        }
    }

    /// The lock of `key`'s stripe.
    fn lock(&self, key: &str) -> MutexGuard<'_, ()> {
        let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one(key);
        let stripe = &self.stripes[hash as usize % STRIPES];
        // Nothing is guarded but the order: a panic elsewhere leaves it.
        stripe.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The layer that holds every key and decides.
    fn last(&self) -> &dyn Backend {
        &**self.layers.last().expect("a tiered backend has layers")
    }

    /// Runs `call` on each layer before the last, from the one nearest the
    /// last to the first, every one of them whatever fails, and reports the
    /// first failure.
    fn on_the_rest(&self, call: impl Fn(&dyn Backend) -> Result<()>) -> Result<()> {
        let rest = &self.layers[..self.layers.len() - 1];
        first_error(rest.iter().rev().map(|layer| call(&**layer)))
    }

    /// Runs `call` on every layer, the last first, and reports the first
    /// failure.
    fn on_every_layer(&self, call: impl Fn(&dyn Backend) -> Result<()>) -> Result<()> {
        first_error(self.layers.iter().rev().map(|layer| call(&**layer)))
    }
}

impl Backend for Tiered {
    fn name(&self) -> &str {
        &self.name
    }

    fn write_if(&self, key: &str, value: &[u8], condition: Condition, ttl: Ttl) -> Result<Outcome> {
        let _order = self.lock(key);
        let outcome = self.last().write_if(key, value, condition, ttl)?;
        if let Outcome::Done(_) = outcome {
            // A write that keeps the deadline refreshes a layer that holds
            // the key (with the same deadline); where a layer lacks it, it
            // stays absent, rather than outliving the last layer's key.
            let condition = match ttl {
                Ttl::Keep => Condition::Present,
                _ => Condition::Any,
            };
            self.on_the_rest(|layer| layer.write_if(key, value, condition, ttl).map(drop))?;
        }
        Ok(outcome)
    }

    fn read_versioned(
        &self,
        key: &str,
        with_value: bool,
        access: Access,
    ) -> Result<Option<Versioned>> {
        // Versions are the last layer's: the ones its conditions compare.
        let read = self.last().read_versioned(key, with_value, access)?;
        if access == Access::Use && read.as_ref().is_some_and(slides) {
            self.on_the_rest(|layer| layer.read_versioned(key, false, access).map(drop))?;
        }
        Ok(read)
    }

    fn read(&self, key: &str) -> Result<Option<Vec<u8>>> {
        for (at, layer) in self.layers.iter().enumerate() {
            if let Some(hit) = layer.read_versioned(key, true, Access::Use)? {
                if slides(&hit) {
                    // The layers behind hold the key too: their ttls
                    // restart with this one, or the last layer's key
                    // would expire while the cache keeps it alive.
                    let behind = &self.layers[at + 1..];
                    first_error(
                        behind
                            .iter()
                            .map(|layer| layer.read_versioned(key, false, Access::Use).map(drop)),
                    )?;
                }
                return Ok(Some(hit.value));
            }
        }
        Ok(None)
    }

    fn touch(&self, key: &str, deadline: Option<Deadline>) -> Result<Outcome> {
        let _order = self.lock(key);
        let outcome = self.last().touch(key, deadline)?;
        if let Outcome::Done(_) = outcome {
            self.on_the_rest(|layer| layer.touch(key, deadline).map(drop))?;
        }
        Ok(outcome)
    }

    fn delete_if(&self, key: &str, condition: Condition) -> Result<Outcome> {
        let _order = self.lock(key);
        let outcome = self.last().delete_if(key, condition)?;
        // Absent from the last layer with no condition: a copy left in an
        // earlier one (a write that failed half-way) goes too.
        if matches!(outcome, Outcome::Done(_)) || condition == Condition::Any {
            self.on_the_rest(|layer| layer.delete_if(key, Condition::Any).map(drop))?;
        }
        Ok(outcome)
    }

    fn write(&self, key: &str, value: &[u8]) -> Result<()> {
        let _order = self.lock(key);
        self.last().write(key, value)?;
        self.on_the_rest(|layer| layer.write(key, value))
    }

    fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        keys_only: bool,
    ) -> Result<Listing> {
        self.last().list(prefix, start_after, limit, keys_only)
    }

    /// The last layer's answers, as for a versioned read: a peek moves no
    /// ttl, so the layers before it have nothing to follow.
    fn read_many(&self, keys: &[String], with_value: bool) -> Result<Vec<Option<Versioned>>> {
        self.last().read_many(keys, with_value)
    }

    /// On every layer, the last first, as a delete; like `write_batch`,
    /// without the stripes' locks, which one call over many keys would
    /// hold all of.
    fn delete_many(&self, keys: &[String]) -> Result<()> {
        self.last().delete_many(keys)?;
        self.on_the_rest(|layer| layer.delete_many(keys))
    }

    fn delete_prefix(&self, prefix: &str, keep_prefix_key: bool) -> Result<u64> {
        let deleted = self.last().delete_prefix(prefix, keep_prefix_key)?;
        self.on_the_rest(|layer| layer.delete_prefix(prefix, keep_prefix_key).map(drop))?;
        Ok(deleted)
    }

    fn write_batch(&self, writes: &[Write]) -> Result<()> {
        self.last().write_batch(writes)?;
        self.on_the_rest(|layer| layer.write_batch(writes))
    }

    fn flush(&self) -> Result<()> {
        self.on_every_layer(|layer| layer.flush())
    }

    fn destination(&self) -> String {
        let layers: Vec<String> = self
            .layers
            .iter()
            .map(|layer| format!("{} ({})", layer.name(), layer.destination()))
            .collect();
        format!("tiered over {}", layers.join(", "))
    }

    fn accepts(&self, key: &str, value: &[u8]) -> Result<()> {
        self.on_every_layer(|layer| layer.accepts(key, value))
    }

    fn batch_limit(&self) -> BatchLimit {
        narrowest(&self.layers)
    }

    fn timeout(&self) -> Duration {
        longest_timeout(&self.layers)
    }

    fn is_remote(&self) -> bool {
        self.layers.iter().any(|layer| layer.is_remote())
    }
}

/// A batch every one of `members` takes in one call.
pub(super) fn narrowest(members: &[Arc<dyn Backend>]) -> BatchLimit {
    members
        .iter()
        .map(|member| member.batch_limit())
        .fold(BatchLimit::none(), |a, b| BatchLimit {
            writes: a.writes.min(b.writes),
            bytes: a.bytes.min(b.bytes),
            overhead: a.overhead.max(b.overhead),
        })
}

/// How long a call over `members` may wait: the longest of theirs.
pub(super) fn longest_timeout(members: &[Arc<dyn Backend>]) -> Duration {
    members
        .iter()
        .map(|member| member.timeout())
        .max()
        .unwrap_or_default()
}

/// Whether a read of this key restarted a sliding ttl, which every layer
/// holding the key must restart too.
fn slides(read: &Versioned) -> bool {
    read.deadline.is_some_and(|d| d.sliding_ms > 0)
}
