//! The `dynamodb` backend against a real emulator, `moto_server`, started
//! on a loopback port (tests/common/moto.rs), and through a loopback proxy
//! for the faults moto cannot produce: every semantic of docs/c-api.md.
#![cfg(feature = "dynamodb")]

mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use common::moto::{self, Moto, Proxy};
use common::{all_pages, count};
use tetherdb::{Db, Error, Status};

const QUICK: &str = r#"{"size": 25, "interval": 0.05}"#;

/// A handle on a new table of the shared moto server; `None` (skip) when
/// moto_server is missing outside CI.
fn open(test: &str, queue_batch: &str) -> Option<(Db, Arc<Moto>)> {
    let moto = moto::server()?;
    let config = moto::config(&moto.url(), &moto::table(test), "", queue_batch);
    Some((Db::open_json(Some(&config)).unwrap(), moto))
}

/// A handle whose requests go through a proxy in front of moto.
fn open_proxied(test: &str, extra: &str, queue_batch: &str) -> Option<(Db, Proxy, Arc<Moto>)> {
    let moto = moto::server()?;
    let proxy = Proxy::start(moto.addr);
    let config = moto::config(&proxy.url(), &moto::table(test), extra, queue_batch);
    Some((Db::open_json(Some(&config)).unwrap(), proxy, moto))
}

fn keys_of(pages: &[tetherdb::Page]) -> Vec<String> {
    pages
        .iter()
        .flat_map(|p| &p.entries)
        .map(|e| e.key.clone())
        .collect()
}

#[test]
fn write_overwrites_read_update_delete() {
    let Some((db, _moto)) = open("basics", QUICK) else {
        return;
    };
    db.write(None, Some("b"), "k", b"one").unwrap();
    db.write(None, Some("b"), "k", b"two").unwrap();
    assert_eq!(db.read(None, Some("b"), "k").unwrap(), b"two");
    // Any bytes, and none.
    db.write(None, None, "binary", b"\xff\x00\xfe").unwrap();
    assert_eq!(db.read(None, None, "binary").unwrap(), b"\xff\x00\xfe");
    db.write(None, None, "empty", b"").unwrap();
    assert_eq!(db.read(None, None, "empty").unwrap(), b"");

    let err = db.read(None, Some("b"), "absent").unwrap_err();
    assert_eq!(err.status(), Status::NotFound);
    assert_eq!(err.to_string(), "dynamodb: key \"b:absent\" not found");

    db.update(None, Some("b"), "k", b"three").unwrap();
    assert_eq!(db.read(None, Some("b"), "k").unwrap(), b"three");
    db.update(None, None, "binary", b"text now").unwrap();
    assert_eq!(db.read(None, None, "binary").unwrap(), b"text now");

    db.delete(None, Some("b"), "k").unwrap();
    let err = db.delete(None, Some("b"), "k").unwrap_err();
    assert_eq!(err.status(), Status::NotFound);
    assert!(err.to_string().contains("\"b:k\""), "{err}");
    assert_eq!(
        db.read(None, Some("b"), "k").unwrap_err().status(),
        Status::NotFound
    );
    db.close().unwrap();
}

#[test]
fn update_of_an_absent_key_creates_nothing() {
    let Some((db, _moto)) = open("update", QUICK) else {
        return;
    };
    let err = db.update(None, Some("b"), "absent", b"x").unwrap_err();
    assert_eq!(err.status(), Status::NotFound);
    assert!(
        matches!(&err, Error::NotFound { backend, key } if backend == "dynamodb" && key == "b:absent"),
        "{err:?}"
    );
    assert_eq!(
        db.read(None, Some("b"), "absent").unwrap_err().status(),
        Status::NotFound
    );
    assert_eq!(count(&db, "b"), 0);
}

