//! The packages-site outbox's durable state. The outbox is the public event
//! log itself ([`crate::package::events`]) plus a cursor, `outbox/cursor.json`
//! (`{"delivered": N}`), naming the last event delivered. Only the sender
//! (`gren_registry_http::notify`) writes the cursor, atomically through the
//! store, after the site took an event; `admin outbox` and `fsck` read it here.

use crate::store::{Store, StoreError, layout};
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Cursor {
    /// The last event delivered.
    pub delivered: u64,
}

pub fn read_cursor(store: &Store) -> Result<Cursor, StoreError> {
    Ok(store.read_json(&layout::outbox_cursor())?.unwrap_or_default())
}
