//! The filesystem is the database.
//!
//! Every record is a pretty-printed JSON file under the data directory. Writes go
//! to a temporary file in the destination directory, are fsynced, renamed over the
//! destination and the directory is fsynced, so a reader (or a restart after
//! `kill -9`) sees either the old or the new record, never a torn one.
//!
//! Paths are only ever built from [`RecordPath`] values, whose components are
//! checked against a strict whitelist, so no request can name a file outside the
//! data directory. Directories are created `0700`, files `0600`, and no
//! symbolic link inside the data directory is followed ([`safe_fs`]).
//! Where each record lives is [`layout`]'s alone to know.
//!
//! Every failure is a [`StoreError`] naming the operation and the file, with
//! the system's error as its cause; [`StoreError::fault`] tells disk trouble
//! (full, read-only, failing) from bugs. A failed write changed nothing: an
//! fsync failure after the rename ends the process instead ([`atomic`]).
//! [`faults`] is the test hook that injects such failures.

mod atomic;
mod error;
pub mod faults;
pub mod layout;
mod locks;
mod safe_fs;

pub use atomic::EXIT_COMMIT_UNSURE;
pub use error::{DiskFault, Operation, StoreError};
pub use layout::{CONTROL_SOCKET, LOCK_FILE, TURNSTILE_FILE, WRITERS_LOCK_FILE};
pub use locks::{KeyGuard, KeyedLocks, lock_ignoring_poison, read_ignoring_poison, write_ignoring_poison};
pub use safe_fs::{DIR_MODE, FILE_MODE, current_uid, exposure, user_name};

use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fs::{self, DirBuilder, File};
use std::io::{self, Read};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Prefix of every temporary file; anything carrying it is debris of an
/// interrupted write and is swept at start-up.
pub const TEMP_PREFIX: &str = ".tmp-";

/// A path relative to the data directory whose every component passed
/// [`check_component`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RecordPath(PathBuf);

impl RecordPath {
    /// Builds a path from components, refusing any component that is not a
    /// plain, safe file name.
    pub fn new<'a>(components: impl IntoIterator<Item = &'a str>) -> io::Result<RecordPath> {
        let mut path = PathBuf::new();
        for component in components {
            check_component(component)?;
            path.push(component);
        }
        if path.as_os_str().is_empty() {
            return Err(invalid_path("empty record path"));
        }
        Ok(RecordPath(path))
    }

    pub fn as_path(&self) -> &Path {
        &self.0
    }

    /// The key under which writers of this record serialize.
    pub fn lock_key(&self) -> String {
        self.0.to_string_lossy().into_owned()
    }
}

/// The whitelist every path component passes: 1 to 255 bytes of ASCII letters,
/// digits and `.`, `_`, `-`, `@`, `+`, not starting with a dot (so no `.`,
/// `..`, hidden or temporary names).
pub fn check_component(component: &str) -> io::Result<()> {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b"._-@+".contains(&b);
    if component.is_empty() || component.len() > 255 || component.starts_with('.') || !component.bytes().all(allowed) {
        return Err(invalid_path(&format!("unsafe path component {component:?}")));
    }
    Ok(())
}

fn invalid_path(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message.to_string())
}

/// Why a data directory could not be opened.
#[derive(Debug)]
pub enum OpenError {
    /// Another process holds the data directory's lock.
    Locked(PathBuf),
    /// A directory that holds something (`found`) but no [`LOCK_FILE`]:
    /// not a whole data directory ([`Store::open`]).
    NotADataDir {
        dir: PathBuf,
        found: String,
    },
    Io(PathBuf, io::Error),
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::Locked(path) => write!(
                f,
                "the data directory {} is in use by another gren-registry process (lock held on {})",
                path.parent().unwrap_or(path).display(),
                path.display()
            ),
            OpenError::NotADataDir { dir, found } => write!(
                f,
                "{} is not a whole gren-registry data directory: it holds {found:?} but no {LOCK_FILE}, which every \
                 data directory has from its first start and a snapshot writes last. It may be a snapshot or a copy \
                 that did not finish: use a complete snapshot instead (or, for a new registry, an empty directory)",
                dir.display()
            ),
            OpenError::Io(path, err) => {
                write!(f, "cannot open data directory {}: {err}", path.display())
            }
        }
    }
}

