//! The C entry points with arbitrary arguments, on the `local` backend.
//!
//! Each input is a sequence of calls (write, queued write, update, read,
//! delete, list, keys-only list and their page accessors, increment,
//! counter total, delete by prefix, `tether_write_ex`, `tether_read_ex`,
//! `tether_delete_ex`, `tether_touch`, flush, stop, start, calls on a
//! NULL handle) whose strings are raw NUL-terminated buffers of arbitrary
//! bytes: NULL, not UTF-8, with embedded NULs, `:` in buckets, empty keys.
//! Values are NULL or buffers of any size, with any length up to theirs,
//! flags any `u32` or any set of the known ones, versions the key's own,
//! an older one or any `u64`, and ttls 0, long (10 minutes and more: no
//! key expires while an input runs) or around the latest deadline engines
//! can hold. One handle serves many inputs (a fresh store every few
//! hundred), emptied before each, so that an input replayed alone does
//! what it did in the run; an in-memory model of the store checks every
//! answer:
//!
//! - the status is exactly the one the arguments call for (argument errors
//!   in the order the entry points check them), never TETHER_INTERNAL;
//! - a failed call leaves its out-parameters alone and sets a message;
//! - reads, updates, deletes and listings agree with what was written,
//!   except for keys with a queued write not yet flushed, which may hold
//!   either value until a call shows which;
//! - a page holds at most `page_size` entries in ascending key order,
//!   every key of the model that it should hold, and NULL for any index
//!   past its end (and for every value of a keys-only page, with length
//!   0);
//! - increments and totals (`tether_increment`, `tether_counter_total`)
//!   count from the decimal text the model holds, or conflict where it is
//!   no counter or a sum overflows, and change nothing then; a sharded
//!   increment leaves the counter's shards unknown, since it picks one at
//!   random;
//! - a delete by prefix counts at least the keys known present and at
//!   most those that may be, and leaves the bucket's own `bucket:` key;
//! - versions: a version given (`out_version`, `tether_read_ex`) is never
//!   0, is the one last given while the key has not changed (nor been
//!   touched or read with TETHER_SLIDING, which may move it), and a
//!   write's is above every version the key had; TETHER_IF_VERSION is OK
//!   exactly at the key's version where the model knows it, TETHER_CONFLICT
//!   at another (always below the largest seen, and at 0),
//!   TETHER_NOT_FOUND where it is absent; TETHER_IF_ABSENT conflicts where
//!   the key is present; a failed condition changes nothing;
//!   `out_version` is written only by a direct write that succeeded;
//! - TETHER_INVALID_ARGUMENT for both conditions, a condition with
//!   TETHER_QUEUE, TETHER_SLIDING without a ttl, an unknown flag, one of
//!   `tether_read_ex`'s value outputs NULL without the other, and a ttl
//!   whose deadline passes i64::MAX ms (from `tether_write_ex` before the
//!   backend and key are checked, from `tether_touch` after);
//! - a write with a ttl is a write for every other call, `tether_touch`
//!   keeps the value (TETHER_NOT_FOUND where the key is absent), and
//!   `tether_read_ex` with both value outputs NULL says whether the key
//!   exists.
#![no_main]

use std::collections::{BTreeMap, HashSet};
use std::ffi::{c_char, CStr};
use std::path::PathBuf;
use std::ptr;
use std::sync::{Mutex, Once};

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use tetherdb::ffi::*;
use tetherdb::Status;

/// Inputs on one store, and bytes written to it, before it is replaced by
/// a fresh one, so that the store (and sled's cache) stays small however
/// long the run.
const INPUTS_PER_STORE: u32 = 300;
const BYTES_PER_STORE: usize = 64 << 20;
const MAX_CALLS: usize = 48;

const BACKENDS: &[&[u8]] = &[b"local", b"", b"etcd", b"nope", b"\xff", b"loc\0al"];
const BUCKETS: &[&[u8]] = &[
    b"b",
    b"",
    b"bb",
    b"a:b",
    b":",
    b"b\0:x",
    b"\xc3",
    b"\xc3\xa9",
];
const KEYS: &[&[u8]] = &[
    b"k",
    b"k2",
    b"",
    b"k:x",
    b"\0k",
    b"k\0x",
    b"\xff",
    b"\xe2\x82\xac",
    b"kk",
];

/// A C string argument: NULL, or a heap buffer holding the bytes and one
/// NUL after them (the buffer ends there, so a read past it is caught).
#[derive(Arbitrary, Debug, Clone)]
enum Text {
    Null,
    Backend(u8),
    Bucket(u8),
    Key(u8),
    Raw(Vec<u8>),
}

impl Text {
    fn bytes(&self) -> Option<Vec<u8>> {
        let pick = |table: &[&[u8]], i: u8| table[usize::from(i) % table.len()].to_vec();
        match self {
            Text::Null => None,
            Text::Backend(i) => Some(pick(BACKENDS, *i)),
            Text::Bucket(i) => Some(pick(BUCKETS, *i)),
            Text::Key(i) => Some(pick(KEYS, *i)),
            Text::Raw(bytes) => Some(bytes.clone()),
        }
    }
}

/// What the library sees of a C string: the bytes up to the first NUL.
struct CArg {
    buffer: Option<Box<[u8]>>,
}

impl CArg {
    fn new(text: &Text) -> CArg {
        CArg {
            buffer: text.bytes().map(|mut b| {
                b.push(0);
                b.into_boxed_slice()
            }),
        }
    }

    fn ptr(&self) -> *const c_char {
        self.buffer
            .as_ref()
            .map_or(ptr::null(), |b| b.as_ptr().cast())
    }

    /// None for NULL; else the bytes before the first NUL.
    fn seen(&self) -> Option<&[u8]> {
        let buffer = self.buffer.as_ref()?;
        let end = buffer.iter().position(|&b| b == 0).unwrap();
        Some(&buffer[..end])
    }

