//! One Redis node: a lazily (re)connected multiplexed redis-rs connection.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Poll;
use std::time::Duration;

use futures_util::future::{FutureExt, Shared};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, Cmd, ErrorKind, RedisError, Value};

use crate::proto::{Arg, Command, NodeError, Reply};

use super::background::Background;

/// A node connects on first use and again after its connection breaks, so a node that is down
/// when the client is built, or restarts later, costs failed votes rather than a failed client.
///
/// Cheap to clone: clones share the connection.
#[derive(Clone)]
pub(crate) struct Node(Arc<NodeState>);

impl Node {
    pub(crate) fn new(
        client: Client,
        connection_config: AsyncConnectionConfig,
        background: Arc<Background>,
    ) -> Self {
        Self(Arc::new(NodeState::new(
            client,
            connection_config,
            background,
        )))
    }

    /// Sends one command and turns whatever happens into a [`Reply`]; never fails otherwise.
    /// The future holds its own handle on the node, so the driver can let it finish in the
    /// background after the round no longer needs its reply.
    pub(crate) fn send(&self, command: Arc<Cmd>) -> impl Future<Output = Reply> + Send + 'static {
        let state = Arc::clone(&self.0);
        async move { state.send(command).await }
    }

    /// Opens the node's connection unless it has one, waiting for the attempt (which the
    /// connection timeout bounds).
    pub(crate) async fn connect(&self) -> Result<(), NodeError> {
        match self.0.connection().await {
            Ok(_) => Ok(()),
            Err(failure) => Err(NodeError::from_reply(&failure)),
        }
    }

    /// Counts a request that got no reply in time; see [`NodeState::note_timeout`].
    pub(crate) fn note_timeout(&self) {
        self.0.note_timeout();
    }
}

/// A client's nodes, and the work it left running against them in the background.
pub(crate) struct NodeSet {
    pub(crate) nodes: Box<[Node]>,
    pub(crate) background: Arc<Background>,
}

impl NodeSet {
    pub(crate) fn new(nodes: Box<[Node]>, background: Arc<Background>) -> Self {
        Self { nodes, background }
    }

    /// Waits for the background work, for at most twice `timeout` (a request and its one
    /// resend) before abandoning what is left (requests to a node that stopped answering),
    /// then until every request already written to a connected node has been processed there
    /// (a node answers in order, so its answer to one `PING` sent now comes after them), each
    /// node for at most `timeout`.
    pub(crate) async fn flush(&self, timeout: Duration) {
        if tokio::time::timeout(timeout.saturating_mul(2), self.background.idle())
            .await
            .is_err()
        {
            self.background.abandon();
            self.background.idle().await;
        }
        let pings = self.nodes.iter().map(|node| node.0.ping(timeout));
        futures_util::future::join_all(pings).await;
    }
}

struct NodeState {
    client: Client,
    connection_config: AsyncConnectionConfig,
    current: Mutex<Option<Connected>>,
    /// The connection attempt under way, if any; see [`NodeState::connection`].
    attempt: Mutex<Option<ConnectAttempt>>,
    /// Requests waiting to go out behind a connection attempt, in the order they came; see
    /// [`NodeState::send_in_turn`].
    turns: tokio::sync::Mutex<()>,
    /// How many requests are in that line; while any are, new requests join it.
    in_line: AtomicUsize,
    /// Counts finished attempts, to tell a connection from the one it replaced.
    attempts: AtomicU64,
    /// Requests that timed out since the node last answered anything.
    silent_timeouts: AtomicU32,
    /// The client's background work; told to give up when the connection is presumed dead.
    background: Arc<Background>,
}

/// Timeouts in a row after which the connection is presumed half-open and replaced. A paused or
/// overloaded server also trips it; reconnecting then costs one connection attempt per round.
const STALL_LIMIT: u32 = 2;

#[derive(Clone)]
struct Connected {
    connection: MultiplexedConnection,
    generation: u64,
}

/// Counts a request in line until it has put its command on the connection, or gave up.
struct InLine<'a>(&'a AtomicUsize);

impl<'a> InLine<'a> {
    fn join(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        Self(count)
    }
}

impl Drop for InLine<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A connection attempt that any number of requests can wait for.
type ConnectAttempt = Shared<Pin<Box<dyn Future<Output = Result<Connected, Reply>> + Send>>>;

