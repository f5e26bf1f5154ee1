//! Packages and their versions: records, the in-memory catalog that answers
//! queries, publishing and revocation ([`publish`]) and the public event log
//! ([`events`]).
//!
//! On disk, per package (author in lower case, as identity keys are; the
//! paths are [`layout`]'s):
//!
//! ```text
//! packages/<author>/<project>/package.json              the record: privacy and every version
//! packages/<author>/<project>/<version>/outline.json    the version's gren.json
//! packages/<author>/<project>/<version>/<file>.pkg.gz   the bundle, bytes as uploaded
//! ```
//!
//! `package.json` is the commit point of a publish, revocation or privacy
//! change: bundle and outline are written before it, and a bundle is deleted
//! only after the record says the version is revoked. It also says what the
//! public event log last said about each version (`announced`), so that a
//! package going public again tells mirrors exactly what they missed.

pub mod bundle_cache;
mod error;
pub mod events;
pub mod name;
pub mod publish;
pub mod version;

pub use error::PackageError;
pub use name::PackageName;
pub use version::{Range, Version};

use crate::identity::IdentityName;
use crate::store::layout::{self, PackageDir};
use crate::store::{Operation, Store, StoreError, read_ignoring_poison, write_ignoring_poison};
use crate::time::Timestamp;
use events::{EventKind, NewEvent};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::path::Path;
use std::sync::{Arc, RwLock};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PackageRecord {
    pub name: PackageName,
    pub private: bool,
    pub created: Timestamp,
    /// Ascending by version.
    pub versions: Vec<VersionRecord>,
    /// The sequence number of the newest public event about this package:
    /// events above it were never committed (see [`events`]).
    #[serde(default)]
    pub last_event: u64,
    /// The kind of the last public event about each version (`publish` or
    /// `revoke`): what mirrors were told. Versions the log never mentioned
    /// (published while private) are absent. `None` only in records written
    /// before this was kept, until [`events::learn_announcements`] reads it
    /// from the log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub announced: Option<BTreeMap<Version, EventKind>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionRecord {
    pub version: Version,
    #[serde(rename = "gren-version")]
    pub gren_version: Range,
    pub platform: String,
    pub summary: String,
    pub published: Timestamp,
    /// SHA-256 (hex) of the bundle bytes as uploaded.
    pub sha256: String,
    pub size: u64,
    pub revoked: Option<Revocation>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Revocation {
    pub at: Timestamp,
    pub reason: String,
}

impl PackageRecord {
    pub fn version(&self, version: Version) -> Option<&VersionRecord> {
        self.versions.iter().find(|record| record.version == version)
    }

    /// Whether the version directory called `dir_name` holds a version this
    /// record committed.
    pub fn lists_version_dir(&self, dir_name: &str) -> bool {
        Version::parse(dir_name).is_some_and(|version| self.version(version).is_some())
    }

    fn live(&self) -> impl DoubleEndedIterator<Item = &VersionRecord> {
        self.versions.iter().filter(|record| record.revoked.is_none())
    }

    /// The highest unrevoked version for compiler `gren` (when given) and
    /// platform `platform` (when given: equal, or `common`).
    pub fn latest(&self, gren: Option<Version>, platform: Option<&str>) -> Option<&VersionRecord> {
        self.live().rev().find(|record| {
            gren.is_none_or(|gren| record.gren_version.contains(gren))
                && platform.is_none_or(|platform| record.platform == platform || record.platform == "common")
        })
    }

    /// The highest unrevoked version below `version`.
    pub fn previous(&self, version: Version) -> Option<&VersionRecord> {
        self.live().rev().find(|record| record.version < version)
    }

    /// The kind of the last public event about `version`, if any.
    pub fn announced(&self, version: Version) -> Option<EventKind> {
        self.announced.as_ref()?.get(&version).copied()
    }

    /// The `kind` event announcing `version` (with its bundle's SHA-256),
    /// noted as what mirrors now know; `None` for a version the record lacks.
    pub fn announce(&mut self, kind: EventKind, version: Version) -> Option<NewEvent> {
        let sha256 = self.version(version)?.sha256.clone();
        self.announced.get_or_insert_default().insert(version, kind);
        Some(NewEvent {
            kind,
            version: Some(version),
            sha256,
            token: None,
        })
    }

    /// The events that bring mirrors up to date as the package goes public:
    /// `public`, then a `revoke` for each version they saw published that was
    /// revoked meanwhile, and a `publish` for each live one they never saw.
    pub fn going_public(&mut self) -> Vec<NewEvent> {
        let mut events = vec![NewEvent::about_package(EventKind::Public)];
        let versions: Vec<(Version, bool)> = self
            .versions
            .iter()
            .map(|version| (version.version, version.revoked.is_some()))
            .collect();
        for (version, revoked) in versions {
            let seen_live = self.announced(version) == Some(EventKind::Publish);
            let missed = match (revoked, seen_live) {
                (true, true) => Some(EventKind::Revoke),
                (false, false) => Some(EventKind::Publish),
                _ => None,
            };
            events.extend(missed.and_then(|kind| self.announce(kind, version)));
        }
        events
    }
}

/// Every package record, in memory: queries never touch the disk. Loaded at
/// start-up from the records, replaced whenever a record is committed.
#[derive(Default)]
pub struct Catalog {
    packages: RwLock<BTreeMap<String, Arc<PackageRecord>>>,
    /// `GET /packages/<a>/<p>` answers, serialized once per change: the
    /// most frequent metadata request costs a copy, not a serialization.
    views: RwLock<HashMap<String, Arc<Vec<u8>>>>,
}

impl Catalog {
    /// Loads every package record. With `repair`, also removes the debris of
    /// interrupted changes: files of versions the record never committed, and
    /// bundles of revoked versions (deleted just after their revocation).
    pub fn load(store: &Store, repair: bool) -> Result<Catalog, StoreError> {
        let catalog = Catalog::default();
        let packages = store.full_path(&layout::packages_dir());
        let scanned = Catalog::scan(store).map_err(StoreError::io(Operation::List, &packages))?;
        for (dir, found) in scanned {
            match found {
                Found::Record(Ok(record)) => {
                    if repair {
                        remove_debris(store, &record)?;
                    }
                    catalog.put(record);
                }
                Found::Record(Err(RecordError::Read(err))) => {
                    return Err(StoreError::io(Operation::Read, &dir.record())(err));
                }
                Found::Record(Err(RecordError::Parse(source))) => {
                    return Err(StoreError::Corrupt {
                        path: dir.record(),
                        source,
                    });
                }
                // The first publish of a package was interrupted before its commit.
                Found::Uncommitted if repair => {
                    log::warn!(
                        "removing {}: a package whose first version was never committed",
                        dir.path().display()
                    );
                    std::fs::remove_dir_all(dir.path()).map_err(StoreError::io(Operation::Remove, dir.path()))?;
                }
                Found::Uncommitted | Found::NotADirectory => {}
            }
        }
        Ok(catalog)
    }

    /// What each entry under `packages/<author>/` holds, sorted: the one walk
    /// of the package directories, which [`Catalog::load`] and `admin fsck`
    /// share. Fails only when a directory cannot be listed.
    pub fn scan(store: &Store) -> io::Result<Vec<(PackageDir, Found)>> {
        let dirs = layout::package_dirs(store)?;
        Ok(dirs
            .into_iter()
            .map(|dir| {
                let found = if !dir.path().is_dir() {
                    Found::NotADirectory
                } else if dir.record().try_exists().is_ok_and(|exists| !exists) {
                    // Only a record known to be absent makes a directory
                    // debris: an unreadable one (EACCES, EIO) is reported
                    // by reading it, never deleted.
                    Found::Uncommitted
                } else {
                    Found::Record(read_record(&dir.record()))
                };
                (dir, found)
            })
            .collect())
    }

    pub fn get(&self, name: &PackageName) -> Option<Arc<PackageRecord>> {
        read_ignoring_poison(&self.packages).get(&name.key()).cloned()
    }

    pub fn put(&self, record: PackageRecord) {
        let key = record.name.key();
        // Lock order, here and in `view`: packages, then views.
        let mut packages = write_ignoring_poison(&self.packages);
        write_ignoring_poison(&self.views).remove(&key);
        packages.insert(key, Arc::new(record));
    }

    /// The JSON of a package's page ([`crate::api::PackagePage`]).
    pub fn view(&self, record: &PackageRecord) -> Arc<Vec<u8>> {
        let key = record.name.key();
        if let Some(view) = read_ignoring_poison(&self.views).get(&key) {
            return view.clone();
        }
        let view = crate::api::PackagePage {
            name: Cow::Borrowed(&record.name),
            private: record.private,
            versions: Cow::Borrowed(&record.versions),
        };
        let bytes = Arc::new(serde_json::to_vec(&view).expect("records serialize"));
        // Only cache what is still current: a put may have raced this view.
        // Holding the packages lock keeps the next put out until it is cached.
        let packages = read_ignoring_poison(&self.packages);
        if packages.get(&key).is_some_and(|now| std::ptr::eq(&**now, record)) {
            write_ignoring_poison(&self.views).insert(key, bytes.clone());
        }
        bytes
    }

    pub fn all(&self) -> Vec<Arc<PackageRecord>> {
        read_ignoring_poison(&self.packages).values().cloned().collect()
    }

    /// Another package whose bundles the compiler would give the same file
    /// names (compared without case, as macOS and Windows file systems do).
    pub fn file_name_twin(&self, name: &PackageName) -> Option<Arc<PackageRecord>> {
        let (key, stem) = (name.key(), name.file_stem().to_ascii_lowercase());
        read_ignoring_poison(&self.packages)
            .values()
            .find(|record| record.name.key() != key && record.name.file_stem().to_ascii_lowercase() == stem)
            .cloned()
    }

    /// The packages of one identity.
    pub fn of_identity(&self, identity: &IdentityName) -> Vec<Arc<PackageRecord>> {
        let prefix = format!("{}/", identity.key());
        read_ignoring_poison(&self.packages)
            .range(prefix.clone()..)
            .take_while(|(key, _)| key.starts_with(&prefix))
            .map(|(_, record)| record.clone())
            .collect()
    }
}

/// What [`Catalog::scan`] found in one entry under `packages/<author>/`.
pub enum Found {
    /// A directory without `package.json`: the first publish of a package,
    /// interrupted before its commit.
    Uncommitted,
    /// A file where a package directory belongs: no package lives there.
    NotADirectory,
    /// `package.json`, or why it could not be read.
    Record(Result<PackageRecord, RecordError>),
}

/// Why a package record could not be read; the message names no path.
#[derive(Debug)]
pub enum RecordError {
    Read(io::Error),
    Parse(serde_json::Error),
}

impl std::fmt::Display for RecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecordError::Read(err) => err.fmt(f),
            RecordError::Parse(err) => err.fmt(f),
        }
    }
}

