//! Fetches 5,000 URLs from an embedded loopback server with `fetch_all_with` on a fetcher with
//! the defaults (one worker per core, 64 requests in flight), and prints what came back and how
//! fast.
//!
//! Run it with `cargo run --release --example demo`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use parfetch::Fetcher;
use parfetch::prelude::*;
use rayon::prelude::*;

const URLS: usize = 5_000;

fn main() -> Result<(), parfetch::BuildError> {
    let server = support::TestServer::start();
    let refused = support::refused_url();

    // Mostly good URLs, with some 404s, some malformed URLs and a host that refuses connections.
    let urls: Vec<String> = (0..URLS)
        .map(|i| match i % 100 {
            0 => format!("not a url #{i}"),
            1 => format!("{refused}{i}"),
            2..=4 => server.url(&format!("/status/404?item={i}")),
            _ => server.url(&format!("/item/{i}")),
        })
        .collect();

    let fetcher = Fetcher::builder().timeout(Duration::from_secs(5)).build()?;

    let started = Instant::now();
    let (responses, exceptions) = urls.par_iter().fetch_all_with(&fetcher);
    let elapsed = started.elapsed();

    let mut by_status: BTreeMap<u16, usize> = BTreeMap::new();
    for response in &responses {
        *by_status.entry(response.status().as_u16()).or_default() += 1;
    }
    let mut by_error: BTreeMap<&str, usize> = BTreeMap::new();
    for exception in &exceptions {
        *by_error.entry(exception.error().kind()).or_default() += 1;
    }

    println!(
        "fetched {URLS} URLs on {} threads, {} in flight, in {elapsed:.2?}",
        fetcher.threads(),
        fetcher.concurrency()
    );
    println!(
        "  {:.0} requests/s",
        URLS as f64 / elapsed.as_secs_f64().max(f64::EPSILON)
    );
    println!(
        "  responses:  {:>5}  by status {by_status:?}",
        responses.len()
    );
    println!(
        "  exceptions: {:>5}  by kind {by_error:?}",
        exceptions.len()
    );
    if let Some(example) = exceptions.first() {
        println!("  for example: {example}");
    }
    println!(
        "  server saw {} requests on {} connections; {} sessions built",
        server.stats().requests(),
        server.stats().connections(),
        fetcher.session_count()
    );
    assert_eq!(
        responses.len() + exceptions.len(),
        URLS,
        "every URL is accounted for"
    );
    Ok(())
}
