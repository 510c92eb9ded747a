//! `Db`: one handle over the configured backends and their queue.
//! Routes each call to its backend; the FFI layer is a thin skin over it.

use std::fmt;

use crate::backend::{self, Access, Backend, Condition, Deadline, Outcome, Ttl, Write};
use crate::config::{Config, Declared};
use crate::counter;
use crate::error::{Error, Quoted, Result};
use crate::fork;
use crate::keys::{self, StoredKey};
use crate::log::Logger;
use crate::queue::outbox::{self, Outbox};
use crate::queue::{Backends, Queue};

/// One listed entry: the key without its bucket part, and the value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub value: Vec<u8>,
}

/// One page of a listing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Page {
    pub entries: Vec<Entry>,
    /// Pass as `start_after` for the next page; `None` on the last page.
    pub next: Option<String>,
}

/// One page of a listing of keys alone ([`Db::list_keys`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyPage {
    /// The keys, without the bucket part.
    pub keys: Vec<String>,
    /// Pass as `start_after` for the next page; `None` on the last page.
    pub next: Option<String>,
}

/// A value and the whole milliseconds left before its key expires (`None`
/// for a key without a deadline): what [`Db::peek_with_ttl`] gives.
pub type Peeked = (Vec<u8>, Option<u64>);

/// How [`Db::write_ex`] writes: the flags and arguments of
/// `tether_write_ex` (docs/design.md, Versions).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// Hand the write to the queue (`TETHER_QUEUE`).
    pub queue: bool,
    /// Only where the key is absent (`TETHER_IF_ABSENT`).
    pub if_absent: bool,
    /// Only where the key's version is this one (`TETHER_IF_VERSION`).
    pub if_version: Option<u64>,
    /// Each read restarts the key's ttl (`TETHER_SLIDING`).
    pub sliding: bool,
    /// Expire the key this many milliseconds after the write; 0 never.
    pub ttl_ms: u64,
}

/// A handle on the configured backends. `Send + Sync`: share it between
/// threads freely. Dropping it stops the worker after applying every queued
/// write; [`Db::close`] does the same and reports what failed.
pub struct Db {
    backends: Backends,
    default: usize,
    /// Configured backends whose engine this build lacks.
    not_built: Vec<String>,
    queue: Queue,
    log: Logger,
    /// The process that opened it, and its generation of forks
    /// (`crate::fork`): after fork(), a child has none of its threads, and
    /// any lock it takes may have been held by one of them.
    owner: u32,
    forks: u64,
}

impl Db {
    /// Opens every configured backend and, unless `queue_batch.autostart`
    /// is false, starts the worker.
    pub fn open(config: Config) -> Result<Db> {
        let log = Logger::new(config.logging);
        let default_name = config.default_backend_name()?.to_owned();
        let backends = backend::open_all(&config)?;
        let not_built: Vec<String> = config
            .declared()
            .into_iter()
            .filter_map(|(name, declared)| match declared {
                Declared::Engine(section) if !section.is_built() => {
                    log.warn(format_args!(
                        "backend {name} is accepted, but this build has no {} engine",
                        section.name()
                    ));
                    Some(name.to_owned())
                }
                _ => None,
            })
            .collect();
        let default = backends
            .iter()
            .position(|b| b.name() == default_name)
            .ok_or_else(|| {
                Error::Config(format!(
                    "default backend {default_name:?} is not built in this version of TetherDB"
                ))
            })?;
        let backends: Backends = backends.into();
        let outbox = match config.queue_batch.durable {
            true => {
                let path = match config.outbox_path() {
                    Some(path) => path,
                    None => outbox::default_path(&backends)?,
                };
                let max_bytes = config.queue_batch.outbox_max_bytes;
                Some(Outbox::open(&path, max_bytes, &backends, log)?)
            }
            false => None,
        };
        let queue = Queue::new(config.queue_batch.clone(), &backends, outbox, log)?;
        if config.queue_batch.autostart {
            queue.start()?;
        }
        log.info(format_args!(
            "opened backends {} (default {default_name})",
            backends
                .iter()
                .map(|b| b.name())
                .collect::<Vec<_>>()
                .join(", ")
        ));
        Ok(Db {
            backends,
            default,
            not_built,
            queue,
            log,
            owner: std::process::id(),
            forks: fork::generation(),
        })
    }

