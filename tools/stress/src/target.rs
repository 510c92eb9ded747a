//! What the workload drives: the library through its C ABI (the tool's
//! purpose), or, for the benchmark report's baseline, the engine underneath
//! used directly (sled, etcd-client, aws-sdk-dynamodb) on the same keys and
//! values.

use std::ffi::{c_char, CStr, CString};
use std::ptr;

use tetherdb::ffi::{
    tether_close, tether_flush, tether_free, tether_last_error, tether_list, tether_open,
    tether_open_file, tether_page_free, tether_page_key, tether_page_len, tether_page_next,
    tether_page_value, tether_read, tether_status_name, tether_update, tether_write, TetherDb,
    TetherPage, TETHER_QUEUE,
};
use tetherdb::Status;

/// A call that did not succeed: its status and message.
#[derive(Clone, Debug)]
pub struct Failure {
    pub status: Status,
    pub message: String,
}

pub type Outcome = Result<(), Failure>;

/// One key as the calls need it, built once per operation in one buffer:
/// `bucket:key\0`. The C ABI takes the key part (with the NUL); an engine
/// takes the stored key, `bucket:key`, so both sides store
/// the same bytes.
pub struct KeyBuf {
    buf: Vec<u8>,
    /// Length of `bucket:`, or 0 without a bucket.
    prefix: usize,
}

impl KeyBuf {
    pub fn new(bucket: &str) -> KeyBuf {
        let mut buf = Vec::with_capacity(bucket.len() + 40);
        if !bucket.is_empty() {
            buf.extend_from_slice(bucket.as_bytes());
            buf.push(b':');
        }
        let prefix = buf.len();
        KeyBuf { buf, prefix }
    }

    /// Replaces the key part with `key` (which holds no NUL).
    pub fn set(&mut self, key: impl std::fmt::Display) {
        use std::io::Write;
        self.buf.truncate(self.prefix);
        write!(self.buf, "{key}\0").expect("writing to a Vec cannot fail");
    }

    pub fn c_key(&self) -> *const c_char {
        self.buf[self.prefix..].as_ptr().cast()
    }

    pub fn stored(&self) -> &[u8] {
        &self.buf[..self.buf.len() - 1]
    }
}

/// A target's calls from one thread.
pub trait Session {
    fn write(&mut self, key: &KeyBuf, value: &[u8], queued: bool) -> Status;
    fn update(&mut self, key: &KeyBuf, value: &[u8]) -> Status;
    /// Reads `key`, and on success hands its value to `check`.
    fn read(&mut self, key: &KeyBuf, check: &mut dyn FnMut(&[u8])) -> Status;
    /// The message of this thread's last failed call.
    fn last_error(&self) -> String;
    /// Sends what this thread still holds (an engine's partial batch).
    fn finish(&mut self) -> Outcome {
        Ok(())
    }
}

pub trait Target: Sync {
    /// What is measured, for the summary: "library (C ABI)", "sled", ...
    fn describe(&self) -> String;
    fn session(&self) -> Box<dyn Session + '_>;
    /// Waits until every queued write is applied and durable.
    fn flush(&self) -> Outcome;
    /// Visits every entry of `bucket` whose key starts with `prefix`,
    /// with the key without its bucket part, `page` entries per request
    /// where the target pages.
    fn list(
        &self,
        bucket: &str,
        prefix: &str,
        page: usize,
        visit: &mut dyn FnMut(&str, &[u8]),
    ) -> Outcome;
    fn close(self: Box<Self>) -> Outcome;
}

// --- the library, through the C ABI ---------------------------------------

/// The configuration as `--config` gives it.
pub enum ConfigSource {
    Json(String),
    File(String),
}

pub struct CAbi {
    db: *mut TetherDb,
    /// NULL for the default backend, as a C caller passes it.
    backend: Option<CString>,
    bucket: CString,
}

// SAFETY: the C contract (docs/c-api.md, "Threads") makes one handle safe to use
// from any number of threads at once; only tether_close must not overlap
// another call, and `close` takes the target by value after every thread
// has ended.
unsafe impl Send for CAbi {}
unsafe impl Sync for CAbi {}

fn last_error() -> String {
    // SAFETY: never NULL, valid on this thread until its next failing call.
    unsafe { CStr::from_ptr(tether_last_error()) }
        .to_string_lossy()
        .into_owned()
}

