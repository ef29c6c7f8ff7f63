//! Node failures against real redis-server processes: killed, paused (SIGSTOP), down at start-up
//! and restarted nodes.

// These tests bound how long an operation may take with a stalled node, which needs the clock.
#![allow(clippy::disallowed_methods)]

mod common;

use std::time::{Duration, Instant};

use common::{
    assert_held, assert_held_where_granted, assert_no_keys, bounded, connect, failed_with, pttl,
    query, quick_retry, status,
};
use quorumlock::proto::{NodeErrorKind, NodeStatus, Report};
use quorumlock::testing::RedisCluster;
use quorumlock::{Error, Redlock};
use redis::aio::MultiplexedConnection;

/// Far above the 200 ms request deadline a 10 s TTL gets, far below the TTL itself: an operation
/// that waited on a stalled node for anything like the TTL (or redis-rs's own timeouts, chained)
/// fails this.
const STALL_BOUND: Duration = Duration::from_secs(2);

/// How a dead node may look in a report of a round that was decided by the others: it failed,
/// or the quorum answered before its refusal came back.
fn dead_in_decided_round(report: &Report, node: usize) -> bool {
    let status = status(report, node);
    failed_with(status, NodeErrorKind::Io) || *status == NodeStatus::NoAnswer
}

fn live_urls(urls: &[String], dead: &[usize]) -> Vec<String> {
    urls.iter()
        .enumerate()
        .filter(|(i, _)| !dead.contains(i))
        .map(|(_, url)| url.clone())
        .collect()
}

#[tokio::test]
async fn one_of_three_killed_still_locks_and_a_majority_killed_is_no_quorum() {
    let cluster = RedisCluster::start(3).unwrap();
    let urls = cluster.urls();
    bounded(async move {
        let redlock = Redlock::builder(urls.clone())
            .retry(quick_retry(2))
            .build()
            .unwrap();
        // Connect to every node first, so the kill breaks an established connection.
        redlock.lock("warm-up").await.unwrap().release().await;

        cluster.kill(1).unwrap();
        let lock = redlock.lock("one-down").await.unwrap();
        let report = lock.report();
        assert_eq!(
            report.granted(),
            [0, 2].map(quorumlock::proto::NodeId::new),
            "{report}"
        );
        assert!(dead_in_decided_round(report, 1), "{report}");
        assert_held_where_granted(&urls, report, "one-down", lock.token().as_str()).await;
        // A release returns at a quorum: the dead node's failure is in its report only if it
        // came back before the live nodes' answers, and then the release is not clean.
        let released = lock.release().await;
        assert!(
            dead_in_decided_round(&released.report, 1),
            "{}",
            released.report
        );
        assert_eq!(released.report.granted_count(), 2, "{}", released.report);
        assert_eq!(
            released.is_clean(),
            !failed_with(status(&released.report, 1), NodeErrorKind::Io),
            "{}",
            released.report
        );

        cluster.kill(2).unwrap();
        let error = redlock.lock("two-down").await.unwrap_err();
        assert!(error.is_no_quorum(), "{error}");
        assert!(!error.is_contended());
        assert!(matches!(error, Error::Acquire(_)), "{error:?}");
        let report = error.report().expect("no-quorum errors carry the report");
        assert_eq!(report.nodes().len(), 3);
        for node in [1, 2] {
            assert!(
                failed_with(status(report, node), NodeErrorKind::Io),
                "{report}"
            );
        }
        assert!(report.granted_count() <= 1, "{report}");
        // The failed attempts released what they had set on the live node.
        assert_no_keys(&redlock, &live_urls(&urls, &[1, 2])).await;
    })
    .await;
}

#[tokio::test]
async fn two_of_five_killed_still_lock_and_three_killed_is_no_quorum() {
    let cluster = RedisCluster::start(5).unwrap();
    let urls = cluster.urls();
    bounded(async move {
        // Killed before the client ever connected to them.
        cluster.kill(1).unwrap();
        cluster.kill(3).unwrap();
        let redlock = Redlock::builder(urls.clone())
            .retry(quick_retry(2))
            .build()
            .unwrap();

        let lock = redlock.lock_multi(["five:a", "five:b"]).await.unwrap();
        let report = lock.report();
        assert_eq!(report.granted_count(), 3, "{report}");
        for node in [1, 3] {
            assert!(dead_in_decided_round(report, node), "{report}");
        }
        for key in ["five:a", "five:b"] {
            assert_held_where_granted(&urls, report, key, lock.token().as_str()).await;
        }
        let released = lock.release().await;
        for node in [1, 3] {
            assert!(
                failed_with(status(&released.report, node), NodeErrorKind::Io),
                "{}",
                released.report
            );
        }
        assert_no_keys(&redlock, &live_urls(&urls, &[1, 3])).await;

        cluster.kill(4).unwrap();
        let error = redlock.lock_multi(["five:a", "five:b"]).await.unwrap_err();
        assert!(error.is_no_quorum(), "{error}");
        let report = error.report().expect("no-quorum errors carry the report");
        assert_eq!(report.nodes().len(), 5);
        for node in [1, 3, 4] {
            assert!(
                failed_with(status(report, node), NodeErrorKind::Io),
                "{report}"
            );
        }
        assert!(report.granted_count() <= 2, "{report}");
        assert_no_keys(&redlock, &live_urls(&urls, &[1, 3, 4])).await;
    })
    .await;
}

