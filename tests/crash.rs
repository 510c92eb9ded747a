//! Crashes: a child process — this same binary, run with an argument — is
//! killed with SIGKILL at a random moment, and what it was told had been
//! stored must be there afterwards. One test per row of the durability
//! table in the docs:
//!
//! | writes to `local` | after kill -9, the store holds |
//! |---|---|
//! | queued, `queue_batch.sync` on | every write whose `tether_write` returned |
//! | queued, `queue_batch.sync` off | every write acknowledged 1 s or more before the kill |
//! | direct, then `tether_flush` | every write before the last `tether_flush` that returned |
//!
//! and, for a remote backend, queued writes with `sync` on to an etcd that
//! is down: every acknowledged write reaches etcd once it is back.
//!
//! The local children write as fast as they can and print how many writes
//! are acknowledged every 100 writes; the parent stamps each line as it
//! reads it (no earlier than the acknowledgement) and kills the child at a
//! random moment, `TETHER_CRASH_RUNS` times (default 20) per row. The seed
//! is printed, and `TETHER_CRASH_SEED` replays it.

mod common;

use std::collections::HashSet;
use std::ffi::CString;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::ptr;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use common::etcd::outbox_path::new_outbox_path;
use common::etcd::Etcd;
use common::{last_error, wait_until};
use tetherdb::ffi::{self, TetherDb, TETHER_QUEUE};
use tetherdb::{Db, Status};

/// With `queue_batch.sync` off, what the docs allow a crash to lose: the
/// writes acknowledged in the last second before it.
const LOSS_WINDOW: Duration = Duration::from_secs(1);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("child-queued") => child_queued(&args[2]),
        Some("child-count") => child_count(&args[2], true),
        Some("child-flush") => child_count(&args[2], false),
        _ => {
            let mut seed = seed();
            println!("crash tests, seed {seed} (TETHER_CRASH_SEED={seed} replays it)");
            let runs = std::env::var("TETHER_CRASH_RUNS")
                .map_or(20, |r| r.parse().expect("TETHER_CRASH_RUNS is a number"));
            let rows = [
                (
                    "queued, sync on",
                    r#"{"sync": true}"#,
                    "child-count",
                    Duration::ZERO,
                ),
                ("queued, sync off", "{}", "child-count", LOSS_WINDOW),
                (
                    "direct, then tether_flush",
                    "{}",
                    "child-flush",
                    Duration::ZERO,
                ),
            ];
            for (row, queue_batch, role, window) in rows {
                let (mut checked, mut writes) = (0, 0);
                for _ in 0..runs {
                    seed = next(seed);
                    let (acknowledged, written) = local_run(queue_batch, role, window, seed);
                    checked += acknowledged;
                    writes += written;
                }
                println!(
                    "local, {row}: {runs} runs, {writes} writes acknowledged, {checked} of them \
                     within the promise, all found after kill -9; 0 lost"
                );
            }
            queued_writes_acknowledged_with_sync_survive_kill_9(seed);
            println!("crash tests passed");
        }
    }
}

/// One run of a local row: the child is killed 0.2 to 2 s after its first
/// acknowledgement. Returns how many acknowledged writes the promise
/// covered, all checked, and how many the child reported in all.
fn local_run(queue_batch: &str, role: &str, window: Duration, seed: u64) -> (usize, usize) {
    let dir = tempfile::tempdir().unwrap();
    let config = common::config(dir.path(), queue_batch);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([role, &config])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (lines, stamped) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let count: usize = line.parse().unwrap();
            if lines.send((Instant::now(), count)).is_err() {
                return;
            }
        }
    });
    let (first, _) = stamped
        .recv_timeout(Duration::from_secs(120))
        .expect("the child acknowledges writes");
    let kill_at = first + Duration::from_millis(200 + seed % 1800);
    std::thread::sleep(kill_at.saturating_duration_since(Instant::now()));
    child.kill().unwrap();
    let killed = Instant::now();
    let status = child.wait().unwrap();
    assert!(!status.success(), "the child was to be killed, not end");
    // Lines read before the kill returned are all there is.
    let reports: Vec<(Instant, usize)> = stamped.try_iter().collect();
    let written = reports.iter().map(|(_, n)| *n).max().unwrap_or(0);
    // Every line was printed before the kill, but some are read after it:
    // with a window, those count as acknowledged at the kill.
    let promised = match window.is_zero() {
        true => written,
        false => reports
            .iter()
            .filter(|(at, _)| *at + window <= killed)
            .map(|(_, n)| *n)
            .max()
            .unwrap_or(0),
    };

    let db = Db::open_json(Some(&config)).expect("the store opens after kill -9");
    wait_until(|| db.flush().is_ok());
    let stored: HashSet<String> = common::all_pages(&db, Some("crash"), None, 10_000)
        .into_iter()
        .flat_map(|page| page.entries.into_iter().map(|e| e.key))
        .collect();
    db.close().unwrap();
    let lost: Vec<usize> = (0..promised)
        .filter(|i| !stored.contains(&key(*i)))
        .collect();
    assert!(
        lost.is_empty(),
        "{config}: {} of {promised} acknowledged writes lost after kill -9 (the first: {}; \
         {written} acknowledged in all; seed {seed})",
        lost.len(),
        lost[0]
    );
    (promised, written)
}

/// Writes for ever through the C ABI, queued or direct, printing how many
/// writes are acknowledged every 100: after the writes returned, or, with
/// `flush`, after the `tether_flush` that follows them returned.
fn child_count(config: &str, queued: bool) {
    let db = open(config);
    let mut out = std::io::stdout().lock();
    let flags = if queued { TETHER_QUEUE } else { 0 };
    for i in 0.. {
        write(db, i, flags);
        if (i + 1) % 100 == 0 {
            if !queued {
                assert_eq!(unsafe { ffi::tether_flush(db) }, Status::Ok);
            }
            writeln!(out, "{}", i + 1).unwrap();
            out.flush().unwrap();
        }
    }
}

fn next(seed: u64) -> u64 {
    // splitmix64: varied kill moments from one printed seed.
    let z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
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
