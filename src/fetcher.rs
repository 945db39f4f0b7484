//! [`Fetcher`]: configuration, the per-worker sessions, the worker threads, and the one path
//! every request takes (`Fetcher::run`), from [`Fetcher::execute`] or the engine's workers.

use std::collections::HashSet;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use reqwest::ClientBuilder;
use thread_local::ThreadLocal;
use tokio::sync::Semaphore;
use url::Url;

use crate::engine::{self, ToThread, Window};
use crate::idle::IdleBudget;
use crate::limits::HostLimits;
use crate::redirect::Hop;
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
/// ```
/// use std::time::Duration;
/// use parfetch::prelude::*;
/// use rayon::prelude::*;
///
/// # let base = parfetch::doc_support::serve(2);
/// let fetcher = parfetch::Fetcher::builder()
///     .num_processes(64)
///     .timeout(Duration::from_secs(10))
///     .build()?;
/// let urls = vec![format!("{base}/a"), format!("{base}/b")];
/// let (responses, exceptions) = urls.par_iter().fetch_all_with(&fetcher);
/// assert_eq!((responses.len(), exceptions.len()), (2, 0));
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
    /// The worker threads, started by `build` when `num_processes` was set, else on first use.
    pool: OnceLock<Result<rayon::ThreadPool, String>>,
    threads: usize,
    concurrency: usize,
    /// Requests sending or reading a body, across every caller: `concurrency` permits.
    in_flight: Semaphore,
    /// Requests the engine's workers have taken from an input and not handed on yet.
    taken: Arc<Semaphore>,
    /// Origins the sessions may keep a connection open to between requests.
    idle_budget: IdleBudget,
    max_idle_connections: usize,
}

/// Everything a user can set, with every default in one place.
#[derive(Clone, Debug)]
struct Settings {
    num_processes: Option<usize>,
    concurrency: Option<usize>,
    retry: Option<RetryPolicy>,
    timeout: Duration,
    connect_timeout: Duration,
    allowed_hosts: Option<Arc<HashSet<String>>>,
    /// An allow-list entry that is no host, refused by `build`.
    invalid_allowed_host: Option<String>,
    proxy: ProxySetting,
    max_per_host: Option<usize>,
    per_host_rate: Option<f64>,
    max_body_bytes: u64,
    max_redirects: usize,
    /// `None`: `idle::default_budget()`, from the open-file limit.
    max_idle_connections: Option<usize>,
    /// Headers that go along on redirects to other origins, beyond `redirect::SAFE_HEADERS`.
    redirect_keeps: Vec<reqwest::header::HeaderName>,
    /// A `redirect_keeps_header` name that is no header name, refused by `build`.
    invalid_redirect_header: Option<String>,
    hooks: SessionHooks,
    on_progress: Option<ProgressHook>,
}

#[derive(Clone)]
struct ProgressHook(Arc<ProgressFn>);

type ProgressFn = dyn Fn(Progress, &FetchResult) + Send + Sync;

impl fmt::Debug for ProgressHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ProgressHook")
    }
}

/// A fetcher's counts of finished requests: from [`Fetcher::progress`], and shown to a
/// [progress hook](FetcherBuilder::on_progress) after each request.
///
/// ```
/// let fetcher = parfetch::Fetcher::new();
/// let _ = fetcher.execute("not a url");
/// let progress = fetcher.progress();
/// assert_eq!((progress.done, progress.failed), (1, 1));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Progress {
    /// Requests finished so far (the one just finished included, in a hook).
    pub done: u64,
    /// How many of those ended as exceptions.
    pub failed: u64,
}

impl Settings {
    /// The worker threads: `num_processes`, or one per core.
    fn threads(&self) -> usize {
        self.num_processes.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(2, std::num::NonZero::get)
        })
    }

    /// Requests in flight: `concurrency`, or `num_processes` set alone, or the default.
    fn concurrency(&self) -> usize {
        self.concurrency
            .or(self.num_processes)
            .unwrap_or(Fetcher::DEFAULT_CONCURRENCY)
    }

    /// `true` if requests may go to `url`'s host.
    fn allows(&self, url: &Url) -> bool {
        host_allowed(self.allowed_hosts.as_deref(), url)
    }

    /// The fetcher's own client settings, applied to a session's base builder before the
    /// hooks run.
    fn client_settings(&self, base: ClientBuilder) -> ClientBuilder {
        let base = base
            .connect_timeout(self.connect_timeout)
            // A server that does not acknowledge the bytes of a request within the
            // connect timeout is as unreachable as one that does not accept it.
            .tcp_user_timeout(self.connect_timeout)
            // The idle budget's bookings lapse on this clock (see `crate::idle`).
            .pool_idle_timeout(crate::idle::IDLE_TIMEOUT)
            // The original sends no Referer, and a URL's query may hold a key.
            .referer(false);
        match &self.proxy {
            ProxySetting::FromEnvironment => base,
            ProxySetting::Off => base.no_proxy(),
            ProxySetting::To(proxy) => match proxy.as_ref() {
                Ok((proxy, _)) => base.proxy(proxy.clone()),
                // Refused by `build`.
                Err(_) => base,
            },
        }
    }
}

/// Where requests go on their way to their hosts.
#[derive(Clone, Debug)]
enum ProxySetting {
    /// The proxies the environment names (`HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`, lower case
    /// too), except for the hosts `NO_PROXY` names: what curl and requests do.
    FromEnvironment,
    /// Straight to the hosts, whatever the environment says.
    Off,
    /// Every request through this proxy (`Err`: the URL given, refused by `build`).
    To(Box<Result<(reqwest::Proxy, String), String>>),
}

/// The environment variables that name proxies, in the order reqwest reads them.
const PROXY_VARIABLES: [&str; 6] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// `true` if there is no allow-list, or `url`'s host is on it.
fn host_allowed(allowed: Option<&HashSet<String>>, url: &Url) -> bool {
    allowed.is_none_or(|hosts| {
        url.host()
            .is_some_and(|host| hosts.contains(&canonical_host(host)))
    })
}

/// A host as the allow-list compares it: a name in its ASCII (IDNA) form, lower case, without a
/// trailing dot; an IPv4 address in dotted form, also when it comes as an IPv4-mapped IPv6
/// address; an IPv6 address in its compressed form.
fn canonical_host(host: url::Host<&str>) -> String {
    match host {
        url::Host::Domain(name) => name.trim_end_matches('.').to_ascii_lowercase(),
        url::Host::Ipv4(ip) => ip.to_string(),
        url::Host::Ipv6(ip) => match ip.to_ipv4_mapped() {
            Some(ip) => ip.to_string(),
            None => ip.to_string(),
        },
    }
}

