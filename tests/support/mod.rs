//! Loopback servers for the tests, examples and benchmarks.
//!
//! [`TestServer`] is a well-behaved HTTP/1.1 server (hyper on its own tokio runtime and thread,
//! keep-alive, `TCP_NODELAY`, a listen backlog of 1024) that counts what it sees.
//! [`RawServer`] hands each accepted connection to a closure, for servers that misbehave.
#![allow(dead_code)] // each test binary uses a different part

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

/// What a [`TestServer`] has seen so far.
#[derive(Debug, Default)]
pub struct Stats {
    requests: AtomicUsize,
    connections: AtomicUsize,
    closed: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    open: AtomicUsize,
    most_open: AtomicUsize,
    full_handshakes: AtomicUsize,
    resumed_handshakes: AtomicUsize,
    per_host: std::sync::Mutex<std::collections::HashMap<IpAddr, usize>>,
    flaky_hits: std::sync::Mutex<std::collections::HashMap<String, usize>>,
}

impl Stats {
    /// Requests answered or being answered.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// TCP connections accepted.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// TCP connections that have ended.
    pub fn closed(&self) -> usize {
        self.closed.load(Ordering::SeqCst)
    }

    /// The most TCP connections that were open at the same moment.
    pub fn most_open(&self) -> usize {
        self.most_open.load(Ordering::SeqCst)
    }

    /// TLS handshakes completed: (full, resumed).
    pub fn handshakes(&self) -> (usize, usize) {
        (
            self.full_handshakes.load(Ordering::SeqCst),
            self.resumed_handshakes.load(Ordering::SeqCst),
        )
    }

    /// TCP connections accepted on address `ip` (see [`TestServer::start_on`]).
    pub fn connections_to(&self, ip: Ipv4Addr) -> usize {
        self.per_host
            .lock()
            .unwrap()
            .get(&IpAddr::V4(ip))
            .copied()
            .unwrap_or(0)
    }

    /// The most TCP connections accepted on any one address.
    pub fn most_connections_to_one_host(&self) -> usize {
        self.per_host
            .lock()
            .unwrap()
            .values()
            .copied()
            .max()
            .unwrap_or(0)
    }

    /// How many times `/flaky/{key}` was requested.
    pub fn flaky_hits(&self, key: &str) -> usize {
        self.flaky_hits
            .lock()
            .unwrap()
            .get(key)
            .copied()
            .unwrap_or(0)
    }

    /// The most requests that were being handled at the same moment.
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight.load(Ordering::SeqCst)
    }
}

/// A loopback HTTP/1.1 server. Routes:
/// - `/status/{code}`: that status;
/// - `/bytes/{n}`: `n` bytes of `x`;
/// - `/__stats`: the number of requests counted so far (itself not counted);
/// - `/delay/{ms}`: waits, then answers `delayed`;
/// - `/echo`: the request as JSON (`method`, `path`, `query`, `headers`, `body`);
/// - `/redirect`: `302` to `/echo`;
/// - `/redirect-to?to={url}`: `302` to `url` (given unencoded);
/// - `/redirect-with/{code}?to={url}`: that status, with `url` as its `Location` if given;
/// - `/flaky/{key}?fail=N&status=S&retry-after=V`: fails the first `N` requests for `key`;
/// - `/set-cookie/{value}`: sets the cookie `session={value}`;
/// - `/clock`: when the request arrived, in microseconds since the process's first such request;
/// - anything else: `200` with body `ok {path}`.
pub struct TestServer {
    addr: SocketAddr,
    scheme: &'static str,
    /// The CA that signed the server's certificate, for a server that speaks TLS.
    ca_pem: Option<String>,
    stats: Arc<Stats>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl TestServer {
    pub fn start() -> Self {
        Self::start_on(&[Ipv4Addr::LOCALHOST])
    }

    /// A server listening on each of `ips` (loopback addresses such as 127.0.1.7, which all
    /// reach this machine: many hosts, no DNS), on one port; [`base`](Self::base) names the
    /// first.
    pub fn start_on(ips: &[Ipv4Addr]) -> Self {
        Self::start_with(ips, None)
    }

    /// [`start_on`](Self::start_on), speaking HTTPS (HTTP/1.1 only) with a certificate that
    /// names every one of `ips`, signed by a CA made for it ([`ca_pem`](Self::ca_pem)). It
    /// counts full and resumed handshakes.
    pub fn start_tls_on(ips: &[Ipv4Addr]) -> Self {
        let (ca_pem, config) = certificate_for(ips);
        let mut server = Self::start_with(ips, Some(Arc::new(config)));
        server.ca_pem = Some(ca_pem);
        server
    }

    /// The CA certificate (PEM) a TLS server's certificate is signed by.
    pub fn ca_pem(&self) -> &str {
        self.ca_pem.as_deref().expect("a TLS server")
    }

    fn start_with(ips: &[Ipv4Addr], tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let ips = ips.to_vec();
        let stats = Arc::new(Stats::default());
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel();
        let server_stats = Arc::clone(&stats);
        let thread = std::thread::Builder::new()
            .name("test-server".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("server runtime");
                runtime.block_on(serve(server_stats, &ips, tls, addr_tx, shutdown_rx));
                runtime.shutdown_timeout(Duration::from_secs(1));
            })
            .expect("server thread");
        let addr = addr_rx.recv().expect("server address");
        Self {
            addr,
            scheme,
            ca_pem: None,
            stats,
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:{port}`, without a trailing slash.
    pub fn base(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// The URL of `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base())
    }

