//! Holding a lock around a closure: the lock is kept alive in the background
//! ([`Lock::keep_alive`]) and the closure is cancelled if it is lost.

use std::future::Future;

use super::{Error, Lock, LockStatus};

/// What the closure of [`Redlock::with_lock`](super::Redlock::with_lock) sees of its lock: the
/// [`LockStatus`] of the lock `with_lock` keeps alive (current lease, `is_lost`, `lost()`).
/// Clone it into spawned tasks to let them watch for loss.
pub type LockContext = LockStatus;

pub(crate) async fn hold<F, Fut, T>(lock: Lock, f: F) -> Result<T, Error>
where
    F: FnOnce(LockContext) -> Fut,
    Fut: Future<Output = T>,
{
    let kept = lock.keep_alive();
    let status = kept.status().clone();
    let work = f(status.clone());
    let outcome = tokio::select! {
        biased;
        value = work => Ok(value),
        // `None` means the keeper task was cancelled with its runtime; the closure then runs
        // on without a lost signal, as it would have without `with_lock`.
        Some(lost) = status.lost() => Err(Error::Lost(lost)),
    };
    kept.release().await;
    outcome
}
