//! The [`FetchAll`] extension trait and its lazy [`Fetch`] adaptor.

use rayon::iter::plumbing::{Consumer, Folder, ProducerCallback, UnindexedConsumer};
use rayon::iter::{Either, IndexedParallelIterator, IntoParallelIterator, ParallelIterator};

use crate::fetcher::InFlight;
use crate::{Fetcher, Request, ThreadException, ThreadResponse};

/// What one request becomes: a response (any HTTP status) or an exception.
pub type FetchResult = Result<ThreadResponse, ThreadException>;

/// Fetches the requests of a rayon parallel iterator.
///
/// Implemented for every [`ParallelIterator`] whose items convert into a [`Request`]: `&str`,
/// `String`, [`url::Url`], `Request` and references to them, so `par_iter()` and
/// `into_par_iter()` over the usual collections just work.
///
/// Each worker thread sends its requests through its own session, built on its first request
/// and kept by the [`Fetcher`]. Every input item ends up exactly once in the output.
///
/// ```
/// use parfetch::prelude::*;
/// use rayon::prelude::*;
/// # let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
/// # let base = format!("http://{}", listener.local_addr().unwrap());
/// # std::thread::spawn(move || for mut stream in listener.incoming().take(20).flatten() {
/// #     use std::io::{Read, Write};
/// #     let mut head = [0u8; 4096];
/// #     let _ = stream.read(&mut head);
/// #     let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
/// # });
///
/// let urls: Vec<String> = (0..20).map(|i| format!("{base}/item/{i}")).collect();
/// let (responses, exceptions) = urls.par_iter().fetch_all();
/// assert_eq!(responses.len(), 20);
/// assert!(exceptions.is_empty());
/// // Indexed inputs keep their order.
/// assert_eq!(responses[3].request().url(), urls[3]);
/// ```
pub trait FetchAll: ParallelIterator<Item: Into<Request>> {
    /// Fetches each item with the [global fetcher](Fetcher::global), lazily: a parallel iterator
    /// of [`FetchResult`]s, indexed when the input is, so that any rayon adaptor can follow.
    ///
    /// ```
    /// use parfetch::prelude::*;
    /// use rayon::prelude::*;
    /// # let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    /// # let base = format!("http://{}", listener.local_addr().unwrap());
    /// # std::thread::spawn(move || for mut stream in listener.incoming().take(2).flatten() {
    /// #     use std::io::{Read, Write};
    /// #     let mut head = [0u8; 4096];
    /// #     let _ = stream.read(&mut head);
    /// #     let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
    /// # });
    ///
    /// let urls = vec![format!("{base}/a"), format!("{base}/bb")];
    /// let sizes: Vec<usize> = urls
    ///     .par_iter()
    ///     .fetch()
    ///     .filter_map(Result::ok)
    ///     .map(|response| response.bytes().len())
    ///     .collect();
    /// assert_eq!(sizes.len(), 2);
    /// ```
    fn fetch(self) -> Fetch<Self> {
        self.fetch_with(Fetcher::global())
    }

    /// Like [`fetch`](Self::fetch), with `fetcher`'s sessions, settings and pool.
    ///
    /// With a dedicated pool ([`num_processes`](crate::FetcherBuilder::num_processes)), the
    /// requests and the adaptors chained after them run on that pool. Positional adaptors
    /// (`zip`, `enumerate`, ...) chained after `fetch_with` on an indexed input make the results
    /// be collected first, then handed on, when the fetcher has a dedicated pool or keeps
    /// several requests in flight per worker.
    fn fetch_with(self, fetcher: &Fetcher) -> Fetch<Self> {
        Fetch {
            base: self,
            fetcher: fetcher.clone(),
        }
    }

    /// Fetches every item with the [global fetcher](Fetcher::global) and splits the outcomes
    /// into responses and exceptions, both in input order when the input is indexed.
    fn fetch_all(self) -> (Vec<ThreadResponse>, Vec<ThreadException>) {
        self.fetch_all_with(Fetcher::global())
    }

    /// Like [`fetch_all`](Self::fetch_all), with `fetcher`'s sessions, settings and pool.
    fn fetch_all_with(self, fetcher: &Fetcher) -> (Vec<ThreadResponse>, Vec<ThreadException>) {
        self.fetch_with(fetcher)
            .partition_map(|outcome| match outcome {
                Ok(response) => Either::Left(response),
                Err(exception) => Either::Right(exception),
            })
    }
}

impl<I> FetchAll for I where I: ParallelIterator<Item: Into<Request>> {}

/// A parallel iterator that fetches each request of its input; made by [`FetchAll::fetch`]
/// and [`FetchAll::fetch_with`].
#[derive(Debug, Clone)]
#[must_use = "parallel iterators are lazy and do nothing unless consumed"]
pub struct Fetch<I> {
    base: I,
    fetcher: Fetcher,
}

