//! Waiters of one client are woken by its releases instead of sleeping out their retry delay.

// The test measures how long contenders waited, to tell a wake-up from a slept-out delay.
#![allow(clippy::disallowed_methods)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{assert_no_keys, bounded, del_everywhere, query};
use quorumlock::testing::RedisCluster;
use quorumlock::{Redlock, Retry};

/// Seven tasks queue for a held resource with a 2 s retry delay. If waiters slept out the
/// delay, the last one would get the lock after about 7 × 2 s; woken by each release, the whole
/// queue drains in a small fraction of one delay. Exclusion is checked all along.
#[tokio::test]
async fn a_release_wakes_the_next_waiter_of_the_same_client() {
    const WAITERS: i64 = 7;
    let cluster = RedisCluster::start(3).unwrap();
    let urls = cluster.urls();
    bounded(async move {
        let delay = Duration::from_secs(2);
        let redlock = Redlock::builder(urls.clone())
            .retry(Retry::new(20, delay, Duration::ZERO))
            .build()
            .unwrap();
        let first = redlock.lock("handoff").await.unwrap();
        let inside = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..WAITERS {
            let (redlock, inside) = (redlock.clone(), inside.clone());
            tasks.push(tokio::spawn(async move {
                let lock = redlock
                    .lock("handoff")
                    .await
                    .expect("every waiter gets the lock");
                assert_eq!(
                    inside.fetch_add(1, Ordering::SeqCst),
                    0,
                    "two holders at once"
                );
                tokio::time::sleep(Duration::from_millis(1)).await;
                inside.fetch_sub(1, Ordering::SeqCst);
                let released = lock.release().await;
                assert!(released.is_clean(), "{}", released.report);
                Instant::now()
            }));
        }
        // Release only once every waiter's first attempt has failed and been cleaned up, so
        // the waiters are not racing each other (a split vote among simultaneous contenders
        // leaves nobody to release, which only the retry delay resolves).
        for url in &urls {
            while clean_ups(url).await < WAITERS {
                tokio::task::yield_now().await;
            }
        }
        let released_at = Instant::now();
        first.release().await;
        let mut last = released_at;
        for task in tasks {
            last = last.max(task.await.unwrap());
        }
        let drained = last - released_at;
        assert!(
            drained < delay,
            "the queue took {drained:?}: waiters slept out the {delay:?} retry delay"
        );
        assert_no_keys(&redlock, &urls).await;
    })
    .await;
}

/// Scripts run so far on a node other than the lock's own SET: here, each waiter's clean-up
/// after its failed first attempt.
async fn clean_ups(url: &str) -> i64 {
    calls(url, &["cmdstat_evalsha", "cmdstat_eval"]).await
}

