//! The `requests_toolbelt.threaded` documentation's walk-through, in parfetch: a pool from URLs,
//! its responses and exceptions, a retry of the exceptions, a queue fed while the pool runs,
//! and `map`. Everything runs against an embedded loopback server.
//!
//! Run it with `cargo run --example pool`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Duration;

use parfetch::{Pool, Request};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = support::TestServer::start();
    let refused = support::refused_url();
    let mut urls: Vec<String> = (0..20).map(|i| server.url(&format!("/page/{i}"))).collect();
    urls.push(format!("{refused}down"));
    urls.push("htp:/typo".to_owned());

    // p = pool.Pool.from_urls(urls); p.join_all()
    let mut pool = Pool::builder()
        .num_processes(8)
        .fetcher(|fetcher| fetcher.timeout(Duration::from_secs(5)))
        .from_urls(&urls)?;
    pool.join_all();

    // for response in p.responses(): ...
    for response in pool.responses().take(3) {
        println!(
            "GET {}. Returned {}.",
            response.request().url(),
            response.status()
        );
    }
    println!("... and {} more responses", pool.responses().count());

    // for exc in p.exceptions(): ...
    let exceptions: Vec<_> = pool.exceptions().collect();
    for exception in &exceptions {
        println!(
            "GET {}. Raised {}.",
            exception.request().url(),
            exception.error()
        );
    }

    // new_pool = pool.Pool.from_exceptions(p.exceptions()), keeping what is worth retrying.
    let retryable: Vec<_> = exceptions
        .iter()
        .filter(|e| e.error().is_retryable())
        .collect();
    let retried = retryable.len();
    let mut retry = Pool::builder()
        .num_processes(2)
        .from_exceptions(retryable)?;
    retry.join_all();
    println!(
        "retried {retried} exception(s); still failing: {}",
        retry.exceptions().count()
    );

    // A queue fed while the pool runs, results taken as they complete.
    let feeding = Pool::builder().num_processes(4).build()?;
    let queue = feeding.job_queue();
    let producer = std::thread::spawn({
        let base = server.base();
        move || {
            for i in 0..10 {
                let request = Request::post(format!("{base}/echo")).text(format!("event {i}"));
                queue.submit(request).expect("the queue is open");
                std::thread::sleep(Duration::from_millis(5));
            }
            queue.close();
        }
    });
    let done = feeding.results().filter(Result::is_ok).count();
    producer.join().expect("producer");
    println!("fed while running: {done} of 10 done");

    // threaded.map(requests)
    let (responses, exceptions) = parfetch::map(&urls);
    println!(
        "map: {} responses, {} exceptions",
        responses.len(),
        exceptions.len()
    );
    Ok(())
}