    fn utf8(&self) -> Result<Option<&str>, ()> {
        match self.seen() {
            None => Ok(None),
            Some(bytes) => std::str::from_utf8(bytes).map(Some).map_err(drop),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum ValueArg {
    /// NULL with this length (only 0 is allowed).
    Null(usize),
    /// These bytes, passing `cut` fewer of them than the buffer holds.
    Bytes { bytes: Vec<u8>, cut: u16 },
    /// `kib` KiB of one byte (up to 64 KiB).
    Fill { byte: u8, kib: u8 },
}

impl ValueArg {
    fn make(&self) -> (Option<Vec<u8>>, usize) {
        match self {
            ValueArg::Null(len) => (None, *len),
            ValueArg::Bytes { bytes, cut } => {
                let len = bytes.len() - usize::from(*cut).min(bytes.len());
                (Some(bytes.clone()), len)
            }
            ValueArg::Fill { byte, kib } => {
                let value = vec![*byte; usize::from(*kib % 65) * 1024];
                let len = value.len();
                (Some(value), len)
            }
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Flags {
    Direct,
    Queue,
    Raw(u32),
}

#[derive(Arbitrary, Debug)]
enum StartAfter {
    Text(Text),
    /// The next marker of the last page this input listed.
    Next,
}

#[derive(Arbitrary, Debug)]
enum PageSize {
    Small(u8),
    Raw(usize),
}

#[derive(Arbitrary, Debug)]
enum Delta {
    Small(i8),
    Raw(i64),
}

#[derive(Arbitrary, Debug)]
enum Shards {
    /// 0 to 3: unsharded, or a few shards.
    Few(u8),
    /// Any: above TETHER_MAX_SHARDS is an invalid argument.
    Raw(u32),
}

#[derive(Arbitrary, Debug)]
enum ListFlags {
    Values,
    KeysOnly,
    Raw(u32),
}

/// The flags of `tether_write_ex`: any set of the known ones (valid or
/// not together), or any `u32`.
#[derive(Arbitrary, Debug)]
enum ExFlags {
    Known {
        queue: bool,
        if_absent: bool,
        if_version: bool,
        sliding: bool,
    },
    Raw(u32),
}

#[derive(Arbitrary, Debug)]
enum DeleteFlags {
    None,
    IfVersion,
    Raw(u32),
}

/// Long enough that no key expires while an input runs: expiry is
/// time-based, and not modelled.
const LONG_TTL_MS: u64 = 10 * 60 * 1000;

#[derive(Arbitrary, Debug)]
enum TtlArg {
    Zero,
    /// LONG_TTL_MS and up to a minute more.
    Long(u16),
    /// A deadline just before or past the latest one engines can hold,
    /// i64::MAX ms since the epoch: `i64::MAX - now + n`.
    Edge(i16),
    /// Any, but no shorter than LONG_TTL_MS.
    Raw(u64),
}

impl TtlArg {
    fn ms(&self) -> u64 {
        match self {
            TtlArg::Zero => 0,
            TtlArg::Long(n) => LONG_TTL_MS + u64::from(*n),
            TtlArg::Edge(n) => (i64::MAX as u64)
                .saturating_sub(now_ms())
                .saturating_add_signed(i64::from(*n))
                .max(LONG_TTL_MS),
            TtlArg::Raw(n) => (*n).max(LONG_TTL_MS),
        }
    }
}

/// The version a conditional write or delete is given.
#[derive(Arbitrary, Debug)]
enum VersionArg {
    /// The key's version where the model knows it, else the largest seen.
    Known,
    /// One below the largest seen, which the key can no longer have.
    Older,
    Raw(u64),
}

/// The arguments of `tether_list` and `tether_list_ex`.
#[derive(Clone, Copy)]
struct ListArgs<'a> {
    null_db: bool,
    backend: &'a Text,
    bucket: &'a Text,
    prefix: &'a Text,
    start_after: &'a StartAfter,
    page_size: &'a PageSize,
    null_out: bool,
    indices: &'a [usize],
}

#[derive(Arbitrary, Debug)]
enum Call {
    Write {
        null_db: bool,
        backend: Text,
        bucket: Text,
        key: Text,
        value: ValueArg,
        flags: Flags,
    },
    Update {
        null_db: bool,
        backend: Text,
        bucket: Text,
        key: Text,
        value: ValueArg,
    },
    Read {
        null_db: bool,
        backend: Text,
        bucket: Text,
        key: Text,
        null_value: bool,
        null_len: bool,
    },
    Delete {
        null_db: bool,
        backend: Text,
        bucket: Text,
        key: Text,
    },
    List {
        null_db: bool,
        backend: Text,
        bucket: Text,
        prefix: Text,
        start_after: StartAfter,
        page_size: PageSize,
        null_out: bool,
        indices: Vec<usize>,
    },
    Increment {
        null_db: bool,
        backend: Text,
        bucket: Text,
        key: Text,
        delta: Delta,
        shards: Shards,
        null_out: bool,
    },
    CounterTotal {
        null_db: bool,
        backend: Text,
        bucket: Text,
        key: Text,
        shards: Shards,
        null_out: bool,
    },
    ListEx {
        null_db: bool,
        backend: Text,
        bucket: Text,
        prefix: Text,
        start_after: StartAfter,
        page_size: PageSize,
        null_out: bool,
        indices: Vec<usize>,
        flags: ListFlags,
    },
    DeletePrefix {
        null_db: bool,
        backend: Text,
        bucket: Text,
        prefix: Text,
        null_out: bool,
    },
    WriteEx {
        null_db: bool,
        backend: Text,
        bucket: Text,
        key: Text,
        value: ValueArg,
        flags: ExFlags,
        ttl: TtlArg,
        version: VersionArg,
        null_out: bool,
    },
    ReadEx {
        null_db: bool,
        backend: Text,
        bucket: Text,
        key: Text,
        null_value: bool,
        null_len: bool,
        null_version: bool,
    },
    DeleteEx {
        null_db: bool,
        backend: Text,
        bucket: Text,
        key: Text,
        flags: DeleteFlags,
        version: VersionArg,
    },
    Touch {
        null_db: bool,
        backend: Text,
        bucket: Text,
        key: Text,
        ttl: TtlArg,
    },
    Flush {
        null_db: bool,
    },
    Stop {
        null_db: bool,
    },
    Start {
        null_db: bool,
    },
    NullPage {
        index: usize,
    },
    FreeNull {
        len: usize,
    },
}

/// What the model knows of one stored key.
#[derive(Clone, Debug, PartialEq)]
enum Slot {
    Known(Option<Vec<u8>>),
    /// A queued write and a direct call raced for it: either value.
    Unknown,
}

/// What the model knows of a stored key's version.
#[derive(Clone, Copy, Debug, Default)]
struct Versions {
    /// Its version now, where a call gave it and nothing changed it since
    /// (no queued write in flight).
    exact: Option<u64>,
    /// The largest version a call gave of it: it is at least that now,
    /// and a change gives it a larger one.
    seen: u64,
    /// Whether it may have been written with TETHER_SLIDING: each read
    /// may then move its deadline, and so its version (etcd puts the key
    /// again; local keeps the version).
    sliding: bool,
}

struct Handle(*mut TetherDb);
// The C ABI promises a handle may be used from any thread.
unsafe impl Send for Handle {}

struct State {
    db: Handle,
    dir: PathBuf,
    inputs: u32,
    written: usize,
    running: bool,
    /// Stored key → what it holds; a key absent here is absent.
    model: BTreeMap<Vec<u8>, Slot>,
    /// Stored keys with a queued write that no flush or stop has applied.
    pending: HashSet<Vec<u8>>,
    versions: BTreeMap<Vec<u8>, Versions>,
}

static STATE: Mutex<Option<State>> = Mutex::new(None);

extern "C" {
    fn atexit(callback: extern "C" fn()) -> std::ffi::c_int;
}

/// Closes the last handle when libFuzzer exits at the end of a run, and
/// removes its store. LeakSanitizer's check at exit, registered before
/// this and so run after it, otherwise reports what the handle's threads
/// (worker, flushers, sweep) hold as leaks, now and then.
extern "C" fn close_at_exit() {
    let mut guard = STATE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(state) = guard.take() {
        close(state);
    }
}

static AT_EXIT: Once = Once::new();

fn last_error() -> String {
    unsafe { CStr::from_ptr(tether_last_error()) }
        .to_string_lossy()
        .into_owned()
}

fn open() -> State {
    let dir = tempfile::Builder::new()
        .prefix("tetherdb-fuzz-ffi")
        .tempdir()
        .unwrap()
        .keep();
    let json = format!(
        "{{\"logging\": \"none\", \"local\": {{\"filepath\": {:?}}}, \
         \"queue_batch\": {{\"size\": 4, \"interval\": 0.01, \"capacity\": 64}}}}\0",
        dir.join("db").to_str().unwrap()
    );
    let mut db = ptr::null_mut();
    let status = unsafe { tether_open(json.as_ptr().cast(), &mut db) };
    assert_eq!(status, Status::Ok, "{}", last_error());
    State {
        db: Handle(db),
        dir,
        inputs: 0,
        written: 0,
        running: true,
        model: BTreeMap::new(),
        pending: HashSet::new(),
        versions: BTreeMap::new(),
    }
}

fn close(state: State) {
    assert_eq!(
        unsafe { tether_close(state.db.0) },
        Status::Ok,
        "{}",
        last_error()
    );
    let _ = std::fs::remove_dir_all(&state.dir);
}

/// Asserts that a call returned `want`, and that a failure says why.
fn expect(call: &str, got: Status, want: Status) {
    assert_eq!(got, want, "{call}: {}", last_error());
    if got != Status::Ok {
        assert!(!last_error().is_empty(), "{call} failed without a message");
    }
}

/// The checks `keyed` makes in the entry points: the handle, then each
/// string's UTF-8, then the key's presence. Returns the status they give,
/// or the checked strings.
struct Keyed<'a> {
    backend: Option<&'a str>,
    bucket: Option<&'a str>,
    key: &'a str,
}

fn keyed<'a>(
    null_db: bool,
    backend: &'a CArg,
    bucket: &'a CArg,
    key: &'a CArg,
) -> Result<Keyed<'a>, Status> {
    let invalid = Status::InvalidArgument;
    if null_db {
        return Err(invalid);
    }
    let backend = backend.utf8().map_err(|_| invalid)?;
    let bucket = bucket.utf8().map_err(|_| invalid)?;
    let key = key.utf8().map_err(|_| invalid)?.ok_or(invalid)?;
    Ok(Keyed {
        backend,
        bucket,
        key,
    })
}

/// A counter's value as the library parses it: UTF-8, an optional sign
/// and ASCII digits, within an i64.
fn counter(value: &[u8]) -> Option<i64> {
    std::str::from_utf8(value).ok()?.parse().ok()
}

fn shard_count(shards: &Shards) -> u32 {
    match shards {
        Shards::Few(n) => u32::from(n % 4),
        Shards::Raw(n) => *n,
    }
}

/// The stored keys of a counter's `shards` shards.
fn shard_keys(stored: &[u8], shards: u32) -> Vec<Vec<u8>> {
    (0..shards)
        .map(|i| [stored, format!("#shard{i}").as_bytes()].concat())
        .collect()
}

/// The time in ms since the epoch, as the library rounds it (up) for
/// deadlines.
fn now_ms() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    now.as_micros().div_ceil(1000) as u64
}

/// Whether a ttl of `ttl_ms`, from a call made between `before` and
/// `after` (ms), gives a deadline engines can hold (up to i64::MAX ms);
/// `None` where that depends on the moment within.
fn deadline_fits(ttl_ms: u64, before: u64, after: u64) -> Option<bool> {
    let fits = |now: u64| {
        now.checked_add(ttl_ms)
            .is_some_and(|at| at <= i64::MAX as u64)
    };
    match (fits(before), fits(after)) {
        (true, true) => Some(true),
        (false, false) => Some(false),
        _ => None,
    }
}

/// Checks a ttl: `Err` with TETHER_INVALID_ARGUMENT where the deadline
/// overflows, or may and the call said so (`got`).
fn check_ttl(ttl_ms: u64, before: u64, after: u64, got: Status) -> Result<(), Status> {
    match deadline_fits(ttl_ms, before, after) {
        _ if ttl_ms == 0 => Ok(()),
        Some(false) => Err(Status::InvalidArgument),
        None if got == Status::InvalidArgument => Err(Status::InvalidArgument),
        _ => Ok(()),
    }
}

/// Asserts that a call returned one of `allowed`, and that a failure says
/// why.
fn expect_one_of(call: &str, got: Status, allowed: &[Status]) {
    assert!(
        allowed.contains(&got),
        "{call}: {got:?}, expected one of {allowed:?}: {}",
        last_error()
    );
    if got != Status::Ok {
        assert!(!last_error().is_empty(), "{call} failed without a message");
    }
}

fn known_backend(backend: Option<&str>) -> bool {
    matches!(backend, None | Some("") | Some("local"))
}

fn bucket_prefix(bucket: Option<&str>) -> Result<Vec<u8>, Status> {
    match bucket {
        None | Some("") => Ok(Vec::new()),
        Some(b) if b.contains(':') => Err(Status::InvalidArgument),
        Some(b) => Ok([b.as_bytes(), b":"].concat()),
    }
}

/// The checks `Db::target` makes after the conversions: the backend, then
/// the key and bucket. Returns the stored key.
fn target(k: &Keyed) -> Result<Vec<u8>, Status> {
    if !known_backend(k.backend) {
        return Err(Status::UnknownBackend);
    }
    if k.key.is_empty() {
        return Err(Status::InvalidArgument);
    }
    Ok([bucket_prefix(k.bucket)?, k.key.as_bytes().to_vec()].concat())
}

impl State {
    fn slot(&self, key: &[u8]) -> Slot {
        self.model.get(key).cloned().unwrap_or(Slot::Known(None))
    }

