//! The `dynamodb` backend through the C ABI, beside aws-sdk-dynamodb used
//! directly, against `moto_server` on a loopback port.
//!
//! Run with `cargo bench -p tetherdb-bench --bench dynamodb`. It prints figures; it asserts
//! nothing about time (the figures are in docs/performance.md). Every
//! library call goes through the
//! `extern "C"` entry points with C strings, as a C caller's would; the SDK
//! side sends the same items (`bench:key-%06d`, 100-byte values) with
//! PutItem one at a time, and with BatchWriteItem 25 at a time.
//!
//! Then it counts the HTTP requests 1,000 queued writes cost, through a
//! counting loopback proxy in front of moto (tests/common/moto.rs).
//!
//! Queued writes: the library's from 8 writer threads plus one flush, with
//! the default `queue_batch` but for an outbox of its own (the fixture's
//! `outbox_path`: handles side by side must not share the default one),
//! beside the SDK sending its own BatchWriteItems of 25 from 8 tokio tasks;
//! each side's run on a fresh table.
//!
//! Each figure is the median of five runs or more, with its spread; within
//! a run the library's and the SDK's side run back to back, and which goes
//! first alternates (tetherdb_bench), so that drift in the machine's load
//! favours neither.
//!
//! moto is a Python emulator: its figures show the cost of a request, and
//! so what batching saves, not DynamoDB's own speed.

#[path = "../../../tests/common/moto.rs"]
mod moto;

use std::collections::HashMap;
use std::ffi::CString;
use std::hint::black_box;
use std::ptr;
use std::time::Instant;

use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use tetherdb::ffi::{
    tether_close, tether_flush, tether_free, tether_open, tether_read, tether_write, TetherDb,
    TETHER_QUEUE,
};
use tetherdb::Status;
use tetherdb_bench::{alternate, preamble, repeats, Handle, Pair, Table};

/// Operations per measurement; `TETHERDB_BENCH_OPS` overrides it. moto
/// answers a few hundred requests a second: this keeps a run near 3 minutes.
const DEFAULT_OPS: usize = 1_000;
const VALUE_LEN: usize = 100;
const BUCKET: &str = "bench";
/// A size of `queue_batch` whose requests the proxy counts: a multiple of
/// BatchWriteItem's 25.
const BATCH_SIZE: usize = 100;
const SDK_BATCH: usize = 25;
/// Writer threads of the library's queued writes; the SDK's tasks.
const WRITERS: usize = 8;

struct Workload {
    c_keys: Vec<CString>,
    /// The stored keys, for the SDK.
    stored_keys: Vec<String>,
    bucket: CString,
    value: [u8; VALUE_LEN],
}

impl Workload {
    fn new(n: usize, tag: &str) -> Workload {
        let names: Vec<String> = (0..n).map(|i| format!("{tag}-{i:06}")).collect();
        let mut value = [0u8; VALUE_LEN];
        for (i, byte) in value.iter_mut().enumerate() {
            *byte = b'a' + (i % 26) as u8;
        }
        Workload {
            c_keys: names
                .iter()
                .map(|k| CString::new(k.as_str()).unwrap())
                .collect(),
            stored_keys: names.iter().map(|k| format!("{BUCKET}:{k}")).collect(),
            bucket: CString::new(BUCKET).unwrap(),
            value,
        }
    }

    fn item(&self, i: usize) -> HashMap<String, AttributeValue> {
        HashMap::from([
            (
                "key".to_owned(),
                AttributeValue::S(self.stored_keys[i].clone()),
            ),
            (
                "value".to_owned(),
                AttributeValue::S(String::from_utf8(self.value.to_vec()).unwrap()),
            ),
        ])
    }
}

/// A handle on `table` (created when missing), with `queue_batch`.
fn open(url: &str, table: &str, queue_batch: &str) -> *mut TetherDb {
    let config = CString::new(moto::config(url, table, "", queue_batch)).unwrap();
    let mut db = ptr::null_mut();
    let status = unsafe { tether_open(config.as_ptr(), &mut db) };
    assert_eq!(status, Status::Ok, "tether_open");
    db
}

