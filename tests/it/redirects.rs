//! Redirects, followed by parfetch hop by hop: each hop checked against the allow-list, under
//! its own host's limits and the retry policy, with only safe headers going to other origins.

use crate::support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parfetch::prelude::*;
use parfetch::reqwest::Certificate;
use parfetch::reqwest::redirect::Policy;
use parfetch::{ClientBuilder, FetchError, Fetcher, Request, RetryPolicy};
use rayon::prelude::*;
use serde_json::Value;
use support::{RawServer, TLS_CA_PEM, TestServer, TlsServer, read_head, write_all};

fn echoed(fetcher: &Fetcher, request: impl Into<Request>) -> Value {
    let response = fetcher.execute(request).unwrap();
    assert_eq!(response.status(), 200, "{}", response.text());
    response.json().unwrap()
}

fn redirect_error(outcome: Result<parfetch::ThreadResponse, parfetch::ThreadException>) -> String {
    let exception = outcome.unwrap_err();
    match exception.error() {
        FetchError::Redirect { reason, .. } => reason.clone(),
        other => panic!("not a redirect error: {other}"),
    }
}

/// A `Location` with another scheme, none, or one that is no URL is a `Redirect` error, sent
/// once: retrying it cannot help.
#[test]
fn a_redirect_that_cannot_be_followed_is_a_redirect_error_sent_once() {
    let server = TestServer::start();
    let fetcher = Fetcher::builder()
        .retry(RetryPolicy::new(4).backoff(Duration::ZERO, Duration::ZERO))
        .build()
        .unwrap();
    let targets = [
        "ftp://127.0.0.1/file",
        "gopher://127.0.0.1/1",
        "ws://127.0.0.1/socket",
        "data:text/plain,hello",
        "file:///etc/passwd",
    ];
    for target in targets {
        let outcome = fetcher.execute(server.url(&format!("/redirect-to?to={target}")));
        let exception = outcome.as_ref().unwrap_err();
        assert!(!exception.error().is_retryable(), "{target}");
        assert_eq!(exception.attempts(), 1, "{target}");
        let reason = redirect_error(outcome);
        assert!(reason.contains("only http and https"), "{target}: {reason}");
    }
    let no_location = redirect_error(fetcher.execute(server.url("/redirect-with/302")));
    assert!(no_location.contains("without a Location"), "{no_location}");
    let no_url = redirect_error(fetcher.execute(server.url("/redirect-with/307?to=http://[::1")));
    assert!(no_url.contains("is no URL"), "{no_url}");
    assert_eq!(server.stats().requests(), targets.len() + 2);
}

/// A hook's redirect policy does not matter: the allow-list holds, the hook's closure is never
/// called, and `max_redirects(0)` hands the 3xx back.
#[test]
fn a_hooks_redirect_policy_cannot_bypass_the_allow_list() {
    let allowed = TestServer::start();
    let elsewhere = TestServer::start();
    let away = allowed.url(&format!(
        "/redirect-to?to={}",
        elsewhere.url("/echo").replace("127.0.0.1", "localhost")
    ));
    let called = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&called);
    let custom = Policy::custom(move |attempt| {
        counted.fetch_add(1, Ordering::SeqCst);
        attempt.follow()
    });
    let custom = std::sync::Mutex::new(Some(custom));
    let limited = Fetcher::builder()
        .allowed_hosts(["127.0.0.1"])
        .initializer(|session| session.redirect(Policy::limited(10)))
        .build()
        .unwrap();
    let customised = Fetcher::builder()
        .allowed_hosts(["127.0.0.1"])
        .num_processes(1)
        .initializer(move |session| match custom.lock().unwrap().take() {
            Some(policy) => session.redirect(policy),
            None => session,
        })
        .build()
        .unwrap();
    for fetcher in [&limited, &customised] {
        let reason = redirect_error(fetcher.execute(&away));
        assert!(reason.contains("allow-list"), "{reason}");
    }
    assert_eq!(elsewhere.stats().requests(), 0);
    assert_eq!(called.load(Ordering::SeqCst), 0);

    let unfollowed = Fetcher::builder()
        .max_redirects(0)
        .initializer(|session| session.redirect(Policy::limited(10)))
        .build()
        .unwrap();
    let response = unfollowed.execute(allowed.url("/redirect")).unwrap();
    assert_eq!(response.status(), 302);
    assert_eq!(response.headers()["location"], "/echo");
}

