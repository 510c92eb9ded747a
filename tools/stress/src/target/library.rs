//! The library through its C ABI, called exactly as a C program calls it:
//! a handle opened from the configuration (`tether_open`,
//! `tether_open_file`), the same handle shared by every thread for
//! `tether_write`, `tether_update` and `tether_read`, and `tether_list`
//! page by page for the read-back.

use std::ffi::{c_char, CStr, CString};
use std::ptr;

use tetherdb::ffi::{
    tether_close, tether_flush, tether_free, tether_last_error, tether_list, tether_open,
    tether_open_file, tether_page_free, tether_page_key, tether_page_len, tether_page_next,
    tether_page_value, tether_read, tether_status_name, tether_update, tether_write, TetherDb,
    TetherPage, TETHER_QUEUE,
};
use tetherdb::Status;

use super::{Failure, KeyBuf, Outcome, Session, Target};

/// The configuration as `--config` gives it.
pub enum ConfigSource {
    Json(String),
    File(String),
}

pub struct CAbi {
    db: *mut TetherDb,
    /// NULL for the default backend, as a C caller passes it.
    backend: Option<CString>,
    bucket: CString,
}

// SAFETY: the C contract (docs/c-api.md, "Threads") makes one handle safe to use
// from any number of threads at once; only tether_close must not overlap
// another call, and `close` takes the target by value after every thread
// has ended.
unsafe impl Send for CAbi {}
unsafe impl Sync for CAbi {}

fn last_error() -> String {
    // SAFETY: never NULL, valid on this thread until its next failing call.
    unsafe { CStr::from_ptr(tether_last_error()) }
        .to_string_lossy()
        .into_owned()
}

pub fn status_name(status: Status) -> &'static str {
    // SAFETY: a static NUL-terminated name.
    unsafe { CStr::from_ptr(tether_status_name(status)) }
        .to_str()
        .unwrap_or("?")
}

fn check(status: Status) -> Outcome {
    match status {
        Status::Ok => Ok(()),
        status => Err(Failure {
            status,
            message: last_error(),
        }),
    }
}

fn c_string(what: &str, text: &str) -> Result<CString, Failure> {
    CString::new(text).map_err(|_| Failure {
        status: Status::InvalidArgument,
        message: format!("{what} holds a NUL byte"),
    })
}

impl CAbi {
    pub fn open(
        config: &ConfigSource,
        backend: Option<&str>,
        bucket: &str,
    ) -> Result<CAbi, Failure> {
        let mut db: *mut TetherDb = ptr::null_mut();
        let status = match config {
            // SAFETY: valid C strings for the call; `db` is a valid out-pointer.
            ConfigSource::Json(json) => unsafe {
                tether_open(c_string("the configuration", json)?.as_ptr(), &mut db)
            },
            ConfigSource::File(path) => unsafe {
                tether_open_file(c_string("the configuration path", path)?.as_ptr(), &mut db)
            },
        };
        check(status)?;
        Ok(CAbi {
            db,
            backend: backend.map(|b| c_string("--backend", b)).transpose()?,
            bucket: c_string("--bucket", bucket)?,
        })
    }

    fn backend(&self) -> *const c_char {
        self.backend.as_ref().map_or(ptr::null(), |b| b.as_ptr())
    }
}

struct CSession<'a>(&'a CAbi);

impl Session for CSession<'_> {
    fn write(&mut self, key: &KeyBuf, value: &[u8], queued: bool) -> Status {
        let flags = if queued { TETHER_QUEUE } else { 0 };
        // SAFETY: every pointer is valid for the call.
        unsafe {
            tether_write(
                self.0.db,
                self.0.backend(),
                self.0.bucket.as_ptr(),
                key.c_key(),
                value.as_ptr(),
                value.len(),
                flags,
            )
        }
    }

    fn update(&mut self, key: &KeyBuf, value: &[u8]) -> Status {
        // SAFETY: every pointer is valid for the call.
        unsafe {
            tether_update(
                self.0.db,
                self.0.backend(),
                self.0.bucket.as_ptr(),
                key.c_key(),
                value.as_ptr(),
                value.len(),
            )
        }
    }

    fn read(&mut self, key: &KeyBuf, check: &mut dyn FnMut(&[u8])) -> Status {
        let (mut value, mut len): (*mut u8, usize) = (ptr::null_mut(), 0);
        // SAFETY: every pointer is valid for the call; on TETHER_OK the
        // value is ours, `len` bytes, freed once with tether_free.
        unsafe {
            let status = tether_read(
                self.0.db,
                self.0.backend(),
                self.0.bucket.as_ptr(),
                key.c_key(),
                &mut value,
                &mut len,
            );
            if status == Status::Ok {
                check(std::slice::from_raw_parts(value, len));
                tether_free(value, len);
            }
            status
        }
    }

    fn last_error(&self) -> String {
        last_error()
    }
}

impl Target for CAbi {
    fn describe(&self) -> String {
        "library (C ABI)".into()
    }

    fn session(&self) -> Box<dyn Session + '_> {
        Box::new(CSession(self))
    }

    fn flush(&self) -> Outcome {
        // SAFETY: an open handle.
        check(unsafe { tether_flush(self.db) })
    }

    fn list(
        &self,
        bucket: &str,
        prefix: &str,
        page_size: usize,
        visit: &mut dyn FnMut(&str, &[u8]),
    ) -> Outcome {
        let bucket = c_string("--bucket", bucket)?;
        let prefix = c_string("the prefix", prefix)?;
        let mut after: Option<CString> = None;
        loop {
            let mut page: *mut TetherPage = ptr::null_mut();
            // SAFETY: valid pointers; on TETHER_OK the page is ours until
            // tether_page_free, and so are the strings it hands out.
            unsafe {
                check(tether_list(
                    self.db,
                    self.backend(),
                    bucket.as_ptr(),
                    prefix.as_ptr(),
                    after.as_ref().map_or(ptr::null(), |a| a.as_ptr()),
                    page_size,
                    &mut page,
                ))?;
                for i in 0..tether_page_len(page) {
                    let key = CStr::from_ptr(tether_page_key(page, i)).to_string_lossy();
                    let mut len = 0;
                    let value = tether_page_value(page, i, &mut len);
                    visit(&key, std::slice::from_raw_parts(value, len));
                }
                let next = tether_page_next(page);
                // The marker belongs to the page: copy it before the free.
                after = (!next.is_null()).then(|| CStr::from_ptr(next).to_owned());
                tether_page_free(page);
            }
            if after.is_none() {
                return Ok(());
            }
        }
    }

    fn close(self: Box<Self>) -> Outcome {
        // SAFETY: every thread using the handle has ended.
        check(unsafe { tether_close(self.db) })
    }
}
