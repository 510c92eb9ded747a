//! Each engine's fixture: its real server, started once for the whole
//! suite on first use and stopped when the trials are done, and a key space
//! of its own for each case, so that cases run side by side.

use tempfile::TempDir;

use crate::engine::{Fixture, Store};

/// A fixture's state, also after a case panicked while holding it.
#[cfg(any(feature = "etcd", feature = "dynamodb"))]
fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// `local`: no server; a new store in a temporary directory per case.
pub struct Local;

pub static LOCAL: Local = Local;

impl Fixture for Local {
    fn space(&self, _case: &str) -> Option<Box<dyn Store>> {
        Some(Box::new(LocalStore(tempfile::tempdir().unwrap())))
    }

    fn stop(&self) {}
}

struct LocalStore(TempDir);

impl Store for LocalStore {
    fn config(&self, queue_batch: &str) -> String {
        crate::common::config(self.0.path(), queue_batch)
    }
}

/// `tiered`: a tiered backend over two `local` stores, `cache` and
/// `primary`, each case in a directory of its own.
pub struct TieredLocal;

pub static TIERED: TieredLocal = TieredLocal;

impl Fixture for TieredLocal {
    fn space(&self, _case: &str) -> Option<Box<dyn Store>> {
        Some(Box::new(TieredStore(tempfile::tempdir().unwrap())))
    }

    fn stop(&self) {}
}

struct TieredStore(TempDir);

impl Store for TieredStore {
    fn config(&self, queue_batch: &str) -> String {
        let dir = self.0.path();
        format!(
            r#"{{"logging": "none", "default_backend": "tiered", "queue_batch": {queue_batch},
                "backends": {{
                  "cache": {{"engine": "local", "filepath": {:?}}},
                  "primary": {{"engine": "local", "filepath": {:?}}},
                  "tiered": {{"engine": "tiered", "layers": ["cache", "primary"]}}
                }}}}"#,
            dir.join("cache").to_str().unwrap(),
            dir.join("primary").to_str().unwrap(),
        )
    }
}

#[cfg(feature = "etcd")]
pub use self::etcd::ETCD;

#[cfg(feature = "etcd")]
mod etcd {
    use std::sync::Mutex;

    use super::*;
    use crate::common::etcd::Etcd;

    /// `etcd`: a pool of servers, each lent to one case at a time and
    /// emptied before it is lent again. etcd has no key spaces of its own,
    /// and cases list whole stores: so as many servers start as etcd cases
    /// run at once (at most the test threads; two in a run here), not one
    /// per case.
    pub struct Pool {
        idle: Mutex<Vec<Etcd>>,
    }

    pub static ETCD: Pool = Pool {
        idle: Mutex::new(Vec::new()),
    };

    impl Fixture for Pool {
        fn space(&self, _case: &str) -> Option<Box<dyn Store>> {
            let idle = lock(&self.idle).pop();
            let etcd = match idle {
                Some(etcd) => {
                    let deleted = etcd.etcdctl(&["del", "", "--from-key"]);
                    assert!(deleted.status.success(), "{deleted:?}");
                    etcd
                }
                None => Etcd::start()?,
            };
            Some(Box::new(Lent(Some(etcd))))
        }

        fn stop(&self) {
            lock(&self.idle).clear();
        }
    }

    /// A server lent to one case, back in the pool when the case is done.
    struct Lent(Option<Etcd>);

    impl Store for Lent {
        fn config(&self, queue_batch: &str) -> String {
            self.0.as_ref().unwrap().config(queue_batch, "")
        }
    }

    impl Drop for Lent {
        fn drop(&mut self) {
            lock(&ETCD.idle).extend(self.0.take());
        }
    }
}

#[cfg(feature = "dynamodb")]
pub use self::dynamodb::DYNAMODB;

#[cfg(feature = "dynamodb")]
mod dynamodb {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::common::moto::{self, Moto};

    /// `dynamodb`: one moto for the suite, a new table per case. It serves
    /// one request at a time (`moto::serial_server`), so that its check of
    /// a condition and its write are one atomic step, as on DynamoDB:
    /// moto_server's threads check and write without a lock, and racing
    /// conditional writes there can all win (races.rs would fail for it,
    /// not for the library). Measured on the suite's dynamodb cases (before
    /// races.rs): 8.8 s, where moto_server took 7.1 s.
    pub struct Shared {
        server: Mutex<Option<Arc<Moto>>>,
    }

    pub static DYNAMODB: Shared = Shared {
        server: Mutex::new(None),
    };

    impl Fixture for Shared {
        fn space(&self, case: &str) -> Option<Box<dyn Store>> {
            let moto = {
                let mut server = lock(&self.server);
                if server.is_none() {
                    *server = Some(moto::serial_server()?);
                }
                server.clone().unwrap()
            };
            let table = moto::table(case);
            Some(Box::new(Table { moto, table }))
        }

        fn stop(&self) {
            // The last holder: dropping it stops the server.
            lock(&self.server).take();
        }
    }

    struct Table {
        moto: Arc<Moto>,
        table: String,
    }

    impl Store for Table {
        fn config(&self, queue_batch: &str) -> String {
            moto::config(&self.moto.url(), &self.table, "", queue_batch)
        }
    }
}
