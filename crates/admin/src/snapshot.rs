//! `admin snapshot <dir>`: a point-in-time copy of the data directory.
//!
//! Records are never rewritten in place (only replaced by rename, or
//! deleted), so a hard link is a frozen copy of a file. Writers are held off
//! through the writers' gate only while the links are made: no change is
//! half-made in the copy, and no bytes are copied while writers wait.
//! To another file system the files are copied instead. Once the writers
//! are let go, every file and directory of the copy is fsynced: a finished
//! snapshot survives a power cut.
//!
//! Commit order, as a record's write: the copy is made under a temporary
//! name beside the destination (`.<name>.partial-…`), its own `registry.lock`
//! last, then fsynced, renamed to the destination, and the destination's
//! directory fsynced. So the destination is a whole data directory or is
//! not there: a copy that fails (a full target, say) is removed, and the
//! error says so. A partial one that a kill leaves under its temporary name
//! has no `registry.lock`, which every data directory has, and every
//! command refuses it ([`gren_registry_core::store::Store::open`]).

use super::Report;
use super::{AdminError, AdminResult};
use gren_registry_core::store::layout::{self, CONTROL_SOCKET, LOCK_FILE, TURNSTILE_FILE, WRITERS_LOCK_FILE};
use gren_registry_core::store::{DIR_MODE, FILE_MODE, TEMP_PREFIX, WritersHeld, hold_writers};
use serde_json::json;
use std::fs::{self, DirBuilder, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Not part of a snapshot: the running server's locks (linking them would
/// share their lock with the original) and its control socket, local development mail, and the
/// git repositories, which are derived from the bundles and built again on
/// demand. (A build holds no writers' gate while git works, only for the
/// instant of each of its own directory changes: a snapshot never waits
/// for a build, and a build waits for a snapshot only at those steps.)
fn skipped(top_level_name: &str) -> bool {
    [LOCK_FILE, WRITERS_LOCK_FILE, TURNSTILE_FILE, CONTROL_SOCKET].contains(&top_level_name)
        || Path::new(top_level_name) == layout::mail_dir().as_path()
        || Path::new(top_level_name) == layout::repositories_dir().as_path()
}

pub fn take(root: &Path, destination: &Path) -> AdminResult<Report> {
    if !root.join(LOCK_FILE).exists() {
        return Err(AdminError::NotADataDir(root.to_path_buf()));
    }
    if destination.exists() {
        return Err(AdminError::DestinationExists(destination.to_path_buf()));
    }
    let gate = hold_writers(root)?;
    let partial = Partial::beside(destination)?;
    let copied = copy_into(gate, root, partial.path());
    let (counts, held_for) = match copied {
        Ok(copied) => copied,
        Err(failure) => return Err(partial.discard(failure)),
    };
    partial.commit()?;
    Ok(Report::ok(
        format!(
            "snapshot of {} in {}: {} files ({} linked, {} copied); writers held off for {:.1} ms",
            root.display(),
            destination.display(),
            counts.linked + counts.copied,
            counts.linked,
            counts.copied,
            held_for.as_secs_f64() * 1000.0
        ),
        json!({ "destination": destination, "linked": counts.linked, "copied": counts.copied, "held_ms": held_for.as_secs_f64() * 1000.0 }),
    ))
}

/// Copies the data directory at `root` into the empty directory `to` while
/// `gate` holds its writers off (let go once the files are linked or
/// copied), then writes the copy's own lock file and fsyncs all of it.
/// Returns what it did and how long the writers waited.
fn copy_into(gate: WritersHeld, root: &Path, to: &Path) -> Result<(Counts, Duration), Failure> {
    let held = Instant::now();
    let mut counts = Counts::default();
    let copied = link_tree(root, to, true, &mut counts);
    let held_for = held.elapsed();
    drop(gate);
    copied?;
    // An empty lock file makes the copy a data directory of its own: the
    // last file written, so a copy without it is known to be partial.
    let lock = to.join(LOCK_FILE);
    OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(FILE_MODE)
        .open(&lock)
        .and_then(|file| file.sync_all())
        .map_err(at(&lock))?;
    sync_tree(to)?;
    Ok((counts, held_for))
}

/// What failed, and where.
struct Failure {
    path: PathBuf,
    source: io::Error,
}

impl Failure {
    fn new(path: &Path, source: io::Error) -> Failure {
        Failure {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// For `map_err`: `path` failed.
fn at(path: &Path) -> impl FnOnce(io::Error) -> Failure + '_ {
    move |source| Failure::new(path, source)
}

/// The copy under its temporary name beside the destination, removed when
/// dropped unless [`Partial::commit`] renamed it into place.
struct Partial {
    dir: tempfile::TempDir,
    destination: PathBuf,
}

impl Partial {
    /// Creates it `0700` (private like the data directory: the copy holds
    /// the same records), and the destination's parent if need be.
    fn beside(destination: &Path) -> AdminResult<Partial> {
        let parent = parent_of(destination);
        let name = destination.file_name().unwrap_or_default().to_string_lossy();
        let made = DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(parent)
            .and_then(|()| {
                tempfile::Builder::new()
                    .prefix(&format!(".{name}.partial-"))
                    .permissions(fs::Permissions::from_mode(DIR_MODE))
                    .tempdir_in(parent)
            });
        let dir = made.map_err(|cause| AdminError::Snapshot {
            destination: destination.to_path_buf(),
            at: parent.to_path_buf(),
            cause,
            outcome: "Nothing was written.".to_string(),
        })?;
        Ok(Partial {
            dir,
            destination: destination.to_path_buf(),
        })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Renames the finished copy to the destination and fsyncs the
    /// directory they are in: the snapshot's commit.
    fn commit(self) -> AdminResult<()> {
        if let Err(cause) = fs::rename(self.path(), &self.destination) {
            let failure = Failure::new(&self.destination, cause);
            return Err(self.discard(failure));
        }
        let destination = self.destination.clone();
        // Renamed: no longer the temporary directory to remove.
        let _ = self.dir.keep();
        let parent = parent_of(&destination).to_path_buf();
        fs::File::open(&parent)
            .and_then(|dir| dir.sync_all())
            .map_err(|cause| AdminError::Snapshot {
                outcome: format!(
                    "{} is complete, but the fsync of its directory failed, so it may not survive a power cut: take another.",
                    destination.display()
                ),
                destination,
                at: parent,
                cause,
            })
    }

    /// Removes the partial copy after `failure`, and says whether that worked.
    fn discard(self, failure: Failure) -> AdminError {
        let (partial, destination) = (self.path().to_path_buf(), self.destination.clone());
        let outcome = match self.dir.close() {
            Ok(()) => format!("The partial copy was removed; {} was not made.", destination.display()),
            Err(err) => format!(
                "The partial copy {} could not be removed ({err}): delete it. Every command refuses it (it has no {LOCK_FILE}).",
                partial.display()
            ),
        };
        AdminError::Snapshot {
            destination,
            at: failure.path,
            cause: failure.source,
            outcome,
        }
    }
}

/// The directory `path` is in (`.` for a bare name).
fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

#[derive(Default)]
struct Counts {
    linked: usize,
    copied: usize,
}

fn link_tree(from: &Path, to: &Path, top: bool, counts: &mut Counts) -> Result<(), Failure> {
    for entry in fs::read_dir(from).map_err(at(from))? {
        let entry = entry.map_err(at(from))?;
        let name = entry.file_name();
        let name_text = name.to_string_lossy();
        if name_text.starts_with(TEMP_PREFIX) || (top && skipped(&name_text)) {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type().map_err(at(&entry.path()))?.is_dir() {
            DirBuilder::new().mode(DIR_MODE).create(&target).map_err(at(&target))?;
            link_tree(&entry.path(), &target, false, counts)?;
        } else if fs::hard_link(entry.path(), &target).is_ok() {
            counts.linked += 1;
        } else {
            // Another file system: copy instead.
            fs::copy(entry.path(), &target).map_err(at(&target))?;
            counts.copied += 1;
        }
    }
    Ok(())
}

/// fsyncs every file and directory of the copy, after the writers are let
/// go: a copied file's bytes (another file system) are only in the page
/// cache until then, and a linked one's sync costs next to nothing.
fn sync_tree(dir: &Path) -> Result<(), Failure> {
    for entry in fs::read_dir(dir).map_err(at(dir))? {
        let path = entry.map_err(at(dir))?.path();
        if fs::symlink_metadata(&path).map_err(at(&path))?.is_dir() {
            sync_tree(&path)?;
        } else {
            fs::File::open(&path)
                .and_then(|file| file.sync_all())
                .map_err(at(&path))?;
        }
    }
    fs::File::open(dir).and_then(|dir| dir.sync_all()).map_err(at(dir))
}
