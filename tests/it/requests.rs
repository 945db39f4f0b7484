//! `Request` options reach the server as set; `ThreadResponse` gives them back.

use crate::support;

use std::time::Duration;

use parfetch::prelude::*;
use parfetch::{Fetcher, Method, Request};
use rayon::prelude::*;
use serde_json::Value;
use support::TestServer;

fn echo(request: Request) -> Value {
    let response = Fetcher::new().execute(request).expect("response");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-length"],
        response.bytes().len().to_string()
    );
    response.json().expect("echo is JSON")
}

#[test]
fn method_headers_and_query_are_sent() {
    let server = TestServer::start();
    let request = Request::new(Method::PATCH, server.url("/echo?fixed=1"))
        .header("x-one", "1")
        .header("x-many", "a")
        .header("x-many", "b")
        .query([("q", "a b&c"), ("page", "2")]);

    let echoed = echo(request);

    assert_eq!(echoed["method"], "PATCH");
    assert_eq!(echoed["query"], "fixed=1&q=a+b%26c&page=2");
    assert_eq!(echoed["headers"]["x-one"], "1");
    assert_eq!(echoed["headers"]["x-many"], "a, b");
}

#[test]
fn bodies_are_sent_with_their_content_type() {
    let server = TestServer::start();

    let text = echo(Request::post(server.url("/echo")).text("héllo"));
    assert_eq!(text["body"], "héllo");
    assert_eq!(text["headers"]["content-type"], "text/plain; charset=utf-8");

    let form = echo(Request::put(server.url("/echo")).form([("a", "1"), ("b", "x y")]));
    assert_eq!(form["method"], "PUT");
    assert_eq!(form["body"], "a=1&b=x+y");
    assert_eq!(
        form["headers"]["content-type"],
        "application/x-www-form-urlencoded"
    );

    let json = echo(Request::post(server.url("/echo")).json(&serde_json::json!({"id": 7})));
    assert_eq!(json["body"], r#"{"id":7}"#);
    assert_eq!(json["headers"]["content-type"], "application/json");

    let raw = echo(
        Request::post(server.url("/echo"))
            .header("content-type", "application/x-ndjson")
            .json(&[1, 2]),
    );
    assert_eq!(
        raw["headers"]["content-type"], "application/x-ndjson",
        "an explicit type wins"
    );
    assert_eq!(raw["body"], "[1,2]");
}

#[test]
fn credentials_are_sent() {
    let server = TestServer::start();
    let basic = echo(Request::get(server.url("/echo")).basic_auth("ada", Some("lovelace")));
    assert_eq!(basic["headers"]["authorization"], "Basic YWRhOmxvdmVsYWNl");
    let bearer = echo(Request::get(server.url("/echo")).bearer_auth("t0k3n"));
    assert_eq!(bearer["headers"]["authorization"], "Bearer t0k3n");
}

#[test]
fn a_template_keeps_its_settings_for_every_url() {
    let server = TestServer::start();
    let template = Request::post("http://template.invalid/")
        .header("x-batch", "42")
        .query([("run", "7")])
        .text("payload");
    let requests: Vec<Request> = (0..10)
        .map(|i| template.with_url(server.url(&format!("/echo?i={i}"))))
        .collect();

    let (responses, exceptions) = requests.par_iter().fetch_all();

    assert!(exceptions.is_empty());
    for (i, response) in responses.iter().enumerate() {
        let echoed: Value = response.json().unwrap();
        assert_eq!(echoed["method"], "POST");
        assert_eq!(echoed["query"], format!("i={i}&run=7"));
        assert_eq!(echoed["headers"]["x-batch"], "42");
        assert_eq!(echoed["body"], "payload");
    }
    assert_eq!(
        template.url(),
        "http://template.invalid/",
        "the template is unchanged"
    );
}

#[test]
fn response_gives_back_its_request_status_headers_and_timing() {
    let server = TestServer::start();
    let request = Request::get(server.url("/delay/30")).header("x-id", "9");
    let response = Fetcher::new().execute(&request).unwrap();
    assert_eq!(response.request().headers()["x-id"], "9");
    assert_eq!(response.request().url(), request.url());
    assert_eq!(response.status(), parfetch::StatusCode::OK);
    assert_eq!(response.text(), "delayed");
    assert!(response.elapsed() >= Duration::from_millis(30));
    let (back, body) = response.into_parts();
    assert_eq!(back.url(), request.url());
    assert_eq!(&body[..], b"delayed");
}

#[test]
fn head_requests_have_no_body() {
    let server = TestServer::start();
    let response = Fetcher::new()
        .execute(Request::head(server.url("/bytes/500")))
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.bytes().is_empty());
    assert_eq!(response.headers()["content-length"], "500");
}

