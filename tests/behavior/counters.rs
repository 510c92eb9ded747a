//! Counters (docs/c-api.md, docs/design.md Counters): `tether_increment`
//! and `tether_counter_total`, through the safe Rust API and the C ABI.
//! The value is decimal text any reader sees as such; what is no counter,
//! and sums beyond 64 bits, are conflicts that change nothing; a sharded
//! counter lives in the keys `KEY#shard0`… of its bucket. Races between
//! threads and processes are in races.rs.

use std::collections::BTreeSet;
use std::ptr;

use tetherdb::ffi::*;
use tetherdb::{Db, Error, Status};

use crate::common::{c, last_error};
use crate::engine::{cases, Space};

const QUICK: &str = r#"{"size": 10, "interval": 0.05}"#;

cases![
    increments_count_from_absent_and_store_decimal_text,
    values_that_are_no_counter_are_conflicts_and_stay,
    sums_beyond_64_bits_are_conflicts_and_change_nothing,
    sharded_counters_spread_over_their_shard_keys,
    a_shard_that_is_no_counter_fails_the_total,
    counter_arguments_are_checked,
    c_entry_points_increment_and_total,
];

/// Adds `delta` to the counter `key` of bucket `c`, and gives its value.
fn incr(db: &Db, key: &str, delta: i64) -> tetherdb::Result<i64> {
    db.increment(None, Some("c"), key, delta, 0, true)
        .map(|value| value.expect("an unsharded increment gives its value"))
}

fn read(db: &Db, key: &str) -> Vec<u8> {
    db.read(None, Some("c"), key).unwrap()
}

fn version(db: &Db, key: &str) -> u64 {
    db.read_ex(None, Some("c"), key, false).unwrap().1
}

fn total(db: &Db, key: &str, shards: u32) -> tetherdb::Result<i64> {
    db.counter_total(None, Some("c"), key, shards)
}

fn increments_count_from_absent_and_store_decimal_text(s: &Space) {
    let db = s.open(QUICK);
    assert_eq!(total(&db, "n", 0).unwrap(), 0);
    assert_eq!(
        db.read(None, Some("c"), "n").unwrap_err().status(),
        Status::NotFound,
        "reading a total wrote the key"
    );
    assert_eq!(incr(&db, "n", 5).unwrap(), 5);
    assert_eq!(read(&db, "n"), b"5");
    assert_eq!(incr(&db, "n", 37).unwrap(), 42);
    // A plain read sees the text, as etcdctl and the Python TetherDB do.
    assert_eq!(read(&db, "n"), b"42");
    assert_eq!(incr(&db, "n", -50).unwrap(), -8);
    assert_eq!(read(&db, "n"), b"-8");
    assert_eq!(total(&db, "n", 0).unwrap(), -8);
    assert_eq!(total(&db, "n", 1).unwrap(), -8);

    // Every increment is a change: the version grows, by 0 too.
    let before = version(&db, "n");
    assert_eq!(incr(&db, "n", 0).unwrap(), -8);
    assert!(version(&db, "n") > before);
    // An increment by 0 creates an absent key as "0".
    assert_eq!(incr(&db, "zero", 0).unwrap(), 0);
    assert_eq!(read(&db, "zero"), b"0");

    // A value written as text counts on from there.
    db.write(None, Some("c"), "written", b"41").unwrap();
    assert_eq!(incr(&db, "written", 1).unwrap(), 42);
    assert_eq!(read(&db, "written"), b"42");
    // The bucket is part of the key; shards 1 is the key itself.
    assert_eq!(
        db.increment(None, None, "n", 1, 1, true).unwrap(),
        Some(1),
        "the key without a bucket is another counter"
    );
    assert_eq!(db.read(None, None, "c:n").unwrap(), b"-8");
    // Without asking for the value, it is still given where it is free.
    assert_eq!(
        db.increment(None, Some("c"), "n", 8, 0, false).unwrap(),
        Some(0)
    );
    // A deleted counter starts again from 0.
    db.delete(None, Some("c"), "n").unwrap();
    assert_eq!(incr(&db, "n", 3).unwrap(), 3);
    db.close().unwrap();
}

