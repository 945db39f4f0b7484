//! Politeness: how many requests may be in flight to one host, and how often one may start,
//! across every worker of a fetcher.

use std::collections::HashMap;
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
    hosts: Mutex<HashMap<String, Arc<HostState>>>,
}

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
                turn
            };
            tokio::time::sleep_until(turn).await;
        }
        Admission { _slot: slot }
    }

    fn host(&self, url: &Url) -> Arc<HostState> {
        let name = url.host_str().unwrap_or_default().to_ascii_lowercase();
        let mut hosts = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
        let state = hosts.entry(name).or_insert_with(|| {
            Arc::new(HostState {
                slots: self.max_in_flight.map(|n| Arc::new(Semaphore::new(n))),
                next_start: Mutex::new(None),
            })
        });
        Arc::clone(state)
    }
}
