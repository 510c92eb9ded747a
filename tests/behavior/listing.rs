//! Listings (docs/c-api.md): pages, `next`, buckets, prefixes and
//! `start_after`. What holds in any order is checked on every engine; what
//! needs ascending key order, on the engines with `OrderedListing`.

use std::collections::BTreeSet;

use tetherdb::Page;

use crate::common::all_pages;
use crate::engine::{cases, Space};

const QUICK: &str = r#"{"size": 10, "interval": 0.05}"#;

cases![
    twenty_three_keys_in_pages_of_seven,
    #[needs(OrderedListing)]
    listings_are_in_ascending_key_order,
    a_bucket_never_lists_a_longer_bucket,
    buckets_and_prefixes_list_only_their_keys,
    #[needs(OrderedListing)]
    prefix_and_start_after_narrow_a_listing,
    a_page_that_fills_exactly_is_the_last_when_nothing_follows,
    a_listing_goes_on_after_its_last_key_was_deleted,
];

fn keys_of(pages: &[Page]) -> Vec<String> {
    pages
        .iter()
        .flat_map(|p| &p.entries)
        .map(|e| e.key.clone())
        .collect()
}

fn set(keys: &[&str]) -> BTreeSet<String> {
    keys.iter().map(|k| k.to_string()).collect()
}

/// 23 keys in bucket `b`, `k00` to `k22`, whose values are `v0` to `v22`.
fn write_twenty_three(s: &Space) -> tetherdb::Db {
    let db = s.open(QUICK);
    for i in 0..23 {
        let value = format!("v{i}");
        db.write(None, Some("b"), &format!("k{i:02}"), value.as_bytes())
            .unwrap();
    }
    db
}

/// 23 keys in pages of 7 come back 7/7/7/2, every key exactly once with its
/// value, and `next` is `None` exactly on the last page.
fn twenty_three_keys_in_pages_of_seven(s: &Space) {
    let db = write_twenty_three(s);
    let pages = all_pages(&db, Some("b"), None, 7);
    let sizes: Vec<usize> = pages.iter().map(|p| p.entries.len()).collect();
    assert_eq!(sizes, [7, 7, 7, 2]);
    let nexts: Vec<bool> = pages.iter().map(|p| p.next.is_some()).collect();
    assert_eq!(nexts, [true, true, true, false]);
    let keys = keys_of(&pages);
    let unique: BTreeSet<&String> = keys.iter().collect();
    assert_eq!(unique.len(), keys.len(), "a key listed twice: {keys:?}");
    let expected: BTreeSet<String> = (0..23).map(|i| format!("k{i:02}")).collect();
    assert_eq!(unique, expected.iter().collect());
    for entry in pages.iter().flat_map(|p| &p.entries) {
        let i: usize = entry.key[1..].parse().unwrap();
        assert_eq!(entry.value, format!("v{i}").as_bytes());
    }

    // A page that ends the keys exactly has no next.
    let sizes: Vec<usize> = all_pages(&db, Some("b"), Some("k1"), 5)
        .iter()
        .map(|p| p.entries.len())
        .collect();
    assert_eq!(sizes, [5, 5]);
    let empty = db.list(None, Some("none"), None, None, 7).unwrap();
    assert!(empty.entries.is_empty() && empty.next.is_none());
}

/// Pages come in ascending key order and `next` is the last key of its
/// page; so does a listing of a whole store, keys as stored.
fn listings_are_in_ascending_key_order(s: &Space) {
    let db = s.open(QUICK);
    db.write(None, Some("logs"), "a", b"1").unwrap();
    db.write(None, Some("logsX"), "b", b"2").unwrap();
    db.write(None, None, "logs", b"3").unwrap();
    db.write(None, None, "logsZ", b"4").unwrap();
    let all = db.list(None, None, None, None, 10).unwrap();
    let keys: Vec<&str> = all.entries.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["logs", "logs:a", "logsX:b", "logsZ"]);
    drop(db);

    let db = write_twenty_three(s);
    let pages = all_pages(&db, Some("b"), None, 7);
    let nexts: Vec<Option<&str>> = pages.iter().map(|p| p.next.as_deref()).collect();
    assert_eq!(nexts, [Some("k06"), Some("k13"), Some("k20"), None]);
    let expected: Vec<String> = (0..23).map(|i| format!("k{i:02}")).collect();
    assert_eq!(keys_of(&pages), expected, "every key once, ascending");
    assert_eq!(pages[0].entries[3].value, b"v3");
}

/// Bucket `logs` never lists `logsX`; without a bucket, keys are listed as
/// stored.
fn a_bucket_never_lists_a_longer_bucket(s: &Space) {
    let db = s.open(QUICK);
    db.write(None, Some("logs"), "a", b"1").unwrap();
    db.write(None, Some("logsX"), "b", b"2").unwrap();
    db.write(None, None, "logs", b"3").unwrap();
    db.write(None, None, "logsZ", b"4").unwrap();
    let page = db.list(None, Some("logs"), None, None, 10).unwrap();
    let keys: Vec<&str> = page.entries.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["a"]);
    assert_eq!(page.next, None);
    let all = db.list(None, None, None, None, 10).unwrap();
    assert_eq!(all.next, None);
    let keys: BTreeSet<String> = all.entries.into_iter().map(|e| e.key).collect();
    assert_eq!(keys, set(&["logs", "logs:a", "logsX:b", "logsZ"]));
}

