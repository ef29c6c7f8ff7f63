//! A lock that extends itself in a background task, tells when it is lost, and releases when
//! dropped: for locks that outlive the function that took them (a response body, a leader's
//! term), where [`Redlock::with_lock`](super::Redlock::with_lock) and its closure do not fit.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{oneshot, watch};

use crate::proto::{ExtendError, Instant, Lease, Released, Token};

use super::background::Done;
use super::{clock, Lock, Redlock};

/// Where a kept lock is in its life.
#[derive(Debug, Clone)]
enum Phase {
    /// Held and being extended (or lost and about to be released).
    Held,
    /// The release round has started: the holder asked for it, dropped the handle, or the
    /// lock was lost.
    Releasing,
    /// The release round is over.
    Released(Released),
}

#[derive(Debug, Clone)]
struct State {
    lease: Lease,
    lost: Option<ExtendError>,
    phase: Phase,
}

impl Lock {
    /// Hands the lock to a background task that extends it half-way through each validity
    /// window (at [`Lease::renew_at`]) with the lock's TTL, for as long as the returned
    /// [`KeptLock`] lives. Dropping the `KeptLock`, or calling [`KeptLock::release`], releases
    /// the lock.
    ///
    /// If an extension fails (the keys are gone or taken, no quorum answered in time, or a
    /// `max_extensions` / `max_hold` limit is reached), the lock is *lost*:
    /// [`LockStatus::lost`] resolves with the reason, extension stops, and the task releases
    /// whatever keys of ours are left at once.
    ///
    /// The task runs on the current runtime or, called from a thread outside any, on the one
    /// the lock was taken on. If that runtime has shut down, there is nothing left to run it:
    /// the lock then expires with its TTL, and [`KeptLock::release`] and
    /// [`LockStatus::released`] give `None`.
    pub fn keep_alive(self) -> KeptLock {
        let lease = self.lease().clone();
        let resources: Arc<[String]> = lease.resources().into();
        let token = lease.token().clone();
        let (sender, receiver) = watch::channel(State {
            lease,
            lost: None,
            phase: Phase::Held,
        });
        let status = LockStatus {
            resources,
            token,
            state: receiver,
        };
        let (stop, stopped) = oneshot::channel();
        let redlock = self.redlock().clone();
        let runtime = self.runtime();
        let task = keep(self, sender, stopped);
        match runtime {
            // A runtime that shut down drops the task, and with it the lock and the status's
            // sender: the status then reads as cancelled.
            Some(runtime) => drop(runtime.spawn(task)),
            None => drop(task),
        }
        KeptLock {
            status,
            stop: Some(stop),
            redlock,
        }
    }
}

/// A lock extended in the background by [`Lock::keep_alive`]. Dropping it releases the lock
/// in the background task; [`release`](Self::release) does the same and waits for the result.
#[derive(Debug)]
#[must_use = "dropping a kept lock releases it at once"]
pub struct KeptLock {
    status: LockStatus,
    /// The stop signal. It carries the count of the release as background work, taken at the
    /// moment of the stop, so that a flush right after dropping the lock waits for it.
    stop: Option<oneshot::Sender<Done>>,
    redlock: Redlock,
}

impl Drop for KeptLock {
    fn drop(&mut self) {
        self.stop();
    }
}

impl KeptLock {
    /// Tells the task to stop extending and release.
    fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            // The task may be gone (its runtime shut down); then nothing is left to count.
            let _ = stop.send(self.redlock.background_work());
        }
    }

    /// A view of the lock that can be cloned into other tasks (or request extensions) to read
    /// the current lease and to watch for loss.
    pub fn status(&self) -> &LockStatus {
        &self.status
    }

    /// Stops extending and releases the lock on every node. Returns the release's per-node
    /// report; if the lock had been lost, that is the report of the release that followed the
    /// loss. `None` only if the background task was cancelled, which happens when its runtime
    /// shuts down.
    pub async fn release(mut self) -> Option<Released> {
        self.stop();
        self.status.released().await
    }
}

