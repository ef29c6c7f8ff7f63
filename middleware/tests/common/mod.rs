//! Shared pieces of the layer tests: real Redis nodes with a direct connection to inspect them,
//! a response body the test feeds by hand, a handler that reports the lock it saw, and a time
//! bound for every test.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame};
use quorumlock::testing::RedisCluster;
use quorumlock::{Redlock, Retry};
use quorumlock_tower::HeldLock;
use tokio::sync::mpsc;

/// Upper bound for one test body: only a hang trips it, even on a loaded machine.
pub const TEST_BOUND: Duration = Duration::from_secs(40);

/// Runs a test body, failing the test instead of hanging it.
pub async fn bounded<F: Future>(body: F) -> F::Output {
    match tokio::time::timeout(TEST_BOUND, body).await {
        Ok(output) => output,
        Err(_) => panic!("test body did not finish within {TEST_BOUND:?}"),
    }
}

/// Awaits an event that must come soon (a release, a loss), failing the test if it does not.
pub async fn soon<F: Future>(what: &str, event: F) -> F::Output {
    match tokio::time::timeout(Duration::from_secs(10), event).await {
        Ok(output) => output,
        Err(_) => panic!("{what} did not happen within 10 s"),
    }
}

/// Three real redis-server processes and a client for them.
pub struct Nodes {
    pub cluster: RedisCluster,
    pub redlock: Redlock,
}

impl Nodes {
    /// Starts three nodes; locks live `ttl` and waiting requests retry every 20 ms or so.
    pub fn start(ttl: Duration) -> Self {
        let cluster = RedisCluster::start(3).expect("redis-server must be installed");
        let redlock = Redlock::builder(cluster.urls())
            .ttl(ttl)
            .retry(Retry::new(
                10,
                Duration::from_millis(20),
                Duration::from_millis(10),
            ))
            .build()
            .unwrap();
        Self { cluster, redlock }
    }

    /// What each node stores under `key`, straight from Redis.
    pub async fn values(&self, key: &str) -> Vec<Option<String>> {
        let mut values = Vec::new();
        for url in self.cluster.urls() {
            values.push(query(&url, redis::cmd("GET").arg(key)).await);
        }
        values
    }

    /// Asserts that a quorum of nodes holds `key` for `token` and no node holds it for anyone
    /// else. Not all nodes: a round is decided by its quorum, and the last node's answer may
    /// still be on its way (or it may have missed its deadline on a loaded machine).
    pub async fn assert_held(&self, key: &str, token: &str) {
        let values = self.values(key).await;
        let ours = values.iter().flatten().filter(|v| *v == token).count();
        let others = values.iter().flatten().filter(|v| *v != token).count();
        assert!(
            ours > self.cluster.len() / 2 && others == 0,
            "key {key} not held for {token}: {values:?}"
        );
    }

    /// Asserts that `key` is gone: at once from a quorum of nodes (a release round is decided
    /// by its quorum, so a new lock can be taken), and from every node once the client's
    /// background work (the slower nodes of a release) is done.
    pub async fn assert_free(&self, key: &str) {
        let values = self.values(key).await;
        let free = values.iter().filter(|v| v.is_none()).count();
        assert!(
            free > self.cluster.len() / 2,
            "key {key} still set on a quorum: {values:?}"
        );
        self.redlock.flush().await;
        let expected = vec![None; self.cluster.len()];
        assert_eq!(self.values(key).await, expected, "key {key} still set");
    }

    /// Deletes `key` on every node behind the client's back.
    pub async fn delete(&self, key: &str) {
        for url in self.cluster.urls() {
            let _: i64 = query(&url, redis::cmd("DEL").arg(key)).await;
        }
    }

    /// Sets `key` on node `index` for another owner, expiring after `px` milliseconds.
    pub async fn set_on(&self, index: usize, key: &str, owner: &str, px: u64) {
        let url = &self.cluster.urls()[index];
        let _: () = query(url, redis::cmd("SET").arg(key).arg(owner).arg("PX").arg(px)).await;
    }

    /// Remaining TTL of `key` on every node, in milliseconds.
    pub async fn pttl(&self, key: &str) -> Vec<i64> {
        let mut left = Vec::new();
        for url in self.cluster.urls() {
            left.push(query(&url, redis::cmd("PTTL").arg(key)).await);
        }
        left
    }
}

async fn query<T: redis::FromRedisValue>(url: &str, cmd: &redis::Cmd) -> T {
    let client = redis::Client::open(url).unwrap();
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("inspection connection to {url}: {e}"));
    cmd.query_async(&mut connection)
        .await
        .unwrap_or_else(|e| panic!("inspection command on {url}: {e}"))
}

/// A response body that yields what the test sends, and ends when the sender is dropped.
pub struct ChannelBody {
    frames: mpsc::UnboundedReceiver<Result<Bytes, io::Error>>,
}

/// Feeds a [`ChannelBody`].
pub type BodySender = mpsc::UnboundedSender<Result<Bytes, io::Error>>;

/// A body the test controls frame by frame.
pub fn channel_body() -> (BodySender, ChannelBody) {
    let (sender, frames) = mpsc::unbounded_channel();
    (sender, ChannelBody { frames })
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        self.frames
            .poll_recv(cx)
            .map(|frame| frame.map(|result| result.map(Frame::data)))
    }
}

/// What a [`probe`] handler reports: the lock each call saw, and how many calls there were.
pub struct Probe {
    pub seen: mpsc::UnboundedReceiver<Option<HeldLock>>,
    pub calls: Arc<AtomicUsize>,
}

impl Probe {
    /// The lock the next call saw.
    pub async fn next_lock(&mut self) -> Option<HeldLock> {
        soon("a handler call", self.seen.recv())
            .await
            .expect("the handler is gone")
    }

    /// How many times the handler ran.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

/// A handler service as the layer tests need it.
pub trait Handler<B>:
    tower::Service<Request<()>, Response = Response<B>, Error = Infallible, Future: Send> + Clone + Send
{
}

impl<T, B> Handler<B> for T where
    T: tower::Service<Request<()>, Response = Response<B>, Error = Infallible, Future: Send>
        + Clone
        + Send
{
}

/// A handler that reports the lock it saw, then answers with `respond(request)`.
pub fn probe<B, F>(respond: F) -> (impl Handler<B>, Probe)
where
    F: Fn(&Request<()>) -> Response<B> + Clone + Send + 'static,
    B: Send + 'static,
{
    let (report, seen) = mpsc::unbounded_channel();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let service = tower::service_fn(move |request: Request<()>| {
        counter.fetch_add(1, Ordering::SeqCst);
        let _ = report.send(request.extensions().get::<HeldLock>().cloned());
        let response = respond(&request);
        async move { Ok::<_, Infallible>(response) }
    });
    (service, Probe { seen, calls })
}

/// `GET uri` with an empty body.
pub fn get(uri: &str) -> Request<()> {
    Request::builder().uri(uri).body(()).unwrap()
}

/// A `probe` responder that answers the first call with `response`; a second call fails the
/// test.
pub fn respond_once<B: Send + 'static>(
    response: Response<B>,
) -> impl Fn(&Request<()>) -> Response<B> + Clone + Send + 'static {
    let slot = Arc::new(std::sync::Mutex::new(Some(response)));
    move |_| {
        slot.lock()
            .unwrap()
            .take()
            .expect("the handler ran more than once")
    }
}

/// What the node at `url` stores under `key`.
pub async fn get_on(url: &str, key: &str) -> Option<String> {
    query(url, redis::cmd("GET").arg(key)).await
}
