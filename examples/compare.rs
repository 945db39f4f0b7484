//! Side-by-side comparison of parfetch with the other ways to fetch many URLs in parallel, on
//! one loopback server, interleaved, several repetitions, medians.
//!
//! ```sh
//! cargo run --release --example compare                 # every workload, 3 repetitions
//! cargo run --release --example compare -- --reps 5 S1  # only S1, 5 repetitions
//! cargo run --release --example compare -- S6 parfetch async-reqwest  # only these two
//! ```
//!
//! Contenders, each keeping every body until the batch is done, as `fetch_all` does:
//! - `parfetch`: `urls.par_iter().fetch_all_with(&fetcher)` on
//!   `Fetcher::builder().concurrency(C)` (one worker thread per core);
//! - `parfetch-defaults`: plain `urls.par_iter().fetch_all()`, no configuration at all (the
//!   global fetcher: 64 in flight whatever C is);
//! - `parfetch-threads`: the original's model, `num_processes(C)` alone (C threads, C in flight);
//! - `parfetch-command`: the `parfetch` command (`target/release/parfetch`, built with
//!   `--features cli`; skipped if absent) on a file of the URLs, `-j C`, records to /dev/null;
//!   wall and CPU time of the process, no peak RSS;
//! - `async-reqwest`: `futures::stream::iter(..).buffer_unordered(C)` on a multi-thread tokio
//!   runtime, bodies read fully;
//! - `rayon-reqwest`: the hand-written loop of the original's model: a rayon pool of C threads,
//!   a `ThreadLocal` current-thread runtime and async reqwest client per thread, `block_on` per
//!   request in the worker;
//! - `rayon-reqwest-multiplexed`: the best hand-written loop we could write, the design of
//!   `parfetch-multiplexed` without the crate: one thread per core, each with its own runtime and
//!   client, `buffer_unordered(C / cores)` over a shared cursor, inside one `block_on`;
//! - `python-toolbelt`: `requests_toolbelt.threaded.map(num_processes=C)`, through
//!   `benches/toolbelt_map.py`, when `python3 -c 'import requests_toolbelt'` works
//!   (`pip install requests-toolbelt`); skipped with a message otherwise.
//!
//! Every Rust contender has a 60 s request timeout.
//!
//! The server and every run are separate processes, so each run's CPU time and peak RSS are its
//! own. The server counts the requests it answered; a run that returns fewer items than it sent
//! has lost jobs.

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use parfetch::prelude::*;
use rayon::prelude::*;
use serde_json::{Value, json};

struct Workload {
    name: &'static str,
    what: &'static str,
    path: &'static str,
    requests: usize,
    concurrency: usize,
    body_bytes: usize,
    server_delay: Option<Duration>,
    /// One request in this many goes to `/delay/1000` instead (its body: `delayed`).
    straggler_every: Option<usize>,
    /// Requests go to this many hosts in turn (127.0.1.1, 127.0.1.2, ...).
    hosts: usize,
    /// Over HTTPS, with a test CA (`SSL_CERT_FILE` for the clients).
    tls: bool,
}

/// The most hosts a workload spreads over: the server listens on all of them.
const MOST_HOSTS: usize = 1_000;

const STRAGGLER_BODY: usize = "delayed".len();

