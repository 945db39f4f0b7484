//! [`RetryPolicy`]: when a failed attempt is sent again, and after how long.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reqwest::header::RETRY_AFTER;
use reqwest::{Method, StatusCode};

use crate::FetchResult;

type RetryPredicate = Arc<dyn Fn(&FetchResult) -> bool + Send + Sync>;

/// When to send a request again: at most `max_attempts` attempts, with exponential backoff and
/// jitter between them, and `Retry-After` honoured on `429` and `503`.
///
/// By default an attempt is retried when it failed in a way that may pass
/// ([`FetchError::is_retryable`](crate::FetchError::is_retryable): connect, timeout, transport,
/// body errors) or got `429`, `502`, `503` or `504`; and only for idempotent methods (`GET`,
/// `HEAD`, `PUT`, `DELETE`, `OPTIONS`, `TRACE`), except connect errors, where nothing was sent.
/// [`retry_if`](Self::retry_if) replaces the first half of that rule,
/// [`retry_non_idempotent`](Self::retry_non_idempotent) the second.
///
/// Every [`ThreadResponse`](crate::ThreadResponse) and
/// [`ThreadException`](crate::ThreadException) says how many attempts it took.
///
/// ```
/// use std::time::Duration;
/// use parfetch::{Fetcher, RetryPolicy};
///
/// let fetcher = Fetcher::builder()
///     .retry(
///         RetryPolicy::new(4)
///             .backoff(Duration::from_millis(200), Duration::from_secs(5))
///             .retry_statuses([429, 503]),
///     )
///     .build()?;
/// # Ok::<(), parfetch::BuildError>(())
/// ```
#[derive(Clone)]
pub struct RetryPolicy {
    max_attempts: u32,
    base_backoff: Duration,
    max_backoff: Duration,
    statuses: Vec<StatusCode>,
    non_idempotent: bool,
    predicate: Option<RetryPredicate>,
}

impl RetryPolicy {
    /// At most `max_attempts` attempts in all (1 means no retry), with the defaults: backoff from
    /// 100 ms doubling up to 10 s, retry on `429`, `502`, `503`, `504`. `0` is refused by
    /// [`FetcherBuilder::build`](crate::FetcherBuilder::build).
    pub fn new(max_attempts: u32) -> Self {
        Self {
            max_attempts,
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            statuses: [429, 502, 503, 504]
                .into_iter()
                .filter_map(|code| StatusCode::from_u16(code).ok())
                .collect(),
            non_idempotent: false,
            predicate: None,
        }
    }

    /// Waits `base` before the first retry, doubling each time up to `max`; each wait is drawn
    /// at random between half and all of that, so that workers do not retry in step.
    /// A `Retry-After` longer than `max` is not waited for: the response is returned.
    pub fn backoff(mut self, base: Duration, max: Duration) -> Self {
        self.base_backoff = base;
        self.max_backoff = max.max(base);
        self
    }

    /// The response statuses that are retried (default `429`, `502`, `503`, `504`).
    pub fn retry_statuses(mut self, statuses: impl IntoIterator<Item = u16>) -> Self {
        self.statuses = statuses
            .into_iter()
            .filter_map(|code| StatusCode::from_u16(code).ok())
            .collect();
        self
    }

    /// Retries `POST`, `PATCH` and other non-idempotent methods too. Off by default: a request
    /// that failed after it was sent may have taken effect.
    pub fn retry_non_idempotent(mut self, retry: bool) -> Self {
        self.non_idempotent = retry;
        self
    }

    /// Decides what is worth retrying, in place of the default (retryable errors and the retry
    /// statuses). Idempotency still applies. A predicate that panics counts as "do not retry".
    ///
    /// ```
    /// use parfetch::RetryPolicy;
    ///
    /// // Retry timeouts and 5xx, nothing else.
    /// let policy = RetryPolicy::new(3).retry_if(|outcome| match outcome {
    ///     Ok(response) => response.status().is_server_error(),
    ///     Err(exception) => exception.error().is_timeout(),
    /// });
    /// # let _ = policy;
    /// ```
    pub fn retry_if<F>(mut self, predicate: F) -> Self
    where
        F: Fn(&FetchResult) -> bool + Send + Sync + 'static,
    {
        self.predicate = Some(Arc::new(predicate));
        self
    }

