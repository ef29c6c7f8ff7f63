//! One Rust client running one lock scenario, one measured round per go from the orchestrator.
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
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{client}: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(client: &str, params: &Params) -> Result<(), String> {
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
            run_async(
                multi_thread()?,
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
        "raw" | "raw-mt" => {
            let (runtime, settings) = if client == "raw" {
                (current_thread()?, "tokio current-thread; no retries")
            } else {
                (multi_thread()?, "tokio multi-thread, 2 workers; no retries")
            };
            let token_prefix = u64::from(std::process::id()) << 32 | u64::from(clock_nanos());
            let locker = runtime.block_on(RawFloor::connect(urls, ttl, token_prefix))?;
            run_async(runtime, locker, params, settings.to_owned())
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

/// The multi-thread runtime both multi-thread rows use: one worker per core of the machine the
/// figures are quoted for.
fn multi_thread() -> Result<Runtime, String> {
    Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
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
) -> Result<(), String> {
    let warmup = runtime.block_on(run_scenario(&locker, params, &warmup_of(params)));
    check_warmup(&warmup)?;
    rounds(
        |phase| runtime.block_on(run_scenario(&locker, params, phase)),
        params,
        &settings,
    )
}

fn run_blocking<L: BlockingLocker>(
    locker: &L,
    params: &Params,
    settings: String,
) -> Result<(), String> {
    let warmup = run_scenario_blocking(locker, params, &warmup_of(params));
    check_warmup(&warmup)?;
    rounds(
        |phase| run_scenario_blocking(locker, params, phase),
        params,
        &settings,
    )
}

/// Says it is ready, then runs one measured round per line on standard input and prints its
/// result, until standard input closes.
fn rounds(
    mut measure: impl FnMut(&Phase) -> Tally,
    params: &Params,
    settings: &str,
) -> Result<(), String> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{READY}")
        .and_then(|()| stdout.flush())
        .map_err(|e| e.to_string())?;
    let mut stdin = std::io::stdin().lock();
    let mut line = String::new();
    for round in 0.. {
        line.clear();
        if stdin.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
            return Ok(());
        }
        let window = Window::open();
        let tally = measure(&Phase::measured(params, round));
        let json = serde_json::to_string(&window.close(tally, settings.to_owned()))
            .map_err(|e| e.to_string())?;
        writeln!(stdout, "{RESULT_PREFIX}{json}")
            .and_then(|()| stdout.flush())
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The sizes of one run of a scenario: the warm-up or a measured round.
struct Phase {
    prefix: String,
    pairs: u64,
    duration: Duration,
}

impl Phase {
    fn measured(params: &Params, round: u32) -> Self {
        Self {
            prefix: format!("{}:round{round}", params.prefix),
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
