//! Who is calling: e-mail addresses, users, e-mail login and session tokens.

pub mod email;
mod error;
pub mod login;
pub mod secret;
pub mod session;
pub mod user;

pub use error::AuthError;
