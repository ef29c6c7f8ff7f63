//! The acquire machine with hand-fed replies: fan-out, quorum, validity, clean-up release,
//! retries, NOSCRIPT fallback, stray replies and the per-node report.

mod sim;

use std::time::Duration;

use quorumlock::proto::{
    Acquire, AcquireError, CommandKind, Config, Instant, Lease, NodeErrorKind, NodeId, NodeStatus,
    Operation, Reply, Retry, Transmit,
};

use sim::harness::Harness;
use sim::{base_instant, config, ms, request_ids, settings, token};

fn start(config: &Config, resources: &[&str], seed: u64) -> Harness<Acquire> {
    let base = base_instant();
    let op = Acquire::new(
        config,
        resources.iter().copied(),
        token("tok-a"),
        seed,
        base,
    )
    .expect("valid resources");
    Harness::new(op, base)
}

fn noscript() -> Reply {
    Reply::Error("NOSCRIPT No matching script. Please use EVAL.".to_owned())
}

#[track_caller]
fn lease_of(harness: &Harness<Acquire>) -> &Lease {
    match harness.expect_outcome() {
        Ok(lease) => lease,
        Err(error) => panic!("expected the lock, got: {error}"),
    }
}

#[track_caller]
fn error_of(harness: &Harness<Acquire>) -> &AcquireError {
    match harness.expect_outcome() {
        Ok(lease) => panic!("expected a failure, got a lock: {lease:?}"),
        Err(error) => error,
    }
}

fn harness_nodes(harness: &Harness<Acquire>) -> usize {
    harness
        .sent()
        .iter()
        .map(|s| s.transmit.node.index() + 1)
        .max()
        .unwrap_or(0)
}

fn script_name(transmit: &Transmit) -> Option<&'static str> {
    transmit.command.script().map(|script| script.name)
}

fn nodes_of(transmits: &[Transmit]) -> Vec<usize> {
    transmits.iter().map(|t| t.node.index()).collect()
}

/// Answers every release of a failed attempt with "nothing of yours was here". Lock requests
/// not yet looked at are skipped.
fn answer_releases(harness: &mut Harness<Acquire>) {
    let releases: Vec<Transmit> = harness
        .new_transmits()
        .into_iter()
        .filter(|t| script_name(t) == Some("clean-up"))
        .collect();
    let nodes: Vec<usize> = (0..harness_nodes(harness)).collect();
    assert_eq!(nodes_of(&releases), nodes, "a release goes to every node");
    for release in releases {
        harness
            .after(ms(1))
            .feed(release.node, release.request, Reply::Integer(0));
    }
}

#[test]
fn every_node_is_asked_at_once_each_request_with_its_own_deadline() {
    let config = config(5, Retry::NONE);
    let mut harness = start(&config, &["job"], 1);
    let sent = harness.new_transmits();
    assert_eq!(nodes_of(&sent), [0, 1, 2, 3, 4]);
    let mut ids: Vec<_> = sent.iter().map(|t| t.request).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 5, "every request has its own id");
    for transmit in &sent {
        assert_eq!(transmit.deadline, harness.base() + config.request_timeout());
        assert_eq!(transmit.command.kind(), CommandKind::SetNx);
        assert_eq!(
            transmit.command.to_strings(),
            ["SET", "job", "tok-a", "NX", "PX", "10000"]
        );
    }
    assert!(harness.outcome().is_none());
    assert_eq!(harness.op().poll_timeout(), Some(harness.base() + ms(200)));

    // Replies trigger no second wave: everything went out up front.
    harness.at(ms(3)).reply(0, Reply::Ok);
    harness
        .at(ms(4))
        .reply(1, Reply::Io("connection reset".to_owned()));
    assert!(harness.new_transmits().is_empty());
    assert_eq!(harness.op().poll_timeout(), Some(harness.base() + ms(200)));
}