    /// The URL of `path` on address `ip`, one of those given to [`start_on`](Self::start_on).
    pub fn url_on(&self, ip: Ipv4Addr, path: &str) -> String {
        format!("{}://{ip}:{}{path}", self.scheme, self.addr.port())
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(
    stats: Arc<Stats>,
    ips: &[Ipv4Addr],
    tls: Option<Arc<rustls::ServerConfig>>,
    addr_tx: std::sync::mpsc::Sender<SocketAddr>,
    mut shutdown: tokio::sync::oneshot::Receiver<()>,
) {
    let listeners = listen_on(ips);
    addr_tx
        .send(listeners[0].local_addr().expect("local address"))
        .expect("report address");
    let mut accepting = tokio::task::JoinSet::new();
    for listener in listeners {
        let tls = tls.clone().map(tokio_rustls::TlsAcceptor::from);
        accepting.spawn(accept(listener, tls, Arc::clone(&stats)));
    }
    let _ = (&mut shutdown).await;
}

/// Listeners on every one of `ips`, on one port.
fn listen_on(ips: &[Ipv4Addr]) -> Vec<tokio::net::TcpListener> {
    let bind = |ip: Ipv4Addr, port: u16| {
        let socket = tokio::net::TcpSocket::new_v4().ok()?;
        socket.set_reuseaddr(true).ok()?;
        socket.bind(SocketAddr::new(IpAddr::V4(ip), port)).ok()?;
        // The usual backlog of 128 drops connects when hundreds of workers start at once.
        socket.listen(1024).ok()
    };
    for _attempt in 0..20 {
        let first = bind(ips[0], 0).expect("bind");
        let port = first.local_addr().expect("local address").port();
        let rest: Option<Vec<_>> = ips[1..].iter().map(|ip| bind(*ip, port)).collect();
        // Another process may hold that port on one of the other addresses: try another.
        if let Some(rest) = rest {
            return std::iter::once(first).chain(rest).collect();
        }
    }
    panic!("no port free on all of {} addresses", ips.len());
}

async fn accept(
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    stats: Arc<Stats>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of file descriptors, say: let some close.
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        stats.connections.fetch_add(1, Ordering::SeqCst);
        let open = stats.open.fetch_add(1, Ordering::SeqCst) + 1;
        stats.most_open.fetch_max(open, Ordering::SeqCst);
        if let Ok(local) = stream.local_addr() {
            *stats
                .per_host
                .lock()
                .unwrap()
                .entry(local.ip())
                .or_default() += 1;
        }
        let stats = Arc::clone(&stats);
        let tls = tls.clone();
        tokio::spawn(async move {
            let service_stats = Arc::clone(&stats);
            let service = service_fn(move |request| handle(request, Arc::clone(&service_stats)));
            let http = hyper::server::conn::http1::Builder::new();
            match tls {
                None => {
                    let _ = http.serve_connection(TokioIo::new(stream), service).await;
                }
                Some(acceptor) => {
                    if let Ok(stream) = acceptor.accept(stream).await {
                        let counter = match stream.get_ref().1.handshake_kind() {
                            Some(rustls::HandshakeKind::Resumed) => &stats.resumed_handshakes,
                            _ => &stats.full_handshakes,
                        };
                        counter.fetch_add(1, Ordering::SeqCst);
                        let _ = http.serve_connection(TokioIo::new(stream), service).await;
                    }
                }
            }
            stats.open.fetch_sub(1, Ordering::SeqCst);
            stats.closed.fetch_add(1, Ordering::SeqCst);
        });
    }
}

/// A CA made now, and a server configuration whose certificate it signed for every one of `ips`.
fn certificate_for(ips: &[Ipv4Addr]) -> (String, rustls::ServerConfig) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::new()).expect("CA parameters");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
    let issuer = Issuer::new(ca_params, ca_key);
    let names: Vec<String> = ips.iter().map(ToString::to_string).collect();
    let key = KeyPair::generate().expect("server key");
    let certificate = CertificateParams::new(names)
        .expect("server parameters")
        .signed_by(&key, &issuer)
        .expect("server certificate");
    let key = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).expect("key");
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_no_client_auth()
    .with_single_cert(vec![certificate.der().clone()], key)
    .expect("server config");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // As servers usually do: session tickets, so that clients can resume (rustls' server
    // default keeps 256 sessions and issues no tickets).
    config.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new().expect("ticketer");
    (ca.pem(), config)
}

