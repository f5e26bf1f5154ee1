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

    /// `self` plus `duration`, but never past [`Timestamp::latest`]: adding
    /// must not panic, and every timestamp must stay printable.
    pub fn plus(self, duration: Duration) -> Timestamp {
        let latest = Timestamp::latest();
        match self.0.checked_add(duration) {
            Some(time) if time <= latest.0 => Timestamp(time),
            _ => latest,
        }
    }

    /// 9999-12-31T23:59:59Z, the last second RFC 3339 can write.
    pub fn latest() -> Timestamp {
        Timestamp(SystemTime::UNIX_EPOCH + Duration::from_secs(253_402_300_799))
    }

    /// Time left until `self`, zero when it has passed.
    pub fn remaining(self) -> Duration {
        self.0.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO)
    }

    pub fn has_passed(self) -> bool {
        self.0 <= SystemTime::now()
    }

    /// Whole seconds since 1970 (zero before it).
    pub fn unix_seconds(self) -> u64 {
        self.0
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |since| since.as_secs())
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
    fn adding_any_duration_neither_panics_nor_leaves_what_rfc3339_can_write() {
        let far = Timestamp::now().plus(Duration::from_secs(u64::MAX));
        assert_eq!(far, Timestamp::latest());
        assert_eq!(far.to_string(), "9999-12-31T23:59:59.000Z");
        let json = serde_json::to_string(&far).unwrap();
        assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), far);
        let soon = Timestamp::now().plus(Duration::from_secs(60));
        assert!(soon < far && !soon.has_passed());
    }

    #[test]
    fn round_trips_through_json_as_rfc3339() {
        let t = Timestamp::now();
        let json = serde_json::to_string(&t).unwrap();
        assert!(json.ends_with("Z\""), "{json}");
        let back: Timestamp = serde_json::from_str(&json).unwrap();
        assert!(back.0.duration_since(t.0).unwrap_or_else(|e| e.duration()) < Duration::from_millis(1));
    }
}
