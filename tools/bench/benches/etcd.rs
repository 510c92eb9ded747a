//! The `etcd` backend through the C ABI, beside etcd-client used directly,
//! against one local etcd started for the run (as the tests start it).
//!
//! Run with `cargo bench -p tetherdb-bench --bench etcd`. It prints figures; it asserts
//! nothing about time (the figures are in docs/performance.md). Library
//! calls go through the
//! `extern "C"` entry points with C strings, as a C caller's would; the
//! etcd-client side awaits its calls in a loop on a tokio runtime of its
//! own, the natural way to use it, with keys of the same shape and the
//! same values.
//!
//! Each figure is the median of five runs; within a run the two sides of a
//! measurement run back to back, and which goes first alternates.

#[path = "../../../tests/common/etcd.rs"]
#[allow(dead_code)]
mod etcd;

use std::ffi::CString;
use std::ptr;
use std::time::{Duration, Instant};

use etcd_client::{Client, KvClient, Txn, TxnOp};
use tetherdb::ffi::{
    tether_close, tether_flush, tether_free, tether_open, tether_read, tether_write, TetherDb,
    TETHER_QUEUE,
};
use tetherdb::Status;

const VALUE_LEN: usize = 100;
/// Single calls per measurement; `TETHERDB_BENCH_OPS` overrides it.
const DEFAULT_OPS: usize = 3_000;
/// Queued writes per measurement are this many times the single calls.
const QUEUED_FACTOR: usize = 10;
/// etcd's default `--max-txn-ops`: the batch size on both sides.
const BATCH: usize = 128;
const REPEATS: usize = 5;

