use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::AtomicBool;

use super::*;
use crate::backend::{Access, Condition, Listing, Outcome, Versioned};
use crate::error::Status;
use crate::log::Level;

/// A backend that only counts its flushes; the outbox calls nothing else.
struct Sink {
    destination: String,
    flushes: AtomicU64,
    flush_fails: AtomicBool,
}

impl Backend for Sink {
    fn name(&self) -> &'static str {
        "sink"
    }
    fn write_if(&self, _: &str, _: &[u8], _: Condition, _: crate::backend::Ttl) -> Result<Outcome> {
        unreachable!()
    }
    fn read_versioned(&self, _: &str, _: bool, _: Access) -> Result<Option<Versioned>> {
        unreachable!()
    }
    fn delete_if(&self, _: &str, _: Condition) -> Result<Outcome> {
        unreachable!()
    }
    fn list(&self, _: &str, _: Option<&str>, _: usize, _: bool) -> Result<Listing> {
        unreachable!()
    }
    fn delete_prefix(&self, _: &str, _: bool) -> Result<u64> {
        unreachable!()
    }
    fn write_batch(&self, _: &[Write]) -> Result<()> {
        unreachable!()
    }
    fn flush(&self) -> Result<()> {
        self.flushes.fetch_add(1, Ordering::SeqCst);
        match self.flush_fails.load(Ordering::SeqCst) {
            true => Err(Error::io("sink", "", "injected flush failure")),
            false => Ok(()),
        }
    }
    fn destination(&self) -> String {
        self.destination.clone()
    }
}

fn sink(destination: &str) -> Arc<Sink> {
    Arc::new(Sink {
        destination: destination.into(),
        flushes: AtomicU64::new(0),
        flush_fails: AtomicBool::new(false),
    })
}

fn open(dir: &Path, backend: &Arc<Sink>, max_bytes: u64) -> Result<Outbox> {
    let backends = [backend.clone() as Arc<dyn Backend>];
    Outbox::open(dir, max_bytes, &backends, Logger::new(Level::None))
}

fn write(key: &str, value_len: usize) -> Write {
    Write {
        key: key.into(),
        value: vec![b'v'; value_len],
        deadline: None,
    }
}

fn keys(records: &[Record]) -> Vec<String> {
    records.iter().map(|r| r.write.key.clone()).collect()
}

#[test]
fn writes_come_back_in_order_and_only_done_ones_are_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox");
    let backend = sink("here");
    {
        let outbox = open(&path, &backend, 1 << 20).unwrap();
        let log = outbox.lane(0);
        assert_eq!(log.held(), 0..0);
        for seq in 0..5 {
            log.stage(seq, &write(&format!("k{seq}"), 10)).unwrap();
        }
        assert_eq!(keys(&log.read(1..3, u64::MAX).unwrap()), ["k1", "k2"]);
        assert_eq!(keys(&log.read(3..5, u64::MAX).unwrap()), ["k3", "k4"]);
        assert_eq!(keys(&log.read(0..2, u64::MAX).unwrap()), ["k0", "k1"]);
        let size = write_size(&write("k0", 10));
        log.applied(2, 2 * size);
        let flushes = backend.flushes.load(Ordering::SeqCst);
        outbox.checkpoint().unwrap();
        assert!(
            backend.flushes.load(Ordering::SeqCst) > flushes,
            "the done mark went to disk without the backend's flush"
        );
        assert_eq!(outbox.bytes(), 3 * size);
    }
    let outbox = open(&path, &backend, 1 << 20).unwrap();
    let log = outbox.lane(0);
    assert_eq!(log.held(), 2..5);
    assert_eq!(outbox.bytes(), 3 * write_size(&write("k0", 10)));
    let records = log.read(2..5, u64::MAX).unwrap();
    assert_eq!(keys(&records), ["k2", "k3", "k4"]);
    assert_eq!(records[0].seq, 2);
    assert!(records[0].queued_at.elapsed().unwrap() < Duration::from_secs(3600));
    // Numbering goes on after the writes left.
    log.stage(5, &write("k5", 1)).unwrap();
    assert_eq!(keys(&log.read(5..6, u64::MAX).unwrap()), ["k5"]);
}

