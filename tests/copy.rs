//! Moving data between backends (docs/moving-data.md): `Db::copy` and
//! `tether_copy` between every ordered pair of engines, on real servers.

mod common;

use std::ffi::CStr;
use std::path::Path;
use std::ptr;

use common::etcd::Etcd;
use common::{c, last_error, moto, wait_until};
use tetherdb::ffi::*;
use tetherdb::{CopyOptions, CopyReport, Db, Status, WriteOptions};

const ENGINES: [&str; 3] = ["disk", "cluster", "table"];

/// A handle over a local store (`disk`, and `shelf` beside it), an etcd
/// (`cluster`), a DynamoDB table on moto (`table`) and a read-only view of
/// the disk (`view`), a write-only one of the shelf (`sink`) and the shelf
/// in front of the etcd (`docs`, tiered), each under a name of its own.
struct Stores {
    db: Db,
    etcd: Etcd,
    _moto: std::sync::Arc<moto::Moto>,
    _dir: tempfile::TempDir,
}

fn stores(test: &str) -> Option<Stores> {
    let etcd = Etcd::start()?;
    let moto = moto::server()?;
    let dir = tempfile::tempdir().unwrap();
    let local = |name: &str| {
        format!(
            r#"{{"engine": "local", "filepath": {:?}}}"#,
            dir.path().join(name).to_str().unwrap()
        )
    };
    let json = format!(
        r#"{{"logging": "none", "default_backend": "disk",
            "queue_batch": {{"durable": false}},
            "backends": {{
              "disk": {disk},
              "shelf": {shelf},
              "cluster": {{"engine": "etcd", "endpoints": ["{etcd}"], "timeout": 5}},
              "table": {{"engine": "dynamodb", "table_name": "{table}", "region": "us-east-1",
                         "endpoint_url": "{url}", "create_table": true}},
              "view": {{"engine": "read_only", "of": "disk"}},
              "sink": {{"engine": "write_only", "of": "shelf"}},
              "docs": {{"engine": "tiered", "layers": ["shelf", "cluster"]}}
            }}}}"#,
        disk = local("disk"),
        shelf = local("shelf"),
        etcd = etcd.endpoint(),
        table = moto::table(test),
        url = moto.url(),
    );
    let db = Db::open_json(Some(&json)).unwrap();
    Some(Stores {
        db,
        etcd,
        _moto: moto,
        _dir: dir,
    })
}

fn read(db: &Db, backend: &str, bucket: &str, key: &str) -> Option<Vec<u8>> {
    match db.read(Some(backend), Some(bucket), key) {
        Ok(value) => Some(value),
        Err(e) if e.status() == Status::NotFound => None,
        Err(e) => panic!("{e}"),
    }
}

fn keys(db: &Db, backend: &str, bucket: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = db
            .list_keys(Some(backend), Some(bucket), None, after.as_deref(), 100)
            .unwrap();
        keys.extend(page.keys);
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    keys.sort();
    keys
}

const PLAIN: CopyOptions = CopyOptions {
    changed: false,
    mirror: false,
    dry_run: false,
};

fn with(changed: bool, mirror: bool, dry_run: bool) -> CopyOptions {
    CopyOptions {
        changed,
        mirror,
        dry_run,
    }
}

/// Values of every shape: text, bytes that are not UTF-8, empty.
fn values() -> Vec<(String, Vec<u8>)> {
    let mut values: Vec<(String, Vec<u8>)> = (0..30)
        .map(|i| (format!("k{i:02}"), format!("value {i}").into_bytes()))
        .collect();
    values.push(("binary".into(), vec![0, 0xff, 0xfe, b'\n', 0]));
    values.push(("empty".into(), Vec::new()));
    values
}