#[test]
fn items_have_the_python_tetherdb_layout() {
    let Some(moto) = moto::server() else {
        return;
    };
    let table = moto::table("layout");
    let db = Db::open_json(Some(&moto::config(&moto.url(), &table, "", QUICK))).unwrap();
    let (runtime, sdk) = moto::sdk(&moto.url());
    db.write(None, Some("b"), "text", b"{\"a\": 1}").unwrap();
    db.write(None, Some("b"), "bytes", b"\xff\xfe").unwrap();
    let stored = |key: &str| {
        let answer = runtime
            .block_on(
                sdk.get_item()
                    .table_name(&table)
                    .key("key", AttributeValue::S(key.into()))
                    .send(),
            )
            .unwrap();
        answer.item.unwrap()["value"].clone()
    };
    assert_eq!(stored("b:text"), AttributeValue::S("{\"a\": 1}".into()));
    assert_eq!(
        stored("b:bytes"),
        AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(vec![0xff, 0xfe]))
    );
    // What the Python TetherDB wrote reads as it is, S or B.
    for (key, value) in [
        ("py:s", AttributeValue::S("from python".into())),
        (
            "py:b",
            AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(b"raw".to_vec())),
        ),
    ] {
        runtime
            .block_on(
                sdk.put_item()
                    .table_name(&table)
                    .item("key", AttributeValue::S(key.into()))
                    .item("value", value)
                    .send(),
            )
            .unwrap();
    }
    assert_eq!(db.read(None, Some("py"), "s").unwrap(), b"from python");
    assert_eq!(db.read(None, Some("py"), "b").unwrap(), b"raw");
    let page = db.list(None, Some("py"), None, None, 10).unwrap();
    let listed: BTreeSet<(String, Vec<u8>)> =
        page.entries.into_iter().map(|e| (e.key, e.value)).collect();
    assert_eq!(
        listed,
        BTreeSet::from([
            ("b".to_owned(), b"raw".to_vec()),
            ("s".to_owned(), b"from python".to_vec())
        ])
    );
}

#[test]
fn twenty_three_keys_in_pages_of_seven() {
    let Some((db, _moto)) = open("pages", QUICK) else {
        return;
    };
    for i in 0..23 {
        let value = format!("v{i}");
        db.write(None, Some("b"), &format!("k{i:02}"), value.as_bytes())
            .unwrap();
    }
    let pages = all_pages(&db, Some("b"), None, 7);
    let sizes: Vec<usize> = pages.iter().map(|p| p.entries.len()).collect();
    assert_eq!(sizes, [7, 7, 7, 2]);
    let nexts: Vec<bool> = pages.iter().map(|p| p.next.is_some()).collect();
    assert_eq!(nexts, [true, true, true, false]);
    // Scan order, not key order: every key exactly once is the promise.
    let keys = keys_of(&pages);
    let unique: BTreeSet<&String> = keys.iter().collect();
    assert_eq!(unique.len(), keys.len(), "a key listed twice: {keys:?}");
    let expected: BTreeSet<String> = (0..23).map(|i| format!("k{i:02}")).collect();
    assert_eq!(unique, expected.iter().collect());
    for entry in pages.iter().flat_map(|p| &p.entries) {
        let i: usize = entry.key[1..].parse().unwrap();
        assert_eq!(entry.value, format!("v{i}").as_bytes());
    }
}

#[test]
fn a_page_that_fills_exactly_is_the_last_when_nothing_follows() {
    let Some((db, _moto)) = open("exact", QUICK) else {
        return;
    };
    // Keys of other buckets after the last match: the look-ahead must scan
    // past them to learn that no match remains.
    for i in 0..14 {
        db.write(None, Some("a"), &format!("k{i:02}"), b"v")
            .unwrap();
    }
    for i in 0..5 {
        db.write(None, Some("z"), &format!("k{i:02}"), b"v")
            .unwrap();
    }
    let pages = all_pages(&db, Some("a"), None, 7);
    let shape: Vec<(usize, bool)> = pages
        .iter()
        .map(|p| (p.entries.len(), p.next.is_some()))
        .collect();
    assert_eq!(shape, [(7, true), (7, false)]);
    assert_eq!(keys_of(&pages).len(), 14);

    let empty = db.list(None, Some("nothing"), None, None, 7).unwrap();
    assert!(empty.entries.is_empty() && empty.next.is_none());
}

