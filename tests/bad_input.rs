//! The table of docs/bad-input.md, one test per row, through the C entry
//! points the way a C caller reaches them: each asserts the status the
//! table gives and what it says happens to the data.

mod common;

use std::ffi::{c_char, CStr, CString};
use std::path::Path;
use std::ptr;

use common::{c, last_error};
use tetherdb::ffi::*;
use tetherdb::Status;

/// A string that is not UTF-8, NUL-terminated.
const NOT_UTF8: &[u8] = b"\xff\xfe\0";

fn not_utf8() -> *const c_char {
    NOT_UTF8.as_ptr().cast()
}

/// A handle on a `local` store in `dir`, plus `extra` top-level keys.
fn open(dir: &Path, extra: &str) -> *mut TetherDb {
    let json = c(&format!(
        r#"{{"logging": "none", "local": {{"filepath": {:?}}},
            "queue_batch": {{"size": 10, "interval": 0.05}}{extra}}}"#,
        dir.join("db").to_str().unwrap()
    ));
    let mut db = ptr::null_mut();
    let status = unsafe { tether_open(json.as_ptr(), &mut db) };
    assert_eq!(status, Status::Ok, "{}", last_error());
    db
}

/// `tether_open` of `json`, which must fail with `want` and leave `out_db`
/// alone.
fn open_fails(json: &str, want: Status) -> String {
    let json = c(json);
    let sentinel = ptr::dangling_mut::<TetherDb>();
    let mut db = sentinel;
    let status = unsafe { tether_open(json.as_ptr(), &mut db) };
    assert_eq!(status, want, "{}", last_error());
    assert_eq!(db, sentinel, "out_db was written");
    last_error()
}

/// Writes `value` under `key` (no bucket) of the default backend.
fn put(db: *mut TetherDb, key: &str, value: &[u8]) {
    let key = c(key);
    let status = unsafe {
        tether_write(
            db,
            ptr::null(),
            ptr::null(),
            key.as_ptr(),
            value.as_ptr(),
            value.len(),
            0,
        )
    };
    assert_eq!(status, Status::Ok, "{}", last_error());
}

/// The value under `bucket`/`key` of `backend`, or the failed status.
fn get(db: *mut TetherDb, backend: &str, bucket: &str, key: &str) -> Result<Vec<u8>, Status> {
    let (backend, bucket, key) = (c(backend), c(bucket), c(key));
    let (mut value, mut len) = (ptr::null_mut(), 0);
    let status = unsafe {
        tether_read(
            db,
            backend.as_ptr(),
            bucket.as_ptr(),
            key.as_ptr(),
            &mut value,
            &mut len,
        )
    };
    if status != Status::Ok {
        return Err(status);
    }
    let bytes = unsafe { std::slice::from_raw_parts(value, len) }.to_vec();
    unsafe { tether_free(value, len) };
    Ok(bytes)
}

/// The keys of one listing page of everything, at most 100.
fn keys(db: *mut TetherDb) -> Vec<String> {
    let mut page = ptr::null_mut();
    let status = unsafe {
        tether_list(
            db,
            ptr::null(),
            ptr::null(),
            ptr::null(),
            ptr::null(),
            100,
            &mut page,
        )
    };
    assert_eq!(status, Status::Ok, "{}", last_error());
    let keys = (0..unsafe { tether_page_len(page) })
        .map(|i| unsafe { CStr::from_ptr(tether_page_key(page, i)) })
        .map(|k| k.to_str().unwrap().to_owned())
        .collect();
    unsafe { tether_page_free(page) };
    keys
}

/// Each data call with `key` (and `bucket`, `backend`) fails with `want`,
/// queued writes included, and writes nothing to its out-parameters.
unsafe fn every_call_fails(
    db: *mut TetherDb,
    backend: *const c_char,
    bucket: *const c_char,
    key: *const c_char,
    want: Status,
) {
    let v = b"new";
    for flags in [0, TETHER_QUEUE] {
        let status = tether_write(db, backend, bucket, key, v.as_ptr(), 3, flags);
        assert_eq!(status, want, "tether_write flags {flags}: {}", last_error());
        assert!(!last_error().is_empty());
    }
    let status = tether_update(db, backend, bucket, key, v.as_ptr(), 3);
    assert_eq!(status, want, "tether_update: {}", last_error());
    let sentinel = ptr::without_provenance_mut::<u8>(0xdead0);
    let (mut value, mut len) = (sentinel, 7);
    let status = tether_read(db, backend, bucket, key, &mut value, &mut len);
    assert_eq!(status, want, "tether_read: {}", last_error());
    assert_eq!((value, len), (sentinel, 7), "tether_read wrote its outputs");
    let status = tether_delete(db, backend, bucket, key);
    assert_eq!(status, want, "tether_delete: {}", last_error());
    let mut count = 7;
    for shards in [0, 4] {
        let status = tether_increment(db, backend, bucket, key, 1, shards, &mut count);
        assert_eq!(status, want, "tether_increment: {}", last_error());
        let status = tether_counter_total(db, backend, bucket, key, shards, &mut count);
        assert_eq!(status, want, "tether_counter_total: {}", last_error());
    }
    assert_eq!(count, 7, "a counter call wrote its output");
}

/// `tether_list_ex` (with `flags`) and `tether_delete_prefix` with these
/// arguments fail with `want` and leave their out-parameters alone.
unsafe fn listing_calls_fail(
    db: *mut TetherDb,
    backend: *const c_char,
    bucket: *const c_char,
    prefix: *const c_char,
    flags: u32,
    want: Status,
) {
    let sentinel = ptr::dangling_mut::<TetherPage>();
    let mut page = sentinel;
    let status = tether_list_ex(
        db,
        backend,
        bucket,
        prefix,
        ptr::null(),
        10,
        flags,
        &mut page,
    );
    assert_eq!(status, want, "tether_list_ex: {}", last_error());
    assert_eq!(page, sentinel, "tether_list_ex wrote out_page");
    let mut deleted = 99;
    let status = tether_delete_prefix(db, backend, bucket, prefix, &mut deleted);
    assert_eq!(status, want, "tether_delete_prefix: {}", last_error());
    assert_eq!(deleted, 99, "tether_delete_prefix wrote out_deleted");
}

