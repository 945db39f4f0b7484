//! Many hosts: a host's requests reuse the connections its earlier requests opened, whichever
//! entry point sends them, and per-host limits hold over thousands of hosts.

use crate::support;

use std::time::Duration;

use parfetch::prelude::*;
use parfetch::{Fetcher, Pool};
use rayon::prelude::*;
use support::{TestServer, loopback_hosts};

const HOSTS: usize = 200;
const PER_HOST: usize = 20;

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

/// Runs `send` on the URLs of a fresh server and counts the connections it saw.
/// One such run at a time: each keeps 16 workers busy, and on a small machine several at once
/// starve each other's workers long enough for hosts to move.
fn connections_for(send: impl FnOnce(Vec<String>) -> usize) -> Connections {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let hosts = loopback_hosts(HOSTS);
    let server = TestServer::start_on(&hosts);
    let answered = send(interleaved(&server, &hosts));
    assert_eq!(answered, HOSTS * PER_HOST, "every request answered");
    let stats = server.stats();
    let beyond_two = hosts
        .iter()
        .filter(|host| stats.connections_to(**host) > 2)
        .count();
    Connections {
        total: stats.connections(),
        most: stats.most_connections_to_one_host(),
        beyond_two,
    }
}

#[derive(Debug)]
struct Connections {
    total: usize,
    /// The most to one host.
    most: usize,
    /// Hosts with more than two.
    beyond_two: usize,
}

/// A host whose home falls behind gains a second worker, and so a second connection; a third
/// worker takes its jobs only after they waited long for both, which a loaded machine (the
/// other tests running meanwhile) sees now and then. Without homes, with a connection per
/// worker per host, these 200 hosts took about 1,500.
fn assert_reused(connections: Connections) {
    assert!(
        connections.total <= 2 * HOSTS
            && connections.beyond_two <= HOSTS / 10
            && connections.most <= 4,
        "{connections:?} for {HOSTS} hosts"
    );
}

