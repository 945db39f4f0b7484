//! The per-worker session: how it is built from the user's hooks, and how it sends one request.
//!
//! A session is an async reqwest client driven by a single-threaded tokio runtime that lives on
//! the worker itself, so a request never hops to another thread and back (what the blocking
//! reqwest client does on every call). Everything about that choice stays inside this module.

use std::any::Any;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{ClientBuilder, StatusCode};
use url::Url;

use crate::tls::SharedTls;
use crate::{FetchError, Request};

/// Makes the base client builder of each new session: the original's `session` argument.
pub(crate) type SessionConstructor = Arc<dyn Fn() -> ClientBuilder + Send + Sync>;
/// Configures a new session: the original's `initializer` and `auth_generator`.
pub(crate) type SessionHook = Arc<dyn Fn(ClientBuilder) -> ClientBuilder + Send + Sync>;

/// The three hooks of the original, run in its order: constructor, initializer, auth generator.
#[derive(Clone, Default)]
pub(crate) struct SessionHooks {
    pub(crate) session: Option<SessionConstructor>,
    pub(crate) initializer: Option<SessionHook>,
    pub(crate) auth_generator: Option<SessionHook>,
}

impl fmt::Debug for SessionHooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = |hook: bool| if hook { "set" } else { "default" };
        f.debug_struct("SessionHooks")
            .field("session", &set(self.session.is_some()))
            .field("initializer", &set(self.initializer.is_some()))
            .field("auth_generator", &set(self.auth_generator.is_some()))
            .finish()
    }
}

/// One worker's session: its client, the runtime that drives it, and its share of the
/// fetcher's requests in flight.
pub(crate) struct Session {
    client: reqwest::Client,
    /// The client for hops to another origin than the request's: built on the first such hop
    /// by parfetch alone, without any hook, so without the default headers a hook may have set
    /// (credentials, in a constructor as much as in an `auth_generator`; see `crate::redirect`).
    /// `None` inside: no hook was set, and `client` serves every origin.
    cross_origin: std::sync::OnceLock<Result<Option<reqwest::Client>, String>>,
    /// Requests this session may send at once. A worker's share of the fetcher's concurrency:
    /// each request in flight may hold a connection of the session's own pool, so the shares
    /// keep a fetcher's connections near its concurrency, however the work falls on workers.
    pub(crate) slots: tokio::sync::Semaphore,
    /// The origins this session keeps connections open to (see `crate::idle`).
    pub(crate) kept: crate::idle::KeptOrigins,
    /// Requests of this session waiting for their host's slot or turn, or for a backoff: they
    /// hold no slot, and the engine takes more work for this worker meanwhile.
    waiting: std::sync::atomic::AtomicUsize,
    /// Always `Some` until dropped; an `Option` so that `Drop` can shut it down without waiting.
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for Session {
    fn drop(&mut self) {
        // A plain drop waits for the runtime's blocking tasks (DNS lookups) and panics inside
        // an async context; a fetcher must be droppable anywhere, without hanging.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session").finish_non_exhaustive()
    }
}

/// What came back for one request, before it is paired with its [`Request`].
pub(crate) struct Received {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) url: Url,
    pub(crate) body: Bytes,
}

/// The reason a session cannot be used on this thread right now, if there is one: blocking on a
/// runtime from inside another one would panic.
pub(crate) fn unusable_here() -> Option<&'static str> {
    tokio::runtime::Handle::try_current().is_ok().then_some(
        "parfetch blocks its thread and was called from inside an async runtime; \
         call it from a plain thread or tokio's spawn_blocking",
    )
}

