//! The `etcd` backend on etcd-client: put, get, a transaction for update,
//! ranges for listing, one transaction per batch, a DeleteRange (or
//! deletes key by key) for deleting by prefix.
//!
//! The connection is made lazily, so a handle opens while etcd is down and
//! works as soon as it is back; each call gives up after the configured
//! timeout with `Unavailable`. With several endpoints, a request a dead
//! member refused goes to another (see `Etcd::call`).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, KvClient,
    ResponseHeader, Txn, TxnOp, TxnOpResponse, TxnResponse,
};

use super::errors::{causes, failure, never_sent};
use super::ranges::{just_after, range_end};
use super::tls::tls_options;
use super::{EtcdConfig, NAME};
use crate::backend::remote::Runtime;
use crate::backend::{Backend, BatchLimit, Condition, Listing, Outcome, Versioned, Write};
use crate::error::{redacted_url, Error, Result};
use crate::keys;

/// What a put costs beyond its key and value in etcd's request size
/// accounting (the raft request's header and framing), with room to spare.
const REQUEST_OVERHEAD: usize = 512;

/// A version as etcd's revisions are typed; one past any revision etcd
/// has is no key's `mod_revision`.
fn as_revision(version: u64) -> i64 {
    i64::try_from(version).unwrap_or(i64::MAX)
}

/// The revision a write made: the new `mod_revision` of its key.
fn revision(key: &str, header: Option<&ResponseHeader>) -> Result<u64> {
    match header.map(|h| h.revision()) {
        Some(revision) if revision > 0 => Ok(revision as u64),
        _ => Err(Error::io(NAME, key, "etcd answered without a revision")),
    }
}

/// What a transaction whose comparison failed found, from the read in its
/// else branch: the key, or none.
fn failed(answer: &TxnResponse) -> Outcome {
    let found = answer.op_responses().into_iter().any(|op| match op {
        TxnOpResponse::Get(get) => !get.kvs().is_empty(),
        _ => false,
    });
    match found {
        true => Outcome::Conflict,
        false => Outcome::Absent,
    }
}

