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
pub enum MailError {
    /// The mail service failed: trying again later may work.
    Service(String),
    /// The local sink could not write the message: the data directory's
    /// trouble, answered as such (a full disk is not "try again").
    Store(crate::store::StoreError),
}

impl std::fmt::Display for MailError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MailError::Service(text) => f.write_str(text),
            MailError::Store(err) => write!(f, "cannot write the local mail file: {}", crate::error::Chain(err)),
        }
    }
}

pub trait Mailer: Send + Sync {
    fn send(&self, message: &Message) -> Result<(), MailError>;
}
