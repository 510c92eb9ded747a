//! The `dynamodb` backend, on aws-sdk-dynamodb: PutItem, GetItem, a
//! conditional UpdateItem, DeleteItem returning the old item, a filtered
//! Scan for listing, BatchWriteItem for queued writes.
//!
//! Items have the Python TetherDB's layout, so both share a table: the
//! partition key `key` (S) holds the stored key (`bucket:key`), and `value`
//! holds the value, as S where it is valid UTF-8 (what the Python TetherDB
//! writes) and as B otherwise. Reads accept both.
//!
//! Opening checks the table (and creates it when asked), so a missing
//! table is reported by `tether_open`, not by the first write.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::describe_table::DescribeTableError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, PutRequest,
    ReturnValue, ScalarAttributeType, TableDescription, TableStatus, WriteRequest,
};
use aws_sdk_dynamodb::Client;
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};

use super::DynamoDbConfig;
use crate::backend::remote::Runtime;
use crate::backend::{Backend, BatchLimit, Listing, Write};
use crate::error::{redacted_url, Error, Result};
use crate::keys;

const NAME: &str = "dynamodb";

/// The attribute names of the Python TetherDB's items.
const KEY: &str = "key";
const VALUE: &str = "value";

/// DynamoDB's limit on one item: its attribute names and values together.
const MAX_ITEM_BYTES: usize = 400 * 1024;
/// DynamoDB's limit on a partition key value.
const MAX_KEY_BYTES: usize = 2048;
/// BatchWriteItem's limits: 25 put requests, 16 MB in all.
const MAX_BATCH_WRITES: usize = 25;
const MAX_BATCH_BYTES: usize = 16 * 1024 * 1024;
/// What one put request adds to a BatchWriteItem body beyond its key and
/// value: `{"PutRequest":{"Item":{"key":{"S":""},"value":{"S":""}}}},`.
const PUT_REQUEST_OVERHEAD: usize = 64;

/// The first pause before unprocessed items are resent; each resend
/// doubles it, up to the last. DynamoDB leaves items unprocessed when it
/// throttles, so resending at once would only be throttled again.
const FIRST_RESEND: Duration = Duration::from_millis(50);
const LAST_RESEND: Duration = Duration::from_secs(1);

/// Error codes after which the same request may succeed later.
const TRANSIENT_CODES: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "InternalServerError",
    "ServiceUnavailable",
    "LimitExceededException",
    "TransactionConflictException",
];

/// How long opening waits at least for a table being created to become
/// active: DynamoDB takes seconds to tens of seconds, more than a request
/// timeout.
const TABLE_CREATION_WAIT: Duration = Duration::from_secs(60);

type Item = HashMap<String, AttributeValue>;

