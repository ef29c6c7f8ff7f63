//! Acquiring a lock: lock rounds, validity, clean-up release and jittered retries.

use std::sync::Arc;

use super::command::{Command, CommandKind, NodeId, Reply, RequestId, Transmit};
use super::config::Config;
use super::error::{check_resources, AcquireError, ResourceError};
use super::lease::Lease;
use super::operation::Operation;
use super::release::{release_round, Deletion};
use super::report::NodeError;
use super::rng::JitterRng;
use super::round::{Policy, RequestIds, Round, Vote};
use super::script;
use super::time::Instant;
use super::token::Token;

/// Acquires a lock on a quorum of nodes.
///
/// Each attempt sends the lock command to every node at once and is decided as soon as a quorum
/// said yes or no quorum is possible any more. A granted attempt becomes a [`Lease`] if at least
/// the minimum validity is left; any failed attempt first releases on every node (a `SET` can
/// land after its deadline), then waits `delay ± jitter` and tries again while the retry policy
/// allows.
#[derive(Debug)]
pub struct Acquire {
    config: Config,
    resources: Arc<[String]>,
    token: Token,
    command: Command,
    rng: JitterRng,
    started: Instant,
    attempts: u32,
    ids: RequestIds,
    state: State,
    outcome: Option<Result<Lease, AcquireError>>,
}

#[derive(Debug)]
enum State {
    Locking(Round),
    Releasing {
        round: Round,
        failure: AcquireError,
        retry_at: Option<Instant>,
    },
    Waiting {
        until: Instant,
    },
    Done,
}

fn classify_set(reply: &Reply) -> Vote {
    match reply {
        Reply::Ok => Vote::Yes,
        Reply::Nil => Vote::No,
        other => Vote::Failed(NodeError::from_reply(other)),
    }
}

fn classify_script(reply: &Reply) -> Vote {
    match reply {
        Reply::Integer(1) => Vote::Yes,
        Reply::Integer(0) => Vote::No,
        other => Vote::Failed(NodeError::from_reply(other)),
    }
}

/// Shortest pause between attempts, whatever the retry policy says: with a zero delay and a
/// deadline, a contended acquire would otherwise hammer the nodes in a tight loop.
const MIN_RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(1);

/// How long until a quorum of nodes is free of the other owner's keys, from the remaining TTLs
/// the clean-up reported (a node without its keys counts as free now). `None` when too few
/// nodes answered, or a key never expires.
fn holder_remaining(
    ttls: impl Iterator<Item = Option<i64>>,
    config: &Config,
) -> Option<std::time::Duration> {
    let mut held = Vec::with_capacity(config.nodes());
    for ttl in ttls.flatten() {
        match ttl {
            -1 => return None,
            ttl => held.push(u64::try_from(ttl).unwrap_or(0)),
        }
    }
    if held.len() < config.quorum() {
        return None;
    }
    // Free once no more than `nodes − quorum` nodes still hold it: the
    // (nodes − quorum + 1)-th longest TTL, counting unanswered nodes as free.
    held.resize(config.nodes(), 0);
    held.sort_unstable_by(|a, b| b.cmp(a));
    held.get(config.nodes() - config.quorum())
        .map(|ms| std::time::Duration::from_millis(*ms))
}

impl Acquire {
    /// Starts acquiring `resources` under `token`. `seed` drives the retry jitter; `now` is the
    /// moment just before the first request goes out.
    pub fn new(
        config: &Config,
        resources: impl IntoIterator<Item = impl Into<String>>,
        token: Token,
        seed: u64,
        now: Instant,
    ) -> Result<Self, ResourceError> {
        let resources = check_resources(resources.into_iter().map(Into::into).collect())?;
        let ttl_ms = Some(config.ttl().as_millis() as u64);
        // A single key needs no script: plain SET NX PX is what every Redlock client sends.
        // Several keys go by source, never by digest. A node that lost its scripts (`SCRIPT
        // FLUSH`, a restart that kept its data) would answer `NOSCRIPT`, and when that answer
        // comes after the round was decided there is no safe resend: the lock may already be
        // released there, and a late acquire would hold the keys until their TTL. Not resent,
        // the lock would live on a bare quorum. By source, the node runs it at once, and
        // hashing a short script costs it far less than the round trip a resend would.
        let kind = if resources.len() == 1 {
            CommandKind::SetNx
        } else {
            CommandKind::Eval(&script::ACQUIRE)
        };
        let command = Command::new(kind, resources.clone(), token.clone(), ttl_ms);
        let mut acquire = Self {
            config: config.clone(),
            resources,
            token,
            command,
            rng: JitterRng::new(seed),
            started: now,
            attempts: 0,
            ids: RequestIds::default(),
            state: State::Done,
            outcome: None,
        };
        acquire.start_attempt(now);
        Ok(acquire)
    }

