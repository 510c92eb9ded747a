//! What is the `dynamodb` backend's own, against a real emulator,
//! `moto_server`, started on a loopback port (tests/common/moto.rs), and
//! through a loopback proxy for the faults moto cannot produce: the items'
//! layout, DynamoDB's limits, the table and region, unprocessed items,
//! throttling, outages. The calls' semantics, the same on every engine, are
//! the behaviour suite's (tests/behavior).
#![cfg(feature = "dynamodb")]

mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use common::count;
use common::moto::{self, Moto, Proxy};
use tetherdb::{Db, Status};

const QUICK: &str = r#"{"size": 25, "interval": 0.05}"#;

/// A handle whose requests go through a proxy in front of moto.
fn open_proxied(test: &str, extra: &str, queue_batch: &str) -> Option<(Db, Proxy, Arc<Moto>)> {
    let moto = moto::server()?;
    let proxy = Proxy::start(moto.addr);
    let config = moto::config(&proxy.url(), &moto::table(test), extra, queue_batch);
    Some((Db::open_json(Some(&config)).unwrap(), proxy, moto))
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
        let item = answer.item.unwrap();
        // The version beside the value, a number.
        assert!(matches!(item["version"], AttributeValue::N(_)), "{item:?}");
        item["value"].clone()
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
    // Without a version attribute, an item has version 1; a write at that
    // version gives it one.
    assert_eq!(
        db.read_ex(None, Some("py"), "s", true).unwrap(),
        (b"from python".to_vec(), 1)
    );
    let at_one = tetherdb::WriteOptions {
        if_version: Some(1),
        ..Default::default()
    };
    let version = db
        .write_ex(None, Some("py"), "s", b"from python", &at_one)
        .unwrap()
        .unwrap();
    assert!(version > 1);
    assert_eq!(
        db.write_ex(None, Some("py"), "s", b"again", &at_one)
            .unwrap_err()
            .status(),
        Status::Conflict
    );
    assert_eq!(db.read_ex(None, Some("py"), "s", false).unwrap().1, version);
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
    // The library counts the `version` attribute at its largest (its name
    // and 21 bytes), and room for a deadline's three, so that giving the
    // key a deadline later cannot make it too large.
    let version = "version".len() + 21;
    let deadline = "deadline_ms".len() + "expires".len() + "sliding_ms".len() + 3 * 21;
    let largest = vec![b'x'; 400 * 1024 - "key".len() - 1 - "value".len() - version - deadline];
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

/// Deletes by prefix go out as BatchWriteItems of 25, whose unprocessed
/// deletes are resent until none is left: every key goes, and is counted
/// once.
#[test]
fn unprocessed_deletes_of_delete_prefix_are_resent() {
    let Some((db, proxy, _moto)) = open_proxied("unprocessed_deletes", "", QUICK) else {
        return;
    };
    for i in 0..100 {
        db.write_queued(None, Some("u"), &format!("k{i:03}"), b"v")
            .unwrap();
    }
    db.write(None, Some("uX"), "k000", b"v").unwrap();
    db.flush().unwrap();
    let batches = proxy.state().count("BatchWriteItem");
    // The first batch of deletes comes back with half its items
    // unprocessed, and so do the next three resends of what is left.
    proxy.state().leave_unprocessed = 4;
    assert_eq!(db.delete_prefix(None, Some("u"), None).unwrap(), 100);
    let sent = proxy.state().count("BatchWriteItem") - batches;
    assert!(sent > 100 / 25 + 3, "{sent} batches: no resend");
    assert_eq!(count(&db, "u"), 0);
    assert_eq!(count(&db, "uX"), 1);
}

/// A scan answers at most 1 MB of items a page: 40 items of 50 KB take
/// two, and every one of their keys goes.
#[test]
fn delete_prefix_scans_past_its_first_page() {
    let Some((db, proxy, _moto)) = open_proxied("delete_pages", "", QUICK) else {
        return;
    };
    let value = vec![b'v'; 50 * 1000];
    for i in 0..40 {
        db.write(None, Some("big"), &format!("k{i:02}"), &value)
            .unwrap();
    }
    db.write(None, Some("bigX"), "k00", b"v").unwrap();
    let scans = proxy.state().count("Scan");
    assert_eq!(db.delete_prefix(None, Some("big"), None).unwrap(), 40);
    assert!(proxy.state().count("Scan") - scans > 1, "one page of scan");
    assert_eq!(count(&db, "big"), 0);
    assert_eq!(count(&db, "bigX"), 1);
}

/// A keys-only listing projects the key attribute, and an existence check
/// the key and the version: DynamoDB sends none of the values.
#[test]
fn keys_only_listings_and_existence_checks_fetch_no_values() {
    let Some((db, proxy, _moto)) = open_proxied("projections", "", QUICK) else {
        return;
    };
    let value = vec![b'v'; 100 * 1024];
    for i in 0..10 {
        db.write(None, Some("p"), &format!("k{i}"), &value).unwrap();
    }
    let answered = |operation: &str| -> usize {
        let state = proxy.state();
        state.answered_bytes.get(operation).copied().unwrap_or(0)
    };
    let before = answered("Scan");
    assert_eq!(count(&db, "p"), 10);
    let full = answered("Scan") - before;
    assert!(full > 10 * value.len(), "{full} bytes");
    let before = answered("Scan");
    let page = db.list_keys(None, Some("p"), None, None, 100).unwrap();
    assert_eq!(page.keys.len(), 10);
    let keys_only = answered("Scan") - before;
    assert!(keys_only < value.len(), "{keys_only} bytes");
    let before = answered("GetItem");
    let (_, version) = db.read_ex(None, Some("p"), "k0", false).unwrap();
    assert!(version > 1);
    let exists = answered("GetItem") - before;
    assert!(exists < value.len(), "{exists} bytes");
}

#[test]
fn throttled_batches_are_retried_until_each_is_written_once() {
    // One batch of all 50 writes (its size), two BatchWriteItems of 25.
    let Some((db, proxy, _moto)) = open_proxied("throttled", "", r#"{"size": 50, "interval": 60}"#)
    else {
        return;
    };
    // More throttling answers in a row than the SDK's own tries: the
    // worker's retry has to take over (of both pieces, in flight at once).
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

/// Expiry on DynamoDB (docs/engines.md): the value stays what was written,
/// the deadline is beside it (exact, in ms, and in seconds in `expires`,
/// the TTL attribute the library turns on for a table it creates), and an
/// item DynamoDB has not deleted yet is absent all the same.
#[test]
fn expiring_items_keep_their_value_beside_a_ttl_attribute() {
    let Some(moto) = moto::server() else {
        return;
    };
    let table = moto::table("expiry");
    let db = Db::open_json(Some(&moto::config(&moto.url(), &table, "", QUICK))).unwrap();
    let (runtime, sdk) = moto::sdk(&moto.url());
    let ttl = runtime
        .block_on(sdk.describe_time_to_live().table_name(&table).send())
        .unwrap();
    let ttl = ttl.time_to_live_description.unwrap();
    assert_eq!(ttl.attribute_name(), Some("expires"), "{ttl:?}");
    let options = tetherdb::WriteOptions {
        ttl_ms: 300,
        sliding: true,
        ..Default::default()
    };
    db.write_ex(None, Some("b"), "k", b"42", &options).unwrap();
    let item = runtime
        .block_on(
            sdk.get_item()
                .table_name(&table)
                .key("key", AttributeValue::S("b:k".into()))
                .send(),
        )
        .unwrap()
        .item
        .unwrap();
    assert_eq!(item["value"], AttributeValue::S("42".into()));
    let number = |name: &str| match &item[name] {
        AttributeValue::N(n) => n.parse::<u64>().unwrap(),
        other => panic!("{name}: {other:?}"),
    };
    assert_eq!(number("expires"), number("deadline_ms").div_ceil(1000));
    assert_eq!(number("sliding_ms"), 300);
    // Past its deadline the item is still in the table (moto, like
    // DynamoDB, deletes expired items late), and absent to every call.
    // (Listing does not slide the deadline, as reading would.)
    common::wait_until(|| count(&db, "b") == 0);
    assert_eq!(
        db.read(None, Some("b"), "k").unwrap_err().status(),
        Status::NotFound
    );
    let still_there = runtime
        .block_on(
            sdk.get_item()
                .table_name(&table)
                .key("key", AttributeValue::S("b:k".into()))
                .send(),
        )
        .unwrap();
    assert!(still_there.item.is_some());
}
