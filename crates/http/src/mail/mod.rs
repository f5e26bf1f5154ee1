//! Outgoing e-mail: Postmark in production, a local sink (files in
//! `<data-dir>/mail/` plus the log) when no Postmark token is configured.
//!
//! The message and the trait are core's, re-exported here.

mod local;
mod postmark;

pub use gren_registry_core::mail::{MailError, Mailer, Message};
pub use local::LocalSink;
pub use postmark::Postmark;

use gren_registry_core::auth::login::escape_html;

/// A message of plain text, its HTML made of its paragraphs (separated by
/// blank lines), escaped.
pub(crate) fn plain_message(to: &str, subject: String, text: String) -> Message {
    Message {
        to: to.to_string(),
        subject,
        html: format!("<p>{}</p>", escape_html(&text).replace("\n\n", "</p><p>")),
        text,
    }
}