#[test]
fn a_strict_majority_decides_for_every_cluster_size() {
    for nodes in 1..=6 {
        let quorum = nodes / 2 + 1;
        let config = config(nodes, Retry::NONE);
        assert_eq!(config.quorum(), quorum);

        // Exactly a quorum of grants wins at once; the other nodes are not waited for.
        let mut harness = start(&config, &["job"], 1);
        for node in 0..quorum {
            assert!(
                harness.outcome().is_none(),
                "{nodes} nodes: decided after {node} of {quorum} grants"
            );
            harness.at(ms(1 + node as u64)).reply(node, Reply::Ok);
        }
        let lease = lease_of(&harness);
        assert_eq!(lease.report().granted_count(), quorum, "{nodes} nodes");
        assert_eq!(
            harness.outcome_at(),
            Some(harness.base() + ms(quorum as u64))
        );
        let unanswered = lease.report().nodes_where(|s| *s == NodeStatus::NoAnswer);
        assert_eq!(unanswered.len(), nodes - quorum, "{nodes} nodes");

        // One grant short: the attempt fails as soon as enough nodes refused.
        let mut harness = start(&config, &["job"], 1);
        let lock = harness.new_transmits();
        for transmit in &lock[..quorum - 1] {
            harness
                .after(ms(1))
                .feed(transmit.node, transmit.request, Reply::Ok);
        }
        let refusals_needed = nodes - quorum + 1;
        for (count, transmit) in lock[quorum - 1..].iter().enumerate() {
            assert!(
                harness.new_transmits().is_empty(),
                "{nodes} nodes: gave up after {count} refusals"
            );
            harness
                .after(ms(1))
                .feed(transmit.node, transmit.request, Reply::Nil);
            if count + 1 == refusals_needed {
                break;
            }
        }
        answer_releases(&mut harness);
        assert!(
            matches!(error_of(&harness), AcquireError::Contended { .. }),
            "{nodes} nodes"
        );
    }
}

#[test]
fn the_attempt_is_decided_as_soon_as_a_quorum_is_impossible() {
    let config = config(5, Retry::NONE);
    let mut harness = start(&config, &["job"], 1);
    let lock = harness.new_transmits();
    harness.at(ms(1)).reply(0, Reply::Nil);
    harness.at(ms(2)).reply(1, Reply::Nil);
    assert!(harness.new_transmits().is_empty());
    harness.at(ms(3)).reply(2, Reply::Nil);
    // Nodes 3 and 4 have not answered, yet the clean-up starts now, on every node.
    let releases = harness.new_transmits();
    assert_eq!(nodes_of(&releases), [0, 1, 2, 3, 4]);
    assert!(harness
        .op()
        .is_awaiting(releases[3].node, releases[3].request));
    assert!(!harness.op().is_awaiting(lock[3].node, lock[3].request));
    for release in &releases {
        harness.feed(release.node, release.request, Reply::Integer(0));
    }
    let error = error_of(&harness);
    assert!(matches!(error, AcquireError::Contended { .. }));
    assert_eq!(
        error.to_string(),
        "lock already taken, locked nodes: [0 1 2]"
    );
    assert_eq!(
        error.report().nodes_where(|s| *s == NodeStatus::NoAnswer),
        [NodeId::new(3), NodeId::new(4)]
    );
}

#[test]
fn validity_is_ttl_minus_elapsed_minus_drift() {
    // (ttl, drift factor, expected drift, when the deciding grant arrives)
    let cases = [
        (ms(10_000), 0.01, ms(102), ms(37)),
        (ms(1_000), 0.0, ms(2), ms(12)),
        (ms(60_000), 0.02, ms(1_202), ms(150)),
        (ms(30), 0.01, Duration::from_micros(2_300), ms(4)),
    ];
    for (ttl, factor, drift, decided) in cases {
        let mut settings = settings(ttl, Retry::NONE);
        settings.drift_factor = factor;
        let config = Config::new(3, settings).expect("valid settings");
        assert_eq!(config.drift(), drift, "ttl {ttl:?}");
        let mut harness = start(&config, &["job"], 1);
        harness.at(decided / 2).reply(2, Reply::Ok);
        harness.at(decided).reply(0, Reply::Ok);
        let lease = lease_of(&harness);
        assert_eq!(lease.validity(), ttl - decided - drift, "ttl {ttl:?}");
        assert_eq!(lease.valid_until(), harness.base() + ttl - drift);
        assert_eq!(lease.acquired_at(), harness.base());
        assert_eq!(lease.ttl(), ttl);
        assert!(lease.is_valid_at(harness.base() + ttl - drift - Duration::from_nanos(1)));
        assert!(!lease.is_valid_at(lease.valid_until()));
    }
}