/// An allow-list entry in the form URLs' hosts are compared in, parsed as a URL's host is
/// (IDNA, IPv4 forms such as `0x7f.1`); `None` if it is no host at all.
fn canonical_entry(entry: &str) -> Option<String> {
    let entry = entry.trim();
    let bare = match entry.strip_prefix('[') {
        Some(rest) => rest.strip_suffix(']')?,
        None => entry,
    };
    if let Ok(ip) = bare.parse::<std::net::Ipv6Addr>() {
        return Some(canonical_host(url::Host::Ipv6(ip)));
    }
    match url::Host::parse(entry).ok()? {
        url::Host::Domain(name) if name.trim_end_matches('.').is_empty() => None,
        host => Some(canonical_host(match &host {
            url::Host::Domain(name) => url::Host::Domain(name.as_str()),
            url::Host::Ipv4(ip) => url::Host::Ipv4(*ip),
            url::Host::Ipv6(ip) => url::Host::Ipv6(*ip),
        })),
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            num_processes: None,
            concurrency: None,
            retry: None,
            timeout: Fetcher::DEFAULT_TIMEOUT,
            connect_timeout: Fetcher::DEFAULT_CONNECT_TIMEOUT,
            allowed_hosts: None,
            invalid_allowed_host: None,
            proxy: ProxySetting::FromEnvironment,
            max_per_host: None,
            per_host_rate: None,
            max_body_bytes: Fetcher::DEFAULT_MAX_BODY_BYTES,
            max_redirects: Fetcher::DEFAULT_MAX_REDIRECTS,
            max_idle_connections: None,
            redirect_keeps: Vec::new(),
            invalid_redirect_header: None,
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

    /// The most redirects a request follows unless told otherwise: 10, as reqwest and browsers.
    /// See [`FetcherBuilder::max_redirects`].
    pub const DEFAULT_MAX_REDIRECTS: usize = 10;

    /// The most redirects a fetcher may be told to follow: 100 (curl's default is 50).
    pub const MAX_REDIRECTS: usize = 100;

    /// The number of requests a fetcher keeps in flight unless told otherwise: 64, near curl
    /// `--parallel`'s 50 and httpx's 100. See [`FetcherBuilder::concurrency`].
    pub const DEFAULT_CONCURRENCY: usize = 64;

    /// The most [`max_idle_connections`](FetcherBuilder::max_idle_connections) accepts.
    pub const MAX_IDLE_CONNECTIONS: usize = 1 << 20;

    /// The most requests in flight a fetcher accepts: each may hold a socket, and a process
    /// usually may open 1,024 files unless its limit is raised.
    pub const MAX_CONCURRENCY: usize = 10_000;

    /// The most body bytes that outcomes waiting for an earlier one may hold where order is
    /// kept (see [`FetchAll::fetch`](crate::FetchAll::fetch)): 64 MiB. Past it, the input is
    /// read further only for the oldest outcomes still missing.
    pub const REORDER_WINDOW_BYTES: usize = 64 << 20;

    /// How many times an idempotent request is sent again, whatever the retry policy, when the
    /// server never acknowledged its bytes within the connect timeout (a connection the server's
    /// full accept queue dropped before it was ever accepted).
    const UNHEARD_RESENDS: u32 = 2;

    /// The most worker threads a fetcher accepts. Requests in flight are set with
    /// [`concurrency`](FetcherBuilder::concurrency), not with threads.
    pub const MAX_THREADS: usize = 1_024;

    /// A fetcher with every default: one worker thread per core (started on first use),
    /// [`DEFAULT_CONCURRENCY`](Self::DEFAULT_CONCURRENCY) requests in flight, default sessions,
    /// [`DEFAULT_TIMEOUT`](Self::DEFAULT_TIMEOUT) and
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
        let threads = settings.threads();
        let concurrency = settings.concurrency();
        let max_idle_connections = settings
            .max_idle_connections
            .unwrap_or_else(crate::idle::default_budget);
        let started = OnceLock::new();
        if let Some(pool) = pool {
            let _ = started.set(Ok(pool));
        }
        Self {
            shared: Arc::new(Shared {
                done: AtomicU64::new(0),
                failed: AtomicU64::new(0),
                host_limits: HostLimits::new(settings.max_per_host, settings.per_host_rate),
                settings,
                sessions: ThreadLocal::new(),
                tls: SharedTls::default(),
                pool: started,
                threads,
                concurrency,
                in_flight: Semaphore::new(concurrency),
                taken: Arc::new(Semaphore::new(concurrency.saturating_mul(2))),
                idle_budget: IdleBudget::new(max_idle_connections),
                max_idle_connections,
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
    /// ```
    /// # let base = parfetch::doc_support::serve(1);
    /// let fetcher = parfetch::Fetcher::new();
    /// match fetcher.execute(format!("{base}/health")) {
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
            Ok(session) => session.block_on(self.run_caught(session, request)),
            Err(error) => self.unsent(request, error),
        }
    }

    /// What stops `request` before it is sent, if anything: its URL or its host.
    pub(crate) fn check(&self, request: &Request) -> Result<(), FetchError> {
        let url = request.checked_url()?;
        if !self.shared.settings.allows(url) {
            return Err(FetchError::HostNotAllowed {
                url: request.url_for_messages().into_owned(),
                host: url.host_str().unwrap_or_default().to_owned(),
            });
        }
        Ok(())
    }

    /// Settles `request` unsent, failed with `error`.
    pub(crate) fn unsent(&self, request: Request, error: FetchError) -> FetchResult {
        self.finish(Err(ThreadException::new(request, error, 0)))
    }

    /// Checks and sends `request` on this worker's session, which the engine built before it
    /// spawned the request as a task of the session's runtime.
    pub(crate) async fn fetch_here(&self, request: Request) -> FetchResult {
        if let Err(error) = self.check(&request) {
            return self.unsent(request, error);
        }
        match self.shared.sessions.get() {
            Some(Ok(session)) => self.run_caught(session, request).await,
            Some(Err(reason)) => {
                let error = session_error(&request, reason);
                self.unsent(request, error)
            }
            None => {
                let error = session_error(&request, "the worker has no session");
                self.unsent(request, error)
            }
        }
    }

    /// This thread's session, built on first use, or why it cannot send. A failed build is
    /// kept too: the hooks are not run again for every item, and each item the thread takes
    /// reports the same reason.
    pub(crate) fn session_here(&self) -> Result<&Session, &str> {
        if let Some(reason) = crate::session::unusable_here() {
            return Err(reason);
        }
        let shared = &*self.shared;
        shared
            .sessions
            .get_or(|| {
                let settings = &shared.settings;
                Session::build(&settings.hooks, &shared.tls, self.session_slots(), |base| {
                    settings.client_settings(base)
                })
            })
            .as_ref()
            .map_err(String::as_str)
    }

    /// [`run`](Self::run), with a panic inside (a callback that a session hook installed, say)
    /// ending that item as [`FetchError::Panicked`] instead of losing it.
    async fn run_caught(&self, session: &Session, request: Request) -> FetchResult {
        use futures_util::FutureExt;
        let kept = request.clone();
        std::panic::AssertUnwindSafe(self.run(session, request))
            .catch_unwind()
            .await
            .unwrap_or_else(|payload| {
                let error = FetchError::Panicked {
                    url: kept.url_for_messages().into_owned(),
                    message: crate::session::panic_message(payload.as_ref()).to_owned(),
                };
                self.finish(Err(ThreadException::new(kept, error, 1)))
            })
    }

    /// Sends `request` on `session`, following its redirects hop by hop, until a hop answers
    /// with a response or the retry policy gives up on one.
    ///
    /// Each hop is a request of its own to its host: it takes that host's slot and turn, then an
    /// in-flight slot, and the retry policy applies to it alone (a failed hop is sent again, not
    /// the chain). The hops of one pass share the request's timeout; a retry has all of it again.
    async fn run(&self, session: &Session, request: Request) -> FetchResult {
        let settings = &self.shared.settings;
        let timeout = request.timeout_override().unwrap_or(settings.timeout);
        let started = Instant::now();
        let first_url = match request.checked_url() {
            Ok(url) => url.clone(),
            Err(error) => return self.finish(Err(ThreadException::new(request, error, 0))),
        };
        let url_for_messages = request.url_for_messages().into_owned();
        let mut hop = Hop::first(&request, &first_url);
        let mut budget = timeout;
        // Times a hop was sent; `sends - hop.number` are the request's attempts.
        let mut sends = 0;
        let mut hop_attempts = 0;
        let mut unheard = 0;
        loop {
            sends += 1;
            hop_attempts += 1;
            let received = {
                // The host's slot and turn first: a request waiting for them holds no
                // in-flight slot, so requests to other hosts go on meanwhile.
                let _admission = session
                    .waiting_for(self.shared.host_limits.admit(&hop.url))
                    .await;
                let _slot = session.slots.acquire().await;
                let _in_flight = self.shared.in_flight.acquire().await;
                let sending = Instant::now();
                let received = match self.hop_request(session, &request, &first_url, &hop) {
                    Ok((client, outgoing)) => {
                        let limits = (budget, timeout);
                        Session::send(
                            client,
                            outgoing,
                            &url_for_messages,
                            limits,
                            settings.max_body_bytes,
                        )
                        .await
                    }
                    Err(error) => Err(error),
                };
                budget = budget.saturating_sub(sending.elapsed());
                received
            };
            let attempts = sends - u32::try_from(hop.number).unwrap_or(u32::MAX);
            if let Ok(answer) = &received {
                let allowed = |url: &Url| settings.allows(url);
                match hop.next(
                    answer.status,
                    &answer.headers,
                    &first_url,
                    settings.max_redirects,
                    allowed,
                ) {
                    Ok(Some(next)) => {
                        hop = next;
                        (hop_attempts, unheard) = (0, 0);
                        continue;
                    }
                    Ok(None) => {}
                    Err(reason) => {
                        let error = FetchError::Redirect {
                            url: url_for_messages,
                            reason,
                        };
                        return self.finish(Err(ThreadException::new(request, error, attempts)));
                    }
                }
            }
            let outcome = match received {
                Ok(received) => Ok(ThreadResponse::new(
                    request.clone(),
                    received,
                    started.elapsed(),
                    attempts,
                )),
                Err(error) => Err(ThreadException::new(request.clone(), error, attempts)),
            };
            // The server never acknowledged the request (a full accept queue drops connections
            // it has not accepted yet): nothing reached it, so an idempotent request is sent
            // again at once, whatever the retry policy says.
            if outcome
                .as_ref()
                .is_err_and(|e| e.error().was_never_acknowledged())
                && crate::retry::is_idempotent(&hop.method)
                && unheard < Self::UNHEARD_RESENDS
            {
                unheard += 1;
                continue;
            }
            let retry = settings.retry.as_ref();
            match retry.and_then(|policy| policy.delay_before_retry(hop_attempts, &outcome)) {
                Some(delay) => {
                    session.waiting_for(tokio::time::sleep(delay)).await;
                    budget = timeout;
                }
                None => return self.finish(outcome),
            }
        }
    }

    /// The client that sends `hop` of `request` and what it sends (see `crate::redirect`).
    fn hop_request<'s>(
        &self,
        session: &'s Session,
        request: &Request,
        first_url: &Url,
        hop: &Hop,
    ) -> Result<(&'s reqwest::Client, reqwest::Request), FetchError> {
        let shared = &*self.shared;
        let settings = &shared.settings;
        let client = session
            .client_for(hop.same_origin, &shared.tls, |base| {
                settings.client_settings(base)
            })
            .map_err(|reason| session_error(request, &reason))?;
        let built = session.client_request(request, first_url)?;
        let mut outgoing = hop.outgoing(request, built, &settings.redirect_keeps);
        if !session.kept.keep(
            outgoing.url(),
            &shared.idle_budget,
            std::time::Instant::now(),
        ) {
            // Over the idle budget: this connection ends with its response.
            outgoing.headers_mut().insert(
                reqwest::header::CONNECTION,
                reqwest::header::HeaderValue::from_static("close"),
            );
        }
        Ok((client, outgoing))
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
            let progress = Progress { done, failed };
            // A report must not cost the outcome: a hook that panics is skipped for this one.
            let _ = catch_unwind(AssertUnwindSafe(|| on_progress(progress, &outcome)));
        }
        outcome
    }

    /// How many requests this fetcher has finished, and how many of them failed, so far.
    pub fn progress(&self) -> Progress {
        Progress {
            done: self.shared.done.load(Ordering::Relaxed),
            failed: self.shared.failed.load(Ordering::Relaxed),
        }
    }

    /// The most origins this fetcher keeps connections open to between requests (see
    /// [`FetcherBuilder::max_idle_connections`]).
    pub fn max_idle_connections(&self) -> usize {
        self.shared.max_idle_connections
    }

    /// The size of the dedicated pool, if [`num_processes`](FetcherBuilder::num_processes) was
    /// set.
    pub fn num_processes(&self) -> Option<usize> {
        self.shared.settings.num_processes
    }

    /// The number of requests this fetcher keeps in flight at most, across all its callers
    /// (see [`FetcherBuilder::concurrency`]).
    ///
    /// ```
    /// assert_eq!(parfetch::Fetcher::new().concurrency(), parfetch::Fetcher::DEFAULT_CONCURRENCY);
    /// let fetcher = parfetch::Fetcher::builder().num_processes(8).build()?;
    /// assert_eq!(fetcher.concurrency(), 8);
    /// # Ok::<(), parfetch::BuildError>(())
    /// ```
    pub fn concurrency(&self) -> usize {
        self.shared.concurrency
    }

    /// The number of worker threads this fetcher sends its requests from.
    pub fn threads(&self) -> usize {
        self.shared.threads
    }

    /// The proxies this fetcher's requests may go through, each as its URL (a password in it
    /// redacted) and where it comes from: the builder's [`proxy`](FetcherBuilder::proxy), or
    /// the environment variable that names it. Empty when requests go straight to their hosts.
    /// A session hook that sets proxies of its own is not seen here.
    ///
    /// ```
    /// let fetcher = parfetch::Fetcher::builder()
    ///     .proxy("http://user:pw@proxy.internal:3128")
    ///     .build()?;
    /// assert_eq!(fetcher.proxies(), ["http://user:***@proxy.internal:3128 (proxy setting)"]);
    /// let direct = parfetch::Fetcher::builder().no_proxy().build()?;
    /// assert!(direct.proxies().is_empty());
    /// # Ok::<(), parfetch::BuildError>(())
    /// ```
    pub fn proxies(&self) -> Vec<String> {
        match &self.shared.settings.proxy {
            ProxySetting::Off => Vec::new(),
            ProxySetting::To(proxy) => match proxy.as_ref() {
                Ok((_, url)) => vec![format!("{} (proxy setting)", crate::redact::url(url))],
                Err(_) => Vec::new(),
            },
            ProxySetting::FromEnvironment => PROXY_VARIABLES
                .iter()
                .filter_map(|name| {
                    let value = std::env::var(name).ok().filter(|value| !value.is_empty())?;
                    Some(format!("{} ({name})", crate::redact::url(&value)))
                })
                .collect(),
        }
    }

    /// The worker threads, started on first use unless `build` started them.
    pub(crate) fn workers(&self) -> Result<&rayon::ThreadPool, &str> {
        let shared = &*self.shared;
        shared
            .pool
            .get_or_init(|| start_pool(shared.threads).map_err(|error| error.to_string()))
            .as_ref()
            .map_err(String::as_str)
    }

    /// How many outcomes may wait for an earlier one where order is kept: 256 per request in
    /// flight (at most 65,536, at least two per request in flight), so that a slow request lets
    /// the others go on for a long while before the input stops. Their bodies are bounded too,
    /// by [`REORDER_WINDOW_BYTES`](Self::REORDER_WINDOW_BYTES).
    pub(crate) fn reorder_window(&self) -> usize {
        let concurrency = self.shared.concurrency;
        concurrency
            .saturating_mul(256)
            .min(1 << 16)
            .max(concurrency.saturating_mul(2))
    }

    /// Fetches the requests of a plain iterator, taking the next one whenever a slot frees
    /// up, and calls `each` on the calling thread with every outcome as soon as it completes.
    ///
    /// This is the streaming form for sequential sources, such as the lines of a file or a
    /// channel: the iterator is read on a thread of its own, only as fast as slots free up, and
    /// outcomes are handed on as they complete, also while the iterator waits for its next item.
    /// Memory stays bounded by what is in flight, however long the input.
    ///
    /// ```
    /// # let base = parfetch::doc_support::serve(3);
    /// use std::io::BufRead;
    ///
    /// let lines = format!("{base}/a\n{base}/b\n{base}/c\n");
    /// let urls = std::io::Cursor::new(lines).lines().map_while(Result::ok);
    /// let mut statuses = Vec::new();
    /// parfetch::Fetcher::new().for_each_completed(urls, |outcome| {
    ///     statuses.push(outcome.map(|response| response.status().as_u16()).unwrap_or(0));
    /// });
    /// assert_eq!(statuses, [200, 200, 200]);
    /// ```
    ///
    /// # Panics
    /// If `each` or the iterator panics, after the requests in flight have ended.
    pub fn for_each_completed<I, F>(&self, requests: I, each: F)
    where
        I: IntoIterator<IntoIter: Send, Item: Into<Request>>,
        F: FnMut(FetchResult),
    {
        self.for_each_outcome(requests, false, continuing(each));
    }

    /// Like [`for_each_completed`](Self::for_each_completed), but calls `each` in the order of
    /// the input. An outcome that completes before an earlier one waits for it, and the input is
    /// not read further while the reorder window is full (256 outcomes per request in flight):
    /// a request that takes long slows the others down only once that window is full.
    ///
    /// ```
    /// # let base = parfetch::doc_support::serve(100);
    /// let urls = (0..100).map(|i| format!("{base}/item/{i}"));
    /// let mut paths = Vec::new();
    /// parfetch::Fetcher::new().for_each_in_order(urls, |outcome| match outcome {
    ///     Ok(response) => paths.push(response.url().path().to_owned()),
    ///     Err(exception) => eprintln!("{exception}"),
    /// });
    /// assert_eq!(paths[99], "/item/99"); // in input order
    /// ```
    ///
    /// # Panics
    /// As [`for_each_completed`](Self::for_each_completed).
    pub fn for_each_in_order<I, F>(&self, requests: I, each: F)
    where
        I: IntoIterator<IntoIter: Send, Item: Into<Request>>,
        F: FnMut(FetchResult),
    {
        self.for_each_outcome(requests, true, continuing(each));
    }

    /// Like [`for_each_completed`](Self::for_each_completed), with each outcome's position in
    /// the input (from 0), and a way to stop: when `each` returns
    /// [`ControlFlow::Break`](std::ops::ControlFlow::Break), no further request is sent, the
    /// input is not read further, and the call returns as soon as the requests in flight are
    /// abandoned. A consumer whose output has gone (a closed pipe) stops the sending at once.
    ///
    /// ```
    /// # let base = parfetch::doc_support::serve(usize::MAX);
    /// use std::ops::ControlFlow;
    ///
    /// let urls = (0..1_000).map(|i| format!("{base}/{i}"));
    /// let fetcher = parfetch::Fetcher::builder().concurrency(4).build()?;
    /// let mut seen = Vec::new();
    /// fetcher.try_for_each_completed(urls, |position, outcome| {
    ///     assert!(outcome.is_ok());
    ///     seen.push(position);
    ///     if seen.len() == 3 { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
    /// });
    /// assert_eq!(seen.len(), 3);
    /// assert!(seen.iter().all(|&position| position < 1_000));
    /// # Ok::<(), parfetch::BuildError>(())
    /// ```
    ///
    /// # Panics
    /// As [`for_each_completed`](Self::for_each_completed).
    pub fn try_for_each_completed<I, F>(&self, requests: I, each: F)
    where
        I: IntoIterator<IntoIter: Send, Item: Into<Request>>,
        F: FnMut(usize, FetchResult) -> std::ops::ControlFlow<()>,
    {
        self.for_each_outcome(requests, false, each);
    }

    /// Like [`for_each_in_order`](Self::for_each_in_order), with each outcome's position in the
    /// input and a way to stop, as [`try_for_each_completed`](Self::try_for_each_completed).
    ///
    /// # Panics
    /// As [`for_each_completed`](Self::for_each_completed).
    pub fn try_for_each_in_order<I, F>(&self, requests: I, each: F)
    where
        I: IntoIterator<IntoIter: Send, Item: Into<Request>>,
        F: FnMut(usize, FetchResult) -> std::ops::ControlFlow<()>,
    {
        self.for_each_outcome(requests, true, each);
    }

    /// Streams `requests` through the engine, handing each outcome and its position in the input
    /// to `each` on this thread until it breaks: then the jobs not started are dropped and the
    /// call ends as soon as the requests in flight are abandoned.
    pub(crate) fn for_each_outcome<I, F>(&self, requests: I, in_order: bool, mut each: F)
    where
        I: IntoIterator<IntoIter: Send, Item: Into<Request>>,
        F: FnMut(usize, FetchResult) -> std::ops::ControlFlow<()>,
    {
        let requests = requests.into_iter();
        let Some(pool) = self.workers_for_call() else {
            for (position, request) in requests.enumerate() {
                if each(position, self.execute(request)).is_break() {
                    break;
                }
            }
            return;
        };
        let window = in_order.then(|| (Arc::new(Window::default()), self.reorder_window()));
        let (sender, outcomes) = std::sync::mpsc::sync_channel(self.concurrency());
        let sink = ToThread::new(sender, window.clone());
        std::thread::scope(|scope| {
            let feeding = scope.spawn(move || {
                engine::run(self, pool, &sink, |inlet| {
                    for request in requests {
                        if !inlet.push(request.into()) {
                            break;
                        }
                    }
                });
            });
            let _streaming = Streaming::new(self);
            // If `each` panics, the feed must not wait for a window that no longer moves.
            let release = window
                .as_ref()
                .map(|(window, _)| CloseWindow(Arc::clone(window)));
            match &window {
                None => {
                    for (position, outcome) in outcomes.iter() {
                        if each(position, outcome).is_break() {
                            break;
                        }
                    }
                }
                Some((window, _)) => {
                    let mut waiting = std::collections::BTreeMap::new();
                    let mut waiting_bytes = 0;
                    let mut next = 0;
                    'outcomes: for (index, outcome) in outcomes.iter() {
                        waiting_bytes += engine::body_len(&outcome);
                        waiting.insert(index, outcome);
                        window.advance(next, waiting_bytes);
                        while let Some(outcome) = waiting.remove(&next) {
                            waiting_bytes -= engine::body_len(&outcome);
                            if each(next, outcome).is_break() {
                                break 'outcomes;
                            }
                            next += 1;
                            window.advance(next, waiting_bytes);
                        }
                    }
                }
            }
            // The workers' next hand-over fails, and the call stops.
            drop(outcomes);
            drop(release);
            if let Err(panic) = feeding.join() {
                std::panic::resume_unwind(panic);
            }
        });
    }

    /// How many requests a session on this thread may send at once: a worker's even share of
    /// the concurrency; any other thread's session, all of it.
    pub(crate) fn session_slots(&self) -> usize {
        if self.is_own_worker() {
            self.shared.concurrency.div_ceil(self.shared.threads)
        } else {
            self.shared.concurrency
        }
    }

    /// The engine's permits for requests taken from an input and not yet handed on.
    pub(crate) fn taken_permits(&self) -> Arc<Semaphore> {
        Arc::clone(&self.shared.taken)
    }

    /// The number of sessions built so far: one per thread that has sent a request through this
    /// fetcher (including failed builds).
    pub fn session_count(&self) -> usize {
        self.shared.sessions.iter().count()
    }

    /// `true` where a call would wait for this fetcher's workers while they wait for it: on one
    /// of its workers (an adaptor that follows a fetch with this fetcher and calls it again), or
    /// in the closure of one of its [`for_each_completed`](Self::for_each_completed) streams.
    /// Such calls send their requests from the calling thread, one at a time.
    pub(crate) fn is_inside_own_call(&self) -> bool {
        self.is_own_worker() || STREAMING.with(|streams| streams.borrow().contains(&self.id()))
    }

    /// `true` on one of this fetcher's worker threads.
    fn is_own_worker(&self) -> bool {
        self.shared
            .pool
            .get()
            .and_then(|pool| pool.as_ref().ok())
            .is_some_and(|pool| pool.current_thread_index().is_some())
    }

    /// The worker threads a call sends through, or `None` if it must send from the calling
    /// thread, one at a time: inside one of this fetcher's own calls (see
    /// `is_inside_own_call`), or when its worker threads could not be started.
    pub(crate) fn workers_for_call(&self) -> Option<&rayon::ThreadPool> {
        if self.is_inside_own_call() {
            return None;
        }
        self.workers().ok()
    }

    /// Tells this fetcher apart from others while it lives.
    fn id(&self) -> usize {
        Arc::as_ptr(&self.shared) as usize
    }
}

