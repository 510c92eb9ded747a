//! The C ABI (docs/c-api.md). Nothing but conversion lives here: each entry
//! point checks its pointers, converts C types to Rust, calls [`Db`], and
//! converts the result back. Every entry point catches panics.
//!
//! The doc comments below are the header's documentation.

#![allow(clippy::missing_safety_doc)] // documented in the header, for C callers

mod boundary;

use std::ffi::{c_char, CString};
use std::ptr;

use boundary::{bytes, db_ref, guard, guard_value, optional_str, required_str, write_out};

use crate::config::Config;
use crate::copy::CopyOptions;
use crate::db::{Db, KeyPage, Page, WriteOptions};
use crate::error::{Error, Status};

/// A handle on the configured backends: open it with `tether_open` or
/// `tether_open_file`, close it with `tether_close`. Opaque. Safe to share
/// between threads.
pub struct TetherDb {
    db: Db,
}

/// Write flag: hand the write to the queue instead of applying it
/// before the call returns.
pub const TETHER_QUEUE: u32 = 1;

/// Write flag: only where the key is absent (or expired); TETHER_CONFLICT
/// when it is present.
pub const TETHER_IF_ABSENT: u32 = 2;

/// Write and delete flag: only where the key's version equals `version`;
/// TETHER_CONFLICT when it is another, TETHER_NOT_FOUND when the key is
/// absent.
pub const TETHER_IF_VERSION: u32 = 4;

/// Write flag, with `ttl_ms` > 0: each read restarts the key's ttl.
pub const TETHER_SLIDING: u32 = 8;

/// The most keys `tether_increment` and `tether_counter_total` may split a
/// counter over (`shards`); more is TETHER_INVALID_ARGUMENT.
pub const TETHER_MAX_SHARDS: u32 = 1024;
const _: () = assert!(TETHER_MAX_SHARDS == crate::counter::MAX_SHARDS);
/// List flag: pages carry keys alone; `tether_page_value` gives NULL and
/// 0 for them.
pub const TETHER_KEYS_ONLY: u32 = 1;

/// Copy flag: copy only keys whose value differs on the target, or that it
/// lacks (push, pull).
pub const TETHER_COPY_CHANGED: u32 = 1;
/// Copy flag: also delete the target's keys that the source lacks.
pub const TETHER_COPY_MIRROR: u32 = 2;
/// Copy flag: change nothing; the report says what would change (diff).
pub const TETHER_COPY_DRY_RUN: u32 = 4;

/// One page of a listing. Opaque: read it with the `tether_page_*`
/// functions, free it with `tether_page_free`.
pub struct TetherPage {
    keys: Vec<CString>,
    /// `None` for a page of keys alone (TETHER_KEYS_ONLY).
    values: Option<Vec<Vec<u8>>>,
    next: Option<CString>,
}

/// A listed key as a C string. Backends list only keys that
/// `keys::listable` accepts: no NUL.
fn listed_key(key: String) -> CString {
    CString::new(key).expect("listed keys hold no NUL")
}

impl From<Page> for TetherPage {
    fn from(page: Page) -> TetherPage {
        let (keys, values) = page
            .entries
            .into_iter()
            .map(|entry| (listed_key(entry.key), entry.value))
            .unzip();
        let next = page.next.map(listed_key);
        TetherPage {
            keys,
            values: Some(values),
            next,
        }
    }
}

impl From<KeyPage> for TetherPage {
    fn from(page: KeyPage) -> TetherPage {
        TetherPage {
            keys: page.keys.into_iter().map(listed_key).collect(),
            values: None,
            next: page.next.map(listed_key),
        }
    }
}

/// Opens a handle from a JSON configuration (see docs/configuration.md).
///
/// `config_json`: NULL, `""` or `"{}"` open the embedded default, a `local`
/// backend in `./tetherdb_data`. Borrowed for the call only.
/// `out_db`: receives the new handle on success and is left untouched
/// otherwise; close it with `tether_close`.
///
/// Starts the queue's workers unless `queue_batch.autostart` is false. `etcd`
/// connects on first use, so a handle opens while etcd is down; calls then
/// return TETHER_UNAVAILABLE until it is back. `dynamodb` checks its table
/// as the handle opens.
///
/// Returns TETHER_OK; TETHER_INVALID_ARGUMENT when `out_db` is NULL or the
/// JSON is not UTF-8; TETHER_CONFIG when the configuration is invalid,
/// names an unknown key, or names a certificate file that cannot be read,
/// or the DynamoDB table is missing or has another key; TETHER_UNAVAILABLE
/// when DynamoDB is unreachable or does not answer within its timeout;
/// TETHER_IO when the local store cannot be opened (for instance, another
/// handle holds it) or DynamoDB refuses the table check; TETHER_INTERNAL.
#[no_mangle]
pub unsafe extern "C" fn tether_open(
    config_json: *const c_char,
    out_db: *mut *mut TetherDb,
) -> Status {
    guard("tether_open", || {
        let json = optional_str(config_json, "config_json")?;
        let out_db = write_out(out_db, "out_db")?;
        let db = Db::open(Config::from_json(json)?)?;
        *out_db = Box::into_raw(Box::new(TetherDb { db }));
        Ok(())
    })
}

