//! The life of a lock against real redis-server processes: extension, expiry, release, drop,
//! `with_lock`, and a script cache that is flushed under the client's feet.

// `with_lock` must give up within about one TTL; checking that needs the clock.
#![allow(clippy::disallowed_methods)]

mod common;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{
    assert_held_where_granted, assert_no_keys, bounded, del_everywhere, exists, get, pttl, query,
    quick_retry,
};
use quorumlock::proto::{ExtendError, NodeStatus};
use quorumlock::testing::RedisCluster;
use quorumlock::{Error, Redlock, Retry};
use tokio::sync::oneshot;

/// Sleeps until every node must have expired the keys of a lock taken with `ttl` whose round
/// started at `acquired_at`: each SET landed after that instant, so it expires by
/// `acquired_at + ttl` on a node whose clock runs like ours (they share the machine).
async fn outlive(acquired_at: Instant, ttl: Duration) {
    let expired = acquired_at + ttl + Duration::from_millis(20);
    tokio::time::sleep_until(tokio::time::Instant::from_std(expired)).await;
}

#[tokio::test]
async fn extend_while_held_pushes_the_ttl() {
    let cluster = RedisCluster::start(3).unwrap();
    let urls = cluster.urls();
    bounded(async move {
        let redlock = Redlock::new(urls.clone()).unwrap();
        let mut lock = redlock
            .lock("extended")
            .ttl(Duration::from_secs(1))
            .await
            .unwrap();
        let token = lock.token().as_str().to_owned();
        let first_until = lock.valid_until();
        for node in lock.report().granted() {
            let left = pttl(&urls[node.index()], "extended").await;
            assert!((1..=1_000).contains(&left), "PTTL {left} on node {node}");
        }

        lock.extend(Duration::from_secs(30)).await.unwrap();
        assert_eq!(lock.lease().extensions(), 1);
        assert_eq!(lock.lease().ttl(), Duration::from_secs(30));
        assert!(lock.valid_until() > first_until + Duration::from_secs(20));
        assert!(lock.report().granted_count() >= 2, "{}", lock.report());
        assert_eq!(lock.token().as_str(), token, "extension changed the token");
        for node in lock.report().granted() {
            let left = pttl(&urls[node.index()], "extended").await;
            assert!(left > 20_000, "PTTL {left} on node {node} was not pushed");
        }
        assert_held_where_granted(&urls, lock.report(), "extended", &token).await;

        // A second extension works from the first one's lease.
        lock.extend(Duration::from_secs(40)).await.unwrap();
        assert_eq!(lock.lease().extensions(), 2);

        let released = lock.release().await;
        assert!(released.is_clean(), "{}", released.report);
        assert_no_keys(&redlock, &urls).await;
    })
    .await;
}

#[tokio::test]
async fn extend_after_expiry_fails_and_does_not_recreate_the_key() {
    let cluster = RedisCluster::start(3).unwrap();
    let urls = cluster.urls();
    bounded(async move {
        let redlock = Redlock::new(urls.clone()).unwrap();
        let ttl = Duration::from_millis(150);
        let mut lock = redlock.lock("brief").ttl(ttl).await.unwrap();
        let before = lock.lease().clone();
        outlive(lock.lease().acquired_at(), ttl).await;
        assert!(!lock.is_valid());
        for url in &urls {
            assert!(!exists(url, "brief").await, "key outlived its TTL on {url}");
        }

        let error = lock.extend(Duration::from_secs(10)).await.unwrap_err();
        assert!(
            matches!(
                error,
                Error::Extend(ExtendError::Expired { .. } | ExtendError::Lost { .. })
            ),
            "{error:?}"
        );
        assert_eq!(
            lock.lease(),
            &before,
            "a failed extension replaced the lease"
        );
        for url in &urls {
            assert!(
                !exists(url, "brief").await,
                "extend re-created the key on {url}"
            );
        }

        let released = lock.release().await;
        assert!(released.is_clean(), "{}", released.report);
        assert!(released.report.refused_count() >= 2, "{}", released.report);
        assert_eq!(released.report.granted_count(), 0);
    })
    .await;
}

