//! The streaming engine: requests in flight bounded by `concurrency`, no batch barriers, inputs
//! read as slots free up, outcomes handed on as they complete, order kept where asked.

use crate::support;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use parfetch::prelude::*;
use parfetch::{BuildError, FetchError, Fetcher, Pool, Request};
use rayon::prelude::*;
use support::{Held, RawServer, TestServer, read_head, refused_url};

/// A held request waits while hundreds of others go by, on a machine the other tests load too:
/// its timeout leaves room for that.
fn multiplexed(threads: usize, concurrency: usize) -> Fetcher {
    Fetcher::builder()
        .num_processes(threads)
        .concurrency(concurrency)
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// `http://host:port` of `url`.
fn base_of(url: &str) -> String {
    let rest = url.trim_start_matches("http://");
    format!("http://{}", rest.split('/').next().unwrap_or(""))
}

/// Polls `condition` every few milliseconds for up to ten seconds.
fn eventually(mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    condition()
}

/// 1 held request, then `fast` quick ones: while the first is held, how many of the others the
/// server answers (waiting until it has answered `wait_for`, then a little longer), for an entry
/// point run on another thread.
fn answered_while_one_is_held(
    fast: usize,
    wait_for: usize,
    run: impl FnOnce(Vec<String>) -> usize + Send + 'static,
) -> (usize, usize) {
    let held = Held::start();
    let server = TestServer::start();
    let mut urls = vec![held.server.url("/slow")];
    urls.extend((0..fast).map(|i| server.url(&format!("/bytes/3?i={i}"))));
    // The feed runs on the caller's rayon pool and waits there while the window is full: a
    // pool of its own keeps the other tests' feeds (on the global pool) out of its way.
    let running = std::thread::spawn(move || {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        pool.install(|| run(urls))
    });
    eventually(|| server.stats().requests() >= wait_for);
    std::thread::sleep(Duration::from_millis(200));
    let answered = server.stats().requests();
    held.release();
    let outcomes = running.join().expect("the run ends");
    (answered, outcomes)
}

#[test]
fn a_held_request_holds_only_its_own_slot_in_fetch_all() {
    let (answered, outcomes) = answered_while_one_is_held(1_000, 400, |urls| {
        let (responses, exceptions) = urls.par_iter().fetch_all_with(&multiplexed(2, 8));
        assert!(exceptions.is_empty());
        responses.len()
    });
    assert!(
        answered >= 400,
        "only {answered} answered while one was held"
    );
    assert_eq!(outcomes, 1_001);
}

#[test]
fn a_held_request_holds_only_its_own_slot_in_an_unindexed_fetch() {
    let (answered, outcomes) = answered_while_one_is_held(1_000, 400, |urls| {
        urls.into_iter()
            .par_bridge()
            .fetch_with(&multiplexed(2, 8))
            .filter(Result::is_ok)
            .count()
    });
    assert!(
        answered >= 400,
        "only {answered} answered while one was held"
    );
    assert_eq!(outcomes, 1_001);
}

#[test]
fn a_held_request_holds_an_ordered_fetch_back_only_by_its_window() {
    // Concurrency 2: a window of 512 outcomes may wait for the held one.
    let (answered, outcomes) = answered_while_one_is_held(3_000, 400, |urls| {
        let statuses: Vec<u16> = urls
            .par_iter()
            .fetch_with(&multiplexed(2, 2))
            .map(|outcome| outcome.expect("response").status().as_u16())
            .collect();
        assert!(statuses.iter().all(|status| *status == 200));
        statuses.len()
    });
    assert!(
        (400..=600).contains(&answered),
        "{answered} answered while one was held, with a window of 512"
    );
    assert_eq!(outcomes, 3_001);
}

#[test]
fn a_held_request_holds_only_its_own_slot_in_a_pool() {
    let (answered, outcomes) = answered_while_one_is_held(1_000, 400, |urls| {
        let mut pool = Pool::builder()
            .fetcher(|fetcher| fetcher.concurrency(8))
            .from_urls(&urls)
            .unwrap();
        pool.join_all();
        pool.responses().count()
    });
    assert!(
        answered >= 400,
        "only {answered} answered while one was held"
    );
    assert_eq!(outcomes, 1_001);
}

#[test]
fn a_pool_hands_out_results_while_its_queue_is_open() {
    let server = TestServer::start();
    let pool = Pool::builder()
        .fetcher(|fetcher| fetcher.concurrency(8))
        .build()
        .unwrap();
    for i in 0..5 {
        pool.submit(server.url(&format!("/bytes/{i}"))).unwrap();
    }
    let mut taken = Vec::new();
    assert!(eventually(|| {
        taken.extend(pool.responses());
        taken.len() == 5
    }));
    assert_eq!(pool.pending(), 0);
    assert!(!pool.job_queue().is_closed());
}

#[test]
fn an_unindexed_input_starts_sending_before_it_ends_and_outcomes_do_not_wait_for_more() {
    let server = TestServer::start();
    let fetcher = multiplexed(2, 8);
    let (input, items) = mpsc::channel::<String>();
    let (done, outcomes) = mpsc::channel();
    let running = std::thread::spawn(move || {
        items
            .into_iter()
            .par_bridge()
            .fetch_with(&fetcher)
            .for_each_with(done, |done, outcome| {
                let _ = done.send(outcome.is_ok());
            });
    });
    for i in 0..5 {
        input.send(server.url(&format!("/bytes/{i}"))).unwrap();
    }
    // The input stays open and idle: the five outcomes come anyway.
    for _ in 0..5 {
        let ok = outcomes
            .recv_timeout(Duration::from_secs(10))
            .expect("an outcome before the input was closed");
        assert!(ok);
    }
    drop(input);
    running.join().unwrap();
}

#[test]
fn a_sequential_input_streams_in_completion_order_or_in_input_order() {
    let server = TestServer::start();
    let fetcher = multiplexed(2, 8);
    let urls: Vec<String> = (0..300)
        .map(|i| server.url(&format!("/delay/{}?i={i}", (i * 7) % 5)))
        .collect();

    let mut in_order = Vec::new();
    fetcher.for_each_in_order(urls.iter().map(String::as_str), |outcome| {
        in_order.push(outcome.unwrap().request().url().to_owned());
    });
    assert_eq!(in_order, urls);

    let mut completed: Vec<String> = Vec::new();
    fetcher.for_each_completed(&urls, |outcome| {
        completed.push(outcome.unwrap().request().url().to_owned());
    });
    completed.sort();
    let mut expected = urls.clone();
    expected.sort();
    assert_eq!(completed, expected);
}

#[test]
fn concurrency_bounds_the_requests_in_flight_whatever_the_threads() {
    let server = TestServer::start();
    let urls: Vec<String> = (0..400)
        .map(|i| server.url(&format!("/delay/30?item={i}")))
        .collect();
    let fetcher = multiplexed(2, 16);

    let (responses, exceptions) = urls.par_iter().fetch_all_with(&fetcher);

    assert_eq!(responses.len(), 400);
    assert!(exceptions.is_empty());
    let max = server.stats().max_in_flight();
    assert!(max <= 16, "{max} in flight with concurrency 16");
    assert!(
        max > 8,
        "only {max} in flight: requests were not multiplexed"
    );
    assert!(fetcher.session_count() <= 2);
    // One connection pool per worker thread.
    assert!(server.stats().connections() <= 2 * 16);
}

#[test]
fn concurrency_is_shared_by_every_entry_point_of_a_fetcher() {
    let server = TestServer::start();
    let fetcher = multiplexed(2, 6);
    let urls: Vec<String> = (0..120)
        .map(|i| server.url(&format!("/delay/20?i={i}")))
        .collect();
    std::thread::scope(|scope| {
        // Direct calls from eight threads, a parallel iterator and a sequential stream at once.
        for chunk in urls[..40].chunks(5) {
            let fetcher = &fetcher;
            scope.spawn(move || {
                for url in chunk {
                    assert!(fetcher.execute(url.as_str()).is_ok());
                }
            });
        }
        scope.spawn(|| {
            let (responses, _) = urls[40..80].par_iter().fetch_all_with(&fetcher);
            assert_eq!(responses.len(), 40);
        });
        scope.spawn(|| {
            let mut n = 0;
            fetcher.for_each_completed(&urls[80..], |outcome| n += usize::from(outcome.is_ok()));
            assert_eq!(n, 40);
        });
    });
    let max = server.stats().max_in_flight();
    assert!(max <= 6, "{max} in flight with concurrency 6");
    assert_eq!(server.stats().requests(), 120);

    let server = TestServer::start();
    let mut pool = Pool::builder()
        .num_processes(2)
        .fetcher(|fetcher| fetcher.concurrency(6))
        .from_urls(
            urls.iter()
                .map(|url| url.replace(&base_of(url), &server.base())),
        )
        .unwrap();
    pool.join_all();
    assert_eq!(pool.responses().count(), 120);
    let max = server.stats().max_in_flight();
    assert!(
        (4..=6).contains(&max),
        "{max} in flight in a pool with concurrency 6"
    );
}

/// Alone in its process: other tests' requests through the global fetcher take its slots.
#[test]
fn the_global_fetcher_keeps_its_default_in_flight() {
    if support::run_alone(
        module_path!(),
        "the_global_fetcher_keeps_its_default_in_flight",
    ) {
        return;
    }
    assert_eq!(
        Fetcher::global().concurrency(),
        Fetcher::DEFAULT_CONCURRENCY
    );
    let server = TestServer::start();
    let urls: Vec<String> = (0..300)
        .map(|i| server.url(&format!("/delay/40?i={i}")))
        .collect();
    let (responses, _) = urls.par_iter().fetch_all();
    assert_eq!(responses.len(), 300);
    let max = server.stats().max_in_flight();
    assert!(
        (33..=Fetcher::DEFAULT_CONCURRENCY).contains(&max),
        "{max} in flight with the defaults"
    );
}

#[test]
fn num_processes_alone_sets_the_requests_in_flight_too() {
    let fetcher = Fetcher::builder().num_processes(3).build().unwrap();
    assert_eq!((fetcher.threads(), fetcher.concurrency()), (3, 3));
    let fetcher = Fetcher::builder()
        .num_processes(3)
        .concurrency(40)
        .build()
        .unwrap();
    assert_eq!((fetcher.threads(), fetcher.concurrency()), (3, 40));
}

#[test]
fn absurd_threads_and_concurrency_are_refused_by_name() {
    for (builder, message) in [
        (
            Fetcher::builder().concurrency(0),
            "concurrency must be from 1 to 10000, not 0",
        ),
        (
            Fetcher::builder().concurrency(100_000),
            "concurrency must be from 1 to 10000, not 100000",
        ),
        (
            Fetcher::builder().num_processes(100_000),
            "num_processes must be from 1 to 1024, not 100000",
        ),
    ] {
        let error = builder.build().unwrap_err();
        assert!(matches!(error, BuildError::OutOfRange { .. }), "{error:?}");
        assert_eq!(error.to_string(), message);
    }
}

#[test]
fn an_adaptor_that_fetches_again_with_the_same_fetcher_does_not_deadlock() {
    let server = TestServer::start();
    let fetcher = multiplexed(2, 4);
    let urls: Vec<String> = (0..40).map(|i| server.url(&format!("/n/{i}"))).collect();
    let follow_ups: usize = urls
        .par_iter()
        .fetch_with(&fetcher)
        .map(|outcome| {
            let next = format!("{}/again", outcome.unwrap().request().url());
            let (responses, _) = [next].par_iter().fetch_all_with(&fetcher);
            responses.len()
        })
        .sum();
    assert_eq!(follow_ups, 40);
    assert_eq!(server.stats().requests(), 80);
}

#[test]
fn a_panicking_adaptor_after_fetch_propagates_without_hanging() {
    let server = TestServer::start();
    let fetcher = multiplexed(2, 4);
    let urls: Vec<String> = (0..500).map(|i| server.url(&format!("/n/{i}"))).collect();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        urls.par_iter()
            .fetch_with(&fetcher)
            .for_each(|_| panic!("the adaptor fails"));
    }));
    assert!(result.is_err());
    assert!(server.stats().requests() < 500);
    // The fetcher is still usable.
    let (responses, _) = urls[..3].par_iter().fetch_all_with(&fetcher);
    assert_eq!(responses.len(), 3);
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
    let fetcher = multiplexed(3, 30);

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
    let fetcher = multiplexed(2, 16);

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
        .concurrency(8)
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
fn a_panicking_progress_hook_costs_no_outcome() {
    let server = TestServer::start();
    let fetcher = Fetcher::builder()
        .num_processes(2)
        .concurrency(8)
        .on_progress(|progress, _| {
            if progress.done % 3 == 0 {
                panic!("report failed");
            }
        })
        .build()
        .unwrap();
    let urls: Vec<String> = (0..60).map(|i| server.url(&format!("/p/{i}"))).collect();
    let (responses, exceptions) = urls.par_iter().fetch_all_with(&fetcher);
    assert_eq!((responses.len(), exceptions.len()), (60, 0));
    let progress = fetcher.progress();
    assert_eq!((progress.done, progress.failed), (60, 0));
}

