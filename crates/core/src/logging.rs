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

use std::fmt::Write as _;
use std::io::Write;
use std::sync::LazyLock;

/// Standard error as a plain `File`, written without std's lock. A copy of
/// the descriptor, so dropping it never closes standard error; `None` when
/// it cannot be copied (no descriptor left), and lines then go through std.
static STDERR: LazyLock<StderrFile> = LazyLock::new(|| {
    use std::os::fd::AsFd;
    StderrFile(
        std::io::stderr()
            .as_fd()
            .try_clone_to_owned()
            .ok()
            .map(std::fs::File::from),
    )
});

struct StderrFile(Option<std::fs::File>);

impl Write for &StderrFile {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        match &self.0 {
            Some(file) => (&*file).write(bytes),
            None => std::io::stderr().lock().write(bytes),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

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
        if line[start..].chars().any(char::is_control) {
            let escaped = escape_control(&line[start..]).into_owned();
            line.truncate(start);
            line.push_str(&escaped);
        }
        line.push('\n');
        // One write call per line, so lines of concurrent requests do not
        // mix; through a `File` on the same descriptor, because std's
        // `Stderr` takes a lock the request threads would queue on.
        let _ = (&*STDERR).write_all(line.as_bytes());
    }

    fn flush(&self) {
        let _ = std::io::stderr().flush();
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
