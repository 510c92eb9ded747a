//! The JSON configuration (docs/configuration.md), as a string or a file.
//!
//! Every section rejects unknown keys so that a typo is reported, not ignored.

mod named;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::backend::dynamodb::DynamoDbConfig;
use crate::backend::etcd::EtcdConfig;
use crate::backend::layer::{Of, OfSeveral, Tiered};
use crate::backend::local::LocalConfig;
use crate::backend::Section;
use crate::error::{Error, Result};
use crate::log::Level;

/// The registry of engines: one line each, naming the configuration
/// section (and backend) and the engine's section type, in the order a
/// handle opens them and `backend_names` lists them. Each engine's code
/// lives in its own folder under `src/backend/`; the same name is the
/// `engine` of a named backend (the `backends` section).
macro_rules! engines {
    ($($name:ident: $section:ty,)*) => {
        /// The whole configuration. A backend exists in a handle only when
        /// its section is present; with none present, `local` is opened in
        /// `./tetherdb_data`.
        #[derive(Clone, Debug, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct Config {
            /// What the library writes to stderr; `warn` when absent.
            #[serde(default)]
            pub logging: Level,
            /// The backend used when a call names none. Optional when one
            /// backend is configured; when several are and it is absent,
            /// `local`.
            pub default_backend: Option<String>,
            #[serde(default)]
            pub queue_batch: QueueConfig,
            $(pub $name: Option<$section>,)*
            /// Backends under names of their own: engines and layers.
            #[serde(default, deserialize_with = "named::backends")]
            pub backends: BTreeMap<String, Named>,
        }

        impl Config {
            /// The top-level engine sections present, in the registry's
            /// order.
            fn sections_present(&self) -> Vec<&dyn Section> {
                let mut sections: Vec<&dyn Section> = Vec::new();
                $(if let Some(section) = &self.$name {
                    sections.push(section);
                })*
                sections
            }
        }

        /// A named backend's section: an engine's, or a layer's over other
        /// backends, told apart by its `engine` key.
        #[derive(Clone, Debug, Deserialize)]
        #[serde(tag = "engine", rename_all = "snake_case")]
        #[allow(non_camel_case_types)]
        pub enum Named {
            $($name($section),)*
            Tiered(Tiered),
            ReadOnly(Of),
            WriteOnly(Of),
            Random(OfSeveral),
        }

        impl Named {
            /// The engine section, for a named engine; `None` for a layer.
            pub(crate) fn section(&self) -> Option<&dyn Section> {
                match self {
                    $(Named::$name(section) => Some(section),)*
                    _ => None,
                }
            }
        }

        /// The engines this build has no code for (a Cargo feature left
        /// out): a configuration may name them, and calls to them fail
        /// with `TETHER_UNKNOWN_BACKEND`.
        pub fn engines_not_built() -> Vec<&'static str> {
            let mut names = Vec::new();
            $(let section = <$section>::default();
            if !section.is_built() {
                names.push(section.name());
            })*
            names
        }
    };
}

engines! {
    local: LocalConfig,
    etcd: EtcdConfig,
    dynamodb: DynamoDbConfig,
}

impl Named {
    /// The backends a layer is over, as named; none for an engine.
    pub(crate) fn members(&self) -> Vec<&str> {
        match self {
            Named::Tiered(tiered) => tiered.layers.iter().map(String::as_str).collect(),
            Named::ReadOnly(of) | Named::WriteOnly(of) => vec![of.of.as_str()],
            Named::Random(of) => of.of.iter().map(String::as_str).collect(),
            _ => Vec::new(),
        }
    }

    /// Its `engine` key.
    pub(crate) fn engine(&self) -> &'static str {
        match self {
            Named::Tiered(_) => "tiered",
            Named::ReadOnly(_) => "read_only",
            Named::WriteOnly(_) => "write_only",
            Named::Random(_) => "random",
            engine => engine.section().map_or("", |s| s.name()),
        }
    }
}

/// One backend of a handle as the configuration declares it.
pub(crate) enum Declared<'a> {
    Engine(&'a dyn Section),
    Layer(&'a Named),
}

/// The largest `queue_batch.capacity`: a queue that long in memory is a
/// mistake (a typo, or a count where bytes were meant) more often than a
/// plan, and running out of memory aborts the process.
const MAX_QUEUE_CAPACITY: usize = 10_000_000;

/// The most `queue_batch.in_flight`: each batch in flight has a thread of
/// its own while it is applied.
const MAX_IN_FLIGHT: usize = 64;

/// The `queue_batch` section: how the queue applies queued writes.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// A batch is sent once it holds this many writes.
    pub size: usize,
    /// ...or once its oldest write has waited this many seconds.
    pub interval: f64,
    /// At most this many writes wait in the queue; then writers wait.
    pub capacity: usize,
    /// Batches a worker keeps outstanding at once on a remote backend
    /// when the queue holds more than one; `local` applies one at a time.
    pub in_flight: usize,
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
            in_flight: 8,
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

    /// The names of the configured backends: the top-level sections in
    /// the registry's order, then the named backends in the order of
    /// their names.
    pub fn backend_names(&self) -> Vec<&str> {
        self.declared().into_iter().map(|(name, _)| name).collect()
    }

    /// The configured backends by name: the top-level engine sections
    /// (each named after its engine; the embedded default's `local` when
    /// nothing is configured), then the `backends` section's.
    pub(crate) fn declared(&self) -> Vec<(&str, Declared<'_>)> {
        static EMBEDDED_DEFAULT: std::sync::OnceLock<LocalConfig> = std::sync::OnceLock::new();
        if self.is_embedded_default() {
            let local = EMBEDDED_DEFAULT.get_or_init(LocalConfig::default);
            return vec![(local.name(), Declared::Engine(local))];
        }
        let top_level = self.sections_present().into_iter();
        let top_level = top_level.map(|section| (section.name(), Declared::Engine(section)));
        let named = self.backends.iter().map(|(name, named)| {
            let declared = match named.section() {
                Some(section) => Declared::Engine(section),
                None => Declared::Layer(named),
            };
            (name.as_str(), declared)
        });
        top_level.chain(named).collect()
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

    /// The `local` section, or else the first named `local` backend's, or
    /// the embedded default when no backend is configured.
    pub fn local_config(&self) -> Option<LocalConfig> {
        let named = || {
            self.backends.values().find_map(|named| match named {
                Named::local(local) => Some(local),
                _ => None,
            })
        };
        match (
            self.local.as_ref().or_else(named),
            self.is_embedded_default(),
        ) {
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
        self.sections_present().is_empty() && self.backends.is_empty()
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
        if !(1..=MAX_IN_FLIGHT).contains(&q.in_flight) {
            return Err(Error::Config(format!(
                "queue_batch.in_flight must be between 1 and {MAX_IN_FLIGHT}, not {}",
                q.in_flight
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
        for section in self.sections_present() {
            section.validate()?;
        }
        named::validate(self)?;
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
            r#"{"queue_batch": {"in_flight": 0}}"#,
            r#"{"queue_batch": {"in_flight": 65}}"#,
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