#[tokio::test]
async fn a_paused_node_costs_the_request_deadline_not_the_ttl() {
    let cluster = RedisCluster::start(3).unwrap();
    let urls = cluster.urls();
    bounded(async move {
        let redlock = Redlock::builder(urls.clone())
            .ttl(Duration::from_secs(10))
            .retry(quick_retry(2))
            .build()
            .unwrap();
        let deadline = redlock.config().request_timeout();
        assert!(deadline < STALL_BOUND / 4, "request deadline {deadline:?}");
        redlock.lock("warm-up").await.unwrap().release().await;

        cluster.pause(2).unwrap();
        let started = Instant::now();
        let lock = redlock.lock("paused").await.unwrap();
        let took = started.elapsed();
        assert!(
            took < STALL_BOUND,
            "acquire with a paused node took {took:?}"
        );
        let report = lock.report();
        assert_eq!(report.granted_count(), 2, "{report}");
        assert!(
            matches!(
                status(report, 2),
                NodeStatus::NoAnswer | NodeStatus::TimedOut
            ),
            "{report}"
        );
        assert!(
            lock.remaining() > Duration::from_secs(9),
            "{:?}",
            lock.remaining()
        );

        // A release returns once a quorum has answered: the paused node does not hold it up.
        let released = lock.release().await;
        assert!(released.is_clean(), "{}", released.report);
        assert_eq!(
            status(&released.report, 2),
            &NodeStatus::NoAnswer,
            "{}",
            released.report
        );
        // Its deletion goes on in the background until the node's deadline, and no longer.
        let started = Instant::now();
        redlock.flush().await;
        let took = started.elapsed();
        assert!(took < STALL_BOUND, "flush with a paused node took {took:?}");

        // Once resumed, the node votes again: with node 0 down it is needed for the quorum.
        cluster.resume(2).unwrap();
        cluster.kill(0).unwrap();
        let lock = redlock.lock("resumed").await.unwrap();
        assert_eq!(
            status(lock.report(), 2),
            &NodeStatus::Granted,
            "{}",
            lock.report()
        );
        assert_held_where_granted(&urls, lock.report(), "resumed", lock.token().as_str()).await;
        lock.release().await;
    })
    .await;
}

#[tokio::test]
async fn two_paused_of_three_fail_within_a_bounded_time() {
    let cluster = RedisCluster::start(3).unwrap();
    let urls = cluster.urls();
    bounded(async move {
        let redlock = Redlock::builder(urls.clone())
            .ttl(Duration::from_secs(10))
            .build()
            .unwrap();
        // Never connected before the pause: the stalled part is the connection handshake.
        cluster.pause(0).unwrap();
        cluster.pause(1).unwrap();
        let started = Instant::now();
        let error = redlock.try_lock("stalled").await.unwrap_err();
        let took = started.elapsed();
        assert!(
            took < STALL_BOUND,
            "no-quorum with paused nodes took {took:?}"
        );
        assert!(error.is_no_quorum(), "{error}");
        let report = error.report().expect("no-quorum errors carry the report");
        for node in [0, 1] {
            assert!(
                matches!(status(report, node), NodeStatus::TimedOut),
                "{report}"
            );
        }
        assert_no_keys(&redlock, &urls[2..]).await;
    })
    .await;
}

