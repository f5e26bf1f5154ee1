//! Packages and their versions: records, the in-memory catalog that answers
//! queries, publishing and revocation ([`publish`]) and the public event log
//! ([`events`]).
//!
//! On disk, per package (author in lower case, as identity keys are; the
//! paths are [`layout`]'s, the files [`records`]'):
//!
//! ```text
//! packages/<author>/<project>/package.json       the package: privacy; its privacy changes' events and audit entries
//! packages/<author>/<project>/<version>.json     a version: its record; its publish's and revocation's events and audit entries
//! packages/<author>/<project>/<file>.pkg.gz      a live version's bundle, bytes as uploaded
//! ```
//!
//! Each change has one commit point, which carries everything the change
//! says: the version, the public events it appended ([`events`]) and who
//! made it and when (the identity's audit entries for the package,
//! `changes`). A publish commits by writing the new version's record, a
//! revocation by rewriting it, a privacy change by rewriting `package.json`;
//! none reads or writes the other versions' records, so a change costs the
//! same at 10 versions as at 10,000. A publish stages its bundle beside the
//! record before writing it, so one directory fsync commits both; a bundle
//! is deleted only after its record says the version is revoked. What the
//! outline of a version says is read from its bundle.
//!
//! At start-up, [`Catalog::load`] reads every record, and
//! [`Catalog::clear_debris`] removes only what an interrupted change
//! leaves: a bundle no record lists yet (a publish that never committed), the
//! bundle of a revoked version (a revocation that committed but did not get
//! to delete it), and the directory of a first publish holding its marker
//! (`first-publish.pending`, written before the bundle and `package.json`,
//! removed after the commit), that bundle and that `package.json`. Anything
//! else it cannot explain is moved to `quarantine/` and reported, never
//! deleted; and nothing is touched before the records were found consistent
//! (an event log without a gap).

pub mod bundle_cache;
mod error;
pub mod events;
pub mod name;
pub mod publish;
pub mod records;
pub mod version;

pub use error::PackageError;
pub use name::PackageName;
pub use records::{Found, RecordError};
pub use version::{Range, Version};

use crate::identity::{Action, AuditEntry, IdentityName};
use crate::store::layout::{self, PackageDir};
use crate::store::{Operation, Store, StoreError, read_ignoring_poison, write_ignoring_poison};
use crate::time::Timestamp;
use events::{Event, EventKind, NewEvent};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::path::Path;
use std::sync::{Arc, RwLock};

/// A package as its files tell it ([`records::assemble`]). Serialized, it
/// is the `package.json` of data format 2, which held all of it: only
/// `admin migrate` reads and writes that.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PackageRecord {
    pub name: PackageName,
    pub private: bool,
    pub created: Timestamp,
    /// Ascending by version.
    pub versions: Vec<VersionRecord>,
    /// The public events this package's changes appended to the log,
    /// oldest first ([`events`]): the log is gathered from these. Like
    /// `changes`, the package's history: empty in the [`Catalog`]'s copies
    /// (the log holds the events once; audit reads and changes read the
    /// records from disk), so memory does not grow with history twice.
    pub events: Vec<Event>,
    /// Who published, revoked and changed privacy, and when: the entries
    /// the identity's audit log shows for this package, oldest first.
    pub changes: Vec<PackageChange>,
    /// The outlines (`gren.json`) of revoked versions, kept from their
    /// bundles when those were deleted: a live version's is in its bundle.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub revoked_outlines: BTreeMap<Version, serde_json::Map<String, serde_json::Value>>,
}

