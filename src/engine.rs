//! The streaming engine: how one call keeps a fetcher's requests in flight, with no batches.
//!
//! # Shape
//!
//! A call has three parties, on two sets of threads:
//!
//! - **The feed** runs on the caller's side (the caller's thread, and its rayon pool when the
//!   input is a parallel iterator). It turns input items into numbered [`Job`]s and pushes them
//!   into the call's [`Schedule`], blocking while it is full. So the input is read only as
//!   fast as slots free up, and an unindexed source (`par_bridge()` over a channel) starts
//!   sending before it ends. The pieces rayon cuts an indexed input into are read no further
//!   than the schedule's depth past the first item not sent yet ([`ReadAhead`]): requests go
//!   out nearly in input order.
//! - **The workers** are the threads of the fetcher's own pool, one session each. The schedule
//!   queues each job at its host's home worker, where the host's connections are (see
//!   [`crate::schedule`]). A worker takes a job whenever the fetcher has a free *taken*
//!   permit, spawns it as a task on its session's runtime (so every request goes through
//!   `Fetcher::run`), and whenever tasks complete it leaves the runtime to hand their outcomes
//!   to the sink. Nothing waits for a batch: each completed request frees its own slot.
//! - **The sink** decides where outcomes go: a rayon consumer (one folder per worker when order
//!   does not matter, blocks of an indexed consumer when it does), `fetch_all`'s vectors, a
//!   `Pool`'s queues, or the calling thread of [`Fetcher::for_each_completed`].
//!
//! The feed and the workers of one call never share threads, which is what keeps them from
//! deadlocking: a feed that blocks on a full schedule waits for workers that are free to drain
//! it. (A fetch whose input is another fetch's outcomes is fed from the other fetcher's
//! workers, and a rayon wait inside an input adaptor lets a feed thread read another piece of
//! the input meanwhile: the read-ahead, the one wait that a feed thread could then need itself
//! to end, gives way after a stall.)
//!
//! # Bounds
//!
//! - In flight (sending or reading a body): at most `concurrency`, across the whole fetcher,
//!   enforced in `Fetcher::run` for every entry point.
//! - Queued for a worker, not sent yet: at most `max(2 × concurrency, 16 × workers)` requests.
//! - Taken by workers and not yet handed on: at most twice `concurrency`. The extra half covers
//!   the requests that wait for a host slot, a rate turn or a backoff (they hold no in-flight slot,
//!   so requests to other hosts go on), and outcomes a worker has not handed on yet.
//! - Ordered sinks add a reorder window: outcomes that completed ahead of an earlier one
//!   wait there, and the feed stops while the window is full.
//!
//! So memory is bounded by `2 × concurrency × max_body_bytes` plus the window, never by the
//! length of the input.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use rayon::iter::plumbing::{Consumer, Folder, Reducer, UnindexedConsumer};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::read_ahead::{Piece, ReadAhead};
use crate::schedule::{HostKey, Job, Schedule};
use crate::{FetchResult, Fetcher, Request};

/// Where a call's outcomes go.
pub(crate) trait Sink: Sync {
    /// What one worker keeps for this call (a folder, its share of the outcomes); it never
    /// leaves the worker's thread.
    type Local;

    /// Called once on each worker, before it takes a job.
    fn open(&self, worker: usize) -> Self::Local;

    /// Takes one outcome, on a worker, outside its runtime (so user code it runs may call
    /// parfetch again). May block, which holds the worker back: that is the backpressure.
    /// Returns `false` when no more outcomes are wanted.
    fn accept(&self, local: &mut Self::Local, index: usize, outcome: FetchResult) -> bool;

    /// Called once on each worker when it is done with this call.
    fn close(&self, worker: usize, local: Self::Local);

    /// Waits until item `index` may be sent (a reorder window has room); `false` if the call
    /// stopped meanwhile. Runs on the feed's side.
    fn admit(&self, _index: usize, _stopped: &AtomicBool) -> bool {
        true
    }

    /// Wakes feeds waiting in [`admit`](Self::admit) after the call stopped.
    fn wake(&self) {}
}

