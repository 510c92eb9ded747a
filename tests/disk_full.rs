//! A full disk: the local store and the outbox on a small tmpfs that the
//! test mounts (as root) and unmounts. Writes fail with TETHER_IO naming the
//! cause, nothing acknowledged before is lost, and once space is freed the
//! same handle works again.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use tetherdb::{Db, Status};

/// A tmpfs of `bytes` mounted on a new temporary directory; unmounted when
/// dropped. `None` when this process may not mount (not root), which fails
/// in CI.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(bytes: u64) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let mounted = as_root("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={bytes},mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .status();
        match mounted {
            Ok(status) if status.success() => Some(SmallDisk { dir }),
            other => {
                assert!(
                    std::env::var_os("CI").is_none(),
                    "cannot mount a tmpfs ({other:?}): the disk-full test runs as root in CI"
                );
                eprintln!("skipped: cannot mount a tmpfs (not root?)");
                None
            }
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the disk with a ballast file until it is full; returns it.
    fn fill(&self) -> PathBuf {
        let ballast = self.path().join("ballast");
        let chunk = vec![0u8; 64 << 10];
        let mut file = std::fs::File::create(&ballast).unwrap();
        while std::io::Write::write_all(&mut file, &chunk).is_ok() {}
        drop(file);
        ballast
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = as_root("umount").arg(self.dir.path()).status();
    }
}

/// `program`, through `sudo -n` unless this process is root.
fn as_root(program: &str) -> Command {
    // SAFETY: geteuid has no preconditions.
    match unsafe { libc::geteuid() } {
        0 => Command::new(program),
        _ => {
            let mut sudo = Command::new("sudo");
            sudo.args(["-n", program]);
            sudo
        }
    }
}

fn key(i: usize) -> String {
    format!("k{i:05}")
}

#[test]
fn a_full_disk_is_an_io_error_that_loses_nothing_and_passes() {
    let Some(disk) = SmallDisk::mount(64 << 20) else {
        return;
    };
    let config = common::config(disk.path(), "{}");
    let db = Db::open_json(Some(&config)).unwrap();
    let value = vec![b'x'; 4096];

    // Some writes, direct and queued, acknowledged and flushed.
    for i in 0..200 {
        db.write(None, Some("d"), &key(i), &value).unwrap();
        db.write_queued(None, Some("q"), &key(i), &value).unwrap();
    }
    db.flush().unwrap();

    let ballast = disk.fill();
    // Direct writes fail with TETHER_IO naming the cause, once sled's
    // buffers reach the disk; queued ones once the outbox's do. Every
    // write acknowledged on the way is remembered.
    let (mut direct, mut queued) = (200, 200);
    let mut direct_error = None;
    while direct < 20_000 {
        match db
            .write(None, Some("d"), &key(direct), &value)
            .and_then(|()| db.flush())
        {
            Ok(()) => direct += 1,
            Err(e) => {
                direct_error = Some(e);
                break;
            }
        }
    }
    let error = direct_error.expect("a write to a full disk fails");
    assert_eq!(error.status(), Status::Io, "{error}");
    assert!(error.to_string().contains("No space left"), "{error}");

    let mut queued_error = None;
    while queued < 20_000 {
        match db.write_queued(None, Some("q"), &key(queued), &value) {
            Ok(()) => queued += 1,
            Err(e) => {
                queued_error = Some(e);
                break;
            }
        }
        if let Err(e) = db.flush() {
            queued_error = Some(e);
            break;
        }
    }
    let error = queued_error.expect("a queued write to a full disk fails");
    assert_eq!(error.status(), Status::Io, "{error}");
    assert!(error.to_string().contains("No space left"), "{error}");

    // Space again: the same handle works, and every acknowledged write is
    // there.
    std::fs::remove_file(ballast).unwrap();
    common::wait_until(|| db.flush().is_ok());
    db.write(None, Some("d"), "after", b"1").unwrap();
    db.write_queued(None, Some("q"), "after", b"1").unwrap();
    db.flush().unwrap();
    for i in 0..direct {
        assert_eq!(db.read(None, Some("d"), &key(i)).unwrap(), value, "{i}");
    }
    for i in 0..queued {
        assert_eq!(db.read(None, Some("q"), &key(i)).unwrap(), value, "{i}");
    }
    assert_eq!(db.read(None, Some("q"), "after").unwrap(), b"1");
    db.close().unwrap();
    println!(
        "full disk: {direct} direct and {queued} queued writes acknowledged, all there after \
         space was freed and after a reopen"
    );

    // And after a reopen.
    let db = Db::open_json(Some(&config)).unwrap();
    db.flush().unwrap();
    assert_eq!(db.read(None, Some("d"), "after").unwrap(), b"1");
    assert_eq!(db.read(None, Some("q"), &key(queued - 1)).unwrap(), value);
    db.close().unwrap();
}