/// The keys deleted by the deletes of a transaction.
fn deleted(answer: &TxnResponse) -> u64 {
    answer
        .op_responses()
        .into_iter()
        .map(|op| match op {
            TxnOpResponse::Delete(delete) => u64::try_from(delete.deleted()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

/// How many keys one range request of `delete_prefix` reads: a bound on
/// what its scan holds in memory (10,000 keys, some hundreds of KiB), and
/// large, since each range request costs etcd more the more of the range
/// follows: 100,000 keys took 0.6 s to list keys-only in pages of 1,000,
/// 0.2 s in pages of 10,000 (release build, loopback).
const SCAN_PAGE: i64 = 10_000;

/// How often `delete_prefix` scans its range again when keys were created
/// in it between its scan and its DeleteRange, before it deletes key by
/// key instead: a bound under a steady stream of new keys.
const DELETE_RANGE_TRIES: usize = 3;

/// How often an idle-looking connection with calls in flight is pinged.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);

/// Responses can carry a page of large values; tonic's 4 MiB default would
/// turn such a listing into an error.
const MAX_RESPONSE_BYTES: usize = 1 << 30;

/// The pause before a request is sent again once as many members as there
/// are have refused it: no busy loop while every member is down.
const RESEND_PAUSE: Duration = Duration::from_millis(10);

pub(crate) struct Etcd {
    kv: KvClient,
    /// How many members `endpoints` names: with several, one may take a
    /// request another refused.
    members: usize,
    timeout: Duration,
    max_txn_ops: usize,
    max_request_bytes: usize,
    /// The cluster's endpoints, for the outbox.
    endpoints: Vec<String>,
    /// Declared last: dropped after the client, whose tasks it runs.
    runtime: Arc<Runtime>,
}

impl Etcd {
    pub(crate) fn open(config: &EtcdConfig, runtime: Arc<Runtime>) -> Result<Etcd> {
        let timeout = config.timeout();
        let mut options = ConnectOptions::new()
            .with_timeout(timeout)
            .with_connect_timeout(timeout)
            // Finds a dead connection (a server gone without a word) so that
            // later calls connect afresh. etcd answers pings more often than
            // every 5 s, or any ping without a call in flight, by closing
            // the connection: hence 10 s, and only while calls are pending.
            .with_keep_alive(KEEP_ALIVE_INTERVAL, timeout)
            .with_keep_alive_while_idle(false);
        if config.use_ssl {
            options = options.with_tls(tls_options(config)?);
        }
        let urls = config.urls();
        let connect = Client::connect(&urls, Some(options));
        // The client connects on first use; this only sets it up.
        let client = runtime
            .run(timeout, connect)
            .ok_or_else(|| Error::unavailable(NAME, "", "connecting timed out"))?
            .map_err(|e| {
                let urls: Vec<_> = urls.iter().map(|u| redacted_url(u)).collect();
                Error::Config(format!("etcd endpoints {urls:?}: {e}"))
            })?;
        let kv = client
            .kv_client()
            .max_decoding_message_size(MAX_RESPONSE_BYTES);
        Ok(Etcd {
            kv,
            members: urls.len(),
            timeout,
            max_txn_ops: config.max_txn_ops,
            max_request_bytes: config.max_request_bytes,
            endpoints: {
                let mut urls = urls;
                urls.sort();
                urls
            },
            runtime,
        })
    }

    /// Runs one request against the cluster, within the timeout.
    ///
    /// etcd-client balances over every endpoint, dead members included:
    /// tonic keeps a member it cannot connect to among those it picks from
    /// and hands the connection error to the request it picks it for. So
    /// where there are several members, a request that could not connect
    /// (and so was never sent) goes again, to the member the balancer picks
    /// next, until the timeout; otherwise a dead member would fail a share
    /// of the calls for as long as it stays down.
    fn call<T, F>(&self, key: &str, request: impl Fn(KvClient) -> F) -> Result<T>
    where
        F: Future<Output = std::result::Result<T, etcd_client::Error>>,
    {
        let timeout = self.timeout;
        let mut refused = None;
        let attempts = async {
            let mut refusals = 0;
            loop {
                match request(self.kv.clone()).await {
                    Err(error) if self.members > 1 && never_sent(&error) => {
                        refused = Some(error);
                        refusals += 1;
                        // At once while another member may take it (the
                        // one that refused is connecting again meanwhile,
                        // so the balancer passes it over).
                        if refusals >= self.members {
                            tokio::time::sleep(RESEND_PAUSE).await;
                        }
                    }
                    answer => return answer,
                }
            }
        };
        match self.runtime.run(timeout, attempts) {
            Some(Ok(answer)) => Ok(answer),
            Some(Err(error)) => Err(failure(key, error)),
            None => Err(Error::unavailable(
                NAME,
                key,
                match refused {
                    Some(error) => format!(
                        "no answer within {timeout:?}; a member refused: {}",
                        causes(&error)
                    ),
                    None => format!("no answer within {timeout:?}"),
                },
            )),
        }
    }

    fn txn(&self, key: &str, txn: Txn) -> Result<TxnResponse> {
        self.call(key, |mut kv| {
            let txn = txn.clone();
            async move { kv.txn(txn).await }
        })
    }

    /// One keys-only page of `[from, end)`: at most [`SCAN_PAGE`] keys,
    /// whether more follow, and the revision it was read at.
    fn key_page(&self, prefix: &str, from: &[u8], end: &[u8]) -> Result<(Vec<Vec<u8>>, bool, i64)> {
        let options = GetOptions::new()
            .with_range(end.to_vec())
            .with_limit(SCAN_PAGE)
            .with_keys_only();
        let mut answer = self.call(prefix, |mut kv| {
            let (start, options) = (from.to_vec(), options.clone());
            async move { kv.get(start, Some(options)).await }
        })?;
        let revision = answer.header().map_or(0, |h| h.revision());
        let keys = answer
            .take_kvs()
            .into_iter()
            .map(|kv| kv.into_key_value().0)
            .collect();
        Ok((keys, answer.more(), revision))
    }

    /// Where every key of `[from, end)` is one a listing lists, the
    /// revision the scan began at; `None` where a key that listings leave
    /// out (`keys::listable`) is among them.
    fn only_listable(&self, prefix: &str, from: &[u8], end: &[u8]) -> Result<Option<i64>> {
        let mut first_revision = None;
        let mut from = from.to_vec();
        loop {
            let (page, more, revision) = self.key_page(prefix, &from, end)?;
            let first_revision = *first_revision.get_or_insert(revision);
            if page.iter().any(|key| keys::listable(key).is_none()) {
                return Ok(None);
            }
            match page.last() {
                Some(last) if more => from = just_after(last),
                _ => return Ok(Some(first_revision)),
            }
        }
    }

    /// One DeleteRange of `[from, end)`, in a transaction that applies it
    /// only where no key of the range was created after `revision`: then
    /// every key it deletes was there during the scan that checked them.
    /// The count deleted, or `None` where a key was created since.
    fn delete_range_if_unchanged(
        &self,
        prefix: &str,
        from: &[u8],
        end: &[u8],
        revision: i64,
    ) -> Result<Option<u64>> {
        let created_before =
            Compare::create_revision(from.to_vec(), CompareOp::Less, revision.saturating_add(1))
                .with_range(end.to_vec());
        let delete = TxnOp::delete(
            from.to_vec(),
            Some(DeleteOptions::new().with_range(end.to_vec())),
        );
        let answer = self.txn(prefix, Txn::new().when([created_before]).and_then([delete]))?;
        if !answer.succeeded() {
            return Ok(None);
        }
        Ok(Some(deleted(&answer)))
    }

    /// Deletes the keys of `[from, end)` that a listing lists, page by
    /// page, in transactions within the cluster's limits; leaves the
    /// others. Gives the count deleted.
    fn delete_listable(&self, prefix: &str, from: &[u8], end: &[u8]) -> Result<u64> {
        let mut deleted_count = 0;
        let mut from = from.to_vec();
        loop {
            let (page, more, _) = self.key_page(prefix, &from, end)?;
            if let Some(last) = page.last() {
                from = just_after(last);
            }
            let mut ops = Vec::new();
            let mut bytes = 0;
            for key in page.iter().filter(|key| keys::listable(key).is_some()) {
                let size = key.len() + REQUEST_OVERHEAD;
                let full = ops.len() == self.max_txn_ops || bytes + size > self.max_request_bytes;
                if full && !ops.is_empty() {
                    let txn = Txn::new().and_then(std::mem::take(&mut ops));
                    deleted_count += deleted(&self.txn(prefix, txn)?);
                    bytes = 0;
                }
                ops.push(TxnOp::delete(key.clone(), None));
                bytes += size;
            }
            if !ops.is_empty() {
                deleted_count += deleted(&self.txn(prefix, Txn::new().and_then(ops))?);
            }
            if !more {
                return Ok(deleted_count);
            }
        }
    }

    /// Refuses a write etcd would refuse for its size, before sending it.
    fn check_size(&self, key: &str, value: &[u8]) -> Result<()> {
        let size = key.len() + value.len() + REQUEST_OVERHEAD;
        if size > self.max_request_bytes {
            return Err(Error::too_large(
                NAME,
                key,
                format!(
                    "a put of {} bytes is over etcd's request limit of {} bytes \
                     (max_request_bytes)",
                    key.len() + value.len(),
                    self.max_request_bytes
                ),
            ));
        }
        Ok(())
    }
}

impl Backend for Etcd {
    fn name(&self) -> &'static str {
        NAME
    }

    fn write(&self, key: &str, value: &[u8]) -> Result<()> {
        self.check_size(key, value)?;
        self.call(key, |mut kv| async move { kv.put(key, value, None).await })
            .map(drop)
    }

    fn write_if(&self, key: &str, value: &[u8], condition: Condition) -> Result<Outcome> {
        self.check_size(key, value)?;
        let compare = match condition {
            Condition::Any => {
                let answer =
                    self.call(key, |mut kv| async move { kv.put(key, value, None).await })?;
                return Ok(Outcome::Done(revision(key, answer.header())?));
            }
            // A version of 0: no key (etcd's `version` counts the key's
            // changes since its creation).
            Condition::Absent => Compare::version(key, CompareOp::Equal, 0),
            Condition::Present => Compare::version(key, CompareOp::Greater, 0),
            Condition::Version(version) => {
                Compare::mod_revision(key, CompareOp::Equal, as_revision(version))
            }
        };
        // One transaction: put where the comparison holds, else read the
        // key, to tell a conflict from an absent key.
        let txn = Txn::new()
            .when([compare])
            .and_then([TxnOp::put(key, value, None)])
            .or_else([TxnOp::get(key, Some(GetOptions::new().with_keys_only()))]);
        let answer = self.txn(key, txn)?;
        match answer.succeeded() {
            true => Ok(Outcome::Done(revision(key, answer.header())?)),
            false => Ok(failed(&answer)),
        }
    }

    fn delete(&self, key: &str) -> Result<bool> {
        // Without the old value, which `delete_if` asks for its version.
        let answer = self.call(key, |mut kv| async move { kv.delete(key, None).await })?;
        Ok(answer.deleted() > 0)
    }

    fn read_versioned(&self, key: &str, with_value: bool) -> Result<Option<Versioned>> {
        let options = (!with_value).then(|| GetOptions::new().with_keys_only());
        let mut answer = self.call(key, |mut kv| {
            let options = options.clone();
            async move { kv.get(key, options).await }
        })?;
        Ok(answer.take_kvs().into_iter().next().map(|kv| Versioned {
            version: kv.mod_revision() as u64,
            value: kv.into_key_value().1,
        }))
    }

    fn delete_if(&self, key: &str, condition: Condition) -> Result<Outcome> {
        let Condition::Version(version) = condition else {
            let options = DeleteOptions::new().with_prev_key();
            let answer = self.call(key, |mut kv| {
                let options = options.clone();
                async move { kv.delete(key, Some(options)).await }
            })?;
            return Ok(match answer.prev_kvs().first() {
                Some(old) => Outcome::Done(old.mod_revision() as u64),
                None if answer.deleted() > 0 => Outcome::Done(0),
                None => Outcome::Absent,
            });
        };
        let txn = Txn::new()
            .when([Compare::mod_revision(
                key,
                CompareOp::Equal,
                as_revision(version),
            )])
            .and_then([TxnOp::delete(key, None)])
            .or_else([TxnOp::get(key, Some(GetOptions::new().with_keys_only()))]);
        let answer = self.txn(key, txn)?;
        match answer.succeeded() {
            true => Ok(Outcome::Done(version)),
            false => Ok(failed(&answer)),
        }
    }

    fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        keys_only: bool,
    ) -> Result<Listing> {
        let end = range_end(prefix.as_bytes());
        let mut from = match start_after {
            Some(after) if after >= prefix => just_after(after.as_bytes()),
            // etcd has no empty key: "\0" is the first there can be.
            _ if prefix.is_empty() => vec![0],
            _ => prefix.as_bytes().to_vec(),
        };
        let mut entries = Vec::with_capacity(limit.min(1024));
        loop {
            // One more than is missing, to learn whether a key remains.
            let want = (limit - entries.len()).saturating_add(1);
            let mut options = GetOptions::new()
                .with_range(end.clone())
                .with_limit(i64::try_from(want).unwrap_or(i64::MAX));
            if keys_only {
                options = options.with_keys_only();
            }
            let mut answer = self.call(prefix, |mut kv| {
                let (start, options) = (from.clone(), options.clone());
                async move { kv.get(start, Some(options)).await }
            })?;
            let more = answer.more();
            let kvs = answer.take_kvs();
            if let Some(last) = kvs.last() {
                from = just_after(last.key());
            }
            for kv in kvs {
                let (key, value) = kv.into_key_value();
                // Keys other programs stored that a C string cannot carry
                // are skipped, as on `local`.
                let Some(key) = keys::listable(&key) else {
                    continue;
                };
                if entries.len() == limit {
                    return Ok(Listing {
                        entries,
                        more: true,
                    });
                }
                entries.push((key.to_owned(), value));
            }
            if !more {
                return Ok(Listing {
                    entries,
                    more: false,
                });
            }
        }
    }

    fn delete_prefix(&self, prefix: &str, keep_prefix_key: bool) -> Result<u64> {
        let end = range_end(prefix.as_bytes());
        let from = match keep_prefix_key {
            true => just_after(prefix.as_bytes()),
            // etcd has no empty key: "\0" is the first there can be.
            false if prefix.is_empty() => vec![0],
            false => prefix.as_bytes().to_vec(),
        };
        // One DeleteRange, whose `deleted` is the count, where the range
        // holds exactly the keys a listing lists. A key listings leave out
        // (one other programs stored that a C string cannot carry) must
        // stay: then the listed keys go one by one.
        for _ in 0..DELETE_RANGE_TRIES {
            let Some(revision) = self.only_listable(prefix, &from, &end)? else {
                break;
            };
            if let Some(deleted) = self.delete_range_if_unchanged(prefix, &from, &end, revision)? {
                return Ok(deleted);
            }
        }
        self.delete_listable(prefix, &from, &end)
    }

    fn write_batch(&self, writes: &[Write]) -> Result<()> {
        let puts: Vec<TxnOp> = writes
            .iter()
            .map(|w| TxnOp::put(w.key.as_str(), w.value.as_slice(), None))
            .collect();
        let txn = Txn::new().and_then(puts);
        // Errors name no key: the worker reports how many writes failed.
        self.call("", |mut kv| {
            let txn = txn.clone();
            async move { kv.txn(txn).await }
        })
        .map(drop)
    }

    fn destination(&self) -> String {
        format!("the etcd cluster at {}", self.endpoints.join(", "))
    }

    fn flush(&self) -> Result<()> {
        // etcd makes a write durable before it answers.
        Ok(())
    }

    fn accepts(&self, key: &str, value: &[u8]) -> Result<()> {
        self.check_size(key, value)
    }

    fn batch_limit(&self) -> BatchLimit {
        BatchLimit {
            writes: self.max_txn_ops,
            bytes: self.max_request_bytes,
            overhead: REQUEST_OVERHEAD,
        }
    }

    fn timeout(&self) -> Duration {
        self.timeout
    }
}
