//! `admin migrate` from data format 2 to 3: each version gets a record of
//! its own beside `package.json` (see [`crate::package::records`]), which
//! keeps only what is the package's. Like the step from format 1, it runs
//! with the directory's lock and is safe to kill anywhere.
//!
//! Order, and what a crash after each step leaves:
//! 1. For each package whose `package.json` still holds its versions
//!    (format 2): write each version's record (`<v>.json`: the version, the
//!    events and audit entries about it, its revoked outline), each staged
//!    (written, fsynced, renamed), then rewrite `package.json` without
//!    them, which fsyncs the directory once: the package's commit. Until
//!    then the old record is read the old way, and the next run writes the
//!    same version records again.
//! 2. Write `format.json` (`{"format": 3}`): the migration's commit. Until
//!    then the server refuses the directory, so nobody sees it half done.
//!
//! Nothing is lost or renumbered: every event and audit entry of the old
//! record is in exactly one of the new files, and the event log the server
//! gathers from them is the one it gathered from the old records.
//! Directories without `package.json` (an interrupted first publish, or a
//! package that lost its record) are left as they are: format 3 reads them
//! as format 2 did.

use super::migrate::Migration;
use super::{FormatError, stamp_as};
use crate::package::{PackageName, PackageRecord, records};
use crate::store::layout;
use crate::store::{Operation, RecordPath, Store, StoreError};
use serde::Deserialize;
use serde::de::IgnoredAny;

/// The format this step makes.
pub const FORMAT: u32 = 3;

/// Rewrites every format-2 package record as format 3's files, then stamps
/// the directory with format 3. Returns what it rewrote (`from` is 2).
/// Refuses, changing nothing, a record that is not where its name says
/// (its versions' files would go elsewhere).
pub fn migrate(store: &Store) -> Result<Migration, FormatError> {
    let mut left = Vec::new();
    let mut misplaced = Vec::new();
    for (dir, path) in package_records(store)? {
        let Some(head) = store.read_json::<Head>(&path)? else {
            continue;
        };
        if head.versions.is_none() {
            // Rewritten by an earlier run.
            continue;
        }
        if head.name.key() != dir.key() {
            misplaced.push(format!(
                "{} holds the package {}: move it where it belongs (or restore it from a backup)",
                store.full_path(&path).display(),
                head.name
            ));
        }
        left.push(path);
    }
    if !misplaced.is_empty() {
        let dir = store.root().to_path_buf();
        return Err(FormatError::MigrationRefused {
            dir,
            problems: misplaced,
        });
    }
    let mut migration = Migration {
        from: 2,
        ..Migration::default()
    };
    for path in left {
        // Read again, one at a time: a registry's records need not fit in memory at once.
        let Some(record) = store.read_json::<PackageRecord>(&path)? else {
            continue;
        };
        migration.packages += 1;
        migration.events += record.events.len();
        records::write_all(store, record)?;
    }
    stamp_as(store, FORMAT)?;
    Ok(migration)
}

/// What tells a format-2 `package.json` from format 3's.
#[derive(Deserialize)]
struct Head {
    name: PackageName,
    versions: Option<IgnoredAny>,
}

/// Each package directory's name and `package.json`.
fn package_records(store: &Store) -> Result<Vec<(PackageName, RecordPath)>, StoreError> {
    let packages = store.full_path(&layout::packages_dir());
    let dirs = layout::package_dirs(store).map_err(StoreError::io(Operation::List, &packages))?;
    Ok(dirs
        .iter()
        .filter(|dir| dir.path().is_dir())
        .filter_map(|dir| dir.package_name())
        .map(|name| {
            let path = layout::package(&name);
            (name, path)
        })
        .collect())
}