    /// The token this acquire stores.
    pub fn token(&self) -> &Token {
        &self.token
    }

    /// The resources being locked.
    pub fn resources(&self) -> &[String] {
        &self.resources
    }

    /// The resources, shared without copying (for drivers of this crate).
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn shared_resources(&self) -> Arc<[String]> {
        self.resources.clone()
    }

    /// Attempts started so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    fn start_attempt(&mut self, now: Instant) {
        self.attempts += 1;
        let classify = match self.command.kind() {
            CommandKind::SetNx => classify_set,
            _ => classify_script,
        };
        self.state = State::Locking(Round::new(
            self.command.clone(),
            classify,
            Policy::Quorum,
            self.config.nodes(),
            self.config.quorum(),
            self.config.request_timeout(),
            &mut self.ids,
            now,
        ));
    }

    /// Moves on after a reply or timeout may have decided the current round.
    fn advance(&mut self, now: Instant) {
        match &mut self.state {
            State::Locking(round) => {
                let Some(decision) = round.decision() else {
                    return;
                };
                let report = round.report();
                let elapsed = decision.at.saturating_duration_since(round.started());
                let validity = self
                    .config
                    .ttl()
                    .saturating_sub(elapsed)
                    .saturating_sub(self.config.drift());
                let failure = if !decision.granted {
                    let refused = report.refused_count();
                    if refused > self.config.nodes() - self.config.quorum() {
                        AcquireError::Contended {
                            report,
                            retry_after: None,
                        }
                    } else {
                        AcquireError::NoQuorum {
                            report,
                            quorum: self.config.quorum(),
                        }
                    }
                } else if validity < self.config.min_validity() {
                    AcquireError::ValidityTooShort {
                        report,
                        validity,
                        min_validity: self.config.min_validity(),
                    }
                } else {
                    self.outcome = Some(Ok(Lease {
                        resources: self.resources.clone(),
                        token: self.token.clone(),
                        ttl: self.config.ttl(),
                        acquired_at: round.started(),
                        decided_at: decision.at,
                        validity,
                        extensions: 0,
                        report,
                    }));
                    self.state = State::Done;
                    return;
                };
                let retry_at = self.next_retry(decision.at);
                self.state = State::Releasing {
                    round: release_round(
                        &self.config,
                        Deletion::CleanUp,
                        &self.resources,
                        &self.token,
                        &mut self.ids,
                        now,
                    ),
                    failure,
                    retry_at,
                };
            }
            State::Releasing {
                round,
                failure,
                retry_at,
            } => {
                if round.decision().is_none() {
                    return;
                }
                match *retry_at {
                    Some(at) if at <= now => self.start_attempt(now),
                    Some(until) => self.state = State::Waiting { until },
                    None => {
                        let mut failure = failure.clone();
                        if let AcquireError::Contended { retry_after, .. } = &mut failure {
                            *retry_after = holder_remaining(round.integers(), &self.config);
                        }
                        self.outcome = Some(Err(failure));
                        self.state = State::Done;
                    }
                }
            }
            State::Waiting { until } => {
                if *until <= now {
                    self.start_attempt(now);
                }
            }
            State::Done => {}
        }
    }

    /// When the next attempt may start, or `None` when the retry policy is used up.
    fn next_retry(&mut self, failed_at: Instant) -> Option<Instant> {
        let retry = *self.config.retry();
        if self.attempts > retry.retries {
            return None;
        }
        // A retry too far off to be represented never comes; a deadline too far off to be
        // represented never passes.
        let pause = self
            .rng
            .jittered(retry.delay, retry.jitter)
            .max(MIN_RETRY_PAUSE);
        let at = failed_at.checked_add(pause)?;
        let past_deadline = retry
            .deadline
            .and_then(|deadline| self.started.checked_add(deadline))
            .is_some_and(|end| at > end);
        (!past_deadline).then_some(at)
    }
}

