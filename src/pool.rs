//! [`Pool`] and [`map`]: the API of `requests_toolbelt.threaded`, layered on [`Fetcher`] and
//! [`FetchAll`], with the types that go with a pool: its builder ([`PoolBuilder`]), a handle
//! to its queue ([`JobQueue`]), its blocking iterator ([`Results`]) and its errors
//! ([`QueueClosed`], [`JoinTimeout`]).
//!
//! `Pool`, `map` and `map_with` are also at the crate root, where the original's users look
//! for them.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rayon::iter::IntoParallelIterator;
use reqwest::ClientBuilder;

use crate::{
    BuildError, FetchAll, FetchResult, Fetcher, FetcherBuilder, Request, ThreadException,
    ThreadResponse,
};

/// Fetches every request with the [global fetcher](Fetcher::global) and returns the responses
/// and the exceptions: `requests_toolbelt.threaded.map`.
///
/// Unlike the original it takes any collection rayon can iterate in parallel (a `Vec`, a slice,
/// a range mapped to URLs...), never silently does nothing on a generator, accepts an empty
/// input, and returns the outcomes in input order.
///
/// ```
/// # let base = parfetch::doc_support::serve(2);
/// use parfetch::Request;
///
/// let requests = vec![
///     Request::get(format!("{base}/users/1")),
///     Request::post(format!("{base}/events")).json(&serde_json::json!({"kind": "signup"})),
///     Request::get("https://"), // invalid: an exception, not a lost job
/// ];
/// let (responses, exceptions) = parfetch::map(requests);
/// assert_eq!((responses.len(), exceptions.len()), (2, 1));
/// ```
pub fn map<I>(requests: I) -> (Vec<ThreadResponse>, Vec<ThreadException>)
where
    I: IntoParallelIterator<Item: Into<Request>>,
{
    map_with(requests, Fetcher::global())
}

/// [`map`] with a configured [`Fetcher`]: the original's `map(requests, **kwargs)`.
///
/// ```
/// # let base = parfetch::doc_support::serve(2);
/// let fetcher = parfetch::Fetcher::builder().num_processes(10).build()?;
/// let urls = vec![format!("{base}/a"), format!("{base}/b")];
/// let (responses, exceptions) = parfetch::map_with(urls, &fetcher);
/// assert_eq!((responses.len(), exceptions.len()), (2, 0));
/// # Ok::<(), parfetch::BuildError>(())
/// ```
pub fn map_with<I>(requests: I, fetcher: &Fetcher) -> (Vec<ThreadResponse>, Vec<ThreadException>)
where
    I: IntoParallelIterator<Item: Into<Request>>,
{
    requests.into_par_iter().fetch_all_with(fetcher)
}

/// A pool of threads working through a queue of requests: `requests_toolbelt.threaded.Pool`.
///
/// Work starts as soon as the pool is built, on its own threads; take results while it runs
/// with [`get_response`](Self::get_response) and [`get_exception`](Self::get_exception) (which
/// never block), [`responses`](Self::responses) and [`exceptions`](Self::exceptions) (which
/// drain what is there), or [`results`](Self::results) (which blocks and ends when every job is
/// done); wait for the end with [`join_all`](Self::join_all).
///
/// ```
/// # let base = parfetch::doc_support::serve(3);
/// use parfetch::Pool;
///
/// let urls = [format!("{base}/a"), format!("{base}/b"), format!("{base}/c"), "nope".into()];
/// let mut pool = Pool::from_urls(&urls)?;
/// pool.join_all();
///
/// for response in pool.responses() {
///     println!("GET {}. Returned {}.", response.request().url(), response.status());
/// }
/// let failed: Vec<_> = pool.exceptions().collect();
/// assert_eq!(failed.len(), 1);
/// println!("GET {}. Raised {}.", failed[0].request().url(), failed[0].error());
///
/// // Retry what is worth retrying, with the same settings or new ones.
/// let retryable = failed.into_iter().filter(|e| e.error().is_retryable());
/// let mut retry = Pool::builder().num_processes(2).from_exceptions(retryable)?;
/// retry.join_all();
/// # Ok::<(), parfetch::BuildError>(())
/// ```
///
/// # Differences from the original
///
/// - No job is lost: the original loses jobs to a start-up race and to any error that is not a
///   `RequestException`; here every job submitted ends as exactly one response or exception.
/// - Workers wait for jobs until the queue is [closed](Self::close): a queue can be fed while
///   the pool runs (the original's workers quit on the first empty queue).
/// - [`join_all`](Self::join_all) closes the queue, then waits;
///   [`join_all_timeout`](Self::join_all_timeout) gives up after a while.
/// - Sessions are built lazily, one per thread that takes a job, not `num_processes` up front.
///   Each thread keeps many jobs in flight: a pool without settings has one thread per core and
///   [`Fetcher::DEFAULT_CONCURRENCY`] jobs in flight, and `num_processes(n)` alone gives `n`
///   threads with `n` jobs in flight, as in the original. Results are handed out as they
///   complete, also while the queue is open and idle.
/// - Dropping a running pool returns at once: jobs not started are dropped, the threads end by
///   themselves when their current request does.
pub struct Pool {
    queue: JobQueue,
    outcomes: Arc<Outcomes>,
    driver: Option<JoinHandle<()>>,
    fetcher: Fetcher,
}

