//! The sans-IO machines alone: `bench-core NODES ITERATIONS` acquires and releases one
//! resource ITERATIONS times with replies fed in memory, and prints the time per cycle.
//! Under `valgrind --tool=callgrind` the instruction count is what matters.
#![forbid(unsafe_code)]
// A benchmark measures wall time: reading the clock is its whole point.
#![allow(clippy::disallowed_methods)]

use std::process::ExitCode;
use std::time::Instant;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parsed = match args.as_slice() {
        [nodes, iterations] => nodes
            .parse::<usize>()
            .ok()
            .zip(iterations.parse::<u64>().ok()),
        _ => None,
    };
    let Some((nodes, iterations)) = parsed else {
        eprintln!("usage: bench-core NODES ITERATIONS");
        return ExitCode::from(2);
    };
    let started = Instant::now();
    match quorumlock_bench::core_cost::acquire_release(nodes, iterations) {
        Ok(granted) => {
            let per_cycle = started.elapsed().as_nanos() as f64 / iterations.max(1) as f64;
            println!("{{\"nodes\":{nodes},\"iterations\":{iterations},\"ns_per_cycle\":{per_cycle:.1},\"granted\":{granted}}}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("bench-core: {error}");
            ExitCode::FAILURE
        }
    }
}