#[test]
fn copies_between_every_pair_of_engines_keeping_ttls() {
    let Some(s) = stores("pairs") else { return };
    let db = &s.db;
    for from in ENGINES {
        for to in ENGINES.iter().filter(|to| **to != from) {
            let bucket = format!("{from}-{to}");
            for (key, value) in values() {
                db.write(Some(from), Some(&bucket), &key, &value).unwrap();
            }
            // Keys outside the bucket stay where they are.
            let elsewhere = format!("{bucket}-not");
            db.write(Some(from), Some(&elsewhere), "k00", b"x").unwrap();
            let short = WriteOptions {
                ttl_ms: 1500,
                ..WriteOptions::default()
            };
            db.write_ex(Some(from), Some(&bucket), "short", b"s", &short)
                .unwrap();
            let report = db.copy(from, to, Some(&bucket), None, PLAIN).unwrap();
            let copied = values().len() as u64 + 1;
            assert_eq!(report.copied, copied, "{from} -> {to}: {report:?}");
            assert_eq!((report.deleted, report.unchanged), (0, 0));
            assert_eq!(report.keys.len() as u64, copied);
            for (key, value) in values() {
                assert_eq!(
                    read(db, to, &bucket, &key).as_deref(),
                    Some(&value[..]),
                    "{from} -> {to}: {key}"
                );
            }
            assert_eq!(read(db, to, &elsewhere, "k00"), None);
            // The ttl came along: the copy expires as the original does.
            wait_until(|| read(db, to, &bucket, "short").is_none());
            // Compared page by page (batch reads of both sides), nothing
            // differs; a key only the target has would go.
            db.write(Some(to), Some(&bucket), "extra", b"x").unwrap();
            let diff = db
                .copy(from, to, Some(&bucket), None, with(true, true, true))
                .unwrap();
            assert_eq!(
                (diff.copied, diff.deleted, diff.unchanged, diff.keys),
                (0, 1, copied - 1, vec!["extra".to_owned()]),
                "{from} -> {to}"
            );
            let mirror = db
                .copy(from, to, Some(&bucket), None, with(true, true, false))
                .unwrap();
            assert_eq!(mirror.deleted, 1, "{from} -> {to}");
            assert_eq!(read(db, to, &bucket, "extra"), None);
        }
    }
}

#[test]
fn changed_copies_what_differs_mirror_deletes_and_dry_run_changes_nothing() {
    let Some(s) = stores("changed") else { return };
    let db = &s.db;
    for (key, value) in values() {
        db.write(Some("disk"), Some("b"), &key, &value).unwrap();
    }
    db.copy("disk", "cluster", Some("b"), None, PLAIN).unwrap();
    // Since: two changed, one new, one gone from the source.
    db.write(Some("disk"), Some("b"), "k01", b"changed")
        .unwrap();
    db.write(Some("disk"), Some("b"), "binary", b"changed too")
        .unwrap();
    db.write(Some("disk"), Some("b"), "new", b"n").unwrap();
    db.delete(Some("disk"), Some("b"), "k02").unwrap();
    let total = values().len() as u64; // the source: -1 +1

    let diff = db
        .copy("disk", "cluster", Some("b"), None, with(true, true, true))
        .unwrap();
    let expected = CopyReport {
        copied: 3,
        deleted: 1,
        unchanged: total - 3,
        keys: vec!["binary".into(), "k01".into(), "new".into(), "k02".into()],
    };
    assert_eq!(diff, expected);
    // A dry run changed nothing.
    assert_eq!(read(db, "cluster", "b", "k01").unwrap(), b"value 1");
    assert_eq!(read(db, "cluster", "b", "new"), None);
    assert!(read(db, "cluster", "b", "k02").is_some());

    // Without mirror, the key the source lacks stays.
    let push = db
        .copy("disk", "cluster", Some("b"), None, with(true, false, false))
        .unwrap();
    assert_eq!(
        (push.copied, push.deleted, push.unchanged),
        (3, 0, total - 3)
    );
    assert!(read(db, "cluster", "b", "k02").is_some());
    let mirror = db
        .copy("disk", "cluster", Some("b"), None, with(true, true, false))
        .unwrap();
    assert_eq!(
        (mirror.copied, mirror.deleted, mirror.unchanged),
        (0, 1, total)
    );
    assert_eq!(keys(db, "cluster", "b"), keys(db, "disk", "b"));
    assert_eq!(read(db, "cluster", "b", "k01").unwrap(), b"changed");
    // Nothing left to do.
    let again = db
        .copy("disk", "cluster", Some("b"), None, with(true, true, false))
        .unwrap();
    assert_eq!((again.copied, again.deleted), (0, 0));

    // A prefix narrows both sides: mirror deletes only under it.
    db.write(Some("cluster"), Some("b"), "k99", b"only there")
        .unwrap();
    db.write(Some("cluster"), Some("b"), "z", b"outside the prefix")
        .unwrap();
    let narrow = db
        .copy(
            "disk",
            "cluster",
            Some("b"),
            Some("k"),
            with(true, true, false),
        )
        .unwrap();
    assert_eq!((narrow.copied, narrow.deleted), (0, 1));
    assert_eq!(narrow.keys, ["k99"]);
    assert!(read(db, "cluster", "b", "z").is_some());
}

