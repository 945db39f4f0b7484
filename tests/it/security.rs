//! Safe defaults: TLS verified, credentials kept from other hosts, hosts allow-listed,
//! connections that do not open fail fast.

use crate::support;

use std::time::{Duration, Instant};

use parfetch::reqwest::Certificate;
use parfetch::{ClientBuilder, FetchError, Fetcher, Request};
use serde_json::Value;
use support::{TLS_CA_PEM, TestServer, TlsServer};

#[test]
fn tls_certificates_are_verified_by_default() {
    let server = TlsServer::start();
    let exception = Fetcher::new().execute(server.url("/")).unwrap_err();
    assert!(exception.error().is_connect(), "{}", exception.error());
    assert!(
        exception.to_string().to_lowercase().contains("certificate"),
        "{exception}"
    );
}

#[test]
fn a_session_that_trusts_the_issuer_fetches_over_tls() {
    let server = TlsServer::start();
    let fetcher = Fetcher::builder()
        .session(|| {
            let ca = Certificate::from_pem(TLS_CA_PEM).expect("test CA");
            ClientBuilder::new().tls_certs_merge([ca])
        })
        .build()
        .unwrap();
    let response = fetcher.execute(server.url("/")).unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text(), "secure");
}

#[test]
fn credentials_are_not_sent_to_another_host_after_a_redirect() {
    let first = TestServer::start();
    let other = TestServer::start();
    let fetcher = Fetcher::builder()
        .auth_generator(|session| {
            let mut headers = parfetch::header::HeaderMap::new();
            headers.insert("authorization", "Bearer session-secret".parse().unwrap());
            headers.insert("cookie", "sid=session-cookie".parse().unwrap());
            session.default_headers(headers)
        })
        .build()
        .unwrap();

    let echo_of = |request: Request| -> Value {
        let response = fetcher.execute(request).unwrap();
        assert_eq!(response.status(), 200);
        response.json().unwrap()
    };

    // Same host: the credentials follow.
    let same = echo_of(Request::get(first.url("/redirect-to?to=/echo")));
    assert_eq!(same["headers"]["authorization"], "Bearer session-secret");

    // Another host (another port): they do not, whether set by the session or the request.
    let cross = first.url(&format!("/redirect-to?to={}", other.url("/echo")));
    let echoed = echo_of(Request::get(&cross));
    assert_eq!(echoed["path"], "/echo");
    assert!(echoed["headers"].get("authorization").is_none(), "{echoed}");
    assert!(echoed["headers"].get("cookie").is_none(), "{echoed}");
    let echoed = echo_of(Request::get(&cross).bearer_auth("request-secret"));
    assert!(echoed["headers"].get("authorization").is_none(), "{echoed}");
    assert_eq!(other.stats().requests(), 2);
}

#[test]
fn an_allow_list_refuses_other_hosts_before_sending_and_on_redirect() {
    let allowed = TestServer::start();
    let fetcher = Fetcher::builder()
        .allowed_hosts(["127.0.0.1"])
        .build()
        .unwrap();

    let ok = fetcher.execute(allowed.url("/fine")).unwrap();
    assert_eq!(ok.status(), 200);

    let refused = fetcher
        .execute(allowed.url("/fine").replace("127.0.0.1", "localhost"))
        .unwrap_err();
    assert!(
        matches!(refused.error(), FetchError::HostNotAllowed { host, .. } if host == "localhost"),
        "{refused}"
    );
    assert!(refused.error().is_invalid_request());
    assert_eq!(refused.attempts(), 0);

    let elsewhere = allowed.url("/echo").replace("127.0.0.1", "localhost");
    let redirect = fetcher
        .execute(allowed.url(&format!("/redirect-to?to={elsewhere}")))
        .unwrap_err();
    assert!(
        matches!(redirect.error(), FetchError::Redirect { reason, .. } if reason.contains("allow-list")),
        "{redirect}"
    );
    assert_eq!(
        allowed.stats().requests(),
        2,
        "the refused ones were never sent"
    );
}

#[test]
fn a_connection_that_does_not_open_fails_at_the_connect_timeout() {
    // A listener that never accepts: once its queue is full the kernel drops new connection
    // attempts, so connecting hangs.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut filler = Vec::new();
    for _ in 0..300 {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(50)) {
            Ok(stream) => filler.push(stream),
            Err(_) => break,
        }
    }
    let fetcher = Fetcher::builder()
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let started = Instant::now();
    let exception = fetcher.execute(format!("http://{addr}/")).unwrap_err();
    assert!(exception.error().is_connect(), "{}", exception.error());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    drop(filler);
}

