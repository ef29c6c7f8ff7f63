//! The lock a request holds: the layer's side ([`RequestLock`]), which starts extending it only
//! when the request lasts long enough to need it, and what a handler sees of it ([`HeldLock`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use quorumlock::proto::{ExtendError, Instant, Lease, Released};
use quorumlock::{KeptLock, Lock, LockStatus, Redlock, Token};
use tokio::sync::Notify;

/// The lock held for the current request, found in the request's extensions (with axum:
/// `Extension<HeldLock>`, or `HeldLock` / `Option<HeldLock>` directly with the `axum`
/// feature). Requests that passed through unlocked carry none.
///
/// The lock is extended while the handler runs and while the body is sent, from half-way
/// through its validity on (a request that ends sooner never needs an extension). A handler
/// doing long work can check [`is_valid`](Self::is_valid) before each step that must not run
/// twice, or race its work against [`lost`](Self::lost).
#[derive(Debug, Clone)]
pub struct HeldLock {
    shared: Arc<Shared>,
}

/// One request's lock, as the layer and every [`HeldLock`] of the request see it.
#[derive(Debug)]
struct Shared {
    key: String,
    token: Token,
    /// The client the lock came from, whose background work a release finished in a task of
    /// its own counts as, so that [`Redlock::flush`] waits for it.
    redlock: Redlock,
    stage: Mutex<Stage>,
    /// Told of every change of stage.
    changed: Notify,
}

#[derive(Debug)]
enum Stage {
    /// Held, and not extended yet: no background task runs for it.
    Plain(Lock),
    /// Handed to a keep-alive task, which extends it, watches for loss and releases it. The
    /// `KeptLock` is here while the response future has the lock, and moves to the body.
    Kept(Option<KeptLock>, LockStatus),
    /// Let go by the layer before it was ever extended: the lease, kept only while a
    /// `HeldLock` can read it, and the report once the release round is over.
    Released(Option<Lease>, Option<Released>),
}

impl Shared {
    fn stage(&self) -> MutexGuard<'_, Stage> {
        // Nothing panics while holding it; a poisoned lock still holds a consistent stage.
        self.stage
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl HeldLock {
    /// The Redis key, namespace included (what `redis-cli GET` shows).
    pub fn key(&self) -> &str {
        &self.shared.key
    }

    /// The token stored under the key on the nodes.
    pub fn token(&self) -> &Token {
        &self.shared.token
    }

    /// The current lease: validity, extension count, per-node report.
    pub fn lease(&self) -> Lease {
        match &*self.shared.stage() {
            Stage::Plain(lock) => lock.lease().clone(),
            Stage::Kept(_, status) => status.lease(),
            Stage::Released(lease, _) => lease.clone().expect(KEPT_FOR_HELD),
        }
    }

    /// When the current lease ends (it moves forward with every extension).
    pub fn valid_until(&self) -> Instant {
        match &*self.shared.stage() {
            Stage::Plain(lock) => lock.valid_until(),
            Stage::Kept(_, status) => status.valid_until(),
            Stage::Released(lease, _) => lease.as_ref().expect(KEPT_FOR_HELD).valid_until(),
        }
    }

    /// Validity left now; zero once lost or released.
    pub fn remaining(&self) -> Duration {
        match &*self.shared.stage() {
            Stage::Plain(lock) => lock.remaining(),
            Stage::Kept(_, status) => status.remaining(),
            Stage::Released(..) => Duration::ZERO,
        }
    }

    /// Whether the lock can still be relied on: not lost, not released, and within the validity
    /// of its last acquire or extend round.
    pub fn is_valid(&self) -> bool {
        match &*self.shared.stage() {
            Stage::Plain(lock) => lock.is_valid(),
            Stage::Kept(_, status) => status.is_valid(),
            Stage::Released(..) => false,
        }
    }

    /// Whether an extension failed and the lock is gone.
    pub fn is_lost(&self) -> bool {
        self.lost_reason().is_some()
    }

    /// Why the lock was lost, if an extension failed.
    pub fn lost_reason(&self) -> Option<ExtendError> {
        match &*self.shared.stage() {
            Stage::Kept(_, status) => status.lost_reason(),
            _ => None,
        }
    }

    /// Resolves when the lock is lost (with the reason) or released (with `None`).
    pub async fn lost(&self) -> Option<ExtendError> {
        match self.past_plain().await {
            Ok(status) => status.lost().await,
            Err(()) => None,
        }
    }

    /// Whether the release round is over.
    pub fn is_released(&self) -> bool {
        match &*self.shared.stage() {
            Stage::Kept(_, status) => status.is_released(),
            Stage::Released(_, released) => released.is_some(),
            Stage::Plain(_) => false,
        }
    }

    /// Resolves once the release round is over, with its per-node report (after a loss, the
    /// report of the release that followed it). `None` if the release could not run to its
    /// end because its runtime shut down.
    pub async fn released(&self) -> Option<Released> {
        loop {
            let notified = self.shared.changed.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            let status = match &*self.shared.stage() {
                Stage::Kept(_, status) => Some(status.clone()),
                Stage::Released(_, Some(released)) => return Some(released.clone()),
                Stage::Released(_, None) | Stage::Plain(_) => None,
            };
            match status {
                Some(status) => return status.released().await,
                None => notified.await,
            }
        }
    }

    /// Waits until the lock is handed to a keep-alive task (`Ok` with its status) or let go
    /// without one (`Err`).
    async fn past_plain(&self) -> Result<LockStatus, ()> {
        loop {
            let notified = self.shared.changed.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            match &*self.shared.stage() {
                Stage::Kept(_, status) => return Ok(status.clone()),
                Stage::Released(..) => return Err(()),
                Stage::Plain(_) => {}
            }
            notified.await;
        }
    }
}

/// A release in progress, resolving once its round is over. Dropped before that (the client
/// went away while the response waited for it), it finishes in the background as the client's
/// background work, so a cancelled request never leaves its keys to expire and
/// [`Redlock::flush`] waits for it.
pub(crate) struct ReleaseFuture {
    release: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    /// Where a dropped release finishes; `None` when dropping it is enough (a [`KeptLock`]'s
    /// own task releases it, counted, once the `KeptLock` is gone).
    finish_with: Option<Redlock>,
}

impl ReleaseFuture {
    pub(crate) fn new(
        release: impl Future<Output = ()> + Send + 'static,
        finish_with: Option<Redlock>,
    ) -> Self {
        Self {
            release: Some(Box::pin(release)),
            finish_with,
        }
    }
}

impl Future for ReleaseFuture {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let Some(release) = self.release.as_mut() else {
            return Poll::Ready(());
        };
        ready!(release.as_mut().poll(cx));
        self.release = None;
        Poll::Ready(())
    }
}

