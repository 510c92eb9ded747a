//! Queued writes (docs/c-api.md): the batch that fills, the interval, flush,
//! stop and start, a handle dropped, a queue of one.

use tetherdb::Status;

use crate::common::wait_until;
use crate::count;
use crate::engine::{cases, Space};

const QUICK: &str = r#"{"size": 10, "interval": 0.05}"#;

cases![
    queued_writes_are_applied_in_order_and_flush_waits_for_them,
    a_full_batch_goes_out_without_waiting_for_the_interval,
    a_trickle_is_sent_once_its_oldest_write_has_waited_the_interval,
    stop_applies_everything_and_start_resumes,
    dropping_a_handle_applies_its_queue,
    autostart_false_leaves_the_worker_stopped,
    a_tiny_queue_makes_writers_wait_instead_of_growing,
];

fn queued_writes_are_applied_in_order_and_flush_waits_for_them(s: &Space) {
    let db = s.open(r#"{"size": 1000, "interval": 3600}"#);
    for i in 0..100 {
        db.write_queued(None, Some("q"), "same", format!("{i}").as_bytes())
            .unwrap();
    }
    db.flush().unwrap();
    assert_eq!(
        db.read(None, Some("q"), "same").unwrap(),
        b"99",
        "the last queued write wins"
    );
}

fn a_full_batch_goes_out_without_waiting_for_the_interval(s: &Space) {
    let db = s.open(r#"{"size": 5, "interval": 3600}"#);
    for i in 0..9 {
        db.write_queued(None, Some("q"), &format!("k{i}"), b"v")
            .unwrap();
    }
    // Sent once five wait, with whatever else waits by then; fewer than
    // five left wait for more writes, the interval or a flush.
    wait_until(|| count(&db, "q") >= 5);
    db.flush().unwrap();
    assert_eq!(count(&db, "q"), 9);
}

fn a_trickle_is_sent_once_its_oldest_write_has_waited_the_interval(s: &Space) {
    let db = s.open(r#"{"size": 1000, "interval": 0.05}"#);
    db.write_queued(None, Some("q"), "lonely", b"v").unwrap();
    // No flush: the interval alone must send it.
    wait_until(|| match db.read(None, Some("q"), "lonely") {
        Ok(value) => {
            assert_eq!(value, b"v");
            true
        }
        Err(e) if e.status() == Status::NotFound => false,
        Err(e) => panic!("{e}"),
    });
}

fn stop_applies_everything_and_start_resumes(s: &Space) {
    let (before, after) = (s.bulk(20_000), s.bulk(5_000));
    let db = s.open(r#"{"size": 100, "interval": 2.0}"#);
    for i in 0..before {
        let value = format!("v{i}");
        db.write_queued(None, Some("drain"), &format!("a{i:05}"), value.as_bytes())
            .unwrap();
    }
    // The last queued write to a key wins, also within one batch.
    for round in 0..3 {
        db.write_queued(
            None,
            Some("drain"),
            "a00000",
            format!("last{round}").as_bytes(),
        )
        .unwrap();
    }
    db.stop().unwrap();
    assert_eq!(count(&db, "drain"), before);
    assert_eq!(db.read(None, Some("drain"), "a00000").unwrap(), b"last2");
    let last = before - 1;
    assert_eq!(
        db.read(None, Some("drain"), &format!("a{last:05}"))
            .unwrap(),
        format!("v{last}").as_bytes()
    );
    assert!(!db.is_running());

    let refused = db
        .write_queued(None, Some("drain"), "late", b"v")
        .unwrap_err();
    assert_eq!(refused.status(), Status::NotRunning);
    assert!(refused.to_string().contains("drain:late"), "{refused}");
    db.stop().unwrap(); // idempotent

    db.start().unwrap();
    db.start().unwrap(); // idempotent
    for i in 0..after {
        db.write_queued(None, Some("drain"), &format!("b{i:05}"), b"v")
            .unwrap();
    }
    db.close().unwrap();

    let db = s.open(QUICK);
    assert_eq!(count(&db, "drain"), before + after);
}

fn dropping_a_handle_applies_its_queue(s: &Space) {
    let writes = s.bulk(1_000);
    {
        let db = s.open(r#"{"size": 100, "interval": 3600}"#);
        for i in 0..writes {
            db.write_queued(None, Some("d"), &format!("k{i}"), b"v")
                .unwrap();
        }
    }
    assert_eq!(count(&s.open(QUICK), "d"), writes);
}

fn autostart_false_leaves_the_worker_stopped(s: &Space) {
    let db = s.open(r#"{"autostart": false}"#);
    assert!(!db.is_running());
    assert_eq!(
        db.write_queued(None, None, "k", b"v").unwrap_err().status(),
        Status::NotRunning
    );
    db.flush().unwrap();
    db.start().unwrap();
    db.write_queued(None, None, "k", b"v").unwrap();
    db.flush().unwrap();
    assert_eq!(db.read(None, None, "k").unwrap(), b"v");
}

fn a_tiny_queue_makes_writers_wait_instead_of_growing(s: &Space) {
    let writes = s.bulk(500);
    let db = s.open(r#"{"size": 3, "interval": 0.01, "capacity": 1}"#);
    std::thread::scope(|scope| {
        for t in 0..4 {
            let db = &db;
            scope.spawn(move || {
                for i in 0..writes {
                    db.write_queued(None, Some("tiny"), &format!("{t}-{i}"), b"v")
                        .unwrap();
                }
            });
        }
    });
    db.flush().unwrap();
    assert_eq!(count(&db, "tiny"), 4 * writes);
}
