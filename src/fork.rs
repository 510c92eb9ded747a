//! Telling a child of fork() from the process that opened a handle, at the
//! cost of an atomic load: `std::process::id()` is a system call, and every
//! call of the C ABI checks its handle's process (`Db::check_owner`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;

/// How many fork()s led to this process since the library was loaded: a
/// child starts with one more than its parent had when it forked.
static FORKS: AtomicU64 = AtomicU64::new(0);
static WATCHING: Once = Once::new();

extern "C" fn in_the_child() {
    FORKS.fetch_add(1, Ordering::Relaxed);
}

/// This process's generation of forks. A fork() through the C library
/// (as Python's, Go's runtime aside, and every C program's) runs the
/// handler that counts it; a child that only execs needs no count.
pub(crate) fn generation() -> u64 {
    WATCHING.call_once(|| {
        // SAFETY: registers a handler that only increments an atomic,
        // which is async-signal-safe, as a child's handler must be.
        unsafe { libc::pthread_atfork(None, None, Some(in_the_child)) };
    });
    FORKS.load(Ordering::Relaxed)
}
