//! Sessions: the long-lived tokens the CLI holds.
//!
//! A token is only ever seen by its holder. The registry keeps its SHA-256 as
//! the record's file name (`sessions/<hash>.json`), so a leaked data
//! directory leaks no usable token. Authenticating is two lookups: the
//! session record, then its user's record, which must list the hash (a
//! session file alone, planted or restored, is not a session).

use super::AuthError;
use super::email::Email;
use super::secret;
use super::user;
use crate::ratelimit::client_network;
use crate::store::{Store, StoreError, layout};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// `last_used` is refreshed at most this often, so reads stay reads.
const LAST_USED_GRANULARITY: Duration = Duration::from_secs(60 * 60);
const SESSION_ID_LENGTH: usize = 16;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    pub email: Email,
    pub created: Timestamp,
    pub expires: Timestamp,
    pub last_used: Timestamp,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
}

/// A request's proven identity.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub email: Email,
    pub token_hash: String,
    /// The automation token the request was made with; `None` for a session.
    pub token: Option<super::token::ScopedToken>,
}

/// What `GET /user/sessions` shows of a session: never the token or its hash.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionView {
    pub id: String,
    pub created: Timestamp,
    pub last_used: Timestamp,
    pub expires: Timestamp,
    pub user_agent: Option<String>,
    pub current: bool,
}

/// The public id of a session: the start of its token's hash (which is also
/// how an operator finds it: `ls sessions/<id>*`).
pub fn session_id(token_hash: &str) -> &str {
    &token_hash[..SESSION_ID_LENGTH]
}

pub struct NewSession<'a> {
    pub email: &'a Email,
    pub lifetime: Duration,
    pub user_agent: Option<&'a str>,
    pub ip: Option<String>,
}

/// Creates a session and returns its token, the only time it exists in clear.
pub fn create(store: &Store, new: NewSession) -> Result<String, StoreError> {
    let token = secret::new_session_token();
    let token_hash = secret::sha256_hex(token.as_bytes());
    let now = Timestamp::now();
    let session = Session {
        email: new.email.clone(),
        created: now,
        expires: now.plus(new.lifetime),
        last_used: now,
        user_agent: new.user_agent.map(|agent| truncate(agent, 200)),
        ip: new.ip,
    };
    // The user's list first: after a crash in between, the list names a
    // session that does not exist (harmless, pruned later), rather than a
    // session existing that no list knows of.
    user::update(store, new.email, |user| {
        prune_dead_sessions(store, &mut user.sessions)?;
        user.sessions.push(token_hash.clone());
        Ok(())
    })?;
    store.write_json(&layout::session(&token_hash)?, &session)?;
    Ok(token)
}

/// Resolves a bearer token to its user; refuses anything else.
pub fn authenticate(store: &Store, token: Option<&str>) -> Result<Authenticated, AuthError> {
    let token = token.ok_or(AuthError::MissingToken)?;
    if !secret::is_session_token(token) {
        return Err(AuthError::NotARegistryToken);
    }
    authenticate_hash(store, secret::sha256_hex(token.as_bytes()))
}

/// [`authenticate`] by the hash of the token: a git token's record names
/// the session it was made from so ([`super::git_token`]).
pub(super) fn authenticate_hash(store: &Store, token_hash: String) -> Result<Authenticated, AuthError> {
    let path = layout::session(&token_hash)?;
    let names = ("session", token_hash.as_str(), session_id(&token_hash));
    let session: Session = super::listed_record(
        store,
        &path,
        names,
        |session: &Session| &session.email,
        |user| &user.sessions,
        || AuthError::UnknownToken,
    )?;
    if session.expires.has_passed() {
        revoke(store, &session.email, &token_hash)?;
        return Err(AuthError::SessionExpired);
    }
    // Best-effort: a read must keep working on a full or read-only disk, and
    // `last_used` is only shown to people, never relied upon.
    if session.last_used.elapsed() >= LAST_USED_GRANULARITY
        && let Err(err) = super::touch(store, &path, |session: &mut Session| {
            session.last_used = Timestamp::now()
        })
    {
        log::warn!(
            "session {} used without refreshing its last use: {}",
            session_id(&token_hash),
            crate::error::Chain(&err)
        );
    }
    Ok(Authenticated {
        email: session.email,
        token_hash,
        token: None,
    })
}

/// Revokes one session of a user. `false` when there was no such session.
/// The session record goes first, so a crash cannot leave a revoked token
/// working.
pub fn revoke(store: &Store, email: &Email, token_hash: &str) -> Result<bool, StoreError> {
    user::update(store, email, |user| {
        let known = user.sessions.iter().any(|hash| hash == token_hash);
        user.sessions.retain(|hash| hash != token_hash);
        let path = layout::session(token_hash)?;
        let _guard = store.lock(&path);
        Ok(store.remove(&path)? || known)
    })
}

/// Revokes the session whose public id is `id`. `false` when the user has none.
pub fn revoke_by_id(store: &Store, email: &Email, id: &str) -> Result<bool, StoreError> {
    let Some(user) = user::load(store, email)? else {
        return Ok(false);
    };
    match user.sessions.iter().find(|hash| session_id(hash) == id) {
        Some(hash) => revoke(store, email, hash),
        None => Ok(false),
    }
}

