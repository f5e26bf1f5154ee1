//! Outgoing e-mail: Postmark in production, a local sink (files in
//! `<data-dir>/mail/` plus the log) when no Postmark token is configured.
//!
//! The message and the trait are core's, re-exported here.

mod local;
mod postmark;

pub use gren_registry_core::mail::{MailError, Mailer, Message};
pub use local::LocalSink;
pub use postmark::Postmark;
