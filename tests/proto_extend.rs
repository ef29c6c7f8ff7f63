//! The extend machine with hand-fed replies: the extend script only, quorum, recomputed
//! validity, lost and expired locks, retries within the validity, and the limits.

mod sim;

use std::time::Duration;

use quorumlock::proto::{
    Acquire, CommandKind, Config, Extend, ExtendError, Instant, Lease, NodeId, NodeStatus,
    Operation, Reply, Retry, Transmit,
};

use sim::harness::Harness;
use sim::{base_instant, config, ms, request_ids, settings, token};

/// A lock on "job" granted by every node 2 ms after `base`: valid until `base + 9898 ms`
/// with the 10 s TTL of [`config`].
fn lease(config: &Config) -> (Instant, Lease) {
    let base = base_instant();
    let op = Acquire::new(config, ["job"], token("tok-a"), 1, base).expect("valid resources");
    let mut harness = Harness::new(op, base);
    for node in 0..config.nodes() {
        harness.at(ms(2)).reply(node, Reply::Ok);
    }
    match harness.expect_outcome() {
        Ok(lease) => (base, lease.clone()),
        Err(error) => panic!("could not set up the lock: {error}"),
    }
}

fn extend(config: &Config, lease: &Lease, base: Instant, at: Duration) -> Harness<Extend> {
    Harness::new_at(Extend::new(config, lease, 5, base + at), base, base + at)
}

#[track_caller]
fn extended(harness: &Harness<Extend>) -> &Lease {
    match harness.expect_outcome() {
        Ok(lease) => lease,
        Err(error) => panic!("expected an extension, got: {error}"),
    }
}

#[track_caller]
fn extend_error(harness: &Harness<Extend>) -> &ExtendError {
    match harness.expect_outcome() {
        Ok(lease) => panic!("expected a failure, got {lease:?}"),
        Err(error) => error,
    }
}

fn ttl_sent(transmits: &[Transmit]) -> Duration {
    let ttl = transmits[0].command.ttl_ms().expect("extend sends a TTL");
    assert!(transmits.iter().all(|t| t.command.ttl_ms() == Some(ttl)));
    Duration::from_millis(ttl)
}

#[test]
fn extending_runs_the_extend_script_and_never_sets_a_key() {
    let config = config(3, Retry::NONE);
    let (base, lease) = lease(&config);
    let mut harness = extend(&config, &lease, base, ms(5_000));
    let sent = harness.new_transmits();
    assert_eq!(sent.len(), 3, "every node is asked at once");
    let script = sent[0].command.script().expect("extend runs a script");
    assert_eq!(script.name, "extend");
    assert!(script.source.contains("PEXPIRE") && !script.source.contains("\"SET\""));
    for transmit in &sent {
        assert!(matches!(transmit.command.kind(), CommandKind::EvalSha(_)));
        assert_eq!(
            transmit.command.to_strings(),
            ["EVALSHA", script.sha1, "1", "job", "tok-a", "10000"]
        );
        assert_eq!(transmit.deadline, base + ms(5_200));
    }

    harness
        .at(ms(5_001))
        .reply(1, Reply::Error("NOSCRIPT No matching script.".to_owned()));
    let resent = harness.new_transmits();
    assert_eq!(resent.len(), 1);
    assert_eq!(resent[0].node, NodeId::new(1));
    assert!(matches!(resent[0].command.kind(), CommandKind::Eval(s) if s.name == "extend"));
    assert_eq!(resent[0].deadline, base + ms(5_201));
    assert!(harness
        .sent()
        .iter()
        .all(|s| s.transmit.command.kind() != CommandKind::SetNx));
}

#[test]
fn a_quorum_extends_the_lock_and_the_validity_is_recomputed() {
    let config = config(3, Retry::NONE);
    let (base, lease) = lease(&config);
    let mut harness = extend(&config, &lease, base, ms(5_000));
    harness.at(ms(5_003)).reply(0, Reply::Integer(1));
    assert!(harness.outcome().is_none());
    harness.at(ms(5_010)).reply(2, Reply::Integer(1));
    let renewed = extended(&harness);
    assert_eq!(renewed.validity(), ms(10_000 - 10 - 102));
    assert_eq!(renewed.valid_until(), base + ms(5_000 + 9_898));
    assert_eq!(renewed.extensions(), 1);
    assert_eq!(renewed.acquired_at(), lease.acquired_at());
    assert_eq!(renewed.token(), lease.token());
    assert_eq!(renewed.resources(), lease.resources());
    assert_eq!(renewed.report().granted(), [NodeId::new(0), NodeId::new(2)]);
    assert_eq!(renewed.report().nodes()[1].status, NodeStatus::NoAnswer);
}