impl Pool {
    /// Starts configuring a pool.
    ///
    /// ```
    /// use parfetch::Pool;
    ///
    /// let mut pool = Pool::builder()
    ///     .num_processes(4)
    ///     .fetcher(|fetcher| fetcher.allowed_hosts(["127.0.0.1"]))
    ///     .build()?;
    /// pool.submit("http://elsewhere.example/")?;
    /// pool.join_all();
    /// assert_eq!(pool.exceptions().count(), 1); // not on the allow-list
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn builder() -> PoolBuilder {
        PoolBuilder::default()
    }

    /// A pool with default settings working through `requests`: the original's
    /// `Pool(job_queue)`.
    ///
    /// # Errors
    /// When the pool's threads cannot be started.
    ///
    /// ```
    /// use parfetch::{Pool, Request};
    ///
    /// # let base = parfetch::doc_support::serve(1);
    /// let mut pool = Pool::from_requests([Request::post(format!("{base}/rows")).text("a row")])?;
    /// pool.join_all();
    /// assert_eq!(pool.responses().count(), 1);
    /// # Ok::<(), parfetch::BuildError>(())
    /// ```
    pub fn from_requests<R>(requests: impl IntoIterator<Item = R>) -> Result<Self, BuildError>
    where
        R: Into<Request>,
    {
        Self::builder().from_requests(requests)
    }

    /// A pool with default settings that `GET`s every URL: the original's `Pool.from_urls`.
    ///
    /// # Errors
    /// When the pool's threads cannot be started.
    ///
    /// ```
    /// # let base = parfetch::doc_support::serve(3);
    /// let urls: Vec<String> = (0..3).map(|i| format!("{base}/{i}")).collect();
    /// let mut pool = parfetch::Pool::from_urls(&urls)?;
    /// pool.join_all();
    /// assert_eq!(pool.responses().count(), 3);
    /// # Ok::<(), parfetch::BuildError>(())
    /// ```
    pub fn from_urls<U>(urls: impl IntoIterator<Item = U>) -> Result<Self, BuildError>
    where
        U: AsRef<str>,
    {
        Self::builder().from_urls(urls)
    }

    /// A pool with default settings that runs the requests of these exceptions again, in order:
    /// the original's `Pool.from_exceptions`. Filter first to retry only what is worth it
    /// ([`FetchError::is_retryable`](crate::FetchError::is_retryable)).
    ///
    /// # Errors
    /// When the pool's threads cannot be started.
    ///
    /// ```
    /// use parfetch::Pool;
    ///
    /// # let base = parfetch::doc_support::serve(1);
    /// let mut first = Pool::from_urls([format!("{base}/a"), "not a url".to_owned()])?;
    /// first.join_all();
    /// // Sent again as they were; keep only what may pass on a second try.
    /// let again = first.exceptions().filter(|e| e.error().is_retryable());
    /// let mut second = Pool::from_exceptions(again)?;
    /// second.join_all();
    /// assert_eq!(second.exceptions().count(), 0); // "not a url" was not worth it
    /// # Ok::<(), parfetch::BuildError>(())
    /// ```
    pub fn from_exceptions<E>(exceptions: impl IntoIterator<Item = E>) -> Result<Self, BuildError>
    where
        E: Into<Request>,
    {
        Self::builder().from_exceptions(exceptions)
    }

