//! What one benchmark run does: the clients, the scenario sizes, the shared settings.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde::Serialize;

use crate::protocol::{Params, Scenario};
use crate::wrk::Load;

/// Key lifetime of every lock in every scenario.
pub const TTL_MS: u64 = 10_000;

/// Retry pause `delay ± jitter`: drawn from 0–10 ms, short enough that the peers' hand-off in
/// S3 is limited by their design (sleeping out a pause) rather than by a long default.
pub const RETRY_DELAY_MS: u64 = 20;
/// See [`RETRY_DELAY_MS`].
pub const RETRY_JITTER_MS: u64 = 20;

/// How a client process is started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Runner {
    /// `bench-client ID PARAMS`.
    Rust,
    /// `node bench/js/client.mjs ID PARAMS`.
    Node,
}

/// One client under test.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ClientSpec {
    /// Name on the command line of its runner.
    pub id: &'static str,
    /// Name in tables.
    pub label: &'static str,
    /// How it is started.
    pub runner: Runner,
    /// Whether it takes part in S3 (the floor has no retries, so it cannot wait its turn).
    pub contends: bool,
}

/// Every client, in table order: the floor first, then quorumlock, then the peers.
pub const CLIENTS: [ClientSpec; 8] = [
    ClientSpec {
        id: "raw",
        label: "raw floor (redis-rs)",
        runner: Runner::Rust,
        contends: false,
    },
    ClientSpec {
        id: "raw-mt",
        label: "raw floor (redis-rs), multi-thread",
        runner: Runner::Rust,
        contends: false,
    },
    ClientSpec {
        id: "quorumlock",
        label: "quorumlock, current-thread",
        runner: Runner::Rust,
        contends: true,
    },
    ClientSpec {
        id: "quorumlock-mt",
        label: "quorumlock, multi-thread",
        runner: Runner::Rust,
        contends: true,
    },
    ClientSpec {
        id: "rslock",
        label: "rslock 0.10",
        runner: Runner::Rust,
        contends: true,
    },
    ClientSpec {
        id: "redlock-rs",
        label: "redlock-rs 2.0",
        runner: Runner::Rust,
        contends: true,
    },
    ClientSpec {
        id: "quorumlock-npm",
        label: "quorumlock npm (ioredis)",
        runner: Runner::Node,
        contends: true,
    },
    ClientSpec {
        id: "npm-redlock",
        label: "npm redlock 5β (ioredis)",
        runner: Runner::Node,
        contends: true,
    },
];

/// The client with this id.
pub fn client(id: &str) -> Option<&'static ClientSpec> {
    CLIENTS.iter().find(|client| client.id == id)
}

/// The sizes of every scenario.
#[derive(Debug, Clone, Serialize)]
pub struct Sizes {
    /// Interleaved rounds the lock scenarios are split into; each client's median round is
    /// reported.
    pub rounds: usize,
    /// S1 pairs measured in all rounds together, and pairs run before.
    pub latency_pairs: u64,
    /// See `latency_pairs`.
    pub latency_warmup_pairs: u64,
    /// S2 tasks.
    pub throughput_tasks: usize,
    /// S2 measured time of all rounds together, and warm-up, in milliseconds.
    pub throughput_ms: u64,
    /// See `throughput_ms`.
    pub throughput_warmup_ms: u64,
    /// S3 contenders.
    pub handoff_contenders: usize,
    /// S3 hold time, in microseconds.
    pub handoff_hold_us: u64,
    /// S3 measured time of all rounds together, and warm-up, in milliseconds.
    pub handoff_ms: u64,
    /// See `handoff_ms`.
    pub handoff_warmup_ms: u64,
    /// S4 load.
    pub http_load: Load,
    /// S4 measured time and warm-up per route, in milliseconds.
    pub http_ms: u64,
    /// Interleaved rounds S4's measured time is split into (`wrk` runs whole seconds, so the
    /// quick run keeps one).
    pub http_rounds: usize,
    /// See `http_ms`.
    pub http_warmup_ms: u64,
    /// S5 iteration counts whose instruction difference is measured.
    pub core_iterations: (u64, u64),
    /// S5 iterations of the native timing run.
    pub core_native_iterations: u64,
}

