//! The listing semantics of docs/c-api.md, checked on whatever backend
//! is the default of the handle given: every ordered backend must pass
//! them alike. Each check writes under buckets of its own.

use tetherdb::Db;

use super::all_pages;

/// 23 keys in pages of 7 come back 7/7/7/2, every key once, ascending, and
/// the next marker is `None` exactly on the last page.
pub fn pages_of_seven(db: &Db) {
    for i in 0..23 {
        let value = format!("v{i}");
        db.write(None, Some("b"), &format!("k{i:02}"), value.as_bytes())
            .unwrap();
    }
    let pages = all_pages(db, Some("b"), None, 7);
    let sizes: Vec<usize> = pages.iter().map(|p| p.entries.len()).collect();
    assert_eq!(sizes, [7, 7, 7, 2]);
    let nexts: Vec<Option<&str>> = pages.iter().map(|p| p.next.as_deref()).collect();
    assert_eq!(nexts, [Some("k06"), Some("k13"), Some("k20"), None]);
    let keys: Vec<String> = pages
        .iter()
        .flat_map(|p| &p.entries)
        .map(|e| e.key.clone())
        .collect();
    let expected: Vec<String> = (0..23).map(|i| format!("k{i:02}")).collect();
    assert_eq!(keys, expected, "every key once, ascending");
    assert_eq!(pages[0].entries[3].value, b"v3");

    // A page that ends the keys exactly has no next.
    let sizes: Vec<usize> = all_pages(db, Some("b"), Some("k1"), 5)
        .iter()
        .map(|p| p.entries.len())
        .collect();
    assert_eq!(sizes, [5, 5]);
    let empty = db.list(None, Some("none"), None, None, 7).unwrap();
    assert!(empty.entries.is_empty() && empty.next.is_none());
}

/// Bucket `logs` never lists `logsX`; without a bucket, keys are listed as
/// stored. Expects a backend holding no other keys.
pub fn buckets_never_list_longer_buckets(db: &Db) {
    db.write(None, Some("logs"), "a", b"1").unwrap();
    db.write(None, Some("logsX"), "b", b"2").unwrap();
    db.write(None, None, "logs", b"3").unwrap();
    db.write(None, None, "logsZ", b"4").unwrap();
    let page = db.list(None, Some("logs"), None, None, 10).unwrap();
    let keys: Vec<&str> = page.entries.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["a"]);
    assert_eq!(page.next, None);
    let all = db.list(None, None, None, None, 10).unwrap();
    let keys: Vec<&str> = all.entries.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["logs", "logs:a", "logsX:b", "logsZ"]);
}

/// `prefix` and `start_after` narrow a listing of bucket `x`, whatever
/// their order.
pub fn prefix_and_start_after(db: &Db) {
    for key in ["a1", "a2", "a3", "b1", "b2"] {
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
        ["b1", "b2"],
        "start_after before the prefix"
    );
    assert_eq!(keys(Some("a"), Some("a3")), Vec::<String>::new());
    assert_eq!(keys(Some("a"), Some("zz")), Vec::<String>::new());
    assert_eq!(keys(None, Some("a3")), ["b1", "b2"]);
}