pub(crate) struct DynamoDb {
    client: Client,
    table: String,
    /// For messages about the table.
    endpoint_url: Option<String>,
    consistent_read: bool,
    timeout: Duration,
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
    fn run<T, E>(
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
    fn call<T, E>(
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

    /// Checks that the table exists with the expected key, creating it when
    /// `create` is set, and waits until it is active.
    fn check_table(&self, create: bool) -> Result<()> {
        let described = self.run(
            "",
            self.client.describe_table().table_name(&self.table).send(),
        )?;
        let table = match described {
            Ok(answer) => answer.table,
            Err(error) if is_missing_table(&error) && create => self.create_table()?,
            Err(error) if is_missing_table(&error) => {
                return Err(Error::Config(format!(
                    "dynamodb: table {table:?} does not exist{where_}. Set \"create_table\": true \
                     in the dynamodb section to have it created, or create it with: aws dynamodb \
                     create-table --table-name {table} --attribute-definitions \
                     AttributeName=key,AttributeType=S --key-schema AttributeName=key,KeyType=HASH \
                     --billing-mode PAY_PER_REQUEST",
                    table = self.table,
                    where_ = self.whereabouts(),
                )))
            }
            Err(error) => return Err(failure(&self.table, "", error)),
        };
        if let Some(table) = &table {
            self.check_schema(table)?;
        }
        if table.as_ref().and_then(|t| t.table_status()) != Some(&TableStatus::Active) {
            self.wait_until_active()?;
        }
        Ok(())
    }

    /// " in region R at E", for messages about the table.
    fn whereabouts(&self) -> String {
        let config = self.client.config();
        let mut at = String::new();
        if let Some(region) = config.region() {
            at += &format!(" in region {region}");
        }
        if let Some(endpoint) = &self.endpoint_url {
            at += &format!(" at {}", redacted_url(endpoint));
        }
        at
    }

    /// Creates the table with the Python TetherDB's schema, on-demand.
    fn create_table(&self) -> Result<Option<TableDescription>> {
        let build = |e: aws_sdk_dynamodb::error::BuildError| Error::Internal(e.to_string());
        let request = self
            .client
            .create_table()
            .table_name(&self.table)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(KEY)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .map_err(build)?,
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name(KEY)
                    .key_type(KeyType::Hash)
                    .build()
                    .map_err(build)?,
            )
            .billing_mode(BillingMode::PayPerRequest)
            .send();
        match self.run("", request)? {
            Ok(answer) => Ok(answer.table_description),
            // Another program created it meanwhile: use theirs.
            Err(error) if error.code() == Some("ResourceInUseException") => {
                let answer = self.call(
                    "",
                    self.client.describe_table().table_name(&self.table).send(),
                )?;
                Ok(answer.table)
            }
            Err(error) => Err(failure(&self.table, "", error)),
        }
    }

    /// Refuses a table whose key is not the Python TetherDB's: every call
    /// would fail with a validation error.
    fn check_schema(&self, table: &TableDescription) -> Result<()> {
        let key_type = table
            .attribute_definitions()
            .iter()
            .find(|d| d.attribute_name() == KEY)
            .map(|d| d.attribute_type());
        let schema = table.key_schema();
        let expected = schema.len() == 1
            && schema[0].attribute_name() == KEY
            && schema[0].key_type() == &KeyType::Hash
            && key_type == Some(&ScalarAttributeType::S);
        if !expected && !schema.is_empty() {
            let found: Vec<String> = schema
                .iter()
                .map(|k| format!("{} ({})", k.attribute_name(), k.key_type()))
                .collect();
            return Err(Error::Config(format!(
                "dynamodb: table {:?} has the key {}; TetherDB needs the partition key \
                 \"key\" of type S and no sort key",
                self.table,
                found.join(", ")
            )));
        }
        Ok(())
    }

    /// Polls the table until it is active.
    fn wait_until_active(&self) -> Result<()> {
        let deadline = Instant::now() + self.timeout.max(TABLE_CREATION_WAIT);
        let mut pause = Duration::from_millis(100);
        loop {
            let answer = self.call(
                "",
                self.client.describe_table().table_name(&self.table).send(),
            )?;
            let status = answer.table.as_ref().and_then(|t| t.table_status());
            match status {
                Some(TableStatus::Active) | Some(TableStatus::Updating) => return Ok(()),
                Some(TableStatus::Creating) | None => {}
                Some(other) => {
                    return Err(Error::Config(format!(
                        "dynamodb: table {:?} is {other}, not active",
                        self.table
                    )))
                }
            }
            if Instant::now() + pause > deadline {
                return Err(Error::unavailable(
                    NAME,
                    "",
                    format!(
                        "table {:?} is still being created; open again once it is active",
                        self.table
                    ),
                ));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_secs(2));
        }
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

    fn write(&self, key: &str, value: &[u8]) -> Result<()> {
        self.check_size(key, value)?;
        let request = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item(key, value)))
            .send();
        self.call(key, request).map(drop)
    }

    fn read(&self, key: &str) -> Result<Option<Vec<u8>>> {
        check_key(key)?;
        let request = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(KEY, AttributeValue::S(key.to_owned()))
            .consistent_read(self.consistent_read)
            .send();
        let answer = self.call(key, request)?;
        answer.item.map(|item| value_of(key, item)).transpose()
    }

