//! Versions and conditions (docs/design.md, Versions): every key has a
//! version that grows at every change, also across a delete; writes and
//! deletes may require the key absent or at a version, checked and applied
//! in one atomic step. Through the safe Rust API, and the three `_ex` entry
//! points through the C ABI.

use std::ffi::{CStr, CString};
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};

use tetherdb::ffi::*;
use tetherdb::{Db, Error, Status, WriteOptions};

use crate::engine::{cases, Space};

const QUICK: &str = r#"{"size": 10, "interval": 0.05}"#;

cases![
    versions_grow_at_every_change_also_across_a_delete,
    if_absent_writes_only_where_the_key_is_absent,
    if_version_writes_and_deletes_only_at_that_version,
    conflicting_flags_are_invalid,
    c_entry_points_give_versions_and_check_existence,
    #[needs(AtomicConditions)]
    racing_conditional_increments_lose_no_write,
];

fn plain() -> WriteOptions {
    WriteOptions::default()
}

fn if_absent() -> WriteOptions {
    WriteOptions {
        if_absent: true,
        ..WriteOptions::default()
    }
}

fn if_version(version: u64) -> WriteOptions {
    WriteOptions {
        if_version: Some(version),
        ..WriteOptions::default()
    }
}

/// Writes `value` as `options` say, and gives the new version.
fn write(db: &Db, key: &str, value: &[u8], options: WriteOptions) -> tetherdb::Result<u64> {
    db.write_ex(None, Some("v"), key, value, &options)
        .map(|version| version.expect("a direct write gives its version"))
}

fn read(db: &Db, key: &str) -> (Vec<u8>, u64) {
    db.read_ex(None, Some("v"), key, true).unwrap()
}

fn status<T: std::fmt::Debug>(result: tetherdb::Result<T>) -> Status {
    result.unwrap_err().status()
}

fn versions_grow_at_every_change_also_across_a_delete(s: &Space) {
    let db = s.open(QUICK);
    let v1 = write(&db, "k", b"one", plain()).unwrap();
    assert!(v1 > 0);
    assert_eq!(read(&db, "k"), (b"one".to_vec(), v1));
    let v2 = write(&db, "k", b"two", plain()).unwrap();
    assert!(v2 > v1, "{v2} after {v1}");
    // Writing the same value again is a change too.
    let v3 = write(&db, "k", b"two", plain()).unwrap();
    assert!(v3 > v2, "{v3} after {v2}");
    db.update(None, Some("v"), "k", b"three").unwrap();
    let (value, v4) = read(&db, "k");
    assert_eq!(value, b"three");
    assert!(v4 > v3, "{v4} after {v3}");
    // Plain writes, reads and deletes keep versions too.
    db.write(None, Some("v"), "k", b"four").unwrap();
    let v5 = read(&db, "k").1;
    assert!(v5 > v4, "{v5} after {v4}");
    db.delete(None, Some("v"), "k").unwrap();
    assert_eq!(
        status(db.read_ex(None, Some("v"), "k", true)),
        Status::NotFound
    );
    let v6 = write(&db, "k", b"again", plain()).unwrap();
    assert!(v6 > v5, "{v6} after a delete of {v5}");
    db.delete_ex(None, Some("v"), "k", Some(v6)).unwrap();
    let v7 = write(&db, "k", b"and again", if_absent()).unwrap();
    assert!(v7 > v6, "{v7} after a delete of {v6}");
    // A queued write gives no version, but makes a new one.
    let queued = WriteOptions {
        queue: true,
        ..WriteOptions::default()
    };
    assert_eq!(
        db.write_ex(None, Some("v"), "k", b"queued", &queued)
            .unwrap(),
        None
    );
    db.flush().unwrap();
    let (value, v8) = read(&db, "k");
    assert_eq!(value, b"queued");
    assert!(v8 > v7, "{v8} after {v7}");
    // Each key has its own version; the bucket is part of the key.
    let other = write(&db, "other", b"x", plain()).unwrap();
    assert_eq!(db.read_ex(None, None, "v:other", false).unwrap().1, other);
    db.close().unwrap();
}

