//! The responses the layer gives instead of calling the handler, and how to replace them.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, Response, StatusCode};
use quorumlock::proto::{AcquireError, ExtendError};

use crate::key::KeyRejection;

/// Why a request was answered by the layer rather than by its handler. Passed to
/// [`LockLayer::on_rejection`](crate::LockLayer::on_rejection); [`into_response`]
/// gives the default answer.
///
/// [`into_response`]: Self::into_response
#[derive(Debug)]
pub struct Rejection {
    kind: RejectionKind,
    status: StatusCode,
    retry_after: Option<Duration>,
    key: Option<String>,
}

/// The cause of a [`Rejection`].
#[derive(Debug)]
#[non_exhaustive]
pub enum RejectionKind {
    /// Another holder has the lock (after waiting, in wait mode). Default: `423 Locked` (or the
    /// configured status) with `Retry-After`.
    Contended(quorumlock::Error),
    /// Too few Redis nodes answered in time to form a quorum. Default: `503` with
    /// `Retry-After`.
    Unavailable(quorumlock::Error),
    /// The key extractor refused the request. Default: `400`.
    InvalidKey(KeyRejection),
    /// The lock was lost while the handler ran (with the default
    /// [`OnLoss::Fail`](crate::OnLoss::Fail)), so its response was dropped. Default: `503`.
    Lost(ExtendError),
    /// The lock could not be tried at all: invalid settings or no randomness. Default: `500`.
    Failed(quorumlock::Error),
}

impl Rejection {
    pub(crate) fn new(
        kind: RejectionKind,
        status: StatusCode,
        retry_after: Option<Duration>,
        key: Option<String>,
    ) -> Self {
        Self {
            kind,
            status,
            retry_after,
            key,
        }
    }

    /// The cause.
    pub fn kind(&self) -> &RejectionKind {
        &self.kind
    }

    /// The cause, by value.
    pub fn into_kind(self) -> RejectionKind {
        self.kind
    }

    /// The status of the default response.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The default `Retry-After`, when there is one.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// The Redis key that was to be locked, when the key extractor found one.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// The default response: [`status`](Self::status), `Retry-After` in whole seconds (rounded
    /// up) when set, and a one-line plain-text body that names no node address or credential.
    pub fn into_response(self) -> Response<Bytes> {
        let mut response = Response::new(Bytes::from(format!("{self}\n")));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if let Some(after) = self.retry_after {
            headers.insert(RETRY_AFTER, HeaderValue::from(retry_after_seconds(after)));
        }
        response
    }
}

/// Whole seconds, rounded up, at least 1: `Retry-After: 0` would invite a retry storm.
pub(crate) fn retry_after_seconds(after: Duration) -> u64 {
    let whole = after.as_secs() + u64::from(after.subsec_nanos() > 0);
    whole.max(1)
}

/// The one-line message of the default response.
impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            // Already the well-known `lock already taken, locked nodes: [0 1 2]`.
            RejectionKind::Contended(error) => error.fmt(f),
            RejectionKind::Unavailable(error) => match error {
                quorumlock::Error::Acquire(AcquireError::NoQuorum { report, quorum }) => write!(
                    f,
                    "lock service unavailable: {} of {} nodes granted the lock, {quorum} needed",
                    report.granted_count(),
                    report.nodes().len()
                ),
                _ => f.write_str("lock service unavailable: the nodes answered too slowly"),
            },
            RejectionKind::InvalidKey(rejection) => write!(f, "invalid lock key: {rejection}"),
            RejectionKind::Lost(_) => f.write_str(
                "the lock was lost while the request was handled; its outcome is unknown",
            ),
            RejectionKind::Failed(error) => write!(f, "the lock could not be tried: {error}"),
        }
    }
}

/// Builds the response for a [`Rejection`]. Implemented by [`DefaultRejection`] and by every
/// `Fn(Rejection) -> Response<Bytes>`.
pub trait OnRejection: Send + Sync + 'static {
    /// The response to send instead of the handler's.
    fn on_rejection(&self, rejection: Rejection) -> Response<Bytes>;
}

impl<F> OnRejection for F
where
    F: Fn(Rejection) -> Response<Bytes> + Send + Sync + 'static,
{
    fn on_rejection(&self, rejection: Rejection) -> Response<Bytes> {
        self(rejection)
    }
}

/// Answers with [`Rejection::into_response`].
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultRejection;

impl OnRejection for DefaultRejection {
    fn on_rejection(&self, rejection: Rejection) -> Response<Bytes> {
        rejection.into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_and_is_never_zero() {
        assert_eq!(retry_after_seconds(Duration::ZERO), 1);
        assert_eq!(retry_after_seconds(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_seconds(Duration::from_millis(1000)), 1);
        assert_eq!(retry_after_seconds(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_seconds(Duration::from_secs(30)), 30);
    }

    #[test]
    fn default_response_carries_status_retry_after_and_message() {
        let rejection = Rejection::new(
            RejectionKind::InvalidKey(KeyRejection::new(
                "query parameter `id`",
                crate::key::KeyProblem::Empty,
            )),
            StatusCode::BAD_REQUEST,
            Some(Duration::from_millis(1500)),
            None,
        );
        let response = rejection.into_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(response.headers()[RETRY_AFTER], "2");
        assert_eq!(
            response.body(),
            "invalid lock key: query parameter `id` is empty\n"
        );
    }
}
