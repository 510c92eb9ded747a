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
//! Queued writes: the library's from 8 writer threads plus one flush, with
//! the default `queue_batch` but for an outbox of its own (the fixture's
//! `outbox_path`, so that the run never shares the default
//! `./tetherdb_data.outbox` with another handle), beside etcd-client sending
//! its own transactions of 128 puts from 4 concurrent tokio tasks.
//!
//! Each figure is the median of five runs or more, with its spread; within
//! a run the two sides of a measurement run back to back, and which goes
//! first alternates (tetherdb_bench).

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
use tetherdb_bench::{preamble, repeats, Handle, Pair, Table};

const VALUE_LEN: usize = 100;
/// Single calls per measurement; `TETHERDB_BENCH_OPS` overrides it.
const DEFAULT_OPS: usize = 3_000;
/// Queued writes per measurement are this many times the single calls.
const QUEUED_FACTOR: usize = 10;
/// etcd's default `--max-txn-ops`: the client's transactions.
const BATCH: usize = 128;
/// Writer threads of the library's queued writes; the client's tasks.
const WRITERS: usize = 8;
const TASKS: usize = 4;

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
    // The default queue_batch, with an outbox of its own.
    let config = server.config("{}", "");
    let mut db: *mut TetherDb = ptr::null_mut();
    let c_config = CString::new(config.as_str()).unwrap();
    assert_eq!(
        unsafe { tether_open(c_config.as_ptr(), &mut db) },
        Status::Ok
    );
    let db = Handle(db);
    let runs = repeats();

    preamble("TetherDB etcd backend: C ABI vs etcd-client used directly");
    println!(
        "etcd {} on loopback; {ops} single calls and {} queued writes per measurement, \
         {VALUE_LEN}-byte values, {runs} runs\nlibrary config: {config}\n\
         queued: library = {WRITERS} threads of tether_write(TETHER_QUEUE) + one tether_flush; \
         etcd-client = {TASKS} tokio tasks each sending its transactions of {BATCH} puts",
        etcd_version(),
        ops * QUEUED_FACTOR
    );
    let names = [
        "direct write: tether_write / put",
        "read: tether_read / get",
        "queued write, 8 threads, + flush / txns of 128 puts from 4 tasks",
    ];
    let mut rows: [Pair; 3] = Default::default();
    for run in 0..runs {
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
                        db.get(),
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
                            db.get(),
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
                let per = keys.len().div_ceil(WRITERS);
                std::thread::scope(|s| {
                    for chunk in keys.chunks(per) {
                        s.spawn(|| write_all(chunk, TETHER_QUEUE));
                    }
                });
                assert_eq!(unsafe { tether_flush(db.0) }, Status::Ok);
            })
        };
        let client_txns = || {
            timed(ops * QUEUED_FACTOR, || {
                runtime.block_on(transactions(&kv, &stored, &value))
            })
        };

        let pairs: [(Measure, Measure); 3] = [
            (&library_writes, &client_puts),
            (&library_reads, &client_gets),
            (&library_queued, &client_txns),
        ];
        for ((library, direct), row) in pairs.into_iter().zip(rows.iter_mut()) {
            row.run(run, library, direct);
        }
    }
    assert_eq!(unsafe { tether_close(db.0) }, Status::Ok);

    let rows: Vec<(&str, &Pair)> = names.into_iter().zip(&rows).collect();
    Table {
        unit: "ops/s",
        library: "library",
        engine: "etcd-client",
        decimals: 0,
    }
    .print(&rows);
}

/// One timed side of a measurement: its operations per second.
type Measure<'a> = &'a dyn Fn() -> f64;

/// Transactions of 128 puts, from [`TASKS`] tasks at once, each sending
/// its own one after another.
async fn transactions(kv: &KvClient, keys: &[String], value: &[u8]) {
    let per = keys.len().div_ceil(TASKS);
    let tasks: Vec<_> = keys
        .chunks(per)
        .map(|share| {
            let (mut kv, share, value) = (kv.clone(), share.to_vec(), value.to_vec());
            tokio::spawn(async move {
                for chunk in share.chunks(BATCH) {
                    let puts: Vec<TxnOp> = chunk
                        .iter()
                        .map(|key| TxnOp::put(key.as_str(), value.as_slice(), None))
                        .collect();
                    kv.txn(Txn::new().and_then(puts)).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}

/// Operations per second of `body`, which performs `ops` operations.
fn timed(ops: usize, body: impl FnOnce()) -> f64 {
    let started = Instant::now();
    body();
    ops as f64 / started.elapsed().max(Duration::from_nanos(1)).as_secs_f64()
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
