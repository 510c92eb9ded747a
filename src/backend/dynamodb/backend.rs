//! The `dynamodb` backend on aws-sdk-dynamodb: PutItem, GetItem, a
//! conditional UpdateItem, DeleteItem returning the old item, a filtered
//! Scan for listing (of the key attribute alone for keys only),
//! BatchWriteItem for queued writes and for deleting by prefix. The item
//! layout is in `items.rs`, the table's checks in `table.rs`, the mapping
//! of failures in `errors.rs`.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::scan::builders::ScanFluentBuilder;
use aws_sdk_dynamodb::types::{
    AttributeValue, DeleteRequest, KeysAndAttributes, PutRequest, ReturnValue, WriteRequest,
};
use aws_sdk_dynamodb::Client;
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};

use super::errors::failure;
use super::items::{
    check_key, deadline_of, item, item_size, number, value_attribute, value_of, version_of, Item,
    DEADLINE, EXPIRES, KEY, MAX_ITEM_BYTES, SLIDING, UNVERSIONED, VALUE, VERSION,
};
use super::table::about_table;
use super::{DynamoDbConfig, NAME};
use crate::backend::remote::Runtime;
use crate::backend::{
    now_ms, Access, Backend, BatchLimit, Condition, Deadline, Listing, Outcome, Ttl, Versioned,
    Write,
};
use crate::error::{Error, Result};
use crate::keys;

/// BatchWriteItem's limits: 25 put requests, 16 MB in all.
const MAX_BATCH_WRITES: usize = 25;
const MAX_BATCH_BYTES: usize = 16 * 1024 * 1024;
/// What one put request adds to a BatchWriteItem body beyond its key and
/// value: `{"PutRequest":{"Item":{"key":{"S":""},"value":{"S":""}}}},`.
const PUT_REQUEST_OVERHEAD: usize = 64;

/// BatchGetItem's limit: 100 keys a request.
const MAX_BATCH_READS: usize = 100;

/// The first pause before unprocessed items are resent; each resend
/// doubles it, up to the last. DynamoDB leaves items unprocessed when it
/// throttles, so resending at once would only be throttled again.
const FIRST_RESEND: Duration = Duration::from_millis(50);
const LAST_RESEND: Duration = Duration::from_secs(1);

/// An item as read: its version, its deadline, and its value (empty where
/// it was not asked for).
struct Stored {
    version: u64,
    deadline: Option<Deadline>,
    value: Vec<u8>,
}

pub(crate) struct DynamoDb {
    pub(super) client: Client,
    pub(super) table: String,
    /// For messages about the table.
    pub(super) endpoint_url: Option<String>,
    consistent_read: bool,
    pub(super) timeout: Duration,
    /// Declared last: dropped after the client, whose connections it runs.
    runtime: Arc<Runtime>,
}

impl DynamoDb {
    pub(crate) fn open(config: &DynamoDbConfig, runtime: Arc<Runtime>) -> Result<DynamoDb> {
        let timeout = config.timeout();
        let sdk_config = runtime.run(timeout, sdk_config(config)).ok_or_else(|| {
            Error::unavailable(
                NAME,
                "",
                format!("loading the AWS configuration took over {timeout:?}"),
            )
        })?;
        if sdk_config.region().is_none() {
            return Err(Error::Config(
                "dynamodb: no AWS region: set dynamodb.region, or AWS_REGION, or a region \
                 in the AWS profile"
                    .into(),
            ));
        }
        let db = DynamoDb {
            client: Client::new(&sdk_config),
            table: config.table_name.clone(),
            endpoint_url: config.endpoint_url.clone(),
            consistent_read: config.consistent_read,
            timeout,
            runtime,
        };
        // Say which table a failure at open is about: it names no key.
        db.check_table(config.create_table)
            .map_err(|e| about_table(e, &config.table_name))?;
        Ok(db)
    }