/// Starts `threads` worker threads.
fn start_pool(threads: usize) -> Result<rayon::ThreadPool, BuildError> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|index| format!("parfetch-{index}"))
        .build()
        .map_err(|error| BuildError::ThreadPool {
            num_processes: threads,
            error,
        })
}

thread_local! {
    /// The fetchers whose stream's closure runs on this thread (see `is_inside_own_call`).
    static STREAMING: std::cell::RefCell<Vec<usize>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Marks the calling thread as running the closure of a fetcher's stream, until dropped.
struct Streaming(usize);

impl Streaming {
    fn new(fetcher: &Fetcher) -> Self {
        STREAMING.with(|streams| streams.borrow_mut().push(fetcher.id()));
        Self(fetcher.id())
    }
}

impl Drop for Streaming {
    fn drop(&mut self) {
        STREAMING.with(|streams| {
            let mut streams = streams.borrow_mut();
            if let Some(position) = streams.iter().rposition(|id| *id == self.0) {
                streams.remove(position);
            }
        });
    }
}

/// `each`, never asking to stop.
fn continuing(
    mut each: impl FnMut(FetchResult),
) -> impl FnMut(usize, FetchResult) -> std::ops::ControlFlow<()> {
    move |_, outcome| {
        each(outcome);
        std::ops::ControlFlow::Continue(())
    }
}

/// Closes an ordered window when its consumer is done, even by a panic.
struct CloseWindow(Arc<Window>);

impl Drop for CloseWindow {
    fn drop(&mut self) {
        self.0.close();
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
            .field("threads", &self.shared.threads)
            .field("concurrency", &self.shared.concurrency)
            .field("retry", &settings.retry)
            .field("timeout", &settings.timeout)
            .field("connect_timeout", &settings.connect_timeout)
            .field("allowed_hosts", &settings.allowed_hosts)
            .field("max_per_host", &settings.max_per_host)
            .field("per_host_rate", &settings.per_host_rate)
            .field("max_body_bytes", &settings.max_body_bytes)
            .field("max_redirects", &settings.max_redirects)
            .field("max_idle_connections", &self.shared.max_idle_connections)
            .field("redirect_keeps", &settings.redirect_keeps)
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
    /// Sends requests from a dedicated pool of `n` worker threads, started by
    /// [`build`](Self::build), each with its own session: the original's `num_processes`.
    /// Set alone, it also sets [`concurrency`](Self::concurrency) to `n`, so that a user of the
    /// original who asks for 64 gets 64 requests in flight, as there.
    ///
    /// Unset, a fetcher has one worker thread per core, started on its first call. Threads do
    /// not need to grow with the requests in flight: each keeps many of them going at once.
    /// At most [`Fetcher::MAX_THREADS`].
    ///
    /// # Threads, workers and processes
    ///
    /// The words as parfetch's documentation and the command's help use them:
    /// - a **worker** (or worker thread) is one of a fetcher's own threads; it holds one
    ///   session and keeps many requests in flight at once;
    /// - **threads**, counted, are those workers: [`Fetcher::threads`], the command's
    ///   `--threads`; the threads of the caller (a rayon pool, a plain thread) only feed them;
    /// - a **process** is an operating-system process, such as the command: this setter keeps
    ///   the original's name, where `num_processes` also counted threads, and parfetch never
    ///   starts a process;
    /// - **requests in flight** ([`concurrency`](Self::concurrency), the command's `-j`) are
    ///   counted across all the workers, whatever their number.
    ///
    /// ```
    /// let fetcher = parfetch::Fetcher::builder().num_processes(16).build()?;
    /// assert_eq!((fetcher.threads(), fetcher.concurrency()), (16, 16));
    /// # Ok::<(), parfetch::BuildError>(())
    /// ```
    pub fn num_processes(mut self, n: usize) -> Self {
        self.settings.num_processes = Some(n);
        self
    }

    /// Keeps at most `n` requests in flight at once across the whole fetcher, whatever the
    /// number of threads: every call that uses this fetcher (the trait's adaptors, `Pool`,
    /// `map`, [`execute`](Fetcher::execute) from any thread) shares its `n` slots.
    ///
    /// How the settings combine: `concurrency(n)` is the number in flight;
    /// [`num_processes(t)`](Self::num_processes) the number of worker threads, and the number in
    /// flight too when `concurrency` is not set; with neither,
    /// [`Fetcher::DEFAULT_CONCURRENCY`] in flight on one thread per core. At most
    /// [`Fetcher::MAX_CONCURRENCY`].
    ///
    /// Every request takes its slot after its host's slot and turn
    /// ([`max_per_host`](Self::max_per_host), [`per_host_rate`](Self::per_host_rate)) and gives
    /// it back between retries, so a request that waits for its host or its backoff does not hold
    /// back requests to other hosts. A slow request holds only its own slot.
    ///
    /// ```
    /// let fetcher = parfetch::Fetcher::builder()
    ///     .concurrency(256) // 256 requests in flight, on one thread per core
    ///     .build()?;
    /// assert_eq!(fetcher.concurrency(), 256);
    /// # Ok::<(), parfetch::BuildError>(())
    /// ```
    pub fn concurrency(mut self, n: usize) -> Self {
        self.settings.concurrency = Some(n);
        self
    }

    /// Sends failed requests again, as `policy` says. Off by default: every request is sent
    /// once. Each attempt has the full [`timeout`](Self::timeout).
    ///
    /// ```
    /// # let base = parfetch::doc_support::serve_raw(2, "HTTP/1.1 503 Service Unavailable\r\nretry-after: 0\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
    /// let fetcher = parfetch::Fetcher::builder()
    ///     .retry(parfetch::RetryPolicy::new(2))
    ///     .build()?;
    /// let response = fetcher.execute(base).unwrap();
    /// // Sent twice; the last answer is handed back.
    /// assert_eq!((response.status().as_u16(), response.attempts()), (503, 2));
    /// # Ok::<(), parfetch::BuildError>(())
    /// ```
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.settings.retry = Some(policy);
        self
    }

    /// Sets the timeout for each request, from connecting to the last byte of the body.
    /// [`Request::timeout`] overrides it per request.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap(); // never answers
    /// let url = format!("http://{}/", silent.local_addr().unwrap());
    /// let fetcher = parfetch::Fetcher::builder()
    ///     .timeout(Duration::from_millis(200))
    ///     .build()?;
    /// assert!(fetcher.execute(url).unwrap_err().error().is_timeout());
    /// # Ok::<(), parfetch::BuildError>(())
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.settings.timeout = timeout;
        self
    }

    /// Sets the time allowed to open a connection (TCP and TLS), within the request's
    /// [`timeout`](Self::timeout). A host that does not answer fails fast with
    /// [`FetchError::Connect`] instead of using up the whole timeout.
    ///
    /// It is also the time a server has to acknowledge the bytes of a request (the socket's TCP
    /// user timeout). A small server whose listen queue is full (`python3 -m http.server` has a
    /// backlog of 5) drops connections that the client already counts as open: the request is
    /// never received, and used to wait out its whole timeout. Such a request, if idempotent, is
    /// sent again at once, up to twice, whatever the [`retry`](Self::retry) policy; against
    /// `python3 -m http.server`, 2,000 GETs at the defaults went from a dozen or more 30 s
    /// timeouts per run to every request answered in 4 to 12 s.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let fetcher = parfetch::Fetcher::builder()
    ///     .connect_timeout(Duration::from_secs(2))
    ///     .build()?;
    /// // Nothing listens there: the connection is refused, which is a connect error too.
    /// let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    /// let exception = fetcher.execute(format!("http://{closed}/")).unwrap_err();
    /// assert!(exception.error().is_connect());
    /// # Ok::<(), parfetch::BuildError>(())
    /// ```
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.settings.connect_timeout = timeout;
        self
    }

    /// Restricts requests, every redirect hop included, to these hosts (names or IP addresses, without
    /// port). It checks where requests are meant to go, not the way they take: a proxy from the
    /// environment still sees them (see [`no_proxy`](Self::no_proxy)). Entries and URLs are compared the way URLs are normalised: case-insensitively,
    /// names in their IDNA (punycode) form and without a trailing dot, IPv4 addresses in any
    /// form a URL accepts, IPv4-mapped IPv6 addresses as their IPv4 address. An entry that is no
    /// host at all is refused by [`build`](Self::build). A request to another host fails with
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
        let mut allowed = HashSet::new();
        for host in hosts {
            match canonical_entry(host.as_ref()) {
                Some(host) => {
                    allowed.insert(host);
                }
                None => {
                    self.settings.invalid_allowed_host = Some(host.as_ref().to_owned());
                }
            }
        }
        self.settings.allowed_hosts = Some(Arc::new(allowed));
        self
    }

    /// At most `n` requests in flight to any one host at a time, across all workers (and
    /// retries). Waiting for a slot does not count towards a request's timeout. Hosts are told
    /// apart by name, not port. `0` is refused by [`build`](Self::build).
    ///
    /// ```
    /// use parfetch::prelude::*;
    /// use rayon::prelude::*;
    ///
    /// # let base = parfetch::doc_support::serve(8);
    /// let urls: Vec<String> = (0..8).map(|i| format!("{base}/{i}")).collect();
    /// let fetcher = parfetch::Fetcher::builder().max_per_host(2).build()?;
    /// let (responses, _) = urls.par_iter().fetch_all_with(&fetcher); // 2 at a time
    /// assert_eq!(responses.len(), 8);
    /// assert!(parfetch::Fetcher::builder().max_per_host(0).build().is_err());
    /// # Ok::<(), parfetch::BuildError>(())
    /// ```
    pub fn max_per_host(mut self, n: usize) -> Self {
        self.settings.max_per_host = Some(n);
        self
    }

    /// At most `requests_per_second` requests started to any one host, across all workers (and
    /// retries), evenly spaced. Waiting for a turn does not count towards a request's timeout.
    /// [`build`](Self::build) refuses a rate that is not a finite number of at least one
    /// request a day (0, negative numbers and NaN included).
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

    /// Sends every request through the proxy at `url` (`http://` or `https://`, credentials in
    /// it allowed), instead of the ones the environment names. An invalid URL is refused by
    /// [`build`](Self::build).
    ///
    /// Without this setting, or [`no_proxy`](Self::no_proxy), requests go through the proxies
    /// that the environment names, as curl and Python's requests do: `HTTP_PROXY` for `http`
    /// URLs, `HTTPS_PROXY` for `https`, `ALL_PROXY` for both (lower-case names too), except for
    /// the hosts listed in `NO_PROXY`. [`Fetcher::proxies`] tells which are in use.
    ///
    /// ```
    /// # let proxy = parfetch::doc_support::serve(1);
    /// // The proxy answers for the host, whose name need not resolve here.
    /// let fetcher = parfetch::Fetcher::builder().proxy(&proxy).build()?;
    /// let response = fetcher.execute("http://example.invalid/").unwrap();
    /// assert_eq!(response.text(), "ok");
    /// # Ok::<(), parfetch::BuildError>(())
    /// ```
    pub fn proxy(mut self, url: impl AsRef<str>) -> Self {
        let url = url.as_ref();
        self.settings.proxy = ProxySetting::To(Box::new(
            reqwest::Proxy::all(url)
                .map(|proxy| (proxy, url.to_owned()))
                .map_err(|_| url.to_owned()),
        ));
        self
    }

    /// Sends every request straight to its host, whatever proxies the environment names.
    ///
    /// ```
    /// // HTTP_PROXY and the others are not looked at.
    /// let fetcher = parfetch::Fetcher::builder().no_proxy().build()?;
    /// assert!(fetcher.proxies().is_empty());
    /// # Ok::<(), parfetch::BuildError>(())
    /// ```
    pub fn no_proxy(mut self) -> Self {
        self.settings.proxy = ProxySetting::Off;
        self
    }

    /// Calls `hook` after each request this fetcher finishes, on the worker that finished it,
    /// with the counts so far and the outcome: for progress reports, metrics or logs. Keep it quick; it runs
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
    ///     .on_progress(move |progress, outcome| {
    ///         if outcome.as_ref().is_err_and(|e| e.error().is_timeout()) {
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
        F: Fn(Progress, &FetchResult) + Send + Sync + 'static,
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
    #[cfg_attr(docsrs, doc(cfg(feature = "progress")))]
    pub fn progress_bar(self, bar: indicatif::ProgressBar) -> Self {
        self.on_progress(move |progress, outcome| {
            bar.inc(1);
            if outcome.is_err() {
                bar.set_message(format!("{} failed", progress.failed));
            }
        })
    }

    /// Sets the largest response body to read; a larger one makes that request fail with
    /// [`FetchError::BodyTooLarge`].
    ///
    /// ```
    /// use parfetch::FetchError;
    ///
    /// # let base = parfetch::doc_support::serve(1);
    /// let fetcher = parfetch::Fetcher::builder().max_body_bytes(1).build()?;
    /// let exception = fetcher.execute(base).unwrap_err(); // a body of 2 bytes
    /// assert!(matches!(exception.error(), FetchError::BodyTooLarge { limit: 1, .. }));
    /// # Ok::<(), parfetch::BuildError>(())
    /// ```
    pub fn max_body_bytes(mut self, limit: u64) -> Self {
        self.settings.max_body_bytes = limit;
        self
    }

    /// Keeps connections open between requests to at most `n` origins (scheme, host and port)
    /// per worker, counted across the fetcher's workers; `0` closes every connection after its
    /// response. Unless set: half the process's open-file limit when the fetcher is built
    /// (`ulimit -n`), between 16 and 65,536. [`build`](Self::build) refuses more than
    /// [`Fetcher::MAX_IDLE_CONNECTIONS`].
    ///
    /// With it, the sockets a fetcher holds stay near its [`concurrency`](Self::concurrency)
    /// plus `n`, however many hosts it meets: a request to an origin beyond the budget goes out
    /// with `Connection: close`. An origin's place is freed once its worker has not sent to it
    /// for a minute (twice the 30-second idle timeout of the sessions' connection pools). One
    /// origin a worker sends to several requests at once holds as many connections while they
    /// last. The command raises its soft open-file limit to the hard limit as it starts (as
    /// Go's runtime does); a library leaves that to its program. A request that finds no file
    /// descriptor left fails with [`FetchError::Connect`] saying so.
    ///
    /// ```
    /// let fetcher = parfetch::Fetcher::builder().max_idle_connections(100).build()?;
    /// assert_eq!(fetcher.max_idle_connections(), 100);
    /// # Ok::<(), parfetch::BuildError>(())
    /// ```
    pub fn max_idle_connections(mut self, n: usize) -> Self {
        self.settings.max_idle_connections = Some(n);
        self
    }

    /// Follows at most `n` redirects per request ([`Fetcher::DEFAULT_MAX_REDIRECTS`] unless
    /// set); one more is a [`FetchError::Redirect`]. `0` follows none: a 3xx answer is the
    /// response. [`build`](Self::build) refuses more than [`Fetcher::MAX_REDIRECTS`].
    ///
    /// parfetch follows redirects itself, whatever redirect policy a session hook sets: each
    /// hop is checked against [`allowed_hosts`](Self::allowed_hosts), waits for its own host's
    /// [`max_per_host`](Self::max_per_host) slot and [`per_host_rate`](Self::per_host_rate) turn,
    /// and is retried on its own by the [`retry`](Self::retry) policy. The hops share the
    /// request's [`timeout`](Self::timeout). 301, 302 and 303 turn any method but `GET` and
    /// `HEAD` into `GET` and drop the body; 307 and 308 send the same method and body again.
    /// A hop to another origin (scheme, host or port) carries only `User-Agent`, `Accept`,
    /// `Accept-Language`, `Accept-Encoding`, the body's headers when the body goes along, and
    /// the headers named with [`redirect_keeps_header`](Self::redirect_keeps_header).
    ///
    /// ```
    /// let fetcher = parfetch::Fetcher::builder().max_redirects(0).build()?;
    /// let error = parfetch::Fetcher::builder().max_redirects(1000).build().unwrap_err();
    /// assert_eq!(error.to_string(), "max_redirects must be from 0 to 100, not 1000");
    /// # Ok::<(), parfetch::BuildError>(())
    /// ```
    pub fn max_redirects(mut self, n: usize) -> Self {
        self.settings.max_redirects = n;
        self
    }

    /// Lets the request header `name` go along on redirects to other origins, which otherwise
    /// carry only the safe headers listed at [`max_redirects`](Self::max_redirects); never over
    /// `http` once a redirect chain has been on `https`. Call it once per header. A name that is
    /// no header name is refused by [`build`](Self::build).
    ///
    /// It concerns headers set on the [`Request`]: a session's default headers (set by any
    /// hook: [`session`](Self::session), [`initializer`](Self::initializer),
    /// [`auth_generator`](Self::auth_generator)) never leave the request's origin, because hops
    /// to other origins are sent by a client built without the hooks.
    ///
    /// ```
    /// let fetcher = parfetch::Fetcher::builder()
    ///     .redirect_keeps_header("x-trace-id")
    ///     .build()?;
    /// # Ok::<(), parfetch::BuildError>(())
    /// ```
    pub fn redirect_keeps_header(mut self, name: impl AsRef<str>) -> Self {
        let name = name.as_ref();
        match reqwest::header::HeaderName::from_bytes(name.as_bytes()) {
            Ok(name) => self.settings.redirect_keeps.push(name),
            Err(_) => self.settings.invalid_redirect_header = Some(name.to_owned()),
        }
        self
    }

    /// Replaces the base client builder of each session: the original's `session` argument.
    ///
    /// parfetch's own base shares one TLS configuration between all sessions of the fetcher.
    /// A builder from this constructor is used as it is, so it makes its own TLS configuration
    /// for every session (a few milliseconds each).
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// # let base = parfetch::doc_support::serve(1);
    /// let fetcher = parfetch::Fetcher::builder()
    ///     .session(|| parfetch::ClientBuilder::new().tcp_keepalive(Duration::from_secs(30)))
    ///     .build()?;
    /// assert_eq!(fetcher.execute(base).unwrap().status(), 200);
    /// assert_eq!(fetcher.session_count(), 1); // built by the first request's worker
    /// # Ok::<(), parfetch::BuildError>(())
    /// ```
    pub fn session<F>(mut self, constructor: F) -> Self
    where
        F: Fn() -> ClientBuilder + Send + Sync + 'static,
    {
        self.settings.hooks.session = Some(Arc::new(constructor));
        self
    }

    /// Configures each new session (headers, proxies, ...): the original's `initializer`. It
    /// gets the client builder and returns it, as the Python callback must return the session.
    ///
    /// Its settings apply to requests and to redirects that stay at the request's origin.
    /// Redirects to other origins are sent by a client of the same session built without it
    /// and the [`auth_generator`](Self::auth_generator), so that the default headers they set
    /// (credentials, a user agent) never leave the origin; put a header that must go along on
    /// the [`Request`] and name it with [`redirect_keeps_header`](Self::redirect_keeps_header).
    /// A redirect policy set here has no effect: see [`max_redirects`](Self::max_redirects).
    ///
    /// The builder it gets carries the fetcher's shared TLS configuration, which TLS settings
    /// (extra root certificates, client identities) do not change: make those in a
    /// [`session`](Self::session) constructor.
    ///
    /// ```
    /// # let base = parfetch::doc_support::serve(1);
    /// let fetcher = parfetch::Fetcher::builder()
    ///     .initializer(|session| session.user_agent("my-etl/1.0"))
    ///     .build()?;
    /// assert_eq!(fetcher.execute(base).unwrap().status(), 200);
    /// # Ok::<(), parfetch::BuildError>(())
    /// ```
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
    /// Its default headers go only to the request's origin, redirects included (see
    /// [`initializer`](Self::initializer)).
    ///
    /// ```
    /// use parfetch::header::{AUTHORIZATION, HeaderMap, HeaderValue};
    ///
    /// # let base = parfetch::doc_support::serve(1);
    /// let fetcher = parfetch::Fetcher::builder()
    ///     .auth_generator(|session| {
    ///         let mut token = HeaderValue::from_static("Bearer t0k3n");
    ///         token.set_sensitive(true); // redacted wherever parfetch shows it
    ///         session.default_headers(HeaderMap::from_iter([(AUTHORIZATION, token)]))
    ///     })
    ///     .build()?;
    /// assert_eq!(fetcher.execute(base).unwrap().status(), 200);
    /// # Ok::<(), parfetch::BuildError>(())
    /// ```
    pub fn auth_generator<F>(mut self, auth_generator: F) -> Self
    where
        F: Fn(ClientBuilder) -> ClientBuilder + Send + Sync + 'static,
    {
        self.settings.hooks.auth_generator = Some(Arc::new(auth_generator));
        self
    }

    /// The slowest [`per_host_rate`](Self::per_host_rate): one request a day.
    const SLOWEST_RATE: f64 = 1.0 / 86_400.0;

    /// Builds the fetcher, starting its worker threads if
    /// [`num_processes`](Self::num_processes) was set.
    ///
    /// # Errors
    /// [`BuildError::ZeroProcesses`] for `num_processes(0)`; [`BuildError::OutOfRange`],
    /// naming the setting and the value, for a number of threads or a concurrency outside its
    /// range, `max_per_host` of 0 or above [`Fetcher::MAX_CONCURRENCY`], a zero `timeout` or `connect_timeout`, and a `per_host_rate`
    /// that is not a finite number of at least one request a day; [`BuildError::ThreadPool`]
    /// when the threads cannot be started.
    ///
    /// ```
    /// let error = parfetch::Fetcher::builder().concurrency(100_000).build().unwrap_err();
    /// assert_eq!(error.to_string(), "concurrency must be from 1 to 10000, not 100000");
    /// ```
    pub fn build(self) -> Result<Fetcher, BuildError> {
        let settings = self.settings;
        let in_range = |setting, value: usize, max| {
            if (1..=max).contains(&value) {
                Ok(())
            } else {
                Err(BuildError::OutOfRange {
                    setting,
                    value: value.to_string(),
                    allowed: format!("from 1 to {max}"),
                })
            }
        };
        if let Some(n) = settings.num_processes {
            if n == 0 {
                return Err(BuildError::ZeroProcesses);
            }
            in_range("num_processes", n, Fetcher::MAX_THREADS)?;
        }
        if let Some(n) = settings.concurrency {
            in_range("concurrency", n, Fetcher::MAX_CONCURRENCY)?;
        } else if let Some(n) = settings.num_processes {
            in_range("concurrency", n, Fetcher::MAX_CONCURRENCY)?;
        }
        if let Some(n) = settings.max_per_host {
            // More than the most in flight at all would mean nothing (and overflow a semaphore).
            in_range("max_per_host", n, Fetcher::MAX_CONCURRENCY)?;
        }
        let refuse = |setting, value: String, allowed: &str| {
            Err(BuildError::OutOfRange {
                setting,
                value,
                allowed: allowed.to_owned(),
            })
        };
        for (setting, duration) in [
            ("timeout", settings.timeout),
            ("connect_timeout", settings.connect_timeout),
        ] {
            if duration.is_zero() {
                return refuse(
                    setting,
                    "0 s".into(),
                    "more than 0 s (Duration::MAX for no limit)",
                );
            }
        }
        if settings
            .retry
            .as_ref()
            .is_some_and(|retry| retry.max_attempts() == 0)
        {
            return refuse("retry", "RetryPolicy::new(0)".into(), "at least 1 attempt");
        }
        if let ProxySetting::To(proxy) = &settings.proxy {
            if let Err(url) = proxy.as_ref() {
                return refuse(
                    "proxy",
                    format!("{:?}", crate::redact::url(url)),
                    "an http:// or https:// URL",
                );
            }
        }
        if let Some(entry) = &settings.invalid_allowed_host {
            return refuse(
                "allowed_hosts",
                format!("{entry:?}"),
                "host names or IP addresses, without scheme or port",
            );
        }
        if settings.max_redirects > Fetcher::MAX_REDIRECTS {
            return refuse(
                "max_redirects",
                settings.max_redirects.to_string(),
                &format!("from 0 to {}", Fetcher::MAX_REDIRECTS),
            );
        }
        if let Some(n) = settings.max_idle_connections {
            if n > Fetcher::MAX_IDLE_CONNECTIONS {
                return refuse(
                    "max_idle_connections",
                    n.to_string(),
                    &format!("at most {}", Fetcher::MAX_IDLE_CONNECTIONS),
                );
            }
        }
        if let Some(name) = &settings.invalid_redirect_header {
            return refuse(
                "redirect_keeps_header",
                format!("{name:?}"),
                "a header name",
            );
        }
        if let Some(rate) = settings.per_host_rate {
            // Slower than one a day, the wait between two requests overflows the clock's
            // arithmetic long before it means anything.
            if !(rate.is_finite() && rate >= Self::SLOWEST_RATE) {
                return refuse(
                    "per_host_rate",
                    format!("{rate:?}"),
                    "a finite number of requests per second, at least one a day (0.0000116)",
                );
            }
        }
        let pool = match settings.num_processes {
            Some(threads) => Some(start_pool(threads)?),
            None => None,
        };
        Ok(Fetcher::from_settings(settings, pool))
    }
}

