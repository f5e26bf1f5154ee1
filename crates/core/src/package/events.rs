//! The public event log, for mirrors and the packages site to follow
//! (`GET /events?since=N`): events numbered 1, 2, 3... without gaps. Kinds:
//! `publish` and `revoke` of a version of a public package, and `private`
//! and `public` when a package changes privacy. Nothing is logged about a
//! package while it is private; when it goes public, `public` is followed
//! by what mirrors missed (see [`PackageRecord::going_public`]), so
//! replaying the log always ends with what the registry serves. The log is
//! history: it never changes once written, and is the same for everyone.
//!
//! The log has no files of its own. Each package record carries the events
//! its changes appended (`events` in a version's `<version>.json` for its
//! publish and revocation, in `package.json` for privacy changes; see
//! [`super::records`]), so the record's write is the one commit point of a
//! change and its events: there is nothing to lose or roll back between
//! them. At start-up the log is gathered from the
//! records into memory, and must number 1..N without a gap: a gap means a
//! record was lost or edited by hand, and the registry refuses to start on
//! it (see [`EventLog::open`]). Appends are serialized; a number is taken
//! only when its record commits, so numbers are never reused while the
//! records that hold them are on disk.
//!
//! A lost record is not always a gap: when the record holding the newest
//! events goes (deleted, or restored from an older copy: a version's,
//! most often, the newest version's), the log simply
//! ends sooner, and its numbers would be given out again to other content,
//! which mirrors and year-long caches of `/events` pages already hold. So
//! the log's high-water mark is kept where a lost record cannot take it
//! along: `event-log.json`, `{"head": N}`, rewritten atomically after
//! appends ([`EventLog::save_mark`]: by a thread of the server within a
//! moment, and by an operator command before it ends). Start-up refuses
//! records that end below it. The mark trails the log by that moment, so a
//! record lost together with a crash in it is not caught; every other
//! loss is.

#[cfg(doc)]
use super::{Catalog, PackageRecord};
use super::{PackageName, Version};
use crate::auth::token::TokenRef;
use crate::store::{Store, StoreError, layout, lock_ignoring_poison, read_ignoring_poison, write_ignoring_poison};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, RwLock};
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

    /// A `kind` event about `version`, with its bundle's SHA-256.
    pub fn about_version(kind: EventKind, version: &super::VersionRecord) -> NewEvent {
        NewEvent {
            kind,
            version: Some(version.version),
            sha256: version.sha256.clone(),
            token: None,
        }
    }
}

/// An event as the log keeps it in memory: its package's name shared by
/// all its events and its SHA-256 as bytes, so that a log of 100,000 events
/// costs a few megabytes (measured in docs/PERFORMANCE.md).
struct Logged {
    at: Timestamp,
    kind: EventKind,
    package: Arc<PackageName>,
    version: Option<Version>,
    sha256: Digest,
    token: Option<Box<TokenRef>>,
}

/// A SHA-256 as the event said it: bytes when it is the usual lower-case
/// hex (so it reads back the same), else the text itself.
enum Digest {
    None,
    Bytes([u8; 32]),
    Text(Box<str>),
}

impl Digest {
    fn of(text: &str) -> Digest {
        if text.is_empty() {
            return Digest::None;
        }
        let lower_hex = |byte: u8| match byte {
            b'0'..=b'9' => Some(byte - b'0'),
            b'a'..=b'f' => Some(byte - b'a' + 10),
            _ => None,
        };
        let mut bytes = [0u8; 32];
        let parsed = text.len() == 64
            && text.as_bytes().chunks(2).zip(bytes.iter_mut()).all(|(pair, byte)| {
                match (lower_hex(pair[0]), lower_hex(pair[1])) {
                    (Some(high), Some(low)) => {
                        *byte = high << 4 | low;
                        true
                    }
                    _ => false,
                }
            });
        if parsed {
            Digest::Bytes(bytes)
        } else {
            Digest::Text(text.into())
        }
    }

    fn text(&self) -> String {
        match self {
            Digest::None => String::new(),
            Digest::Bytes(bytes) => crate::auth::secret::hex(bytes),
            Digest::Text(text) => text.to_string(),
        }
    }
}