impl Drop for ReleaseFuture {
    fn drop(&mut self) {
        if let (Some(release), Some(redlock), Ok(runtime)) = (
            self.release.take(),
            self.finish_with.take(),
            tokio::runtime::Handle::try_current(),
        ) {
            redlock.spawn_background(&runtime, release);
        }
    }
}

/// The layer's side of a request's lock.
///
/// It starts as the plain [`Lock`] of the acquisition, with no background task: most requests
/// end long before their lease is half over, and are released by the request's own task. Only a
/// request that is still running at [`renew_at`](Self::renew_at) has it handed to a keep-alive
/// task ([`Lock::keep_alive`]), which extends it from then on and signals a loss.
///
/// Dropping it releases the lock in the background.
#[derive(Debug)]
pub(crate) struct RequestLock {
    shared: Arc<Shared>,
    /// When the keep-alive task must take over; `None` once it has.
    renew_at: Option<Instant>,
    /// Whether this still has the lock to release (not handed to a body, nor released).
    armed: bool,
}

impl RequestLock {
    /// Takes over an acquired lock on `key`, and makes what the handler sees of it.
    pub(crate) fn new(lock: Lock, key: String) -> (Self, HeldLock) {
        let renew_at = Some(lock.lease().renew_at());
        let shared = Arc::new(Shared {
            key,
            token: lock.token().clone(),
            redlock: lock.redlock().clone(),
            stage: Mutex::new(Stage::Plain(lock)),
            changed: Notify::new(),
        });
        let held = HeldLock {
            shared: shared.clone(),
        };
        let this = Self {
            shared,
            renew_at,
            armed: true,
        };
        (this, held)
    }

    /// The Redis key.
    pub(crate) fn key(&self) -> &str {
        &self.shared.key
    }

    /// When the lock must start being extended; `None` once it is.
    pub(crate) fn renew_at(&self) -> Option<Instant> {
        self.renew_at
    }

    /// Hands the lock to a keep-alive task, if it is not yet; the task extends it at once if
    /// its renewal time has passed.
    pub(crate) fn keep_alive(&mut self) {
        if self.renew_at.take().is_none() {
            return;
        }
        let mut stage = self.shared.stage();
        if let Stage::Plain(lock) = &*stage {
            let placeholder = Stage::Released(Some(lock.lease().clone()), None);
            let Stage::Plain(lock) = std::mem::replace(&mut *stage, placeholder) else {
                unreachable!("the stage was Plain a moment ago");
            };
            let kept = lock.keep_alive();
            let status = kept.status().clone();
            *stage = Stage::Kept(Some(kept), status);
            drop(stage);
            self.shared.changed.notify_waiters();
        }
    }

