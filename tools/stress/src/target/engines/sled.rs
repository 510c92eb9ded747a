//! sled, the local backend's engine, used directly: opened with the
//! library's settings, a write an insert (or, queued, one `sled::Batch` per
//! thread), an update a compare-and-swap, the listing a prefix scan.

use tetherdb::Status;

use super::failure;
use crate::target::{Failure, KeyBuf, Outcome, Session, Target};

/// sled opened as the library opens it: its defaults but for the page
/// cache, `local.cache_capacity` bytes.
/// Queued writes become one `sled::Batch` per `batch` writes per thread.
pub struct Sled {
    db: sled::Db,
    batch: usize,
}

impl Sled {
    pub fn open(
        path: &std::path::Path,
        cache_capacity: u64,
        batch: usize,
    ) -> Result<Sled, Failure> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(cache_capacity)
            .open()
            .map_err(|e| failure(Status::Io, format!("sled open {}: {e}", path.display())))?;
        Ok(Sled { db, batch })
    }
}

struct SledSession<'a> {
    db: &'a sled::Db,
    size: usize,
    batch: sled::Batch,
    pending: usize,
    last_error: String,
}

impl SledSession<'_> {
    fn fail(&mut self, status: Status, error: impl std::fmt::Display) -> Status {
        self.last_error = format!("sled: {error}");
        status
    }
}

impl Session for SledSession<'_> {
    fn write(&mut self, key: &KeyBuf, value: &[u8], queued: bool) -> Status {
        if !queued {
            return match self.db.insert(key.stored(), value) {
                Ok(_) => Status::Ok,
                Err(e) => self.fail(Status::Io, e),
            };
        }
        self.batch.insert(key.stored(), value);
        self.pending += 1;
        if self.pending < self.size {
            return Status::Ok;
        }
        match self.finish() {
            Ok(()) => Status::Ok,
            Err(f) => self.fail(f.status, f.message),
        }
    }

    fn update(&mut self, key: &KeyBuf, value: &[u8]) -> Status {
        // What the library does on local: compare-and-swap on the value
        // read, again when another writer came in between.
        loop {
            let current = match self.db.get(key.stored()) {
                Ok(Some(v)) => v,
                Ok(None) => return self.fail(Status::NotFound, "key not found"),
                Err(e) => return self.fail(Status::Io, e),
            };
            match self
                .db
                .compare_and_swap(key.stored(), Some(current), Some(value))
            {
                Ok(Ok(())) => return Status::Ok,
                Ok(Err(_)) => continue,
                Err(e) => return self.fail(Status::Io, e),
            }
        }
    }

    fn read(&mut self, key: &KeyBuf, check: &mut dyn FnMut(&[u8])) -> Status {
        match self.db.get(key.stored()) {
            Ok(Some(value)) => {
                check(&value);
                Status::Ok
            }
            Ok(None) => self.fail(Status::NotFound, "key not found"),
            Err(e) => self.fail(Status::Io, e),
        }
    }

    fn last_error(&self) -> String {
        self.last_error.clone()
    }

    fn finish(&mut self) -> Outcome {
        if self.pending == 0 {
            return Ok(());
        }
        self.pending = 0;
        self.db
            .apply_batch(std::mem::take(&mut self.batch))
            .map_err(|e| failure(Status::Io, format!("sled: {e}")))
    }
}

impl Target for Sled {
    fn describe(&self) -> String {
        "sled (engine used directly)".into()
    }

    fn session(&self) -> Box<dyn Session + '_> {
        Box::new(SledSession {
            db: &self.db,
            size: self.batch,
            batch: sled::Batch::default(),
            pending: 0,
            last_error: String::new(),
        })
    }

    fn flush(&self) -> Outcome {
        self.db
            .flush()
            .map(drop)
            .map_err(|e| failure(Status::Io, format!("sled: {e}")))
    }

    fn list(
        &self,
        bucket: &str,
        prefix: &str,
        _page: usize,
        visit: &mut dyn FnMut(&str, &[u8]),
    ) -> Outcome {
        let skip = if bucket.is_empty() {
            0
        } else {
            bucket.len() + 1
        };
        let start = match bucket {
            "" => prefix.to_owned(),
            bucket => format!("{bucket}:{prefix}"),
        };
        for entry in self.db.scan_prefix(start.as_bytes()) {
            let (key, value) = entry.map_err(|e| failure(Status::Io, format!("sled: {e}")))?;
            visit(&String::from_utf8_lossy(&key[skip..]), &value);
        }
        Ok(())
    }

    fn close(self: Box<Self>) -> Outcome {
        self.flush()
    }
}