fn write_all(db: *mut TetherDb, work: &Workload, flags: u32) {
    write_keys(db, work, &work.c_keys, flags);
    assert_eq!(unsafe { tether_flush(db) }, Status::Ok);
}

fn write_keys(db: *mut TetherDb, work: &Workload, keys: &[CString], flags: u32) {
    for key in keys {
        let status = unsafe {
            tether_write(
                db,
                ptr::null(),
                work.bucket.as_ptr(),
                key.as_ptr(),
                work.value.as_ptr(),
                VALUE_LEN,
                flags,
            )
        };
        assert_eq!(status, Status::Ok);
    }
}

fn read_all(db: *mut TetherDb, work: &Workload) {
    for key in &work.c_keys {
        let (mut value, mut len) = (ptr::null_mut(), 0);
        let status = unsafe {
            tether_read(
                db,
                ptr::null(),
                work.bucket.as_ptr(),
                key.as_ptr(),
                &mut value,
                &mut len,
            )
        };
        assert_eq!(status, Status::Ok);
        black_box(unsafe { std::slice::from_raw_parts(value, len) });
        unsafe { tether_free(value, len) };
    }
}

/// The library's direct writes and reads: (writes/s, reads/s).
fn library(db: *mut TetherDb, n: usize, run: usize) -> (f64, f64) {
    let direct = Workload::new(n, &format!("direct{run}"));
    let write = rate(n, || write_all(db, &direct, 0));
    (write, rate(n, || read_all(db, &direct)))
}

/// The library's queued writes from [`WRITERS`] threads plus one flush,
/// the default `queue_batch`, on a fresh table; writes/s.
fn library_queued(url: &str, n: usize, run: usize) -> f64 {
    let db = Handle(open(url, &moto::table("bench-queued"), "{}"));
    let work = Workload::new(n, &format!("queued{run}"));
    let per = n.div_ceil(WRITERS);
    let figure = rate(n, || {
        std::thread::scope(|s| {
            for keys in work.c_keys.chunks(per) {
                let work = &work;
                s.spawn(move || write_keys(db.get(), work, keys, TETHER_QUEUE));
            }
        });
        assert_eq!(unsafe { tether_flush(db.get()) }, Status::Ok);
    });
    assert_eq!(unsafe { tether_close(db.get()) }, Status::Ok);
    figure
}

/// aws-sdk-dynamodb used directly, as an async program would.
struct Sdk<'a> {
    runtime: &'a tokio::runtime::Runtime,
    client: &'a aws_sdk_dynamodb::Client,
    table: &'a str,
    url: &'a str,
}

impl Sdk<'_> {
    /// PutItem one at a time, then consistent GetItems: (writes/s, reads/s).
    fn direct(&self, n: usize, run: usize) -> (f64, f64) {
        let (sdk, table) = (self.client, self.table);
        let puts = Workload::new(n, &format!("sdk-put{run}"));
        let write = rate(n, || {
            self.runtime.block_on(async {
                for i in 0..n {
                    sdk.put_item()
                        .table_name(table)
                        .set_item(Some(puts.item(i)))
                        .send()
                        .await
                        .unwrap();
                }
            })
        });
        let read = rate(n, || {
            self.runtime.block_on(async {
                for key in &puts.stored_keys {
                    let answer = sdk
                        .get_item()
                        .table_name(table)
                        .key("key", AttributeValue::S(key.clone()))
                        .consistent_read(true)
                        .send()
                        .await
                        .unwrap();
                    black_box(answer.item.unwrap());
                }
            })
        });
        (write, read)
    }

    /// BatchWriteItems of 25 from [`WRITERS`] tasks, each sending its own,
    /// on a fresh table (the library creates it, untimed); writes/s.
    fn batches(&self, n: usize, run: usize) -> f64 {
        let table = moto::table("bench-sdk");
        let db = open(self.url, &table, "{}");
        assert_eq!(unsafe { tether_close(db) }, Status::Ok);
        let work = Workload::new(n, &format!("sdk-batch{run}"));
        let per = n.div_ceil(WRITERS);
        rate(n, || {
            self.runtime.block_on(async {
                let tasks: Vec<_> = (0..n)
                    .collect::<Vec<_>>()
                    .chunks(per)
                    .map(|share| {
                        let items: Vec<_> = share.iter().map(|&i| work.item(i)).collect();
                        let (sdk, table) = (self.client.clone(), table.clone());
                        tokio::spawn(async move {
                            for chunk in items.chunks(SDK_BATCH) {
                                let requests = chunk
                                    .iter()
                                    .map(|item| {
                                        let put = PutRequest::builder()
                                            .set_item(Some(item.clone()))
                                            .build()
                                            .unwrap();
                                        WriteRequest::builder().put_request(put).build()
                                    })
                                    .collect();
                                let answer = sdk
                                    .batch_write_item()
                                    .request_items(&table, requests)
                                    .send()
                                    .await
                                    .unwrap();
                                assert!(answer.unprocessed_items.unwrap_or_default().is_empty());
                            }
                        })
                    })
                    .collect();
                for task in tasks {
                    task.await.unwrap();
                }
            })
        })
    }
}

