//! [`Fetcher`]: configuration, the per-worker sessions, an optional dedicated pool, and the one
//! path every request takes (`Fetcher::run`), from [`Fetcher::execute`] or a batch's workers.

use std::collections::HashSet;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use reqwest::ClientBuilder;
use thread_local::ThreadLocal;
use url::Url;

use crate::limits::HostLimits;
use crate::session::{Session, SessionHooks};
use crate::tls::SharedTls;
use crate::{
    BuildError, FetchError, FetchResult, Request, RetryPolicy, ThreadException, ThreadResponse,
};

/// Sends requests, one session per thread, with one configuration.
///
/// A `Fetcher` owns a session (a reqwest client with its own keep-alive connections) for every
/// thread that has sent a request through it. Sessions are built lazily, on a thread's first
/// request, by the [session hooks](FetcherBuilder::initializer), and live as long as the
/// `Fetcher`: later calls on the same thread reuse them and their connections. Dropping the last
/// clone of a `Fetcher` closes them all.
///
/// Cloning is cheap and shares everything: the sessions, the settings and the dedicated pool.
///
/// Use it with the [`FetchAll`](crate::FetchAll) trait's `*_with` methods, or call
/// [`execute`](Self::execute) from any thread.
///
/// ```no_run
/// use std::time::Duration;
/// use parfetch::prelude::*;
/// use rayon::prelude::*;
///
/// let fetcher = parfetch::Fetcher::builder()
///     .num_processes(64)
///     .timeout(Duration::from_secs(10))
///     .build()?;
/// let urls = vec!["http://127.0.0.1:8080/a", "http://127.0.0.1:8080/b"];
/// let (responses, exceptions) = urls.par_iter().fetch_all_with(&fetcher);
/// # Ok::<(), parfetch::BuildError>(())
/// ```
#[derive(Clone)]
pub struct Fetcher {
    shared: Arc<Shared>,
}

struct Shared {
    settings: Settings,
    done: AtomicU64,
    failed: AtomicU64,
    host_limits: HostLimits,
    sessions: ThreadLocal<Result<Session, String>>,
    tls: SharedTls,
    pool: Option<rayon::ThreadPool>,
}

/// Everything a user can set, with every default in one place.
#[derive(Clone, Debug)]
struct Settings {
    num_processes: Option<usize>,
    in_flight_per_worker: usize,
    retry: Option<RetryPolicy>,
    timeout: Duration,
    connect_timeout: Duration,
    allowed_hosts: Option<Arc<HashSet<String>>>,
    max_per_host: Option<usize>,
    per_host_rate: Option<f64>,
    max_body_bytes: u64,
    hooks: SessionHooks,
    on_progress: Option<ProgressHook>,
}

#[derive(Clone)]
struct ProgressHook(Arc<dyn Fn(&Progress<'_>) + Send + Sync>);

impl fmt::Debug for ProgressHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ProgressHook")
    }
}

/// What a [progress hook](FetcherBuilder::on_progress) is shown after each request.
#[derive(Debug)]
#[non_exhaustive]
pub struct Progress<'a> {
    /// Requests this fetcher has finished so far, this one included.
    pub done: u64,
    /// How many of those ended as exceptions.
    pub failed: u64,
    /// How this one ended.
    pub outcome: &'a FetchResult,
}

impl Settings {
    /// `true` if requests may go to `url`'s host.
    fn allows(&self, url: &Url) -> bool {
        host_allowed(self.allowed_hosts.as_deref(), url)
    }

    /// reqwest's default (up to 10 redirects), refusing hosts outside the allow-list.
    fn redirect_policy(&self) -> reqwest::redirect::Policy {
        let Some(hosts) = self.allowed_hosts.clone() else {
            return reqwest::redirect::Policy::default();
        };
        reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= 10 {
                attempt.error("too many redirects")
            } else if host_allowed(Some(&hosts), attempt.url()) {
                attempt.follow()
            } else {
                let refused = format!(
                    "redirect to {} refused: its host is not in the allow-list",
                    attempt.url()
                );
                attempt.error(refused)
            }
        })
    }
}