impl std::error::Error for OpenError {}

/// The data directory, held exclusively by this process for its lifetime
/// (or, from [`Store::inspect`], only read).
pub struct Store {
    root: PathBuf,
    locks: KeyedLocks,
    /// When the store was opened (ms since 1970): names this run's quarantine.
    opened: u128,
    // Held open for the lock it carries; released when the store is dropped.
    _lock_file: Option<File>,
}

impl Store {
    /// Opens (creating if needed) the data directory and takes its exclusive
    /// lock. Temporary files left by interrupted writes are swept by
    /// [`Store::sweep_temp_files`], which the caller runs when it suits it.
    ///
    /// [`LOCK_FILE`] is the first file written in a new data directory, and
    /// the last of a snapshot: a directory without it is new (empty, but
    /// for a file system's `lost+found`) or is refused
    /// ([`OpenError::NotADataDir`]), so a partial copy is never served or
    /// migrated as if it were whole.
    pub fn open(root: &Path) -> Result<Store, OpenError> {
        faults::load();
        let io_err = |err| OpenError::Io(root.to_path_buf(), err);
        DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(root)
            .map_err(io_err)?;
        let lock_path = root.join(LOCK_FILE);
        if !lock_path.try_exists().map_err(io_err)?
            && let Some(found) = first_entry(root).map_err(io_err)?
        {
            return Err(OpenError::NotADataDir {
                dir: root.to_path_buf(),
                found,
            });
        }
        let lock_file = safe_fs::open_lock_file(&lock_path).map_err(io_err)?;
        match lock_file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(OpenError::Locked(lock_path)),
            Err(fs::TryLockError::Error(err)) => return Err(io_err(err)),
        }
        Ok(Store {
            root: root.to_path_buf(),
            locks: KeyedLocks::default(),
            opened: now_millis(),
            _lock_file: Some(lock_file),
        })
    }

    /// Opens a data directory to read it, without its lock, beside a server
    /// that may be running. Callers must not write through it.
    pub fn inspect(root: &Path) -> Result<Store, OpenError> {
        if !root.join(LOCK_FILE).exists() {
            return Err(OpenError::Io(
                root.to_path_buf(),
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("not a gren-registry data directory (no {LOCK_FILE})"),
                ),
            ));
        }
        Ok(Store {
            root: root.to_path_buf(),
            locks: KeyedLocks::default(),
            opened: now_millis(),
            _lock_file: None,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Removes the temporary files of interrupted writes, as a writer (so a
    /// snapshot or a check waits for it to finish). Returns how many.
    pub fn sweep_temp_files(&self) -> Result<usize, StoreError> {
        self.sweep_temp_files_then(SystemTime::now(), || {})
    }

    /// As [`Store::sweep_temp_files`], for files last written before
    /// `older_than` (a running server's own writes are newer and in
    /// progress), calling `started` once the sweep holds the writers' gate
    /// (the server starts serving then, so nobody sees the directory unswept).
    pub fn sweep_temp_files_then(&self, older_than: SystemTime, started: impl FnOnce()) -> Result<usize, StoreError> {
        let _gate = WriterGate::enter(&self.root);
        started();
        sweep_temp_files(&self.root, older_than).map_err(StoreError::io(Operation::Sweep, &self.root))
    }

    pub fn full_path(&self, path: &RecordPath) -> PathBuf {
        self.root.join(path.as_path())
    }

    /// Reads and parses a record; `None` when it does not exist.
    pub fn read_json<T: DeserializeOwned>(&self, path: &RecordPath) -> Result<Option<T>, StoreError> {
        let Some(bytes) = self.read_bytes(path)? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| StoreError::Corrupt {
                path: self.full_path(path),
                source,
            })
    }

    /// Reads a file whole; `None` when it does not exist.
    pub fn read_bytes(&self, path: &RecordPath) -> Result<Option<Vec<u8>>, StoreError> {
        let mut bytes = Vec::new();
        match safe_fs::open_for_reading(&self.root, path.as_path()).and_then(|mut file| file.read_to_end(&mut bytes)) {
            Ok(_) => Ok(Some(bytes)),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(StoreError::io(Operation::Read, &self.full_path(path))(err)),
        }
    }

    /// Atomically replaces (or creates) a record with pretty-printed JSON.
    pub fn write_json<T: Serialize>(&self, path: &RecordPath, value: &T) -> Result<(), StoreError> {
        self.write_bytes(path, &self.json_bytes(path, value)?)
    }

    /// The bytes of the record `value` at `path`: pretty-printed JSON.
    fn json_bytes<T: Serialize>(&self, path: &RecordPath, value: &T) -> Result<Vec<u8>, StoreError> {
        let mut bytes = serde_json::to_vec_pretty(value)
            .map_err(io::Error::other)
            .map_err(StoreError::io(Operation::Write, &self.full_path(path)))?;
        bytes.push(b'\n');
        Ok(bytes)
    }

    /// [`Store::prepare_bytes`] of the record `value`, as [`Store::write_json`] writes it.
    pub(crate) fn prepare_json<T: Serialize>(
        &self,
        held: &RecordGuard,
        path: &RecordPath,
        value: &T,
    ) -> Result<PreparedFile, StoreError> {
        self.prepare_bytes(held, path, &self.json_bytes(path, value)?)
    }

    /// Atomically replaces (or creates) a file with the given bytes.
    pub fn write_bytes(&self, path: &RecordPath, bytes: &[u8]) -> Result<(), StoreError> {
        let _gate = WriterGate::enter(&self.root);
        atomic::write(&self.root, path.as_path(), bytes, atomic::AfterRename::Stop)
    }

    /// Writes and fsyncs `bytes` under a temporary name beside `path`, for
    /// [`Store::stage`] to put in place later (see `atomic::Prepared`).
    /// Called under the record lock `held`, perhaps from a thread the
    /// lock's holder waits for: that lock carries the writers' gate, and
    /// taking the gate again here, on another thread, could queue behind a
    /// snapshot that waits for the holder.
    pub(crate) fn prepare_bytes(
        &self,
        held: &RecordGuard,
        path: &RecordPath,
        bytes: &[u8],
    ) -> Result<PreparedFile, StoreError> {
        let _ = held;
        let prepared = atomic::prepare(&self.root, path.as_path(), bytes)?;
        Ok(PreparedFile {
            prepared,
            path: path.clone(),
        })
    }

    /// Puts a prepared file in place for the next [`Store::write_json`] in
    /// the same directory to commit (see `atomic::Prepared::stage`): until
    /// then a crash may leave it or not, and start-up removes it if no
    /// record names it.
    pub(crate) fn stage(&self, file: PreparedFile) -> Result<(), StoreError> {
        let _gate = WriterGate::enter(&self.root);
        let full = self.full_path(&file.path);
        file.prepared
            .stage()
            .map(drop)
            .map_err(StoreError::io(Operation::Write, &full))
    }

    /// Removes a record durably; `false` when it did not exist. A link in
    /// its place is removed itself (unlink never follows one).
    pub fn remove(&self, path: &RecordPath) -> Result<bool, StoreError> {
        let parent = path.as_path().parent().unwrap_or(Path::new(""));
        self.remove_with(path, parent, |full| fs::remove_file(full))
    }

    /// Moves a file durably (the directories of both ends are fsynced);
    /// `false` when `from` was not there.
    pub fn rename(&self, from: &RecordPath, to: &RecordPath) -> Result<bool, StoreError> {
        let _gate = WriterGate::enter(&self.root);
        let (source, destination) = (self.full_path(from), self.full_path(to));
        let moved = (|| {
            faults::check(faults::Point::Write, to.as_path())?;
            safe_fs::refuse_symlinks(&self.root, from.as_path())?;
            safe_fs::refuse_symlinks(&self.root, to.as_path().parent().unwrap_or(Path::new("")))?;
            match fs::rename(&source, &destination) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(false),
                Err(err) => return Err(err),
            }
            for end in [&destination, &source] {
                if let Err(err) = atomic::sync_parent(end) {
                    let dir = end.parent().unwrap_or(&self.root);
                    atomic::exit_after_commit(&destination, dir, atomic::Change::Renamed, &err);
                }
            }
            Ok(true)
        })();
        moved.map_err(StoreError::io(Operation::Write, &destination))
    }

    /// `full`, a path below the data directory (as listings give them), as a
    /// record path: its components pass the same checks. The error names
    /// `operation`, what the caller meant to do with it.
    pub fn relative(&self, full: &Path, operation: Operation) -> Result<RecordPath, StoreError> {
        let outside = || io::Error::new(io::ErrorKind::InvalidInput, "not a safe path inside the data directory");
        let inside = full.strip_prefix(&self.root).map_err(|_| outside());
        inside
            .and_then(|inside| {
                let parts: Option<Vec<&str>> = inside.iter().map(|part| part.to_str()).collect();
                RecordPath::new(parts.ok_or_else(outside)?)
            })
            .map_err(StoreError::io(operation, full))
    }

    /// Moves `full` (a file or directory below the data directory, whatever
    /// its name) to the same place under `quarantine/<opened>/`, durably:
    /// what start-up cannot explain is kept for an operator, never deleted.
    /// Returns where it went.
    pub fn quarantine(&self, full: &Path) -> Result<PathBuf, StoreError> {
        let _gate = WriterGate::enter(&self.root);
        let moved = (|| {
            let inside = full
                .strip_prefix(&self.root)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "outside the data directory"))?;
            // A link on the way would move what it points to, not this.
            safe_fs::refuse_symlinks(&self.root, inside)?;
            let relative = layout::quarantine(self.opened).as_path().join(inside);
            let parent = relative.parent().unwrap_or(Path::new(""));
            for created in safe_fs::create_dirs(&self.root, parent)? {
                atomic::sync_parent(&created)?;
            }
            let destination = self.root.join(&relative);
            fs::rename(full, &destination)?;
            atomic::sync_parent(&destination)?;
            atomic::sync_parent(full)?;
            Ok(destination)
        })();
        moved.map_err(StoreError::io(Operation::Quarantine, full))
    }

    /// Removes a directory and everything in it, durably; `false` when it did
    /// not exist. Only for what no record refers to (the debris of a failed
    /// change).
    pub fn remove_tree(&self, path: &RecordPath) -> Result<bool, StoreError> {
        self.remove_with(path, path.as_path(), |full| fs::remove_dir_all(full))
    }

    /// Removes an empty directory durably; `false` when it did not exist, an
    /// error when it is not empty.
    pub fn remove_empty_dir(&self, path: &RecordPath) -> Result<bool, StoreError> {
        self.remove_with(path, path.as_path(), |full| fs::remove_dir(full))
    }

    /// Creates the directory `path` (and those on the way) `0700`, durably,
    /// refusing links: for trees another program fills (git repositories).
    pub fn create_dir(&self, path: &RecordPath) -> Result<(), StoreError> {
        let _gate = WriterGate::enter(&self.root);
        let created = (|| {
            for created in safe_fs::create_dirs(&self.root, path.as_path())? {
                atomic::sync_parent(&created)?;
            }
            Ok(())
        })();
        created.map_err(StoreError::io(Operation::Write, &self.full_path(path)))
    }

    /// Renames the directory `from` to `to` (absent, or an empty directory)
    /// in the same parent, durably: the commit of a tree built beside its
    /// place. Only for derived trees, which can be built again: an fsync
    /// failure is an error, not a reason to stop.
    pub fn rename_dir(&self, from: &RecordPath, to: &RecordPath) -> Result<(), StoreError> {
        let _gate = WriterGate::enter(&self.root);
        let full = self.full_path(to);
        let renamed = (|| {
            safe_fs::refuse_symlinks(&self.root, from.as_path())?;
            safe_fs::refuse_symlinks(&self.root, to.as_path())?;
            fs::rename(self.full_path(from), &full)?;
            atomic::sync_parent(&full)
        })();
        renamed.map_err(StoreError::io(Operation::Write, &full))
    }

    /// Hard-links every file directly in the directory `from` into the
    /// directory `to`, durably, refusing symbolic links: for derived trees
    /// whose files are never changed once written (git's packs), so that a
    /// new tree shares them. Returns how many were linked.
    pub fn link_files(&self, from: &RecordPath, to: &RecordPath) -> Result<usize, StoreError> {
        let _gate = WriterGate::enter(&self.root);
        let target = self.full_path(to);
        let linked = (|| {
            safe_fs::refuse_symlinks(&self.root, from.as_path())?;
            safe_fs::refuse_symlinks(&self.root, to.as_path())?;
            let mut count = 0;
            for entry in fs::read_dir(self.full_path(from))? {
                let entry = entry?;
                // A link's own type: a symbolic link is not followed, nor linked.
                if entry.file_type()?.is_file() {
                    fs::hard_link(entry.path(), target.join(entry.file_name()))?;
                    count += 1;
                }
            }
            atomic::sync_dir(&target)?;
            Ok(count)
        })();
        linked.map_err(StoreError::io(Operation::Write, &target))
    }

    /// Removes `path` with `remove`, as a writer, refusing links on the way
    /// to `checked`, and fsyncs the parent directory.
    fn remove_with(
        &self,
        path: &RecordPath,
        checked: &Path,
        remove: impl FnOnce(&Path) -> io::Result<()>,
    ) -> Result<bool, StoreError> {
        let _gate = WriterGate::enter(&self.root);
        let full = self.full_path(path);
        let removed = (|| {
            safe_fs::refuse_symlinks(&self.root, checked)?;
            faults::check(faults::Point::Remove, path.as_path())?;
            match remove(&full) {
                // Removed is committed, as a rename is (see `atomic`).
                Ok(()) => {
                    let synced = faults::check(faults::Point::CommitSync, path.as_path());
                    if let Err(err) = synced.and_then(|()| atomic::sync_parent(&full)) {
                        let dir = full.parent().unwrap_or(&self.root);
                        atomic::exit_after_commit(&full, dir, atomic::Change::Removed, &err);
                    }
                    Ok(true)
                }
                Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(false),
                Err(err) => Err(err),
            }
        })();
        removed.map_err(StoreError::io(Operation::Remove, &full))
    }

    /// The names of the records (files ending in `.json`, without that suffix)
    /// in a directory; empty when the directory does not exist.
    pub fn list_json(&self, dir: &RecordPath) -> Result<Vec<String>, StoreError> {
        self.list_entries(dir, |name, _| name.strip_suffix(".json").map(str::to_string))
    }

    /// The names of the subdirectories of a directory; empty when it does
    /// not exist.
    pub fn list_dirs(&self, dir: &RecordPath) -> Result<Vec<String>, StoreError> {
        self.list_entries(dir, |name, entry| {
            entry
                .file_type()
                .is_ok_and(|kind| kind.is_dir())
                .then(|| name.to_string())
        })
    }

    /// The entries of a directory with safe names that `pick` names, sorted.
    fn list_entries(
        &self,
        dir: &RecordPath,
        pick: impl Fn(&str, &fs::DirEntry) -> Option<String>,
    ) -> Result<Vec<String>, StoreError> {
        let full = self.full_path(dir);
        let listed = (|| {
            safe_fs::refuse_symlinks(&self.root, dir.as_path())?;
            let entries = match fs::read_dir(&full) {
                Ok(entries) => entries,
                Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(err) => return Err(err),
            };
            let mut names = Vec::new();
            for entry in entries {
                let entry = entry?;
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                if check_component(name).is_ok()
                    && let Some(picked) = pick(name, &entry)
                {
                    names.push(picked);
                }
            }
            names.sort();
            Ok(names)
        })();
        listed.map_err(StoreError::io(Operation::List, &full))
    }

    /// Serializes work on derived data that snapshots leave out (the git
    /// repositories) under `path`'s key, without the writers' gate: a build
    /// can take seconds, and a snapshot waiting for the gate, and every
    /// writer queued behind it, must not wait for it. Its own store calls
    /// take the gate for their instant each, as every write does. Never
    /// the key of a record: a record's writer holds the gate while it waits
    /// for that key, so one waiting for the gate while holding it would
    /// deadlock behind a snapshot.
    pub fn lock_derived(&self, path: &RecordPath) -> KeyGuard<'_> {
        self.locks.lock(path.lock_key())
    }

    /// Serializes read-modify-write cycles on one record. One server holds the
    /// data directory, so in-process locks are enough between writers; the
    /// guard also holds the writers' gate (see [`hold_writers`]).
    pub fn lock(&self, path: &RecordPath) -> RecordGuard<'_> {
        // The gate first: a thread may wait for the gate (behind a snapshot)
        // only while it holds no record lock, or it could block a writer the
        // snapshot is waiting for.
        let gate = WriterGate::enter(&self.root);
        let key = self.locks.lock(path.lock_key());
        RecordGuard { _key: key, _gate: gate }
    }
}

