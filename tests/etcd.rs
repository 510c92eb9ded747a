//! What is etcd's own, on a real etcd: mutual TLS, certificates, its
//! transaction and request limits, outages, and what etcdctl sees (the data
//! the Python TetherDB shares). The calls' semantics, the same on every
//! engine, are the behaviour suite's (tests/behavior).

mod common;

use std::cell::Cell;
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, Instant};

use common::etcd::Etcd;
use common::{count, wait_until};
use tetherdb::{Db, Error, Status};

const QUICK: &str = r#"{"size": 10, "interval": 0.05}"#;

/// A server and a handle on it; `None` when etcd is not installed outside CI.
fn setup(queue_batch: &str, extra: &str) -> Option<(Etcd, Db)> {
    let etcd = Etcd::start()?;
    let db = Db::open_json(Some(&etcd.config(queue_batch, extra))).unwrap();
    Some((etcd, db))
}

/// The single-key semantics (the behaviour suite's, tests/behavior), for
/// a handle over mutual TLS.
fn single_key_calls(db: &Db) {
    db.write(None, Some("b"), "k", b"one").unwrap();
    db.write(None, Some("b"), "k", b"two\0with nul").unwrap();
    assert_eq!(db.read(None, Some("b"), "k").unwrap(), b"two\0with nul");
    assert_eq!(
        db.read(Some("etcd"), None, "b:k").unwrap(),
        b"two\0with nul"
    );
    db.write(None, None, "empty", b"").unwrap();
    assert_eq!(db.read(None, None, "empty").unwrap(), b"");

    let absent = db.read(None, Some("b"), "absent").unwrap_err();
    assert_eq!(absent.to_string(), "etcd: key \"b:absent\" not found");

    let err = db.update(None, Some("b"), "new", b"x").unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
    assert_eq!(
        db.read(None, Some("b"), "new").unwrap_err().status(),
        Status::NotFound,
        "update created the key"
    );
    db.update(None, Some("b"), "k", b"three").unwrap();
    assert_eq!(db.read(None, Some("b"), "k").unwrap(), b"three");

    db.delete(None, Some("b"), "k").unwrap();
    assert_eq!(
        db.delete(None, Some("b"), "k").unwrap_err().status(),
        Status::NotFound
    );
    assert_eq!(
        db.read(None, Some("b"), "k").unwrap_err().status(),
        Status::NotFound
    );

    let invalid = db.write(None, Some("a:b"), "k", b"v").unwrap_err();
    assert_eq!(invalid.status(), Status::InvalidArgument);
    assert_eq!(
        db.write(None, None, "", b"v").unwrap_err().status(),
        Status::InvalidArgument
    );
}

#[test]
fn single_key_calls_keep_the_contract_over_mutual_tls() {
    let Some(etcd) = Etcd::start_tls() else {
        return;
    };
    let db = Db::open_json(Some(&etcd.config(QUICK, ""))).unwrap();
    single_key_calls(&db);
    db.write_queued(None, Some("q"), "k", b"queued").unwrap();
    db.flush().unwrap();
    assert_eq!(etcd.get("q:k").unwrap(), b"queued");
    assert_eq!(count(&db, "q"), 1);

    // Without a client certificate the server refuses the connection.
    let tls = etcd.tls().unwrap();
    let anonymous = format!(
        r#"{{"logging": "none", "etcd": {{"endpoints": ["{}"], "use_ssl": true, "ca_cert_file": {:?}, "timeout": 1}}}}"#,
        etcd.endpoint(),
        tls.ca
    );
    let db = Db::open_json(Some(&anonymous)).unwrap();
    let refused = db.read(None, Some("q"), "k").unwrap_err();
    assert_eq!(refused.status(), Status::Unavailable, "{refused}");
}

