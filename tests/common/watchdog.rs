//! Child processes under a watchdog: one that has not ended within its
//! bound counts as hung; its threads' stacks are taken with gdb and it is
//! killed, so that a hang fails a test instead of hanging CI. Included with
//! `#[path]` by the tests whose children run this same binary.
#![allow(dead_code)]

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What the child printed once it ended with success (a failure panics);
/// `Err` with its stacks when it did not end within `limit`.
pub fn watch(mut child: Child, role: &str, limit: Duration) -> Result<String, String> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if let Some(status) = child.try_wait().unwrap() {
            let mut out = String::new();
            if let Some(mut stdout) = child.stdout.take() {
                stdout.read_to_string(&mut out).unwrap();
            }
            assert!(status.success(), "{role} failed ({status}): {out}");
            return Ok(out);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let stacks = stacks(child.id());
    let _ = child.kill();
    let _ = child.wait();
    Err(stacks)
}

/// Every thread's stack of process `pid`, from gdb, bounded in time.
fn stacks(pid: u32) -> String {
    let gdb = Command::new("timeout")
        .args(["60", "gdb", "-p", &pid.to_string(), "-batch", "-ex"])
        .arg("thread apply all bt")
        .stderr(Stdio::null())
        .output();
    match gdb {
        Ok(out) => String::from_utf8_lossy(&out.stdout).into_owned(),
        Err(e) => format!("(no stacks: cannot run gdb: {e})"),
    }
}
