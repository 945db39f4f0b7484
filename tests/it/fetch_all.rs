//! The extension trait end to end: item types, order, accounting, statuses, the lazy adaptor.

use crate::support;

use std::collections::HashSet;

use parfetch::prelude::*;
use parfetch::{FetchError, Fetcher, Request, Url};
use rayon::prelude::*;
use support::{TestServer, refused_url};

fn paths(server: &TestServer, n: usize) -> Vec<String> {
    (0..n).map(|i| server.url(&format!("/item/{i}"))).collect()
}

#[test]
fn fetch_all_returns_every_response_in_input_order() {
    let server = TestServer::start();
    let urls = paths(&server, 500);
    let fetcher = Fetcher::builder().num_processes(8).build().unwrap();

    let (responses, exceptions) = urls.par_iter().fetch_all_with(&fetcher);

    assert!(exceptions.is_empty(), "{exceptions:?}");
    assert_eq!(responses.len(), urls.len());
    for (url, response) in urls.iter().zip(&responses) {
        assert_eq!(response.request().url(), url);
        assert_eq!(response.status(), 200);
        let path = Url::parse(url).unwrap().path().to_owned();
        assert_eq!(response.text(), format!("ok {path}"));
        assert_eq!(response.url().as_str(), url);
    }
    assert_eq!(server.stats().requests(), urls.len());
}

#[test]
fn every_item_type_converts_into_a_request() {
    let server = TestServer::start();
    let owned: Vec<String> = paths(&server, 3);
    let borrowed: Vec<&str> = owned.iter().map(String::as_str).collect();
    let parsed: Vec<Url> = owned.iter().map(|u| Url::parse(u).unwrap()).collect();
    let requests: Vec<Request> = owned.iter().map(Request::get).collect();

    let count = |(responses, exceptions): (Vec<_>, Vec<_>)| {
        assert!(exceptions.is_empty());
        responses.len()
    };
    assert_eq!(count(borrowed.par_iter().fetch_all()), 3, "&&str");
    assert_eq!(
        count(borrowed.clone().into_par_iter().fetch_all()),
        3,
        "&str"
    );
    assert_eq!(count(owned.par_iter().fetch_all()), 3, "&String");
    assert_eq!(
        count(owned.clone().into_par_iter().fetch_all()),
        3,
        "String"
    );
    assert_eq!(count(parsed.par_iter().fetch_all()), 3, "&Url");
    assert_eq!(count(parsed.into_par_iter().fetch_all()), 3, "Url");
    assert_eq!(count(requests.par_iter().fetch_all()), 3, "&Request");
    assert_eq!(count(requests.into_par_iter().fetch_all()), 3, "Request");
}

#[test]
fn http_error_statuses_are_responses_not_exceptions() {
    let server = TestServer::start();
    let urls: Vec<String> = [200, 300, 404, 500, 503]
        .iter()
        .map(|code| server.url(&format!("/status/{code}")))
        .collect();

    let (responses, exceptions) = urls.par_iter().fetch_all();

    assert!(exceptions.is_empty(), "{exceptions:?}");
    let statuses: Vec<u16> = responses.iter().map(|r| r.status().as_u16()).collect();
    // 300 (Multiple Choices) is not followed: it is the response.
    assert_eq!(statuses, [200, 300, 404, 500, 503]);
    assert_eq!(responses[2].text(), "status 404");
}

#[test]
fn redirects_are_followed_and_the_final_url_is_reported() {
    let server = TestServer::start();
    let response = Fetcher::new()
        .execute(server.url("/redirect"))
        .expect("response");
    assert_eq!(response.status(), 200);
    assert_eq!(response.url().path(), "/echo");
    assert_eq!(response.request().url(), server.url("/redirect"));
}

#[test]
fn mixed_batch_accounts_for_every_item_exactly_once() {
    let server = TestServer::start();
    let refused = refused_url();
    let mut inputs = Vec::new();
    for i in 0..300 {
        inputs.push(match i % 5 {
            0 => server.url(&format!("/item/{i}")),
            1 => format!("not a url {i}"),
            2 => format!("{refused}{i}"),
            3 => format!("ftp://127.0.0.1/{i}"),
            _ => server.url(&format!("/status/{}?item={i}", 400 + i % 100)),
        });
    }
    let fetcher = Fetcher::builder().num_processes(6).build().unwrap();

    let (responses, exceptions) = inputs.par_iter().fetch_all_with(&fetcher);

    assert_eq!(responses.len(), 120);
    assert_eq!(exceptions.len(), 180);
    let mut seen = HashSet::new();
    for url in responses
        .iter()
        .map(|r| r.request().url())
        .chain(exceptions.iter().map(|e| e.request().url()))
    {
        assert!(seen.insert(url.to_owned()), "{url} came back twice");
    }
    assert_eq!(seen.len(), inputs.len());
    for exception in &exceptions {
        let url = exception.request().url();
        let error = exception.error();
        assert_eq!(error.url(), url);
        match error {
            FetchError::InvalidUrl { .. } => assert!(url.starts_with("not a url")),
            FetchError::Connect { .. } => assert!(url.starts_with(&refused)),
            FetchError::UnsupportedScheme { scheme, .. } => assert_eq!(scheme, "ftp"),
            other => panic!("unexpected error for {url}: {other}"),
        }
    }
    // Both collections keep input order.
    let positions: Vec<usize> = exceptions
        .iter()
        .map(|e| inputs.iter().position(|u| u == e.request().url()).unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]));
    // Only the good ones reached the server.
    assert_eq!(server.stats().requests(), 120);
}

