//! The release machine with hand-fed replies: compare-and-delete on every node, decided at a
//! quorum of answers, the other nodes finished after the outcome, idempotence, failures and stray
//! replies.

mod sim;

use quorumlock::proto::{
    Acquire, CommandKind, Config, NodeErrorKind, NodeId, NodeStatus, Operation, Release, Released,
    Reply, Retry,
};

use sim::harness::Harness;
use sim::{base_instant, config, ms, request_ids, token};

fn release(config: &Config, resources: &[&str]) -> Harness<Release> {
    let base = base_instant();
    let resources: Vec<String> = resources.iter().map(|r| (*r).to_owned()).collect();
    Harness::new(
        Release::new(config, &resources, &token("tok-a"), base),
        base,
    )
}

#[track_caller]
fn released(harness: &Harness<Release>) -> &Released {
    harness.expect_outcome()
}

fn statuses(released: &Released) -> Vec<NodeStatus> {
    released
        .report
        .nodes()
        .iter()
        .map(|n| n.status.clone())
        .collect()
}

#[test]
fn every_node_gets_a_compare_and_delete_at_once() {
    let config = config(5, Retry::NONE);
    let mut harness = release(&config, &["a", "b"]);
    let sent = harness.new_transmits();
    assert_eq!(sent.len(), 5);
    let mut ids: Vec<_> = sent.iter().map(|t| t.request).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 5);
    for (node, transmit) in sent.iter().enumerate() {
        assert_eq!(transmit.node, NodeId::new(node));
        assert!(matches!(transmit.command.kind(), CommandKind::EvalSha(s) if s.name == "release"));
        assert_eq!(
            transmit.command.to_string(),
            "EVALSHA release 4 a b quorumlock:waiting:a quorumlock:waiting:b tok-a"
        );
        assert_eq!(transmit.command.ttl_ms(), None);
        assert_eq!(transmit.deadline, harness.base() + ms(200));
    }

    // Releasing a lease sends the same command for its keys and token.
    let base = base_instant();
    let mut acquire = Harness::new(
        Acquire::new(&config, ["a", "b"], token("tok-a"), 1, base).expect("valid resources"),
        base,
    );
    for node in 0..3 {
        acquire.at(ms(1)).reply(node, Reply::Integer(1));
    }
    let lease = acquire.expect_outcome().clone().expect("granted");
    let mut from_lease = Harness::new(Release::for_lease(&config, &lease, base), base);
    let commands: Vec<_> = from_lease
        .new_transmits()
        .into_iter()
        .map(|t| t.command)
        .collect();
    assert!(commands.iter().all(|c| *c == sent[0].command));
}

#[test]
fn release_is_decided_at_a_quorum_and_the_rest_finish_after_it() {
    let config = config(5, Retry::NONE);
    let mut harness = release(&config, &["job"]);
    for node in 0..2 {
        harness
            .at(ms(1 + node as u64))
            .reply(node, Reply::Integer(1));
        assert!(
            harness.outcome().is_none(),
            "two answers of five are not a quorum"
        );
    }
    harness.at(ms(3)).reply(2, Reply::Integer(1));
    assert_eq!(harness.outcome_at(), Some(harness.base() + ms(3)));
    let released = released(&harness).clone();
    assert!(released.is_clean(), "{}", released.report);
    assert_eq!(
        statuses(&released)[3..],
        [NodeStatus::NoAnswer, NodeStatus::NoAnswer]
    );

    // The machine still waits for the other two, up to their deadline, and is then done.
    assert_eq!(harness.op().poll_timeout(), Some(harness.base() + ms(200)));
    let node_3 = harness.last_to(3).request;
    assert!(harness.op().is_awaiting(NodeId::new(3), node_3));
    harness.at(ms(4)).reply(3, Reply::Integer(1));
    assert!(!harness.op().is_awaiting(NodeId::new(3), node_3));
    assert_eq!(harness.op().poll_timeout(), Some(harness.base() + ms(200)));
    harness.fire_timeout();
    assert_eq!(harness.op().poll_timeout(), None);
    assert!(harness.op_mut().poll_outcome().is_none());
    assert_eq!(harness.sent().len(), 5);
}

#[test]
fn failures_are_not_answers_and_the_release_waits_past_them() {
    let config = config(3, Retry::NONE);
    let mut harness = release(&config, &["job"]);
    harness.at(ms(1)).reply(0, Reply::Integer(1));
    harness
        .at(ms(2))
        .reply(1, Reply::Io("connection reset".to_owned()));
    assert!(
        harness.outcome().is_none(),
        "one deletion and one failure do not free the lock on a quorum"
    );
    assert_eq!(harness.op().poll_timeout(), Some(harness.base() + ms(200)));
    harness.fire_timeout();
    let released = released(&harness);
    assert!(!released.is_clean());
    assert_eq!(
        statuses(released)[2],
        NodeStatus::TimedOut,
        "{}",
        released.report
    );
    assert_eq!(harness.op().poll_timeout(), None);
}

