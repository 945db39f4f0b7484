//! `parfetch`: fetch the URLs or JSON request specs of files or standard input in parallel and
//! write one JSON record per result.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use parfetch::{FetchResult, Fetcher, Method, Request, RetryPolicy};

/// Fetch many URLs in parallel and write one JSON line per result.
///
/// Each input line is a URL, or a JSON request spec in the shape of Python requests'
/// keyword arguments: {"method": "POST", "url": "...", "headers": {...}, "params": {...},
/// "json": ..., "data": ..., "timeout": 5.0}. Blank lines and lines starting with # are skipped.
/// Malformed lines are reported on stderr with their line number and do not stop the run.
///
/// Exit status: 0 when every request got a response (any HTTP status), 1 when any request
/// failed or any line was malformed (0 with --allow-failures), 2 for usage errors.
#[derive(Debug, Parser)]
#[command(name = "parfetch", version, about, long_about)]
struct Args {
    /// Files to read, one request per line; "-" or nothing reads standard input.
    inputs: Vec<PathBuf>,

    /// Write the JSON lines here instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,

    /// Requests in flight at once, in total (as xargs -P and curl --parallel-max mean it);
    /// at most 10000.
    #[arg(short = 'j', long, value_name = "N", default_value_t = Fetcher::DEFAULT_CONCURRENCY)]
    concurrency: usize,

    /// Worker threads, each with its own session [default: number of cores]; at most 1024.
    #[arg(long, value_name = "N")]
    threads: Option<usize>,