    /// Opens the configuration given as JSON; `None` or `"{}"` opens the
    /// embedded default.
    pub fn open_json(json: Option<&str>) -> Result<Db> {
        Db::open(Config::from_json(json)?)
    }

    /// Stores `value`, replacing any value, before it returns.
    pub fn write(
        &self,
        backend: Option<&str>,
        bucket: Option<&str>,
        key: &str,
        value: &[u8],
    ) -> Result<()> {
        let (_, backend, key) = self.target(backend, bucket, key)?;
        backend.write(&key, value)
    }

    /// Hands the write to the worker; waits only while the queue is full.
    /// Fails with [`Error::NotRunning`] while the worker is stopped.
    pub fn write_queued(
        &self,
        backend: Option<&str>,
        bucket: Option<&str>,
        key: &str,
        value: &[u8],
    ) -> Result<()> {
        self.queue_write(backend, bucket, key, value, None)
    }

    /// Queues a write whose key expires at `deadline`: fixed now, so a
    /// write the worker applies after it is not applied at all.
    fn queue_write(
        &self,
        backend: Option<&str>,
        bucket: Option<&str>,
        key: &str,
        value: &[u8],
        deadline: Option<Deadline>,
    ) -> Result<()> {
        let (index, backend, key) = self.target(backend, bucket, key)?;
        backend.accepts(&key, value)?;
        let write = Write {
            key: key.to_owned(),
            value: value.to_vec(),
            deadline,
        };
        self.queue.push(index, write)
    }

    /// Stores `value` as `options` say; gives the key's new version, `None`
    /// for a queued write. A failed condition changes nothing: the key
    /// present with `if_absent`, or with another version than `if_version`,
    /// is [`Error::Conflict`]; absent with `if_version`, [`Error::NotFound`].
    /// Both conditions at once, or either with `queue`, are
    /// [`Error::InvalidArgument`]. A ttl gives the key a deadline that long
    /// after this call (docs/design.md, Expiry).
    pub fn write_ex(
        &self,
        backend: Option<&str>,
        bucket: Option<&str>,
        key: &str,
        value: &[u8],
        options: &WriteOptions,
    ) -> Result<Option<u64>> {
        let subject = || Target {
            backend,
            bucket,
            key,
        };
        let conditional = options.if_absent || options.if_version.is_some();
        if options.if_absent && options.if_version.is_some() {
            return Err(
                Error::invalid("TETHER_IF_ABSENT and TETHER_IF_VERSION together").about(subject()),
            );
        }
        if options.queue && conditional {
            return Err(Error::invalid(
                "a condition (TETHER_IF_ABSENT, TETHER_IF_VERSION) with TETHER_QUEUE: a queued \
                 write is checked against nothing",
            )
            .about(subject()));
        }
        if options.sliding && options.ttl_ms == 0 {
            return Err(Error::invalid("TETHER_SLIDING without a ttl_ms").about(subject()));
        }
        let ttl = match options.ttl_ms {
            0 => Ttl::Clear,
            ttl_ms => Ttl::Set(deadline(ttl_ms, options.sliding).map_err(|e| e.about(subject()))?),
        };
        if options.queue {
            let deadline = match ttl {
                Ttl::Set(deadline) => Some(deadline),
                _ => None,
            };
            return self
                .queue_write(backend, bucket, key, value, deadline)
                .map(|()| None);
        }
        let condition = match (options.if_absent, options.if_version) {
            (true, _) => Condition::Absent,
            (false, Some(version)) => Condition::Version(version),
            (false, None) => Condition::Any,
        };
        let (_, engine, stored) = self.target(backend, bucket, key)?;
        settle(engine, &stored, condition, || {
            engine.write_if(&stored, value, condition, ttl)
        })
        .map(Some)
    }

