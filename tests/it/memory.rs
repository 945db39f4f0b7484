//! What a kept response costs in memory: its own bytes, not the connection buffer it was read
//! from. Each test runs alone in its own process, because it counts every allocation of the
//! process (`crate::ALLOCATOR`).

use crate::support;

use parfetch::prelude::*;
use parfetch::{Fetcher, ThreadResponse};
use rayon::prelude::*;
use support::{TestServer, run_alone};

/// Bytes allocated and not yet freed, by every thread of the process.
fn live_bytes() -> isize {
    let stats = crate::ALLOCATOR.stats();
    stats.bytes_allocated as isize - stats.bytes_deallocated as isize
}

/// The bytes that `count` kept responses of `path` hold, per response, once the batch is done.
fn kept_bytes_per_response(server: &TestServer, path: &str, count: usize) -> (isize, usize) {
    let fetcher = Fetcher::builder().num_processes(2).build().unwrap();
    let urls: Vec<String> = (0..count)
        .map(|i| server.url(&format!("{path}?i={i}")))
        .collect();
    // Every worker builds its session and connection first, so that they are not counted.
    let (warm_up, failed) = urls.par_iter().fetch_all_with(&fetcher);
    assert!(failed.is_empty(), "{failed:?}");
    drop(warm_up);

    let before = live_bytes();
    let (responses, failed) = urls.par_iter().fetch_all_with(&fetcher);
    let after = live_bytes();
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(responses.len(), count);
    let body_bytes = responses.iter().map(|r| r.bytes().len()).sum::<usize>() / count;
    let kept: Vec<ThreadResponse> = responses;
    ((after - before) / kept.len() as isize, body_bytes)
}

#[test]
fn a_kept_small_response_holds_its_own_bytes_not_the_read_buffer() {
    if run_alone(
        module_path!(),
        "a_kept_small_response_holds_its_own_bytes_not_the_read_buffer",
    ) {
        return;
    }
    let server = TestServer::start();
    let (per_response, body) = kept_bytes_per_response(&server, "/bytes/100", 1_000);
    assert_eq!(body, 100);
    // The client reads into buffers of at least 8 KiB; a response that kept a slice of one
    // (its body or a header value) would hold all of it.
    assert!(
        per_response < 4 << 10,
        "each kept 100-byte response holds {per_response} bytes"
    );
}

#[test]
fn a_kept_large_response_holds_little_more_than_its_body() {
    if run_alone(
        module_path!(),
        "a_kept_large_response_holds_little_more_than_its_body",
    ) {
        return;
    }
    let server = TestServer::start();
    let (per_response, body) = kept_bytes_per_response(&server, "/bytes/1048576", 24);
    assert_eq!(body, 1 << 20);
    // The read buffer grows to about 400 KiB for large bodies: a kept slice of it would show.
    assert!(
        per_response < (1 << 20) + (16 << 10),
        "each kept 1 MiB response holds {per_response} bytes"
    );
}

/// Batches of millions of plain URLs are usual: the request made from one holds its URL and
/// little else, since every kept response keeps its request.
#[test]
fn a_request_made_from_a_url_holds_little_more_than_the_url() {
    if run_alone(
        module_path!(),
        "a_request_made_from_a_url_holds_little_more_than_the_url",
    ) {
        return;
    }
    let urls: Vec<String> = (0..10_000)
        .map(|i| format!("http://127.0.0.1:8080/bytes/100?i={i:05}"))
        .collect();
    let url_bytes = urls[0].len() as isize;
    let before = live_bytes();
    let requests: Vec<parfetch::Request> = urls.iter().map(parfetch::Request::from).collect();
    let per_request = (live_bytes() - before) / requests.len() as isize;
    // The parsed URL (its text and offsets) and the reference-counted spec around it. The
    // headers, query, body and credentials of a fuller request used to take about as much
    // again, empty: 446 bytes in all for this URL.
    assert!(
        per_request < url_bytes + 240,
        "a request for a {url_bytes}-byte URL holds {per_request} bytes"
    );
}

/// The most bytes live at once while `run` runs, sampled every half millisecond.
fn peak_live_bytes_during(run: impl FnOnce()) -> isize {
    let base = live_bytes();
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let sampler = scope.spawn(|| {
            let mut peak = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(live_bytes() - base);
                std::thread::sleep(std::time::Duration::from_micros(500));
            }
            peak
        });
        run();
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        sampler.join().unwrap()
    })
}

/// A streaming pipeline holds the responses in flight (at most twice the concurrency) and, where
/// order is kept, the reorder window: never the whole input, nor a batch of it.
#[test]
fn a_streaming_pipeline_holds_what_is_in_flight_not_the_input() {
    if run_alone(
        module_path!(),
        "a_streaming_pipeline_holds_what_is_in_flight_not_the_input",
    ) {
        return;
    }
    let server = TestServer::start();
    let fetcher = Fetcher::builder()
        .num_processes(2)
        .concurrency(4)
        .build()
        .unwrap();
    let urls: Vec<String> = (0..200)
        .map(|i| server.url(&format!("/bytes/1048576?i={i}")))
        .collect();
    // Sessions and connections first, so that their buffers are not counted.
    let _ = urls[..8].par_iter().fetch_all_with(&fetcher);

    let mut total = 0;
    let unordered = peak_live_bytes_during(|| {
        total = urls
            .clone()
            .into_iter()
            .par_bridge()
            .fetch_with(&fetcher)
            .map(|outcome| outcome.expect("response").bytes().len())
            .sum::<usize>();
    });
    assert_eq!(total, 200 << 20);
    // 2 x 4 responses of 1 MiB, and the client's read buffers.
    assert!(
        unordered < 16 << 20,
        "{} MiB live at the peak of an unordered stream of 200 MiB",
        unordered >> 20
    );

    let ordered = peak_live_bytes_during(|| {
        total = urls
            .par_iter()
            .fetch_with(&fetcher)
            .map(|outcome| outcome.expect("response").bytes().len())
            .sum::<usize>();
    });
    assert_eq!(total, 200 << 20);
    // The same, and a reorder window of at most 64 MiB of bodies past its oldest 16 outcomes.
    assert!(
        ordered < (16 + 64 + 16) << 20,
        "{} MiB live at the peak of an ordered stream of 200 MiB",
        ordered >> 20
    );
}
