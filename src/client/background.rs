//! Work a client leaves running after its caller moved on — the slower nodes of a release, the
//! requests a decided round no longer waits for, the release of a dropped guard — counted so
//! that [`Redlock::flush`](super::Redlock::flush) can wait for it.
//!
//! Such work arms no timer of its own: on a healthy node it ends with the node's reply, and a
//! timer per request measurably slows every lock on a busy client. A node that stopped
//! answering is caught by the rounds that follow (their deadlines make the node replace its
//! connection), and that, like a flush that waited long enough, abandons the work.
//!
//! The small pieces of work that every busy round leaves behind (a straggler's reply, a
//! release's slower nodes) are not spawned one task each: they are [adopted](Background::adopt)
//! by one collector task per client, which polls them all. A spawn per straggler cost a task
//! allocation, a registration with the runtime and a wake-up of its own for each; adopted, a
//! burst of replies is one wake-up of the collector.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Poll, Waker};

use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::Notify;

/// A piece of background work handed to [`Background::adopt`].
pub(crate) type Adoptable = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Counts the background tasks of one client.
#[derive(Debug, Default)]
pub(crate) struct Background {
    running: AtomicUsize,
    idle: Notify,
    abandon: Notify,
    inbox: Mutex<Inbox>,
}

/// Work adopted since the collector last looked, and how to reach the collector.
#[derive(Default)]
struct Inbox {
    arrivals: Vec<Adopted>,
    /// Whether a collector task is running (or spawned and not yet run).
    collecting: bool,
    /// Which collector that is: one dropped by a runtime shutting down must not reset the state
    /// of a collector started after it.
    generation: u64,
    /// Set while the collector waits; taken by the first arrival, so a burst wakes it once.
    waker: Option<Waker>,
}

impl std::fmt::Debug for Inbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbox")
            .field("arrivals", &self.arrivals.len())
            .field("collecting", &self.collecting)
            .finish_non_exhaustive()
    }
}

/// Adopted work and its place in the count.
struct Adopted {
    work: Adoptable,
    _done: Done,
}

impl Future for Adopted {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<()> {
        self.work.as_mut().poll(cx)
    }
}

impl Background {
    /// Hands `work` to this client's collector task, starting one on `runtime` if none runs.
    /// The work is counted until it ends, is abandoned, or a runtime shutting down drops it.
    pub(crate) fn adopt(self: &Arc<Self>, runtime: &tokio::runtime::Handle, work: Adoptable) {
        let adopted = Adopted {
            work,
            _done: self.enter(),
        };
        let mut inbox = self.inbox();
        inbox.arrivals.push(adopted);
        if inbox.collecting {
            let waker = inbox.waker.take();
            drop(inbox);
            if let Some(waker) = waker {
                waker.wake();
            }
            return;
        }
        inbox.collecting = true;
        inbox.generation += 1;
        let generation = inbox.generation;
        drop(inbox);
        runtime.spawn(collect(Arc::clone(self), generation));
    }

