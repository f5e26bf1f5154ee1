//! The map of the data directory: the one place that knows where each record
//! lives. Records, fsck, snapshots and the benchmark generator build their
//! paths here and nowhere else; [data/README.md](../../data/README.md)
//! describes the same tree for operators.
//!
//! ```text
//! format.json                                    the data format: {"format": 3}
//! event-log.json                                 the event log's high-water mark: {"head": N}
//! registry.lock                                  held by the running server
//! writers.lock, snapshot.lock                    writers' gate and its turnstile (see Backups)
//! control.sock                                   the running server's socket for admin commands (0600)
//! users/<email>.json                             one user (lower-cased address)
//! sessions/<sha256 of token>.json                one session token
//! tokens/<sha256 of token>.json                  one automation token (scopes, expiry, owner)
//! git-tokens/<sha256 of token>.json              one git token (minutes long; owner, the login it came from)
//! logins/<login id>.json                         one pending e-mail login
//! mail/<time>-<n>.txt                            e-mails, only when no Postmark token is set (written like records)
//! identities/<name>/identity.json                a publishing identity and its members
//! identities/<name>/audit/<seq>.json             its member changes, one entry per change
//! packages/<author>/<project>/package.json       a package: its privacy, and the events and audit entries of its changes
//! packages/<author>/<project>/<version>.json     a version: its record, and the events and audit entries of its publish and revocation
//! packages/<author>/<project>/<file>.pkg.gz      a live version's bundle, exactly as uploaded
//! packages/<author>/<project>/first-publish.pending   only while its first publish is under way
//! outbox/cursor.json                             the last event told to the packages site (and its URL)
//! outbox/purge/<sha256 of cache URL>.json        the last event a cache was told to purge (and its URL)
//! repositories/<author>/<project>/<stamp>.git    the package's git repository, derived from its bundles
//! quarantine/<time>/...                          what start-up found and could not explain
//! ```
//!
//! `<name>` and `<author>` are lower case (identity keys); `<seq>` has twelve
//! digits, so `ls` lists entries in order; `<time>` is milliseconds since
//! 1970. Two lock keys name no file: `identities` (one identity creation at
//! a time) and `file-names/<compiler file stem>` (packages whose bundles the
//! compiler would give the same file names).
//!
//! Constructors of paths from checked values (an [`Email`], an
//! [`IdentityName`], a [`PackageName`], a [`Version`], a number) cannot fail;
//! those taking plain text (a token hash, a login id) check it. The listings
//! at the end serve the loaders and `admin fsck`, which walk what is on disk.

use super::{Operation, RecordPath, Store, StoreError};
use crate::auth::email::Email;
use crate::identity::IdentityName;
use crate::package::{PackageName, Version};
use crate::repository::RepositoryStamp;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

pub const LOCK_FILE: &str = "registry.lock";
pub const WRITERS_LOCK_FILE: &str = "writers.lock";
pub const TURNSTILE_FILE: &str = "snapshot.lock";
/// The running server's Unix socket, through which `admin` commands change
/// records while it serves (it holds [`LOCK_FILE`], so they cannot).
pub const CONTROL_SOCKET: &str = "control.sock";

const USERS: &str = "users";
const SESSIONS: &str = "sessions";
const TOKENS: &str = "tokens";
const GIT_TOKENS: &str = "git-tokens";
const LOGINS: &str = "logins";
const MAIL: &str = "mail";
const IDENTITIES: &str = "identities";
const IDENTITY_RECORD: &str = "identity.json";
const AUDIT: &str = "audit";
const PACKAGES: &str = "packages";
/// A package's own record, in its directory.
pub const PACKAGE_RECORD: &str = "package.json";
/// Marks a package directory whose first publish has not committed yet.
pub const FIRST_PUBLISH_MARKER: &str = "first-publish.pending";
const FORMAT: &str = "format.json";
const EVENT_MARK: &str = "event-log.json";
const QUARANTINE: &str = "quarantine";
const OUTBOX: &str = "outbox";
const CURSOR: &str = "cursor.json";
const PURGE: &str = "purge";
const FILE_NAMES: &str = "file-names";
const REPOSITORIES: &str = "repositories";