/// How many times the node ran the given commands (`INFO commandstats`), scripts' calls included.
async fn calls(url: &str, commands: &[&str]) -> i64 {
    let info: String = query(url, redis::cmd("INFO").arg("commandstats")).await;
    info.lines()
        .filter(|line| {
            commands
                .iter()
                .any(|command| line.starts_with(&format!("{command}:")))
        })
        .filter_map(|line| {
            line.split("calls=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<i64>()
                .ok()
        })
        .sum()
}

/// A release nobody waits for announces nothing, so it costs what a plain compare-and-delete
/// costs; a waiter's failed attempt marks the key, and the holder's release is then announced
/// on every node, once: the release takes the marker with it.
#[tokio::test]
async fn only_releases_somebody_waits_for_are_announced() {
    let cluster = RedisCluster::start(3).unwrap();
    let urls = cluster.urls();
    bounded(async move {
        let holder = Redlock::new(urls.clone()).unwrap();
        let waiter = Redlock::new(urls.clone()).unwrap();
        holder.lock("quiet").await.unwrap().release().await;
        for url in &urls {
            assert_eq!(calls(url, &["cmdstat_publish"]).await, 0, "{url}");
        }

        let lock = holder.lock("busy").await.unwrap();
        let refused = waiter.try_lock("busy").await.unwrap_err();
        assert!(refused.is_contended(), "{refused}");
        let released = lock.release().await;
        assert!(released.is_clean(), "{}", released.report);
        holder.flush().await;
        for url in &urls {
            assert_eq!(calls(url, &["cmdstat_publish"]).await, 1, "{url}");
        }

        // The announcing release took the marker with the key: once no one waits any more,
        // releases are quiet again.
        holder.lock("busy").await.unwrap().release().await;
        holder.flush().await;
        for url in &urls {
            assert_eq!(calls(url, &["cmdstat_publish"]).await, 1, "{url}");
        }
    })
    .await;
}

/// A client in another process hears of the release over Pub/Sub and retries at once, instead
/// of sleeping out its 2 s retry delay.
#[tokio::test]
async fn a_release_wakes_a_waiter_of_another_client() {
    let cluster = RedisCluster::start(3).unwrap();
    let urls = cluster.urls();
    bounded(async move {
        let delay = Duration::from_secs(2);
        let retry = Retry::new(20, delay, Duration::ZERO);
        let holder = Redlock::builder(urls.clone()).retry(retry).build().unwrap();
        let waiter = Redlock::builder(urls.clone()).retry(retry).build().unwrap();
        let lock = holder.lock("handoff:remote").await.unwrap();
        let waiting = tokio::spawn({
            let waiter = waiter.clone();
            async move { waiter.lock("handoff:remote").await }
        });
        // The waiter's first attempt fails and it subscribes to the release channel; a release
        // before the subscription reaches every node could not be heard, so wait for it.
        for url in &urls {
            loop {
                let (_, subscribers): (String, i64) = query(
                    url,
                    redis::cmd("PUBSUB")
                        .arg("NUMSUB")
                        .arg("quorumlock:released:handoff:remote"),
                )
                .await;
                if subscribers > 0 {
                    break;
                }
                tokio::task::yield_now().await;
            }
        }
        let released_at = Instant::now();
        lock.release().await;
        let got = waiting.await.unwrap().expect("the waiter gets the lock");
        let waited = released_at.elapsed();
        assert!(
            waited < delay,
            "the waiter took {waited:?}: it slept out its {delay:?} retry delay"
        );
        got.release().await;
        holder.flush().await;
        assert_no_keys(&waiter, &urls).await;
    })
    .await;
}

/// A holder whose keys vanish without an announcement (expiry, or another client's release
/// script) is still succeeded: the waiter's own retries find the resource free.
#[tokio::test]
async fn a_silent_release_is_found_by_retrying() {
    let cluster = RedisCluster::start(3).unwrap();
    let urls = cluster.urls();
    bounded(async move {
        let retry = Retry::new(100, Duration::from_millis(20), Duration::from_millis(10));
        let holder = Redlock::builder(urls.clone()).retry(retry).build().unwrap();
        let waiter = Redlock::builder(urls.clone()).retry(retry).build().unwrap();
        let lock = holder.lock("handoff:silent").await.unwrap();
        let waiting = tokio::spawn({
            let waiter = waiter.clone();
            async move { waiter.lock("handoff:silent").await }
        });
        let contender = holder.try_lock("handoff:silent").await.unwrap_err();
        assert!(contender.is_contended(), "{contender}");
        // DEL publishes nothing: only retrying can notice.
        del_everywhere(&urls, &["handoff:silent"]).await;
        let got = waiting
            .await
            .unwrap()
            .expect("the waiter gets the lock by retrying");
        assert_ne!(got.token(), lock.token());
        got.release().await;
        drop(lock);
        holder.flush().await;
        assert_no_keys(&waiter, &urls).await;
    })
    .await;
}

/// While another task of the same client holds the resource, a task that asks for it again
/// does not ask the nodes (they could only refuse): it waits for that holder's release, which
/// wakes it directly. Here the first holder comes back for the lock while a waiter it woke
/// holds it, as the scenario's contenders do, and another waiter still waits.
#[tokio::test]
async fn a_task_does_not_ask_the_nodes_while_a_sibling_holds_the_lock() {
    a_returning_task_waits_without_asking("sibling", 2).await;
}

/// The same when the waiter that took the lock was the only one: nobody waits any more, yet
/// the client remembers who holds the resource.
#[tokio::test]
async fn a_lock_taken_by_the_only_waiter_is_known_to_its_siblings() {
    a_returning_task_waits_without_asking("lone", 1).await;
}

/// `waiters` tasks wait for `key` behind a first holder; once one of them holds it, the first
/// holder asks again, and must wait without sending a `SET` until that lock is released.
async fn a_returning_task_waits_without_asking(key: &'static str, waiters: i64) {
    let cluster = RedisCluster::start(3).unwrap();
    let urls = cluster.urls();
    bounded(async move {
        // Timer retries would send requests of their own; 30 s keeps them out of the picture.
        let redlock = Redlock::builder(urls.clone())
            .retry(Retry::new(20, Duration::from_secs(30), Duration::ZERO))
            .build()
            .unwrap();
        let first = redlock.lock(key).await.unwrap();
        let (handed_tx, mut handed_rx) = tokio::sync::mpsc::unbounded_channel();
        let (go_tx, go_rx) = tokio::sync::watch::channel(false);
        let mut tasks = Vec::new();
        for _ in 0..waiters {
            let (redlock, handed_tx, mut go_rx) =
                (redlock.clone(), handed_tx.clone(), go_rx.clone());
            tasks.push(tokio::spawn(async move {
                let lock = redlock.lock(key).await.expect("the waiter gets the lock");
                handed_tx.send(()).unwrap();
                go_rx.wait_for(|go| *go).await.unwrap();
                lock.release().await;
            }));
        }
        for url in &urls {
            while clean_ups(url).await < waiters {
                tokio::task::yield_now().await;
            }
        }
        first.release().await;
        // One waiter holds the lock now; any other still waits.
        handed_rx.recv().await.unwrap();
        redlock.flush().await;
        let before = sets(&urls).await;

        let again = tokio::spawn({
            let redlock = redlock.clone();
            async move { redlock.lock(key).await }
        });
        // Let the new call run its first attempt (on this runtime, one turn of the scheduler),
        // then make sure anything it sent has reached the nodes.
        tokio::task::yield_now().await;
        redlock.flush().await;
        assert_eq!(
            sets(&urls).await,
            before,
            "a lock request went to the nodes while a sibling held the lock"
        );

        go_tx.send(true).unwrap();
        for task in tasks {
            task.await.unwrap();
        }
        let lock = again
            .await
            .unwrap()
            .expect("the returning task gets the lock");
        lock.release().await;
        assert_no_keys(&redlock, &urls).await;
    })
    .await;
}

/// `SET` calls on every node, together.
async fn sets(urls: &[String]) -> i64 {
    let mut total = 0;
    for url in urls {
        total += calls(url, &["cmdstat_set"]).await;
    }
    total
}