#[tokio::test]
async fn one_paused_and_one_killed_fail_within_a_bounded_time() {
    let cluster = RedisCluster::start(3).unwrap();
    let urls = cluster.urls();
    bounded(async move {
        let redlock = Redlock::builder(urls.clone())
            .ttl(Duration::from_secs(10))
            .retry(quick_retry(1))
            .build()
            .unwrap();
        redlock.lock("warm-up").await.unwrap().release().await;
        cluster.pause(0).unwrap();
        cluster.kill(1).unwrap();
        let started = Instant::now();
        let error = redlock.lock("stalled").await.unwrap_err();
        let took = started.elapsed();
        // Two attempts, each with an acquire round and a clean-up release round.
        assert!(took < 2 * STALL_BOUND, "no-quorum took {took:?}");
        assert!(error.is_no_quorum(), "{error}");
        let report = error.report().expect("no-quorum errors carry the report");
        assert_eq!(status(report, 0), &NodeStatus::TimedOut, "{report}");
        assert!(
            failed_with(status(report, 1), NodeErrorKind::Io),
            "{report}"
        );
        assert_no_keys(&redlock, &urls[2..]).await;
    })
    .await;
}

#[tokio::test]
async fn a_node_down_at_construction_becomes_usable_once_started() {
    let cluster = RedisCluster::start(3).unwrap();
    let urls = cluster.urls();
    bounded(async move {
        cluster.kill(2).unwrap();
        // Construction does not connect, so a dead node cannot fail it.
        let redlock = Redlock::builder(urls.clone()).build().unwrap();
        let lock = redlock.try_lock("early").await.unwrap();
        assert!(dead_in_decided_round(lock.report(), 2), "{}", lock.report());
        lock.release().await;

        cluster.restart(2).unwrap();
        cluster.kill(1).unwrap();
        // Node 2 is now needed for the quorum, on the first attempt.
        let lock = redlock.try_lock("late").await.unwrap();
        assert_eq!(
            status(lock.report(), 2),
            &NodeStatus::Granted,
            "{}",
            lock.report()
        );
        assert_held_where_granted(&urls, lock.report(), "late", lock.token().as_str()).await;
        let released = lock.release().await;
        assert_eq!(
            status(&released.report, 2),
            &NodeStatus::Granted,
            "{}",
            released.report
        );
        assert_no_keys(&redlock, &live_urls(&urls, &[1])).await;
    })
    .await;
}

#[tokio::test]
async fn a_restarted_node_reconnects() {
    let cluster = RedisCluster::start(3).unwrap();
    let urls = cluster.urls();
    bounded(async move {
        let redlock = Redlock::new(urls.clone()).unwrap();
        redlock.lock("warm-up").await.unwrap().release().await;

        cluster.restart(0).unwrap();
        cluster.kill(1).unwrap();
        // The connection to node 0 died with the old process, and node 0 is needed for the
        // quorum: a single attempt must reconnect rather than count the node as failed.
        let lock = redlock.try_lock("after-restart").await.unwrap();
        assert_eq!(
            status(lock.report(), 0),
            &NodeStatus::Granted,
            "{}",
            lock.report()
        );
        assert_held_where_granted(&urls, lock.report(), "after-restart", lock.token().as_str())
            .await;
        lock.release().await;
        assert_no_keys(&redlock, &live_urls(&urls, &[1])).await;
    })
    .await;
}

/// A restart empties a node. The extension must not write the lost key back there: only the
/// nodes that still hold our token are extended.
#[tokio::test]
async fn a_restart_that_loses_the_key_is_survived_without_recreating_it() {
    let cluster = RedisCluster::start(3).unwrap();
    let urls = cluster.urls();
    bounded(async move {
        let redlock = Redlock::builder(urls.clone())
            .ttl(Duration::from_secs(5))
            .build()
            .unwrap();
        let mut lock = redlock.lock("survivor").await.unwrap();
        let token = lock.token().as_str().to_owned();
        redlock.flush().await;
        assert_held(&urls, "survivor", &token).await;
        cluster.restart(0).unwrap();
        assert!(!common::exists(&urls[0], "survivor").await);

        lock.extend(Duration::from_secs(10)).await.unwrap();
        let report = lock.report();
        // Node 0 reconnects first, so nodes 1 and 2 may decide the round before it answers.
        assert!(
            matches!(
                status(report, 0),
                NodeStatus::Refused | NodeStatus::NoAnswer
            ),
            "{report}"
        );
        assert_eq!(report.granted_count(), 2, "{report}");
        redlock.flush().await;
        assert!(
            !common::exists(&urls[0], "survivor").await,
            "extend re-created the key"
        );
        assert_held(&urls[1..], "survivor", &token).await;
        for url in &urls[1..] {
            let left = common::pttl(url, "survivor").await;
            assert!(left > 5_000, "PTTL {left} on {url} was not pushed");
        }
        lock.release().await;
        assert_no_keys(&redlock, &urls).await;
    })
    .await;
}

