//! Sessions: one per worker, built lazily by the hooks in the original's order, reused with their
//! connections, and never the cause of a lost item.

use crate::support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use parfetch::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use parfetch::prelude::*;
use parfetch::{BuildError, FetchError, Fetcher};
use rayon::prelude::*;
use serde_json::Value;
use support::TestServer;

fn delayed_urls(server: &TestServer, n: usize, delay_ms: u64) -> Vec<String> {
    (0..n)
        .map(|i| server.url(&format!("/delay/{delay_ms}?item={i}")))
        .collect()
}

#[test]
fn concurrency_at_the_server_is_bounded_by_num_processes() {
    let server = TestServer::start();
    let urls = delayed_urls(&server, 120, 20);
    let fetcher = Fetcher::builder().num_processes(12).build().unwrap();

    let (responses, exceptions) = urls.par_iter().fetch_all_with(&fetcher);

    assert_eq!(responses.len(), 120);
    assert!(exceptions.is_empty());
    let max = server.stats().max_in_flight();
    assert!(max <= 12, "{max} requests in flight with 12 workers");
    // With 120 slow requests over 12 workers, far more than rayon's default pool is busy at once.
    assert!(max > rayon::current_num_threads(), "only {max} in flight");
}

#[test]
fn each_worker_keeps_its_connection_alive_across_requests_and_calls() {
    let server = TestServer::start();
    let urls: Vec<String> = (0..400).map(|i| server.url(&format!("/k/{i}"))).collect();
    let fetcher = Fetcher::builder().num_processes(4).build().unwrap();

    let (first, _) = urls.par_iter().fetch_all_with(&fetcher);
    let (second, _) = urls.par_iter().fetch_all_with(&fetcher);

    assert_eq!(first.len() + second.len(), 800);
    assert_eq!(server.stats().requests(), 800);
    let connections = server.stats().connections();
    assert!(
        connections <= 4,
        "{connections} connections for 800 requests on 4 workers"
    );
    assert!(fetcher.session_count() <= 4);
}

#[test]
fn sessions_are_built_lazily_once_per_worker_in_the_original_order() {
    let server = TestServer::start();
    let calls = Arc::new(Mutex::new(Vec::new()));
    let (on_session, on_init, on_auth) =
        (Arc::clone(&calls), Arc::clone(&calls), Arc::clone(&calls));
    let fetcher = Fetcher::builder()
        .num_processes(3)
        .session(move || {
            on_session
                .lock()
                .unwrap()
                .push((std::thread::current().id(), "session"));
            parfetch::ClientBuilder::new()
        })
        .initializer(move |builder| {
            on_init
                .lock()
                .unwrap()
                .push((std::thread::current().id(), "initializer"));
            builder.user_agent("parfetch-test/1")
        })
        .auth_generator(move |builder| {
            on_auth
                .lock()
                .unwrap()
                .push((std::thread::current().id(), "auth_generator"));
            let mut headers = HeaderMap::new();
            headers.insert(
                AUTHORIZATION,
                HeaderValue::from_static("Bearer worker-token"),
            );
            builder.default_headers(headers)
        })
        .build()
        .unwrap();
    assert!(
        calls.lock().unwrap().is_empty(),
        "nothing built before the first request"
    );

    let urls: Vec<String> = (0..60).map(|_| server.url("/echo")).collect();
    let (responses, exceptions) = urls.par_iter().fetch_all_with(&fetcher);
    assert!(exceptions.is_empty(), "{exceptions:?}");
    let (again, _) = urls.par_iter().fetch_all_with(&fetcher);
    assert_eq!(again.len(), 60);

    // Sessions of different workers are built at the same time: check the order per thread.
    let calls = calls.lock().unwrap().clone();
    let mut by_thread: std::collections::HashMap<_, Vec<&str>> = Default::default();
    for (thread, step) in &calls {
        by_thread.entry(*thread).or_default().push(step);
    }
    assert!((1..=3).contains(&by_thread.len()), "{calls:?}");
    assert_eq!(by_thread.len(), fetcher.session_count());
    for steps in by_thread.values() {
        assert_eq!(
            steps,
            &["session", "initializer", "auth_generator"],
            "built once, in order"
        );
    }
    for response in &responses {
        let echo: Value = response.json().unwrap();
        assert_eq!(echo["headers"]["user-agent"], "parfetch-test/1");
        assert_eq!(echo["headers"]["authorization"], "Bearer worker-token");
    }
}

