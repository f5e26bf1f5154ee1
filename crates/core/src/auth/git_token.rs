//! Git tokens: what `gren-registry git-credential` hands git instead of the
//! login. git gives what a credential helper answers to every other helper
//! configured after it, and `credential.helper store` keeps it in
//! `~/.git-credentials` in plain text; so git never sees a session or an
//! automation token, only a token minted from one for a few minutes
//! (`POST /user/git-token`) that git's fetch routes alone take: the API
//! refuses it (`401`, without looking it up), and it cannot mint another.
//!
//! A git token carries the rights of the login it was made from (its
//! *parent*: a session, or an automation token with its `download` scopes),
//! checked at each use, so it stops with it: a logout, a revoked token or
//! `admin user revoke-sessions` ends it at once, and it never outlives
//! its parent's expiry.
//!
//! On disk, as the other tokens: `git-tokens/<sha256 of token>.json`
//! ([`GitTokenRecord`]: owner, parent's hash, created, expires); the
//! owner's user record lists the hash (`git_tokens`) and is the authority.
//! A mint writes the user's list first (pruning expired and missing ones,
//! and dropping the oldest beyond [`MAX_GIT_TOKENS_PER_USER`]: one is
//! minted per git request for credentials, and none may pile up), then the
//! record; a revocation removes the record, then the hash, under the user's
//! lock. The secret exists in clear only in the answer to its mint.

use super::AuthError;
use super::email::Email;
use super::secret;
use super::session::{self, Authenticated};
use super::token;
use super::user;
use crate::store::{Store, StoreError, layout};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Live git tokens a user holds at most: more than git runs at once for
/// one install, few enough that a listing stays small. Minting another
/// drops the oldest.
pub const MAX_GIT_TOKENS_PER_USER: usize = 20;
/// The longest life a git token may be given (`GREN_REGISTRY_GIT_TOKEN_SECONDS`).
pub const MAX_LIFETIME: Duration = Duration::from_secs(60 * 60);
const ID_LENGTH: usize = 16;

/// The login a git token was made from, by its token's hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Parent {
    Session(String),
    Token(String),
}

/// `git-tokens/<hash>.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GitTokenRecord {
    pub email: Email,
    pub parent: Parent,
    pub created: Timestamp,
    pub expires: Timestamp,
}

/// Mints a git token for `parent` (a session or an automation token)
/// lasting `lifetime`; returns its secret, the only time it exists in
/// clear, and when it expires.
pub fn mint(store: &Store, parent: &Authenticated, lifetime: Duration) -> Result<(String, Timestamp), StoreError> {
    let token = secret::new_git_token();
    let hash = secret::sha256_hex(token.as_bytes());
    let now = Timestamp::now();
    let parent_hash = parent.token_hash.clone();
    let record = GitTokenRecord {
        email: parent.email.clone(),
        parent: match parent.token {
            Some(_) => Parent::Token(parent_hash),
            None => Parent::Session(parent_hash),
        },
        created: now,
        expires: now.plus(lifetime.min(MAX_LIFETIME)),
    };
    // The user's list first: after a crash in between, it names a token
    // that does not exist (pruned by the next mint), never the other way.
    user::update(store, &parent.email, |user| {
        prune_dead(store, &mut user.git_tokens)?;
        while user.git_tokens.len() >= MAX_GIT_TOKENS_PER_USER {
            let oldest = user.git_tokens.remove(0);
            remove_record(store, &oldest)?;
        }
        user.git_tokens.push(hash.clone());
        Ok::<_, StoreError>(())
    })?;
    store.write_json(&layout::git_token(&hash)?, &record)?;
    Ok((token, record.expires))
}

