//! User records: one file per e-mail address, `users/<email>.json`, with
//! the hashes of the user's sessions, automation tokens and git tokens and
//! an index of their identities. A record is written with the first session
//! of a confirmed login ([`super::session::create`]), never when a login
//! starts or an address is invited: an address without a record has not
//! proven it is anyone's.

use super::email::Email;
use crate::store::{Store, StoreError, layout};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct User {
    pub email: Email,
    pub created: Timestamp,
    /// SHA-256 (hex) of each live session token; the session records are
    /// `sessions/<hash>.json`.
    #[serde(default)]
    pub sessions: Vec<String>,
    /// Keys of the identities this user belongs to: an index kept for
    /// `GET /user`, checked against the identity records when read.
    #[serde(default)]
    pub identities: Vec<String>,
    /// SHA-256 (hex) of each automation token; the records are
    /// `tokens/<hash>.json` (see [`super::token`]). Absent when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tokens: Vec<String>,
    /// SHA-256 (hex) of each git token; the records are
    /// `git-tokens/<hash>.json` (see [`super::git_token`]). Absent when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub git_tokens: Vec<String>,
}

impl User {
    fn new(email: &Email) -> User {
        User {
            email: email.clone(),
            created: Timestamp::now(),
            sessions: Vec::new(),
            identities: Vec::new(),
            tokens: Vec::new(),
            git_tokens: Vec::new(),
        }
    }
}

pub fn load(store: &Store, email: &Email) -> Result<Option<User>, StoreError> {
    store.read_json(&layout::user(email))
}

/// Read-modify-write of a user record under its lock, creating it if needed.
/// `change` may fail with any error the store's can become.
pub fn update<T, E: From<StoreError>>(
    store: &Store,
    email: &Email,
    change: impl FnOnce(&mut User) -> Result<T, E>,
) -> Result<T, E> {
    let path = layout::user(email);
    let _guard = store.lock(&path);
    let mut user = store.read_json(&path)?.unwrap_or_else(|| User::new(email));
    let result = change(&mut user)?;
    store.write_json(&path, &user)?;
    Ok(result)
}
