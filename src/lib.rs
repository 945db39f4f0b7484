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
//! # let base = parfetch::doc_support::serve(3);
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
//! # Where to start
//!
//! - [`FetchAll`] (the [`prelude`]): [`fetch_all`](FetchAll::fetch_all),
//!   [`fetch`](FetchAll::fetch) and their `_with(&fetcher)` forms, on any rayon parallel
//!   iterator of URLs (`&str`, `String`, [`Url`]) or [`Request`]s.
//! - [`Fetcher`], built by [`FetcherBuilder`]: the settings, the worker threads and one session
//!   per worker; [`Fetcher::execute`] for one request, [`Fetcher::for_each_completed`] for a
//!   plain iterator such as a file's lines. What "thread", "worker" and "process" mean here is
//!   said once, under [`num_processes`](FetcherBuilder::num_processes).
//! - [`ThreadResponse`] and [`ThreadException`] (with its [`FetchError`]): how each request
//!   ends, both carrying their request; [`RetryPolicy`] for what is sent again.
//! - [`Pool`] and [`map`]: the original's API, as thin layers over the same fetcher; the
//!   [`pool`] module holds the types that go with a pool.
//!
//! # The guide
//!
//! The README, shown on crates.io and shipped in the package, is the one guide: what you get
//! and the guarantees on order, memory and blocking, the Cargo features, the `parfetch`
//! command, data pipelines and scaling out, reliability, performance figures, and the
//! differences from `requests_toolbelt.threaded`. Its Rust examples are compiled as doctests of
//! this crate. These pages are the reference: the items say what they guarantee, and those
//! that need a Cargo feature say which on docs.rs.

#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "cli")]
#[doc(hidden)]
pub mod cli_input;
#[doc(hidden)]
pub mod doc_support;
mod engine;
mod error;
mod fetcher;
mod idle;
mod limits;
mod outcome;
mod par;
pub mod pool;
mod read_ahead;
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
