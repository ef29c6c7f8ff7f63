//! Why an operation did not get its lock.

use std::fmt;
use std::time::Duration;

use super::report::{NodeList, Report};

/// Why a lock was not acquired. Every variant carries the per-node report of the last attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AcquireError {
    /// Another owner holds the resources on so many nodes that no quorum was possible.
    Contended {
        /// Per-node outcome of the last attempt.
        report: Report,
        /// How long until the holder's keys expire on enough nodes for a quorum to be free, as
        /// the nodes reported it (the holder may release or extend before then). `None` when
        /// too few nodes answered.
        retry_after: Option<Duration>,
    },
    /// Too few nodes said yes, because nodes were down, slow or failing.
    NoQuorum {
        /// Per-node outcome of the last attempt.
        report: Report,
        /// Votes that were needed.
        quorum: usize,
    },
    /// A quorum said yes, but so late that less than the minimum validity was left.
    ValidityTooShort {
        /// Per-node outcome of the last attempt.
        report: Report,
        /// Validity left when the quorum was reached.
        validity: Duration,
        /// The configured minimum.
        min_validity: Duration,
    },
}

impl AcquireError {
    /// Per-node outcome of the last attempt.
    pub fn report(&self) -> &Report {
        match self {
            Self::Contended { report, .. }
            | Self::NoQuorum { report, .. }
            | Self::ValidityTooShort { report, .. } => report,
        }
    }
}

impl fmt::Display for AcquireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Contended { report, .. } => {
                write!(
                    f,
                    "lock already taken, locked nodes: {}",
                    NodeList(&report.refused())
                )
            }
            Self::NoQuorum { report, quorum } => write!(
                f,
                "no quorum: {} of {} nodes granted the lock, {quorum} needed ({report})",
                report.granted_count(),
                report.nodes().len()
            ),
            Self::ValidityTooShort {
                report,
                validity,
                min_validity,
            } => write!(
                f,
                "quorum reached too late: {validity:?} of validity left, {min_validity:?} required ({report})"
            ),
        }
    }
}

impl std::error::Error for AcquireError {}

/// Why a lock was not extended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExtendError {
    /// Our keys are gone or belong to another owner on so many nodes that the lock is lost.
    Lost {
        /// Per-node outcome of the extend round.
        report: Report,
    },
    /// Too few nodes confirmed, and the lock expired before a retry could succeed.
    NoQuorum {
        /// Per-node outcome of the last extend round.
        report: Report,
        /// Votes that were needed.
        quorum: usize,
    },
    /// The lock's validity ended before a quorum confirmed the extension.
    Expired {
        /// Per-node outcome when the validity ran out.
        report: Report,
    },
    /// The configured extension count or total hold time is used up.
    LimitReached {
        /// Extensions granted so far.
        extensions: u32,
        /// Time since the lock was acquired.
        held: Duration,
    },
}

impl ExtendError {
    /// Per-node outcome, when a round was run.
    pub fn report(&self) -> Option<&Report> {
        match self {
            Self::Lost { report } | Self::NoQuorum { report, .. } | Self::Expired { report } => {
                Some(report)
            }
            Self::LimitReached { .. } => None,
        }
    }
}

impl fmt::Display for ExtendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Lost { report } => write!(
                f,
                "lock lost: our keys are gone or taken on nodes {}",
                NodeList(&report.refused())
            ),
            Self::NoQuorum { report, quorum } => write!(
                f,
                "extension got no quorum: {} of {} nodes confirmed, {quorum} needed ({report})",
                report.granted_count(),
                report.nodes().len()
            ),
            Self::Expired { report } => {
                write!(
                    f,
                    "lock expired before the extension was confirmed ({report})"
                )
            }
            Self::LimitReached { extensions, held } => write!(
                f,
                "extension limit reached after {extensions} extensions and {held:?} held"
            ),
        }
    }
}

impl std::error::Error for ExtendError {}

/// Why a list of resources cannot be locked.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResourceError {
    /// No resource was given.
    Empty,
    /// The resource at this position is an empty string.
    EmptyName(usize),
    /// The same resource was given twice.
    Duplicate(String),
}

impl fmt::Display for ResourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("no resource to lock was given"),
            Self::EmptyName(at) => write!(f, "resource {at} is an empty string"),
            Self::Duplicate(name) => write!(f, "resource {name:?} was given twice"),
        }
    }
}

impl std::error::Error for ResourceError {}

/// Checks a resource list: not empty, no empty names, no duplicates.
pub(crate) fn check_resources(
    resources: Vec<String>,
) -> Result<std::sync::Arc<[String]>, ResourceError> {
    if resources.is_empty() {
        return Err(ResourceError::Empty);
    }
    for (i, name) in resources.iter().enumerate() {
        if name.is_empty() {
            return Err(ResourceError::EmptyName(i));
        }
        if resources[..i].contains(name) {
            return Err(ResourceError::Duplicate(name.clone()));
        }
    }
    Ok(resources.into())
}
