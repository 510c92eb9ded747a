//! Model-based test (issue 7, point 5): random sequences of write, queued
//! write, update, delete, read, increment, list, keys-only list, delete
//! by prefix, flush, stop and start, issued through
//! the C ABI by several threads on one handle, each checked against an
//! in-memory model of what docs/c-api.md allows. Runs on `local` (a
//! temporary directory) and on a real etcd on loopback ports.
//!
//! How the model stays exact under concurrency:
//!
//! - Each thread owns a bucket, so only it changes its keys. What other
//!   threads do to its keys is limited to their `flush`, `stop` and `start`,
//!   which only make its queued writes land sooner (or refuse new ones).
//! - A key is modelled as a set of possible worlds: (stored value, how many
//!   of the key's queued writes have landed). Before each observation a
//!   world may apply any prefix of its queued writes (they land in order,
//!   at any moment), and what the call returns keeps only the worlds that
//!   agree with it. A read of a key with a queued write pending may thus
//!   see the old value or any newer queued one — nothing else; a direct
//!   write racing a pending queued write to the same key may be overwritten
//!   by it later (the contract orders queued writes among themselves only),
//!   and the next observation tells which happened.
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
//!   still hold exactly that.
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

/// One key of a thread's bucket.
#[derive(Clone, Debug)]
struct KeyModel {
    /// Values queued (accepted) since the thread's last flush/stop, in order.
    queued: Vec<Value>,
    /// The possible worlds: the stored value, and how many of `queued`
    /// have landed.
    worlds: BTreeSet<(Option<Value>, usize)>,
}

impl KeyModel {
    fn new() -> KeyModel {
        KeyModel {
            queued: Vec::new(),
            worlds: [(None, 0)].into(),
        }
    }

    /// Every world reachable by letting more queued writes land.
    fn closure(&self) -> BTreeSet<(Option<Value>, usize)> {
        let mut out = BTreeSet::new();
        for (stored, landed) in &self.worlds {
            out.insert((stored.clone(), *landed));
            for n in landed + 1..=self.queued.len() {
                out.insert((Some(self.queued[n - 1].clone()), n));
            }
        }
        out
    }

    /// What an observation may see now.
    fn possible(&self) -> BTreeSet<Option<Value>> {
        self.closure().into_iter().map(|(s, _)| s).collect()
    }

    /// Keeps the worlds where the key holds `seen` now; false when none does.
    fn observe(&mut self, seen: &Option<Value>) -> bool {
        let worlds: BTreeSet<_> = self
            .closure()
            .into_iter()
            .filter(|(stored, _)| stored == seen)
            .collect();
        if worlds.is_empty() {
            return false;
        }
        self.worlds = worlds;
        true
    }

    /// Keeps the worlds where the key is present (with any value) or
    /// absent, as a keys-only listing shows it; false when none is.
    fn observe_presence(&mut self, present: bool) -> bool {
        let worlds: BTreeSet<_> = self
            .closure()
            .into_iter()
            .filter(|(stored, _)| stored.is_some() == present)
            .collect();
        if worlds.is_empty() {
            return false;
        }
        self.worlds = worlds;
        true
    }

    /// A direct write, update or delete that took effect now, after any
    /// number of the queued writes landed.
    fn set(&mut self, value: Option<Value>) {
        self.worlds = self
            .closure()
            .iter()
            .map(|(_, landed)| (value.clone(), *landed))
            .collect();
    }

    /// The thread's flush or stop returned OK: every queued write landed.
    fn barrier(&mut self) {
        let last = self.queued.last().cloned();
        let len = self.queued.len();
        self.worlds = self
            .worlds
            .iter()
            .map(|(stored, landed)| match (&last, *landed < len) {
                (Some(last), true) => (Some(last.clone()), 0),
                _ => (stored.clone(), 0),
            })
            .collect();
        self.queued.clear();
    }

