//! Which worker takes which request: a home worker per host, so that a host's requests find the
//! connection its earlier requests opened.
//!
//! Each worker has a session of its own, and with it its own connections. If any worker took
//! any job, every worker would soon hold a connection (over TLS, a handshake) to nearly every
//! host: with 64 workers and 1,000 hosts, 18 connections per host. So every host has a *home*:
//! when the host is first seen, the worker with the fewest jobs queued (of those, the one with
//! the fewest hosts). Its later jobs queue there, and each worker takes its own jobs, oldest
//! first.
//!
//! A host must not be held to one worker's share when it has more to do, nor a busy home hold
//! back its queue: a worker that has room and nothing of its own queued takes another worker's
//! job (and the job's host makes its home there, its later jobs following)
//! - at once, when that worker is busy (no room for another request) and the job's host has
//!   more jobs queued than the one its home takes next: one host's batch, the common case,
//!   spreads over every worker;
//! - at once, when that queue holds twice its fair share of the schedule and its worker is
//!   busy (unless two other workers hold the host already, see below);
//! - when the job has waited [`MOVE_AFTER`] for its home.
//!
//! A host that moved keeps its former home as its *other* worker: both hold a connection to it.
//! Its jobs then queue at whichever of the two has fewer queued, and the other takes them at
//! once when idle (woken for them when the home is busy), so the two balance the host between
//! them for free. A worker that retires hands its hosts to their other worker. A third takes
//! them only when they have waited [`PAIRED_MOVE_AFTER`] for both (or the host has a batch of
//! [`BATCH`] jobs queued): so a host has at most two connections unless both its workers stall
//! (1,000 hosts, 20 requests each, 64 workers of one request each: 1,250 connections, at most
//! 2 to a host; 1,310, up to 4 to a host, without the pairs).
//!
//! A worker also avoids a second connection of its own: of the first few jobs in its queue, it
//! takes first one whose host it is not sending to already (unless that host has a batch
//! queued, which needs the connections).
//!
//! A worker publishes whether it is busy as that changes ([`Schedule::set_busy`]), and wakes an
//! idle one when it becomes busy with a crowded host queued.
//!
//! The schedule holds at most `max(2 × concurrency, 16 × workers)` jobs, deep enough that a
//! worker's own queue seldom runs dry while others hold work; the feed waits while it is full.
//! Each worker waits on its own `Notify`, woken when a job of its own arrives or the schedule
//! closes, and by a timer when a job elsewhere becomes movable.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::pin::pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Wake, Waker};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio::sync::futures::Notified;

use crate::Request;

/// One input item on its way to a worker, numbered: by its position for indexed inputs, by
/// arrival otherwise.
pub(crate) struct Job {
    pub(crate) index: usize,
    pub(crate) request: Request,
    /// Its host (and port), as the schedule tells hosts apart; `None` for a URL that fails.
    pub(crate) host: Option<HostKey>,
}

/// A host and port, hashed.
pub(crate) type HostKey = u64;

/// The jobs of one call that no worker has taken yet, queued by home worker.
pub(crate) struct Schedule {
    state: Mutex<State>,
    room: Condvar,
    wake: Vec<Notify>,
    capacity: usize,
    hasher: RandomState,
}

struct State {
    /// Per worker: its jobs, oldest first.
    queues: Vec<VecDeque<Queued>>,
    queued: usize,
    /// The home of each host seen lately, and how many of its jobs are queued.
    homes: HashMap<HostKey, Home>,
    /// Per worker: how many hosts have their home there.
    hosts: Vec<usize>,
    /// Per worker: it has no room for another request now.
    busy: Vec<bool>,
    /// Per worker: it waits for a job.
    idle: Vec<bool>,
    /// Per worker: it cannot send (its session failed to build) and takes no more jobs.
    retired: Vec<bool>,
    /// A queue longer than this holds more than its worker will take soon.
    backlog: usize,
    closed: bool,
}

struct Home {
    worker: usize,
    /// The worker that was its home before: it holds a connection to the host too. Never a
    /// retired worker (`Schedule::retire` clears it).
    other: Option<usize>,
    queued: usize,
}

struct Queued {
    since: Instant,
    job: Job,
}

impl Queued {
    fn key(&self) -> Option<HostKey> {
        self.job.host
    }
}

