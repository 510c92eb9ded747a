//! The engines: the `Backend` trait, which holds everything that differs
//! from one engine to the next, and one folder per engine with its
//! configuration section and its backend.
//!
//! Keys here are stored keys (`bucket:key`), already validated. Each method
//! returns errors that name the backend and the key, since they reach the C
//! caller as they are.
//!
//! An engine joins with a folder of its own here, one line in
//! [`crate::config`]'s registry, and its page in docs/engines.md
//! (docs/design.md walks through it).

pub(crate) mod dynamodb;
pub(crate) mod etcd;
pub(crate) mod layer;
pub(crate) mod local;
#[cfg(any(feature = "etcd", feature = "dynamodb"))]
mod remote;

use std::sync::Arc;
use std::time::Duration;

use crate::config::{Config, Declared};
use crate::error::{Error, Result};

/// One queued write, as the worker hands it to a backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Write {
    pub key: String,
    pub value: Vec<u8>,
    /// When the key expires, fixed when the write was queued.
    pub deadline: Option<Deadline>,
}

/// When a key expires (docs/design.md, Expiry): absent for every call from
/// `at_ms` on, milliseconds since the Unix epoch, a wall-clock time since
/// it outlives the process and is shared with other processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadline {
    pub at_ms: u64,
    /// Above 0 for a sliding ttl: each read moves the deadline to this long
    /// after the read.
    pub sliding_ms: u64,
}

impl Deadline {
    /// Whether the key is gone at `now_ms`.
    pub fn has_passed(&self, now_ms: u64) -> bool {
        self.at_ms <= now_ms
    }

    /// The deadline a read at `now_ms` gives a sliding key; `None` for a
    /// fixed one, and for a read that only peeks ([`Access::Peek`]). A ms
    /// later than `now_ms` plus the ttl, since `now_ms` is rounded down:
    /// the key must not expire before its ttl has passed.
    pub fn slid(&self, now_ms: u64, access: Access) -> Option<Deadline> {
        (self.sliding_ms > 0 && access == Access::Use).then(|| Deadline {
            at_ms: now_ms.saturating_add(self.sliding_ms).saturating_add(1),
            sliding_ms: self.sliding_ms,
        })
    }
}

/// What a write does to the key's deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ttl {
    /// No deadline: a plain write clears an earlier one.
    Clear,
    /// The key keeps the deadline it has (`tether_update`, increments).
    Keep,
    /// This one.
    Set(Deadline),
}

/// Now, in milliseconds since the Unix epoch: what deadlines are compared
/// with.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Up to `limit` stored entries of one listing call, and whether more
/// matching keys remain after them.
#[derive(Debug, Default)]
pub struct Listing {
    pub entries: Vec<(String, Vec<u8>)>,
    pub more: bool,
}

/// What a write or a delete requires of the key, checked and applied in
/// one atomic step of the engine (docs/design.md, Versions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Condition {
    /// Nothing: a plain write or delete.
    Any,
    /// The key is absent: `Outcome::Conflict` when it is present.
    Absent,
    /// The key is present: `Outcome::Absent` when it is not.
    Present,
    /// The key's version is this one: `Outcome::Conflict` when it is
    /// another, `Outcome::Absent` when the key is absent.
    Version(u64),
}

/// What a conditional write or delete did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Applied: the key's new version (for a delete, the version removed);
    /// 0 where the engine did not read it (some deletes and touches).
    Done(u64),
    /// Nothing changed: the key is absent (the condition needed it, or a
    /// delete found nothing).
    Absent,
    /// Nothing changed: the key is present with another version than the
    /// condition needs.
    Conflict,
}

/// Whether a read is the caller's use of the key, which moves a sliding
/// deadline, or the library's own look at it (before a conditional change,
/// a counter's round, a counter's total), which must leave the key as it
/// is: on etcd moving a deadline rewrites the key and so changes its
/// version, and a call that changes nothing must not change that.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Use,
    Peek,
}

/// A value and its version, as [`Backend::read_versioned`] gives them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Versioned {
    /// Empty when the value was not asked for.
    pub value: Vec<u8>,
    pub version: u64,
    /// The key's deadline after the read (moved, for a sliding one the
    /// read used): what a copy keeps, and what a cache in front of the
    /// key slides along with it.
    pub deadline: Option<Deadline>,
}

/// How much one [`Backend::write_batch`] call may carry: at most `writes`
/// writes, whose keys and values plus `overhead` each add up to at most
/// `bytes`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BatchLimit {
    pub writes: usize,
    pub bytes: usize,
    pub overhead: usize,
}

impl BatchLimit {
    /// No limit: the whole batch goes in one call. (A function, not an
    /// associated constant, which cbindgen would put in the C header.)
    pub(crate) fn none() -> BatchLimit {
        BatchLimit {
            writes: usize::MAX,
            bytes: usize::MAX,
            overhead: 0,
        }
    }
}

