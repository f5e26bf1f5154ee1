//! `gren-registry admin migrate`: upgrades an older data directory to the
//! current format in place (see [`super`]), one format at a time: from 1 to
//! 2 here, then from 2 to 3 ([`super::split_versions`]); each step ends by
//! writing its format to `format.json`. It runs with the directory's lock,
//! as every changing command does, and is safe to kill anywhere: each step
//! leaves what the next run recognises, and running it again finishes.
//!
//! From format 1 to 2, in order, and what a crash after each step leaves:
//! 1. For each package still in format 1 (`package.json` without `events`):
//!    move each live bundle from `<v>/` to beside the record (a rename,
//!    then the directory's fsync), then write the format-2 record, which
//!    takes its events from `events/` (those the record counted), its audit
//!    entries from its identity's audit log, and the outlines of revoked
//!    versions from `<v>/outline.json`. The record's write is the package's
//!    commit; until then the old record is still read the old way.
//! 2. Remove each migrated package's `<v>/` directories.
//! 3. After every package: remove `events/`.
//! 4. Write `format.json` (`{"format": 2}`): the step's commit. Until the
//!    last step's, the server refuses the directory, so nobody sees it half
//!    done.
//!
//! The audit entries of publishes, revocations and privacy changes stay in
//! `identities/<name>/audit/` as history; format 2 reads them from the
//! package records and skips them there ([`crate::identity::audit::read`]).

use super::{CURRENT, FormatError, Found, detect, split_versions, stamp, stamp_as};
use crate::identity::audit::{self, AuditEntry};
use crate::identity::{Identity, IdentityName};
use crate::package::events::{Event, NumberingFault, numbering_faults};
use crate::package::{PackageChange, PackageName, PackageRecord, Version, VersionRecord};
use crate::store::layout::{self, PackageDir};
use crate::store::{Operation, Store, StoreError};
use crate::time::Timestamp;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};

/// What a run did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Migration {
    /// The format found.
    pub from: u32,
    /// Package records rewritten into the current format by this run.
    pub packages: usize,
    /// The events they hold.
    pub events: usize,
}

/// A package record as format 1 wrote it (the fields format 2 keeps).
#[derive(Deserialize)]
struct Format1Record {
    name: PackageName,
    private: bool,
    created: Timestamp,
    versions: Vec<VersionRecord>,
    /// Events above it were never committed.
    #[serde(default)]
    last_event: u64,
}

/// Upgrades the directory to [`CURRENT`]; nothing to do if it is there.
pub fn migrate(store: &Store) -> Result<Migration, FormatError> {
    let dir = store.root().to_path_buf();
    let from = match detect(store)? {
        Found::Empty => {
            stamp(store)?;
            return Ok(Migration {
                from: CURRENT,
                ..Migration::default()
            });
        }
        Found::Format(CURRENT) => {
            return Ok(Migration {
                from: CURRENT,
                ..Migration::default()
            });
        }
        Found::Format(found) if found > CURRENT => return Err(FormatError::Newer { dir, found }),
        Found::Format(found) => found,
    };
    if from == 1 {
        format1_to_2(store)?;
    }
    let split = split_versions::migrate(store)?;
    log::info!(
        "migrated {} from data format {from} to {CURRENT}",
        store.root().display()
    );
    Ok(Migration { from, ..split })
}

/// The step from format 1 to 2 (see the module's header).
fn format1_to_2(store: &Store) -> Result<(), FormatError> {
    let dir = store.root().to_path_buf();
    let mut events = format1_events(store)?;
    let (problems, head) = preflight(store, &events)?;
    if !problems.is_empty() {
        return Err(FormatError::MigrationRefused { dir, problems });
    }
    let mut next_seq = head + 1;
    let mut changes = format1_changes(store)?;
    let packages = store.full_path(&layout::packages_dir());
    for dir in layout::package_dirs(store).map_err(StoreError::io(Operation::List, &packages))? {
        if !dir.path().is_dir() {
            continue;
        }
        migrate_package(store, &dir, &mut events, &mut changes, &mut next_seq)?;
        remove_version_dirs(store, &dir)?;
    }
    store.remove_tree(&layout::format1::events_dir())?;
    Ok(stamp_as(store, 2)?)
}

