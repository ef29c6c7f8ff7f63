//! Properties of the machines under arbitrary replies and timings: a lock is granted only on a
//! quorum of grants in the deciding attempt, validity never exceeds `ttl − elapsed − drift`,
//! every failed attempt is released on every node before anything else happens, nothing is
//! sent after the outcome, every operation ends, and no input sequence makes a machine panic.

mod sim;

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};
use std::time::Duration;

use proptest::prelude::*;
use quorumlock::proto::{
    Acquire, CommandKind, Config, Extend, ExtendError, Instant, Lease, NodeId, NodeStatus,
    Operation, Release, Reply, RequestId, Retry, Settings, Transmit,
};

use sim::{base_instant, request_ids, token};

/// Ids the machines under test might issue, and ones they never will, for stray replies.
const ID_POOL: usize = 64;
/// Far more steps than any bounded operation needs; reaching it means a machine never ends.
// Enough for a 10 s retry deadline at the 1 ms minimum pause, about a dozen steps an attempt.
const MAX_STEPS: usize = 200_000;

fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("NOSCRIPT No matching script. Please use EVAL.".to_owned()),
        Just("NOAUTH Authentication required.".to_owned()),
        Just("WRONGPASS invalid username-password pair".to_owned()),
        Just("ERR max number of clients reached".to_owned()),
        ".{0,40}",
    ]
}

/// Mostly the replies the commands really get, plus everything a broken server or driver
/// could hand over.
fn any_reply() -> impl Strategy<Value = Reply> {
    prop_oneof![
        6 => Just(Reply::Ok),
        6 => Just(Reply::Integer(1)),
        3 => Just(Reply::Nil),
        3 => Just(Reply::Integer(0)),
        1 => any::<i64>().prop_map(Reply::Integer),
        2 => any_text().prop_map(Reply::Error),
        1 => any_text().prop_map(Reply::Io),
        1 => Just(Reply::TimedOut),
        1 => any_text().prop_map(Reply::Unexpected),
    ]
}

/// A delay in microseconds: usually quick, sometimes past any request deadline.
fn any_delay() -> impl Strategy<Value = u64> {
    prop_oneof![4 => 0u64..5_000, 1 => 0u64..400_000]
}

/// What the network does with one request.
#[derive(Debug, Clone)]
enum Answer {
    Silent,
    After(u64, Reply),
    /// The reply arrives twice (a driver bug, or a retried read).
    Twice(u64, Reply),
}

fn any_answer() -> impl Strategy<Value = Answer> {
    prop_oneof![
        1 => Just(Answer::Silent),
        8 => (any_delay(), any_reply()).prop_map(|(delay, reply)| Answer::After(delay, reply)),
        1 => (any_delay(), any_reply()).prop_map(|(delay, reply)| Answer::Twice(delay, reply)),
    ]
}

/// A reply nobody asked for: any node (also out of range), any id.
#[derive(Debug, Clone)]
struct Stray {
    at_us: u64,
    node: usize,
    id: usize,
    reply: Reply,
}

fn any_stray() -> impl Strategy<Value = Stray> {
    (0u64..3_000_000, 0usize..8, 0..ID_POOL, any_reply()).prop_map(|(at_us, node, id, reply)| {
        Stray {
            at_us,
            node,
            id,
            reply,
        }
    })
}

#[derive(Debug, Clone)]
struct Env {
    answers: Vec<Answer>,
    strays: Vec<Stray>,
    /// How late the driver wakes up for a timeout, in microseconds.
    lateness_us: u64,
}

fn any_env() -> impl Strategy<Value = Env> {
    (
        prop::collection::vec(any_answer(), 1..40),
        prop::collection::vec(any_stray(), 0..8),
        prop_oneof![3 => Just(0u64), 1 => 0u64..20_000],
    )
        .prop_map(|(answers, strays, lateness_us)| Env {
            answers,
            strays,
            lateness_us,
        })
}

/// A retry pause below `max_ms`, or now and then one too long to add to any instant.
fn any_pause(max_ms: u64) -> impl Strategy<Value = Duration> {
    prop_oneof![
        30 => (0..max_ms).prop_map(Duration::from_millis),
        1 => Just(Duration::MAX),
    ]
}