#[test]
fn releasing_twice_is_harmless() {
    let config = config(3, Retry::NONE);
    let mut first = release(&config, &["a", "b"]);
    first.at(ms(1)).reply(0, Reply::Integer(2));
    first.reply(1, Reply::Integer(1));
    assert!(released(&first).is_clean());
    assert_eq!(released(&first).report.granted_count(), 2);
    first.reply(2, Reply::Integer(2));
    assert_eq!(first.op().poll_timeout(), None, "every node has answered");

    // The keys are gone: every node deletes nothing, and that is still a clean release.
    let mut second = release(&config, &["a", "b"]);
    for node in 0..3 {
        second.at(ms(1)).reply(node, Reply::Integer(0));
    }
    let again = released(&second);
    assert!(again.is_clean());
    assert_eq!(
        statuses(again),
        [
            NodeStatus::Refused,
            NodeStatus::Refused,
            NodeStatus::NoAnswer
        ]
    );
    assert_eq!(
        again.report.to_string(),
        "node 0: refused (1.0 ms); node 1: refused (1.0 ms); node 2: no answer before the decision"
    );
}

#[test]
fn failures_are_reported_per_node_and_never_hold_the_release_up() {
    let config = config(5, Retry::NONE);
    let mut harness = release(&config, &["job"]);
    harness
        .at(ms(1))
        .reply(0, Reply::Io("connection refused".to_owned()));
    harness
        .at(ms(2))
        .reply(1, Reply::Error("ERR something broke".to_owned()));
    harness.at(ms(3)).reply(2, Reply::TimedOut);
    harness
        .at(ms(4))
        .reply(3, Reply::Unexpected("bulk string".to_owned()));
    assert!(harness.outcome().is_none());
    harness.at(ms(5)).reply(4, Reply::Integer(-1));
    let released = released(&harness);
    assert!(!released.is_clean());
    let kinds: Vec<_> = statuses(released)
        .into_iter()
        .map(|status| match status {
            NodeStatus::Failed(error) => Some(error.kind),
            _ => None,
        })
        .collect();
    assert_eq!(
        kinds,
        [
            Some(NodeErrorKind::Io),
            Some(NodeErrorKind::Server),
            None,
            Some(NodeErrorKind::Protocol),
            Some(NodeErrorKind::Protocol)
        ]
    );
    assert_eq!(released.report.nodes()[2].status, NodeStatus::TimedOut);
    let latencies: Vec<_> = released.report.nodes().iter().map(|n| n.latency).collect();
    assert_eq!(
        latencies,
        [
            Some(ms(1)),
            Some(ms(2)),
            Some(ms(3)),
            Some(ms(4)),
            Some(ms(5))
        ]
    );
}

#[test]
fn noscript_resends_the_release_by_source_even_after_the_outcome() {
    let config = config(3, Retry::NONE);
    let mut harness = release(&config, &["job"]);
    assert_eq!(harness.new_transmits().len(), 3);
    harness
        .at(ms(5))
        .reply(2, Reply::Error("NOSCRIPT No matching script.".to_owned()));
    let resent = harness.new_transmits();
    assert_eq!(resent.len(), 1);
    assert_eq!(resent[0].node, NodeId::new(2));
    assert!(matches!(resent[0].command.kind(), CommandKind::Eval(s) if s.name == "release"));
    assert_eq!(resent[0].deadline, harness.base() + ms(205));
    harness.at(ms(6)).reply(0, Reply::Integer(1));
    harness.reply(1, Reply::Integer(1));
    assert!(released(&harness).is_clean());
    assert_eq!(harness.op().poll_timeout(), Some(harness.base() + ms(205)));
    harness.at(ms(7)).reply(2, Reply::Integer(1));
    assert_eq!(harness.op().poll_timeout(), None);

    // A node that says NOSCRIPT only after the outcome still gets the source.
    let mut late = release(&config, &["job"]);
    late.new_transmits();
    late.at(ms(1)).reply(0, Reply::Integer(1));
    late.reply(1, Reply::Integer(1));
    assert!(released(&late).is_clean());
    late.at(ms(2))
        .reply(2, Reply::Error("NOSCRIPT No matching script.".to_owned()));
    let resent = late.new_transmits();
    assert_eq!(resent.len(), 1);
    assert!(matches!(resent[0].command.kind(), CommandKind::Eval(s) if s.name == "release"));
    late.at(ms(3)).reply(2, Reply::Integer(1));
    assert_eq!(late.op().poll_timeout(), None);
}

#[test]
fn stray_replies_are_ignored_and_the_outcome_comes_once() {
    let config = config(3, Retry::NONE);
    let mut harness = release(&config, &["job"]);
    let sent = harness.new_transmits();
    let unknown = *request_ids(300).last().expect("ids");
    harness.at(ms(1));
    harness.feed(NodeId::new(3), sent[0].request, Reply::Integer(1));
    harness.feed(NodeId::new(1), unknown, Reply::Integer(1));
    harness.feed(NodeId::new(1), sent[2].request, Reply::Integer(1));
    harness.reply(0, Reply::Integer(1));
    harness.reply(0, Reply::Io("late".to_owned()));
    assert!(harness.outcome().is_none(), "one answer is not a quorum");
    harness.reply(1, Reply::Integer(0));
    let released = released(&harness).clone();
    assert_eq!(
        statuses(&released),
        [
            NodeStatus::Granted,
            NodeStatus::Refused,
            NodeStatus::NoAnswer
        ]
    );
    harness.reply(2, Reply::Integer(1));
    // The harness fails on a second outcome; nothing more may be sent.
    harness.after(ms(1)).reply(2, Reply::Integer(1));
    harness.after(ms(1_000)).timeout_now();
    assert!(harness.op_mut().poll_outcome().is_none());
    assert_eq!(harness.sent().len(), 3);
}
