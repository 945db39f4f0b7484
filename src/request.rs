//! [`Request`]: what to fetch, the Rust form of the original's request dict.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use bytes::Bytes;
use reqwest::Method;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use url::Url;

use crate::FetchError;

/// A request spec: method, URL, headers, query, body, timeout and credentials.
///
/// It is the Rust form of the dict that `requests_toolbelt.threaded` passes to
/// `session.request(**job)`. Building one never fails: a URL that does not parse, a header
/// that is not valid HTTP or a body that cannot be encoded is recorded, and that item ends as a
/// [`ThreadException`](crate::ThreadException) carrying a [`FetchError`] while the rest of the
/// batch goes on.
///
/// Cloning is cheap: a request is a reference-counted pointer, copied on write.
///
/// ```
/// use std::time::Duration;
/// use parfetch::Request;
///
/// let request = Request::post("http://127.0.0.1:8080/items")
///     .header("x-trace", "etl-42")
///     .query([("page", "2")])
///     .text("hello")
///     .timeout(Duration::from_secs(5));
/// assert_eq!(request.method(), "POST");
/// assert_eq!(request.url(), "http://127.0.0.1:8080/items");
/// ```
///
/// Plain URLs convert into a `GET` request, which is what lets
/// `urls.par_iter().fetch_all()` work on vectors of `&str`, `String` or [`Url`]:
///
/// ```
/// use parfetch::Request;
///
/// let request = Request::from("http://127.0.0.1:8080/");
/// assert_eq!(request.method(), "GET");
/// ```
#[derive(Clone)]
pub struct Request {
    parts: Arc<RequestParts>,
}

/// Shows everything but credentials: a URL's password, the values of credential headers and
/// the request's own credentials are redacted; a body shows its length.
impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let more = self.more();
        let headers: Vec<(&str, std::borrow::Cow<'_, str>)> = more
            .headers
            .iter()
            .map(|(name, value)| (name.as_str(), crate::redact::header_value(name, value)))
            .collect();
        let auth = more.auth.as_ref().map(|auth| match auth {
            Auth::Basic { .. } => "basic <redacted>",
            Auth::Bearer(_) => "bearer <redacted>",
        });
        let mut debug = f.debug_struct("Request");
        debug
            .field("method", &self.parts.method)
            .field("url", &self.url_for_messages())
            .field("headers", &headers)
            .field("query", &more.query)
            .field("body_bytes", &more.body.as_ref().map(Bytes::len))
            .field("auth", &auth)
            .field("timeout", &self.parts.timeout);
        #[cfg(feature = "json")]
        debug.field("id", &more.id);
        debug.finish()
    }
}

/// What a [`Request`] is made of, shared by its clones and copied on the first change.
#[derive(Clone, Debug)]
struct RequestParts {
    method: Method,
    target: Target,
    timeout: Option<Duration>,
    /// `None` for a request made from a URL alone: batches of millions of those are usual, and
    /// the empty parts would take about twice the room of the rest.
    more: Option<Box<MoreParts>>,
}

/// The parts that a request made from a URL alone does not have.
#[derive(Clone, Debug, Default)]
struct MoreParts {
    headers: HeaderMap,
    query: Vec<(String, String)>,
    body: Option<Bytes>,
    auth: Option<Auth>,
    defect: Option<Defect>,
    /// The caller's name for this request: never sent, handed back on its outcome.
    #[cfg(feature = "json")]
    id: Option<serde_json::Value>,
}

/// What a request without [`MoreParts`] has of each part.
static NO_MORE_PARTS: LazyLock<MoreParts> = LazyLock::new(MoreParts::default);

/// Where a request goes: the URL as given and as parsed, the given text kept apart only when
/// the parser rewrote it, so that the usual request holds its URL once.
#[derive(Clone, Debug)]
enum Target {
    /// Parsed, and written as the parser writes it.
    Parsed(Url),
    /// Parsed, but given in another form (`HTTP://Host` for `http://host/`).
    Rewritten { given: String, url: Url },
    Invalid {
        given: String,
        error: url::ParseError,
    },
}

