//! `admin fsck [--repair]`: checks that every record parses, every reference
//! resolves, every live bundle matches its SHA-256, the event log gathered
//! from the package records has no gap and tells each record's story (every
//! live public version announced, no event naming a missing version or
//! another bundle, privacy), every change has its audit entry, nothing is in
//! quarantine and no temporary file is left. The debris a stopped server
//! leaves by design (interrupted publishes and revocations) is a note.
//! `--repair` fixes what is safe to fix: stray temporary files, indexes
//! derivable from records (users' session, automation token, git token and
//! identity lists), debris of interrupted writes (orphan sessions,
//! automation and git tokens, bundles of revoked or unrecorded versions, an interrupted first
//! publish's directory), and git repositories, derived from the bundles, by
//! building them again.
//! A file or directory the system will not show (EACCES, EIO: anything but
//! "absent") is a problem, and nothing is ever repaired from it: taking
//! "unreadable" for "missing" once deleted a valid session.

mod repositories;

use super::Report;
use gren_registry_core::auth::email::Email;
use gren_registry_core::auth::git_token::GitTokenRecord;
use gren_registry_core::auth::secret::sha256_hex;
use gren_registry_core::auth::session::Session;
use gren_registry_core::auth::token::TokenRecord;
use gren_registry_core::auth::user::User;
use gren_registry_core::error::Chain;
use gren_registry_core::identity::{Identity, Role};
use gren_registry_core::package::events::{EventKind, NumberingFault, numbering_faults};
use gren_registry_core::package::{self, Catalog, Found, Leftover, PackageRecord, RecordError};
use gren_registry_core::store::layout::{self, PackageDir};
use gren_registry_core::store::{RecordPath, Store, StoreError, TEMP_PREFIX};
use serde::de::DeserializeOwned;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

struct Fsck<'a> {
    store: &'a Store,
    repair: bool,
    problems: Vec<String>,
    /// Harmless leftovers of interrupted changes, by design (see data/README.md).
    notes: Vec<String>,
    repaired: Vec<String>,
    checked: BTreeMap<&'static str, usize>,
}

/// Checks the data directory (and repairs what is safe to when `repair`).
pub fn check(store: &Store, repair: bool) -> Report {
    let mut fsck = Fsck::new(store, repair);
    let catalog = fsck.records();
    fsck.repositories(&catalog);
    fsck.report()
}

/// Checks the data directory beside a running server, without repairing:
/// first holding nothing up; only when that finds a problem, the records
/// again with the server's writers held off (a change it was making can
/// look like one). The repositories are not checked while writers are held:
/// each is compared with a fresh build, which would stall every write for
/// as long, and they are derived data that a change half-made cannot make
/// look wrong; their findings come from a pass of their own, unheld.
pub fn check_beside_a_server(store: &Store) -> Result<Report, StoreError> {
    let first = check(store, false);
    if !first.failed {
        return Ok(first);
    }
    let mut fsck = Fsck::new(store, false);
    {
        let _held = gren_registry_core::store::hold_writers(store.root())?;
        fsck.records();
    }
    // The catalog again, outside the gate: its own findings were counted
    // by the held pass.
    let catalog = Fsck::new(store, false).packages();
    fsck.repositories(&catalog);
    Ok(fsck.report())
}