/// `true` if there is no allow-list, or `url`'s host is on it.
fn host_allowed(allowed: Option<&HashSet<String>>, url: &Url) -> bool {
    allowed.is_none_or(|hosts| {
        url.host_str()
            .is_some_and(|host| hosts.contains(&host.trim_matches(['[', ']']).to_ascii_lowercase()))
    })
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            num_processes: None,
            in_flight_per_worker: 1,
            retry: None,
            timeout: Fetcher::DEFAULT_TIMEOUT,
            connect_timeout: Fetcher::DEFAULT_CONNECT_TIMEOUT,
            allowed_hosts: None,
            max_per_host: None,
            per_host_rate: None,
            max_body_bytes: Fetcher::DEFAULT_MAX_BODY_BYTES,
            hooks: SessionHooks::default(),
            on_progress: None,
        }
    }
}

impl Fetcher {
    /// The timeout of a request, body included, unless set otherwise: 30 seconds.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

    /// The time allowed to open a connection, unless set otherwise: 10 seconds.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

    /// The largest response body read, unless set otherwise: 16 MiB.
    pub const DEFAULT_MAX_BODY_BYTES: u64 = 16 * 1024 * 1024;

    /// A fetcher with every default: no dedicated pool (work runs on the caller's rayon pool),
    /// default sessions, [`DEFAULT_TIMEOUT`](Self::DEFAULT_TIMEOUT) and
    /// [`DEFAULT_MAX_BODY_BYTES`](Self::DEFAULT_MAX_BODY_BYTES).
    pub fn new() -> Self {
        Self::from_settings(Settings::default(), None)
    }

    /// Starts configuring a fetcher.
    pub fn builder() -> FetcherBuilder {
        FetcherBuilder::default()
    }

