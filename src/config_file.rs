//! Reading the files a configuration names (itself, certificates): bounded,
//! and never blocking on what is not a regular file (`/dev/zero` would be
//! read until memory runs out; opening a FIFO without a writer blocks).

use std::io::Read;
use std::path::Path;

use crate::config::Config;
use crate::error::{Error, Result};

/// The largest configuration file read: a real one is a few hundred bytes.
const MAX_CONFIG_FILE_BYTES: u64 = 1 << 20;

/// Reads, parses and validates a configuration file; every failure is
/// [`Error::Config`] naming the file.
pub(crate) fn load(path: &Path) -> Result<Config> {
    let text = read_regular(path, MAX_CONFIG_FILE_BYTES, "1 MiB")
        .map_err(|cause| Error::Config(format!("cannot read {}: {cause}", path.display())))?;
    let text = String::from_utf8(text).map_err(|e| {
        Error::Config(format!(
            "cannot read {}: {}",
            path.display(),
            e.utf8_error()
        ))
    })?;
    Config::from_json(Some(&text)).map_err(|e| {
        let cause = match e {
            Error::Config(cause) => cause,
            other => other.to_string(),
        };
        Error::Config(format!("{}: {cause}", path.display()))
    })
}

/// The bytes of a regular file of at most `limit` (`limit_text` in the
/// message) bytes; otherwise why not, without the path.
pub(crate) fn read_regular(path: &Path, limit: u64, limit_text: &str) -> Result<Vec<u8>, String> {
    // Checked before opening: opening a FIFO blocks until it has a writer.
    let metadata = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !metadata.is_file() {
        return Err(format!(
            "not a regular file (a {})",
            file_kind(&metadata.file_type())
        ));
    }
    let too_large = || format!("over {limit} bytes ({limit_text})");
    if metadata.len() > limit {
        return Err(too_large());
    }
    // Bounded again while reading: the file may grow, and some (in /proc)
    // report no size at all.
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut bytes = Vec::with_capacity(metadata.len() as usize);
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > limit {
        return Err(too_large());
    }
    Ok(bytes)
}

#[cfg(unix)]
fn file_kind(kind: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    match kind {
        k if k.is_dir() => "directory",
        k if k.is_fifo() => "FIFO",
        k if k.is_char_device() => "character device",
        k if k.is_block_device() => "block device",
        k if k.is_socket() => "socket",
        _ => "special file",
    }
}

#[cfg(not(unix))]
fn file_kind(kind: &std::fs::FileType) -> &'static str {
    match kind.is_dir() {
        true => "directory",
        false => "special file",
    }
}