    fn inbox(&self) -> MutexGuard<'_, Inbox> {
        // Nothing panics while holding the lock; a poisoned one still holds consistent data.
        self.inbox.lock().unwrap_or_else(PoisonError::into_inner)
    }

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

    /// Drops all adopted work: the requests it waits on go to a node presumed dead, or a flush
    /// gave up on them.
    pub(crate) fn abandon(&self) {
        self.abandon.notify_waiters();
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

/// The collector: polls adopted work until none is left, then ends (the next adoption starts a
/// new one, so a client that goes quiet leaves no task behind). An abandonment drops all of it.
async fn collect(background: Arc<Background>, generation: u64) {
    let _stopped = CollectorStopped {
        background: Arc::clone(&background),
        generation,
    };
    let mut adopted: FuturesUnordered<Adopted> = FuturesUnordered::new();
    let abandoned = background.abandon.notified();
    tokio::pin!(abandoned);
    poll_fn(|cx| loop {
        {
            let mut inbox = background.inbox();
            adopted.extend(inbox.arrivals.drain(..));
            if adopted.is_empty() {
                inbox.collecting = false;
                inbox.waker = None;
                return Poll::Ready(());
            }
            match &mut inbox.waker {
                Some(waker) => waker.clone_from(cx.waker()),
                None => inbox.waker = Some(cx.waker().clone()),
            }
        }
        if abandoned.as_mut().poll(cx).is_ready() {
            adopted.clear();
            abandoned.set(background.abandon.notified());
            continue;
        }
        match adopted.poll_next_unpin(cx) {
            Poll::Ready(_) => continue,
            Poll::Pending => return Poll::Pending,
        }
    })
    .await;
}

/// Marks the collector as gone if a runtime shutting down drops it before it ended, so the
/// next adoption starts another; the work it held is dropped with it (its connections die with
/// that runtime too).
struct CollectorStopped {
    background: Arc<Background>,
    generation: u64,
}

impl Drop for CollectorStopped {
    fn drop(&mut self) {
        let mut inbox = self.background.inbox();
        if inbox.generation == self.generation && inbox.collecting {
            inbox.collecting = false;
            inbox.waker = None;
            let orphans = std::mem::take(&mut inbox.arrivals);
            drop(inbox);
            drop(orphans);
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::sync::oneshot;

    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    }

    /// Bounds a test's waiting.
    async fn bounded(future: impl Future<Output = ()>) {
        tokio::time::timeout(Duration::from_secs(10), future)
            .await
            .expect("the background work did not settle in time");
    }

    /// Adopts a piece of work on the current runtime and waits until it has run.
    async fn adopt_and_see_it_run(background: &Arc<Background>) {
        let (ran, heard) = oneshot::channel();
        background.adopt(
            &tokio::runtime::Handle::current(),
            Box::pin(async move {
                let _ = ran.send(());
            }),
        );
        heard.await.unwrap();
    }

    #[test]
    fn adopted_work_runs_to_its_end_and_is_counted_until_then() {
        runtime().block_on(bounded(async {
            let background = Arc::new(Background::default());
            let runtime = tokio::runtime::Handle::current();
            let (finish, finished) = oneshot::channel::<()>();
            let (ran, mut heard) = oneshot::channel();
            background.adopt(
                &runtime,
                Box::pin(async move {
                    let _ = finished.await;
                    let _ = ran.send(());
                }),
            );
            // A burst of adoptions while the collector runs is polled by the same collector.
            for _ in 0..100 {
                background.adopt(&runtime, Box::pin(async {}));
            }
            tokio::task::yield_now().await;
            assert_eq!(background.running.load(Ordering::Acquire), 1);
            assert!(heard.try_recv().is_err());
            finish.send(()).unwrap();
            background.idle().await;
            assert!(heard.try_recv().is_ok());
            assert!(!background.inbox().collecting);
        }));
    }

    #[test]
    fn abandoning_drops_adopted_work() {
        runtime().block_on(bounded(async {
            let background = Arc::new(Background::default());
            let runtime = tokio::runtime::Handle::current();
            background.adopt(&runtime, Box::pin(std::future::pending()));
            tokio::task::yield_now().await;
            assert_eq!(background.running.load(Ordering::Acquire), 1);
            background.abandon();
            background.idle().await;
            // The collector is gone, and the next adoption starts another.
            adopt_and_see_it_run(&background).await;
        }));
    }

    #[test]
    fn a_collector_dropped_with_its_runtime_is_replaced_on_the_next_one() {
        let background = Arc::new(Background::default());
        let first = runtime();
        first.block_on(async {
            let runtime = tokio::runtime::Handle::current();
            background.adopt(&runtime, Box::pin(std::future::pending()));
            tokio::task::yield_now().await;
        });
        drop(first);
        assert_eq!(background.running.load(Ordering::Acquire), 0);

        runtime().block_on(bounded(async {
            adopt_and_see_it_run(&background).await;
            background.idle().await;
        }));
    }
}
