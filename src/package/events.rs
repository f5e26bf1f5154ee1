//! The public event log: `events/<seq>.json`, one file per publish or
//! revocation of a public version, numbered 1, 2, 3... without gaps, for
//! mirrors and the packages site to follow (`GET /events?since=N`).
//!
//! Appends are serialized, and each event file is written just before the
//! package record that it describes is committed. Only the newest event can
//! therefore be dangling after a crash, and opening the log removes it, so
//! the log never shows a change that did not happen and never has a gap.

use super::{Catalog, PackageName, Version};
use crate::error::ApiResult;
use crate::store::{RecordPath, Store, lock_ignoring_poison};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    Publish,
    Revoke,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Publish => "publish",
            EventKind::Revoke => "revoke",
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
    pub version: Version,
    /// SHA-256 of the version's bundle, so mirrors can check what they copy.
    #[serde(default)]
    pub sha256: String,
}

pub struct EventLog {
    /// Held for a whole append (event file and commit).
    append: Mutex<()>,
    /// The newest committed event.
    head: Mutex<u64>,
    appended: Condvar,
}

pub fn event_path(seq: u64) -> RecordPath {
    RecordPath::new(["events", &format!("{seq:012}.json")]).expect("safe path")
}

impl EventLog {
    /// Opens the log. Trailing events whose package record never committed
    /// them (a crash between the two) are removed when `repair` is set, and
    /// left out of the log either way.
    pub fn open(store: &Store, catalog: &Catalog, repair: bool) -> ApiResult<EventLog> {
        let exists = |seq: u64| store.full_path(&event_path(seq)).exists();
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
            let event: Option<Event> = store.read_json(&event_path(head))?;
            let committed = event.is_some_and(|event| {
                catalog
                    .get(&event.package)
                    .is_some_and(|record| record.last_event >= event.seq)
            });
            if committed {
                break;
            }
            if repair {
                store.remove(&event_path(head))?;
            }
            head -= 1;
        }
        Ok(EventLog {
            append: Mutex::new(()),
            head: Mutex::new(head),
            appended: Condvar::new(),
        })
    }

    /// Appends events for `versions` (with their bundles' SHA-256) of `package`, then runs `commit` with
    /// the last new sequence number (which the package record must store as
    /// `last_event`) before anyone can see them. If `commit` fails, the
    /// events are withdrawn.
    pub fn append<T>(
        &self,
        store: &Store,
        kind: EventKind,
        package: &PackageName,
        versions: &[(Version, String)],
        commit: impl FnOnce(u64) -> ApiResult<T>,
    ) -> ApiResult<T> {
        let _serial = lock_ignoring_poison(&self.append);
        let first = self.head() + 1;
        if versions.is_empty() {
            return commit(first - 1);
        }
        let at = Timestamp::now();
        let mut written = Vec::with_capacity(versions.len());
        let mut result = Ok(());
        for (offset, (version, sha256)) in versions.iter().enumerate() {
            let event = Event {
                seq: first + offset as u64,
                at,
                kind,
                package: package.clone(),
                version: *version,
                sha256: sha256.clone(),
            };
            result = store.write_json(&event_path(event.seq), &event);
            if result.is_err() {
                break;
            }
            written.push(event.seq);
        }
        let last = first + versions.len() as u64 - 1;
        let outcome = result.map_err(Into::into).and_then(|()| commit(last));
        match outcome {
            Ok(value) => {
                *lock_ignoring_poison(&self.head) = last;
                self.appended.notify_all();
                Ok(value)
            }
            Err(err) => {
                for seq in written {
                    store.remove(&event_path(seq))?;
                }
                Err(err)
            }
        }
    }

    pub fn head(&self) -> u64 {
        *lock_ignoring_poison(&self.head)
    }

    /// Up to `limit` committed events after `after`, oldest first.
    pub fn since(&self, store: &Store, after: u64, limit: u64) -> ApiResult<Vec<Event>> {
        let head = self.head();
        let mut events = Vec::new();
        for seq in after.saturating_add(1)..=head.min(after.saturating_add(limit)) {
            if let Some(event) = store.read_json(&event_path(seq))? {
                events.push(event);
            }
        }
        Ok(events)
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
