//! Expiry (docs/design.md, Expiry): a key written with a ttl is absent for
//! every call from its deadline on, whatever the engine's own cleanup;
//! never before it. Ttls here are hundreds of milliseconds, and the cases
//! poll for what must come (with a bound that only keeps a broken build
//! from hanging) instead of sleeping and hoping; where a case checks that a
//! key is still there, it first waits until the deadline has surely passed,
//! as measured.

use std::ptr;
use std::time::{Duration, Instant, SystemTime};

use tetherdb::ffi::*;
use tetherdb::{Db, Status, WriteOptions};

use crate::common::{c, last_error, wait_until};
use crate::engine::{cases, Space};

const QUICK: &str = r#"{"size": 10, "interval": 0.05}"#;
const TTL: Duration = Duration::from_millis(300);
/// A ttl for keys that must outlive a few calls first, also on a loaded
/// machine where a call to a server can take a few hundred ms.
const ROOMY: Duration = Duration::from_secs(2);

cases![
    a_key_is_absent_for_every_call_from_its_deadline_on,
    a_plain_write_clears_a_deadline_and_update_keeps_it,
    sliding_reads_restart_the_ttl_and_listing_does_not,
    touch_sets_and_clears_a_deadline_of_a_present_key,
    a_queued_write_held_past_its_deadline_is_never_applied,
    conditions_on_a_key_with_a_deadline_see_its_version,
    calls_that_fail_leave_a_sliding_key_as_it_is,
    expired_keys_are_neither_listed_nor_counted_as_deleted,
    ttls_whose_deadline_overflows_are_invalid,
    c_entry_points_write_with_a_ttl_and_touch,
    peek_with_ttl_gives_the_time_left_and_restarts_no_sliding_ttl,
];

/// A moment on the system clock, which deadlines are in (docs/design.md,
/// Expiry): a ttl is measured on it. A monotonic clock can fall behind it
/// (the system clock stepped forward), and a key then looks expired early.
#[derive(Clone, Copy)]
struct Moment(SystemTime);

impl Moment {
    fn now() -> Moment {
        Moment(SystemTime::now())
    }

    fn elapsed(self) -> Duration {
        self.0.elapsed().unwrap_or_default()
    }

    fn since(self, earlier: Moment) -> Duration {
        self.0.duration_since(earlier.0).unwrap_or_default()
    }
}

fn with_ttl(ttl: Duration) -> WriteOptions {
    WriteOptions {
        ttl_ms: ttl.as_millis() as u64,
        ..WriteOptions::default()
    }
}

fn status<T: std::fmt::Debug>(result: tetherdb::Result<T>) -> Status {
    result.unwrap_err().status()
}

fn present(db: &Db, key: &str) -> bool {
    match db.read_ex(None, Some("e"), key, false) {
        Ok(_) => true,
        Err(err) if err.status() == Status::NotFound => false,
        Err(err) => panic!("{err}"),
    }
}

fn listed(db: &Db) -> Vec<String> {
    let page = db.list(None, Some("e"), None, None, 1000).unwrap();
    page.entries.into_iter().map(|e| e.key).collect()
}

/// Waits until `key` reads as absent, and checks it was not before `ttl`
/// had passed since `written` (taken before the write).
fn wait_for_expiry(db: &Db, key: &str, written: Moment, ttl: Duration) {
    wait_until(|| !present(db, key));
    assert!(
        written.elapsed() >= ttl,
        "{key} expired after {:?}, before its ttl of {ttl:?}",
        written.elapsed()
    );
}

/// The result of a call on a key that should be present, unless the
/// machine stalled so long that the key's ttl (from `written`) ran out
/// first: then `None`, and the case has nothing left to check.
fn unless_late<T>(written: Moment, ttl: Duration, result: tetherdb::Result<T>) -> Option<T> {
    match result {
        Ok(value) => Some(value),
        Err(err) if err.status() == Status::NotFound && written.elapsed() >= ttl => {
            eprintln!("the machine stalled past the key's ttl: nothing left to check");
            None
        }
        Err(err) => panic!("{err}"),
    }
}

/// Sleeps until `ttl` has surely passed since `written`.
fn sleep_past(written: Moment, ttl: Duration) {
    let past = ttl + Duration::from_millis(50);
    std::thread::sleep(past.saturating_sub(written.elapsed()));
}

