//! The lock a request holds: the layer's side ([`RequestLock`]), which starts extending it only
//! when the request lasts long enough to need it, and what a handler sees of it ([`HeldLock`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use quorumlock::proto::{ExtendError, Instant, Lease, Released};
use quorumlock::{KeptLock, Lock, LockStatus, Token};
use tokio::sync::watch;

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
    key: Arc<str>,
    token: Token,
    shared: watch::Receiver<Shared>,
}

/// What every [`HeldLock`] of one request reads.
#[derive(Debug)]
struct Shared {
    /// The lease of the acquisition; current for as long as no extension ran.
    lease: Lease,
    phase: Phase,
}

#[derive(Debug)]
enum Phase {
    /// Held, and not extended yet: no background task runs for it.
    Held,
    /// Handed to a keep-alive task, which extends it, watches for loss and releases it.
    Kept(LockStatus),
    /// Released by the layer before it ever needed an extension.
    Released(Released),
}

impl HeldLock {
    /// The Redis key, namespace included (what `redis-cli GET` shows).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The token stored under the key on the nodes.
    pub fn token(&self) -> &Token {
        &self.token
    }

    /// The current lease: validity, extension count, per-node report.
    pub fn lease(&self) -> Lease {
        let shared = self.shared.borrow();
        match &shared.phase {
            Phase::Kept(status) => status.lease(),
            Phase::Held | Phase::Released(_) => shared.lease.clone(),
        }
    }

    /// When the current lease ends (it moves forward with every extension).
    pub fn valid_until(&self) -> Instant {
        let shared = self.shared.borrow();
        match &shared.phase {
            Phase::Kept(status) => status.valid_until(),
            Phase::Held | Phase::Released(_) => shared.lease.valid_until(),
        }
    }

    /// Validity left now; zero once lost or released.
    pub fn remaining(&self) -> Duration {
        let shared = self.shared.borrow();
        match &shared.phase {
            Phase::Kept(status) => status.remaining(),
            Phase::Held => shared.lease.remaining(now()),
            Phase::Released(_) => Duration::ZERO,
        }
    }

    /// Whether the lock can still be relied on: not lost, not released, and within the validity
    /// of its last acquire or extend round.
    pub fn is_valid(&self) -> bool {
        let shared = self.shared.borrow();
        match &shared.phase {
            Phase::Kept(status) => status.is_valid(),
            Phase::Held => shared.lease.is_valid_at(now()),
            Phase::Released(_) => false,
        }
    }

    /// Whether an extension failed and the lock is gone.
    pub fn is_lost(&self) -> bool {
        self.lost_reason().is_some()
    }

    /// Why the lock was lost, if an extension failed.
    pub fn lost_reason(&self) -> Option<ExtendError> {
        match &self.shared.borrow().phase {
            Phase::Kept(status) => status.lost_reason(),
            Phase::Held | Phase::Released(_) => None,
        }
    }

    /// Resolves when the lock is lost (with the reason) or released (with `None`).
    pub async fn lost(&self) -> Option<ExtendError> {
        match self.kept().await {
            Some(status) => status.lost().await,
            None => None,
        }
    }

    /// Whether the release round is over.
    pub fn is_released(&self) -> bool {
        match &self.shared.borrow().phase {
            Phase::Kept(status) => status.is_released(),
            Phase::Released(_) => true,
            Phase::Held => false,
        }
    }

    /// Resolves once the release round is over, with its per-node report (after a loss, the
    /// report of the release that followed it). `None` if the release could not run to its
    /// end because its runtime shut down.
    pub async fn released(&self) -> Option<Released> {
        let mut shared = self.shared.clone();
        let status = {
            let shared = shared
                .wait_for(|s| !matches!(s.phase, Phase::Held))
                .await
                .ok()?;
            match &shared.phase {
                Phase::Kept(status) => status.clone(),
                Phase::Released(released) => return Some(released.clone()),
                Phase::Held => return None,
            }
        };
        status.released().await
    }

