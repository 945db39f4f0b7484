//! Which worker takes which request: a home worker per host, so that a host's requests find the
//! connection its earlier requests opened.
//!
//! Each worker has a session of its own, and with it its own connections. If any worker took
//! any job, every worker would soon hold a connection (over TLS, a handshake) to nearly every
//! host: with 64 workers and 1,000 hosts, 18 connections per host. So every host has a *home*:
//! the worker with the fewest jobs queued when the host was first seen. Its later jobs queue
//! there, and each worker takes its own jobs, oldest first.
//!
//! A host must not be held to one worker's share when it has more to do, nor a busy home hold
//! back its queue: a worker that has room and nothing of its own queued takes another worker's
//! job (and the job's host makes its home there, its later jobs following)
//! - at once, when that worker is busy (no room for another request) and the job's host has
//!   more jobs queued than the one its home takes next: one host's batch, the common case,
//!   spreads over every worker;
//! - at once, when that queue holds twice its fair share of the schedule;
//! - when the job has waited [`MOVE_AFTER`] for its home.
//!
//! A host with a single job queued at a time (many hosts, interleaved) so stays with its home
//! and its connections, and gains a connection on another worker only when its home falls
//! behind. A worker publishes whether it is busy as that changes ([`Schedule::set_busy`]), and
//! wakes an idle one when it becomes busy with a crowded host queued.
//!
//! The schedule holds at most `max(2 × concurrency, 16 × workers)` jobs, deep enough that a
//! worker's own queue seldom runs dry while others hold work; the feed waits while it is full.
//! Each worker waits on its own `Notify`, woken when a job of its own arrives or the schedule
//! closes, and by a timer when a job elsewhere becomes movable.

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
}

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
    homes: HashMap<u64, Home>,
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
    queued: usize,
}

