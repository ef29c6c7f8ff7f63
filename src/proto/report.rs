//! Per-node outcomes of a round, carried by every result.

use std::fmt;
use std::time::Duration;

use super::command::{NodeId, Reply};

/// What one node did in the deciding round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeStatus {
    /// The node did what was asked: set, extended or deleted our keys.
    Granted,
    /// The node said no: on acquire the keys are held by another owner; on extend or release
    /// they no longer hold our token.
    Refused,
    /// The request failed.
    Failed(NodeError),
    /// No reply came before the per-request deadline.
    TimedOut,
    /// The round was decided before this node answered.
    NoAnswer,
}

/// Why a request to a node failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeError {
    /// The category.
    pub kind: NodeErrorKind,
    /// What the driver or the server said.
    pub detail: String,
}

/// Categories of node failure, stable for matching.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NodeErrorKind {
    /// Connecting, sending or receiving failed.
    Io,
    /// The server refused our credentials (`NOAUTH`, `WRONGPASS`).
    Auth,
    /// The server answered with an error.
    Server,
    /// The server answered something these commands never produce.
    Protocol,
}

impl NodeError {
    pub(crate) fn from_reply(reply: &Reply) -> Self {
        let (kind, detail) = match reply {
            Reply::Error(message) => {
                let code = message.split_whitespace().next().unwrap_or("");
                let kind = match code {
                    "NOAUTH" | "WRONGPASS" | "NOPERM" => NodeErrorKind::Auth,
                    _ => NodeErrorKind::Server,
                };
                (kind, message.clone())
            }
            Reply::Io(message) => (NodeErrorKind::Io, message.clone()),
            Reply::Unexpected(shape) => (NodeErrorKind::Protocol, shape.clone()),
            Reply::Ok => (NodeErrorKind::Protocol, "unexpected OK".to_owned()),
            Reply::Nil => (NodeErrorKind::Protocol, "unexpected nil".to_owned()),
            Reply::Integer(n) => (NodeErrorKind::Protocol, format!("unexpected integer {n}")),
            Reply::TimedOut => (NodeErrorKind::Io, "timed out".to_owned()),
        };
        // Server and parser messages may span lines; a report is read one line per node.
        let detail = detail.split_whitespace().collect::<Vec<_>>().join(" ");
        Self { kind, detail }
    }
}

/// One node's line in a [`Report`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeReport {
    /// Which node.
    pub node: NodeId,
    /// What it did.
    pub status: NodeStatus,
    /// Time from sending to the reply (or to giving up), when known.
    pub latency: Option<Duration>,
}

/// The per-node outcome of the round that decided an operation, in node order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Report {
    nodes: Vec<NodeReport>,
}

impl Report {
    pub(crate) fn new(nodes: Vec<NodeReport>) -> Self {
        Self { nodes }
    }

    /// Every node's line, in node order.
    pub fn nodes(&self) -> &[NodeReport] {
        &self.nodes
    }

    /// Nodes with the given status.
    pub fn nodes_where(&self, pred: impl Fn(&NodeStatus) -> bool) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|n| pred(&n.status))
            .map(|n| n.node)
            .collect()
    }

    /// Nodes that granted the request.
    pub fn granted(&self) -> Vec<NodeId> {
        self.nodes_where(|s| *s == NodeStatus::Granted)
    }

    /// Nodes that refused (on acquire: held by another owner).
    pub fn refused(&self) -> Vec<NodeId> {
        self.nodes_where(|s| *s == NodeStatus::Refused)
    }

    /// How many nodes granted.
    pub fn granted_count(&self) -> usize {
        self.count(|s| *s == NodeStatus::Granted)
    }

    /// How many nodes refused.
    pub fn refused_count(&self) -> usize {
        self.count(|s| *s == NodeStatus::Refused)
    }

    fn count(&self, pred: impl Fn(&NodeStatus) -> bool) -> usize {
        self.nodes.iter().filter(|n| pred(&n.status)).count()
    }
}

/// Writes node ids as `[0 1 2]`, the format Redlock services print.
pub(crate) struct NodeList<'a>(pub(crate) &'a [NodeId]);

impl fmt::Display for NodeList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, node) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{node}")?;
        }
        f.write_str("]")
    }
}

impl fmt::Display for NodeStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Granted => f.write_str("granted"),
            Self::Refused => f.write_str("refused"),
            Self::Failed(error) => write!(f, "failed: {error}"),
            Self::TimedOut => f.write_str("timed out"),
            Self::NoAnswer => f.write_str("no answer before the decision"),
        }
    }
}

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            NodeErrorKind::Io => "I/O error",
            NodeErrorKind::Auth => "authentication error",
            NodeErrorKind::Server => "server error",
            NodeErrorKind::Protocol => "protocol error",
        };
        write!(f, "{kind}: {}", self.detail)
    }
}

impl fmt::Display for NodeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node {}: {}", self.node, self.status)?;
        if let Some(latency) = self.latency {
            write!(f, " ({:.1} ms)", latency.as_secs_f64() * 1000.0)?;
        }
        Ok(())
    }
}

/// One line per node.
impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, node) in self.nodes.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{node}")?;
        }
        Ok(())
    }
}
