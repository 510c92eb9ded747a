//! The durable outbox (`queue_batch.durable`, the default): queued writes
//! a close could not apply during an outage stay on disk, and the next
//! handle applies them — each exactly once, each key's in order — once the
//! backend is back, with batches in flight side by side (the default); and
//! the outbox grows no further than `queue_batch.outbox_max_bytes`.
//! Crashes (`kill -9`) are tests/crash.rs.

mod common;

use std::path::Path;

use common::etcd::outbox_path::new_outbox_path;
use common::etcd::Etcd;
use common::wait_until;
use tetherdb::{Db, Status};

/// Queued writes of the outage tests: two rounds over the same keys, so
/// that each key's last value tells the order, and each key's etcd version
/// (or the puts the proxy saw) tells whether a write was lost or repeated.
const KEYS: usize = 5_000;
const ROUNDS: usize = 2;

fn queue_rounds(db: &Db) {
    for round in 1..=ROUNDS {
        for i in 0..KEYS {
            db.write_queued(None, Some("o"), &key(i), round.to_string().as_bytes())
                .unwrap();
        }
    }
}

fn key(i: usize) -> String {
    format!("k{i:04}")
}

/// Closes during the outage: the writes are reported as not applied, and
/// kept.
fn close_during_the_outage(db: Db, outbox: &Path) {
    let err = db.close().unwrap_err();
    assert_eq!(err.status(), Status::Unavailable, "{err}");
    let message = err.to_string();
    let total = KEYS * ROUNDS;
    assert!(
        message.contains(&format!("{total} queued write(s) not applied yet"))
            && message.contains(&format!("stay in the outbox {}", outbox.display())),
        "{message}"
    );
}