fn a_key_is_absent_for_every_call_from_its_deadline_on(s: &Space) {
    let db = s.open(QUICK);
    db.write(None, Some("e"), "stays", b"no ttl").unwrap();
    let written = Moment::now();
    let first = db
        .write_ex(None, Some("e"), "k", b"short-lived", &with_ttl(TTL))
        .unwrap()
        .unwrap();
    let read = db.read(None, Some("e"), "k");
    if let Some(value) = unless_late(written, TTL, read) {
        assert_eq!(value, b"short-lived");
    }
    wait_for_expiry(&db, "k", written, TTL);
    // Absent for every call, not only for reads.
    assert_eq!(status(db.read(None, Some("e"), "k")), Status::NotFound);
    assert_eq!(listed(&db), ["stays"]);
    assert_eq!(
        status(db.update(None, Some("e"), "k", b"x")),
        Status::NotFound
    );
    assert_eq!(status(db.delete(None, Some("e"), "k")), Status::NotFound);
    assert_eq!(
        status(db.delete_ex(None, Some("e"), "k", Some(first))),
        Status::NotFound
    );
    assert_eq!(
        status(db.touch(None, Some("e"), "k", 1000)),
        Status::NotFound
    );
    let version = WriteOptions {
        if_version: Some(first),
        ..WriteOptions::default()
    };
    assert_eq!(
        status(db.write_ex(None, Some("e"), "k", b"x", &version)),
        Status::NotFound
    );
    // IF_ABSENT takes an expired key for absent, and the new version is
    // above the one that expired.
    let absent = WriteOptions {
        if_absent: true,
        ..WriteOptions::default()
    };
    let again = db
        .write_ex(None, Some("e"), "k", b"again", &absent)
        .unwrap()
        .unwrap();
    assert!(again > first, "{again} after {first}");
    assert_eq!(db.read(None, Some("e"), "k").unwrap(), b"again");
    assert_eq!(listed(&db), ["k", "stays"]);
    db.close().unwrap();
}

fn a_plain_write_clears_a_deadline_and_update_keeps_it(s: &Space) {
    let db = s.open(QUICK);
    let written = Moment::now();
    for key in ["cleared", "updated"] {
        db.write_ex(None, Some("e"), key, b"v", &with_ttl(ROOMY))
            .unwrap();
    }
    db.write(None, Some("e"), "cleared", b"for good").unwrap();
    let updated = db.update(None, Some("e"), "updated", b"new value");
    if unless_late(written, ROOMY, updated).is_none() {
        return;
    }
    wait_for_expiry(&db, "updated", written, ROOMY);
    sleep_past(written, ROOMY);
    assert_eq!(db.read(None, Some("e"), "cleared").unwrap(), b"for good");
    // A write with ttl 0 clears a deadline too.
    let written = Moment::now();
    db.write_ex(None, Some("e"), "zero", b"v", &with_ttl(TTL))
        .unwrap();
    db.write_ex(None, Some("e"), "zero", b"w", &WriteOptions::default())
        .unwrap();
    sleep_past(written, TTL);
    assert_eq!(db.read(None, Some("e"), "zero").unwrap(), b"w");
    db.close().unwrap();
}

fn sliding_reads_restart_the_ttl_and_listing_does_not(s: &Space) {
    let db = s.open(QUICK);
    // A ttl long beside the pause between reads, so that only a stall of
    // the whole machine makes a gap as long as the ttl; such a gap is told
    // apart below, not taken for a failure.
    let ttl = Duration::from_millis(1000);
    let sliding = WriteOptions {
        sliding: true,
        ..with_ttl(ttl)
    };
    db.write_ex(None, Some("e"), "k", b"v", &sliding).unwrap();
    let mut last_read = Moment::now();
    let reading_until = Instant::now() + 3 * ttl;
    while Instant::now() < reading_until {
        std::thread::sleep(Duration::from_millis(50));
        let before = Moment::now();
        match db.read(None, Some("e"), "k") {
            Ok(value) => assert_eq!(value, b"v"),
            Err(err) => {
                assert_eq!(err.status(), Status::NotFound, "{err}");
                assert!(
                    before.since(last_read) >= ttl,
                    "expired {:?} after the read before, within its sliding ttl",
                    before.since(last_read)
                );
                return;
            }
        }
        last_read = before;
    }
    // Read for three ttls, so the reads kept it; listing does not, and it
    // expires.
    wait_until(|| listed(&db).is_empty());
    assert!(last_read.elapsed() >= ttl, "expired before its ttl");
    assert!(!present(&db, "k"));
    db.close().unwrap();
}