/// The name of an entry of `dir` other than a file system's `lost+found`.
fn first_entry(dir: &Path) -> io::Result<Option<String>> {
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        if name != "lost+found" {
            return Ok(Some(name.to_string_lossy().into_owned()));
        }
    }
    Ok(None)
}

/// Atomically replaces (or creates) the file `path` below the data directory
/// `root`, as a writer: for writers that hold no [`Store`] (the local mail
/// sink). Such a file is no record: a directory fsync that fails after its
/// rename is logged as a warning (the file may be lost in a power cut), not
/// a reason to stop the registry.
pub fn write_file(root: &Path, path: &RecordPath, bytes: &[u8]) -> Result<(), StoreError> {
    let _gate = WriterGate::enter(root);
    atomic::write(root, path.as_path(), bytes, atomic::AfterRename::Warn)
}

/// A file written and fsynced beside its destination, not yet in place
/// ([`Store::prepare_bytes`]); dropped, it removes its temporary file.
pub(crate) struct PreparedFile {
    prepared: atomic::Prepared,
    path: RecordPath,
}

/// A record lock plus the writers' gate.
pub struct RecordGuard<'a> {
    // Fields drop in order: the record lock is released before the gate,
    // the reverse of how they were taken.
    _key: KeyGuard<'a>,
    _gate: WriterGate,
}

