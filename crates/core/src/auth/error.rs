//! Why an address, a login or a session was refused. Each message is the
//! sentence the person is shown.

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Not an address the registry accepts (`input` as given, trimmed).
    #[error("{input:?} is not an e-mail address the registry accepts.")]
    InvalidEmail { input: String },
    #[error("This request needs an `Authorization: Bearer <token>` header.")]
    MissingToken,
    #[error(
        "The token is not a Gren registry token: a session token comes from `gren-registry login`, \
         an automation token from `gren-registry token create`."
    )]
    NotARegistryToken,
    #[error("The token is unknown or has been revoked; log in again with `gren-registry login`.")]
    UnknownToken,
    /// An automation token nobody lists: revoked, or never created. Its
    /// holder is a machine, which cannot log in.
    #[error("The automation token is unknown or has been revoked; create a new one with `gren-registry token create`.")]
    UnknownAutomationToken,
    #[error("The session has expired; log in again with `gren-registry login`.")]
    SessionExpired,
    #[error("The token {name:?} has expired; create a new one with `gren-registry token create`.")]
    TokenExpired { name: String },
    /// A git token nobody lists: revoked, replaced by newer ones, or never made.
    #[error("The git token is unknown or has been revoked; git gets a new one from `gren-registry git-credential`.")]
    UnknownGitToken,
    #[error("The git token has expired; git gets a new one from `gren-registry git-credential`.")]
    GitTokenExpired,
    /// A git token anywhere but git's fetch routes.
    #[error(
        "A git token (gren_git_…) is only good for fetching packages with git; use your login or an automation token."
    )]
    GitTokenNotForApi,
    /// A login token of the wrong shape, or naming no login.
    #[error("This login token is unknown; start a new login.")]
    UnknownLogin,
    #[error("This login has already given out its session token; start a new login.")]
    LoginUsed,
    #[error("Too many wrong codes were tried for this login; start a new login.")]
    LoginLocked,
    #[error("This login has expired; start a new login.")]
    LoginExpired,
    #[error("{}", wrong_code(*attempts_left))]
    WrongCode { attempts_left: u32 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn wrong_code(attempts_left: u32) -> String {
    if attempts_left == 0 {
        "The confirmation code is wrong, and that was the last attempt; start a new login.".to_string()
    } else {
        format!("The confirmation code is wrong; {attempts_left} attempts left.")
    }
}