/// A path from components that are safe by construction.
fn safe<'a>(components: impl IntoIterator<Item = &'a str>) -> RecordPath {
    RecordPath::new(components).expect("checked names make safe paths")
}

fn json(stem: &str) -> String {
    format!("{stem}.json")
}

/// `000000000042.json`: numbered records sort as they are numbered.
fn numbered(seq: u64) -> String {
    format!("{seq:012}.json")
}

pub fn users_dir() -> RecordPath {
    safe([USERS])
}

pub fn user(email: &Email) -> RecordPath {
    safe([USERS, &json(email.as_str())])
}

pub fn sessions_dir() -> RecordPath {
    safe([SESSIONS])
}

/// The session whose token has the SHA-256 (hex) `token_hash`; an error
/// for text that is no safe file name.
pub fn session(token_hash: &str) -> Result<RecordPath, StoreError> {
    checked(SESSIONS, &json(token_hash))
}

pub fn tokens_dir() -> RecordPath {
    safe([TOKENS])
}

/// The automation token whose SHA-256 (hex) is `token_hash`; an error for
/// text that is no safe file name.
pub fn automation_token(token_hash: &str) -> Result<RecordPath, StoreError> {
    checked(TOKENS, &json(token_hash))
}

pub fn git_tokens_dir() -> RecordPath {
    safe([GIT_TOKENS])
}

/// The git token whose SHA-256 (hex) is `token_hash`; an error for text
/// that is no safe file name.
pub fn git_token(token_hash: &str) -> Result<RecordPath, StoreError> {
    checked(GIT_TOKENS, &json(token_hash))
}

pub fn logins_dir() -> RecordPath {
    safe([LOGINS])
}

/// The pending login `id`; an error for text that is no safe file name.
pub fn login(id: &str) -> Result<RecordPath, StoreError> {
    checked(LOGINS, &json(id))
}

/// `dir/name`, or an error naming it when `name` (text a record or a request
/// gave) is no safe file name: the record it should lead to cannot be read.
fn checked(dir: &str, name: &str) -> Result<RecordPath, StoreError> {
    RecordPath::new([dir, name]).map_err(StoreError::io(Operation::Read, &Path::new(dir).join(name)))
}

pub fn mail_dir() -> RecordPath {
    safe([MAIL])
}

/// The `counter`th e-mail of the local sink, written at `millis` since 1970.
pub fn mail_message(millis: u128, counter: u64) -> RecordPath {
    safe([MAIL, &format!("{millis}-{counter}.txt")])
}

pub fn identities_dir() -> RecordPath {
    safe([IDENTITIES])
}

/// The lock key held while an identity is created: look-alikes are
/// different records, so their own locks cannot keep two apart.
pub fn identity_creation_lock() -> RecordPath {
    identities_dir()
}

/// `identities/<key>/`: the record and its audit entries.
pub fn identity_dir(name: &IdentityName) -> RecordPath {
    safe([IDENTITIES, name.key()])
}

pub fn identity(name: &IdentityName) -> RecordPath {
    safe([IDENTITIES, name.key(), IDENTITY_RECORD])
}

pub fn audit_entry(name: &IdentityName, seq: u64) -> RecordPath {
    safe([IDENTITIES, name.key(), AUDIT, &numbered(seq)])
}

pub fn packages_dir() -> RecordPath {
    safe([PACKAGES])
}

/// `packages/<author>/<project>`, the author in lower case as identity keys are.
pub fn package_dir(name: &PackageName) -> RecordPath {
    package_file(name, &[])
}

/// `package.json`, the package's own record (its privacy), the commit
/// point of a privacy change; also the lock key of every change to the
/// package.
pub fn package(name: &PackageName) -> RecordPath {
    package_file(name, &[PACKAGE_RECORD])
}

/// `<version>.json`, the version's record beside the package's: the commit
/// point of its publish and of its revocation.
pub fn version_record(name: &PackageName, version: Version) -> RecordPath {
    package_file(name, &[&version_record_file_name(version)])
}

