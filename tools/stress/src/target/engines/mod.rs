//! The engines under the library's backends, used directly for
//! `--engine-direct`, the benchmark report's baseline: each opened and
//! called as the library calls it (sled; etcd-client and aws-sdk-dynamodb
//! when their feature is built), on the same keys and values.

use tetherdb::Status;

use super::Failure;

#[cfg(feature = "dynamodb")]
mod dynamodb;
#[cfg(feature = "etcd")]
mod etcd;
mod sled;

#[cfg(feature = "dynamodb")]
pub use dynamodb::DynamoDb;
#[cfg(feature = "etcd")]
pub use etcd::Etcd;
pub use sled::Sled;

fn failure(status: Status, message: impl std::fmt::Display) -> Failure {
    Failure {
        status,
        message: message.to_string(),
    }
}
