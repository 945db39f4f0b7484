//! Request specs from JSON, records to JSON, and the progress hook (features serde, progress).
#![cfg(all(feature = "serde", feature = "progress"))]

use crate::support;

use std::sync::{Arc, Mutex};

use parfetch::prelude::*;
use parfetch::{Fetcher, Request};
use rayon::prelude::*;
use serde_json::{Value, json};
use support::{RawServer, TestServer, read_head, refused_url, write_all};

fn echo_of(request: Request) -> Value {
    let response = Fetcher::new().execute(request).unwrap();
    assert_eq!(response.status(), 200);
    response.json().unwrap()
}

#[test]
fn a_spec_in_the_original_dict_shape_is_sent_as_written() {
    let server = TestServer::start();
    let spec = json!({
        "method": "patch",
        "url": server.url("/echo"),
        "headers": {"X-One": "1"},
        "params": {"q": "a b", "page": 2, "all": true},
        "data": {"name": "ada", "n": 1.5},
        "timeout": 2.5,
        "auth": ["ada", "secret"],
    });
    let request = Request::from_spec_json(&spec.to_string()).unwrap();
    assert_eq!(
        request.timeout_override(),
        Some(std::time::Duration::from_millis(2500))
    );
    let echo = echo_of(request);
    assert_eq!(echo["method"], "PATCH");
    assert_eq!(echo["query"], "all=true&page=2&q=a+b");
    assert_eq!(echo["headers"]["x-one"], "1");
    assert_eq!(echo["headers"]["authorization"], "Basic YWRhOnNlY3JldA==");
    assert_eq!(
        echo["headers"]["content-type"],
        "application/x-www-form-urlencoded"
    );
    assert_eq!(echo["body"], "n=1.5&name=ada");

    let raw = Request::from_spec_json(
        &json!({"method": "POST", "url": server.url("/echo"), "data": "raw text"}).to_string(),
    )
    .unwrap();
    assert_eq!(echo_of(raw)["body"], "raw text");
    let minimal =
        Request::from_spec_json(&json!({"url": server.url("/echo")}).to_string()).unwrap();
    assert_eq!(echo_of(minimal)["method"], "GET");
}