#[test]
fn invalid_utf8_is_replaced_in_text() {
    let server = support::RawServer::start(|mut stream| {
        support::read_head(&mut stream);
        support::write_all(
            &mut stream,
            b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\na\xffb",
        );
    });
    let response = Fetcher::new().execute(server.url("/")).unwrap();
    assert_eq!(response.text(), "a\u{fffd}b");
    assert_eq!(&response.bytes()[..], b"a\xffb");
    assert!(response.json::<Value>().is_err());
}

#[test]
fn repeated_and_custom_response_headers_come_back_in_order() {
    let server = support::RawServer::start(|mut stream| {
        support::read_head(&mut stream);
        support::write_all(
            &mut stream,
            b"HTTP/1.1 200 OK\r\nX-Many: first\r\nContent-Length: 2\r\nX-Many: second\r\n\
              X-Custom-Name: \xe2\x9c\x93 kept\r\nX-Many: third\r\nConnection: close\r\n\r\nok",
        );
    });
    let response = Fetcher::new().execute(server.url("/")).expect("response");
    let many: Vec<&[u8]> = response
        .headers()
        .get_all("x-many")
        .iter()
        .map(|value| value.as_bytes())
        .collect();
    assert_eq!(many, [&b"first"[..], b"second", b"third"]);
    assert_eq!(
        response.headers()["x-custom-name"].as_bytes(),
        "\u{2713} kept".as_bytes()
    );
    assert_eq!(response.headers()["content-length"], "2");
    assert_eq!(response.text(), "ok");
}

#[test]
fn a_request_gives_back_its_url_as_written_whatever_the_parser_makes_of_it() {
    let server = TestServer::start();
    let plain = server.url("/bytes/3");
    let shouting = plain.replace("http://", "HTTP://");
    let inputs = [plain.clone(), shouting.clone(), "not a url".to_owned()];
    let (responses, exceptions) = inputs.par_iter().fetch_all();

    let urls: Vec<&str> = responses.iter().map(|r| r.request().url()).collect();
    assert_eq!(urls, [plain.as_str(), shouting.as_str()]);
    // The request was sent to the parsed URL either way.
    assert!(responses.iter().all(|r| r.url().as_str() == plain));
    assert_eq!(exceptions.len(), 1);
    assert_eq!(exceptions[0].request().url(), "not a url");
    assert_eq!(exceptions[0].error().url(), "not a url");
    assert_eq!(
        Request::from(parfetch::Url::parse(&plain).unwrap()).url(),
        plain.as_str()
    );
}

#[test]
fn a_bearer_token_that_cannot_be_a_header_is_an_invalid_header_never_retried() {
    let server = TestServer::start();
    let fetcher = parfetch::Fetcher::builder()
        .retry(parfetch::RetryPolicy::new(4))
        .build()
        .unwrap();
    for token in ["a\r\nInjected: yes", "nul\0byte", "line\nfeed"] {
        let exception = fetcher
            .execute(parfetch::Request::get(server.url("/echo")).bearer_auth(token))
            .unwrap_err();
        assert!(
            matches!(exception.error(), parfetch::FetchError::InvalidHeader { name, .. } if name == "authorization"),
            "{exception}"
        );
        assert_eq!(exception.attempts(), 0);
    }
    assert_eq!(server.stats().requests(), 0, "nothing was sent");
}
