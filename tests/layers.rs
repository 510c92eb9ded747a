//! Named backends and layers (docs/layers.md): what is their own. The
//! calls' semantics through a tiered backend are the behaviour suite's
//! (tests/behavior, engine `tiered`).

mod common;

use std::path::Path;

use common::etcd::Etcd;
use tetherdb::{Db, Status, WriteOptions};

const QUICK: &str = r#"{"size": 10, "interval": 0.05}"#;

/// A handle over `backends` (the `backends` section's entries), each
/// `local` store's `filepath` a directory under `dir` named after it.
fn open(dir: &Path, default: &str, backends: &[(&str, &str)]) -> Db {
    let entries: Vec<String> = backends
        .iter()
        .map(|(name, section)| {
            let section = section.replace("DIR", dir.join(name).to_str().unwrap());
            format!("{name:?}: {section}")
        })
        .collect();
    let json = format!(
        r#"{{"logging": "none", "default_backend": {default:?}, "queue_batch": {QUICK},
            "backends": {{{}}}}}"#,
        entries.join(", ")
    );
    Db::open_json(Some(&json)).unwrap()
}

const LOCAL: &str = r#"{"engine": "local", "filepath": "DIR"}"#;

fn cache_and_primary(dir: &Path) -> Db {
    open(
        dir,
        "docs",
        &[
            ("cache", LOCAL),
            ("primary", LOCAL),
            (
                "docs",
                r#"{"engine": "tiered", "layers": ["cache", "primary"]}"#,
            ),
        ],
    )
}

