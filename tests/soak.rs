//! Soaks under a watchdog: no call may hang. A child process — this same
//! binary, run with an argument — runs a long workload through the C ABI on
//! the `local` store; the parent waits for it for a bounded time and, when
//! it has not finished, prints every thread's stack (gdb) and fails.
//!
//! - `queued`: one thread queues writes of 100 bytes as fast as it can,
//!   with the default configuration (the durable outbox on), then flushes.
//!   Before the outbox had a log of its own, this hung in sled (#1412) in
//!   3 of 10 runs of 200,000 writes.
//! - `mixed`: four threads write, queue, read, update and delete on a
//!   small key space, for sled itself under sustained mixed load.
//!
//! `TETHER_SOAK_RUNS` (default 2) runs of each, of `TETHER_SOAK_WRITES`
//! (default 200,000) calls; `TETHER_SOAK_LIMIT` seconds (default 300) to
//! a run before it counts as hung.

#[path = "common/watchdog.rs"]
mod watchdog;

use std::ffi::{c_char, CString};
use std::process::{Command, Stdio};
use std::ptr;
use std::time::{Duration, Instant};

use tetherdb::ffi::{self, TetherDb, TETHER_QUEUE};
use tetherdb::Status;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("child-queued") => child_queued(&args[2], count("TETHER_SOAK_WRITES", 200_000)),
        Some("child-mixed") => child_mixed(&args[2], count("TETHER_SOAK_WRITES", 200_000)),
        _ => {
            let runs = count("TETHER_SOAK_RUNS", 2);
            let limit = Duration::from_secs(count("TETHER_SOAK_LIMIT", 300) as u64);
            let mut hung = Vec::new();
            for role in ["child-queued", "child-mixed"] {
                for run in 1..=runs {
                    let outcome = run_watched(role, limit);
                    println!("soak {role} run {run}/{runs}: {outcome}");
                    if outcome.starts_with("HUNG") {
                        hung.push(format!("{role} run {run}"));
                    }
                }
            }
            assert!(hung.is_empty(), "hung: {hung:?}");
            println!("soak passed: no hang in {} runs", 2 * runs);
        }
    }
}

fn count(variable: &str, default: usize) -> usize {
    std::env::var(variable).map_or(default, |v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{variable} is a number"))
    })
}

/// Runs this binary as `role` on a fresh store; what became of it.
fn run_watched(role: &str, limit: Duration) -> String {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        r#"{{"local": {{"filepath": {:?}}}}}"#,
        dir.path().join("db")
    );
    let started = Instant::now();
    let child = Command::new(std::env::current_exe().unwrap())
        .args([role, &config])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    match watchdog::watch(child, role, limit) {
        Ok(_) => format!("done in {:.1} s", started.elapsed().as_secs_f64()),
        Err(stacks) => {
            eprintln!("{role} did not end within {limit:?}; its threads:\n{stacks}");
            format!("HUNG (over {limit:?})")
        }
    }
}

/// Queues `writes` writes of 100 bytes from one thread, then flushes.
fn child_queued(config: &str, writes: usize) {
    let db = open(config);
    let value = [b'v'; 100];
    for i in 0..writes {
        let key = CString::new(format!("k{i:08}")).unwrap();
        let status = unsafe {
            ffi::tether_write(
                db.0,
                ptr::null(),
                c"soak".as_ptr(),
                key.as_ptr(),
                value.as_ptr(),
                value.len(),
                TETHER_QUEUE,
            )
        };
        check(status);
    }
    check(unsafe { ffi::tether_flush(db.0) });
    check(unsafe { ffi::tether_close(db.0) });
}

/// Four threads, each `calls / 4` calls over 1,000 keys of its own: direct
/// and queued writes, reads, updates, deletes.
fn child_mixed(config: &str, calls: usize) {
    let db = open(config);
    std::thread::scope(|scope| {
        for thread in 0..4 {
            scope.spawn(move || {
                let db = db;
                let value = [b'm'; 100];
                let mut out: *mut u8 = ptr::null_mut();
                let mut len = 0usize;
                for i in 0..calls / 4 {
                    let key = CString::new(format!("t{thread}-{}", (i * 7919) % 1000)).unwrap();
                    let (k, b) = (key.as_ptr(), c"mixed".as_ptr());
                    let status = unsafe {
                        match i % 5 {
                            0 => ffi::tether_write(db.0, ptr::null(), b, k, value.as_ptr(), 100, 0),
                            1 => ffi::tether_write(
                                db.0,
                                ptr::null(),
                                b,
                                k,
                                value.as_ptr(),
                                100,
                                TETHER_QUEUE,
                            ),
                            2 => {
                                let status =
                                    ffi::tether_read(db.0, ptr::null(), b, k, &mut out, &mut len);
                                if status == Status::Ok {
                                    ffi::tether_free(out, len);
                                }
                                status
                            }
                            3 => ffi::tether_update(db.0, ptr::null(), b, k, value.as_ptr(), 50),
                            _ => ffi::tether_delete(db.0, ptr::null(), b, k),
                        }
                    };
                    if status != Status::NotFound {
                        check(status);
                    }
                }
            });
        }
    });
    check(unsafe { ffi::tether_flush(db.0) });
    check(unsafe { ffi::tether_close(db.0) });
}

/// The handle, shared by the child's threads.
#[derive(Clone, Copy)]
struct Handle(*mut TetherDb);
// SAFETY: a tether_db is safe to share between threads (the header says so).
unsafe impl Send for Handle {}
unsafe impl Sync for Handle {}

fn open(config: &str) -> Handle {
    let config = CString::new(config).unwrap();
    let mut db = ptr::null_mut();
    check(unsafe { ffi::tether_open(config.as_ptr(), &mut db) });
    Handle(db)
}

fn check(status: Status) {
    if status != Status::Ok {
        let message: *const c_char = ffi::tether_last_error();
        let message = unsafe { std::ffi::CStr::from_ptr(message) }.to_string_lossy();
        panic!("{status:?}: {message}");
    }
}
