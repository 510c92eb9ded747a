//! Keys, calls and queued writes (docs/c-api.md) on the `local` backend,
//! through the safe Rust API.

mod common;

use common::{count, listing, open, wait_until};
use tetherdb::{Db, Error, Status};

const QUICK: &str = r#"{"size": 10, "interval": 0.05}"#;

#[test]
fn write_overwrites_and_read_returns_the_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), QUICK);
    db.write(None, Some("b"), "k", b"one").unwrap();
    db.write(None, Some("b"), "k", b"two\0with nul").unwrap();
    assert_eq!(db.read(None, Some("b"), "k").unwrap(), b"two\0with nul");
    db.write(Some("local"), None, "empty", b"").unwrap();
    assert_eq!(db.read(Some(""), None, "empty").unwrap(), b"");
}

#[test]
fn the_stored_key_is_bucket_colon_key() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), QUICK);
    db.write(None, Some("logs"), "k", b"v").unwrap();
    assert_eq!(db.read(None, None, "logs:k").unwrap(), b"v");
    assert_eq!(db.read(None, Some(""), "logs:k").unwrap(), b"v");
}

#[test]
fn absent_keys_are_not_found_with_a_message_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), QUICK);
    let err = db.read(None, Some("b"), "absent").unwrap_err();
    assert_eq!(err.status(), Status::NotFound);
    assert_eq!(err.to_string(), "local: key \"b:absent\" not found");
    assert_eq!(
        db.delete(None, Some("b"), "absent").unwrap_err().status(),
        Status::NotFound
    );
}

#[test]
fn update_writes_only_where_the_key_exists() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), QUICK);
    let err = db.update(None, Some("b"), "k", b"new").unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }));
    assert_eq!(
        db.read(None, Some("b"), "k").unwrap_err().status(),
        Status::NotFound
    );

    db.write(None, Some("b"), "k", b"old").unwrap();
    db.update(None, Some("b"), "k", b"new").unwrap();
    assert_eq!(db.read(None, Some("b"), "k").unwrap(), b"new");
}

#[test]
fn concurrent_updates_and_deletes_never_recreate_a_key() {
    // Update is a compare-and-swap: racing a delete, it either lands before
    // the delete or reports NotFound; it never brings the key back.
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), QUICK);
    for round in 0..200 {
        let key = format!("k{round}");
        db.write(None, None, &key, b"v").unwrap();
        std::thread::scope(|s| {
            s.spawn(|| {
                for _ in 0..20 {
                    match db.update(None, None, &key, b"u") {
                        Ok(()) | Err(Error::NotFound { .. }) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
            });
            s.spawn(|| db.delete(None, None, &key).unwrap());
        });
        assert_eq!(
            db.read(None, None, &key).unwrap_err().status(),
            Status::NotFound
        );
    }
}

#[test]
fn delete_removes_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), QUICK);
    db.write(None, None, "k", b"v").unwrap();
    db.delete(None, None, "k").unwrap();
    assert_eq!(
        db.delete(None, None, "k").unwrap_err().status(),
        Status::NotFound
    );
    assert_eq!(
        db.read(None, None, "k").unwrap_err().status(),
        Status::NotFound
    );
}

#[test]
fn bad_arguments_are_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), QUICK);
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
        "key \"k\" in bucket \"b\": backend \"nope\" is not configured in this handle (configured: local)"
    );
    let empty = db.write(None, Some("b"), "", b"v").unwrap_err();
    assert_eq!(
        empty.to_string(),
        "invalid argument: local: key \"\" in bucket \"b\": the key is empty"
    );
    let page = db
        .list(Some("local"), Some("b"), Some("p"), None, 0)
        .unwrap_err();
    assert_eq!(
        page.to_string(),
        "invalid argument: local: listing bucket \"b\" with prefix \"p\": page_size is 0"
    );
}

