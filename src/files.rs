//! Files and directories the library creates: its owner's alone (0700,
//! 0600), whatever the umask, unless they exist already.

use std::fs::{DirBuilder, File, OpenOptions};
use std::path::Path;

/// Creates `dir` and its missing parents readable by their owner alone; an
/// existing directory keeps its permissions.
pub(crate) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Opens `path` for appending, creating it readable by its owner alone.
pub(crate) fn private_file(path: &Path) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).append(true).read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}