fn read_record(path: &Path) -> Result<PackageRecord, RecordError> {
    let bytes = std::fs::read(path).map_err(RecordError::Read)?;
    serde_json::from_slice(&bytes).map_err(RecordError::Parse)
}

/// Removes version directories that `record` does not list and bundles of
/// its revoked versions.
fn remove_debris(store: &Store, record: &PackageRecord) -> Result<(), StoreError> {
    let package = PackageDir::of(store, &record.name);
    let versions = package
        .version_dirs()
        .map_err(StoreError::io(Operation::List, package.path()))?;
    for (name, path) in versions {
        if !record.lists_version_dir(&name) {
            log::warn!("removing {}: a version that was never committed", path.display());
            std::fs::remove_dir_all(&path).map_err(StoreError::io(Operation::Remove, &path))?;
        }
    }
    for version in record.versions.iter().filter(|version| version.revoked.is_some()) {
        if store.remove(&layout::version_bundle(&record.name, version.version))? {
            log::warn!("removed the bundle of revoked {} {}", record.name, version.version);
        }
    }
    Ok(())
}

/// Identity keys whose private packages a caller may see.
pub type Visibility = HashSet<String>;

/// Looks a package up for a caller; private packages of identities the
/// caller is not in are as absent as unknown ones.
pub fn find_visible(
    catalog: &Catalog,
    name: &PackageName,
    visible: &Visibility,
) -> Result<Arc<PackageRecord>, PackageError> {
    match catalog.get(name) {
        Some(record) if !record.private || visible.contains(&name.author.to_ascii_lowercase()) => Ok(record),
        _ => Err(PackageError::NotFound { name: name.clone() }),
    }
}