/// Resolves a git token to its owner, with the rights of its parent (which
/// must still be live). Refuses one its owner does not list as unknown,
/// and an expired one as expired (and removes it).
pub fn authenticate(store: &Store, token: &str) -> Result<Authenticated, AuthError> {
    if !secret::is_git_token(token) {
        return Err(AuthError::NotARegistryToken);
    }
    let hash = secret::sha256_hex(token.as_bytes());
    let path = layout::git_token(&hash)?;
    let names = ("git token", hash.as_str(), &hash[..ID_LENGTH]);
    let record: GitTokenRecord = super::listed_record(
        store,
        &path,
        names,
        |record: &GitTokenRecord| &record.email,
        |user| &user.git_tokens,
        || AuthError::UnknownGitToken,
    )?;
    if record.expires.has_passed() {
        // Best effort: a refusal must not depend on the disk taking a write.
        if let Err(err) = revoke(store, &record.email, &hash) {
            log::warn!("expired git token left in place: {}", crate::error::Chain(&err));
        }
        return Err(AuthError::GitTokenExpired);
    }
    let parent = match record.parent {
        Parent::Session(hash) => session::authenticate_hash(store, hash)?,
        Parent::Token(hash) => token::authenticate_hash(store, hash)?,
    };
    if parent.email != record.email {
        log::warn!(
            "refused git token {} of {}: its parent is another user's",
            &hash[..ID_LENGTH],
            record.email
        );
        return Err(AuthError::UnknownGitToken);
    }
    Ok(parent)
}

/// Revokes every git token of the user; returns how many records there were.
pub fn revoke_all(store: &Store, email: &Email) -> Result<usize, StoreError> {
    if user::load(store, email)?.is_none_or(|user| user.git_tokens.is_empty()) {
        return Ok(0);
    }
    user::update(store, email, |user| {
        let mut revoked = 0;
        for hash in user.git_tokens.drain(..) {
            if remove_record(store, &hash)? {
                revoked += 1;
            }
        }
        Ok(revoked)
    })
}

/// Revokes one git token of the user: its record first.
fn revoke(store: &Store, email: &Email, hash: &str) -> Result<(), StoreError> {
    user::update(store, email, |user| {
        remove_record(store, hash)?;
        user.git_tokens.retain(|listed| listed != hash);
        Ok(())
    })
}

fn remove_record(store: &Store, hash: &str) -> Result<bool, StoreError> {
    let path = layout::git_token(hash)?;
    let _guard = store.lock(&path);
    store.remove(&path)
}

