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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub seq: u64,
    pub at: Timestamp,
    #[serde(rename = "type")]
    pub kind: EventKind,
    pub package: PackageName,
    pub version: Version,
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
    /// Finds the newest event and drops it if its change was never committed.
    pub fn open(store: &Store, catalog: &Catalog) -> ApiResult<EventLog> {
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
        if head > 0 {
            let newest: Option<Event> = store.read_json(&event_path(head))?;
            let committed = newest.is_some_and(|event| {
                catalog.get(&event.package).is_some_and(|record| {
                    !record.private
                        && record.version(event.version).is_some_and(|version| match event.kind {
                            EventKind::Publish => true,
                            EventKind::Revoke => version.revoked.is_some(),
                        })
                })
            });
            if !committed {
                store.remove(&event_path(head))?;
                head -= 1;
            }
        }
        Ok(EventLog {
            append: Mutex::new(()),
            head: Mutex::new(head),
            appended: Condvar::new(),
        })
    }

    /// Appends an event and runs `commit` (which writes the package record)
    /// before anyone can see it. If `commit` fails, the event is withdrawn.
    pub fn append<T>(
        &self,
        store: &Store,
        kind: EventKind,
        package: &PackageName,
        version: Version,
        commit: impl FnOnce() -> ApiResult<T>,
    ) -> ApiResult<T> {
        let _serial = lock_ignoring_poison(&self.append);
        let seq = self.head() + 1;
        let event = Event {
            seq,
            at: Timestamp::now(),
            kind,
            package: package.clone(),
            version,
        };
        store.write_json(&event_path(seq), &event)?;
        match commit() {
            Ok(value) => {
                *lock_ignoring_poison(&self.head) = seq;
                self.appended.notify_all();
                Ok(value)
            }
            Err(err) => {
                store.remove(&event_path(seq))?;
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
