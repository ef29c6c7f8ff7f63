//! Extending a held lock: a quorum must confirm within the current validity.

use std::time::Duration;

use super::command::{Command, CommandKind, NodeId, Reply, RequestId, Transmit};
use super::config::{Config, DRIFT_FLOOR};
use super::error::ExtendError;
use super::lease::Lease;
use super::operation::Operation;
use super::report::NodeError;
use super::rng::JitterRng;
use super::round::{Policy, RequestIds, Round, Vote};
use super::script;
use super::time::Instant;

fn classify_extend(reply: &Reply) -> Vote {
    match reply {
        Reply::Integer(1) => Vote::Yes,
        Reply::Integer(0) => Vote::No,
        other => Vote::Failed(NodeError::from_reply(other)),
    }
}

/// Extends a lease to a new TTL.
///
/// The extend script resets the TTL only where every key still holds our token; it never
/// re-creates a vanished key, which would silently re-acquire a lock that was lost. The
/// extension counts only if a quorum confirms it before the current validity ends. When nodes
/// fail (rather than refuse), the round is retried while the validity leaves room.
///
/// An extension never asks for a TTL that would end before the lease's current validity: the
/// nodes it reaches would forget the keys early even if the round then failed, while the caller
/// still relied on the old lease.
///
/// The outcome comes as soon as a quorum decided, but the requests of that round still in
/// flight stay awaited after it: a node that answers `NOSCRIPT` only then (its script cache
/// was emptied) gets the script's source once, so that it ends up with the same TTL as a node
/// that had the script instead of keeping the old one. This is safe after any outcome because
/// the script never creates a key. [`poll_timeout`](Operation::poll_timeout) says when such
/// work is left; a driver should finish it in the background, as for [`Release`]. A driver that
/// stops at the outcome leaves those nodes with the old TTL.
///
/// [`Release`]: super::release::Release
#[derive(Debug)]
pub struct Extend {
    /// The caller's settings; each round derives its own TTL from them.
    requested: Config,
    /// The settings of the current round, with the TTL it sends.
    config: Config,
    lease: Lease,
    command: Command,
    rng: JitterRng,
    ids: RequestIds,
    state: State,
    outcome: Option<Result<Lease, ExtendError>>,
    /// The caller went away: the round in progress is finished, but no other is started.
    cancelled: bool,
}

#[derive(Debug)]
enum State {
    /// A round is asking the nodes.
    Extending(Round),
    /// Pausing before the next round, after one that failed without deciding the extension.
    Waiting { until: Instant },
    /// The outcome is given; the round that gave it still awaits its slower nodes.
    Finishing(Round),
    /// Over: the outcome is given and nothing is left to finish.
    Done,
}

impl Extend {
    /// Starts extending `lease` so that its keys live `config.ttl()` from now, capped by the
    /// configured maximum hold time. Limits and an already expired lease are reported through
    /// [`Operation::poll_outcome`] straight away.
    pub fn new(config: &Config, lease: &Lease, seed: u64, now: Instant) -> Self {
        let mut extend = Self {
            requested: config.clone(),
            config: config.clone(),
            lease: lease.clone(),
            command: Command::new(
                CommandKind::EvalSha(&script::EXTEND),
                lease.resources.clone(),
                lease.token.clone(),
                None,
            ),
            rng: JitterRng::new(seed),
            ids: RequestIds::default(),
            state: State::Done,
            outcome: None,
            cancelled: false,
        };
        extend.start_round(now);
        extend
    }

    /// The config with the TTL a round starting at `now` may ask for, or why there is none.
    fn round_config(&self, now: Instant) -> Result<Config, ExtendError> {
        let settings = self.requested.settings();
        let held = now.saturating_duration_since(self.lease.acquired_at);
        let limit = ExtendError::LimitReached {
            extensions: self.lease.extensions,
            held,
        };
        if settings
            .max_extensions
            .is_some_and(|max| self.lease.extensions >= max)
        {
            return Err(limit);
        }
        // Computed per round, so a retried round still ends the hold at `max_hold`.
        let left = settings
            .max_hold
            .map(|max_hold| max_hold.saturating_sub(held));
        let capped = left.is_some_and(|left| left < self.requested.ttl());
        let mut ttl = left.map_or(self.requested.ttl(), |left| left.min(self.requested.ttl()));
        if capped && self.requested.with_ttl(ttl).is_err() {
            return Err(limit);
        }
        if !self.lease.is_valid_at(now) {
            return Err(ExtendError::Expired {
                report: self.lease.report.clone(),
            });
        }
        let covering = self.covering_ttl(now);
        if ttl < covering {
            if capped {
                // The hold limit leaves nothing beyond the validity already granted.
                return Err(limit);
            }
            ttl = covering;
        }
        self.requested.with_ttl(ttl).map_err(|_| limit)
    }