/// The guard still believes it is valid, but the keys expired on the servers (a node clock that
/// ran fast, a long pause). The extend round must be refused and must not write the keys back.
#[tokio::test]
async fn extend_after_server_side_expiry_is_lost_and_does_not_recreate_the_key() {
    let cluster = RedisCluster::start(3).unwrap();
    let urls = cluster.urls();
    bounded(async move {
        let redlock = Redlock::new(urls.clone()).unwrap();
        let mut lock = redlock
            .lock_multi(["gone:a", "gone:b"])
            .ttl(Duration::from_secs(20))
            .await
            .unwrap();
        for url in &urls {
            for key in ["gone:a", "gone:b"] {
                let _: i64 = query(url, redis::cmd("PEXPIRE").arg(key).arg(1)).await;
            }
        }
        // The keys are past their 1 ms deadline once a later PTTL reports them missing.
        for url in &urls {
            for key in ["gone:a", "gone:b"] {
                while pttl(url, key).await != -2 {
                    tokio::task::yield_now().await;
                }
            }
        }
        assert!(lock.is_valid());

        let error = lock.extend(Duration::from_secs(20)).await.unwrap_err();
        match &error {
            Error::Extend(ExtendError::Lost { report }) => {
                assert!(report.refused_count() >= 2, "{report}");
                assert_eq!(report.granted_count(), 0, "{report}");
            }
            other => panic!("expected a lost lock, got {other:?}"),
        }
        assert!(error.report().is_some());
        assert!(
            !lock.is_valid(),
            "a guard whose extension found the lock lost must stop claiming validity"
        );
        // A node the round did not wait for still gets the script; let it run first.
        redlock.flush().await;
        assert_no_keys(&redlock, &urls).await;
    })
    .await;
}

/// Once the keys expired, someone else may hold the resource: the old guard must neither extend
/// nor release the new holder's keys.
#[tokio::test]
async fn an_expired_guard_cannot_touch_the_next_holders_keys() {
    let cluster = RedisCluster::start(3).unwrap();
    let urls = cluster.urls();
    bounded(async move {
        let redlock = Redlock::new(urls.clone()).unwrap();
        redlock.lock("warm-up").await.unwrap().release().await;
        let ttl = Duration::from_millis(150);
        let mut old = redlock.lock("handover").ttl(ttl).await.unwrap();
        outlive(old.lease().acquired_at(), ttl).await;

        let new = redlock
            .try_lock("handover")
            .ttl(Duration::from_secs(10))
            .await
            .unwrap();
        let token = new.token().as_str().to_owned();
        assert_ne!(old.token().as_str(), token);
        assert_held_where_granted(&urls, new.report(), "handover", &token).await;

        let error = old.extend(Duration::from_secs(60)).await.unwrap_err();
        assert!(matches!(error, Error::Extend(_)), "{error:?}");
        let released = old.release().await;
        assert_eq!(released.report.granted_count(), 0, "{}", released.report);
        assert_held_where_granted(&urls, new.report(), "handover", &token).await;
        for node in new.report().granted() {
            let left = pttl(&urls[node.index()], "handover").await;
            assert!(
                left <= 10_000,
                "the old guard extended the new holder's key: {left}"
            );
        }
        new.release().await;
        assert_no_keys(&redlock, &urls).await;
    })
    .await;
}

