//! What a host process can do to the library, each in a child process —
//! this same binary, run with an argument — under a watchdog:
//!
//! - break its stderr (a pipe whose reader is gone; Rust programs, like
//!   many C ones, ignore SIGPIPE, so writes fail with EPIPE): the worker's
//!   log lines must not panic it, and flush and close must answer;
//! - fill its stderr (a pipe nobody reads): logging must not block a call;
//! - fork: a handle used in the child fails at once, and the parent's
//!   handle goes on.

#[path = "common/watchdog.rs"]
mod watchdog;

use std::ffi::{c_char, CStr, CString};
use std::process::{Child, Command, Stdio};
use std::ptr;
use std::time::Duration;

use tetherdb::ffi::{self, TetherDb, TETHER_QUEUE};
use tetherdb::Status;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("child-broken-stderr") => child_broken_stderr(&args[2]),
        Some("child-full-stderr") => child_full_stderr(&args[2]),
        Some("child-fork") => child_fork(&args[2]),
        Some("child-default-outbox") => child_default_outbox(&args[2]),
        _ => {
            a_broken_stderr_neither_panics_nor_wedges_the_worker();
            a_full_stderr_blocks_no_call();
            a_handle_used_after_fork_fails_at_once();
            a_remote_only_outbox_is_private_and_named_after_its_destination();
            println!("host tests passed");
        }
    }
}

fn a_broken_stderr_neither_panics_nor_wedges_the_worker() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on port 1 of loopback: the worker meets an outage
    // and logs it, at every level.
    let config = format!(
        r#"{{"logging": "debug", "etcd": {{"endpoints": ["127.0.0.1:1"], "timeout": 0.3}},
             "queue_batch": {{"outbox_path": {:?}, "interval": 0}}}}"#,
        dir.path().join("outbox")
    );
    let mut child = spawn("child-broken-stderr", &config, Stdio::piped());
    drop(child.stderr.take());
    let out = finish(child, "child-broken-stderr");
    assert_eq!(
        out, "flush TETHER_UNAVAILABLE\nclose TETHER_UNAVAILABLE\n",
        "a queued write to an unreachable backend is reported as such, not as a \
         dead worker"
    );
    println!("a broken stderr: flush and close answered TETHER_UNAVAILABLE");
}

fn child_broken_stderr(config: &str) {
    let db = open(config);
    write(db, "k", TETHER_QUEUE);
    println!("flush {}", name(unsafe { ffi::tether_flush(db) }));
    println!("close {}", name(unsafe { ffi::tether_close(db) }));
}

fn a_full_stderr_blocks_no_call() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        r#"{{"logging": "debug", "local": {{"filepath": {:?}}}}}"#,
        dir.path().join("db")
    );
    let mut child = spawn("child-full-stderr", &config, Stdio::piped());
    // Held open and never read, so that the pipe fills.
    let stderr = child.stderr.take();
    let out = finish(child, "child-full-stderr");
    drop(stderr);
    assert_eq!(out, "done\n");
    println!("a full stderr: 2,000 opens and closes, each logging, all returned");
}

/// Opens and closes a handle 2,000 times: two log lines each, well over
/// the 64 KiB a pipe holds.
fn child_full_stderr(config: &str) {
    for i in 0..2000 {
        let db = open(config);
        write(db, &format!("k{i}"), 0);
        assert_eq!(unsafe { ffi::tether_close(db) }, Status::Ok);
    }
    println!("done");
}

fn a_handle_used_after_fork_fails_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        r#"{{"logging": "none", "local": {{"filepath": {:?}}}}}"#,
        dir.path().join("db")
    );
    let child = spawn("child-fork", &config, Stdio::inherit());
    let out = finish(child, "child-fork");
    assert_eq!(
        out,
        "forked child: every call TETHER_INVALID_ARGUMENT\nparent: ok\n"
    );
    println!("fork: the child's calls failed at once, the parent's handle went on");
}