impl<I> ParallelIterator for Fetch<I>
where
    I: ParallelIterator<Item: Into<Request>>,
{
    type Item = FetchResult;

    fn drive_unindexed<C>(self, consumer: C) -> C::Result
    where
        C: UnindexedConsumer<Self::Item>,
    {
        let Fetch { base, fetcher } = self;
        fetcher.install(|| base.drive_unindexed(FetchConsumer::new(consumer, &fetcher)))
    }

    fn opt_len(&self) -> Option<usize> {
        self.base.opt_len()
    }
}

impl<I> IndexedParallelIterator for Fetch<I>
where
    I: IndexedParallelIterator<Item: Into<Request>>,
{
    fn len(&self) -> usize {
        self.base.len()
    }

    fn drive<C>(self, consumer: C) -> C::Result
    where
        C: Consumer<Self::Item>,
    {
        let Fetch { base, fetcher } = self;
        fetcher.install(|| base.drive(FetchConsumer::new(consumer, &fetcher)))
    }

    fn with_producer<CB>(self, callback: CB) -> CB::Output
    where
        CB: ProducerCallback<Self::Item>,
    {
        let Fetch { base, fetcher } = self;
        if fetcher.is_outside_own_pool() || fetcher.in_flight_per_worker() > 1 {
            // A producer callback need not be `Send`, so it cannot move into the dedicated pool,
            // and a producer hands out items one by one, with no room for several in flight:
            // the requests run through the consumer path and their outcomes are handed on.
            let outcomes: Vec<FetchResult> = Fetch { base, fetcher }.collect();
            outcomes.into_par_iter().with_producer(callback)
        } else {
            base.map(|item| fetcher.execute(item))
                .with_producer(callback)
        }
    }
}

/// Turns each request item into its outcome for the consumer downstream, keeping up to
/// [`in_flight_per_worker`](crate::FetcherBuilder::in_flight_per_worker) requests in flight
/// per folder.
struct FetchConsumer<'f, C> {
    downstream: C,
    fetcher: &'f Fetcher,
}

impl<'f, C> FetchConsumer<'f, C> {
    fn new(downstream: C, fetcher: &'f Fetcher) -> Self {
        Self {
            downstream,
            fetcher,
        }
    }
}

impl<'f, T, C> Consumer<T> for FetchConsumer<'f, C>
where
    T: Into<Request>,
    C: Consumer<FetchResult>,
{
    type Folder = FetchFolder<'f, C::Folder>;
    type Reducer = C::Reducer;
    type Result = C::Result;

    fn split_at(self, index: usize) -> (Self, Self, Self::Reducer) {
        let (left, right, reducer) = self.downstream.split_at(index);
        (
            Self::new(left, self.fetcher),
            Self::new(right, self.fetcher),
            reducer,
        )
    }

    fn into_folder(self) -> Self::Folder {
        FetchFolder {
            downstream: self.downstream.into_folder(),
            in_flight: InFlight::new(self.fetcher),
            limit: self.fetcher.in_flight_per_worker(),
        }
    }

    fn full(&self) -> bool {
        self.downstream.full()
    }
}

impl<T, C> UnindexedConsumer<T> for FetchConsumer<'_, C>
where
    T: Into<Request>,
    C: UnindexedConsumer<FetchResult>,
{
    fn split_off_left(&self) -> Self {
        Self::new(self.downstream.split_off_left(), self.fetcher)
    }

    fn to_reducer(&self) -> Self::Reducer {
        self.downstream.to_reducer()
    }
}

/// One worker's share of the requests: starts each, and hands outcomes on in order once
/// `limit` are in flight, and all of them at the end.
struct FetchFolder<'f, F> {
    downstream: F,
    in_flight: InFlight<'f>,
    limit: usize,
}

impl<F: Folder<FetchResult>> FetchFolder<'_, F> {
    /// Hands outcomes on, waiting for each, until at most `keep` requests are in flight or the
    /// downstream wants no more.
    fn hand_on_until(mut self, keep: usize) -> Self {
        while self.in_flight.len() > keep && !self.downstream.full() {
            match self.in_flight.next() {
                Some(outcome) => self.downstream = self.downstream.consume(outcome),
                None => break,
            }
        }
        self
    }
}

impl<T, F> Folder<T> for FetchFolder<'_, F>
where
    T: Into<Request>,
    F: Folder<FetchResult>,
{
    type Result = F::Result;

    fn consume(mut self, item: T) -> Self {
        self.in_flight.start(item.into());
        let keep = self.limit - 1;
        self.hand_on_until(keep)
    }

    fn complete(self) -> F::Result {
        self.hand_on_until(0).downstream.complete()
    }

    fn full(&self) -> bool {
        self.downstream.full()
    }
}
