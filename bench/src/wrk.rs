//! Runs the `wrk` load generator and reads its summary.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The Lua script that gives each request its own resource and prints a JSON summary.
pub const SCRIPT: &str = include_str!("../wrk/distinct.lua");

/// What one `wrk` run measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WrkSummary {
    /// Completed requests.
    pub requests: u64,
    /// Length of the run, in microseconds.
    pub duration_us: u64,
    /// Responses with a status outside 2xx and 3xx.
    pub non_2xx: u64,
    /// Connect, read, write and timeout errors.
    pub socket_errors: u64,
    /// Median request latency, in microseconds.
    pub p50_us: u64,
    /// 99th percentile request latency, in microseconds.
    pub p99_us: u64,
}

impl WrkSummary {
    /// Requests per second.
    pub fn rate(&self) -> f64 {
        if self.duration_us == 0 {
            return 0.0;
        }
        self.requests as f64 / (self.duration_us as f64 / 1e6)
    }
}

/// How `wrk` loads the service.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Load {
    /// wrk threads.
    pub threads: u32,
    /// Open connections, each with one request in flight.
    pub connections: u32,
}

/// Runs `wrk` against `base` (`http://host:port`), every request going to `route` followed by
/// a fresh id, for `duration`.
pub fn run(
    script: &Path,
    base: &str,
    route: &str,
    load: Load,
    duration: Duration,
) -> Result<WrkSummary, String> {
    let seconds = duration.as_secs_f64().ceil().max(1.0) as u64;
    let output = Command::new("wrk")
        .arg(format!("-t{}", load.threads))
        .arg(format!("-c{}", load.connections))
        .arg(format!("-d{seconds}s"))
        .arg("-s")
        .arg(script)
        .arg(base)
        .arg("--")
        .arg(route)
        .output()
        .map_err(|error| format!("cannot run wrk: {error}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "wrk failed ({}): {}{}",
            output.status,
            stdout.trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    stdout
        .lines()
        .find(|line| line.starts_with('{'))
        .ok_or_else(|| format!("wrk printed no summary: {}", stdout.trim()))
        .and_then(|line| {
            serde_json::from_str(line).map_err(|error| format!("wrk summary: {error}"))
        })
}

/// Whether `wrk` can be run at all.
pub fn available() -> bool {
    Command::new("wrk")
        .arg("--version")
        .output()
        .map(|output| !output.stdout.is_empty() || !output.stderr.is_empty())
        .unwrap_or(false)
}
