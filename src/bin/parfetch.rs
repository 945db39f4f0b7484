//! `parfetch`: fetch the URLs or JSON request specs of files or standard input in parallel and
//! write one JSON record per result.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, IsTerminal, Write};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use clap::Parser;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use parfetch::{FetchResult, Fetcher, Method, Request, RetryPolicy};

/// The exit statuses, as `--help` shows them (the table of [`Exit`]).
const EXIT_STATUS: &str = "\
Exit status:
  0  every line accounted for and every request answered (any HTTP status)
  1  some requests failed or lines were malformed, each with its record
     (0 with --allow-failures)
  2  usage error, including an input that cannot be opened (all are opened
     before anything is sent)
  3  fatal error during the run: an input failing mid-read (what was read
     before is still fetched and written) or the output failing; records may
     be missing. A closed standard output (parfetch ... | head -1) stops the
     sending at once, without a message.";

/// Fetch many URLs in parallel and write one JSON line per result.
///
/// Each input line is a URL, or a JSON request spec in the shape of Python requests'
/// keyword arguments: {"method": "POST", "url": "...", "headers": {...}, "params": {...},
/// "json": ..., "data": ..., "timeout": 5.0, "id": ...}. The "id" (any JSON value) is never
/// sent; it comes back in the line's record. Every record names its "line" (from 1, within its
/// file) and, with several input files, its "input". Blank lines and lines starting with # are
/// counted and skipped. Every other line yields exactly one record: a malformed line (bad JSON,
/// an invalid URL, text that is not UTF-8, a line over --max-line-bytes) yields
/// {"ok": false, "line": N, "error": {"kind": "malformed", "message": ...}, "text": ...} with
/// its text cut short and credentials redacted.
///
#[derive(Debug, Parser)]
#[command(name = "parfetch", version, about, long_about, after_help = EXIT_STATUS)]
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

    /// Also write the summary as JSON to this file: counts of lines, responses by status and
    /// exceptions by kind, latency percentiles, wall time and the exit status.
    #[arg(long, value_name = "FILE")]
    summary_json: Option<PathBuf>,

    /// No summary and no messages about malformed lines on standard error (records and
    /// --summary-json still have them); fatal errors are still reported.
    #[arg(short, long)]
    quiet: bool,
}

/// The command's exit statuses: the one table that `--help` and the README describe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Exit {
    /// Every line accounted for and every request answered.
    Ok = 0,
    /// Some requests failed or lines were malformed, each with its record.
    Failures = 1,
    /// A usage error, found before anything was sent.
    Usage = 2,
    /// A fatal error during the run: records may be missing.
    Fatal = 3,
}

/// How a run that started ended early.
enum Fatal {
    /// Standard output was closed by its reader (`| head -1`): nothing to say, nobody to say
    /// it to.
    OutputClosed,
    Error(String),
}

fn main() -> ExitCode {
    let args = Args::parse();
    let (mut summary, fatal, summary_file) = match run(&args) {
        Ok(ended) => ended,
        Err(message) => {
            eprintln!("parfetch: {message}");
            return ExitCode::from(Exit::Usage as u8);
        }
    };
    let mut exit = if fatal.is_some() {
        Exit::Fatal
    } else if summary.all_good() || args.allow_failures {
        Exit::Ok
    } else {
        Exit::Failures
    };
    summary.exit = exit;
    if let Some(Fatal::Error(message)) = &fatal {
        summary.fatal = Some(message.clone());
        eprintln!("parfetch: {message}");
    }
    if let Some((path, file)) = summary_file {
        if let Err(e) = summary.write_json(file) {
            eprintln!("parfetch: writing {}: {e}", path.display());
            exit = Exit::Fatal;
        }
    }
    if !args.quiet && !matches!(fatal, Some(Fatal::OutputClosed)) {
        summary.print();
    }
    ExitCode::from(exit as u8)
}

