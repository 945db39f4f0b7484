//! Per-host limits hold across all workers of a fetcher, whatever their threading.

use crate::support;

use std::time::{Duration, Instant};

use parfetch::prelude::*;
use parfetch::{Fetcher, Pool};
use rayon::prelude::*;
use support::TestServer;

fn slow_urls(server: &TestServer, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| server.url(&format!("/delay/20?item={i}")))
        .collect()
}

#[test]
fn a_per_host_cap_bounds_concurrency_across_threads() {
    let server = TestServer::start();
    let fetcher = Fetcher::builder()
        .num_processes(16)
        .max_per_host(3)
        .build()
        .unwrap();
    let (responses, exceptions) = slow_urls(&server, 60).par_iter().fetch_all_with(&fetcher);
    assert_eq!((responses.len(), exceptions.len()), (60, 0));
    let max = server.stats().max_in_flight();
    assert!((1..=3).contains(&max), "{max} in flight with a cap of 3");
}

#[test]
fn a_per_host_cap_bounds_multiplexed_workers_too() {
    let server = TestServer::start();
    let fetcher = Fetcher::builder()
        .num_processes(2)
        .concurrency(32)
        .max_per_host(5)
        .build()
        .unwrap();
    let outcomes: Vec<_> = slow_urls(&server, 80)
        .par_iter()
        .fetch_with(&fetcher)
        .collect();
    assert!(outcomes.iter().all(Result::is_ok));
    let max = server.stats().max_in_flight();
    assert!((1..=5).contains(&max), "{max} in flight with a cap of 5");
}

#[test]
fn the_cap_is_per_host() {
    // 127.0.0.1 and localhost are two hosts to the limiter, one server to the test.
    let server = TestServer::start();
    let mut urls = slow_urls(&server, 40);
    for url in urls.iter_mut().skip(1).step_by(2) {
        *url = url.replace("127.0.0.1", "localhost");
    }
    let fetcher = Fetcher::builder()
        .num_processes(16)
        .max_per_host(2)
        .build()
        .unwrap();
    let (responses, _) = urls.par_iter().fetch_all_with(&fetcher);
    assert_eq!(responses.len(), 40);
    let max = server.stats().max_in_flight();
    assert!(max <= 4, "{max} in flight with 2 per host over 2 hosts");
    assert!(max >= 3, "{max}: both hosts had their own slots");
}

#[test]
fn a_per_host_rate_spaces_requests_across_workers() {
    let server = TestServer::start();
    let urls: Vec<String> = (0..21).map(|i| server.url(&format!("/r/{i}"))).collect();
    let fetcher = Fetcher::builder()
        .num_processes(8)
        .per_host_rate(50.0)
        .build()
        .unwrap();
    let started = Instant::now();
    let (responses, _) = urls.par_iter().fetch_all_with(&fetcher);
    let took = started.elapsed();
    assert_eq!(responses.len(), 21);
    // 21 starts 20 ms apart: at least 400 ms, however many workers.
    assert!(took >= Duration::from_millis(390), "{took:?}");
}

#[test]
fn pools_are_polite_too() {
    let server = TestServer::start();
    let mut pool = Pool::builder()
        .num_processes(12)
        .fetcher(|fetcher| fetcher.max_per_host(2))
        .from_urls(slow_urls(&server, 30))
        .unwrap();
    pool.join_all();
    assert_eq!(pool.responses().count(), 30);
    assert!(server.stats().max_in_flight() <= 2);
}