#[test]
fn a_panicking_initializer_fails_that_workers_items_and_the_batch_goes_on() {
    let server = TestServer::start();
    let builds = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&builds);
    let fetcher = Fetcher::builder()
        .num_processes(4)
        .initializer(move |builder| {
            // The first session built panics; the others are fine.
            if counted.fetch_add(1, Ordering::SeqCst) == 0 {
                panic!("initializer exploded");
            }
            builder
        })
        .build()
        .unwrap();
    let urls = delayed_urls(&server, 200, 1);

    let (responses, exceptions) = urls.par_iter().fetch_all_with(&fetcher);

    assert_eq!(responses.len() + exceptions.len(), 200);
    assert!(!exceptions.is_empty(), "the first worker's items fail");
    assert!(!responses.is_empty(), "the other workers' items succeed");
    for exception in &exceptions {
        match exception.error() {
            FetchError::Session { reason, .. } => {
                assert!(
                    reason.contains("initializer panicked: initializer exploded"),
                    "{reason}"
                );
            }
            other => panic!("unexpected {other}"),
        }
    }
    // A failed build is remembered: the hook is not run again for every item.
    assert!(builds.load(Ordering::SeqCst) <= 4);
    assert_eq!(server.stats().requests(), responses.len());
}

#[test]
fn panicking_auth_generator_and_session_constructor_are_named_in_the_error() {
    let server = TestServer::start();
    let urls: Vec<String> = (0..10).map(|i| server.url(&format!("/{i}"))).collect();

    let fetcher = Fetcher::builder()
        .num_processes(2)
        .auth_generator(|_| panic!("no credentials today"))
        .build()
        .unwrap();
    let (responses, exceptions) = urls.par_iter().fetch_all_with(&fetcher);
    assert!(responses.is_empty());
    assert_eq!(exceptions.len(), 10);
    assert!(exceptions.iter().all(|e| {
        e.to_string()
            .contains("the auth_generator panicked: no credentials today")
    }));

    let fetcher = Fetcher::builder()
        .num_processes(2)
        .session(|| panic!("{}", String::from("formatted panic")))
        .build()
        .unwrap();
    let (responses, exceptions) = urls.par_iter().fetch_all_with(&fetcher);
    assert!(responses.is_empty());
    assert!(exceptions.iter().all(|e| {
        e.to_string()
            .contains("the session constructor panicked: formatted panic")
    }));
    assert_eq!(server.stats().requests(), 0);
}

#[test]
fn a_client_that_fails_to_build_is_a_session_error() {
    let fetcher = Fetcher::builder()
        .initializer(|builder| builder.tls_backend_preconfigured("not a TLS config"))
        .build()
        .unwrap();
    let exception = fetcher.execute("http://127.0.0.1:9/").unwrap_err();
    assert!(
        matches!(exception.error(), FetchError::Session { reason, .. } if reason.contains("failed to build")),
        "{}",
        exception.error()
    );
}

#[test]
fn zero_processes_is_a_build_error() {
    let error = Fetcher::builder().num_processes(0).build().unwrap_err();
    assert!(matches!(error, BuildError::ZeroProcesses));
    assert_eq!(error.to_string(), "num_processes must be at least 1");
}

#[test]
fn fetch_with_runs_on_the_dedicated_pool() {
    let server = TestServer::start();
    let urls: Vec<String> = (0..64).map(|i| server.url(&format!("/{i}"))).collect();
    let fetcher = Fetcher::builder().num_processes(5).build().unwrap();

    let names: Vec<String> = urls
        .par_iter()
        .fetch_with(&fetcher)
        .map(|_| std::thread::current().name().unwrap_or("").to_owned())
        .collect();
    assert!(
        names.iter().all(|name| name.starts_with("parfetch-")),
        "{names:?}"
    );
    assert!(fetcher.session_count() <= 5);
}