/// Where `--summary-json` goes, opened before anything is sent.
type SummaryFile = (PathBuf, File);

/// Runs the command: `Err` for a usage error (nothing was sent), else the summary and the fatal
/// error that ended the run early, if any.
fn run(args: &Args) -> Result<(Summary, Option<Fatal>, Option<SummaryFile>), String> {
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

    let bar = if io::stderr().is_terminal() && !args.quiet {
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
            Ok(reader)
        })
        .collect::<Result<Vec<_>, String>>()?;
    let output = Output::open(args.output.as_deref())?;
    let summary_file = match &args.summary_json {
        Some(path) => Some((
            path.clone(),
            File::create(path).map_err(|e| format!("cannot write {}: {e}", path.display()))?,
        )),
        None => None,
    };
    // With one input, `line` says where a record comes from; with several, `input` too.
    let input_names: Vec<Option<String>> = inputs
        .iter()
        .map(|input| (inputs.len() > 1).then(|| input.to_string_lossy().into_owned()))
        .collect();

    let started = Instant::now();
    let shared = Shared::new(output);
    let counts = LineCounts::default();
    let read_error = Mutex::new(None);
    let feed = Feed {
        readers: readers.into_iter().enumerate(),
        current: None,
        line: 0,
        position: 0,
        held: Vec::new(),
        max_line_bytes: args.max_line_bytes,
        method: &method,
        headers: &headers,
        inputs: &inputs,
        input_names: &input_names,
        shared: &shared,
        counts: &counts,
        read_error: &read_error,
        bar: &bar,
        quiet: args.quiet,
    };

    let mut summary = Summary::new();
    let write = |position: usize, outcome: FetchResult| {
        let Some(origin) = lock(&shared.origins).remove(&position) else {
            // Every request is registered before it is handed out; a miss is a bug, and a
            // record without its line would be worse than stopping.
            shared.fail(io::Error::other(format!("no line for request {position}")));
            return ControlFlow::Break(());
        };
        let line = to_line(&outcome);
        let record = record(origin.line, &input_names[origin.input], &line.json);
        if shared.write(&origin.before, Some(&record)).is_err() {
            return ControlFlow::Break(());
        }
        summary.count(line.tally);
        ControlFlow::Continue(())
    };
    if args.keep_order {
        fetcher.try_for_each_in_order(feed, write);
    } else {
        fetcher.try_for_each_completed(feed, write);
    }
    // Malformed lines after the last request.
    let leftover = std::mem::take(&mut *lock(&shared.leftover));
    let _ = shared.write(&leftover, None);
    let fatal = shared.finish().err().map(|e| {
        if e.kind() == io::ErrorKind::BrokenPipe {
            Fatal::OutputClosed
        } else {
            Fatal::Error(format!("writing results: {e}"))
        }
    });
    let fatal = fatal.or_else(|| {
        read_error
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
            .map(Fatal::Error)
    });
    bar.finish_and_clear();
    summary.lines = counts.lines.into_inner();
    summary.skipped = counts.skipped.into_inner();
    summary.malformed = counts.malformed.into_inner();
    summary.wall = started.elapsed();
    summary.proxies = fetcher.proxies();
    Ok((summary, fatal, summary_file))
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

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Where records go. Records bound for a pipe or a terminal are written one by one, as they
/// are made: a record waiting in a buffer is a request its reader will send again if the
/// command is killed (a retried Spark task), and a closed pipe is seen at the next record.
/// Files get a buffer.
enum Output {
    Buffered(BufWriter<Box<dyn Write + Send>>),
    Direct(io::Stdout),
}

impl Output {
    fn open(path: Option<&std::path::Path>) -> Result<Self, String> {
        if let Some(path) = path {
            let file =
                File::create(path).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            return Ok(Self::Buffered(BufWriter::new(Box::new(file))));
        }
        let stdout = io::stdout();
        Ok(if stdout_is_a_file(&stdout) {
            Self::Buffered(BufWriter::new(Box::new(stdout)))
        } else {
            Self::Direct(stdout)
        })
    }

