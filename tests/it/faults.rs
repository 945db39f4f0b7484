//! Broken servers and bad input: each ends as one typed exception for its item, and the rest of
//! the batch completes.

use crate::support;

use std::time::{Duration, Instant};

use parfetch::prelude::*;
use parfetch::{FetchError, Fetcher, Request, ThreadException};
use rayon::prelude::*;
use support::{RawServer, TestServer, read_head, refused_url, write_all};

/// Asserts that an exception's error matches a pattern, printing the error when it does not.
macro_rules! assert_error {
    ($exception:expr, $pattern:pat $(if $guard:expr)?) => {{
        let error = $exception.error();
        assert!(matches!(error, $pattern $(if $guard)?), "unexpected error: {error}");
    }};
}

/// Fetches `bad` among good URLs and returns `bad`'s exception, checking the good ones came back.
fn fetch_among_good(fetcher: &Fetcher, bad: Request) -> ThreadException {
    let server = TestServer::start();
    let mut requests: Vec<Request> = (0..20)
        .map(|i| Request::get(server.url(&format!("/good/{i}"))))
        .collect();
    requests.insert(10, bad.clone());

    let (responses, mut exceptions) = requests.par_iter().fetch_all_with(fetcher);

    assert_eq!(responses.len(), 20, "the good requests all succeed");
    assert!(responses.iter().all(|r| r.status() == 200));
    assert_eq!(exceptions.len(), 1, "{exceptions:?}");
    let exception = exceptions.pop().unwrap();
    assert_eq!(exception.request().url(), bad.url());
    assert_eq!(exception.error().url(), bad.url());
    exception
}

/// The exception for a server that reads the request, writes `reply` and closes, fetched among
/// good requests.
fn answered_with(reply: &'static [u8]) -> ThreadException {
    let server = RawServer::start(move |mut stream| {
        read_head(&mut stream);
        write_all(&mut stream, reply);
    });
    let fetcher = fetcher_with_timeout(Duration::from_secs(5));
    fetch_among_good(&fetcher, Request::get(server.url("/")))
}

fn fetcher_with_timeout(timeout: Duration) -> Fetcher {
    Fetcher::builder()
        .num_processes(4)
        .timeout(timeout)
        .build()
        .unwrap()
}

#[test]
fn refused_connection_is_a_connect_error() {
    let fetcher = fetcher_with_timeout(Duration::from_secs(5));
    let exception = fetch_among_good(&fetcher, Request::get(refused_url()));
    assert!(exception.error().is_connect(), "{}", exception.error());
}

#[test]
fn server_closing_without_answering_is_a_transport_error() {
    let exception = answered_with(b"");
    assert_error!(exception, FetchError::Transport { .. });
}

#[test]
fn server_that_never_answers_times_out() {
    let server = RawServer::start(|mut stream| {
        read_head(&mut stream);
        std::thread::sleep(Duration::from_secs(3));
    });
    let fetcher = fetcher_with_timeout(Duration::from_millis(300));
    let started = Instant::now();
    let exception = fetch_among_good(&fetcher, Request::get(server.url("/")));
    assert!(exception.error().is_timeout());
    assert_error!(exception, FetchError::Timeout { timeout, .. } if *timeout == Duration::from_millis(300));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "did not wait for the server"
    );
}

#[test]
fn body_that_stalls_after_the_headers_times_out() {
    let server = RawServer::start(|mut stream| {
        read_head(&mut stream);
        write_all(
            &mut stream,
            b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nfirst bytes",
        );
        std::thread::sleep(Duration::from_secs(3));
    });
    let fetcher = fetcher_with_timeout(Duration::from_secs(10));
    let request = Request::get(server.url("/")).timeout(Duration::from_millis(300));
    let exception = fetch_among_good(&fetcher, request);
    assert_error!(exception, FetchError::Timeout { timeout, .. } if *timeout == Duration::from_millis(300));
}