#[test]
fn certificate_files_that_cannot_be_read_are_config_errors_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let missing = dir.path().join("missing.pem");
    for (setting, file) in [("ca_cert_file", &missing), ("ca_cert_file", &not_pem)] {
        let json = format!(r#"{{"etcd": {{"use_ssl": true, {setting:?}: {file:?}}}}}"#);
        let err = Db::open_json(Some(&json)).err().unwrap();
        assert_eq!(err.status(), Status::Config, "{err}");
        assert!(
            err.to_string().contains(file.to_str().unwrap()),
            "{err} does not name the file"
        );
    }
    let json = format!(
        r#"{{"etcd": {{"use_ssl": true, "cert_file": {missing:?}, "key_file": {not_pem:?}}}}}"#
    );
    let err = Db::open_json(Some(&json)).err().unwrap();
    assert!(err.to_string().contains("missing.pem"), "{err}");
    let json = format!(r#"{{"etcd": {{"use_ssl": true, "cert_file": {missing:?}}}}}"#);
    let err = Db::open_json(Some(&json)).err().unwrap();
    assert_eq!(err.status(), Status::Config);
}

#[test]
fn keys_a_c_string_cannot_carry_are_skipped() {
    let Some((etcd, db)) = setup(QUICK, "") else {
        return;
    };
    for key in ["a1", "a2", "a3", "b1"] {
        db.write(None, Some("x"), key, key.as_bytes()).unwrap();
    }
    // Keys another program stored that a C string cannot carry are
    // skipped, and a page is still full when more keys remain.
    for key in [&b"x:a2\xffhidden"[..], b"x:a2\xffmore"] {
        let put = etcd.etcdctl(&[OsStr::new("put"), OsStr::from_bytes(key), OsStr::new("v")]);
        assert!(put.status.success(), "{put:?}");
    }
    let page = db.list(None, Some("x"), None, None, 3).unwrap();
    let listed: Vec<&str> = page.entries.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(listed, ["a1", "a2", "a3"]);
    assert_eq!(page.next.as_deref(), Some("a3"));
    let rest = db.list(None, Some("x"), None, Some("a3"), 3).unwrap();
    assert_eq!(rest.entries.len(), 1);
    assert_eq!(rest.next, None);
}

#[test]
fn queued_writes_go_out_in_transactions() {
    // Batches of 1000 are split into transactions of at most 128 puts
    // (etcd refuses more), and two writes to one key in a batch collapse
    // to the last (etcd refuses a transaction that touches a key twice).
    // Stopping and starting with thousands queued is the behaviour
    // suite's (tests/behavior, stop_applies_everything_and_start_resumes).
    let Some((etcd, db)) = setup(r#"{"size": 1000, "interval": 3600}"#, "") else {
        return;
    };
    for i in 0..1_000 {
        db.write_queued(
            None,
            Some("dup"),
            &format!("k{}", i % 300),
            format!("{i}").as_bytes(),
        )
        .unwrap();
    }
    db.flush().unwrap();
    assert_eq!(etcd.count("dup:"), 300);
    assert_eq!(
        db.read(None, Some("dup"), "k0").unwrap(),
        b"900",
        "the last write wins"
    );
    assert_eq!(db.read(None, Some("dup"), "k299").unwrap(), b"899");
}

#[test]
fn a_smaller_transaction_limit_is_kept() {
    let Some(etcd) = Etcd::start_with(&["--max-txn-ops", "7"]) else {
        return;
    };
    let config = etcd.config(r#"{"size": 100, "interval": 3600}"#, r#""max_txn_ops": 7"#);
    let db = Db::open_json(Some(&config)).unwrap();
    for i in 0..100 {
        db.write_queued(None, Some("t"), &format!("k{i}"), b"v")
            .unwrap();
    }
    db.flush().unwrap();
    assert_eq!(etcd.count("t:"), 100);
}

#[test]
fn values_over_the_request_limit_are_refused_before_sending() {
    let Some((etcd, db)) = setup(QUICK, "") else {
        return;
    };
    let limit = 1536 * 1024;
    let err = db
        .write(None, Some("big"), "k", &vec![7; limit])
        .unwrap_err();
    assert_eq!(err.status(), Status::TooLarge, "{err}");
    assert!(err.to_string().contains("etcd: key \"big:k\""), "{err}");
    let queued = db
        .write_queued(None, Some("big"), "q", &vec![7; limit])
        .unwrap_err();
    assert_eq!(queued.status(), Status::TooLarge);
    assert_eq!(etcd.count("big:"), 0);

    // Just under the limit goes through, directly and in a batch of its own.
    let under = vec![7; limit - 1024];
    db.write(None, Some("big"), "k", &under).unwrap();
    db.write_queued(None, Some("big"), "q1", &under).unwrap();
    db.write_queued(None, Some("big"), "q2", &under).unwrap();
    db.flush().unwrap();
    assert_eq!(db.read(None, Some("big"), "q2").unwrap().len(), under.len());
    // A listing of values together far over tonic's default 4 MiB reply.
    assert_eq!(count(&db, "big"), 3);
}

/// The doc comment of `function` in the committed header.
fn header_doc(function: &str) -> String {
    let header = include_str!("../include/tetherdb.h");
    let at = header
        .find(&format!(" {function}("))
        .unwrap_or_else(|| panic!("{function} is not in the header"));
    let start = header[..at].rfind("/**").unwrap();
    header[start..at].to_owned()
}

/// A key over etcd's request limit cannot be read, deleted or listed
/// either: every call on it is TETHER_TOO_LARGE, and the header says so.
#[test]
fn keys_over_the_request_limit_are_too_large_for_every_call() {
    let Some((_etcd, db)) = setup(QUICK, "") else {
        return;
    };
    // Over the server's limit on a received message (2 MiB with the default
    // --max-request-bytes): refused by etcd, not before sending.
    let key = "k".repeat(3 << 20);
    for (function, err) in [
        ("tether_read", db.read(None, None, &key).unwrap_err()),
        ("tether_delete", db.delete(None, None, &key).unwrap_err()),
        (
            "tether_list",
            db.list(None, None, Some(&key), None, 10).unwrap_err(),
        ),
        (
            "tether_list_ex",
            db.list_keys(None, None, Some(&key), None, 10).unwrap_err(),
        ),
        (
            "tether_delete_prefix",
            db.delete_prefix(None, None, Some(&key)).unwrap_err(),
        ),
        (
            "tether_write",
            db.write(None, None, &key, b"v").unwrap_err(),
        ),
        (
            "tether_update",
            db.update(None, None, &key, b"v").unwrap_err(),
        ),
    ] {
        assert_eq!(err.status(), Status::TooLarge, "{function}: {err}");
        assert!(
            header_doc(function).contains("TETHER_TOO_LARGE"),
            "the header does not say {function} can return TETHER_TOO_LARGE"
        );
    }
}

#[test]
fn etcdctl_and_the_library_see_the_same_data() {
    let Some((etcd, db)) = setup(QUICK, "") else {
        return;
    };
    db.write(None, Some("b"), "k", b"{\"hello\": \"world\"}")
        .unwrap();
    assert_eq!(etcd.get("b:k").unwrap(), b"{\"hello\": \"world\"}");

    let put = etcd.etcdctl(&["put", "b:from-etcdctl", "written by etcdctl"]);
    assert!(put.status.success(), "{put:?}");
    assert_eq!(
        db.read(None, Some("b"), "from-etcdctl").unwrap(),
        b"written by etcdctl"
    );
    let page = db.list(None, Some("b"), None, None, 10).unwrap();
    let keys: Vec<&str> = page.entries.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["from-etcdctl", "k"]);

    // Its version is its mod_revision: etcdctl's own writes change it, and
    // a write conditioned on the version before them conflicts.
    let (_, before) = db.read_ex(None, Some("b"), "from-etcdctl", false).unwrap();
    assert!(before > 0);
    let put = etcd.etcdctl(&["put", "b:from-etcdctl", "again"]);
    assert!(put.status.success(), "{put:?}");
    let (value, after) = db.read_ex(None, Some("b"), "from-etcdctl", true).unwrap();
    assert_eq!(value, b"again");
    assert!(after > before, "{after} after {before}");
    let at_before = tetherdb::WriteOptions {
        if_version: Some(before),
        ..Default::default()
    };
    let err = db
        .write_ex(None, Some("b"), "from-etcdctl", b"lost", &at_before)
        .unwrap_err();
    assert_eq!(err.status(), Status::Conflict, "{err}");
}

#[test]
fn an_outage_delays_queued_writes_but_loses_none() {
    let Some((mut etcd, db)) = setup(r#"{"size": 100, "interval": 0.05}"#, r#""timeout": 1"#)
    else {
        return;
    };
    db.write(None, Some("o"), "before", b"v").unwrap();
    etcd.pause();

    // Direct calls fail, and say the call may be retried; they do not hang.
    let started = Instant::now();
    for result in [
        db.write(None, Some("o"), "during", b"v"),
        db.read(None, Some("o"), "before").map(drop),
        db.list(None, Some("o"), None, None, 10).map(drop),
    ] {
        let err = result.unwrap_err();
        assert_eq!(err.status(), Status::Unavailable, "{err}");
        assert!(err.to_string().starts_with("etcd: "), "{err}");
    }
    eprintln!(
        "three calls failed in {:?} with a 1 s timeout",
        started.elapsed()
    );

    // Queued writes wait; a flush reports them pending, and keeps them.
    for i in 0..5_000 {
        db.write_queued(None, Some("o"), &format!("q{i:04}"), b"v")
            .unwrap();
    }
    let err = db.flush().unwrap_err();
    assert_eq!(err.status(), Status::Unavailable, "{err}");
    assert!(
        err.to_string()
            .contains("5000 queued write(s) not applied yet"),
        "{err}"
    );
    eprintln!("flush during the outage: {err}");

    etcd.resume();
    wait_until(|| db.flush().is_ok());
    assert_eq!(etcd.count("o:q"), 5_000);
    // The same handle works again without reopening.
    db.write(None, Some("o"), "after", b"v").unwrap();
    assert_eq!(db.read(None, Some("o"), "before").unwrap(), b"v");
    db.close().unwrap();
}

/// Without the outbox there is nowhere to keep them: they are reported as
/// failed. (With it they stay for the next handle: tests/outbox.rs.)
#[test]
fn closing_during_an_outage_without_the_outbox_reports_what_was_not_applied() {
    let Some((mut etcd, db)) = setup(
        r#"{"size": 100, "interval": 3600, "durable": false}"#,
        r#""timeout": 0.5"#,
    ) else {
        return;
    };
    etcd.pause();
    for i in 0..1_000 {
        db.write_queued(None, Some("c"), &format!("k{i}"), b"v")
            .unwrap();
    }
    let err = db.close().unwrap_err();
    assert_eq!(err.status(), Status::Unavailable, "{err}");
    assert!(
        err.to_string().starts_with("1000 queued write(s) failed"),
        "{err}"
    );
}

#[test]
fn a_handle_opens_while_etcd_is_down() {
    let Some(mut etcd) = Etcd::start() else {
        return;
    };
    etcd.pause();
    let db = Db::open_json(Some(&etcd.config(QUICK, r#""timeout": 0.5"#))).unwrap();
    assert_eq!(
        db.read(None, None, "k").unwrap_err().status(),
        Status::Unavailable
    );
    etcd.resume();
    wait_until(|| db.write(None, None, "k", b"v").is_ok());
    assert_eq!(etcd.get("k").unwrap(), b"v");
}

/// The bytes etcd has sent to its gRPC clients, from its /metrics (served
/// on the client port).
fn sent_bytes(etcd: &Etcd) -> f64 {
    let mut http = TcpStream::connect(etcd.endpoint()).unwrap();
    let request = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    http.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    http.read_to_string(&mut answer).unwrap();
    let line = answer
        .lines()
        .find(|line| line.starts_with("etcd_network_client_grpc_sent_bytes_total "))
        .unwrap_or_else(|| panic!("no sent bytes in etcd's metrics: {answer}"));
    line.split(' ').nth(1).unwrap().parse().unwrap()
}

/// How many bytes etcd sent to answer `call`: polled until its counter
/// moves, since etcd may count a reply after the client has it.
fn bytes_sent_for(etcd: &Etcd, call: impl FnOnce()) -> f64 {
    let before = sent_bytes(etcd);
    call();
    let after = Cell::new(before);
    wait_until(|| {
        after.set(sent_bytes(etcd));
        after.get() > before
    });
    after.get() - before
}

/// A keys-only listing asks etcd for keys only (`keys_only`), and so does
/// an existence check: etcd sends none of the values.
#[test]
fn keys_only_listings_and_existence_checks_fetch_no_values() {
    let Some((etcd, db)) = setup(QUICK, "") else {
        return;
    };
    let value = vec![7; 100 * 1024];
    for i in 0..20 {
        db.write(None, Some("v"), &format!("k{i:02}"), &value)
            .unwrap();
    }
    let full = bytes_sent_for(&etcd, || {
        let page = db.list(None, Some("v"), None, None, 100).unwrap();
        assert_eq!(page.entries.len(), 20);
    });
    assert!(full > 20.0 * value.len() as f64, "{full} bytes");
    let keys_only = bytes_sent_for(&etcd, || {
        let page = db.list_keys(None, Some("v"), None, None, 100).unwrap();
        assert_eq!(page.keys.len(), 20);
    });
    assert!(keys_only < value.len() as f64, "{keys_only} bytes");
    let exists = bytes_sent_for(&etcd, || {
        db.read_ex(None, Some("v"), "k00", false).unwrap();
    });
    assert!(exists < value.len() as f64, "{exists} bytes");
}

/// Paging walks the range in slices (etcd 3.4 walks a request's whole
/// range before its limit): keys of every shape, at every page size, come
/// out in order, each once, the last page saying so, with or without a
/// prefix.
#[test]
fn pages_list_keys_of_every_shape_once_in_order() {
    let Some((_etcd, db)) = setup(QUICK, "") else {
        return;
    };
    let mut keys: Vec<String> = (0..300).map(|i| format!("n{i:04}")).collect();
    for key in [
        "n0099x",
        "n0099\u{7f}",
        "n0099~",
        "n0099é",
        "n",
        "n~",
        "nz",
        "m",
        "ÿ",
    ] {
        keys.push(key.to_owned());
    }
    keys.extend((1..=20).map(|n| "a".repeat(n)));
    keys.extend(["\u{10ffff}", "zz\u{7f}\u{7f}", "n0299\u{10ffff}"].map(str::to_owned));
    for key in &keys {
        db.write(None, Some("s"), key, b"v").unwrap();
    }
    // Neighbouring buckets, which no listing of `s` may show.
    db.write(None, Some("sa"), "n0100", b"v").unwrap();
    db.write(None, Some("r"), "n0100", b"v").unwrap();
    keys.sort();
    for prefix in [None, Some("n00"), Some("n0099")] {
        let expected: Vec<&String> = keys
            .iter()
            .filter(|k| prefix.is_none_or(|p| k.starts_with(p)))
            .collect();
        for page_size in [1, 3, 10, 64, 1000] {
            let (mut listed, mut after) = (Vec::new(), None::<String>);
            loop {
                let page = db
                    .list_keys(None, Some("s"), prefix, after.as_deref(), page_size)
                    .unwrap();
                assert!(page.keys.len() <= page_size);
                if page.next.is_some() {
                    assert_eq!(page.keys.len(), page_size, "{prefix:?}, {page_size}");
                }
                listed.extend(page.keys);
                match page.next {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
            assert_eq!(
                listed.iter().collect::<Vec<_>>(),
                expected,
                "prefix {prefix:?}, pages of {page_size}"
            );
        }
    }
}

/// The cluster's revision, which each change (a put, a delete, a
/// transaction) raises by one.
fn revision(etcd: &Etcd) -> u64 {
    let output = etcd.etcdctl(&["get", "probe", "-w", "json"]);
    assert!(output.status.success(), "{output:?}");
    let reply: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    reply["header"]["revision"].as_u64().unwrap()
}

/// 300 keys of bucket `r` go in one DeleteRange, one revision, which
/// leaves the stored key `r:` (no call names it in the bucket) and the
/// neighbouring bucket `rX`.
#[test]
fn delete_prefix_is_one_delete_range_where_the_range_holds_only_listed_keys() {
    let Some((etcd, db)) = setup(r#"{"size": 100, "interval": 0.05}"#, "") else {
        return;
    };
    for i in 0..300 {
        db.write_queued(None, Some("r"), &format!("k{i:03}"), b"v")
            .unwrap();
    }
    db.write(None, None, "r:", b"bare").unwrap();
    db.write(None, Some("rX"), "k000", b"v").unwrap();
    db.flush().unwrap();
    let before = revision(&etcd);
    assert_eq!(db.delete_prefix(None, Some("r"), None).unwrap(), 300);
    assert_eq!(revision(&etcd), before + 1, "not one DeleteRange");
    assert_eq!(etcd.get("r:").unwrap(), b"bare");
    assert_eq!(etcd.get("rX:k000").unwrap(), b"v");
    assert_eq!(etcd.count("r:"), 1);
}

/// A key another program stored that no C string carries is never listed,
/// so it stays: the listed keys go key by key instead, in transactions
/// within etcd's limit of 128 operations.
#[test]
fn delete_prefix_leaves_keys_other_programs_stored_that_listings_skip() {
    let Some((etcd, db)) = setup(r#"{"size": 100, "interval": 0.05}"#, "") else {
        return;
    };
    for i in 0..300 {
        db.write_queued(None, Some("r"), &format!("k{i:03}"), b"v")
            .unwrap();
    }
    db.flush().unwrap();
    let hidden = [&b"r:k100\xff"[..], b"r:\xfe"];
    for key in hidden {
        let put = etcd.etcdctl(&[OsStr::new("put"), OsStr::from_bytes(key), OsStr::new("v")]);
        assert!(put.status.success(), "{put:?}");
    }
    let before = revision(&etcd);
    assert_eq!(db.delete_prefix(None, Some("r"), None).unwrap(), 300);
    assert_eq!(revision(&etcd), before + 3, "not 128 + 128 + 44 deletes");
    assert_eq!(etcd.count("r:"), hidden.len());
    assert_eq!(count(&db, "r"), 0);
}

/// More keys than one range request of the scan reads (10,000): the scan
/// goes on over pages, for the one DeleteRange and for the key-by-key
/// deletes, which a key listings skip on the second page calls for.
#[test]
fn delete_prefix_scans_past_its_first_page() {
    let Some((etcd, db)) = setup(r#"{"size": 1000, "interval": 0.05}"#, "") else {
        return;
    };
    let count = 10_050;
    for bucket in ["p", "q"] {
        for i in 0..count {
            db.write_queued(None, Some(bucket), &format!("k{i:05}"), b"v")
                .unwrap();
        }
    }
    db.flush().unwrap();
    let before = revision(&etcd);
    assert_eq!(db.delete_prefix(None, Some("p"), None).unwrap(), count);
    assert_eq!(revision(&etcd), before + 1, "not one DeleteRange");
    // Sorts right after the 10,000th key: on the scan's second page.
    let hidden = b"q:k09999\xff";
    let put = etcd.etcdctl(&[
        OsStr::new("put"),
        OsStr::from_bytes(hidden),
        OsStr::new("v"),
    ]);
    assert!(put.status.success(), "{put:?}");
    assert_eq!(db.delete_prefix(None, Some("q"), None).unwrap(), count);
    assert_eq!(etcd.count("p:"), 0);
    assert_eq!(etcd.count("q:"), 1);
}

/// Expiry on etcd (docs/engines.md): the value stays what was written (the
/// exact deadline is in a key beside it), leases remove both some time
/// after the deadline, and keys with deadlines close together share one
/// lease.
#[test]
fn expiring_keys_keep_their_value_and_leases_reclaim_them() {
    let Some((etcd, db)) = setup(QUICK, "") else {
        return;
    };
    let ttl = |ttl_ms| tetherdb::WriteOptions {
        ttl_ms,
        ..Default::default()
    };
    db.write_ex(None, Some("b"), "k", b"42", &ttl(300)).unwrap();
    assert_eq!(etcd.get("b:k").unwrap(), b"42");
    // Fifty keys expiring within a few hundred ms of each other: one or
    // two leases, not fifty.
    for i in 0..50 {
        db.write_ex(
            None,
            Some("b"),
            &format!("many{i}"),
            b"v",
            &ttl(60_000 + i * 10),
        )
        .unwrap();
    }
    let leases = leases(&etcd);
    assert!(leases.len() <= 3, "{leases:?}");
    // The lease ends within an eighth of the ttl (and a second) after the
    // deadline: then etcd itself has removed the key and its deadline.
    wait_until(|| etcd.get("b:k").is_none());
    let keys = etcd.etcdctl(&["get", "", "--prefix", "--keys-only"]);
    let keys = String::from_utf8_lossy(&keys.stdout);
    assert!(!keys.contains("b:k\n"), "{keys}");
    assert_eq!(keys.matches("tetherdb.deadline").count(), 50, "{keys}");
}

/// A key another program writes again after the library gave it a
/// deadline has no deadline any more: the deadline key left beside it is
/// not its own (another revision), and it goes with its lease.
#[test]
fn a_key_etcdctl_writes_again_loses_its_deadline() {
    let Some((etcd, db)) = setup(QUICK, "") else {
        return;
    };
    let written = Instant::now();
    let options = tetherdb::WriteOptions {
        ttl_ms: 300,
        ..Default::default()
    };
    db.write_ex(None, Some("b"), "k", b"expiring", &options)
        .unwrap();
    let put = etcd.etcdctl(&["put", "b:k", "for good"]);
    assert!(put.status.success(), "{put:?}");
    std::thread::sleep(std::time::Duration::from_millis(400).saturating_sub(written.elapsed()));
    assert_eq!(db.read(None, Some("b"), "k").unwrap(), b"for good");
    assert_eq!(count(&db, "b"), 1);
}

/// A lease the handle granted and someone revoked is granted again: the
/// write that found it gone is not lost.
#[test]
fn a_revoked_lease_is_granted_again() {
    let Some((etcd, db)) = setup(QUICK, "") else {
        return;
    };
    let options = tetherdb::WriteOptions {
        ttl_ms: 60_000,
        ..Default::default()
    };
    db.write_ex(None, Some("b"), "first", b"v", &options)
        .unwrap();
    for id in leases(&etcd) {
        let revoke = etcd.etcdctl(&["lease", "revoke", &id]);
        assert!(revoke.status.success(), "{revoke:?}");
    }
    assert_eq!(
        db.read(None, Some("b"), "first").unwrap_err().status(),
        Status::NotFound
    );
    db.write_ex(None, Some("b"), "second", b"v", &options)
        .unwrap();
    assert_eq!(db.read(None, Some("b"), "second").unwrap(), b"v");
}

/// The ids (hex) of the leases etcd has, as `etcdctl lease list` prints
/// them after its "found N leases".
fn leases(etcd: &Etcd) -> Vec<String> {
    let list = etcd.etcdctl(&["lease", "list"]);
    assert!(list.status.success(), "{list:?}");
    let listed = String::from_utf8_lossy(&list.stdout).into_owned();
    listed
        .lines()
        .skip(1)
        .map(|l| l.trim().to_owned())
        .collect()
}

/// A queued write held past its deadline by an outage is never applied,
/// also when the handle closed meanwhile and the write waited in the
/// outbox: its deadline is kept there with it. Writes whose deadline is
/// still ahead land as any other.
#[test]
fn queued_writes_an_outage_holds_past_their_deadline_are_never_applied() {
    let Some(mut etcd) = Etcd::start() else {
        return;
    };
    let config = etcd.config(r#"{"size": 100, "interval": 0.05}"#, r#""timeout": 1"#);
    let db = Db::open_json(Some(&config)).unwrap();
    db.write(None, Some("o"), "k0", b"before").unwrap();
    etcd.pause();
    let queued = |ttl_ms| tetherdb::WriteOptions {
        queue: true,
        ttl_ms,
        ..Default::default()
    };
    for i in 0..10 {
        let key = format!("k{i}");
        db.write_ex(None, Some("o"), &key, b"late", &queued(1_500))
            .unwrap();
        let key = format!("long{i}");
        db.write_ex(None, Some("o"), &key, b"kept", &queued(600_000))
            .unwrap();
    }
    let queued_by = Instant::now();
    // Closing during the outage keeps them in the outbox.
    assert_eq!(db.close().unwrap_err().status(), Status::Unavailable);
    etcd.resume();
    std::thread::sleep(Duration::from_millis(1_600).saturating_sub(queued_by.elapsed()));
    let db = Db::open_json(Some(&config)).unwrap();
    db.flush().unwrap();
    assert_eq!(db.read(None, Some("o"), "k0").unwrap(), b"before");
    assert_eq!(count(&db, "o"), 11);
    let stats = &db.stats()["backends"]["etcd"];
    assert_eq!(stats["expired"], 10, "{stats}");
    assert_eq!(stats["applied"], 10, "{stats}");
    db.close().unwrap();
}