    /// Adds a job. See [`JobQueue::submit`].
    ///
    /// # Errors
    /// [`QueueClosed`], with the request, once the queue is closed.
    ///
    /// ```
    /// # let base = parfetch::doc_support::serve(1);
    /// let mut pool = parfetch::Pool::builder().build()?;
    /// pool.submit(format!("{base}/a"))?;
    /// pool.join_all(); // closes the queue
    /// assert!(pool.submit(format!("{base}/b")).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn submit(&self, request: impl Into<Request>) -> Result<(), QueueClosed> {
        self.queue.submit(request)
    }

    /// Closes the queue: no more jobs. See [`JobQueue::close`].
    ///
    /// ```
    /// let mut pool = parfetch::Pool::builder().build()?;
    /// pool.close();
    /// assert_eq!(pool.results().count(), 0); // ends at once: closed, nothing pending
    /// # Ok::<(), parfetch::BuildError>(())
    /// ```
    pub fn close(&self) {
        self.queue.close();
    }

    /// A handle to the job queue, for threads that feed the pool.
    ///
    /// ```
    /// # let base = parfetch::doc_support::serve(4);
    /// let urls: Vec<String> = (0..4).map(|i| format!("{base}/{i}")).collect();
    /// let mut pool = parfetch::Pool::builder().build()?;
    /// let queue = pool.job_queue();
    /// let feeder = std::thread::spawn(move || {
    ///     urls.into_iter().try_for_each(|url| queue.submit(url))
    /// });
    /// feeder.join().unwrap()?;
    /// pool.join_all();
    /// assert_eq!(pool.responses().count(), 4);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn job_queue(&self) -> JobQueue {
        self.queue.clone()
    }

    /// The next response, if one is ready; `None` otherwise. Never blocks.
    ///
    /// ```
    /// # let base = parfetch::doc_support::serve(1);
    /// let mut pool = parfetch::Pool::from_urls([base])?;
    /// pool.join_all();
    /// assert_eq!(pool.get_response().map(|r| r.text().into_owned()).as_deref(), Some("ok"));
    /// assert!(pool.get_response().is_none()); // taken
    /// # Ok::<(), parfetch::BuildError>(())
    /// ```
    pub fn get_response(&self) -> Option<ThreadResponse> {
        self.outcomes.lock().responses.pop_front().map(|(_, r)| r)
    }

    /// The next exception, if one is ready; `None` otherwise. Never blocks.
    ///
    /// ```
    /// let mut pool = parfetch::Pool::from_urls(["not a url"])?;
    /// pool.join_all();
    /// let exception = pool.get_exception().expect("one exception");
    /// assert_eq!(exception.request().url(), "not a url");
    /// # Ok::<(), parfetch::BuildError>(())
    /// ```
    pub fn get_exception(&self) -> Option<ThreadException> {
        self.outcomes.lock().exceptions.pop_front().map(|(_, e)| e)
    }

    /// Takes the responses that are ready now, in completion order. Never blocks: while the pool
    /// runs, call it again (or [`join_all`](Self::join_all) first) for later ones.
    ///
    /// ```
    /// # let base = parfetch::doc_support::serve(2);
    /// let urls: Vec<String> = (0..2).map(|i| format!("{base}/{i}")).collect();
    /// let mut pool = parfetch::Pool::from_urls(&urls)?;
    /// pool.join_all();
    /// let statuses: Vec<u16> = pool.responses().map(|r| r.status().as_u16()).collect();
    /// assert_eq!(statuses, [200, 200]);
    /// # Ok::<(), parfetch::BuildError>(())
    /// ```
    pub fn responses(&self) -> impl Iterator<Item = ThreadResponse> + '_ {
        std::iter::from_fn(|| self.get_response())
    }

    /// Takes the exceptions that are ready now, in completion order. Never blocks.
    ///
    /// ```
    /// let mut pool = parfetch::Pool::from_urls(["ftp://example.com/", "not a url"])?;
    /// pool.join_all();
    /// assert_eq!(pool.exceptions().count(), 2);
    /// # Ok::<(), parfetch::BuildError>(())
    /// ```
    pub fn exceptions(&self) -> impl Iterator<Item = ThreadException> + '_ {
        std::iter::from_fn(|| self.get_exception())
    }

    /// Takes every outcome, responses and exceptions together, in completion order, waiting
    /// for each; ends when the queue is closed and every job is done.
    ///
    /// On a pool whose queue is still open this waits for more jobs: [`close`](Self::close) it.
    ///
    /// ```
    /// # let base = parfetch::doc_support::serve(1);
    /// let pool = parfetch::Pool::from_urls([base, "not a url".to_owned()])?;
    /// let (responses, exceptions): (Vec<_>, Vec<_>) = pool.results().partition(Result::is_ok);
    /// assert_eq!((responses.len(), exceptions.len()), (1, 1));
    /// # Ok::<(), parfetch::BuildError>(())
    /// ```
    pub fn results(&self) -> Results<'_> {
        Results { pool: self }
    }

    /// The fetcher this pool sends its jobs with: its settings, sessions and counts
    /// ([`progress`](Fetcher::progress)).
    ///
    /// ```
    /// let mut pool = parfetch::Pool::from_urls(["not a url"])?;
    /// pool.join_all();
    /// let progress = pool.fetcher().progress();
    /// assert_eq!((progress.done, progress.failed), (1, 1));
    /// # Ok::<(), parfetch::BuildError>(())
    /// ```
    pub fn fetcher(&self) -> &Fetcher {
        &self.fetcher
    }

    /// The number of jobs submitted and not finished yet.
    ///
    /// ```
    /// let mut pool = parfetch::Pool::from_urls(["not a url"])?;
    /// pool.join_all();
    /// assert_eq!(pool.pending(), 0);
    /// # Ok::<(), parfetch::BuildError>(())
    /// ```
    pub fn pending(&self) -> usize {
        self.outcomes.lock().pending()
    }

    /// Closes the queue and waits until every job is done. Results stay in the pool until taken.
    ///
    /// ```
    /// # let base = parfetch::doc_support::serve(2);
    /// let urls: Vec<String> = (0..2).map(|i| format!("{base}/{i}")).collect();
    /// let mut pool = parfetch::Pool::from_urls(&urls)?;
    /// pool.join_all();
    /// assert_eq!((pool.pending(), pool.responses().count()), (0, 2));
    /// # Ok::<(), parfetch::BuildError>(())
    /// ```
    pub fn join_all(&mut self) {
        self.close();
        let mut state = self.outcomes.lock();
        while !state.is_finished() {
            state = self.outcomes.wait(state);
        }
        drop(state);
        if let Some(driver) = self.driver.take() {
            let _ = driver.join();
        }
    }

    /// Closes the queue and waits until every job is done, or until `timeout` has passed.
    ///
    /// # Errors
    /// [`JoinTimeout`], with the number of jobs still pending, when time ran out first. The
    /// pool goes on; join it again later.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap(); // never answers
    /// let url = format!("http://{}/", silent.local_addr().unwrap());
    /// let mut pool = parfetch::Pool::from_urls([url])?;
    /// let late = pool.join_all_timeout(Duration::from_millis(50)).unwrap_err();
    /// assert_eq!(late.pending, 1);
    /// # Ok::<(), parfetch::BuildError>(())
    /// ```
    pub fn join_all_timeout(&mut self, timeout: Duration) -> Result<(), JoinTimeout> {
        self.close();
        let deadline = Instant::now() + timeout;
        let mut state = self.outcomes.lock();
        while !state.is_finished() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(JoinTimeout {
                    pending: state.pending(),
                });
            }
            state = self.outcomes.wait_timeout(state, left);
        }
        Ok(())
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Nobody can take the results any more: skip the jobs not started, and do not wait for
        // the ones in flight. The driver thread and the pool's threads end on their own.
        self.outcomes.cancelled.store(true, Ordering::SeqCst);
        self.close();
    }
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.outcomes.lock();
        f.debug_struct("Pool")
            .field("submitted", &state.submitted)
            .field("completed", &state.completed)
            .field("closed", &state.closed)
            .field("responses_ready", &state.responses.len())
            .field("exceptions_ready", &state.exceptions.len())
            .finish()
    }
}