/// A storage engine. Implementations are shared between the callers'
/// threads and the worker, so every method takes `&self`.
pub trait Backend: Send + Sync {
    /// The name calls use to address it: its engine's (`"local"`), or
    /// the name it is configured under in the `backends` section.
    fn name(&self) -> &str;

    /// Stores `value` under `key` with the deadline `ttl` says, where
    /// `condition` holds, checking and writing in one atomic step; gives the
    /// key's new version, which is larger than any it had, also before a
    /// delete. An expired key is absent to the condition.
    fn write_if(&self, key: &str, value: &[u8], condition: Condition, ttl: Ttl) -> Result<Outcome>;

    /// The value under `key` (only where `with_value`) and its version, or
    /// `None` (also once expired). A value another program wrote has a
    /// version too. An `Access::Use` of a key with a sliding deadline moves
    /// the deadline; an `Access::Peek` leaves the key untouched.
    fn read_versioned(
        &self,
        key: &str,
        with_value: bool,
        access: Access,
    ) -> Result<Option<Versioned>>;

    /// Gives a present key the deadline `deadline` (`None`: no expiry),
    /// keeping its value; `Outcome::Absent` when it is absent.
    fn touch(&self, _key: &str, _deadline: Option<Deadline>) -> Result<Outcome> {
        Err(Error::Unsupported(format!(
            "{} keeps no deadlines",
            self.name()
        )))
    }

    /// Removes `key` where `condition` (`Any` or `Version`) holds, in one
    /// atomic step.
    fn delete_if(&self, key: &str, condition: Condition) -> Result<Outcome>;

    /// Stores `value` under `key`, replacing any value.
    fn write(&self, key: &str, value: &[u8]) -> Result<()> {
        self.write_if(key, value, Condition::Any, Ttl::Clear)
            .map(drop)
    }

    /// The value under `key`, or `None`: the caller's use of the key.
    fn read(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .read_versioned(key, true, Access::Use)?
            .map(|v| v.value))
    }

    /// Replaces the value under `key` only where the key exists, atomically,
    /// keeping its deadline. Returns `false` when the key is absent (nothing
    /// is written).
    fn update(&self, key: &str, value: &[u8]) -> Result<bool> {
        let outcome = self.write_if(key, value, Condition::Present, Ttl::Keep)?;
        Ok(matches!(outcome, Outcome::Done(_)))
    }

    /// Adds `delta` to the counter stored under `key` as decimal text (an
    /// absent key counts from 0) in one atomic step, and gives the sum.
    /// `Conflict`, nothing written, when the stored value is not a decimal
    /// 64-bit integer or the sum overflows; `Unavailable` when other
    /// writers kept the step from going through within the engine's
    /// `timeout` (nothing written either). By default a loop of
    /// `read_versioned` (a peek) and `write_if` at the version read
    /// (`crate::counter::increment`); an engine with an increment of its
    /// own that keeps the value readable as text may override it.
    fn increment(&self, key: &str, delta: i64) -> Result<i64> {
        crate::counter::increment(self, key, delta)
    }

    /// Removes `key`. Returns `false` when there was nothing to remove.
    fn delete(&self, key: &str) -> Result<bool> {
        let outcome = self.delete_if(key, Condition::Any)?;
        Ok(matches!(outcome, Outcome::Done(_)))
    }

    /// Peeks at each of `keys` (distinct: DynamoDB refuses a batch that
    /// names a key twice; [`Access::Peek`]: no sliding ttl moves), as
    /// [`Backend::read_versioned`] would, giving one answer per key in
    /// their order. A copy reads a listing page's values and deadlines
    /// with it. By default one read per key; an engine with a batch read
    /// (etcd's transaction, DynamoDB's BatchGetItem) answers in a few
    /// round trips.
    fn read_many(&self, keys: &[String], with_value: bool) -> Result<Vec<Option<Versioned>>> {
        keys.iter()
            .map(|key| self.read_versioned(key, with_value, Access::Peek))
            .collect()
    }

    /// Removes each of `keys` (absent ones are no error). Not one atomic
    /// step: on a failure some may be gone. By default one delete per
    /// key; an engine with a batch delete uses it.
    fn delete_many(&self, keys: &[String]) -> Result<()> {
        keys.iter().try_for_each(|key| self.delete(key).map(drop))
    }

    /// Up to `limit` entries whose keys start with `prefix`, after
    /// `start_after` when given, in the engine's listing order. Only keys
    /// that `keys::listable` accepts are listed. With `keys_only` the
    /// values are left empty, and the engine fetches none where it can
    /// avoid it.
    fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        keys_only: bool,
    ) -> Result<Listing>;

    /// Removes every key that [`Backend::list`] would list for `prefix`
    /// (keys it leaves out stay), except the key `prefix` itself where
    /// `keep_prefix_key` (a bucket's listing leaves out the stored key
    /// `bucket:`); gives how many it removed. Acts on the store as it is:
    /// not one atomic step, and keys written meanwhile may stay or go.
    fn delete_prefix(&self, prefix: &str, keep_prefix_key: bool) -> Result<u64>;

    /// Applies queued writes with the engine's batch primitive. The worker
    /// passes writes within [`Backend::batch_limit`], each to a different
    /// key, each [`Backend::accepts`].
    fn write_batch(&self, writes: &[Write]) -> Result<()>;

    /// Makes everything written so far durable.
    fn flush(&self) -> Result<()>;

    /// What identifies where its writes go (a store's path, a cluster's
    /// endpoints, a table and its region): the outbox keeps queued writes
    /// for this destination and delivers them to no other.
    fn destination(&self) -> String;

    /// Fails with `TooLarge` when the engine would refuse this write for its
    /// size, so that a queued write is refused before it is queued.
    fn accepts(&self, _key: &str, _value: &[u8]) -> Result<()> {
        Ok(())
    }

    /// The engine's limits on one batch (etcd's `--max-txn-ops`, for one);
    /// the worker splits larger batches.
    fn batch_limit(&self) -> BatchLimit {
        BatchLimit::none()
    }

    /// How long a call waits on the engine before it fails with
    /// `Unavailable`; also how long flush and stop keep retrying queued
    /// writes while the engine is unreachable. Engines that cannot be
    /// unreachable keep the default.
    fn timeout(&self) -> Duration {
        Duration::ZERO
    }

    /// Whether the engine is a server the library reaches over the
    /// network: its calls can time out, and the worker keeps several of its
    /// batches in flight (`queue_batch.in_flight`), each waiting mostly on
    /// the network. An embedded engine's batches are applied one at a time.
    fn is_remote(&self) -> bool {
        self.timeout() > Duration::ZERO
    }
}