impl Logged {
    /// Keeps `event`, sharing the name in `names` with its package's other events.
    fn keep(event: Event, names: &mut HashMap<String, Arc<PackageName>>) -> Logged {
        let package = names
            .entry(event.package.key())
            .or_insert_with(|| Arc::new(event.package.clone()))
            .clone();
        Logged {
            at: event.at,
            kind: event.kind,
            package,
            version: event.version,
            sha256: Digest::of(&event.sha256),
            token: event.token.map(Box::new),
        }
    }

    fn event(&self, seq: u64) -> Event {
        Event {
            seq,
            at: self.at,
            kind: self.kind,
            package: (*self.package).clone(),
            version: self.version,
            sha256: self.sha256.text(),
            token: self.token.as_deref().cloned(),
        }
    }
}

pub struct EventLog {
    /// Held for a whole append (numbering and the record's commit).
    append: Mutex<()>,
    /// Every committed event; `events[i]` has the number `i + 1`.
    events: RwLock<Vec<Logged>>,
    /// The newest committed event's number, for [`EventLog::wait_beyond`].
    head: Mutex<u64>,
    appended: Condvar,
}

impl EventLog {
    /// Makes the log of the package records' `events` ([`Catalog::load`]
    /// returns them). A missing number stops
    /// start-up with [`StoreError::Inconsistent`]; so does a packages-site
    /// or cache purge cursor beyond the last event (the record holding the newest events
    /// is gone, and their numbers would be given out again).
    pub fn open(store: &Store, mut events: Vec<Event>) -> Result<EventLog, StoreError> {
        events.sort_by_key(|event| event.seq);
        let seqs: Vec<u64> = events.iter().map(|event| event.seq).collect();
        if let Some(fault) = numbering_faults(&seqs).next() {
            let event = &events[fault.index()];
            let problem = match fault {
                NumberingFault::Twice { seq, .. } => {
                    format!("event {seq} is claimed by two package records ({})", event.package)
                }
                NumberingFault::Missing { from, .. } => format!(
                    "the event log has a gap: no package record holds event {from} (the next is {}, of {})",
                    event.seq, event.package
                ),
            };
            return Err(StoreError::Inconsistent {
                path: store.full_path(&layout::packages_dir()),
                problem,
            });
        }
        let head = events.len() as u64;
        let mut names = HashMap::new();
        let events: Vec<Logged> = events
            .into_iter()
            .map(|event| Logged::keep(event, &mut names))
            .collect();
        let told = crate::outbox::read_cursor(store)?.delivered;
        if told > head {
            return Err(StoreError::Inconsistent {
                path: store.full_path(&layout::outbox_cursor()),
                problem: format!(
                    "the packages site was told of events up to {told}, but the package records hold only {head}"
                ),
            });
        }
        let mark = read_mark(store)?;
        if mark > head {
            return Err(StoreError::Inconsistent {
                path: store.full_path(&layout::event_mark()),
                problem: format!(
                    "the event log reached event {mark}, but the package records hold only {head}: the record \
                     holding events {}..={mark} is missing or older than it was (a package's record deleted, or \
                     restored from an older copy); restore packages/ from the backup that holds them",
                    head + 1
                ),
            });
        }
        for (name, cursor) in crate::outbox::purge_cursors(store)? {
            let told = cursor?.delivered;
            if told > head {
                return Err(StoreError::Inconsistent {
                    path: store
                        .full_path(&layout::purge_cursors_dir())
                        .join(format!("{name}.json")),
                    problem: format!(
                        "a cache was told to purge for events up to {told}, but the package records hold only {head}"
                    ),
                });
            }
        }
        Ok(EventLog {
            append: Mutex::new(()),
            events: RwLock::new(events),
            head: Mutex::new(head),
            appended: Condvar::new(),
        })
    }