/// Finds, before anything is changed, what would make the migration lose
/// data: a package directory without its record, a live version without
/// its bundle, or an event log (the old files as each record counts them,
/// and the events of records already migrated) with a gap or a number twice.
/// Returns the problems, and the last event the records hold.
fn preflight(store: &Store, events: &HashMap<String, Vec<Event>>) -> Result<(Vec<String>, u64), StoreError> {
    let mut problems = Vec::new();
    let numbers = store.list_json(&layout::format1::events_dir())?;
    let mut files: Vec<u64> = numbers.iter().filter_map(|name| name.parse().ok()).collect();
    files.sort_unstable();
    // Only a record still in format 1 takes its events from these files:
    // once every record is rewritten, events/ is being removed (a run
    // stopped part-way leaves any of its files), and is no longer read.
    let mut format1_left = false;
    let mut claimed: Vec<u64> = Vec::new();
    let packages = store.full_path(&layout::packages_dir());
    for dir in layout::package_dirs(store).map_err(StoreError::io(Operation::List, &packages))? {
        if !dir.path().is_dir() {
            continue;
        }
        if !dir.record().exists() {
            problems.push(format!(
                "{} has no package.json: restore it from a backup (or, if it is a first publish that never \
                 committed, move the directory out of packages/)",
                dir.path().display()
            ));
            continue;
        }
        let value: Value = read_json_file(store, &dir.record())?;
        if let Some(migrated) = value.get("events") {
            let seqs = migrated
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|event| event["seq"].as_u64());
            claimed.extend(seqs);
            continue;
        }
        format1_left = true;
        let old: Format1Record = serde_json::from_value(value).map_err(|source| StoreError::Corrupt {
            path: dir.record(),
            source,
        })?;
        let own = events.get(&old.name.key()).into_iter().flatten();
        claimed.extend(own.map(|event| event.seq).filter(|seq| *seq <= old.last_event));
        for version in old.versions.iter().filter(|version| version.revoked.is_none()) {
            let (before, after) = (
                layout::format1::version_bundle(&old.name, version.version),
                layout::version_bundle(&old.name, version.version),
            );
            if !store.full_path(&before).exists() && !store.full_path(&after).exists() {
                problems.push(format!("{} {}: the bundle is missing", old.name, version.version));
            }
        }
    }
    if format1_left && let Some(fault) = numbering_faults(&files).next() {
        let problem = match fault {
            NumberingFault::Missing { from, .. } => format!("events/ lacks event {from} (restore it from a backup)"),
            NumberingFault::Twice { seq, .. } => {
                format!(
                    "events/ holds event {seq} in two files (named alike, as 1.json and 01.json): restore events/ from a backup"
                )
            }
        };
        problems.insert(0, problem);
    }
    claimed.sort_unstable();
    if let Some(fault) = numbering_faults(&claimed).next() {
        problems.push(match fault {
            NumberingFault::Missing { from, .. } => format!(
                "the package records do not hold event {from} (a record lost, or edited): restore it from a backup"
            ),
            NumberingFault::Twice { seq, .. } => {
                format!("two package records hold event {seq} (a record edited): restore it from a backup")
            }
        });
    }
    Ok((problems, claimed.last().copied().unwrap_or(0)))
}

/// Rewrites one package record in format 2 (unless it already is), after
/// moving its live bundles beside it.
fn migrate_package(
    store: &Store,
    dir: &PackageDir,
    events: &mut HashMap<String, Vec<Event>>,
    changes: &mut HashMap<String, Vec<PackageChange>>,
    next_seq: &mut u64,
) -> Result<(), StoreError> {
    let record = dir.record();
    let value: Value = read_json_file(store, &record)?;
    if value.get("events").is_some() {
        return Ok(());
    }
    let mut old: Format1Record = serde_json::from_value(value).map_err(|source| StoreError::Corrupt {
        path: record.clone(),
        source,
    })?;
    // Ascending, as records are (`PackageRecord::version` relies on it).
    old.versions.sort_by_key(|version| version.version);
    let name = old.name.clone();
    let mut revoked_outlines = BTreeMap::new();
    for version in &old.versions {
        if version.revoked.is_some() {
            let outline = layout::format1::version_dir(&name, version.version);
            let outline = store.full_path(&outline).join("outline.json");
            if outline.exists() {
                let outline: Map<String, Value> = read_json_file(store, &outline)?;
                revoked_outlines.insert(version.version, outline);
            }
        } else {
            let from = layout::format1::version_bundle(&name, version.version);
            store.rename(&from, &layout::version_bundle(&name, version.version))?;
        }
    }
    let key = name.key();
    let mut own_events = events.remove(&key).unwrap_or_default();
    own_events.retain(|event| event.seq <= old.last_event);
    let mut migrated = PackageRecord {
        name,
        private: old.private,
        created: old.created,
        versions: old.versions,
        events: own_events,
        changes: changes.remove(&key).unwrap_or_default(),
        revoked_outlines,
    };
    make_up_for_format1_losses(&mut migrated, next_seq);
    store.write_json(&layout::package(&migrated.name), &migrated)?;
    Ok(())
}

