//! The `tls` feature against real redis-server processes that accept only TLS: locking,
//! contention and release through `rediss://` URLs with full certificate verification, and the
//! mismatches (TLS client and plain node, plain client and TLS node, an untrusted certificate)
//! failing fast with typed errors.
//!
//! The client's builder takes URLs only, so it trusts what rustls' native certificate store
//! trusts. That store reads the `SSL_CERT_FILE` environment variable, which is how a deployment
//! with a private CA would trust it too; every test here goes through [`trusted_authority`],
//! which points that variable at the throwaway authority signing the test nodes.

#![cfg(feature = "tls")]
// Mismatched transports must fail within a bound, and checking that needs the clock.
#![allow(clippy::disallowed_methods)]

mod common;

use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{
    assert_held_where_granted, assert_no_keys, bounded, failed_with, get, keys, pttl, quick_retry,
    status,
};
use quorumlock::proto::{NodeErrorKind, NodeStatus};
use quorumlock::testing::{RedisCluster, TlsAuthority};
use quorumlock::{Error, Redlock};

/// The per-node request deadline of every client here. A node's first request includes the TLS
/// handshake, which in an unoptimised test build takes about 100 ms on an idle machine and over
/// a second on an overloaded one: far beyond the 200 ms a 10 s TTL gets by default. A node that
/// timed out would muddle contention and refusal.
const TLS_REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// Far above one lock attempt that fails on every node (a refused handshake is answered in
/// milliseconds, a silent server is given up on at [`TLS_REQUEST_TIMEOUT`]), far below the 40 s
/// test bound: a client that hung on a transport mismatch until some longer timeout fails this.
const MISMATCH_BOUND: Duration = Duration::from_secs(5);

/// The authority every trusted TLS node of this test binary is signed by, trusted by every
/// client in the process (the client under test and the inspection connections alike).
fn trusted_authority() -> &'static TlsAuthority {
    static TRUSTED: OnceLock<TlsAuthority> = OnceLock::new();
    TRUSTED.get_or_init(|| {
        let authority = TlsAuthority::new().expect("generating the test CA");
        // Named after the process, so that concurrent runs of this binary do not trust each
        // other's authority. A few hundred bytes per run, in the directory cargo keeps for
        // test scratch files.
        let path = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("client-tls-ca-{}.pem", std::process::id()));
        std::fs::write(&path, authority.cert_pem()).expect("writing the test CA certificate");
        // Set once, before any TLS connection of this process exists: rustls' native store
        // reads the variable on every new connection. Every test calls this before it starts
        // anything, and std serialises its own reads of the environment with this write, so
        // nothing reads the environment while it changes.
        std::env::set_var("SSL_CERT_FILE", &path);
        authority
    })
}

/// Three TLS-only nodes signed by the trusted authority.
fn trusted_tls_cluster() -> RedisCluster {
    RedisCluster::start_tls(3, trusted_authority()).expect("starting TLS nodes")
}

/// A client for `urls` with the settings every test here uses.
fn client(urls: &[String]) -> Redlock {
    Redlock::builder(urls.to_vec())
        .request_timeout(TLS_REQUEST_TIMEOUT)
        .retry(quick_retry(2))
        .build()
        .expect("the URLs are valid")
}

/// `urls` with their scheme replaced by `scheme`.
fn with_scheme(urls: &[String], scheme: &str) -> Vec<String> {
    urls.iter()
        .map(|url| {
            let (_, rest) = url.split_once("://").expect("a URL with a scheme");
            format!("{scheme}://{rest}")
        })
        .collect()
}

/// How many nodes in `urls` store `token` under `key` with at least `min_ttl` left.
async fn holders(urls: &[String], key: &str, token: &str, min_ttl: Duration) -> usize {
    let mut count = 0;
    for url in urls {
        if get(url, key).await.as_deref() == Some(token)
            && u128::try_from(pttl(url, key).await).unwrap_or(0) >= min_ttl.as_millis()
        {
            count += 1;
        }
    }
    count
}

