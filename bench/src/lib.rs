//! Side-by-side benchmarks of quorumlock against rslock, redlock-rs, node-redlock and a raw-Redis
//! floor, all against real `redis-server` processes on loopback.
//!
//! The `bench` binary runs everything in one go: it starts the nodes, runs each client of each
//! scenario in its own process, one after another, and writes a Markdown table and the raw
//! results. `bench-client` is one Rust client running one scenario, `bench-http` the axum
//! service of the Tower-layer scenario, `bench-core` the sans-IO machines fed in memory (run
//! under callgrind). The JavaScript clients live in `bench/js/` and speak the same protocol as
//! `bench-client` (see [`protocol`]).
#![forbid(unsafe_code)]
#![warn(missing_docs)]
// A benchmark measures wall time: reading the clock is its whole point.
#![allow(clippy::disallowed_methods)]

pub mod child;
pub mod clients;
pub mod core_cost;
pub mod cpu;
pub mod handoff;
pub mod host_cpu;
pub mod http_app;
pub mod plan;
pub mod protocol;
pub mod redis_stats;
pub mod report;
pub mod results;
pub mod scenario;
pub mod stats;
pub mod wrk;