    /// The shortest TTL whose validity, were the round decided at once, would not end before
    /// the lease's current validity.
    fn covering_ttl(&self, now: Instant) -> Duration {
        let remaining = self.lease.remaining(now) + DRIFT_FLOOR;
        let factor = self.requested.settings().drift_factor;
        let millis = (remaining.as_secs_f64() * 1000.0 / (1.0 - factor)).ceil();
        Duration::from_millis(millis as u64)
    }

    fn start_round(&mut self, now: Instant) {
        let config = match self.round_config(now) {
            Ok(config) => config,
            Err(error) => return self.finish(Err(error)),
        };
        self.command = Command::new(
            CommandKind::EvalSha(&script::EXTEND),
            self.lease.resources.clone(),
            self.lease.token.clone(),
            Some(config.ttl().as_millis() as u64),
        );
        self.config = config;
        self.state = State::Extending(Round::new(
            self.command.clone(),
            classify_extend,
            Policy::QuorumThenTail,
            self.config.nodes(),
            self.config.quorum(),
            self.config.request_timeout(),
            &mut self.ids,
            now,
        ));
    }

    fn finish(&mut self, outcome: Result<Lease, ExtendError>) {
        self.outcome = Some(outcome);
        self.state = match std::mem::replace(&mut self.state, State::Done) {
            State::Extending(round) => State::Finishing(round),
            _ => State::Done,
        };
    }

    fn advance(&mut self, now: Instant) {
        let valid_until = self.lease.valid_until();
        match &self.state {
            State::Extending(round) => {
                let report = round.report();
                let Some(decision) = round.decision() else {
                    if now >= valid_until {
                        self.finish(Err(ExtendError::Expired { report }));
                    }
                    return;
                };
                let started = round.started();
                if decision.at >= valid_until {
                    return self.finish(Err(ExtendError::Expired { report }));
                }
                if decision.granted {
                    let elapsed = decision.at.saturating_duration_since(started);
                    let validity = self
                        .config
                        .ttl()
                        .saturating_sub(elapsed)
                        .saturating_sub(self.config.drift());
                    if validity < self.config.min_validity() {
                        return self.finish(Err(ExtendError::Expired { report }));
                    }
                    let lease = Lease {
                        ttl: self.config.ttl(),
                        decided_at: decision.at,
                        validity,
                        extensions: self.lease.extensions + 1,
                        report,
                        ..self.lease.clone()
                    };
                    return self.finish(Ok(lease));
                }
                if report.refused_count() > self.config.nodes() - self.config.quorum() {
                    return self.finish(Err(ExtendError::Lost { report }));
                }
                let retry = *self.config.retry();
                let pause = self.rng.jittered(retry.delay, retry.jitter);
                let until = now.checked_add(pause).filter(|until| {
                    until
                        .checked_add(self.config.request_timeout())
                        .is_some_and(|done| done < valid_until)
                });
                if let (Some(until), false) = (until, self.cancelled) {
                    self.state = State::Waiting { until };
                } else {
                    let quorum = self.config.quorum();
                    self.finish(Err(ExtendError::NoQuorum { report, quorum }));
                }
            }
            State::Waiting { until } => {
                if *until <= now {
                    self.start_round(now);
                }
            }
            State::Finishing(_) | State::Done => {}
        }
    }
}

impl Operation for Extend {
    type Output = Result<Lease, ExtendError>;

    fn poll_transmit(&mut self) -> Option<Transmit> {
        match &mut self.state {
            State::Extending(round) | State::Finishing(round) => round.poll_transmit(),
            State::Waiting { .. } | State::Done => None,
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match &self.state {
            State::Extending(round) => {
                Some(round.poll_timeout().map_or(self.lease.valid_until(), |t| {
                    t.min(self.lease.valid_until())
                }))
            }
            State::Waiting { until } => Some(*until),
            // The tail is bounded by its requests' deadlines, not by the validity.
            State::Finishing(round) => round.poll_timeout(),
            State::Done => None,
        }
    }

    fn poll_outcome(&mut self) -> Option<Self::Output> {
        self.outcome.take()
    }

    fn handle_reply(&mut self, node: NodeId, request: RequestId, reply: Reply, now: Instant) {
        if let State::Extending(round) | State::Finishing(round) = &mut self.state {
            round.handle_reply(node, request, reply, now, &mut self.ids);
        }
        self.advance(now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        if let State::Extending(round) | State::Finishing(round) = &mut self.state {
            round.handle_timeout(now);
        }
        self.advance(now);
    }

    fn is_awaiting(&self, node: NodeId, request: RequestId) -> bool {
        match &self.state {
            State::Extending(round) | State::Finishing(round) => round.is_awaiting(node, request),
            State::Waiting { .. } | State::Done => false,
        }
    }

    /// Finishes the round in progress, with its tail, but starts no other: an extension nobody
    /// waits for must not go on asking the nodes. A pause between rounds ends at once.
    fn handle_cancel(&mut self, now: Instant) {
        let _ = now;
        self.cancelled = true;
        if let State::Waiting { .. } = self.state {
            self.state = State::Done;
        }
    }
}