#[test]
fn validity_saturates_at_zero_instead_of_underflowing() {
    let config = config(3, Retry::NONE);
    let mut harness = start(&config, &["job"], 1);
    // A driver that handles the grants long after the TTL, never having fired the timeout.
    harness.at(ms(20_000)).reply(0, Reply::Ok);
    harness.reply(1, Reply::Ok);
    answer_releases(&mut harness);
    match error_of(&harness) {
        AcquireError::ValidityTooShort {
            validity,
            min_validity,
            ..
        } => {
            assert_eq!(*validity, Duration::ZERO);
            assert_eq!(*min_validity, config.min_validity());
        }
        other => panic!("expected ValidityTooShort, got {other:?}"),
    }
}

#[test]
fn a_quorum_reached_with_less_than_the_minimum_validity_is_a_failed_attempt() {
    let mut settings = settings(ms(1_000), Retry::NONE);
    settings.min_validity = ms(600);
    settings.request_timeout = Some(ms(300));
    let config = Config::new(3, settings).expect("valid settings");
    assert_eq!(config.drift(), ms(12));

    // A driver that fell behind (an event loop blocked for a while) hands over node 2's reply
    // after the deadline it did not get to act on: the quorum comes late.
    let run = |decided: Duration| {
        let mut harness = start(&config, &["a", "b"], 1);
        assert_eq!(harness.new_transmits().len(), 3);
        harness.at(ms(10)).reply(0, Reply::Integer(1));
        assert!(harness.outcome().is_none());
        harness.at(decided).reply(2, Reply::Integer(1));
        harness
    };

    let mut late = run(ms(500));
    let releases = late.new_transmits();
    assert_eq!(nodes_of(&releases), [0, 1, 2], "a release everywhere");
    for release in &releases {
        assert_eq!(script_name(release), Some("clean-up"));
        late.feed(release.node, release.request, Reply::Integer(1));
    }
    let error = error_of(&late);
    assert!(matches!(
        error,
        AcquireError::ValidityTooShort { validity, .. } if *validity == ms(488)
    ));
    assert_eq!(
        error.to_string(),
        "quorum reached too late: 488ms of validity left, 600ms required \
         (node 0: granted (10.0 ms); node 1: no answer before the decision; \
         node 2: granted (500.0 ms))"
    );

    // Exactly the minimum is enough.
    let on_time = run(ms(388));
    assert_eq!(lease_of(&on_time).validity(), ms(600));
}

/// Two refusals at 5 and 6 ms, then the clean-up release answered by every node.
fn fail_first_attempt(seed: u64, retry: Retry) -> Harness<Acquire> {
    let config = config(3, retry);
    let mut harness = start(&config, &["job"], seed);
    let lock = harness.new_transmits();
    assert_eq!(lock.len(), 3);
    harness.at(ms(5)).reply(0, Reply::Nil);
    harness.at(ms(6)).reply(1, Reply::Nil);
    let releases = harness.new_transmits();
    // Both refusing nodes and the silent one: its SET may still land.
    assert_eq!(nodes_of(&releases), [0, 1, 2]);
    for release in &releases {
        assert_eq!(script_name(release), Some("clean-up"));
        assert_eq!(
            release.command.to_string(),
            "EVALSHA clean-up 2 job quorumlock:waiting:job tok-a 10000"
        );
        assert_eq!(release.deadline, harness.base() + ms(6) + ms(200));
    }
    harness.at(ms(8)).reply(0, Reply::Integer(0));
    harness.at(ms(9)).reply(1, Reply::Integer(0));
    assert!(
        harness.new_transmits().is_empty(),
        "no new attempt before every node answered the release"
    );
    harness.at(ms(10)).reply(2, Reply::Integer(1));
    assert!(harness.outcome().is_none());
    harness
}

