//! The example server as real processes on loopback, driven by a real HTTP client: two app
//! instances sharing three real redis-server nodes.

// One test checks that two waiting requests ran one after the other, which needs the clock.
#![allow(clippy::disallowed_methods)]

use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use hyper::StatusCode;
use quorumlock::testing::RedisCluster;
use quorumlock_examples::app::NAMESPACE;
use quorumlock_examples::http_client::{HttpClient, Reply};
use quorumlock_examples::server_process::ServerProcess;

const SERVER: &str = env!("CARGO_BIN_EXE_lock-server");

/// Lock TTL of the servers under test: long, so that only a release (never an expiry) can free
/// a resource within a test.
const TTL_MS: &str = "30000";

/// Upper bound for one test body; only a hang trips it.
async fn bounded<F: Future>(body: F) -> F::Output {
    match tokio::time::timeout(Duration::from_secs(60), body).await {
        Ok(output) => output,
        Err(_) => panic!("test body did not finish within 60 s"),
    }
}

/// Three nodes and two app instances, A and B, using them.
struct Setup {
    cluster: RedisCluster,
    a: ServerProcess,
    b: ServerProcess,
    client: HttpClient,
}

impl Setup {
    fn start() -> Self {
        let cluster = RedisCluster::start(3).expect("redis-server must be installed");
        let args = [
            "--ttl-ms",
            TTL_MS,
            "--critical-ms",
            "1500",
            "--wait-ms",
            "10000",
        ];
        let start = |name| {
            ServerProcess::start(Path::new(SERVER), name, &cluster.urls(), &args)
                .unwrap_or_else(|e| panic!("instance {name}: {e}"))
        };
        let (a, b) = (start("A"), start("B"));
        Self {
            cluster,
            a,
            b,
            client: HttpClient::new(),
        }
    }

    async fn get(&self, server: &ServerProcess, path: &str) -> Reply {
        self.client
            .get(&server.url(path))
            .await
            .unwrap_or_else(|e| panic!("GET {path} on {}: {e}", server.name()))
    }

    /// What each node stores under `key`.
    async fn values(&self, key: &str) -> Vec<Option<String>> {
        let mut values = Vec::new();
        for url in self.cluster.urls() {
            let client = redis::Client::open(url.as_str()).unwrap();
            let mut connection = client.get_multiplexed_async_connection().await.unwrap();
            values.push(
                redis::cmd("GET")
                    .arg(key)
                    .query_async(&mut connection)
                    .await
                    .unwrap(),
            );
        }
        values
    }

    /// Asserts that a quorum of nodes holds `key` for one and the same token.
    async fn assert_held(&self, key: &str) {
        let values = self.values(key).await;
        let first = values.iter().flatten().next().cloned();
        let holders = values
            .iter()
            .filter(|v| v.is_some() && **v == first)
            .count();
        assert!(holders >= 2, "{key} not held by a quorum: {values:?}");
    }

    /// Asserts that no node has `key`.
    async fn assert_free(&self, key: &str) {
        assert_eq!(self.values(key).await, vec![None; 3], "{key} still set");
    }
}