#[test]
fn adaptors_after_a_fetch_run_on_the_fetchers_workers() {
    let server = TestServer::start();
    let urls: Vec<String> = (0..40).map(|i| server.url(&format!("/t/{i}"))).collect();
    let fetcher = multiplexed(3, 12);
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
    let fetcher = multiplexed(8, 32);
    let (responses, exceptions) = [server.url("/bytes/1")].par_iter().fetch_all_with(&fetcher);
    assert_eq!((responses.len(), exceptions.len()), (1, 0));
    assert_eq!(fetcher.session_count(), 1, "7 idle workers, no sessions");

    let empty: Vec<String> = Vec::new();
    let (responses, exceptions) = empty.par_iter().fetch_all_with(&fetcher);
    assert!(responses.is_empty() && exceptions.is_empty());
    assert_eq!(fetcher.session_count(), 1);
}

#[test]
fn a_satisfied_short_circuit_stops_sending() {
    let server = TestServer::start();
    let fetcher = multiplexed(2, 4);
    let urls: Vec<String> = (0..2_000)
        .map(|i| server.url(&format!("/status/{}", if i == 10 { 404 } else { 200 })))
        .collect();
    let found = urls
        .par_iter()
        .fetch_with(&fetcher)
        .find_first(|outcome| outcome.as_ref().is_ok_and(|r| r.status() == 404));
    assert_eq!(found.expect("found").expect("response").status(), 404);
    let sent = server.stats().requests();
    assert!(sent < 500, "{sent} requests were sent for a match at 10");
}

