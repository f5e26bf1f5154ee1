//! Packages as git repositories, so that the Gren compiler, which fetches
//! every dependency with `git ls-remote --tags` and `git clone --branch
//! <version> --depth 1`, can install from the registry unchanged.
//!
//! A repository is derived from the package's bundles, never edited: for
//! every live version, in version order, one commit whose tree is exactly
//! the files the compiler rebuilds the bundle from
//! ([`crate::bundle::project`]), whose parent is the previous live version,
//! authored and committed by the package's author at the publish time, and
//! tagged with the version (`refs/tags/7.0.0`, lightweight); `main` is the
//! highest. The same live versions always give the same object ids.
//!
//! On disk (paths from [`layout`]):
//!
//! ```text
//! repositories/<author>/<project>/<stamp>.git       a bare repository (git's own format)
//! repositories/<author>/<project>/<stamp>.partial   one being built (debris after a crash)
//! ```
//!
//! `<stamp>` sums up what the repository is made of (the derivation's
//! format, the package's name, every live version with its publish time and
//! bundle SHA-256), so the repository that matches the records is found from
//! the package record alone: a git request asks for [`Repositories::current`],
//! which builds it first when the records moved on (a publish, a revocation),
//! and so never sees it behind them. A revoked version is in no repository
//! built after its revocation, so its tag and objects cannot be fetched.
//!
//! A build runs under the package's lock (publishes and revocations of the
//! package wait for it, and it sees their bundles complete): git writes the
//! repository in `<stamp>.partial`, which is then renamed to `<stamp>.git`,
//! the commit point. Generations a request still reads are *leased* and
//! stay until it is done; the others are removed after each build.
//! Repositories hold nothing that is not in the bundles: backups may leave
//! them out, and `admin fsck --repair` rebuilds them.

use crate::bundle::{self, BundleError};
use crate::git::{Git, GitError, Invocation};
use crate::package::{Catalog, PackageName, PackageRecord, Version, VersionRecord};
use crate::store::{Store, StoreError, layout, lock_ignoring_poison};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// Changes whenever the derivation does (file layout, commit fields): every
/// repository is then built again, with the new object ids.
const FORMAT: &str = "gren-registry repository 1";
/// The e-mail host of the commits' author and committer lines.
const IDENT_HOST: &str = "registry.gren-lang.org";
/// A bundle is inflated at most this far: it passed the registry's own
/// (smaller) limit when it was published.
const MAX_INFLATED: u64 = 256 * 1024 * 1024;
/// How long writing one repository may take.
const BUILD_LIMIT: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum RepositoryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Git(#[from] GitError),
    #[error("the bundle of {name} {version} is missing")]
    MissingBundle { name: PackageName, version: Version },
    #[error("the bundle of {name} {version} cannot be made a project: {source}")]
    Bundle {
        name: PackageName,
        version: Version,
        source: BundleError,
    },
}

/// What a repository is built from, summed up: see the module's header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositoryStamp(String);

impl RepositoryStamp {
    pub fn of(record: &PackageRecord) -> RepositoryStamp {
        let mut summary = format!("{FORMAT}\n{}\n", record.name);
        for version in live(record) {
            let _ = writeln!(
                summary,
                "{} {} {}",
                version.version,
                version.published.unix_seconds(),
                version.sha256
            );
        }
        let digest = Sha256::digest(summary.as_bytes());
        RepositoryStamp(crate::auth::secret::hex(&digest[..10]))
    }

    #[cfg(test)]
    pub(crate) fn of_text(hex: &str) -> RepositoryStamp {
        RepositoryStamp(hex.to_string())
    }
}

impl fmt::Display for RepositoryStamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn live(record: &PackageRecord) -> impl Iterator<Item = &VersionRecord> {
    record.versions.iter().filter(|version| version.revoked.is_none())
}

/// Leases by repository directory: how many requests read each.
type LeaseCounts = Mutex<HashMap<PathBuf, usize>>;

/// The packages' repositories, and who is reading which.
pub struct Repositories {
    pub git: Git,
    leases: LeaseCounts,
}

/// A repository a request reads: on disk until the lease is dropped.
pub struct Lease<'r> {
    leases: &'r LeaseCounts,
    path: PathBuf,
}

impl Lease<'_> {
    /// The bare repository's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let mut leases = lock_ignoring_poison(self.leases);
        if let Some(count) = leases.get_mut(&self.path) {
            *count -= 1;
            if *count == 0 {
                leases.remove(&self.path);
            }
        }
    }
}

