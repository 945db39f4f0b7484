//! What can go wrong: [`FetchError`] for one request, [`BuildError`] for a [`Fetcher`](crate::Fetcher).

use std::time::Duration;

/// Why one request ended as a [`ThreadException`](crate::ThreadException) instead of a response.
///
/// Every variant names the URL it concerns, as it was given to the [`Request`](crate::Request),
/// and its `Display` message says what went wrong with it. HTTP error statuses (4xx, 5xx) are
/// *not* errors: like the Python original, parfetch hands those back as responses.
///
/// The enum is `#[non_exhaustive]`: match the variants you care about and keep a `_` arm.
///
/// ```
/// use parfetch::FetchError;
///
/// fn should_retry(error: &FetchError) -> bool {
///     match error {
///         FetchError::Timeout { .. } | FetchError::Connect { .. } => true,
///         FetchError::Transport { .. } => true,
///         _ => false,
///     }
/// }
/// # let _ = should_retry;
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The URL could not be parsed, or has no host.
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What the parser objected to.
        reason: url::ParseError,
    },

    /// The URL parsed, but its scheme is neither `http` nor `https`.
    #[error("unsupported scheme {scheme:?} in {url} (only http and https are fetched)")]
    UnsupportedScheme {
        /// The URL as given.
        url: String,
        /// The scheme found in it.
        scheme: String,
    },

    /// A header name or value given to the [`Request`](crate::Request) is not valid HTTP
    /// (for example it contains a line break).
    #[error("invalid header {name:?} in the request for {url}")]
    InvalidHeader {
        /// The URL as given.
        url: String,
        /// The header name as given.
        name: String,
    },

    /// The request body could not be encoded (for example a value that cannot be turned into JSON).
    #[error("could not encode the request body for {url}: {reason}")]
    InvalidBody {
        /// The URL as given.
        url: String,
        /// What the encoder said.
        reason: String,
    },

    /// The URL's host is not in the fetcher's
    /// [`allowed_hosts`](crate::FetcherBuilder::allowed_hosts); nothing was sent.
    #[error("host {host:?} of {url} is not in the allow-list")]
    HostNotAllowed {
        /// The URL as given.
        url: String,
        /// The host that was refused.
        host: String,
    },

    /// The worker's session could not be built: a session hook panicked, or the reqwest client
    /// it configured failed to build. Every request that worker takes gets this error.
    #[error("no session to fetch {url}: {reason}")]
    Session {
        /// The URL as given.
        url: String,
        /// What failed while building the session.
        reason: String,
    },

    /// No connection could be made (refused, unreachable, DNS failure, TLS handshake failure).
    #[error("could not connect to {url}: {reason}")]
    Connect {
        /// The URL as given.
        url: String,
        /// The innermost cause, in words.
        reason: String,
        /// The client's error, for what it tells beyond `reason`. Not returned by
        /// [`source`](std::error::Error::source): the message says its cause already, and
        /// reporters that print the chain would say it twice.
        client: reqwest::Error,
    },

    /// The request did not complete, body included, within its timeout.
    #[error("timed out after {timeout:?} fetching {url}")]
    Timeout {
        /// The URL as given.
        url: String,
        /// The timeout that ran out.
        timeout: Duration,
    },

    /// A redirect could not be followed: more hops than
    /// [`max_redirects`](crate::FetcherBuilder::max_redirects), a 3xx answer without a usable
    /// `Location`, or a `Location` with a scheme other than `http` and `https` or a host outside
    /// the [`allowed_hosts`](crate::FetcherBuilder::allowed_hosts). Nothing was sent to that
    /// `Location`; sending the request again would end the same way.
    #[error("redirect from {url} failed: {reason}")]
    Redirect {
        /// The URL as given.
        url: String,
        /// Why the redirect was not followed, in words (a password in its URL redacted).
        reason: String,
    },

    /// The exchange failed after connecting: the server closed or reset the connection, or sent
    /// something that is not a valid HTTP response.
    #[error("request to {url} failed: {reason}")]
    Transport {
        /// The URL as given.
        url: String,
        /// The innermost cause, in words.
        reason: String,
        /// The client's error, for what it tells beyond `reason`. Not returned by
        /// [`source`](std::error::Error::source): the message says its cause already, and
        /// reporters that print the chain would say it twice.
        client: reqwest::Error,
    },

    /// The response head arrived but reading its body failed (connection reset, body shorter
    /// than its `Content-Length`, ...).
    #[error("reading the response body from {url} failed: {reason}")]
    Body {
        /// The URL as given.
        url: String,
        /// The innermost cause, in words.
        reason: String,
        /// The client's error, for what it tells beyond `reason`. Not returned by
        /// [`source`](std::error::Error::source): the message says its cause already, and
        /// reporters that print the chain would say it twice.
        client: reqwest::Error,
    },

    /// The response body is larger than the fetcher's
    /// [`max_body_bytes`](crate::FetcherBuilder::max_body_bytes).
    #[error("response body from {url} exceeds the limit of {limit} bytes")]
    BodyTooLarge {
        /// The URL as given.
        url: String,
        /// The limit that was exceeded.
        limit: u64,
    },

    /// Code running for this request panicked (a callback that a session hook installed, such
    /// as a custom redirect policy). The request ends here; the rest of the batch goes on.
    #[error("fetching {url} panicked: {message}")]
    Panicked {
        /// The URL as given.
        url: String,
        /// The panic's message.
        message: String,
    },
}