#[test]
fn a_refusing_majority_means_the_lock_is_lost() {
    let config = config(3, Retry::new(5, ms(10), Duration::ZERO));
    let (base, lease) = lease(&config);
    let mut harness = extend(&config, &lease, base, ms(5_000));
    harness.at(ms(5_001)).reply(0, Reply::Integer(0));
    harness.at(ms(5_002)).reply(2, Reply::Integer(0));
    let error = extend_error(&harness);
    assert!(matches!(error, ExtendError::Lost { .. }));
    assert_eq!(
        error.to_string(),
        "lock lost: our keys are gone or taken on nodes [0 2]"
    );
    assert_eq!(harness.sent().len(), 3, "a lost lock is not retried");
}

#[test]
fn extending_after_the_validity_ended_reports_expired_without_sending() {
    let config = config(3, Retry::NONE);
    let (base, lease) = lease(&config);
    let end = lease.valid_until() - base;
    let harness = extend(&config, &lease, base, end);
    assert!(harness.sent().is_empty());
    let error = extend_error(&harness);
    assert!(matches!(error, ExtendError::Expired { .. }));
    assert!(error
        .to_string()
        .starts_with("lock expired before the extension was confirmed"));

    let just_in_time = extend(&config, &lease, base, end - Duration::from_nanos(1));
    assert_eq!(just_in_time.sent().len(), 3);
}

#[test]
fn validity_running_out_during_the_round_ends_it_as_expired() {
    let config = config(3, Retry::NONE);
    let (base, lease) = lease(&config);
    let mut harness = extend(&config, &lease, base, ms(9_800));
    // The request deadline (10 s) lies past the validity (9898 ms): the validity comes first.
    assert_eq!(harness.op().poll_timeout(), Some(lease.valid_until()));
    harness.at(ms(9_850)).reply(0, Reply::Integer(1));
    harness.fire_timeout();
    assert_eq!(harness.outcome_at(), Some(lease.valid_until()));
    let error = extend_error(&harness);
    assert!(matches!(error, ExtendError::Expired { .. }));
    let report = error.report().expect("a round ran");
    assert_eq!(report.granted(), [NodeId::new(0)]);
}

/// Every node fails every round; returns the start of each round.
fn fail_every_round(harness: &mut Harness<Extend>) -> Vec<Instant> {
    let mut starts = Vec::new();
    for _ in 0..50 {
        let round = harness.new_transmits();
        assert_eq!(round.len(), 3, "each round asks every node");
        starts.push(harness.now());
        for transmit in &round {
            harness.after(ms(1)).feed(
                transmit.node,
                transmit.request,
                Reply::Io("connection refused".to_owned()),
            );
        }
        if harness.outcome().is_some() {
            return starts;
        }
        harness.fire_timeout();
    }
    panic!("the extension never ended");
}

#[test]
fn failing_nodes_are_retried_while_the_validity_leaves_room() {
    let config = config(3, Retry::new(1, ms(200), ms(100)));
    let (base, lease) = lease(&config);
    let mut harness = extend(&config, &lease, base, ms(8_000));
    let starts = fail_every_round(&mut harness);
    assert!(starts.len() >= 3, "only {} rounds", starts.len());
    // A round is started only if it can still finish within the validity.
    for start in &starts {
        assert!(*start + config.request_timeout() < lease.valid_until());
    }
    let error = extend_error(&harness);
    assert!(matches!(error, ExtendError::NoQuorum { quorum: 2, .. }));
    assert!(error
        .to_string()
        .starts_with("extension got no quorum: 0 of 3 nodes confirmed, 2 needed (node 0: failed: I/O error: connection refused"));

    // A retried round that succeeds counts its validity from its own start.
    let mut harness = extend(&config, &lease, base, ms(8_000));
    let first = harness.new_transmits();
    harness.at(ms(8_001)).feed(
        first[0].node,
        first[0].request,
        Reply::Io("reset".to_owned()),
    );
    harness
        .at(ms(8_001))
        .feed(first[1].node, first[1].request, Reply::TimedOut);
    harness.fire_timeout();
    let retry_start = harness.now();
    let second = harness.new_transmits();
    assert_eq!(second.len(), 3);
    // A late grant from the first round counts for nothing.
    harness
        .after(ms(1))
        .feed(first[2].node, first[2].request, Reply::Integer(1));
    harness.feed(second[0].node, second[0].request, Reply::Integer(1));
    assert!(harness.outcome().is_none());
    harness.feed(second[2].node, second[2].request, Reply::Integer(1));
    let renewed = extended(&harness);
    assert_eq!(renewed.valid_until(), retry_start + ms(10_000 - 102));
}