fn version_record_file_name(version: Version) -> String {
    json(&version.to_string())
}

/// The version whose record an entry of a package directory named
/// `file_name` is, if it is one (`7.0.0.json`, spelled as versions are).
pub fn version_of_record_file(file_name: &str) -> Option<Version> {
    Version::parse(file_name.strip_suffix(".json")?)
}

/// The bundle, beside its record (one directory fsync commits both), under
/// the compiler's own file name, so that it can be copied straight into a
/// project's `gren_packages/`.
pub fn version_bundle(name: &PackageName, version: Version) -> RecordPath {
    package_file(name, &[&name.bundle_file_name(version)])
}

/// The marker of a first publish under way (see [`crate::package`]).
pub fn first_publish_marker(name: &PackageName) -> RecordPath {
    package_file(name, &[FIRST_PUBLISH_MARKER])
}

/// `below` inside the package's directory.
fn package_file(name: &PackageName, below: &[&str]) -> RecordPath {
    let author = name.author.to_ascii_lowercase();
    safe(
        [PACKAGES, &author, &name.project]
            .into_iter()
            .chain(below.iter().copied()),
    )
}

/// The lock key of every package whose bundles have `name`'s file names.
pub fn file_name_lock(name: &PackageName) -> RecordPath {
    safe([FILE_NAMES, &name.file_stem().to_ascii_lowercase()])
}

/// `format.json`: which layout the directory has (see [`crate::format`]).
pub fn format_file() -> RecordPath {
    safe([FORMAT])
}

/// `event-log.json`: the newest event number known to be committed, kept
/// apart from the package records that hold the events (see
/// [`crate::package::events`]).
pub fn event_mark() -> RecordPath {
    safe([EVENT_MARK])
}

/// Where start-up moves what it cannot explain, one directory a start.
pub fn quarantine_dir() -> RecordPath {
    safe([QUARANTINE])
}

pub fn quarantine(started_millis: u128) -> RecordPath {
    safe([QUARANTINE, &started_millis.to_string()])
}

pub fn outbox_cursor() -> RecordPath {
    safe([OUTBOX, CURSOR])
}

pub fn purge_cursors_dir() -> RecordPath {
    safe([OUTBOX, PURGE])
}

/// The purge cursor of the cache whose URL has the SHA-256 (hex) `url_hash`:
/// the URL itself never becomes a path. An error for anything but 64
/// lower-case hex digits (a file name `admin` listed, say).
pub fn purge_cursor(url_hash: &str) -> Result<RecordPath, StoreError> {
    let is_hash = url_hash.len() == 64 && crate::auth::secret::is_lower_hex(url_hash);
    let name = json(url_hash);
    if !is_hash {
        let path = Path::new(OUTBOX).join(PURGE).join(&name);
        let refused = io::Error::new(io::ErrorKind::InvalidInput, "not the SHA-256 of a cache URL");
        return Err(StoreError::io(Operation::Read, &path)(refused));
    }
    Ok(safe([OUTBOX, PURGE, &name]))
}

/// Where format 1 kept what format 2 moved or derives: read only by
/// `admin migrate` (see [`crate::format`]).
pub mod format1 {
    use super::{PackageName, RecordPath, Version, numbered, package_file, safe};

    const EVENTS: &str = "events";

    /// `packages/<author>/<project>/<v>/`: the outline and the bundle.
    pub fn version_dir(name: &PackageName, version: Version) -> RecordPath {
        package_file(name, &[&version.to_string()])
    }

    pub fn version_bundle(name: &PackageName, version: Version) -> RecordPath {
        package_file(name, &[&version.to_string(), &name.bundle_file_name(version)])
    }

    /// `events/`: one file an event.
    pub fn events_dir() -> RecordPath {
        safe([EVENTS])
    }

    pub fn event(seq: u64) -> RecordPath {
        safe([EVENTS, &numbered(seq)])
    }
}

pub fn repositories_dir() -> RecordPath {
    safe([REPOSITORIES])
}