/// The blocking iterator of [`Pool::results`].
#[derive(Debug)]
#[must_use = "iterators are lazy and do nothing unless consumed"]
pub struct Results<'pool> {
    pool: &'pool Pool,
}

impl Iterator for Results<'_> {
    type Item = FetchResult;

    fn next(&mut self) -> Option<FetchResult> {
        let outcomes = &self.pool.outcomes;
        let mut state = outcomes.lock();
        loop {
            if let Some(outcome) = state.pop_earliest() {
                return Some(outcome);
            }
            if state.is_finished() {
                return None;
            }
            state = outcomes.wait(state);
        }
    }
}

/// A handle to a [`Pool`]'s job queue. Clone it to feed the pool from several threads.
#[derive(Clone)]
pub struct JobQueue {
    sender: Arc<Mutex<Option<Sender<Request>>>>,
    outcomes: Arc<Outcomes>,
}

impl JobQueue {
    /// Adds a job; a worker takes it as soon as one is free.
    ///
    /// # Errors
    /// [`QueueClosed`], holding the request, once the queue is closed.
    ///
    /// ```
    /// let pool = parfetch::Pool::builder().build()?;
    /// let queue = pool.job_queue();
    /// queue.submit("not a url")?; // fails as a job, not here
    /// queue.close();
    /// let refused = queue.submit("not a url either").unwrap_err();
    /// assert_eq!(refused.request.url(), "not a url either");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn submit(&self, request: impl Into<Request>) -> Result<(), QueueClosed> {
        let request = request.into();
        let sender = self.sender.lock().unwrap_or_else(|e| e.into_inner());
        let Some(sender) = sender.as_ref() else {
            return Err(QueueClosed { request });
        };
        // Counted before it is sent, so that `pending` never misses a job in flight.
        self.outcomes.lock().submitted += 1;
        sender.send(request).map_err(|unsent| {
            self.outcomes.lock().submitted -= 1;
            QueueClosed { request: unsent.0 }
        })
    }

    /// Closes the queue: the workers finish the jobs in it, then stop. Closing twice is fine.
    ///
    /// ```
    /// let pool = parfetch::Pool::builder().build()?;
    /// let queue = pool.job_queue();
    /// queue.close();
    /// queue.close();
    /// assert_eq!(pool.results().count(), 0);
    /// # Ok::<(), parfetch::BuildError>(())
    /// ```
    pub fn close(&self) {
        let sender = self.sender.lock().unwrap_or_else(|e| e.into_inner()).take();
        drop(sender);
        self.outcomes.lock().closed = true;
        self.outcomes.changed.notify_all();
    }

    /// `true` once the queue is closed.
    ///
    /// ```
    /// let pool = parfetch::Pool::builder().build()?;
    /// let queue = pool.job_queue();
    /// pool.close();
    /// assert!(queue.is_closed());
    /// # Ok::<(), parfetch::BuildError>(())
    /// ```
    pub fn is_closed(&self) -> bool {
        self.outcomes.lock().closed
    }
}