#[test]
fn a_failed_attempt_releases_everywhere_then_retries_after_a_jittered_delay() {
    let retry = Retry::new(2, ms(100), ms(40));
    let mut harness = fail_first_attempt(7, retry);
    let failed_at = harness.base() + ms(6);
    let retry_at = harness.op().poll_timeout().expect("a retry is scheduled");
    let delay = retry_at - failed_at;
    assert!(
        (ms(60)..=ms(140)).contains(&delay),
        "delay {delay:?} is outside 100 ms ± 40 ms"
    );

    // Waking early starts nothing.
    harness.at(retry_at - harness.base() - Duration::from_micros(1));
    harness.timeout_now();
    assert!(harness.new_transmits().is_empty());

    harness.fire_timeout();
    let second = harness.new_transmits();
    assert_eq!(nodes_of(&second), [0, 1, 2]);
    assert!(second
        .iter()
        .all(|t| t.command.kind() == CommandKind::SetNx));
    assert!(second.iter().all(|t| t.deadline == retry_at + ms(200)));
    assert_eq!(harness.op().attempts(), 2);
    harness.after(ms(2)).reply(0, Reply::Ok);
    harness.reply(2, Reply::Ok);
    let lease = lease_of(&harness);
    assert_eq!(
        lease.acquired_at(),
        retry_at,
        "validity counts from the retry"
    );
}

#[test]
fn retry_jitter_replays_from_the_seed_and_spreads_across_seeds() {
    let retry = Retry::new(2, ms(100), ms(40));
    let delay = |seed| {
        let harness = fail_first_attempt(seed, retry);
        harness.op().poll_timeout().expect("a retry is scheduled") - (harness.base() + ms(6))
    };
    let delays: Vec<Duration> = (0..32).map(delay).collect();
    let replayed: Vec<Duration> = (0..32).map(delay).collect();
    assert_eq!(delays, replayed);
    assert!(delays.iter().all(|d| (ms(60)..=ms(140)).contains(d)));
    let mut distinct = delays.clone();
    distinct.sort();
    distinct.dedup();
    assert!(distinct.len() > 16, "jitter barely varies: {delays:?}");
    assert!(delays.iter().any(|d| *d < ms(100)) && delays.iter().any(|d| *d > ms(100)));
}

/// Refuses every attempt on every node and answers every release, until the outcome.
fn refuse_until_outcome(harness: &mut Harness<Acquire>) -> Vec<Duration> {
    let mut starts = Vec::new();
    for _ in 0..20 {
        let lock = harness.new_transmits();
        assert!(lock.iter().all(|t| t.command.kind() == CommandKind::SetNx));
        starts.push(harness.now() - harness.base());
        for transmit in &lock {
            harness
                .after(ms(1))
                .feed(transmit.node, transmit.request, Reply::Nil);
        }
        answer_releases(harness);
        if harness.outcome().is_some() {
            return starts;
        }
        // With no pause left, the next attempt went out with the last release answer.
        if harness.unread() == 0 {
            harness.fire_timeout();
        }
    }
    panic!("the retries never ended");
}

#[test]
fn retries_stop_after_the_configured_count() {
    let config = config(3, Retry::new(2, ms(50), Duration::ZERO));
    let mut harness = start(&config, &["job"], 1);
    let starts = refuse_until_outcome(&mut harness);
    assert_eq!(starts.len(), 3, "one attempt and two retries");
    assert_eq!(harness.op().attempts(), 3);
    assert!(matches!(error_of(&harness), AcquireError::Contended { .. }));
}

#[test]
fn retries_stop_at_the_deadline() {
    let config = config(3, Retry::until(ms(300), ms(100), Duration::ZERO));
    let mut harness = start(&config, &["job"], 1);
    let starts = refuse_until_outcome(&mut harness);
    // Attempts fail 2 ms after they start; the next one is due 100 ms after that failure.
    assert_eq!(starts, [ms(0), ms(102), ms(204)]);
    assert!(error_of(&harness)
        .to_string()
        .starts_with("lock already taken"));
}

