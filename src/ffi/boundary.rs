//! The checks every entry point makes at the boundary: the panic guard,
//! pointer and string conversion, and the thread's last error.

use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::TetherDb;
use crate::db::Db;
use crate::error::{Error, Result, Status};

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Runs the body of entry point `function`: a panic becomes
/// TETHER_INTERNAL, and a failure sets this thread's last error.
pub fn guard(function: &str, body: impl FnOnce() -> Result<()>) -> Status {
    match catch(body) {
        Ok(()) => Status::Ok,
        Err(error) => {
            set_last_error(function, &error);
            error.status()
        }
    }
}

/// Runs the body of entry point `function`, which reports no status
/// (an accessor, a free function): a panic returns `fallback` and sets
/// this thread's last error.
pub fn guard_value<T>(function: &str, fallback: T, body: impl FnOnce() -> T) -> T {
    catch(|| Ok(body())).unwrap_or_else(|error| {
        set_last_error(function, &error);
        fallback
    })
}

/// The one place a panic is caught at the boundary (both guards come
/// here): it becomes `Error::Internal` with the panic's message. The entry
/// points outside a guard (`tether_last_error`, `tether_status_name`,
/// `tether_version`) read a thread-local or a static and cannot panic.
fn catch<T>(body: impl FnOnce() -> Result<T>) -> Result<T> {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|panic| {
        Err(Error::Internal(format!(
            "panic: {}",
            panic_message(&*panic)
        )))
    })
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    match (panic.downcast_ref::<&str>(), panic.downcast_ref::<String>()) {
        (Some(message), _) => message,
        (_, Some(message)) => message,
        _ => "no message",
    }
}

pub fn set_last_error(function: &str, error: &Error) {
    // A NUL would cut the message short in C; none comes from valid input,
    // but a message is no place to fail.
    let message = format!("{function}: {error}").replace('\0', "\\0");
    let message = CString::new(message).unwrap_or_default();
    LAST_ERROR.with(|last| *last.borrow_mut() = message);
}

/// This thread's last error; valid until its next failing call.
pub fn last_error() -> *const c_char {
    LAST_ERROR.with(|last| last.borrow().as_ptr())
}

/// The handle behind `db`, or TETHER_INVALID_ARGUMENT for NULL and for a
/// handle of the parent process used in a child of fork().
pub unsafe fn db_ref<'a>(db: *mut TetherDb) -> Result<&'a Db> {
    let db = db
        .as_ref()
        .map(|handle| &handle.db)
        .ok_or_else(|| Error::invalid("db is NULL"))?;
    db.check_owner()?;
    Ok(db)
}

/// A string argument that may be NULL.
pub unsafe fn optional_str<'a>(ptr: *const c_char, name: &str) -> Result<Option<&'a str>> {
    if ptr.is_null() {
        return Ok(None);
    }
    let bytes = CStr::from_ptr(ptr).to_bytes();
    // Keys are mostly ASCII, which is checked a word at a time; full UTF-8
    // validation costs more than a sled read spends in its tree.
    if bytes.is_ascii() {
        // SAFETY: ASCII is valid UTF-8.
        return Ok(Some(std::str::from_utf8_unchecked(bytes)));
    }
    std::str::from_utf8(bytes)
        .map(Some)
        .map_err(|e| Error::invalid(format!("{name} is not valid UTF-8 ({e})")))
}

/// A string argument that must not be NULL.
pub unsafe fn required_str<'a>(ptr: *const c_char, name: &str) -> Result<&'a str> {
    optional_str(ptr, name)?.ok_or_else(|| Error::invalid(format!("{name} is NULL")))
}

/// `len` bytes at `ptr`; NULL is allowed only with a length of 0.
pub unsafe fn bytes<'a>(ptr: *const u8, len: usize, name: &str) -> Result<&'a [u8]> {
    match (ptr.is_null(), len) {
        (true, 0) => Ok(&[]),
        (true, _) => Err(Error::invalid(format!("{name} is NULL with length {len}"))),
        (false, _) => Ok(std::slice::from_raw_parts(ptr, len)),
    }
}

/// An out-parameter, checked before any work is done so that a NULL one
/// fails the call instead of losing its result.
pub unsafe fn write_out<'a, T>(ptr: *mut T, name: &str) -> Result<&'a mut T> {
    ptr.as_mut()
        .ok_or_else(|| Error::invalid(format!("{name} is NULL")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last_error_text() -> String {
        unsafe { CStr::from_ptr(last_error()) }
            .to_str()
            .unwrap()
            .to_owned()
    }

    #[test]
    fn a_panic_becomes_internal_with_its_message() {
        let status = guard("tether_test", || panic!("boom"));
        assert_eq!(status, Status::Internal);
        assert_eq!(
            last_error_text(),
            "tether_test: internal error: panic: boom"
        );
    }

    #[test]
    fn errors_set_the_last_error_and_success_keeps_it() {
        let status = guard("tether_test", || Err(Error::invalid("key is NULL")));
        assert_eq!(status, Status::InvalidArgument);
        assert_eq!(guard("tether_test", || Ok(())), Status::Ok);
        assert_eq!(
            last_error_text(),
            "tether_test: invalid argument: key is NULL"
        );
    }

    #[test]
    fn the_last_error_is_per_thread() {
        guard("tether_test", || Err(Error::invalid("main thread")));
        std::thread::spawn(|| {
            assert_eq!(last_error_text(), "");
            guard("tether_test", || Err(Error::invalid("other thread")));
            assert!(last_error_text().ends_with("other thread"));
        })
        .join()
        .unwrap();
        assert!(last_error_text().ends_with("main thread"));
    }
}
