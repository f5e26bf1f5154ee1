//! gren-registry-core: the registry's domain and its storage, knowing nothing
//! of HTTP. Users, logins and sessions ([`auth`]), publishing identities
//! ([`identity`]), compiler bundles ([`bundle`]), packages, versions and the
//! event log ([`package`]), the packages-site outbox's cursor ([`outbox`]),
//! the e-mails the domain sends ([`mail`]: the message and the mailer trait),
//! and the [`store`] (files and locks) they all commit through; plus what
//! they share: the [`error`] type, [`time`], rate limits, budgets, logging,
//! strict JSON ([`json`]: no repeated keys) and the check of text people
//! choose ([`text`]).
//! Packages are also served as git repositories ([`repository`]), built
//! and served by running [`git`].
//! A bundle's documentation and API difference are read from its sources ([`docs`]).

pub mod api;
pub mod auth;
pub mod budget;
pub mod bundle;
pub mod docs;
pub mod error;
pub mod format;
pub mod git;
pub mod identity;
pub mod json;
pub mod logging;
pub mod mail;
pub mod outbox;
pub mod package;
pub mod ratelimit;
pub mod repository;
mod serde_text;
pub mod store;
pub mod text;
pub mod time;