/// Polls `done` for at most a minute: a hang check, not a timing one.
fn eventually(done: impl Fn() -> bool) {
    let give_up = std::time::Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(std::time::Instant::now() < give_up, "gave up waiting");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn the_outbox_thread_syncs_and_forgets_without_a_flush() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = open(&dir.path().join("outbox"), &sink("here"), 1 << 20).unwrap();
    let log = outbox.lane(0);
    // Written, but not synced, by a writer whose buffer was full.
    let position = log.stage(0, &write("k", 10)).unwrap();
    log.persist(false).unwrap();
    eventually(|| locked(&log.files).synced >= position);
    // Applied, then idle: the done mark reaches the disk, the bytes go.
    log.applied(1, write_size(&write("k", 10)));
    eventually(|| outbox.bytes() == 0);
    eventually(|| locked(&log.files).done_durable == 1);
}

#[test]
fn without_the_backends_flush_nothing_is_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox");
    let backend = sink("here");
    {
        let outbox = open(&path, &backend, 1 << 20).unwrap();
        let log = outbox.lane(0);
        log.stage(0, &write("k0", 1)).unwrap();
        log.applied(1, write_size(&write("k0", 1)));
        backend.flush_fails.store(true, Ordering::SeqCst);
        assert_eq!(outbox.checkpoint().unwrap_err().status(), Status::Io);
    }
    backend.flush_fails.store(false, Ordering::SeqCst);
    let outbox = open(&path, &backend, 1 << 20).unwrap();
    assert_eq!(
        outbox.lane(0).held(),
        0..1,
        "applied, but maybe not durably"
    );
}

#[test]
fn a_frame_cut_short_by_a_crash_ends_the_log_and_the_log_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox");
    let backend = sink("here");
    {
        let outbox = open(&path, &backend, 1 << 20).unwrap();
        let log = outbox.lane(0);
        for seq in 0..3 {
            log.stage(seq, &write(&format!("k{seq}"), 100)).unwrap();
        }
        log.persist(true).unwrap();
    }
    let segment = segment_path(&path, "sink", 0);
    let len = fs::metadata(&segment).unwrap().len();
    // The last write loses its last 10 bytes.
    OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap()
        .set_len(len - 10)
        .unwrap();
    {
        let outbox = open(&path, &backend, 1 << 20).unwrap();
        let log = outbox.lane(0);
        assert_eq!(log.held(), 0..2);
        log.stage(2, &write("k2-again", 1)).unwrap();
        log.persist(true).unwrap();
    }
    let outbox = open(&path, &backend, 1 << 20).unwrap();
    let log = outbox.lane(0);
    assert_eq!(log.held(), 0..3);
    assert_eq!(
        keys(&log.read(0..3, u64::MAX).unwrap()),
        ["k0", "k1", "k2-again"]
    );
}

#[test]
fn writes_for_another_destination_are_not_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox");
    {
        let outbox = open(&path, &sink("cluster A"), 1 << 20).unwrap();
        outbox.lane(0).stage(0, &write("k", 1)).unwrap();
    }
    let error = open(&path, &sink("cluster B"), 1 << 20).err().unwrap();
    assert_eq!(error.status(), Status::Config);
    let message = error.to_string();
    assert!(
        message.contains("cluster A") && message.contains("cluster B"),
        "{message}"
    );
    // Drained with the first configuration, it serves the second.
    {
        let a = sink("cluster A");
        let outbox = open(&path, &a, 1 << 20).unwrap();
        let log = outbox.lane(0);
        assert_eq!(log.held(), 0..1);
        log.applied(1, write_size(&write("k", 1)));
    }
    let outbox = open(&path, &sink("cluster B"), 1 << 20).unwrap();
    assert_eq!(outbox.lane(0).held(), 1..1);
}