/// Opens a handle from a JSON configuration file.
///
/// `path`: the file's path, borrowed for the call only. `out_db`: as in
/// `tether_open`.
///
/// Returns TETHER_OK; TETHER_INVALID_ARGUMENT when a pointer is NULL or
/// `path` is not UTF-8; TETHER_CONFIG when the file cannot be read, is not
/// a regular file (a directory, a FIFO, a device), is over 1 MiB or is
/// invalid; TETHER_UNAVAILABLE, TETHER_IO and TETHER_INTERNAL as
/// `tether_open`.
#[no_mangle]
pub unsafe extern "C" fn tether_open_file(
    path: *const c_char,
    out_db: *mut *mut TetherDb,
) -> Status {
    guard("tether_open_file", || {
        let path = required_str(path, "path")?;
        let out_db = write_out(out_db, "out_db")?;
        let db = Db::open(Config::from_file(path)?)?;
        *out_db = Box::into_raw(Box::new(TetherDb { db }));
        Ok(())
    })
}

/// Starts the queue's workers. Idempotent. Thread-safe.
///
/// Returns TETHER_OK; TETHER_INVALID_ARGUMENT when `db` is NULL;
/// TETHER_INTERNAL when no thread can be started.
#[no_mangle]
pub unsafe extern "C" fn tether_start(db: *mut TetherDb) -> Status {
    guard("tether_start", || db_ref(db)?.start())
}

/// Applies every queued write, then stops the queue's workers. Idempotent.
/// Thread-safe. Queued writes fail with TETHER_NOT_RUNNING until
/// `tether_start`. A backend unreachable for longer than its timeout gets
/// no more tries: with the durable outbox (`queue_batch.durable`, the
/// default) its queued writes stay there and are applied once the worker
/// runs again, in this handle or the next opened on the outbox; without
/// it they are reported as failed.
///
/// Returns TETHER_OK; TETHER_INVALID_ARGUMENT when `db` is NULL; or the
/// status of the first queued write that failed since the last
/// flush/stop (the message counts them); TETHER_UNAVAILABLE for writes an
/// unreachable backend never took (the message says whether they stay in
/// the outbox).
#[no_mangle]
pub unsafe extern "C" fn tether_stop(db: *mut TetherDb) -> Status {
    guard("tether_stop", || db_ref(db)?.stop())
}

/// Waits until every write queued before the call is applied and every
/// backend has made its writes durable. Thread-safe. While the worker is
/// stopped it applies nothing: writes waiting in the outbox (left by an
/// earlier run, or kept by a stop during an outage) wait for
/// `tether_start`; `tether_stats` counts them.
///
/// Returns TETHER_OK; TETHER_INVALID_ARGUMENT when `db` is NULL; or the
/// status of the first queued write that failed since the last
/// flush/stop (the message counts them); TETHER_UNAVAILABLE when a backend
/// has been unreachable for longer than its timeout (the message says how
/// many queued writes wait for it: they stay queued and are retried);
/// TETHER_IO when the local store cannot be synced.
#[no_mangle]
pub unsafe extern "C" fn tether_flush(db: *mut TetherDb) -> Status {
    guard("tether_flush", || db_ref(db)?.flush())
}

/// Applies every queued write, stops the worker, makes every write durable
/// and frees the handle. NULL is a no-op.
///
/// Takes ownership of `db`: it is freed whatever the status, and must not be
/// used again, nor be in use by another thread during the call. After it
/// returns no thread started for this handle is left running.
///
/// Returns TETHER_OK, or the status of the first queued write that failed
/// since the last flush/stop (the message counts them; TETHER_UNAVAILABLE
/// when a backend stayed unreachable for longer than its timeout and its
/// writes could not be applied: with the durable outbox they stay in it,
/// and the next handle opened on it applies them), or TETHER_IO when the
/// local store or the outbox cannot be synced.
#[no_mangle]
pub unsafe extern "C" fn tether_close(db: *mut TetherDb) -> Status {
    guard("tether_close", || {
        if db.is_null() {
            return Ok(());
        }
        Box::from_raw(db).db.close()
    })
}

/// Stores a value under a key, replacing any value. Thread-safe.
///
/// `backend`: a configured backend's name; NULL or `""` for the default.
/// `bucket`: NULL or `""` for none; must not contain `:`.
/// `key`: a non-empty UTF-8 string. `value`: `value_len` bytes, copied
/// before the call returns; may be NULL when `value_len` is 0.
/// `flags`: 0 to write before returning, or TETHER_QUEUE to hand the write to
/// the queue (it returns once the write is queued, waiting only while
/// the queue is full; failures are reported by the next flush/stop/close).
/// With `queue_batch.durable` (the default), a queued write is in the
/// on-disk outbox before the call returns, and on disk for good when
/// `queue_batch.sync` is on.
///
/// Returns TETHER_OK; TETHER_INVALID_ARGUMENT for a NULL `db` or `key`, an
/// empty key, bad UTF-8, `:` in the bucket, NULL `value` with a length, or an
/// unknown flag; TETHER_UNKNOWN_BACKEND; TETHER_NOT_RUNNING for a queued
/// write while the worker is stopped; TETHER_TOO_LARGE (a queued write is
/// refused before it is queued); TETHER_UNAVAILABLE when the backend is
/// unreachable or does not answer within its timeout (for a queued write:
/// when the queue is full and the backend has been unreachable for longer
/// than its timeout, or when the outbox holds `queue_batch.outbox_max_bytes`:
/// the write is not queued); TETHER_IO (for a queued write: the outbox
/// failed); TETHER_INTERNAL.
#[no_mangle]
pub unsafe extern "C" fn tether_write(
    db: *mut TetherDb,
    backend: *const c_char,
    bucket: *const c_char,
    key: *const c_char,
    value: *const u8,
    value_len: usize,
    flags: u32,
) -> Status {
    guard("tether_write", || {
        let call = keyed(db, backend, bucket, key)?;
        let value = bytes(value, value_len, "value")?;
        match flags {
            0 => call.db.write(call.backend, call.bucket, call.key, value),
            TETHER_QUEUE => call
                .db
                .write_queued(call.backend, call.bucket, call.key, value),
            _ => Err(Error::invalid(format!("unknown flags {flags:#x}"))),
        }
    })
}

