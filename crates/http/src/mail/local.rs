//! The development mailer: each message becomes `<data-dir>/mail/<time>-<n>.txt`
//! and is printed to the log, so a local registry works with no mail service.
//! The files hold live codes: they are written like records, atomically,
//! `0600` in a `0700` directory, never through a symbolic link.

use super::{MailError, Mailer, Message};
use gren_registry_core::store::{self, layout};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

pub struct LocalSink {
    /// The data directory.
    root: PathBuf,
    counter: AtomicU64,
}

impl LocalSink {
    pub fn new(root: PathBuf) -> LocalSink {
        LocalSink {
            root,
            counter: AtomicU64::new(0),
        }
    }
}

impl Mailer for LocalSink {
    fn send(&self, message: &Message) -> Result<(), MailError> {
        let text = format!("To: {}\nSubject: {}\n\n{}", message.to, message.subject, message.text);
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        let path = layout::mail_message(stamp, self.counter.fetch_add(1, Ordering::Relaxed));
        store::write_file(&self.root, &path, text.as_bytes()).map_err(MailError::Store)?;
        // Development only (no POSTMARK_SERVER_TOKEN): the person running the
        // registry is the recipient, and needs the code.
        // One log record per line: the log escapes newlines inside a record.
        log::info!(
            "---- e-mail (local sink, also in {}) ----",
            self.root.join(path.as_path()).display()
        );
        for line in text.lines() {
            log::info!("{line}");
        }
        log::info!("---- end of e-mail ----");
        Ok(())
    }
}