const WORKLOADS: [Workload; 7] = [
    Workload {
        name: "S1",
        what: "10,000 GETs of 100-byte bodies, C=64",
        path: "/bytes/100",
        requests: 10_000,
        concurrency: 64,
        body_bytes: 100,
        server_delay: None,
        straggler_every: None,
        hosts: 1,
        tls: false,
    },
    Workload {
        name: "S2-64",
        what: "2,000 GETs, 20 ms server delay, C=64",
        path: "/delay/20",
        requests: 2_000,
        concurrency: 64,
        body_bytes: 7,
        server_delay: Some(Duration::from_millis(20)),
        straggler_every: None,
        hosts: 1,
        tls: false,
    },
    Workload {
        name: "S2-256",
        what: "2,000 GETs, 20 ms server delay, C=256",
        path: "/delay/20",
        requests: 2_000,
        concurrency: 256,
        body_bytes: 7,
        server_delay: Some(Duration::from_millis(20)),
        straggler_every: None,
        hosts: 1,
        tls: false,
    },
    Workload {
        name: "S3",
        what: "200 GETs of 1 MiB bodies, C=16",
        path: "/bytes/1048576",
        requests: 200,
        concurrency: 16,
        body_bytes: 1 << 20,
        server_delay: None,
        straggler_every: None,
        hosts: 1,
        tls: false,
    },
    Workload {
        name: "S4",
        what: "20,000 GETs of 100-byte bodies, 1 in 500 delayed 1 s, C=64",
        path: "/bytes/100",
        requests: 20_000,
        concurrency: 64,
        body_bytes: 100,
        server_delay: None,
        straggler_every: Some(500),
        hosts: 1,
        tls: false,
    },
    S6,
    Workload {
        name: "S6s",
        what: "S6 over HTTPS (HTTP/1.1, one test CA, a certificate naming every host), C=64",
        tls: true,
        ..S6
    },
];

const S6: Workload = Workload {
    name: "S6",
    what: "20,000 GETs of 100-byte bodies over 1,000 hosts (interleaved), C=64",
    path: "/bytes/100",
    requests: 20_000,
    concurrency: 64,
    body_bytes: 100,
    server_delay: None,
    straggler_every: None,
    hosts: MOST_HOSTS,
    tls: false,
};

/// Every Rust contender times its requests out, as any batch job must (and parfetch always
/// does): a pending timer costs each wait for I/O a little, so leaving it out of the baselines
/// would compare different work.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

const CONTENDERS: [&str; 8] = [
    "parfetch",
    "parfetch-defaults",
    "parfetch-threads",
    "parfetch-command",
    "async-reqwest",
    "rayon-reqwest",
    "rayon-reqwest-multiplexed",
    "python-toolbelt",
];

impl Workload {
    fn urls(&self, base: &str) -> Vec<String> {
        let (scheme, rest) = base.split_once("://").expect("base has a scheme");
        let port = rest.rsplit(':').next().expect("base has a port");
        let hosts: Vec<String> = support::loopback_hosts(self.hosts)
            .iter()
            .map(|ip| format!("{scheme}://{ip}:{port}"))
            .collect();
        (0..self.requests)
            .map(|i| {
                let base = &hosts[i % hosts.len()];
                match self.straggler_every {
                    Some(every) if i % every == every / 2 => {
                        format!("{base}/delay/1000?i={i}")
                    }
                    _ => format!("{base}{}?i={i}", self.path),
                }
            })
            .collect()
    }

    /// `true` for a body this workload answers with.
    fn expected(&self, len: usize) -> bool {
        len == self.body_bytes || (self.straggler_every.is_some() && len == STRAGGLER_BODY)
    }

    /// The time the workload takes with `concurrency` requests always in flight and nothing
    /// else costing time.
    fn ideal(&self) -> Option<Duration> {
        let delay = self.server_delay?;
        Some(delay * self.requests.div_ceil(self.concurrency) as u32)
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("serve") => serve(),
        Some("client") => client(&args[1], &args[2], &args[3]),
        _ => compare(&args),
    }
}

/// Runs the servers (plain and TLS) until standard input closes (the parent ends), at most an
/// hour. Prints their bases and the path of the TLS server's CA on one line.
fn serve() {
    // The counters are read on 127.0.0.1, which no workload uses.
    let hosts: Vec<_> = std::iter::once(std::net::Ipv4Addr::LOCALHOST)
        .chain(support::loopback_hosts(MOST_HOSTS))
        .collect();
    let server = support::TestServer::start_on(&hosts);
    let tls_server = support::TestServer::start_tls_on(&hosts);
    let ca = std::env::temp_dir().join(format!("parfetch-compare-ca-{}.pem", std::process::id()));
    std::fs::write(&ca, tls_server.ca_pem()).expect("write the CA");
    println!("{} {} {}", server.base(), tls_server.base(), ca.display());
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        let _ = done_tx.send(());
    });
    let _ = done_rx.recv_timeout(Duration::from_secs(3600));
    let _ = std::fs::remove_file(&ca);
    drop((server, tls_server));
}

