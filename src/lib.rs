//! TetherDB: one small key-value API over an embedded store (`local`, on
//! sled) and remote ones, for Rust here and for C through [`ffi`].
//!
//! ```
//! # let dir = tempfile::tempdir().unwrap();
//! # let json = format!(r#"{{"local": {{"filepath": {:?}}}}}"#, dir.path().join("db"));
//! use tetherdb::{Db, Error};
//!
//! let db = Db::open_json(Some(&json))?;
//! db.write(None, Some("logs"), "first", b"hello")?;
//! assert_eq!(db.read(None, Some("logs"), "first")?, b"hello");
//! assert!(matches!(db.update(None, None, "absent", b"x"), Err(Error::NotFound { .. })));
//! db.write_queued(None, Some("logs"), "second", b"later")?;
//! db.flush()?;
//! let page = db.list(None, Some("logs"), None, None, 10)?;
//! assert_eq!(page.entries.len(), 2);
//! db.close()?;
//! # Ok::<(), tetherdb::Error>(())
//! ```

// The C ABI is `ffi`; the Rust API is the list below. Every other module
// is private: what it holds may change without notice.
mod backend;
mod config;
mod config_file;
mod copy;
mod counter;
mod db;
mod error;
pub mod ffi;
mod files;
mod fork;
mod keys;
mod log;
mod queue;

pub use backend::dynamodb::DynamoDbConfig;
pub use backend::etcd::EtcdConfig;
pub use backend::local::LocalConfig;
pub use config::{engines_not_built, Config, QueueConfig};
pub use copy::{CopyOptions, CopyReport};
pub use db::{Db, Entry, KeyPage, Page, Peeked, WriteOptions};
pub use error::{Error, Result, Status};
pub use log::Level;
