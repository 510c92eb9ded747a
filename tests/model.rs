//! Model-based test (issue 7, point 5; issue 14, point 7): random
//! sequences of write, queued write, update, delete, read, increment, list,
//! keys-only list, delete by prefix, flush, stop and start, and of
//! `tether_write_ex` (TETHER_IF_ABSENT, TETHER_IF_VERSION, TETHER_QUEUE,
//! TETHER_SLIDING, ttls, `out_version`), `tether_read_ex` (with the value,
//! and with both value outputs NULL), `tether_delete_ex`
//! (TETHER_IF_VERSION) and `tether_touch`, alone and as read-then-write
//! loops, issued through the C ABI by several threads on one handle, each
//! checked against an in-memory model of what docs/c-api.md allows. Runs
//! on `local` (a temporary directory) and on a real etcd on loopback ports.
//!
//! How the model stays exact under concurrency:
//!
//! - Each thread owns a bucket, so only it changes its keys. What other
//!   threads do to its keys is limited to their `flush`, `stop` and `start`,
//!   which only make its queued writes land sooner (or refuse new ones).
//! - A key is modelled as a set of possible worlds: (stored value, what is
//!   known of its version, its expiry, how many of the key's queued writes
//!   have landed). Before each observation a world may apply any prefix of
//!   its queued writes (they land in order, at any moment), and what the
//!   call returns keeps only the worlds that agree with it. A read of a key
//!   with a queued write pending may thus see the old value or any newer
//!   queued one — nothing else; a direct write racing a pending queued
//!   write to the same key may be overwritten by it later (the contract
//!   orders queued writes among themselves only), and the next observation
//!   tells which happened.
//! - Versions: a world knows the version of its value exactly once a call
//!   gave it (`out_version`, `tether_read_ex`) and until the key changes;
//!   after a plain write, update, increment or a queued write landing only
//!   that it is above the last one, and after a touch or a read of a
//!   sliding key that it is at least that (etcd puts the key again, local
//!   keeps its version). A version given must fit: equal to a known one,
//!   above any the key had before a write. TETHER_IF_VERSION at a version
//!   is OK only in worlds where the key may be at it, TETHER_CONFLICT only
//!   where it may be at another, TETHER_NOT_FOUND only where it is absent;
//!   TETHER_IF_ABSENT is OK only where it is absent, TETHER_CONFLICT only
//!   where present; a failed condition changes nothing. `out_version` is
//!   written only on OK, never for a queued write; `tether_read_ex` writes
//!   nothing on a failure.
//! - Expiry: ttls are long (10 minutes, sliding or not), so such a key
//!   behaves as any other for every call (update keeps working, touch keeps
//!   the value, TETHER_NOT_FOUND where absent), or short (1 or 25 ms, direct
//!   writes and touches only): such a key may be present with its value or
//!   absent at any moment, never anything else. Combinations that are
//!   TETHER_INVALID_ARGUMENT (both conditions, a condition with
//!   TETHER_QUEUE, TETHER_SLIDING without a ttl, a ttl whose deadline
//!   overflows, an unknown flag) must be refused and change nothing.
//! - After a thread's own `flush` or `stop` returns OK, every write it
//!   queued before has landed: the pending writes collapse, and the
//!   thread lists its whole bucket (in small pages) and the listing must
//!   match the model key by key, value by value, with no other key.
//! - Whether a queued write may return TETHER_NOT_RUNNING depends on the
//!   handle-wide worker state: it is required exactly when no start/stop
//!   was in flight around the write and the last one left it stopped,
//!   and OK exactly when it left it running; only around overlapping
//!   start/stop calls are both allowed.
//! - At the end the handle is started and flushed, every bucket must equal
//!   its model exactly, and after `tether_close` a reopened handle must
//!   still hold exactly that (less keys with a short ttl, which may have
//!   expired).
//!
//! Proptest's failure persistence is off: the threads interleave
//! differently on every run, so a stored seed would not replay a failure.
//! A failure prints its shrunk case instead, and a shrunk case that found
//! a bug becomes a plain `#[test]` below. `PROPTEST_CASES` sets the number
//! of cases (32 on `local` and 16 on `etcd` otherwise).

mod common;

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{CStr, CString};
use std::fmt::Write as _;
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Barrier, Mutex};

use common::etcd::Etcd;
use common::{c, last_error};
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};
use tetherdb::ffi::*;
use tetherdb::Status;

/// The keys each thread uses in its bucket: prefixes of one another, a `:`
/// (allowed in keys), and a non-ASCII one that sorts last by bytes.
const KEYS: [&str; 8] = ["a", "a0", "a1", "ab", "b", "b:c", "bz", "é"];
const PREFIXES: [&str; 4] = ["a", "a1", "b", "é"];
/// Listing starts: keys and points between them.
const STARTS: [&str; 5] = ["a", "a1", "b:", "bz", "zz"];

