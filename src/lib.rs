#![forbid(unsafe_code)]
#![warn(missing_docs)]
//! quorumlock: a Redlock distributed-lock client.
//!
//! A lock is a random token stored under each resource key on a majority of N independent
//! Redis primaries, with a TTL. Whoever holds the majority holds the lock until the TTL (minus
//! the time the acquire took and a clock-drift allowance) runs out.
//!
//! # What Redlock guarantees, and what it does not
//!
//! - **Mutual exclusion, within the validity window**: while a [`Lease`](proto::Lease) is
//!   valid ([`Lock::is_valid`], [`Lock::valid_until`]), no other client can hold a quorum on
//!   the same resource — provided the nodes are independent, do not lose keys on restart
//!   (persistence or delayed restarts), do not evict lock keys, and clocks advance at about the
//!   same rate (within the drift factor).
//! - **Liveness**: keys expire, so a crashed holder blocks others for at most one TTL.
//! - **Not** protection against a holder that pauses (GC, swap, SIGSTOP) past its validity and
//!   then acts: no lease can stop that. Check validity before side effects, and use fencing
//!   tokens at the storage layer where it matters. `SAFETY.md` in the repository is the
//!   operator's guide.
//!
//! # Quick start (feature `tokio`, on by default)
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use quorumlock::Redlock;
//!
//! let redlock = Redlock::builder([
//!     "redis://10.0.0.1:6379",
//!     "redis://10.0.0.2:6379",
//!     "redis://10.0.0.3:6379",
//! ])
//! .ttl(Duration::from_secs(10))
//! .build()?;
//!
//! // A guard: released by `release()`, or in the background when dropped.
//! let lock = redlock.lock("invoice:42").await?;
//! println!("held until {:?}: {}", lock.valid_until(), lock.report());
//! lock.release().await;
//!
//! // A closure under the lock, extended automatically; cancelled if the lock is lost.
//! let total = redlock
//!     .with_lock(["ledger:eu", "ledger:us"], |held| async move {
//!         let _token = held.lease().token().clone();
//!         40 + 2
//!     })
//!     .await?;
//! # let _ = total;
//! # Ok(()) }
//! ```
//!
//! # The sans-IO core and its driving contract
//!
//! [`proto`] holds the whole protocol as state machines — [`Acquire`](proto::Acquire),
//! [`Extend`](proto::Extend), [`Release`](proto::Release) — that read no clock, open no socket
//! and draw no randomness: time, jitter seeds and the token come in as arguments. Any runtime
//! can drive them (the tokio driver here, the WebAssembly build, a simulator):
//!
//! ```
//! use std::time::{Duration, Instant};
//! use quorumlock::proto::{Acquire, Config, Operation, Reply, Settings, Token};
//!
//! let config = Config::new(3, Settings::default()).unwrap();
//! # #[allow(clippy::disallowed_methods)]
//! let now = Instant::now();
//! let mut op = Acquire::new(&config, ["job:7"], Token::from_random_bits(7), 42, now).unwrap();
//! let outcome = loop {
//!     // 1. Send everything the machine asks for: here all three nodes at once.
//!     let mut sent = Vec::new();
//!     while let Some(transmit) = op.poll_transmit() {
//!         sent.push(transmit); // a real driver writes transmit.command to transmit.node
//!     }
//!     // 2. Stop when there is an outcome.
//!     if let Some(outcome) = op.poll_outcome() {
//!         break outcome;
//!     }
//!     // 3. Feed back replies (here every node says OK at once), or call
//!     //    `op.handle_timeout(now)` when `op.poll_timeout()` comes first.
//!     for transmit in sent {
//!         op.handle_reply(transmit.node, transmit.request, Reply::Ok, now + Duration::from_millis(1));
//!     }
//! };
//! assert!(outcome.is_ok());
//! ```
//!
//! Transport failures are replies ([`Reply::Io`](proto::Reply::Io),
//! [`Reply::TimedOut`](proto::Reply::TimedOut)), never errors of the driver. Each request has
//! its own deadline; a round is decided as soon as a quorum said yes or can no longer do so;
//! a failed attempt releases on every node before it retries or gives up.
//!
//! # Wire format
//!
//! Keys are the resource names as given; values are 128-bit random tokens in hex; TTLs are set
//! with `PX`. One resource is locked with `SET key token NX PX ttl`; several, extension and
//! release use Lua scripts (`EVALSHA`, falling back to `EVAL` on `NOSCRIPT`) that name every
//! key in `KEYS`. redsync and node-redlock use the same layout, so mixed fleets share locks.
//!
//! # Features
//!
//! - `tokio` (default): the native driver, [`Redlock`], over redis-rs multiplexed connections.
//! - `tls`: `rediss://` URLs, through rustls.
//! - `test-util`: [`testing`], real `redis-server` processes for tests (Unix).
//!
//! Without default features only [`proto`] is built; it compiles for `wasm32-unknown-unknown`.

pub mod proto;

#[cfg(feature = "tokio")]
mod client;
#[cfg(feature = "tokio")]
pub use client::{
    BuildError, ConnectError, Error, KeptLock, Lock, LockContext, LockRequest, LockStatus, Redlock,
    RedlockBuilder,
};

#[cfg(feature = "test-util")]
pub mod testing;

pub use proto::{Report, Retry, Settings, Token};

/// The README's Rust examples, compiled as doctests so they cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeExamples;
