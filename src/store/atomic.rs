//! Crash-safe file replacement: temp file in the same directory, fsync,
//! rename, fsync the directory.

use super::TEMP_PREFIX;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

pub(super) fn write(destination: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = destination
        .parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "a record needs a parent directory"))?;
    create_dirs_durably(dir)?;
    let mut temp = tempfile::Builder::new().prefix(TEMP_PREFIX).tempfile_in(dir)?;
    temp.write_all(bytes)?;
    temp.as_file().sync_all()?;
    temp.persist(destination).map_err(|err| err.error)?;
    sync_dir(dir)
}

/// Creates `dir` and any missing ancestors, fsyncing the parent of each
/// directory created: otherwise a new directory (a first publish's package
/// directory, say) could vanish in a power loss with everything in it,
/// although the files inside were fsynced.
fn create_dirs_durably(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_dirs_durably(parent)?;
    }
    match fs::create_dir(dir) {
        // Made here, or by another thread just now: either way the entry
        // must be durable before this write is.
        Ok(()) => sync_parent(dir),
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => sync_parent(dir),
        Err(err) => Err(err),
    }
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
