//! Moving data between two backends of one handle (docs/moving-data.md):
//! `tether_copy`, and the `tether` command's copy, push, pull and diff.
//!
//! It streams. The source is listed a page of keys at a time; the page's
//! values and deadlines come in one batch read (`Backend::read_many`, a
//! peek: a copy restarts no sliding ttl), the target's where `changed`
//! asks for a comparison, and the writes go to the target in its own
//! batches (`Backend::write_batch`, within `Backend::batch_limit`). With
//! `mirror`, the target is then listed the same way, the source read for
//! the page's keys, and what it lacks deleted in one batch
//! (`Backend::delete_many`). Memory holds one page and one batch, whatever
//! the size of the stores.

use std::fmt;

use crate::backend::{Backend, Write};
use crate::db::Db;
use crate::error::{Error, Result};
use crate::keys;

/// Keys a listing page of the copy holds.
const PAGE: usize = 1000;
/// Keys whose values one batch read fetches: a part of a page, so that
/// a page of large values is not in memory at once (64 is also what one
/// etcd transaction reads with the default `max_txn_ops`).
const VALUES_READ: usize = 64;
/// Keys the report names, at most.
const REPORTED_KEYS: usize = 1000;

/// What [`Db::copy`] does beyond copying every key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CopyOptions {
    /// Copy only keys whose value differs on the target (or that it
    /// lacks): push and pull. A rerun after an interruption writes only
    /// what had not arrived.
    pub changed: bool,
    /// Also delete the target's keys (within the bucket and prefix) that
    /// the source lacks.
    pub mirror: bool,
    /// Change nothing: the report says what would change (diff).
    pub dry_run: bool,
}

/// What a copy did, or with `dry_run` would do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CopyReport {
    /// Keys written to the target.
    pub copied: u64,
    /// Keys deleted from the target (`mirror`).
    pub deleted: u64,
    /// Keys left as they were, the same on both (`changed`).
    pub unchanged: u64,
    /// The keys copied or deleted, in that order, the first 1,000.
    pub keys: Vec<String>,
}

impl CopyReport {
    /// The report as `tether_copy` gives it: `{"copied": N, "deleted": N,
    /// "unchanged": N, "keys": [...]}`, its members in that order.
    pub fn to_json(&self) -> String {
        format!(
            r#"{{"copied":{},"deleted":{},"unchanged":{},"keys":{}}}"#,
            self.copied,
            self.deleted,
            self.unchanged,
            serde_json::Value::from(self.keys.clone())
        )
    }

    fn note(&mut self, key: &str) {
        if self.keys.len() < REPORTED_KEYS {
            self.keys.push(key.to_owned());
        }
    }
}

impl Db {
    /// Copies the keys of `bucket` starting with `prefix` from the backend
    /// `from` to the backend `to` of this handle, keeping each key's
    /// remaining ttl (a key that expires meanwhile is not copied). Values
    /// the source holds replace the target's; see [`CopyOptions`] for
    /// comparing, mirroring and dry runs.
    ///
    /// It acts on the stores as they are, as [`Db::list`] does: writes
    /// still queued for `from` are not in it (flush first), and keys
    /// written meanwhile may or may not be copied. A failure stops the
    /// copy with what was done so far in place; a rerun with `changed`
    /// goes on from there.
    pub fn copy(
        &self,
        from: &str,
        to: &str,
        bucket: Option<&str>,
        prefix: Option<&str>,
        options: CopyOptions,
    ) -> Result<CopyReport> {
        let subject = Copying { from, to, bucket };
        if from.is_empty() || to.is_empty() {
            return Err(Error::invalid("a copy names both backends").about(&subject));
        }
        let (from_at, source) = self.backend(Some(from)).map_err(|e| e.about(&subject))?;
        let (to_at, target) = self.backend(Some(to)).map_err(|e| e.about(&subject))?;
        if from_at == to_at {
            return Err(Error::invalid("a backend copied onto itself").about(&subject));
        }
        let bucket = keys::bucket(bucket).map_err(|e| e.about(&subject))?;
        let stored_prefix = keys::list_prefix(bucket, prefix.unwrap_or(""));
        let mut copy = Copy {
            source,
            target,
            bucket,
            options,
            report: CopyReport::default(),
            batch: Batch::new(target),
        };
        copy.copy_over(&stored_prefix)?;
        if options.mirror {
            copy.delete_missing(&stored_prefix)?;
        }
        Ok(copy.report)
    }
}

/// One copy under way.
struct Copy<'a> {
    source: &'a dyn Backend,
    target: &'a dyn Backend,
    bucket: Option<&'a str>,
    options: CopyOptions,
    report: CopyReport,
    batch: Batch<'a>,
}