/// 301, 302 and 303 turn a POST into a GET without its body; 307 and 308 send it again.
#[test]
fn methods_and_bodies_follow_the_usual_rules() {
    let server = TestServer::start();
    let fetcher = Fetcher::new();
    for code in [301, 302, 303] {
        let request =
            Request::post(server.url(&format!("/redirect-with/{code}?to=/echo"))).text("payload");
        let echo = echoed(&fetcher, request);
        assert_eq!(echo["method"], "GET", "{code}");
        assert_eq!(echo["body"], "", "{code}");
        assert!(
            echo["headers"].get("content-type").is_none(),
            "{code}: {echo}"
        );
    }
    for code in [307, 308] {
        let request =
            Request::put(server.url(&format!("/redirect-with/{code}?to=/echo"))).text("payload");
        let echo = echoed(&fetcher, request);
        assert_eq!(echo["method"], "PUT", "{code}");
        assert_eq!(echo["body"], "payload", "{code}");
        assert_eq!(
            echo["headers"]["content-type"], "text/plain; charset=utf-8",
            "{code}"
        );
    }
    let head = fetcher
        .execute(Request::head(server.url("/redirect-with/303?to=/n")))
        .unwrap();
    assert_eq!(head.status(), 200);
    assert!(head.url().as_str().ends_with("/n"), "{}", head.url());
}

/// At most `max_redirects` hops (10 by default); a loop ends there; 0 follows none; more than
/// `Fetcher::MAX_REDIRECTS` is refused.
#[test]
fn the_number_of_hops_is_bounded_and_settable() {
    let server = TestServer::start();
    let looping = RawServer::start(|mut stream| {
        while !read_head(&mut stream).is_empty() {
            write_all(
                &mut stream,
                b"HTTP/1.1 302 Found\r\nlocation: /again\r\ncontent-length: 0\r\n\r\n",
            );
        }
    });
    let reason = redirect_error(Fetcher::new().execute(looping.url("/")));
    assert!(reason.contains("more than 10 redirects"), "{reason}");

    let two_hops = server.url("/redirect-to?to=/redirect-to?to=/echo");
    let two = Fetcher::builder().max_redirects(2).build().unwrap();
    assert_eq!(two.execute(&two_hops).unwrap().status(), 200);
    let one = Fetcher::builder().max_redirects(1).build().unwrap();
    let reason = redirect_error(one.execute(&two_hops));
    assert!(reason.contains("more than 1 redirects"), "{reason}");
    let none = Fetcher::builder().max_redirects(0).build().unwrap();
    assert_eq!(none.execute(&two_hops).unwrap().status(), 302);

    let error = Fetcher::builder().max_redirects(101).build().unwrap_err();
    assert_eq!(
        error.to_string(),
        "max_redirects must be from 0 to 100, not 101"
    );
    let error = Fetcher::builder()
        .redirect_keeps_header("bad header")
        .build()
        .unwrap_err();
    assert!(
        error.to_string().starts_with("redirect_keeps_header"),
        "{error}"
    );
}

/// URLs on `n` names (`r0.test`, ...) of `redirector`, each redirecting to `to`, and a fetcher
/// from `builder` that resolves those names.
fn redirected_from_other_names(
    redirector: &TestServer,
    n: usize,
    to: &str,
    builder: parfetch::FetcherBuilder,
) -> (Vec<String>, Fetcher) {
    let addr: std::net::SocketAddr = redirector.base()["http://".len()..].parse().unwrap();
    let urls = (0..n)
        .map(|i| format!("http://r{i}.test:{}/redirect-to?to={to}", addr.port()))
        .collect();
    let fetcher = builder
        .initializer(move |mut session| {
            for i in 0..n {
                session = session.resolve(&format!("r{i}.test"), addr);
            }
            session
        })
        .build()
        .unwrap();
    (urls, fetcher)
}

/// Each hop takes its own host's slot: requests redirected to a host from other names count
/// against that host's `max_per_host`, as direct ones do (counted at the server).
#[test]
fn every_hop_takes_its_own_hosts_slot() {
    let target = TestServer::start();
    let redirector = TestServer::start();
    let slow = target.url("/delay/50");
    let (redirected, fetcher) = redirected_from_other_names(
        &redirector,
        8,
        &slow,
        Fetcher::builder().concurrency(16).max_per_host(1),
    );
    let urls: Vec<String> = redirected
        .into_iter()
        .flat_map(|url| [url, slow.clone()])
        .collect();

    let (responses, exceptions) = urls.par_iter().fetch_all_with(&fetcher);

    assert!(exceptions.is_empty(), "{exceptions:?}");
    assert_eq!(responses.len(), 16);
    assert_eq!(target.stats().requests(), 16);
    assert_eq!(target.stats().max_in_flight(), 1);
    let progress = fetcher.progress();
    assert_eq!(
        (progress.done, progress.failed),
        (16, 0),
        "items are counted, not hops"
    );
}

