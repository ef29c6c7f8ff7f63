//! The native driver: tokio + redis-rs (feature `tokio`, on by default).

mod background;
mod clock;
mod driver;
mod error;
mod keep_alive;
mod lock;
mod node;
mod release_listener;
mod release_signals;
mod request;
mod with_lock;

use std::sync::Arc;
use std::time::Duration;

use redis::io::tcp::TcpSettings;
use redis::{AsyncConnectionConfig, Client, IntoConnectionInfo};
use tracing::Instrument;

/// Runs an operation inside its span, or bare when no subscriber wants the span: the
/// instrumented wrapper would enter and leave the span on every poll for nothing.
///
/// Not an `async fn`: that would keep `operation` and the future awaiting it side by side,
/// twice the size; the `Either` holds one or the other.
fn traced<F: std::future::Future>(
    span: tracing::Span,
    operation: F,
) -> futures_util::future::Either<F, tracing::instrument::Instrumented<F>> {
    if span.is_disabled() {
        futures_util::future::Either::Left(operation)
    } else {
        futures_util::future::Either::Right(operation.instrument(span))
    }
}

use crate::proto::{
    Acquire, Config, Extend, ExtendError, Lease, Release, Released, Retry, Settings, Token,
};

pub use error::{BuildError, ConnectError, Error};
pub use keep_alive::{KeptLock, LockStatus};
pub use lock::Lock;
pub use request::LockRequest;
pub use with_lock::LockContext;

use background::Background;
use node::{Node, NodeSet};
use release_signals::ReleaseSignals;

/// A Redlock client over N independent Redis primaries. Cheap to clone: clones share the
/// node connections.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// let redlock = quorumlock::Redlock::builder([
///     "redis://127.0.0.1:7001",
///     "redis://127.0.0.1:7002",
///     "redis://127.0.0.1:7003",
/// ])
/// .ttl(Duration::from_secs(10))
/// .build()?;
///
/// let lock = redlock.lock("orders:42").await?;
/// // … critical section, valid until lock.valid_until() …
/// lock.release().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Redlock {
    shared: Arc<Shared>,
}

struct Shared {
    nodes: Arc<NodeSet>,
    config: Config,
    release_signals: Arc<ReleaseSignals>,
}

impl std::fmt::Debug for Redlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redlock")
            .field("nodes", &self.shared.nodes.nodes.len())
            .field("config", &self.shared.config)
            .finish()
    }
}

/// Builds a [`Redlock`]; nothing connects until the first lock.
#[derive(Debug, Clone)]
#[must_use]
pub struct RedlockBuilder {
    urls: Vec<String>,
    settings: Settings,
    connect_timeout: Option<Duration>,
}

impl RedlockBuilder {
    /// Replaces all settings at once.
    pub fn settings(mut self, settings: Settings) -> Self {
        self.settings = settings;
        self
    }