#[test]
fn several_resources_go_by_source_and_a_noscript_is_a_failed_vote() {
    let config = config(3, Retry::NONE);
    let mut harness = start(&config, &["a", "b"], 1);
    let lock = harness.new_transmits();
    let source = lock[0].command.script().expect("a script").source;
    for transmit in &lock {
        assert!(matches!(transmit.command.kind(), CommandKind::Eval(_)));
        assert_eq!(script_name(transmit), Some("acquire"));
        assert_eq!(
            transmit.command.to_strings(),
            ["EVAL", source, "2", "a", "b", "tok-a", "10000"]
        );
        assert_eq!(
            transmit.command.to_string(),
            "EVAL acquire 2 a b tok-a 10000"
        );
    }

    // Nothing to resend: by source, a node cannot lack the script, and whatever says so is
    // just a failure, like any other error.
    harness.at(ms(1)).reply(1, noscript());
    assert!(harness.new_transmits().is_empty(), "no resend");
    harness.at(ms(3)).reply(0, Reply::Integer(1));
    harness.at(ms(4)).reply(2, Reply::Integer(1));
    match &lease_of(&harness).report().nodes()[1].status {
        NodeStatus::Failed(error) => assert_eq!(error.kind, NodeErrorKind::Server),
        other => panic!("expected a failed vote, got {other:?}"),
    }
    assert_eq!(harness.sent().len(), 3);

    // A plain SET has no script to resend either.
    let mut harness = start(&config, &["job"], 1);
    assert_eq!(harness.new_transmits().len(), 3);
    harness.at(ms(1)).reply(1, noscript());
    assert!(harness.new_transmits().is_empty());
}

#[test]
fn stray_late_and_duplicate_replies_are_ignored() {
    let config = config(3, Retry::new(1, ms(50), Duration::ZERO));
    let mut harness = start(&config, &["job"], 1);
    let first = harness.new_transmits();
    let unknown = *request_ids(1_000).last().expect("ids");

    harness.at(ms(1));
    harness.feed(NodeId::new(7), first[0].request, Reply::Ok);
    harness.feed(NodeId::new(usize::MAX), first[0].request, Reply::Ok);
    harness.feed(NodeId::new(0), unknown, Reply::Ok);
    harness.feed(NodeId::new(0), first[1].request, Reply::Ok);
    harness.reply(0, Reply::Ok);
    harness.reply(0, Reply::Ok);
    harness.reply(0, Reply::Ok);
    assert!(harness.outcome().is_none(), "one node voted, however often");
    assert!(harness.new_transmits().is_empty());

    // Nodes 1 and 2 refuse; the attempt is cleaned up and retried.
    harness.at(ms(2)).reply(1, Reply::Nil);
    harness.reply(2, Reply::Nil);
    answer_releases(&mut harness);
    harness.fire_timeout();
    let second = harness.new_transmits();
    assert_eq!(second.len(), 3);

    // Grants addressed to the first attempt do not count for the second.
    harness.after(ms(1));
    harness.feed(first[1].node, first[1].request, Reply::Ok);
    harness.feed(first[2].node, first[2].request, Reply::Ok);
    assert!(harness.outcome().is_none());
    harness.feed(second[1].node, second[1].request, Reply::Ok);
    harness.feed(second[2].node, second[2].request, Reply::Ok);
    let lease = lease_of(&harness);
    assert_eq!(lease.report().granted(), [NodeId::new(1), NodeId::new(2)]);

    // After the outcome every input is inert (the harness fails on any output).
    harness.after(ms(1));
    harness.feed(second[0].node, second[0].request, Reply::Ok);
    harness.feed(NodeId::new(9), unknown, Reply::Nil);
    harness.after(ms(10_000)).timeout_now();
    assert!(harness.new_transmits().is_empty());
}

