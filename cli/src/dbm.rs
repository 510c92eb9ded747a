//! Reading a Python TetherDB `local` store: the files Python's `dbm.open`
//! writes on Debian. With python3-gdbm installed that is one GNU dbm file
//! at the path, read through libgdbm itself (loaded when needed, so that
//! building `tether` needs no gdbm headers); without it `dbm.dumb`'s
//! `PATH.dir` (a line per key: its repr, then the value's offset and size
//! in `PATH.dat`) and `PATH.dat`, parsed here.

use std::ffi::{c_char, c_int, c_void, CString};
use std::fs;
use std::path::{Path, PathBuf};

use crate::{Failure, Outcome};

/// Calls `each` with every key and value of the store at `path`.
pub fn each_pair(path: &Path, mut each: impl FnMut(&[u8], &[u8]) -> Outcome) -> Outcome {
    let dir = with_suffix(path, ".dir");
    if dir.is_file() && with_suffix(path, ".pag").is_file() {
        return Err(Failure::Input(format!(
            "{}: an ndbm store (.dir and .pag): export it with Python's dbm.ndbm and import the JSON Lines",
            path.display()
        )));
    }
    if dir.is_file() {
        return dumb(path, &dir, &mut each);
    }
    if path.is_file() {
        return gnu(path, &mut each);
    }
    Err(Failure::Input(format!(
        "{}: neither a GNU dbm file nor a dbm.dumb store ({})",
        path.display(),
        dir.display()
    )))
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn dumb(path: &Path, dir: &Path, each: &mut impl FnMut(&[u8], &[u8]) -> Outcome) -> Outcome {
    let index = fs::read(dir)?;
    let data = fs::read(with_suffix(path, ".dat"))?;
    for (at, line) in index.split(|&b| b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let bad = |why: &str| Failure::Input(format!("{}:{}: {why}", dir.display(), at + 1));
        let (key, pos, size) = dumb_entry(line).ok_or_else(|| bad("not a dbm.dumb entry"))?;
        let value = data
            .get(
                pos..pos
                    .checked_add(size)
                    .ok_or_else(|| bad("a size past the end"))?,
            )
            .ok_or_else(|| bad("a value past the end of the .dat file"))?;
        each(&key, value)?;
    }
    Ok(())
}

/// `'key', (pos, size)`: the key's repr (Python's, of the key's bytes read
/// as Latin-1, so one character is one byte) and where its value is.
fn dumb_entry(line: &[u8]) -> Option<(Vec<u8>, usize, usize)> {
    let (key, rest) = python_str(line)?;
    let rest = std::str::from_utf8(rest).ok()?.trim();
    let pair = rest
        .strip_prefix(',')?
        .trim()
        .strip_prefix('(')?
        .strip_suffix(')')?;
    let (pos, size) = pair.split_once(',')?;
    Some((key, pos.trim().parse().ok()?, size.trim().parse().ok()?))
}

/// A Python string literal at the start of `line` (as `repr` writes it),
/// as Latin-1 bytes, and what follows it.
fn python_str(line: &[u8]) -> Option<(Vec<u8>, &[u8])> {
    let quote = *line.first().filter(|q| **q == b'\'' || **q == b'"')?;
    let mut bytes = Vec::new();
    let mut at = 1;
    loop {
        let byte = *line.get(at)?;
        at += 1;
        match byte {
            b if b == quote => return Some((bytes, &line[at..])),
            b'\\' => {
                let escaped = *line.get(at)?;
                at += 1;
                bytes.push(match escaped {
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b't' => b'\t',
                    b'\\' | b'\'' | b'"' => escaped,
                    b'x' => {
                        let hex = std::str::from_utf8(line.get(at..at + 2)?).ok()?;
                        at += 2;
                        u8::from_str_radix(hex, 16).ok()?
                    }
                    _ => return None,
                });
            }
            b => bytes.push(b),
        }
    }
}

/// GNU dbm's `datum`.
#[repr(C)]
struct Datum {
    dptr: *mut c_char,
    dsize: c_int,
}

type GdbmFile = *mut c_void;

extern "C" {
    fn free(ptr: *mut c_void);
}

/// GDBM_READER: open for reading, alongside other readers.
const GDBM_READER: c_int = 0;
/// GDBM_ITEM_NOT_FOUND: what `gdbm_nextkey` sets at the end of the file;
/// any other error there means the walk stopped short.
const GDBM_ITEM_NOT_FOUND: c_int = 15;

/// The calls of libgdbm this reader makes, with gdbm.h's prototypes
/// (1.x; the ABI of `libgdbm.so.6` is stable).
struct Gdbm {
    open: unsafe extern "C" fn(*const c_char, c_int, c_int, c_int, *const c_void) -> GdbmFile,
    first: unsafe extern "C" fn(GdbmFile) -> Datum,
    next: unsafe extern "C" fn(GdbmFile, Datum) -> Datum,
    fetch: unsafe extern "C" fn(GdbmFile, Datum) -> Datum,
    close: unsafe extern "C" fn(GdbmFile) -> c_int,
    /// `gdbm_errno` is a macro over this (thread-local since 1.13).
    errno: unsafe extern "C" fn() -> *mut c_int,
    strerror: unsafe extern "C" fn(c_int) -> *const c_char,
    _lib: libloading::Library,
}

impl Gdbm {
    fn load() -> Result<Gdbm, String> {
        // SAFETY: loading libgdbm runs only its initialisers; each symbol
        // is given gdbm.h's prototype and outlives none of `_lib`.
        unsafe {
            let lib = libloading::Library::new("libgdbm.so.6").map_err(|e| e.to_string())?;
            macro_rules! symbol {
                ($name:literal) => {
                    *lib.get(concat!($name, "\0").as_bytes())
                        .map_err(|e| format!("libgdbm.so.6: {e}"))?
                };
            }
            Ok(Gdbm {
                open: symbol!("gdbm_open"),
                first: symbol!("gdbm_firstkey"),
                next: symbol!("gdbm_nextkey"),
                fetch: symbol!("gdbm_fetch"),
                close: symbol!("gdbm_close"),
                errno: symbol!("gdbm_errno_location"),
                strerror: symbol!("gdbm_strerror"),
                _lib: lib,
            })
        }
    }

    /// The error of this thread's last call, and gdbm's words for it.
    fn error(&self) -> (c_int, String) {
        // SAFETY: gdbm_errno_location gives this thread's errno cell;
        // gdbm_strerror a static string for any code.
        unsafe {
            let code = *(self.errno)();
            let text = std::ffi::CStr::from_ptr((self.strerror)(code));
            (code, text.to_string_lossy().into_owned())
        }
    }
}

/// Reads a GNU dbm file with libgdbm itself rather than parsing it: its
/// layout (bucket directory, avail blocks, word size and byte order of the
/// machine that wrote it, the crash-tolerance header of 1.21 and later)
/// is gdbm's own, versioned by gdbm; the library is on every Debian with
/// python3-gdbm, and loading it at run time keeps it out of the build.
fn gnu(path: &Path, each: &mut impl FnMut(&[u8], &[u8]) -> Outcome) -> Outcome {
    let unreadable = |why: String| Failure::Input(format!("{}: {why}", path.display()));
    let gdbm = Gdbm::load().map_err(|e| {
        unreadable(format!(
            "not a dbm.dumb store, and GNU dbm cannot be loaded to read it ({e}): install libgdbm6"
        ))
    })?;
    let name = CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| unreadable("a path with a NUL".into()))?;
    // SAFETY: every call has gdbm.h's prototype; each datum libgdbm
    // returns is malloc'd, read before it is freed, and freed once.
    unsafe {
        let file = (gdbm.open)(name.as_ptr(), 0, GDBM_READER, 0, std::ptr::null());
        if file.is_null() {
            let (_, why) = gdbm.error();
            return Err(unreadable(format!(
                "GNU dbm cannot open it ({why}); it is not a dbm.dumb store either"
            )));
        }
        let mut done = Ok(());
        let mut key = (gdbm.first)(file);
        while !key.dptr.is_null() && done.is_ok() {
            let value = (gdbm.fetch)(file, Datum { ..key });
            done = match value.dptr.is_null() {
                true => Err(unreadable(format!(
                    "GNU dbm lists a key it cannot read: {}",
                    gdbm.error().1
                ))),
                false => each(bytes(&key), bytes(&value)),
            };
            free(value.dptr.cast());
            let following = match done {
                Ok(()) => (gdbm.next)(file, Datum { ..key }),
                Err(_) => Datum {
                    dptr: std::ptr::null_mut(),
                    dsize: 0,
                },
            };
            free(key.dptr.cast());
            key = following;
        }
        // The walk ends at a null key: the end of the file, or an error
        // that would otherwise import part of the store as if it were all.
        if done.is_ok() {
            let (code, why) = gdbm.error();
            if code != GDBM_ITEM_NOT_FOUND {
                done = Err(unreadable(format!("GNU dbm stopped reading it: {why}")));
            }
        }
        (gdbm.close)(file);
        done
    }
}

/// The bytes of a datum libgdbm returned.
unsafe fn bytes(datum: &Datum) -> &[u8] {
    std::slice::from_raw_parts(datum.dptr.cast(), datum.dsize.max(0) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dumb_entries_as_python_writes_them() {
        assert_eq!(dumb_entry(b"'b:k', (0, 7)"), Some((b"b:k".to_vec(), 0, 7)));
        assert_eq!(
            dumb_entry(br#""it's", (512, 3)"#),
            Some((b"it's".to_vec(), 512, 3))
        );
        assert_eq!(
            dumb_entry(b"'a\\nb\\x00\\\\\\'\xe9', (1024, 0)"),
            Some((b"a\nb\0\\'\xe9".to_vec(), 1024, 0))
        );
        for bad in [
            &b"b:k, (0, 7)"[..],
            b"'b:k' (0, 7)",
            b"'b:k', (0)",
            b"'b:k",
            b"'\\q', (0, 1)",
        ] {
            assert_eq!(dumb_entry(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }
}
