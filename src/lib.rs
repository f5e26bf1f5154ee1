//! gren-registry: the package registry for the Gren programming language.
//!
//! Layout: [`http`] (server, routing, handlers) on top of domain modules
//! ([`auth`]), the [`store`] (files and locks), [`mail`] and [`config`];
//! [`api`] holds the request and answer bodies that [`http`] and the
//! [`client`] share.

pub mod admin;
pub mod api;
pub mod app;
pub mod auth;
pub mod budget;
pub mod bundle;
pub mod client;
pub mod config;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod identity;
pub mod logging;
pub mod mail;
pub mod notify;
pub mod package;
pub mod ratelimit;
mod serde_text;
pub mod serve;
pub mod store;
pub mod time;
