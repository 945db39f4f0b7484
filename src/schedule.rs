//! Which worker takes which request: a home worker per host, so that a host's requests find the
//! connection its earlier requests opened.
//!
//! Each worker has a session of its own, and with it its own connections. If any worker took
//! any job, every worker would soon hold a connection (over TLS, a handshake) to nearly every
//! host: with 64 workers and 1,000 hosts, 18 connections per host. So every host has a *home*:
//! the worker with the fewest jobs queued when the host was first seen. Its later jobs queue
//! there, and each worker takes its own jobs, oldest first.
//!
//! A slow host must not hold back the others, nor a busy home its queue: a worker that has room
//! and nothing of its own queued takes the oldest job of another worker's queue when that queue
//! holds twice its fair share of the schedule, or when the job has waited [`MOVE_AFTER`] for
//! its home. The job's host then makes its home there (its later jobs follow), so a host gains
//! a connection on another worker only when its home has more than it can do.
//!
//! The schedule holds at most `max(2 × concurrency, 16 × workers)` jobs, deep enough that a
//! worker's own queue seldom runs dry while others hold work; the feed waits while it is full.
//! Each worker waits on its own `Notify`, woken when a job of its own arrives or the schedule
//! closes, and by a timer when a job elsewhere becomes movable.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Wake, Waker};

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
    /// The home of each host seen lately.
    homes: HashMap<u64, usize>,
    /// Per worker: it cannot send (its session failed to build) and takes no more jobs.
    retired: Vec<bool>,
    /// A queue longer than this holds more than its worker will take soon.
    backlog: usize,
    closed: bool,
}

struct Queued {
    key: Option<u64>,
    since: Instant,
    job: Job,
}

/// Past this many hosts the table starts afresh, so that a crawl of millions of hosts does not
/// grow it without bound. A host forgotten and seen again gets a home anew, maybe elsewhere:
/// one more connection, nothing worse.
const MOST_HOMES_KEPT: usize = 1 << 16;

/// Jobs queued per worker, at least: the depth that keeps a worker's own queue from running
/// dry while other queues hold work, which would make it take their hosts.
const QUEUED_PER_WORKER: usize = 16;

/// How long a job waits for its busy home before an idle worker may take it (and its host).
/// About what a new connection costs on a LAN; on loopback, a few requests.
const MOVE_AFTER: Duration = Duration::from_millis(20);

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
        drop(state);
        self.wake[worker].notify_one();
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
                drop(state);
                self.room.notify_one();
                Ok(Some(job))
            }
            Take::Wait(_) if state.closed && state.queued == 0 => Ok(None),
            Take::Wait(until) => Err(until),
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
        state.homes.retain(|_, home| *home != worker);
        let orphans = std::mem::take(&mut state.queues[worker]);
        let mut woken = Vec::new();
        for queued in orphans {
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
    /// The home of host `key`, chosen now if it has none: the worker with the fewest jobs
    /// queued. Jobs with no host (they fail at once) go to that worker too.
    fn home_of(&mut self, key: Option<u64>) -> usize {
        let least_busy = || {
            (0..self.queues.len())
                .filter(|worker| !self.retired[*worker])
                .min_by_key(|worker| self.queues[*worker].len())
                .unwrap_or(0)
        };
        let Some(key) = key else {
            return least_busy();
        };
        if let Some(&worker) = self.homes.get(&key) {
            return worker;
        }
        let worker = least_busy();
        if self.homes.len() >= MOST_HOMES_KEPT {
            self.homes.clear();
        }
        self.homes.insert(key, worker);
        worker
    }

    fn take(&mut self, worker: usize, now: Instant) -> Take {
        if self.retired[worker] {
            return Take::Wait(None);
        }
        if let Some(Queued { job, .. }) = self.queues[worker].pop_front() {
            self.queued -= 1;
            return Take::Job(job);
        }
        // Another worker's oldest job, which then makes this worker its host's home. That
        // costs the host a connection: worth it once nothing more is coming, when a queue holds
        // more than its worker will take soon, or when the job has waited long for its home.
        let mut victim = None;
        let mut next_look = None::<Instant>;
        for (other, queue) in self.queues.iter().enumerate() {
            let Some(front) = queue.front() else { continue };
            let movable_at = front.since + MOVE_AFTER;
            if queue.len() >= self.backlog || now >= movable_at {
                if victim.is_none_or(|(_, since)| front.since < since) {
                    victim = Some((other, front.since));
                }
            } else if next_look.is_none_or(|at| movable_at < at) {
                next_look = Some(movable_at);
            }
        }
        let Some((victim, _)) = victim else {
            return Take::Wait(next_look);
        };
        let Some(Queued { key, job, .. }) = self.queues[victim].pop_front() else {
            return Take::Wait(None);
        };
        self.queued -= 1;
        if let Some(key) = key {
            self.homes.insert(key, worker);
        }
        Take::Job(job)
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
