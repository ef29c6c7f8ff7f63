#![forbid(unsafe_code)]
#![warn(missing_docs)]
//! Shared pieces of the runnable examples: where the Redis nodes come from, the example HTTP
//! service, a small HTTP client, and the example server run as a child process.

pub mod app;
pub mod http_client;
pub mod server_process;

use quorumlock::testing::{HarnessError, RedisCluster};

/// Environment variable with comma-separated node URLs, e.g.
/// `redis://10.0.0.1:6379,redis://10.0.0.2:6379,redis://10.0.0.3:6379`.
pub const NODES_ENV: &str = "QUORUMLOCK_NODES";

/// Where the example's Redis nodes come from.
pub struct Nodes {
    /// The node URLs to hand to `Redlock::builder`.
    pub urls: Vec<String>,
    /// The local nodes this process started, stopped when dropped; `None` when the URLs came
    /// from the environment.
    pub local: Option<RedisCluster>,
}

/// Reads [`NODES_ENV`]; when it is unset, starts three local `redis-server` processes and says
/// so on stderr.
pub fn nodes_from_env_or_local() -> Result<Nodes, HarnessError> {
    match std::env::var(NODES_ENV) {
        Ok(list) if !list.trim().is_empty() => Ok(Nodes {
            urls: list
                .split(',')
                .map(|url| url.trim().to_owned())
                .filter(|url| !url.is_empty())
                .collect(),
            local: None,
        }),
        _ => {
            let cluster = RedisCluster::start(3)?;
            eprintln!(
                "{NODES_ENV} is not set: started three local redis-server nodes at {}",
                cluster.urls().join(", ")
            );
            Ok(Nodes {
                urls: cluster.urls(),
                local: Some(cluster),
            })
        }
    }
}