/// Drops expired or missing git tokens from a user's list, deleting their
/// records.
fn prune_dead(store: &Store, hashes: &mut Vec<String>) -> Result<(), StoreError> {
    let mut live = Vec::with_capacity(hashes.len());
    for hash in hashes.drain(..) {
        match store.read_json::<GitTokenRecord>(&layout::git_token(&hash)?)? {
            Some(record) if !record.expires.has_passed() => live.push(hash),
            Some(_) => {
                remove_record(store, &hash)?;
            }
            None => {}
        }
    }
    *hashes = live;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::session::NewSession;
    use crate::auth::token::NewToken;

    const MINUTE: Duration = Duration::from_secs(60);

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        (dir, store)
    }

    fn me() -> Email {
        Email::parse("me@example.com").unwrap()
    }

    /// A session of [`me`], signed in.
    fn signed_in(store: &Store) -> (String, Authenticated) {
        let email = me();
        let new = NewSession {
            email: &email,
            lifetime: MINUTE,
            user_agent: None,
            ip: None,
        };
        let token = session::create(store, new).unwrap();
        let signed_in = session::authenticate(store, Some(&token)).unwrap();
        (token, signed_in)
    }

    #[test]
    fn a_git_token_carries_its_sessions_rights_and_only_git_takes_it() {
        let (_dir, store) = store();
        let (session_token, session) = signed_in(&store);
        let (secret, expires) = mint(&store, &session, MINUTE).unwrap();
        assert!(secret.starts_with("gren_git_"), "{secret}");
        assert!(!expires.has_passed() && expires <= Timestamp::now().plus(MINUTE));
        let found = authenticate(&store, &secret).unwrap();
        assert_eq!((found.email, found.token.is_none()), (me(), true));
        // Stored only as a hash, which its owner lists.
        let hash = secret::sha256_hex(secret.as_bytes());
        let user = user::load(&store, &me()).unwrap().unwrap();
        assert_eq!(user.git_tokens, std::slice::from_ref(&hash));
        let on_disk = std::fs::read_to_string(store.full_path(&layout::git_token(&hash).unwrap())).unwrap();
        assert!(!on_disk.contains(&secret) && !on_disk.contains(&session_token));
        // The API's authentication refuses it without a look-up.
        assert!(matches!(
            crate::auth::authenticate(&store, Some(&secret)),
            Err(AuthError::GitTokenNotForApi)
        ));
        assert!(crate::auth::authenticate_for_git(&store, Some(&secret)).is_ok());
        // The session ends: so does the git token.
        session::revoke(&store, &me(), &session.token_hash).unwrap();
        assert!(matches!(authenticate(&store, &secret), Err(AuthError::UnknownToken)));
    }

    #[test]
    fn a_git_token_of_an_automation_token_keeps_its_scopes_and_stops_with_it() {
        let (_dir, store) = store();
        let scopes = ["download:team".to_string()];
        let new = NewToken {
            email: &me(),
            name: "ci",
            scopes: &scopes,
            lifetime_days: 1,
            member_of: &["team".to_string()],
        };
        let (automation, view) = token::create(&store, new).unwrap();
        let parent = token::authenticate(&store, &automation).unwrap();
        let (secret, _) = mint(&store, &parent, MINUTE).unwrap();
        let found = authenticate(&store, &secret).unwrap();
        assert_eq!(found.token.unwrap().download_identities().collect::<Vec<_>>(), ["team"]);
        token::revoke(&store, &me(), &view.id).unwrap();
        assert!(matches!(
            authenticate(&store, &secret),
            Err(AuthError::UnknownAutomationToken)
        ));
    }

    #[test]
    fn an_expired_git_token_is_refused_and_removed() {
        let (_dir, store) = store();
        let (_, session) = signed_in(&store);
        let (secret, _) = mint(&store, &session, Duration::ZERO).unwrap();
        assert!(matches!(authenticate(&store, &secret), Err(AuthError::GitTokenExpired)));
        let hash = secret::sha256_hex(secret.as_bytes());
        assert!(!store.full_path(&layout::git_token(&hash).unwrap()).exists());
        assert!(user::load(&store, &me()).unwrap().unwrap().git_tokens.is_empty());
        assert!(matches!(authenticate(&store, &secret), Err(AuthError::UnknownGitToken)));
    }

    #[test]
    fn a_user_accumulates_a_bounded_number_of_git_tokens_and_no_expired_one() {
        let (_dir, store) = store();
        let (_, session) = signed_in(&store);
        let (expired, _) = mint(&store, &session, Duration::ZERO).unwrap();
        let (oldest, _) = mint(&store, &session, MINUTE).unwrap();
        for _ in 0..MAX_GIT_TOKENS_PER_USER {
            mint(&store, &session, MINUTE).unwrap();
        }
        let user = user::load(&store, &me()).unwrap().unwrap();
        assert_eq!(user.git_tokens.len(), MAX_GIT_TOKENS_PER_USER);
        let records = layout::json_files(&store, &layout::git_tokens_dir());
        assert_eq!(records.len(), MAX_GIT_TOKENS_PER_USER);
        for gone in [expired, oldest] {
            assert!(matches!(authenticate(&store, &gone), Err(AuthError::UnknownGitToken)));
        }
        assert_eq!(revoke_all(&store, &me()).unwrap(), MAX_GIT_TOKENS_PER_USER);
        assert!(layout::json_files(&store, &layout::git_tokens_dir()).is_empty());
    }

    #[test]
    fn a_record_its_owner_does_not_list_is_refused() {
        let (_dir, store) = store();
        let (_, session) = signed_in(&store);
        let (secret, _) = mint(&store, &session, MINUTE).unwrap();
        let record: GitTokenRecord = store
            .read_json(&layout::git_token(&secret::sha256_hex(secret.as_bytes())).unwrap())
            .unwrap()
            .unwrap();
        let planted = secret::new_git_token();
        let path = layout::git_token(&secret::sha256_hex(planted.as_bytes())).unwrap();
        store.write_json(&path, &record).unwrap();
        assert!(matches!(
            authenticate(&store, &planted),
            Err(AuthError::UnknownGitToken)
        ));
        assert!(matches!(
            authenticate(&store, "gren_git_../../x"),
            Err(AuthError::NotARegistryToken)
        ));
    }
}