/// Only a build without the dynamodb feature has an unbuilt backend to
/// show (`cargo test --no-default-features`).
#[cfg(not(feature = "dynamodb"))]
#[test]
fn configured_but_unbuilt_backends_are_unknown_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let json = format!(
        r#"{{"logging": "none", "local": {{"filepath": {:?}}}, "etcd": {{"host": "localhost", "port": 2379}}, "dynamodb": {{"table_name": "MyDynamoDBTable"}}}}"#,
        dir.path().join("db")
    );
    let db = Db::open_json(Some(&json)).unwrap();
    db.write(None, None, "k", b"v").unwrap();
    let err = db.write(Some("dynamodb"), None, "k", b"v").unwrap_err();
    assert_eq!(err.status(), Status::UnknownBackend);
    assert!(err.to_string().contains("has no dynamodb backend"), "{err}");
}

#[test]
fn twenty_three_keys_in_pages_of_seven() {
    let dir = tempfile::tempdir().unwrap();
    listing::pages_of_seven(&open(dir.path(), QUICK));
}

#[test]
fn a_bucket_never_lists_a_longer_bucket() {
    let dir = tempfile::tempdir().unwrap();
    listing::buckets_never_list_longer_buckets(&open(dir.path(), QUICK));
}

#[test]
fn prefix_and_start_after_narrow_a_listing() {
    let dir = tempfile::tempdir().unwrap();
    listing::prefix_and_start_after(&open(dir.path(), QUICK));
}

#[test]
fn queued_writes_are_applied_in_order_and_flush_waits_for_them() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), r#"{"size": 1000, "interval": 3600}"#);
    for i in 0..100 {
        db.write_queued(None, Some("q"), "same", format!("{i}").as_bytes())
            .unwrap();
    }
    db.flush().unwrap();
    assert_eq!(
        db.read(None, Some("q"), "same").unwrap(),
        b"99",
        "the last queued write wins"
    );
}

#[test]
fn a_full_batch_goes_out_without_waiting_for_the_interval() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), r#"{"size": 5, "interval": 3600}"#);
    for i in 0..9 {
        db.write_queued(None, Some("q"), &format!("k{i}"), b"v")
            .unwrap();
    }
    wait_until(|| count(&db, "q") == 5);
    // The other four wait for a fifth write, the interval or a flush.
    assert_eq!(count(&db, "q"), 5);
    db.flush().unwrap();
    assert_eq!(count(&db, "q"), 9);
}

#[test]
fn a_trickle_is_sent_once_its_oldest_write_has_waited_the_interval() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), r#"{"size": 1000, "interval": 0.05}"#);
    db.write_queued(None, Some("q"), "lonely", b"v").unwrap();
    // No flush: the interval alone must send it.
    wait_until(|| db.read(None, Some("q"), "lonely").is_ok());
}

#[test]
fn stop_applies_everything_and_start_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), r#"{"size": 10, "interval": 2.0}"#);
    for i in 0..20_000 {
        db.write_queued(None, Some("drain"), &format!("a{i:05}"), b"v")
            .unwrap();
    }
    db.stop().unwrap();
    assert_eq!(count(&db, "drain"), 20_000);
    assert!(!db.is_running());

    let refused = db
        .write_queued(None, Some("drain"), "late", b"v")
        .unwrap_err();
    assert_eq!(refused.status(), Status::NotRunning);
    assert!(refused.to_string().contains("drain:late"), "{refused}");
    db.stop().unwrap(); // idempotent

    db.start().unwrap();
    db.start().unwrap(); // idempotent
    for i in 0..5_000 {
        db.write_queued(None, Some("drain"), &format!("b{i:05}"), b"v")
            .unwrap();
    }
    db.close().unwrap();

    let db = open(dir.path(), QUICK);
    assert_eq!(count(&db, "drain"), 25_000);
}

#[test]
fn dropping_a_handle_applies_its_queue() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = open(dir.path(), r#"{"size": 100, "interval": 3600}"#);
        for i in 0..1_000 {
            db.write_queued(None, Some("d"), &format!("k{i}"), b"v")
                .unwrap();
        }
    }
    assert_eq!(count(&open(dir.path(), QUICK), "d"), 1_000);
}

#[test]
fn autostart_false_leaves_the_worker_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), r#"{"autostart": false}"#);
    assert!(!db.is_running());
    assert_eq!(
        db.write_queued(None, None, "k", b"v").unwrap_err().status(),
        Status::NotRunning
    );
    db.flush().unwrap();
    db.start().unwrap();
    db.write_queued(None, None, "k", b"v").unwrap();
    db.flush().unwrap();
    assert_eq!(db.read(None, None, "k").unwrap(), b"v");
}