fn if_absent_writes_only_where_the_key_is_absent(s: &Space) {
    let db = s.open(QUICK);
    let version = write(&db, "k", b"first", if_absent()).unwrap();
    let err = write(&db, "k", b"second", if_absent()).unwrap_err();
    assert_eq!(err.status(), Status::Conflict);
    assert!(
        matches!(&err, Error::Conflict { backend, key, .. } if backend == s.name() && key == "v:k"),
        "{err:?}"
    );
    // The failed condition changed nothing, not even the version.
    assert_eq!(read(&db, "k"), (b"first".to_vec(), version));
    db.delete(None, Some("v"), "k").unwrap();
    write(&db, "k", b"after the delete", if_absent()).unwrap();
    assert_eq!(read(&db, "k").0, b"after the delete");
}

fn if_version_writes_and_deletes_only_at_that_version(s: &Space) {
    let db = s.open(QUICK);
    assert_eq!(
        status(write(&db, "absent", b"x", if_version(1))),
        Status::NotFound
    );
    assert_eq!(
        status(db.delete_ex(None, Some("v"), "absent", Some(1))),
        Status::NotFound
    );
    assert_eq!(
        status(db.read_ex(None, Some("v"), "absent", false)),
        Status::NotFound,
        "a failed condition created the key"
    );

    let v1 = write(&db, "k", b"one", plain()).unwrap();
    for wrong in [0, v1 - 1, v1 + 1, u64::MAX] {
        let err = write(&db, "k", b"wrong", if_version(wrong)).unwrap_err();
        assert_eq!(err.status(), Status::Conflict, "version {wrong}: {err}");
        assert_eq!(
            status(db.delete_ex(None, Some("v"), "k", Some(wrong))),
            Status::Conflict,
            "version {wrong}"
        );
    }
    assert_eq!(read(&db, "k"), (b"one".to_vec(), v1));

    let v2 = write(&db, "k", b"two", if_version(v1)).unwrap();
    assert!(v2 > v1);
    // The old version no longer matches.
    assert_eq!(
        status(write(&db, "k", b"stale", if_version(v1))),
        Status::Conflict
    );
    assert_eq!(read(&db, "k"), (b"two".to_vec(), v2));
    db.delete_ex(None, Some("v"), "k", Some(v2)).unwrap();
    assert_eq!(
        status(db.delete_ex(None, Some("v"), "k", Some(v2))),
        Status::NotFound
    );
    assert_eq!(
        status(write(&db, "k", b"gone", if_version(v2))),
        Status::NotFound
    );
}

fn conflicting_flags_are_invalid(s: &Space) {
    let db = s.open(QUICK);
    let invalid = [
        WriteOptions {
            if_absent: true,
            if_version: Some(1),
            ..WriteOptions::default()
        },
        WriteOptions {
            queue: true,
            if_absent: true,
            ..WriteOptions::default()
        },
        WriteOptions {
            queue: true,
            if_version: Some(1),
            ..WriteOptions::default()
        },
        WriteOptions {
            sliding: true,
            ..WriteOptions::default()
        },
    ];
    for options in invalid {
        let err = db
            .write_ex(None, Some("v"), "k", b"x", &options)
            .unwrap_err();
        assert_eq!(err.status(), Status::InvalidArgument, "{options:?}: {err}");
    }
    db.flush().unwrap();
    assert_eq!(
        status(db.read_ex(None, Some("v"), "k", false)),
        Status::NotFound,
        "a refused write wrote"
    );
}

fn c(s: &str) -> CString {
    CString::new(s).unwrap()
}

fn last_error() -> String {
    unsafe { CStr::from_ptr(tether_last_error()) }
        .to_str()
        .unwrap()
        .to_owned()
}

