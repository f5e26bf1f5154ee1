//! Request handlers: parse the request, call domain code, shape the answer.

pub mod health;
pub mod identity;
pub mod invitation;
pub mod package;
pub mod session;
pub mod user;
