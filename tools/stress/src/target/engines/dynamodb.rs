//! aws-sdk-dynamodb on a tokio runtime of its own, each request awaited
//! on the calling thread as the library does: `PutItem`, `GetItem`, a
//! conditional `UpdateItem`; queued writes become one `BatchWriteItem`
//! of up to 25 puts per thread (duplicate keys collapsed, unprocessed
//! items resent), items in the library's layout (`key` S, `value` S or B).

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, PutRequest,
    ScalarAttributeType, TableStatus, WriteRequest,
};
use aws_sdk_dynamodb::Client;
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
use tetherdb::{DynamoDbConfig, Status};

use super::failure;
use crate::target::{Failure, KeyBuf, Outcome, Session, Target};

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
        let build =
            |e: aws_sdk_dynamodb::error::BuildError| failure(Status::Internal, e.to_string());
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
                        .expression_attribute_values(":prefix", AttributeValue::S(start.clone()))
                        .consistent_read(self.consistent_read)
                        .set_exclusive_start_key(after.take())
                        .send(),
                )
                .map_err(fail)?;
            for item in answer.items() {
                let (Some(AttributeValue::S(key)), Some(value)) = (item.get("key"), value_of(item))
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
