//! The response future: acquire the lock, call the handler, hand the lock to the body (or, when
//! the body is complete or there is none to send, release it before answering).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use http::header::CONTENT_LENGTH;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body::{Body, Frame};
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower_service::Service;

use crate::body::LockBody;
use crate::held::{ReleaseFuture, RequestLock};
use crate::layer::{Acquisition, OnLoss, Policy};
use crate::rejection::{OnRejection, Rejection, RejectionKind};
use crate::BoxError;

pin_project! {
    /// Response future of [`LockService`](crate::LockService).
    pub struct ResponseFuture<S, B, ResBody, R>
    where
        S: Service<Request<B>>,
        ResBody: Body,
    {
        #[pin]
        state: State<S, B, ResBody, R>,
    }
}

pin_project! {
    #[project = StateProj]
    #[project_replace = StateReplace]
    enum State<S, B, ResBody, R>
    where
        S: Service<Request<B>>,
        ResBody: Body,
    {
        Acquiring {
            acquisition: Acquisition,
            service: S,
            request: Request<B>,
            key: String,
            policy: Arc<Policy<R>>,
        },
        Calling {
            #[pin]
            future: S::Future,
            lock: Option<RequestLock>,
            // Set once the handler is found still running: fires at the lock's renewal time.
            renew: Option<Pin<Box<Sleep>>>,
            head: bool,
            policy: Arc<Policy<R>>,
        },
        Unlocked {
            #[pin]
            future: S::Future,
        },
        Releasing {
            release: ReleaseFuture,
            then: Option<Response<LockBody<ResBody>>>,
        },
        Rejected {
            response: Option<Response<Bytes>>,
        },
        Done,
    }
}

impl<S, B, ResBody, R> ResponseFuture<S, B, ResBody, R>
where
    S: Service<Request<B>>,
    ResBody: Body,
    R: OnRejection,
{
    pub(crate) fn acquiring(
        policy: Arc<Policy<R>>,
        key: String,
        service: S,
        request: Request<B>,
    ) -> Self {
        let acquisition = policy.acquisition(key.clone());
        Self {
            state: State::Acquiring {
                acquisition,
                service,
                request,
                key,
                policy,
            },
        }
    }

    pub(crate) fn unlocked(future: S::Future) -> Self {
        Self {
            state: State::Unlocked { future },
        }
    }

    pub(crate) fn rejected(response: Response<Bytes>) -> Self {
        Self {
            state: State::Rejected {
                response: Some(response),
            },
        }
    }
}

impl<S, B, R, ResBody> Future for ResponseFuture<S, B, ResBody, R>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    R: OnRejection,
    ResBody: Body,
    ResBody::Error: Into<BoxError>,
{
    type Output = Result<Response<LockBody<ResBody>>, S::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            match self.as_mut().project().state.project() {
                StateProj::Acquiring { acquisition, .. } => {
                    let outcome = ready!(acquisition.as_mut().poll(cx));
                    let StateReplace::Acquiring {
                        mut service,
                        mut request,
                        key,
                        policy,
                        ..
                    } = self.as_mut().project().state.project_replace(State::Done)
                    else {
                        unreachable!("the state was Acquiring a moment ago");
                    };
                    let lock = match outcome {
                        Ok(lock) => lock,
                        Err(error) => {
                            let response = policy.respond(policy.acquire_failed(error, key));
                            return Poll::Ready(Ok(response.map(LockBody::rejection)));
                        }
                    };
                    let (lock, held) = RequestLock::new(lock, key);
                    request.extensions_mut().insert(held);
                    let head = request.method() == Method::HEAD;
                    let future = service.call(request);
                    self.as_mut().project().state.set(State::Calling {
                        future,
                        lock: Some(lock),
                        renew: None,
                        head,
                        policy,
                    });
                }
                StateProj::Calling {
                    future,
                    lock,
                    renew,
                    head,
                    policy,
                } => {
                    let result = match future.poll(cx) {
                        Poll::Ready(result) => result,
                        Poll::Pending => {
                            keep_alive_when_due(lock, renew, cx);
                            return Poll::Pending;
                        }
                    };
                    let lock = lock.take();
                    let (head, policy) = (*head, policy.clone());
                    // An error drops the lock here, which releases it in the background.
                    let response = match result {
                        Ok(response) => response,
                        Err(error) => {
                            self.as_mut().project().state.set(State::Done);
                            return Poll::Ready(Err(error));
                        }
                    };
                    let Some(lock) = lock else {
                        self.as_mut().project().state.set(State::Done);
                        return Poll::Ready(Ok(response.map(LockBody::unlocked)));
                    };
                    match hand_over(response, lock, head, &policy, cx) {
                        Handover::Body(response) => {
                            self.as_mut().project().state.set(State::Done);
                            return Poll::Ready(Ok(response));
                        }
                        Handover::ReleaseFirst(lock, then) => {
                            self.as_mut().project().state.set(State::Releasing {
                                release: lock.release(),
                                then: Some(then),
                            });
                        }
                    }
                }
                StateProj::Releasing { release, then } => {
                    ready!(Pin::new(release).poll(cx));
                    let then = then.take();
                    self.as_mut().project().state.set(State::Done);
                    return match then {
                        Some(response) => Poll::Ready(Ok(response)),
                        None => Poll::Pending,
                    };
                }
                StateProj::Unlocked { future } => {
                    let response = ready!(future.poll(cx))?;
                    self.as_mut().project().state.set(State::Done);
                    return Poll::Ready(Ok(response.map(LockBody::unlocked)));
                }
                StateProj::Rejected { response } => {
                    let response = response.take();
                    self.as_mut().project().state.set(State::Done);
                    if let Some(response) = response {
                        return Poll::Ready(Ok(response.map(LockBody::rejection)));
                    }
                    return Poll::Pending;
                }
                StateProj::Done => return Poll::Pending,
            }
        }
    }
}

