//! The JSON configuration (docs/configuration.md), as a string or a file.
//!
//! Every section rejects unknown keys so that a typo is reported, not ignored.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::{redacted_url, url_userinfo, Error, Quoted, Result};
use crate::log::Level;

/// The whole configuration. A backend exists in a handle only when its
/// section is present; with none present, `local` is opened in
/// `./tetherdb_data`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// What the library writes to stderr; `warn` when absent.
    #[serde(default)]
    pub logging: Level,
    /// The backend used when a call names none. Optional when one backend
    /// is configured; when several are and it is absent, `local`.
    pub default_backend: Option<String>,
    #[serde(default)]
    pub queue_batch: QueueConfig,
    pub local: Option<LocalConfig>,
    pub dynamodb: Option<DynamoDbConfig>,
    pub etcd: Option<EtcdConfig>,
}

/// The largest `queue_batch.capacity`: a queue that long in memory is a
/// mistake (a typo, or a count where bytes were meant) more often than a
/// plan, and running out of memory aborts the process.
const MAX_QUEUE_CAPACITY: usize = 10_000_000;

/// Settings of the batch worker that applies queued writes.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// A batch is sent once it holds this many writes.
    pub size: usize,
    /// ...or once its oldest write has waited this many seconds.
    pub interval: f64,
    /// At most this many writes wait in the queue; then writers wait.
    pub capacity: usize,
    /// Whether opening a handle starts the worker.
    pub autostart: bool,
    /// Whether queued writes go through the on-disk outbox, so that a
    /// crash, an outage or a close does not lose them.
    pub durable: bool,
    /// Where the outbox lives; by default next to the local data
    /// directory (`tetherdb_data.outbox`). See [`Config::outbox_path`].
    pub outbox_path: Option<PathBuf>,
    /// The most the outbox may hold, in bytes of keys and values; past it
    /// a queued write fails with TETHER_UNAVAILABLE.
    pub outbox_max_bytes: u64,
    /// Whether a queued write returns only once the outbox is on disk
    /// (one fsync serves every writer waiting at that moment).
    pub sync: bool,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            size: 10,
            interval: 2.0,
            capacity: 10_000,
            autostart: true,
            durable: true,
            outbox_path: None,
            outbox_max_bytes: 1 << 30,
            sync: false,
        }
    }
}

impl QueueConfig {
    /// The interval as a duration; valid after [`Config::validate`].
    pub fn interval(&self) -> Duration {
        Duration::from_secs_f64(self.interval)
    }
}

/// The embedded `local` backend.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocalConfig {
    /// The directory sled keeps its files in.
    pub filepath: PathBuf,
    /// Bytes of sled's page cache (`sled::Config::cache_capacity`): what
    /// bounds the `local` store's memory, beside the queue. sled's own
    /// default is 1 GiB.
    #[serde(deserialize_with = "cache_capacity")]
    pub cache_capacity: u64,
}

/// A `local.cache_capacity` that is no byte count (negative, fractional,
/// text) is an error that names the key, as a value out of range is.
fn cache_capacity<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<u64, D::Error> {
    use serde::de::Error as _;
    u64::deserialize(d).map_err(|e| {
        D::Error::custom(format!(
            "local.cache_capacity must be a number of bytes: {e}"
        ))
    })
}

impl LocalConfig {
    /// The default `cache_capacity`: 32 MiB.
    const DEFAULT_CACHE_CAPACITY: u64 = 32 * 1024 * 1024;
    /// The smallest `cache_capacity` accepted: 1 MiB.
    const MIN_CACHE_CAPACITY: u64 = 1024 * 1024;
    /// The largest `cache_capacity` accepted: 1 TiB.
    const MAX_CACHE_CAPACITY: u64 = 1 << 40;

    fn validate(&self) -> Result<()> {
        if self.filepath.as_os_str().is_empty() {
            return Err(Error::Config("local.filepath is empty".into()));
        }
        let range = Self::MIN_CACHE_CAPACITY..=Self::MAX_CACHE_CAPACITY;
        if !range.contains(&self.cache_capacity) {
            return Err(Error::Config(format!(
                "local.cache_capacity must be between {} (1 MiB) and {} (1 TiB) bytes, not {}",
                range.start(),
                range.end(),
                self.cache_capacity
            )));
        }
        Ok(())
    }
}

