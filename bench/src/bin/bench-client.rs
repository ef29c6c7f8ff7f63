//! One Rust client running one lock scenario, measured between the orchestrator's snapshots.
//!
//! `bench-client CLIENT PARAMS_JSON`, where CLIENT is `quorumlock`, `quorumlock-mt`, `rslock`,
//! `redlock-rs` or `raw`. See `quorumlock_bench::protocol` for the conversation.
#![forbid(unsafe_code)]
// A benchmark measures wall time: reading the clock is its whole point.
#![allow(clippy::disallowed_methods)]

use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use quorumlock_bench::clients::{
    describe_retry, BlockingLocker, Locker, Quorumlock, RawFloor, RedlockRs, Rslock,
};
use quorumlock_bench::cpu::process_cpu_time;
use quorumlock_bench::protocol::{Measured, Params, Scenario, READY, RESULT_PREFIX};
use quorumlock_bench::scenario::{self, Tally};
use tokio::runtime::{Builder, Runtime};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let [_, client, params] = args.as_slice() else {
        eprintln!("usage: bench-client CLIENT PARAMS_JSON");
        return ExitCode::from(2);
    };
    let params: Params = match serde_json::from_str(params) {
        Ok(params) => params,
        Err(error) => {
            eprintln!("bad parameters: {error}");
            return ExitCode::from(2);
        }
    };
    match run(client, &params) {
        Ok(measured) => {
            let json = serde_json::to_string(&measured).unwrap_or_default();
            println!("{RESULT_PREFIX}{json}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{client}: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(client: &str, params: &Params) -> Result<Measured, String> {
    let ttl = Duration::from_millis(params.ttl_ms);
    let delay = Duration::from_millis(params.retry_delay_ms);
    let jitter = Duration::from_millis(params.retry_jitter_ms);
    let retry = describe_retry(delay, jitter);
    let max_pause = delay + jitter;
    let upto = format!(
        "retry pause 0–{} ms, unlimited attempts",
        max_pause.as_millis()
    );
    let urls = &params.nodes;
    match client {
        "quorumlock" => {
            let locker = Quorumlock::new(urls, ttl, delay, jitter)?;
            run_async(
                current_thread()?,
                locker,
                params,
                format!("tokio current-thread; {retry}"),
            )
        }
        "quorumlock-mt" => {
            let locker = Quorumlock::new(urls, ttl, delay, jitter)?;
            let runtime = Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            run_async(
                runtime,
                locker,
                params,
                format!("tokio multi-thread, 2 workers; {retry}"),
            )
        }
        "rslock" => {
            let locker = Rslock::new(urls, ttl, max_pause);
            run_async(
                current_thread()?,
                locker,
                params,
                format!("tokio current-thread; {upto}"),
            )
        }
        "raw" => {
            let runtime = current_thread()?;
            let token_prefix = u64::from(std::process::id()) << 32 | u64::from(clock_nanos());
            let locker = runtime.block_on(RawFloor::connect(urls, ttl, token_prefix))?;
            run_async(
                runtime,
                locker,
                params,
                "tokio current-thread; no retries".to_owned(),
            )
        }
        "redlock-rs" => {
            let locker = RedlockRs::new(urls, ttl, max_pause);
            run_blocking(&locker, params, format!("one OS thread per task; {upto}"))
        }
        other => Err(format!("unknown client {other:?}")),
    }
}

/// Only to tell this process's tokens from another's.
fn clock_nanos() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|since| since.subsec_nanos())
        .unwrap_or(0)
}

fn current_thread() -> Result<Runtime, String> {
    Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
}

fn run_async<L: Locker>(
    runtime: Runtime,
    locker: L,
    params: &Params,
    settings: String,
) -> Result<Measured, String> {
    let warmup = runtime.block_on(run_scenario(&locker, params, &warmup_of(params)));
    check_warmup(&warmup)?;
    wait_for_go()?;
    let window = Window::open();
    let tally = runtime.block_on(run_scenario(&locker, params, &Phase::measured(params)));
    Ok(window.close(tally, settings))
}