    /// The process-wide fetcher that [`FetchAll::fetch`](crate::FetchAll::fetch) and
    /// [`FetchAll::fetch_all`](crate::FetchAll::fetch_all) use, created on first use with
    /// [`Fetcher::new`]'s defaults. Its sessions live until the process ends.
    pub fn global() -> &'static Fetcher {
        static GLOBAL: OnceLock<Fetcher> = OnceLock::new();
        GLOBAL.get_or_init(Fetcher::new)
    }

    fn from_settings(settings: Settings, pool: Option<rayon::ThreadPool>) -> Self {
        Self {
            shared: Arc::new(Shared {
                done: AtomicU64::new(0),
                failed: AtomicU64::new(0),
                host_limits: HostLimits::new(settings.max_per_host, settings.per_host_rate),
                settings,
                sessions: ThreadLocal::new(),
                tls: SharedTls::default(),
                pool,
            }),
        }
    }

    /// Sends one request with the calling thread's session and reads its body, the way every
    /// request of this crate is sent (checks, host limits, retries, timeout, body cap).
    ///
    /// It blocks the calling thread until the response is read or the timeout runs out.
    ///
    /// # Errors
    /// A [`ThreadException`] holding the request and the [`FetchError`] that stopped it. HTTP
    /// error statuses are not errors.
    ///
    /// ```no_run
    /// let fetcher = parfetch::Fetcher::new();
    /// match fetcher.execute("http://127.0.0.1:8080/health") {
    ///     Ok(response) => println!("{} {}", response.status(), response.text()),
    ///     Err(exception) => eprintln!("{exception}"),
    /// }
    /// ```
    pub fn execute(&self, request: impl Into<Request>) -> Result<ThreadResponse, ThreadException> {
        let request = request.into();
        // The request is checked before this thread's session is built for it.
        let ready = self.check(&request).and_then(|()| {
            self.session_here()
                .map_err(|reason| session_error(&request, reason))
        });
        match ready {
            Ok(session) => session.block_on(self.run(session, request)),
            Err(error) => self.unsent(request, error),
        }
    }

    /// What stops `request` before it is sent, if anything: its URL or its host.
    fn check(&self, request: &Request) -> Result<(), FetchError> {
        let url = request.checked_url()?;
        if !self.shared.settings.allows(url) {
            return Err(FetchError::HostNotAllowed {
                url: request.url().to_owned(),
                host: url.host_str().unwrap_or_default().to_owned(),
            });
        }
        Ok(())
    }

    /// Settles `request` unsent, failed with `error`.
    fn unsent(&self, request: Request, error: FetchError) -> FetchResult {
        self.finish(Err(ThreadException::new(request, error, 0)))
    }

    /// Sends every request, each worker of the current pool keeping up to
    /// `in_flight_per_worker` in flight and taking the next request as soon as one completes,
    /// and returns the outcomes in the order of `requests`.
    ///
    /// Workers pull requests one by one from a shared cursor rather than from fixed shares, so
    /// that no worker idles with an empty window while another still has a queue of its own.
    pub(crate) fn execute_all(&self, requests: &[Request]) -> Vec<FetchResult> {
        let window = self.in_flight_per_worker();
        let cursor = AtomicUsize::new(0);
        let outcomes: Vec<OnceLock<FetchResult>> = std::iter::repeat_with(OnceLock::new)
            .take(requests.len())
            .collect();
        self.install(|| {
            rayon::broadcast(|_| {
                let mut taken = std::iter::from_fn(|| {
                    let index = cursor.fetch_add(1, Ordering::Relaxed);
                    requests.get(index).map(|request| (index, request.clone()))
                })
                .peekable();
                // A worker left without work builds no session (runtime, client, user hooks).
                if taken.peek().is_none() {
                    return;
                }
                let settle = |index: usize, outcome| {
                    let _ = outcomes[index].set(outcome);
                };
                match self.session_here() {
                    // One `block_on` for the worker's whole share: its requests run side by
                    // side on its runtime, every one through `run`.
                    Ok(session) => session.block_on(
                        futures_util::stream::iter(taken)
                            .map(|(index, request)| async move {
                                let outcome = match self.check(&request) {
                                    Ok(()) => self.run(session, request).await,
                                    Err(error) => self.unsent(request, error),
                                };
                                (index, outcome)
                            })
                            .buffer_unordered(window)
                            .for_each(|(index, outcome)| {
                                settle(index, outcome);
                                std::future::ready(())
                            }),
                    ),
                    Err(reason) => {
                        for (index, request) in taken {
                            let error = self
                                .check(&request)
                                .err()
                                .unwrap_or_else(|| session_error(&request, reason));
                            settle(index, self.unsent(request, error));
                        }
                    }
                }
            });
        });
        outcomes
            .into_iter()
            .map(|outcome| {
                outcome
                    .into_inner()
                    .expect("every request was taken by a worker and got its outcome")
            })
            .collect()
    }

    /// This thread's session, built on first use, or why it cannot send. A failed build is
    /// kept too: the hooks are not run again for every item, and each item the thread takes
    /// reports the same reason.
    fn session_here(&self) -> Result<&Session, &str> {
        if let Some(reason) = crate::session::unusable_here() {
            return Err(reason);
        }
        let shared = &*self.shared;
        shared
            .sessions
            .get_or(|| {
                let settings = &shared.settings;
                Session::build(&settings.hooks, &shared.tls, |base| {
                    base.connect_timeout(settings.connect_timeout)
                        .redirect(settings.redirect_policy())
                })
            })
            .as_ref()
            .map_err(String::as_str)
    }

    /// Sends `request` on `session` until it succeeds or the retry policy gives up.
    async fn run(&self, session: &Session, request: Request) -> FetchResult {
        let settings = &self.shared.settings;
        let timeout = request.timeout_override().unwrap_or(settings.timeout);
        let started = Instant::now();
        let mut attempts = 0;
        loop {
            attempts += 1;
            let received = match request.checked_url() {
                Ok(url) => {
                    let _admission = self.shared.host_limits.admit(url).await;
                    session
                        .send(&request, url, timeout, settings.max_body_bytes)
                        .await
                }
                Err(error) => Err(error),
            };
            let outcome = match received {
                Ok(received) => Ok(ThreadResponse::new(
                    request.clone(),
                    received,
                    started.elapsed(),
                    attempts,
                )),
                Err(error) => Err(ThreadException::new(request.clone(), error, attempts)),
            };
            let retry = settings.retry.as_ref();
            match retry.and_then(|policy| policy.delay_before_retry(attempts, &outcome)) {
                Some(delay) => tokio::time::sleep(delay).await,
                None => return self.finish(outcome),
            }
        }
    }

    /// Counts a final outcome and shows it to the progress hook.
    fn finish(&self, outcome: FetchResult) -> FetchResult {
        let shared = &*self.shared;
        let done = shared.done.fetch_add(1, Ordering::Relaxed) + 1;
        let failed = if outcome.is_err() {
            shared.failed.fetch_add(1, Ordering::Relaxed) + 1
        } else {
            shared.failed.load(Ordering::Relaxed)
        };
        if let Some(ProgressHook(on_progress)) = &shared.settings.on_progress {
            let progress = Progress {
                done,
                failed,
                outcome: &outcome,
            };
            // A report must not cost the outcome: a hook that panics is skipped for this one.
            let _ = catch_unwind(AssertUnwindSafe(|| on_progress(&progress)));
        }
        outcome
    }

    /// How many requests this fetcher has finished, and how many of them failed, so far.
    pub fn progress(&self) -> (u64, u64) {
        (
            self.shared.done.load(Ordering::Relaxed),
            self.shared.failed.load(Ordering::Relaxed),
        )
    }

    /// How many requests each worker keeps in flight at once.
    pub(crate) fn in_flight_per_worker(&self) -> usize {
        self.shared.settings.in_flight_per_worker
    }

    /// The size of the dedicated pool, if [`num_processes`](FetcherBuilder::num_processes) was
    /// set.
    pub fn num_processes(&self) -> Option<usize> {
        self.shared.settings.num_processes
    }

    /// The number of sessions built so far: one per thread that has sent a request through this
    /// fetcher (including failed builds).
    pub fn session_count(&self) -> usize {
        self.shared.sessions.iter().count()
    }

    /// Runs `op` on the dedicated pool if there is one, else right here.
    pub(crate) fn install<R: Send>(&self, op: impl FnOnce() -> R + Send) -> R {
        match &self.shared.pool {
            Some(pool) => pool.install(op),
            None => op(),
        }
    }

    /// `true` if work must be moved into a dedicated pool: there is one and the calling thread
    /// is not one of its workers.
    pub(crate) fn is_outside_own_pool(&self) -> bool {
        self.shared
            .pool
            .as_ref()
            .is_some_and(|pool| pool.current_thread_index().is_none())
    }
}

