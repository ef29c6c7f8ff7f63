//! Work a client leaves running after its caller moved on — the slower nodes of a release, the
//! requests a decided round no longer waits for, the release of a dropped guard — counted so
//! that [`Redlock::flush`](super::Redlock::flush) can wait for it.
//!
//! Such work arms no timer of its own: on a healthy node it ends with the node's reply, and a
//! timer per request measurably slows every lock on a busy client. A node that stopped
//! answering is caught by the rounds that follow (their deadlines make the node replace its
//! connection), and that, like a flush that waited long enough, abandons the work.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

/// Counts the background tasks of one client.
#[derive(Debug, Default)]
pub(crate) struct Background {
    running: AtomicUsize,
    idle: Notify,
    abandon: Notify,
}

impl Background {
    /// Spawns `task` on `runtime`, counted until it ends or the runtime drops it.
    pub(crate) fn spawn<F>(self: &Arc<Self>, runtime: &tokio::runtime::Handle, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.running.fetch_add(1, Ordering::AcqRel);
        let done = Done(Arc::clone(self));
        runtime.spawn(async move {
            let _done = done;
            task.await;
        });
    }

    /// Counts work done in a task of its own (one not spawned here) until the guard is dropped.
    pub(crate) fn enter(self: &Arc<Self>) -> Done {
        self.running.fetch_add(1, Ordering::AcqRel);
        Done(Arc::clone(self))
    }

    /// Tells every task waiting in [`abandoned`](Self::abandoned) to give up.
    pub(crate) fn abandon(&self) {
        self.abandon.notify_waiters();
    }

    /// Resolves at the next [`abandon`](Self::abandon) after its first poll.
    pub(crate) async fn abandoned(&self) {
        self.abandon.notified().await;
    }

    /// Resolves once no counted task is running.
    pub(crate) async fn idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            // Registered before the check, so a task ending in between still wakes us.
            notified.as_mut().enable();
            if self.running.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// Uncounts its task when dropped: when the task ends, or when a runtime shutting down drops
/// it unfinished.
#[derive(Debug)]
pub(crate) struct Done(Arc<Background>);

impl Drop for Done {
    fn drop(&mut self) {
        if self.0.running.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}
