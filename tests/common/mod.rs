//! Shared pieces of the client integration tests: a time bound for every test, a retry policy
//! that keeps contended tests short, and a direct redis-rs connection to look at what the client
//! left on each node.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::future::Future;
use std::net::{Ipv4Addr, TcpListener};
use std::time::Duration;

use quorumlock::proto::{NodeErrorKind, NodeStatus, Report, WAITING_MARKER_PREFIX};
use quorumlock::{Redlock, Retry};
use redis::aio::MultiplexedConnection;
use redis::{Cmd, FromRedisValue};

/// Upper bound for one test body. Far above what any test needs, so that only a hang (not a slow,
/// loaded machine) trips it, and low enough that a hang fails the suite in well under a minute.
pub const TEST_BOUND: Duration = Duration::from_secs(40);

/// Runs a test body, failing the test instead of hanging it.
pub async fn bounded<F: Future>(body: F) -> F::Output {
    match tokio::time::timeout(TEST_BOUND, body).await {
        Ok(output) => output,
        Err(_) => panic!("test body did not finish within {TEST_BOUND:?}"),
    }
}

/// Short pauses between attempts: contention tests would otherwise spend most of their time
/// waiting out the default 200 ms delay.
pub fn quick_retry(retries: u32) -> Retry {
    Retry::new(
        retries,
        Duration::from_millis(20),
        Duration::from_millis(10),
    )
}

/// A connection that bypasses the client under test. Bounded by redis-rs's own connect and
/// response timeouts, so inspecting a dead node fails the test instead of hanging it.
pub async fn connect(url: &str) -> MultiplexedConnection {
    let client = redis::Client::open(url).unwrap_or_else(|e| panic!("inspection URL {url}: {e}"));
    client
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("inspection connection to {url}: {e}"))
}

/// Runs one command on `url` over a fresh inspection connection.
pub async fn query<T: FromRedisValue>(url: &str, cmd: &Cmd) -> T {
    let mut connection = connect(url).await;
    cmd.query_async(&mut connection)
        .await
        .unwrap_or_else(|e| panic!("inspection command on {url}: {e}"))
}

/// Every key on the node.
pub async fn keys(url: &str) -> Vec<String> {
    query(url, redis::cmd("KEYS").arg("*")).await
}

/// The value stored under `key`, if any.
pub async fn get(url: &str, key: &str) -> Option<String> {
    query(url, redis::cmd("GET").arg(key)).await
}

/// Milliseconds `key` has left; -2 if it does not exist, -1 if it has no TTL.
pub async fn pttl(url: &str, key: &str) -> i64 {
    query(url, redis::cmd("PTTL").arg(key)).await
}

pub async fn exists(url: &str, key: &str) -> bool {
    query::<i64>(url, redis::cmd("EXISTS").arg(key)).await == 1
}

/// Deletes `keys` on every node in `urls`, as an operator or a bug elsewhere might.
pub async fn del_everywhere(urls: &[String], keys: &[&str]) {
    for url in urls {
        let _: i64 = query(url, redis::cmd("DEL").arg(keys)).await;
    }
}

/// Asserts that no node in `urls` holds any lock key, once `redlock` has flushed.
pub async fn assert_no_keys(redlock: &Redlock, urls: &[String]) {
    // A release returns at a quorum; the other nodes finish in the background.
    redlock.flush().await;
    for url in urls {
        let mut left = keys(url).await;
        // Waiters mark keys they found taken; the marks expire on their own and lock nothing.
        for marker in left
            .iter()
            .filter(|key| key.starts_with(WAITING_MARKER_PREFIX))
        {
            assert!(
                pttl(url, marker).await > 0,
                "{marker} on {url} never expires"
            );
        }
        left.retain(|key| !key.starts_with(WAITING_MARKER_PREFIX));
        assert!(left.is_empty(), "lock keys left on {url}: {left:?}");
    }
}

/// Asserts that every node in `urls` stores `token` under `key` with a live TTL.
pub async fn assert_held(urls: &[String], key: &str, token: &str) {
    for url in urls {
        assert_eq!(
            get(url, key).await.as_deref(),
            Some(token),
            "{key} on {url}"
        );
        let left = pttl(url, key).await;
        assert!(left > 0, "{key} on {url} has PTTL {left}");
    }
}

/// Asserts that every node that granted in `report` stores `token` under `key` with a live TTL.
/// Nodes the round did not wait for are not checked: their SET may or may not have been sent.
pub async fn assert_held_where_granted(urls: &[String], report: &Report, key: &str, token: &str) {
    let granted = report.granted();
    assert!(!granted.is_empty(), "no node granted: {report}");
    for node in granted {
        assert_held(&urls[node.index()..=node.index()], key, token).await;
    }
}

/// The status of node `index` in `report`.
pub fn status(report: &Report, index: usize) -> &NodeStatus {
    &report
        .nodes()
        .get(index)
        .unwrap_or_else(|| panic!("no node {index} in report: {report}"))
        .status
}

/// Whether `status` is a failure of the given kind.
pub fn failed_with(status: &NodeStatus, kind: NodeErrorKind) -> bool {
    matches!(status, NodeStatus::Failed(error) if error.kind == kind)
}

/// A loopback port that nothing listens on (until someone else happens to take it, which a test
/// run on one machine makes unlikely within its few seconds).
pub fn closed_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("binding a probe port");
    listener.local_addr().expect("probe port address").port()
}

/// A loopback TCP proxy in front of a real node that holds back the first bytes the node sends
/// on each connection by `delay`: a connection set-up (handshake, `HELLO`) that takes longer
/// than a request deadline, as TLS over a long round trip does. Runs until the test's runtime
/// ends; returns the `redis://` URL to connect through.
pub async fn slow_handshake_proxy(node_url: &str, delay: Duration) -> String {
    let target = node_url
        .strip_prefix("redis://")
        .unwrap_or(node_url)
        .trim_end_matches('/')
        .to_owned();
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind the proxy");
    let address = listener.local_addr().expect("the proxy's address");
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let target = target.clone();
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(&target).await else {
                    return;
                };
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                let upstream = tokio::io::copy(&mut client_read, &mut server_write);
                let downstream = async {
                    tokio::time::sleep(delay).await;
                    tokio::io::copy(&mut server_read, &mut client_write).await
                };
                let _ = tokio::join!(upstream, downstream);
            });
        }
    });
    format!("redis://{address}")
}