#[test]
fn body_shorter_than_its_content_length_is_a_body_error() {
    let exception = answered_with(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly this");
    assert_error!(exception, FetchError::Body { .. });
}

#[test]
fn connection_reset_in_the_middle_of_the_body_is_a_body_error() {
    let server = RawServer::start(|mut stream| {
        // Leave the request unread: closing a socket with unread data sends a reset.
        std::thread::sleep(Duration::from_millis(100));
        write_all(
            &mut stream,
            b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\npartial",
        );
        std::thread::sleep(Duration::from_millis(100));
    });
    let fetcher = fetcher_with_timeout(Duration::from_secs(5));
    let exception = fetch_among_good(&fetcher, Request::get(server.url("/")));
    assert_error!(exception, FetchError::Body { .. });
}

#[test]
fn malformed_status_line_is_a_transport_error() {
    let exception = answered_with(b"HTTP/1.1 OK-ISH\r\n\r\n");
    assert_error!(exception, FetchError::Transport { .. });
}

#[test]
fn declared_oversized_body_is_rejected_before_reading_it() {
    let server = TestServer::start();
    let fetcher = Fetcher::builder()
        .num_processes(4)
        .max_body_bytes(1000)
        .build()
        .unwrap();
    let exception = fetch_among_good(&fetcher, Request::get(server.url("/bytes/1001")));
    assert_error!(exception, FetchError::BodyTooLarge { limit: 1000, .. });
    let at_limit = fetcher
        .execute(server.url("/bytes/1000"))
        .expect("at the limit");
    assert_eq!(at_limit.bytes().len(), 1000);
}

#[test]
fn chunked_body_growing_past_the_limit_is_cut_off() {
    let server = RawServer::start(|mut stream| {
        read_head(&mut stream);
        write_all(
            &mut stream,
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
        );
        let chunk = format!("{:x}\r\n{}\r\n", 4096, "y".repeat(4096));
        // 4 MiB at most, far past the limit; stops early when the client hangs up.
        for _ in 0..1024 {
            if std::io::Write::write_all(&mut stream, chunk.as_bytes()).is_err() {
                return;
            }
        }
        write_all(&mut stream, b"0\r\n\r\n");
    });
    let fetcher = Fetcher::builder()
        .num_processes(4)
        .max_body_bytes(64 * 1024)
        .build()
        .unwrap();
    let exception = fetch_among_good(&fetcher, Request::get(server.url("/")));
    assert_error!(exception, FetchError::BodyTooLarge { limit: 65536, .. });
}

#[test]
fn invalid_urls_are_typed_errors_that_name_the_url() {
    let fetcher = fetcher_with_timeout(Duration::from_secs(5));
    for bad in [
        "",
        "no scheme",
        "http://",
        "http://exa mple.com/",
        "http://[::1/",
    ] {
        let exception = fetch_among_good(&fetcher, Request::get(bad));
        assert_error!(exception, FetchError::InvalidUrl { url, .. } if url == bad);
        assert!(exception.to_string().contains(&format!("{bad:?}")));
    }
}

#[test]
fn schemes_other_than_http_are_rejected() {
    let fetcher = fetcher_with_timeout(Duration::from_secs(5));
    for (bad, scheme) in [
        ("file:///etc/passwd", "file"),
        ("ftp://127.0.0.1/x", "ftp"),
        ("mailto:a@b.c", "mailto"),
    ] {
        let exception = fetch_among_good(&fetcher, Request::get(bad));
        assert_error!(exception, FetchError::UnsupportedScheme { scheme: found, .. } if found == scheme);
    }
}

#[test]
fn header_with_a_line_break_is_rejected_for_that_item() {
    let server = TestServer::start();
    let fetcher = fetcher_with_timeout(Duration::from_secs(5));
    let bad = Request::get(server.url("/echo")).header("x-injected", "a\r\nevil: 1");
    let exception = fetch_among_good(&fetcher, bad);
    assert_error!(exception, FetchError::InvalidHeader { name, .. } if name == "x-injected");
    let bad_name = Request::get(server.url("/echo")).header("bad name", "v");
    let exception = fetch_among_good(&fetcher, bad_name);
    assert_error!(exception, FetchError::InvalidHeader { name, .. } if name == "bad name");
    assert_eq!(server.stats().requests(), 0, "nothing was sent");
}

#[test]
fn json_body_that_cannot_be_encoded_is_rejected_for_that_item() {
    use std::collections::HashMap;
    let fetcher = fetcher_with_timeout(Duration::from_secs(5));
    // JSON object keys must be strings.
    let unencodable: HashMap<Vec<u8>, u8> = HashMap::from([(vec![1], 1)]);
    let bad = Request::post("http://127.0.0.1:9/").json(&unencodable);
    let exception = fetch_among_good(&fetcher, bad);
    assert_error!(exception, FetchError::InvalidBody { .. });
}

#[test]
fn redirect_loop_is_a_redirect_error() {
    let server = RawServer::start(|mut stream| {
        loop {
            if read_head(&mut stream).is_empty() {
                return;
            }
            write_all(
                &mut stream,
                b"HTTP/1.1 302 Found\r\nlocation: /again\r\ncontent-length: 0\r\n\r\n",
            );
        }
    });
    let fetcher = fetcher_with_timeout(Duration::from_secs(5));
    let exception = fetch_among_good(&fetcher, Request::get(server.url("/")));
    assert_error!(exception, FetchError::Redirect { .. });
}

#[test]
fn a_failing_host_does_not_slow_the_others_down_past_its_timeout() {
    let stalled = RawServer::start(|mut stream| {
        read_head(&mut stream);
        std::thread::sleep(Duration::from_secs(2));
    });
    let server = TestServer::start();
    let mut urls: Vec<String> = (0..200).map(|i| server.url(&format!("/n/{i}"))).collect();
    for i in 0..8 {
        urls.push(stalled.url(&format!("/{i}")));
    }
    let fetcher = fetcher_with_timeout(Duration::from_millis(200));

    let (responses, exceptions) = urls.par_iter().fetch_all_with(&fetcher);

    assert_eq!(responses.len(), 200);
    assert_eq!(exceptions.len(), 8);
    assert!(exceptions.iter().all(|e| e.error().is_timeout()));
}

#[test]
fn malformed_header_line_is_a_transport_error() {
    let exception =
        answered_with(b"HTTP/1.1 200 OK\r\nthis line is no header\r\ncontent-length: 2\r\n\r\nok");
    assert_error!(exception, FetchError::Transport { .. });
}

#[test]
fn huge_response_headers_are_a_transport_error() {
    let server = RawServer::start(|mut stream| {
        read_head(&mut stream);
        let mut head = b"HTTP/1.1 200 OK\r\nx-huge: ".to_vec();
        head.extend(std::iter::repeat_n(b'a', 2 << 20));
        head.extend_from_slice(b"\r\ncontent-length: 2\r\n\r\nok");
        write_all(&mut stream, &head);
    });
    let fetcher = fetcher_with_timeout(Duration::from_secs(5));
    let exception = fetch_among_good(&fetcher, Request::get(server.url("/")));
    assert_error!(exception, FetchError::Transport { .. });
}

#[cfg(feature = "gzip")]
fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

#[cfg(feature = "gzip")]
fn gzip_server(decoded_len: usize) -> RawServer {
    let body = gzip(&vec![b'z'; decoded_len]);
    RawServer::start(move |mut stream| {
        read_head(&mut stream);
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        write_all(&mut stream, &[head.as_bytes(), &body].concat());
    })
}

#[cfg(feature = "gzip")]
#[test]
fn gzip_bodies_are_decoded() {
    let server = gzip_server(5_000);
    let response = Fetcher::new().execute(server.url("/")).unwrap();
    assert_eq!(response.bytes().len(), 5_000);
    assert!(response.bytes().iter().all(|b| *b == b'z'));
}

#[cfg(feature = "gzip")]
#[test]
fn gzip_body_whose_decoded_size_exceeds_the_limit_is_cut_off() {
    // 8 MiB of 'z' compress to a few KiB: the limit applies to what is decoded.
    let server = gzip_server(8 << 20);
    let fetcher = Fetcher::builder()
        .num_processes(4)
        .max_body_bytes(64 * 1024)
        .build()
        .unwrap();
    let exception = fetch_among_good(&fetcher, Request::get(server.url("/")));
    assert_error!(exception, FetchError::BodyTooLarge { limit: 65536, .. });
}

/// A small server as `python3 -m http.server` is one: HTTP/1.0 (a connection per request), a
/// listen backlog of 5, and an accept loop slower than the connections arriving. Its full accept
/// queue drops connections the client already counts as open: the request's bytes are never
/// acknowledged, and without a resend the client waits out its whole timeout.
#[test]
fn a_small_server_with_a_full_accept_queue_answers_every_request_with_the_defaults() {
    // tokio's socket is the one at hand that can set a backlog; it needs a runtime to listen.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        socket.listen(5).unwrap().into_std().unwrap()
    });
    drop(runtime);
    listener.set_nonblocking(false).unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopped = std::sync::Arc::clone(&stop);
    let server = std::thread::spawn(move || {
        for stream in listener.incoming() {
            if stopped.load(std::sync::atomic::Ordering::SeqCst) {
                break;
            }
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                read_head(&mut stream);
                write_all(
                    &mut stream,
                    b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok",
                );
            });
            std::thread::sleep(Duration::from_micros(300));
        }
    });
    // Shorter timeouts than the defaults (10 s to connect, 30 s in all) keep the test short:
    // a request the full queue dropped is sent again after 4 s, where it used to wait out its
    // 10 s timeout.
    let fetcher = Fetcher::builder()
        .connect_timeout(Duration::from_secs(4))
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let urls: Vec<String> = (0..3_000).map(|i| format!("http://{addr}/a?{i}")).collect();

    let (responses, exceptions) = urls.par_iter().fetch_all_with(&fetcher);

    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = std::net::TcpStream::connect(addr);
    server.join().unwrap();
    let kinds: Vec<String> = exceptions.iter().map(|e| e.to_string()).take(3).collect();
    assert_eq!(
        responses.len(),
        3_000,
        "{} failed: {kinds:?}",
        exceptions.len()
    );
}