#[test]
fn refused_connections_mixed_in_are_accounted_once() {
    let server = TestServer::start();
    let refused = refused_url();
    let fetcher = multiplexed(2, 16);
    let urls: Vec<String> = (0..600)
        .map(|i| {
            if i % 3 == 0 {
                format!("{refused}{i}")
            } else {
                server.url(&format!("/n/{i}"))
            }
        })
        .collect();
    let seen = AtomicUsize::new(0);
    let ok = urls
        .clone()
        .into_iter()
        .par_bridge()
        .fetch_with(&fetcher)
        .inspect(|_| {
            seen.fetch_add(1, Ordering::Relaxed);
        })
        .filter(Result::is_ok)
        .count();
    assert_eq!(seen.into_inner(), 600);
    assert_eq!(ok, 400);
}

#[test]
fn find_first_waits_for_a_slow_first_match() {
    let server = TestServer::start();
    let fetcher = multiplexed(2, 8);
    let mut urls: Vec<String> = (0..60)
        .map(|i| server.url(&format!("/status/404?i={i}")))
        .collect();
    urls[0] = server.url("/delay/800");
    urls[20] = server.url("/status/200?fast");
    let found = urls
        .par_iter()
        .fetch_with(&fetcher)
        .find_first(|outcome| outcome.as_ref().is_ok_and(|r| r.status() == 200))
        .expect("a match")
        .expect("a response");
    assert_eq!(
        found.request().url(),
        urls[0],
        "the first match is the slow one"
    );
}