#[test]
fn buckets_and_prefixes_list_only_their_keys() {
    let Some((db, _moto)) = open("buckets", QUICK) else {
        return;
    };
    for key in ["a", "b", "c"] {
        db.write(None, Some("logs"), key, b"v").unwrap();
        db.write(None, Some("logsX"), key, b"v").unwrap();
    }
    db.write(None, None, "logs", b"no bucket").unwrap();
    db.write(None, Some("logs"), "prefixed-1", b"v").unwrap();
    db.write(None, Some("logs"), "prefixed-2", b"v").unwrap();

    let listed = |bucket: Option<&str>, prefix: Option<&str>| -> BTreeSet<String> {
        keys_of(&all_pages(&db, bucket, prefix, 2))
            .into_iter()
            .collect()
    };
    let set = |keys: &[&str]| keys.iter().map(|k| k.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(
        listed(Some("logs"), None),
        set(&["a", "b", "c", "prefixed-1", "prefixed-2"])
    );
    assert_eq!(listed(Some("logsX"), None), set(&["a", "b", "c"]));
    assert_eq!(
        listed(Some("logs"), Some("prefixed")),
        set(&["prefixed-1", "prefixed-2"])
    );
    // Without a bucket, every key as stored.
    assert_eq!(listed(None, Some("logs")).len(), 1 + 5 + 3);
    assert_eq!(listed(None, None).len(), 1 + 5 + 3);
}

#[test]
fn a_listing_goes_on_after_its_last_key_was_deleted() {
    let Some((db, _moto)) = open("resume", QUICK) else {
        return;
    };
    for i in 0..20 {
        db.write(None, Some("b"), &format!("k{i:02}"), b"v")
            .unwrap();
    }
    let first = db.list(None, Some("b"), None, None, 7).unwrap();
    let after = first.next.clone().unwrap();
    // The key the next page resumes after, and one already listed, go.
    db.delete(None, Some("b"), &after).unwrap();
    db.delete(None, Some("b"), &first.entries[0].key).unwrap();
    let mut keys: Vec<String> = first.entries.iter().map(|e| e.key.clone()).collect();
    let mut start = Some(after);
    while let Some(after) = start {
        let page = db.list(None, Some("b"), None, Some(&after), 7).unwrap();
        keys.extend(page.entries.iter().map(|e| e.key.clone()));
        start = page.next;
    }
    let unique: BTreeSet<&String> = keys.iter().collect();
    assert_eq!(unique.len(), keys.len(), "a key listed twice: {keys:?}");
    assert_eq!(keys.len(), 20, "every key listed once: {keys:?}");
}

#[test]
fn thousands_of_queued_writes_are_all_applied_by_stop() {
    let Some((db, moto)) = open("queued", r#"{"size": 100, "interval": 60}"#) else {
        return;
    };
    for i in 0..3000 {
        db.write_queued(
            None,
            Some("q"),
            &format!("k{i:04}"),
            format!("v{i}").as_bytes(),
        )
        .unwrap();
    }
    // The last queued write to a key wins, also within one batch.
    for round in 0..3 {
        db.write_queued(None, Some("q"), "k0000", format!("last{round}").as_bytes())
            .unwrap();
    }
    db.stop().unwrap();
    assert_eq!(count(&db, "q"), 3000);
    assert_eq!(db.read(None, Some("q"), "k0000").unwrap(), b"last2");
    assert_eq!(db.read(None, Some("q"), "k2999").unwrap(), b"v2999");
    assert_eq!(
        db.write_queued(None, Some("q"), "k", b"v")
            .unwrap_err()
            .status(),
        Status::NotRunning
    );
    drop(moto);
}

#[test]
fn the_interval_sends_a_batch_that_never_fills() {
    let Some((db, _moto)) = open("interval", r#"{"size": 1000, "interval": 0.1}"#) else {
        return;
    };
    db.write_queued(None, Some("i"), "k", b"v").unwrap();
    // No flush: the worker sends the batch once its write has waited the
    // interval. The bound only keeps a broken worker from hanging the test.
    for _ in 0..600 {
        match db.read(None, Some("i"), "k") {
            Ok(value) => {
                assert_eq!(value, b"v");
                return;
            }
            Err(e) if e.status() == Status::NotFound => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Err(e) => panic!("{e}"),
        }
    }
    panic!("the queued write was never applied");
}

#[test]
fn eight_threads_write_at_once_through_one_handle() {
    let Some((db, _moto)) = open("threads", QUICK) else {
        return;
    };
    std::thread::scope(|s| {
        for t in 0..8 {
            let db = &db;
            s.spawn(move || {
                for i in 0..100 {
                    let key = format!("t{t}-{i:03}");
                    let value = format!("{t}/{i}");
                    match i % 2 {
                        0 => db.write_queued(None, Some("c"), &key, value.as_bytes()),
                        _ => db.write(None, Some("c"), &key, value.as_bytes()),
                    }
                    .unwrap();
                }
            });
        }
    });
    db.flush().unwrap();
    assert_eq!(count(&db, "c"), 800);
    for t in 0..8 {
        for i in [0, 1, 98, 99] {
            let value = db.read(None, Some("c"), &format!("t{t}-{i:03}")).unwrap();
            assert_eq!(value, format!("{t}/{i}").as_bytes());
        }
    }
}

#[test]
fn items_over_400_kb_are_refused_before_they_are_sent() {
    let Some((db, proxy, _moto)) = open_proxied("large", "", QUICK) else {
        return;
    };
    // moto refuses items over 405,000 bytes, DynamoDB over 400 KB (409,600
    // bytes). One moto takes:
    let value = vec![b'x'; 400_000];
    db.write(None, None, "k", &value).unwrap();
    assert_eq!(db.read(None, None, "k").unwrap().len(), value.len());
    // One DynamoDB would take but moto refuses: its answer is TooLarge too.
    let largest = vec![b'x'; 400 * 1024 - "key".len() - 1 - "value".len()];
    let err = db.write(None, None, "k", &largest).unwrap_err();
    assert_eq!(err.status(), Status::TooLarge, "{err}");
    assert!(
        err.to_string().contains("ValidationException: Item size"),
        "{err}"
    );

    let sent = proxy.state().total();
    let over = vec![b'x'; largest.len() + 1];
    for result in [
        db.write(None, None, "k", &over),
        db.write_queued(None, None, "k", &over),
        db.update(None, None, "k", &over),
        db.write(None, None, &"k".repeat(2049), b"v"),
        // No key over DynamoDB's limit can be stored: reading or deleting
        // one is refused alike.
        db.read(None, None, &"k".repeat(2049)).map(drop),
        db.delete(None, None, &"k".repeat(2049)),
    ] {
        let err = result.unwrap_err();
        assert_eq!(err.status(), Status::TooLarge, "{err}");
        assert!(err.to_string().starts_with("dynamodb: key \"k"), "{err}");
    }
    assert_eq!(proxy.state().total(), sent, "nothing was sent");
    db.close().unwrap();
}

/// Opening checks the table, so an unreachable DynamoDB fails the open,
/// as the header says.
#[test]
fn an_unreachable_endpoint_fails_open_as_unavailable() {
    let config = moto::config(
        "http://127.0.0.1:1",
        &moto::table("unreachable"),
        r#", "timeout": 1"#,
        QUICK,
    );
    let err = Db::open_json(Some(&config)).err().unwrap();
    assert_eq!(err.status(), Status::Unavailable, "{err}");
    let header = include_str!("../include/tetherdb.h");
    let open = header.find(" tether_open(").unwrap();
    let doc = &header[header[..open].rfind("/**").unwrap()..open];
    let returns = &doc[doc.find("Returns").unwrap()..];
    assert!(returns.contains("TETHER_UNAVAILABLE"), "{doc}");
}

#[test]
fn a_missing_table_fails_open_unless_create_table_is_set() {
    let Some(moto) = moto::server() else {
        return;
    };
    let table = moto::table("missing");
    let without = moto::config(&moto.url(), &table, "", QUICK)
        .replace(r#""create_table": true"#, r#""create_table": false"#);
    let err = Db::open_json(Some(&without)).err().unwrap();
    assert_eq!(err.status(), Status::Config);
    let message = err.to_string();
    assert!(
        message.contains(&format!("table {table:?} does not exist")),
        "{message}"
    );
    assert!(message.contains("aws dynamodb create-table"), "{message}");

    // create_table makes it; a second handle finds it.
    let with = moto::config(&moto.url(), &table, "", QUICK);
    let db = Db::open_json(Some(&with)).unwrap();
    db.write(None, None, "k", b"v").unwrap();
    let again = Db::open_json(Some(&without)).unwrap();
    assert_eq!(again.read(None, None, "k").unwrap(), b"v");
}

#[test]
fn without_a_region_anywhere_open_fails_with_config() {
    // No request is sent: the region is missing before any.
    moto::aws_test_environment();
    let config = moto::config("http://127.0.0.1:9", "NoRegion", "", QUICK)
        .replace(&format!(r#""region": "{}","#, moto::REGION), "");
    let err = Db::open_json(Some(&config)).err().unwrap();
    assert_eq!(err.status(), Status::Config, "{err}");
    assert!(err.to_string().contains("no AWS region"), "{err}");
}

#[test]
fn a_table_with_another_key_is_refused() {
    let Some(moto) = moto::server() else {
        return;
    };
    let (runtime, sdk) = moto::sdk(&moto.url());
    let table = moto::table("schema");
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    };
    runtime
        .block_on(
            sdk.create_table()
                .table_name(&table)
                .attribute_definitions(
                    AttributeDefinition::builder()
                        .attribute_name("id")
                        .attribute_type(ScalarAttributeType::S)
                        .build()
                        .unwrap(),
                )
                .key_schema(
                    KeySchemaElement::builder()
                        .attribute_name("id")
                        .key_type(KeyType::Hash)
                        .build()
                        .unwrap(),
                )
                .billing_mode(BillingMode::PayPerRequest)
                .send(),
        )
        .unwrap();
    let config = moto::config(&moto.url(), &table, "", QUICK);
    let err = Db::open_json(Some(&config)).err().unwrap();
    assert_eq!(err.status(), Status::Config);
    assert!(err.to_string().contains("id (HASH)"), "{err}");
}

#[test]
fn unprocessed_items_are_resent_until_each_is_written_once() {
    let Some((db, proxy, _moto)) =
        open_proxied("unprocessed", "", r#"{"size": 25, "interval": 60}"#)
    else {
        return;
    };
    // The first batch comes back with half its items unprocessed, and so
    // do the next three resends of what is left.
    proxy.state().leave_unprocessed = 4;
    for i in 0..100 {
        db.write_queued(
            None,
            Some("u"),
            &format!("k{i:03}"),
            format!("v{i}").as_bytes(),
        )
        .unwrap();
    }
    db.flush().unwrap();
    let state = proxy.state();
    let written: HashMap<&str, usize> =
        state
            .batch_written
            .iter()
            .fold(HashMap::new(), |mut counts, key| {
                *counts.entry(key.as_str()).or_default() += 1;
                counts
            });
    assert_eq!(written.len(), 100, "every item reached the table");
    assert!(
        written.values().all(|&n| n == 1),
        "each exactly once: {written:?}"
    );
    assert!(
        state.count("BatchWriteItem") > 4,
        "unprocessed items were resent"
    );
    drop(state);
    for i in [0, 13, 50, 99] {
        let value = db.read(None, Some("u"), &format!("k{i:03}")).unwrap();
        assert_eq!(value, format!("v{i}").as_bytes());
    }
    assert_eq!(count(&db, "u"), 100);
}

#[test]
fn throttled_batches_are_retried_until_each_is_written_once() {
    let Some((db, proxy, _moto)) = open_proxied("throttled", "", r#"{"size": 25, "interval": 60}"#)
    else {
        return;
    };
    // More throttling answers in a row than the SDK's own tries: the
    // worker's retry has to take over.
    proxy.state().throttle = 7;
    for i in 0..50 {
        db.write_queued(None, Some("t"), &format!("k{i:03}"), b"v")
            .unwrap();
    }
    db.flush().unwrap();
    let state = proxy.state();
    let mut written = state.batch_written.clone();
    written.sort();
    let expected: Vec<String> = (0..50).map(|i| format!("t:k{i:03}")).collect();
    assert_eq!(
        written, expected,
        "each write reached the table exactly once"
    );
    assert_eq!(state.count("BatchWriteItem"), 7 + 2);
    drop(state);
    assert_eq!(count(&db, "t"), 50);
}

#[test]
fn an_unreachable_endpoint_is_unavailable_and_queued_writes_wait_for_it() {
    let Some((db, proxy, _moto)) = open_proxied(
        "outage",
        r#", "timeout": 0.5"#,
        r#"{"size": 25, "interval": 0.05}"#,
    ) else {
        return;
    };
    db.write(None, None, "before", b"v").unwrap();
    proxy.state().down = true;
    let err = db.write(None, Some("b"), "k", b"v").unwrap_err();
    assert_eq!(err.status(), Status::Unavailable, "{err}");
    assert!(
        err.to_string()
            .starts_with("dynamodb: key \"b:k\": unavailable: "),
        "{err}"
    );
    assert_eq!(
        db.read(None, None, "before").unwrap_err().status(),
        Status::Unavailable
    );

    db.write_queued(None, Some("b"), "queued", b"kept").unwrap();
    // flush gives up once the outage has lasted the timeout; the write
    // stays queued.
    let err = db.flush().unwrap_err();
    assert_eq!(err.status(), Status::Unavailable, "{err}");
    assert!(err.to_string().contains("stay queued"), "{err}");

    proxy.state().down = false;
    // Until the worker's next try (its pause grows to 2 s), flush still
    // reports the outage.
    let mut flushed = db.flush();
    for _ in 0..100 {
        match &flushed {
            Err(e) if e.status() == Status::Unavailable => {
                std::thread::sleep(Duration::from_millis(100));
                flushed = db.flush();
            }
            _ => break,
        }
    }
    flushed.unwrap();
    assert_eq!(db.read(None, Some("b"), "queued").unwrap(), b"kept");
    db.close().unwrap();
}

#[test]
fn an_https_endpoint_fails_cleanly_without_a_trusted_certificate() {
    let Some(moto) = moto::server() else {
        return;
    };
    // moto speaks plain HTTP: the TLS handshake fails. What matters is the
    // rustls client (on ring, beside etcd-client's) being built and used
    // without a panic, and the failure being reported.
    let url = format!("https://{}", moto.addr);
    let config = moto::config(&url, &moto::table("tls"), r#", "timeout": 1"#, QUICK);
    let err = Db::open_json(Some(&config)).err().unwrap();
    assert_eq!(err.status(), Status::Unavailable, "{err}");
    assert!(
        err.to_string()
            .starts_with("dynamodb: unavailable: table \"tether-tls-"),
        "{err}"
    );
}

#[test]
fn eventually_consistent_reads_can_be_chosen() {
    let Some(moto) = moto::server() else {
        return;
    };
    let config = moto::config(
        &moto.url(),
        &moto::table("eventual"),
        r#", "consistent_read": false"#,
        QUICK,
    );
    let db = Db::open_json(Some(&config)).unwrap();
    db.write(None, None, "k", b"v").unwrap();
    // moto is always consistent: this shows the setting is accepted and
    // the requests valid.
    assert_eq!(db.read(None, None, "k").unwrap(), b"v");
    assert_eq!(db.list(None, None, None, None, 5).unwrap().entries.len(), 1);
}

/// The C ABI, the way a C caller drives it, against DynamoDB.
#[test]
fn the_c_abi_drives_dynamodb() {
    let Some(moto) = moto::server() else {
        return;
    };
    let config = moto::config(&moto.url(), &moto::table("ffi"), "", QUICK);
    common::c_abi::every_entry_point(&config, "dynamodb");
}