impl Target {
    fn parse(given: impl AsRef<str> + Into<String>) -> Self {
        match Url::parse(given.as_ref()) {
            Ok(url) if url.as_str() == given.as_ref() => Self::Parsed(url),
            Ok(url) => Self::Rewritten {
                given: given.into(),
                url,
            },
            Err(error) => Self::Invalid {
                given: given.into(),
                error,
            },
        }
    }

    fn given(&self) -> &str {
        match self {
            Self::Parsed(url) => url.as_str(),
            Self::Rewritten { given, .. } | Self::Invalid { given, .. } => given,
        }
    }

    fn url(&self) -> Result<&Url, url::ParseError> {
        match self {
            Self::Parsed(url) | Self::Rewritten { url, .. } => Ok(url),
            Self::Invalid { error, .. } => Err(*error),
        }
    }
}

/// Credentials sent with one request.
#[derive(Clone, Debug)]
enum Auth {
    Basic {
        username: String,
        password: Option<String>,
    },
    Bearer(String),
}

/// The first invalid input given to the builder; reported when the request is executed.
#[derive(Clone, Debug)]
enum Defect {
    Header {
        name: String,
    },
    // Only `json` can fail to encode a body.
    #[cfg_attr(not(feature = "json"), allow(dead_code))]
    Body {
        reason: String,
    },
}

impl Request {
    /// A request with the given method and URL.
    ///
    /// ```
    /// use parfetch::{Method, Request};
    ///
    /// let request = Request::new(Method::DELETE, "http://127.0.0.1:8080/items/7");
    /// assert_eq!(request.method(), Method::DELETE);
    /// ```
    pub fn new(method: Method, url: impl AsRef<str>) -> Self {
        Self::to(method, Target::parse(url.as_ref()))
    }

    fn to(method: Method, target: Target) -> Self {
        Self {
            parts: Arc::new(RequestParts {
                method,
                target,
                timeout: None,
                more: None,
            }),
        }
    }

    /// The spec, to change: shared specs are copied first.
    fn parts_mut(&mut self) -> &mut RequestParts {
        Arc::make_mut(&mut self.parts)
    }

    /// The headers, query, body, credentials and defect, to change.
    fn more_mut(&mut self) -> &mut MoreParts {
        self.parts_mut().more.get_or_insert_default()
    }

    fn more(&self) -> &MoreParts {
        self.parts.more.as_deref().unwrap_or(&NO_MORE_PARTS)
    }

    /// A `GET` request.
    pub fn get(url: impl AsRef<str>) -> Self {
        Self::new(Method::GET, url)
    }

    /// A `POST` request.
    pub fn post(url: impl AsRef<str>) -> Self {
        Self::new(Method::POST, url)
    }

    /// A `PUT` request.
    pub fn put(url: impl AsRef<str>) -> Self {
        Self::new(Method::PUT, url)
    }

    /// A `DELETE` request.
    pub fn delete(url: impl AsRef<str>) -> Self {
        Self::new(Method::DELETE, url)
    }

    /// A `HEAD` request.
    pub fn head(url: impl AsRef<str>) -> Self {
        Self::new(Method::HEAD, url)
    }

    /// The same request with another URL: what `Pool::from_urls` does with its template.
    ///
    /// ```
    /// use parfetch::Request;
    ///
    /// let template = Request::post("http://unused.invalid/").header("x-batch", "7");
    /// let request = template.with_url("http://127.0.0.1:8080/a");
    /// assert_eq!(request.url(), "http://127.0.0.1:8080/a");
    /// assert_eq!(request.headers()["x-batch"], "7");
    /// ```
    pub fn with_url(&self, url: impl AsRef<str>) -> Self {
        let mut request = self.clone();
        request.parts_mut().target = Target::parse(url.as_ref());
        request
    }

