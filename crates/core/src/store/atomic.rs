//! Crash-safe file replacement: temp file (`0600`) in the same directory,
//! fsync, rename, fsync the directory. Directories on the way are created
//! `0700` and durably; none of them, nor the file, may be a symbolic link
//! (see [`super::safe_fs`]).
//!
//! The rename is the commit. An fsync failure after it cannot be reported as
//! "not written" (the new file is there and readers see it), nor retried
//! safely (the kernel may have dropped the dirty pages): the process logs
//! the path and exits with [`EXIT_COMMIT_UNSURE`], and its supervisor's
//! restart starts from what the disk holds.

use super::TEMP_PREFIX;
use super::faults::{self, Point};
use super::safe_fs;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Writes `bytes` to `relative` below `root`, replacing any file there.
pub(super) fn write(root: &Path, relative: &Path, bytes: &[u8]) -> io::Result<()> {
    let (destination, dir) = place(root, relative, bytes)?;
    if let Err(err) = faults::check(Point::CommitSync, relative).and_then(|()| sync_dir(&dir)) {
        exit_after_commit(&destination, &err);
    }
    Ok(())
}

/// A file written and fsynced under a temporary name in its destination's
/// directory, not renamed yet: [`Prepared::stage`] puts it in place, and
/// dropping it removes the temporary file. A publish prepares its bundle
/// while it reads and checks the package record, so the bundle's write
/// and fsync overlap that read.
pub(super) struct Prepared {
    temp: tempfile::NamedTempFile,
    destination: PathBuf,
    dir: PathBuf,
}

impl Prepared {
    /// Renames the file into place and leaves its directory unsynced: the
    /// file is durable once a later [`write`] in the same directory (the
    /// change's commit) fsyncs it. A publish stages its bundle this way
    /// beside the package record, so one directory fsync covers both; the
    /// two renames reach the journal in order, so a record that survives a
    /// power loss has its bundle.
    pub(super) fn stage(self) -> io::Result<(PathBuf, PathBuf)> {
        self.temp.persist(&self.destination).map_err(|err| err.error)?;
        Ok((self.destination, self.dir))
    }
}

/// Temp file, fsync, rename: returns the destination and its directory.
fn place(root: &Path, relative: &Path, bytes: &[u8]) -> io::Result<(PathBuf, PathBuf)> {
    prepare(root, relative, bytes)?.stage()
}

/// Creates the directories on the way, then writes `bytes` to a temporary
/// file beside `relative` and fsyncs it.
pub(super) fn prepare(root: &Path, relative: &Path, bytes: &[u8]) -> io::Result<Prepared> {
    let parent = relative
        .parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "a record needs a parent directory"))?;
    faults::check(Point::Write, relative)?;
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
    // The file is opened here and written through the `File` itself:
    // `tempfile`'s own `tempfile_in` and `Write` wrap the system's error in
    // one of theirs (adding the path), which hides its errno, and so a full
    // disk (`ENOSPC`) would be answered `500` instead of `507`.
    let mut temp = tempfile::Builder::new().prefix(TEMP_PREFIX).make_in(&dir, |path| {
        faults::check(Point::TempFile, relative)?;
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
    })?;
    // Created 0600 less the umask: made exact before any byte is written.
    safe_fs::make_private(temp.as_file())?;
    temp.as_file_mut().write_all(bytes)?;
    temp.as_file().sync_all()?;
    Ok(Prepared { temp, destination, dir })
}

/// The exit status of a process that stopped because an fsync failed after a
/// rename (75, `EX_TEMPFAIL`): the change may or may not survive a power loss.
pub const EXIT_COMMIT_UNSURE: i32 = 75;

/// Stops the process after a committed rename whose durability is unknown:
/// neither rolling back (readers may have seen it) nor answering an error
/// for a change that is live are right.
pub(super) fn exit_after_commit(destination: &Path, err: &io::Error) -> ! {
    log::error!(
        "cannot fsync the directory of {} after renaming or removing it: {err}; the change is committed but \
         perhaps not durable, so the registry stops (exit {EXIT_COMMIT_UNSURE}) and starts again from the disk",
        destination.display()
    );
    log::logger().flush();
    std::process::exit(EXIT_COMMIT_UNSURE)
}

/// Makes a rename or removal in `path`'s directory durable.
pub(super) fn sync_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) => sync_dir(dir),
        None => Ok(()),
    }
}

pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