#[test]
fn empty_input_gives_two_empty_collections() {
    let fetcher = Fetcher::builder().num_processes(4).build().unwrap();
    let urls: Vec<String> = Vec::new();
    let (responses, exceptions) = urls.par_iter().fetch_all_with(&fetcher);
    assert!(responses.is_empty() && exceptions.is_empty());
    let (responses, exceptions) = urls.par_iter().fetch_all();
    assert!(responses.is_empty() && exceptions.is_empty());
    assert_eq!(fetcher.session_count(), 0, "no request, no session");
}

#[test]
fn fetch_is_lazy_indexed_and_composes_with_rayon_adaptors() {
    let server = TestServer::start();
    let urls: Vec<String> = (0..40)
        .map(|i| server.url(&format!("/bytes/{i}")))
        .collect();
    let fetcher = Fetcher::builder().num_processes(4).build().unwrap();

    let fetched = urls.par_iter().fetch_with(&fetcher);
    assert_eq!(fetched.len(), 40, "still indexed");
    assert_eq!(
        server.stats().requests(),
        0,
        "nothing sent before consuming"
    );

    let sizes: Vec<(usize, usize)> = fetched
        .map(|outcome| outcome.expect("response").bytes().len())
        .enumerate()
        .collect();
    assert_eq!(sizes, (0..40).map(|i| (i, i)).collect::<Vec<_>>());

    let total: usize = urls
        .par_iter()
        .fetch_with(&fetcher)
        .zip(0..40usize)
        .map(|(outcome, i)| {
            assert_eq!(outcome.as_ref().unwrap().bytes().len(), i);
            i
        })
        .sum();
    assert_eq!(total, (0..40).sum::<usize>());
    assert_eq!(server.stats().requests(), 80);
}

#[test]
fn unindexed_inputs_are_fetched_too() {
    let server = TestServer::start();
    let urls = paths(&server, 50);
    let fetcher = Fetcher::builder().num_processes(4).build().unwrap();

    let (responses, exceptions) = urls
        .par_iter()
        .filter(|url| !url.ends_with("/7"))
        .fetch_all_with(&fetcher);
    assert_eq!(responses.len(), 49);
    assert!(exceptions.is_empty());

    let (responses, exceptions) = urls.iter().par_bridge().fetch_all_with(&fetcher);
    assert_eq!(responses.len(), 50);
    assert!(exceptions.is_empty());
}

/// Alone in its process: other tests' requests through the global fetcher would share its
/// workers and slots.
#[test]
fn the_global_fetcher_reuses_its_sessions_across_calls() {
    if support::run_alone(
        module_path!(),
        "the_global_fetcher_reuses_its_sessions_across_calls",
    ) {
        return;
    }
    let server = TestServer::start();
    let urls = paths(&server, 200);

    let (first, _) = urls.par_iter().fetch_all();
    let after_first = server.stats().connections();
    let (second, _) = urls.par_iter().fetch_all();
    let opened_by_second = server.stats().connections() - after_first;

    assert_eq!((first.len(), second.len()), (200, 200));
    assert!(
        opened_by_second < 50,
        "the second call opened {opened_by_second} connections for 200 requests: \
         it did not reuse the first call's sessions"
    );
}

#[test]
fn exceptions_display_the_url_and_the_reason() {
    let refused = refused_url();
    let exception = Fetcher::new().execute(refused.as_str()).unwrap_err();
    let message = exception.to_string();
    assert!(message.contains(&refused), "{message}");
    assert!(message.to_lowercase().contains("refused"), "{message}");
    assert!(exception.error().is_connect());

    let exception = Fetcher::new().execute("http://").unwrap_err();
    assert!(matches!(exception.error(), FetchError::InvalidUrl { .. }));
    assert!(exception.error().is_invalid_request());
    assert!(exception.to_string().contains("\"http://\""), "{exception}");
}