/// One worker with many requests in flight: the input is read nearly in order, and a host's
/// next request waits for its connection rather than open a second one. Reading the halves of
/// the list side by side sent each host's requests in pairs (about 1.4 connections per host).
#[test]
fn one_worker_opens_about_one_connection_per_host() {
    let fetcher = Fetcher::builder()
        .num_processes(1)
        .concurrency(64)
        .build()
        .unwrap();
    let connections = connections_for(|urls| {
        let (responses, _) = urls.par_iter().fetch_all_with(&fetcher);
        responses.len()
    });
    // On a loaded machine a few hosts may get a second one.
    assert!(
        connections.total <= HOSTS + HOSTS / 10 && connections.most <= 2,
        "{connections:?} for {HOSTS} hosts"
    );
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

/// `real` URLs of `server` (paths from `path`) spread evenly among one request to each of
/// 10,000 other hosts where nothing listens (refused at once).
fn among_ten_thousand_hosts(
    server: &TestServer,
    real: usize,
    path: impl Fn(usize) -> String,
) -> Vec<String> {
    let port = support::refused_url()
        .rsplit(':')
        .next()
        .and_then(|rest| rest.split('/').next())
        .unwrap()
        .to_owned();
    let others = loopback_hosts(10_000);
    let mut others = others.iter().map(|host| format!("http://{host}:{port}/"));
    let between = 10_000 / real;
    let mut urls = Vec::new();
    for i in 0..real {
        urls.push(server.url(&path(i)));
        urls.extend(others.by_ref().take(between));
    }
    urls.extend(others);
    urls
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
    let urls = among_ten_thousand_hosts(&server, 200, |i| format!("/delay/5?i={i}"));
    let real = urls.iter().filter(|url| url.contains("/delay/")).count();
    assert_eq!(real, 200);
    let (responses, exceptions) = urls.par_iter().fetch_all_with(&fetcher);
    assert_eq!(responses.len(), real);
    assert_eq!(exceptions.len(), urls.len() - real);
    assert_eq!(server.stats().requests(), real);
    assert_eq!(server.stats().max_in_flight(), 1);
}

#[test]
fn per_host_rate_holds_among_ten_thousand_hosts() {
    let server = TestServer::start();
    let fetcher = Fetcher::builder()
        .concurrency(64)
        .per_host_rate(5.0)
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let urls = among_ten_thousand_hosts(&server, 11, |i| format!("/clock?i={i}"));
    let (responses, exceptions) = urls.par_iter().fetch_all_with(&fetcher);
    assert_eq!(responses.len(), 11);
    assert_eq!(exceptions.len(), urls.len() - 11);
    assert_eq!(server.stats().requests(), 11);
    // When each request reached the one real host, while the 10,000 others (one request
    // each, never held by the rate) were refused meanwhile: 200 ms apart at 5 a second (about
    // 45 ms apart without the rate, the time the others take). The margin is for a loaded
    // machine, where the way from the client's start to the server's stamp varies.
    let mut arrived: Vec<u64> = responses
        .iter()
        .map(|response| response.text().parse().unwrap())
        .collect();
    arrived.sort_unstable();
    let closest = arrived.windows(2).map(|pair| pair[1] - pair[0]).min();
    assert!(closest >= Some(150_000), "{arrived:?}");
}

#[test]
fn idle_connections_stay_within_the_budget() {
    let hosts = loopback_hosts(HOSTS);
    let server = TestServer::start_on(&hosts);
    let fetcher = Fetcher::builder()
        .concurrency(8)
        .max_idle_connections(10)
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let (responses, exceptions) = interleaved(&server, &hosts)
        .par_iter()
        .fetch_all_with(&fetcher);
    assert_eq!((responses.len(), exceptions.len()), (HOSTS * PER_HOST, 0));
    let most_open = server.stats().most_open();
    // In flight, plus the budget, plus sockets the server has not seen close yet.
    assert!(
        most_open <= 8 + 10 + 8,
        "{most_open} connections open at once"
    );
}

/// Runs the command on `urls` with its open-file limit (soft and hard) lowered to `limit`.
#[cfg(feature = "cli")]
fn command_within(limit: u32, urls: &[String], concurrency: usize) -> (Option<i32>, String) {
    use std::io::Write;
    let dir = std::env::temp_dir().join(format!(
        "parfetch-many-hosts-{}-{limit}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("urls.txt");
    std::fs::File::create(&input)
        .unwrap()
        .write_all(urls.join("\n").as_bytes())
        .unwrap();
    let output = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -n {limit} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_parfetch"))
        .args(["-j", &concurrency.to_string(), "--quiet", "--timeout", "20"])
        .arg(&input)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

/// The test process itself holds a listener per host and the server's side of every
/// connection: it needs more than the command it tests.
#[cfg(feature = "cli")]
fn raise_own_open_file_limit(at_least: u64) -> bool {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current.is_none_or(|current| current >= at_least) {
        return true;
    }
    let raised = Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    setrlimit(Resource::Nofile, raised).is_ok() && limit.maximum.is_none_or(|max| max >= at_least)
}

#[cfg(feature = "cli")]
#[test]
fn a_crawl_of_five_thousand_hosts_completes_within_1024_open_files() {
    assert!(
        raise_own_open_file_limit(16_384),
        "the test needs an open-file limit of 16,384 (ulimit -n)"
    );
    let hosts = loopback_hosts(5_000);
    let server = TestServer::start_on(&hosts);
    let urls: Vec<String> = (0..20_000)
        .map(|i| server.url_on(hosts[i % hosts.len()], &format!("/bytes/10?i={i}")))
        .collect();
    let (code, records) = command_within(1_024, &urls, 64);
    assert_eq!(code, Some(0), "every request answered");
    assert_eq!(records.lines().count(), urls.len());
    assert_eq!(server.stats().requests(), urls.len());
    let most_open = server.stats().most_open();
    assert!(most_open < 1_024, "{most_open} connections open at once");
}

#[cfg(feature = "cli")]
#[test]
fn running_out_of_file_descriptors_fails_the_requests_affected_by_name() {
    assert!(raise_own_open_file_limit(4_096));
    let hosts = loopback_hosts(HOSTS);
    let server = TestServer::start_on(&hosts);
    let urls: Vec<String> = interleaved(&server, &hosts)
        .into_iter()
        .map(|url| url.replace("/bytes/10", "/delay/200"))
        .collect();
    // 64 sockets cannot be open at once within 40 files, whatever the budget.
    let (code, records) = command_within(40, &urls, 64);
    assert_eq!(code, Some(1), "some requests failed, all recorded");
    assert_eq!(records.lines().count(), urls.len());
    let out_of_files = records
        .lines()
        .filter(|record| record.contains("out of file descriptors"))
        .count();
    assert!(out_of_files > 0, "{records}");
}

/// One host's batch is the usual case: its home alone would keep only its own share of the
/// concurrency in flight, so the other workers take the host's jobs while the home is busy.
#[test]
fn one_host_s_batch_keeps_the_whole_concurrency_in_flight() {
    for fetcher in [
        Fetcher::builder().num_processes(2).concurrency(8),
        Fetcher::builder().num_processes(8),
    ] {
        let server = TestServer::start();
        let fetcher = fetcher.timeout(Duration::from_secs(20)).build().unwrap();
        let urls: Vec<String> = (0..48)
            .map(|i| server.url(&format!("/delay/100?i={i}")))
            .collect();
        let (responses, _) = urls.par_iter().fetch_all_with(&fetcher);
        assert_eq!(responses.len(), urls.len());
        assert_eq!(server.stats().max_in_flight(), 8, "{fetcher:?}");
    }
}

/// A fetcher's sessions share one store of TLS sessions: a host that a second worker takes
/// over resumes the first one's session instead of a full handshake. Alone in its process,
/// which trusts the test CA through `SSL_CERT_FILE`, as a user's program would.
#[test]
fn a_second_session_resumes_a_host_s_tls_session() {
    let ca = std::env::temp_dir().join(format!("parfetch-test-ca-{}.pem", std::process::id()));
    if support::run_alone_with(
        module_path!(),
        "a_second_session_resumes_a_host_s_tls_session",
        &[("SSL_CERT_FILE", ca.as_os_str())],
    ) {
        let _ = std::fs::remove_file(&ca);
        return;
    }
    // Written where the parent said, before any session reads it.
    let ca = std::env::var_os("SSL_CERT_FILE").expect("set by the parent");
    let host = loopback_hosts(1)[0];
    let server = TestServer::start_tls_on(&[host]);
    std::fs::write(&ca, server.ca_pem()).unwrap();
    let fetcher = Fetcher::new();
    let url = server.url_on(host, "/bytes/10");
    // Each thread that is not one of the fetcher's workers has a session (and a connection
    // pool) of its own while it lives (a later thread may take over an ended one's): the
    // second asks once the first has its answer, and the first lives until then.
    let (first_done, second_done) = (std::sync::Barrier::new(2), std::sync::Barrier::new(2));
    let lengths = std::thread::scope(|scope| {
        let first = scope.spawn(|| {
            let response = fetcher.execute(url.as_str());
            first_done.wait();
            second_done.wait();
            response
        });
        let second = scope.spawn(|| {
            first_done.wait();
            let response = fetcher.execute(url.as_str());
            second_done.wait();
            response
        });
        [first, second].map(|thread| thread.join().unwrap().unwrap().bytes().len())
    });
    assert_eq!(lengths, [10, 10]);
    assert_eq!(server.stats().connections_to(host), 2, "one per session");
    assert_eq!(server.stats().handshakes(), (1, 1), "(full, resumed)");
}