pub fn status_name(status: Status) -> &'static str {
    // SAFETY: a static NUL-terminated name.
    unsafe { CStr::from_ptr(tether_status_name(status)) }
        .to_str()
        .unwrap_or("?")
}

fn check(status: Status) -> Outcome {
    match status {
        Status::Ok => Ok(()),
        status => Err(Failure {
            status,
            message: last_error(),
        }),
    }
}

fn c_string(what: &str, text: &str) -> Result<CString, Failure> {
    CString::new(text).map_err(|_| Failure {
        status: Status::InvalidArgument,
        message: format!("{what} holds a NUL byte"),
    })
}

impl CAbi {
    pub fn open(
        config: &ConfigSource,
        backend: Option<&str>,
        bucket: &str,
    ) -> Result<CAbi, Failure> {
        let mut db: *mut TetherDb = ptr::null_mut();
        let status = match config {
            // SAFETY: valid C strings for the call; `db` is a valid out-pointer.
            ConfigSource::Json(json) => unsafe {
                tether_open(c_string("the configuration", json)?.as_ptr(), &mut db)
            },
            ConfigSource::File(path) => unsafe {
                tether_open_file(c_string("the configuration path", path)?.as_ptr(), &mut db)
            },
        };
        check(status)?;
        Ok(CAbi {
            db,
            backend: backend.map(|b| c_string("--backend", b)).transpose()?,
            bucket: c_string("--bucket", bucket)?,
        })
    }

    fn backend(&self) -> *const c_char {
        self.backend.as_ref().map_or(ptr::null(), |b| b.as_ptr())
    }
}

struct CSession<'a>(&'a CAbi);

impl Session for CSession<'_> {
    fn write(&mut self, key: &KeyBuf, value: &[u8], queued: bool) -> Status {
        let flags = if queued { TETHER_QUEUE } else { 0 };
        // SAFETY: every pointer is valid for the call.
        unsafe {
            tether_write(
                self.0.db,
                self.0.backend(),
                self.0.bucket.as_ptr(),
                key.c_key(),
                value.as_ptr(),
                value.len(),
                flags,
            )
        }
    }

    fn update(&mut self, key: &KeyBuf, value: &[u8]) -> Status {
        // SAFETY: every pointer is valid for the call.
        unsafe {
            tether_update(
                self.0.db,
                self.0.backend(),
                self.0.bucket.as_ptr(),
                key.c_key(),
                value.as_ptr(),
                value.len(),
            )
        }
    }

    fn read(&mut self, key: &KeyBuf, check: &mut dyn FnMut(&[u8])) -> Status {
        let (mut value, mut len): (*mut u8, usize) = (ptr::null_mut(), 0);
        // SAFETY: every pointer is valid for the call; on TETHER_OK the
        // value is ours, `len` bytes, freed once with tether_free.
        unsafe {
            let status = tether_read(
                self.0.db,
                self.0.backend(),
                self.0.bucket.as_ptr(),
                key.c_key(),
                &mut value,
                &mut len,
            );
            if status == Status::Ok {
                check(std::slice::from_raw_parts(value, len));
                tether_free(value, len);
            }
            status
        }
    }

    fn last_error(&self) -> String {
        last_error()
    }
}

impl Target for CAbi {
    fn describe(&self) -> String {
        "library (C ABI)".into()
    }

    fn session(&self) -> Box<dyn Session + '_> {
        Box::new(CSession(self))
    }

    fn flush(&self) -> Outcome {
        // SAFETY: an open handle.
        check(unsafe { tether_flush(self.db) })
    }

    fn list(
        &self,
        bucket: &str,
        prefix: &str,
        page_size: usize,
        visit: &mut dyn FnMut(&str, &[u8]),
    ) -> Outcome {
        let bucket = c_string("--bucket", bucket)?;
        let prefix = c_string("the prefix", prefix)?;
        let mut after: Option<CString> = None;
        loop {
            let mut page: *mut TetherPage = ptr::null_mut();
            // SAFETY: valid pointers; on TETHER_OK the page is ours until
            // tether_page_free, and so are the strings it hands out.
            unsafe {
                check(tether_list(
                    self.db,
                    self.backend(),
                    bucket.as_ptr(),
                    prefix.as_ptr(),
                    after.as_ref().map_or(ptr::null(), |a| a.as_ptr()),
                    page_size,
                    &mut page,
                ))?;
                for i in 0..tether_page_len(page) {
                    let key = CStr::from_ptr(tether_page_key(page, i)).to_string_lossy();
                    let mut len = 0;
                    let value = tether_page_value(page, i, &mut len);
                    visit(&key, std::slice::from_raw_parts(value, len));
                }
                let next = tether_page_next(page);
                // The marker belongs to the page: copy it before the free.
                after = (!next.is_null()).then(|| CStr::from_ptr(next).to_owned());
                tether_page_free(page);
            }
            if after.is_none() {
                return Ok(());
            }
        }
    }

    fn close(self: Box<Self>) -> Outcome {
        // SAFETY: every thread using the handle has ended.
        check(unsafe { tether_close(self.db) })
    }
}

