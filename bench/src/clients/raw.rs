//! The floor: the Redis commands a Redlock acquire and release need, and nothing else.
//!
//! `SET key token NX PX ttl` to every node at once over one multiplexed redis-rs connection
//! each (with `TCP_NODELAY`), granted as soon as a quorum said `OK`; release is the classic compare-and-delete
//! script by digest on every node, done as soon as a quorum answered. No retries, no validity
//! arithmetic, no per-request deadlines, no reports.
//!
//! The requests a decision left behind are dropped, not awaited. redis-rs skips a request whose
//! caller went away only while it is still queued; on a current-thread runtime every
//! connection's driver has written its request before any reply can come back, so each node
//! still gets every command (the report's commands per pair shows it).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use redis::aio::MultiplexedConnection;
use redis::io::tcp::TcpSettings;
use redis::{Cmd, IntoConnectionInfo, Value};

use super::Locker;

/// Compare-and-delete, as every Redlock client sends it.
const RELEASE_SCRIPT: &str = r#"if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) else return 0 end"#;

/// Multiplexed connections to every node and a token source.
#[derive(Clone)]
pub struct RawFloor {
    connections: Arc<[MultiplexedConnection]>,
    quorum: usize,
    ttl_ms: u64,
    release_sha: Arc<str>,
    token_prefix: u64,
    token_counter: Arc<AtomicU64>,
}

impl std::fmt::Debug for RawFloor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawFloor")
            .field("nodes", &self.connections.len())
            .finish_non_exhaustive()
    }
}

/// A lock the floor holds: the key and the token it stored.
#[derive(Debug)]
pub struct RawHeld {
    key: String,
    token: String,
}

impl RawFloor {
    /// Connects to every node and loads the release script. `token_prefix` makes tokens unique
    /// across processes; within one, a counter does.
    pub async fn connect(
        urls: &[String],
        ttl: Duration,
        token_prefix: u64,
    ) -> Result<Self, String> {
        let mut connections = Vec::with_capacity(urls.len());
        let mut release_sha = String::new();
        for url in urls {
            // TCP_NODELAY, as quorumlock sets it: the floor is the best a client can do with
            // these commands, and Nagle's algorithm would hold back a request sent while the
            // previous one to that node is unacknowledged.
            let info = url
                .as_str()
                .into_connection_info()
                .map_err(|e| e.to_string())?
                .set_tcp_settings(TcpSettings::default().set_nodelay(true));
            let client = redis::Client::open(info).map_err(|e| e.to_string())?;
            let mut connection = client
                .get_multiplexed_async_connection()
                .await
                .map_err(|e| e.to_string())?;
            release_sha = redis::cmd("SCRIPT")
                .arg("LOAD")
                .arg(RELEASE_SCRIPT)
                .query_async(&mut connection)
                .await
                .map_err(|e| e.to_string())?;
            connections.push(connection);
        }
        Ok(Self {
            quorum: urls.len() / 2 + 1,
            connections: connections.into(),
            ttl_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
            release_sha: release_sha.into(),
            token_prefix,
            token_counter: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Sends `cmd` to every node; returns whether a quorum of replies satisfied `yes`, as soon
    /// as that is known.
    async fn quorum_of(&self, cmd: &Cmd, yes: fn(&Value) -> bool) -> bool {
        let mut replies: FuturesUnordered<_> = self
            .connections
            .iter()
            .map(|connection| {
                let mut connection = connection.clone();
                async move { connection.send_packed_command(cmd).await }
            })
            .collect();
        let nodes = self.connections.len();
        let (mut granted, mut other) = (0, 0);
        while let Some(reply) = replies.next().await {
            match reply {
                Ok(value) if yes(&value) => granted += 1,
                _ => other += 1,
            }
            if granted >= self.quorum {
                return true;
            }
            if other > nodes - self.quorum {
                return false;
            }
        }
        false
    }

    async fn delete(&self, key: &str, token: &str) {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(&*self.release_sha).arg(1).arg(key).arg(token);
        // Any answer counts: a node without our key has nothing to delete.
        self.quorum_of(&cmd, |_| true).await;
    }
}

impl Locker for RawFloor {
    type Held = RawHeld;

    async fn lock(&self, key: String) -> Result<RawHeld, String> {
        // The same 32 characters as quorumlock's hex tokens, so both send the same bytes.
        let serial = self.token_counter.fetch_add(1, Ordering::Relaxed);
        let token = format!("{:016x}{serial:016x}", self.token_prefix);
        let mut cmd = redis::cmd("SET");
        cmd.arg(&key)
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(self.ttl_ms);
        if self
            .quorum_of(&cmd, |value| matches!(value, Value::Okay))
            .await
        {
            Ok(RawHeld { key, token })
        } else {
            self.delete(&key, &token).await;
            Err("no quorum granted".to_owned())
        }
    }

    async fn release(&self, held: RawHeld) {
        self.delete(&held.key, &held.token).await;
    }
}
