//! Layers: backends over other backends, configured in the `backends`
//! section (docs/layers.md). `tiered` reads the first hit and writes to
//! every layer; `read_only` and `write_only` refuse one half of the API;
//! `random` sends each call to one member. `Renamed` gives an engine the
//! name it is configured under.

mod only;
mod random;
mod renamed;
mod tiered;

use std::sync::Arc;

use serde::Deserialize;

pub(crate) use only::{ReadOnly, WriteOnly};
pub(crate) use random::Random;
pub(crate) use renamed::Renamed;
pub(crate) use tiered::Tiered as TieredBackend;

use super::Backend;
use crate::config::Named;
use crate::error::{Error, Result};

/// A `tiered` layer's section: `layers`, read in order, the last holding
/// every key.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tiered {
    pub layers: Vec<String>,
}

/// A `read_only` or `write_only` layer's section: the backend it is over.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Of {
    pub of: String,
}

/// A `random` layer's section: the members a call may go to.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfSeveral {
    pub of: Vec<String>,
}

/// Opens the layer `name` over `members`, the backends its section names,
/// in their order.
pub(crate) fn open(
    name: &str,
    layer: &Named,
    members: Vec<Arc<dyn Backend>>,
) -> Result<Arc<dyn Backend>> {
    let name = name.to_owned();
    let mut members = members.into_iter();
    Ok(match layer {
        Named::Tiered(_) => Arc::new(TieredBackend::new(name, members.collect())),
        Named::ReadOnly(_) => Arc::new(ReadOnly::new(name, members.next().ok_or_else(none)?)),
        Named::WriteOnly(_) => Arc::new(WriteOnly::new(name, members.next().ok_or_else(none)?)),
        Named::Random(_) => Arc::new(Random::new(name, members.collect())),
        engine => {
            return Err(Error::Internal(format!(
                "{name}: {} is an engine, not a layer",
                engine.engine()
            )))
        }
    })
}

fn none() -> Error {
    Error::Internal("a layer over no backend".into())
}

/// The first error of several calls, after all of them ran: a layer over
/// several backends tries each, and reports the first failure.
fn first_error(results: impl IntoIterator<Item = Result<()>>) -> Result<()> {
    let mut first = Ok(());
    for result in results {
        if let (Ok(()), Err(e)) = (&first, result) {
            first = Err(e);
        }
    }
    first
}
