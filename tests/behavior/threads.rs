//! One handle shared by threads (docs/c-api.md, threads): writes from eight
//! at once, and updates racing deletes.

use tetherdb::{Error, Status};

use crate::count;
use crate::engine::{cases, Space};

cases![
    eight_threads_write_at_once_through_one_handle,
    concurrent_updates_and_deletes_never_recreate_a_key,
];

fn eight_threads_write_at_once_through_one_handle(s: &Space) {
    let writes = s.bulk(500);
    let db = s.open(r#"{"size": 25, "interval": 0.05}"#);
    std::thread::scope(|scope| {
        for t in 0..8 {
            let db = &db;
            scope.spawn(move || {
                for i in 0..writes {
                    let key = format!("t{t}-{i:03}");
                    let value = format!("value {t} {i}");
                    match i % 2 {
                        0 => db.write_queued(None, Some("threads"), &key, value.as_bytes()),
                        _ => db.write(None, Some("threads"), &key, value.as_bytes()),
                    }
                    .unwrap();
                }
            });
        }
    });
    db.flush().unwrap();
    assert_eq!(count(&db, "threads"), 8 * writes);
    for t in 0..8 {
        for i in [0, 1, writes - 2, writes - 1] {
            let value = db
                .read(None, Some("threads"), &format!("t{t}-{i:03}"))
                .unwrap();
            assert_eq!(value, format!("value {t} {i}").as_bytes());
        }
    }
}

/// Update is a compare-and-swap: racing a delete, it either lands before
/// the delete or reports NotFound; it never brings the key back.
fn concurrent_updates_and_deletes_never_recreate_a_key(s: &Space) {
    let db = s.open(r#"{"size": 10, "interval": 0.05}"#);
    for round in 0..s.bulk(200) {
        let key = format!("k{round}");
        db.write(None, None, &key, b"v").unwrap();
        std::thread::scope(|scope| {
            scope.spawn(|| {
                for _ in 0..20 {
                    match db.update(None, None, &key, b"u") {
                        Ok(()) => {}
                        // Deleted: the race is over, and the read below
                        // finds the key if this update brought it back.
                        Err(Error::NotFound { .. }) => break,
                        Err(e) => panic!("{e}"),
                    }
                }
            });
            scope.spawn(|| db.delete(None, None, &key).unwrap());
        });
        assert_eq!(
            db.read(None, None, &key).unwrap_err().status(),
            Status::NotFound
        );
    }
}