/// Operations per second of `run`, which does `n` of them.
fn rate(n: usize, run: impl FnOnce()) -> f64 {
    let start = Instant::now();
    run();
    n as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let n: usize = std::env::var("TETHERDB_BENCH_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_OPS);
    let Some(server) = moto::server() else {
        eprintln!("moto_server is missing: python3 -m pip install 'moto[server]'");
        std::process::exit(1);
    };
    let url = server.url();
    let table = moto::table("bench");
    let db = open(&url, &table, "{}");
    let (runtime, sdk) = moto::sdk(&url);
    let runs = repeats();

    preamble("TetherDB dynamodb backend: C ABI vs aws-sdk-dynamodb used directly");
    println!(
        "moto_server on the loopback, {n} operations each, {VALUE_LEN}-byte values, {runs} runs; \
         library config: {}\nqueued: library = {WRITERS} threads of tether_write(TETHER_QUEUE) \
         + one tether_flush; SDK = {WRITERS} tasks each sending its own BatchWriteItems of \
         {SDK_BATCH}; each on a fresh table",
        moto::config(&url, "<table>", "", "{}")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    );
    // Warm both clients' connections, and moto.
    write_all(db, &Workload::new(50, "warm"), 0);
    let sdk_side = Sdk {
        runtime: &runtime,
        client: &sdk,
        table: &table,
        url: &url,
    };
    let (mut writes, mut reads, mut queued) = (Pair::default(), Pair::default(), Pair::default());
    for run in 0..runs {
        let (l, s) = alternate(run, || library(db, n, run), || sdk_side.direct(n, run));
        writes.push(l.0, s.0);
        reads.push(l.1, s.1);
        queued.run(
            run,
            || library_queued(&url, n, run),
            || sdk_side.batches(n, run),
        );
    }
    assert_eq!(unsafe { tether_close(db) }, Status::Ok);

    Table {
        unit: "ops/s",
        library: "TetherDB (C ABI)",
        engine: "aws-sdk-dynamodb",
        decimals: 0,
    }
    .print(&[
        ("direct writes (PutItem)", &writes),
        ("reads (GetItem, consistent)", &reads),
        (
            "queued writes, 8 threads, + flush / BatchWriteItem of 25 from 8 tasks",
            &queued,
        ),
    ]);

    // Requests on the wire, counted by a proxy in front of moto.
    println!();
    println!("| queue_batch.size | HTTP requests per 1,000 queued writes |");
    println!("|---:|---:|");
    for size in [10, 25, BATCH_SIZE] {
        let proxy = moto::Proxy::start(server.addr);
        let db = open(
            &proxy.url(),
            &table,
            &format!(r#"{{"size": {size}, "interval": 1.0}}"#),
        );
        let before = proxy.state().total();
        write_all(
            db,
            &Workload::new(1000, &format!("counted-{size}")),
            TETHER_QUEUE,
        );
        let requests = proxy.state().total() - before;
        assert_eq!(unsafe { tether_close(db) }, Status::Ok);
        println!("| {size} | {requests} |");
    }
}
