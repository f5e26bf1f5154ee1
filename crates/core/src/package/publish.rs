//! Changing packages: publishing a version, revoking versions, changing a
//! package's privacy. Each runs under the package's lock and commits by
//! writing one record ([`super::records`]) with the change itself, its audit
//! entries (`changes`) and the events it announces (publishes and
//! revocations of a public package, and every privacy change; see
//! [`super::events`]): a publish writes the new version's record, a
//! revocation rewrites the version's, a privacy change `package.json`. What
//! a publish or revocation checks, it checks against the catalog, which
//! holds every record as committed (every change commits through here,
//! under the package's lock): neither reads the package's other versions.
//! A publish stages its bundle beside the records first: three fsyncs in
//! all (the bundle, the version's record, their directory). A package's
//! first publish writes `first-publish.pending` first and `package.json`
//! before the version's record, and removes the marker after the commit.
//! An automation token acts within its scopes ([`crate::auth::token`]) and
//! its owner's role, both checked here; its id and name go on the events
//! and audit entries of what it did.
//! A publish first takes the lock of its compiler file name, which packages
//! the compiler would confuse (`x/y-z`, `x-y/z`) share, and checks the bundle
//! (streaming, see [`crate::bundle`]) before taking any lock.

use super::bundle_cache::BundleCache;
use super::events::{EventKind, EventLog, NewEvent};
use super::records::{self, PackageFile, VersionFile};
use super::{Catalog, PackageChange, PackageError, PackageName, PackageRecord, Revocation, Version, VersionRecord};
use crate::auth::secret::sha256_hex;
use crate::auth::token::{ScopeAction, ScopedToken, TokenRef};
use crate::budget::{self, Budget};
use crate::bundle;
use crate::bundle::outline::KernelCode;
use crate::error::Chain;
use crate::identity::{self, Action, Actor, IdentityError, IdentityName, Role};
use crate::ratelimit::RateLimiter;
use crate::store::{PreparedFile, Store, StoreError, layout};
use crate::time::Timestamp;

/// The identities whose packages may contain kernel JavaScript by default.
pub const DEFAULT_KERNEL_CODE_AUTHORS: &str = "gren-lang";

/// The package catalog and the event log, which change together.
pub struct Packages {
    pub catalog: Catalog,
    pub events: EventLog,
    pub bundles: BundleCache,
}

pub struct Upload<'a> {
    pub bytes: &'a [u8],
    pub actor: &'a Actor,
    /// The automation token the actor publishes with, `None` for a session.
    pub token: Option<&'a ScopedToken>,
    /// `?private=true`
    pub private: bool,
    pub max_inflated: u64,
    /// Identities whose packages may contain kernel code (`GREN_REGISTRY_KERNEL_CODE_AUTHORS`).
    pub kernel_authors: &'a [String],
    /// Operators importing history skip the successor rule.
    pub successor_rule: bool,
    /// The server's slots for inflating bundles; `None` for operators.
    pub inflations: Option<&'a Budget>,
    /// Refusals of new package names for their file names, counted against
    /// a limit with this key (the user); `None` for operators. A refusal
    /// tells whether some package, private ones included, has those file
    /// names: once the limit is used up, every new name is refused with it,
    /// colliding or not, so the answer tells nothing more.
    pub name_probes: Option<(&'a RateLimiter, &'a str)>,
}

#[derive(Debug)]
pub enum Published {
    Created(VersionRecord),
    /// The same bytes were already published: a safe retry.
    Existing(VersionRecord),
}

impl Packages {
    /// Loads the packages, removing the debris of interrupted changes.
    pub fn open(store: &Store) -> Result<Packages, StoreError> {
        Packages::load(store, true)
    }

    /// Loads the packages without repairing anything, to read beside a
    /// running server. Records read across a commit can show a gap in the
    /// log that is not there, so a load that fails is taken again with the
    /// server's writers held off (as `fsck` does): only then is its error
    /// real. A load that succeeds saw one moment of the data (events are
    /// numbered in commit order, and it found no gap), and held up no write.
    pub fn open_read_only(store: &Store) -> Result<Packages, StoreError> {
        Packages::load(store, false).or_else(|first| {
            // Without the gate (another user's lock file, say), the first
            // load's error is the one to show.
            let Ok(_held) = crate::store::hold_writers(store.root()) else {
                return Err(first);
            };
            Packages::load(store, false)
        })
    }