/// `repositories/<author>/<project>`: the generations of a package's git
/// repository, the author in lower case as for `packages/`.
pub fn repository_dir(name: &PackageName) -> RecordPath {
    safe([REPOSITORIES, &name.author.to_ascii_lowercase(), &name.project])
}

/// The bare repository of `name` built from the live versions that `stamp`
/// (hex digits) sums up.
pub fn repository(name: &PackageName, stamp: &RepositoryStamp) -> RecordPath {
    repository_entry(name, &format!("{stamp}.git"))
}

/// Where that repository is built before it is renamed into place.
pub fn repository_scratch(name: &PackageName, stamp: &RepositoryStamp) -> RecordPath {
    repository_entry(name, &format!("{stamp}.partial"))
}

/// The directory of git's packs in the repository entry `entry`
/// (`<stamp>.git` or `<stamp>.partial`).
pub fn repository_packs(entry: &RecordPath) -> RecordPath {
    RecordPath(entry.0.join("objects").join("pack"))
}

/// The entry `entry` (a name listed in the directory) of the package's
/// repository directory; `None` for a name that is no safe file name.
pub fn repository_entry_checked(name: &PackageName, entry: &str) -> Option<RecordPath> {
    RecordPath::new([REPOSITORIES, &name.author.to_ascii_lowercase(), &name.project, entry]).ok()
}

fn repository_entry(name: &PackageName, entry: &str) -> RecordPath {
    repository_entry_checked(name, entry).expect("stamps are hex digits")
}

/// The package directories under `repositories/` (`<author>/<project>`,
/// by name), sorted; none when there are none.
pub fn repository_packages(store: &Store) -> Vec<String> {
    let authors = entries(&store.full_path(&repositories_dir())).unwrap_or_default();
    let mut found = Vec::new();
    for author in authors {
        for project in entries(&author).unwrap_or_default() {
            let name = |path: &Path| path.file_name().unwrap_or_default().to_string_lossy().into_owned();
            found.push(format!("{}/{}", name(&author), name(&project)));
        }
    }
    found
}

// ---------------------------------------------------------------------------
// Listings
// ---------------------------------------------------------------------------

/// The keys of the identities (directories under `identities/`, committed
/// or not), sorted.
pub fn identity_keys(store: &Store) -> Result<Vec<String>, StoreError> {
    store.list_dirs(&identities_dir())
}

/// Every `.json` file directly in `dir` (users, sessions, logins, events),
/// sorted, whatever its name: for `admin fsck`, which checks what is there.
pub fn json_files(store: &Store, dir: &RecordPath) -> Vec<PathBuf> {
    let mut files = entries(&store.full_path(dir)).unwrap_or_default();
    files.retain(|path| path.extension().is_some_and(|ext| ext == "json"));
    files
}

/// A directory found under `identities/`, by whatever name it has on disk.
pub struct IdentityDir(PathBuf);

impl IdentityDir {
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// The directory's name: the identity key it should hold.
    pub fn key(&self) -> String {
        self.0.file_name().unwrap_or_default().to_string_lossy().into_owned()
    }

    /// Its commit record, `identity.json`.
    pub fn record(&self) -> PathBuf {
        self.0.join(IDENTITY_RECORD)
    }

    pub fn audit_entry(&self, seq: u64) -> PathBuf {
        self.0.join(AUDIT).join(numbered(seq))
    }
}

/// Everything under `identities/`, sorted (unreadable: nothing).
pub fn identity_dirs(store: &Store) -> Vec<IdentityDir> {
    let found = entries(&store.full_path(&identities_dir())).unwrap_or_default();
    found.into_iter().map(IdentityDir).collect()
}

/// An entry found under `packages/<author>/`: a package directory, committed
/// or not, or a stray file.
pub struct PackageDir(PathBuf);

