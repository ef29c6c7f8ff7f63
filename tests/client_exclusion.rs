//! Mutual exclusion against real redis-server processes: contenders never overlap, and a held
//! lock is visible on every node exactly as the wire format promises.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{assert_held_where_granted, assert_no_keys, bounded, connect};
use quorumlock::proto::NodeStatus;
use quorumlock::testing::RedisCluster;
use quorumlock::{Redlock, Retry};
use tokio::task::JoinSet;

const TASKS: usize = 32;

/// Every task takes the same lock and, inside it, increments a counter stored in Redis with a
/// GET, an await, and a SET. If two critical sections ever overlapped, one increment would be
/// lost and the in-memory `inside` gauge would read 2.
async fn hammer(nodes: usize) {
    let cluster = RedisCluster::start(nodes).unwrap();
    let urls = cluster.urls();
    bounded(async move {
        let redlock = Redlock::builder(urls.clone())
            .ttl(Duration::from_secs(10))
            // Short pauses keep 32 contenders moving; the jitter keeps them out of lock-step.
            .retry(Retry::new(
                0,
                Duration::from_millis(30),
                Duration::from_millis(20),
            ))
            .build()
            .unwrap();
        // The shared value lives on node 0 under a key that is not a lock key.
        let store = connect(&urls[0]).await;
        let inside = Arc::new(AtomicUsize::new(0));
        let entered = Arc::new(AtomicUsize::new(0));

        let mut tasks = JoinSet::new();
        for task in 0..TASKS {
            let redlock = redlock.clone();
            let mut store = store.clone();
            let inside = inside.clone();
            let entered = entered.clone();
            tasks.spawn(async move {
                let lock = redlock
                    .lock("hammer")
                    .wait_up_to(Duration::from_secs(25))
                    .await
                    .unwrap_or_else(|e| panic!("task {task} never got the lock: {e}"));
                let others = inside.fetch_add(1, Ordering::SeqCst);
                assert_eq!(
                    others, 0,
                    "task {task} entered while {others} others were inside"
                );

                let value: Option<u64> = redis::cmd("GET")
                    .arg("hammer:value")
                    .query_async(&mut store)
                    .await
                    .unwrap();
                tokio::task::yield_now().await;
                let () = redis::cmd("SET")
                    .arg("hammer:value")
                    .arg(value.unwrap_or(0) + 1)
                    .query_async(&mut store)
                    .await
                    .unwrap();

                assert!(lock.is_valid(), "task {task} outlived its lock");
                inside.fetch_sub(1, Ordering::SeqCst);
                entered.fetch_add(1, Ordering::SeqCst);
                let released = lock.release().await;
                assert!(released.is_clean(), "task {task}: {}", released.report);
            });
        }
        while let Some(joined) = tasks.join_next().await {
            joined.unwrap();
        }

        assert_eq!(entered.load(Ordering::SeqCst), TASKS);
        let total: Option<u64> = redis::cmd("GET")
            .arg("hammer:value")
            .query_async(&mut store.clone())
            .await
            .unwrap();
        assert_eq!(total, Some(TASKS as u64), "an increment was lost");
        for url in &urls {
            assert!(
                !common::exists(url, "hammer").await,
                "lock key left on {url}"
            );
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_two_contenders_on_three_nodes_never_overlap() {
    hammer(3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_two_contenders_on_five_nodes_never_overlap() {
    hammer(5).await;
}

/// Locks on `{a, b}` and `{b, c}` share `b`, so they must exclude each other, while the
/// all-or-nothing script must never leave a half-set pair behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_multi_resource_locks_exclude_each_other() {
    let cluster = RedisCluster::start(3).unwrap();
    let urls = cluster.urls();
    bounded(async move {
        let redlock = Redlock::builder(urls.clone())
            .retry(Retry::new(
                0,
                Duration::from_millis(20),
                Duration::from_millis(15),
            ))
            .build()
            .unwrap();
        let inside_b = Arc::new(AtomicUsize::new(0));
        let entered = Arc::new(AtomicUsize::new(0));
        let mut tasks = JoinSet::new();
        for task in 0..16 {
            let redlock = redlock.clone();
            let inside_b = inside_b.clone();
            let entered = entered.clone();
            let resources = if task % 2 == 0 {
                ["a", "b"]
            } else {
                ["b", "c"]
            };
            tasks.spawn(async move {
                let lock = redlock
                    .lock_multi(resources)
                    .wait_up_to(Duration::from_secs(25))
                    .await
                    .unwrap_or_else(|e| panic!("task {task} never got {resources:?}: {e}"));
                assert_eq!(lock.resources(), resources);
                let others = inside_b.fetch_add(1, Ordering::SeqCst);
                assert_eq!(others, 0, "task {task} shared b with {others} others");
                tokio::time::sleep(Duration::from_millis(2)).await;
                inside_b.fetch_sub(1, Ordering::SeqCst);
                entered.fetch_add(1, Ordering::SeqCst);
                lock.release().await;
            });
        }
        while let Some(joined) = tasks.join_next().await {
            joined.unwrap();
        }
        assert_eq!(entered.load(Ordering::SeqCst), 16);
        assert_no_keys(&redlock, &urls).await;
    })
    .await;
}

#[tokio::test]
async fn held_lock_is_stored_as_token_with_ttl_and_refuses_others() {
    let cluster = RedisCluster::start(3).unwrap();
    let urls = cluster.urls();
    bounded(async move {
        let redlock = Redlock::builder(urls.clone())
            .ttl(Duration::from_secs(10))
            .build()
            .unwrap();
        let lock = redlock.lock("orders:42").await.unwrap();
        assert_eq!(lock.resources(), ["orders:42"]);
        // The round is decided by the first quorum of answers; a slower node may show as
        // "no answer" even though its SET lands.
        let granted = lock.report().granted();
        assert!(granted.len() >= 2, "{}", lock.report());
        let token = lock.token().as_str().to_owned();
        assert!(token.len() >= 32, "token {token:?} carries under 128 bits");
        assert_held_where_granted(&urls, lock.report(), "orders:42", &token).await;
        for url in &urls {
            let value = common::get(url, "orders:42").await;
            assert!(
                value.is_none() || value.as_deref() == Some(token.as_str()),
                "foreign value {value:?} on {url}"
            );
            let left = common::pttl(url, "orders:42").await;
            assert!(left <= 10_000, "PTTL {left} above the TTL on {url}");
        }
        assert!(lock.remaining() <= Duration::from_secs(10));
        assert!(lock.is_valid());

        let taken = redlock.try_lock("orders:42").await.unwrap_err();
        assert!(taken.is_contended(), "{taken}");
        assert!(!taken.is_no_quorum());
        let report = taken.report().expect("a contended error has a report");
        let refused = report.refused();
        assert!(refused.len() >= 2, "{report}");
        let listed: Vec<String> = refused.iter().map(ToString::to_string).collect();
        assert_eq!(
            taken.to_string(),
            format!("lock already taken, locked nodes: [{}]", listed.join(" "))
        );
        assert!(
            !report
                .nodes()
                .iter()
                .any(|n| n.status == NodeStatus::Granted),
            "{report}"
        );
        // The loser's clean-up release must not have touched the holder's keys.
        assert_held_where_granted(&urls, lock.report(), "orders:42", &token).await;

        // A multi-resource lock that includes a held key gets none of its keys.
        let overlap = redlock
            .lock_multi(["orders:41", "orders:42"])
            .retry(Retry::NONE)
            .await
            .unwrap_err();
        assert!(overlap.is_contended(), "{overlap}");
        for url in &urls {
            assert!(
                !common::exists(url, "orders:41").await,
                "half a lock on {url}"
            );
        }

        let released = lock.release().await;
        assert!(released.is_clean(), "{}", released.report);
        assert!(released.report.granted_count() >= 2, "{}", released.report);
        assert_no_keys(&redlock, &urls).await;

        let multi = redlock
            .lock_multi(["orders:41", "orders:42"])
            .await
            .unwrap();
        for key in ["orders:41", "orders:42"] {
            assert_held_where_granted(&urls, multi.report(), key, multi.token().as_str()).await;
        }
        multi.release().await;
        assert_no_keys(&redlock, &urls).await;
    })
    .await;
}
