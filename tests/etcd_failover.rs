//! Issue 12, point 7: a 3-member etcd cluster loses its leader (SIGKILL)
//! while 8 threads write, directly and through the queue. Direct calls
//! fail with `TETHER_UNAVAILABLE`, each within the configured timeout, and
//! only until the timeout after the cluster has a leader again; then they
//! succeed. Every queued write and every acknowledged direct write is in
//! the cluster afterwards, as etcdctl sees it.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::etcd::Cluster;
use common::wait_until;
use tetherdb::{Db, Status};

/// `etcd.timeout`, in seconds: short, so that the test is.
const TIMEOUT: f64 = 2.0;
const THREADS: usize = 8;
/// Direct writes each thread has acknowledged before the kill, and makes
/// after the window in which failures may start.
const WRITES_BEFORE: usize = 20;
const WRITES_AFTER: usize = 20;
/// Failed calls listed in full; the rest are counted.
const LISTED: usize = 20;

/// One direct write: when it started and returned, and how it ended.
struct Call {
    key: String,
    started: Instant,
    returned: Instant,
    outcome: Result<(), (Status, String)>,
}

/// What one writer did.
#[derive(Default)]
struct Log {
    direct: Vec<Call>,
    queued: Vec<String>,
}

#[test]
fn killing_the_leader_fails_direct_writes_for_at_most_the_timeout_and_loses_none() {
    let Some(mut cluster) = Cluster::start() else {
        return;
    };
    let timeout = Duration::from_secs_f64(TIMEOUT);
    let outbox = tempfile::tempdir().unwrap();
    let queue_batch = format!(
        r#"{{"size": 64, "interval": 0.02, "outbox_path": {:?}}}"#,
        outbox.path().join("outbox")
    );
    let extra = format!(r#""timeout": {TIMEOUT}"#);
    let db = Db::open_json(Some(&cluster.config(&queue_batch, &extra))).unwrap();

    // Until when a failing call may start: the timeout after the survivors
    // have a new leader. Calls in flight through the dead leader fail at
    // their timeout, as may calls made during the election (which is
    // etcd's: 1 to 2 s with its default settings, more after a split vote
    // or on a loaded machine); once there is a leader, a call the dead
    // member refuses goes to another member.
    let failures_end: OnceLock<Instant> = OnceLock::new();
    let logs: Vec<Mutex<Log>> = (0..THREADS).map(|_| Mutex::default()).collect();
    let given_up = AtomicBool::new(false);
    let (killed, elected) = std::thread::scope(|scope| {
        for (thread, log) in logs.iter().enumerate() {
            let (db, failures_end, given_up) = (&db, &failures_end, &given_up);
            scope.spawn(move || {
                for i in 0.. {
                    if given_up.load(Ordering::Relaxed) {
                        return;
                    }
                    let key = format!("d-{thread}-{i:06}");
                    let started = Instant::now();
                    let result = db.write(None, Some("f"), &key, key.as_bytes());
                    let returned = Instant::now();
                    let queued = format!("q-{thread}-{i:06}");
                    db.write_queued(None, Some("f"), &queued, queued.as_bytes())
                        .unwrap();
                    let mut log = log.lock().unwrap();
                    log.queued.push(queued);
                    log.direct.push(Call {
                        key,
                        started,
                        returned,
                        outcome: result.map_err(|e| (e.status(), e.to_string())),
                    });
                    // On until enough calls started after failures had to.
                    if let Some(&end) = failures_end.get() {
                        let after = log.direct.iter().filter(|c| c.started > end).count();
                        if after >= WRITES_AFTER {
                            return;
                        }
                    }
                }
            });
        }

        // Should this thread panic, the writers stop, and the scope ends.
        let _stop = StopOnPanic(&given_up);
        // Every writer is under way before the leader dies.
        wait_until(|| {
            logs.iter().all(|log| {
                let log = log.lock().unwrap();
                log.direct.iter().filter(|c| c.outcome.is_ok()).count() >= WRITES_BEFORE
            })
        });
        let leader = cluster.leader();
        let killed = Instant::now();
        cluster.kill(leader);
        let new_leader = cluster.leader();
        let elected = Instant::now();
        failures_end.set(elected + timeout).unwrap();
        eprintln!(
            "killed member {leader} (the leader) of {:?}; member {new_leader} leads {:?} later",
            cluster.endpoints(),
            elected - killed
        );
        (killed, elected)
    });
    let failures_end = *failures_end.get().unwrap();

    // Every queued write reaches the surviving members.
    let give_up = Instant::now() + Duration::from_secs(120);
    while let Err(err) = db.flush() {
        assert_eq!(err.status(), Status::Unavailable, "{err}");
        assert!(Instant::now() < give_up, "flush still fails: {err}");
        std::thread::sleep(Duration::from_millis(10));
    }

    let logs: Vec<Log> = logs.into_iter().map(|l| l.into_inner().unwrap()).collect();
    let calls: Vec<&Call> = logs.iter().flat_map(|l| &l.direct).collect();
    let failures: Vec<&Call> = calls
        .iter()
        .copied()
        .filter(|c| c.outcome.is_err())
        .collect();
    let acknowledged: Vec<&str> = calls
        .iter()
        .filter(|c| c.outcome.is_ok())
        .map(|c| c.key.as_str())
        .collect();
    let queued: Vec<&str> = logs
        .iter()
        .flat_map(|l| &l.queued)
        .map(String::as_str)
        .collect();
    let stored: BTreeMap<String, Vec<u8>> = cluster
        .kvs("f:")
        .into_iter()
        .map(|kv| (kv.key, kv.value))
        .collect();
    // Each value is its key, bucket left out.
    let is_stored =
        |key: &str| stored.get(&format!("f:{key}")).map(Vec::as_slice) == Some(key.as_bytes());

    // The figures first, so that a failing run shows them too.
    let recovered = calls
        .iter()
        .filter(|c| c.outcome.is_ok() && c.started > killed)
        .map(|c| c.returned)
        .min();
    eprintln!(
        "recovery: the first direct write started after the kill succeeded {:?} after it",
        recovered.map(|t| t - killed)
    );
    eprintln!(
        "direct writes: {} acknowledged, {} failed ({} of those stored nonetheless, \
         the last returned {:+.3} s after the kill), {} started after the window for failures",
        acknowledged.len(),
        failures.len(),
        failures.iter().filter(|c| is_stored(&c.key)).count(),
        failures
            .iter()
            .map(|c| signed_secs(c.returned, killed))
            .fold(f64::NAN, f64::max),
        calls.iter().filter(|c| c.started > failures_end).count(),
    );
    eprintln!("queued writes: {} checked", queued.len());
    for call in failures.iter().take(LISTED) {
        let (status, message) = call.outcome.as_ref().unwrap_err();
        eprintln!(
            "  {} started {:+.3} s, returned {:+.3} s after the kill: {status:?}: {message}",
            call.key,
            signed_secs(call.started, killed),
            signed_secs(call.returned, killed),
        );
    }
    if failures.len() > LISTED {
        eprintln!("  and {} more", failures.len() - LISTED);
    }

    for call in &failures {
        let (status, message) = call.outcome.as_ref().unwrap_err();
        assert_eq!(
            *status,
            Status::Unavailable,
            "{} failed otherwise than as unavailable: {message}",
            call.key
        );
        assert!(
            call.started < failures_end,
            "{} started {:.3} s after the new leader, past the timeout, and failed",
            call.key,
            signed_secs(call.started, elected)
        );
        // The timeout, and as much again for a thread that a loaded machine
        // keeps from running once its timer has fired.
        assert!(
            call.returned - call.started < 2 * timeout,
            "{} took {:?} to fail",
            call.key,
            call.returned - call.started
        );
    }
    assert!(
        recovered.is_some(),
        "no direct write succeeded after the kill"
    );
    // Every acknowledged write is there; a failed one, sent just before
    // the kill, may or may not be.
    let missing: Vec<&&str> = acknowledged
        .iter()
        .chain(&queued)
        .filter(|k| !is_stored(k))
        .collect();
    assert!(missing.is_empty(), "missing from the cluster: {missing:?}");
    db.close().unwrap();
}

/// Sets its flag when dropped by a panicking thread.
struct StopOnPanic<'a>(&'a AtomicBool);

impl Drop for StopOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.store(true, Ordering::Relaxed);
        }
    }
}

/// `t - origin` in seconds, negative when `t` is earlier.
fn signed_secs(t: Instant, origin: Instant) -> f64 {
    match t.checked_duration_since(origin) {
        Some(d) => d.as_secs_f64(),
        None => -(origin - t).as_secs_f64(),
    }
}
