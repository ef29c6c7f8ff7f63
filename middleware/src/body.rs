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

use crate::held::ReleaseFuture;
use crate::BoxError;

pin_project! {
    /// Response body of [`LockService`](crate::LockService): the handler's body, carrying the
    /// request's lock if it still streams; or the body of a rejection.
    ///
    /// A body that was complete when the handler returned (a `String`, `Bytes`, JSON: any body
    /// whose data was ready at once) is read before the response is returned, and the lock is
    /// released then: this body only hands out the data read, and
    /// [`holds_lock`](Self::holds_lock) is false.
    ///
    /// A body that still streams carries the lock. It is released when the body is over, and
    /// the body does not let its end be seen until the release round is done: a body of known
    /// length holds back its last frame, any other body its end-of-stream. So the lock covers
    /// every byte the handler produces, and a client that has read the whole response can lock
    /// the resource again at once. A body that fails or is dropped releases in the background.
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
        Complete {
            data: Option<B::Data>,
        },
        Failed {
            error: Option<BoxError>,
        },
        // Boxed: streaming responses are the rare, long ones, and this keeps the body small
        // for all the others.
        Locked {
            streaming: Box<Streaming<B>>,
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

/// A body still streaming under its lock.
struct Streaming<B: Body> {
    // Boxed: the response future polled it before handing it over.
    body: Pin<Box<B>>,
    // A frame the response future read, to hand out first.
    first: Option<Frame<B::Data>>,
    guard: Option<Guard>,
    releasing: Option<Releasing<B::Data>>,
    phase: Phase,
}

type LossWatch = Pin<Box<dyn Future<Output = Option<ExtendError>> + Send>>;

/// Releases `lock` and resolves once the release round is over.
fn release(lock: KeptLock) -> ReleaseFuture {
    ReleaseFuture::new(
        async move {
            lock.release().await;
        },
        None,
    )
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

    /// All the handler's body, read before the response was returned.
    pub(crate) fn complete(data: Option<B::Data>) -> Self {
        Self {
            inner: Inner::Complete { data },
        }
    }

    /// A body whose first poll failed.
    pub(crate) fn failed(error: BoxError) -> Self {
        Self {
            inner: Inner::Failed { error: Some(error) },
        }
    }

    /// Wraps `body`, which still has data to send, with the lock that guards it; `first` is a
    /// frame already read from it, to hand out first (it counts towards `content_length`).
    pub(crate) fn locked(
        body: Pin<Box<B>>,
        first: Option<Frame<B::Data>>,
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
                streaming: Box::new(Streaming {
                    body,
                    first,
                    guard: Some(Guard {
                        lock,
                        key,
                        content_left: content_length,
                        loss,
                    }),
                    releasing: None,
                    phase: Phase::Open,
                }),
            },
        }
    }

    /// Whether this body still holds its lock (a release in progress counts as let go).
    pub fn holds_lock(&self) -> bool {
        matches!(&self.inner, Inner::Locked { streaming } if streaming.guard.is_some())
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
            InnerProj::Complete { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            InnerProj::Failed { error } => Poll::Ready(error.take().map(Err)),
            InnerProj::Locked { streaming } => streaming.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Unlocked { body } => body.is_end_stream(),
            Inner::Complete { data } => data.is_none(),
            Inner::Failed { error } => error.is_none(),
            Inner::Locked { streaming } => {
                streaming.phase != Phase::Open && streaming.releasing.is_none()
            }
            Inner::Rejection { data } => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Unlocked { body } => body.size_hint(),
            Inner::Locked { streaming } => {
                let first = streaming
                    .first
                    .as_ref()
                    .and_then(Frame::data_ref)
                    .map_or(0, |data| data.remaining() as u64);
                let rest = streaming.body.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(rest.lower().saturating_add(first));
                if let Some(upper) = rest.upper() {
                    hint.set_upper(upper.saturating_add(first));
                }
                hint
            }
            Inner::Complete { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |data| data.remaining() as u64))
            }
            Inner::Failed { .. } => SizeHint::default(),
            Inner::Rejection { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}

impl<B> Streaming<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, BoxError>>> {
        let Self {
            body,
            first,
            guard,
            releasing,
            phase,
        } = self;
        loop {
            if let Some(pending) = releasing {
                ready!(Pin::new(&mut pending.release).poll(cx));
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
            let frame = match first.take() {
                Some(frame) => Some(Ok(frame)),
                None => ready!(body.as_mut().poll_frame(cx)),
            };
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
        }
    }
}

impl<B: Body> fmt::Debug for LockBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.inner {
            Inner::Unlocked { .. } => "unlocked",
            Inner::Complete { .. } => "complete",
            Inner::Failed { .. } => "failed",
            Inner::Locked { streaming } if streaming.guard.is_some() => "locked",
            Inner::Locked { streaming } if streaming.releasing.is_some() => "releasing",
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