/// One contender on one workload; prints one JSON line with what it measured.
fn client(contender: &str, workload: &str, base: &str) {
    let workload = WORKLOADS
        .iter()
        .find(|w| w.name == workload)
        .expect("known workload");
    let urls = workload.urls(base);
    let c = workload.concurrency;
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    // The multiplexed contenders: as many threads as cores, the concurrency spread over them.
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let body_lengths: Vec<Option<usize>> = match contender {
        "parfetch" => run_parfetch(&urls, parfetch::Fetcher::builder().concurrency(c)),
        "parfetch-defaults" => kept(urls.par_iter().fetch_all()),
        "parfetch-threads" => run_parfetch(&urls, parfetch::Fetcher::builder().num_processes(c)),
        "parfetch-one" => run_parfetch(
            &urls,
            parfetch::Fetcher::builder().num_processes(1).concurrency(c),
        ),
        "parfetch-command" => run_command(&urls, c),
        "async-reqwest" => run_async_reqwest(&urls, c),
        "rayon-reqwest" => run_rayon_reqwest(&urls, c),
        "rayon-reqwest-multiplexed" => {
            run_rayon_reqwest_multiplexed(&urls, threads, c.div_ceil(threads))
        }
        other => panic!("unknown contender {other}"),
    };
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_before;
    let ok = body_lengths
        .iter()
        .filter(|len| len.is_some_and(|len| workload.expected(len)))
        .count();
    let record = json!({
        "returned": body_lengths.len(),
        "ok": ok,
        "wall_s": wall,
        "cpu_s": cpu,
        // The command's own peak is not visible from here.
        "peak_rss_kib": if contender == "parfetch-command" { 0 } else { peak_rss_kib() },
    });
    println!("{record}");
}

fn run_parfetch(urls: &[String], builder: parfetch::FetcherBuilder) -> Vec<Option<usize>> {
    let fetcher = builder
        .timeout(REQUEST_TIMEOUT)
        .max_body_bytes(4 << 20)
        .build()
        .expect("fetcher");
    kept(urls.par_iter().fetch_all_with(&fetcher))
}

fn kept(
    (responses, exceptions): (
        Vec<parfetch::ThreadResponse>,
        Vec<parfetch::ThreadException>,
    ),
) -> Vec<Option<usize>> {
    responses
        .iter()
        .map(|response| Some(response.bytes().len()))
        .chain(exceptions.iter().map(|_| None))
        .collect()
}

/// The command's path, if it was built: `cargo build --release --features cli`.
fn command_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/parfetch")
}

/// The `parfetch` command on a file of `urls`; what it wrote, read back from its records.
fn run_command(urls: &[String], c: usize) -> Vec<Option<usize>> {
    let dir = std::env::temp_dir().join(format!("parfetch-compare-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let input = dir.join("urls.txt");
    let output = dir.join("records.jsonl");
    std::fs::write(&input, urls.join("\n")).expect("write urls");
    let status = Command::new(command_path())
        .args([
            "-j",
            &c.to_string(),
            "--allow-failures",
            "--timeout",
            "60",
            "-o",
        ])
        .arg(&output)
        .arg(&input)
        .stderr(Stdio::null())
        .status()
        .expect("the command runs");
    assert!(status.success(), "the command failed: {status}");
    let records = std::fs::read_to_string(&output).expect("records");
    let _ = std::fs::remove_dir_all(&dir);
    records
        .lines()
        .map(|line| {
            let record: Value = serde_json::from_str(line).ok()?;
            record["body"].as_str().map(str::len)
        })
        .collect()
}

fn run_async_reqwest(urls: &[String], c: usize) -> Vec<Option<usize>> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let bodies = runtime.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .expect("client");
        futures::stream::iter(urls)
            .map(|url| {
                let client = &client;
                async move {
                    let response = client.get(url).send().await.ok()?;
                    response.bytes().await.ok()
                }
            })
            .buffer_unordered(c)
            .collect::<Vec<Option<bytes::Bytes>>>()
            .await
    });
    kept_lengths(&bodies)
}

/// Every contender keeps the bodies it read until the batch is done, as `fetch_all` hands them
/// back, and only then measures them.
fn kept_lengths(bodies: &[Option<bytes::Bytes>]) -> Vec<Option<usize>> {
    bodies
        .iter()
        .map(|body| body.as_ref().map(bytes::Bytes::len))
        .collect()
}