/// The live sessions of a user, oldest first.
pub fn list(store: &Store, email: &Email, current_hash: &str) -> Result<Vec<SessionView>, StoreError> {
    let mut views: Vec<SessionView> = live_sessions(store, email)?
        .into_iter()
        .map(|(hash, session)| SessionView {
            id: session_id(&hash).to_string(),
            created: session.created,
            last_used: session.last_used,
            expires: session.expires,
            user_agent: session.user_agent,
            current: hash == current_hash,
        })
        .collect();
    views.sort_by_key(|view| view.created);
    Ok(views)
}

/// Whether the user holds a live session started from the client network
/// `network` (as [`client_network`] names it): the owner of the address
/// was there.
pub fn has_session_from(store: &Store, email: &Email, network: &str) -> Result<bool, StoreError> {
    Ok(live_sessions(store, email)?.iter().any(|(_, session)| {
        let ip = session.ip.as_deref().and_then(|ip| ip.parse().ok());
        ip.is_some_and(|ip| client_network(ip) == network)
    }))
}

/// A user's unexpired sessions with their token hashes.
fn live_sessions(store: &Store, email: &Email) -> Result<Vec<(String, Session)>, StoreError> {
    let Some(user) = user::load(store, email)? else {
        return Ok(Vec::new());
    };
    let mut live = Vec::new();
    for hash in user.sessions {
        if let Some(session) = store.read_json::<Session>(&layout::session(&hash)?)?
            && !session.expires.has_passed()
        {
            live.push((hash, session));
        }
    }
    Ok(live)
}

/// Drops expired or missing sessions from a user's list (deleting their records).
fn prune_dead_sessions(store: &Store, hashes: &mut Vec<String>) -> Result<(), StoreError> {
    let mut live = Vec::with_capacity(hashes.len());
    for hash in hashes.drain(..) {
        let path = layout::session(&hash)?;
        match store.read_json::<Session>(&path)? {
            Some(session) if !session.expires.has_passed() => live.push(hash),
            Some(_) => {
                let _guard = store.lock(&path);
                store.remove(&path)?;
            }
            None => {}
        }
    }
    *hashes = live;
    Ok(())
}

fn truncate(text: &str, max_chars: usize) -> String {
    text.chars().take(max_chars).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        (dir, store)
    }

    /// A new session of `email` lasting `lifetime`, and its token.
    fn session_of(store: &Store, email: &Email, lifetime: Duration) -> String {
        let new = NewSession {
            email,
            lifetime,
            user_agent: Some("test"),
            ip: None,
        };
        create(store, new).unwrap()
    }

    #[test]
    fn a_created_session_authenticates_until_revoked() {
        let (_dir, store) = store();
        let email = Email::parse("me@example.com").unwrap();
        let token = session_of(&store, &email, Duration::from_secs(60));
        let auth = authenticate(&store, Some(&token)).unwrap();
        assert_eq!(auth.email, email);
        let on_disk = std::fs::read_to_string(store.full_path(&layout::user(&email))).unwrap();
        assert!(!on_disk.contains(&token), "only the hash is stored");
        let sessions = list(&store, &email, &auth.token_hash).unwrap();
        assert_eq!(sessions.len(), 1);
        assert!(sessions[0].current);
        assert!(revoke_by_id(&store, &email, &sessions[0].id).unwrap());
        assert!(matches!(
            authenticate(&store, Some(&token)),
            Err(AuthError::UnknownToken)
        ));
        assert!(!revoke_by_id(&store, &email, &sessions[0].id).unwrap());
    }

    #[test]
    fn a_session_file_its_user_does_not_list_is_refused() {
        let (_dir, store) = store();
        let victim = Email::parse("victim@example.com").unwrap();
        let listed = session_of(&store, &victim, Duration::from_secs(60));
        let listed_record: Session = store
            .read_json(&layout::session(&secret::sha256_hex(listed.as_bytes())).unwrap())
            .unwrap()
            .unwrap();
        // A record planted beside it, for a token the victim never held.
        let planted = secret::new_session_token();
        let planted_path = layout::session(&secret::sha256_hex(planted.as_bytes())).unwrap();
        store.write_json(&planted_path, &listed_record).unwrap();
        assert!(matches!(
            authenticate(&store, Some(&planted)),
            Err(AuthError::UnknownToken)
        ));
        assert!(authenticate(&store, Some(&listed)).is_ok());
    }

    #[test]
    fn an_expired_session_is_refused_and_removed() {
        let (_dir, store) = store();
        let email = Email::parse("me@example.com").unwrap();
        let token = session_of(&store, &email, Duration::ZERO);
        assert!(matches!(
            authenticate(&store, Some(&token)),
            Err(AuthError::SessionExpired)
        ));
        let hash = secret::sha256_hex(token.as_bytes());
        assert!(!store.full_path(&layout::session(&hash).unwrap()).exists());
    }

    #[test]
    fn malformed_tokens_never_reach_the_store() {
        let (_dir, store) = store();
        for token in [None, Some(""), Some("gren_../../etc/passwd"), Some("Bearer x")] {
            assert!(matches!(
                authenticate(&store, token),
                Err(AuthError::MissingToken | AuthError::NotARegistryToken)
            ));
        }
    }
}