fn assert_contended(reply: &Reply) {
    assert_eq!(reply.status, StatusCode::LOCKED, "{reply:?}");
    assert_eq!(reply.retry_after.as_deref(), Some("30"), "{reply:?}");
    assert!(
        reply
            .body
            .starts_with("lock already taken, locked nodes: ["),
        "{reply:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_global_lock_is_exclusive_across_instances_and_released_after_use() {
    let setup = Setup::start();
    bounded(async {
        let path = "/try-to-acquire-global-lock";
        let (from_a, from_b) = tokio::join!(setup.get(&setup.a, path), setup.get(&setup.b, path));
        let (granted, refused) = if from_a.status == StatusCode::OK {
            (from_a, from_b)
        } else {
            (from_b, from_a)
        };
        assert_eq!(granted.status, StatusCode::OK, "{granted:?}");
        assert_eq!(granted.body, "lock acquired\n");
        assert_contended(&refused);

        // Unlike the service this one is modelled on, the lock does not outlive the request:
        // it is gone by the time the client has the whole answer.
        setup.assert_free(&format!("{NAMESPACE}global")).await;
        let again = setup
            .get(&setup.b, "/try-to-acquire-global-lock?ms=0")
            .await;
        assert_eq!(again.status, StatusCode::OK, "{again:?}");
    })
    .await;
    // SIGTERM shuts an instance down cleanly.
    let Setup { a, b, .. } = setup;
    assert!(a.stop().unwrap().success());
    assert!(b.stop().unwrap().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_per_resource_proceeds_across_both_instances() {
    let setup = Setup::start();
    bounded(async {
        let (a, b) = (&setup.a, &setup.b);
        let invoice = "/lock?resource_id=invoice-1&ms=1500";
        let report = "/lock?resource_id=report-9&ms=1500";
        let (i1, i2, i3, i4, r1, r2) = tokio::join!(
            setup.get(a, invoice),
            setup.get(b, invoice),
            setup.get(a, invoice),
            setup.get(b, invoice),
            setup.get(a, report),
            setup.get(b, report),
        );
        for (resource, replies) in [
            ("invoice-1", vec![i1, i2, i3, i4]),
            ("report-9", vec![r1, r2]),
        ] {
            let granted: Vec<&Reply> = replies
                .iter()
                .filter(|r| r.status == StatusCode::OK)
                .collect();
            assert_eq!(granted.len(), 1, "{resource}: {replies:?}");
            assert!(
                granted[0].body.starts_with(&format!(
                    "{NAMESPACE}{resource}: critical operation done in 1500 ms by instance "
                )),
                "{granted:?}"
            );
            for refused in replies.iter().filter(|r| r.status != StatusCode::OK) {
                assert_contended(refused);
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_response_keeps_its_key_until_the_last_byte() {
    let setup = Setup::start();
    bounded(async {
        let key = format!("{NAMESPACE}export");
        let mut stream = setup
            .client
            .open(
                &setup
                    .a
                    .url("/stream?resource_id=export&chunks=3&interval_ms=400"),
            )
            .await
            .unwrap();
        assert_eq!(stream.status, StatusCode::OK);
        let mut text = String::new();
        // Every line but the last: the key is in Redis and the other instance is refused.
        while text.matches('\n').count() < 2 {
            text.push_str(
                &stream
                    .next_chunk()
                    .await
                    .unwrap()
                    .expect("stream ended early"),
            );
            setup.assert_held(&key).await;
        }
        assert_contended(&setup.get(&setup.b, "/lock?resource_id=export&ms=0").await);
        while let Some(chunk) = stream.next_chunk().await.unwrap() {
            text.push_str(&chunk);
        }
        assert!(text.contains("chunk 3/3 from instance A"), "{text}");
        assert!(
            text.ends_with("the lock is released as this response ends\n"),
            "{text}"
        );

        // The key is gone by the time the client has seen the end of the stream.
        setup.assert_free(&key).await;
        let after = setup.get(&setup.b, "/lock?resource_id=export&ms=0").await;
        assert_eq!(after.status, StatusCode::OK, "{after:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_request_gets_the_resource_when_the_holder_is_done() {
    let setup = Setup::start();
    bounded(async {
        let started = Instant::now();
        let setup = &setup;
        let timed = |server| async move {
            let reply = setup.get(server, "/wait?resource_id=queue&ms=700").await;
            (reply, started.elapsed())
        };
        let ((first, first_took), (second, second_took)) =
            tokio::join!(timed(&setup.a), timed(&setup.b));
        assert_eq!(first.status, StatusCode::OK, "{first:?}");
        assert_eq!(second.status, StatusCode::OK, "{second:?}");
        // Run one after the other, the later one cannot be done before two operations' time.
        let later = first_took.max(second_took);
        assert!(
            later >= Duration::from_millis(1400),
            "ran side by side: {later:?}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_400_and_a_lost_quorum_gets_503() {
    let setup = Setup::start();
    bounded(async {
        for (path, message) in [
            (
                "/lock",
                "resource_id is required, e.g. /lock?resource_id=42\n",
            ),
            (
                "/lock?resource_id=a&resource_id=b",
                "invalid lock key: query parameter `resource_id` is given more than once\n",
            ),
            (
                "/lock?resource_id=%FF",
                "invalid lock key: query parameter `resource_id` is not UTF-8 once percent-decoded\n",
            ),
            (
                "/lock?resource_id=x&ms=forever",
                "ms must be a whole number from 0 to 60000\n",
            ),
        ] {
            let reply = setup.get(&setup.a, path).await;
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{path}");
            assert_eq!(reply.body, message, "{path}");
        }

        setup.cluster.kill(0).unwrap();
        setup.cluster.kill(2).unwrap();
        for path in ["/lock?resource_id=x&ms=0", "/try-to-acquire-global-lock?ms=0"] {
            let reply = setup.get(&setup.b, path).await;
            assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{reply:?}");
            assert_eq!(reply.retry_after.as_deref(), Some("2"), "{reply:?}");
            assert!(
                reply.body.starts_with("lock service unavailable: "),
                "{reply:?}"
            );
        }
    })
    .await;
}