#[test]
fn an_etcd_outage_across_a_close_loses_no_queued_write_and_repeats_none() {
    let Some(mut etcd) = Etcd::start() else {
        return;
    };
    let outbox = new_outbox_path();
    let queue_batch = format!(r#"{{"size": 100, "interval": 0.05, "outbox_path": {outbox:?}}}"#);
    let config = etcd.config(&queue_batch, r#""timeout": 0.5"#);
    let db = Db::open_json(Some(&config)).unwrap();
    etcd.pause();
    queue_rounds(&db);
    close_during_the_outage(db, &outbox);

    etcd.resume();
    let db = Db::open_json(Some(&config)).unwrap();
    wait_until(|| db.flush().is_ok());
    let kvs = etcd.kvs("o:");
    assert_eq!(kvs.len(), KEYS);
    for (i, kv) in kvs.iter().enumerate() {
        assert_eq!(kv.key, format!("o:{}", key(i)));
        assert_eq!(kv.value, ROUNDS.to_string().as_bytes(), "{kv:?}");
        // A batch (a few hundred writes) never holds a key twice, so
        // nothing collapses: each queued write is one put. Batches in flight
        // land in any order, but each key's value is its last round's.
        assert_eq!(
            kv.version, ROUNDS as u64,
            "{kv:?}: a write lost or repeated"
        );
    }
    let stats = db.stats();
    let etcd_stats = &stats["backends"]["etcd"];
    assert_eq!(etcd_stats["applied"], (KEYS * ROUNDS) as u64, "{stats}");
    assert_eq!(etcd_stats["pending"], 0, "{stats}");
    assert_eq!(stats["outbox"]["bytes"], 0, "{stats}");
    db.close().unwrap();
}

#[cfg(feature = "dynamodb")]
#[test]
fn a_dynamodb_outage_across_a_close_loses_no_queued_write_and_repeats_none() {
    use common::moto;

    let Some(server) = moto::own_server() else {
        return;
    };
    // The outage is the proxy's: the destination, its address, stays the
    // same, as the outbox demands. It records every put that reaches moto.
    let proxy = moto::Proxy::start(server.addr);
    let outbox = new_outbox_path();
    let table = moto::table("outbox");
    let queue_batch = format!(r#"{{"size": 25, "interval": 0.05, "outbox_path": {outbox:?}}}"#);
    let config = |url: &str, timeout: f64| {
        let extra = format!(r#", "timeout": {timeout}"#);
        moto::config(url, &table, &extra, &queue_batch)
    };
    // A new emulator's first answers can be slow: the table is made with a
    // long timeout, the outage met with a short one.
    Db::open_json(Some(&config(&proxy.url(), 10.0)))
        .unwrap()
        .close()
        .unwrap();
    let db = Db::open_json(Some(&config(&proxy.url(), 0.5))).unwrap();
    proxy.state().down = true;
    queue_rounds(&db);
    close_during_the_outage(db, &outbox);
    assert!(proxy.state().batch_written.is_empty());

    proxy.state().down = false;
    let db = Db::open_json(Some(&config(&proxy.url(), 10.0))).unwrap();
    wait_until(|| db.flush().is_ok());
    // Each write reached DynamoDB once (batches in flight land in any
    // order), and each key's last round landed last.
    let mut expected: Vec<String> = (0..ROUNDS)
        .flat_map(|_| (0..KEYS).map(|i| format!("o:{}", key(i))))
        .collect();
    let mut written = proxy.state().batch_written.clone();
    expected.sort();
    written.sort();
    assert!(
        written == expected,
        "not every queued write reached DynamoDB once"
    );
    let mut values = Vec::new();
    let mut after = None;
    loop {
        let page = db
            .list(None, Some("o"), None, after.as_deref(), 1000)
            .unwrap();
        values.extend(page.entries.into_iter().map(|e| e.value));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(values.len(), KEYS);
    assert!(values.iter().all(|v| v == ROUNDS.to_string().as_bytes()));
    db.close().unwrap();
}

#[test]
fn full_outbox_refuses_queued_writes() {
    // Nothing listens on port 1: etcd is unreachable from the start.
    let outbox = new_outbox_path();
    let config = format!(
        r#"{{"logging": "none",
             "queue_batch": {{"outbox_path": {outbox:?}, "outbox_max_bytes": 1048576}},
             "etcd": {{"endpoints": ["127.0.0.1:1"], "timeout": 0.5}}}}"#
    );
    let value = vec![b'x'; 64 << 10];
    let db = Db::open_json(Some(&config)).unwrap();
    let mut queued = 0;
    let refused = loop {
        match db.write_queued(None, Some("f"), &key(queued), &value) {
            Ok(()) => queued += 1,
            Err(err) => break err,
        }
        assert!(queued <= 16, "1 MiB holds at most 16 values of 64 KiB");
    };
    assert_eq!(refused.status(), Status::Unavailable, "{refused}");
    assert!(
        refused.to_string().contains("is full")
            && refused.to_string().contains("the write is not queued"),
        "{refused}"
    );
    assert_eq!(queued, 15, "records carry a key and 12 bytes besides");
    assert_eq!(db.stats()["backends"]["etcd"]["pending"], queued as u64);
    // The writes before it stay, for the next handle.
    assert_eq!(db.close().unwrap_err().status(), Status::Unavailable);
    let reopened = format!(
        r#"{{"logging": "none",
             "queue_batch": {{"outbox_path": {outbox:?}, "autostart": false}},
             "etcd": {{"endpoints": ["127.0.0.1:1"], "timeout": 0.5}}}}"#
    );
    let db = Db::open_json(Some(&reopened)).unwrap();
    assert_eq!(db.stats()["backends"]["etcd"]["pending"], queued as u64);
    assert!(db.stats()["outbox"]["bytes"].as_u64().unwrap() > 15 * (64 << 10));
}

#[test]
fn stats_show_an_outage_building_up() {
    let outbox = new_outbox_path();
    let config = format!(
        r#"{{"logging": "none", "queue_batch": {{"size": 10, "outbox_path": {outbox:?}}},
             "etcd": {{"endpoints": ["127.0.0.1:1"], "timeout": 0.5}}}}"#
    );
    let db = Db::open_json(Some(&config)).unwrap();
    for i in 0..100 {
        db.write_queued(None, Some("s"), &key(i), b"v").unwrap();
    }
    wait_until(|| db.stats()["backends"]["etcd"]["retried"].as_u64() > Some(0));
    let stats = db.stats();
    let etcd = &stats["backends"]["etcd"];
    assert_eq!(etcd["queued"], 100, "{stats}");
    assert_eq!(etcd["pending"], 100, "{stats}");
    assert_eq!(etcd["applied"], 0, "{stats}");
    assert!(etcd["batches"].as_u64() >= Some(2), "{stats}");
    assert!(etcd["oldest_pending_ms"].as_u64() > Some(0), "{stats}");
    assert!(etcd["unreachable_ms"].as_u64() > Some(0), "{stats}");
    assert!(etcd["last_error"].as_str().is_some(), "{stats}");
    assert_eq!(stats["outbox"]["path"], outbox.display().to_string());
    assert_eq!(stats["running"], true);
    let _ = db.close();
}

