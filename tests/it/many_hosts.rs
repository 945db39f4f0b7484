//! Many hosts: a host's requests reuse the connections its earlier requests opened, whichever
//! entry point sends them, and per-host limits hold over thousands of hosts.

use crate::support;

use std::time::Duration;

use parfetch::prelude::*;
use parfetch::{Fetcher, Pool};
use rayon::prelude::*;
use support::{TestServer, loopback_hosts};

const HOSTS: usize = 200;
const PER_HOST: usize = 10;

/// `PER_HOST` URLs on each of the server's hosts, the hosts interleaved through the list (the
/// case where every worker would otherwise meet every host).
fn interleaved(server: &TestServer, hosts: &[std::net::Ipv4Addr]) -> Vec<String> {
    (0..HOSTS * PER_HOST)
        .map(|i| server.url_on(hosts[i % hosts.len()], &format!("/bytes/10?i={i}")))
        .collect()
}

/// 16 workers, one request in flight each: the original's `num_processes(16)`, where a host's
/// requests used to land on whichever worker came next (up to `PER_HOST` connections per host).
fn sixteen_threads() -> Fetcher {
    Fetcher::builder()
        .num_processes(16)
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// Runs `send` on the URLs of a fresh server and returns (connections, most to one host).
fn connections_for(send: impl FnOnce(Vec<String>) -> usize) -> (usize, usize) {
    let hosts = loopback_hosts(HOSTS);
    let server = TestServer::start_on(&hosts);
    let answered = send(interleaved(&server, &hosts));
    assert_eq!(answered, HOSTS * PER_HOST, "every request answered");
    let stats = server.stats();
    (stats.connections(), stats.most_connections_to_one_host())
}

/// Moving a host to another worker is allowed when its home falls behind, so a loaded machine
/// may show a few; what must not come back is one connection per worker per host.
fn assert_reused((connections, most): (usize, usize)) {
    assert!(
        connections <= 2 * HOSTS,
        "{connections} connections for {HOSTS} hosts"
    );
    assert!(most <= PER_HOST / 2, "{most} connections to one host");
}

#[test]
fn fetch_all_reuses_each_host_s_connections() {
    assert_reused(connections_for(|urls| {
        let (responses, _) = urls.par_iter().fetch_all_with(&sixteen_threads());
        responses.len()
    }));
}

#[test]
fn an_unindexed_fetch_reuses_each_host_s_connections() {
    assert_reused(connections_for(|urls| {
        urls.into_iter()
            .par_bridge()
            .fetch_with(&sixteen_threads())
            .filter(Result::is_ok)
            .count()
    }));
}

#[test]
fn a_pool_reuses_each_host_s_connections() {
    assert_reused(connections_for(|urls| {
        let mut pool = Pool::builder().num_processes(16).from_urls(&urls).unwrap();
        pool.join_all();
        pool.responses().count()
    }));
}

/// Alone in its process: other tests' requests through the global fetcher would load its
/// workers and move hosts away from their home.
#[test]
fn the_default_fetcher_reuses_each_host_s_connections() {
    if support::run_alone(
        module_path!(),
        "the_default_fetcher_reuses_each_host_s_connections",
    ) {
        return;
    }
    assert_reused(connections_for(|urls| {
        let (responses, _) = parfetch::map(urls);
        responses.len()
    }));
}

#[test]
fn max_per_host_holds_among_ten_thousand_hosts() {
    let server = TestServer::start();
    let fetcher = Fetcher::builder()
        .concurrency(64)
        .max_per_host(1)
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    // 10,000 other hosts where nothing listens (refused at once), with the one real host's
    // requests spread among them.
    let port = support::refused_url()
        .rsplit(':')
        .next()
        .and_then(|rest| rest.split('/').next())
        .unwrap()
        .to_owned();
    let others = loopback_hosts(10_000);
    let urls: Vec<String> = (0..10_200)
        .map(|i| {
            if i % 51 == 0 {
                server.url(&format!("/delay/5?i={i}"))
            } else {
                format!("http://{}:{port}/", others[i % others.len()])
            }
        })
        .collect();
    let real = urls.iter().filter(|url| url.contains("/delay/")).count();
    let (responses, exceptions) = urls.par_iter().fetch_all_with(&fetcher);
    assert_eq!(responses.len(), real);
    assert_eq!(exceptions.len(), urls.len() - real);
    assert_eq!(server.stats().requests(), real);
    assert_eq!(server.stats().max_in_flight(), 1);
}
