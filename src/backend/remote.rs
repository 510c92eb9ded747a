//! What the remote backends share: the tokio runtime of a handle.
//!
//! The C API is blocking, so each call runs its future to completion on the
//! caller's thread with a deadline; the runtime's own threads drive the
//! sockets and timers. `local` never comes here: a hop
//! through a runtime would cost more than its whole sled call.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::error::{Error, Result};

pub(crate) struct Runtime(tokio::runtime::Runtime);

impl Runtime {
    /// One runtime for the remote backends of `config`; `None` when it has
    /// none. It lives as long as the last backend holding it, and dropping
    /// it joins its threads, so none is left after `tether_close`.
    pub fn shared_by(config: &Config) -> Result<Option<Arc<Runtime>>> {
        if config.etcd.is_none() && config.dynamodb.is_none() {
            return Ok(None);
        }
        // The runtime's threads only move bytes; the callers' threads run
        // the calls. Two are plenty, whatever the machine.
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(2));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("tetherdb-runtime")
            .enable_all()
            .build()
            .map_err(|e| Error::Internal(format!("cannot start the tokio runtime: {e}")))?;
        Ok(Some(Arc::new(Runtime(runtime))))
    }

    /// Runs `call` on the calling thread; `None` when it takes longer than
    /// `timeout`, in which case it is cancelled.
    pub fn run<F: Future>(&self, timeout: Duration, call: F) -> Option<F::Output> {
        // The timer is made inside the runtime, whose clock it needs.
        self.0
            .block_on(async { tokio::time::timeout(timeout, call).await })
            .ok()
    }
}
