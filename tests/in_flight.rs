//! Several requests in flight per worker (`in_flight_per_worker`): the same guarantees as one.

mod support;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use parfetch::prelude::*;
use parfetch::{FetchError, Fetcher, Request};
use rayon::prelude::*;
use support::{RawServer, TestServer, read_head, refused_url};

fn multiplexed(threads: usize, k: usize) -> Fetcher {
    Fetcher::builder()
        .num_processes(threads)
        .in_flight_per_worker(k)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

#[test]
fn concurrency_reaches_threads_times_k_and_no_more() {
    let server = TestServer::start();
    let urls: Vec<String> = (0..400)
        .map(|i| server.url(&format!("/delay/30?item={i}")))
        .collect();
    let fetcher = multiplexed(2, 16);

    let (responses, exceptions) = urls.par_iter().fetch_all_with(&fetcher);

    assert_eq!(responses.len(), 400);
    assert!(exceptions.is_empty());
    let max = server.stats().max_in_flight();
    assert!(max <= 32, "{max} in flight with 2 threads x 16");
    assert!(
        max > 8,
        "only {max} in flight: requests were not multiplexed"
    );
    assert!(fetcher.session_count() <= 2);
    assert!(server.stats().connections() <= 32);
}

#[test]
fn order_and_accounting_hold_with_mixed_failures() {
    let server = TestServer::start();
    let refused = refused_url();
    let inputs: Vec<String> = (0..1_000)
        .map(|i| match i % 4 {
            0 => format!("bad {i}"),
            1 => format!("{refused}{i}"),
            _ => server.url(&format!("/bytes/{}?i={i}", i % 50)),
        })
        .collect();
    let fetcher = multiplexed(3, 10);

    let outcomes: Vec<_> = inputs.par_iter().fetch_with(&fetcher).collect();

    assert_eq!(outcomes.len(), inputs.len());
    for (i, (input, outcome)) in inputs.iter().zip(&outcomes).enumerate() {
        match outcome {
            Ok(response) => {
                assert_eq!(response.request().url(), input);
                assert_eq!(response.bytes().len(), i % 50);
            }
            Err(exception) => {
                assert_eq!(exception.request().url(), input);
                match i % 4 {
                    0 => assert!(matches!(exception.error(), FetchError::InvalidUrl { .. })),
                    1 => assert!(exception.error().is_connect(), "{exception}"),
                    _ => panic!("unexpected {exception}"),
                }
            }
        }
    }
    assert_eq!(server.stats().requests(), 500);

    let (responses, exceptions) = inputs.par_iter().fetch_all_with(&fetcher);
    assert_eq!((responses.len(), exceptions.len()), (500, 500));
    let unique: HashSet<&str> = responses
        .iter()
        .map(|r| r.request().url())
        .chain(exceptions.iter().map(|e| e.request().url()))
        .collect();
    assert_eq!(unique.len(), 1_000);
}

#[test]
fn a_stalled_request_times_out_without_holding_up_the_others_beyond_it() {
    let stalled = RawServer::start(|mut stream| {
        read_head(&mut stream);
        std::thread::sleep(Duration::from_secs(3));
    });
    let server = TestServer::start();
    let mut requests: Vec<Request> = (0..100)
        .map(|i| Request::get(server.url(&format!("/n/{i}"))))
        .collect();
    requests.insert(
        3,
        Request::get(stalled.url("/")).timeout(Duration::from_millis(200)),
    );
    let fetcher = multiplexed(1, 8);

    let outcomes: Vec<_> = requests.par_iter().fetch_with(&fetcher).collect();

    assert!(outcomes[3].as_ref().unwrap_err().error().is_timeout());
    assert_eq!(outcomes.iter().filter(|o| o.is_ok()).count(), 100);
}

#[test]
fn positional_adaptors_and_short_circuits_work() {
    let server = TestServer::start();
    let urls: Vec<String> = (0..60)
        .map(|i| server.url(&format!("/bytes/{i}")))
        .collect();
    let fetcher = multiplexed(2, 8);

    let pairs: Vec<(usize, usize)> = urls
        .par_iter()
        .fetch_with(&fetcher)
        .enumerate()
        .map(|(i, outcome)| (i, outcome.unwrap().bytes().len()))
        .collect();
    assert_eq!(pairs, (0..60).map(|i| (i, i)).collect::<Vec<_>>());

    let found = urls
        .par_iter()
        .fetch_with(&fetcher)
        .find_any(|outcome| outcome.as_ref().is_ok_and(|r| r.bytes().len() == 42));
    assert_eq!(found.unwrap().unwrap().bytes().len(), 42);
}

#[test]
fn a_panicking_hook_fails_the_items_of_its_worker_only() {
    let server = TestServer::start();
    let builds = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = std::sync::Arc::clone(&builds);
    let fetcher = Fetcher::builder()
        .num_processes(2)
        .in_flight_per_worker(4)
        .initializer(move |session| {
            if counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                panic!("first session fails");
            }
            session
        })
        .build()
        .unwrap();
    let urls: Vec<String> = (0..200)
        .map(|i| server.url(&format!("/delay/1?{i}")))
        .collect();

    let (responses, exceptions) = urls.par_iter().fetch_all_with(&fetcher);

    assert_eq!(responses.len() + exceptions.len(), 200);
    assert!(
        exceptions
            .iter()
            .all(|e| matches!(e.error(), FetchError::Session { .. }))
    );
    assert_eq!(server.stats().requests(), responses.len());
}

