//! Throttling and server errors on DynamoDB (issue 12, point 8), injected
//! by the proxy in front of moto (tests/common/moto.rs): a faulted request
//! is answered by the proxy and never forwarded, so it is certainly not
//! applied.
//!
//! A binary of its own: the SDK's standard retry mode draws its retries
//! from a retry quota that every client of the process for DynamoDB in one
//! region shares (500 tokens; a retry takes 5, 10 after a timeout or a
//! dropped connection; a retry that succeeds gives them back, a call that
//! succeeds at once adds one). Once it is spent, calls are no longer
//! retried. The tests here spend far less than that; the outage
//! tests of tests/dynamodb.rs, sharing the process, would make what is
//! left depend on the order the tests run in.
#![cfg(feature = "dynamodb")]

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::count;
use common::moto::{self, Fault, Faults, Moto, Proxy};
use tetherdb::{Db, Status};

/// The SDK's standard retry mode: three attempts in all.
const ATTEMPTS: usize = 3;

/// A handle on a new table whose requests go through a proxy in front of
/// moto, and the table's name; `None` (skip) when moto_server is missing
/// outside CI.
fn open_proxied(
    test: &str,
    extra: &str,
    queue_batch: &str,
) -> Option<(Db, Proxy, Arc<Moto>, String)> {
    let moto = moto::server()?;
    let proxy = Proxy::start(moto.addr);
    let table = moto::table(test);
    let config = moto::config(&proxy.url(), &table, extra, queue_batch);
    Some((Db::open_json(Some(&config)).unwrap(), proxy, moto, table))
}

/// Keys written more than once, with how many times.
fn written_twice(written: &HashMap<String, usize>) -> Vec<(&String, &usize)> {
    written.iter().filter(|(_, &n)| n != 1).collect()
}

/// Flushes until every queued write is applied. flush reports an outage
/// once batches have failed for the timeout; the writes stay queued and
/// the worker retries them meanwhile. The bound only keeps a broken worker
/// from hanging the test.
fn flush(db: &Db) {
    let mut flushed = db.flush();
    for _ in 0..600 {
        match &flushed {
            Err(e) if e.status() == Status::Unavailable => {
                std::thread::sleep(Duration::from_millis(100));
                flushed = db.flush();
            }
            _ => break,
        }
    }
    flushed.unwrap();
}

#[test]
fn a_share_of_throttling_and_server_errors_is_absorbed_by_the_sdk_retry() {
    let Some((db, proxy, _moto, _table)) = open_proxied("absorbed", "", r#"{"size": 25}"#) else {
        return;
    };
    // Every third request, of any operation, fails, with each fault in
    // turn: never two in a row, so each call's retry succeeds.
    proxy.state().faults = Some(Faults::every_nth(3, &Fault::ALL));
    for i in 0..60 {
        db.write(
            None,
            Some("a"),
            &format!("k{i:02}"),
            format!("v{i}").as_bytes(),
        )
        .unwrap();
    }
    for i in 0..60 {
        let value = db.read(None, Some("a"), &format!("k{i:02}")).unwrap();
        assert_eq!(value, format!("v{i}").as_bytes());
    }
    for i in (0..60).step_by(2) {
        db.update(None, Some("a"), &format!("k{i:02}"), b"updated")
            .unwrap();
    }
    // One Scan, in pages of 7.
    assert_eq!(common::all_pages(&db, Some("a"), None, 7).len(), 9);
    let state = proxy.state();
    let calls = [
        ("PutItem", 60),
        ("GetItem", 60),
        ("UpdateItem", 30),
        ("Scan", 9),
    ];
    for (operation, _) in calls {
        eprintln!(
            "{operation}: {} requests, {} faults",
            state.count(operation),
            state.injected(operation)
        );
    }
    // Each fault was followed by one retry, which went through. (The
    // faults take turns: each of the four kinds was given many times.)
    for (operation, calls) in calls {
        assert!(state.injected(operation) >= 2, "{operation} was faulted");
        assert_eq!(state.forwarded(operation), calls, "{operation}: one each");
        assert_eq!(
            state.count(operation),
            calls + state.injected(operation),
            "{operation}: each fault retried once"
        );
    }
    assert_eq!(state.written.len(), 60);
    assert!(
        written_twice(&state.written).is_empty(),
        "a faulted PutItem was not applied, its retry was: {:?}",
        written_twice(&state.written)
    );
    drop(state);
    proxy.state().faults = None;
    assert_eq!(db.read(None, Some("a"), "k00").unwrap(), b"updated");
    assert_eq!(db.read(None, Some("a"), "k01").unwrap(), b"v1");
    db.close().unwrap();
}