/// How a node whose transport does not match the client's may end a round.
#[derive(Clone, Copy, PartialEq)]
enum Mismatch {
    /// The server hangs up or the handshake fails: an I/O error.
    Refused,
    /// The server may also say nothing at all, so the request deadline ends the wait.
    RefusedOrSilent,
}

/// Tries to lock with a client for `urls`, expecting no quorum within [`MISMATCH_BOUND`]: a
/// majority of the nodes failed as `mismatch` allows, and the others failed so too or had not
/// answered when the round was decided. Returns the error for further checks.
async fn assert_lock_fails_fast(urls: &[String], mismatch: Mismatch) -> Error {
    let redlock = client(urls);
    let started = Instant::now();
    // One attempt: a retry would only repeat the failure, and the bound is about one.
    let error = redlock.try_lock("mismatched").await.unwrap_err();
    let took = started.elapsed();
    assert!(took < MISMATCH_BOUND, "failing took {took:?}: {error}");
    assert!(error.is_no_quorum(), "{error}");
    assert!(!error.is_contended(), "{error}");
    assert!(matches!(error, Error::Acquire(_)), "{error:?}");
    let report = error.report().expect("no-quorum errors carry the report");
    assert_eq!(report.nodes().len(), urls.len(), "{report}");
    let mut failures = 0;
    for node in 0..urls.len() {
        let status = status(report, node);
        let silent = *status == NodeStatus::TimedOut && mismatch == Mismatch::RefusedOrSilent;
        if failed_with(status, NodeErrorKind::Io) || silent {
            failures += 1;
        } else {
            assert_eq!(*status, NodeStatus::NoAnswer, "node {node}: {report}");
        }
    }
    assert!(failures > urls.len() / 2, "{report}");
    // A release of what the failed attempts might have set must not hang either.
    let flushed = Instant::now();
    redlock.flush().await;
    assert!(flushed.elapsed() < MISMATCH_BOUND, "flush hung");
    error
}

#[tokio::test]
async fn lock_contend_and_release_over_tls() {
    let cluster = trusted_tls_cluster();
    let urls = cluster.urls();
    assert!(
        urls.iter().all(|url| url.starts_with("rediss://")),
        "{urls:?}"
    );
    bounded(async move {
        let holder = client(&urls);
        let contender = client(&urls);

        let lock = holder.lock("tls:orders:42").await.unwrap();
        assert_held_where_granted(&urls, lock.report(), "tls:orders:42", lock.token().as_str())
            .await;

        let taken = contender.try_lock("tls:orders:42").await.unwrap_err();
        assert!(taken.is_contended(), "{taken}");
        let retried = contender.lock("tls:orders:42").await.unwrap_err();
        assert!(retried.is_contended(), "{retried}");
        // The contender's attempts left the holder's keys alone.
        assert_held_where_granted(&urls, lock.report(), "tls:orders:42", lock.token().as_str())
            .await;

        let released = lock.release().await;
        assert!(released.is_clean(), "{}", released.report);
        let second = contender.lock("tls:orders:42").await.unwrap();
        assert_held_where_granted(
            &urls,
            second.report(),
            "tls:orders:42",
            second.token().as_str(),
        )
        .await;
        assert!(second.release().await.is_clean());

        assert_no_keys(&holder, &urls).await;
        assert_no_keys(&contender, &urls).await;
    })
    .await;
}

#[tokio::test]
async fn with_lock_and_extension_over_tls() {
    let cluster = trusted_tls_cluster();
    let urls = cluster.urls();
    bounded(async move {
        let redlock = client(&urls);
        let mut lock = redlock.lock("tls:extended").await.unwrap();
        lock.extend(Duration::from_secs(30)).await.unwrap();
        // Above the default 10 s TTL: only the extension can have set it.
        let token = lock.token().as_str().to_owned();
        let extended = holders(&urls, "tls:extended", &token, Duration::from_secs(20)).await;
        assert!(
            extended >= 2,
            "{extended} of 3 nodes hold the extended lock"
        );
        assert!(lock.release().await.is_clean());

        let inner_urls = urls.clone();
        let seen = redlock
            .with_lock(["tls:job"], |context| async move {
                let token = context.token().as_str();
                holders(&inner_urls, "tls:job", token, Duration::ZERO).await
            })
            .await
            .unwrap();
        assert!(
            seen >= 2,
            "{seen} of 3 nodes held the lock inside with_lock"
        );
        assert_no_keys(&redlock, &urls).await;
    })
    .await;
}

