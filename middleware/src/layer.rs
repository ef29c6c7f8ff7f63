//! The layer and its settings.

use std::fmt;
use std::future::IntoFuture;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode};
use quorumlock::proto::AcquireError;
use quorumlock::{LockRequest, Redlock, Retry};
use tower_layer::Layer;

use crate::key::{KeyExtractor, KeyFormat};
use crate::rejection::{DefaultRejection, OnRejection, Rejection, RejectionKind};
use crate::service::LockService;

/// What a request does when its resource is locked by someone else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Contention {
    /// Answer without waiting for the holder: with the contended status (`423 Locked` by
    /// default) and `Retry-After` after a few quick attempts
    /// ([`LockLayer::reject_retries`], by default two retries 10–50 ms apart). The retries
    /// are there because contenders that arrive together can split the nodes' votes so that
    /// none of them wins, though nobody holds the lock.
    Reject,
    /// Retry (with the client's retry delay and jitter) for up to this long, then answer as
    /// [`Reject`](Self::Reject) does.
    Wait(Duration),
}

/// What happens to a response whose lock is lost before it is complete (an extension failed:
/// the keys expired, were deleted or taken, or no quorum confirmed in time).
///
/// Either way the handler is never cancelled by the layer: it can watch
/// [`HeldLock::lost`](crate::HeldLock::lost) and stop on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OnLoss {
    /// Fail closed, so a client never receives a complete response produced without the lock:
    /// lost before the handler returned, its response is dropped and the client gets the
    /// [`RejectionKind::Lost`] answer (`503`); lost while the body streams, the body ends with
    /// an error, which aborts the connection (the client sees a truncated response).
    #[default]
    Fail,
    /// Deliver the response as it is; only [`HeldLock`](crate::HeldLock) tells of the loss.
    Continue,
}

/// Wraps a service so that each request holds a Redlock lock on the resource its key names,
/// from before the handler runs until its response body is over (released just before the
/// response completes), has failed or was dropped. See the crate documentation for the whole
/// behaviour.
pub struct LockLayer<K, R = DefaultRejection> {
    key: Arc<K>,
    policy: Policy<R>,
}

impl<K, R> Clone for LockLayer<K, R> {
    fn clone(&self) -> Self {
        Self {
            key: self.key.clone(),
            policy: self.policy.clone(),
        }
    }
}

impl<K, R> fmt::Debug for LockLayer<K, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockLayer")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl<K: KeyExtractor> LockLayer<K> {
    /// Locks, for each request, the resource `key` names, through `redlock`. Defaults: keys in
    /// namespace `quorumlock:http:`, names over 128 bytes hashed, the client's TTL, contention
    /// answered with `423` after two quick retries, fail closed on loss.
    pub fn new(redlock: Redlock, key: K) -> Self {
        Self {
            key: Arc::new(key),
            policy: Policy {
                redlock,
                keys: KeyFormat {
                    namespace: KeyFormat::DEFAULT_NAMESPACE.to_owned(),
                    max_len: KeyFormat::DEFAULT_MAX_LEN,
                },
                ttl: None,
                contention: Contention::Reject,
                reject_retries: 2,
                contended_status: StatusCode::LOCKED,
                contended_retry_after: None,
                unavailable_retry_after: Duration::from_secs(2),
                on_loss: OnLoss::Fail,
                on_rejection: Arc::new(DefaultRejection),
            },
        }
    }
}

impl<K, R> LockLayer<K, R> {
    /// Prefix of every Redis key this layer locks (default `quorumlock:http:`). Give each
    /// application its own, so request input can never name another application's keys.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.policy.keys.namespace = namespace.into();
        self
    }

    /// Longest resource name, in bytes, kept verbatim in the Redis key (default 128); longer
    /// names, and names with bytes other than printable ASCII, are replaced by their SHA-256.
    pub fn max_key_len(mut self, max: usize) -> Self {
        self.policy.keys.max_len = max;
        self
    }

    /// Key lifetime for these locks (default: the client's). Extensions keep a lock alive past
    /// it for as long as the request runs; it bounds how long a crashed holder blocks others.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.policy.ttl = Some(ttl);
        self
    }

    /// Reject contended requests at once, or let them wait (default: reject).
    pub fn contention(mut self, contention: Contention) -> Self {
        self.policy.contention = contention;
        self
    }

    /// Quick retries before a contended request is rejected (default 2; 0 for a single
    /// attempt). See [`Contention::Reject`].
    pub fn reject_retries(mut self, retries: u32) -> Self {
        self.policy.reject_retries = retries;
        self
    }

    /// Shorthand for `contention(Contention::Wait(deadline))`.
    pub fn wait_up_to(self, deadline: Duration) -> Self {
        self.contention(Contention::Wait(deadline))
    }

    /// Status of the default contended response (default `423 Locked`; `409 Conflict` and
    /// `429 Too Many Requests` are common choices).
    pub fn contended_status(mut self, status: StatusCode) -> Self {
        self.policy.contended_status = status;
        self
    }

    /// A fixed `Retry-After` for contended responses. Default: how long the holder's keys still
    /// live on enough nodes for a quorum to be free, as the nodes report it (a holder that
    /// finishes releases sooner, one that extends holds longer); the lock TTL when the nodes
    /// could not tell.
    pub fn contended_retry_after(mut self, after: Duration) -> Self {
        self.policy.contended_retry_after = Some(after);
        self
    }

    /// `Retry-After` of `503` responses when no quorum answered (default 2 s).
    pub fn unavailable_retry_after(mut self, after: Duration) -> Self {
        self.policy.unavailable_retry_after = after;
        self
    }

    /// What happens to a response whose lock is lost (default [`OnLoss::Fail`]).
    pub fn on_loss(mut self, on_loss: OnLoss) -> Self {
        self.policy.on_loss = on_loss;
        self
    }

    /// Replaces the default rejection responses.
    pub fn on_rejection<R2: OnRejection>(self, on_rejection: R2) -> LockLayer<K, R2> {
        let Policy {
            redlock,
            keys,
            ttl,
            contention,
            reject_retries,
            contended_status,
            contended_retry_after,
            unavailable_retry_after,
            on_loss,
            on_rejection: _,
        } = self.policy;
        LockLayer {
            key: self.key,
            policy: Policy {
                redlock,
                keys,
                ttl,
                contention,
                reject_retries,
                contended_status,
                contended_retry_after,
                unavailable_retry_after,
                on_loss,
                on_rejection: Arc::new(on_rejection),
            },
        }
    }

    /// The Redis key this layer locks for resource `name`: what to look for with `redis-cli`.
    pub fn redis_key(&self, name: &str) -> String {
        self.policy.keys.redis_key(name)
    }
}

