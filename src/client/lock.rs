//! The lock guard.

use std::time::Duration;

use crate::proto::{Config, ExtendError, Instant, Lease, Released, Report, Token};

use super::{clock, Error, Redlock};

/// A held lock. Release it with [`release`](Self::release); dropping it releases in a spawned
/// task (never blocking the current thread): on the current runtime or, dropped on a thread
/// outside any, on the one the lock was taken on. Check [`is_valid`](Self::is_valid) before acting on
/// shared state late in a long critical section.
#[derive(Debug)]
#[must_use = "dropping a lock releases it at once"]
pub struct Lock {
    redlock: Redlock,
    config: Config,
    lease: Lease,
    /// Set when an extension found the lock lost: the old lease must not be trusted any more.
    lost: bool,
    armed: bool,
    /// The runtime the lock was taken on, where its release and keep-alive task run: a lock
    /// handed to a thread outside that runtime (sync code after `block_on`) must still be
    /// released, and kept alive, without a runtime of its own there.
    runtime: Option<tokio::runtime::Handle>,
}

impl Lock {
    pub(crate) fn new(redlock: Redlock, config: Config, lease: Lease) -> Self {
        Self {
            redlock,
            config,
            lease,
            lost: false,
            armed: true,
            runtime: tokio::runtime::Handle::try_current().ok(),
        }
    }

    /// The locked resources.
    pub fn resources(&self) -> &[String] {
        self.lease.resources()
    }

    /// The random token stored under every key.
    pub fn token(&self) -> &Token {
        self.lease.token()
    }

    /// The lease: validity, extension count, timing.
    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    /// Per-node outcome of the round that acquired or last extended the lock.
    pub fn report(&self) -> &Report {
        self.lease.report()
    }

    /// After this instant the lock must no longer be relied on.
    pub fn valid_until(&self) -> Instant {
        self.lease.valid_until()
    }

    /// Validity left now.
    pub fn remaining(&self) -> Duration {
        self.lease.remaining(clock::now())
    }

    /// Whether the lock is still valid now: not expired, and not found lost by an extension.
    pub fn is_valid(&self) -> bool {
        !self.lost && self.lease.is_valid_at(clock::now())
    }

    /// Sets the keys' TTL to `ttl` from now, if a quorum still holds them for us. An extension
    /// never shortens the lock: a `ttl` shorter than the validity left is raised to cover it
    /// (and a `max_hold` that would force a shorter one ends in `LimitReached`). On failure the
    /// guard keeps its old lease and still releases on drop; if the lock was found lost,
    /// [`is_valid`](Self::is_valid) turns false.
    pub async fn extend(&mut self, ttl: Duration) -> Result<(), Error> {
        let config = self.config.with_ttl(ttl).map_err(Error::InvalidOptions)?;
        match self.redlock.extend_lease(&config, &self.lease).await {
            Ok(lease) => {
                self.lease = lease;
                self.config = config;
                Ok(())
            }
            Err(error) => {
                // A refusal majority means the keys are gone or someone else's: the remaining
                // validity of the old lease is no longer a promise.
                self.lost |= matches!(error, ExtendError::Lost { .. });
                Err(Error::Extend(error))
            }
        }
    }

    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    pub(crate) fn set_lease(&mut self, lease: Lease) {
        self.lease = lease;
    }

    /// The client this lock was taken with.
    pub fn redlock(&self) -> &Redlock {
        &self.redlock
    }

    /// The runtime to spawn the lock's own work on: the current one (the lock's may have shut
    /// down since), else the one it was taken on. `None` only outside any runtime for a lock
    /// made outside one.
    pub(crate) fn runtime(&self) -> Option<tokio::runtime::Handle> {
        tokio::runtime::Handle::try_current()
            .ok()
            .or_else(|| self.runtime.clone())
    }

    /// Deletes the keys on every node that still holds them for us; the report says what each
    /// node did. Never fails and never hangs: each node has its request deadline. Cancel-safe:
    /// dropped before it resolves, the release still finishes in the background.
    pub async fn release(mut self) -> Released {
        self.armed = false;
        self.redlock.release_lease(&self.lease).await
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        match self.runtime() {
            Some(runtime) => {
                let redlock = self.redlock.clone();
                let lease = self.lease.clone();
                self.redlock.spawn_background(&runtime, async move {
                    redlock.release_lease(&lease).await;
                });
            }
            None => tracing::warn!(
                resources = ?self.lease.resources(),
                "lock dropped outside a tokio runtime: it cannot be released and expires with its TTL"
            ),
        }
    }
}