fn child_fork(config: &str) {
    let db = open(config);
    write(db, "before", TETHER_QUEUE);
    // SAFETY: the child calls only the library and async-signal-safe
    // functions before _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let statuses = unsafe {
            [
                write_status(db, "child", 0),
                write_status(db, "child", TETHER_QUEUE),
                ffi::tether_flush(db),
                ffi::tether_stop(db),
                ffi::tether_close(db),
            ]
        };
        let ok = statuses.iter().all(|s| *s == Status::InvalidArgument);
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    let mut status = 0;
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the forked child's calls did not all fail with TETHER_INVALID_ARGUMENT"
    );
    println!("forked child: every call TETHER_INVALID_ARGUMENT");
    write(db, "after", 0);
    assert_eq!(unsafe { ffi::tether_flush(db) }, Status::Ok);
    let mut value: *mut u8 = ptr::null_mut();
    let mut len = 0;
    for key in ["before", "after"] {
        let key = CString::new(key).unwrap();
        let status = unsafe {
            ffi::tether_read(
                db,
                ptr::null(),
                ptr::null(),
                key.as_ptr(),
                &mut value,
                &mut len,
            )
        };
        assert_eq!(status, Status::Ok);
        unsafe { ffi::tether_free(value, len) };
    }
    assert_eq!(unsafe { ffi::tether_close(db) }, Status::Ok);
    println!("parent: ok");
}

fn a_remote_only_outbox_is_private_and_named_after_its_destination() {
    let state = tempfile::tempdir().unwrap();
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["child-default-outbox", state.path().to_str().unwrap()])
        .env("XDG_STATE_HOME", state.path())
        .current_dir(state.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    assert_eq!(finish(child, "child-default-outbox"), "ok\n");
    println!("a remote-only handle's outbox: private, under XDG_STATE_HOME, per destination");
}

/// Opens two etcd-only handles (nothing listens; nothing is sent) and
/// checks where their outboxes are.
fn child_default_outbox(state: &str) {
    use std::os::unix::fs::PermissionsExt;
    let outbox_of = |port: u16| {
        let config =
            format!(r#"{{"logging": "none", "etcd": {{"endpoints": ["127.0.0.1:{port}"]}}}}"#);
        let db = tetherdb::Db::open_json(Some(&config)).unwrap();
        let path = db.stats()["outbox"]["path"].as_str().unwrap().to_owned();
        db.close().unwrap();
        std::path::PathBuf::from(path)
    };
    let (first, second) = (outbox_of(1), outbox_of(2));
    let parent = std::path::Path::new(state).join("tetherdb");
    assert_eq!(first.parent().unwrap(), parent, "{}", first.display());
    assert!(first
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("outbox-"));
    assert_ne!(first, second, "two clusters, one outbox");
    assert_eq!(outbox_of(1), first, "not the same place after a restart");
    for dir in [&parent, &first] {
        let mode = std::fs::metadata(dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", dir.display());
    }
    // Not in the working directory.
    assert!(!std::path::Path::new("tetherdb_data.outbox").exists());
    println!("ok");
}

fn spawn(role: &str, config: &str, stderr: Stdio) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([role, config])
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap()
}

/// What the child printed; a child that has not ended after 120 s fails
/// the test with its stacks.
fn finish(child: Child, role: &str) -> String {
    watchdog::watch(child, role, Duration::from_secs(120))
        .unwrap_or_else(|stacks| panic!("{role} hung; its threads:\n{stacks}"))
}

fn open(config: &str) -> *mut TetherDb {
    let config = CString::new(config).unwrap();
    let mut db = ptr::null_mut();
    let status = unsafe { ffi::tether_open(config.as_ptr(), &mut db) };
    assert_eq!(status, Status::Ok, "{}", last_error());
    db
}

fn write(db: *mut TetherDb, key: &str, flags: u32) {
    let status = unsafe { write_status(db, key, flags) };
    assert_eq!(status, Status::Ok, "{}", last_error());
}

unsafe fn write_status(db: *mut TetherDb, key: &str, flags: u32) -> Status {
    let key = CString::new(key).unwrap();
    ffi::tether_write(
        db,
        ptr::null(),
        ptr::null(),
        key.as_ptr(),
        b"v".as_ptr(),
        1,
        flags,
    )
}

fn name(status: Status) -> &'static str {
    status.name()
}

fn last_error() -> String {
    let message: *const c_char = ffi::tether_last_error();
    unsafe { CStr::from_ptr(message) }
        .to_string_lossy()
        .into_owned()
}