/// A lock should reach every node that is up, not only the first quorum to answer: one held on
/// a bare quorum is lost when any one of those nodes restarts. Nodes that are still connecting
/// when the quorum is reached (a fresh client, a restarted node) are the ones at risk.
#[tokio::test]
async fn a_lock_reaches_nodes_that_were_still_connecting() {
    let cluster = RedisCluster::start(3).unwrap();
    let urls = cluster.urls();
    bounded(async move {
        let redlock = Redlock::new(urls.clone()).unwrap();

        // Every node is connected lazily by this very lock.
        let lock = redlock.try_lock("fresh").await.unwrap();
        redlock.flush().await;
        assert_held(&urls, "fresh", lock.token().as_str()).await;

        cluster.restart(0).unwrap();
        let lock = redlock.try_lock("restarted").await.unwrap();
        redlock.flush().await;
        assert_held(&urls, "restarted", lock.token().as_str()).await;
    })
    .await;
}

/// A node whose connection set-up takes longer than the request deadline (TLS over a long round
/// trip) must still get connected: the attempt outlives the request that started it. Were it
/// cancelled with each timed-out request, every round would start a new one and give it up
/// again, and with another node down there would never be a quorum.
#[tokio::test]
async fn a_connection_slower_than_the_request_deadline_is_still_made() {
    let cluster = RedisCluster::start(3).unwrap();
    let direct = cluster.urls();
    bounded(async move {
        let handshake = Duration::from_millis(300);
        let slow = common::slow_handshake_proxy(&direct[2], handshake).await;
        let urls = vec![direct[0].clone(), direct[1].clone(), slow];
        let redlock = Redlock::builder(urls.clone())
            .request_timeout(Duration::from_millis(50))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        cluster.kill(0).unwrap();

        // Each attempt times out on the slow node until its connection is up; then a quorum of
        // nodes 1 and 2 grants.
        let started = Instant::now();
        let lock = loop {
            match redlock.try_lock("slow-handshake").await {
                Ok(lock) => break lock,
                Err(error) => assert!(
                    started.elapsed() < STALL_BOUND,
                    "no lock {:?} after the slow node's first attempt: {error}",
                    started.elapsed()
                ),
            }
        };
        assert!(
            started.elapsed() >= handshake,
            "locked before the slow node could have connected"
        );
        lock.release().await;
        assert_no_keys(&redlock, &live_urls(&urls, &[0])).await;
    })
    .await;
}

/// Makes each node in turn the straggler of a round: `round(straggler, attempt)` pauses that
/// node around the round itself, checks what it must, and says whether the node answered only
/// after the decision. SIGSTOP takes effect asynchronously, so a node that still answered in
/// time gets another try, up to five; the checks run on every try all the same.
async fn with_each_straggler<Round, Checked>(nodes: usize, mut round: Round)
where
    Round: FnMut(usize, usize) -> Checked,
    Checked: std::future::Future<Output = bool>,
{
    for straggler in 0..nodes {
        let mut straggled = false;
        for attempt in 0..5 {
            if round(straggler, attempt).await {
                straggled = true;
                break;
            }
        }
        assert!(
            straggled,
            "node {straggler} never answered after the decision"
        );
    }
}

/// A node whose script cache was emptied (`SCRIPT FLUSH`, or a restart that kept its data)
/// answers an extension with `NOSCRIPT`. When that answer comes only after the others decided
/// the round, the node must still get the script's source: otherwise it keeps the old TTL, and
/// the lock lives on fewer nodes than the caller was told.
#[tokio::test]
async fn an_extension_reaches_a_straggler_that_lost_its_scripts() {
    let cluster = RedisCluster::start(3).unwrap();
    let urls = cluster.urls();
    bounded(async move {
        let redlock = Redlock::builder(urls.clone())
            .ttl(Duration::from_secs(3))
            // Absorbs a loaded machine while the resumed node catches up.
            .request_timeout(Duration::from_millis(500))
            .build()
            .unwrap();
        let (cluster, urls, redlock) = (&cluster, &urls, &redlock);
        with_each_straggler(urls.len(), move |straggler, attempt| async move {
            let key = format!("flushed-extend:{straggler}:{attempt}");
            let mut lock = redlock.lock(key.as_str()).await.unwrap();
            redlock.flush().await;
            assert_held(urls, &key, lock.token().as_str()).await;
            for url in urls {
                let () = query(url, redis::cmd("SCRIPT").arg("FLUSH")).await;
            }

            cluster.pause(straggler).unwrap();
            let extended = lock.extend(Duration::from_secs(60)).await;
            cluster.resume(straggler).unwrap();
            extended.unwrap();
            let straggled = *status(lock.report(), straggler) == NodeStatus::NoAnswer;

            redlock.flush().await;
            for url in urls {
                let left = pttl(url, &key).await;
                assert!(
                    left > 30_000,
                    "{key} on {url} kept the old TTL ({left} ms left): {}",
                    lock.report()
                );
            }
            lock.release().await;
            straggled
        })
        .await;
        assert_no_keys(redlock, urls).await;
    })
    .await;
}