#[test]
fn a_call_failing_every_attempt_is_unavailable_and_names_the_cause() {
    let timeout = Duration::from_secs(2);
    let Some((db, proxy, _moto, _table)) = open_proxied(
        "exhausted",
        &format!(r#", "timeout": {}"#, timeout.as_secs_f64()),
        r#"{"size": 25}"#,
    ) else {
        return;
    };
    db.write(None, Some("b"), "k", b"before").unwrap();
    for (fault, cause) in [
        (
            Fault::ProvisionedThroughputExceeded,
            "ProvisionedThroughputExceededException: injected by the test proxy",
        ),
        (
            Fault::Throttling,
            "ThrottlingException: injected by the test proxy",
        ),
        (
            Fault::InternalServerError,
            "InternalServerError: injected by the test proxy",
        ),
        (Fault::ServiceUnavailable, "HTTP 503 Service Unavailable"),
    ] {
        proxy.state().faults = Some(Faults::all(fault));
        let before = proxy.state().requests.clone();
        let sent = |operation: &str| {
            proxy.state().count(operation) - before.get(operation).copied().unwrap_or(0)
        };

        let started = Instant::now();
        let err = db.write(None, Some("b"), "k", b"after").unwrap_err();
        let took = started.elapsed();
        assert_eq!(err.status(), Status::Unavailable, "{fault:?}: {err}");
        assert_eq!(
            err.to_string(),
            format!("dynamodb: key \"b:k\": unavailable: {cause}"),
            "{fault:?}"
        );
        // A hang check, not a performance figure: the SDK's retries end
        // within its operation timeout, the configured one.
        assert!(
            took < timeout + Duration::from_secs(10),
            "{fault:?}: {took:?}"
        );
        assert_eq!(sent("PutItem"), ATTEMPTS, "{fault:?}: the SDK retried");

        let err = db.read(None, Some("b"), "k").unwrap_err();
        assert_eq!(err.status(), Status::Unavailable, "{fault:?}: {err}");
        assert!(err.to_string().ends_with(cause), "{fault:?}: {err}");
        assert_eq!(sent("GetItem"), ATTEMPTS, "{fault:?}: the SDK retried");
        eprintln!("{fault:?}: {ATTEMPTS} attempts in {took:?}: {err}");
    }
    proxy.state().faults = None;
    // Nothing faulted was applied.
    assert_eq!(db.read(None, Some("b"), "k").unwrap(), b"before");
    assert_eq!(proxy.state().written["b:k"], 1);
    db.close().unwrap();
}

#[test]
fn queued_writes_under_throttling_and_server_errors_all_arrive_once() {
    // One batch in flight at a time: the first batch then meets every
    // throttling answer in a row, more than the SDK's attempts (several in
    // flight would share them).
    let Some((db, proxy, moto, table)) = open_proxied(
        "queued",
        "",
        r#"{"size": 25, "interval": 0.05, "in_flight": 1}"#,
    ) else {
        return;
    };
    {
        let mut state = proxy.state();
        // A third of the batches fail, at random (seeded) and with each
        // fault in turn; so that the worker's retry is certain to be
        // needed too, the first batch fails every attempt of the SDK.
        state.faults = Some(Faults::random(33, 0x7e7e_7d8b, &Fault::ALL).on(&["BatchWriteItem"]));
        state.throttle = ATTEMPTS;
    }
    const THREADS: usize = 4;
    const EACH: usize = 120;
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let db = &db;
            s.spawn(move || {
                for i in 0..EACH {
                    let value = format!("{t}/{i}");
                    db.write_queued(None, Some("q"), &format!("t{t}-{i:03}"), value.as_bytes())
                        .unwrap();
                }
            });
        }
    });
    flush(&db);

    let state = proxy.state();
    let batches = state.count("BatchWriteItem");
    let faulted = state.injected("BatchWriteItem");
    eprintln!(
        "BatchWriteItem: {batches} requests, {faulted} faults, at most {} for one batch; \
         {} keys written; stats: {}",
        state.faulted_bodies.values().max().unwrap_or(&0),
        state.written.len(),
        db.stats()
    );
    assert!(faulted > ATTEMPTS, "batches were faulted");
    let most = state.faulted_bodies.values().max().copied().unwrap_or(0);
    // Its writes arrive all the same (below): the worker sent them again.
    assert!(
        most >= ATTEMPTS,
        "a batch failed all the SDK's attempts (one batch in flight at a time): \
         {most} faults"
    );
    let total = THREADS * EACH;
    assert_eq!(state.written.len(), total, "every key reached moto");
    // A faulted batch was never forwarded, so nothing of it was applied:
    // resending it cannot write a key twice. (Against DynamoDB itself, a
    // batch applied whose answer is lost, e.g. to a timeout, would be
    // resent whole; the proxy injects no such fault.)
    assert!(
        written_twice(&state.written).is_empty(),
        "each key written exactly once: {:?}",
        written_twice(&state.written)
    );
    drop(state);
    db.close().unwrap();

    // What moto holds, through a handle without the proxy.
    let direct = Db::open_json(Some(&moto::config(&moto.url(), &table, "", "{}"))).unwrap();
    assert_eq!(count(&direct, "q"), total);
    for t in 0..THREADS {
        for i in [0, 1, EACH / 2, EACH - 1] {
            let value = direct
                .read(None, Some("q"), &format!("t{t}-{i:03}"))
                .unwrap();
            assert_eq!(value, format!("{t}/{i}").as_bytes());
        }
    }
    direct.close().unwrap();
}