/// `count` loopback addresses, 127.0.1.1 onwards (at most 65,279).
pub fn loopback_hosts(count: usize) -> Vec<Ipv4Addr> {
    (0..count)
        .map(|i| {
            let n = u32::try_from(i).expect("host count") + (1 << 8) + 1;
            Ipv4Addr::from(0x7f00_0000 | n)
        })
        .collect()
}

async fn handle(
    request: Request<Incoming>,
    stats: Arc<Stats>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    // Not counted: let another process read the counters between runs.
    match request.uri().path() {
        "/__stats" => return Ok(reply(StatusCode::OK, stats.requests().to_string())),
        "/__connections" => {
            // Since the last call: connections accepted, the most on one address, the most
            // open at once.
            let hosts = std::mem::take(&mut *stats.per_host.lock().unwrap());
            let most_open = stats
                .most_open
                .swap(stats.open.load(Ordering::SeqCst), Ordering::SeqCst);
            let counts = format!(
                "{} {} {most_open} {} {}",
                hosts.values().sum::<usize>(),
                hosts.values().max().unwrap_or(&0),
                stats.full_handshakes.swap(0, Ordering::SeqCst),
                stats.resumed_handshakes.swap(0, Ordering::SeqCst),
            );
            return Ok(reply(StatusCode::OK, counts));
        }
        _ => {}
    }
    stats.requests.fetch_add(1, Ordering::SeqCst);
    let now = stats.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    stats.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let response = route(request, &stats).await;
    stats.in_flight.fetch_sub(1, Ordering::SeqCst);
    Ok(response)
}