    /// Runs one request within the timeout; `Err` only when it took longer.
    pub(super) fn run<T, E>(
        &self,
        key: &str,
        request: impl Future<Output = Result<T, SdkError<E>>>,
    ) -> Result<Result<T, SdkError<E>>> {
        let timeout = self.timeout;
        self.runtime
            .run(timeout, request)
            .ok_or_else(|| Error::unavailable(NAME, key, format!("no answer within {timeout:?}")))
    }

    /// Runs one request within the timeout; any failure becomes our error.
    pub(super) fn call<T, E>(
        &self,
        key: &str,
        request: impl Future<Output = Result<T, SdkError<E>>>,
    ) -> Result<T>
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        self.run(key, request)?
            .map_err(|error| failure(&self.table, key, error))
    }

    /// Fails with `TooLarge` where DynamoDB would refuse the item for its
    /// size, before it is sent.
    fn check_size(&self, key: &str, value: &[u8]) -> Result<()> {
        check_key(key)?;
        let size = item_size(key, value);
        if size > MAX_ITEM_BYTES {
            return Err(Error::too_large(
                NAME,
                key,
                format!(
                    "an item of {size} bytes (key, value and attribute names) is over \
                     DynamoDB's item limit of {MAX_ITEM_BYTES} bytes"
                ),
            ));
        }
        Ok(())
    }

    /// A PutItem of the whole item where `condition` holds; `false` when
    /// it does not (nothing is written).
    fn put(
        &self,
        key: &str,
        value: &[u8],
        version: u64,
        deadline: Option<Deadline>,
        condition: &str,
    ) -> Result<bool> {
        let names = names(&[condition]);
        let values = values(
            &[condition],
            &[(":ver", number(version)), (":now", number(now_ms()))],
        );
        let request = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item(key, value, version, deadline)))
            .condition_expression(condition)
            .set_expression_attribute_names(names)
            .set_expression_attribute_values(values);
        self.conditional(key, request.send())
    }

    /// An UpdateItem of the value and the version, and of the deadline as
    /// `ttl` says, leaving the item's other attributes, where `condition`
    /// holds (`:old` is `old`); `false` when it does not.
    fn set(
        &self,
        key: &str,
        value: &[u8],
        version: u64,
        ttl: Ttl,
        condition: &str,
        old: Option<u64>,
    ) -> Result<bool> {
        let (update, mut given) = match ttl {
            Ttl::Keep => ("SET #v = :v, #ver = :ver".to_owned(), vec![]),
            Ttl::Clear => (
                "SET #v = :v, #ver = :ver REMOVE #dl, #exp, #sl".to_owned(),
                vec![],
            ),
            Ttl::Set(deadline) => {
                let (set, given) = set_deadline(deadline);
                (format!("SET #v = :v, #ver = :ver, {set}"), given)
            }
        };
        given.extend([
            (":v", value_attribute(value)),
            (":ver", number(version)),
            (":now", number(now_ms())),
        ]);
        if let Some(old) = old {
            given.push((":old", number(old)));
        }
        self.update(key, &update, condition, &given)
    }

    /// Sets or removes the deadline of an item that is alive, keeping its
    /// value and version (`:old`, where given, the version it must have,
    /// `:was` the deadline); `false` when it is absent, expired or changed.
    fn set_deadline(
        &self,
        key: &str,
        deadline: Option<Deadline>,
        condition: &str,
        was: Option<(u64, Deadline)>,
    ) -> Result<bool> {
        let (update, mut given) = match deadline {
            Some(deadline) => {
                let (set, given) = set_deadline(deadline);
                (format!("SET {set}"), given)
            }
            None => ("REMOVE #dl, #exp, #sl".to_owned(), vec![]),
        };
        given.push((":now", number(now_ms())));
        if let Some((version, deadline)) = was {
            given.extend([(":old", number(version)), (":was", number(deadline.at_ms))]);
        }
        self.update(key, &update, condition, &given)
    }

    /// An UpdateItem of `key` with `update` where `condition` holds, with
    /// those of the values `given` that the expressions use; `false` when
    /// the condition failed.
    fn update(
        &self,
        key: &str,
        update: &str,
        condition: &str,
        given: &[(&str, AttributeValue)],
    ) -> Result<bool> {
        let request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY, AttributeValue::S(key.to_owned()))
            .update_expression(update)
            .condition_expression(condition)
            .set_expression_attribute_names(names(&[update, condition]))
            .set_expression_attribute_values(values(&[update, condition], given));
        self.conditional(key, request.send())
    }

    /// Runs a conditional request: `false` when its condition failed.
    fn conditional<T, E>(
        &self,
        key: &str,
        request: impl Future<Output = Result<T, SdkError<E>>>,
    ) -> Result<bool>
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        match self.run(key, request)? {
            Ok(_) => Ok(true),
            Err(error) if error.code() == Some("ConditionalCheckFailedException") => Ok(false),
            Err(error) => Err(failure(&self.table, key, error)),
        }
    }

    /// The item's version and deadline, expired or not; `None` when absent.
    fn state(&self, key: &str) -> Result<Option<(u64, Option<Deadline>)>> {
        Ok(self
            .get(key, false)?
            .map(|stored| (stored.version, stored.deadline)))
    }

    /// GetItem: the item as stored, expired or not.
    fn get(&self, key: &str, with_value: bool) -> Result<Option<Stored>> {
        check_key(key)?;
        let mut request = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(KEY, AttributeValue::S(key.to_owned()))
            .consistent_read(self.consistent_read);
        if !with_value {
            let projection = "#k, #ver, #dl, #sl";
            request = request
                .projection_expression(projection)
                .set_expression_attribute_names(names(&[projection]));
        }
        let answer = self.call(key, request.send())?;
        let Some(item) = answer.item else {
            return Ok(None);
        };
        let version = version_of(key, &item)?;
        let deadline = deadline_of(key, &item)?;
        let value = match with_value {
            true => value_of(key, item)?,
            false => Vec::new(),
        };
        Ok(Some(Stored {
            version,
            deadline,
            value,
        }))
    }

    /// A Scan of the items whose key starts with `prefix` and that have
    /// not expired, from `start` on; of their keys alone with `keys_only`.
    fn prefix_scan(&self, prefix: &str, start: Option<Item>, keys_only: bool) -> ScanFluentBuilder {
        // Expired items that DynamoDB has not deleted yet are left out.
        let filter = match prefix {
            "" => ALIVE.to_owned(),
            _ => format!("begins_with(#k, :prefix) AND {ALIVE}"),
        };
        // DynamoDB reads whole items either way (and bills them so), but
        // sends only the key.
        let projection = if keys_only { "#k" } else { "" };
        let given = [
            (":prefix", AttributeValue::S(prefix.to_owned())),
            (":now", number(now_ms())),
        ];
        let mut scan = self
            .client
            .scan()
            .table_name(&self.table)
            .consistent_read(self.consistent_read)
            .set_exclusive_start_key(start)
            .set_expression_attribute_names(names(&[&filter, projection]))
            .set_expression_attribute_values(values(&[&filter], &given))
            .filter_expression(filter);
        if keys_only {
            scan = scan.projection_expression(projection);
        }
        scan
    }

    /// BatchGetItem of `keys` (at most 100), resending what DynamoDB leaves
    /// unprocessed with the pauses queued writes use, until the timeout:
    /// the items found, by key, expired or not.
    fn get_batch(&self, keys: &[String], with_value: bool) -> Result<HashMap<String, Item>> {
        let first = keys.first().map_or("", |key| key.as_str());
        let wanted: Vec<Item> = keys
            .iter()
            .map(|key| HashMap::from([(KEY.to_owned(), AttributeValue::S(key.clone()))]))
            .collect();
        let mut request = KeysAndAttributes::builder()
            .set_keys(Some(wanted))
            .consistent_read(self.consistent_read);
        if !with_value {
            let projection = "#k, #ver, #dl, #sl";
            request = request
                .projection_expression(projection)
                .set_expression_attribute_names(names(&[projection]));
        }
        let mut request = request
            .build()
            .map_err(|e| Error::Internal(e.to_string()))?;
        let deadline = Instant::now() + self.timeout;
        let mut pause = FIRST_RESEND;
        let mut found = HashMap::with_capacity(keys.len());
        loop {
            let answer = self.call(
                first,
                self.client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send(),
            )?;
            let items = answer
                .responses
                .and_then(|mut tables| tables.remove(&self.table))
                .unwrap_or_default();
            for item in items {
                if let Some(AttributeValue::S(key)) = item.get(KEY) {
                    found.insert(key.clone(), item);
                }
            }
            match answer
                .unprocessed_keys
                .and_then(|mut tables| tables.remove(&self.table))
            {
                Some(rest) if !rest.keys().is_empty() => request = rest,
                _ => return Ok(found),
            }
            if Instant::now() + pause > deadline {
                return Err(Error::unavailable(
                    NAME,
                    first,
                    format!(
                        "a batch of reads still unprocessed (throttled) after {:?}",
                        self.timeout
                    ),
                ));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(LAST_RESEND);
        }
    }

    /// Deletes `keys` (at most 25) in one BatchWriteItem, resending what
    /// DynamoDB leaves unprocessed, as queued writes do.
    fn delete_batch(&self, prefix: &str, keys: &[String]) -> Result<()> {
        let requests = keys
            .iter()
            .map(|key| {
                let delete = DeleteRequest::builder()
                    .key(KEY, AttributeValue::S(key.clone()))
                    .build()
                    .map_err(|e| Error::Internal(e.to_string()))?;
                Ok(WriteRequest::builder().delete_request(delete).build())
            })
            .collect::<Result<Vec<_>>>()?;
        self.send_batch(prefix, "a batch of deletes", requests)
    }

    /// Sends `requests` with [`DynamoDb::write_all`], within the timeout.
    fn send_batch(&self, key: &str, what: &str, requests: Vec<WriteRequest>) -> Result<()> {
        let deadline = Instant::now() + self.timeout;
        self.runtime
            .run(self.timeout, self.write_all(requests, deadline))
            .unwrap_or_else(|| {
                Err(Error::unavailable(
                    NAME,
                    key,
                    format!("{what} got no answer within {:?}", self.timeout),
                ))
            })
    }

    /// Sends one BatchWriteItem, then resends its unprocessed items with
    /// capped exponential backoff until none is left or `deadline` passes.
    ///
    /// Once part of the batch is applied, a resend that fails as
    /// unavailable (throttled, a server error, after the SDK's own tries)
    /// is tried again here too: failing would make the worker resend the
    /// whole batch, applied part included. Before that, nothing of the
    /// batch is applied and the failure is the worker's to retry.
    async fn write_all(&self, mut requests: Vec<WriteRequest>, deadline: Instant) -> Result<()> {
        let total = requests.len();
        let mut pause = FIRST_RESEND;
        let mut applied_some = false;
        loop {
            let sending = requests.len();
            // Kept while part of the batch is applied, to be sent again.
            let batch = match applied_some {
                true => requests.clone(),
                false => std::mem::take(&mut requests),
            };
            let sent = self
                .client
                .batch_write_item()
                .request_items(&self.table, batch)
                .send()
                .await;
            let why = match sent {
                Ok(answer) => {
                    requests = answer
                        .unprocessed_items
                        .and_then(|mut tables| tables.remove(&self.table))
                        .unwrap_or_default();
                    if requests.is_empty() {
                        return Ok(());
                    }
                    applied_some |= requests.len() < sending;
                    "unprocessed (throttled)".to_owned()
                }
                Err(error) => {
                    let error = failure(&self.table, "", error);
                    if !(applied_some && error.is_transient()) {
                        return Err(error);
                    }
                    format!("unapplied: {}", error.cause())
                }
            };
            if Instant::now() + pause > deadline {
                return Err(Error::unavailable(
                    NAME,
                    "",
                    format!(
                        "{} of {total} writes of a batch still {why} after {:?}",
                        requests.len(),
                        self.timeout
                    ),
                ));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(LAST_RESEND);
        }
    }
}

impl Backend for DynamoDb {
    fn name(&self) -> &'static str {
        NAME
    }

    fn write_if(&self, key: &str, value: &[u8], condition: Condition, ttl: Ttl) -> Result<Outcome> {
        self.check_size(key, value)?;
        let mut known = match condition {
            Condition::Version(version) => Some(version),
            _ => None,
        };
        let deadline = match ttl {
            Ttl::Set(deadline) => Some(deadline),
            Ttl::Clear | Ttl::Keep => None,
        };
        loop {
            let version = next_version(known);
            let applied = match (condition, known) {
                // An expired item is absent: replaced as if it were.
                (Condition::Absent, _) => self.put(
                    key,
                    value,
                    version,
                    deadline,
                    "attribute_not_exists(#k) OR #dl <= :now",
                )?,
                // The version the time gives, where it is larger: one
                // request, whatever the item's version.
                (Condition::Any, None) if ttl != Ttl::Keep => self.put(
                    key,
                    value,
                    version,
                    deadline,
                    "attribute_not_exists(#ver) OR #ver < :ver",
                )?,
                (Condition::Any, None) => self.set(
                    key,
                    value,
                    version,
                    ttl,
                    "attribute_not_exists(#ver) OR #ver < :ver",
                    None,
                )?,
                (Condition::Present, None) => self.set(
                    key,
                    value,
                    version,
                    ttl,
                    &format!("attribute_exists(#k) AND (attribute_not_exists(#ver) OR #ver < :ver) AND {ALIVE}"),
                    None,
                )?,
                // The version known, where it still is.
                (Condition::Any, Some(old)) => {
                    self.set(key, value, version, ttl, was(old), Some(old))?
                }
                (Condition::Version(old), None) | (_, Some(old)) => {
                    let condition = format!("{} AND {ALIVE}", was(old));
                    self.set(key, value, version, ttl, &condition, Some(old))?
                }
            };
            if applied {
                return Ok(Outcome::Done(wrote(version)));
            }
            let state = self.state(key)?;
            let now = now_ms();
            let alive = state.filter(|(_, d)| !d.is_some_and(|d| d.has_passed(now)));
            match (condition, alive, state) {
                (Condition::Absent, Some(_), _) => return Ok(Outcome::Conflict),
                (Condition::Version(wanted), Some((current, _)), _) if current != wanted => {
                    return Ok(Outcome::Conflict)
                }
                (Condition::Present | Condition::Version(_), None, _) => {
                    return Ok(Outcome::Absent)
                }
                // A clock behind the item's version, or a change between:
                // the version read, plus one.
                (_, _, state) => known = state.map(|(current, _)| current).or(known),
            }
        }
    }

    fn read_versioned(
        &self,
        key: &str,
        with_value: bool,
        access: Access,
    ) -> Result<Option<Versioned>> {
        let Some(Stored {
            version,
            deadline,
            value,
        }) = self.get(key, with_value)?
        else {
            return Ok(None);
        };
        if let Some(deadline) = deadline {
            let now = now_ms();
            if deadline.has_passed(now) {
                return Ok(None);
            }
            if let Some(slid) = deadline.slid(now, access) {
                // Where nothing changed since the read; else the change
                // set the deadline anew.
                let unchanged = format!("{} AND #dl = :was", was(version));
                self.set_deadline(key, Some(slid), &unchanged, Some((version, deadline)))?;
                return Ok(Some(Versioned {
                    value,
                    version,
                    deadline: Some(slid),
                }));
            }
        }
        Ok(Some(Versioned {
            value,
            version,
            deadline,
        }))
    }

    fn touch(&self, key: &str, deadline: Option<Deadline>) -> Result<Outcome> {
        check_key(key)?;
        let alive = format!("attribute_exists(#k) AND {ALIVE}");
        match self.set_deadline(key, deadline, &alive, None)? {
            true => Ok(Outcome::Done(0)),
            false => Ok(Outcome::Absent),
        }
    }

    fn delete_if(&self, key: &str, condition: Condition) -> Result<Outcome> {
        check_key(key)?;
        let mut request = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(KEY, AttributeValue::S(key.to_owned()))
            .return_values(ReturnValue::AllOld);
        if let Condition::Version(old) = condition {
            let condition = format!("{} AND {ALIVE}", was(old));
            let given = [(":old", number(old)), (":now", number(now_ms()))];
            request = request
                .condition_expression(&condition)
                .set_expression_attribute_names(names(&[&condition]))
                .set_expression_attribute_values(values(&[&condition], &given));
        }
        match self.run(key, request.send())? {
            Ok(answer) => match answer.attributes.filter(|old| !old.is_empty()) {
                // An expired item was absent already: gone sooner.
                Some(old) if deadline_of(key, &old)?.is_some_and(|d| d.has_passed(now_ms())) => {
                    Ok(Outcome::Absent)
                }
                Some(old) => Ok(Outcome::Done(version_of(key, &old)?)),
                None => Ok(Outcome::Absent),
            },
            Err(error) if error.code() == Some("ConditionalCheckFailedException") => {
                match self.read_versioned(key, false, Access::Peek)? {
                    Some(_) => Ok(Outcome::Conflict),
                    None => Ok(Outcome::Absent),
                }
            }
            Err(error) => Err(failure(&self.table, key, error)),
        }
    }

    fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        keys_only: bool,
    ) -> Result<Listing> {
        // A scan resumes after the position of its exclusive start key,
        // whether or not that item still exists: the next page goes on
        // after the last key of this one, even when it was deleted since.
        let mut start: Option<Item> = start_after
            .map(|after| HashMap::from([(KEY.to_owned(), AttributeValue::S(after.to_owned()))]));
        let mut entries = Vec::with_capacity(limit.min(1024));
        loop {
            let scan = self.prefix_scan(prefix, start.take(), keys_only);
            let answer = self.call(prefix, scan.send())?;
            for item in answer.items.unwrap_or_default() {
                let Some(AttributeValue::S(key)) = item.get(KEY) else {
                    continue;
                };
                // Keys other programs stored that a C string cannot carry
                // are skipped, as on `local`.
                let Some(key) = keys::listable(key.as_bytes()).map(str::to_owned) else {
                    continue;
                };
                // One match past a full page: more remain. The next page
                // starts after the last key of this one, so this one is
                // read again then.
                if entries.len() == limit {
                    return Ok(Listing {
                        entries,
                        more: true,
                    });
                }
                let value = match keys_only {
                    true => Vec::new(),
                    false => value_of(&key, item)?,
                };
                entries.push((key, value));
            }
            match answer.last_evaluated_key {
                Some(last) if !last.is_empty() => start = Some(last),
                _ => {
                    return Ok(Listing {
                        entries,
                        more: false,
                    })
                }
            }
        }
    }

    fn delete_prefix(&self, prefix: &str, keep_prefix_key: bool) -> Result<u64> {
        let mut start: Option<Item> = None;
        let mut deleted = 0;
        loop {
            let answer = self.call(prefix, self.prefix_scan(prefix, start, true).send())?;
            let listed: Vec<String> = answer
                .items
                .unwrap_or_default()
                .into_iter()
                .filter_map(|mut item| match item.remove(KEY) {
                    Some(AttributeValue::S(key)) => Some(key),
                    _ => None,
                })
                // Keys listings leave out stay.
                .filter(|key| keys::listable(key.as_bytes()).is_some())
                .filter(|key| !(keep_prefix_key && key == prefix))
                .collect();
            for keys in listed.chunks(MAX_BATCH_WRITES) {
                self.delete_batch(prefix, keys)?;
                deleted += keys.len() as u64;
            }
            match answer.last_evaluated_key {
                Some(last) if !last.is_empty() => start = Some(last),
                _ => return Ok(deleted),
            }
        }
    }

    /// BatchGetItem, 100 keys a request: a page of a copy in ten round
    /// trips rather than a thousand.
    fn read_many(&self, keys: &[String], with_value: bool) -> Result<Vec<Option<Versioned>>> {
        let mut read = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(MAX_BATCH_READS) {
            for key in chunk {
                check_key(key)?;
            }
            let mut found = self.get_batch(chunk, with_value)?;
            let now = now_ms();
            for key in chunk {
                let Some(item) = found.remove(key) else {
                    read.push(None);
                    continue;
                };
                let version = version_of(key, &item)?;
                let deadline = deadline_of(key, &item)?;
                if deadline.is_some_and(|d| d.has_passed(now)) {
                    read.push(None);
                    continue;
                }
                let value = match with_value {
                    true => value_of(key, item)?,
                    false => Vec::new(),
                };
                read.push(Some(Versioned {
                    value,
                    version,
                    deadline,
                }));
            }
        }
        Ok(read)
    }

    /// BatchWriteItem, 25 deletes a request.
    fn delete_many(&self, keys: &[String]) -> Result<()> {
        for chunk in keys.chunks(MAX_BATCH_WRITES) {
            for key in chunk {
                check_key(key)?;
            }
            self.delete_batch(chunk.first().map_or("", |key| key.as_str()), chunk)?;
        }
        Ok(())
    }

    fn write_batch(&self, writes: &[Write]) -> Result<()> {
        let requests = writes
            .iter()
            .map(|w| {
                let put = PutRequest::builder()
                    .set_item(Some(item(
                        &w.key,
                        &w.value,
                        wrote(next_version(None)),
                        w.deadline,
                    )))
                    .build()
                    .map_err(|e| Error::Internal(e.to_string()))?;
                Ok(WriteRequest::builder().put_request(put).build())
            })
            .collect::<Result<Vec<_>>>()?;
        // Errors name no key: the worker reports how many writes failed.
        self.send_batch("", "a batch", requests)
    }

    fn destination(&self) -> String {
        format!("the table {}{}", self.table, self.whereabouts())
    }

    fn flush(&self) -> Result<()> {
        // DynamoDB makes a write durable before it answers.
        Ok(())
    }

    fn accepts(&self, key: &str, value: &[u8]) -> Result<()> {
        self.check_size(key, value)
    }

    fn batch_limit(&self) -> BatchLimit {
        BatchLimit {
            writes: MAX_BATCH_WRITES,
            bytes: MAX_BATCH_BYTES,
            overhead: PUT_REQUEST_OVERHEAD,
        }
    }

    fn timeout(&self) -> Duration {
        self.timeout
    }
}