#[tokio::test]
async fn releasing_twice_and_releasing_by_token_are_harmless() {
    let cluster = RedisCluster::start(3).unwrap();
    let urls = cluster.urls();
    bounded(async move {
        let redlock = Redlock::new(urls.clone()).unwrap();
        let lock = redlock.lock("twice").await.unwrap();
        let token = lock.token().clone();
        let resources = lock.resources().to_vec();
        let released = lock.release().await;
        assert!(released.report.granted_count() >= 2, "{}", released.report);
        assert_no_keys(&redlock, &urls).await;

        let again = redlock.release_token(&resources, &token).await;
        assert!(again.is_clean(), "{}", again.report);
        assert!(again.report.refused_count() >= 2, "{}", again.report);
        assert_eq!(again.report.granted_count(), 0, "{}", again.report);
    })
    .await;
}

/// A release returns once a quorum has answered; the slowest node's deletion is finished in
/// the background, by source if that node lost its scripts, and `flush` waits for it.
#[tokio::test]
async fn a_release_returns_at_a_quorum_and_the_slowest_node_is_finished_after() {
    let cluster = RedisCluster::start(3).unwrap();
    let urls = cluster.urls();
    bounded(async move {
        // Long enough for the paused node to be resumed within its deadline.
        let redlock = Redlock::builder(urls.clone())
            .request_timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let lock = redlock.lock("slowest").await.unwrap();
        redlock.flush().await;
        assert_held_where_granted(&urls, lock.report(), "slowest", lock.token().as_str()).await;
        assert!(exists(&urls[2], "slowest").await);
        let _: String = query(&urls[2], redis::cmd("SCRIPT").arg("FLUSH")).await;

        cluster.pause(2).unwrap();
        let released = lock.release().await;
        assert!(released.is_clean(), "{}", released.report);
        assert_eq!(released.report.granted_count(), 2, "{}", released.report);
        assert_eq!(
            released.report.nodes()[2].status,
            NodeStatus::NoAnswer,
            "{}",
            released.report
        );
        cluster.resume(2).unwrap();
        // Node 2 answers NOSCRIPT now; only a resend of the source deletes its key.
        redlock.flush().await;
        assert!(
            !exists(&urls[2], "slowest").await,
            "the slowest node kept the key"
        );
        assert_no_keys(&redlock, &urls).await;
    })
    .await;
}

/// Nodes that lost their scripts answer a release with `NOSCRIPT`; when such a reply is
/// already in at the moment a quorum decided, the resend must still go out. Many fresh clients
/// on several threads at once make that timing common.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn releases_reach_every_node_after_a_script_flush() {
    let cluster = RedisCluster::start(3).unwrap();
    let urls = cluster.urls();
    bounded(async move {
        let mut tasks = tokio::task::JoinSet::new();
        for task in 0..6 {
            let urls = urls.clone();
            tasks.spawn(async move {
                for round in 0..20 {
                    let _: String =
                        query(&urls[round % 3], redis::cmd("SCRIPT").arg("FLUSH")).await;
                    let redlock = Redlock::new(urls.clone()).unwrap();
                    let key = format!("flushed:{task}:{round}");
                    let lock = redlock.lock(key.clone()).await.unwrap();
                    lock.release().await;
                    redlock.flush().await;
                    for url in &urls {
                        assert!(!exists(url, &key).await, "{key} left on {url}");
                    }
                }
            });
        }
        while let Some(joined) = tasks.join_next().await {
            joined.unwrap();
        }
        let redlock = Redlock::new(urls.clone()).unwrap();
        assert_no_keys(&redlock, &urls).await;
    })
    .await;
}

#[tokio::test]
async fn dropping_a_guard_releases_the_lock() {
    let cluster = RedisCluster::start(3).unwrap();
    let urls = cluster.urls();
    bounded(async move {
        let redlock = Redlock::builder(urls.clone())
            .retry(quick_retry(0))
            .build()
            .unwrap();
        // A TTL far beyond the wait below: only a release can free the resource in time.
        let lock = redlock
            .lock("dropped")
            .ttl(Duration::from_secs(60))
            .await
            .unwrap();
        let token = lock.token().as_str().to_owned();
        drop(lock);

        let next = redlock
            .try_lock("dropped")
            .wait_up_to(Duration::from_secs(10))
            .await
            .unwrap();
        assert_ne!(next.token().as_str(), token);
        assert_held_where_granted(&urls, next.report(), "dropped", next.token().as_str()).await;
        next.release().await;
        assert_no_keys(&redlock, &urls).await;
    })
    .await;
}