impl<'a> Fsck<'a> {
    fn new(store: &'a Store, repair: bool) -> Fsck<'a> {
        Fsck {
            store,
            repair,
            problems: Vec::new(),
            notes: Vec::new(),
            repaired: Vec::new(),
            checked: BTreeMap::new(),
        }
    }

    /// Every check but the repositories'; the package records it read.
    fn records(&mut self) -> BTreeMap<String, PackageRecord> {
        self.temp_files(self.store.root());
        let memberships = self.identities();
        self.users(&memberships);
        self.owned_records(
            "sessions",
            &layout::sessions_dir(),
            |session: &Session| &session.email,
            |user| &user.sessions,
        );
        self.owned_records(
            "tokens",
            &layout::tokens_dir(),
            |token: &TokenRecord| &token.email,
            |user| &user.tokens,
        );
        self.owned_records(
            "git tokens",
            &layout::git_tokens_dir(),
            |token: &GitTokenRecord| &token.email,
            |user| &user.git_tokens,
        );
        self.logins();
        let catalog = self.packages();
        self.events(&catalog);
        self.quarantine();
        catalog
    }

    fn report(self) -> Report {
        let mut text = String::new();
        for (what, count) in &self.checked {
            text += &format!("checked {count} {what}\n");
        }
        for line in &self.repaired {
            text += &format!("repaired: {line}\n");
        }
        for line in &self.notes {
            text += &format!("note: {line}\n");
        }
        for line in &self.problems {
            text += &format!("problem: {line}\n");
        }
        text += &if self.problems.is_empty() {
            "clean\n".to_string()
        } else {
            format!("{} problem(s)\n", self.problems.len())
        };
        Report {
            text,
            json: json!({ "checked": self.checked, "repaired": self.repaired, "notes": self.notes, "problems": self.problems, "clean": self.problems.is_empty() }),
            failed: !self.problems.is_empty(),
        }
    }
}

impl Fsck<'_> {
    /// Reports a problem, or fixes it with `fix` when repairing.
    fn found(&mut self, problem: String, fix: Option<&dyn Fn() -> std::io::Result<()>>) {
        match fix {
            Some(fix) if self.repair => match fix() {
                Ok(()) => self.repaired.push(problem),
                Err(err) => self.problems.push(format!("{problem} (repair failed: {err})")),
            },
            _ => self.problems.push(problem),
        }
    }

    /// Notes a harmless leftover, removing it when repairing.
    fn leftover(&mut self, note: String, fix: &dyn Fn() -> std::io::Result<()>) {
        if !self.repair {
            self.notes.push(note);
        } else if let Err(err) = fix() {
            self.problems.push(format!("{note} (repair failed: {err})"));
        } else {
            self.repaired.push(note);
        }
    }

    /// Whether `dir` is a directory whose commit record (`record`) was never
    /// written; if so, notes it as [`Fsck::interrupted`].
    fn uncommitted(&mut self, dir: &Path, record: &Path, what: &str) -> bool {
        if !dir.is_dir() {
            return false;
        }
        match self.present(record) {
            Some(false) => {
                self.interrupted(dir, what);
                true
            }
            Some(true) => false,
            // Unknowable: reported, and the directory is left alone.
            None => true,
        }
    }

    /// Whether `path` exists; `None`, reported as a problem, when the system
    /// cannot say (EACCES, EIO): never taken for "absent", so nothing is
    /// repaired from it.
    fn present(&mut self, path: &Path) -> Option<bool> {
        match path.try_exists() {
            Ok(exists) => Some(exists),
            Err(err) => {
                self.found(format!("{} cannot be checked: {err}", self.relative(path)), None);
                None
            }
        }
    }

    /// A directory without its commit record: the leftover of an
    /// interrupted creation, removed by `--repair` (and by the server at
    /// start-up, for packages).
    fn interrupted(&mut self, dir: &Path, what: &str) {
        let fix = || fs::remove_dir_all(dir);
        self.leftover(
            format!("{}: {what} was interrupted before its commit", self.relative(dir)),
            &fix,
        );
    }

    fn count(&mut self, what: &'static str) {
        self.count_n(what, 1);
    }

    /// Counts `n` checked `what`s; none leaves no entry.
    fn count_n(&mut self, what: &'static str, n: usize) {
        if n > 0 {
            *self.checked.entry(what).or_default() += n;
        }
    }

    fn parse<T: DeserializeOwned>(&mut self, path: &Path) -> Option<T> {
        match fs::read(path)
            .map_err(|err| err.to_string())
            .and_then(|bytes| serde_json::from_slice(&bytes).map_err(|err| err.to_string()))
        {
            Ok(value) => Some(value),
            Err(err) => {
                self.found(format!("{} does not parse: {err}", self.relative(path)), None);
                None
            }
        }
    }