impl Copy<'_> {
    /// Writes each key of the source under `prefix` that the target should
    /// take, a listing page at a time: the page's values and deadlines in
    /// one batch read of the source (and, to compare, one of the target).
    fn copy_over(&mut self, prefix: &str) -> Result<()> {
        let (source, target) = (self.source, self.target);
        each_page(source, prefix, self.bucket, |page| {
            // Values are read a part of the page at a time, each part
            // batched before the next is read: values of up to an engine's
            // limit (1.5 MiB on etcd) are never a whole page in memory.
            for part in page.chunks(VALUES_READ) {
                self.copy_part(part)?;
            }
            Ok(())
        })?;
        self.batch.send()?;
        // Returned, the copy is as durable on the target as its writes.
        if !self.options.dry_run {
            target.flush()?;
        }
        Ok(())
    }

    /// Copies `part` of a page: one batch read of the source, one of the
    /// target to compare, and its writes added to the batch.
    fn copy_part(&mut self, part: &[(String, String)]) -> Result<()> {
        let (source, target) = (self.source, self.target);
        let stored: Vec<String> = part.iter().map(|(key, _)| key.clone()).collect();
        let reads = source.read_many(&stored, true)?;
        let held = match self.options.changed {
            true => target.read_many(&stored, true)?,
            false => Vec::new(),
        };
        for (at, ((key, user_key), read)) in part.iter().zip(reads).enumerate() {
            // Gone or expired since the listing: nothing to copy.
            let Some(read) = read else { continue };
            let same = held.get(at).and_then(Option::as_ref);
            if same.is_some_and(|held| held.value == read.value) {
                self.report.unchanged += 1;
                continue;
            }
            self.report.copied += 1;
            self.report.note(user_key);
            if !self.options.dry_run {
                let write = Write {
                    key: key.clone(),
                    value: read.value,
                    deadline: read.deadline,
                };
                self.batch.add(write)?;
            }
        }
        Ok(())
    }

    /// Deletes each key of the target under `prefix` that the source lacks,
    /// a listing page at a time: one batch read of the source, one batch
    /// delete of the target.
    fn delete_missing(&mut self, prefix: &str) -> Result<()> {
        let (source, target) = (self.source, self.target);
        each_page(target, prefix, self.bucket, |page| {
            let stored: Vec<String> = page.iter().map(|(key, _)| key.clone()).collect();
            let there = source.read_many(&stored, false)?;
            let (missing, user_keys): (Vec<String>, Vec<String>) = page
                .into_iter()
                .zip(there)
                .filter(|(_, read)| read.is_none())
                .map(|(keys, _)| keys)
                .unzip();
            if !self.options.dry_run && !missing.is_empty() {
                target.delete_many(&missing)?;
            }
            for user_key in &user_keys {
                self.report.deleted += 1;
                self.report.note(user_key);
            }
            Ok(())
        })
    }
}

/// Calls `each` with every page of stored keys `backend` lists under
/// `prefix`, each key with its name in the bucket's listing (values not
/// fetched). The stored key `bucket:`, which a bucket's listing leaves
/// out, is left out here too.
fn each_page(
    backend: &dyn Backend,
    prefix: &str,
    bucket: Option<&str>,
    mut each: impl FnMut(Vec<(String, String)>) -> Result<()>,
) -> Result<()> {
    let mut after: Option<String> = None;
    loop {
        let listing = backend.list(prefix, after.as_deref(), PAGE, true)?;
        after = match listing.more {
            true => listing.entries.last().map(|(key, _)| key.clone()),
            false => None,
        };
        let page = listing
            .entries
            .into_iter()
            .filter_map(|(key, _)| {
                let user_key = keys::in_bucket(bucket, &key)?.to_owned();
                Some((key, user_key))
            })
            .collect();
        each(page)?;
        if after.is_none() {
            return Ok(());
        }
    }
}

/// Writes gathered for the target, sent as one `write_batch` once the next
/// would pass the engine's limit on a batch.
struct Batch<'a> {
    target: &'a dyn Backend,
    writes: Vec<Write>,
    bytes: usize,
}

impl<'a> Batch<'a> {
    fn new(target: &'a dyn Backend) -> Batch<'a> {
        Batch {
            target,
            writes: Vec::new(),
            bytes: 0,
        }
    }

    fn add(&mut self, write: Write) -> Result<()> {
        self.target.accepts(&write.key, &write.value)?;
        let limit = self.target.batch_limit();
        let size = write.key.len() + write.value.len() + limit.overhead;
        let full = self.writes.len() >= limit.writes.min(PAGE)
            || self.bytes.saturating_add(size) > limit.bytes;
        if full && !self.writes.is_empty() {
            self.send()?;
        }
        self.bytes += size;
        self.writes.push(write);
        Ok(())
    }

    fn send(&mut self) -> Result<()> {
        if !self.writes.is_empty() {
            self.target.write_batch(&self.writes)?;
        }
        self.writes.clear();
        self.bytes = 0;
        Ok(())
    }
}

/// What an error of a copy is about.
struct Copying<'a> {
    from: &'a str,
    to: &'a str,
    bucket: Option<&'a str>,
}

impl fmt::Display for Copying<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "copying from {:?} to {:?}", self.from, self.to)?;
        match self.bucket {
            Some(bucket) => write!(f, " (bucket {bucket:?})"),
            None => Ok(()),
        }
    }
}
