//! After a handle is closed, no thread started for it is left running.
//! A test binary of its own, so that no other test's threads come and go.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The threads of this process: id and name.
fn threads() -> BTreeMap<u32, String> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            let id = path.file_name().unwrap().to_str().unwrap().parse().unwrap();
            let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
            (id, name.trim().to_owned())
        })
        .collect()
}

#[test]
fn close_leaves_no_thread_but_sleds_io_pool() {
    let dir = tempfile::tempdir().unwrap();
    // With etcd, the handle has a tokio runtime and a worker per backend.
    let etcd = common::etcd::Etcd::start();
    let mut json = common::config(dir.path(), r#"{"size": 10, "interval": 0.01}"#);
    if let Some(etcd) = &etcd {
        json = json.replacen('{', &format!(r#"{{"etcd": {}, "#, etcd.section("")), 1);
    }
    let backends: &[&str] = match etcd {
        Some(_) => &["local", "etcd"],
        None => &["local"],
    };
    let before = threads();
    for _ in 0..3 {
        let db = tetherdb::Db::open_json(Some(&json)).unwrap();
        for backend in backends {
            for i in 0..1_000 {
                db.write_queued(Some(backend), Some("t"), &format!("k{i}"), b"v")
                    .unwrap();
            }
            db.write(Some(backend), None, "direct", b"v").unwrap();
        }
        db.flush().unwrap();
        db.close().unwrap();
    }
    let left = || -> Vec<String> {
        threads()
            .into_iter()
            .filter(|(id, name)| !before.contains_key(id) && !name.starts_with("sled-io"))
            .map(|(id, name)| format!("{id} {name}"))
            .collect()
    };
    // A joined thread can linger in /proc/self/task for a moment: the
    // kernel wakes the joiner before it has released the task. A thread
    // still running stays; the bound only keeps a leak from hanging CI.
    let give_up = Instant::now() + Duration::from_secs(10);
    while !left().is_empty() && Instant::now() < give_up {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(left().is_empty(), "threads left after close: {:?}", left());
}