/// One worker's session in the hand-written loops: its runtime and the client it drives.
type HandSession = (tokio::runtime::Runtime, reqwest::Client);

fn hand_session() -> HandSession {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let entered = runtime.enter();
    // Only the test CA: an empty or one-certificate root store skips loading the system's
    // roots per client.
    let client = reqwest::Client::builder()
        .tls_certs_only(test_ca())
        .timeout(REQUEST_TIMEOUT)
        .build()
        .expect("client");
    drop(entered);
    (runtime, client)
}

/// The TLS workloads' CA, from `SSL_CERT_FILE` as the parent sets it.
fn test_ca() -> Vec<reqwest::Certificate> {
    std::env::var_os("SSL_CERT_FILE")
        .and_then(|path| std::fs::read(path).ok())
        .and_then(|pem| reqwest::Certificate::from_pem(&pem).ok())
        .into_iter()
        .collect()
}

async fn hand_fetch(client: &reqwest::Client, url: &str) -> Option<bytes::Bytes> {
    let response = client.get(url).send().await.ok()?;
    response.bytes().await.ok()
}

fn run_rayon_reqwest(urls: &[String], c: usize) -> Vec<Option<usize>> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(c)
        .build()
        .expect("pool");
    let sessions: thread_local::ThreadLocal<HandSession> = thread_local::ThreadLocal::new();
    let bodies = pool.install(|| {
        urls.par_iter()
            .map(|url| {
                let (runtime, client) = sessions.get_or(hand_session);
                runtime.block_on(hand_fetch(client, url))
            })
            .collect::<Vec<Option<bytes::Bytes>>>()
    });
    kept_lengths(&bodies)
}

fn run_rayon_reqwest_multiplexed(
    urls: &[String],
    threads: usize,
    in_flight: usize,
) -> Vec<Option<usize>> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("pool");
    let cursor = std::sync::atomic::AtomicUsize::new(0);
    let bodies: Vec<std::sync::OnceLock<Option<bytes::Bytes>>> =
        urls.iter().map(|_| std::sync::OnceLock::new()).collect();
    pool.broadcast(|_| {
        let (runtime, client) = hand_session();
        let client = &client;
        let next = std::iter::from_fn(|| {
            let index = cursor.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            urls.get(index).map(|url| (index, url))
        });
        runtime.block_on(
            futures::stream::iter(next)
                .map(|(index, url)| async move { (index, hand_fetch(client, url).await) })
                .buffer_unordered(in_flight)
                .for_each(|(index, body)| {
                    let _ = bodies[index].set(body);
                    std::future::ready(())
                }),
        );
    });
    let bodies: Vec<Option<bytes::Bytes>> = bodies
        .into_iter()
        .map(|body| body.into_inner().flatten())
        .collect();
    kept_lengths(&bodies)
}

/// User and system CPU time of this process, all threads, exited ones included (10 ms ticks).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |index: usize| {
        fields
            .get(index)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime, stime, cutime and cstime are fields 14 to 17 of the line: 11 to 14 counting from
    // the state. The children's are those of the command, once it has been waited for.
    (ticks(11) + ticks(12) + ticks(13) + ticks(14)) / 100.0
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmHWM:"))
                .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// One run's figures, as printed by a client process.
#[derive(Clone, Debug)]
struct Run {
    returned: usize,
    ok: usize,
    wall: f64,
    cpu: f64,
    peak_rss_kib: u64,
    server_counted: usize,
    /// Connections the server accepted, the most to one host, the most open at once, full and
    /// resumed TLS handshakes.
    connections: [usize; 5],
}

