//! What the remote backends share: the tokio runtime of a handle.
//!
//! The C API is blocking, so each call runs its future to completion on the
//! caller's thread with a deadline; the runtime's own threads drive the
//! sockets and timers. `local` never comes here: a hop
//! through a runtime would cost more than its whole sled call.

use std::future::Future;
use std::time::Duration;

use crate::error::{Error, Result};

pub(crate) struct Runtime(tokio::runtime::Runtime);

impl Runtime {
    /// The runtime the remote backends of one handle share (see
    /// `backend::Shared`). It lives as long as the last backend holding
    /// it, and dropping it joins its threads, so none is left after
    /// `tether_close`.
    pub fn new() -> Result<Runtime> {
        // The runtime's threads only move bytes; the callers' threads run
        // the calls. Two are plenty, whatever the machine.
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(2));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("tetherdb-runtime")
            .enable_all()
            .build()
            .map_err(|e| Error::Internal(format!("cannot start the tokio runtime: {e}")))?;
        Ok(Runtime(runtime))
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