/// Stores a value under a key, as `tether_write` does, under conditions,
/// and gives the key's new version. Thread-safe.
///
/// `backend`, `bucket`, `key`, `value`, `value_len`: as in `tether_write`.
/// `flags`: 0, or any of TETHER_QUEUE (hand the write to the queue, as
/// `tether_write` does), TETHER_IF_ABSENT (only where the key is absent),
/// TETHER_IF_VERSION (only where the key's version equals `version`),
/// TETHER_SLIDING (with `ttl_ms` > 0: each read restarts the ttl).
/// TETHER_IF_ABSENT and TETHER_IF_VERSION together, or either with
/// TETHER_QUEUE, are TETHER_INVALID_ARGUMENT. The check and the write are
/// one atomic step in the backend: of several handles racing on one key,
/// one wins. A failed condition changes nothing.
/// `ttl_ms`: 0 for no expiry (also clearing an earlier one); above 0, the
/// key is absent for every call from `ttl_ms` milliseconds after this call
/// on (for a queued write too: one the queue holds past its deadline is
/// not applied, and `tether_stats` counts it as expired).
/// `version`: the version TETHER_IF_VERSION compares with; ignored
/// without it.
/// `out_version`: NULL, or receives the key's new version on TETHER_OK
/// (not written for a queued write, nor on any other status). A version is
/// a non-zero number that grows at every change of the key's value, also
/// across a delete and a new write of the key.
///
/// Returns TETHER_OK; TETHER_CONFLICT when TETHER_IF_ABSENT finds the key
/// present, or TETHER_IF_VERSION finds another version; TETHER_NOT_FOUND
/// when TETHER_IF_VERSION finds the key absent; TETHER_INVALID_ARGUMENT
/// for what `tether_write` refuses, the flags above together, an unknown
/// flag, TETHER_SLIDING without a `ttl_ms`, or a `ttl_ms` whose deadline
/// overflows; TETHER_UNSUPPORTED for a `ttl_ms` above 0 on a backend
/// without expiry (docs/engines.md); TETHER_UNKNOWN_BACKEND; TETHER_NOT_RUNNING,
/// TETHER_TOO_LARGE, TETHER_UNAVAILABLE and TETHER_IO as `tether_write`;
/// TETHER_INTERNAL.
#[no_mangle]
pub unsafe extern "C" fn tether_write_ex(
    db: *mut TetherDb,
    backend: *const c_char,
    bucket: *const c_char,
    key: *const c_char,
    value: *const u8,
    value_len: usize,
    flags: u32,
    ttl_ms: u64,
    version: u64,
    out_version: *mut u64,
) -> Status {
    guard("tether_write_ex", || {
        let call = keyed(db, backend, bucket, key)?;
        let value = bytes(value, value_len, "value")?;
        let known = TETHER_QUEUE | TETHER_IF_ABSENT | TETHER_IF_VERSION | TETHER_SLIDING;
        if flags & !known != 0 {
            return Err(Error::invalid(format!(
                "unknown flags {:#x}",
                flags & !known
            )));
        }
        let options = WriteOptions {
            queue: flags & TETHER_QUEUE != 0,
            if_absent: flags & TETHER_IF_ABSENT != 0,
            if_version: (flags & TETHER_IF_VERSION != 0).then_some(version),
            sliding: flags & TETHER_SLIDING != 0,
            ttl_ms,
        };
        let written = call
            .db
            .write_ex(call.backend, call.bucket, call.key, value, &options)?;
        if let (Some(written), Some(out)) = (written, out_version.as_mut()) {
            *out = written;
        }
        Ok(())
    })
}

/// Replaces the value under a key only where the key exists, atomically.
/// Thread-safe. Arguments as in `tether_write`.
///
/// Returns TETHER_OK; TETHER_NOT_FOUND when the key is absent (nothing is
/// written); TETHER_INVALID_ARGUMENT; TETHER_UNKNOWN_BACKEND;
/// TETHER_TOO_LARGE; TETHER_UNAVAILABLE; TETHER_IO; TETHER_INTERNAL.
#[no_mangle]
pub unsafe extern "C" fn tether_update(
    db: *mut TetherDb,
    backend: *const c_char,
    bucket: *const c_char,
    key: *const c_char,
    value: *const u8,
    value_len: usize,
) -> Status {
    guard("tether_update", || {
        let call = keyed(db, backend, bucket, key)?;
        let value = bytes(value, value_len, "value")?;
        call.db.update(call.backend, call.bucket, call.key, value)
    })
}

