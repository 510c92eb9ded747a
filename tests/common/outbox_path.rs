//! An outbox of its own for each handle a test opens: handles of remote
//! backends that run side by side must not share the default
//! `./tetherdb_data.outbox`. Included by the server fixtures with `#[path]`,
//! so that the benches that borrow them get it too.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// `queue_batch` with an outbox of its own, unless it names one or turns
/// the outbox off.
pub fn own_outbox(queue_batch: &str) -> String {
    if queue_batch.contains("outbox_path") || queue_batch.contains("durable") {
        return queue_batch.to_owned();
    }
    let body = queue_batch.trim().trim_start_matches('{').trim_start();
    let separator = if body.starts_with('}') { "" } else { ", " };
    format!(
        r#"{{"outbox_path": {:?}{separator}{body}"#,
        new_outbox_path()
    )
}

/// A new, empty directory for an outbox, under the target's temporary
/// directory; kept, so that a test can reopen it.
pub fn new_outbox_path() -> PathBuf {
    tempfile::Builder::new()
        .prefix("outbox-")
        .tempdir_in(Path::new(env!("CARGO_TARGET_TMPDIR")))
        .expect("a directory for an outbox")
        .keep()
}
