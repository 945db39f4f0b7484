//! Politeness: how many requests may be in flight to one host, and how often one may start,
//! across every worker of a fetcher.

use std::collections::HashMap;
use std::sync::atomic::{Ordering, fence};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use url::Url;

/// The per-host limits of one fetcher and what each host has used of them.
#[derive(Debug, Default)]
pub(crate) struct HostLimits {
    max_in_flight: Option<usize>,
    min_interval: Option<Duration>,
    hosts: Mutex<Hosts>,
}

/// The hosts seen lately. A crawl meets millions of hosts, each for a few requests: the states
/// of idle hosts are dropped now and then, since a fresh one limits the same way.
#[derive(Debug, Default)]
struct Hosts {
    by_name: HashMap<String, Arc<HostState>>,
    /// When the map grows past this, idle hosts are dropped; doubled with what stays, so that
    /// the sweeps cost a constant per host added.
    sweep_above: usize,
}

/// Below this many hosts, none is ever dropped.
const FEWEST_HOSTS_SWEPT: usize = 1024;

#[derive(Debug)]
struct HostState {
    /// `None` without a concurrency cap.
    slots: Option<Arc<Semaphore>>,
    /// When the next request to this host may start.
    next_start: Mutex<Option<Instant>>,
}

/// Held while a request is in flight; frees its host's slot when dropped.
#[derive(Debug)]
pub(crate) struct Admission {
    _slot: Option<OwnedSemaphorePermit>,
}

impl HostLimits {
    pub(crate) fn new(max_in_flight: Option<usize>, requests_per_second: Option<f64>) -> Self {
        Self {
            max_in_flight,
            min_interval: requests_per_second
                .filter(|rate| rate.is_finite() && *rate > 0.0)
                .map(|rate| Duration::from_secs_f64(1.0 / rate)),
            hosts: Mutex::default(),
        }
    }

    /// Waits until a request to `url`'s host may start: a free slot, then its turn.
    ///
    /// Semaphores and timers of tokio work from any runtime, so workers that each drive their
    /// own runtime share one limit.
    pub(crate) async fn admit(&self, url: &Url) -> Admission {
        if self.max_in_flight.is_none() && self.min_interval.is_none() {
            return Admission { _slot: None };
        }
        let host = self.host(url);
        let slot = match &host.slots {
            Some(slots) => Arc::clone(slots).acquire_owned().await.ok(),
            None => None,
        };
        if let Some(interval) = self.min_interval {
            let turn = {
                let mut next_start = host.next_start.lock().unwrap_or_else(|e| e.into_inner());
                let now = Instant::now();
                let turn = next_start.map_or(now, |next| next.max(now));
                *next_start = Some(turn + interval);
                (turn > now).then_some(turn)
            };
            // The timer wheel ticks in milliseconds: sleeping until now would wait for a tick.
            if let Some(turn) = turn {
                tokio::time::sleep_until(turn).await;
            }
        }
        Admission { _slot: slot }
    }

    fn host(&self, url: &Url) -> Arc<HostState> {
        let name = url.host_str().unwrap_or_default().to_ascii_lowercase();
        let mut hosts = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(state) = hosts.by_name.get(&name) {
            return Arc::clone(state);
        }
        if hosts.by_name.len() >= hosts.sweep_above.max(FEWEST_HOSTS_SWEPT) {
            let now = Instant::now();
            hosts
                .by_name
                .retain(|_, state| !state.is_idle(self.max_in_flight, now));
            hosts.sweep_above = 2 * hosts.by_name.len();
        }
        let state = Arc::new(HostState {
            slots: self.max_in_flight.map(|n| Arc::new(Semaphore::new(n))),
            next_start: Mutex::new(None),
        });
        hosts.by_name.insert(name, Arc::clone(&state));
        state
    }
}

impl HostState {
    /// Whether a fresh state would limit this host the same way. Called with the map locked,
    /// so no one can take a new reference to `self` meanwhile.
    fn is_idle(self: &Arc<Self>, max_in_flight: Option<usize>, now: Instant) -> bool {
        // `admit` holds a reference while it waits for a slot or a turn.
        if Arc::strong_count(self) > 1 {
            return false;
        }
        // The count is read relaxed: this makes what the last holder did before letting go
        // (taking a slot, setting a turn) visible to the checks below.
        fence(Ordering::Acquire);
        let nothing_in_flight = self
            .slots
            .as_ref()
            .zip(max_in_flight)
            .is_none_or(|(slots, max)| slots.available_permits() == max);
        let turn_has_come = self
            .next_start
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_none_or(|next| next <= now);
        nothing_in_flight && turn_has_come
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<F: Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime")
            .block_on(future)
    }

    fn url(host: &str) -> Url {
        Url::parse(&format!("http://{host}/")).expect("valid URL")
    }

    #[test]
    fn a_request_whose_turn_has_come_starts_without_waiting_for_a_timer_tick() {
        use futures_util::FutureExt;
        let limits = HostLimits::new(Some(4), Some(1.0 / 3600.0));
        block_on(async {
            for i in 0..3 {
                let host = url(&format!("host-{i}.test"));
                assert!(
                    limits.admit(&host).now_or_never().is_some(),
                    "first to {host}"
                );
                // The second request to the same host waits for its turn, an hour away.
                assert!(
                    limits.admit(&host).now_or_never().is_none(),
                    "second to {host}"
                );
            }
        });
    }

    #[test]
    fn idle_hosts_are_dropped_so_a_crawl_does_not_grow_the_map_forever() {
        let limits = HostLimits::new(Some(2), None);
        block_on(async {
            for i in 0..20_000 {
                drop(limits.admit(&url(&format!("host-{i}.test"))).await);
            }
        });
        let hosts = limits.hosts.lock().unwrap();
        assert!(
            hosts.by_name.len() <= 2 * FEWEST_HOSTS_SWEPT,
            "{} hosts kept",
            hosts.by_name.len()
        );
        assert!(hosts.by_name.contains_key("host-19999.test"));
    }

    #[test]
    fn a_host_with_a_request_in_flight_is_kept() {
        let limits = HostLimits::new(Some(1), None);
        block_on(async {
            let in_flight = limits.admit(&url("busy.test")).await;
            for i in 0..5_000 {
                drop(limits.admit(&url(&format!("host-{i}.test"))).await);
            }
            assert!(limits.hosts.lock().unwrap().by_name.len() < 5_001, "swept");
            let busy = limits.host(&url("busy.test"));
            let slots = busy.slots.as_ref().expect("capped");
            assert_eq!(
                slots.available_permits(),
                0,
                "the held slot is still counted"
            );
            drop(in_flight);
            assert_eq!(slots.available_permits(), 1);
        });
    }

    #[test]
    fn a_host_whose_next_turn_is_still_ahead_is_kept() {
        // One request per hour: every host's second request must wait, sweeps or not.
        let limits = HostLimits::new(None, Some(1.0 / 3600.0));
        let turn_of = |limits: &HostLimits, host: &str| {
            let hosts = limits.hosts.lock().unwrap();
            *hosts.by_name[host].next_start.lock().unwrap()
        };
        block_on(async {
            drop(limits.admit(&url("slow.test")).await);
            let next_turn = turn_of(&limits, "slow.test");
            assert!(next_turn.is_some());
            for i in 0..3_000 {
                drop(limits.admit(&url(&format!("host-{i}.test"))).await);
            }
            assert_eq!(turn_of(&limits, "slow.test"), next_turn);
        });
        assert_eq!(limits.hosts.lock().unwrap().by_name.len(), 3_001);
    }
}