#[test]
fn execute_inside_an_async_runtime_is_an_error_not_a_panic() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let exception = runtime.block_on(async { Fetcher::new().execute("http://127.0.0.1:9/") });
    let error = exception.unwrap_err();
    assert!(
        matches!(error.error(), FetchError::Session { reason, .. } if reason.contains("async runtime")),
        "{error}"
    );
}

#[test]
fn dropping_a_fetcher_closes_its_connections() {
    let server = TestServer::start();
    let urls: Vec<String> = (0..20).map(|i| server.url(&format!("/{i}"))).collect();
    let fetcher = Fetcher::builder().num_processes(2).build().unwrap();
    let (responses, _) = urls.par_iter().fetch_all_with(&fetcher);
    assert_eq!(responses.len(), 20);
    let opened = server.stats().connections();
    assert!(opened >= 1);
    assert_eq!(
        server.stats().closed(),
        0,
        "kept alive while the fetcher lives"
    );

    drop(fetcher);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while server.stats().closed() < opened && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(server.stats().closed(), opened);
}

#[test]
fn a_fetcher_with_sessions_can_be_dropped_inside_an_async_runtime() {
    let server = TestServer::start();
    let urls: Vec<String> = (0..8).map(|i| server.url(&format!("/{i}"))).collect();
    let fetcher = Fetcher::builder().num_processes(2).build().unwrap();
    let (responses, _) = urls.par_iter().fetch_all_with(&fetcher);
    assert_eq!(responses.len(), 8);
    assert!(fetcher.session_count() >= 1);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move { drop(fetcher) });
}

#[test]
fn every_out_of_range_setting_is_a_build_error_naming_it() {
    let cases: Vec<(parfetch::FetcherBuilder, &str)> = vec![
        (
            Fetcher::builder().max_per_host(0),
            "max_per_host must be from 1",
        ),
        (
            Fetcher::builder().timeout(Duration::ZERO),
            "timeout must be more than 0 s",
        ),
        (
            Fetcher::builder().connect_timeout(Duration::ZERO),
            "connect_timeout must be more than 0 s",
        ),
        (
            Fetcher::builder().per_host_rate(0.0),
            "per_host_rate must be",
        ),
        (
            Fetcher::builder().per_host_rate(-1.0),
            "per_host_rate must be",
        ),
        (
            Fetcher::builder().per_host_rate(f64::NAN),
            "per_host_rate must be",
        ),
        (
            Fetcher::builder().per_host_rate(f64::INFINITY),
            "per_host_rate must be",
        ),
        (Fetcher::builder().per_host_rate(1e-300), "not 1e-300"),
        (
            Fetcher::builder().per_host_rate(1e-19),
            "per_host_rate must be",
        ),
        (
            Fetcher::builder().retry(parfetch::RetryPolicy::new(0)),
            "retry must be at least 1 attempt, not RetryPolicy::new(0)",
        ),
    ];
    for (builder, message) in cases {
        let error = builder.build().unwrap_err();
        assert!(matches!(error, BuildError::OutOfRange { .. }), "{error:?}");
        assert!(error.to_string().contains(message), "{error}");
    }
    // The extremes that are allowed work.
    let fetcher = Fetcher::builder()
        .timeout(Duration::MAX)
        .connect_timeout(Duration::MAX)
        .per_host_rate(1.0 / 86_400.0)
        .max_per_host(parfetch::Fetcher::MAX_CONCURRENCY)
        .build()
        .unwrap();
    let server = TestServer::start();
    assert!(fetcher.execute(server.url("/ok")).is_ok());
}

#[test]
fn no_referer_is_sent_on_redirects() {
    let server = TestServer::start();
    let fetcher = Fetcher::new();
    let response = fetcher
        .execute(server.url("/redirect?api_key=s3cr3t"))
        .unwrap();
    let echoed: serde_json::Value = serde_json::from_slice(response.bytes()).unwrap();
    assert_eq!(echoed["path"], "/echo");
    assert!(echoed["headers"].get("referer").is_none(), "{echoed}");
}