    /// The stored value (empty unless `with_value`) and its version;
    /// [`Error::NotFound`] when the key is absent. Without the value, it
    /// only checks that the key exists.
    pub fn read_ex(
        &self,
        backend: Option<&str>,
        bucket: Option<&str>,
        key: &str,
        with_value: bool,
    ) -> Result<(Vec<u8>, u64)> {
        let (_, engine, key) = self.target(backend, bucket, key)?;
        let read = engine
            .read_versioned(&key, with_value, Access::Use)?
            .ok_or_else(|| Error::not_found(engine.name(), &key))?;
        Ok((read.value, read.version))
    }

    /// The stored value and the milliseconds left before the key expires
    /// (`None` for a key without a deadline), read as a peek: a sliding
    /// ttl is not restarted. What an export keeps of a key.
    /// [`Error::NotFound`] when the key is absent.
    pub fn peek_with_ttl(
        &self,
        backend: Option<&str>,
        bucket: Option<&str>,
        key: &str,
    ) -> Result<Peeked> {
        let (_, engine, key) = self.target(backend, bucket, key)?;
        let read = engine
            .read_versioned(&key, true, Access::Peek)?
            .ok_or_else(|| Error::not_found(engine.name(), &key))?;
        Ok((read.value, read.deadline.map(time_left)))
    }

    /// [`Db::peek_with_ttl`] of each of `keys` (distinct), `None` for one
    /// that is absent, in a few requests where the engine reads in batches
    /// (an etcd transaction, DynamoDB's BatchGetItem): what an export
    /// reads for a page of keys.
    pub fn peek_many_with_ttl(
        &self,
        backend: Option<&str>,
        bucket: Option<&str>,
        keys: &[String],
    ) -> Result<Vec<Option<Peeked>>> {
        let (_, engine) = self.backend(backend)?;
        let stored = keys
            .iter()
            .map(|key| Ok(keys::stored(bucket, key)?.to_string()))
            .collect::<Result<Vec<String>>>()
            .map_err(|e| e.about(engine.name()))?;
        let reads = engine.read_many(&stored, true)?;
        Ok(reads
            .into_iter()
            .map(|read| read.map(|read| (read.value, read.deadline.map(time_left))))
            .collect())
    }

    /// Removes the key, only where its version is `if_version` when given:
    /// [`Error::Conflict`] when it is another (nothing is removed),
    /// [`Error::NotFound`] when the key is absent.
    pub fn delete_ex(
        &self,
        backend: Option<&str>,
        bucket: Option<&str>,
        key: &str,
        if_version: Option<u64>,
    ) -> Result<()> {
        let (_, engine, key) = self.target(backend, bucket, key)?;
        let condition = if_version.map_or(Condition::Any, Condition::Version);
        settle(engine, &key, condition, || {
            engine.delete_if(&key, condition)
        })
        .map(drop)
    }

    /// Gives a present key a deadline `ttl_ms` from now (0: none), keeping
    /// its value; [`Error::NotFound`] when it is absent. The deadline is a
    /// fixed one: a sliding key stops sliding.
    pub fn touch(
        &self,
        backend: Option<&str>,
        bucket: Option<&str>,
        key: &str,
        ttl_ms: u64,
    ) -> Result<()> {
        let (_, engine, stored) = self.target(backend, bucket, key)?;
        let deadline = match ttl_ms {
            0 => None,
            _ => Some(deadline(ttl_ms, false).map_err(|e| {
                e.about(Target {
                    backend,
                    bucket,
                    key,
                })
            })?),
        };
        match engine.touch(&stored, deadline)? {
            Outcome::Done(_) => Ok(()),
            Outcome::Absent | Outcome::Conflict => Err(Error::not_found(engine.name(), &stored)),
        }
    }

    /// Replaces the value only where the key exists, keeping its deadline;
    /// [`Error::NotFound`] otherwise.
    pub fn update(
        &self,
        backend: Option<&str>,
        bucket: Option<&str>,
        key: &str,
        value: &[u8],
    ) -> Result<()> {
        let (_, backend, key) = self.target(backend, bucket, key)?;
        match backend.update(&key, value)? {
            true => Ok(()),
            false => Err(Error::not_found(backend.name(), &key)),
        }
    }