fn any_config() -> impl Strategy<Value = Config> {
    (
        1usize..=5,
        prop_oneof![Just(50u64), Just(1_000), Just(10_000)],
        0u32..4,
        any_pause(100),
        any_pause(60),
        any::<bool>(),
        prop::option::weighted(0.2, 0u32..3),
        prop::option::weighted(0.2, 1u64..30_000),
    )
        .prop_map(
            |(nodes, ttl, retries, delay, jitter, until, max_extensions, max_hold)| {
                let mut settings = Settings::default();
                settings.ttl = Duration::from_millis(ttl);
                settings.retry = if until {
                    Retry::until(Duration::from_millis(ttl), delay, jitter)
                } else {
                    Retry::new(retries, delay, jitter)
                };
                settings.max_extensions = max_extensions;
                settings.max_hold = max_hold.map(Duration::from_millis);
                Config::new(nodes, settings).expect("generated settings are valid")
            },
        )
}

fn nanos(duration: Duration) -> u64 {
    duration.as_nanos() as u64
}

/// Everything that went in and out of one machine, in nanoseconds since the base instant.
#[derive(Debug, Default)]
struct Log {
    sent: Vec<(u64, Transmit)>,
    fed: Vec<(u64, NodeId, RequestId, Reply)>,
    outcome_at: Option<u64>,
    /// When the operation had nothing left in flight (the outcome, or the end of its tail).
    finished_at: u64,
}

/// Replies on their way, in arrival order (ties in sending order).
#[derive(Default)]
struct InFlight {
    queue: BinaryHeap<Reverse<(u64, usize)>>,
    deliveries: Vec<(NodeId, RequestId, Reply)>,
}

impl InFlight {
    fn deliver(&mut self, at: u64, delivery: (NodeId, RequestId, Reply)) {
        self.queue.push(Reverse((at, self.deliveries.len())));
        self.deliveries.push(delivery);
    }

    fn next_at(&self) -> Option<u64> {
        self.queue.peek().map(|Reverse((at, _))| *at)
    }

    fn pop(&mut self) -> Option<(u64, (NodeId, RequestId, Reply))> {
        let Reverse((at, index)) = self.queue.pop()?;
        Some((at, self.deliveries[index].clone()))
    }
}

/// Drives `op` the way a driver would, with the network behaving as `env` says. Checks the
/// driving contract on every step and returns the record and the outcome.
fn drive<O: Operation>(op: &mut O, base: Instant, start: u64, env: &Env) -> (Log, O::Output) {
    let ids = request_ids(ID_POOL);
    let mut log = Log::default();
    let mut network = InFlight::default();
    for stray in &env.strays {
        network.deliver(
            start + stray.at_us * 1_000,
            (NodeId::new(stray.node), ids[stray.id], stray.reply.clone()),
        );
    }
    let mut answers = env.answers.iter().cycle();
    let mut now = start;
    let mut outcome = None;
    // Whether the operation still had requests in flight when it gave its outcome.
    let mut tail = false;
    for _ in 0..MAX_STEPS {
        while let Some(transmit) = op.poll_transmit() {
            assert!(
                outcome.is_none() || tail,
                "sent {transmit:?} after an outcome with nothing in flight"
            );
            match answers.next().expect("answers cycle") {
                Answer::Silent => {}
                Answer::After(delay, reply) => network.deliver(
                    now + delay * 1_000,
                    (transmit.node, transmit.request, reply.clone()),
                ),
                Answer::Twice(delay, reply) => {
                    for _ in 0..2 {
                        network.deliver(
                            now + delay * 1_000,
                            (transmit.node, transmit.request, reply.clone()),
                        );
                    }
                }
            }
            log.sent.push((now, transmit));
        }
        if let Some(output) = op.poll_outcome() {
            assert!(outcome.is_none(), "a second outcome");
            outcome = Some(output);
            log.outcome_at = Some(now);
            tail = op.poll_timeout().is_some();
        }
        let timeout = op.poll_timeout().map(|at| {
            let at = nanos(at.saturating_duration_since(base));
            at.max(now) + env.lateness_us * 1_000
        });
        if outcome.is_some() && !tail {
            assert_eq!(timeout, None, "a timeout is scheduled after the outcome");
        }
        if let (Some(_), None) = (&outcome, timeout) {
            // Strays may still be on their way; the operation has nothing left to wait for.
            log.finished_at = now;
            return (log, outcome.expect("matched"));
        }
        let next_delivery = network.next_at();
        let delivery_first = match (next_delivery, timeout) {
            (None, None) => panic!("the operation stalled without an outcome"),
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(delivery), Some(timeout)) => delivery <= timeout,
        };
        if delivery_first {
            let (at, (node, request, reply)) = network.pop().expect("peeked");
            now = now.max(at);
            log.fed.push((now, node, request, reply.clone()));
            op.handle_reply(node, request, reply, base + Duration::from_nanos(now));
        } else if let Some(at) = timeout {
            now = now.max(at);
            op.handle_timeout(base + Duration::from_nanos(now));
        }
    }
    panic!("no outcome after {MAX_STEPS} steps");
}

