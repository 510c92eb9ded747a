//! The table: checked (and created when asked) as the handle opens, so
//! that a missing table or one with another key is reported by
//! `tether_open`, not by the first write.

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::describe_table::DescribeTableError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    TableDescription, TableStatus, TimeToLiveSpecification,
};

use super::backend::DynamoDb;
use super::errors::failure;
use super::items::{EXPIRES, KEY};
use super::NAME;
use crate::error::{redacted_url, Error, Result};

/// How long opening waits at least for a table being created to become
/// active: DynamoDB takes seconds to tens of seconds, more than a request
/// timeout.
pub(super) const TABLE_CREATION_WAIT: Duration = Duration::from_secs(60);

impl DynamoDb {
    /// Checks that the table exists with the expected key, creating it when
    /// `create` is set, and waits until it is active.
    pub(super) fn check_table(&self, create: bool) -> Result<()> {
        let described = self.run(
            "",
            self.client.describe_table().table_name(&self.table).send(),
        )?;
        let mut created = false;
        let table = match described {
            Ok(answer) => answer.table,
            Err(error) if is_missing_table(&error) && create => {
                created = true;
                self.create_table()?
            }
            Err(error) if is_missing_table(&error) => {
                return Err(Error::Config(format!(
                    "dynamodb: table {table:?} does not exist{where_}. Set \"create_table\": true \
                     in the dynamodb section to have it created, or create it with: aws dynamodb \
                     create-table --table-name {table} --attribute-definitions \
                     AttributeName=key,AttributeType=S --key-schema AttributeName=key,KeyType=HASH \
                     --billing-mode PAY_PER_REQUEST, and have DynamoDB delete expired keys with: \
                     aws dynamodb update-time-to-live --table-name {table} \
                     --time-to-live-specification Enabled=true,AttributeName=expires",
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
        if created {
            self.delete_expired_items()?;
        }
        Ok(())
    }

    /// Turns on the table's TTL on the `expires` attribute, so that
    /// DynamoDB deletes expired keys (up to days after their deadline;
    /// calls treat them as absent from the deadline on all the same).
    fn delete_expired_items(&self) -> Result<()> {
        let specification = TimeToLiveSpecification::builder()
            .enabled(true)
            .attribute_name(EXPIRES)
            .build()
            .map_err(|e| Error::Internal(e.to_string()))?;
        let request = self
            .client
            .update_time_to_live()
            .table_name(&self.table)
            .time_to_live_specification(specification)
            .send();
        match self.run("", request)? {
            Ok(_) => Ok(()),
            // Another program created the table and turned it on first.
            Err(error)
                if error
                    .message()
                    .is_some_and(|m| m.contains("already enabled")) =>
            {
                Ok(())
            }
            Err(error) => Err(failure(&self.table, "", error)),
        }
    }

    /// " in region R at E", for messages about the table.
    pub(super) fn whereabouts(&self) -> String {
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
}

pub(super) fn is_missing_table(error: &SdkError<DescribeTableError>) -> bool {
    error
        .as_service_error()
        .is_some_and(|e| e.is_resource_not_found_exception())
}

/// `error`, its cause prefixed with the table it is about.
pub(super) fn about_table(error: Error, table: &str) -> Error {
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
