//! etcd-client on a tokio runtime of its own, each call awaited on the
//! calling thread as the library does; queued writes become one
//! transaction per `batch` puts per thread.

use etcd_client::{Client, Compare, CompareOp, GetOptions, KvClient, Txn, TxnOp};
use tetherdb::Status;

use super::failure;
use crate::target::{Failure, KeyBuf, Outcome, Session, Target};

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