#[test]
fn a_panicking_input_propagates_without_hanging_an_ordered_fetch() {
    let server = TestServer::start();
    let fetcher = multiplexed(2, 1);
    let urls: Vec<String> = (0..3_000).map(|i| server.url(&format!("/n/{i}"))).collect();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        urls.par_iter()
            .enumerate()
            .map(|(i, url)| {
                assert!(i != 5, "the input fails");
                url
            })
            .fetch_with(&fetcher)
            .count()
    }));
    assert!(result.is_err());
}

#[test]
fn a_stream_closure_that_calls_its_fetcher_again_does_not_deadlock() {
    let server = TestServer::start();
    let fetcher = multiplexed(2, 4);
    let urls: Vec<String> = (0..40).map(|i| server.url(&format!("/n/{i}"))).collect();
    let mut follow_ups = 0;
    fetcher.for_each_completed(&urls, |outcome| {
        let next = format!("{}/again", outcome.unwrap().request().url());
        let (responses, _) = [next].par_iter().fetch_all_with(&fetcher);
        follow_ups += responses.len();
    });
    assert_eq!(follow_ups, 40);
    assert_eq!(server.stats().requests(), 80);
}

/// Runs `call` on a thread of its own: `true` if it returned within `seconds`.
fn returns_within(seconds: u64, call: impl FnOnce() + Send + 'static) -> bool {
    let (done, returned) = mpsc::channel();
    std::thread::spawn(move || {
        call();
        let _ = done.send(());
    });
    returned.recv_timeout(Duration::from_secs(seconds)).is_ok()
}

