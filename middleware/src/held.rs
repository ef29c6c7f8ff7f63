//! What a handler sees of the lock its request holds.

use std::sync::Arc;
use std::time::Duration;

use quorumlock::proto::{ExtendError, Instant, Lease};
use quorumlock::{LockStatus, Token};

/// The lock held for the current request, found in the request's extensions (with axum:
/// `Extension<HeldLock>`, or `HeldLock` / `Option<HeldLock>` directly with the `axum`
/// feature). Requests that passed through unlocked carry none.
///
/// The lock is extended in the background while the handler runs and while the body is sent.
/// A handler doing long work can check [`is_valid`](Self::is_valid) before each step that must
/// not run twice, or race its work against [`lost`](Self::lost).
#[derive(Debug, Clone)]
pub struct HeldLock {
    key: Arc<str>,
    status: LockStatus,
}

impl HeldLock {
    pub(crate) fn new(key: Arc<str>, status: LockStatus) -> Self {
        Self { key, status }
    }

    /// The Redis key, namespace included (what `redis-cli GET` shows).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The token stored under the key on the nodes.
    pub fn token(&self) -> &Token {
        self.status.token()
    }

    /// The current lease: validity, extension count, per-node report.
    pub fn lease(&self) -> Lease {
        self.status.lease()
    }

    /// When the current lease ends (it moves forward with every extension).
    pub fn valid_until(&self) -> Instant {
        self.status.valid_until()
    }

    /// Validity left now; zero once lost or released.
    pub fn remaining(&self) -> Duration {
        self.status.remaining()
    }

    /// Whether the lock can still be relied on.
    pub fn is_valid(&self) -> bool {
        self.status.is_valid()
    }

    /// Whether an extension failed and the lock is gone.
    pub fn is_lost(&self) -> bool {
        self.status.is_lost()
    }

    /// Resolves when the lock is lost (with the reason) or released (with `None`).
    pub async fn lost(&self) -> Option<ExtendError> {
        self.status.lost().await
    }

    /// The client-side view this is built on, with the full [`LockStatus`] API.
    pub fn status(&self) -> &LockStatus {
        &self.status
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
