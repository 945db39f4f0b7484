//! How much memory a streaming pipeline holds beyond its input: `fetch_with(..).count()` over N
//! URLs against an embedded loopback server, from `par_iter()` (indexed: order kept through the
//! reorder window) or `par_bridge()` (unindexed: completion order).
//!
//! ```sh
//! cargo run --release --example stream_memory -- par_iter 1000000
//! cargo run --release --example stream_memory -- par_bridge 1000000
//! ```
//!
//! It prints the resident memory once the input is built, the peak at the end, and the growth
//! between the two (Linux: `VmRSS` and `VmHWM` of `/proc/self/status`).
//!
//! With a third argument `stragglers`, one request in 500 is delayed by 1 s at the server: the
//! straggler workload, to see what the reorder window of an ordered stream costs
//! (`par_iter`) against an unordered one (`par_bridge`).

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Instant;

use parfetch::prelude::*;
use rayon::prelude::*;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let source = args.first().map_or("par_iter", String::as_str);
    let n: usize = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(100_000);

    let stragglers = args.get(2).is_some_and(|arg| arg == "stragglers");
    let server = support::TestServer::start();
    let urls: Vec<String> = (0..n)
        .map(|i| match i % 500 {
            250 if stragglers => server.url(&format!("/delay/1000?i={i}")),
            _ => server.url(&format!("/bytes/100?i={i}")),
        })
        .collect();
    let fetcher = parfetch::Fetcher::new();
    let with_input = status_kib("VmRSS:");

    let started = Instant::now();
    let ok = match source {
        "par_iter" => urls
            .par_iter()
            .fetch_with(&fetcher)
            .filter(Result::is_ok)
            .count(),
        "par_bridge" => urls
            .iter()
            .par_bridge()
            .fetch_with(&fetcher)
            .filter(Result::is_ok)
            .count(),
        other => panic!("unknown source {other}: par_iter or par_bridge"),
    };
    let elapsed = started.elapsed();
    let peak = status_kib("VmHWM:");
    println!(
        "{source}: {ok} of {n} ok in {:.1} s ({:.0}/s); RSS with the input {} MiB, peak {} MiB, \
         growth {} MiB",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64(),
        with_input / 1024,
        peak / 1024,
        peak.saturating_sub(with_input) / 1024
    );
    assert_eq!(ok, n, "every request answered");
}

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(field))
                .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}