/// A name resolver that panics: a callback that a session hook installs and that runs inside
/// a request. (A redirect policy was one, until parfetch followed redirects itself.)
struct PanickingResolver;

impl parfetch::reqwest::dns::Resolve for PanickingResolver {
    fn resolve(&self, _name: parfetch::reqwest::dns::Name) -> parfetch::reqwest::dns::Resolving {
        panic!("the resolver fails")
    }
}

fn panicking_resolver(session: parfetch::ClientBuilder) -> parfetch::ClientBuilder {
    session.dns_resolver(std::sync::Arc::new(PanickingResolver))
}

/// When a callback that a session hook installed panics inside a request, that item ends as a
/// `Panicked` exception and every other item completes.
#[test]
fn a_panicking_hook_callback_costs_only_its_items() {
    let server = TestServer::start();
    let fetcher = Fetcher::builder()
        .num_processes(2)
        .initializer(panicking_resolver)
        .build()
        .unwrap();
    // Names go through the resolver; IP addresses do not.
    let urls: Vec<String> = (0..40)
        .map(|i| {
            let url = server.url(&format!("/n/{i}"));
            if i % 4 == 0 {
                url.replace("127.0.0.1", "localhost")
            } else {
                url
            }
        })
        .collect();

    let (responses, exceptions) = urls.par_iter().fetch_all_with(&fetcher);

    assert_eq!((responses.len(), exceptions.len()), (30, 10));
    for exception in &exceptions {
        assert!(
            matches!(exception.error(), FetchError::Panicked { .. }),
            "{exception}"
        );
        assert_eq!(exception.error().kind(), "panicked");
        assert!(
            exception.to_string().contains("the resolver fails"),
            "{exception}"
        );
    }

    // A Pool too: join_all returns with every outcome and nothing pending.
    let mut pool = parfetch::Pool::builder()
        .num_processes(2)
        .initializer(panicking_resolver)
        .from_urls(&urls)
        .unwrap();
    pool.join_all();
    assert_eq!(pool.pending(), 0);
    assert_eq!(pool.responses().count() + pool.exceptions().count(), 40);
}