/// Past this many hosts the table forgets those with nothing queued, so that a crawl of
/// millions of hosts does not grow it without bound. A host forgotten and seen again gets a
/// home anew, maybe elsewhere: one more connection, nothing worse.
const MOST_HOMES_KEPT: usize = 1 << 16;

/// Jobs queued per worker, at least: the depth that keeps a worker's own queue from running
/// dry while other queues hold work, which would make it take their hosts.
const QUEUED_PER_WORKER: usize = 16;

/// How long a job waits for its busy home before an idle worker may take it (and its host).
/// About what a new connection costs on a LAN; on loopback, a few requests.
const MOVE_AFTER: Duration = Duration::from_millis(20);

/// How long a job of a host that two other workers hold connections to waits for them before
/// a third may take it.
const PAIRED_MOVE_AFTER: Duration = Duration::from_millis(100);

/// How far into a busy worker's queue an idle one looks for a crowded host's job.
const CROWD_LOOKAHEAD: usize = 32;

/// How far into its own queue a worker looks for a job whose host it is not sending to.
const SECOND_CONNECTION_LOOKAHEAD: usize = 8;

/// A host with this many jobs queued has a batch: it gets more connections at once.
const BATCH: usize = 8;

impl Schedule {
    /// A schedule for `workers` workers and `concurrency` requests in flight.
    pub(crate) fn new(workers: usize, concurrency: usize) -> Self {
        let workers = workers.max(1);
        let capacity = (2 * concurrency).max(QUEUED_PER_WORKER * workers);
        Self {
            state: Mutex::new(State {
                queues: (0..workers).map(|_| VecDeque::new()).collect(),
                queued: 0,
                homes: HashMap::new(),
                hosts: vec![0; workers],
                busy: vec![false; workers],
                idle: vec![false; workers],
                retired: vec![false; workers],
                backlog: 2 * capacity / workers,
                closed: false,
            }),
            room: Condvar::new(),
            wake: (0..workers).map(|_| Notify::new()).collect(),
            capacity,
            hasher: RandomState::new(),
        }
    }

    /// The most jobs it queues.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent under every lock; a panic elsewhere must not end the call.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues item `index` at its host's home, waiting while the schedule is full; `false`
    /// once it is closed.
    pub(crate) fn push(&self, index: usize, request: Request) -> bool {
        let key = self.host_key(&request);
        let job = Job {
            index,
            request,
            host: key,
        };
        let mut state = self.lock();
        while state.queued >= self.capacity && !state.closed {
            state = self
                .room
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        if state.closed {
            return false;
        }
        let worker = state.home_of(key);
        state.queues[worker].push_back(Queued {
            since: Instant::now(),
            job,
        });
        state.queued += 1;
        let helper = state.helper_for(worker, key);
        drop(state);
        self.wake[worker].notify_one();
        if let Some(helper) = helper {
            self.wake[helper].notify_one();
        }
        true
    }

    /// No more jobs: workers take what is queued, then stop.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.room.notify_all();
        for wake in &self.wake {
            wake.notify_one();
        }
    }

    /// Drops the jobs still queued and closes: a call that stopped.
    pub(crate) fn abandon(&self) {
        let dropped = {
            let mut state = self.lock();
            state.closed = true;
            state.queued = 0;
            state
                .queues
                .iter_mut()
                .map(std::mem::take)
                .collect::<Vec<_>>()
        };
        // Requests are dropped outside the lock: their bodies may run user code.
        drop(dropped);
        self.room.notify_all();
        for wake in &self.wake {
            wake.notify_one();
        }
    }

    /// The next job for `worker`, waiting for one; `None` once the schedule is closed and
    /// empty. `sending(host)`: whether the worker has a request to `host` in flight.
    pub(crate) async fn take(
        &self,
        worker: usize,
        sending: &dyn Fn(HostKey) -> bool,
    ) -> Option<Job> {
        loop {
            let woken = self.wake[worker].notified();
            match self.try_take(worker, sending) {
                Ok(job) => return job,
                Err(Some(until)) => {
                    let _ = tokio::time::timeout_at(until.into(), woken).await;
                }
                Err(None) => woken.await,
            }
        }
    }

    /// [`take`](Self::take) for a thread with no runtime to wait in.
    pub(crate) fn take_blocking(&self, worker: usize) -> Option<Job> {
        loop {
            let woken = self.wake[worker].notified();
            match self.try_take(worker, &|_| false) {
                Ok(job) => return job,
                Err(until) => park_until(woken, until),
            }
        }
    }

