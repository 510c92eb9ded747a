//! `dynamodb`: one DynamoDB table, through the AWS SDK, in the Python
//! TetherDB's item layout. The section is always parsed; the client is
//! built with the `dynamodb` feature.

#[cfg(feature = "dynamodb")]
mod backend;
mod config;
#[cfg(feature = "dynamodb")]
mod errors;
#[cfg(feature = "dynamodb")]
mod items;
#[cfg(feature = "dynamodb")]
mod table;

use std::sync::Arc;

pub use config::DynamoDbConfig;

use super::{Backend, Section, Shared};
use crate::error::Result;

const NAME: &str = "dynamodb";

impl Section for DynamoDbConfig {
    fn name(&self) -> &'static str {
        NAME
    }

    fn is_built(&self) -> bool {
        cfg!(feature = "dynamodb")
    }

    fn validate(&self) -> Result<()> {
        DynamoDbConfig::validate(self)
    }

    #[cfg(feature = "dynamodb")]
    fn open(&self, shared: &mut Shared) -> Result<Option<Arc<dyn Backend>>> {
        Ok(Some(Arc::new(backend::DynamoDb::open(
            self,
            shared.runtime()?,
        )?)))
    }

    #[cfg(not(feature = "dynamodb"))]
    fn open(&self, _: &mut Shared) -> Result<Option<Arc<dyn Backend>>> {
        Ok(None)
    }
}
