//! The integration tests, against loopback servers, in one binary: each test binary links
//! reqwest, hyper and tokio, and one binary links them once instead of sixteen times (a clean
//! `cargo test --all-features` took 27 to 31% less build CPU time than with sixteen).
//!
//! The tests of one binary run side by side in one process. A test that measures the whole
//! process (its allocations, its threads, the global fetcher's capacity) runs itself again in
//! a process of its own with [`support::run_alone`].

// Counting allocations costs two atomic additions per allocation; only the tests in `memory`
// read the counts, each alone in its process.
#[global_allocator]
static ALLOCATOR: &stats_alloc::StatsAlloc<std::alloc::System> = &stats_alloc::INSTRUMENTED_SYSTEM;

#[path = "../support/mod.rs"]
mod support;

mod accounting;
mod cli;
mod faults;
mod fetch_all;
mod many_hosts;
mod memory;
mod politeness;
mod pool;
mod pool_drop;
mod redirects;
mod requests;
mod retry;
mod security;
mod sessions;
mod spec;
mod streaming;
