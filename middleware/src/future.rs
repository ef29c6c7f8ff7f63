//! The response future: acquire the lock, call the handler, hand the lock to the body (or, when
//! there is no body to send, release it before answering).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::header::CONTENT_LENGTH;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body::Body;
use pin_project_lite::pin_project;
use quorumlock::KeptLock;
use tower_service::Service;

use crate::body::{release, LockBody, ReleaseFuture};
use crate::held::HeldLock;
use crate::layer::{Acquisition, OnLoss, Policy};
use crate::rejection::{OnRejection, Rejection, RejectionKind};

/// What a response future answers once its lock is released.
enum Then<T> {
    /// The handler's response, which has nothing left to send under the lock.
    Respond(T),
    /// A rejection standing in for the handler's response.
    Reject(Response<Bytes>),
}

pin_project! {
    /// Response future of [`LockService`](crate::LockService).
    pub struct ResponseFuture<S, B, R>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        state: State<S, B, R>,
    }
}

pin_project! {
    #[project = StateProj]
    #[project_replace = StateReplace]
    enum State<S, B, R>
    where
        S: Service<Request<B>>,
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
            lock: Option<KeptLock>,
            key: Arc<str>,
            head: bool,
            policy: Arc<Policy<R>>,
        },
        Unlocked {
            #[pin]
            future: S::Future,
        },
        Releasing {
            release: ReleaseFuture,
            then: Option<Then<S::Response>>,
        },
        Rejected {
            response: Option<Response<Bytes>>,
        },
        Done,
    }
}

impl<S, B, R> ResponseFuture<S, B, R>
where
    S: Service<Request<B>>,
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

impl<S, B, R, ResBody> Future for ResponseFuture<S, B, R>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    R: OnRejection,
    ResBody: Body,
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
                        Ok(lock) => lock.keep_alive(),
                        Err(error) => {
                            let response = policy.respond(policy.acquire_failed(error, key));
                            return Poll::Ready(Ok(response.map(LockBody::rejection)));
                        }
                    };
                    let key: Arc<str> = key.into();
                    request
                        .extensions_mut()
                        .insert(HeldLock::new(key.clone(), lock.status().clone()));
                    let head = request.method() == Method::HEAD;
                    let future = service.call(request);
                    self.as_mut().project().state.set(State::Calling {
                        future,
                        lock: Some(lock),
                        key,
                        head,
                        policy,
                    });
                }
                StateProj::Calling {
                    future,
                    lock,
                    key,
                    head,
                    policy,
                } => {
                    let result = ready!(future.poll(cx));
                    let lock = lock.take();
                    let (key, head, policy) = (key.clone(), *head, policy.clone());
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
                    match hand_over(response, lock, key, head, &policy) {
                        Handover::Body(response) => {
                            self.as_mut().project().state.set(State::Done);
                            return Poll::Ready(Ok(response));
                        }
                        Handover::ReleaseFirst(lock, then) => {
                            self.as_mut().project().state.set(State::Releasing {
                                release: release(lock),
                                then: Some(then),
                            });
                        }
                    }
                }
                StateProj::Releasing { release, then } => {
                    ready!(release.as_mut().poll(cx));
                    let then = then.take();
                    self.as_mut().project().state.set(State::Done);
                    return match then {
                        Some(Then::Respond(response)) => {
                            Poll::Ready(Ok(response.map(LockBody::unlocked)))
                        }
                        Some(Then::Reject(response)) => {
                            Poll::Ready(Ok(response.map(LockBody::rejection)))
                        }
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

enum Handover<T, B: Body> {
    /// The body carries the lock from here.
    Body(Response<LockBody<B>>),
    /// Nothing will be sent under the lock: release it, then answer.
    ReleaseFirst(KeptLock, Then<T>),
}

/// Hands the lock to the response body; or, when there is nothing to send or the lock was lost
/// during the handler, has it released before answering, so that a client who has the whole
/// answer finds the resource free.
fn hand_over<ResBody: Body, R: OnRejection>(
    response: Response<ResBody>,
    lock: KeptLock,
    key: Arc<str>,
    head: bool,
    policy: &Policy<R>,
) -> Handover<Response<ResBody>, ResBody> {
    if policy.on_loss == OnLoss::Fail {
        if let Some(lost) = lock.status().lost_reason() {
            drop(response);
            let rejection = Rejection::new(
                RejectionKind::Lost(lost),
                policy.lost_status(),
                None,
                Some(key.to_string()),
            );
            return Handover::ReleaseFirst(lock, Then::Reject(policy.respond(rejection)));
        }
    }
    let content_length = content_length(response.headers());
    // These bodies are never sent, whatever they hold.
    let no_body = head
        || response.status().is_informational()
        || response.status() == StatusCode::NO_CONTENT
        || response.status() == StatusCode::NOT_MODIFIED;
    if no_body || content_length == Some(0) || response.body().is_end_stream() {
        return Handover::ReleaseFirst(lock, Then::Respond(response));
    }
    let abort_on_loss = policy.on_loss == OnLoss::Fail;
    Handover::Body(
        response.map(|body| LockBody::locked(body, lock, key, content_length, abort_on_loss)),
    )
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
