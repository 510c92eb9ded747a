//! TLS to the cluster: the CA to verify servers against (else the
//! system's roots) and a client certificate, read from the files the
//! section names.

use std::path::Path;

use etcd_client::{Certificate, Identity, TlsOptions};

use super::EtcdConfig;
use crate::config_file;
use crate::error::{Error, Result};

/// The TLS settings of the section; unreadable files are configuration
/// errors that name the file.
pub(super) fn tls_options(config: &EtcdConfig) -> Result<TlsOptions> {
    let mut tls = TlsOptions::new();
    match &config.ca_cert_file {
        Some(ca) => tls = tls.ca_certificate(Certificate::from_pem(read_pem(ca, "ca_cert_file")?)),
        None => tls = tls.with_native_roots(),
    }
    if let (Some(cert), Some(key)) = (&config.cert_file, &config.key_file) {
        tls = tls.identity(Identity::from_pem(
            read_pem(cert, "cert_file")?,
            read_pem(key, "key_file")?,
        ));
    }
    Ok(tls)
}

/// The largest certificate file read; CA bundles run to a few hundred KiB.
const MAX_PEM_BYTES: u64 = 16 << 20;

fn read_pem(path: &Path, setting: &str) -> Result<Vec<u8>> {
    let pem = config_file::read_regular(path, MAX_PEM_BYTES, "16 MiB")
        .map_err(|e| Error::Config(format!("etcd.{setting} {}: {e}", path.display())))?;
    if !pem.windows(11).any(|w| w == b"-----BEGIN ") {
        return Err(Error::Config(format!(
            "etcd.{setting} {}: not a PEM file",
            path.display()
        )));
    }
    Ok(pem)
}
