//! The outboxes' durable state. An outbox is the public event log itself
//! ([`crate::package::events`]) plus a cursor naming the last event its
//! destination took: `outbox/cursor.json` (`{"delivered": N, "url"}`) for
//! the packages site (`url`: the site the server was last started with;
//! absent: none), and `outbox/purge/<sha256 of URL>.json` (`{"delivered":
//! N, "url"}`) for each shared cache told to purge. Only the senders
//! (`gren_registry_http::notify` and `::purge`) write cursors, atomically
//! through the store, after their destination took an event; `admin outbox`
//! and `fsck` read them here.

use crate::auth::secret::sha256_hex;
use crate::store::{RecordPath, Store, StoreError, layout};
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    /// The last event delivered.
    pub delivered: u64,
    /// A cache's purge URL, which the file name only hashes; for the
    /// packages site, the site the server last started with (absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

pub fn read_cursor(store: &Store) -> Result<Cursor, StoreError> {
    read_cursor_at(store, &layout::outbox_cursor())
}

/// The cursor at `path`; the start of the log when there is none yet.
pub fn read_cursor_at(store: &Store, path: &RecordPath) -> Result<Cursor, StoreError> {
    Ok(store.read_json(path)?.unwrap_or_default())
}

/// Where the purge cursor of the cache at `url` lives.
pub fn purge_cursor_path(url: &str) -> RecordPath {
    layout::purge_cursor(&sha256_hex(url.as_bytes())).expect("a SHA-256 is a purge cursor's name")
}

/// Every purge cursor on disk, by file name, with what it says (or why it
/// cannot be read).
pub fn purge_cursors(store: &Store) -> Result<Vec<(String, Result<Cursor, StoreError>)>, StoreError> {
    let names = store.list_json(&layout::purge_cursors_dir())?;
    Ok(names
        .into_iter()
        .map(|name| {
            let cursor = layout::purge_cursor(&name).and_then(|path| read_cursor_at(store, &path));
            (name, cursor)
        })
        .collect())
}