#[test]
fn null_pointers_are_invalid_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), "");
    put(db, "kept", b"v");
    let key = c("k");
    unsafe {
        // A NULL handle, a NULL key.
        every_call_fails(
            ptr::null_mut(),
            ptr::null(),
            ptr::null(),
            key.as_ptr(),
            Status::InvalidArgument,
        );
        every_call_fails(
            db,
            ptr::null(),
            ptr::null(),
            ptr::null(),
            Status::InvalidArgument,
        );
        for call in [tether_start, tether_stop, tether_flush] {
            assert_eq!(call(ptr::null_mut()), Status::InvalidArgument);
        }
        // A NULL value with a length; NULL with length 0 is the empty value.
        for flags in [0, TETHER_QUEUE] {
            let status = tether_write(
                db,
                ptr::null(),
                ptr::null(),
                key.as_ptr(),
                ptr::null(),
                3,
                flags,
            );
            assert_eq!(status, Status::InvalidArgument);
            assert!(last_error().contains("value is NULL"), "{}", last_error());
        }
        let status = tether_update(
            db,
            ptr::null(),
            ptr::null(),
            c"kept".as_ptr(),
            ptr::null(),
            3,
        );
        assert_eq!(status, Status::InvalidArgument);
        // NULL out-parameters fail the call before it does anything.
        let (mut value, mut len) = (ptr::null_mut(), 0);
        let kept = c"kept".as_ptr();
        let status = tether_read(
            db,
            ptr::null(),
            ptr::null(),
            kept,
            ptr::null_mut(),
            &mut len,
        );
        assert_eq!(status, Status::InvalidArgument);
        let status = tether_read(
            db,
            ptr::null(),
            ptr::null(),
            kept,
            &mut value,
            ptr::null_mut(),
        );
        assert_eq!(status, Status::InvalidArgument);
        assert!(value.is_null());
        let status = tether_list(
            db,
            ptr::null(),
            ptr::null(),
            ptr::null(),
            ptr::null(),
            10,
            ptr::null_mut(),
        );
        assert_eq!(status, Status::InvalidArgument);
        let mut page = ptr::null_mut();
        let status = tether_list(
            ptr::null_mut(),
            ptr::null(),
            ptr::null(),
            ptr::null(),
            ptr::null(),
            10,
            &mut page,
        );
        assert_eq!(status, Status::InvalidArgument);
        assert!(page.is_null());
        // A total has nowhere to go without out_value; an increment may
        // do without (below, after the check that nothing was written).
        let status = tether_counter_total(db, ptr::null(), ptr::null(), kept, 0, ptr::null_mut());
        assert_eq!(status, Status::InvalidArgument);
        // The same from tether_list_ex and tether_delete_prefix; a NULL
        // out_deleted is allowed.
        let status = tether_list_ex(
            db,
            ptr::null(),
            ptr::null(),
            ptr::null(),
            ptr::null(),
            10,
            TETHER_KEYS_ONLY,
            ptr::null_mut(),
        );
        assert_eq!(status, Status::InvalidArgument);
        listing_calls_fail(
            ptr::null_mut(),
            ptr::null(),
            c"b".as_ptr(),
            ptr::null(),
            TETHER_KEYS_ONLY,
            Status::InvalidArgument,
        );
        let status = tether_delete_prefix(
            db,
            ptr::null(),
            ptr::null(),
            c"zzz".as_ptr(),
            ptr::null_mut(),
        );
        assert_eq!(status, Status::Ok, "{}", last_error());
        let status = tether_open(ptr::null(), ptr::null_mut());
        assert_eq!(status, Status::InvalidArgument);
        let mut other = ptr::null_mut();
        assert_eq!(
            tether_open_file(ptr::null(), &mut other),
            Status::InvalidArgument
        );
        assert!(other.is_null());
        // NULL is a no-op for the functions that free, and the page
        // accessors answer NULL or 0.
        assert_eq!(tether_close(ptr::null_mut()), Status::Ok);
        tether_free(ptr::null_mut(), 5);
        tether_page_free(ptr::null_mut());
        assert_eq!(tether_page_len(ptr::null()), 0);
        assert!(tether_page_key(ptr::null(), 0).is_null());
        assert!(tether_page_value(ptr::null(), 0, &mut len).is_null());
        assert!(tether_page_next(ptr::null()).is_null());

        // Nothing was written; the value kept is intact.
        assert_eq!(tether_flush(db), Status::Ok);
        assert_eq!(keys(db), ["kept"]);
        assert_eq!(get(db, "", "", "kept").unwrap(), b"v");
        let status = tether_increment(
            db,
            ptr::null(),
            ptr::null(),
            key.as_ptr(),
            2,
            0,
            ptr::null_mut(),
        );
        assert_eq!(status, Status::Ok, "{}", last_error());
        assert_eq!(get(db, "", "", "k").unwrap(), b"2");
        assert_eq!(tether_close(db), Status::Ok);
    }
}

#[test]
fn bad_utf8_is_an_invalid_argument() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), "");
    put(db, "kept", b"v");
    let (key, bucket) = (c("k"), c("b"));
    unsafe {
        // In the key, the bucket and the backend name.
        every_call_fails(
            db,
            ptr::null(),
            ptr::null(),
            not_utf8(),
            Status::InvalidArgument,
        );
        assert!(
            last_error().contains("key is not valid UTF-8"),
            "{}",
            last_error()
        );
        every_call_fails(
            db,
            ptr::null(),
            not_utf8(),
            key.as_ptr(),
            Status::InvalidArgument,
        );
        every_call_fails(
            db,
            not_utf8(),
            bucket.as_ptr(),
            key.as_ptr(),
            Status::InvalidArgument,
        );
        // In a listing's bucket, prefix and start_after.
        let sentinel = ptr::dangling_mut::<TetherPage>();
        let mut page = sentinel;
        for (bucket, prefix, after) in [
            (not_utf8(), ptr::null(), ptr::null()),
            (ptr::null(), not_utf8(), ptr::null()),
            (ptr::null(), ptr::null(), not_utf8()),
        ] {
            let status = tether_list(db, ptr::null(), bucket, prefix, after, 10, &mut page);
            assert_eq!(status, Status::InvalidArgument);
            let status = tether_list_ex(
                db,
                ptr::null(),
                bucket,
                prefix,
                after,
                10,
                TETHER_KEYS_ONLY,
                &mut page,
            );
            assert_eq!(status, Status::InvalidArgument);
        }
        assert_eq!(page, sentinel);
        // In tether_delete_prefix's backend, bucket and prefix.
        for (backend, bucket, prefix) in [
            (not_utf8(), bucket.as_ptr(), ptr::null()),
            (ptr::null(), not_utf8(), ptr::null()),
            (ptr::null(), bucket.as_ptr(), not_utf8()),
            (ptr::null(), ptr::null(), not_utf8()),
        ] {
            listing_calls_fail(db, backend, bucket, prefix, 0, Status::InvalidArgument);
        }
        // In the configuration text or a file's path; a file whose
        // contents are not UTF-8 is a configuration error.
        let mut other = ptr::dangling_mut::<TetherDb>();
        assert_eq!(tether_open(not_utf8(), &mut other), Status::InvalidArgument);
        assert_eq!(
            tether_open_file(not_utf8(), &mut other),
            Status::InvalidArgument
        );
        let file = dir.path().join("config.json");
        std::fs::write(&file, b"{\"logging\": \"\xff\"}").unwrap();
        let path = c(file.to_str().unwrap());
        assert_eq!(tether_open_file(path.as_ptr(), &mut other), Status::Config);
        assert_eq!(other, ptr::dangling_mut());
        // Values are bytes: any bytes are stored as they are.
        let value = b"\xff\0\xfe";
        let status = tether_write(
            db,
            ptr::null(),
            ptr::null(),
            key.as_ptr(),
            value.as_ptr(),
            3,
            0,
        );
        assert_eq!(status, Status::Ok);
        assert_eq!(get(db, "", "", "k").unwrap(), value);

        assert_eq!(tether_flush(db), Status::Ok);
        assert_eq!(keys(db), ["k", "kept"]);
        assert_eq!(tether_close(db), Status::Ok);
    }
}