    /// Records what a call showed or did to `key`: a key with a queued
    /// write in flight stays unknown.
    fn learn(&mut self, key: &[u8], value: Option<Vec<u8>>) {
        let slot = match self.pending.contains(key) {
            true => Slot::Unknown,
            false => Slot::Known(value),
        };
        self.model.insert(key.to_vec(), slot);
    }

    /// Empties the store, so that each input starts from an empty one, as
    /// when it is replayed alone, and restarts the worker.
    fn clear(&mut self) {
        let db = self.db.0;
        unsafe {
            // Queued writes still in flight are applied by stop.
            if !self.pending.is_empty() {
                assert_eq!(tether_stop(db), Status::Ok, "{}", last_error());
                self.running = false;
            }
            if !self.running {
                assert_eq!(tether_start(db), Status::Ok, "{}", last_error());
            }
            loop {
                let mut page = ptr::null_mut();
                let status = tether_list(
                    db,
                    ptr::null(),
                    ptr::null(),
                    ptr::null(),
                    ptr::null(),
                    1000,
                    &mut page,
                );
                assert_eq!(status, Status::Ok, "{}", last_error());
                let len = tether_page_len(page);
                for i in 0..len {
                    let status =
                        tether_delete(db, ptr::null(), ptr::null(), tether_page_key(page, i));
                    assert_eq!(status, Status::Ok, "{}", last_error());
                }
                tether_page_free(page);
                if len == 0 {
                    break;
                }
            }
        }
        self.running = true;
        self.model.clear();
        self.pending.clear();
        self.versions.clear();
    }

    fn applied(&mut self) {
        self.pending.clear();
    }

    fn versions(&self, key: &[u8]) -> Versions {
        self.versions.get(key).copied().unwrap_or_default()
    }

    /// The value of `key` changed, or a queued write to it may land:
    /// its version is unknown. `sliding`: whether the change wrote it with
    /// TETHER_SLIDING; `None` for a change that keeps its expiry (update,
    /// increment). With a queued write in flight either may hold it last.
    fn changed(&mut self, key: &[u8], sliding: Option<bool>) {
        let pending = self.pending.contains(key);
        let versions = self.versions.entry(key.to_vec()).or_default();
        versions.exact = None;
        versions.sliding = match sliding {
            Some(sliding) if !pending => sliding,
            Some(sliding) => sliding || versions.sliding,
            None => versions.sliding,
        };
    }

    /// A read of `key` (or a call that reads it first: an increment, a
    /// total, a condition on version 0) may have moved a sliding
    /// deadline, and with it the version.
    fn read_key(&mut self, key: &[u8]) {
        if let Some(versions) = self.versions.get_mut(key) {
            if versions.sliding {
                versions.exact = None;
            }
        }
    }

    /// A call gave `version` as the key's version now.
    fn saw_version(&mut self, key: &[u8], version: u64) {
        let pending = self.pending.contains(key);
        let versions = self.versions.entry(key.to_vec()).or_default();
        versions.seen = versions.seen.max(version);
        // A queued write may land at any moment and change it.
        versions.exact = (!pending).then_some(version);
    }