impl NodeState {
    fn new(
        client: Client,
        connection_config: AsyncConnectionConfig,
        background: Arc<Background>,
    ) -> Self {
        Self {
            background,
            client,
            connection_config,
            current: Mutex::new(None),
            attempt: Mutex::new(None),
            turns: tokio::sync::Mutex::new(()),
            in_line: AtomicUsize::new(0),
            attempts: AtomicU64::new(0),
            silent_timeouts: AtomicU32::new(0),
        }
    }

    /// A request to this node got no reply within its deadline. Without this, a connection
    /// whose peer vanished without a reset (a pulled cable, a dropped NAT entry) would time out
    /// every request forever, as nothing else ever closes it.
    fn note_timeout(&self) {
        if self.silent_timeouts.fetch_add(1, Ordering::AcqRel) + 1 >= STALL_LIMIT {
            self.silent_timeouts.store(0, Ordering::Release);
            if let Ok(mut slot) = self.current.lock() {
                *slot = None;
            }
            // Background work waiting on the old connection would wait forever.
            self.background.abandon();
        }
    }

    async fn send(self: &Arc<Self>, cmd: Arc<Cmd>) -> Reply {
        // Requests waiting for a connection go first: see `send_in_turn`.
        if self.in_line.load(Ordering::Acquire) == 0 {
            if let Some(cached) = self.cached() {
                match self.send_on(cached, &cmd).await {
                    // A connection that died while idle (the server restarted, an idle timeout
                    // closed it) says nothing about the node now: try once more on a fresh one
                    // rather than cast a failed vote for a healthy node. The request's deadline
                    // bounds both tries. Repeating is safe: a lock command that did land the
                    // first time is refused the second time (an under-count), extend and
                    // release scripts give the same answer twice.
                    Err(error) if error.is_io_error() || error.is_connection_dropped() => {}
                    Err(error) => return reply_from_error(&error),
                    Ok(value) => return reply_from_value(value),
                }
            }
        }
        // Boxed: connecting is rare, and its future is large; inline, it would make every
        // request's future several times the size.
        Box::pin(self.send_in_turn(cmd)).await
    }

    /// Sends `cmd` once the node has a connection, in the order the requests came: one that
    /// found the node connecting (a lock's `SET`) must reach it before any request made after
    /// it (that lock's release), or the release would find nothing and the `SET` would then
    /// hold the key until its TTL. Each request in line waits for the connection attempt, puts
    /// its command on the connection (redis-rs queues commands first come, first served), and
    /// only then lets the next one go; requests that find nobody in line go straight out.
    async fn send_in_turn(self: &Arc<Self>, cmd: Arc<Cmd>) -> Reply {
        let in_line = InLine::join(&self.in_line);
        let turn = self.turns.lock().await;
        let connected = match self.connection().await {
            Ok(connected) => connected,
            Err(failure) => return failure,
        };
        let generation = connected.generation;
        let mut connection = connected.connection;
        let mut reply = std::pin::pin!(connection.send_packed_command(&cmd));
        // The first poll puts the command on the connection's queue, or in line for a place.
        let first = std::future::poll_fn(|cx| Poll::Ready(reply.as_mut().poll(cx))).await;
        drop(turn);
        drop(in_line);
        let result = match first {
            Poll::Ready(result) => result,
            Poll::Pending => reply.await,
        };
        self.note_result(&result, generation);
        match result {
            Ok(value) => reply_from_value(value),
            Err(error) => reply_from_error(&error),
        }
    }

    /// A `PING` on the open connection, if there is one; what it answers does not matter.
    async fn ping(&self, timeout: Duration) {
        if let Some(mut connected) = self.cached() {
            let ping = redis::cmd("PING");
            let answer = connected.connection.send_packed_command(&ping);
            let _ = tokio::time::timeout(timeout, answer).await;
        }
    }

    /// Sends on `connected`, dropping it from the cache if the error broke it.
    async fn send_on(&self, mut connected: Connected, cmd: &Cmd) -> Result<Value, RedisError> {
        let result = connected.connection.send_packed_command(cmd).await;
        self.note_result(&result, connected.generation);
        result
    }

    /// Forgets connection `generation` if `result` shows it broken; any answer, even an error
    /// reply, shows it alive.
    fn note_result(&self, result: &Result<Value, RedisError>, generation: u64) {
        match result {
            Err(error) if breaks_connection(error) => self.forget(generation),
            _ => self.silent_timeouts.store(0, Ordering::Release),
        }
    }

    fn cached(&self) -> Option<Connected> {
        self.current.lock().ok().and_then(|slot| slot.clone())
    }