/// Reads the value under a key. Thread-safe. `backend`, `bucket`, `key` as
/// in `tether_write`.
///
/// On TETHER_OK, `*out_value` receives a new buffer of `*out_len` bytes owned
/// by the caller: free it with `tether_free(value, len)`, never `free()`. It
/// is not NUL-terminated, and is non-NULL even for an empty value. On any
/// other status neither output is written.
///
/// Returns TETHER_OK; TETHER_NOT_FOUND when the key is absent;
/// TETHER_INVALID_ARGUMENT (including NULL `out_value` or `out_len`);
/// TETHER_UNKNOWN_BACKEND; TETHER_TOO_LARGE when the key is over the
/// backend's limit (so none can be stored under it); TETHER_UNAVAILABLE;
/// TETHER_IO; TETHER_INTERNAL.
#[no_mangle]
pub unsafe extern "C" fn tether_read(
    db: *mut TetherDb,
    backend: *const c_char,
    bucket: *const c_char,
    key: *const c_char,
    out_value: *mut *mut u8,
    out_len: *mut usize,
) -> Status {
    guard("tether_read", || {
        let call = keyed(db, backend, bucket, key)?;
        let out_value = write_out(out_value, "out_value")?;
        let out_len = write_out(out_len, "out_len")?;
        let value = call.db.read(call.backend, call.bucket, call.key)?;
        let value = value.into_boxed_slice();
        *out_len = value.len();
        *out_value = Box::into_raw(value).cast::<u8>();
        Ok(())
    })
}

/// Reads the value under a key and its version. Thread-safe. `backend`,
/// `bucket`, `key` as in `tether_write`.
///
/// `out_value`, `out_len`: both NULL to check only that the key exists
/// (no value is copied); otherwise both non-NULL, and on TETHER_OK
/// `*out_value` receives a new buffer of `*out_len` bytes, as
/// `tether_read` gives it: free it with `tether_free(value, len)`.
/// `out_version`: NULL, or receives the key's version on TETHER_OK: a
/// non-zero number that grows at every change of the key's value, also
/// across a delete and a new write; a value another program wrote
/// (etcdctl, boto3, the Python TetherDB) has one too. On any other status
/// no output is written.
///
/// Returns TETHER_OK; TETHER_NOT_FOUND when the key is absent;
/// TETHER_INVALID_ARGUMENT (as `tether_read`, and one of `out_value` and
/// `out_len` NULL without the other); TETHER_UNKNOWN_BACKEND;
/// TETHER_TOO_LARGE when the key is over the backend's limit;
/// TETHER_UNAVAILABLE; TETHER_IO; TETHER_INTERNAL.
#[no_mangle]
pub unsafe extern "C" fn tether_read_ex(
    db: *mut TetherDb,
    backend: *const c_char,
    bucket: *const c_char,
    key: *const c_char,
    out_value: *mut *mut u8,
    out_len: *mut usize,
    out_version: *mut u64,
) -> Status {
    guard("tether_read_ex", || {
        let call = keyed(db, backend, bucket, key)?;
        let outputs = match (out_value.is_null(), out_len.is_null()) {
            (true, true) => None,
            (false, false) => Some((&mut *out_value, &mut *out_len)),
            (true, false) => return Err(Error::invalid("out_value is NULL, out_len is not")),
            (false, true) => return Err(Error::invalid("out_len is NULL, out_value is not")),
        };
        let (value, version) =
            call.db
                .read_ex(call.backend, call.bucket, call.key, outputs.is_some())?;
        if let Some((out_value, out_len)) = outputs {
            let value = value.into_boxed_slice();
            *out_len = value.len();
            *out_value = Box::into_raw(value).cast::<u8>();
        }
        if let Some(out) = out_version.as_mut() {
            *out = version;
        }
        Ok(())
    })
}

/// Removes a key. Thread-safe. Arguments as in `tether_write`.
///
/// Returns TETHER_OK when it removed the key; TETHER_NOT_FOUND when there
/// was nothing to remove; TETHER_INVALID_ARGUMENT; TETHER_UNKNOWN_BACKEND;
/// TETHER_TOO_LARGE when the key is over the backend's limit (so none can
/// be stored under it); TETHER_UNAVAILABLE; TETHER_IO; TETHER_INTERNAL.
#[no_mangle]
pub unsafe extern "C" fn tether_delete(
    db: *mut TetherDb,
    backend: *const c_char,
    bucket: *const c_char,
    key: *const c_char,
) -> Status {
    guard("tether_delete", || {
        let call = keyed(db, backend, bucket, key)?;
        call.db.delete(call.backend, call.bucket, call.key)
    })
}

/// Removes a key, under a condition. Thread-safe. `backend`, `bucket`,
/// `key` as in `tether_write`.
///
/// `flags`: 0, or TETHER_IF_VERSION: only where the key's version equals
/// `version` (ignored without it). The check and the removal are one
/// atomic step in the backend; a failed condition changes nothing.
///
/// Returns TETHER_OK when it removed the key; TETHER_NOT_FOUND when the
/// key is absent; TETHER_CONFLICT when TETHER_IF_VERSION finds another
/// version; TETHER_INVALID_ARGUMENT as `tether_delete`, and for any other
/// flag; TETHER_UNKNOWN_BACKEND; TETHER_TOO_LARGE when the key is over the
/// backend's limit; TETHER_UNAVAILABLE; TETHER_IO; TETHER_INTERNAL.
#[no_mangle]
pub unsafe extern "C" fn tether_delete_ex(
    db: *mut TetherDb,
    backend: *const c_char,
    bucket: *const c_char,
    key: *const c_char,
    flags: u32,
    version: u64,
) -> Status {
    guard("tether_delete_ex", || {
        let call = keyed(db, backend, bucket, key)?;
        let if_version = match flags {
            0 => None,
            TETHER_IF_VERSION => Some(version),
            _ => return Err(Error::invalid(format!("unknown flags {flags:#x}"))),
        };
        call.db
            .delete_ex(call.backend, call.bucket, call.key, if_version)
    })
}