impl fmt::Debug for JobQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobQueue")
            .field("closed", &self.is_closed())
            .finish()
    }
}

/// A job was submitted to a closed queue; the request is given back.
#[derive(Debug, thiserror::Error)]
#[error("the pool's job queue is closed; {} {} was not submitted", request.method(), request.url_for_messages())]
pub struct QueueClosed {
    /// The request that was not submitted.
    pub request: Request,
}

/// [`Pool::join_all_timeout`] ran out of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("timed out waiting for the pool; {pending} jobs still pending")]
pub struct JoinTimeout {
    /// Jobs submitted and not finished yet.
    pub pending: usize,
}

/// What the workers have produced and how far they are, shared by the pool, its queue handles
/// and the driver thread.
struct Outcomes {
    state: Mutex<PoolState>,
    changed: Condvar,
    cancelled: AtomicBool,
}

#[derive(Default)]
struct PoolState {
    /// Both queues hold each outcome with its completion number, so that `results` can merge
    /// them back into completion order.
    responses: VecDeque<(u64, ThreadResponse)>,
    exceptions: VecDeque<(u64, ThreadException)>,
    submitted: u64,
    completed: u64,
    closed: bool,
    driver_stopped: bool,
}

impl PoolState {
    fn pending(&self) -> usize {
        usize::try_from(self.submitted - self.completed).unwrap_or(usize::MAX)
    }

    fn is_finished(&self) -> bool {
        (self.closed && self.completed == self.submitted) || self.driver_stopped
    }

