//! The shared state of the hand-off scenario (S3): who holds the baton, when it was last let
//! go, and a check that no two contenders are ever inside at once.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::stats::Samples;

/// What every contender of one S3 run shares.
#[derive(Debug)]
pub struct Baton {
    inside: AtomicU32,
    overlaps: AtomicU64,
    state: Mutex<State>,
    /// Acquisitions so far, for async contenders sitting out their turn.
    turns: watch::Sender<u64>,
    /// The same, for blocking contenders.
    turned: Condvar,
}

#[derive(Debug)]
struct State {
    acquisitions: u64,
    /// Set by a holder just before it calls release; taken by the next acquisition.
    released_at: Option<Instant>,
    gaps: Samples,
}

impl Default for Baton {
    fn default() -> Self {
        Self::new()
    }
}

impl Baton {
    /// Nobody holds it yet.
    pub fn new() -> Self {
        Self {
            inside: AtomicU32::new(0),
            overlaps: AtomicU64::new(0),
            state: Mutex::new(State {
                acquisitions: 0,
                released_at: None,
                gaps: Samples::with_capacity(64 * 1024),
            }),
            turns: watch::Sender::new(0),
            turned: Condvar::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A contender got the lock at `acquired_at` and enters the critical section. Returns the
    /// number of this acquisition, to wait on in [`wait_turn`](Self::wait_turn).
    pub fn enter(&self, acquired_at: Instant) -> u64 {
        if self.inside.fetch_add(1, Ordering::AcqRel) != 0 {
            self.overlaps.fetch_add(1, Ordering::Relaxed);
        }
        let acquisition = {
            let mut state = self.state();
            state.acquisitions += 1;
            if let Some(released_at) = state.released_at.take() {
                state
                    .gaps
                    .record(acquired_at.saturating_duration_since(released_at));
            }
            state.acquisitions
        };
        self.turns.send_replace(acquisition);
        self.turned.notify_all();
        acquisition
    }

    /// The holder leaves the critical section and is about to call release.
    pub fn leave(&self) {
        self.inside.fetch_sub(1, Ordering::AcqRel);
        self.state().released_at = Some(Instant::now());
    }

    /// Waits until someone else acquired after acquisition `mine`, or until `deadline`.
    pub async fn wait_turn(&self, mine: u64, deadline: Instant) {
        let mut turns = self.turns.subscribe();
        let _ = tokio::time::timeout_at(deadline.into(), turns.wait_for(|&n| n > mine)).await;
    }

    /// [`wait_turn`](Self::wait_turn) for a blocking contender.
    pub fn wait_turn_blocking(&self, mine: u64, deadline: Instant) {
        let mut state = self.state();
        while state.acquisitions <= mine {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            state = self
                .turned
                .wait_timeout(state, left.min(Duration::from_millis(100)))
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
    }

    /// Acquisitions so far.
    pub fn acquisitions(&self) -> u64 {
        self.state().acquisitions
    }

    /// Times a contender entered while another was inside.
    pub fn overlaps(&self) -> u64 {
        self.overlaps.load(Ordering::Relaxed)
    }

    /// The hand-off gaps recorded so far.
    pub fn take_gaps(&self) -> Samples {
        std::mem::take(&mut self.state().gaps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_entries_are_counted() {
        let baton = Baton::new();
        let now = Instant::now();
        baton.enter(now);
        baton.enter(now);
        assert_eq!(baton.overlaps(), 1);
        baton.leave();
        baton.leave();
        baton.enter(now);
        assert_eq!(baton.overlaps(), 1);
        assert_eq!(baton.acquisitions(), 3);
    }

    #[test]
    fn a_gap_is_recorded_once_per_release() {
        let baton = Baton::new();
        baton.enter(Instant::now());
        baton.leave();
        baton.enter(Instant::now());
        baton.enter(Instant::now());
        assert_eq!(baton.take_gaps().len(), 1);
    }

    #[test]
    fn a_blocking_wait_returns_once_someone_else_acquired() {
        let baton = Baton::new();
        let mine = baton.enter(Instant::now());
        baton.leave();
        std::thread::scope(|scope| {
            scope.spawn(|| baton.enter(Instant::now()));
            baton.wait_turn_blocking(mine, Instant::now() + Duration::from_secs(30));
        });
        assert!(baton.acquisitions() > mine);
    }
}