    /// Waits until the lock is handed to a keep-alive task (its status) or released (`None`).
    async fn kept(&self) -> Option<LockStatus> {
        let mut shared = self.shared.clone();
        let shared = shared
            .wait_for(|s| !matches!(s.phase, Phase::Held))
            .await
            .ok()?;
        match &shared.phase {
            Phase::Kept(status) => Some(status.clone()),
            Phase::Held | Phase::Released(_) => None,
        }
    }
}

/// The clock, read only to tell handlers how much validity is left.
#[allow(clippy::disallowed_methods)]
fn now() -> Instant {
    Instant::now()
}

/// A release in progress, resolving once its round is over.
pub(crate) type ReleaseFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

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
    holding: Option<Holding>,
    shared: Option<watch::Sender<Shared>>,
}

#[derive(Debug)]
enum Holding {
    // Boxed: a lock is large, and this moves with the request's future.
    Plain(Box<Lock>),
    Kept(KeptLock),
}

impl RequestLock {
    /// Takes over an acquired lock, and makes what the handler sees of it.
    pub(crate) fn new(lock: Lock, key: Arc<str>) -> (Self, HeldLock) {
        let token = lock.token().clone();
        let (sender, receiver) = watch::channel(Shared {
            lease: lock.lease().clone(),
            phase: Phase::Held,
        });
        let held = HeldLock {
            key,
            token,
            shared: receiver,
        };
        let this = Self {
            holding: Some(Holding::Plain(Box::new(lock))),
            shared: Some(sender),
        };
        (this, held)
    }

    /// When the lock must start being extended; `None` once it is.
    pub(crate) fn renew_at(&self) -> Option<Instant> {
        match &self.holding {
            Some(Holding::Plain(lock)) => Some(lock.lease().renew_at()),
            _ => None,
        }
    }

    /// Hands the lock to a keep-alive task, if it is not yet; the task extends it at once if
    /// its renewal time has passed.
    pub(crate) fn keep_alive(&mut self) {
        if let Some(Holding::Plain(lock)) = self.holding.take() {
            let kept = lock.keep_alive();
            if let Some(shared) = &self.shared {
                let status = kept.status().clone();
                shared.send_modify(|s| s.phase = Phase::Kept(status));
            }
            self.holding = Some(Holding::Kept(kept));
        }
    }

    /// The lock, extended in the background from now on (for a body that carries it).
    pub(crate) fn into_kept(mut self) -> KeptLock {
        self.keep_alive();
        match self.holding.take() {
            Some(Holding::Kept(kept)) => kept,
            _ => unreachable!("keep_alive hands the lock to a KeptLock"),
        }
    }

    /// Why the lock is lost, if it is: an extension failed, or, while it was not extended, its
    /// lease ran out (the request's task was not run in time to start the extensions).
    pub(crate) fn lost_reason(&self) -> Option<ExtendError> {
        match &self.holding {
            Some(Holding::Kept(kept)) => kept.status().lost_reason(),
            Some(Holding::Plain(lock)) if !lock.is_valid() => Some(ExtendError::Expired {
                report: lock.report().clone(),
            }),
            _ => None,
        }
    }

    /// Releases the lock; the future resolves once the release round is over.
    pub(crate) fn release(mut self) -> ReleaseFuture {
        let holding = self.holding.take();
        let shared = self.shared.take();
        Box::pin(release(holding, shared))
    }
}

async fn release(holding: Option<Holding>, shared: Option<watch::Sender<Shared>>) {
    match holding {
        Some(Holding::Plain(lock)) => {
            let released = lock.release().await;
            // Usually nobody is left to tell: the request, with its HeldLock, is gone.
            if let Some(shared) = shared.filter(|s| s.receiver_count() > 0) {
                shared.send_modify(|s| s.phase = Phase::Released(released));
            }
        }
        Some(Holding::Kept(kept)) => {
            kept.release().await;
        }
        None => {}
    }
}

impl Drop for RequestLock {
    fn drop(&mut self) {
        if let (Some(Holding::Plain(lock)), Ok(runtime)) =
            (self.holding.take(), tokio::runtime::Handle::try_current())
        {
            runtime.spawn(release(Some(Holding::Plain(lock)), self.shared.take()));
        }
        // Otherwise dropping the lock does it: a kept lock is released by its task, and a
        // plain one outside a runtime expires with its TTL (its drop says so).
    }
}

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
