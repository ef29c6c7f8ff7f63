//! A held lock, as plain data.

use std::sync::Arc;
use std::time::Duration;

use super::report::Report;
use super::time::Instant;
use super::token::Token;

/// A lock held on a quorum of nodes: which keys, under which token, and until when it is safe
/// to act as the holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub(crate) resources: Arc<[String]>,
    pub(crate) token: Token,
    pub(crate) ttl: Duration,
    pub(crate) acquired_at: Instant,
    pub(crate) decided_at: Instant,
    pub(crate) validity: Duration,
    pub(crate) extensions: u32,
    pub(crate) report: Report,
}

impl Lease {
    /// The locked resources (the Redis keys).
    pub fn resources(&self) -> &[String] {
        &self.resources
    }

    /// The token stored under every key.
    pub fn token(&self) -> &Token {
        &self.token
    }

    /// The TTL the keys were last set with.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// When the first successful round started.
    pub fn acquired_at(&self) -> Instant {
        self.acquired_at
    }

    /// Validity left when the last acquire or extend round was decided:
    /// `ttl − elapsed − drift`.
    pub fn validity(&self) -> Duration {
        self.validity
    }

    /// The instant after which the holder must no longer act as the holder.
    pub fn valid_until(&self) -> Instant {
        self.decided_at + self.validity
    }

    /// Validity left at `now` (zero once expired).
    pub fn remaining(&self, now: Instant) -> Duration {
        self.valid_until().saturating_duration_since(now)
    }

    /// Whether the lock is still safe to rely on at `now`.
    pub fn is_valid_at(&self, now: Instant) -> bool {
        now < self.valid_until()
    }

    /// When an automatic extension should start: half-way through the validity, which leaves
    /// the other half for the extension round and its retries.
    pub fn renew_at(&self) -> Instant {
        self.decided_at + self.validity / 2
    }

    /// How many times the lock was extended.
    pub fn extensions(&self) -> u32 {
        self.extensions
    }

    /// Per-node outcome of the last acquire or extend round.
    pub fn report(&self) -> &Report {
        &self.report
    }
}