/// Sets when a present key expires, keeping its value. Thread-safe.
/// `backend`, `bucket`, `key` as in `tether_write`.
///
/// `ttl_ms`: the key is absent for every call from `ttl_ms` milliseconds
/// after this call on; 0 removes its deadline. The new deadline is fixed:
/// a key written with TETHER_SLIDING stops sliding.
///
/// Returns TETHER_OK; TETHER_NOT_FOUND when the key is absent (or expired);
/// TETHER_INVALID_ARGUMENT as `tether_delete`, and for a `ttl_ms` whose
/// deadline overflows; TETHER_UNSUPPORTED on a backend without expiry;
/// TETHER_UNKNOWN_BACKEND; TETHER_TOO_LARGE when the key is over the
/// backend's limit; TETHER_UNAVAILABLE; TETHER_IO; TETHER_INTERNAL.
#[no_mangle]
pub unsafe extern "C" fn tether_touch(
    db: *mut TetherDb,
    backend: *const c_char,
    bucket: *const c_char,
    key: *const c_char,
    ttl_ms: u64,
) -> Status {
    guard("tether_touch", || {
        let call = keyed(db, backend, bucket, key)?;
        call.db.touch(call.backend, call.bucket, call.key, ttl_ms)
    })
}

/// Adds `delta` to a counter atomically and gives its new value.
/// Thread-safe: of any number of threads and processes incrementing one
/// counter, every increment counts once.
///
/// `backend`, `bucket`, `key`: as in `tether_write`.
/// The counter is stored as decimal text ("42", "-7"), so `tether_read`,
/// etcdctl and the Python TetherDB read it as such. An absent key counts
/// from 0. A stored value parses when it is an optional '+' or '-' and one
/// or more ASCII digits (leading zeros allowed), nothing else (no spaces,
/// no newline), within a signed 64-bit integer; the sum is written without
/// '+' or leading zeros.
/// `delta`: any value, negative included; 0 writes the value again (its
/// version grows) and creates an absent key as "0".
/// `shards`: 0 or 1 for a counter under `key` itself; from 2 to
/// TETHER_MAX_SHARDS (1024), the counter is split over that many keys,
/// `KEY#shard0` to `KEY#shard<shards-1>` in the same bucket, and the
/// increment adds to one of them, chosen at random, so that no key is hot.
/// Pass the same `shards` to every call on one counter.
/// `out_value`: NULL, or receives on TETHER_OK the counter's value after
/// the increment: the key's new value; with shards, the sum of every shard
/// read after the increment (one read per shard, not a snapshot: other
/// increments may land between the reads).
///
/// Increments cannot be queued. On a remote backend, a call retries while
/// other writers change the key between its read and its write, for at
/// most the backend's `timeout`.
///
/// Returns TETHER_OK; TETHER_CONFLICT when the value stored (in the key,
/// or the shard chosen) is not a decimal 64-bit integer, or the sum is
/// beyond one: nothing is changed; TETHER_INVALID_ARGUMENT for a NULL `db`
/// or `key`, an empty key, bad UTF-8, `:` in the bucket, or `shards` above
/// TETHER_MAX_SHARDS; TETHER_UNKNOWN_BACKEND; TETHER_TOO_LARGE when the key
/// is over the backend's limit; TETHER_UNAVAILABLE when the backend is
/// unreachable or does not answer within its timeout (a write that timed
/// out may have been applied, as with `tether_write`), or when other
/// writers kept changing the key for the whole timeout (nothing is
/// changed); TETHER_IO; TETHER_INTERNAL. With shards and `out_value`, a
/// failure to read the total (TETHER_CONFLICT for a shard that holds no
/// counter or a total beyond 64 bits, TETHER_UNAVAILABLE, TETHER_IO) is
/// returned with the increment applied, as the message says.
#[no_mangle]
pub unsafe extern "C" fn tether_increment(
    db: *mut TetherDb,
    backend: *const c_char,
    bucket: *const c_char,
    key: *const c_char,
    delta: i64,
    shards: u32,
    out_value: *mut i64,
) -> Status {
    guard("tether_increment", || {
        let call = keyed(db, backend, bucket, key)?;
        let with_total = !out_value.is_null();
        let value = call.db.increment(
            call.backend,
            call.bucket,
            call.key,
            delta,
            shards,
            with_total,
        )?;
        if let (Some(value), Some(out)) = (value, out_value.as_mut()) {
            *out = value;
        }
        Ok(())
    })
}

/// The value of a counter: the key's (`shards` 0 or 1), or the sum of its
/// shards `KEY#shard0` to `KEY#shard<shards-1>` (the key itself is not
/// counted: a sharded counter never writes it). Thread-safe.
///
/// `backend`, `bucket`, `key`: as in `tether_write`. `shards`: as in
/// `tether_increment`; a sum is read one shard after another, not as a
/// snapshot. An absent key or shard counts 0.
/// `out_value`: receives the value on TETHER_OK; not written otherwise.
///
/// Returns TETHER_OK; TETHER_CONFLICT when a value read is not a decimal
/// 64-bit integer, or the sum is beyond one; TETHER_INVALID_ARGUMENT as
/// `tether_increment`, and for a NULL `out_value`; TETHER_UNKNOWN_BACKEND;
/// TETHER_TOO_LARGE when the key is over the backend's limit;
/// TETHER_UNAVAILABLE; TETHER_IO; TETHER_INTERNAL.
#[no_mangle]
pub unsafe extern "C" fn tether_counter_total(
    db: *mut TetherDb,
    backend: *const c_char,
    bucket: *const c_char,
    key: *const c_char,
    shards: u32,
    out_value: *mut i64,
) -> Status {
    guard("tether_counter_total", || {
        let call = keyed(db, backend, bucket, key)?;
        let out_value = write_out(out_value, "out_value")?;
        *out_value = call
            .db
            .counter_total(call.backend, call.bucket, call.key, shards)?;
        Ok(())
    })
}

