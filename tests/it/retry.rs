//! Retries: what is sent again, how often, after how long, and how it is reported.

use crate::support;

use std::time::{Duration, Instant};

use parfetch::prelude::*;
use parfetch::{FetchError, Fetcher, Pool, Request, RetryPolicy};
use rayon::prelude::*;
use support::{RawServer, TestServer, read_head, refused_url};

fn fast_retries(attempts: u32) -> RetryPolicy {
    RetryPolicy::new(attempts).backoff(Duration::from_millis(5), Duration::from_millis(50))
}

fn fetcher(policy: RetryPolicy) -> Fetcher {
    Fetcher::builder()
        .num_processes(4)
        .timeout(Duration::from_secs(5))
        .retry(policy)
        .build()
        .unwrap()
}

#[test]
fn failing_statuses_are_retried_until_success_and_attempts_are_reported() {
    let server = TestServer::start();
    let requests: Vec<String> = (0..20)
        .map(|i| server.url(&format!("/flaky/k{i}?fail={}", i % 3)))
        .collect();

    let (responses, exceptions) = requests
        .par_iter()
        .fetch_all_with(&fetcher(fast_retries(3)));

    assert!(exceptions.is_empty());
    for (i, response) in responses.iter().enumerate() {
        assert_eq!(response.status(), 200);
        assert_eq!(response.attempts(), 1 + (i as u32 % 3));
        assert_eq!(server.stats().flaky_hits(&format!("k{i}")), 1 + i % 3);
    }
}

#[test]
fn the_last_attempt_is_returned_when_retries_run_out() {
    let server = TestServer::start();
    let response = fetcher(fast_retries(3))
        .execute(server.url("/flaky/out?fail=10&status=502"))
        .unwrap();
    assert_eq!(response.status(), 502);
    assert_eq!(response.attempts(), 3);
    assert_eq!(server.stats().flaky_hits("out"), 3);
}

#[test]
fn without_a_policy_every_request_is_sent_once() {
    let server = TestServer::start();
    let response = Fetcher::new()
        .execute(server.url("/flaky/once?fail=1"))
        .unwrap();
    assert_eq!((response.status().as_u16(), response.attempts()), (503, 1));
    let invalid = Fetcher::new().execute("not a url").unwrap_err();
    assert_eq!(invalid.attempts(), 0, "rejected before sending");
}

#[test]
fn retry_after_in_seconds_is_honoured() {
    let server = TestServer::start();
    let policy = RetryPolicy::new(2).backoff(Duration::from_millis(1), Duration::from_secs(5));
    let started = Instant::now();
    let response = fetcher(policy)
        .execute(server.url("/flaky/ra?fail=1&status=429&retry-after=1"))
        .unwrap();
    assert_eq!((response.status().as_u16(), response.attempts()), (200, 2));
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited as asked"
    );
}

#[test]
fn retry_after_as_an_http_date_is_honoured() {
    let server = TestServer::start();
    let policy = RetryPolicy::new(2).backoff(Duration::from_millis(1), Duration::from_secs(5));
    // A date in the past means "now".
    let response = fetcher(policy)
        .execute(server.url(
            "/flaky/date?fail=1&status=503&retry-after=Wed,%2021%20Oct%202015%2007:28:00%20GMT",
        ))
        .unwrap();
    assert_eq!((response.status().as_u16(), response.attempts()), (200, 2));
}