/// How the value of a write is made: unique per thread and op, so a stale
/// or misplaced value is always told apart, except `Empty`.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Text,
    Empty,
    /// With NUL and 0xff bytes.
    Binary,
    /// Decimal text, which an increment counts on from.
    Number,
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Write(&'static str, Kind),
    Queue(&'static str, Kind),
    Update(&'static str, Kind),
    Delete(&'static str),
    Read(&'static str),
    /// `tether_increment` by this delta, unsharded.
    Increment(&'static str, i64),
    List {
        prefix: Option<&'static str>,
        start: Option<&'static str>,
        page: usize,
    },
    /// The same listing, of keys alone (TETHER_KEYS_ONLY).
    ListKeys {
        prefix: Option<&'static str>,
        start: Option<&'static str>,
        page: usize,
    },
    /// `tether_delete_prefix` of the thread's bucket.
    DeletePrefix(Option<&'static str>),
    /// Flush, then list the whole bucket in pages of `page`.
    Flush {
        page: usize,
    },
    Stop,
    Start,
    /// `tether_write_ex`, direct, giving its version to `out_version` when
    /// `out` (else NULL).
    WriteEx {
        key: &'static str,
        kind: Kind,
        condition: Condition,
        ttl: Ttl,
        out: bool,
    },
    /// `tether_write_ex` with TETHER_QUEUE and a ttl of `Never` or `Long`.
    QueueEx(&'static str, Kind, Ttl),
    /// `tether_read_ex`, with the value or (false) both value outputs NULL.
    ReadEx(&'static str, bool),
    /// `tether_delete_ex`, with TETHER_IF_VERSION when given a version.
    DeleteEx(&'static str, Option<Pick>),
    Touch(&'static str, TouchTtl),
    /// A read-modify-write: `tether_read_ex`, then `tether_write_ex` of
    /// `Some` value (or `tether_delete_ex` for `None`) with
    /// TETHER_IF_VERSION at the version read, or TETHER_IF_ABSENT when
    /// the key was not found.
    Cas(&'static str, Option<Kind>, Ttl),
    /// `tether_write_ex` with arguments it must refuse.
    Refused(&'static str, Kind, Refused),
}

/// The version a conditional write or delete is given.
#[derive(Clone, Copy, Debug)]
enum Pick {
    /// The largest the thread has seen of the key (0 when none).
    Seen,
    /// One below that, which the key can no longer have.
    Older,
    Zero,
    Max,
}

impl Pick {
    fn version(self, seen: u64) -> u64 {
        match self {
            Pick::Seen => seen,
            Pick::Older => seen.saturating_sub(1),
            Pick::Zero => 0,
            Pick::Max => u64::MAX,
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Condition {
    None,
    IfAbsent,
    IfVersion(Pick),
}

/// A write's ttl. A long one outlasts every case; a short one may end
/// before the next call, or not.
#[derive(Clone, Copy, Debug)]
enum Ttl {
    Never,
    Long { sliding: bool },
    Short { ms: u64, sliding: bool },
}

/// Long enough that no key expires during a case.
const LONG_TTL_MS: u64 = 10 * 60 * 1000;

impl Ttl {
    /// The flags, `ttl_ms` and the expiry the key gets.
    fn args(self) -> (u32, u64, Expiry) {
        let sliding = |on: bool| if on { TETHER_SLIDING } else { 0 };
        match self {
            Ttl::Never => (0, 0, Expiry::Never),
            Ttl::Long { sliding: false } => (0, LONG_TTL_MS, Expiry::Long),
            Ttl::Long { sliding: true } => (TETHER_SLIDING, LONG_TTL_MS, Expiry::Sliding),
            Ttl::Short { ms, sliding: on } => (sliding(on), ms, Expiry::Short),
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum TouchTtl {
    /// 0: no deadline.
    Clear,
    Long,
    Short(u64),
    /// A deadline past i64::MAX ms: TETHER_INVALID_ARGUMENT.
    Overflows,
}

/// Arguments of `tether_write_ex` that are TETHER_INVALID_ARGUMENT.
#[derive(Clone, Copy, Debug)]
enum Refused {
    BothConditions,
    QueuedIfAbsent,
    QueuedIfVersion,
    SlidingWithoutTtl,
    /// A ttl of u64::MAX, direct or queued.
    TtlOverflows {
        queued: bool,
    },
    UnknownFlag,
}

impl Refused {
    /// Its flags, `ttl_ms` and `version`.
    fn args(self, seen: u64) -> (u32, u64, u64) {
        match self {
            Refused::BothConditions => (TETHER_IF_ABSENT | TETHER_IF_VERSION, 0, seen),
            Refused::QueuedIfAbsent => (TETHER_QUEUE | TETHER_IF_ABSENT, 0, 0),
            Refused::QueuedIfVersion => (TETHER_QUEUE | TETHER_IF_VERSION, 0, seen),
            Refused::SlidingWithoutTtl => (TETHER_SLIDING, 0, 0),
            Refused::TtlOverflows { queued } => {
                (if queued { TETHER_QUEUE } else { 0 }, u64::MAX, 0)
            }
            Refused::UnknownFlag => (16, 0, 0),
        }
    }
}

#[derive(Clone, Debug)]
struct Case {
    size: usize,
    interval: f64,
    capacity: usize,
    threads: Vec<Vec<Op>>,
}

impl Case {
    fn queue_batch(&self) -> String {
        format!(
            r#"{{"size": {}, "interval": {}, "capacity": {}}}"#,
            self.size, self.interval, self.capacity
        )
    }
}

fn op() -> impl Strategy<Value = Op> {
    let key = || select(&KEYS[..]);
    let kind = || {
        prop_oneof![
            4 => Just(Kind::Text),
            1 => Just(Kind::Empty),
            1 => Just(Kind::Binary),
            1 => Just(Kind::Number),
        ]
    };
    let delta = || select(vec![1i64, -1, 7, i64::MAX, i64::MIN]);
    prop_oneof![
        4 => (key(), kind()).prop_map(|(k, v)| Op::Write(k, v)),
        6 => (key(), kind()).prop_map(|(k, v)| Op::Queue(k, v)),
        3 => (key(), kind()).prop_map(|(k, v)| Op::Update(k, v)),
        2 => key().prop_map(Op::Delete),
        4 => key().prop_map(Op::Read),
        3 => (key(), delta()).prop_map(|(k, d)| Op::Increment(k, d)),
        2 => (
            proptest::option::of(select(&PREFIXES[..])),
            proptest::option::of(select(&STARTS[..])),
            1..=4usize,
        )
            .prop_map(|(prefix, start, page)| Op::List { prefix, start, page }),
        2 => (
            proptest::option::of(select(&PREFIXES[..])),
            proptest::option::of(select(&STARTS[..])),
            1..=4usize,
        )
            .prop_map(|(prefix, start, page)| Op::ListKeys { prefix, start, page }),
        1 => proptest::option::of(select(&PREFIXES[..])).prop_map(Op::DeletePrefix),
        2 => (1..=9usize).prop_map(|page| Op::Flush { page }),
        1 => Just(Op::Stop),
        1 => Just(Op::Start),
        6 => (key(), kind(), condition(), ttl(), any::<bool>()).prop_map(
            |(key, kind, condition, ttl, out)| Op::WriteEx {
                key,
                kind,
                condition,
                ttl,
                out
            }
        ),
        2 => (key(), kind(), long_ttl()).prop_map(|(k, v, t)| Op::QueueEx(k, v, t)),
        4 => (key(), any::<bool>()).prop_map(|(k, with_value)| Op::ReadEx(k, with_value)),
        2 => (key(), proptest::option::of(pick())).prop_map(|(k, p)| Op::DeleteEx(k, p)),
        2 => (key(), touch_ttl()).prop_map(|(k, t)| Op::Touch(k, t)),
        4 => (key(), proptest::option::weighted(0.8, kind()), ttl())
            .prop_map(|(k, v, t)| Op::Cas(k, v, t)),
        1 => (key(), kind(), refused()).prop_map(|(k, v, r)| Op::Refused(k, v, r)),
    ]
}

fn pick() -> impl Strategy<Value = Pick> {
    prop_oneof![
        4 => Just(Pick::Seen),
        1 => Just(Pick::Older),
        1 => Just(Pick::Zero),
        1 => Just(Pick::Max),
    ]
}

fn condition() -> impl Strategy<Value = Condition> {
    prop_oneof![
        2 => Just(Condition::None),
        2 => Just(Condition::IfAbsent),
        4 => pick().prop_map(Condition::IfVersion),
    ]
}

fn long_ttl() -> impl Strategy<Value = Ttl> {
    prop_oneof![
        Just(Ttl::Never),
        any::<bool>().prop_map(|sliding| Ttl::Long { sliding }),
    ]
}

fn ttl() -> impl Strategy<Value = Ttl> {
    prop_oneof![
        3 => long_ttl(),
        1 => (select(vec![1u64, 25]), any::<bool>())
            .prop_map(|(ms, sliding)| Ttl::Short { ms, sliding }),
    ]
}

fn touch_ttl() -> impl Strategy<Value = TouchTtl> {
    prop_oneof![
        2 => Just(TouchTtl::Clear),
        2 => Just(TouchTtl::Long),
        1 => select(vec![1u64, 25]).prop_map(TouchTtl::Short),
        1 => Just(TouchTtl::Overflows),
    ]
}

fn refused() -> impl Strategy<Value = Refused> {
    prop_oneof![
        Just(Refused::BothConditions),
        Just(Refused::QueuedIfAbsent),
        Just(Refused::QueuedIfVersion),
        Just(Refused::SlidingWithoutTtl),
        any::<bool>().prop_map(|queued| Refused::TtlOverflows { queued }),
        Just(Refused::UnknownFlag),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    (
        select(vec![1usize, 3, 1000]),
        select(vec![0.002f64, 0.05, 3600.0]),
        select(vec![2usize, 10_000]),
        proptest::collection::vec(proptest::collection::vec(op(), 0..40), 2..=4),
    )
        .prop_map(|(size, interval, capacity, threads)| Case {
            size,
            interval,
            capacity,
            threads,
        })
}

fn value(thread: usize, index: usize, kind: Kind) -> Vec<u8> {
    match kind {
        Kind::Text => format!("{thread}.{index}").into_bytes(),
        Kind::Empty => Vec::new(),
        Kind::Binary => {
            let mut value = vec![0, 0xff];
            value.extend(format!("{thread}.{index}").bytes());
            value.push(0);
            value
        }
        Kind::Number => format!("{index}").into_bytes(),
    }
}

/// What an increment by `delta` of a key holding `stored` makes of it:
/// the new value, or `None` for a conflict (no counter, or overflow).
fn incremented(stored: &Option<Value>, delta: i64) -> Option<i64> {
    match stored {
        None => Some(delta),
        Some(value) => std::str::from_utf8(value)
            .ok()?
            .parse::<i64>()
            .ok()?
            .checked_add(delta),
    }
}

// ---------------------------------------------------------------------------
// The model

type Value = Vec<u8>;

/// What one world knows of the key's version. In a world where the key is
/// absent, what it knew of the last version the key had: its next write
/// gets a larger one (versions grow across a delete).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Version {
    /// Seen (`out_version`, `tether_read_ex`) and unchanged since.
    Exactly(u64),
    /// Changed since it was at most this: larger than it.
    Above(u64),
    /// This or larger: a touch or a sliding read may give the key a new
    /// version without a new value (etcd does, local does not).
    AtLeast(u64),
}

impl Version {
    fn bound(self) -> u64 {
        match self {
            Version::Exactly(v) | Version::Above(v) | Version::AtLeast(v) => v,
        }
    }

    /// After a change of the value.
    fn changed(self) -> Version {
        Version::Above(self.bound())
    }

    /// After a touch or a sliding read.
    fn loosened(self) -> Version {
        match self {
            Version::Exactly(v) => Version::AtLeast(v),
            other => other,
        }
    }

    /// Whether the key may be at `version` now.
    fn may_be(self, version: u64) -> bool {
        match self {
            Version::Exactly(v) => version == v,
            Version::Above(v) => version > v,
            Version::AtLeast(v) => version >= v,
        }
    }
}

/// A key's deadline, as far as the model cares. Long ones are far beyond
/// a case, so a key with one behaves as a key without for every call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Expiry {
    Never,
    Long,
    /// Long, and each read restarts it (TETHER_SLIDING).
    Sliding,
    /// Short (sliding or not): the key may be gone at any moment.
    Short,
}

impl Expiry {
    /// Whether a read may move the key's deadline, and so its version.
    fn slides(self) -> bool {
        matches!(self, Expiry::Sliding | Expiry::Short)
    }
}

/// One possible world of a key.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct World {
    stored: Option<Value>,
    version: Version,
    /// Of the stored value; `Never` where the key is absent.
    expiry: Expiry,
    /// How many of the key's queued writes have landed.
    landed: usize,
}

impl World {
    /// The world after the caller's read of the key: a sliding key's
    /// deadline moves, and on etcd its version with it. The library's own
    /// reads (an increment's, a condition on version 0's) move nothing:
    /// such a call that fails leaves the world as it was.
    fn read(self) -> World {
        match self.expiry.slides() {
            true => World {
                version: self.version.loosened(),
                ..self
            },
            false => self,
        }
    }

    /// The world after a change to `stored`, which gets a new version.
    fn changed(&self, stored: Option<Value>, expiry: Expiry) -> World {
        World {
            version: match stored {
                Some(_) => self.version.changed(),
                // A delete leaves the last version as the one to exceed.
                None => self.version,
            },
            expiry: match stored {
                Some(_) => expiry,
                None => Expiry::Never,
            },
            stored,
            landed: self.landed,
        }
    }
}

/// One key of a thread's bucket.
#[derive(Clone, Debug)]
struct KeyModel {
    /// Values queued (accepted) since the thread's last flush/stop, in
    /// order, each with its expiry.
    queued: Vec<(Value, Expiry)>,
    /// The possible worlds.
    worlds: BTreeSet<World>,
    /// The largest version seen of the key: what TETHER_IF_VERSION is given.
    seen: u64,
}

impl KeyModel {
    fn new() -> KeyModel {
        KeyModel {
            queued: Vec::new(),
            worlds: [World {
                stored: None,
                version: Version::Above(0),
                expiry: Expiry::Never,
                landed: 0,
            }]
            .into(),
            seen: 0,
        }
    }

    /// Every world reachable by letting more queued writes land, and keys
    /// with a short ttl expire.
    fn closure(&self) -> BTreeSet<World> {
        self.reach(false)
    }

    /// The worlds of `closure` where one more queued write or more landed.
    fn after_a_landing(&self) -> BTreeSet<World> {
        self.reach(true)
    }

    fn reach(&self, landing: bool) -> BTreeSet<World> {
        let mut out = BTreeSet::new();
        let mut add = |world: World| {
            if world.expiry == Expiry::Short {
                out.insert(World {
                    stored: None,
                    expiry: Expiry::Never,
                    ..world.clone()
                });
            }
            out.insert(world);
        };
        for world in &self.worlds {
            let mut at = world.clone();
            if !landing {
                add(at.clone());
            }
            for n in world.landed + 1..=self.queued.len() {
                let (value, expiry) = &self.queued[n - 1];
                at = World {
                    landed: n,
                    ..at.changed(Some(value.clone()), *expiry)
                };
                add(at.clone());
            }
        }
        out
    }

    /// What an observation may see now.
    fn possible(&self) -> BTreeSet<Option<Value>> {
        self.closure().into_iter().map(|w| w.stored).collect()
    }

    /// Keeps the worlds `keep` gives (from each world, none or one now);
    /// false when none is left, and the worlds are as they were.
    fn narrow(&mut self, keep: impl Fn(World) -> Option<World>) -> bool {
        let worlds: BTreeSet<World> = self.closure().into_iter().filter_map(keep).collect();
        if worlds.is_empty() {
            return false;
        }
        self.worlds = worlds;
        true
    }

    /// Keeps the worlds where the key holds `seen` now; false when none does.
    fn observe(&mut self, seen: &Option<Value>) -> bool {
        self.narrow(|w| (&w.stored == seen).then_some(w))
    }

    /// Keeps the worlds where the key is present (with any value) or
    /// absent, as a keys-only listing shows it; false when none is.
    fn observe_presence(&mut self, present: bool) -> bool {
        self.narrow(|w| (w.stored.is_some() == present).then_some(w))
    }

    /// A direct write or delete that took effect now, after any number of
    /// the queued writes landed.
    fn set(&mut self, stored: Option<Value>, expiry: Expiry) {
        self.narrow(|w| Some(w.changed(stored.clone(), expiry)));
    }

    /// The thread's flush or stop returned OK: every queued write landed.
    fn barrier(&mut self) {
        let len = self.queued.len();
        self.worlds = self
            .closure()
            .into_iter()
            .filter(|w| w.landed == len)
            .map(|w| World { landed: 0, ..w })
            .collect();
        self.queued.clear();
    }

    /// The one value the key must hold, once it is settled.
    fn settled(&self) -> Option<&Option<Value>> {
        let first = &self.worlds.first()?.stored;
        let one = self.worlds.iter().all(|w| &w.stored == first);
        (self.queued.is_empty() && one).then_some(first)
    }

    /// Whether a queued write of the key may land at any moment.
    fn racing(&self) -> bool {
        !self.after_a_landing().is_empty()
    }

    /// Whether the key may expire before the end of the case.
    fn may_expire(&self) -> bool {
        self.closure().iter().any(|w| w.expiry == Expiry::Short)
    }
}

/// The handle-wide worker state, as far as the threads know it.
struct Lifecycle {
    state: Mutex<LifecycleState>,
}

#[derive(Clone, Copy, PartialEq)]
struct LifecycleState {
    /// Changes whenever a start or stop begins or ends.
    generation: u64,
    in_flight: u32,
    /// `None` after start/stop calls overlapped: either may have won.
    running: Option<bool>,
}

impl Lifecycle {
    fn new() -> Lifecycle {
        Lifecycle {
            state: Mutex::new(LifecycleState {
                generation: 0,
                in_flight: 0,
                running: Some(true),
            }),
        }
    }

    fn snapshot(&self) -> LifecycleState {
        *self.state.lock().unwrap()
    }

    fn begin(&self) -> u64 {
        let mut state = self.state.lock().unwrap();
        state.in_flight += 1;
        state.generation += 1;
        state.generation
    }

    fn end(&self, began: u64, running: bool) {
        let mut state = self.state.lock().unwrap();
        state.in_flight -= 1;
        let alone = state.generation == began && state.in_flight == 0;
        state.running = alone.then_some(running);
        state.generation += 1;
    }

    /// The statuses a queued write may return, given the states around it.
    fn queued_write_may_return(before: LifecycleState, after: LifecycleState) -> Vec<Status> {
        match (before == after && before.in_flight == 0, before.running) {
            (true, Some(true)) => vec![Status::Ok],
            (true, Some(false)) => vec![Status::NotRunning],
            _ => vec![Status::Ok, Status::NotRunning],
        }
    }
}

// ---------------------------------------------------------------------------
// The C ABI, called as a C caller calls it

/// A page as read: its entries, and its next marker.
type PageRead = (Vec<(String, Value)>, Option<String>);

/// The handle, shared between threads as the C ABI allows.
#[derive(Clone, Copy)]
struct Handle(*mut TetherDb);
unsafe impl Send for Handle {}
unsafe impl Sync for Handle {}

/// An empty value is passed as NULL with length 0, which the ABI allows.
fn value_ptr(value: &[u8]) -> *const u8 {
    if value.is_empty() {
        ptr::null()
    } else {
        value.as_ptr()
    }
}

impl Handle {
    fn open(config: &str) -> Result<Handle, String> {
        let config = c(config);
        let mut db = ptr::null_mut();
        match unsafe { tether_open(config.as_ptr(), &mut db) } {
            Status::Ok => Ok(Handle(db)),
            status => Err(format!("tether_open: {status:?}: {}", last_error())),
        }
    }

    fn write(self, bucket: &CStr, key: &str, value: &[u8], flags: u32) -> Status {
        let key = c(key);
        unsafe {
            tether_write(
                self.0,
                ptr::null(),
                bucket.as_ptr(),
                key.as_ptr(),
                value_ptr(value),
                value.len(),
                flags,
            )
        }
    }

    fn update(self, bucket: &CStr, key: &str, value: &[u8]) -> Status {
        let key = c(key);
        unsafe {
            tether_update(
                self.0,
                ptr::null(),
                bucket.as_ptr(),
                key.as_ptr(),
                value_ptr(value),
                value.len(),
            )
        }
    }

    /// The status and, on OK, the new value; a failure leaves the value
    /// alone.
    fn increment(self, bucket: &CStr, key: &str, delta: i64) -> Result<(Status, i64), String> {
        let key = c(key);
        let sentinel = 0x5eed;
        let mut out = sentinel;
        let status = unsafe {
            tether_increment(
                self.0,
                ptr::null(),
                bucket.as_ptr(),
                key.as_ptr(),
                delta,
                0,
                &mut out,
            )
        };
        if status != Status::Ok && out != sentinel {
            return Err(format!("a failed increment ({status:?}) wrote its output"));
        }
        Ok((status, out))
    }

    fn delete(self, bucket: &CStr, key: &str) -> Status {
        let key = c(key);
        unsafe { tether_delete(self.0, ptr::null(), bucket.as_ptr(), key.as_ptr()) }
    }

    /// `tether_write_ex`: the status and, on OK with `out` (and no
    /// TETHER_QUEUE), the version. Checks that `out_version` is written
    /// only then, and never as 0.
    #[allow(clippy::too_many_arguments)]
    fn write_ex(
        self,
        bucket: &CStr,
        key: &str,
        value: &[u8],
        flags: u32,
        ttl_ms: u64,
        version: u64,
        out: bool,
    ) -> Result<(Status, Option<u64>), String> {
        let key = c(key);
        // No version is u64::MAX: versions are counted up from 1.
        let sentinel = u64::MAX;
        let mut written = sentinel;
        let out_version = if out {
            &mut written as *mut u64
        } else {
            ptr::null_mut()
        };
        let status = unsafe {
            tether_write_ex(
                self.0,
                ptr::null(),
                bucket.as_ptr(),
                key.as_ptr(),
                value_ptr(value),
                value.len(),
                flags,
                ttl_ms,
                version,
                out_version,
            )
        };
        let given = status == Status::Ok && out && flags & TETHER_QUEUE == 0;
        match (given, written) {
            (true, 0 | u64::MAX) => Err(format!("tether_write_ex gave version {written}")),
            (true, _) => Ok((status, Some(written))),
            (false, u64::MAX) => Ok((status, None)),
            (false, _) => Err(format!(
                "tether_write_ex {status:?} (flags {flags:#x}) wrote out_version {written}"
            )),
        }
    }

    /// `tether_read_ex`: the status and, on OK, the value (`None` without
    /// `with_value`: both value outputs NULL) and the version. Checks that
    /// a failure writes no output and that a version is never 0.
    #[allow(clippy::type_complexity)]
    fn read_ex(
        self,
        bucket: &CStr,
        key: &str,
        with_value: bool,
    ) -> Result<(Status, Option<(Option<Value>, u64)>), String> {
        let key = c(key);
        let sentinel = ptr::dangling_mut::<u8>();
        let (mut out, mut len, mut version) = (sentinel, usize::MAX, u64::MAX);
        let (out_value, out_len) = match with_value {
            true => (&mut out as *mut *mut u8, &mut len as *mut usize),
            false => (ptr::null_mut(), ptr::null_mut()),
        };
        let status = unsafe {
            tether_read_ex(
                self.0,
                ptr::null(),
                bucket.as_ptr(),
                key.as_ptr(),
                out_value,
                out_len,
                &mut version,
            )
        };
        if status != Status::Ok {
            if (out, len, version) != (sentinel, usize::MAX, u64::MAX) {
                return Err(format!("tether_read_ex {status:?} wrote its outputs"));
            }
            return Ok((status, None));
        }
        if version == 0 || version == u64::MAX {
            return Err(format!("tether_read_ex gave version {version}"));
        }
        if !with_value {
            return Ok((status, Some((None, version))));
        }
        if out.is_null() {
            return Err("tether_read_ex returned OK and a NULL value".into());
        }
        let value = unsafe { std::slice::from_raw_parts(out, len) }.to_vec();
        unsafe { tether_free(out, len) };
        Ok((status, Some((Some(value), version))))
    }

    fn delete_ex(self, bucket: &CStr, key: &str, flags: u32, version: u64) -> Status {
        let key = c(key);
        unsafe {
            tether_delete_ex(
                self.0,
                ptr::null(),
                bucket.as_ptr(),
                key.as_ptr(),
                flags,
                version,
            )
        }
    }

    fn touch(self, bucket: &CStr, key: &str, ttl_ms: u64) -> Status {
        let key = c(key);
        unsafe { tether_touch(self.0, ptr::null(), bucket.as_ptr(), key.as_ptr(), ttl_ms) }
    }

    /// The status and, on OK, the value. Checks that a failed read leaves
    /// its outputs alone and that a value is never NULL.
    fn read(self, bucket: &CStr, key: &str) -> Result<(Status, Option<Value>), String> {
        let key = c(key);
        let sentinel = ptr::dangling_mut::<u8>();
        let (mut out, mut len) = (sentinel, usize::MAX);
        let status = unsafe {
            tether_read(
                self.0,
                ptr::null(),
                bucket.as_ptr(),
                key.as_ptr(),
                &mut out,
                &mut len,
            )
        };
        if status != Status::Ok {
            if (out, len) != (sentinel, usize::MAX) {
                return Err(format!("tether_read {status:?} wrote its outputs"));
            }
            return Ok((status, None));
        }
        if out.is_null() {
            return Err("tether_read returned OK and a NULL value".into());
        }
        let value = unsafe { std::slice::from_raw_parts(out, len) }.to_vec();
        unsafe { tether_free(out, len) };
        Ok((status, Some(value)))
    }

    /// One page: its entries and next marker. With `flags`
    /// TETHER_KEYS_ONLY the values are empty, after checking that the page
    /// gives each as NULL with length 0.
    fn list(
        self,
        bucket: &CStr,
        prefix: Option<&str>,
        start_after: Option<&str>,
        page_size: usize,
        flags: u32,
    ) -> Result<PageRead, String> {
        let prefix = prefix.map(c);
        let start_after = start_after.map(c);
        let mut page = ptr::null_mut();
        let status = unsafe {
            tether_list_ex(
                self.0,
                ptr::null(),
                bucket.as_ptr(),
                prefix.as_ref().map_or(ptr::null(), |p| p.as_ptr()),
                start_after.as_ref().map_or(ptr::null(), |s| s.as_ptr()),
                page_size,
                flags,
                &mut page,
            )
        };
        if status != Status::Ok {
            return Err(format!("tether_list_ex: {status:?}: {}", last_error()));
        }
        let mut entries = Vec::new();
        unsafe {
            for i in 0..tether_page_len(page) {
                let key = CStr::from_ptr(tether_page_key(page, i));
                let mut len = usize::MAX;
                let value = tether_page_value(page, i, &mut len);
                if flags == TETHER_KEYS_ONLY && (!value.is_null() || len != 0) {
                    tether_page_free(page);
                    return Err(format!("a keys-only page gave {value:?}, {len} bytes"));
                }
                let value = match len {
                    0 => Vec::new(),
                    _ => std::slice::from_raw_parts(value, len).to_vec(),
                };
                entries.push((key.to_string_lossy().into_owned(), value));
            }
            let next = tether_page_next(page);
            let next =
                (!next.is_null()).then(|| CStr::from_ptr(next).to_string_lossy().into_owned());
            tether_page_free(page);
            Ok((entries, next))
        }
    }

    /// The status and, on OK, the count deleted.
    fn delete_prefix(self, bucket: &CStr, prefix: Option<&str>) -> (Status, u64) {
        let prefix = prefix.map(c);
        let mut deleted = u64::MAX;
        let status = unsafe {
            tether_delete_prefix(
                self.0,
                ptr::null(),
                bucket.as_ptr(),
                prefix.as_ref().map_or(ptr::null(), |p| p.as_ptr()),
                &mut deleted,
            )
        };
        (status, deleted)
    }

    fn flush(self) -> Status {
        unsafe { tether_flush(self.0) }
    }

    fn stop(self) -> Status {
        unsafe { tether_stop(self.0) }
    }

    fn start(self) -> Status {
        unsafe { tether_start(self.0) }
    }

    fn close(self) -> Status {
        unsafe { tether_close(self.0) }
    }
}

// ---------------------------------------------------------------------------
// One thread's bucket, driven and checked

struct Bucket {
    name: CString,
    keys: BTreeMap<&'static str, KeyModel>,
}

impl Bucket {
    fn new(name: &str) -> Bucket {
        Bucket {
            name: c(name),
            keys: KEYS.iter().map(|k| (*k, KeyModel::new())).collect(),
        }
    }

    fn key(&mut self, key: &str) -> &mut KeyModel {
        self.keys.get_mut(key).unwrap()
    }

    /// Lists the bucket from `start` in pages of `page_size`, following the
    /// next markers, checks the pages, and checks every key the listing
    /// covers (present with its value, or absent; with `keys_only`,
    /// present or absent) against the model.
    fn list(
        &mut self,
        db: Handle,
        prefix: Option<&str>,
        start: Option<&str>,
        page_size: usize,
        keys_only: bool,
    ) -> Result<(), String> {
        let flags = if keys_only { TETHER_KEYS_ONLY } else { 0 };
        let mut listed: Vec<(String, Value)> = Vec::new();
        let mut after = start.map(str::to_owned);
        let mut pages = String::new();
        for round in 0.. {
            if round > KEYS.len() + 1 {
                return Err(format!("the listing does not end: {pages}"));
            }
            let (entries, next) =
                db.list(&self.name, prefix, after.as_deref(), page_size, flags)?;
            let _ = write!(pages, "{:?} next {next:?}; ", entries);
            if entries.len() > page_size {
                return Err(format!("a page over {page_size} entries: {pages}"));
            }
            // Unless the key that remained had a short ttl, and has
            // expired since.
            let expired = |after: &Option<String>| {
                KEYS.iter().any(|k| {
                    prefix.is_none_or(|p| k.starts_with(p))
                        && after.as_ref().is_none_or(|a| k.as_bytes() > a.as_bytes())
                        && self.keys[k].may_expire()
                })
            };
            if round > 0 && entries.is_empty() && !expired(&after) {
                return Err(format!(
                    "an empty page after a next marker (no key remained): {pages}"
                ));
            }
            if let Some(next) = &next {
                if entries.len() < page_size {
                    return Err(format!("a short page with a next marker: {pages}"));
                }
                if Some(next) != entries.last().map(|(k, _)| k) {
                    return Err(format!(
                        "the next marker is not the page's last key: {pages}"
                    ));
                }
            }
            listed.extend(entries);
            after = next;
            if after.is_none() {
                break;
            }
        }
        for pair in listed.windows(2) {
            if pair[0].0.as_bytes() >= pair[1].0.as_bytes() {
                return Err(format!("keys not ascending or listed twice: {pages}"));
            }
        }
        let covered = |key: &str| {
            prefix.is_none_or(|p| key.starts_with(p))
                && start.is_none_or(|s| key.as_bytes() > s.as_bytes())
        };
        let mut seen: BTreeMap<&str, &Value> = BTreeMap::new();
        for (key, value) in &listed {
            if !KEYS.contains(&key.as_str()) || !covered(key) {
                return Err(format!("listed key {key:?} outside the listing: {pages}"));
            }
            seen.insert(key, value);
        }
        for key in KEYS.into_iter().filter(|k| covered(k)) {
            let observed = seen.get(key).map(|v| v.to_vec());
            let model = self.key(key);
            let possible = model.possible();
            let agrees = match keys_only {
                true => model.observe_presence(observed.is_some()),
                false => model.observe(&observed),
            };
            if !agrees {
                return Err(format!(
                    "listing {prefix:?} after {start:?} in pages of {page_size} (keys only: {keys_only}): key {key:?} is {observed:?}, the model allows {possible:?}; pages: {pages}"
                ));
            }
        }
        Ok(())
    }

    /// Deletes the bucket's keys starting with `prefix` and checks the
    /// count: between the keys that must have been present and those that
    /// may have been (queued writes land at any moment), which tells which
    /// where it is either bound. The call is not atomic (docs/c-api.md): a
    /// key a queued write changes while it runs may stay, uncounted, with
    /// the value written.
    fn delete_prefix(&mut self, db: Handle, prefix: Option<&str>) -> Result<(), String> {
        let covered: Vec<&'static str> = KEYS
            .into_iter()
            .filter(|k| prefix.is_none_or(|p| k.starts_with(p)))
            .collect();
        let possible: Vec<BTreeSet<Option<Value>>> =
            covered.iter().map(|k| self.key(k).possible()).collect();
        let racing: Vec<bool> = covered.iter().map(|k| self.key(k).racing()).collect();
        let must = possible
            .iter()
            .zip(&racing)
            .filter(|(p, racing)| !p.contains(&None) && !**racing)
            .count() as u64;
        let may = possible
            .iter()
            .filter(|p| p.iter().any(Option::is_some))
            .count() as u64;
        let (status, deleted) = db.delete_prefix(&self.name, prefix);
        expect(status, &[Status::Ok])?;
        if deleted < must || deleted > may {
            return Err(format!(
                "deleted {deleted} keys with prefix {prefix:?}, the model allows {must} to {may}"
            ));
        }
        for ((key, possible), racing) in covered.into_iter().zip(possible).zip(racing) {
            let model = self.key(key);
            let uncertain = possible.contains(&None) && possible.len() > 1;
            // At `may` every key that may have been there was, and went.
            let stayed = (racing && deleted < may).then(|| model.after_a_landing());
            if uncertain && deleted == may {
                model.observe_presence(true);
            } else if uncertain && deleted == must && !racing {
                model.observe_presence(false);
            }
            model.set(None, Expiry::Never);
            model.worlds.extend(stayed.into_iter().flatten());
        }
        Ok(())
    }

    fn barrier(&mut self) {
        self.keys.values_mut().for_each(KeyModel::barrier);
    }

    /// After a barrier and a full listing, every key holds one value.
    fn settled(&self) -> Result<BTreeMap<&'static str, Value>, String> {
        let mut out = BTreeMap::new();
        for (key, model) in &self.keys {
            match model.settled() {
                Some(Some(value)) => {
                    out.insert(*key, value.clone());
                }
                Some(None) => {}
                None => return Err(format!("key {key:?} is not settled: {model:?}")),
            }
        }
        Ok(out)
    }
}

/// Runs one thread's ops; the error says which op failed and how.
fn run_thread(
    db: Handle,
    lifecycle: &Lifecycle,
    thread: usize,
    bucket: &mut Bucket,
    ops: &[Op],
) -> Result<(), String> {
    let mut trace = Vec::new();
    for (index, op) in ops.iter().enumerate() {
        let result = run_op(db, lifecycle, thread, index, bucket, *op);
        trace.push(format!("{index}: {op:?}"));
        if let Err(e) = result {
            let start = trace.len().saturating_sub(12);
            return Err(format!(
                "thread {thread}, op {index} {op:?}: {e}\n  last ops of this thread: {}",
                trace[start..].join(", ")
            ));
        }
    }
    Ok(())
}

/// `tether_read_ex` of `key`, checked against the model; its status.
fn read_ex(
    db: Handle,
    bucket: &mut Bucket,
    key: &'static str,
    with_value: bool,
) -> Result<Status, String> {
    let (status, read) = db.read_ex(&bucket.name, key, with_value)?;
    expect(status, &[Status::Ok, Status::NotFound])?;
    let model = bucket.key(key);
    let worlds = model.closure();
    let agrees = match &read {
        None => model.observe(&None),
        Some((value, version)) => {
            let version = *version;
            model.seen = model.seen.max(version);
            model.narrow(|w| {
                let stored = w.stored.as_ref()?;
                if value.as_ref().is_some_and(|v| v != stored) {
                    return None;
                }
                // A sliding key's read may give it a new version: the
                // one given.
                let w = w.read();
                w.version.may_be(version).then_some(World {
                    version: Version::Exactly(version),
                    ..w
                })
            })
        }
    };
    if !agrees {
        return Err(format!(
            "tether_read_ex (with value: {with_value}) gave {read:?}, the key may be {worlds:?}"
        ));
    }
    Ok(status)
}

/// What a call that needs the key present (update, delete, touch) may
/// return, given what the key may hold.
fn presence_statuses(possible: &BTreeSet<Option<Value>>) -> Vec<Status> {
    let mut allowed = Vec::new();
    if possible.iter().any(Option::is_some) {
        allowed.push(Status::Ok);
    }
    if possible.contains(&None) {
        allowed.push(Status::NotFound);
    }
    allowed
}

/// What a direct `tether_write_ex` under `condition` may return in `world`:
/// TETHER_IF_VERSION `version` is OK where the key is certainly at it,
/// TETHER_CONFLICT where it certainly is not, either where it may be.
fn write_statuses(condition: Condition, world: &World, version: u64) -> Vec<Status> {
    match (condition, world.stored.is_some()) {
        (Condition::None, _) | (Condition::IfAbsent, false) => vec![Status::Ok],
        (Condition::IfAbsent, true) => vec![Status::Conflict],
        (Condition::IfVersion(_), false) => vec![Status::NotFound],
        (Condition::IfVersion(_), true) => version_statuses(world.version, version),
    }
}

/// What `tether_delete_ex`, with TETHER_IF_VERSION `version` when
/// `if_version`, may return in `world`.
fn delete_statuses(if_version: bool, world: &World, version: u64) -> Vec<Status> {
    match (if_version, world.stored.is_some()) {
        (_, false) => vec![Status::NotFound],
        (false, true) => vec![Status::Ok],
        (true, true) => version_statuses(world.version, version),
    }
}

fn version_statuses(known: Version, version: u64) -> Vec<Status> {
    match known {
        Version::Exactly(v) if v == version => vec![Status::Ok],
        _ if known.may_be(version) => vec![Status::Ok, Status::Conflict],
        _ => vec![Status::Conflict],
    }
}

fn expect(status: Status, allowed: &[Status]) -> Result<(), String> {
    if !allowed.contains(&status) {
        return Err(format!(
            "returned {status:?}, expected one of {allowed:?}: {}",
            last_error()
        ));
    }
    if status != Status::Ok && last_error().is_empty() {
        return Err(format!("returned {status:?} with no message"));
    }
    Ok(())
}

fn run_op(
    db: Handle,
    lifecycle: &Lifecycle,
    thread: usize,
    index: usize,
    bucket: &mut Bucket,
    op: Op,
) -> Result<(), String> {
    let name = bucket.name.clone();
    match op {
        Op::Write(key, kind) => {
            let v = value(thread, index, kind);
            expect(db.write(&name, key, &v, 0), &[Status::Ok])?;
            bucket.key(key).set(Some(v), Expiry::Never);
        }
        Op::Queue(key, kind) => {
            let v = value(thread, index, kind);
            let before = lifecycle.snapshot();
            let status = db.write(&name, key, &v, TETHER_QUEUE);
            let after = lifecycle.snapshot();
            expect(status, &Lifecycle::queued_write_may_return(before, after))?;
            if status == Status::Ok {
                bucket.key(key).queued.push((v, Expiry::Never));
            }
        }
        Op::Update(key, kind) => {
            let v = value(thread, index, kind);
            let model = bucket.key(key);
            let possible = model.possible();
            let status = db.update(&name, key, &v);
            expect(status, &presence_statuses(&possible))
                .map_err(|e| format!("{e} (the key may be {possible:?})"))?;
            // An update keeps the key's expiry.
            match status {
                Status::Ok => model.narrow(|w| {
                    w.stored
                        .is_some()
                        .then(|| w.changed(Some(v.clone()), w.expiry))
                }),
                _ => model.observe(&None),
            };
        }
        Op::Delete(key) => {
            let model = bucket.key(key);
            let possible = model.possible();
            let status = db.delete(&name, key);
            expect(status, &presence_statuses(&possible))
                .map_err(|e| format!("{e} (the key may be {possible:?})"))?;
            match status {
                Status::Ok => {
                    model.narrow(|w| w.stored.is_some().then(|| w.changed(None, Expiry::Never)))
                }
                _ => model.observe(&None),
            };
        }
        Op::Read(key) => {
            let (status, seen) = db.read(&name, key)?;
            expect(status, &[Status::Ok, Status::NotFound])?;
            let model = bucket.key(key);
            let possible = model.possible();
            if !model.observe(&seen) {
                return Err(format!("read {seen:?}, the model allows {possible:?}"));
            }
            model.narrow(|w| Some(w.read()));
        }
        Op::Increment(key, delta) => {
            let model = bucket.key(key);
            let worlds = model.closure();
            let mut allowed = Vec::new();
            if worlds
                .iter()
                .any(|w| incremented(&w.stored, delta).is_some())
            {
                allowed.push(Status::Ok);
            }
            if worlds
                .iter()
                .any(|w| incremented(&w.stored, delta).is_none())
            {
                allowed.push(Status::Conflict);
            }
            let (status, got) = db.increment(&name, key, delta)?;
            let possible = model.possible();
            expect(status, &allowed).map_err(|e| format!("{e} (the key may be {possible:?})"))?;
            let text = got.to_string().into_bytes();
            // A conflict changed nothing; an increment stored the text,
            // keeping the key's expiry.
            let counted = model.narrow(|w| match status {
                Status::Ok => (incremented(&w.stored, delta) == Some(got))
                    .then(|| w.changed(Some(text.clone()), w.expiry)),
                _ => incremented(&w.stored, delta).is_none().then_some(w),
            });
            if !counted {
                return Err(format!(
                    "increment by {delta}: {status:?}, value {got}; the key may be {possible:?}"
                ));
            }
        }
        Op::WriteEx {
            key,
            kind,
            condition,
            ttl,
            out,
        } => {
            let v = value(thread, index, kind);
            let model = bucket.key(key);
            let (mut flags, ttl_ms, expiry) = ttl.args();
            let version = match condition {
                Condition::None => 0,
                Condition::IfAbsent => {
                    flags |= TETHER_IF_ABSENT;
                    0
                }
                Condition::IfVersion(pick) => {
                    flags |= TETHER_IF_VERSION;
                    pick.version(model.seen)
                }
            };
            let worlds = model.closure();
            let mut allowed: Vec<Status> = Vec::new();
            for w in &worlds {
                allowed.extend(write_statuses(condition, w, version));
            }
            let (status, written) = db.write_ex(&name, key, &v, flags, ttl_ms, version, out)?;
            expect(status, &allowed).map_err(|e| format!("{e} (the key may be {worlds:?})"))?;
            // A failed condition changes nothing; a write gets a version
            // above any the key had (and so above the one it was at).
            let agrees = model.narrow(|w| {
                if !write_statuses(condition, &w, version).contains(&status) {
                    return None;
                }
                match (status, written) {
                    (Status::Ok, Some(new)) => {
                        (new > w.version.bound().max(version)).then(|| World {
                            stored: Some(v.clone()),
                            version: Version::Exactly(new),
                            expiry,
                            landed: w.landed,
                        })
                    }
                    (Status::Ok, None) => Some(w.changed(Some(v.clone()), expiry)),
                    _ => Some(w),
                }
            });
            if !agrees {
                return Err(format!(
                    "tether_write_ex {condition:?} version {version}: {status:?}, new version {written:?}; the key may be {worlds:?}"
                ));
            }
            if let Some(new) = written {
                model.seen = model.seen.max(new);
            }
        }
        Op::QueueEx(key, kind, ttl) => {
            let v = value(thread, index, kind);
            let (flags, ttl_ms, expiry) = ttl.args();
            let before = lifecycle.snapshot();
            let (status, _) = db.write_ex(&name, key, &v, flags | TETHER_QUEUE, ttl_ms, 0, true)?;
            let after = lifecycle.snapshot();
            expect(status, &Lifecycle::queued_write_may_return(before, after))?;
            if status == Status::Ok {
                bucket.key(key).queued.push((v, expiry));
            }
        }
        Op::ReadEx(key, with_value) => {
            read_ex(db, bucket, key, with_value)?;
        }
        Op::Cas(key, kind, ttl) => {
            let found = read_ex(db, bucket, key, true)? == Status::Ok;
            let then = match (kind, found) {
                (Some(kind), true) => Op::WriteEx {
                    key,
                    kind,
                    condition: Condition::IfVersion(Pick::Seen),
                    ttl,
                    out: true,
                },
                (Some(kind), false) => Op::WriteEx {
                    key,
                    kind,
                    condition: Condition::IfAbsent,
                    ttl,
                    out: true,
                },
                (None, _) => Op::DeleteEx(key, Some(Pick::Seen)),
            };
            return run_op(db, lifecycle, thread, index, bucket, then);
        }

        Op::DeleteEx(key, pick) => {
            let model = bucket.key(key);
            let (flags, version) = match pick {
                Some(pick) => (TETHER_IF_VERSION, pick.version(model.seen)),
                None => (0, 0),
            };
            let worlds = model.closure();
            let mut allowed: Vec<Status> = Vec::new();
            for w in &worlds {
                allowed.extend(delete_statuses(pick.is_some(), w, version));
            }
            let status = db.delete_ex(&name, key, flags, version);
            expect(status, &allowed).map_err(|e| format!("{e} (the key may be {worlds:?})"))?;
            model.narrow(|w| {
                if !delete_statuses(pick.is_some(), &w, version).contains(&status) {
                    return None;
                }
                match status {
                    Status::Ok => Some(w.changed(None, Expiry::Never)),
                    _ => Some(w),
                }
            });
        }
        Op::Touch(key, ttl) => {
            let (ttl_ms, expiry) = match ttl {
                TouchTtl::Clear => (0, Expiry::Never),
                TouchTtl::Long => (LONG_TTL_MS, Expiry::Long),
                TouchTtl::Short(ms) => (ms, Expiry::Short),
                TouchTtl::Overflows => (u64::MAX, Expiry::Never),
            };
            let status = db.touch(&name, key, ttl_ms);
            if let TouchTtl::Overflows = ttl {
                return expect(status, &[Status::InvalidArgument]);
            }
            let model = bucket.key(key);
            let possible = model.possible();
            expect(status, &presence_statuses(&possible))
                .map_err(|e| format!("{e} (the key may be {possible:?})"))?;
            // A touch keeps the value; on etcd it puts the key again, with
            // a new version, on local it keeps the version.
            match status {
                Status::Ok => model.narrow(|w| {
                    w.stored.is_some().then(|| World {
                        version: w.version.loosened(),
                        expiry,
                        ..w
                    })
                }),
                _ => model.observe(&None),
            };
        }
        Op::Refused(key, kind, refused) => {
            let v = value(thread, index, kind);
            let (flags, ttl_ms, version) = refused.args(bucket.key(key).seen);
            let (status, _) = db.write_ex(&name, key, &v, flags, ttl_ms, version, true)?;
            expect(status, &[Status::InvalidArgument])?;
        }
        Op::List {
            prefix,
            start,
            page,
        } => bucket.list(db, prefix, start, page, false)?,
        Op::ListKeys {
            prefix,
            start,
            page,
        } => bucket.list(db, prefix, start, page, true)?,
        Op::DeletePrefix(prefix) => bucket.delete_prefix(db, prefix)?,
        Op::Flush { page } => {
            expect(db.flush(), &[Status::Ok])?;
            bucket.barrier();
            bucket.list(db, None, None, page, false)?;
        }
        Op::Stop => {
            let began = lifecycle.begin();
            let status = db.stop();
            lifecycle.end(began, false);
            expect(status, &[Status::Ok])?;
            bucket.barrier();
            bucket.list(db, None, None, 3, false)?;
        }
        Op::Start => {
            let began = lifecycle.begin();
            let status = db.start();
            lifecycle.end(began, true);
            expect(status, &[Status::Ok])?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// One case, and the runners

/// Buckets unique across the cases of a run (they share one etcd).
static CASES: AtomicUsize = AtomicUsize::new(0);

/// Runs `case` on a handle opened from `config`: the threads at once, then
/// the final checks, then a reopen.
fn run_case(config: &str, case: &Case) -> Result<(), String> {
    let number = CASES.fetch_add(1, Ordering::Relaxed);
    let mut buckets: Vec<Bucket> = (0..case.threads.len())
        .map(|t| Bucket::new(&format!("m{number}t{t}")))
        .collect();
    let db = Handle::open(config)?;
    let lifecycle = Lifecycle::new();
    let barrier = Barrier::new(case.threads.len());
    let errors: Vec<String> = std::thread::scope(|s| {
        let running: Vec<_> = buckets
            .iter_mut()
            .zip(&case.threads)
            .enumerate()
            .map(|(t, (bucket, ops))| {
                let (lifecycle, barrier) = (&lifecycle, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    run_thread(db, lifecycle, t, bucket, ops)
                })
            })
            .collect();
        running
            .into_iter()
            .filter_map(|t| t.join().unwrap().err())
            .collect()
    });
    let result = if errors.is_empty() {
        final_checks(db, &mut buckets)
    } else {
        Err(errors.join("\n"))
    };
    let closed = db.close();
    result?;
    if closed != Status::Ok {
        return Err(format!("tether_close: {closed:?}: {}", last_error()));
    }
    // What close left is what a new handle finds.
    let db = Handle::open(config)?;
    let reopened = buckets.iter().try_for_each(|bucket| {
        let mut expected = bucket.settled()?;
        let (listed, next) = db.list(&bucket.name, None, None, KEYS.len(), 0)?;
        let listed: BTreeMap<&str, Value> = listed
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        // A key with a short ttl may have expired since.
        expected.retain(|key, _| listed.contains_key(key) || !bucket.keys[key].may_expire());
        if next.is_some() || listed != expected {
            return Err(format!(
                "after close and reopen, bucket {:?} holds {listed:?} next {next:?}, expected {expected:?}",
                bucket.name
            ));
        }
        Ok(())
    });
    let closed = db.close();
    reopened?;
    match closed {
        Status::Ok => Ok(()),
        status => Err(format!("tether_close: {status:?}: {}", last_error())),
    }
}

/// Started and flushed, every bucket equals its model exactly.
fn final_checks(db: Handle, buckets: &mut [Bucket]) -> Result<(), String> {
    expect(db.start(), &[Status::Ok]).map_err(|e| format!("final tether_start: {e}"))?;
    expect(db.flush(), &[Status::Ok]).map_err(|e| format!("final tether_flush: {e}"))?;
    for bucket in buckets {
        bucket.barrier();
        bucket
            .list(db, None, None, 2, false)
            .map_err(|e| format!("final listing: {e}"))?;
        bucket.settled()?;
    }
    Ok(())
}

/// How often a candidate is run while a failure is shrunk.
const SHRINK_TRIES: usize = 8;

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

/// Runs the property with `cases` cases on the handles `config` makes
/// (from the case's `queue_batch` section).
fn check(cases: u32, config: impl Fn(&Case) -> (String, Option<tempfile::TempDir>)) {
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        // Bounded, so that a failure reports within a few minutes.
        max_shrink_iters: 200,
        max_shrink_time: 120_000,
        ..Config::default()
    });
    // The threads interleave anew on every run, so once a case has failed,
    // each simpler case is tried several times before it counts as passing:
    // otherwise shrinking stops at the first candidate that got lucky.
    let failed = Cell::new(false);
    let result = runner.run(&case(), |case| {
        let tries = if failed.get() { SHRINK_TRIES } else { 1 };
        for _ in 0..tries {
            let (config, _dir) = config(&case);
            if let Err(e) = run_case(&config, &case) {
                failed.set(true);
                return Err(TestCaseError::fail(e));
            }
        }
        Ok(())
    });
    match result {
        Ok(()) => {}
        Err(TestError::Fail(reason, case)) => {
            panic!("{reason}\nminimal failing case: {case:#?}")
        }
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn random_sequences_from_threads_match_the_model_on_local() {
    check(cases(32), |case| {
        let dir = tempfile::tempdir().unwrap();
        let config = common::config(dir.path(), &case.queue_batch());
        (config, Some(dir))
    });
}

#[test]
fn random_sequences_from_threads_match_the_model_on_etcd() {
    let Some(etcd) = Etcd::start() else {
        return;
    };
    check(cases(16), |case| {
        (etcd.config(&case.queue_batch(), ""), None)
    });
}

// ---------------------------------------------------------------------------
// Regression tests: shrunk cases the model found

/// Queues `count` writes to bucket `r` on a worker that holds them until a
/// stop (one batch, no interval), has another thread stop the handle, and
/// once a queued write is refused (that stop has taken the worker and is
/// applying the queue) calls `then` on this thread. Returns whether the
/// last queued write is stored when `then` has returned OK.
fn during_another_threads_stop(then: fn(Handle) -> Status) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let config = common::config(
        dir.path(),
        r#"{"size": 1000000, "interval": 3600, "capacity": 1000000}"#,
    );
    let db = Handle::open(&config).unwrap();
    let bucket = c("r");
    let count = 20_000;
    for i in 0..count {
        let status = db.write(&bucket, &format!("k{i:05}"), b"v", TETHER_QUEUE);
        assert_eq!(status, Status::Ok, "{}", last_error());
    }
    let stored = std::thread::scope(|s| {
        let stopper = s.spawn(move || db.stop());
        let mut refused = false;
        for _ in 0..10_000_000u64 {
            match db.write(&bucket, "probe", b"p", TETHER_QUEUE) {
                Status::Ok => std::thread::yield_now(),
                status => {
                    assert_eq!(status, Status::NotRunning, "{}", last_error());
                    refused = true;
                    break;
                }
            }
        }
        assert!(refused, "the other thread's stop never took the worker");
        assert_eq!(then(db), Status::Ok, "{}", last_error());
        let (status, _) = db.read(&bucket, &format!("k{:05}", count - 1)).unwrap();
        assert_eq!(stopper.join().unwrap(), Status::Ok);
        status == Status::Ok
    });
    assert_eq!(db.close(), Status::Ok);
    stored
}

/// docs/c-api.md: `tether_flush` returns once every write queued before it
/// is applied — also while another thread's `tether_stop` is applying them.
#[test]
fn flush_during_another_threads_stop_returns_after_the_queue_is_applied() {
    assert!(
        during_another_threads_stop(Handle::flush),
        "tether_flush returned OK before the writes queued before it were applied"
    );
}

/// docs/c-api.md: `tether_stop` is idempotent and applies every queued write
/// before it returns — also when another thread's stop is applying them.
#[test]
fn stop_during_another_threads_stop_returns_after_the_queue_is_applied() {
    assert!(
        during_another_threads_stop(Handle::stop),
        "tether_stop returned OK before the writes queued before it were applied"
    );
}
