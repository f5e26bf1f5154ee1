//! `admin fsck [--repair]`: checks that every record parses, every reference
//! resolves, every live bundle matches its SHA-256, the event log has no gap
//! and matches the package records (versions, hashes, what each record says
//! mirrors were told, privacy), and no temporary file is left. `--repair` fixes what is safe to fix:
//! stray temporary files, indexes derivable from records (users' session
//! and identity lists), debris of interrupted writes (orphan sessions,
//! bundles of revoked or unrecorded versions, uncommitted events), and git
//! repositories, derived from the bundles, by building them again.
//! A file or directory the system will not show (EACCES, EIO: anything but
//! "absent") is a problem, and nothing is ever repaired from it: taking
//! "unreadable" for "missing" once deleted a valid session.

mod repositories;

use super::Report;
use gren_registry_core::auth::secret::sha256_hex;
use gren_registry_core::auth::session::Session;
use gren_registry_core::auth::user::User;
use gren_registry_core::error::Chain;
use gren_registry_core::identity::{Identity, Role};
use gren_registry_core::package::events::{Announcements, Event, EventKind, note_announcement};
use gren_registry_core::package::{self, Catalog, Found, PackageRecord};
use gren_registry_core::store::layout::{self, PackageDir};
use gren_registry_core::store::{RecordPath, Store, TEMP_PREFIX};
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
    let mut fsck = Fsck {
        store,
        repair,
        problems: Vec::new(),
        notes: Vec::new(),
        repaired: Vec::new(),
        checked: BTreeMap::new(),
    };
    fsck.temp_files(store.root());
    let memberships = fsck.identities();
    fsck.users(&memberships);
    fsck.sessions();
    fsck.logins();
    let catalog = fsck.packages();
    fsck.events(&catalog);
    fsck.repositories(&catalog);
    let mut text = String::new();
    for (what, count) in &fsck.checked {
        text += &format!("checked {count} {what}\n");
    }
    for line in &fsck.repaired {
        text += &format!("repaired: {line}\n");
    }
    for line in &fsck.notes {
        text += &format!("note: {line}\n");
    }
    for line in &fsck.problems {
        text += &format!("problem: {line}\n");
    }
    text += &if fsck.problems.is_empty() {
        "clean\n".to_string()
    } else {
        format!("{} problem(s)\n", fsck.problems.len())
    };
    Report {
        text,
        json: json!({ "checked": fsck.checked, "repaired": fsck.repaired, "notes": fsck.notes, "problems": fsck.problems, "clean": fsck.problems.is_empty() }),
        failed: !fsck.problems.is_empty(),
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
        *self.checked.entry(what).or_default() += 1;
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
                let fix = || fs::remove_file(&path);
                self.found(format!("stray temporary file {}", self.relative(&path)), Some(&fix));
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
                    "identity {} has no admin; name one with `admin identity set-member {} <email> --role admin`",
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
            let mut live = Vec::new();
            let mut unknowable = false;
            for hash in &user.sessions {
                let Ok(path) = layout::session(hash) else { continue };
                match self.present(&self.store.full_path(&path)) {
                    Some(true) => live.push(hash.clone()),
                    Some(false) => {}
                    None => unknowable = true,
                }
            }
            if unknowable {
                // Repairing the index from what cannot be seen would revoke sessions.
                continue;
            }
            let members_of: Vec<String> = memberships
                .get(user.email.as_str())
                .map(|set| set.iter().cloned().collect())
                .unwrap_or_default();
            if live == user.sessions && user.identities.iter().collect::<BTreeSet<_>>() == members_of.iter().collect() {
                continue;
            }
            let mut fixed = user.clone();
            fixed.sessions = live;
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
                        "user {}: the index names sessions or identities that are gone",
                        user.email
                    ),
                    &fix,
                );
            }
        }
    }

    fn sessions(&mut self) {
        for path in self.json_files(&layout::sessions_dir()) {
            self.count("sessions");
            let Some(session) = self.parse::<Session>(&path) else {
                continue;
            };
            let hash = path.file_stem().unwrap_or_default().to_string_lossy().to_string();
            let user: Option<User> = match self.store.read_json(&layout::user(&session.email)) {
                Ok(user) => user,
                Err(err) => {
                    // Not "no user": deleting the session from that would revoke it.
                    let problem = format!(
                        "session {} of {}: {}",
                        &hash[..16.min(hash.len())],
                        session.email,
                        Chain(&err)
                    );
                    self.found(problem, None);
                    continue;
                }
            };
            if !user.is_some_and(|user| user.sessions.contains(&hash)) {
                let fix = || fs::remove_file(&path);
                self.found(
                    format!(
                        "session {} of {} is not listed by its user",
                        &hash[..16.min(hash.len())],
                        session.email
                    ),
                    Some(&fix),
                );
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
                    self.interrupted(dir.path(), "a package whose first version");
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
                    self.found(format!("{} does not parse: {err}", self.relative(&dir.record())), None);
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
            self.versions(&dir, &record);
            catalog.insert(record.name.key(), record);
        }
        catalog
    }

    fn versions(&mut self, dir: &PackageDir, record: &PackageRecord) {
        for version in &record.versions {
            self.count("versions");
            let bundle = self
                .store
                .full_path(&layout::version_bundle(&record.name, version.version));
            if !self
                .store
                .full_path(&layout::version_outline(&record.name, version.version))
                .exists()
            {
                self.found(
                    format!("{} {}: outline.json is missing", record.name, version.version),
                    None,
                );
            }
            match (&version.revoked, fs::read(&bundle)) {
                (None, Ok(bytes)) if sha256_hex(&bytes) == version.sha256 && bytes.len() as u64 == version.size => {}
                (None, Ok(_)) => self.found(
                    format!(
                        "{} {}: the bundle does not match its SHA-256",
                        record.name, version.version
                    ),
                    None,
                ),
                (None, Err(_)) => self.found(
                    format!("{} {}: the bundle is missing", record.name, version.version),
                    None,
                ),
                (Some(_), Ok(_)) => {
                    let fix = || fs::remove_file(&bundle);
                    self.found(
                        format!(
                            "{} {}: revoked, but its bundle is still on disk",
                            record.name, version.version
                        ),
                        Some(&fix),
                    );
                }
                (Some(_), Err(_)) => {}
            }
        }
        for (name, path) in dir.version_dirs().unwrap_or_default() {
            if !record.lists_version_dir(&name) {
                let fix = || fs::remove_dir_all(&path);
                self.found(
                    format!("{} {name}: files of a version that was never committed", record.name),
                    Some(&fix),
                );
            }
        }
    }

    fn events(&mut self, catalog: &BTreeMap<String, PackageRecord>) {
        let head = self.event_head(catalog);
        let mut announced = Announcements::new();
        let mut private_in_log = BTreeMap::new();
        for seq in 1..=head {
            self.count("events");
            let Some(event) = self.parse::<Event>(&self.store.full_path(&layout::event(seq))) else {
                continue;
            };
            self.event(seq, &event, catalog);
            note_announcement(&mut announced, &event);
            if matches!(event.kind, EventKind::Private | EventKind::Public) {
                private_in_log.insert(event.package.key(), event.kind == EventKind::Private);
            }
        }
        self.announcements(catalog, &announced, &private_in_log);
        let delivered = gren_registry_core::outbox::read_cursor(self.store)
            .map(|cursor| cursor.delivered)
            .unwrap_or(0);
        if delivered > head {
            self.found(
                format!("the outbox cursor ({delivered}) is past the last event ({head})"),
                None,
            );
        }
    }

    /// The last committed event: checks the log has no gap, and finds (and
    /// with `--repair` removes) trailing events whose record never counted
    /// them, which a crash between the two leaves.
    fn event_head(&mut self, catalog: &BTreeMap<String, PackageRecord>) -> u64 {
        let files = self.json_files(&layout::events_dir());
        let mut head = 0;
        while self.store.full_path(&layout::event(head + 1)).exists() {
            head += 1;
        }
        if files.len() as u64 != head {
            self.found(
                format!("the event log has a gap after event {head} ({} files)", files.len()),
                None,
            );
        }
        while head > 0 {
            let path = self.store.full_path(&layout::event(head));
            match self.store.read_json::<Event>(&layout::event(head)) {
                Ok(Some(event)) if !committed(catalog, &event) => {
                    let fix = || fs::remove_file(&path);
                    self.found(
                        format!("event {head} ({}) was never committed", event.subject()),
                        Some(&fix),
                    );
                    head -= 1;
                }
                _ => break,
            }
        }
        head
    }

    /// One committed event against the records.
    fn event(&mut self, seq: u64, event: &Event, catalog: &BTreeMap<String, PackageRecord>) {
        if event.seq != seq {
            self.found(format!("event {seq} says it is {}", event.seq), None);
        } else if !committed(catalog, event) {
            self.found(
                format!("event {seq} names {}, which its record does not have", event.subject()),
                None,
            );
        } else if let Some(recorded) = catalog
            .get(&event.package.key())
            .zip(event.version)
            .and_then(|(record, version)| record.version(version))
            && recorded.sha256 != event.sha256
        {
            self.found(
                format!(
                    "event {seq}: {} was announced with SHA-256 {}, but its record says {}",
                    event.subject(),
                    event.sha256,
                    recorded.sha256
                ),
                None,
            );
        }
    }

    /// Each record says what mirrors were told (`announced`, privacy) as the
    /// log does: going public again relies on it.
    fn announcements(
        &mut self,
        catalog: &BTreeMap<String, PackageRecord>,
        log: &Announcements,
        private_in_log: &BTreeMap<String, bool>,
    ) {
        let none = BTreeMap::new();
        for (key, record) in catalog {
            let in_log = log.get(key).unwrap_or(&none);
            if let Some(announced) = &record.announced
                && announced != in_log
            {
                let show = |map: &BTreeMap<package::Version, EventKind>| {
                    let list: Vec<String> = map.iter().map(|(v, kind)| format!("{v} {}", kind.as_str())).collect();
                    format!("[{}]", list.join(", "))
                };
                self.found(
                    format!(
                        "{}: the record says mirrors were told {}, but the event log says {}",
                        record.name,
                        show(announced),
                        show(in_log)
                    ),
                    None,
                );
            }
            if private_in_log
                .get(key)
                .is_some_and(|private| *private != record.private)
            {
                self.found(
                    format!(
                        "{}: the record says it is {}, but the event log's last privacy event says otherwise",
                        record.name,
                        if record.private { "private" } else { "public" }
                    ),
                    None,
                );
            }
        }
    }
}

/// Whether the record of the event's package counts it (and has its version).
fn committed(catalog: &BTreeMap<String, PackageRecord>, event: &Event) -> bool {
    catalog.get(&event.package.key()).is_some_and(|record| {
        record.last_event >= event.seq && event.version.is_none_or(|version| record.version(version).is_some())
    })
}
