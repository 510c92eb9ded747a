//! The `dynamodb` section.

use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};

/// The `dynamodb` section: which table, where, and how to talk to it.
/// Credentials are not here: they come from the standard AWS chain
/// (environment, profile, instance role), never from this file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DynamoDbConfig {
    /// The table; its partition key is `key` (S), as the Python TetherDB
    /// makes it. Required.
    pub table_name: String,
    /// The AWS region; the standard chain's (`AWS_REGION`, the profile)
    /// when absent.
    pub region: Option<String>,
    /// Another endpoint than AWS's, e.g. a local emulator:
    /// `http://127.0.0.1:8000`.
    pub endpoint_url: Option<String>,
    /// Whether opening creates a missing table (on-demand billing) and
    /// waits until it is active; when false, a missing table fails the
    /// open with `TETHER_CONFIG`.
    pub create_table: bool,
    /// Whether reads and listings see every write acknowledged before them
    /// (strongly consistent reads, twice the read capacity), rather than
    /// eventually consistent ones.
    pub consistent_read: bool,
    /// Seconds a request, retries included, may take before it fails with
    /// `TETHER_UNAVAILABLE`; also how long opening waits for a new table.
    pub timeout: f64,
}

impl Default for DynamoDbConfig {
    fn default() -> Self {
        DynamoDbConfig {
            table_name: String::new(),
            region: None,
            endpoint_url: None,
            create_table: false,
            consistent_read: true,
            timeout: 5.0,
        }
    }
}

impl DynamoDbConfig {
    /// The timeout as a duration; valid after [`Config::validate`].
    pub fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.timeout)
    }

    pub(super) fn validate(&self) -> Result<()> {
        // DynamoDB's own rule for table names.
        let name = &self.table_name;
        if name.is_empty() {
            return Err(Error::Config("dynamodb.table_name is required".into()));
        }
        if !(3..=255).contains(&name.len())
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            return Err(Error::Config(format!(
                "dynamodb.table_name {name:?} is not a DynamoDB table name \
                 (3 to 255 of a-z, A-Z, 0-9, '_', '-', '.')"
            )));
        }
        if !(self.timeout.is_finite() && self.timeout > 0.0 && self.timeout <= 86_400.0) {
            return Err(Error::Config(format!(
                "dynamodb.timeout must be above 0 and at most 86400 seconds, not {}",
                self.timeout
            )));
        }
        if self.region.as_deref().is_some_and(|r| r.trim().is_empty()) {
            return Err(Error::Config("dynamodb.region is empty".into()));
        }
        if let Some(url) = &self.endpoint_url {
            let shown = crate::error::Quoted(&crate::error::redacted_url(url)).to_string();
            if crate::error::url_userinfo(url).is_some() {
                // It would be repeated in messages, and credentials come
                // from the AWS chain only.
                return Err(Error::Config(format!(
                    "dynamodb.endpoint_url {shown} holds a user name or password: remove it \
                     (credentials come from the standard AWS chain: environment, profile, \
                     instance role)"
                )));
            }
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(Error::Config(format!(
                    "dynamodb.endpoint_url {shown} must start with http:// or https://"
                )));
            }
        }
        Ok(())
    }
}