impl Default for LocalConfig {
    fn default() -> Self {
        LocalConfig {
            filepath: PathBuf::from("tetherdb_data"),
            cache_capacity: Self::DEFAULT_CACHE_CAPACITY,
        }
    }
}

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

    fn validate(&self) -> Result<()> {
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

/// The `etcd` section: where the cluster is, and how to talk to it.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EtcdConfig {
    /// One server, used when `endpoints` is empty.
    pub host: String,
    pub port: u16,
    /// The cluster's servers as `host:port` or URLs; replaces `host` and `port`.
    pub endpoints: Vec<String>,
    /// TLS, verifying the servers against `ca_cert_file` (else the system's
    /// roots) and, with `cert_file` and `key_file`, presenting a client
    /// certificate.
    pub use_ssl: bool,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub ca_cert_file: Option<PathBuf>,
    /// Seconds a connection or request may take before it fails with
    /// `TETHER_UNAVAILABLE`.
    pub timeout: f64,
    /// The most operations in one transaction: etcd's `--max-txn-ops`.
    pub max_txn_ops: usize,
    /// The largest request etcd accepts: its `--max-request-bytes`.
    pub max_request_bytes: usize,
}

impl Default for EtcdConfig {
    fn default() -> Self {
        EtcdConfig {
            host: "localhost".into(),
            port: 2379,
            endpoints: Vec::new(),
            use_ssl: false,
            cert_file: None,
            key_file: None,
            ca_cert_file: None,
            timeout: 5.0,
            max_txn_ops: 128,
            max_request_bytes: 1536 * 1024,
        }
    }
}

impl EtcdConfig {
    /// The servers to connect to, each with its scheme.
    pub fn urls(&self) -> Vec<String> {
        let scheme = if self.use_ssl { "https" } else { "http" };
        let with_scheme = |endpoint: &str| match endpoint.contains("://") {
            true => endpoint.to_owned(),
            false => format!("{scheme}://{endpoint}"),
        };
        match self.endpoints.is_empty() {
            true => vec![with_scheme(&format!("{}:{}", self.host, self.port))],
            false => self.endpoints.iter().map(|e| with_scheme(e)).collect(),
        }
    }

    /// The timeout as a duration; valid after [`Config::validate`].
    pub fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.timeout)
    }

    fn validate(&self) -> Result<()> {
        if !(self.timeout.is_finite() && self.timeout > 0.0 && self.timeout <= 86_400.0) {
            return Err(Error::Config(format!(
                "etcd.timeout must be above 0 and at most 86400 seconds, not {}",
                self.timeout
            )));
        }
        if self.max_txn_ops == 0 {
            return Err(Error::Config("etcd.max_txn_ops must be at least 1".into()));
        }
        if self.max_request_bytes < 4096 {
            return Err(Error::Config(
                "etcd.max_request_bytes must be at least 4096".into(),
            ));
        }
        if self.endpoints.iter().any(|e| e.trim().is_empty()) {
            return Err(Error::Config("etcd.endpoints holds an empty entry".into()));
        }
        if self.cert_file.is_some() != self.key_file.is_some() {
            return Err(Error::Config(
                "etcd.cert_file and etcd.key_file go together: give both or neither".into(),
            ));
        }
        // Without use_ssl the certificates would be ignored and the
        // connection made in plaintext.
        let certificates = [
            ("ca_cert_file", &self.ca_cert_file),
            ("cert_file", &self.cert_file),
            ("key_file", &self.key_file),
        ];
        if let Some((setting, Some(file))) = certificates.iter().find(|(_, f)| f.is_some()) {
            if !self.use_ssl {
                return Err(Error::Config(format!(
                    "etcd.{setting} {} is set, but etcd.use_ssl is false: set \"use_ssl\": true \
                     to connect with TLS, or remove the certificate settings",
                    file.display()
                )));
            }
        }
        let urls = self.urls();
        // It would be sent nowhere, only repeated in messages.
        if let Some(url) = urls.iter().find(|u| url_userinfo(u).is_some()) {
            return Err(Error::Config(format!(
                "etcd endpoint {} holds a user name or password: remove it \
                 (TetherDB takes no password from its configuration)",
                Quoted(&redacted_url(url))
            )));
        }
        if self.use_ssl {
            if let Some(plain) = urls.iter().find(|u| u.starts_with("http://")) {
                return Err(Error::Config(format!(
                    "etcd endpoint {} is plaintext (http://), but etcd.use_ssl is true: \
                     write it as https:// or host:port",
                    Quoted(plain)
                )));
            }
        }
        Ok(())
    }
}