    fn forget(&self, generation: u64) {
        if let Ok(mut slot) = self.current.lock() {
            if slot.as_ref().is_some_and(|c| c.generation == generation) {
                *slot = None;
            }
        }
    }

    /// The open connection, or the outcome of the attempt to open one.
    ///
    /// The attempt runs in a task of its own, and every request that needs the node meanwhile
    /// waits for that one attempt (sharing a refusal too, instead of piling attempts onto a node
    /// that just refused one). A request that gives up at its deadline leaves the attempt
    /// running: were it cancelled with the request, a node whose handshake takes longer than
    /// the request deadline (TLS over a long round trip) could never connect at all. The
    /// attempt is bounded by the connection timeout.
    async fn connection(self: &Arc<Self>) -> Result<Connected, Reply> {
        if let Some(connected) = self.cached() {
            return Ok(connected);
        }
        let attempt = {
            let mut slot = self.attempt_slot();
            // Checked again under the lock: an attempt that just ended has stored its connection
            // before clearing the slot.
            if let Some(connected) = self.cached() {
                return Ok(connected);
            }
            match slot.as_ref() {
                Some(attempt) => attempt.clone(),
                None => {
                    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                        return Err(Reply::Io("not inside a tokio runtime".into()));
                    };
                    let state = Arc::clone(self);
                    let task = runtime.spawn(async move { state.connect_now().await });
                    let attempt: ConnectAttempt = FutureExt::shared(Box::pin(async move {
                        task.await.unwrap_or_else(|_| {
                            Err(Reply::Io("the connection attempt was stopped".into()))
                        })
                    }));
                    *slot = Some(attempt.clone());
                    attempt
                }
            }
        };
        attempt.await
    }

    /// Opens a connection, makes it the node's current one, and ends the attempt.
    async fn connect_now(&self) -> Result<Connected, Reply> {
        let result = self
            .client
            .get_multiplexed_async_connection_with_config(&self.connection_config)
            .await;
        let generation = self.attempts.fetch_add(1, Ordering::AcqRel) + 1;
        let outcome = match result {
            Ok(connection) => {
                let connected = Connected {
                    connection,
                    generation,
                };
                if let Ok(mut slot) = self.current.lock() {
                    *slot = Some(connected.clone());
                }
                Ok(connected)
            }
            Err(error) => Err(reply_from_error(&error)),
        };
        *self.attempt_slot() = None;
        outcome
    }

    fn attempt_slot(&self) -> MutexGuard<'_, Option<ConnectAttempt>> {
        // Nothing panics while holding the lock; a poisoned one still holds consistent data.
        self.attempt.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The redis-rs form of `command`, built once per round and shared by its nodes.
pub(crate) fn to_redis_cmd(command: &Command) -> Cmd {
    // Sized up front: growing the argument and byte buffers one argument at a time costs a
    // reallocation or two per command.
    let mut bytes = 0;
    command.for_each_arg(|arg| {
        bytes += match arg {
            Arg::Str(s) => s.len(),
            Arg::Int(_) => 20,
        }
    });
    let mut cmd = Cmd::with_capacity(command.arg_count(), bytes);
    command.for_each_arg(|arg| {
        match arg {
            Arg::Str(s) => cmd.arg(s),
            Arg::Int(n) => cmd.arg(n),
        };
    });
    cmd
}

fn breaks_connection(error: &RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_dropped()
        || error.is_unrecoverable_error()
        || error.kind() == ErrorKind::Parse
}

fn reply_from_value(value: Value) -> Reply {
    match value {
        Value::Okay => Reply::Ok,
        Value::SimpleString(s) if s == "OK" => Reply::Ok,
        Value::Nil => Reply::Nil,
        Value::Int(n) => Reply::Integer(n),
        Value::ServerError(error) => Reply::Error(match error.details() {
            Some(details) => format!("{} {details}", error.code()),
            None => error.code().to_owned(),
        }),
        other => {
            let mut shape = format!("{other:?}");
            shape.truncate(120);
            Reply::Unexpected(shape)
        }
    }
}

fn reply_from_error(error: &RedisError) -> Reply {
    if let Some(code) = error.code() {
        return Reply::Error(match error.detail() {
            Some(detail) => format!("{code} {detail}"),
            None => code.to_owned(),
        });
    }
    match error.kind() {
        ErrorKind::AuthenticationFailed => Reply::Error(format!("WRONGPASS {error}")),
        ErrorKind::Parse | ErrorKind::UnexpectedReturnType => Reply::Unexpected(error.to_string()),
        _ => Reply::Io(error.to_string()),
    }
}