    /// The one value the key must hold, once it is settled.
    fn settled(&self) -> Option<&Option<Value>> {
        match (self.queued.is_empty(), self.worlds.len()) {
            (true, 1) => self.worlds.first().map(|(s, _)| s),
            _ => None,
        }
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
            if round > 0 && entries.is_empty() {
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
    /// where it is either bound.
    fn delete_prefix(&mut self, db: Handle, prefix: Option<&str>) -> Result<(), String> {
        let covered: Vec<&'static str> = KEYS
            .into_iter()
            .filter(|k| prefix.is_none_or(|p| k.starts_with(p)))
            .collect();
        let possible: Vec<BTreeSet<Option<Value>>> =
            covered.iter().map(|k| self.key(k).possible()).collect();
        let must = possible.iter().filter(|p| !p.contains(&None)).count() as u64;
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
        for (key, possible) in covered.into_iter().zip(possible) {
            let model = self.key(key);
            let uncertain = possible.contains(&None) && possible.len() > 1;
            if uncertain && deleted == may {
                model.observe_presence(true);
            } else if uncertain && deleted == must {
                model.observe_presence(false);
            }
            model.set(None);
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
            bucket.key(key).set(Some(v));
        }
        Op::Queue(key, kind) => {
            let v = value(thread, index, kind);
            let before = lifecycle.snapshot();
            let status = db.write(&name, key, &v, TETHER_QUEUE);
            let after = lifecycle.snapshot();
            expect(status, &Lifecycle::queued_write_may_return(before, after))?;
            if status == Status::Ok {
                bucket.key(key).queued.push(v);
            }
        }
        Op::Update(key, kind) => {
            let v = value(thread, index, kind);
            let model = bucket.key(key);
            let possible = model.possible();
            let mut allowed = Vec::new();
            if possible.iter().any(Option::is_some) {
                allowed.push(Status::Ok);
            }
            if possible.contains(&None) {
                allowed.push(Status::NotFound);
            }
            let status = db.update(&name, key, &v);
            expect(status, &allowed).map_err(|e| format!("{e} (the key may be {possible:?})"))?;
            if status == Status::Ok {
                model.worlds = model
                    .closure()
                    .into_iter()
                    .filter(|(stored, _)| stored.is_some())
                    .collect();
                model.set(Some(v));
            } else {
                model.observe(&None);
            }
        }
        Op::Delete(key) => {
            let model = bucket.key(key);
            let possible = model.possible();
            let mut allowed = Vec::new();
            if possible.iter().any(Option::is_some) {
                allowed.push(Status::Ok);
            }
            if possible.contains(&None) {
                allowed.push(Status::NotFound);
            }
            let status = db.delete(&name, key);
            expect(status, &allowed).map_err(|e| format!("{e} (the key may be {possible:?})"))?;
            if status == Status::Ok {
                model.worlds = model
                    .closure()
                    .into_iter()
                    .filter(|(stored, _)| stored.is_some())
                    .collect();
                model.set(None);
            } else {
                model.observe(&None);
            }
        }
        Op::Read(key) => {
            let (status, seen) = db.read(&name, key)?;
            expect(status, &[Status::Ok, Status::NotFound])?;
            let model = bucket.key(key);
            let possible = model.possible();
            if !model.observe(&seen) {
                return Err(format!("read {seen:?}, the model allows {possible:?}"));
            }
        }
        Op::Increment(key, delta) => {
            let model = bucket.key(key);
            let worlds = model.closure();
            let mut allowed = Vec::new();
            if worlds.iter().any(|(s, _)| incremented(s, delta).is_some()) {
                allowed.push(Status::Ok);
            }
            if worlds.iter().any(|(s, _)| incremented(s, delta).is_none()) {
                allowed.push(Status::Conflict);
            }
            let (status, got) = db.increment(&name, key, delta)?;
            let possible = model.possible();
            expect(status, &allowed).map_err(|e| format!("{e} (the key may be {possible:?})"))?;
            let counted = |(stored, _): &(Option<Value>, usize)| match status {
                Status::Ok => incremented(stored, delta) == Some(got),
                _ => incremented(stored, delta).is_none(),
            };
            model.worlds = worlds.into_iter().filter(counted).collect();
            if model.worlds.is_empty() {
                return Err(format!(
                    "increment by {delta}: {status:?}, value {got}; the key may be {possible:?}"
                ));
            }
            // A conflict changed nothing; an increment stored the text.
            if status == Status::Ok {
                model.set(Some(got.to_string().into_bytes()));
            }
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
        let expected = bucket.settled()?;
        let (listed, next) = db.list(&bucket.name, None, None, KEYS.len(), 0)?;
        let listed: BTreeMap<&str, Value> = listed
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
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
