//! The `rslock` crate (async, redis-rs multiplexed connections).

use std::time::Duration;

use rslock::{Lock, LockManager};

use super::{Locker, UNLIMITED_RETRIES};

/// rslock's `LockManager`. Its retry pause is drawn from zero up to the configured delay.
#[derive(Debug, Clone)]
pub struct Rslock {
    manager: LockManager,
    ttl: Duration,
}

impl Rslock {
    /// A client for `urls`, pausing up to `max_pause` between attempts; connects on first use.
    pub fn new(urls: &[String], ttl: Duration, max_pause: Duration) -> Self {
        let mut manager = LockManager::new(urls.to_vec());
        manager.set_retry(UNLIMITED_RETRIES, max_pause);
        Self { manager, ttl }
    }
}

impl Locker for Rslock {
    type Held = Lock;

    async fn lock(&self, resource: String) -> Result<Lock, String> {
        self.manager
            .lock(resource.as_bytes(), self.ttl)
            .await
            .map_err(|error| error.to_string())
    }

    async fn release(&self, held: Lock) {
        self.manager.unlock(&held).await;
    }
}