    /// The next job for `worker`, or `None` if there will be none; else, when to look again
    /// (besides when woken).
    fn try_take(
        &self,
        worker: usize,
        sending: &dyn Fn(HostKey) -> bool,
    ) -> Result<Option<Job>, Option<Instant>> {
        let mut state = self.lock();
        match state.take(worker, Instant::now(), sending) {
            Take::Job(job) => {
                state.idle[worker] = false;
                let last = state.closed && state.queued == 0;
                drop(state);
                self.room.notify_one();
                if last {
                    // Workers waiting for a job to move over learn that there is none left.
                    for wake in &self.wake {
                        wake.notify_one();
                    }
                }
                Ok(Some(job))
            }
            Take::Wait(_) if state.closed && state.queued == 0 => {
                state.idle[worker] = false;
                Ok(None)
            }
            Take::Wait(until) => {
                state.idle[worker] = true;
                Err(until)
            }
        }
    }

    /// Tells the schedule whether `worker` has room for another request now. A worker that has
    /// none, with a crowded host's jobs queued, wakes an idle one to take them.
    pub(crate) fn set_busy(&self, worker: usize, busy: bool) {
        let mut state = self.lock();
        state.busy[worker] = busy;
        let helper = (busy
            && state.queues[worker]
                .iter()
                .take(CROWD_LOOKAHEAD)
                .any(|queued| state.is_crowded(queued.key())))
        .then(|| state.an_idle_worker())
        .flatten();
        drop(state);
        if let Some(helper) = helper {
            self.wake[helper].notify_one();
        }
    }

    /// Takes `worker` out of the schedule (it cannot send): its queued jobs and hosts go to the
    /// others. `false`, and nothing changes, if it is the last worker left: it must take
    /// everything then.
    pub(crate) fn retire(&self, worker: usize) -> bool {
        let mut state = self.lock();
        let left = state.retired.iter().filter(|retired| !**retired).count();
        if left <= 1 || state.retired[worker] {
            return left > 1;
        }
        state.retired[worker] = true;
        // Its hosts go to their other worker where they have one; it is no one's other now.
        let State { homes, hosts, .. } = &mut *state;
        for home in homes.values_mut() {
            if home.other == Some(worker) {
                home.other = None;
            } else if home.worker == worker
                && let Some(other) = home.other.take()
            {
                hosts[worker] -= 1;
                hosts[other] += 1;
                home.worker = other;
            }
        }
        let orphans = std::mem::take(&mut state.queues[worker]);
        let mut woken = Vec::new();
        for queued in orphans {
            // Counted again by `home_of`.
            if let Some(home) = queued.key().and_then(|key| state.homes.get_mut(&key)) {
                home.queued = home.queued.saturating_sub(1);
            }
            let home = state.home_of(queued.key());
            state.queues[home].push_back(queued);
            woken.push(home);
        }
        drop(state);
        woken.dedup();
        for home in woken {
            self.wake[home].notify_one();
        }
        true
    }

    fn host_key(&self, request: &Request) -> Option<HostKey> {
        let url = request.checked_url().ok()?;
        Some(
            self.hasher
                .hash_one((url.host_str()?, url.port_or_known_default())),
        )
    }
}

impl State {
    /// The home of host `key`, chosen now if it has none (or its home retired): the worker with
    /// the fewest jobs queued. Jobs with no host (they fail at once) go to that worker too.
    /// Counts the job as queued for its host.
    fn home_of(&mut self, key: Option<HostKey>) -> usize {
        let Some(key) = key else {
            return self.least_busy();
        };
        let (retired, queues) = (&self.retired, &self.queues);
        if let Some(home) = self
            .homes
            .get_mut(&key)
            .filter(|home| !retired[home.worker])
        {
            home.queued += 1;
            // Of the two workers with a connection to the host, the one with less to do.
            return match home.other {
                Some(other)
                    if !retired[other] && queues[other].len() < queues[home.worker].len() =>
                {
                    other
                }
                _ => home.worker,
            };
        }
        let worker = self.least_busy();
        if self.homes.len() >= MOST_HOMES_KEPT && !self.homes.contains_key(&key) {
            let hosts = &mut self.hosts;
            self.homes.retain(|_, home| {
                let kept = home.queued > 0;
                if !kept {
                    hosts[home.worker] -= 1;
                }
                kept
            });
        }
        match self.homes.entry(key) {
            // Its home retired, with no other worker to hand it to.
            Entry::Occupied(home) => {
                let home = home.into_mut();
                self.hosts[home.worker] -= 1;
                home.worker = worker;
                home.queued += 1;
            }
            Entry::Vacant(home) => {
                home.insert(Home {
                    worker,
                    other: None,
                    queued: 1,
                });
            }
        }
        self.hosts[worker] += 1;
        worker
    }