#[test]
fn empty_key_is_an_invalid_argument() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), "");
    put(db, "kept", b"v");
    let (empty, bucket) = (c(""), c("b"));
    unsafe {
        every_call_fails(
            db,
            ptr::null(),
            ptr::null(),
            empty.as_ptr(),
            Status::InvalidArgument,
        );
        assert!(
            last_error().contains("the key is empty"),
            "{}",
            last_error()
        );
        every_call_fails(
            db,
            ptr::null(),
            bucket.as_ptr(),
            empty.as_ptr(),
            Status::InvalidArgument,
        );
        // A key cut short by a NUL at its start is empty too.
        let nul_first = b"\0k\0";
        every_call_fails(
            db,
            ptr::null(),
            ptr::null(),
            nul_first.as_ptr().cast(),
            Status::InvalidArgument,
        );
        assert_eq!(tether_flush(db), Status::Ok);
        assert_eq!(keys(db), ["kept"]);
        assert_eq!(tether_close(db), Status::Ok);
    }
}

#[test]
fn colon_in_bucket_is_an_invalid_argument() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), "");
    put(db, "kept", b"v");
    let key = c("k");
    unsafe {
        for bucket in ["a:b", ":", "b:"] {
            let bucket = c(bucket);
            every_call_fails(
                db,
                ptr::null(),
                bucket.as_ptr(),
                key.as_ptr(),
                Status::InvalidArgument,
            );
            assert!(
                last_error().contains("the bucket contains ':'"),
                "{}",
                last_error()
            );
            let mut page = ptr::dangling_mut::<TetherPage>();
            let status = tether_list(
                db,
                ptr::null(),
                bucket.as_ptr(),
                ptr::null(),
                ptr::null(),
                10,
                &mut page,
            );
            assert_eq!(status, Status::InvalidArgument);
            assert_eq!(page, ptr::dangling_mut());
            for prefix in [ptr::null(), c"k".as_ptr()] {
                listing_calls_fail(
                    db,
                    ptr::null(),
                    bucket.as_ptr(),
                    prefix,
                    TETHER_KEYS_ONLY,
                    Status::InvalidArgument,
                );
                assert!(
                    last_error().contains("the bucket contains ':'"),
                    "{}",
                    last_error()
                );
            }
        }
        // A ':' in a key is allowed: it is the bucket's that separates.
        let (bucket, key) = (c("b"), c("a:b"));
        let status = tether_write(
            db,
            ptr::null(),
            bucket.as_ptr(),
            key.as_ptr(),
            b"x".as_ptr(),
            1,
            0,
        );
        assert_eq!(status, Status::Ok);
        assert_eq!(get(db, "", "b", "a:b").unwrap(), b"x");
        assert_eq!(tether_flush(db), Status::Ok);
        assert_eq!(keys(db), ["b:a:b", "kept"]);
        assert_eq!(tether_close(db), Status::Ok);
    }
}

/// Every key of `bucket`, paging by `page_size`.
fn bucket_keys(db: *mut TetherDb, bucket: &str, page_size: usize) -> Vec<String> {
    let bucket = c(bucket);
    let (mut keys, mut after) = (Vec::new(), None::<CString>);
    loop {
        let mut page = ptr::null_mut();
        let status = unsafe {
            tether_list(
                db,
                ptr::null(),
                bucket.as_ptr(),
                ptr::null(),
                after.as_ref().map_or(ptr::null(), |a| a.as_ptr()),
                page_size,
                &mut page,
            )
        };
        assert_eq!(status, Status::Ok, "{}", last_error());
        let len = unsafe { tether_page_len(page) };
        for i in 0..len {
            let key = unsafe { CStr::from_ptr(tether_page_key(page, i)) };
            keys.push(key.to_str().unwrap().to_owned());
        }
        let next = unsafe { tether_page_next(page) };
        after = (!next.is_null()).then(|| unsafe { CStr::from_ptr(next) }.to_owned());
        unsafe { tether_page_free(page) };
        assert!(
            after.is_none() || len == page_size,
            "a short page before the last"
        );
        if after.is_none() {
            return keys;
        }
    }
}

/// The stored key `a:` (written without a bucket here; the Python
/// TetherDB's empty key in bucket `a`) cannot be named in bucket `a`, where
/// its key part is empty: bucket `a` does not list it. Without a bucket it
/// is listed, read and deleted as stored.
#[test]
fn a_bucket_does_not_list_its_own_name_as_an_empty_key() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), "");
    put(db, "a:", b"bare");
    let bucket = c("a");
    for key in ["k1", "k2"] {
        let key = c(key);
        let status = unsafe {
            tether_write(
                db,
                ptr::null(),
                bucket.as_ptr(),
                key.as_ptr(),
                b"v".as_ptr(),
                1,
                0,
            )
        };
        assert_eq!(status, Status::Ok, "{}", last_error());
    }
    for page_size in [1, 2, 10] {
        assert_eq!(
            bucket_keys(db, "a", page_size),
            ["k1", "k2"],
            "page_size {page_size}"
        );
    }
    assert_eq!(keys(db), ["a:", "a:k1", "a:k2"]);
    // Nor does deleting bucket `a` by prefix delete it.
    let mut deleted = 0;
    let status = unsafe {
        tether_delete_prefix(db, ptr::null(), bucket.as_ptr(), ptr::null(), &mut deleted)
    };
    assert_eq!((status, deleted), (Status::Ok, 2), "{}", last_error());
    assert_eq!(keys(db), ["a:"]);
    assert_eq!(get(db, "", "", "a:").unwrap(), b"bare");
    let key = c("a:");
    assert_eq!(
        unsafe { tether_delete(db, ptr::null(), ptr::null(), key.as_ptr()) },
        Status::Ok
    );
    assert_eq!(unsafe { tether_close(db) }, Status::Ok);
}