    fn load(store: &Store, repair: bool) -> Result<Packages, StoreError> {
        let (catalog, events) = Catalog::load(store)?;
        let events = EventLog::open(store, events)?;
        if repair {
            catalog.clear_debris(store)?;
        }
        release_freed_memory();
        Ok(Packages {
            catalog,
            events,
            bundles: BundleCache::default(),
        })
    }

    pub fn publish(&self, store: &Store, upload: Upload) -> Result<(PackageName, Published), PackageError> {
        let checked = check_upload(store, &upload)?;
        let outline = checked.outline;
        let name = outline.name.clone();
        let sha256 = sha256_hex(upload.bytes);

        // Packages sharing a file name share this lock, taken before their
        // own: two of them cannot both pass the check below at once.
        let _file_name = store.lock(&layout::file_name_lock(&name));
        let guard = store.lock(&layout::package(&name));
        let existing = self.catalog.get(&name);
        match &existing {
            None => {
                self.refuse_file_name_twin(&name, upload.name_probes)?;
            }
            Some(record) => {
                if let Some(taken) = record.version(outline.version) {
                    if taken.sha256 == sha256 && taken.revoked.is_none() {
                        return Ok((name, Published::Existing(taken.clone())));
                    }
                    return Err(PackageError::VersionExists {
                        name,
                        version: outline.version,
                        revoked: taken.revoked.is_some(),
                    });
                }
                if (upload.private || outline.private) && !record.private {
                    return Err(PackageError::PrivacyMismatch { name });
                }
                let follows = outline.version.follows(&record.versions, |version| version.version);
                if upload.successor_rule && !record.versions.is_empty() && !follows {
                    let taken: Vec<Version> = record.versions.iter().map(|version| version.version).collect();
                    return Err(PackageError::NotASuccessor {
                        name,
                        version: outline.version,
                        allowed: Version::successors(&taken),
                    });
                }
            }
        }
        let version = VersionRecord {
            version: outline.version,
            gren_version: outline.gren_version,
            platform: outline.platform.clone(),
            summary: outline.summary.clone(),
            published: Timestamp::now(),
            sha256,
            size: upload.bytes.len() as u64,
            revoked: None,
        };
        let token = upload.token.map(ScopedToken::reference);
        let published = change(
            upload.actor,
            token.as_ref(),
            version.published,
            Action::Published {
                package: name.to_string(),
                version: version.version.to_string(),
            },
        );
        let new_package = match &existing {
            None => Some(PackageFile::new(name.clone(), upload.private || outline.private)),
            Some(_) => None,
        };
        let private = existing
            .as_ref()
            .map_or(upload.private || outline.private, |record| record.private);
        // Let go before the commit: the catalog changes its record in place
        // only when no one holds it, and copying 10,000 versions costs more
        // than the rest of a publish.
        drop(existing);
        let bundle = store.prepare_bytes(&guard, &layout::version_bundle(&name, version.version), upload.bytes);
        let first = new_package.is_some();
        let file = VersionFile {
            version: version.clone(),
            events: Vec::new(),
            changes: vec![published],
            outline: None,
        };
        self.write_version(store, &name, new_package, private, file, bundle, token.as_ref())
            .inspect_err(|_| remove_uncommitted(store, &name, version.version, first))?;
        Ok((name, Published::Created(version)))
    }

    /// Stages a new version's bundle beside the package's records, then
    /// commits the version's record `file` there, with its `publish` event
    /// unless the package is `private`. A first publish (`new_package`)
    /// marks the new directory first, so that start-up can tell its debris
    /// from a committed package that lost its records, and writes
    /// `package.json` before the commit.
    #[allow(clippy::too_many_arguments)]
    fn write_version(
        &self,
        store: &Store,
        name: &PackageName,
        new_package: Option<PackageFile>,
        private: bool,
        mut file: VersionFile,
        bundle: Result<PreparedFile, StoreError>,
        token: Option<&TokenRef>,
    ) -> Result<(), StoreError> {
        let marker = layout::first_publish_marker(name);
        if new_package.is_some() {
            store.write_bytes(&marker, b"")?;
        }
        store.stage(bundle?)?;
        if let Some(package) = &new_package {
            store.write_json(&layout::package(name), package)?;
        }
        let events = announcing(private, EventKind::Publish, &file.version, token);
        let path = layout::version_record(name, file.version.version);
        self.events.append(name, &events, |numbered| {
            file.events = numbered;
            store.write_json(&path, &file)?;
            // Before the events join the log: whoever they wake (the
            // notifier, cache purgers) must find the change made.
            match &new_package {
                Some(package) => self.catalog.put(records::assemble(package.clone(), vec![file.clone()])),
                None => self
                    .catalog
                    .update(name, |record| record.put_version(file.version.clone())),
            }
            Ok::<(), StoreError>(())
        })?;
        if new_package.is_some() {
            // Committed: a marker left behind is debris start-up removes.
            after_commit("first-publish marker removal", store.remove(&marker).map(drop));
        }
        Ok(())
    }

