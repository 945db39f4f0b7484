//! Fetch many HTTP requests from [rayon] parallel iterators, one [reqwest] session per worker,
//! and get the responses and the failures back separately.
//!
//! parfetch is Python's `requests_toolbelt.threaded` brought to Rust: where the original runs a
//! queue of request dicts on a pool of threads with one `requests.Session` each, parfetch adds
//! [`fetch_all`](FetchAll::fetch_all) to rayon parallel iterators:
//!
//! ```
//! use parfetch::prelude::*;
//! use rayon::prelude::*;
//! # let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
//! # let base = format!("http://{}", listener.local_addr().unwrap());
//! # std::thread::spawn(move || for mut stream in listener.incoming().take(3).flatten() {
//! #     use std::io::{Read, Write};
//! #     let mut head = [0u8; 4096];
//! #     let _ = stream.read(&mut head);
//! #     let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
//! # });
//!
//! let urls = vec![
//!     format!("{base}/a"),
//!     format!("{base}/b"),
//!     format!("{base}/c"),
//!     "not a url".to_string(),
//! ];
//! let (responses, exceptions) = urls.par_iter().fetch_all();
//!
//! assert_eq!(responses.len(), 3);
//! for response in &responses {
//!     assert_eq!(response.status(), 200);
//!     assert_eq!(response.text(), "ok");
//! }
//! // Every input ends up exactly once, in one of the two.
//! assert_eq!(exceptions.len(), 1);
//! assert_eq!(exceptions[0].request().url(), "not a url");
//! println!("{}", exceptions[0]); // invalid URL "not a url": relative URL without a base
//! ```
//!
//! # How it works
//!
//! - Items become [`Request`]s: `&str`, `String`, [`url::Url`] and `Request` (and references to
//!   them) convert by themselves; build a `Request` for methods, headers, query, body, timeout or
//!   credentials. Building one never fails: whatever is wrong with it surfaces as that item's
//!   [`ThreadException`].
//! - A [`Fetcher`] holds the configuration and one session per worker thread, built lazily on the
//!   thread's first request by the three hooks of the original (`session`, `initializer`,
//!   `auth_generator`) and reused, keep-alive connections included, by every later request on
//!   that thread. Without an explicit fetcher, the process-wide [`Fetcher::global`] is used.
//! - [`Fetcher::execute`] sends one request and reads its body, capped at
//!   [`max_body_bytes`](FetcherBuilder::max_body_bytes), within the timeout. The trait, `Pool`,
//!   `map` and the command send every request the same way, through one internal function.
//! - The outcome is a [`ThreadResponse`] for any HTTP status, 4xx and 5xx included, or a
//!   [`ThreadException`] holding the [`FetchError`]. Both carry the request they came from.
//!
//! # The Python API
//!
//! [`Pool`] (with [`Pool::from_urls`], [`Pool::from_exceptions`], `join_all`, `responses`,
//! `exceptions`, `get_response`, `get_exception`) and [`map`] keep the original's names and
//! behaviour, without its lost jobs, as thin layers over the same [`Fetcher`]. The differences
//! are listed under [`Pool`].
//!
//! # Threads and requests in flight
//!
//! (What "thread", "worker" and "process" mean here is said once, in the section *Threads,
//! workers and processes* of [`num_processes`](FetcherBuilder::num_processes).)
//!
//! One knob sets how many requests are in flight:
//! [`concurrency`](FetcherBuilder::concurrency), across the whole fetcher, whatever the number of
//! threads ([`Fetcher::DEFAULT_CONCURRENCY`], 64, unless set). A fetcher sends from worker threads
//! of its own, one per core unless [`num_processes`](FetcherBuilder::num_processes) says
//! otherwise; each worker's session is an async reqwest client driven by a single-threaded
//! tokio runtime on the worker itself, and keeps many requests going at once. Set alone,
//! `num_processes(n)` also sets `concurrency(n)`, so a user of the original who asks for 64 gets
//! 64 requests in flight, as there.
//!
//! Requests stream, with no batches: the input is read as slots free up (an unindexed source
//! such as `par_bridge()` over a channel starts sending before it ends), a slow request holds
//! only its own slot, and outcomes are handed to the adaptors that follow as they complete.
//! Those adaptors run on the fetcher's workers. Where order is kept (an indexed input driven by
//! an indexed consumer, such as `collect` into a `Vec`), outcomes that complete ahead of an
//! earlier one wait in a reorder window of 256 per request in flight (at most 65,536) and
//! [`Fetcher::REORDER_WINDOW_BYTES`] of bodies, and the input stops while the window is full:
//! a slow request then holds the others back. On the straggler workload of the README (1 request
//! in 500 delayed by 1 s, 64 in flight) an ordered stream takes 2.1 s where an unordered one
//! takes 1.3 s; with a window of 8 per request in flight it took 33 s.
//! [`fetch_all`](FetchAll::fetch_all) keeps everything anyway and needs no window. Memory is
//! bounded by what is in flight (at most `2 × concurrency` responses, each at most
//! [`max_body_bytes`](FetcherBuilder::max_body_bytes)) plus that window, never by the length of
//! the input.
//!
//! ```no_run
//! use parfetch::prelude::*;
//! use rayon::prelude::*;
//!
//! let fetcher = parfetch::Fetcher::builder()
//!     .concurrency(256) // 256 requests in flight, on one thread per core
//!     .build()?;
//! let urls: Vec<String> = (0..10_000).map(|i| format!("http://127.0.0.1:8080/{i}")).collect();
//! let (responses, exceptions) = urls.par_iter().fetch_all_with(&fetcher);
//! # Ok::<(), parfetch::BuildError>(())
//! ```
//!
//! parfetch blocks the threads it runs on. Call it from plain threads or rayon, not from inside
//! an async runtime (there, use `spawn_blocking`); called from inside one, each request fails with
//! [`FetchError::Session`] instead of panicking.
//!
//! # Features
//!
//! - `json` (default): [`Request::json`] bodies and [`ThreadResponse::json`] decoding, with serde.
//! - `gzip` (default): asks for and decodes gzip-compressed responses;
//!   [`max_body_bytes`](FetcherBuilder::max_body_bytes) caps the decoded size.
//! - `serde`: [`Request::from_spec_json`] and `Deserialize` for request specs in the original's
//!   request-dict shape, `Serialize` for outcomes as JSON records.
//! - `progress`: [`FetcherBuilder::progress_bar`] drives an indicatif progress bar.
//! - `cli`: the `parfetch` command.
//! - `cookies`: reqwest's cookie store, switched on per session by a hook:
//!   `.initializer(|session| session.cookie_store(true))`.

