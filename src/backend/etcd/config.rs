//! The `etcd` section.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::error::{redacted_url, url_userinfo, Quoted};
use crate::error::{Error, Result};

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

    pub(super) fn validate(&self) -> Result<()> {
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
