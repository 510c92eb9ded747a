//! Listing keys alone and deleting by prefix (docs/c-api.md): a keys-only
//! listing lists exactly the keys a full one lists, in the same pages,
//! without values; `delete_prefix` removes exactly the keys a listing with
//! the same bucket and prefix shows, counts them, and refuses to delete a
//! whole store.

use std::collections::BTreeSet;
use std::ffi::CStr;
use std::ptr;

use tetherdb::ffi::*;
use tetherdb::{Db, KeyPage, Status};

use crate::common::{all_pages, c, last_error};
use crate::engine::{cases, Space};

const QUICK: &str = r#"{"size": 25, "interval": 0.05}"#;

cases![
    keys_only_pages_list_the_keys_of_full_pages,
    #[needs(OrderedListing)]
    keys_only_pages_follow_prefix_and_start_after,
    delete_prefix_removes_exactly_the_keys_of_the_bucket_and_prefix,
    delete_prefix_removes_more_keys_than_one_batch,
    delete_prefix_leaves_the_keys_listings_leave_out,
    delete_prefix_needs_a_bucket_or_a_prefix,
    delete_prefix_acts_on_the_store_as_it_is,
    c_entry_points_list_keys_and_delete_by_prefix,
];

/// Every keys-only page, following the next markers.
fn all_key_pages(
    db: &Db,
    bucket: Option<&str>,
    prefix: Option<&str>,
    page_size: usize,
) -> Vec<KeyPage> {
    let mut pages = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = db
            .list_keys(None, bucket, prefix, after.as_deref(), page_size)
            .unwrap();
        after = page.next.clone();
        pages.push(page);
        if after.is_none() {
            return pages;
        }
    }
}

/// The keys a full listing lists, page after page.
fn listed(db: &Db, bucket: Option<&str>, prefix: Option<&str>) -> Vec<String> {
    all_pages(db, bucket, prefix, 1000)
        .into_iter()
        .flat_map(|p| p.entries)
        .map(|e| e.key)
        .collect()
}

fn set(keys: &[&str]) -> BTreeSet<String> {
    keys.iter().map(|k| k.to_string()).collect()
}

fn sorted(keys: Vec<String>) -> BTreeSet<String> {
    keys.into_iter().collect()
}

/// Keys-only pages are the full listing's pages without the values: the
/// same keys in the same pages, `next` only before the last, and a bucket's
/// keys only.
fn keys_only_pages_list_the_keys_of_full_pages(s: &Space) {
    let db = s.open(QUICK);
    let value = vec![b'v'; 1000];
    for i in 0..23 {
        db.write(None, Some("b"), &format!("k{i:02}"), &value)
            .unwrap();
    }
    db.write(None, Some("bX"), "k00", b"longer bucket").unwrap();
    db.write(None, None, "b", b"no bucket").unwrap();

    let pages = all_key_pages(&db, Some("b"), None, 7);
    let shape: Vec<(usize, bool)> = pages
        .iter()
        .map(|p| (p.keys.len(), p.next.is_some()))
        .collect();
    assert_eq!(shape, [(7, true), (7, true), (7, true), (2, false)]);
    let full: Vec<Vec<String>> = all_pages(&db, Some("b"), None, 7)
        .into_iter()
        .map(|p| p.entries.into_iter().map(|e| e.key).collect())
        .collect();
    let keys_only: Vec<Vec<String>> = pages.iter().map(|p| p.keys.clone()).collect();
    assert_eq!(keys_only, full, "the same keys in the same pages");
    let expected: BTreeSet<String> = (0..23).map(|i| format!("k{i:02}")).collect();
    let keys: Vec<String> = keys_only.into_iter().flatten().collect();
    assert_eq!(keys.len(), 23, "a key listed twice: {keys:?}");
    assert_eq!(sorted(keys), expected);

    // A prefix, a page that ends the keys exactly.
    let pages = all_key_pages(&db, Some("b"), Some("k1"), 5);
    let shape: Vec<(usize, bool)> = pages
        .iter()
        .map(|p| (p.keys.len(), p.next.is_some()))
        .collect();
    assert_eq!(shape, [(5, true), (5, false)]);
    let keys: Vec<String> = pages.into_iter().flat_map(|p| p.keys).collect();
    assert_eq!(sorted(keys), sorted(listed(&db, Some("b"), Some("k1"))));

    // Without a bucket, every key as stored, as a full listing gives them.
    let all: Vec<String> = all_key_pages(&db, None, None, 4)
        .into_iter()
        .flat_map(|p| p.keys)
        .collect();
    assert_eq!(all.len(), 23 + 2);
    assert_eq!(sorted(all), sorted(listed(&db, None, None)));
    let longer: Vec<String> = all_key_pages(&db, Some("bX"), None, 10)
        .into_iter()
        .flat_map(|p| p.keys)
        .collect();
    assert_eq!(longer, ["k00"]);
    let empty = db.list_keys(None, Some("none"), None, None, 7).unwrap();
    assert!(empty.keys.is_empty() && empty.next.is_none());
}