/// The error of a request that this thread has no session to send with.
pub(crate) fn session_error(request: &Request, reason: &str) -> FetchError {
    FetchError::Session {
        url: request.url_for_messages().into_owned(),
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow_list(entries: &[&str]) -> HashSet<String> {
        entries
            .iter()
            .map(|entry| canonical_entry(entry).unwrap_or_else(|| panic!("{entry:?} is a host")))
            .collect()
    }

    fn allowed(list: &HashSet<String>, url: &str) -> bool {
        host_allowed(Some(list), &Url::parse(url).unwrap())
    }

    #[test]
    fn names_match_whatever_their_case_trailing_dot_or_unicode_form() {
        let list = allow_list(&["API.Example.com.", "bücher.example"]);
        for url in [
            "http://api.example.com/",
            "https://API.EXAMPLE.COM:8443/x",
            "http://api.example.com./",
            "http://xn--bcher-kva.example/",
            "http://BÜCHER.example/",
        ] {
            assert!(allowed(&list, url), "{url}");
        }
        for url in [
            "http://example.com/",
            "http://api.example.com.evil/",
            "http://evil-api.example.com/",
            "http://sub.api.example.com/",
        ] {
            assert!(!allowed(&list, url), "{url}");
        }
    }

    #[test]
    fn ip_addresses_match_in_any_form_a_url_accepts() {
        let list = allow_list(&["127.0.0.1", "[::1]", "2001:DB8::0:1"]);
        for url in [
            "http://127.0.0.1/",
            "http://0x7f.1/",
            "http://2130706433/",
            "http://[::ffff:127.0.0.1]/",
            "http://[0:0:0:0:0:0:0:1]/",
            "http://[2001:db8::1]:8080/",
        ] {
            assert!(allowed(&list, url), "{url}");
        }
        for url in ["http://127.0.0.2/", "http://localhost/", "http://[::2]/"] {
            assert!(!allowed(&list, url), "{url}");
        }
        assert_eq!(
            canonical_entry("0x7f.0.0.1"),
            canonical_entry(" 127.0.0.1 ")
        );
    }

    #[test]
    fn an_entry_that_is_no_host_is_told_apart() {
        for entry in ["", " ", ".", "[::1", "exa mple.com", "[not-v6]"] {
            assert_eq!(canonical_entry(entry), None, "{entry:?}");
        }
    }

    #[test]
    fn no_list_allows_every_host_and_an_empty_one_none() {
        let url = Url::parse("http://anywhere.example/").unwrap();
        assert!(host_allowed(None, &url));
        assert!(!host_allowed(Some(&HashSet::new()), &url));
    }
}
