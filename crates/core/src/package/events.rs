//! The public event log: `events/<seq>.json`, numbered 1, 2, 3... without
//! gaps, for mirrors and the packages site to follow (`GET /events?since=N`).
//! Kinds: `publish` and `revoke` of a version of a public package, and
//! `private` and `public` when a package changes privacy. Nothing is logged
//! about a package while it is private; when it goes public, `public` is
//! followed by what mirrors missed (see [`PackageRecord::going_public`]), so
//! replaying the log always ends with what the registry serves. The log is
//! history: it never changes once written, and is the same for everyone.
//!
//! Appends are serialized, and the event files of a change are written just
//! before the package record that counts them (`last_event`) is committed.
//! Only the newest events can therefore be dangling after a crash, and
//! opening the log removes them, so the log never shows a change that did
//! not happen and never has a gap.

use super::{Catalog, PackageName, PackageRecord, Version};
use crate::auth::token::TokenRef;
use crate::store::{Store, StoreError, layout, lock_ignoring_poison};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// A version was published (or, for a package going public, was live
    /// and never announced).
    Publish,
    /// A version was revoked.
    Revoke,
    /// The package went private: mirrors stop serving it.
    Private,
    /// The package went public (again).
    Public,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Publish => "publish",
            EventKind::Revoke => "revoke",
            EventKind::Private => "private",
            EventKind::Public => "public",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub seq: u64,
    pub at: Timestamp,
    #[serde(rename = "type")]
    pub kind: EventKind,
    pub package: PackageName,
    /// The version, for `publish` and `revoke`; absent for the package's own
    /// events (`private`, `public`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<Version>,
    /// SHA-256 of the version's bundle, so mirrors can check what they copy;
    /// absent when there is no version.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sha256: String,
    /// The automation token that published or revoked the version (id and
    /// name, never its secret); absent for a person's session or an operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<TokenRef>,
}

impl Event {
    /// `author/project X.Y.Z`, or `author/project (private)` for package events.
    pub fn subject(&self) -> String {
        match self.version {
            Some(version) => format!("{} {version}", self.package),
            None => format!("{} ({})", self.package, self.kind.as_str()),
        }
    }
}

/// An event about to be appended.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub kind: EventKind,
    pub version: Option<Version>,
    pub sha256: String,
    pub token: Option<TokenRef>,
}

impl NewEvent {
    /// An event about the package itself (`private`, `public`).
    pub fn about_package(kind: EventKind) -> NewEvent {
        NewEvent {
            kind,
            version: None,
            sha256: String::new(),
            token: None,
        }
    }
}

pub struct EventLog {
    /// Held for a whole append (event file and commit).
    append: Mutex<()>,
    /// The newest committed event.
    head: Mutex<u64>,
    appended: Condvar,
}

impl EventLog {
    /// Opens the log. Trailing events whose package record never committed
    /// them (a crash between the two) are removed when `repair` is set, and
    /// left out of the log either way.
    pub fn open(store: &Store, catalog: &Catalog, repair: bool) -> Result<EventLog, StoreError> {
        let exists = |seq: u64| store.full_path(&layout::event(seq)).exists();
        // Events are numbered without gaps: find the last by doubling, then bisecting.
        let mut high = 1;
        while exists(high) {
            high *= 2;
        }
        let mut low = high / 2; // exists (or is 0)
        while high - low > 1 {
            let middle = low + (high - low) / 2;
            if exists(middle) { low = middle } else { high = middle }
        }
        let mut head = low;
        while head > 0 {
            let event: Option<Event> = store.read_json(&layout::event(head))?;
            let committed = event.is_some_and(|event| {
                catalog
                    .get(&event.package)
                    .is_some_and(|record| record.last_event >= event.seq)
            });
            if committed {
                break;
            }
            if repair {
                store.remove(&layout::event(head))?;
            }
            head -= 1;
        }
        Ok(EventLog {
            append: Mutex::new(()),
            head: Mutex::new(head),
            appended: Condvar::new(),
        })
    }

    /// Appends `events` about `package`, then runs `commit` with the last
    /// new sequence number (which the package record must store as
    /// `last_event`) before anyone can see them. If `commit` fails, the
    /// events are withdrawn.
    pub fn append<T, E: From<StoreError>>(
        &self,
        store: &Store,
        package: &PackageName,
        events: &[NewEvent],
        commit: impl FnOnce(u64) -> Result<T, E>,
    ) -> Result<T, E> {
        let _serial = lock_ignoring_poison(&self.append);
        let first = self.head() + 1;
        if events.is_empty() {
            return commit(first - 1);
        }
        let at = Timestamp::now();
        let mut written = Vec::with_capacity(events.len());
        let mut result = Ok(());
        for (offset, new) in events.iter().enumerate() {
            let event = Event {
                seq: first + offset as u64,
                at,
                kind: new.kind,
                package: package.clone(),
                version: new.version,
                sha256: new.sha256.clone(),
                token: new.token.clone(),
            };
            result = store.write_json(&layout::event(event.seq), &event);
            if result.is_err() {
                break;
            }
            written.push(event.seq);
        }
        let last = first + events.len() as u64 - 1;
        let outcome = result.map_err(E::from).and_then(|()| commit(last));
        match outcome {
            Ok(value) => {
                *lock_ignoring_poison(&self.head) = last;
                self.appended.notify_all();
                Ok(value)
            }
            Err(err) => {
                for seq in written {
                    store.remove(&layout::event(seq))?;
                }
                Err(err)
            }
        }
    }