/// A change to a package as its identity's audit log tells it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PackageChange {
    pub at: Timestamp,
    pub actor: String,
    /// The automation token the actor used (id and name), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<crate::auth::token::TokenRef>,
    #[serde(flatten)]
    pub action: Action,
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
        let found = self.versions.binary_search_by_key(&version, |record| record.version);
        found.ok().map(|index| &self.versions[index])
    }

    /// Adds `version` in its place (or puts it over the record of the same
    /// number), keeping the versions ascending.
    pub fn put_version(&mut self, version: VersionRecord) {
        match self
            .versions
            .binary_search_by_key(&version.version, |record| record.version)
        {
            Ok(index) => self.versions[index] = version,
            Err(index) => self.versions.insert(index, version),
        }
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

    /// The kind of the last public event about `version`, if any: what
    /// mirrors were told.
    pub fn announced(&self, version: Version) -> Option<EventKind> {
        let about = |event: &&Event| event.version == Some(version);
        self.events.iter().rev().find(about).map(|event| event.kind)
    }

    /// The audit entries its versions' history needs and `changes` lacks
    /// (each version's publish, and its revocation when revoked), with the
    /// time each should have: what `admin fsck` reports and `admin migrate`
    /// restores.
    pub fn missing_audit_entries(&self) -> Vec<(Timestamp, Action)> {
        let audited = |wanted: &Action| self.changes.iter().any(|change| change.action.same_change(wanted));
        let mut missing = Vec::new();
        for version in &self.versions {
            let (package, number) = (self.name.to_string(), version.version.to_string());
            let published = Action::Published {
                package: package.clone(),
                version: number.clone(),
            };
            missing.push((version.published, published));
            if let Some(revoked) = &version.revoked {
                let reason = revoked.reason.clone();
                missing.push((
                    revoked.at,
                    Action::Revoked {
                        package,
                        version: number,
                        reason,
                    },
                ));
            }
        }
        missing.retain(|(_, action)| !audited(action));
        missing
    }

    /// The `kind` event announcing `version` (with its bundle's SHA-256);
    /// `None` for a version the record lacks.
    pub fn announce(&self, kind: EventKind, version: Version) -> Option<NewEvent> {
        self.version(version)
            .map(|record| NewEvent::about_version(kind, record))
    }

    /// The events that bring mirrors up to date as the package goes public:
    /// `public`, then what they missed ([`PackageRecord::missed`]).
    pub fn going_public(&self) -> Vec<NewEvent> {
        let mut events = vec![NewEvent::about_package(EventKind::Public)];
        events.extend(self.missed());
        events
    }

    /// What mirrors missed: a `revoke` for each version they saw published
    /// that is revoked, and a `publish` for each live one they never saw.
    pub fn missed(&self) -> Vec<NewEvent> {
        let mut events = Vec::new();
        for version in &self.versions {
            let seen_live = self.announced(version.version) == Some(EventKind::Publish);
            let missed = match (version.revoked.is_some(), seen_live) {
                (true, true) => Some(EventKind::Revoke),
                (false, false) => Some(EventKind::Publish),
                _ => None,
            };
            events.extend(missed.and_then(|kind| self.announce(kind, version.version)));
        }
        events
    }
}

/// Every package record, in memory: queries never touch the disk. Loaded at
/// start-up from the records, replaced whenever a record is committed.
#[derive(Default)]
pub struct Catalog {
    packages: RwLock<BTreeMap<String, Arc<PackageRecord>>>,
    /// `GET /packages/<a>/<p>` answers and the version answers of `latest`
    /// and `previous`, serialized once per change: the most frequent
    /// metadata requests cost a copy, not a serialization and a hash.
    views: RwLock<HashMap<String, PackageViews>>,
}

/// What [`Catalog`] keeps serialized of one package until it changes: its
/// page, and the answer about each version a query has named (at most one
/// per version, about 300 bytes each).
#[derive(Default)]
struct PackageViews {
    page: Option<PageView>,
    versions: HashMap<Version, PageView>,
}

/// Which of a package's [`PackageViews`].
#[derive(Clone, Copy)]
enum ViewOf {
    Page,
    Version(Version),
}