    /// Key lifetime for every lock (default 10 s).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.settings.ttl = ttl;
        self
    }

    /// Retry policy of [`Redlock::lock`] (default: 10 retries, 200 ms ± 100 ms apart).
    pub fn retry(mut self, retry: Retry) -> Self {
        self.settings.retry = retry;
        self
    }

    /// Share of the TTL set aside for clock drift (default 0.01).
    pub fn drift_factor(mut self, factor: f64) -> Self {
        self.settings.drift_factor = factor;
        self
    }

    /// Minimum validity for a lock to count as acquired (default 5 ms).
    pub fn min_validity(mut self, min_validity: Duration) -> Self {
        self.settings.min_validity = min_validity;
        self
    }

    /// Per-node request deadline (default: derived from the TTL).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.settings.request_timeout = Some(timeout);
        self
    }

    /// Caps the number of extensions of one lock.
    pub fn max_extensions(mut self, max: u32) -> Self {
        self.settings.max_extensions = Some(max);
        self
    }

    /// Caps the total time one lock may be held through extensions.
    pub fn max_hold(mut self, max: Duration) -> Self {
        self.settings.max_hold = Some(max);
        self
    }

    /// Longest wait for a TCP (and TLS) connection to a node (default: 1 s, or the request
    /// timeout if that is longer). A request never waits past its own deadline either way.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// Checks the URLs and settings. Does not connect: a node that is down now costs failed
    /// votes later, not a failed client.
    pub fn build(self) -> Result<Redlock, BuildError> {
        let config = Config::new(self.urls.len(), self.settings).map_err(BuildError::Config)?;
        let connect_timeout = self
            .connect_timeout
            .unwrap_or(Duration::from_secs(1))
            .max(config.request_timeout());
        // The core's per-request deadline is the one that counts, and the driver drops a
        // request the core gave up on. A response timeout in redis-rs would only add a timer
        // to every command, so none is set.
        let connection_config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            .set_response_timeout(None);
        let clients = self
            .urls
            .iter()
            .enumerate()
            .map(|(index, url)| {
                if url.starts_with("rediss://") && !cfg!(feature = "tls") {
                    return Err(BuildError::TlsNotEnabled { index });
                }
                let invalid = |error: redis::RedisError| BuildError::InvalidUrl {
                    index,
                    reason: error.to_string(),
                };
                // Nagle's algorithm would hold a request back while an earlier one to the same
                // node is unacknowledged: a release sent to the node still answering the lock
                // round, or the next lock after it. redis-rs leaves it on by default.
                let info = url
                    .as_str()
                    .into_connection_info()
                    .map_err(invalid)?
                    .set_tcp_settings(TcpSettings::default().set_nodelay(true));
                Client::open(info).map_err(invalid)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let background = Arc::new(Background::default());
        let nodes = Arc::new(NodeSet::new(
            clients
                .iter()
                .map(|client| {
                    Node::new(
                        client.clone(),
                        connection_config.clone(),
                        background.clone(),
                    )
                })
                .collect(),
            background,
        ));
        let quorum = config.quorum();
        Ok(Redlock {
            shared: Arc::new(Shared {
                nodes,
                config,
                release_signals: Arc::new(ReleaseSignals::new(clients, quorum, connect_timeout)),
            }),
        })
    }
}

impl Redlock {
    /// Starts building a client for the given nodes (`redis://[user:password@]host:port[/db]`,
    /// or `rediss://` for TLS with the `tls` feature).
    pub fn builder<I>(urls: I) -> RedlockBuilder
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        RedlockBuilder {
            urls: urls.into_iter().map(Into::into).collect(),
            settings: Settings::default(),
            connect_timeout: None,
        }
    }

    /// A client with default settings.
    pub fn new<I>(urls: I) -> Result<Self, BuildError>
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        Self::builder(urls).build()
    }

    /// The validated settings.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// Connects to every node now instead of on first use, all at once, each attempt bounded
    /// by the connection timeout; a node already connected costs nothing. Call it at start-up
    /// to find a wrong URL, password or certificate before the first lock, and so that the
    /// first lock does not carry the connection set-up (a TLS handshake) inside its request
    /// deadline. The error lists the nodes that failed and says whether the others still make
    /// a quorum; those nodes are tried again on their next request, as always.
    pub async fn connect(&self) -> Result<(), ConnectError> {
        let attempts = self.shared.nodes.nodes.iter().map(Node::connect);
        let failures: Vec<_> = futures_util::future::join_all(attempts)
            .await
            .into_iter()
            .enumerate()
            .filter_map(|(node, outcome)| outcome.err().map(|error| (node, error)))
            .collect();
        if failures.is_empty() {
            return Ok(());
        }
        Err(ConnectError {
            failures,
            nodes: self.shared.config.nodes(),
            quorum: self.shared.config.quorum(),
        })
    }

    /// Acquires `resource`, retrying per the configured policy. Await the result, or chain
    /// per-call options first: `redlock.lock("r").ttl(Duration::from_secs(5)).await`.
    ///
    /// Cancel-safe: dropped before it resolves (a timeout around it, a `select!`), the request
    /// stops retrying and releases on every node whatever its attempt may have set, in the
    /// background ([`flush`](Self::flush) waits for it).
    pub fn lock(&self, resource: impl Into<String>) -> LockRequest {
        LockRequest::new(self.clone(), vec![resource.into()])
    }

    /// Acquires `resource` with a single attempt: fails at once if it is taken.
    pub fn try_lock(&self, resource: impl Into<String>) -> LockRequest {
        self.lock(resource).retry(Retry::NONE)
    }

    /// Acquires several resources as one lock: on each node, all of them or none.
    pub fn lock_multi<I>(&self, resources: I) -> LockRequest
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        LockRequest::new(
            self.clone(),
            resources.into_iter().map(Into::into).collect(),
        )
    }

    /// Runs `f` while holding a lock on `resources`, extending it ahead of expiry. If the lock
    /// is lost, `f` is cancelled and [`Error::Lost`] returned. The lock is released at the end
    /// whatever happens. See [`LockRequest::run`] for per-call options.
    pub async fn with_lock<I, F, Fut, T>(&self, resources: I, f: F) -> Result<T, Error>
    where
        I: IntoIterator,
        I::Item: Into<String>,
        F: FnOnce(LockContext) -> Fut,
        Fut: std::future::Future<Output = T>,
    {
        self.lock_multi(resources).run(f).await
    }

    /// Releases keys held under `token`, for instance a lock taken by another process that
    /// handed its token over. Idempotent.
    pub async fn release_token(&self, resources: &[String], token: &Token) -> Released {
        let release = Release::new(&self.shared.config, resources, token, clock::now());
        let released = driver::drive(&self.shared.nodes, release).await;
        self.shared
            .release_signals
            .released(resources, token.as_str());
        released
    }

    /// Waits until the work this client left running in the background is done: the slower
    /// nodes of a release (which returns once a quorum has answered), and the releases of
    /// dropped [`Lock`] guards and of stopped [`KeptLock`]s. Then waits until each connected
    /// node has processed every request already sent to it, for at most the request timeout
    /// per node.
    ///
    /// Call it before a process exits, so that no node is left holding keys until their TTL,
    /// or in a test, before looking at the nodes' keys. Background work started while it
    /// waits may or may not be waited for.
    pub async fn flush(&self) {
        self.shared
            .nodes
            .flush(self.shared.config.request_timeout())
            .await;
    }

    /// Counts the caller's own work as background work that [`flush`](Self::flush) waits for,
    /// until the guard is dropped.
    pub(crate) fn background_work(&self) -> background::Done {
        self.shared.nodes.background.enter()
    }

    /// Spawns `task` on `runtime` as this client's background work: [`flush`](Self::flush)
    /// waits for it, counting from this call on (not from the task's first poll, which may come
    /// after a flush has started).
    ///
    /// For code built on the client that finishes lock work in a task of its own: the Tower
    /// layer releases the lock of a request whose response future was dropped this way.
    pub fn spawn_background<F>(&self, runtime: &tokio::runtime::Handle, task: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.shared.nodes.background.spawn(runtime, task);
    }

    /// Lets waiters of this client know that `lease` holds its resources (see
    /// [`ReleaseSignals::held`]).
    fn note_held(&self, lease: &Lease) {
        self.shared.release_signals.held(
            lease.resources(),
            lease.token().as_str(),
            lease.valid_until(),
        );
    }

    async fn acquire(&self, config: &Config, resources: Vec<String>) -> Result<Lease, Error> {
        let (token, seed) = clock::token_and_seed().map_err(|e| Error::Entropy(e.to_string()))?;
        // Boxed: the machine is large, and every future that holds it across an await would
        // carry a copy of it.
        let acquire = Box::new(
            Acquire::new(config, resources, token, seed, clock::now())
                .map_err(Error::InvalidResources)?,
        );
        let span = tracing::debug_span!(
            "quorumlock.acquire",
            resources = ?acquire.resources(),
            ttl_ms = config.ttl().as_millis() as u64,
        );
        traced(span, async {
            // Waiters of this client hear of its releases at once (see ReleaseSignals).
            let wakeups = (config.retry().retries > 0)
                .then(|| (&self.shared.release_signals, acquire.shared_resources()));
            let (outcome, waited) =
                driver::drive_with_wakeups(&self.shared.nodes, acquire, wakeups).await;
            match &outcome {
                Ok(lease) => {
                    // While this acquire still counts as a waiter: see drive_with_wakeups.
                    self.note_held(lease);
                    drop(waited);
                    tracing::debug!(
                    validity_ms = lease.validity().as_millis() as u64,
                    report = %lease.report(),
                    "lock acquired"
                    )
                }
                Err(error) => {
                    tracing::debug!(%error, report = %error.report(), "lock not acquired")
                }
            }
            outcome.map_err(Error::Acquire)
        })
        .await
    }

    async fn extend_lease(&self, config: &Config, lease: &Lease) -> Result<Lease, ExtendError> {
        let extend = Extend::new(config, lease, clock::seed(), clock::now());
        let span = tracing::debug_span!("quorumlock.extend", resources = ?lease.resources());
        traced(span, async {
            let outcome = driver::drive(&self.shared.nodes, extend).await;
            match &outcome {
                Ok(lease) => {
                    self.note_held(lease);
                    tracing::debug!(report = %lease.report(), "lock extended")
                }
                Err(error) => tracing::debug!(%error, "lock not extended"),
            }
            outcome
        })
        .await
    }

    async fn release_lease(&self, lease: &Lease) -> Released {
        let release = Box::new(Release::for_lease(&self.shared.config, lease, clock::now()));
        let span = tracing::debug_span!("quorumlock.release", resources = ?lease.resources());
        traced(span, async {
            let released = driver::drive(&self.shared.nodes, release).await;
            self.shared
                .release_signals
                .released(lease.resources(), lease.token().as_str());
            tracing::debug!(report = %released.report, "lock released");
            released
        })
        .await
    }
}