impl Sizes {
    /// The full run (about six minutes on two cores), or the quick one (under two).
    pub fn new(quick: bool) -> Self {
        let http_load = Load {
            threads: 1,
            connections: 32,
        };
        if quick {
            Self {
                rounds: 3,
                latency_pairs: 1_000,
                latency_warmup_pairs: 200,
                throughput_tasks: 64,
                throughput_ms: 2_000,
                throughput_warmup_ms: 300,
                handoff_contenders: 8,
                handoff_hold_us: 1_000,
                handoff_ms: 1_500,
                handoff_warmup_ms: 300,
                http_load,
                http_ms: 2_000,
                http_rounds: 1,
                http_warmup_ms: 1_000,
                core_iterations: (100, 1_100),
                core_native_iterations: 20_000,
            }
        } else {
            Self {
                rounds: 5,
                latency_pairs: 5_000,
                latency_warmup_pairs: 500,
                throughput_tasks: 64,
                throughput_ms: 10_000,
                throughput_warmup_ms: 1_000,
                handoff_contenders: 8,
                handoff_hold_us: 1_000,
                handoff_ms: 5_000,
                handoff_warmup_ms: 500,
                http_load,
                http_ms: 10_000,
                http_rounds: 5,
                http_warmup_ms: 1_000,
                core_iterations: (1_000, 11_000),
                core_native_iterations: 200_000,
            }
        }
    }

    /// The parameters of one client process; sizes are per round.
    pub fn params(&self, scenario: Scenario, nodes: Vec<String>, prefix: String) -> Params {
        let rounds = self.rounds.max(1) as u64;
        let (tasks, duration_ms, warmup_ms) = match scenario {
            Scenario::Latency => (1, 0, 0),
            Scenario::Throughput => (
                self.throughput_tasks,
                self.throughput_ms,
                self.throughput_warmup_ms,
            ),
            Scenario::Handoff => (
                self.handoff_contenders,
                self.handoff_ms,
                self.handoff_warmup_ms,
            ),
        };
        Params {
            scenario,
            nodes,
            prefix,
            ttl_ms: TTL_MS,
            retry_delay_ms: RETRY_DELAY_MS,
            retry_jitter_ms: RETRY_JITTER_MS,
            pairs: self.latency_pairs / rounds,
            warmup_pairs: self.latency_warmup_pairs,
            tasks,
            duration_ms: duration_ms / rounds,
            warmup_ms,
            hold_us: self.handoff_hold_us,
        }
    }

    /// Longest a client process may take to warm up, or to run one round.
    pub fn client_timeout(&self, scenario: Scenario) -> Duration {
        let measured = match scenario {
            // Even the slowest peer does a pair in a few milliseconds.
            Scenario::Latency => self.latency_pairs * 20,
            Scenario::Throughput => self.throughput_ms,
            Scenario::Handoff => self.handoff_ms,
        };
        Duration::from_millis(measured + 60_000)
    }
}

/// Where the bench finds its pieces.
#[derive(Debug, Clone)]
pub struct Paths {
    /// The directory holding `bench-client`, `bench-http` and `bench-core`.
    pub binaries: PathBuf,
    /// `bench/js`, with its `node_modules`.
    pub js: PathBuf,
    /// The built quorumlock npm package.
    pub npm_package: PathBuf,
}

impl Paths {
    /// The command that starts `client` with `params`.
    pub fn client_command(&self, client: &ClientSpec, params: &Params) -> Command {
        let params = serde_json::to_string(params).unwrap_or_default();
        match client.runner {
            Runner::Rust => {
                let mut command = Command::new(self.binaries.join("bench-client"));
                command.arg(client.id).arg(params);
                command
            }
            Runner::Node => {
                let mut command = Command::new("node");
                command
                    .arg(self.js.join("client.mjs"))
                    .arg(client.id)
                    .arg(params)
                    .env("QUORUMLOCK_PKG_DIR", &self.npm_package);
                command
            }
        }
    }

    /// Why `client` cannot run here, if it cannot.
    pub fn missing(&self, client: &ClientSpec) -> Option<String> {
        match client.runner {
            Runner::Rust => None,
            Runner::Node => {
                if version_of("node").is_none_or(|v| v.is_empty()) {
                    return Some("node is not installed".to_owned());
                }
                if !self.js.join("node_modules/ioredis").is_dir()
                    || !self.js.join("node_modules/redlock").is_dir()
                {
                    return Some(format!(
                        "{} has no node_modules: run `npm ci` there",
                        self.js.display()
                    ));
                }
                if client.id == "quorumlock-npm" && !is_built_package(&self.npm_package) {
                    return Some(format!(
                        "the quorumlock npm package is not built in {} (wasm/build.sh builds it)",
                        self.npm_package.display()
                    ));
                }
                None
            }
        }
    }
}

fn is_built_package(dir: &Path) -> bool {
    dir.join("node.mjs").is_file() && dir.join("quorumlock_wasm_bg.wasm").is_file()
}

/// The first line `program --version` prints, if it runs.
pub fn version_of(program: &str) -> Option<String> {
    let output = Command::new(program).arg("--version").output().ok()?;
    let text = if output.stdout.is_empty() {
        output.stderr
    } else {
        output.stdout
    };
    String::from_utf8_lossy(&text)
        .lines()
        .next()
        .map(|line| line.trim().to_owned())
}