impl Session {
    /// Builds a session: constructor, then initializer, then auth generator, each of which may
    /// panic without taking the worker down. The error says which step failed.
    /// `fetcher_settings` applies the fetcher's own client settings to the base builder, before
    /// the user's hooks, so that hooks can still override them; but not the redirect policy,
    /// which is always none, set after the hooks: parfetch follows redirects itself.
    pub(crate) fn build(
        hooks: &SessionHooks,
        tls: &SharedTls,
        slots: usize,
        fetcher_settings: impl FnOnce(ClientBuilder) -> ClientBuilder,
    ) -> Result<Self, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|error| format!("could not start the worker's I/O runtime: {error}"))?;

        let base = fetcher_settings(base_builder(hooks, tls)?);
        let initialized = match &hooks.initializer {
            Some(initializer) => call_hook("initializer", || initializer(base))?,
            None => base,
        };
        let authenticated = match &hooks.auth_generator {
            Some(auth_generator) => call_hook("auth_generator", || auth_generator(initialized))?,
            None => initialized,
        };

        // The client's connection pool spawns onto the runtime current at build time.
        let client = {
            let _entered = runtime.enter();
            build_client(authenticated)?
        };
        let cross_origin = std::sync::OnceLock::new();
        if hooks.session.is_none() && hooks.initializer.is_none() && hooks.auth_generator.is_none()
        {
            let _ = cross_origin.set(Ok(None));
        }
        Ok(Self {
            client,
            cross_origin,
            slots: tokio::sync::Semaphore::new(slots),
            kept: crate::idle::KeptOrigins::default(),
            waiting: std::sync::atomic::AtomicUsize::new(0),
            runtime: Some(runtime),
        })
    }

    /// `request` in the client's form, for its URL `url` (checked).
    pub(crate) fn client_request(
        &self,
        request: &Request,
        url: &Url,
    ) -> Result<reqwest::Request, FetchError> {
        request
            .to_client_request(&self.client, url)
            .build()
            .map_err(|error| FetchError::from_client(&request.url_for_messages(), error))
    }

    /// The client that sends a hop to the request's own origin (`same_origin`) or to another
    /// one; the latter is built on first use from parfetch's own base, which `base_settings`
    /// completes.
    pub(crate) fn client_for(
        &self,
        same_origin: bool,
        tls: &SharedTls,
        base_settings: impl FnOnce(ClientBuilder) -> ClientBuilder,
    ) -> Result<&reqwest::Client, String> {
        if same_origin {
            return Ok(&self.client);
        }
        let cross_origin = self.cross_origin.get_or_init(|| {
            let base = base_settings(own_base(tls)?);
            let _entered = self.runtime.as_ref().map(tokio::runtime::Runtime::enter);
            build_client(base).map(Some)
        });
        match cross_origin {
            Ok(client) => Ok(client.as_ref().unwrap_or(&self.client)),
            Err(reason) => Err(reason.clone()),
        }
    }

    /// Sends `outgoing` with `client` and reads the whole body, within `budget` and
    /// `max_body_bytes`; running out of time is a [`FetchError::Timeout`] of `timeout`, the
    /// request's. The future must be polled by [`block_on`](Self::block_on) of this session.
    pub(crate) async fn send(
        client: &reqwest::Client,
        outgoing: reqwest::Request,
        url_for_messages: &str,
        (budget, timeout): (Duration, Duration),
        max_body_bytes: u64,
    ) -> Result<Received, FetchError> {
        let pending = client.execute(outgoing);
        tokio::time::timeout(budget, receive(pending, url_for_messages, max_body_bytes))
            .await
            .unwrap_or_else(|_elapsed| {
                Err(FetchError::Timeout {
                    url: url_for_messages.to_owned(),
                    timeout,
                })
            })
    }

    /// Runs `wait` counted as waiting (see [`waiting`](Self::waiting)).
    pub(crate) async fn waiting_for<F: std::future::Future>(&self, wait: F) -> F::Output {
        use std::sync::atomic::Ordering;
        struct Counted<'a>(&'a std::sync::atomic::AtomicUsize);
        impl Drop for Counted<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::Relaxed);
            }
        }
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let _counted = Counted(&self.waiting);
        wait.await
    }

    /// How many of this session's requests wait for their host or a backoff right now.
    pub(crate) fn waiting(&self) -> usize {
        self.waiting.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Runs `future` to completion on this session's runtime, on the calling thread.
    pub(crate) fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        let Some(runtime) = &self.runtime else {
            unreachable!("a session's runtime is only taken when it is dropped");
        };
        runtime.block_on(future)
    }
}

/// The base client builder of a session: the constructor's, or parfetch's own.
fn base_builder(hooks: &SessionHooks, tls: &SharedTls) -> Result<ClientBuilder, String> {
    match &hooks.session {
        Some(constructor) => call_hook("session constructor", || constructor()),
        None => own_base(tls),
    }
}