    /// The version a call is given for `version`, on the stored key
    /// `stored` where the arguments name one.
    fn pick_version(&self, version: &VersionArg, stored: Option<&[u8]>) -> u64 {
        let versions = stored.map(|s| self.versions(s)).unwrap_or_default();
        match version {
            VersionArg::Known => versions.exact.unwrap_or(versions.seen),
            VersionArg::Older => versions.seen.saturating_sub(1),
            VersionArg::Raw(n) => *n,
        }
    }

    /// What TETHER_IF_VERSION `version` may return on `stored`.
    fn if_version_statuses(&self, stored: &[u8], version: u64) -> Vec<Status> {
        let versions = self.versions(stored);
        match self.slot(stored) {
            Slot::Known(None) => vec![Status::NotFound],
            Slot::Unknown => vec![Status::Ok, Status::Conflict, Status::NotFound],
            // No key has version 0, nor one below a version it had.
            Slot::Known(Some(_)) if version == 0 || version < versions.seen => {
                vec![Status::Conflict]
            }
            Slot::Known(Some(_)) => match versions.exact {
                Some(exact) if exact == version => vec![Status::Ok],
                Some(_) => vec![Status::Conflict],
                None => vec![Status::Ok, Status::Conflict],
            },
        }
    }

    fn run(&mut self, call: &Call, next: &mut Option<Vec<u8>>) {
        let db = |null_db: bool| if null_db { ptr::null_mut() } else { self.db.0 };
        match call {
            Call::Write {
                null_db,
                backend,
                bucket,
                key,
                value,
                flags,
            } => {
                let (backend, bucket, key) =
                    (CArg::new(backend), CArg::new(bucket), CArg::new(key));
                let (buffer, len) = value.make();
                let value_ptr = buffer.as_ref().map_or(ptr::null(), |b| b.as_ptr());
                let flags = match flags {
                    Flags::Direct => 0,
                    Flags::Queue => TETHER_QUEUE,
                    Flags::Raw(f) => *f,
                };
                self.written += buffer.as_ref().map_or(0, Vec::len);
                let got = unsafe {
                    tether_write(
                        db(*null_db),
                        backend.ptr(),
                        bucket.ptr(),
                        key.ptr(),
                        value_ptr,
                        len,
                        flags,
                    )
                };
                let want = keyed(*null_db, &backend, &bucket, &key).and_then(|k| {
                    match (buffer.is_none() && len > 0, flags) {
                        (true, _) | (_, 2..) => Err(Status::InvalidArgument),
                        _ => target(&k),
                    }
                });
                let stored = match want {
                    Err(want) => return expect("tether_write", got, want),
                    Ok(stored) => stored,
                };
                let bytes = buffer.map(|b| b[..len].to_vec()).unwrap_or_default();
                if flags == 0 {
                    expect("tether_write", got, Status::Ok);
                    self.learn(&stored, Some(bytes));
                    self.changed(&stored, Some(false));
                } else if self.running {
                    expect("tether_write(TETHER_QUEUE)", got, Status::Ok);
                    self.pending.insert(stored.clone());
                    self.changed(&stored, Some(false));
                    self.model.insert(stored, Slot::Unknown);
                } else {
                    expect("tether_write(TETHER_QUEUE)", got, Status::NotRunning);
                }
            }
            Call::Update {
                null_db,
                backend,
                bucket,
                key,
                value,
            } => {
                let (backend, bucket, key) =
                    (CArg::new(backend), CArg::new(bucket), CArg::new(key));
                let (buffer, len) = value.make();
                let value_ptr = buffer.as_ref().map_or(ptr::null(), |b| b.as_ptr());
                self.written += buffer.as_ref().map_or(0, Vec::len);
                let got = unsafe {
                    tether_update(
                        db(*null_db),
                        backend.ptr(),
                        bucket.ptr(),
                        key.ptr(),
                        value_ptr,
                        len,
                    )
                };
                let want = keyed(*null_db, &backend, &bucket, &key).and_then(|k| {
                    match buffer.is_none() && len > 0 {
                        true => Err(Status::InvalidArgument),
                        false => target(&k),
                    }
                });
                let stored = match want {
                    Err(want) => return expect("tether_update", got, want),
                    Ok(stored) => stored,
                };
                let bytes = buffer.map(|b| b[..len].to_vec()).unwrap_or_default();
                match (self.slot(&stored), got) {
                    (Slot::Known(Some(_)) | Slot::Unknown, Status::Ok) => {
                        self.learn(&stored, Some(bytes));
                        self.changed(&stored, None);
                    }
                    (Slot::Known(None) | Slot::Unknown, Status::NotFound) => {
                        self.learn(&stored, None)
                    }
                    (slot, got) => panic!("tether_update of {slot:?}: {got:?}: {}", last_error()),
                }
            }
            Call::Read {
                null_db,
                backend,
                bucket,
                key,
                null_value,
                null_len,
            } => {
                let (backend, bucket, key) =
                    (CArg::new(backend), CArg::new(bucket), CArg::new(key));
                // Not `dangling`: that is what an empty value's pointer is.
                let sentinel = ptr::without_provenance_mut::<u8>(0xdead0);
                let (mut out, mut len) = (sentinel, 7usize);
                let out_ptr = if *null_value {
                    ptr::null_mut()
                } else {
                    &mut out as *mut _
                };
                let len_ptr = if *null_len {
                    ptr::null_mut()
                } else {
                    &mut len as *mut _
                };
                let got = unsafe {
                    tether_read(
                        db(*null_db),
                        backend.ptr(),
                        bucket.ptr(),
                        key.ptr(),
                        out_ptr,
                        len_ptr,
                    )
                };
                let want = keyed(*null_db, &backend, &bucket, &key).and_then(|k| {
                    match *null_value || *null_len {
                        true => Err(Status::InvalidArgument),
                        false => target(&k),
                    }
                });
                let stored = match want {
                    Err(want) => {
                        expect("tether_read", got, want);
                        return assert_eq!((out, len), (sentinel, 7), "outputs written");
                    }
                    Ok(stored) => stored,
                };
                let value = match got {
                    Status::Ok => {
                        assert!(!out.is_null() && out != sentinel);
                        let value = unsafe { std::slice::from_raw_parts(out, len) }.to_vec();
                        unsafe { tether_free(out, len) };
                        Some(value)
                    }
                    Status::NotFound => {
                        assert_eq!((out, len), (sentinel, 7), "outputs written");
                        None
                    }
                    other => panic!("tether_read: {other:?}: {}", last_error()),
                };
                match self.slot(&stored) {
                    Slot::Unknown => self.learn(&stored, value),
                    Slot::Known(want) => assert_eq!(value, want, "tether_read of {stored:?}"),
                }
                self.read_key(&stored);
            }
            Call::Delete {
                null_db,
                backend,
                bucket,
                key,
            } => {
                let (backend, bucket, key) =
                    (CArg::new(backend), CArg::new(bucket), CArg::new(key));
                let got =
                    unsafe { tether_delete(db(*null_db), backend.ptr(), bucket.ptr(), key.ptr()) };
                let stored = match keyed(*null_db, &backend, &bucket, &key).and_then(|k| target(&k))
                {
                    Err(want) => return expect("tether_delete", got, want),
                    Ok(stored) => stored,
                };
                match (self.slot(&stored), got) {
                    (Slot::Known(Some(_)) | Slot::Unknown, Status::Ok)
                    | (Slot::Known(None) | Slot::Unknown, Status::NotFound) => {
                        self.learn(&stored, None);
                        self.changed(&stored, Some(false));
                    }
                    (slot, got) => panic!("tether_delete of {slot:?}: {got:?}: {}", last_error()),
                }
            }
            Call::List {
                null_db,
                backend,
                bucket,
                prefix,
                start_after,
                page_size,
                null_out,
                indices,
            } => {
                let args = ListArgs {
                    null_db: *null_db,
                    backend,
                    bucket,
                    prefix,
                    start_after,
                    page_size,
                    null_out: *null_out,
                    indices,
                };
                self.list(&args, None, next)
            }
            Call::Increment {
                null_db,
                backend,
                bucket,
                key,
                delta,
                shards,
                null_out,
            } => {
                let (backend, bucket, key) =
                    (CArg::new(backend), CArg::new(bucket), CArg::new(key));
                let delta = match delta {
                    Delta::Small(n) => i64::from(*n),
                    Delta::Raw(n) => *n,
                };
                let shards = shard_count(shards);
                let mut out = 7i64;
                let out_ptr = if *null_out {
                    ptr::null_mut()
                } else {
                    &mut out as *mut i64
                };
                let got = unsafe {
                    tether_increment(
                        db(*null_db),
                        backend.ptr(),
                        bucket.ptr(),
                        key.ptr(),
                        delta,
                        shards,
                        out_ptr,
                    )
                };
                let want = keyed(*null_db, &backend, &bucket, &key)
                    .and_then(|k| target(&k))
                    .and_then(|stored| match shards > TETHER_MAX_SHARDS {
                        true => Err(Status::InvalidArgument),
                        false => Ok(stored),
                    });
                let stored = match want {
                    Err(want) => {
                        expect("tether_increment", got, want);
                        return assert_eq!(out, 7, "out_value written");
                    }
                    Ok(stored) => stored,
                };
                if shards > 1 {
                    // One shard, at random: each may have changed.
                    match got {
                        Status::Ok | Status::Conflict => {}
                        other => panic!("tether_increment: {other:?}: {}", last_error()),
                    }
                    if got != Status::Ok || *null_out {
                        assert_eq!(out, 7, "out_value written");
                    }
                    for shard in shard_keys(&stored, shards) {
                        self.changed(&shard, None);
                        self.model.insert(shard, Slot::Unknown);
                    }
                    return;
                }
                // It reads the key first, then writes it where it can.
                match got {
                    Status::Ok => self.changed(&stored, None),
                    _ => self.read_key(&stored),
                }
                let sum = match self.slot(&stored) {
                    Slot::Known(None) => Some(delta),
                    Slot::Known(Some(value)) => counter(&value).and_then(|c| c.checked_add(delta)),
                    // Either way; the value given, if any, is the new one.
                    Slot::Unknown => {
                        match got {
                            Status::Ok if !*null_out => {
                                self.learn(&stored, Some(out.to_string().into_bytes()))
                            }
                            Status::Ok | Status::Conflict => {
                                assert_eq!(out, 7, "out_value written")
                            }
                            other => panic!("tether_increment: {other:?}: {}", last_error()),
                        }
                        return;
                    }
                };
                match sum {
                    None => {
                        expect("tether_increment", got, Status::Conflict);
                        assert_eq!(out, 7, "out_value written");
                    }
                    Some(sum) => {
                        expect("tether_increment", got, Status::Ok);
                        if !*null_out {
                            assert_eq!(out, sum, "the new value of {stored:?}");
                        }
                        self.learn(&stored, Some(sum.to_string().into_bytes()));
                    }
                }
            }
            Call::CounterTotal {
                null_db,
                backend,
                bucket,
                key,
                shards,
                null_out,
            } => {
                let (backend, bucket, key) =
                    (CArg::new(backend), CArg::new(bucket), CArg::new(key));
                let shards = shard_count(shards);
                let mut out = 7i64;
                let out_ptr = if *null_out {
                    ptr::null_mut()
                } else {
                    &mut out as *mut i64
                };
                let got = unsafe {
                    tether_counter_total(
                        db(*null_db),
                        backend.ptr(),
                        bucket.ptr(),
                        key.ptr(),
                        shards,
                        out_ptr,
                    )
                };
                let want = keyed(*null_db, &backend, &bucket, &key).and_then(|k| match *null_out {
                    true => Err(Status::InvalidArgument),
                    false => target(&k),
                });
                let want = want.and_then(|stored| match shards > TETHER_MAX_SHARDS {
                    true => Err(Status::InvalidArgument),
                    false => Ok(stored),
                });
                let stored = match want {
                    Err(want) => {
                        expect("tether_counter_total", got, want);
                        return assert_eq!(out, 7, "out_value written");
                    }
                    Ok(stored) => stored,
                };
                let keys = match shards {
                    0 | 1 => vec![stored],
                    _ => shard_keys(&stored, shards),
                };
                keys.iter().for_each(|key| self.read_key(key));
                // The total the model knows, if it knows every key's.
                let mut total = Some(Some(0i128));
                for key in &keys {
                    total = match (total, self.slot(key)) {
                        (None, _) | (_, Slot::Unknown) => None,
                        (Some(sum), Slot::Known(None)) => Some(sum),
                        (Some(sum), Slot::Known(Some(value))) => {
                            Some(sum.zip(counter(&value)).map(|(s, c)| s + i128::from(c)))
                        }
                    };
                }
                match total.map(|sum| sum.and_then(|s| i64::try_from(s).ok())) {
                    Some(None) => expect("tether_counter_total", got, Status::Conflict),
                    Some(Some(sum)) => {
                        expect("tether_counter_total", got, Status::Ok);
                        assert_eq!(out, sum, "the total of {keys:?}");
                    }
                    None => match got {
                        Status::Ok | Status::Conflict => {}
                        other => panic!("tether_counter_total: {other:?}: {}", last_error()),
                    },
                }
                if got != Status::Ok {
                    assert_eq!(out, 7, "out_value written");
                }
            }
            Call::ListEx {
                null_db,
                backend,
                bucket,
                prefix,
                start_after,
                page_size,
                null_out,
                indices,
                flags,
            } => {
                let args = ListArgs {
                    null_db: *null_db,
                    backend,
                    bucket,
                    prefix,
                    start_after,
                    page_size,
                    null_out: *null_out,
                    indices,
                };
                let flags = match flags {
                    ListFlags::Values => 0,
                    ListFlags::KeysOnly => TETHER_KEYS_ONLY,
                    ListFlags::Raw(f) => *f,
                };
                self.list(&args, Some(flags), next)
            }
            Call::DeletePrefix {
                null_db,
                backend,
                bucket,
                prefix,
                null_out,
            } => self.delete_prefix(*null_db, backend, bucket, prefix, *null_out),
            Call::WriteEx {
                null_db,
                backend,
                bucket,
                key,
                value,
                flags,
                ttl,
                version,
                null_out,
            } => {
                let flags = match flags {
                    ExFlags::Known {
                        queue,
                        if_absent,
                        if_version,
                        sliding,
                    } => {
                        let flag = |on: &bool, flag: u32| if *on { flag } else { 0 };
                        flag(queue, TETHER_QUEUE)
                            | flag(if_absent, TETHER_IF_ABSENT)
                            | flag(if_version, TETHER_IF_VERSION)
                            | flag(sliding, TETHER_SLIDING)
                    }
                    ExFlags::Raw(f) => *f,
                };
                self.write_ex(
                    *null_db, backend, bucket, key, value, flags, ttl, version, *null_out,
                )
            }
            Call::ReadEx {
                null_db,
                backend,
                bucket,
                key,
                null_value,
                null_len,
                null_version,
            } => {
                let (backend, bucket, key) =
                    (CArg::new(backend), CArg::new(bucket), CArg::new(key));
                // Not `dangling`: that is what an empty value's pointer is.
                let sentinel = ptr::without_provenance_mut::<u8>(0xdead0);
                let (mut out, mut len, mut version) = (sentinel, 7usize, u64::MAX);
                let out_ptr = if *null_value {
                    ptr::null_mut()
                } else {
                    &mut out as *mut _
                };
                let len_ptr = if *null_len {
                    ptr::null_mut()
                } else {
                    &mut len as *mut _
                };
                let version_ptr = if *null_version {
                    ptr::null_mut()
                } else {
                    &mut version as *mut _
                };
                let got = unsafe {
                    tether_read_ex(
                        db(*null_db),
                        backend.ptr(),
                        bucket.ptr(),
                        key.ptr(),
                        out_ptr,
                        len_ptr,
                        version_ptr,
                    )
                };
                // Both value outputs or neither (an existence check).
                let want = keyed(*null_db, &backend, &bucket, &key).and_then(|k| {
                    match *null_value != *null_len {
                        true => Err(Status::InvalidArgument),
                        false => target(&k),
                    }
                });
                let untouched = (sentinel, 7, u64::MAX);
                let stored = match want {
                    Err(want) => {
                        expect("tether_read_ex", got, want);
                        return assert_eq!((out, len, version), untouched, "outputs written");
                    }
                    Ok(stored) => stored,
                };
                let with_value = !*null_value;
                let value = match got {
                    Status::Ok if with_value => {
                        assert!(!out.is_null() && out != sentinel);
                        let value = unsafe { std::slice::from_raw_parts(out, len) }.to_vec();
                        unsafe { tether_free(out, len) };
                        Some(value)
                    }
                    Status::Ok => {
                        assert_eq!((out, len), (sentinel, 7), "value outputs written");
                        Some(Vec::new())
                    }
                    Status::NotFound => {
                        assert_eq!((out, len, version), untouched, "outputs written");
                        None
                    }
                    other => panic!("tether_read_ex: {other:?}: {}", last_error()),
                };
                match (self.slot(&stored), with_value) {
                    (Slot::Unknown, true) => self.learn(&stored, value.clone()),
                    // Present or absent, but not with which value.
                    (Slot::Unknown, false) if value.is_none() => self.learn(&stored, None),
                    (Slot::Unknown, false) => {}
                    (Slot::Known(want), true) => {
                        assert_eq!(value, want, "tether_read_ex of {stored:?}")
                    }
                    (Slot::Known(want), false) => assert_eq!(
                        value.is_some(),
                        want.is_some(),
                        "tether_read_ex (existence) of {stored:?}"
                    ),
                }
                self.read_key(&stored);
                if got == Status::Ok && !*null_version {
                    let known = self.versions(&stored);
                    assert!(
                        version != 0 && version != u64::MAX && version >= known.seen,
                        "tether_read_ex of {stored:?}: version {version}, after {known:?}"
                    );
                    // A sliding read gives the version after it moved.
                    if let Some(exact) = known.exact.filter(|_| !known.sliding) {
                        assert_eq!(version, exact, "the version of {stored:?}");
                    }
                    self.saw_version(&stored, version);
                }
            }
            Call::DeleteEx {
                null_db,
                backend,
                bucket,
                key,
                flags,
                version,
            } => {
                let (backend, bucket, key) =
                    (CArg::new(backend), CArg::new(bucket), CArg::new(key));
                let flags = match flags {
                    DeleteFlags::None => 0,
                    DeleteFlags::IfVersion => TETHER_IF_VERSION,
                    DeleteFlags::Raw(f) => *f,
                };
                let target_key = keyed(*null_db, &backend, &bucket, &key).and_then(|k| target(&k));
                let version = self.pick_version(version, target_key.as_deref().ok());
                let got = unsafe {
                    tether_delete_ex(
                        db(*null_db),
                        backend.ptr(),
                        bucket.ptr(),
                        key.ptr(),
                        flags,
                        version,
                    )
                };
                let want = keyed(*null_db, &backend, &bucket, &key).and_then(|k| match flags {
                    0 | TETHER_IF_VERSION => target(&k),
                    _ => Err(Status::InvalidArgument),
                });
                let stored = match want {
                    Err(want) => return expect("tether_delete_ex", got, want),
                    Ok(stored) => stored,
                };
                let allowed = match (flags, self.slot(&stored)) {
                    (TETHER_IF_VERSION, _) => self.if_version_statuses(&stored, version),
                    (_, Slot::Known(Some(_))) => vec![Status::Ok],
                    (_, Slot::Known(None)) => vec![Status::NotFound],
                    (_, Slot::Unknown) => vec![Status::Ok, Status::NotFound],
                };
                expect_one_of("tether_delete_ex", got, &allowed);
                match got {
                    Status::Ok => {
                        self.learn(&stored, None);
                        self.changed(&stored, Some(false));
                    }
                    Status::NotFound => self.learn(&stored, None),
                    // Version 0 is checked by reading the key.
                    _ if version == 0 => self.read_key(&stored),
                    _ => {}
                }
            }
            Call::Touch {
                null_db,
                backend,
                bucket,
                key,
                ttl,
            } => {
                let (backend, bucket, key) =
                    (CArg::new(backend), CArg::new(bucket), CArg::new(key));
                let ttl_ms = ttl.ms();
                let before = now_ms();
                let got = unsafe {
                    tether_touch(db(*null_db), backend.ptr(), bucket.ptr(), key.ptr(), ttl_ms)
                };
                let after = now_ms();
                // The key first, then the deadline.
                let want = keyed(*null_db, &backend, &bucket, &key)
                    .and_then(|k| target(&k))
                    .and_then(|stored| check_ttl(ttl_ms, before, after, got).map(|()| stored));
                let stored = match want {
                    Err(want) => return expect("tether_touch", got, want),
                    Ok(stored) => stored,
                };
                match (self.slot(&stored), got) {
                    // The value stays; on etcd the version changes.
                    (Slot::Known(Some(_)) | Slot::Unknown, Status::Ok) => {
                        let versions = self.versions.entry(stored.clone()).or_default();
                        versions.exact = None;
                        // A touch sets a fixed deadline; a queued write
                        // in flight may still bring a sliding one.
                        versions.sliding &= self.pending.contains(&stored);
                    }
                    (Slot::Known(None) | Slot::Unknown, Status::NotFound) => {
                        self.learn(&stored, None)
                    }
                    (slot, got) => panic!("tether_touch of {slot:?}: {got:?}: {}", last_error()),
                }
            }
            Call::Flush { null_db } => {
                let got = unsafe { tether_flush(db(*null_db)) };
                match null_db {
                    true => expect("tether_flush", got, Status::InvalidArgument),
                    false => {
                        expect("tether_flush", got, Status::Ok);
                        self.applied();
                    }
                }
            }
            Call::Stop { null_db } => {
                let got = unsafe { tether_stop(db(*null_db)) };
                match null_db {
                    true => expect("tether_stop", got, Status::InvalidArgument),
                    false => {
                        expect("tether_stop", got, Status::Ok);
                        self.applied();
                        self.running = false;
                    }
                }
            }
            Call::Start { null_db } => {
                let got = unsafe { tether_start(db(*null_db)) };
                match null_db {
                    true => expect("tether_start", got, Status::InvalidArgument),
                    false => {
                        expect("tether_start", got, Status::Ok);
                        self.running = true;
                    }
                }
            }
            Call::NullPage { index } => unsafe {
                let mut len = 7usize;
                assert_eq!(tether_page_len(ptr::null()), 0);
                assert!(tether_page_key(ptr::null(), *index).is_null());
                assert!(tether_page_value(ptr::null(), *index, &mut len).is_null());
                assert!(tether_page_value(ptr::null(), *index, ptr::null_mut()).is_null());
                assert_eq!(len, 7);
                assert!(tether_page_next(ptr::null()).is_null());
                tether_page_free(ptr::null_mut());
            },
            Call::FreeNull { len } => unsafe { tether_free(ptr::null_mut(), *len) },
        }
    }

