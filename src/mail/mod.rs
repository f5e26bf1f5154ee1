//! Outgoing e-mail: Postmark in production, a local sink (files in
//! `<data-dir>/mail/` plus the log) when no Postmark token is configured.

mod local;
mod postmark;

pub use local::LocalSink;
pub use postmark::Postmark;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// Why a message was not sent; the text is safe to log (it never contains
/// the message).
#[derive(Debug)]
pub struct MailError(pub String);

impl std::fmt::Display for MailError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

pub trait Mailer: Send + Sync {
    fn send(&self, message: &Message) -> Result<(), MailError>;
}