impl Operation for Acquire {
    type Output = Result<Lease, AcquireError>;

    fn poll_transmit(&mut self) -> Option<Transmit> {
        match &mut self.state {
            State::Locking(round) | State::Releasing { round, .. } => round.poll_transmit(),
            State::Waiting { .. } | State::Done => None,
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match &self.state {
            State::Locking(round) | State::Releasing { round, .. } => round.poll_timeout(),
            State::Waiting { until } => Some(*until),
            State::Done => None,
        }
    }

    fn poll_outcome(&mut self) -> Option<Self::Output> {
        self.outcome.take()
    }

    fn handle_reply(&mut self, node: NodeId, request: RequestId, reply: Reply, now: Instant) {
        if let State::Locking(round) | State::Releasing { round, .. } = &mut self.state {
            round.handle_reply(node, request, reply, now, &mut self.ids);
        }
        self.advance(now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        if let State::Locking(round) | State::Releasing { round, .. } = &mut self.state {
            round.handle_timeout(now);
        }
        self.advance(now);
    }

    fn is_awaiting(&self, node: NodeId, request: RequestId) -> bool {
        match &self.state {
            State::Locking(round) | State::Releasing { round, .. } => {
                round.is_awaiting(node, request)
            }
            State::Waiting { .. } | State::Done => false,
        }
    }

    /// Cuts the pause before the next attempt short: it starts now, or as soon as the clean-up
    /// release of the failed attempt is done.
    fn handle_wakeup(&mut self, now: Instant) -> bool {
        match &mut self.state {
            State::Waiting { .. } => {
                self.start_attempt(now);
                true
            }
            State::Releasing {
                retry_at: Some(at), ..
            } => {
                *at = (*at).min(now);
                true
            }
            _ => false,
        }
    }

    /// Gives up: an attempt in flight is released on every node (any of its `SET`s may land),
    /// a clean-up in progress finishes without a retry after it, a pause ends the operation,
    /// and a lock granted but not yet handed over is released again.
    fn handle_cancel(&mut self, now: Instant) {
        let granted = matches!(self.outcome, Some(Ok(_)));
        self.outcome = None;
        let deletion = match &mut self.state {
            State::Locking(round) if !round.is_unsent() => Deletion::CleanUp,
            State::Done if granted => Deletion::Release,
            State::Releasing { retry_at, .. } => {
                *retry_at = None;
                return;
            }
            State::Locking(_) | State::Waiting { .. } | State::Done => {
                self.state = State::Done;
                return;
            }
        };
        self.state = State::Releasing {
            round: release_round(
                &self.config,
                deletion,
                &self.resources,
                &self.token,
                &mut self.ids,
                now,
            ),
            // Never reported: nobody waits for this acquire's outcome any more.
            failure: AcquireError::Contended {
                report: super::report::Report::default(),
                retry_after: None,
            },
            retry_at: None,
        };
    }

    /// Skips an attempt that has not sent anything yet: it is contended, the holder known to
    /// keep the resources until `held_until`. The retry policy counts it like any other, so the
    /// acquire gives up exactly when it would have; nothing needs cleaning up.
    fn handle_known_held(&mut self, now: Instant, held_until: Instant) -> bool {
        let State::Locking(round) = &self.state else {
            return false;
        };
        if !round.is_unsent() {
            return false;
        }
        let failure = AcquireError::Contended {
            report: round.report(),
            retry_after: Some(held_until.saturating_duration_since(now)),
        };
        match self.next_retry(now) {
            Some(until) => self.state = State::Waiting { until },
            None => {
                self.outcome = Some(Err(failure));
                self.state = State::Done;
            }
        }
        true
    }
}