/// What `admin fsck` finds of one package's repository.
#[derive(Debug, PartialEq, Eq)]
pub enum Finding {
    /// Not built yet: the first git request (or `--repair`) builds it.
    NotBuilt,
    /// A generation the records moved past, or an interrupted build.
    Stale(String),
    /// The current repository differs from a fresh build of the records.
    Differs(String),
}

impl Repositories {
    pub fn new(git: Git) -> Repositories {
        Repositories {
            git,
            leases: LeaseCounts::default(),
        }
    }

    /// The package's repository as its record stands now, built first when
    /// it is not yet, and leased to the caller; `None` for an unknown package.
    pub fn current(
        &self,
        store: &Store,
        catalog: &Catalog,
        name: &PackageName,
    ) -> Result<Option<Lease<'_>>, RepositoryError> {
        let _guard = store.lock(&layout::package(name));
        let Some(record) = catalog.get(name) else {
            return Ok(None);
        };
        let stamp = RepositoryStamp::of(&record);
        let path = store.full_path(&layout::repository(name, &stamp));
        if !is_plain_dir(&path) {
            self.build(store, &record, &stamp)?;
        }
        let lease = self.lease(path);
        self.remove_unused(store, name, &stamp);
        Ok(Some(lease))
    }

    /// Removes every generation of the package's repository and builds the
    /// current one (`admin fsck --repair`, with no server running).
    pub fn rebuild(&self, store: &Store, record: &PackageRecord) -> Result<(), RepositoryError> {
        let _guard = store.lock(&layout::package(&record.name));
        store.remove_tree(&layout::repository_dir(&record.name))?;
        self.build(store, record, &RepositoryStamp::of(record))
    }

    /// Compares the package's repositories with its record: stale
    /// generations, and whether the current one is sound and has exactly
    /// the refs of a fresh build (made in a temporary directory outside the
    /// data directory, so a running server never sees it).
    pub fn inspect(&self, store: &Store, record: &PackageRecord) -> Result<Vec<Finding>, RepositoryError> {
        let stamp = RepositoryStamp::of(record);
        let current = format!("{stamp}.git");
        let mut findings: Vec<Finding> = entries(store, &record.name)
            .into_iter()
            .filter(|entry| *entry != current)
            .map(Finding::Stale)
            .collect();
        let path = store.full_path(&layout::repository(&record.name, &stamp));
        if !is_plain_dir(&path) {
            findings.push(Finding::NotBuilt);
            return Ok(findings);
        }
        let fresh = tempfile::tempdir().map_err(GitError::Io)?;
        self.build_in(store, record, fresh.path())?;
        let expected = self.refs(fresh.path());
        let found = self.refs(&path);
        let mut fsck = Invocation::new(["fsck", "--no-dangling", "--no-progress"]);
        fsck.cwd = Some(&path);
        match (found, expected?, self.git.run_ok(fsck)) {
            (Ok(found), expected, Ok(_)) if found == expected => {}
            (Ok(found), expected, Ok(_)) => findings.push(Finding::Differs(format!(
                "its refs are\n{found}but the records make\n{expected}"
            ))),
            (Err(err), _, _) | (_, _, Err(err)) => findings.push(Finding::Differs(err.to_string())),
        }
        Ok(findings)
    }

    /// Every ref with its object id, one a line.
    fn refs(&self, repository: &Path) -> Result<String, GitError> {
        let mut listing = Invocation::new(["for-each-ref", "--format=%(objectname) %(refname)"]);
        listing.cwd = Some(repository);
        Ok(String::from_utf8_lossy(&self.git.run_ok(listing)?).into_owned())
    }

    /// Builds the repository of `record`'s live versions in its scratch
    /// directory, then renames it to `<stamp>.git`.
    fn build(&self, store: &Store, record: &PackageRecord, stamp: &RepositoryStamp) -> Result<(), RepositoryError> {
        let scratch = layout::repository_scratch(&record.name, stamp);
        store.remove_tree(&scratch)?;
        store.create_dir(&scratch)?;
        self.build_in(store, record, &store.full_path(&scratch))?;
        store.rename_dir(&scratch, &layout::repository(&record.name, stamp))?;
        Ok(())
    }

    /// Writes the repository of `record`'s live versions into the empty
    /// directory `dir`.
    fn build_in(&self, store: &Store, record: &PackageRecord, dir: &Path) -> Result<(), RepositoryError> {
        let mut init = Invocation::new(["init", "--bare", "--quiet", "--initial-branch=main", "."]);
        init.cwd = Some(dir);
        self.git.run_ok(init)?;
        let stream = fast_import_stream(store, record)?;
        if !stream.is_empty() {
            // Durable before the rename that commits it.
            let mut import = Invocation::new(["-c", "core.fsync=all", "fast-import", "--quiet"]);
            import.cwd = Some(dir);
            import.stdin = &stream;
            import.time_limit = BUILD_LIMIT;
            self.git.run_ok(import)?;
        }
        Ok(())
    }

    fn lease(&self, path: PathBuf) -> Lease<'_> {
        *lock_ignoring_poison(&self.leases).entry(path.clone()).or_default() += 1;
        Lease {
            leases: &self.leases,
            path,
        }
    }

    /// Removes the package's other generations that no request reads (a
    /// leased one goes with a later build). Runs under the package's lock,
    /// where only the current generation is ever leased, so a generation
    /// found unleased here stays so.
    fn remove_unused(&self, store: &Store, name: &PackageName, stamp: &RepositoryStamp) {
        let current = format!("{stamp}.git");
        for entry in entries(store, name).into_iter().filter(|entry| *entry != current) {
            let Some(path) = layout::repository_entry_checked(name, &entry) else {
                continue;
            };
            if lock_ignoring_poison(&self.leases).contains_key(&store.full_path(&path)) {
                continue;
            }
            if let Err(err) = store.remove_tree(&path) {
                log::warn!("cannot remove an old repository of {name}: {err}");
            }
        }
    }
}