    /// The lock, extended in the background from now on (for a body that carries it).
    pub(crate) fn into_kept(mut self) -> KeptLock {
        self.keep_alive();
        self.armed = false;
        match &mut *self.shared.stage() {
            Stage::Kept(kept, _) => kept.take().expect("the KeptLock is handed out once"),
            _ => unreachable!("keep_alive hands the lock to a KeptLock"),
        }
    }

    /// Why the lock is lost, if it is: an extension failed, or, while it was not extended, its
    /// lease ran out (the request's task was not run in time to start the extensions).
    pub(crate) fn lost_reason(&self) -> Option<ExtendError> {
        match &*self.shared.stage() {
            Stage::Kept(_, status) => status.lost_reason(),
            Stage::Plain(lock) if !lock.is_valid() => Some(ExtendError::Expired {
                report: lock.report().clone(),
            }),
            _ => None,
        }
    }

    /// Releases the lock; the future resolves once the release round is over.
    pub(crate) fn release(mut self) -> ReleaseFuture {
        self.armed = false;
        let redlock = self.shared.redlock.clone();
        ReleaseFuture::new(release(self.shared.clone()), Some(redlock))
    }
}

/// Releases the lock of `shared`, and tells its readers once that is done.
async fn release(shared: Arc<Shared>) {
    let taken = {
        let mut stage = shared.stage();
        match &mut *stage {
            Stage::Plain(lock) => {
                // The lease is only worth a copy if a HeldLock can still read it; none can be
                // made any more, so without one now there never will be.
                let lease = (Arc::strong_count(&shared) > 1).then(|| lock.lease().clone());
                let Stage::Plain(lock) =
                    std::mem::replace(&mut *stage, Stage::Released(lease, None))
                else {
                    unreachable!("the stage was Plain a moment ago");
                };
                Some(Ok(lock))
            }
            Stage::Kept(kept, _) => kept.take().map(Err),
            Stage::Released(..) => None,
        }
    };
    match taken {
        Some(Ok(lock)) => {
            let released = lock.release().await;
            if Arc::strong_count(&shared) > 1 {
                if let Stage::Released(_, report) = &mut *shared.stage() {
                    *report = Some(released);
                }
                shared.changed.notify_waiters();
            }
        }
        Some(Err(kept)) => {
            kept.release().await;
        }
        None => {}
    }
}

impl Drop for RequestLock {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let mut stage = self.shared.stage();
        match &mut *stage {
            Stage::Kept(kept, _) => {
                // Its task releases it once the KeptLock is gone.
                let kept = kept.take();
                drop(stage);
                drop(kept);
            }
            Stage::Plain(_) => match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    drop(stage);
                    let shared = self.shared.clone();
                    self.shared
                        .redlock
                        .spawn_background(&runtime, release(shared));
                }
                Err(_) => {
                    // Dropping the lock outside a runtime says it cannot release it; its keys
                    // expire with their TTL.
                    let lease = match &*stage {
                        Stage::Plain(lock) => lock.lease().clone(),
                        _ => unreachable!("the stage was Plain a moment ago"),
                    };
                    let lock = std::mem::replace(&mut *stage, Stage::Released(Some(lease), None));
                    drop(stage);
                    drop(lock);
                    self.shared.changed.notify_waiters();
                }
            },
            Stage::Released(..) => {}
        }
    }
}

/// Why a released lock's lease is there when a `HeldLock` asks.
const KEPT_FOR_HELD: &str = "a released lock keeps its lease while a HeldLock exists";

#[cfg(feature = "axum")]
mod extract {
    use axum::extract::{FromRequestParts, OptionalFromRequestParts};
    use http::request::Parts;
    use http::StatusCode;

    use super::HeldLock;

    /// Fails with `500`: a handler asking for `HeldLock` on a route without the layer is a
    /// setup mistake. Ask for `Option<HeldLock>` where requests may pass unlocked.
    impl<S: Send + Sync> FromRequestParts<S> for HeldLock {
        type Rejection = (StatusCode, &'static str);

        async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
            parts.extensions.get::<HeldLock>().cloned().ok_or((
                StatusCode::INTERNAL_SERVER_ERROR,
                "this route is not behind a LockLayer, or its key extractor found no key",
            ))
        }
    }

    impl<S: Send + Sync> OptionalFromRequestParts<S> for HeldLock {
        type Rejection = std::convert::Infallible;

        async fn from_request_parts(
            parts: &mut Parts,
            _: &S,
        ) -> Result<Option<Self>, Self::Rejection> {
            Ok(parts.extensions.get::<HeldLock>().cloned())
        }
    }
}
