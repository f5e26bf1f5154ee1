//! A package's files (data format 3) and how its [`PackageRecord`] is put
//! together from them:
//!
//! ```text
//! packages/<author>/<project>/package.json   PackageFile: name, privacy, created; the events and
//!                                            audit entries of its privacy changes
//! packages/<author>/<project>/<v>.json       VersionFile: the version's record; the events and audit
//!                                            entries of its publish and revocation; its outline once revoked
//! ```
//!
//! Each change writes one of them, its commit point: a publish writes the
//! new version's file (a package's first publish writes `package.json`
//! before it), a revocation rewrites the version's file, a privacy change
//! rewrites `package.json`, with the events it appended. A change's cost
//! does not grow with the package's versions. Going public re-announces
//! versions (see [`PackageRecord::going_public`]); those events are the
//! privacy change's, in `package.json`: a version's events are in its own
//! file or there.
//!
//! A package is committed once `package.json` and at least one version
//! file are there: a directory lacking either is the debris of an
//! interrupted first publish (or lost its records: see [`super::Catalog`]).
//! A record is the files as read, put together: versions ascending, events
//! by number, audit entries by time.

use super::events::Event;
use super::{PackageChange, PackageName, PackageRecord, Version, VersionRecord};
use crate::store::layout::{self, PackageDir};
use crate::store::{Store, StoreError};
use crate::time::Timestamp;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde::{Deserialize, Serialize};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// `package.json`. `Changes` is [`IgnoredAny`] where the audit entries are
/// not wanted (start-up: parsing them is a third of its work).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PackageFile<Changes = Vec<PackageChange>> {
    pub name: PackageName,
    pub private: bool,
    pub created: Timestamp,
    /// The events its privacy changes appended, oldest first: `private`,
    /// `public`, and what going public told mirrors.
    pub events: Vec<Event>,
    /// The audit entries of its privacy changes.
    pub changes: Changes,
}

/// `<version>.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionFile<Changes = Vec<PackageChange>> {
    pub version: VersionRecord,
    /// Its `publish` and `revoke` events (none while the package is private).
    pub events: Vec<Event>,
    /// The audit entries of its publish and revocation.
    pub changes: Changes,
    /// Its outline (`gren.json`), kept from the bundle when a revocation
    /// deleted it: a live version's is in its bundle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outline: Option<serde_json::Map<String, serde_json::Value>>,
}

/// What the audit entries of a file are read as: all of them, or passed over.
pub trait History: DeserializeOwned {
    fn into_changes(self) -> Vec<PackageChange>;
}

impl History for Vec<PackageChange> {
    fn into_changes(self) -> Vec<PackageChange> {
        self
    }
}

impl History for IgnoredAny {
    fn into_changes(self) -> Vec<PackageChange> {
        Vec::new()
    }
}

impl PackageFile {
    /// The `package.json` of a package's first publish: no history yet.
    pub fn new(name: PackageName, private: bool) -> PackageFile {
        PackageFile {
            name,
            private,
            created: Timestamp::now(),
            events: Vec::new(),
            changes: Vec::new(),
        }
    }
}

/// Why a package's files could not be read; the message names no path.
#[derive(Debug)]
pub enum RecordError {
    Read(PathBuf, io::Error),
    Parse(PathBuf, serde_json::Error),
    /// A version file holding another version than its name says.
    Misfiled(PathBuf, Version),
}

impl RecordError {
    /// The file that could not be read.
    pub fn path(&self) -> &Path {
        match self {
            RecordError::Read(path, _) | RecordError::Parse(path, _) | RecordError::Misfiled(path, _) => path,
        }
    }
}

impl std::fmt::Display for RecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecordError::Read(_, err) => err.fmt(f),
            RecordError::Parse(_, err) => err.fmt(f),
            RecordError::Misfiled(_, version) => write!(f, "it holds version {version}"),
        }
    }
}

