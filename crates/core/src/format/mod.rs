//! The data directory's format: `format.json` at its root, `{"format": 3}`.
//!
//! Format 1 (releases up to the end of 2026) had no such file: it kept the
//! event log in `events/<seq>.json`, each version's outline and bundle in a
//! directory of its own, and wrote the audit entries of publishes after
//! their commit. Format 2 kept all of a package's changes in its record,
//! `package.json`, rewritten whole by every publish. Format 3 gives each
//! version a record of its own beside it (see [`crate::package::records`]),
//! so that a change costs the same however many versions the package has.
//! `serve` and every `admin` command but `migrate` run only on the current
//! format ([`require_current`]): an older directory is upgraded by
//! [`migrate`] (`gren-registry admin migrate`), one step a format, a newer
//! one belongs to a newer release.
//!
//! A new, empty directory is stamped with the current format when the
//! server first opens it; `format.json` is written like every record.

pub mod migrate;
pub mod split_versions;

use crate::store::{Store, StoreError, layout};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The format this release reads and writes.
pub const CURRENT: u32 = 3;

#[derive(Debug, Serialize, Deserialize)]
pub struct FormatFile {
    pub format: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error(
        "{} holds data in format {found}, which this gren-registry no longer reads.\nStop the server, take a snapshot (`gren-registry admin snapshot --data-dir {} <new directory>`), then run `gren-registry admin migrate --data-dir {}`.",
        .dir.display(),
        .dir.display(),
        .dir.display()
    )]
    NeedsMigration { dir: PathBuf, found: u32 },
    #[error(
        "{} was written by a newer gren-registry (data format {found}); this release reads format {CURRENT}. Run the newer release.",
        .dir.display()
    )]
    Newer { dir: PathBuf, found: u32 },
    #[error(
        "cannot migrate {}; nothing was changed:\n{}\nThen run `gren-registry admin migrate --data-dir {}` again.",
        .dir.display(),
        .problems.iter().map(|problem| format!("- {problem}")).collect::<Vec<_>>().join("\n"),
        .dir.display()
    )]
    MigrationRefused { dir: PathBuf, problems: Vec<String> },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a data directory holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// Nothing yet: a new directory.
    Empty,
    /// Records in this format.
    Format(u32),
}

/// The directory's format: `format.json`, or 1 when records are there
/// without it.
pub fn detect(store: &Store) -> Result<Found, StoreError> {
    if let Some(file) = store.read_json::<FormatFile>(&layout::format_file())? {
        return Ok(Found::Format(file.format));
    }
    let legacy = [
        layout::users_dir(),
        layout::identities_dir(),
        layout::packages_dir(),
        layout::sessions_dir(),
        layout::format1::events_dir(),
    ];
    let has_records = legacy.iter().any(|dir| store.full_path(dir).exists());
    Ok(if has_records { Found::Format(1) } else { Found::Empty })
}

/// Refuses a directory in another format than [`CURRENT`]; stamps an empty
/// one with it when `stamp_empty` (the server, the first time it opens it).
pub fn require_current(store: &Store, stamp_empty: bool) -> Result<(), FormatError> {
    let dir = store.root().to_path_buf();
    match detect(store)? {
        Found::Format(CURRENT) => Ok(()),
        Found::Empty if stamp_empty => Ok(stamp(store)?),
        Found::Empty => Ok(()),
        Found::Format(found) if found > CURRENT => Err(FormatError::Newer { dir, found }),
        Found::Format(found) => Err(FormatError::NeedsMigration { dir, found }),
    }
}

/// Writes `format.json` saying [`CURRENT`].
pub fn stamp(store: &Store) -> Result<(), StoreError> {
    stamp_as(store, CURRENT)
}

/// Writes `format.json` saying `format`: the commit of a migration's step.
fn stamp_as(store: &Store, format: u32) -> Result<(), StoreError> {
    store.write_json(&layout::format_file(), &FormatFile { format })
}