    /// Writes one record and its line end in one call.
    fn write_record(&mut self, record: &str) -> io::Result<()> {
        let mut line = String::with_capacity(record.len() + 1);
        line.push_str(record);
        line.push('\n');
        match self {
            Self::Buffered(writer) => writer.write_all(line.as_bytes()),
            Self::Direct(stdout) => {
                let mut stdout = stdout.lock();
                stdout.write_all(line.as_bytes())?;
                stdout.flush()
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Buffered(writer) => writer.flush(),
            Self::Direct(stdout) => stdout.flush(),
        }
    }
}

#[cfg(unix)]
fn stdout_is_a_file(stdout: &io::Stdout) -> bool {
    use std::os::fd::AsFd;
    stdout
        .as_fd()
        .try_clone_to_owned()
        .and_then(|fd| File::from(fd).metadata())
        .is_ok_and(|metadata| metadata.is_file())
}

#[cfg(not(unix))]
fn stdout_is_a_file(_: &io::Stdout) -> bool {
    false
}

/// What the reading side (the feed, on the fetcher's feeding thread) and the writing side (the
/// calling thread) share.
struct Shared {
    /// The line of each request handed out and not yet written, by position: bounded by what
    /// is in flight and the reorder window.
    origins: Mutex<HashMap<usize, Origin>>,
    out: Mutex<Out>,
    /// Signalled when every request handed out has been written, or the run stopped.
    caught_up: Condvar,
    /// Malformed records after the last request, for the calling thread to write at the end.
    leftover: Mutex<Vec<String>>,
}

struct Out {
    output: Output,
    handed_out: usize,
    written: usize,
    error: Option<io::Error>,
}

/// Where a request came from, and the records of the malformed lines just before it, written
/// ahead of its own so that `--keep-order` keeps them in place.
struct Origin {
    line: u64,
    input: usize,
    before: Vec<String>,
}

impl Shared {
    fn new(output: Output) -> Self {
        Self {
            origins: Mutex::new(HashMap::new()),
            out: Mutex::new(Out {
                output,
                handed_out: 0,
                written: 0,
                error: None,
            }),
            caught_up: Condvar::new(),
            leftover: Mutex::new(Vec::new()),
        }
    }

    fn stopped(&self) -> bool {
        lock(&self.out).error.is_some()
    }

    /// Registers the next request handed out.
    fn hand_out(&self, position: usize, origin: Origin) {
        lock(&self.origins).insert(position, origin);
        lock(&self.out).handed_out += 1;
    }

    /// Writes `before`, then the record of a request (counted as written), unless the output
    /// already failed.
    fn write(&self, before: &[String], record: Option<&str>) -> Result<(), ()> {
        let mut out = lock(&self.out);
        if out.error.is_some() {
            return Err(());
        }
        let result = before
            .iter()
            .map(String::as_str)
            .chain(record)
            .try_for_each(|record| out.output.write_record(record));
        if let Err(e) = result {
            out.error = Some(e);
            self.caught_up.notify_all();
            return Err(());
        }
        if record.is_some() {
            out.written += 1;
            if out.written == out.handed_out {
                self.caught_up.notify_all();
            }
        }
        Ok(())
    }

    /// Writes malformed records now, once every request before them has been written: so a
    /// run of malformed lines holds no more than a few of them in memory.
    fn write_when_caught_up(&self, records: &mut Vec<String>) {
        let mut out = lock(&self.out);
        while out.written < out.handed_out && out.error.is_none() {
            out = self
                .caught_up
                .wait(out)
                .unwrap_or_else(PoisonError::into_inner);
        }
        drop(out);
        let _ = self.write(records, None);
        records.clear();
    }