/// A rayon wait inside the input's adaptor lets the caller's one thread run a later piece of
/// the same input, which waits for the front only that thread can move: the read-ahead gives
/// up order after a stall rather than wait for good (this deadlocked without that).
#[test]
fn a_rayon_wait_inside_the_input_does_not_stop_the_feed() {
    let server = TestServer::start();
    let base = server.base();
    assert!(returns_within(30, move || {
        let caller = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let other = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let inner = multiplexed(1, 1);
        let outer = multiplexed(1, 1);
        caller.install(|| {
            let (responses, _) = (0..100usize)
                .into_par_iter()
                .map(|i| {
                    if i == 0 {
                        other.install(|| std::thread::sleep(Duration::from_millis(50)));
                    }
                    if i == 1 {
                        let (inner_responses, _) =
                            [format!("{base}/inner")].par_iter().fetch_all_with(&inner);
                        assert_eq!(inner_responses.len(), 1);
                    }
                    format!("{base}/{i}")
                })
                .fetch_all_with(&outer);
            assert_eq!(responses.len(), 100);
        });
    }));
}

/// A fetch whose input is another fetch's outcomes: the inner fetch's workers read the outer
/// input's blocks in the order the inner requests complete, a slow first one last.
#[test]
fn a_fetch_of_another_fetch_s_outcomes_does_not_wait_for_good() {
    let server = TestServer::start();
    let base = server.base();
    assert!(returns_within(30, move || {
        let (inner, outer) = (multiplexed(1, 4), multiplexed(1, 1));
        let urls: Vec<String> = (0..64)
            .map(|i| match i {
                0 => format!("{base}/delay/1500"),
                _ => format!("{base}/a/{i}"),
            })
            .collect();
        let (responses, _) = urls
            .par_iter()
            .fetch_with(&inner)
            .map(|outcome| format!("{}/b", outcome.unwrap().request().url()))
            .fetch_all_with(&outer);
        assert_eq!(responses.len(), 64);
    }));
}
