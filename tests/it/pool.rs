//! `Pool` and `map`: each documented behaviour of `requests_toolbelt.threaded`, and each of its
//! bugs shown fixed.

use crate::support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use parfetch::{BuildError, FetchError, Fetcher, Pool, Request};
use serde_json::Value;
use support::{TestServer, refused_url};

/// Waits, up to five seconds, until `done` holds.
fn eventually(mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    done()
}

fn urls(server: &TestServer, n: usize) -> Vec<String> {
    (0..n).map(|i| server.url(&format!("/item/{i}"))).collect()
}

#[test]
fn from_urls_fetches_every_url_and_join_all_waits() {
    let server = TestServer::start();
    let urls = urls(&server, 200);
    let mut pool = Pool::builder().num_processes(8).from_urls(&urls).unwrap();
    pool.join_all();

    assert_eq!(pool.pending(), 0);
    let responses: Vec<_> = pool.responses().collect();
    assert_eq!(responses.len(), 200);
    let seen: HashSet<&str> = responses.iter().map(|r| r.request().url()).collect();
    assert_eq!(seen.len(), 200);
    assert!(
        responses
            .iter()
            .all(|r| r.status() == 200 && r.request().method() == "GET")
    );
    assert_eq!(pool.exceptions().count(), 0);
    // Draining is one-shot, as in the original.
    assert_eq!(pool.responses().count(), 0);
    // join_all is idempotent.
    pool.join_all();
}

#[test]
fn work_starts_at_construction_without_join_all() {
    let server = TestServer::start();
    let pool = Pool::from_urls(urls(&server, 10)).unwrap();
    assert!(eventually(|| server.stats().requests() == 10));
    assert!(eventually(|| pool.pending() == 0));
    assert_eq!(pool.responses().count(), 10);
}

#[test]
fn get_response_and_get_exception_never_block() {
    let server = TestServer::start();
    let pool = Pool::builder()
        .num_processes(2)
        .from_urls([server.url("/delay/1500"), server.url("/delay/1500")])
        .unwrap();
    let asked = Instant::now();
    assert!(pool.get_response().is_none());
    assert!(pool.get_exception().is_none());
    assert_eq!(pool.responses().count(), 0);
    assert!(
        asked.elapsed() < Duration::from_millis(1000),
        "returned before the jobs ended"
    );
    assert_eq!(pool.pending(), 2);
}

#[test]
fn exceptions_hold_the_request_and_a_typed_error() {
    let server = TestServer::start();
    let refused = refused_url();
    let inputs = [
        server.url("/ok"),
        refused.clone(),
        "::".to_owned(),
        server.url("/status/500"),
    ];
    let mut pool = Pool::builder().num_processes(4).from_urls(&inputs).unwrap();
    pool.join_all();

    let responses: Vec<_> = pool.responses().collect();
    assert_eq!(responses.len(), 2, "a 500 is a response");
    let mut exceptions: Vec<_> = pool.exceptions().collect();
    exceptions.sort_by(|a, b| a.request().url().cmp(b.request().url()));
    assert_eq!(exceptions.len(), 2);
    assert_eq!(exceptions[0].request().url(), "::");
    assert!(matches!(
        exceptions[0].error(),
        FetchError::InvalidUrl { .. }
    ));
    assert_eq!(exceptions[1].request().url(), refused);
    assert!(exceptions[1].error().is_connect());
}