// --- sled, used directly ------------------------------------------------------

pub mod engines {
    use super::*;

    fn failure(status: Status, message: impl std::fmt::Display) -> Failure {
        Failure {
            status,
            message: message.to_string(),
        }
    }

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

    #[cfg(feature = "etcd")]
    pub use etcd::Etcd;

    /// etcd-client on a tokio runtime of its own, each call awaited on the
    /// calling thread as the library does; queued writes become one
    /// transaction per `batch` puts per thread.
    #[cfg(feature = "etcd")]
    mod etcd {
        use super::*;
        use etcd_client::{Client, Compare, CompareOp, GetOptions, KvClient, Txn, TxnOp};

        pub struct Etcd {
            runtime: tokio::runtime::Runtime,
            client: Client,
            batch: usize,
            /// The largest request etcd takes (`--max-request-bytes`): a
            /// transaction of large values goes out before it is reached,
            /// as the library splits its batches.
            max_bytes: usize,
        }

        /// Bytes a put adds to a transaction beyond its key and value (a
        /// generous bound on the protobuf framing), and bytes kept free
        /// for the request's own.
        const PUT_FRAMING: usize = 64;
        const REQUEST_FRAMING: usize = 512;

        fn status_of(error: &etcd_client::Error) -> Status {
            use etcd_client::Error as E;
            match error {
                E::GRpcStatus(s) => match s.code() {
                    tonic::Code::Unavailable | tonic::Code::DeadlineExceeded => Status::Unavailable,
                    _ => Status::Io,
                },
                E::TransportError(_) | E::IoError(_) => Status::Unavailable,
                _ => Status::Io,
            }
        }

        fn fail(error: etcd_client::Error) -> Failure {
            failure(status_of(&error), format!("etcd-client: {error}"))
        }

        impl Etcd {
            pub fn open(urls: &[String], batch: usize, max_bytes: usize) -> Result<Etcd, Failure> {
                // Two workers, as the library's runtime: the calling
                // threads wait on their own calls.
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .map_err(|e| failure(Status::Internal, format!("tokio runtime: {e}")))?;
                let client = runtime
                    .block_on(Client::connect(urls, None))
                    .map_err(fail)?;
                Ok(Etcd {
                    runtime,
                    client,
                    batch,
                    max_bytes,
                })
            }
        }

        struct EtcdSession<'a> {
            etcd: &'a Etcd,
            kv: KvClient,
            pending: Vec<TxnOp>,
            pending_bytes: usize,
            last_error: String,
        }