    fn relative(&self, path: &Path) -> String {
        path.strip_prefix(self.store.root())
            .unwrap_or(path)
            .display()
            .to_string()
    }

    fn json_files(&self, dir: &RecordPath) -> Vec<PathBuf> {
        layout::json_files(self.store, dir)
    }

    fn temp_files(&mut self, dir: &Path) {
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(err) => {
                self.found(format!("{} cannot be listed: {err}", self.relative(dir)), None);
                return;
            }
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                self.temp_files(&path);
            } else if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
                // What a killed write leaves, by design: swept at start-up.
                let fix = || fs::remove_file(&path);
                self.leftover(format!("stray temporary file {}", self.relative(&path)), &fix);
            }
        }
    }

    /// Checks identities and returns who belongs to which (by e-mail).
    fn identities(&mut self) -> BTreeMap<String, BTreeSet<String>> {
        let mut memberships: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for dir in layout::identity_dirs(self.store) {
            if self.uncommitted(dir.path(), &dir.record(), "an identity whose creation") {
                continue;
            }
            self.count("identities");
            let Some(identity) = self.parse::<Identity>(&dir.record()) else {
                continue;
            };
            let key = dir.key();
            if identity.name.to_ascii_lowercase() != key {
                let problem = format!("{} holds the identity {}", self.relative(dir.path()), identity.name);
                self.found(problem, None);
            }
            if !identity.members.iter().any(|member| member.role == Role::Admin) {
                // Its last admin left, which members may always do.
                self.notes.push(format!(
                    "identity {} has no admin; name one with `gren-registry admin identity set-member {} <email> --role admin`",
                    identity.name, identity.name
                ));
            }
            for member in &identity.members {
                memberships
                    .entry(member.email.to_string())
                    .or_default()
                    .insert(key.clone());
            }
            for seq in 1..=identity.audit_seq {
                let path = dir.audit_entry(seq);
                if !path.exists() {
                    self.found(
                        format!("identity {}: audit entry {seq} is missing", identity.name),
                        None,
                    );
                } else if let Some(entry) = self.parse::<gren_registry_core::identity::AuditEntry>(&path)
                    && entry.seq != seq
                {
                    self.found(
                        format!("identity {}: audit entry {seq} says it is {}", identity.name, entry.seq),
                        None,
                    );
                }
            }
        }
        memberships
    }

    fn users(&mut self, memberships: &BTreeMap<String, BTreeSet<String>>) {
        for path in self.json_files(&layout::users_dir()) {
            self.count("users");
            let Some(user) = self.parse::<User>(&path) else {
                continue;
            };
            let (Some(live), Some(live_tokens), Some(live_git_tokens)) = (
                self.present_hashes(&user.sessions, layout::session),
                self.present_hashes(&user.tokens, layout::automation_token),
                self.present_hashes(&user.git_tokens, layout::git_token),
            ) else {
                // Repairing the index from what cannot be seen would revoke sessions.
                continue;
            };
            let members_of: Vec<String> = memberships
                .get(user.email.as_str())
                .map(|set| set.iter().cloned().collect())
                .unwrap_or_default();
            let same_identities = user.identities.iter().collect::<BTreeSet<_>>() == members_of.iter().collect();
            let same_tokens = live_tokens == user.tokens && live_git_tokens == user.git_tokens;
            if live == user.sessions && same_tokens && same_identities {
                continue;
            }
            let mut fixed = user.clone();
            fixed.sessions = live;
            fixed.tokens = live_tokens;
            fixed.git_tokens = live_git_tokens;
            fixed.identities = members_of;
            let record = layout::user(&user.email);
            // The repair's failure is reported with its causes, as fs errors are.
            let fix = || {
                (self.store.write_json(&record, &fixed))
                    .map_err(|err| std::io::Error::other(gren_registry_core::error::Chain(&err).to_string()))
            };
            let missing = fixed.identities.iter().any(|key| !user.identities.contains(key));
            if missing {
                self.found(
                    format!("user {}: the identity index misses memberships", user.email),
                    Some(&fix),
                );
            } else {
                self.leftover(
                    format!(
                        "user {}: the index names sessions, tokens or identities that are gone",
                        user.email
                    ),
                    &fix,
                );
            }
        }
    }

    /// The hashes of `hashes` whose records (at `path_of`) exist; `None`
    /// when the system cannot say for one of them.
    fn present_hashes(
        &mut self,
        hashes: &[String],
        path_of: fn(&str) -> Result<RecordPath, StoreError>,
    ) -> Option<Vec<String>> {
        let mut live = Vec::new();
        let mut unknowable = false;
        for hash in hashes {
            let Ok(path) = path_of(hash) else { continue };
            match self.present(&self.store.full_path(&path)) {
                Some(true) => live.push(hash.clone()),
                Some(false) => {}
                None => unknowable = true,
            }
        }
        (!unknowable).then_some(live)
    }

    /// Checks the records of `dir` (sessions, automation tokens), each named
    /// by its token's hash and owned by the user `owner` names, who must
    /// list it in `listed`; one its user does not list is removed by
    /// `--repair` (it authenticates nobody).
    fn owned_records<T: DeserializeOwned>(
        &mut self,
        what: &'static str,
        dir: &RecordPath,
        owner: fn(&T) -> &Email,
        listed: fn(&User) -> &Vec<String>,
    ) {
        let kind = what.trim_end_matches('s');
        for path in self.json_files(dir) {
            self.count(what);
            let Some(record) = self.parse::<T>(&path) else {
                continue;
            };
            let email = owner(&record);
            let hash = path.file_stem().unwrap_or_default().to_string_lossy().to_string();
            let id = &hash[..16.min(hash.len())];
            let user: Option<User> = match self.store.read_json(&layout::user(email)) {
                Ok(user) => user,
                Err(err) => {
                    // Not "no user": deleting the record from that would revoke it.
                    self.found(format!("{kind} {id} of {email}: {}", Chain(&err)), None);
                    continue;
                }
            };
            if !user.is_some_and(|user| listed(&user).contains(&hash)) {
                let fix = || fs::remove_file(&path);
                self.found(format!("{kind} {id} of {email} is not listed by its user"), Some(&fix));
            }
        }
    }

    fn logins(&mut self) {
        for path in self.json_files(&layout::logins_dir()) {
            self.count("pending logins");
            self.parse::<gren_registry_core::auth::login::Login>(&path);
        }
    }

    /// Checks the package records the catalog's loader finds, and returns them.
    fn packages(&mut self) -> BTreeMap<String, PackageRecord> {
        let mut catalog = BTreeMap::new();
        let scanned = match Catalog::scan(self.store) {
            Ok(scanned) => scanned,
            Err(err) => {
                self.found(format!("the package directories cannot be listed: {err}"), None);
                return catalog;
            }
        };
        for (dir, found) in scanned {
            let record = match found {
                Found::Uncommitted => {
                    self.without_record(&dir);
                    continue;
                }
                Found::NotADirectory => {
                    self.count("packages");
                    let problem = format!(
                        "{} is a file where a package directory belongs",
                        self.relative(dir.path())
                    );
                    self.found(problem, None);
                    continue;
                }
                Found::Record(Err(err)) => {
                    self.count("packages");
                    let problem = match err {
                        RecordError::Misfiled(..) => format!("{}: {err}", self.relative(err.path())),
                        _ => format!("{} does not parse: {err}", self.relative(err.path())),
                    };
                    self.found(problem, None);
                    continue;
                }
                Found::Record(Ok(record)) => record,
            };
            self.count("packages");
            if self.store.full_path(&layout::package(&record.name)) != dir.record() {
                self.found(
                    format!("{} holds the package {}", self.relative(dir.path()), record.name),
                    None,
                );
                continue;
            }
            match record.name.identity() {
                Some(name) if self.store.full_path(&layout::identity(&name)).exists() => {}
                _ => self.found(
                    format!(
                        "package {}: its identity {} does not exist",
                        record.name, record.name.author
                    ),
                    None,
                ),
            }
            self.versions(&record);
            self.package_files(&dir, &record);
            self.package_history(&record);
            catalog.insert(record.name.key(), record);
        }
        catalog
    }

    /// A package directory without `package.json` or without a version's
    /// record: an interrupted first publish (a note) or something nothing
    /// explains (a problem).
    fn without_record(&mut self, dir: &PackageDir) {
        let names: Vec<String> = match dir.entries() {
            Ok(entries) => entries.into_iter().map(|(name, _)| name).collect(),
            Err(err) => {
                self.found(format!("{} cannot be listed: {err}", self.relative(dir.path())), None);
                return;
            }
        };
        match dir.package_name() {
            Some(name) if package::is_interrupted_first_publish(&name, &names) => {
                self.interrupted(dir.path(), "a package whose first version")
            }
            _ => {
                let lacks = match self.present(&dir.record()) {
                    Some(true) => "a version record",
                    _ => "package.json",
                };
                self.found(
                    format!(
                        "{}: a package directory without {lacks} that no interrupted publish explains \
                         (the server quarantines it at start; restore its records from a backup)",
                        self.relative(dir.path())
                    ),
                    None,
                )
            }
        }
    }

    /// Each live version's bundle is there and matches its record.
    fn versions(&mut self, record: &PackageRecord) {
        for version in &record.versions {
            self.count("versions");
            if version.revoked.is_some() {
                continue;
            }
            let bundle = self
                .store
                .full_path(&layout::version_bundle(&record.name, version.version));
            match fs::read(&bundle) {
                Ok(bytes) if sha256_hex(&bytes) == version.sha256 && bytes.len() as u64 == version.size => {}
                Ok(_) => self.found(
                    format!(
                        "{} {}: the bundle does not match its SHA-256",
                        record.name, version.version
                    ),
                    None,
                ),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => self.found(
                    format!("{} {}: the bundle is missing", record.name, version.version),
                    None,
                ),
                Err(err) => self.found(
                    format!("{} {}: the bundle cannot be read: {err}", record.name, version.version),
                    None,
                ),
            }
        }
    }

    /// What else is in the package's directory: the debris of interrupted
    /// changes (a note; `--repair` removes it), or what nothing explains.
    fn package_files(&mut self, dir: &PackageDir, record: &PackageRecord) {
        let entries = match dir.entries() {
            Ok(entries) => entries,
            Err(err) => {
                self.found(format!("{} cannot be listed: {err}", self.relative(dir.path())), None);
                return;
            }
        };
        for (name, path) in entries {
            match package::classify(record, &name) {
                Leftover::Expected => {}
                Leftover::Debris => {
                    let fix = || fs::remove_file(&path);
                    self.leftover(
                        format!("{}: {}", self.relative(&path), package::debris_description(&name)),
                        &fix,
                    );
                }
                Leftover::Unexplained => self.found(
                    format!("{}: a file no package record explains", self.relative(&path)),
                    None,
                ),
            }
        }
    }

    /// The record's events and audit entries tell its versions' story: every
    /// live version of a public package was announced, no revoked one is
    /// still announced as published, no event names a version the record
    /// lacks or another bundle, and every publish and revocation has its
    /// audit entry.
    fn package_history(&mut self, record: &PackageRecord) {
        let name = &record.name;
        for event in &record.events {
            let recorded = event.version.map(|version| record.version(version));
            let problem = if event.package.key() != name.key() {
                Some(format!("event {} names {}", event.seq, event.package))
            } else {
                match recorded {
                    Some(None) => Some(format!(
                        "event {} names {}, which does not exist",
                        event.seq,
                        event.subject()
                    )),
                    Some(Some(version)) if version.sha256 != event.sha256 => Some(format!(
                        "event {}: {} was announced with SHA-256 {}, but its record says {}",
                        event.seq,
                        event.subject(),
                        event.sha256,
                        version.sha256
                    )),
                    _ => None,
                }
            };
            if let Some(problem) = problem {
                self.found(format!("{name}: {problem}"), None);
            }
        }
        // Nothing is told of a private package: going public catches up.
        let unannounced = if record.private { Vec::new() } else { record.missed() };
        for missed in unannounced {
            let (kind, v) = (
                missed.kind.as_str(),
                missed.version.map(|v| v.to_string()).unwrap_or_default(),
            );
            self.found(
                format!("{name} {v}: no {kind} event tells mirrors what the record says"),
                None,
            );
        }
        for (_, action) in record.missing_audit_entries() {
            let (v, kind) = (action.version().unwrap_or_default(), action.kind());
            self.found(
                format!("{name} {v}: the audit entry of its being {kind} is missing"),
                None,
            );
        }
        let last_privacy = record
            .events
            .iter()
            .rev()
            .find(|event| matches!(event.kind, EventKind::Private | EventKind::Public));
        if last_privacy.is_some_and(|event| (event.kind == EventKind::Private) != record.private) {
            self.found(
                format!(
                    "{name}: the record says it is {}, but its last privacy event says otherwise",
                    if record.private { "private" } else { "public" }
                ),
                None,
            );
        }
    }

    /// The log gathered from every record numbers 1..N with no gap and no
    /// number twice, and the packages site was told nothing beyond it.
    fn events(&mut self, catalog: &BTreeMap<String, PackageRecord>) {
        let mut seqs: Vec<(u64, String)> = catalog
            .values()
            .flat_map(|record| record.events.iter().map(|event| (event.seq, event.subject())))
            .collect();
        seqs.sort();
        self.count_n("events", seqs.len());
        let numbers: Vec<u64> = seqs.iter().map(|(seq, _)| *seq).collect();
        for fault in numbering_faults(&numbers) {
            let problem = match fault {
                NumberingFault::Twice { index, seq } => {
                    format!("event {seq} ({}) is held by two records", seqs[index].1)
                }
                NumberingFault::Missing { from, to, .. } => {
                    format!("the event log has a gap: events {from} to {to} are in no package record")
                }
            };
            self.found(problem, None);
        }
        let head = numbers.last().copied().unwrap_or(0);
        let delivered = gren_registry_core::outbox::read_cursor(self.store)
            .map(|cursor| cursor.delivered)
            .unwrap_or(0);
        if delivered > head {
            self.found(
                format!("the outbox cursor ({delivered}) is past the last event ({head})"),
                None,
            );
        }
        match gren_registry_core::package::events::read_mark(self.store) {
            Ok(mark) if mark > head => self.found(
                format!(
                    "event-log.json says the log reached event {mark}, but the package records hold only {head}: \
                     a record holding the newest events is missing or older than it was"
                ),
                None,
            ),
            Ok(_) => {}
            Err(err) => self.found(format!("event-log.json cannot be read: {err}"), None),
        }
        self.purge_cursors(head);
    }

    /// Each cache's purge cursor: readable, named by its URL's hash, not past
    /// the last event.
    fn purge_cursors(&mut self, head: u64) {
        let Ok(cursors) = gren_registry_core::outbox::purge_cursors(self.store) else {
            return;
        };
        for (file, cursor) in cursors {
            self.count("purge cursors");
            let problem = match cursor {
                Err(err) => Some(format!("cannot be read: {err}")),
                Ok(cursor) if cursor.delivered > head => {
                    Some(format!("is past the last event ({} > {head})", cursor.delivered))
                }
                Ok(cursor) if cursor.url.as_deref().map(|url| sha256_hex(url.as_bytes())) != Some(file.clone()) => {
                    Some("is not named by the SHA-256 of its url".to_string())
                }
                Ok(_) => None,
            };
            if let Some(problem) = problem {
                self.found(format!("the purge cursor outbox/purge/{file}.json {problem}"), None);
            }
        }
    }

    /// What start-up moved aside: an operator's to look at.
    fn quarantine(&mut self) {
        let dir = self.store.full_path(&layout::quarantine_dir());
        let held = fs::read_dir(&dir).map(|entries| entries.count()).unwrap_or(0);
        if held > 0 {
            self.found(
                format!(
                    "{} holds what start-up could not explain ({held} batch(es)); see data/README.md, then remove it",
                    self.relative(&dir)
                ),
                None,
            );
        }
    }
}