fn values_that_are_no_counter_are_conflicts_and_stay(s: &Space) {
    let db = s.open(QUICK);
    let bad: &[&[u8]] = &[
        b"",
        b"abc",
        b" 5",
        b"5 ",
        b"5\n",
        b"1_000",
        b"1.5",
        b"1e3",
        b"0x10",
        b"-",
        b"9223372036854775808",
        b"\xff\xfe",
        b"4\x002",
    ];
    for value in bad {
        db.write(None, Some("c"), "bad", value).unwrap();
        let before = version(&db, "bad");
        let err = incr(&db, "bad", 1).unwrap_err();
        assert_eq!(err.status(), Status::Conflict, "{value:?}: {err}");
        assert!(
            matches!(&err, Error::Conflict { backend, key, cause }
                if backend == s.name() && key == "c:bad"
                    && cause.contains("is not a decimal 64-bit integer")),
            "{value:?}: {err:?}"
        );
        assert_eq!(read(&db, "bad"), *value, "a conflict changed the value");
        assert_eq!(version(&db, "bad"), before, "a conflict wrote");
        assert_eq!(
            total(&db, "bad", 0).unwrap_err().status(),
            Status::Conflict,
            "{value:?}"
        );
    }
    // What parses: a sign, leading zeros; the sum is written plainly.
    for (value, after) in [("+5", "6"), ("007", "8"), ("-0", "1"), ("-010", "-9")] {
        db.write(None, Some("c"), "good", value.as_bytes()).unwrap();
        assert_eq!(
            total(&db, "good", 0).unwrap(),
            after.parse::<i64>().unwrap() - 1
        );
        incr(&db, "good", 1).unwrap();
        assert_eq!(read(&db, "good"), after.as_bytes(), "after {value:?}");
    }
}

fn sums_beyond_64_bits_are_conflicts_and_change_nothing(s: &Space) {
    let db = s.open(QUICK);
    for (start, delta) in [(i64::MAX, 1), (i64::MIN, -1), (1, i64::MAX), (-2, i64::MIN)] {
        db.write(None, Some("c"), "edge", start.to_string().as_bytes())
            .unwrap();
        let before = version(&db, "edge");
        let err = incr(&db, "edge", delta).unwrap_err();
        assert_eq!(err.status(), Status::Conflict, "{start} + {delta}: {err}");
        assert!(err.to_string().contains("beyond a 64-bit integer"), "{err}");
        assert_eq!(read(&db, "edge"), start.to_string().as_bytes());
        assert_eq!(version(&db, "edge"), before);
    }
    // Up to the limits, both ways, is fine.
    assert_eq!(incr(&db, "min", i64::MIN).unwrap(), i64::MIN);
    assert_eq!(read(&db, "min"), b"-9223372036854775808");
    assert_eq!(incr(&db, "max", i64::MAX).unwrap(), i64::MAX);
    assert_eq!(incr(&db, "max", i64::MIN).unwrap(), -1);
}

/// The keys of bucket `c`.
fn keys(db: &Db) -> BTreeSet<String> {
    crate::common::all_pages(db, Some("c"), None, 1000)
        .into_iter()
        .flat_map(|page| page.entries)
        .map(|entry| entry.key)
        .collect()
}