#[test]
fn unknown_flags_and_page_size_zero_are_invalid_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), "");
    let key = c("k");
    unsafe {
        for flags in [2, 0x80, TETHER_QUEUE | 0x80, u32::MAX] {
            let status = tether_write(
                db,
                ptr::null(),
                ptr::null(),
                key.as_ptr(),
                b"v".as_ptr(),
                1,
                flags,
            );
            assert_eq!(status, Status::InvalidArgument, "flags {flags:#x}");
            assert!(last_error().contains("unknown flags"), "{}", last_error());
        }
        let mut page = ptr::dangling_mut::<TetherPage>();
        let status = tether_list(
            db,
            ptr::null(),
            ptr::null(),
            ptr::null(),
            ptr::null(),
            0,
            &mut page,
        );
        assert_eq!(status, Status::InvalidArgument);
        assert!(last_error().contains("page_size is 0"), "{}", last_error());
        assert_eq!(page, ptr::dangling_mut());
        // tether_list_ex: TETHER_KEYS_ONLY is its one flag; page_size 0.
        for flags in [2, 0x80, TETHER_KEYS_ONLY | 0x80, u32::MAX] {
            let status = tether_list_ex(
                db,
                ptr::null(),
                ptr::null(),
                ptr::null(),
                ptr::null(),
                10,
                flags,
                &mut page,
            );
            assert_eq!(status, Status::InvalidArgument, "flags {flags:#x}");
            assert!(last_error().contains("unknown flags"), "{}", last_error());
        }
        for flags in [0, TETHER_KEYS_ONLY] {
            let status = tether_list_ex(
                db,
                ptr::null(),
                ptr::null(),
                ptr::null(),
                ptr::null(),
                0,
                flags,
                &mut page,
            );
            assert_eq!(status, Status::InvalidArgument);
            assert!(last_error().contains("page_size is 0"), "{}", last_error());
        }
        assert_eq!(page, ptr::dangling_mut());
        assert_eq!(tether_flush(db), Status::Ok);
        assert!(keys(db).is_empty());
        assert_eq!(tether_close(db), Status::Ok);
    }
}

/// A counter whose stored value is no decimal 64-bit integer, or whose sum
/// would be beyond one: a conflict, and the value and its version stay.
#[test]
fn counter_on_a_non_number_is_a_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), "");
    let key = c("k");
    let max = i64::MAX.to_string();
    let cases: &[(&[u8], i64)] = &[
        (b"abc", 1),
        (b"", 1),
        (b" 5", 1),
        (b"1.5", 1),
        (b"\xff\xfe", 1),
        (b"18446744073709551616", 1),
        (max.as_bytes(), 1),
        (b"-2", i64::MIN),
    ];
    unsafe {
        for &(stored, delta) in cases {
            put(db, "k", stored);
            let mut before = 0;
            let status = tether_read_ex(
                db,
                ptr::null(),
                ptr::null(),
                key.as_ptr(),
                ptr::null_mut(),
                ptr::null_mut(),
                &mut before,
            );
            assert_eq!(status, Status::Ok);
            let mut count = 7;
            let status = tether_increment(
                db,
                ptr::null(),
                ptr::null(),
                key.as_ptr(),
                delta,
                0,
                &mut count,
            );
            assert_eq!(status, Status::Conflict, "{stored:?} + {delta}");
            let message = last_error();
            assert!(
                message.contains("is not a decimal 64-bit integer")
                    || message.contains("is beyond a 64-bit integer"),
                "{message}"
            );
            assert!(message.contains("\"k\""), "{message}");
            assert_eq!(count, 7, "out_value written on a conflict");
            assert_eq!(get(db, "", "", "k").unwrap(), stored);
            let mut after = 0;
            let status = tether_read_ex(
                db,
                ptr::null(),
                ptr::null(),
                key.as_ptr(),
                ptr::null_mut(),
                ptr::null_mut(),
                &mut after,
            );
            assert_eq!(status, Status::Ok);
            assert_eq!(after, before, "{stored:?}: a conflict wrote");
        }
        put(db, "k", b"abc");
        let mut count = 7;
        let status =
            tether_counter_total(db, ptr::null(), ptr::null(), key.as_ptr(), 0, &mut count);
        assert_eq!(status, Status::Conflict);
        assert_eq!(count, 7);
        assert_eq!(keys(db), ["k"]);
        assert_eq!(tether_close(db), Status::Ok);
    }
}

#[test]
fn shards_over_the_bound_are_invalid_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), "");
    let key = c("k");
    unsafe {
        for shards in [TETHER_MAX_SHARDS + 1, u32::MAX] {
            let mut count = 7;
            let status = tether_increment(
                db,
                ptr::null(),
                ptr::null(),
                key.as_ptr(),
                1,
                shards,
                &mut count,
            );
            assert_eq!(status, Status::InvalidArgument);
            assert!(
                last_error().contains(&format!("shards is {shards}")),
                "{}",
                last_error()
            );
            let status = tether_counter_total(
                db,
                ptr::null(),
                ptr::null(),
                key.as_ptr(),
                shards,
                &mut count,
            );
            assert_eq!(status, Status::InvalidArgument);
            assert_eq!(count, 7);
        }
        assert!(keys(db).is_empty(), "a refused increment wrote");
        // The bound itself is allowed.
        let mut count = 0;
        let status = tether_increment(
            db,
            ptr::null(),
            ptr::null(),
            key.as_ptr(),
            1,
            TETHER_MAX_SHARDS,
            &mut count,
        );
        assert_eq!(status, Status::Ok, "{}", last_error());
        assert_eq!(count, 1);
        assert_eq!(tether_close(db), Status::Ok);
    }
}