#[test]
fn a_batch_failing_after_part_of_it_was_applied_resends_only_the_rest() {
    let Some((db, proxy, _moto, _table)) =
        open_proxied("partial", "", r#"{"size": 25, "interval": 60}"#)
    else {
        return;
    };
    {
        let mut state = proxy.state();
        // The first BatchWriteItem is half applied, the rest left
        // unprocessed; every attempt of the SDK to resend the rest fails.
        state.leave_unprocessed = 1;
        let hits = [false, true, true, true];
        state.faults = Some(Faults::pattern(&hits, &Fault::ALL).on(&["BatchWriteItem"]));
    }
    for i in 0..25 {
        db.write_queued(None, Some("p"), &format!("k{i:02}"), b"v")
            .unwrap();
    }
    flush(&db);
    let state = proxy.state();
    eprintln!(
        "BatchWriteItem: {} requests, {} faults; written: {:?}",
        state.count("BatchWriteItem"),
        state.injected("BatchWriteItem"),
        state.batch_written
    );
    assert_eq!(state.injected("BatchWriteItem"), 3);
    assert_eq!(state.written.len(), 25, "every key reached moto");
    assert!(
        written_twice(&state.written).is_empty(),
        "the applied half was not sent again: {:?}",
        written_twice(&state.written)
    );
    drop(state);
    assert_eq!(count(&db, "p"), 25);
    db.close().unwrap();
}