/// The largest version this process wrote: a new one is larger still.
static LAST_VERSION: AtomicU64 = AtomicU64::new(0);

/// A new version: the time in µs, or one more than `previous` or than the
/// largest version this process wrote, whichever is largest
/// (docs/design.md, Versions). Noted by [`wrote`] once written only: a
/// version a failed condition named (`u64::MAX`, say) must not raise the
/// versions of later writes.
fn next_version(previous: Option<u64>) -> u64 {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |t| u64::try_from(t.as_micros()).unwrap_or(u64::MAX));
    let previous = previous.map_or(UNVERSIONED, |p| p.saturating_add(1));
    let last = LAST_VERSION.load(Ordering::Relaxed).saturating_add(1);
    now.max(previous).max(last).max(UNVERSIONED + 1)
}

/// Notes a version written.
fn wrote(version: u64) -> u64 {
    LAST_VERSION.fetch_max(version, Ordering::Relaxed);
    version
}

/// The condition that the item has version `old` (an item without a
/// version attribute has [`UNVERSIONED`]). Names `#k`, `#ver`, `:old`.
fn was(old: u64) -> &'static str {
    match old {
        UNVERSIONED => "attribute_exists(#k) AND attribute_not_exists(#ver)",
        _ => "#ver = :old",
    }
}

