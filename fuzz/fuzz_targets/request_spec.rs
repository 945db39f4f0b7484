//! Request specs from outside data: a JSON spec (`Request::from_spec_json`), or arbitrary method,
//! URL, header and query strings, through the crate's one code path. The fetcher allows no host, so nothing is ever sent: every request
//! must end as a typed exception naming its URL, and nothing may panic.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use parfetch::{Fetcher, Method, Request};

fn fetcher() -> &'static Fetcher {
    static FETCHER: OnceLock<Fetcher> = OnceLock::new();
    FETCHER.get_or_init(|| {
        Fetcher::builder()
            .allowed_hosts(Vec::<&str>::new())
            .build()
            .expect("fetcher")
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // A spec either reads or is a typed error naming a key; one that reads goes through the
    // same checks as any request.
    if let Ok(request) = Request::from_spec_json(&text) {
        let exception = fetcher().execute(&request).expect_err("no host is allowed");
        assert_shown_as(exception.error().url(), request.url());
        assert!(exception.error().is_invalid_request(), "{}", exception.error());
        return;
    }
    let mut parts = text.split('\u{1f}');
    let url = parts.next().unwrap_or_default();
    let method = Method::from_bytes(parts.next().unwrap_or("GET").as_bytes()).unwrap_or(Method::GET);
    let mut request = Request::new(method, url);
    while let (Some(name), Some(value)) = (parts.next(), parts.next()) {
        request = request.header(name, value).query([(name, value)]);
    }

    let exception = fetcher().execute(&request).expect_err("no host is allowed");
    assert_eq!(exception.request().url(), url);
    assert_shown_as(exception.error().url(), url);
    assert_eq!(exception.attempts(), 0);
    assert!(
        exception.error().is_invalid_request(),
        "only rejections before sending: {}",
        exception.error()
    );
});

/// An error names its URL as given, but for a password in it, which shows as `***`.
fn assert_shown_as(shown: &str, given: &str) {
    if shown != given {
        assert!(shown.contains(":***@"), "{shown:?} for {given:?}");
        assert!(shown.len() <= given.len() + 3, "{shown:?} for {given:?}");
    }
}