fn main() {
    let Some(server) = etcd::Etcd::start() else {
        eprintln!("etcd is not installed: install the Debian packages etcd-server and etcd-client");
        std::process::exit(1);
    };
    let ops = std::env::var("TETHERDB_BENCH_OPS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(DEFAULT_OPS);
    let value = vec![b'v'; VALUE_LEN];
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = runtime
        .block_on(Client::connect([server.endpoint()], None))
        .unwrap();
    let config = CString::new(server.config(
        &format!(r#"{{"size": {BATCH}, "interval": 1.0, "capacity": 100000}}"#),
        "",
    ))
    .unwrap();
    let mut db: *mut TetherDb = ptr::null_mut();
    assert_eq!(unsafe { tether_open(config.as_ptr(), &mut db) }, Status::Ok);

    println!(
        "etcd {} on loopback; {ops} single calls and {} queued writes per measurement, \
         {VALUE_LEN}-byte values, median of {REPEATS} runs\n",
        etcd_version(),
        ops * QUEUED_FACTOR
    );
    let mut rows: Vec<(&str, Vec<f64>, Vec<f64>)> = vec![
        ("direct write: tether_write / put", vec![], vec![]),
        ("read: tether_read / get", vec![], vec![]),
        (
            "queued write (batch 128): tether_write QUEUE + flush / txn of 128 puts",
            vec![],
            vec![],
        ),
    ];
    for run in 0..REPEATS {
        // Each side writes keys of its own, new to etcd: creating a key
        // costs etcd more than replacing one.
        let keys: Vec<CString> = (0..ops * QUEUED_FACTOR)
            .map(|i| CString::new(format!("key-{i:08}")).unwrap())
            .collect();
        let stored: Vec<String> = (0..ops * QUEUED_FACTOR)
            .map(|i| format!("client{run}:key-{i:08}"))
            .collect();
        let c_bucket = CString::new(format!("library{run}")).unwrap();
        let kv = client.kv_client();

        // tether_write of each key, with `flags`.
        let write_all = |keys: &[CString], flags: u32| {
            for key in keys {
                let status = unsafe {
                    tether_write(
                        db,
                        ptr::null(),
                        c_bucket.as_ptr(),
                        key.as_ptr(),
                        value.as_ptr(),
                        value.len(),
                        flags,
                    )
                };
                assert_eq!(status, Status::Ok);
            }
        };
        let library_writes = || timed(ops, || write_all(&keys[..ops], 0));
        let client_puts = || {
            let mut kv = kv.clone();
            timed(ops, || {
                runtime.block_on(async {
                    for key in &stored[..ops] {
                        kv.put(key.as_str(), value.as_slice(), None).await.unwrap();
                    }
                })
            })
        };
        let library_reads = || {
            timed(ops, || {
                for key in &keys[..ops] {
                    let mut out: *mut u8 = ptr::null_mut();
                    let mut len = 0;
                    let status = unsafe {
                        tether_read(
                            db,
                            ptr::null(),
                            c_bucket.as_ptr(),
                            key.as_ptr(),
                            &mut out,
                            &mut len,
                        )
                    };
                    assert_eq!(status, Status::Ok);
                    unsafe { tether_free(out, len) };
                }
            })
        };
        let client_gets = || {
            let mut kv = kv.clone();
            timed(ops, || {
                runtime.block_on(async {
                    for key in &stored[..ops] {
                        let answer = kv.get(key.as_str(), None).await.unwrap();
                        assert_eq!(answer.kvs().len(), 1);
                    }
                })
            })
        };
        let library_queued = || {
            timed(ops * QUEUED_FACTOR, || {
                write_all(&keys, TETHER_QUEUE);
                assert_eq!(unsafe { tether_flush(db) }, Status::Ok);
            })
        };
        let client_txns = || {
            let kv = kv.clone();
            timed(ops * QUEUED_FACTOR, || {
                runtime.block_on(transactions(kv, &stored, &value))
            })
        };

        let pairs: [(Measure, Measure); 3] = [
            (&library_writes, &client_puts),
            (&library_reads, &client_gets),
            (&library_queued, &client_txns),
        ];
        for ((library, direct), row) in pairs.into_iter().zip(rows.iter_mut()) {
            let (l, d) = match run % 2 {
                0 => {
                    let l = library();
                    (l, direct())
                }
                _ => {
                    let d = direct();
                    (library(), d)
                }
            };
            row.1.push(l);
            row.2.push(d);
        }
    }
    assert_eq!(unsafe { tether_close(db) }, Status::Ok);

    println!(
        "| {:<72} | {:>12} | {:>12} | {:>6} |",
        "operation: library / etcd-client", "library op/s", "client op/s", "ratio"
    );
    println!("|{:-<74}|{:->14}|{:->14}|{:->8}|", "", "", "", "");
    let mut medians = Vec::new();
    for (name, library, direct) in &rows {
        let (l, d) = (median(library), median(direct));
        medians.push(l);
        println!("| {name:<72} | {l:>12.0} | {d:>12.0} | {:>5.2}× |", l / d);
    }
    println!(
        "\nqueued writes carry {:.1}× the writes per second of direct writes through the library",
        medians[2] / medians[0]
    );
}

/// One timed side of a measurement: its operations per second.
type Measure<'a> = &'a dyn Fn() -> f64;

/// 128 puts per transaction, one transaction after another.
async fn transactions(mut kv: KvClient, keys: &[String], value: &[u8]) {
    for chunk in keys.chunks(BATCH) {
        let puts: Vec<TxnOp> = chunk
            .iter()
            .map(|key| TxnOp::put(key.as_str(), value, None))
            .collect();
        kv.txn(Txn::new().and_then(puts)).await.unwrap();
    }
}

/// Operations per second of `body`, which performs `ops` operations.
fn timed(ops: usize, body: impl FnOnce()) -> f64 {
    let started = Instant::now();
    body();
    ops as f64 / started.elapsed().max(Duration::from_nanos(1)).as_secs_f64()
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

fn etcd_version() -> String {
    let output = std::process::Command::new("etcd").arg("--version").output();
    output
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|text| {
            text.lines()
                .next()
                .map(|l| l.trim_start_matches("etcd Version: ").to_owned())
        })
        .unwrap_or_else(|| "?".into())
}
