//! How far the feed reads an indexed input ahead of its first item not sent yet.
//!
//! Rayon cuts an indexed input into pieces and reads them on several threads at once, each
//! from its own start: left alone, the two halves of a list would be sent side by side, and a
//! list that interleaves its hosts would send each host's requests in pairs, each of which
//! needs a connection of its own (1,000 hosts, 20 requests each, one worker: 1,378
//! connections instead of 1,000). So a piece waits while its next item is `width` or more past
//! the first item of the whole input not sent yet: requests go out nearly in input order, as
//! from one reader, while the pieces near the front are still read in parallel.
//!
//! Order is a preference here, never a reason to stop: when the front has not moved for
//! [`STALL`], every piece goes on until it moves again. The thread reading the front may be
//! held elsewhere: a rayon wait inside a user's adaptor lets that thread run a later piece of
//! the same input, which would wait for a front that only that thread can move; and the
//! blocks of a fetch that reads another fetch's outcomes are read by that fetch's workers in
//! the order its requests complete.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// How long the front may stand still before the pieces behind it go on regardless.
const STALL: Duration = Duration::from_millis(200);

/// The read positions of one call's indexed input.
pub(crate) struct ReadAhead {
    state: Mutex<State>,
    moved: Condvar,
    width: usize,
}

struct State {
    /// The pieces not read to the end yet, by where they start.
    pieces: BTreeMap<usize, Reading>,
    /// The front a waiting piece needs before it may go on: the least of those waited for.
    wake_at: usize,
    /// A front that stood still for [`STALL`]: no piece waits while the front is there.
    stalled_at: Option<usize>,
    closed: bool,
}

/// Where a piece's reading stands.
struct Reading {
    /// Its first item not sent yet.
    next: usize,
    /// Pieces that start here: a piece split at its start leaves an empty one beside it.
    readers: usize,
}

impl State {
    /// The first item of the input not sent yet, as far as the pieces tell.
    fn front(&self) -> usize {
        self.pieces
            .first_key_value()
            .map_or(usize::MAX, |(_, piece)| piece.next)
    }
}

impl ReadAhead {
    /// Pieces may read up to `width` items past the front.
    pub(crate) fn new(width: usize) -> Self {
        Self {
            state: Mutex::new(State {
                pieces: BTreeMap::new(),
                wake_at: usize::MAX,
                stalled_at: None,
                closed: false,
            }),
            moved: Condvar::new(),
            width: width.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Consistent under every lock; a panic elsewhere must not end the call.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A piece that starts at `start` is to be read (the whole input starts at 0): it holds
    /// the front back until it is dropped.
    pub(crate) fn piece(&self, start: usize) -> Piece<'_> {
        self.add(start);
        Piece {
            read_ahead: self,
            start,
        }
    }

    fn add(&self, start: usize) {
        let mut state = self.lock();
        state
            .pieces
            .entry(start)
            .and_modify(|piece| piece.readers += 1)
            .or_insert(Reading {
                next: start,
                readers: 1,
            });
    }

    fn admit(&self, start: usize, index: usize, stopped: &AtomicBool) -> bool {
        let mut state = self.lock();
        if let Some(piece) = state.pieces.get_mut(&start) {
            piece.next = index;
        }
        self.wake_if_moved(&mut state);
        let mut front = state.front();
        let mut still_since = Instant::now();
        while index >= front.saturating_add(self.width)
            && state.stalled_at != Some(front)
            && !state.closed
            && !stopped.load(Ordering::Relaxed)
        {
            let Some(left) = STALL.checked_sub(still_since.elapsed()) else {
                state.stalled_at = Some(front);
                self.moved.notify_all();
                break;
            };
            let needed = index + 1 - self.width;
            state.wake_at = state.wake_at.min(needed);
            state = self
                .moved
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            if state.front() != front {
                front = state.front();
                still_since = Instant::now();
            }
        }
        !state.closed && !stopped.load(Ordering::Relaxed)
    }

    fn finish(&self, start: usize) {
        let mut state = self.lock();
        if let Some(piece) = state.pieces.get_mut(&start) {
            piece.readers -= 1;
            if piece.readers == 0 {
                state.pieces.remove(&start);
            }
        }
        self.wake_if_moved(&mut state);
    }

    /// Lets every waiting piece go: the call has stopped.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.moved.notify_all();
    }

    fn wake_if_moved(&self, state: &mut State) {
        if state.front() >= state.wake_at {
            // Every waiter looks again, and sets `wake_at` anew if it still has to wait.
            state.wake_at = usize::MAX;
            self.moved.notify_all();
        }
    }
}

/// One piece of the input, registered with its [`ReadAhead`] from its making to its drop,
/// whether it was read to its end or not (a stop, a panic).
pub(crate) struct Piece<'r> {
    read_ahead: &'r ReadAhead,
    start: usize,
}