#[test]
fn the_report_gives_each_nodes_status_and_latency() {
    let config = config(5, Retry::NONE);
    let mut harness = start(&config, &["job"], 1);
    harness.at(ms(3)).reply(0, Reply::Ok);
    harness.at(ms(4)).reply(1, Reply::Nil);
    harness.at(ms(5)).reply(
        2,
        Reply::Error("NOAUTH Authentication required.".to_owned()),
    );
    harness
        .at(ms(6))
        .reply(3, Reply::Io("connection refused".to_owned()));
    answer_releases(&mut harness);
    let error = error_of(&harness);
    assert!(matches!(error, AcquireError::NoQuorum { quorum: 3, .. }));
    let report = error.report();
    let latencies: Vec<_> = report.nodes().iter().map(|n| n.latency).collect();
    assert_eq!(
        latencies,
        [Some(ms(3)), Some(ms(4)), Some(ms(5)), Some(ms(6)), None]
    );
    assert_eq!(
        error.to_string(),
        "no quorum: 1 of 5 nodes granted the lock, 3 needed (node 0: granted (3.0 ms); \
         node 1: refused (4.0 ms); \
         node 2: failed: authentication error: NOAUTH Authentication required. (5.0 ms); \
         node 3: failed: I/O error: connection refused (6.0 ms); \
         node 4: no answer before the decision)"
    );

    // Seven nodes: four votes other than a grant are needed before the attempt is decided.
    let config = sim::config(7, Retry::NONE);
    let mut harness = start(&config, &["job"], 1);
    harness.at(ms(1)).reply(0, Reply::TimedOut);
    harness
        .at(ms(2))
        .reply(1, Reply::Unexpected("array of 2".to_owned()));
    harness.at(ms(3)).reply(2, Reply::Integer(1));
    harness.fire_timeout();
    answer_releases(&mut harness);
    let report = error_of(&harness).report();
    let statuses: Vec<_> = report.nodes().iter().map(|n| n.status.clone()).collect();
    assert_eq!(statuses[0], NodeStatus::TimedOut);
    assert!(matches!(&statuses[1], NodeStatus::Failed(e) if e.kind == NodeErrorKind::Protocol));
    assert!(
        matches!(&statuses[2], NodeStatus::Failed(e) if e.kind == NodeErrorKind::Protocol
            && e.detail == "unexpected integer 1")
    );
    // The deciding timeout fired at node 3's deadline; the rest were left undecided.
    assert_eq!(statuses[3], NodeStatus::TimedOut);
    assert_eq!(report.nodes()[3].latency, Some(ms(200)));
    assert_eq!(
        statuses[4..],
        [
            NodeStatus::NoAnswer,
            NodeStatus::NoAnswer,
            NodeStatus::NoAnswer
        ]
    );
}

#[test]
fn a_deadline_too_far_to_represent_means_retrying_on() {
    let config = config(3, Retry::until(Duration::MAX, ms(10), Duration::ZERO));
    let mut harness = start(&config, &["job"], 1);
    for attempt in 1..=5 {
        let lock = harness.new_transmits();
        assert_eq!(lock.len(), 3);
        for transmit in &lock[..2] {
            harness
                .after(ms(1))
                .feed(transmit.node, transmit.request, Reply::Nil);
        }
        answer_releases(&mut harness);
        assert!(
            harness.outcome().is_none(),
            "gave up after {attempt} attempts"
        );
        harness.fire_timeout();
    }
    assert_eq!(harness.op().attempts(), 6);
}

#[test]
fn a_retry_delay_too_far_to_represent_ends_the_retries() {
    for retry in [
        Retry::new(3, Duration::MAX, Duration::ZERO),
        Retry::new(3, Duration::MAX, Duration::MAX),
    ] {
        let config = config(3, retry);
        let mut harness = start(&config, &["job"], 1);
        let starts = refuse_until_outcome(&mut harness);
        assert_eq!(starts.len(), 1, "{retry:?}");
        assert!(matches!(error_of(&harness), AcquireError::Contended { .. }));
    }
    // A jitter far larger than the delay only shortens the pause, down to zero.
    let config = config(3, Retry::new(3, ms(10), Duration::MAX));
    let mut harness = start(&config, &["job"], 1);
    let starts = refuse_until_outcome(&mut harness);
    assert_eq!(starts.len(), 4);
    for pair in starts.windows(2) {
        assert!(pair[1] - pair[0] <= ms(2) + ms(1) + ms(10), "{starts:?}");
    }
}

