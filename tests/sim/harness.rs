//! Drives one operation by hand: the test says when each reply comes in, the harness checks the
//! driving contract on every step and writes a readable transcript.

use std::time::Duration;

use quorumlock::proto::{
    AcquireError, ExtendError, Instant, Lease, NodeId, Operation, Released, Reply, RequestId,
    Transmit,
};

use super::{show_duration, show_offset, show_reply};

/// One request the operation asked for, and when.
#[derive(Debug, Clone)]
pub struct Sent {
    pub at: Instant,
    pub transmit: Transmit,
}

/// How an operation's result appears in a transcript.
pub trait Describe {
    fn describe(&self, base: Instant) -> Vec<String>;
}

pub fn describe_lease(verb: &str, lease: &Lease, base: Instant) -> Vec<String> {
    vec![
        format!(
            "{verb} [{}]: validity {}, valid until {}, ttl {}, extensions {}",
            lease.resources().join(" "),
            show_duration(lease.validity()),
            show_offset(base, lease.valid_until()),
            show_duration(lease.ttl()),
            lease.extensions()
        ),
        format!("  report: {}", lease.report()),
    ]
}

impl Describe for Result<Lease, AcquireError> {
    fn describe(&self, base: Instant) -> Vec<String> {
        match self {
            Ok(lease) => describe_lease("acquired", lease, base),
            Err(error) => vec![format!("acquire failed: {error}")],
        }
    }
}

impl Describe for Result<Lease, ExtendError> {
    fn describe(&self, base: Instant) -> Vec<String> {
        match self {
            Ok(lease) => describe_lease("extended", lease, base),
            Err(error) => vec![format!("extend failed: {error}")],
        }
    }
}

impl Describe for Released {
    fn describe(&self, _base: Instant) -> Vec<String> {
        vec![
            format!("released, clean: {}", self.is_clean()),
            format!("  report: {}", self.report),
        ]
    }
}

/// Feeds replies and timeouts to `op` at chosen instants, drains its output after every input,
/// and panics on any breach of the driving contract: a second outcome, or anything sent or
/// scheduled after the outcome.
pub struct Harness<O: Operation> {
    op: O,
    base: Instant,
    now: Instant,
    sent: Vec<Sent>,
    unread: usize,
    outcome: Option<O::Output>,
    outcome_at: Option<Instant>,
    /// Whether the operation still had requests in flight when it gave its outcome.
    tail: bool,
    lines: Vec<String>,
}