/// `prefix` and `start_after` narrow a keys-only listing as they narrow a
/// full one, in ascending key order.
fn keys_only_pages_follow_prefix_and_start_after(s: &Space) {
    let db = s.open(QUICK);
    for key in ["a1", "a2", "a3", "b1", "b2"] {
        db.write(None, Some("x"), key, key.as_bytes()).unwrap();
    }
    let keys = |prefix: Option<&str>, after: Option<&str>| -> Vec<String> {
        let page = db.list_keys(None, Some("x"), prefix, after, 10).unwrap();
        assert_eq!(page.next, None);
        page.keys
    };
    assert_eq!(keys(Some("a"), None), ["a1", "a2", "a3"]);
    assert_eq!(keys(Some("a"), Some("a1")), ["a2", "a3"]);
    assert_eq!(keys(Some("b"), Some("a2")), ["b1", "b2"]);
    assert_eq!(keys(Some("a"), Some("a3")), Vec::<String>::new());
    assert_eq!(keys(None, Some("a3")), ["b1", "b2"]);
    let nexts: Vec<Option<String>> = all_key_pages(&db, Some("x"), None, 2)
        .into_iter()
        .map(|p| p.next)
        .collect();
    assert_eq!(nexts, [Some("a2".into()), Some("b1".into()), None]);
}

/// Bucket `logs` and prefix `prefixed`: exactly those keys go, and no key
/// of bucket `logsX`, of another prefix, or without a bucket.
fn delete_prefix_removes_exactly_the_keys_of_the_bucket_and_prefix(s: &Space) {
    let db = s.open(QUICK);
    for key in ["a", "b", "pre", "prefixed-1", "prefixed-2"] {
        db.write(None, Some("logs"), key, b"v").unwrap();
    }
    for key in ["a", "prefixed-1"] {
        db.write(None, Some("logsX"), key, b"v").unwrap();
    }
    for key in ["logs", "logsZ", "prefixed-3"] {
        db.write(None, None, key, b"v").unwrap();
    }

    let deleted = db.delete_prefix(None, Some("logs"), Some("prefixed"));
    assert_eq!(deleted.unwrap(), 2);
    assert_eq!(
        sorted(listed(&db, Some("logs"), None)),
        set(&["a", "b", "pre"])
    );
    assert_eq!(
        db.read(None, Some("logs"), "prefixed-1")
            .unwrap_err()
            .status(),
        Status::NotFound
    );
    assert_eq!(
        sorted(listed(&db, Some("logsX"), None)),
        set(&["a", "prefixed-1"])
    );
    // Nothing left to delete: a count of 0, not an error.
    let again = db.delete_prefix(None, Some("logs"), Some("prefixed"));
    assert_eq!(again.unwrap(), 0);

    // The whole bucket, and no other.
    assert_eq!(db.delete_prefix(None, Some("logs"), None).unwrap(), 3);
    assert!(listed(&db, Some("logs"), None).is_empty());
    assert_eq!(listed(&db, Some("logsX"), None).len(), 2);

    // Without a bucket, stored keys: `logs`, `logsZ` and bucket logsX's.
    assert_eq!(db.delete_prefix(None, Some(""), Some("logs")).unwrap(), 4);
    assert_eq!(sorted(listed(&db, None, None)), set(&["prefixed-3"]));
    assert_eq!(db.delete_prefix(None, Some("none"), None).unwrap(), 0);
}