impl<S, K, R> Layer<S> for LockLayer<K, R> {
    type Service = LockService<S, K, R>;

    fn layer(&self, inner: S) -> Self::Service {
        LockService::new(inner, self.key.clone(), Arc::new(self.policy.clone()))
    }
}

/// The acquisition of one request's lock.
pub(crate) type Acquisition = <LockRequest as IntoFuture>::IntoFuture;

/// Pause between the quick attempts of reject mode, and its jitter: short, and spread so that
/// contenders who split the votes do not collide again.
const REJECT_RETRY_DELAY: Duration = Duration::from_millis(30);
const REJECT_RETRY_JITTER: Duration = Duration::from_millis(20);

/// Everything the service and its futures need besides the key extractor.
pub(crate) struct Policy<R> {
    pub(crate) redlock: Redlock,
    pub(crate) keys: KeyFormat,
    ttl: Option<Duration>,
    contention: Contention,
    reject_retries: u32,
    contended_status: StatusCode,
    contended_retry_after: Option<Duration>,
    unavailable_retry_after: Duration,
    pub(crate) on_loss: OnLoss,
    on_rejection: Arc<R>,
}

impl<R> Clone for Policy<R> {
    fn clone(&self) -> Self {
        Self {
            redlock: self.redlock.clone(),
            keys: self.keys.clone(),
            ttl: self.ttl,
            contention: self.contention,
            reject_retries: self.reject_retries,
            contended_status: self.contended_status,
            contended_retry_after: self.contended_retry_after,
            unavailable_retry_after: self.unavailable_retry_after,
            on_loss: self.on_loss,
            on_rejection: self.on_rejection.clone(),
        }
    }
}

impl<R> fmt::Debug for Policy<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("keys", &self.keys)
            .field("ttl", &self.ttl)
            .field("contention", &self.contention)
            .field("reject_retries", &self.reject_retries)
            .field("contended_status", &self.contended_status)
            .field("contended_retry_after", &self.contended_retry_after)
            .field("unavailable_retry_after", &self.unavailable_retry_after)
            .field("on_loss", &self.on_loss)
            .finish_non_exhaustive()
    }
}

impl<R: OnRejection> Policy<R> {
    /// The acquisition for one request.
    pub(crate) fn acquisition(&self, key: String) -> Acquisition {
        let client_retry = *self.redlock.config().retry();
        let retry = match self.contention {
            Contention::Wait(deadline) => {
                Retry::until(deadline, client_retry.delay, client_retry.jitter)
            }
            Contention::Reject => {
                Retry::new(self.reject_retries, REJECT_RETRY_DELAY, REJECT_RETRY_JITTER)
            }
        };
        let request = self.redlock.lock(key).retry(retry);
        match self.ttl {
            Some(ttl) => request.ttl(ttl),
            None => request,
        }
        .into_future()
    }

    fn ttl(&self) -> Duration {
        self.ttl.unwrap_or_else(|| self.redlock.config().ttl())
    }

    /// Classifies a failed acquisition.
    pub(crate) fn acquire_failed(&self, error: quorumlock::Error, key: String) -> Rejection {
        let (kind, status, retry_after) = if error.is_contended() {
            let after = self
                .contended_retry_after
                .or_else(|| error.retry_after())
                .unwrap_or_else(|| self.ttl());
            (
                RejectionKind::Contended(error),
                self.contended_status,
                Some(after),
            )
        } else if matches!(
            error,
            quorumlock::Error::Acquire(
                AcquireError::NoQuorum { .. } | AcquireError::ValidityTooShort { .. }
            )
        ) {
            (
                RejectionKind::Unavailable(error),
                StatusCode::SERVICE_UNAVAILABLE,
                Some(self.unavailable_retry_after),
            )
        } else {
            (
                RejectionKind::Failed(error),
                StatusCode::INTERNAL_SERVER_ERROR,
                None,
            )
        };
        Rejection::new(kind, status, retry_after, Some(key))
    }

    /// Builds the response for `rejection`.
    pub(crate) fn respond(&self, rejection: Rejection) -> Response<Bytes> {
        tracing::debug!(
            status = rejection.status().as_u16(),
            key = rejection.key(),
            reason = %rejection,
            "request answered by the lock layer"
        );
        self.on_rejection.on_rejection(rejection)
    }

    /// The status of a lost-lock rejection.
    pub(crate) fn lost_status(&self) -> StatusCode {
        StatusCode::SERVICE_UNAVAILABLE
    }
}