/// Entries are normalised as URLs' hosts are: a trailing dot, a Unicode name and its punycode
/// form, IPv4 forms and IPv4-mapped IPv6 addresses all match their entry; an entry that is no
/// host is refused when the fetcher is built.
#[test]
fn allow_list_entries_match_the_forms_urls_take() {
    let allows = |entries: &[&str], url: &str| {
        let fetcher = Fetcher::builder().allowed_hosts(entries).build().unwrap();
        // An allowed host is checked and then sent to a port where nothing listens.
        !matches!(
            fetcher.execute(url).unwrap_err().error(),
            FetchError::HostNotAllowed { .. }
        )
    };
    let closed = support::refused_url();
    let port = closed
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .unwrap()
        .to_owned();
    let at = |host: &str| format!("http://{host}:{port}/");

    assert!(allows(&["localhost."], &at("localhost.")));
    assert!(allows(&["localhost."], &at("localhost")));
    assert!(allows(&["localhost"], &at("localhost.")));
    assert!(allows(&["LocalHost"], &at("LOCALHOST")));
    assert!(allows(&["bücher.test"], &at("xn--bcher-kva.test")));
    assert!(allows(&["xn--bcher-kva.test"], &at("bücher.test")));
    assert!(allows(&["127.0.0.1"], &at("[::ffff:127.0.0.1]")));
    assert!(allows(&["[::ffff:127.0.0.1]"], &at("127.0.0.1")));
    assert!(allows(&["0x7f.1"], &at("127.0.0.1")));
    assert!(allows(&["::1"], &at("[::1]")));
    assert!(allows(&["[::1]"], &at("[0:0:0:0:0:0:0:1]")));
    assert!(!allows(&["127.0.0.1"], &at("127.0.0.2")));
    assert!(!allows(&["example.test"], &at("sub.example.test")));

    for entry in [
        "",
        "http://example.test",
        "bad host",
        "example.test:80",
        "[::1",
    ] {
        let error = Fetcher::builder()
            .allowed_hosts([entry])
            .build()
            .unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("allowed_hosts must be host names"),
            "{entry:?}: {error}"
        );
    }
}

/// Credentials never show: not in `Debug` of a request, a response or an exception, not in an
/// error's message, not in a JSON record. What is sent is unchanged.
#[test]
fn credentials_are_redacted_wherever_they_would_show() {
    let server = TestServer::start();
    let secrets = ["pa55word", "s3cr3t-token", "k3y-value", "c00kie", "b3arer"];
    let with_credentials = |url: String| {
        Request::get(url)
            .header("Authorization", "Bearer s3cr3t-token")
            .header("X-Api-Key", "k3y-value")
            .header("Cookie", "session=c00kie")
            .header("X-Batch", "7")
    };
    let base = server.base().replace("http://", "http://bob:pa55word@");
    let fetcher = Fetcher::new();

    let response = fetcher
        .execute(with_credentials(format!("{base}/echo")))
        .unwrap();
    // Sent as given.
    let echoed: serde_json::Value = response.json().unwrap();
    assert_eq!(echoed["headers"]["x-api-key"], "k3y-value");
    assert!(echoed["headers"]["authorization"].as_str().is_some());

    let refused = support::refused_url().replace("http://", "http://bob:pa55word@");
    let exception = fetcher
        .execute(with_credentials(refused).bearer_auth("b3arer"))
        .unwrap_err();

    let mut shown = vec![
        format!("{:?}", response.request()),
        format!("{response:?}"),
        format!("{exception:?}"),
        format!("{exception}"),
        format!("{:#}", exception.error()),
        exception.error().url().to_owned(),
        serde_json::to_string(&exception).unwrap(),
        serde_json::to_string(response.request()).unwrap(),
    ];
    let mut chain: Option<&dyn std::error::Error> = Some(exception.error());
    while let Some(error) = chain {
        shown.push(format!("{error} / {error:?}"));
        chain = error.source();
    }
    for text in &shown {
        for secret in secrets {
            assert!(!text.contains(secret), "{secret:?} shows in: {text}");
        }
    }
    assert!(shown[4].contains("bob:***@"), "{}", shown[4]);
    assert!(shown[7].contains("<redacted>"), "{}", shown[7]);
    assert!(shown[7].contains("\"x-batch\":\"7\""), "{}", shown[7]);
}

/// A stand-in proxy: answers every request itself and keeps the request lines it saw.
fn proxy_server() -> (
    support::RawServer,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let recorded = std::sync::Arc::clone(&seen);
    let server = support::RawServer::start(move |mut stream| {
        let head = support::read_head(&mut stream);
        let line = String::from_utf8_lossy(&head)
            .lines()
            .next()
            .unwrap_or("")
            .to_owned();
        recorded.lock().unwrap().push(line);
        support::write_all(
            &mut stream,
            b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\nconnection: close\r\n\r\nvia proxy",
        );
    });
    (server, seen)
}

#[test]
fn a_proxy_set_on_the_builder_carries_every_request_and_shows() {
    let target = TestServer::start();
    let (proxy, seen) = proxy_server();
    let proxy_url = proxy.url("").replace("http://", "http://user:pa55@");
    let fetcher = Fetcher::builder().proxy(&proxy_url).build().unwrap();

    let response = fetcher.execute(target.url("/echo")).unwrap();

    assert_eq!(response.text(), "via proxy");
    assert_eq!(target.stats().requests(), 0);
    assert_eq!(
        seen.lock().unwrap()[0],
        format!("GET {} HTTP/1.1", target.url("/echo"))
    );
    let shown = fetcher.proxies();
    assert_eq!(shown.len(), 1);
    assert!(
        shown[0].contains("user:***@") && !shown[0].contains("pa55"),
        "{shown:?}"
    );

    let error = Fetcher::builder().proxy("not a url").build().unwrap_err();
    assert_eq!(
        error.to_string(),
        "proxy must be an http:// or https:// URL, not \"not a url\""
    );
}
