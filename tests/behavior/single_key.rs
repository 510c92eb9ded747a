//! The single-key calls (docs/c-api.md), through the safe Rust API: write,
//! read, update, delete, and what each says of an absent key or a bad
//! argument.

use tetherdb::{Error, Status};

use crate::count;
use crate::engine::{cases, Space};

const QUICK: &str = r#"{"size": 10, "interval": 0.05}"#;

cases![
    write_overwrites_and_read_returns_the_bytes,
    the_stored_key_is_bucket_colon_key,
    absent_keys_are_not_found_with_a_message_naming_them,
    update_writes_only_where_the_key_exists,
    delete_removes_once,
    bad_arguments_are_invalid,
];

fn write_overwrites_and_read_returns_the_bytes(s: &Space) {
    let db = s.open(QUICK);
    db.write(None, Some("b"), "k", b"one").unwrap();
    db.write(None, Some("b"), "k", b"two\0with nul").unwrap();
    assert_eq!(db.read(None, Some("b"), "k").unwrap(), b"two\0with nul");
    assert_eq!(
        db.read(Some(s.name()), None, "b:k").unwrap(),
        b"two\0with nul"
    );
    // Any bytes, and none; the backend named, or `""` for the default.
    db.write(None, None, "binary", b"\xff\x00\xfe").unwrap();
    assert_eq!(db.read(None, None, "binary").unwrap(), b"\xff\x00\xfe");
    db.write(Some(s.name()), None, "empty", b"").unwrap();
    assert_eq!(db.read(None, None, "empty").unwrap(), b"");
    assert_eq!(db.read(Some(""), None, "empty").unwrap(), b"");
    db.close().unwrap();
}

fn the_stored_key_is_bucket_colon_key(s: &Space) {
    let db = s.open(QUICK);
    db.write(None, Some("logs"), "k", b"v").unwrap();
    assert_eq!(db.read(None, None, "logs:k").unwrap(), b"v");
    assert_eq!(db.read(None, Some(""), "logs:k").unwrap(), b"v");
}

fn absent_keys_are_not_found_with_a_message_naming_them(s: &Space) {
    let db = s.open(QUICK);
    let err = db.read(None, Some("b"), "absent").unwrap_err();
    assert_eq!(err.status(), Status::NotFound);
    assert_eq!(
        err.to_string(),
        format!("{}: key \"b:absent\" not found", s.name())
    );
    assert_eq!(
        db.delete(None, Some("b"), "absent").unwrap_err().status(),
        Status::NotFound
    );
}

fn update_writes_only_where_the_key_exists(s: &Space) {
    let db = s.open(QUICK);
    let err = db.update(None, Some("b"), "absent", b"x").unwrap_err();
    assert_eq!(err.status(), Status::NotFound);
    assert!(
        matches!(&err, Error::NotFound { backend, key } if backend == s.name() && key == "b:absent"),
        "{err:?}"
    );
    assert_eq!(
        db.read(None, Some("b"), "absent").unwrap_err().status(),
        Status::NotFound,
        "update created the key"
    );
    assert_eq!(count(&db, "b"), 0);

    db.write(None, Some("b"), "k", b"old").unwrap();
    db.update(None, Some("b"), "k", b"new").unwrap();
    assert_eq!(db.read(None, Some("b"), "k").unwrap(), b"new");
    // Any bytes replace any bytes.
    db.write(None, None, "binary", b"\xff\x00\xfe").unwrap();
    db.update(None, None, "binary", b"text now").unwrap();
    assert_eq!(db.read(None, None, "binary").unwrap(), b"text now");
}

fn delete_removes_once(s: &Space) {
    let db = s.open(QUICK);
    for (bucket, stored) in [(None, "k"), (Some("b"), "b:k")] {
        db.write(None, bucket, "k", b"v").unwrap();
        db.delete(None, bucket, "k").unwrap();
        let err = db.delete(None, bucket, "k").unwrap_err();
        assert_eq!(err.status(), Status::NotFound);
        assert!(err.to_string().contains(&format!("{stored:?}")), "{err}");
        assert_eq!(
            db.read(None, bucket, "k").unwrap_err().status(),
            Status::NotFound
        );
    }
    db.close().unwrap();
}

fn bad_arguments_are_invalid(s: &Space) {
    let db = s.open(QUICK);
    let invalid =
        |r: tetherdb::Result<()>| assert_eq!(r.unwrap_err().status(), Status::InvalidArgument);
    invalid(db.write(None, None, "", b"v"));
    invalid(db.write(None, Some("a:b"), "k", b"v"));
    invalid(db.write_queued(None, Some("a:b"), "k", b"v"));
    invalid(db.update(None, None, "", b"v"));
    invalid(db.delete(None, None, ""));
    invalid(db.read(None, None, "").map(drop));
    invalid(db.list(None, None, None, None, 0).map(drop));
    invalid(db.list(None, Some("x:"), None, None, 5).map(drop));
    let unknown = db.read(Some("nope"), Some("b"), "k").unwrap_err();
    assert_eq!(unknown.status(), Status::UnknownBackend);
    assert_eq!(
        unknown.to_string(),
        format!(
            "key \"k\" in bucket \"b\": backend \"nope\" is not configured in this handle (configured: {})",
            db.backend_names().join(", ")
        )
    );
    let empty = db.write(None, Some("b"), "", b"v").unwrap_err();
    assert_eq!(
        empty.to_string(),
        format!(
            "invalid argument: {}: key \"\" in bucket \"b\": the key is empty",
            s.name()
        )
    );
    let page = db
        .list(Some(s.name()), Some("b"), Some("p"), None, 0)
        .unwrap_err();
    assert_eq!(
        page.to_string(),
        format!(
            "invalid argument: {}: listing bucket \"b\" with prefix \"p\": page_size is 0",
            s.name()
        )
    );
}