#[test]
fn max_extensions_limits_how_often_a_lock_is_extended() {
    let mut settings = settings(ms(10_000), Retry::NONE);
    settings.max_extensions = Some(1);
    let config = Config::new(3, settings).expect("valid settings");
    let (base, lease) = lease(&config);
    let mut harness = extend(&config, &lease, base, ms(5_000));
    harness.at(ms(5_001)).reply(0, Reply::Integer(1));
    harness.reply(1, Reply::Integer(1));
    let once = extended(&harness).clone();

    let again = extend(&config, &once, base, ms(6_000));
    assert!(again.sent().is_empty());
    let error = extend_error(&again);
    assert_eq!(
        *error,
        ExtendError::LimitReached {
            extensions: 1,
            held: ms(6_000)
        }
    );
    assert_eq!(
        error.to_string(),
        "extension limit reached after 1 extensions and 6s held"
    );
    assert!(error.report().is_none());
}

#[test]
fn max_hold_caps_the_ttl_and_then_stops_extending() {
    let mut settings = settings(ms(10_000), Retry::NONE);
    settings.max_hold = Some(ms(15_000));
    let config = Config::new(3, settings).expect("valid settings");
    let (base, lease) = lease(&config);

    let grant_at = |lease: &Lease, at: u64, ttl: u64| {
        let mut harness = extend(&config, lease, base, ms(at));
        assert_eq!(
            ttl_sent(&harness.new_transmits()),
            ms(ttl),
            "extension at {at} ms"
        );
        harness.at(ms(at + 2)).reply(0, Reply::Integer(1));
        harness.reply(1, Reply::Integer(1));
        extended(&harness).clone()
    };
    let second = grant_at(&lease, 5_000, 10_000);
    // 8 s held, 7 s left of the 15 s.
    let third = grant_at(&second, 8_000, 7_000);
    assert!(third.valid_until() <= base + ms(15_000));
    let fourth = grant_at(&third, 14_000, 1_000);
    assert!(fourth.valid_until() <= base + ms(15_000));

    let done = extend(&config, &fourth, base, ms(14_995));
    assert!(done.sent().is_empty());
    assert!(matches!(
        extend_error(&done),
        ExtendError::LimitReached { extensions: 3, .. }
    ));
}

#[test]
fn a_retried_round_recomputes_the_ttl_so_the_hold_still_ends_at_max_hold() {
    let mut settings = settings(ms(10_000), Retry::new(1, ms(200), ms(100)));
    settings.max_hold = Some(ms(12_000));
    let config = Config::new(3, settings).expect("valid settings");
    let (base, lease) = lease(&config);
    let mut harness = extend(&config, &lease, base, ms(5_000));
    let first = harness.new_transmits();
    assert_eq!(ttl_sent(&first), ms(7_000));
    harness
        .at(ms(5_001))
        .reply(0, Reply::Io("refused".to_owned()));
    harness.reply(1, Reply::Io("refused".to_owned()));
    harness.fire_timeout();
    let retry_start = harness.now() - base;
    let second = harness.new_transmits();
    let ttl = ttl_sent(&second);
    let expected = ms(12_000) - retry_start;
    assert!(
        ttl <= expected && expected - ttl < ms(1),
        "retry at {retry_start:?} asked for {ttl:?}"
    );
    harness.after(ms(1)).reply(0, Reply::Integer(1));
    harness.reply(2, Reply::Integer(1));
    assert!(extended(&harness).valid_until() <= base + ms(12_000));
}