impl RecordError {
    /// The error a loader stops with.
    pub fn into_store_error(self) -> StoreError {
        match self {
            RecordError::Read(path, err) => StoreError::io(crate::store::Operation::Read, &path)(err),
            RecordError::Parse(path, source) => StoreError::Corrupt { path, source },
            RecordError::Misfiled(path, version) => StoreError::Inconsistent {
                path,
                problem: format!("the record of another version ({version}) is under this name"),
            },
        }
    }
}

/// What one entry under `packages/<author>/` holds.
pub enum Found {
    /// A directory without `package.json` or without a version file: the
    /// first publish of a package, interrupted before its commit, or a
    /// package that lost its records.
    Uncommitted,
    /// A file where a package directory belongs: no package lives there.
    NotADirectory,
    /// The package's record, or why it could not be read.
    Record(Result<PackageRecord, RecordError>),
}

impl Found {
    /// Reads the package directory `dir` (its entries, `package.json` and
    /// every version file), the audit entries as `C` says. Only records
    /// known to be absent make a directory [`Found::Uncommitted`]: an
    /// unreadable one (EACCES, EIO) is reported by reading it, never
    /// deleted.
    pub fn in_dir<C: History>(dir: &PackageDir) -> Found {
        if !dir.path().is_dir() {
            return Found::NotADirectory;
        }
        let names = match dir.file_names() {
            Ok(names) => names,
            Err(err) => return Found::Record(Err(RecordError::Read(dir.path().to_path_buf(), err))),
        };
        let versions: Vec<(Version, String)> = names
            .into_iter()
            .filter_map(|name| Some((layout::version_of_record_file(&name)?, name)))
            .collect();
        match dir.record().try_exists() {
            Ok(false) => return Found::Uncommitted,
            Ok(true) if versions.is_empty() => return Found::Uncommitted,
            _ => {}
        }
        Found::Record(read_files::<C>(dir, &versions))
    }

    /// Whether `dir`, whose entries but `package.json` are `file_names`,
    /// holds a committed package: `None` when the system cannot say.
    pub fn committed(dir: &PackageDir, file_names: &[String]) -> Option<bool> {
        let has_version = file_names
            .iter()
            .any(|file_name| layout::version_of_record_file(file_name).is_some());
        Some(dir.record().try_exists().ok()? && has_version)
    }
}

/// `package.json` and the version files `versions`, put together.
fn read_files<C: History>(dir: &PackageDir, versions: &[(Version, String)]) -> Result<PackageRecord, RecordError> {
    let opened = OpenDir::open(dir.path()).map_err(|err| RecordError::Read(dir.path().to_path_buf(), err))?;
    let package: PackageFile<C> = opened.parse(layout::PACKAGE_RECORD)?;
    let mut files = Vec::with_capacity(versions.len());
    for (version, file_name) in versions {
        let file: VersionFile<C> = opened.parse(file_name)?;
        if file.version.version != *version {
            return Err(RecordError::Misfiled(dir.path().join(file_name), file.version.version));
        }
        files.push(file);
    }
    Ok(assemble(package, files))
}

/// A package directory, open: start-up reads every record of the registry
/// (100,000 files for as many versions), each opened by its name in this
/// directory rather than by its whole path, into one buffer a thread. Records are opened with
/// `O_NOFOLLOW`, as the store opens them: a link in their place is refused.
struct OpenDir {
    dir: std::fs::File,
    path: PathBuf,
}