    /// Seconds a request may take, body included.
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0)]
    timeout: f64,

    /// Seconds to open a connection.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    connect_timeout: f64,

    /// Retries after a failed attempt (connect errors, timeouts, 429, 502, 503, 504), with
    /// exponential backoff; idempotent methods only.
    #[arg(long, value_name = "N", default_value_t = 0)]
    retries: u32,

    /// At most N requests in flight to any one host.
    #[arg(long, value_name = "N")]
    max_per_host: Option<usize>,

    /// At most this many requests per second started to any one host.
    #[arg(long, value_name = "PER_SECOND")]
    rate: Option<f64>,

    /// A header for every request ("Name: value"); repeat for more.
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,

    /// The method for lines that are plain URLs.
    #[arg(short = 'X', long, value_name = "METHOD", default_value = "GET")]
    method: String,

    /// Largest response body, in bytes; larger ones are errors.
    #[arg(long, value_name = "BYTES", default_value_t = Fetcher::DEFAULT_MAX_BODY_BYTES)]
    max_body_bytes: u64,

    /// Redirects to follow per request, at most 100; 0 returns the 3xx response itself.
    #[arg(long, value_name = "N", default_value_t = Fetcher::DEFAULT_MAX_REDIRECTS)]
    max_redirects: usize,

    /// Send every request through this proxy (http:// or https://) instead of the ones the
    /// environment names (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY; NO_PROXY is honoured).
    #[arg(long, value_name = "URL", conflicts_with = "no_proxy")]
    proxy: Option<String>,

    /// Send every request straight to its host, whatever proxies the environment names.
    #[arg(long)]
    no_proxy: bool,

    /// Longest input line, in bytes; a longer one is a malformed line, read without being held.
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20)]
    max_line_bytes: usize,

    /// Write results in input order instead of as they complete.
    #[arg(long)]
    keep_order: bool,

    /// Exit 0 even when requests failed or lines were malformed.
    #[arg(long)]
    allow_failures: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(summary) => {
            summary.print();
            if summary.all_good() || args.allow_failures {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(message) => {
            eprintln!("parfetch: {message}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &Args) -> Result<Summary, String> {
    let method = Method::from_bytes(args.method.to_ascii_uppercase().as_bytes())
        .map_err(|_| format!("invalid method {:?}", args.method))?;
    let headers = args
        .headers
        .iter()
        .map(|header| {
            let not_a_header = || format!("header {header:?} is not \"Name: value\"");
            let (name, value) = header.split_once(':').ok_or_else(not_a_header)?;
            let (name, value) = (name.trim(), value.trim());
            // Checked here, once, rather than failing every request of the run.
            parfetch::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| not_a_header())?;
            parfetch::header::HeaderValue::from_str(value).map_err(|_| not_a_header())?;
            Ok((name.to_owned(), value.to_owned()))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let seconds = |value: f64, what: &str| {
        Duration::try_from_secs_f64(value)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| format!("{what} must be a positive number of seconds"))
    };

    let bar = if io::stderr().is_terminal() {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {pos} done in {elapsed} {msg}")
                .map_err(|e| e.to_string())?,
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    } else {
        ProgressBar::hidden()
    };

    let mut builder = Fetcher::builder()
        .concurrency(args.concurrency)
        .timeout(seconds(args.timeout, "--timeout")?)
        .connect_timeout(seconds(args.connect_timeout, "--connect-timeout")?)
        .max_body_bytes(args.max_body_bytes)
        .max_redirects(args.max_redirects)
        .progress_bar(bar.clone());
    if let Some(threads) = args.threads {
        builder = builder.num_processes(threads);
    }
    if let Some(proxy) = &args.proxy {
        builder = builder.proxy(proxy);
    }
    if args.no_proxy {
        builder = builder.no_proxy();
    }
    if args.retries > 0 {
        builder = builder.retry(RetryPolicy::new(args.retries.saturating_add(1)));
    }
    if let Some(n) = args.max_per_host {
        builder = builder.max_per_host(n);
    }
    if let Some(rate) = args.rate {
        builder = builder.per_host_rate(rate);
    }
    let fetcher = builder.build().map_err(|e| usage_of(&e))?;

    // Every input is opened before anything is sent.
    let inputs: Vec<PathBuf> = if args.inputs.is_empty() {
        vec![PathBuf::from("-")]
    } else {
        args.inputs.clone()
    };
    let readers = inputs
        .iter()
        .map(|input| {
            let reader: Box<dyn BufRead + Send> = if input.as_os_str() == "-" {
                Box::new(BufReader::new(io::stdin()))
            } else {
                Box::new(BufReader::new(
                    File::open(input)
                        .map_err(|e| format!("cannot read {}: {e}", input.display()))?,
                ))
            };
            Ok((input.clone(), reader))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let output: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(
            File::create(path).map_err(|e| format!("cannot write {}: {e}", path.display()))?,
        ),
        None => Box::new(io::stdout()),
    };

    let started = Instant::now();
    let malformed = AtomicU64::new(0);
    let read_error = Mutex::new(None);
    let write_failed = AtomicBool::new(false);
    // Read on the fetcher's feeding thread, only as fast as requests go out.
    let max_line_bytes = args.max_line_bytes;
    let requests = readers
        .into_iter()
        .flat_map(|(input, reader)| {
            InputLines::new(reader, max_line_bytes)
                .enumerate()
                .map(move |(index, line)| (input.clone(), index + 1, line))
        })
        .take_while(|_| !write_failed.load(Ordering::Relaxed))
        .map_while(|(input, number, line)| match line {
            Ok(line) => Some((input, number, line)),
            Err(e) => {
                *read_error.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some(format!("reading {}: {e}", input.display()));
                None
            }
        })
        .filter_map(|(input, number, line)| {
            let parsed = match line {
                InputLine::Text(line) => parse_line(&line, &method, &headers),
                InputLine::NotUtf8 => Err("not UTF-8 text".to_owned()),
                InputLine::TooLong(bytes) => Err(format!(
                    "a line of {bytes} bytes or more, over --max-line-bytes {max_line_bytes}"
                )),
            };
            match parsed {
                Ok(request) => request,
                Err(message) => {
                    malformed.fetch_add(1, Ordering::Relaxed);
                    bar.suspend(|| eprintln!("{}:{number}: {message}", input.display()));
                    None
                }
            }
        });

    let mut output = BufWriter::new(output);
    let mut summary = Summary::new();
    let mut write_error = None;
    let mut write = |outcome: FetchResult| {
        if write_error.is_some() {
            return;
        }
        let line = to_line(outcome);
        match writeln!(output, "{}", line.json) {
            Ok(()) => summary.count(line.tally),
            Err(e) => {
                write_error = Some(format!("writing results: {e}"));
                write_failed.store(true, Ordering::Relaxed);
            }
        }
    };
    if args.keep_order {
        fetcher.for_each_in_order(requests, &mut write);
    } else {
        fetcher.for_each_completed(requests, &mut write);
    }
    if let Some(error) = write_error {
        return Err(error);
    }
    output
        .flush()
        .map_err(|e| format!("writing results: {e}"))?;
    if let Some(error) = read_error.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(error);
    }
    bar.finish_and_clear();
    summary.malformed = malformed.into_inner();
    summary.wall = started.elapsed();
    summary.proxies = fetcher.proxies();
    Ok(summary)
}

/// A setting the library refused, in the words of a command-line option.
fn usage_of(error: &parfetch::BuildError) -> String {
    let parfetch::BuildError::OutOfRange {
        setting,
        value,
        allowed,
    } = error
    else {
        return error.to_string();
    };
    let option = match *setting {
        "num_processes" => "--threads",
        "concurrency" => "--concurrency",
        "max_per_host" => "--max-per-host",
        "per_host_rate" => "--rate",
        "timeout" => "--timeout",
        "connect_timeout" => "--connect-timeout",
        "proxy" => "--proxy",
        "max_redirects" => "--max-redirects",
        other => other,
    };
    format!("{option} must be {allowed}, not {value}")
}

/// One line of input, as read.
enum InputLine {
    Text(String),
    NotUtf8,
    /// At least this many bytes: over the cap, and not kept.
    TooLong(usize),
}

/// The lines of one input: a UTF-8 byte-order mark at its start is dropped, as are line ends
/// (`\n` or `\r\n`); a line over `max` bytes is skipped as it is read, not held whole.
struct InputLines<R> {
    reader: R,
    max: usize,
    started: bool,
}

impl<R: BufRead> InputLines<R> {
    fn new(reader: R, max: usize) -> Self {
        Self {
            reader,
            max,
            started: false,
        }
    }
}

impl<R: BufRead> Iterator for InputLines<R> {
    type Item = io::Result<InputLine>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut line = Vec::new();
        let mut length = 0;
        let mut ended = false;
        loop {
            let available = match self.reader.fill_buf() {
                Ok(available) => available,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Some(Err(e)),
            };
            if available.is_empty() {
                break;
            }
            let (chunk, found) = match available.iter().position(|&byte| byte == b'\n') {
                Some(end) => (&available[..end], true),
                None => (available, false),
            };
            length += chunk.len();
            if length <= self.max {
                line.extend_from_slice(chunk);
            } else {
                line = Vec::new();
            }
            let used = chunk.len() + usize::from(found);
            self.reader.consume(used);
            if found {
                ended = true;
                break;
            }
        }
        if !ended && length == 0 {
            return None;
        }
        if !self.started {
            self.started = true;
            if line.starts_with(b"\xEF\xBB\xBF") {
                line.drain(..3);
                length -= 3;
            }
        }
        if line.last() == Some(&b'\r') {
            line.pop();
            length -= 1;
        }
        if length > self.max {
            return Some(Ok(InputLine::TooLong(length)));
        }
        Some(Ok(match String::from_utf8(line) {
            Ok(text) => InputLine::Text(text),
            Err(_) => InputLine::NotUtf8,
        }))
    }
}

/// A request from one input line; `None` for blank lines and comments.
fn parse_line(
    line: &str,
    method: &Method,
    headers: &[(String, String)],
) -> Result<Option<Request>, String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let mut request = if line.starts_with('{') {
        Request::from_json(line).map_err(|e| format!("bad request spec: {e}"))?
    } else {
        if line.contains(char::is_whitespace) {
            return Err(format!("not a URL: {line:?}"));
        }
        Request::new(method.clone(), line)
    };
    for (name, value) in headers {
        if !request.headers().contains_key(name.as_str()) {
            request = request.header(name, value);
        }
    }
    Ok(Some(request))
}

/// One output record and what the summary needs to know of it.
struct Line {
    json: String,
    tally: Tally,
}

enum Tally {
    Response { status: u16, elapsed: Duration },
    Exception { kind: &'static str },
}

fn to_line(outcome: FetchResult) -> Line {
    let (json, tally) = match &outcome {
        Ok(response) => (
            serde_json::to_string(response),
            Tally::Response {
                status: response.status().as_u16(),
                elapsed: response.elapsed(),
            },
        ),
        Err(exception) => (
            serde_json::to_string(exception),
            Tally::Exception {
                kind: exception.error().kind(),
            },
        ),
    };
    let json = json.unwrap_or_else(|e| {
        format!(r#"{{"ok":false,"error":{{"kind":"record","message":"{e}"}}}}"#)
    });
    Line { json, tally }
}

struct Summary {
    statuses: BTreeMap<u16, u64>,
    errors: BTreeMap<&'static str, u64>,
    malformed: u64,
    latency_us: Histogram<u64>,
    wall: Duration,
    /// The proxies requests may have gone through.
    proxies: Vec<String>,
}

impl Summary {
    fn new() -> Self {
        Self {
            statuses: BTreeMap::new(),
            errors: BTreeMap::new(),
            malformed: 0,
            latency_us: Histogram::new(3).expect("3 significant figures is valid"),
            wall: Duration::ZERO,
            proxies: Vec::new(),
        }
    }

    fn count(&mut self, tally: Tally) {
        match tally {
            Tally::Response { status, elapsed } => {
                *self.statuses.entry(status).or_default() += 1;
                let micros = u64::try_from(elapsed.as_micros())
                    .unwrap_or(u64::MAX)
                    .max(1);
                // Recording grows the histogram as needed; it only fails past u64::MAX.
                let _ = self.latency_us.record(micros);
            }
            Tally::Exception { kind } => *self.errors.entry(kind).or_default() += 1,
        }
    }

    fn all_good(&self) -> bool {
        self.errors.is_empty() && self.malformed == 0
    }

    fn print(&self) {
        let responses: u64 = self.statuses.values().sum();
        let exceptions: u64 = self.errors.values().sum();
        let total = responses + exceptions;
        let seconds = self.wall.as_secs_f64().max(f64::EPSILON);
        eprintln!(
            "parfetch: {total} requests in {:.2} s ({:.0}/s): {responses} responses, {exceptions} exceptions, {} malformed lines",
            self.wall.as_secs_f64(),
            total as f64 / seconds,
            self.malformed
        );
        if !self.proxies.is_empty() {
            eprintln!("  through proxies: {}", self.proxies.join(", "));
        }
        if !self.statuses.is_empty() {
            let statuses: Vec<String> = self
                .statuses
                .iter()
                .map(|(s, n)| format!("{s}: {n}"))
                .collect();
            eprintln!("  by status: {}", statuses.join(", "));
            let ms = |q: f64| self.latency_us.value_at_quantile(q) as f64 / 1e3;
            eprintln!(
                "  latency: p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms",
                ms(0.50),
                ms(0.95),
                ms(0.99)
            );
        }
        if !self.errors.is_empty() {
            let errors: Vec<String> = self
                .errors
                .iter()
                .map(|(k, n)| format!("{k}: {n}"))
                .collect();
            eprintln!("  by error: {}", errors.join(", "));
        }
    }
}