async fn route(request: Request<Incoming>, stats: &Stats) -> Response<Full<Bytes>> {
    let path = request.uri().path().to_owned();
    let mut segments = path.trim_start_matches('/').splitn(2, '/');
    let (head, tail) = (segments.next().unwrap_or(""), segments.next().unwrap_or(""));
    match head {
        "status" => {
            let status = tail
                .parse()
                .ok()
                .and_then(|code| StatusCode::from_u16(code).ok())
                .unwrap_or(StatusCode::BAD_REQUEST);
            reply(status, format!("status {}", status.as_u16()))
        }
        "bytes" => reply(StatusCode::OK, filler(tail.parse().unwrap_or(0))),
        "clock" => {
            static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
            let epoch = *EPOCH.get_or_init(std::time::Instant::now);
            reply(StatusCode::OK, epoch.elapsed().as_micros().to_string())
        }
        "delay" => {
            tokio::time::sleep(Duration::from_millis(tail.parse().unwrap_or(0))).await;
            reply(StatusCode::OK, "delayed")
        }
        "echo" => echo(request).await,
        "flaky" => flaky(tail, request.uri().query().unwrap_or(""), stats),
        "set-cookie" => Response::builder()
            .header("set-cookie", format!("session={tail}; Path=/"))
            .body(Full::new(Bytes::from("cookie set")))
            .expect("response"),
        "redirect-to" => Response::builder()
            .status(StatusCode::FOUND)
            .header(
                "location",
                request
                    .uri()
                    .query()
                    .and_then(|q| q.strip_prefix("to="))
                    .unwrap_or("/"),
            )
            .body(Full::new(Bytes::new()))
            .expect("response"),
        "redirect-with" => {
            let mut response = Response::builder().status(
                tail.parse()
                    .ok()
                    .and_then(|code| StatusCode::from_u16(code).ok())
                    .unwrap_or(StatusCode::FOUND),
            );
            if let Some(to) = request.uri().query().and_then(|q| q.strip_prefix("to=")) {
                response = response.header("location", to);
            }
            response.body(Full::new(Bytes::new())).expect("response")
        }
        "redirect" => Response::builder()
            .status(StatusCode::FOUND)
            .header("location", "/echo")
            .body(Full::new(Bytes::new()))
            .expect("response"),
        _ => reply(StatusCode::OK, format!("ok {path}")),
    }
}

/// `/flaky/{key}?fail=N&status=S&retry-after=V`: answers `S` (default 503), with `Retry-After: V`
/// if given, to the first `N` requests for `key`, then `200 ok`.
fn flaky(key: &str, query: &str, stats: &Stats) -> Response<Full<Bytes>> {
    let param = |name: &str| {
        query
            .split('&')
            .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
            .map(str::to_owned)
    };
    let fail: usize = param("fail").and_then(|n| n.parse().ok()).unwrap_or(0);
    let hits = {
        let mut hits = stats.flaky_hits.lock().unwrap();
        let count = hits.entry(key.to_owned()).or_default();
        *count += 1;
        *count
    };
    if hits > fail {
        return reply(StatusCode::OK, "ok");
    }
    let status = param("status")
        .and_then(|code| code.parse().ok())
        .and_then(|code| StatusCode::from_u16(code).ok())
        .unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let mut response = reply(status, format!("failing {hits} of {fail}"));
    if let Some(wait) = param("retry-after") {
        let wait = wait.replace("%20", " ").replace("%2C", ",");
        response
            .headers_mut()
            .insert("retry-after", wait.parse().expect("header value"));
    }
    response
}

async fn echo(request: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    // Repeated headers are joined with ", ", as HTTP allows.
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in &parts.headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        headers
            .entry(name.as_str().to_owned())
            .and_modify(|joined| {
                joined.push_str(", ");
                joined.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    let record = serde_json::json!({
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
    });
    reply(StatusCode::OK, record.to_string())
}

/// `len` bytes of `x`, sliced from one shared buffer so that large bodies cost the server no
/// allocation.
fn filler(len: usize) -> Bytes {
    static FILLER: std::sync::OnceLock<Bytes> = std::sync::OnceLock::new();
    const SHARED: usize = 4 << 20;
    if len > SHARED {
        return Bytes::from(vec![b'x'; len]);
    }
    FILLER
        .get_or_init(|| Bytes::from(vec![b'x'; SHARED]))
        .slice(..len)
}

fn reply(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
}

/// A server that hands each accepted connection to `behave`, on its own thread.
pub struct RawServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl RawServer {
    pub fn start(behave: impl Fn(TcpStream) + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("local address");
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let behave = Arc::new(behave);
        let thread = {
            let (stop, accepted) = (Arc::clone(&stop), Arc::clone(&accepted));
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    accepted.fetch_add(1, Ordering::SeqCst);
                    let behave = Arc::clone(&behave);
                    std::thread::spawn(move || behave(stream));
                }
            })
        };
        Self {
            addr,
            stop,
            accepted,
            thread: Some(thread),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for RawServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A server whose every request is held until [`Held::release`], then answered `200 held`.
pub struct Held {
    pub server: RawServer,
    released: Arc<AtomicBool>,
}

impl Held {
    pub fn start() -> Self {
        let released = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&released);
        let server = RawServer::start(move |mut stream| {
            read_head(&mut stream);
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while !flag.load(Ordering::SeqCst) && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(2));
            }
            write_all(
                &mut stream,
                b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\nconnection: close\r\n\r\nheld",
            );
        });
        Self { server, released }
    }

    pub fn release(&self) {
        self.released.store(true, Ordering::SeqCst);
    }
}

