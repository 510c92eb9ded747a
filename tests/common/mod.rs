//! Helpers shared by the integration tests.
#![allow(dead_code)] // each test binary uses a part of them

pub mod etcd;
#[cfg(feature = "dynamodb")]
pub mod moto;
pub mod outbox_path;

use std::ffi::{CStr, CString};
use std::path::Path;
use std::time::{Duration, Instant};

use tetherdb::{Db, Page};

/// `s` as a C string, for an argument of the C ABI.
pub fn c(s: &str) -> CString {
    CString::new(s).unwrap()
}

/// This thread's `tether_last_error()`, which is always UTF-8.
pub fn last_error() -> String {
    unsafe { CStr::from_ptr(tetherdb::ffi::tether_last_error()) }
        .to_str()
        .expect("the last error is UTF-8")
        .to_owned()
}

/// A configuration with a `local` store under `dir` and the given
/// `queue_batch` section.
pub fn config(dir: &Path, queue_batch: &str) -> String {
    format!(
        r#"{{"logging": "none", "local": {{"filepath": {:?}}}, "queue_batch": {queue_batch}}}"#,
        dir.join("db").to_str().unwrap()
    )
}

pub fn open(dir: &Path, queue_batch: &str) -> Db {
    Db::open_json(Some(&config(dir, queue_batch))).unwrap()
}

/// Every page of a listing, following the next markers.
pub fn all_pages(
    db: &Db,
    bucket: Option<&str>,
    prefix: Option<&str>,
    page_size: usize,
) -> Vec<Page> {
    let mut pages = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = db
            .list(None, bucket, prefix, after.as_deref(), page_size)
            .unwrap();
        after = page.next.clone();
        pages.push(page);
        if after.is_none() {
            return pages;
        }
    }
}

/// The number of keys in `bucket`.
pub fn count(db: &Db, bucket: &str) -> usize {
    all_pages(db, Some(bucket), None, 1000)
        .iter()
        .map(|p| p.entries.len())
        .sum()
}

/// Polls `done` until it holds. Not a timing assertion: the bound only
/// keeps a broken build from hanging CI.
pub fn wait_until(done: impl Fn() -> bool) {
    let give_up = Instant::now() + Duration::from_secs(120);
    while !done() {
        assert!(Instant::now() < give_up, "gave up waiting");
        std::thread::sleep(Duration::from_millis(10));
    }
}