/// The three `_ex` entry points as a C caller drives them: versions out,
/// an existence check without a value, flags as bits.
fn c_entry_points_give_versions_and_check_existence(s: &Space) {
    let config = c(&s.config(QUICK));
    let (bucket, key) = (c("v"), c("k"));
    let mut db = ptr::null_mut();
    unsafe {
        assert_eq!(tether_open(config.as_ptr(), &mut db), Status::Ok);
        let write = |flags: u32, version: u64, out: *mut u64| {
            tether_write_ex(
                db,
                ptr::null(),
                bucket.as_ptr(),
                key.as_ptr(),
                b"value".as_ptr(),
                5,
                flags,
                0,
                version,
                out,
            )
        };
        let mut v1 = 0;
        assert_eq!(
            write(TETHER_IF_ABSENT, 0, &mut v1),
            Status::Ok,
            "{}",
            last_error()
        );
        assert_ne!(v1, 0);
        // NULL out_version is allowed.
        assert_eq!(write(TETHER_IF_VERSION, v1, ptr::null_mut()), Status::Ok);
        let mut stale = 7;
        assert_eq!(write(TETHER_IF_VERSION, v1, &mut stale), Status::Conflict);
        assert_eq!(stale, 7, "out_version written on a failure");
        assert!(
            last_error().starts_with("tether_write_ex: "),
            "{}",
            last_error()
        );
        assert_eq!(
            write(TETHER_IF_ABSENT | TETHER_IF_VERSION, v1, ptr::null_mut()),
            Status::InvalidArgument
        );
        assert_eq!(
            write(TETHER_QUEUE | TETHER_IF_ABSENT, 0, ptr::null_mut()),
            Status::InvalidArgument
        );
        assert_eq!(write(0x100, 0, ptr::null_mut()), Status::InvalidArgument);

        // The existence check: no value copied, the version given.
        let mut v2 = 0;
        let status = tether_read_ex(
            db,
            ptr::null(),
            bucket.as_ptr(),
            key.as_ptr(),
            ptr::null_mut(),
            ptr::null_mut(),
            &mut v2,
        );
        assert_eq!(status, Status::Ok, "{}", last_error());
        assert!(v2 > v1);
        let (mut value, mut len, mut v) = (ptr::null_mut(), 0, 0);
        let status = tether_read_ex(
            db,
            ptr::null(),
            bucket.as_ptr(),
            key.as_ptr(),
            &mut value,
            &mut len,
            &mut v,
        );
        assert_eq!(status, Status::Ok);
        assert_eq!(std::slice::from_raw_parts(value, len), b"value");
        assert_eq!(v, v2);
        tether_free(value, len);
        // One output without the other is a mistake.
        let status = tether_read_ex(
            db,
            ptr::null(),
            bucket.as_ptr(),
            key.as_ptr(),
            &mut value,
            ptr::null_mut(),
            ptr::null_mut(),
        );
        assert_eq!(status, Status::InvalidArgument);

        let delete = |flags, version| {
            tether_delete_ex(
                db,
                ptr::null(),
                bucket.as_ptr(),
                key.as_ptr(),
                flags,
                version,
            )
        };
        assert_eq!(delete(TETHER_IF_VERSION, v1), Status::Conflict);
        assert_eq!(delete(TETHER_QUEUE, 0), Status::InvalidArgument);
        assert_eq!(delete(TETHER_IF_VERSION, v2), Status::Ok);
        assert_eq!(delete(0, 0), Status::NotFound);
        let status = tether_read_ex(
            db,
            ptr::null(),
            bucket.as_ptr(),
            key.as_ptr(),
            ptr::null_mut(),
            ptr::null_mut(),
            ptr::null_mut(),
        );
        assert_eq!(status, Status::NotFound);
        assert_eq!(
            CStr::from_ptr(tether_status_name(Status::Unsupported)).to_str(),
            Ok("TETHER_UNSUPPORTED")
        );
        assert_eq!(tether_close(db), Status::Ok);
    }
}

/// Eight threads increment one counter through one handle, each by
/// reading its version and writing only at that version: every write that
/// succeeded counts once, and the threads did get in each other's way.
fn racing_conditional_increments_lose_no_write(s: &Space) {
    let attempts = s.bulk(200);
    let db = s.open(QUICK);
    write(&db, "counter", b"0", plain()).unwrap();
    let (won, conflicts) = (AtomicUsize::new(0), AtomicUsize::new(0));
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| {
                for _ in 0..attempts {
                    let (value, version) = read(&db, "counter");
                    let count: u64 = std::str::from_utf8(&value).unwrap().parse().unwrap();
                    let next = (count + 1).to_string();
                    let r = write(&db, "counter", next.as_bytes(), if_version(version));
                    match r {
                        Ok(_) => won.fetch_add(1, Ordering::Relaxed),
                        Err(Error::Conflict { .. }) => conflicts.fetch_add(1, Ordering::Relaxed),
                        Err(e) => panic!("{e}"),
                    };
                }
            });
        }
    });
    let (won, conflicts) = (won.into_inner(), conflicts.into_inner());
    let (value, _) = read(&db, "counter");
    assert_eq!(value, won.to_string().as_bytes(), "{conflicts} conflicts");
    assert_eq!(won + conflicts, 8 * attempts);
    assert!(conflicts > 0, "no conflict in {} attempts", 8 * attempts);
    assert!(won > 0);
}