/// The feed's side of a call: numbers items and pushes them to the workers.
pub(crate) struct Inlet<'a, S: Sink> {
    schedule: &'a Schedule,
    read_ahead: &'a ReadAhead,
    arrivals: AtomicUsize,
    stopped: &'a AtomicBool,
    sink: &'a S,
}

impl<S: Sink> Inlet<'_, S> {
    /// Sends `request` to the workers, numbered by arrival; `false` once the call has stopped
    /// taking input.
    pub(crate) fn push(&self, request: Request) -> bool {
        let index = self.arrivals.fetch_add(1, Ordering::Relaxed);
        !self.is_stopped() && self.send(index, request)
    }

    /// Sends item `index` of an indexed input, read by `piece`.
    fn push_indexed(&self, piece: &Piece<'_>, index: usize, request: Request) -> bool {
        !self.is_stopped() && piece.admit(index, self.stopped) && self.send(index, request)
    }

    fn send(&self, index: usize, request: Request) -> bool {
        self.sink.admit(index, self.stopped) && self.schedule.push(index, request)
    }

    pub(crate) fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Relaxed)
    }

    /// Stops the call: no more input, and nothing waits for a window any more.
    fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
        self.read_ahead.close();
        self.sink.wake();
    }
}

/// Runs one call: `feed` pushes the input on the calling thread while the fetcher's workers
/// (`pool`, from `Fetcher::workers_for_call`) fetch it into `sink`. Returns when every job
/// pushed has been handed to the sink (or the call stopped) and every worker has closed its
/// part.
///
/// # Panics
/// Re-raises a panic of `feed` or of the sink's user code, after the workers have stopped.
pub(crate) fn run<S, F>(fetcher: &Fetcher, pool: &rayon::ThreadPool, sink: &S, feed: F)
where
    S: Sink,
    F: FnOnce(&Inlet<'_, S>),
{
    let schedule = Schedule::new(pool.current_num_threads(), fetcher.concurrency());
    let read_ahead = ReadAhead::new(schedule.capacity());
    let stopped = AtomicBool::new(false);
    pool.in_place_scope(|scope| {
        scope.spawn_broadcast(|_, context| {
            let wake = || {
                read_ahead.close();
                sink.wake();
            };
            work(fetcher, &schedule, sink, context.index(), &stopped, &wake);
        });
        let inlet = Inlet {
            schedule: &schedule,
            read_ahead: &read_ahead,
            arrivals: AtomicUsize::new(0),
            stopped: &stopped,
            sink,
        };
        // Dropped before the scope waits for the workers, also when `feed` panics: the
        // schedule closes and the workers finish what is in it.
        let _close_on_exit = CloseOnDrop(&schedule);
        feed(&inlet);
    });
}

struct CloseOnDrop<'a>(&'a Schedule);

impl Drop for CloseOnDrop<'_> {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// Stops the call if a worker unwinds (a user adaptor panicked), so that the feed is not left
/// blocked on a schedule nobody drains.
struct StopOnUnwind<'a> {
    schedule: &'a Schedule,
    stopped: &'a AtomicBool,
    wake: &'a dyn Fn(),
}

impl StopOnUnwind<'_> {
    fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
        self.schedule.abandon();
        (self.wake)();
    }
}

impl Drop for StopOnUnwind<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.stop();
        }
    }
}