        impl EtcdSession<'_> {
            fn status(&mut self, result: Outcome) -> Status {
                match result {
                    Ok(()) => Status::Ok,
                    Err(f) => {
                        self.last_error = f.message;
                        f.status
                    }
                }
            }
        }

        impl Session for EtcdSession<'_> {
            fn write(&mut self, key: &KeyBuf, value: &[u8], queued: bool) -> Status {
                if queued {
                    let bytes = key.stored().len() + value.len() + PUT_FRAMING;
                    let limit = self.etcd.max_bytes.saturating_sub(REQUEST_FRAMING);
                    if self.pending_bytes + bytes > limit {
                        let result = self.finish();
                        if result.is_err() {
                            return self.status(result);
                        }
                    }
                    self.pending.push(TxnOp::put(key.stored(), value, None));
                    self.pending_bytes += bytes;
                    if self.pending.len() < self.etcd.batch {
                        return Status::Ok;
                    }
                    let result = self.finish();
                    return self.status(result);
                }
                let mut kv = self.kv.clone();
                let result = self
                    .etcd
                    .runtime
                    .block_on(kv.put(key.stored(), value, None))
                    .map(drop)
                    .map_err(fail);
                self.status(result)
            }

            fn update(&mut self, key: &KeyBuf, value: &[u8]) -> Status {
                // One transaction: put only where the key's version is above 0.
                let txn = Txn::new()
                    .when([Compare::version(key.stored(), CompareOp::Greater, 0)])
                    .and_then([TxnOp::put(key.stored(), value, None)]);
                let mut kv = self.kv.clone();
                let result = match self.etcd.runtime.block_on(kv.txn(txn)) {
                    Ok(reply) if reply.succeeded() => Ok(()),
                    Ok(_) => Err(failure(Status::NotFound, "etcd-client: key not found")),
                    Err(e) => Err(fail(e)),
                };
                self.status(result)
            }

            fn read(&mut self, key: &KeyBuf, check: &mut dyn FnMut(&[u8])) -> Status {
                let mut kv = self.kv.clone();
                let result = match self.etcd.runtime.block_on(kv.get(key.stored(), None)) {
                    Ok(reply) => match reply.kvs().first() {
                        Some(kv) => {
                            check(kv.value());
                            Ok(())
                        }
                        None => Err(failure(Status::NotFound, "etcd-client: key not found")),
                    },
                    Err(e) => Err(fail(e)),
                };
                self.status(result)
            }

            fn last_error(&self) -> String {
                self.last_error.clone()
            }

            fn finish(&mut self) -> Outcome {
                if self.pending.is_empty() {
                    return Ok(());
                }
                self.pending_bytes = 0;
                let txn = Txn::new().and_then(std::mem::take(&mut self.pending));
                let mut kv = self.kv.clone();
                self.etcd
                    .runtime
                    .block_on(kv.txn(txn))
                    .map(drop)
                    .map_err(fail)
            }
        }

        impl Target for Etcd {
            fn describe(&self) -> String {
                "etcd-client (engine used directly)".into()
            }

            fn session(&self) -> Box<dyn Session + '_> {
                Box::new(EtcdSession {
                    etcd: self,
                    kv: self.client.kv_client(),
                    pending: Vec::new(),
                    pending_bytes: 0,
                    last_error: String::new(),
                })
            }

            fn flush(&self) -> Outcome {
                // Every etcd write is durable once answered; each thread
                // sent its last transaction when it ended.
                Ok(())
            }

            fn list(
                &self,
                bucket: &str,
                prefix: &str,
                page: usize,
                visit: &mut dyn FnMut(&str, &[u8]),
            ) -> Outcome {
                let skip = if bucket.is_empty() {
                    0
                } else {
                    bucket.len() + 1
                };
                let start = match bucket {
                    "" => prefix.as_bytes().to_vec(),
                    bucket => format!("{bucket}:{prefix}").into_bytes(),
                };
                let mut kv = self.client.kv_client();
                let mut from = start.clone();
                // Pages of 1000 in ascending order, from just after the last
                // key seen, within the prefix's range; fewer when a page of
                // large values is over the client's 4 MiB message limit.
                let mut page = page as i64;
                loop {
                    let options = GetOptions::new()
                        .with_range(range_end(&start))
                        .with_limit(page);
                    let reply = match self.runtime.block_on(kv.get(from.clone(), Some(options))) {
                        Ok(reply) => reply,
                        Err(etcd_client::Error::GRpcStatus(s))
                            if s.code() == tonic::Code::OutOfRange && page > 1 =>
                        {
                            page = (page / 8).max(1);
                            continue;
                        }
                        Err(e) => return Err(fail(e)),
                    };
                    for entry in reply.kvs() {
                        visit(
                            &String::from_utf8_lossy(&entry.key()[skip..]),
                            entry.value(),
                        );
                    }
                    match (reply.more(), reply.kvs().last()) {
                        (true, Some(last)) => {
                            from = last.key().to_vec();
                            from.push(0);
                        }
                        _ => return Ok(()),
                    }
                }
            }

            fn close(self: Box<Self>) -> Outcome {
                Ok(())
            }
        }

        /// The first key after every key starting with `prefix`: etcd's
        /// range end for a prefix, `"\0"` (to the end of the keyspace) for
        /// the empty one. The library's own is private to its etcd backend.
        fn range_end(prefix: &[u8]) -> Vec<u8> {
            let mut end = prefix.to_vec();
            while let Some(last) = end.pop() {
                if last < 0xff {
                    end.push(last + 1);
                    return end;
                }
            }
            vec![0]
        }

        #[cfg(test)]
        mod tests {
            use super::range_end;

            #[test]
            fn range_ends() {
                assert_eq!(range_end(b"logs:"), b"logs;");
                assert_eq!(range_end(b"a\xff\xff"), b"b");
                assert_eq!(range_end(b"\xff"), b"\0");
                assert_eq!(range_end(b""), b"\0");
            }
        }
    }

    #[cfg(feature = "dynamodb")]
    pub use dynamodb::DynamoDb;

    /// aws-sdk-dynamodb on a tokio runtime of its own, each request awaited
    /// on the calling thread as the library does: `PutItem`, `GetItem`, a
    /// conditional `UpdateItem`; queued writes become one `BatchWriteItem`
    /// of up to 25 puts per thread (duplicate keys collapsed, unprocessed
    /// items resent), items in the library's layout (`key` S, `value` S or B).
    #[cfg(feature = "dynamodb")]
    mod dynamodb {
        use super::*;
        use std::collections::HashMap;
        use std::time::Duration;

        use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
        use aws_sdk_dynamodb::primitives::Blob;
        use aws_sdk_dynamodb::types::{
            AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
            PutRequest, ScalarAttributeType, TableStatus, WriteRequest,
        };
        use aws_sdk_dynamodb::Client;
        use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
        use tetherdb::DynamoDbConfig;

        /// BatchWriteItem's limit.
        const MAX_BATCH: usize = 25;

        type Item = HashMap<String, AttributeValue>;

        pub struct DynamoDb {
            runtime: tokio::runtime::Runtime,
            client: Client,
            table: String,
            batch: usize,
            consistent_read: bool,
        }

        fn fail<E>(error: SdkError<E>) -> Failure
        where
            E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        {
            let status = match &error {
                SdkError::ServiceError(service) => {
                    let throttled = matches!(
                        error.code(),
                        Some("ProvisionedThroughputExceededException" | "ThrottlingException")
                    );
                    match throttled || service.raw().status().is_server_error() {
                        true => Status::Unavailable,
                        false => Status::Io,
                    }
                }
                SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => Status::Unavailable,
                _ => Status::Io,
            };
            failure(
                status,
                format!("aws-sdk-dynamodb: {}", DisplayErrorContext(&error)),
            )
        }

        /// A value as the library stores it: S where it is UTF-8, else B.
        fn value_attribute(value: &[u8]) -> AttributeValue {
            match std::str::from_utf8(value) {
                Ok(text) => AttributeValue::S(text.to_owned()),
                Err(_) => AttributeValue::B(Blob::new(value)),
            }
        }

        fn value_of(item: &Item) -> Option<&[u8]> {
            match item.get("value")? {
                AttributeValue::S(text) => Some(text.as_bytes()),
                AttributeValue::B(blob) => Some(blob.as_ref()),
                _ => None,
            }
        }

        fn key_attribute(key: &KeyBuf) -> AttributeValue {
            AttributeValue::S(String::from_utf8_lossy(key.stored()).into_owned())
        }

        impl DynamoDb {
            /// A client configured as the library configures its own (region,
            /// endpoint, timeout; credentials from the standard chain), on
            /// `config`'s table, created when missing if `create_table` is set.
            pub fn open(config: &DynamoDbConfig, batch: usize) -> Result<DynamoDb, Failure> {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .map_err(|e| failure(Status::Internal, format!("tokio runtime: {e}")))?;
                let http_client = aws_smithy_http_client::Builder::new()
                    .tls_provider(Provider::Rustls(CryptoMode::Ring))
                    .build_https();
                let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
                    .http_client(http_client)
                    .timeout_config(
                        aws_config::timeout::TimeoutConfig::builder()
                            .operation_timeout(config.timeout())
                            .build(),
                    );
                if let Some(region) = &config.region {
                    loader = loader.region(aws_config::Region::new(region.clone()));
                }
                if let Some(url) = &config.endpoint_url {
                    loader = loader.endpoint_url(url);
                }
                let sdk_config = runtime.block_on(loader.load());
                let db = DynamoDb {
                    client: Client::new(&sdk_config),
                    runtime,
                    table: config.table_name.clone(),
                    batch: batch.clamp(1, MAX_BATCH),
                    consistent_read: config.consistent_read,
                };
                db.check_table(config.create_table)?;
                Ok(db)
            }

            fn check_table(&self, create: bool) -> Result<(), Failure> {
                let described = self
                    .runtime
                    .block_on(self.client.describe_table().table_name(&self.table).send());
                let missing = match &described {
                    Ok(_) => false,
                    Err(e) => e
                        .as_service_error()
                        .is_some_and(|e| e.is_resource_not_found_exception()),
                };
                if !missing {
                    return described.map(drop).map_err(fail);
                }
                if !create {
                    return Err(failure(
                        Status::Config,
                        format!("aws-sdk-dynamodb: table {:?} does not exist", self.table),
                    ));
                }
                let build = |e: aws_sdk_dynamodb::error::BuildError| {
                    failure(Status::Internal, e.to_string())
                };
                let created = self.runtime.block_on(
                    self.client
                        .create_table()
                        .table_name(&self.table)
                        .attribute_definitions(
                            AttributeDefinition::builder()
                                .attribute_name("key")
                                .attribute_type(ScalarAttributeType::S)
                                .build()
                                .map_err(build)?,
                        )
                        .key_schema(
                            KeySchemaElement::builder()
                                .attribute_name("key")
                                .key_type(KeyType::Hash)
                                .build()
                                .map_err(build)?,
                        )
                        .billing_mode(BillingMode::PayPerRequest)
                        .send(),
                );
                match created {
                    Ok(_) => {}
                    // The library (or another run) created it meanwhile.
                    Err(e) if e.code() == Some("ResourceInUseException") => {}
                    Err(e) => return Err(fail(e)),
                }
                // Until it is active: at once on moto, seconds on AWS.
                for _ in 0..600 {
                    let answer = self
                        .runtime
                        .block_on(self.client.describe_table().table_name(&self.table).send())
                        .map_err(fail)?;
                    let status = answer.table.and_then(|t| t.table_status);
                    if status == Some(TableStatus::Active) {
                        return Ok(());
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(failure(
                    Status::Unavailable,
                    format!(
                        "aws-sdk-dynamodb: table {:?} is not active after 60 s",
                        self.table
                    ),
                ))
            }

            /// One BatchWriteItem, its unprocessed items resent with backoff
            /// (50 ms doubling to 1 s) as the library does.
            fn send_batch(&self, mut requests: Vec<WriteRequest>) -> Outcome {
                let mut pause = Duration::from_millis(50);
                for _ in 0..20 {
                    let answer = self
                        .runtime
                        .block_on(
                            self.client
                                .batch_write_item()
                                .request_items(&self.table, requests)
                                .send(),
                        )
                        .map_err(fail)?;
                    requests = answer
                        .unprocessed_items
                        .and_then(|mut items| items.remove(&self.table))
                        .unwrap_or_default();
                    if requests.is_empty() {
                        return Ok(());
                    }
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
                Err(failure(
                    Status::Unavailable,
                    format!(
                        "aws-sdk-dynamodb: {} item(s) still unprocessed after 20 resends",
                        requests.len()
                    ),
                ))
            }
        }

        struct DynamoSession<'a> {
            db: &'a DynamoDb,
            /// The batch being filled: stored key and its put, in order.
            pending: Vec<(Vec<u8>, WriteRequest)>,
            /// Writes queued into it, duplicates included: it goes out at
            /// `batch` writes, as the library's does.
            queued: usize,
            last_error: String,
        }

        impl DynamoSession<'_> {
            fn status(&mut self, result: Outcome) -> Status {
                match result {
                    Ok(()) => Status::Ok,
                    Err(f) => {
                        self.last_error = f.message;
                        f.status
                    }
                }
            }
        }

        impl Session for DynamoSession<'_> {
            fn write(&mut self, key: &KeyBuf, value: &[u8], queued: bool) -> Status {
                let item: Item = HashMap::from([
                    ("key".to_owned(), key_attribute(key)),
                    ("value".to_owned(), value_attribute(value)),
                ]);
                if !queued {
                    let db = self.db;
                    let result = db
                        .runtime
                        .block_on(
                            db.client
                                .put_item()
                                .table_name(&db.table)
                                .set_item(Some(item))
                                .send(),
                        )
                        .map(drop)
                        .map_err(fail);
                    return self.status(result);
                }
                let put = match PutRequest::builder().set_item(Some(item)).build() {
                    Ok(put) => WriteRequest::builder().put_request(put).build(),
                    Err(e) => return self.status(Err(failure(Status::Internal, e))),
                };
                // BatchWriteItem refuses a key twice: the last write wins.
                match self.pending.iter_mut().find(|(k, _)| k == key.stored()) {
                    Some(slot) => slot.1 = put,
                    None => self.pending.push((key.stored().to_vec(), put)),
                }
                self.queued += 1;
                if self.queued < self.db.batch {
                    return Status::Ok;
                }
                let result = self.finish();
                self.status(result)
            }

            fn update(&mut self, key: &KeyBuf, value: &[u8]) -> Status {
                let db = self.db;
                let answer = db.runtime.block_on(
                    db.client
                        .update_item()
                        .table_name(&db.table)
                        .key("key", key_attribute(key))
                        .update_expression("SET #v = :v")
                        .condition_expression("attribute_exists(#k)")
                        .expression_attribute_names("#k", "key")
                        .expression_attribute_names("#v", "value")
                        .expression_attribute_values(":v", value_attribute(value))
                        .send(),
                );
                let result = match answer {
                    Ok(_) => Ok(()),
                    Err(e)
                        if e.as_service_error()
                            .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
                    {
                        Err(failure(Status::NotFound, "aws-sdk-dynamodb: key not found"))
                    }
                    Err(e) => Err(fail(e)),
                };
                self.status(result)
            }

            fn read(&mut self, key: &KeyBuf, check: &mut dyn FnMut(&[u8])) -> Status {
                let db = self.db;
                let answer = db.runtime.block_on(
                    db.client
                        .get_item()
                        .table_name(&db.table)
                        .key("key", key_attribute(key))
                        .consistent_read(db.consistent_read)
                        .send(),
                );
                let result = match answer {
                    Ok(answer) => match answer.item.as_ref().and_then(value_of) {
                        Some(value) => {
                            check(value);
                            Ok(())
                        }
                        None => Err(failure(Status::NotFound, "aws-sdk-dynamodb: key not found")),
                    },
                    Err(e) => Err(fail(e)),
                };
                self.status(result)
            }

            fn last_error(&self) -> String {
                self.last_error.clone()
            }

            fn finish(&mut self) -> Outcome {
                if self.pending.is_empty() {
                    return Ok(());
                }
                self.queued = 0;
                let requests = self.pending.drain(..).map(|(_, put)| put).collect();
                self.db.send_batch(requests)
            }
        }

        impl Target for DynamoDb {
            fn describe(&self) -> String {
                "aws-sdk-dynamodb (engine used directly)".into()
            }

            fn session(&self) -> Box<dyn Session + '_> {
                Box::new(DynamoSession {
                    db: self,
                    pending: Vec::with_capacity(MAX_BATCH),
                    queued: 0,
                    last_error: String::new(),
                })
            }

            fn flush(&self) -> Outcome {
                // Every write is durable once answered; each thread sent
                // its last batch when it ended.
                Ok(())
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
                // A filtered Scan, as the library lists: the table's order,
                // up to 1 MB of items per request.
                let mut after: Option<Item> = None;
                loop {
                    let answer = self
                        .runtime
                        .block_on(
                            self.client
                                .scan()
                                .table_name(&self.table)
                                .filter_expression("begins_with(#k, :prefix)")
                                .expression_attribute_names("#k", "key")
                                .expression_attribute_values(
                                    ":prefix",
                                    AttributeValue::S(start.clone()),
                                )
                                .consistent_read(self.consistent_read)
                                .set_exclusive_start_key(after.take())
                                .send(),
                        )
                        .map_err(fail)?;
                    for item in answer.items() {
                        let (Some(AttributeValue::S(key)), Some(value)) =
                            (item.get("key"), value_of(item))
                        else {
                            continue;
                        };
                        visit(key.get(skip..).unwrap_or_default(), value);
                    }
                    match answer.last_evaluated_key {
                        Some(key) if !key.is_empty() => after = Some(key),
                        _ => return Ok(()),
                    }
                }
            }

            fn close(self: Box<Self>) -> Outcome {
                Ok(())
            }
        }
    }
}