#[test]
fn a_tiny_queue_makes_writers_wait_instead_of_growing() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(
        dir.path(),
        r#"{"size": 3, "interval": 0.01, "capacity": 1}"#,
    );
    std::thread::scope(|s| {
        for t in 0..4 {
            let db = &db;
            s.spawn(move || {
                for i in 0..500 {
                    db.write_queued(None, Some("tiny"), &format!("{t}-{i}"), b"v")
                        .unwrap();
                }
            });
        }
    });
    db.flush().unwrap();
    assert_eq!(count(&db, "tiny"), 2_000);
}

#[test]
fn a_second_handle_on_one_store_is_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let _first = open(dir.path(), QUICK);
    let err = Db::open_json(Some(&common::config(dir.path(), QUICK)))
        .err()
        .unwrap();
    assert_eq!(err.status(), Status::Io);
    assert!(err.to_string().contains("cannot open"), "{err}");
}

#[test]
fn cache_capacity_has_a_bounded_default_and_is_validated() {
    use tetherdb::Config;
    use tetherdb::LocalConfig;
    // Absent (every existing configuration): 32 MiB, not sled's 1 GiB.
    assert_eq!(LocalConfig::default().cache_capacity, 32 << 20);
    for json in [r#"{"local": {"filepath": "d"}}"#, "{}"] {
        let config = Config::from_json(Some(json)).unwrap();
        assert_eq!(config.local_config().unwrap().cache_capacity, 32 << 20);
    }
    let config = Config::from_json(Some(r#"{"local": {"cache_capacity": 8388608}}"#)).unwrap();
    assert_eq!(config.local_config().unwrap().cache_capacity, 8 << 20);
    // 0, too small, absurd, negative, not a number: a configuration error
    // that names the key.
    for value in ["0", "1000", "1099511627777", "-1", "1.5", "\"64MiB\""] {
        let json = format!(r#"{{"local": {{"cache_capacity": {value}}}}}"#);
        let err = Config::from_json(Some(&json)).unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{value}: {err}");
        assert!(err.to_string().contains("cache_capacity"), "{value}: {err}");
    }
    // A store opened with a small cache works as any other.
    let dir = tempfile::tempdir().unwrap();
    let json = format!(
        r#"{{"logging": "none", "local": {{"filepath": {:?}, "cache_capacity": 1048576}}}}"#,
        dir.path().join("db")
    );
    let db = Db::open_json(Some(&json)).unwrap();
    for i in 0..2000 {
        db.write(None, Some("c"), &format!("k{i}"), &[i as u8; 1000])
            .unwrap();
    }
    assert_eq!(
        db.read(None, Some("c"), "k1999").unwrap(),
        [1999u16 as u8; 1000]
    );
    db.close().unwrap();
}

/// What the library creates is its owner's alone, whatever the umask; a
/// directory that exists keeps its permissions.
#[test]
fn the_store_and_its_outbox_are_private_to_their_owner() {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};

    let dir = tempfile::tempdir().unwrap();
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    let made = dir.path().join("new/store");
    let config = format!(r#"{{"local": {{"filepath": {made:?}}}}}"#);
    Db::open_json(Some(&config)).unwrap().close().unwrap();
    assert_eq!(mode(&dir.path().join("new")), 0o700);
    assert_eq!(mode(&made), 0o700);
    let outbox = dir.path().join("new/store.outbox");
    assert_eq!(mode(&outbox), 0o700);
    for file in std::fs::read_dir(&outbox).unwrap() {
        assert_eq!(mode(&file.unwrap().path()), 0o600);
    }

    let shared = dir.path().join("shared");
    std::fs::DirBuilder::new()
        .mode(0o750)
        .create(&shared)
        .unwrap();
    let config = format!(r#"{{"local": {{"filepath": {shared:?}}}}}"#);
    Db::open_json(Some(&config)).unwrap().close().unwrap();
    assert_eq!(mode(&shared), 0o750, "the user's own directory changed");
}
