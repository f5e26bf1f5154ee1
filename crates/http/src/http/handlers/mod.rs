//! Request handlers: parse the request, call domain code, shape the answer.
//! Each is a `fn(&App, &Request, &Caller)`: the route table
//! ([`super::router::ROUTES`]) says which answers what, the request carries
//! the path's parameters, and the [`super::Caller`] is who is asking.

pub mod git;
pub mod health;
pub mod identity;
pub mod invitation;
pub mod package;
pub mod session;
pub mod token;
pub mod user;
