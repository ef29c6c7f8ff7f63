//! The response future: acquire the lock, call the handler, hand the lock to the body.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::header::CONTENT_LENGTH;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body::Body;
use pin_project_lite::pin_project;
use quorumlock::{KeptLock, LockRequest};
use tower_service::Service;

use crate::body::LockBody;
use crate::held::HeldLock;
use crate::layer::{OnLoss, Policy};
use crate::rejection::{OnRejection, Rejection, RejectionKind};

type Acquisition = <LockRequest as IntoFuture>::IntoFuture;

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
        let acquisition = policy.lock_request(key.clone()).into_future();
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
                    self.as_mut().project().state.set(State::Done);
                    // An error drops the lock here, which releases it.
                    let response = result?;
                    return Poll::Ready(Ok(with_lock(response, lock, key, head, &policy)));
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

/// Hands the lock to the response body, or answers for a lock lost during the handler.
fn with_lock<ResBody: Body, R: OnRejection>(
    response: Response<ResBody>,
    lock: Option<KeptLock>,
    key: Arc<str>,
    head: bool,
    policy: &Policy<R>,
) -> Response<LockBody<ResBody>> {
    let Some(lock) = lock else {
        return response.map(LockBody::unlocked);
    };
    let fail_on_loss = policy.on_loss == OnLoss::Fail;
    if fail_on_loss {
        if let Some(lost) = lock.status().lost_reason() {
            drop(response);
            let rejection = Rejection::new(
                RejectionKind::Lost(lost),
                policy.lost_status(),
                None,
                Some(key.to_string()),
            );
            return policy.respond(rejection).map(LockBody::rejection);
        }
    }
    let (parts, body) = response.into_parts();
    // These bodies are never sent, whatever they hold, so the lock has nothing left to guard.
    let no_body = head
        || parts.status.is_informational()
        || parts.status == StatusCode::NO_CONTENT
        || parts.status == StatusCode::NOT_MODIFIED;
    let content_length = content_length(&parts.headers);
    let body = LockBody::locked(body, lock, key, no_body, content_length, fail_on_loss);
    Response::from_parts(parts, body)
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
