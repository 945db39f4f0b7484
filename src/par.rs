//! The [`FetchAll`] extension trait and its lazy [`Fetch`] adaptor.

use rayon::iter::plumbing::{Consumer, Folder, ProducerCallback, Reducer, UnindexedConsumer};
use rayon::iter::{
    Either, IndexedParallelIterator, IntoParallelIterator, IntoParallelRefMutIterator,
    ParallelIterator,
};

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
/// `fetch` and `fetch_all` use the [global fetcher](Fetcher::global): one request at a time per
/// thread of the current rayon pool (by default, one thread per core). Requests mostly wait, so for
/// I/O-bound batches give the `*_with` methods a fetcher that keeps several in flight per
/// worker ([`in_flight_per_worker`](crate::FetcherBuilder::in_flight_per_worker)).
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
    /// be collected first, then handed on, when the fetcher has a dedicated pool. With several
    /// requests in flight per worker, the requests go out in batches and each batch's outcomes
    /// are handed on before the next one is sent
    /// ([`in_flight_per_worker`](crate::FetcherBuilder::in_flight_per_worker)).
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
        fetcher.install(|| {
            if fetcher.in_flight_per_worker() > 1 {
                fetch_in_batches(base, &fetcher, consumer)
            } else {
                base.map(|item| fetcher.execute(item))
                    .drive_unindexed(consumer)
            }
        })
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
        fetcher.install(|| {
            if fetcher.in_flight_per_worker() > 1 {
                fetch_in_batches(base, &fetcher, consumer)
            } else {
                base.map(|item| fetcher.execute(item)).drive(consumer)
            }
        })
    }

    fn with_producer<CB>(self, callback: CB) -> CB::Output
    where
        CB: ProducerCallback<Self::Item>,
    {
        let Fetch { base, fetcher } = self;
        if fetcher.is_outside_own_pool() || fetcher.in_flight_per_worker() > 1 {
            // A producer callback need not be `Send`, so it cannot move into the dedicated pool:
            // the requests run through `drive` and their outcomes are handed on from here.
            let outcomes: Vec<FetchResult> = Fetch { base, fetcher }.collect();
            outcomes.into_par_iter().with_producer(callback)
        } else {
            base.map(|item| fetcher.execute(item))
                .with_producer(callback)
        }
    }
}

/// With several requests in flight per worker, the requests are sent in batches of this many
/// windows per worker: enough that the end of a batch, when its last requests finish while other
/// slots stand empty, is a small part of its time; few enough that the outcomes waiting for the
/// end of the batch stay a small part of a large input.
const WINDOWS_PER_BATCH: usize = 64;

/// With several requests in flight per worker: the input's items collected as they are, then
/// made into requests and sent batch by batch, each batch's outcomes handed to `consumer`
/// before the next batch is made. Runs where it is called (inside the fetcher's pool, if it
/// has one).
///
/// Items are kept rather than requests because they are usually references into the caller's
/// collection: eight bytes each where a request would be a few hundred.
fn fetch_in_batches<I, C>(base: I, fetcher: &Fetcher, consumer: C) -> C::Result
where
    I: ParallelIterator<Item: Into<Request>>,
    C: Consumer<FetchResult>,
{
    let mut items: Vec<Option<I::Item>> = base.map(Some).collect();
    let batch_len =
        rayon::current_num_threads() * fetcher.in_flight_per_worker() * WINDOWS_PER_BATCH;
    drive_batches(&mut items, batch_len, fetcher, consumer)
}

/// Splits `items` at batch boundaries, halves at a time as rayon's own bridge does, and
/// drives the left half before the right one, so that batches go out in input order. Each
/// item is taken out when its batch is made.
fn drive_batches<T, C>(
    items: &mut [Option<T>],
    batch_len: usize,
    fetcher: &Fetcher,
    consumer: C,
) -> C::Result
where
    T: Into<Request> + Send,
    C: Consumer<FetchResult>,
{
    if consumer.full() {
        return consumer.into_folder().complete();
    }
    if items.len() <= batch_len {
        let requests: Vec<Request> = items
            .par_iter_mut()
            .map(|item| item.take().expect("each item is in one batch").into())
            .collect();
        return fetcher
            .execute_all(&requests)
            .into_par_iter()
            .drive(consumer);
    }
    let middle = (items.len() / batch_len / 2).max(1) * batch_len;
    let (before, after) = items.split_at_mut(middle);
    let (left, right, reducer) = consumer.split_at(middle);
    let left = drive_batches(before, batch_len, fetcher, left);
    let right = drive_batches(after, batch_len, fetcher, right);
    reducer.reduce(left, right)
}