impl PackageDir {
    /// The directory of the package `name`.
    pub fn of(store: &Store, name: &PackageName) -> PackageDir {
        PackageDir(store.full_path(&package_dir(name)))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// The package's own record, `package.json`.
    pub fn record(&self) -> PathBuf {
        self.0.join(PACKAGE_RECORD)
    }

    /// The package this directory is named for, if it can be one.
    pub fn package_name(&self) -> Option<PackageName> {
        let project = self.0.file_name()?.to_str()?;
        let author = self.0.parent()?.file_name()?.to_str()?;
        PackageName::from_parts(author, project)
    }

    /// Every entry but `package.json` (by name, and full path), sorted:
    /// version records, bundles, and whatever else is there.
    pub fn entries(&self) -> io::Result<Vec<(String, PathBuf)>> {
        let names = self.file_names()?.into_iter();
        Ok(names
            .map(|name| {
                let path = self.0.join(&name);
                (name, path)
            })
            .collect())
    }

    /// The names of [`PackageDir::entries`], sorted: what start-up lists
    /// of every package twice, so it sorts names, not paths (comparing
    /// paths component by component was a tenth of a start).
    pub fn file_names(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(&self.0)? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if name != PACKAGE_RECORD {
                names.push(name);
            }
        }
        names.sort_unstable();
        Ok(names)
    }
}

/// Every entry under `packages/<author>/` for each author directory, sorted;
/// none when `packages/` is missing or unreadable.
pub fn package_dirs(store: &Store) -> io::Result<Vec<PackageDir>> {
    let Ok(authors) = entries(&store.full_path(&packages_dir())) else {
        return Ok(Vec::new());
    };
    let mut found = Vec::new();
    for author in authors.into_iter().filter(|author| author.is_dir()) {
        found.extend(entries(&author)?.into_iter().map(PackageDir));
    }
    Ok(found)
}

