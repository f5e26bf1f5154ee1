//! The log: one line per record on standard error, through the `log` facade,
//! so that every part of the registry logs the same way and tests can silence
//! or capture it.
//!
//! Format: `<RFC 3339 time> <message>` for information, and
//! `<RFC 3339 time> WARN|ERROR <message>` for the rest, so that the request
//! lines (`<time> GET /health 200 0.1ms`) read as before.
//!
//! Two promises, because the log is read by operators and their tools:
//! - **one record, one line**: control characters in a message (newlines from
//!   a remote service's error text, escape sequences in a path) are written
//!   escaped (`\n`, `\u{1b}`), so nobody can forge or hide a log line;
//! - **logging never fails a request**: a write error (a full disk under the
//!   log, a closed pipe) is dropped, never a panic as with `eprintln!`.
//!
//! `GREN_REGISTRY_LOG` sets the level (`off`, `error`, `warn`, `info`,
//! `debug`; default `info`).
//!
//! Request lines (records with the target [`ACCESS`]) are gathered and
//! written together, at least every [`ACCESS_FLUSH_EVERY`] or every
//! [`ACCESS_BUFFER`] bytes: one write a request was a tenth of what a small
//! answer cost (docs/PERFORMANCE.md). Every other record is written at
//! once, after the request lines before it, so the log keeps its order; a
//! `kill -9` can lose the request lines of the last moment, never a warning
//! or an error.

use crate::store::lock_ignoring_poison as lock;
use std::fmt::Write as _;
use std::io::Write;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// The target of the request lines, which are written in batches.
pub const ACCESS: &str = "access";
/// Request lines wait at most this long to be written.
pub const ACCESS_FLUSH_EVERY: Duration = Duration::from_millis(50);
/// A batch of request lines is written once it is this large.
pub const ACCESS_BUFFER: usize = 16 * 1024;

/// Request lines not written yet.
static PENDING: Mutex<Vec<u8>> = Mutex::new(Vec::new());
/// The batch being written: every write to the log holds it, taken before
/// [`PENDING`] is let go, so that lines leave in the order they were logged,
/// while the threads serving requests go on gathering lines in the other
/// buffer instead of waiting for the write.
static WRITING: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct StderrLogger;

impl log::Log for StderrLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = match record.level() {
            log::Level::Error => "ERROR ",
            log::Level::Warn => "WARN ",
            _ => "",
        };
        let mut line = String::with_capacity(128);
        let _ = write!(line, "{} {level}", crate::time::Timestamp::now());
        let start = line.len();
        let _ = write!(line, "{}", record.args());
        let escaped = match escape_control(&line[start..]) {
            std::borrow::Cow::Owned(escaped) => Some(escaped),
            std::borrow::Cow::Borrowed(_) => None,
        };
        if let Some(escaped) = escaped {
            line.truncate(start);
            line.push_str(&escaped);
        }
        line.push('\n');
        let mut pending = lock(&PENDING);
        if record.target() != ACCESS {
            write_out(pending, Some(line.as_bytes()));
        } else {
            pending.extend_from_slice(line.as_bytes());
            if pending.len() >= ACCESS_BUFFER {
                write_out(pending, None);
            }
        }
    }

    fn flush(&self) {
        write_out(lock(&PENDING), None);
    }
}

/// Writes the request lines gathered in `pending`, then `line`: `pending`
/// is emptied and let go before the write (see [`WRITING`]). Returns once
/// every line logged before it is written, a batch another thread is
/// writing included: a flush at the stop leaves nothing behind.
fn write_out(mut pending: MutexGuard<'_, Vec<u8>>, line: Option<&[u8]>) {
    let mut writing = lock(&WRITING);
    // The written batch's buffer, empty, becomes the next one.
    std::mem::swap(&mut *pending, &mut *writing);
    drop(pending);
    if !writing.is_empty() {
        write_line(&writing);
        writing.clear();
    }
    if let Some(line) = line {
        write_line(line);
    }
}

/// One write call (standard error is unbuffered), made while holding
/// [`WRITING`], so that no other line lands inside this one.
fn write_line(bytes: &[u8]) {
    let _ = std::io::stderr().lock().write_all(bytes);
}

/// Writes the gathered request lines every [`ACCESS_FLUSH_EVERY`], for as
/// long as the process lives.
fn start_flusher() {
    let started = std::thread::Builder::new().name("log".into()).spawn(|| {
        loop {
            std::thread::sleep(ACCESS_FLUSH_EVERY);
            log::logger().flush();
        }
    });
    if let Err(err) = started {
        // Without it, request lines wait for a batch or another record.
        log::warn!("cannot start the log's writer thread: {err}");
    }
}

/// Installs the logger once; later calls (tests, a second `serve`) keep the
/// first. The level comes from `GREN_REGISTRY_LOG`.
pub fn init() {
    let level = std::env::var("GREN_REGISTRY_LOG")
        .ok()
        .and_then(|text| text.parse::<log::LevelFilter>().ok())
        .unwrap_or(log::LevelFilter::Info);
    if log::set_logger(&StderrLogger).is_ok() {
        log::set_max_level(level);
        if level >= log::LevelFilter::Info {
            // Started here, not at the first request line: a thread that
            // appears later would look like a leak to whoever counts them.
            start_flusher();
        }
    }
}

/// `text` with every control character written as a Rust escape.
pub fn escape_control(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            escaped.extend(c.escape_debug());
        } else {
            escaped.push(c);
        }
    }
    std::borrow::Cow::Owned(escaped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_other_text_is_kept() {
        assert_eq!(escape_control("plain text é"), "plain text é");
        assert_eq!(
            escape_control("bad\nline\r\u{1b}[31mred\t"),
            "bad\\nline\\r\\u{1b}[31mred\\t"
        );
    }
}
