//! `Lock::keep_alive` against real redis-server processes: extension past the TTL, release on
//! drop and on request, and the lost signal when the keys vanish.

mod common;

use std::time::Duration;

use common::{assert_held_where_granted, assert_no_keys, bounded, del_everywhere};
use quorumlock::proto::ExtendError;
use quorumlock::testing::RedisCluster;
use quorumlock::{Lock, Redlock};

async fn soon<F: std::future::Future>(what: &str, event: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), event)
        .await
        .unwrap_or_else(|_| panic!("{what} did not happen within 10 s"))
}

#[tokio::test]
async fn a_kept_lock_outlives_its_ttl_until_released() {
    let cluster = RedisCluster::start(3).unwrap();
    let urls = cluster.urls();
    bounded(async move {
        let ttl = Duration::from_millis(400);
        let redlock = Redlock::builder(urls.clone())
            .ttl(ttl)
            // Absorbs a loaded machine; extensions take about a millisecond here.
            .request_timeout(Duration::from_millis(100))
            .build()
            .unwrap();
        let kept = redlock.lock("kept").await.unwrap().keep_alive();
        let status = kept.status().clone();
        let token = status.token().as_str().to_owned();

        // Time has to pass for this test: three TTLs, after which an unextended key is gone.
        tokio::time::sleep(ttl * 3).await;
        let lease = status.lease();
        assert!(lease.extensions() >= 3, "{} extensions", lease.extensions());
        assert!(status.is_valid() && !status.is_lost());
        assert_held_where_granted(&urls, lease.report(), "kept", &token).await;

        let released = kept.release().await.expect("the keeper task is gone");
        assert!(released.is_clean(), "{}", released.report);
        assert!(status.is_released() && !status.is_valid());
        assert_eq!(status.lost().await, None, "a release is not a loss");
        assert_no_keys(&redlock, &urls).await;
    })
    .await;
}

#[tokio::test]
async fn dropping_a_kept_lock_releases_it() {
    let cluster = RedisCluster::start(3).unwrap();
    let urls = cluster.urls();
    bounded(async move {
        let redlock = Redlock::builder(urls.clone())
            .ttl(Duration::from_secs(30))
            .build()
            .unwrap();
        let kept = redlock.lock("dropped").await.unwrap().keep_alive();
        let status = kept.status().clone();
        drop(kept);
        let released = soon("the release", status.released()).await.unwrap();
        assert!(released.is_clean(), "{}", released.report);
        // The TTL is 30 s: only the release can have removed the key.
        assert_no_keys(&redlock, &urls).await;
    })
    .await;
}

/// A flush right after dropping a kept lock waits for its release: the count is taken at the
/// drop, before the background task has even run.
#[tokio::test]
async fn a_flush_right_after_dropping_a_kept_lock_waits_for_its_release() {
    let cluster = RedisCluster::start(3).unwrap();
    let urls = cluster.urls();
    bounded(async move {
        let redlock = Redlock::builder(urls.clone())
            .ttl(Duration::from_secs(30))
            .build()
            .unwrap();
        let kept = redlock.lock("flushed").await.unwrap().keep_alive();
        let status = kept.status().clone();
        drop(kept);
        redlock.flush().await;
        assert!(status.is_released(), "flush returned before the release");
        for url in &urls {
            assert!(!common::exists(url, "flushed").await, "still held on {url}");
        }
    })
    .await;
}

#[tokio::test]
async fn a_kept_lock_whose_keys_vanish_is_lost() {
    let cluster = RedisCluster::start(3).unwrap();
    let urls = cluster.urls();
    bounded(async move {
        let redlock = Redlock::builder(urls.clone())
            .ttl(Duration::from_millis(400))
            .build()
            .unwrap();
        let kept = redlock.lock("vanishing").await.unwrap().keep_alive();
        let status = kept.status().clone();
        del_everywhere(&urls, &["vanishing"]).await;

        let lost = soon("the loss", status.lost()).await;
        assert!(matches!(lost, Some(ExtendError::Lost { .. })), "{lost:?}");
        assert!(status.is_lost() && !status.is_valid());
        assert_eq!(status.remaining(), Duration::ZERO);
        // The keeper releases by itself after a loss; releasing again is harmless.
        soon("the release after the loss", status.released())
            .await
            .unwrap();
        assert!(kept.release().await.is_some());
        assert_no_keys(&redlock, &urls).await;
    })
    .await;
}

#[tokio::test]
async fn a_kept_lock_stops_at_the_extension_limit() {
    let cluster = RedisCluster::start(3).unwrap();
    let urls = cluster.urls();
    bounded(async move {
        let redlock = Redlock::builder(urls.clone())
            .ttl(Duration::from_millis(300))
            .max_extensions(1)
            .build()
            .unwrap();
        let kept = redlock.lock("limited").await.unwrap().keep_alive();
        let lost = soon("the loss", kept.status().lost()).await;
        assert!(
            matches!(lost, Some(ExtendError::LimitReached { extensions: 1, .. })),
            "{lost:?}"
        );
        assert_eq!(kept.status().lease().extensions(), 1);
        soon("the release", kept.status().released()).await.unwrap();
        assert_no_keys(&redlock, &urls).await;
    })
    .await;
}

/// A lock on `key` taken on `runtime` and handed out of it, to this thread, which is in no
/// runtime's context: sync code after `block_on`.
fn lock_out_of(runtime: &tokio::runtime::Runtime, redlock: &Redlock, key: &str) -> Lock {
    let lock = runtime
        .block_on(bounded(async { redlock.lock(key).await }))
        .unwrap();
    assert!(tokio::runtime::Handle::try_current().is_err());
    lock
}

/// A lock handed to a thread outside its runtime (sync code after `block_on`) is kept alive,
/// and released, on the runtime it was taken on.
#[test]
fn a_lock_kept_alive_outside_its_runtime_runs_on_its_own_runtime() {
    let cluster = RedisCluster::start(3).unwrap();
    let urls = cluster.urls();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let ttl = Duration::from_millis(300);
    let redlock = Redlock::builder(urls.clone())
        .ttl(ttl)
        .request_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let kept = lock_out_of(&runtime, &redlock, "outside").keep_alive();
    let status = kept.status().clone();

    runtime.block_on(bounded(async {
        // Two extensions show the keeper running, however long the wait for it.
        while status.lease().extensions() < 2 {
            tokio::time::sleep(ttl / 4).await;
        }
        assert!(status.is_valid() && !status.is_lost());
        let released = kept.release().await.expect("the keeper task is gone");
        assert!(released.is_clean(), "{}", released.report);
        assert_no_keys(&redlock, &urls).await;
    }));
}

/// A lock dropped on a thread outside its runtime is still released there, not left to its TTL.
#[test]
fn a_lock_dropped_outside_its_runtime_is_released() {
    let cluster = RedisCluster::start(3).unwrap();
    let urls = cluster.urls();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let redlock = Redlock::builder(urls.clone())
        .ttl(Duration::from_secs(30))
        .build()
        .unwrap();
    drop(lock_out_of(&runtime, &redlock, "dropped-outside"));
    // The TTL is 30 s: only the release can have removed the key.
    runtime.block_on(bounded(assert_no_keys(&redlock, &urls)));
}