/// The handler is still running: once the lock's renewal time comes, hand it to a keep-alive
/// task. The timer is only set for handlers that do not answer at once, and it wakes this
/// future, whose task is the one waiting for the handler.
fn keep_alive_when_due(
    lock: &mut Option<RequestLock>,
    renew: &mut Option<Pin<Box<Sleep>>>,
    cx: &mut Context<'_>,
) {
    let Some(lock) = lock else { return };
    let Some(renew_at) = lock.renew_at() else {
        return;
    };
    let timer = renew.get_or_insert_with(|| {
        Box::pin(tokio::time::sleep_until(tokio::time::Instant::from_std(
            renew_at,
        )))
    });
    if timer.as_mut().poll(cx).is_ready() {
        *renew = None;
        lock.keep_alive();
    }
}

enum Handover<B: Body> {
    /// The body carries the lock from here.
    Body(Response<LockBody<B>>),
    /// Nothing is left to send under the lock: release it, then answer.
    ReleaseFirst(RequestLock, Response<LockBody<B>>),
}

/// Hands the lock to the response body; or, when the body is already complete, there is
/// nothing to send, or the lock was lost during the handler, has it released before
/// answering, so that a client who has the whole answer finds the resource free.
///
/// A body that is not known to be empty is polled once here: if its data is all there (a
/// `Full` body, a `String`), it is kept aside and the response goes out whole once the lock is
/// released, in one write, without a second wait for the release round.
fn hand_over<ResBody, R: OnRejection>(
    response: Response<ResBody>,
    lock: RequestLock,
    head: bool,
    policy: &Policy<R>,
    cx: &mut Context<'_>,
) -> Handover<ResBody>
where
    ResBody: Body,
    ResBody::Error: Into<BoxError>,
{
    if policy.on_loss == OnLoss::Fail {
        if let Some(lost) = lock.lost_reason() {
            drop(response);
            let rejection = Rejection::new(
                RejectionKind::Lost(lost),
                policy.lost_status(),
                None,
                Some(lock.key().to_owned()),
            );
            let response = policy.respond(rejection).map(LockBody::rejection);
            return Handover::ReleaseFirst(lock, response);
        }
    }
    let content_length = content_length(response.headers());
    // These bodies are never sent, whatever they hold.
    let no_body = head
        || response.status().is_informational()
        || response.status() == StatusCode::NO_CONTENT
        || response.status() == StatusCode::NOT_MODIFIED;
    if no_body || content_length == Some(0) || response.body().is_end_stream() {
        return Handover::ReleaseFirst(lock, response.map(LockBody::unlocked));
    }
    let (parts, body) = response.into_parts();
    let mut body = Box::pin(body);
    let first = match body.as_mut().poll_frame(cx) {
        Poll::Ready(None) => {
            return Handover::ReleaseFirst(
                lock,
                Response::from_parts(parts, LockBody::complete(None)),
            );
        }
        Poll::Ready(Some(Err(error))) => {
            let body = LockBody::failed(error.into());
            return Handover::ReleaseFirst(lock, Response::from_parts(parts, body));
        }
        Poll::Ready(Some(Ok(frame))) => {
            let frame = match frame.into_data() {
                Ok(data) => {
                    let complete = body.is_end_stream()
                        || content_length.is_some_and(|length| data.remaining() as u64 >= length);
                    if complete {
                        let body = LockBody::complete(Some(data));
                        return Handover::ReleaseFirst(lock, Response::from_parts(parts, body));
                    }
                    Frame::data(data)
                }
                Err(frame) => frame,
            };
            Some(frame)
        }
        Poll::Pending => None,
    };
    let abort_on_loss = policy.on_loss == OnLoss::Fail;
    let key = Arc::from(lock.key());
    let body = LockBody::locked(
        body,
        first,
        lock.into_kept(),
        key,
        content_length,
        abort_on_loss,
    );
    Handover::Body(Response::from_parts(parts, body))
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}