/// Buckets and prefixes, over pages of two.
fn buckets_and_prefixes_list_only_their_keys(s: &Space) {
    let db = s.open(QUICK);
    for key in ["a", "b", "c"] {
        db.write(None, Some("logs"), key, b"v").unwrap();
        db.write(None, Some("logsX"), key, b"v").unwrap();
    }
    db.write(None, None, "logs", b"no bucket").unwrap();
    db.write(None, Some("logs"), "prefixed-1", b"v").unwrap();
    db.write(None, Some("logs"), "prefixed-2", b"v").unwrap();

    let listed = |bucket: Option<&str>, prefix: Option<&str>| -> BTreeSet<String> {
        keys_of(&all_pages(&db, bucket, prefix, 2))
            .into_iter()
            .collect()
    };
    assert_eq!(
        listed(Some("logs"), None),
        set(&["a", "b", "c", "prefixed-1", "prefixed-2"])
    );
    assert_eq!(listed(Some("logsX"), None), set(&["a", "b", "c"]));
    assert_eq!(
        listed(Some("logs"), Some("prefixed")),
        set(&["prefixed-1", "prefixed-2"])
    );
    // Without a bucket, every key as stored.
    assert_eq!(listed(None, Some("logs")).len(), 1 + 5 + 3);
    assert_eq!(listed(None, None).len(), 1 + 5 + 3);
}

/// `prefix` and `start_after` narrow a listing of bucket `x`, whatever
/// their order.
fn prefix_and_start_after_narrow_a_listing(s: &Space) {
    let db = s.open(QUICK);
    // `b:c` sorts right after `b:`, inside the slice of keys that share all
    // but the last byte of a `start_after` of `b:`.
    for key in ["a1", "a2", "a3", "b1", "b2", "b:c"] {
        db.write(None, Some("x"), key, key.as_bytes()).unwrap();
    }
    let keys = |prefix: Option<&str>, after: Option<&str>| -> Vec<String> {
        let page = db.list(None, Some("x"), prefix, after, 10).unwrap();
        assert_eq!(page.next, None);
        page.entries.into_iter().map(|e| e.key).collect()
    };
    assert_eq!(keys(Some("a"), None), ["a1", "a2", "a3"]);
    assert_eq!(keys(Some("a"), Some("a1")), ["a2", "a3"]);
    assert_eq!(
        keys(Some("b"), Some("a2")),
        ["b1", "b2", "b:c"],
        "start_after before the prefix"
    );
    assert_eq!(keys(Some("a"), Some("a3")), Vec::<String>::new());
    assert_eq!(keys(Some("a"), Some("zz")), Vec::<String>::new());
    assert_eq!(
        keys(Some("a"), Some("b:")),
        Vec::<String>::new(),
        "start_after past the prefix"
    );
    assert_eq!(keys(None, Some("a3")), ["b1", "b2", "b:c"]);
}

fn a_page_that_fills_exactly_is_the_last_when_nothing_follows(s: &Space) {
    let db = s.open(QUICK);
    // Keys of other buckets after the last match: the look-ahead must scan
    // past them to learn that no match remains.
    for i in 0..14 {
        db.write(None, Some("a"), &format!("k{i:02}"), b"v")
            .unwrap();
    }
    for i in 0..5 {
        db.write(None, Some("z"), &format!("k{i:02}"), b"v")
            .unwrap();
    }
    let pages = all_pages(&db, Some("a"), None, 7);
    let shape: Vec<(usize, bool)> = pages
        .iter()
        .map(|p| (p.entries.len(), p.next.is_some()))
        .collect();
    assert_eq!(shape, [(7, true), (7, false)]);
    assert_eq!(keys_of(&pages).len(), 14);

    let empty = db.list(None, Some("nothing"), None, None, 7).unwrap();
    assert!(empty.entries.is_empty() && empty.next.is_none());
}

fn a_listing_goes_on_after_its_last_key_was_deleted(s: &Space) {
    let db = s.open(QUICK);
    for i in 0..20 {
        db.write(None, Some("b"), &format!("k{i:02}"), b"v")
            .unwrap();
    }
    let first = db.list(None, Some("b"), None, None, 7).unwrap();
    let after = first.next.clone().unwrap();
    // The key the next page resumes after, and one already listed, go.
    db.delete(None, Some("b"), &after).unwrap();
    db.delete(None, Some("b"), &first.entries[0].key).unwrap();
    let mut keys: Vec<String> = first.entries.iter().map(|e| e.key.clone()).collect();
    let mut start = Some(after);
    while let Some(after) = start {
        let page = db.list(None, Some("b"), None, Some(&after), 7).unwrap();
        keys.extend(page.entries.iter().map(|e| e.key.clone()));
        start = page.next;
    }
    let unique: BTreeSet<&String> = keys.iter().collect();
    assert_eq!(unique.len(), keys.len(), "a key listed twice: {keys:?}");
    assert_eq!(keys.len(), 20, "every key listed once: {keys:?}");
}