fn touch_sets_and_clears_a_deadline_of_a_present_key(s: &Space) {
    let db = s.open(QUICK);
    assert_eq!(
        status(db.touch(None, Some("e"), "absent", 1000)),
        Status::NotFound
    );
    db.write(None, Some("e"), "k", b"kept").unwrap();
    let (_, version) = db.read_ex(None, Some("e"), "k", true).unwrap();
    let touched = Moment::now();
    db.touch(None, Some("e"), "k", ROOMY.as_millis() as u64)
        .unwrap();
    let read = db.read_ex(None, Some("e"), "k", true);
    if let Some((value, after)) = unless_late(touched, ROOMY, read) {
        assert_eq!(value, b"kept");
        assert!(after >= version, "{after} after {version}");
    }
    wait_for_expiry(&db, "k", touched, ROOMY);

    let written = Moment::now();
    db.write_ex(None, Some("e"), "k", b"again", &with_ttl(ROOMY))
        .unwrap();
    let touched = db.touch(None, Some("e"), "k", 0);
    if unless_late(written, ROOMY, touched).is_none() {
        return;
    }
    sleep_past(written, ROOMY);
    assert_eq!(db.read(None, Some("e"), "k").unwrap(), b"again");
    db.close().unwrap();
}

fn a_queued_write_held_past_its_deadline_is_never_applied(s: &Space) {
    // The worker waits 1.5 s for a batch to fill: longer than the ttl.
    let db = s.open(r#"{"size": 100, "interval": 1.5}"#);
    db.write(None, Some("e"), "k", b"before").unwrap();
    let queued = WriteOptions {
        queue: true,
        ..with_ttl(TTL)
    };
    let written = Moment::now();
    db.write_ex(None, Some("e"), "k", b"late", &queued).unwrap();
    db.write_ex(
        None,
        Some("e"),
        "fresh",
        b"x",
        &WriteOptions {
            queue: true,
            ..with_ttl(Duration::from_secs(600))
        },
    )
    .unwrap();
    sleep_past(written, TTL);
    db.flush().unwrap();
    // Not applied: the key keeps what it had.
    assert_eq!(db.read(None, Some("e"), "k").unwrap(), b"before");
    assert_eq!(db.read(None, Some("e"), "fresh").unwrap(), b"x");
    let stats = &db.stats()["backends"][s.name()];
    assert_eq!(stats["expired"], 1, "{stats}");
    assert_eq!(stats["applied"], 1, "{stats}");
    assert_eq!(stats["failed"], 0, "{stats}");
    // One applied in time expires as a direct write does.
    let written = Moment::now();
    db.write_ex(None, Some("e"), "soon", b"y", &queued).unwrap();
    db.flush().unwrap();
    wait_for_expiry(&db, "soon", written, TTL);
    db.close().unwrap();
}

fn conditions_on_a_key_with_a_deadline_see_its_version(s: &Space) {
    let db = s.open(QUICK);
    let long = with_ttl(Duration::from_secs(600));
    let v1 = db
        .write_ex(None, Some("e"), "k", b"one", &long)
        .unwrap()
        .unwrap();
    let at = |version| WriteOptions {
        if_version: Some(version),
        ..with_ttl(Duration::from_secs(600))
    };
    let v2 = db
        .write_ex(None, Some("e"), "k", b"two", &at(v1))
        .unwrap()
        .unwrap();
    assert!(v2 > v1);
    assert_eq!(
        status(db.write_ex(None, Some("e"), "k", b"stale", &at(v1))),
        Status::Conflict
    );
    let absent = WriteOptions {
        if_absent: true,
        ..WriteOptions::default()
    };
    assert_eq!(
        status(db.write_ex(None, Some("e"), "k", b"x", &absent)),
        Status::Conflict
    );
    db.update(None, Some("e"), "k", b"three").unwrap();
    let (value, v3) = db.read_ex(None, Some("e"), "k", true).unwrap();
    assert_eq!(value, b"three");
    assert!(v3 > v2);
    assert_eq!(
        status(db.delete_ex(None, Some("e"), "k", Some(v2))),
        Status::Conflict
    );
    db.delete_ex(None, Some("e"), "k", Some(v3)).unwrap();
    assert!(!present(&db, "k"));
    db.write_ex(None, Some("e"), "k", b"again", &long).unwrap();
    db.delete(None, Some("e"), "k").unwrap();
    assert_eq!(status(db.delete(None, Some("e"), "k")), Status::NotFound);
    db.close().unwrap();
}

/// The library reads a key before an increment and to settle a condition
/// on version 0; those reads are its own, not the caller's, so a call that
/// fails changes nothing: not the deadline of a sliding key, and so (on
/// etcd, where moving it rewrites the key) not its version either.
fn calls_that_fail_leave_a_sliding_key_as_it_is(s: &Space) {
    let db = s.open(QUICK);
    let sliding = WriteOptions {
        sliding: true,
        ..with_ttl(Duration::from_secs(600))
    };
    let version = db
        .write_ex(None, Some("e"), "k", b"not a number", &sliding)
        .unwrap()
        .unwrap();
    let at = |version| WriteOptions {
        if_version: Some(version),
        ..WriteOptions::default()
    };
    for _ in 0..3 {
        let increment = db.increment(None, Some("e"), "k", 1, 0, true);
        assert_eq!(status(increment), Status::Conflict);
        let total = db.counter_total(None, Some("e"), "k", 0);
        assert_eq!(status(total), Status::Conflict);
        let write = db.write_ex(None, Some("e"), "k", b"x", &at(0));
        assert_eq!(status(write), Status::Conflict);
        let delete = db.delete_ex(None, Some("e"), "k", Some(0));
        assert_eq!(status(delete), Status::Conflict);
    }
    // Still at the version written: a write at it goes through.
    let next = db
        .write_ex(None, Some("e"), "k", b"kept", &at(version))
        .unwrap()
        .unwrap();
    assert!(next > version);
    db.close().unwrap();
}

fn expired_keys_are_neither_listed_nor_counted_as_deleted(s: &Space) {
    let db = s.open(QUICK);
    let written = Moment::now();
    for i in 0..5 {
        db.write_ex(None, Some("e"), &format!("gone{i}"), b"v", &with_ttl(TTL))
            .unwrap();
        db.write(None, Some("e"), &format!("kept{i}"), b"v")
            .unwrap();
    }
    wait_until(|| listed(&db).len() == 5);
    assert!(written.elapsed() >= TTL);
    let keys = db.list_keys(None, Some("e"), None, None, 100).unwrap();
    assert_eq!(keys.keys, ["kept0", "kept1", "kept2", "kept3", "kept4"]);
    // The expired keys may still be in the engine (a lease not ended, an
    // item DynamoDB has not deleted): deleting the bucket counts only the
    // keys that were there for calls.
    assert_eq!(db.delete_prefix(None, Some("e"), None).unwrap(), 5);
    assert!(listed(&db).is_empty());
    db.close().unwrap();
}

fn ttls_whose_deadline_overflows_are_invalid(s: &Space) {
    let db = s.open(QUICK);
    for ttl_ms in [u64::MAX, i64::MAX as u64] {
        let err = db
            .write_ex(
                None,
                Some("e"),
                "k",
                b"v",
                &WriteOptions {
                    ttl_ms,
                    ..WriteOptions::default()
                },
            )
            .unwrap_err();
        assert_eq!(err.status(), Status::InvalidArgument, "{ttl_ms}: {err}");
        assert!(err.to_string().contains("ttl_ms"), "{err}");
    }
    db.write(None, Some("e"), "k", b"v").unwrap();
    assert_eq!(
        status(db.touch(None, Some("e"), "k", u64::MAX)),
        Status::InvalidArgument
    );
    // A ttl of years is a deadline like any other.
    let years = 10 * 365 * 24 * 3600 * 1000;
    db.write_ex(
        None,
        Some("e"),
        "k",
        b"v",
        &with_ttl(Duration::from_millis(years)),
    )
    .unwrap();
    assert_eq!(db.read(None, Some("e"), "k").unwrap(), b"v");
    db.close().unwrap();
}

/// `tether_write_ex` with a ttl and `tether_touch`, as a C caller drives
/// them.
fn c_entry_points_write_with_a_ttl_and_touch(s: &Space) {
    let config = c(&s.config(QUICK));
    let (bucket, key, value) = (c("e"), c("k"), b"v");
    unsafe {
        let mut db = ptr::null_mut();
        assert_eq!(tether_open(config.as_ptr(), &mut db), Status::Ok);
        let written = Moment::now();
        let mut version = 0;
        let status = tether_write_ex(
            db,
            ptr::null(),
            bucket.as_ptr(),
            key.as_ptr(),
            value.as_ptr(),
            value.len(),
            TETHER_SLIDING,
            60_000,
            0,
            &mut version,
        );
        assert_eq!(status, Status::Ok, "{}", last_error());
        assert!(version > 0);
        // Touched to a fixed deadline: no longer sliding.
        let status = tether_touch(db, ptr::null(), bucket.as_ptr(), key.as_ptr(), 300);
        assert_eq!(status, Status::Ok, "{}", last_error());
        let exists = || {
            let mut found = 0;
            tether_read_ex(
                db,
                ptr::null(),
                bucket.as_ptr(),
                key.as_ptr(),
                ptr::null_mut(),
                ptr::null_mut(),
                &mut found,
            )
        };
        wait_until(|| exists() == Status::NotFound);
        assert!(written.elapsed() >= TTL);
        let status = tether_touch(db, ptr::null(), bucket.as_ptr(), key.as_ptr(), 300);
        assert_eq!(status, Status::NotFound);
        let status = tether_touch(db, ptr::null(), bucket.as_ptr(), ptr::null(), 300);
        assert_eq!(status, Status::InvalidArgument);
        assert_eq!(
            tether_touch(
                ptr::null_mut(),
                ptr::null(),
                bucket.as_ptr(),
                key.as_ptr(),
                1
            ),
            Status::InvalidArgument
        );
        assert_eq!(tether_close(db), Status::Ok);
    }
}

/// `Db::peek_with_ttl`, what `tether export` reads: the value and the time
/// left, for a key without a deadline none; a peek, so a key with a
/// sliding ttl peeked at all along still expires.
fn peek_with_ttl_gives_the_time_left_and_restarts_no_sliding_ttl(s: &Space) {
    let db = s.open(QUICK);
    assert_eq!(
        status(db.peek_with_ttl(None, Some("e"), "absent")),
        Status::NotFound
    );
    db.write(None, Some("e"), "plain", b"kept").unwrap();
    assert_eq!(
        db.peek_with_ttl(None, Some("e"), "plain").unwrap(),
        (b"kept".to_vec(), None)
    );
    let written = Moment::now();
    let sliding = WriteOptions {
        sliding: true,
        ..with_ttl(ROOMY)
    };
    db.write_ex(None, Some("e"), "k", b"v", &sliding).unwrap();
    let peeked = db.peek_with_ttl(None, Some("e"), "k");
    let Some((value, left)) = unless_late(written, ROOMY, peeked) else {
        return;
    };
    assert_eq!(value, b"v");
    let left = left.expect("a key written with a ttl has a deadline");
    assert!(
        (1..=ROOMY.as_millis() as u64).contains(&left),
        "{left} ms left of a ttl of {ROOMY:?}"
    );
    // A page at a time (`Db::peek_many_with_ttl`, what `tether export`
    // reads): the same answers in the keys' order, an absent key `None`.
    let keys = ["plain", "absent", "k"].map(String::from);
    let many = db.peek_many_with_ttl(None, Some("e"), &keys).unwrap();
    assert_eq!(many.len(), 3);
    assert_eq!(many[0], Some((b"kept".to_vec(), None)));
    assert_eq!(many[1], None);
    match &many[2] {
        Some((value, left)) => {
            assert_eq!(value, b"v");
            let left = left.expect("the deadline read in a batch too");
            assert!(
                (1..=ROOMY.as_millis() as u64).contains(&left),
                "{left} ms left of a ttl of {ROOMY:?}"
            );
        }
        None => assert!(written.elapsed() >= ROOMY, "k gone before its ttl"),
    }
    assert_eq!(
        status(db.peek_many_with_ttl(None, Some("e:x"), &keys)),
        Status::InvalidArgument
    );
    // Peeking every 10 ms: were a peek to restart the ttl, the key would
    // stay, and wait_until would give up.
    wait_until(|| match db.peek_with_ttl(None, Some("e"), "k") {
        Ok((_, left)) => {
            let left = left.expect("the deadline stays");
            assert!(left <= ROOMY.as_millis() as u64, "{left} ms left");
            false
        }
        Err(err) if err.status() == Status::NotFound => true,
        Err(err) => panic!("{err}"),
    });
    assert!(written.elapsed() >= ROOMY, "expired before its ttl");
    db.close().unwrap();
}