/// What a holder (or anyone it hands a clone to) can see of a [`KeptLock`]: the resources and
/// token, the current lease (it changes with every extension), and whether the lock was lost.
///
/// A `LockStatus` never keeps the lock alive: once the `KeptLock` is gone the lock is released
/// and [`lost`](Self::lost) resolves with `None`.
#[derive(Debug, Clone)]
pub struct LockStatus {
    resources: Arc<[String]>,
    token: Token,
    state: watch::Receiver<State>,
}

impl LockStatus {
    /// The locked resources.
    pub fn resources(&self) -> &[String] {
        &self.resources
    }

    /// The token stored under every key.
    pub fn token(&self) -> &Token {
        &self.token
    }

    /// The current lease.
    pub fn lease(&self) -> Lease {
        self.state.borrow().lease.clone()
    }

    /// When the current lease ends.
    pub fn valid_until(&self) -> Instant {
        self.state.borrow().lease.valid_until()
    }

    /// Validity left now: zero once the lock is lost or released.
    pub fn remaining(&self) -> Duration {
        if self.is_valid() {
            self.state.borrow().lease.remaining(clock::now())
        } else {
            Duration::ZERO
        }
    }

    /// Whether the lock can still be relied on now: not lost, not released, and within the
    /// validity of the last acquire or extend round.
    pub fn is_valid(&self) -> bool {
        let state = self.state.borrow();
        state.lost.is_none()
            && matches!(state.phase, Phase::Held)
            && state.lease.is_valid_at(clock::now())
    }

    /// Whether an extension failed.
    pub fn is_lost(&self) -> bool {
        self.state.borrow().lost.is_some()
    }

    /// Why the lock was lost, if it was.
    pub fn lost_reason(&self) -> Option<ExtendError> {
        self.state.borrow().lost.clone()
    }

    /// Whether the release round has finished.
    pub fn is_released(&self) -> bool {
        matches!(self.state.borrow().phase, Phase::Released(_))
    }

    /// Resolves once the lock is no longer held: with the reason when an extension failed, or
    /// with `None` once the holder let it go (released it or dropped its `KeptLock`).
    pub async fn lost(&self) -> Option<ExtendError> {
        let mut state = self.state.clone();
        let outcome = state
            .wait_for(|s| s.lost.is_some() || !matches!(s.phase, Phase::Held))
            .await
            .ok()
            .and_then(|s| s.lost.clone());
        outcome
    }

    /// Resolves once the release round is over, with its per-node report. `None` if the
    /// background task was cancelled (its runtime shut down) before releasing.
    pub async fn released(&self) -> Option<Released> {
        let mut state = self.state.clone();
        let outcome = state
            .wait_for(|s| matches!(s.phase, Phase::Released(_)))
            .await
            .ok()
            .and_then(|s| match &s.phase {
                Phase::Released(released) => Some(released.clone()),
                _ => None,
            });
        outcome
    }
}

/// The background task: extend until stopped or lost, then release.
async fn keep(mut lock: Lock, state: watch::Sender<State>, mut stop: oneshot::Receiver<Done>) {
    let mut counted = None;
    {
        let extending = async {
            let mut lease = lock.lease().clone();
            loop {
                tokio::time::sleep_until(tokio::time::Instant::from_std(lease.renew_at())).await;
                match lock.redlock().extend_lease(lock.config(), &lease).await {
                    Ok(extended) => {
                        lease = extended;
                        state.send_modify(|s| s.lease = lease.clone());
                    }
                    Err(error) => {
                        tracing::warn!(
                            resources = ?lease.resources(),
                            %error,
                            "kept lock lost"
                        );
                        state.send_modify(|s| s.lost = Some(error));
                        return;
                    }
                }
            }
        };
        // An extension round in flight when the stop comes is dropped: the release that
        // follows is compare-and-delete, so a late extension reply changes nothing.
        tokio::select! {
            stopped = &mut stop => counted = stopped.ok(),
            () = extending => {}
        }
    }
    // From here on the release is background work a flush waits for.
    let _counted = counted.unwrap_or_else(|| lock.redlock().background_work());
    state.send_modify(|s| s.phase = Phase::Releasing);
    let latest = state.borrow().lease.clone();
    lock.set_lease(latest);
    let released = lock.release().await;
    state.send_modify(|s| s.phase = Phase::Released(released));
}
