#![forbid(unsafe_code)]
#![warn(missing_docs)]
//! quorumlock
pub mod proto;

#[cfg(feature = "tokio")]
mod client;
#[cfg(feature = "tokio")]
pub use client::{BuildError, Error, Lock, LockContext, LockRequest, Redlock, RedlockBuilder};

#[cfg(feature = "test-util")]
pub mod testing;

pub use proto::{Report, Retry, Settings, Token};