/// parfetch's own base client builder, with the fetcher's TLS configuration.
fn own_base(tls: &SharedTls) -> Result<ClientBuilder, String> {
    Ok(reqwest::Client::builder().tls_backend_preconfigured(tls.config()?))
}

/// Builds a configured client, with parfetch's redirect policy as the last word: whatever a
/// hook set, reqwest follows nothing, and `Fetcher::run` follows each hop itself.
fn build_client(configured: ClientBuilder) -> Result<reqwest::Client, String> {
    configured
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|error| format!("the configured client failed to build: {error}"))
}

async fn receive(
    pending: impl std::future::Future<Output = Result<reqwest::Response, reqwest::Error>>,
    url_as_given: &str,
    max_body_bytes: u64,
) -> Result<Received, FetchError> {
    let client_error = |error| FetchError::from_client(url_as_given, error);

    let mut response = pending.await.map_err(client_error)?;
    let declared_length = response.content_length();
    if declared_length.is_some_and(|length| length > max_body_bytes) {
        return Err(FetchError::BodyTooLarge {
            url: url_as_given.to_owned(),
            limit: max_body_bytes,
        });
    }
    let status = response.status();
    let headers = detached(std::mem::take(response.headers_mut()));
    let url = response.url().clone();
    let body = read_body(response, url_as_given, declared_length, max_body_bytes).await?;
    Ok(Received {
        status,
        headers,
        url,
        body,
    })
}

/// The most a body's declared length reserves before its bytes arrive: a server may declare
/// more than it sends, and what it does send is checked against `max_body_bytes` anyway.
const MAX_UP_FRONT_RESERVATION: u64 = 8 << 20;

/// Reads the whole body into storage of its own, failing as soon as it is longer than
/// `max_body_bytes`.
///
/// The client hands the body over in slices of the connection's read buffer, which can be
/// hundreds of KiB: keeping such a slice (or the header values, which are slices of the same
/// buffer) would keep the whole buffer alive for as long as the response is kept. A batch keeps
/// every response, so each body is copied once into an allocation of exactly its length.
async fn read_body(
    mut response: reqwest::Response,
    url_as_given: &str,
    declared_length: Option<u64>,
    max_body_bytes: u64,
) -> Result<Bytes, FetchError> {
    let reservation = declared_length.map_or(0, |length| length.min(MAX_UP_FRONT_RESERVATION));
    let mut body = BytesMut::with_capacity(usize::try_from(reservation).unwrap_or(0));
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|error| FetchError::from_client(url_as_given, error))?
    {
        if (body.len() + chunk.len()) as u64 > max_body_bytes {
            return Err(FetchError::BodyTooLarge {
                url: url_as_given.to_owned(),
                limit: max_body_bytes,
            });
        }
        body.extend_from_slice(&chunk);
    }
    // A body of unknown length grew by doubling; give back what it did not fill.
    Ok(if body.capacity() > body.len() {
        Bytes::copy_from_slice(&body)
    } else {
        body.freeze()
    })
}

/// `headers`, with their values moved into one allocation of their own instead of the
/// connection's read buffer (see [`read_body`]).
fn detached(mut headers: HeaderMap) -> HeaderMap {
    let mut storage = BytesMut::with_capacity(headers.values().map(HeaderValue::len).sum());
    for value in headers.values() {
        storage.extend_from_slice(value.as_bytes());
    }
    let mut storage = storage.freeze();
    // `values_mut` visits the values in the order `values` did.
    for value in headers.values_mut() {
        let own = storage.split_to(value.len());
        // The bytes were a valid header value a moment ago, so this cannot fail; if it ever
        // did, keeping the original value is still correct, only less frugal.
        if let Ok(mut owned) = HeaderValue::from_maybe_shared(own) {
            owned.set_sensitive(value.is_sensitive());
            *value = owned;
        }
    }
    headers
}

/// Runs one user hook, turning a panic into an error that names the hook.
fn call_hook<T>(name: &str, hook: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(hook))
        .map_err(|payload| format!("the {name} panicked: {}", panic_message(payload.as_ref())))
}

pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(a panic without a message)")
}
