//! Errors of the native client.

use std::fmt;

use crate::proto::{AcquireError, ConfigError, ExtendError, NodeError, Report, ResourceError};

/// Why building a [`Redlock`](super::Redlock) failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum BuildError {
    /// A node URL could not be parsed. The URL is not repeated: it may hold a password.
    InvalidUrl {
        /// Position of the URL in the list.
        index: usize,
        /// What was wrong with it.
        reason: String,
    },
    /// A `rediss://` URL was given but the crate was built without the `tls` feature.
    TlsNotEnabled {
        /// Position of the URL in the list.
        index: usize,
    },
    /// The settings are not usable.
    Config(ConfigError),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidUrl { index, reason } => {
                write!(f, "node URL {index} is not a valid Redis URL: {reason}")
            }
            Self::TlsNotEnabled { index } => write!(
                f,
                "node URL {index} asks for TLS (rediss://) but quorumlock was built without the `tls` feature"
            ),
            Self::Config(error) => write!(f, "invalid settings: {error}"),
        }
    }
}

impl std::error::Error for BuildError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Config(error) => Some(error),
            _ => None,
        }
    }
}

/// The nodes [`Redlock::connect`](super::Redlock::connect) could not connect to. The client
/// stays usable: those nodes are tried again on their next request.
#[derive(Debug, Clone)]
pub struct ConnectError {
    pub(crate) failures: Vec<(usize, NodeError)>,
    pub(crate) nodes: usize,
    pub(crate) quorum: usize,
}

impl ConnectError {
    /// The nodes that failed, by their position in the URL list, and why.
    pub fn failures(&self) -> &[(usize, NodeError)] {
        &self.failures
    }

    /// Whether the nodes that did connect still make a quorum: locks can be taken, with less
    /// room for further failures.
    pub fn has_quorum(&self) -> bool {
        self.nodes - self.failures.len() >= self.quorum
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "could not connect to {} of {} nodes (",
            self.failures.len(),
            self.nodes
        )?;
        for (at, (node, error)) in self.failures.iter().enumerate() {
            let separator = if at == 0 { "" } else { "; " };
            write!(f, "{separator}node {node}: {error}")?;
        }
        let connected = self.nodes - self.failures.len();
        if self.has_quorum() {
            write!(f, "); the other {connected} still make a quorum")
        } else {
            write!(f, "); {connected} cannot make a quorum of {}", self.quorum)
        }
    }
}

impl std::error::Error for ConnectError {}

/// Why a lock operation failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The resource list was unusable (empty, empty name, duplicates).
    InvalidResources(ResourceError),
    /// Per-call options were unusable (for example a TTL below the drift allowance).
    InvalidOptions(ConfigError),
    /// The lock was not acquired; displays like `lock already taken, locked nodes: [0 1 2]`.
    Acquire(AcquireError),
    /// The lock was not extended.
    Extend(ExtendError),
    /// The lock was lost while `with_lock` ran its closure, which was cancelled.
    Lost(ExtendError),
    /// The operating system could not supply random bytes for the lock token.
    Entropy(String),
}

impl Error {
    /// Whether the lock is held by someone else.
    pub fn is_contended(&self) -> bool {
        matches!(self, Self::Acquire(AcquireError::Contended { .. }))
    }

    /// For a contended lock: how long until the holder's keys expire on enough nodes for a
    /// quorum to be free, as the nodes reported it. The holder may release sooner (waiters of
    /// this library are woken then) or extend.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            Self::Acquire(AcquireError::Contended { retry_after, .. }) => *retry_after,
            _ => None,
        }
    }

    /// Whether too few nodes could be reached.
    pub fn is_no_quorum(&self) -> bool {
        matches!(
            self,
            Self::Acquire(AcquireError::NoQuorum { .. })
                | Self::Extend(ExtendError::NoQuorum { .. })
        )
    }

    /// The per-node report of the failed round, when there was one.
    pub fn report(&self) -> Option<&Report> {
        match self {
            Self::Acquire(error) => Some(error.report()),
            Self::Extend(error) | Self::Lost(error) => error.report(),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidResources(error) => error.fmt(f),
            Self::InvalidOptions(error) => write!(f, "invalid lock options: {error}"),
            Self::Acquire(error) => error.fmt(f),
            Self::Extend(error) => error.fmt(f),
            Self::Lost(error) => write!(f, "lock lost while in use: {error}"),
            Self::Entropy(error) => write!(f, "no randomness for the lock token: {error}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::InvalidResources(error) => Some(error),
            Self::InvalidOptions(error) => Some(error),
            Self::Acquire(error) => Some(error),
            Self::Extend(error) | Self::Lost(error) => Some(error),
            Self::Entropy(_) => None,
        }
    }
}
