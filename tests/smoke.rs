use std::time::Duration;

use quorumlock::testing::RedisCluster;
use quorumlock::Redlock;

#[tokio::test]
async fn lock_contend_release() {
    let cluster = RedisCluster::start(3).unwrap();
    let redlock = Redlock::new(cluster.urls()).unwrap();
    let lock = redlock.lock("smoke").await.unwrap();
    println!("{}", lock.report());
    let err = redlock.try_lock("smoke").await.unwrap_err();
    println!("{err}");
    assert!(err.is_contended());
    let released = lock.release().await;
    println!("{}", released.report);
    let lock = redlock
        .try_lock("smoke")
        .ttl(Duration::from_secs(1))
        .await
        .unwrap();
    let multi = redlock.lock_multi(["a", "b"]).await.unwrap();
    println!("{}", multi.report());
    drop(lock);
    drop(multi);
}