/// A copy that fails midway leaves what arrived in place; rerun with
/// `changed`, it writes only the rest. The failure: a value etcd refuses
/// for its size, among keys sent before and after it.
#[test]
fn a_copy_that_failed_midway_goes_on_with_changed() {
    let Some(s) = stores("resume") else { return };
    let db = &s.db;
    let keys: Vec<String> = (0..2000).map(|i| format!("{i:05}")).collect();
    for key in &keys {
        db.write(Some("disk"), Some("b"), key, key.as_bytes())
            .unwrap();
    }
    let huge = vec![b'x'; 2 << 20];
    db.write(Some("disk"), Some("b"), "01000-huge", &huge)
        .unwrap();
    let err = db
        .copy("disk", "cluster", Some("b"), None, PLAIN)
        .unwrap_err();
    assert_eq!(err.status(), Status::TooLarge, "{err}");
    let arrived = s.etcd.count("b:");
    assert!(arrived > 0 && arrived < 1000, "{arrived} arrived");

    db.delete(Some("disk"), Some("b"), "01000-huge").unwrap();
    let rest = db
        .copy("disk", "cluster", Some("b"), None, with(true, false, false))
        .unwrap();
    assert_eq!(rest.unchanged, arrived as u64);
    assert_eq!(rest.copied, (keys.len() - arrived) as u64);
    assert_eq!(s.etcd.count("b:"), keys.len());
}

/// A layer is a backend like any other: a copy into a tiered backend
/// writes every layer, and one out of it reads the last.
#[test]
fn copies_into_and_out_of_a_tiered_backend() {
    let Some(s) = stores("tiered") else { return };
    let db = &s.db;
    for (key, value) in values() {
        db.write(Some("disk"), Some("t"), &key, &value).unwrap();
    }
    let report = db.copy("disk", "docs", Some("t"), None, PLAIN).unwrap();
    assert_eq!(report.copied, values().len() as u64);
    for (key, value) in values() {
        assert_eq!(read(db, "shelf", "t", &key).as_deref(), Some(&value[..]));
        assert_eq!(s.etcd.get(&format!("t:{key}")).as_deref(), Some(&value[..]));
    }
    db.write(Some("cluster"), Some("t"), "only-in-etcd", b"e")
        .unwrap();
    let back = db
        .copy("docs", "disk", Some("t"), None, with(true, false, false))
        .unwrap();
    assert_eq!((back.copied, back.unchanged), (1, values().len() as u64));
    assert_eq!(read(db, "disk", "t", "only-in-etcd").unwrap(), b"e");
}