/// Conditions that cannot hold together, a condition on a queued write
/// (checked against nothing), a sliding ttl without a ttl, and a ttl whose
/// deadline overflows: each refused before anything is written.
#[test]
fn impossible_conditions_and_ttls_are_invalid_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), "");
    let key = c("k");
    put(db, "k", b"before");
    let write_ex = |flags: u32, ttl_ms: u64, out_version: &mut u64| unsafe {
        tether_write_ex(
            db,
            ptr::null(),
            ptr::null(),
            key.as_ptr(),
            b"v".as_ptr(),
            1,
            flags,
            ttl_ms,
            1,
            out_version,
        )
    };
    let cases = [
        (TETHER_IF_ABSENT | TETHER_IF_VERSION, 0, "together"),
        (TETHER_QUEUE | TETHER_IF_ABSENT, 0, "TETHER_QUEUE"),
        (TETHER_QUEUE | TETHER_IF_VERSION, 0, "TETHER_QUEUE"),
        (TETHER_SLIDING, 0, "without a ttl_ms"),
        (0, u64::MAX, "ttl_ms"),
        (TETHER_QUEUE, u64::MAX, "ttl_ms"),
        (TETHER_SLIDING, i64::MAX as u64, "ttl_ms"),
        (0x80, 0, "unknown flags"),
    ];
    for (flags, ttl_ms, says) in cases {
        let mut version = 7;
        let status = write_ex(flags, ttl_ms, &mut version);
        assert_eq!(
            status,
            Status::InvalidArgument,
            "flags {flags:#x}, ttl {ttl_ms}"
        );
        assert!(last_error().contains(says), "{}", last_error());
        assert_eq!(version, 7, "out_version was written");
    }
    unsafe {
        let status = tether_touch(db, ptr::null(), ptr::null(), key.as_ptr(), u64::MAX);
        assert_eq!(status, Status::InvalidArgument);
        assert!(last_error().contains("ttl_ms"), "{}", last_error());
        for flags in [TETHER_IF_ABSENT, TETHER_QUEUE, 0x80] {
            let status = tether_delete_ex(db, ptr::null(), ptr::null(), key.as_ptr(), flags, 1);
            assert_eq!(status, Status::InvalidArgument, "delete flags {flags:#x}");
        }
        assert_eq!(tether_flush(db), Status::Ok);
    }
    // Nothing was written, nor given a deadline.
    assert_eq!(get(db, "local", "", "k"), Ok(b"before".to_vec()));
    unsafe { assert_eq!(tether_close(db), Status::Ok) };
}

#[test]
fn unknown_backend_is_unknown_backend() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), "");
    let key = c("k");
    unsafe {
        // Not configured in this handle, whether or not this build has it.
        for name in ["nope", "etcd", "dynamodb", "LOCAL"] {
            let backend = c(name);
            every_call_fails(
                db,
                backend.as_ptr(),
                ptr::null(),
                key.as_ptr(),
                Status::UnknownBackend,
            );
            assert!(last_error().contains(name), "{}", last_error());
            let mut page = ptr::dangling_mut::<TetherPage>();
            let status = tether_list(
                db,
                backend.as_ptr(),
                ptr::null(),
                ptr::null(),
                ptr::null(),
                10,
                &mut page,
            );
            assert_eq!(status, Status::UnknownBackend);
            listing_calls_fail(
                db,
                backend.as_ptr(),
                c"b".as_ptr(),
                ptr::null(),
                TETHER_KEYS_ONLY,
                Status::UnknownBackend,
            );
        }
        assert!(keys(db).is_empty());
        assert_eq!(tether_close(db), Status::Ok);
    }
}

/// No bucket and no prefix would delete every key of the store: refused,
/// whichever of NULL and "" each is, and nothing is deleted. A bucket or a
/// prefix alone is enough.
#[test]
fn delete_prefix_without_bucket_or_prefix_is_an_invalid_argument() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), "");
    put(db, "kept", b"v");
    put(db, "b:k", b"v");
    unsafe {
        for (bucket, prefix) in [
            (ptr::null(), ptr::null()),
            (c"".as_ptr(), ptr::null()),
            (ptr::null(), c"".as_ptr()),
            (c"".as_ptr(), c"".as_ptr()),
        ] {
            let mut deleted = 99;
            let status = tether_delete_prefix(db, ptr::null(), bucket, prefix, &mut deleted);
            assert_eq!(status, Status::InvalidArgument);
            assert_eq!(deleted, 99, "out_deleted written");
            assert!(
                last_error().starts_with("tether_delete_prefix: "),
                "{}",
                last_error()
            );
            assert!(
                last_error().contains("local: deleting all keys: neither a bucket nor a prefix"),
                "{}",
                last_error()
            );
        }
        assert_eq!(keys(db), ["b:k", "kept"]);
        let mut deleted = 0;
        let status =
            tether_delete_prefix(db, ptr::null(), c"b".as_ptr(), ptr::null(), &mut deleted);
        assert_eq!((status, deleted), (Status::Ok, 1));
        let status =
            tether_delete_prefix(db, ptr::null(), ptr::null(), c"ke".as_ptr(), &mut deleted);
        assert_eq!((status, deleted), (Status::Ok, 1));
        assert!(keys(db).is_empty());
        assert_eq!(tether_close(db), Status::Ok);
    }
}

