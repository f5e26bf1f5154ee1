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
//!
//! A build after a publish is an *update*: when the generation of the first
//! live versions but the new ones is there (its stamp, made from those
//! versions alone, names it), the new `<stamp>.partial` takes its packs
//! (hard links: git never changes a pack) and its refs, and `fast-import`
//! adds only the new versions' commits, whose ids are those a full build
//! makes. The old generation is never written, so an update cut short is
//! like a build cut short: a `.partial` without its `.git`, removed and done
//! again by the next request. A revocation, or a version published below
//! the highest, changes the chain: that is a full build, as is an update
//! that would leave more than [`MAX_PACKS`] packs.
//!
//! Memory: `fast-import` reads its stream as it is written, one version at
//! a time, so a build holds one version's files, never the history. Before
//! it inflates a version it reserves [`HELD_PER_INFLATED_BYTE`] times the
//! version's inflated size (its bundle's gzip trailer) from the builds'
//! memory budget, shared by every build at once, and gives it back once the
//! files are written: concurrent builds are bounded by the bytes they hold,
//! and one that finds the budget spent for 3 s fails as
//! [`RepositoryError::Busy`] (the next request builds again).

use crate::budget::{self, Budget, Busy, Reservation};
use crate::bundle::{self, BundleError};
use crate::git::{Git, GitError, Invocation, Stdin};
use crate::package::{Catalog, PackageName, PackageRecord, Version, VersionRecord};
use crate::store::{RecordPath, Store, StoreError, layout, lock_ignoring_poison};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::io::{self, BufWriter, Write};
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
/// The bytes a build holds per inflated byte of the version it writes: a
/// module's text is in the JSON parser's buffer, then in its own string.
pub const HELD_PER_INFLATED_BYTE: u64 = 2;
/// The builds' memory budget when none is given: one version at the
/// registry's default inflated cap (64 MiB).
pub const DEFAULT_BUILD_MEMORY: u64 = HELD_PER_INFLATED_BYTE * 64 * 1024 * 1024;
/// An update that would leave more packs than this is a full build instead,
/// so that git reads a long history from few packs.
const MAX_PACKS: usize = 32;
/// `fast-import`'s input is written in pieces of this size at most.
const STREAM_BUFFER: usize = 64 * 1024;

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
    /// The builds' memory budget stayed spent.
    #[error(transparent)]
    Busy(#[from] Busy),
}

/// `err` as the full disk it was, when git failed for want of room in
/// `dir`: git's own `ENOSPC` reaches us only as words in its standard error
/// (git runs in the C locale), or as a file system with no room left; as
/// the store's error with that errno, it answers `507`, not `500`.
fn for_want_of_room(err: RepositoryError, dir: &Path) -> RepositoryError {
    let said_so = |stderr: &str| {
        ["No space left on device", "Disk quota exceeded"]
            .iter()
            .any(|words| stderr.contains(words))
    };
    let full = match &err {
        RepositoryError::Git(GitError::Failed { stderr, .. }) => said_so(stderr) || no_room_left(dir),
        RepositoryError::Git(GitError::Io(_)) => no_room_left(dir),
        _ => false,
    };
    if !full {
        return err;
    }
    log::warn!(
        "building the repository in {} failed for want of room: {err}",
        dir.display()
    );
    let enospc = io::Error::from_raw_os_error(libc::ENOSPC);
    RepositoryError::Store(StoreError::io(crate::store::Operation::Write, dir)(enospc))
}

/// Whether the file system holding `dir` has less than a page left for us.
fn no_room_left(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `stat` is plain data that statvfs fills in; `path` is a
    // NUL-terminated string that outlives the call.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } != 0 {
        return false;
    }
    (stat.f_bavail as u64).saturating_mul(stat.f_frsize as u64) < 4096
}

/// What a repository is built from, summed up: see the module's header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositoryStamp(String);

impl RepositoryStamp {
    pub fn of(record: &PackageRecord) -> RepositoryStamp {
        RepositoryStamp::of_versions(&record.name, live(record))
    }

