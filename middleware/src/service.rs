//! The service: finds the request's key, then hands the acquisition to the response future.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response, StatusCode};
use http_body::Body;
use tower_service::Service;

use crate::body::LockBody;
use crate::future::ResponseFuture;
use crate::key::{KeyExtractor, KeyProblem, KeyRejection};
use crate::layer::Policy;
use crate::rejection::{OnRejection, Rejection, RejectionKind};
use crate::BoxError;

/// The service made by [`LockLayer`](crate::LockLayer).
pub struct LockService<S, K, R> {
    inner: S,
    key: Arc<K>,
    policy: Arc<Policy<R>>,
}

impl<S, K, R> LockService<S, K, R> {
    pub(crate) fn new(inner: S, key: Arc<K>, policy: Arc<Policy<R>>) -> Self {
        Self { inner, key, policy }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, K, R> Clone for LockService<S, K, R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            key: self.key.clone(),
            policy: self.policy.clone(),
        }
    }
}

impl<S: fmt::Debug, K, R> fmt::Debug for LockService<S, K, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockService")
            .field("inner", &self.inner)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl<S, K, R, ReqBody, ResBody> Service<Request<ReqBody>> for LockService<S, K, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    K: KeyExtractor,
    R: OnRejection,
    ResBody: Body,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<LockBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody, ResBody, R>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let (parts, body) = request.into_parts();
        let extracted = self.key.extract(&parts);
        let request = Request::from_parts(parts, body);
        let name = match extracted {
            Ok(None) => return ResponseFuture::unlocked(self.inner.call(request)),
            Ok(Some(name)) if !name.is_empty() => Ok(name),
            Ok(Some(_)) => Err(KeyRejection::new("the lock key", KeyProblem::Empty)),
            Err(rejection) => Err(rejection),
        };
        // The service driven to ready is the one to call, later, once the lock is held; the
        // clone stays here for the next poll_ready (tower's AsyncFilter does the same).
        let clone = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, clone);
        match name {
            Ok(name) => {
                let key = self.policy.keys.redis_key(&name);
                ResponseFuture::acquiring(self.policy.clone(), key, ready, request)
            }
            Err(rejection) => {
                // Dropping the ready service gives back whatever its readiness reserved.
                drop(ready);
                let rejection = Rejection::new(
                    RejectionKind::InvalidKey(rejection),
                    StatusCode::BAD_REQUEST,
                    None,
                    None,
                );
                ResponseFuture::rejected(self.policy.respond(rejection))
            }
        }
    }
}