fn sharded_counters_spread_over_their_shard_keys(s: &Space) {
    let db = s.open(QUICK);
    let rounds = s.bulk(100).max(20) as i64;
    let mut expected = 0;
    for round in 0..rounds {
        let delta = if round % 5 == 4 { -3 } else { 2 };
        expected += delta;
        let got = db
            .increment(None, Some("c"), "hits", delta, 4, true)
            .unwrap();
        // Alone on the counter, the total read after is exact.
        assert_eq!(got, Some(expected));
    }
    assert_eq!(
        db.increment(None, Some("c"), "hits", 1, 4, false).unwrap(),
        None,
        "a sharded increment read the total unasked"
    );
    expected += 1;
    assert_eq!(total(&db, "hits", 4).unwrap(), expected);

    // The shards are the keys the docs name, and the key itself is not
    // written: it stays absent, and its total is 0.
    let keys = keys(&db);
    let shards: BTreeSet<String> = (0..4).map(|i| format!("hits#shard{i}")).collect();
    assert!(keys.is_subset(&shards), "{keys:?}");
    assert!(keys.len() >= 2, "{rounds} increments all went to {keys:?}");
    assert_eq!(total(&db, "hits", 0).unwrap(), 0);
    let sum: i64 = keys
        .iter()
        .map(|key| {
            let text = String::from_utf8(read(&db, key)).unwrap();
            text.parse::<i64>().unwrap()
        })
        .sum();
    assert_eq!(sum, expected, "the shards as plain reads see them");
    // More shards later still count the earlier ones: absent shards are 0.
    assert_eq!(total(&db, "hits", 16).unwrap(), expected);
    // The unsharded key is a counter of its own, left out of the sum.
    incr(&db, "hits", 1000).unwrap();
    assert_eq!(total(&db, "hits", 4).unwrap(), expected);
    assert_eq!(total(&db, "absent", 7).unwrap(), 0);
}

fn a_shard_that_is_no_counter_fails_the_total(s: &Space) {
    let db = s.open(QUICK);
    db.write(None, Some("c"), "t#shard1", b"not a number")
        .unwrap();
    let err = total(&db, "t", 2).unwrap_err();
    assert_eq!(err.status(), Status::Conflict);
    assert!(err.to_string().contains("\"c:t#shard1\""), "{err}");
    // An increment either picks that shard (a conflict, nothing written)
    // or the other, and then fails to read the total, the increment
    // applied, as its message says.
    let mut applied = 0;
    for _ in 0..20 {
        let err = db.increment(None, Some("c"), "t", 1, 2, true).unwrap_err();
        assert_eq!(err.status(), Status::Conflict, "{err}");
        if err
            .to_string()
            .contains("1 was added to \"c:t#shard0\"; then")
        {
            applied += 1;
        } else {
            assert!(err.to_string().contains("\"c:t#shard1\""), "{err}");
        }
    }
    assert_eq!(total(&db, "t#shard0", 0).unwrap(), applied);
    assert_eq!(read(&db, "t#shard1"), b"not a number");

    // A total beyond 64 bits, though each shard is within.
    db.write(
        None,
        Some("c"),
        "big#shard0",
        i64::MAX.to_string().as_bytes(),
    )
    .unwrap();
    db.write(None, Some("c"), "big#shard1", b"1").unwrap();
    let err = total(&db, "big", 2).unwrap_err();
    assert_eq!(err.status(), Status::Conflict);
    assert!(err.to_string().contains("beyond a 64-bit integer"), "{err}");
}

fn counter_arguments_are_checked(s: &Space) {
    let db = s.open(QUICK);
    let max = TETHER_MAX_SHARDS;
    let err = db
        .increment(None, Some("c"), "k", 1, max + 1, true)
        .unwrap_err();
    assert_eq!(err.status(), Status::InvalidArgument, "{err}");
    assert!(err.to_string().contains("shards is 1025"), "{err}");
    assert_eq!(
        total(&db, "k", u32::MAX).unwrap_err().status(),
        Status::InvalidArgument
    );
    let invalid = [
        db.increment(None, Some("c"), "", 1, 0, true).unwrap_err(),
        db.increment(None, Some("c"), "", 1, 4, true).unwrap_err(),
        db.increment(None, Some("a:b"), "k", 1, 0, true)
            .unwrap_err(),
        db.counter_total(None, Some("c"), "", 0).unwrap_err(),
        db.counter_total(None, Some("a:b"), "k", 4).unwrap_err(),
    ];
    for err in invalid {
        assert_eq!(err.status(), Status::InvalidArgument, "{err}");
    }
    assert_eq!(
        db.increment(Some("nowhere"), None, "k", 1, 0, true)
            .unwrap_err()
            .status(),
        Status::UnknownBackend
    );
    assert!(keys(&db).is_empty(), "a refused call wrote");
    // The bound itself is allowed.
    db.increment(None, Some("c"), "k", 1, max, false).unwrap();
    assert_eq!(keys(&db).len(), 1);
}