/// A lock call given up while its `SET`s are on the wire (a timeout around it, a `select!`, a
/// client that went away) must not leave those `SET`s holding the resource until their TTL:
/// the dropped acquire releases on every node, after the `SET`s.
#[tokio::test]
async fn a_lock_call_dropped_mid_round_releases_what_it_may_have_set() {
    let cluster = RedisCluster::start(3).unwrap();
    let urls = cluster.urls();
    bounded(async move {
        let redlock = Redlock::builder(urls.clone())
            .request_timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        redlock.lock("warm-up").await.unwrap().release().await;
        for node in 0..3 {
            cluster.pause(node).unwrap();
        }
        // The nodes are stopped, so the SETs wait in their sockets, written but not yet run.
        let gave_up = tokio::time::timeout(
            Duration::from_millis(50),
            redlock.lock("abandoned").ttl(Duration::from_secs(60)),
        )
        .await;
        assert!(
            gave_up.is_err(),
            "the lock call cannot finish while every node is stopped"
        );
        for node in 0..3 {
            cluster.resume(node).unwrap();
        }
        assert_no_keys(&redlock, &urls).await;
    })
    .await;
}

/// A release dropped right after its first poll has only queued its deletions on the
/// connections; it must still see them through.
#[tokio::test]
async fn a_release_dropped_after_its_first_poll_still_deletes_everywhere() {
    let cluster = RedisCluster::start(3).unwrap();
    let urls = cluster.urls();
    bounded(async move {
        let redlock = Redlock::new(urls.clone()).unwrap();
        let lock = redlock
            .lock("release-dropped")
            .ttl(Duration::from_secs(60))
            .await
            .unwrap();
        let mut release = Box::pin(lock.release());
        let first =
            std::future::poll_fn(|cx| std::task::Poll::Ready(release.as_mut().poll(cx))).await;
        assert!(
            first.is_pending(),
            "a release cannot finish without a reply"
        );
        drop(release);
        assert_no_keys(&redlock, &urls).await;
    })
    .await;
}

/// The closure waits forever; the keys are deleted behind its back. `with_lock` must notice at
/// its next extension, cancel the closure and say the lock was lost.
#[tokio::test]
async fn with_lock_cancels_the_closure_when_the_keys_vanish() {
    let cluster = RedisCluster::start(3).unwrap();
    let urls = cluster.urls();
    bounded(async move {
        let ttl = Duration::from_millis(600);
        let redlock = Redlock::builder(urls.clone()).ttl(ttl).build().unwrap();
        let (entered_tx, entered_rx) = oneshot::channel();
        let dropped = Arc::new(AtomicBool::new(false));
        let flag = SetOnDrop(dropped.clone());
        let run = tokio::spawn({
            let redlock = redlock.clone();
            async move {
                redlock
                    .with_lock(["vanishing:a", "vanishing:b"], move |context| async move {
                        let _flag = flag;
                        let watcher = context.clone();
                        let lost = tokio::spawn(async move { watcher.lost().await });
                        entered_tx.send((context.lease(), lost)).unwrap();
                        std::future::pending::<()>().await;
                    })
                    .await
            }
        });
        let (lease, lost) = entered_rx.await.expect("the closure never ran");
        for key in ["vanishing:a", "vanishing:b"] {
            assert_held_where_granted(&urls, lease.report(), key, lease.token().as_str()).await;
        }
        let deleted = Instant::now();
        del_everywhere(&urls, &["vanishing:a", "vanishing:b"]).await;

        let outcome = run.await.unwrap();
        let took = deleted.elapsed();
        match outcome {
            Err(Error::Lost(ExtendError::Lost { report })) => {
                assert!(report.refused_count() >= 2, "{report}");
            }
            other => panic!("expected the lock to be lost, got {other:?}"),
        }
        assert!(took < ttl * 2, "loss noticed only after {took:?}");
        assert!(
            dropped.load(Ordering::SeqCst),
            "the closure was not cancelled"
        );
        let seen = lost.await.unwrap();
        assert!(
            matches!(seen, Some(ExtendError::Lost { .. })),
            "lost() resolved with {seen:?}"
        );
        assert_no_keys(&redlock, &urls).await;
    })
    .await;
}