    /// Numbers `events` about `package` after the log's head and runs
    /// `commit` with them: the package record must carry them, and its
    /// write is the commit. Only once it succeeded do they join the log; a
    /// failed commit used no number.
    pub fn append<T, E>(
        &self,
        package: &PackageName,
        events: &[NewEvent],
        commit: impl FnOnce(Vec<Event>) -> Result<T, E>,
    ) -> Result<T, E> {
        let _serial = lock_ignoring_poison(&self.append);
        let first = self.head() + 1;
        let at = Timestamp::now();
        let numbered: Vec<Event> = events
            .iter()
            .enumerate()
            .map(|(offset, new)| Event {
                seq: first + offset as u64,
                at,
                kind: new.kind,
                package: package.clone(),
                version: new.version,
                sha256: new.sha256.clone(),
                token: new.token.clone(),
            })
            .collect();
        let value = commit(numbered.clone())?;
        if !numbered.is_empty() {
            let mut log = write_ignoring_poison(&self.events);
            let mut head = lock_ignoring_poison(&self.head);
            *head += numbered.len() as u64;
            let mut names = HashMap::new();
            log.extend(numbered.into_iter().map(|event| Logged::keep(event, &mut names)));
            self.appended.notify_all();
        }
        Ok(value)
    }

    /// Writes the high-water mark when the log has grown beyond
    /// `written` (the head the last call returned; 0 at first), and
    /// returns the head it now holds.
    pub fn save_mark(&self, store: &Store, written: u64) -> Result<u64, StoreError> {
        let head = self.head();
        if head > written {
            store.write_json(&layout::event_mark(), &Mark { head })?;
        }
        Ok(head.max(written))
    }

    pub fn head(&self) -> u64 {
        *lock_ignoring_poison(&self.head)
    }

    /// Up to `limit` committed events after `after`, oldest first.
    pub fn since(&self, after: u64, limit: u64) -> Vec<Event> {
        self.page(after, limit).0
    }