/// Format 1 could commit a change and lose what it said of it (issue 12: an
/// event rolled back after its commit, an audit entry written after it and
/// lost). What mirrors missed is announced now, numbered after the last
/// event, as going public does; a lost audit entry is written again with
/// the version's own time and `unknown` as its actor, so the log shows the
/// change without inventing who made it.
fn make_up_for_format1_losses(record: &mut PackageRecord, next_seq: &mut u64) {
    if !record.private {
        let at = Timestamp::now();
        for missed in record.missed() {
            record.events.push(Event {
                seq: *next_seq,
                at,
                kind: missed.kind,
                package: record.name.clone(),
                version: missed.version,
                sha256: missed.sha256,
                token: None,
            });
            *next_seq += 1;
        }
    }
    for (at, action) in record.missing_audit_entries() {
        record.changes.push(PackageChange {
            at,
            actor: LOST_ACTOR.to_string(),
            token: None,
            action,
        });
    }
    record.changes.sort_by_key(|change| change.at);
}

/// The actor of an audit entry format 1 lost.
pub const LOST_ACTOR: &str = "unknown (lost before format 2)";

/// Removes a migrated package's format-1 version directories (outlines, and
/// bundles already moved or of revoked versions); a live version's stays
/// while its bundle is not beside the record.
fn remove_version_dirs(store: &Store, dir: &PackageDir) -> Result<(), StoreError> {
    let Some(name) = dir.package_name() else { return Ok(()) };
    let entries = dir.entries().map_err(StoreError::io(Operation::List, dir.path()))?;
    for (entry, path) in entries {
        let Some(version) = Version::parse(&entry).filter(|_| path.is_dir()) else {
            continue;
        };
        let bundle = store.full_path(&layout::version_bundle(&name, version));
        if path.join(name.bundle_file_name(version)).exists() && !bundle.exists() {
            log::warn!("keeping {}: its bundle is not beside the record yet", path.display());
            continue;
        }
        store.remove_tree(&layout::format1::version_dir(&name, version))?;
    }
    Ok(())
}

/// The format-1 event log (every file, whatever gaps there are), by
/// package key, oldest first.
fn format1_events(store: &Store) -> Result<HashMap<String, Vec<Event>>, StoreError> {
    let mut numbers: Vec<u64> = store
        .list_json(&layout::format1::events_dir())?
        .iter()
        .filter_map(|name| name.parse().ok())
        .collect();
    numbers.sort_unstable();
    let mut by_package: HashMap<String, Vec<Event>> = HashMap::new();
    for seq in numbers {
        if let Some(event) = store.read_json::<Event>(&layout::format1::event(seq))? {
            by_package.entry(event.package.key()).or_default().push(event);
        }
    }
    Ok(by_package)
}

/// The audit entries of publishes, revocations and privacy changes that
/// format 1 kept in the identities' logs, by package key, oldest first.
fn format1_changes(store: &Store) -> Result<HashMap<String, Vec<PackageChange>>, StoreError> {
    let mut by_package: HashMap<String, Vec<PackageChange>> = HashMap::new();
    for key in layout::identity_keys(store)? {
        let Ok(name) = IdentityName::parse(&key) else { continue };
        let Some(identity) = store.read_json::<Identity>(&layout::identity(&name))? else {
            continue;
        };
        for entry in audit::read_all(store, &name, &identity)? {
            let AuditEntry {
                at,
                actor,
                token,
                action,
                ..
            } = entry;
            let Some(package) = action.package().and_then(PackageName::parse) else {
                continue;
            };
            by_package.entry(package.key()).or_default().push(PackageChange {
                at,
                actor,
                token,
                action,
            });
        }
    }
    Ok(by_package)
}

fn read_json_file<T: serde::de::DeserializeOwned>(store: &Store, path: &std::path::Path) -> Result<T, StoreError> {
    let relative = store.relative(path, Operation::Read)?;
    let read = store.read_json(&relative)?;
    read.ok_or_else(|| StoreError::io(Operation::Read, path)(std::io::ErrorKind::NotFound.into()))
}