/// One worker's part of a call.
fn work<S: Sink>(
    fetcher: &Fetcher,
    schedule: &Schedule,
    sink: &S,
    worker: usize,
    stopped: &AtomicBool,
    wake: &dyn Fn(),
) {
    let guard = StopOnUnwind {
        schedule,
        stopped,
        wake,
    };
    let mut local = sink.open(worker);
    // A worker that never gets a job builds no session (runtime, client, user hooks).
    let Some(first) = schedule.take_blocking(worker) else {
        sink.close(worker, local);
        return;
    };
    let session = match fetcher.session_here() {
        Ok(session) => session,
        Err(reason) => {
            // This worker's hosts go to workers that can send; the last one left fails all.
            let mut next = Some(first);
            let retired = schedule.retire(worker);
            while let Some(Job { index, request, .. }) = next
                .take()
                .or_else(|| (!retired).then(|| schedule.take_blocking(worker)).flatten())
            {
                let error = fetcher
                    .check(&request)
                    .err()
                    .unwrap_or_else(|| crate::fetcher::session_error(&request, reason));
                if !sink.accept(&mut local, index, fetcher.unsent(request, error)) {
                    guard.stop();
                    break;
                }
            }
            sink.close(worker, local);
            return;
        }
    };

    let taken = fetcher.taken_permits();
    // A worker takes a job only when it has a free slot to send it, so that no job waits behind
    // a slow one while another worker has room; requests that wait for their host or a
    // backoff hold no slot, up to a second share.
    let share = fetcher.session_slots();
    let has_room =
        |tasks: usize| tasks < share.saturating_mul(2) && tasks < share + session.waiting();
    let mut tasks = Tasks {
        set: JoinSet::new(),
        session,
    };
    let tasks = &mut tasks.set;
    let sending = Sending::default();
    let is_sending_to = |host| sending.to(host);
    let mut first = Some(first);
    let mut input_open = true;
    let mut busy = false;
    loop {
        let ready = session.block_on(async {
            if let Some(job) = first.take() {
                // Taken before its permit: waiting for one here is waiting for a slot.
                if let Ok(permit) = Arc::clone(&taken).acquire_owned().await {
                    spawn(tasks, &sending, fetcher, job, permit);
                }
            }
            let mut ready = Vec::new();
            loop {
                // Other workers take this one's jobs while it has no room (see `Schedule`).
                if busy == has_room(tasks.len()) {
                    busy = !busy;
                    schedule.set_busy(worker, busy);
                }
                tokio::select! {
                    biased;
                    next = take(schedule, worker, &taken, &is_sending_to), if input_open
                        && has_room(tasks.len())
                        && !stopped.load(Ordering::Relaxed) =>
                    {
                        match next {
                            Some((job, permit)) => {
                                spawn(tasks, &sending, fetcher, job, permit);
                            }
                            None => input_open = false,
                        }
                    }
                    Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                        ready.extend(done.ok());
                        // The runtime polls this future before its other tasks: leaving at
                        // once would starve the connections' own tasks, which put a finished
                        // connection back in the pool, and the next request to its host would
                        // open another (1,000 hosts x 20 GETs, 1 worker x 2 in flight: 1,174
                        // to 1,610 connections; with this turn, 1,038 to 1,071).
                        tokio::task::yield_now().await;
                        while let Some(done) = tasks.try_join_next() {
                            ready.extend(done.ok());
                        }
                        for done in &ready {
                            sending.end(done.host);
                        }
                        return ready;
                    }
                    else => return ready,
                }
            }
        });
        for Done {
            index,
            outcome,
            permit,
            ..
        } in ready
        {
            let wanted = sink.accept(&mut local, index, outcome);
            drop(permit);
            if !wanted {
                guard.stop();
            }
        }
        if stopped.load(Ordering::Relaxed) || (!input_open && tasks.is_empty()) {
            break;
        }
    }
    sink.close(worker, local);
}

/// A worker's requests in flight. On a stop they are abandoned, not waited for; but an aborted
/// task is dropped only when its runtime next runs, and until then it holds its slots: so the
/// runtime is run once more here, also when a user adaptor panicked.
struct Tasks<'s> {
    set: JoinSet<Done>,
    session: &'s crate::session::Session,
}

/// A request's outcome, with what it held.
struct Done {
    index: usize,
    outcome: FetchResult,
    permit: OwnedSemaphorePermit,
    host: Option<HostKey>,
}

/// How many requests a worker has in flight to each host: the schedule gives it a job of
/// another host first, where it can, so that one connection per host does. Counted down as
/// each task hands back its outcome; every task does (`Fetcher::run_caught` turns a panic into
/// an outcome), but for tasks aborted at a stop, after which the worker takes nothing more.
#[derive(Default)]
struct Sending(RefCell<HashMap<HostKey, usize>>);

