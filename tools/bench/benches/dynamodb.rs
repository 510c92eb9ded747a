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
//! Each figure is the median of three runs; within a run the library's and
//! the SDK's side run back to back, and which goes first alternates, so that
//! drift in the machine's load favours neither.
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

/// Operations per measurement; `TETHERDB_BENCH_OPS` overrides it. moto
/// answers a few hundred requests a second: this keeps a run near 3 minutes.
const DEFAULT_OPS: usize = 1_000;
const VALUE_LEN: usize = 100;
const BUCKET: &str = "bench";
/// `queue_batch.size` for the library: a multiple of BatchWriteItem's 25.
const BATCH_SIZE: usize = 100;
const SDK_BATCH: usize = 25;
const REPEATS: usize = 3;

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

fn open(url: &str, table: &str, batch_size: usize) -> *mut TetherDb {
    let config = moto::config(
        url,
        table,
        "",
        &format!(r#"{{"size": {batch_size}, "interval": 1.0}}"#),
    );
    let config = CString::new(config).unwrap();
    let mut db = ptr::null_mut();
    let status = unsafe { tether_open(config.as_ptr(), &mut db) };
    assert_eq!(status, Status::Ok, "tether_open");
    db
}

fn write_all(db: *mut TetherDb, work: &Workload, flags: u32) {
    for key in &work.c_keys {
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
    assert_eq!(unsafe { tether_flush(db) }, Status::Ok);
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

/// One run's operations per second.
#[derive(Default)]
struct Figures {
    lib_direct: f64,
    lib_read: f64,
    lib_queued: f64,
    sdk_put: f64,
    sdk_get: f64,
    sdk_batch: f64,
}

/// The library's side of a run: direct writes, reads, queued writes.
fn library(db: *mut TetherDb, n: usize, run: usize, figures: &mut Figures) {
    let direct = Workload::new(n, &format!("direct{run}"));
    figures.lib_direct = rate(n, || write_all(db, &direct, 0));
    figures.lib_read = rate(n, || read_all(db, &direct));
    let queued = Workload::new(n, &format!("queued{run}"));
    figures.lib_queued = rate(n, || write_all(db, &queued, TETHER_QUEUE));
}

/// aws-sdk-dynamodb used directly, as an async program would.
struct Sdk<'a> {
    runtime: &'a tokio::runtime::Runtime,
    client: &'a aws_sdk_dynamodb::Client,
    table: &'a str,
}

impl Sdk<'_> {
    fn measure(&self, n: usize, run: usize, figures: &mut Figures) {
        let (sdk, table) = (self.client, self.table);
        let puts = Workload::new(n, &format!("sdk-put{run}"));
        figures.sdk_put = rate(n, || {
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
        figures.sdk_get = rate(n, || {
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
        let batches = Workload::new(n, &format!("sdk-batch{run}"));
        figures.sdk_batch = rate(n, || {
            self.runtime.block_on(async {
                for chunk in (0..n).collect::<Vec<_>>().chunks(SDK_BATCH) {
                    let requests = chunk
                        .iter()
                        .map(|&i| {
                            let put = PutRequest::builder()
                                .set_item(Some(batches.item(i)))
                                .build()
                                .unwrap();
                            WriteRequest::builder().put_request(put).build()
                        })
                        .collect();
                    let answer = sdk
                        .batch_write_item()
                        .request_items(table, requests)
                        .send()
                        .await
                        .unwrap();
                    assert!(answer.unprocessed_items.unwrap_or_default().is_empty());
                }
            })
        });
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
    let db = open(&url, &table, BATCH_SIZE);
    let (runtime, sdk) = moto::sdk(&url);

    println!(
        "dynamodb against moto_server on the loopback, {n} operations each, \
         {VALUE_LEN}-byte values, median of {REPEATS} runs"
    );
    // Warm both clients' connections, and moto.
    write_all(db, &Workload::new(50, "warm"), 0);
    let runs: Vec<Figures> = (0..REPEATS)
        .map(|run| {
            let sdk_side = Sdk {
                runtime: &runtime,
                client: &sdk,
                table: &table,
            };
            // Which side goes first alternates, so that drift in the
            // machine's load favours neither.
            let mut figures = Figures::default();
            for side in [run % 2, 1 - run % 2] {
                match side {
                    0 => library(db, n, run, &mut figures),
                    _ => sdk_side.measure(n, run, &mut figures),
                }
            }
            figures
        })
        .collect();
    assert_eq!(unsafe { tether_close(db) }, Status::Ok);
    let median = |pick: fn(&Figures) -> f64| {
        let mut values: Vec<f64> = runs.iter().map(pick).collect();
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    let [lib_direct, lib_read, lib_queued, sdk_put, sdk_get, sdk_batch] = [
        median(|f| f.lib_direct),
        median(|f| f.lib_read),
        median(|f| f.lib_queued),
        median(|f| f.sdk_put),
        median(|f| f.sdk_get),
        median(|f| f.sdk_batch),
    ];

    println!();
    println!("| operation | TetherDB (C ABI) ops/s | aws-sdk-dynamodb ops/s | ratio |");
    println!("|---|---:|---:|---:|");
    println!(
        "| direct writes (PutItem) | {lib_direct:.0} | {sdk_put:.0} | {:.2}x |",
        lib_direct / sdk_put
    );
    println!(
        "| reads (GetItem, consistent) | {lib_read:.0} | {sdk_get:.0} | {:.2}x |",
        lib_read / sdk_get
    );
    println!(
        "| queued writes (BatchWriteItem of 25) | {lib_queued:.0} | {sdk_batch:.0} | {:.2}x |",
        lib_queued / sdk_batch
    );
    println!();
    println!(
        "queued writes / direct writes through TetherDB: {:.1}x",
        lib_queued / lib_direct
    );

    // Requests on the wire, counted by a proxy in front of moto.
    println!();
    println!("| queue_batch.size | HTTP requests per 1,000 queued writes |");
    println!("|---:|---:|");
    for size in [10, 25, BATCH_SIZE] {
        let proxy = moto::Proxy::start(server.addr);
        let db = open(&proxy.url(), &table, size);
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