    fn pop_earliest(&mut self) -> Option<FetchResult> {
        let response_first = match (self.responses.front(), self.exceptions.front()) {
            (Some((r, _)), Some((e, _))) => r < e,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => return None,
        };
        if response_first {
            self.responses.pop_front().map(|(_, r)| Ok(r))
        } else {
            self.exceptions.pop_front().map(|(_, e)| Err(e))
        }
    }
}

impl Outcomes {
    fn lock(&self) -> MutexGuard<'_, PoolState> {
        // The state stays consistent under every lock (plain counters and queues), so a panic
        // elsewhere while it was held does not make it unusable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wait<'a>(&self, guard: MutexGuard<'a, PoolState>) -> MutexGuard<'a, PoolState> {
        self.changed.wait(guard).unwrap_or_else(|e| e.into_inner())
    }

    fn wait_timeout<'a>(
        &self,
        guard: MutexGuard<'a, PoolState>,
        timeout: Duration,
    ) -> MutexGuard<'a, PoolState> {
        match self.changed.wait_timeout(guard, timeout) {
            Ok((guard, _)) => guard,
            Err(poisoned) => poisoned.into_inner().0,
        }
    }

    fn record(&self, outcome: FetchResult) {
        let mut state = self.lock();
        let number = state.completed;
        state.completed += 1;
        match outcome {
            Ok(response) => state.responses.push_back((number, response)),
            Err(exception) => state.exceptions.push_back((number, exception)),
        }
        drop(state);
        self.changed.notify_all();
    }

    fn driver_stopped(&self) {
        self.lock().driver_stopped = true;
        self.changed.notify_all();
    }
}

/// Runs the queue through [`FetchAll`] on the fetcher's pool until the queue is closed and
/// drained, or the pool is dropped.
fn drive(jobs: Receiver<Request>, fetcher: Fetcher, outcomes: Arc<Outcomes>) {
    // A panic here would be a bug of this crate (`execute` catches the user's); even then,
    // waiters must not hang.
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let cancelled = &outcomes.cancelled;
        let jobs = jobs
            .into_iter()
            .take_while(|_| !cancelled.load(Ordering::SeqCst));
        // Once the pool is dropped, nobody takes results: the jobs queued are dropped.
        fetcher.for_each_outcome(jobs, false, |_, outcome| {
            outcomes.record(outcome);
            if cancelled.load(Ordering::SeqCst) {
                std::ops::ControlFlow::Break(())
            } else {
                std::ops::ControlFlow::Continue(())
            }
        });
    }));
    outcomes.driver_stopped();
}

/// Configures a [`Pool`]; made by [`Pool::builder`], or from a [`FetcherBuilder`] with
/// `From`. It holds the fetcher's own builder, so every fetcher setting applies to a pool: the
/// original's knobs (`num_processes`, `session`, `initializer`, `auth_generator`) directly, any
/// other through [`fetcher`](Self::fetcher). It ends with the jobs to run.
///
/// ```
/// use std::time::Duration;
/// use parfetch::{Fetcher, Pool};
///
/// # let base = parfetch::doc_support::serve(1);
/// let mut pool = Pool::builder()
///     .num_processes(8)
///     .fetcher(|fetcher| fetcher.timeout(Duration::from_secs(5)).allowed_hosts(["127.0.0.1"]))
///     .from_urls([format!("{base}/a")])?;
/// pool.join_all();
/// assert_eq!(pool.responses().count(), 1);
///
/// // Or start from a fetcher's builder.
/// let builder = Fetcher::builder().concurrency(128).max_per_host(4);
/// let pool = parfetch::pool::PoolBuilder::from(builder).build()?;
/// # Ok::<(), parfetch::BuildError>(())
/// ```
#[derive(Debug, Default)]
#[must_use = "a builder does nothing until it is given its jobs"]
pub struct PoolBuilder {
    fetcher: FetcherBuilder,
}

impl From<FetcherBuilder> for PoolBuilder {
    fn from(fetcher: FetcherBuilder) -> Self {
        Self { fetcher }
    }
}