/// The closure outlives several TTLs; automatic extension must keep the keys alive all along.
#[tokio::test]
async fn with_lock_extends_a_closure_that_outlives_the_ttl() {
    let cluster = RedisCluster::start(3).unwrap();
    let urls = cluster.urls();
    bounded(async move {
        let ttl = Duration::from_millis(800);
        let redlock = Redlock::builder(urls.clone())
            .ttl(ttl)
            // Extensions are decided within ~1 ms here; this only absorbs a loaded machine.
            .request_timeout(Duration::from_millis(150))
            .build()
            .unwrap();
        let inspect = urls.clone();
        let value = redlock
            .with_lock(["long"], |context| async move {
                let token = context.lease().token().as_str().to_owned();
                let started = Instant::now();
                let mut lowest_pttl = i64::MAX;
                // Runs 2.5 TTLs, checking the key at each step so a gap in the extension
                // (the key expiring and coming back) would be seen.
                while started.elapsed() < ttl * 5 / 2 {
                    tokio::time::sleep(ttl / 5).await;
                    assert!(!context.is_lost());
                    for url in &inspect {
                        if get(url, "long").await.as_deref() == Some(token.as_str()) {
                            lowest_pttl = lowest_pttl.min(pttl(url, "long").await);
                        }
                    }
                }
                let mut holding = 0;
                for url in &inspect {
                    if get(url, "long").await.as_deref() == Some(token.as_str())
                        && pttl(url, "long").await > 0
                    {
                        holding += 1;
                    }
                }
                assert!(holding >= 2, "only {holding} nodes still hold the key");
                let lease = context.lease();
                assert!(
                    lease.extensions() >= 2,
                    "only {} extensions",
                    lease.extensions()
                );
                assert!(context.valid_until() > Instant::now());
                (token, lowest_pttl)
            })
            .await
            .unwrap();
        let (token, lowest_pttl) = value;
        assert!(
            lowest_pttl > 0,
            "the key nearly expired: PTTL {lowest_pttl}"
        );
        assert!(!token.is_empty());
        // Released at the end.
        assert_no_keys(&redlock, &urls).await;
    })
    .await;
}

#[tokio::test]
async fn with_lock_releases_at_the_end_and_lost_reports_a_normal_release() {
    let cluster = RedisCluster::start(3).unwrap();
    let urls = cluster.urls();
    bounded(async move {
        let redlock = Redlock::builder(urls.clone())
            .ttl(Duration::from_secs(30))
            .build()
            .unwrap();
        let inspect = urls.clone();
        let (context, seen) = redlock
            .with_lock(["scoped:a", "scoped:b"], |context| async move {
                let token = context.lease().token().as_str().to_owned();
                let mut seen = 0;
                for url in &inspect {
                    if get(url, "scoped:a").await.as_deref() == Some(token.as_str())
                        && get(url, "scoped:b").await.as_deref() == Some(token.as_str())
                    {
                        seen += 1;
                    }
                }
                (context, seen)
            })
            .await
            .unwrap();
        assert!(seen >= 2, "the closure saw the keys on only {seen} nodes");
        // The TTL is 30 s: the keys are gone because with_lock released them.
        assert_no_keys(&redlock, &urls).await;
        assert!(!context.is_lost());
        assert_eq!(context.lost().await, None);

        // A closure that panics still releases (the guard drops and releases in a task).
        let panicking = redlock.clone();
        let joined = tokio::spawn(async move {
            panicking
                .with_lock(["scoped:a"], |_| async { panic!("closure failed") })
                .await
        })
        .await;
        assert!(joined.unwrap_err().is_panic());
        let after_panic = redlock
            .try_lock("scoped:a")
            .wait_up_to(Duration::from_secs(10))
            .await
            .unwrap();
        after_panic.release().await;

        // So does a with_lock whose caller stops waiting for it.
        let abandoned = tokio::time::timeout(
            Duration::from_millis(100),
            redlock.with_lock(["scoped:b"], |_| std::future::pending::<()>()),
        )
        .await;
        assert!(abandoned.is_err());
        let after_cancel = redlock
            .try_lock("scoped:b")
            .wait_up_to(Duration::from_secs(10))
            .await
            .unwrap();
        after_cancel.release().await;
        assert_no_keys(&redlock, &urls).await;
    })
    .await;
}