impl OpenDir {
    fn open(path: &Path) -> io::Result<OpenDir> {
        use std::os::unix::fs::OpenOptionsExt;
        let dir = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY)
            .open(path)?;
        Ok(OpenDir {
            dir,
            path: path.to_path_buf(),
        })
    }

    /// Reads and parses the record `file_name` of the directory.
    fn parse<T: DeserializeOwned>(&self, file_name: &str) -> Result<T, RecordError> {
        thread_local! {
            static BYTES: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        let path = || self.path.join(file_name);
        BYTES.with_borrow_mut(|bytes| {
            bytes.clear();
            self.read(file_name, bytes)
                .map_err(|err| RecordError::Read(path(), err))?;
            serde_json::from_slice(bytes).map_err(|err| RecordError::Parse(path(), err))
        })
    }

    fn read(&self, file_name: &str, bytes: &mut Vec<u8>) -> io::Result<()> {
        use std::os::fd::{AsRawFd, FromRawFd};
        let name = std::ffi::CString::new(file_name).map_err(io::Error::other)?;
        let flags = libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW;
        // SAFETY: the directory's descriptor is open while `self` lives and
        // `name` is NUL-terminated.
        let fd = unsafe { libc::openat(self.dir.as_raw_fd(), name.as_ptr(), flags) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just opened and nothing else owns it: the `File`
        // closes it.
        let file = unsafe { std::fs::File::from_raw_fd(fd) };
        // Through `take`, which asks no size of the file: `File`'s own
        // `read_to_end` costs an `fstat` a file, and the buffer is big enough.
        file.take(u64::MAX).read_to_end(bytes).map(drop)
    }
}

/// The record a package's files make.
pub fn assemble<C: History>(package: PackageFile<C>, versions: Vec<VersionFile<C>>) -> PackageRecord {
    let mut record = PackageRecord {
        name: package.name,
        private: package.private,
        created: package.created,
        versions: Vec::with_capacity(versions.len()),
        events: package.events,
        changes: package.changes.into_changes(),
        revoked_outlines: Default::default(),
    };
    for file in versions {
        let version = file.version.version;
        record.events.extend(file.events);
        record.changes.extend(file.changes.into_changes());
        if let Some(outline) = file.outline {
            record.revoked_outlines.insert(version, outline);
        }
        record.versions.push(file.version);
    }
    record.versions.sort_by_key(|version| version.version);
    record.events.sort_by_key(|event| event.seq);
    // Stable: entries of one time keep the order they were read in.
    record.changes.sort_by_key(|change| change.at);
    record
}

/// The files that hold `record`: each event and audit entry about one of
/// its versions in that version's file, the rest in `package.json`. The
/// inverse of [`assemble`] (up to which file holds a re-announcement):
/// what `admin migrate` makes of a format-2 record.
pub fn split(record: PackageRecord) -> (PackageFile, Vec<VersionFile>) {
    let PackageRecord {
        name,
        private,
        created,
        versions,
        events,
        changes,
        mut revoked_outlines,
    } = record;
    let mut files: Vec<VersionFile> = versions
        .into_iter()
        .map(|version| VersionFile {
            outline: revoked_outlines.remove(&version.version),
            version,
            events: Vec::new(),
            changes: Vec::new(),
        })
        .collect();
    files.sort_by_key(|file| file.version.version);
    let index = |files: &[VersionFile], version: Option<Version>| {
        files.binary_search_by_key(&version?, |file| file.version.version).ok()
    };
    let (mut package_events, mut package_changes) = (Vec::new(), Vec::new());
    for event in events {
        match index(&files, event.version.filter(|_| event.package.key() == name.key())) {
            Some(at) => files[at].events.push(event),
            None => package_events.push(event),
        }
    }
    for change in changes {
        let about = change.action.version().and_then(Version::parse);
        let own = change
            .action
            .package()
            .and_then(PackageName::parse)
            .is_some_and(|of| of.key() == name.key());
        match index(&files, about.filter(|_| own)) {
            Some(at) => files[at].changes.push(change),
            None => package_changes.push(change),
        }
    }
    let package = PackageFile {
        name,
        private,
        created,
        events: package_events,
        changes: package_changes,
    };
    (package, files)
}

/// Writes the files of `record` ([`split`]) durably: the versions' staged
/// (each written and fsynced, then renamed), then `package.json`, whose
/// write fsyncs the directory once for all of them. A crash before it
/// leaves version files of which no `package.json` speaks yet.
pub fn write_all(store: &Store, record: PackageRecord) -> Result<(), StoreError> {
    let (package, versions) = split(record);
    let guard = store.lock(&layout::package(&package.name));
    for file in &versions {
        let path = layout::version_record(&package.name, file.version.version);
        store.stage(store.prepare_json(&guard, &path, file)?)?;
    }
    store.write_json(&layout::package(&package.name), &package)
}

/// The whole record of `name`, history included, read through the store
/// (which follows no symbolic link); `None` when it has no `package.json`.
/// A change holds the package's lock while it reads.
pub fn read_history(store: &Store, name: &PackageName) -> Result<Option<PackageRecord>, StoreError> {
    let Some(package) = store.read_json::<PackageFile>(&layout::package(name))? else {
        return Ok(None);
    };
    let mut versions = Vec::new();
    for stem in store.list_json(&layout::package_dir(name))? {
        let Some(version) = Version::parse(&stem) else { continue };
        if let Some(file) = read_version(store, name, version)? {
            versions.push(file);
        }
    }
    Ok(Some(assemble(package, versions)))
}

/// The file of `version` of `name`; `None` when there is none.
pub fn read_version(store: &Store, name: &PackageName, version: Version) -> Result<Option<VersionFile>, StoreError> {
    let path = layout::version_record(name, version);
    let file: Option<VersionFile> = store.read_json(&path)?;
    match file {
        Some(file) if file.version.version != version => {
            Err(RecordError::Misfiled(store.full_path(&path), file.version.version).into_store_error())
        }
        file => Ok(file),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Action;
    use crate::package::events::EventKind;
    use crate::package::{Range, Revocation};

    fn version(name: &PackageName, number: &str, seq: u64) -> VersionFile {
        let version = Version::parse(number).unwrap();
        let at = Timestamp::now();
        VersionFile {
            version: VersionRecord {
                version,
                gren_version: Range::parse("0.6.0 <= v < 0.7.0").unwrap(),
                platform: "common".into(),
                summary: "s".into(),
                published: at,
                sha256: "ab".repeat(32),
                size: 3,
                revoked: None,
            },
            events: vec![Event {
                seq,
                at,
                kind: EventKind::Publish,
                package: name.clone(),
                version: Some(version),
                sha256: "ab".repeat(32),
                token: None,
            }],
            changes: vec![PackageChange {
                at,
                actor: "me@example.com".into(),
                token: None,
                action: Action::Published {
                    package: name.to_string(),
                    version: number.into(),
                },
            }],
            outline: None,
        }
    }

    #[test]
    fn a_package_is_its_own_file_and_one_file_a_version_put_together_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let name = PackageName::parse("Gren-Lang/core").unwrap();
        store
            .write_json(&layout::package(&name), &PackageFile::new(name.clone(), false))
            .unwrap();
        let mut revoked = version(&name, "10.0.0", 1);
        revoked.version.revoked = Some(Revocation {
            at: Timestamp::now(),
            reason: "broken".into(),
        });
        revoked.outline = Some(serde_json::Map::from_iter([("version".into(), "10.0.0".into())]));
        for file in [revoked, version(&name, "9.0.0", 3), version(&name, "9.1.0", 2)] {
            let path = layout::version_record(&name, file.version.version);
            store.write_json(&path, &file).unwrap();
        }
        assert!(dir.path().join("packages/gren-lang/core/10.0.0.json").exists());

        let record = read_history(&store, &name).unwrap().unwrap();
        let versions: Vec<String> = record.versions.iter().map(|v| v.version.to_string()).collect();
        assert_eq!(
            versions,
            ["9.0.0", "9.1.0", "10.0.0"],
            "ascending, not as file names sort"
        );
        let seqs: Vec<u64> = record.events.iter().map(|event| event.seq).collect();
        assert_eq!(seqs, [1, 2, 3]);
        assert_eq!(record.changes.len(), 3);
        assert_eq!(record.revoked_outlines[&Version::new(10, 0, 0)]["version"], "10.0.0");

        // Start-up's reading: the same, without the audit entries.
        let dir_entry = PackageDir::of(&store, &name);
        let Found::Record(Ok(loaded)) = Found::in_dir::<IgnoredAny>(&dir_entry) else {
            panic!("a committed package");
        };
        assert_eq!(loaded.versions, record.versions);
        assert_eq!(loaded.events, record.events);
        assert!(loaded.changes.is_empty());
    }

    #[test]
    fn a_record_split_into_its_files_is_put_together_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let name = PackageName::parse("gren-lang/core").unwrap();
        let mut versions = vec![version(&name, "1.0.0", 1), version(&name, "1.0.1", 2)];
        versions[0].version.revoked = Some(Revocation {
            at: Timestamp::now(),
            reason: "broken".into(),
        });
        versions[0].outline = Some(serde_json::Map::new());
        let mut package = PackageFile::new(name.clone(), false);
        package.events.push(Event {
            seq: 3,
            at: Timestamp::now(),
            kind: EventKind::Public,
            package: name.clone(),
            version: None,
            sha256: String::new(),
            token: None,
        });
        package.changes.push(PackageChange {
            at: Timestamp::now(),
            actor: "me@example.com".into(),
            token: None,
            action: Action::PrivacyChanged {
                package: name.to_string(),
                private: false,
            },
        });
        // One time for all, as milliseconds read back: the order of entries
        // of one time is the order they were read in.
        let at = package.created;
        package.changes[0].at = at;
        versions.iter_mut().for_each(|file| file.changes[0].at = at);
        let record = assemble(package, versions);
        write_all(&store, record.clone()).unwrap();
        let read = read_history(&store, &name).unwrap().unwrap();
        assert_eq!(
            serde_json::to_value(&read).unwrap(),
            serde_json::to_value(&record).unwrap()
        );
        let first: VersionFile = store
            .read_json(&layout::version_record(&name, Version::new(1, 0, 0)))
            .unwrap()
            .unwrap();
        assert_eq!((first.events.len(), first.changes.len()), (1, 1), "its own history");
        assert!(first.outline.is_some());
        let package: PackageFile = store.read_json(&layout::package(&name)).unwrap().unwrap();
        assert_eq!(
            (package.events.len(), package.changes.len()),
            (1, 1),
            "the privacy change's"
        );
    }

    #[test]
    fn a_directory_without_package_json_or_without_a_version_file_is_uncommitted() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let name = PackageName::parse("gren-lang/core").unwrap();
        let file = version(&name, "1.0.0", 1);
        store
            .write_json(&layout::version_record(&name, Version::new(1, 0, 0)), &file)
            .unwrap();
        let package = PackageDir::of(&store, &name);
        assert!(matches!(Found::in_dir::<IgnoredAny>(&package), Found::Uncommitted));
        assert_eq!(Found::committed(&package, &["1.0.0.json".into()]), Some(false));

        store
            .write_json(&layout::package(&name), &PackageFile::new(name.clone(), true))
            .unwrap();
        assert!(matches!(Found::in_dir::<IgnoredAny>(&package), Found::Record(Ok(_))));
        assert_eq!(Found::committed(&package, &["1.0.0.json".into()]), Some(true));
        std::fs::remove_file(store.full_path(&layout::version_record(&name, Version::new(1, 0, 0)))).unwrap();
        assert!(
            matches!(Found::in_dir::<IgnoredAny>(&package), Found::Uncommitted),
            "package.json alone, as a first publish writes it before its commit"
        );
    }

    #[test]
    fn a_version_file_holding_another_version_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let name = PackageName::parse("gren-lang/core").unwrap();
        store
            .write_json(&layout::package(&name), &PackageFile::new(name.clone(), false))
            .unwrap();
        let misfiled = layout::version_record(&name, Version::new(2, 0, 0));
        store.write_json(&misfiled, &version(&name, "1.0.0", 1)).unwrap();
        let Found::Record(Err(err)) = Found::in_dir::<IgnoredAny>(&PackageDir::of(&store, &name)) else {
            panic!("refused");
        };
        assert!(err.path().ends_with("packages/gren-lang/core/2.0.0.json"), "{err:?}");
        assert_eq!(err.to_string(), "it holds version 1.0.0");
        let err = read_history(&store, &name).unwrap_err();
        assert!(err.to_string().contains("2.0.0.json"), "{err}");
    }
}