/// The same for a lock on several resources, the one acquire that runs a script: a node that
/// lost its scripts and answers only after the others decided must still end up with the
/// keys, or the lock lives on a bare quorum and the loss of one more node breaks it.
#[tokio::test]
async fn a_lock_on_several_resources_reaches_a_straggler_that_lost_its_scripts() {
    let cluster = RedisCluster::start(3).unwrap();
    let urls = cluster.urls();
    bounded(async move {
        let redlock = Redlock::builder(urls.clone())
            .request_timeout(Duration::from_millis(500))
            .build()
            .unwrap();
        let (cluster, urls, redlock) = (&cluster, &urls, &redlock);
        with_each_straggler(urls.len(), move |straggler, attempt| async move {
            let keys = [
                format!("flushed-multi:{straggler}:{attempt}:a"),
                format!("flushed-multi:{straggler}:{attempt}:b"),
            ];
            for url in urls {
                let () = query(url, redis::cmd("SCRIPT").arg("FLUSH")).await;
            }
            cluster.pause(straggler).unwrap();
            let locked = redlock.lock_multi(keys.clone()).await;
            cluster.resume(straggler).unwrap();
            let lock = locked.unwrap();
            let straggled = *status(lock.report(), straggler) == NodeStatus::NoAnswer;

            redlock.flush().await;
            for key in &keys {
                assert_held(urls, key, lock.token().as_str()).await;
            }
            lock.release().await;
            straggled
        })
        .await;
        assert_no_keys(redlock, urls).await;
    })
    .await;
}

/// Clients connected to the node that `inspector` is connected to, the inspector included.
async fn connected_clients(inspector: &mut MultiplexedConnection) -> i64 {
    let info: String = redis::cmd("INFO")
        .arg("clients")
        .query_async(inspector)
        .await
        .expect("INFO clients");
    info.lines()
        .find_map(|line| line.strip_prefix("connected_clients:")?.trim().parse().ok())
        .expect("INFO clients reports connected_clients")
}

/// `connect` opens one connection per node up front, and locks then use it rather than open
/// another; a node that is down is named, and the error says whether the others still make
/// a quorum.
#[tokio::test]
async fn connect_opens_every_node_up_front_and_names_the_nodes_that_failed() {
    let cluster = RedisCluster::start(3).unwrap();
    let urls = cluster.urls();
    bounded(async move {
        // One lasting connection per node to count with: a connection closed on our side is
        // counted by the server until it has noticed, so every other one must be gone first.
        let mut inspectors = Vec::new();
        for url in &urls {
            let mut inspector = connect(url).await;
            while connected_clients(&mut inspector).await > 1 {
                tokio::task::yield_now().await;
            }
            inspectors.push(inspector);
        }
        let redlock = Redlock::new(urls.clone()).unwrap();
        redlock.connect().await.expect("every node is up");
        for (node, inspector) in inspectors.iter_mut().enumerate() {
            assert_eq!(
                connected_clients(inspector).await,
                2,
                "node {node}: not connected by connect()"
            );
        }
        redlock.lock("connected").await.unwrap().release().await;
        redlock.flush().await;
        for (node, inspector) in inspectors.iter_mut().enumerate() {
            assert_eq!(
                connected_clients(inspector).await,
                2,
                "node {node}: the lock opened another connection"
            );
        }

        cluster.kill(2).unwrap();
        let fresh = Redlock::new(urls.clone()).unwrap();
        let error = fresh.connect().await.unwrap_err();
        let failed: Vec<usize> = error.failures().iter().map(|(node, _)| *node).collect();
        assert_eq!(failed, [2], "{error}");
        assert_eq!(error.failures()[0].1.kind, NodeErrorKind::Io, "{error}");
        assert!(error.has_quorum(), "{error}");
        assert!(error.to_string().contains("node 2"), "{error}");

        cluster.kill(1).unwrap();
        let error = Redlock::new(urls.clone())
            .unwrap()
            .connect()
            .await
            .unwrap_err();
        assert_eq!(error.failures().len(), 2, "{error}");
        assert!(!error.has_quorum(), "{error}");
    })
    .await;
}