    /// The stored value; [`Error::NotFound`] when the key is absent.
    pub fn read(&self, backend: Option<&str>, bucket: Option<&str>, key: &str) -> Result<Vec<u8>> {
        let (_, backend, key) = self.target(backend, bucket, key)?;
        backend
            .read(&key)?
            .ok_or_else(|| Error::not_found(backend.name(), &key))
    }

    /// Removes the key; [`Error::NotFound`] when there was nothing to remove.
    pub fn delete(&self, backend: Option<&str>, bucket: Option<&str>, key: &str) -> Result<()> {
        let (_, backend, key) = self.target(backend, bucket, key)?;
        match backend.delete(&key)? {
            true => Ok(()),
            false => Err(Error::not_found(backend.name(), &key)),
        }
    }

    /// One page of at most `page_size` entries of `bucket` whose keys start
    /// with `prefix`, after the key `start_after` (both without the bucket
    /// part). Without a bucket, every stored key is listed as it is stored.
    pub fn list(
        &self,
        backend: Option<&str>,
        bucket: Option<&str>,
        prefix: Option<&str>,
        start_after: Option<&str>,
        page_size: usize,
    ) -> Result<Page> {
        self.page(backend, bucket, prefix, start_after, page_size, false)
    }

    /// One page of the keys [`Db::list`] would list, without their values,
    /// which the engine fetches not at all where it can avoid it (etcd,
    /// DynamoDB), and does not copy where it cannot (`local`).
    pub fn list_keys(
        &self,
        backend: Option<&str>,
        bucket: Option<&str>,
        prefix: Option<&str>,
        start_after: Option<&str>,
        page_size: usize,
    ) -> Result<KeyPage> {
        let page = self.page(backend, bucket, prefix, start_after, page_size, true)?;
        let keys = page.entries.into_iter().map(|entry| entry.key).collect();
        Ok(KeyPage {
            keys,
            next: page.next,
        })
    }

    /// Removes every key of `bucket` that starts with `prefix`: exactly the
    /// keys [`Db::list`] lists with the same bucket and prefix (those it
    /// leaves out stay). Gives how many it removed. Without a bucket, the
    /// stored keys starting with `prefix`; no bucket and no prefix is
    /// [`Error::InvalidArgument`], so that no call wipes a store by
    /// accident.
    ///
    /// It acts on the store as it is: a queued write not yet applied is
    /// applied later and writes its key again, as after [`Db::delete`]. It
    /// is not one atomic step: a failure may leave part of the keys
    /// removed.
    pub fn delete_prefix(
        &self,
        backend: Option<&str>,
        bucket: Option<&str>,
        prefix: Option<&str>,
    ) -> Result<u64> {
        let subject = |backend| Listing {
            action: "deleting",
            backend,
            bucket,
            prefix,
        };
        let (_, engine) = self
            .backend(backend)
            .map_err(|e| e.about(subject(backend)))?;
        let named = Some(engine.name());
        let bucket = keys::bucket(bucket).map_err(|e| e.about(subject(named)))?;
        let prefix = prefix.unwrap_or("");
        if bucket.is_none() && prefix.is_empty() {
            return Err(Error::invalid(
                "neither a bucket nor a prefix: that would delete every key of the backend",
            )
            .about(subject(named)));
        }
        let stored = keys::list_prefix(bucket, prefix);
        // The stored key `bucket:` itself, which a bucket's listing leaves
        // out, stays.
        let keep_prefix_key = keys::in_bucket(bucket, &stored).is_none();
        engine.delete_prefix(&stored, keep_prefix_key)
    }

