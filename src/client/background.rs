//! Work a client leaves running after its caller moved on — the slower nodes of a release, the
//! release of a dropped guard — counted so that [`Redlock::flush`](super::Redlock::flush) can
//! wait for it.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

/// Counts the background tasks of one client.
#[derive(Debug, Default)]
pub(crate) struct Background {
    running: AtomicUsize,
    idle: Notify,
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
struct Done(Arc<Background>);

impl Drop for Done {
    fn drop(&mut self) {
        if self.0.running.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}