/// Each hop waits for its own host's turn: four requests redirected from four names to one
/// host at 10 a second take at least 300 ms.
#[test]
fn every_hop_waits_for_its_own_hosts_turn() {
    let target = TestServer::start();
    let redirector = TestServer::start();
    let (urls, fetcher) = redirected_from_other_names(
        &redirector,
        4,
        &target.url("/n"),
        Fetcher::builder().per_host_rate(10.0),
    );
    let started = Instant::now();
    let (responses, _) = urls.par_iter().fetch_all_with(&fetcher);
    assert_eq!(responses.len(), 4);
    assert!(
        started.elapsed() >= Duration::from_millis(290),
        "{:?}",
        started.elapsed()
    );
}

/// The retry policy applies to the hop that failed, not the chain: the redirect is asked once.
#[test]
fn a_failing_hop_is_retried_alone() {
    let server = TestServer::start();
    let fetcher = Fetcher::builder()
        .retry(RetryPolicy::new(3).backoff(Duration::ZERO, Duration::ZERO))
        .build()
        .unwrap();
    let response = fetcher
        .execute(server.url("/redirect-to?to=/flaky/hop?fail=2"))
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.attempts(), 3);
    assert_eq!(server.stats().flaky_hits("hop"), 3);
    assert_eq!(
        server.stats().requests(),
        4,
        "the redirect once, the hop three times"
    );
}

/// The request's timeout bounds the whole chain, not each hop.
#[test]
fn the_timeout_covers_the_whole_chain() {
    let slow_hops = RawServer::start(|mut stream| {
        while !read_head(&mut stream).is_empty() {
            std::thread::sleep(Duration::from_millis(300));
            write_all(
                &mut stream,
                b"HTTP/1.1 302 Found\r\nlocation: /next\r\ncontent-length: 0\r\n\r\n",
            );
        }
    });
    let fetcher = Fetcher::builder()
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let started = Instant::now();
    let exception = fetcher.execute(slow_hops.url("/")).unwrap_err();
    assert!(exception.error().is_timeout(), "{exception}");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
}

/// A fetcher whose session carries credentials (an `auth_generator`'s default headers) and a
/// user agent (an `initializer`'s).
fn fetcher_with_session_credentials(builder: parfetch::FetcherBuilder) -> Fetcher {
    builder
        .auth_generator(|session| {
            let mut headers = parfetch::header::HeaderMap::new();
            headers.insert("authorization", "Bearer session-secret".parse().unwrap());
            headers.insert("x-api-key", "session-key".parse().unwrap());
            headers.insert("cookie", "sid=session-cookie".parse().unwrap());
            session.default_headers(headers)
        })
        .build()
        .unwrap()
}

fn with_request_headers(url: String) -> Request {
    Request::get(url)
        .header("x-api-key", "request-key")
        .header("cookie", "c=request-cookie")
        .header("x-trace", "t-1")
        .header("user-agent", "etl/1.0")
        .header("accept", "application/json")
        .header("accept-language", "en")
}

const SECRETS: [&str; 6] = [
    "session-secret",
    "session-key",
    "session-cookie",
    "request-key",
    "request-cookie",
    "request-token",
];

fn assert_no_secret(echo: &Value) {
    let headers = echo["headers"].to_string();
    for secret in SECRETS {
        assert!(!headers.contains(secret), "{secret} went along: {headers}");
    }
}

