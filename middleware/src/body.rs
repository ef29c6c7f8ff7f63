//! The response body, which carries the lock while the body is produced and sent.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use quorumlock::proto::ExtendError;
use quorumlock::KeptLock;

use crate::BoxError;

pin_project! {
    /// Response body of [`LockService`](crate::LockService): the handler's body carrying the
    /// request's lock, or the body of a rejection.
    ///
    /// The lock is released when the body is over, and the body does not let its end be seen
    /// until the release round is done: a body of known length holds back its last frame, any
    /// other body its end-of-stream. So the lock covers every byte the handler produces, and a
    /// client that has read the whole response can lock the resource again at once. A body
    /// that fails or is dropped releases in the background.
    pub struct LockBody<B>
    where
        B: Body,
    {
        #[pin]
        inner: Inner<B>,
    }
}

pin_project! {
    #[project = InnerProj]
    enum Inner<B>
    where
        B: Body,
    {
        Unlocked {
            #[pin]
            body: B,
        },
        Locked {
            #[pin]
            body: B,
            guard: Option<Guard>,
            releasing: Option<Releasing<B::Data>>,
            phase: Phase,
        },
        Rejection {
            data: Option<Bytes>,
        },
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Open,
    /// Ended by the inner body's error or by the loss of the lock.
    Aborted,
    Finished,
}

type LossWatch = Pin<Box<dyn Future<Output = Option<ExtendError>> + Send>>;

pub(crate) type ReleaseFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Releases `lock` and resolves once the release round is over.
pub(crate) fn release(lock: KeptLock) -> ReleaseFuture {
    Box::pin(async move {
        lock.release().await;
    })
}

/// A release in progress, and the last frame to hand out once it is done (`None`: the end).
struct Releasing<D> {
    release: ReleaseFuture,
    last: Option<Frame<D>>,
}

/// The lock, and what tells when to let it go.
struct Guard {
    lock: KeptLock,
    key: Arc<str>,
    /// Bytes still due by `Content-Length`: reaching zero ends the body even if it is never
    /// polled again.
    content_left: Option<u64>,
    /// Resolves when the lock is lost; only present when a loss must abort the body.
    loss: Option<LossWatch>,
}

impl Guard {
    fn lost(&mut self, cx: &mut Context<'_>) -> Option<ExtendError> {
        let watch = self.loss.as_mut()?;
        match watch.as_mut().poll(cx) {
            Poll::Ready(Some(error)) => Some(error),
            Poll::Ready(None) => {
                self.loss = None;
                None
            }
            Poll::Pending => None,
        }
    }

    /// Counts a data frame; true once `Content-Length` bytes have gone out.
    fn sent(&mut self, bytes: usize) -> bool {
        match &mut self.content_left {
            Some(left) => {
                *left = left.saturating_sub(bytes as u64);
                *left == 0
            }
            None => false,
        }
    }
}

impl<B: Body> LockBody<B> {
    pub(crate) fn unlocked(body: B) -> Self {
        Self {
            inner: Inner::Unlocked { body },
        }
    }

    pub(crate) fn rejection(data: Bytes) -> Self {
        Self {
            inner: Inner::Rejection { data: Some(data) },
        }
    }

    /// Wraps `body`, which still has data to send, with the lock that guards it.
    pub(crate) fn locked(
        body: B,
        lock: KeptLock,
        key: Arc<str>,
        content_length: Option<u64>,
        abort_on_loss: bool,
    ) -> Self {
        let loss = abort_on_loss.then(|| {
            let status = lock.status().clone();
            Box::pin(async move { status.lost().await }) as LossWatch
        });
        Self {
            inner: Inner::Locked {
                body,
                guard: Some(Guard {
                    lock,
                    key,
                    content_left: content_length,
                    loss,
                }),
                releasing: None,
                phase: Phase::Open,
            },
        }
    }

    /// Whether this body still holds its lock (a release in progress counts as let go).
    pub fn holds_lock(&self) -> bool {
        matches!(&self.inner, Inner::Locked { guard: Some(_), .. })
    }
}

impl<B> Body for LockBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
    B::Data: From<Bytes>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match self.project().inner.project() {
            InnerProj::Unlocked { body } => body.poll_frame(cx).map_err(Into::into),
            InnerProj::Rejection { data } => {
                Poll::Ready(data.take().map(|data| Ok(Frame::data(B::Data::from(data)))))
            }
            InnerProj::Locked {
                mut body,
                guard,
                releasing,
                phase,
            } => loop {
                if let Some(pending) = releasing {
                    ready!(pending.release.as_mut().poll(cx));
                    let last = pending.last.take();
                    *releasing = None;
                    *phase = Phase::Finished;
                    return Poll::Ready(last.map(Ok));
                }
                if *phase != Phase::Open {
                    return Poll::Ready(None);
                }
                if let Some(lost) = guard.as_mut().and_then(|g| g.lost(cx)) {
                    *phase = Phase::Aborted;
                    let key = guard.take().map(|g| g.key).unwrap_or_default();
                    return Poll::Ready(Some(Err(Box::new(LockLost { key, error: lost }))));
                }
                let frame = ready!(body.as_mut().poll_frame(cx));
                let last = match frame {
                    Some(Ok(frame)) => {
                        let bytes = frame.data_ref().map_or(0, Buf::remaining);
                        let content_done = guard.as_mut().is_some_and(|g| g.sent(bytes));
                        if !content_done && !body.is_end_stream() {
                            return Poll::Ready(Some(Ok(frame)));
                        }
                        Some(frame)
                    }
                    Some(Err(error)) => {
                        *phase = Phase::Aborted;
                        guard.take();
                        return Poll::Ready(Some(Err(error.into())));
                    }
                    None => None,
                };
                match guard.take() {
                    Some(g) => {
                        *releasing = Some(Releasing {
                            release: release(g.lock),
                            last,
                        });
                    }
                    None => {
                        *phase = Phase::Finished;
                        return Poll::Ready(last.map(Ok));
                    }
                }
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Unlocked { body } => body.is_end_stream(),
            Inner::Locked {
                phase, releasing, ..
            } => *phase != Phase::Open && releasing.is_none(),
            Inner::Rejection { data } => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Unlocked { body } | Inner::Locked { body, .. } => body.size_hint(),
            Inner::Rejection { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}

impl<B: Body> fmt::Debug for LockBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.inner {
            Inner::Unlocked { .. } => "unlocked",
            Inner::Locked { guard: Some(_), .. } => "locked",
            Inner::Locked {
                releasing: Some(_), ..
            } => "releasing",
            Inner::Locked { .. } => "released",
            Inner::Rejection { .. } => "rejection",
        };
        f.debug_struct("LockBody").field("state", &state).finish()
    }
}

/// The error that ends a body whose lock was lost while it streamed (with
/// [`OnLoss::Fail`](crate::OnLoss::Fail)).
#[derive(Debug, Clone)]
pub struct LockLost {
    key: Arc<str>,
    error: ExtendError,
}

impl LockLost {
    /// The Redis key of the lost lock.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Why the extension failed.
    pub fn reason(&self) -> &ExtendError {
        &self.error
    }
}

impl fmt::Display for LockLost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the lock on `{}` was lost while the response was sent",
            self.key
        )
    }
}

impl std::error::Error for LockLost {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}