fn compare(args: &[String]) {
    let mut reps = 3;
    let mut only: Vec<String> = Vec::new();
    let mut only_contenders: Vec<String> = Vec::new();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--reps" => reps = rest.next().and_then(|n| n.parse().ok()).expect("--reps N"),
            name if CONTENDERS.contains(&name) => only_contenders.push(name.to_owned()),
            name => only.push(name.to_owned()),
        }
    }
    let workloads: Vec<&Workload> = WORKLOADS
        .iter()
        .filter(|w| only.is_empty() || only.iter().any(|name| name == w.name))
        .collect();

    let python = python_toolbelt_available();
    if !python {
        eprintln!(
            "python-toolbelt: skipped (python3 with requests-toolbelt not found; \
             `pip install requests-toolbelt` to include it)"
        );
    }
    let contenders: Vec<&str> = CONTENDERS
        .iter()
        .copied()
        .filter(|c| only_contenders.is_empty() || only_contenders.iter().any(|name| name == c))
        .filter(|c| *c != "python-toolbelt" || python)
        .filter(|c| *c != "parfetch-command" || command_path().exists())
        .collect();
    if !command_path().exists() {
        eprintln!("parfetch-command: skipped (`cargo build --release --features cli` first)");
    }

    let (mut server, bases) = start_server();
    let reader = counter_reader(&bases[2]);
    println!(
        "machine: {} cores; {reps} repetitions, interleaved; medians\n",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    for workload in workloads {
        // The Python script sends every request to one host.
        let contenders: Vec<&str> = contenders
            .iter()
            .copied()
            .filter(|c| *c != "python-toolbelt" || workload.hosts == 1)
            .collect();
        let mut runs: Vec<Vec<Run>> = vec![Vec::new(); contenders.len()];
        for rep in 0..reps {
            for (index, contender) in contenders.iter().enumerate() {
                let run = run_contender(contender, workload, &bases, &reader);
                eprintln!(
                    "{} rep {} {contender}: {:.3} s, {} of {} ok",
                    workload.name,
                    rep + 1,
                    run.wall,
                    run.ok,
                    workload.requests
                );
                runs[index].push(run);
            }
        }
        print_table(workload, &contenders, &runs);
    }
    drop(server.stdin.take());
    let _ = server.wait();
}

/// The servers' process, the plain and TLS bases, and the TLS server's CA file.
fn start_server() -> (Child, [String; 3]) {
    let mut server = Command::new(std::env::current_exe().expect("own path"))
        .arg("serve")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("server process");
    let mut line = String::new();
    BufReader::new(server.stdout.take().expect("server stdout"))
        .read_line(&mut line)
        .expect("server address");
    let mut parts = line.split_whitespace().map(str::to_owned);
    let mut next = || parts.next().expect("base, TLS base and CA");
    (server, [next(), next(), next()])
}

/// Reads the servers' counters (on 127.0.0.1, which no workload uses), trusting the TLS
/// server's CA.
fn counter_reader(ca: &str) -> parfetch::Fetcher {
    let pem = std::fs::read(ca).expect("the CA file");
    parfetch::Fetcher::builder()
        .session(move || {
            let ca = reqwest::Certificate::from_pem(&pem).expect("the CA");
            reqwest::Client::builder().tls_certs_only([ca])
        })
        .build()
        .expect("counter reader")
}

fn server_count(reader: &parfetch::Fetcher, base: &str) -> usize {
    reader
        .execute(format!("{base}/__stats"))
        .ok()
        .and_then(|response| response.text().parse().ok())
        .unwrap_or(0)
}

/// Since the last call: connections accepted, the most to one host, the most open at once,
/// full and resumed TLS handshakes.
fn server_connections(reader: &parfetch::Fetcher, base: &str) -> [usize; 5] {
    let counts = reader
        .execute(format!("{base}/__connections"))
        .map(|response| response.text().into_owned())
        .unwrap_or_default();
    let mut counts = counts.split(' ').map(|n| n.parse().unwrap_or(0));
    [(); 5].map(|()| counts.next().unwrap_or(0))
}

