//! Crash-safe file replacement: temp file (`0600`) in the same directory,
//! fsync, rename, fsync the directory. Directories on the way are created
//! `0700` and durably; none of them, nor the file, may be a symbolic link
//! (see [`super::safe_fs`]). An error names what failed: the file for its
//! own write, the directory for a directory's fsync.
//!
//! The rename is the commit of a record. An fsync failure after it cannot be
//! reported as "not written" (the new file is there and readers see it), nor
//! retried safely (the kernel may have dropped the dirty pages): the process
//! logs the path and exits with [`EXIT_COMMIT_UNSURE`], and its supervisor's
//! restart starts from what the disk holds. A file that is no record (the
//! local mail sink's) only gets a warning ([`AfterRename::Warn`]).

use super::TEMP_PREFIX;
use super::faults::{self, Point};
use super::safe_fs;
use super::{Operation, StoreError};
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// What a failed fsync of the directory after a rename means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AfterRename {
    /// The file is a record: stop ([`exit_after_commit`]).
    Stop,
    /// The file is no record (a development e-mail): its loss is the only
    /// harm, so a warning says so and the write counts as done.
    Warn,
}

/// Writes `bytes` to `relative` below `root`, replacing any file there.
pub(super) fn write(root: &Path, relative: &Path, bytes: &[u8], after_rename: AfterRename) -> Result<(), StoreError> {
    let full = root.join(relative);
    let (destination, dir) = prepare(root, relative, bytes)?
        .stage()
        .map_err(StoreError::io(Operation::Write, &full))?;
    if let Err(err) = faults::check(Point::CommitSync, relative).and_then(|()| sync_dir(&dir)) {
        match after_rename {
            AfterRename::Stop => exit_after_commit(&destination, &dir, Change::Renamed, &err),
            AfterRename::Warn => log::warn!(
                "cannot fsync {} after renaming {} into place: {err}; the file is there, but may not survive a power loss",
                dir.display(),
                destination.display()
            ),
        }
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

/// Creates the directories on the way, then writes `bytes` to a temporary
/// file beside `relative` and fsyncs it.
pub(super) fn prepare(root: &Path, relative: &Path, bytes: &[u8]) -> Result<Prepared, StoreError> {
    let destination = root.join(relative);
    let write_failed = || StoreError::io(Operation::Write, &destination);
    let parent = relative
        .parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "a record needs a parent directory"))
        .map_err(write_failed())?;
    faults::check(Point::Write, relative).map_err(write_failed())?;
    // The parent of each directory made here (or by another thread just now)
    // is fsynced: otherwise a new directory (a first publish's package
    // directory, say) could vanish in a power loss with everything in it,
    // although the files inside were fsynced.
    for created in safe_fs::create_dirs(root, parent).map_err(write_failed())? {
        sync_created(root, &created)?;
    }
    let dir = root.join(parent);
    temp_file(&dir, &destination, relative, bytes)
        .map(|temp| Prepared {
            temp,
            destination: destination.clone(),
            dir,
        })
        .map_err(write_failed())
}

/// Makes the creation of the directory `created` durable; an error names
/// the directory fsynced, not the file being written.
fn sync_created(root: &Path, created: &Path) -> Result<(), StoreError> {
    let dir = created.parent().unwrap_or(root);
    let relative = created.strip_prefix(root).unwrap_or(created);
    faults::check(Point::DirSync, relative)
        .and_then(|()| sync_dir(dir))
        .map_err(StoreError::io(Operation::SyncDir, dir))
}

/// The temporary file in `dir` that is to become `destination` (`relative`
/// below the data directory), holding `bytes`, fsynced.
fn temp_file(dir: &Path, destination: &Path, relative: &Path, bytes: &[u8]) -> io::Result<tempfile::NamedTempFile> {
    // Renaming over a link would not follow it, but a link here was planted.
    if fs::symlink_metadata(destination).is_ok_and(|meta| meta.file_type().is_symlink()) {
        return Err(safe_fs::symlink_refused(destination));
    }
    // The file is opened here and written through the `File` itself:
    // `tempfile`'s own `tempfile_in` and `Write` wrap the system's error in
    // one of theirs (adding the path), which hides its errno, and so a full
    // disk (`ENOSPC`) would be answered `500` instead of `507`.
    let mut temp = tempfile::Builder::new().prefix(TEMP_PREFIX).make_in(dir, |path| {
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
    Ok(temp)
}

/// The exit status of a process that stopped because an fsync failed after a
/// rename (75, `EX_TEMPFAIL`): the change may or may not survive a power loss.
pub const EXIT_COMMIT_UNSURE: i32 = 75;

/// What was done to a file before its directory's fsync failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Change {
    Renamed,
    Removed,
}

/// Stops the process after a rename or removal whose durability is unknown:
/// neither rolling back (readers may have seen it) nor answering an error
/// for a file that is live are right. The log line says what is known: the
/// file's new state is visible and perhaps not durable. Whether a change
/// was committed by it is the file's role, which the store does not know (a
/// package record commits one, an identity's audit entry or a first
/// publish's marker comes before the commit), so the line says so.
pub(super) fn exit_after_commit(file: &Path, dir: &Path, change: Change, err: &io::Error) -> ! {
    let done = match change {
        Change::Renamed => "renaming it into place",
        Change::Removed => "removing it",
    };
    log::error!(
        "cannot fsync {} after {done}: {err}. {} is {} for readers now, but perhaps not on the disk after a power \
         loss. If it is the commit point of a change (a package or identity record, say), that change is made; if \
         it comes before one (an identity's audit entry, a first publish's marker), the change was not made, and \
         start-up ignores or removes what is left. An fsync error cannot be retried safely, so the registry stops \
         (exit {EXIT_COMMIT_UNSURE}) and starts again from what the disk holds: run `gren-registry admin fsck`",
        dir.display(),
        file.display(),
        if change == Change::Renamed { "in place" } else { "gone" },
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
