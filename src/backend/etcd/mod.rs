//! `etcd`: a cluster of etcd servers, through etcd-client (gRPC), with
//! optional TLS and client certificates. The section is always parsed; the
//! client is built with the `etcd` feature.

#[cfg(feature = "etcd")]
mod backend;
mod config;
#[cfg(feature = "etcd")]
mod errors;
#[cfg(feature = "etcd")]
mod expiry;
#[cfg(feature = "etcd")]
mod ranges;
#[cfg(feature = "etcd")]
mod tls;

use std::sync::Arc;

pub use config::EtcdConfig;

use super::{Backend, Section, Shared};
use crate::error::Result;

const NAME: &str = "etcd";

impl Section for EtcdConfig {
    fn name(&self) -> &'static str {
        NAME
    }

    fn is_built(&self) -> bool {
        cfg!(feature = "etcd")
    }

    fn validate(&self) -> Result<()> {
        EtcdConfig::validate(self)
    }

    #[cfg(feature = "etcd")]
    fn open(&self, shared: &mut Shared) -> Result<Option<Arc<dyn Backend>>> {
        Ok(Some(Arc::new(backend::Etcd::open(
            self,
            shared.runtime()?,
        )?)))
    }

    #[cfg(not(feature = "etcd"))]
    fn open(&self, _: &mut Shared) -> Result<Option<Arc<dyn Backend>>> {
        Ok(None)
    }
}
