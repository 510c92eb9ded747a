//! Copying a local store to etcd: `Db::copy` (what `tether_copy` runs)
//! beside `etcdctl` fed the same keys, in transactions of 128 puts from 8
//! processes at a time. Prints keys per second of each, and the library
//! process's peak RSS during its copy (VmHWM, reset before it), to show
//! that memory does not grow with the store.
//!
//! Run with `cargo bench -p tetherdb-bench --bench copy`;
//! `TETHERDB_COPY_KEYS` sets the number of keys (default 1,000,000). One
//! run of each side: a million keys take minutes. Asserts nothing about
//! time.

#[path = "../../../tests/common/etcd.rs"]
#[allow(dead_code)]
mod etcd;

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use tetherdb::{CopyOptions, Db};
use tetherdb_bench::{number, preamble};

/// etcdctl's side: puts per `etcdctl txn`, and processes at a time.
const TXN: usize = 128;
const PROCESSES: usize = 8;
const VALUE: [u8; 100] = [b'v'; 100];

fn main() {
    let n: usize = std::env::var("TETHERDB_COPY_KEYS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let Some(server) = etcd::Etcd::start() else {
        eprintln!("etcd is not installed: install the Debian packages etcd-server and etcd-client");
        std::process::exit(1);
    };
    preamble("copying a local store to etcd: Db::copy (tether_copy) / etcdctl txn");
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        r#"{{"logging": "none", "default_backend": "local", "queue_batch": {{"durable": false}},
            "local": {{"filepath": {:?}}}, "etcd": {}}}"#,
        dir.path().join("store").to_str().unwrap(),
        server.section(r#""timeout": 30"#)
    );
    let db = Db::open_json(Some(&config)).unwrap();
    let started = Instant::now();
    for i in 0..n {
        db.write(None, Some("copy"), &key(i), &VALUE).unwrap();
    }
    db.flush().unwrap();
    println!(
        "{n} keys \"copy:key-%07d\" with 100-byte values written to local in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let before = rss_kib("VmRSS");
    reset_peak_rss();
    let started = Instant::now();
    let report = db
        .copy("local", "etcd", Some("copy"), None, CopyOptions::default())
        .unwrap();
    let library = started.elapsed().as_secs_f64();
    let peak = rss_kib("VmHWM");
    assert_eq!(report.copied, n as u64);
    db.close().unwrap();

    let started = Instant::now();
    etcdctl_txns(&server, n);
    let engine = started.elapsed().as_secs_f64();
    assert_eq!(server.count("ctl:"), n, "etcdctl stored every key");

    let rate = |s: f64| number(n as f64 / s, 0);
    println!("| side | time | keys/s |");
    println!("|---|---:|---:|");
    println!(
        "| Db::copy local → etcd | {library:.1} s | {} |",
        rate(library)
    );
    println!(
        "| etcdctl txn ({TXN} puts, {PROCESSES} processes) | {engine:.1} s | {} |",
        rate(engine)
    );
    println!(
        "ratio (library keys/s / etcdctl keys/s): {:.2}x",
        engine / library
    );
    println!(
        "library process RSS: {} MiB before the copy, peak {} MiB during it",
        before / 1024,
        peak / 1024
    );
}

fn key(i: usize) -> String {
    format!("key-{i:07}")
}

/// The same keys (under `ctl:`) through `etcdctl txn`, [`TXN`] puts a
/// process, [`PROCESSES`] processes at a time.
fn etcdctl_txns(server: &etcd::Etcd, n: usize) {
    let next = AtomicUsize::new(0);
    let value = std::str::from_utf8(&VALUE).unwrap();
    std::thread::scope(|scope| {
        for _ in 0..PROCESSES {
            scope.spawn(|| loop {
                let from = next.fetch_add(TXN, Ordering::Relaxed);
                if from >= n {
                    return;
                }
                // No compares, the puts, no failure ops: a blank line each.
                let mut txn = String::from("\n");
                for i in from..(from + TXN).min(n) {
                    txn += &format!("put ctl:{} {value}\n", key(i));
                }
                txn += "\n\n";
                let mut child = Command::new("etcdctl")
                    .env("ETCDCTL_API", "3")
                    .arg(format!("--endpoints=http://{}", server.endpoint()))
                    .arg("txn")
                    .stdin(Stdio::piped())
                    .stdout(Stdio::null())
                    .spawn()
                    .unwrap();
                child
                    .stdin
                    .take()
                    .unwrap()
                    .write_all(txn.as_bytes())
                    .unwrap();
                assert!(child.wait().unwrap().success());
            });
        }
    });
}

/// A line of /proc/self/status, in KiB.
fn rss_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap()
}

/// Sets the process's peak RSS back to its current RSS (Linux 4.0 on).
fn reset_peak_rss() {
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
}