    /// The worker that can send with the fewest jobs queued: looked for only when a host is
    /// new, since it costs a pass over the workers.
    fn least_busy(&self) -> usize {
        (0..self.queues.len())
            .filter(|worker| !self.retired[*worker])
            .min_by_key(|worker| (self.queues[*worker].len(), self.hosts[*worker]))
            .unwrap_or(0)
    }

    /// Whether jobs of host `key` are queued beyond the one its home takes next: a host
    /// that needs more than one worker now. A job with no host fails at once anywhere.
    fn is_crowded(&self, key: Option<HostKey>) -> bool {
        self.has_queued(key, 2)
    }

    /// Whether `worker` should help with host `key` now: it is crowded, and if two other
    /// workers hold connections to it already, it has a whole batch queued.
    fn needs_help_from(&self, key: Option<HostKey>, worker: usize) -> bool {
        match self.pairing(key, worker) {
            Pairing::PairedElsewhere => self.has_queued(key, BATCH),
            Pairing::Paired | Pairing::Unpaired => self.is_crowded(key),
        }
    }

    /// Whether host `key` has at least `jobs` jobs queued (a job with no host counts as many).
    fn has_queued(&self, key: Option<HostKey>, jobs: usize) -> bool {
        key.is_none_or(|key| self.homes.get(&key).is_some_and(|home| home.queued >= jobs))
    }

    /// An idle worker to wake for a job of host `key` just queued at `worker`, if that one is
    /// busy: the host's other worker, which takes it at once, or for a crowded host any.
    fn helper_for(&self, worker: usize, key: Option<HostKey>) -> Option<usize> {
        if !self.busy[worker] {
            return None;
        }
        let paired = key.and_then(|key| self.homes.get(&key)).and_then(|home| {
            [Some(home.worker), home.other]
                .into_iter()
                .flatten()
                .find(|other| *other != worker && self.idle[*other])
        });
        paired.or_else(|| {
            self.is_crowded(key)
                .then(|| self.an_idle_worker())
                .flatten()
        })
    }

    fn an_idle_worker(&self) -> Option<usize> {
        self.idle.iter().position(|idle| *idle)
    }

    fn take(&mut self, worker: usize, now: Instant, sending: &dyn Fn(HostKey) -> bool) -> Take {
        if self.retired[worker] {
            return Take::Wait(None);
        }
        // A host this worker is sending to now would need a second connection: a job of
        // another host a little further on goes first, unless the host has a batch queued
        // (then it needs the connections).
        let own = &self.queues[worker];
        if !own.is_empty() {
            let position = own
                .iter()
                .take(SECOND_CONNECTION_LOOKAHEAD)
                .position(|queued| {
                    queued
                        .key()
                        .is_none_or(|key| !sending(key) || self.has_queued(Some(key), BATCH))
                })
                .unwrap_or(0);
            if let Some(queued) = self.queues[worker].remove(position) {
                return Take::Job(self.taken(queued, None));
            }
        }
        // Another worker's job, which then makes this worker its host's home. That costs the
        // host a connection: worth it when the job has waited long for its home, when a queue
        // holds more than its worker will take soon, or when a busy worker holds several jobs
        // of one host (one host's batch needs every worker).
        let mut pick: Option<(usize, usize, Instant)> = None; // queue, position, since
        let mut next_look = None::<Instant>;
        for (other, queue) in self.queues.iter().enumerate() {
            let Some(front) = queue.front() else { continue };
            let pairing = self.pairing(front.key(), worker);
            let movable_at = front.since
                + match pairing {
                    Pairing::Paired => Duration::ZERO,
                    Pairing::Unpaired => MOVE_AFTER,
                    Pairing::PairedElsewhere => PAIRED_MOVE_AFTER,
                };
            let backlog = queue.len() >= self.backlog
                && self.busy[other]
                && pairing != Pairing::PairedElsewhere;
            let position = if backlog || now >= movable_at {
                Some(0)
            } else if self.busy[other] {
                queue
                    .iter()
                    .take(CROWD_LOOKAHEAD)
                    .position(|queued| self.needs_help_from(queued.key(), worker))
            } else {
                None
            };
            match position {
                Some(position) => {
                    let since = queue[position].since;
                    if pick.is_none_or(|(_, _, oldest)| since < oldest) {
                        pick = Some((other, position, since));
                    }
                }
                None => {
                    if next_look.is_none_or(|at| movable_at < at) {
                        next_look = Some(movable_at);
                    }
                }
            }
        }
        let Some((victim, position, _)) = pick else {
            return Take::Wait(next_look);
        };
        match self.queues[victim].remove(position) {
            Some(queued) => Take::Job(self.taken(queued, Some(worker))),
            None => Take::Wait(None),
        }
    }