    fn fail(&self, error: io::Error) {
        let mut out = lock(&self.out);
        out.error.get_or_insert(error);
        self.caught_up.notify_all();
    }

    /// Flushes the output; the first error the output met, if any.
    fn finish(&self) -> io::Result<()> {
        let mut out = lock(&self.out);
        if let Some(error) = out.error.take() {
            return Err(error);
        }
        out.output.flush()
    }
}

/// Lines seen by the feed, for the summary.
#[derive(Default)]
struct LineCounts {
    lines: AtomicU64,
    skipped: AtomicU64,
    malformed: AtomicU64,
}

/// How many malformed records may wait for the next request before they are written on their
/// own.
const HELD_MALFORMED: usize = 64;

/// The longest text of a malformed line kept in its record, in bytes.
const TEXT_CUT: usize = 256;

/// The requests of the inputs, read on the fetcher's feeding thread only as fast as requests go
/// out. Malformed lines become records here; blank lines and comments are counted.
struct Feed<'a> {
    readers: std::iter::Enumerate<std::vec::IntoIter<Box<dyn BufRead + Send>>>,
    current: Option<(usize, InputLines<Box<dyn BufRead + Send>>)>,
    line: u64,
    position: usize,
    held: Vec<String>,
    max_line_bytes: usize,
    method: &'a Method,
    headers: &'a [(String, String)],
    inputs: &'a [PathBuf],
    input_names: &'a [Option<String>],
    shared: &'a Shared,
    counts: &'a LineCounts,
    read_error: &'a Mutex<Option<String>>,
    bar: &'a ProgressBar,
    quiet: bool,
}

impl Feed<'_> {
    /// The input is done (or failed): malformed records still held go to the calling thread.
    fn end(&mut self) -> Option<Request> {
        self.current = None;
        self.readers = Vec::new().into_iter().enumerate();
        lock(&self.shared.leftover).append(&mut self.held);
        None
    }
}

impl Iterator for Feed<'_> {
    type Item = Request;

    fn next(&mut self) -> Option<Request> {
        loop {
            if self.shared.stopped() {
                return self.end();
            }
            let Some((input, lines)) = &mut self.current else {
                match self.readers.next() {
                    Some((input, reader)) => {
                        self.current = Some((input, InputLines::new(reader, self.max_line_bytes)));
                        self.line = 0;
                        continue;
                    }
                    None => return self.end(),
                }
            };
            let input = *input;
            let Some(read) = lines.next() else {
                self.current = None;
                continue;
            };
            self.line += 1;
            self.counts.lines.fetch_add(1, Ordering::Relaxed);
            let text = match read {
                Ok(text) => text,
                Err(e) => {
                    *lock(self.read_error) = Some(format!(
                        "reading {} after line {}: {e}",
                        self.inputs[input].display(),
                        self.line - 1
                    ));
                    return self.end();
                }
            };
            match parse_line(text, self.method, self.headers, self.max_line_bytes) {
                Parsed::Skip => {
                    self.counts.skipped.fetch_add(1, Ordering::Relaxed);
                }
                Parsed::Request(request) => {
                    let origin = Origin {
                        line: self.line,
                        input,
                        before: std::mem::take(&mut self.held),
                    };
                    self.shared.hand_out(self.position, origin);
                    self.position += 1;
                    return Some(request);
                }
                Parsed::Malformed(malformed) => {
                    self.counts.malformed.fetch_add(1, Ordering::Relaxed);
                    let message = parfetch::redact_text(&malformed.message);
                    if !self.quiet {
                        let path = self.inputs[input].display();
                        let line = self.line;
                        self.bar.suspend(|| {
                            eprintln!("{path}:{line}: {}", cut(&message, 4 * TEXT_CUT))
                        });
                    }
                    let body = malformed.record(&message);
                    self.held
                        .push(record(self.line, &self.input_names[input], &body));
                    if self.held.len() >= HELD_MALFORMED {
                        self.shared.write_when_caught_up(&mut self.held);
                    }
                }
            }
        }
    }
}