/// `local` sets no limit of its own: what memory and disk hold.
/// A message quotes at most the start of a huge key (or bucket, or backend
/// name), with its length, however the call fails.
#[test]
fn messages_quote_huge_keys_only_in_part() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), "");
    let huge = "k".repeat(16 << 20);
    let key = c(&huge);
    let bounded = |what: &str| {
        let message = last_error();
        assert!(
            message.len() < 4096,
            "{what}: a message of {} bytes",
            message.len()
        );
        assert!(message.contains(" bytes)"), "{what}: {message}");
    };
    unsafe {
        assert_eq!(get(db, "", "", &huge), Err(Status::NotFound));
        bounded("tether_read");
        let status = tether_delete(db, ptr::null(), ptr::null(), key.as_ptr());
        assert_eq!(status, Status::NotFound);
        bounded("tether_delete");
        let status = tether_update(db, ptr::null(), ptr::null(), key.as_ptr(), b"v".as_ptr(), 1);
        assert_eq!(status, Status::NotFound);
        bounded("tether_update");
        let (nope, bad_bucket) = (c("nope"), c("a:b"));
        let status = tether_write(
            db,
            nope.as_ptr(),
            ptr::null(),
            key.as_ptr(),
            ptr::null(),
            0,
            0,
        );
        assert_eq!(status, Status::UnknownBackend);
        bounded("unknown backend");
        let status = tether_write(
            db,
            ptr::null(),
            bad_bucket.as_ptr(),
            key.as_ptr(),
            ptr::null(),
            0,
            0,
        );
        assert_eq!(status, Status::InvalidArgument);
        bounded("bucket with ':'");
        assert!(
            last_error().contains("the bucket contains ':'"),
            "{}",
            last_error()
        );
        // A huge backend name or prefix, too.
        let mut page = ptr::null_mut();
        let status = tether_list(
            db,
            key.as_ptr(),
            ptr::null(),
            ptr::null(),
            ptr::null(),
            1,
            &mut page,
        );
        assert_eq!(status, Status::UnknownBackend);
        assert!(last_error().len() < 4096, "{} bytes", last_error().len());
        let status = tether_list(
            db,
            ptr::null(),
            bad_bucket.as_ptr(),
            key.as_ptr(),
            ptr::null(),
            1,
            &mut page,
        );
        assert_eq!(status, Status::InvalidArgument);
        bounded("listing");
        let status = tether_delete_prefix(
            db,
            ptr::null(),
            bad_bucket.as_ptr(),
            key.as_ptr(),
            ptr::null_mut(),
        );
        assert_eq!(status, Status::InvalidArgument);
        bounded("deleting by prefix");
        assert_eq!(tether_close(db), Status::Ok);
    }
    // The Rust API's errors, too.
    let store = dir.path().join("rust");
    let json = format!(r#"{{"logging": "none", "local": {{"filepath": {store:?}}}}}"#);
    let db = tetherdb::Db::open_json(Some(&json)).unwrap();
    let err = db.read(None, None, &huge).unwrap_err();
    assert!(
        err.to_string().len() < 4096,
        "{} bytes",
        err.to_string().len()
    );
    let err = db.read(None, Some("a:b"), &huge).unwrap_err();
    assert!(
        err.to_string().len() < 4096,
        "{} bytes",
        err.to_string().len()
    );
    db.close().unwrap();
}

#[test]
fn local_stores_large_keys_and_values() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), "");
    let key = "k".repeat(64 * 1024);
    let value = vec![7u8; 8 << 20];
    put(db, &key, &value);
    assert_eq!(get(db, "", "", &key).unwrap(), value);
    assert_eq!(unsafe { tether_close(db) }, Status::Ok);
}