    /// `tether_write_ex`, checked against the model: the status (argument
    /// errors, then conditions), the value written, and `out_version`:
    /// written only for a direct write that succeeded, above every
    /// version the key had.
    #[allow(clippy::too_many_arguments)]
    fn write_ex(
        &mut self,
        null_db: bool,
        backend: &Text,
        bucket: &Text,
        key: &Text,
        value: &ValueArg,
        flags: u32,
        ttl: &TtlArg,
        version: &VersionArg,
        null_out: bool,
    ) {
        let (backend, bucket, key) = (CArg::new(backend), CArg::new(bucket), CArg::new(key));
        let (buffer, len) = value.make();
        let value_ptr = buffer.as_ref().map_or(ptr::null(), |b| b.as_ptr());
        self.written += buffer.as_ref().map_or(0, Vec::len);
        let ttl_ms = ttl.ms();
        let target_key = keyed(null_db, &backend, &bucket, &key).and_then(|k| target(&k));
        let version = self.pick_version(version, target_key.as_deref().ok());
        let mut out = u64::MAX;
        let out_ptr = if null_out {
            ptr::null_mut()
        } else {
            &mut out as *mut u64
        };
        let db = if null_db { ptr::null_mut() } else { self.db.0 };
        let before = now_ms();
        let got = unsafe {
            tether_write_ex(
                db,
                backend.ptr(),
                bucket.ptr(),
                key.ptr(),
                value_ptr,
                len,
                flags,
                ttl_ms,
                version,
                out_ptr,
            )
        };
        let after = now_ms();
        let known = TETHER_QUEUE | TETHER_IF_ABSENT | TETHER_IF_VERSION | TETHER_SLIDING;
        let conditions = flags & (TETHER_IF_ABSENT | TETHER_IF_VERSION);
        let queue = flags & TETHER_QUEUE != 0;
        let sliding = flags & TETHER_SLIDING != 0;
        // The order of the checks: the strings, the value, the flags and
        // ttl, then the backend and key.
        let want = keyed(null_db, &backend, &bucket, &key).and_then(|k| {
            let invalid = Err(Status::InvalidArgument);
            if buffer.is_none() && len > 0
                || flags & !known != 0
                || conditions == TETHER_IF_ABSENT | TETHER_IF_VERSION
                || queue && conditions != 0
                || sliding && ttl_ms == 0
            {
                return invalid;
            }
            check_ttl(ttl_ms, before, after, got)?;
            target(&k)
        });
        let stored = match want {
            Err(want) => {
                expect("tether_write_ex", got, want);
                return assert_eq!(out, u64::MAX, "out_version written");
            }
            Ok(stored) => stored,
        };
        let bytes = buffer.map(|b| b[..len].to_vec()).unwrap_or_default();
        if queue {
            assert_eq!(out, u64::MAX, "out_version written for a queued write");
            if self.running {
                expect("tether_write_ex(TETHER_QUEUE)", got, Status::Ok);
                self.pending.insert(stored.clone());
                self.changed(&stored, Some(sliding));
                self.model.insert(stored, Slot::Unknown);
            } else {
                expect("tether_write_ex(TETHER_QUEUE)", got, Status::NotRunning);
            }
            return;
        }
        let allowed = match (conditions, self.slot(&stored)) {
            (0, _) | (TETHER_IF_ABSENT, Slot::Known(None)) => vec![Status::Ok],
            (TETHER_IF_ABSENT, Slot::Known(Some(_))) => vec![Status::Conflict],
            (TETHER_IF_ABSENT, Slot::Unknown) => vec![Status::Ok, Status::Conflict],
            _ => self.if_version_statuses(&stored, version),
        };
        expect_one_of("tether_write_ex", got, &allowed);
        if got != Status::Ok {
            assert_eq!(out, u64::MAX, "out_version written");
        }
        match got {
            Status::Ok => {
                let had = self.versions(&stored);
                self.learn(&stored, Some(bytes));
                self.changed(&stored, Some(sliding));
                // Above the version it was at, too.
                let was = match conditions {
                    TETHER_IF_VERSION => version,
                    _ => 0,
                };
                if !null_out {
                    assert!(
                        out != u64::MAX && out > had.seen && out > was,
                        "tether_write_ex of {stored:?} gave version {out}, after {had:?}"
                    );
                    self.saw_version(&stored, out);
                }
            }
            // A failed condition changes nothing, but version 0 is
            // checked by reading the key.
            Status::NotFound => self.learn(&stored, None),
            _ if conditions == TETHER_IF_VERSION && version == 0 => self.read_key(&stored),
            _ => {}
        }
    }

