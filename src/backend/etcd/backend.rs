//! The `etcd` backend on etcd-client: put, get, a transaction for update,
//! ranges for listing, one transaction per batch, a DeleteRange (or
//! deletes key by key) for deleting by prefix.
//!
//! The connection is made lazily, so a handle opens while etcd is down and
//! works as soon as it is back; each call gives up after the configured
//! timeout with `Unavailable`. With several endpoints, a request a dead
//! member refused goes to another (see `Etcd::call`).

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, KeyValue, KvClient,
    LeaseClient, LeaseGrantOptions, PutOptions, ResponseHeader, Txn, TxnOp, TxnOpResponse,
    TxnResponse,
};

use super::errors::{causes, failure, never_sent};
use super::expiry::{self, deadline_key, deadline_of, lease_for, still_alive, Leases};
use super::ranges::{just_after, range_end};
use super::tls::tls_options;
use super::{EtcdConfig, NAME};
use crate::backend::remote::Runtime;
use crate::backend::{
    now_ms, Access, Backend, BatchLimit, Condition, Deadline, Listing, Outcome, Ttl, Versioned,
    Write,
};
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

/// The key and its deadline key as the else branch of a transaction read
/// them (`observe_ops`), at one revision.
fn observed(answer: &TxnResponse) -> (Option<KeyValue>, Option<KeyValue>) {
    let mut found = answer.op_responses().into_iter().map(|op| match op {
        TxnOpResponse::Get(mut get) => get.take_kvs().into_iter().next(),
        _ => None,
    });
    (found.next().flatten(), found.next().flatten())
}

/// Reads the key (without its value) and its deadline key.
fn observe_ops(key: &str) -> [TxnOp; 2] {
    [
        TxnOp::get(key, Some(GetOptions::new().with_keys_only())),
        TxnOp::get(deadline_key(key.as_bytes()), None),
    ]
}

/// A key as read with its deadline key, judged at one moment.
struct Observed {
    /// `None`: absent.
    key: Option<KeyValue>,
    /// Its own deadline, if it has one.
    deadline: Option<Deadline>,
    alive: bool,
}

impl Observed {
    fn judge((key, deadline_kv): (Option<KeyValue>, Option<KeyValue>), now_ms: u64) -> Observed {
        let deadline = key
            .as_ref()
            .and_then(|k| deadline_of(k, deadline_kv.as_ref()));
        let alive = key.is_some() && !deadline.is_some_and(|d| d.has_passed(now_ms));
        Observed {
            key,
            deadline,
            alive,
        }
    }

    fn version(&self) -> u64 {
        self.key.as_ref().map_or(0, |k| k.mod_revision() as u64)
    }

    /// What a transaction compares so that it applies only to the key as
    /// observed: the same revision, and, where it was alive by its
    /// deadline, still alive by it.
    fn pins(&self, key: &str, now_ms: u64) -> Vec<Compare> {
        let Some(kv) = &self.key else {
            return vec![Compare::version(key, CompareOp::Equal, 0)];
        };
        let mut pins = vec![Compare::mod_revision(
            key,
            CompareOp::Equal,
            kv.mod_revision(),
        )];
        if self.alive && self.deadline.is_some() {
            let own = Compare::mod_revision(
                deadline_key(key.as_bytes()),
                CompareOp::Equal,
                kv.mod_revision(),
            );
            pins.extend([own, still_alive(key.as_bytes(), now_ms)]);
        }
        pins
    }

    /// Whether `condition` lets a change go on; else what it ends with.
    fn check(&self, condition: Condition) -> std::result::Result<(), Outcome> {
        match (condition, self.alive) {
            (Condition::Present | Condition::Version(_), false) => Err(Outcome::Absent),
            (Condition::Absent, true) => Err(Outcome::Conflict),
            (Condition::Version(v), true) if v != self.version() => Err(Outcome::Conflict),
            _ => Ok(()),
        }
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

/// A slice that completed a page while holding more than this many pages'
/// worth of keys was too wide: the next listing tries one byte narrower.
const SLICE_SLACK: usize = 16;

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
    lease: LeaseClient,
    leases: Leases,
    /// How many members `endpoints` names: with several, one may take a
    /// request another refused.
    members: usize,
    timeout: Duration,
    max_txn_ops: usize,
    max_request_bytes: usize,
    /// The cluster's endpoints, for the outbox.
    endpoints: Vec<String>,
    /// The span of the slice that completed the last page a listing
    /// returned (see `list`): where the next listing starts, a hint only.
    list_span: AtomicUsize,
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
            lease: client.lease_client(),
            leases: Leases::default(),
            members: urls.len(),
            timeout,
            max_txn_ops: config.max_txn_ops,
            max_request_bytes: config.max_request_bytes,
            endpoints: {
                let mut urls = urls;
                urls.sort();
                urls
            },
            list_span: AtomicUsize::new(1),
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
        self.call_with(&self.kv, key, request)
    }