#[test]
fn from_urls_with_a_template_applies_it_to_every_url() {
    let server = TestServer::start();
    let template = Request::post("http://ignored.invalid/")
        .header("x-batch", "42")
        .json(&serde_json::json!({"hello": "world"}));
    let urls: Vec<String> = (0..20)
        .map(|i| server.url(&format!("/echo?i={i}")))
        .collect();
    let mut pool = Pool::builder()
        .num_processes(4)
        .from_urls_with(&template, &urls)
        .unwrap();
    pool.join_all();

    let responses: Vec<_> = pool.responses().collect();
    assert_eq!(responses.len(), 20);
    for response in &responses {
        let echo: Value = response.json().unwrap();
        assert_eq!(echo["method"], "POST");
        assert_eq!(echo["headers"]["x-batch"], "42");
        assert_eq!(echo["body"], r#"{"hello":"world"}"#);
        assert_eq!(
            format!("/echo?{}", echo["query"].as_str().unwrap()),
            response.request().url().trim_start_matches(&server.base())
        );
    }
}

#[test]
fn from_exceptions_reruns_exactly_the_failed_requests() {
    let server = TestServer::start();
    let refused = refused_url();
    let mut inputs = Vec::new();
    for i in 0..30 {
        inputs.push(match i % 3 {
            0 => format!("{refused}{i}"),
            1 => format!("bad url {i}"),
            _ => server.url(&format!("/fine/{i}")),
        });
    }
    let mut first = Pool::builder().num_processes(1).from_urls(&inputs).unwrap();
    first.join_all();
    let failed: Vec<_> = first.exceptions().collect();
    assert_eq!(failed.len(), 20);

    let mut again = Pool::builder()
        .num_processes(1)
        .from_exceptions(&failed)
        .unwrap();
    again.join_all();
    let mut rerun: Vec<String> = again
        .exceptions()
        .map(|e| e.request().url().to_owned())
        .collect();
    let mut expected: Vec<String> = failed
        .iter()
        .map(|e| e.request().url().to_owned())
        .collect();
    // Results come in completion order: an invalid URL fails before a refused connection.
    rerun.sort();
    expected.sort();
    assert_eq!(rerun, expected);
    assert_eq!(
        server.stats().requests(),
        10,
        "the good ones were not sent again"
    );

    // Keeping only what is worth retrying: the refused ones, not the malformed URLs.
    let retryable: Vec<_> = failed
        .into_iter()
        .filter(|e| e.error().is_retryable())
        .collect();
    assert_eq!(retryable.len(), 10);
    assert!(retryable.iter().all(|e| e.error().is_connect()));
    let mut retry = Pool::from_exceptions(retryable).unwrap();
    retry.join_all();
    assert_eq!(retry.exceptions().count(), 10);
}

#[test]
fn a_queue_fed_while_the_pool_runs_loses_nothing() {
    // The original's workers quit on the first empty queue: jobs added later never run.
    let server = TestServer::start();
    let pool = Pool::builder().num_processes(4).build().unwrap();
    std::thread::scope(|scope| {
        for producer in 0..3 {
            let queue = pool.job_queue();
            let server = &server;
            scope.spawn(move || {
                for i in 0..50 {
                    if i % 10 == 0 {
                        // Gaps long enough for every worker to find the queue empty.
                        std::thread::sleep(Duration::from_millis(30));
                    }
                    queue
                        .submit(server.url(&format!("/p{producer}/{i}")))
                        .unwrap();
                }
            });
        }
    });
    pool.close();
    let outcomes: Vec<_> = pool.results().collect();
    assert_eq!(outcomes.len(), 150);
    assert!(outcomes.iter().all(|o| o.is_ok()));
    assert_eq!(server.stats().requests(), 150);
    assert_eq!(pool.pending(), 0);
}

#[test]
fn thousands_of_fast_failing_jobs_are_never_lost_or_doubled() {
    // The original's start-up race loses about a quarter of such jobs (its issue #381).
    let refused = refused_url();
    for round in 0..5 {
        let jobs: Vec<String> = (0..2_000)
            .map(|i| {
                if i % 2 == 0 {
                    format!("bad url {round}/{i}")
                } else {
                    format!("{refused}{round}/{i}")
                }
            })
            .collect();
        let mut pool = Pool::builder().num_processes(32).from_urls(&jobs).unwrap();
        pool.join_all();
        let failed: Vec<String> = pool
            .exceptions()
            .map(|e| e.request().url().to_owned())
            .collect();
        assert_eq!(failed.len(), jobs.len(), "round {round}");
        let unique: HashSet<&String> = failed.iter().collect();
        assert_eq!(unique.len(), jobs.len(), "round {round}: no job twice");
        assert_eq!(pool.responses().count(), 0);
    }
}

#[test]
fn results_come_in_completion_order_and_end_when_all_jobs_are_done() {
    let server = TestServer::start();
    let mut jobs = vec![server.url("/delay/300")];
    jobs.extend((0..9).map(|i| server.url(&format!("/fast/{i}"))));
    jobs.push("not a url".to_owned());
    let pool = Pool::builder().num_processes(4).from_urls(&jobs).unwrap();

    let outcomes: Vec<_> = pool.results().collect();

    assert_eq!(outcomes.len(), 11);
    let last = outcomes
        .last()
        .unwrap()
        .as_ref()
        .expect("the slow one is a response");
    assert_eq!(last.request().url(), jobs[0], "the slow job finishes last");
    assert_eq!(outcomes.iter().filter(|o| o.is_err()).count(), 1);
    assert!(pool.results().next().is_none(), "drained");
}

#[test]
fn join_all_timeout_gives_up_and_can_be_retried() {
    let server = TestServer::start();
    let mut pool = Pool::builder()
        .num_processes(2)
        .from_urls([
            server.url("/delay/400"),
            server.url("/delay/400"),
            server.url("/delay/400"),
        ])
        .unwrap();
    let error = pool
        .join_all_timeout(Duration::from_millis(50))
        .unwrap_err();
    assert!(error.pending >= 1, "{error}");
    assert!(error.to_string().contains("still pending"));
    pool.join_all_timeout(Duration::from_secs(10))
        .expect("done in time");
    assert_eq!(pool.responses().count(), 3);
}

#[test]
fn a_closed_queue_rejects_jobs_and_gives_them_back() {
    let pool = Pool::builder().num_processes(1).build().unwrap();
    let queue = pool.job_queue();
    assert!(!queue.is_closed());
    pool.close();
    pool.close();
    assert!(queue.is_closed());
    let rejected = queue.submit("http://127.0.0.1:9/late").unwrap_err();
    assert_eq!(rejected.request.url(), "http://127.0.0.1:9/late");
    assert!(rejected.to_string().contains("closed"));
    assert_eq!(pool.results().count(), 0);
}

#[test]
fn join_all_closes_an_open_queue() {
    let server = TestServer::start();
    let mut pool = Pool::builder().num_processes(2).build().unwrap();
    pool.submit(server.url("/one")).unwrap();
    pool.join_all();
    assert!(pool.submit(server.url("/two")).is_err());
    assert_eq!(pool.responses().count(), 1);
}

#[test]
fn pool_hooks_run_per_worker_and_panics_become_exceptions() {
    let server = TestServer::start();
    let mut pool = Pool::builder()
        .num_processes(3)
        .fetcher(|fetcher| {
            fetcher
                .timeout(Duration::from_secs(5))
                .max_body_bytes(1_000)
        })
        .initializer(|session| session.user_agent("pool-test"))
        .auth_generator(|session| {
            let mut headers = parfetch::header::HeaderMap::new();
            headers.insert("authorization", "Bearer t".parse().unwrap());
            session.default_headers(headers)
        })
        .from_urls([server.url("/echo"), server.url("/bytes/2000")])
        .unwrap();
    pool.join_all();
    let response = pool.get_response().expect("echo");
    let echo: Value = response.json().unwrap();
    assert_eq!(echo["headers"]["user-agent"], "pool-test");
    assert_eq!(echo["headers"]["authorization"], "Bearer t");
    let too_large = pool.get_exception().expect("over max_body_bytes");
    assert!(matches!(
        too_large.error(),
        FetchError::BodyTooLarge { limit: 1_000, .. }
    ));

    // The original's documented initializer returned None and every worker died; here a
    // broken hook fails each job with a reason, and the pool still ends.
    let mut broken = Pool::builder()
        .num_processes(2)
        .session(|| panic!("no session for you"))
        .from_urls(urls(&server, 10))
        .unwrap();
    broken.join_all();
    let exceptions: Vec<_> = broken.exceptions().collect();
    assert_eq!(exceptions.len(), 10);
    assert!(
        exceptions
            .iter()
            .all(|e| e.to_string().contains("no session for you"))
    );
}

#[test]
fn zero_processes_is_an_error() {
    assert!(matches!(
        Pool::builder()
            .num_processes(0)
            .from_urls(["http://127.0.0.1:9/"]),
        Err(BuildError::ZeroProcesses)
    ));
}

#[test]
fn empty_inputs_make_pools_that_finish_at_once() {
    let mut pool = Pool::from_urls(Vec::<String>::new()).unwrap();
    pool.join_all();
    assert_eq!(pool.results().count(), 0);
    let mut pool = Pool::from_exceptions(Vec::<parfetch::ThreadException>::new()).unwrap();
    pool.join_all();
    let (responses, exceptions) = parfetch::map(Vec::<String>::new());
    assert!(responses.is_empty() && exceptions.is_empty());
}

#[test]
fn map_and_map_with_return_responses_and_exceptions_in_input_order() {
    let server = TestServer::start();
    let requests: Vec<Request> = (0..30)
        .map(|i| {
            if i % 10 == 3 {
                Request::get(format!("bad {i}"))
            } else {
                Request::post(server.url(&format!("/echo?i={i}"))).text(format!("{i}"))
            }
        })
        .collect();

    let (responses, exceptions) = parfetch::map(&requests);
    assert_eq!((responses.len(), exceptions.len()), (27, 3));
    let bodies: Vec<String> = responses
        .iter()
        .map(|r| {
            r.json::<Value>().unwrap()["body"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let expected: Vec<String> = (0..30)
        .filter(|i| i % 10 != 3)
        .map(|i| i.to_string())
        .collect();
    assert_eq!(bodies, expected);

    let fetcher = Fetcher::builder().num_processes(10).build().unwrap();
    let (responses, exceptions) = parfetch::map_with(requests, &fetcher);
    assert_eq!((responses.len(), exceptions.len()), (27, 3));
    assert!(fetcher.session_count() <= 10);
}

#[test]
fn bad_jobs_fail_alone_and_the_good_ones_finish() {
    // In the original, a job with a missing or unknown key raises TypeError, kills its worker
    // and strands the rest of the queue.
    let server = TestServer::start();
    let mut jobs: Vec<Request> = urls(&server, 8).iter().map(Request::get).collect();
    jobs.insert(2, Request::get(""));
    jobs.insert(5, Request::get(server.url("/h")).header("bad\nname", "v"));
    let unencodable = std::collections::HashMap::from([(vec![0u8], 1)]);
    jobs.insert(7, Request::post(server.url("/j")).json(&unencodable));
    let mut pool = Pool::builder()
        .num_processes(2)
        .from_requests(&jobs)
        .unwrap();
    pool.join_all();
    assert_eq!(pool.responses().count(), 8);
    let errors: Vec<_> = pool.exceptions().map(|e| e.into_parts().1).collect();
    assert_eq!(errors.len(), 3);
    assert!(
        errors.iter().all(FetchError::is_invalid_request),
        "{errors:?}"
    );
}

#[test]
fn sessions_are_built_only_for_threads_that_take_work() {
    // The original builds num_processes sessions up front: 50 for one job.
    let server = TestServer::start();
    let built = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = std::sync::Arc::clone(&built);
    let mut pool = Pool::builder()
        .num_processes(50)
        .initializer(move |session| {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            session
        })
        .from_urls([server.url("/only")])
        .unwrap();
    pool.join_all();
    assert_eq!(pool.responses().count(), 1);
    assert_eq!(built.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[test]
fn each_pool_thread_reuses_its_connection() {
    let server = TestServer::start();
    let mut pool = Pool::builder()
        .num_processes(3)
        .from_urls(urls(&server, 60))
        .unwrap();
    pool.join_all();
    assert_eq!(pool.responses().count(), 60);
    assert!(
        server.stats().connections() <= 3,
        "{} connections",
        server.stats().connections()
    );
}

#[test]
fn one_thread_returns_results_in_input_order() {
    let server = TestServer::start();
    let urls = urls(&server, 30);
    let pool = Pool::builder().num_processes(1).from_urls(&urls).unwrap();
    let order: Vec<String> = pool
        .results()
        .map(|outcome| outcome.unwrap().request().url().to_owned())
        .collect();
    assert_eq!(order, urls);
}

#[test]
fn map_takes_a_plain_iterator_through_par_bridge() {
    // The original's map silently does nothing with a generator.
    use rayon::iter::ParallelBridge;
    let server = TestServer::start();
    let generated = (0..25).map(|i| server.url(&format!("/gen/{i}")));
    let (responses, exceptions) = parfetch::map(generated.par_bridge());
    assert_eq!((responses.len(), exceptions.len()), (25, 0));
}

#[cfg(feature = "cookies")]
#[test]
fn a_session_with_a_cookie_store_sends_cookies_to_later_jobs_of_its_thread() {
    let server = TestServer::start();
    let pool = Pool::builder()
        .num_processes(1)
        .initializer(|session| session.cookie_store(true))
        .from_urls([server.url("/set-cookie/abc"), server.url("/echo")])
        .unwrap();
    let outcomes: Vec<_> = pool.results().map(Result::unwrap).collect();
    assert_eq!(outcomes[0].text(), "cookie set");
    let echo: Value = outcomes[1].json().unwrap();
    assert_eq!(echo["headers"]["cookie"], "session=abc");
}

/// A pool holds the fetcher's own builder: every fetcher setting applies to it, here the
/// allow-list and the body cap, which it had no setter for.
#[test]
fn every_fetcher_setting_reaches_a_pool() {
    let server = TestServer::start();
    let builder = || {
        Fetcher::builder()
            .allowed_hosts(["127.0.0.1"])
            .max_body_bytes(10)
            .concurrency(3)
            .connect_timeout(Duration::from_secs(3))
    };
    let mut pool = parfetch::pool::PoolBuilder::from(builder())
        .from_urls([
            server.url("/bytes/5"),
            server.url("/bytes/50"),
            server.url("/bytes/5").replace("127.0.0.1", "localhost"),
        ])
        .unwrap();
    pool.join_all();
    assert_eq!(pool.responses().count(), 1);
    let mut kinds: Vec<&str> = pool.exceptions().map(|e| e.error().kind()).collect();
    kinds.sort_unstable();
    assert_eq!(kinds, ["body_too_large", "host_not_allowed"]);
    // The pool's fetcher is the builder's, setting for setting.
    let configured = format!("{:?}", builder().build().unwrap());
    let held = format!(
        "{:?}",
        Pool::builder()
            .fetcher(|_| builder())
            .build()
            .unwrap()
            .fetcher()
    );
    assert_eq!(held, configured);
}