/// The names in the package's repository directory, sorted.
fn entries(store: &Store, name: &PackageName) -> Vec<String> {
    let dir = store.full_path(&layout::repository_dir(name));
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|listing| {
            listing
                .filter_map(|entry| entry.ok())
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// A directory that is no symbolic link.
fn is_plain_dir(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|meta| meta.is_dir())
}

/// The `git fast-import` stream of the repository: one commit per live
/// version on `main` (each the parent of the next), then the tags.
/// Empty when no version is live.
fn fast_import_stream(store: &Store, record: &PackageRecord) -> Result<Vec<u8>, RepositoryError> {
    let versions: Vec<&VersionRecord> = live(record).collect();
    if versions.is_empty() {
        return Ok(Vec::new());
    }
    let author = &record.name.author;
    let mut stream = b"feature done\n".to_vec();
    for (mark, version) in (1..).zip(&versions) {
        let ident = format!(
            "{author} <{author}@{IDENT_HOST}> {} +0000",
            version.published.unix_seconds()
        );
        let message = format!("{} {}\n", record.name, version.version);
        let head = format!(
            "commit refs/heads/main\nmark :{mark}\nauthor {ident}\ncommitter {ident}\ndata {}\n{message}deleteall\n",
            message.len()
        );
        stream.extend(head.as_bytes());
        for file in version_files(store, &record.name, version.version)? {
            // Paths are safe names joined by `/`: nothing to quote.
            stream.extend(format!("M 100644 inline {}\ndata {}\n", file.path, file.bytes.len()).as_bytes());
            stream.extend(&file.bytes);
            stream.push(b'\n');
        }
        stream.push(b'\n');
    }
    for (mark, version) in (1..).zip(&versions) {
        stream.extend(format!("reset refs/tags/{}\nfrom :{mark}\n\n", version.version).as_bytes());
    }
    stream.extend(b"done\n");
    Ok(stream)
}

fn version_files(
    store: &Store,
    name: &PackageName,
    version: Version,
) -> Result<Vec<bundle::project::ProjectFile>, RepositoryError> {
    let bytes = store
        .read_bytes(&layout::version_bundle(name, version))?
        .ok_or_else(|| RepositoryError::MissingBundle {
            name: name.clone(),
            version,
        })?;
    let failed = |source| RepositoryError::Bundle {
        name: name.clone(),
        version,
        source,
    };
    let decoded = bundle::read(&bytes, MAX_INFLATED).map_err(failed)?;
    bundle::project::project_files(&decoded).map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::package::{Range, Revocation};
    use crate::time::Timestamp;

    const FIXTURES: [(&str, &[u8]); 2] = [
        (
            "6.0.1",
            include_bytes!("../../../tests/fixtures/bundles/gren_lang_core__6_0_1.pkg.gz"),
        ),
        (
            "7.0.0",
            include_bytes!("../../../tests/fixtures/bundles/gren_lang_core__7_0_0.pkg.gz"),
        ),
    ];

    fn git() -> Option<Git> {
        crate::git::installed_for_tests()
    }

    /// A data directory holding gren-lang/core 6.0.1 and 7.0.0, published
    /// at fixed times.
    fn data_dir() -> (tempfile::TempDir, Store, PackageRecord) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let name = PackageName::parse("gren-lang/core").unwrap();
        let mut versions = Vec::new();
        for (index, (version, bytes)) in FIXTURES.iter().enumerate() {
            let version = Version::parse(version).unwrap();
            store
                .write_bytes(&layout::version_bundle(&name, version), bytes)
                .unwrap();
            let published: Timestamp =
                serde_json::from_value(serde_json::json!(format!("2025-0{}-01T00:00:00.000Z", index + 1))).unwrap();
            versions.push(VersionRecord {
                version,
                gren_version: Range::parse("0.6.0 <= v < 0.7.0").unwrap(),
                platform: "common".into(),
                summary: String::new(),
                published,
                sha256: crate::auth::secret::sha256_hex(bytes),
                size: bytes.len() as u64,
                revoked: None,
            });
        }
        let record = PackageRecord {
            name,
            private: false,
            created: Timestamp::now(),
            versions,
            events: Vec::new(),
            changes: Vec::new(),
            revoked_outlines: Default::default(),
        };
        (dir, store, record)
    }

    fn catalog_of(record: &PackageRecord) -> Catalog {
        let catalog = Catalog::default();
        catalog.put(record.clone());
        catalog
    }

    fn refs(repositories: &Repositories, lease: &Lease) -> String {
        repositories.refs(lease.path()).unwrap()
    }

    #[test]
    fn the_same_live_versions_always_make_the_same_objects() {
        let Some(git) = git() else { return };
        let repositories = Repositories::new(git);
        let (_dir, store, record) = data_dir();
        let first = repositories
            .current(&store, &catalog_of(&record), &record.name)
            .unwrap()
            .unwrap();
        let listed = refs(&repositories, &first);
        let names: Vec<&str> = listed.lines().map(|line| line.split(' ').nth(1).unwrap()).collect();
        assert_eq!(names, ["refs/heads/main", "refs/tags/6.0.1", "refs/tags/7.0.0"]);
        let (_other_dir, other_store, other_record) = data_dir();
        let again = repositories
            .current(&other_store, &catalog_of(&other_record), &other_record.name)
            .unwrap()
            .unwrap();
        assert_eq!(
            refs(&repositories, &again),
            listed,
            "object ids depend on the records alone"
        );
        assert_eq!(repositories.inspect(&store, &record).unwrap(), []);
    }

    #[test]
    fn a_revocation_makes_a_new_repository_without_the_version_and_the_old_one_goes_when_unread() {
        let Some(git) = git() else { return };
        let repositories = Repositories::new(git);
        let (_dir, store, mut record) = data_dir();
        let before = repositories
            .current(&store, &catalog_of(&record), &record.name)
            .unwrap()
            .unwrap();
        let old_tip = refs(&repositories, &before);
        record.versions[0].revoked = Some(Revocation {
            at: Timestamp::now(),
            reason: "test".into(),
        });
        let catalog = catalog_of(&record);
        let after = repositories.current(&store, &catalog, &record.name).unwrap().unwrap();
        let listed = refs(&repositories, &after);
        assert!(
            !listed.contains("refs/tags/6.0.1") && listed.contains("refs/tags/7.0.0"),
            "{listed}"
        );
        assert_ne!(old_tip, listed, "7.0.0 has no parent any more");
        assert!(before.path().is_dir(), "a generation being read stays");
        let old = before.path().to_path_buf();
        drop(before);
        drop(after);
        let _next = repositories.current(&store, &catalog, &record.name).unwrap().unwrap();
        assert!(!old.exists(), "an unread old generation is removed by the next request");
        let stale = store
            .full_path(&layout::repository_dir(&record.name))
            .join("0000.partial");
        std::fs::create_dir(&stale).unwrap();
        assert_eq!(
            repositories.inspect(&store, &record).unwrap(),
            [Finding::Stale("0000.partial".into())]
        );
    }
}
