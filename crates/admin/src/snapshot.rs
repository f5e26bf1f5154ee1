//! `admin snapshot <dir>`: a point-in-time copy of the data directory.
//!
//! Records are never rewritten in place (only replaced by rename, or
//! deleted), so a hard link is a frozen copy of a file. Writers are held off
//! through the writers' gate only while the links are made: no change is
//! half-made in the copy, and no bytes are copied while writers wait.
//! To another file system the files are copied instead. Once the writers
//! are let go, every file and directory of the copy is fsynced: a finished
//! snapshot survives a power cut.

use super::Report;
use super::{AdminError, AdminResult};
use gren_registry_core::store::layout::{self, CONTROL_SOCKET, LOCK_FILE, TURNSTILE_FILE, WRITERS_LOCK_FILE};
use gren_registry_core::store::{DIR_MODE, FILE_MODE, TEMP_PREFIX, hold_writers};
use serde_json::json;
use std::fs::{self, DirBuilder, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::time::Instant;

/// Not part of a snapshot: the running server's locks (linking them would
/// share their lock with the original) and its control socket, local development mail, and the
/// git repositories, which are derived from the bundles and built again on
/// demand. (Their builds still take the writers' gate, as every change
/// under the data directory does, so a fetch that builds waits for a
/// snapshot in progress.)
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
    let failed = AdminError::Snapshot;
    // Private like the data directory: the copy holds the same records.
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(destination)
        .map_err(failed)?;
    let gate = hold_writers(root)?;
    let held = Instant::now();
    let mut counts = Counts::default();
    let copied = link_tree(root, destination, true, &mut counts);
    let held_for = held.elapsed();
    drop(gate);
    copied.map_err(failed)?;
    // An empty lock file makes the copy a data directory of its own.
    OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(FILE_MODE)
        .open(destination.join(LOCK_FILE))
        .and_then(|file| file.sync_all())
        .map_err(failed)?;
    sync_tree(destination).map_err(failed)?;
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

#[derive(Default)]
struct Counts {
    linked: usize,
    copied: usize,
}

fn link_tree(from: &Path, to: &Path, top: bool, counts: &mut Counts) -> io::Result<()> {
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        let name_text = name.to_string_lossy();
        if name_text.starts_with(TEMP_PREFIX) || (top && skipped(&name_text)) {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type()?.is_dir() {
            DirBuilder::new().mode(DIR_MODE).create(&target)?;
            link_tree(&entry.path(), &target, false, counts)?;
        } else if fs::hard_link(entry.path(), &target).is_ok() {
            counts.linked += 1;
        } else {
            // Another file system: copy instead.
            fs::copy(entry.path(), &target)?;
            counts.copied += 1;
        }
    }
    Ok(())
}

/// fsyncs every file and directory of the copy, after the writers are let
/// go: a copied file's bytes (another file system) are only in the page
/// cache until then, and a linked one's sync costs next to nothing.
fn sync_tree(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            sync_tree(&entry.path())?;
        } else {
            fs::File::open(entry.path())?.sync_all()?;
        }
    }
    fs::File::open(dir)?.sync_all()
}