fn run_blocking<L: BlockingLocker>(
    locker: &L,
    params: &Params,
    settings: String,
) -> Result<Measured, String> {
    let warmup = run_scenario_blocking(locker, params, &warmup_of(params));
    check_warmup(&warmup)?;
    wait_for_go()?;
    let window = Window::open();
    let tally = run_scenario_blocking(locker, params, &Phase::measured(params));
    Ok(window.close(tally, settings))
}

/// The sizes of one run of a scenario: the warm-up or the measured one.
struct Phase {
    prefix: String,
    pairs: u64,
    duration: Duration,
}

impl Phase {
    fn measured(params: &Params) -> Self {
        Self {
            prefix: format!("{}:measured", params.prefix),
            pairs: params.pairs,
            duration: Duration::from_millis(params.duration_ms),
        }
    }
}

fn warmup_of(params: &Params) -> Phase {
    Phase {
        prefix: format!("{}:warmup", params.prefix),
        pairs: params.warmup_pairs,
        duration: Duration::from_millis(params.warmup_ms),
    }
}

/// A client that cannot lock a free resource during warm-up would only measure its errors.
fn check_warmup(tally: &Tally) -> Result<(), String> {
    if tally.ops == 0 {
        return Err(format!(
            "no lock acquired during warm-up ({} failures)",
            tally.failures
        ));
    }
    Ok(())
}

async fn run_scenario<L: Locker>(locker: &L, params: &Params, phase: &Phase) -> Tally {
    match params.scenario {
        Scenario::Latency => scenario::latency(locker, &phase.prefix, phase.pairs).await,
        Scenario::Throughput => {
            scenario::throughput(locker, &phase.prefix, params.tasks, phase.duration).await
        }
        Scenario::Handoff => {
            let hold = Duration::from_micros(params.hold_us);
            scenario::handoff(locker, &phase.prefix, params.tasks, hold, phase.duration).await
        }
    }
}

fn run_scenario_blocking<L: BlockingLocker>(locker: &L, params: &Params, phase: &Phase) -> Tally {
    match params.scenario {
        Scenario::Latency => scenario::latency_blocking(locker, &phase.prefix, phase.pairs),
        Scenario::Throughput => {
            scenario::throughput_blocking(locker, &phase.prefix, params.tasks, phase.duration)
        }
        Scenario::Handoff => {
            let hold = Duration::from_micros(params.hold_us);
            scenario::handoff_blocking(locker, &phase.prefix, params.tasks, hold, phase.duration)
        }
    }
}

/// Tells the orchestrator the client is warm, and waits for its go.
fn wait_for_go() -> Result<(), String> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{READY}")
        .and_then(|()| stdout.flush())
        .map_err(|e| e.to_string())?;
    let mut line = String::new();
    match std::io::stdin().lock().read_line(&mut line) {
        Ok(0) => Err("the orchestrator went away".to_owned()),
        Ok(_) => Ok(()),
        Err(error) => Err(error.to_string()),
    }
}

/// Wall time and CPU time around the measured run.
struct Window {
    started: Instant,
    cpu: Duration,
}

impl Window {
    fn open() -> Self {
        Self {
            cpu: process_cpu_time(),
            started: Instant::now(),
        }
    }

    fn close(self, tally: Tally, settings: String) -> Measured {
        let elapsed = self.started.elapsed();
        let cpu = process_cpu_time().saturating_sub(self.cpu);
        Measured {
            ops: tally.ops,
            elapsed_s: elapsed.as_secs_f64(),
            lock: tally.lock.percentiles(),
            release: tally.release.percentiles(),
            gap: tally.gaps.map(|gaps| gaps.percentiles()),
            cpu_us: cpu.as_secs_f64() * 1e6,
            failures: tally.failures,
            overlaps: tally.overlaps,
            settings,
        }
    }
}