#[test]
fn a_panicking_hook_callback_in_execute_is_an_exception_not_a_panic() {
    let server = TestServer::start();
    let fetcher = Fetcher::builder()
        .initializer(panicking_resolver)
        .build()
        .unwrap();
    let exception = fetcher
        .execute(server.url("/n").replace("127.0.0.1", "localhost"))
        .unwrap_err();
    assert!(
        matches!(exception.error(), FetchError::Panicked { .. }),
        "{exception}"
    );
    let progress = fetcher.progress();
    assert_eq!((progress.done, progress.failed), (1, 1));
    assert!(fetcher.execute(server.url("/n")).is_ok());
}

/// Each error says its cause once: in its message, not again through `source()`, so a
/// reporter that prints the chain (`anyhow`'s `{:#}`) does not repeat it.
#[test]
fn an_errors_cause_is_told_once() {
    let fetcher = Fetcher::new();
    for url in [refused_url(), "not a url".to_owned()] {
        let exception = fetcher.execute(url.as_str()).unwrap_err();
        let mut chain = exception.to_string();
        let mut source = std::error::Error::source(&exception);
        while let Some(error) = source {
            chain.push_str(&format!(": {error}"));
            source = error.source();
        }
        assert_eq!(chain, exception.to_string(), "{chain}");
        assert!(
            chain.contains("refused") || chain.contains("relative URL without a base"),
            "{chain}"
        );
    }
}
