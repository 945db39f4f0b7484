//! Connections kept open between requests, and the budget that bounds them.
//!
//! Each worker's client pools its own connections, and reqwest keeps every idle one until its
//! idle timeout: a crawl of 5,000 hosts would hold 5,000 sockets, far past a default open-file
//! limit of 1,024. reqwest cannot close a given idle connection on demand, so parfetch decides
//! *before* each request whether its connection may stay open afterwards: a fetcher has a
//! budget of origins kept open (`FetcherBuilder::max_idle_connections`), each worker books the
//! origins it keeps against it, and a request to an origin that finds the budget spent goes out
//! with `Connection: close`, so that its socket ends with the response. An origin's booking
//! lapses when the worker has not used it for twice the pool's idle timeout, by which time
//! reqwest has closed that connection (it checks once per idle timeout).
//!
//! A booking counts one connection per origin and worker; a worker that sends to one origin
//! several requests at once keeps up to that many, which its share of the concurrency bounds.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use url::Url;

/// How long a pooled connection may stay idle before the client closes it.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// A booking lapses after this long unused: the client has closed its connection by then.
const BOOKING_LAPSES_AFTER: Duration = Duration::from_secs(2 * IDLE_TIMEOUT.as_secs());

/// The origins a fetcher may keep connections open to, across its workers.
#[derive(Debug)]
pub(crate) struct IdleBudget {
    left: AtomicUsize,
}

impl IdleBudget {
    pub(crate) fn new(connections: usize) -> Self {
        Self {
            left: AtomicUsize::new(connections),
        }
    }

    fn take(&self) -> bool {
        self.left
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
                left.checked_sub(1)
            })
            .is_ok()
    }

    fn give_back(&self, connections: usize) {
        self.left.fetch_add(connections, Ordering::AcqRel);
    }
}

/// The origins one worker keeps connections open to, each with when it was last used.
#[derive(Debug, Default)]
pub(crate) struct KeptOrigins {
    booked: Mutex<Booked>,
    hasher: RandomState,
}

#[derive(Debug, Default)]
struct Booked {
    last_used: HashMap<u64, Instant>,
    /// When lapsed bookings were last looked for: at most once a second.
    swept_at: Option<Instant>,
}

impl KeptOrigins {
    /// Whether the connection that sends to `url` now may stay open after the response.
    pub(crate) fn keep(&self, url: &Url, budget: &IdleBudget, now: Instant) -> bool {
        let origin =
            self.hasher
                .hash_one((url.scheme(), url.host_str(), url.port_or_known_default()));
        let mut booked = self.booked.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(last_used) = booked.last_used.get_mut(&origin) {
            if now.saturating_duration_since(*last_used) < BOOKING_LAPSES_AFTER {
                *last_used = now;
                return true;
            }
            // Its connection is gone; booked again below.
            booked.last_used.remove(&origin);
            budget.give_back(1);
        }
        if !budget.take() && !booked.sweep(budget, now) {
            return false;
        }
        booked.last_used.insert(origin, now);
        true
    }
}

impl Booked {
    /// Gives lapsed bookings back, then takes one from `budget` if it can.
    fn sweep(&mut self, budget: &IdleBudget, now: Instant) -> bool {
        if self
            .swept_at
            .is_some_and(|at| now.saturating_duration_since(at) < Duration::from_secs(1))
        {
            return false;
        }
        self.swept_at = Some(now);
        let before = self.last_used.len();
        self.last_used.retain(|_, last_used| {
            now.saturating_duration_since(*last_used) < BOOKING_LAPSES_AFTER
        });
        budget.give_back(before - self.last_used.len());
        budget.take()
    }
}

/// The default budget: half the process's open-file limit (the other half for requests in
/// flight, the input and output, and whatever else the process opens), between 16 and 65,536.
pub(crate) fn default_budget() -> usize {
    let limit = open_file_limit().unwrap_or(8_192);
    usize::try_from(limit / 2)
        .unwrap_or(usize::MAX)
        .clamp(16, 65_536)
}

/// The process's soft limit on open files, if it has one.
#[cfg(unix)]
pub(crate) fn open_file_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

/// The process's soft limit on open files, if it has one.
#[cfg(not(unix))]
pub(crate) fn open_file_limit() -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    #[test]
    fn origins_beyond_the_budget_are_not_kept() {
        let budget = IdleBudget::new(2);
        let kept = KeptOrigins::default();
        let now = Instant::now();
        assert!(kept.keep(&url("http://a.test/x"), &budget, now));
        assert!(
            kept.keep(&url("http://a.test/y"), &budget, now),
            "same origin"
        );
        assert!(kept.keep(&url("http://b.test/"), &budget, now));
        assert!(!kept.keep(&url("http://c.test/"), &budget, now));
        assert!(
            !kept.keep(&url("https://a.test/"), &budget, now),
            "another scheme"
        );
        assert!(
            kept.keep(&url("http://a.test/z"), &budget, now),
            "still booked"
        );
    }

    #[test]
    fn lapsed_bookings_are_given_back() {
        let budget = IdleBudget::new(1);
        let kept = KeptOrigins::default();
        let now = Instant::now();
        assert!(kept.keep(&url("http://a.test/"), &budget, now));
        assert!(!kept.keep(&url("http://b.test/"), &budget, now));
        let later = now + BOOKING_LAPSES_AFTER + Duration::from_secs(1);
        assert!(kept.keep(&url("http://b.test/"), &budget, later));
        assert!(!kept.keep(&url("http://a.test/"), &budget, later));
    }

    #[test]
    fn workers_share_one_budget() {
        let budget = IdleBudget::new(1);
        let (one, other) = (KeptOrigins::default(), KeptOrigins::default());
        let now = Instant::now();
        assert!(one.keep(&url("http://a.test/"), &budget, now));
        assert!(!other.keep(&url("http://a.test/"), &budget, now));
    }

    #[test]
    fn the_default_budget_is_half_the_open_file_limit_within_bounds() {
        let budget = default_budget();
        assert!((16..=65_536).contains(&budget));
        if let Some(limit) = open_file_limit().filter(|limit| (32..=131_072).contains(limit)) {
            assert_eq!(budget as u64, limit / 2);
        }
    }
}