impl PackageViews {
    fn get(&self, of: ViewOf) -> Option<&PageView> {
        match of {
            ViewOf::Page => self.page.as_ref(),
            ViewOf::Version(version) => self.versions.get(&version),
        }
    }

    fn set(&mut self, of: ViewOf, view: PageView) {
        match of {
            ViewOf::Page => self.page = Some(view),
            ViewOf::Version(version) => {
                self.versions.insert(version, view);
            }
        }
    }
}

impl Catalog {
    /// Loads every package record, and returns their events with it (see
    /// [`PackageRecord::events`]). Changes nothing on disk: see
    /// [`Catalog::clear_debris`].
    pub fn load(store: &Store) -> Result<(Catalog, Vec<Event>), StoreError> {
        let catalog = Catalog::default();
        let loaded = in_parallel(store, |dirs| catalog.load_dirs(dirs))?;
        let mut events = Vec::new();
        for share in loaded {
            events.extend(share?);
        }
        Ok((catalog, events))
    }

    /// Loads the package directories `dirs` into the catalog; returns their events.
    fn load_dirs(&self, dirs: &[PackageDir]) -> Result<Vec<Event>, StoreError> {
        let mut events = Vec::new();
        for dir in dirs {
            // The audit entries are passed over unparsed: the catalog keeps
            // no history, and parsing them is a third of a start's work.
            match Found::in_dir::<serde::de::IgnoredAny>(dir) {
                Found::Record(Ok(mut record)) => {
                    events.append(&mut record.events);
                    self.put(record);
                }
                Found::Record(Err(err)) => return Err(err.into_store_error()),
                Found::Uncommitted | Found::NotADirectory => {}
            }
        }
        Ok(events)
    }

    /// Clears what interrupted changes left in the package directories (see
    /// the module's header): removes what they exactly explain, quarantines
    /// anything else. Best-effort; run once the loaded records were found
    /// consistent (an event log without a gap), so that a start refused for
    /// a lost record has touched nothing.
    pub fn clear_debris(&self, store: &Store) -> Result<(), StoreError> {
        in_parallel(store, |dirs| {
            for dir in dirs.iter().filter(|dir| dir.path().is_dir()) {
                let names = match dir.file_names() {
                    Ok(names) => names,
                    Err(err) => {
                        // Unknowable: left alone (fsck reports it).
                        log::error!("cannot list {}: {err}", dir.path().display());
                        continue;
                    }
                };
                let record = match Found::committed(dir, &names) {
                    Some(true) => match dir.package_name().and_then(|name| self.get(&name)) {
                        Some(record) => Some(record),
                        // A record the catalog does not hold under this
                        // name: fsck reports it; nothing here is debris.
                        None => continue,
                    },
                    Some(false) => None,
                    // Unknowable: left alone (fsck reports it).
                    None => continue,
                };
                clear_debris_or_log(store, dir, &names, record.as_deref());
            }
        })?;
        Ok(())
    }

    /// What each entry under `packages/<author>/` holds, sorted: the one walk
    /// of the package directories, which [`Catalog::load`] and `admin fsck`
    /// share. Fails only when a directory cannot be listed. Each record is
    /// read as the walk reaches it, so only one is whole in memory at a time.
    pub fn scan(store: &Store) -> io::Result<impl Iterator<Item = (PackageDir, Found)>> {
        let dirs = layout::package_dirs(store)?;
        Ok(dirs.into_iter().map(|dir| {
            let found = Found::in_dir::<Vec<PackageChange>>(&dir);
            (dir, found)
        }))
    }

    pub fn get(&self, name: &PackageName) -> Option<Arc<PackageRecord>> {
        read_ignoring_poison(&self.packages).get(&name.key()).cloned()
    }

    /// Keeps `record`, without its history (see [`PackageRecord::events`]).
    pub fn put(&self, mut record: PackageRecord) {
        record.events = Vec::new();
        record.changes = Vec::new();
        let key = record.name.key();
        // Lock order, here and in `view`: packages, then views.
        let mut packages = write_ignoring_poison(&self.packages);
        write_ignoring_poison(&self.views).remove(&key);
        packages.insert(key, Arc::new(record));
    }

