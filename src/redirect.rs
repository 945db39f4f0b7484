//! Redirects, followed by `Fetcher::run` hop by hop instead of inside reqwest.
//!
//! reqwest's own redirect handling is out of parfetch's reach: its hops bypass the host limits,
//! the retry policy and the allow-list (a session hook may replace the policy), and every hop
//! carries the client's default headers, where session hooks put credentials. So every session
//! is built with `Policy::none()`, set after the hooks, and a 3xx answer with a `Location`
//! comes back here to become the next hop, which the engine sends like any request: through the
//! allow-list, its host's slot and turn, an in-flight slot and the retry policy.
//!
//! The rules are reqwest's (and browsers'): at most [`Fetcher::DEFAULT_MAX_REDIRECTS`] hops
//! unless set otherwise; 301, 302 and 303 drop the body and its headers and turn any method
//! but `GET` and `HEAD` into `GET`; 307 and 308 send the same method and body again. Bodies are
//! bytes held by the [`Request`], so a body can always be sent again.
//!
//! Headers: a hop to the origin (scheme, host, port) the request was made for carries every
//! header; a hop to any other origin carries only [`SAFE_HEADERS`] and the headers the user
//! opted in with [`redirect_keeps_header`](crate::FetcherBuilder::redirect_keeps_header), and
//! those opted in never travel over `http` once the chain has been on `https`. A session's
//! default headers cannot be taken out of a reqwest client (its builder hides them, and the
//! client adds them to every request it sends), so hops to another origin are sent with a
//! client parfetch builds without any of the session hooks.
//!
//! [`Fetcher::DEFAULT_MAX_REDIRECTS`]: crate::Fetcher::DEFAULT_MAX_REDIRECTS

use reqwest::header::{
    ACCEPT, ACCEPT_ENCODING, ACCEPT_LANGUAGE, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE,
    HeaderMap, HeaderName, LOCATION, TRANSFER_ENCODING, USER_AGENT,
};
use reqwest::{Method, StatusCode};
use url::Url;

use crate::Request;

/// The headers that go to another origin: they describe what the client accepts, not who it is.
pub(crate) const SAFE_HEADERS: [HeaderName; 4] =
    [USER_AGENT, ACCEPT, ACCEPT_LANGUAGE, ACCEPT_ENCODING];

/// The headers that describe a body: they go wherever the body goes, and nowhere else.
const BODY_HEADERS: [HeaderName; 4] = [
    CONTENT_TYPE,
    CONTENT_LENGTH,
    CONTENT_ENCODING,
    TRANSFER_ENCODING,
];

/// One send of a request along its redirect chain.
#[derive(Clone, Debug)]
pub(crate) struct Hop {
    pub(crate) url: Url,
    pub(crate) method: Method,
    /// Redirects followed to get here: 0 for the request itself.
    pub(crate) number: usize,
    /// `false` once a 301, 302 or 303 dropped the body.
    with_body: bool,
    /// `true` if this hop goes to the origin the request was made for.
    pub(crate) same_origin: bool,
    /// `true` once a hop of the chain went over `https`.
    been_secure: bool,
}

impl Hop {
    /// The request itself, to `url` (its checked URL).
    pub(crate) fn first(request: &Request, url: &Url) -> Self {
        // As sent, so that a relative `Location` resolves against what the server saw.
        let mut url = url.clone();
        if !request.query_pairs().is_empty() {
            url.query_pairs_mut().extend_pairs(request.query_pairs());
        }
        Self {
            method: request.method().clone(),
            number: 0,
            with_body: true,
            same_origin: true,
            been_secure: url.scheme() == "https",
            url,
        }
    }

    /// The hop that a `status` answer with `headers` sends this one on to, if it is a redirect
    /// to follow: `Ok(None)` when the answer is the response. `first` is the request's own URL;
    /// `allowed` says whether a URL's host may be asked.
    ///
    /// # Errors
    /// Why the redirect cannot be followed, in words: no usable `Location`, a scheme other
    /// than `http` and `https`, a host outside the allow-list, or more than `max` hops.
    pub(crate) fn next(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        first: &Url,
        max: usize,
        allowed: impl Fn(&Url) -> bool,
    ) -> Result<Option<Self>, String> {
        let keeps_body = match status {
            StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND | StatusCode::SEE_OTHER => false,
            StatusCode::TEMPORARY_REDIRECT | StatusCode::PERMANENT_REDIRECT => true,
            _ => return Ok(None),
        };
        if max == 0 {
            return Ok(None);
        }
        if self.number >= max {
            return Err(format!("more than {max} redirects"));
        }
        let location = headers
            .get(LOCATION)
            .ok_or_else(|| format!("a {} answer without a Location", status.as_u16()))?;
        let url = std::str::from_utf8(location.as_bytes())
            .ok()
            .and_then(|location| self.url.join(location).ok())
            .ok_or_else(|| {
                format!(
                    "the Location {:?} is no URL",
                    crate::redact::url(&String::from_utf8_lossy(location.as_bytes()))
                )
            })?;
        let shown = || crate::redact::url(url.as_str()).into_owned();
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "redirect to {} refused: only http and https are followed",
                shown()
            ));
        }
        if url.host().is_none() {
            return Err(format!("redirect to {} refused: it names no host", shown()));
        }
        if !allowed(&url) {
            return Err(format!(
                "redirect to {} refused: its host is not in the allow-list",
                shown()
            ));
        }
        let method = match self.method {
            _ if keeps_body => self.method.clone(),
            Method::GET | Method::HEAD => self.method.clone(),
            _ => Method::GET,
        };
        Ok(Some(Self {
            same_origin: url.origin() == first.origin(),
            been_secure: self.been_secure || url.scheme() == "https",
            method,
            number: self.number + 1,
            with_body: self.with_body && keeps_body,
            url,
        }))
    }

    /// `true` if this hop goes over `http` after the chain was on `https`.
    fn downgraded(&self) -> bool {
        self.been_secure && self.url.scheme() == "http"
    }

    /// What this hop sends for `request`, whose client form, built for its first URL, is
    /// `built`: `built` itself for the first hop, and for the others their URL and method, with
    /// the headers and body the rules above let through.
    pub(crate) fn outgoing(
        &self,
        request: &Request,
        built: reqwest::Request,
        keep: &[HeaderName],
    ) -> reqwest::Request {
        if self.number == 0 {
            return built;
        }
        let mut headers = if self.same_origin {
            built.headers().clone()
        } else {
            let mut kept = HeaderMap::new();
            let opted_in = if self.downgraded() { &[][..] } else { keep };
            for name in SAFE_HEADERS.iter().chain(opted_in).chain(&BODY_HEADERS) {
                for value in built.headers().get_all(name) {
                    kept.append(name.clone(), value.clone());
                }
            }
            kept
        };
        if !self.with_body {
            for name in &BODY_HEADERS {
                headers.remove(name);
            }
        }
        let mut outgoing = reqwest::Request::new(self.method.clone(), self.url.clone());
        *outgoing.headers_mut() = headers;
        if self.with_body {
            *outgoing.body_mut() = request.body_bytes().cloned().map(Into::into);
        }
        outgoing
    }
}