#[test]
fn layers_refuse_the_reads_and_deletes_they_refuse_elsewhere() {
    let Some(s) = stores("layers") else { return };
    let db = &s.db;
    db.write(Some("shelf"), Some("b"), "k", b"v").unwrap();
    db.write(Some("disk"), Some("b"), "k", b"v").unwrap();
    db.write(Some("disk"), Some("b"), "only-disk", b"v")
        .unwrap();
    let status = |from: &str, to: &str, options: CopyOptions| {
        db.copy(from, to, Some("b"), None, options)
            .unwrap_err()
            .status()
    };
    assert_eq!(status("sink", "disk", PLAIN), Status::Unsupported);
    // Comparing reads the target: refused on a write-only one.
    assert_eq!(
        status("disk", "sink", with(true, false, false)),
        Status::Unsupported
    );
    // The view (of disk) lacks nothing of the shelf's, so nothing would be
    // written: the mirror's delete of `only-disk` is what is refused.
    assert_eq!(
        status("shelf", "view", with(true, true, false)),
        Status::Unsupported
    );
    assert!(read(db, "disk", "b", "only-disk").is_some());
    // Written blind, a write-only target takes a copy.
    let report = db.copy("disk", "sink", Some("b"), None, PLAIN).unwrap();
    assert_eq!(report.copied, 2);
    assert_eq!(read(db, "shelf", "b", "only-disk").unwrap(), b"v");
}

/// A copy to etcd stopped midway by the server's death leaves what arrived
/// in place; with the server back, a rerun with `changed` writes only the
/// rest.
#[test]
fn a_copy_cut_off_by_etcd_dying_goes_on_with_changed() {
    let Some(mut s) = stores("killed") else {
        return;
    };
    let total = 30_000usize;
    for i in 0..total {
        let key = format!("{i:06}");
        s.db.write(Some("disk"), Some("b"), &key, key.as_bytes())
            .unwrap();
    }
    let (db, etcd) = (&s.db, &mut s.etcd);
    let (failed, arrived_before) = std::thread::scope(|scope| {
        let copy = scope.spawn(|| db.copy("disk", "cluster", Some("b"), None, PLAIN));
        // Some keys arrived; the copy goes on: the server dies.
        let mut arrived = 0;
        while arrived == 0 && !copy.is_finished() {
            arrived = etcd.count("b:");
        }
        etcd.pause();
        (copy.join().unwrap(), arrived)
    });
    let err = failed.expect_err("the copy outlived the server (30,000 keys in one poll)");
    assert_eq!(err.status(), Status::Unavailable, "{err}");
    s.etcd.resume();
    let arrived = s.etcd.count("b:");
    assert!(
        arrived >= arrived_before && arrived < total,
        "{arrived_before}, then {arrived} of {total} arrived"
    );

    let rest =
        s.db.copy("disk", "cluster", Some("b"), None, with(true, false, false))
            .unwrap();
    assert_eq!(rest.unchanged, arrived as u64, "{:?}", rest.copied);
    assert_eq!(rest.copied, (total - arrived) as u64);
    assert_eq!(s.etcd.count("b:"), total);
}

#[test]
fn bad_copies_are_refused_and_change_nothing() {
    let Some(s) = stores("bad") else { return };
    let db = &s.db;
    db.write(Some("disk"), Some("b"), "k", b"v").unwrap();
    let status = |from: &str, to: &str| {
        db.copy(from, to, Some("b"), None, PLAIN)
            .unwrap_err()
            .status()
    };
    assert_eq!(status("disk", "nowhere"), Status::UnknownBackend);
    assert_eq!(status("nowhere", "disk"), Status::UnknownBackend);
    assert_eq!(status("disk", "disk"), Status::InvalidArgument);
    assert_eq!(status("", "disk"), Status::InvalidArgument);
    // A read-only view refuses the writes; reading from it is a copy.
    db.write(Some("shelf"), Some("b"), "s", b"v").unwrap();
    assert_eq!(status("shelf", "view"), Status::Unsupported);
    assert_eq!(read(db, "disk", "b", "s"), None);
    let report = db.copy("view", "shelf", Some("b"), None, PLAIN).unwrap();
    assert_eq!(report.copied, 1);
    assert_eq!(read(db, "shelf", "b", "k").unwrap(), b"v");
}