/// `SCRIPT FLUSH` (or a restart that keeps the data) empties the script cache: every scripted
/// command must still reach every node without the caller noticing (a lock on several
/// resources goes by source; the others fall back from EVALSHA to EVAL).
#[tokio::test]
async fn script_flush_between_operations_is_recovered() {
    let cluster = RedisCluster::start(3).unwrap();
    let urls = cluster.urls();
    bounded(async move {
        let redlock = Redlock::builder(urls.clone())
            .retry(Retry::NONE)
            .build()
            .unwrap();
        redlock.lock("warm-up").await.unwrap().release().await;
        let resources = ["flushed:a", "flushed:b"];

        let evals_before = eval_calls(&urls).await;
        flush_scripts(&urls).await;
        let mut lock = redlock.lock_multi(resources).await.unwrap();
        let token = lock.token().as_str().to_owned();
        // Requests the decision did not wait for finish in the background: every node, not
        // just a quorum, ends up with the keys.
        redlock.flush().await;
        for url in &urls {
            for key in resources {
                assert_eq!(
                    get(url, key).await.as_deref(),
                    Some(token.as_str()),
                    "{key} on {url}"
                );
            }
        }
        let evals_after_lock = eval_calls(&urls).await;
        assert!(
            evals_after_lock > evals_before,
            "the acquire did not go by source"
        );

        flush_scripts(&urls).await;
        lock.extend(Duration::from_secs(60)).await.unwrap();
        assert!(lock.report().granted_count() >= 2, "{}", lock.report());
        redlock.flush().await;
        for url in &urls {
            for key in resources {
                let left = pttl(url, key).await;
                assert!(left > 30_000, "{key} not extended on {url}: {left}");
            }
        }
        assert!(eval_calls(&urls).await > evals_after_lock);

        flush_scripts(&urls).await;
        let released = lock.release().await;
        assert!(released.is_clean(), "{}", released.report);
        // Every node held the keys, so every answer in the quorum is a deletion.
        assert!(released.report.granted_count() >= 2, "{}", released.report);
        assert_no_keys(&redlock, &urls).await;
    })
    .await;
}

/// Sets its flag when dropped, to see that `with_lock` really dropped a cancelled closure.
struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

async fn flush_scripts(urls: &[String]) {
    for url in urls {
        let () = query(url, redis::cmd("SCRIPT").arg("FLUSH")).await;
    }
}

/// How many EVAL calls the nodes served in total, from `INFO commandstats`.
async fn eval_calls(urls: &[String]) -> u64 {
    let mut total = 0;
    for url in urls {
        let info: String = query(url, redis::cmd("INFO").arg("commandstats")).await;
        total += info
            .lines()
            .find_map(|line| line.strip_prefix("cmdstat_eval:calls="))
            .and_then(|rest| rest.split(',').next())
            .map_or(0, |calls| calls.parse::<u64>().unwrap());
    }
    total
}