struct Queued {
    key: Option<u64>,
    since: Instant,
    job: Job,
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

/// How far into a busy worker's queue an idle one looks for a crowded host's job.
const CROWD_LOOKAHEAD: usize = 32;

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

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent under every lock; a panic elsewhere must not end the call.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `job` at its host's home, waiting while the schedule is full; `false` once it is
    /// closed.
    pub(crate) fn push(&self, job: Job) -> bool {
        let key = self.host_key(&job.request);
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
            key,
            since: Instant::now(),
            job,
        });
        state.queued += 1;
        let helper = (state.busy[worker] && state.is_crowded(key))
            .then(|| state.an_idle_worker())
            .flatten();
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
    /// empty.
    pub(crate) async fn take(&self, worker: usize) -> Option<Job> {
        loop {
            let woken = self.wake[worker].notified();
            match self.try_take(worker) {
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
            match self.try_take(worker) {
                Ok(job) => return job,
                Err(until) => park_until(woken, until),
            }
        }
    }

    /// The next job for `worker`, or `None` if there will be none; else, when to look again
    /// (besides when woken).
    fn try_take(&self, worker: usize) -> Result<Option<Job>, Option<Instant>> {
        let mut state = self.lock();
        match state.take(worker, Instant::now()) {
            Take::Job(job) => {
                state.idle[worker] = false;
                drop(state);
                self.room.notify_one();
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
                .any(|queued| state.is_crowded(queued.key)))
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
        let orphans = std::mem::take(&mut state.queues[worker]);
        let mut woken = Vec::new();
        for queued in orphans {
            // Counted again by `home_of`.
            if let Some(home) = queued.key.and_then(|key| state.homes.get_mut(&key)) {
                home.queued = home.queued.saturating_sub(1);
            }
            let home = state.home_of(queued.key);
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

    fn host_key(&self, request: &Request) -> Option<u64> {
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
    fn home_of(&mut self, key: Option<u64>) -> usize {
        let Some(key) = key else {
            return self.least_busy();
        };
        let retired = &self.retired;
        if let Some(home) = self
            .homes
            .get_mut(&key)
            .filter(|home| !retired[home.worker])
        {
            home.queued += 1;
            return home.worker;
        }
        let worker = self.least_busy();
        if self.homes.len() >= MOST_HOMES_KEPT && !self.homes.contains_key(&key) {
            self.homes.retain(|_, home| home.queued > 0);
        }
        let home = self.homes.entry(key).or_insert(Home { worker, queued: 0 });
        home.worker = worker;
        home.queued += 1;
        worker
    }

    /// The worker that can send with the fewest jobs queued: looked for only when a host is
    /// new, since it costs a pass over the workers.
    fn least_busy(&self) -> usize {
        (0..self.queues.len())
            .filter(|worker| !self.retired[*worker])
            .min_by_key(|worker| self.queues[*worker].len())
            .unwrap_or(0)
    }

    /// Whether jobs of host `key` are queued beyond the one its home takes next: a host
    /// that needs more than one worker now. A job with no host fails at once anywhere.
    fn is_crowded(&self, key: Option<u64>) -> bool {
        key.is_none_or(|key| self.homes.get(&key).is_some_and(|home| home.queued >= 2))
    }

    fn an_idle_worker(&self) -> Option<usize> {
        self.idle.iter().position(|idle| *idle)
    }

    fn take(&mut self, worker: usize, now: Instant) -> Take {
        if self.retired[worker] {
            return Take::Wait(None);
        }
        if let Some(queued) = self.queues[worker].pop_front() {
            return Take::Job(self.taken(queued, None));
        }
        // Another worker's job, which then makes this worker its host's home. That costs the
        // host a connection: worth it when the job has waited long for its home, when a queue
        // holds more than its worker will take soon, or when a busy worker holds several jobs
        // of one host (one host's batch needs every worker).
        let mut pick: Option<(usize, usize, Instant)> = None; // queue, position, since
        let mut next_look = None::<Instant>;
        for (other, queue) in self.queues.iter().enumerate() {
            let Some(front) = queue.front() else { continue };
            let movable_at = front.since + MOVE_AFTER;
            let position = if queue.len() >= self.backlog || now >= movable_at {
                Some(0)
            } else if self.busy[other] {
                queue
                    .iter()
                    .take(CROWD_LOOKAHEAD)
                    .position(|queued| self.is_crowded(queued.key))
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

    /// Counts `queued` as taken; `moved_to`: the worker that took it from another's queue,
    /// its host's home from now on.
    fn taken(&mut self, queued: Queued, moved_to: Option<usize>) -> Job {
        self.queued -= 1;
        if let Some(home) = queued.key.and_then(|key| self.homes.get_mut(&key)) {
            home.queued = home.queued.saturating_sub(1);
            if let Some(worker) = moved_to {
                home.worker = worker;
            }
        }
        queued.job
    }
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

    fn job(index: usize, url: &str) -> Job {
        Job {
            index,
            request: Request::get(url),
        }
    }

    /// A schedule of `workers` workers whose jobs all went to worker 0's queue.
    fn queued_at_worker_0(workers: usize, urls: &[&str]) -> Schedule {
        let schedule = Schedule::new(workers, 64);
        for (index, url) in urls.iter().enumerate() {
            assert!(schedule.push(job(index, url)));
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
            schedule.push(job(index, "http://a.test/"));
            schedule.push(job(index, "http://b.test/"));
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
        assert_eq!(index_of(state.take(0, now)), Some(0));
        assert_eq!(index_of(state.take(1, now)), None, "the home has room");
        state.busy[0] = true;
        assert_eq!(index_of(state.take(1, now)), Some(1));
        assert_eq!(state.homes.values().next().map(|home| home.worker), Some(1));
    }

    #[test]
    fn a_lone_job_waits_for_its_busy_home_until_it_is_old() {
        let schedule = queued_at_worker_0(2, &["http://a.test/"]);
        let now = Instant::now();
        let mut state = schedule.lock();
        state.busy[0] = true;
        match state.take(1, now) {
            Take::Wait(Some(at)) => {
                assert!(at > now && at <= now + MOVE_AFTER + Duration::from_secs(1))
            }
            _ => panic!("a lone job of a busy home waits"),
        }
        assert_eq!(
            index_of(state.take(1, now + MOVE_AFTER * 2)),
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
        assert_eq!(index_of(state.take(0, now)), None);
        assert!(state.queues[0].is_empty());
        assert_eq!(state.queues.iter().map(VecDeque::len).sum::<usize>(), 2);
        drop(state);
        assert!(schedule.retire(1));
        assert!(!schedule.retire(2), "the last worker left stays");
    }
}
