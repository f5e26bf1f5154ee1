//! Who is calling: e-mail addresses, users, e-mail login, session tokens
//! (a person's) and automation tokens (a machine's, scoped: [`token`]).

pub mod email;
mod error;
pub mod login;
pub mod secret;
pub mod session;
pub mod token;
pub mod user;

pub use error::AuthError;

/// Resolves a bearer token, a session's or an automation token's (told
/// apart by their prefixes), to who is calling.
pub fn authenticate(store: &crate::store::Store, token: Option<&str>) -> Result<session::Authenticated, AuthError> {
    match token {
        Some(token) if token.starts_with(secret::AUTOMATION_TOKEN_PREFIX) => token::authenticate(store, token),
        token => session::authenticate(store, token),
    }
}