/// With `sync`, each queued write returns once it is on disk, and writers
/// waiting at the same moment share one fsync.
#[test]
fn with_sync_writers_share_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let db = common::open(dir.path(), r#"{"sync": true}"#);
    let (threads, writes) = (8, 200);
    std::thread::scope(|scope| {
        for t in 0..threads {
            let db = &db;
            scope.spawn(move || {
                for i in 0..writes {
                    let key = format!("{t}-{i}");
                    db.write_queued(None, Some("s"), &key, b"v").unwrap();
                }
            });
        }
    });
    let syncs = db.stats()["outbox"]["syncs"].as_u64().unwrap();
    let total = (threads * writes) as u64;
    eprintln!("{total} queued writes with sync took {syncs} fsyncs");
    assert!(syncs >= 1, "no fsync");
    assert!(syncs < total, "every write ran its own fsync");
    db.close().unwrap();
    let db = common::open(dir.path(), "{}");
    assert_eq!(common::count(&db, "s"), total as usize);
}

/// Writes queued for one cluster, left in the outbox by a close during its
/// outage, are never sent to another cluster that a later configuration
/// names: the open fails, naming both; deleting the segments discards them.
#[test]
fn an_outbox_never_delivers_to_another_cluster() {
    let Some(etcd) = Etcd::start() else {
        return;
    };
    let outbox = new_outbox_path();
    let queue_batch = format!(r#"{{"outbox_path": {outbox:?}}}"#);
    // Nothing listens on port 1 of loopback.
    let gone = format!(
        r#"{{"logging": "none", "queue_batch": {queue_batch},
             "etcd": {{"endpoints": ["127.0.0.1:1"], "timeout": 0.3}}}}"#
    );
    let db = Db::open_json(Some(&gone)).unwrap();
    for i in 0..10 {
        db.write_queued(None, Some("o"), &key(i), b"for the first cluster")
            .unwrap();
    }
    assert_eq!(db.close().unwrap_err().status(), Status::Unavailable);

    let other = etcd.config(&queue_batch, "");
    let err = Db::open_json(Some(&other)).err().unwrap();
    assert_eq!(err.status(), Status::Config, "{err}");
    let message = err.to_string();
    assert!(
        message.contains("10 queued write(s)")
            && message.contains("127.0.0.1:1")
            && message.contains(&etcd.endpoint()),
        "{message}"
    );
    assert_eq!(etcd.count("o:"), 0, "a write reached the other cluster");

    // Discarded as the message says, the outbox serves the new cluster.
    for entry in std::fs::read_dir(&outbox).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "log") {
            std::fs::remove_file(path).unwrap();
        }
    }
    let db = Db::open_json(Some(&other)).unwrap();
    db.write_queued(None, Some("o"), "new", b"1").unwrap();
    db.close().unwrap();
    assert_eq!(etcd.count("o:"), 1);
}