#[test]
fn an_extension_never_shortens_the_validity_already_granted() {
    let config = config(3, Retry::NONE);
    let (base, lease) = lease(&config);

    // The caller asks for 1 s while the lock is good for 9.8 s more: the keys must not be cut
    // short, or a failed round would leave the old lease trusted but no longer backed.
    let short = config.with_ttl(ms(1_000)).expect("valid TTL");
    let mut harness = extend(&short, &lease, base, ms(100));
    let ttl = ttl_sent(&harness.new_transmits());
    assert!(ttl >= lease.remaining(base + ms(100)), "asked for {ttl:?}");
    harness.reply(0, Reply::Integer(1));
    harness.reply(1, Reply::Integer(1));
    assert!(extended(&harness).valid_until() >= lease.valid_until());

    // A hold limit that would end the keys before the current validity stops extension.
    let mut settings = settings(ms(10_000), Retry::NONE);
    settings.max_hold = Some(ms(5_000));
    let capped = Config::new(3, settings).expect("valid settings");
    let harness = extend(&capped, &lease, base, ms(1_000));
    assert!(harness.sent().is_empty(), "{:?}", harness.sent());
    assert!(matches!(
        extend_error(&harness),
        ExtendError::LimitReached { extensions: 0, .. }
    ));
}

#[test]
fn stray_replies_are_ignored() {
    let config = config(3, Retry::NONE);
    let (base, lease) = lease(&config);
    let mut harness = extend(&config, &lease, base, ms(5_000));
    let round = harness.new_transmits();
    let unknown = *request_ids(500).last().expect("ids");
    harness.at(ms(5_001));
    harness.feed(NodeId::new(3), round[0].request, Reply::Integer(1));
    harness.feed(NodeId::new(0), unknown, Reply::Integer(1));
    harness.feed(NodeId::new(0), round[1].request, Reply::Integer(1));
    harness.reply(0, Reply::Integer(1));
    harness.reply(0, Reply::Integer(1));
    assert!(harness.outcome().is_none(), "one node, counted once");
    harness.reply(2, Reply::Integer(1));
    assert_eq!(extended(&harness).report().granted_count(), 2);
    harness.reply(1, Reply::Integer(1));
    harness.after(ms(1)).timeout_now();
    assert!(harness.new_transmits().is_empty());
}

#[test]
fn a_retry_pause_too_far_to_represent_ends_the_extension() {
    for retry in [
        Retry::new(1, Duration::MAX, Duration::ZERO),
        Retry::new(1, Duration::MAX, Duration::MAX),
    ] {
        let config = config(3, retry);
        let (base, lease) = lease(&config);
        let mut harness = extend(&config, &lease, base, ms(5_000));
        harness
            .at(ms(5_001))
            .reply(0, Reply::Io("refused".to_owned()));
        harness.reply(1, Reply::Io("refused".to_owned()));
        assert!(matches!(
            extend_error(&harness),
            ExtendError::NoQuorum { .. }
        ));
    }
}

fn noscript() -> Reply {
    Reply::Error("NOSCRIPT No matching script. Please use EVAL.".to_owned())
}

/// A 3-node extension decided by nodes 0 and 1 at +5001 ms; node 2 has not answered yet.
fn decided_without_node_2(config: &Config) -> (Instant, Harness<Extend>) {
    let (base, lease) = lease(config);
    let mut harness = extend(config, &lease, base, ms(5_000));
    assert_eq!(harness.new_transmits().len(), 3);
    harness.at(ms(5_001)).reply(0, Reply::Integer(1));
    harness.reply(1, Reply::Integer(1));
    let renewed = extended(&harness);
    assert_eq!(renewed.report().nodes()[2].status, NodeStatus::NoAnswer);
    (base, harness)
}

#[test]
fn a_straggler_that_lost_its_scripts_gets_the_source_after_the_outcome() {
    let config = config(3, Retry::NONE);
    let (base, mut harness) = decided_without_node_2(&config);
    // Node 2's request is still awaited: the driver finishes it off the caller's path.
    assert_eq!(harness.op().poll_timeout(), Some(base + ms(5_200)));
    let request = harness.last_to(2).request;
    assert!(harness.op().is_awaiting(NodeId::new(2), request));

    harness.at(ms(5_002)).reply(2, noscript());
    let resent = harness.new_transmits();
    assert_eq!(resent.len(), 1, "{resent:?}");
    assert_eq!(resent[0].node, NodeId::new(2));
    assert!(matches!(resent[0].command.kind(), CommandKind::Eval(s) if s.name == "extend"));
    assert_eq!(
        resent[0].command.ttl_ms(),
        Some(10_000),
        "the round's own TTL"
    );
    assert_eq!(resent[0].deadline, base + ms(5_202));
    assert_eq!(harness.op().poll_timeout(), Some(base + ms(5_202)));

    harness.at(ms(5_003)).reply(2, Reply::Integer(1));
    assert_eq!(harness.op().poll_timeout(), None);
    assert!(!harness.op().is_awaiting(NodeId::new(2), resent[0].request));
    assert!(harness.new_transmits().is_empty());
}

