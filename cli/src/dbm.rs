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

fn gnu(path: &Path, each: &mut impl FnMut(&[u8], &[u8]) -> Outcome) -> Outcome {
    let unreadable = |why: String| Failure::Input(format!("{}: {why}", path.display()));
    // SAFETY: loading libgdbm runs no code of ours; its symbols are used
    // with the prototypes of gdbm.h (1.x, whose ABI is stable as .so.6).
    unsafe {
        let lib = libloading::Library::new("libgdbm.so.6").map_err(|e| {
            unreadable(format!(
                "not a dbm.dumb store, and GNU dbm cannot be loaded to read it ({e}): install libgdbm6"
            ))
        })?;
        let symbol = |name: &[u8]| -> Result<*const c_void, Failure> {
            lib.get::<*const c_void>(name)
                .map(|s| *s)
                .map_err(|e| unreadable(format!("libgdbm.so.6: {e}")))
        };
        let open: extern "C" fn(*const c_char, c_int, c_int, c_int, *const c_void) -> GdbmFile =
            std::mem::transmute(symbol(b"gdbm_open\0")?);
        let first: extern "C" fn(GdbmFile) -> Datum =
            std::mem::transmute(symbol(b"gdbm_firstkey\0")?);
        let next: extern "C" fn(GdbmFile, Datum) -> Datum =
            std::mem::transmute(symbol(b"gdbm_nextkey\0")?);
        let fetch: extern "C" fn(GdbmFile, Datum) -> Datum =
            std::mem::transmute(symbol(b"gdbm_fetch\0")?);
        let close: extern "C" fn(GdbmFile) -> c_int = std::mem::transmute(symbol(b"gdbm_close\0")?);

        let name = CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|_| unreadable("a path with a NUL".into()))?;
        let file = open(name.as_ptr(), 0, GDBM_READER, 0, std::ptr::null());
        if file.is_null() {
            return Err(unreadable(
                "not a GNU dbm file, nor a dbm.dumb store".into(),
            ));
        }
        let mut done = Ok(());
        let mut key = first(file);
        while !key.dptr.is_null() {
            let value = fetch(
                file,
                Datum {
                    dptr: key.dptr,
                    dsize: key.dsize,
                },
            );
            if !value.dptr.is_null() {
                done = each(bytes(&key), bytes(&value));
                free(value.dptr.cast());
            }
            let following = match done {
                Ok(()) => next(
                    file,
                    Datum {
                        dptr: key.dptr,
                        dsize: key.dsize,
                    },
                ),
                Err(_) => Datum {
                    dptr: std::ptr::null_mut(),
                    dsize: 0,
                },
            };
            free(key.dptr.cast());
            key = following;
        }
        close(file);
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