impl Piece<'_> {
    /// Where the piece starts in the input.
    pub(crate) fn start(&self) -> usize {
        self.start
    }

    /// Waits until item `index` of this piece may be sent, counting the items before it as
    /// sent; `false` if the call stopped meanwhile.
    pub(crate) fn admit(&self, index: usize, stopped: &AtomicBool) -> bool {
        self.read_ahead.admit(self.start, index, stopped)
    }
}

impl Drop for Piece<'_> {
    fn drop(&mut self) {
        self.read_ahead.finish(self.start);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::thread::Scope;
    use std::time::Duration;

    static NOT_STOPPED: AtomicBool = AtomicBool::new(false);

    /// Runs `piece.admit(index)` on another thread; the receiver hears once it returns.
    fn admit_elsewhere<'scope, 'env>(
        scope: &'scope Scope<'scope, 'env>,
        piece: &'env Piece<'env>,
        index: usize,
    ) -> mpsc::Receiver<bool> {
        let (sender, receiver) = mpsc::channel();
        scope.spawn(move || sender.send(piece.admit(index, &NOT_STOPPED)));
        receiver
    }

    fn still_waits(admitted: &mpsc::Receiver<bool>) -> bool {
        admitted.recv_timeout(Duration::from_millis(50)).is_err()
    }

    fn goes_on(admitted: &mpsc::Receiver<bool>) -> Option<bool> {
        admitted.recv_timeout(Duration::from_secs(10)).ok()
    }

    #[test]
    fn a_piece_far_ahead_waits_until_the_front_comes_near() {
        let read_ahead = ReadAhead::new(4);
        let (front, far) = (read_ahead.piece(0), read_ahead.piece(100));
        std::thread::scope(|scope| {
            let far = admit_elsewhere(scope, &far, 100);
            assert!(front.admit(0, &NOT_STOPPED), "the front goes at once");
            assert!(still_waits(&far));
            for index in 1..=96 {
                assert!(front.admit(index, &NOT_STOPPED));
            }
            assert!(still_waits(&far), "96 + 4");
            assert!(front.admit(97, &NOT_STOPPED));
            assert_eq!(goes_on(&far), Some(true));
        });
    }

    #[test]
    fn a_piece_dropped_hands_the_front_to_the_next() {
        let read_ahead = ReadAhead::new(4);
        let first = read_ahead.piece(0);
        let (second, third) = (read_ahead.piece(10), read_ahead.piece(20));
        std::thread::scope(|scope| {
            let third = admit_elsewhere(scope, &third, 20);
            drop(first);
            assert!(still_waits(&third));
            assert!(second.admit(17, &NOT_STOPPED));
            assert_eq!(goes_on(&third), Some(true));
        });
    }

    #[test]
    fn a_piece_split_at_its_start_is_still_waited_for() {
        let read_ahead = ReadAhead::new(4);
        let (empty, whole) = (read_ahead.piece(0), read_ahead.piece(0));
        drop(empty);
        assert_eq!(
            read_ahead.lock().front(),
            0,
            "the other piece has sent nothing"
        );
        drop(whole);
        assert_eq!(
            read_ahead.lock().front(),
            usize::MAX,
            "nothing left to read"
        );
    }

    #[test]
    fn a_front_that_stands_still_lets_the_others_go_until_it_moves() {
        let read_ahead = ReadAhead::new(4);
        let (front, far, farther) = (
            read_ahead.piece(0),
            read_ahead.piece(100),
            read_ahead.piece(200),
        );
        let started = Instant::now();
        assert!(far.admit(100, &NOT_STOPPED), "after the stall");
        assert!(started.elapsed() >= STALL);
        let started = Instant::now();
        assert!(farther.admit(200, &NOT_STOPPED), "the front still stands");
        assert!(started.elapsed() < STALL);
        assert!(front.admit(1, &NOT_STOPPED));
        std::thread::scope(|scope| {
            let far = admit_elsewhere(scope, &far, 101);
            assert!(still_waits(&far), "the front moved: order again");
            assert_eq!(goes_on(&far), Some(true), "until it stands still again");
        });
    }

    #[test]
    fn closing_lets_every_waiting_piece_go() {
        let read_ahead = ReadAhead::new(4);
        let (front, far) = (read_ahead.piece(0), read_ahead.piece(100));
        std::thread::scope(|scope| {
            let far = admit_elsewhere(scope, &far, 100);
            assert!(still_waits(&far));
            read_ahead.close();
            assert_eq!(goes_on(&far), Some(false));
        });
        assert!(!front.admit(0, &NOT_STOPPED), "closed");
    }
}