#[test]
fn a_full_outbox_refuses_a_write_and_one_too_large_for_it_is_too_large() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = open(&dir.path().join("outbox"), &sink("here"), 1000).unwrap();
    let log = outbox.lane(0);
    log.stage(0, &write("k", 800)).unwrap();
    let full = log.stage(1, &write("k", 800)).unwrap_err();
    assert_eq!(full.status(), Status::Unavailable);
    assert!(full.to_string().contains("is full"), "{full}");
    let huge = log.stage(1, &write("k", 2000)).unwrap_err();
    assert_eq!(huge.status(), Status::TooLarge);
    assert_eq!(outbox.bytes(), write_size(&write("k", 800)));
}

#[test]
fn segments_whose_writes_are_done_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox");
    let outbox = open(&path, &sink("here"), 1 << 30).unwrap();
    let log = outbox.lane(0);
    let big = write("k", 1 << 20);
    for seq in 0..20 {
        log.stage(seq, &big).unwrap();
        log.persist(false).unwrap();
    }
    let segments = || segment_seqs(&path, "sink").unwrap().len();
    assert!(segments() >= 2, "no new segment after 20 MiB");
    assert_eq!(log.read(15..16, u64::MAX).unwrap()[0].seq, 15);
    log.applied(20, 20 * write_size(&big));
    outbox.checkpoint().unwrap();
    assert_eq!(segments(), 1);
    assert_eq!(outbox.bytes(), 0);
}

/// Writes an outbox as TetherDB kept it before its own log: a sled
/// store, one tree per backend.
fn old_outbox(dir: &Path, backend: &str, keys: &[&str]) {
    let old = sled::open(dir).unwrap();
    let tree = old.open_tree(format!("queued:{backend}")).unwrap();
    for (seq, key) in keys.iter().enumerate() {
        let mut record = 1_700_000_000_000u64.to_be_bytes().to_vec();
        record.extend_from_slice(&(key.len() as u32).to_be_bytes());
        record.extend_from_slice(key.as_bytes());
        record.extend_from_slice(b"value");
        tree.insert((seq as u64 + 7).to_be_bytes(), record).unwrap();
    }
    old.flush().unwrap();
    drop(tree);
    drop(old);
    drop(crate::backend::local::AwaitUnlock::new(dir));
}

#[test]
fn writes_an_earlier_sled_outbox_held_move_into_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox");
    old_outbox(&path, "sink", &["b:one", "b:two", "b:three"]);
    let outbox = open(&path, &sink("here"), 1 << 20).unwrap();
    let log = outbox.lane(0);
    assert_eq!(log.held(), 7..10);
    let records = log.read(7..10, u64::MAX).unwrap();
    assert_eq!(keys(&records), ["b:one", "b:two", "b:three"]);
    assert_eq!(records[2].write.value, b"value");
    assert!(!path.join("db").exists() && !path.join("conf").exists());
    drop(outbox);
    let outbox = open(&path, &sink("here"), 1 << 20).unwrap();
    assert_eq!(outbox.lane(0).held(), 7..10, "moved once");
}

#[test]
fn an_earlier_sled_outbox_for_an_unconfigured_backend_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox");
    old_outbox(&path, "etcd", &["b:one"]);
    let error = open(&path, &sink("here"), 1 << 20).err().unwrap();
    assert_eq!(error.status(), Status::Config);
    assert!(error.to_string().contains("backend etcd"), "{error}");
    assert!(path.join("db").exists(), "the writes were dropped");
}

#[test]
fn the_outbox_is_private_to_its_owner() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a/outbox");
    let _outbox = open(&path, &sink("here"), 1 << 20).unwrap();
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o700);
    assert_eq!(mode(&dir.path().join("a")), 0o700);
    for entry in fs::read_dir(&path).unwrap() {
        assert_eq!(mode(&entry.unwrap().path()), 0o600);
    }
}

#[test]
fn one_handle_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox");
    let _first = open(&path, &sink("here"), 1 << 20).unwrap();
    let second = open(&path, &sink("here"), 1 << 20).err().unwrap();
    assert!(second.to_string().contains("outbox_path"), "{second}");
}