    /// Adds a header. Names and values are checked when the request is executed: an invalid one
    /// makes this request fail with [`FetchError::InvalidHeader`].
    pub fn header(mut self, name: impl AsRef<str>, value: impl AsRef<str>) -> Self {
        let (name, value) = (name.as_ref(), value.as_ref());
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            (Ok(name), Ok(value)) => {
                self.more_mut().headers.append(name, value);
            }
            _ => self.record(Defect::Header {
                name: name.to_owned(),
            }),
        }
        self
    }

    /// Appends query parameters to the URL, percent-encoded, when the request is sent. They
    /// stay on the request through [`with_url`](Self::with_url).
    ///
    /// ```
    /// use parfetch::Request;
    ///
    /// let request = Request::get("http://127.0.0.1:8080/search").query([("q", "a b"), ("page", "2")]);
    /// assert_eq!(request.url(), "http://127.0.0.1:8080/search"); // as given
    /// ```
    pub fn query<K, V>(mut self, pairs: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let query = &mut self.more_mut().query;
        query.extend(
            pairs
                .into_iter()
                .map(|(key, value)| (key.as_ref().to_owned(), value.as_ref().to_owned())),
        );
        self
    }

    /// Sets the body to these bytes.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.more_mut().body = Some(body.into());
        self
    }

    /// Sets the body to this text, with `Content-Type: text/plain; charset=utf-8` unless a
    /// content type is already set.
    pub fn text(self, text: impl Into<String>) -> Self {
        self.content_type_default("text/plain; charset=utf-8")
            .body(text.into())
    }

    /// Sets the body to `application/x-www-form-urlencoded` pairs.
    ///
    /// ```
    /// use parfetch::Request;
    ///
    /// let request = Request::post("http://127.0.0.1:8080/login").form([("user", "ada"), ("pass", "x&y")]);
    /// assert_eq!(request.body_bytes().unwrap().as_ref(), b"user=ada&pass=x%26y");
    /// ```
    pub fn form<K, V>(self, pairs: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let encoded = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        self.content_type_default("application/x-www-form-urlencoded")
            .body(encoded)
    }

    /// Sets the body to `value` encoded as JSON, with `Content-Type: application/json` unless a
    /// content type is already set. A value that cannot be encoded makes this request fail with
    /// [`FetchError::InvalidBody`].
    ///
    /// ```
    /// use parfetch::Request;
    ///
    /// let request = Request::post("http://127.0.0.1:8080/rows").json(&serde_json::json!({"id": 7}));
    /// assert_eq!(request.body_bytes().unwrap().as_ref(), br#"{"id":7}"#);
    /// ```
    #[cfg(feature = "json")]
    #[cfg_attr(docsrs, doc(cfg(feature = "json")))]
    pub fn json<T: serde::Serialize + ?Sized>(self, value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(encoded) => self.content_type_default("application/json").body(encoded),
            Err(error) => {
                let mut request = self;
                request.record(Defect::Body {
                    reason: error.to_string(),
                });
                request
            }
        }
    }

    /// Names this request with any JSON value: a row key, a record, a line number. The id is
    /// never sent; it stays on the request, so it comes back on the outcome
    /// ([`ThreadResponse::request`](crate::ThreadResponse::request),
    /// [`ThreadException::request`](crate::ThreadException::request)) and, with the feature
    /// `serde`, as `"id"` in its JSON record. A request spec's `"id"` key sets it.
    ///
    /// ```
    /// use parfetch::Request;
    /// use serde_json::json;
    ///
    /// let request = Request::get("http://no host/rows/7").id(json!({"row": 7, "batch": "b1"}));
    /// assert_eq!(request.id_value(), Some(&json!({"row": 7, "batch": "b1"})));
    ///
    /// // The URL is invalid, so nothing is sent: the exception still names its row.
    /// let exception = parfetch::Fetcher::new().execute(request).unwrap_err();
    /// assert_eq!(exception.request().id_value().unwrap()["row"], 7);
    /// ```
    #[cfg(feature = "json")]
    #[cfg_attr(docsrs, doc(cfg(feature = "json")))]
    pub fn id(mut self, id: impl Into<serde_json::Value>) -> Self {
        self.more_mut().id = Some(id.into());
        self
    }

    /// The id set with [`id`](Self::id), if any.
    #[cfg(feature = "json")]
    #[cfg_attr(docsrs, doc(cfg(feature = "json")))]
    pub fn id_value(&self) -> Option<&serde_json::Value> {
        self.more().id.as_ref()
    }

    /// Sets a timeout for this request alone, in place of the fetcher's. It covers connecting,
    /// sending and reading the whole body.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.parts_mut().timeout = Some(timeout);
        self
    }

    /// Sends HTTP basic credentials with this request.
    pub fn basic_auth(
        mut self,
        username: impl Into<String>,
        password: Option<impl Into<String>>,
    ) -> Self {
        self.more_mut().auth = Some(Auth::Basic {
            username: username.into(),
            password: password.map(Into::into),
        });
        self
    }

    /// Sends `Authorization: Bearer <token>` with this request. A token that cannot be a
    /// header value (CR, LF, NUL...) makes this request fail with
    /// [`FetchError::InvalidHeader`], as [`header`](Self::header) does, before anything is sent.
    pub fn bearer_auth(mut self, token: impl Into<String>) -> Self {
        let token = token.into();
        if HeaderValue::from_str(&token).is_err() {
            self.record(Defect::Header {
                name: "authorization".to_owned(),
            });
        }
        self.more_mut().auth = Some(Auth::Bearer(token));
        self
    }

    /// The HTTP method.
    pub fn method(&self) -> &Method {
        &self.parts.method
    }

    /// [`url`](Self::url) with any password in it redacted: for messages and records.
    pub(crate) fn url_for_messages(&self) -> std::borrow::Cow<'_, str> {
        crate::redact::url(self.url())
    }

    /// The URL exactly as it was given, before parsing and query parameters.
    pub fn url(&self) -> &str {
        self.parts.target.given()
    }

    /// The headers set on this request (not those the session adds).
    pub fn headers(&self) -> &HeaderMap {
        &self.more().headers
    }

    /// The query parameters added with [`query`](Self::query), in order.
    pub fn query_pairs(&self) -> &[(String, String)] {
        &self.more().query
    }

    /// The body, if one was set.
    pub fn body_bytes(&self) -> Option<&Bytes> {
        self.more().body.as_ref()
    }

    /// The timeout set on this request, if any.
    pub fn timeout_override(&self) -> Option<Duration> {
        self.parts.timeout
    }

    fn record(&mut self, defect: Defect) {
        self.more_mut().defect.get_or_insert(defect);
    }

    fn content_type_default(mut self, content_type: &'static str) -> Self {
        self.more_mut()
            .headers
            .entry(CONTENT_TYPE)
            .or_insert(HeaderValue::from_static(content_type));
        self
    }

    /// Checks what could not be checked while building: the URL, its scheme, headers and body.
    /// Returns the URL to send to.
    pub(crate) fn checked_url(&self) -> Result<&Url, FetchError> {
        let parts = &*self.parts;
        let url_as_given = || self.url_for_messages().into_owned();
        let url = parts
            .target
            .url()
            .map_err(|reason| FetchError::InvalidUrl {
                url: url_as_given(),
                reason,
            })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(FetchError::UnsupportedScheme {
                url: url_as_given(),
                scheme: url.scheme().to_owned(),
            });
        }
        if url.host().is_none() {
            return Err(FetchError::InvalidUrl {
                url: url_as_given(),
                reason: url::ParseError::EmptyHost,
            });
        }
        match &self.more().defect {
            Some(Defect::Header { name }) => Err(FetchError::InvalidHeader {
                url: url_as_given(),
                name: name.clone(),
            }),
            Some(Defect::Body { reason }) => Err(FetchError::InvalidBody {
                url: url_as_given(),
                reason: reason.clone(),
            }),
            None => Ok(url),
        }
    }

    /// The client request for this spec, sent to `url` (from [`checked_url`](Self::checked_url)).
    pub(crate) fn to_client_request(
        &self,
        client: &reqwest::Client,
        url: &Url,
    ) -> reqwest::RequestBuilder {
        let Some(more) = self.parts.more.as_deref() else {
            return client.request(self.parts.method.clone(), url.clone());
        };
        let mut url = url.clone();
        if !more.query.is_empty() {
            url.query_pairs_mut().extend_pairs(&more.query);
        }
        let mut builder = client
            .request(self.parts.method.clone(), url)
            .headers(more.headers.clone());
        if let Some(body) = &more.body {
            builder = builder.body(body.clone());
        }
        match &more.auth {
            Some(Auth::Basic { username, password }) => {
                builder.basic_auth(username, password.as_ref())
            }
            Some(Auth::Bearer(token)) => builder.bearer_auth(token),
            None => builder,
        }
    }
}