    fn update(&self, key: &str, value: &[u8]) -> Result<bool> {
        self.check_size(key, value)?;
        // One conditional request: replace the value only where the item
        // exists. Unlike the Python TetherDB, never create it.
        let request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY, AttributeValue::S(key.to_owned()))
            .update_expression("SET #v = :v")
            .condition_expression("attribute_exists(#k)")
            .expression_attribute_names("#k", KEY)
            .expression_attribute_names("#v", VALUE)
            .expression_attribute_values(":v", value_attribute(value))
            .send();
        match self.run(key, request)? {
            Ok(_) => Ok(true),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(error) => Err(failure(&self.table, key, error)),
        }
    }

    fn delete(&self, key: &str) -> Result<bool> {
        check_key(key)?;
        let request = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(KEY, AttributeValue::S(key.to_owned()))
            .return_values(ReturnValue::AllOld)
            .send();
        let answer = self.call(key, request)?;
        Ok(answer.attributes.is_some_and(|old| !old.is_empty()))
    }

    fn list(&self, prefix: &str, start_after: Option<&str>, limit: usize) -> Result<Listing> {
        // A scan resumes after the position of its exclusive start key,
        // whether or not that item still exists: the next page goes on
        // after the last key of this one, even when it was deleted since.
        let mut start: Option<Item> = start_after
            .map(|after| HashMap::from([(KEY.to_owned(), AttributeValue::S(after.to_owned()))]));
        let mut entries = Vec::with_capacity(limit.min(1024));
        loop {
            let mut scan = self
                .client
                .scan()
                .table_name(&self.table)
                .consistent_read(self.consistent_read)
                .set_exclusive_start_key(start.take());
            // Without a prefix every item matches: no filter.
            if !prefix.is_empty() {
                scan = scan
                    .filter_expression("begins_with(#k, :prefix)")
                    .expression_attribute_names("#k", KEY)
                    .expression_attribute_values(":prefix", AttributeValue::S(prefix.to_owned()));
            }
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
                let value = value_of(&key, item)?;
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

    fn write_batch(&self, writes: &[Write]) -> Result<()> {
        let requests = writes
            .iter()
            .map(|w| {
                let put = PutRequest::builder()
                    .set_item(Some(item(&w.key, &w.value)))
                    .build()
                    .map_err(|e| Error::Internal(e.to_string()))?;
                Ok(WriteRequest::builder().put_request(put).build())
            })
            .collect::<Result<Vec<_>>>()?;
        let deadline = Instant::now() + self.timeout;
        // Errors name no key: the worker reports how many writes failed.
        self.runtime
            .run(self.timeout, self.write_all(requests, deadline))
            .unwrap_or_else(|| {
                Err(Error::unavailable(
                    NAME,
                    "",
                    format!("a batch got no answer within {:?}", self.timeout),
                ))
            })
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

/// Fails with `TooLarge` for a key DynamoDB refuses in any request, so that
/// reads and deletes say so alike, before sending, on DynamoDB and on
/// emulators that do not check.
fn check_key(key: &str) -> Result<()> {
    if key.len() > MAX_KEY_BYTES {
        return Err(Error::too_large(
            NAME,
            key,
            format!(
                "a key of {} bytes is over DynamoDB's partition key limit of \
                 {MAX_KEY_BYTES} bytes",
                key.len()
            ),
        ));
    }
    Ok(())
}

/// The size DynamoDB counts for an item: attribute names and values.
fn item_size(key: &str, value: &[u8]) -> usize {
    KEY.len() + key.len() + VALUE.len() + value.len()
}

fn item(key: &str, value: &[u8]) -> Item {
    HashMap::from([
        (KEY.to_owned(), AttributeValue::S(key.to_owned())),
        (VALUE.to_owned(), value_attribute(value)),
    ])
}

/// A value as the Python TetherDB stores it: S where it is valid UTF-8, B
/// otherwise.
fn value_attribute(value: &[u8]) -> AttributeValue {
    match std::str::from_utf8(value) {
        Ok(text) => AttributeValue::S(text.to_owned()),
        Err(_) => AttributeValue::B(Blob::new(value)),
    }
}

/// The value of an item, from S or B.
fn value_of(key: &str, mut item: Item) -> Result<Vec<u8>> {
    match item.remove(VALUE) {
        Some(AttributeValue::S(text)) => Ok(text.into_bytes()),
        Some(AttributeValue::B(bytes)) => Ok(bytes.into_inner()),
        Some(other) => Err(Error::io(
            NAME,
            key,
            format!("the item's \"value\" attribute is {other:?}, neither a string nor binary"),
        )),
        None => Err(Error::io(NAME, key, "the item has no \"value\" attribute")),
    }
}

fn is_missing_table(error: &SdkError<DescribeTableError>) -> bool {
    error
        .as_service_error()
        .is_some_and(|e| e.is_resource_not_found_exception())
}

/// The error of a failed request: throttling, server errors, timeouts and
/// an unreachable endpoint are `Unavailable` (the call may be retried); an
/// item over DynamoDB's limits is `TooLarge`; anything else is `Io`.
fn failure<E>(table: &str, key: &str, error: SdkError<E>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match &error {
        SdkError::ServiceError(service) => {
            let code = error.code().unwrap_or_default();
            let message = error.message().unwrap_or_default();
            let cause = match code {
                // An answer without an error type, such as a load
                // balancer's 503: its status says what happened.
                "" => http_cause(
                    service.raw().status().as_u16(),
                    service.raw().body().bytes().unwrap_or_default(),
                ),
                code if message.is_empty() => code.to_owned(),
                code => format!("{code}: {message}"),
            };
            if TRANSIENT_CODES.contains(&code) || service.raw().status().is_server_error() {
                Error::unavailable(NAME, key, cause)
            } else if code == "ResourceNotFoundException" {
                Error::io(
                    NAME,
                    key,
                    format!("table {table:?} does not exist (deleted since the handle opened?): {message}"),
                )
            } else if code == "ItemCollectionSizeLimitExceededException"
                || (code == "ValidationException" && message.contains("size"))
            {
                Error::too_large(NAME, key, cause)
            } else {
                Error::io(NAME, key, cause)
            }
        }
        // A request that could not be built is a bug, or a configuration
        // the SDK refuses; not worth retrying.
        SdkError::ConstructionFailure(_) => Error::io(NAME, key, causes(&error)),
        // Timeouts, connections refused or dropped, an answer that could
        // not be read, credentials not (yet) available.
        _ => Error::unavailable(NAME, key, causes(&error)),
    }
}

/// "HTTP 503 Service Unavailable", and the start of the body where there is
/// one: the cause of an error answer that names no error type.
fn http_cause(status: u16, body: &[u8]) -> String {
    let reason = match status {
        400 => " Bad Request",
        403 => " Forbidden",
        404 => " Not Found",
        413 => " Payload Too Large",
        429 => " Too Many Requests",
        500 => " Internal Server Error",
        502 => " Bad Gateway",
        503 => " Service Unavailable",
        504 => " Gateway Timeout",
        _ => "",
    };
    let body = String::from_utf8_lossy(body);
    let body: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    match body.char_indices().nth(200) {
        None if body.is_empty() => format!("HTTP {status}{reason}"),
        None => format!("HTTP {status}{reason}: {body}"),
        Some((end, _)) => format!("HTTP {status}{reason}: {}...", &body[..end]),
    }
}

/// `error`, its cause prefixed with the table it is about.
fn about_table(error: Error, table: &str) -> Error {
    let prefixed = |cause: String| format!("table {table:?}: {cause}");
    match error {
        Error::Unavailable {
            backend,
            key,
            cause,
        } => Error::Unavailable {
            backend,
            key,
            cause: prefixed(cause),
        },
        Error::Io {
            backend,
            key,
            cause,
        } => Error::Io {
            backend,
            key,
            cause: prefixed(cause),
        },
        other => other,
    }
}

/// An error and its sources, `a: b: c`, each said once: the SDK's errors
/// often repeat their source's message.
fn causes(error: &dyn std::error::Error) -> String {
    let mut said = error.to_string();
    let mut source = error.source();
    while let Some(error) = source {
        let message = error.to_string();
        if !said.contains(&message) {
            said += ": ";
            said += &message;
        }
        source = error.source();
    }
    said
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_strings_where_they_can_be() {
        assert_eq!(value_attribute(b"text"), AttributeValue::S("text".into()));
        assert_eq!(
            value_attribute(b"\xff\x00"),
            AttributeValue::B(Blob::new(b"\xff\x00".to_vec()))
        );
        for value in [&b"text"[..], b"\xff\x00", b""] {
            assert_eq!(value_of("k", item("k", value)).unwrap(), value);
        }
        let numeric = HashMap::from([(VALUE.to_owned(), AttributeValue::N("1".into()))]);
        assert_eq!(
            value_of("k", numeric).unwrap_err().status(),
            crate::Status::Io
        );
    }

    #[test]
    fn an_error_answer_without_a_type_is_told_by_its_status() {
        assert_eq!(http_cause(503, b""), "HTTP 503 Service Unavailable");
        assert_eq!(
            http_cause(502, b"<html>\n  <h1>Bad   gateway</h1>\n</html>\n"),
            "HTTP 502 Bad Gateway: <html> <h1>Bad gateway</h1> </html>"
        );
        let long = http_cause(599, "\u{e9}".repeat(300).as_bytes());
        assert_eq!(long, format!("HTTP 599: {}...", "\u{e9}".repeat(200)));
    }

    #[test]
    fn item_sizes_count_attribute_names() {
        assert_eq!(item_size("b:k", b"12345"), 3 + 3 + 5 + 5);
    }
}
