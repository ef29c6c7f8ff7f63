//! Everything one benchmark run measured, as written to the raw results file.

use serde::Serialize;

use crate::plan::Sizes;
use crate::protocol::{Measured, Scenario};
use crate::redis_stats::RedisDelta;
use crate::wrk::WrkSummary;

/// One benchmark run.
#[derive(Debug, Clone, Serialize)]
pub struct Results {
    /// Whether this was the quick run.
    pub quick: bool,
    /// What the run ran on.
    pub environment: Environment,
    /// Key lifetime of every lock, in milliseconds.
    pub ttl_ms: u64,
    /// The retry settings every client got.
    pub retry: String,
    /// Scenario sizes.
    pub sizes: Sizes,
    /// S1–S3.
    pub lock_runs: Vec<LockRun>,
    /// S4.
    pub http_runs: Vec<HttpRun>,
    /// S5.
    pub core_runs: Vec<CoreRun>,
    /// Rows that were skipped or failed, and why.
    pub notes: Vec<String>,
}

/// The machine and tools.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Environment {
    /// Cores the operating system offers.
    pub cores: usize,
    /// `redis-server --version`.
    pub redis: String,
    /// `node --version`.
    pub node: Option<String>,
    /// `wrk --version`.
    pub wrk: Option<String>,
    /// `valgrind --version`.
    pub valgrind: Option<String>,
    /// Load average before the run.
    pub load_before: String,
}

/// One client running one lock scenario.
#[derive(Debug, Clone, Serialize)]
pub struct LockRun {
    /// Redis nodes.
    pub nodes: usize,
    /// S1, S2 or S3.
    pub scenario: Scenario,
    /// The client's id.
    pub client: String,
    /// What the client measured.
    pub measured: Measured,
    /// What the nodes did in the same window.
    pub redis: RedisDelta,
    /// Share of all cores that processes other than the client and the nodes kept busy during
    /// the window, when the machine tells.
    pub other_cpu: Option<f64>,
    /// Pairs or acquisitions per second of every round, in the order they ran; the figures
    /// above are those of the median round (among the undisturbed ones, if any).
    pub round_rates: Vec<f64>,
    /// `other_cpu` of every round.
    pub round_other_cpu: Vec<Option<f64>>,
}

/// Share of the cores other processes may use in a window before its figures are flagged.
pub const NOISY: f64 = 0.10;

impl LockRun {
    /// Whether other processes were busy enough during the window to skew it.
    pub fn is_noisy(&self) -> bool {
        self.other_cpu.is_some_and(|share| share > NOISY)
    }

    /// Pairs (S1, S2) or acquisitions (S3) per second.
    pub fn rate(&self) -> f64 {
        per(self.measured.ops as f64, self.measured.elapsed_s)
    }

    /// Client CPU per pair or acquisition, in microseconds.
    pub fn client_cpu_per_op(&self) -> f64 {
        per(self.measured.cpu_us, self.measured.ops as f64)
    }

    /// CPU of all nodes together per pair or acquisition, in microseconds.
    pub fn redis_cpu_per_op(&self) -> f64 {
        per(self.redis.cpu_us, self.measured.ops as f64)
    }

    /// Commands run on all nodes per pair or acquisition (those called from scripts included).
    pub fn commands_per_op(&self) -> f64 {
        per(self.redis.commands as f64, self.measured.ops as f64)
    }
}

/// One route of S4 under load.
#[derive(Debug, Clone, Serialize)]
pub struct HttpRun {
    /// Redis nodes.
    pub nodes: usize,
    /// `bare`, `layer` or `inline`.
    pub route: String,
    /// Whether the server set `TCP_NODELAY` (`axum::serve` does not by default).
    pub nodelay: bool,
    /// What `wrk` measured.
    pub summary: WrkSummary,
}

/// S5 for one node count.
#[derive(Debug, Clone, Serialize)]
pub struct CoreRun {
    /// Nodes the machines address.
    pub nodes: usize,
    /// Instructions per acquire+release under callgrind, when valgrind is installed.
    pub instructions_per_cycle: Option<f64>,
    /// Native time per acquire+release, in nanoseconds.
    pub ns_per_cycle: f64,
}

impl Results {
    /// The run of `client` in `scenario` on `nodes` nodes, if it ran.
    pub fn lock_run(&self, nodes: usize, scenario: Scenario, client: &str) -> Option<&LockRun> {
        self.lock_runs
            .iter()
            .find(|run| run.nodes == nodes && run.scenario == scenario && run.client == client)
    }

    /// The S4 run of `route`, with or without `TCP_NODELAY`, if it ran.
    pub fn http_run(&self, route: &str, nodelay: bool) -> Option<&HttpRun> {
        self.http_runs
            .iter()
            .find(|run| run.route == route && run.nodelay == nodelay)
    }
}

/// `amount / over`, or zero when there is nothing to divide by.
pub fn per(amount: f64, over: f64) -> f64 {
    if over > 0.0 {
        amount / over
    } else {
        0.0
    }
}