/// The condition that an item has not expired. Names `#dl`, `:now`.
const ALIVE: &str = "(attribute_not_exists(#dl) OR #dl > :now)";

/// The placeholders of expressions and the attributes they name.
const NAMES: [(&str, &str); 6] = [
    ("#k", KEY),
    ("#v", VALUE),
    ("#ver", VERSION),
    ("#dl", DEADLINE),
    ("#exp", EXPIRES),
    ("#sl", SLIDING),
];

/// Whether `expression` uses `placeholder` (`#v`, not as part of `#ver`).
fn uses(expression: &str, placeholder: &str) -> bool {
    expression.match_indices(placeholder).any(|(at, _)| {
        let next = expression[at + placeholder.len()..].chars().next();
        !next.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

/// The attribute names `expressions` use: DynamoDB refuses any unused.
fn names(expressions: &[&str]) -> Option<HashMap<String, String>> {
    let used: HashMap<String, String> = NAMES
        .iter()
        .filter(|(placeholder, _)| expressions.iter().any(|e| uses(e, placeholder)))
        .map(|(placeholder, name)| (placeholder.to_string(), name.to_string()))
        .collect();
    (!used.is_empty()).then_some(used)
}

/// Of the values `given`, those `expressions` use.
fn values(
    expressions: &[&str],
    given: &[(&str, AttributeValue)],
) -> Option<HashMap<String, AttributeValue>> {
    let used: HashMap<String, AttributeValue> = given
        .iter()
        .filter(|(placeholder, _)| expressions.iter().any(|e| uses(e, placeholder)))
        .map(|(placeholder, value)| (placeholder.to_string(), value.clone()))
        .collect();
    (!used.is_empty()).then_some(used)
}

/// The SET clause (without `SET`) that gives an item `deadline`, and its
/// values; a fixed deadline removes a sliding ttl.
fn set_deadline(deadline: Deadline) -> (String, Vec<(&'static str, AttributeValue)>) {
    let mut given = vec![
        (":dl", number(deadline.at_ms)),
        (":exp", number(deadline.at_ms.div_ceil(1000))),
    ];
    let clause = match deadline.sliding_ms {
        0 => "#dl = :dl, #exp = :exp REMOVE #sl".to_owned(),
        sliding_ms => {
            given.push((":sl", number(sliding_ms)));
            "#dl = :dl, #exp = :exp, #sl = :sl".to_owned()
        }
    };
    (clause, given)
}

/// The SDK configuration of the section: region and endpoint from it,
/// credentials from the standard chain, TLS on ring.
async fn sdk_config(config: &DynamoDbConfig) -> SdkConfig {
    // The SDK's default HTTPS client uses aws-lc-rs; etcd-client uses ring.
    // With both built in, rustls cannot choose a process-wide provider, so
    // this client names its provider itself.
    let http_client = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let timeout = config.timeout();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http_client)
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(timeout)
                .operation_timeout(timeout)
                .build(),
        )
        // A throttled or dropped request is tried again soon, a few times,
        // within the timeout; the worker retries queued writes beyond that.
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(3)
                .with_initial_backoff(Duration::from_millis(50))
                .with_max_backoff(Duration::from_secs(1)),
        );
    if let Some(region) = &config.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(url) = &config.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    loader.load().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_grow_and_a_version_only_named_raises_none() {
        let written = wrote(next_version(None));
        assert!(next_version(None) > written);
        assert!(next_version(Some(written + 1_000_000)) > written + 1_000_000);
        // A condition named it, nothing was written: later versions are
        // not pushed to the end of the range.
        assert_eq!(next_version(Some(u64::MAX)), u64::MAX);
        assert!(next_version(None) < u64::MAX / 2);
    }
}
