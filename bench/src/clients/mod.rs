//! The clients under test, behind one small interface each for async and blocking clients.
//!
//! Every client is set up the same way: the TTL from [`Params`](crate::protocol::Params), and
//! a retry pause drawn uniformly from `delay ± jitter` (clients that only take a maximum pause
//! get `delay + jitter` and draw from zero up to it), with effectively unlimited attempts.

use std::future::Future;
use std::time::Duration;

mod quorumlock;
mod raw;
mod redlock_rs;
mod rslock;

pub use self::quorumlock::Quorumlock;
pub use self::raw::RawFloor;
pub use self::redlock_rs::RedlockRs;
pub use self::rslock::Rslock;

/// Attempts allowed per lock call: a contender in S3 must never give up for lack of retries.
pub const UNLIMITED_RETRIES: u32 = 1_000_000;

/// A lock client driven from async tasks.
pub trait Locker: Clone + Send + Sync + 'static {
    /// What a successful lock returns and release consumes.
    type Held: Send + 'static;

    /// Locks `resource`, retrying per the client's policy.
    fn lock(&self, resource: String) -> impl Future<Output = Result<Self::Held, String>> + Send;

    /// Releases a held lock; failures are the client's business, as in real use.
    fn release(&self, held: Self::Held) -> impl Future<Output = ()> + Send;
}

/// A lock client that blocks the calling thread.
pub trait BlockingLocker: Sync {
    /// What a successful lock returns and release consumes.
    type Held<'a>
    where
        Self: 'a;

    /// Locks `resource`, retrying per the client's policy.
    fn lock(&self, resource: &str) -> Result<Self::Held<'_>, String>;

    /// Releases a held lock.
    fn release(&self, held: Self::Held<'_>);
}

/// The retry settings every client gets, as one line for the record.
pub fn describe_retry(delay: Duration, jitter: Duration) -> String {
    format!(
        "retry pause {} ms ± {} ms, unlimited attempts",
        delay.as_millis(),
        jitter.as_millis()
    )
}