/// Both entry points as a C caller drives them: out_value optional for an
/// increment, required for a total, untouched on a failure.
fn c_entry_points_increment_and_total(s: &Space) {
    let config = c(&s.config(QUICK));
    let (bucket, key) = (c("c"), c("k"));
    let mut db = ptr::null_mut();
    unsafe {
        assert_eq!(tether_open(config.as_ptr(), &mut db), Status::Ok);
        let incr = |delta: i64, shards: u32, out: *mut i64| {
            tether_increment(
                db,
                ptr::null(),
                bucket.as_ptr(),
                key.as_ptr(),
                delta,
                shards,
                out,
            )
        };
        let total = |shards: u32, out: *mut i64| {
            tether_counter_total(db, ptr::null(), bucket.as_ptr(), key.as_ptr(), shards, out)
        };
        assert_eq!(incr(40, 0, ptr::null_mut()), Status::Ok, "{}", last_error());
        let mut value = 0;
        assert_eq!(incr(2, 0, &mut value), Status::Ok);
        assert_eq!(value, 42);
        let mut got = 0;
        assert_eq!(total(0, &mut got), Status::Ok);
        assert_eq!(got, 42);
        assert_eq!(total(1, ptr::null_mut()), Status::InvalidArgument);

        // Sharded: the total after the increment.
        assert_eq!(incr(5, 3, &mut value), Status::Ok);
        assert_eq!(value, 5);
        assert_eq!(incr(-1, 3, ptr::null_mut()), Status::Ok);
        assert_eq!(total(3, &mut got), Status::Ok);
        assert_eq!(got, 4);

        // Failures leave out_value alone and name the function.
        let mut untouched = 7;
        assert_eq!(incr(i64::MAX, 0, &mut untouched), Status::Conflict);
        assert_eq!(untouched, 7);
        assert!(
            last_error().starts_with("tether_increment: "),
            "{}",
            last_error()
        );
        assert_eq!(
            incr(1, TETHER_MAX_SHARDS + 1, &mut untouched),
            Status::InvalidArgument
        );
        assert_eq!(
            total(TETHER_MAX_SHARDS + 1, &mut untouched),
            Status::InvalidArgument
        );
        assert!(
            last_error().starts_with("tether_counter_total: "),
            "{}",
            last_error()
        );
        assert_eq!(untouched, 7);
        let status = tether_increment(
            ptr::null_mut(),
            ptr::null(),
            bucket.as_ptr(),
            key.as_ptr(),
            1,
            0,
            &mut untouched,
        );
        assert_eq!(status, Status::InvalidArgument);
        let status = tether_increment(
            db,
            ptr::null(),
            bucket.as_ptr(),
            ptr::null(),
            1,
            0,
            &mut untouched,
        );
        assert_eq!(status, Status::InvalidArgument);
        let status = tether_counter_total(
            db,
            ptr::null(),
            bucket.as_ptr(),
            ptr::null(),
            0,
            &mut untouched,
        );
        assert_eq!(status, Status::InvalidArgument);
        assert_eq!(untouched, 7);

        // The stored text, as tether_read gives it.
        let (mut bytes, mut len) = (ptr::null_mut(), 0);
        let status = tether_read(
            db,
            ptr::null(),
            bucket.as_ptr(),
            key.as_ptr(),
            &mut bytes,
            &mut len,
        );
        assert_eq!(status, Status::Ok);
        assert_eq!(std::slice::from_raw_parts(bytes, len), b"42");
        tether_free(bytes, len);
        assert_eq!(tether_close(db), Status::Ok);
    }
}