    /// Whether `worker` is one of the two workers with a connection to host `key`.
    fn pairing(&self, key: Option<HostKey>, worker: usize) -> Pairing {
        match key.and_then(|key| self.homes.get(&key)) {
            Some(home) if home.worker == worker || home.other == Some(worker) => Pairing::Paired,
            Some(Home { other: Some(_), .. }) => Pairing::PairedElsewhere,
            _ => Pairing::Unpaired,
        }
    }

    /// Counts `queued` as taken; `moved_to`: the worker that took it from another's queue,
    /// its host's home from now on.
    fn taken(&mut self, queued: Queued, moved_to: Option<usize>) -> Job {
        self.queued -= 1;
        if let Some(home) = queued.key().and_then(|key| self.homes.get_mut(&key)) {
            home.queued = home.queued.saturating_sub(1);
            if let Some(worker) = moved_to.filter(|worker| *worker != home.worker) {
                self.hosts[home.worker] -= 1;
                self.hosts[worker] += 1;
                home.other = Some(home.worker);
                home.worker = worker;
            }
        }
        queued.job
    }
}

/// How a worker stands to a host whose job it could take.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pairing {
    /// It holds a connection to the host: taking the job costs nothing.
    Paired,
    /// The host has one worker; taking the job makes this one the second.
    Unpaired,
    /// Two other workers hold connections to the host.
    PairedElsewhere,
}

/// What a worker gets from the schedule.
enum Take {
    Job(Job),
    /// Nothing now; maybe a job to move over at that time.
    Wait(Option<Instant>),
}

