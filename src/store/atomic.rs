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
    fs::create_dir_all(dir)?;
    let mut temp = tempfile::Builder::new().prefix(TEMP_PREFIX).tempfile_in(dir)?;
    temp.write_all(bytes)?;
    temp.as_file().sync_all()?;
    temp.persist(destination).map_err(|err| err.error)?;
    sync_dir(dir)
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
