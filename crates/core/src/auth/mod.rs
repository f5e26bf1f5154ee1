//! Who is calling: e-mail addresses, users, e-mail login, session tokens
//! (a person's), automation tokens (a machine's, scoped: [`token`]) and git
//! tokens (minutes long, for git's fetches only: [`git_token`]).

pub mod email;
mod error;
pub mod git_token;
pub mod login;
pub mod secret;
pub mod session;
pub mod token;
pub mod user;

pub use error::AuthError;

/// The record at `path` of a bearer token whose hash is `hash`, if the
/// owner `owner` names lists it (`listed`): the user's list is the authority
/// (written first and cleared by revocations), so a record alone, planted by
/// a local user or left by a restore, proves nothing. `kind` and `id` name
/// it in the log; `unknown` is the refusal of a record missing or not
/// listed.
fn listed_record<T: serde::de::DeserializeOwned>(
    store: &crate::store::Store,
    path: &crate::store::RecordPath,
    (kind, hash, id): (&str, &str, &str),
    owner: fn(&T) -> &email::Email,
    listed: fn(&user::User) -> &Vec<String>,
    unknown: fn() -> AuthError,
) -> Result<T, AuthError> {
    let record: T = store.read_json(path)?.ok_or_else(unknown)?;
    let email = owner(&record);
    let listed_by_owner = |user: user::User| listed(&user).iter().any(|listed| secret::same_secret(listed, hash));
    if !user::load(store, email)?.is_some_and(listed_by_owner) {
        log::warn!("refused {kind} {id} of {email}: its user does not list it");
        return Err(unknown());
    }
    Ok(record)
}

/// Notes the use of the record at `path` with `mark`, under its lock.
fn touch<T: serde::de::DeserializeOwned + serde::Serialize>(
    store: &crate::store::Store,
    path: &crate::store::RecordPath,
    mark: impl FnOnce(&mut T),
) -> Result<(), crate::store::StoreError> {
    let _guard = store.lock(path);
    // Re-read under the lock: a revocation in between must not be undone.
    if let Some(mut record) = store.read_json::<T>(path)? {
        mark(&mut record);
        store.write_json(path, &record)?;
    }
    Ok(())
}

/// Resolves a bearer token, a session's or an automation token's (told
/// apart by their prefixes), to who is calling. A git token is refused
/// here, without a look-up: it is good for git's fetches only
/// ([`authenticate_for_git`]).
pub fn authenticate(store: &crate::store::Store, token: Option<&str>) -> Result<session::Authenticated, AuthError> {
    match token {
        Some(token) if token.starts_with(secret::AUTOMATION_TOKEN_PREFIX) => token::authenticate(store, token),
        Some(token) if token.starts_with(secret::GIT_TOKEN_PREFIX) => Err(AuthError::GitTokenNotForApi),
        token => session::authenticate(store, token),
    }
}

/// [`authenticate`], and git tokens too: for git's fetch routes.
pub fn authenticate_for_git(
    store: &crate::store::Store,
    token: Option<&str>,
) -> Result<session::Authenticated, AuthError> {
    match token {
        Some(token) if token.starts_with(secret::GIT_TOKEN_PREFIX) => git_token::authenticate(store, token),
        token => authenticate(store, token),
    }
}
