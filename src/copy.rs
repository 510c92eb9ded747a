//! Moving data between two backends of one handle (docs/moving-data.md):
//! `tether_copy`, and the `tether` command's copy, push, pull and diff.
//!
//! It streams. The source is listed a page of keys at a time; each key is
//! read with its deadline (a peek: a copy restarts no sliding ttl), the
//! target's value is read where `changed` asks for a comparison, and the
//! writes go to the target in its own batches (`Backend::write_batch`,
//! within `Backend::batch_limit`). With `mirror`, the target is then
//! listed the same way and each key the source lacks is deleted. Memory
//! holds one page and one batch, whatever the size of the stores.

use std::fmt;

use crate::backend::{Access, Backend, Versioned, Write};
use crate::db::Db;
use crate::error::{Error, Result};
use crate::keys;

/// Keys a listing page of the copy holds.
const PAGE: usize = 1000;
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
    /// take.
    fn copy_over(&mut self, prefix: &str) -> Result<()> {
        let source = self.source;
        each_key(source, prefix, self.bucket, |key, user_key| {
            // Gone or expired since the listing: nothing to copy.
            let Some(read) = source.read_versioned(key, true, Access::Peek)? else {
                return Ok(());
            };
            if self.options.changed && self.target_holds(key, &read)? {
                self.report.unchanged += 1;
                return Ok(());
            }
            self.report.copied += 1;
            self.report.note(user_key);
            if !self.options.dry_run {
                let write = Write {
                    key: key.to_owned(),
                    value: read.value,
                    deadline: read.deadline,
                };
                self.batch.add(write)?;
            }
            Ok(())
        })?;
        self.batch.send()
    }

    /// Whether the target holds `key` with the value read from the source.
    fn target_holds(&self, key: &str, read: &Versioned) -> Result<bool> {
        let held = self.target.read_versioned(key, true, Access::Peek)?;
        Ok(held.is_some_and(|held| held.value == read.value))
    }

    /// Deletes each key of the target under `prefix` that the source lacks.
    fn delete_missing(&mut self, prefix: &str) -> Result<()> {
        let (source, target) = (self.source, self.target);
        each_key(target, prefix, self.bucket, |key, user_key| {
            if source.read_versioned(key, false, Access::Peek)?.is_some() {
                return Ok(());
            }
            if !self.options.dry_run && !target.delete(key)? {
                // Gone meanwhile: nothing was deleted.
                return Ok(());
            }
            self.report.deleted += 1;
            self.report.note(user_key);
            Ok(())
        })
    }
}

/// Calls `each` with every stored key `backend` lists under `prefix`, and
/// the key as the bucket's listing names it, a page at a time (values not
/// fetched). The stored key `bucket:`, which a bucket's listing leaves
/// out, is left out here too.
fn each_key(
    backend: &dyn Backend,
    prefix: &str,
    bucket: Option<&str>,
    mut each: impl FnMut(&str, &str) -> Result<()>,
) -> Result<()> {
    let mut after: Option<String> = None;
    loop {
        let page = backend.list(prefix, after.as_deref(), PAGE, true)?;
        for (key, _) in &page.entries {
            if let Some(user_key) = keys::in_bucket(bucket, key) {
                each(key, user_key)?;
            }
        }
        match (page.more, page.entries.last()) {
            (true, Some((last, _))) => after = Some(last.clone()),
            _ => return Ok(()),
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