/// One line of a package listing.
#[derive(Debug, Serialize, Deserialize)]
pub struct ListingEntry {
    pub name: PackageName,
    pub summary: String,
    pub latest: Version,
    pub private: bool,
}

/// The listing line of a package: its latest version (for compiler `gren`,
/// when given); `None` when no version qualifies.
pub fn listing_entry(record: &PackageRecord, gren: Option<Version>) -> Option<ListingEntry> {
    record.latest(gren, None).map(|latest| ListingEntry {
        name: record.name.clone(),
        summary: latest.summary.clone(),
        latest: latest.version,
        private: record.private,
    })
}

/// The packages of an identity as shown on its page: all of them for
/// members, public ones for everyone else.
pub fn listing_for_identity(catalog: &Catalog, name: &IdentityName, member: bool) -> Vec<ListingEntry> {
    catalog
        .of_identity(name)
        .iter()
        .filter(|record| member || !record.private)
        .filter_map(|record| listing_entry(record, None))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(versions: &[(&str, &str, &str, bool)]) -> PackageRecord {
        PackageRecord {
            name: PackageName::parse("blaix/gren-ws4sql").unwrap(),
            private: false,
            created: Timestamp::now(),
            versions: versions
                .iter()
                .map(|(version, gren, platform, revoked)| VersionRecord {
                    version: Version::parse(version).unwrap(),
                    gren_version: Range::parse(gren).unwrap(),
                    platform: platform.to_string(),
                    summary: String::new(),
                    published: Timestamp::now(),
                    sha256: String::new(),
                    size: 0,
                    revoked: revoked.then(|| Revocation {
                        at: Timestamp::now(),
                        reason: "x".into(),
                    }),
                })
                .collect(),
            last_event: 0,
            announced: Some(BTreeMap::new()),
        }
    }

    fn event_list(events: &[NewEvent]) -> Vec<(EventKind, Option<String>)> {
        events
            .iter()
            .map(|event| (event.kind, event.version.map(|version| version.to_string())))
            .collect()
    }

    #[test]
    fn the_loader_and_fsck_see_every_package_directory_the_same_way() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let committed = record(&[("1.0.0", "0.6.0 <= v < 0.7.0", "common", false)]);
        store.write_json(&layout::package(&committed.name), &committed).unwrap();
        let debris = layout::version_dir(&committed.name, Version::new(9, 9, 9));
        std::fs::create_dir_all(store.full_path(&debris)).unwrap();
        let interrupted = PackageName::parse("blaix/ghost").unwrap();
        std::fs::create_dir_all(store.full_path(&layout::package_dir(&interrupted))).unwrap();
        std::fs::write(dir.path().join("packages/blaix/stray"), b"").unwrap();
        let found: Vec<(String, &str)> = Catalog::scan(&store)
            .unwrap()
            .into_iter()
            .map(|(package, found)| {
                let kind = match found {
                    Found::Uncommitted => "uncommitted",
                    Found::NotADirectory => "not a directory",
                    Found::Record(Ok(_)) => "record",
                    Found::Record(Err(_)) => "unreadable",
                };
                let name = package.path().file_name().unwrap().to_string_lossy().into_owned();
                (name, kind)
            })
            .collect();
        let expected = [
            ("ghost", "uncommitted"),
            ("gren-ws4sql", "record"),
            ("stray", "not a directory"),
        ];
        assert_eq!(found, expected.map(|(name, kind)| (name.to_string(), kind)));

        let catalog = Catalog::load(&store, true).unwrap();
        assert!(catalog.get(&committed.name).is_some());
        assert!(
            !store.full_path(&debris).exists(),
            "a version never committed is removed"
        );
        assert!(!store.full_path(&layout::package_dir(&interrupted)).exists());
        assert!(
            dir.path().join("packages/blaix/stray").exists(),
            "a stray file is passed by"
        );

        std::fs::write(store.full_path(&layout::package(&committed.name)), b"{").unwrap();
        let err = Catalog::load(&store, false)
            .err()
            .expect("a damaged record stops the loader");
        assert!(
            err.to_string().contains("packages/blaix/gren-ws4sql/package.json"),
            "{err}"
        );
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    }

    #[test]
    fn going_public_tells_mirrors_what_they_missed_and_nothing_else() {
        let v = |text| Version::parse(text).unwrap();
        let mut record = record(&[
            ("1.0.0", "0.6.0 <= v < 0.7.0", "common", true), // seen published, revoked since
            ("1.0.1", "0.6.0 <= v < 0.7.0", "common", false), // seen published
            ("1.0.2", "0.6.0 <= v < 0.7.0", "common", true), // seen revoked
            ("1.0.3", "0.6.0 <= v < 0.7.0", "common", true), // never seen, revoked
            ("1.0.4", "0.6.0 <= v < 0.7.0", "common", false), // never seen
        ]);
        let seen = [
            ("1.0.0", EventKind::Publish),
            ("1.0.1", EventKind::Publish),
            ("1.0.2", EventKind::Revoke),
        ];
        record.announced = Some(seen.iter().map(|(version, kind)| (v(version), *kind)).collect());
        let events = record.going_public();
        assert_eq!(
            event_list(&events),
            [
                (EventKind::Public, None),
                (EventKind::Revoke, Some("1.0.0".to_string())),
                (EventKind::Publish, Some("1.0.4".to_string())),
            ]
        );
        assert_eq!(record.announced(v("1.0.0")), Some(EventKind::Revoke));
        assert_eq!(record.announced(v("1.0.3")), None);
        assert_eq!(record.announced(v("1.0.4")), Some(EventKind::Publish));
        assert_eq!(
            event_list(&record.going_public()),
            [(EventKind::Public, None)],
            "a second time, mirrors know everything"
        );
    }

    #[test]
    fn latest_honours_compiler_platform_and_revocation() {
        let record = record(&[
            ("2.0.0", "0.5.0 <= v < 0.6.0", "node", false),
            ("3.0.0", "0.6.0 <= v < 0.7.0", "node", false),
            ("3.1.0", "0.6.0 <= v < 0.7.0", "browser", false),
            ("3.2.0", "0.6.0 <= v < 0.7.0", "common", true),
        ]);
        let v = |text| Version::parse(text).unwrap();
        assert_eq!(record.latest(None, None).unwrap().version, v("3.1.0"));
        assert_eq!(record.latest(Some(v("0.5.4")), None).unwrap().version, v("2.0.0"));
        assert_eq!(
            record.latest(Some(v("0.6.3")), Some("node")).unwrap().version,
            v("3.0.0")
        );
        assert!(record.latest(Some(v("0.7.0")), None).is_none());
        assert_eq!(record.previous(v("3.1.0")).unwrap().version, v("3.0.0"));
        assert_eq!(record.previous(v("2.9.9")).unwrap().version, v("2.0.0"));
        assert!(record.previous(v("2.0.0")).is_none());
        assert_eq!(
            record.previous(v("9.0.0")).unwrap().version,
            v("3.1.0"),
            "revoked versions are skipped"
        );
    }
}
