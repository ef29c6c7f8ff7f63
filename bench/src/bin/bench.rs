//! Runs every benchmark scenario for every client in one go and reports.
//!
//! Starts its own redis-server nodes (3, then 5) on loopback, runs each client of each lock
//! scenario in its own process, one after another, then the Tower-layer scenario against an
//! axum service under `wrk`, then the sans-IO core under callgrind. Prints a Markdown report and
//! writes it, with the raw results as JSON, to the output directory. Every process it starts
//! is stopped when it ends, on errors too.
#![forbid(unsafe_code)]
// A benchmark measures wall time: reading the clock is its whole point.
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use quorumlock::testing::RedisCluster;
use quorumlock_bench::child::ChildProcess;
use quorumlock_bench::clients::describe_retry;
use quorumlock_bench::host_cpu;
use quorumlock_bench::plan::{self, ClientSpec, Paths, Sizes, CLIENTS};
use quorumlock_bench::protocol::{Measured, Scenario};
use quorumlock_bench::redis_stats::{Probe, RedisDelta};
use quorumlock_bench::report::{self, thousands};
use quorumlock_bench::results::{CoreRun, Environment, HttpRun, LockRun, Results, NOISY};
use quorumlock_bench::wrk::{self, Load, WrkSummary};

/// Side-by-side Redlock benchmarks.
#[derive(Debug, Parser)]
#[command(name = "bench")]
struct Cli {
    /// Short runs (under two minutes in all) for a first look; figures are noisier.
    #[arg(long)]
    quick: bool,
    /// Where the report and the raw results go.
    #[arg(long, default_value = "target/bench-results")]
    out: PathBuf,
    /// Node counts, in order.
    #[arg(long, value_delimiter = ',', default_value = "3,5")]
    nodes: Vec<usize>,
    /// Only these clients (ids: raw, raw-mt, quorumlock, quorumlock-mt, rslock, redlock-rs,
    /// quorumlock-npm, npm-redlock).
    #[arg(long, value_delimiter = ',')]
    clients: Option<Vec<String>>,
    /// Only these scenarios (s1 … s5).
    #[arg(long, value_delimiter = ',')]
    scenarios: Option<Vec<String>>,
    /// The JavaScript clients' directory (default: `js` beside this package's manifest).
    #[arg(long)]
    js_dir: Option<PathBuf>,
    /// The built quorumlock npm package (default: `$QUORUMLOCK_PKG_DIR`, else `wasm/pkg`).
    #[arg(long)]
    npm_package: Option<PathBuf>,
}

/// Pause between two measured windows, so one's stragglers (a last release, closing sockets)
/// do not land in the next one's.
const SETTLE: Duration = Duration::from_millis(100);