    /// `tether_list`, or `tether_list_ex` with `flags`, checked against
    /// the model.
    fn list(&mut self, args: &ListArgs, flags: Option<u32>, next: &mut Option<Vec<u8>>) {
        let ListArgs {
            null_db,
            backend,
            bucket,
            prefix,
            start_after,
            page_size,
            null_out,
            indices,
        } = *args;
        let db = if null_db { ptr::null_mut() } else { self.db.0 };
        let name = match flags {
            None => "tether_list",
            Some(_) => "tether_list_ex",
        };
        let keys_only = flags == Some(TETHER_KEYS_ONLY);
        let (backend, bucket, prefix) = (CArg::new(backend), CArg::new(bucket), CArg::new(prefix));
        let start_after = match start_after {
            StartAfter::Text(text) => CArg::new(text),
            StartAfter::Next => CArg {
                buffer: next.clone().map(|mut b| {
                    b.push(0);
                    b.into_boxed_slice()
                }),
            },
        };
        let page_size = match page_size {
            PageSize::Small(n) => usize::from(*n % 12),
            PageSize::Raw(n) => *n,
        };
        let sentinel = ptr::dangling_mut::<TetherPage>();
        let mut page = sentinel;
        let out = if null_out {
            ptr::null_mut()
        } else {
            &mut page as *mut _
        };
        let got = unsafe {
            match flags {
                None => tether_list(
                    db,
                    backend.ptr(),
                    bucket.ptr(),
                    prefix.ptr(),
                    start_after.ptr(),
                    page_size,
                    out,
                ),
                Some(flags) => tether_list_ex(
                    db,
                    backend.ptr(),
                    bucket.ptr(),
                    prefix.ptr(),
                    start_after.ptr(),
                    page_size,
                    flags,
                    out,
                ),
            }
        };
        let invalid = Status::InvalidArgument;
        let want = (|| {
            if null_db {
                return Err(invalid);
            }
            let backend = backend.utf8().map_err(|_| invalid)?;
            let bucket = bucket.utf8().map_err(|_| invalid)?;
            let prefix = prefix.utf8().map_err(|_| invalid)?;
            let after = start_after.utf8().map_err(|_| invalid)?;
            if null_out || page_size == 0 || flags.unwrap_or(0) & !TETHER_KEYS_ONLY != 0 {
                return Err(invalid);
            }
            if !known_backend(backend) {
                return Err(Status::UnknownBackend);
            }
            Ok((bucket_prefix(bucket)?, prefix.unwrap_or(""), after))
        })();
        let (stored_prefix, prefix, after) = match want {
            Err(want) => {
                expect(name, got, want);
                return assert_eq!(page, sentinel, "out_page written");
            }
            Ok(args) => args,
        };
        expect(name, got, Status::Ok);
        self.check_page(
            page,
            &stored_prefix,
            prefix,
            after,
            page_size,
            keys_only,
            indices,
            next,
        );
        unsafe { tether_page_free(page) };
    }