impl Default for Fetcher {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let settings = &self.shared.settings;
        f.debug_struct("Fetcher")
            .field("num_processes", &settings.num_processes)
            .field("in_flight_per_worker", &settings.in_flight_per_worker)
            .field("retry", &settings.retry)
            .field("timeout", &settings.timeout)
            .field("connect_timeout", &settings.connect_timeout)
            .field("allowed_hosts", &settings.allowed_hosts)
            .field("max_per_host", &settings.max_per_host)
            .field("per_host_rate", &settings.per_host_rate)
            .field("max_body_bytes", &settings.max_body_bytes)
            .field("hooks", &settings.hooks)
            .field("sessions", &self.session_count())
            .field("tls", &self.shared.tls)
            .finish()
    }
}

/// Configures a [`Fetcher`]; made by [`Fetcher::builder`].
///
/// The session hooks are the three of `requests_toolbelt.threaded.Pool`, run in its order for
/// every new session: [`session`](Self::session) makes the base client builder,
/// [`initializer`](Self::initializer) configures it, [`auth_generator`](Self::auth_generator)
/// adds credentials. Unlike the original they run lazily, on each worker's first request, and a
/// hook that panics turns that worker's requests into [`FetchError::Session`] exceptions instead
/// of killing it.
///
/// ```
/// use std::time::Duration;
/// use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
///
/// let fetcher = parfetch::Fetcher::builder()
///     .num_processes(16)
///     .timeout(Duration::from_secs(5))
///     .max_body_bytes(1 << 20)
///     .initializer(|session| session.user_agent("etl/1.0"))
///     .auth_generator(|session| {
///         let mut headers = HeaderMap::new();
///         headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer s3cr3t"));
///         session.default_headers(headers)
///     })
///     .build()?;
/// assert_eq!(fetcher.num_processes(), Some(16));
/// # Ok::<(), parfetch::BuildError>(())
/// ```
#[derive(Debug, Default)]
#[must_use = "a builder does nothing until .build() is called"]
pub struct FetcherBuilder {
    settings: Settings,
}

impl FetcherBuilder {
    /// Runs requests on a dedicated rayon pool of `n` threads, built once by
    /// [`build`](Self::build) and used by every call with this fetcher. I/O-bound work wants
    /// many more threads than cores: each thread has one request in flight at a time.
    ///
    /// Unset, requests run on the caller's current rayon pool (the global one, sized to the
    /// number of cores, unless called inside `ThreadPool::install`).
    pub fn num_processes(mut self, n: usize) -> Self {
        self.settings.num_processes = Some(n);
        self
    }

