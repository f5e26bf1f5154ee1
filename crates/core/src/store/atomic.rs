//! Crash-safe file replacement: temp file (`0600`) in the same directory,
//! fsync, rename, fsync the directory. Directories on the way are created
//! `0700` and durably; none of them, nor the file, may be a symbolic link
//! (see [`super::safe_fs`]).

use super::TEMP_PREFIX;
use super::safe_fs;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

/// Writes `bytes` to `relative` below `root`, replacing any file there.
pub(super) fn write(root: &Path, relative: &Path, bytes: &[u8]) -> io::Result<()> {
    let parent = relative
        .parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "a record needs a parent directory"))?;
    // The parent of each directory made here (or by another thread just now)
    // is fsynced: otherwise a new directory (a first publish's package
    // directory, say) could vanish in a power loss with everything in it,
    // although the files inside were fsynced.
    for created in safe_fs::create_dirs(root, parent)? {
        sync_parent(&created)?;
    }
    let destination = root.join(relative);
    // Renaming over a link would not follow it, but a link here was planted.
    if fs::symlink_metadata(&destination).is_ok_and(|meta| meta.file_type().is_symlink()) {
        return Err(safe_fs::symlink_refused(&destination));
    }
    let dir = root.join(parent);
    let mut temp = tempfile::Builder::new().prefix(TEMP_PREFIX).tempfile_in(&dir)?;
    // Created 0600 less the umask: made exact before any byte is written.
    safe_fs::make_private(temp.as_file())?;
    temp.write_all(bytes)?;
    temp.as_file().sync_all()?;
    temp.persist(&destination).map_err(|err| err.error)?;
    sync_dir(&dir)
}

/// Makes a rename or removal in `path`'s directory durable.
pub(super) fn sync_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) => sync_dir(dir),
        None => Ok(()),
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