#[test]
fn bad_specs_are_errors_that_name_the_key() {
    let cases = [
        (
            r#"{"url": "http://x/", "verify": false}"#,
            "verify",
            "unknown field `verify`",
        ),
        (r#"{"url": 5}"#, "url", "invalid type: integer `5`"),
        (
            r#"{"url": "http://x/", "headers": {"A": 1}}"#,
            "headers.A",
            "invalid type",
        ),
        (
            r#"{"url": "http://x/", "params": {"a": [1]}}"#,
            "params.a",
            "a string, number or boolean",
        ),
        (
            r#"{"url": "http://x/", "timeout": -1}"#,
            ".",
            "positive number of seconds",
        ),
        (
            r#"{"url": "http://x/", "method": "GE T"}"#,
            ".",
            "invalid HTTP method",
        ),
        (
            r#"{"url": "http://x/", "json": 1, "data": "x"}"#,
            ".",
            "either `json` or `data`",
        ),
        (r#"{"method": "GET"}"#, ".", "missing field `url`"),
        (
            r#"{"url": "http://x/"} trailing"#,
            ".",
            "trailing characters",
        ),
        ("not json", ".", "expected"),
    ];
    for (spec, path, words) in cases {
        let error = Request::from_spec_json(spec).unwrap_err();
        assert_eq!(error.path, path, "{spec}: {error}");
        assert!(error.to_string().contains(words), "{spec}: {error}");
    }
}

#[test]
fn outcomes_serialize_to_flat_records() {
    let server = TestServer::start();
    let binary = RawServer::start(|mut stream| {
        read_head(&mut stream);
        write_all(
            &mut stream,
            b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\n\xff\x00\x01",
        );
    });
    let fetcher = Fetcher::new();

    let request = Request::get(server.url("/bytes/3"))
        .header("x-a", "1")
        .query([("k", "v")]);
    let record = serde_json::to_value(fetcher.execute(request).unwrap()).unwrap();
    assert_eq!(record["ok"], true);
    assert_eq!(record["status"], 200);
    assert_eq!(record["body"], "xxx");
    assert_eq!(record["attempts"], 1);
    assert!(record["elapsed_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(record["headers"]["content-length"], "3");
    assert_eq!(
        record["request"],
        json!({"method": "GET", "url": server.url("/bytes/3"), "headers": {"x-a": "1"}, "params": {"k": "v"}})
    );
    assert_eq!(record["url"], server.url("/bytes/3?k=v"));

    let record = serde_json::to_value(fetcher.execute(binary.url("/")).unwrap()).unwrap();
    assert_eq!(record["body_base64"], "/wAB");
    assert!(record.get("body").is_none());

    let refused = refused_url();
    let record = serde_json::to_value(fetcher.execute(refused.as_str()).unwrap_err()).unwrap();
    assert_eq!(record["ok"], false);
    assert_eq!(record["error"]["kind"], "connect");
    assert!(
        record["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&refused)
    );
    assert_eq!(record["request"]["url"], refused);
}

#[test]
fn the_progress_hook_sees_every_outcome_once_with_running_counts() {
    let server = TestServer::start();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorder = Arc::clone(&seen);
    let fetcher = Fetcher::builder()
        .num_processes(4)
        .concurrency(16)
        .on_progress(move |progress, outcome| {
            recorder
                .lock()
                .unwrap()
                .push((progress.done, progress.failed, outcome.is_ok()));
        })
        .build()
        .unwrap();
    let mut urls: Vec<String> = (0..200).map(|i| server.url(&format!("/{i}"))).collect();
    urls.extend((0..20).map(|i| format!("bad {i}")));

    let (responses, exceptions) = urls.par_iter().fetch_all_with(&fetcher);

    assert_eq!((responses.len(), exceptions.len()), (200, 20));
    let mut seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 220);
    seen.sort_unstable();
    let dones: Vec<u64> = seen.iter().map(|s| s.0).collect();
    assert_eq!(dones, (1..=220).collect::<Vec<_>>(), "each count once");
    assert_eq!(seen.iter().filter(|s| !s.2).count(), 20);
    assert_eq!(seen.iter().map(|s| s.1).max(), Some(20));
    let progress = fetcher.progress();
    assert_eq!((progress.done, progress.failed), (220, 20));
}

#[test]
fn a_progress_bar_counts_every_request() {
    let server = TestServer::start();
    let bar = indicatif::ProgressBar::hidden();
    let fetcher = Fetcher::builder()
        .progress_bar(bar.clone())
        .build()
        .unwrap();
    let mut urls: Vec<String> = (0..30).map(|i| server.url(&format!("/{i}"))).collect();
    urls.push("bad".into());
    let _ = urls.par_iter().fetch_all_with(&fetcher);
    assert_eq!(bar.position(), 31);
    assert_eq!(bar.message(), "1 failed");
}

/// An id is never sent, comes back on both kinds of outcome, and leads their records.
#[test]
fn an_id_comes_back_on_responses_and_exceptions_and_in_their_records() {
    let server = TestServer::start();
    let requests = vec![
        Request::from_spec_json(
            &json!({"url": server.url("/echo"), "id": {"row": 1, "tags": ["a"]}}).to_string(),
        )
        .unwrap(),
        Request::get(refused_url()).id("row-2"),
        Request::from_spec_json(&json!({"url": server.url("/echo"), "id": null}).to_string())
            .unwrap(),
        Request::get(server.url("/echo")),
    ];
    let (responses, exceptions) = requests.par_iter().fetch_all();
    assert_eq!(
        responses[0].request().id_value(),
        Some(&json!({"row": 1, "tags": ["a"]}))
    );
    assert!(!responses[0].text().contains("row"), "never sent");
    assert_eq!(exceptions[0].request().id_value(), Some(&json!("row-2")));
    assert_eq!(
        responses[1].request().id_value(),
        Some(&Value::Null),
        "null is an id too"
    );
    assert_eq!(responses[2].request().id_value(), None);

    let record = serde_json::to_string(&responses[0]).unwrap();
    assert!(
        record.starts_with(r#"{"id":{"row":1,"tags":["a"]},"request":"#),
        "{record}"
    );
    let record: Value = serde_json::to_value(&exceptions[0]).unwrap();
    assert_eq!(record["id"], "row-2");
    let record: Value = serde_json::to_value(&responses[2]).unwrap();
    assert!(record.get("id").is_none(), "{record}");
}