/// Lists one page of keys and values. Thread-safe. The same as
/// `tether_list_ex` with `flags` 0.
///
/// `bucket`: NULL or `""` lists every stored key as it is stored; a bucket
/// lists exactly that bucket's keys, without the bucket part. `prefix`: NULL
/// or `""` for all keys, else only keys (without the bucket part) starting
/// with it. `start_after`: NULL for the first page, else the key after which
/// the page starts — pass `tether_page_next` of the previous page.
/// `page_size`: at least 1; a page holds fewer entries only when it is the
/// last. Pages on `local` are in ascending key (byte) order.
///
/// On TETHER_OK, `*out_page` receives a page owned by the caller: free it
/// with `tether_page_free`. On any other status it is not written.
///
/// Returns TETHER_OK; TETHER_INVALID_ARGUMENT (NULL `db` or `out_page`, bad
/// UTF-8, `:` in the bucket, `page_size` 0); TETHER_UNKNOWN_BACKEND;
/// TETHER_TOO_LARGE when the bucket and `prefix` or `start_after` are
/// over the backend's limits; TETHER_UNAVAILABLE; TETHER_IO;
/// TETHER_INTERNAL.
#[no_mangle]
pub unsafe extern "C" fn tether_list(
    db: *mut TetherDb,
    backend: *const c_char,
    bucket: *const c_char,
    prefix: *const c_char,
    start_after: *const c_char,
    page_size: usize,
    out_page: *mut *mut TetherPage,
) -> Status {
    guard("tether_list", || {
        list(
            db,
            backend,
            bucket,
            prefix,
            start_after,
            page_size,
            0,
            out_page,
        )
    })
}

/// Lists one page of keys, with their values or without. Thread-safe.
///
/// `backend`, `bucket`, `prefix`, `start_after`, `page_size`: as in
/// `tether_list`.
/// `flags`: 0 for keys and values, as `tether_list` gives them; or
/// TETHER_KEYS_ONLY for the keys alone: the page lists the same keys, and
/// `tether_page_value` gives NULL and a length of 0 for each. The backend
/// then fetches no values where it can avoid it (etcd asks for keys only,
/// DynamoDB projects the key attribute), and `local` copies none.
///
/// On TETHER_OK, `*out_page` receives a page owned by the caller: free it
/// with `tether_page_free`. On any other status it is not written.
///
/// Returns TETHER_OK; TETHER_INVALID_ARGUMENT as `tether_list`, and for an
/// unknown flag; TETHER_UNKNOWN_BACKEND; TETHER_TOO_LARGE,
/// TETHER_UNAVAILABLE, TETHER_IO and TETHER_INTERNAL as `tether_list`.
#[no_mangle]
pub unsafe extern "C" fn tether_list_ex(
    db: *mut TetherDb,
    backend: *const c_char,
    bucket: *const c_char,
    prefix: *const c_char,
    start_after: *const c_char,
    page_size: usize,
    flags: u32,
    out_page: *mut *mut TetherPage,
) -> Status {
    guard("tether_list_ex", || {
        list(
            db,
            backend,
            bucket,
            prefix,
            start_after,
            page_size,
            flags,
            out_page,
        )
    })
}

/// Deletes every key of `bucket` that starts with `prefix`, and counts
/// them. Thread-safe.
///
/// `backend`: as in `tether_write`. `bucket`: NULL or `""` for none; must
/// not contain `:`. `prefix`: NULL or `""` for every key of the bucket,
/// else only keys (without the bucket part) starting with it. The keys
/// deleted are exactly those `tether_list` lists with the same `bucket`
/// and `prefix`: without a bucket, the stored keys (`bucket:key`)
/// starting with `prefix`; keys no call can name (the stored key
/// `bucket:` in its bucket, keys other programs stored that are not UTF-8
/// or hold a NUL) stay. A bucket NULL or `""` with a `prefix` NULL or `""`
/// is TETHER_INVALID_ARGUMENT: no call deletes a whole store by accident.
/// `out_deleted`: NULL, or receives the number of keys deleted on
/// TETHER_OK (on `dynamodb`, of keys found and deleted: a key another
/// client deleted meanwhile counts too).
///
/// It acts on the store as it is: a queued write not yet applied is
/// applied later and writes its key again, as after `tether_delete`. It
/// is one atomic step only on `etcd`, and there only where the range holds
/// no key that listings leave out; elsewhere a key written meanwhile may
/// stay, and a failed call may have deleted part of the keys.
///
/// Returns TETHER_OK, also when no key matched (count 0);
/// TETHER_INVALID_ARGUMENT (NULL `db`, bad UTF-8, `:` in the bucket, no
/// bucket and no prefix); TETHER_UNKNOWN_BACKEND; TETHER_TOO_LARGE when
/// the bucket and `prefix` are over the backend's limits;
/// TETHER_UNAVAILABLE; TETHER_IO; TETHER_INTERNAL.
#[no_mangle]
pub unsafe extern "C" fn tether_delete_prefix(
    db: *mut TetherDb,
    backend: *const c_char,
    bucket: *const c_char,
    prefix: *const c_char,
    out_deleted: *mut u64,
) -> Status {
    guard("tether_delete_prefix", || {
        let db = db_ref(db)?;
        let backend = optional_str(backend, "backend")?;
        let bucket = optional_str(bucket, "bucket")?;
        let prefix = optional_str(prefix, "prefix")?;
        let deleted = db.delete_prefix(backend, bucket, prefix)?;
        if let Some(out) = out_deleted.as_mut() {
            *out = deleted;
        }
        Ok(())
    })
}

