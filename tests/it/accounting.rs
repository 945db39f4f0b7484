//! Property: whatever the mix of good, slow and failing jobs, the worker count, the requests in
//! flight, the retry settings and the entry point, every input ends up exactly once, in the
//! responses or the exceptions, carrying its own request.

use crate::support;

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

use parfetch::prelude::*;
use parfetch::{FetchResult, Fetcher, Pool, RetryPolicy};
use proptest::prelude::*;
use rayon::prelude::*;
use support::{RawServer, TestServer, read_head, refused_url, write_all};

struct Endpoints {
    server: TestServer,
    closing: RawServer,
    cut_short: RawServer,
    refused: String,
}

fn endpoints() -> &'static Endpoints {
    static ENDPOINTS: OnceLock<Endpoints> = OnceLock::new();
    ENDPOINTS.get_or_init(|| Endpoints {
        server: TestServer::start(),
        closing: RawServer::start(|mut stream| {
            read_head(&mut stream);
        }),
        // A head that promises 100 bytes, 10 of them, and the connection closed.
        cut_short: RawServer::start(|mut stream| {
            read_head(&mut stream);
            write_all(
                &mut stream,
                b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789",
            );
        }),
        refused: refused_url(),
    })
}

/// What a job should end as.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Expect {
    Response,
    Exception,
}

fn job(kind: u8, case: u64, i: usize) -> (String, Expect) {
    let e = endpoints();
    let id = format!("c{case}-{i}");
    match kind {
        0 => (e.server.url(&format!("/ok?{id}")), Expect::Response),
        1 => (e.server.url(&format!("/status/500?{id}")), Expect::Response),
        2 => (
            e.server.url(&format!("/flaky/{id}?fail=1")),
            Expect::Response,
        ),
        3 => (format!("not a url {id}"), Expect::Exception),
        4 => (format!("{}{id}", e.refused), Expect::Exception),
        5 => (format!("gopher://127.0.0.1/{id}"), Expect::Exception),
        6 => (e.closing.url(&format!("/{id}")), Expect::Exception),
        7 => (e.cut_short.url(&format!("/{id}")), Expect::Exception),
        // A few stragglers: they must hold up nothing but themselves.
        _ if i % 250 == 0 => (e.server.url(&format!("/delay/300?{id}")), Expect::Response),
        _ => (e.server.url(&format!("/ok/{id}")), Expect::Response),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    #[test]
    fn every_job_ends_exactly_once_with_its_own_request(
        kinds in prop::collection::vec(0u8..9, 0..10_000),
        threads in 1usize..16,
        in_flight in 1usize..8,
        attempts in 1u32..4,
        entry in 0u8..5,
        case in any::<u64>(),
    ) {
        let jobs: Vec<(String, Expect)> = kinds
            .iter()
            .enumerate()
            .map(|(i, kind)| job(*kind, case, i))
            .collect();
        let urls: Vec<&str> = jobs.iter().map(|(url, _)| url.as_str()).collect();
        let retry = RetryPolicy::new(attempts).backoff(Duration::from_millis(1), Duration::from_millis(5));

        let fetcher = Fetcher::builder()
            .num_processes(threads)
            .concurrency(threads * in_flight)
            .timeout(Duration::from_secs(10))
            .retry(retry.clone())
            .build()
            .unwrap();
        let split = |outcomes: Vec<FetchResult>| -> (Vec<_>, Vec<_>) {
            let (responses, exceptions): (Vec<_>, Vec<_>) =
                outcomes.into_iter().partition(Result::is_ok);
            (
                responses.into_iter().filter_map(Result::ok).collect(),
                exceptions.into_iter().filter_map(Result::err).collect(),
            )
        };
        let (responses, exceptions) = match entry {
            0 => {
                let mut pool = Pool::builder()
                    .num_processes(threads)
                    .fetcher(|fetcher| fetcher.timeout(Duration::from_secs(10)).retry(retry))
                    .from_urls(&urls)
                    .unwrap();
                pool.join_all();
                (pool.responses().collect::<Vec<_>>(), pool.exceptions().collect::<Vec<_>>())
            }
            1 => urls.par_iter().fetch_all_with(&fetcher),
            // Ordered: through the reorder window.
            2 => split(urls.par_iter().fetch_with(&fetcher).collect()),
            // Unindexed input: one folder per worker, completion order.
            3 => split(urls.par_iter().filter(|_| true).fetch_with(&fetcher).collect()),
            _ => {
                let mut outcomes = Vec::new();
                fetcher.for_each_completed(&urls, |outcome| outcomes.push(outcome));
                split(outcomes)
            }
        };

        let mut seen: HashMap<&str, Expect> = HashMap::new();
        for response in &responses {
            prop_assert!(seen.insert(response.request().url(), Expect::Response).is_none());
            prop_assert!(response.attempts() >= 1 && response.attempts() <= attempts);
        }
        for exception in &exceptions {
            prop_assert_eq!(exception.error().url(), exception.request().url());
            prop_assert!(seen.insert(exception.request().url(), Expect::Exception).is_none());
        }
        prop_assert_eq!(seen.len(), jobs.len());
        for (url, expected) in &jobs {
            prop_assert_eq!(seen.get(url.as_str()), Some(expected), "{}", url);
        }
    }
}