thread_local! {
    /// How many record guards this thread holds: only the outermost one takes
    /// the gate, so nested record locks never queue behind a snapshot.
    static GATE_DEPTH: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// A shared lock on `writers.lock`, held by every write and, around whole
/// read-modify-write changes, by every record guard. An operator's snapshot
/// or check takes it exclusively ([`hold_writers`]) to see the data
/// directory with no change half-made.
///
/// Shared `flock`s never queue behind a waiting exclusive one, so a steady
/// stream of overlapping writers could starve a snapshot. A turnstile
/// (`snapshot.lock`) prevents that: the snapshot holds it exclusively while
/// it waits for the gate, and a writer passes it (shared, for an instant)
/// before taking the gate, so new writers queue while old ones drain.
struct WriterGate {
    // Held for the shared lock it carries.
    _file: Option<File>,
}

impl WriterGate {
    fn enter(root: &Path) -> WriterGate {
        let outermost = GATE_DEPTH.with(|depth| {
            depth.set(depth.get() + 1);
            depth.get() == 1
        });
        if !outermost {
            return WriterGate { _file: None };
        }
        let gate = open_lock_file(root, TURNSTILE_FILE)
            .and_then(|turnstile| turnstile.lock_shared())
            .and_then(|()| open_lock_file(root, WRITERS_LOCK_FILE))
            .and_then(|file| file.lock_shared().map(|()| file));
        match gate {
            Ok(file) => WriterGate { _file: Some(file) },
            Err(err) => {
                // Writing on is better than refusing service; only snapshots lose.
                log::error!("cannot take the writers' gate: {err}");
                WriterGate { _file: None }
            }
        }
    }
}

impl Drop for WriterGate {
    fn drop(&mut self) {
        GATE_DEPTH.with(|depth| depth.set(depth.get() - 1));
    }
}

fn open_lock_file(root: &Path, name: &str) -> io::Result<File> {
    safe_fs::open_lock_file(&root.join(name))
}

/// Every writer of a data directory held off; released when dropped.
pub struct WritersHeld {
    _turnstile: File,
    _gate: File,
}

/// Holds off every writer of the data directory at `root` (in this process or
/// a running server) until the returned value is dropped.
pub fn hold_writers(root: &Path) -> Result<WritersHeld, StoreError> {
    let held = (|| {
        let turnstile = open_lock_file(root, TURNSTILE_FILE)?;
        turnstile.lock()?;
        let gate = open_lock_file(root, WRITERS_LOCK_FILE)?;
        gate.lock()?;
        Ok(WritersHeld {
            _turnstile: turnstile,
            _gate: gate,
        })
    })();
    held.map_err(StoreError::io(Operation::HoldWriters, root))
}

/// Removes every file whose name starts with [`TEMP_PREFIX`] below `root`.
/// Returns how many were removed.
fn sweep_temp_files(root: &Path, older_than: SystemTime) -> io::Result<usize> {
    let mut removed = 0;
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let file_type = entry.file_type()?;
            if file_type.is_dir() {
                pending.push(entry.path());
            } else if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
                // Gone already (renamed into place by a write in progress) is fine.
                let stale = entry
                    .metadata()
                    .and_then(|meta| meta.modified())
                    .is_ok_and(|at| at < older_than);
                if !stale {
                    continue;
                }
                match fs::remove_file(entry.path()) {
                    Ok(()) => removed += 1,
                    Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                    Err(err) => return Err(err),
                }
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_are_whitelisted() {
        for bad in [
            "", ".", "..", "../x", "a/b", ".hidden", ".tmp-1", "a\0b", "é", "a b", "a\\b",
        ] {
            assert!(check_component(bad).is_err(), "{bad:?} should be refused");
        }
        for good in ["me@example.com", "gren-lang", "core", "7.0.0", "a+b_c"] {
            assert!(check_component(good).is_ok(), "{good:?} should be accepted");
        }
        assert!(check_component(&"a".repeat(256)).is_err());
    }

    #[test]
    fn write_read_remove_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let path = RecordPath::new(["users", "me@example.com.json"]).unwrap();
        assert_eq!(store.read_json::<serde_json::Value>(&path).unwrap(), None);
        store.write_json(&path, &serde_json::json!({"a": 1})).unwrap();
        store.write_json(&path, &serde_json::json!({"a": 2})).unwrap();
        let text = fs::read_to_string(store.full_path(&path)).unwrap();
        assert_eq!(text, "{\n  \"a\": 2\n}\n", "records are pretty-printed");
        let users = RecordPath::new(["users"]).unwrap();
        assert_eq!(store.list_json(&users).unwrap(), vec!["me@example.com"]);
        assert!(store.remove(&path).unwrap());
        assert!(!store.remove(&path).unwrap());
        let leftovers: Vec<_> = fs::read_dir(store.full_path(&users)).unwrap().collect();
        assert!(leftovers.is_empty(), "no temporary files stay behind");
    }

    #[test]
    fn a_link_on_the_way_to_a_record_is_refused_by_every_operation_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        fs::write(elsewhere.path().join("me@example.com.json"), b"{\"a\": 1}").unwrap();
        let store = Store::open(dir.path()).unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), dir.path().join("users")).unwrap();
        let users = RecordPath::new(["users"]).unwrap();
        let record = RecordPath::new(["users", "me@example.com.json"]).unwrap();
        let deeper = RecordPath::new(["users", "x", "y.json"]).unwrap();
        let named = |err: StoreError| {
            let text = crate::error::Chain(&err).to_string();
            assert!(text.contains("symbolic link") && text.contains("users"), "{text}");
        };
        named(store.read_json::<serde_json::Value>(&record).unwrap_err());
        named(store.write_json(&record, &2).unwrap_err());
        named(store.write_json(&deeper, &2).unwrap_err());
        named(store.list_json(&users).unwrap_err());
        named(store.remove(&record).unwrap_err());
        let left: Vec<_> = fs::read_dir(elsewhere.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            left,
            vec!["me@example.com.json"],
            "nothing was written or removed through the link"
        );
        assert_eq!(
            fs::read(elsewhere.path().join("me@example.com.json")).unwrap(),
            b"{\"a\": 1}"
        );
    }

    #[test]
    fn a_link_in_place_of_a_record_is_neither_read_nor_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let target = elsewhere.path().join("target.json");
        fs::write(&target, b"1").unwrap();
        let store = Store::open(dir.path()).unwrap();
        let record = RecordPath::new(["users", "me@example.com.json"]).unwrap();
        store.write_json(&record, &0).unwrap();
        fs::remove_file(store.full_path(&record)).unwrap();
        std::os::unix::fs::symlink(&target, store.full_path(&record)).unwrap();
        let refused = store.read_json::<u64>(&record).unwrap_err().to_string();
        assert!(refused.contains("me@example.com.json"), "{refused}");
        assert!(store.write_json(&record, &2).is_err());
        assert_eq!(fs::read(&target).unwrap(), b"1");
    }

    #[test]
    fn created_directories_and_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let parent = tempfile::tempdir().unwrap();
        let root = parent.path().join("data");
        let store = Store::open(&root).unwrap();
        store
            .write_json(&RecordPath::new(["packages", "a", "b", "package.json"]).unwrap(), &1)
            .unwrap();
        let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;
        for dir in ["", "packages", "packages/a", "packages/a/b"] {
            assert_eq!(mode(&root.join(dir)), DIR_MODE, "{dir}/");
        }
        for file in [
            LOCK_FILE,
            WRITERS_LOCK_FILE,
            TURNSTILE_FILE,
            "packages/a/b/package.json",
        ] {
            assert_eq!(mode(&root.join(file)), FILE_MODE, "{file}");
        }
    }

    #[test]
    fn second_open_of_a_data_directory_is_refused_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let first = Store::open(dir.path()).unwrap();
        match Store::open(dir.path()) {
            Err(OpenError::Locked(path)) => assert!(path.ends_with(LOCK_FILE)),
            other => panic!("expected a lock error, got {:?}", other.err()),
        }
        drop(first);
        Store::open(dir.path()).expect("the lock is released with the store");
    }

    #[test]
    fn a_directory_with_files_but_no_lock_file_is_refused_and_left_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("lost+found")).unwrap();
        drop(Store::open(dir.path()).expect("a new file system's mount point is a new directory"));
        let partial = tempfile::tempdir().unwrap();
        fs::create_dir_all(partial.path().join("packages/a/b")).unwrap();
        match Store::open(partial.path()) {
            Err(err @ OpenError::NotADataDir { .. }) => {
                let text = err.to_string();
                assert!(text.contains("\"packages\"") && text.contains(LOCK_FILE), "{text}");
            }
            other => panic!("expected a refusal, got {:?}", other.err()),
        }
        assert!(!partial.path().join(LOCK_FILE).exists(), "refused again next time");
    }

    #[test]
    fn holding_writers_blocks_record_locks_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(Store::open(dir.path()).unwrap());
        let held = hold_writers(dir.path()).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let writer = {
            let store = store.clone();
            std::thread::spawn(move || {
                let path = RecordPath::new(["a.json"]).unwrap();
                let _outer = store.lock(&path);
                // Nested record locks never wait for the gate again.
                let _inner = store.lock(&RecordPath::new(["b.json"]).unwrap());
                tx.send(()).unwrap();
            })
        };
        assert!(
            rx.recv_timeout(std::time::Duration::from_millis(200)).is_err(),
            "the writer waits"
        );
        drop(held);
        rx.recv_timeout(std::time::Duration::from_secs(5))
            .expect("the writer proceeds");
        writer.join().unwrap();
    }

    #[test]
    fn the_sweep_leaves_temporary_files_newer_than_its_cutoff() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let cutoff = SystemTime::now() - std::time::Duration::from_secs(60);
        fs::write(dir.path().join(".tmp-in-progress"), b"a write of the running server").unwrap();
        assert_eq!(store.sweep_temp_files_then(cutoff, || {}).unwrap(), 0);
        assert!(
            dir.path().join(".tmp-in-progress").exists(),
            "a live write keeps its file"
        );
        assert_eq!(store.sweep_temp_files().unwrap(), 1);
    }

    #[test]
    fn start_up_sweeps_temporary_files() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(LOCK_FILE), b"").unwrap();
        fs::create_dir_all(dir.path().join("users")).unwrap();
        fs::write(dir.path().join("users").join(".tmp-abc"), b"half").unwrap();
        fs::write(dir.path().join("users").join("kept.json"), b"{}").unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.sweep_temp_files().unwrap(), 1);
        assert!(!dir.path().join("users/.tmp-abc").exists());
        assert!(dir.path().join("users/kept.json").exists());
    }

    #[test]
    fn keyed_lock_serializes_read_modify_write() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(Store::open(dir.path()).unwrap());
        let path = RecordPath::new(["counter.json"]).unwrap();
        store.write_json(&path, &0u64).unwrap();
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let store = store.clone();
                let path = path.clone();
                std::thread::spawn(move || {
                    for _ in 0..25 {
                        let _guard = store.lock(&path);
                        let n: u64 = store.read_json(&path).unwrap().unwrap();
                        store.write_json(&path, &(n + 1)).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(store.read_json::<u64>(&path).unwrap(), Some(200));
    }
}

fn now_millis() -> u128 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis())
}