/// The number of entries in `page`; 0 for NULL. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn tether_page_len(page: *const TetherPage) -> usize {
    guard_value("tether_page_len", 0, || {
        page.as_ref().map_or(0, |p| p.keys.len())
    })
}

/// The key of entry `i`, without the bucket part, NUL-terminated; NULL
/// when `page` is NULL or `i` is out of range. Owned by the page: valid
/// until `tether_page_free`. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn tether_page_key(page: *const TetherPage, i: usize) -> *const c_char {
    guard_value("tether_page_key", ptr::null(), || {
        page.as_ref()
            .and_then(|p| p.keys.get(i))
            .map_or(ptr::null(), |key| key.as_ptr())
    })
}

/// The value of entry `i`, `*out_len` bytes (not NUL-terminated); NULL when
/// `page` is NULL or `i` is out of range, and then `*out_len` is not
/// written; NULL and `*out_len` 0 for an entry of a page of keys alone
/// (TETHER_KEYS_ONLY). `out_len` may be NULL. Owned by the page: valid
/// until `tether_page_free`. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn tether_page_value(
    page: *const TetherPage,
    i: usize,
    out_len: *mut usize,
) -> *const u8 {
    guard_value("tether_page_value", ptr::null(), || {
        let Some(page) = page.as_ref().filter(|p| i < p.keys.len()) else {
            return ptr::null();
        };
        let Some(value) = page.values.as_ref().map(|values| &values[i]) else {
            if let Some(out_len) = out_len.as_mut() {
                *out_len = 0;
            }
            return ptr::null();
        };
        if let Some(out_len) = out_len.as_mut() {
            *out_len = value.len();
        }
        value.as_ptr()
    })
}

/// The key to pass as `start_after` for the next page; NULL on the last page
/// (exactly when no matching key remains) and for a NULL `page`. Owned by
/// the page: valid until `tether_page_free`. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn tether_page_next(page: *const TetherPage) -> *const c_char {
    guard_value("tether_page_next", ptr::null(), || {
        page.as_ref()
            .and_then(|p| p.next.as_ref())
            .map_or(ptr::null(), |next| next.as_ptr())
    })
}

/// Frees a page and everything it holds, once. NULL-safe. The page must not
/// be in use by another thread.
#[no_mangle]
pub unsafe extern "C" fn tether_page_free(page: *mut TetherPage) {
    guard_value("tether_page_free", (), || {
        if !page.is_null() {
            drop(Box::from_raw(page));
        }
    })
}

/// Frees a value returned by `tether_read`; `len` is the length it returned.
/// NULL-safe. Thread-safe; free each value once.
#[no_mangle]
pub unsafe extern "C" fn tether_free(value: *mut u8, len: usize) {
    guard_value("tether_free", (), || {
        if !value.is_null() {
            drop(Box::from_raw(ptr::slice_from_raw_parts_mut(value, len)));
        }
    })
}

/// What the queue's worker of each backend has done and what waits for it,
/// as a JSON object, so that an operator can watch an outage build up:
///
/// `{"running": true, "outbox": {"path", "bytes", "max_bytes", "sync",
/// "syncs"} or null, "backends": {"<name>": {"queued", "applied", "retried", "failed",
/// "expired", "batches", "pending", "oldest_pending_ms", "unreachable_ms",
/// "last_error"}}}`. Counts are of writes since the handle was opened
/// (`retried` counts each write sent again; `expired` each write not
/// applied because its deadline passed first; `batches` counts every batch
/// sent, retries included); `pending` counts the writes queued and not
/// yet applied or reported, outbox included; `syncs` counts the fsyncs
/// `queue_batch.sync` ran (writers waiting together share one);
/// `unreachable_ms` is 0 and
/// `last_error` null while the backend answers. Thread-safe.
///
/// `out_json`: receives a NUL-terminated string on success, left untouched
/// otherwise; free it with `tether_free_string`.
///
/// Returns TETHER_OK; TETHER_INVALID_ARGUMENT when `db` or `out_json` is
/// NULL; TETHER_INTERNAL.
#[no_mangle]
pub unsafe extern "C" fn tether_stats(db: *mut TetherDb, out_json: *mut *mut c_char) -> Status {
    guard("tether_stats", || {
        let db = db_ref(db)?;
        let out_json = write_out(out_json, "out_json")?;
        let json = CString::new(db.stats().to_string())
            .map_err(|_| Error::Internal("statistics hold a NUL".into()))?;
        *out_json = json.into_raw();
        Ok(())
    })
}