    /// `tether_delete_prefix`, checked against the model: the status, the
    /// count between the keys that must and may be there, and the keys gone.
    fn delete_prefix(
        &mut self,
        null_db: bool,
        backend: &Text,
        bucket: &Text,
        prefix: &Text,
        null_out: bool,
    ) {
        let (backend, bucket, prefix) = (CArg::new(backend), CArg::new(bucket), CArg::new(prefix));
        let db = if null_db { ptr::null_mut() } else { self.db.0 };
        let mut deleted = u64::MAX;
        let out = if null_out {
            ptr::null_mut()
        } else {
            &mut deleted as *mut _
        };
        let got =
            unsafe { tether_delete_prefix(db, backend.ptr(), bucket.ptr(), prefix.ptr(), out) };
        let invalid = Status::InvalidArgument;
        let want = (|| {
            if null_db {
                return Err(invalid);
            }
            let backend = backend.utf8().map_err(|_| invalid)?;
            let bucket = bucket.utf8().map_err(|_| invalid)?;
            let prefix = prefix.utf8().map_err(|_| invalid)?.unwrap_or("");
            if !known_backend(backend) {
                return Err(Status::UnknownBackend);
            }
            let stored_prefix = bucket_prefix(bucket)?;
            if stored_prefix.is_empty() && prefix.is_empty() {
                return Err(invalid);
            }
            Ok((stored_prefix, prefix))
        })();
        let (stored_prefix, prefix) = match want {
            Err(want) => {
                expect("tether_delete_prefix", got, want);
                return assert_eq!(deleted, u64::MAX, "out_deleted written");
            }
            Ok(args) => args,
        };
        expect("tether_delete_prefix", got, Status::Ok);
        let low = [&stored_prefix[..], prefix.as_bytes()].concat();
        // A bucket's own `bucket:` key has no name in the bucket: it stays
        // (keys::in_bucket).
        let covered: Vec<Vec<u8>> = self
            .model
            .keys()
            .filter(|key| key.starts_with(&low))
            .filter(|key| stored_prefix.is_empty() || key.as_slice() != stored_prefix)
            .cloned()
            .collect();
        if !null_out {
            let slots = covered.iter().map(|key| self.slot(key));
            let (must, may) = slots.fold((0, 0), |(must, may), slot| match slot {
                Slot::Known(Some(_)) => (must + 1, may + 1),
                Slot::Unknown => (must, may + 1),
                Slot::Known(None) => (must, may),
            });
            assert!(
                (must..=may).contains(&deleted),
                "tether_delete_prefix of {low:?} deleted {deleted}, the model allows {must} to {may}"
            );
        }
        for key in covered {
            self.learn(&key, None);
            self.changed(&key, Some(false));
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn check_page(
        &mut self,
        page: *mut TetherPage,
        stored_prefix: &[u8],
        prefix: &str,
        after: Option<&str>,
        page_size: usize,
        keys_only: bool,
        indices: &[usize],
        next: &mut Option<Vec<u8>>,
    ) {
        assert!(!page.is_null());
        let len = unsafe { tether_page_len(page) };
        assert!(len <= page_size, "{len} entries in a page of {page_size}");
        let mut entries = Vec::with_capacity(len);
        for i in 0..len {
            let key = unsafe { tether_page_key(page, i) };
            assert!(!key.is_null(), "key {i} of {len} is NULL");
            let key = unsafe { CStr::from_ptr(key) }.to_bytes().to_vec();
            let mut value_len = usize::MAX;
            let value = unsafe { tether_page_value(page, i, &mut value_len) };
            if keys_only {
                assert!(
                    value.is_null() && value_len == 0,
                    "value {i} of a keys-only page"
                );
                entries.push((key, Vec::new()));
                continue;
            }
            assert!(!value.is_null(), "value {i} of {len} is NULL");
            let value = unsafe { std::slice::from_raw_parts(value, value_len) }.to_vec();
            entries.push((key, value));
        }
        for &i in indices {
            let mut value_len = 7usize;
            let key = unsafe { tether_page_key(page, i) };
            let value = unsafe { tether_page_value(page, i, &mut value_len) };
            if i < len && keys_only {
                assert_eq!(unsafe { CStr::from_ptr(key) }.to_bytes(), entries[i].0);
                assert!(
                    value.is_null() && value_len == 0,
                    "value {i} of a keys-only page"
                );
            } else if i < len {
                assert_eq!(unsafe { CStr::from_ptr(key) }.to_bytes(), entries[i].0);
                assert_eq!(
                    unsafe { std::slice::from_raw_parts(value, value_len) },
                    entries[i].1
                );
            } else {
                assert!(
                    key.is_null() && value.is_null() && value_len == 7,
                    "index {i} of {len}"
                );
            }
        }
        let marker = unsafe { tether_page_next(page) };
        *next = (!marker.is_null()).then(|| unsafe { CStr::from_ptr(marker) }.to_bytes().to_vec());
        if let Some(marker) = next.as_ref() {
            assert_eq!(len, page_size, "a page before the last is not full");
            assert_eq!(
                Some(marker),
                entries.last().map(|e| &e.0),
                "next is not the last key"
            );
        }

        // The page in stored keys, in ascending order, all matching.
        let stored: Vec<Vec<u8>> = entries
            .iter()
            .map(|(k, _)| [stored_prefix, k].concat())
            .collect();
        assert!(
            stored.windows(2).all(|w| w[0] < w[1]),
            "not in ascending order: {stored:?}"
        );
        let low = [stored_prefix, prefix.as_bytes()].concat();
        let after = after.map(|a| [stored_prefix, a.as_bytes()].concat());
        for (key, (_, value)) in stored.iter().zip(&entries) {
            assert!(key.starts_with(&low), "{key:?} does not start with {low:?}");
            assert!(
                after.as_ref().is_none_or(|a| key > a),
                "{key:?} is not after {after:?}"
            );
            match self.slot(key) {
                // A keys-only page shows the key present, not its value.
                Slot::Unknown if keys_only => {}
                Slot::Unknown => self.learn(key, Some(value.clone())),
                Slot::Known(Some(_)) if keys_only => {}
                Slot::Known(Some(want)) => assert_eq!(value, &want, "value of {key:?}"),
                Slot::Known(None) => panic!("listed {key:?}, which is absent"),
            }
        }
        // Every key the model holds in the page's range is on it.
        let end = match next.is_some() {
            true => stored.last().cloned(),
            false => None,
        };
        for (key, slot) in &self.model {
            // A bucket's own `bucket:` key has no name in the bucket: it
            // may be left out (keys::in_bucket).
            let in_range = (stored_prefix.is_empty() || key.as_slice() != stored_prefix)
                && key.starts_with(&low)
                && after.as_ref().is_none_or(|a| key > a)
                && end.as_ref().is_none_or(|e| key <= e);
            if in_range && matches!(slot, Slot::Known(Some(_))) {
                assert!(stored.contains(key), "{key:?} is missing from the page");
            }
        }
    }
}

fuzz_target!(|calls: Vec<Call>| {
    AT_EXIT.call_once(|| assert_eq!(unsafe { atexit(close_at_exit) }, 0));
    let mut guard = STATE.lock().unwrap_or_else(|e| e.into_inner());
    if guard
        .as_ref()
        .is_some_and(|s| s.inputs >= INPUTS_PER_STORE || s.written >= BYTES_PER_STORE)
    {
        close(guard.take().unwrap());
    }
    let state = guard.get_or_insert_with(open);
    state.inputs += 1;
    state.clear();
    let mut next = None;
    for call in calls.iter().take(MAX_CALLS) {
        state.run(call, &mut next);
    }
});
