//! Warnings the connection layer logs about what clients did (refused
//! connections, bad or slow requests, responses not taken in full), at a
//! bounded rate: a flood of bad requests must not fill the disk under the log.
//!
//! Each kind (an error code, or `aborted`) may write [`PER_WINDOW`] lines per
//! [`WINDOW`]; the rest are counted, and the count is logged as
//! `<K> similar lines (<kind>) suppressed in <S> s` with the first line of that
//! kind after the window, or when the server stops ([`Warnings::flush`]).

use gren_registry_core::store::lock_ignoring_poison as lock;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const PER_WINDOW: u32 = 10;
pub const WINDOW: Duration = Duration::from_secs(1);

#[derive(Default)]
pub struct Warnings {
    /// Kinds are `&'static str` codes: the map cannot grow with the input.
    kinds: Mutex<HashMap<&'static str, Window>>,
}

struct Window {
    started: Instant,
    written: u32,
    suppressed: u64,
}

impl Window {
    fn new(now: Instant) -> Window {
        Window {
            started: now,
            written: 0,
            suppressed: 0,
        }
    }

    /// The summary of what this window suppressed, if anything.
    fn summary(&self, kind: &str, now: Instant) -> Option<String> {
        (self.suppressed > 0).then(|| {
            let seconds = now.duration_since(self.started).as_secs_f64();
            format!(
                "{} similar lines ({kind}) suppressed in {seconds:.1} s",
                self.suppressed
            )
        })
    }
}

impl Warnings {
    /// Logs the line `line` makes (only made when it is written) as a warning
    /// of `kind`, unless that kind has used up its window.
    pub fn warn(&self, kind: &'static str, line: impl FnOnce() -> String) {
        let (write, summary) = self.admit(kind, Instant::now());
        if let Some(summary) = summary {
            log::warn!("{summary}");
        }
        if write {
            log::warn!("{}", line());
        }
    }

    /// Whether a line of `kind` may be written at `now`, and the summary of
    /// the window that just ended, if it suppressed lines.
    fn admit(&self, kind: &'static str, now: Instant) -> (bool, Option<String>) {
        let mut kinds = lock(&self.kinds);
        let window = kinds.entry(kind).or_insert_with(|| Window::new(now));
        let mut summary = None;
        if now.duration_since(window.started) >= WINDOW {
            summary = window.summary(kind, now);
            *window = Window::new(now);
        }
        let write = window.written < PER_WINDOW;
        if write {
            window.written += 1;
        } else {
            window.suppressed += 1;
        }
        (write, summary)
    }

    /// Logs the counts of lines suppressed so far (when the server stops).
    pub fn flush(&self) {
        let now = Instant::now();
        for (kind, window) in lock(&self.kinds).drain() {
            if let Some(summary) = window.summary(kind, now) {
                log::warn!("{summary}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_writes_a_few_lines_per_window_and_then_counts_the_rest() {
        let warnings = Warnings::default();
        let start = Instant::now();
        let written = |kind, at| (0..25).filter(|_| warnings.admit(kind, at).0).count();
        assert_eq!(written("busy", start), PER_WINDOW as usize);
        assert_eq!(
            written("timeout", start),
            PER_WINDOW as usize,
            "kinds are counted apart"
        );
        let (write, summary) = warnings.admit("busy", start + WINDOW);
        assert!(write, "a new window writes again");
        assert_eq!(summary.as_deref(), Some("15 similar lines (busy) suppressed in 1.0 s"));
        let (_, summary) = warnings.admit("busy", start + 2 * WINDOW);
        assert_eq!(summary, None, "nothing was suppressed in the second window");
    }
}