    /// One page of `list`, or of `list_keys` (with `keys_only`, whose
    /// values are empty).
    fn page(
        &self,
        backend: Option<&str>,
        bucket: Option<&str>,
        prefix: Option<&str>,
        start_after: Option<&str>,
        page_size: usize,
        keys_only: bool,
    ) -> Result<Page> {
        let subject = || Listing {
            action: "listing",
            backend,
            bucket,
            prefix,
        };
        if page_size == 0 {
            return Err(Error::invalid("page_size is 0").about(subject()));
        }
        let (_, backend) = self.backend(backend).map_err(|e| e.about(subject()))?;
        let bucket = keys::bucket(bucket).map_err(|e| e.about(subject()))?;
        let prefix = keys::list_prefix(bucket, prefix.unwrap_or(""));
        let start_after = start_after.map(|after| keys::list_prefix(bucket, after));
        // A bucket's listing leaves out the stored key `bucket:` (an empty
        // key, which no call can name with the bucket): one more is
        // fetched so that a full page stays full.
        let wanted = match bucket {
            Some(_) => page_size.saturating_add(1),
            None => page_size,
        };
        let listing = backend.list(&prefix, start_after.as_deref(), wanted, keys_only)?;
        let mut entries: Vec<Entry> = listing
            .entries
            .into_iter()
            .filter_map(|(key, value)| {
                let key = keys::in_bucket(bucket, &key)?.to_owned();
                Some(Entry { key, value })
            })
            .collect();
        let more = listing.more || entries.len() > page_size;
        entries.truncate(page_size);
        let next = match more {
            true => entries.last().map(|e| e.key.clone()),
            false => None,
        };
        Ok(Page { entries, next })
    }

    /// Starts the worker; does nothing when it runs already.
    pub fn start(&self) -> Result<()> {
        self.queue.start()
    }

    /// Applies every queued write, then stops the worker. Reports queued
    /// writes that failed since the last report. Does nothing when stopped.
    pub fn stop(&self) -> Result<()> {
        self.queue.stop()
    }

    /// Waits until every write queued before the call is applied and every
    /// backend has made its writes durable; reports the first failure.
    pub fn flush(&self) -> Result<()> {
        let queued = self.queue.flush();
        let durable = self.backends.iter().try_for_each(|b| b.flush());
        queued.and(durable)
    }

    /// Per backend, the writes queued, applied, retried, failed and
    /// pending, the batches sent, and the age of the oldest pending write;
    /// and the outbox. The JSON `tether_stats` returns.
    pub fn stats(&self) -> serde_json::Value {
        self.queue.stats()
    }

    /// Whether the worker is running.
    pub fn is_running(&self) -> bool {
        self.queue.is_running()
    }

    /// The names of the backends of this handle.
    pub fn backend_names(&self) -> Vec<&str> {
        self.backends.iter().map(|b| b.name()).collect()
    }

    /// Fails, before touching anything, when called in another process
    /// than the one that opened the handle: in a child of fork(), whose
    /// copy of the handle has no worker, and whose locks may have been held
    /// by threads that the child does not have.
    pub fn check_owner(&self) -> Result<()> {
        if fork::generation() == self.forks {
            return Ok(());
        }
        let here = std::process::id();
        Err(Error::invalid(format!(
            "this handle was opened by process {} and cannot be used in process {here}, a \
             child of fork(): open a handle of its own in the child",
            self.owner
        )))
    }

    /// Stops the worker after applying every queued write, makes every
    /// write durable and releases the backends. Reports the first failure;
    /// the handle is gone either way. In a child of fork() it releases
    /// nothing (the parent's threads are not there to end) and fails.
    pub fn close(self) -> Result<()> {
        if let Err(error) = self.check_owner() {
            std::mem::forget(self);
            return Err(error);
        }
        let stopped = self.stop();
        let flushed = self.flush();
        self.log.info(format_args!("closed"));
        stopped.and(flushed)
    }

    /// The backend a call goes to, and its stored key; argument errors say
    /// which backend and key they are about.
    fn target<'k>(
        &self,
        backend: Option<&str>,
        bucket: Option<&str>,
        key: &'k str,
    ) -> Result<(usize, &dyn Backend, StoredKey<'k>)> {
        let subject = |backend| Target {
            backend,
            bucket,
            key,
        };
        let (index, engine) = self.backend(backend).map_err(|e| e.about(subject(None)))?;
        let key = keys::stored(bucket, key).map_err(|e| e.about(subject(Some(engine.name()))))?;
        Ok((index, engine, key))
    }

    pub(crate) fn backend(&self, name: Option<&str>) -> Result<(usize, &dyn Backend)> {
        let index = match name {
            None | Some("") => self.default,
            Some(name) => self
                .backends
                .iter()
                .position(|b| b.name() == name)
                .ok_or_else(|| self.unknown_backend(name))?,
        };
        Ok((index, &*self.backends[index]))
    }

    fn unknown_backend(&self, name: &str) -> Error {
        Error::UnknownBackend(if self.not_built.iter().any(|n| n == name) {
            format!("backend {name:?} is configured, but this build of TetherDB lacks its engine")
        } else {
            format!(
                "backend {} is not configured in this handle (configured: {})",
                Quoted(name),
                self.backend_names().join(", ")
            )
        })
    }
}

