//! quorumlock's own native driver.

use std::time::Duration;

use quorumlock::{Lock, Redlock, Retry};

use super::{Locker, UNLIMITED_RETRIES};

/// quorumlock's `Redlock` with the benchmark's TTL and retry settings.
#[derive(Debug, Clone)]
pub struct Quorumlock(Redlock);

impl Quorumlock {
    /// A client for `urls`; connects on first use.
    pub fn new(
        urls: &[String],
        ttl: Duration,
        delay: Duration,
        jitter: Duration,
    ) -> Result<Self, String> {
        Redlock::builder(urls.iter().cloned())
            .ttl(ttl)
            .retry(Retry::new(UNLIMITED_RETRIES, delay, jitter))
            .build()
            .map(Self)
            .map_err(|error| error.to_string())
    }
}

impl Locker for Quorumlock {
    type Held = Lock;

    async fn lock(&self, resource: String) -> Result<Lock, String> {
        self.0
            .lock(resource)
            .await
            .map_err(|error| error.to_string())
    }

    async fn release(&self, held: Lock) {
        held.release().await;
    }
}
