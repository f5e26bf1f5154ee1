//! Sliding-window rate limits, in memory: they protect against bursts from a
//! running attacker, which a restart does not help.

use crate::error::ApiError;
use crate::store::lock_ignoring_poison;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct RateLimiter {
    limit: usize,
    window: Duration,
    hits: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl RateLimiter {
    pub fn new(limit: u32, window: Duration) -> RateLimiter {
        RateLimiter {
            limit: limit as usize,
            window,
            hits: Mutex::default(),
        }
    }

    /// Counts a hit for `key`, or refuses with 429 and the seconds until the
    /// oldest hit leaves the window.
    pub fn hit(&self, key: &str) -> Result<(), ApiError> {
        let now = Instant::now();
        let mut hits = lock_ignoring_poison(&self.hits);
        let recent = hits.entry(key.to_string()).or_default();
        while recent.front().is_some_and(|at| now.duration_since(*at) >= self.window) {
            recent.pop_front();
        }
        if recent.len() >= self.limit {
            let oldest = recent.front().copied().unwrap_or(now);
            let wait = self.window.saturating_sub(now.duration_since(oldest));
            return Err(ApiError::rate_limited(wait.as_secs().max(1)));
        }
        recent.push_back(now);
        Ok(())
    }

    /// Forgets keys with no hit inside the window, so memory stays bounded.
    pub fn prune(&self) {
        let now = Instant::now();
        lock_ignoring_poison(&self.hits)
            .retain(|_, recent| recent.back().is_some_and(|at| now.duration_since(*at) < self.window));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_past_the_limit_with_retry_after() {
        let limiter = RateLimiter::new(2, Duration::from_secs(3600));
        limiter.hit("a").unwrap();
        limiter.hit("a").unwrap();
        let refused = limiter.hit("a").unwrap_err();
        assert_eq!(refused.status, 429);
        let retry: u64 = refused
            .headers
            .iter()
            .find(|(name, _)| *name == "Retry-After")
            .unwrap()
            .1
            .parse()
            .unwrap();
        assert!((3590..=3600).contains(&retry), "{retry}");
        limiter.hit("b").expect("other keys are independent");
    }

    #[test]
    fn hits_leave_the_window() {
        let limiter = RateLimiter::new(1, Duration::from_millis(50));
        limiter.hit("a").unwrap();
        assert!(limiter.hit("a").is_err());
        std::thread::sleep(Duration::from_millis(60));
        limiter.hit("a").unwrap();
        std::thread::sleep(Duration::from_millis(60));
        limiter.prune();
        assert!(lock_ignoring_poison(&limiter.hits).is_empty());
    }
}
