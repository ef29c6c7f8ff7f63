//! A lock request with per-call options, awaited directly or run around a closure.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::time::Duration;

use crate::proto::{Config, Retry};

use super::{Error, Lock, LockContext, Redlock};

/// A pending lock acquisition. `.await` it for a [`Lock`] guard, or call [`run`](Self::run) to
/// hold the lock around a closure. Options apply to this call only.
#[must_use = "a lock request does nothing until awaited"]
#[derive(Debug, Clone)]
pub struct LockRequest {
    redlock: Redlock,
    resources: Vec<String>,
    ttl: Option<Duration>,
    retry: Option<Retry>,
}

impl LockRequest {
    pub(crate) fn new(redlock: Redlock, resources: Vec<String>) -> Self {
        Self {
            redlock,
            resources,
            ttl: None,
            retry: None,
        }
    }

    /// Key lifetime for this lock.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Retry policy for this call.
    pub fn retry(mut self, retry: Retry) -> Self {
        self.retry = Some(retry);
        self
    }

    /// Keeps retrying (with the configured delay and jitter) until `deadline` has passed.
    pub fn wait_up_to(mut self, deadline: Duration) -> Self {
        let base = self.redlock.config().retry();
        self.retry = Some(Retry::until(deadline, base.delay, base.jitter));
        self
    }

    fn config(&self) -> Result<Config, Error> {
        let base = self.redlock.config();
        let config = match self.ttl {
            Some(ttl) => base.with_ttl(ttl).map_err(Error::InvalidOptions)?,
            None => base.clone(),
        };
        Ok(match self.retry {
            Some(retry) => config.with_retry(retry),
            None => config,
        })
    }

    async fn acquire(self) -> Result<Lock, Error> {
        let config = self.config()?;
        let lease = self.redlock.acquire(&config, self.resources).await?;
        Ok(Lock::new(self.redlock, config, lease))
    }

    /// Runs `f` while holding the lock, extending it ahead of expiry. If the lock is lost, `f`
    /// is cancelled (dropped at its next await point), [`LockContext::lost`] resolves for any
    /// task that watches it, and [`Error::Lost`] is returned. The lock is released at the end
    /// whatever happens.
    pub async fn run<F, Fut, T>(self, f: F) -> Result<T, Error>
    where
        F: FnOnce(LockContext) -> Fut,
        Fut: Future<Output = T>,
    {
        let lock = self.acquire().await?;
        super::with_lock::hold(lock, f).await
    }
}

impl IntoFuture for LockRequest {
    type Output = Result<Lock, Error>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.acquire())
    }
}