impl<O> Harness<O>
where
    O: Operation,
    O::Output: Describe,
{
    /// Takes over an operation created at `base` and collects what it sends straight away.
    pub fn new(op: O, base: Instant) -> Self {
        Self::new_at(op, base, base)
    }

    /// Takes over an operation created at `now`; the transcript counts time from `base`.
    pub fn new_at(op: O, base: Instant, now: Instant) -> Self {
        let mut harness = Self {
            op,
            base,
            now,
            sent: Vec::new(),
            unread: 0,
            outcome: None,
            outcome_at: None,
            tail: false,
            lines: Vec::new(),
        };
        harness.flush();
        harness
    }

    pub fn base(&self) -> Instant {
        self.base
    }

    pub fn now(&self) -> Instant {
        self.now
    }

    pub fn op(&self) -> &O {
        &self.op
    }

    pub fn op_mut(&mut self) -> &mut O {
        &mut self.op
    }

    /// Moves the clock to `offset` after the start. Time never goes back.
    pub fn at(&mut self, offset: Duration) -> &mut Self {
        let target = self.base + offset;
        assert!(target >= self.now, "the test tried to move time backwards");
        self.now = target;
        self
    }

    /// Moves the clock forwards by `step`.
    pub fn after(&mut self, step: Duration) -> &mut Self {
        self.now += step;
        self
    }

    /// Every request sent so far, in order.
    pub fn sent(&self) -> &[Sent] {
        &self.sent
    }

    /// The requests sent since the last call.
    pub fn new_transmits(&mut self) -> Vec<Transmit> {
        let fresh = self.sent[self.unread..]
            .iter()
            .map(|s| s.transmit.clone())
            .collect();
        self.unread = self.sent.len();
        fresh
    }

    /// How many requests were sent since the last [`Harness::new_transmits`].
    pub fn unread(&self) -> usize {
        self.sent.len() - self.unread
    }

    /// The most recent request sent to `node`.
    pub fn last_to(&self, node: usize) -> &Transmit {
        &self
            .sent
            .iter()
            .rev()
            .find(|s| s.transmit.node.index() == node)
            .unwrap_or_else(|| panic!("nothing was sent to node {node}"))
            .transmit
    }

    /// Answers the most recent request sent to `node`.
    pub fn reply(&mut self, node: usize, reply: Reply) -> &mut Self {
        let request = self.last_to(node).request;
        self.feed(NodeId::new(node), request, reply)
    }

    /// Hands any reply to the operation, as a driver would, whether or not it is still awaited.
    pub fn feed(&mut self, node: NodeId, request: RequestId, reply: Reply) -> &mut Self {
        let awaited = self.op.is_awaiting(node, request);
        self.lines.push(format!(
            "{}  reply  node {node} {request}  {}{}",
            show_offset(self.base, self.now),
            show_reply(&reply),
            if awaited { "" } else { "  (not awaited)" }
        ));
        self.op.handle_reply(node, request, reply, self.now);
        self.flush();
        self
    }

    /// Moves the clock to the operation's next timeout and fires it.
    pub fn fire_timeout(&mut self) -> &mut Self {
        let due = self
            .op
            .poll_timeout()
            .expect("the operation has no timeout to fire");
        self.now = self.now.max(due);
        self.timeout_now()
    }

    /// Fires a timeout at the current instant (drivers may wake early or late).
    pub fn timeout_now(&mut self) -> &mut Self {
        self.lines
            .push(format!("{}  timeout", show_offset(self.base, self.now)));
        self.op.handle_timeout(self.now);
        self.flush();
        self
    }

    /// Adds a comment line to the transcript.
    pub fn note(&mut self, text: &str) -> &mut Self {
        self.lines.push(format!("# {text}"));
        self
    }

    pub fn outcome(&self) -> Option<&O::Output> {
        self.outcome.as_ref()
    }

    pub fn outcome_at(&self) -> Option<Instant> {
        self.outcome_at
    }

    #[track_caller]
    pub fn expect_outcome(&self) -> &O::Output {
        self.outcome
            .as_ref()
            .expect("the operation should have decided by now")
    }

    pub fn lines(&self) -> &[String] {
        &self.lines
    }

    fn flush(&mut self) {
        while let Some(transmit) = self.op.poll_transmit() {
            assert!(
                self.outcome.is_none() || self.tail,
                "sent {transmit:?} after the outcome"
            );
            self.lines.push(format!(
                "{}  send   node {} {}  {}  (deadline {})",
                show_offset(self.base, self.now),
                transmit.node,
                transmit.request,
                transmit.command,
                show_offset(self.base, transmit.deadline)
            ));
            self.sent.push(Sent {
                at: self.now,
                transmit,
            });
        }
        if let Some(outcome) = self.op.poll_outcome() {
            assert!(self.outcome.is_none(), "a second outcome was produced");
            let mut described = outcome.describe(self.base).into_iter();
            if let Some(first) = described.next() {
                self.lines.push(format!(
                    "{}  outcome  {first}",
                    show_offset(self.base, self.now)
                ));
            }
            self.lines.extend(described);
            self.outcome = Some(outcome);
            self.outcome_at = Some(self.now);
            self.tail = self.op.poll_timeout().is_some();
            if self.tail {
                self.lines.push(format!(
                    "{}  (requests still in flight finish after the outcome)",
                    show_offset(self.base, self.now)
                ));
            }
        }
        if self.outcome.is_some() {
            assert!(
                self.tail || self.op.poll_timeout().is_none(),
                "a timeout is still scheduled after an outcome that had nothing in flight"
            );
            assert!(
                self.op.poll_outcome().is_none(),
                "a second outcome was produced"
            );
        }
    }
}
