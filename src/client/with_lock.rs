//! Holding a lock around a closure, with automatic extension and a lost signal.

use std::future::Future;

use tokio::sync::watch;

use crate::proto::{ExtendError, Instant, Lease};

use super::{Error, Lock};

#[derive(Debug, Clone)]
struct Held {
    lease: Lease,
    lost: Option<ExtendError>,
}

/// What the closure of [`Redlock::with_lock`](super::Redlock::with_lock) sees of its lock. Clone
/// it into spawned tasks to let them watch for loss.
#[derive(Debug, Clone)]
pub struct LockContext {
    held: watch::Receiver<Held>,
}

impl LockContext {
    /// The current lease (it changes with every extension).
    pub fn lease(&self) -> Lease {
        self.held.borrow().lease.clone()
    }

    /// When the current lease ends.
    pub fn valid_until(&self) -> Instant {
        self.held.borrow().lease.valid_until()
    }

    /// Whether the lock was lost.
    pub fn is_lost(&self) -> bool {
        self.held.borrow().lost.is_some()
    }

    /// Resolves once the lock is no longer held: lost (an extension failed) or released at the
    /// end of `with_lock`. Returns why it was lost, or `None` after a normal release.
    pub async fn lost(&self) -> Option<ExtendError> {
        let mut held = self.held.clone();
        let lost = match held.wait_for(|h| h.lost.is_some()).await {
            Ok(state) => state.lost.clone(),
            Err(_) => None,
        };
        lost
    }
}

/// Extends the lease half-way through each validity window until an extension fails.
async fn keep_alive(lock: &Lock, held: &watch::Sender<Held>) -> ExtendError {
    let mut lease = lock.lease().clone();
    loop {
        tokio::time::sleep_until(tokio::time::Instant::from_std(lease.renew_at())).await;
        match lock.redlock().extend_lease(lock.config(), &lease).await {
            Ok(extended) => {
                lease = extended;
                held.send_modify(|h| h.lease = lease.clone());
            }
            Err(error) => {
                held.send_modify(|h| h.lost = Some(error.clone()));
                return error;
            }
        }
    }
}

pub(crate) async fn hold<F, Fut, T>(mut lock: Lock, f: F) -> Result<T, Error>
where
    F: FnOnce(LockContext) -> Fut,
    Fut: Future<Output = T>,
{
    let (sender, receiver) = watch::channel(Held {
        lease: lock.lease().clone(),
        lost: None,
    });
    let work = f(LockContext { held: receiver });
    let outcome = {
        let keep_alive = keep_alive(&lock, &sender);
        tokio::pin!(work, keep_alive);
        tokio::select! {
            biased;
            value = &mut work => Ok(value),
            lost = &mut keep_alive => Err(Error::Lost(lost)),
        }
    };
    let latest = sender.borrow().lease.clone();
    lock.set_lease(latest);
    lock.release().await;
    outcome
}