impl FetchError {
    /// The URL of the failed request, as it was given.
    pub fn url(&self) -> &str {
        match self {
            Self::InvalidUrl { url, .. }
            | Self::UnsupportedScheme { url, .. }
            | Self::InvalidHeader { url, .. }
            | Self::InvalidBody { url, .. }
            | Self::HostNotAllowed { url, .. }
            | Self::Session { url, .. }
            | Self::Connect { url, .. }
            | Self::Timeout { url, .. }
            | Self::Redirect { url, .. }
            | Self::Transport { url, .. }
            | Self::Body { url, .. }
            | Self::BodyTooLarge { url, .. }
            | Self::Panicked { url, .. } => url,
        }
    }

    /// A short, stable name for the variant, for logs, metrics and JSON records:
    /// `invalid_url`, `unsupported_scheme`, `invalid_header`, `invalid_body`,
    /// `host_not_allowed`, `session`, `connect`, `timeout`, `redirect`, `transport`, `body`,
    /// `body_too_large`, `panicked`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidUrl { .. } => "invalid_url",
            Self::UnsupportedScheme { .. } => "unsupported_scheme",
            Self::InvalidHeader { .. } => "invalid_header",
            Self::InvalidBody { .. } => "invalid_body",
            Self::HostNotAllowed { .. } => "host_not_allowed",
            Self::Session { .. } => "session",
            Self::Connect { .. } => "connect",
            Self::Timeout { .. } => "timeout",
            Self::Redirect { .. } => "redirect",
            Self::Transport { .. } => "transport",
            Self::Body { .. } => "body",
            Self::BodyTooLarge { .. } => "body_too_large",
            Self::Panicked { .. } => "panicked",
        }
    }

    /// `true` if the request ran out of time.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout { .. })
    }

    /// `true` if no connection could be made.
    pub fn is_connect(&self) -> bool {
        matches!(self, Self::Connect { .. })
    }

    /// `true` if the request was rejected before anything was sent: its URL, scheme, headers
    /// or body are invalid, or its host is not allowed. Sending it again cannot succeed.
    pub fn is_invalid_request(&self) -> bool {
        matches!(
            self,
            Self::InvalidUrl { .. }
                | Self::UnsupportedScheme { .. }
                | Self::InvalidHeader { .. }
                | Self::InvalidBody { .. }
                | Self::HostNotAllowed { .. }
        )
    }

    /// `true` if sending the same request again may succeed: the connection failed, timed out
    /// or broke. Invalid requests, oversized bodies, redirect loops and sessions that cannot be
    /// built fail the same way every time.
    ///
    /// ```
    /// # use parfetch::Fetcher;
    /// let exception = Fetcher::new().execute("ftp://127.0.0.1/file").unwrap_err();
    /// assert!(!exception.error().is_retryable());
    /// ```
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Connect { .. }
                | Self::Timeout { .. }
                | Self::Transport { .. }
                | Self::Body { .. }
        )
    }

    /// Sorts a client error into the variant a user would match on.
    /// `true` if the connection timed out with the request's bytes never acknowledged by the
    /// server (the TCP user timeout): the server never got the request.
    pub(crate) fn was_never_acknowledged(&self) -> bool {
        let Self::Transport { client, .. } = self else {
            return false;
        };
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(client);
        while let Some(error) = cause {
            if let Some(io) = error.downcast_ref::<std::io::Error>() {
                return io.kind() == std::io::ErrorKind::TimedOut;
            }
            cause = error.source();
        }
        false
    }

    /// `url` is the URL as given, already redacted; the client's error loses its own copy of
    /// the URL, which would show a password in `Debug`.
    pub(crate) fn from_client(url: &str, error: reqwest::Error) -> Self {
        let url = url.to_owned();
        let error = error.without_url();
        let reason = out_of_file_descriptors(&error).unwrap_or_else(|| innermost_cause(&error));
        if error.is_connect() {
            Self::Connect {
                url,
                reason,
                client: error,
            }
        } else if error.is_body() || error.is_decode() {
            Self::Body {
                url,
                reason,
                client: error,
            }
        } else {
            Self::Transport {
                url,
                reason,
                client: error,
            }
        }
    }
}

/// What to say when the cause is the process's open-file limit (EMFILE, ENFILE): the OS's words
/// alone ("Too many open files") do not say what to change.
fn out_of_file_descriptors(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            if cfg!(unix) && matches!(io.raw_os_error(), Some(23 | 24)) {
                return Some(format!(
                    "{io}: the process is out of file descriptors; lower the concurrency or \
                     max_idle_connections, or raise the open-file limit (ulimit -n)"
                ));
            }
        }
        cause = error.source();
    }
    None
}

/// The message at the bottom of an error's `source()` chain: reqwest's own message only says
/// "error sending request", the useful words ("connection refused") sit underneath.
fn innermost_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// A [`Fetcher`](crate::Fetcher) could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// `num_processes(0)`: a pool needs at least one thread.
    #[error("num_processes must be at least 1")]
    ZeroProcesses,

    /// A number setting is outside the range it accepts.
    #[error("{setting} must be {allowed}, not {value}")]
    OutOfRange {
        /// The builder's setting, by its method's name.
        setting: &'static str,
        /// The value given.
        value: String,
        /// The values it accepts, in words.
        allowed: String,
    },

    /// A [`Pool`](crate::Pool) could not start the thread that feeds its workers.
    #[error("could not start the pool's feeding thread: {error}")]
    Thread {
        /// The operating system's error.
        error: std::io::Error,
    },

    /// The dedicated rayon pool could not start its threads.
    #[error("could not start a pool of {num_processes} threads: {error}")]
    ThreadPool {
        /// The number of threads asked for.
        num_processes: usize,
        /// Rayon's error.
        error: rayon::ThreadPoolBuildError,
    },
}