/// etcd refuses a request over its `--max-request-bytes`; the library
/// refuses such a put (key + value + 512 bytes over `max_request_bytes`)
/// before sending it, and a queued one before queuing it.
#[cfg(feature = "etcd")]
#[test]
fn oversize_values_are_too_large_on_etcd() {
    let Some(etcd) = common::etcd::Etcd::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let section = etcd.section(r#""max_request_bytes": 65536"#);
    let db = open(dir.path(), &format!(r#", "etcd": {section}"#));
    let (backend, key) = (c("etcd"), c("big"));
    let over = vec![1u8; 65536 - 512 - 3 + 1];
    unsafe {
        for flags in [0, TETHER_QUEUE] {
            let status = tether_write(
                db,
                backend.as_ptr(),
                ptr::null(),
                key.as_ptr(),
                over.as_ptr(),
                over.len(),
                flags,
            );
            assert_eq!(status, Status::TooLarge, "flags {flags}: {}", last_error());
            assert!(
                last_error().contains("etcd: key \"big\""),
                "{}",
                last_error()
            );
        }
        let status = tether_update(
            db,
            backend.as_ptr(),
            ptr::null(),
            key.as_ptr(),
            over.as_ptr(),
            over.len(),
        );
        assert_eq!(status, Status::TooLarge);
        // A long key counts the same.
        let long_key = c(&"k".repeat(65536 - 512));
        let status = tether_write(
            db,
            backend.as_ptr(),
            ptr::null(),
            long_key.as_ptr(),
            b"v".as_ptr(),
            1,
            0,
        );
        assert_eq!(status, Status::TooLarge);

        assert_eq!(tether_flush(db), Status::Ok);
        assert_eq!(get(db, "etcd", "", "big"), Err(Status::NotFound));
        assert_eq!(etcd.count(""), 0, "nothing reached etcd");
        // One byte less goes through.
        let fits = &over[1..];
        let status = tether_write(
            db,
            backend.as_ptr(),
            ptr::null(),
            key.as_ptr(),
            fits.as_ptr(),
            fits.len(),
            0,
        );
        assert_eq!(status, Status::Ok, "{}", last_error());
        assert_eq!(tether_close(db), Status::Ok);
    }
}

/// DynamoDB refuses an item over 400 KB and a partition key over 2048
/// bytes; the library refuses them before sending, queued ones before
/// queuing them.
#[cfg(feature = "dynamodb")]
#[test]
fn oversize_items_and_keys_are_too_large_on_dynamodb() {
    let Some(moto) = common::moto::server() else {
        return;
    };
    let table = common::moto::table("bad-input");
    let config = common::moto::config(&moto.url(), &table, "", r#"{"size": 25, "interval": 0.05}"#);
    let json = c(&config);
    let mut db = ptr::null_mut();
    unsafe {
        assert_eq!(
            tether_open(json.as_ptr(), &mut db),
            Status::Ok,
            "{}",
            last_error()
        );
        let key = c("k");
        // 400 KB counts the attribute names ("key", "value") and the key.
        let over = vec![b'x'; 400 * 1024 - "key".len() - "k".len() - "value".len() + 1];
        for flags in [0, TETHER_QUEUE] {
            let status = tether_write(
                db,
                ptr::null(),
                ptr::null(),
                key.as_ptr(),
                over.as_ptr(),
                over.len(),
                flags,
            );
            assert_eq!(status, Status::TooLarge, "flags {flags}: {}", last_error());
            assert!(
                last_error().contains("dynamodb: key \"k\""),
                "{}",
                last_error()
            );
        }
        let status = tether_update(
            db,
            ptr::null(),
            ptr::null(),
            key.as_ptr(),
            over.as_ptr(),
            over.len(),
        );
        assert_eq!(status, Status::TooLarge);
        let long_key = c(&"k".repeat(2049));
        for flags in [0, TETHER_QUEUE] {
            let status = tether_write(
                db,
                ptr::null(),
                ptr::null(),
                long_key.as_ptr(),
                b"v".as_ptr(),
                1,
                flags,
            );
            assert_eq!(status, Status::TooLarge, "{}", last_error());
        }
        assert_eq!(tether_flush(db), Status::Ok, "{}", last_error());
        assert_eq!(get(db, "", "", "k"), Err(Status::NotFound));
        assert!(keys(db).is_empty(), "nothing reached the table");
        // A key of 2048 bytes goes through.
        let longest = c(&"k".repeat(2048));
        let status = tether_write(
            db,
            ptr::null(),
            ptr::null(),
            longest.as_ptr(),
            b"v".as_ptr(),
            1,
            0,
        );
        assert_eq!(status, Status::Ok, "{}", last_error());
        assert_eq!(tether_close(db), Status::Ok);
    }
}

#[test]
fn invalid_json_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("db");
    let path = store.to_str().unwrap();
    for json in [
        format!(r#"{{"local": {{"filepath": {path:?}}}"#),
        format!(r#"{{"local": {{"filepath": {path:?}}}}} trailing"#),
        "[]".into(),
        "null".into(),
        r#"{"queue_batch": {"size": "ten"}}"#.into(),
        r#"{"queue_batch": {"size": 0}}"#.into(),
    ] {
        open_fails(&json, Status::Config);
    }
    // The same from a file.
    let file = dir.path().join("config.json");
    std::fs::write(&file, format!(r#"{{"local": {{"filepath": {path:?}"#)).unwrap();
    let file = c(file.to_str().unwrap());
    let mut db = ptr::dangling_mut::<TetherDb>();
    assert_eq!(
        unsafe { tether_open_file(file.as_ptr(), &mut db) },
        Status::Config
    );
    assert_eq!(db, ptr::dangling_mut());
    // Nothing was opened or created.
    assert!(!store.exists());
}

/// `tether_open_file` of `path` in a thread, which must fail with
/// TETHER_CONFIG within a few seconds (not block, not read forever).
fn open_file_fails_promptly(path: &Path) -> String {
    let path = c(path.to_str().unwrap());
    fails_promptly(move |db| unsafe { tether_open_file(path.as_ptr(), db) })
}

/// `open` in a thread, which must fail with TETHER_CONFIG within a few
/// seconds, leaving its out-parameter alone; the message.
fn fails_promptly(open: impl FnOnce(*mut *mut TetherDb) -> Status + Send + 'static) -> String {
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut db = ptr::dangling_mut::<TetherDb>();
        let status = open(&mut db);
        let _ = done.send((status, db == ptr::dangling_mut(), last_error()));
    });
    let (status, untouched, message) = finished
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("tether_open_file did not return");
    assert_eq!(status, Status::Config, "{message}");
    assert!(untouched, "out_db was written");
    message
}

#[test]
fn config_files_that_are_no_regular_file_or_too_large_are_config_errors() {
    let dir = tempfile::tempdir().unwrap();
    // A device that never ends, a directory, a FIFO nobody writes to.
    open_file_fails_promptly(Path::new("/dev/zero"));
    open_file_fails_promptly(dir.path());
    let fifo = dir.path().join("fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let message = open_file_fails_promptly(&fifo);
    assert!(message.contains("not a regular file"), "{message}");
    // Valid JSON, padded past 1 MiB.
    let store = dir.path().join("db");
    let big = dir.path().join("big.json");
    let json = format!(r#"{{"local": {{"filepath": {store:?}}}}}"#);
    std::fs::write(&big, format!("{json}{}", " ".repeat(1 << 20))).unwrap();
    let message = open_file_fails_promptly(&big);
    assert!(message.contains("1 MiB"), "{message}");
    assert!(!store.exists());
    // Up to the limit it opens.
    std::fs::write(
        &big,
        format!("{json}{}", " ".repeat((1 << 20) - json.len())),
    )
    .unwrap();
    let path = c(big.to_str().unwrap());
    let mut db = ptr::null_mut();
    assert_eq!(
        unsafe { tether_open_file(path.as_ptr(), &mut db) },
        Status::Ok,
        "{}",
        last_error()
    );
    assert_eq!(unsafe { tether_close(db) }, Status::Ok);
}

#[test]
fn unknown_config_key_is_a_config_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("db");
    let path = store.to_str().unwrap();
    for (json, name) in [
        (
            format!(r#"{{"local": {{"filepath": {path:?}}}, "loging": "info"}}"#),
            "loging",
        ),
        (
            format!(r#"{{"local": {{"filepath": {path:?}, "path": "x"}}}}"#),
            "path",
        ),
        (
            format!(r#"{{"local": {{"filepath": {path:?}}}, "queue_batch": {{"sise": 3}}}}"#),
            "sise",
        ),
        (
            format!(r#"{{"local": {{"filepath": {path:?}}}, "etcd": {{"hosts": "x"}}}}"#),
            "hosts",
        ),
    ] {
        let message = open_fails(&json, Status::Config);
        assert!(message.contains(name), "{message} does not name {name}");
    }
    assert!(!store.exists());
}

#[cfg(feature = "etcd")]
#[test]
fn unreadable_certificate_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("db");
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let missing = dir.path().join("missing.pem");
    for (setting, file) in [
        ("ca_cert_file", &missing),
        ("ca_cert_file", &not_pem),
        ("ca_cert_file", &dir.path().to_path_buf()),
    ] {
        let json = format!(
            r#"{{"local": {{"filepath": {store:?}}},
                "etcd": {{"endpoints": ["127.0.0.1:1"], "use_ssl": true, {setting:?}: {file:?}}}}}"#
        );
        let message = open_fails(&json, Status::Config);
        assert!(
            message.contains(file.to_str().unwrap()),
            "{message} does not name the file"
        );
    }
    let json = format!(
        r#"{{"etcd": {{"endpoints": ["127.0.0.1:1"], "use_ssl": true,
             "cert_file": {missing:?}, "key_file": {not_pem:?}}}}}"#
    );
    let message = open_fails(&json, Status::Config);
    assert!(message.contains("missing.pem"), "{message}");
}

/// A certificate "file" that never ends, or blocks its reader, fails the
/// open at once.
#[cfg(feature = "etcd")]
#[test]
fn certificate_files_that_are_no_regular_file_are_config_errors() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    for file in [Path::new("/dev/zero"), &fifo] {
        let json = c(&format!(
            r#"{{"etcd": {{"endpoints": ["127.0.0.1:1"], "use_ssl": true, "ca_cert_file": {file:?}}}}}"#
        ));
        let message = fails_promptly(move |db| unsafe { tether_open(json.as_ptr(), db) });
        assert!(
            message.contains(file.to_str().unwrap()) && message.contains("not a regular file"),
            "{message}"
        );
    }
}

/// Certificates without `use_ssl` would be ignored and the connection made
/// in plaintext; a plaintext endpoint with `use_ssl` contradicts it.
#[test]
fn certificate_settings_without_use_ssl_are_config_errors() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("db");
    let missing = dir.path().join("missing.pem");
    for (settings, setting) in [
        (format!(r#""ca_cert_file": {missing:?}"#), "ca_cert_file"),
        (
            format!(r#""cert_file": {missing:?}, "key_file": {missing:?}"#),
            "cert_file",
        ),
    ] {
        for use_ssl in ["", r#", "use_ssl": false"#] {
            let json = format!(
                r#"{{"local": {{"filepath": {store:?}}},
                    "etcd": {{"endpoints": ["127.0.0.1:1"], {settings}{use_ssl}}}}}"#
            );
            let message = open_fails(&json, Status::Config);
            assert!(
                message.contains(setting) && message.contains("use_ssl"),
                "{message} does not name {setting} and use_ssl"
            );
            assert!(
                message.contains(missing.to_str().unwrap()),
                "{message} does not name the file"
            );
        }
    }
    // With https:// the certificates would be ignored just the same.
    let json = format!(
        r#"{{"etcd": {{"endpoints": ["https://127.0.0.1:1"], "ca_cert_file": {missing:?}}}}}"#
    );
    assert!(open_fails(&json, Status::Config).contains("use_ssl"));
    // An http:// endpoint with use_ssl.
    let json = r#"{"etcd": {"endpoints": ["http://127.0.0.1:1"], "use_ssl": true}}"#;
    let message = open_fails(json, Status::Config);
    assert!(
        message.contains("http://127.0.0.1:1") && message.contains("use_ssl"),
        "{message}"
    );
    assert!(!store.exists());
}

/// A password in an endpoint would be repeated in every message about it;
/// TetherDB sends none from its configuration, so it is refused, unrepeated.
#[test]
fn passwords_in_endpoint_urls_are_config_errors_that_do_not_repeat_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("db");
    let secret = "s3cr3t-pw";
    for (section, setting) in [
        (
            format!(r#""etcd": {{"endpoints": ["http://user:{secret}@127.0.0.1:1"]}}"#),
            "etcd",
        ),
        (
            format!(r#""etcd": {{"endpoints": ["127.0.0.1:2", "user:{secret}@127.0.0.1:1"]}}"#),
            "etcd",
        ),
        (
            format!(r#""etcd": {{"host": "user:{secret}@127.0.0.1", "port": 1}}"#),
            "etcd",
        ),
        (
            format!(
                r#""etcd": {{"endpoints": ["https://{secret}@127.0.0.1:1"], "use_ssl": true}}"#
            ),
            "etcd",
        ),
        (
            format!(
                r#""dynamodb": {{"table_name": "Table1", "region": "us-east-1", "timeout": 1,
                    "endpoint_url": "http://user:{secret}@127.0.0.1:1/"}}"#
            ),
            "dynamodb.endpoint_url",
        ),
    ] {
        if setting.starts_with("dynamodb") && !cfg!(feature = "dynamodb") {
            continue;
        }
        let json = format!(r#"{{"local": {{"filepath": {store:?}}}, {section}}}"#);
        let message = open_fails(&json, Status::Config);
        assert!(!message.contains(secret), "{message}");
        assert!(
            message.contains(setting) && message.contains("***@"),
            "{message}"
        );
        // The same through the Rust API.
        let err = tetherdb::Db::open_json(Some(&json)).err().unwrap();
        assert!(!err.to_string().contains(secret), "{err}");
    }
}

/// Nothing listens on port 1 of the loopback: every connection is refused.
#[cfg(feature = "etcd")]
#[test]
fn unreachable_backend_is_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(
        dir.path(),
        r#", "etcd": {"endpoints": ["127.0.0.1:1"], "timeout": 0.5}"#,
    );
    let (backend, key) = (c("etcd"), c("k"));
    unsafe {
        let v = b"v";
        let status = tether_write(
            db,
            backend.as_ptr(),
            ptr::null(),
            key.as_ptr(),
            v.as_ptr(),
            1,
            0,
        );
        assert_eq!(status, Status::Unavailable, "{}", last_error());
        assert!(
            last_error().starts_with("tether_write: etcd: key \"k\": unavailable: "),
            "{}",
            last_error()
        );
        let status = tether_update(
            db,
            backend.as_ptr(),
            ptr::null(),
            key.as_ptr(),
            v.as_ptr(),
            1,
        );
        assert_eq!(status, Status::Unavailable);
        let sentinel = ptr::without_provenance_mut::<u8>(0xdead0);
        let (mut value, mut len) = (sentinel, 7);
        let status = tether_read(
            db,
            backend.as_ptr(),
            ptr::null(),
            key.as_ptr(),
            &mut value,
            &mut len,
        );
        assert_eq!(status, Status::Unavailable);
        assert_eq!((value, len), (sentinel, 7));
        let status = tether_delete(db, backend.as_ptr(), ptr::null(), key.as_ptr());
        assert_eq!(status, Status::Unavailable);
        let mut page = ptr::dangling_mut::<TetherPage>();
        let status = tether_list(
            db,
            backend.as_ptr(),
            ptr::null(),
            ptr::null(),
            ptr::null(),
            10,
            &mut page,
        );
        assert_eq!(status, Status::Unavailable);
        assert_eq!(page, ptr::dangling_mut());

        // A queued write is taken, and stays queued: flush reports it.
        let status = tether_write(
            db,
            backend.as_ptr(),
            ptr::null(),
            key.as_ptr(),
            v.as_ptr(),
            1,
            TETHER_QUEUE,
        );
        assert_eq!(status, Status::Ok, "{}", last_error());
        assert_eq!(tether_flush(db), Status::Unavailable);
        assert!(last_error().contains("stay queued"), "{}", last_error());

        // The other backend of the handle is not held up.
        put(db, "local-key", b"v");
        assert_eq!(get(db, "local", "", "local-key").unwrap(), b"v");
        // Close reports the queued write it could not apply (today's
        // behaviour) or keeps it for the next open (a durable outbox).
        let status = tether_close(db);
        assert!(
            matches!(status, Status::Unavailable | Status::Ok),
            "{status:?}"
        );
    }
}
