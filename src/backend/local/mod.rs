//! `local`: the embedded store, on sled, in a directory of its own. The
//! embedded default: a configuration that names no engine opens it.

mod backend;
mod config;
mod entry;
mod store;
mod sweep;

use std::sync::Arc;

pub use config::LocalConfig;
pub(crate) use store::AwaitUnlock;

use super::{Backend, Section, Shared};
use crate::error::Result;

const NAME: &str = "local";

impl Section for LocalConfig {
    fn name(&self) -> &'static str {
        NAME
    }

    fn validate(&self) -> Result<()> {
        LocalConfig::validate(self)
    }

    fn open(&self, _: &mut Shared) -> Result<Option<Arc<dyn Backend>>> {
        Ok(Some(Arc::new(backend::Local::open(self)?)))
    }
}
