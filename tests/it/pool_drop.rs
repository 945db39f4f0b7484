//! Dropping a running `Pool` neither hangs nor leaks threads. The test runs alone in its own
//! process, so that no other test's threads are counted.

use crate::support;

use std::time::{Duration, Instant};

use parfetch::Pool;
use support::TestServer;

fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|tasks| tasks.count())
        .unwrap_or(0)
}

#[test]
fn dropping_a_running_pool_returns_at_once_and_its_threads_end() {
    if support::run_alone(
        module_path!(),
        "dropping_a_running_pool_returns_at_once_and_its_threads_end",
    ) {
        return;
    }
    let server = TestServer::start();
    let urls: Vec<String> = (0..500)
        .map(|i| server.url(&format!("/delay/2000?item={i}")))
        .collect();
    let baseline = thread_count();
    assert!(baseline > 0, "/proc/self/task is readable");

    let pool = Pool::builder().num_processes(16).from_urls(&urls).unwrap();
    let started = Instant::now();
    while server.stats().requests() < 16 && started.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        thread_count() >= baseline + 16,
        "the pool's threads are running"
    );

    let dropping = Instant::now();
    drop(pool);
    assert!(
        dropping.elapsed() < Duration::from_secs(1),
        "drop did not wait for the jobs: {:?}",
        dropping.elapsed()
    );

    let deadline = Instant::now() + Duration::from_secs(10);
    while thread_count() > baseline && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(thread_count(), baseline, "every thread of the pool ended");
    // The jobs not started when it was dropped were skipped, not sent.
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        server.stats().requests() < 100,
        "{} requests",
        server.stats().requests()
    );
}
