//! Outgoing e-mail as the domain sees it: a [`Message`] and the [`Mailer`]
//! that sends it. The mailers themselves (Postmark, and the local sink
//! writing `<data-dir>/mail/`) are in the HTTP crate, `gren_registry_http::mail`.

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
