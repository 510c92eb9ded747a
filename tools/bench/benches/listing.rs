//! Listing keys without values on etcd: the library paging through a
//! bucket with `tether_list_ex(TETHER_KEYS_ONLY)`, beside
//! `etcdctl get --prefix --keys-only` (one request for the whole range),
//! at 10k, 100k and 1M keys in one etcd started as the tests start it.
//!
//! Run with `cargo bench -p tetherdb-bench --bench listing`. It prints
//! figures (seconds per full listing) and asserts nothing about time.
//! `TETHERDB_LISTING_SIZES=10000,100000` picks the sizes. Page sizes of
//! more than the keys are left out.

#[path = "../../../tests/common/etcd.rs"]
#[allow(dead_code)]
mod etcd;

use std::ffi::{CStr, CString};
use std::process::{Command, Stdio};
use std::ptr;
use std::time::Instant;

use etcd_client::{Client, Txn, TxnOp};
use tetherdb::ffi::{
    tether_close, tether_list_ex, tether_open, tether_page_free, tether_page_len, tether_page_next,
    TetherDb, TETHER_KEYS_ONLY,
};
use tetherdb::Status;
use tetherdb_bench::{alternate, preamble, repeats, Pair, Table};

/// Page sizes of the library: one a user would pick, and large ones.
const PAGES: [usize; 3] = [1_000, 10_000, 100_000];
/// Loading: transactions of this many puts, from this many tasks.
const TXN: usize = 128;
const TASKS: usize = 8;

fn main() {
    let sizes: Vec<usize> = std::env::var("TETHERDB_LISTING_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![10_000, 100_000, 1_000_000]);
    let Some(server) = etcd::Etcd::start() else {
        eprintln!("etcd is not installed: install the Debian packages etcd-server and etcd-client");
        std::process::exit(1);
    };
    preamble("listing keys without values on etcd: tether_list_ex(TETHER_KEYS_ONLY) / etcdctl");
    println!("{}", version());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for &n in &sizes {
        let started = Instant::now();
        runtime.block_on(load(&server.endpoint(), &bucket(n), n));
        println!(
            "loaded {n} keys \"{}:key-%07d\" (1-byte values) in {:.1} s",
            bucket(n),
            started.elapsed().as_secs_f64()
        );
    }
    let config = CString::new(server.config("{}", "")).unwrap();
    let mut db: *mut TetherDb = ptr::null_mut();
    assert_eq!(unsafe { tether_open(config.as_ptr(), &mut db) }, Status::Ok);
    let db = Handle(db);

    for &n in &sizes {
        let prefix = format!("{}:", bucket(n));
        // Once, untimed: etcdctl's output has every key.
        let lines = etcdctl(&server, &prefix, true);
        assert_eq!(lines, n, "etcdctl printed {lines} keys of {n}");
        let mut rows = Vec::new();
        for page in PAGES.into_iter().filter(|&p| p <= n) {
            let mut pair = Pair::default();
            for run in 0..repeats() {
                let (l, e) = alternate(
                    run,
                    || timed(|| assert_eq!(list(db, &bucket(n), page), n)),
                    || {
                        timed(|| {
                            etcdctl(&server, &prefix, false);
                        })
                    },
                );
                eprintln!(
                    "  {n} keys, pages of {page}, run {run}: library {l:.3} s, etcdctl {e:.3} s"
                );
                pair.push(l, e);
            }
            rows.push((format!("{n} keys, pages of {page}"), pair));
        }
        let rows: Vec<(&str, &Pair)> = rows.iter().map(|(name, p)| (name.as_str(), p)).collect();
        Table {
            unit: "s",
            library: "tether_list_ex",
            engine: "etcdctl",
            decimals: 3,
        }
        .print(&rows);
    }
    assert_eq!(unsafe { tether_close(db.0) }, Status::Ok);
}

#[derive(Clone, Copy)]
struct Handle(*mut TetherDb);

fn bucket(n: usize) -> String {
    format!("list{n}")
}

/// `n` keys in `bucket`, from [`TASKS`] tasks sending transactions of
/// [`TXN`] puts.
async fn load(endpoint: &str, bucket: &str, n: usize) {
    let client = Client::connect([endpoint], None).await.unwrap();
    let per = n.div_ceil(TASKS);
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let (mut kv, bucket) = (client.kv_client(), bucket.to_owned());
        tasks.push(tokio::spawn(async move {
            let keys: Vec<usize> = (t * per..((t + 1) * per).min(n)).collect();
            for chunk in keys.chunks(TXN) {
                let puts: Vec<TxnOp> = chunk
                    .iter()
                    .map(|i| TxnOp::put(format!("{bucket}:key-{i:07}"), "v", None))
                    .collect();
                kv.txn(Txn::new().and_then(puts)).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

/// Every key of `bucket` through the C ABI, `page` at a time; how many.
fn list(db: Handle, bucket: &str, page: usize) -> usize {
    let bucket = CString::new(bucket).unwrap();
    let mut after: Option<CString> = None;
    let mut count = 0;
    loop {
        let mut out = ptr::null_mut();
        let start = after.as_ref().map_or(ptr::null(), |a| a.as_ptr());
        let status = unsafe {
            tether_list_ex(
                db.0,
                ptr::null(),
                bucket.as_ptr(),
                ptr::null(),
                start,
                page,
                TETHER_KEYS_ONLY,
                &mut out,
            )
        };
        assert_eq!(status, Status::Ok);
        count += unsafe { tether_page_len(out) };
        let next = unsafe { tether_page_next(out) };
        after = (!next.is_null()).then(|| unsafe { CStr::from_ptr(next) }.to_owned());
        unsafe { tether_page_free(out) };
        if after.is_none() {
            return count;
        }
    }
}

/// `etcdctl get --prefix --keys-only PREFIX` (API v3) against the server;
/// the output goes to /dev/null, or, with `count`, is counted (its keys:
/// the lines that are not empty).
fn etcdctl(server: &etcd::Etcd, prefix: &str, count: bool) -> usize {
    let mut command = Command::new("etcdctl");
    command
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints=http://{}", server.endpoint()))
        .args(["get", "--prefix", "--keys-only", prefix]);
    if !count {
        let status = command.stdout(Stdio::null()).status().unwrap();
        assert!(status.success());
        return 0;
    }
    let output = command.output().unwrap();
    assert!(output.status.success());
    output
        .stdout
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .count()
}

fn timed(body: impl FnOnce()) -> f64 {
    let started = Instant::now();
    body();
    started.elapsed().as_secs_f64()
}

fn version() -> String {
    let out = |cmd: &str, arg: &str| {
        Command::new(cmd)
            .arg(arg)
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|t| t.lines().next().map(str::to_owned))
            .unwrap_or_else(|| "?".into())
    };
    format!(
        "{}; {}",
        out("etcd", "--version"),
        out("etcdctl", "version")
    )
}
