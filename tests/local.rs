//! What is the `local` backend's own: one handle per store, sled's cache,
//! the files' permissions, a build without a remote backend. The calls'
//! semantics, the same on every engine, are the behaviour suite's
//! (tests/behavior).

mod common;

use common::open;
use tetherdb::{Db, Error, Status};

const QUICK: &str = r#"{"size": 10, "interval": 0.05}"#;

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
fn a_second_handle_on_one_store_is_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let _first = open(dir.path(), QUICK);
    let err = Db::open_json(Some(&common::config(dir.path(), QUICK)))
        .err()
        .unwrap();
    assert_eq!(err.status(), Status::Io);
    assert!(err.to_string().contains("cannot open"), "{err}");
}

/// A store an earlier version of the library wrote has raw values in
/// sled's default tree, and maybe their versions in a tree of their own:
/// opening it moves them into entries with headers (docs/design.md,
/// Versions), keeping each key's version (1 where none was kept). A move
/// cut short (a chunk already in the entries, still in the default tree)
/// starts again and ends the same.
#[test]
fn keys_written_before_entries_had_headers_keep_their_values_and_versions() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = sled::open(dir.path().join("db")).unwrap();
        store.insert("b:old", "from before").unwrap();
        store.insert("b:other", "also").unwrap();
        store.insert("b:versioned", "with a version").unwrap();
        let versions = store.open_tree("tetherdb.versions").unwrap();
        versions.insert("b:versioned", &7u64.to_be_bytes()).unwrap();
        // A move cut short: this key is in the entries already (version 1,
        // no expiry), and still in the default tree.
        let entries = store.open_tree("tetherdb.entries").unwrap();
        let mut moved = vec![0u8];
        moved.extend_from_slice(&1u64.to_be_bytes());
        moved.extend_from_slice(b"also");
        entries.insert("b:other", moved).unwrap();
        store.flush().unwrap();
    }
    let db = open(dir.path(), QUICK);
    let read = |key| db.read_ex(None, Some("b"), key, true).unwrap();
    assert_eq!(read("old"), (b"from before".to_vec(), 1));
    assert_eq!(read("other"), (b"also".to_vec(), 1));
    assert_eq!(read("versioned"), (b"with a version".to_vec(), 7));
    let at_one = tetherdb::WriteOptions {
        if_version: Some(1),
        ..Default::default()
    };
    let version = db
        .write_ex(None, Some("b"), "old", b"now versioned", &at_one)
        .unwrap()
        .unwrap();
    assert!(version > 7, "{version}");
    let err = db
        .write_ex(None, Some("b"), "old", b"stale", &at_one)
        .unwrap_err();
    assert_eq!(err.status(), Status::Conflict);
    db.delete_ex(None, Some("b"), "other", Some(1)).unwrap();
    assert_eq!(common::count(&db, "b"), 2);
    db.close().unwrap();
    // Nothing is left in the old places.
    let store = sled::open(dir.path().join("db")).unwrap();
    assert!(store.is_empty());
    assert!(!store
        .tree_names()
        .contains(&sled::IVec::from("tetherdb.versions")));
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