fn is_lock_command(transmit: &Transmit) -> bool {
    match transmit.command.script() {
        None => true,
        Some(script) => script.name == "acquire",
    }
}

/// A command sent by source after a `NOSCRIPT`; an acquire of several resources goes by
/// source from the start.
fn is_resend(transmit: &Transmit) -> bool {
    matches!(transmit.command.kind(), CommandKind::Eval(script) if script.name != "acquire")
}

/// The grant a request of this command means.
fn grant_for(transmit: &Transmit) -> Reply {
    match transmit.command.kind() {
        CommandKind::SetNx => Reply::Ok,
        _ => Reply::Integer(1),
    }
}

/// Splits what an acquire sent into alternating lock and release phases.
fn phases(sent: &[(u64, Transmit)]) -> Vec<(bool, Vec<&(u64, Transmit)>)> {
    let mut phases: Vec<(bool, Vec<&(u64, Transmit)>)> = Vec::new();
    for entry in sent {
        let locking = is_lock_command(&entry.1);
        match phases.last_mut() {
            Some((phase, entries)) if *phase == locking => entries.push(entry),
            _ => phases.push((locking, vec![entry])),
        }
    }
    phases
}

/// Nodes a phase asked, not counting NOSCRIPT resends; each node exactly once.
fn first_sends(entries: &[&(u64, Transmit)]) -> Vec<usize> {
    entries
        .iter()
        .filter(|(_, t)| !is_resend(t))
        .map(|(_, t)| t.node.index())
        .collect()
}

/// Distinct nodes that answered one of `requests` with a grant, up to `until`.
fn granting_nodes(log: &Log, requests: &[&(u64, Transmit)], until: u64) -> usize {
    let granted: BTreeSet<usize> = log
        .fed
        .iter()
        .filter(|(at, ..)| *at <= until)
        .filter(|(_, node, request, reply)| {
            requests
                .iter()
                .any(|(_, t)| t.node == *node && t.request == *request && *reply == grant_for(t))
        })
        .map(|(_, node, ..)| node.index())
        .collect();
    granted.len()
}

fn check_validity(config: &Config, lease: &Lease, round_start: u64, decided: u64, base: Instant) {
    let elapsed = Duration::from_nanos(decided - round_start);
    let drift = config.with_ttl(lease.ttl()).expect("valid TTL").drift();
    let bound = lease.ttl().saturating_sub(elapsed).saturating_sub(drift);
    assert!(
        lease.validity() <= bound,
        "validity {:?} above ttl − elapsed − drift = {bound:?}",
        lease.validity()
    );
    assert!(lease.validity() >= config.min_validity());
    assert!(
        lease.valid_until() + drift <= base + Duration::from_nanos(round_start) + lease.ttl(),
        "valid beyond ttl − drift counted from the round's start"
    );
}