fn run_contender(
    contender: &str,
    workload: &Workload,
    bases: &[String; 3],
    reader: &parfetch::Fetcher,
) -> Run {
    let [plain, tls, ca] = bases;
    let base = if workload.tls { tls } else { plain };
    let before = server_count(reader, base);
    server_connections(reader, base);
    let output = if contender == "python-toolbelt" {
        Command::new("python3")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/benches/toolbelt_map.py"
            ))
            .args([
                base,
                workload.path,
                &workload.requests.to_string(),
                &workload.concurrency.to_string(),
                &workload.body_bytes.to_string(),
            ])
            .env("REQUESTS_CA_BUNDLE", ca)
            .output()
    } else {
        Command::new(std::env::current_exe().expect("own path"))
            .args(["client", contender, workload.name, base])
            .env("SSL_CERT_FILE", ca)
            .env_remove("SSL_CERT_DIR")
            .output()
    }
    .expect("client process");
    let record: Value = String::from_utf8_lossy(&output.stdout)
        .lines()
        .last()
        .and_then(|line| serde_json::from_str(line).ok())
        .unwrap_or_else(|| {
            panic!(
                "{contender} printed no result: {}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
    // Requests still arriving from a run that lost track of them are counted too.
    std::thread::sleep(Duration::from_millis(50));
    Run {
        returned: record["returned"].as_u64().unwrap_or(0) as usize,
        ok: record["ok"].as_u64().unwrap_or(0) as usize,
        wall: record["wall_s"].as_f64().unwrap_or(f64::NAN),
        cpu: record["cpu_s"].as_f64().unwrap_or(f64::NAN),
        peak_rss_kib: record["peak_rss_kib"].as_u64().unwrap_or(0),
        server_counted: server_count(reader, base) - before,
        connections: server_connections(reader, base),
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn print_table(workload: &Workload, contenders: &[&str], runs: &[Vec<Run>]) {
    println!("### {}: {}", workload.name, workload.what);
    let throughput_unit = if workload.body_bytes >= 1 << 20 {
        "MiB/s"
    } else {
        "req/s"
    };
    let ideal = workload.ideal();
    let mut header = format!("| client | {throughput_unit} | vs async-reqwest ");
    if ideal.is_some() {
        header.push_str("| % of ideal ");
    }
    header.push_str("| CPU s | CPU µs/req | peak RSS MiB | server saw / returned / ok ");
    header.push_str("| connections (most to a host) | most open |");
    if workload.tls {
        header.push_str(" TLS handshakes full / resumed |");
    }
    println!("{header}");
    println!(
        "{}",
        header.replace(|c: char| c != '|', "-").replace("--", "-")
    );
    let throughput = |run: &Run| {
        let per_second = workload.requests as f64 / run.wall;
        if workload.body_bytes >= 1 << 20 {
            per_second * workload.body_bytes as f64 / f64::from(1 << 20)
        } else {
            per_second
        }
    };
    let medians: Vec<f64> = runs
        .iter()
        .map(|r| median(r.iter().map(throughput).collect()))
        .collect();
    let async_index = contenders.iter().position(|c| *c == "async-reqwest");
    for (index, contender) in contenders.iter().enumerate() {
        let runs = &runs[index];
        let wall = median(runs.iter().map(|r| r.wall).collect());
        let cpu = median(runs.iter().map(|r| r.cpu).collect());
        let rss = median(runs.iter().map(|r| r.peak_rss_kib as f64).collect()) / 1024.0;
        let mut row = format!("| {contender} | {:.0} ", medians[index]);
        match async_index {
            Some(a) => row.push_str(&format!("| {:.2}x ", medians[index] / medians[a])),
            None => row.push_str("| - "),
        }
        if let Some(ideal) = ideal {
            row.push_str(&format!("| {:.0}% ", 100.0 * ideal.as_secs_f64() / wall));
        }
        // Worst repetition for the accounting: a single lost job must show.
        let worst = runs
            .iter()
            .min_by_key(|r| r.ok)
            .expect("at least one repetition");
        let connections =
            |which: usize| median(runs.iter().map(|r| r.connections[which] as f64).collect());
        row.push_str(&format!(
            "| {cpu:.2} | {:.0} | {rss:.0} | {} / {} / {} | {:.0} ({:.0}) | {:.0} |",
            cpu * 1e6 / workload.requests as f64,
            worst.server_counted,
            worst.returned,
            worst.ok,
            connections(0),
            connections(1),
            connections(2),
        ));
        if workload.tls {
            row.push_str(&format!(" {:.0} / {:.0} |", connections(3), connections(4)));
        }
        println!("{row}");
    }
    println!();
}

fn python_toolbelt_available() -> bool {
    Command::new("python3")
        .args(["-c", "import requests_toolbelt"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}