fn read(db: &Db, backend: &str, key: &str) -> Option<Vec<u8>> {
    match db.read(Some(backend), Some("b"), key) {
        Ok(value) => Some(value),
        Err(e) if e.status() == Status::NotFound => None,
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn tiered_reads_the_first_hit_and_writes_every_layer() {
    let dir = tempfile::tempdir().unwrap();
    let db = cache_and_primary(dir.path());
    db.write(None, Some("b"), "k", b"v1").unwrap();
    assert_eq!(read(&db, "cache", "k").as_deref(), Some(&b"v1"[..]));
    assert_eq!(read(&db, "primary", "k").as_deref(), Some(&b"v1"[..]));

    // The first layer that holds the key answers a read.
    db.write(Some("cache"), Some("b"), "k", b"cached").unwrap();
    assert_eq!(db.read(None, Some("b"), "k").unwrap(), b"cached");
    // A key only the last layer holds is read there.
    db.write(Some("primary"), Some("b"), "only", b"p").unwrap();
    assert_eq!(db.read(None, Some("b"), "only").unwrap(), b"p");
    // Versions, listings and conditions are the last layer's.
    let (value, version) = db.read_ex(None, Some("b"), "k", true).unwrap();
    assert_eq!(value, b"v1");
    assert_eq!(
        db.read_ex(Some("primary"), Some("b"), "k", false)
            .unwrap()
            .1,
        version
    );
    let if_absent = WriteOptions {
        if_absent: true,
        ..WriteOptions::default()
    };
    db.write(Some("cache"), Some("b"), "stale", b"old").unwrap();
    db.write_ex(None, Some("b"), "stale", b"new", &if_absent)
        .unwrap();
    assert_eq!(read(&db, "cache", "stale").as_deref(), Some(&b"new"[..]));
    let keys: Vec<String> = (db.list(None, Some("b"), None, None, 10).unwrap().entries)
        .into_iter()
        .map(|e| e.key)
        .collect();
    assert_eq!(keys, ["k", "only", "stale"]);

    // A delete goes everywhere, also where only an earlier layer has it.
    db.write(Some("cache"), Some("b"), "cache-only", b"x")
        .unwrap();
    assert_eq!(
        db.delete(None, Some("b"), "cache-only")
            .unwrap_err()
            .status(),
        Status::NotFound
    );
    assert_eq!(read(&db, "cache", "cache-only"), None);
    db.delete(None, Some("b"), "k").unwrap();
    assert_eq!(
        (read(&db, "cache", "k"), read(&db, "primary", "k")),
        (None, None)
    );

    // Queued writes go through the outbox to every layer.
    db.write_queued(None, Some("b"), "queued", b"q").unwrap();
    db.flush().unwrap();
    assert_eq!(read(&db, "cache", "queued").as_deref(), Some(&b"q"[..]));
    assert_eq!(read(&db, "primary", "queued").as_deref(), Some(&b"q"[..]));
    db.close().unwrap();
}

/// A layer that refuses a write reports it, after the layers behind it
/// took the write: the last first.
#[test]
fn a_failing_layer_is_reported_and_the_layers_after_it_hold_the_write() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(
        dir.path(),
        "docs",
        &[
            ("cache", LOCAL),
            ("primary", LOCAL),
            ("frozen", r#"{"engine": "read_only", "of": "cache"}"#),
            (
                "docs",
                r#"{"engine": "tiered", "layers": ["frozen", "primary"]}"#,
            ),
            (
                "upside",
                r#"{"engine": "tiered", "layers": ["primary", "frozen"]}"#,
            ),
        ],
    );
    let err = db.write(None, Some("b"), "k", b"v").unwrap_err();
    assert_eq!(err.status(), Status::Unsupported);
    assert!(err.to_string().contains("frozen is read-only"), "{err}");
    assert_eq!(read(&db, "primary", "k").as_deref(), Some(&b"v"[..]));
    assert_eq!(read(&db, "cache", "k"), None);
    // With the refusing layer last, nothing is written anywhere.
    let err = db.write(Some("upside"), Some("b"), "k2", b"v").unwrap_err();
    assert_eq!(err.status(), Status::Unsupported);
    assert_eq!(
        (read(&db, "primary", "k2"), read(&db, "cache", "k2")),
        (None, None)
    );
    db.close().unwrap();
}

/// Changes to one key from many threads reach the layers in one order:
/// the first layer ends with what the last holds. Rounds of 16 threads
/// changing the key at once, then a look at both layers.
#[test]
fn racing_changes_leave_every_layer_with_the_same_value() {
    let dir = tempfile::tempdir().unwrap();
    let db = cache_and_primary(dir.path());
    // Increments keep the key's deadline, and so refresh only a layer that
    // holds the key: this one is written first.
    db.write(None, Some("b"), "n", b"0").unwrap();
    const THREADS: usize = 16;
    const ROUNDS: usize = 300;
    let barrier = std::sync::Barrier::new(THREADS);
    let stale = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (db, barrier, stale) = (&db, &barrier, &stale);
            s.spawn(move || {
                for round in 0..ROUNDS {
                    barrier.wait();
                    match t % 2 {
                        0 => drop(db.increment(None, Some("b"), "n", 1, 1, false).unwrap()),
                        _ => db
                            .write(None, Some("b"), "w", format!("{t}-{round}").as_bytes())
                            .unwrap(),
                    }
                    if barrier.wait().is_leader() {
                        for key in ["n", "w"] {
                            if read(db, "cache", key) != read(db, "primary", key) {
                                stale.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            }
                        }
                    }
                }
            });
        }
    });
    assert_eq!(stale.into_inner(), 0, "rounds that left the cache behind");
    let total = (THREADS / 2 * ROUNDS).to_string();
    assert_eq!(read(&db, "cache", "n"), Some(total.into_bytes()));
    db.close().unwrap();
}