#[test]
fn a_straggler_is_resent_once_and_its_other_replies_end_the_tail() {
    let config = config(3, Retry::NONE);

    // A second NOSCRIPT ends the node's part: no resend loop.
    let (_, mut twice) = decided_without_node_2(&config);
    twice.at(ms(5_002)).reply(2, noscript());
    assert_eq!(twice.new_transmits().len(), 1);
    twice.at(ms(5_003)).reply(2, noscript());
    assert!(twice.new_transmits().is_empty());
    assert_eq!(twice.op().poll_timeout(), None);

    // Any other late reply ends it at once, whatever it says.
    for reply in [
        Reply::Integer(1),
        Reply::Integer(0),
        Reply::Io("reset".to_owned()),
    ] {
        let (_, mut late) = decided_without_node_2(&config);
        late.at(ms(5_002)).reply(2, reply);
        assert!(late.new_transmits().is_empty());
        assert_eq!(late.op().poll_timeout(), None);
    }

    // So does the straggler's deadline, and a resend's own deadline.
    let (base, mut silent) = decided_without_node_2(&config);
    silent.fire_timeout();
    assert_eq!(silent.now(), base + ms(5_200));
    assert!(silent.new_transmits().is_empty());
    assert_eq!(silent.op().poll_timeout(), None);
    let (base, mut resent) = decided_without_node_2(&config);
    resent.at(ms(5_100)).reply(2, noscript());
    assert_eq!(resent.new_transmits().len(), 1);
    resent.fire_timeout();
    assert_eq!(resent.now(), base + ms(5_300));
    assert_eq!(resent.op().poll_timeout(), None);
}

#[test]
fn a_lost_lock_still_finishes_its_round_with_a_resend_to_a_straggler() {
    // Refused by a majority: the lock is lost, but what was sent is finished like any other
    // request. The resend extends only where our token still is.
    let config = config(3, Retry::new(5, ms(10), Duration::ZERO));
    let (base, lease) = lease(&config);
    let mut harness = extend(&config, &lease, base, ms(5_000));
    harness.new_transmits();
    harness.at(ms(5_001)).reply(0, Reply::Integer(0));
    harness.reply(1, Reply::Integer(0));
    assert!(matches!(extend_error(&harness), ExtendError::Lost { .. }));
    harness.at(ms(5_002)).reply(2, noscript());
    assert_eq!(harness.new_transmits().len(), 1);
    harness.reply(2, Reply::Integer(0));
    assert_eq!(harness.op().poll_timeout(), None);
    assert_eq!(harness.sent().len(), 4);
}

#[test]
fn a_cancelled_extension_finishes_its_round_but_starts_no_other() {
    let config = config(3, Retry::new(5, ms(10), Duration::ZERO));
    let (base, lease) = lease(&config);

    // Cancelled mid-round: the round's replies are still taken, a failing round is not retried.
    let mut harness = extend(&config, &lease, base, ms(5_000));
    harness.new_transmits();
    harness.op_mut().handle_cancel(base + ms(5_001));
    assert!(harness.op().poll_timeout().is_some());
    harness
        .at(ms(5_002))
        .reply(0, Reply::Io("refused".to_owned()));
    harness.reply(1, Reply::Io("refused".to_owned()));
    assert!(harness.outcome().is_some());
    harness.reply(2, Reply::Integer(1));
    assert_eq!(harness.op().poll_timeout(), None);
    assert_eq!(harness.sent().len(), 3, "no second round");

    // Cancelled while pausing between rounds: over at once.
    let mut pausing = extend(&config, &lease, base, ms(5_000));
    pausing.new_transmits();
    pausing
        .at(ms(5_001))
        .reply(0, Reply::Io("refused".to_owned()));
    pausing.reply(1, Reply::Io("refused".to_owned()));
    assert!(pausing.outcome().is_none());
    assert!(
        pausing.op().poll_timeout().is_some(),
        "pausing before a retry"
    );
    pausing.op_mut().handle_cancel(base + ms(5_002));
    assert_eq!(pausing.op().poll_timeout(), None);
    assert!(pausing.op_mut().poll_transmit().is_none());
}
