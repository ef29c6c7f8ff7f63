//! One fan-out of a command to every node: per-request deadlines, the vote tally, and the
//! decision. Acquire, extend and release are sequences of rounds.

use std::time::Duration;

use super::command::{Command, CommandKind, NodeId, Reply, RequestId, Transmit};
use super::report::{NodeError, NodeReport, NodeStatus, Report};
use super::time::Instant;

/// How a reply counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Vote {
    Yes,
    No,
    Failed(NodeError),
}

/// Reads one reply for one kind of operation.
pub(crate) type Classify = fn(&Reply) -> Vote;

/// When a round is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Policy {
    /// As soon as a quorum said yes, or enough nodes said anything else that it cannot.
    Quorum,
    /// Only once every node answered or timed out (release: every node must be asked to the end,
    /// even after its outcome was given at a quorum).
    All,
    /// Decided like [`Policy::Quorum`], but the requests still in flight then stay awaited until
    /// answered or timed out, and one answered `NOSCRIPT` is still resent as source; their
    /// replies no longer count. Extend: a node whose script cache was emptied must end up with
    /// the same TTL as a node that had the script, or the lock lives on fewer nodes than the
    /// caller was told.
    QuorumThenTail,
}

/// The decided result of a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Decision {
    /// A quorum said yes.
    pub(crate) granted: bool,
    /// When the deciding reply or timeout was handled.
    pub(crate) at: Instant,
}

#[derive(Debug, Clone)]
enum SlotState {
    Unsent,
    InFlight,
    Done(NodeStatus),
}

#[derive(Debug, Clone)]
struct Slot {
    state: SlotState,
    request: RequestId,
    sent_at: Instant,
    deadline: Instant,
    /// Set once the node said `NOSCRIPT` and the command goes again as `EVAL`.
    by_source: bool,
    latency: Option<Duration>,
    /// The node's integer reply, for rounds whose scripts report a number.
    integer: Option<i64>,
}

/// Hands out request ids that are unique within one operation, across its rounds.
#[derive(Debug, Clone, Default)]
pub(crate) struct RequestIds(u64);