#[test]
fn read_only_and_write_only_refuse_half_of_the_calls() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(
        dir.path(),
        "store",
        &[
            ("store", LOCAL),
            ("archive", r#"{"engine": "read_only", "of": "store"}"#),
            ("inbox", r#"{"engine": "write_only", "of": "store"}"#),
        ],
    );
    db.write(None, Some("b"), "k", b"v").unwrap();
    let unsupported = |result: tetherdb::Result<()>, layer: &str| {
        let err = result.unwrap_err();
        assert_eq!(err.status(), Status::Unsupported, "{err}");
        assert!(err.to_string().contains(layer), "{err}");
    };
    let archive = Some("archive");
    assert_eq!(db.read(archive, Some("b"), "k").unwrap(), b"v");
    assert_eq!(
        db.list(archive, Some("b"), None, None, 5)
            .unwrap()
            .entries
            .len(),
        1
    );
    unsupported(
        db.write(archive, Some("b"), "k", b"x"),
        "archive is read-only",
    );
    unsupported(
        db.write_queued(archive, Some("b"), "k", b"x"),
        "archive is read-only",
    );
    unsupported(db.delete(archive, Some("b"), "k"), "archive");
    unsupported(db.update(archive, Some("b"), "k", b"x"), "archive");
    unsupported(
        db.increment(archive, Some("b"), "n", 1, 1, false).map(drop),
        "archive",
    );
    unsupported(db.touch(archive, Some("b"), "k", 1000), "archive");
    unsupported(
        db.delete_prefix(archive, Some("b"), None).map(drop),
        "archive",
    );
    assert_eq!(db.read(None, Some("b"), "k").unwrap(), b"v");

    let inbox = Some("inbox");
    db.write(inbox, Some("b"), "k", b"w").unwrap();
    db.write_queued(inbox, Some("b"), "q", b"q").unwrap();
    db.flush().unwrap();
    assert_eq!(
        db.increment(inbox, Some("b"), "n", 2, 1, false).unwrap(),
        Some(2)
    );
    unsupported(
        db.read(inbox, Some("b"), "k").map(drop),
        "inbox is write-only",
    );
    unsupported(db.read_ex(inbox, Some("b"), "k", true).map(drop), "inbox");
    unsupported(db.list(inbox, Some("b"), None, None, 5).map(drop), "inbox");
    unsupported(
        db.counter_total(inbox, Some("b"), "n", 1).map(drop),
        "inbox",
    );
    assert_eq!(db.read(None, Some("b"), "k").unwrap(), b"w");
    assert_eq!(db.read(None, Some("b"), "q").unwrap(), b"q");
    db.close().unwrap();
}

#[test]
fn random_spreads_calls_over_its_members() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(
        dir.path(),
        "spread",
        &[
            ("a", LOCAL),
            ("b", LOCAL),
            ("spread", r#"{"engine": "random", "of": ["a", "b"]}"#),
        ],
    );
    for i in 0..100 {
        db.write(None, Some("b"), &format!("k{i:03}"), b"v")
            .unwrap();
    }
    let count = |backend| {
        db.list(Some(backend), Some("b"), None, None, 1000)
            .unwrap()
            .entries
            .len()
    };
    let (a, b) = (count("a"), count("b"));
    assert_eq!(a + b, 100);
    // Each of 100 writes went to one member at random: both got some.
    assert!(a > 0 && b > 0, "a {a}, b {b}");
    db.close().unwrap();
}

/// The seed's example: a local cache over a random choice of read-only
/// replicas. Reads are served; writes are refused by the last layer, so
/// nothing reaches the cache either.
#[test]
fn layers_compose() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(
        dir.path(),
        "docs",
        &[
            ("cache", LOCAL),
            ("replica_a", LOCAL),
            ("replica_b", LOCAL),
            ("ro_a", r#"{"engine": "read_only", "of": "replica_a"}"#),
            ("ro_b", r#"{"engine": "read_only", "of": "replica_b"}"#),
            (
                "replicas",
                r#"{"engine": "random", "of": ["ro_a", "ro_b"]}"#,
            ),
            (
                "docs",
                r#"{"engine": "tiered", "layers": ["cache", "replicas"]}"#,
            ),
        ],
    );
    for replica in ["replica_a", "replica_b"] {
        db.write(Some(replica), Some("b"), "k", b"v").unwrap();
    }
    for _ in 0..10 {
        assert_eq!(db.read(None, Some("b"), "k").unwrap(), b"v");
    }
    let err = db.write(None, Some("b"), "k", b"x").unwrap_err();
    assert_eq!(err.status(), Status::Unsupported, "{err}");
    assert_eq!(read(&db, "cache", "k"), None);
    db.close().unwrap();
}

/// One handle over two etcd clusters, each under its own name: calls go
/// to the one named, and an error names the one that failed.
#[test]
fn one_handle_holds_two_etcd_clusters() {
    let (Some(primary), Some(mut replica)) = (Etcd::start(), Etcd::start()) else {
        return;
    };
    let json = format!(
        r#"{{"logging": "none", "default_backend": "primary",
            "queue_batch": {{"durable": false}},
            "backends": {{
              "primary": {{"engine": "etcd", "endpoints": ["{}"], "timeout": 1}},
              "replica": {{"engine": "etcd", "endpoints": ["{}"], "timeout": 1}}
            }}}}"#,
        primary.endpoint(),
        replica.endpoint()
    );
    let db = Db::open_json(Some(&json)).unwrap();
    db.write(None, Some("b"), "k", b"p").unwrap();
    db.write(Some("replica"), Some("b"), "k", b"r").unwrap();
    assert_eq!(primary.get("b:k").as_deref(), Some(&b"p"[..]));
    assert_eq!(replica.get("b:k").as_deref(), Some(&b"r"[..]));
    let err = db.read(Some("replica"), Some("b"), "absent").unwrap_err();
    assert_eq!(err.to_string(), "replica: key \"b:absent\" not found");
    replica.pause();
    let err = db.read(Some("replica"), Some("b"), "k").unwrap_err();
    assert_eq!(err.status(), Status::Unavailable);
    assert!(err.to_string().starts_with("replica: "), "{err}");
    assert_eq!(db.read(None, Some("b"), "k").unwrap(), b"p");
    db.close().unwrap();
}

