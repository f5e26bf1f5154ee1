//! Budgets shared by concurrent requests: the bytes of upload bodies in
//! flight, and the bundles being inflated at once. A request reserves its
//! share before it spends the memory and gives it back when it is done (the
//! reservation is dropped); when the budget is spent it waits briefly, then
//! is refused ([`Busy`]: `503 server_busy` with `Retry-After` at the HTTP
//! edge), so a burst of uploads costs bounded memory instead of growing with
//! the number of connections. A budget may also bound how many requests
//! wait at once ([`Budget::with_waiting_limit`]): each waits on a handler
//! thread, so past that limit a request is refused at once rather than
//! taking a thread the rest of the registry needs.

use crate::store::lock_ignoring_poison;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long a request waits for its share before it is refused.
pub const WAIT: Duration = Duration::from_secs(3);
/// The `Retry-After` of a refusal, in seconds.
pub const RETRY_AFTER_SECS: u64 = 2;

/// A request refused for the registry's load: it was fine, the registry is
/// busy with others (`what`: "uploads", ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("The registry is handling as many {what} as it can at once; try again in a few seconds.")]
pub struct Busy {
    pub what: &'static str,
}

/// A counted budget (bytes, or slots), shared between threads.
#[derive(Clone)]
pub struct Budget(Arc<Inner>);

struct Inner {
    total: u64,
    /// What is being rationed, for the refusal's message ("uploads", ...).
    what: &'static str,
    /// Requests that may wait for their share at once.
    max_waiting: usize,
    state: Mutex<State>,
    freed: Condvar,
}

#[derive(Default)]
struct State {
    used: u64,
    waiting: usize,
}

/// A share of a [`Budget`], given back when dropped.
pub struct Reservation {
    budget: Arc<Inner>,
    amount: u64,
}

impl Budget {
    pub fn new(total: u64, what: &'static str) -> Budget {
        Budget::with_waiting_limit(total, usize::MAX, what)
    }

    /// A budget for which at most `max_waiting` requests wait at once; more
    /// are refused without waiting.
    pub fn with_waiting_limit(total: u64, max_waiting: usize, what: &'static str) -> Budget {
        Budget(Arc::new(Inner {
            total,
            what,
            max_waiting,
            state: Mutex::default(),
            freed: Condvar::new(),
        }))
    }

    /// Reserves `amount` (at most the whole budget: a request larger than
    /// the budget waits until it has the budget to itself), waiting up to
    /// `wait` for others to give theirs back, unless as many requests as
    /// may wait are waiting already.
    pub fn reserve(&self, amount: u64, wait: Duration) -> Result<Reservation, Busy> {
        let inner = &self.0;
        let amount = amount.min(inner.total);
        let fits = |state: &State| state.used + amount <= inner.total;
        let mut state = lock_ignoring_poison(&inner.state);
        if !fits(&state) {
            if state.waiting >= inner.max_waiting {
                return Err(Busy { what: inner.what });
            }
            state.waiting += 1;
            let deadline = Instant::now() + wait;
            while !fits(&state) && Instant::now() < deadline {
                let left = deadline.saturating_duration_since(Instant::now());
                state = inner
                    .freed
                    .wait_timeout(state, left)
                    .map(|(guard, _)| guard)
                    .unwrap_or_else(|poisoned| poisoned.into_inner().0);
            }
            state.waiting -= 1;
            if !fits(&state) {
                return Err(Busy { what: inner.what });
            }
        }
        state.used += amount;
        Ok(Reservation {
            budget: inner.clone(),
            amount,
        })
    }

    /// What is reserved now.
    pub fn in_use(&self) -> u64 {
        lock_ignoring_poison(&self.0.state).used
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        lock_ignoring_poison(&self.budget.state).used -= self.amount;
        self.budget.freed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spent_budget_refuses_after_waiting_and_a_returned_share_lets_the_next_in() {
        let budget = Budget::new(100, "uploads");
        let first = budget.reserve(60, Duration::ZERO).unwrap();
        let started = Instant::now();
        let refused = budget
            .reserve(50, Duration::from_millis(100))
            .err()
            .expect("over budget");
        assert!(started.elapsed() >= Duration::from_millis(100), "it waited first");
        assert_eq!(refused, Busy { what: "uploads" });
        let waiting = {
            let budget = budget.clone();
            std::thread::spawn(move || budget.reserve(50, Duration::from_secs(5)).map(|_| ()))
        };
        std::thread::sleep(Duration::from_millis(50));
        drop(first);
        waiting
            .join()
            .unwrap()
            .expect("the share given back lets the waiting request in");
        assert_eq!(budget.in_use(), 0, "every reservation was given back");
    }

    #[test]
    fn past_the_waiting_limit_a_request_is_refused_without_waiting() {
        let budget = Budget::with_waiting_limit(1, 1, "git fetches");
        let held = budget.reserve(1, Duration::ZERO).unwrap();
        let waiting = {
            let budget = budget.clone();
            std::thread::spawn(move || budget.reserve(1, Duration::from_secs(5)).map(|_| ()))
        };
        while lock_ignoring_poison(&budget.0.state).waiting == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let started = Instant::now();
        let refused = budget
            .reserve(1, Duration::from_secs(5))
            .err()
            .expect("one waits already");
        assert!(started.elapsed() < Duration::from_secs(1), "refused at once");
        assert_eq!(refused, Busy { what: "git fetches" });
        drop(held);
        waiting.join().unwrap().expect("the one waiting gets the share");
        assert_eq!(lock_ignoring_poison(&budget.0.state).waiting, 0);
    }

    #[test]
    fn a_request_larger_than_the_budget_waits_for_the_whole_budget() {
        let budget = Budget::new(10, "uploads");
        let whole = budget.reserve(1000, Duration::ZERO).expect("an empty budget takes it");
        assert_eq!(budget.in_use(), 10);
        assert!(budget.reserve(1, Duration::ZERO).is_err());
        drop(whole);
        budget.reserve(1, Duration::ZERO).unwrap();
    }
}