impl RequestIds {
    fn next(&mut self) -> RequestId {
        self.0 += 1;
        RequestId::new(self.0)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Round {
    command: Command,
    classify: Classify,
    policy: Policy,
    quorum: usize,
    timeout: Duration,
    started: Instant,
    slots: Vec<Slot>,
    /// Next slot to look at in `poll_transmit`; resends after `NOSCRIPT` move it back.
    cursor: usize,
    yes: usize,
    /// Replies that voted no (a subset of `other`).
    no: usize,
    other: usize,
    decision: Option<Decision>,
}

impl Round {
    /// A round that will send `command` to each of `nodes` nodes. `now` is taken as the moment
    /// just before the first send: validity is measured from it.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        command: Command,
        classify: Classify,
        policy: Policy,
        nodes: usize,
        quorum: usize,
        timeout: Duration,
        ids: &mut RequestIds,
        now: Instant,
    ) -> Self {
        let deadline = now + timeout;
        let slots = (0..nodes)
            .map(|_| Slot {
                state: SlotState::Unsent,
                request: ids.next(),
                sent_at: now,
                deadline,
                by_source: false,
                latency: None,
                integer: None,
            })
            .collect();
        Self {
            command,
            classify,
            policy,
            quorum,
            timeout,
            started: now,
            slots,
            cursor: 0,
            yes: 0,
            no: 0,
            other: 0,
            decision: None,
        }
    }

    pub(crate) fn started(&self) -> Instant {
        self.started
    }

    /// Whether nothing has been sent yet.
    pub(crate) fn is_unsent(&self) -> bool {
        self.slots
            .iter()
            .all(|slot| matches!(slot.state, SlotState::Unsent))
    }

    pub(crate) fn decision(&self) -> Option<Decision> {
        self.decision
    }

    /// Whether the round still sends and awaits requests: until its decision, and with
    /// [`Policy::QuorumThenTail`] also after it, for what was in flight then.
    fn is_live(&self) -> bool {
        self.decision.is_none() || self.policy == Policy::QuorumThenTail
    }

    /// The next request to send. Requests go out as long as the round is undecided; after a
    /// decision only a tail's resends do.
    pub(crate) fn poll_transmit(&mut self) -> Option<Transmit> {
        if !self.is_live() {
            return None;
        }
        // A node not yet asked at the decision has nothing to finish: a tail only resends.
        let resends_only = self.decision.is_some();
        while self.cursor < self.slots.len() {
            let index = self.cursor;
            self.cursor += 1;
            let slot = &mut self.slots[index];
            if matches!(slot.state, SlotState::Unsent) && (slot.by_source || !resends_only) {
                slot.state = SlotState::InFlight;
                let command = if slot.by_source {
                    self.command.clone().into_eval()
                } else {
                    self.command.clone()
                };
                return Some(Transmit {
                    node: NodeId::new(index),
                    request: slot.request,
                    command,
                    deadline: slot.deadline,
                });
            }
        }
        None
    }

    /// The earliest deadline of a request still in flight.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        if !self.is_live() {
            return None;
        }
        self.slots
            .iter()
            .filter(|s| matches!(s.state, SlotState::InFlight))
            .map(|s| s.deadline)
            .min()
    }

    /// Whether the reply for `request` from `node` is still awaited.
    pub(crate) fn is_awaiting(&self, node: NodeId, request: RequestId) -> bool {
        self.is_live()
            && self
                .slots
                .get(node.index())
                .is_some_and(|s| s.request == request && matches!(s.state, SlotState::InFlight))
    }

    /// Counts a reply. Replies to other rounds, unknown nodes, or requests already settled are
    /// ignored: late replies are normal.
    pub(crate) fn handle_reply(
        &mut self,
        node: NodeId,
        request: RequestId,
        reply: Reply,
        now: Instant,
        ids: &mut RequestIds,
    ) {
        if !self.is_awaiting(node, request) {
            return;
        }
        let index = node.index();
        let slot = &mut self.slots[index];
        slot.latency = Some(now.saturating_duration_since(slot.sent_at));
        if let Reply::Integer(n) = reply {
            slot.integer = Some(n);
        }
        let status = match (&reply, self.command.kind()) {
            (Reply::Error(message), CommandKind::EvalSha(_))
                if message.starts_with("NOSCRIPT") && !slot.by_source =>
            {
                // The node lost its script cache (restart, SCRIPT FLUSH): send the source. This
                // costs one round trip, so the resend gets a fresh deadline, once.
                slot.by_source = true;
                slot.latency = None;
                slot.state = SlotState::Unsent;
                slot.request = ids.next();
                slot.sent_at = now;
                slot.deadline = now + self.timeout;
                self.cursor = self.cursor.min(index);
                return;
            }
            (Reply::TimedOut, _) => NodeStatus::TimedOut,
            _ => match (self.classify)(&reply) {
                Vote::Yes => NodeStatus::Granted,
                Vote::No => NodeStatus::Refused,
                Vote::Failed(error) => NodeStatus::Failed(error),
            },
        };
        self.settle(index, status, now);
    }

    /// Times out every request whose deadline has passed.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        for index in 0..self.slots.len() {
            if !self.is_live() {
                return;
            }
            let slot = &self.slots[index];
            if matches!(slot.state, SlotState::InFlight) && slot.deadline <= now {
                self.slots[index].latency = Some(now.saturating_duration_since(slot.sent_at));
                self.settle(index, NodeStatus::TimedOut, now);
            }
        }
    }

    fn settle(&mut self, index: usize, status: NodeStatus, now: Instant) {
        if self.decision.is_some() {
            // A reply in a tail ends that node's part; the decision stands.
            self.slots[index].state = SlotState::Done(status);
            return;
        }
        match status {
            NodeStatus::Granted => self.yes += 1,
            NodeStatus::Refused => {
                self.no += 1;
                self.other += 1;
            }
            _ => self.other += 1,
        }
        self.slots[index].state = SlotState::Done(status);
        let nodes = self.slots.len();
        let decided = match self.policy {
            Policy::Quorum | Policy::QuorumThenTail => {
                self.yes >= self.quorum || self.other > nodes - self.quorum
            }
            Policy::All => self.yes + self.other == nodes,
        };
        if decided {
            self.decision = Some(Decision {
                granted: self.yes >= self.quorum,
                at: now,
            });
        }
    }

    /// How many nodes answered yes or no so far: failures and timeouts are not answers.
    pub(crate) fn answered(&self) -> usize {
        self.yes + self.no
    }

    /// Each node's integer reply, in node order (`None`: no integer came back).
    pub(crate) fn integers(&self) -> impl Iterator<Item = Option<i64>> + '_ {
        self.slots.iter().map(|slot| slot.integer)
    }

    /// Per-node outcome so far; nodes still in flight show as [`NodeStatus::NoAnswer`].
    pub(crate) fn report(&self) -> Report {
        Report::new(
            self.slots
                .iter()
                .enumerate()
                .map(|(index, slot)| NodeReport {
                    node: NodeId::new(index),
                    status: match &slot.state {
                        SlotState::Done(status) => status.clone(),
                        SlotState::Unsent | SlotState::InFlight => NodeStatus::NoAnswer,
                    },
                    latency: slot.latency,
                })
                .collect(),
        )
    }
}