#[test]
fn a_retry_after_longer_than_the_maximum_backoff_returns_the_response() {
    let server = TestServer::start();
    let started = Instant::now();
    let response = fetcher(fast_retries(5))
        .execute(server.url("/flaky/long?fail=1&status=503&retry-after=3600"))
        .unwrap();
    assert_eq!((response.status().as_u16(), response.attempts()), (503, 1));
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn non_idempotent_methods_are_not_retried_unless_asked() {
    let server = TestServer::start();
    let post = Request::post(server.url("/flaky/post?fail=1")).text("x");
    let response = fetcher(fast_retries(3)).execute(&post).unwrap();
    assert_eq!((response.status().as_u16(), response.attempts()), (503, 1));

    let post = Request::post(server.url("/flaky/post2?fail=1")).text("x");
    let response = fetcher(fast_retries(3).retry_non_idempotent(true))
        .execute(post)
        .unwrap();
    assert_eq!((response.status().as_u16(), response.attempts()), (200, 2));
}

#[test]
fn connect_errors_are_retried_even_for_posts_since_nothing_was_sent() {
    let refused = refused_url();
    let exception = fetcher(fast_retries(3))
        .execute(Request::post(&refused).text("x"))
        .unwrap_err();
    assert!(exception.error().is_connect());
    assert_eq!(exception.attempts(), 3);
}

#[test]
fn timeouts_are_retried_and_each_attempt_reaches_the_server() {
    let server = RawServer::start(|mut stream| {
        read_head(&mut stream);
        std::thread::sleep(Duration::from_secs(2));
    });
    let fetcher = Fetcher::builder()
        .timeout(Duration::from_millis(100))
        .retry(fast_retries(3))
        .build()
        .unwrap();
    let exception = fetcher.execute(server.url("/")).unwrap_err();
    assert!(exception.error().is_timeout());
    assert_eq!(exception.attempts(), 3);
    assert_eq!(server.accepted(), 3);
}

#[test]
fn invalid_requests_are_never_retried() {
    let exception = fetcher(fast_retries(5))
        .execute("ftp://127.0.0.1/x")
        .unwrap_err();
    assert!(matches!(
        exception.error(),
        FetchError::UnsupportedScheme { .. }
    ));
    assert_eq!(exception.attempts(), 0);
}

#[test]
fn a_predicate_decides_what_is_worth_retrying() {
    let server = TestServer::start();
    let policy = fast_retries(4).retry_if(|outcome| {
        outcome
            .as_ref()
            .is_ok_and(|response| response.status() == 404)
    });
    let fetcher = fetcher(policy);
    let not_found = fetcher
        .execute(server.url("/flaky/p404?fail=2&status=404"))
        .unwrap();
    assert_eq!(
        (not_found.status().as_u16(), not_found.attempts()),
        (200, 3)
    );
    let unavailable = fetcher
        .execute(server.url("/flaky/p503?fail=2&status=503"))
        .unwrap();
    assert_eq!(
        (unavailable.status().as_u16(), unavailable.attempts()),
        (503, 1),
        "the predicate replaces the default statuses"
    );
}

#[test]
fn pools_retry_too() {
    let server = TestServer::start();
    let urls: Vec<String> = (0..10)
        .map(|i| server.url(&format!("/flaky/pool{i}?fail=1")))
        .collect();
    let mut pool = Pool::builder()
        .num_processes(3)
        .fetcher(|fetcher| fetcher.retry(fast_retries(2)))
        .from_urls(&urls)
        .unwrap();
    pool.join_all();
    let responses: Vec<_> = pool.responses().collect();
    assert_eq!(responses.len(), 10);
    assert!(
        responses
            .iter()
            .all(|r| r.status() == 200 && r.attempts() == 2)
    );
}

#[test]
fn multiplexed_workers_retry_without_holding_up_the_others() {
    let server = TestServer::start();
    let urls: Vec<String> = (0..60)
        .map(|i| server.url(&format!("/flaky/m{i}?fail={}", i % 2)))
        .collect();
    let fetcher = Fetcher::builder()
        .num_processes(2)
        .concurrency(16)
        .retry(fast_retries(2))
        .build()
        .unwrap();
    let outcomes: Vec<_> = urls.par_iter().fetch_with(&fetcher).collect();
    for (i, outcome) in outcomes.iter().enumerate() {
        let response = outcome.as_ref().unwrap();
        assert_eq!(response.request().url(), urls[i]);
        assert_eq!(
            (response.status().as_u16(), response.attempts()),
            (200, 1 + i as u32 % 2)
        );
    }
}

#[test]
fn a_panicking_predicate_means_no_retry_and_loses_nothing() {
    let server = TestServer::start();
    let urls: Vec<String> = (0..20)
        .map(|i| server.url(&format!("/flaky/panic{i}?fail=1")))
        .collect();
    let fetcher = fetcher(fast_retries(3).retry_if(|_| panic!("predicate exploded")));
    let (responses, exceptions) = urls.par_iter().fetch_all_with(&fetcher);
    assert!(exceptions.is_empty());
    assert_eq!(responses.len(), 20);
    assert!(
        responses
            .iter()
            .all(|r| r.status() == 503 && r.attempts() == 1)
    );
}