#![cfg_attr(docsrs, feature(doc_cfg))]

mod engine;
mod error;
mod fetcher;
mod limits;
mod outcome;
mod par;
pub mod pool;
mod redact;
mod redirect;
mod request;
mod retry;
mod schedule;
mod session;
#[cfg(feature = "serde")]
mod spec;
mod tls;

pub use error::{BuildError, FetchError};
pub use fetcher::{Fetcher, FetcherBuilder, Progress};
pub use outcome::{FetchResult, ThreadException, ThreadResponse};
pub use par::{Fetch, FetchAll};
pub use pool::{Pool, map, map_with};
pub use redact::redact_text;
pub use request::Request;
/// The reqwest version parfetch is built on, for session hooks (`reqwest::Certificate`,
/// proxies...). A redirect policy set in a hook has no effect: parfetch follows redirects
/// itself (see [`FetcherBuilder::max_redirects`]).
pub use reqwest;
pub use reqwest::{ClientBuilder, Method, StatusCode, header};
pub use retry::RetryPolicy;
#[cfg(feature = "serde")]
pub use spec::SpecError;
pub use url::Url;

/// The README's examples, compiled as doctests so that they stay true (they use every feature).
#[cfg(all(doctest, feature = "serde"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

/// The extension trait, for `use parfetch::prelude::*;`.
pub mod prelude {
    pub use crate::FetchAll;
}