    /// The most attempts in all.
    pub(crate) fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// How long to wait before attempt `attempts + 1`, or `None` to hand `outcome` back.
    pub(crate) fn delay_before_retry(
        &self,
        attempts: u32,
        outcome: &FetchResult,
    ) -> Option<Duration> {
        if attempts >= self.max_attempts || !self.allows_method(outcome) {
            return None;
        }
        let worth_it = match &self.predicate {
            // A predicate that panics is taken as "no": the outcome is handed back as it is.
            Some(predicate) => {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| predicate(outcome)))
                    .unwrap_or(false)
            }
            None => match outcome {
                Ok(response) => self.statuses.contains(&response.status()),
                Err(exception) => exception.error().is_retryable(),
            },
        };
        if !worth_it {
            return None;
        }
        match outcome.as_ref().ok().and_then(retry_after) {
            Some(asked) if asked > self.max_backoff => None,
            Some(asked) => Some(asked),
            None => Some(self.backoff_before(attempts)),
        }
    }

    fn allows_method(&self, outcome: &FetchResult) -> bool {
        let (method, nothing_sent) = match outcome {
            Ok(response) => (response.request().method(), false),
            Err(exception) => (exception.request().method(), exception.error().is_connect()),
        };
        self.non_idempotent || nothing_sent || is_idempotent(method)
    }

    /// Exponential backoff with "equal jitter": half the step fixed, half random.
    fn backoff_before(&self, attempts: u32) -> Duration {
        let doublings = attempts.saturating_sub(1).min(31);
        let step = self
            .base_backoff
            .saturating_mul(1 << doublings)
            .min(self.max_backoff);
        let half = step / 2;
        half + half.mul_f64(fastrand::f64())
    }
}

impl fmt::Debug for RetryPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryPolicy")
            .field("max_attempts", &self.max_attempts)
            .field("base_backoff", &self.base_backoff)
            .field("max_backoff", &self.max_backoff)
            .field("statuses", &self.statuses)
            .field("non_idempotent", &self.non_idempotent)
            .field("predicate", &self.predicate.as_ref().map(|_| "set"))
            .finish()
    }
}

pub(crate) fn is_idempotent(method: &Method) -> bool {
    [
        Method::GET,
        Method::HEAD,
        Method::PUT,
        Method::DELETE,
        Method::OPTIONS,
        Method::TRACE,
    ]
    .contains(method)
}