fn acquire_resources(multi: bool) -> Vec<&'static str> {
    if multi {
        vec!["a", "b"]
    } else {
        vec!["a"]
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn acquire_keeps_its_promises_under_any_replies(
        config in any_config(),
        env in any_env(),
        multi in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let base = base_instant();
        let resources = acquire_resources(multi);
        let mut op = Acquire::new(&config, resources.iter().copied(), token("tok-a"), seed, base)
            .expect("valid resources");
        let (log, outcome) = drive(&mut op, base, 0, &env);
        let decided = log.outcome_at.expect("decided");
        let nodes: Vec<usize> = (0..config.nodes()).collect();

        let phases = phases(&log.sent);
        let attempts = phases.iter().filter(|(locking, _)| *locking).count();
        prop_assert_eq!(attempts as u32, op.attempts());
        for (index, (locking, entries)) in phases.iter().enumerate() {
            // Lock and release phases alternate, starting with a lock phase.
            prop_assert_eq!(*locking, index % 2 == 0);
            // Every phase asks every node once, whether or not it answered before.
            prop_assert_eq!(first_sends(entries), nodes.clone());
            // A release phase goes out all at once, at the instant the attempt failed.
            if !locking {
                let started = entries[0].0;
                prop_assert!(entries.iter().filter(|(_, t)| !is_resend(t)).all(|(at, _)| *at == started));
            }
        }
        match &outcome {
            Ok(lease) => {
                let (locking, last) = phases.last().expect("an attempt");
                prop_assert!(*locking, "a lock cannot follow a release phase");
                let round_start = last[0].0;
                prop_assert!(granting_nodes(&log, last, decided) >= config.quorum());
                check_validity(&config, lease, round_start, decided, base);
                prop_assert_eq!(lease.acquired_at(), base + Duration::from_nanos(round_start));
            }
            Err(error) => {
                // The failed last attempt was released on every node before the outcome.
                let (locking, _) = phases.last().expect("an attempt");
                prop_assert!(!locking, "failed without releasing: {}", error);
                prop_assert_eq!(error.report().nodes().len(), config.nodes());
            }
        }
    }

    #[test]
    fn extend_keeps_its_promises_under_any_replies(
        config in any_config(),
        env in any_env(),
        multi in any::<bool>(),
        at_percent in 0u32..120,
        extensions in 0u32..3,
    ) {
        let base = base_instant();
        let lease = held(&config, &acquire_resources(multi), base, extensions);
        // Mostly within the lease's validity, sometimes after it.
        let start = nanos(lease.valid_until() - base) * u64::from(at_percent) / 100;
        let mut op = Extend::new(&config, &lease, 3, base + Duration::from_nanos(start));
        let (log, outcome) = drive(&mut op, base, start, &env);
        let decided = log.outcome_at.expect("decided");

        for (_, transmit) in &log.sent {
            prop_assert_eq!(transmit.command.script().map(|s| s.name), Some("extend"));
            prop_assert!(transmit.command.ttl_ms().is_some());
        }
        // Rounds: a first send to a node already asked in this round starts the next round.
        let mut rounds: Vec<Vec<&(u64, Transmit)>> = Vec::new();
        for entry in &log.sent {
            let new_round = rounds.last().is_none_or(|round| {
                !is_resend(&entry.1) && round.iter().any(|(_, t)| t.node == entry.1.node && !is_resend(t))
            });
            if new_round {
                rounds.push(vec![entry]);
            } else if let Some(round) = rounds.last_mut() {
                round.push(entry);
            }
        }
        let nodes: Vec<usize> = (0..config.nodes()).collect();
        for round in &rounds {
            prop_assert_eq!(first_sends(round), nodes.clone());
            // A round never asks for less than the lease already promises.
            let ttl = Duration::from_millis(round[0].1.command.ttl_ms().expect("a TTL"));
            let started = base + Duration::from_nanos(round[0].0);
            prop_assert!(started + ttl >= lease.valid_until(), "an extension shortened the keys");
        }
        match &outcome {
            Ok(extended) => {
                let last = rounds.last().expect("a round ran");
                prop_assert!(granting_nodes(&log, last, decided) >= config.quorum());
                prop_assert!(base + Duration::from_nanos(decided) < lease.valid_until());
                check_validity(&config, extended, last[0].0, decided, base);
                prop_assert_eq!(extended.extensions(), lease.extensions() + 1);
                prop_assert_eq!(extended.acquired_at(), lease.acquired_at());
            }
            Err(ExtendError::Lost { report }) => {
                prop_assert!(report.refused_count() > config.nodes() - config.quorum());
            }
            Err(ExtendError::LimitReached { .. }) => {
                let settings = config.settings();
                prop_assert!(settings.max_extensions.is_some() || settings.max_hold.is_some());
            }
            Err(_) => {}
        }
        // Whatever happened, the answer comes no later than the lease's end (or at once).
        prop_assert!(
            base + Duration::from_nanos(decided) <= lease.valid_until().max(base + Duration::from_nanos(start))
                + Duration::from_nanos(env.lateness_us * 1_000)
        );
    }

    #[test]
    fn release_asks_everyone_and_always_ends(
        config in any_config(),
        env in any_env(),
        multi in any::<bool>(),
    ) {
        let base = base_instant();
        let resources: Vec<String> = acquire_resources(multi).into_iter().map(str::to_owned).collect();
        let mut op = Release::new(&config, &resources, &token("tok-a"), base);
        let (log, released) = drive(&mut op, base, 0, &env);
        let nodes: Vec<usize> = (0..config.nodes()).collect();
        let first: Vec<&(u64, Transmit)> = log.sent.iter().filter(|(_, t)| !is_resend(t)).collect();
        prop_assert_eq!(first_sends(&first), nodes);
        prop_assert!(first.iter().all(|(at, _)| *at == 0), "every node is asked at once");
        let report = &released.report;
        prop_assert_eq!(report.nodes().len(), config.nodes());
        // Decided early only on a quorum of answers; otherwise only once no node is pending.
        let answered = report.granted_count() + report.refused_count();
        let pending = report.nodes().iter().filter(|n| n.status == NodeStatus::NoAnswer).count();
        prop_assert!(answered >= config.quorum() || pending == 0, "decided early without a quorum: {}", report);
        // The machine waits for each node's last request, after the outcome if need be, until
        // it is answered or reaches its deadline.
        let finished = log.finished_at;
        for node in 0..config.nodes() {
            let (_, last) = log.sent.iter().rev().find(|(_, t)| t.node.index() == node).expect("asked");
            let answered = log.fed.iter().any(|(at, n, r, _)| *at <= finished && *n == last.node && *r == last.request);
            let expired = base + Duration::from_nanos(finished) >= last.deadline;
            prop_assert!(answered || expired, "finished before node {} answered or timed out", node);
        }
    }

    /// Inputs in any order and at any (forward-moving) time, with any ids: no panic, one
    /// outcome, and once nothing is in flight after it, nothing more is sent.
    #[test]
    fn no_input_sequence_makes_a_machine_panic(
        config in any_config(),
        inputs in prop::collection::vec(
            (0u8..3, 0u64..300_000, 0usize..8, 0..ID_POOL, any_reply()),
            0..80,
        ),
        huge_jump in any::<bool>(),
        forever in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let base = base_instant();
        let ids = request_ids(ID_POOL);
        let config = if forever {
            config.with_retry(Retry::until(Duration::MAX, Duration::ZERO, Duration::MAX))
        } else {
            config
        };
        let lease = held(&config, &["a"], base, 0);
        let mut acquire = Acquire::new(&config, ["a", "b"], token("tok-a"), seed, base)
            .expect("valid resources");
        let mut extend = Extend::new(&config, &lease, seed, base);
        let mut release = Release::for_lease(&config, &lease, base);
        let mut now = base;
        let mut phases = [Phase::Running; 3];
        for (index, (kind, step_us, node, id, reply)) in inputs.into_iter().enumerate() {
            now += Duration::from_micros(step_us);
            if huge_jump && index == 40 {
                now += Duration::from_secs(400 * 24 * 3600);
            }
            let node = NodeId::new(node);
            let request = ids[id];
            step(&mut acquire, kind, node, request, reply.clone(), now, &mut phases[0]);
            step(&mut extend, kind, node, request, reply.clone(), now, &mut phases[1]);
            step(&mut release, kind, node, request, reply, now, &mut phases[2]);
        }
    }
}