/// An engine's configuration section, as the registry in [`crate::config`]
/// sees it: a name, a check, and a way to open the engine's backend.
pub(crate) trait Section {
    /// The section's key in the configuration, and the backend's name.
    fn name(&self) -> &'static str;

    /// Checks values the types alone do not (ranges, names, files).
    fn validate(&self) -> Result<()>;

    /// Whether this build has the engine's code (its Cargo feature).
    fn is_built(&self) -> bool {
        true
    }

    /// Opens the backend; `None` when this build has no code for the
    /// engine.
    fn open(&self, shared: &mut Shared) -> Result<Option<Arc<dyn Backend>>>;
}

/// What the backends of one handle share: the tokio runtime, made by the
/// first remote backend that opens.
#[derive(Default)]
pub(crate) struct Shared {
    #[cfg(any(feature = "etcd", feature = "dynamodb"))]
    runtime: Option<Arc<remote::Runtime>>,
}

impl Shared {
    #[cfg(any(feature = "etcd", feature = "dynamodb"))]
    fn runtime(&mut self) -> Result<Arc<remote::Runtime>> {
        if let Some(runtime) = &self.runtime {
            return Ok(runtime.clone());
        }
        let runtime = Arc::new(remote::Runtime::new()?);
        self.runtime = Some(runtime.clone());
        Ok(runtime)
    }
}

/// Opens every configured backend this build has, in the configuration's
/// order (`Config::declared`); remote ones share one tokio runtime, and a
/// backend several layers are over is opened once. A layer over a backend
/// this build lacks is a configuration error.
pub(crate) fn open_all(config: &Config) -> Result<Vec<Arc<dyn Backend>>> {
    let declared = config.declared();
    let mut shared = Shared::default();
    let mut opened: Vec<Option<Arc<dyn Backend>>> = vec![None; declared.len()];
    for at in 0..declared.len() {
        open_one(&declared, at, &mut opened, &mut shared)?;
    }
    Ok(opened.into_iter().flatten().collect())
}

/// Opens `declared[at]`, and first the backends it is over; the
/// configuration was checked for cycles.
fn open_one(
    declared: &[(&str, Declared<'_>)],
    at: usize,
    opened: &mut [Option<Arc<dyn Backend>>],
    shared: &mut Shared,
) -> Result<Option<Arc<dyn Backend>>> {
    if let Some(backend) = &opened[at] {
        return Ok(Some(backend.clone()));
    }
    let (name, what) = &declared[at];
    let backend = match what {
        Declared::Engine(section) => match section.open(shared)? {
            Some(engine) if engine.name() == *name => Some(engine),
            Some(engine) => Some(Arc::new(layer::Renamed::new(name.to_string(), engine)) as _),
            None => None,
        },
        Declared::Layer(named) => {
            let mut members = Vec::new();
            for member in named.members() {
                let index = declared
                    .iter()
                    .position(|(n, _)| *n == member)
                    .ok_or_else(|| Error::Internal(format!("{name}: {member} is not declared")))?;
                let Some(backend) = open_one(declared, index, opened, shared)? else {
                    return Err(Error::Config(format!(
                        "backends.{name}: {member} is a backend this build of TetherDB lacks"
                    )));
                };
                members.push(backend);
            }
            Some(layer::open(name, named, members)?)
        }
    };
    opened[at] = backend.clone();
    Ok(backend)
}