/// The wait a `429` or `503` asks for, in seconds or as an HTTP date.
fn retry_after(response: &crate::ThreadResponse) -> Option<Duration> {
    if !matches!(
        response.status(),
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
    ) {
        return None;
    }
    let value = response.headers().get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_stops_at_the_maximum() {
        let policy =
            RetryPolicy::new(10).backoff(Duration::from_millis(100), Duration::from_secs(1));
        for _ in 0..200 {
            let first = policy.backoff_before(1);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
            let third = policy.backoff_before(3);
            assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400));
            let late = policy.backoff_before(40);
            assert!(late >= Duration::from_millis(500) && late <= Duration::from_secs(1));
        }
        let draws: std::collections::HashSet<Duration> =
            (0..50).map(|_| policy.backoff_before(2)).collect();
        assert!(draws.len() > 1, "jittered");
    }

    const URL: &str = "http://host/";

    fn response(method: Method, status: u16, retry_after: Option<&str>) -> FetchResult {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(value) = retry_after {
            headers.insert(RETRY_AFTER, value.parse().unwrap());
        }
        let received = crate::session::Received {
            status: StatusCode::from_u16(status).unwrap(),
            headers,
            url: url::Url::parse(URL).unwrap(),
            body: bytes::Bytes::new(),
        };
        let request = crate::Request::new(method, URL);
        Ok(crate::ThreadResponse::new(
            request,
            received,
            Duration::ZERO,
            1,
        ))
    }

    fn exception(method: Method, error: crate::FetchError) -> FetchResult {
        Err(crate::ThreadException::new(
            crate::Request::new(method, URL),
            error,
            1,
        ))
    }

    fn timeout() -> crate::FetchError {
        crate::FetchError::Timeout {
            url: URL.to_owned(),
            timeout: Duration::from_secs(1),
        }
    }

    /// A policy whose backoff is one fixed value, `step`, so that delays can be compared.
    fn fixed(step: Duration) -> RetryPolicy {
        RetryPolicy::new(3).backoff(step * 2, step * 2)
    }

    #[test]
    fn the_retry_statuses_and_retryable_errors_are_retried_up_to_the_last_attempt() {
        let policy = RetryPolicy::new(3);
        for status in [429, 502, 503, 504] {
            assert!(
                policy
                    .delay_before_retry(1, &response(Method::GET, status, None))
                    .is_some(),
                "{status}"
            );
        }
        for status in [200, 404, 500] {
            assert!(
                policy
                    .delay_before_retry(1, &response(Method::GET, status, None))
                    .is_none(),
                "{status}"
            );
        }
        assert!(
            policy
                .delay_before_retry(2, &exception(Method::GET, timeout()))
                .is_some()
        );
        assert!(
            policy
                .delay_before_retry(3, &exception(Method::GET, timeout()))
                .is_none(),
            "the third attempt was the last"
        );
        let invalid = crate::FetchError::InvalidUrl {
            url: URL.to_owned(),
            reason: url::ParseError::EmptyHost,
        };
        assert!(
            policy
                .delay_before_retry(1, &exception(Method::GET, invalid))
                .is_none()
        );
    }

    #[test]
    fn a_non_idempotent_request_that_may_have_been_sent_is_retried_only_when_told() {
        let outcome = exception(Method::POST, timeout());
        assert!(
            RetryPolicy::new(3)
                .delay_before_retry(1, &outcome)
                .is_none()
        );
        assert!(
            RetryPolicy::new(3)
                .retry_non_idempotent(true)
                .delay_before_retry(1, &outcome)
                .is_some()
        );
        assert!(
            RetryPolicy::new(3)
                .retry_if(|_| true)
                .delay_before_retry(1, &response(Method::PATCH, 200, None))
                .is_none(),
            "a predicate decides what, not which methods"
        );
    }

    #[test]
    fn a_predicate_that_panics_means_no_retry() {
        let policy = RetryPolicy::new(3).retry_if(|_| panic!("the predicate's own bug"));
        assert!(
            policy
                .delay_before_retry(1, &response(Method::GET, 503, None))
                .is_none()
        );
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date_replaces_the_backoff_up_to_its_maximum() {
        let policy = fixed(Duration::from_secs(5));
        let asked = |value: &str, status: u16| {
            policy.delay_before_retry(1, &response(Method::GET, status, Some(value)))
        };
        assert_eq!(asked("3", 429), Some(Duration::from_secs(3)));
        assert_eq!(asked(" 0 ", 503), Some(Duration::ZERO));
        assert_eq!(
            asked("11", 503),
            None,
            "longer than the maximum: handed back"
        );
        let in_a_while = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(8));
        let waited = asked(&in_a_while, 503).unwrap();
        assert!(
            waited > Duration::from_secs(6) && waited <= Duration::from_secs(8),
            "{waited:?}"
        );
        let past = httpdate::fmt_http_date(SystemTime::now() - Duration::from_secs(60));
        assert_eq!(asked(&past, 429), Some(Duration::ZERO));
        // Not a wait: the backoff applies.
        let backoff = asked("soon", 503).unwrap();
        assert!(backoff >= Duration::from_secs(5) && backoff <= Duration::from_secs(10));
        // Only 429 and 503 carry a wait; a 502's header is ignored.
        let backoff = asked("1", 502).unwrap();
        assert!(backoff >= Duration::from_secs(5), "{backoff:?}");
    }

    #[test]
    fn backoff_saturates_instead_of_overflowing() {
        let day = Duration::from_secs(86_400);
        let policy = RetryPolicy::new(u32::MAX).backoff(day, day * 365);
        // A day doubled 2^31 times, capped at a year.
        let late = policy.backoff_before(u32::MAX);
        assert!(late >= day * 365 / 2 && late <= day * 365, "{late:?}");
        let policy = RetryPolicy::new(3).backoff(Duration::ZERO, Duration::ZERO);
        assert_eq!(policy.backoff_before(5), Duration::ZERO);
    }

    #[test]
    fn zero_attempts_are_kept_for_build_to_refuse() {
        assert_eq!(RetryPolicy::new(0).max_attempts(), 0);
    }
}