/// One line of input, as read.
enum InputLine {
    Text(String),
    NotUtf8(Vec<u8>),
    /// At least `bytes` bytes: over the cap, and only its start (`head`) kept.
    TooLong {
        bytes: usize,
        head: Vec<u8>,
    },
}

/// How much of a line over the cap is kept for its record: more than [`TEXT_CUT`], so that a
/// credential that starts before the cut is seen whole by the redaction.
const TOO_LONG_HEAD: usize = 4 * TEXT_CUT;

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
            } else if line.len() < TOO_LONG_HEAD {
                let room = TOO_LONG_HEAD - line.len();
                line.extend_from_slice(&chunk[..room.min(chunk.len())]);
            } else {
                line.truncate(TOO_LONG_HEAD);
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
        if length <= self.max && line.last() == Some(&b'\r') {
            line.pop();
            length -= 1;
        }
        if length > self.max {
            line.truncate(TOO_LONG_HEAD);
            return Some(Ok(InputLine::TooLong {
                bytes: length,
                head: line,
            }));
        }
        Some(Ok(match String::from_utf8(line) {
            Ok(text) => InputLine::Text(text),
            Err(e) => InputLine::NotUtf8(e.into_bytes()),
        }))
    }
}

enum Parsed {
    Skip,
    Request(Request),
    Malformed(Malformed),
}

/// A line that is not a request: why, its text (not yet redacted or cut), and its id when it
/// is a JSON object that has one, so that its record can be matched to its row.
struct Malformed {
    message: String,
    text: String,
    id: Option<serde_json::Value>,
}

impl Malformed {
    fn new(message: String, text: String) -> Self {
        let id = text
            .trim_start()
            .starts_with('{')
            .then(|| serde_json::from_str::<serde_json::Value>(&text).ok())
            .flatten()
            .and_then(|mut spec| spec.get_mut("id").map(serde_json::Value::take));
        Self { message, text, id }
    }

    /// The record's own keys, as a JSON object: `id` if known, `ok`, `error` and `text`.
    fn record(&self, message: &str) -> String {
        let text = parfetch::redact_text(&self.text);
        let mut body = String::from("{");
        if let Some(id) = &self.id {
            body.push_str(&format!("\"id\":{id},"));
        }
        body.push_str(&format!(
            r#""ok":false,"error":{{"kind":"malformed","message":{}}},"text":{}}}"#,
            json_string(&cut(message, 4 * TEXT_CUT)),
            json_string(&cut(&text, TEXT_CUT)),
        ));
        body
    }
}

fn json_string(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

/// `text` cut to at most `max` bytes at a character boundary, `...` marking a cut.
fn cut(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= max {
        return text.into();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end]).into()
}

/// A request from one input line, or why it is none.
fn parse_line(
    line: InputLine,
    method: &Method,
    headers: &[(String, String)],
    max_line_bytes: usize,
) -> Parsed {
    let line = match line {
        InputLine::Text(line) => line,
        InputLine::NotUtf8(bytes) => {
            return Parsed::Malformed(Malformed::new(
                "not UTF-8 text".to_owned(),
                String::from_utf8_lossy(&bytes).into_owned(),
            ));
        }
        InputLine::TooLong { bytes, head } => {
            return Parsed::Malformed(Malformed::new(
                format!("a line of {bytes} bytes or more, over --max-line-bytes {max_line_bytes}"),
                String::from_utf8_lossy(&head).into_owned(),
            ));
        }
    };
    let trimmed = line.trim();
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return Parsed::Skip;
    }
    let request = if trimmed.starts_with('{') {
        match Request::from_spec_json(trimmed) {
            Ok(request) => match parfetch::Url::parse(request.url()) {
                Ok(_) => request,
                Err(e) => {
                    return Parsed::Malformed(Malformed::new(
                        format!("bad request spec: url: {e}"),
                        line,
                    ));
                }
            },
            Err(e) => {
                return Parsed::Malformed(Malformed::new(format!("bad request spec: {e}"), line));
            }
        }
    } else if trimmed.contains(char::is_whitespace) {
        return Parsed::Malformed(Malformed::new(
            "not a URL: it holds spaces".to_owned(),
            line,
        ));
    } else if let Err(e) = parfetch::Url::parse(trimmed) {
        return Parsed::Malformed(Malformed::new(format!("not a URL: {e}"), line));
    } else {
        Request::new(method.clone(), trimmed)
    };
    let mut request = request;
    for (name, value) in headers {
        if !request.headers().contains_key(name.as_str()) {
            request = request.header(name, value);
        }
    }
    Parsed::Request(request)
}

