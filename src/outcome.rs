//! The two ways a request ends: [`ThreadResponse`] or [`ThreadException`], together a
//! [`FetchResult`].

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use url::Url;

use crate::session::Received;
use crate::{FetchError, Request};

/// What one request becomes: a response (any HTTP status) or an exception.
pub type FetchResult = Result<ThreadResponse, ThreadException>;

/// A response, body included, and the [`Request`] it answers.
///
/// Any HTTP status is a response, 4xx and 5xx included, as in the Python original; check
/// [`status()`](Self::status) yourself. The body has been read into memory (up to the fetcher's
/// [`max_body_bytes`](crate::FetcherBuilder::max_body_bytes)), so the connection went back to
/// the worker's session before you see this.
#[derive(Clone)]
pub struct ThreadResponse {
    request: Request,
    status: StatusCode,
    headers: HeaderMap,
    url: Url,
    body: Bytes,
    elapsed: Duration,
    attempts: u32,
}

/// Shows the status, final URL, headers (credentials redacted), the body's length and the
/// request (see its `Debug`), never a credential.
impl std::fmt::Debug for ThreadResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let headers: Vec<(&str, std::borrow::Cow<'_, str>)> = self
            .headers
            .iter()
            .map(|(name, value)| (name.as_str(), crate::redact::header_value(name, value)))
            .collect();
        f.debug_struct("ThreadResponse")
            .field("status", &self.status)
            .field("url", &crate::redact::url(self.url.as_str()))
            .field("headers", &headers)
            .field("body_bytes", &self.body.len())
            .field("elapsed", &self.elapsed)
            .field("attempts", &self.attempts)
            .field("request", &self.request)
            .finish()
    }
}

impl ThreadResponse {
    pub(crate) fn new(
        request: Request,
        received: Received,
        elapsed: Duration,
        attempts: u32,
    ) -> Self {
        Self {
            request,
            status: received.status,
            headers: received.headers,
            url: received.url,
            body: received.body,
            elapsed,
            attempts,
        }
    }

    /// The request this answers: the original's `request_kwargs`.
    ///
    /// ```
    /// # let base = parfetch::doc_support::serve(1);
    /// let response = parfetch::Fetcher::new().execute(format!("{base}/a")).unwrap();
    /// assert_eq!(response.request().url(), format!("{base}/a"));
    /// assert_eq!(response.request().method(), "GET");
    /// ```
    pub fn request(&self) -> &Request {
        &self.request
    }

    /// The HTTP status.
    ///
    /// ```
    /// # let base = parfetch::doc_support::serve(1);
    /// let response = parfetch::Fetcher::new().execute(format!("{base}/")).unwrap();
    /// assert!(response.status().is_success()); // 4xx and 5xx are responses too
    /// ```
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The response headers.
    ///
    /// ```
    /// # let base = parfetch::doc_support::serve(1);
    /// let response = parfetch::Fetcher::new().execute(format!("{base}/")).unwrap();
    /// assert_eq!(response.headers()["content-length"], "2");
    /// ```
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The final URL, after redirects.
    ///
    /// ```
    /// # let base = parfetch::doc_support::serve(1);
    /// let response = parfetch::Fetcher::new().execute(format!("{base}/a?b=c")).unwrap();
    /// assert_eq!(response.url().path(), "/a");
    /// assert_eq!(response.url().query(), Some("b=c"));
    /// ```
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The body.
    ///
    /// ```
    /// # let base = parfetch::doc_support::serve(1);
    /// let response = parfetch::Fetcher::new().execute(format!("{base}/")).unwrap();
    /// assert_eq!(&response.bytes()[..], b"ok");
    /// ```
    pub fn bytes(&self) -> &Bytes {
        &self.body
    }