/// The entries of `dir`, as full paths, sorted.
fn entries(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut paths = Vec::new();
    for entry in fs::read_dir(dir)? {
        paths.push(entry?.path());
    }
    paths.sort();
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(path: RecordPath) -> String {
        path.as_path().display().to_string()
    }

    #[test]
    fn every_record_lives_where_data_readme_says() {
        let email = Email::parse("Me@Example.com").unwrap();
        let team = IdentityName::parse("Gren-Lang").unwrap();
        let package = PackageName::parse("Gren-Lang/core").unwrap();
        let version = Version::new(7, 0, 0);
        let hash = "9f".repeat(32);
        let id = "0a".repeat(16);
        let cases = [
            (users_dir(), "users"),
            (user(&email), "users/me@example.com.json"),
            (sessions_dir(), "sessions"),
            (session(&hash).unwrap(), &format!("sessions/{hash}.json")),
            (git_tokens_dir(), "git-tokens"),
            (git_token(&hash).unwrap(), &format!("git-tokens/{hash}.json")),
            (logins_dir(), "logins"),
            (login(&id).unwrap(), &format!("logins/{id}.json")),
            (mail_dir(), "mail"),
            (mail_message(1764097425401, 3), "mail/1764097425401-3.txt"),
            (identities_dir(), "identities"),
            (identity(&team), "identities/gren-lang/identity.json"),
            (audit_entry(&team, 3), "identities/gren-lang/audit/000000000003.json"),
            (packages_dir(), "packages"),
            (package_dir(&package), "packages/gren-lang/core"),
            (self::package(&package), "packages/gren-lang/core/package.json"),
            (version_record(&package, version), "packages/gren-lang/core/7.0.0.json"),
            (
                version_bundle(&package, version),
                "packages/gren-lang/core/Gren_Lang_core__7_0_0.pkg.gz",
            ),
            (outbox_cursor(), "outbox/cursor.json"),
            (purge_cursors_dir(), "outbox/purge"),
            (purge_cursor(&hash).unwrap(), &format!("outbox/purge/{hash}.json")),
            (format_file(), "format.json"),
            (quarantine(1764097425401), "quarantine/1764097425401"),
            (format1::version_dir(&package, version), "packages/gren-lang/core/7.0.0"),
            (
                format1::version_bundle(&package, version),
                "packages/gren-lang/core/7.0.0/Gren_Lang_core__7_0_0.pkg.gz",
            ),
            (format1::events_dir(), "events"),
            (format1::event(12), "events/000000000012.json"),
            (file_name_lock(&package), "file-names/gren_lang_core"),
            (repository_dir(&package), "repositories/gren-lang/core"),
            (
                repository(&package, &RepositoryStamp::of_text("0a1b")),
                "repositories/gren-lang/core/0a1b.git",
            ),
        ];
        for (path, expected) in cases {
            assert_eq!(text(path), expected);
        }
    }

    #[test]
    fn the_map_in_this_header_is_the_one_in_data_readme() {
        let header: String = include_str!("layout.rs")
            .lines()
            .map_while(|line| line.strip_prefix("//!"))
            .map(|line| format!("{}\n", line.strip_prefix(' ').unwrap_or(line)))
            .collect();
        let map = |text: &str| {
            let start = text.find("```text\n").expect("a map") + "```text\n".len();
            text[start..][..text[start..].find("```").expect("its end")].to_string()
        };
        assert_eq!(map(&header), map(include_str!("../../../../data/README.md")));
    }

    #[test]
    fn text_that_is_no_safe_file_name_makes_no_path() {
        for bad in ["../users/x", "a/b", ".tmp-x", ""] {
            assert!(purge_cursor(bad).is_err(), "{bad:?}");
            assert!(purge_cursor(&"9F".repeat(32)).is_err(), "upper case is no hash of ours");
            assert!(session(bad).is_err(), "{bad:?}");
            assert!(login(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn only_a_version_spelled_as_versions_are_names_a_version_record() {
        assert_eq!(version_of_record_file("7.0.10.json"), Some(Version::new(7, 0, 10)));
        for other in [
            "package.json",
            "07.0.0.json",
            "7.0.json",
            "7.0.0.pkg.gz",
            "7.0.0",
            ".tmp-7.0.0.json",
        ] {
            assert_eq!(version_of_record_file(other), None, "{other}");
        }
    }

    #[test]
    fn listings_find_what_is_on_disk_sorted() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let root = dir.path();
        for path in ["packages/b/x", "packages/a/y/1.0.0", "identities/z/audit"] {
            fs::create_dir_all(root.join(path)).unwrap();
        }
        fs::write(root.join("packages/a/stray"), b"").unwrap();
        fs::write(root.join("packages/a/y/package.json"), b"{}").unwrap();
        fs::write(root.join("packages/a/y/a_y__2_0_0.pkg.gz"), b"").unwrap();
        fs::create_dir_all(root.join("sessions")).unwrap();
        fs::write(root.join("sessions/ab.json"), b"{}").unwrap();
        fs::write(root.join("sessions/.tmp-x"), b"").unwrap();
        let relative = |path: &Path| path.strip_prefix(root).unwrap().display().to_string();
        let packages: Vec<String> = package_dirs(&store)
            .unwrap()
            .iter()
            .map(|dir| relative(dir.path()))
            .collect();
        assert_eq!(packages, ["packages/a/stray", "packages/a/y", "packages/b/x"]);
        let y = PackageDir::of(&store, &PackageName::parse("a/y").unwrap());
        assert_eq!(relative(&y.record()), "packages/a/y/package.json");
        let entries: Vec<String> = y.entries().unwrap().into_iter().map(|(name, _)| name).collect();
        assert_eq!(entries, ["1.0.0", "a_y__2_0_0.pkg.gz"], "everything but the record");
        assert_eq!(y.package_name(), PackageName::parse("a/y"));
        let identities = identity_dirs(&store);
        assert_eq!(identities.len(), 1);
        assert_eq!(identities[0].key(), "z");
        assert_eq!(
            relative(&identities[0].audit_entry(2)),
            "identities/z/audit/000000000002.json"
        );
        assert_eq!(identity_keys(&store).unwrap(), ["z"]);
        let sessions: Vec<String> = json_files(&store, &sessions_dir())
            .iter()
            .map(|p| relative(p))
            .collect();
        assert_eq!(sessions, ["sessions/ab.json"]);
    }
}