/// Counters (docs/design.md, Counters): decimal text under a key, or split
/// over `shards` keys named `KEY#shard0`… in the counter's bucket.
impl Db {
    /// Adds `delta` to the counter under `key` atomically (an absent key
    /// counts from 0) and gives its value after the call. With `shards`
    /// above 1, adds to one of that many shard keys, at random, and gives
    /// the total read after it only `with_total` (it costs a read of each
    /// shard); should that read fail, the increment stays applied and the
    /// error says so. A stored value that is not a decimal 64-bit integer,
    /// or a sum beyond one, is [`Error::Conflict`] and changes nothing;
    /// `shards` above [`crate::ffi::TETHER_MAX_SHARDS`] is
    /// [`Error::InvalidArgument`].
    pub fn increment(
        &self,
        backend: Option<&str>,
        bucket: Option<&str>,
        key: &str,
        delta: i64,
        shards: u32,
        with_total: bool,
    ) -> Result<Option<i64>> {
        let (_, engine, stored) = self.counter(backend, bucket, key, shards)?;
        if shards <= 1 {
            return engine.increment(&stored, delta).map(Some);
        }
        let index = counter::random_below(u64::from(shards)) as u32;
        let shard_key = counter::shard_key(key, index);
        let shard = keys::stored(bucket, &shard_key)?;
        engine.increment(&shard, delta)?;
        if !with_total {
            return Ok(None);
        }
        total(engine, bucket, key, &stored, shards)
            .map(Some)
            .map_err(|e| e.after(format!("{delta} was added to {}", Quoted(&shard))))
    }

    /// The counter under `key` (`shards` 0 or 1), or the sum of its
    /// `shards` shard keys (the key itself not included); an absent key
    /// counts 0. [`Error::Conflict`] when a value is not a decimal 64-bit
    /// integer or the sum is beyond one.
    pub fn counter_total(
        &self,
        backend: Option<&str>,
        bucket: Option<&str>,
        key: &str,
        shards: u32,
    ) -> Result<i64> {
        let (_, engine, stored) = self.counter(backend, bucket, key, shards)?;
        match shards {
            0 | 1 => counter::read(engine, &stored),
            _ => total(engine, bucket, key, &stored, shards),
        }
    }

    /// The backend and stored key of a counter, its shards checked.
    fn counter<'k>(
        &self,
        backend: Option<&str>,
        bucket: Option<&str>,
        key: &'k str,
        shards: u32,
    ) -> Result<(usize, &dyn Backend, StoredKey<'k>)> {
        let target = self.target(backend, bucket, key)?;
        if shards > counter::MAX_SHARDS {
            let cause = format!(
                "shards is {shards}, above the most a counter may have, {}",
                counter::MAX_SHARDS
            );
            return Err(Error::invalid(cause).about(Target {
                backend: Some(target.1.name()),
                bucket,
                key,
            }));
        }
        Ok(target)
    }
}

/// The sum of the `shards` shard keys of the counter `key` (stored as
/// `stored`).
fn total(
    engine: &dyn Backend,
    bucket: Option<&str>,
    key: &str,
    stored: &str,
    shards: u32,
) -> Result<i64> {
    let mut sum = 0i128;
    for index in 0..shards {
        let shard_key = counter::shard_key(key, index);
        sum += i128::from(counter::read(engine, &keys::stored(bucket, &shard_key)?)?);
    }
    i64::try_from(sum).map_err(|_| {
        Error::conflict(
            engine.name(),
            stored,
            format!("the total of its {shards} shards, {sum}, is beyond a 64-bit integer"),
        )
    })
}