    /// Revokes `versions` (all of them when `None`). Already revoked versions
    /// stay as they are, so revoking is idempotent. Each version's
    /// revocation is a change of its own, committed by its record: revoking
    /// a whole package that fails part-way has revoked some of its versions,
    /// and revoking it again revokes the rest. Returns the package's
    /// version records afterwards.
    pub fn revoke(
        &self,
        store: &Store,
        name: &PackageName,
        versions: Option<Version>,
        reason: &str,
        actor: &Actor,
        token: Option<&ScopedToken>,
    ) -> Result<Vec<VersionRecord>, PackageError> {
        let identity_name = owner(name)?;
        if let Some(token) = token {
            token.require(ScopeAction::Revoke, name)?;
        }
        identity::require_role(&identity::require(store, &identity_name)?, actor, Role::Publish)?;
        let token = token.map(ScopedToken::reference);
        let _guard = store.lock(&layout::package(name));
        let record = self.require(name)?;
        if let Some(version) = versions
            && record.version(version).is_none()
        {
            return Err(version_not_found(name, version));
        }
        let revocation = Revocation {
            at: Timestamp::now(),
            reason: reason.to_string(),
        };
        let targets: Vec<Version> = record
            .versions
            .iter()
            .filter(|record| record.revoked.is_none() && versions.is_none_or(|version| version == record.version))
            .map(|record| record.version)
            .collect();
        let private = record.private;
        // Let go before the commits (see `publish`).
        drop(record);
        for version in targets {
            let revoked = change(
                actor,
                token.as_ref(),
                revocation.at,
                Action::Revoked {
                    package: name.to_string(),
                    version: version.to_string(),
                    reason: reason.to_string(),
                },
            );
            self.revoke_version(store, name, private, version, &revocation, revoked, token.as_ref())?;
        }
        Ok(self.require(name)?.versions.clone())
    }

    /// Commits the revocation of `version` of `name` by rewriting the
    /// version's record with it, its audit entry `revoked`, its `revoke`
    /// event (unless the package is `private`) and its outline; then
    /// deletes its bundle.
    #[allow(clippy::too_many_arguments)]
    fn revoke_version(
        &self,
        store: &Store,
        name: &PackageName,
        private: bool,
        version: Version,
        revocation: &Revocation,
        revoked: PackageChange,
        token: Option<&TokenRef>,
    ) -> Result<(), StoreError> {
        let path = layout::version_record(name, version);
        let mut file = records::read_version(store, name, version)?.ok_or_else(|| {
            StoreError::io(crate::store::Operation::Read, &store.full_path(&path))(std::io::ErrorKind::NotFound.into())
        })?;
        // The version page still shows what the version was.
        file.outline = self.live_outline(store, name, &file.version)?;
        file.version.revoked = Some(revocation.clone());
        file.changes.push(revoked);
        let events = announcing(private, EventKind::Revoke, &file.version, token);
        self.events.append(name, &events, |numbered| {
            file.events.extend(numbered);
            store.write_json(&path, &file)?;
            self.catalog.update(name, |kept| {
                if let Some(outline) = &file.outline {
                    kept.revoked_outlines.insert(version, outline.clone());
                }
                kept.put_version(file.version.clone());
            });
            Ok::<(), StoreError>(())
        })?;
        // After the commit: the record already says the content is gone.
        let bundle = layout::version_bundle(name, version);
        self.bundles.forget(&store.full_path(&bundle));
        after_commit("bundle removal", store.remove(&bundle).map(drop));
        Ok(())
    }