    /// The body, decoded as UTF-8; invalid sequences become `U+FFFD`.
    ///
    /// ```
    /// # let base = parfetch::doc_support::serve(1);
    /// let response = parfetch::Fetcher::new().execute(format!("{base}/")).unwrap();
    /// assert_eq!(response.text(), "ok");
    /// ```
    pub fn text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }

    /// The body, decoded from JSON.
    ///
    /// # Errors
    /// When the body is not valid JSON for `T`.
    ///
    /// ```
    /// # let base = parfetch::doc_support::serve_raw(1, "HTTP/1.1 200 OK\r\ncontent-length: 9\r\nconnection: close\r\n\r\n{\"id\": 7}");
    /// let response = parfetch::Fetcher::new().execute(base).unwrap();
    /// let row: serde_json::Value = response.json()?;
    /// assert_eq!(row["id"], 7);
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    #[cfg(feature = "json")]
    #[cfg_attr(docsrs, doc(cfg(feature = "json")))]
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }

    /// How long the request took, from the first attempt to the last byte of the body, waits
    /// between retries included.
    ///
    /// ```
    /// # let base = parfetch::doc_support::serve(1);
    /// let response = parfetch::Fetcher::new().execute(format!("{base}/")).unwrap();
    /// assert!(response.elapsed() < parfetch::Fetcher::DEFAULT_TIMEOUT);
    /// ```
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }

    /// How many times the request was sent: 1, or more when a
    /// [`RetryPolicy`](crate::RetryPolicy) sent it again.
    ///
    /// ```
    /// # let base = parfetch::doc_support::serve(1);
    /// let response = parfetch::Fetcher::new().execute(format!("{base}/")).unwrap();
    /// assert_eq!(response.attempts(), 1); // no retry policy
    /// ```
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Takes the response apart into its request and body.
    ///
    /// ```
    /// # let base = parfetch::doc_support::serve(1);
    /// let response = parfetch::Fetcher::new().execute(format!("{base}/a")).unwrap();
    /// let (request, body) = response.into_parts();
    /// assert_eq!((request.url(), &body[..]), (format!("{base}/a").as_str(), &b"ok"[..]));
    /// ```
    pub fn into_parts(self) -> (Request, Bytes) {
        (self.request, self.body)
    }
}

/// A request that got no response, with the reason.
///
/// It is an error type itself (its message is the [`FetchError`]'s, which names the URL), so
/// `?` works on a `Result<ThreadResponse, ThreadException>`.
#[derive(Debug)]
pub struct ThreadException {
    request: Request,
    error: FetchError,
    attempts: u32,
}

impl ThreadException {
    pub(crate) fn new(request: Request, error: FetchError, attempts: u32) -> Self {
        Self {
            request,
            error,
            attempts,
        }
    }

    /// How many times the request was sent: 0 when it was rejected before sending (invalid URL,
    /// no session), more than 1 when a [`RetryPolicy`](crate::RetryPolicy) sent it again.
    ///
    /// ```
    /// let exception = parfetch::Fetcher::new().execute("not a url").unwrap_err();
    /// assert_eq!(exception.attempts(), 0); // rejected before sending
    /// ```
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The request that failed: the original's `request_kwargs`. Send it again to retry.
    ///
    /// ```
    /// let exception = parfetch::Fetcher::new().execute("not a url").unwrap_err();
    /// assert_eq!(exception.request().url(), "not a url");
    /// ```
    pub fn request(&self) -> &Request {
        &self.request
    }

    /// Why it failed.
    ///
    /// ```
    /// let exception = parfetch::Fetcher::new().execute("not a url").unwrap_err();
    /// assert!(exception.error().is_invalid_request());
    /// assert!(!exception.error().is_retryable());
    /// ```
    pub fn error(&self) -> &FetchError {
        &self.error
    }

    /// Takes the exception apart into its request and error.
    ///
    /// ```
    /// let exception = parfetch::Fetcher::new().execute("not a url").unwrap_err();
    /// let (request, error) = exception.into_parts();
    /// assert_eq!(error.url(), request.url()); // the error names it too, redacted
    /// ```
    pub fn into_parts(self) -> (Request, FetchError) {
        (self.request, self.error)
    }
}

impl fmt::Display for ThreadException {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

/// Transparent over its [`FetchError`]: same message, same source.
impl std::error::Error for ThreadException {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.error.source()
    }
}

/// The failed request, to send again: `Pool::from_exceptions` and
/// `exceptions.into_par_iter().fetch_all()` retry with it.
impl From<ThreadException> for Request {
    fn from(exception: ThreadException) -> Self {
        exception.request
    }
}

/// The failed request, to send again.
impl From<&ThreadException> for Request {
    fn from(exception: &ThreadException) -> Self {
        exception.request.clone()
    }
}