/// The error of a failed condition.
/// What a change under `condition` came to: the key's version, or the
/// error a failed condition is. No key has version 0 (etcd would take it for
/// "absent"): that condition is settled by a read, not by a change.
fn settle(
    engine: &dyn Backend,
    key: &str,
    condition: Condition,
    change: impl FnOnce() -> Result<Outcome>,
) -> Result<u64> {
    let outcome = match condition {
        Condition::Version(0) => match engine.read_versioned(key, false, Access::Peek)? {
            Some(_) => Outcome::Conflict,
            None => Outcome::Absent,
        },
        _ => change()?,
    };
    match outcome {
        Outcome::Done(version) => Ok(version),
        Outcome::Absent => Err(Error::not_found(engine.name(), key)),
        Outcome::Conflict => Err(conflict(engine, key, condition)),
    }
}

fn conflict(engine: &dyn Backend, key: &str, condition: Condition) -> Error {
    let cause = match condition {
        Condition::Version(version) => format!("the key's version is not {version}"),
        _ => "the key is present".to_owned(),
    };
    Error::conflict(engine.name(), key, cause)
}

/// What a call is about, as its error messages name it:
/// `local: key "k" in bucket "b"`.
struct Target<'a> {
    backend: Option<&'a str>,
    bucket: Option<&'a str>,
    key: &'a str,
}

impl fmt::Display for Target<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(backend) = self.backend {
            write!(f, "{backend}: ")?;
        }
        write!(f, "key {}", Quoted(self.key))?;
        match self.bucket {
            Some(bucket) if !bucket.is_empty() => write!(f, " in bucket {}", Quoted(bucket)),
            _ => Ok(()),
        }
    }
}

/// What a listing or a deletion by prefix is about: `listing bucket "b"
/// with prefix "p"`, `deleting all keys with prefix "p"`.
struct Listing<'a> {
    /// "listing" or "deleting".
    action: &'static str,
    backend: Option<&'a str>,
    bucket: Option<&'a str>,
    prefix: Option<&'a str>,
}

impl fmt::Display for Listing<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(backend) = self.backend.filter(|b| !b.is_empty()) {
            write!(f, "{backend}: ")?;
        }
        match self.bucket.filter(|b| !b.is_empty()) {
            Some(bucket) => write!(f, "{} bucket {}", self.action, Quoted(bucket))?,
            None => write!(f, "{} all keys", self.action)?,
        }
        match self.prefix.filter(|p| !p.is_empty()) {
            Some(prefix) => write!(f, " with prefix {}", Quoted(prefix)),
            None => Ok(()),
        }
    }
}

/// The whole ms surely left before `deadline`: now rounded up, as
/// [`deadline`] rounds it (a ttl written and peeked within one ms is the
/// ttl, not a ms more); at least 1, since a key read as present has time
/// left.
fn time_left(deadline: Deadline) -> u64 {
    deadline.at_ms.saturating_sub(now_ms_rounded_up()).max(1)
}

/// Now in ms since the Unix epoch, rounded up (deadlines' clock).
fn now_ms_rounded_up() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros().div_ceil(1000) as u64)
}

/// The deadline `ttl_ms` from now; [`Error::InvalidArgument`] when it is
/// beyond what every engine can hold (DynamoDB's numbers and etcd's lease
/// ids are signed 64-bit): a year 292 million AD is no deadline.
fn deadline(ttl_ms: u64, sliding: bool) -> Result<Deadline> {
    const LATEST: u64 = i64::MAX as u64;
    // Now rounded up: a key is absent once the time in whole ms reaches
    // its deadline, which must not come before `ttl_ms` has passed.
    match now_ms_rounded_up().checked_add(ttl_ms) {
        Some(at_ms) if at_ms <= LATEST => Ok(Deadline {
            at_ms,
            sliding_ms: if sliding { ttl_ms } else { 0 },
        }),
        _ => Err(Error::invalid(format!(
            "ttl_ms {ttl_ms} puts the deadline past what engines can hold"
        ))),
    }
}