    /// Changes the kept record of `name` by `change` (a version published or
    /// revoked, its privacy): in place when no request holds it, else on a
    /// copy that replaces it. So a change to a package of 10,000 versions
    /// does not copy them all each time; and a view made from the record a
    /// request holds is still never kept for the changed one (see
    /// [`Catalog::cached`]: it holds a copy, so this changes another).
    pub fn update(&self, name: &PackageName, change: impl FnOnce(&mut PackageRecord)) {
        let key = name.key();
        let mut packages = write_ignoring_poison(&self.packages);
        write_ignoring_poison(&self.views).remove(&key);
        if let Some(record) = packages.get_mut(&key) {
            change(Arc::make_mut(record));
        }
    }

    /// The JSON of a package's page ([`crate::api::PackagePage`]), with its
    /// strong validator.
    pub fn view(&self, record: &PackageRecord) -> PageView {
        let page = || crate::api::PackagePage {
            name: Cow::Borrowed(&record.name),
            private: record.private,
            versions: Cow::Borrowed(&record.versions),
        };
        self.cached(record, ViewOf::Page, page)
    }

    /// The JSON of the answer about `version` of `record` that `latest` and
    /// `previous` give ([`crate::api::VersionAnswer`]), with its strong
    /// validator.
    pub fn version_view(&self, record: &PackageRecord, version: &VersionRecord) -> PageView {
        let answer = || crate::api::VersionAnswer {
            name: Cow::Borrowed(&record.name),
            version: Cow::Borrowed(version),
        };
        self.cached(record, ViewOf::Version(version.version), answer)
    }