impl Config {
    /// Parses and validates a configuration; `None`, `""` and `"{}"` give
    /// the embedded default.
    pub fn from_json(json: Option<&str>) -> Result<Config> {
        let json = json.map(str::trim).unwrap_or("");
        if json.is_empty() {
            return Ok(Config::default());
        }
        let config: Config =
            serde_json::from_str(json).map_err(|e| Error::Config(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Reads, parses and validates a configuration file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Config> {
        crate::config_file::load(path.as_ref())
    }

    /// The names of the configured backends, in a fixed order.
    pub fn backend_names(&self) -> Vec<&'static str> {
        let mut names = Vec::new();
        if self.local.is_some() || self.is_embedded_default() {
            names.push("local");
        }
        if self.etcd.is_some() {
            names.push("etcd");
        }
        if self.dynamodb.is_some() {
            names.push("dynamodb");
        }
        names
    }

    /// The backend a call without a backend name goes to.
    pub fn default_backend_name(&self) -> Result<&str> {
        let names = self.backend_names();
        match &self.default_backend {
            Some(name) if names.contains(&name.as_str()) => Ok(name),
            Some(name) => Err(Error::Config(format!(
                "default_backend {name:?} has no section of its own; configured: {}",
                names.join(", ")
            ))),
            None if names.len() == 1 || names.contains(&"local") => Ok(names[0]),
            None => Err(Error::Config(format!(
                "default_backend is required when several backends are configured ({})",
                names.join(", ")
            ))),
        }
    }

    /// The `local` section, or the embedded default when no backend is configured.
    pub fn local_config(&self) -> Option<LocalConfig> {
        match (&self.local, self.is_embedded_default()) {
            (Some(local), _) => Some(local.clone()),
            (None, true) => Some(LocalConfig::default()),
            (None, false) => None,
        }
    }

    /// Where the durable outbox lives, when `queue_batch.durable` is on
    /// and the configuration says: `queue_batch.outbox_path`, or, with a
    /// `local` store, its directory's path with `.outbox` added (the outbox
    /// belongs to the store, which one process holds). `None` otherwise: a
    /// remote-only handle's outbox is named after its destinations
    /// (`outbox::default_path`).
    pub fn outbox_path(&self) -> Option<PathBuf> {
        let queue = &self.queue_batch;
        if let Some(path) = &queue.outbox_path {
            return Some(path.clone());
        }
        let local = self.local_config()?;
        let mut path = local.filepath.into_os_string();
        path.push(".outbox");
        Some(PathBuf::from(path))
    }

    fn is_embedded_default(&self) -> bool {
        self.local.is_none() && self.etcd.is_none() && self.dynamodb.is_none()
    }

    fn validate(&self) -> Result<()> {
        let q = &self.queue_batch;
        if q.size == 0 {
            return Err(Error::Config("queue_batch.size must be at least 1".into()));
        }
        if !(1..=MAX_QUEUE_CAPACITY).contains(&q.capacity) {
            return Err(Error::Config(format!(
                "queue_batch.capacity must be between 1 and {MAX_QUEUE_CAPACITY}, not {}",
                q.capacity
            )));
        }
        if !(q.interval.is_finite() && q.interval >= 0.0 && q.interval <= 86_400.0) {
            return Err(Error::Config(format!(
                "queue_batch.interval must be between 0 and 86400 seconds, not {}",
                q.interval
            )));
        }
        if q.outbox_path.is_some() && !q.durable {
            return Err(Error::Config(
                "queue_batch.outbox_path is set, but queue_batch.durable is false".into(),
            ));
        }
        if q.outbox_path
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            return Err(Error::Config("queue_batch.outbox_path is empty".into()));
        }
        if q.sync && !q.durable {
            return Err(Error::Config(
                "queue_batch.sync needs queue_batch.durable (the outbox is what is synced)".into(),
            ));
        }
        if q.outbox_max_bytes < 1 << 20 {
            return Err(Error::Config(format!(
                "queue_batch.outbox_max_bytes must be at least 1048576 (1 MiB), not {}",
                q.outbox_max_bytes
            )));
        }
        if let Some(local) = &self.local {
            local.validate()?;
        }
        if let Some(etcd) = &self.etcd {
            etcd.validate()?;
        }
        if let Some(dynamodb) = &self.dynamodb {
            dynamodb.validate()?;
        }
        self.default_backend_name().map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_python_tetherdb_config_loads_unchanged() {
        // The configuration file of the Python TetherDB's README, as it is.
        let config = Config::from_json(Some(
            r#"{
              "logging": "debug",
              "queue_batch": {
                "size": 10,
                "interval": 2.0
              },
              "local": {
                "filepath": "localdb"
              },
              "dynamodb": {
                "table_name": "MyDynamoDBTable"
              },
              "etcd": {
                "host": "localhost",
                "port": 2379,
                "use_ssl": true,
                "cert_file": "cert.pem",
                "key_file": "key.pem",
                "ca_cert_file": "ca.pem",
                "timeout": 5
              }
            }"#,
        ))
        .unwrap();
        assert_eq!(config.logging, Level::Debug);
        assert_eq!(config.queue_batch.size, 10);
        assert_eq!(config.queue_batch.interval(), Duration::from_secs(2));
        assert_eq!(
            config.local_config().unwrap().filepath,
            PathBuf::from("localdb")
        );
        assert_eq!(config.backend_names(), ["local", "etcd", "dynamodb"]);
        assert_eq!(config.default_backend_name().unwrap(), "local");
        let dynamodb = config.dynamodb.unwrap();
        assert_eq!(dynamodb.table_name, "MyDynamoDBTable");
        assert!(!dynamodb.create_table && dynamodb.consistent_read);
        assert_eq!(dynamodb.timeout(), Duration::from_secs(5));
        // Python's level names, in any case.
        for (name, level) in [
            ("INFO", Level::Info),
            ("WARNING", Level::Warn),
            ("Critical", Level::Error),
        ] {
            let json = format!(r#"{{"logging": "{name}"}}"#);
            assert_eq!(Config::from_json(Some(&json)).unwrap().logging, level);
        }
    }

    #[test]
    fn empty_configurations_open_the_embedded_default() {
        for json in [None, Some(""), Some("{}"), Some("  {} \n")] {
            let config = Config::from_json(json).unwrap();
            assert_eq!(config.backend_names(), ["local"]);
            assert_eq!(
                config.local_config().unwrap().filepath,
                PathBuf::from("tetherdb_data")
            );
            assert!(config.queue_batch.autostart);
        }
    }

    #[test]
    fn unknown_keys_are_named() {
        for (json, key) in [
            (r#"{"loging": "info"}"#, "loging"),
            (r#"{"queue_batch": {"sise": 3}}"#, "sise"),
            (r#"{"local": {"path": "x"}}"#, "path"),
            (r#"{"etcd": {"hosts": "x"}}"#, "hosts"),
            (r#"{"dynamodb": {"tabel_name": "T"}}"#, "tabel_name"),
        ] {
            let err = Config::from_json(Some(json)).unwrap_err();
            assert!(matches!(err, Error::Config(_)), "{err}");
            assert!(err.to_string().contains(key), "{err} does not name {key}");
        }
    }

    #[test]
    fn invalid_values_are_config_errors() {
        for json in [
            "{",
            "[]",
            r#"{"logging": "loud"}"#,
            r#"{"queue_batch": {"size": 0}}"#,
            r#"{"queue_batch": {"capacity": 0}}"#,
            r#"{"queue_batch": {"capacity": 10000001}}"#,
            r#"{"queue_batch": {"interval": -1}}"#,
            r#"{"default_backend": "etcd"}"#,
            r#"{"etcd": {}, "dynamodb": {}}"#,
            r#"{"dynamodb": {}}"#,
            r#"{"dynamodb": {"table_name": "a b"}}"#,
            r#"{"dynamodb": {"table_name": "T1", "timeout": 0}}"#,
            r#"{"dynamodb": {"table_name": "T1", "region": ""}}"#,
            r#"{"dynamodb": {"table_name": "T1", "endpoint_url": "127.0.0.1:8000"}}"#,
        ] {
            let err = Config::from_json(Some(json)).unwrap_err();
            assert!(matches!(err, Error::Config(_)), "{json}: {err}");
        }
    }
}
