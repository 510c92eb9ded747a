//! The `local` backend through the C ABI, beside sled used directly.
//!
//! Run with `cargo bench -p tetherdb-bench --bench local`. It prints figures; it asserts
//! nothing about time (the figures are in docs/performance.md). Every
//! library call goes through the
//! `extern "C"` entry points with C strings, exactly as a C caller's would;
//! the sled side calls `sled::Tree` on a database opened as the library
//! opens it (sled's defaults, with the library's default page cache,
//! `local.cache_capacity`) with the same stored keys
//! (`bench:key-%08d`) and the same 100-byte values.
//!
//! Each figure is the median of five runs or more (tetherdb_bench::repeats),
//! each in fresh temporary directories, printed with its spread. Within a
//! run, the library's and sled's side of each measurement run back to back,
//! and which goes first alternates from run to run, so that drift in the
//! machine's load (page cache, sled's I/O threads, other processes) does not
//! favour one side.
//!
//! Queued writes use the library's default configuration (only
//! `local.filepath` set: the durable outbox on, the default batch size),
//! beside sled applying its own `sled::Batch`es of 50.

use std::ffi::{c_char, CString};
use std::hint::black_box;
use std::path::Path;
use std::ptr;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use tetherdb::ffi::{
    tether_close, tether_flush, tether_free, tether_open, tether_read, tether_write, TetherDb,
    TETHER_QUEUE,
};
use tetherdb::Status;
use tetherdb_bench::{alternate, preamble, repeats, Handle, Pair, Table};

/// Operations per measurement, whatever the number of threads; the
/// environment variable `TETHERDB_BENCH_OPS` overrides it (for a short run
/// under valgrind, say).
const DEFAULT_OPS: usize = 200_000;
const VALUE_LEN: usize = 100;
const BUCKET: &str = "bench";
/// The size of sled's own `Batch`es, beside the library's queued writes.
const BATCH_SIZE: usize = 50;
const WARMUP_OPS: usize = 20_000;
const THREADS: [usize; 2] = [1, 4];

/// Everything both sides need, built before any timed loop.
struct Workload {
    /// `key-%08d` as C strings, for the library.
    c_keys: Vec<CString>,
    /// `bench:key-%08d` as bytes, for sled: the library's stored keys.
    sled_keys: Vec<Vec<u8>>,
    bucket: CString,
    value: [u8; VALUE_LEN],
}

impl Workload {
    fn new(n: usize) -> Workload {
        let names: Vec<String> = (0..n).map(|i| format!("key-{i:08}")).collect();
        let mut value = [0u8; VALUE_LEN];
        for (i, byte) in value.iter_mut().enumerate() {
            *byte = b'a' + (i % 26) as u8;
        }
        Workload {
            c_keys: names
                .iter()
                .map(|k| CString::new(k.as_str()).unwrap())
                .collect(),
            sled_keys: names
                .iter()
                .map(|k| format!("{BUCKET}:{k}").into_bytes())
                .collect(),
            bucket: CString::new(BUCKET).unwrap(),
            value,
        }
    }

    /// The key indices thread `t` of `threads` works on, out of `n`.
    fn range(n: usize, threads: usize, t: usize) -> std::ops::Range<usize> {
        let per = n / threads;
        t * per..(t + 1) * per
    }
}