    /// Up to `limit` committed events after `after`, oldest first, and the
    /// head they were read below.
    pub fn page(&self, after: u64, limit: u64) -> (Vec<Event>, u64) {
        let log = read_ignoring_poison(&self.events);
        let head = log.len() as u64;
        let start = after.min(head) as usize;
        let end = head.min(after.saturating_add(limit)) as usize;
        let events = log[start..end.max(start)]
            .iter()
            .enumerate()
            .map(|(offset, logged)| logged.event((start + offset) as u64 + 1))
            .collect();
        (events, head)
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

/// `event-log.json` (see the module's header).
#[derive(Debug, Default, Serialize, Deserialize)]
struct Mark {
    head: u64,
}

/// The high-water mark: 0 where none was written yet.
pub fn read_mark(store: &Store) -> Result<u64, StoreError> {
    Ok(store.read_json::<Mark>(&layout::event_mark())?.unwrap_or_default().head)
}

/// Where a sorted list of event numbers departs from 1, 2, 3, …
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumberingFault {
    /// The number at `index` of the list was seen already (or is 0, which
    /// no event has): two records hold it.
    Twice { index: usize, seq: u64 },
    /// The numbers `from..=to` are missing before the one at `index`.
    Missing { index: usize, from: u64, to: u64 },
}

impl NumberingFault {
    /// The place in the list where the fault shows.
    pub fn index(&self) -> usize {
        match self {
            NumberingFault::Twice { index, .. } | NumberingFault::Missing { index, .. } => *index,
        }
    }
}

/// Every fault of `sorted` (event numbers in ascending order), in order:
/// the one check that start-up, `fsck` and the migration make of a log.
pub fn numbering_faults(sorted: &[u64]) -> impl Iterator<Item = NumberingFault> + '_ {
    let mut expected = 1;
    sorted.iter().enumerate().filter_map(move |(index, &seq)| {
        let fault = if seq < expected {
            Some(NumberingFault::Twice { index, seq })
        } else if seq > expected {
            Some(NumberingFault::Missing {
                index,
                from: expected,
                to: seq - 1,
            })
        } else {
            None
        };
        expected = expected.max(seq + 1);
        fault
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbering_faults_name_every_number_twice_and_every_run_missing() {
        assert_eq!(numbering_faults(&[1, 2, 3]).count(), 0);
        assert_eq!(numbering_faults(&[]).count(), 0);
        let faults: Vec<_> = numbering_faults(&[2, 3, 3, 6, 7, 7, 7]).collect();
        assert_eq!(
            faults,
            [
                NumberingFault::Missing {
                    index: 0,
                    from: 1,
                    to: 1
                },
                NumberingFault::Twice { index: 2, seq: 3 },
                NumberingFault::Missing {
                    index: 3,
                    from: 4,
                    to: 5
                },
                NumberingFault::Twice { index: 5, seq: 7 },
                NumberingFault::Twice { index: 6, seq: 7 },
            ]
        );
    }

    fn log_of(count: u64) -> EventLog {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let log = EventLog::open(&store, Vec::new()).unwrap();
        let package = PackageName::parse("gren-lang/core").unwrap();
        let events: Vec<NewEvent> = (0..count)
            .map(|patch| NewEvent {
                kind: EventKind::Publish,
                version: Some(Version::new(1, 0, patch as u16)),
                sha256: "0".repeat(64),
                token: None,
            })
            .collect();
        log.append(&package, &events, |_| Ok::<(), StoreError>(())).unwrap();
        log
    }

    #[test]
    fn the_mark_is_written_only_when_the_log_grew_and_records_below_it_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let log = EventLog::open(&store, Vec::new()).unwrap();
        assert_eq!(log.save_mark(&store, 0).unwrap(), 0);
        assert!(!dir.path().join("event-log.json").exists(), "nothing to mark yet");
        let package = PackageName::parse("gren-lang/core").unwrap();
        let new = NewEvent {
            kind: EventKind::Publish,
            version: Some(Version::new(1, 0, 0)),
            sha256: "0".repeat(64),
            token: None,
        };
        let committed = log
            .append(&package, &[new], |events| Ok::<_, StoreError>(events))
            .unwrap();
        assert_eq!(log.save_mark(&store, 0).unwrap(), 1);
        assert_eq!(read_mark(&store).unwrap(), 1);
        EventLog::open(&store, committed).unwrap();
        let refused = EventLog::open(&store, Vec::new())
            .err()
            .expect("records below the mark");
        assert!(
            refused.to_string().contains("event-log.json"),
            "names the mark: {refused}"
        );
    }

    #[test]
    fn a_page_holds_the_events_after_its_start_up_to_its_limit() {
        let log = log_of(5);
        let (events, head) = log.page(2, 2);
        let seqs: Vec<u64> = events.iter().map(|event| event.seq).collect();
        assert_eq!((seqs, head), (vec![3, 4], 5));
        assert_eq!(log.page(5, 100), (vec![], 5));
        assert_eq!(log.page(u64::MAX, u64::MAX), (vec![], 5));
    }

    #[test]
    fn the_log_gives_back_each_event_as_it_was_committed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let package = PackageName::parse("Gren-Lang/core").unwrap();
        let event = |seq, sha256: &str, token| Event {
            seq,
            at: Timestamp::now(),
            kind: EventKind::Publish,
            package: package.clone(),
            version: Some(Version::new(1, 0, seq as u16)),
            sha256: sha256.to_string(),
            token,
        };
        let token = Some(TokenRef {
            id: "ab12".into(),
            name: "ci".into(),
        });
        let events = vec![
            event(1, &"0a".repeat(32), None),
            event(2, &"0A".repeat(32), token),
            event(3, "", None),
            event(4, "not hex", None),
        ];
        let log = EventLog::open(&store, events.clone()).unwrap();
        assert_eq!(log.since(0, 10), events);
    }

    #[test]
    fn a_failed_commit_uses_no_number() {
        let log = log_of(2);
        let package = PackageName::parse("gren-lang/url").unwrap();
        let new = [NewEvent::about_package(EventKind::Private)];
        let failed: Result<(), &str> = log.append(&package, &new, |_| Err("disk full"));
        assert!(failed.is_err());
        let seqs = log.append(&package, &new, |events| Ok::<_, ()>(events[0].seq));
        assert_eq!((seqs, log.head()), (Ok(3), 3));
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