/// Copies the keys of `bucket` starting with `prefix` from the backend
/// named `from_backend` to the backend named `to_backend` of this handle
/// (a top-level section's engine name, or a name of the `backends`
/// section), keeping each key's remaining ttl, and reports what it did.
/// Thread-safe. It streams: a page of keys and one batch of the target
/// are in memory at a time, whatever the stores' size. It acts on the
/// stores as they are (writes still queued for the source are not in
/// them: flush first) and is not one atomic step: a failure leaves what
/// was copied so far in place, and a rerun with TETHER_COPY_CHANGED goes
/// on from there.
///
/// `bucket`, `prefix`: NULL or "" for none; with neither, every key.
/// `flags`: 0, or any of TETHER_COPY_CHANGED (only keys whose value
/// differs on the target, or that it lacks), TETHER_COPY_MIRROR (also
/// delete the target's keys that the source lacks), TETHER_COPY_DRY_RUN
/// (change nothing; the report says what would change).
/// `out_report_json`: receives, on success only, `{"copied": N,
/// "deleted": N, "unchanged": N, "keys": [...]}`, `keys` being the first
/// 1,000 keys copied or deleted (or that would be); free it with
/// `tether_free_string`.
///
/// Returns TETHER_OK; TETHER_INVALID_ARGUMENT when `db`, either backend
/// name or `out_report_json` is NULL, a name is empty or not UTF-8, both
/// name one backend, the bucket is invalid, or flags are unknown;
/// TETHER_UNKNOWN_BACKEND for a name the handle lacks; TETHER_UNSUPPORTED
/// when the target refuses changes (`read_only`) or the source reads
/// (`write_only`); TETHER_TOO_LARGE for a value the target cannot hold;
/// TETHER_UNAVAILABLE, TETHER_IO or TETHER_INTERNAL from either engine.
#[no_mangle]
pub unsafe extern "C" fn tether_copy(
    db: *mut TetherDb,
    from_backend: *const c_char,
    to_backend: *const c_char,
    bucket: *const c_char,
    prefix: *const c_char,
    flags: u32,
    out_report_json: *mut *mut c_char,
) -> Status {
    guard("tether_copy", || {
        let db = db_ref(db)?;
        let from = required_str(from_backend, "from_backend")?;
        let to = required_str(to_backend, "to_backend")?;
        let bucket = optional_str(bucket, "bucket")?;
        let prefix = optional_str(prefix, "prefix")?;
        let known = TETHER_COPY_CHANGED | TETHER_COPY_MIRROR | TETHER_COPY_DRY_RUN;
        if flags & !known != 0 {
            return Err(Error::invalid(format!("unknown flags {flags:#x}")));
        }
        let out_report_json = write_out(out_report_json, "out_report_json")?;
        let options = CopyOptions {
            changed: flags & TETHER_COPY_CHANGED != 0,
            mirror: flags & TETHER_COPY_MIRROR != 0,
            dry_run: flags & TETHER_COPY_DRY_RUN != 0,
        };
        let report = db.copy(from, to, bucket, prefix, options)?;
        let json = CString::new(report.to_json())
            .map_err(|_| Error::Internal("a copy's report holds a NUL".into()))?;
        *out_report_json = json.into_raw();
        Ok(())
    })
}

/// Frees a string returned by `tether_stats` or `tether_copy`. NULL-safe. Thread-safe; free
/// each string once.
#[no_mangle]
pub unsafe extern "C" fn tether_free_string(string: *mut c_char) {
    guard_value("tether_free_string", (), || {
        if !string.is_null() {
            drop(CString::from_raw(string));
        }
    })
}

/// This thread's message for its last failed call: it names the function,
/// the backend, the key and the cause. Never NULL (`""` before any failure).
/// Owned by the library: valid on this thread until its next failing call.
/// Thread-safe: each thread has its own.
#[no_mangle]
pub extern "C" fn tether_last_error() -> *const c_char {
    boundary::last_error()
}

/// The name of a status, e.g. "TETHER_NOT_FOUND". Static: never free it.
/// `status` must be one of the enum's values. Thread-safe.
#[no_mangle]
pub extern "C" fn tether_status_name(status: Status) -> *const c_char {
    status.name_nul().as_ptr().cast()
}

/// The library's version, "MAJOR.MINOR.PATCH", the same as the
/// TETHER_VERSION_* macros of the header it was built with. Static: never
/// free it. Thread-safe.
#[no_mangle]
pub extern "C" fn tether_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// `tether_list` and `tether_list_ex`: the arguments converted, the page
/// handed out.
#[allow(clippy::too_many_arguments)]
unsafe fn list(
    db: *mut TetherDb,
    backend: *const c_char,
    bucket: *const c_char,
    prefix: *const c_char,
    start_after: *const c_char,
    page_size: usize,
    flags: u32,
    out_page: *mut *mut TetherPage,
) -> Result<(), Error> {
    let db = db_ref(db)?;
    let backend = optional_str(backend, "backend")?;
    let bucket = optional_str(bucket, "bucket")?;
    let prefix = optional_str(prefix, "prefix")?;
    let start_after = optional_str(start_after, "start_after")?;
    let out_page = write_out(out_page, "out_page")?;
    let page = match flags {
        0 => TetherPage::from(db.list(backend, bucket, prefix, start_after, page_size)?),
        TETHER_KEYS_ONLY => {
            TetherPage::from(db.list_keys(backend, bucket, prefix, start_after, page_size)?)
        }
        _ => return Err(Error::invalid(format!("unknown flags {flags:#x}"))),
    };
    *out_page = Box::into_raw(Box::new(page));
    Ok(())
}

/// The handle, backend, bucket and key arguments of a call on one key,
/// converted.
struct Keyed<'a> {
    db: &'a Db,
    backend: Option<&'a str>,
    bucket: Option<&'a str>,
    key: &'a str,
}

unsafe fn keyed<'a>(
    db: *mut TetherDb,
    backend: *const c_char,
    bucket: *const c_char,
    key: *const c_char,
) -> Result<Keyed<'a>, Error> {
    Ok(Keyed {
        db: db_ref(db)?,
        backend: optional_str(backend, "backend")?,
        bucket: optional_str(bucket, "bucket")?,
        key: required_str(key, "key")?,
    })
}