    /// `record`'s view `of`, made from `answer` unless cached.
    fn cached<T: serde::Serialize>(&self, record: &PackageRecord, of: ViewOf, answer: impl FnOnce() -> T) -> PageView {
        let key = record.name.key();
        if let Some(view) = read_ignoring_poison(&self.views)
            .get(&key)
            .and_then(|views| views.get(of))
        {
            return view.clone();
        }
        let bytes = serde_json::to_vec(&answer()).expect("records serialize");
        let view = PageView {
            etag: format!("\"{}\"", crate::auth::secret::sha256_hex(&bytes)).into(),
            bytes: Arc::new(bytes),
        };
        // Only cache what is still current: a put may have raced this view.
        // Holding the packages lock keeps the next put out until it is cached.
        let packages = read_ignoring_poison(&self.packages);
        if packages.get(&key).is_some_and(|now| std::ptr::eq(&**now, record)) {
            write_ignoring_poison(&self.views)
                .entry(key)
                .or_default()
                .set(of, view.clone());
        }
        view
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

/// A package page, serialized once per change, and its `ETag` (hashed
/// once with it rather than for every request).
#[derive(Clone)]
pub struct PageView {
    pub bytes: Arc<Vec<u8>>,
    pub etag: Arc<str>,
}

/// What start-up makes of an entry of a package directory.
#[derive(Debug, PartialEq, Eq)]
pub enum Leftover {
    /// A version's record, a live version's bundle, or a temporary file
    /// (the store's sweep takes those): nothing to do.
    Expected,
    /// A bundle the record does not list (a publish interrupted before its
    /// commit) or lists as revoked (a revocation interrupted after it).
    Debris,
    /// Anything else: moved to `quarantine/` and reported.
    Unexplained,
}

/// Runs `work` over the package directories, one share of them a core:
/// reading them is most of a start.
fn in_parallel<T: Send>(store: &Store, work: impl Fn(&[PackageDir]) -> T + Sync) -> Result<Vec<T>, StoreError> {
    let packages = store.full_path(&layout::packages_dir());
    let dirs = layout::package_dirs(store).map_err(StoreError::io(Operation::List, &packages))?;
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
    let share = dirs.len().div_ceil(workers).max(1);
    Ok(std::thread::scope(|scope| {
        let handles: Vec<_> = dirs.chunks(share).map(|dirs| scope.spawn(|| work(dirs))).collect();
        handles
            .into_iter()
            .map(|handle| handle.join().expect("reading package directories does not panic"))
            .collect()
    }))
}

/// Sorts the entry `file_name` of the directory of the package `record`.
pub fn classify(record: &PackageRecord, file_name: &str) -> Leftover {
    if file_name.starts_with(crate::store::TEMP_PREFIX) {
        return Leftover::Expected;
    }
    if file_name == layout::FIRST_PUBLISH_MARKER {
        // The first publish committed; removing its marker did not happen.
        return Leftover::Debris;
    }
    if let Some(version) = layout::version_of_record_file(file_name) {
        // Every version file was read into the record, or it was refused.
        return match record.version(version) {
            Some(_) => Leftover::Expected,
            None => Leftover::Unexplained,
        };
    }
    let Some(version) = record.name.version_of_bundle_file(file_name) else {
        return Leftover::Unexplained;
    };
    match record.version(version) {
        None => Leftover::Debris,
        Some(version) if version.revoked.is_some() => Leftover::Debris,
        Some(_) => Leftover::Expected,
    }
}

/// What the [`Leftover::Debris`] entry `file_name` of a package directory
/// is, for the log and `fsck`.
pub fn debris_description(file_name: &str) -> &'static str {
    if file_name == layout::FIRST_PUBLISH_MARKER {
        "the marker of a first publish that committed"
    } else {
        "the bundle of an interrupted publish or revocation"
    }
}

/// Whether a package directory without a committed version (whose entries
/// but `package.json` are `file_names`) holds exactly what an interrupted
/// first publish of `name` leaves: nothing but temporary files (killed
/// before its marker landed), or its marker (a committed package that lost
/// its records has none), one bundle at most, and temporary files (and
/// `package.json`, written before the commit).
pub fn is_interrupted_first_publish(name: &PackageName, file_names: &[String]) -> bool {
    let lasting: Vec<&String> = file_names
        .iter()
        .filter(|file| !file.starts_with(crate::store::TEMP_PREFIX))
        .collect();
    let marked = lasting.iter().any(|file| *file == layout::FIRST_PUBLISH_MARKER);
    let bundles = lasting
        .iter()
        .filter(|file| **file != layout::FIRST_PUBLISH_MARKER)
        .map(|file| name.version_of_bundle_file(file))
        .collect::<Option<Vec<Version>>>();
    lasting.is_empty() || (marked && bundles.is_some_and(|bundles| bundles.len() <= 1))
}

/// Start-up's cleaning is best-effort: a disk that refuses it leaves the
/// debris where it is (never served, noted by `admin fsck`) and the
/// registry starts all the same.
fn clear_debris_or_log(store: &Store, dir: &PackageDir, names: &[String], record: Option<&PackageRecord>) {
    if let Err(err) = clear_debris(store, dir, names, record) {
        log::error!(
            "cannot clear what an interrupted change left in {}: {}",
            dir.path().display(),
            crate::error::Chain(&err)
        );
    }
}

/// Removes the debris of interrupted changes from a package directory (its
/// entries but `package.json` are `names`) and quarantines what they do not
/// explain.
fn clear_debris(
    store: &Store,
    dir: &PackageDir,
    names: &[String],
    record: Option<&PackageRecord>,
) -> Result<(), StoreError> {
    let Some(record) = record else {
        return match dir.package_name() {
            Some(name) if is_interrupted_first_publish(&name, names) => {
                log::warn!(
                    "removing {}: a package whose first version was never committed",
                    dir.path().display()
                );
                remove_path(store, dir.path(), true)
            }
            _ => quarantine(
                store,
                dir.path(),
                "a package directory without package.json or without a version record (restore them from a backup)",
            ),
        };
    };
    for file_name in names {
        let path = dir.path().join(file_name);
        match classify(record, file_name) {
            Leftover::Expected => {}
            Leftover::Debris => {
                log::warn!("removing {}: {}", path.display(), debris_description(file_name));
                remove_path(store, &path, false)?;
            }
            Leftover::Unexplained => quarantine(store, &path, "a file no package record explains")?,
        }
    }
    Ok(())
}

fn remove_path(store: &Store, path: &Path, tree: bool) -> Result<(), StoreError> {
    let relative = store.relative(path, Operation::Remove)?;
    if tree {
        store.remove_tree(&relative)
    } else {
        store.remove(&relative)
    }
    .map(drop)
}

fn quarantine(store: &Store, path: &Path, why: &str) -> Result<(), StoreError> {
    let moved = store.quarantine(path)?;
    log::error!(
        "moved {} to {}: {why}; see `gren-registry admin fsck` and data/README.md",
        path.display(),
        moved.display()
    );
    Ok(())
}

/// The audit log of an identity as its admins see it: its member changes
/// (its own files) and the changes to its packages (their records), by
/// time, numbered from 1.
pub fn audit_log(
    store: &Store,
    catalog: &Catalog,
    name: &IdentityName,
    identity: &crate::identity::Identity,
) -> Result<Vec<AuditEntry>, StoreError> {
    let mut entries = crate::identity::audit::read(store, name, identity)?;
    for listed in catalog.of_identity(name) {
        // The catalog keeps no history: the records on disk have it.
        let Some(record) = records::read_history(store, &listed.name)? else {
            continue;
        };
        entries.extend(record.changes.iter().map(|change| AuditEntry {
            seq: 0,
            at: change.at,
            actor: change.actor.clone(),
            token: change.token.clone(),
            action: change.action.clone(),
        }));
    }
    // Stable: entries of one time keep their order (member changes first).
    entries.sort_by_key(|entry| entry.at);
    for (index, entry) in entries.iter_mut().enumerate() {
        entry.seq = index as u64 + 1;
    }
    Ok(entries)
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
            events: Vec::new(),
            changes: Vec::new(),
            revoked_outlines: BTreeMap::new(),
        }
    }

    /// Appends numbered events, as the log does when the record commits.
    fn told(record: &mut PackageRecord, events: &[NewEvent]) {
        for new in events {
            let seq = record.events.last().map_or(0, |event| event.seq) + 1;
            record.events.push(Event {
                seq,
                at: Timestamp::now(),
                kind: new.kind,
                package: record.name.clone(),
                version: new.version,
                sha256: new.sha256.clone(),
                token: None,
            });
        }
    }

    fn event_list(events: &[NewEvent]) -> Vec<(EventKind, Option<String>)> {
        events
            .iter()
            .map(|event| (event.kind, event.version.map(|version| version.to_string())))
            .collect()
    }

    #[test]
    fn start_up_removes_only_what_an_interrupted_change_leaves_and_quarantines_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let committed = record(&[
            ("1.0.0", "0.6.0 <= v < 0.7.0", "common", false),
            ("1.0.1", "0.6.0 <= v < 0.7.0", "common", true),
        ]);
        records::write_all(&store, committed.clone()).unwrap();
        let bundle =
            |name: &PackageName, v: &str| store.full_path(&layout::version_bundle(name, Version::parse(v).unwrap()));
        let write = |path: &std::path::Path| {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, b"bytes").unwrap();
        };
        let (live, revoked, unlisted) = (
            bundle(&committed.name, "1.0.0"),
            bundle(&committed.name, "1.0.1"),
            bundle(&committed.name, "9.9.9"),
        );
        let stranger = store.full_path(&layout::package_dir(&committed.name)).join("notes.txt");
        for path in [&live, &revoked, &unlisted, &stranger] {
            write(path);
        }
        // A first publish interrupted before its commit: its marker, one
        // bundle, no record; and one killed later, with its package.json
        // but not its version's record.
        let interrupted = PackageName::parse("blaix/ghost").unwrap();
        write(&bundle(&interrupted, "1.0.0"));
        write(&store.full_path(&layout::first_publish_marker(&interrupted)));
        let staged = PackageName::parse("blaix/staged").unwrap();
        write(&bundle(&staged, "1.0.0"));
        write(&store.full_path(&layout::first_publish_marker(&staged)));
        let staged_record = records::PackageFile::new(staged.clone(), false);
        store.write_json(&layout::package(&staged), &staged_record).unwrap();
        // A committed package that lost its record: the same, but no marker.
        let unrecorded = PackageName::parse("blaix/lost").unwrap();
        write(&bundle(&unrecorded, "1.0.0"));
        // One that lost its versions' records: package.json, a bundle, no marker.
        let versionless = PackageName::parse("blaix/versionless").unwrap();
        write(&bundle(&versionless, "1.0.0"));
        store
            .write_json(
                &layout::package(&versionless),
                &records::PackageFile::new(versionless.clone(), false),
            )
            .unwrap();
        // A directory that lost its record: more than a publish leaves.
        let orphan = PackageName::parse("blaix/orphan").unwrap();
        write(&bundle(&orphan, "1.0.0"));
        write(&bundle(&orphan, "1.0.1"));
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
            ("lost", "uncommitted"),
            ("orphan", "uncommitted"),
            ("staged", "uncommitted"),
            ("stray", "not a directory"),
            ("versionless", "uncommitted"),
        ];
        assert_eq!(found, expected.map(|(name, kind)| (name.to_string(), kind)));

        let (catalog, _) = Catalog::load(&store).unwrap();
        assert!(live.exists() && revoked.exists(), "loading changes nothing");
        catalog.clear_debris(&store).unwrap();
        assert!(catalog.get(&committed.name).is_some());
        assert!(live.exists(), "a live version's bundle stays");
        assert!(
            !revoked.exists() && !unlisted.exists(),
            "debris of interrupted changes is removed"
        );
        assert!(!store.full_path(&layout::package_dir(&interrupted)).exists());
        assert!(!store.full_path(&layout::package_dir(&staged)).exists());
        let quarantined: Vec<String> = walk(&dir.path().join("quarantine"));
        assert_eq!(quarantined.len(), 6, "{quarantined:?}");
        assert!(
            quarantined
                .iter()
                .any(|path| path.ends_with("packages/blaix/versionless/package.json")),
            "{quarantined:?}"
        );
        assert!(
            quarantined
                .iter()
                .any(|path| path.ends_with("packages/blaix/lost/blaix_lost__1_0_0.pkg.gz")),
            "{quarantined:?}"
        );
        assert!(
            quarantined
                .iter()
                .any(|path| path.ends_with("packages/blaix/gren-ws4sql/notes.txt")),
            "{quarantined:?}"
        );
        assert!(
            quarantined
                .iter()
                .any(|path| path.ends_with("packages/blaix/orphan/blaix_orphan__1_0_1.pkg.gz")),
            "{quarantined:?}"
        );
        assert!(!stranger.exists() && !store.full_path(&layout::package_dir(&orphan)).exists());
        assert!(
            dir.path().join("packages/blaix/stray").exists(),
            "a stray file is passed by"
        );

        let version_record = store.full_path(&layout::version_record(&committed.name, Version::new(1, 0, 1)));
        std::fs::write(&version_record, b"{").unwrap();
        let err = Catalog::load(&store).err().expect("a damaged record stops the loader");
        assert!(
            err.to_string().contains("packages/blaix/gren-ws4sql/1.0.1.json"),
            "{err}"
        );
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
        std::fs::write(store.full_path(&layout::package(&committed.name)), b"{").unwrap();
        let err = Catalog::load(&store).err().expect("a damaged record stops the loader");
        assert!(
            err.to_string().contains("packages/blaix/gren-ws4sql/package.json"),
            "{err}"
        );
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    }

    /// Every file below `dir`, as paths.
    fn walk(dir: &std::path::Path) -> Vec<String> {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if entry.path().is_dir() {
                files.extend(walk(&entry.path()));
            } else {
                files.push(entry.path().display().to_string());
            }
        }
        files
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
        let seen: Vec<NewEvent> = seen
            .iter()
            .map(|(version, kind)| record.announce(*kind, v(version)).unwrap())
            .collect();
        told(&mut record, &seen);
        let events = record.going_public();
        assert_eq!(
            event_list(&events),
            [
                (EventKind::Public, None),
                (EventKind::Revoke, Some("1.0.0".to_string())),
                (EventKind::Publish, Some("1.0.4".to_string())),
            ]
        );
        told(&mut record, &events);
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

    #[test]
    fn an_update_changes_the_kept_record_in_place_unless_a_request_holds_it() {
        let catalog = Catalog::default();
        let record = record(&[("1.0.0", "0.6.0 <= v < 0.7.0", "common", false)]);
        let name = record.name.clone();
        catalog.put(record);
        let before = Arc::as_ptr(&catalog.get(&name).unwrap());
        catalog.update(&name, |record| record.private = true);
        let after = catalog.get(&name).unwrap();
        assert!(after.private);
        assert_eq!(Arc::as_ptr(&after), before, "nobody held it: changed in place");

        let held = after;
        let view = catalog.view(&held);
        catalog.update(&name, |record| record.put_version(record_version("1.0.1")));
        let changed = catalog.get(&name).unwrap();
        assert_eq!(held.versions.len(), 1, "the request's copy is as it was");
        assert_eq!(changed.versions.len(), 2);
        assert!(!Arc::ptr_eq(&held, &changed));
        assert_ne!(
            catalog.view(&changed).etag,
            view.etag,
            "the kept view went with the change"
        );
        assert_eq!(
            changed.version(Version::new(1, 0, 1)).unwrap().version,
            Version::new(1, 0, 1)
        );
    }

    fn record_version(number: &str) -> VersionRecord {
        record(&[(number, "0.6.0 <= v < 0.7.0", "common", false)])
            .versions
            .remove(0)
    }

    #[test]
    fn version_answers_are_kept_serialized_until_the_package_changes() {
        let catalog = Catalog::default();
        let mut record = record(&[("1.0.0", "0.6.0 <= v < 0.7.0", "common", false)]);
        catalog.put(record.clone());
        let before = catalog.get(&record.name).unwrap();
        let first = catalog.version_view(&before, &before.versions[0]);
        let again = catalog.version_view(&before, &before.versions[0]);
        assert!(
            Arc::ptr_eq(&first.bytes, &again.bytes),
            "the second answer is the kept one"
        );
        assert_eq!(
            &*first.etag,
            format!("\"{}\"", crate::auth::secret::sha256_hex(&first.bytes))
        );

        record.versions[0].revoked = Some(Revocation {
            at: Timestamp::now(),
            reason: "broken".into(),
        });
        catalog.put(record);
        // A request still holding the old record gets its answer, which is
        // not kept: it would hide the change from everyone after it.
        let late = catalog.version_view(&before, &before.versions[0]);
        assert_eq!(late.etag, first.etag);
        let after = catalog.get(&before.name).unwrap();
        let changed = catalog.version_view(&after, &after.versions[0]);
        assert_ne!(changed.etag, first.etag);
        let answer: serde_json::Value = serde_json::from_slice(&changed.bytes).unwrap();
        assert_eq!(answer["revoked"]["reason"], "broken", "{answer}");
        let now = catalog.version_view(&after, &after.versions[0]);
        assert!(Arc::ptr_eq(&now.bytes, &changed.bytes));
    }
}