/// A record: `line` and, with several inputs, `input`, then the keys of `body` (a JSON object).
fn record(line: u64, input: &Option<String>, body: &str) -> String {
    let mut record = format!("{{\"line\":{line}");
    if let Some(input) = input {
        record.push_str(",\"input\":");
        record.push_str(&json_string(input));
    }
    match body.strip_prefix('{') {
        Some("}") | None => record.push('}'),
        Some(rest) => {
            record.push(',');
            record.push_str(rest);
        }
    }
    record
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

fn to_line(outcome: &FetchResult) -> Line {
    let (json, tally) = match outcome {
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
        format!(
            r#"{{"ok":false,"error":{{"kind":"record","message":{}}}}}"#,
            json_string(&e.to_string())
        )
    });
    Line { json, tally }
}

struct Summary {
    lines: u64,
    skipped: u64,
    malformed: u64,
    statuses: BTreeMap<u16, u64>,
    errors: BTreeMap<&'static str, u64>,
    latency_us: Histogram<u64>,
    wall: Duration,
    /// The proxies requests may have gone through.
    proxies: Vec<String>,
    exit: Exit,
    fatal: Option<String>,
}

impl Summary {
    fn new() -> Self {
        Self {
            lines: 0,
            skipped: 0,
            malformed: 0,
            statuses: BTreeMap::new(),
            errors: BTreeMap::new(),
            latency_us: Histogram::new(3).expect("3 significant figures is valid"),
            wall: Duration::ZERO,
            proxies: Vec::new(),
            exit: Exit::Ok,
            fatal: None,
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

    fn latency_ms(&self, quantile: f64) -> f64 {
        self.latency_us.value_at_quantile(quantile) as f64 / 1e3
    }

    fn write_json(&self, file: File) -> io::Result<()> {
        let latency = if self.latency_us.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::json!({
                "p50": self.latency_ms(0.50),
                "p90": self.latency_ms(0.90),
                "p99": self.latency_ms(0.99),
                "max": self.latency_us.max() as f64 / 1e3,
            })
        };
        let summary = serde_json::json!({
            "lines": self.lines,
            "blank_or_comment": self.skipped,
            "malformed": self.malformed,
            "responses": self.statuses.values().sum::<u64>(),
            "responses_by_status": self.statuses.iter().map(|(s, n)| (s.to_string(), n)).collect::<BTreeMap<_, _>>(),
            "exceptions": self.errors.values().sum::<u64>(),
            "exceptions_by_kind": self.errors,
            "latency_ms": latency,
            "wall_seconds": self.wall.as_secs_f64(),
            "exit_code": self.exit as u8,
            "fatal": self.fatal,
        });
        let mut file = BufWriter::new(file);
        serde_json::to_writer_pretty(&mut file, &summary)?;
        file.write_all(b"\n")?;
        file.flush()
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
        eprintln!(
            "  {} lines read, {} blank or comments",
            self.lines, self.skipped
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
            eprintln!(
                "  latency: p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms",
                self.latency_ms(0.50),
                self.latency_ms(0.95),
                self.latency_ms(0.99)
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
