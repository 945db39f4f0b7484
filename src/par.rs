//! The [`FetchAll`] extension trait and its lazy [`Fetch`] adaptor.

use rayon::iter::plumbing::{Consumer, ProducerCallback, UnindexedConsumer};
use rayon::iter::{Either, IndexedParallelIterator, IntoParallelIterator, ParallelIterator};

use crate::engine::{self, Feed, KeepAll, Ordered, Unordered};
use crate::{FetchResult, Fetcher, Request, ThreadException, ThreadResponse};

/// Fetches the requests of a rayon parallel iterator.
///
/// Implemented for every [`ParallelIterator`] whose items convert into a [`Request`]: `&str`,
/// `String`, [`url::Url`], `Request` and references to them, so `par_iter()` and
/// `into_par_iter()` over the usual collections just work.
///
/// Each worker thread sends its requests through its own session, built on its first request
/// and kept by the [`Fetcher`]. Every input item ends up exactly once in the output.
///
/// `fetch` and `fetch_all` use the [global fetcher](Fetcher::global):
/// [`DEFAULT_CONCURRENCY`](Fetcher::DEFAULT_CONCURRENCY) requests in flight on one worker thread
/// per core. Give the `*_with` methods a fetcher of your own for other settings.
///
/// Calls that share a fetcher share its [`concurrency`](crate::FetcherBuilder::concurrency) and
/// its workers: calls made from several threads at once take turns on the workers, and a call
/// whose input does not end (`par_bridge()` over a channel that stays open) holds them until it
/// does, so give such a call a fetcher of its own. An adaptor after `fetch` that calls the same
/// fetcher again runs on one of its workers, and those requests are sent from that worker one at
/// a time (still within the fetcher's concurrency). While an adaptor after `fetch` runs, the
/// requests in flight on its worker wait (their timeouts do not): keep slow per-item work out of
/// the adaptors that follow a fetch, or collect first. The input is read on the caller's rayon
/// pool (the global one, unless the call runs inside [`ThreadPool::install`]), which waits
/// there while the fetcher is full or the reorder window waits for a slow request: another
/// pipeline in the same process that feeds from the same pool waits with it, so run
/// independent pipelines in pools of their own.
///
/// [`ThreadPool::install`]: rayon::ThreadPool::install
///
/// ```
/// use parfetch::prelude::*;
/// use rayon::prelude::*;
/// # let base = parfetch::doc_support::serve(20);
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
    /// # let base = parfetch::doc_support::serve(2);
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
    /// The input is read on the caller's side, as slots free up; the requests and the adaptors
    /// chained after them run on the fetcher's worker threads, each outcome handed on as it
    /// completes. An indexed input is sent nearly in input order: rayon's pieces of it are read
    /// in parallel, but none further than the fetcher's queue depth (twice its concurrency, at
    /// least 16 per worker) past the first item not sent yet, unless that item has been stuck
    /// for 200 ms. For an indexed input driven by an indexed consumer, outcomes are handed on
    /// in input order through a bounded reorder window (see the [crate docs](crate)). Positional
    /// adaptors that pull by position (`zip`, `enumerate`, ...) make the outcomes be collected
    /// first, then handed on.
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
    ///
    /// It keeps every outcome anyway, so it needs no reorder window: each is put in its place
    /// as it completes, and a slow request holds back nothing but itself.
    fn fetch_all_with(self, fetcher: &Fetcher) -> (Vec<ThreadResponse>, Vec<ThreadException>) {
        let split = |outcome: FetchResult| match outcome {
            Ok(response) => Either::Left(response),
            Err(exception) => Either::Right(exception),
        };
        let Some(pool) = fetcher.workers_for_call() else {
            return self.map(|item| fetcher.execute(item)).partition_map(split);
        };
        let indexed = self.opt_len().is_some();
        let sink = KeepAll::new();
        engine::run(fetcher, pool, &sink, |inlet| {
            self.drive_unindexed(Feed::new(inlet, indexed));
        });
        let mut responses = Vec::new();
        let mut exceptions = Vec::new();
        for outcome in sink.into_sorted() {
            match outcome {
                Ok(response) => responses.push(response),
                Err(exception) => exceptions.push(exception),
            }
        }
        (responses, exceptions)
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
        let Some(pool) = fetcher.workers_for_call() else {
            return base
                .map(|item| fetcher.execute(item))
                .drive_unindexed(consumer);
        };
        // Rayon's convention: an input that knows its length is indexed, and its consumer
        // (a collect into a vector, say) may only be split by position. Keep its order.
        if let Some(len) = base.opt_len() {
            let (sink, reducers) = Ordered::new(consumer, len, fetcher.reorder_window());
            engine::run(&fetcher, pool, &sink, |inlet| {
                base.drive_unindexed(Feed::new(inlet, true));
            });
            return sink.into_result(reducers);
        }
        let (sink, reducers) = Unordered::new(consumer, fetcher.threads());
        engine::run(&fetcher, pool, &sink, |inlet| {
            base.drive_unindexed(Feed::new(inlet, false));
        });
        sink.into_result(reducers)
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
        let Some(pool) = fetcher.workers_for_call() else {
            return base.map(|item| fetcher.execute(item)).drive(consumer);
        };
        let (sink, reducers) = Ordered::new(consumer, base.len(), fetcher.reorder_window());
        engine::run(&fetcher, pool, &sink, |inlet| {
            base.drive(Feed::new(inlet, true));
        });
        sink.into_result(reducers)
    }

    fn with_producer<CB>(self, callback: CB) -> CB::Output
    where
        CB: ProducerCallback<Self::Item>,
    {
        let Fetch { base, fetcher } = self;
        if fetcher.workers_for_call().is_none() {
            return base
                .map(|item| fetcher.execute(item))
                .with_producer(callback);
        }
        // A producer is pulled by position from any thread, which requests in flight cannot
        // be: the outcomes are collected first, then handed on.
        let outcomes: Vec<FetchResult> = Fetch { base, fetcher }.collect();
        outcomes.into_par_iter().with_producer(callback)
    }
}