impl Sending {
    fn start(&self, host: Option<HostKey>) {
        if let Some(host) = host {
            *self.0.borrow_mut().entry(host).or_default() += 1;
        }
    }

    fn end(&self, host: Option<HostKey>) {
        let Some(host) = host else { return };
        let mut counts = self.0.borrow_mut();
        if let Some(count) = counts.get_mut(&host) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&host);
            }
        }
    }

    fn to(&self, host: HostKey) -> bool {
        self.0.borrow().contains_key(&host)
    }
}

impl Drop for Tasks<'_> {
    fn drop(&mut self) {
        self.set.abort_all();
        if crate::session::unusable_here().is_none() {
            self.session
                .block_on(async { while self.set.join_next().await.is_some() {} });
        }
    }
}

/// The next job, once this fetcher has a free slot for it; `None` when the input has ended.
async fn take(
    schedule: &Schedule,
    worker: usize,
    taken: &Arc<Semaphore>,
    sending: &dyn Fn(HostKey) -> bool,
) -> Option<(Job, OwnedSemaphorePermit)> {
    let permit = Arc::clone(taken).acquire_owned().await.ok()?;
    let job = schedule.take(worker, sending).await?;
    Some((job, permit))
}

/// Runs `job` as a task of the worker's runtime, counted as sending to its host.
fn spawn(
    tasks: &mut JoinSet<Done>,
    sending: &Sending,
    fetcher: &Fetcher,
    Job {
        index,
        request,
        host,
    }: Job,
    permit: OwnedSemaphorePermit,
) {
    sending.start(host);
    let fetcher = fetcher.clone();
    tasks.spawn(async move {
        Done {
            index,
            outcome: fetcher.fetch_here(request).await,
            permit,
            host,
        }
    });
}

/// The most pieces an ordered consumer is cut into.
const MAX_PIECES: usize = 1 << 16;

