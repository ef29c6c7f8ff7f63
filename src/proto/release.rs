//! Releasing a lock: compare-and-delete on every node.

use std::sync::Arc;

use super::command::{Command, CommandKind, NodeId, Reply, RequestId, Transmit};
use super::config::{quorum_of, Config};
use super::lease::Lease;
use super::operation::Operation;
use super::report::{NodeError, NodeStatus, Report};
use super::round::{Classify, Policy, RequestIds, Round, Vote};
use super::script;
use super::time::Instant;
use super::token::Token;

fn classify_release(reply: &Reply) -> Vote {
    match reply {
        Reply::Integer(n) if *n > 0 => Vote::Yes,
        Reply::Integer(0) => Vote::No,
        other => Vote::Failed(NodeError::from_reply(other)),
    }
}

/// Which compare-and-delete a round runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Deletion {
    /// A holder lets go: [`script::RELEASE`], announced to waiters.
    Release,
    /// A failed attempt tidies up: [`script::CLEAN_UP`], silent, leaving waiter markers that
    /// live one TTL.
    CleanUp,
}

/// The clean-up reports a TTL, not a count: any integer means it ran.
fn classify_clean_up(reply: &Reply) -> Vote {
    match reply {
        Reply::Integer(_) => Vote::Yes,
        other => Vote::Failed(NodeError::from_reply(other)),
    }
}

/// A round that runs `deletion` for our keys on every node, and waits for each node's answer or
/// deadline.
pub(crate) fn release_round(
    config: &Config,
    deletion: Deletion,
    resources: &Arc<[String]>,
    token: &Token,
    ids: &mut RequestIds,
    now: Instant,
) -> Round {
    let (script, classify, marker_ttl_ms): (_, Classify, _) = match deletion {
        Deletion::Release => (&script::RELEASE, classify_release, None),
        Deletion::CleanUp => (
            &script::CLEAN_UP,
            classify_clean_up,
            Some(config.ttl().as_millis() as u64),
        ),
    };
    let command = Command::new(
        CommandKind::EvalSha(script),
        resources.clone(),
        token.clone(),
        marker_ttl_ms,
    )
    .with_markers(script::waiting_markers(resources));
    Round::new(
        command,
        classify,
        Policy::All,
        config.nodes(),
        config.quorum(),
        config.request_timeout(),
        ids,
        now,
    )
}

/// Releases a lock on every node. It cannot fail: each node answers or times out, and the
/// report says which did what. Releasing twice, or releasing an expired lock, is harmless.
///
/// The outcome comes as soon as a quorum of nodes has answered (deleted, or found nothing of
/// ours): from then on no other client can be kept from a quorum by this lock, so the caller
/// need not wait for the slowest node. The deletions on the other nodes are already sent; the
/// machine keeps going after its outcome until they are answered (a `NOSCRIPT` is resent as
/// source) or time out, and [`poll_timeout`](Operation::poll_timeout) says when it still has
/// such work. A driver should finish it in the background; one that stops at the outcome
/// leaves at most a minority of nodes to let the keys expire with their TTL.
#[derive(Debug)]
pub struct Release {
    round: Round,
    ids: RequestIds,
    quorum: usize,
    done: bool,
}

/// The result of a release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Released {
    /// Per node: granted (our keys deleted), refused (nothing of ours was there), failed, timed
    /// out, or not answered yet when a quorum had decided the release.
    pub report: Report,
}

impl Released {
    /// Whether a quorum of nodes confirmed our keys are gone or were not ours, and no node
    /// failed or timed out. Nodes that had not answered when the release was decided
    /// ([`NodeStatus::NoAnswer`]) do not count against it: their
    /// deletions were sent and finish in the background.
    pub fn is_clean(&self) -> bool {
        let answered = self.report.granted_count() + self.report.refused_count();
        let failed = self
            .report
            .nodes()
            .iter()
            .any(|node| matches!(node.status, NodeStatus::Failed(_) | NodeStatus::TimedOut));
        answered >= quorum_of(self.report.nodes().len()) && !failed
    }
}

impl Release {
    /// Starts releasing `resources` held under `token`.
    pub fn new(config: &Config, resources: &[String], token: &Token, now: Instant) -> Self {
        Self::for_keys(config, resources.into(), token, now)
    }

    /// Releases the keys of `lease`.
    pub fn for_lease(config: &Config, lease: &Lease, now: Instant) -> Self {
        Self::for_keys(config, lease.resources.clone(), &lease.token, now)
    }

    fn for_keys(config: &Config, resources: Arc<[String]>, token: &Token, now: Instant) -> Self {
        let mut ids = RequestIds::default();
        let round = release_round(config, Deletion::Release, &resources, token, &mut ids, now);
        Self {
            round,
            ids,
            quorum: config.quorum(),
            done: false,
        }
    }
}

impl Operation for Release {
    type Output = Released;

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.round.poll_transmit()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.round.poll_timeout()
    }

    fn poll_outcome(&mut self) -> Option<Released> {
        if self.done || (self.round.decision().is_none() && self.round.answered() < self.quorum) {
            return None;
        }
        self.done = true;
        Some(Released {
            report: self.round.report(),
        })
    }

    fn handle_reply(&mut self, node: NodeId, request: RequestId, reply: Reply, now: Instant) {
        self.round
            .handle_reply(node, request, reply, now, &mut self.ids);
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.round.handle_timeout(now);
    }

    fn is_awaiting(&self, node: NodeId, request: RequestId) -> bool {
        self.round.is_awaiting(node, request)
    }
}
