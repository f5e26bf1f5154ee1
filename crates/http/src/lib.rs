//! gren-registry-http: the HTTP service on top of `gren_registry_core`: the
//! server, routing and handlers ([`http`]), what every request shares
//! ([`app`]), the `serve` configuration ([`config`]) and wiring ([`serve`]),
//! the packages-site sender ([`notify`]), the caches' purger ([`purge`]), the mailers ([`mail`]: Postmark and
//! the local sink), the admin commands' socket ([`control`]), and the fuzz targets' entry points ([`fuzzing`]).

pub mod app;
pub mod config;
pub mod control;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod mail;
pub mod notify;
pub(crate) mod purge;
pub mod serve;
