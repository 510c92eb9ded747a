//! The C ABI driven from Rust, the way a C caller drives it.

mod common;

use std::ffi::{c_char, CStr};
use std::ptr;

use common::{c, last_error};
use tetherdb::ffi::*;
use tetherdb::Status;

fn open(dir: &std::path::Path, queue_batch: &str) -> *mut TetherDb {
    let json = c(&common::config(dir, queue_batch));
    let mut db = ptr::null_mut();
    assert_eq!(
        unsafe { tether_open(json.as_ptr(), &mut db) },
        Status::Ok,
        "{}",
        last_error()
    );
    db
}

/// The handle as a value that may cross into threads: the C ABI promises
/// it is safe to share.
#[derive(Clone, Copy)]
struct Shared(*mut TetherDb);
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

#[test]
fn eight_threads_write_ten_thousand_each_half_queued() {
    let dir = tempfile::tempdir().unwrap();
    let db = Shared(open(dir.path(), r#"{"size": 10, "interval": 0.05}"#));
    let bucket = c("conc");
    std::thread::scope(|s| {
        for t in 0..8 {
            let bucket = &bucket;
            s.spawn(move || {
                let db = db;
                for i in 0..10_000u32 {
                    let key = c(&format!("t{t}-{i:05}"));
                    let flags = if i % 2 == 0 { TETHER_QUEUE } else { 0 };
                    let value = i.to_le_bytes();
                    let status = unsafe {
                        tether_write(
                            db.0,
                            ptr::null(),
                            bucket.as_ptr(),
                            key.as_ptr(),
                            value.as_ptr(),
                            4,
                            flags,
                        )
                    };
                    assert_eq!(status, Status::Ok, "{}", last_error());
                }
            });
        }
    });
    assert_eq!(unsafe { tether_flush(db.0) }, Status::Ok);
    for t in 0..8 {
        for i in 0..10_000u32 {
            let key = c(&format!("t{t}-{i:05}"));
            let (mut value, mut len) = (ptr::null_mut(), 0);
            let status = unsafe {
                tether_read(
                    db.0,
                    ptr::null(),
                    bucket.as_ptr(),
                    key.as_ptr(),
                    &mut value,
                    &mut len,
                )
            };
            assert_eq!(status, Status::Ok, "t{t}-{i}: {}", last_error());
            assert_eq!(
                unsafe { std::slice::from_raw_parts(value, len) },
                i.to_le_bytes()
            );
            unsafe { tether_free(value, len) };
        }
    }
    assert_eq!(unsafe { tether_close(db.0) }, Status::Ok);
}

#[test]
fn failed_calls_leave_out_parameters_alone_and_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), "{}");
    let sentinel = 0xdead_usize as *mut u8;
    let (mut value, mut len) = (sentinel, 77usize);
    let key = c("absent");
    let bucket = c("b");
    let status = unsafe {
        tether_read(
            db,
            ptr::null(),
            bucket.as_ptr(),
            key.as_ptr(),
            &mut value,
            &mut len,
        )
    };
    assert_eq!(status, Status::NotFound);
    assert_eq!((value, len), (sentinel, 77));
    assert_eq!(
        last_error(),
        "tether_read: local: key \"b:absent\" not found"
    );

    let bad_bucket = c("a:b");
    let status = unsafe {
        tether_read(
            db,
            ptr::null(),
            bad_bucket.as_ptr(),
            key.as_ptr(),
            &mut value,
            &mut len,
        )
    };
    assert_eq!(status, Status::InvalidArgument);
    assert_eq!(
        last_error(),
        "tether_read: invalid argument: local: key \"absent\" in bucket \"a:b\": the bucket contains ':'"
    );

    let bad_utf8 = [0xffu8, 0];
    let status = unsafe {
        tether_write(
            db,
            ptr::null(),
            ptr::null(),
            bad_utf8.as_ptr().cast::<c_char>(),
            ptr::null(),
            0,
            0,
        )
    };
    assert_eq!(status, Status::InvalidArgument);
    assert!(
        last_error().contains("key is not valid UTF-8"),
        "{}",
        last_error()
    );

    let mut page = ptr::dangling_mut::<TetherPage>();
    let status = unsafe {
        tether_list(
            db,
            ptr::null(),
            ptr::null(),
            ptr::null(),
            ptr::null(),
            0,
            &mut page,
        )
    };
    assert_eq!(status, Status::InvalidArgument);
    assert_eq!(page, ptr::dangling_mut());

    let mut other = ptr::dangling_mut::<TetherDb>();
    let bad_json = c(r#"{"local": {"filepath": "x"}, "typo": 1}"#);
    assert_eq!(
        unsafe { tether_open(bad_json.as_ptr(), &mut other) },
        Status::Config
    );
    assert_eq!(other, ptr::dangling_mut());
    assert!(last_error().contains("typo"), "{}", last_error());

    assert_eq!(unsafe { tether_close(db) }, Status::Ok);
}

#[test]
fn every_status_has_its_name() {
    let names = [
        (Status::Ok, "TETHER_OK"),
        (Status::NotFound, "TETHER_NOT_FOUND"),
        (Status::InvalidArgument, "TETHER_INVALID_ARGUMENT"),
        (Status::Config, "TETHER_CONFIG"),
        (Status::UnknownBackend, "TETHER_UNKNOWN_BACKEND"),
        (Status::Unavailable, "TETHER_UNAVAILABLE"),
        (Status::TooLarge, "TETHER_TOO_LARGE"),
        (Status::NotRunning, "TETHER_NOT_RUNNING"),
        (Status::Conflict, "TETHER_CONFLICT"),
        (Status::Io, "TETHER_IO"),
        (Status::Internal, "TETHER_INTERNAL"),
        (Status::Unsupported, "TETHER_UNSUPPORTED"),
    ];
    for (value, (status, name)) in names.into_iter().enumerate() {
        assert_eq!(status as usize, value);
        assert_eq!(
            unsafe { CStr::from_ptr(tether_status_name(status)) }
                .to_str()
                .unwrap(),
            name
        );
    }
    let version = unsafe { CStr::from_ptr(tether_version()) }
        .to_str()
        .unwrap();
    assert_eq!(version, env!("CARGO_PKG_VERSION"));
}