fn main() -> ExitCode {
    let cli = Cli::parse();
    let selection = match Selection::new(&cli) {
        Ok(selection) => selection,
        Err(error) => {
            eprintln!("bench: {error}");
            return ExitCode::from(2);
        }
    };
    let started = Instant::now();
    let results = run(&cli, &selection);
    let markdown = report::render(&results);
    println!("{markdown}");
    match write_out(&cli.out, &results, &markdown) {
        Ok(written) => eprintln!(
            "bench: done in {:.0} s; wrote {}",
            started.elapsed().as_secs_f64(),
            written.join(", ")
        ),
        Err(error) => {
            eprintln!("bench: {error}");
            return ExitCode::FAILURE;
        }
    }
    if results.lock_runs.is_empty() && results.http_runs.is_empty() && results.core_runs.is_empty()
    {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// What the command line selected.
struct Selection {
    clients: Vec<&'static ClientSpec>,
    scenarios: BTreeSet<String>,
}

impl Selection {
    fn new(cli: &Cli) -> Result<Self, String> {
        let clients = match &cli.clients {
            None => CLIENTS.iter().collect(),
            Some(ids) => ids
                .iter()
                .map(|id| plan::client(id).ok_or_else(|| format!("unknown client {id:?}")))
                .collect::<Result<_, _>>()?,
        };
        let all = ["s1", "s2", "s3", "s4", "s5"];
        let scenarios: BTreeSet<String> = match &cli.scenarios {
            None => all.iter().map(|s| s.to_string()).collect(),
            Some(names) => names.iter().map(|name| name.to_lowercase()).collect(),
        };
        if let Some(unknown) = scenarios.iter().find(|s| !all.contains(&s.as_str())) {
            return Err(format!("unknown scenario {unknown:?} (s1 … s5)"));
        }
        Ok(Self { clients, scenarios })
    }

    fn has(&self, scenario: &str) -> bool {
        self.scenarios.contains(scenario)
    }

    fn has_lock(&self, scenario: Scenario) -> bool {
        self.has(&scenario.label().to_lowercase())
    }
}

fn run(cli: &Cli, selection: &Selection) -> Results {
    let sizes = Sizes::new(cli.quick);
    let paths = paths(cli);
    let mut results = Results {
        quick: cli.quick,
        environment: environment(),
        ttl_ms: plan::TTL_MS,
        retry: describe_retry(
            Duration::from_millis(plan::RETRY_DELAY_MS),
            Duration::from_millis(plan::RETRY_JITTER_MS),
        ),
        sizes,
        lock_runs: Vec::new(),
        http_runs: Vec::new(),
        core_runs: Vec::new(),
        notes: Vec::new(),
    };
    let mut clients = Vec::new();
    for client in &selection.clients {
        match paths.missing(client) {
            Some(reason) => {
                eprintln!("bench: skipping {}: {reason}", client.label);
                results
                    .notes
                    .push(format!("{} skipped: {reason}", client.label));
            }
            None => clients.push(*client),
        }
    }
    let run_id = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| since.as_secs())
        .unwrap_or(0);
    let wants_locks = Scenario::ALL.iter().any(|&s| selection.has_lock(s));
    for &nodes in &cli.nodes {
        let wants_http = selection.has("s4") && nodes == 3;
        if !wants_locks && !wants_http {
            continue;
        }
        let cluster = match RedisCluster::start(nodes) {
            Ok(cluster) => cluster,
            Err(error) => {
                note(
                    &mut results,
                    format!("{nodes} nodes: cannot start redis-server: {error}"),
                );
                continue;
            }
        };
        let urls = cluster.urls();
        let mut probe = match Probe::connect(&urls) {
            Ok(probe) => probe,
            Err(error) => {
                note(
                    &mut results,
                    format!("{nodes} nodes: cannot reach the nodes: {error}"),
                );
                continue;
            }
        };
        for scenario in Scenario::ALL {
            if selection.has_lock(scenario) {
                run_scenario(
                    &mut results,
                    &paths,
                    &clients,
                    scenario,
                    &urls,
                    &mut probe,
                    run_id,
                );
            }
        }
        if wants_http {
            run_http(&mut results, &paths, &urls, nodes, run_id);
        }
        // Dropping the cluster stops its servers before the next node count starts.
        drop(cluster);
    }
    if selection.has("s5") {
        run_core(&mut results, &paths);
    }
    results
}

/// Runs every client of `scenario` in interleaved rounds and records each client's median
/// round: all clients start and warm up first (one at a time), then each round gives every
/// client one measured window in turn, starting with a different client each round.
fn run_scenario(
    results: &mut Results,
    paths: &Paths,
    clients: &[&'static ClientSpec],
    scenario: Scenario,
    urls: &[String],
    probe: &mut Probe,
    run_id: u64,
) {
    let nodes = urls.len();
    let timeout = results.sizes.client_timeout(scenario);
    let mut live: Vec<Contender> = Vec::new();
    for client in clients {
        if scenario == Scenario::Handoff && !client.contends {
            continue;
        }
        let prefix = format!("bench:{run_id}:{nodes}:{}:{}", scenario.label(), client.id);
        let params = results.sizes.params(scenario, urls.to_vec(), prefix);
        let started = ChildProcess::spawn(client.label, paths.client_command(client, &params))
            .and_then(|mut process| process.wait_ready(timeout).map(|()| process));
        match started {
            Ok(process) => live.push(Contender {
                client,
                process: Some(process),
                rounds: Vec::new(),
            }),
            Err(error) => note(
                results,
                format!(
                    "{nodes} nodes, {} {}: {error}",
                    scenario.label(),
                    client.label
                ),
            ),
        }
    }
    let cores = results.environment.cores.max(1) as f64;
    for round in 0..results.sizes.rounds {
        let contenders = live.len();
        for turn in 0..contenders {
            let contender = &mut live[(turn + round) % contenders];
            let Some(process) = contender.process.as_mut() else {
                continue;
            };
            match measure_round(process, probe, timeout, cores) {
                Ok(window) => contender.rounds.push(window),
                Err(error) => {
                    contender.process = None;
                    note(
                        results,
                        format!(
                            "{nodes} nodes, {} {}: {error}",
                            scenario.label(),
                            contender.client.label
                        ),
                    );
                }
            }
            std::thread::sleep(SETTLE);
        }
    }
    for contender in live {
        if let Some(process) = contender.process {
            process.finish(Duration::from_secs(10));
        }
        let Some(run) = median_run(nodes, scenario, contender.client, contender.rounds) else {
            continue;
        };
        eprintln!(
            "bench: {nodes} nodes, {} {:<28} {}",
            scenario.label(),
            contender.client.label,
            summary(&run)
        );
        results.lock_runs.push(run);
    }
}

/// A client process of a scenario and the rounds it has run.
struct Contender {
    client: &'static ClientSpec,
    /// `None` once it failed.
    process: Option<ChildProcess>,
    rounds: Vec<Round>,
}

/// One measured round, seen from the client and from outside.
struct Round {
    measured: Measured,
    redis: RedisDelta,
    /// Share of the cores other processes kept busy, when the machine tells.
    other_cpu: Option<f64>,
}

impl Round {
    fn rate(&self) -> f64 {
        quorumlock_bench::results::per(self.measured.ops as f64, self.measured.elapsed_s)
    }
}

fn measure_round(
    process: &mut ChildProcess,
    probe: &mut Probe,
    timeout: Duration,
    cores: f64,
) -> Result<Round, String> {
    let before = probe.snapshot()?;
    let busy_before = host_cpu::busy_time();
    let started = Instant::now();
    process.go()?;
    let measured = process.wait_result(timeout)?;
    let elapsed = started.elapsed();
    let busy = host_cpu::busy_time()
        .zip(busy_before)
        .map(|(after, before)| after.saturating_sub(before));
    let after = probe.snapshot()?;
    let redis = RedisDelta::between(&before, &after);
    let ours = (measured.cpu_us + redis.cpu_us) / 1e6;
    let other_cpu =
        busy.map(|busy| ((busy.as_secs_f64() - ours) / (elapsed.as_secs_f64() * cores)).max(0.0));
    Ok(Round {
        measured,
        redis,
        other_cpu,
    })
}

/// The round with the median rate, among the undisturbed rounds if there are any.
fn median_run(
    nodes: usize,
    scenario: Scenario,
    client: &ClientSpec,
    rounds: Vec<Round>,
) -> Option<LockRun> {
    let round_rates = rounds.iter().map(Round::rate).collect();
    let round_other_cpu = rounds.iter().map(|round| round.other_cpu).collect();
    let quiet = |round: &Round| round.other_cpu.is_none_or(|share| share <= NOISY);
    let any_quiet = rounds.iter().any(quiet);
    let mut chosen: Vec<Round> = rounds
        .into_iter()
        .filter(|round| !any_quiet || quiet(round))
        .collect();
    chosen.sort_by(|a, b| a.rate().total_cmp(&b.rate()));
    let median = chosen.len().checked_sub(1)? / 2;
    let round = chosen.into_iter().nth(median)?;
    Some(LockRun {
        nodes,
        scenario,
        client: client.id.to_owned(),
        measured: round.measured,
        redis: round.redis,
        other_cpu: round.other_cpu,
        round_rates,
        round_other_cpu,
    })
}

fn summary(run: &LockRun) -> String {
    let m = &run.measured;
    let noisy = match run.other_cpu {
        Some(share) if run.is_noisy() => {
            format!(" [other processes: {:.0}% of the cores]", share * 100.0)
        }
        _ => String::new(),
    };
    let figures =
        match run.scenario {
            Scenario::Handoff => format!(
                "{} acq/s, gap p50 {:.2} ms p99 {:.2} ms, {:.1} commands/acq, {} overlaps",
                thousands(run.rate()),
                m.gap.map(|g| g.p50_us / 1000.0).unwrap_or(0.0),
                m.gap.map(|g| g.p99_us / 1000.0).unwrap_or(0.0),
                run.commands_per_op(),
                m.overlaps
            ),
            _ => format!(
            "{} pairs/s, lock p50 {:.0} µs, client CPU {:.1} µs/pair, Redis CPU {:.1} µs/pair{}",
            thousands(run.rate()),
            m.lock.p50_us,
            run.client_cpu_per_op(),
            run.redis_cpu_per_op(),
            if m.failures > 0 { format!(", {} failed locks", m.failures) } else { String::new() }
        ),
        };
    figures + &noisy
}

fn run_http(results: &mut Results, paths: &Paths, urls: &[String], nodes: usize, run_id: u64) {
    if !wrk::available() {
        note(
            results,
            "S4 skipped: wrk is not installed (scripts/install-deps.sh --bench installs it)"
                .to_owned(),
        );
        return;
    }
    let script = std::env::temp_dir().join(format!("quorumlock-bench-{}.lua", std::process::id()));
    if let Err(error) = std::fs::write(&script, wrk::SCRIPT) {
        note(
            results,
            format!("S4 skipped: cannot write the wrk script: {error}"),
        );
        return;
    }
    for nodelay in [false, true] {
        if let Err(error) = http_routes(results, paths, urls, nodes, run_id, &script, nodelay) {
            note(results, format!("S4: {error}"));
        }
    }
    let _ = std::fs::remove_file(&script);
}

fn http_routes(
    results: &mut Results,
    paths: &Paths,
    urls: &[String],
    nodes: usize,
    run_id: u64,
    script: &Path,
    nodelay: bool,
) -> Result<(), String> {
    let mut command = Command::new(paths.binaries.join("bench-http"));
    if nodelay {
        command.arg("--nodelay");
    }
    command
        .arg(format!("bench:{run_id}:http:{nodelay}:"))
        .args(urls);
    let mut server = ChildProcess::spawn("bench-http", command)?;
    let address = server.wait_line(Duration::from_secs(30), "listening line", |line| {
        line.strip_prefix("listening ").map(str::to_owned)
    })?;
    let base = format!("http://{address}");
    let load: Load = results.sizes.http_load;
    let warmup = Duration::from_millis(results.sizes.http_warmup_ms);
    // The measured time is split into interleaved rounds, as in the other scenarios, so a
    // disturbance of a few seconds weighs on every route alike instead of on whichever ran
    // then; each route's figures are those of its median round.
    let rounds = results.sizes.http_rounds.max(1);
    let per_round = Duration::from_millis(results.sizes.http_ms) / rounds as u32;
    const ROUTES: [&str; 3] = ["bare", "inline", "layer"];
    for route in ROUTES {
        wrk::run(script, &base, &format!("/{route}/w"), load, warmup)?;
    }
    let mut samples: [Vec<WrkSummary>; 3] = Default::default();
    for round in 0..rounds {
        // Each round starts with a different route, so none always runs right after another.
        for offset in 0..ROUTES.len() {
            let index = (round + offset) % ROUTES.len();
            let prefix = format!("/{}/m{round}.", ROUTES[index]);
            samples[index].push(wrk::run(script, &base, &prefix, load, per_round)?);
            std::thread::sleep(SETTLE);
        }
    }
    for (route, mut samples) in ROUTES.into_iter().zip(samples) {
        samples.sort_by(|a, b| a.rate().total_cmp(&b.rate()));
        let Some(summary) = samples.get(samples.len() / 2).cloned() else {
            continue;
        };
        let label = format!("{route}{}", if nodelay { ", TCP_NODELAY" } else { "" });
        eprintln!(
            "bench: {nodes} nodes, S4 {label:<28} {} requests/s, p99 {:.2} ms, {} non-2xx (median of {rounds})",
            thousands(summary.rate()),
            summary.p99_us as f64 / 1000.0,
            summary.non_2xx
        );
        results.http_runs.push(HttpRun {
            nodes,
            route: route.to_owned(),
            nodelay,
            summary,
        });
    }
    server.finish(Duration::from_secs(5));
    Ok(())
}

fn run_core(results: &mut Results, paths: &Paths) {
    let binary = paths.binaries.join("bench-core");
    let valgrind = results.environment.valgrind.is_some();
    if !valgrind {
        note(results, "S5 instruction counts skipped: valgrind is not installed (scripts/install-deps.sh --bench installs it)".to_owned());
    }
    let (few, many) = results.sizes.core_iterations;
    for nodes in [3, 5] {
        eprint!("bench: {nodes} nodes, S5 {:<28}", "sans-IO core");
        let native = native_core(&binary, nodes, results.sizes.core_native_iterations);
        let instructions = if valgrind {
            callgrind_instructions(&binary, nodes, few)
                .and_then(|few_count| {
                    Ok((callgrind_instructions(&binary, nodes, many)?, few_count))
                })
                .map(|(many_count, few_count)| {
                    (many_count.saturating_sub(few_count)) as f64 / (many - few) as f64
                })
        } else {
            Err(String::new())
        };
        match (native, instructions) {
            (Ok(ns), instructions) => {
                let instructions = match instructions {
                    Ok(count) => Some(count),
                    Err(error) => {
                        if !error.is_empty() {
                            note(results, format!("S5 {nodes} nodes: callgrind: {error}"));
                        }
                        None
                    }
                };
                eprintln!(
                    " {} instructions, {ns:.0} ns native",
                    instructions
                        .map(thousands)
                        .unwrap_or_else(|| "?".to_owned())
                );
                results.core_runs.push(CoreRun {
                    nodes,
                    instructions_per_cycle: instructions,
                    ns_per_cycle: ns,
                });
            }
            (Err(error), _) => {
                eprintln!(" failed");
                note(results, format!("S5 {nodes} nodes: {error}"));
            }
        }
    }
}

fn native_core(binary: &Path, nodes: usize, iterations: u64) -> Result<f64, String> {
    let output = Command::new(binary)
        .arg(nodes.to_string())
        .arg(iterations.to_string())
        .output()
        .map_err(|error| format!("cannot run bench-core: {error}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let value: serde_json::Value = serde_json::from_str(stdout.trim()).map_err(|error| {
        format!(
            "bench-core: {error}: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    })?;
    value["ns_per_cycle"]
        .as_f64()
        .ok_or_else(|| format!("bench-core printed no time: {stdout}"))
}

/// Instructions callgrind counted for a whole `bench-core` run.
fn callgrind_instructions(binary: &Path, nodes: usize, iterations: u64) -> Result<u64, String> {
    let output = Command::new("valgrind")
        .args(["--tool=callgrind", "--callgrind-out-file=/dev/null"])
        .arg(binary)
        .arg(nodes.to_string())
        .arg(iterations.to_string())
        .output()
        .map_err(|error| format!("cannot run valgrind: {error}"))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    stderr
        .lines()
        .find_map(|line| {
            let (_, count) = line.split_once("Collected :")?;
            count.trim().parse().ok()
        })
        .ok_or_else(|| {
            format!(
                "no instruction count in callgrind's output: {}",
                stderr.trim()
            )
        })
}

fn paths(cli: &Cli) -> Paths {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let binaries = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    let npm_package = cli
        .npm_package
        .clone()
        .or_else(|| std::env::var_os("QUORUMLOCK_PKG_DIR").map(PathBuf::from))
        .unwrap_or_else(|| manifest.join("../wasm/pkg"));
    Paths {
        binaries,
        js: cli.js_dir.clone().unwrap_or_else(|| manifest.join("js")),
        npm_package,
    }
}

fn environment() -> Environment {
    Environment {
        cores: std::thread::available_parallelism()
            .map(usize::from)
            .unwrap_or(0),
        redis: plan::version_of("redis-server")
            .map(|v| v.split(" sha=").next().unwrap_or(&v).to_owned())
            .unwrap_or_else(|| "redis-server absent".to_owned()),
        node: plan::version_of("node"),
        wrk: plan::version_of("wrk").map(|v| v.split(" [").next().unwrap_or(&v).to_owned()),
        valgrind: plan::version_of("valgrind"),
        load_before: std::fs::read_to_string("/proc/loadavg")
            .map(|load| {
                load.split_whitespace()
                    .take(3)
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default(),
    }
}

fn note(results: &mut Results, message: String) {
    eprintln!("bench: {message}");
    results.notes.push(message);
}

fn write_out(dir: &Path, results: &Results, markdown: &str) -> Result<Vec<String>, String> {
    std::fs::create_dir_all(dir)
        .map_err(|error| format!("cannot create {}: {error}", dir.display()))?;
    let json = serde_json::to_string_pretty(results).map_err(|error| error.to_string())?;
    let raw = dir.join("results.json");
    let table = dir.join("report.md");
    std::fs::write(&raw, json)
        .map_err(|error| format!("cannot write {}: {error}", raw.display()))?;
    std::fs::write(&table, markdown)
        .map_err(|error| format!("cannot write {}: {error}", table.display()))?;
    Ok(vec![raw.display().to_string(), table.display().to_string()])
}
