//! Crashes: a child process — this same binary, run with an argument — is
//! killed with SIGKILL at a random moment, and what it was told had been
//! stored must be there afterwards.
//!
//! - `queued`: with `queue_batch.sync` on, the child queues writes to an
//!   etcd that is down and prints each key once its `tether_write`
//!   returned. After the kill, etcd starts, a new handle opens the outbox,
//!   and every printed key must reach etcd.
//! - `direct`: the child writes to a local store and prints how many
//!   writes each completed `tether_flush` covered. After the kill, the
//!   store must open and hold every one of them.
//!
//! The kill comes after a random number of printed lines; the seed is
//! printed, and `TETHER_CRASH_SEED` replays it.

mod common;

use std::ffi::{c_char, CString};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::ptr;
use std::time::SystemTime;

use common::etcd::outbox_path::new_outbox_path;
use common::etcd::Etcd;
use common::wait_until;
use tetherdb::ffi::{self, TetherDb, TETHER_QUEUE};
use tetherdb::{Db, Status};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("child-queued") => child_queued(&args[2]),
        Some("child-direct") => child_direct(&args[2]),
        _ => {
            let seed = seed();
            println!("crash tests, seed {seed} (TETHER_CRASH_SEED={seed} replays it)");
            queued_writes_acknowledged_with_sync_survive_kill_9(seed);
            direct_writes_before_the_last_flush_survive_kill_9(seed);
            println!("crash tests passed");
        }
    }
}

fn queued_writes_acknowledged_with_sync_survive_kill_9(seed: u64) {
    let Some(mut etcd) = Etcd::start() else {
        return;
    };
    let outbox = new_outbox_path();
    let queue_batch = format!(r#"{{"sync": true, "outbox_path": {outbox:?}}}"#);
    let config = etcd.config(&queue_batch, r#""timeout": 0.5"#);
    etcd.pause();

    let kill_after = 200 + seed % 3_000;
    let printed = run_and_kill("child-queued", &config, kill_after);
    assert!(printed.len() as u64 >= kill_after, "the child ended early");
    println!(
        "queued: killed the child after {} acknowledged writes",
        printed.len()
    );

    etcd.resume();
    let db = Db::open_json(Some(&config)).unwrap();
    wait_until(|| db.flush().is_ok());
    db.close().unwrap();
    let stored: std::collections::HashSet<String> =
        etcd.kvs("crash:").into_iter().map(|kv| kv.key).collect();
    let lost: Vec<&String> = printed
        .iter()
        .filter(|key| !stored.contains(&format!("crash:{key}")))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged writes lost, the first: {:?}",
        lost.len(),
        printed.len(),
        lost.first()
    );
    println!(
        "queued: all {} acknowledged writes are in etcd",
        printed.len()
    );
}

fn direct_writes_before_the_last_flush_survive_kill_9(seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    let config = common::config(dir.path(), "{}");
    let kill_after = 5 + seed % 40;
    let printed = run_and_kill("child-direct", &config, kill_after);
    let flushed: usize = printed.last().unwrap().parse().unwrap();
    println!("direct: killed the child after a flush covering {flushed} writes");

    let db = Db::open_json(Some(&config)).expect("the store opens after kill -9");
    for i in 0..flushed {
        let value = db.read(None, Some("crash"), &key(i)).unwrap_or_else(|e| {
            panic!("write {i} of {flushed} flushed before the kill is lost: {e}")
        });
        assert_eq!(value, key(i).as_bytes());
    }
    db.close().unwrap();
    println!("direct: all {flushed} flushed writes are in the store");
}

/// Runs this binary as `role`, reads the lines it prints, and kills it
/// (SIGKILL) once it printed `kill_after` of them; returns every line it
/// printed.
fn run_and_kill(role: &str, config: &str, kill_after: u64) -> Vec<String> {
    let mut child: Child = Command::new(std::env::current_exe().unwrap())
        .args([role, config])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = Vec::new();
    for line in lines.by_ref() {
        printed.push(line.unwrap());
        if printed.len() as u64 == kill_after {
            child.kill().unwrap();
            break;
        }
    }
    // What it printed before it died is acknowledged too.
    printed.extend(lines.map_while(Result::ok));
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "the child was to be killed, not end: {status}"
    );
    printed
}

/// Queues writes for ever through the C ABI, printing each key once its
/// `tether_write` returned.
fn child_queued(config: &str) {
    let db = open(config);
    let mut out = std::io::stdout().lock();
    for i in 0.. {
        write(db, i, TETHER_QUEUE);
        writeln!(out, "{}", key(i)).unwrap();
        out.flush().unwrap();
    }
}

/// Writes for ever through the C ABI, flushing every 100 writes and
/// printing how many writes the flush covered.
fn child_direct(config: &str) {
    let db = open(config);
    let mut out = std::io::stdout().lock();
    for i in 0.. {
        write(db, i, 0);
        if (i + 1) % 100 == 0 {
            assert_eq!(unsafe { ffi::tether_flush(db) }, Status::Ok);
            writeln!(out, "{}", i + 1).unwrap();
            out.flush().unwrap();
        }
    }
}

/// Writes key `i`, its name as its value, to bucket "crash".
fn write(db: *mut TetherDb, i: usize, flags: u32) {
    let (bucket, key) = (c"crash", CString::new(key(i)).unwrap());
    let status = unsafe {
        ffi::tether_write(
            db,
            ptr::null(),
            bucket.as_ptr(),
            key.as_ptr(),
            key.as_ptr().cast(),
            key.as_bytes().len(),
            flags,
        )
    };
    assert_eq!(status, Status::Ok, "{}", last_error());
}

fn open(config: &str) -> *mut TetherDb {
    let config = CString::new(config).unwrap();
    let mut db = ptr::null_mut();
    let status = unsafe { ffi::tether_open(config.as_ptr(), &mut db) };
    assert_eq!(status, Status::Ok, "{}", last_error());
    db
}

fn last_error() -> String {
    let message: *const c_char = ffi::tether_last_error();
    unsafe { std::ffi::CStr::from_ptr(message) }
        .to_string_lossy()
        .into_owned()
}

fn key(i: usize) -> String {
    format!("k{i:06}")
}

fn seed() -> u64 {
    match std::env::var("TETHER_CRASH_SEED") {
        Ok(seed) => seed.parse().expect("TETHER_CRASH_SEED is a number"),
        Err(_) => SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos() as u64,
    }
}