impl PoolBuilder {
    /// Applies `configure` to the pool's [`FetcherBuilder`]: any fetcher setting
    /// ([`timeout`](FetcherBuilder::timeout), [`retry`](FetcherBuilder::retry),
    /// [`allowed_hosts`](FetcherBuilder::allowed_hosts),
    /// [`concurrency`](FetcherBuilder::concurrency), ...).
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let pool = parfetch::Pool::builder()
    ///     .fetcher(|fetcher| fetcher.concurrency(32).timeout(Duration::from_secs(5)))
    ///     .build()?;
    /// assert_eq!(pool.fetcher().concurrency(), 32);
    /// # Ok::<(), parfetch::BuildError>(())
    /// ```
    pub fn fetcher(mut self, configure: impl FnOnce(FetcherBuilder) -> FetcherBuilder) -> Self {
        self.fetcher = configure(self.fetcher);
        self
    }

    /// The number of threads, each with its own session, and of jobs in flight unless
    /// [`concurrency`](FetcherBuilder::concurrency) is set. See [`FetcherBuilder::num_processes`].
    ///
    /// ```
    /// let pool = parfetch::Pool::builder().num_processes(8).build()?;
    /// assert_eq!((pool.fetcher().threads(), pool.fetcher().concurrency()), (8, 8));
    /// # Ok::<(), parfetch::BuildError>(())
    /// ```
    pub fn num_processes(mut self, n: usize) -> Self {
        self.fetcher = self.fetcher.num_processes(n);
        self
    }

    /// The original's `session`. See [`FetcherBuilder::session`].
    ///
    /// ```
    /// let pool = parfetch::Pool::builder()
    ///     .session(|| parfetch::ClientBuilder::new().https_only(true))
    ///     .from_urls(["http://127.0.0.1:9/"])?; // refused by the session: nothing is sent
    /// let exception = pool.results().next().unwrap().unwrap_err();
    /// assert!(matches!(exception.error(), parfetch::FetchError::Transport { .. }));
    /// # Ok::<(), parfetch::BuildError>(())
    /// ```
    pub fn session<F>(mut self, constructor: F) -> Self
    where
        F: Fn() -> ClientBuilder + Send + Sync + 'static,
    {
        self.fetcher = self.fetcher.session(constructor);
        self
    }

    /// The original's `initializer`. See [`FetcherBuilder::initializer`].
    ///
    /// ```
    /// # let base = parfetch::doc_support::serve(1);
    /// let mut pool = parfetch::Pool::builder()
    ///     .initializer(|session| session.user_agent("my-etl/1.0"))
    ///     .from_urls([base])?;
    /// pool.join_all();
    /// assert_eq!(pool.responses().count(), 1);
    /// # Ok::<(), parfetch::BuildError>(())
    /// ```
    pub fn initializer<F>(mut self, initializer: F) -> Self
    where
        F: Fn(ClientBuilder) -> ClientBuilder + Send + Sync + 'static,
    {
        self.fetcher = self.fetcher.initializer(initializer);
        self
    }

    /// The original's `auth_generator`. See [`FetcherBuilder::auth_generator`].
    ///
    /// ```
    /// use parfetch::header::{AUTHORIZATION, HeaderMap, HeaderValue};
    ///
    /// let pool = parfetch::Pool::builder()
    ///     .auth_generator(|session| {
    ///         let token = HeaderValue::from_static("Bearer t0k3n");
    ///         session.default_headers(HeaderMap::from_iter([(AUTHORIZATION, token)]))
    ///     })
    ///     .build()?;
    /// pool.close();
    /// # Ok::<(), parfetch::BuildError>(())
    /// ```
    pub fn auth_generator<F>(mut self, auth_generator: F) -> Self
    where
        F: Fn(ClientBuilder) -> ClientBuilder + Send + Sync + 'static,
    {
        self.fetcher = self.fetcher.auth_generator(auth_generator);
        self
    }