/// Parks the thread until `woken` is notified or `until` has passed.
fn park_until(woken: Notified<'_>, until: Option<Instant>) {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut context = Context::from_waker(&waker);
    let mut woken = pin!(woken);
    while woken.as_mut().poll(&mut context).is_pending() {
        match until {
            None => std::thread::park(),
            Some(until) => match until.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => std::thread::park_timeout(left),
                _ => return,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(schedule: &Schedule, index: usize, url: &str) -> bool {
        schedule.push(index, Request::get(url))
    }

    const SENDING_NOTHING: &dyn Fn(HostKey) -> bool = &|_| false;

    /// A schedule of `workers` workers whose jobs all went to worker 0's queue.
    fn queued_at_worker_0(workers: usize, urls: &[&str]) -> Schedule {
        let schedule = Schedule::new(workers, 64);
        for (index, url) in urls.iter().enumerate() {
            assert!(push(&schedule, index, url));
        }
        let state = schedule.lock();
        assert_eq!(
            state.queues[0].len(),
            urls.len(),
            "least busy first: worker 0"
        );
        drop(state);
        schedule
    }

    fn index_of(take: Take) -> Option<usize> {
        match take {
            Take::Job(job) => Some(job.index),
            Take::Wait(_) => None,
        }
    }

    #[test]
    fn a_host_s_jobs_queue_at_its_home() {
        let schedule = Schedule::new(2, 64);
        for index in 0..4 {
            push(&schedule, index, "http://a.test/");
            push(&schedule, index, "http://b.test/");
        }
        let state = schedule.lock();
        assert_eq!((state.queues[0].len(), state.queues[1].len()), (4, 4));
    }

    #[test]
    fn a_busy_home_s_crowded_host_is_taken_by_an_idle_worker_at_once() {
        let schedule = queued_at_worker_0(
            2,
            &["http://a.test/1", "http://a.test/2", "http://a.test/3"],
        );
        let now = Instant::now();
        let mut state = schedule.lock();
        assert_eq!(index_of(state.take(0, now, SENDING_NOTHING)), Some(0));
        assert_eq!(
            index_of(state.take(1, now, SENDING_NOTHING)),
            None,
            "the home has room"
        );
        state.busy[0] = true;
        assert_eq!(index_of(state.take(1, now, SENDING_NOTHING)), Some(1));
        assert_eq!(state.homes.values().next().map(|home| home.worker), Some(1));
    }

    #[test]
    fn a_lone_job_waits_for_its_busy_home_until_it_is_old() {
        let schedule = queued_at_worker_0(2, &["http://a.test/"]);
        let now = Instant::now();
        let mut state = schedule.lock();
        state.busy[0] = true;
        match state.take(1, now, SENDING_NOTHING) {
            Take::Wait(Some(at)) => {
                assert!(at > now && at <= now + MOVE_AFTER + Duration::from_secs(1))
            }
            _ => panic!("a lone job of a busy home waits"),
        }
        assert_eq!(
            index_of(state.take(1, now + MOVE_AFTER * 2, SENDING_NOTHING)),
            Some(0),
            "old enough"
        );
    }

    #[test]
    fn a_retired_worker_s_jobs_go_to_the_others() {
        let schedule = queued_at_worker_0(3, &["http://a.test/1", "http://a.test/2"]);
        assert!(schedule.retire(0));
        let now = Instant::now();
        let mut state = schedule.lock();
        assert_eq!(index_of(state.take(0, now, SENDING_NOTHING)), None);
        assert!(state.queues[0].is_empty());
        assert_eq!(state.queues.iter().map(VecDeque::len).sum::<usize>(), 2);
        drop(state);
        assert!(schedule.retire(1));
        assert!(!schedule.retire(2), "the last worker left stays");
    }

    fn key(schedule: &Schedule, url: &str) -> HostKey {
        schedule.host_key(&Request::get(url)).unwrap()
    }

    #[test]
    fn a_host_in_flight_waits_behind_another_host_s_job() {
        let schedule = queued_at_worker_0(
            1,
            &["http://a.test/1", "http://a.test/2", "http://b.test/1"],
        );
        let a = key(&schedule, "http://a.test/");
        let b = key(&schedule, "http://b.test/");
        let now = Instant::now();
        let mut state = schedule.lock();
        assert_eq!(index_of(state.take(0, now, SENDING_NOTHING)), Some(0));
        assert_eq!(
            index_of(state.take(0, now, &|host| host == a)),
            Some(2),
            "b first: a's connection is busy"
        );
        assert_eq!(
            index_of(state.take(0, now, &|host| host == a || host == b)),
            Some(1),
            "nothing else to send: a second connection to a"
        );
    }

    #[test]
    fn a_host_with_a_batch_queued_is_sent_to_at_once() {
        let mut urls = vec!["http://a.test/"; BATCH + 1];
        urls.push("http://b.test/");
        let schedule = queued_at_worker_0(1, &urls);
        let a = key(&schedule, "http://a.test/");
        let now = Instant::now();
        let mut state = schedule.lock();
        assert_eq!(index_of(state.take(0, now, SENDING_NOTHING)), Some(0));
        assert_eq!(index_of(state.take(0, now, &|host| host == a)), Some(1));
    }

    /// Host a's home is worker 0, and worker 1 has taken one of its jobs.
    fn a_paired_with_1(workers: usize) -> Schedule {
        let schedule = queued_at_worker_0(workers, &["http://a.test/1", "http://a.test/2"]);
        let now = Instant::now();
        let mut state = schedule.lock();
        assert_eq!(index_of(state.take(0, now, SENDING_NOTHING)), Some(0));
        assert_eq!(
            index_of(state.take(1, now + MOVE_AFTER * 2, SENDING_NOTHING)),
            Some(1),
            "old enough to move"
        );
        let home = state.homes.values().next().unwrap();
        assert_eq!((home.worker, home.other), (1, Some(0)));
        drop(state);
        schedule
    }

    #[test]
    fn a_moved_host_s_jobs_go_to_whichever_of_its_two_workers_has_less_queued() {
        let schedule = a_paired_with_1(3);
        push(&schedule, 2, "http://b.test/");
        assert_eq!(schedule.lock().queues[0].len(), 1, "b's home: worker 0");
        push(&schedule, 3, "http://a.test/3");
        push(&schedule, 4, "http://a.test/4");
        push(&schedule, 5, "http://a.test/5");
        let state = schedule.lock();
        let lens: Vec<usize> = state.queues.iter().map(VecDeque::len).collect();
        assert_eq!(
            lens,
            [2, 2, 0],
            "a's jobs shared by workers 0 and 1, none at 2"
        );
    }

    #[test]
    fn a_host_s_second_worker_takes_its_jobs_at_once_and_a_third_waits_longer() {
        let schedule = a_paired_with_1(3);
        push(&schedule, 2, "http://a.test/3");
        let now = Instant::now();
        let mut state = schedule.lock();
        let queued_at = state
            .queues
            .iter()
            .position(|queue| !queue.is_empty())
            .unwrap();
        let other = 1 - queued_at;
        state.busy[queued_at] = true;
        match state.take(2, now, SENDING_NOTHING) {
            Take::Wait(Some(at)) => assert!(at > now + MOVE_AFTER, "a third worker waits"),
            _ => panic!("a third worker waits for a host two others hold"),
        }
        assert_eq!(
            index_of(state.take(2, now + MOVE_AFTER * 2, SENDING_NOTHING)),
            None,
            "longer than an unpaired host's job"
        );
        assert_eq!(
            index_of(state.take(other, now, SENDING_NOTHING)),
            Some(2),
            "the host's other worker takes it at once"
        );
    }

    #[test]
    fn a_third_worker_takes_a_paired_host_s_job_after_a_long_wait() {
        let schedule = a_paired_with_1(3);
        push(&schedule, 2, "http://a.test/3");
        let now = Instant::now();
        let mut state = schedule.lock();
        state.busy = vec![true, true, false];
        assert_eq!(
            index_of(state.take(2, now + PAIRED_MOVE_AFTER * 2, SENDING_NOTHING)),
            Some(2)
        );
    }

    /// Workers that take each job at once leave every queue empty: the number of hosts
    /// each has decides.
    #[test]
    fn new_hosts_are_spread_over_workers_whose_queues_are_all_empty() {
        let schedule = Schedule::new(4, 64);
        let now = Instant::now();
        for index in 0..8 {
            push(&schedule, index, &format!("http://host{index}.test/"));
            let mut state = schedule.lock();
            let home = state
                .queues
                .iter()
                .position(|queue| !queue.is_empty())
                .unwrap();
            assert_eq!(
                index_of(state.take(home, now, SENDING_NOTHING)),
                Some(index)
            );
        }
        assert_eq!(schedule.lock().hosts, [2, 2, 2, 2]);
    }

    #[test]
    fn an_idle_second_worker_is_woken_for_its_host_s_job_at_a_busy_home() {
        let schedule = a_paired_with_1(2);
        schedule.lock().busy[1] = true;
        // Worker 0 looks, finds nothing, and waits with no timer.
        assert!(matches!(schedule.try_take(0, SENDING_NOTHING), Err(None)));
        let mut context = Context::from_waker(Waker::noop());
        // A permit left by earlier wakes.
        let _ = pin!(schedule.wake[0].notified()).poll(&mut context);
        assert!(push(&schedule, 2, "http://a.test/3"));
        assert!(
            pin!(schedule.wake[0].notified())
                .poll(&mut context)
                .is_ready(),
            "woken"
        );
        assert!(matches!(
            schedule.try_take(0, SENDING_NOTHING),
            Ok(Some(Job { index: 2, .. }))
        ));
    }

    #[test]
    fn a_retired_worker_s_hosts_go_to_their_other_worker() {
        let schedule = a_paired_with_1(3);
        assert!(schedule.retire(1));
        let state = schedule.lock();
        let home = state.homes.values().next().unwrap();
        assert_eq!((home.worker, home.other), (0, None));
        assert_eq!(state.hosts, [1, 0, 0]);
        drop(state);
        let schedule = a_paired_with_1(3);
        assert!(schedule.retire(0));
        let state = schedule.lock();
        let home = state.homes.values().next().unwrap();
        assert_eq!(
            (home.worker, home.other),
            (1, None),
            "no longer paired with 0"
        );
    }
}
