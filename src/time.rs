//! Wall-clock timestamps, stored and served as RFC 3339 (UTC, milliseconds) so
//! that records stay readable by hand.

use crate::serde_text::serde_as_text;
use std::time::{Duration, SystemTime};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(SystemTime);

impl Timestamp {
    pub fn now() -> Timestamp {
        Timestamp(SystemTime::now())
    }

    pub fn plus(self, duration: Duration) -> Timestamp {
        Timestamp(self.0 + duration)
    }

    /// Time left until `self`, zero when it has passed.
    pub fn remaining(self) -> Duration {
        self.0.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO)
    }

    pub fn has_passed(self) -> bool {
        self.0 <= SystemTime::now()
    }

    /// Time since `self`, zero when it is in the future.
    pub fn elapsed(self) -> Duration {
        SystemTime::now().duration_since(self.0).unwrap_or(Duration::ZERO)
    }
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", humantime::format_rfc3339_millis(self.0))
    }
}

serde_as_text!(
    Timestamp,
    |text| humantime::parse_rfc3339(text).ok().map(Timestamp),
    "RFC 3339 time"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_json_as_rfc3339() {
        let t = Timestamp::now();
        let json = serde_json::to_string(&t).unwrap();
        assert!(json.ends_with("Z\""), "{json}");
        let back: Timestamp = serde_json::from_str(&json).unwrap();
        assert!(back.0.duration_since(t.0).unwrap_or_else(|e| e.duration()) < Duration::from_millis(1));
    }
}