    /// Starts a pool with an open queue: feed it with [`Pool::submit`] or a [`JobQueue`], then
    /// [`close`](Pool::close) it.
    ///
    /// # Errors
    /// [`BuildError`] for `num_processes(0)` or when the threads cannot be started.
    ///
    /// ```
    /// # let base = parfetch::doc_support::serve(1);
    /// let mut pool = parfetch::Pool::builder().build()?;
    /// pool.submit(base)?;
    /// pool.join_all();
    /// assert_eq!(pool.responses().count(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn build(self) -> Result<Pool, BuildError> {
        let fetcher = self.fetcher.build()?;
        let outcomes = Arc::new(Outcomes {
            state: Mutex::new(PoolState::default()),
            changed: Condvar::new(),
            cancelled: AtomicBool::new(false),
        });
        let (sender, jobs) = mpsc::channel();
        let driver = {
            let outcomes = Arc::clone(&outcomes);
            std::thread::Builder::new()
                .name("parfetch-pool".into())
                .spawn({
                    let fetcher = fetcher.clone();
                    move || drive(jobs, fetcher, outcomes)
                })
                .map_err(|error| BuildError::Thread { error })?
        };
        Ok(Pool {
            queue: JobQueue {
                sender: Arc::new(Mutex::new(Some(sender))),
                outcomes: Arc::clone(&outcomes),
            },
            outcomes,
            driver: Some(driver),
            fetcher,
        })
    }

    /// Starts a pool working through `requests`, with its queue closed after them.
    ///
    /// # Errors
    /// As [`build`](Self::build).
    ///
    /// ```
    /// use parfetch::Request;
    ///
    /// # let base = parfetch::doc_support::serve(1);
    /// let requests = [Request::delete(format!("{base}/items/7"))];
    /// let pool = parfetch::Pool::builder().num_processes(2).from_requests(requests)?;
    /// assert_eq!(pool.results().filter(Result::is_ok).count(), 1);
    /// # Ok::<(), parfetch::BuildError>(())
    /// ```
    pub fn from_requests<R>(self, requests: impl IntoIterator<Item = R>) -> Result<Pool, BuildError>
    where
        R: Into<Request>,
    {
        let pool = self.build()?;
        for request in requests {
            pool.submit(request)
                .expect("the queue of a new pool is open until closed below");
        }
        pool.close();
        Ok(pool)
    }

    /// Starts a pool that `GET`s every URL.
    ///
    /// # Errors
    /// As [`build`](Self::build).
    ///
    /// ```
    /// # let base = parfetch::doc_support::serve(2);
    /// let urls = [format!("{base}/a"), format!("{base}/b")];
    /// let pool = parfetch::Pool::builder().num_processes(2).from_urls(&urls)?;
    /// assert_eq!(pool.results().filter(Result::is_ok).count(), 2);
    /// # Ok::<(), parfetch::BuildError>(())
    /// ```
    pub fn from_urls<U>(self, urls: impl IntoIterator<Item = U>) -> Result<Pool, BuildError>
    where
        U: AsRef<str>,
    {
        self.from_requests(urls.into_iter().map(|url| Request::get(url)))
    }

    /// Starts a pool that sends `template` (its method, headers, query, body, timeout and
    /// credentials) to every URL: the original's `from_urls(urls, request_kwargs)`. The URL
    /// always comes from the list.
    ///
    /// ```
    /// use parfetch::{Pool, Request};
    ///
    /// # let base = parfetch::doc_support::serve(2);
    /// let template = Request::post("http://unused.invalid/").header("x-batch", "7").text("ping");
    /// let mut pool = Pool::builder()
    ///     .num_processes(8)
    ///     .from_urls_with(&template, [format!("{base}/a"), format!("{base}/b")])?;
    /// pool.join_all();
    /// let methods: Vec<String> = pool.responses().map(|r| r.request().method().to_string()).collect();
    /// assert_eq!(methods, ["POST", "POST"]);
    /// # Ok::<(), parfetch::BuildError>(())
    /// ```
    ///
    /// # Errors
    /// As [`build`](Self::build).
    pub fn from_urls_with<U>(
        self,
        template: &Request,
        urls: impl IntoIterator<Item = U>,
    ) -> Result<Pool, BuildError>
    where
        U: AsRef<str>,
    {
        self.from_requests(urls.into_iter().map(|url| template.with_url(url)))
    }

    /// Starts a pool that runs the requests of these exceptions again, in order.
    ///
    /// # Errors
    /// As [`build`](Self::build).
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let first = parfetch::Pool::from_urls(["not a url"])?;
    /// let failed = first.results().filter_map(Result::err);
    /// let again = parfetch::Pool::builder()
    ///     .fetcher(|fetcher| fetcher.timeout(Duration::from_secs(5)))
    ///     .from_exceptions(failed)?;
    /// assert_eq!(again.results().count(), 1);
    /// # Ok::<(), parfetch::BuildError>(())
    /// ```
    pub fn from_exceptions<E>(
        self,
        exceptions: impl IntoIterator<Item = E>,
    ) -> Result<Pool, BuildError>
    where
        E: Into<Request>,
    {
        self.from_requests(exceptions)
    }
}