    /// The stamp of the repository of `versions` (live, in version order).
    fn of_versions<'v>(name: &PackageName, versions: impl IntoIterator<Item = &'v VersionRecord>) -> RepositoryStamp {
        let mut summary = format!("{FORMAT}\n{name}\n");
        for version in versions {
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
    /// Bytes the builds running now hold (see the module's header).
    memory: Budget,
}

/// The generation an update starts from: the repository of the first
/// `commits.len()` live versions.
struct Base {
    /// Its directory (`<stamp>.git`).
    entry: RecordPath,
    /// Each version's commit id, in version order.
    commits: Vec<String>,
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
            memory: Budget::new(DEFAULT_BUILD_MEMORY, "repository builds"),
        }
    }

    /// With `bytes` as the builds' memory budget.
    pub fn with_build_memory(self, bytes: u64) -> Repositories {
        Repositories {
            memory: Budget::new(bytes, "repository builds"),
            ..self
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
        // Not the package's record lock, which carries the writers' gate
        // (see `Store::lock_derived`): a revocation may then commit while a
        // build reads the bundles, and remove one; the build for the new
        // record, taken again, needs it no more.
        let _guard = store.lock_derived(&layout::repository_dir(name));
        let mut revoked_meanwhile = false;
        loop {
            let Some(record) = catalog.get(name) else {
                return Ok(None);
            };
            let stamp = RepositoryStamp::of(&record);
            let path = store.full_path(&layout::repository(name, &stamp));
            if !is_plain_dir(&path) {
                match self.build(store, &record, &stamp) {
                    Err(RepositoryError::MissingBundle { .. })
                        if !revoked_meanwhile
                            && catalog.get(name).is_some_and(|now| RepositoryStamp::of(&now) != stamp) =>
                    {
                        revoked_meanwhile = true;
                        continue;
                    }
                    built => built?,
                }
            }
            let lease = self.lease(path);
            self.remove_unused(store, name, &stamp);
            return Ok(Some(lease));
        }
    }

    /// Removes every generation of the package's repository and builds the
    /// current one (`admin fsck --repair`, with no server running).
    pub fn rebuild(&self, store: &Store, record: &PackageRecord) -> Result<(), RepositoryError> {
        let _guard = store.lock_derived(&layout::repository_dir(&record.name));
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
        self.init(fresh.path())?;
        self.import(store, record, None, fresh.path())?;
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
    /// directory, from the generation of all but the newest when there is
    /// one, then renames it to `<stamp>.git`.
    fn build(&self, store: &Store, record: &PackageRecord, stamp: &RepositoryStamp) -> Result<(), RepositoryError> {
        let scratch = layout::repository_scratch(&record.name, stamp);
        store.remove_tree(&scratch)?;
        store.create_dir(&scratch)?;
        let dir = store.full_path(&scratch);
        self.init(&dir).map_err(|err| for_want_of_room(err.into(), &dir))?;
        let base = self.base(store, record);
        if let Some(base) = &base {
            store.link_files(
                &layout::repository_packs(&base.entry),
                &layout::repository_packs(&scratch),
            )?;
        }
        self.import(store, record, base.as_ref(), &dir)
            .map_err(|err| for_want_of_room(err, &dir))?;
        store.rename_dir(&scratch, &layout::repository(&record.name, stamp))?;
        Ok(())
    }

    /// Makes the empty directory `dir` an empty bare repository.
    fn init(&self, dir: &Path) -> Result<(), GitError> {
        let mut init = Invocation::new(["init", "--bare", "--quiet", "--initial-branch=main", "."]);
        init.cwd = Some(dir);
        self.git.run_ok(init).map(drop)
    }

    /// The generation to update: the longest run of `record`'s first live
    /// versions (all but one at least) whose repository is there, when it
    /// has the refs it should and few enough packs; `None` for a full build.
    fn base(&self, store: &Store, record: &PackageRecord) -> Option<Base> {
        let versions: Vec<&VersionRecord> = live(record).collect();
        let name = &record.name;
        let (entry, count) = (1..versions.len()).rev().find_map(|count| {
            let stamp = RepositoryStamp::of_versions(name, versions[..count].iter().copied());
            let entry = layout::repository(name, &stamp);
            is_plain_dir(&store.full_path(&entry)).then_some((entry, count))
        })?;
        let dir = store.full_path(&entry);
        if !in_few_packs(&dir) {
            return None;
        }
        match self.refs(&dir).map(|refs| commits_of(&refs, &versions[..count])) {
            Ok(Some(commits)) => Some(Base { entry, commits }),
            found => {
                log::warn!(
                    "the repository {} does not hold what its name says ({found:?}): building {name} anew",
                    dir.display()
                );
                None
            }
        }
    }

    /// Writes the commits and tags of `record`'s live versions into the
    /// bare repository `dir`, which holds `base`'s objects (or none).
    fn import(
        &self,
        store: &Store,
        record: &PackageRecord,
        base: Option<&Base>,
        dir: &Path,
    ) -> Result<(), RepositoryError> {
        let versions: Vec<&VersionRecord> = live(record).collect();
        if versions.is_empty() {
            return Ok(());
        }
        let mut failure = None;
        // Durable before the rename that commits it; always a pack (not
        // loose objects, as for few), which the next update links.
        let mut import = Invocation::new([
            "-c",
            "core.fsync=all",
            "-c",
            "fastimport.unpackLimit=0",
            "fast-import",
            "--quiet",
        ]);
        import.cwd = Some(dir);
        import.time_limit = BUILD_LIMIT;
        import.stdin = Stdin::Stream(Box::new(|input: &mut dyn Write| {
            let mut out = BufWriter::with_capacity(STREAM_BUFFER, input);
            let written = self.write_stream(&mut out, store, record, &versions, base);
            let written = written.and_then(|()| out.flush().map_err(|err| GitError::Io(err).into()));
            written.map_err(|err| match err {
                // git stopped reading: its exit status says why.
                RepositoryError::Git(GitError::Io(err)) => err,
                other => {
                    let stopped = io::Error::other(other.to_string());
                    failure = Some(other);
                    stopped
                }
            })
        }));
        let imported = self.git.run_ok(import);
        // A stream cut short for a reason of ours fails git too: ours is the story.
        match failure {
            Some(err) => Err(err),
            None => imported.map(drop).map_err(RepositoryError::from),
        }
    }

    /// The `git fast-import` stream of the repository of `versions` (live,
    /// in version order), written as it is made, one version at a time:
    /// `base`'s tags as they are, then one commit per further version on
    /// `main`, each the parent of the next (the first, of `base`'s newest),
    /// each tagged. It ends with `done`, so that git refuses a stream cut
    /// short.
    fn write_stream(
        &self,
        out: &mut impl Write,
        store: &Store,
        record: &PackageRecord,
        versions: &[&VersionRecord],
        base: Option<&Base>,
    ) -> Result<(), RepositoryError> {
        let io = |err| RepositoryError::Git(GitError::Io(err));
        let kept = base.map_or(&[][..], |base| &base.commits[..]);
        out.write_all(b"feature done\n").map_err(io)?;
        for (version, commit) in versions.iter().zip(kept) {
            write!(out, "reset refs/tags/{}\nfrom {commit}\n\n", version.version).map_err(io)?;
        }
        let author = &record.name.author;
        for (mark, version) in (1..).zip(&versions[kept.len()..]) {
            let ident = format!(
                "{author} <{author}@{IDENT_HOST}> {} +0000",
                version.published.unix_seconds()
            );
            let message = format!("{} {}\n", record.name, version.version);
            write!(
                out,
                "commit refs/heads/main\nmark :{mark}\nauthor {ident}\ncommitter {ident}\ndata {}\n{message}",
                message.len()
            )
            .map_err(io)?;
            if let (1, Some(parent)) = (mark, kept.last()) {
                writeln!(out, "from {parent}").map_err(io)?;
            }
            out.write_all(b"deleteall\n").map_err(io)?;
            let (_share, files) = self.version_files(store, &record.name, version.version, &version.sha256)?;
            for file in files {
                // Paths are safe names joined by `/`: nothing to quote.
                write!(out, "M 100644 inline {}\ndata {}\n", file.path, file.bytes.len()).map_err(io)?;
                out.write_all(&file.bytes).map_err(io)?;
                out.write_all(b"\n").map_err(io)?;
            }
            write!(out, "\nreset refs/tags/{}\nfrom :{mark}\n\n", version.version).map_err(io)?;
        }
        out.write_all(b"done\n").map_err(io)
    }

    /// The files of the version's bundle, and the share of the memory
    /// budget they hold, reserved before the bundle is inflated.
    fn version_files(
        &self,
        store: &Store,
        name: &PackageName,
        version: Version,
        sha256: &str,
    ) -> Result<(Reservation, Vec<bundle::project::ProjectFile>), RepositoryError> {
        let bytes = store
            .read_bytes(&layout::version_bundle(name, version))?
            .ok_or_else(|| RepositoryError::MissingBundle {
                name: name.clone(),
                version,
            })?;
        // Never a repository of other content than was published.
        let path = store.full_path(&layout::version_bundle(name, version));
        crate::package::bundle_cache::verify(&path, &bytes, sha256)?;
        let failed = |source| RepositoryError::Bundle {
            name: name.clone(),
            version,
            source,
        };
        let inflated = inflated_size(&bytes).min(MAX_INFLATED);
        let share = self.memory.reserve(HELD_PER_INFLATED_BYTE * inflated, budget::WAIT)?;
        // Inflating stops at the size reserved for: a trailer that lies fails the build.
        let decoded = bundle::read(&bytes, inflated).map_err(failed)?;
        drop(bytes);
        let files = bundle::project::project_files(decoded).map_err(failed)?;
        Ok((share, files))
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

/// The commit ids of `versions` in the refs of their repository (`<id>
/// <ref>` lines), when those are exactly one tag per version and `main` at
/// the last.
fn commits_of(refs: &str, versions: &[&VersionRecord]) -> Option<Vec<String>> {
    let refs: HashMap<&str, &str> = refs
        .lines()
        .filter_map(|line| line.split_once(' '))
        .map(|(id, name)| (name, id))
        .collect();
    let commits: Vec<String> = versions
        .iter()
        .map(|version| {
            refs.get(format!("refs/tags/{}", version.version).as_str())
                .map(|id| id.to_string())
        })
        .collect::<Option<_>>()?;
    let main = refs.get("refs/heads/main")?;
    (refs.len() == versions.len() + 1 && commits.last().is_some_and(|last| last == main)).then_some(commits)
}

/// Whether every object of the bare repository `dir` is in a pack, and the
/// packs are fewer than [`MAX_PACKS`]: what an update takes from it. (A
/// repository an earlier release built may hold loose objects.)
fn in_few_packs(dir: &Path) -> bool {
    let names = |dir: &Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .map(|listing| {
                listing
                    .filter_map(Result::ok)
                    .map(|entry| entry.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let packs = names(&dir.join("objects/pack"));
    let packed = names(&dir.join("objects"))
        .iter()
        .all(|name| name == "pack" || name == "info");
    packed && packs.iter().filter(|name| name.ends_with(".pack")).count() < MAX_PACKS
}

/// The inflated size of a bundle, from its gzip trailer: a bundle is one
/// gzip member (checked when it was published) smaller than 4 GiB, so its
/// last four bytes are its inflated size.
fn inflated_size(bundle: &[u8]) -> u64 {
    match bundle.len().checked_sub(4) {
        Some(at) => u64::from(u32::from_le_bytes(bundle[at..].try_into().expect("four bytes"))),
        None => 0,
    }
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

    /// `record` with only its first `count` versions.
    fn first_versions(record: &PackageRecord, count: usize) -> PackageRecord {
        PackageRecord {
            versions: record.versions[..count].to_vec(),
            ..record.clone()
        }
    }

    /// What `git <args>` says in the repository `dir`, trimmed.
    fn git_says(repositories: &Repositories, dir: &Path, args: &[&str]) -> String {
        let mut run = Invocation::new(args.iter().copied());
        run.cwd = Some(dir);
        let out = repositories.git.run_ok(run).unwrap();
        String::from_utf8(out).unwrap().trim().to_string()
    }

    /// Moves the bundle of `record`'s version `index` away until the
    /// returned guard is dropped.
    fn hide_bundle(store: &Store, record: &PackageRecord, index: usize) -> impl Drop {
        struct Hidden(PathBuf, PathBuf);
        impl Drop for Hidden {
            fn drop(&mut self) {
                std::fs::rename(&self.1, &self.0).unwrap();
            }
        }
        let bundle = store.full_path(&layout::version_bundle(&record.name, record.versions[index].version));
        let hidden = bundle.with_extension("hidden");
        std::fs::rename(&bundle, &hidden).unwrap();
        Hidden(bundle, hidden)
    }

    #[test]
    fn a_publish_adds_one_commit_to_the_repository_and_the_earlier_ids_stay() {
        let Some(git) = git() else { return };
        let repositories = Repositories::new(git);
        let (_dir, store, record) = data_dir();
        let before = repositories
            .current(&store, &catalog_of(&first_versions(&record, 1)), &record.name)
            .unwrap()
            .unwrap();
        let first = git_says(&repositories, before.path(), &["rev-parse", "refs/tags/6.0.1"]);
        let old = before.path().to_path_buf();
        drop(before);
        // The update reads the new version's bundle alone.
        let hidden = hide_bundle(&store, &record, 0);
        let after = repositories
            .current(&store, &catalog_of(&record), &record.name)
            .unwrap()
            .unwrap();
        drop(hidden);
        let says = |args: &[&str]| git_says(&repositories, after.path(), args);
        assert_eq!(says(&["rev-parse", "refs/tags/6.0.1"]), first);
        assert_eq!(
            says(&["rev-parse", "refs/tags/7.0.0^"]),
            first,
            "the new commit's parent"
        );
        assert_eq!(says(&["rev-parse", "main"]), says(&["rev-parse", "refs/tags/7.0.0"]));
        assert_eq!(says(&["rev-list", "--count", "main"]), "2");
        assert!(!old.exists(), "the generation updated from goes once unread");
        drop(after);
        assert_eq!(
            repositories.inspect(&store, &record).unwrap(),
            [],
            "sound, with the refs of a full build"
        );
    }

    #[test]
    fn an_update_cut_short_is_left_unfinished_and_done_again_by_the_next_request() {
        let Some(git) = git() else { return };
        let repositories = Repositories::new(git);
        let (_dir, store, record) = data_dir();
        let catalog = catalog_of(&record);
        drop(repositories.current(&store, &catalog_of(&first_versions(&record, 1)), &record.name));
        let stamp = RepositoryStamp::of(&record);
        let done = store.full_path(&layout::repository(&record.name, &stamp));
        let partial = store.full_path(&layout::repository_scratch(&record.name, &stamp));
        {
            // The new version's bundle cannot be read halfway through the update.
            let _hidden = hide_bundle(&store, &record, 1);
            let err = repositories
                .current(&store, &catalog, &record.name)
                .err()
                .expect("cut short");
            assert!(matches!(err, RepositoryError::MissingBundle { .. }), "{err}");
        }
        assert!(!done.exists(), "an unfinished update is not the repository");
        assert!(partial.is_dir(), "it is left where the next build finds it");
        let lease = repositories.current(&store, &catalog, &record.name).unwrap().unwrap();
        assert_eq!(lease.path(), done);
        assert!(!partial.exists());
        let listed = refs(&repositories, &lease);
        assert!(listed.contains("refs/tags/7.0.0"), "{listed}");
        drop(lease);
        assert_eq!(repositories.inspect(&store, &record).unwrap(), []);
    }

    #[test]
    fn builds_share_a_memory_budget_and_one_that_finds_it_spent_is_busy() {
        let Some(git) = git() else { return };
        let repositories = Repositories::new(git).with_build_memory(1024);
        let (_dir, store, record) = data_dir();
        let catalog = catalog_of(&record);
        let spent = repositories.memory.reserve(1024, Duration::ZERO).unwrap();
        let err = repositories
            .current(&store, &catalog, &record.name)
            .err()
            .expect("no memory");
        assert!(matches!(err, RepositoryError::Busy(_)), "{err}");
        drop(spent);
        // A version larger than the whole budget waits for all of it.
        repositories.current(&store, &catalog, &record.name).unwrap().unwrap();
        assert_eq!(repositories.memory.in_use(), 0, "every share was given back");
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