#[tokio::test]
async fn tls_client_against_plain_nodes_fails_fast_with_a_typed_error() {
    // The authority is not needed here, but the trust store must be settled before any
    // TLS connection of this process.
    trusted_authority();
    let cluster = RedisCluster::start(3).unwrap();
    let plain_urls = cluster.urls();
    bounded(async move {
        // A plain server reads the TLS client hello as an inline command: it answers with an
        // error (which the client's TLS layer rejects) if the hello's random bytes happen to
        // hold a newline, and otherwise waits for the rest of the line, saying nothing.
        let rediss_urls = with_scheme(&plain_urls, "rediss");
        assert_lock_fails_fast(&rediss_urls, Mismatch::RefusedOrSilent).await;
        // The handshakes reached the servers as garbage commands, which set nothing.
        for url in &plain_urls {
            assert!(keys(url).await.is_empty(), "keys left on {url}");
        }
    })
    .await;
}

#[tokio::test]
async fn plain_client_against_tls_nodes_fails_fast_with_a_typed_error() {
    let cluster = trusted_tls_cluster();
    let tls_urls = cluster.urls();
    bounded(async move {
        // A TLS server fails the handshake on the first plain command and hangs up.
        let plain_urls = with_scheme(&tls_urls, "redis");
        assert_lock_fails_fast(&plain_urls, Mismatch::Refused).await;
        for url in &tls_urls {
            assert!(keys(url).await.is_empty(), "keys left on {url}");
        }
    })
    .await;
}

#[tokio::test]
async fn nodes_signed_by_an_untrusted_authority_are_refused() {
    trusted_authority();
    let stranger = TlsAuthority::new().unwrap();
    let cluster = RedisCluster::start_tls(3, &stranger).unwrap();
    let urls = cluster.urls();
    bounded(async move {
        let error = assert_lock_fails_fast(&urls, Mismatch::Refused).await;
        let report = error.report().unwrap().to_string();
        assert!(
            report.to_lowercase().contains("certificate"),
            "the report should name the certificate problem: {report}"
        );
        // Found at start-up already, by `connect`, on every node.
        let refused = client(&urls).connect().await.unwrap_err();
        assert_eq!(refused.failures().len(), 3, "{refused}");
        assert!(!refused.has_quorum(), "{refused}");
        assert!(
            refused.to_string().to_lowercase().contains("certificate"),
            "the error should name the certificate problem: {refused}"
        );
    })
    .await;
}

#[tokio::test]
async fn a_restarted_tls_node_is_reconnected() {
    let cluster = trusted_tls_cluster();
    let urls = cluster.urls();
    bounded(async move {
        let redlock = client(&urls);
        // Connect to every node first, so the restart breaks an established TLS session.
        redlock.connect().await.expect("every TLS node connects");

        cluster.restart(1).unwrap();
        assert!(cluster.node(1).is_tls());
        cluster.kill(2).unwrap();
        // Node 1 is now needed for the quorum: a single attempt must handshake with the new
        // server, which presents a certificate from the same trusted authority.
        let lock = redlock.try_lock("tls:after-restart").await.unwrap();
        assert_eq!(
            status(lock.report(), 1),
            &NodeStatus::Granted,
            "{}",
            lock.report()
        );
        assert_held_where_granted(
            &urls,
            lock.report(),
            "tls:after-restart",
            lock.token().as_str(),
        )
        .await;
        lock.release().await;
        assert_no_keys(&redlock, &urls[..2]).await;
    })
    .await;
}
