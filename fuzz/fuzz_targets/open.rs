//! The whole `tether_open` path with arbitrary JSON-ish bytes: the bytes
//! go to `tether_open` as a NUL-terminated C string (an embedded NUL ends
//! it early, as in C). Whatever the bytes, the call returns a status, never
//! panics (TETHER_INTERNAL) and writes `out_db` only on TETHER_OK; a handle
//! it opens takes a write and a read, and closes.
//!
//! The store stays in a temporary directory: the process runs there, so the
//! embedded default (`./tetherdb_data` and its outbox) lands in it, and a
//! `local.filepath` or `queue_batch.outbox_path` in the input is replaced by
//! a path inside it. This build of the library
//! has no remote backend (`default-features = false`), so an `etcd` or
//! `dynamodb` section is parsed and accepted but never connects anywhere.
#![no_main]

use std::ffi::{c_char, CStr};
use std::path::PathBuf;
use std::ptr;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tetherdb::ffi::*;
use tetherdb::Status;

fn workdir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("tetherdb-fuzz-open")
            .tempdir()
            .unwrap()
            .keep();
        std::env::set_current_dir(&dir).unwrap();
        dir
    })
}

/// The input with any `local.filepath` and `queue_batch.outbox_path`
/// pointed into the work directory.
fn confined(data: &[u8]) -> Vec<u8> {
    let text = data.split(|&b| b == 0).next().unwrap_or_default();
    let Ok(mut json) = serde_json::from_slice::<Value>(text) else {
        return data.to_vec();
    };
    let mut changed = false;
    for (section, key, name) in [
        ("local", "filepath", "local"),
        ("queue_batch", "outbox_path", "outbox"),
    ] {
        let Some(section) = json.get_mut(section).and_then(Value::as_object_mut) else {
            continue;
        };
        if section.contains_key(key) {
            let path = workdir().join(name);
            section.insert(key.into(), Value::from(path.to_str().unwrap()));
            changed = true;
        }
    }
    match changed {
        true => serde_json::to_vec(&json).unwrap(),
        false => data.to_vec(),
    }
}

fn last_error() -> String {
    let message = unsafe { CStr::from_ptr(tether_last_error()) };
    message.to_string_lossy().into_owned()
}

fuzz_target!(|data: &[u8]| {
    workdir();
    let mut text = confined(data);
    text.push(0);
    let sentinel = ptr::dangling_mut::<TetherDb>();
    let mut db = sentinel;
    let status = unsafe { tether_open(text.as_ptr().cast::<c_char>(), &mut db) };
    match status {
        Status::Ok => {}
        Status::Config | Status::InvalidArgument | Status::UnknownBackend => {
            assert_eq!(db, sentinel, "a failed open wrote out_db");
            assert!(!last_error().is_empty());
            return;
        }
        other => panic!("tether_open: {other:?}: {}", last_error()),
    }
    assert!(!db.is_null() && db != sentinel);
    unsafe {
        let (key, value) = (c"fuzz-open", b"v");
        // A handle opens only when its default backend is built: local.
        let status = tether_write(
            db,
            ptr::null(),
            ptr::null(),
            key.as_ptr(),
            value.as_ptr(),
            1,
            0,
        );
        assert_eq!(status, Status::Ok, "{}", last_error());
        let (mut out, mut len) = (ptr::null_mut(), 0);
        let status = tether_read(
            db,
            ptr::null(),
            ptr::null(),
            key.as_ptr(),
            &mut out,
            &mut len,
        );
        assert_eq!(status, Status::Ok, "{}", last_error());
        assert_eq!(std::slice::from_raw_parts(out, len), value);
        tether_free(out, len);
        assert_eq!(tether_close(db), Status::Ok, "{}", last_error());
    }
});