/// The default configuration: only where the store lives.
/// sled's page cache on both sides: the library's default
/// (`local.cache_capacity`), or `TETHERDB_BENCH_CACHE` bytes. The
/// library's entries carry a 9-byte header (the version) beside the value,
/// so a working set near the cache's size fits in sled's cache alone.
fn cache_capacity() -> u64 {
    std::env::var("TETHERDB_BENCH_CACHE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(tetherdb::LocalConfig::default().cache_capacity)
}

fn config_json(dir: &Path) -> String {
    match std::env::var("TETHERDB_BENCH_CACHE") {
        Ok(_) => format!(
            r#"{{"local": {{"filepath": {:?}, "cache_capacity": {}}}}}"#,
            dir.join("db"),
            cache_capacity()
        ),
        Err(_) => format!(r#"{{"local": {{"filepath": {:?}}}}}"#, dir.join("db")),
    }
}

fn open_library(dir: &Path) -> Handle {
    let json = CString::new(config_json(dir)).unwrap();
    let mut db: *mut TetherDb = ptr::null_mut();
    let status = unsafe { tether_open(json.as_ptr(), &mut db) };
    assert_eq!(status, Status::Ok, "tether_open");
    Handle(db)
}

fn close_library(db: Handle) {
    assert_eq!(unsafe { tether_close(db.0) }, Status::Ok, "tether_close");
}

fn open_sled(dir: &Path) -> sled::Db {
    sled::Config::new()
        .path(dir.join("db"))
        .cache_capacity(cache_capacity())
        .open()
        .expect("sled open")
}

/// The time a measurement took: wall-clock, and for a single-threaded one
/// also the CPU time of the calling thread, which other processes on a busy
/// machine disturb far less (zero with several threads).
#[derive(Clone, Copy, Default)]
struct Timing {
    wall: Duration,
    cpu: Duration,
}

/// CPU time consumed by the calling thread (Linux `CLOCK_THREAD_CPUTIME_ID`).
fn thread_cpu_time() -> Duration {
    #[repr(C)]
    struct Timespec {
        tv_sec: i64,
        tv_nsec: i64,
    }
    extern "C" {
        fn clock_gettime(clock: i32, ts: *mut Timespec) -> i32;
    }
    const CLOCK_THREAD_CPUTIME_ID: i32 = 3;
    let mut ts = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    if unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Runs `body(t)` on `threads` threads (on this one when 1), started
/// together; returns the time from the start to the last one's end.
fn timed_threads(threads: usize, body: impl Fn(usize) + Sync) -> Timing {
    if threads == 1 {
        let (start, cpu) = (Instant::now(), thread_cpu_time());
        body(0);
        return Timing {
            cpu: thread_cpu_time().saturating_sub(cpu),
            wall: start.elapsed(),
        };
    }
    let barrier = Barrier::new(threads + 1);
    let wall = std::thread::scope(|s| {
        for t in 0..threads {
            let (barrier, body) = (&barrier, &body);
            s.spawn(move || {
                barrier.wait();
                body(t);
            });
        }
        barrier.wait();
        let start = Instant::now();
        // Leaving the scope joins every thread.
        start
    })
    .elapsed();
    Timing {
        wall,
        cpu: Duration::ZERO,
    }
}

// --- the library, through the C ABI ----------------------------------------

#[inline(never)]
fn lib_write(db: Handle, w: &Workload, range: std::ops::Range<usize>, flags: u32) {
    let bucket = w.bucket.as_ptr();
    for i in range {
        let status = unsafe {
            tether_write(
                db.0,
                ptr::null(),
                bucket,
                w.c_keys[i].as_ptr(),
                w.value.as_ptr(),
                VALUE_LEN,
                flags,
            )
        };
        assert_eq!(status, Status::Ok);
    }
}

#[inline(never)]
fn lib_read(db: Handle, w: &Workload, range: std::ops::Range<usize>) {
    let bucket = w.bucket.as_ptr();
    for i in range {
        let mut value: *mut u8 = ptr::null_mut();
        let mut len = 0usize;
        let status = unsafe {
            tether_read(
                db.0,
                ptr::null(),
                bucket,
                w.c_keys[i].as_ptr() as *const c_char,
                &mut value,
                &mut len,
            )
        };
        assert!(status == Status::Ok && len == VALUE_LEN);
        black_box(unsafe { *value });
        unsafe { tether_free(value, len) };
    }
}

// --- sled, used directly ----------------------------------------------------

#[inline(never)]
fn sled_insert(db: &sled::Tree, w: &Workload, range: std::ops::Range<usize>) {
    for i in range {
        db.insert(w.sled_keys[i].as_slice(), &w.value[..]).unwrap();
    }
}

#[inline(never)]
fn sled_get(db: &sled::Tree, w: &Workload, range: std::ops::Range<usize>) {
    for i in range {
        let value = db.get(w.sled_keys[i].as_slice()).unwrap().unwrap();
        // Copied out of sled's buffer, as a C caller must receive it.
        let copy: Box<[u8]> = Box::from(&value[..]);
        assert_eq!(copy.len(), VALUE_LEN);
        black_box(&copy);
    }
}

#[inline(never)]
fn sled_batches(db: &sled::Tree, w: &Workload, range: std::ops::Range<usize>) {
    let keys = &w.sled_keys[range];
    for chunk in keys.chunks(BATCH_SIZE) {
        let mut batch = sled::Batch::default();
        for key in chunk {
            batch.insert(key.as_slice(), &w.value[..]);
        }
        db.apply_batch(batch).unwrap();
    }
}

// --- one repetition: both sides, each measurement back to back ----------

/// One repetition of every measurement at `threads` threads: (direct write,
/// read, queued write + flush), for the library and for sled. Each side works
/// in fresh directories; both sides of one measurement run back to back, so
/// that a change in the machine's load hits both alike.
fn repetition(w: &Workload, n: usize, threads: usize, run: usize) -> ([Timing; 3], [Timing; 3]) {
    let (lib_dir, sled_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let lib = open_library(lib_dir.path());
    let db = open_sled(sled_dir.path());
    // Each side flushes its writes after its timed loop (untimed), so that
    // its background flush does not run into the other side's measurement
    // or into the reads.
    let write = alternate(
        run,
        || {
            let time = timed_threads(threads, |t| {
                lib_write(lib, w, Workload::range(n, threads, t), 0)
            });
            assert_eq!(unsafe { tether_flush(lib.0) }, Status::Ok, "tether_flush");
            time
        },
        || {
            let time = timed_threads(threads, |t| {
                sled_insert(&db, w, Workload::range(n, threads, t))
            });
            db.flush().unwrap();
            time
        },
    );
    let read = alternate(
        run,
        || {
            timed_threads(threads, |t| {
                lib_read(lib, w, Workload::range(n, threads, t))
            })
        },
        || {
            timed_threads(threads, |t| {
                sled_get(&db, w, Workload::range(n, threads, t))
            })
        },
    );
    close_library(lib);
    drop(db);
    drop((lib_dir, sled_dir));

    let (lib_dir, sled_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let lib = open_library(lib_dir.path());
    let db = open_sled(sled_dir.path());
    let queued = alternate(
        run,
        || {
            let start = Instant::now();
            timed_threads(threads, |t| {
                lib_write(lib, w, Workload::range(n, threads, t), TETHER_QUEUE)
            });
            assert_eq!(unsafe { tether_flush(lib.0) }, Status::Ok, "tether_flush");
            Timing {
                wall: start.elapsed(),
                cpu: Duration::ZERO,
            }
        },
        || {
            // The flush matches tether_flush, which makes the store durable.
            let start = Instant::now();
            timed_threads(threads, |t| {
                sled_batches(&db, w, Workload::range(n, threads, t))
            });
            db.flush().unwrap();
            Timing {
                wall: start.elapsed(),
                cpu: Duration::ZERO,
            }
        },
    );
    close_library(lib);
    drop(db);
    drop((lib_dir, sled_dir));
    ([write.0, read.0, queued.0], [write.1, read.1, queued.1])
}

// --- report ----------------------------------------------------------------

fn ops_per_sec(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn main() {
    // `cargo bench` passes `--bench`; accept and ignore arguments.
    let ops: usize = std::env::var("TETHERDB_BENCH_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n: &usize| n >= BATCH_SIZE * THREADS[1])
        .unwrap_or(DEFAULT_OPS);
    let runs = repeats();
    preamble("TetherDB local backend: C ABI vs sled used directly");
    println!(
        "workload: {ops} ops per measurement, keys \"key-%08d\" in bucket {BUCKET:?} \
         (stored \"{BUCKET}:key-%08d\"), {VALUE_LEN}-byte values, {runs} runs, \
         fresh temporary directories per run"
    );
    println!("library config: {}", config_json(Path::new("<tmpdir>")));
    println!(
        "sled:    sled's defaults with a {} MiB cache, as the library opens it",
        cache_capacity() >> 20
    );
    println!(
        "threads: {:?}; with T threads each thread works on its own {}-key range \
         (one shared handle / one shared sled Db)",
        THREADS,
        ops / THREADS[1]
    );
    println!("queued:  library = tether_write(TETHER_QUEUE) x {ops} + one tether_flush;");
    println!(
        "         sled    = apply_batch of {BATCH_SIZE} x {} + one Db::flush",
        ops / BATCH_SIZE
    );

    let w = Workload::new(ops);

    // Warm-up: code paths, allocator, sled's process-wide I/O pool.
    repetition(&w, WARMUP_OPS.min(ops), 1, 0);

    let names = [
        "write (direct)",
        "read",
        "write (queued, default config, + flush) / sled Batch of 50 + flush",
    ];
    let mut rows = Vec::new();
    let mut cpu_rows = Vec::new();
    for &threads in &THREADS {
        let mut wall: [Pair; 3] = Default::default();
        let mut cpu: [Pair; 2] = Default::default();
        for run in 0..runs {
            let (l, s) = repetition(&w, ops, threads, run);
            for k in 0..3 {
                wall[k].push(ops_per_sec(ops, l[k].wall), ops_per_sec(ops, s[k].wall));
            }
            // The calling thread's CPU time says something only when that
            // thread does all the work: single-threaded direct calls.
            if threads == 1 {
                for k in 0..2 {
                    cpu[k].push(ops_per_sec(ops, l[k].cpu), ops_per_sec(ops, s[k].cpu));
                }
            }
            let rate = |t: Timing| ops_per_sec(ops, t.wall);
            eprintln!(
                "  run {}/{runs}, {threads} thread(s), ops/s (write, read, queued): \
                 library {:>8.0} {:>8.0} {:>8.0} | sled {:>8.0} {:>8.0} {:>8.0}",
                run + 1,
                rate(l[0]),
                rate(l[1]),
                rate(l[2]),
                rate(s[0]),
                rate(s[1]),
                rate(s[2]),
            );
        }
        for (name, pair) in names.iter().zip(wall) {
            rows.push((format!("{name}, {threads} thread(s)"), pair));
        }
        if threads == 1 {
            for (name, pair) in names.iter().zip(cpu) {
                cpu_rows.push((format!("{name}, {threads} thread(s)"), pair));
            }
        }
    }

    let table = Table {
        unit: "ops/s",
        library: "library",
        engine: "sled",
        decimals: 0,
    };
    println!("\nwall-clock time:");
    table.print(
        &rows
            .iter()
            .map(|(n, p)| (n.as_str(), p))
            .collect::<Vec<_>>(),
    );
    println!(
        "\ncalling thread's CPU time (less disturbed by other load on the machine, \
         but leaves out sled's background threads):"
    );
    table.print(
        &cpu_rows
            .iter()
            .map(|(n, p)| (n.as_str(), p))
            .collect::<Vec<_>>(),
    );
}
