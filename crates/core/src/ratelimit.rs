//! Sliding-window rate limits, in memory: they protect against bursts from a
//! running attacker, which a restart does not help.

use crate::store::lock_ignoring_poison;
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A request refused by a limit: it may come back in `retry_after_secs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("Too many requests; try again in {retry_after_secs} seconds.")]
pub struct RateLimited {
    pub retry_after_secs: u64,
}

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

    /// Counts a hit for `key`, or refuses with the seconds until the oldest
    /// hit leaves the window.
    pub fn hit(&self, key: &str) -> Result<(), RateLimited> {
        hit_all(&[(self, key)])
    }

    /// Whether a hit for `key` would be refused now; counts nothing.
    pub fn is_exhausted(&self, key: &str) -> bool {
        self.peek(key).is_err()
    }

    /// The refusal a hit for `key` would get now, if any; counts nothing.
    pub fn peek(&self, key: &str) -> Result<(), RateLimited> {
        self.check(&mut lock_ignoring_poison(&self.hits), key, Instant::now())
    }

    /// Takes back the newest hit of `key`: the request it counted did not
    /// happen after all (for limits that count only successes).
    pub fn give_back(&self, key: &str) {
        if let Some(recent) = lock_ignoring_poison(&self.hits).get_mut(key) {
            recent.pop_back();
        }
    }

    /// Runs `action` as one hit of `key`: the slot is taken first (so
    /// parallel requests cannot all pass) and given back unless the action
    /// succeeded and `counts` says its outcome is one the limit is about
    /// (limits on changes, not on refusals or no-ops). The action's error
    /// type must be able to say that the limit refused.
    pub fn counting<T, E: From<RateLimited>>(
        &self,
        key: &str,
        action: impl FnOnce() -> Result<T, E>,
        counts: impl FnOnce(&T) -> bool,
    ) -> Result<T, E> {
        self.hit(key)?;
        let outcome = action();
        if !outcome.as_ref().is_ok_and(counts) {
            self.give_back(key);
        }
        outcome
    }

    fn check(&self, hits: &mut HashMap<String, VecDeque<Instant>>, key: &str, now: Instant) -> Result<(), RateLimited> {
        let Some(recent) = hits.get_mut(key) else { return Ok(()) };
        while recent.front().is_some_and(|at| now.duration_since(*at) >= self.window) {
            recent.pop_front();
        }
        if recent.len() >= self.limit {
            let oldest = recent.front().copied().unwrap_or(now);
            let wait = self.window.saturating_sub(now.duration_since(oldest));
            return Err(RateLimited {
                retry_after_secs: wait.as_secs().max(1),
            });
        }
        Ok(())
    }

    fn record(&self, hits: &mut HashMap<String, VecDeque<Instant>>, key: &str, now: Instant) {
        hits.entry(key.to_string()).or_default().push_back(now);
    }

    /// Forgets keys with no hit inside the window, so memory stays bounded.
    pub fn prune(&self) {
        let now = Instant::now();
        lock_ignoring_poison(&self.hits)
            .retain(|_, recent| recent.back().is_some_and(|at| now.duration_since(*at) < self.window));
    }
}

/// The client network a limit counts against: an IPv4 address on its own, an
/// IPv6 address by its /64 (one subscriber or host usually holds a whole /64,
/// so counting single IPv6 addresses would give each client 2^64 budgets).
/// IPv4-mapped IPv6 addresses count as the IPv4 address they carry.
pub fn client_network(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let segments = v6.segments();
                let prefix = Ipv6Addr::new(segments[0], segments[1], segments[2], segments[3], 0, 0, 0, 0);
                format!("{prefix}/64")
            }
        },
    }
}

/// Counts a hit in every `(limiter, key)` pair, or in none of them when one
/// refuses: a refused request uses up no other limit.
pub fn hit_all(pairs: &[(&RateLimiter, &str)]) -> Result<(), RateLimited> {
    let now = Instant::now();
    let mut guards: Vec<_> = Vec::with_capacity(pairs.len());
    for (limiter, key) in pairs {
        let mut hits = lock_ignoring_poison(&limiter.hits);
        limiter.check(&mut hits, key, now)?;
        guards.push(hits);
    }
    for ((limiter, key), hits) in pairs.iter().zip(guards.iter_mut()) {
        limiter.record(hits, key, now);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_past_the_limit_with_retry_after() {
        let limiter = RateLimiter::new(2, Duration::from_secs(3600));
        limiter.hit("a").unwrap();
        limiter.hit("a").unwrap();
        let retry = limiter.hit("a").unwrap_err().retry_after_secs;
        assert!((3590..=3600).contains(&retry), "{retry}");
        limiter.hit("b").expect("other keys are independent");
    }

    #[test]
    fn asking_whether_a_key_is_exhausted_counts_nothing() {
        let limiter = RateLimiter::new(1, Duration::from_secs(60));
        assert!(!limiter.is_exhausted("a"));
        assert!(!limiter.is_exhausted("a"));
        limiter.hit("a").unwrap();
        assert!(limiter.is_exhausted("a"));
        assert!(limiter.peek("a").unwrap_err().retry_after_secs > 0);
        assert!(!limiter.is_exhausted("b") && limiter.peek("b").is_ok());
    }

    #[test]
    fn counting_keeps_the_hit_only_for_outcomes_that_count() {
        let limiter = RateLimiter::new(2, Duration::from_secs(60));
        /// An action's own refusal, or the limit's.
        #[derive(Debug, PartialEq)]
        enum Refused {
            Forbidden,
            Limited,
        }
        impl From<RateLimited> for Refused {
            fn from(_: RateLimited) -> Refused {
                Refused::Limited
            }
        }
        let failed: Result<(), Refused> = limiter.counting("a", || Err(Refused::Forbidden), |_| true);
        assert_eq!(failed.unwrap_err(), Refused::Forbidden);
        assert!(
            !limiter
                .counting::<_, Refused>("a", || Ok(false), |changed| *changed)
                .unwrap()
        );
        limiter.counting::<_, Refused>("a", || Ok(()), |_| true).unwrap();
        limiter.counting::<_, Refused>("a", || Ok(()), |_| true).unwrap();
        let mut ran = false;
        let refused = limiter
            .counting::<_, Refused>(
                "a",
                || {
                    ran = true;
                    Ok(())
                },
                |_| true,
            )
            .unwrap_err();
        assert_eq!(refused, Refused::Limited);
        assert!(!ran, "a refused action does not run");
    }

    #[test]
    fn a_refusal_counts_against_no_limit() {
        let (per_ip, per_email) = (
            RateLimiter::new(2, Duration::from_secs(60)),
            RateLimiter::new(1, Duration::from_secs(60)),
        );
        hit_all(&[(&per_ip, "ip"), (&per_email, "a")]).unwrap();
        assert!(hit_all(&[(&per_ip, "ip"), (&per_email, "a")]).is_err());
        hit_all(&[(&per_ip, "ip"), (&per_email, "b")]).expect("the refusal did not use up the IP's limit");
    }

    #[test]
    fn ipv6_clients_are_grouped_by_their_64_and_ipv4_by_address() {
        let network = |text: &str| client_network(text.parse().unwrap());
        assert_eq!(network("2001:db8:1:2:aaaa::1"), network("2001:db8:1:2:bbbb::2"));
        assert_eq!(network("2001:db8:1:2::1"), "2001:db8:1:2::/64");
        assert_ne!(network("2001:db8:1:2::1"), network("2001:db8:1:3::1"));
        assert_eq!(network("192.0.2.7"), "192.0.2.7");
        assert_ne!(network("192.0.2.7"), network("192.0.2.8"));
        assert_eq!(network("::ffff:192.0.2.7"), "192.0.2.7");
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