fn into_inner<T>(mutex: Mutex<T>) -> T {
    mutex.into_inner().unwrap_or_else(PoisonError::into_inner)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every state below stays consistent under each lock; a panic elsewhere must not make it
    // unusable (the call still has to end).
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The feed of a rayon parallel iterator: a consumer that pushes each item to the workers.
/// Split with `split_at` (indexed inputs), it numbers items by position, each piece read no
/// further than the [`ReadAhead`] allows; split off unindexed, by arrival.
pub(crate) struct Feed<'a, 'i, S: Sink> {
    inlet: &'a Inlet<'i, S>,
    /// For an indexed input, this piece of it.
    piece: Option<Piece<'a>>,
}

impl<'a, 'i, S: Sink> Feed<'a, 'i, S> {
    /// The feed of an indexed input (numbered from 0), or of an unindexed one.
    pub(crate) fn new(inlet: &'a Inlet<'i, S>, indexed: bool) -> Self {
        let piece = indexed.then(|| inlet.read_ahead.piece(0));
        Self { inlet, piece }
    }
}

/// The reducer of consumers whose result is `()`.
pub(crate) struct NothingToReduce;

impl Reducer<()> for NothingToReduce {
    fn reduce(self, _left: (), _right: ()) {}
}

impl<'a, 'i, S: Sink, T: Into<Request>> Consumer<T> for Feed<'a, 'i, S> {
    type Folder = FeedFolder<'a, 'i, S>;
    type Reducer = NothingToReduce;
    type Result = ();

    fn split_at(self, index: usize) -> (Self, Self, NothingToReduce) {
        let inlet = self.inlet;
        let right = Feed {
            inlet,
            piece: (self.piece.as_ref()).map(|piece| inlet.read_ahead.piece(piece.start() + index)),
        };
        (self, right, NothingToReduce)
    }

    fn into_folder(self) -> Self::Folder {
        FeedFolder {
            inlet: self.inlet,
            next: self.piece.as_ref().map(Piece::start),
            piece: self.piece,
            stopped: false,
        }
    }

    fn full(&self) -> bool {
        self.inlet.is_stopped()
    }
}

impl<S: Sink, T: Into<Request>> UnindexedConsumer<T> for Feed<'_, '_, S> {
    fn split_off_left(&self) -> Self {
        Feed {
            inlet: self.inlet,
            piece: None,
        }
    }

    fn to_reducer(&self) -> NothingToReduce {
        NothingToReduce
    }
}

pub(crate) struct FeedFolder<'a, 'i, S: Sink> {
    inlet: &'a Inlet<'i, S>,
    piece: Option<Piece<'a>>,
    next: Option<usize>,
    stopped: bool,
}

impl<S: Sink> Drop for FeedFolder<'_, '_, S> {
    fn drop(&mut self) {
        // The input panicked (a user adaptor before the fetch): other parts of the feed may
        // wait for a window that the missing items would have moved.
        if std::thread::panicking() {
            self.inlet.stop();
        }
    }
}

impl<S: Sink, T: Into<Request>> Folder<T> for FeedFolder<'_, '_, S> {
    type Result = ();

    fn consume(mut self, item: T) -> Self {
        self.stopped = !match (&self.piece, self.next) {
            (Some(piece), Some(index)) => {
                self.next = Some(index + 1);
                self.inlet.push_indexed(piece, index, item.into())
            }
            _ => self.inlet.push(item.into()),
        };
        self
    }

    /// Dropping the folder lets the read-ahead's front move past its piece.
    fn complete(self) {}

    fn full(&self) -> bool {
        self.stopped || self.inlet.is_stopped()
    }
}

/// Every outcome, kept with its number: for `fetch_all`.
pub(crate) struct KeepAll {
    parts: Mutex<Vec<(usize, FetchResult)>>,
}

impl KeepAll {
    pub(crate) fn new() -> Self {
        Self {
            parts: Mutex::new(Vec::new()),
        }
    }

    /// The outcomes, in the order of their numbers.
    pub(crate) fn into_sorted(self) -> impl Iterator<Item = FetchResult> {
        let mut all = into_inner(self.parts);
        all.sort_unstable_by_key(|(index, _)| *index);
        all.into_iter().map(|(_, outcome)| outcome)
    }
}

impl Sink for KeepAll {
    type Local = Vec<(usize, FetchResult)>;

    fn open(&self, _worker: usize) -> Self::Local {
        Vec::new()
    }

    fn accept(&self, local: &mut Self::Local, index: usize, outcome: FetchResult) -> bool {
        local.push((index, outcome));
        true
    }

    fn close(&self, _worker: usize, local: Self::Local) {
        lock(&self.parts).extend(local);
    }
}

/// An unindexed rayon consumer, one piece of it per worker, fed in completion order.
pub(crate) struct Unordered<C: UnindexedConsumer<FetchResult>> {
    pieces: Mutex<Vec<Option<C>>>,
    results: Mutex<Vec<Option<C::Result>>>,
}

/// The reducers that join a split consumer's pieces, left to right: `reducers[i]` joins the
/// pieces up to `i` with piece `i + 1`. Kept by the caller: rayon's reducers need not be `Send`.
pub(crate) struct Reducers<R>(Vec<R>);

impl<R> Reducers<R> {
    fn reduce<T>(self, results: impl IntoIterator<Item = T>) -> T
    where
        R: Reducer<T>,
    {
        let mut results = results.into_iter();
        let first = results.next().expect("a consumer has at least one piece");
        self.0
            .into_iter()
            .zip(results)
            .fold(first, |left, (reducer, right)| reducer.reduce(left, right))
    }
}

impl<C: UnindexedConsumer<FetchResult>> Unordered<C> {
    pub(crate) fn new(consumer: C, workers: usize) -> (Self, Reducers<C::Reducer>) {
        let mut pieces = Vec::new();
        let mut reducers = Vec::new();
        for _ in 1..workers.max(1) {
            reducers.push(consumer.to_reducer());
            pieces.push(Some(consumer.split_off_left()));
        }
        pieces.push(Some(consumer));
        let sink = Self {
            results: Mutex::new(pieces.iter().map(|_| None).collect()),
            pieces: Mutex::new(pieces),
        };
        (sink, Reducers(reducers))
    }

    /// The pieces' results, reduced left to right (a piece no worker opened counts as empty).
    pub(crate) fn into_result(self, reducers: Reducers<C::Reducer>) -> C::Result {
        let pieces = into_inner(self.pieces);
        let results = into_inner(self.results);
        reducers.reduce(pieces.into_iter().zip(results).map(|(piece, result)| {
            result.unwrap_or_else(|| match piece {
                Some(piece) => piece.into_folder().complete(),
                None => unreachable!("a worker that takes a piece leaves its result"),
            })
        }))
    }
}

impl<C: UnindexedConsumer<FetchResult>> Sink for Unordered<C> {
    type Local = Option<C::Folder>;

    fn open(&self, worker: usize) -> Self::Local {
        let piece = lock(&self.pieces).get_mut(worker).and_then(Option::take);
        piece.map(Consumer::into_folder)
    }

    fn accept(&self, local: &mut Self::Local, _index: usize, outcome: FetchResult) -> bool {
        match local.take() {
            Some(folder) => {
                let folder = folder.consume(outcome);
                let wanted = !folder.full();
                *local = Some(folder);
                wanted
            }
            // More workers than pieces cannot happen (one piece per thread of the pool).
            None => false,
        }
    }

    fn close(&self, worker: usize, local: Self::Local) {
        if let Some(folder) = local {
            let result = folder.complete();
            if let Some(slot) = lock(&self.results).get_mut(worker) {
                *slot = Some(result);
            }
        }
    }
}

/// An indexed rayon consumer, fed in input order: cut into blocks of consecutive items, each
/// block folded as a whole by the worker that completes it, so the adaptors that follow run on
/// every worker. At most `max_open` blocks are open at once (the reorder window): the feed waits
/// before sending an item past it.
pub(crate) struct Ordered<C: Consumer<FetchResult>> {
    /// One consumer per block, and last the (empty) rest.
    pieces: Mutex<Vec<Option<C>>>,
    results: Mutex<Vec<Option<C::Result>>>,
    state: Mutex<OrderedState>,
    room: Condvar,
    len: usize,
    block_len: usize,
    max_open: usize,
}

struct OrderedState {
    /// Blocks from `first` on, as far as outcomes have arrived for them.
    open: VecDeque<Block>,
    /// The lowest block not folded yet.
    first: usize,
    /// Body bytes of the outcomes waiting in filling blocks.
    waiting_bytes: usize,
    stopped: bool,
}

enum Block {
    Filling {
        outcomes: Vec<Option<FetchResult>>,
        missing: usize,
    },
    Folding,
    Folded,
}

impl<C: Consumer<FetchResult>> Ordered<C> {
    /// `consumer` takes `len` items; `window` is how many outcomes may wait for an earlier one.
    pub(crate) fn new(consumer: C, len: usize, window: usize) -> (Self, Reducers<C::Reducer>) {
        // Small blocks: the oldest one is let through whatever its bodies weigh. Longer only
        // for inputs of over a million items, so that the consumer is cut into at most 65,536
        // pieces (the pieces and their reducers are made up front, on the caller's thread:
        // rayon's reducers may not leave it).
        let block_len = (window / 64).clamp(1, 16).max(len.div_ceil(MAX_PIECES));
        let mut pieces = Vec::with_capacity(len.div_ceil(block_len) + 1);
        let mut reducers = Vec::with_capacity(pieces.capacity());
        let mut rest = consumer;
        let mut start = 0;
        while start < len {
            let (block, right, reducer) = rest.split_at(block_len.min(len - start));
            pieces.push(Some(block));
            reducers.push(reducer);
            rest = right;
            start += block_len;
        }
        pieces.push(Some(rest));
        let sink = Self {
            results: Mutex::new(pieces.iter().map(|_| None).collect()),
            pieces: Mutex::new(pieces),
            state: Mutex::new(OrderedState {
                open: VecDeque::new(),
                first: 0,
                waiting_bytes: 0,
                stopped: false,
            }),
            room: Condvar::new(),
            len,
            block_len,
            max_open: window.div_ceil(block_len).max(1),
        };
        (sink, Reducers(reducers))
    }

    /// The number of items in block `block`: the last one may be short.
    fn block_len_of(&self, block: usize) -> usize {
        self.len
            .saturating_sub(block * self.block_len)
            .min(self.block_len)
    }

    /// The consumer's result: every block reduced in order. Blocks left unfinished by a stop
    /// are folded with what they have.
    pub(crate) fn into_result(self, reducers: Reducers<C::Reducer>) -> C::Result {
        let state = into_inner(self.state);
        let pieces = into_inner(self.pieces);
        let results = into_inner(self.results);
        let mut leftovers = state.open.into_iter();
        let mut skip = state.first;
        let results = pieces.into_iter().zip(results).map(|(piece, result)| {
            let block = if skip > 0 {
                skip -= 1;
                None
            } else {
                leftovers.next()
            };
            result.unwrap_or_else(|| {
                let piece = piece.expect("a block without a result still has its consumer");
                match block {
                    Some(Block::Filling { outcomes, .. }) => {
                        fold(piece, outcomes.into_iter().flatten())
                    }
                    _ => piece.into_folder().complete(),
                }
            })
        });
        reducers.reduce(results)
    }
}

/// `true` if `at` (an outcome, or a block of them) must wait: it is `width` or more past the
/// oldest one still awaited (`front`), or the bodies waiting already exceed
/// [`Fetcher::REORDER_WINDOW_BYTES`]. `front` itself is always let through, so that the window
/// can move on.
fn past_window(at: usize, front: usize, width: usize, waiting_bytes: usize) -> bool {
    at >= front.saturating_add(width)
        || (at > front && waiting_bytes > Fetcher::REORDER_WINDOW_BYTES)
}

pub(crate) fn body_len(outcome: &FetchResult) -> usize {
    outcome
        .as_ref()
        .map_or(0, |response| response.bytes().len())
}

fn fold<C: Consumer<FetchResult>>(
    consumer: C,
    outcomes: impl IntoIterator<Item = FetchResult>,
) -> C::Result {
    let mut folder = consumer.into_folder();
    for outcome in outcomes {
        if folder.full() {
            break;
        }
        folder = folder.consume(outcome);
    }
    folder.complete()
}

impl<C: Consumer<FetchResult>> Sink for Ordered<C> {
    type Local = ();

    fn open(&self, _worker: usize) {}

    fn accept(&self, (): &mut (), index: usize, outcome: FetchResult) -> bool {
        let block = index / self.block_len;
        let mut state = lock(&self.state);
        if state.stopped || block < state.first {
            return !state.stopped;
        }
        let position = block - state.first;
        while state.open.len() <= position {
            let len = self.block_len_of(state.first + state.open.len());
            state.open.push_back(Block::Filling {
                outcomes: Vec::new(),
                missing: len,
            });
        }
        let Block::Filling { outcomes, missing } = &mut state.open[position] else {
            return true;
        };
        let offset = index % self.block_len;
        if outcomes.len() <= offset {
            outcomes.resize_with(offset + 1, || None);
        }
        let bytes = body_len(&outcome);
        outcomes[offset] = Some(outcome);
        *missing -= 1;
        let complete = *missing == 0;
        state.waiting_bytes += bytes;
        if !complete {
            return true;
        }
        let Block::Filling { outcomes, .. } =
            std::mem::replace(&mut state.open[position], Block::Folding)
        else {
            unreachable!("the block was filling a moment ago");
        };
        let bytes: usize = outcomes.iter().flatten().map(body_len).sum();
        state.waiting_bytes -= bytes;
        drop(state);
        // Folding runs the adaptors that follow: outside the lock, so other blocks go on.
        let piece = lock(&self.pieces)[block].take();
        if let Some(piece) = piece {
            let result = fold(piece, outcomes.into_iter().flatten());
            lock(&self.results)[block] = Some(result);
        }
        let mut state = lock(&self.state);
        let position = block - state.first;
        state.open[position] = Block::Folded;
        while matches!(state.open.front(), Some(Block::Folded)) {
            state.open.pop_front();
            state.first += 1;
        }
        // Only once every block before it is folded does a full consumer mean the call is
        // done: `find_first`'s later pieces are full as soon as an earlier one has a match,
        // while an earlier block may still be waiting for a slow request with a better one.
        let pieces = lock(&self.pieces);
        let done = pieces
            .get(state.first)
            .and_then(Option::as_ref)
            .is_some_and(Consumer::full);
        drop(pieces);
        if done {
            state.stopped = true;
        }
        drop(state);
        self.room.notify_all();
        !done
    }

    fn close(&self, _worker: usize, (): ()) {}

    fn admit(&self, index: usize, stopped: &AtomicBool) -> bool {
        let block = index / self.block_len;
        let mut state = lock(&self.state);
        while past_window(block, state.first, self.max_open, state.waiting_bytes)
            && !state.stopped
            && !stopped.load(Ordering::Relaxed)
        {
            state = self
                .room
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        !state.stopped && !stopped.load(Ordering::Relaxed)
    }

    fn wake(&self) {
        lock(&self.state).stopped = true;
        self.room.notify_all();
    }
}

/// Outcomes handed to one thread, for [`Fetcher::for_each_completed`] and
/// [`Fetcher::for_each_in_order`]: a bounded channel, so a slow consumer holds the workers back.
pub(crate) struct ToThread {
    outcomes: std::sync::mpsc::SyncSender<(usize, FetchResult)>,
    /// For an ordered consumer: how many outcomes it has taken, and how far ahead of that the
    /// feed may send.
    order: Option<(Arc<Window>, usize)>,
}

/// How far an ordered consumer has got, for the feed to wait on.
#[derive(Default)]
pub(crate) struct Window {
    /// The next outcome the consumer takes, and the body bytes of those waiting for it.
    taken: Mutex<(usize, usize)>,
    moved: Condvar,
    closed: AtomicBool,
}

impl Window {
    /// The consumer has taken every outcome before `next`; `waiting_bytes` of bodies wait for
    /// it.
    pub(crate) fn advance(&self, next: usize, waiting_bytes: usize) {
        *lock(&self.taken) = (next, waiting_bytes);
        self.moved.notify_all();
    }

    /// The consumer has gone: the feed must not wait for it any more.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        let _taken = lock(&self.taken);
        self.moved.notify_all();
    }
}

impl ToThread {
    pub(crate) fn new(
        outcomes: std::sync::mpsc::SyncSender<(usize, FetchResult)>,
        order: Option<(Arc<Window>, usize)>,
    ) -> Self {
        Self { outcomes, order }
    }
}

impl Sink for ToThread {
    type Local = std::sync::mpsc::SyncSender<(usize, FetchResult)>;

    fn open(&self, _worker: usize) -> Self::Local {
        self.outcomes.clone()
    }

    fn accept(&self, local: &mut Self::Local, index: usize, outcome: FetchResult) -> bool {
        local.send((index, outcome)).is_ok()
    }

    fn close(&self, _worker: usize, _local: Self::Local) {}

    fn admit(&self, index: usize, stopped: &AtomicBool) -> bool {
        let Some((window, width)) = &self.order else {
            return true;
        };
        let mut taken = lock(&window.taken);
        while past_window(index, taken.0, *width, taken.1)
            && !stopped.load(Ordering::Relaxed)
            && !window.closed.load(Ordering::Relaxed)
        {
            taken = window
                .moved
                .wait(taken)
                .unwrap_or_else(PoisonError::into_inner);
        }
        !stopped.load(Ordering::Relaxed) && !window.closed.load(Ordering::Relaxed)
    }

    fn wake(&self) {
        if let Some((window, _)) = &self.order {
            window.close();
        }
    }
}
