//! What the orchestrator and a client process say to each other.
//!
//! The orchestrator starts a client with two arguments, the client name and the [`Params`] as
//! JSON. The client connects and warms up, prints [`READY`] on a line of its own, and then runs
//! one measured round for each line it reads on its standard input, printing
//! [`RESULT_PREFIX`] followed by a [`Measured`] as JSON after each, until standard input
//! closes. The orchestrator snapshots the Redis nodes' counters around each round, so a
//! window holds nothing but that round, and it interleaves the rounds of all clients, so a
//! disturbance or a drift of the machine falls on all of them alike.

use serde::{Deserialize, Serialize};

/// The line a client prints once it is connected and warmed up.
pub const READY: &str = "ready";

/// What starts the line that carries a client's result.
pub const RESULT_PREFIX: &str = "result ";

/// The lock scenarios a client process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// S1: one task, sequential lock+release pairs on fresh resources.
    Latency,
    /// S2: many tasks sharing one client, distinct resources, for a fixed time.
    Throughput,
    /// S3: contenders taking turns on one resource.
    Handoff,
}

impl Scenario {
    /// Every lock scenario, in report order.
    pub const ALL: [Scenario; 3] = [Scenario::Latency, Scenario::Throughput, Scenario::Handoff];

    /// The short name used in tables: `S1`, `S2`, `S3`.
    pub fn label(self) -> &'static str {
        match self {
            Scenario::Latency => "S1",
            Scenario::Throughput => "S2",
            Scenario::Handoff => "S3",
        }
    }
}

/// Everything a client process needs to run one scenario.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Params {
    /// Which scenario.
    pub scenario: Scenario,
    /// `redis://` URLs of the nodes.
    pub nodes: Vec<String>,
    /// Prefix of every key the run touches, unique per run so runs never see each other's keys.
    pub prefix: String,
    /// Key lifetime of every lock, in milliseconds.
    pub ttl_ms: u64,
    /// Base pause between attempts on a taken lock, in milliseconds.
    pub retry_delay_ms: u64,
    /// Random spread around the pause, in milliseconds.
    pub retry_jitter_ms: u64,
    /// S1: lock+release pairs to measure per round.
    pub pairs: u64,
    /// S1: pairs to run before measuring.
    pub warmup_pairs: u64,
    /// S2: concurrent tasks; S3: contenders.
    pub tasks: usize,
    /// S2, S3: how long to measure per round, in milliseconds.
    pub duration_ms: u64,
    /// S2, S3: how long to run before measuring, in milliseconds.
    pub warmup_ms: u64,
    /// S3: how long each holder keeps the lock, in microseconds.
    pub hold_us: u64,
}

/// Median and tail of a set of durations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Samples.
    pub count: u64,
    /// Median, in microseconds.
    pub p50_us: f64,
    /// 99th percentile, in microseconds.
    pub p99_us: f64,
}

/// What a client process measured in its window.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Measured {
    /// Completed lock+release pairs (S1, S2) or acquisitions (S3).
    pub ops: u64,
    /// Length of the measured window, in seconds.
    pub elapsed_s: f64,
    /// From calling lock to holding the lock.
    pub lock: Percentiles,
    /// From calling release to its completion.
    pub release: Percentiles,
    /// S3: from the holder's release call to the next successful lock by another contender.
    pub gap: Option<Percentiles>,
    /// CPU time (user + system) the client process used in the window, in microseconds.
    pub cpu_us: f64,
    /// Lock calls that returned an error (S1, S2: a fresh resource that could not be locked;
    /// S3: an acquire that ran out of retries and was called again).
    pub failures: u64,
    /// S3: times a contender entered the critical section while another was inside.
    pub overlaps: u64,
    /// How the client was set up (runtime, retry settings), for the record.
    pub settings: String,
}