/// One input to a machine, then its output, checking that nothing follows the outcome.
fn step<O: Operation>(
    op: &mut O,
    kind: u8,
    node: NodeId,
    request: RequestId,
    reply: Reply,
    now: Instant,
    phase: &mut Phase,
) {
    match kind {
        0 => op.handle_reply(node, request, reply, now),
        1 => op.handle_timeout(now),
        _ => {
            let _ = op.is_awaiting(node, request);
            let _ = op.poll_timeout();
        }
    }
    while let Some(transmit) = op.poll_transmit() {
        assert!(
            *phase != Phase::Over,
            "sent {transmit:?} after the operation was over"
        );
    }
    if op.poll_outcome().is_some() {
        assert_eq!(*phase, Phase::Running, "a second outcome");
        *phase = Phase::Tail;
    }
    if *phase == Phase::Tail && op.poll_timeout().is_none() {
        *phase = Phase::Over;
    }
    if *phase == Phase::Over {
        assert_eq!(op.poll_timeout(), None);
    }
}

/// Where a machine is in its life, as its driver sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    /// Given its outcome, still waiting for requests in flight (a release's slower nodes).
    Tail,
    Over,
}

/// A lease granted by every node 1 ms after `base`, as if extended `extensions` times.
fn held(config: &Config, resources: &[&str], base: Instant, extensions: u32) -> Lease {
    let mut op = Acquire::new(config, resources.iter().copied(), token("tok-a"), 1, base)
        .expect("valid resources");
    let now = base + Duration::from_millis(1);
    let sent: Vec<Transmit> = std::iter::from_fn(|| op.poll_transmit()).collect();
    for transmit in &sent {
        let grant = grant_for(transmit);
        op.handle_reply(transmit.node, transmit.request, grant, now);
    }
    let mut lease = op
        .poll_outcome()
        .expect("decided")
        .expect("granted by every node");
    for _ in 0..extensions {
        let mut extend = Extend::new(config, &lease, 1, now);
        let sent: Vec<Transmit> = std::iter::from_fn(|| extend.poll_transmit()).collect();
        for transmit in &sent {
            extend.handle_reply(transmit.node, transmit.request, Reply::Integer(1), now);
        }
        match extend.poll_outcome().expect("decided") {
            Ok(extended) => lease = extended,
            Err(_) => break,
        }
    }
    lease
}