/// More keys than one of the engine's batches (sled's transactions of 256,
/// DynamoDB's 25 deletes, a page of etcd's scan), counted exactly; keys of
/// a neighbouring bucket and prefix stay.
fn delete_prefix_removes_more_keys_than_one_batch(s: &Space) {
    let count = match s.name() {
        "local" => 1000,
        _ => 300,
    };
    let db = s.open(r#"{"size": 100, "interval": 0.05}"#);
    for i in 0..count {
        db.write_queued(None, Some("many"), &format!("k{i:04}"), b"v")
            .unwrap();
    }
    db.write_queued(None, Some("manyX"), "k0000", b"v").unwrap();
    db.write_queued(None, Some("many"), "l0000", b"v").unwrap();
    db.flush().unwrap();

    // Prefix k01: k0100 to k0199.
    let deleted = db.delete_prefix(None, Some("many"), Some("k01"));
    assert_eq!(deleted.unwrap(), 100);
    assert_eq!(crate::count(&db, "many"), count - 100 + 1);
    let deleted = db.delete_prefix(None, Some("many"), Some("k"));
    assert_eq!(deleted.unwrap(), count as u64 - 100);
    assert_eq!(listed(&db, Some("many"), None), ["l0000"]);
    assert_eq!(listed(&db, Some("manyX"), None), ["k0000"]);
}

/// The keys a listing leaves out stay: the stored key `h:` in bucket `h`
/// (no call names it there), and a key holding a NUL, which no C string
/// carries. Without a bucket, `h:` is listed, and so deleted.
fn delete_prefix_leaves_the_keys_listings_leave_out(s: &Space) {
    let db = s.open(QUICK);
    db.write(None, None, "h:", b"bare").unwrap();
    db.write(None, Some("h"), "a", b"v").unwrap();
    db.write(None, Some("h"), "b", b"v").unwrap();
    // The Rust API takes a NUL in a key; listings skip it.
    db.write(None, Some("h"), "x\0y", b"hidden").unwrap();
    assert_eq!(listed(&db, Some("h"), None), ["a", "b"].map(String::from));

    assert_eq!(db.delete_prefix(None, Some("h"), None).unwrap(), 2);
    assert_eq!(db.read(None, None, "h:").unwrap(), b"bare");
    assert_eq!(db.read(None, Some("h"), "x\0y").unwrap(), b"hidden");
    assert_eq!(db.delete_prefix(None, None, Some("h:")).unwrap(), 1);
    assert_eq!(
        db.read(None, None, "h:").unwrap_err().status(),
        Status::NotFound
    );
    assert_eq!(db.read(None, Some("h"), "x\0y").unwrap(), b"hidden");
}

/// No bucket and no prefix would delete every key: refused, and nothing
/// is deleted. So are a bad bucket and an unknown backend.
fn delete_prefix_needs_a_bucket_or_a_prefix(s: &Space) {
    let db = s.open(QUICK);
    db.write(None, None, "k", b"v").unwrap();
    db.write(None, Some("b"), "k", b"v").unwrap();
    for (bucket, prefix) in [
        (None, None),
        (Some(""), None),
        (None, Some("")),
        (Some(""), Some("")),
    ] {
        let err = db.delete_prefix(None, bucket, prefix).unwrap_err();
        assert_eq!(err.status(), Status::InvalidArgument, "{err}");
        assert!(
            err.to_string().contains("neither a bucket nor a prefix"),
            "{err}"
        );
    }
    let err = db.delete_prefix(None, Some("a:b"), None).unwrap_err();
    assert_eq!(err.status(), Status::InvalidArgument, "{err}");
    let err = db.delete_prefix(Some("nope"), Some("b"), None).unwrap_err();
    assert_eq!(err.status(), Status::UnknownBackend, "{err}");
    assert_eq!(listed(&db, None, None).len(), 2, "a refused call deleted");
}

/// `delete_prefix` deletes what the store holds when it runs: a write
/// still in the queue is applied later and writes its key again, as after
/// a delete.
fn delete_prefix_acts_on_the_store_as_it_is(s: &Space) {
    // The queue keeps its writes until the flush.
    let db = s.open(r#"{"size": 1000, "interval": 3600}"#);
    db.write(None, Some("q"), "a", b"direct").unwrap();
    db.write(None, Some("q"), "b", b"direct").unwrap();
    db.write_queued(None, Some("q"), "a", b"queued").unwrap();
    db.write_queued(None, Some("q"), "c", b"queued").unwrap();
    assert_eq!(db.delete_prefix(None, Some("q"), None).unwrap(), 2);
    db.flush().unwrap();
    let page = db.list(None, Some("q"), None, None, 10).unwrap();
    let entries: BTreeSet<(String, Vec<u8>)> =
        page.entries.into_iter().map(|e| (e.key, e.value)).collect();
    let queued = |key: &str| (key.to_owned(), b"queued".to_vec());
    assert_eq!(entries, [queued("a"), queued("c")].into());
}

/// `tether_list_ex` and `tether_delete_prefix` as a C caller drives them.
fn c_entry_points_list_keys_and_delete_by_prefix(s: &Space) {
    let config = c(&s.config(QUICK));
    let bucket = c("c");
    let mut db = ptr::null_mut();
    unsafe {
        assert_eq!(tether_open(config.as_ptr(), &mut db), Status::Ok);
        for key in ["k1", "k2", "k3"] {
            let key = c(key);
            let status = tether_write(
                db,
                ptr::null(),
                bucket.as_ptr(),
                key.as_ptr(),
                b"value".as_ptr(),
                5,
                0,
            );
            assert_eq!(status, Status::Ok, "{}", last_error());
        }
        let list = |flags: u32, page: &mut *mut TetherPage| {
            tether_list_ex(
                db,
                ptr::null(),
                bucket.as_ptr(),
                ptr::null(),
                ptr::null(),
                10,
                flags,
                page,
            )
        };

        // Keys alone: every key, NULL values of length 0.
        let mut page = ptr::null_mut();
        assert_eq!(list(TETHER_KEYS_ONLY, &mut page), Status::Ok);
        assert_eq!(tether_page_len(page), 3);
        let mut keys = BTreeSet::new();
        for i in 0..3 {
            keys.insert(CStr::from_ptr(tether_page_key(page, i)).to_str().unwrap());
            let mut len = 7;
            assert!(tether_page_value(page, i, &mut len).is_null());
            assert_eq!(len, 0);
            assert!(tether_page_value(page, i, ptr::null_mut()).is_null());
        }
        assert_eq!(keys, ["k1", "k2", "k3"].into());
        let mut len = 7;
        assert!(tether_page_value(page, 3, &mut len).is_null());
        assert_eq!(len, 7, "out_len written past the page's end");
        assert!(tether_page_next(page).is_null());
        tether_page_free(page);

        // Flags 0: keys and values, as tether_list gives them.
        let mut page = ptr::null_mut();
        assert_eq!(list(0, &mut page), Status::Ok);
        assert_eq!(tether_page_len(page), 3);
        let value = tether_page_value(page, 0, &mut len);
        assert_eq!(std::slice::from_raw_parts(value, len), b"value");
        tether_page_free(page);

        // An unknown flag: nothing listed, out_page untouched.
        let sentinel = ptr::dangling_mut::<TetherPage>();
        let mut page = sentinel;
        assert_eq!(list(2, &mut page), Status::InvalidArgument);
        assert_eq!(page, sentinel);
        assert!(
            last_error().starts_with("tether_list_ex: "),
            "{}",
            last_error()
        );

        // Deleting by prefix: the count out, or NULL for none.
        let (k1, k) = (c("k1"), c("k"));
        let mut deleted = 99;
        let status =
            tether_delete_prefix(db, ptr::null(), bucket.as_ptr(), k1.as_ptr(), &mut deleted);
        assert_eq!(status, Status::Ok, "{}", last_error());
        assert_eq!(deleted, 1);
        let status = tether_delete_prefix(
            db,
            ptr::null(),
            bucket.as_ptr(),
            k.as_ptr(),
            ptr::null_mut(),
        );
        assert_eq!(status, Status::Ok, "{}", last_error());
        let mut page = ptr::null_mut();
        assert_eq!(list(TETHER_KEYS_ONLY, &mut page), Status::Ok);
        assert_eq!(tether_page_len(page), 0);
        tether_page_free(page);

        // No bucket and no prefix: refused, out_deleted untouched.
        let (empty, kept) = (c(""), c("kept"));
        let status = tether_write(
            db,
            ptr::null(),
            ptr::null(),
            kept.as_ptr(),
            b"v".as_ptr(),
            1,
            0,
        );
        assert_eq!(status, Status::Ok);
        for (bucket, prefix) in [
            (ptr::null(), ptr::null()),
            (empty.as_ptr(), ptr::null()),
            (ptr::null(), empty.as_ptr()),
            (empty.as_ptr(), empty.as_ptr()),
        ] {
            let mut deleted = 99;
            let status = tether_delete_prefix(db, ptr::null(), bucket, prefix, &mut deleted);
            assert_eq!(status, Status::InvalidArgument);
            assert_eq!(deleted, 99, "out_deleted written on a failure");
            assert!(
                last_error().starts_with("tether_delete_prefix: "),
                "{}",
                last_error()
            );
        }
        let (mut value, mut len) = (ptr::null_mut(), 0);
        let status = tether_read(
            db,
            ptr::null(),
            ptr::null(),
            kept.as_ptr(),
            &mut value,
            &mut len,
        );
        assert_eq!(status, Status::Ok, "a refused call deleted");
        tether_free(value, len);
        assert_eq!(tether_close(db), Status::Ok);
    }
}