impl From<&str> for Request {
    fn from(url: &str) -> Self {
        Self::get(url)
    }
}

impl From<&&str> for Request {
    fn from(url: &&str) -> Self {
        Self::get(url)
    }
}

impl From<String> for Request {
    fn from(url: String) -> Self {
        Self::to(Method::GET, Target::parse(url))
    }
}

impl From<&String> for Request {
    fn from(url: &String) -> Self {
        Self::get(url)
    }
}

impl From<Url> for Request {
    fn from(url: Url) -> Self {
        Self::to(Method::GET, Target::Parsed(url))
    }
}

impl From<&Url> for Request {
    fn from(url: &Url) -> Self {
        Self::from(url.clone())
    }
}

impl From<&Request> for Request {
    fn from(request: &Request) -> Self {
        request.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejection(request: &Request) -> FetchError {
        request.checked_url().expect_err("rejected")
    }

    #[test]
    fn a_url_in_the_parser_s_own_form_is_held_once_and_any_other_form_as_given_too() {
        assert!(matches!(Target::parse("http://host/a"), Target::Parsed(_)));

        let rewritten = Target::parse("HTTP://Host");
        assert!(matches!(rewritten, Target::Rewritten { .. }));
        assert_eq!(rewritten.given(), "HTTP://Host");
        assert_eq!(rewritten.url().unwrap().as_str(), "http://host/");

        let invalid = Target::parse("not a url");
        assert_eq!(invalid.given(), "not a url");
        assert_eq!(
            invalid.url().unwrap_err(),
            url::ParseError::RelativeUrlWithoutBase
        );
    }

    #[test]
    fn only_http_and_https_urls_with_a_host_pass_the_check() {
        let url = Request::get("http://host/a").checked_url().unwrap().clone();
        assert_eq!(url.as_str(), "http://host/a");
        assert!(Request::get("HTTPS://Host:8443").checked_url().is_ok());

        for (given, scheme) in [("ftp://host/", "ftp"), ("mailto:a@b", "mailto")] {
            match rejection(&Request::get(given)) {
                FetchError::UnsupportedScheme { scheme: found, .. } => assert_eq!(found, scheme),
                other => panic!("{given}: {other:?}"),
            }
        }
        for given in ["http://", "/relative", "http://exa mple/", ""] {
            assert!(
                matches!(
                    rejection(&Request::get(given)),
                    FetchError::InvalidUrl { .. }
                ),
                "{given}"
            );
        }
    }

    #[test]
    fn a_rejected_url_is_named_with_its_password_redacted() {
        let message = rejection(&Request::get("ftp://bob:pw1@host/")).to_string();
        assert!(message.contains("ftp://bob:***@host/"), "{message}");
        assert!(!message.contains("pw1"), "{message}");
    }

    #[test]
    fn an_invalid_header_is_kept_as_the_request_s_first_defect() {
        let request = Request::get("http://host/")
            .header("x-ok", "1")
            .header("bad name", "v")
            .header("x-split", "a\r\nb");
        assert_eq!(request.headers().len(), 1, "only the valid one is kept");
        match rejection(&request) {
            FetchError::InvalidHeader { name, .. } => assert_eq!(name, "bad name"),
            other => panic!("{other:?}"),
        }

        let request = Request::get("http://host/").bearer_auth("t\n0k");
        assert!(matches!(
            rejection(&request),
            FetchError::InvalidHeader { .. }
        ));
    }

    #[test]
    fn a_header_set_twice_is_sent_twice() {
        let request = Request::get("http://host/")
            .header("accept", "a")
            .header("accept", "b");
        assert_eq!(request.headers().get_all("accept").iter().count(), 2);
        assert!(request.checked_url().is_ok());
    }

    #[test]
    fn a_defect_stays_with_a_copy_given_another_url() {
        let template = Request::post("http://unused.invalid/").header("x\0", "v");
        let request = template.with_url("http://host/");
        assert!(matches!(
            rejection(&request),
            FetchError::InvalidHeader { .. }
        ));
    }
}