/// examples/config/tiered.json, the configuration docs/layers.md shows,
/// on etcd servers started here: reads of `docs` come from the cache or a
/// replica; writes go through `inbox` to the primary and the cache.
#[test]
fn the_documented_tiered_example_runs() {
    let (Some(primary), Some(replica_a), Some(replica_b)) =
        (Etcd::start(), Etcd::start(), Etcd::start())
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let example = std::fs::read_to_string("examples/config/tiered.json").unwrap();
    let json = example
        .replace("127.0.0.1:2379", &primary.endpoint())
        .replace("127.0.0.1:22379", &replica_a.endpoint())
        .replace("127.0.0.1:32379", &replica_b.endpoint())
        .replace("tetherdb_cache", dir.path().join("cache").to_str().unwrap())
        .replace(
            r#""default_backend""#,
            r#""logging": "none", "queue_batch": {"durable": false}, "default_backend""#,
        );
    assert_ne!(json, example);
    let db = Db::open_json(Some(&json)).unwrap();
    // Replicas hold what the primary's followers would.
    for replica in [&replica_a, &replica_b] {
        let put = replica.etcdctl(&["put", "b:k", "replicated"]);
        assert!(put.status.success(), "{put:?}");
    }
    assert_eq!(db.read(None, Some("b"), "k").unwrap(), b"replicated");
    let err = db.write(None, Some("b"), "k", b"x").unwrap_err();
    assert_eq!(err.status(), Status::Unsupported, "{err}");
    db.write(Some("inbox"), Some("b"), "k", b"new").unwrap();
    assert_eq!(primary.get("b:k").as_deref(), Some(&b"new"[..]));
    // The cache now holds it, so `docs` reads it there.
    assert_eq!(db.read(None, Some("b"), "k").unwrap(), b"new");
    db.close().unwrap();
}