#[test]
fn zero_in_flight_counts_as_one() {
    let server = TestServer::start();
    let fetcher = multiplexed(2, 0);
    let urls: Vec<String> = (0..20)
        .map(|i| server.url(&format!("/delay/20?{i}")))
        .collect();
    let (responses, _) = urls.par_iter().fetch_all_with(&fetcher);
    assert_eq!(responses.len(), 20);
    assert!(server.stats().max_in_flight() <= 2);
}

#[test]
fn a_panicking_progress_hook_costs_no_outcome() {
    let server = TestServer::start();
    let fetcher = Fetcher::builder()
        .num_processes(2)
        .in_flight_per_worker(4)
        .on_progress(|progress| {
            if progress.done % 3 == 0 {
                panic!("report failed");
            }
        })
        .build()
        .unwrap();
    let urls: Vec<String> = (0..60).map(|i| server.url(&format!("/p/{i}"))).collect();
    let (responses, exceptions) = urls.par_iter().fetch_all_with(&fetcher);
    assert_eq!((responses.len(), exceptions.len()), (60, 0));
    assert_eq!(fetcher.progress(), (60, 0));
}

#[test]
fn adaptors_after_a_multiplexed_fetch_run_on_the_dedicated_pool() {
    let server = TestServer::start();
    let urls: Vec<String> = (0..40).map(|i| server.url(&format!("/t/{i}"))).collect();
    let fetcher = multiplexed(3, 4);
    let names: Vec<String> = urls
        .par_iter()
        .fetch_with(&fetcher)
        .map(|_| std::thread::current().name().unwrap_or("").to_owned())
        .collect();
    assert_eq!(names.len(), 40);
    assert!(
        names.iter().all(|name| name.starts_with("parfetch-")),
        "{names:?}"
    );
}

#[test]
fn only_workers_that_take_a_request_build_a_session() {
    let server = TestServer::start();
    let fetcher = multiplexed(8, 4);
    let (responses, exceptions) = [server.url("/bytes/1")].par_iter().fetch_all_with(&fetcher);
    assert_eq!((responses.len(), exceptions.len()), (1, 0));
    assert_eq!(fetcher.session_count(), 1, "7 idle workers, no sessions");

    let empty: Vec<String> = Vec::new();
    let (responses, exceptions) = empty.par_iter().fetch_all_with(&fetcher);
    assert!(responses.is_empty() && exceptions.is_empty());
    assert_eq!(fetcher.session_count(), 1);
}

/// An input item that counts the requests made from it.
struct Counted<'a> {
    url: &'a str,
    made: &'a AtomicUsize,
}

impl From<Counted<'_>> for Request {
    fn from(item: Counted<'_>) -> Self {
        item.made.fetch_add(1, Ordering::Relaxed);
        Request::get(item.url)
    }
}

/// 2 workers x 2 in flight send batches of 256 requests: 2,000 requests make 8 batches. The
/// input is kept as it comes (here, a reference and a counter per item) and made into requests
/// one batch at a time: a million URLs do not become a million requests at once.
#[test]
fn batches_are_made_sent_and_handed_on_in_order_one_after_the_other() {
    let server = TestServer::start();
    let fetcher = multiplexed(2, 2);
    let urls: Vec<String> = (0..2_000)
        .map(|i| server.url(&format!("/bytes/{}", i % 7)))
        .collect();
    let made = AtomicUsize::new(0);
    // Requests made and sent when the first outcome reached the adaptor after the fetch.
    let first_seen_at = std::sync::OnceLock::new();
    let mut lengths = Vec::new();
    urls.par_iter()
        .map(|url| Counted { url, made: &made })
        .fetch_with(&fetcher)
        .map(|outcome| {
            first_seen_at.get_or_init(|| (made.load(Ordering::Relaxed), server.stats().requests()));
            outcome.expect("response").bytes().len()
        })
        .collect_into_vec(&mut lengths);
    assert_eq!(lengths, (0..2_000).map(|i| i % 7).collect::<Vec<_>>());
    assert_eq!(made.load(Ordering::Relaxed), 2_000, "one request per item");
    assert_eq!(server.stats().requests(), 2_000);
    let (made, sent) = *first_seen_at.get().expect("an outcome was seen");
    assert!(
        made <= 1_000,
        "{made} requests were made before the first outcome was handed on"
    );
    assert!(
        sent <= 1_000,
        "the first outcome waited for {sent} requests"
    );
}

#[test]
fn a_satisfied_short_circuit_sends_no_further_batches() {
    let server = TestServer::start();
    let fetcher = multiplexed(2, 2);
    let urls: Vec<String> = (0..2_000)
        .map(|i| server.url(&format!("/status/{}", if i == 10 { 404 } else { 200 })))
        .collect();
    let found = urls
        .par_iter()
        .fetch_with(&fetcher)
        .find_first(|outcome| outcome.as_ref().is_ok_and(|r| r.status() == 404));
    assert_eq!(found.expect("found").expect("response").status(), 404);
    assert!(
        server.stats().requests() < 2_000,
        "all {} requests were sent",
        server.stats().requests()
    );
}