    pub fn head(&self) -> u64 {
        *lock_ignoring_poison(&self.head)
    }

    /// Up to `limit` committed events after `after`, oldest first.
    pub fn since(&self, store: &Store, after: u64, limit: u64) -> Result<Vec<Event>, StoreError> {
        Ok(self.page(store, after, limit)?.0)
    }

    /// Up to `limit` committed events after `after`, oldest first, and the
    /// head they were read below. Reads only those events' files: the cost of
    /// a page is its length, not the log's.
    pub fn page(&self, store: &Store, after: u64, limit: u64) -> Result<(Vec<Event>, u64), StoreError> {
        let head = self.head();
        let mut events = Vec::new();
        for seq in after.saturating_add(1)..=head.min(after.saturating_add(limit)) {
            if let Some(event) = store.read_json(&layout::event(seq))? {
                events.push(event);
            }
        }
        Ok((events, head))
    }

    /// Sleeps until an event after `seq` is committed, or `timeout` passes.
    pub fn wait_beyond(&self, seq: u64, timeout: Duration) {
        let head = lock_ignoring_poison(&self.head);
        if *head <= seq {
            let _ = self.appended.wait_timeout(head, timeout);
        }
    }

    /// Wakes [`EventLog::wait_beyond`] sleepers (used at shutdown).
    pub fn wake(&self) {
        self.appended.notify_all();
    }
}

/// What the log has said about each version, by package key: the kind of
/// the last `publish` or `revoke` event about it.
pub type Announcements = HashMap<String, BTreeMap<Version, EventKind>>;

/// Adds `event` (read in order) to `announced`.
pub fn note_announcement(announced: &mut Announcements, event: &Event) {
    if let Some(version) = event.version {
        announced
            .entry(event.package.key())
            .or_default()
            .insert(version, event.kind);
    }
}

/// Fills in `announced` for package records written before it was kept,
/// from the log (one pass over it, only when such a record exists). With
/// `repair`, those records are rewritten, so that this happens once.
pub fn learn_announcements(
    store: &Store,
    catalog: &Catalog,
    events: &EventLog,
    repair: bool,
) -> Result<(), StoreError> {
    let legacy: Vec<PackageRecord> = catalog
        .all()
        .iter()
        .filter(|record| record.announced.is_none())
        .map(|record| (**record).clone())
        .collect();
    if legacy.is_empty() {
        return Ok(());
    }
    let mut announced = Announcements::new();
    // One event at a time: the whole log need not fit in memory.
    for seq in 1..=events.head() {
        if let Some(event) = store.read_json::<Event>(&layout::event(seq))? {
            note_announcement(&mut announced, &event);
        }
    }
    for mut record in legacy {
        record.announced = Some(announced.remove(&record.name.key()).unwrap_or_default());
        if repair {
            store.write_json(&layout::package(&record.name), &record)?;
        }
        catalog.put(record);
    }
    log::info!("read from the event log what mirrors were told about each version of older package records");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_of(count: u64) -> (tempfile::TempDir, Store, EventLog) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let log = EventLog::open(&store, &Catalog::default(), false).unwrap();
        let package = PackageName::parse("gren-lang/core").unwrap();
        let events: Vec<NewEvent> = (0..count)
            .map(|patch| NewEvent {
                kind: EventKind::Publish,
                version: Some(Version::new(1, 0, patch as u16)),
                sha256: "0".repeat(64),
                token: None,
            })
            .collect();
        log.append(&store, &package, &events, |_| Ok::<(), StoreError>(()))
            .unwrap();
        (dir, store, log)
    }

    #[test]
    fn a_page_reads_its_own_events_only() {
        let (_dir, store, log) = log_of(5);
        // Events outside the page are not even read.
        for seq in [1, 2, 5] {
            std::fs::write(store.full_path(&layout::event(seq)), b"not json").unwrap();
        }
        let (events, head) = log.page(&store, 2, 2).unwrap();
        let seqs: Vec<u64> = events.iter().map(|event| event.seq).collect();
        assert_eq!((seqs, head), (vec![3, 4], 5));
        assert!(
            log.page(&store, 0, 2).is_err(),
            "a damaged event in the page is an error"
        );
        assert_eq!(log.page(&store, 5, 100).unwrap(), (vec![], 5));
        assert_eq!(log.page(&store, u64::MAX, u64::MAX).unwrap(), (vec![], 5));
    }

    #[test]
    fn package_events_have_no_version_in_their_json() {
        let event = Event {
            seq: 3,
            at: Timestamp::now(),
            kind: EventKind::Private,
            package: PackageName::parse("gren-lang/url").unwrap(),
            version: None,
            sha256: String::new(),
            token: None,
        };
        let json = serde_json::to_value(&event).unwrap();
        let mut keys: Vec<&String> = json.as_object().unwrap().keys().collect();
        keys.sort();
        assert_eq!(keys, ["at", "package", "seq", "type"]);
        assert_eq!(json["type"], "private");
        let read: Event = serde_json::from_value(json.clone()).unwrap();
        assert_eq!((read.kind, read.version), (EventKind::Private, None));
        assert_eq!(serde_json::to_value(&read).unwrap(), json, "it reads back as written");
    }
}
