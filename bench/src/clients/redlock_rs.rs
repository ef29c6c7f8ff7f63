//! The `redlock` crate (redlock-rs): blocking, one new connection per command.

use std::time::Duration;

use redlock::{Lock, RedLock};

use super::{BlockingLocker, UNLIMITED_RETRIES};

/// redlock-rs's `RedLock`. Its retry pause is drawn from zero up to the configured delay.
#[derive(Debug)]
pub struct RedlockRs {
    manager: RedLock,
    ttl_ms: usize,
}

impl RedlockRs {
    /// A client for `urls`, pausing up to `max_pause` between attempts.
    pub fn new(urls: &[String], ttl: Duration, max_pause: Duration) -> Self {
        let mut manager = RedLock::new(urls.to_vec());
        // A zero maximum would make its random pause panic (an empty range).
        let max_pause_ms = u32::try_from(max_pause.as_millis())
            .unwrap_or(u32::MAX)
            .max(1);
        manager.set_retry(UNLIMITED_RETRIES, max_pause_ms);
        Self {
            manager,
            ttl_ms: usize::try_from(ttl.as_millis()).unwrap_or(usize::MAX),
        }
    }
}

impl BlockingLocker for RedlockRs {
    type Held<'a> = Lock<'a>;

    fn lock(&self, resource: &str) -> Result<Lock<'_>, String> {
        match self.manager.lock(resource.as_bytes(), self.ttl_ms) {
            Ok(Some(lock)) => Ok(lock),
            Ok(None) => Err("retries exhausted".to_owned()),
            Err(error) => Err(error.to_string()),
        }
    }

    fn release(&self, held: Lock<'_>) {
        self.manager.unlock(&held);
    }
}