/// The clean-up after the last failed attempt reports how long the other owner's keys live on
/// each node; the error says when a quorum of nodes will be free of them: here the second
/// longest of 5 s, 4 s and nothing, for 3 nodes and a quorum of 2.
#[test]
fn a_contended_failure_says_when_a_quorum_frees_up() {
    for (clean_ups, expected) in [
        ([5_000, 4_000, -2], Some(ms(4_000))),
        ([-2, 7_000, 7_500], Some(ms(7_000))),
        ([3_000, -2, -2], Some(ms(0))),
        // A key without expiry: no promise can be made.
        ([3_000, -1, 3_000], None),
    ] {
        let config = config(3, Retry::NONE);
        let mut harness = start(&config, &["job"], 1);
        assert_eq!(harness.new_transmits().len(), 3);
        harness.at(ms(1)).reply(0, Reply::Nil);
        harness.at(ms(1)).reply(1, Reply::Nil);
        let clean_up = harness.new_transmits();
        assert_eq!(clean_up.len(), 3);
        for (node, ttl) in clean_ups.into_iter().enumerate() {
            harness.at(ms(2)).reply(node, Reply::Integer(ttl));
        }
        match error_of(&harness) {
            AcquireError::Contended { retry_after, .. } => {
                assert_eq!(*retry_after, expected, "clean-up replies {clean_ups:?}")
            }
            other => panic!("expected contention, got {other}"),
        }
    }
}

/// A holder the driver knows of (one of its own) keeps the resource: the attempt is counted as
/// contended without a request, the retry policy runs as usual, and the error says how long the
/// holder keeps it.
#[test]
fn a_known_holder_turns_attempts_into_pauses_without_requests() {
    let config = config(3, Retry::new(2, ms(10), Duration::ZERO));
    let base = base_instant();
    let held_until = base + ms(5_000);
    let mut op = Acquire::new(&config, ["job"], token("tok-a"), 1, base).expect("valid");
    assert!(op.handle_known_held(base, held_until));
    assert!(op.poll_transmit().is_none(), "the nodes were asked");
    assert!(op.poll_outcome().is_none());
    assert_eq!(op.poll_timeout(), Some(base + ms(10)));
    assert!(
        !op.handle_known_held(base, held_until),
        "a pause has no attempt to skip"
    );

    op.handle_timeout(base + ms(10));
    assert!(op.handle_known_held(base + ms(10), held_until));
    assert_eq!(op.poll_timeout(), Some(base + ms(20)));
    op.handle_timeout(base + ms(20));
    assert!(op.handle_known_held(base + ms(20), held_until));
    assert!(op.poll_transmit().is_none(), "the nodes were asked");
    assert_eq!(op.attempts(), 3);
    match op.poll_outcome() {
        Some(Err(AcquireError::Contended {
            report,
            retry_after,
        })) => {
            assert_eq!(retry_after, Some(ms(4_980)));
            assert_eq!(report.granted_count() + report.refused_count(), 0);
        }
        other => panic!("expected a contended error, got {other:?}"),
    }
    assert_eq!(op.poll_timeout(), None);
}

/// An attempt already on its way is not skipped, and a release heard during a pause starts a
/// real attempt at once.
#[test]
fn a_known_holder_never_cancels_requests_and_a_wakeup_asks_the_nodes() {
    let config = config(3, Retry::new(5, ms(1_000), Duration::ZERO));
    let base = base_instant();
    let mut op = Acquire::new(&config, ["job"], token("tok-a"), 1, base).expect("valid");
    let first = op.poll_transmit().expect("a request");
    assert!(!op.handle_known_held(base, base + ms(5_000)));
    assert!(op.is_awaiting(first.node, first.request));

    let mut skipped = Acquire::new(&config, ["job"], token("tok-b"), 1, base).expect("valid");
    assert!(skipped.handle_known_held(base, base + ms(5_000)));
    assert!(skipped.handle_wakeup(base + ms(3)));
    let sent: Vec<Transmit> = std::iter::from_fn(|| skipped.poll_transmit()).collect();
    assert_eq!(sent.len(), 3);
    for transmit in &sent {
        skipped.handle_reply(transmit.node, transmit.request, Reply::Ok, base + ms(4));
    }
    match skipped.poll_outcome() {
        Some(Ok(lease)) => assert!(lease.report().granted_count() >= 2, "{}", lease.report()),
        other => panic!("expected the lock, got {other:?}"),
    }
}