/// `tether_copy`: its report as JSON, freed with `tether_free_string`; its
/// arguments checked, the out-parameter left alone on failure.
#[test]
fn the_c_entry_point_reports_in_json() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_c(dir.path());
    unsafe {
        for key in ["a", "b"] {
            let (key, value) = (c(key), b"v");
            let status = tether_write(
                db,
                c("one").as_ptr(),
                ptr::null(),
                key.as_ptr(),
                value.as_ptr(),
                value.len(),
                0,
            );
            assert_eq!(status, Status::Ok, "{}", last_error());
        }
        let mut report = ptr::null_mut();
        let copy = |from: &str, to: &str, flags: u32, out: *mut *mut _| {
            let (from, to) = (c(from), c(to));
            tether_copy(
                db,
                from.as_ptr(),
                to.as_ptr(),
                ptr::null(),
                ptr::null(),
                flags,
                out,
            )
        };
        let status = copy("one", "two", TETHER_COPY_DRY_RUN, &mut report);
        assert_eq!(status, Status::Ok, "{}", last_error());
        let json = CStr::from_ptr(report).to_str().unwrap().to_owned();
        tether_free_string(report);
        assert_eq!(
            json,
            r#"{"copied":2,"deleted":0,"unchanged":0,"keys":["a","b"]}"#
        );

        let mut untouched = 7usize as *mut _;
        assert_eq!(
            copy("one", "one", 0, &mut untouched),
            Status::InvalidArgument
        );
        assert_eq!(
            copy("one", "three", 0, &mut untouched),
            Status::UnknownBackend
        );
        assert_eq!(
            copy("one", "two", 8, &mut untouched),
            Status::InvalidArgument
        );
        assert!(last_error().contains("flags"), "{}", last_error());
        assert_eq!(untouched, 7usize as *mut _);
        assert_eq!(
            copy("one", "two", 0, ptr::null_mut()),
            Status::InvalidArgument
        );
        let to = c("two");
        let null_from = tether_copy(
            db,
            ptr::null(),
            to.as_ptr(),
            ptr::null(),
            ptr::null(),
            0,
            &mut report,
        );
        assert_eq!(null_from, Status::InvalidArgument);
        let bad_utf8 = [0xffu8, 0];
        let bad_from = tether_copy(
            db,
            bad_utf8.as_ptr().cast(),
            to.as_ptr(),
            ptr::null(),
            ptr::null(),
            0,
            &mut report,
        );
        assert_eq!(bad_from, Status::InvalidArgument);
        assert_eq!(
            tether_copy(
                ptr::null_mut(),
                to.as_ptr(),
                to.as_ptr(),
                ptr::null(),
                ptr::null(),
                0,
                &mut report
            ),
            Status::InvalidArgument
        );

        assert_eq!(copy("one", "two", 0, &mut report), Status::Ok);
        tether_free_string(report);
        tether_close(db);
    }
}

fn open_c(dir: &Path) -> *mut TetherDb {
    let json = format!(
        r#"{{"logging": "none", "default_backend": "one", "queue_batch": {{"durable": false}},
            "backends": {{"one": {{"engine": "local", "filepath": {:?}}},
                          "two": {{"engine": "local", "filepath": {:?}}}}}}}"#,
        dir.join("one").to_str().unwrap(),
        dir.join("two").to_str().unwrap()
    );
    let json = c(&json);
    let mut db = ptr::null_mut();
    let status = unsafe { tether_open(json.as_ptr(), &mut db) };
    assert_eq!(status, Status::Ok, "{}", last_error());
    db
}