    /// Makes a package private or public (identity admins), with a `private`
    /// or `public` event, committed by rewriting `package.json`. Going
    /// public also announces what mirrors missed while it was private
    /// ([`PackageRecord::going_public`]): those events are in `package.json`
    /// too. Only this change reads every version's record (for what
    /// mirrors were told of each).
    pub fn set_private(
        &self,
        store: &Store,
        name: &PackageName,
        private: bool,
        actor: &Actor,
    ) -> Result<PackageRecord, PackageError> {
        let identity_name = owner(name)?;
        identity::require_role(&identity::require(store, &identity_name)?, actor, Role::Admin)?;
        let _guard = store.lock(&layout::package(name));
        self.require(name)?;
        let not_found = || PackageError::NotFound { name: name.clone() };
        let mut record = records::read_history(store, name)?.ok_or_else(not_found)?;
        if record.private == private {
            return Ok(record);
        }
        let mut package: PackageFile = store.read_json(&layout::package(name))?.ok_or_else(not_found)?;
        let events = if private {
            vec![NewEvent::about_package(EventKind::Private)]
        } else {
            record.going_public()
        };
        let changed = change(
            actor,
            None,
            Timestamp::now(),
            Action::PrivacyChanged {
                package: name.to_string(),
                private,
            },
        );
        package.private = private;
        package.changes.push(changed.clone());
        self.events.append(name, &events, |numbered| {
            package.events.extend(numbered.iter().cloned());
            store.write_json(&layout::package(name), &package)?;
            self.catalog.update(name, |kept| kept.private = private);
            record.events.extend(numbered);
            Ok::<(), StoreError>(())
        })?;
        record.private = private;
        record.changes.push(changed);
        Ok(record)
    }

    /// The outline of `version` of `name`: from its bundle while it is live,
    /// from the record once revoked; `None` if it was lost.
    pub fn outline(
        &self,
        store: &Store,
        name: &PackageName,
        version: Version,
    ) -> Option<serde_json::Map<String, serde_json::Value>> {
        let record = self.catalog.get(name)?;
        if let Some(kept) = record.revoked_outlines.get(&version) {
            return Some(kept.clone());
        }
        self.live_outline(store, name, record.version(version)?)
            .unwrap_or_else(|err| {
                log::error!("{}", Chain(&err));
                None
            })
    }

    /// The outline in a live version's bundle: `None` when the bundle is
    /// gone, damaged or unreadable as a bundle (logged), an error when the
    /// disk would not give it (a revocation then stops: it would lose the
    /// outline).
    fn live_outline(
        &self,
        store: &Store,
        name: &PackageName,
        version: &VersionRecord,
    ) -> Result<Option<serde_json::Map<String, serde_json::Value>>, StoreError> {
        let path = store.full_path(&layout::version_bundle(name, version.version));
        let bytes = match self.bundles.read(&path, &version.sha256) {
            Ok(bytes) => bytes,
            Err(err) if err.is_not_found() => return Ok(None),
            // What it holds is not what was published: no outline is better
            // than a wrong one (and a revocation of it must not be stopped).
            Err(err @ StoreError::Damaged { .. }) => {
                log::error!("cannot read the outline of {name} {}: {}", version.version, Chain(&err));
                return Ok(None);
            }
            Err(err) => return Err(err),
        };
        match bundle::read_outline(&bytes) {
            Ok(outline) => Ok(Some(outline)),
            Err(err) => {
                log::error!(
                    "cannot read the outline of {name} {} from {}: {err}",
                    version.version,
                    path.display()
                );
                Ok(None)
            }
        }
    }

    /// Refuses a new package whose bundles another package's file names
    /// have, private or public alike (the same answer, taking the same path),
    /// within the limit of such refusals `probes` keeps.
    fn refuse_file_name_twin(
        &self,
        name: &PackageName,
        probes: Option<(&RateLimiter, &str)>,
    ) -> Result<(), PackageError> {
        if let Some((limiter, key)) = probes {
            limiter.peek(key)?;
        }
        if self.catalog.file_name_twin(name).is_none() {
            return Ok(());
        }
        if let Some((limiter, key)) = probes {
            // Counted; the refusal is answered whether or not this was the last.
            let _ = limiter.hit(key);
        }
        Err(PackageError::FileNameCollision {
            name: name.clone(),
            stem: name.file_stem(),
        })
    }
    /// The catalog's record of `name`: under the package's lock, the
    /// committed one.
    fn require(&self, name: &PackageName) -> Result<std::sync::Arc<PackageRecord>, PackageError> {
        self.catalog
            .get(name)
            .ok_or_else(|| PackageError::NotFound { name: name.clone() })
    }
}