    /// [`Etcd::call`] with another of the cluster's clients.
    fn call_with<C: Clone, T, F>(
        &self,
        client: &C,
        key: &str,
        request: impl Fn(C) -> F,
    ) -> Result<T>
    where
        F: Future<Output = std::result::Result<T, etcd_client::Error>>,
    {
        let timeout = self.timeout;
        let mut refused = None;
        let attempts = async {
            let mut refusals = 0;
            loop {
                match request(client.clone()).await {
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
    fn key_page(
        &self,
        prefix: &str,
        from: &[u8],
        end: &[u8],
    ) -> Result<(Vec<KeyValue>, bool, i64)> {
        let options = GetOptions::new()
            .with_range(end.to_vec())
            .with_limit(SCAN_PAGE)
            .with_keys_only();
        let mut answer = self.call(prefix, |mut kv| {
            let (start, options) = (from.to_vec(), options.clone());
            async move { kv.get(start, Some(options)).await }
        })?;
        let revision = answer.header().map_or(0, |h| h.revision());
        let more = answer.more();
        Ok((answer.take_kvs(), more, revision))
    }

    /// Where every key of `[from, end)` is one a listing lists, the
    /// revision the scan began at and how many of the keys had expired
    /// (their leases not ended yet); `None` where a key that listings leave
    /// out (`keys::listable`) is among them.
    fn only_listable(&self, prefix: &str, from: &[u8], end: &[u8]) -> Result<Option<(i64, u64)>> {
        let mut first_revision = None;
        let mut expired = 0;
        let mut from = from.to_vec();
        loop {
            let (page, more, revision) = self.key_page(prefix, &from, end)?;
            let first_revision = *first_revision.get_or_insert(revision);
            if page.iter().any(|kv| keys::listable(kv.key()).is_none()) {
                return Ok(None);
            }
            let last = page.last().map(|kv| just_after(kv.key()));
            let listed = page.len();
            expired += (listed - self.alive(prefix, page, revision, now_ms())?.len()) as u64;
            match last {
                Some(last) if more => from = last,
                _ => return Ok(Some((first_revision, expired))),
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
        let (mut deleted_count, mut expired) = (0, 0);
        let mut from = from.to_vec();
        loop {
            let (page, more, revision) = self.key_page(prefix, &from, end)?;
            if let Some(last) = page.last() {
                from = just_after(last.key());
            }
            let page: Vec<KeyValue> = page
                .into_iter()
                .filter(|kv| keys::listable(kv.key()).is_some())
                .collect();
            let listed = page.len();
            let alive = self.alive(prefix, page.clone(), revision, now_ms())?.len();
            // Expired keys go too, uncounted: they were absent already.
            expired += (listed - alive) as u64;
            let mut ops = Vec::new();
            let mut bytes = 0;
            for key in page.iter().map(|kv| kv.key().to_vec()) {
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
                return Ok(deleted_count.saturating_sub(expired));
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

impl Etcd {
    /// The lease for keys expiring at `deadline`, granted unless this
    /// handle knows it exists; `None` for a deadline too far for a lease
    /// (kept as no deadline).
    fn lease(&self, key: &str, deadline: Deadline, now_ms: u64) -> Result<Option<i64>> {
        let Some((id, grant)) = lease_for(deadline, now_ms) else {
            return Ok(None);
        };
        if !self.leases.is_known(id) {
            self.call_with(&self.lease, key, |mut leases: LeaseClient| async move {
                let options = LeaseGrantOptions::new().with_id(id);
                match leases.grant(grant, Some(options)).await {
                    // Granted already, by another handle or process, for
                    // the same bucket and so as long.
                    Err(etcd_client::Error::GRpcStatus(status))
                        if status.message().contains("lease already exists") =>
                    {
                        Ok(())
                    }
                    other => other.map(drop),
                }
            })?;
            self.leases.remember(id, now_ms);
        }
        Ok(Some(id))
    }

    /// Runs `op`, and once more if it failed on a lease this handle knew
    /// but etcd no longer has (revoked by someone), granting it again.
    fn granting_lost_leases<T>(&self, op: impl Fn() -> Result<T>) -> Result<T> {
        match op() {
            Err(error) if error.to_string().contains("requested lease not found") => {
                self.leases.forget_all();
                op()
            }
            other => other,
        }
    }

    /// `deadline` with its lease, granted; `None` for no deadline.
    fn expiring(
        &self,
        key: &str,
        deadline: Option<Deadline>,
        now_ms: u64,
    ) -> Result<Option<(Deadline, i64)>> {
        match deadline {
            Some(deadline) => Ok(self
                .lease(key, deadline, now_ms)?
                .map(|lease| (deadline, lease))),
            None => Ok(None),
        }
    }

    /// Reads the key (without its value) and its deadline key.
    fn observe(&self, key: &str) -> Result<(Option<KeyValue>, Option<KeyValue>)> {
        let answer = self.txn(key, Txn::new().and_then(observe_ops(key)))?;
        Ok(observed(&answer))
    }

    /// Changes `key` with `ops` where `check` lets it, as observed (by the
    /// failed transaction that passed `seen`, or read now), in a
    /// transaction that applies only while the key is as observed; again
    /// when it changed in between, until the timeout.
    fn change(
        &self,
        key: &str,
        mut seen: Option<(Option<KeyValue>, Option<KeyValue>)>,
        check: impl Fn(&Observed) -> std::result::Result<(), Outcome>,
        ops: impl Fn(&Observed) -> Vec<TxnOp>,
    ) -> Result<std::result::Result<(TxnResponse, Observed), Outcome>> {
        let give_up = std::time::Instant::now() + self.timeout;
        loop {
            let now = now_ms();
            let found = match seen.take() {
                Some(found) => found,
                None => self.observe(key)?,
            };
            let observed_key = Observed::judge(found, now);
            if let Err(outcome) = check(&observed_key) {
                return Ok(Err(outcome));
            }
            let txn = Txn::new()
                .when(observed_key.pins(key, now))
                .and_then(ops(&observed_key))
                .or_else(observe_ops(key));
            let answer = self.txn(key, txn)?;
            if answer.succeeded() {
                return Ok(Ok((answer, observed_key)));
            }
            if std::time::Instant::now() > give_up {
                return Err(Error::unavailable(
                    NAME,
                    key,
                    format!("the key changed at every try for {:?}", self.timeout),
                ));
            }
            seen = Some(observed(&answer));
        }
    }

    /// Moves a sliding key's deadline to `slid` where the key is still as
    /// read (`kv`); its new version, `None` when it changed meanwhile.
    fn slide(&self, key: &str, kv: &KeyValue, slid: Deadline, now_ms: u64) -> Result<Option<u64>> {
        let Some(lease) = self.lease(key, slid, now_ms)? else {
            return Ok(None);
        };
        let as_read = |k: Vec<u8>| Compare::mod_revision(k, CompareOp::Equal, kv.mod_revision());
        let txn = Txn::new()
            .when([as_read(key.into()), as_read(deadline_key(key.as_bytes()))])
            .and_then(deadline_ops(key, Some((slid, lease))));
        let answer = self.txn(key, txn)?;
        match answer.succeeded() {
            true => Ok(Some(revision(key, answer.header())?)),
            false => Ok(None),
        }
    }

    /// Keeps only the listed keys that are alive at `now_ms`: those on one
    /// of the library's leases are checked against their deadline keys,
    /// read in one range at the listing's revision.
    fn alive(
        &self,
        prefix: &str,
        kvs: Vec<KeyValue>,
        revision: i64,
        now_ms: u64,
    ) -> Result<Vec<KeyValue>> {
        let expiring: Vec<&[u8]> = kvs
            .iter()
            .filter(|kv| expiry::is_ours(kv.lease()))
            .map(|kv| kv.key())
            .collect();
        let (Some(first), Some(last)) = (expiring.first(), expiring.last()) else {
            return Ok(kvs);
        };
        let options = GetOptions::new()
            .with_range(just_after(&deadline_key(last)))
            .with_revision(revision);
        let start = deadline_key(first);
        let mut answer = self.call(prefix, |mut kv| {
            let (start, options) = (start.clone(), options.clone());
            async move { kv.get(start, Some(options)).await }
        })?;
        let deadlines: std::collections::HashMap<Vec<u8>, KeyValue> = answer
            .take_kvs()
            .into_iter()
            .map(|kv| (kv.key().to_vec(), kv))
            .collect();
        Ok(kvs
            .into_iter()
            .filter(|kv| {
                let own = deadlines.get(&deadline_key(kv.key()));
                !deadline_of(kv, own).is_some_and(|d| d.has_passed(now_ms))
            })
            .collect())
    }

    fn write_once(
        &self,
        key: &str,
        value: &[u8],
        condition: Condition,
        ttl: Ttl,
    ) -> Result<Outcome> {
        self.check_size(key, value)?;
        let now = now_ms();
        let expiring = match ttl {
            Ttl::Set(deadline) => self.expiring(key, Some(deadline), now)?,
            Ttl::Clear | Ttl::Keep => None,
        };
        // First one transaction that holds for a key without a deadline
        // (no lease: etcd compares a missing key's lease as 0), which is
        // every key but those written with a ttl: a version of 0 is no
        // key, as etcd's `version` counts changes since its creation.
        let first_try = match (condition, ttl) {
            (Condition::Any, Ttl::Keep) => None,
            (Condition::Any, Ttl::Clear) => {
                let answer =
                    self.call(key, |mut kv| async move { kv.put(key, value, None).await })?;
                return Ok(Outcome::Done(revision(key, answer.header())?));
            }
            (Condition::Any, Ttl::Set(_)) => Some(vec![]),
            (Condition::Absent, _) => Some(vec![Compare::version(key, CompareOp::Equal, 0)]),
            (Condition::Present, _) => Some(vec![
                Compare::version(key, CompareOp::Greater, 0),
                Compare::lease(key, CompareOp::Equal, 0),
            ]),
            (Condition::Version(version), _) => Some(vec![
                Compare::mod_revision(key, CompareOp::Equal, as_revision(version)),
                Compare::lease(key, CompareOp::Equal, 0),
            ]),
        };
        let mut seen = None;
        if let Some(compares) = first_try {
            let txn = Txn::new()
                .when(compares)
                .and_then(put_ops(key, value, expiring))
                .or_else(observe_ops(key));
            let answer = self.txn(key, txn)?;
            if answer.succeeded() {
                return Ok(Outcome::Done(revision(key, answer.header())?));
            }
            seen = Some(observed(&answer));
        }
        // Then by what the key is: its version, its deadline.
        let changed = self.change(
            key,
            seen,
            |observed| observed.check(condition),
            |observed| match ttl {
                Ttl::Keep => keeping_ops(key, value, observed),
                Ttl::Clear | Ttl::Set(_) => put_ops(key, value, expiring),
            },
        )?;
        match changed {
            Ok((answer, _)) => Ok(Outcome::Done(revision(key, answer.header())?)),
            Err(outcome) => Ok(outcome),
        }
    }

    fn read_once(&self, key: &str, with_value: bool, access: Access) -> Result<Option<Versioned>> {
        let options = (!with_value).then(|| GetOptions::new().with_keys_only());
        let mut answer = self.call(key, |mut kv| {
            let options = options.clone();
            async move { kv.get(key, options).await }
        })?;
        let read_at = answer.header().map_or(0, |h| h.revision());
        let Some(kv) = answer.take_kvs().into_iter().next() else {
            return Ok(None);
        };
        let mut version = kv.mod_revision() as u64;
        let mut kept = None;
        if expiry::is_ours(kv.lease()) {
            // Its deadline key, as it was at the same revision.
            let options = GetOptions::new().with_revision(read_at);
            let mut answer = self.call(key, |mut client| {
                let options = options.clone();
                async move {
                    client
                        .get(deadline_key(key.as_bytes()), Some(options))
                        .await
                }
            })?;
            let now = now_ms();
            let own = answer.take_kvs().into_iter().next();
            if let Some(deadline) = deadline_of(&kv, own.as_ref()) {
                if deadline.has_passed(now) {
                    return Ok(None);
                }
                kept = Some(deadline);
                if let Some(slid) = deadline.slid(now, access) {
                    // Not moved where a change came between: it set its own.
                    if let Some(moved) = self.slide(key, &kv, slid, now)? {
                        (version, kept) = (moved, Some(slid));
                    }
                }
            }
        }
        Ok(Some(Versioned {
            version,
            value: kv.into_key_value().1,
            deadline: kept,
        }))
    }

    fn touch_once(&self, key: &str, deadline: Option<Deadline>) -> Result<Outcome> {
        let expiring = self.expiring(key, deadline, now_ms())?;
        let changed = self.change(
            key,
            None,
            |observed| observed.check(Condition::Present),
            |_| deadline_ops(key, expiring),
        )?;
        match changed {
            Ok((answer, _)) => Ok(Outcome::Done(revision(key, answer.header())?)),
            Err(outcome) => Ok(outcome),
        }
    }

    fn write_batch_once(&self, writes: &[Write]) -> Result<()> {
        // A write with a deadline is two puts (the key and its deadline
        // key): the batch goes in as many transactions as etcd's limit on
        // operations asks, the two puts of one write always in one.
        let now = now_ms();
        let mut txns: Vec<Vec<TxnOp>> = vec![Vec::new()];
        for write in writes {
            let expiring = self.expiring(&write.key, write.deadline, now)?;
            let ops = put_ops(&write.key, &write.value, expiring);
            let txn = txns.last_mut().expect("one at least");
            if !txn.is_empty() && txn.len() + ops.len() > self.max_txn_ops {
                txns.push(ops);
            } else {
                txn.extend(ops);
            }
        }
        for ops in txns {
            let txn = Txn::new().and_then(ops);
            // Errors name no key: the worker reports how many writes failed.
            self.call("", |mut kv| {
                let txn = txn.clone();
                async move { kv.txn(txn).await }
            })?;
        }
        Ok(())
    }
}

/// Stores `value` under `key`, with a deadline on its lease or without.
fn put_ops(key: &str, value: &[u8], expiring: Option<(Deadline, i64)>) -> Vec<TxnOp> {
    match expiring {
        None => vec![TxnOp::put(key, value, None)],
        Some((deadline, lease)) => {
            let on_lease = || Some(PutOptions::new().with_lease(lease));
            vec![
                TxnOp::put(key, value, on_lease()),
                TxnOp::put(
                    deadline_key(key.as_bytes()),
                    expiry::encode(deadline),
                    on_lease(),
                ),
            ]
        }
    }
}

/// Gives `key` another deadline (or none), keeping its value.
fn deadline_ops(key: &str, expiring: Option<(Deadline, i64)>) -> Vec<TxnOp> {
    let keep_value = PutOptions::new().with_ignore_value();
    match expiring {
        None => vec![TxnOp::put(key, "", Some(keep_value))],
        Some((deadline, lease)) => vec![
            TxnOp::put(key, "", Some(keep_value.with_lease(lease))),
            TxnOp::put(
                deadline_key(key.as_bytes()),
                expiry::encode(deadline),
                Some(PutOptions::new().with_lease(lease)),
            ),
        ],
    }
}

/// Stores `value` under an observed key, keeping its deadline.
fn keeping_ops(key: &str, value: &[u8], observed: &Observed) -> Vec<TxnOp> {
    match (&observed.key, observed.deadline) {
        (Some(kv), Some(deadline)) if observed.alive => {
            put_ops(key, value, Some((deadline, kv.lease())))
        }
        // Another program's lease, if any, stays.
        (Some(_), None) if observed.alive => {
            vec![TxnOp::put(
                key,
                value,
                Some(PutOptions::new().with_ignore_lease()),
            )]
        }
        _ => put_ops(key, value, None),
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

    fn write_if(&self, key: &str, value: &[u8], condition: Condition, ttl: Ttl) -> Result<Outcome> {
        self.granting_lost_leases(|| self.write_once(key, value, condition, ttl))
    }

    fn read_versioned(
        &self,
        key: &str,
        with_value: bool,
        access: Access,
    ) -> Result<Option<Versioned>> {
        self.granting_lost_leases(|| self.read_once(key, with_value, access))
    }

    fn touch(&self, key: &str, deadline: Option<Deadline>) -> Result<Outcome> {
        self.granting_lost_leases(|| self.touch_once(key, deadline))
    }

    fn write_batch(&self, writes: &[Write]) -> Result<()> {
        self.granting_lost_leases(|| self.write_batch_once(writes))
    }

    fn delete_if(&self, key: &str, condition: Condition) -> Result<Outcome> {
        // First one transaction that holds for a key without a deadline.
        let mut compares = vec![Compare::lease(key, CompareOp::Equal, 0)];
        if let Condition::Version(version) = condition {
            compares.push(Compare::mod_revision(
                key,
                CompareOp::Equal,
                as_revision(version),
            ));
        }
        let txn = Txn::new()
            .when(compares)
            .and_then([TxnOp::delete(key, None)])
            .or_else(observe_ops(key));
        let answer = self.txn(key, txn)?;
        if answer.succeeded() {
            let deleted = answer.op_responses().into_iter().any(|op| match op {
                TxnOpResponse::Delete(delete) => delete.deleted() > 0,
                _ => false,
            });
            return Ok(match (deleted, condition) {
                (true, Condition::Version(version)) => Outcome::Done(version),
                (true, _) => Outcome::Done(0),
                (false, _) => Outcome::Absent,
            });
        }
        // Then by what the key is: an expired one is absent already.
        let check = match condition {
            Condition::Version(_) => condition,
            _ => Condition::Present,
        };
        let changed = self.change(
            key,
            Some(observed(&answer)),
            |observed| observed.check(check),
            |observed| {
                let mut ops = vec![TxnOp::delete(key, None)];
                if observed.deadline.is_some() {
                    ops.push(TxnOp::delete(deadline_key(key.as_bytes()), None));
                }
                ops
            },
        )?;
        match changed {
            Ok((_, observed)) => Ok(Outcome::Done(observed.version())),
            Err(outcome) => Ok(outcome),
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
        // A `start_after` past every key of the prefix leaves nothing to
        // list. Past this point `from` starts with the prefix, which the
        // slices below rely on to stay inside the range.
        if end != [0] && from >= end {
            return Ok(Listing {
                entries: Vec::new(),
                more: false,
            });
        }
        let mut entries = Vec::with_capacity(limit.min(1024));
        // etcd 3.4 walks every key of a request's range before it applies
        // the limit, so a page asked of the whole rest of a large range
        // costs as much as all of it, and paging through n keys costs n².
        // So each request covers a slice: the keys after `from` that share
        // all but the last `span` bytes of the key the page starts from.
        // A slice that does not complete the page is followed by one a byte
        // wider, up to the whole rest of the range. The next listing starts
        // at the span that completed the last page, or one byte narrower if
        // that slice held over SLICE_SLACK pages' worth of keys.
        let base = from.clone();
        let mut span = self.list_span.load(Ordering::Relaxed);
        loop {
            let (slice_end, whole) = match base.len().checked_sub(span) {
                Some(keep) if keep > prefix.len() => {
                    let slice_end = range_end(&base[..keep]);
                    let whole = slice_end == end;
                    (slice_end, whole)
                }
                _ => (end.clone(), true),
            };
            if !whole && slice_end <= from {
                span += 1;
                continue;
            }
            // One more than is missing, to learn whether a key remains.
            let want = (limit - entries.len()).saturating_add(1);
            let mut options = GetOptions::new()
                .with_range(slice_end.clone())
                .with_limit(i64::try_from(want).unwrap_or(i64::MAX));
            if keys_only {
                options = options.with_keys_only();
            }
            let mut answer = self.call(prefix, |mut kv| {
                let (start, options) = (from.clone(), options.clone());
                async move { kv.get(start, Some(options)).await }
            })?;
            let more = answer.more();
            let in_slice = usize::try_from(answer.count()).unwrap_or(usize::MAX);
            let read_at = answer.header().map_or(0, |h| h.revision());
            let kvs = answer.take_kvs();
            if let Some(last) = kvs.last() {
                from = just_after(last.key());
            }
            let kvs = self.alive(prefix, kvs, read_at, now_ms())?;
            for kv in kvs {
                let (key, value) = kv.into_key_value();
                // Keys other programs stored that a C string cannot carry
                // are skipped, as on `local`.
                let Some(key) = keys::listable(&key) else {
                    continue;
                };
                if entries.len() == limit {
                    if !whole {
                        let wide = in_slice / SLICE_SLACK > limit;
                        let next = if wide { span - 1 } else { span };
                        self.list_span.store(next.max(1), Ordering::Relaxed);
                    }
                    return Ok(Listing {
                        entries,
                        more: true,
                    });
                }
                entries.push((key.to_owned(), value));
            }
            if more {
                continue;
            }
            if whole {
                return Ok(Listing {
                    entries,
                    more: false,
                });
            }
            from = slice_end;
            span += 1;
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
            let Some((revision, expired)) = self.only_listable(prefix, &from, &end)? else {
                break;
            };
            if let Some(deleted) = self.delete_range_if_unchanged(prefix, &from, &end, revision)? {
                // Expired keys go too, uncounted: they were absent already.
                return Ok(deleted.saturating_sub(expired));
            }
        }
        self.delete_listable(prefix, &from, &end)
    }

    /// One transaction of gets per `max_txn_ops / 2` keys: each key and
    /// its deadline key, read at one revision, so a page of a copy costs a
    /// few round trips rather than two per key.
    fn read_many(&self, keys: &[String], with_value: bool) -> Result<Vec<Option<Versioned>>> {
        if self.max_txn_ops < 2 {
            // A key and its deadline key do not fit one transaction.
            return keys
                .iter()
                .map(|key| self.read_versioned(key, with_value, Access::Peek))
                .collect();
        }
        let mut read = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(self.max_txn_ops / 2) {
            let options = (!with_value).then(|| GetOptions::new().with_keys_only());
            let ops: Vec<TxnOp> = chunk
                .iter()
                .flat_map(|key| {
                    [
                        TxnOp::get(key.as_str(), options.clone()),
                        TxnOp::get(deadline_key(key.as_bytes()), None),
                    ]
                })
                .collect();
            let first = chunk.first().map_or("", |key| key.as_str());
            let answer = self.txn(first, Txn::new().and_then(ops))?;
            let mut gets = answer.op_responses().into_iter().map(|op| match op {
                TxnOpResponse::Get(mut get) => get.take_kvs().into_iter().next(),
                _ => None,
            });
            let now = now_ms();
            for _ in chunk {
                let (kv, own) = (gets.next().flatten(), gets.next().flatten());
                let Some(kv) = kv else {
                    read.push(None);
                    continue;
                };
                // As `read_once` does: the deadline key counts where it
                // was written with the key.
                let deadline = deadline_of(&kv, own.as_ref());
                if deadline.is_some_and(|d| d.has_passed(now)) {
                    read.push(None);
                    continue;
                }
                read.push(Some(Versioned {
                    version: kv.mod_revision() as u64,
                    value: kv.into_key_value().1,
                    deadline,
                }));
            }
        }
        Ok(read)
    }

    /// One transaction of deletes per `max_txn_ops / 2` keys: each key and
    /// its deadline key.
    fn delete_many(&self, keys: &[String]) -> Result<()> {
        if self.max_txn_ops < 2 {
            return keys.iter().try_for_each(|key| self.delete(key).map(drop));
        }
        for chunk in keys.chunks(self.max_txn_ops / 2) {
            let ops: Vec<TxnOp> = chunk
                .iter()
                .flat_map(|key| {
                    [
                        TxnOp::delete(key.as_str(), None),
                        TxnOp::delete(deadline_key(key.as_bytes()), None),
                    ]
                })
                .collect();
            let first = chunk.first().map_or("", |key| key.as_str());
            self.txn(first, Txn::new().and_then(ops))?;
        }
        Ok(())
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