    /// Lets each worker keep up to `k` requests in flight at once (default 1), driven together
    /// by its session's runtime: concurrency becomes `num_processes × k` without as many
    /// threads. A pool sized to the cores with `k` = 32 does the work of hundreds of threads for
    /// a fraction of their CPU and memory, and leaves the cores to the CPU work chained after
    /// [`fetch`](crate::FetchAll::fetch) in the same pipeline.
    ///
    /// With `k` > 1 the input's items are collected first, as they are (for `par_iter()` over a
    /// collection, a reference each), then made into requests and sent in batches of 64 windows
    /// per worker (`threads × k × 64` requests): in a batch, every worker takes the next request
    /// as soon as one of its own completes (so none idles while others still have work), and
    /// when the batch is done its outcomes, in input order, are handed to the adaptors that
    /// follow before the next batch is made. So the requests and responses of only one batch
    /// are held at once, unless the pipeline keeps them (as
    /// [`fetch_all`](crate::FetchAll::fetch_all) does); and a short-circuiting adaptor
    /// (`find_any`, `any`, ...) that is satisfied stops the batches after its own. `0` counts
    /// as 1. [`Pool`](crate::Pool) keeps one request in flight per thread.
    ///
    /// ```
    /// let fetcher = parfetch::Fetcher::builder()
    ///     .num_processes(2)
    ///     .in_flight_per_worker(32) // 64 requests in flight on 2 threads
    ///     .build()?;
    /// # Ok::<(), parfetch::BuildError>(())
    /// ```
    pub fn in_flight_per_worker(mut self, k: usize) -> Self {
        self.settings.in_flight_per_worker = k.max(1);
        self
    }