/// Sends everything `op` asks for, a round at a time as a driver does, answering each request
/// with `reply`, until it asks for nothing more; returns the script (or `SET`) of each request
/// in order.
fn answer_all(op: &mut Acquire, reply: fn(&Transmit) -> Reply, now: Instant) -> Vec<String> {
    let mut sent = Vec::new();
    loop {
        let round: Vec<Transmit> = std::iter::from_fn(|| op.poll_transmit()).collect();
        if round.is_empty() {
            return sent;
        }
        for transmit in round {
            sent.push(script_name(&transmit).unwrap_or("SET").to_owned());
            op.handle_reply(transmit.node, transmit.request, reply(&transmit), now);
        }
    }
}

/// Dropped by its caller mid-round, an acquire releases on every node whatever its `SET`s may
/// have done, and then stops: no retry, nothing left to wait for.
#[test]
fn a_cancelled_attempt_is_cleaned_up_everywhere_and_never_retried() {
    let config = config(3, Retry::new(5, ms(10), Duration::ZERO));
    let base = base_instant();
    let mut op = Acquire::new(&config, ["job"], token("tok-a"), 1, base).expect("valid");
    let first: Vec<Transmit> = std::iter::from_fn(|| op.poll_transmit()).collect();
    assert_eq!(first.len(), 3);
    // One node granted before the caller went away.
    op.handle_reply(first[0].node, first[0].request, Reply::Ok, base + ms(1));
    op.handle_cancel(base + ms(2));
    for transmit in &first {
        assert!(!op.is_awaiting(transmit.node, transmit.request));
    }
    let clean_up = answer_all(&mut op, |_| Reply::Integer(-2), base + ms(3));
    assert_eq!(clean_up, ["clean-up"; 3]);
    assert_eq!(op.poll_timeout(), None, "a cancelled acquire retried");
    assert_eq!(op.attempts(), 1);
}

/// A lock granted but not handed over (its caller went away at that moment) is released like
/// a held one, so its waiters hear of it; a pause or an unsent attempt just ends.
#[test]
fn a_cancelled_grant_is_released_and_a_cancelled_pause_just_ends() {
    let config = config(3, Retry::new(5, ms(10), Duration::ZERO));
    let base = base_instant();
    let mut granted = Acquire::new(&config, ["job"], token("tok-a"), 1, base).expect("valid");
    let sent = answer_all(&mut granted, |_| Reply::Ok, base + ms(1));
    assert_eq!(sent, ["SET"; 3]);
    granted.handle_cancel(base + ms(2));
    assert!(
        granted.poll_outcome().is_none(),
        "the lock was handed over after all"
    );
    let release = answer_all(&mut granted, |_| Reply::Integer(1), base + ms(3));
    assert_eq!(release, ["release"; 3]);
    assert_eq!(granted.poll_timeout(), None);

    let mut pausing = Acquire::new(&config, ["job"], token("tok-b"), 1, base).expect("valid");
    let refused = answer_all(
        &mut pausing,
        |t| match script_name(t) {
            Some(_) => Reply::Integer(5_000),
            None => Reply::Nil,
        },
        base + ms(1),
    );
    assert_eq!(
        refused,
        ["SET", "SET", "SET", "clean-up", "clean-up", "clean-up"]
    );
    assert!(
        pausing.poll_timeout().is_some(),
        "the acquire should be pausing"
    );
    pausing.handle_cancel(base + ms(2));
    assert!(pausing.poll_transmit().is_none());
    assert_eq!(pausing.poll_timeout(), None);

    let mut unsent = Acquire::new(&config, ["job"], token("tok-c"), 1, base).expect("valid");
    unsent.handle_cancel(base);
    assert!(
        unsent.poll_transmit().is_none(),
        "a cancelled acquire still asked the nodes"
    );
    assert_eq!(unsent.poll_timeout(), None);
}
