//! User records: one file per e-mail address, `users/<email>.json`.

use super::email::Email;
use crate::error::ApiResult;
use crate::store::{RecordPath, Store};
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
}

pub fn user_path(email: &Email) -> RecordPath {
    RecordPath::new(["users", &format!("{email}.json")])
        .expect("validated e-mail addresses are safe file names")
}

pub fn load(store: &Store, email: &Email) -> ApiResult<Option<User>> {
    Ok(store.read_json(&user_path(email))?)
}

/// Loads a user, creating the record if this address was never seen.
pub fn load_or_create(store: &Store, email: &Email) -> ApiResult<User> {
    let path = user_path(email);
    let _guard = store.lock(&path);
    if let Some(user) = store.read_json(&path)? {
        return Ok(user);
    }
    let user = User {
        email: email.clone(),
        created: Timestamp::now(),
        sessions: Vec::new(),
    };
    store.write_json(&path, &user)?;
    Ok(user)
}

/// Read-modify-write of an existing user record under its lock.
pub fn update<T>(
    store: &Store,
    email: &Email,
    change: impl FnOnce(&mut User) -> ApiResult<T>,
) -> ApiResult<T> {
    let path = user_path(email);
    let _guard = store.lock(&path);
    let mut user: User = match store.read_json(&path)? {
        Some(user) => user,
        None => User {
            email: email.clone(),
            created: Timestamp::now(),
            sessions: Vec::new(),
        },
    };
    let result = change(&mut user)?;
    store.write_json(&path, &user)?;
    Ok(result)
}