/// Reads one request head (up to the blank line) from `stream`.
pub fn read_head(stream: &mut TcpStream) -> Vec<u8> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    head
}

/// Writes `bytes` and ignores a peer that has gone.
pub fn write_all(stream: &mut TcpStream, bytes: &[u8]) {
    let _ = stream.write_all(bytes);
    let _ = stream.flush();
}

/// A URL on a port where nothing listens: connecting is refused.
pub fn refused_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local address");
    drop(listener);
    format!("http://{addr}/")
}

/// The certificate authority that signed [`TlsServer`]'s certificate (for `localhost` and
/// `127.0.0.1`), in PEM form.
pub const TLS_CA_PEM: &[u8] = include_bytes!("tls-ca.pem");

/// A loopback HTTPS server whose certificate is signed by the test CA, which no system trusts.
/// Answers every request on a connection with `200 secure` (or as made), then closes.
pub struct TlsServer {
    raw: RawServer,
}

impl TlsServer {
    pub fn start() -> Self {
        Self::answering(
            b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\nconnection: close\r\n\r\nsecure".to_vec(),
        )
    }

    /// A server that answers every request with `302 Found` to `location`.
    pub fn redirecting_to(location: &str) -> Self {
        Self::answering(
            format!(
                "HTTP/1.1 302 Found\r\nlocation: {location}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            )
            .into_bytes(),
        )
    }

    /// A server that answers every request with `answer`, in one write.
    fn answering(answer: Vec<u8>) -> Self {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};

        let chain = CertificateDer::pem_slice_iter(include_bytes!("tls-server.pem"))
            .collect::<Result<Vec<_>, _>>()
            .expect("test certificate");
        let key =
            PrivateKeyDer::from_pem_slice(include_bytes!("tls-server.key")).expect("test key");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server config");
        let config = Arc::new(config);
        let raw = RawServer::start(move |stream| {
            let Ok(connection) = rustls::ServerConnection::new(Arc::clone(&config)) else {
                return;
            };
            let mut tls = rustls::StreamOwned::new(connection, stream);
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match tls.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let _ = tls.write_all(&answer);
            tls.conn.send_close_notify();
            let _ = tls.flush();
        });
        Self { raw }
    }

    /// `https://localhost:{port}{path}`.
    pub fn url(&self, path: &str) -> String {
        self.raw
            .url(path)
            .replacen("http://127.0.0.1", "https://localhost", 1)
    }
}

/// Set in the process that [`run_alone`] starts.
const ALONE: &str = "PARFETCH_TEST_ALONE";

/// Runs the test `name` of module `module` (pass `module_path!()`) in a new process of this
/// test binary, alone, and returns `true` once it passed there; returns `false` inside that
/// process, where the test goes on. For tests that measure the whole process (its threads, its
/// allocations, the global fetcher's capacity): the tests of one binary run side by side in one
/// process and would disturb each other's counts.
///
/// ```ignore
/// #[test]
/// fn counts_the_threads() {
///     if support::run_alone(module_path!(), "counts_the_threads") {
///         return;
///     }
///     // ... measured with no other test running in this process
/// }
/// ```
pub fn run_alone(module: &str, name: &str) -> bool {
    run_alone_with(module, name, &[])
}

/// [`run_alone`], with these environment variables set in the child.
pub fn run_alone_with(module: &str, name: &str, env: &[(&str, &std::ffi::OsStr)]) -> bool {
    if std::env::var_os(ALONE).is_some() {
        return false;
    }
    // libtest names a test by its path without the crate's name.
    let test = match module.split_once("::") {
        Some((_crate, path)) => format!("{path}::{name}"),
        None => name.to_owned(),
    };
    let output = std::process::Command::new(std::env::current_exe().expect("the test binary"))
        .args([test.as_str(), "--exact", "--test-threads=1"])
        .envs(env.iter().copied())
        .env(ALONE, "1")
        .output()
        .expect("the test binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{test}, run alone, failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("1 passed"),
        "{test} did not run alone:\n{stdout}"
    );
    true
}
