//! The sans-IO Redlock core.
//!
//! Everything in this module is a pure state machine: it reads no clock, opens no socket and
//! draws no randomness. Time comes in as an [`Instant`] argument, jitter from a seed, and the
//! lock token as a value. See the crate documentation for the driving contract.

mod acquire;
mod command;
mod config;
mod error;
mod extend;
mod heard;
mod lease;
mod operation;
mod release;
mod report;
mod rng;
mod round;
mod script;
mod time;
mod token;

pub use acquire::Acquire;
pub use command::{Arg, Command, CommandKind, NodeId, Reply, RequestId, Transmit};
pub use config::{Config, ConfigError, Retry, Settings};
pub use error::{AcquireError, ExtendError, ResourceError};
pub use extend::Extend;
pub use heard::LastRelease;
pub use lease::Lease;
pub use operation::Operation;
pub use release::{Release, Released};
pub use report::{NodeError, NodeErrorKind, NodeReport, NodeStatus, Report};
pub use script::{Script, RELEASED_CHANNEL_PREFIX, WAITING_MARKER_PREFIX};
pub use time::Instant;
pub use token::{Token, TokenError};
