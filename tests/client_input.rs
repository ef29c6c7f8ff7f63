//! Bad input and hostile endpoints: each is a typed error, quickly, never a panic or a hang.

// Failing "quickly" is part of what these tests check, which needs the clock.
#![allow(clippy::disallowed_methods)]

mod common;

use std::io::Write;
use std::net::{Ipv4Addr, TcpListener};
use std::thread;
use std::time::{Duration, Instant};

use common::{assert_no_keys, bounded, closed_port, failed_with, status};
use quorumlock::proto::{ConfigError, NodeErrorKind, NodeStatus, ResourceError};
use quorumlock::testing::RedisCluster;
use quorumlock::{BuildError, Error, Redlock, Retry};

/// Far above the 200 ms request deadline of a 10 s TTL, far below the TTL and below the sum of
/// redis-rs's default connect and response timeouts.
const QUICK: Duration = Duration::from_secs(2);

/// A client for three nodes nothing listens on. Input errors must come before any I/O; if the
/// client tried to connect instead, the error would be a different one.
fn unreachable_client() -> Redlock {
    let urls: Vec<String> = (0..3)
        .map(|_| format!("redis://127.0.0.1:{}", closed_port()))
        .collect();
    Redlock::new(urls).unwrap()
}

#[tokio::test]
async fn bad_resource_lists_are_typed_errors() {
    bounded(async {
        let redlock = unreachable_client();
        let empty = redlock.lock_multi(Vec::<String>::new()).await.unwrap_err();
        assert!(
            matches!(empty, Error::InvalidResources(ResourceError::Empty)),
            "{empty:?}"
        );
        assert!(empty.report().is_none());

        let unnamed = redlock.lock("").await.unwrap_err();
        assert!(
            matches!(
                unnamed,
                Error::InvalidResources(ResourceError::EmptyName(0))
            ),
            "{unnamed:?}"
        );
        let unnamed = redlock.lock_multi(["a", ""]).await.unwrap_err();
        assert!(
            matches!(
                unnamed,
                Error::InvalidResources(ResourceError::EmptyName(1))
            ),
            "{unnamed:?}"
        );

        let twice = redlock.lock_multi(["a", "b", "a"]).await.unwrap_err();
        match &twice {
            Error::InvalidResources(ResourceError::Duplicate(name)) => assert_eq!(name, "a"),
            other => panic!("expected a duplicate, got {other:?}"),
        }
        assert!(twice.to_string().contains("\"a\""), "{twice}");

        let in_with_lock = redlock
            .with_lock(Vec::<String>::new(), |_| async {
                unreachable!("ran without a lock")
            })
            .await
            .unwrap_err();
        assert!(
            matches!(in_with_lock, Error::InvalidResources(ResourceError::Empty)),
            "{in_with_lock:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn bad_ttls_are_typed_errors() {
    bounded(async {
        let urls = ["redis://127.0.0.1:1"];
        let zero = Redlock::builder(urls)
            .ttl(Duration::ZERO)
            .build()
            .unwrap_err();
        assert!(
            matches!(zero, BuildError::Config(ConfigError::ZeroTtl)),
            "{zero:?}"
        );
        // Under a millisecond rounds to zero: Redis takes whole milliseconds.
        let sub_ms = Redlock::builder(urls)
            .ttl(Duration::from_micros(900))
            .build()
            .unwrap_err();
        assert!(
            matches!(sub_ms, BuildError::Config(ConfigError::ZeroTtl)),
            "{sub_ms:?}"
        );
        // 3 ms cannot cover the 2 ms drift floor plus the 5 ms minimum validity.
        let short = Redlock::builder(urls)
            .ttl(Duration::from_millis(3))
            .build()
            .unwrap_err();
        assert!(
            matches!(short, BuildError::Config(ConfigError::TtlTooShort { .. })),
            "{short:?}"
        );
        let slow = Redlock::builder(urls)
            .ttl(Duration::from_secs(1))
            .request_timeout(Duration::from_secs(1))
            .build()
            .unwrap_err();
        assert!(
            matches!(
                slow,
                BuildError::Config(ConfigError::RequestTimeoutTooLong { .. })
            ),
            "{slow:?}"
        );
        let drift = Redlock::builder(urls)
            .drift_factor(f64::NAN)
            .build()
            .unwrap_err();
        assert!(
            matches!(
                drift,
                BuildError::Config(ConfigError::InvalidDriftFactor(_))
            ),
            "{drift:?}"
        );
        let none = Redlock::new(Vec::<String>::new()).unwrap_err();
        assert!(
            matches!(none, BuildError::Config(ConfigError::NoNodes)),
            "{none:?}"
        );

        let redlock = unreachable_client();
        let zero = redlock.lock("r").ttl(Duration::ZERO).await.unwrap_err();
        assert!(
            matches!(zero, Error::InvalidOptions(ConfigError::ZeroTtl)),
            "{zero:?}"
        );
        let short = redlock
            .lock("r")
            .ttl(Duration::from_millis(3))
            .await
            .unwrap_err();
        assert!(
            matches!(
                short,
                Error::InvalidOptions(ConfigError::TtlTooShort { .. })
            ),
            "{short:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn extending_with_a_bad_ttl_is_a_typed_error_and_keeps_the_lock() {
    let cluster = RedisCluster::start(3).unwrap();
    let urls = cluster.urls();
    bounded(async move {
        let redlock = Redlock::new(urls.clone()).unwrap();
        let mut lock = redlock.lock("kept").await.unwrap();
        let lease = lock.lease().clone();
        for ttl in [Duration::ZERO, Duration::from_millis(3)] {
            let error = lock.extend(ttl).await.unwrap_err();
            assert!(matches!(error, Error::InvalidOptions(_)), "{error:?}");
            assert_eq!(lock.lease(), &lease);
        }
        assert!(lock.is_valid());
        let released = lock.release().await;
        assert!(released.report.granted_count() >= 2, "{}", released.report);
        assert_no_keys(&redlock, &urls).await;
    })
    .await;
}

#[test]
fn malformed_urls_are_typed_errors_that_do_not_echo_the_password() {
    for (urls, bad) in [
        (vec!["not a url"], 0),
        (vec!["redis://127.0.0.1:6379", "redis://:99999999"], 1),
        (vec!["redis://:hunter2@127.0.0.1:99999999"], 0),
        (vec!["http://127.0.0.1:6379"], 0),
        (vec![""], 0),
    ] {
        match Redlock::new(urls.clone()) {
            Err(error @ BuildError::InvalidUrl { index, .. }) => {
                assert_eq!(index, bad, "{urls:?}: {error}");
                assert!(!error.to_string().contains("hunter2"), "{error}");
            }
            other => panic!("{urls:?} gave {other:?}"),
        }
    }
}

#[cfg(not(feature = "tls"))]
#[test]
fn rediss_without_the_tls_feature_is_a_typed_error() {
    let error = Redlock::new(["redis://127.0.0.1:6379", "rediss://127.0.0.1:6380"]).unwrap_err();
    assert!(
        matches!(error, BuildError::TlsNotEnabled { index: 1 }),
        "{error:?}"
    );
    assert!(error.to_string().contains("tls"), "{error}");
}

#[tokio::test]
async fn a_wrong_password_is_an_auth_error_and_the_right_one_locks() {
    let cluster = RedisCluster::start_with_args(3, &["--requirepass", "secret"]).unwrap();
    let ports: Vec<u16> = cluster.nodes().iter().map(|n| n.port()).collect();
    bounded(async move {
        let with_password = |password: &str| -> Vec<String> {
            ports
                .iter()
                .map(|port| format!("redis://:{password}@127.0.0.1:{port}"))
                .collect()
        };

        let wrong = Redlock::new(with_password("wrong")).unwrap();
        let error = wrong.try_lock("guarded").await.unwrap_err();
        assert!(error.is_no_quorum(), "{error}");
        assert!(!error.to_string().contains("secret"), "{error}");
        let report = error.report().expect("no-quorum errors carry the report");
        let auth_failures = report
            .nodes()
            .iter()
            .filter(|n| failed_with(&n.status, NodeErrorKind::Auth))
            .count();
        assert!(auth_failures >= 2, "{report}");
        assert_eq!(report.granted_count(), 0, "{report}");

        // No password at all: the connection works, the commands are refused.
        let anonymous: Vec<String> = ports
            .iter()
            .map(|port| format!("redis://127.0.0.1:{port}"))
            .collect();
        let error = Redlock::new(anonymous)
            .unwrap()
            .try_lock("guarded")
            .await
            .unwrap_err();
        let report = error.report().expect("no-quorum errors carry the report");
        assert!(
            report
                .nodes()
                .iter()
                .filter(|n| failed_with(&n.status, NodeErrorKind::Auth))
                .count()
                >= 2,
            "{report}"
        );

        let right_urls = with_password("secret");
        let right = Redlock::new(right_urls.clone()).unwrap();
        let lock = right.try_lock("guarded").await.unwrap();
        assert!(lock.report().granted_count() >= 2, "{}", lock.report());
        common::assert_held_where_granted(
            &right_urls,
            lock.report(),
            "guarded",
            lock.token().as_str(),
        )
        .await;
        lock.release().await;
        assert_no_keys(&right, &right_urls).await;
    })
    .await;
}

#[tokio::test]
async fn nothing_listening_is_no_quorum_with_io_errors_quickly() {
    bounded(async {
        let redlock = unreachable_client();
        let started = Instant::now();
        let error = redlock.try_lock("nowhere").await.unwrap_err();
        let took = started.elapsed();
        assert!(took < QUICK, "took {took:?}");
        assert!(error.is_no_quorum(), "{error}");
        let report = error.report().expect("no-quorum errors carry the report");
        let io_failures = report
            .nodes()
            .iter()
            .filter(|n| failed_with(&n.status, NodeErrorKind::Io))
            .count();
        assert!(io_failures >= 2, "{report}");

        // Retrying against dead nodes stops at the overall deadline.
        let started = Instant::now();
        let error = redlock
            .lock("nowhere")
            .wait_up_to(Duration::from_millis(300))
            .await
            .unwrap_err();
        let took = started.elapsed();
        assert!(error.is_no_quorum(), "{error}");
        assert!(took < QUICK, "retrying took {took:?}");
    })
    .await;
}

/// Accepts connections and answers each with an HTTP error, as a web server on the wrong port
/// would. The thread lives as long as the test process; it holds nothing else.
fn garbage_server() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
            // Kept open: the client must make sense of the bytes, not just of a closed socket.
            thread::spawn(move || {
                let _ = std::io::copy(&mut stream, &mut std::io::sink());
            });
        }
    });
    port
}

#[tokio::test]
async fn a_port_that_speaks_something_else_is_a_typed_error_quickly() {
    let cluster = RedisCluster::start(1).unwrap();
    let redis_url = cluster.urls().remove(0);
    bounded(async move {
        let urls = vec![
            format!("redis://127.0.0.1:{}", garbage_server()),
            format!("redis://127.0.0.1:{}", garbage_server()),
            redis_url.clone(),
        ];
        let redlock = Redlock::builder(urls)
            .ttl(Duration::from_secs(10))
            .retry(Retry::NONE)
            .build()
            .unwrap();
        let started = Instant::now();
        let error = redlock.lock("confused").await.unwrap_err();
        let took = started.elapsed();
        assert!(took < QUICK, "took {took:?}");
        assert!(error.is_no_quorum(), "{error}");
        let report = error.report().expect("no-quorum errors carry the report");
        // Both are needed to rule the quorum out, so both are in the report.
        for node in [0, 1] {
            assert!(
                failed_with(status(report, node), NodeErrorKind::Protocol),
                "{report}"
            );
        }
        assert_no_keys(&redlock, &[redis_url]).await;
    })
    .await;
}

#[tokio::test]
async fn a_port_that_never_answers_is_a_typed_error_within_the_deadline() {
    let cluster = RedisCluster::start(1).unwrap();
    let redis_url = cluster.urls().remove(0);
    // The kernel completes the handshakes of a listener that never accepts, so the client
    // connects and then hears nothing.
    let silent: Vec<TcpListener> = (0..2)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap())
        .collect();
    bounded(async move {
        let mut urls: Vec<String> = silent
            .iter()
            .map(|l| format!("redis://127.0.0.1:{}", l.local_addr().unwrap().port()))
            .collect();
        urls.push(redis_url.clone());
        let redlock = Redlock::builder(urls)
            .ttl(Duration::from_secs(10))
            .retry(Retry::NONE)
            .build()
            .unwrap();
        let deadline = redlock.config().request_timeout();
        let started = Instant::now();
        let error = redlock.lock("silence").await.unwrap_err();
        let took = started.elapsed();
        assert!(took < QUICK, "took {took:?}");
        assert!(took >= deadline, "gave up before the deadline: {took:?}");
        assert!(error.is_no_quorum(), "{error}");
        let report = error.report().expect("no-quorum errors carry the report");
        for node in [0, 1] {
            assert_eq!(status(report, node), &NodeStatus::TimedOut, "{report}");
        }
        assert_no_keys(&redlock, &[redis_url]).await;
        drop(silent);
    })
    .await;
}

/// One node speaking garbage is just one failed vote: the others still lock and release.
#[tokio::test]
async fn one_garbage_node_does_not_stop_the_others() {
    let cluster = RedisCluster::start(2).unwrap();
    let redis_urls = cluster.urls();
    bounded(async move {
        let mut urls = redis_urls.clone();
        urls.insert(1, format!("redis://127.0.0.1:{}", garbage_server()));
        let redlock = Redlock::new(urls).unwrap();
        let lock = redlock.try_lock("mixed").await.unwrap();
        assert_eq!(lock.report().granted_count(), 2, "{}", lock.report());
        let released = lock.release().await;
        // The release is decided by the two real nodes; the garbage one may not be heard yet.
        let garbage = status(&released.report, 1);
        assert!(
            failed_with(garbage, NodeErrorKind::Protocol) || garbage == &NodeStatus::NoAnswer,
            "{}",
            released.report
        );
        assert_eq!(released.report.granted_count(), 2, "{}", released.report);
        assert_no_keys(&redlock, &redis_urls).await;
    })
    .await;
}
