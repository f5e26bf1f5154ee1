//! Who is calling: e-mail addresses, users, e-mail login and session tokens.

pub mod email;
pub mod login;
pub mod secret;
pub mod session;
pub mod user;