/// On a hop to another origin (here another port) only the safe headers go along: not the
/// session's default headers, not the request's own credentials or custom headers. On a hop to
/// the same origin everything does.
#[test]
fn only_safe_headers_go_to_another_origin() {
    let first = TestServer::start();
    let other = TestServer::start();
    let fetcher = fetcher_with_session_credentials(Fetcher::builder());
    let cross = first.url(&format!("/redirect-to?to={}", other.url("/echo")));

    let echo = echoed(&fetcher, &cross);
    assert_eq!(echo["path"], "/echo");
    assert_no_secret(&echo);

    let echo = echoed(
        &fetcher,
        with_request_headers(cross.clone()).bearer_auth("request-token"),
    );
    assert_no_secret(&echo);
    assert!(echo["headers"].get("authorization").is_none(), "{echo}");
    assert!(echo["headers"].get("x-trace").is_none(), "{echo}");
    assert_eq!(echo["headers"]["user-agent"], "etl/1.0");
    assert_eq!(echo["headers"]["accept"], "application/json");
    assert_eq!(echo["headers"]["accept-language"], "en");

    let with_password = cross.replace("http://", "http://bob:pa55@");
    let echo = echoed(&fetcher, with_password.as_str());
    assert!(echo["headers"].get("authorization").is_none(), "{echo}");

    // Same origin: everything goes along, the request's headers over the session's.
    let same = first.url("/redirect-to?to=/echo");
    let echo = echoed(&fetcher, &same);
    assert_eq!(echo["headers"]["authorization"], "Bearer session-secret");
    assert_eq!(echo["headers"]["x-api-key"], "session-key");
    let echo = echoed(
        &fetcher,
        with_request_headers(same).bearer_auth("request-token"),
    );
    assert_eq!(echo["headers"]["authorization"], "Bearer request-token");
    assert_eq!(echo["headers"]["x-api-key"], "request-key");
    assert_eq!(echo["headers"]["x-trace"], "t-1");
}

/// A session constructor's default headers may hold credentials as much as an auth_generator's:
/// they stay at the request's origin too.
#[test]
fn a_constructors_default_headers_stay_at_the_requests_origin() {
    let first = TestServer::start();
    let other = TestServer::start();
    let fetcher = Fetcher::builder()
        .session(|| {
            let mut headers = reqwest::header::HeaderMap::new();
            headers.insert("x-api-key", "constructor-key".parse().unwrap());
            ClientBuilder::new().default_headers(headers)
        })
        .build()
        .unwrap();
    let cross = first.url(&format!("/redirect-to?to={}", other.url("/echo")));
    let echo = echoed(&fetcher, &cross);
    assert!(echo["headers"].get("x-api-key").is_none(), "{echo}");
    let echo = echoed(&fetcher, first.url("/redirect-to?to=/echo"));
    assert_eq!(echo["headers"]["x-api-key"], "constructor-key");
}

/// A header opted in goes to another origin, but never over http once the chain was on https.
#[test]
fn opted_in_headers_go_to_another_origin_but_never_over_a_downgrade() {
    let plain = TestServer::start();
    let first = TestServer::start();
    let secure = TlsServer::redirecting_to(&plain.url("/echo"));
    let fetcher = fetcher_with_session_credentials(
        Fetcher::builder()
            .session(|| {
                let ca = Certificate::from_pem(TLS_CA_PEM).expect("test CA");
                ClientBuilder::new().tls_certs_merge([ca])
            })
            .redirect_keeps_header("x-trace")
            .redirect_keeps_header("x-api-key"),
    );

    let cross = first.url(&format!("/redirect-to?to={}", plain.url("/echo")));
    let echo = echoed(&fetcher, with_request_headers(cross));
    assert_eq!(echo["headers"]["x-trace"], "t-1");
    assert_eq!(echo["headers"]["x-api-key"], "request-key");
    assert!(echo["headers"].get("cookie").is_none(), "{echo}");

    let echo = echoed(&fetcher, with_request_headers(secure.url("/")));
    assert_eq!(echo["path"], "/echo");
    assert_no_secret(&echo);
    assert!(echo["headers"].get("x-trace").is_none(), "{echo}");
    assert_eq!(echo["headers"]["accept"], "application/json");
}

/// The command's `--max-redirects`: 0 writes the 3xx as the record; too many is a usage error
/// in the option's words.
#[cfg(feature = "cli")]
#[test]
fn the_command_takes_max_redirects() {
    let server = TestServer::start();
    let run = |args: &[&str]| {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_parfetch"))
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let line = format!("{}\n", server.url("/redirect"));
        // A usage error ends the command before it reads its input.
        let _ = std::io::Write::write_all(&mut child.stdin.take().unwrap(), line.as_bytes());
        child.wait_with_output().unwrap()
    };
    for (max, status) in [("0", 302), ("1", 200)] {
        let output = run(&["--max-redirects", max]);
        let record: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(record["status"], status, "{record}");
    }
    let output = run(&["--max-redirects", "1000"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--max-redirects must be from 0 to 100, not 1000"),
        "{stderr}"
    );
}