/// The `kind` event about `version`, naming the automation `token` that
/// made the change, if any; none for a `private` package (going public
/// makes up for it).
fn announcing(private: bool, kind: EventKind, version: &VersionRecord, token: Option<&TokenRef>) -> Vec<NewEvent> {
    if private {
        return Vec::new();
    }
    vec![NewEvent {
        token: token.cloned(),
        ..NewEvent::about_version(kind, version)
    }]
}

/// Gives the memory freed while loading back to the system: reading every
/// record parses each package's history (audit entries, events) and drops
/// what the catalog does not keep, and glibc would otherwise hold on to the
/// freed pages (measured: about 60 MB at 100,000 versions, see
/// docs/PERFORMANCE.md).
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Removes what a publish that failed before its commit wrote: its staged
/// bundle and, for a first publish, its `package.json`, its marker (last:
/// until then start-up takes what is left for an interrupted first
/// publish) and the package's directory if nothing else is in it (what
/// else is there is not this publish's to judge). So `admin fsck` is clean
/// at once; if this fails too (a disk refusing removals), the start-up
/// repair removes the same debris.
fn remove_uncommitted(store: &Store, name: &PackageName, version: Version, first: bool) {
    let mut removed = store.remove(&layout::version_bundle(name, version)).map(drop);
    if first && removed.is_ok() {
        removed = store.remove(&layout::package(name)).map(drop);
    }
    if first && removed.is_ok() {
        removed = store.remove(&layout::first_publish_marker(name)).map(drop);
    }
    if first && removed.is_ok() {
        removed = store.remove_empty_dir(&layout::package_dir(name)).map(drop);
    }
    if let Err(err) = removed {
        log::error!("cannot remove what a failed publish left: {}", Chain(&err));
    }
}

/// Work after a commit: the change has happened and its answer must say so,
/// so a failure here is logged for the operator (`admin fsck` finds what it
/// left behind) instead of turning a success into an error.
fn after_commit<E: std::error::Error>(what: &str, result: Result<(), E>) {
    if let Err(err) = result {
        log::error!("after a committed change, the {what} failed: {}", Chain(&err));
    }
}

/// The audit entry of a change to a package, kept in its record: by
/// `actor`, with the automation token `token` or not.
fn change(actor: &Actor, token: Option<&TokenRef>, at: Timestamp, action: Action) -> PackageChange {
    PackageChange {
        at,
        actor: actor.label(),
        token: token.cloned(),
        action,
    }
}

/// Checks an upload's bundle, refusing it from its outline when the actor
/// may not publish it.
fn check_upload(store: &Store, upload: &Upload) -> Result<bundle::Checked, PackageError> {
    // Inflating is what costs memory: only so many at once.
    let _slot = upload
        .inflations
        .map(|slots| slots.reserve(1, budget::WAIT))
        .transpose()?;
    let kernel = KernelCode::Authors(upload.kernel_authors);
    bundle::check(upload.bytes, upload.max_inflated, kernel, |outline| {
        if let Some(token) = upload.token {
            token.require(ScopeAction::Publish, &outline.name)?;
        }
        may_publish(store, &outline.name, upload.actor)
    })
}

/// Whether `actor` may publish `name`: its identity exists, is spelled as in
/// the name, and the actor has the publish role there.
fn may_publish(store: &Store, name: &PackageName, actor: &Actor) -> Result<(), PackageError> {
    let owner = identity::require(store, &owner(name)?)?;
    if name.author != owner.name {
        return Err(PackageError::OwnerSpelledOtherwise {
            owner: owner.name,
            project: name.project.clone(),
        });
    }
    Ok(identity::require_role(&owner, actor, Role::Publish)?)
}

/// The identity a package belongs to (an author that cannot be an identity has none).
fn owner(name: &PackageName) -> Result<IdentityName, IdentityError> {
    name.identity().ok_or_else(|| IdentityError::NotFound {
        name: name.author.clone(),
    })
}

pub fn version_not_found(name: &PackageName, version: Version) -> PackageError {
    PackageError::VersionNotFound {
        name: name.clone(),
        version,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_only_load_does_not_wait_for_the_writers() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let _held = crate::store::hold_writers(dir.path()).unwrap();
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::scope(|scope| {
            scope.spawn(|| sender.send(Packages::open_read_only(&store).is_ok()).unwrap());
            let loaded = receiver.recv_timeout(std::time::Duration::from_secs(5));
            // Without the answer, the thread waits for the writers' gate:
            // let it go, then fail.
            drop(_held);
            assert_eq!(loaded, Ok(true), "loaded while the writers were held off");
        });
    }
}