    /// Sends failed requests again, as `policy` says. Off by default: every request is sent
    /// once. Each attempt has the full [`timeout`](Self::timeout).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.settings.retry = Some(policy);
        self
    }

    /// Sets the timeout for each request, from connecting to the last byte of the body.
    /// [`Request::timeout`] overrides it per request.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.settings.timeout = timeout;
        self
    }

    /// Sets the time allowed to open a connection (TCP and TLS), within the request's
    /// [`timeout`](Self::timeout). A host that does not answer fails fast with
    /// [`FetchError::Connect`] instead of using up the whole timeout.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.settings.connect_timeout = timeout;
        self
    }

    /// Restricts requests, redirects included, to these hosts (names or IP addresses, without
    /// port; compared case-insensitively). A request to another host fails with
    /// [`FetchError::HostNotAllowed`] before anything is sent; a redirect to one fails with
    /// [`FetchError::Redirect`].
    ///
    /// ```
    /// let fetcher = parfetch::Fetcher::builder()
    ///     .allowed_hosts(["api.example.com", "127.0.0.1"])
    ///     .build()?;
    /// let exception = fetcher.execute("http://elsewhere.example/").unwrap_err();
    /// assert!(matches!(exception.error(), parfetch::FetchError::HostNotAllowed { .. }));
    /// # Ok::<(), parfetch::BuildError>(())
    /// ```
    pub fn allowed_hosts<H: AsRef<str>>(mut self, hosts: impl IntoIterator<Item = H>) -> Self {
        let hosts = hosts
            .into_iter()
            .map(|host| host.as_ref().trim_matches(['[', ']']).to_ascii_lowercase())
            .collect();
        self.settings.allowed_hosts = Some(Arc::new(hosts));
        self
    }

    /// At most `n` requests in flight to any one host at a time, across all workers (and
    /// retries). Waiting for a slot does not count towards a request's timeout. Hosts are told
    /// apart by name, not port.
    pub fn max_per_host(mut self, n: usize) -> Self {
        self.settings.max_per_host = Some(n.max(1));
        self
    }

    /// At most `requests_per_second` requests started to any one host, across all workers (and
    /// retries), evenly spaced. Waiting for a turn does not count towards a request's timeout.
    ///
    /// ```
    /// let polite = parfetch::Fetcher::builder()
    ///     .num_processes(32)
    ///     .max_per_host(4)
    ///     .per_host_rate(10.0)
    ///     .build()?;
    /// # Ok::<(), parfetch::BuildError>(())
    /// ```
    pub fn per_host_rate(mut self, requests_per_second: f64) -> Self {
        self.settings.per_host_rate = Some(requests_per_second);
        self
    }

    /// Calls `hook` after each request this fetcher finishes, on the worker that finished it,
    /// with the counts so far: for progress reports, metrics or logs. Keep it quick; it runs
    /// on the request path. Replaces any earlier hook (and [`progress_bar`](Self::progress_bar)).
    /// If it panics, the panic is caught and the outcome goes on as if nothing happened.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    /// use std::sync::Arc;
    ///
    /// let timeouts = Arc::new(AtomicU64::new(0));
    /// let counted = Arc::clone(&timeouts);
    /// let fetcher = parfetch::Fetcher::builder()
    ///     .on_progress(move |progress| {
    ///         if progress.outcome.as_ref().is_err_and(|e| e.error().is_timeout()) {
    ///             counted.fetch_add(1, Ordering::Relaxed);
    ///         }
    ///         if progress.done % 10_000 == 0 {
    ///             eprintln!("{} done, {} failed", progress.done, progress.failed);
    ///         }
    ///     })
    ///     .build()?;
    /// # Ok::<(), parfetch::BuildError>(())
    /// ```
    pub fn on_progress<F>(mut self, hook: F) -> Self
    where
        F: Fn(&Progress<'_>) + Send + Sync + 'static,
    {
        self.settings.on_progress = Some(ProgressHook(Arc::new(hook)));
        self
    }

    /// Advances `bar` by one for each request this fetcher finishes, with the number of
    /// failures as its message. Set the bar's length to the number of requests if you know it.
    ///
    /// ```
    /// use indicatif::ProgressBar;
    ///
    /// let urls: Vec<String> = Vec::new();
    /// let bar = ProgressBar::new(urls.len() as u64);
    /// let fetcher = parfetch::Fetcher::builder().progress_bar(bar.clone()).build()?;
    /// // urls.par_iter().fetch_all_with(&fetcher); bar.finish();
    /// # Ok::<(), parfetch::BuildError>(())
    /// ```
    #[cfg(feature = "progress")]
    pub fn progress_bar(self, bar: indicatif::ProgressBar) -> Self {
        self.on_progress(move |progress| {
            bar.inc(1);
            if progress.outcome.is_err() {
                bar.set_message(format!("{} failed", progress.failed));
            }
        })
    }

    /// Sets the largest response body to read; a larger one makes that request fail with
    /// [`FetchError::BodyTooLarge`].
    pub fn max_body_bytes(mut self, limit: u64) -> Self {
        self.settings.max_body_bytes = limit;
        self
    }

    /// Replaces the base client builder of each session: the original's `session` argument.
    ///
    /// parfetch's own base shares one TLS configuration between all sessions of the fetcher.
    /// A builder from this constructor is used as it is, so it makes its own TLS configuration
    /// for every session (a few milliseconds each).
    pub fn session<F>(mut self, constructor: F) -> Self
    where
        F: Fn() -> ClientBuilder + Send + Sync + 'static,
    {
        self.settings.hooks.session = Some(Arc::new(constructor));
        self
    }

    /// Configures each new session (headers, proxies, redirect policy, ...): the original's
    /// `initializer`. It gets the client builder and returns it, as the Python callback must
    /// return the session.
    ///
    /// The builder it gets carries the fetcher's shared TLS configuration, which TLS settings
    /// (extra root certificates, client identities) do not change: make those in a
    /// [`session`](Self::session) constructor.
    pub fn initializer<F>(mut self, initializer: F) -> Self
    where
        F: Fn(ClientBuilder) -> ClientBuilder + Send + Sync + 'static,
    {
        self.settings.hooks.initializer = Some(Arc::new(initializer));
        self
    }

    /// Gives each new session its credentials, after the initializer: the original's
    /// `auth_generator`. Per-request credentials go on the [`Request`] instead.
    ///
    /// Note that reqwest's `default_headers` replaces earlier default headers: set all of them
    /// in one hook.
    pub fn auth_generator<F>(mut self, auth_generator: F) -> Self
    where
        F: Fn(ClientBuilder) -> ClientBuilder + Send + Sync + 'static,
    {
        self.settings.hooks.auth_generator = Some(Arc::new(auth_generator));
        self
    }

    /// Builds the fetcher, starting its dedicated pool if one was asked for.
    ///
    /// # Errors
    /// [`BuildError::ZeroProcesses`] for `num_processes(0)`, [`BuildError::ThreadPool`] when
    /// the pool's threads cannot be started.
    pub fn build(self) -> Result<Fetcher, BuildError> {
        let pool = match self.settings.num_processes {
            None => None,
            Some(0) => return Err(BuildError::ZeroProcesses),
            Some(num_processes) => Some(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(num_processes)
                    .thread_name(|index| format!("parfetch-{index}"))
                    .build()
                    .map_err(|source| BuildError::ThreadPool {
                        num_processes,
                        source,
                    })?,
            ),
        };
        Ok(Fetcher::from_settings(self.settings, pool))
    }
}

/// The error of a request that this thread has no session to send with.
fn session_error(request: &Request, reason: &str) -> FetchError {
    FetchError::Session {
        url: request.url().to_owned(),
        reason: reason.to_owned(),
    }
}
