//! The crate's own hot paths: building requests, one request end to end on a warm session, and
//! a batch through `fetch_all_with`, against a loopback server.
//!
//! `cargo bench --bench hot_paths`. The side-by-side comparison with other clients is
//! `cargo run --release --example compare`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use parfetch::prelude::*;
use parfetch::{Fetcher, Request};
use rayon::prelude::*;

fn requests(c: &mut Criterion) {
    let url = "http://127.0.0.1:8080/items/12345?page=2";
    c.bench_function("Request::from(&str)", |b| {
        b.iter(|| Request::from(black_box(url)))
    });
    let template = Request::post(url).header("x-batch", "7").text("payload");
    c.bench_function("Request::with_url (template)", |b| {
        b.iter(|| template.with_url(black_box(url)))
    });
    c.bench_function("Request with 3 headers and a query", |b| {
        b.iter(|| {
            Request::get(black_box(url))
                .header("accept", "application/json")
                .header("x-trace", "abc")
                .header("x-tenant", "7")
                .query([("a", "1"), ("b", "2")])
        })
    });
}

fn round_trips(c: &mut Criterion) {
    let server = support::TestServer::start();
    let url = server.url("/bytes/100");
    let fetcher = Fetcher::new();
    fetcher.execute(url.as_str()).expect("warm-up");
    c.bench_function("execute: one GET on a warm session", |b| {
        b.iter(|| fetcher.execute(url.as_str()).expect("response"))
    });
    c.bench_function("execute: invalid URL (rejected before sending)", |b| {
        b.iter(|| {
            fetcher
                .execute(black_box("not a url"))
                .expect_err("invalid")
        })
    });

    let urls: Vec<String> = (0..1_000)
        .map(|i| server.url(&format!("/bytes/100?i={i}")))
        .collect();
    let mut group = c.benchmark_group("fetch_all_with 1,000 GETs");
    group.throughput(Throughput::Elements(urls.len() as u64));
    group.sample_size(20);
    for (name, threads, in_flight) in [("16 threads", 16, 1), ("2 threads, 16 in flight", 2, 8)] {
        let fetcher = Fetcher::builder()
            .num_processes(threads)
            .concurrency(threads * in_flight)
            .build()
            .expect("fetcher");
        group.bench_function(name, |b| {
            b.iter(|| {
                let (responses, _) = urls.par_iter().fetch_all_with(&fetcher);
                assert_eq!(responses.len(), urls.len());
            })
        });
    }
    group.finish();
}

criterion_group!(benches, requests, round_trips);
criterion_main!(benches);
